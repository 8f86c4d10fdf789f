//! The recorder: turns completions into histograms, counters and the timeline.
//!
//! Bounded memory whatever the rate or duration: histograms (µs, 3 significant digits,
//! mergeable; the run-wide ones in 32-bit counts with an exact spill: [`Tally`]), fixed counter arrays, per-phase counts, the [`Timeline`] (at most
//! [`crate::measure::timeline::MAX_SLOTS`] slots, merged as the run grows; a slot's histogram is
//! sealed in compact form once every request due before the slot's end has finished) and the
//! [`GapDetector`]. No per-request storage.

use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use crate::config::OkCodes;
use crate::measure::gaps::{Failure, GapDetector, Mark};
use crate::measure::outcome::{
    Completion, ConnectionUse, EnvoyReply, ErrorClass, ErrorSamples, Outcome,
};
use crate::measure::stalls::{Finish, StallDetector};
use crate::measure::tally::Tally;
use crate::measure::timeline::Timeline;
use crate::measure::version::VersionId;

/// A run of consecutive arrivals of one schedule shard that were never sent, as the recorder
/// counts it: in one step however many there are, and exactly (the load's batches implement it).
pub trait Unsent {
    /// True when it holds no arrival.
    fn is_empty(&self) -> bool;
    /// Arrivals in the run.
    fn len(&self) -> u64;
    /// Global sequence number of the first arrival.
    fn first_seq(&self) -> u64;
    /// Distance between consecutive sequence numbers (the number of shards).
    fn stride(&self) -> u64;
    /// The run split at the multiples of `width` (timeline slots): `(due of the part's first
    /// arrival, arrivals in the part)`, in time order.
    fn by_width(&self, width: Duration) -> Box<dyn Iterator<Item = (Duration, u64)> + '_>;
    /// How many of its arrivals are due strictly before `offset` from the start.
    fn count_before(&self, offset: Duration) -> u64;
}

/// A request sent more than this after its intended time counts as late.
pub const LATE_THRESHOLD: Duration = Duration::from_millis(1);

/// Largest latency the histograms track exactly: one hour, in microseconds. Larger values are
/// clamped (they cannot happen with a finite request timeout).
pub(crate) const MAX_TRACKED_US: u64 = 3_600_000_000;

/// Number of distinct status codes tracked (the `http` crate allows 100..=999).
const STATUS_SPACE: usize = 1000;

/// A latency histogram in microseconds.
pub type LatencyHistogram = Histogram<u64>;

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX).max(1)
}

/// A phase of the run, on the run's clock.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// A run without rollout steps: one phase, the whole load.
    #[default]
    Load,
    /// Load runs, nothing changes: the baseline.
    Warmup,
    /// The rollout steps run.
    Steps,
    /// After the last step: old instances are often still terminating.
    Cooldown,
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Phase {
    /// The stable name used in reports (serde's).
    pub fn as_str(self) -> &'static str {
        crate::measure::outcome::wire_name(&self)
    }
}

/// Requests whose intended send time fell in one phase.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PhaseTally {
    /// Which phase.
    pub phase: Phase,
    /// From the start of the run.
    pub start: Duration,
    /// From the start of the run; `None` while it lasts.
    pub end: Option<Duration>,
    /// Attempts.
    pub total: u64,
    /// Successes.
    pub ok: u64,
    /// Failures.
    pub failed: u64,
    /// Successful responses per version in this phase: `(version, count, first intended time)`.
    pub versions: Vec<(VersionId, u64, Duration)>,
}

/// When a version answered, over the whole run (successful responses, by intended send time).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VersionSeen {
    /// The version.
    pub version: VersionId,
    /// Successful responses from it.
    pub count: u64,
    /// Intended send time of the first.
    pub first: Duration,
    /// Intended send time of the last.
    pub last: Duration,
}

