//! Who a (TGID, generation) is: its `comm`, from exec/exit events, else from `/proc`.
use std::time::{Duration, Instant};

use foldhash::{HashMap, HashMapExt};

use monitor_common::Owner;

use super::folding::{Fold, FoldRule, Folding, Life, SHORT_LIVED_COMM};
use crate::{
    identity::resolver::{Facts, Identity},
    probes::decode::{ProcessEventKind, ProcessRecord},
};

/// Shown when an incarnation ended before anything named it (its events were lost).
pub const UNKNOWN_COMM: &str = "[unknown]";

/// A process may call itself anything, the agent's own placeholder names included; such a
/// name gets a leading `_`, so that `[unknown]`, `[overflow]` (the budget's overflow series)
/// and `[short-lived]` always mean the agent's.
fn unreserved(comm: &str) -> String {
    if comm == UNKNOWN_COMM
        || comm == crate::series::table::OVERFLOW_COMM
        || comm == SHORT_LIVED_COMM
    {
        format!("_{comm}")
    } else {
        comm.to_owned()
    }
}

#[derive(Debug)]
struct Known {
    comm: String,
    finished: Option<Instant>,
    /// What `/proc` said about it while it ran (cgroup, executable), for its identity.
    facts: Option<Facts>,
    /// Its identity labels once final (see `Resolver::identity`), and whether the selection
    /// rules keep it.
    identity: Option<(Identity, bool)>,
    /// Exec'd with a known parent: what folding needs (`folding`).
    life: Option<Life>,
    /// Whether it is folded into `[short-lived]`, once decided.
    folded: Option<bool>,
}

impl Known {
    fn new(comm: &str) -> Self {
        Known {
            comm: unreserved(comm),
            finished: None,
            facts: None,
            identity: None,
            life: None,
            folded: None,
        }
    }
}

#[derive(Debug, Default)]
pub struct ProcessNames {
    known: HashMap<Owner, Known>,
    folding: Folding,
}

impl ProcessNames {
    pub fn new(fold: FoldRule) -> Self {
        Self {
            known: HashMap::new(),
            folding: Folding::new(fold),
        }
    }

    pub fn apply(&mut self, event: &ProcessRecord, now: Instant) {
        let incarnation = event.owner;
        match event.kind {
            ProcessEventKind::Exec => {
                let previous = Owner {
                    tgid: incarnation.tgid,
                    generation: incarnation.generation.wrapping_sub(1),
                };
                if let Some(previous) = self.known.get_mut(&previous) {
                    previous.finished.get_or_insert(now);
                }
                let mut known = Known::new(&event.comm);
                if let Some(parent_tgid) = event.parent_tgid {
                    // Places are taken in exec order, so a parent's first programs keep theirs.
                    if self.folding.place(&known.comm, parent_tgid, now) {
                        known.folded = Some(false);
                    } else {
                        known.life = Some(Life {
                            parent_tgid,
                            exec_ns: event.timestamp_ns,
                            exit_ns: None,
                        });
                    }
                }
                self.known.insert(incarnation, known);
            }
            ProcessEventKind::Seen => {
                self.known
                    .entry(incarnation)
                    .or_insert_with(|| Known::new(&event.comm));
            }
            ProcessEventKind::Exit => {
                // Keep the name it was first seen under: its series are already exported so.
                let known = self
                    .known
                    .entry(incarnation)
                    .or_insert_with(|| Known::new(&event.comm));
                known.finished.get_or_insert(now);
                if let Some(life) = known.life.as_mut() {
                    life.exit_ns = Some(event.timestamp_ns);
                }
            }
        }
    }

    /// The comm of `incarnation`; `read_comm` asks `/proc` for a TGID, which speaks for the
    /// incarnation only while it is the `current` one.
    pub fn resolve(
        &mut self,
        incarnation: Owner,
        current: bool,
        now: Instant,
        read_comm: impl FnOnce(u32) -> Option<String>,
    ) -> String {
        if let Some(known) = self.known.get(&incarnation) {
            return known.comm.clone();
        }
        let mut known = match read_comm(incarnation.tgid) {
            Some(comm) => Known::new(&comm),
            None => Known {
                comm: UNKNOWN_COMM.to_owned(),
                ..Known::new("")
            },
        };
        known.finished = (!current).then_some(now);
        let comm = known.comm.clone();
        self.known.insert(incarnation, known);
        comm
    }

    /// Decides that a known incarnation keeps its own name (never folded).
    pub fn keep_name(&mut self, incarnation: Owner) {
        if let Some(known) = self.known.get_mut(&incarnation) {
            known.folded.get_or_insert(false);
        }
    }

