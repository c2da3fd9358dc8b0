//! The DNS wire format on the hot path: reading a query, writing a response.
//!
//! Answering from the table needs only the header, the one question and the EDNS OPT record
//! of a query, so this module reads exactly those, by hand, without allocating: the query
//! name is lowercased into a fixed buffer for the table lookup, and the question bytes are
//! later copied verbatim into the response (which is how answers echo the query's case).
//! Every read is bounds-checked; a malformed packet becomes a [`ParseError`], never a panic
//! (the `fuzz/` target exercises exactly this).
//!
//! [`ResponseBuilder`] writes a response into a reusable buffer, keeping it within the
//! client's size limit: answers that do not fit set TC, additional records that do not fit
//! are left out.

use crate::name::{MAX_LABEL_LEN, MAX_NAME_LEN};

/// Size of the fixed DNS header.
pub const HEADER_LEN: usize = 12;
/// Largest response over UDP without EDNS (RFC 1035).
pub const CLASSIC_UDP_LIMIT: usize = 512;
/// Largest DNS message (TCP length prefix).
pub const MAX_MESSAGE: usize = 65_535;
/// Bytes of an OPT record without options.
const OPT_LEN: usize = 11;

/// Record types this server knows by name.
pub mod rtype {
    pub const A: u16 = 1;
    pub const NS: u16 = 2;
    pub const CNAME: u16 = 5;
    pub const SOA: u16 = 6;
    pub const PTR: u16 = 12;
    pub const TXT: u16 = 16;
    pub const AAAA: u16 = 28;
    pub const SRV: u16 = 33;
    pub const OPT: u16 = 41;
    pub const IXFR: u16 = 251;
    pub const AXFR: u16 = 252;
    pub const ANY: u16 = 255;
}

/// Response codes (the low four bits; BADVERS is an extended code carried in OPT).
pub mod rcode {
    pub const NOERROR: u8 = 0;
    pub const FORMERR: u8 = 1;
    pub const SERVFAIL: u8 = 2;
    pub const NXDOMAIN: u8 = 3;
    pub const NOTIMP: u8 = 4;
    pub const REFUSED: u8 = 5;
    /// Extended rcode 16: the query's EDNS version is not supported.
    pub const BADVERS: u16 = 16;
}

pub const CLASS_IN: u16 = 1;
pub const CLASS_ANY: u16 = 255;

/// The EDNS0 OPT record of a query.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Edns {
    /// The requestor's UDP payload size (values below 512 count as 512).
    pub udp_size: u16,
    pub version: u8,
    pub dnssec_ok: bool,
}

/// A parsed query. Borrowed from the packet; the lowercase name lives inline.
#[derive(Clone)]
pub struct Query<'a> {
    pub packet: &'a [u8],
    pub id: u16,
    pub opcode: u8,
    pub recursion_desired: bool,
    pub checking_disabled: bool,
    qname: [u8; MAX_NAME_LEN],
    qname_len: usize,
    /// End offset of the question (name, type, class) in `packet`.
    pub question_end: usize,
    pub qtype: u16,
    pub qclass: u16,
    pub edns: Option<Edns>,
}

impl Query<'_> {
    /// The query name, lowercase wire format.
    pub fn qname(&self) -> &[u8] {
        &self.qname[..self.qname_len]
    }

    /// The question section exactly as the client sent it.
    pub fn question(&self) -> &[u8] {
        &self.packet[HEADER_LEN..self.question_end]
    }

    /// The largest response this client accepts over UDP, capped at `max_udp`.
    pub fn udp_limit(&self, max_udp: usize) -> usize {
        match self.edns {
            Some(edns) => (edns.udp_size as usize).clamp(CLASSIC_UDP_LIMIT, max_udp.max(CLASSIC_UDP_LIMIT)),
            None => CLASSIC_UDP_LIMIT,
        }
    }
}

/// Why a packet is not a query this server can answer normally.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParseError {
    /// Not worth any answer: shorter than a header, or a response (answering responses
    /// invites reflection loops).
    Ignore,
    /// The header is readable; answer with just a header carrying `rcode`.
    Reject { id: u16, opcode: u8, recursion_desired: bool, rcode: u8 },
}

fn be16(packet: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*packet.get(at)?, *packet.get(at + 1)?]))
}

fn be32(packet: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes([*packet.get(at)?, *packet.get(at + 1)?, *packet.get(at + 2)?, *packet.get(at + 3)?]))
}

