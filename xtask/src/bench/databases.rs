//! The databases suite: redis-server under `redis-benchmark` (one command in flight per
//! connection, `-P 1`, and pipelines of 16, `-P 16`) and PostgreSQL under `pgbench -S`
//! (read-only transactions), each with and without the agent, in interleaved rounds. The
//! server runs on one CPU and its load generator on another, like nginx and wrk.
use std::{
    env, fs,
    net::TcpStream,
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};

use super::{
    http::{Placement, pinned},
    lab::{Lab, interleave},
    report::{Condition, Environment, median},
};
use crate::{
    agent_http::free_port,
    process::{Supervised, as_nobody, find_program, output, postgres_bin},
};

const READY_TIMEOUT: Duration = Duration::from_secs(30);
const STOP_GRACE: Duration = Duration::from_secs(10);
/// redis-benchmark's clients, and requests per measured test.
const REDIS_CLIENTS: u32 = 16;
/// pgbench's clients (one thread).
const PGBENCH_CLIENTS: u32 = 4;
/// Nothing; the agent as it ships (Redis and PostgreSQL framed in the kernel); the agent
/// framing neither (`--probes.redis=false --probes.postgres=false`); and the agent copying
/// both to user space instead (`--probes.databases`).
const CONDITIONS: [Condition; 4] = [
    Condition::None,
    Condition::Agent,
    Condition::AgentNoDbFraming,
    Condition::AgentDatabases,
];

/// One workload's figure: operations per second.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Workload {
    RedisSet { pipeline: u32 },
    RedisGet { pipeline: u32 },
    Pgbench,
}

const WORKLOADS: [Workload; 5] = [
    Workload::RedisSet { pipeline: 1 },
    Workload::RedisGet { pipeline: 1 },
    Workload::RedisSet { pipeline: 16 },
    Workload::RedisGet { pipeline: 16 },
    Workload::Pgbench,
];

impl Workload {
    fn name(self) -> String {
        match self {
            Workload::RedisSet { pipeline } => format!("redis-benchmark -t set -P {pipeline}"),
            Workload::RedisGet { pipeline } => format!("redis-benchmark -t get -P {pipeline}"),
            Workload::Pgbench => "pgbench -S".into(),
        }
    }
}

pub struct DatabasesReport {
    environment: Environment,
    runs: u32,
    requests: u64,
    seconds: u64,
    versions: Vec<String>,
    /// (condition, workload) → ops/s of each round.
    figures: Vec<(Condition, Workload, Vec<f64>)>,
    /// The agent's share of a core per round, by condition.
    agent_cpu: Vec<(Condition, Vec<f64>)>,
    unavailable: Vec<(Condition, String)>,
}

pub fn suite(
    lab: &Lab,
    runs: u32,
    requests: u64,
    seconds: u64,
    environment: Environment,
) -> Result<DatabasesReport> {
    let placement = Placement::detect();
    let redis = RedisServer::start(placement)?;
    let postgres = PostgresServer::start(placement)?;
    let benchmark = find_program("redis-benchmark")
        .context("redis-benchmark is not installed (`cargo xtask setup` installs redis-tools)")?;
    let versions = vec![
        output(Command::new(&redis.program).arg("--version"))
            .unwrap_or_else(|_| "redis-server: unknown".into())
            .trim()
            .to_owned(),
        output(Command::new(postgres.bin.join("postgres")).arg("--version"))
            .unwrap_or_else(|_| "postgres: unknown".into())
            .trim()
            .to_owned(),
    ];
    let mut figures: Vec<(Condition, Workload, Vec<f64>)> = Vec::new();
    let mut agent_cpu: Vec<(Condition, Vec<f64>)> = Vec::new();
    let measure = |condition: Condition| {
        lab.under_observed(condition, "", || {
            let mut ops = Vec::new();
            for workload in WORKLOADS {
                let value = match workload {
                    Workload::RedisSet { pipeline } | Workload::RedisGet { pipeline } => {
                        let test = if matches!(workload, Workload::RedisSet { .. }) {
                            "set"
                        } else {
                            "get"
                        };
                        redis_benchmark(
                            &benchmark, placement, redis.port, test, pipeline, requests,
                        )?
                    }
                    Workload::Pgbench => postgres.pgbench(placement, seconds)?,
                };
                ops.push((workload, value));
            }
            Ok(ops)
        })
    };
    let unavailable = interleave(runs, &CONDITIONS, measure, |at, condition, round| {
        for (workload, value) in &round.value {
            println!(
                "bench: {at} {:<8} {:<32} {value:>10.0} ops/s",
                condition.name(),
                workload.name()
            );
            match figures
                .iter_mut()
                .find(|(c, w, _)| *c == condition && w == workload)
            {
                Some((_, _, values)) => values.push(*value),
                None => figures.push((condition, *workload, vec![*value])),
            }
        }
        if let Some(cpu) = round.cpu {
            match agent_cpu.iter_mut().find(|(c, _)| *c == condition) {
                Some((_, shares)) => shares.push(cpu.core_share()),
                None => agent_cpu.push((condition, vec![cpu.core_share()])),
            }
        }
    })?;
    drop(redis);
    drop(postgres);
    Ok(DatabasesReport {
        environment,
        runs,
        requests,
        seconds,
        versions,
        figures,
        agent_cpu,
        unavailable,
    })
}

