//! Captured socket payloads → per-connection protocol parsers (`monitor-protocols`) →
//! request series (HTTP server and client RED metrics), with caps per service on the label
//! values a request chooses: routes (server) and server addresses (client).
//!
//! Pure: events arrive decoded and already named. Connection state is bounded: idle
//! connections are forgotten, and at most `MAX_CONNECTIONS` are followed at once.
use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use foldhash::{HashMap, HashMapExt, HashSet};

use monitor_protocols::{Exchange, HttpExchange, Role, http::split_host_port};

use crate::{
    probes::decode::{PayloadRecord, RequestRecord},
    series::labels::Workload,
    series::table::{Histogram, Recorder, SeriesTable, ValueCap, WorkloadLabels, observe},
    signals::{
        connections::Connections,
        signal::{SeriesCount, cap_key, series_count},
    },
};

/// The `http_route` of every route past a service's cap (`--http.routes-per-comm`).
pub const OVERFLOW_ROUTE: &str = "_overflow";
/// `server_address` and `server_port` of every server past a service's cap
/// (`--tcp.peers-per-comm`), as the TCP families' `peer`.
pub const OVERFLOW_SERVER: &str = crate::signals::tcp::OVERFLOW_PEER;

fn server_key(address: &str, port: &str) -> String {
    format!("{address} {port}")
}

/// An exchange parsed from a process's socket, waiting to be named and recorded.
#[derive(Clone, Debug)]
pub struct Completed {
    pub owner: monitor_common::Owner,
    /// The connection's peer (the server, for a client's request).
    pub remote: SocketAddr,
    /// Read or written through a TLS library (`url_scheme="https"`).
    pub tls: bool,
    pub http: HttpExchange,
}

/// The kernel keys a TLS connection's plaintext by its socket's address with the lowest
/// bit set (`monitor-ebpf/src/sock.rs`, `TLS_TAG`): apart from the ciphertext, and marked.
const TLS_TAG: u64 = 1;

/// `url_scheme` of an exchange.
fn scheme(tls: bool) -> &'static str {
    if tls { "https" } else { "http" }
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
    connections: Connections,
    /// Distinct routes per service (`OVERFLOW_ROUTE` beyond), so that identifiers the route
    /// normalisation misses cannot grow the series count without bound, and one tenant's
    /// junk cannot crowd out another's routes.
    routes: ValueCap,
    /// Distinct servers (`address:port`) per service a client reaches.
    servers: ValueCap,
    server: SeriesTable<WorkloadLabels, Histogram>,
    client: SeriesTable<WorkloadLabels, Histogram>,
}

impl Requests {
    pub fn new(routes_per_service: usize, servers_per_service: usize) -> Self {
        Self {
            connections: Connections::new(),
            routes: ValueCap::new(routes_per_service),
            servers: ValueCap::new(servers_per_service),
            server: SeriesTable::default(),
            client: SeriesTable::default(),
        }
    }

    /// A request the kernel framed (`--probes.request-framing`): complete already, only its
    /// labels are made here. None of its bytes went past the kernel but the target's start
    /// (server, cut at `?`) or the `Host` value (client).
    pub fn framed(event: &RequestRecord) -> Option<Completed> {
        let http = monitor_protocols::http::kernel::exchange(
            event.role,
            event.method,
            event.status,
            &event.text,
            event.flags,
            event.end_ns.saturating_sub(event.start_ns),
        )?;
        Some(Completed {
            owner: event.owner,
            remote: event.remote,
            tls: event.sk & TLS_TAG != 0,
            http,
        })
    }

    /// Feeds one captured read/write to its connection's parser; the exchanges it completes
    /// are appended to `completed`, to be named and recorded (`record`). Parsing needs no
    /// name: only the few reads/writes that complete a request pay for naming.
    pub fn feed(&mut self, event: &PayloadRecord, now: Instant, completed: &mut Vec<Completed>) {
        self.connections.feed(event, now, |exchange, remote| {
            // The databases' exchanges are the `db` room's: it reads their own ring.
            if let Exchange::Http(http) = exchange {
                completed.push(Completed {
                    owner: event.owner,
                    remote,
                    tls: event.sk & TLS_TAG != 0,
                    http,
                });
            }
        });
    }

    /// Records a completed exchange of the process `who`.
    pub fn record(&mut self, completed: &Completed, who: &Workload, rec: &mut Recorder) {
        let Completed {
            http, remote, tls, ..
        } = completed;
        let remote = *remote;
        use crate::series::families::family::{HTTP_CLIENT_DURATION, HTTP_SERVER_DURATION};
        let mut histogram = Histogram::ZERO;
        observe(&mut histogram, http.duration_ns);
        let method = http.method.as_str().to_owned();
        let status = http.status.to_string();
        let (family, table, values) = match http.role {
            Role::Server => {
                let owner = cap_key(&rec.policy.project(HTTP_SERVER_DURATION.name, who));
                let route = if self.routes.admit(&owner, &http.route) {
                    http.route.clone()
                } else {
                    OVERFLOW_ROUTE.to_owned()
                };
                let values = vec![method, status, route, scheme(*tls).to_owned()];
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
                let port = remote.port().to_string();
                let owner = cap_key(&rec.policy.project(HTTP_CLIENT_DURATION.name, who));
                let (address, port) = if self.servers.admit(&owner, &server_key(&address, &port)) {
                    (address, port)
                } else {
                    (OVERFLOW_SERVER.to_owned(), OVERFLOW_SERVER.to_owned())
                };
                let values = vec![method, status, address, port, scheme(*tls).to_owned()];
                (HTTP_CLIENT_DURATION.name, &mut self.client, values)
            }
        };
        rec.record(family, table, who, values, &histogram);
    }

