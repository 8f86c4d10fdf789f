//! Stalls: the target answering nothing while requests wait for it.
//!
//! Definitions (also in README):
//!
//! - An **answer** is anything the target said: an HTTP status (success or failure), a refused
//!   connection, a reset, a close, bytes that are not HTTP, a TLS alert. A timeout, a connect
//!   timeout or a request never sent is not an answer: it is gapless's own clock running out.
//! - A **silence** is an interval of the completion clock (when answers arrived) in which no
//!   answer arrived while requests were due or in flight: it starts at the last answer, or when
//!   the earliest request still unanswered then fell due if that was later, and it ends at the
//!   next answer (or at the end of the load, `open`). The target cannot be silent before it was
//!   asked anything: the run's first silence starts when its first attempt began
//!   ([`StallDetector::asked`]), not at the start of the run, so gapless itself starting late
//!   (a busy machine) is not the target's silence.
//! - A **stall** is a silence of at least [`STALL_FLOOR`]. Each one counts the requests that
//!   waited across it (intended before its end, finished after its start): `held` (they
//!   succeeded in the end, late) and `failed` (they timed out or were never sent), and what the
//!   connections did during it: connect attempts that timed out (SYNs unanswered), and requests
//!   that timed out on a connection that had been accepted (new) or kept alive (reused).
//!
//! Stalls are true whether the held requests fail, time out or wait in the backlog: a target
//! that answers nothing for 1.5 s is a stall even when every request is answered in the end
//! within its timeout. The list is capped at [`MAX_STALLS`]; the totals and the longest silence
//! count everything. Memory is bounded: a few counters per stall.

use std::time::Duration;

use super::outcome::{ConnectionUse, ErrorClass};

/// The shortest silence listed as a stall.
pub const STALL_FLOOR: Duration = Duration::from_millis(200);

/// Most stalls kept in the list; later ones are only counted.
pub const MAX_STALLS: usize = 1000;

/// A stall (see the module documentation).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stall {
    /// When the silence began, from the start of the run.
    pub start: Duration,
    /// When the next answer arrived (or the load ended: `open`).
    pub end: Duration,
    /// Requests that waited across it and succeeded in the end.
    pub held: u64,
    /// Requests that waited across it and failed (timed out, or were never sent).
    pub failed: u64,
    /// Connect attempts that timed out during it: SYNs nothing answered.
    pub connect_timeouts: u64,
    /// Requests that timed out during it on a connection opened for them: accepted, never
    /// answered.
    pub unanswered_new: u64,
    /// Requests that timed out during it on a kept-alive connection.
    pub unanswered_reused: u64,
    /// The load ended before an answer did.
    pub open: bool,
}

impl Stall {
    /// `end - start`.
    pub fn duration(&self) -> Duration {
        self.end.saturating_sub(self.start)
    }
}

/// One finished request, as the stall detector needs it.
#[derive(Clone, Copy, Debug)]
pub struct Finish {
    /// Intended send time, from the start of the run.
    pub due: Duration,
    /// When it finished, from the start of the run.
    pub done: Duration,
    /// True when it succeeded.
    pub ok: bool,
    /// Its failure class, for a transport failure.
    pub class: Option<ErrorClass>,
    /// The connection it used.
    pub connection: ConnectionUse,
}

/// Finds the stalls of one run as its requests finish, in bounded memory.
#[derive(Clone, Debug, Default)]
pub struct StallDetector {
    /// When the current silence began; `None` while nothing has been due.
    silent_since: Option<Duration>,
    /// What the current silence has seen so far (its `start` and `end` are not set yet).
    current: Stall,
    stalls: Vec<Stall>,
    total: u64,
    /// The longest silence of the run, whatever its length.
    longest_silence: Duration,
    longest: Option<Longest>,
    /// Whether the target has answered yet.
    answered: bool,
}

