//! Between pacer ticks the engine thread naps without watching its sockets (one wake-up per tick
//! instead of one more per batch of responses), and a response that arrives during a nap keeps
//! its true completion time: the kernel's receive timestamp, not the moment the thread woke.
//!
//! It does not nap while a transfer is under way that a nap would slow down: a connect, a
//! request the socket could not take at once, or a response body still arriving.
//!
//! At 1,000 req/s the pacer ticks every millisecond. A response from a loopback server arrives
//! some tens of microseconds after its request, while the thread naps until the next tick. Timed
//! when it is read, its service time would be close to a millisecond; timed from the kernel's
//! receive time, it stays at what the server took.

use std::sync::Arc;
use std::time::Duration;

use crate::support;
use crate::support::{Reply, TestServer};
use gapless::cli::{Cli, Command};
use gapless::config::RunConfig;
use gapless::internals::console::Console;

/// The configuration of `gapless run URL ARGS...`.
fn config(url: &str, args: &[&str]) -> RunConfig {
    let mut argv = vec!["gapless", "run", url];
    argv.extend_from_slice(args);
    let Command::Run(run_args) = Cli::parse_from(argv).unwrap().command else {
        unreachable!("a run command");
    };
    run_args.validate(None, &|_| None).unwrap().config
}

/// Runs `gapless run URL ARGS...` in this process and returns what it measured.
///
/// The machine is held alone meanwhile: the checks are of sub-millisecond service times at
/// 1,000 requests per second, which another test's load on the same two cores would disturb.
async fn run_in_process(url: &str, args: &[&str]) -> gapless::run::Finished {
    let _machine = support::exclusive();
    let config = config(url, args);
    let console = Arc::new(Console::silent());
    gapless::run::run(&config, console, None, std::future::pending())
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
    // Nearly every tick ends in a nap when the thread has a core; a thread that waits for one
    // parks with the next tick already due, and does not nap (seen: 415 of 2,000 beside
    // `stress-ng --cpu 2`). Napping broken is none at all.
    assert!(
        finished.stats.naps >= 100,
        "{} naps in 2,000 ticks",
        finished.stats.naps
    );
    // Read when the thread woke, the median would be most of a 1 ms tick.
    let service_p50 = Duration::from_micros(recorder.service().value_at_quantile(0.5));
    assert!(
        service_p50 < Duration::from_micros(400),
        "service time p50 {service_p50:?}: responses timed when read, not when they arrived"
    );
    // A nap ends when the pacer wakes: it never holds back a send.
    let lateness_p50 = Duration::from_micros(recorder.lateness().value_at_quantile(0.5));
    assert!(
        lateness_p50 < Duration::from_micros(400),
        "send lateness p50 {lateness_p50:?}: a nap held back the sends"
    );
}

