//! # skiff-core: pure logic every component shares
//!
//! Nothing here does I/O. Start with [`labels`] (label selectors as `kubectl -l` and
//! Service selectors use them), [`fields`] (field selectors) and [`names`] (the DNS-1123
//! rules every object name obeys). [`service_view`] joins Services with their
//! EndpointSlices: what the DNS server, the proxy and the ingress all serve from.

pub mod fields;
pub mod labels;
pub mod names;
pub mod service_view;
