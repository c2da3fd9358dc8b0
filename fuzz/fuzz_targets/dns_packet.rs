//! Fuzzes the DNS packet path: any bytes, as a UDP datagram and as a TCP message, through
//! the query parser, the answer logic and the response writer, against the spec checklist
//! fixture. `check_packet` asserts no panic, responses within the size limit, and the ID
//! echoed.

#![no_main]

use std::sync::{Arc, OnceLock};

use libfuzzer_sys::fuzz_target;
use skiff_dns::{fixture, Answerer};

static ANSWERER: OnceLock<Arc<Answerer>> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    let answerer = ANSWERER.get_or_init(fixture::answerer);
    fixture::check_packet(answerer, data);
});
