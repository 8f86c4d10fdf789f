//! Between pacer ticks the engine thread naps without watching its sockets (one wake-up per tick
//! instead of one more per batch of responses), and a response that arrives during a nap keeps
//! its true completion time: the kernel's receive timestamp, not the moment the thread woke.
//!
//! At 1,000 req/s the pacer ticks every millisecond. A response from a loopback server arrives
//! some tens of microseconds after its request, while the thread naps until the next tick. Timed
//! when it is read, its service time would be close to a millisecond; timed from the kernel's
//! receive time, it stays at what the server took.

mod support;

use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use gapless::cli::{Cli, Command};
use gapless::console::Console;
use support::{Reply, TestServer};

/// Runs `gapless run URL ARGS...` in this process and returns what it measured.
async fn run_in_process(url: &str, args: &[&str]) -> gapless::run::Finished {
    let mut argv = vec!["gapless", "run", url];
    argv.extend_from_slice(args);
    let Command::Run(run_args) = Cli::try_parse_from(argv).unwrap().command else {
        unreachable!("a run command");
    };
    let target = run_args.target_url(None).unwrap().unwrap();
    let (config, _) = run_args.validate(target, None).unwrap();
    gapless::run::run(
        &config,
        Arc::new(Console::silent()),
        None,
        std::future::pending(),
    )
    .await
    .unwrap()
}

#[cfg(target_os = "linux")]
#[tokio::test]
async fn naps_between_ticks_and_times_responses_by_their_arrival() {
    let server = TestServer::http(|_| Reply::ok());
    let finished = run_in_process(&server.url(), &["-q", "1000", "-d", "2s", "-c", "4"]).await;

    let recorder = &finished.recorder;
    assert_eq!(recorder.total(), 2000);
    assert_eq!(recorder.ok(), 2000, "every request answered 200");
    assert_eq!(server.stats().requests(), 2000);
    // Nearly every tick ends in a nap; a busy machine can cost a few hundred of them.
    assert!(
        finished.stats.naps >= 500,
        "{} naps in 2,000 ticks",
        finished.stats.naps
    );
    // Read when the thread woke, the median would be most of a 1 ms tick.
    let service_p50 = Duration::from_micros(recorder.service().value_at_quantile(0.5));
    assert!(
        service_p50 < Duration::from_micros(400),
        "service time p50 {service_p50:?}: responses timed when read, not when they arrived"
    );
}

/// HTTP/2 multiplexes streams on one connection, so a receive time per read cannot be pinned on
/// one stream: the engine never naps there.
#[tokio::test]
async fn never_naps_over_http2() {
    let server = TestServer::http(|_| Reply::ok());
    let finished = run_in_process(
        &server.url(),
        &["-q", "500", "-d", "1s", "-c", "2", "--http2"],
    )
    .await;
    assert_eq!(finished.recorder.ok(), 500);
    assert_eq!(server.stats().h2_requests(), 500);
    assert_eq!(finished.stats.naps, 0);
}