/// Totals for one run, plus the timeline, the phases and the failure windows.
#[derive(Clone, Debug)]
pub struct Recorder {
    start: Instant,
    ok_codes: OkCodes,
    /// Latency from intended send time (coordinated-omission corrected), responses only.
    corrected: Tally,
    /// Service time from the actual send, responses only.
    service: Tally,
    /// Actual send minus intended send, every sent request.
    lateness: Tally,
    codes: Box<[u64]>,
    errors: [[u64; 2]; ErrorClass::COUNT],
    failed_by_connection: [u64; 2],
    total: u64,
    ok: u64,
    failed: u64,
    late: u64,
    unsent: u64,
    body_bytes: u64,
    envoy: [u64; 3],
    timeline: Timeline,
    phases: Vec<PhaseTally>,
    versions: Vec<VersionSeen>,
    gaps: GapDetector,
    /// Corrected latency since the progress line last took it; `None` until something follows
    /// it ([`Recorder::follow_recent`]): a run without a progress line keeps no fourth
    /// histogram per endpoint.
    recent: Option<Tally>,
    /// Silences of the target while requests waited.
    stalls: StallDetector,
    /// `--max-late`: a response later than this after its intended time is a failure.
    max_late: Option<Duration>,
    /// When the schedule's request 0 is due, from the start (a shard's first request).
    schedule_shift: Duration,
    /// The first message of each error class, noted by the engine where the failure happened
    /// (without this recorder's lock) and here for requests never sent. Shared by clones.
    samples: Arc<ErrorSamples>,
}

impl Recorder {
    /// An empty recorder for a run that started at `start`, in `phase`, counting into the empty
    /// `timeline` (see [`Timeline::for_run`]) and finding windows with `gaps`.
    pub fn new(
        start: Instant,
        timeline: Timeline,
        ok_codes: OkCodes,
        phase: Phase,
        gaps: GapDetector,
    ) -> Recorder {
        Recorder {
            start,
            ok_codes,
            corrected: Tally::new(),
            service: Tally::new(),
            lateness: Tally::new(),
            codes: vec![0; STATUS_SPACE].into_boxed_slice(),
            errors: [[0; 2]; ErrorClass::COUNT],
            failed_by_connection: [0; 2],
            total: 0,
            ok: 0,
            failed: 0,
            late: 0,
            unsent: 0,
            body_bytes: 0,
            envoy: [0; 3],
            timeline,
            phases: vec![PhaseTally {
                phase,
                start: Duration::ZERO,
                end: None,
                total: 0,
                ok: 0,
                failed: 0,
                versions: Vec::new(),
            }],
            versions: Vec::new(),
            gaps,
            recent: None,
            stalls: StallDetector::new(),
            max_late: None,
            schedule_shift: Duration::ZERO,
            samples: Arc::default(),
        }
    }

    /// This recorder, counting a response later than `max_late` after its intended send time as
    /// a failure (`answered_late`).
    pub fn with_max_late(self, max_late: Option<Duration>) -> Recorder {
        Recorder { max_late, ..self }
    }

    /// This recorder, for a schedule whose request 0 is due `shift` after the start (a shard of
    /// a split load).
    pub fn with_schedule_shift(self, shift: Duration) -> Recorder {
        Recorder {
            schedule_shift: shift,
            ..self
        }
    }

