//! Messages captured from `dnsmasq` 2.90 answering a test zone (`local=/test/`,
//! `address=/known.test/10.1.2.3`, `address=/known.test/fd00::3`) on 127.0.0.153:53.
use super::*;

/// `dig @127.0.0.153 x.known.test A` (bind9 9.18): the query as `strace -xx` showed it
/// leave in `sendmmsg` (with dig's EDNS cookie), and the answer read by `recvmsg`.
const DIG_QUERY: &str = "0fd4 0120 0001 0000 0000 0001 \
    01 78 05 6b6e6f776e 04 74657374 00 0001 0001 \
    00 0029 04d0 00 00 0000 000c 000a 0008 824103dcb0f5ce0c";
const DIG_ANSWER: &str = "0fd4 8580 0001 0001 0000 0001 \
    01 78 05 6b6e6f776e 04 74657374 00 0001 0001 \
    c00c 0001 0001 00000000 0004 0a010203 \
    00 0029 04d0 00 00 0000 0000";

/// A Python client's AAAA query for `Host.Known.test` (mixed case) on a connected socket,
/// and dnsmasq's answer, which echoes the question as asked.
const AAAA_QUERY: &str = "abcd01000001000000000000 04486f7374054b6e6f776e0474657374 00 001c0001";
const AAAA_ANSWER: &str = "abcd85800001000100000000 04486f7374054b6e6f776e0474657374 00 001c0001 \
    c00c001c0001000000000010fd000000000000000000000000000003";

/// `nope.test A`: NXDOMAIN from the zone's authority.
const NX_QUERY: &str = "beef01000001000000000000 046e6f706504746573740000010001";
const NX_ANSWER: &str = "beef81830001000000000000 046e6f706504746573740000010001";

fn bytes(hex: &str) -> Vec<u8> {
    let digits: Vec<u8> = hex.bytes().filter(u8::is_ascii_hexdigit).collect();
    digits
        .chunks(2)
        .map(|pair| u8::from_str_radix(std::str::from_utf8(pair).unwrap(), 16).unwrap())
        .collect()
}

fn message(hex: &str) -> Message {
    parse(&bytes(hex)).expect("a DNS message")
}

#[test]
fn a_query_and_its_answer_share_id_and_question() {
    let query = message(DIG_QUERY);
    let answer = message(DIG_ANSWER);
    assert_eq!((query.id, query.response, query.rcode), (0x0fd4, false, 0));
    assert_eq!(
        (answer.id, answer.response, answer.rcode),
        (0x0fd4, true, 0)
    );
    assert_eq!(query.question, answer.question);
    assert_eq!((query.question.qtype, query.question.qclass), (1, 1));
    assert_eq!(question_type(query.question.qtype), "A");
}

#[test]
fn names_compare_without_letter_case() {
    let mut lower = bytes(AAAA_QUERY);
    lower.make_ascii_lowercase();
    assert_eq!(
        parse(&lower).unwrap().question,
        message(AAAA_QUERY).question
    );
    assert_ne!(message(AAAA_QUERY).question, message(NX_QUERY).question);
}

#[test]
fn a_stream_message_starts_after_its_length() {
    let mut framed = vec![0, 33];
    framed.extend(bytes(AAAA_QUERY));
    assert_eq!(parse_stream(&framed), Some(message(AAAA_QUERY)));
    assert_eq!(parse_stream(&[0]), None);
}

#[test]
fn what_is_not_a_standard_query_with_one_question_is_refused() {
    let query = bytes(NX_QUERY);
    for cut in 0..query.len() {
        assert_eq!(parse(&query[..cut]), None, "cut at {cut}");
    }
    let mut notify = query.clone();
    notify[2] |= 4 << 3;
    assert_eq!(parse(&notify), None, "opcode NOTIFY");
    let mut two = query.clone();
    two[5] = 2;
    assert_eq!(parse(&two), None, "two questions");
    let mut pointer = query.clone();
    pointer[12] = 0xc0;
    assert_eq!(
        parse(&pointer),
        None,
        "a compression pointer in the question"
    );
    let mut long = bytes("000001000001000000000000");
    for _ in 0..5 {
        long.push(63);
        long.extend([b'a'; 63]);
    }
    long.extend([0, 0, 1, 0, 1]);
    assert_eq!(parse(&long), None, "a name over 255 bytes");
}

