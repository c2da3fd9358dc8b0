//! Names outside the cluster zone: forwarding to upstream servers, with a small cache.
//!
//! An upstream answer is parsed once (with hickory-proto, which knows how to decompress
//! every record type) and stored as standalone wire records with uncompressed names, so a
//! cached answer is replayed by copying bytes and lowering TTLs, on the same
//! [`ResponseBuilder`] path as authoritative answers. Cache lifetimes are short on
//! purpose: at most [`MAX_POSITIVE_TTL`] for answers and [`MAX_NEGATIVE_TTL`] for denials.
//!
//! Each upstream exchange uses a fresh UDP socket on an ephemeral port with a random ID
//! (spoofed answers must guess both), retries over TCP when the answer is truncated, and
//! moves to the next upstream after [`UPSTREAM_TIMEOUT`].

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::{Record, RecordType};
use hickory_proto::serialize::binary::{BinEncodable, BinEncoder, NameEncoding};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

use crate::answer::{UpstreamJob, UpstreamKind};
use crate::wire::{parse_query, rcode, rtype, ResponseBuilder, Section, HEADER_LEN};

/// Longest a positive upstream answer is cached.
pub const MAX_POSITIVE_TTL: u32 = 30;
/// Longest a negative upstream answer (NXDOMAIN, NODATA) is cached.
pub const MAX_NEGATIVE_TTL: u32 = 5;
/// How long to wait for one upstream before trying the next.
pub const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(2);
/// Most cached answers; beyond it expired ones are dropped, then everything.
const CACHE_CAPACITY: usize = 10_000;
/// UDP payload size advertised to upstreams.
const UPSTREAM_UDP_SIZE: u16 = 1232;

/// One record of a cached answer: complete wire bytes and where its TTL sits.
#[derive(Debug, Clone)]
struct CachedRecord {
    bytes: Vec<u8>,
    ttl_at: usize,
    ttl: u32,
}

/// An upstream answer, ready to replay.
#[derive(Debug)]
pub struct UpstreamAnswer {
    rcode: u8,
    answers: Vec<CachedRecord>,
    authorities: Vec<CachedRecord>,
    additionals: Vec<CachedRecord>,
    stored: Instant,
    expires: Instant,
}

impl UpstreamAnswer {
    fn is_positive(&self) -> bool {
        self.rcode == rcode::NOERROR && !self.answers.is_empty()
    }
}

/// Cached answers by (lowercase wire name, query type).
type Cache = HashMap<(Vec<u8>, u16), Arc<UpstreamAnswer>>;

/// The upstream servers and the answer cache.
pub struct Forwarder {
    upstreams: Vec<SocketAddr>,
    cache: Mutex<Cache>,
}

impl Forwarder {
    pub fn new(upstreams: Vec<SocketAddr>) -> Forwarder {
        Forwarder { upstreams, cache: Mutex::new(HashMap::new()) }
    }

    pub fn upstreams(&self) -> &[SocketAddr] {
        &self.upstreams
    }

    /// Answers `job` from the cache alone, without I/O. Returns the response code, or `None`
    /// when the upstream must be asked.
    pub fn try_cached(&self, job: &UpstreamJob, buf: &mut Vec<u8>) -> Option<u16> {
        let (name, qtype) = lookup_key(job)?;
        let cached = self.cached(&name, qtype)?;
        Some(write_response(job, Some(&cached), buf))
    }

    /// Completes `job`, asking the upstreams when the cache has no answer; writes the
    /// response to `buf` and returns its response code.
    pub async fn complete(&self, job: &UpstreamJob, buf: &mut Vec<u8>) -> u16 {
        let Some((name, qtype)) = lookup_key(job) else {
            return write_response(job, None, buf);
        };
        let answer = match self.cached(&name, qtype) {
            Some(hit) => Some(hit),
            None => self.resolve(&name, qtype).await,
        };
        write_response(job, answer.as_deref(), buf)
    }

    fn cached(&self, name: &[u8], qtype: u16) -> Option<Arc<UpstreamAnswer>> {
        let cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        let hit = cache.get(&(name.to_vec(), qtype))?;
        (hit.expires > Instant::now()).then(|| hit.clone())
    }