    /// Counts one finished attempt.
    pub fn record(&mut self, c: &Completion) {
        let offset = c.due.saturating_duration_since(self.start);
        let Some(sent) = c.sent else {
            // Never sent: counted like a batch of one (the engine sends batches).
            let before = |t: Duration| u64::from(offset < t);
            self.add_not_sent(c.seq, 1, 1, &mut std::iter::once((offset, 1)), &before);
            return;
        };
        self.total += 1;
        self.body_bytes += c.body_bytes;
        let late = sent.saturating_duration_since(c.due);
        self.lateness.record(micros(late));
        if late > LATE_THRESHOLD {
            self.late += 1;
        }
        // With --max-late, a response later than that is a failure of its own class.
        let too_late = self
            .max_late
            .is_some_and(|max| c.done.saturating_duration_since(c.due) > max);
        let (ok, failure) = match c.outcome {
            Outcome::Status(_) if too_late => {
                let corrected = micros(c.done.saturating_duration_since(c.due));
                self.corrected.record(corrected);
                if let Some(recent) = &mut self.recent {
                    recent.record(corrected);
                }
                self.service
                    .record(micros(c.done.saturating_duration_since(sent)));
                let class = ErrorClass::AnsweredLate;
                self.errors[class.index()][c.connection.index()] += 1;
                let slot = self.timeline.slot_mut(offset);
                slot.add_error(class);
                slot.add_latency(corrected);
                (false, Some(Failure::Error(class)))
            }
            Outcome::Status(status) => {
                let ok = self.ok_codes.contains(status);
                if let Some(n) = self.codes.get_mut(usize::from(status)) {
                    *n += 1;
                }
                let corrected = micros(c.done.saturating_duration_since(c.due));
                self.corrected.record(corrected);
                if let Some(recent) = &mut self.recent {
                    recent.record(corrected);
                }
                if let Some(sent) = c.sent {
                    self.service
                        .record(micros(c.done.saturating_duration_since(sent)));
                }
                let slot = self.timeline.slot_mut(offset);
                slot.add_status(status, ok);
                slot.add_latency(corrected);
                (ok, (!ok).then_some(Failure::Status(status)))
            }
            Outcome::Failed(class) => {
                self.errors[class.index()][c.connection.index()] += 1;
                self.timeline.slot_mut(offset).add_error(class);
                (false, Some(Failure::Error(class)))
            }
        };
        if ok {
            self.ok += 1;
        } else {
            self.failed += 1;
            self.failed_by_connection[c.connection.index()] += 1;
            if let Some(kind) = c.envoy {
                self.envoy[kind.index()] += 1;
            }
        }
        // Phases are few (at most three): the last one that started at or before `offset`.
        if let Some(tally) = self.phases.iter_mut().rev().find(|p| p.start <= offset) {
            tally.total += 1;
            if ok {
                tally.ok += 1;
            } else {
                tally.failed += 1;
            }
            if let (true, Some(v)) = (ok, c.version) {
                match tally.versions.iter_mut().find(|(id, _, _)| *id == v) {
                    Some((_, n, first)) => {
                        *n += 1;
                        *first = (*first).min(offset);
                    }
                    None => tally.versions.push((v, 1, offset)),
                }
            }
        }
        if let (true, Some(v)) = (ok, c.version) {
            self.timeline.slot_mut(offset).add_version(v);
            match self.versions.iter_mut().find(|s| s.version == v) {
                Some(seen) => {
                    seen.count += 1;
                    seen.first = seen.first.min(offset);
                    seen.last = seen.last.max(offset);
                }
                None => self.versions.push(VersionSeen {
                    version: v,
                    count: 1,
                    first: offset,
                    last: offset,
                }),
            }
        }
        self.gaps.add(
            c.seq,
            Mark {
                sent: sent.saturating_duration_since(self.start),
                failure,
                connection: c.connection,
            },
        );
        if c.seq < self.gaps.first_incomplete() {
            // Every request up to this one has finished, so every one due before it has (due
            // times never decrease with the sequence number): the slots that end by its due
            // time are complete.
            self.timeline.seal_before(offset);
        }
        let (answer, class) = match c.outcome {
            Outcome::Status(_) if too_late => (true, Some(ErrorClass::AnsweredLate)),
            Outcome::Status(_) => (true, None),
            Outcome::Failed(class) => (class.is_answer(), Some(class)),
        };
        let next_due = self.next_due();
        self.stalls.finish(
            Finish {
                due: offset,
                done: c.done.saturating_duration_since(self.start),
                ok,
                class,
                connection: c.connection,
            },
            answer,
            next_due,
        );
    }

    /// When the earliest request not yet finished fell (or falls) due, from the start of the
    /// run; `None` for a closed loop.
    fn next_due(&self) -> Option<Duration> {
        let interval = self.gaps.interval();
        (!interval.is_zero()).then(|| {
            let since = Duration::try_from_secs_f64(
                interval.as_secs_f64() * self.gaps.first_incomplete() as f64,
            )
            .unwrap_or(Duration::MAX);
            self.schedule_shift.saturating_add(since)
        })
    }

    /// An attempt began at `at` (the engine tells the first of the run): the target's first
    /// silence starts no earlier (see [`StallDetector::asked`]).
    pub fn asked(&mut self, at: Instant) {
        self.stalls.asked(at.saturating_duration_since(self.start));
    }

    /// How long the target has been silent at `now` with requests waiting for it (see
    /// [`crate::measure::stalls`]), for the live progress line.
    pub fn silent_for(&self, now: Instant) -> Option<Duration> {
        let now = now.saturating_duration_since(self.start);
        if self.next_due().is_some_and(|due| due > now) {
            return None;
        }
        self.stalls.silent_for(now)
    }

