//! Database operations served and made, with caps per service on the servers a client names
//! and on the error codes a server chooses. Two sources:
//! - Redis, framed in the kernel (`monitor-ebpf/src/redis.rs`): a `REDIS_EVENTS` record per
//!   command and reply, paired here (`redis`);
//! - PostgreSQL (and Redis where `--probes.redis=false` and `--probes.databases`): the
//!   reads/writes of connections the probes found to speak its wire protocol (`DB_EVENTS`,
//!   from `monitor-ebpf/src/copied.rs`), framed here by the parsers of `monitor-protocols`.
use std::{net::SocketAddr, time::Instant};

use foldhash::{HashMap, HashMapExt, HashSet};
use monitor_common::{Counter, Owner, map};
use monitor_protocols::{Exchange, Role};

mod redis;

use super::{
    connections::Connections,
    signal::{Context, SeriesCount, Settings, Signal, cap_key, series_count},
};
use crate::{
    probes::{
        Loaded,
        decode::{self, PayloadRecord, RedisRecord},
        event_ring::{EventRing, RingRead, RingSpec},
    },
    process::naming::OwnedEvent,
    series::{
        families::{Family, family},
        labels::{LabelPolicy, Workload},
        publish::{self, Published},
        table::{Histogram, Recorder, SeriesTable, ValueCap, WorkloadLabels, observe},
    },
};

const REDIS_RING: RingSpec = RingSpec {
    map: map::REDIS_EVENTS,
    label: "redis_events",
    produced: Counter::RedisEventsProduced,
    dropped: Counter::RedisEventsDropped,
};

const FAMILIES: &[Family] = &[family::DB_CLIENT_DURATION, family::DB_SERVER_DURATION];

const RING: RingSpec = RingSpec {
    map: map::DB_EVENTS,
    label: "db_events",
    produced: Counter::DbEventsProduced,
    dropped: Counter::DbEventsDropped,
};

/// `server_address` and `server_port` of every server past a service's cap
/// (`--tcp.peers-per-comm`), as the TCP families' `peer`.
pub const OVERFLOW_SERVER: &str = crate::signals::tcp::OVERFLOW_PEER;
/// The `db_response_status_code` of every error code past a service's cap (the same number
/// as servers): error codes are the server's to choose (a Redis module's own prefixes).
pub const OVERFLOW_STATUS: &str = "_OTHER";

/// What sets an operation's series apart: whose it is, and its labels' values.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct OperationKey {
    pub owner: Owner,
    pub role: Role,
    /// `db_system_name`: `redis`, `postgresql`.
    pub system: &'static str,
    pub name: String,
    /// Empty on success.
    pub status: String,
    pub server: SocketAddr,
}

impl OperationKey {
    /// The key of a database exchange, if it is one, and its duration.
    pub fn of(exchange: Exchange, owner: Owner, server: SocketAddr) -> Option<(Self, u64)> {
        let (role, system, name, status, duration_ns) = match exchange {
            Exchange::Redis(redis) => (
                redis.role,
                "redis",
                redis.command,
                redis.error,
                redis.duration_ns,
            ),
            Exchange::Postgres(postgres) => (
                postgres.role,
                "postgresql",
                postgres.operation,
                postgres.sqlstate,
                postgres.duration_ns,
            ),
            _ => return None,
        };
        let key = OperationKey {
            owner,
            role,
            system,
            name,
            status: status.unwrap_or_default(),
            server,
        };
        Some((key, duration_ns))
    }
}

/// Operations of one key, batched over a drain, waiting for their process to be named: a
/// busy Redis completes hundreds of thousands a second, and the series tables are visited
/// once per batch, not once per operation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Operations {
    pub key: OperationKey,
    pub durations: Histogram,
}

impl OwnedEvent for Operations {
    fn owner(&self) -> Owner {
        self.key.owner
    }
}

#[derive(Debug, Default)]
pub struct OperationsSnapshot {
    pub client: Vec<(WorkloadLabels, Histogram)>,
    pub server: Vec<(WorkloadLabels, Histogram)>,
}

/// The operations' series, and the caps on the values a workload chooses.
pub struct OperationSeries {
    servers: ValueCap,
    statuses: ValueCap,
    client: SeriesTable<WorkloadLabels, Histogram>,
    server: SeriesTable<WorkloadLabels, Histogram>,
}

impl OperationSeries {
    pub fn new(values_per_service: usize) -> Self {
        Self {
            servers: ValueCap::new(values_per_service),
            statuses: ValueCap::new(values_per_service),
            client: SeriesTable::default(),
            server: SeriesTable::default(),
        }
    }

    /// Records a batch of operations of the process `who`.
    pub fn record(&mut self, batch: &Operations, who: &Workload, rec: &mut Recorder) {
        use family::{DB_CLIENT_DURATION, DB_SERVER_DURATION};
        let key = &batch.key;
        let family = match key.role {
            Role::Client => DB_CLIENT_DURATION,
            Role::Server => DB_SERVER_DURATION,
        };
        let owner = cap_key(&rec.policy.project(family.name, who));
        let status = if key.status.is_empty() || self.statuses.admit(&owner, &key.status) {
            key.status.clone()
        } else {
            OVERFLOW_STATUS.to_owned()
        };
        let mut values = vec![key.system.to_owned(), key.name.clone(), status];
        let table = match key.role {
            Role::Client => {
                let (address, port) = (key.server.ip().to_string(), key.server.port().to_string());
                if self.servers.admit(&owner, &format!("{address} {port}")) {
                    values.extend([address, port]);
                } else {
                    values.extend([OVERFLOW_SERVER.to_owned(), OVERFLOW_SERVER.to_owned()]);
                }
                &mut self.client
            }
            Role::Server => &mut self.server,
        };
        rec.record(family.name, table, who, values, &batch.durations);
    }

