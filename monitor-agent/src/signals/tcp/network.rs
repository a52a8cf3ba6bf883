//! TCP events and socket byte counts → the TCP families' tables, with the per-`comm` peer
//! and outbound port caps.
//!
//! Pure: events arrive decoded and already named (`comm`, `pid`); the kernel's byte counts
//! arrive folded per label set. Every value is kept in a `series::table::SeriesTable`, so the
//! same retire/TTL rules as the syscall families apply.
use std::{
    collections::HashSet,
    net::SocketAddr,
    time::{Duration, Instant},
};

use monitor_common::{NetBytes, Owner};

use crate::{
    probes::decode::{Direction, TcpEventKind, TcpRecord},
    series::labels::Workload,
    series::table::{
        Histogram, Observations, Recorder, SeriesTable, ValueCap, WorkloadLabels, observe,
    },
    signals::signal::{SeriesCount, series_count},
};

/// A histogram of one observation.
fn one(duration_ns: u64) -> Histogram {
    let mut histogram = Histogram::ZERO;
    observe(&mut histogram, duration_ns);
    histogram
}

/// The `peer` value of everything beyond a comm's peer cap.
pub const OVERFLOW_PEER: &str = "other";

/// Connections opened and closed under one label set: `opened − closed` are active.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ConnCounts {
    pub opened: u64,
    pub closed: u64,
}

impl ConnCounts {
    pub fn active(&self) -> u64 {
        // A close whose open was lost (full ring buffer) must not make the gauge wrap.
        self.opened.saturating_sub(self.closed)
    }
}

impl Observations for ConnCounts {
    fn add(&mut self, other: &Self) {
        self.opened += other.opened;
        self.closed += other.closed;
    }
    fn observations(&self) -> u64 {
        self.opened + self.closed
    }
    fn pinned(&self) -> bool {
        self.active() > 0
    }
}

impl Observations for NetBytes {
    fn add(&mut self, other: &Self) {
        self.sent += other.sent;
        self.received += other.received;
    }
    fn observations(&self) -> u64 {
        self.sent + self.received
    }
}

/// Why a connect failed, from the socket's error at SYN_SENT → CLOSE.
pub fn connect_error_reason(errno: u32) -> &'static str {
    match errno {
        111 => "refused", // ECONNREFUSED: a RST, or ICMP port unreachable
        110 => "timeout", // ETIMEDOUT: SYN retries or TCP_USER_TIMEOUT ran out
        113 | 101 | 112 | 64 => "unreachable", // EHOSTUNREACH, ENETUNREACH, EHOSTDOWN, ENONET
        104 => "reset",   // ECONNRESET
        _ => "other",     // 0: the application gave up first, and the rest
    }
}

pub fn direction_label(direction: Direction) -> &'static str {
    match direction {
        Direction::Outbound => "outbound",
        Direction::Inbound => "inbound",
    }
}

/// Outbound: the service connected to (`ip:port`). Inbound: the client's address only; its
/// port is ephemeral and would make one series per connection.
fn peer(direction: Direction, remote: SocketAddr) -> String {
    match direction {
        Direction::Outbound => remote.to_string(),
        Direction::Inbound => remote.ip().to_string(),
    }
}

/// Everything the network families export, read at one moment.
#[derive(Debug, Default)]
pub struct NetworkSnapshot {
    pub connect_duration: Vec<(WorkloadLabels, Histogram)>,
    pub connect_errors: Vec<(WorkloadLabels, u64)>,
    pub connections: Vec<(WorkloadLabels, ConnCounts)>,
    pub retransmits: Vec<(WorkloadLabels, u64)>,
    pub resets: Vec<(WorkloadLabels, u64)>,
    pub rtt: Vec<(WorkloadLabels, Histogram)>,
    pub connection_duration: Vec<(WorkloadLabels, Histogram)>,
    pub bytes: Vec<(WorkloadLabels, NetBytes)>,
    pub peer_overflow: Vec<(WorkloadLabels, u64)>,
}