    pub fn publish(&mut self, now: Instant, ttl: Duration) -> RequestsSnapshot {
        self.connections.forget_idle(now);
        let server = self.server.publish(HashMap::new(), now, ttl);
        let client = self.client.publish(HashMap::new(), now, ttl);
        // Each place in a cap is freed when the last series that holds its value expires.
        let live = |series: &[(WorkloadLabels, Histogram)], value: fn(&[String]) -> String| {
            series
                .iter()
                .map(|(labels, _)| (cap_key(&labels.who), value(&labels.values)))
                .collect::<HashSet<_>>()
        };
        // Values: method, status, route, scheme / method, status, address, port, scheme.
        let routes = live(&server, |values| values[2].clone());
        let servers = live(&client, |values| server_key(&values[2], &values[3]));
        self.routes
            .retain(|owner, route| routes.contains(&(owner.to_owned(), route.to_owned())));
        self.servers
            .retain(|owner, server| servers.contains(&(owner.to_owned(), server.to_owned())));
        RequestsSnapshot {
            server,
            client,
            connections: self.connections.followed() as u64,
            chunks_dropped: self.connections.chunks_dropped(),
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

#[cfg(test)]
mod tests {
    use monitor_common::Owner;
    use monitor_protocols::http::Method;

    use super::*;
    use crate::series::{labels::LabelPolicy, table::Budget};

    fn who(namespace: &str, service: &str, comm: &str) -> Workload {
        Workload {
            comm: comm.into(),
            namespace: namespace.into(),
            service: service.into(),
            ..Workload::default()
        }
    }

    fn exchange(role: Role, route: &str, host: Option<&str>, port: u16) -> Completed {
        Completed {
            owner: Owner {
                tgid: 1,
                generation: 0,
            },
            remote: SocketAddr::from(([10, 0, 0, 1], port)),
            tls: false,
            http: HttpExchange {
                role,
                method: Method::Get,
                status: 200,
                route: route.into(),
                duration_ns: 1_000,
                host: host.map(str::to_owned),
            },
        }
    }

    /// The route (server) or address and port (client) each recorded exchange got.
    fn labels_of(series: &[(WorkloadLabels, Histogram)], who: &Workload) -> Vec<Vec<String>> {
        let mut found: Vec<Vec<String>> = series
            .iter()
            .filter(|(labels, _)| labels.who == *who)
            .map(|(labels, _)| labels.values[2..labels.values.len() - 1].to_vec())
            .collect();
        found.sort();
        found
    }

    #[test]
    fn routes_and_servers_are_capped_per_service_and_freed_when_their_own_series_expire() {
        let policy = LabelPolicy::default();
        let mut budget = Budget::new(1_000);
        let start = Instant::now();
        let ttl = Duration::from_secs(60);
        let mut requests = Requests::new(2, 1);
        let shop = who("a", "shop", "java");
        // Another service under the same comm: a cap of its own.
        let cart = who("b", "cart", "java");
        let mut record = |requests: &mut Requests, exchange: &Completed, who: &Workload, at| {
            let mut recorder = Recorder {
                policy: &policy,
                budget: &mut budget,
                now: at,
            };
            requests.record(exchange, who, &mut recorder);
        };
        let server = |route| exchange(Role::Server, route, None, 80);
        record(&mut requests, &server("/x"), &shop, start);
        // A series' age counts from the sweep that first shows its value.
        requests.publish(start, ttl);
        let later = start + Duration::from_secs(30);
        for route in ["/y", "/z"] {
            record(&mut requests, &server(route), &shop, later);
        }
        record(&mut requests, &server("/q"), &cart, later);
        let client = |host| exchange(Role::Client, "/", Some(host), 8080);
        record(&mut requests, &client("db.internal"), &shop, later);
        record(&mut requests, &client("cache.internal"), &shop, later);
        let snapshot = requests.publish(later, ttl);
        let routes = |snapshot: &RequestsSnapshot, who| labels_of(&snapshot.server, who);
        assert_eq!(routes(&snapshot, &shop), [["/x"], ["/y"], ["_overflow"]]);
        assert_eq!(routes(&snapshot, &cart), [["/q"]]);
        assert_eq!(
            labels_of(&snapshot.client, &shop),
            [["db.internal", "8080"], ["other", "other"]]
        );

        // /x alone has been idle past the TTL: its place, and only its, is free again.
        let expired = start + ttl + Duration::from_secs(1);
        requests.publish(expired, ttl);
        record(&mut requests, &server("/w"), &shop, expired);
        record(&mut requests, &server("/v"), &shop, expired);
        let snapshot = requests.publish(expired, ttl);
        assert_eq!(
            routes(&snapshot, &shop),
            [["/w"], ["/y"], ["_overflow"]],
            "/w took the place of /x; /v found none"
        );
    }
}
