//! The absolute send schedule: request `k` is due at `start + k / qps`.
//!
//! Due times are computed from `k`, never accumulated, so a long run does not drift, and the
//! number of requests in `[start, start + d)` is exactly `ceil(qps × d)`.
//!
//! A schedule can be one shard of a larger one: shard `phase` of `stride` owns the requests
//! `k ≡ phase (mod stride)`, so several engine threads share one rate without sharing state.
//! Methods take and return *local* indices `j`; the global sequence number is
//! `j × stride + phase`.
//!
//! A [`Lineup`] is what one dispatcher releases: one schedule, or the schedules of the
//! endpoints that share an origin's connections, dealt into one order (their positions of the
//! run's [`crate::config::Interleave`]): each keeps its own absolute due times.

use std::time::{Duration, Instant};

use crate::config::Rate;
use crate::load::timer::later;

/// The most requests one shard of a schedule counts: 2^53, about 9 × 10^15 (a million a second
/// for 285 years). A rate that would count more is held to it, so that no counter of the run
/// (totals, slots, phases: at most a few shards' worth each) can overflow.
pub const MAX_REQUESTS: u64 = 1 << 53;

/// One request the schedule wants sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Arrival {
    /// Sequence number, from 0.
    pub seq: u64,
    /// Index in its shard of the schedule (see [`Schedule::global_seq`]).
    pub local: u64,
    /// Intended send time. Latency is measured from here.
    pub due: Instant,
    /// Which member of its [`Lineup`] (endpoint of the engine) it belongs to; 0 alone.
    pub member: usize,
}

/// The schedule of one run.
#[derive(Clone, Copy, Debug)]
pub struct Schedule {
    start: Instant,
    rate: Rate,
    phase: u64,
    stride: u64,
}

impl Schedule {
    /// The schedule a process of `load` follows, starting at `start`: the whole one, or its
    /// part's requests (with equal parts, due at `start + index / qps`, then every
    /// `count / qps`; see [`crate::config::Interleave`]).
    pub fn of(load: &crate::config::LoadConfig, start: Instant) -> Schedule {
        match (&load.shard, load.rate) {
            (Some(shard), Rate::Fixed(qps)) => {
                let rate = crate::config::Qps::new(shard.rate_of(qps.get()))
                    .map_or(load.rate, Rate::Fixed);
                Schedule::new(later(start, load.shift()), rate)
            }
            _ => Schedule::new(start, load.rate),
        }
    }

    /// A schedule starting at `start`.
    pub fn new(start: Instant, rate: Rate) -> Schedule {
        Schedule {
            start,
            rate,
            phase: 0,
            stride: 1,
        }
    }

    /// Shard `phase` of `shards` of this schedule (`phase < shards`).
    pub fn shard(self, phase: usize, shards: usize) -> Schedule {
        let stride = shards.max(1) as u64;
        Schedule {
            phase: (phase as u64) % stride,
            stride,
            ..self
        }
    }

    /// Global sequence number of local index `local`.
    pub fn global_seq(&self, local: u64) -> u64 {
        local.saturating_mul(self.stride).saturating_add(self.phase)
    }

    /// When the run started.
    pub fn start(&self) -> Instant {
        self.start
    }

    /// The rate.
    pub fn rate(&self) -> Rate {
        self.rate
    }

    /// How many shards share the schedule (the distance between this shard's sequence numbers).
    pub fn stride(&self) -> u64 {
        self.stride
    }

    /// Requests per second this shard releases (`None` for a closed loop).
    pub fn shard_qps(&self) -> Option<f64> {
        self.rate.qps().map(|q| q / self.stride as f64)
    }

    /// Offset of local request `local` from the start, or `None` for a closed loop.
    pub fn offset_of(&self, local: u64) -> Option<Duration> {
        self.global_offset(self.global_seq(local))
    }

    fn global_offset(&self, seq: u64) -> Option<Duration> {
        self.global_nanos(seq).map(Duration::from_nanos)
    }

    /// Offset of global request `seq` in nanoseconds, saturating at `u64::MAX` (about 584
    /// years: a rate of `1e-20` puts every request after the first out there). Rounded up to
    /// the nanosecond so that `count_before(offset_of(k)) == k` holds exactly. Non-decreasing in
    /// `seq` (every float step is monotonic), which is all [`Schedule::count_before`] relies on.
    fn global_nanos(&self, seq: u64) -> Option<u64> {
        let qps = self.rate.qps()?;
        // `as` saturates: an infinite product becomes u64::MAX.
        Some((seq as f64 * 1e9 / qps).ceil() as u64)
    }

