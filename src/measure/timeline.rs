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
//!
//! **Sealed slots.** A slot's histogram stops changing once every request due before the slot's
//! end has finished; the recorder then seals it ([`Timeline::seal_before`]): the histogram is kept
//! in hdrhistogram's V2 serialization (varint-encoded counts, typically 60 to 200 bytes instead
//! of 2 to 8 KiB live) and decoded only when read ([`Slot::latency`]) or when pairs merge. The
//! encoding is lossless: a decoded histogram has the same counts, range and precision, so
//! quantiles and the shards' `latency_us` text are the same as from the live one. A sample that
//! still arrives for a sealed slot (the recorder's guess of what is finished was early) unseals
//! it, exactly, and the slot stays live.

use std::borrow::Cow;
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
    /// Count per transport failure class seen, sorted by class (sparse: most slots have none,
    /// and a run of 50 endpoints keeps 15,000 slots or more).
    pub errors: Vec<(ErrorClass, u64)>,
    /// Successful responses per version.
    pub versions: Vec<(VersionId, u64)>,
    latency_us: Latencies,
}

/// A slot's latency histogram (µs, 2 significant digits, auto-resizing), in one of two forms.
#[derive(Clone, Debug, Default)]
enum Latencies {
    /// No sample yet.
    #[default]
    Empty,
    /// Being recorded into (boxed: an empty slot costs no more than a sealed one).
    Live(Box<Histogram<u32>>),
    /// Complete, kept as its V2 serialization (see the module documentation).
    Sealed(Box<[u8]>),
}

impl Latencies {
    /// The histogram in live form (decoding a sealed one); `None` when empty.
    fn decoded(&self) -> Option<Cow<'_, Histogram<u32>>> {
        match self {
            Latencies::Empty => None,
            Latencies::Live(h) => Some(Cow::Borrowed(&**h)),
            Latencies::Sealed(bytes) => Some(Cow::Owned(unseal(bytes))),
        }
    }

    /// Takes the histogram out in live form, leaving `Empty`.
    fn take(&mut self) -> Option<Histogram<u32>> {
        match std::mem::take(self) {
            Latencies::Empty => None,
            Latencies::Live(h) => Some(*h),
            Latencies::Sealed(bytes) => Some(unseal(&bytes)),
        }
    }

    /// The histogram to record into: a new one if empty, a sealed one decoded (it stays live).
    fn live_mut(&mut self) -> &mut Histogram<u32> {
        if !matches!(self, Latencies::Live(_)) {
            *self = Latencies::Live(Box::new(self.take().unwrap_or_else(slot_histogram)));
        }
        match self {
            Latencies::Live(h) => h,
            Latencies::Empty | Latencies::Sealed(_) => unreachable!("made live above"),
        }
    }

    /// Keeps a live histogram in sealed form. An encoding that fails (it cannot for these
    /// histograms) leaves it live.
    fn seal(&mut self) {
        if let Latencies::Live(h) = self
            && let Some(bytes) = seal(h)
        {
            *self = Latencies::Sealed(bytes);
        }
    }
}

/// Adds `n` to `key`'s count in a list sorted by key (a new entry in its place if absent).
fn bump<K: Ord + Copy>(counts: &mut Vec<(K, u64)>, key: K, n: u64) {
    match counts.binary_search_by_key(&key, |&(k, _)| k) {
        Ok(i) => counts[i].1 = counts[i].1.saturating_add(n),
        Err(i) => counts.insert(i, (key, n)),
    }
}

/// A new slot histogram: auto-resizing, 2 significant digits.
fn slot_histogram() -> Histogram<u32> {
    // Auto-resizing with 2 significant digits: cannot fail for these constants.
    Histogram::new(2).unwrap_or_else(|_| unreachable!("2 significant digits is valid"))
}

