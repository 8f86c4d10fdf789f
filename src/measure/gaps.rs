//! Failure windows and availability gaps, found while the load runs, with bounded state.
//!
//! Definitions (also in README):
//!
//! - Requests are taken in the order of their intended send time (their sequence number). A
//!   **failure window** is a maximal run of failed requests in that order. Two windows closer
//!   than the merge distance (`--merge-gap`, default 0: never) merge into one, and the successes
//!   between them count as `ok` inside it.
//! - Its **boundaries are actual send times**, because when an outage began is a fact about the
//!   target, not about the schedule (latency is still measured from the intended time): the
//!   outage began after the last success before it was sent and no later than the first failure
//!   was sent, so a window starts when its first failure was sent, and
//!   [`Window::start_uncertainty`] is how long before that the last success was sent. It ended
//!   after its last failure was sent and no later than the next success was sent: the window
//!   ends when that success was sent, and [`Window::end_uncertainty`] is how long after its last
//!   failure. A window still open when the load stops ends one inter-request interval after its
//!   last failure was sent.
//! - An **availability gap** is a window with no success inside it (`ok == 0`).
//! - **Requests never sent carry no evidence about the target** (`not_sent`: no connection was
//!   free in time): they neither open, extend, split nor close a window, and are not counted in
//!   one; they count in the run's totals and the timeline. The detector only needs to know that
//!   their sequence numbers are done ([`GapDetector::skip`]), which it keeps as runs, so a
//!   billion of them cost what one does.
//!
//! Completions arrive out of order (a slow request finishes after a fast later one), so the
//! detector keeps a reorder buffer indexed by sequence number that only spans the requests
//! still in flight (at most `qps × timeout` entries, capped at [`MAX_SPAN`]), and the runs of
//! requests not sent ahead of it (capped at [`MAX_SKIP_RUNS`]); the list of windows is capped at
//! [`MAX_WINDOWS`] while the totals keep counting.

use std::collections::VecDeque;
use std::time::Duration;

use crate::measure::outcome::{ConnectionUse, ErrorClass};
use crate::measure::timeline::Timeline;

/// Most windows kept in the list; later ones are only counted in the totals.
pub const MAX_WINDOWS: usize = 1000;

/// Widest reorder span (sequence numbers between the oldest unfinished request and the newest
/// finished one). Beyond it the oldest entries are processed without waiting for missing ones.
pub const MAX_SPAN: usize = 1 << 18;

/// Most runs of requests not sent kept ahead of the reorder buffer; beyond it the buffer is
/// moved past the oldest run without waiting for missing requests before it.
pub const MAX_SKIP_RUNS: usize = 1 << 16;

/// What went wrong with one failed request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// A response whose status is not in the success list.
    Status(u16),
    /// A transport failure.
    Error(ErrorClass),
}

/// One finished (sent) request, as the detector needs it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mark {
    /// Actual send time (when the attempt began, connect included), from the start of the run.
    pub sent: Duration,
    /// `None` for a success.
    pub failure: Option<Failure>,
    /// The connection the request used.
    pub connection: ConnectionUse,
}

/// A failure window (see the module documentation).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Window {
    /// When the first failure was sent, from the start of the run.
    pub start: Duration,
    /// When the success that ended it was sent (or see [`Window::open`]).
    pub end: Duration,
    /// How long before [`Window::start`] the last success before the window was sent: the
    /// outage began within `[start - start_uncertainty, start]`. `None` when nothing succeeded
    /// before it (it may have begun before the run).
    pub start_uncertainty: Option<Duration>,
    /// How long after the window's last failure was sent the success that ended it was sent:
    /// the outage ended within `[end - end_uncertainty, end]`. `None` for an open window.
    pub end_uncertainty: Option<Duration>,
    /// Failed requests inside.
    pub failed: u64,
    /// Successful requests inside (only after a merge).
    pub ok: u64,
    /// Failing status codes and their counts, by code.
    pub codes: Vec<(u16, u64)>,
    /// Transport failures per class, indexed by [`ErrorClass::index`].
    pub errors: [u64; ErrorClass::COUNT],
    /// Failures on connections opened for the request.
    pub failed_on_new: u64,
    /// Failures on kept-alive connections.
    pub failed_on_reused: u64,
    /// True when the load stopped before a success closed the window.
    pub open: bool,
    /// Sequence number of its first failure (in sequence order).
    pub first_seq: u64,
    /// Sequence number of the success that ended it; `None` for an open window.
    pub end_seq: Option<u64>,
    /// The latest send time of a failure inside.
    last_failure: Duration,
    /// The latest send time of a success before the window opened.
    ok_before: Option<Duration>,
}