    /// Asks the upstreams in order; caches and returns the first usable answer.
    async fn resolve(&self, name: &[u8], qtype: u16) -> Option<Arc<UpstreamAnswer>> {
        for upstream in &self.upstreams {
            let Some(message) = exchange(*upstream, name, qtype).await else { continue };
            let rcode = u16::from(message.metadata.response_code);
            if rcode != u16::from(rcode::NOERROR) && rcode != u16::from(rcode::NXDOMAIN) {
                continue;
            }
            let answer = Arc::new(to_cached(&message));
            self.store(name, qtype, answer.clone());
            return Some(answer);
        }
        None
    }

    fn store(&self, name: &[u8], qtype: u16, answer: Arc<UpstreamAnswer>) {
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= CACHE_CAPACITY {
            let now = Instant::now();
            cache.retain(|_, a| a.expires > now);
            if cache.len() >= CACHE_CAPACITY {
                cache.clear();
            }
        }
        cache.insert((name.to_vec(), qtype), answer);
    }
}

/// The (lowercase wire name, type) an upstream job asks about.
fn lookup_key(job: &UpstreamJob) -> Option<(Vec<u8>, u16)> {
    match &job.kind {
        UpstreamKind::Forward => {
            let packet = job.query.as_packet();
            let query = parse_query(&packet).ok()?;
            Some((query.qname().to_vec(), query.qtype))
        }
        UpstreamKind::Resolve { target, .. } => Some((target.wire().to_vec(), job.query.qtype)),
    }
}

/// Builds the client's response from an upstream answer (or its absence).
fn write_response(job: &UpstreamJob, answer: Option<&UpstreamAnswer>, buf: &mut Vec<u8>) -> u16 {
    let packet = job.query.as_packet();
    let Ok(query) = parse_query(&packet) else {
        buf.clear();
        return u16::from(rcode::SERVFAIL);
    };
    let now = Instant::now();
    let mut scratch = Vec::new();
    let mut push = |r: &mut ResponseBuilder<'_>, section: Section, record: &CachedRecord, stored: Instant| {
        let elapsed = u32::try_from(now.saturating_duration_since(stored).as_secs()).unwrap_or(u32::MAX);
        scratch.clear();
        scratch.extend_from_slice(&record.bytes);
        scratch[record.ttl_at..record.ttl_at + 4].copy_from_slice(&record.ttl.saturating_sub(elapsed).to_be_bytes());
        r.push_raw(section, &scratch)
    };
    match &job.kind {
        UpstreamKind::Forward => {
            let mut r = ResponseBuilder::new(buf, &query, job.query.limit, job.query.max_udp);
            let Some(answer) = answer else {
                r.set_rcode(u16::from(rcode::SERVFAIL));
                r.finish();
                return u16::from(rcode::SERVFAIL);
            };
            r.set_rcode(u16::from(answer.rcode));
            for (section, records) in [
                (Section::Answer, &answer.answers),
                (Section::Authority, &answer.authorities),
                (Section::Additional, &answer.additionals),
            ] {
                for record in records {
                    push(&mut r, section, record, answer.stored);
                }
            }
            let code = r.rcode();
            r.finish();
            code
        }
        UpstreamKind::Resolve { prefix, fallback, .. } => {
            if let Some(fallback) = fallback {
                if !answer.is_some_and(UpstreamAnswer::is_positive) {
                    buf.clear();
                    buf.extend_from_slice(fallback);
                    return u16::from(buf.get(3).map_or(rcode::SERVFAIL, |b| b & 0x0f));
                }
            }
            let mut r = ResponseBuilder::new(buf, &query, job.query.limit, job.query.max_udp);
            r.set_authoritative(fallback.is_none());
            for record in prefix {
                r.push_raw(Section::Answer, record);
            }
            if let Some(answer) = answer {
                r.set_rcode(u16::from(answer.rcode));
                for record in &answer.answers {
                    push(&mut r, Section::Answer, record, answer.stored);
                }
                if !answer.is_positive() {
                    for record in &answer.authorities {
                        push(&mut r, Section::Authority, record, answer.stored);
                    }
                }
            }
            let code = r.rcode();
            r.finish();
            code
        }
    }
}

