//! Fixed time slots: per-slot counts and latency, indexed by intended send time.
//!
//! Memory is bounded by a constant, whatever the run's length: a slot holds counters and one
//! small auto-resizing histogram (2 significant digits, 32-bit counts), and a timeline holds at
//! most [`MAX_SLOTS`] slots. When a request falls past the last slot it may hold, adjacent slots
//! merge in pairs and the width doubles ([`Timeline::slot_mut`]): counts, codes, errors and
//! versions are added, histograms are added, and every edge of the wider slots was an edge of the
//! narrower ones, so no request changes side of an edge. The width a report shows is the final
//! one.
//!
//! The width is either given (`--slot`) or sized to the run ([`Timeline::for_run`]): a round
//! width from 10 ms to 1 s that gives at most [`AUTO_SLOTS`] slots over the length known up front
//! (the duration; with steps, warmup + cooldown, the steps' length being unknown). While such a
//! width is below 1 s the cap is [`AUTO_SLOTS`] instead of [`MAX_SLOTS`], so a rollout that lasts
//! longer than planned doubles its width as it grows and keeps 150 to 300 slots.

use std::time::Duration;

use hdrhistogram::Histogram;

use crate::config::RunConfig;
use crate::measure::outcome::ErrorClass;
use crate::measure::version::VersionId;

/// Most slots a timeline holds: one more and adjacent slots merge in pairs (the width doubles).
pub const MAX_SLOTS: usize = 2048;

/// Most slots of a timeline sized to the run, while its width is below [`AUTO_MAX_WIDTH`].
pub const AUTO_SLOTS: usize = 300;

/// Widest slot the automatic sizing chooses, and the width past which a timeline sized to the
/// run stops doubling at [`AUTO_SLOTS`] (it then doubles at [`MAX_SLOTS`], as a given one does).
pub const AUTO_MAX_WIDTH: Duration = Duration::from_secs(1);

/// The widths the automatic sizing chooses from, in milliseconds: round numbers, 10 ms to 1 s.
const AUTO_WIDTHS_MS: [u64; 7] = [10, 20, 50, 100, 200, 500, 1000];

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

    /// The histogram of the slot's response latencies (microseconds, from the intended send
    /// time), if it has any.
    pub fn latency(&self) -> Option<&Histogram<u32>> {
        self.latency_us.as_ref().filter(|h| !h.is_empty())
    }

    /// The latency quantile `q` of the slot's responses, in microseconds.
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

    /// Adds `other`'s counts, codes, errors, versions and latency samples to this slot.
    pub fn absorb(&mut self, other: Slot) {
        self.ok += other.ok;
        self.failed += other.failed;
        for (status, n) in other.codes {
            match self.codes.binary_search_by_key(&status, |&(c, _)| c) {
                Ok(i) => self.codes[i].1 += n,
                Err(i) => self.codes.insert(i, (status, n)),
            }
        }
        for (mine, theirs) in self.errors.iter_mut().zip(other.errors) {
            *mine += theirs;
        }
        for (version, n) in other.versions {
            match self.versions.iter_mut().find(|(v, _)| *v == version) {
                Some((_, m)) => *m += n,
                None => self.versions.push((version, n)),
            }
        }
        match (&mut self.latency_us, other.latency_us) {
            (_, None) => {}
            (None, theirs) => self.latency_us = theirs,
            (Some(mine), Some(theirs)) => {
                // Both auto-resize with the same precision: `add` grows `mine` as needed and
                // adds counts saturating. Should it refuse anyway, the samples go one by one.
                if mine.add(&theirs).is_err() {
                    for v in theirs.iter_recorded() {
                        mine.saturating_record_n(v.value_iterated_to(), v.count_at_value());
                    }
                }
            }
        }
    }
}

/// The timeline of a run: slot `i` covers intended send times `[i × width, (i + 1) × width)`.
#[derive(Clone, Debug)]
pub struct Timeline {
    width: Duration,
    slots: Vec<Slot>,
    /// The width given (`--slot`); `None` when sized to the run.
    requested: Option<Duration>,
}