    /// The stalls found so far.
    pub fn stalls(&self) -> &StallDetector {
        &self.stalls
    }

    /// Counts a batch of arrivals that were never sent (class `not_sent`): in the totals, the
    /// timeline slots and phases they were due in, exactly, and as done for the gap detector
    /// (they carry no evidence about the target, see [`crate::measure::gaps`]). On no connection. Costs
    /// one step per timeline slot the batch spans, whatever its length.
    pub fn record_not_sent(&mut self, batch: &dyn Unsent) {
        if batch.is_empty() {
            return;
        }
        let width = self.timeline.width();
        self.add_not_sent(
            batch.first_seq(),
            batch.stride(),
            batch.len(),
            &mut batch.by_width(width),
            &|t| batch.count_before(t),
        );
    }

    /// `slots`: `(intended time of the part's first arrival, arrivals)` in time order, each part
    /// within one timeline slot; `before(t)`: how many of them are due before `t`.
    fn add_not_sent(
        &mut self,
        first_seq: u64,
        stride: u64,
        count: u64,
        slots: &mut dyn Iterator<Item = (Duration, u64)>,
        before: &dyn Fn(Duration) -> u64,
    ) {
        self.total = self.total.saturating_add(count);
        self.failed = self.failed.saturating_add(count);
        self.late = self.late.saturating_add(count);
        self.unsent = self.unsent.saturating_add(count);
        self.samples.note(
            ErrorClass::NotSent,
            "its deadline came before a connection was free to send it in time (not sent)",
        );
        for (due, n) in slots {
            self.timeline
                .slot_mut(due)
                .add_errors(ErrorClass::NotSent, n);
        }
        // Phase i holds the requests due in [start_i, start_i+1): few phases, one count each.
        let starts: Vec<Duration> = self.phases.iter().skip(1).map(|p| p.start).collect();
        let mut counted = 0;
        for (i, tally) in self.phases.iter_mut().enumerate() {
            let upto = starts.get(i).map_or(count, |&t| before(t)).max(counted);
            let n = upto - counted;
            tally.total = tally.total.saturating_add(n);
            tally.failed = tally.failed.saturating_add(n);
            counted = upto;
        }
        self.gaps.skip(first_seq, stride, count);
        self.stalls.not_sent(count);
    }

    /// Starts `phase` at `at` from the start of the run: requests intended from then on count in
    /// it. `at` must not be earlier than the intended time of any request already recorded (the
    /// current time always qualifies, and so does a future time).
    pub fn begin_phase(&mut self, phase: Phase, at: Duration) {
        if let Some(last) = self.phases.last_mut() {
            last.end = Some(at);
        }
        self.phases.push(PhaseTally {
            phase,
            start: at,
            end: None,
            total: 0,
            ok: 0,
            failed: 0,
            versions: Vec::new(),
        });
    }

    /// Takes back the last [`Recorder::begin_phase`], for a phase begun in advance that never
    /// came (the warmup failed, or the run was interrupted first): its requests count in the
    /// phase before it, which is open again. Nothing happens with a single phase.
    pub fn withdraw_phase(&mut self) {
        if self.phases.len() < 2 {
            return;
        }
        let Some(last) = self.phases.pop() else {
            return;
        };
        if let Some(prev) = self.phases.last_mut() {
            prev.end = None;
            prev.total += last.total;
            prev.ok += last.ok;
            prev.failed += last.failed;
            for (v, n, first) in last.versions {
                match prev.versions.iter_mut().find(|(id, _, _)| *id == v) {
                    Some((_, count, earliest)) => {
                        *count += n;
                        *earliest = (*earliest).min(first);
                    }
                    None => prev.versions.push((v, n, first)),
                }
            }
        }
    }

    /// Every version that answered, in order of first appearance.
    pub fn versions(&self) -> Vec<VersionSeen> {
        let mut v = self.versions.clone();
        v.sort_by_key(|s| (s.first, s.version));
        v
    }

    /// The cutover: the last time a version other than the final one (the one that answered
    /// last) answered; `None` with fewer than two versions.
    pub fn cutover(&self) -> Option<Duration> {
        let last = self.versions.iter().max_by_key(|s| s.last)?;
        self.versions
            .iter()
            .filter(|s| s.version != last.version)
            .map(|s| s.last)
            .max()
    }

