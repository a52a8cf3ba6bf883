//! Captured socket payloads → per-connection protocol parsers (`monitor-protocols`) →
//! request series (HTTP and gRPC, server and client RED metrics), with caps per service on
//! the label values a request chooses: routes and gRPC methods (both sides), server
//! addresses (client).
//!
//! Pure: events arrive decoded and already named. Connection state is bounded: idle
//! connections are forgotten, and at most `MAX_CONNECTIONS` are followed at once.
use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use foldhash::{HashMap, HashMapExt, HashSet};

use monitor_protocols::{Exchange, Role, http::split_host_port};

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
    /// An HTTP exchange or a gRPC call.
    pub exchange: Exchange,
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
    pub rpc_server: Vec<(WorkloadLabels, Histogram)>,
    pub rpc_client: Vec<(WorkloadLabels, Histogram)>,
    /// Connections being followed, chunks dropped because too many were, and HTTP/2
    /// connections given up part-way.
    pub connections: u64,
    pub chunks_dropped: u64,
    pub http2_lost: u64,
}

pub struct Requests {
    connections: Connections,
    /// Distinct routes per service (`OVERFLOW_ROUTE` beyond), so that identifiers the route
    /// normalisation misses cannot grow the series count without bound, and one tenant's
    /// junk cannot crowd out another's routes.
    routes: ValueCap,
    /// Distinct gRPC methods per service, as routes are.
    methods: ValueCap,
    /// Distinct servers (`address:port`) per service a client reaches.
    servers: ValueCap,
    server: SeriesTable<WorkloadLabels, Histogram>,
    client: SeriesTable<WorkloadLabels, Histogram>,
    rpc_server: SeriesTable<WorkloadLabels, Histogram>,
    rpc_client: SeriesTable<WorkloadLabels, Histogram>,
}

