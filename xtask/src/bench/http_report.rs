//! The HTTP section of `cargo xtask bench`: nginx's requests/s under wrk with and without
//! the agent, as the share of requests/s lost; the same for the agent with one family of
//! probes at a time, so each family's share of the cost shows; and, for the whole agent,
//! its programs' kernel time per request and its own CPU per 10k requests/s. Each figure
//! stands next to its target.
use std::fmt::Write as _;

use anyhow::{Context as _, Result};

use super::{
    cpu::AgentCpu,
    families::{Family, ProbePlan},
    http::{
        AgentSaw, KEEPALIVE_REQUESTS, Listener, Nginx, Placement, Tool, WRK_CONNECTIONS, Wrk,
        WrkResult,
    },
    lab::{Lab, interleave},
    prog_stats::KernelCost,
    report::{Condition, Environment, cell, median, runs_list},
};
use crate::process::display;

/// Also the order within each round.
pub const CONDITIONS: [Condition; 7] = [
    Condition::None,
    Condition::Agent,
    Condition::AgentOnly(Family::Syscalls),
    Condition::AgentOnly(Family::Tcp),
    Condition::AgentOnly(Family::Capture),
    Condition::AgentUserFraming,
    Condition::Bpftrace,
];

/// What the agent may cost, as a target (the limit) and a goal (what to aim for). These
/// are stated next to the figures; nothing fails when they are missed.
struct Target {
    what: &'static str,
    target: f64,
    goal: Option<f64>,
    show: fn(f64) -> String,
}

/// nginx's requests/s lost to the agent.
const LOSS: Target = Target {
    what: "nginx requests/s lost to the agent",
    target: 0.05,
    goal: Some(0.03),
    show: percent,
};

/// The kernel time of all the agent's programs per request.
const KERNEL_NS: Target = Target {
    what: "kernel time of all the agent's programs per request",
    target: 500.0,
    goal: Some(250.0),
    show: nanoseconds,
};

/// The agent process's own CPU, as a share of one core per 10k requests/s.
const AGENT_CPU: Target = Target {
    what: "agent CPU per 10k requests/s (share of one core)",
    target: 0.01,
    goal: None,
    show: cpu_percent,
};

impl Target {
    fn verdict(&self, value: f64) -> &'static str {
        match self.goal {
            Some(goal) if value <= goal => "goal met",
            Some(_) if value <= self.target => "target met, goal missed",
            None if value <= self.target => "target met",
            _ => "target missed",
        }
    }

    /// A row of the targets table.
    fn row(&self, value: Result<f64, String>) -> String {
        let goal = self
            .goal
            .map_or("–".to_owned(), |goal| format!("≤ {}", (self.show)(goal)));
        let (figure, verdict) = match value {
            Ok(value) => (
                format!("**{}**", (self.show)(value)),
                self.verdict(value).to_owned(),
            ),
            Err(why) => ("n/a".to_owned(), format!("not measured: {}", cell(&why))),
        };
        format!(
            "| {} | {figure} | ≤ {} | {goal} | {verdict} |\n",
            self.what,
            (self.show)(self.target)
        )
    }
}

/// A share of a core: two decimals, since the target is 1%.
fn cpu_percent(fraction: f64) -> String {
    format!("{:.2}%", fraction * 100.0)
}

fn nanoseconds(ns: f64) -> String {
    format!("{ns:.0} ns")
}

/// The peer: per-syscall latency histograms (the agent hooks every syscall of nginx and wrk
/// too), bytes per command, and each request's time on the wire per socket, from the same
/// `sock_*_length` tracepoints the agent's payload capture runs from. A socket whose first
/// data is read is a server's (first byte read to first byte written), one whose first
/// data is written a client's. What it cannot do in-kernel is the agent's parsing: method,
/// status and route. Quoted in the report.
pub const BPFTRACE_SCRIPT: &str = "\
tracepoint:raw_syscalls:sys_enter { @start[tid] = nsecs; }
tracepoint:raw_syscalls:sys_exit /@start[tid]/ {
  @lat[comm, args->id] = hist(nsecs - @start[tid]); delete(@start[tid]);
}
tracepoint:sock:sock_recv_length /args->protocol == 6 && args->ret > 0 && !(args->flags & 2)/ {
  $sk = (uint64)args->sk;
  @received[comm] = sum(args->ret);
  if (@role[$sk] == 0) { @role[$sk] = 1; }
  if (@role[$sk] == 1) {
    if (@since[$sk] == 0) { @since[$sk] = nsecs; }
  } else if (@since[$sk] != 0) {
    @client[comm] = hist(nsecs - @since[$sk]); delete(@since[$sk]);
  }
}
tracepoint:sock:sock_send_length /args->protocol == 6 && args->ret > 0/ {
  $sk = (uint64)args->sk;
  @sent[comm] = sum(args->ret);
  if (@role[$sk] == 0) { @role[$sk] = 2; }
  if (@role[$sk] == 2) {
    if (@since[$sk] == 0) { @since[$sk] = nsecs; }
  } else if (@since[$sk] != 0) {
    @server[comm] = hist(nsecs - @since[$sk]); delete(@since[$sk]);
  }
}
tracepoint:tcp:tcp_destroy_sock {
  delete(@role[(uint64)args->skaddr]); delete(@since[(uint64)args->skaddr]);
}";

/// What one rounds-of-wrk measurement runs: wrk against `url` on `nginx` for `seconds`,
/// `runs` rounds of `conditions` (the bpftrace one runs `bpftrace_script`); `saw` reads what
/// the agent counted of the `kind` requests (`""`, `"https "`) from its /metrics.
pub struct Rounds<'a> {
    pub lab: &'a Lab,
    pub wrk: &'a Wrk,
    pub url: &'a str,
    pub seconds: u64,
    pub runs: u32,
    pub conditions: &'a [Condition],
    pub bpftrace_script: &'a str,
    pub saw: fn(&str) -> AgentSaw,
    pub kind: &'a str,
}

