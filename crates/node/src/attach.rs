//! `kubectl attach` (and `kubectl run -i`): the container's own standard streams, reached
//! through its shim.
//!
//! The shim owns the container's stdio (pipes, or a pty for `tty: true`). Besides writing the
//! output to the log, it listens on a Unix socket and sends every output chunk to whoever is
//! attached; attached clients send stdin and terminal sizes back. The socket lives in the
//! abstract namespace of the node's network namespace (where the agent and the shims run, and
//! no pod does): file paths under a pod directory easily exceed the 108 bytes a socket path
//! may have.
//!
//! Frames both ways: one kind byte, a big-endian u32 length, the payload.

use std::io::{self, Read, Write};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixListener, UnixStream};
use std::path::Path;

/// Frame kinds.
pub const STDIN: u8 = 0;
/// The attached client closed its stdin (no payload).
pub const STDIN_CLOSED: u8 = 1;
/// Terminal size: width and height as big-endian u16s.
pub const RESIZE: u8 = 2;
pub const STDOUT: u8 = 3;
pub const STDERR: u8 = 4;

/// Largest payload accepted in one frame (output is sent in chunks far smaller).
pub const MAX_FRAME: usize = 1 << 20;

/// The abstract socket name of one container instance: a stable hash of its directory, so
/// the agent (also after a restart) finds the shim that serves it.
fn socket_name(instance_dir: &Path) -> String {
    // FNV-1a: tiny, and the same in every build (std's hasher promises neither).
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in instance_dir.as_os_str().as_encoded_bytes() {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("skiff-attach-{hash:016x}")
}

fn socket_addr(instance_dir: &Path) -> io::Result<SocketAddr> {
    SocketAddr::from_abstract_name(socket_name(instance_dir).as_bytes())
}

/// The shim's listening socket for `instance_dir`.
pub fn listen(instance_dir: &Path) -> io::Result<UnixListener> {
    UnixListener::bind_addr(&socket_addr(instance_dir)?)
}

/// Connects to the shim serving `instance_dir` (blocking; the connect is local and immediate).
pub fn connect(instance_dir: &Path) -> io::Result<UnixStream> {
    UnixStream::connect_addr(&socket_addr(instance_dir)?)
}

/// Encodes one frame.
pub fn frame(kind: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(5 + payload.len());
    out.push(kind);
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// The payload length a frame header announces, refused above [`MAX_FRAME`].
fn payload_len(header: &[u8; 5]) -> io::Result<usize> {
    let len = u32::from_be_bytes([header[1], header[2], header[3], header[4]]) as usize;
    if len > MAX_FRAME {
        return Err(io::Error::new(io::ErrorKind::InvalidData, format!("attach frame of {len} bytes")));
    }
    Ok(len)
}

/// Reads one frame from a blocking stream; `Ok(None)` at a clean end of stream.
pub fn read_frame(stream: &mut impl Read) -> io::Result<Option<(u8, Vec<u8>)>> {
    let mut header = [0u8; 5];
    match stream.read_exact(&mut header) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let mut payload = vec![0u8; payload_len(&header)?];
    stream.read_exact(&mut payload)?;
    Ok(Some((header[0], payload)))
}

/// Reads one frame from an async stream; `Ok(None)` at a clean end of stream.
pub async fn read_frame_async(stream: &mut (impl tokio::io::AsyncRead + Unpin)) -> io::Result<Option<(u8, Vec<u8>)>> {
    use tokio::io::AsyncReadExt;
    let mut header = [0u8; 5];
    match stream.read_exact(&mut header).await {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let mut payload = vec![0u8; payload_len(&header)?];
    stream.read_exact(&mut payload).await?;
    Ok(Some((header[0], payload)))
}

/// A resize frame's payload.
pub fn resize_payload(width: u16, height: u16) -> [u8; 4] {
    let [w0, w1] = width.to_be_bytes();
    let [h0, h1] = height.to_be_bytes();
    [w0, w1, h0, h1]
}

/// Width and height from a resize payload.
pub fn parse_resize(payload: &[u8]) -> Option<(u16, u16)> {
    match payload {
        [w0, w1, h0, h1] => Some((u16::from_be_bytes([*w0, *w1]), u16::from_be_bytes([*h0, *h1]))),
        _ => None,
    }
}

/// Writes a frame, reporting whether the peer took it.
pub fn send(stream: &mut impl Write, kind: u8, payload: &[u8]) -> bool {
    stream.write_all(&frame(kind, payload)).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip() {
        let mut wire = frame(STDOUT, b"hello");
        wire.extend(frame(STDIN_CLOSED, b""));
        wire.extend(frame(RESIZE, &resize_payload(80, 24)));
        let mut reader = wire.as_slice();
        assert_eq!(read_frame(&mut reader).unwrap(), Some((STDOUT, b"hello".to_vec())));
        assert_eq!(read_frame(&mut reader).unwrap(), Some((STDIN_CLOSED, Vec::new())));
        let (kind, payload) = read_frame(&mut reader).unwrap().unwrap();
        assert_eq!((kind, parse_resize(&payload)), (RESIZE, Some((80, 24))));
        assert_eq!(read_frame(&mut reader).unwrap(), None);
    }

    #[test]
    fn oversized_and_truncated_frames_are_errors() {
        let mut huge = vec![STDIN];
        huge.extend_from_slice(&u32::MAX.to_be_bytes());
        assert!(read_frame(&mut huge.as_slice()).is_err());
        let truncated = &frame(STDOUT, b"hello")[..7];
        assert!(read_frame(&mut &truncated[..]).is_err());
        assert_eq!(parse_resize(b"abc"), None);
    }

    #[test]
    fn socket_names_are_stable_and_distinct() {
        let a = socket_name(Path::new("/var/lib/skiff/pods/x/containers/main/0"));
        assert_eq!(a, socket_name(Path::new("/var/lib/skiff/pods/x/containers/main/0")));
        assert_ne!(a, socket_name(Path::new("/var/lib/skiff/pods/x/containers/main/1")));
        assert!(a.len() < 100);
    }

    #[test]
    fn a_listener_is_reached_by_its_instance_directory() {
        let dir = tempfile::tempdir().unwrap();
        let listener = listen(dir.path()).unwrap();
        let mut client = connect(dir.path()).unwrap();
        let (mut server, _) = listener.accept().unwrap();
        assert!(send(&mut client, STDIN, b"x"));
        assert_eq!(read_frame(&mut server).unwrap(), Some((STDIN, b"x".to_vec())));
    }
}