#[derive(Debug)]
pub struct Network {
    connect_duration: SeriesTable<WorkloadLabels, Histogram>,
    connect_errors: SeriesTable<WorkloadLabels, u64>,
    connections: SeriesTable<WorkloadLabels, ConnCounts>,
    retransmits: SeriesTable<WorkloadLabels, u64>,
    resets: SeriesTable<WorkloadLabels, u64>,
    rtt: SeriesTable<WorkloadLabels, Histogram>,
    connection_duration: SeriesTable<WorkloadLabels, Histogram>,
    peer_overflow: SeriesTable<WorkloadLabels, u64>,
    /// Distinct peers per comm (`OVERFLOW_PEER` beyond); a place is freed when no series
    /// carries the peer any more.
    peers: ValueCap,
    /// Distinct remote ports of outbound connections per comm, the same way: a client that
    /// connects to many ports (a scanner, a pool of ephemeral services) cannot multiply the
    /// connection series.
    ports: ValueCap,
    /// Open outbound connections counted under `port="other"`, so that their close lands
    /// there too even if a place was freed meanwhile (open and close must pair).
    other_port_conns: HashSet<(Owner, u16, SocketAddr)>,
}

/// Connections remembered at most in `other_port_conns`; a close lost with a full ring would
/// otherwise leave its entry for good.
const OTHER_PORT_CONNS_MAX: usize = 65_536;

impl Network {
    pub fn new(peers_per_comm: usize) -> Self {
        Self {
            connect_duration: SeriesTable::default(),
            connect_errors: SeriesTable::default(),
            connections: SeriesTable::default(),
            retransmits: SeriesTable::default(),
            resets: SeriesTable::default(),
            rtt: SeriesTable::default(),
            connection_duration: SeriesTable::default(),
            peer_overflow: SeriesTable::default(),
            peers: ValueCap::new(peers_per_comm),
            ports: ValueCap::new(peers_per_comm),
            other_port_conns: HashSet::new(),
        }
    }

    /// The `port` label of a connection's open or close: inbound, the listening port (as many
    /// as the process listens on); outbound, the remote port after the per-comm cap.
    fn port(&mut self, event: &TcpRecord, comm: &str) -> String {
        if event.direction == Direction::Inbound {
            return event.local_port.to_string();
        }
        let port = event.remote.port().to_string();
        let connection = (event.owner, event.local_port, event.remote);
        match event.kind {
            TcpEventKind::Open => {
                // A new connection on the same four-tuple ends an older one whose close was lost.
                self.other_port_conns.remove(&connection);
                if self.ports.admit(comm, &port) {
                    return port;
                }
                if self.other_port_conns.len() >= OTHER_PORT_CONNS_MAX {
                    self.other_port_conns.clear();
                }
                self.other_port_conns.insert(connection);
                OVERFLOW_PEER.to_owned()
            }
            _ if self.other_port_conns.remove(&connection) => OVERFLOW_PEER.to_owned(),
            // Opened under its own port, whose place its open connection holds.
            _ => port,
        }
    }