impl Window {
    fn new(seq: u64, sent: Duration, ok_before: Option<Duration>) -> Window {
        Window {
            first_seq: seq,
            end_seq: None,
            start: sent,
            end: sent,
            start_uncertainty: None,
            end_uncertainty: None,
            failed: 0,
            ok: 0,
            codes: Vec::new(),
            errors: [0; ErrorClass::COUNT],
            failed_on_new: 0,
            failed_on_reused: 0,
            open: false,
            last_failure: sent,
            ok_before,
        }
    }

    fn add_failure(&mut self, mark: &Mark, failure: Failure) {
        self.failed += 1;
        // Sends are not strictly in sequence order (threads, preemption): keep the extremes.
        self.start = self.start.min(mark.sent);
        self.last_failure = self.last_failure.max(mark.sent);
        match mark.connection {
            ConnectionUse::New => self.failed_on_new += 1,
            ConnectionUse::Reused => self.failed_on_reused += 1,
        }
        match failure {
            Failure::Status(code) => match self.codes.binary_search_by_key(&code, |&(c, _)| c) {
                Ok(i) => self.codes[i].1 += 1,
                Err(i) => self.codes.insert(i, (code, 1)),
            },
            Failure::Error(class) => self.errors[class.index()] += 1,
        }
    }

    /// `end - start`.
    pub fn duration(&self) -> Duration {
        self.end.saturating_sub(self.start)
    }

    /// True when nothing succeeded inside: an availability gap.
    pub fn is_gap(&self) -> bool {
        self.ok == 0
    }
}

/// Totals over every window, including those beyond [`MAX_WINDOWS`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    /// Failure windows found.
    pub windows: u64,
    /// Of which availability gaps.
    pub gaps: u64,
    /// Sum of the gaps' durations: time without service.
    pub gap_time: Duration,
    /// The longest gap (the first one, among equals).
    pub longest_gap: Option<Window>,
}

/// Streams finished requests in any order and finds the windows.
#[derive(Clone, Debug)]
pub struct GapDetector {
    merge_gap: Duration,
    interval: Duration,
    /// Sequence number of `pending[0]`.
    next: u64,
    pending: VecDeque<Option<Mark>>,
    /// Requests not sent, as runs of local indices `(from, to)` per engine shard (indexed by
    /// `seq % stride`), sorted, at or ahead of `next`.
    skips: Vec<VecDeque<(u64, u64)>>,
    /// The number of shards (the stride of their sequence numbers); 0 until the first skip.
    stride: u64,
    /// Runs in `skips`, all shards together.
    skip_runs: usize,
    current: Option<Window>,
    /// Set once a success followed the current window: when it was sent, the successes since,
    /// and its sequence number.
    closing: Option<(Duration, u64, u64)>,
    /// The latest send time of a success processed so far.
    last_ok: Option<Duration>,
    windows: Vec<Window>,
    totals: Totals,
}

impl GapDetector {
    /// A detector merging windows closer than `merge_gap`. `interval` is the time between two
    /// intended sends (`1 / qps`; zero for a closed loop), used to end a window the load outlived.
    pub fn new(merge_gap: Duration, interval: Duration) -> GapDetector {
        GapDetector {
            merge_gap,
            interval,
            next: 0,
            pending: VecDeque::new(),
            skips: Vec::new(),
            stride: 0,
            skip_runs: 0,
            current: None,
            closing: None,
            last_ok: None,
            windows: Vec::new(),
            totals: Totals::default(),
        }
    }