/// Reads a query packet.
pub fn parse_query(packet: &[u8]) -> Result<Query<'_>, ParseError> {
    if packet.len() < HEADER_LEN {
        return Err(ParseError::Ignore);
    }
    let id = u16::from_be_bytes([packet[0], packet[1]]);
    let flags = u16::from_be_bytes([packet[2], packet[3]]);
    if flags & 0x8000 != 0 {
        return Err(ParseError::Ignore);
    }
    let opcode = ((flags >> 11) & 0x0f) as u8;
    let recursion_desired = flags & 0x0100 != 0;
    let reject = |rcode| ParseError::Reject { id, opcode, recursion_desired, rcode };
    if opcode != 0 {
        return Err(reject(rcode::NOTIMP));
    }
    let counts = [be16(packet, 4), be16(packet, 6), be16(packet, 8), be16(packet, 10)];
    let [Some(qdcount), Some(ancount), Some(nscount), Some(arcount)] = counts else {
        return Err(reject(rcode::FORMERR));
    };
    if qdcount != 1 || ancount != 0 {
        return Err(reject(rcode::FORMERR));
    }
    let mut qname = [0u8; MAX_NAME_LEN];
    let mut qname_len = 0;
    let mut at = HEADER_LEN;
    loop {
        let len = *packet.get(at).ok_or(reject(rcode::FORMERR))? as usize;
        // Compression pointers (and the reserved label types) have no place in a question.
        if len > MAX_LABEL_LEN || qname_len + len + 1 > MAX_NAME_LEN {
            return Err(reject(rcode::FORMERR));
        }
        let label = packet.get(at + 1..at + 1 + len).ok_or(reject(rcode::FORMERR))?;
        qname[qname_len] = len as u8;
        for (dst, src) in qname[qname_len + 1..qname_len + 1 + len].iter_mut().zip(label) {
            *dst = src.to_ascii_lowercase();
        }
        qname_len += len + 1;
        at += len + 1;
        if len == 0 {
            break;
        }
    }
    let qtype = be16(packet, at).ok_or(reject(rcode::FORMERR))?;
    let qclass = be16(packet, at + 2).ok_or(reject(rcode::FORMERR))?;
    let question_end = at + 4;
    let edns =
        read_edns(packet, question_end, usize::from(nscount), usize::from(arcount)).ok_or(reject(rcode::FORMERR))?;
    Ok(Query {
        packet,
        id,
        opcode,
        recursion_desired,
        checking_disabled: flags & 0x0010 != 0,
        qname,
        qname_len,
        question_end,
        qtype,
        qclass,
        edns,
    })
}

/// Skips the authority and additional records and returns the OPT record, if any. `None`
/// means the sections are malformed (or hold two OPT records, which RFC 6891 makes a
/// FORMERR).
#[allow(clippy::option_option)] // outer: well-formed or not; inner: OPT present or not
fn read_edns(packet: &[u8], mut at: usize, nscount: usize, arcount: usize) -> Option<Option<Edns>> {
    let mut edns = None;
    for index in 0..nscount + arcount {
        let name_start = at;
        at = skip_name(packet, at)?;
        let rtype = be16(packet, at)?;
        let class = be16(packet, at + 2)?;
        let ttl = be32(packet, at + 4)?;
        let rdlen = be16(packet, at + 8)? as usize;
        at += 10;
        packet.get(at..at + rdlen)?;
        if rtype == rtype::OPT {
            let in_additional = index >= nscount;
            if !in_additional || edns.is_some() || packet[name_start] != 0 {
                return None;
            }
            edns = Some(Edns {
                udp_size: class.max(CLASSIC_UDP_LIMIT as u16),
                version: (ttl >> 16) as u8,
                dnssec_ok: ttl & 0x8000 != 0,
            });
        }
        at += rdlen;
    }
    Some(edns)
}

/// Offset just past the (possibly compressed) name at `at`.
fn skip_name(packet: &[u8], mut at: usize) -> Option<usize> {
    loop {
        let len = *packet.get(at)?;
        match len {
            0 => return Some(at + 1),
            1..=63 => at += 1 + len as usize,
            // A pointer ends the name; where it points does not matter for skipping.
            0xc0..=0xff => {
                packet.get(at + 1)?;
                return Some(at + 2);
            }
            _ => return None,
        }
    }
}

/// Owner name of a record being written.
#[derive(Clone, Copy)]
pub enum Owner<'a> {
    /// The query name: a compression pointer to the question, so the client's case echoes.
    Question,
    /// A name in (lowercase) wire format, written out in full.
    Name(&'a [u8]),
}