/// `h`'s V2 serialization; `None` if it cannot be encoded (a count past `i64`: impossible for
/// `u32` counts).
fn seal(h: &Histogram<u32>) -> Option<Box<[u8]>> {
    use hdrhistogram::serialization::Serializer as _;
    let mut bytes = Vec::new();
    hdrhistogram::serialization::V2Serializer::new()
        .serialize(h, &mut bytes)
        .ok()?;
    Some(bytes.into_boxed_slice())
}

/// The histogram [`seal`] encoded, auto-resizing again as it was when live (the decoder makes
/// one with fixed bounds: the encoded range, the same the live one had grown to).
fn unseal(bytes: &[u8]) -> Histogram<u32> {
    let decoded: Option<Histogram<u32>> = hdrhistogram::serialization::Deserializer::new()
        .deserialize(&mut &bytes[..])
        .ok();
    // The bytes are `seal`'s, in memory: decoding them cannot fail.
    let mut h = decoded.unwrap_or_else(|| unreachable!("a sealed slot decodes"));
    h.auto(true);
    h
}

impl Slot {
    /// Counts one response status.
    pub fn add_status(&mut self, status: u16, ok: bool) {
        self.count(ok);
        bump(&mut self.codes, status, 1);
    }

    /// Counts one transport failure.
    pub fn add_error(&mut self, class: ErrorClass) {
        self.count(false);
        bump(&mut self.errors, class, 1);
    }

    /// Counts `n` transport failures of one class at once (a batch of requests never sent).
    pub fn add_errors(&mut self, class: ErrorClass, n: u64) {
        self.failed = self.failed.saturating_add(n);
        bump(&mut self.errors, class, n);
    }

    /// Counts one successful response from `version`.
    pub fn add_version(&mut self, version: VersionId) {
        match self.versions.iter_mut().find(|(v, _)| *v == version) {
            Some((_, n)) => *n += 1,
            None => self.versions.push((version, 1)),
        }
    }

    /// Adds a latency sample (microseconds from intended send time).
    /// A sealed slot is unsealed first (and stays live): the sample counts exactly.
    pub fn add_latency(&mut self, micros: u64) {
        let h = self.latency_us.live_mut();
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
    /// time), if it has any; decoded if the slot is sealed (the same histogram as when live).
    pub fn latency(&self) -> Option<Cow<'_, Histogram<u32>>> {
        self.latency_us.decoded().filter(|h| !h.is_empty())
    }

    /// The latency quantiles `qs` of the slot's responses, in microseconds, in the order asked
    /// (one decoding for all of them if the slot is sealed); `None` without responses.
    pub fn latency_quantiles_us<const N: usize>(&self, qs: [f64; N]) -> Option<[u64; N]> {
        self.latency().map(|h| qs.map(|q| h.value_at_quantile(q)))
    }

    /// The latency quantile `q` of the slot's responses, in microseconds.
    pub fn latency_quantile_us(&self, q: f64) -> Option<u64> {
        self.latency_quantiles_us([q]).map(|[v]| v)
    }

    /// True when the slot's histogram is kept sealed (see the module documentation).
    pub fn is_sealed(&self) -> bool {
        matches!(self.latency_us, Latencies::Sealed(_))
    }

