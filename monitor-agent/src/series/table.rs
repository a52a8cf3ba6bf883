//! The one owner of series state. A series (a label set) is the sum of its live kernel
//! entries and of the retired values of finished processes, so counters never go backwards
//! when the kernel entries of an exited process are freed. Retired-only series expire once
//! idle for the TTL. Pure: the kernel maps are read elsewhere and passed in.
use std::{
    hash::{Hash, Hasher as _},
    time::{Duration, Instant},
};

use foldhash::{HashMap, HashMapExt, HashSet, HashSetExt};

pub use monitor_common::Histogram;

use crate::series::labels::{LabelPolicy, Workload};

/// A value that can be summed across CPUs, processes and time.
pub trait Observations: Clone + Default {
    fn add(&mut self, other: &Self);
    /// Events observed so far: a change means the series is active.
    fn observations(&self) -> u64;
    /// A series that must not expire however long it is idle (a connection still open).
    fn pinned(&self) -> bool {
        false
    }
}

/// Adds one observation to a histogram.
pub fn observe(histogram: &mut Histogram, duration_ns: u64) {
    histogram.buckets[monitor_common::hist::bucket(duration_ns)] += 1;
    histogram.sum_ns += duration_ns;
}

/// Who a series is about (already projected on its family's label choice) plus its
/// family's own label values, in the family's label order.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WorkloadLabels {
    pub who: Workload,
    pub values: Vec<String>,
}

/// What a new observation needs to find its series: the families' label choice, the global
/// budget, and the time.
pub struct Recorder<'a> {
    pub policy: &'a LabelPolicy,
    pub budget: &'a mut Budget,
    pub now: Instant,
}

impl Recorder<'_> {
    /// The admitted label set of `who` with `values` in `family`'s `table`.
    pub fn labels<V: Observations>(
        &mut self,
        family: &'static str,
        table: &SeriesTable<WorkloadLabels, V>,
        who: &Workload,
        values: Vec<String>,
    ) -> WorkloadLabels {
        let labels = WorkloadLabels {
            who: self.policy.project(family, who),
            values,
        };
        self.budget.admit(family, table, labels)
    }

    /// Adds one event's `value` to its series.
    pub fn record<V: Observations>(
        &mut self,
        family: &'static str,
        table: &mut SeriesTable<WorkloadLabels, V>,
        who: &Workload,
        values: Vec<String>,
        value: &V,
    ) {
        let labels = self.labels(family, table, who, values);
        table.retire(labels, value, self.now);
    }
}

/// Caps the distinct values of one label per key (the process name), so that values the
/// agent cannot bound otherwise (peers, routes) cannot grow the series count: the first `cap`
/// values of a key keep their own label value, later ones share the caller's overflow value.
/// A place is freed when `retain` drops it (its series expired).
#[derive(Debug)]
pub struct ValueCap {
    cap: usize,
    admitted: HashMap<String, HashSet<String>>,
}

impl ValueCap {
    pub fn new(cap: usize) -> Self {
        Self {
            cap,
            admitted: HashMap::new(),
        }
    }

    /// Whether `value` has, or now gets, a place under `key`.
    pub fn admit(&mut self, key: &str, value: &str) -> bool {
        match self.admitted.get(key) {
            Some(values) if values.contains(value) => return true,
            Some(values) if values.len() >= self.cap => return false,
            None if self.cap == 0 => return false,
            _ => {}
        }
        self.admitted
            .entry(key.to_owned())
            .or_default()
            .insert(value.to_owned());
        true
    }

    /// Keeps only the (key, value) places `keep` still wants.
    pub fn retain(&mut self, mut keep: impl FnMut(&str, &str) -> bool) {
        self.admitted.retain(|key, values| {
            values.retain(|value| keep(key, value));
            !values.is_empty()
        });
    }
}

/// `comm` of a family's overflow series, the one that takes every new label set once the
/// global series budget is spent.
pub const OVERFLOW_COMM: &str = "[overflow]";

impl WorkloadLabels {
    /// The overflow series of a family with `values` own labels: every label empty but comm.
    pub fn overflow(values: usize) -> Self {
        Self {
            who: Workload {
                comm: OVERFLOW_COMM.to_owned(),
                ..Workload::default()
            },
            values: vec![String::new(); values],
        }
    }
}

/// The hard global budget of workload series, counted in Prometheus series (a histogram label
/// set is 30 of them). A new label set is admitted while its series fit in what is left of
/// `max` over all workload families; otherwise it goes to its family's overflow series (one
/// per family, on top of the budget) and is counted as dropped.
#[derive(Debug)]
pub struct Budget {
    max: usize,
    used: usize,
    /// Label sets already refused (hashes, bounded), so that a label set refused at every
    /// sweep counts once.
    refused: HashSet<u64>,
    dropped: HashMap<&'static str, u64>,
}

/// Distinct refused label sets remembered; beyond it, repeats may count again.
const REFUSED_MEMORY: usize = 100_000;