impl Rounds<'_> {
    /// Runs every round, printing each run as it ends; every condition's series, a missing
    /// condition's with why.
    pub fn measure(&self, nginx: &mut Nginx) -> Result<Vec<HttpSeries>> {
        let mut series: Vec<HttpSeries> = self
            .conditions
            .iter()
            .copied()
            .map(HttpSeries::new)
            .collect();
        let unavailable = interleave(
            self.runs,
            self.conditions,
            |condition| {
                let measured = self
                    .lab
                    .under_observed(condition, self.bpftrace_script, || {
                        self.wrk.run(self.url, self.seconds)
                    })?;
                nginx
                    .ensure_running()
                    .context("nginx died during the run")?;
                Ok(measured)
            },
            |at, condition, observed| {
                let result = observed.value;
                let saw = observed.metrics.as_deref().map(self.saw);
                let (kind, load) = (self.kind, self.wrk.name());
                let counted = saw.map_or(String::new(), |saw| {
                    format!(
                        "; agent counted {:.0} nginx / {:.0} {load} {kind}requests, {:.0} events \
                         lost",
                        saw.server, saw.client, saw.lost
                    )
                });
                let cpu = observed.cpu.map_or(String::new(), |cpu| {
                    format!(
                        "; agent CPU {:.1}% of a core, {:.2}% per 10k requests/s",
                        cpu.core_share() * 100.0,
                        cpu.per_10k(result.requests_per_sec) * 100.0
                    )
                });
                println!(
                    "bench: {at} {:<14} {:>9.0} requests/s  p50 {:>6.0} µs  p99 {:>6.0} µs \
                     ({} requests{counted}{cpu})",
                    condition.name(),
                    result.requests_per_sec,
                    result.p50_us,
                    result.p99_us,
                    result.requests
                );
                if let Some(s) = series.iter_mut().find(|s| s.condition == condition) {
                    s.runs.push(result);
                    if condition.is_agent() {
                        s.saw.push(saw);
                        s.cpu.push(observed.cpu);
                    }
                }
            },
        )?;
        for (condition, reason) in unavailable {
            if let Some(s) = series.iter_mut().find(|s| s.condition == condition) {
                s.unavailable = Some(reason);
            }
        }
        Ok(series)
    }
}

/// Per agent run: the requests the `load` generator completed against what the agent
/// counted of the `kind` requests (`""`, `"https "`).
pub fn coverage_table(series: &[HttpSeries], kind: &str, load: &str) -> String {
    let mut out = format!(
        "| condition | run | requests {load} completed | nginx {kind}requests the agent counted \
         | {load} {kind}requests the agent counted | ring-buffer events lost |\n\
         |---|---:|---:|---:|---:|---:|\n",
    );
    for series in series.iter().filter(|s| s.condition.is_agent()) {
        let name = series.condition.name();
        for (index, (run, saw)) in series.runs.iter().zip(&series.saw).enumerate() {
            let counted = match saw {
                Some(saw) => format!("{:.0} | {:.0} | {:.0}", saw.server, saw.client, saw.lost),
                None => "n/a | n/a | n/a".to_owned(),
            };
            let _ = writeln!(
                out,
                "| {name} | {} | {} | {counted} |",
                index + 1,
                run.requests
            );
        }
    }
    out
}

/// One section's measurements against its own nginx (https, http2): `runs` interleaved
/// rounds of `conditions` under the `tool`'s load, then one more agent run with the
/// kernel's BPF statistics on.
pub struct Section<'a> {
    pub lab: &'a Lab,
    pub environment: Environment,
    pub runs: u32,
    pub seconds: u64,
    pub warmup: u64,
    pub tool: Tool,
    pub listener: Listener,
    pub conditions: &'a [Condition],
    /// What the agent counted of the section's requests, and what they are (`"https "`).
    pub saw: fn(&str) -> AgentSaw,
    pub kind: &'a str,
}

/// A section measured against its own nginx, as `cargo xtask bench` prints and writes it.
pub trait NginxSection {
    /// The section's figures, for the console.
    fn console(&self) -> String;
    fn markdown(&self) -> String;
}

/// What a `Section` measured, and with what.
pub struct SectionRuns {
    pub environment: Environment,
    pub runs: u32,
    pub warmup_seconds: u64,
    /// Every run of each condition; `saw` counts only the section's kind of requests.
    pub series: Vec<HttpSeries>,
    /// Every program the agent holds, during the extra agent run, or why not measured.
    pub kernel: Result<KernelCost, String>,
    /// The load's command line as the report shows it.
    pub load_command: String,
    /// nginx's and the load generator's versions.
    pub versions: Vec<String>,
    pub placement: Placement,
}

impl Section<'_> {
    /// One nginx serves every run; the conditions come and go around it. nginx is stopped
    /// when dropped, on success and on any error alike.
    pub fn measure(&self) -> Result<SectionRuns> {
        let placement = Placement::detect();
        let load = Wrk::of(self.tool, placement)?;
        let mut nginx = Nginx::start_with(placement, self.listener)?;
        let url = nginx.url();
        println!("bench: $ {}", display(&load.command(&url, self.seconds)));
        println!("bench: {}warm-up, {} s", self.kind, self.warmup);
        // The section's first requests: nginx's readiness check only saw its port accept.
        load.run(&url, self.warmup).context("warm-up")?;
        let series = Rounds {
            lab: self.lab,
            wrk: &load,
            url: &url,
            seconds: self.seconds,
            runs: self.runs,
            conditions: self.conditions,
            bpftrace_script: "",
            saw: self.saw,
            kind: self.kind,
        }
        .measure(&mut nginx)?;
        let kernel = self
            .lab
            .kernel_cost(&load, &url, self.seconds)
            .map_err(|err| {
                eprintln!("bench: warning: the programs' time per request not measured: {err:#}");
                format!("{err:#}")
            });
        nginx.stop()?;
        Ok(SectionRuns {
            environment: self.environment.clone(),
            runs: self.runs,
            warmup_seconds: self.warmup,
            series,
            kernel,
            load_command: load.shown(nginx.scheme(), self.seconds),
            versions: vec![nginx.version.clone(), load.version.clone()],
            placement,
        })
    }
}

