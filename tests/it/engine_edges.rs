//! The engine at the edges of its options: no value that reaches it panics, spins, grows without
//! bound or outstays its welcome. A run lasts its duration (not until its last request is
//! answered), ends within duration + timeout whatever the rate, always sees a signal, and a
//! report whose reader went away (`| head`) ends quietly with the run's own exit code.
//!
//! Values the command line may come to reject (a rate of 1e300, a timeout of `u64::MAX`
//! seconds) are set on the validated configuration directly, in process: the engine must hold
//! whatever it is given.

use std::io::Read;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::support;
use crate::support::{GAPLESS, Run, TestServer, at, counts_at, f64_at, refused_port, u64_at};
use gapless::cli::{Cli, Command as Verb};
use gapless::config::{Qps, Rate, RunConfig};
use gapless::internals::console::Console;
use gapless::run::Interruption;

/// The configuration of `gapless run URL ARGS...`, as the command line validates it today.
fn config(url: &str, args: &[&str]) -> RunConfig {
    let mut argv = vec!["gapless", "run", url];
    argv.extend_from_slice(args);
    let Verb::Run(run_args) = Cli::parse_from(argv).unwrap().command else {
        unreachable!("a run command");
    };
    run_args.validate(None, &|_| None).unwrap().config
}

/// Runs `config` in this process, interrupted after `interrupt_after` if given; returns the
/// result and how long the run took.
async fn run_in_process(
    config: &RunConfig,
    interrupt_after: Option<Duration>,
) -> (gapless::run::Finished, Duration) {
    let _machine = support::shared();
    let started = Instant::now();
    let interrupt = async move {
        match interrupt_after {
            Some(after) => {
                tokio::time::sleep(after).await;
                Interruption::Terminate
            }
            None => std::future::pending().await,
        }
    };
    let finished = gapless::run::run(config, Arc::new(Console::silent()), None, interrupt)
        .await
        .expect("the engine runs whatever configuration it is given");
    (finished, started.elapsed())
}

#[tokio::test]
async fn a_timeout_beyond_the_clock_neither_panics_nor_stretches_the_run() {
    // Before: `due + timeout` overflowed in a worker ("overflow when adding duration to
    // instant") and the run failed.
    let server = TestServer::healthy();
    let mut config = config(&server.url(), &["-q", "50", "-d", "500ms", "-c", "2"]);
    config.target.timeout = Duration::MAX;
    let (finished, took) = run_in_process(&config, None).await;
    assert_eq!(finished.recorder.total(), 25);
    assert_eq!(finished.recorder.ok(), 25);
    assert!(took < Duration::from_secs(5), "took {took:?}");
    assert_eq!(
        gapless::internals::verdict::judged(&finished)
            .verdict
            .exit_code,
        0
    );
}

#[tokio::test]
async fn a_rate_far_below_one_a_second_sends_one_request_and_lasts_its_duration() {
    // Before: the inter-request interval (1e20 s) panicked as a Duration.
    let server = TestServer::healthy();
    let mut config = config(&server.url(), &["-d", "300ms", "-c", "2"]);
    config.load.rate = Rate::Fixed(Qps::new(1e-20).unwrap());
    let (finished, took) = run_in_process(&config, None).await;
    assert_eq!(finished.recorder.total(), 1);
    assert_eq!(finished.recorder.ok(), 1);
    assert_eq!(server.stats().requests(), 1);
    assert!(took >= Duration::from_millis(300), "ended after {took:?}");
    assert!(finished.elapsed >= Duration::from_millis(300));
    assert_eq!(
        gapless::internals::verdict::judged(&finished)
            .verdict
            .exit_code,
        0
    );
}