    /// Intended send time of local request `local` (`None` for a closed loop).
    pub fn due_at(&self, local: u64) -> Option<Instant> {
        // The common case first: exactly `start + o` (`later` clamps the rare overflow).
        self.offset_of(local).map(|o| {
            self.start
                .checked_add(o)
                .unwrap_or_else(|| later(self.start, o))
        })
    }

    /// How many of this shard's requests are due strictly before `offset` from the start: the
    /// request count of a run that lasts `offset`. `None` for a closed loop. At most
    /// [`MAX_REQUESTS`], for rates no counter could hold.
    pub fn count_before(&self, offset: Duration) -> Option<u64> {
        let qps = self.rate.qps()?;
        let global = match u64::try_from(offset.as_nanos()) {
            Ok(target) => self.first_at_or_after(target, offset.as_secs_f64() * qps),
            // Beyond every representable offset: all of them.
            Err(_) => u64::MAX,
        };
        // Of the global requests 0..global, those with seq ≡ phase (mod stride).
        let local = if global <= self.phase {
            0
        } else {
            (global - self.phase - 1) / self.stride + 1
        };
        Some(local.min(MAX_REQUESTS))
    }

    /// The smallest global sequence number due at or after `target` ns (`u64::MAX` if none is),
    /// from the float estimate `guess`: corrected by a galloping then a binary search, so it is
    /// exact and costs a few dozen evaluations at worst, whatever the rate.
    fn first_at_or_after(&self, target: u64, guess: f64) -> u64 {
        let at = |seq: u64| self.global_nanos(seq).is_some_and(|n| n >= target);
        if at(0) {
            return 0;
        }
        // `as` saturates (and maps NaN to 0).
        let guess = (guess.ceil() as u64).max(1);
        // Invariant: !at(lo) and at(hi).
        let (mut lo, mut hi);
        let mut step = 1u64;
        if at(guess) {
            hi = guess;
            loop {
                let below = guess.saturating_sub(step);
                if !at(below) {
                    lo = below;
                    break;
                }
                hi = below;
                step = step.saturating_mul(2);
            }
        } else {
            lo = guess;
            loop {
                if lo == u64::MAX {
                    return u64::MAX;
                }
                let above = guess.saturating_add(step);
                if at(above) {
                    hi = above;
                    break;
                }
                lo = above;
                step = step.saturating_mul(2);
            }
        }
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            if at(mid) {
                hi = mid;
            } else {
                lo = mid;
            }
        }
        hi
    }

    /// How many requests are due at or before `now`. `None` for a closed loop.
    pub fn count_due(&self, now: Instant) -> Option<u64> {
        let elapsed = now.saturating_duration_since(self.start);
        self.count_before(elapsed.saturating_add(Duration::from_nanos(1)))
    }
}

/// Consecutive arrivals of one schedule shard, local indices `from..to`, that were never sent:
/// recorded in one step however many there are (a run of a billion expired arrivals costs what
/// one does), and exactly: [`Batch::count_before`] splits it by time.
#[derive(Clone, Copy, Debug)]
pub struct Batch {
    schedule: Schedule,
    from: u64,
    to: u64,
}

impl crate::measure::recorder::Unsent for Batch {
    fn is_empty(&self) -> bool {
        Batch::is_empty(self)
    }

    fn len(&self) -> u64 {
        Batch::len(self)
    }

    fn first_seq(&self) -> u64 {
        Batch::first_seq(self)
    }

    fn stride(&self) -> u64 {
        Batch::stride(self)
    }

    fn by_width(&self, width: Duration) -> Box<dyn Iterator<Item = (Duration, u64)> + '_> {
        Box::new(Batch::by_width(self, width))
    }

    fn count_before(&self, offset: Duration) -> u64 {
        Batch::count_before(self, offset)
    }
}

impl Batch {
    /// Local indices `from..to` of `schedule` (a paced one).
    pub fn new(schedule: Schedule, from: u64, to: u64) -> Batch {
        Batch {
            schedule,
            from,
            to: to.max(from),
        }
    }

    /// The one arrival with local index `local`.
    pub fn single(schedule: Schedule, local: u64) -> Batch {
        Batch::new(schedule, local, local.saturating_add(1))
    }

