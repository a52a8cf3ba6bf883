//! The agent's probes grouped into the families whose cost the HTTP suite breaks down:
//! syscall hooks, TCP connection probes and request capture (socket I/O). The probe names
//! are the agent's own (`--probes.disable`'s possible values, i.e. its probe table), read
//! from `monitor-agent --help`; which family a name belongs to is said once, here, by prefix.
use anyhow::{Context as _, Result, bail};

/// A family of probes measured on its own (with process lifecycle kept on).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    /// `sys_enter`/`sys_exit`: per-process syscall counts and latencies.
    Syscalls,
    /// TCP connection lifecycle: state changes, destruction, retransmits, resets.
    Tcp,
    /// Socket reads and writes: byte counts and the payload copies HTTP parsing runs from.
    Capture,
}

impl Family {
    /// Also the order of the family conditions within each round.
    pub const ALL: [Family; 3] = [Family::Syscalls, Family::Tcp, Family::Capture];

    /// The condition's name in the report.
    pub fn condition_name(self) -> &'static str {
        match self {
            Family::Syscalls => "agent:syscalls",
            Family::Tcp => "agent:tcp",
            Family::Capture => "agent:capture",
        }
    }

    pub fn title(self) -> &'static str {
        match self {
            Family::Syscalls => "syscall hooks",
            Family::Tcp => "TCP connection probes",
            Family::Capture => "request capture (socket I/O)",
        }
    }
}

/// Where a probe belongs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    /// Process exec/exit: kept in every condition, since the other probes key their data
    /// by the process generations these maintain and the agent names processes from them.
    Lifecycle,
    Family(Family),
    /// Anything else (scheduler, OOM): attached only by the full agent.
    Other,
}

/// The one statement of which probe names make up which class (the first matching prefix
/// wins). A probe the agent gains later that matches none is `Other`: off in every family
/// condition, so each of those still keeps exactly one family.
const PREFIXES: [(Class, &[&str]); 4] = [
    (Class::Lifecycle, &["mon_proc_"]),
    (Class::Family(Family::Syscalls), &["mon_sys_"]),
    (Class::Family(Family::Tcp), &["mon_tcp_", "mon_inet_"]),
    (Class::Family(Family::Capture), &["mon_sock_"]),
];

pub fn class(probe: &str) -> Class {
    PREFIXES
        .iter()
        .find(|(_, prefixes)| prefixes.iter().any(|prefix| probe.starts_with(prefix)))
        .map_or(Class::Other, |(class, _)| *class)
}

/// The agent's probes, in its attach order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbePlan {
    probes: Vec<String>,
}

impl ProbePlan {
    /// From the probe names; every family must have at least one probe, or its condition
    /// would measure the lifecycle probes alone under the family's name.
    pub fn new(probes: Vec<String>) -> Result<Self> {
        if probes.is_empty() {
            bail!("the agent names no probes");
        }
        for family in Family::ALL {
            if !probes.iter().any(|p| class(p) == Class::Family(family)) {
                bail!(
                    "none of the agent's probes ({}) is of the {} family; \
                     xtask/src/bench/families.rs says which names are",
                    probes.join(", "),
                    family.title()
                );
            }
        }
        Ok(Self { probes })
    }

    /// From `monitor-agent --help`: the possible values of `--probes.disable`.
    pub fn from_help(help: &str) -> Result<Self> {
        Self::new(disable_values(help)?)
    }

    pub fn all(&self) -> &[String] {
        &self.probes
    }

    /// What the condition of `family` attaches: process lifecycle and the family.
    pub fn kept(&self, family: Family) -> Vec<&str> {
        self.select(|class| class == Class::Lifecycle || class == Class::Family(family))
    }

    /// What the condition of `family` passes to `--probes.disable`: everything else.
    pub fn disabled(&self, family: Family) -> Vec<&str> {
        self.select(|class| class != Class::Lifecycle && class != Class::Family(family))
    }

    /// The probes of one family only (without lifecycle).
    pub fn members(&self, family: Family) -> Vec<&str> {
        self.select(|class| class == Class::Family(family))
    }

    /// `--probes.disable a,b,c` for the condition of `family`.
    pub fn agent_args(&self, family: Family) -> [String; 2] {
        [
            "--probes.disable".to_owned(),
            self.disabled(family).join(","),
        ]
    }

    fn select(&self, wanted: impl Fn(Class) -> bool) -> Vec<&str> {
        self.probes
            .iter()
            .map(String::as_str)
            .filter(|p| wanted(class(p)))
            .collect()
    }
}