#[tokio::test]
async fn a_rate_beyond_any_counter_ends_at_its_deadline_and_sees_an_interrupt() {
    // 1e300 req/s: every representable request is due in the first nanosecond. Before, counting
    // them overflowed (a panic in debug builds, an endless loop in release ones).
    let port = refused_port();
    let url = format!("http://127.0.0.1:{port}/");
    let mut config = config(&url, &["-d", "300ms", "--timeout", "200ms", "-c", "4"]);
    config.load.rate = Rate::Fixed(Qps::new(1e300).unwrap());
    let (finished, took) = run_in_process(&config, None).await;
    assert!(took < Duration::from_secs(3), "took {took:?}");
    assert!(finished.interruption.is_none());
    // Counted up to the schedule's maximum per engine thread: no counter could hold 1e300 × 0.3.
    let unsent = finished.recorder.unsent();
    assert!(
        unsent >= gapless::internals::schedule::MAX_REQUESTS,
        "{unsent}"
    );
    assert_eq!(finished.recorder.failed(), finished.recorder.total());
    assert_eq!(finished.recorder.ok(), 0);
    assert_eq!(
        gapless::internals::verdict::judged(&finished)
            .verdict
            .exit_code,
        1
    );
    // With a long duration and timeout, a signal still ends it at once.
    let mut config = config.clone();
    config.load.duration = Duration::from_secs(30);
    config.target.timeout = Duration::from_secs(30);
    let (finished, took) = run_in_process(&config, Some(Duration::from_millis(500))).await;
    assert!(
        took < Duration::from_secs(3),
        "the interrupt came at 500 ms; took {took:?}"
    );
    assert_eq!(finished.interruption, Some(Interruption::Terminate));
    assert_eq!(
        gapless::internals::verdict::judged(&finished)
            .verdict
            .exit_code,
        143
    );
}

#[test]
fn a_run_lasts_its_duration_even_when_its_last_request_is_done_early() {
    // -q 0.001 -d 1s: one request, at once; the load still lasts the second (before: 3 ms).
    let server = TestServer::healthy();
    let started = Instant::now();
    let (code, json) = Run::new(&server.url()).qps("0.001").duration("1s").json();
    let took = started.elapsed();
    assert_eq!(code, 0, "{json:#}");
    assert_eq!(u64_at(&json, "/requests/total"), 1);
    assert!(took >= Duration::from_secs(1), "ended after {took:?}");
    assert!(f64_at(&json, "/elapsed_ms") >= 1000.0, "{json:#}");
    assert_eq!(f64_at(&json, "/load/duration_ms"), 1000.0);
}

/// Runs `gapless ARGS...` with its stdout closed before it writes anything (`| head -c 0`);
/// returns the exit code and stderr.
fn run_with_stdout_closed(args: &[&str]) -> (i32, String) {
    let _machine = support::shared();
    let mut child = Command::new(GAPLESS)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the gapless binary should start");
    // The reader goes away at once.
    drop(child.stdout.take());
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .expect("stderr is piped")
        .read_to_string(&mut stderr)
        .expect("read stderr");
    let status = child.wait().expect("wait for gapless");
    (status.code().unwrap_or(-1), stderr)
}

