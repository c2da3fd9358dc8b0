//! Kubernetes' WebSocket channel protocols (`*.channel.k8s.io`): every message carries one
//! channel's bytes, the channel number first.
//!
//! Channels: 0 stdin, 1 stdout, 2 stderr, 3 error, 4 resize. Protocol versions differ in
//! what the error channel carries (v4 and later: a `metav1.Status` JSON; earlier: the error
//! text) and v5 adds a close signal (`[255, channel]`) so the client can half-close stdin.
//! The `base64` variants send text messages: the channel as an ASCII digit, then base64.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use bytes::Bytes;
use tokio_tungstenite::tungstenite::protocol::Message;

pub const STDIN: u8 = 0;
pub const STDOUT: u8 = 1;
pub const STDERR: u8 = 2;
pub const ERROR: u8 = 3;
pub const RESIZE: u8 = 4;
/// v5 close signal: the message body names the channel being closed.
pub const CLOSE: u8 = 255;

/// A negotiated channel protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChannelProtocol {
    /// The subprotocol name (empty when the client offered none).
    pub name: &'static str,
    /// Status JSON on the error channel (v4+) rather than plain text.
    pub status_errors: bool,
    /// Understands the v5 close signal.
    pub close_signal: bool,
    /// Text messages with base64 payloads.
    pub base64: bool,
}

/// Every protocol served, by subprotocol name.
const PROTOCOLS: &[ChannelProtocol] = &[
    ChannelProtocol { name: "v5.channel.k8s.io", status_errors: true, close_signal: true, base64: false },
    ChannelProtocol { name: "v4.channel.k8s.io", status_errors: true, close_signal: false, base64: false },
    ChannelProtocol { name: "v4.base64.channel.k8s.io", status_errors: true, close_signal: false, base64: true },
    ChannelProtocol { name: "channel.k8s.io", status_errors: false, close_signal: false, base64: false },
    ChannelProtocol { name: "base64.channel.k8s.io", status_errors: false, close_signal: false, base64: true },
];

/// Picks the first offered protocol we serve (the client lists its preference). No offer at
/// all means the original binary protocol; offers we do not serve give None.
pub fn negotiate(offered: &[String]) -> Option<ChannelProtocol> {
    if offered.is_empty() {
        return Some(ChannelProtocol { name: "", status_errors: false, close_signal: false, base64: false });
    }
    offered.iter().find_map(|o| PROTOCOLS.iter().find(|p| p.name == o).copied())
}

/// The subprotocol names served, for error messages.
pub fn supported_names() -> Vec<&'static str> {
    PROTOCOLS.iter().map(|p| p.name).collect()
}

impl ChannelProtocol {
    /// Frames `data` for `channel`.
    pub fn encode(&self, channel: u8, data: &[u8]) -> Message {
        if self.base64 {
            let mut text = String::with_capacity(1 + data.len() * 4 / 3 + 4);
            text.push(char::from(b'0' + channel));
            text.push_str(&B64.encode(data));
            Message::text(text)
        } else {
            let mut out = Vec::with_capacity(data.len() + 1);
            out.push(channel);
            out.extend_from_slice(data);
            Message::binary(out)
        }
    }

    /// Splits a message into its channel and payload; None for messages that carry no
    /// channel data (pings, close, malformed).
    pub fn decode(&self, msg: Message) -> Option<(u8, Bytes)> {
        match msg {
            Message::Binary(b) if !self.base64 && !b.is_empty() => Some((b[0], b.slice(1..))),
            Message::Text(t) if self.base64 => {
                let text = t.as_str();
                let channel = text.as_bytes().first()?.checked_sub(b'0')?;
                let data = B64.decode(&text[1..]).ok()?;
                Some((channel, Bytes::from(data)))
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiates_the_first_offered_protocol_we_serve() {
        let offer = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(negotiate(&offer(&["v5.channel.k8s.io"])).unwrap().name, "v5.channel.k8s.io");
        assert_eq!(negotiate(&offer(&["v9.channel.k8s.io", "v4.channel.k8s.io"])).unwrap().name, "v4.channel.k8s.io");
        assert_eq!(negotiate(&[]).unwrap().name, "");
        assert!(negotiate(&offer(&["SPDY/3.1+portforward.k8s.io"])).is_none());
    }

    #[test]
    fn frames_round_trip_in_both_encodings() {
        for name in ["v5.channel.k8s.io", "base64.channel.k8s.io"] {
            let p = negotiate(&[name.to_string()]).unwrap();
            let (ch, data) = p.decode(p.encode(STDOUT, b"hello")).unwrap();
            assert_eq!((ch, &data[..]), (STDOUT, &b"hello"[..]));
        }
        let binary = negotiate(&["v5.channel.k8s.io".to_string()]).unwrap();
        assert!(binary.decode(Message::binary(Vec::new())).is_none());
        let b64 = negotiate(&["base64.channel.k8s.io".to_string()]).unwrap();
        assert!(b64.decode(Message::text("1%%%")).is_none());
    }
}