/// A server without `TCP_NODELAY` that writes the head and a 64 KiB body separately: Nagle holds
/// the body's last piece until the head is acknowledged, and a socket nobody watches
/// acknowledges late. After the first response that arrives in pieces the engine stops napping
/// on this target, so the service time stays what the server takes.
#[cfg(target_os = "linux")]
#[tokio::test]
async fn stops_napping_once_a_response_arrives_in_pieces() {
    use tokio::io::AsyncWriteExt;
    const BODY: usize = 64 << 10;
    let server = TestServer::raw(|mut stream| async move {
        let head = format!("HTTP/1.1 200 OK\r\ncontent-length: {BODY}\r\n\r\n");
        let body = vec![b'x'; BODY];
        while support::read_request_head(&mut stream).await {
            if stream.write_all(head.as_bytes()).await.is_err()
                || stream.write_all(&body).await.is_err()
            {
                return;
            }
        }
    });
    let finished = run_in_process(&server.url(), &["-q", "1000", "-d", "2s", "-c", "8"]).await;
    let recorder = &finished.recorder;
    assert_eq!(recorder.ok(), 2000);
    assert_eq!(finished.stats.body_bytes, 2000 * BODY as u64);
    // Napping through the Nagle wait puts the median near 1 ms (the rest of the tick after
    // the send). Without it the median is what the server and the kernel take for 64 KiB, which
    // beside `stress-ng --cpu 2` reached 401 µs: 700 µs lies between the two.
    let service_p50 = Duration::from_micros(recorder.service().value_at_quantile(0.5));
    assert!(
        service_p50 < Duration::from_micros(700),
        "service time p50 {service_p50:?}: naps held the response back"
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

#[cfg(target_os = "linux")]
mod transfers {
    use std::num::NonZeroU32;
    use std::sync::atomic::AtomicU64;

    use bytes::Bytes;
    use gapless::internals::connection::{Connector, Link, RequestTemplate};
    use gapless::internals::version::VersionProbe;
    use tokio::io::AsyncWriteExt;
    use tokio::sync::mpsc;
    use tokio::task::JoinSet;

    use super::*;

    fn connector(url: &str) -> Connector {
        let target = config(url, &[]).target;
        let rate = NonZeroU32::new(100).unwrap();
        Connector::new(&target, rate, rate).unwrap()
    }

    /// A `POST` of `body` to `url`.
    fn request(url: &str, body: Bytes) -> RequestTemplate {
        let mut target = config(url, &["-X", "POST"]).target;
        target.body = body;
        RequestTemplate::new(&target)
    }

    /// A response whose body arrives in two parts, 300 ms apart: between them the body is a
    /// transfer under way, and the engine must not nap.
    #[tokio::test]
    async fn a_body_still_arriving_is_a_transfer() {
        let (head_sent, mut head_rx) = mpsc::channel::<()>(1);
        let server = TestServer::raw(move |mut stream| {
            let head_sent = head_sent.clone();
            async move {
                if !support::read_request_head(&mut stream).await {
                    return;
                }
                let head = "HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nhello";
                let _ = stream.write_all(head.as_bytes()).await;
                let _ = head_sent.send(()).await;
                tokio::time::sleep(Duration::from_millis(300)).await;
                let _ = stream.write_all(b"world").await;
                support::wait_for_close(&mut stream).await;
            }
        });
        let connector = connector(&server.url());
        let mut drivers = JoinSet::new();
        let mut link: Link = connector.connect(&mut drivers).await.unwrap();
        assert_eq!(connector.activity().transfers(), 0, "connected");

        let (probe, received) = (VersionProbe::new(None, None), AtomicU64::new(0));
        let request = request(&server.url(), Bytes::new());
        let exchange = link.exchange(&request, &probe, &received);
        let during = async {
            head_rx.recv().await.unwrap();
            tokio::time::sleep(Duration::from_millis(100)).await;
            connector.activity().transfers()
        };
        let (reply, during) = tokio::join!(exchange, during);
        assert_eq!(reply.unwrap().body_bytes, 10);
        assert_eq!(during, 1, "half a body in, the transfer is under way");
        assert_eq!(connector.activity().transfers(), 0, "the body is complete");
    }

    /// A request body larger than the socket buffers, to a server that does not read: the
    /// blocked write is a transfer under way until the connection is gone.
    #[tokio::test]
    async fn a_blocked_write_is_a_transfer() {
        let server = TestServer::raw(|stream| async move {
            // Never read: the client's writes fill the buffers and block. (Dropping the server
            // drops the connection.)
            tokio::time::sleep(Duration::from_secs(30)).await;
            drop(stream);
        });
        let connector = connector(&server.url());
        let mut drivers = JoinSet::new();
        let mut link = connector.connect(&mut drivers).await.unwrap();
        let (probe, received) = (VersionProbe::new(None, None), AtomicU64::new(0));
        let body = Bytes::from(vec![b'x'; 64 << 20]);
        let request = request(&server.url(), body);
        let exchange = link.exchange(&request, &probe, &received);
        let blocked = tokio::time::timeout(Duration::from_millis(500), exchange).await;
        assert!(blocked.is_err(), "64 MiB cannot fit in the socket buffers");
        assert_eq!(connector.activity().transfers(), 1, "the write is blocked");
        drop(link);
        assert_eq!(
            connector.activity().transfers(),
            0,
            "the connection is gone"
        );
    }
}