    /// Arrivals in the batch.
    pub fn len(&self) -> u64 {
        self.to - self.from
    }

    /// True when it holds no arrival.
    pub fn is_empty(&self) -> bool {
        self.to == self.from
    }

    /// Global sequence number of the first arrival.
    pub fn first_seq(&self) -> u64 {
        self.schedule.global_seq(self.from)
    }

    /// Distance between the batch's consecutive sequence numbers (the number of shards).
    pub fn stride(&self) -> u64 {
        self.schedule.stride
    }

    /// Intended send time of the batch's `k`-th arrival, from the start of the run.
    pub fn due(&self, k: u64) -> Duration {
        self.schedule
            .offset_of(self.from.saturating_add(k))
            .unwrap_or_default()
    }

    /// How many of the batch's arrivals are due strictly before `offset` from the start.
    pub fn count_before(&self, offset: Duration) -> u64 {
        self.schedule
            .count_before(offset)
            .map_or(0, |c| c.clamp(self.from, self.to) - self.from)
    }

    /// Splits the batch into consecutive parts at the multiples of `width` (timeline slots):
    /// `(due of the part's first arrival, arrivals in the part)`, in time order.
    pub fn by_width(&self, width: Duration) -> impl Iterator<Item = (Duration, u64)> + '_ {
        let width = width.as_nanos().max(1);
        let mut k = 0;
        std::iter::from_fn(move || {
            if k >= self.len() {
                return None;
            }
            let due = self.due(k);
            let boundary = (due.as_nanos() / width + 1).saturating_mul(width);
            let end = u64::try_from(boundary)
                .map_or(self.len(), |b| self.count_before(Duration::from_nanos(b)))
                .clamp(k + 1, self.len());
            let part = (due, end - k);
            k = end;
            Some(part)
        })
    }
}

/// The arrivals one dispatcher releases, in one order: one schedule's, or those of several
/// members (the endpoints that share an origin's connections), each with its own schedule,
/// dealt in their order in the run's interleave.
///
/// Index `g` of the lineup is local request `l` of member `m`'s schedule: position `g mod P` of
/// a cycle of `P` positions (`w_m` of them member `m`'s) gives `m` and its rank `r` in the
/// cycle, and `l = (g div P) × w_m + r`. Since the interleave's global order is its parts' due
/// times merged, the lineup's order is its members' due times merged (to the nanosecond each
/// rounds to): the dispatcher releases them in due order, and every arrival keeps the absolute
/// due time of its member's schedule.
#[derive(Clone, Debug)]
pub struct Lineup {
    /// Offsets (the end of the load, the pacer's wake-ups) count from here: the run's start.
    origin: Instant,
    /// Each member's schedule, and how long after `origin` it starts.
    members: Vec<(Schedule, Duration)>,
    /// Per position of the cycle: its member and that member's rank in the cycle.
    cycle: Vec<(u32, u32)>,
    /// Where each member's positions start in `positions`; one more entry at the end.
    offsets: Vec<u32>,
    /// Each member's positions in the cycle, in order, member after member.
    positions: Vec<u32>,
}

impl Lineup {
    /// One schedule alone; offsets count from `origin` (at or before its start).
    pub fn single(origin: Instant, schedule: Schedule) -> Lineup {
        Lineup {
            origin,
            members: vec![(schedule, schedule.start.saturating_duration_since(origin))],
            cycle: vec![(0, 0)],
            offsets: vec![0, 1],
            positions: vec![0],
        }
    }

