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

// ApiError carries the Status details (subject, field causes); it is only built on the
// error path, so its size (≈128 bytes) costs nothing on the hot path.
#![allow(clippy::result_large_err)]

pub mod object;
pub mod patch;
pub mod printers;
pub mod protobuf;
pub mod registry;
pub mod service;
pub mod status;
pub mod strategy;
pub mod validation;

pub use status::{ApiError, FieldError, FieldErrorType, Subject};
