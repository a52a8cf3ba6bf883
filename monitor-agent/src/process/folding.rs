//! Short-lived processes of a churning parent share one name. A shell loop, a CI runner or a
//! job scheduler that runs many differently named programs would otherwise leave a set of
//! series per name (a few hundred Prometheus series each) for the whole series TTL. A parent's
//! first `names_per_parent` distinct program names keep their own `comm`; a later new name
//! that ends within `short_lived` of its exec is counted as `comm="[short-lived]"` (its
//! container, pod, namespace and service labels unchanged). A program that lives longer
//! keeps its name whatever its parent did, so services are never folded; deciding that takes
//! until it has lived `short_lived`, and its series appear then.
use std::time::{Duration, Instant};

use foldhash::{HashMap, HashMapExt, HashSet, HashSetExt};

/// `comm` of the series short-lived processes are folded into.
pub const SHORT_LIVED_COMM: &str = "[short-lived]";

/// Parents remembered at most; beyond it the least recently active are forgotten first.
const PARENTS_MAX: usize = 10_000;

/// `--processes.names-per-parent` and `--processes.short-lived`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FoldRule {
    /// Distinct program names per parent that always keep their own series; 0: never fold.
    pub names_per_parent: usize,
    pub short_lived: Duration,
}

impl Default for FoldRule {
    fn default() -> Self {
        Self {
            names_per_parent: 0,
            short_lived: Duration::from_secs(5),
        }
    }
}

/// How an exec'd incarnation is named.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fold {
    Own,
    Folded,
    /// Not decidable yet: a new name beyond its parent's places that has not lived long
    /// enough to keep it. Its kernel entries and events wait.
    Later,
}

/// What the exec event said about an incarnation (kernel monotonic clock, as the events).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Life {
    pub parent_tgid: u32,
    pub exec_ns: u64,
    pub exit_ns: Option<u64>,
}

#[derive(Debug)]
struct Parent {
    names: HashSet<String>,
    last: Instant,
}

#[derive(Debug, Default)]
pub struct Folding {
    rule: FoldRule,
    parents: HashMap<u32, Parent>,
}

impl Folding {
    pub fn new(rule: FoldRule) -> Self {
        Self {
            rule,
            parents: HashMap::new(),
        }
    }

    /// At exec, in exec order: whether `comm` has (or now takes) one of its parent's
    /// places, so it keeps its own series whatever its lifetime. `false`: a candidate for
    /// folding, decided by `decide` once its lifetime is known.
    pub fn place(&mut self, comm: &str, parent_tgid: u32, now: Instant) -> bool {
        if self.rule.names_per_parent == 0 {
            return true;
        }
        if !self.parents.contains_key(&parent_tgid) && self.parents.len() >= PARENTS_MAX {
            self.forget_oldest();
        }
        let parent = self.parents.entry(parent_tgid).or_insert_with(|| Parent {
            names: HashSet::new(),
            last: now,
        });
        parent.last = now;
        if parent.names.contains(comm) {
            return true;
        }
        if parent.names.len() < self.rule.names_per_parent {
            parent.names.insert(comm.to_owned());
            return true;
        }
        false
    }

    /// A candidate's decision, by its lifetime; `now_ns` on the events' clock. `finished`:
    /// the incarnation is over, even if its exit event has not come (then it ended by now).
    pub fn decide(&self, life: Life, finished: bool, now_ns: u64) -> Fold {
        let end = match (life.exit_ns, finished) {
            (Some(exit_ns), _) => exit_ns,
            (None, true) => now_ns,
            (None, false) if now_ns.saturating_sub(life.exec_ns) >= self.short_lived_ns() => {
                return Fold::Own;
            }
            (None, false) => return Fold::Later,
        };
        if end.saturating_sub(life.exec_ns) < self.short_lived_ns() {
            Fold::Folded
        } else {
            Fold::Own
        }
    }

    fn short_lived_ns(&self) -> u64 {
        u64::try_from(self.rule.short_lived.as_nanos()).unwrap_or(u64::MAX)
    }

    /// Forgets parents with no new child for `keep` (their places are free again).
    pub fn prune(&mut self, now: Instant, keep: Duration) {
        self.parents
            .retain(|_, parent| now.duration_since(parent.last) < keep);
    }

    fn forget_oldest(&mut self) {
        if let Some(oldest) = self
            .parents
            .iter()
            .min_by_key(|(_, parent)| parent.last)
            .map(|(tgid, _)| *tgid)
        {
            self.parents.remove(&oldest);
        }
    }
}

/// The kernel's monotonic clock, which event timestamps (`bpf_ktime_get_ns`) use.
pub fn monotonic_ns() -> u64 {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
        .map(|now| u64::try_from(Duration::from(now).as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: u64 = 1_000_000_000;

    fn rule(names_per_parent: usize) -> Folding {
        Folding::new(FoldRule {
            names_per_parent,
            short_lived: Duration::from_secs(5),
        })
    }

    fn life(parent_tgid: u32, exec_s: u64, exit_s: Option<u64>) -> Life {
        Life {
            parent_tgid,
            exec_ns: exec_s * SECOND,
            exit_ns: exit_s.map(|s| s * SECOND),
        }
    }

    #[test]
    fn a_parents_first_names_keep_theirs_later_ones_are_candidates() {
        let now = Instant::now();
        let mut folding = rule(2);
        assert!(folding.place("a", 1, now));
        assert!(folding.place("b", 1, now));
        assert!(!folding.place("c", 1, now));
        assert!(folding.place("a", 1, now), "a known name");
        assert!(
            folding.place("c", 2, now),
            "another parent has its own places"
        );
        assert!(rule(0).place("x", 1, now), "0: never fold");
    }

    #[test]
    fn a_candidate_folds_if_it_ends_within_the_limit_and_waits_until_then() {
        let folding = rule(1);
        let running = life(1, 10, None);
        assert_eq!(folding.decide(running, false, 12 * SECOND), Fold::Later);
        assert_eq!(folding.decide(running, false, 15 * SECOND), Fold::Own);
        assert_eq!(
            folding.decide(running, true, 12 * SECOND),
            Fold::Folded,
            "ended (no exit event yet) within 5 s"
        );
        assert_eq!(
            folding.decide(life(1, 10, Some(11)), true, 30 * SECOND),
            Fold::Folded
        );
        assert_eq!(
            folding.decide(life(1, 10, Some(16)), true, 30 * SECOND),
            Fold::Own
        );
    }

    #[test]
    fn idle_parents_are_forgotten() {
        let now = Instant::now();
        let mut folding = rule(1);
        assert!(folding.place("a", 1, now));
        assert!(!folding.place("b", 1, now));
        folding.prune(now + Duration::from_secs(600), Duration::from_secs(300));
        assert!(folding.place("b", 1, now));
    }
}
