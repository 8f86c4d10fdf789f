//! The dispatcher: releases due arrivals and hands each to exactly one connection worker.
//!
//! One pacer task per engine shard ([`Dispatcher::pace`]) advances `released` as arrivals fall
//! due; workers claim indices below it with a compare-and-swap. The backlog (due but not yet
//! claimed, because every connection is busy) is the integer `released - next`: it costs no
//! memory however long the target stalls. Nothing is burst to "catch up" except arrivals that
//! really are due.
//!
//! A claim is either an arrival to send or, when the worker could not send it in time, the run
//! of arrivals it cannot: every released arrival whose deadline (`due + timeout`) has passed, or
//! is nearer than the time the worker's connection needs (see [`Dispatcher::next_claim`]), is
//! claimed at once as one [`Batch`] never sent. Whatever the rate, a claim costs the same: a
//! backlog of a billion expired arrivals is one claim.
//!
//! The load lasts its planned length: the pacer closes the dispatcher at the end, not when the
//! last arrival was released (`-q 0.001 -d 1s` lasts a second). It also tells the engine when
//! arrivals wait and no worker is idle ([`Dispatcher::wants_worker`]), so workers are spawned as
//! needed rather than one per connection up front.
//!
//! A dispatcher releases a [`Lineup`]: one schedule, or the schedules of the endpoints that
//! share an origin's connections, in their global order, each arrival with its endpoint's own
//! due time and timeout (see [`crate::load::engine`]).
//!
//! The pacer sleeps on a [`PreciseTimer`] (tokio's timer would add up to a millisecond of
//! lateness) and coalesces wake-ups: it wakes at the next due time, but at most once per
//! window ([`coalesce_window`]), releasing everything due by then. At low rates every request
//! goes out on time to the microsecond; at high rates one wake-up releases a handful, which keeps
//! the cost of wake-ups (most of a load generator's CPU on a small machine) per request low.

use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::load::schedule::{Arrival, Batch, Lineup};
use crate::load::timer::{PreciseTimer, later};

/// The pacer wakes at most once per this interval (releasing everything due by then), up to
/// [`COALESCE_UP_TO`] requests per second: the cheapest window whose lateness stays small
/// (BENCHMARKS.md, "Constants chosen by measurement").
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
/// CPU: a wider window at high rates costs less CPU and, the engine thread being nearly
/// saturated, keeps its backlog shorter (BENCHMARKS.md, "Constants chosen by measurement"). At
/// these rates the window's own lateness (up to one window) is small beside that.
pub fn coalesce_window(qps: f64) -> Duration {
    let scaled = COALESCE.as_secs_f64() * qps / COALESCE_UP_TO;
    Duration::from_secs_f64(scaled.clamp(COALESCE.as_secs_f64(), COALESCE_MAX.as_secs_f64()))
}

/// Marks `end_nanos` as not yet known.
const OPEN: u64 = u64::MAX;

/// The longest the pacer sleeps before re-checking for an end or a shutdown.
const PACER_TICK: Duration = Duration::from_millis(20);

/// What a worker gets from [`Dispatcher::next_claim`].
#[derive(Clone, Copy, Debug)]
pub enum Claim {
    /// An arrival to send now.
    Send(Arrival),
    /// Arrivals that cannot make their deadlines: never sent (split by endpoint with
    /// [`Dispatcher::batches`]).
    NotSent(Missed),
}

/// Consecutive arrivals of a dispatcher's lineup, indices `from..to`, claimed as never sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Missed {
    /// The first one's index in the lineup.
    pub from: u64,
    /// One past the last one's.
    pub to: u64,
}

#[cfg(test)]
impl Missed {
    /// How many.
    pub fn len(&self) -> u64 {
        self.to - self.from
    }

    /// True when it holds none.
    pub fn is_empty(&self) -> bool {
        self.to == self.from
    }
}

/// How long before its deadline a request needs to be worth sending on a connection, given
/// the request's timeout (see [`Dispatcher::next_claim`]).
pub trait Need {
    /// The time needed for a request whose timeout is `timeout`.
    fn before(&self, timeout: Duration) -> Duration;
}

impl Need for Duration {
    /// The same for every request.
    fn before(&self, _timeout: Duration) -> Duration {
        *self
    }
}