    /// Engine thread `thread` of `threads` of the parts `parts` of `interleave` (in order;
    /// `schedules[m]` is part `parts[m]`'s own schedule, already split as `shard(thread,
    /// threads)`): their requests in the interleave's global order, this thread's own (member
    /// request `j` with `j mod threads == thread`). Offsets count from `origin`. One schedule
    /// alone is [`Lineup::single`].
    pub fn dealt(
        origin: Instant,
        interleave: &crate::config::Interleave,
        parts: &[usize],
        schedules: Vec<Schedule>,
        thread: usize,
        threads: usize,
    ) -> Lineup {
        if let [schedule] = schedules.as_slice() {
            return Lineup::single(origin, *schedule);
        }
        let threads = threads.max(1) as u64;
        let thread = thread as u64 % threads;
        let member_of = |part: usize| parts.iter().position(|&p| p == part);
        // Over `threads` cycles of the interleave each member sends `threads × w` requests,
        // `w` of them this thread's: one cycle of the lineup.
        let mut cycle = Vec::new();
        for k in 0..interleave.period() * threads {
            let part = interleave.owner(k);
            let Some(m) = member_of(part) else { continue };
            let j = interleave.members_below(part, k);
            if j % threads == thread {
                cycle.push((m as u32, (j / threads) as u32));
            }
        }
        let mut offsets = Vec::with_capacity(parts.len() + 1);
        let mut positions = Vec::with_capacity(cycle.len());
        for m in 0..parts.len() {
            offsets.push(positions.len() as u32);
            positions.extend(
                cycle
                    .iter()
                    .enumerate()
                    .filter(|(_, (owner, _))| *owner as usize == m)
                    .map(|(p, _)| p as u32),
            );
        }
        offsets.push(positions.len() as u32);
        Lineup {
            origin,
            members: schedules
                .into_iter()
                .map(|s| (s, s.start.saturating_duration_since(origin)))
                .collect(),
            cycle,
            offsets,
            positions,
        }
    }

    /// Where offsets count from (the run's start).
    pub fn origin(&self) -> Instant {
        self.origin
    }

    /// How many members.
    pub fn members(&self) -> usize {
        self.members.len()
    }

    /// Member `m`'s schedule.
    pub fn schedule(&self, m: usize) -> Schedule {
        self.members[m].0
    }

    /// True for a paced lineup (a closed loop has no due times).
    pub fn is_paced(&self) -> bool {
        self.members[0].0.rate.qps().is_some()
    }

    /// Requests per second the lineup releases (`None` for a closed loop).
    pub fn qps(&self) -> Option<f64> {
        self.members.iter().map(|(s, _)| s.shard_qps()).sum()
    }

    fn period(&self) -> u64 {
        self.cycle.len() as u64
    }

    fn weight(&self, m: usize) -> u64 {
        u64::from(self.offsets[m + 1] - self.offsets[m])
    }

    fn mine(&self, m: usize) -> &[u32] {
        &self.positions[self.offsets[m] as usize..self.offsets[m + 1] as usize]
    }

    /// The member and member-local index of lineup index `g`.
    #[inline]
    pub fn locate(&self, g: u64) -> (usize, u64) {
        let period = self.period();
        if period == 1 {
            return (0, g);
        }
        let (m, rank) = self.cycle[(g % period) as usize];
        let m = m as usize;
        (
            m,
            (g / period)
                .saturating_mul(self.weight(m))
                .saturating_add(u64::from(rank)),
        )
    }

    /// The lineup index of member `m`'s local request `l`.
    pub fn index_of(&self, m: usize, l: u64) -> u64 {
        let w = self.weight(m);
        let p = u64::from(self.mine(m)[(l % w) as usize]);
        (l / w).saturating_mul(self.period()).saturating_add(p)
    }

    /// How many of member `m`'s requests come before lineup index `g`.
    pub fn below(&self, m: usize, g: u64) -> u64 {
        let period = self.period();
        let r = (g % period) as u32;
        (g / period).saturating_mul(self.weight(m))
            + self.mine(m).partition_point(|&p| p < r) as u64
    }

    /// The arrival at lineup index `g` (due now for a closed loop).
    #[inline]
    pub fn arrival(&self, g: u64, now: impl FnOnce() -> Instant) -> Arrival {
        let (m, local) = self.locate(g);
        let schedule = &self.members[m].0;
        Arrival {
            seq: schedule.global_seq(local),
            local,
            due: schedule.due_at(local).unwrap_or_else(now),
            member: m,
        }
    }

    /// Intended send time of lineup index `g` (`None` for a closed loop).
    pub fn due_at(&self, g: u64) -> Option<Instant> {
        let (m, local) = self.locate(g);
        self.members[m].0.due_at(local)
    }

    /// How many of member `m`'s requests are due strictly before `offset` from the origin.
    pub fn member_count_before(&self, m: usize, offset: Duration) -> Option<u64> {
        let (schedule, lead) = &self.members[m];
        schedule.count_before(offset.saturating_sub(*lead))
    }

    /// The shortest prefix of the lineup that holds every request due strictly before `offset`
    /// from the origin (with one member: exactly those). `None` for a closed loop.
    pub fn count_before(&self, offset: Duration) -> Option<u64> {
        if let [(schedule, lead)] = self.members.as_slice() {
            return schedule.count_before(offset.saturating_sub(*lead));
        }
        self.covering(|m| self.member_count_before(m, offset))
    }

