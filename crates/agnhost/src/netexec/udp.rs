//! netexec's UDP server: one datagram in, one answer out. Commands are matched after trimming
//! and lower-casing the datagram (so `echo` answers in lower case, as upstream does):
//! `hostname` → the host name, `echo <msg>` → `<msg>`, `clientip` → the sender's `ip:port`;
//! anything else gets no answer.

use std::net::SocketAddr;
use std::sync::Arc;

use super::State;
use crate::net::canonical;

/// Largest datagram read; longer ones are cut, like upstream's 2 KiB buffer.
const BUFFER: usize = 2048;

/// The answer to one datagram, if it is a command.
pub fn reply(datagram: &[u8], peer: SocketAddr, hostname: &str) -> Option<String> {
    let text = String::from_utf8_lossy(datagram).trim().to_lowercase();
    if text == "hostname" {
        Some(hostname.to_owned())
    } else if let Some(message) = text.strip_prefix("echo ") {
        Some(message.to_owned())
    } else if text == "clientip" {
        Some(canonical(peer).to_string())
    } else {
        if !text.is_empty() {
            tracing::info!(%peer, command = %text, "Unknown UDP command received");
        }
        None
    }
}

/// Answers datagrams on `socket` until receiving fails; returns that failure.
pub async fn serve(socket: tokio::net::UdpSocket, state: Arc<State>) -> anyhow::Error {
    let mut buffer = vec![0u8; BUFFER];
    loop {
        let (len, peer) = match socket.recv_from(&mut buffer).await {
            Ok(received) => received,
            Err(e) => return anyhow::Error::new(e).context("failed accepting UDP connections"),
        };
        let Some(answer) = reply(&buffer[..len], peer, &state.hostname) else { continue };
        tracing::debug!(%peer, %answer, "UDP answer");
        if let Err(e) = socket.send_to(answer.as_bytes(), peer).await {
            // One unreachable client must not stop the server for everyone else.
            tracing::warn!(%peer, error = %e, "failed to answer UDP client");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands() {
        let peer: SocketAddr = "[::ffff:10.244.1.7]:4242".parse().expect("address");
        assert_eq!(reply(b"hostname", peer, "pod-a"), Some("pod-a".to_owned()));
        assert_eq!(reply(b" HostName\n", peer, "pod-a"), Some("pod-a".to_owned()));
        assert_eq!(reply(b"echo Hello There\n", peer, "pod-a"), Some("hello there".to_owned()));
        assert_eq!(reply(b"echo ", peer, "pod-a"), None, "trimmed to `echo`, which is no command");
        assert_eq!(reply(b"clientip", peer, "pod-a"), Some("10.244.1.7:4242".to_owned()));
        assert_eq!(reply(b"what", peer, "pod-a"), None);
        assert_eq!(reply(&[0xff, 0xfe], peer, "pod-a"), None);
    }
}