/// Hands due arrivals to workers. Shared by reference between the pacer and every worker.
#[derive(Debug)]
pub struct Dispatcher {
    lineup: Lineup,
    /// Each member's request timeout: an arrival's deadline is its due time plus this.
    timeouts: Vec<Duration>,
    /// Nanoseconds from the lineup's origin after which nothing more is released ([`OPEN`]: not known yet).
    end_nanos: AtomicU64,
    released: AtomicU64,
    next: AtomicU64,
    closed: AtomicBool,
    notify: Notify,
    /// When the pacer will next wake, in nanoseconds from the origin ([`OPEN`]: not sleeping).
    next_wake: AtomicU64,
    /// Workers waiting for an arrival.
    idle: AtomicUsize,
    /// Arrivals wait and no worker is idle.
    grow: Notify,
    /// Wake the worker that went idle last first ([`Dispatcher::newest_first`]).
    newest_first: bool,
}

/// Counts a worker as idle while it waits (dropped when the wait ends or is cancelled).
struct Idle<'a>(&'a AtomicUsize);

impl<'a> Idle<'a> {
    fn enter(count: &'a AtomicUsize) -> Idle<'a> {
        count.fetch_add(1, Ordering::AcqRel);
        Idle(count)
    }
}

impl Drop for Idle<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Dispatcher {
    /// A dispatcher for `schedule`, whose arrivals have `timeout` to be answered. Nothing is
    /// released until [`Dispatcher::pace`] runs (paced runs); a closed loop releases everything
    /// at once.
    #[cfg(test)]
    pub fn new(schedule: crate::load::schedule::Schedule, timeout: Duration) -> Dispatcher {
        Dispatcher::of(Lineup::single(schedule.start(), schedule), vec![timeout])
    }

    /// A dispatcher for `lineup`, whose member `m`'s arrivals have `timeouts[m]` to be
    /// answered.
    pub fn of(lineup: Lineup, timeouts: Vec<Duration>) -> Dispatcher {
        debug_assert_eq!(lineup.members(), timeouts.len());
        let released = if lineup.is_paced() { 0 } else { u64::MAX };
        Dispatcher {
            lineup,
            timeouts,
            end_nanos: AtomicU64::new(OPEN),
            released: AtomicU64::new(released),
            next: AtomicU64::new(0),
            closed: AtomicBool::new(false),
            notify: Notify::new(),
            next_wake: AtomicU64::new(OPEN),
            idle: AtomicUsize::new(0),
            grow: Notify::new(),
            newest_first: false,
        }
    }

    /// Released arrivals wake the worker that went idle last first, not the one idle longest.
    /// Over HTTP/2 that worker's connection was just read and written, and the workers that go
    /// idle together are those one read of its connection answered: a tick's requests then
    /// gather on a few connections, one write and one read each, instead of a few requests on
    /// every connection (at 20,000 req/s on 8 connections × 10 streams: half the `sendto` and
    /// two thirds of the `recvfrom` calls per request; BENCHMARKS.md, issue 19). HTTP/1.1 keeps
    /// the fair order: one request per connection, nothing to gather.
    pub fn newest_first(mut self) -> Dispatcher {
        self.newest_first = true;
        self
    }

    /// Resolves when arrivals wait and no worker is idle to take them (checked at each pacer
    /// tick): a new worker would be used.
    pub async fn wants_worker(&self) {
        self.grow.notified().await;
    }

    /// Sets the end of the load: nothing due at or after `offset` from the lineup's origin (the
    /// run's start) is sent.
    /// For a closed loop, claims stop once the clock passes it.
    pub fn end_at(&self, offset: Duration) {
        let nanos = u64::try_from(offset.as_nanos()).unwrap_or(OPEN - 1);
        self.end_nanos.store(nanos, Ordering::Release);
    }

