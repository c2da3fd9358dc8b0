//! Set and map elements written to nftables over netlink, many per atomic batch.
//!
//! Why hand-built messages rather than `nft -f` or a library: all per-Service state of the
//! nftables ruleset lives in set and map *elements* (see [`super::ruleset`]), and element
//! messages are the simplest part of the nftables netlink API — a table name, a set name
//! and a list of (key, data) blobs. Text through the `nft` binary costs a process, a parse
//! and a cache listing per change (tens of milliseconds, and seconds at 100k elements);
//! `rustables` is GPL-3.0 and `nftnl` needs the C libnftnl at build time. The few fixed
//! chains and rules still go through `nft -f`, where their text form is readable.
//!
//! Wire format (linux/netfilter/nf_tables.h, nfnetlink.h): a batch is
//! `NFNL_MSG_BATCH_BEGIN`, then `NFT_MSG_NEWSETELEM` / `NFT_MSG_DELSETELEM` messages, then
//! `NFNL_MSG_BATCH_END`; the kernel applies all of it or nothing. Each element message has
//! a `nfgenmsg` header and the attributes `NFTA_SET_ELEM_LIST_TABLE`, `…_SET` and a nested
//! `…_ELEMENTS` list, which must stay below 64 KiB (a netlink attribute length is 16 bits),
//! so large element lists are split over several messages of the same batch.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

const NETLINK_NETFILTER: libc::c_int = 12;
const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NFNL_MSG_BATCH_BEGIN: u16 = 0x10;
const NFNL_MSG_BATCH_END: u16 = 0x11;
const NFT_MSG_NEWSETELEM: u16 = 12;
const NFT_MSG_DELSETELEM: u16 = 14;

const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_CREATE: u16 = 0x400;
const NLMSG_ERROR: u16 = 0x2;
const NETLINK_CAP_ACK: libc::c_int = 10;

const NFTA_SET_ELEM_LIST_TABLE: u16 = 1;
const NFTA_SET_ELEM_LIST_SET: u16 = 2;
const NFTA_SET_ELEM_LIST_ELEMENTS: u16 = 3;
const NFTA_LIST_ELEM: u16 = 1;
const NFTA_SET_ELEM_KEY: u16 = 1;
const NFTA_SET_ELEM_DATA: u16 = 2;
const NFTA_DATA_VALUE: u16 = 1;
const NFTA_DATA_VERDICT: u16 = 2;
const NFTA_VERDICT_CODE: u16 = 1;
const NFTA_VERDICT_CHAIN: u16 = 2;
const NLA_F_NESTED: u16 = 0x8000;

/// `NFT_JUMP` / `NFT_GOTO` verdict codes (negative, sent as big-endian i32).
const NFT_JUMP: i32 = -3;
const NFT_GOTO: i32 = -4;
/// `NF_DROP`.
const NF_DROP: i32 = 0;

/// Keep each element message's nested list well below the 64 KiB attribute limit.
const MAX_ELEMENTS_BYTES: usize = 60_000;

/// The value an element maps its key to.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum ElementData {
    /// A plain set: no data.
    None,
    /// A data map (e.g. an endpoint address and port), already in register layout.
    Value(Vec<u8>),
    /// `goto <chain>` in a verdict map.
    Goto(String),
    /// `jump <chain>` in a verdict map.
    Jump(String),
    /// `drop` in a verdict map.
    Drop,
}

/// One change to a set, as part of a batch.
#[derive(Clone, Debug)]
pub enum ElementOp {
    Add {
        set: &'static str,
        key: Vec<u8>,
        data: ElementData,
    },
    Delete {
        set: &'static str,
        key: Vec<u8>,
    },
    /// Removes every element of the set (a `DELSETELEM` without an element list).
    Flush {
        set: &'static str,
    },
}

/// A netlink socket to the nftables subsystem of the caller's network namespace.
pub struct NftSocket {
    fd: OwnedFd,
    seq: u32,
}