/// Response sections, in the order they must be written.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
pub enum Section {
    Answer,
    Authority,
    Additional,
}

/// Writes one response into a caller-owned buffer.
pub struct ResponseBuilder<'b> {
    buf: &'b mut Vec<u8>,
    limit: usize,
    edns: Option<Edns>,
    max_udp: u16,
    counts: [u16; 3],
    section: Section,
    truncated: bool,
    rcode: u16,
    authoritative: bool,
}

/// The question-name pointer: offset 12, right after the header.
const QUESTION_POINTER: [u8; 2] = [0xc0, HEADER_LEN as u8];

impl<'b> ResponseBuilder<'b> {
    /// Starts a response to `query` that must stay within `limit` bytes. `max_udp` is the UDP
    /// payload size this server advertises in its OPT record.
    pub fn new(buf: &'b mut Vec<u8>, query: &Query<'_>, limit: usize, max_udp: u16) -> ResponseBuilder<'b> {
        buf.clear();
        buf.extend_from_slice(&query.id.to_be_bytes());
        buf.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0, 0]);
        buf.extend_from_slice(query.question());
        let edns = query.edns;
        let reserve = if edns.is_some() { OPT_LEN } else { 0 };
        let mut builder = ResponseBuilder {
            buf,
            limit: limit.saturating_sub(reserve).min(MAX_MESSAGE - reserve),
            edns,
            max_udp,
            counts: [0; 3],
            section: Section::Answer,
            truncated: false,
            rcode: u16::from(rcode::NOERROR),
            authoritative: false,
        };
        builder.set_flags_from(query);
        builder
    }

    fn set_flags_from(&mut self, query: &Query<'_>) {
        // QR, opcode (always QUERY here), RD copied, RA set (names outside the zone are
        // forwarded), CD copied.
        let mut flags: u16 = 0x8000 | 0x0080;
        if query.recursion_desired {
            flags |= 0x0100;
        }
        if query.checking_disabled {
            flags |= 0x0010;
        }
        self.buf[2..4].copy_from_slice(&flags.to_be_bytes());
    }

    pub fn set_rcode(&mut self, rcode: u16) {
        self.rcode = rcode;
    }

    pub fn rcode(&self) -> u16 {
        self.rcode
    }

    pub fn set_authoritative(&mut self, authoritative: bool) {
        self.authoritative = authoritative;
    }

    /// Whether an answer or authority record has been left out for lack of room.
    pub fn truncated(&self) -> bool {
        self.truncated
    }

    /// Marks the response truncated (an upstream answer that was itself truncated).
    pub fn set_truncated(&mut self) {
        self.truncated = true;
    }

    /// Records written to `section` so far.
    pub fn count(&self, section: Section) -> u16 {
        self.counts[section as usize]
    }

    /// Appends a record: `owner`, then `tail` (type, class, TTL, RDLENGTH and RDATA).
    /// Returns false when it did not fit (answer and authority records then set TC and
    /// nothing more is written to those sections).
    pub fn push(&mut self, section: Section, owner: Owner<'_>, tail: &[u8]) -> bool {
        self.push_pieces(section, owner, &[tail])
    }

    /// Appends a record from the table, stored at the name `stored_at`: like [`Self::push`],
    /// with an SRV target stored relative to its owner ([`append_relative_name`]) written
    /// out in full, as SRV targets must never be compressed (RFC 2782).
    pub fn push_stored(&mut self, section: Section, owner: Owner<'_>, stored_at: &[u8], tail: &[u8]) -> bool {
        let target = (be16(tail, 0) == Some(rtype::SRV)).then(|| tail.get(16..)).flatten();
        let Some((prefix, suffix)) = target.and_then(|name| relative_name_parts(stored_at, name)) else {
            return self.push(section, owner, tail);
        };
        let (Some(head), Some(fixed)) = (tail.get(..8), tail.get(10..16)) else { return false };
        // A name is at most 255 bytes, so the RDATA length fits in u16.
        let rdlen = ((fixed.len() + prefix.len() + suffix.len()) as u16).to_be_bytes();
        self.push_pieces(section, owner, &[head, &rdlen, fixed, prefix, suffix])
    }

    /// Appends a complete record (owner included) already in wire format with uncompressed
    /// names, e.g. from the upstream cache.
    pub fn push_raw(&mut self, section: Section, record: &[u8]) -> bool {
        self.push_pieces(section, Owner::Name(&[]), &[record])
    }

    /// Appends `owner` followed by the concatenation of `pieces`, if it fits.
    fn push_pieces(&mut self, section: Section, owner: Owner<'_>, pieces: &[&[u8]]) -> bool {
        debug_assert!(section >= self.section, "sections out of order");
        if self.truncated && section != Section::Additional {
            return false;
        }
        self.section = section;
        let owner_len = match owner {
            Owner::Question => QUESTION_POINTER.len(),
            Owner::Name(wire) => wire.len(),
        };
        let len = owner_len + pieces.iter().map(|p| p.len()).sum::<usize>();
        if self.buf.len() + len > self.limit || self.counts[section as usize] == u16::MAX {
            if section != Section::Additional {
                self.truncated = true;
            }
            return false;
        }
        match owner {
            Owner::Question => self.buf.extend_from_slice(&QUESTION_POINTER),
            Owner::Name(wire) => self.buf.extend_from_slice(wire),
        }
        for piece in pieces {
            self.buf.extend_from_slice(piece);
        }
        self.counts[section as usize] += 1;
        true
    }

    /// Writes the counts, flags and the OPT record; returns the response length.
    pub fn finish(self) -> usize {
        let ResponseBuilder { buf, edns, max_udp, mut counts, truncated, rcode, authoritative, .. } = self;
        let mut flags = u16::from_be_bytes([buf[2], buf[3]]);
        flags |= rcode & 0x0f;
        if authoritative {
            flags |= 0x0400;
        }
        if truncated {
            flags |= 0x0200;
        }
        buf[2..4].copy_from_slice(&flags.to_be_bytes());
        if edns.is_some() {
            buf.push(0); // root owner
            buf.extend_from_slice(&rtype::OPT.to_be_bytes());
            buf.extend_from_slice(&max_udp.to_be_bytes());
            buf.push((rcode >> 4) as u8); // extended rcode
            buf.extend_from_slice(&[0, 0, 0]); // version 0, DO clear, Z
            buf.extend_from_slice(&[0, 0]); // no options
            counts[2] += 1;
        }
        buf[6..8].copy_from_slice(&counts[0].to_be_bytes());
        buf[8..10].copy_from_slice(&counts[1].to_be_bytes());
        buf[10..12].copy_from_slice(&counts[2].to_be_bytes());
        buf.len()
    }
}