/// `redis-benchmark -t TEST -P PIPELINE`: the requests per second it reports.
fn redis_benchmark(
    program: &Path,
    placement: Placement,
    port: u16,
    test: &str,
    pipeline: u32,
    requests: u64,
) -> Result<f64> {
    let mut cmd = pinned(placement.wrk, program);
    cmd.args([
        "-h",
        "127.0.0.1",
        "-p",
        &port.to_string(),
        "-t",
        test,
        "--csv",
    ])
    .args([
        "-c",
        &REDIS_CLIENTS.to_string(),
        "-P",
        &pipeline.to_string(),
    ])
    .args(["-n", &requests.to_string()]);
    let text = output(&mut cmd).context("running redis-benchmark")?;
    parse_redis_csv(&text).with_context(|| format!("redis-benchmark printed {text:?}"))
}

/// The `rps` of redis-benchmark's one CSV data line (`"SET","123456.78",…`).
fn parse_redis_csv(text: &str) -> Result<f64> {
    let line = text
        .lines()
        .find(|line| !line.starts_with("\"test\"") && line.contains(','))
        .context("no data line")?;
    let rps = line.split(',').nth(1).context("no rps column")?;
    Ok(rps.trim_matches('"').parse()?)
}

/// The `tps = N (without initial connection time)` pgbench prints.
fn parse_pgbench(text: &str) -> Result<f64> {
    let line = text
        .lines()
        .find(|line| line.starts_with("tps = "))
        .context("no tps line")?;
    let value = line["tps = ".len()..]
        .split_whitespace()
        .next()
        .context("no tps")?;
    Ok(value.parse()?)
}

/// A redis-server of its own on a free port, no persistence, stopped on drop.
struct RedisServer {
    process: Option<Supervised>,
    program: PathBuf,
    port: u16,
}

impl RedisServer {
    fn start(placement: Placement) -> Result<Self> {
        let program = find_program("redis-server")
            .context("redis-server is not installed (`cargo xtask setup` installs it)")?;
        let port = free_port()?;
        let mut cmd = pinned(placement.nginx, &program);
        cmd.args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let process = Supervised::spawn("redis-server", &mut cmd)?;
        wait_listening(port)?;
        Ok(Self {
            process: Some(process),
            program,
            port,
        })
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if let Some(mut process) = self.process.take() {
            let _ = process.stop(libc::SIGTERM, STOP_GRACE);
        }
    }
}

fn wait_listening(port: u16) -> Result<()> {
    let deadline = Instant::now() + READY_TIMEOUT;
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() >= deadline {
            bail!("nothing listens on 127.0.0.1:{port} after {READY_TIMEOUT:?}");
        }
        thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}

/// A PostgreSQL cluster of its own (`initdb` in a temp dir, run as nobody: the server
/// refuses root), initialised for pgbench at scale 1, stopped and removed on drop.
struct PostgresServer {
    process: Option<Supervised>,
    bin: PathBuf,
    dir: PathBuf,
    port: u16,
}