impl NftSocket {
    pub fn open() -> io::Result<NftSocket> {
        // SAFETY: plain socket(2) call; the result is checked before use.
        let raw = unsafe { libc::socket(libc::AF_NETLINK, libc::SOCK_RAW | libc::SOCK_CLOEXEC, NETLINK_NETFILTER) };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a fresh, owned descriptor.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let one: libc::c_int = 1;
        // Errors need not echo the (possibly huge) failed message back.
        // SAFETY: valid fd and a pointer to a c_int of the given size.
        unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_NETLINK,
                NETLINK_CAP_ACK,
                (&one as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
        }
        let seq =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as u32).unwrap_or(1);
        Ok(NftSocket { fd, seq })
    }

    /// Applies `ops` to the sets of `table` (family `ip`) in one atomic transaction.
    pub fn apply(&mut self, table: &str, ops: &[ElementOp]) -> io::Result<()> {
        if ops.is_empty() {
            return Ok(());
        }
        let mut batch = Vec::with_capacity(64 * ops.len() + 64);
        let first_seq = self.next_seq();
        put_batch_marker(&mut batch, NFNL_MSG_BATCH_BEGIN, first_seq);
        let mut last_seq = first_seq;
        let mut i = 0;
        while i < ops.len() {
            // Group consecutive ops of the same kind on the same set into one message.
            let (kind, set) = op_kind(&ops[i]);
            let mut j = i;
            let mut body = Vec::new();
            while j < ops.len() && op_kind(&ops[j]) == (kind, set) && body.len() < MAX_ELEMENTS_BYTES {
                match &ops[j] {
                    ElementOp::Add { key, data, .. } => put_element(&mut body, key, Some(data)),
                    ElementOp::Delete { key, .. } => put_element(&mut body, key, None),
                    ElementOp::Flush { .. } => {}
                }
                j += 1;
                if kind == OpKind::Flush {
                    break;
                }
            }
            last_seq = self.next_seq();
            let msg_type = match kind {
                OpKind::Add => NFT_MSG_NEWSETELEM,
                OpKind::Delete | OpKind::Flush => NFT_MSG_DELSETELEM,
            };
            // Errors are reported for every message; a success acknowledgement is asked for
            // the last one only. One per message (hundreds at 30,000 Services) overflowed the
            // socket's receive buffer (ENOBUFS) and made the whole sync fail.
            let ack = if j == ops.len() { NLM_F_ACK } else { 0 };
            let flags = NLM_F_REQUEST | if kind == OpKind::Add { NLM_F_CREATE } else { 0 } | ack;
            let start = begin_message(&mut batch, (NFNL_SUBSYS_NFTABLES << 8) | msg_type, flags, last_seq);
            put_attr_str(&mut batch, NFTA_SET_ELEM_LIST_TABLE, table);
            put_attr_str(&mut batch, NFTA_SET_ELEM_LIST_SET, set);
            if kind != OpKind::Flush {
                put_attr(&mut batch, NFTA_SET_ELEM_LIST_ELEMENTS | NLA_F_NESTED, &body);
            }
            end_message(&mut batch, start);
            i = j;
        }
        let end_seq = self.next_seq();
        put_batch_marker(&mut batch, NFNL_MSG_BATCH_END, end_seq);
        self.send(&batch)?;
        self.read_acks(last_seq)
    }

    fn next_seq(&mut self) -> u32 {
        self.seq = self.seq.wrapping_add(1);
        self.seq
    }

    fn send(&self, batch: &[u8]) -> io::Result<()> {
        // The whole batch goes into one skb: make the send buffer big enough (root may
        // exceed wmem_max with SO_SNDBUFFORCE).
        let size = libc::c_int::try_from(batch.len() + 4096).unwrap_or(libc::c_int::MAX);
        // SAFETY: valid fd and a pointer to a c_int of the given size.
        unsafe {
            libc::setsockopt(
                self.fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_SNDBUFFORCE,
                (&size as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
        }
        // SAFETY: an all-zero sockaddr_nl is valid; the kernel is pid 0.
        let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        addr.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        // SAFETY: buffer and address are valid for the duration of the call.
        let sent = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                batch.as_ptr().cast(),
                batch.len(),
                0,
                (&addr as *const libc::sockaddr_nl).cast(),
                std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        };
        if sent < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Reads the answers to a batch: errors of any message, the acknowledgement of the last
    /// (`last_seq`). The kernel processes a batch synchronously inside sendto(2), so every
    /// answer is queued by now; the first error is returned (the transaction was then
    /// aborted as a whole).
    fn read_acks(&self, last_seq: u32) -> io::Result<()> {
        let mut buf = vec![0u8; 1 << 16];
        let mut first_error: Option<io::Error> = None;
        loop {
            // SAFETY: buf is valid for writes of its length.
            let n = unsafe { libc::recv(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), libc::MSG_DONTWAIT) };
            if n < 0 {
                let err = io::Error::last_os_error();
                if err.kind() == io::ErrorKind::WouldBlock {
                    break;
                }
                return Err(err);
            }
            let mut done = false;
            let mut off = 0usize;
            let n = n as usize;
            while off + 16 <= n {
                let len = u32::from_ne_bytes([buf[off], buf[off + 1], buf[off + 2], buf[off + 3]]) as usize;
                let kind = u16::from_ne_bytes([buf[off + 4], buf[off + 5]]);
                let seq = u32::from_ne_bytes([buf[off + 8], buf[off + 9], buf[off + 10], buf[off + 11]]);
                if len < 16 || off + len > n {
                    break;
                }
                if kind == NLMSG_ERROR && len >= 20 {
                    let code = i32::from_ne_bytes([buf[off + 16], buf[off + 17], buf[off + 18], buf[off + 19]]);
                    if code != 0 && first_error.is_none() {
                        first_error = Some(io::Error::from_raw_os_error(-code));
                    }
                    done |= seq == last_seq;
                }
                off += align4(len);
            }
            if done {
                break;
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum OpKind {
    Add,
    Delete,
    Flush,
}

fn op_kind(op: &ElementOp) -> (OpKind, &'static str) {
    match op {
        ElementOp::Add { set, .. } => (OpKind::Add, set),
        ElementOp::Delete { set, .. } => (OpKind::Delete, set),
        ElementOp::Flush { set } => (OpKind::Flush, set),
    }
}

fn align4(n: usize) -> usize {
    (n + 3) & !3
}

/// Writes a netlink header plus `nfgenmsg` (family ip, version 0, res_id 0); returns the
/// offset to patch the length at.
fn begin_message(buf: &mut Vec<u8>, kind: u16, flags: u16, seq: u32) -> usize {
    let start = buf.len();
    buf.extend_from_slice(&0u32.to_ne_bytes());
    buf.extend_from_slice(&kind.to_ne_bytes());
    buf.extend_from_slice(&flags.to_ne_bytes());
    buf.extend_from_slice(&seq.to_ne_bytes());
    buf.extend_from_slice(&0u32.to_ne_bytes());
    buf.push(libc::AF_INET as u8);
    buf.push(0);
    buf.extend_from_slice(&0u16.to_be_bytes());
    start
}

fn end_message(buf: &mut [u8], start: usize) {
    let len = (buf.len() - start) as u32;
    buf[start..start + 4].copy_from_slice(&len.to_ne_bytes());
}

/// Batch begin/end: `nfgenmsg` with family unspec and res_id = the nftables subsystem.
fn put_batch_marker(buf: &mut Vec<u8>, kind: u16, seq: u32) {
    let start = buf.len();
    buf.extend_from_slice(&0u32.to_ne_bytes());
    buf.extend_from_slice(&kind.to_ne_bytes());
    buf.extend_from_slice(&NLM_F_REQUEST.to_ne_bytes());
    buf.extend_from_slice(&seq.to_ne_bytes());
    buf.extend_from_slice(&0u32.to_ne_bytes());
    buf.push(libc::AF_UNSPEC as u8);
    buf.push(0);
    buf.extend_from_slice(&NFNL_SUBSYS_NFTABLES.to_be_bytes());
    end_message(buf, start);
}

fn put_attr(buf: &mut Vec<u8>, kind: u16, payload: &[u8]) {
    let len = 4 + payload.len();
    buf.extend_from_slice(&(len as u16).to_ne_bytes());
    buf.extend_from_slice(&kind.to_ne_bytes());
    buf.extend_from_slice(payload);
    buf.resize(buf.len() + (align4(len) - len), 0);
}

fn put_attr_str(buf: &mut Vec<u8>, kind: u16, s: &str) {
    let mut bytes = Vec::with_capacity(s.len() + 1);
    bytes.extend_from_slice(s.as_bytes());
    bytes.push(0);
    put_attr(buf, kind, &bytes);
}

fn put_element(buf: &mut Vec<u8>, key: &[u8], data: Option<&ElementData>) {
    let mut elem = Vec::with_capacity(64);
    let mut key_attr = Vec::with_capacity(key.len() + 8);
    put_attr(&mut key_attr, NFTA_DATA_VALUE, key);
    put_attr(&mut elem, NFTA_SET_ELEM_KEY | NLA_F_NESTED, &key_attr);
    match data {
        None | Some(ElementData::None) => {}
        Some(ElementData::Value(value)) => {
            let mut data_attr = Vec::with_capacity(value.len() + 8);
            put_attr(&mut data_attr, NFTA_DATA_VALUE, value);
            put_attr(&mut elem, NFTA_SET_ELEM_DATA | NLA_F_NESTED, &data_attr);
        }
        Some(verdict @ (ElementData::Goto(_) | ElementData::Jump(_) | ElementData::Drop)) => {
            let mut v = Vec::with_capacity(48);
            let (code, chain) = match verdict {
                ElementData::Goto(chain) => (NFT_GOTO, Some(chain)),
                ElementData::Jump(chain) => (NFT_JUMP, Some(chain)),
                _ => (NF_DROP, None),
            };
            put_attr(&mut v, NFTA_VERDICT_CODE, &code.to_be_bytes());
            if let Some(chain) = chain {
                put_attr_str(&mut v, NFTA_VERDICT_CHAIN, chain);
            }
            let mut data_attr = Vec::with_capacity(v.len() + 4);
            put_attr(&mut data_attr, NFTA_DATA_VERDICT | NLA_F_NESTED, &v);
            put_attr(&mut elem, NFTA_SET_ELEM_DATA | NLA_F_NESTED, &data_attr);
        }
    }
    put_attr(buf, NFTA_LIST_ELEM | NLA_F_NESTED, &elem);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_are_padded_to_four_bytes() {
        let mut buf = Vec::new();
        put_attr_str(&mut buf, 1, "abc");
        assert_eq!(buf, vec![8, 0, 1, 0, b'a', b'b', b'c', 0]);
        let mut buf = Vec::new();
        put_attr(&mut buf, 2, &[1]);
        assert_eq!(buf, vec![5, 0, 2, 0, 1, 0, 0, 0]);
    }

    #[test]
    fn verdict_element_layout() {
        let mut buf = Vec::new();
        put_element(&mut buf, &[10, 0, 0, 1], Some(&ElementData::Goto("c".into())));
        // list elem { key { value 4 bytes } data { verdict { code, chain "c" } } }
        assert_eq!(u16::from_ne_bytes([buf[2], buf[3]]), NFTA_LIST_ELEM | NLA_F_NESTED);
        assert_eq!(u16::from_ne_bytes([buf[0], buf[1]]) as usize, buf.len());
        let code_at = buf.windows(4).position(|w| w == NFT_GOTO.to_be_bytes()).unwrap();
        assert!(code_at > 12);
    }
}
