//! Body types of the proxy.
//!
//! [`Guarded`] wraps a streamed body with the two limits the annotations set: a byte limit
//! (`proxy-body-size`, for chunked uploads whose size is not announced) and an idle timeout
//! between frames (`proxy-send-timeout` for uploads, `proxy-read-timeout` for downloads).
//! The timer is only created while a read is pending, so a fast body costs no timer.
//! A response body also carries the [`Lease`] of the pooled upstream connection it is read
//! from, and gives the connection back once the body has ended.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};

use crate::upstream::Lease;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A streamed body with an optional byte limit and idle timeout.
pub struct Guarded {
    inner: Incoming,
    limit: Option<u64>,
    seen: u64,
    /// Set when the limit was exceeded, so the proxy answers 413 instead of 502.
    overflow: Option<Arc<AtomicBool>>,
    idle: Option<Duration>,
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
    /// The upstream connection this (response) body arrives on.
    lease: Option<Lease>,
    /// The last frame was read.
    ended: bool,
}

impl Guarded {
    pub fn new(inner: Incoming, idle: Option<Duration>) -> Guarded {
        Guarded { inner, limit: None, seen: 0, overflow: None, idle, timer: None, lease: None, ended: false }
    }

    /// Gives `lease` back to its pool once this body has been read to the end.
    pub fn with_lease(mut self, lease: Option<Lease>) -> Guarded {
        self.lease = lease;
        self
    }

    /// Fails the body once more than `limit` bytes arrived, raising `flag`.
    pub fn with_limit(mut self, limit: u64, flag: Arc<AtomicBool>) -> Guarded {
        self.limit = Some(limit);
        self.overflow = Some(flag);
        self
    }
}

impl Body for Guarded {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                this.timer = None;
                if let (Some(data), Some(limit)) = (frame.data_ref(), this.limit) {
                    this.seen += data.len() as u64;
                    if this.seen > limit {
                        if let Some(flag) = &this.overflow {
                            flag.store(true, Ordering::Relaxed);
                        }
                        return Poll::Ready(Some(Err("request body larger than proxy-body-size".into())));
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => {
                // The connection is broken: it must not be reused.
                this.lease = None;
                Poll::Ready(Some(Err(e.into())))
            }
            Poll::Ready(None) => {
                this.ended = true;
                if let Some(lease) = this.lease.take() {
                    lease.release();
                }
                Poll::Ready(None)
            }
            Poll::Pending => {
                if let Some(idle) = this.idle {
                    let timer = this.timer.get_or_insert_with(|| Box::pin(tokio::time::sleep(idle)));
                    if timer.as_mut().poll(cx).is_ready() {
                        return Poll::Ready(Some(Err("body idle timeout".into())));
                    }
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Guarded {
    fn drop(&mut self) {
        // A body whose last byte arrived is complete even if its reader never asked for the
        // end-of-stream frame (hyper stops at Content-Length); anything less closes the
        // connection with the lease.
        if let Some(lease) = self.lease.take() {
            if self.ended || self.inner.is_end_stream() {
                lease.release();
            }
        }
    }
}

/// What the proxy sends upstream and answers downstream: nothing, a fixed buffer, or a
/// guarded stream.
pub enum ProxyBody {
    Empty,
    Full(Option<Bytes>),
    Stream(Guarded),
}

impl ProxyBody {
    pub fn text(text: impl Into<Bytes>) -> ProxyBody {
        ProxyBody::Full(Some(text.into()))
    }
}

impl Body for ProxyBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.get_mut() {
            ProxyBody::Empty => Poll::Ready(None),
            ProxyBody::Full(data) => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
            ProxyBody::Stream(s) => Pin::new(s).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ProxyBody::Empty => true,
            ProxyBody::Full(data) => data.is_none(),
            ProxyBody::Stream(s) => s.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ProxyBody::Empty => SizeHint::with_exact(0),
            ProxyBody::Full(data) => SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64)),
            ProxyBody::Stream(s) => s.size_hint(),
        }
    }
}
