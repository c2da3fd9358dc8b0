//! Fuzzes the DNS packet path end to end, minus the sockets: any bytes, as a UDP datagram and
//! as a TCP message, go through the query parser, the answer logic (lookups in a table fed
//! the dns.md checklist fixture through the real `ZoneFeeder`: ClusterIP, headless,
//! ExternalName, SRV, PTR, pod and search-path answers) and the response writer.
//! `check_packet` asserts what must hold for any input: no panic, responses within the size
//! limit, the ID and question echoed, every response a well-formed DNS message, and upstream
//! work that reads back the same question.

#![no_main]

use std::sync::{Arc, OnceLock};

use libfuzzer_sys::fuzz_target;
use skiff_dns::{fixture, Answerer};

static ANSWERER: OnceLock<Arc<Answerer>> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    let answerer = ANSWERER.get_or_init(fixture::answerer);
    fixture::check_packet(answerer, data);
});