    /// Stops releasing now and wakes every idle worker so it can exit. Arrivals already released
    /// stay claimable.
    pub fn close(&self) {
        if !self.lineup.is_paced() {
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
        Some(self.lineup.origin() + Duration::from_nanos(wake))
    }

    /// Waits for the next claim; `None` once the dispatcher is closed and drained.
    ///
    /// `need` is how much time before its deadline a request needs to be worth sending on the
    /// caller's connection (its recent service time), given its timeout. The next arrival is
    /// sent if its deadline is at least that far away; if not (or if it has passed), it and
    /// every later released arrival in the same case are claimed together as one
    /// [`Claim::NotSent`]. A closed loop sends everything (its arrivals are due when claimed).
    pub async fn next_claim(&self, need: &impl Need) -> Option<Claim> {
        loop {
            // The common case under load: something is waiting. Claim it without registering
            // for a wake-up (registering and deregistering each take the `Notify`'s lock).
            if let Some(claim) = self.try_claim(need) {
                return Some(claim);
            }
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            // Read `closed` before claiming: once it is set, `released` is final.
            let closed = self.is_closed();
            if let Some(claim) = self.try_claim(need) {
                return Some(claim);
            }
            if closed {
                return None;
            }
            let _idle = Idle::enter(&self.idle);
            notified.await;
        }
    }

    fn try_claim(&self, need: &impl Need) -> Option<Claim> {
        let mut index = self.next.load(Ordering::Acquire);
        loop {
            let released = self.released.load(Ordering::Acquire);
            if index >= released {
                return None;
            }
            if !self.lineup.is_paced() {
                return self.claim_unpaced().map(Claim::Send);
            }
            let arrival = self.lineup.arrival(index, Instant::now);
            let now = Instant::now();
            let timeout = self.timeouts[arrival.member];
            let deadline = later(arrival.due, timeout);
            let sendable = deadline > now && deadline.duration_since(now) >= need.before(timeout);
            let end = if sendable {
                index + 1
            } else {
                self.unsendable_before(index, now, need)
                    .clamp(index + 1, released)
            };
            match self
                .next
                .compare_exchange_weak(index, end, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) if sendable => {
                    if self.beyond_end(&arrival) {
                        // Released with the others of the last prefix, but due at or after
                        // the end of the load: not one of its requests.
                        index = end;
                        continue;
                    }
                    return Some(Claim::Send(arrival));
                }
                Ok(_) => {
                    return Some(Claim::NotSent(Missed {
                        from: index,
                        to: end,
                    }));
                }
                Err(current) => index = current,
            }
        }
    }

    /// True when `arrival` is due at or after the end of the load. Only a lineup of several
    /// members releases such arrivals: the prefix that holds every member's last request may
    /// hold another member's next one, due a few nanoseconds later.
    fn beyond_end(&self, arrival: &Arrival) -> bool {
        if self.lineup.members() == 1 {
            return false;
        }
        match self.end_nanos.load(Ordering::Acquire) {
            OPEN => false,
            end => arrival.due >= later(self.lineup.origin(), Duration::from_nanos(end)),
        }
    }

    /// The lineup index, from `index`, of the first arrival that can be sent at `now` with
    /// `need`: every one before it (from `index`) has a deadline less than its `need` away, or
    /// passed (`due + timeout < now + max(need, 1 ns)`).
    fn unsendable_before(&self, index: u64, now: Instant, need: &impl Need) -> u64 {
        let now = now.saturating_duration_since(self.lineup.origin());
        let mut first = u64::MAX;
        for (m, &timeout) in self.timeouts.iter().enumerate() {
            let cutoff = now
                .saturating_add(need.before(timeout).max(Duration::from_nanos(1)))
                .checked_sub(timeout)
                .and_then(|cutoff| self.lineup.member_count_before(m, cutoff))
                .unwrap_or(0);
            // Its first sendable arrival not yet claimed.
            let from = self.lineup.below(m, index).max(cutoff);
            first = first.min(self.lineup.index_of(m, from));
        }
        first
    }

    /// The arrivals of `missed`, as a batch never sent per member that has some: `(member,
    /// batch)`, in member order (those due at or after the end of the load left out).
    pub fn batches(&self, missed: Missed) -> impl Iterator<Item = (usize, Batch)> + '_ {
        let end = match self.end_nanos.load(Ordering::Acquire) {
            OPEN => None,
            nanos => Some(Duration::from_nanos(nanos)),
        };
        (0..self.lineup.members()).filter_map(move |m| {
            let limit = |n: u64| match end {
                Some(end) if self.lineup.members() > 1 => self
                    .lineup
                    .member_count_before(m, end)
                    .map_or(n, |limit| n.min(limit)),
                _ => n,
            };
            let from = limit(self.lineup.below(m, missed.from));
            let to = limit(self.lineup.below(m, missed.to));
            (to > from).then(|| (m, Batch::new(self.lineup.schedule(m), from, to)))
        })
    }