/// The loss target against `series`' agent run, then how much of the loss `without` (the
/// agent without one part: `without_what`, e.g. "the agent without its uprobes") does not
/// have: `part` (e.g. "the uprobes account") for the rest.
pub fn verdict(
    series: &[HttpSeries],
    (requests, target): (&str, f64),
    without: Condition,
    (without_what, part): (&str, &str),
) -> String {
    let at_most = format!(
        "Target: at most {} of nginx's {requests} requests/s lost to the agent;",
        percent(target)
    );
    let mut out = match loss(series, Condition::Agent) {
        Ok(agent) => format!(
            "{at_most} this run lost **{}**: {}.",
            percent(agent),
            if agent <= target { "met" } else { "missed" }
        ),
        Err(why) => format!("{at_most} not assessable in this run: {}.", cell(&why)),
    };
    let rps = |condition| {
        series
            .iter()
            .find(|s| s.condition == condition)
            .and_then(HttpSeries::rps)
    };
    if let (Some(none), Some(agent), Some(less)) =
        (rps(Condition::None), rps(Condition::Agent), rps(without))
    {
        let _ = write!(
            out,
            " Of that, {without_what} (`{}`) loses {}; {part} for the other {} of `none`'s \
             requests/s, {:.1} µs more per request (1 / requests/s) than without.",
            without.name(),
            percent((none - less) / none),
            percent((less - agent) / none),
            (1.0 / agent - 1.0 / less) * 1e6
        );
    }
    out.push_str(" A measurement, not a test: nothing fails when the target is missed.\n");
    out
}

/// The median over a series' runs of the agent's share of a core.
fn core_share(series: &HttpSeries) -> Option<f64> {
    let shares: Vec<f64> = series
        .cpu
        .iter()
        .flatten()
        .map(|c| c.core_share())
        .collect();
    median(&shares)
}

/// Per condition: median requests/s, loss against `none`, latency, the agent's share of a
/// core (the https and http2 sections).
pub fn rate_table(series: &[HttpSeries]) -> String {
    let mut out = String::from(
        "| condition | requests/s | loss vs none | p50 latency | p99 latency | \
         agent CPU (share of a core) |\n|---|---:|---:|---:|---:|---:|\n",
    );
    for one in series {
        let name = one.condition.name();
        let Some(rps) = one.rps() else {
            let _ = writeln!(out, "| {name} | n/a | n/a | n/a | n/a | n/a |");
            continue;
        };
        let loss = match (one.condition, loss(series, one.condition)) {
            (Condition::None, _) => "baseline".to_owned(),
            (Condition::Agent, Ok(loss)) => format!("**{}**", percent(loss)),
            (_, Ok(loss)) => percent(loss),
            (_, Err(_)) => "n/a".to_owned(),
        };
        let p50 = one.median_by(|run| run.p50_us).unwrap_or(f64::NAN);
        let p99 = one.median_by(|run| run.p99_us).unwrap_or(f64::NAN);
        let cpu = if one.condition.is_agent() {
            core_share(one).map_or("n/a".to_owned(), percent)
        } else {
            "–".to_owned()
        };
        let _ = writeln!(
            out,
            "| {name} | {rps:.0} | {loss} | {p50:.0} µs | {p99:.0} µs | {cpu} |"
        );
    }
    out
}

/// Every run's requests/s and agent CPU, so the spread behind each median of `rate_table`
/// can be judged.
pub fn rate_runs_table(series: &[HttpSeries]) -> String {
    let mut out =
        String::from("| condition | requests/s | agent CPU (% of a core) |\n|---|---|---|\n");
    for one in series {
        let name = one.condition.name();
        if let Some(reason) = &one.unavailable {
            let _ = writeln!(out, "| {name} | n/a: {} | |", cell(reason));
            continue;
        }
        let rps: Vec<f64> = one.runs.iter().map(|run| run.requests_per_sec).collect();
        let cpu = if one.condition.is_agent() {
            let shares: Vec<String> = one
                .cpu
                .iter()
                .map(|cpu| {
                    cpu.map_or("n/a".to_owned(), |cpu| {
                        format!("{:.1}", cpu.core_share() * 100.0)
                    })
                })
                .collect();
            shares.join(", ")
        } else {
            "–".to_owned()
        };
        let _ = writeln!(out, "| {name} | {} | {cpu} |", runs_list(&rps, 0));
    }
    out
}

/// The programs of `cost` whose names start with `prefix`: runs and time per request, and
/// their total; then all the agent's programs' total.
pub fn programs_table(cost: &KernelCost, prefix: &str) -> String {
    let programs: Vec<_> = cost
        .programs
        .iter()
        .filter(|program| program.name.starts_with(prefix))
        .collect();
    if programs.is_empty() {
        return format!("The agent held no `{prefix}*` program: they were not loaded.\n");
    }
    let mut out = String::from(
        "| program | runs | runs per request | ns per run | ns per request |\n\
         |---|---:|---:|---:|---:|\n",
    );
    for &program in &programs {
        let ns_per_run =
            KernelCost::ns_per_run(program).map_or("–".to_owned(), |ns| format!("{ns:.0}"));
        let _ = writeln!(
            out,
            "| `{}` | {} | {:.2} | {ns_per_run} | {:.1} |",
            program.name,
            program.run_cnt,
            cost.runs_per_request(program),
            cost.ns_per_request(program)
        );
    }
    let runs: u64 = programs.iter().map(|p| p.run_cnt).sum();
    let time: u64 = programs.iter().map(|p| p.run_time_ns).sum();
    let requests = cost.requests as f64;
    let _ = writeln!(
        out,
        "| all `{prefix}*` | {runs} | {:.2} | {} | **{:.1}** |",
        runs as f64 / requests,
        if runs > 0 {
            format!("{:.0}", time as f64 / runs as f64)
        } else {
            "–".to_owned()
        },
        time as f64 / requests
    );
    let _ = writeln!(
        out,
        "\nAll the agent's programs together ran {:.1} times and {:.0} ns per request in \
         that run.",
        cost.total_runs_per_request(),
        cost.total_ns_per_request()
    );
    out
}