impl Requests {
    pub fn new(routes_per_service: usize, servers_per_service: usize) -> Self {
        Self {
            connections: Connections::new(),
            routes: ValueCap::new(routes_per_service),
            methods: ValueCap::new(routes_per_service),
            servers: ValueCap::new(servers_per_service),
            server: SeriesTable::default(),
            client: SeriesTable::default(),
            rpc_server: SeriesTable::default(),
            rpc_client: SeriesTable::default(),
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
            exchange: Exchange::Http(http),
        })
    }

    /// Feeds one captured read/write to its connection's parser; the exchanges it completes
    /// are appended to `completed`, to be named and recorded (`record`). Parsing needs no
    /// name: only the few reads/writes that complete a request pay for naming.
    pub fn feed(&mut self, event: &PayloadRecord, now: Instant, completed: &mut Vec<Completed>) {
        self.connections.feed(event, now, |exchange, remote| {
            // The databases' exchanges are the `db` room's: it reads their own ring.
            if matches!(exchange, Exchange::Http(_) | Exchange::Grpc(_)) {
                completed.push(Completed {
                    owner: event.owner,
                    remote,
                    tls: event.sk & TLS_TAG != 0,
                    exchange,
                });
            }
        });
    }

    /// Records a completed exchange of the process `who`.
    pub fn record(&mut self, completed: &Completed, who: &Workload, rec: &mut Recorder) {
        use crate::series::families::family::{
            HTTP_CLIENT_DURATION, HTTP_SERVER_DURATION, RPC_CLIENT_DURATION, RPC_SERVER_DURATION,
        };
        let remote = completed.remote;
        let (role, duration_ns, host) = match &completed.exchange {
            Exchange::Http(http) => (http.role, http.duration_ns, http.host.as_deref()),
            Exchange::Grpc(call) => (call.role, call.duration_ns, call.authority.as_deref()),
            _ => return,
        };
        let mut histogram = Histogram::ZERO;
        observe(&mut histogram, duration_ns);
        let families = match &completed.exchange {
            Exchange::Grpc(_) => (RPC_SERVER_DURATION.name, RPC_CLIENT_DURATION.name),
            _ => (HTTP_SERVER_DURATION.name, HTTP_CLIENT_DURATION.name),
        };
        let family = match role {
            Role::Server => families.0,
            Role::Client => families.1,
        };
        let owner = cap_key(&rec.policy.project(family, who));
        // The values a request chooses, capped per service: its route or method first.
        let mut values = match &completed.exchange {
            Exchange::Http(http) => {
                let mut route = String::new();
                if role == Role::Server {
                    route = if self.routes.admit(&owner, &http.route) {
                        http.route.clone()
                    } else {
                        OVERFLOW_ROUTE.to_owned()
                    };
                }
                let mut values = vec![http.method.as_str().to_owned(), http.status.to_string()];
                if role == Role::Server {
                    values.push(route);
                }
                values
            }
            Exchange::Grpc(call) => {
                let method = if self.methods.admit(&owner, &call.method) {
                    call.method.clone()
                } else {
                    OVERFLOW_ROUTE.to_owned()
                };
                vec!["grpc".to_owned(), method, call.status.as_str().to_owned()]
            }
            _ => return,
        };
        if role == Role::Client {
            // OpenTelemetry's server.address: the name the client asked for when it sent
            // one (no reverse DNS), else the peer's IP; the port is the socket's.
            let address = host
                .map(|host| split_host_port(host).0.to_owned())
                .filter(|host| !host.is_empty())
                .unwrap_or_else(|| remote.ip().to_string());
            let port = remote.port().to_string();
            if self.servers.admit(&owner, &server_key(&address, &port)) {
                values.extend([address, port]);
            } else {
                values.extend([OVERFLOW_SERVER.to_owned(), OVERFLOW_SERVER.to_owned()]);
            }
        }
        if let Exchange::Http(http) = &completed.exchange {
            values.push(scheme(completed.tls).to_owned());
            values.push(http.version.as_str().to_owned());
        }
        let table = match (&completed.exchange, role) {
            (Exchange::Grpc(_), Role::Server) => &mut self.rpc_server,
            (Exchange::Grpc(_), Role::Client) => &mut self.rpc_client,
            (_, Role::Server) => &mut self.server,
            (_, Role::Client) => &mut self.client,
        };
        rec.record(family, table, who, values, &histogram);
    }

    pub fn publish(&mut self, now: Instant, ttl: Duration) -> RequestsSnapshot {
        self.connections.forget_idle(now);
        let server = self.server.publish(HashMap::new(), now, ttl);
        let client = self.client.publish(HashMap::new(), now, ttl);
        let rpc_server = self.rpc_server.publish(HashMap::new(), now, ttl);
        let rpc_client = self.rpc_client.publish(HashMap::new(), now, ttl);
        // Each place in a cap is freed when the last series that holds its value expires.
        let live = |series: &[(WorkloadLabels, Histogram)], value: fn(&[String]) -> String| {
            series
                .iter()
                .map(|(labels, _)| (cap_key(&labels.who), value(&labels.values)))
                .collect::<HashSet<_>>()
        };
        // Values: method, status, route, scheme, version / method, status, address, port,
        // scheme, version; gRPC: system, method, status[, address, port].
        let routes = live(&server, |values| values[2].clone());
        let mut servers = live(&client, |values| server_key(&values[2], &values[3]));
        servers.extend(live(&rpc_client, |values| {
            server_key(&values[3], &values[4])
        }));
        let mut methods = live(&rpc_server, |values| values[1].clone());
        methods.extend(live(&rpc_client, |values| values[1].clone()));
        self.routes
            .retain(|owner, route| routes.contains(&(owner.to_owned(), route.to_owned())));
        self.methods
            .retain(|owner, method| methods.contains(&(owner.to_owned(), method.to_owned())));
        self.servers
            .retain(|owner, server| servers.contains(&(owner.to_owned(), server.to_owned())));
        RequestsSnapshot {
            server,
            client,
            rpc_server,
            rpc_client,
            connections: self.connections.followed() as u64,
            chunks_dropped: self.connections.chunks_dropped(),
            http2_lost: self.connections.lost("http2"),
        }
    }

    pub fn series_counts(&self) -> Vec<SeriesCount> {
        use crate::series::families::family::*;
        vec![
            series_count(&HTTP_SERVER_DURATION, &self.server),
            series_count(&HTTP_CLIENT_DURATION, &self.client),
            series_count(&RPC_SERVER_DURATION, &self.rpc_server),
            series_count(&RPC_CLIENT_DURATION, &self.rpc_client),
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
            exchange: Exchange::Http(monitor_protocols::HttpExchange {
                role,
                method: Method::Get,
                status: 200,
                route: route.into(),
                duration_ns: 1_000,
                host: host.map(str::to_owned),
                version: monitor_protocols::http::HttpVersion::Http11,
            }),
        }
    }

    /// The route (server) or address and port (client) each recorded exchange got.
    fn labels_of(series: &[(WorkloadLabels, Histogram)], who: &Workload) -> Vec<Vec<String>> {
        let mut found: Vec<Vec<String>> = series
            .iter()
            .filter(|(labels, _)| labels.who == *who)
            .map(|(labels, _)| labels.values[2..labels.values.len() - 2].to_vec())
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
