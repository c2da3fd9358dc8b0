//! SPDY/3.1, the multiplexing protocol under `kubectl port-forward` (and the legacy exec/attach
//! transport): many byte streams over one connection, each opened by the client with a
//! SYN_STREAM whose headers say what the stream is for.
//!
//! Implemented here because no maintained Rust crate speaks SPDY (it was retired in favour of
//! HTTP/2 years ago), while Kubernetes clients still use it: kubectl 1.32 tunnels SPDY frames
//! inside WebSocket messages for port-forward and falls back to a plain `Upgrade: SPDY/3.1`.
//! Only the server side is needed, and only what client-go's spdystream sends: it does no
//! flow control (it neither sends nor honours WINDOW_UPDATE), so neither do we.
//!
//! - [`frame`]: the wire format of frames
//! - [`headers`]: header blocks, zlib-compressed with SPDY's preset dictionary
//! - [`session`]: one connection: a reader that dispatches frames to streams, a writer task
//! - [`upgrade`]: the HTTP upgrade that starts a connection

pub mod frame;
pub mod headers;
pub mod session;
pub mod upgrade;

pub use frame::Frame;
pub use headers::HeaderBlock;
pub use session::{serve_session, IncomingStream, StreamWriter};
