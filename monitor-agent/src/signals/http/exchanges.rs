//! Captured socket payloads → per-connection protocol parsers (`monitor-protocols`) →
//! request series (HTTP server and client RED metrics), with the per-`comm` route cap.
//!
//! Pure: events arrive decoded and already named. Connection state is bounded: idle
//! connections are forgotten, and at most `MAX_CONNECTIONS` are followed at once.
use std::{
    collections::HashMap,
    net::SocketAddr,
    time::{Duration, Instant},
};

use monitor_protocols::{Chunk, Connection, Exchange, HttpExchange, Role, http::split_host_port};

use crate::{
    probes::decode::PayloadRecord,
    series::labels::Workload,
    series::table::{Histogram, Recorder, SeriesTable, ValueCap, WorkloadLabels, observe},
    signals::signal::{SeriesCount, series_count},
};

/// The `http_route` of every route past a comm's cap (`--http.routes-per-comm`).
pub const OVERFLOW_ROUTE: &str = "_overflow";

/// Connections followed at once; chunks of further new connections are counted and dropped.
pub const MAX_CONNECTIONS: usize = 16_384;
/// A connection with no captured read or write for this long is forgotten (a keep-alive
/// connection idle longer starts over with its next request, which the parser handles).
pub const IDLE_CONNECTION: Duration = Duration::from_secs(120);

struct Followed {
    /// The socket's peer when first seen: the same kernel socket address with another peer
    /// is a new connection (sockets are reused once freed), as is any whose read/write the
    /// kernel marks first (the same peer again: a client reconnecting).
    remote: SocketAddr,
    connection: Connection,
    last_seen: Instant,
}

/// An exchange parsed from a process's socket, waiting to be named and recorded.
#[derive(Clone, Debug)]
pub struct Completed {
    pub owner: monitor_common::Owner,
    /// The connection's peer (the server, for a client's request).
    pub remote: SocketAddr,
    pub http: HttpExchange,
}

#[derive(Debug, Default)]
pub struct RequestsSnapshot {
    pub server: Vec<(WorkloadLabels, Histogram)>,
    pub client: Vec<(WorkloadLabels, Histogram)>,
    /// Connections being followed, and chunks dropped because too many were.
    pub connections: u64,
    pub chunks_dropped: u64,
}

pub struct Requests {
    connections: HashMap<(u32, u64), Followed>,
    /// Distinct routes per comm (`OVERFLOW_ROUTE` beyond), so that identifiers the route
    /// normalisation misses cannot grow the series count without bound.
    routes: ValueCap,
    server: SeriesTable<WorkloadLabels, Histogram>,
    client: SeriesTable<WorkloadLabels, Histogram>,
    chunks_dropped: u64,
    exchanges: Vec<Exchange>,
}

impl Requests {
    pub fn new(routes_per_comm: usize) -> Self {
        Self {
            connections: HashMap::new(),
            routes: ValueCap::new(routes_per_comm),
            server: SeriesTable::default(),
            client: SeriesTable::default(),
            chunks_dropped: 0,
            exchanges: Vec::new(),
        }
    }

    /// Feeds one captured read/write to its connection's parser; the exchanges it completes
    /// are appended to `completed`, to be named and recorded (`record`). Parsing needs no
    /// name: only the few reads/writes that complete a request pay for naming.
    pub fn feed(&mut self, event: &PayloadRecord, now: Instant, completed: &mut Vec<Completed>) {
        let key = (event.owner.tgid, event.sk);
        if !self.connections.contains_key(&key) && self.connections.len() >= MAX_CONNECTIONS {
            self.chunks_dropped += 1;
            return;
        }
        let followed = self.connections.entry(key).or_insert_with(|| Followed {
            remote: event.remote,
            connection: Connection::new(),
            last_seen: now,
        });
        if followed.remote != event.remote || event.first {
            followed.remote = event.remote;
            followed.connection = Connection::new();
        }
        followed.last_seen = now;
        let chunk = Chunk {
            direction: event.flow,
            total_len: u64::from(event.length),
            data: &event.data,
            timestamp_ns: event.timestamp_ns,
        };
        followed.connection.feed(&chunk, &mut self.exchanges);
        let remote = followed.remote;
        for exchange in self.exchanges.drain(..) {
            // Exchanges of protocols without metrics yet are dropped here.
            if let Exchange::Http(http) = exchange {
                completed.push(Completed {
                    owner: event.owner,
                    remote,
                    http,
                });
            }
        }
    }

    /// Records a completed exchange of the process `who`.
    pub fn record(&mut self, completed: &Completed, who: &Workload, rec: &mut Recorder) {
        let Completed { http, remote, .. } = completed;
        let remote = *remote;
        use crate::series::families::family::{HTTP_CLIENT_DURATION, HTTP_SERVER_DURATION};
        let comm = who.comm.as_str();
        let mut histogram = Histogram::ZERO;
        observe(&mut histogram, http.duration_ns);
        let method = http.method.as_str().to_owned();
        let status = http.status.to_string();
        let (family, table, values) = match http.role {
            Role::Server => {
                let route = if self.routes.admit(comm, &http.route) {
                    http.route.clone()
                } else {
                    OVERFLOW_ROUTE.to_owned()
                };
                let values = vec![method, status, route];
                (HTTP_SERVER_DURATION.name, &mut self.server, values)
            }
            Role::Client => {
                // OpenTelemetry's server.address: the name the client asked for when it
                // sent one (no reverse DNS), else the peer's IP; the port is the socket's.
                let address = http
                    .host
                    .as_deref()
                    .map(|host| split_host_port(host).0.to_owned())
                    .filter(|host| !host.is_empty())
                    .unwrap_or_else(|| remote.ip().to_string());
                let values = vec![method, status, address, remote.port().to_string()];
                (HTTP_CLIENT_DURATION.name, &mut self.client, values)
            }
        };
        rec.record(family, table, who, values, &histogram);
    }

    pub fn publish(&mut self, now: Instant, ttl: Duration) -> RequestsSnapshot {
        self.connections
            .retain(|_, followed| now.duration_since(followed.last_seen) < IDLE_CONNECTION);
        let server = self.server.publish(HashMap::new(), now, ttl);
        let client = self.client.publish(HashMap::new(), now, ttl);
        // A comm whose server series all expired gets its whole route budget back.
        let live: std::collections::HashSet<&str> = server
            .iter()
            .map(|(labels, _)| labels.who.comm.as_str())
            .collect();
        self.routes.retain(|comm, _| live.contains(comm));
        RequestsSnapshot {
            server,
            client,
            connections: self.connections.len() as u64,
            chunks_dropped: self.chunks_dropped,
        }
    }

    pub fn series_counts(&self) -> Vec<SeriesCount> {
        use crate::series::families::family::{HTTP_CLIENT_DURATION, HTTP_SERVER_DURATION};
        vec![
            series_count(&HTTP_SERVER_DURATION, &self.server),
            series_count(&HTTP_CLIENT_DURATION, &self.client),
        ]
    }
}