    /// How many requests are due at or before `now` (a prefix holding them all). `None` for a
    /// closed loop.
    pub fn count_due(&self, now: Instant) -> Option<u64> {
        if let [(schedule, _)] = self.members.as_slice() {
            return schedule.count_due(now);
        }
        self.covering(|m| self.members[m].0.count_due(now))
    }

    /// The shortest prefix holding each member's first `count(m)` requests.
    fn covering(&self, count: impl Fn(usize) -> Option<u64>) -> Option<u64> {
        let mut end = 0;
        for m in 0..self.members.len() {
            let n = count(m)?;
            if n > 0 {
                end = end.max(self.index_of(m, n - 1).saturating_add(1));
            }
        }
        Some(end)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Qps;

    fn paced(qps: f64) -> Schedule {
        Schedule::new(Instant::now(), Rate::Fixed(Qps::new(qps).unwrap()))
    }

    #[test]
    fn request_count_is_exact() {
        assert_eq!(
            paced(100.0).count_before(Duration::from_secs(10)),
            Some(1000)
        );
        assert_eq!(
            paced(1000.0).count_before(Duration::from_millis(1500)),
            Some(1500)
        );
        assert_eq!(paced(3.0).count_before(Duration::from_secs(1)), Some(3));
        assert_eq!(paced(0.5).count_before(Duration::from_secs(3)), Some(2));
        assert_eq!(paced(7.0).count_before(Duration::ZERO), Some(0));
    }

    #[test]
    fn due_times_do_not_drift() {
        let s = paced(3.0);
        // 1/3 s is not representable; the millionth request is still exactly on time.
        let o = s.offset_of(3_000_000).unwrap();
        assert_eq!(o, Duration::from_secs(1_000_000));
        assert_eq!(s.offset_of(1).unwrap(), Duration::from_nanos(333_333_334));
    }

    #[test]
    fn count_due_includes_now() {
        let s = paced(10.0);
        assert_eq!(s.count_due(s.start()), Some(1));
        assert_eq!(s.count_due(s.start() + Duration::from_millis(99)), Some(1));
        assert_eq!(s.count_due(s.start() + Duration::from_millis(100)), Some(2));
    }

    #[test]
    fn shards_partition_the_schedule() {
        let whole = paced(1000.0);
        let d = Duration::from_millis(1234);
        let mut total = 0;
        for phase in 0..3 {
            let shard = whole.shard(phase, 3);
            total += shard.count_before(d).unwrap();
            // Local index 2 of shard `phase` is global request 6 + phase.
            assert_eq!(shard.due_at(2), whole.due_at(6 + phase as u64));
        }
        assert_eq!(total, 1234);
    }

    #[test]
    fn extreme_rates_neither_panic_nor_spin() {
        // One request, then the next one centuries later.
        let slow = paced(1e-20);
        assert_eq!(slow.count_before(Duration::from_secs(1)), Some(1));
        assert!(slow.due_at(1).is_some_and(|d| d > slow.start()));
        assert_eq!(slow.count_before(Duration::MAX), Some(MAX_REQUESTS));
        // Every request due in the first nanosecond: the count is held to its maximum, promptly.
        let fast = paced(1e300);
        assert_eq!(fast.count_before(Duration::ZERO), Some(0));
        assert_eq!(
            fast.count_before(Duration::from_secs(1)),
            Some(MAX_REQUESTS)
        );
        assert_eq!(
            fast.shard(1, 2).count_before(Duration::from_secs(1)),
            Some(MAX_REQUESTS)
        );
        // Near the maximum the float estimate is coarse; the count stays exact.
        let s = paced(1e9);
        let offset = Duration::from_secs(9_000_000);
        let n = s.count_before(offset).unwrap();
        assert!(s.offset_of(n - 1).unwrap() < offset && s.offset_of(n).unwrap() >= offset);
        assert_eq!(paced(100.0).count_before(Duration::MAX), Some(MAX_REQUESTS));
        assert!(paced(100.0).due_at(u64::MAX).is_some());
    }

    #[test]
    fn a_batch_splits_exactly_by_slot() {
        // Requests 5..25 at 100 qps: due 50 ms to 240 ms; slots of 100 ms.
        let s = paced(100.0);
        let batch = Batch::new(s, 5, 25);
        assert_eq!(batch.len(), 20);
        assert_eq!(batch.first_seq(), 5);
        let parts: Vec<(u128, u64)> = batch
            .by_width(Duration::from_millis(100))
            .map(|(due, n)| (due.as_millis(), n))
            .collect();
        assert_eq!(parts, vec![(50, 5), (100, 10), (200, 5)]);
        assert_eq!(batch.count_before(Duration::from_millis(100)), 5);
        assert_eq!(batch.count_before(Duration::from_secs(9)), 20);
        // A shard's batch counts only its own sequence numbers.
        let shard = s.shard(1, 2);
        let batch = Batch::new(shard, 0, 10);
        assert_eq!((batch.first_seq(), batch.stride()), (1, 2));
        let total: u64 = batch
            .by_width(Duration::from_millis(50))
            .map(|(_, n)| n)
            .sum();
        assert_eq!(total, 10);
        assert_eq!(Batch::single(s, 7).len(), 1);
    }

    /// A lineup of some parts of an interleave, on each of `threads` engine threads: every
    /// request of every member is dealt once, to the thread of its shard, with its member's own
    /// due time and sequence number; each thread's lineup is in due order (to the nanosecond
    /// each member's schedule rounds to), and its counts cover exactly what is due.
    #[test]
    fn a_lineup_deals_each_members_requests_once_in_due_order() {
        let nz = |w: &[u32]| -> Vec<std::num::NonZeroU32> {
            w.iter()
                .map(|&w| std::num::NonZeroU32::new(w).unwrap())
                .collect()
        };
        let start = Instant::now();
        let qps = 600.0;
        for (weights, parts) in [
            (&[1, 1, 1, 1][..], &[1, 3][..]),
            (&[1, 3, 2], &[0, 2]),
            (&[2, 3, 5], &[2, 0, 1]),
            (&[1, 1, 7, 1], &[2, 3]),
        ] {
            let il = crate::config::Interleave::weighted(&nz(weights)).unwrap();
            let own: Vec<Schedule> = parts
                .iter()
                .map(|&i| {
                    let shift = Duration::from_secs_f64(il.shift_secs(i, qps));
                    Schedule::new(
                        start + shift,
                        Rate::Fixed(Qps::new(il.rate_of(i, qps)).unwrap()),
                    )
                })
                .collect();
            let horizon = Duration::from_secs(1);
            for threads in [1, 2, 3] {
                let mut seen: Vec<Vec<u64>> = vec![Vec::new(); parts.len()];
                for thread in 0..threads {
                    let mine = own.iter().map(|s| s.shard(thread, threads)).collect();
                    let lineup = Lineup::dealt(start, &il, parts, mine, thread, threads);
                    let count = lineup.count_before(horizon).unwrap();
                    let mut last = start;
                    for g in 0..count + 10 {
                        let a = lineup.arrival(g, Instant::now);
                        let (m, local) = lineup.locate(g);
                        assert_eq!((a.member, a.local), (m, local));
                        assert_eq!(lineup.index_of(m, local), g);
                        assert_eq!(lineup.below(m, g), local);
                        let member = own[m].shard(thread, threads);
                        assert_eq!(
                            (a.seq, Some(a.due)),
                            (member.global_seq(local), member.due_at(local))
                        );
                        assert!(
                            a.due + Duration::from_nanos(2) >= last,
                            "{weights:?} {parts:?}: {g} out of order"
                        );
                        last = last.max(a.due);
                        if g < count {
                            seen[m].push(a.seq);
                        } else {
                            assert!(a.due >= start + horizon - Duration::from_nanos(2));
                        }
                    }
                    // The prefix holds everything due before the horizon, and ends with one
                    // of those.
                    let due = lineup.due_at(count - 1).unwrap();
                    assert!(due < start + horizon + Duration::from_nanos(2));
                }
                for (m, seqs) in seen.iter_mut().enumerate() {
                    seqs.sort_unstable();
                    let n = own[m].count_before(horizon.saturating_sub(own[m].start() - start));
                    assert_eq!(*seqs, (0..n.unwrap()).collect::<Vec<u64>>(), "{weights:?}");
                }
            }
        }
    }

    #[test]
    fn closed_loop_has_no_schedule() {
        let s = Schedule::new(Instant::now(), Rate::Max);
        assert_eq!(s.due_at(5), None);
        assert_eq!(s.count_before(Duration::from_secs(1)), None);
    }
}