impl Timeline {
    /// An empty timeline with slots of `width` (at least 1 ms), as given with `--slot`.
    pub fn new(width: Duration) -> Timeline {
        let width = width.max(Duration::from_millis(1));
        Timeline {
            width,
            slots: Vec::new(),
            requested: Some(width),
        }
    }

    /// An empty timeline sized to a run expected to last `expected`: the narrowest round width
    /// from 10 ms to 1 s that covers it in at most [`AUTO_SLOTS`] slots (1 s for longer runs).
    /// While doubling keeps the width within 1 s, it doubles past [`AUTO_SLOTS`] slots.
    pub fn sized_to(expected: Duration) -> Timeline {
        let width = AUTO_WIDTHS_MS
            .into_iter()
            .map(Duration::from_millis)
            .find(|w| expected.as_nanos().div_ceil(w.as_nanos()) <= AUTO_SLOTS as u128)
            .unwrap_or(AUTO_MAX_WIDTH);
        Timeline {
            width,
            slots: Vec::new(),
            requested: None,
        }
    }

    /// The timeline of a run of `config`: its `--slot` if given, else sized to the length known
    /// up front (the duration; with steps, warmup + cooldown, then doubled as the run grows).
    pub fn for_run(config: &RunConfig) -> Timeline {
        match config.load.slot {
            Some(width) => Timeline::new(width),
            None if config.rollout.has_steps() => {
                Timeline::sized_to(config.rollout.warmup + config.rollout.cooldown)
            }
            None => Timeline::sized_to(config.load.duration),
        }
    }

    /// Slot width: the one given or chosen, doubled once per merge.
    pub fn width(&self) -> Duration {
        self.width
    }

    /// The width given with `--slot`; `None` when the width was sized to the run.
    pub fn requested(&self) -> Option<Duration> {
        self.requested
    }

    /// How many slots the timeline may hold at its current width before merging.
    fn cap(&self) -> usize {
        if self.requested.is_none() && self.width * 2 <= AUTO_MAX_WIDTH {
            AUTO_SLOTS
        } else {
            MAX_SLOTS
        }
    }

    /// The index of the slot holding `offset`, after merging slots until it fits under the cap.
    fn index_of(&mut self, offset: Duration) -> usize {
        loop {
            let index = offset.as_nanos() / self.width.as_nanos();
            if index < self.cap() as u128 {
                return index as usize;
            }
            self.merge_pairs();
        }
    }

    /// Merges slots `2i` and `2i + 1` into slot `i`, and doubles the width.
    fn merge_pairs(&mut self) {
        let n = self.slots.len();
        for i in 0..n.div_ceil(2) {
            let mut merged = std::mem::take(&mut self.slots[2 * i]);
            if let Some(next) = self.slots.get_mut(2 * i + 1) {
                merged.absorb(std::mem::take(next));
            }
            self.slots[i] = merged;
        }
        self.slots.truncate(n.div_ceil(2));
        self.width *= 2;
    }

    /// The slot holding `offset` from the run start, created (with any before it) if needed;
    /// adjacent slots merge first if it lies past the cap.
    pub fn slot_mut(&mut self, offset: Duration) -> &mut Slot {
        let index = self.index_of(offset);
        if index >= self.slots.len() {
            self.slots.resize_with(index + 1, Slot::default);
        }
        &mut self.slots[index]
    }