#[test]
fn a_text_report_to_a_closed_pipe_ends_quietly_with_the_verdicts_code() {
    // `gapless run ... | true`. Before: a panic in print! (exit 101).
    let server = TestServer::healthy();
    let (code, stderr) = run_with_stdout_closed(&["run", &server.url(), "-q", "50", "-d", "300ms"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(!stderr.contains("cannot write"), "{stderr}");
    // A failing run keeps its own code.
    let url = format!("http://127.0.0.1:{}/", refused_port());
    let (code, stderr) = run_with_stdout_closed(&["run", &url, "-q", "50", "-d", "300ms"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn json_to_a_closed_pipe_ends_quietly_with_the_verdicts_code() {
    // `gapless run ... --json - | head -c 100`. Before: "cannot write report -", exit 2.
    let server = TestServer::healthy();
    let (code, stderr) = run_with_stdout_closed(&[
        "run",
        &server.url(),
        "-q",
        "50",
        "-d",
        "300ms",
        "--json",
        "-",
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert!(!stderr.contains("cannot write"), "{stderr}");
    // The text report still went to stderr.
    assert!(stderr.contains("PASS: every request succeeded"), "{stderr}");
}

/// Peak resident memory of a process in KiB (VmHWM), while it lives.
fn peak_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

#[cfg(target_os = "linux")]
#[test]
fn the_most_connections_allowed_cost_only_those_used() {
    let _machine = support::shared();
    // -c is a ceiling: workers are spawned as arrivals need them. Before, one task per
    // connection was spawned up front (24 GB at -c 100000000, which is now out of range: the
    // largest -c accepted is 10000).
    let server = TestServer::healthy();
    let mut child = Command::new(GAPLESS)
        .args(["run", &server.url(), "-q", "50", "-d", "1s", "-c", "10000"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("the gapless binary should start");
    let started = Instant::now();
    let mut peak = 0;
    let status = loop {
        if let Some(kib) = peak_kib(child.id()) {
            peak = peak.max(kib);
        }
        if let Some(status) = child.try_wait().expect("wait for gapless") {
            break status;
        }
        if started.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("-c 10000 did not finish in 30 s (peak {peak} KiB)");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    assert_eq!(status.code(), Some(0));
    assert!(peak < 100 * 1024, "peak RSS {peak} KiB for 50 requests");
    assert_eq!(server.stats().requests(), 50);
}

#[test]
fn an_impossible_rate_at_a_closed_port_ends_on_time_and_names_the_refusal() {
    // 1,000,000 req/s for 1 s on 2 connections at a port nothing listens on: the plan is warned
    // about before the load; the run ends within duration + timeout; every request is counted,
    // the ones never sent as not_sent (on no connection); the unreachable line says refused.
    let url = format!("http://127.0.0.1:{}/", refused_port());
    let started = Instant::now();
    let (code, stdout, stderr, json) = Run::new(&url)
        .qps(1_000_000)
        .connections(2)
        .duration("1s")
        .timeout("1s")
        .output();
    let took = started.elapsed();
    let json = json.unwrap_or_else(|| panic!("no JSON\n{stdout}\n{stderr}"));
    assert_eq!(code, 1, "{stderr}");
    // Duration 1 s + timeout 1 s, with a margin for a busy machine (and a debug build).
    assert!(took < Duration::from_secs(5), "took {took:?}");
    assert_eq!(u64_at(&json, "/requests/total"), 1_000_000);
    assert_eq!(u64_at(&json, "/requests/ok"), 0);
    assert_eq!(u64_at(&json, "/requests/failed"), 1_000_000);
    let errors = counts_at(&json, "/errors");
    let refused = support::count_at(&json, "/errors/connect_refused");
    let not_sent = support::count_at(&json, "/errors/not_sent");
    assert!(refused > 0 && not_sent > 0, "{errors:?}");
    assert_eq!(refused + not_sent, 1_000_000, "{errors:?}");
    assert_eq!(u64_at(&json, "/requests/unsent"), not_sent);
    // Only the attempts made were on (new) connections.
    assert_eq!(
        u64_at(&json, "/connections/failed_on_new_connections"),
        refused
    );
    assert_eq!(u64_at(&json, "/connections/connect_failures"), refused);
    // What was achieved is what was sent.
    let actual = f64_at(&json, "/actual_qps");
    assert!(actual * f64_at(&json, "/elapsed_ms") / 1000.0 <= refused as f64 + 1.0);
    // One warning before the load, in the report too; the cause is the refusal.
    let warning = "is far above what this plan can carry";
    assert_eq!(stderr.matches(warning).count(), 1, "{stderr}");
    assert!(
        at(&json, "/warnings").to_string().contains(warning),
        "{json:#}"
    );
    assert!(
        stdout.contains(warning),
        "the text report says it too:\n{stdout}"
    );
    assert!(
        stderr.contains(&format!(
            "nothing accepts connections on 127.0.0.1:{} (connection refused)",
            url.trim_end_matches('/')
                .rsplit(':')
                .next()
                .unwrap_or_default()
        )),
        "{stderr}"
    );
}