/// The `[possible values: …]` list of `--probes.disable` in clap's help, wrapped or not:
/// looked for between the flag's line and the next option's.
fn disable_values(help: &str) -> Result<Vec<String>> {
    const FLAG: &str = "--probes.disable";
    const LIST: &str = "[possible values:";
    let mut lines = help
        .lines()
        .skip_while(|line| !line.trim_start().starts_with(FLAG));
    lines
        .next()
        .with_context(|| format!("the agent's --help has no {FLAG}"))?;
    let block: Vec<&str> = lines
        .take_while(|line| !line.trim_start().starts_with('-'))
        .collect();
    let block = block.join("\n");
    let start = block
        .find(LIST)
        .with_context(|| format!("the agent's --help lists no possible values for {FLAG}"))?
        + LIST.len();
    let length = block[start..]
        .find(']')
        .context("unterminated possible values list")?;
    let names: Vec<String> = block[start..start + length]
        .split(|c: char| c == ',' || c.is_whitespace())
        .filter(|name| !name.is_empty())
        .map(str::to_owned)
        .collect();
    if let Some(bad) = names
        .iter()
        .find(|name| !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
    {
        bail!("{bad:?} in {FLAG}'s possible values is not a probe name");
    }
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `monitor-agent --help` around the flag, as clap prints it (list wrapped here to show
    /// that wrapping is fine).
    const HELP: &str = "      --tcp.peers-per-comm <N>
          Distinct `peer` label values per process name [default: 64]

      --probes.disable <PROBE>
          Probes not to attach, comma-separated. Their metrics stay empty

          [possible values: mon_proc_exec, mon_proc_exit, mon_sys_enter, mon_sys_exit,
          mon_tcp_destroy, mon_tcp_state, mon_tcp_retransmit, mon_tcp_send_reset,
          mon_tcp_recv_reset, mon_sock_send, mon_sock_recv, mon_sched_wakeup,
          mon_sched_wakeup_new, mon_sched_switch, mon_oom_victim]

      --probes.socket-io <HOOK>
          Where socket bytes and request payloads are read

          [default: auto]
          [possible values: auto, tracepoints, syscalls]
";

    #[test]
    fn reads_the_probe_names_from_the_help() {
        let plan = ProbePlan::from_help(HELP).unwrap();
        assert_eq!(plan.all().len(), 15);
        assert_eq!(plan.all()[0], "mon_proc_exec");
        assert_eq!(plan.all()[14], "mon_oom_victim");
        let one_line = "  --probes.disable <PROBE>\n  [possible values: mon_proc_exec, \
                        mon_sys_enter, mon_tcp_state, mon_sock_send]\n";
        assert_eq!(ProbePlan::from_help(one_line).unwrap().all().len(), 4);
    }

    #[test]
    fn a_help_without_the_list_is_an_error() {
        assert!(ProbePlan::from_help("  --log.level <LEVEL>\n").is_err());
        // The next flag's list is not this flag's.
        let elsewhere = "      --probes.disable <PROBE>\n          Probes not to attach\n\n      \
                         --probes.socket-io <HOOK>\n          [possible values: auto, syscalls]\n";
        assert!(ProbePlan::from_help(elsewhere).is_err());
        let garbage = "--probes.disable\n[possible values: mon_sys_enter, <x>]";
        assert!(ProbePlan::from_help(garbage).is_err());
    }

    #[test]
    fn each_family_condition_keeps_lifecycle_and_exactly_its_family() {
        let plan = ProbePlan::from_help(HELP).unwrap();
        assert_eq!(
            plan.kept(Family::Syscalls),
            [
                "mon_proc_exec",
                "mon_proc_exit",
                "mon_sys_enter",
                "mon_sys_exit"
            ]
        );
        assert_eq!(
            plan.members(Family::Tcp),
            [
                "mon_tcp_destroy",
                "mon_tcp_state",
                "mon_tcp_retransmit",
                "mon_tcp_send_reset",
                "mon_tcp_recv_reset"
            ]
        );
        assert_eq!(
            plan.kept(Family::Capture),
            [
                "mon_proc_exec",
                "mon_proc_exit",
                "mon_sock_send",
                "mon_sock_recv"
            ]
        );
        for family in Family::ALL {
            let kept = plan.kept(family);
            let disabled = plan.disabled(family);
            // Together they are every probe, once.
            assert_eq!(kept.len() + disabled.len(), plan.all().len());
            assert!(kept.iter().all(|p| !disabled.contains(p)));
            // The scheduler and OOM probes are off in every family condition.
            assert!(disabled.contains(&"mon_sched_switch"));
            assert!(disabled.contains(&"mon_oom_victim"));
            assert!(!disabled.contains(&"mon_proc_exec"));
            for other in Family::ALL.into_iter().filter(|&f| f != family) {
                assert!(plan.members(other).iter().all(|p| disabled.contains(p)));
            }
        }
        assert_eq!(
            plan.agent_args(Family::Syscalls),
            [
                "--probes.disable".to_owned(),
                "mon_tcp_destroy,mon_tcp_state,mon_tcp_retransmit,mon_tcp_send_reset,\
                 mon_tcp_recv_reset,mon_sock_send,mon_sock_recv,mon_sched_wakeup,\
                 mon_sched_wakeup_new,mon_sched_switch,mon_oom_victim"
                    .to_owned()
            ]
        );
    }

    #[test]
    fn classes_by_prefix() {
        assert_eq!(class("mon_proc_exit"), Class::Lifecycle);
        assert_eq!(class("mon_sys_exit"), Class::Family(Family::Syscalls));
        assert_eq!(class("mon_inet_sock_set_state"), Class::Family(Family::Tcp));
        assert_eq!(class("mon_sock_io_exit"), Class::Family(Family::Capture));
        assert_eq!(class("mon_sched_switch"), Class::Other);
        assert_eq!(class("mon_oom_victim"), Class::Other);
    }

    #[test]
    fn a_family_without_probes_is_an_error() {
        let names = ["mon_proc_exec", "mon_sys_enter", "mon_sock_send"];
        let err = ProbePlan::new(names.map(str::to_owned).to_vec()).unwrap_err();
        assert!(err.to_string().contains("TCP connection probes"), "{err}");
        assert!(ProbePlan::new(Vec::new()).is_err());
    }
}