    /// The one arrival `arrival`, as a batch never sent (an attempt that could not be made).
    pub fn single(&self, arrival: &Arrival) -> Batch {
        Batch::single(self.lineup.schedule(arrival.member), arrival.local)
    }

    /// Arrivals of member `m` released but never claimed (not sent because the run was
    /// interrupted), those due at or after the end of the load left out.
    pub fn unclaimed(&self, m: usize) -> u64 {
        let limit = match self.end_nanos.load(Ordering::Acquire) {
            _ if self.lineup.members() == 1 => u64::MAX,
            OPEN => u64::MAX,
            nanos => self
                .lineup
                .member_count_before(m, Duration::from_nanos(nanos))
                .unwrap_or(u64::MAX),
        };
        let count = |g: u64| self.lineup.below(m, g).min(limit);
        count(self.released()).saturating_sub(count(self.claimed()))
    }

    /// Closed loop: the arrival is due now, unless the end has passed.
    fn claim_unpaced(&self) -> Option<Arrival> {
        let now = Instant::now();
        let end = self.end_nanos.load(Ordering::Acquire);
        if end != OPEN && now >= later(self.lineup.origin(), Duration::from_nanos(end)) {
            self.close();
            return None;
        }
        let index = self.next.fetch_add(1, Ordering::AcqRel);
        Some(self.lineup.arrival(index, || now))
    }

