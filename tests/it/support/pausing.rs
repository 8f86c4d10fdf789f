//! A userspace TCP proxy that stops forwarding for a while: a target that goes silent without
//! root, firewall rules or a paused process. [`PausingProxy`] forwards every byte between its
//! loopback port and an upstream, and has a control port like [`FaultServer`](super::FaultServer)'s:
//! the first connection made to it starts a pause, `after` the call, for `length` on the proxy's
//! own clock. During the pause every connection is held open (new ones are accepted too) and
//! nothing is forwarded in either direction; the bytes read meanwhile are forwarded when it ends.
//! The pause's start and end are also logged on the wall clock (Unix milliseconds), to compare
//! with a run's `started_at_unix_ms`.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinSet;

use super::FAULT_ACK_DELAY;

/// The pause, as the proxy's thread and the test see it.
#[derive(Debug, Default)]
struct PauseShared {
    /// Connections made to the control port.
    triggers: AtomicU64,
    /// Connections accepted on the proxy's port.
    connections: AtomicU64,
    /// When the pause began and ended, Unix milliseconds (the end once it ended).
    window_unix_ms: Mutex<(Option<f64>, Option<f64>)>,
}

/// A forwarding proxy on `127.0.0.1:0` to `upstream` that pauses once on request. Stopped on
/// drop.
pub struct PausingProxy {
    port: u16,
    control_port: u16,
    shared: Arc<PauseShared>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl PausingProxy {
    /// Starts forwarding to `upstream`; the control port's first caller starts a pause `after`
    /// the call that lasts `length`.
    pub fn start(upstream: SocketAddr, after: Duration, length: Duration) -> PausingProxy {
        let listener =
            std::net::TcpListener::bind("127.0.0.1:0").expect("bind the proxy's loopback port");
        let control =
            std::net::TcpListener::bind("127.0.0.1:0").expect("bind the control loopback port");
        let port = listener.local_addr().expect("the proxy's address").port();
        let control_port = control.local_addr().expect("the control address").port();
        for l in [&listener, &control] {
            l.set_nonblocking(true)
                .expect("a tokio listener must be non-blocking");
        }
        let shared = Arc::new(PauseShared::default());
        let (stop, stopped) = oneshot::channel();
        let thread = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name(format!("pausing-proxy-{port}"))
                .spawn(move || {
                    tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .expect("a proxy runtime")
                        .block_on(proxy(
                            listener, control, upstream, after, length, shared, stopped,
                        ));
                })
                .expect("spawn the proxy thread")
        };
        PausingProxy {
            port,
            control_port,
            shared,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// `http://127.0.0.1:PORT/`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/", self.port)
    }

    /// A shell command that starts the pause: it dials the control port with bash's `/dev/tcp`
    /// and waits for the proxy's `on` ([`FAULT_ACK_DELAY`] after the pause began), so the step
    /// is still running when the pause starts. Fails if no `on` comes.
    pub fn trigger_command(&self) -> String {
        super::dial_control(self.control_port)
    }

    /// Connections made to the control port so far.
    pub fn triggers(&self) -> u64 {
        self.shared.triggers.load(Ordering::SeqCst)
    }

    /// Connections accepted on the proxy's port so far.
    pub fn connections(&self) -> u64 {
        self.shared.connections.load(Ordering::SeqCst)
    }

    /// When the pause began and ended, Unix milliseconds; `None` until it ended.
    pub fn pause_unix_ms(&self) -> Option<(f64, f64)> {
        match *self
            .shared
            .window_unix_ms
            .lock()
            .unwrap_or_else(|e| e.into_inner())
        {
            (Some(from), Some(to)) => Some((from, to)),
            _ => None,
        }
    }
}

impl Drop for PausingProxy {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Now, in Unix milliseconds.
fn unix_ms() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
}

async fn sleep_until_some(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

async fn proxy(
    listener: std::net::TcpListener,
    control: std::net::TcpListener,
    upstream: SocketAddr,
    after: Duration,
    length: Duration,
    shared: Arc<PauseShared>,
    mut stopped: oneshot::Receiver<()>,
) {
    let listener = TcpListener::from_std(listener).expect("register the proxy listener");
    let control = TcpListener::from_std(control).expect("register the control listener");
    // True while paused; every forwarding task waits on it before each write.
    let (paused, gate) = watch::channel(false);
    let mut tasks = JoinSet::new();
    let (mut pause_at, mut resume_at) = (None, None);
    loop {
        tokio::select! {
            _ = &mut stopped => break,
            dialed = control.accept() => {
                let called = Instant::now();
                if shared.triggers.fetch_add(1, Ordering::SeqCst) > 0 {
                    continue; // one pause; a second caller reads no "on"
                }
                pause_at = Some(called + after);
                if let Ok((mut caller, _)) = dialed {
                    tasks.spawn(async move {
                        tokio::time::sleep_until((called + after + FAULT_ACK_DELAY).into()).await;
                        let _ = caller.write_all(b"on\n").await;
                    });
                }
            }
            () = sleep_until_some(pause_at) => {
                pause_at = None;
                paused.send_replace(true);
                let now = Instant::now();
                shared.window_unix_ms.lock().unwrap_or_else(|e| e.into_inner()).0 = Some(unix_ms());
                resume_at = Some(now + length);
            }
            () = sleep_until_some(resume_at) => {
                resume_at = None;
                paused.send_replace(false);
                shared.window_unix_ms.lock().unwrap_or_else(|e| e.into_inner()).1 = Some(unix_ms());
            }
            accepted = listener.accept() => {
                if let Ok((client, _)) = accepted {
                    shared.connections.fetch_add(1, Ordering::SeqCst);
                    tasks.spawn(forward(client, upstream, gate.clone()));
                }
            }
        }
        while tasks.try_join_next().is_some() {}
    }
    // Dropping the set aborts the connections still open.
}

/// One client connection: connects upstream and copies both ways, each write waiting while the
/// proxy is paused.
async fn forward(client: TcpStream, upstream: SocketAddr, gate: watch::Receiver<bool>) {
    let Ok(server) = TcpStream::connect(upstream).await else {
        return;
    };
    for s in [&client, &server] {
        let _ = s.set_nodelay(true);
    }
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    // Either direction ending ends the connection (the halves close when dropped).
    tokio::select! {
        () = copy(client_read, server_write, gate.clone()) => {}
        () = copy(server_read, client_write, gate) => {}
    }
}

async fn copy(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut gate: watch::Receiver<bool>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        // Held while paused: nothing is forwarded until the pause ends.
        if gate.wait_for(|paused| !paused).await.is_err() {
            return;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}