/// Every run of one condition.
pub struct HttpSeries {
    pub condition: Condition,
    pub runs: Vec<WrkResult>,
    /// Under the agent: what it counted in each run (`None`: /metrics did not answer).
    pub saw: Vec<Option<AgentSaw>>,
    /// Under the agent: its CPU time during each run (`None`: unreadable).
    pub cpu: Vec<Option<AgentCpu>>,
    pub unavailable: Option<String>,
}

impl HttpSeries {
    pub fn new(condition: Condition) -> Self {
        Self {
            condition,
            runs: Vec::new(),
            saw: Vec::new(),
            cpu: Vec::new(),
            unavailable: None,
        }
    }

    /// Each run's agent CPU per 10k requests/s (share of a core), where it was read.
    fn cpu_per_10k_runs(&self) -> Vec<Option<f64>> {
        self.runs
            .iter()
            .zip(&self.cpu)
            .map(|(run, cpu)| cpu.map(|cpu| cpu.per_10k(run.requests_per_sec)))
            .collect()
    }

    /// The median over the runs of the agent's CPU per 10k requests/s.
    pub fn cpu_per_10k(&self) -> Option<f64> {
        if self.unavailable.is_some() {
            return None;
        }
        median(
            &self
                .cpu_per_10k_runs()
                .into_iter()
                .flatten()
                .collect::<Vec<_>>(),
        )
    }

    pub fn median_by(&self, field: impl Fn(&WrkResult) -> f64) -> Option<f64> {
        if self.unavailable.is_some() {
            return None;
        }
        median(&self.runs.iter().map(field).collect::<Vec<_>>())
    }

    pub fn rps(&self) -> Option<f64> {
        self.median_by(|run| run.requests_per_sec)
    }
}

/// What shaped the runs, for the report's text.
pub struct Setup {
    pub warmup_seconds: u64,
    pub wrk_command: String,
    pub nginx_version: String,
    pub wrk_version: String,
    pub placement: Placement,
}

pub struct HttpReport {
    pub environment: Environment,
    pub runs: u32,
    pub setup: Setup,
    pub series: Vec<HttpSeries>,
    /// The agent's probes, and which of them each family condition kept.
    pub plan: ProbePlan,
    /// What the whole agent's programs ran per request during one more agent run with the
    /// kernel's BPF statistics on, or why not measured.
    pub kernel: Result<KernelCost, String>,
}

pub fn percent(fraction: f64) -> String {
    format!("{:.1}%", fraction * 100.0)
}

/// (none − condition) / none of the median requests/s in `series`: the share of nginx's
/// throughput the condition costs.
pub fn loss(series: &[HttpSeries], condition: Condition) -> Result<f64, String> {
    let of = |condition| series.iter().find(|s| s.condition == condition);
    let none = of(Condition::None)
        .and_then(HttpSeries::rps)
        .ok_or("no baseline")?;
    let series = of(condition);
    let value = series.and_then(HttpSeries::rps).ok_or_else(|| {
        match series.and_then(|s| s.unavailable.as_deref()) {
            Some(reason) => format!("{} unavailable: {reason}", condition.name()),
            None => format!("no {} measurement", condition.name()),
        }
    })?;
    Ok((none - value) / none)
}

impl HttpReport {
    fn series(&self, condition: Condition) -> Option<&HttpSeries> {
        self.series.iter().find(|s| s.condition == condition)
    }

    /// (none − condition) / none of the median requests/s: the share of nginx's throughput
    /// the condition costs.
    pub fn loss(&self, condition: Condition) -> Result<f64, String> {
        loss(&self.series, condition)
    }

    /// Medians and losses: the figures the section is for.
    pub fn table(&self) -> String {
        let mut out = String::from(
            "| condition | requests/s | loss vs none | p50 latency | p99 latency |\n\
             |---|---:|---:|---:|---:|\n",
        );
        for series in &self.series {
            let name = series.condition.name();
            let Some(rps) = series.rps() else {
                let _ = writeln!(out, "| {name} | n/a | n/a | n/a | n/a |");
                continue;
            };
            let loss = match (series.condition, self.loss(series.condition)) {
                (Condition::None, _) => "baseline".to_owned(),
                (Condition::Agent, Ok(loss)) => format!("**{}**", percent(loss)),
                (_, Ok(loss)) => percent(loss),
                (_, Err(_)) => "n/a".to_owned(),
            };
            let p50 = series.median_by(|run| run.p50_us).unwrap_or(f64::NAN);
            let p99 = series.median_by(|run| run.p99_us).unwrap_or(f64::NAN);
            let _ = writeln!(
                out,
                "| {name} | {rps:.0} | {loss} | {p50:.0} µs | {p99:.0} µs |"
            );
        }
        out
    }

    /// The median agent CPU per 10k requests/s of the full agent.
    pub fn agent_cpu(&self) -> Result<f64, String> {
        self.series(Condition::Agent)
            .and_then(HttpSeries::cpu_per_10k)
            .ok_or_else(|| "the agent's CPU time was not read".to_owned())
    }

    /// The three figures the issue sets targets for, each next to its target and goal.
    pub fn targets(&self) -> String {
        let mut out =
            String::from("| measure | this run | target | goal | |\n|---|---:|---:|---:|---|\n");
        out.push_str(&LOSS.row(self.loss(Condition::Agent)));
        out.push_str(
            &KERNEL_NS.row(
                self.kernel
                    .as_ref()
                    .map(KernelCost::total_ns_per_request)
                    .map_err(Clone::clone),
            ),
        );
        out.push_str(&AGENT_CPU.row(self.agent_cpu()));
        out.push_str(
            "\nThe targets are what the agent should stay within, the goals what it should \
             reach; this is a measurement, not a test: nothing fails when one is missed.\n",
        );
        out
    }