    /// Folds one event of the process `who`.
    pub fn apply(&mut self, event: &TcpRecord, who: &Workload, rec: &mut Recorder) {
        use crate::series::families::family::*;
        let direction = direction_label(event.direction).to_owned();
        match event.kind {
            TcpEventKind::Open => {
                let opened = ConnCounts {
                    opened: 1,
                    closed: 0,
                };
                let values = vec![direction, self.port(event, &who.comm)];
                let family = TCP_CONNECTIONS_OPENED.name;
                rec.record(family, &mut self.connections, who, values, &opened);
                if event.direction == Direction::Outbound {
                    let peer = self.peer(event, &who.comm, rec.now);
                    let histogram = one(event.duration_ns);
                    let table = &mut self.connect_duration;
                    rec.record(
                        TCP_CONNECT_DURATION.name,
                        table,
                        who,
                        vec![peer],
                        &histogram,
                    );
                }
            }
            TcpEventKind::ConnectFail => {
                let peer = self.peer(event, &who.comm, rec.now);
                let reason = connect_error_reason(event.error).to_owned();
                let table = &mut self.connect_errors;
                rec.record(TCP_CONNECT_ERRORS.name, table, who, vec![peer, reason], &1);
            }
            TcpEventKind::Close => {
                let closed = ConnCounts {
                    opened: 0,
                    closed: 1,
                };
                let values = vec![direction.clone(), self.port(event, &who.comm)];
                let family = TCP_CONNECTIONS_OPENED.name;
                rec.record(family, &mut self.connections, who, values, &closed);
                let table = &mut self.connection_duration;
                let lifetime = one(event.duration_ns);
                rec.record(
                    TCP_CONNECTION_DURATION.name,
                    table,
                    who,
                    vec![direction],
                    &lifetime,
                );
                // 0: the connection never had an RTT sample (no data acknowledged).
                if event.srtt_us > 0 {
                    let peer = self.peer(event, &who.comm, rec.now);
                    let rtt = one(u64::from(event.srtt_us) * 1_000);
                    rec.record(TCP_RTT.name, &mut self.rtt, who, vec![peer], &rtt);
                }
            }
            TcpEventKind::Retransmit => {
                let peer = self.peer(event, &who.comm, rec.now);
                let table = &mut self.retransmits;
                rec.record(TCP_RETRANSMITS.name, table, who, vec![peer], &1);
            }
            TcpEventKind::ResetSent | TcpEventKind::ResetReceived => {
                let which = if event.kind == TcpEventKind::ResetSent {
                    "sent"
                } else {
                    "received"
                };
                let table = &mut self.resets;
                rec.record(TCP_RESETS.name, table, who, vec![which.to_owned()], &1);
            }
        }
    }

    /// The event's `peer` value after the cap; an overflow is counted per comm.
    fn peer(&mut self, event: &TcpRecord, comm: &str, now: Instant) -> String {
        let peer = peer(event.direction, event.remote);
        if self.peers.admit(comm, &peer) {
            return peer;
        }
        let labels = WorkloadLabels {
            who: Workload {
                comm: comm.to_owned(),
                ..Workload::default()
            },
            values: Vec::new(),
        };
        self.peer_overflow.retire(labels, &1, now);
        OVERFLOW_PEER.to_owned()
    }

    /// Exported values; `bytes` were published from the kernel's counts by the caller.
    pub fn publish(&mut self, now: Instant, ttl: Duration) -> NetworkSnapshot {
        // Event-fed tables have no live kernel part: everything in them is retired.
        fn events<V: Observations>(
            table: &mut SeriesTable<WorkloadLabels, V>,
            now: Instant,
            ttl: Duration,
        ) -> Vec<(WorkloadLabels, V)> {
            table.publish(Default::default(), now, ttl)
        }
        let snapshot = NetworkSnapshot {
            connect_duration: events(&mut self.connect_duration, now, ttl),
            connect_errors: events(&mut self.connect_errors, now, ttl),
            connections: events(&mut self.connections, now, ttl),
            retransmits: events(&mut self.retransmits, now, ttl),
            resets: events(&mut self.resets, now, ttl),
            rtt: events(&mut self.rtt, now, ttl),
            connection_duration: events(&mut self.connection_duration, now, ttl),
            bytes: Vec::new(),
            peer_overflow: events(&mut self.peer_overflow, now, ttl),
        };
        // The first label value of these families is the peer.
        let peer_of = |labels: &WorkloadLabels| labels.values.first().cloned();
        let in_use: HashSet<(String, String)> = snapshot
            .connect_duration
            .iter()
            .map(|(labels, _)| labels)
            .chain(snapshot.connect_errors.iter().map(|(labels, _)| labels))
            .chain(snapshot.retransmits.iter().map(|(labels, _)| labels))
            .chain(snapshot.rtt.iter().map(|(labels, _)| labels))
            .filter_map(|labels| Some((labels.who.comm.clone(), peer_of(labels)?)))
            .collect();
        self.peers
            .retain(|comm, peer| in_use.contains(&(comm.to_owned(), peer.to_owned())));
        let ports_in_use: HashSet<(String, String)> = snapshot
            .connections
            .iter()
            .filter(|(labels, _)| labels.values.first().map(String::as_str) == Some("outbound"))
            .filter_map(|(labels, _)| {
                Some((labels.who.comm.clone(), labels.values.get(1)?.clone()))
            })
            .collect();
        self.ports
            .retain(|comm, port| ports_in_use.contains(&(comm.to_owned(), port.to_owned())));
        snapshot
    }

