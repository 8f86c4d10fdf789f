//! [`Tally`]: a run-wide latency histogram in half the memory, exact at any count.
//!
//! The recorder keeps three run-wide histograms per endpoint (latency from the intended time,
//! service time, lateness). With 3 significant digits and values up to a second, each has about
//! 11,000 buckets: 90 KiB with 64-bit counts, so 50 endpoints held 13 MB in them alone. A
//! [`Tally`] counts in 32 bits and, before any bucket could pass `u32::MAX`, adds its counts into
//! a 64-bit histogram and starts again (a spill): the sum of the two is exact whatever the
//! duration or rate, and the spill, which needs more than four billion requests on one
//! endpoint, is never allocated in practice.

use hdrhistogram::Histogram;

use crate::measure::recorder::{LatencyHistogram, MAX_TRACKED_US};

/// A latency histogram (µs, 3 significant digits, auto-resizing) with 32-bit counts and an
/// exact 64-bit spill.
#[derive(Clone, Debug)]
pub struct Tally {
    narrow: Histogram<u32>,
    spill: Option<Box<LatencyHistogram>>,
    /// Counts the narrow histogram holds at most before it spills: no bucket can then pass
    /// `u32::MAX`.
    spill_at: u64,
}

impl Default for Tally {
    fn default() -> Tally {
        Tally::spilling_at(u64::from(u32::MAX))
    }
}

impl Tally {
    /// An empty tally.
    pub fn new() -> Tally {
        Tally::default()
    }

    fn spilling_at(spill_at: u64) -> Tally {
        Tally {
            // 3 significant digits is valid: cannot fail.
            narrow: Histogram::new(3).unwrap_or_else(|_| unreachable!("3 significant digits")),
            spill: None,
            spill_at,
        }
    }

    /// Counts `us` microseconds, clamped to `1..=`[`MAX_TRACKED_US`], growing as needed.
    pub fn record(&mut self, us: u64) {
        if self.narrow.len() >= self.spill_at {
            self.spill_over();
        }
        let us = us.clamp(1, MAX_TRACKED_US);
        if self.narrow.record(us).is_err() {
            self.narrow.saturating_record(us);
        }
    }

    /// Moves the narrow counts into the 64-bit spill.
    fn spill_over(&mut self) {
        let spill = self.spill.get_or_insert_with(|| {
            Box::new(Histogram::new(3).unwrap_or_else(|_| unreachable!("3 significant digits")))
        });
        add_narrow(spill, &self.narrow);
        self.narrow.reset();
    }

    /// Values counted.
    pub fn len(&self) -> u64 {
        self.narrow.len() + self.spill.as_ref().map_or(0, |s| s.len())
    }

    /// True when nothing was counted.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The value at quantile `q` (0 when empty), as the 64-bit histogram would give it.
    pub fn value_at_quantile(&self, q: f64) -> u64 {
        match &self.spill {
            None => self.narrow.value_at_quantile(q),
            Some(_) => self.histogram().value_at_quantile(q),
        }
    }

    /// Forgets every count (a new interval of the progress line).
    pub fn reset(&mut self) {
        self.narrow.reset();
        self.spill = None;
    }

    /// Adds every count to `into`.
    pub fn add_to(&self, into: &mut LatencyHistogram) {
        if let Some(spill) = &self.spill {
            // Both auto-resize: adding cannot fail.
            let _ = into.add(&**spill);
        }
        add_narrow(into, &self.narrow);
    }

    /// The counts as one 64-bit histogram (built on each call: the end of a run, a progress
    /// tick).
    pub fn histogram(&self) -> LatencyHistogram {
        let mut all = Histogram::new_from(&self.narrow);
        self.add_to(&mut all);
        all
    }
}

/// Adds a 32-bit histogram's counts to a 64-bit one, bucket by bucket.
fn add_narrow(into: &mut LatencyHistogram, from: &Histogram<u32>) {
    for bucket in from.iter_recorded() {
        let value = from.highest_equivalent(bucket.value_iterated_to());
        // `into` auto-resizes and the value is in range: cannot fail.
        let _ = into.record_n(value, bucket.count_since_last_iteration());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filled(t: &mut Tally, values: &[(u64, u64)]) {
        for &(us, n) in values {
            for _ in 0..n {
                t.record(us);
            }
        }
    }

    #[test]
    fn a_tally_reads_as_the_64_bit_histogram_of_the_same_values() {
        let values = [
            (1, 3),
            (250, 1000),
            (1_234, 17),
            (999_999, 2),
            (3_600_000_001, 1),
        ];
        let mut tally = Tally::new();
        filled(&mut tally, &values);
        let mut wide = LatencyHistogram::new(3).unwrap();
        for &(us, n) in &values {
            wide.record_n(us.min(MAX_TRACKED_US), n).unwrap();
        }
        let h = tally.histogram();
        assert_eq!(h.len(), wide.len());
        assert_eq!(tally.len(), 1023);
        for q in [0.0, 0.01, 0.5, 0.99, 0.999, 1.0] {
            assert_eq!(h.value_at_quantile(q), wide.value_at_quantile(q), "q {q}");
        }
        assert_eq!(h.max(), wide.max());
        assert_eq!(h.min(), wide.min());
    }

    #[test]
    fn counts_past_the_narrow_limit_spill_exactly() {
        // A limit of 10 instead of 2^32 - 1: the same path, testable.
        let mut tally = Tally::spilling_at(10);
        filled(&mut tally, &[(100, 25), (5_000, 12)]);
        assert!(
            tally.spill.is_some(),
            "37 counts over a limit of 10 spilled"
        );
        assert!(tally.narrow.len() <= 10);
        assert_eq!(tally.len(), 37);
        let h = tally.histogram();
        assert_eq!(h.count_at(100), 25);
        assert_eq!(h.count_at(5_000), 12);
        let mut sum = LatencyHistogram::new(3).unwrap();
        sum.record_n(7, 5).unwrap();
        tally.add_to(&mut sum);
        assert_eq!(sum.len(), 42);
        assert_eq!(sum.count_at(100), 25);
        assert_eq!(tally.value_at_quantile(0.5), h.value_at_quantile(0.5));
        tally.reset();
        assert!(tally.is_empty());
    }

    #[test]
    fn an_empty_tally_is_empty() {
        let tally = Tally::new();
        assert!(tally.is_empty());
        assert!(tally.histogram().is_empty());
    }
}