    /// When the final version and an older one both answered: from the final version's first
    /// response to the cutover; `None` for a clean cut or a single version.
    pub fn mixed_window(&self) -> Option<(Duration, Duration)> {
        let last = self.versions.iter().max_by_key(|s| s.last)?;
        let cutover = self.cutover()?;
        (last.first < cutover).then_some((last.first, cutover))
    }

    /// The phases so far, in order.
    pub fn phases(&self) -> &[PhaseTally] {
        &self.phases
    }

    /// The tally of `phase`, if it began.
    pub fn phase(&self, phase: Phase) -> Option<&PhaseTally> {
        self.phases.iter().find(|p| p.phase == phase)
    }

    /// The failure windows.
    pub fn gaps(&self) -> &GapDetector {
        &self.gaps
    }

    /// Starts keeping the corrected latency of the responses from now on, for
    /// [`Recorder::take_recent_p99`] (the progress line calls it as it starts).
    pub fn follow_recent(&mut self) {
        self.recent.get_or_insert_with(Tally::new);
    }

    /// p99 of the corrected latency since the last call (µs; `None` without responses), and
    /// starts a new interval. For the live progress line. Without [`Recorder::follow_recent`]
    /// first, the first call only starts the interval.
    pub fn take_recent_p99(&mut self) -> Option<u64> {
        let recent = self.recent.get_or_insert_with(Tally::new);
        let p99 = (!recent.is_empty()).then(|| recent.value_at_quantile(0.99));
        recent.reset();
        p99
    }

    /// When the run started.
    pub fn start(&self) -> Instant {
        self.start
    }

    /// Which codes count as success.
    pub fn ok_codes(&self) -> &OkCodes {
        &self.ok_codes
    }

    /// Every attempt recorded.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// Successful requests.
    pub fn ok(&self) -> u64 {
        self.ok
    }

    /// Failed requests (bad status or transport failure).
    pub fn failed(&self) -> u64 {
        self.failed
    }

    /// Requests sent more than [`LATE_THRESHOLD`] after their intended time, or never sent.
    pub fn late(&self) -> u64 {
        self.late
    }

    /// Requests never sent (class `not_sent`): no connection was free in time for them to make
    /// their deadlines. In [`Recorder::failed`], not in [`Recorder::errors`] (they were on no
    /// connection).
    pub fn unsent(&self) -> u64 {
        self.unsent
    }