impl PostgresServer {
    fn start(placement: Placement) -> Result<Self> {
        let bin = postgres_bin()?;
        let dir = env::temp_dir().join(format!("xtask-bench-pg-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let data = dir.join("data");
        fs::create_dir_all(&data).with_context(|| format!("creating {}", data.display()))?;
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755))?;
        let status = Command::new("chown")
            .arg("65534:65534")
            .arg(&data)
            .status()?;
        if !status.success() {
            bail!("chown of {} failed", data.display());
        }
        let data_arg = data.display().to_string();
        output(
            as_nobody(&bin.join("initdb")).args(["-D", &data_arg, "-A", "trust", "-U", "postgres"]),
        )
        .context("initdb")?;
        let port = free_port()?;
        let mut server = as_nobody_pinned(placement.nginx, &bin.join("postgres"));
        server
            .args(["-D", &data_arg, "-p", &port.to_string(), "-k", &data_arg])
            .args(["-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let process = Supervised::spawn("postgres", &mut server)?;
        let postgres = Self {
            process: Some(process),
            bin,
            dir,
            port,
        };
        wait_listening(port)?;
        // Ready for queries (not only listening), then pgbench's tables.
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let init = output(
                Command::new(postgres.bin.join("pgbench"))
                    .args(postgres.connection())
                    .args(["-i", "-s", "1", "-q", "postgres"]),
            );
            match init {
                Ok(_) => break,
                Err(err) if Instant::now() >= deadline => return Err(err.context("pgbench -i")),
                Err(_) => thread::sleep(Duration::from_millis(500)),
            }
        }
        Ok(postgres)
    }

    fn connection(&self) -> Vec<String> {
        [
            "-h",
            "127.0.0.1",
            "-p",
            &self.port.to_string(),
            "-U",
            "postgres",
        ]
        .map(str::to_owned)
        .to_vec()
    }

    /// `pgbench -S` for `seconds`: the transactions per second it reports.
    fn pgbench(&self, placement: Placement, seconds: u64) -> Result<f64> {
        let mut cmd = pinned(placement.wrk, &self.bin.join("pgbench"));
        cmd.args(self.connection())
            .args(["-n", "-S", "-c", &PGBENCH_CLIENTS.to_string(), "-j", "1"])
            .args(["-T", &seconds.to_string(), "postgres"]);
        let text = output(&mut cmd).context("running pgbench")?;
        parse_pgbench(&text).with_context(|| format!("pgbench printed {text:?}"))
    }
}

impl Drop for PostgresServer {
    fn drop(&mut self) {
        if let Some(mut process) = self.process.take() {
            // SIGINT: PostgreSQL's fast shutdown.
            let _ = process.stop(libc::SIGINT, STOP_GRACE);
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// `program` run by the unprivileged user 65534 (nobody), on `cpu` if given.
fn as_nobody_pinned(cpu: Option<usize>, program: &Path) -> Command {
    let mut cmd = match cpu {
        Some(cpu) => {
            let mut cmd = Command::new("taskset");
            cmd.arg("-c").arg(cpu.to_string()).arg("setpriv");
            cmd
        }
        None => Command::new("setpriv"),
    };
    cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(program);
    cmd
}

impl DatabasesReport {
    fn median_of(&self, condition: Condition, workload: Workload) -> Option<f64> {
        self.figures
            .iter()
            .find(|(c, w, _)| *c == condition && *w == workload)
            .and_then(|(_, _, values)| median(values))
    }

    pub fn table(&self) -> String {
        let mut out = String::from(
            "| workload | none (ops/s) | agent (ops/s) | loss | agent:no-db-framing (ops/s) | loss | \
             agent:databases (ops/s) | loss | target ≤ 5% |\n\
             |---|---:|---:|---:|---:|---:|---:|---:|---|\n",
        );
        for workload in WORKLOADS {
            let none = self.median_of(Condition::None, workload);
            let cell = |value: Option<f64>| value.map_or("n/a".into(), |v| format!("{v:.0}"));
            let loss = |condition| {
                let value = self.median_of(condition, workload);
                match (none, value) {
                    (Some(none), Some(value)) if none > 0.0 => {
                        (cell(Some(value)), Some((1.0 - value / none) * 100.0))
                    }
                    _ => (cell(value), None),
                }
            };
            let percent = |loss: Option<f64>| loss.map_or("n/a".into(), |l| format!("{l:.1}%"));
            let (agent, agent_loss) = loss(Condition::Agent);
            let (unframed, unframed_loss) = loss(Condition::AgentNoDbFraming);
            let (databases, databases_loss) = loss(Condition::AgentDatabases);
            // Judged as the agent ships: both followed, framed in the kernel.
            let (judged, under) = (agent_loss, Condition::Agent);
            let verdict = match judged {
                Some(loss) if loss <= 5.0 => format!("met (`{}`)", under.name()),
                Some(_) => format!("missed (`{}`)", under.name()),
                None => String::new(),
            };
            out.push_str(&format!(
                "| `{}` | {} | {agent} | {} | {unframed} | {} | {databases} | {} | {verdict} |\n",
                workload.name(),
                cell(none),
                percent(agent_loss),
                percent(unframed_loss),
                percent(databases_loss),
            ));
        }
        out
    }

    pub fn markdown(&self) -> String {
        let mut out = String::from("## Databases (redis-benchmark, pgbench)\n\n");
        out.push_str(&self.environment.markdown());
        out.push_str(&format!(
            "- Servers: {}; the server pinned to one CPU, its load generator to another\n\
             - redis-benchmark: {REDIS_CLIENTS} clients, {} requests per test; pgbench: \
             {PGBENCH_CLIENTS} clients, one thread, {} s per run, scale 1, `-S` (one SELECT \
             per transaction, the simple query protocol)\n\
             - Medians of {} interleaved rounds: `none`; `agent`, the whole agent with its \
             defaults (Redis and PostgreSQL framed in the kernel); `agent:no-db-framing`, \
             the same with `--probes.redis=false --probes.postgres=false` (a database \
             connection judged on its first read/write, then ignored); `agent:databases`, \
             the agent copying both to user space instead and framing them there \
             (`--probes.databases`, as before they were framed in the kernel)\n\n",
            self.versions.join(", "),
            self.requests,
            self.seconds,
            self.runs,
        ));
        out.push_str(&self.table());
        for (condition, shares) in &self.agent_cpu {
            if let Some(cpu) = median(shares) {
                out.push_str(&format!(
                    "\n`{}` kept {:.1}% of a core busy over a round (all five workloads).\n",
                    condition.name(),
                    cpu * 100.0
                ));
            }
        }
        for (condition, reason) in &self.unavailable {
            out.push_str(&format!(
                "\n`{}` could not be measured: {reason}\n",
                condition.name()
            ));
        }
        out.push_str(
            "\nHow: the agent finds a database connection by its first bytes in the kernel. \
             Redis is framed there (`mon_redis`): one 104-byte `REDIS_EVENTS` record per \
             command and per reply, paired in the agent. So is PostgreSQL (`mon_pg_step`): each \
             message's header read and its body skipped, a `DB_EVENTS` record (its header and \
             at most 64 bytes of its body) per message that starts, names or answers an \
             operation, parsed in the agent. `agent` against `agent:no-db-framing` is what \
             framing costs; most of `agent:no-db-framing`'s loss is the rest of the agent: \
             every read and write is a system call, timed at its entry and exit, and a socket \
             send and receive.\n",
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_redis_benchmark_csv_and_pgbench_tps() {
        let csv = "\"test\",\"rps\",\"avg_latency_ms\"\n\"SET\",\"81967.21\",\"0.175\"\n";
        assert_eq!(parse_redis_csv(csv).unwrap(), 81967.21);
        assert!(parse_redis_csv("\"test\",\"rps\"\n").is_err());
        let pgbench = "number of transactions actually processed: 100\n\
                       tps = 9813.542689 (without initial connection time)\n";
        assert_eq!(parse_pgbench(pgbench).unwrap(), 9813.542689);
        assert!(parse_pgbench("tps = x").is_err());
    }
}
