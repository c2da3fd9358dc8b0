//! # skiff-core: pure logic every component shares
//!
//! Nothing here does I/O. Start with [`labels`] (label selectors as `kubectl -l` and
//! Service selectors use them), [`fields`] (field selectors) and [`names`] (the DNS-1123
//! rules every object name obeys).

pub mod fields;
pub mod labels;
pub mod names;
pub mod service_view;