    /// Bytes the slot's histogram holds: its counts array when live, its encoding when sealed.
    pub fn latency_bytes(&self) -> usize {
        match &self.latency_us {
            Latencies::Empty => 0,
            Latencies::Live(h) => h.distinct_values() * std::mem::size_of::<u32>(),
            Latencies::Sealed(bytes) => bytes.len(),
        }
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
            bump(&mut self.codes, status, n);
        }
        for (class, n) in other.errors {
            bump(&mut self.errors, class, n);
        }
        for (version, n) in other.versions {
            match self.versions.iter_mut().find(|(v, _)| *v == version) {
                Some((_, m)) => *m += n,
                None => self.versions.push((version, n)),
            }
        }
        // Either may be sealed: the sum is live (the timeline seals it again if both were).
        let mut theirs = other.latency_us;
        match (&mut self.latency_us, theirs.take()) {
            (_, None) => {}
            (Latencies::Empty, Some(theirs)) => {
                self.latency_us = Latencies::Live(Box::new(theirs));
            }
            (mine, Some(theirs)) => {
                let mine = mine.live_mut();
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

    /// Keeps the slot's histogram sealed until read (see the module documentation).
    fn seal(&mut self) {
        self.latency_us.seal();
    }
}

/// The timeline of a run: slot `i` covers intended send times `[i × width, (i + 1) × width)`.
#[derive(Clone, Debug)]
pub struct Timeline {
    width: Duration,
    slots: Vec<Slot>,
    /// The width given (`--slot`); `None` when sized to the run.
    requested: Option<Duration>,
    /// Slots before this index were sealed ([`Timeline::seal_before`]); a late sample may have
    /// unsealed one since.
    sealed: usize,
}

impl Timeline {
    /// An empty timeline with slots of `width` (at least 1 ms), as given with `--slot`.
    pub fn new(width: Duration) -> Timeline {
        let width = width.max(Duration::from_millis(1));
        Timeline {
            width,
            slots: Vec::new(),
            requested: Some(width),
            sealed: 0,
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
        // The slots it will hold if the run lasts as expected, allocated once (growing one by
        // one would double the allocation up to twice that, per endpoint).
        let expected_slots = expected
            .as_nanos()
            .div_ceil(width.as_nanos())
            .min(MAX_SLOTS as u128);
        Timeline {
            width,
            slots: Vec::with_capacity(expected_slots as usize),
            requested: None,
            sealed: 0,
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

    /// Merges slots `2i` and `2i + 1` into slot `i`, and doubles the width. A merged slot is
    /// sealed when both halves were complete.
    fn merge_pairs(&mut self) {
        let n = self.slots.len();
        let sealed = self.sealed / 2;
        for i in 0..n.div_ceil(2) {
            let mut merged = std::mem::take(&mut self.slots[2 * i]);
            if let Some(next) = self.slots.get_mut(2 * i + 1) {
                merged.absorb(std::mem::take(next));
            }
            if i < sealed {
                merged.seal();
            }
            self.slots[i] = merged;
        }
        self.slots.truncate(n.div_ceil(2));
        self.sealed = sealed;
        self.width *= 2;
    }

    /// Seals the slots that end at or before `offset` from the start: the caller knows that
    /// every request due before `offset` has finished, so their histograms are complete. Costs
    /// nothing for the slots already sealed.
    pub fn seal_before(&mut self, offset: Duration) {
        let end = usize::try_from(offset.as_nanos() / self.width.as_nanos())
            .unwrap_or(usize::MAX)
            .min(self.slots.len());
        if end > self.sealed {
            for slot in &mut self.slots[self.sealed..end] {
                slot.seal();
            }
            self.sealed = end;
        }
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
        assert_eq!(t.slots()[0].errors, vec![(ErrorClass::Reset, 1)]);
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

    /// Every sample of a histogram: `(value, count)` in value order.
    fn samples(h: Option<Cow<'_, Histogram<u32>>>) -> Vec<(u64, u64)> {
        h.map_or_else(Vec::new, |h| {
            h.iter_recorded()
                .map(|v| (v.value_iterated_to(), u64::from(v.count_at_value())))
                .collect()
        })
    }

    /// Records `reqs` in their order into 10 ms slots over 100 s (10,000 slots wanted, 2,048
    /// allowed: three doublings, 80 ms), calling `then(timeline, offset)` after each, and checks
    /// every slot against the model: counts, codes, errors, versions, and every latency sample.
    fn assert_exact_after_doublings(
        reqs: &[(Duration, Kind, u64)],
        then: impl Fn(&mut Timeline, Duration),
    ) -> Timeline {
        let labels = crate::measure::version::Labels::default();
        let versions = [labels.intern("v1"), labels.intern("v2")];
        let span = Duration::from_secs(100);
        let mut t = Timeline::new(Duration::from_millis(10));
        for &r in reqs {
            record(&mut t, &versions, r);
            then(&mut t, r.0);
        }
        t.extend_to(span);
        assert_eq!(t.width(), Duration::from_millis(80));
        assert_eq!(t.requested(), Some(Duration::from_millis(10)));
        assert_eq!(t.slots().len(), 1250, "100 s in 80 ms slots");
        let total: u64 = t.slots().iter().map(Slot::total).sum();
        assert_eq!(total, reqs.len() as u64);
        for (i, slot) in t.slots().iter().enumerate() {
            let want = expected(reqs, &versions, t.width() * i as u32, t.width());
            assert_eq!((slot.ok, slot.failed), (want.ok, want.failed), "slot {i}");
            assert_eq!(slot.codes, want.codes, "slot {i}");
            assert_eq!(slot.errors, want.errors, "slot {i}");
            assert_eq!(
                sorted(slot.versions.clone()),
                sorted(want.versions.clone()),
                "slot {i}"
            );
            assert_eq!(
                samples(slot.latency()),
                samples(want.latency()),
                "slot {i}: added histograms are the histogram of the union"
            );
            assert_eq!(
                slot.latency_quantiles_us([0.5, 0.99, 1.0]),
                want.latency_quantiles_us([0.5, 0.99, 1.0]),
                "slot {i}"
            );
        }
        t
    }

    #[test]
    fn merging_keeps_every_count_exact_after_several_doublings() {
        let reqs = requests(50_000, Duration::from_secs(100));
        let t = assert_exact_after_doublings(&reqs, |_, _| {});
        assert!(t.slots().iter().all(|s| !s.is_sealed()));
    }

    #[test]
    fn slots_sealed_as_requests_finish_stay_exact_across_doublings() {
        // In time order, each request finishing seals the slots that end by its due time, as
        // the recorder does: every slot but the last is sealed by the end, through doublings.
        let mut reqs = requests(50_000, Duration::from_secs(100));
        reqs.sort_by_key(|r| r.0);
        let t = assert_exact_after_doublings(&reqs, Timeline::seal_before);
        let sealed = t.slots().iter().filter(|s| s.is_sealed()).count();
        assert_eq!(sealed, 1249, "all but the last slot");
    }

    #[test]
    fn a_sample_for_a_sealed_slot_unseals_it_and_counts_exactly() {
        // Half the requests in time order, each sealing the slots before it (every slot but the
        // last is sealed by then), then the other half out of order, all late: each such
        // sample unseals its slot and counts as if the slot had never been sealed.
        let mut reqs = requests(50_000, Duration::from_secs(100));
        reqs[..25_000].sort_by_key(|r| r.0);
        let seen = std::cell::Cell::new(0);
        let t = assert_exact_after_doublings(&reqs, |t, offset| {
            seen.set(seen.get() + 1);
            if seen.get() <= 25_000 {
                t.seal_before(offset);
            }
        });
        assert_eq!(t.slots().iter().filter(|s| s.is_sealed()).count(), 0);
    }

    #[test]
    fn a_sealed_slot_reads_as_the_live_one_and_is_small() {
        // 100 responses from 200 µs to 20 ms, a few slow ones up to 3 s: a wide live histogram.
        let mut live = Slot::default();
        for i in 0..100u64 {
            live.add_latency(200 + i * i * 2);
        }
        for us in [450_000, 1_200_000, 3_000_000] {
            live.add_latency(us);
        }
        let mut sealed = live.clone();
        sealed.seal();
        assert!(sealed.is_sealed() && !live.is_sealed());
        let (a, b) = (live.latency().unwrap(), sealed.latency().unwrap());
        assert_eq!(samples(Some(a.clone())), samples(Some(b.clone())));
        assert_eq!((a.len(), a.min(), a.max()), (b.len(), b.min(), b.max()));
        assert_eq!(a.mean().to_bits(), b.mean().to_bits());
        for q in (0..=1000).map(|q| f64::from(q) / 1000.0) {
            assert_eq!(a.value_at_quantile(q), b.value_at_quantile(q), "q {q}");
        }
        // The same range and precision: the shards' text (`latency_us`) is byte for byte the
        // same, and a decoded histogram still grows to take a larger sample exactly.
        assert_eq!(seal(&a), seal(&b));
        let (mut grown, mut more) = (live.clone(), sealed.clone());
        grown.add_latency(90_000_000);
        more.add_latency(90_000_000);
        assert!(!more.is_sealed());
        assert_eq!(samples(grown.latency()), samples(more.latency()));
        let max = more.latency_quantile_us(1.0).unwrap();
        assert!((90_000_000..=90_900_000).contains(&max), "{max}");
        // About 4 % of the live form here.
        let (live_bytes, sealed_bytes) = (live.latency_bytes(), sealed.latency_bytes());
        assert!(live_bytes >= 4096, "{live_bytes}");
        assert!(
            sealed_bytes * 10 <= live_bytes,
            "{sealed_bytes} of {live_bytes}"
        );
        // An empty slot has nothing to seal.
        let mut empty = Slot::default();
        empty.seal();
        assert!(!empty.is_sealed() && empty.latency().is_none());
    }

    #[test]
    fn a_slot_is_small() {
        // Counters, codes, versions and a pointer-sized histogram: 50 endpoints × 300 slots
        // hold 15,000 of them.
        assert!(
            std::mem::size_of::<Slot>() <= 176,
            "{}",
            std::mem::size_of::<Slot>()
        );
    }

    #[test]
    fn pairs_merge_exactly_whichever_half_is_sealed() {
        let half = |from: u64| {
            let mut s = Slot::default();
            s.add_status(200, true);
            (from..from + 50).for_each(|us| s.add_latency(us * 37));
            s
        };
        let (a, b) = (half(10), half(4000));
        let mut want = a.clone();
        want.absorb(b.clone());
        for (seal_a, seal_b) in [(false, true), (true, false), (true, true)] {
            let (mut x, mut y) = (a.clone(), b.clone());
            if seal_a {
                x.seal();
            }
            if seal_b {
                y.seal();
            }
            x.absorb(y);
            assert_eq!(x.ok, 2);
            assert_eq!(samples(x.latency()), samples(want.latency()));
        }
        // In a timeline: slots 0..3 sealed; the merge seals 0 (slots 0 and 1), not 1 (2 and 3).
        let mut t = Timeline::new(Duration::from_millis(10));
        for ms in [5, 15, 25, 35] {
            let slot = t.slot_mut(Duration::from_millis(ms));
            slot.add_status(200, true);
            slot.add_latency(ms * 100);
        }
        t.seal_before(Duration::from_millis(30));
        let sealed: Vec<bool> = t.slots().iter().map(Slot::is_sealed).collect();
        assert_eq!(sealed, [true, true, true, false]);
        t.slot_mut(Duration::from_millis(20_480)).add_latency(1);
        assert_eq!(t.width(), Duration::from_millis(20));
        assert!(t.slots()[0].is_sealed() && !t.slots()[1].is_sealed());
        let of = |us: [u64; 2]| {
            let mut s = Slot::default();
            us.into_iter().for_each(|v| s.add_latency(v));
            samples(s.latency())
        };
        assert_eq!(samples(t.slots()[0].latency()), of([500, 1500]));
        assert_eq!(samples(t.slots()[1].latency()), of([2500, 3500]));
        assert_eq!(t.slots()[1].ok, 2);
        // Sealing goes on from where it was: 20 ms slots, the first two end by 40 ms.
        t.seal_before(Duration::from_millis(40));
        assert!(t.slots()[1].is_sealed() && !t.slots()[2].is_sealed());
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
        assert_eq!(t.slots()[0].errors, vec![(ErrorClass::Reset, 1)]);
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
