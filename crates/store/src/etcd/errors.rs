//! What an etcd failure means for the caller: which [`StoreError`] it becomes and whether the
//! request may be sent again (to another member).
//!
//! Retrying is only harmless when the request cannot have taken effect twice. Reads may always
//! be retried. A write may be retried only when it provably never reached a member (the TCP
//! connection was refused) or was refused before being proposed to raft (etcd's `no leader`,
//! which skiff asks for by sending `hasleader` with every request). Anything else — a
//! connection reset mid-request, a timeout, `leader changed` — may or may not have committed,
//! so the caller gets [`StoreError::Unavailable`] and decides (kube-apiserver does the same;
//! the HTTP client retries with its own preconditions).

use std::error::Error as _;
use std::time::Duration;

use tonic::Code;

use crate::StoreError;

/// A failed call to an etcd member.
#[derive(Debug)]
pub(crate) enum CallError {
    Etcd(etcd_client::Error),
    /// The member did not answer within the request timeout.
    Timeout(Duration),
    /// etcd cancelled a watch, giving this reason.
    WatchCanceled(String),
}

/// Whether a failed request may be sent again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Retry {
    /// The request had no effect: any request may be retried on another member.
    Any,
    /// The member is unreachable or unhealthy, but a write may have committed: only reads
    /// may be retried.
    ReadsOnly,
    /// An answer, not an outage (bad request, compacted revision...): do not retry.
    Never,
}

impl From<etcd_client::Error> for CallError {
    fn from(error: etcd_client::Error) -> Self {
        CallError::Etcd(error)
    }
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::Etcd(etcd_client::Error::GRpcStatus(status)) => {
                write!(f, "etcd: {} ({:?})", status.message(), status.code())
            }
            CallError::Etcd(error) => write!(f, "etcd: {error}"),
            CallError::Timeout(after) => write!(f, "etcd did not answer within {after:?}"),
            CallError::WatchCanceled(reason) => write!(f, "etcd cancelled the watch: {reason}"),
        }
    }
}

impl CallError {
    pub fn retry(&self) -> Retry {
        use etcd_client::Error as E;
        match self {
            CallError::Timeout(_) => Retry::ReadsOnly,
            CallError::WatchCanceled(reason) if reason.contains("no leader") => Retry::Any,
            CallError::WatchCanceled(_) => Retry::Never,
            CallError::Etcd(E::GRpcStatus(status)) => match status.code() {
                Code::Unavailable if never_sent(status) || status.message().contains("no leader") => Retry::Any,
                Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled | Code::Aborted | Code::Unknown => {
                    Retry::ReadsOnly
                }
                _ => Retry::Never,
            },
            // The watch request channel closed under us, or the connection broke.
            CallError::Etcd(E::TransportError(_) | E::IoError(_) | E::WatchError(_)) => Retry::ReadsOnly,
            CallError::Etcd(_) => Retry::Never,
        }
    }

    /// etcd's "mvcc: required revision has been compacted".
    pub fn is_compacted(&self) -> bool {
        self.out_of_range_containing("compacted")
    }

    /// etcd's "mvcc: required revision is a future revision".
    pub fn is_future_revision(&self) -> bool {
        self.out_of_range_containing("future revision")
    }

    fn out_of_range_containing(&self, words: &str) -> bool {
        matches!(self, CallError::Etcd(etcd_client::Error::GRpcStatus(status))
            if status.code() == Code::OutOfRange && status.message().contains(words))
    }

    /// The store error for a failure that is not handled more specifically.
    pub fn into_store_error(self) -> StoreError {
        match self.retry() {
            Retry::Any | Retry::ReadsOnly => StoreError::Unavailable(self.to_string()),
            Retry::Never => StoreError::Backend(self.to_string()),
        }
    }
}

/// True when the connection to the member could not be established, so the request was never
/// sent (tonic reports that as `Unavailable` with the connect error as its source).
fn never_sent(status: &tonic::Status) -> bool {
    let mut source = status.source();
    while let Some(error) = source {
        if let Some(io) = error.downcast_ref::<std::io::Error>() {
            if io.kind() == std::io::ErrorKind::ConnectionRefused {
                return true;
            }
        }
        source = error.source();
    }
    false
}
