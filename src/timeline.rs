//! Fixed time slots: per-slot counts and latency, indexed by intended send time.
//!
//! Memory is O(run length / slot width), never O(requests): a slot holds counters and one small
//! auto-resizing histogram (2 significant digits, 32-bit counts).

use std::time::Duration;

use hdrhistogram::Histogram;

use crate::outcome::ErrorClass;
use crate::version::VersionId;

/// One slot of the timeline.
#[derive(Clone, Debug, Default)]
pub struct Slot {
    /// Requests that succeeded.
    pub ok: u64,
    /// Requests that failed (bad status or transport failure).
    pub failed: u64,
    /// Count per status code, sorted by code.
    pub codes: Vec<(u16, u64)>,
    /// Count per transport failure class, indexed by [`ErrorClass::index`].
    pub errors: [u64; ErrorClass::COUNT],
    /// Successful responses per version.
    pub versions: Vec<(VersionId, u64)>,
    latency_us: Option<Histogram<u32>>,
}

impl Slot {
    /// Counts one response status.
    pub fn add_status(&mut self, status: u16, ok: bool) {
        self.count(ok);
        match self.codes.binary_search_by_key(&status, |&(c, _)| c) {
            Ok(i) => self.codes[i].1 += 1,
            Err(i) => self.codes.insert(i, (status, 1)),
        }
    }

    /// Counts one transport failure.
    pub fn add_error(&mut self, class: ErrorClass) {
        self.count(false);
        self.errors[class.index()] += 1;
    }

    /// Counts `n` transport failures of one class at once (a batch of requests never sent).
    pub fn add_errors(&mut self, class: ErrorClass, n: u64) {
        self.failed = self.failed.saturating_add(n);
        self.errors[class.index()] = self.errors[class.index()].saturating_add(n);
    }

    /// Counts one successful response from `version`.
    pub fn add_version(&mut self, version: VersionId) {
        match self.versions.iter_mut().find(|(v, _)| *v == version) {
            Some((_, n)) => *n += 1,
            None => self.versions.push((version, 1)),
        }
    }

    /// Adds a latency sample (microseconds from intended send time).
    pub fn add_latency(&mut self, micros: u64) {
        let h = self.latency_us.get_or_insert_with(|| {
            // Auto-resizing with 2 significant digits: cannot fail for these constants.
            Histogram::new(2).unwrap_or_else(|_| unreachable!("2 significant digits is valid"))
        });
        // `record` grows an auto-resizing histogram; `saturating_record` would clamp instead.
        if h.record(micros.max(1)).is_err() {
            h.saturating_record(micros.max(1));
        }
    }

    fn count(&mut self, ok: bool) {
        if ok {
            self.ok += 1;
        } else {
            self.failed += 1;
        }
    }

    /// Latency quantile in microseconds, if the slot has latency samples.
    pub fn latency_quantile_us(&self, q: f64) -> Option<u64> {
        self.latency_us
            .as_ref()
            .filter(|h| !h.is_empty())
            .map(|h| h.value_at_quantile(q))
    }

    /// Total requests in the slot.
    pub fn total(&self) -> u64 {
        self.ok + self.failed
    }
}

/// The timeline of a run: slot `i` covers intended send times `[i × width, (i + 1) × width)`.
#[derive(Clone, Debug)]
pub struct Timeline {
    width: Duration,
    slots: Vec<Slot>,
}

impl Timeline {
    /// An empty timeline with slots of `width` (at least 1 ms).
    pub fn new(width: Duration) -> Timeline {
        Timeline {
            width: width.max(Duration::from_millis(1)),
            slots: Vec::new(),
        }
    }

    /// Slot width.
    pub fn width(&self) -> Duration {
        self.width
    }

    /// The slot holding `offset` from the run start, created (with any before it) if needed.
    pub fn slot_mut(&mut self, offset: Duration) -> &mut Slot {
        let index = (offset.as_nanos() / self.width.as_nanos()) as usize;
        if index >= self.slots.len() {
            self.slots.resize_with(index + 1, Slot::default);
        }
        &mut self.slots[index]
    }

    /// Pads the timeline with empty slots so it covers `length` from the start.
    pub fn extend_to(&mut self, length: Duration) {
        let n = length.as_nanos().div_ceil(self.width.as_nanos()) as usize;
        if n > self.slots.len() {
            self.slots.resize_with(n, Slot::default);
        }
    }

    /// All slots, in time order.
    pub fn slots(&self) -> &[Slot] {
        &self.slots
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_by_offset() {
        let mut t = Timeline::new(Duration::from_millis(100));
        t.slot_mut(Duration::from_millis(250)).add_status(200, true);
        t.slot_mut(Duration::from_millis(299))
            .add_status(503, false);
        t.slot_mut(Duration::from_millis(0))
            .add_error(ErrorClass::Reset);
        assert_eq!(t.slots().len(), 3);
        assert_eq!(t.slots()[2].codes, vec![(200, 1), (503, 1)]);
        assert_eq!((t.slots()[2].ok, t.slots()[2].failed), (1, 1));
        assert_eq!(t.slots()[0].errors[ErrorClass::Reset.index()], 1);
        assert_eq!(t.slots()[1].total(), 0);
        t.extend_to(Duration::from_millis(1001));
        assert_eq!(t.slots().len(), 11);
    }

    #[test]
    fn slot_latency_quantiles() {
        let mut s = Slot::default();
        assert_eq!(s.latency_quantile_us(0.99), None);
        for v in 1..=100 {
            s.add_latency(v * 1000);
        }
        let p99 = s.latency_quantile_us(0.99).unwrap();
        // Two significant digits: within 1 % of the true value.
        assert!((98_000..=101_000).contains(&p99), "{p99}");
    }
}