    /// Pads the timeline with empty slots so it covers `length` from the start (merging slots
    /// first if that many would pass the cap).
    pub fn extend_to(&mut self, length: Duration) {
        if length.is_zero() {
            return;
        }
        // The slot holding the last instant before `length`.
        let last = self.index_of(length - Duration::from_nanos(1));
        if last >= self.slots.len() {
            self.slots.resize_with(last + 1, Slot::default);
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

    /// What one request did, for the model the merge tests compare against.
    #[derive(Clone, Copy)]
    enum Kind {
        Status(u16, bool, Option<usize>),
        Error(ErrorClass),
    }

    /// Deterministic pseudo-random requests: `(offset, kind, latency µs)`, not in time order.
    fn requests(n: u64, span: Duration) -> Vec<(Duration, Kind, u64)> {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let offset = Duration::from_nanos(x % span.as_nanos() as u64);
                let kind = match (x >> 32) % 6 {
                    0 => Kind::Status(503, false, None),
                    1 => Kind::Error(ErrorClass::Reset),
                    2 => Kind::Error(ErrorClass::Timeout),
                    3 => Kind::Status(200, true, Some(1)),
                    4 => Kind::Status(204, true, None),
                    _ => Kind::Status(200, true, Some(0)),
                };
                (offset, kind, 100 + (x >> 40) % 50_000)
            })
            .collect()
    }

    fn record(t: &mut Timeline, versions: &[VersionId], (offset, kind, us): (Duration, Kind, u64)) {
        let slot = t.slot_mut(offset);
        match kind {
            Kind::Status(status, ok, version) => {
                slot.add_status(status, ok);
                slot.add_latency(us);
                if let Some(v) = version {
                    slot.add_version(versions[v]);
                }
            }
            Kind::Error(class) => slot.add_error(class),
        }
    }

    /// The slot `[from, from + width)` would hold: the requests of that span, counted one by one.
    fn expected(
        reqs: &[(Duration, Kind, u64)],
        versions: &[VersionId],
        from: Duration,
        width: Duration,
    ) -> Slot {
        let mut s = Slot::default();
        for &(offset, kind, us) in reqs {
            if offset >= from && offset < from + width {
                match kind {
                    Kind::Status(status, ok, version) => {
                        s.add_status(status, ok);
                        s.add_latency(us);
                        if let Some(v) = version {
                            s.add_version(versions[v]);
                        }
                    }
                    Kind::Error(class) => s.add_error(class),
                }
            }
        }
        s
    }

    fn sorted(mut v: Vec<(VersionId, u64)>) -> Vec<(VersionId, u64)> {
        v.sort();
        v
    }

    #[test]
    fn merging_keeps_every_count_exact_after_several_doublings() {
        let labels = crate::measure::version::Labels::default();
        let versions = [labels.intern("v1"), labels.intern("v2")];
        // 10 ms slots over 100 s: 10,000 slots wanted, 2,048 allowed: three doublings, 80 ms.
        let span = Duration::from_secs(100);
        let reqs = requests(50_000, span);
        let mut t = Timeline::new(Duration::from_millis(10));
        for &r in &reqs {
            record(&mut t, &versions, r);
        }
        t.extend_to(span);
        assert_eq!(t.width(), Duration::from_millis(80));
        assert_eq!(t.requested(), Some(Duration::from_millis(10)));
        assert_eq!(t.slots().len(), 1250, "100 s in 80 ms slots");
        let total: u64 = t.slots().iter().map(Slot::total).sum();
        assert_eq!(total, 50_000);
        for (i, slot) in t.slots().iter().enumerate() {
            let want = expected(&reqs, &versions, t.width() * i as u32, t.width());
            assert_eq!((slot.ok, slot.failed), (want.ok, want.failed), "slot {i}");
            assert_eq!(slot.codes, want.codes, "slot {i}");
            assert_eq!(slot.errors, want.errors, "slot {i}");
            assert_eq!(
                sorted(slot.versions.clone()),
                sorted(want.versions.clone()),
                "slot {i}"
            );
            let samples = |s: &Slot| s.latency_us.as_ref().map_or(0, |h| h.len());
            assert_eq!(samples(slot), samples(&want), "slot {i}: histogram total");
            assert_eq!(
                slot.latency_quantile_us(0.99),
                want.latency_quantile_us(0.99),
                "slot {i}: added histograms are the histogram of the union"
            );
        }
    }

