//! The dispatcher: releases due arrivals and hands each to exactly one connection worker.
//!
//! One pacer task per engine shard ([`Dispatcher::pace`]) advances `released` as arrivals fall
//! due; workers claim indices below it with a compare-and-swap. The backlog (due but not yet
//! claimed, because every connection is busy) is the integer `released - next`: it costs no
//! memory however long the target stalls. Nothing is burst to "catch up" except arrivals that
//! really are due.
//!
//! The pacer sleeps on a [`PreciseTimer`] (tokio's timer would add up to a millisecond of
//! lateness) and coalesces wake-ups: it wakes at the next due time, but at most once per
//! window ([`coalesce_window`]), releasing everything due by then. At low rates every request
//! goes out on time to the microsecond; at high rates one wake-up releases a handful, which keeps
//! the cost of wake-ups (most of a load generator's CPU on a small machine) per request low.

use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::schedule::{Arrival, Schedule};
use crate::timer::PreciseTimer;

/// The pacer wakes at most once per this interval (releasing everything due by then), up to
/// [`COALESCE_UP_TO`] requests per second.
///
/// Measured at 20,000 req/s against nginx on a 2-core VM (before the engine napped between
/// ticks): 200 µs cost ~24 µs CPU per request, 300 µs ~19 µs, 500 µs ~15 µs. With naps, 400, 600
/// and 800 µs cost the same within the noise while p99 lateness grows with the window; see
/// BENCHMARKS.md.
pub const COALESCE: Duration = Duration::from_micros(400);

/// Above this rate (of one engine thread) the window grows in proportion, up to
/// [`COALESCE_MAX`].
pub const COALESCE_UP_TO: f64 = 40_000.0;

/// The widest window, reached at 100,000 requests per second.
pub const COALESCE_MAX: Duration = Duration::from_millis(1);

/// The pacer's window at `qps` requests per second of one engine thread: [`COALESCE`] up to
/// [`COALESCE_UP_TO`], then in proportion to the rate, up to [`COALESCE_MAX`].
///
/// Every tick wakes the target too, and on a machine it shares that is paid in the engine's own
/// CPU. At 100,000 req/s, 1 ms instead of 400 µs cost 5 % less CPU per request, and p99 lateness
/// fell from 93–188 ms to 19–39 ms (the engine thread, nearly saturated, kept its backlog
/// shorter), against nginx on the 2-core VM of BENCHMARKS.md. At these rates the window's own
/// lateness (up to one window) is small beside that.
pub fn coalesce_window(qps: f64) -> Duration {
    let scaled = COALESCE.as_secs_f64() * qps / COALESCE_UP_TO;
    Duration::from_secs_f64(scaled.clamp(COALESCE.as_secs_f64(), COALESCE_MAX.as_secs_f64()))
}

/// Marks `end_nanos` as not yet known.
const OPEN: u64 = u64::MAX;

/// The longest the pacer sleeps before re-checking for an end or a shutdown.
const PACER_TICK: Duration = Duration::from_millis(20);

/// Hands due arrivals to workers. Shared by reference between the pacer and every worker.
#[derive(Debug)]
pub struct Dispatcher {
    schedule: Schedule,
    /// Nanoseconds from the start after which nothing more is released ([`OPEN`]: not known yet).
    end_nanos: AtomicU64,
    released: AtomicU64,
    next: AtomicU64,
    closed: AtomicBool,
    notify: Notify,
    /// When the pacer will next wake, in nanoseconds from the start ([`OPEN`]: not sleeping).
    next_wake: AtomicU64,
}

impl Dispatcher {
    /// A dispatcher for `schedule`. Nothing is released until [`Dispatcher::pace`] runs (paced
    /// runs); a closed loop releases everything at once.
    pub fn new(schedule: Schedule) -> Dispatcher {
        let released = if schedule.rate().qps().is_some() {
            0
        } else {
            u64::MAX
        };
        Dispatcher {
            schedule,
            end_nanos: AtomicU64::new(OPEN),
            released: AtomicU64::new(released),
            next: AtomicU64::new(0),
            closed: AtomicBool::new(false),
            notify: Notify::new(),
            next_wake: AtomicU64::new(OPEN),
        }
    }

    /// Sets the end of the load: nothing due at or after `offset` from the start is released.
    /// For a closed loop, claims stop once the clock passes it.
    pub fn end_at(&self, offset: Duration) {
        let nanos = u64::try_from(offset.as_nanos()).unwrap_or(OPEN - 1);
        self.end_nanos.store(nanos, Ordering::Release);
    }

    /// Stops releasing now and wakes every idle worker so it can exit. Arrivals already released
    /// stay claimable.
    pub fn close(&self) {
        if self.schedule.rate().qps().is_none() {
            // Closed loop: `released` is infinite; freeze it at what was claimed.
            let claimed = self.next.load(Ordering::Acquire);
            self.released.store(claimed, Ordering::Release);
        }
        self.closed.store(true, Ordering::Release);
        self.notify.notify_waiters();
    }