/// Writes a header-only response (FORMERR, NOTIMP) for a packet that could not be parsed.
pub fn write_reject(buf: &mut Vec<u8>, id: u16, opcode: u8, recursion_desired: bool, code: u8) -> usize {
    buf.clear();
    buf.extend_from_slice(&id.to_be_bytes());
    let mut flags: u16 = 0x8000 | (u16::from(opcode & 0x0f) << 11) | u16::from(code & 0x0f);
    if recursion_desired {
        flags |= 0x0100;
    }
    buf.extend_from_slice(&flags.to_be_bytes());
    buf.extend_from_slice(&[0; 8]);
    buf.len()
}

/// First byte of the marker that ends a name stored relative to its owner:
/// `RELATIVE_NAME | k` means "followed by the owner's name without its first `k` labels".
/// The 0x40 label type is reserved (RFC 6891 retired it), so no real name contains it.
const RELATIVE_NAME: u8 = 0x40;
/// Largest `k` the marker can carry.
const MAX_RELATIVE_STRIP: usize = 0x3f;

/// Appends `name` to `out` in the table's storage form for a name inside RDATA at `owner`:
/// the labels of `name` above the longest suffix it shares with `owner` (at label
/// boundaries), then a [`RELATIVE_NAME`] marker saying how many labels to strip from the
/// owner to get that suffix. An SRV target below its Service then costs its own label
/// and one byte instead of the whole name. Names sharing only the root are stored whole.
pub fn append_relative_name(out: &mut Vec<u8>, owner: &[u8], name: &[u8]) {
    let mut suffix = owner;
    for strip in 0..=MAX_RELATIVE_STRIP {
        if suffix.len() <= 1 {
            break;
        }
        if crate::name::is_within_wire(name, suffix) {
            out.extend_from_slice(&name[..name.len() - suffix.len()]);
            out.push(RELATIVE_NAME | strip as u8);
            return;
        }
        match crate::name::parent_wire(suffix) {
            Some(parent) => suffix = parent,
            None => break,
        }
    }
    out.extend_from_slice(name);
}

