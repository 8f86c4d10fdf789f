//! Micro-benchmarks of the per-request bookkeeping on gapless's hot path.
//!
//! * `recorder/record`: [`Recorder::record`] over a pre-generated batch of 10,000 completions
//!   whose due times are spread over 60 s, with varied lateness and latency and a mix of
//!   outcomes (mostly `200`, about 1 % `503`, about 0.2 % connection resets). Two variants:
//!   `warm` feeds the batch to one long-lived recorder (the steady state of a long run), `fresh`
//!   builds a new recorder for every batch (first-touch cost of histograms and timeline slots
//!   included; building the recorder itself is not timed).
//! * `schedule/due_at` and `schedule/count_due`: the schedule arithmetic the pacer does for
//!   every request, at 20,000 req/s, 1,000 calls per iteration.
//!
//! Throughput is reported in elements (completions or calls) per second. Run with
//! `cargo bench --bench record` (add `-- --quick` for a fast check). Results are recorded in
//! `BENCHMARKS.md`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use gapless::config::{OkCodes, Qps, Rate};
use gapless::internals::gaps::GapDetector;
use gapless::internals::outcome::{Completion, ConnectionUse, ErrorClass, Outcome};
use gapless::internals::recorder::{Phase, Recorder};
use gapless::internals::schedule::Schedule;
use gapless::internals::timeline::Timeline;

/// Completions per recorded batch.
const BATCH: u64 = 10_000;
/// The batch's due times are spread evenly over this span.
const SPAN: Duration = Duration::from_secs(60);
/// Schedule calls per iteration.
const CALLS: u64 = 1_000;
/// The rate of the schedule benchmarks.
const QPS: f64 = 20_000.0;

/// A small deterministic generator (SplitMix64), so every run records the same batch.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n`.
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// 10,000 completions due evenly over 60 s from `start`.
///
/// Lateness is mostly tens of microseconds with about 1 % over a millisecond; latency is
/// roughly log-uniform from 50 µs to 50 ms. Outcomes: about 98.8 % `200`, 1 % `503`, 0.2 %
/// `Reset`. About 1 in 500 attempts is on a new connection.
fn completions(start: Instant) -> Vec<Completion> {
    let mut rng = SplitMix(0x5EED);
    let step = SPAN / BATCH as u32;
    (0..BATCH)
        .map(|seq| {
            let due = start + step * seq as u32;
            let late_us = if rng.below(100) == 0 {
                1_000 + rng.below(5_000)
            } else {
                rng.below(80)
            };
            let sent = due + Duration::from_micros(late_us);
            // 50 µs × 2^(0..10) × (1..2): 50 µs to ~100 ms, heavier at the low end.
            let latency_us = (50 << rng.below(10)) * (1_000 + rng.below(1_000)) / 1_000;
            let done = sent + Duration::from_micros(latency_us);
            let outcome = match rng.below(1_000) {
                0..=1 => Outcome::Failed(ErrorClass::Reset),
                2..=11 => Outcome::Status(503),
                _ => Outcome::Status(200),
            };
            let connection = if rng.below(500) == 0 {
                ConnectionUse::New
            } else {
                ConnectionUse::Reused
            };
            Completion {
                seq,
                due,
                sent: Some(sent),
                done,
                outcome,
                connection,
                body_bytes: 3,
                version: None,
                envoy: None,
            }
        })
        .collect()
}

/// A recorder as a run without steps makes it, finding windows at 1 ms per request.
fn recorder(start: Instant, slot: Duration) -> Recorder {
    Recorder::new(
        start,
        Timeline::new(slot),
        OkCodes::default(),
        Phase::Load,
        GapDetector::new(Duration::ZERO, Duration::from_millis(1)),
    )
}

fn bench_record(c: &mut Criterion) {
    let start = Instant::now();
    let batch = completions(start);
    let slot = Duration::from_secs(1);

    let mut group = c.benchmark_group("recorder/record");
    group.throughput(Throughput::Elements(BATCH));
    let mut warm = recorder(start, slot);
    group.bench_function("warm", |b| {
        b.iter(|| {
            for completion in &batch {
                warm.record(black_box(completion));
            }
        });
    });
    group.bench_function("fresh", |b| {
        b.iter_batched_ref(
            || recorder(start, slot),
            |recorder| {
                for completion in &batch {
                    recorder.record(black_box(completion));
                }
            },
            BatchSize::LargeInput,
        );
    });
    group.finish();
    black_box(warm.total());
}

fn bench_schedule(c: &mut Criterion) {
    let start = Instant::now();
    let rate = Rate::Fixed(Qps::new(QPS).unwrap_or_else(|| unreachable!("positive rate")));
    let schedule = Schedule::new(start, rate);
    // Instants spread over 60 s, so `count_due` sees large and small offsets alike.
    let step = SPAN / CALLS as u32;
    let nows: Vec<Instant> = (0..CALLS)
        .map(|i| start + step * i as u32 + Duration::from_nanos(i * 7_919 % 50_000))
        .collect();

    let mut group = c.benchmark_group("schedule");
    group.throughput(Throughput::Elements(CALLS));
    let mut base = 0_u64;
    group.bench_function("due_at", |b| {
        b.iter(|| {
            for k in base..base + CALLS {
                black_box(schedule.due_at(black_box(k)));
            }
            // Walk forward through a 60 s run's worth of indices, then wrap.
            base = (base + CALLS) % (QPS as u64 * SPAN.as_secs());
        });
    });
    group.bench_function("count_due", |b| {
        b.iter(|| {
            for &now in &nows {
                black_box(schedule.count_due(black_box(now)));
            }
        });
    });
    group.finish();
}

criterion_group!(benches, bench_record, bench_schedule);
criterion_main!(benches);