    /// True once no more arrivals will be released.
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Arrivals released so far (capped at the number claimed for a closed loop).
    pub fn released(&self) -> u64 {
        self.released.load(Ordering::Acquire)
    }

    /// Arrivals claimed by workers so far.
    pub fn claimed(&self) -> u64 {
        self.next.load(Ordering::Acquire)
    }

    /// Until when nothing will be released, if the pacer is asleep and every arrival released
    /// so far has been claimed: a time the thread may nap until without a due request waiting.
    pub fn quiet_until(&self) -> Option<Instant> {
        let wake = self.next_wake.load(Ordering::Acquire);
        if wake == OPEN || self.is_closed() || self.claimed() < self.released() {
            return None;
        }
        Some(self.schedule.start() + Duration::from_nanos(wake))
    }

    /// Waits for the next due arrival; `None` once the dispatcher is closed and drained.
    pub async fn next_arrival(&self) -> Option<Arrival> {
        loop {
            // The common case under load: something is waiting. Claim it without registering
            // for a wake-up (registering and deregistering each take the `Notify`'s lock).
            if let Some(arrival) = self.try_claim() {
                return Some(arrival);
            }
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            // Read `closed` before claiming: once it is set, `released` is final.
            let closed = self.is_closed();
            if let Some(arrival) = self.try_claim() {
                return Some(arrival);
            }
            if closed {
                return None;
            }
            notified.await;
        }
    }

    fn try_claim(&self) -> Option<Arrival> {
        let mut local = self.next.load(Ordering::Acquire);
        loop {
            if local >= self.released.load(Ordering::Acquire) {
                return None;
            }
            let Some(due) = self.schedule.due_at(local) else {
                return self.claim_unpaced();
            };
            match self.next.compare_exchange_weak(
                local,
                local + 1,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => {
                    return Some(Arrival {
                        seq: self.schedule.global_seq(local),
                        due,
                    });
                }
                Err(current) => local = current,
            }
        }
    }

    /// Closed loop: the arrival is due now, unless the end has passed.
    fn claim_unpaced(&self) -> Option<Arrival> {
        let now = Instant::now();
        let end = self.end_nanos.load(Ordering::Acquire);
        if end != OPEN && now >= self.schedule.start() + Duration::from_nanos(end) {
            self.close();
            return None;
        }
        let local = self.next.fetch_add(1, Ordering::AcqRel);
        Some(Arrival {
            seq: self.schedule.global_seq(local),
            due: now,
        })
    }

    /// The pacer: releases arrivals as they fall due until the end is reached or `shutdown`
    /// fires, then closes the dispatcher. For a closed loop it only watches for the end.
    /// `wake_limit` caps how many idle workers one release wakes.
    pub async fn pace(&self, shutdown: &CancellationToken, wake_limit: usize) -> io::Result<()> {
        let result = self.pace_until_end(shutdown, wake_limit).await;
        self.next_wake.store(OPEN, Ordering::Release);
        self.close();
        result
    }