    /// The time between two intended sends (zero for a closed loop).
    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// The sequence number of the earliest request not yet added or skipped.
    pub fn first_incomplete(&self) -> u64 {
        self.next
    }

    /// Adds the sent request with sequence number `seq`. Requests may arrive in any order; each
    /// sequence number at most once (and never one also given to [`GapDetector::skip`]).
    pub fn add(&mut self, seq: u64, mark: Mark) {
        if seq < self.next {
            // Only after a cap forced the buffer forward: process it as it comes.
            self.process(seq, &mark);
            return;
        }
        if seq - self.next >= MAX_SPAN as u64 {
            self.force_to(seq - (MAX_SPAN as u64 - 1));
        }
        // Below MAX_SPAN now: fits a usize.
        let index = usize::try_from(seq - self.next).unwrap_or(MAX_SPAN - 1);
        if index >= self.pending.len() {
            self.pending.resize(index + 1, None);
        }
        self.pending[index] = Some(mark);
        self.drain();
    }

    /// Marks `count` requests as never sent: sequence numbers `first`, `first + stride`, ...
    /// (one engine shard's consecutive arrivals; `stride` is the number of shards and is the
    /// same for every call). They carry no evidence about the target: they only stop the
    /// detector waiting for them. Costs the same whatever `count`.
    pub fn skip(&mut self, first: u64, stride: u64, count: u64) {
        if count == 0 || stride == 0 {
            return;
        }
        // One sequence number fits any stride.
        let stride = if count == 1 && self.stride != 0 {
            self.stride
        } else {
            stride
        };
        if self.stride == 0 {
            self.stride = stride;
            self.skips = vec![VecDeque::new(); usize::try_from(stride).unwrap_or(1)];
        }
        if self.stride != stride {
            // Not from one engine (whose shards share one stride): left to the caps and
            // `finish`, like requests that never finished.
            return;
        }
        let phase = usize::try_from(first % stride).unwrap_or(0);
        let from = first / stride;
        let to = from.saturating_add(count);
        let runs = &mut self.skips[phase];
        // Batches of one shard are claimed in order but may be recorded out of order.
        let at = runs.partition_point(|&(_, end)| end <= from);
        let joins_before = at > 0 && runs[at - 1].1 == from;
        let joins_after = runs.get(at).is_some_and(|&(start, _)| start == to);
        match (joins_before, joins_after) {
            (true, true) => {
                runs[at - 1].1 = runs[at].1;
                runs.remove(at);
                self.skip_runs -= 1;
            }
            (true, false) => runs[at - 1].1 = to,
            (false, true) => runs[at].0 = from,
            (false, false) => {
                runs.insert(at, (from, to));
                self.skip_runs += 1;
            }
        }
        while self.skip_runs > MAX_SKIP_RUNS {
            // The oldest run's end, over every shard: move past it without waiting.
            let oldest = self
                .skips
                .iter()
                .enumerate()
                .filter_map(|(p, runs)| {
                    runs.front()
                        .map(|&(_, end)| end.saturating_mul(stride).saturating_add(p as u64))
                })
                .min();
            match oldest {
                Some(end) if end > self.next => self.force_to(end),
                _ => break,
            }
            self.prune_skips();
        }
        self.drain();
    }

    /// Processes the buffer from its front while the next request is known.
    fn drain(&mut self) {
        loop {
            match self.pending.front() {
                Some(Some(_)) => self.advance(),
                _ => {
                    if !self.jump() {
                        break;
                    }
                }
            }
        }
    }