    /// The pacer: releases arrivals as they fall due until the end of the load is reached (not
    /// only the last arrival: the load lasts its length) or `shutdown` fires, then closes the
    /// dispatcher. For a closed loop it only watches for the end.
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
        let start = self.lineup.origin();
        let window = self.lineup.qps().map_or(COALESCE, coalesce_window);
        let mut timer = PreciseTimer::new()?;
        let cancelled = shutdown.cancelled();
        tokio::pin!(cancelled);
        // Released as of the previous tick.
        let mut previous = 0;
        // The end of the load, and the prefix of the lineup due before it.
        let mut limit_of: Option<(Duration, Option<u64>)> = None;
        loop {
            if shutdown.is_cancelled() || self.is_closed() {
                return Ok(());
            }
            let now = Instant::now();
            let end = match self.end_nanos.load(Ordering::Acquire) {
                OPEN => None,
                nanos => Some(Duration::from_nanos(nanos)),
            };
            let wake = match self.lineup.count_due(now) {
                None => {
                    // Closed loop: claims stop by themselves at the end; just watch for it.
                    if end.is_some_and(|e| now >= later(start, e)) {
                        return Ok(());
                    }
                    now + PACER_TICK
                }
                Some(mut due) => {
                    let limit = end.and_then(|e| match limit_of {
                        Some((at, limit)) if at == e => limit,
                        _ => {
                            let limit = self.lineup.count_before(e);
                            limit_of = Some((e, limit));
                            limit
                        }
                    });
                    if let Some(limit) = limit {
                        due = due.min(limit);
                    }
                    let before = self.released.fetch_max(due, Ordering::AcqRel);
                    // One wake-up per new arrival, for as many workers as wait (at least one:
                    // a worker about to wait finds the permit).
                    let waiting = self
                        .idle
                        .load(Ordering::Acquire)
                        .clamp(1, wake_limit.max(1));
                    for _ in 0..due.saturating_sub(before).min(waiting as u64) {
                        if self.newest_first {
                            self.notify.notify_last();
                        } else {
                            self.notify.notify_one();
                        }
                    }
                    // Arrivals released a tick ago still unclaimed, and no worker idle: the
                    // workers could not keep up for a whole tick (not merely not yet woken).
                    if self.claimed() < previous && self.idle.load(Ordering::Acquire) == 0 {
                        self.grow.notify_one();
                    }
                    previous = self.released();
                    match (limit, end) {
                        (Some(limit), Some(end)) if due >= limit => {
                            // Everything released; the load still lasts until its end.
                            let end = later(start, end);
                            if now >= end {
                                return Ok(());
                            }
                            end.min(now + PACER_TICK)
                        }
                        _ => {
                            let next_due = self.lineup.due_at(due).unwrap_or(now);
                            next_due.max(now + window).min(now + PACER_TICK)
                        }
                    }
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
    use crate::load::schedule::Schedule;
    use std::sync::Arc;

    /// A timeout no test reaches.
    const LONG: Duration = Duration::from_secs(3600);

    impl Dispatcher {
        /// The next arrival to send (every test arrival can make its deadline).
        async fn next_arrival(&self) -> Option<Arrival> {
            match self.next_claim(&Duration::ZERO).await? {
                Claim::Send(arrival) => Some(arrival),
                Claim::NotSent(batch) => panic!("unexpectedly not sent: {batch:?}"),
            }
        }
    }

    fn paced(start: Instant, qps: f64) -> Schedule {
        Schedule::new(start, Rate::Fixed(Qps::new(qps).unwrap()))
    }

    #[tokio::test]
    async fn expired_arrivals_are_claimed_as_one_batch() {
        // 1000 qps for 10 s, started 10 s ago, with a 1 s timeout: the 9,000 or so arrivals due
        // more than 1 s ago are one claim; the rest are sent, in order.
        let now = Instant::now();
        let dispatcher = Dispatcher::new(
            paced(now - Duration::from_secs(10), 1000.0),
            Duration::from_secs(1),
        );
        dispatcher.end_at(Duration::from_secs(10));
        dispatcher.pace(&CancellationToken::new(), 1).await.unwrap();
        assert_eq!(dispatcher.released(), 10_000);
        let Some(Claim::NotSent(batch)) = dispatcher.next_claim(&Duration::ZERO).await else {
            panic!("the expired arrivals come first, as one batch");
        };
        assert_eq!(batch.from, 0);
        assert!((8_990..=9_001).contains(&batch.len()), "{}", batch.len());
        let mut sent = 0;
        while let Some(claim) = dispatcher.next_claim(&Duration::ZERO).await {
            match claim {
                Claim::Send(a) => assert_eq!(a.seq, batch.len() + sent),
                Claim::NotSent(b) => panic!("a second batch {b:?} right after the first"),
            }
            sent += 1;
        }
        assert_eq!(batch.len() + sent, 10_000);
    }

    #[tokio::test]
    async fn arrivals_too_close_to_their_deadline_for_the_connection_are_not_sent() {
        // 100 qps, started 1 s ago, 1.5 s timeout: request k has 0.5 s + 10k ms left. A
        // connection that needs 800 ms cannot make requests 0..30 (left < 800 ms).
        let now = Instant::now();
        let dispatcher = Dispatcher::new(
            paced(now - Duration::from_secs(1), 100.0),
            Duration::from_millis(1500),
        );
        dispatcher.end_at(Duration::from_secs(1));
        dispatcher.pace(&CancellationToken::new(), 1).await.unwrap();
        let Some(Claim::NotSent(batch)) = dispatcher.next_claim(&Duration::from_millis(800)).await
        else {
            panic!("requests 0..30 cannot make it");
        };
        assert!((30..=31).contains(&batch.len()), "{}", batch.len());
        let Some(Claim::Send(next)) = dispatcher.next_claim(&Duration::from_millis(800)).await
        else {
            panic!("the next one can");
        };
        assert_eq!(next.seq, batch.len());
        // A connection with nothing to go by sends whatever has not expired.
        assert!(
            matches!(dispatcher.next_claim(&Duration::ZERO).await, Some(Claim::Send(a)) if a.seq == next.seq + 1)
        );
    }

    #[tokio::test]
    async fn the_load_lasts_its_length_after_the_last_release() {
        // One request (0.001 qps), a 150 ms load: released at once, closed at 150 ms.
        let start = Instant::now();
        let dispatcher = Dispatcher::new(paced(start, 0.001), LONG);
        dispatcher.end_at(Duration::from_millis(150));
        dispatcher.pace(&CancellationToken::new(), 1).await.unwrap();
        assert!(
            start.elapsed() >= Duration::from_millis(150),
            "closed after {:?}",
            start.elapsed()
        );
        assert_eq!(dispatcher.released(), 1);
    }

    #[tokio::test]
    async fn extreme_rates_release_promptly() {
        // 1e300 qps for 1 ms: every arrival (as many as a schedule counts) is due at once; the
        // pacer releases them in one step and a claim after their deadline takes them all as one
        // batch.
        let start = Instant::now();
        let dispatcher = Dispatcher::new(paced(start, 1e300), Duration::from_millis(1));
        dispatcher.end_at(Duration::from_millis(1));
        dispatcher.pace(&CancellationToken::new(), 1).await.unwrap();
        assert_eq!(dispatcher.released(), crate::load::schedule::MAX_REQUESTS);
        tokio::time::sleep(Duration::from_millis(2)).await;
        let Some(Claim::NotSent(batch)) = dispatcher.next_claim(&Duration::ZERO).await else {
            panic!("all expired");
        };
        assert_eq!(batch.len(), crate::load::schedule::MAX_REQUESTS);
        assert!(dispatcher.next_claim(&Duration::ZERO).await.is_none());
    }

    /// Two endpoints in one lineup (one origin's pool), 100 req/s in all, started 1 s ago: the
    /// one whose timeout is 300 ms cannot send its requests due more than 300 ms ago, and they
    /// are its own batches never sent; the other's (timeout 10 s) are all sent, in due order.
    #[tokio::test]
    async fn each_endpoint_of_a_lineup_keeps_its_own_timeout() {
        let start = Instant::now() - Duration::from_secs(1);
        let il = crate::config::Interleave::equal(std::num::NonZeroU32::new(2).unwrap());
        let schedules = (0..2)
            .map(|i| {
                Schedule::new(
                    start + Duration::from_millis(10 * i as u64),
                    Rate::Fixed(Qps::new(50.0).unwrap()),
                )
            })
            .collect();
        let lineup = Lineup::dealt(start, &il, &[0, 1], schedules, 0, 1);
        let dispatcher = Dispatcher::of(
            lineup,
            vec![Duration::from_secs(10), Duration::from_millis(300)],
        );
        dispatcher.end_at(Duration::from_secs(1));
        dispatcher.pace(&CancellationToken::new(), 1).await.unwrap();
        assert_eq!(dispatcher.released(), 100);
        let mut sent: [Vec<u64>; 2] = Default::default();
        let mut missed = 0;
        let mut last = start;
        while let Some(claim) = dispatcher.next_claim(&Duration::ZERO).await {
            match claim {
                Claim::Send(a) => {
                    assert!(a.due >= last);
                    last = a.due;
                    sent[a.member].push(a.seq);
                }
                Claim::NotSent(m) => {
                    assert!(!m.is_empty());
                    for (member, batch) in dispatcher.batches(m) {
                        assert_eq!(member, 1, "{batch:?}");
                        assert_eq!(batch.first_seq(), missed);
                        missed += batch.len();
                    }
                }
            }
        }
        // Request j of endpoint 1 is due at 10 + 20 j ms: those with 10 + 20 j + 300 < 1000
        // (and a few ms of this test) are expired.
        assert!((35..=36).contains(&missed), "{missed}");
        assert_eq!(sent[0], (0..50).collect::<Vec<u64>>());
        assert_eq!(sent[1], (missed..50).collect::<Vec<u64>>());
        assert_eq!((dispatcher.unclaimed(0), dispatcher.unclaimed(1)), (0, 0));
    }

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
        let dispatcher = Arc::new(Dispatcher::new(schedule, LONG));
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
        let dispatcher = Dispatcher::new(schedule, LONG);
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
        let dispatcher = Dispatcher::new(whole.shard(1, 2), LONG);
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
        let dispatcher = Arc::new(Dispatcher::new(
            Schedule::new(start, Rate::Fixed(Qps::new(10.0).unwrap())),
            LONG,
        ));
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
        let dispatcher = Dispatcher::new(Schedule::new(Instant::now(), Rate::Max), LONG);
        assert_eq!(dispatcher.next_arrival().await.map(|a| a.seq), Some(0));
        assert_eq!(dispatcher.next_arrival().await.map(|a| a.seq), Some(1));
        dispatcher.end_at(Duration::ZERO);
        assert_eq!(dispatcher.next_arrival().await, None);
        assert!(dispatcher.is_closed());
    }
}