impl Budget {
    pub fn new(max: usize) -> Self {
        Self {
            max,
            used: 0,
            refused: HashSet::new(),
            dropped: HashMap::new(),
        }
    }

    /// Resets the count of Prometheus series in use (after expiries), from the tables.
    pub fn recount(&mut self, used: usize) {
        self.used = used;
    }

    /// The label set `labels` gets in `table` of `family`: itself, or the overflow series.
    pub fn admit<V: Observations>(
        &mut self,
        family: &'static str,
        table: &SeriesTable<WorkloadLabels, V>,
        labels: WorkloadLabels,
    ) -> WorkloadLabels {
        if table.contains(&labels) {
            return labels;
        }
        let cost = super::families::admission_cost(family);
        if self.used + cost <= self.max {
            self.used += cost;
            return labels;
        }
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        (family, &labels).hash(&mut hasher);
        if self.refused.len() >= REFUSED_MEMORY {
            self.refused.clear();
        }
        if self.refused.insert(hasher.finish()) {
            *self.dropped.entry(family).or_default() += 1;
        }
        WorkloadLabels::overflow(labels.values.len())
    }

    pub fn max(&self) -> usize {
        self.max
    }

    /// Label sets refused so far, per family.
    pub fn dropped(&self, family: &str) -> u64 {
        self.dropped.get(family).copied().unwrap_or(0)
    }
}

impl Observations for u64 {
    fn add(&mut self, other: &Self) {
        *self += other;
    }
    fn observations(&self) -> u64 {
        *self
    }
}

impl Observations for Histogram {
    fn add(&mut self, other: &Self) {
        for (mine, theirs) in self.buckets.iter_mut().zip(other.buckets) {
            *mine += theirs;
        }
        self.sum_ns += other.sum_ns;
    }
    fn observations(&self) -> u64 {
        self.buckets.iter().sum()
    }
}

#[derive(Debug)]
struct Series<V> {
    retired: V,
    last_observations: u64,
    last_change: Instant,
}

#[derive(Debug)]
pub struct SeriesTable<L, V> {
    series: HashMap<L, Series<V>>,
    expired_total: u64,
}

impl<L, V> Default for SeriesTable<L, V> {
    fn default() -> Self {
        Self {
            series: HashMap::new(),
            expired_total: 0,
        }
    }
}

impl<L: Clone + Eq + Hash, V: Observations> SeriesTable<L, V> {
    /// Folds the final value of a finished process into its series.
    pub fn retire(&mut self, labels: L, value: &V, now: Instant) {
        self.entry(labels, now).retired.add(value);
    }

    /// The exported values: retired + `live` per label set. Series with no live part that have
    /// not changed for `ttl` are dropped.
    pub fn publish(&mut self, live: HashMap<L, V>, now: Instant, ttl: Duration) -> Vec<(L, V)> {
        for labels in live.keys() {
            self.entry(labels.clone(), now);
        }
        let before = self.series.len();
        let mut out = Vec::with_capacity(before);
        self.series.retain(|labels, series| {
            let mut total = series.retired.clone();
            let live_part = live.get(labels);
            if let Some(value) = live_part {
                total.add(value);
            }
            let observations = total.observations();
            if observations != series.last_observations {
                series.last_observations = observations;
                series.last_change = now;
            }
            let keep = live_part.is_some()
                || total.pinned()
                || now.duration_since(series.last_change) < ttl;
            if keep {
                out.push((labels.clone(), total));
            }
            keep
        });
        self.expired_total += (before - self.series.len()) as u64;
        out
    }

    pub fn len(&self) -> usize {
        self.series.len()
    }

    pub fn contains(&self, labels: &L) -> bool {
        self.series.contains_key(labels)
    }

    pub fn is_empty(&self) -> bool {
        self.series.is_empty()
    }

    pub fn expired_total(&self) -> u64 {
        self.expired_total
    }