/// Where the longest stall is.
#[derive(Clone, Debug)]
enum Longest {
    /// In the list, at this index.
    Listed(usize),
    /// Beyond the list's cap.
    Unlisted(Stall),
}

impl StallDetector {
    /// A detector for a run; its first silence starts when the run's first attempt began
    /// ([`StallDetector::asked`]).
    pub fn new() -> StallDetector {
        StallDetector::default()
    }

    /// An attempt began at `at` (from the start of the run): the first one of an engine thread
    /// is enough. Before the target's first answer, the silence starts at the earliest attempt
    /// (a target cannot be silent before it was asked); after it, this changes nothing.
    pub fn asked(&mut self, at: Duration) {
        if !self.answered {
            self.silent_since = Some(self.silent_since.map_or(at, |since| since.min(at)));
        }
    }

    /// Adds a finished request. `answer` is true when the target said something (see the module
    /// documentation); `next_due` is when the earliest request not yet finished fell (or falls)
    /// due, once this one is counted (`None` for a closed loop, where some request is always in
    /// flight).
    pub fn finish(&mut self, f: Finish, answer: bool, next_due: Option<Duration>) {
        if answer {
            self.close(f.done, false);
            self.silent_since = Some(next_due.map_or(f.done, |due| due.max(f.done)));
            self.answered = true;
        }
        self.attribute(&f);
    }

    /// Adds requests never sent (they fail without being sent: no answer, no connection).
    pub fn not_sent(&mut self, count: u64) {
        if self.silent_since.is_some() {
            self.current.failed = self.current.failed.saturating_add(count);
        }
    }

    /// The end of the load, `end` from the start of the run: a silence still going on since a
    /// time before it, with requests due in it (`next_due` before `end`), is an open stall.
    pub fn end(&mut self, end: Duration, next_due: Option<Duration>) {
        if next_due.is_none_or(|due| due < end) {
            self.close(end, true);
        }
        self.silent_since = None;
    }

    /// How long the target has been silent at `now` (from the start of the run), with requests
    /// waiting: for the live progress line.
    pub fn silent_for(&self, now: Duration) -> Option<Duration> {
        self.silent_since
            .map(|since| now.saturating_sub(since))
            .filter(|d| !d.is_zero())
    }

    /// Ends the current silence at `end`; lists it if it is a stall.
    fn close(&mut self, end: Duration, open: bool) {
        let Some(start) = self.silent_since else {
            return;
        };
        let current = std::mem::take(&mut self.current);
        if end <= start {
            // An answer that finished before the silence began (answers are counted in the
            // order they are read, not quite the order they arrived).
            self.current = current;
            return;
        }
        let silence = end - start;
        self.longest_silence = self.longest_silence.max(silence);
        if silence < STALL_FLOOR {
            return;
        }
        let stall = Stall {
            start,
            end,
            open,
            ..current
        };
        self.total += 1;
        let longer = self.longest().is_none_or(|l| silence > l.duration());
        if self.stalls.len() < MAX_STALLS {
            if longer {
                self.longest = Some(Longest::Listed(self.stalls.len()));
            }
            self.stalls.push(stall);
        } else if longer {
            self.longest = Some(Longest::Unlisted(stall));
        }
    }

    /// Counts `f` in the current silence, and in every listed stall it waited across.
    fn attribute(&mut self, f: &Finish) {
        let count = |stall: &mut Stall| {
            if f.ok {
                stall.held += 1;
                return;
            }
            stall.failed += 1;
            match (f.class, f.connection) {
                (Some(ErrorClass::ConnectTimeout), _) => stall.connect_timeouts += 1,
                (Some(ErrorClass::Timeout), ConnectionUse::New) => stall.unanswered_new += 1,
                (Some(ErrorClass::Timeout), ConnectionUse::Reused) => {
                    stall.unanswered_reused += 1;
                }
                _ => {}
            }
        };
        if self.silent_since.is_some_and(|since| f.done > since) {
            count(&mut self.current);
        }
        // Listed stalls are in time order: only the last few can have ended after `due`. Those
        // that ended before `f` finished count it here (the others, in `current`, did).
        let waited = |stall: &Stall| stall.end > f.due && f.done >= stall.end;
        for stall in self.stalls.iter_mut().rev() {
            if stall.end <= f.due {
                break;
            }
            if waited(stall) {
                count(stall);
            }
        }
        if let Some(Longest::Unlisted(stall)) = &mut self.longest
            && waited(stall)
        {
            count(stall);
        }
    }