/// One query to one upstream: UDP, then TCP if the answer was truncated.
async fn exchange(upstream: SocketAddr, name: &[u8], qtype: u16) -> Option<Message> {
    let id: u16 = rand::random();
    let query = upstream_query(id, name, qtype);
    let result = tokio::time::timeout(UPSTREAM_TIMEOUT, async {
        let message = exchange_udp(upstream, id, &query).await?;
        if message.metadata.truncation {
            return exchange_tcp(upstream, id, &query).await;
        }
        Some(message)
    })
    .await;
    match result {
        Ok(Some(message)) if matches_question(&message, name, qtype) => Some(message),
        Ok(_) => None,
        Err(_) => {
            tracing::debug!(%upstream, "upstream timed out");
            None
        }
    }
}

async fn exchange_udp(upstream: SocketAddr, id: u16, query: &[u8]) -> Option<Message> {
    let local: SocketAddr = match upstream.ip() {
        IpAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        IpAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let socket = UdpSocket::bind(local).await.ok()?;
    socket.connect(upstream).await.ok()?;
    socket.send(query).await.ok()?;
    let mut buf = vec![0u8; 65_535];
    loop {
        let n = socket.recv(&mut buf).await.ok()?;
        // Anything with another ID is stale or spoofed: keep waiting for ours.
        if n >= 2 && u16::from_be_bytes([buf[0], buf[1]]) == id {
            return Message::from_vec(&buf[..n]).ok();
        }
    }
}

async fn exchange_tcp(upstream: SocketAddr, id: u16, query: &[u8]) -> Option<Message> {
    let mut stream = TcpStream::connect(upstream).await.ok()?;
    let mut framed = Vec::with_capacity(query.len() + 2);
    framed.extend_from_slice(&u16::try_from(query.len()).ok()?.to_be_bytes());
    framed.extend_from_slice(query);
    stream.write_all(&framed).await.ok()?;
    let len = stream.read_u16().await.ok()?;
    let mut buf = vec![0u8; usize::from(len)];
    stream.read_exact(&mut buf).await.ok()?;
    let message = Message::from_vec(&buf).ok()?;
    (message.metadata.id == id).then_some(message)
}

/// A recursive query for `name` (lowercase wire) with an OPT record.
fn upstream_query(id: u16, name: &[u8], qtype: u16) -> Vec<u8> {
    let mut q = Vec::with_capacity(HEADER_LEN + name.len() + 15);
    q.extend_from_slice(&id.to_be_bytes());
    q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 1]);
    q.extend_from_slice(name);
    q.extend_from_slice(&qtype.to_be_bytes());
    q.extend_from_slice(&crate::wire::CLASS_IN.to_be_bytes());
    q.extend_from_slice(&[0, 0, 41]);
    q.extend_from_slice(&UPSTREAM_UDP_SIZE.to_be_bytes());
    q.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
    q
}

fn matches_question(message: &Message, name: &[u8], qtype: u16) -> bool {
    let Some(question) = message.queries.first() else { return false };
    let Ok(asked) = question.name().to_lowercase().to_bytes() else { return false };
    asked == name && u16::from(question.query_type()) == qtype
}