    /// Whether a known incarnation's series are its own or `[short-lived]`'s (see
    /// `folding`); decided once. Incarnations not exec'd under the agent's eyes keep theirs.
    pub fn fold(&mut self, incarnation: Owner, current: bool) -> Fold {
        let Some(known) = self.known.get_mut(&incarnation) else {
            return Fold::Own;
        };
        match (known.folded, known.life) {
            (Some(true), _) => Fold::Folded,
            (Some(false), _) | (None, None) => Fold::Own,
            (None, Some(life)) => {
                let finished = !current || known.finished.is_some();
                let fold = self
                    .folding
                    .decide(life, finished, super::folding::monotonic_ns());
                if fold != Fold::Later {
                    known.folded = Some(fold == Fold::Folded);
                }
                fold
            }
        }
    }

    /// Marks an incarnation finished (its generation is over) when no exit event said so,
    /// e.g. because the ring buffer dropped it: its name is then pruned like any other.
    pub fn finish(&mut self, incarnation: Owner, now: Instant) {
        if let Some(known) = self.known.get_mut(&incarnation) {
            known.finished.get_or_insert(now);
        }
    }

    /// Forgets incarnations finished longer than `keep` ago (their entries are retired by then;
    /// the series keep their labels on their own).
    pub fn prune(&mut self, now: Instant, keep: Duration) {
        self.known.retain(|_, known| {
            known
                .finished
                .is_none_or(|at| now.duration_since(at) < keep)
        });
    }

    /// Forgets the parents of folded processes with no new child for `keep` (the series
    /// TTL): their places are free again.
    pub fn prune_parents(&mut self, now: Instant, keep: Duration) {
        self.folding.prune(now, keep);
    }

    /// The facts recorded for a known incarnation.
    pub fn facts(&self, incarnation: Owner) -> Option<&Facts> {
        self.known.get(&incarnation)?.facts.as_ref()
    }

    /// Records what `/proc` says about a known incarnation, once.
    pub fn learn_facts(&mut self, incarnation: Owner, read: impl FnOnce() -> Facts) {
        if let Some(known) = self.known.get_mut(&incarnation) {
            if known.facts.is_none() {
                known.facts = Some(read());
            }
        }
    }

    /// The final identity of a known incarnation and whether it is selected, if settled.
    pub fn identity(&self, incarnation: Owner) -> Option<&(Identity, bool)> {
        self.known.get(&incarnation)?.identity.as_ref()
    }

    pub fn settle_identity(&mut self, incarnation: Owner, identity: Identity, admitted: bool) {
        if let Some(known) = self.known.get_mut(&incarnation) {
            known.identity = Some((identity, admitted));
        }
    }

    pub fn is_known(&self, incarnation: Owner) -> bool {
        self.known.contains_key(&incarnation)
    }

    /// Whether `owner` is known and has not finished.
    pub fn is_running(&self, owner: Owner) -> bool {
        self.known
            .get(&owner)
            .is_some_and(|known| known.finished.is_none())
    }

    /// The incarnations named and not known to have ended (an exit event or a later
    /// generation ends them).
    pub fn running(&self) -> Vec<Owner> {
        self.known
            .iter()
            .filter(|(_, known)| known.finished.is_none())
            .map(|(owner, _)| *owner)
            .collect()
    }

    pub fn len(&self) -> usize {
        self.known.len()
    }

    pub fn is_empty(&self) -> bool {
        self.known.is_empty()
    }
}

/// `/proc/<tgid>/comm` without its newline; `None` once the process is reaped. A kernel
/// thread's instance numbers are masked (`kernel_thread_name`).
pub fn read_proc_comm(tgid: u32) -> Option<String> {
    let bytes = std::fs::read(format!("/proc/{tgid}/comm")).ok()?;
    let bytes = bytes.strip_suffix(b"\n").unwrap_or(&bytes);
    let comm = crate::probes::decode::comm(bytes);
    if comm.bytes().any(|byte| byte.is_ascii_digit()) && is_kernel_thread(tgid) {
        return Some(kernel_thread_name(&comm));
    }
    Some(comm)
}