    /// The listed stalls, in time order (at most [`MAX_STALLS`]).
    pub fn stalls(&self) -> &[Stall] {
        &self.stalls
    }

    /// Every stall found.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// The longest silence of the run, listed as a stall or not (zero if none).
    pub fn longest_silence(&self) -> Duration {
        self.longest_silence
    }

    /// The longest stall, if any.
    pub fn longest(&self) -> Option<&Stall> {
        match &self.longest {
            Some(Longest::Listed(i)) => self.stalls.get(*i),
            Some(Longest::Unlisted(stall)) => Some(stall),
            None => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn ok(due: u64, done: u64) -> Finish {
        Finish {
            due: MS * due as u32,
            done: MS * done as u32,
            ok: true,
            class: None,
            connection: ConnectionUse::Reused,
        }
    }

    fn timed_out(due: u64, done: u64, connection: ConnectionUse) -> Finish {
        Finish {
            ok: false,
            class: Some(ErrorClass::Timeout),
            connection,
            ..ok(due, done)
        }
    }

    /// A detector for a run whose first attempt began at its start.
    fn detector() -> StallDetector {
        let mut d = StallDetector::new();
        d.asked(Duration::ZERO);
        d
    }

    /// 100 req/s (one due every 10 ms), answered in 1 ms.
    fn steady(d: &mut StallDetector, from: u64, to: u64) {
        for k in from..to {
            d.finish(
                ok(k * 10, k * 10 + 1),
                true,
                Some(MS * ((k + 1) * 10) as u32),
            );
        }
    }

    #[test]
    fn a_steady_target_has_short_silences_and_no_stall() {
        let mut d = detector();
        steady(&mut d, 0, 100);
        d.end(MS * 1000, Some(MS * 1000));
        assert!(d.stalls().is_empty());
        assert_eq!(d.total(), 0);
        assert_eq!(
            d.longest_silence(),
            MS,
            "each request waits 1 ms for its answer"
        );
    }

    #[test]
    fn a_silence_holds_the_requests_due_in_it() {
        let mut d = detector();
        steady(&mut d, 0, 10);
        // Requests due at 100..600 ms are answered together at 650 ms (held); the ones due at
        // 600..1000 ms are answered on time.
        for k in 10..60 {
            d.finish(ok(k * 10, 650), true, Some(MS * ((k + 1) * 10) as u32));
        }
        steady(&mut d, 60, 100);
        d.end(MS * 1000, Some(MS * 1000));
        assert_eq!(d.total(), 1);
        let s = &d.stalls()[0];
        assert_eq!((s.start, s.end), (MS * 100, MS * 650));
        assert_eq!((s.held, s.failed), (50, 0));
        assert_eq!(d.longest(), Some(s));
        assert_eq!(d.longest_silence(), MS * 550);
    }

    #[test]
    fn timeouts_do_not_end_a_silence_and_say_how_the_connections_behaved() {
        let mut d = detector();
        steady(&mut d, 0, 10);
        // Silent from 100 ms: two requests time out on kept-alive connections, one on a new
        // connection, one connect times out; the target answers again at 2000 ms.
        d.finish(timed_out(100, 1100, ConnectionUse::Reused), false, None);
        d.finish(timed_out(110, 1110, ConnectionUse::Reused), false, None);
        d.finish(timed_out(120, 1120, ConnectionUse::New), false, None);
        d.finish(
            Finish {
                class: Some(ErrorClass::ConnectTimeout),
                connection: ConnectionUse::New,
                ..timed_out(130, 1130, ConnectionUse::New)
            },
            false,
            None,
        );
        d.not_sent(5);
        d.finish(ok(140, 2000), true, Some(MS * 2010));
        d.end(MS * 2100, Some(MS * 2100));
        let s = &d.stalls()[0];
        assert_eq!((s.start, s.end, s.open), (MS * 100, MS * 2000, false));
        assert_eq!((s.held, s.failed), (1, 9));
        assert_eq!(
            (s.connect_timeouts, s.unanswered_new, s.unanswered_reused),
            (1, 1, 2)
        );
    }

    #[test]
    fn a_silence_at_the_end_of_the_load_is_an_open_stall() {
        let mut d = detector();
        steady(&mut d, 0, 50);
        d.end(MS * 1000, Some(MS * 500));
        let s = &d.stalls()[0];
        assert_eq!((s.start, s.end, s.open), (MS * 500, MS * 1000, true));
        // Nothing due: no stall.
        let mut d = detector();
        steady(&mut d, 0, 50);
        d.end(MS * 500, Some(MS * 500));
        assert!(d.stalls().is_empty());
    }

    #[test]
    fn a_low_rate_is_not_a_silence_between_its_requests() {
        // One request a second, answered in 5 ms: nothing waits between them.
        let mut d = detector();
        for k in 0..10u64 {
            d.finish(
                ok(k * 1000, k * 1000 + 5),
                true,
                Some(MS * ((k + 1) * 1000) as u32),
            );
        }
        d.end(MS * 10_000, Some(MS * 10_000));
        assert!(d.stalls().is_empty());
        assert_eq!(d.longest_silence(), MS * 5);
    }

    #[test]
    fn the_list_is_capped_but_the_count_is_not() {
        let mut d = detector();
        let mut t = 0u64;
        for _ in 0..(MAX_STALLS + 5) {
            d.finish(ok(t, t + 300), true, Some(MS * (t + 300) as u32));
            t += 300;
        }
        assert_eq!(d.stalls().len(), MAX_STALLS);
        assert_eq!(d.total(), (MAX_STALLS + 5) as u64);
    }

    #[test]
    fn a_client_that_starts_late_does_not_make_the_target_silent() {
        // gapless sent nothing for its first 264 ms (a busy machine), then sent the 27 requests
        // due by then at once, answered 1 ms later. Nothing was asked before: no stall.
        let mut d = StallDetector::new();
        assert_eq!(d.silent_for(MS * 100), None, "nothing asked yet");
        d.asked(MS * 264);
        for k in 0..27 {
            d.finish(ok(k * 10, 265), true, Some(MS * ((k + 1) * 10) as u32));
        }
        steady(&mut d, 27, 100);
        d.end(MS * 1000, Some(MS * 1000));
        assert!(d.stalls().is_empty(), "{:?}", d.stalls());
        assert_eq!(d.longest_silence(), MS);

        // Engine threads report their first attempt in any order: the earliest counts, and only
        // before the first answer.
        let mut d = StallDetector::new();
        d.asked(MS * 30);
        d.asked(MS * 10);
        d.finish(ok(0, 40), true, Some(MS * 10));
        d.asked(MS * 45);
        d.finish(ok(10, 700), true, Some(MS * 20));
        d.end(MS * 800, Some(MS * 800));
        assert_eq!(d.longest_silence(), MS * 660);
        let s = &d.stalls()[0];
        assert_eq!((s.start, s.end), (MS * 40, MS * 700));

        // A target silent from the first attempt on is a stall from that attempt.
        let mut d = StallDetector::new();
        d.asked(MS * 5);
        d.finish(ok(0, 600), true, Some(MS * 10));
        d.end(MS * 1000, Some(MS * 1000));
        let s = &d.stalls()[0];
        assert_eq!((s.start, s.end, s.held), (MS * 5, MS * 600, 1));
    }
}