    /// The full agent and each family on its own: each family's share of the agent's cost.
    pub fn breakdown_table(&self) -> String {
        let mut out = String::from(
            "| condition | probes attached besides process lifecycle | requests/s | \
             loss vs none | agent CPU per 10k req/s |\n|---|---|---:|---:|---:|\n",
        );
        let mut conditions = vec![(
            Condition::Agent,
            format!("all ({} probes)", self.plan.all().len()),
        )];
        for family in Family::ALL {
            let members: Vec<String> = self
                .plan
                .members(family)
                .iter()
                .map(|probe| format!("`{probe}`"))
                .collect();
            conditions.push((Condition::AgentOnly(family), members.join(", ")));
        }
        for (condition, probes) in conditions {
            let name = condition.name();
            let series = self.series(condition);
            let rps = series
                .and_then(HttpSeries::rps)
                .map_or("n/a".to_owned(), |rps| format!("{rps:.0}"));
            let loss = match self.loss(condition) {
                Ok(loss) if condition == Condition::Agent => format!("**{}**", percent(loss)),
                Ok(loss) => percent(loss),
                Err(_) => "n/a".to_owned(),
            };
            let cpu = series
                .and_then(HttpSeries::cpu_per_10k)
                .map_or("n/a".to_owned(), cpu_percent);
            let _ = writeln!(out, "| {name} | {probes} | {rps} | {loss} | {cpu} |");
        }
        let families: Result<Vec<f64>, String> = Family::ALL
            .into_iter()
            .map(|family| self.loss(Condition::AgentOnly(family)))
            .collect();
        if let (Ok(families), Ok(agent)) = (families, self.loss(Condition::Agent)) {
            let _ = writeln!(
                out,
                "\nThe three families on their own lose {} together; the whole agent loses \
                 {}. Beyond the runs' noise, the difference is the probes only the whole agent \
                 attaches (scheduler, OOM) and whatever the families cost together beyond the \
                 sum of their parts.",
                percent(families.iter().sum()),
                percent(agent)
            );
        }
        let _ = writeln!(
            out,
            "\nTargets for the whole agent: {} ≤ {} (goal ≤ {}); {} ≤ {}.",
            LOSS.what,
            percent(LOSS.target),
            LOSS.goal.map_or(String::new(), percent),
            AGENT_CPU.what,
            cpu_percent(AGENT_CPU.target)
        );
        out
    }

    /// Every run, so the spread behind each median can be judged.
    pub fn runs_table(&self) -> String {
        let mut out = String::from(
            "| condition | requests/s | p50 (µs) | p99 (µs) | agent CPU per 10k req/s (%) |\n\
             |---|---|---|---|---|\n",
        );
        for series in &self.series {
            let name = series.condition.name();
            if let Some(reason) = &series.unavailable {
                let _ = writeln!(out, "| {name} | n/a: {} | | | |", cell(reason));
                continue;
            }
            let list = |field: fn(&WrkResult) -> f64| {
                let values: Vec<f64> = series.runs.iter().map(field).collect();
                runs_list(&values, 0)
            };
            let cpu: Vec<String> = series
                .cpu_per_10k_runs()
                .into_iter()
                .map(|cpu| cpu.map_or("n/a".to_owned(), |cpu| format!("{:.2}", cpu * 100.0)))
                .collect();
            let cpu = if series.condition.is_agent() {
                cpu.join(", ")
            } else {
                "–".to_owned()
            };
            let _ = writeln!(
                out,
                "| {name} | {} | {} | {} | {cpu} |",
                list(|run| run.requests_per_sec),
                list(|run| run.p50_us),
                list(|run| run.p99_us),
            );
        }
        out
    }

    /// Per agent run: the requests wrk completed against what the agent counted.
    pub fn coverage_table(&self) -> String {
        coverage_table(&self.series, "", "wrk")
    }

    /// The whole agent's programs per request, or why not measured.
    pub fn kernel_section(&self) -> String {
        let cost = match &self.kernel {
            Ok(cost) => cost,
            Err(why) => return format!("Not measured in this run: {}.\n", cell(why)),
        };
        let mut out = format!(
            "During one more run of the whole agent ({} requests, {:.0} requests/s; the \
             statistics cost every program a little, so this run is not one of the medians \
             above), with the kernel's BPF statistics on (`kernel.bpf_stats_enabled=1`), \
             `bpftool prog show` was read just before and just after wrk, for every program \
             the agent holds. Per program: its runs and run time in that window, runs per \
             request (runs / requests wrk completed), ns per run (run time / runs) and ns per \
             request (run time / requests). Kernel time per request is the sum over all \
             programs of run time / requests.\n\n",
            cost.requests, cost.requests_per_sec
        );
        out.push_str(&cost.table());
        out
    }