/// A kernel thread's name with each run of digits as `*`: `ksoftirqd/0` → `ksoftirqd/*`,
/// `kworker/u8:3-events_unbound` → `kworker/u*:*-events_unbound`. A node has such threads
/// per CPU and per worker, numbered anew as workers come and go: one set of series (a run
/// queue histogram each) per number would grow with the CPUs and never stop churning.
fn kernel_thread_name(comm: &str) -> String {
    let mut name = String::with_capacity(comm.len());
    for c in comm.chars() {
        if !c.is_ascii_digit() {
            name.push(c);
        } else if !name.ends_with('*') {
            name.push('*');
        }
    }
    name
}

/// Whether `/proc/<tgid>/stat` has PF_KTHREAD in its flags (field 9).
fn is_kernel_thread(tgid: u32) -> bool {
    const PF_KTHREAD: u64 = 0x0020_0000;
    std::fs::read_to_string(format!("/proc/{tgid}/stat"))
        .ok()
        .and_then(|stat| crate::proc_stat::field(&stat, 9))
        .is_some_and(|flags| flags & PF_KTHREAD != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(kind: ProcessEventKind, generation: u32, comm: &str) -> ProcessRecord {
        ProcessRecord {
            kind,
            owner: at(generation),
            parent_tgid: None,
            timestamp_ns: 0,
            comm: comm.into(),
        }
    }

    fn at(generation: u32) -> Owner {
        Owner {
            tgid: 10,
            generation,
        }
    }

    #[test]
    fn exec_names_the_new_generation_and_finishes_the_old() {
        let now = Instant::now();
        let mut names = ProcessNames::default();
        let proc_says = |_| Some("bash".to_owned());
        assert_eq!(names.resolve(at(0), true, now, proc_says), "bash");
        names.apply(&event(ProcessEventKind::Exec, 1, "curl"), now);
        assert_eq!(
            names.resolve(at(1), true, now, |_| panic!("no /proc read")),
            "curl"
        );
        assert_eq!(
            names.resolve(at(0), false, now, |_| panic!("no /proc read")),
            "bash"
        );
        names.prune(now + Duration::from_secs(10), Duration::from_secs(5));
        assert_eq!(names.len(), 1, "finished generation 0 pruned, live 1 kept");
    }

    #[test]
    fn a_lost_exit_event_does_not_keep_the_name_forever() {
        let now = Instant::now();
        let mut names = ProcessNames::default();
        names.apply(&event(ProcessEventKind::Seen, 2, "daemon"), now);
        names.prune(now + Duration::from_secs(3600), Duration::from_secs(5));
        assert_eq!(names.len(), 1, "live: kept");
        names.finish(at(2), now);
        names.prune(now + Duration::from_secs(10), Duration::from_secs(5));
        assert!(names.is_empty());
    }

    #[test]
    fn exit_keeps_the_first_name() {
        let now = Instant::now();
        let mut names = ProcessNames::default();
        names.apply(&event(ProcessEventKind::Exec, 3, "worker"), now);
        names.apply(&event(ProcessEventKind::Exit, 3, "renamed"), now);
        assert_eq!(names.resolve(at(3), false, now, |_| None), "worker");
    }

    #[test]
    fn exit_names_an_unseen_process_and_unknown_is_explicit() {
        let now = Instant::now();
        let mut names = ProcessNames::default();
        names.apply(&event(ProcessEventKind::Exit, 5, "short"), now);
        assert_eq!(names.resolve(at(5), false, now, |_| None), "short");
        assert_eq!(names.resolve(at(6), false, now, |_| None), UNKNOWN_COMM);
    }

    #[test]
    fn a_process_named_like_the_agents_placeholders_is_told_apart() {
        let now = Instant::now();
        let mut names = ProcessNames::default();
        names.apply(&event(ProcessEventKind::Exec, 3, "[overflow]"), now);
        assert_eq!(names.resolve(at(3), true, now, |_| None), "_[overflow]");
        let read = |_| Some("[unknown]".to_owned());
        assert_eq!(names.resolve(at(4), true, now, read), "_[unknown]");
        let read = |_| Some("[kworker]".to_owned());
        assert_eq!(names.resolve(at(5), true, now, read), "[kworker]");
    }

    #[test]
    fn kernel_threads_lose_their_instance_numbers_and_only_they() {
        assert_eq!(kernel_thread_name("ksoftirqd/0"), "ksoftirqd/*");
        assert_eq!(
            kernel_thread_name("kworker/u8:13-events_unbound"),
            "kworker/u*:*-events_unbound"
        );
        assert_eq!(kernel_thread_name("rcu_preempt"), "rcu_preempt");
        // kthreadd (PID 2) is a kernel thread; this test process is not.
        assert!(is_kernel_thread(2));
        assert!(!is_kernel_thread(std::process::id()));
    }
}