/// Splits a stored name (see [`append_relative_name`]) at `owner` into its own labels and
/// the owner's suffix it continues with; `None` for a name stored whole (or malformed).
fn relative_name_parts<'a>(owner: &'a [u8], stored: &'a [u8]) -> Option<(&'a [u8], &'a [u8])> {
    let mut at = 0;
    loop {
        let len = *stored.get(at)?;
        match len {
            0 => return None,
            1..=63 => at += 1 + usize::from(len),
            _ if len & 0xc0 == RELATIVE_NAME && at + 1 == stored.len() => {
                let mut suffix = owner;
                for _ in 0..usize::from(len & 0x3f) {
                    suffix = crate::name::parent_wire(suffix)?;
                }
                return Some((&stored[..at], suffix));
            }
            _ => return None,
        }
    }
}

/// The name stored at `owner` (see [`append_relative_name`]), written out in full.
pub fn expand_name(owner: &[u8], stored: &[u8]) -> Vec<u8> {
    match relative_name_parts(owner, stored) {
        Some((prefix, suffix)) => [prefix, suffix].concat(),
        None => stored.to_vec(),
    }
}

/// The record tail (type, class IN, TTL, RDLENGTH, RDATA) for `rdata`.
pub fn record_tail(rtype: u16, ttl: u32, rdata: &[u8]) -> Vec<u8> {
    let mut tail = Vec::with_capacity(10 + rdata.len());
    append_tail(&mut tail, rtype, ttl, rdata);
    tail
}

/// Appends a record tail to `out`.
pub fn append_tail(out: &mut Vec<u8>, rtype: u16, ttl: u32, rdata: &[u8]) {
    out.extend_from_slice(&rtype.to_be_bytes());
    out.extend_from_slice(&CLASS_IN.to_be_bytes());
    out.extend_from_slice(&ttl.to_be_bytes());
    // RDATA built here is at most a name plus a few bytes, far below 64 KiB.
    out.extend_from_slice(&(rdata.len().min(usize::from(u16::MAX)) as u16).to_be_bytes());
    out.extend_from_slice(rdata);
}