    /// Moves `next` past the requests not sent that start at it, as far as every shard's runs
    /// reach. False if `next` is not such a request.
    fn jump(&mut self) -> bool {
        if self.skip_runs == 0 {
            return false;
        }
        let stride = self.stride;
        let mut limit = u64::MAX;
        for i in 0..stride {
            let Some(seq) = self.next.checked_add(i) else {
                break;
            };
            let phase = (seq % stride) as usize;
            let local = seq / stride;
            let runs = &mut self.skips[phase];
            while runs.front().is_some_and(|&(_, end)| end <= local) {
                runs.pop_front();
                self.skip_runs -= 1;
            }
            match runs.front() {
                Some(&(from, end)) if from <= local => {
                    limit = limit.min(end.saturating_mul(stride).saturating_add(phase as u64));
                }
                _ => limit = limit.min(seq),
            }
        }
        if limit <= self.next {
            return false;
        }
        let steps = usize::try_from(limit - self.next).unwrap_or(usize::MAX);
        let popped = steps.min(self.pending.len());
        // Nothing there (a request is either sent or not); processed all the same if it were.
        let first = self.next;
        let marks: Vec<(u64, Mark)> = (first..)
            .zip(self.pending.drain(..popped))
            .filter_map(|(seq, mark)| mark.map(|m| (seq, m)))
            .collect();
        for (seq, mark) in &marks {
            self.process(*seq, mark);
        }
        self.next = limit;
        true
    }

    /// Moves the buffer forward to `target` without waiting for missing requests (a cap was
    /// reached); what it held before is processed. Costs at most the buffer's length.
    fn force_to(&mut self, target: u64) {
        while self.next < target {
            if self.pending.is_empty() {
                self.next = target;
                break;
            }
            self.advance();
        }
        self.prune_skips();
    }

    /// Drops the runs that `next` has passed.
    fn prune_skips(&mut self) {
        let (next, stride) = (self.next, self.stride);
        for (phase, runs) in self.skips.iter_mut().enumerate() {
            // Local indices of this phase below `next`.
            let passed = if next <= phase as u64 {
                0
            } else {
                (next - phase as u64 - 1) / stride + 1
            };
            while let Some(run) = runs.front_mut() {
                if run.1 <= passed {
                    runs.pop_front();
                    self.skip_runs -= 1;
                } else {
                    run.0 = run.0.max(passed);
                    break;
                }
            }
        }
    }

    /// Pops the oldest entry of the reorder buffer (processing it if it is there).
    fn advance(&mut self) {
        if let Some(Some(mark)) = self.pending.pop_front() {
            self.process(self.next, &mark);
        }
        self.next += 1;
    }

    fn process(&mut self, seq: u64, mark: &Mark) {
        match mark.failure {
            Some(failure) => {
                if let (Some(_), Some((end, oks, _))) = (&self.current, self.closing) {
                    if mark.sent.saturating_sub(end) < self.merge_gap {
                        if let Some(w) = &mut self.current {
                            w.ok += oks;
                        }
                        self.closing = None;
                    } else {
                        self.close_current();
                    }
                }
                let ok_before = self.last_ok;
                self.current
                    .get_or_insert_with(|| Window::new(seq, mark.sent, ok_before))
                    .add_failure(mark, failure);
            }
            None => {
                self.last_ok = Some(self.last_ok.map_or(mark.sent, |t| t.max(mark.sent)));
                if self.current.is_none() {
                    return;
                }
                let (end, oks, _) = self.closing.get_or_insert((mark.sent, 0, seq));
                *oks += 1;
                if mark.sent.saturating_sub(*end) >= self.merge_gap {
                    self.close_current();
                }
            }
        }
    }

    fn close_current(&mut self) {
        let Some(mut window) = self.current.take() else {
            return;
        };
        match self.closing.take() {
            Some((end, _, end_seq)) => {
                window.end_seq = Some(end_seq);
                window.end = end.max(window.start);
                window.end_uncertainty = Some(end.saturating_sub(window.last_failure));
            }
            None => {
                window.end = window.last_failure.saturating_add(self.interval);
                window.open = true;
            }
        }
        window.start_uncertainty = window.ok_before.map(|t| window.start.saturating_sub(t));
        self.totals.windows += 1;
        if window.is_gap() {
            self.totals.gaps += 1;
            self.totals.gap_time = self.totals.gap_time.saturating_add(window.duration());
            let longer = self
                .totals
                .longest_gap
                .as_ref()
                .is_none_or(|g| window.duration() > g.duration());
            if longer {
                self.totals.longest_gap = Some(window.clone());
            }
        }
        if self.windows.len() < MAX_WINDOWS {
            self.windows.push(window);
        }
    }

