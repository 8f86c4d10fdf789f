//! How the requests of one global schedule are dealt out to its parts: the shards of a split
//! load (`--shards`, equal parts) or the endpoints of a run of several (`[[target]]`, equal or
//! weighted parts).
//!
//! Each part keeps an absolute schedule of its own, evenly spaced: part `i` of `n`, with weight
//! `w_i` of the total `W = Σ w`, sends at `qps_i = qps × w_i / W`, its request `j` due at
//! `start + (j + i / n) / qps_i`. The global order is those due times sorted (ties to the lower
//! part), which repeats every `W` requests: a cycle of `W` positions, `w_i` of them part `i`'s.
//! With equal weights the cycle is `0, 1, …, n - 1`: part `i` sends the requests `k mod n == i`,
//! due at `start + k / qps`, exactly the run's own schedule.
//!
//! Because each part's schedule is even, any span of time holds each part's share of it to
//! within one request; and because every request's due time is fixed in advance, a slow part
//! delays no other (no coordinated omission across parts).

use std::num::NonZeroU32;

/// Most positions in one cycle of a weighted interleave (the sum of the weights): its tables
/// take 8 bytes per position.
pub const MAX_PERIOD: u64 = 1 << 16;

/// The weights of an interleave sum to more than [`MAX_PERIOD`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "the weights sum to {0} (reduced), more than {MAX_PERIOD}: give smaller weights, or rates \
     with fewer decimals"
)]
pub struct TooFine(pub u64);

/// The parts of one global schedule and the requests each sends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Interleave {
    /// Weight of each part (all 1: equal parts).
    weights: Vec<u32>,
    /// Where each part's positions start in `positions`.
    offsets: Vec<u32>,
    /// Each part's positions in the cycle, in order, part after part.
    positions: Vec<u32>,
    /// The part at each position of the cycle.
    owners: Vec<u32>,
}

impl Interleave {
    /// `n` equal parts: part `i` sends the requests `k mod n == i`.
    pub fn equal(n: NonZeroU32) -> Interleave {
        let n = n.get();
        Interleave {
            weights: vec![1; n as usize],
            offsets: (0..n).collect(),
            positions: (0..n).collect(),
            owners: (0..n).collect(),
        }
    }

    /// Parts with these weights, reduced by their greatest common divisor; an error when their
    /// sum is more than [`MAX_PERIOD`].
    pub fn weighted(weights: &[NonZeroU32]) -> Result<Interleave, TooFine> {
        let g = weights
            .iter()
            .fold(0u64, |g, w| gcd(g, u64::from(w.get())))
            .max(1);
        let weights: Vec<u32> = weights
            .iter()
            .map(|w| (u64::from(w.get()) / g) as u32)
            .collect();
        let period: u64 = weights.iter().map(|&w| u64::from(w)).sum();
        if period > MAX_PERIOD {
            return Err(TooFine(period));
        }
        let n = weights.len() as u64;
        // Part i's m-th request of a cycle falls at (m + i / n) / w_i of it: compare
        // (m·n + i) / (n·w_i) exactly.
        let mut slots: Vec<(u32, u32)> = weights
            .iter()
            .enumerate()
            .flat_map(|(i, &w)| (0..w).map(move |m| (i as u32, m)))
            .collect();
        let key = |&(i, m): &(u32, u32)| (u64::from(m) * n + u64::from(i), weights[i as usize]);
        slots.sort_by(|a, b| {
            let ((x, wa), (y, wb)) = (key(a), key(b));
            (u128::from(x) * u128::from(wb))
                .cmp(&(u128::from(y) * u128::from(wa)))
                .then(a.0.cmp(&b.0))
        });
        let owners: Vec<u32> = slots.iter().map(|&(i, _)| i).collect();
        let mut offsets = Vec::with_capacity(weights.len());
        let mut at = 0u32;
        for &w in &weights {
            offsets.push(at);
            at += w;
        }
        let mut positions = vec![0u32; owners.len()];
        for (p, &(i, m)) in slots.iter().enumerate() {
            positions[(offsets[i as usize] + m) as usize] = p as u32;
        }
        Ok(Interleave {
            weights,
            offsets,
            positions,
            owners,
        })
    }

    /// How many parts.
    pub fn parts(&self) -> usize {
        self.weights.len()
    }

    /// Positions in one cycle (the sum of the weights).
    pub fn period(&self) -> u64 {
        self.owners.len() as u64
    }

    /// Part `i`'s weight (reduced).
    pub fn weight(&self, i: usize) -> u32 {
        self.weights.get(i).copied().unwrap_or(0)
    }

    /// Part `i`'s share of the requests, `w_i / W`.
    pub fn share(&self, i: usize) -> f64 {
        f64::from(self.weight(i)) / self.period().max(1) as f64
    }

    /// True when every part has the same weight.
    pub fn is_equal(&self) -> bool {
        self.weights.iter().all(|&w| w == 1)
    }

    /// Part `i`'s own rate when the whole schedule runs at `qps`.
    pub fn rate_of(&self, i: usize, qps: f64) -> f64 {
        qps * f64::from(self.weight(i)) / self.period().max(1) as f64
    }

    /// Seconds from the schedule's start to part `i`'s first request, at `qps` in all:
    /// `(i / n) / qps_i` (`i / qps` with equal parts).
    pub fn shift_secs(&self, i: usize, qps: f64) -> f64 {
        let n = self.parts() as f64;
        (i as f64) * self.period() as f64 / (n * f64::from(self.weight(i).max(1))) / qps
    }

