//! Where a latency threshold falls among the agent's histogram bounds (`monitor_common::hist`,
//! 2^k ns), and each bound's `le` label exactly as the exporter writes it.
use anyhow::{Result, bail, ensure};
use monitor_common::hist;

/// A bucket bound of the agent's histograms: the value, and its `le` label.
#[derive(Debug, PartialEq)]
pub struct Bound {
    pub seconds: f64,
    pub label: String,
}

/// Every finite bound, smallest first (the overflow bucket is `+Inf`, no SLO threshold).
fn bounds() -> impl Iterator<Item = Bound> {
    (0..hist::LAST).filter_map(hist::upper_bound_ns).map(|ns| {
        // The exporter's conversion (export::prometheus): nanoseconds to f64 seconds, written
        // by the text encoder with f64's Display, so `0.268435456`, never `2.68e-1`.
        let seconds = ns as f64 / 1e9;
        Bound {
            seconds,
            label: seconds.to_string(),
        }
    })
}

/// The smallest bucket bound at or above `threshold`. A threshold between bounds cannot be
/// counted exactly: `le="0.25"` would select no series at all. Rounding up keeps every
/// request the SLO calls good on the good side (it also accepts some a little slower, up
/// to the bound); the caller says so when it rounds.
pub fn bucket_at_or_above(threshold: f64) -> Result<Bound> {
    ensure!(
        threshold.is_finite() && threshold > 0.0,
        "threshold {threshold} must be a positive number of seconds"
    );
    // A relative tolerance, so that a bound written out in full is that bound.
    let mut largest = String::new();
    for bound in bounds() {
        if bound.seconds >= threshold * (1.0 - 1e-12) {
            return Ok(bound);
        }
        largest = bound.label;
    }
    bail!("threshold {threshold} s is above the histograms' largest bound, {largest} s")
}