    pub fn markdown(&self) -> String {
        let setup = &self.setup;
        let mut out = String::from("## HTTP overhead (nginx and wrk)\n\n");
        out.push_str(&self.environment.markdown());
        let _ = writeln!(
            out,
            "- nginx: {}; wrk: {}",
            setup.nginx_version, setup.wrk_version
        );
        let placement = match setup.placement {
            Placement {
                nginx: Some(nginx),
                wrk: Some(wrk),
            } => format!(
                "nginx (master and worker) is pinned to CPU {nginx} and wrk to CPU {wrk} \
                 (`taskset`), so the scheduler cannot put both on one CPU in some runs and \
                 not in others"
            ),
            _ => "with a single CPU nothing is pinned".to_owned(),
        };
        let _ = write!(
            out,
            "\nThe benchmark starts its own nginx: one worker process, `access_log off`, \
             `keepalive_requests {KEEPALIVE_REQUESTS}`, listening on a free loopback port, \
             answering `GET /ok` with a 3-byte body from its config (`return 200 \"ok\\n\"`). \
             {placement}. After an untimed warm-up of {} s of the same load, each run is\n\n\
             ```\n{}\n```\n\n\
             ({WRK_CONNECTIONS} keep-alive connections from one thread, each sending its next \
             request when the previous answer arrived) and reports wrk's Requests/sec and its \
             50th and 99th latency percentiles. Each condition was run {} times, interleaved \
             round by round (the agent and bpftrace are started afresh for each run); the \
             table shows medians. Loss is (none − condition) / none of the requests/s.\n\n",
            setup.warmup_seconds, setup.wrk_command, self.runs
        );
        out.push_str(&self.table());
        out.push_str("\n### Targets\n\n");
        out.push_str(&self.targets());
        out.push_str(
            "\nThe loss is the `agent` row above; the kernel time is the total of the \
             programs' table below; the agent's CPU is the median over the `agent` runs of \
             its process's user + system time (`/proc/<pid>/stat`, all threads) during the \
             wrk run, divided by that run's wall time and by (requests/s / 10,000).\n",
        );
        out.push_str("\nConditions:\n\n- `none`: nothing attached.\n");
        out.push_str(
            "- `agent`: the release agent with its default settings: syscall hooks, TCP \
             probes, HTTP requests framed in the kernel, one record per request \
             (`http_server_request_duration_seconds` for nginx, \
             `http_client_request_duration_seconds` for wrk), and the scheduler and OOM \
             probes.\n",
        );
        out.push_str(
            "- `agent:user-framing`: the same agent with the requests framed in user space \
             (`--probes.request-framing user`), as where a verifier refuses the framing \
             programs: a prefix of every read and write of an HTTP socket is copied to the \
             agent and parsed there.\n",
        );
        for family in Family::ALL {
            let _ = writeln!(
                out,
                "- `{}`: the agent with its {} only, besides process lifecycle \
                 (`{}`): `{}`.",
                family.condition_name(),
                family.title(),
                self.plan.kept(family).join("`, `"),
                self.plan.agent_args(family).join(" ")
            );
        }
        out.push_str(
            "- `bpftrace`: the closest bpftrace equivalent: per-syscall latency histograms (as \
             in the syscall section), bytes per command, and each request's time per socket \
             (server: first byte read to first byte written; client: the reverse) from the \
             same `sock_send_length`/`sock_recv_length` tracepoints the agent's payload \
             capture runs from. It does less per request than the agent: it copies no \
             payload and cannot tell method, status or route, so it is a cheaper job rather \
             than the same one:\n\n  ```\n",
        );
        for line in BPFTRACE_SCRIPT.lines() {
            let _ = writeln!(out, "  {line}");
        }
        out.push_str("  ```\n\n### Cost by probe family\n\n");
        let _ = write!(
            out,
            "The agent with one family of probes at a time, from the same interleaved runs \
             (medians): how much of the whole agent's loss each family accounts for. Process \
             lifecycle (exec and exit) stays on in every condition: the other probes key \
             their data by the process generations it maintains. wrk's connections are kept \
             alive for {KEEPALIVE_REQUESTS} requests each, so the TCP connection probes run \
             at connection set-up and teardown only, not per request.\n\n",
        );
        out.push_str(&self.breakdown_table());
        out.push_str("\n### All runs\n\n");
        out.push_str(&self.runs_table());
        out.push_str(
            "\n### What the agent counted\n\nRead from its `/metrics` a second after each \
             agent run, as evidence that it did the per-request work being measured. Each run \
             starts a fresh agent, so its counts are that run's; they may exceed wrk's count \
             by the requests still in flight when wrk stopped.\n\n",
        );
        out.push_str(&self.coverage_table());
        out.push_str(
            "\n### The probes' kernel time per request\n\n`mon_sock_send_framed`/`mon_sock_recv_framed` \
             run once per socket write/read of nginx and wrk, and frame the HTTP ones (one \
             record per request); the syscall hooks run on every system call of both, the scheduler \
             hooks on every context switch and wakeup. The programs run for every process \
             on the machine, so anything else running meanwhile adds runs that are counted \
             against wrk's requests.\n\n",
        );
        out.push_str(&self.kernel_section());
        let _ = writeln!(
            out,
            "\nTarget: {} ≤ {} (goal ≤ {}).",
            KERNEL_NS.what,
            nanoseconds(KERNEL_NS.target),
            KERNEL_NS.goal.map_or(String::new(), nanoseconds)
        );
        out.push_str(CAVEATS);
        out
    }
}

const CAVEATS: &str = "
### Reading the figures

Both CPUs of a two-CPU machine are busy in every run, one with nginx and one with wrk (and the
loopback softirq of whichever sends). Whatever the agent does in user space per request
(reading request records, naming and updating histograms; with `agent:user-framing`,
parsing the copied HTTP messages too) therefore
takes CPU time from nginx or from wrk, and shows up in full as lost requests/s; on a machine
with idle CPUs it would run beside them. The in-kernel part (syscall hooks on every call of
both processes, and the framing of each socket read and write) slows nginx and wrk
directly on any machine. The request is the cheapest nginx can answer, so the agent's fixed
per-request cost is as large a share of it as it will ever be. These are measurements on a
shared virtual machine, not a test: nothing fails when a run lands elsewhere.
";

/// Made-up measurements for the sections' report tests.
#[cfg(test)]
pub mod fixtures {
    use std::time::Duration;

    use super::{
        super::{prog_stats::ProgramCounters, report::Environment},
        *,
    };

    /// Runs of 5 s at `rps` each (p50 500 µs, p99 1500 µs); under the agent, `share` of a
    /// core and `counted` requests on each side.
    pub fn series(condition: Condition, rps: &[f64], share: f64, counted: f64) -> HttpSeries {
        let mut series = HttpSeries::new(condition);
        series.runs = rps
            .iter()
            .map(|&rps| WrkResult {
                requests_per_sec: rps,
                requests: (rps * 5.0) as u64,
                p50_us: 500.0,
                p99_us: 1500.0,
            })
            .collect();
        if condition.is_agent() {
            let cpu = AgentCpu {
                cpu: Duration::from_secs_f64(5.0 * share),
                wall: Duration::from_secs(5),
            };
            series.cpu = vec![Some(cpu); rps.len()];
            let saw = AgentSaw {
                server: counted,
                client: counted,
                lost: 0.0,
            };
            series.saw = vec![Some(saw); rps.len()];
        }
        series
    }

    /// A thousand requests at 200/s, and these programs (name, runs, run time in ns).
    pub fn cost(programs: &[(&str, u64, u64)]) -> KernelCost {
        KernelCost {
            requests: 1000,
            requests_per_sec: 200.0,
            programs: programs
                .iter()
                .zip(1..)
                .map(|(&(name, run_cnt, run_time_ns), id)| ProgramCounters {
                    id,
                    name: name.into(),
                    run_time_ns,
                    run_cnt,
                })
                .collect(),
        }
    }

