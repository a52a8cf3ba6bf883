//! Arbitrary DNS messages into the message reader and the query/answer pairing: they must
//! not panic, must keep the pending queries bounded, and must only ever give labels from
//! the closed sets (a question type or response code a process chose must not become a
//! new label value).
//!
//! The input is a list of records, each one message a process sent or read:
//!
//! ```text
//! flags: u8      bit 0: direction (0 read, 1 sent); bit 1: over TCP (a 2-byte length
//!                first); bits 2-3: which of four sockets; bits 4-7: milliseconds since
//!                the previous message, times 400 (so some waits pass the 5 s timeout)
//! len: u8        bytes of the message that follow (fewer if the input ends)
//! data: [u8; len]
//! ```
//!
//! The seeds in `fuzz/corpus/dns/` are dnsmasq's answers and the queries of the unit tests.
#![no_main]

use libfuzzer_sys::fuzz_target;
use monitor_protocols::dns::{self, Lookups, MAX_PENDING, TIMEOUT_NS};

const QUESTION_TYPES: &[&str] = &[
    "A", "NS", "CNAME", "SOA", "PTR", "HINFO", "MX", "TXT", "AAAA", "LOC", "SRV", "NAPTR", "DS",
    "RRSIG", "NSEC", "DNSKEY", "TLSA", "SVCB", "HTTPS", "SPF", "AXFR", "ANY", "CAA", "_OTHER",
];
const RESPONSE_CODES: &[&str] = &[
    "NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN", "NOTIMP", "REFUSED", "YXDOMAIN", "YXRRSET",
    "NXRRSET", "NOTAUTH", "NOTZONE", "_OTHER", "timeout",
];

fuzz_target!(|input: &[u8]| {
    let mut lookups: Lookups<u8, ()> = Lookups::default();
    let mut done = Vec::new();
    let mut now_ns = 0u64;
    let mut rest = input;
    while let [flags, len, tail @ ..] = rest {
        let len = usize::from(*len).min(tail.len());
        let (data, tail) = tail.split_at(len);
        rest = tail;
        now_ns += u64::from(flags >> 4) * 400_000_000;
        let message = if flags & 2 != 0 {
            dns::parse_stream(data)
        } else {
            dns::parse(data)
        };
        if let Some(message) = message {
            let socket = (flags >> 2) & 3;
            lookups.message(socket, flags & 1 != 0, &message, now_ns, || (), &mut done);
        }
        lookups.expire(now_ns, &mut done);
        assert!(lookups.pending() <= MAX_PENDING);
    }
    for lookup in &done {
        assert!(QUESTION_TYPES.contains(&dns::question_type(lookup.qtype)));
        assert!(RESPONSE_CODES.contains(&lookup.outcome.label()));
        assert!(lookup.duration_ns <= now_ns.max(TIMEOUT_NS));
    }
});
