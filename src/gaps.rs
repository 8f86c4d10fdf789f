//! Failure windows and availability gaps, found while the load runs, with bounded state.
//!
//! Definitions (also in README):
//!
//! - Requests are taken in the order of their intended send time (their sequence number). A
//!   **failure window** is a maximal run of failed requests in that order: it starts at the
//!   intended time of its first failure and ends at the intended time of the next success. Two
//!   windows closer than the merge distance (`--merge-gap`, default 0: never) merge into one, and
//!   the successes between them count as `ok` inside it. A window still open when the load stops
//!   ends one inter-request interval after its last failure.
//! - An **availability gap** is a window with no success inside it (`ok == 0`).
//!
//! Boundaries are exact to one inter-request interval: both ends are intended send times of real
//! requests. Completions arrive out of order (a slow request finishes after a fast later one), so
//! the detector keeps a reorder buffer indexed by sequence number that only spans the requests
//! still in flight (at most `qps × timeout` entries, capped at [`MAX_SPAN`]); the list of windows
//! is capped at [`MAX_WINDOWS`] while the totals keep counting.

use std::collections::VecDeque;
use std::time::Duration;

use crate::outcome::{ConnectionUse, ErrorClass};
use crate::timeline::Timeline;

/// Most windows kept in the list; later ones are only counted in the totals.
pub const MAX_WINDOWS: usize = 1000;

/// Widest reorder span (sequence numbers between the oldest unfinished request and the newest
/// finished one). Beyond it the oldest entries are processed without waiting for missing ones.
pub const MAX_SPAN: usize = 1 << 18;

/// What went wrong with one failed request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// A response whose status is not in the success list.
    Status(u16),
    /// A transport failure.
    Error(ErrorClass),
}

/// One finished request, as the detector needs it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mark {
    /// Intended send time, from the start of the run.
    pub due: Duration,
    /// `None` for a success.
    pub failure: Option<Failure>,
    /// The connection the request used.
    pub connection: ConnectionUse,
}

/// A failure window (see the module documentation).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Window {
    /// Intended send time of the first failure, from the start of the run.
    pub start: Duration,
    /// Intended send time of the success that ended it (or see [`Window::open`]).
    pub end: Duration,
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
    last_failure: Duration,
}

impl Window {
    fn new(due: Duration) -> Window {
        Window {
            start: due,
            end: due,
            failed: 0,
            ok: 0,
            codes: Vec::new(),
            errors: [0; ErrorClass::COUNT],
            failed_on_new: 0,
            failed_on_reused: 0,
            open: false,
            last_failure: due,
        }
    }

    fn add_failure(&mut self, mark: &Mark, failure: Failure) {
        self.failed += 1;
        self.last_failure = self.last_failure.max(mark.due);
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
    current: Option<Window>,
    /// Set once a success followed the current window: its end and the successes since.
    closing: Option<(Duration, u64)>,
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
            current: None,
            closing: None,
            windows: Vec::new(),
            totals: Totals::default(),
        }
    }

    /// Adds the request with sequence number `seq`. Requests may arrive in any order; each
    /// sequence number at most once.
    pub fn add(&mut self, seq: u64, mark: Mark) {
        if seq < self.next {
            // Only after the span cap forced the buffer forward: process it as it comes.
            self.process(&mark);
            return;
        }
        let mut index = usize::try_from(seq - self.next).unwrap_or(usize::MAX);
        while index >= MAX_SPAN {
            self.advance();
            index = usize::try_from(seq - self.next).unwrap_or(usize::MAX);
        }
        if index >= self.pending.len() {
            self.pending.resize(index + 1, None);
        }
        self.pending[index] = Some(mark);
        while let Some(Some(_)) = self.pending.front() {
            self.advance();
        }
    }

    /// Pops the oldest entry of the reorder buffer (processing it if it is there).
    fn advance(&mut self) {
        if let Some(Some(mark)) = self.pending.pop_front() {
            self.process(&mark);
        }
        self.next += 1;
    }

    fn process(&mut self, mark: &Mark) {
        match mark.failure {
            Some(failure) => {
                if let (Some(_), Some((end, oks))) = (&self.current, self.closing) {
                    if mark.due.saturating_sub(end) < self.merge_gap {
                        if let Some(w) = &mut self.current {
                            w.ok += oks;
                        }
                        self.closing = None;
                    } else {
                        self.close_current();
                    }
                }
                self.current
                    .get_or_insert_with(|| Window::new(mark.due))
                    .add_failure(mark, failure);
            }
            None => {
                if self.current.is_none() {
                    return;
                }
                let (end, oks) = self.closing.get_or_insert((mark.due, 0));
                *oks += 1;
                if mark.due.saturating_sub(*end) >= self.merge_gap {
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
            Some((end, _)) => window.end = end,
            None => {
                window.end = window.last_failure + self.interval;
                window.open = true;
            }
        }
        self.totals.windows += 1;
        if window.is_gap() {
            self.totals.gaps += 1;
            self.totals.gap_time += window.duration();
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
            due: MS * ms as u32,
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

    /// One request per millisecond: `pattern[i]` is request i, due at i ms ('.' ok, '5' a 503,
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
    fn window_list_is_capped_but_totals_count_everything() {
        let pattern = "5.".repeat(MAX_WINDOWS + 7);
        let d = detect(&pattern, 0);
        assert_eq!(d.windows().len(), MAX_WINDOWS);
        assert_eq!(d.totals().windows, MAX_WINDOWS as u64 + 7);
        assert_eq!(d.totals().gaps, MAX_WINDOWS as u64 + 7);
    }
}