    async fn pace_until_end(
        &self,
        shutdown: &CancellationToken,
        wake_limit: usize,
    ) -> io::Result<()> {
        let start = self.schedule.start();
        let window = self.schedule.shard_qps().map_or(COALESCE, coalesce_window);
        let mut timer = PreciseTimer::new()?;
        let cancelled = shutdown.cancelled();
        tokio::pin!(cancelled);
        loop {
            if shutdown.is_cancelled() || self.is_closed() {
                return Ok(());
            }
            let now = Instant::now();
            let end = match self.end_nanos.load(Ordering::Acquire) {
                OPEN => None,
                nanos => Some(Duration::from_nanos(nanos)),
            };
            let wake = match self.schedule.count_due(now) {
                None => {
                    // Closed loop: claims stop by themselves at the end; just watch for it.
                    if end.is_some_and(|e| now >= start + e) {
                        return Ok(());
                    }
                    now + PACER_TICK
                }
                Some(mut due) => {
                    let limit = end.and_then(|e| self.schedule.count_before(e));
                    if let Some(limit) = limit {
                        due = due.min(limit);
                    }
                    let before = self.released.fetch_max(due, Ordering::AcqRel);
                    for _ in 0..due.saturating_sub(before).min(wake_limit as u64) {
                        self.notify.notify_one();
                    }
                    if limit.is_some_and(|l| due >= l) {
                        return Ok(());
                    }
                    let next_due = self.schedule.due_at(due).unwrap_or(now);
                    next_due.max(now + window).min(now + PACER_TICK)
                }
            };
            let nanos = wake.saturating_duration_since(start).as_nanos();
            self.next_wake
                .store(u64::try_from(nanos).unwrap_or(OPEN - 1), Ordering::Release);
            tokio::select! {
                _ = &mut cancelled => return Ok(()),
                slept = timer.sleep_until(wake) => slept?,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Qps, Rate};
    use std::sync::Arc;

    #[test]
    fn the_window_grows_with_the_rate_above_40_000() {
        let micros = |qps: f64| coalesce_window(qps).as_micros();
        assert_eq!(micros(10.0), 400);
        assert_eq!(micros(20_000.0), 400);
        assert_eq!(micros(40_000.0), 400);
        assert_eq!(micros(80_000.0), 800);
        assert_eq!(micros(100_000.0), 1_000);
        assert_eq!(micros(1_000_000.0), 1_000);
    }

    #[tokio::test]
    async fn releases_exactly_the_scheduled_count() {
        let schedule = Schedule::new(Instant::now(), Rate::Fixed(Qps::new(2000.0).unwrap()));
        let dispatcher = Arc::new(Dispatcher::new(schedule));
        dispatcher.end_at(Duration::from_millis(100));
        let shutdown = CancellationToken::new();
        let pacer = {
            let d = dispatcher.clone();
            let s = shutdown.clone();
            tokio::spawn(async move { d.pace(&s, 4).await })
        };
        let mut seqs = Vec::new();
        while let Some(a) = dispatcher.next_arrival().await {
            assert!(Instant::now() >= a.due, "released before it was due");
            seqs.push(a.seq);
        }
        pacer.await.unwrap().unwrap();
        assert_eq!(seqs, (0..200).collect::<Vec<_>>());
    }

    #[tokio::test]
    async fn backlog_is_claimable_after_close() {
        let schedule = Schedule::new(
            Instant::now() - Duration::from_secs(1),
            Rate::Fixed(Qps::new(10.0).unwrap()),
        );
        let dispatcher = Dispatcher::new(schedule);
        dispatcher.end_at(Duration::from_millis(500));
        dispatcher.pace(&CancellationToken::new(), 1).await.unwrap();
        // All five were due long ago and nobody claimed them: still there, in order.
        for seq in 0..5 {
            assert_eq!(dispatcher.next_arrival().await.map(|a| a.seq), Some(seq));
        }
        assert_eq!(dispatcher.next_arrival().await, None);
    }

    #[tokio::test]
    async fn shards_release_their_own_sequence_numbers() {
        let whole = Schedule::new(Instant::now(), Rate::Fixed(Qps::new(1000.0).unwrap()));
        let dispatcher = Dispatcher::new(whole.shard(1, 2));
        dispatcher.end_at(Duration::from_millis(10));
        dispatcher.pace(&CancellationToken::new(), 1).await.unwrap();
        let mut seqs = Vec::new();
        while let Some(a) = dispatcher.next_arrival().await {
            seqs.push(a.seq);
        }
        assert_eq!(seqs, vec![1, 3, 5, 7, 9]);
    }

    #[tokio::test]
    async fn quiet_until_the_pacer_wakes_unless_a_release_is_unclaimed() {
        let start = Instant::now();
        let dispatcher = Arc::new(Dispatcher::new(Schedule::new(
            start,
            Rate::Fixed(Qps::new(10.0).unwrap()),
        )));
        dispatcher.end_at(Duration::from_millis(250));
        assert_eq!(dispatcher.quiet_until(), None, "the pacer has not started");
        let shutdown = CancellationToken::new();
        let pacer = {
            let d = dispatcher.clone();
            let s = shutdown.clone();
            tokio::spawn(async move { d.pace(&s, 1).await })
        };
        tokio::task::yield_now().await;
        // Request 0 is released and unclaimed: the thread must stay awake for it.
        assert_eq!(dispatcher.released(), 1);
        assert_eq!(dispatcher.quiet_until(), None);
        assert_eq!(dispatcher.next_arrival().await.map(|a| a.seq), Some(0));
        // Claimed: quiet until the pacer wakes, at request 1's due time (100 ms in) or, as it
        // re-checks for an end every 20 ms, sooner.
        let quiet = dispatcher.quiet_until().expect("quiet once claimed");
        assert!(quiet > start && quiet <= start + Duration::from_millis(100));
        while let Some(a) = dispatcher.next_arrival().await {
            assert!(a.seq <= 2);
        }
        pacer.await.unwrap().unwrap();
        assert_eq!(dispatcher.quiet_until(), None, "closed");
    }

    #[tokio::test]
    async fn closed_loop_stops_at_the_end() {
        let dispatcher = Dispatcher::new(Schedule::new(Instant::now(), Rate::Max));
        assert_eq!(dispatcher.next_arrival().await.map(|a| a.seq), Some(0));
        assert_eq!(dispatcher.next_arrival().await.map(|a| a.seq), Some(1));
        dispatcher.end_at(Duration::ZERO);
        assert_eq!(dispatcher.next_arrival().await, None);
        assert!(dispatcher.is_closed());
    }
}