/// Iterates over concatenated record tails: yields (type, whole tail, rdata).
pub fn tails(mut blob: &[u8]) -> impl Iterator<Item = (u16, &[u8], &[u8])> {
    std::iter::from_fn(move || {
        let rtype = be16(blob, 0)?;
        let rdlen = be16(blob, 8)? as usize;
        let tail = blob.get(..10 + rdlen)?;
        blob = &blob[10 + rdlen..];
        Some((rtype, tail, &tail[10..]))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A query for `name` (dotted) and `qtype`, optionally with an OPT record.
    pub(crate) fn query_packet(id: u16, name: &str, qtype: u16, edns: Option<u16>) -> Vec<u8> {
        let mut p = Vec::new();
        p.extend_from_slice(&id.to_be_bytes());
        p.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, u8::from(edns.is_some())]);
        for label in name.trim_end_matches('.').split('.').filter(|l| !l.is_empty()) {
            p.push(label.len() as u8);
            p.extend_from_slice(label.as_bytes());
        }
        p.push(0);
        p.extend_from_slice(&qtype.to_be_bytes());
        p.extend_from_slice(&CLASS_IN.to_be_bytes());
        if let Some(size) = edns {
            p.extend_from_slice(&[0, 0, 41]);
            p.extend_from_slice(&size.to_be_bytes());
            p.extend_from_slice(&[0, 0, 0x80, 0, 0, 0]);
        }
        p
    }

    #[test]
    fn parses_a_query_with_edns() {
        let packet = query_packet(0x1234, "SvC1.Cluster.Local", rtype::A, Some(4096));
        let q = parse_query(&packet).unwrap();
        assert_eq!(q.id, 0x1234);
        assert!(q.recursion_desired);
        assert_eq!(q.qname(), b"\x04svc1\x07cluster\x05local\x00");
        assert_eq!(q.qtype, rtype::A);
        assert_eq!(q.edns, Some(Edns { udp_size: 4096, version: 0, dnssec_ok: true }));
        assert_eq!(&q.question()[..5], b"\x04SvC1");
        assert_eq!(q.udp_limit(1232), 1232);
        assert_eq!(q.udp_limit(8192), 4096);
    }

    #[test]
    fn rejects_malformed_packets() {
        assert_eq!(parse_query(b"short").err(), Some(ParseError::Ignore));
        let mut response = query_packet(1, "a", rtype::A, None);
        response[2] |= 0x80;
        assert_eq!(parse_query(&response).err(), Some(ParseError::Ignore));
        let truncated = &query_packet(1, "abc.def", rtype::A, None)[..16];
        assert!(matches!(parse_query(truncated), Err(ParseError::Reject { rcode: rcode::FORMERR, .. })));
        let mut pointer = query_packet(1, "a", rtype::A, None);
        pointer[12] = 0xc0;
        assert!(matches!(parse_query(&pointer), Err(ParseError::Reject { rcode: rcode::FORMERR, .. })));
        let mut notify = query_packet(1, "a", rtype::A, None);
        notify[2] = 0x20; // opcode 4
        assert!(matches!(parse_query(&notify), Err(ParseError::Reject { rcode: rcode::NOTIMP, opcode: 4, .. })));
        let mut two_opts = query_packet(1, "a", rtype::A, Some(1232));
        two_opts[11] = 2;
        two_opts.extend_from_slice(&[0, 0, 41, 4, 0, 0, 0, 0, 0, 0, 0]);
        assert!(matches!(parse_query(&two_opts), Err(ParseError::Reject { rcode: rcode::FORMERR, .. })));
    }

    #[test]
    fn builds_responses_within_the_limit() {
        let packet = query_packet(7, "x.cluster.local", rtype::A, None);
        let q = parse_query(&packet).unwrap();
        let mut buf = Vec::new();
        let mut r = ResponseBuilder::new(&mut buf, &q, CLASSIC_UDP_LIMIT, 1232);
        r.set_authoritative(true);
        let tail = record_tail(rtype::A, 30, &[10, 0, 0, 1]);
        let mut written = 0;
        while r.push(Section::Answer, Owner::Question, &tail) {
            written += 1;
        }
        assert!(r.truncated());
        let len = r.finish();
        assert!(len <= CLASSIC_UDP_LIMIT);
        assert_eq!(buf[2] & 0x02, 0x02, "TC set");
        assert_eq!(buf[2] & 0x04, 0x04, "AA set");
        assert_eq!(u16::from_be_bytes([buf[6], buf[7]]), written);
        let parsed: Vec<_> = tails(&tail).collect();
        assert_eq!(parsed, vec![(rtype::A, &tail[..], &[10, 0, 0, 1][..])]);
    }

    #[test]
    fn reject_header() {
        let mut buf = Vec::new();
        assert_eq!(write_reject(&mut buf, 9, 0, true, rcode::FORMERR), HEADER_LEN);
        assert_eq!(buf[..4], [0, 9, 0x81, 0x01]);
    }

    #[test]
    fn names_stored_relative_to_their_owner() {
        let name = |text: &str| crate::name::Name::from_dotted(text).unwrap();
        let svc = name("svc1.testns.svc.cluster.local");
        let port = name("_http._tcp.svc1.testns.svc.cluster.local");
        let endpoint = name("my-pet.svc1.testns.svc.cluster.local");
        for (owner, target, stored_len) in
            [(&svc, &svc, 1), (&port, &svc, 1), (&port, &endpoint, 1 + 7), (&svc, &name("www.example.com"), 17)]
        {
            let mut stored = Vec::new();
            append_relative_name(&mut stored, owner.wire(), target.wire());
            assert_eq!(stored.len(), stored_len, "{target} at {owner}");
            assert_eq!(expand_name(owner.wire(), &stored), target.wire(), "{target} at {owner}");
        }
        // An SRV record stored that way is written with its target in full.
        let mut rdata = vec![0, 0, 0, 100, 0, 80];
        append_relative_name(&mut rdata, port.wire(), endpoint.wire());
        let tail = record_tail(rtype::SRV, 30, &rdata);
        let packet = query_packet(7, "_http._tcp.svc1.testns.svc.cluster.local", rtype::SRV, None);
        let q = parse_query(&packet).unwrap();
        let mut buf = Vec::new();
        let mut r = ResponseBuilder::new(&mut buf, &q, CLASSIC_UDP_LIMIT, 1232);
        assert!(r.push_stored(Section::Answer, Owner::Question, port.wire(), &tail));
        r.finish();
        let written = &buf[packet.len() + 2..];
        assert_eq!(u16::from_be_bytes([written[8], written[9]]) as usize, 6 + endpoint.wire().len());
        assert_eq!(&written[16..], endpoint.wire());
    }
}
