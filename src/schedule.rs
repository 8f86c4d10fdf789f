//! The absolute send schedule: request `k` is due at `start + k / qps`.
//!
//! Due times are computed from `k`, never accumulated, so a long run does not drift, and the
//! number of requests in `[start, start + d)` is exactly `ceil(qps × d)`.
//!
//! A schedule can be one shard of a larger one: shard `phase` of `stride` owns the requests
//! `k ≡ phase (mod stride)`, so several engine threads share one rate without sharing state.
//! Methods take and return *local* indices `j`; the global sequence number is
//! `j × stride + phase`.

use std::time::{Duration, Instant};

use crate::config::Rate;

/// One request the schedule wants sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Arrival {
    /// Sequence number, from 0.
    pub seq: u64,
    /// Intended send time. Latency is measured from here.
    pub due: Instant,
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
        local * self.stride + self.phase
    }

    /// When the run started.
    pub fn start(&self) -> Instant {
        self.start
    }

    /// The rate.
    pub fn rate(&self) -> Rate {
        self.rate
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
        let qps = self.rate.qps()?;
        // Rounded up to the nanosecond so that `count_before(offset_of(k)) == k` holds exactly.
        Some(Duration::from_nanos((seq as f64 * 1e9 / qps).ceil() as u64))
    }

    /// Intended send time of local request `local` (`None` for a closed loop).
    pub fn due_at(&self, local: u64) -> Option<Instant> {
        self.offset_of(local).map(|o| self.start + o)
    }

    /// How many of this shard's requests are due strictly before `offset` from the start: the
    /// request count of a run that lasts `offset`. `None` for a closed loop.
    pub fn count_before(&self, offset: Duration) -> Option<u64> {
        let qps = self.rate.qps()?;
        let guess = (offset.as_secs_f64() * qps).ceil().max(0.0) as u64;
        // Correct the float estimate against the exact definition (at most a step or two).
        let mut global = guess.saturating_sub(2);
        while self.global_offset(global).is_some_and(|o| o < offset) {
            global += 1;
        }
        // Of the global requests 0..global, those with seq ≡ phase (mod stride).
        Some((global + self.stride - 1 - self.phase.min(global + self.stride - 1)) / self.stride)
    }

    /// How many requests are due at or before `now`. `None` for a closed loop.
    pub fn count_due(&self, now: Instant) -> Option<u64> {
        let elapsed = now.saturating_duration_since(self.start);
        self.count_before(elapsed + Duration::from_nanos(1))
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
    fn closed_loop_has_no_schedule() {
        let s = Schedule::new(Instant::now(), Rate::Max);
        assert_eq!(s.due_at(5), None);
        assert_eq!(s.count_before(Duration::from_secs(1)), None);
    }
}
