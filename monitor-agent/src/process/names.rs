//! Who a (TGID, generation) is: its `comm`, from exec/exit events, else from `/proc`.
use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use monitor_common::Owner;

use crate::{
    identity::resolver::{Facts, Identity},
    probes::decode::{ProcessEventKind, ProcessRecord},
};

/// Shown when an incarnation ended before anything named it (its events were lost).
pub const UNKNOWN_COMM: &str = "[unknown]";

/// A process may call itself anything, the agent's own placeholder names included; such a
/// name gets a leading `_`, so that `[unknown]` and `[overflow]` (the budget's overflow
/// series) always mean the agent's.
fn unreserved(comm: &str) -> String {
    if comm == UNKNOWN_COMM || comm == crate::series::table::OVERFLOW_COMM {
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
}

#[derive(Debug, Default)]
pub struct ProcessNames {
    known: HashMap<Owner, Known>,
}

impl ProcessNames {
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
                self.known.insert(
                    incarnation,
                    Known {
                        comm: unreserved(&event.comm),
                        finished: None,
                        facts: None,
                        identity: None,
                    },
                );
            }
            ProcessEventKind::Seen => {
                self.known.entry(incarnation).or_insert_with(|| Known {
                    comm: unreserved(&event.comm),
                    finished: None,
                    facts: None,
                    identity: None,
                });
            }
            ProcessEventKind::Exit => {
                // Keep the name it was first seen under: its series are already exported so.
                let known = self.known.entry(incarnation).or_insert_with(|| Known {
                    comm: unreserved(&event.comm),
                    finished: None,
                    facts: None,
                    identity: None,
                });
                known.finished.get_or_insert(now);
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
        let comm = read_comm(incarnation.tgid)
            .map(|comm| unreserved(&comm))
            .unwrap_or_else(|| UNKNOWN_COMM.to_owned());
        let finished = (!current).then_some(now);
        self.known.insert(
            incarnation,
            Known {
                comm: comm.clone(),
                finished,
                facts: None,
                identity: None,
            },
        );
        comm
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

    /// The incarnations named and not known to have ended (an exit event or a later
    /// generation ends them).
    /// Whether `owner` is known and has not finished.
    pub fn is_running(&self, owner: Owner) -> bool {
        self.known
            .get(&owner)
            .is_some_and(|known| known.finished.is_none())
    }

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

/// `/proc/<tgid>/comm` without its newline; `None` once the process is reaped.
pub fn read_proc_comm(tgid: u32) -> Option<String> {
    let bytes = std::fs::read(format!("/proc/{tgid}/comm")).ok()?;
    let bytes = bytes.strip_suffix(b"\n").unwrap_or(&bytes);
    Some(crate::probes::decode::comm(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(kind: ProcessEventKind, generation: u32, comm: &str) -> ProcessRecord {
        ProcessRecord {
            kind,
            owner: at(generation),
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
}
