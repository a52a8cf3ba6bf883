//! Byte fixtures fed through [`Connection`], as the agent will: detection included.
//!
//! The fixtures are real: PostgreSQL 15.18 (`initdb -A trust`, no SSL) behind a small TCP
//! proxy that logged each `recv` of either side as one chunk, so each constant is exactly
//! one read of the side that received it. Client-side chunks are written by the client and
//! read by the server, and the other way round: each test runs them once as the client
//! sees them (queries are egress) and once as the server does (queries are ingress).
use super::*;
use crate::{
    Connection,
    Direction::*,
    MAX_BUFFERED_BYTES,
    test_io::{Io, feed, io},
};

/// Only `data` of the `total` bytes were captured.
fn cut(direction: Direction, data: &[u8], total: u64, ts: u64) -> Io<'_> {
    Io(direction, total, data, ts)
}

/// `ios` (captured syscalls as the client sees them) as the client's or, `flip`ped, as the
/// server's.
fn flipped<'a>(ios: &[Io<'a>], flip: bool) -> Vec<Io<'a>> {
    ios.iter()
        .map(|&Io(direction, total, data, ts)| {
            let direction = match (direction, flip) {
                (direction, false) => direction,
                (Egress, true) => Ingress,
                (Ingress, true) => Egress,
            };
            Io(direction, total, data, ts)
        })
        .collect()
}

fn postgres_only(exchanges: Vec<Exchange>) -> Vec<PostgresExchange> {
    exchanges
        .into_iter()
        .map(|exchange| match exchange {
            Exchange::Postgres(postgres) => postgres,
            other => panic!("not PostgreSQL: {other:?}"),
        })
        .collect()
}