    pub fn publish(&mut self, now: Instant, ttl: std::time::Duration) -> OperationsSnapshot {
        let client = self.client.publish(HashMap::new(), now, ttl);
        let server = self.server.publish(HashMap::new(), now, ttl);
        // Each place in a cap is freed when the last series that holds its value expires.
        // Values: system, name, status[, address, port].
        let every = || client.iter().chain(&server);
        let statuses: HashSet<(String, String)> = every()
            .map(|(labels, _)| (cap_key(&labels.who), labels.values[2].clone()))
            .collect();
        let servers: HashSet<(String, String)> = client
            .iter()
            .map(|(labels, _)| {
                let server = format!("{} {}", labels.values[3], labels.values[4]);
                (cap_key(&labels.who), server)
            })
            .collect();
        self.statuses
            .retain(|owner, status| statuses.contains(&(owner.to_owned(), status.to_owned())));
        self.servers
            .retain(|owner, server| servers.contains(&(owner.to_owned(), server.to_owned())));
        OperationsSnapshot { client, server }
    }

    pub fn series_counts(&self) -> Vec<SeriesCount> {
        vec![
            series_count(&family::DB_CLIENT_DURATION, &self.client),
            series_count(&family::DB_SERVER_DURATION, &self.server),
        ]
    }
}

pub struct Db {
    ring: EventRing<PayloadRecord>,
    connections: Connections,
    redis_ring: EventRing<RedisRecord>,
    redis: redis::RedisConnections,
    pending: Vec<(Operations, Instant)>,
    series: OperationSeries,
}

impl Db {
    pub fn take(loaded: &mut Loaded, settings: &Settings) -> anyhow::Result<Self> {
        Ok(Self {
            ring: EventRing::take(loaded, RING, decode::db_event)?,
            connections: Connections::new(),
            redis_ring: EventRing::take(loaded, REDIS_RING, decode::redis_event)?,
            redis: redis::RedisConnections::new(),
            pending: Vec::new(),
            series: OperationSeries::new(settings.peers_per_comm),
        })
    }
}

impl Signal for Db {
    fn families(&self) -> &'static [Family] {
        FAMILIES
    }

    fn ring_fds(&self) -> anyhow::Result<Vec<std::os::fd::OwnedFd>> {
        Ok(vec![self.ring.fd()?, self.redis_ring.fd()?])
    }

    /// Parsing needs no name: only the reads/writes that complete an operation wait for
    /// their process to be named.
    fn drain(&mut self, ctx: &mut Context) {
        let now = ctx.now;
        let connections = &mut self.connections;
        let mut batches: HashMap<OperationKey, Histogram> = HashMap::new();
        let mut batch = |exchange, owner, server| {
            if let Some((key, duration_ns)) = OperationKey::of(exchange, owner, server) {
                observe(batches.entry(key).or_insert(Histogram::ZERO), duration_ns);
            }
        };
        self.ring.drain(|event| {
            connections.feed(&event, now, |exchange, server| {
                batch(exchange, event.owner, server)
            })
        });
        let redis = &mut self.redis;
        self.redis_ring.drain(|event| {
            redis.feed(&event, now, |exchange, server| {
                batch(exchange, event.owner, server)
            })
        });
        self.pending.extend(
            batches
                .into_iter()
                .map(|(key, durations)| (Operations { key, durations }, now)),
        );
        let (series, recorder) = (&mut self.series, &mut ctx.recorder);
        ctx.naming
            .name_events(&mut self.pending, now, |batch, who| {
                series.record(batch, who, recorder)
            });
    }

    fn publish(&mut self, ctx: &mut Context) -> Vec<Published> {
        self.connections.forget_idle(ctx.now);
        self.redis.forget_idle(ctx.now);
        published(&self.series.publish(ctx.now, ctx.ttl), ctx.recorder.policy)
    }

    fn series_counts(&self) -> Vec<SeriesCount> {
        self.series.series_counts()
    }

    fn rings(&self) -> Vec<RingRead> {
        vec![self.ring.status(), self.redis_ring.status()]
    }

    fn map_insert_failures(&self) -> &'static [(&'static str, Counter)] {
        &[
            (map::REDIS_CONNS, Counter::RedisConnsFull),
            (map::PG_CONNS, Counter::PgConnsFull),
        ]
    }
}

/// The database families from one sweep's series.
pub fn published(operations: &OperationsSnapshot, policy: &LabelPolicy) -> Vec<Published> {
    vec![
        Published::workload(
            family::DB_CLIENT_DURATION,
            &operations.client,
            policy,
            publish::histogram,
        ),
        Published::workload(
            family::DB_SERVER_DURATION,
            &operations.server,
            policy,
            publish::histogram,
        ),
    ]
}
