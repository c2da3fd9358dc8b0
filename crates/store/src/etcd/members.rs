//! The etcd members an [`EtcdStore`](super::EtcdStore) talks to, and failover between them.
//!
//! Every endpoint gets its own gRPC connection. Requests go to one **pinned** member (one
//! connection in use, like etcd's Go client before 3.4); when a request to it fails in a way
//! that says the member is unreachable or unhealthy, the pin moves to the next endpoint and —
//! if [`Retry`] allows — the request is sent there. Once every member
//! has failed, retries back off (up to one second apart) until
//! [`EtcdOptions::retry_for`](super::EtcdOptions::retry_for) has passed; then the caller gets
//! [`StoreError::Unavailable`]. A killed member therefore
//! costs the requests that were in flight on it, and nothing after.
//!
//! Each request also sends etcd's `hasleader` metadata: a member cut off from the raft leader
//! refuses at once (and is skipped) instead of hanging until a timeout.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use etcd_client::{Certificate, ConnectOptions, Identity, KvClient, TlsOptions, WatchClient};

use super::errors::{CallError, Retry};
use super::{EtcdOptions, EtcdTls};
use crate::{Result, StoreError};

/// Largest gRPC message accepted from etcd (a full list of a big resource type is one
/// message; etcd-client's default of 4 MiB is too small for that).
const MAX_MESSAGE_BYTES: usize = i32::MAX as usize;

/// Backoff between rounds over all members.
const FIRST_BACKOFF: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// One etcd endpoint and its clients (cheap to clone: they share the connection).
#[derive(Clone)]
pub(crate) struct Member {
    pub endpoint: String,
    pub kv: KvClient,
    pub watch: WatchClient,
}

/// Whether an operation may be sent again after an ambiguous failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Idempotence {
    /// Reads, watches, compaction: repeating them is harmless.
    Read,
    /// Writes: repeated only if the first attempt provably had no effect.
    Write,
}

pub(crate) struct Members {
    members: Vec<Member>,
    pinned: AtomicUsize,
    request_timeout: Duration,
    retry_for: Duration,
}

impl Members {
    /// Creates a client per endpoint. Connections are made lazily, on first use.
    pub async fn new(endpoints: &[String], opts: &EtcdOptions) -> Result<Members> {
        if endpoints.is_empty() {
            return Err(StoreError::Backend("no etcd endpoints given".into()));
        }
        let mut members = Vec::with_capacity(endpoints.len());
        for endpoint in endpoints {
            let mut connect = ConnectOptions::new()
                .with_connect_timeout(opts.connect_timeout)
                .with_require_leader(true)
                .with_keep_alive_while_idle(true);
            if let Some(interval) = opts.keep_alive_interval {
                connect = connect.with_keep_alive(interval, opts.request_timeout);
            }
            if endpoint.starts_with("https://") {
                connect = connect.with_tls(tls_options(endpoint, opts.tls.as_ref())?);
            }
            let client = etcd_client::Client::connect([endpoint.as_str()], Some(connect))
                .await
                .map_err(|e| StoreError::Backend(format!("invalid etcd endpoint {endpoint:?}: {e}")))?;
            members.push(Member {
                endpoint: endpoint.clone(),
                kv: client.kv_client().max_decoding_message_size(MAX_MESSAGE_BYTES),
                watch: client.watch_client().max_decoding_message_size(MAX_MESSAGE_BYTES),
            });
        }
        Ok(Members {
            members,
            pinned: AtomicUsize::new(0),
            request_timeout: opts.request_timeout,
            retry_for: opts.retry_for,
        })
    }

    /// Runs `call` on the pinned member, failing over as described in the module docs.
    /// `call` gets the member's index (for [`Members::demote`]) and a clone of its clients.
    pub async fn call<T, F, Fut>(&self, idempotence: Idempotence, mut call: F) -> Result<T, CallError>
    where
        F: FnMut(usize, Member) -> Fut,
        Fut: Future<Output = Result<T, CallError>>,
    {
        let deadline = Instant::now() + self.retry_for;
        let mut backoff = FIRST_BACKOFF;
        let mut failed_in_round = 0;
        loop {
            let index = self.pinned.load(Ordering::Acquire) % self.members.len();
            let member = self.members[index].clone();
            let error = match tokio::time::timeout(self.request_timeout, call(index, member)).await {
                Ok(Ok(answer)) => return Ok(answer),
                Ok(Err(error)) => error,
                Err(_) => CallError::Timeout(self.request_timeout),
            };
            let retry = error.retry();
            if retry == Retry::Never {
                return Err(error);
            }
            self.demote(index, &error);
            let may_retry = retry == Retry::Any || idempotence == Idempotence::Read;
            if !may_retry || Instant::now() >= deadline {
                return Err(error);
            }
            failed_in_round += 1;
            if failed_in_round >= self.members.len() {
                // Every member failed once: wait before the next round (a leader election
                // takes about a second).
                failed_in_round = 0;
                let pause = backoff.min(deadline.saturating_duration_since(Instant::now()));
                tokio::time::sleep(pause).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }

    /// Moves the pin away from `index` after a failure there (unless another caller already
    /// moved it), so the next request goes to the next member.
    pub fn demote(&self, index: usize, error: &dyn std::fmt::Display) {
        let next = (index + 1) % self.members.len();
        if self.pinned.compare_exchange(index, next, Ordering::AcqRel, Ordering::Acquire).is_ok() && next != index {
            tracing::warn!(
                failed = %self.members[index].endpoint,
                next = %self.members[next].endpoint,
                %error,
                "etcd member failed; switching to the next endpoint"
            );
        }
    }
}

/// The TLS settings for one https:// endpoint: the server must present a certificate signed by
/// the configured CA (there is no fallback to system roots: etcd clusters use private CAs),
/// and the client certificate, if any, proves who we are (etcd's `--client-cert-auth`).
fn tls_options(endpoint: &str, tls: Option<&EtcdTls>) -> Result<TlsOptions> {
    let Some(tls) = tls else {
        return Err(StoreError::Backend(format!(
            "etcd endpoint {endpoint} is https:// but no CA certificate was given (--etcd-cafile)"
        )));
    };
    let mut options = TlsOptions::new().ca_certificate(Certificate::from_pem(&tls.ca_pem));
    if let Some((cert, key)) = &tls.client_identity {
        options = options.identity(Identity::from_pem(cert, key));
    }
    Ok(options)
}