    fn mine(&self, i: usize) -> &[u32] {
        let from = self.offsets[i] as usize;
        &self.positions[from..from + self.weights[i] as usize]
    }

    /// The global sequence number of part `i`'s request `j`.
    pub fn global(&self, i: usize, j: u64) -> u64 {
        let w = u64::from(self.weights[i]);
        let p = u64::from(self.mine(i)[(j % w) as usize]);
        (j / w).saturating_mul(self.period()).saturating_add(p)
    }

    /// The part that sends global request `k`.
    pub fn owner(&self, k: u64) -> usize {
        self.owners[(k % self.period()) as usize] as usize
    }

    /// How many of part `i`'s requests come before global request `z`.
    pub fn members_below(&self, i: usize, z: u64) -> u64 {
        let period = self.period();
        let r = (z % period) as u32;
        (z / period) * u64::from(self.weights[i]) + self.mine(i).partition_point(|&p| p < r) as u64
    }

    /// When global request `k` is due, in units of the whole schedule's interval `1 / qps`:
    /// `k` itself with equal parts; with weights, its part's own even schedule, so it may fall
    /// a fraction of an interval off `k`.
    pub fn due_in_intervals(&self, k: u64) -> f64 {
        if self.is_equal() {
            return k as f64;
        }
        let i = self.owner(k);
        let j = self.members_below(i, k);
        let n = self.parts() as f64;
        (j as f64 * n + i as f64) * self.period() as f64 / (n * f64::from(self.weights[i]))
    }

    /// True when every part sends at least one of the requests `[a, b)`.
    pub fn covers_every_part(&self, a: u64, b: u64) -> bool {
        (0..self.parts()).all(|i| self.members_below(i, b) > self.members_below(i, a))
    }
}

/// The greatest common divisor of `a` and `b` (`a` when `b` is 0).
pub fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 { a } else { gcd(b, a % b) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nz(v: &[u32]) -> Vec<NonZeroU32> {
        v.iter().map(|&w| NonZeroU32::new(w).unwrap()).collect()
    }

    #[test]
    fn equal_parts_are_k_mod_n() {
        let il = Interleave::equal(NonZeroU32::new(4).unwrap());
        assert_eq!(il, Interleave::weighted(&nz(&[3, 3, 3, 3])).unwrap());
        for k in 0..100u64 {
            assert_eq!(il.owner(k), (k % 4) as usize);
            assert_eq!(il.due_in_intervals(k), k as f64);
        }
        assert_eq!(il.global(1, 2), 9);
        assert_eq!(il.members_below(1, 10), 3); // 1, 5, 9
        assert_eq!(il.members_below(3, 3), 0);
        assert_eq!(il.members_below(3, 4), 1);
        assert_eq!(il.shift_secs(3, 100.0), 0.03);
    }

    /// Every global request is sent once, by the part whose own even schedule has it, and the
    /// global order is the order of the parts' due times.
    #[test]
    fn weighted_parts_send_every_request_once_in_due_order() {
        for weights in [&[1, 3][..], &[2, 3, 5], &[1, 1, 7], &[5, 1], &[4, 6]] {
            let il = Interleave::weighted(&nz(weights)).unwrap();
            let n = il.parts();
            let end = il.period() * 7 + 3;
            let mut seen = vec![false; end as usize];
            for i in 0..n {
                for j in 0..il.members_below(i, end) {
                    let k = il.global(i, j);
                    assert_eq!(il.owner(k), i);
                    assert_eq!(il.members_below(i, k), j);
                    assert!(!seen[k as usize], "{weights:?}: {k} twice");
                    seen[k as usize] = true;
                }
            }
            assert!(seen.iter().all(|&s| s), "{weights:?}");
            let dues: Vec<f64> = (0..end).map(|k| il.due_in_intervals(k)).collect();
            assert!(
                dues.windows(2).all(|d| d[0] <= d[1]),
                "{weights:?}: {dues:?}"
            );
        }
    }

    /// In any span of the global order, each part has its share of the requests to within
    /// one (plus the rounding of the span's ends to whole requests).
    #[test]
    fn any_span_holds_each_parts_share_within_one() {
        for weights in [&[1, 3][..], &[2, 3, 5], &[1, 1, 7], &[10, 1, 1, 1]] {
            let il = Interleave::weighted(&nz(weights)).unwrap();
            let end = il.period() * 5;
            for a in 0..il.period() {
                for b in a..end {
                    let (ta, tb) = (il.due_in_intervals(a), il.due_in_intervals(b));
                    for i in 0..il.parts() {
                        let got = (il.members_below(i, b) - il.members_below(i, a)) as f64;
                        let want = (tb - ta) * il.share(i);
                        assert!(
                            (got - want).abs() <= 1.0 + 1e-9,
                            "{weights:?} [{a}, {b}) part {i}: {got} vs {want}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn weights_are_reduced_and_bounded() {
        let il = Interleave::weighted(&nz(&[100, 300])).unwrap();
        assert_eq!((il.period(), il.weight(0), il.weight(1)), (4, 1, 3));
        assert_eq!(il.rate_of(1, 400.0), 300.0);
        assert!(il.covers_every_part(0, 4));
        assert!(!il.covers_every_part(1, 4), "{:?}", il.owners);
        assert_eq!(
            Interleave::weighted(&nz(&[65_536, 1])),
            Err(TooFine(65_537))
        );
    }
}