    /// Processes everything still buffered (skipping requests that never finished, such as those
    /// cut off by an interruption) and closes the last window.
    pub fn finish(&mut self) {
        while !self.pending.is_empty() {
            self.advance();
        }
        self.skips.iter_mut().for_each(VecDeque::clear);
        self.skip_runs = 0;
        self.close_current();
    }

    /// Windows found so far, in time order (at most [`MAX_WINDOWS`]).
    pub fn windows(&self) -> &[Window] {
        &self.windows
    }

    /// Totals over every window.
    pub fn totals(&self) -> &Totals {
        &self.totals
    }

    /// The merge distance.
    pub fn merge_gap(&self) -> Duration {
        self.merge_gap
    }
}

/// A run of consecutive timeline slots whose p99 latency exceeded the `--slow` threshold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SlowWindow {
    /// Start of the first slow slot, from the start of the run.
    pub start: Duration,
    /// End of the last slow slot.
    pub end: Duration,
    /// The largest slot p99 inside (µs).
    pub p99_us: u64,
}

/// The slow windows of `timeline`: maximal runs of slots whose p99 exceeds `threshold`.
pub fn slow_windows(timeline: &Timeline, threshold: Duration) -> Vec<SlowWindow> {
    let limit = u64::try_from(threshold.as_micros()).unwrap_or(u64::MAX);
    let width = timeline.width();
    let mut found: Vec<SlowWindow> = Vec::new();
    let mut previous_slow = false;
    for (i, slot) in timeline.slots().iter().enumerate() {
        let p99 = slot.latency_quantile_us(0.99).filter(|&p| p > limit);
        let Some(p99) = p99 else {
            previous_slow = false;
            continue;
        };
        let (start, end) = (width * i as u32, width * (i as u32 + 1));
        match found.last_mut() {
            Some(w) if previous_slow => {
                w.end = end;
                w.p99_us = w.p99_us.max(p99);
            }
            _ => found.push(SlowWindow {
                start,
                end,
                p99_us: p99,
            }),
        }
        previous_slow = true;
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn ok(ms: u64) -> Mark {
        Mark {
            sent: MS * ms as u32,
            failure: None,
            connection: ConnectionUse::Reused,
        }
    }

    fn status(ms: u64, code: u16) -> Mark {
        Mark {
            failure: Some(Failure::Status(code)),
            ..ok(ms)
        }
    }

    fn error(ms: u64, class: ErrorClass, connection: ConnectionUse) -> Mark {
        Mark {
            failure: Some(Failure::Error(class)),
            connection,
            ..ok(ms)
        }
    }

    /// One request per millisecond: `pattern[i]` is request i, sent at i ms ('.' ok, '5' a 503,
    /// 'r' a reset on a reused connection, 'c' a refused connect on a new one).
    fn marks(pattern: &str) -> Vec<(u64, Mark)> {
        pattern
            .chars()
            .enumerate()
            .map(|(i, ch)| {
                let ms = i as u64;
                let mark = match ch {
                    '.' => ok(ms),
                    '5' => status(ms, 503),
                    'r' => error(ms, ErrorClass::Reset, ConnectionUse::Reused),
                    'c' => error(ms, ErrorClass::ConnectRefused, ConnectionUse::New),
                    _ => unreachable!("pattern character {ch:?}"),
                };
                (ms, mark)
            })
            .collect()
    }

    fn detect(pattern: &str, merge_ms: u64) -> GapDetector {
        let mut d = GapDetector::new(MS * merge_ms as u32, MS);
        for (seq, mark) in marks(pattern) {
            d.add(seq, mark);
        }
        d.finish();
        d
    }

    fn spans(d: &GapDetector) -> Vec<(u128, u128, u64, u64)> {
        d.windows()
            .iter()
            .map(|w| (w.start.as_millis(), w.end.as_millis(), w.failed, w.ok))
            .collect()
    }

    #[test]
    fn slow_windows_join_consecutive_slow_slots() {
        let mut t = Timeline::new(Duration::from_millis(100));
        for (slot, latency_ms) in [(0, 5), (1, 300), (2, 250), (3, 5), (4, 400)] {
            t.slot_mut(Duration::from_millis(slot * 100))
                .add_latency(latency_ms * 1000);
        }
        let w = slow_windows(&t, Duration::from_millis(200));
        assert_eq!(w.len(), 2);
        assert_eq!((w[0].start, w[0].end), (MS * 100, MS * 300));
        assert!((299_000..=303_000).contains(&w[0].p99_us), "{:?}", w[0]);
        assert_eq!((w[1].start, w[1].end), (MS * 400, MS * 500));
        assert!(slow_windows(&t, Duration::from_secs(1)).is_empty());
    }

    #[test]
    fn clean_run_has_no_windows() {
        let d = detect("..........", 0);
        assert!(d.windows().is_empty());
        assert_eq!(d.totals(), &Totals::default());
    }

    #[test]
    fn window_runs_from_first_failure_to_next_success() {
        let d = detect("...555..r.", 0);
        assert_eq!(spans(&d), vec![(3, 6, 3, 0), (8, 9, 1, 0)]);
        let t = d.totals();
        assert_eq!((t.windows, t.gaps), (2, 2));
        assert_eq!(t.gap_time, MS * 4);
        assert_eq!(t.longest_gap.as_ref().map(|g| g.start), Some(MS * 3));
        assert_eq!(d.windows()[0].codes, vec![(503, 3)]);
        assert_eq!(d.windows()[1].errors[ErrorClass::Reset.index()], 1);
        assert_eq!(d.windows()[1].failed_on_reused, 1);
    }

    #[test]
    fn order_of_arrival_does_not_matter() {
        let pattern = "..55.5...cc.r....";
        let in_order = detect(pattern, 0);
        let mut shuffled = marks(pattern);
        // A deterministic shuffle: reverse blocks of 5.
        for block in shuffled.chunks_mut(5) {
            block.reverse();
        }
        shuffled.reverse();
        let mut d = GapDetector::new(Duration::ZERO, MS);
        for (seq, mark) in shuffled {
            d.add(seq, mark);
        }
        d.finish();
        assert_eq!(d.windows(), in_order.windows());
        assert_eq!(d.totals(), in_order.totals());
        assert_eq!(
            spans(&d),
            vec![(2, 4, 2, 0), (5, 6, 1, 0), (9, 11, 2, 0), (12, 13, 1, 0)]
        );
    }

    #[test]
    fn merge_distance_joins_close_windows_and_counts_the_successes_between() {
        // Windows [2,4) and [5,6) are 1 ms apart; [9,11) is 3 ms after [5,6).
        let pattern = "..55.5...cc....";
        assert_eq!(spans(&detect(pattern, 0)).len(), 3);
        // Closer than 2 ms merges the first two (the gap between them is 1 ms), not the third.
        let d = detect(pattern, 2);
        assert_eq!(spans(&d), vec![(2, 6, 3, 1), (9, 11, 2, 0)]);
        assert!(!d.windows()[0].is_gap());
        assert_eq!(d.totals().gaps, 1);
        // Closer than 4 ms merges all three.
        assert_eq!(spans(&detect(pattern, 4)), vec![(2, 11, 5, 4)]);
        // Exactly the distance does not merge: "closer than".
        assert_eq!(
            spans(&detect(pattern, 3)),
            vec![(2, 6, 3, 1), (9, 11, 2, 0)]
        );
    }

    #[test]
    fn windows_at_the_very_start_and_end() {
        let d = detect("55....5555", 0);
        assert_eq!(spans(&d), vec![(0, 2, 2, 0), (6, 10, 4, 0)]);
        assert!(!d.windows()[0].open);
        assert!(d.windows()[1].open, "the load ended inside it");
        assert_eq!(d.totals().longest_gap.as_ref().map(|g| g.failed), Some(4));
        // All failures: one open window spanning the whole run.
        let d = detect("rrrr", 0);
        assert_eq!(spans(&d), vec![(0, 4, 4, 0)]);
    }

    #[test]
    fn missing_requests_are_skipped_at_finish() {
        // Requests 2 and 3 never finished (interrupted): nothing waits for them forever.
        let mut d = GapDetector::new(Duration::ZERO, MS);
        for (seq, mark) in marks("..555.") {
            if seq != 2 && seq != 3 {
                d.add(seq, mark);
            }
        }
        assert!(d.windows().is_empty(), "still waiting for request 2");
        d.finish();
        assert_eq!(spans(&d), vec![(4, 5, 1, 0)]);
    }

    #[test]
    fn span_cap_bounds_the_buffer() {
        let mut d = GapDetector::new(Duration::ZERO, MS);
        // Request 0 never finishes; far later ones force the buffer forward.
        d.add(MAX_SPAN as u64 + 10, status(5, 503));
        assert!(d.pending.len() <= MAX_SPAN);
        d.add(MAX_SPAN as u64 + 11, ok(6));
        assert!(d.pending.len() <= MAX_SPAN);
        d.finish();
        assert_eq!(spans(&d), vec![(5, 6, 1, 0)]);
    }

    #[test]
    fn boundaries_carry_their_uncertainty() {
        let d = detect("...555..r.", 0);
        let w = &d.windows()[0];
        // The outage began after request 2 (ok) was sent and by the time request 3 was.
        assert_eq!((w.start, w.start_uncertainty), (MS * 3, Some(MS)));
        // It ended after request 5 (the last failure) was sent and by the time 6 was.
        assert_eq!((w.end, w.end_uncertainty), (MS * 6, Some(MS)));
        // Nothing succeeded before a window at the very start; an open one has not ended.
        let d = detect("55..555", 0);
        assert_eq!(d.windows()[0].start_uncertainty, None);
        assert_eq!(d.windows()[0].end_uncertainty, Some(MS * 1));
        assert!(d.windows()[1].open);
        assert_eq!(d.windows()[1].end_uncertainty, None);
        assert_eq!(d.windows()[1].start_uncertainty, Some(MS * 1));
    }

    #[test]
    fn windows_are_bounded_by_send_times_not_due_times() {
        // Requests due every ms but sent later and later (a starved client): request i is sent
        // at 10 × i ms. The target broke between the sends of requests 3 and 4 and recovered
        // between those of 6 and 7.
        let mut d = GapDetector::new(Duration::ZERO, MS);
        for (seq, mark) in marks("....555....") {
            d.add(
                seq,
                Mark {
                    sent: MS * 10 * seq as u32,
                    ..mark
                },
            );
        }
        d.finish();
        let w = &d.windows()[0];
        assert_eq!((w.start, w.end), (MS * 40, MS * 70));
        assert_eq!(
            (w.start_uncertainty, w.end_uncertainty),
            (Some(MS * 10), Some(MS * 10))
        );
        assert_eq!(d.totals().gap_time, MS * 30);
    }

    #[test]
    fn a_window_knows_the_sequence_numbers_of_its_first_failure_and_of_the_success_after() {
        let mut d = GapDetector::new(Duration::ZERO, MS);
        for (seq, mark) in marks("..55.5") {
            d.add(seq, mark);
        }
        d.finish();
        let w = d.windows();
        assert_eq!((w[0].first_seq, w[0].end_seq), (2, Some(4)));
        assert_eq!((w[1].first_seq, w[1].end_seq), (5, None));
        assert!(w[1].open);
    }

    #[test]
    fn sends_out_of_sequence_order_keep_the_earliest_failure_and_latest_success() {
        let mut d = GapDetector::new(Duration::ZERO, MS);
        let at = |ms: u32, failure: Option<Failure>| Mark {
            sent: MS * ms,
            failure,
            connection: ConnectionUse::Reused,
        };
        let f = Some(Failure::Status(503));
        d.add(0, at(10, None));
        d.add(1, at(14, None)); // sent after request 2 (another thread)
        d.add(2, at(12, f)); // the earliest failure
        d.add(3, at(13, f));
        d.add(4, at(20, None));
        d.finish();
        let w = &d.windows()[0];
        assert_eq!((w.start, w.end, w.failed), (MS * 12, MS * 20, 2));
        // The last success was sent after the first failure: no room left before the start.
        assert_eq!(w.start_uncertainty, Some(Duration::ZERO));
        assert_eq!(w.end_uncertainty, Some(MS * 7));
    }

    #[test]
    fn requests_not_sent_neither_open_split_nor_count_in_windows() {
        // 'u' requests were never sent: request 2 alone does not open a window, requests 5 and
        // 6 do not split the one that 4 and 7 belong to, and they are not counted in it.
        let pattern = "..u.5uu5..u";
        let mut d = GapDetector::new(Duration::ZERO, MS);
        for (i, ch) in pattern.chars().enumerate() {
            match ch {
                'u' => d.skip(i as u64, 1, 1),
                '.' => d.add(i as u64, ok(i as u64)),
                _ => d.add(i as u64, status(i as u64, 503)),
            }
        }
        d.finish();
        assert_eq!(spans(&d), vec![(4, 8, 2, 0)]);
    }

    #[test]
    fn a_huge_run_not_sent_costs_what_one_does() {
        // Two shards; shard 0 skipped 2^40 of its arrivals, shard 1 as many: the detector jumps
        // over them at once, in either order of arrival, and is not left waiting.
        let mut d = GapDetector::new(Duration::ZERO, MS);
        let n: u64 = 1 << 40;
        d.add(0, ok(0));
        d.add(1, ok(1));
        d.skip(2, 2, n); // shard 0: seqs 2, 4, ...
        d.skip(3, 2, n); // shard 1: seqs 3, 5, ...
        let after = 2 + 2 * n;
        d.add(after, status(9, 503));
        d.add(after + 1, ok(10));
        assert_eq!(spans(&d), vec![(9, 10, 1, 0)], "nothing left waiting");
        assert!(d.pending.is_empty());
        // Out of order: the later batch of shard 0 first, then the earlier one.
        let mut d = GapDetector::new(Duration::ZERO, MS);
        d.skip(20, 2, n); // shard 0, locals 10..10 + n
        d.skip(1, 2, 11 + n); // shard 1, locals 0..11 + n
        d.skip(0, 2, 10); // shard 0, locals 0..10
        d.add(2 * (10 + n), status(5, 503)); // shard 0, local 10 + n
        d.add(2 * (10 + n) + 2, ok(6)); // shard 0, local 11 + n
        // Seq 2 × (10 + n) + 1 (shard 1, local 10 + n) is covered by its run.
        assert_eq!(spans(&d), vec![(5, 6, 1, 0)]);
    }

    #[test]
    fn skip_runs_are_bounded() {
        let mut d = GapDetector::new(Duration::ZERO, MS);
        // Request 0 never finishes; every other later request is not sent.
        for i in 1..(MAX_SKIP_RUNS as u64 + 100) {
            d.skip(2 * i, 1, 1);
        }
        assert!(d.skip_runs <= MAX_SKIP_RUNS);
        let runs: usize = d.skips.iter().map(VecDeque::len).sum();
        assert_eq!(runs, d.skip_runs);
    }

    #[test]
    fn window_list_is_capped_but_totals_count_everything() {
        let pattern = "5.".repeat(MAX_WINDOWS + 7);
        let d = detect(&pattern, 0);
        assert_eq!(d.windows().len(), MAX_WINDOWS);
        assert_eq!(d.totals().windows, MAX_WINDOWS as u64 + 7);
        assert_eq!(d.totals().gaps, MAX_WINDOWS as u64 + 7);
    }
}