/// The exchanges of `ios`, fed as the client's or, `flip`ped, as the server's.
fn feed_all(connection: &mut Connection, ios: &[Io<'_>], flip: bool) -> Vec<PostgresExchange> {
    postgres_only(feed(connection, &flipped(ios, flip)))
}

/// The exchanges of `ios` framed as the probes do ([`kernel::KernelTwin`]), then parsed
/// from the records as the agent does.
fn twin_all(ios: &[Io<'_>], flip: bool) -> Vec<PostgresExchange> {
    let mut twin = kernel::KernelTwin::new();
    let mut out = Vec::new();
    for io in flipped(ios, flip) {
        twin.feed(&io.chunk(), &mut out);
        assert!(twin.connection().buffered_bytes() <= MAX_BUFFERED_BYTES);
    }
    postgres_only(out)
}

/// The exchanges as the client sees them, after checking that the server sees the same, and
/// that the probes' twin gives them too.
fn run(ios: &[Io<'_>]) -> Vec<PostgresExchange> {
    let exchanges = parsed(ios);
    assert_framed(ios, &summary(&exchanges));
    exchanges
}

/// That the probes' twin, as the client and as the server, gives `expected`.
fn assert_framed(ios: &[Io<'_>], expected: &[(&str, Option<&str>, u64)]) {
    for flip in [false, true] {
        let framed = twin_all(ios, flip);
        assert_eq!(
            summary(&framed),
            expected,
            "framed by the probes' twin, as the {}",
            if flip { "server" } else { "client" }
        );
    }
}

/// The exchanges as the client sees them, after checking that the server sees the same
/// (the parser alone, fed the captures).
fn parsed(ios: &[Io<'_>]) -> Vec<PostgresExchange> {
    let mut client = Connection::new();
    let as_client = feed_all(&mut client, ios, false);
    assert!(as_client.iter().all(|e| e.role == Role::Client));
    let mut server = Connection::new();
    let as_server = feed_all(&mut server, ios, true);
    assert!(as_server.iter().all(|e| e.role == Role::Server));
    assert_eq!(summary(&as_client), summary(&as_server));
    if !as_client.is_empty() {
        assert_eq!(client.protocol(), Some("postgresql"));
        assert_eq!(server.protocol(), Some("postgresql"));
    }
    as_client
}

/// (operation, sqlstate, duration) of each exchange.
fn summary(exchanges: &[PostgresExchange]) -> Vec<(&str, Option<&str>, u64)> {
    exchanges
        .iter()
        .map(|e| (e.operation.as_str(), e.sqlstate.as_deref(), e.duration_ns))
        .collect()
}

// `psql "host=127.0.0.1 port=15433 sslmode=prefer"` fed on stdin with `SELECT 1;`,
// `SELECT * FROM missing_table;`, `CREATE TABLE t(id int, name text);`,
// `INSERT INTO t VALUES (1, $$secret$$);`, `SELECT 1 \; SELECT 2;` (one Query message)
// and `/* hint */ (SELECT 3);`. The SSLRequest is refused: the server has no SSL.
const SSL_REQUEST: &[u8] = b"\x00\x00\x00\x08\x04\xd2\x16/";
const SSL_REFUSED: &[u8] = b"N";
const PSQL_STARTUP: &[u8] = b"\x00\x00\x00=\x00\x03\x00\x00user\x00pgtest\x00database\x00postgres\x00application_name\x00psql\x00\x00";
const PSQL_AUTH_OK: &[u8] = b"R\x00\x00\x00\x08\x00\x00\x00\x00S\x00\x00\x00\x1aapplication_name\x00psql\x00S\x00\x00\x00\x19client_encoding\x00UTF8\x00S\x00\x00\x00\x17DateStyle\x00ISO, MDY\x00S\x00\x00\x00&default_transaction_read_only\x00off\x00S\x00\x00\x00\x17in_hot_standby\x00off\x00S\x00\x00\x00\x19integer_datetimes\x00on\x00S\x00\x00\x00\x1bIntervalStyle\x00postgres\x00S\x00\x00\x00\x14is_superuser\x00on\x00S\x00\x00\x00\x19server_encoding\x00UTF8\x00S\x00\x00\x002server_version\x0015.18 (Debian 15.18-0+deb12u1)\x00S\x00\x00\x00!session_authorization\x00pgtest\x00S\x00\x00\x00#standard_conforming_strings\x00on\x00S\x00\x00\x00\x15TimeZone\x00Etc/UTC\x00K\x00\x00\x00\x0c\x00\x00os\xcc_\x00\x8aZ\x00\x00\x00\x05I";
const Q_SELECT_1: &[u8] = b"Q\x00\x00\x00\x0eSELECT 1;\x00";
const R_SELECT_1: &[u8] = b"T\x00\x00\x00!\x00\x01?column?\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x17\x00\x04\xff\xff\xff\xff\x00\x00D\x00\x00\x00\x0b\x00\x01\x00\x00\x00\x011C\x00\x00\x00\x0dSELECT 1\x00Z\x00\x00\x00\x05I";
const Q_MISSING_TABLE: &[u8] = b"Q\x00\x00\x00!SELECT * FROM missing_table;\x00";
const R_MISSING_TABLE: &[u8] = b"E\x00\x00\x00pSERROR\x00VERROR\x00C42P01\x00Mrelation \"missing_table\" does not exist\x00P15\x00Fparse_relation.c\x00L1392\x00RparserOpenTable\x00\x00";
const R_READY_IDLE: &[u8] = b"Z\x00\x00\x00\x05I";
const Q_CREATE: &[u8] = b"Q\x00\x00\x00'CREATE TABLE t(id int, name text);\x00";
const R_CREATE: &[u8] = b"C\x00\x00\x00\x11CREATE TABLE\x00Z\x00\x00\x00\x05I";
const Q_INSERT: &[u8] = b"Q\x00\x00\x00*INSERT INTO t VALUES (1, $$secret$$);\x00";
const R_INSERT: &[u8] = b"C\x00\x00\x00\x0fINSERT 0 1\x00Z\x00\x00\x00\x05I";
const Q_TWO_STATEMENTS: &[u8] = b"Q\x00\x00\x00\x19SELECT 1 ; SELECT 2;\x00";
const R_TWO_STATEMENTS: &[u8] = b"T\x00\x00\x00!\x00\x01?column?\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x17\x00\x04\xff\xff\xff\xff\x00\x00D\x00\x00\x00\x0b\x00\x01\x00\x00\x00\x011C\x00\x00\x00\x0dSELECT 1\x00T\x00\x00\x00!\x00\x01?column?\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x17\x00\x04\xff\xff\xff\xff\x00\x00D\x00\x00\x00\x0b\x00\x01\x00\x00\x00\x012C\x00\x00\x00\x0dSELECT 1\x00Z\x00\x00\x00\x05I";
const Q_COMMENTED: &[u8] = b"Q\x00\x00\x00\x1b/* hint */ (SELECT 3);\x00";
const R_COMMENTED: &[u8] = b"T\x00\x00\x00!\x00\x01?column?\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x17\x00\x04\xff\xff\xff\xff\x00\x00D\x00\x00\x00\x0b\x00\x01\x00\x00\x00\x013C\x00\x00\x00\x0dSELECT 1\x00Z\x00\x00\x00\x05I";
const TERMINATE: &[u8] = b"X\x00\x00\x00\x04";

// `pgbench -M prepared -S -t 5 -c 1` (after `pgbench -i -s 1`): the benchmark's own
// connection, which prepares `P_0` (Parse, Sync) then runs it five times (Bind, Describe,
// Execute, Sync in one write each); then `pgbench -M extended -S -t 3 -c 1`, which sends
// the unnamed statement's Parse with every Bind/Execute. The catalog query is the one
// pgbench's setup connection sends by simple Query; only a prefix is kept here, as a
// capture would.
const PGBENCH_STARTUP: &[u8] = b"\x00\x00\x00=\x00\x03\x00\x00user\x00pgtest\x00database\x00bench\x00application_name\x00pgbench\x00\x00";
const PGBENCH_AUTH_OK: &[u8] = b"R\x00\x00\x00\x08\x00\x00\x00\x00S\x00\x00\x00\x1dapplication_name\x00pgbench\x00S\x00\x00\x00\x19client_encoding\x00UTF8\x00S\x00\x00\x00\x17DateStyle\x00ISO, MDY\x00S\x00\x00\x00&default_transaction_read_only\x00off\x00S\x00\x00\x00\x17in_hot_standby\x00off\x00S\x00\x00\x00\x19integer_datetimes\x00on\x00S\x00\x00\x00\x1bIntervalStyle\x00postgres\x00S\x00\x00\x00\x14is_superuser\x00on\x00S\x00\x00\x00\x19server_encoding\x00UTF8\x00S\x00\x00\x002server_version\x0015.18 (Debian 15.18-0+deb12u1)\x00S\x00\x00\x00!session_authorization\x00pgtest\x00S\x00\x00\x00#standard_conforming_strings\x00on\x00S\x00\x00\x00\x15TimeZone\x00Etc/UTC\x00K\x00\x00\x00\x0c\x00\x00o\xcc\x98\xca8\xf9Z\x00\x00\x00\x05I";
const PGBENCH_PREPARE: &[u8] = b"P\x00\x00\x00@P_0\x00SELECT abalance FROM pgbench_accounts WHERE aid = $1;\x00\x00\x00S\x00\x00\x00\x04";
const R_PREPARED: &[u8] = b"1\x00\x00\x00\x04Z\x00\x00\x00\x05I";
const PGBENCH_EXECUTE_1: &[u8] = b"B\x00\x00\x00\x1a\x00P_0\x00\x00\x00\x00\x01\x00\x00\x00\x0529089\x00\x01\x00\x00D\x00\x00\x00\x06P\x00E\x00\x00\x00\x09\x00\x00\x00\x00\x00S\x00\x00\x00\x04";
const PGBENCH_EXECUTE_2: &[u8] = b"B\x00\x00\x00\x1a\x00P_0\x00\x00\x00\x00\x01\x00\x00\x00\x0536711\x00\x01\x00\x00D\x00\x00\x00\x06P\x00E\x00\x00\x00\x09\x00\x00\x00\x00\x00S\x00\x00\x00\x04";
const PGBENCH_EXECUTE_3: &[u8] = b"B\x00\x00\x00\x1a\x00P_0\x00\x00\x00\x00\x01\x00\x00\x00\x0543110\x00\x01\x00\x00D\x00\x00\x00\x06P\x00E\x00\x00\x00\x09\x00\x00\x00\x00\x00S\x00\x00\x00\x04";
const PGBENCH_EXECUTE_4: &[u8] = b"B\x00\x00\x00\x1a\x00P_0\x00\x00\x00\x00\x01\x00\x00\x00\x0586921\x00\x01\x00\x00D\x00\x00\x00\x06P\x00E\x00\x00\x00\x09\x00\x00\x00\x00\x00S\x00\x00\x00\x04";
const PGBENCH_EXECUTE_5: &[u8] = b"B\x00\x00\x00\x1a\x00P_0\x00\x00\x00\x00\x01\x00\x00\x00\x0592543\x00\x01\x00\x00D\x00\x00\x00\x06P\x00E\x00\x00\x00\x09\x00\x00\x00\x00\x00S\x00\x00\x00\x04";
const R_PGBENCH_EXECUTED: &[u8] = b"2\x00\x00\x00\x04T\x00\x00\x00!\x00\x01abalance\x00\x00\x00@\x0c\x00\x03\x00\x00\x00\x17\x00\x04\xff\xff\xff\xff\x00\x00D\x00\x00\x00\x0b\x00\x01\x00\x00\x00\x010C\x00\x00\x00\x0dSELECT 1\x00Z\x00\x00\x00\x05I";
const PGBENCH_EXTENDED_1: &[u8] = b"P\x00\x00\x00=\x00SELECT abalance FROM pgbench_accounts WHERE aid = $1;\x00\x00\x00B\x00\x00\x00\x17\x00\x00\x00\x00\x00\x01\x00\x00\x00\x0568672\x00\x01\x00\x00D\x00\x00\x00\x06P\x00E\x00\x00\x00\x09\x00\x00\x00\x00\x00S\x00\x00\x00\x04";
const PGBENCH_EXTENDED_2: &[u8] = b"P\x00\x00\x00=\x00SELECT abalance FROM pgbench_accounts WHERE aid = $1;\x00\x00\x00B\x00\x00\x00\x17\x00\x00\x00\x00\x00\x01\x00\x00\x00\x0514952\x00\x01\x00\x00D\x00\x00\x00\x06P\x00E\x00\x00\x00\x09\x00\x00\x00\x00\x00S\x00\x00\x00\x04";
const PGBENCH_EXTENDED_3: &[u8] = b"P\x00\x00\x00=\x00SELECT abalance FROM pgbench_accounts WHERE aid = $1;\x00\x00\x00B\x00\x00\x00\x17\x00\x00\x00\x00\x00\x01\x00\x00\x00\x0555317\x00\x01\x00\x00D\x00\x00\x00\x06P\x00E\x00\x00\x00\x09\x00\x00\x00\x00\x00S\x00\x00\x00\x04";
const R_PGBENCH_EXTENDED: &[u8] = b"1\x00\x00\x00\x042\x00\x00\x00\x04T\x00\x00\x00!\x00\x01abalance\x00\x00\x00@\x0c\x00\x03\x00\x00\x00\x17\x00\x04\xff\xff\xff\xff\x00\x00D\x00\x00\x00\x0b\x00\x01\x00\x00\x00\x010C\x00\x00\x00\x0dSELECT 1\x00Z\x00\x00\x00\x05I";
const PGBENCH_CATALOG_QUERY_PREFIX: &[u8] = b"Q\x00\x00\x01\xe7select o.n, p.partstrat, pg_catalog.count(i.inhparent) from pg_catalog.pg_class as c join pg_catalog.pg_namespace a";
const PGBENCH_CATALOG_QUERY_LEN: u64 = 488;

// A Python script speaking the protocol to the server (no SSLRequest), writing one
// pipeline of six batches in one write: Parse `s1` + Bind + Describe + Execute + Sync; an
// INSERT; a three-row SELECT executed with a row limit of 2 (PortalSuspended) and then
// again; Bind `s1` + Execute, then `SELECT 1/0` (fails at Bind: SQLSTATE 22012), then Bind
// `s1` + Execute (skipped by the server) and Sync; a WITH behind comments and parentheses;
// an empty query (EmptyQueryResponse). The server's answers came in five reads. Then a
// simple Query whose 3063-byte result is kept as a 512-byte capture would.
const RAW_STARTUP: &[u8] =
    b"\x00\x00\x00'\x00\x03\x00\x00user\x00pgtest\x00database\x00postgres\x00\x00";
const RAW_AUTH_OK: &[u8] = b"R\x00\x00\x00\x08\x00\x00\x00\x00S\x00\x00\x00\x16application_name\x00\x00S\x00\x00\x00\x19client_encoding\x00UTF8\x00S\x00\x00\x00\x17DateStyle\x00ISO, MDY\x00S\x00\x00\x00&default_transaction_read_only\x00off\x00S\x00\x00\x00\x17in_hot_standby\x00off\x00S\x00\x00\x00\x19integer_datetimes\x00on\x00S\x00\x00\x00\x1bIntervalStyle\x00postgres\x00S\x00\x00\x00\x14is_superuser\x00on\x00S\x00\x00\x00\x19server_encoding\x00UTF8\x00S\x00\x00\x002server_version\x0015.18 (Debian 15.18-0+deb12u1)\x00S\x00\x00\x00!session_authorization\x00pgtest\x00S\x00\x00\x00#standard_conforming_strings\x00on\x00S\x00\x00\x00\x15TimeZone\x00Etc/UTC\x00K\x00\x00\x00\x0c\x00\x00z\\\xf2\xfc\xafqZ\x00\x00\x00\x05I";
const PIPELINE: &[u8] = b"P\x00\x00\x00\x18s1\x00SELECT $1::int\x00\x00\x00B\x00\x00\x00\x13\x00s1\x00\x00\x00\x00\x01\x00\x00\x00\x017\x00\x00D\x00\x00\x00\x06P\x00E\x00\x00\x00\x09\x00\x00\x00\x00\x00S\x00\x00\x00\x04P\x00\x00\x00%\x00INSERT INTO t VALUES (2, 'x')\x00\x00\x00B\x00\x00\x00\x0c\x00\x00\x00\x00\x00\x00\x00\x00E\x00\x00\x00\x09\x00\x00\x00\x00\x00S\x00\x00\x00\x04P\x00\x00\x00$\x00SELECT generate_series(1, 3)\x00\x00\x00B\x00\x00\x00\x0c\x00\x00\x00\x00\x00\x00\x00\x00E\x00\x00\x00\x09\x00\x00\x00\x00\x02E\x00\x00\x00\x09\x00\x00\x00\x00\x00S\x00\x00\x00\x04B\x00\x00\x00\x13\x00s1\x00\x00\x00\x00\x01\x00\x00\x00\x018\x00\x00E\x00\x00\x00\x09\x00\x00\x00\x00\x00P\x00\x00\x00\x12\x00SELECT 1/0\x00\x00\x00B\x00\x00\x00\x0c\x00\x00\x00\x00\x00\x00\x00\x00E\x00\x00\x00\x09\x00\x00\x00\x00\x00B\x00\x00\x00\x13\x00s1\x00\x00\x00\x00\x01\x00\x00\x00\x019\x00\x00E\x00\x00\x00\x09\x00\x00\x00\x00\x00S\x00\x00\x00\x04P\x00\x00\x00O\x00 -- why\n/* a /* nested */ one */ (with q as (select 1) select * from q)\x00\x00\x00B\x00\x00\x00\x0c\x00\x00\x00\x00\x00\x00\x00\x00E\x00\x00\x00\x09\x00\x00\x00\x00\x00S\x00\x00\x00\x04P\x00\x00\x00\x08\x00\x00\x00\x00B\x00\x00\x00\x0c\x00\x00\x00\x00\x00\x00\x00\x00E\x00\x00\x00\x09\x00\x00\x00\x00\x00S\x00\x00\x00\x04";
const R_PIPELINE_1: &[u8] = b"1\x00\x00\x00\x042\x00\x00\x00\x04T\x00\x00\x00\x1d\x00\x01int4\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x17\x00\x04\xff\xff\xff\xff\x00\x00D\x00\x00\x00\x0b\x00\x01\x00\x00\x00\x017C\x00\x00\x00\x0dSELECT 1\x00Z\x00\x00\x00\x05I";
const R_PIPELINE_2: &[u8] =
    b"1\x00\x00\x00\x042\x00\x00\x00\x04C\x00\x00\x00\x0fINSERT 0 1\x00Z\x00\x00\x00\x05I";
const R_PIPELINE_3: &[u8] = b"1\x00\x00\x00\x042\x00\x00\x00\x04D\x00\x00\x00\x0b\x00\x01\x00\x00\x00\x011D\x00\x00\x00\x0b\x00\x01\x00\x00\x00\x012s\x00\x00\x00\x04D\x00\x00\x00\x0b\x00\x01\x00\x00\x00\x013C\x00\x00\x00\x0dSELECT 1\x00Z\x00\x00\x00\x05I";
const R_PIPELINE_4: &[u8] = b"2\x00\x00\x00\x04D\x00\x00\x00\x0b\x00\x01\x00\x00\x00\x018C\x00\x00\x00\x0dSELECT 1\x001\x00\x00\x00\x04E\x00\x00\x00ASERROR\x00VERROR\x00C22012\x00Mdivision by zero\x00Fint.c\x00L869\x00Rint4div\x00\x00Z\x00\x00\x00\x05I";
const R_PIPELINE_5_6: &[u8] = b"1\x00\x00\x00\x042\x00\x00\x00\x04D\x00\x00\x00\x0b\x00\x01\x00\x00\x00\x011C\x00\x00\x00\x0dSELECT 1\x00Z\x00\x00\x00\x05I1\x00\x00\x00\x042\x00\x00\x00\x04I\x00\x00\x00\x04Z\x00\x00\x00\x05I";
const Q_REPEAT: &[u8] = b"Q\x00\x00\x00\x1dSELECT repeat('x', 3000)\x00";
const R_REPEAT_PREFIX: &[u8] = b"T\x00\x00\x00\x1f\x00\x01repeat\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x19\xff\xff\xff\xff\xff\xff\x00\x00D\x00\x00\x0b\xc2\x00\x01\x00\x00\x0b\xb8xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx";
const R_REPEAT_LEN: u64 = 3063;
const RAW_TERMINATE: &[u8] = b"X\x00\x00\x00\x04";

fn psql_session() -> Vec<Io<'static>> {
    vec![
        io(Egress, SSL_REQUEST, 1),
        io(Ingress, SSL_REFUSED, 2),
        io(Egress, PSQL_STARTUP, 3),
        io(Ingress, PSQL_AUTH_OK, 4),
        io(Egress, Q_SELECT_1, 100),
        io(Ingress, R_SELECT_1, 150),
        io(Egress, Q_MISSING_TABLE, 200),
        io(Ingress, R_MISSING_TABLE, 230),
        io(Ingress, R_READY_IDLE, 240),
        io(Egress, Q_CREATE, 300),
        io(Ingress, R_CREATE, 380),
        io(Egress, Q_INSERT, 400),
        io(Ingress, R_INSERT, 410),
        io(Egress, Q_TWO_STATEMENTS, 500),
        io(Ingress, R_TWO_STATEMENTS, 520),
        io(Egress, Q_COMMENTED, 600),
        io(Ingress, R_COMMENTED, 601),
        io(Egress, TERMINATE, 700),
    ]
}

const PSQL_EXPECTED: &[(&str, Option<&str>, u64)] = &[
    ("SELECT", None, 50),
    // Ends at the ReadyForQuery, read after the error.
    ("SELECT", Some("42P01"), 40),
    ("CREATE", None, 80),
    ("INSERT", None, 10),
    // Two statements, one Query message: one operation.
    ("SELECT", None, 20),
    ("SELECT", None, 1),
];

#[test]
fn psql_simple_queries_after_a_refused_ssl_request() {
    let exchanges = run(&psql_session());
    assert_eq!(summary(&exchanges), PSQL_EXPECTED);
}

#[test]
fn statement_text_never_leaves() {
    let mut connection = Connection::new();
    let exchanges = feed_all(&mut connection, &psql_session(), false);
    let debug = format!("{exchanges:?}");
    for secret in ["secret", "missing_table", "hint", "t("] {
        assert!(!debug.contains(secret), "{debug}");
    }
}

#[test]
fn messages_split_anywhere_give_the_same_exchanges() {
    let session = psql_session();
    // Every client and server chunk of the session cut in two at every offset.
    for (index, &Io(direction, _, data, ts)) in session.iter().enumerate() {
        for at in 1..data.len() {
            let mut ios = session.clone();
            ios.splice(
                index..=index,
                [
                    io(direction, &data[..at], ts),
                    io(direction, &data[at..], ts),
                ],
            );
            let mut connection = Connection::new();
            let exchanges = feed_all(&mut connection, &ios, false);
            assert_eq!(summary(&exchanges), PSQL_EXPECTED, "{index} at {at}");
            // The probes put a split header, and a split head, together. They judge a socket
            // on its first read/write whole (clients write a startup packet whole).
            if index == 0 {
                continue;
            }
            for flip in [false, true] {
                let framed = twin_all(&ios, flip);
                assert_eq!(summary(&framed), PSQL_EXPECTED, "framed: {index} at {at}");
            }
        }
    }
}

#[test]
fn connection_caught_after_its_startup_is_recognised_by_its_next_query() {
    let exchanges = run(&[
        io(Ingress, R_INSERT, 1),
        io(Egress, Q_SELECT_1, 10),
        io(Ingress, R_SELECT_1, 15),
        io(Egress, Q_MISSING_TABLE, 20),
        io(Ingress, R_MISSING_TABLE, 22),
        io(Ingress, R_READY_IDLE, 23),
    ]);
    assert_eq!(
        summary(&exchanges),
        [("SELECT", None, 5), ("SELECT", Some("42P01"), 3)]
    );
}

#[test]
fn pgbench_prepared_statements() {
    let mut ios = vec![
        io(Egress, SSL_REQUEST, 1),
        io(Ingress, SSL_REFUSED, 2),
        io(Egress, PGBENCH_STARTUP, 3),
        io(Ingress, PGBENCH_AUTH_OK, 4),
        // Parse and Sync alone: no operation.
        io(Egress, PGBENCH_PREPARE, 5),
        io(Ingress, R_PREPARED, 6),
    ];
    let executes = [
        PGBENCH_EXECUTE_1,
        PGBENCH_EXECUTE_2,
        PGBENCH_EXECUTE_3,
        PGBENCH_EXECUTE_4,
        PGBENCH_EXECUTE_5,
    ];
    for (i, execute) in (0..).zip(executes) {
        ios.push(io(Egress, execute, 100 * i + 10));
        ios.push(io(Ingress, R_PGBENCH_EXECUTED, 100 * i + 10 + i));
    }
    ios.push(io(Egress, TERMINATE, 1_000));
    let exchanges = run(&ios);
    assert_eq!(
        summary(&exchanges),
        (0..5).map(|i| ("SELECT", None, i)).collect::<Vec<_>>()
    );
}

#[test]
fn pgbench_extended_protocol_split_inside_headers_and_keywords() {
    let mut ios = vec![
        io(Egress, PGBENCH_STARTUP, 3),
        io(Ingress, PGBENCH_AUTH_OK, 4),
        io(Egress, PGBENCH_EXTENDED_1, 10),
        io(Ingress, R_PGBENCH_EXTENDED, 17),
    ];
    // `SEL` | `ECT ...`, then inside the Bind's length.
    let (a, rest) = PGBENCH_EXTENDED_2.split_at(9);
    let (b, c) = rest.split_at(63);
    ios.extend([io(Egress, a, 20), io(Egress, b, 21), io(Egress, c, 22)]);
    // Inside the CommandComplete's header, then inside the ReadyForQuery's.
    let (d, rest) = R_PGBENCH_EXTENDED.split_at(59);
    let (e, f) = rest.split_at(12);
    ios.extend([io(Ingress, d, 30), io(Ingress, e, 31), io(Ingress, f, 32)]);
    ios.extend([
        io(Egress, PGBENCH_EXTENDED_3, 40),
        io(Ingress, R_PGBENCH_EXTENDED, 45),
    ]);
    let exchanges = run(&ios);
    assert_eq!(
        summary(&exchanges),
        [
            ("SELECT", None, 7),
            ("SELECT", None, 8),
            ("SELECT", None, 5)
        ]
    );
}

#[test]
fn execute_of_a_statement_prepared_before_the_capture_is_other() {
    let exchanges = run(&[
        io(Egress, PGBENCH_EXECUTE_1, 10),
        io(Ingress, R_PGBENCH_EXECUTED, 12),
    ]);
    // A Bind/Execute alone is not detected; with the statement unknown it could not be
    // named anyway.
    assert!(exchanges.is_empty());
    let mut parser = PostgresParser::new();
    let mut out = Vec::new();
    for (direction, data, ts) in [
        (Egress, Q_SELECT_1, 1),
        (Ingress, R_SELECT_1, 2),
        (Egress, PGBENCH_EXECUTE_1, 10),
        (Ingress, R_PGBENCH_EXECUTED, 12),
    ] {
        let chunk = Chunk {
            direction,
            total_len: data.len() as u64,
            data,
            timestamp_ns: ts,
        };
        parser.feed(&chunk, &mut out);
    }
    let operations: Vec<_> = out
        .iter()
        .map(|exchange| match exchange {
            Exchange::Postgres(e) => e.operation.as_str(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(operations, ["SELECT", OTHER]);
}

fn pipeline_session() -> Vec<Io<'static>> {
    vec![
        io(Egress, RAW_STARTUP, 1),
        io(Ingress, RAW_AUTH_OK, 2),
        io(Egress, PIPELINE, 100),
        io(Ingress, R_PIPELINE_1, 110),
        io(Ingress, R_PIPELINE_2, 120),
        io(Ingress, R_PIPELINE_3, 130),
        io(Ingress, R_PIPELINE_4, 140),
        io(Ingress, R_PIPELINE_5_6, 150),
    ]
}

#[test]
fn pipelined_batches_with_an_error_and_skipped_executes() {
    let exchanges = run(&pipeline_session());
    assert_eq!(
        summary(&exchanges),
        [
            ("SELECT", None, 10),
            ("INSERT", None, 20),
            // Row limit 2: PortalSuspended, then the rest.
            ("SELECT", None, 30),
            ("SELECT", None, 30),
            ("SELECT", None, 40),
            // `SELECT 1/0` fails at its Bind: the Execute that would have run it fails;
            // the next Bind/Execute, skipped by the server until the Sync, is dropped.
            ("SELECT", Some("22012"), 40),
            // ` -- why\n/* a /* nested */ one */ (with q as ...)`
            ("WITH", None, 50),
            // The empty query.
            (OTHER, None, 50),
        ]
    );
}

#[test]
fn pipeline_cut_by_the_capture_counts_what_was_seen_and_nothing_else() {
    let mut ios = pipeline_session();
    // Only the first 200 of the 460 bytes: the cut falls in the fourth Execute (which
    // still counts); the rest of the write, three batches, is unknown.
    ios[2] = cut(Egress, &PIPELINE[..200], PIPELINE.len() as u64, 100);
    ios.extend([
        io(Egress, Q_SELECT_1, 200),
        io(Ingress, R_SELECT_1, 201),
        io(Egress, Q_INSERT, 300),
        io(Ingress, R_INSERT, 302),
    ]);
    let exchanges = run(&ios);
    assert_eq!(
        summary(&exchanges),
        [
            ("SELECT", None, 10),
            ("INSERT", None, 20),
            ("SELECT", None, 30),
            ("SELECT", None, 30),
            // The first query after the loss shares its batch with the unknown messages:
            // dropped, not guessed. The next one counts.
            ("INSERT", None, 2),
        ]
    );
}

#[test]
fn result_set_beyond_the_capture_loses_its_query_not_the_next() {
    let mut ios = pipeline_session();
    ios.extend([
        io(Egress, Q_REPEAT, 200),
        // A DataRow of 3010 bytes, then CommandComplete and ReadyForQuery, all in one read
        // of which 512 bytes were captured: the end is not seen.
        cut(Ingress, R_REPEAT_PREFIX, R_REPEAT_LEN, 210),
        io(Egress, Q_SELECT_1, 300),
        io(Ingress, R_SELECT_1, 301),
        io(Egress, RAW_TERMINATE, 400),
    ]);
    let exchanges = run(&ios);
    assert_eq!(exchanges.len(), 9);
    assert_eq!(summary(&exchanges[8..]), [("SELECT", None, 1)]);
}

#[test]
fn long_query_cut_by_the_capture_still_counts() {
    let exchanges = run(&[
        io(Egress, PGBENCH_STARTUP, 1),
        io(Ingress, PGBENCH_AUTH_OK, 2),
        cut(
            Egress,
            PGBENCH_CATALOG_QUERY_PREFIX,
            PGBENCH_CATALOG_QUERY_LEN,
            10,
        ),
        io(Ingress, R_SELECT_1, 25),
        io(Egress, Q_SELECT_1, 30),
        io(Ingress, R_SELECT_1, 31),
    ]);
    assert_eq!(
        summary(&exchanges),
        [("SELECT", None, 15), ("SELECT", None, 1)]
    );
}

#[test]
fn accepted_ssl_request_leaves_the_protocol() {
    let mut connection = Connection::new();
    let mut out = Vec::new();
    for (direction, data) in [
        (Egress, SSL_REQUEST),
        (Ingress, b"S".as_slice()),
        (
            Egress,
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03".as_slice(),
        ),
    ] {
        let chunk = Chunk {
            direction,
            total_len: data.len() as u64,
            data,
            timestamp_ns: 0,
        };
        connection.feed(&chunk, &mut out);
    }
    assert!(connection.is_ignored());
    assert!(out.is_empty());
}

#[test]
fn detection() {
    let chunk = |data: &'static [u8]| Chunk {
        direction: Egress,
        total_len: data.len() as u64,
        data,
        timestamp_ns: 0,
    };
    for matching in [
        SSL_REQUEST,
        PSQL_STARTUP,
        RAW_STARTUP,
        Q_SELECT_1,
        Q_COMMENTED,
        PGBENCH_PREPARE,
        PGBENCH_EXTENDED_1,
        PIPELINE,
    ] {
        assert_eq!(detect(&chunk(matching)), Detection::Match, "{matching:?}");
    }
    for short in [&Q_SELECT_1[..4], b"P".as_slice()] {
        assert_eq!(detect(&chunk(short)), Detection::NeedMore, "{short:?}");
    }
    for other in [
        b"POST /login HTTP/1.1\r\n\r\n".as_slice(),
        b"PUT /a HTTP/1.1\r\n\r\n",
        b"PATCH /a HTTP/1.1\r\n\r\n",
        b"QUIT\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
        b"\x00\x00\x00\x10\x04\xd2\x16.\x00\x00\x00\x01\x00\x00\x00\x02",
        b"\x00\x01\x02\x03\x04\x05\x06\x07\x08",
        b"Q\x00\x00\x00\x0e\x01\x02\x03\x04\x05\x06\x07\x08\x00",
        // A complete Query whose string does not end where its length says.
        b"Q\x00\x00\x00\x08SELECT 1\x00",
        R_SELECT_1,
        PGBENCH_EXECUTE_1,
    ] {
        assert_eq!(detect(&chunk(other)), Detection::NoMatch, "{other:?}");
    }
    assert_eq!(
        crate::detect(&chunk(b"POST / HTTP/1.1\r\n\r\n")).map(|p| p.name()),
        Some("http")
    );
    assert_eq!(
        crate::detect(&chunk(PSQL_STARTUP)).map(|p| p.name()),
        Some("postgresql")
    );
}

#[test]
fn operation_names() {
    let operation = |query: &[u8]| {
        let mut scan = KeywordScan::START;
        scan.feed(query);
        scan.operation(true).unwrap_or(OTHER)
    };
    for (query, expected) in [
        (b"select 1".as_slice(), "SELECT"),
        (b"  \n\tInsert into t values (1)", "INSERT"),
        (b"-- a comment\nupdate t set a = 1", "UPDATE"),
        (b"/* a /* nested */ comment */ delete from t", "DELETE"),
        (b"((select 1))", "SELECT"),
        (b"WITH x AS (SELECT 1) SELECT * FROM x", "WITH"),
        (b"begin", "BEGIN"),
        (b"COMMIT\x00", "COMMIT"),
        (b"vacuum;", "VACUUM"),
        (b"", OTHER),
        (b"   ", OTHER),
        (b"-- only a comment", OTHER),
        (b"/* unterminated", OTHER),
        (b"- 1", OTHER),
        (b"1", OTHER),
        (b"\"select\" 1", OTHER),
        (b"select_x from t", OTHER),
        (b"select1", OTHER),
        // Any first word that is no command keyword: it may be user text.
        (b"hunter2", OTHER),
        (b"password from t", OTHER),
        (b"abcdefghijklmnopq", OTHER),
        (b"s\xc3\xa9lect", OTHER),
    ] {
        assert_eq!(operation(query), expected, "{query:?}");
    }
    // A word cut by the capture may be longer than what was seen: `SELECT` could be
    // `SELECTED`.
    let mut scan = KeywordScan::START;
    scan.feed(b"SELECT");
    assert_eq!(scan.operation(false), None);
}

#[test]
fn sqlstates() {
    let sqlstate = |fields: &[u8]| {
        let mut scan = ErrorScan::FieldType;
        scan.feed(fields);
        scan.sqlstate()
    };
    assert_eq!(
        sqlstate(b"SERROR\x00C42P01\x00Mno\x00\x00"),
        Some(*b"42P01")
    );
    assert_eq!(sqlstate(b"SERROR\x00C42p01\x00\x00"), None);
    assert_eq!(sqlstate(b"C4201\x00\x00"), None);
    assert_eq!(sqlstate(b"C420123\x00\x00"), None);
    assert_eq!(sqlstate(b"SERROR\x00Mno code\x00\x00"), None);
    assert_eq!(sqlstate(b"C42P0"), None);
}

#[test]
fn error_without_a_usable_sqlstate_is_other() {
    let exchanges = run(&[
        io(Egress, Q_SELECT_1, 1),
        io(
            Ingress,
            b"E\x00\x00\x00\x10SERROR\x00Cxx\x00\x00Z\x00\x00\x00\x05I",
            3,
        ),
    ]);
    assert_eq!(summary(&exchanges), [("SELECT", Some(OTHER), 2)]);
}

#[test]
fn memory_stays_bounded() {
    let mut parser = PostgresParser::new();
    let mut out = Vec::new();
    let mut feed = |direction, data: &[u8]| {
        let chunk = Chunk {
            direction,
            total_len: data.len() as u64,
            data,
            timestamp_ns: 0,
        };
        parser.feed(&chunk, &mut out);
        assert!(parser.buffered_bytes() <= MAX_BUFFERED_BYTES);
    };
    feed(Egress, Q_SELECT_1);
    for i in 0..1_000u32 {
        // Distinct statement and portal names, and Executes nobody answers.
        let name = format!("statement_{i}_{}", "n".repeat(40));
        let mut message = Vec::new();
        for (tag, body) in [
            (b'P', format!("{name}\0SELECT 1\0\0\0")),
            (b'B', format!("{name}\0{name}\0\0\0\0\0\0\0")),
            (b'E', format!("{name}\0\0\0\0\0")),
        ] {
            message.push(tag);
            message.extend_from_slice(&(body.len() as u32 + 4).to_be_bytes());
            message.extend_from_slice(body.as_bytes());
        }
        feed(Egress, &message);
    }
    assert!(parser.session.statements.len() <= MAX_STATEMENTS);
    assert!(parser.session.portals.len() <= MAX_PORTALS);
    assert!(parser.session.pending.len() <= MAX_PENDING);
}

#[test]
fn a_read_of_more_messages_than_the_probes_frame_loses_its_query_not_the_next() {
    // R_SELECT_1 is a RowDescription, one DataRow, CommandComplete and ReadyForQuery: the
    // same with more DataRows than `pg::MAX_MESSAGES`, in one read.
    let (description, rest) = R_SELECT_1.split_at(34);
    let (row, end) = rest.split_at(12);
    assert_eq!((description[0], row[0], end[0]), (b'T', b'D', b'C'));
    let rows = monitor_framing::pg::MAX_MESSAGES as usize + 100;
    let mut big = description.to_vec();
    big.extend(row.repeat(rows));
    big.extend_from_slice(end);
    let ios = [
        io(Egress, Q_SELECT_1, 10),
        io(Ingress, &big, 20),
        io(Egress, Q_SELECT_1, 30),
        io(Ingress, R_SELECT_1, 33),
    ];
    assert_eq!(
        summary(&parsed(&ios)),
        [("SELECT", None, 10), ("SELECT", None, 3)]
    );
    // The probes lose the server's framing past their bound: the query it answered is
    // dropped, not paired with a later answer; the next read starts with a message.
    assert_framed(&ios, &[("SELECT", None, 3)]);
}

#[test]
fn only_what_starts_names_or_answers_an_operation_leaves_the_kernel() {
    let mut records = Vec::new();
    for session in [psql_session(), pipeline_session()] {
        let mut twin = kernel::KernelTwin::new();
        let mut out = Vec::new();
        for io in session {
            twin.feed(&io.chunk(), &mut out);
        }
        records.extend(twin.records);
    }
    for record in &records {
        let kind = record.data.first().copied().unwrap_or(b'-');
        // Startup messages (untyped), the refused SSL answer, and the operations' messages.
        assert!(
            b"\0NQPBESFZCIs".contains(&kind),
            "{:?} left the kernel",
            char::from(kind)
        );
        assert!(record.data.len() <= 5 + monitor_framing::pg::HEAD as usize);
    }
}
