//! The contract between the kubelet API server in this crate and the node agent that actually runs pods.
//!
//! The streaming server only speaks protocols (HTTP, WebSocket, SPDY); everything that touches processes,
//! namespaces or log files is behind [`PodRuntime`], which the node agent implements.

/// Identifies a pod on this node.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PodRef {
    pub namespace: String,
    pub name: String,
}

/// What `kubectl exec` asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecRequest {
    pub command: Vec<String>,
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    pub tty: bool,
}

/// Terminal size sent by the client on the resize channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TerminalSize {
    pub width: u16,
    pub height: u16,
}

/// How an exec'd process ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExitOutcome {
    /// Normal exit with this status code.
    Code(i32),
    /// Killed by this signal number.
    Signal(i32),
    /// The process could not be run or waited for.
    Error(String),
}

/// A running exec'd process: its standard streams and its completion. Streams that were not
/// requested are None; a stdin writer that is shut down means the client closed its input.
pub struct ExecSession {
    pub stdin: Option<Box<dyn tokio::io::AsyncWrite + Send + Unpin>>,
    pub stdout: Option<Box<dyn tokio::io::AsyncRead + Send + Unpin>>,
    /// None with a tty (stderr is merged into the terminal).
    pub stderr: Option<Box<dyn tokio::io::AsyncRead + Send + Unpin>>,
    /// Some with a tty: terminal size changes from the client.
    pub resize: Option<tokio::sync::mpsc::Sender<TerminalSize>>,
    /// Resolves when the process ends. The session (this future included) is dropped early
    /// when the client goes away first; a runtime may then kill the process.
    pub exit: futures::future::BoxFuture<'static, ExitOutcome>,
}

/// `kubectl logs` options, already validated by the API server.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogOptions {
    pub follow: bool,
    pub previous: bool,
    pub tail_lines: Option<u64>,
    pub since_seconds: Option<u64>,
    pub since_time: Option<chrono::DateTime<chrono::Utc>>,
    pub timestamps: bool,
    pub limit_bytes: Option<u64>,
}

/// Why the runtime could not serve a request; mapped to HTTP statuses by the server.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("pod {0} not found")]
    PodNotFound(String),
    #[error("container {0} not found")]
    ContainerNotFound(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Internal(String),
}

/// What the node agent provides to the streaming server.
#[async_trait::async_trait]
pub trait PodRuntime: Send + Sync + 'static {
    /// Starts `request.command` in the container's namespaces.
    async fn exec(&self, pod: &PodRef, container: &str, request: ExecRequest) -> Result<ExecSession, RuntimeError>;
    /// Connects to the container's own standard streams (`kubectl attach`, `kubectl run -i`):
    /// `request.command` is empty. The session's exit resolves when the container's output
    /// ends (it exited) or the runtime stops serving the attachment.
    async fn attach(&self, pod: &PodRef, container: &str, request: ExecRequest) -> Result<ExecSession, RuntimeError>;
    /// Connects to `port` on the pod's loopback/network namespace.
    async fn port_forward(&self, pod: &PodRef, port: u16) -> Result<tokio::net::TcpStream, RuntimeError>;
    /// The container's log as a byte stream (ends unless `options.follow`).
    async fn logs(
        &self,
        pod: &PodRef,
        container: &str,
        options: LogOptions,
    ) -> Result<futures::stream::BoxStream<'static, std::io::Result<bytes::Bytes>>, RuntimeError>;
}