    /// Three runs of `series` on two CPUs, run by `command`, with `load`'s command line.
    pub fn section(
        command: &str,
        load: &str,
        versions: &[&str],
        series: Vec<HttpSeries>,
        kernel: KernelCost,
    ) -> SectionRuns {
        SectionRuns {
            environment: Environment {
                date: "Thu Nov 27 12:00:00 UTC 2025".into(),
                kernel: "6.18.0".into(),
                cpu: "Test CPU".into(),
                nproc: "2".into(),
                command: command.into(),
            },
            runs: 3,
            warmup_seconds: 2,
            series,
            kernel: Ok(kernel),
            load_command: load.into(),
            versions: versions.iter().map(|&v| v.to_owned()).collect(),
            placement: Placement::for_cpus(2),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::{super::prog_stats::ProgramCounters, *};

    fn plan() -> ProbePlan {
        let names = [
            "mon_proc_exec",
            "mon_proc_exit",
            "mon_sys_enter",
            "mon_sys_exit",
            "mon_tcp_destroy",
            "mon_tcp_state",
            "mon_sock_send",
            "mon_sock_recv",
            "mon_sched_switch",
        ];
        ProbePlan::new(names.map(str::to_owned).to_vec()).unwrap()
    }

    /// The agent's CPU over a 10 s run: `share` of a core.
    fn cpu(share: f64) -> Option<AgentCpu> {
        Some(AgentCpu {
            cpu: Duration::from_secs_f64(10.0 * share),
            wall: Duration::from_secs(10),
        })
    }

    fn family(family: Family, runs: &[f64]) -> HttpSeries {
        let mut series = HttpSeries::new(Condition::AgentOnly(family));
        series.runs = runs.iter().map(|&rps| run(rps, 200.0, 400.0)).collect();
        series.saw = vec![None; runs.len()];
        series.cpu = vec![cpu(0.01); runs.len()];
        series
    }

    fn run(rps: f64, p50_us: f64, p99_us: f64) -> WrkResult {
        WrkResult {
            requests_per_sec: rps,
            requests: (rps * 10.0) as u64,
            p50_us,
            p99_us,
        }
    }

    fn report() -> HttpReport {
        let mut none = HttpSeries::new(Condition::None);
        none.runs = vec![
            run(60_000.0, 200.0, 400.0),
            run(62_000.0, 190.0, 390.0),
            run(50_000.0, 250.0, 900.0),
        ];
        let mut agent = HttpSeries::new(Condition::Agent);
        agent.runs = vec![run(58_800.0, 210.0, 420.0), run(57_000.0, 220.0, 430.0)];
        agent.saw = vec![
            Some(AgentSaw {
                server: 588_005.0,
                client: 588_003.0,
                lost: 0.0,
            }),
            None,
        ];
        // 4% and 3% of a core at 58,800 and 57,000 requests/s: 0.68% and 0.53% per 10k.
        agent.cpu = vec![cpu(0.04), cpu(0.03)];
        let mut bpftrace = HttpSeries::new(Condition::Bpftrace);
        bpftrace.runs = vec![run(54_000.0, 230.0, 500.0)];
        HttpReport {
            environment: Environment {
                date: "Thu Nov 27 12:00:00 UTC 2025".into(),
                kernel: "6.18.0".into(),
                cpu: "Test CPU".into(),
                nproc: "2".into(),
                command: "cargo xtask bench --only http --runs 3 --http-seconds 10".into(),
            },
            runs: 3,
            plan: plan(),
            kernel: Ok(KernelCost {
                requests: 1000,
                requests_per_sec: 100.0,
                programs: vec![
                    ProgramCounters {
                        id: 1,
                        name: "mon_sys_enter".into(),
                        run_time_ns: 200_000,
                        run_cnt: 4000,
                    },
                    ProgramCounters {
                        id: 2,
                        name: "mon_sock_send".into(),
                        run_time_ns: 150_000,
                        run_cnt: 1000,
                    },
                ],
            }),
            setup: Setup {
                warmup_seconds: 5,
                wrk_command: "taskset -c 1 wrk -t1 -c16 -d10s --latency \
                              http://127.0.0.1:<port>/ok"
                    .into(),
                nginx_version: "nginx/1.22.1".into(),
                wrk_version: "wrk debian/4.1.0-3+b2 [epoll]".into(),
                placement: Placement::for_cpus(2),
            },
            series: vec![
                none,
                agent,
                // Medians 59000, 58800, 59700: losses of 1.7%, 2.0% and 0.5%.
                family(Family::Syscalls, &[59_000.0]),
                family(Family::Tcp, &[58_800.0]),
                family(Family::Capture, &[59_700.0]),
                bpftrace,
            ],
        }
    }

    #[test]
    fn loss_is_the_share_of_median_requests_per_second() {
        let report = report();
        // Medians: none 60000, agent 57900, bpftrace 54000.
        assert!((report.loss(Condition::Agent).unwrap() - 0.035).abs() < 1e-12);
        assert!((report.loss(Condition::Bpftrace).unwrap() - 0.1).abs() < 1e-12);
        assert!(report.targets().contains(
            "| nginx requests/s lost to the agent | **3.5%** | ≤ 5.0% | ≤ 3.0% | \
             target met, goal missed |"
        ));
        let table = report.table();
        assert!(table.contains("| none | 60000 | baseline | 200 µs | 400 µs |"));
        assert!(table.contains("| agent | 57900 | **3.5%** | 215 µs | 425 µs |"));
        assert!(table.contains("| bpftrace | 54000 | 10.0% | 230 µs | 500 µs |"));
    }

    #[test]
    fn a_loss_within_the_goal_is_met() {
        let mut report = report();
        report.series[1].runs = vec![run(59_000.0, 200.0, 400.0)];
        assert!(
            report
                .targets()
                .contains("| **1.7%** | ≤ 5.0% | ≤ 3.0% | goal met |")
        );
        report.series[1].runs = vec![run(54_000.0, 200.0, 400.0)];
        assert!(
            report
                .targets()
                .contains("| **10.0%** | ≤ 5.0% | ≤ 3.0% | target missed |")
        );
    }

    #[test]
    fn unavailable_bpftrace_is_shown_not_fatal() {
        let mut report = report();
        report.series[5].runs.clear();
        report.series[5].unavailable = Some("no | tracefs".into());
        let markdown = report.markdown();
        assert!(markdown.contains("| bpftrace | n/a | n/a | n/a | n/a |"));
        assert!(markdown.contains("| bpftrace | n/a: no \\| tracefs | | | |"));
        assert!(markdown.contains("**3.5%**"));
    }

    #[test]
    fn markdown_names_the_command_the_load_every_run_and_the_counts() {
        let markdown = report().markdown();
        assert!(markdown.starts_with("## HTTP overhead (nginx and wrk)\n\n- Date: "));
        assert!(
            markdown
                .contains("- Command: `cargo xtask bench --only http --runs 3 --http-seconds 10`")
        );
        assert!(markdown.contains(
            "```\ntaskset -c 1 wrk -t1 -c16 -d10s --latency http://127.0.0.1:<port>/ok\n```"
        ));
        assert!(markdown.contains("pinned to CPU 0 and wrk to CPU 1"));
        assert!(markdown.contains("- nginx: nginx/1.22.1; wrk: wrk debian/4.1.0-3+b2 [epoll]\n"));
        assert!(
            markdown.contains("| none | 60000, 62000, 50000 | 200, 190, 250 | 400, 390, 900 | – |")
        );
        assert!(markdown.contains("| agent | 58800, 57000 | 210, 220 | 420, 430 | 0.68, 0.53 |"));
        assert!(markdown.contains("| agent | 1 | 588000 | 588005 | 588003 | 0 |"));
        assert!(markdown.contains("| agent | 2 | 570000 | n/a | n/a | n/a |"));
        assert!(markdown.contains("| agent:capture | 1 | 597000 | n/a | n/a | n/a |"));
        assert!(markdown.contains("  tracepoint:tcp:tcp_destroy_sock {\n"));
    }

    #[test]
    fn the_main_table_has_a_row_per_family() {
        let table = report().table();
        assert!(table.contains("| agent:syscalls | 59000 | 1.7% | 200 µs | 400 µs |"));
        assert!(table.contains("| agent:tcp | 58800 | 2.0% | 200 µs | 400 µs |"));
        assert!(table.contains("| agent:capture | 59700 | 0.5% | 200 µs | 400 µs |"));
    }

    #[test]
    fn breakdown_table_shows_each_family_its_probes_loss_and_cpu() {
        let table = report().breakdown_table();
        assert!(table.starts_with(
            "| condition | probes attached besides process lifecycle | requests/s | \
             loss vs none | agent CPU per 10k req/s |\n|---|---|---:|---:|---:|\n"
        ));
        // The agent's CPU: median of 0.68% and 0.53% per 10k requests/s.
        let agent_cpu = (0.04 / 5.88 + 0.03 / 5.7) / 2.0;
        assert!((report().agent_cpu().unwrap() - agent_cpu).abs() < 1e-12);
        assert!(table.contains("| agent | all (9 probes) | 57900 | **3.5%** | 0.60% |\n"));
        assert!(table.contains(
            "| agent:syscalls | `mon_sys_enter`, `mon_sys_exit` | 59000 | 1.7% | 0.17% |\n"
        ));
        assert!(table.contains(
            "| agent:tcp | `mon_tcp_destroy`, `mon_tcp_state` | 58800 | 2.0% | 0.17% |\n"
        ));
        assert!(table.contains(
            "| agent:capture | `mon_sock_send`, `mon_sock_recv` | 59700 | 0.5% | 0.17% |\n"
        ));
        assert!(
            table.contains("families on their own lose 4.2% together; the whole agent loses 3.5%")
        );
        assert!(table.ends_with(
            "Targets for the whole agent: nginx requests/s lost to the agent ≤ 5.0% (goal ≤ \
             3.0%); agent CPU per 10k requests/s (share of one core) ≤ 1.00%.\n"
        ));
        // A family that was not measured reads n/a, and there is no sum.
        let mut report = report();
        report.series[4].runs.clear();
        let table = report.breakdown_table();
        assert!(
            table
                .contains("| agent:capture | `mon_sock_send`, `mon_sock_recv` | n/a | n/a | n/a |")
        );
        assert!(!table.contains("together"));
    }

    #[test]
    fn targets_stand_next_to_the_figures() {
        let report = report();
        let targets = report.targets();
        // 350 ns per request: (200,000 + 150,000) ns over 1000 requests.
        assert!(targets.contains(
            "| kernel time of all the agent's programs per request | **350 ns** | ≤ 500 ns | \
             ≤ 250 ns | target met, goal missed |"
        ));
        assert!(targets.contains(
            "| agent CPU per 10k requests/s (share of one core) | **0.60%** | ≤ 1.00% | – | \
             target met |"
        ));
        let markdown = report.markdown();
        assert!(markdown.contains("### Targets\n\n| measure | this run | target | goal | |\n"));
        assert!(markdown.contains("alive for 1000 requests each, so the TCP connection probes"));
        assert!(markdown.contains("| `mon_sys_enter` | 4000 | 4.00 | 50 | 200.0 |\n"));
        assert!(markdown.contains("| all programs | 5000 | 5.00 | | **350.0** |\n"));
        assert!(markdown.contains(
            "- `agent:syscalls`: the agent with its syscall hooks only, besides process \
             lifecycle (`mon_proc_exec`, `mon_proc_exit`, `mon_sys_enter`, `mon_sys_exit`): \
             `--probes.disable mon_tcp_destroy,mon_tcp_state,mon_sock_send,mon_sock_recv,\
             mon_sched_switch`.\n"
        ));
        let mut report = report;
        report.kernel = Err("bpftool | missing".into());
        report.series[1].cpu = vec![None, None];
        let targets = report.targets();
        assert!(
            targets.contains("| n/a | ≤ 500 ns | ≤ 250 ns | not measured: bpftool \\| missing |")
        );
        assert!(
            targets.contains(
                "| n/a | ≤ 1.00% | – | not measured: the agent's CPU time was not read |"
            )
        );
        assert!(
            report
                .markdown()
                .contains("Not measured in this run: bpftool \\| missing.\n")
        );
    }
}