    #[test]
    fn a_merge_keeps_slot_edges_and_later_records_land_right() {
        let mut t = Timeline::new(Duration::from_millis(10));
        t.slot_mut(Duration::from_millis(5)).add_status(200, true);
        t.slot_mut(Duration::from_millis(15))
            .add_error(ErrorClass::Reset);
        t.slot_mut(Duration::from_millis(25)).add_status(503, false);
        assert_eq!(t.slots().len(), 3);
        // The 2,049th slot does not fit: pairs merge, 20 ms slots.
        t.slot_mut(Duration::from_millis(20_480))
            .add_status(200, true);
        assert_eq!(t.width(), Duration::from_millis(20));
        assert_eq!(t.slots().len(), 1025);
        assert_eq!((t.slots()[0].ok, t.slots()[0].failed), (1, 1));
        assert_eq!(t.slots()[0].errors[ErrorClass::Reset.index()], 1);
        assert_eq!(t.slots()[1].codes, vec![(503, 1)]);
        assert_eq!(t.slots()[1024].codes, vec![(200, 1)]);
        // A request due before the merge but recorded after it goes to the wider slot.
        t.slot_mut(Duration::from_millis(39)).add_status(503, false);
        assert_eq!(t.slots()[1].codes, vec![(503, 2)]);
        // Padding past the cap merges too.
        t.extend_to(Duration::from_secs(60));
        assert_eq!(t.width(), Duration::from_millis(40));
        assert_eq!(t.slots().len(), 1500);
        assert_eq!(t.slots().iter().map(Slot::total).sum::<u64>(), 5);
    }

    #[test]
    fn a_width_sized_to_the_run_is_round_and_gives_at_most_300_slots() {
        let width = |ms: u64| Timeline::sized_to(Duration::from_millis(ms)).width();
        assert_eq!(width(100), Duration::from_millis(10));
        assert_eq!(width(1_000), Duration::from_millis(10));
        assert_eq!(width(3_000), Duration::from_millis(10));
        assert_eq!(width(5_000), Duration::from_millis(20));
        assert_eq!(width(10_000), Duration::from_secs_f64(0.05));
        assert_eq!(width(60_000), Duration::from_millis(200));
        assert_eq!(width(120_000), Duration::from_millis(500));
        assert_eq!(width(300_000), Duration::from_secs(1));
        assert_eq!(width(86_400_000), Duration::from_secs(1));
        assert_eq!(Timeline::sized_to(Duration::from_secs(5)).requested(), None);
    }

    #[test]
    fn a_width_sized_to_the_run_doubles_as_the_run_outgrows_it_up_to_one_second() {
        // Warmup + cooldown of 13 s: 50 ms slots; the steps then take minutes.
        let mut t = Timeline::sized_to(Duration::from_secs(13));
        assert_eq!(t.width(), Duration::from_millis(50));
        t.slot_mut(Duration::from_millis(14_999))
            .add_status(200, true);
        assert_eq!(
            (t.width(), t.slots().len()),
            (Duration::from_millis(50), 300)
        );
        t.slot_mut(Duration::from_secs(15)).add_status(200, true);
        assert_eq!(
            (t.width(), t.slots().len()),
            (Duration::from_millis(100), 151)
        );
        t.extend_to(Duration::from_secs(100));
        assert_eq!(
            (t.width(), t.slots().len()),
            (Duration::from_millis(400), 250)
        );
        t.extend_to(Duration::from_secs(300));
        // 800 ms: one more doubling would pass 1 s, so the cap is now 2,048.
        assert_eq!(
            (t.width(), t.slots().len()),
            (Duration::from_millis(800), 375)
        );
        t.extend_to(Duration::from_secs(1638));
        assert_eq!(t.width(), Duration::from_millis(800));
        t.extend_to(Duration::from_secs(1639));
        assert_eq!(
            (t.width(), t.slots().len()),
            (Duration::from_millis(1600), 1025)
        );
        assert_eq!(t.slots().iter().map(Slot::total).sum::<u64>(), 2);
        // Sized at 1 s for a long run: no doubling before 2,048 slots.
        let mut long = Timeline::sized_to(Duration::from_secs(600));
        long.extend_to(Duration::from_secs(2048));
        assert_eq!(
            (long.width(), long.slots().len()),
            (Duration::from_secs(1), 2048)
        );
    }
}