fn lookups() -> (Lookups<u64, &'static str>, Vec<Lookup<&'static str>>) {
    (Lookups::default(), Vec::new())
}

#[test]
fn an_answer_ends_its_lookup_with_its_rcode_and_the_time_between() {
    let (mut lookups, mut done) = lookups();
    assert!(lookups.message(7, true, &message(DIG_QUERY), 1_000, || "dig", &mut done));
    assert!(lookups.message(7, true, &message(NX_QUERY), 2_000, || "dig", &mut done));
    assert!(lookups.message(7, false, &message(NX_ANSWER), 2_500, || "dig", &mut done));
    assert!(lookups.message(7, false, &message(DIG_ANSWER), 4_000, || "dig", &mut done));
    assert_eq!(
        done,
        [
            Lookup {
                context: "dig",
                qtype: 1,
                outcome: Outcome::Answered(3),
                duration_ns: 500,
            },
            Lookup {
                context: "dig",
                qtype: 1,
                outcome: Outcome::Answered(0),
                duration_ns: 3_000,
            },
        ]
    );
    assert_eq!(done[0].outcome.label(), "NXDOMAIN");
    assert_eq!(lookups.pending(), 0);
}

#[test]
fn answers_to_nothing_pending_are_ignored() {
    let (mut lookups, mut done) = lookups();
    // Before any query, on another socket, or twice.
    assert!(!lookups.message(7, false, &message(NX_ANSWER), 1, || "x", &mut done));
    assert!(lookups.message(7, true, &message(NX_QUERY), 1, || "x", &mut done));
    assert!(!lookups.message(8, false, &message(NX_ANSWER), 2, || "x", &mut done));
    // The same id with another question.
    let mut other = message(NX_ANSWER);
    other.question.qtype = 28;
    assert!(!lookups.message(7, false, &other, 2, || "x", &mut done));
    assert!(lookups.message(7, false, &message(NX_ANSWER), 3, || "x", &mut done));
    assert!(!lookups.message(7, false, &message(NX_ANSWER), 4, || "x", &mut done));
    // A process reading a query (a server) starts nothing.
    assert!(!lookups.message(9, false, &message(NX_QUERY), 5, || "x", &mut done));
    assert_eq!(done.len(), 1);
}

#[test]
fn a_retry_keeps_the_first_send_time() {
    let (mut lookups, mut done) = lookups();
    assert!(lookups.message(1, true, &message(AAAA_QUERY), 100, || "a", &mut done));
    assert!(!lookups.message(1, true, &message(AAAA_QUERY), 900, || "b", &mut done));
    lookups.message(1, false, &message(AAAA_ANSWER), 1_100, || "c", &mut done);
    assert_eq!((done[0].context, done[0].duration_ns), ("a", 1_000));
}

#[test]
fn a_query_unanswered_for_five_seconds_times_out_once() {
    let (mut lookups, mut done) = lookups();
    lookups.message(1, true, &message(NX_QUERY), 1_000, || "q", &mut done);
    lookups.expire(1_000 + TIMEOUT_NS - 1, &mut done);
    assert!(done.is_empty());
    lookups.expire(1_000 + TIMEOUT_NS, &mut done);
    assert_eq!(
        done,
        [Lookup {
            context: "q",
            qtype: 1,
            outcome: Outcome::TimedOut,
            duration_ns: TIMEOUT_NS,
        }]
    );
    assert_eq!(done[0].outcome.label(), "timeout");
    // Its late answer is an answer to nothing.
    assert!(!lookups.message(
        1,
        false,
        &message(NX_ANSWER),
        9 * TIMEOUT_NS,
        || "q",
        &mut done
    ));
    assert_eq!(done.len(), 1);
}

#[test]
fn pending_queries_are_bounded() {
    let (mut lookups, mut done) = lookups();
    let query = message(NX_QUERY);
    for socket in 0..MAX_PENDING as u64 {
        assert!(lookups.message(socket, true, &query, 0, || "q", &mut done));
    }
    assert!(!lookups.message(u64::MAX, true, &query, 0, || "q", &mut done));
    assert_eq!(lookups.pending(), MAX_PENDING);
}

#[test]
fn labels_are_a_closed_set() {
    assert_eq!(question_type(28), "AAAA");
    assert_eq!(question_type(65), "HTTPS");
    assert_eq!(question_type(4242), "_OTHER");
    assert_eq!(response_code(2), "SERVFAIL");
    assert_eq!(response_code(15), "_OTHER");
}