/// Converts a parsed upstream answer into replayable records and a cache lifetime.
fn to_cached(message: &Message) -> UpstreamAnswer {
    let convert = |records: &[Record]| -> Vec<CachedRecord> {
        records
            .iter()
            .filter(|r| !matches!(r.record_type(), RecordType::OPT | RecordType::TSIG | RecordType::SIG))
            .filter_map(encode_record)
            .collect()
    };
    let answers = convert(&message.answers);
    let authorities = convert(&message.authorities);
    let additionals = convert(&message.additionals);
    let rcode = match message.metadata.response_code {
        ResponseCode::NXDomain => rcode::NXDOMAIN,
        _ => rcode::NOERROR,
    };
    let positive = rcode == rcode::NOERROR && !answers.is_empty();
    let ttl = if positive {
        answers.iter().map(|r| r.ttl).min().unwrap_or(0).min(MAX_POSITIVE_TTL)
    } else {
        // RFC 2308: negative answers live for the SOA's TTL (bounded by its minimum field).
        authorities
            .iter()
            .filter(|r| r.bytes.get(r.ttl_at - 4..r.ttl_at - 2) == Some(&rtype::SOA.to_be_bytes()[..]))
            .map(|r| r.ttl)
            .min()
            .unwrap_or(0)
            .min(MAX_NEGATIVE_TTL)
    };
    let stored = Instant::now();
    UpstreamAnswer {
        rcode,
        answers,
        authorities,
        additionals,
        stored,
        expires: stored + Duration::from_secs(u64::from(ttl)),
    }
}

/// Encodes one record standalone, with uncompressed names.
fn encode_record(record: &Record) -> Option<CachedRecord> {
    let mut bytes = Vec::new();
    let mut encoder = BinEncoder::new(&mut bytes);
    encoder.set_name_encoding(NameEncoding::Uncompressed);
    record.emit(&mut encoder).ok()?;
    let owner_len = owner_len(&bytes)?;
    let ttl_at = owner_len + 4;
    bytes.get(ttl_at..ttl_at + 4)?;
    Some(CachedRecord { bytes, ttl_at, ttl: record.ttl })
}

/// Length of the uncompressed owner name at the start of `bytes`.
fn owner_len(bytes: &[u8]) -> Option<usize> {
    let mut at = 0;
    loop {
        let len = *bytes.get(at)? as usize;
        if len > 63 {
            return None;
        }
        at += 1 + len;
        if len == 0 {
            return Some(at);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::op::{MessageType, OpCode, Query};
    use hickory_proto::rr::rdata::{A, SOA};
    use hickory_proto::rr::{Name as HName, RData};

    fn upstream_answer(rcode_nx: bool) -> Message {
        let mut m = Message::new(1, MessageType::Response, OpCode::Query);
        let name = HName::from_ascii("www.example.com.").unwrap();
        m.add_query(Query::query(name.clone(), RecordType::A));
        if rcode_nx {
            m.metadata.response_code = ResponseCode::NXDomain;
            let soa = SOA::new(
                HName::from_ascii("ns.example.com.").unwrap(),
                HName::from_ascii("h.example.com.").unwrap(),
                1,
                2,
                3,
                4,
                60,
            );
            m.add_authority(Record::from_rdata(HName::from_ascii("example.com.").unwrap(), 60, RData::SOA(soa)));
        } else {
            m.add_answer(Record::from_rdata(name, 300, RData::A(A::new(192, 0, 2, 53))));
        }
        m
    }

    #[test]
    fn caches_with_bounded_lifetimes() {
        let positive = to_cached(&upstream_answer(false));
        assert!(positive.is_positive());
        assert_eq!(positive.expires - positive.stored, Duration::from_secs(u64::from(MAX_POSITIVE_TTL)));
        let record = &positive.answers[0];
        assert_eq!(record.ttl, 300);
        assert_eq!(&record.bytes[record.ttl_at..record.ttl_at + 4], &300u32.to_be_bytes());
        let negative = to_cached(&upstream_answer(true));
        assert!(!negative.is_positive());
        assert_eq!(negative.rcode, rcode::NXDOMAIN);
        assert_eq!(negative.expires - negative.stored, Duration::from_secs(u64::from(MAX_NEGATIVE_TTL)));
    }

    #[test]
    fn upstream_queries_parse_back() {
        let name = crate::name::Name::from_dotted("www.example.com").unwrap();
        let q = upstream_query(42, name.wire(), rtype::AAAA);
        let parsed = parse_query(&q).unwrap();
        assert_eq!(parsed.id, 42);
        assert_eq!(parsed.qname(), name.wire());
        assert_eq!(parsed.qtype, rtype::AAAA);
        assert!(parsed.edns.is_some());
    }
}
