//! What waking up costs on this machine: the CPU time a thread is charged per sleep, for a few
//! sleep lengths, against a system call that does not sleep (`sched_yield` with nothing else to
//! run).
//!
//! This is the number behind the engine's naps (`src/stamped.rs`, `src/engine.rs`): on a small
//! VM a thread that sleeps and wakes is charged tens of microseconds of CPU per wake-up, more than
//! a request costs, whatever the length of the sleep. Between pacer ticks the engine therefore
//! sleeps once per tick, not once more for each batch of responses.
//!
//! Run with `cargo bench --bench wake` (about 10 s, Linux; elsewhere it prints nothing). The CPU
//! time is the thread's own (`getrusage(RUSAGE_THREAD)`, user + system), so the machine's other
//! work does not count; run it on a quiet machine all the same. Results are in `BENCHMARKS.md`.

#[cfg(target_os = "linux")]
use std::time::{Duration, Instant};

fn main() {
    #[cfg(target_os = "linux")]
    {
        // The engine thread sleeps with a 1 µs timer slack; so do these.
        let _ = rustix::thread::set_current_timer_slack(std::num::NonZeroU64::new(1_000));
        println!("| call | calls | wall per call µs | CPU per call µs |");
        println!("|---|---:|---:|---:|");
        measure("sched_yield (no sleep)", 200_000, std::thread::yield_now);
        for (micros, count) in [(50u64, 20_000u32), (400, 10_000), (2_000, 2_000)] {
            let sleep = Duration::from_micros(micros);
            measure(&format!("sleep {micros} µs"), count, || {
                std::thread::sleep(std::hint::black_box(sleep))
            });
        }
    }
}

/// Runs `call` `count` times and prints a table row: wall and CPU time per call.
#[cfg(target_os = "linux")]
fn measure(name: &str, count: u32, mut call: impl FnMut()) {
    let cpu_before = thread_cpu();
    let started = Instant::now();
    for _ in 0..count {
        call();
    }
    let wall = started.elapsed();
    let cpu = thread_cpu() - cpu_before;
    println!(
        "| {name} | {count} | {:.1} | {:.2} |",
        wall.as_secs_f64() * 1e6 / f64::from(count),
        cpu.as_secs_f64() * 1e6 / f64::from(count)
    );
}

/// CPU time (user + system) of the calling thread so far.
#[cfg(target_os = "linux")]
fn thread_cpu() -> Duration {
    // SAFETY: `getrusage` fills the `rusage` it is given; all zeroes is a valid value for it.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_THREAD, &mut usage);
        usage
    };
    let micros = |t: libc::timeval| t.tv_sec as u64 * 1_000_000 + t.tv_usec as u64;
    Duration::from_micros(micros(usage.ru_utime) + micros(usage.ru_stime))
}
