//! # skiff-streams: the kubelet side of `kubectl logs`, `exec` and `port-forward`
//!
//! The API server validates these requests and proxies them to the node agent of the pod's
//! node; the agent serves them here with kubelet's paths and protocols:
//!
//! - `GET /containerLogs/{ns}/{pod}/{container}` ([`logs`]): plain text, streamed with `follow`
//! - `/exec/{ns}/{pod}/{container}` ([`exec`]): WebSocket channel protocols
//!   `v5.channel.k8s.io` … ([`channel`]), or SPDY `v4.channel.k8s.io` … ([`exec_spdy`])
//! - `/portForward/{ns}/{pod}` ([`portforward`]): SPDY/3.1 ([`spdy`]) tunnelled in a WebSocket
//!   or on a plain upgrade
//!
//! Everything about pods and processes is behind [`PodRuntime`] ([`runtime`]), implemented by
//! the node agent. Start with [`serve`].

pub mod channel;
pub mod exec;
pub mod exec_spdy;
pub mod logs;
pub mod portforward;
pub mod query;
pub mod runtime;
pub mod server;
pub mod spdy;
pub mod tls;
pub mod websocket;

pub use runtime::{ExecRequest, ExecSession, ExitOutcome, LogOptions, PodRef, PodRuntime, RuntimeError, TerminalSize};
pub use server::serve;
pub use tls::KubeletTls;
