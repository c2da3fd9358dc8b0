//! # skiff-api: the Kubernetes API's semantics, without HTTP
//!
//! What makes a Service a Service, independent of how requests arrive or where objects are
//! stored. A newcomer should start with [`registry`] (every served resource: its group,
//! version, kind, scope, short names and hooks), then [`status`] (how errors look).
//!
//! - [`patch`]: JSON patch, JSON merge patch and strategic merge patch with the real merge
//!   keys of every served kind.
//! - [`service`]: Service defaulting, validation, type changes and ClusterIP/NodePort
//!   allocation planning (the store transaction that claims them lives in the API server).
//! - [`printers`]: server-side `Table` rows (`kubectl get` columns) and field-selector values.

pub mod object;
pub mod patch;
pub mod printers;
pub mod registry;
pub mod service;
pub mod status;
pub mod strategy;
pub mod validation;

pub use status::{ApiError, FieldError, FieldErrorType, Subject};