    /// Failed responses that Envoy produced itself (`server: envoy`, `upstream connect error`).
    pub fn envoy(&self) -> impl Iterator<Item = (EnvoyReply, u64)> + '_ {
        EnvoyReply::ALL
            .into_iter()
            .map(|k| (k, self.envoy[k.index()]))
            .filter(|&(_, n)| n > 0)
    }

    /// Response body bytes read.
    pub fn body_bytes(&self) -> u64 {
        self.body_bytes
    }

    /// Latency from intended send time (µs), responses only.
    pub fn corrected(&self) -> &Tally {
        &self.corrected
    }

    /// Service time from actual send (µs), responses only.
    pub fn service(&self) -> &Tally {
        &self.service
    }

    /// Send lateness (µs), sent requests only.
    pub fn lateness(&self) -> &Tally {
        &self.lateness
    }

    /// `(status, count)` for every status seen, by code.
    pub fn codes(&self) -> impl Iterator<Item = (u16, u64)> + '_ {
        self.codes
            .iter()
            .enumerate()
            .filter(|&(_, &n)| n > 0)
            .map(|(code, &n)| (code as u16, n))
    }

    /// `(class, on new connections, on reused connections)` for every class seen on a
    /// connection: every class but `not_sent`, which is [`Recorder::unsent`].
    pub fn errors(&self) -> impl Iterator<Item = (ErrorClass, u64, u64)> + '_ {
        ErrorClass::ALL.into_iter().filter_map(|class| {
            let [new, reused] = self.errors[class.index()];
            (new + reused > 0).then_some((class, new, reused))
        })
    }

    /// The first message of each error class. The engine notes its failures here directly.
    pub fn error_samples(&self) -> &Arc<ErrorSamples> {
        &self.samples
    }

    /// Failing outcomes so far and their counts: status codes that are not a success, then
    /// error classes (requests not sent included), for a breakdown such as `503: 40`.
    pub fn failures(&self) -> impl Iterator<Item = (String, u64)> + '_ {
        self.codes()
            .filter(|&(code, _)| !self.ok_codes.contains(code))
            .map(|(code, n)| (crate::measure::code::Shown(code).to_string(), n))
            .chain(
                self.errors()
                    .map(|(class, new, reused)| (class.to_string(), new + reused)),
            )
            .chain((self.unsent > 0).then(|| (ErrorClass::NotSent.to_string(), self.unsent)))
    }

    /// Failures (any kind) that happened on a new or on a reused connection.
    pub fn failed_on(&self, connection: ConnectionUse) -> u64 {
        self.failed_by_connection[connection.index()]
    }

    /// The timeline.
    pub fn timeline(&self) -> &Timeline {
        &self.timeline
    }

    /// Ends the run at `length` from the start: pads the timeline, closes the last phase and the
    /// last failure window.
    pub fn finish(&mut self, length: Duration) {
        let next_due = self.next_due();
        self.stalls.end(length, next_due);
        self.timeline.extend_to(length);
        if let Some(last) = self.phases.last_mut() {
            last.end.get_or_insert(length);
        }
        self.gaps.finish();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recorder(start: Instant) -> Recorder {
        Recorder::new(
            start,
            Timeline::new(Duration::from_secs(1)),
            OkCodes::default(),
            Phase::Warmup,
            GapDetector::new(Duration::ZERO, Duration::from_millis(1)),
        )
    }

    fn completion(start: Instant, due_ms: u64, outcome: Outcome, took_ms: u64) -> Completion {
        let due = start + Duration::from_millis(due_ms);
        Completion {
            seq: due_ms,
            due,
            sent: Some(due),
            done: due + Duration::from_millis(took_ms),
            outcome,
            connection: ConnectionUse::Reused,
            body_bytes: 3,
            version: None,
            envoy: None,
        }
    }

    #[test]
    fn counts_codes_errors_and_slots() {
        let start = Instant::now();
        let mut r = recorder(start);
        r.record(&completion(start, 10, Outcome::Status(200), 5));
        r.record(&completion(start, 20, Outcome::Status(503), 5));
        r.record(&completion(
            start,
            1500,
            Outcome::Failed(ErrorClass::Reset),
            1,
        ));
        r.record(&Completion {
            sent: None,
            ..completion(start, 7, Outcome::Failed(ErrorClass::NotSent), 0)
        });
        assert_eq!((r.total(), r.ok(), r.failed()), (4, 1, 3));
        assert_eq!(r.codes().collect::<Vec<_>>(), vec![(200, 1), (503, 1)]);
        // Not sent: on no connection, so not among the connection errors.
        assert_eq!(
            r.errors().collect::<Vec<_>>(),
            vec![(ErrorClass::Reset, 0, 1)]
        );
        assert_eq!((r.unsent(), r.late()), (1, 1));
        assert_eq!(r.failed_on(ConnectionUse::Reused), 2);
        assert_eq!(r.failed_on(ConnectionUse::New), 0);
        assert_eq!(r.corrected().len(), 2, "only responses have a latency");
        let slots = r.timeline().slots();
        assert_eq!(slots.len(), 2);
        assert_eq!((slots[0].ok, slots[0].failed), (1, 2));
        assert_eq!(slots[0].errors, vec![(ErrorClass::NotSent, 1)]);
        assert_eq!(slots[1].errors, vec![(ErrorClass::Reset, 1)]);
    }

    #[test]
    fn a_batch_not_sent_is_counted_exactly_in_slots_and_phases() {
        use crate::config::{Qps, Rate};
        use crate::load::schedule::Schedule;
        let start = Instant::now();
        let mut r = recorder(start);
        r.begin_phase(Phase::Steps, Duration::from_millis(1250));
        // 1000 qps: requests 500..2500 are due from 0.5 s to 2.499 s.
        let schedule = Schedule::new(start, Rate::Fixed(Qps::new(1000.0).unwrap()));
        r.record_not_sent(&crate::load::schedule::Batch::new(schedule, 500, 2500));
        assert_eq!(
            (r.total(), r.failed(), r.unsent(), r.late()),
            (2000, 2000, 2000, 2000)
        );
        assert_eq!(r.errors().count(), 0);
        assert_eq!(r.failed_on(ConnectionUse::New), 0);
        let per_slot: Vec<u64> = r.timeline().slots().iter().map(|s| s.failed).collect();
        assert_eq!(per_slot, vec![500, 1000, 500]);
        assert_eq!(
            r.timeline().slots()[1].errors,
            vec![(ErrorClass::NotSent, 1000)]
        );
        let phases: Vec<(u64, u64)> = r.phases().iter().map(|p| (p.total, p.failed)).collect();
        assert_eq!(phases, vec![(750, 750), (1250, 1250)]);
    }

    #[test]
    fn a_slot_is_sealed_once_every_request_due_before_its_end_finished() {
        let start = Instant::now();
        let mut r = recorder(start);
        let at = |seq: u64, due_ms: u64| Completion {
            seq,
            ..completion(start, due_ms, Outcome::Status(200), 5)
        };
        let sealed = |r: &Recorder| -> Vec<bool> {
            r.timeline().slots().iter().map(|s| s.is_sealed()).collect()
        };
        r.record(&at(0, 100));
        // Request 1 (due at 1.2 s) is still out: nothing after it can be sealed.
        r.record(&at(2, 1900));
        r.record(&at(3, 2100));
        assert_eq!(sealed(&r), [false, false, false]);
        // Requests 0 to 3 are done: the slots ending by 1.2 s are complete.
        r.record(&at(1, 1200));
        assert_eq!(sealed(&r), [true, false, false]);
        r.record(&at(4, 2200));
        assert_eq!(sealed(&r), [true, true, false]);
        // A sample for a sealed slot (were the guess ever early) unseals it and counts.
        r.record(&at(5, 600));
        assert_eq!(sealed(&r), [false, true, false]);
        let samples: Vec<u64> = r
            .timeline()
            .slots()
            .iter()
            .map(|s| s.latency().map_or(0, |h| h.len()))
            .collect();
        assert_eq!(samples, [2, 2, 2]);
        assert_eq!(r.timeline().slots()[1].ok, 2);
    }

    #[test]
    fn latency_is_from_intended_time() {
        let start = Instant::now();
        let mut r = recorder(start);
        let due = start;
        let sent = due + Duration::from_millis(900);
        r.record(&Completion {
            seq: 0,
            due,
            sent: Some(sent),
            done: sent + Duration::from_millis(100),
            outcome: Outcome::Status(200),
            connection: ConnectionUse::New,
            body_bytes: 0,
            version: None,
            envoy: None,
        });
        assert!((999_000..=1_001_000).contains(&r.corrected().histogram().max()));
        assert!((99_000..=101_000).contains(&r.service().histogram().max()));
        assert!((899_000..=901_000).contains(&r.lateness().histogram().max()));
        assert_eq!(r.late(), 1);
    }
    #[test]
    fn a_phase_begun_in_advance_counts_from_its_start_and_can_be_withdrawn() {
        let start = Instant::now();
        let mut r = recorder(start);
        // The steps phase is declared before the warmup's requests are in: attribution is by
        // intended time, whatever the order the outcomes arrive in.
        r.begin_phase(Phase::Steps, Duration::from_millis(1000));
        r.record(&completion(start, 1000, Outcome::Status(503), 1));
        r.record(&completion(start, 999, Outcome::Status(200), 30));
        let tallies = |r: &Recorder| -> Vec<(Phase, u64, u64)> {
            r.phases()
                .iter()
                .map(|p| (p.phase, p.total, p.failed))
                .collect()
        };
        assert_eq!(tallies(&r), [(Phase::Warmup, 1, 0), (Phase::Steps, 1, 1)]);
        assert_eq!(
            r.phase(Phase::Warmup).and_then(|p| p.end),
            Some(Duration::from_millis(1000))
        );
        // The steps never came: their requests count in the warmup again, which is open.
        r.withdraw_phase();
        assert_eq!(tallies(&r), [(Phase::Warmup, 2, 1)]);
        assert_eq!(r.phase(Phase::Warmup).and_then(|p| p.end), None);
        r.withdraw_phase();
        assert_eq!(tallies(&r), [(Phase::Warmup, 2, 1)], "a single phase stays");
    }
}