    fn entry(&mut self, labels: L, now: Instant) -> &mut Series<V> {
        self.series.entry(labels).or_insert_with(|| Series {
            retired: V::default(),
            last_observations: 0,
            last_change: now,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TTL: Duration = Duration::from_secs(60);

    fn live(pairs: &[(&'static str, u64)]) -> HashMap<&'static str, u64> {
        pairs.iter().copied().collect()
    }

    fn sorted(mut values: Vec<(&'static str, u64)>) -> Vec<(&'static str, u64)> {
        values.sort();
        values
    }

    #[test]
    fn retiring_a_process_keeps_the_counter_monotonic() {
        let t0 = Instant::now();
        let mut table = SeriesTable::default();
        assert_eq!(table.publish(live(&[("bash", 5)]), t0, TTL), [("bash", 5)]);
        // The process exits: its kernel entry (5) is retired and freed; another bash runs on.
        table.retire("bash", &5, t0);
        assert_eq!(table.publish(live(&[("bash", 2)]), t0, TTL), [("bash", 7)]);
    }

    #[test]
    fn retired_only_series_expire_after_ttl_of_idleness() {
        let t0 = Instant::now();
        let mut table = SeriesTable::default();
        table.publish(live(&[("gone", 3), ("stays", 1)]), t0, TTL);
        table.retire("gone", &3, t0);
        let t1 = t0 + TTL / 2;
        assert_eq!(
            sorted(table.publish(live(&[("stays", 1)]), t1, TTL)),
            [("gone", 3), ("stays", 1)]
        );
        let t2 = t0 + TTL;
        assert_eq!(
            table.publish(live(&[("stays", 1)]), t2, TTL),
            [("stays", 1)]
        );
        assert_eq!(table.expired_total(), 1);
        assert_eq!(table.len(), 1);
    }

    #[test]
    fn a_change_restarts_the_ttl() {
        let t0 = Instant::now();
        let mut table = SeriesTable::default();
        table.retire("late", &1, t0);
        table.publish(HashMap::new(), t0, TTL);
        let t1 = t0 + TTL - Duration::from_secs(1);
        table.retire("late", &1, t1); // a late orphan entry of the same process, swept later
        assert_eq!(table.publish(HashMap::new(), t1, TTL), [("late", 2)]);
        assert_eq!(table.publish(HashMap::new(), t0 + TTL, TTL), [("late", 2)]);
        assert!(table.publish(HashMap::new(), t1 + TTL, TTL).is_empty());
    }

    fn labels(comm: &str) -> WorkloadLabels {
        WorkloadLabels {
            who: Workload {
                comm: comm.into(),
                ..Workload::default()
            },
            values: vec!["read".into()],
        }
    }

    #[test]
    fn the_budget_sends_new_label_sets_to_one_overflow_series_and_counts_them_once() {
        let now = Instant::now();
        let mut budget = Budget::new(2);
        let mut table: SeriesTable<WorkloadLabels, u64> = SeriesTable::default();
        for round in 0..2 {
            for comm in ["a", "b", "c", "d"] {
                let admitted = budget.admit("f", &table, labels(comm));
                table.retire(admitted, &1, now);
            }
            budget.recount(table.len());
            assert_eq!(
                table.len(),
                3,
                "round {round}: 2 admitted + the overflow series"
            );
        }
        let published = table.publish(HashMap::new(), now, TTL);
        let overflow = published
            .iter()
            .find(|(labels, _)| labels.who.comm == OVERFLOW_COMM)
            .unwrap();
        assert_eq!(overflow.1, 4, "c and d, twice");
        assert_eq!(overflow.0.values, [""]);
        assert_eq!(budget.dropped("f"), 2, "c and d, once each");
        assert_eq!(budget.dropped("g"), 0);
    }

    #[test]
    fn the_budget_counts_prometheus_series_a_histogram_label_set_is_thirty() {
        use crate::series::families::family::{SYSCALL_DURATION, SYSCALL_ERRORS};
        let now = Instant::now();
        let mut budget = Budget::new(61);
        let mut histograms: SeriesTable<WorkloadLabels, u64> = SeriesTable::default();
        let mut counters: SeriesTable<WorkloadLabels, u64> = SeriesTable::default();
        for comm in ["a", "b", "c"] {
            let admitted = budget.admit(SYSCALL_DURATION.name, &histograms, labels(comm));
            histograms.retire(admitted, &1, now);
        }
        assert_eq!(
            budget.dropped(SYSCALL_DURATION.name),
            1,
            "30 + 30 fit in 61, 90 do not"
        );
        let admitted = budget.admit(SYSCALL_ERRORS.name, &counters, labels("a"));
        assert_eq!(admitted.who.comm, "a", "one counter series still fits");
        counters.retire(admitted, &1, now);
        let refused = budget.admit(SYSCALL_ERRORS.name, &counters, labels("b"));
        assert_eq!(refused.who.comm, OVERFLOW_COMM);
    }

    #[test]
    fn the_cap_admits_the_first_values_per_key_and_frees_retired_ones() {
        let mut cap = ValueCap::new(2);
        assert!(cap.admit("nginx", "/a"));
        assert!(cap.admit("nginx", "/b"));
        assert!(!cap.admit("nginx", "/c"));
        assert!(cap.admit("nginx", "/a"), "known values stay");
        assert!(cap.admit("curl", "/c"), "other keys have their own room");
        cap.retain(|key, value| key != "nginx" || value != "/b");
        assert!(cap.admit("nginx", "/c"), "/b's place went to /c");
        cap.retain(|key, _| key != "nginx");
        assert!(cap.admit("nginx", "/d"));
        assert!(!ValueCap::new(0).admit("x", "/"));
    }

    #[test]
    fn histogram_values_add_bucketwise() {
        let mut a = Histogram::ZERO;
        a.buckets[3] = 2;
        a.sum_ns = 100;
        let mut b = Histogram::ZERO;
        b.buckets[3] = 1;
        b.buckets[5] = 4;
        b.sum_ns = 50;
        a.add(&b);
        assert_eq!(a.buckets[3], 3);
        assert_eq!(a.buckets[5], 4);
        assert_eq!(a.sum_ns, 150);
        assert_eq!(a.observations(), 7);
    }
}