    /// The event-fed tables' series counts (in `monitor_series` order, bytes after them).
    pub fn series_counts(&self) -> Vec<SeriesCount> {
        use crate::series::families::family::*;
        vec![
            series_count(&TCP_CONNECT_DURATION, &self.connect_duration),
            series_count(&TCP_CONNECT_ERRORS, &self.connect_errors),
            series_count(&TCP_CONNECTIONS_OPENED, &self.connections),
            series_count(&TCP_RETRANSMITS, &self.retransmits),
            series_count(&TCP_RESETS, &self.resets),
            series_count(&TCP_RTT, &self.rtt),
            series_count(&TCP_CONNECTION_DURATION, &self.connection_duration),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::series::{labels::LabelPolicy, table::Budget};

    fn apply(network: &mut Network, event: &TcpRecord, comm: &str, now: Instant) {
        let policy = LabelPolicy::default();
        let mut budget = Budget::new(usize::MAX);
        let mut rec = Recorder {
            policy: &policy,
            budget: &mut budget,
            now,
        };
        let who = Workload {
            comm: comm.into(),
            ..Workload::default()
        };
        network.apply(event, &who, &mut rec);
    }

    fn event(kind: TcpEventKind, direction: Direction, remote: &str) -> TcpRecord {
        TcpRecord {
            kind,
            direction,
            owner: monitor_common::Owner {
                tgid: 1,
                generation: 0,
            },
            local_port: 80,
            error: 0,
            remote: remote.parse().unwrap(),
            srtt_us: 120,
            duration_ns: 50_000,
        }
    }

    fn value<V: Copy>(rows: &[(WorkloadLabels, V)], comm: &str, values: &[&str]) -> Option<V> {
        rows.iter()
            .find(|(labels, _)| labels.who.comm == comm && labels.values == values)
            .map(|(_, value)| *value)
    }

    #[test]
    fn reasons_follow_the_socket_error() {
        assert_eq!(connect_error_reason(111), "refused");
        assert_eq!(connect_error_reason(110), "timeout");
        assert_eq!(connect_error_reason(113), "unreachable");
        assert_eq!(connect_error_reason(101), "unreachable");
        assert_eq!(connect_error_reason(104), "reset");
        assert_eq!(connect_error_reason(0), "other");
    }

    #[test]
    fn open_and_close_make_the_gauge_and_keep_it_while_open() {
        let t0 = Instant::now();
        let ttl = Duration::from_secs(60);
        let mut network = Network::new(8);
        let out = event(TcpEventKind::Open, Direction::Outbound, "10.0.0.2:5432");
        let inbound = event(TcpEventKind::Open, Direction::Inbound, "10.0.0.3:40000");
        apply(&mut network, &out, "app", t0);
        apply(&mut network, &inbound, "app", t0);
        let later = t0 + ttl * 10;
        let snapshot = network.publish(later, ttl);
        let counts = value(&snapshot.connections, "app", &["outbound", "5432"]).unwrap();
        assert_eq!(
            (counts.opened, counts.active()),
            (1, 1),
            "open: kept past the TTL"
        );
        let counts = value(&snapshot.connections, "app", &["inbound", "80"]).unwrap();
        assert_eq!(
            counts.active(),
            1,
            "inbound: the listening port, not the client's"
        );
        let close = event(TcpEventKind::Close, Direction::Outbound, "10.0.0.2:5432");
        apply(&mut network, &close, "app", later);
        let snapshot = network.publish(later, ttl);
        let counts = value(&snapshot.connections, "app", &["outbound", "5432"]).unwrap();
        assert_eq!((counts.opened, counts.active()), (1, 0));
        assert_eq!(
            value(&snapshot.rtt, "app", &["10.0.0.2:5432"])
                .unwrap()
                .sum_ns,
            120_000
        );
        assert_eq!(
            value(&snapshot.connect_duration, "app", &["10.0.0.2:5432"])
                .unwrap()
                .observations(),
            1
        );
    }

    #[test]
    fn peers_beyond_the_cap_share_one_value_and_are_counted() {
        let now = Instant::now();
        let mut network = Network::new(2);
        for port in 1..=5 {
            let remote = format!("127.0.0.1:{port}");
            let retransmit = event(TcpEventKind::Retransmit, Direction::Outbound, &remote);
            apply(&mut network, &retransmit, "c", now);
        }
        // Another comm has its own budget; inbound peers carry no port.
        let inbound = event(TcpEventKind::Retransmit, Direction::Inbound, "[::1]:50000");
        apply(&mut network, &inbound, "d", now);
        let snapshot = network.publish(now, Duration::from_secs(60));
        let peers: Vec<&str> = snapshot
            .retransmits
            .iter()
            .filter(|(labels, _)| labels.who.comm == "c")
            .map(|(labels, _)| labels.values[0].as_str())
            .collect();
        assert_eq!(peers.len(), 3, "{peers:?}");
        assert_eq!(value(&snapshot.retransmits, "c", &[OVERFLOW_PEER]), Some(3));
        assert_eq!(value(&snapshot.peer_overflow, "c", &[]), Some(3));
        assert_eq!(value(&snapshot.retransmits, "d", &["::1"]), Some(1));
    }

    #[test]
    fn outbound_ports_beyond_the_cap_share_other_and_opens_pair_with_closes() {
        let t0 = Instant::now();
        let ttl = Duration::from_secs(60);
        let mut network = Network::new(1);
        let at = |kind, port: u16| {
            let mut record = event(kind, Direction::Outbound, &format!("10.0.0.9:{port}"));
            record.local_port = 40_000 + port;
            record
        };
        apply(&mut network, &at(TcpEventKind::Open, 443), "c", t0);
        for port in [8001, 8002, 8003] {
            apply(&mut network, &at(TcpEventKind::Open, port), "c", t0);
        }
        // 443 closes and its series expires: its place is free again...
        apply(&mut network, &at(TcpEventKind::Close, 443), "c", t0);
        network.publish(t0, ttl);
        network.publish(t0 + ttl, ttl);
        // ...but 8001, opened under "other", closes there all the same.
        apply(&mut network, &at(TcpEventKind::Close, 8001), "c", t0 + ttl);
        let snapshot = network.publish(t0 + ttl, ttl);
        let other = value(&snapshot.connections, "c", &["outbound", OVERFLOW_PEER]).unwrap();
        assert_eq!((other.opened, other.closed, other.active()), (3, 1, 2));
        assert_eq!(
            value(&snapshot.connections, "c", &["outbound", "8001"]),
            None
        );
        // The freed place goes to the next new port.
        apply(&mut network, &at(TcpEventKind::Open, 9000), "c", t0 + ttl);
        let snapshot = network.publish(t0 + ttl, ttl);
        assert_eq!(
            value(&snapshot.connections, "c", &["outbound", "9000"]).map(|c| c.active()),
            Some(1)
        );
        // Inbound ports (the listening ones) are not capped.
        let mut inbound = event(TcpEventKind::Open, Direction::Inbound, "10.0.0.3:5000");
        inbound.local_port = 8443;
        apply(&mut network, &inbound, "c", t0 + ttl);
        let snapshot = network.publish(t0 + ttl, ttl);
        assert!(value(&snapshot.connections, "c", &["inbound", "8443"]).is_some());
    }

    #[test]
    fn expired_peers_free_their_place() {
        let t0 = Instant::now();
        let ttl = Duration::from_secs(60);
        let mut network = Network::new(1);
        let first = event(TcpEventKind::Retransmit, Direction::Outbound, "127.0.0.1:1");
        apply(&mut network, &first, "c", t0);
        network.publish(t0, ttl);
        network.publish(t0 + ttl, ttl);
        let second = event(TcpEventKind::Retransmit, Direction::Outbound, "127.0.0.1:2");
        apply(&mut network, &second, "c", t0 + ttl);
        let snapshot = network.publish(t0 + ttl, ttl);
        assert_eq!(value(&snapshot.retransmits, "c", &["127.0.0.1:2"]), Some(1));
    }
}
