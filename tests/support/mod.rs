//! Shared helpers for the integration tests: running the compiled `gapless` binary and reading its
//! JSON result, and in-process targets on `127.0.0.1:0`.
//!
//! Every target runs on its own current-thread tokio runtime in a background thread, so a test
//! stays an ordinary synchronous `#[test]` that drives the binary with `std::process::Command`.
//! [`TestServer`] is either a hyper server (HTTP/1.1 and h2c, optionally behind TLS) whose answers
//! come from a closure, or a raw TCP server whose per-connection handler misbehaves on purpose.
//! Dropping a [`TestServer`] stops it and joins its thread.

// Each test crate includes this module and uses a different subset of it.
#![allow(dead_code)]

use std::convert::Infallible;
use std::future::Future;
use std::io::Read;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode, Version};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinSet;

/// The binary under test.
pub const GAPLESS: &str = env!("CARGO_BIN_EXE_gapless");

/// A run that takes longer than this is a hang: the child is killed and the test fails.
const RUN_LIMIT: Duration = Duration::from_secs(60);

/// A path in the system temp directory that no other test (or test process) uses.
pub fn temp_path(suffix: &str) -> PathBuf {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    std::env::temp_dir().join(format!(
        "gapless-test-{}-{}-{nanos}.{suffix}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ))
}

/// Runs `gapless ARGS...` and returns `(exit code, stdout, stderr, JSON result)`.
///
/// Unless `args` already holds `--json`, `--json <temp file>` is appended and the file is parsed
/// (and removed) afterwards; the JSON is `None` when gapless wrote no file (a usage error). The
/// exit code is -1 if the process died from a signal. Panics if the run takes longer than a
/// minute (a hang), if gapless panicked, or if it wrote a file that is not JSON.
pub fn run_gapless(args: &[&str]) -> (i32, String, String, Option<Value>) {
    let json_path = (!args.contains(&"--json")).then(|| temp_path("json"));
    let mut command = Command::new(GAPLESS);
    command.args(args);
    if let Some(path) = &json_path {
        command.arg("--json").arg(path);
    }
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the gapless binary should start");
    let stdout = drain(child.stdout.take().expect("stdout is piped"));
    let stderr = drain(child.stderr.take().expect("stderr is piped"));
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("waiting for gapless") {
            break status;
        }
        if started.elapsed() > RUN_LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            panic!("gapless {args:?} did not finish within {RUN_LIMIT:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let stdout = stdout.join().expect("stdout reader thread");
    let stderr = stderr.join().expect("stderr reader thread");
    assert!(
        !stderr.contains("panicked"),
        "gapless {args:?} panicked:\n{stderr}"
    );
    let json = json_path.and_then(|path| {
        let text = std::fs::read_to_string(&path).ok()?;
        let _ = std::fs::remove_file(&path);
        Some(serde_json::from_str(&text).unwrap_or_else(|e| {
            panic!("gapless {args:?} wrote a JSON result that does not parse ({e}):\n{text}")
        }))
    });
    (status.code().unwrap_or(-1), stdout, stderr, json)
}

/// Like [`run_gapless`], but the run must have written a JSON result: returns it with the exit
/// code, and prints stdout and stderr into the panic message otherwise.
pub fn run_json(args: &[&str]) -> (i32, Value) {
    let (code, stdout, stderr, json) = run_gapless(args);
    let json = json.unwrap_or_else(|| {
        panic!("gapless {args:?} exited {code} without a JSON result\nstdout:\n{stdout}\nstderr:\n{stderr}")
    });
    (code, json)
}

fn drain(mut pipe: impl Read + Send + 'static) -> JoinHandle<String> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes);
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

/// The value at a JSON pointer (`/requests/total`); panics with the document if it is missing.
pub fn at<'a>(json: &'a Value, pointer: &str) -> &'a Value {
    json.pointer(pointer)
        .unwrap_or_else(|| panic!("JSON result has no {pointer}:\n{json:#}"))
}

/// The unsigned integer at a JSON pointer.
pub fn u64_at(json: &Value, pointer: &str) -> u64 {
    at(json, pointer)
        .as_u64()
        .unwrap_or_else(|| panic!("{pointer} is not an unsigned integer:\n{json:#}"))
}

/// The number at a JSON pointer.
pub fn f64_at(json: &Value, pointer: &str) -> f64 {
    at(json, pointer)
        .as_f64()
        .unwrap_or_else(|| panic!("{pointer} is not a number:\n{json:#}"))
}

/// The count at a JSON pointer, 0 when the key is absent (`errors` and `codes` only list what
/// happened).
pub fn count_at(json: &Value, pointer: &str) -> u64 {
    json.pointer(pointer).map_or(0, |v| {
        v.as_u64()
            .unwrap_or_else(|| panic!("{pointer} is not an unsigned integer:\n{json:#}"))
    })
}

/// An object of counts (`codes`, `errors`) as `(key, count)` pairs in key order.
pub fn counts_at(json: &Value, pointer: &str) -> Vec<(String, u64)> {
    at(json, pointer)
        .as_object()
        .unwrap_or_else(|| panic!("{pointer} is not an object:\n{json:#}"))
        .iter()
        .map(|(k, v)| {
            let n = v
                .as_u64()
                .unwrap_or_else(|| panic!("{pointer}/{k} is not a count:\n{json:#}"));
            (k.clone(), n)
        })
        .collect()
}

/// `(key, count)` pairs from literals, for comparing with [`counts_at`].
pub fn counts(pairs: &[(&str, u64)]) -> Vec<(String, u64)> {
    let mut v: Vec<(String, u64)> = pairs.iter().map(|&(k, n)| (k.to_string(), n)).collect();
    v.sort();
    v
}

/// What a [`TestServer`] saw.
#[derive(Debug, Default)]
pub struct Stats {
    /// TCP connections accepted.
    pub connections: AtomicU64,
    /// HTTP requests received (hyper servers only).
    pub requests: AtomicU64,
    /// Of those, requests that arrived over HTTP/2.
    pub h2_requests: AtomicU64,
    /// When the first request arrived.
    pub first_request: OnceLock<Instant>,
}

impl Stats {
    /// Connections accepted so far.
    pub fn connections(&self) -> u64 {
        self.connections.load(Ordering::SeqCst)
    }

    /// Requests received so far.
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::SeqCst)
    }

    /// HTTP/2 requests received so far.
    pub fn h2_requests(&self) -> u64 {
        self.h2_requests.load(Ordering::SeqCst)
    }
}

/// One request, as a responder closure sees it.
#[derive(Clone, Copy, Debug)]
pub struct RequestInfo {
    /// 0 for the first request the server received, then 1, 2, ... across all connections.
    pub index: u64,
    /// Time since the first request arrived (zero for the first).
    pub since_first: Duration,
    /// HTTP version of the request.
    pub version: Version,
}

/// How a hyper [`TestServer`] answers one request.
#[derive(Clone, Copy, Debug)]
pub struct Reply {
    /// Status code.
    pub status: u16,
    /// Wait this long before answering.
    pub delay: Duration,
    /// Send `Connection: close` (HTTP/1.1 only), so the connection ends after this response.
    pub close: bool,
}

impl Reply {
    /// `200`, at once, keep-alive.
    pub fn ok() -> Reply {
        Reply::status(200)
    }

    /// `status`, at once, keep-alive.
    pub fn status(status: u16) -> Reply {
        Reply {
            status,
            delay: Duration::ZERO,
            close: false,
        }
    }

    /// The same reply after `delay`.
    pub fn delayed(self, delay: Duration) -> Reply {
        Reply { delay, ..self }
    }

    /// The same reply with `Connection: close`.
    pub fn closing(self) -> Reply {
        Reply {
            close: true,
            ..self
        }
    }
}

type Responder = Arc<dyn Fn(RequestInfo) -> Reply + Send + Sync>;

/// An in-process target on `127.0.0.1:0`, stopped on drop.
pub struct TestServer {
    addr: SocketAddr,
    scheme: &'static str,
    host: &'static str,
    stats: Arc<Stats>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl TestServer {
    /// A plain-TCP hyper server (HTTP/1.1, and HTTP/2 with prior knowledge) answering with
    /// `responder`. The response body is `ok\n`.
    pub fn http(responder: impl Fn(RequestInfo) -> Reply + Send + Sync + 'static) -> TestServer {
        let responder: Responder = Arc::new(responder);
        TestServer::start("http", "127.0.0.1", move |stream, stats| {
            let responder = responder.clone();
            async move {
                let _ = stream.set_nodelay(true);
                serve_http(stream, stats, responder).await;
            }
        })
    }

    /// A plain-TCP hyper server answering `200 ok` to everything.
    pub fn healthy() -> TestServer {
        TestServer::http(|_| Reply::ok())
    }

    /// A TLS hyper server with a fresh self-signed certificate for `localhost`, offering ALPN
    /// `h2` and `http/1.1`; its URL is `https://localhost:PORT/` (which resolves to 127.0.0.1).
    pub fn https(responder: impl Fn(RequestInfo) -> Reply + Send + Sync + 'static) -> TestServer {
        let responder: Responder = Arc::new(responder);
        let acceptor = tokio_rustls::TlsAcceptor::from(tls_server_config());
        TestServer::start("https", "localhost", move |stream, stats| {
            let (responder, acceptor) = (responder.clone(), acceptor.clone());
            async move {
                let _ = stream.set_nodelay(true);
                // A failed handshake (the client rejected the certificate) ends the connection.
                if let Ok(tls) = acceptor.accept(stream).await {
                    serve_http(tls, stats, responder).await;
                }
            }
        })
    }

    /// A raw TCP server: `handler` owns each accepted connection.
    pub fn raw<H, F>(handler: H) -> TestServer
    where
        H: Fn(TcpStream) -> F + Send + Sync + 'static,
        F: Future<Output = ()> + Send + 'static,
    {
        TestServer::start("http", "127.0.0.1", move |stream, _stats| handler(stream))
    }

    fn start<H, F>(scheme: &'static str, host: &'static str, handler: H) -> TestServer
    where
        H: Fn(TcpStream, Arc<Stats>) -> F + Send + Sync + 'static,
        F: Future<Output = ()> + Send + 'static,
    {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")
            .expect("a test server should bind a free loopback port");
        listener
            .set_nonblocking(true)
            .expect("a tokio listener must be non-blocking");
        let addr = listener.local_addr().expect("the bound address");
        let stats = Arc::new(Stats::default());
        let (stop, mut stopped) = oneshot::channel::<()>();
        let thread = {
            let stats = stats.clone();
            std::thread::Builder::new()
                .name(format!("test-server-{}", addr.port()))
                .spawn(move || {
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .expect("a test server runtime");
                    runtime.block_on(async move {
                        let listener =
                            TcpListener::from_std(listener).expect("register the test listener");
                        let mut connections = JoinSet::new();
                        loop {
                            tokio::select! {
                                _ = &mut stopped => break,
                                accepted = listener.accept() => {
                                    if let Ok((stream, _peer)) = accepted {
                                        stats.connections.fetch_add(1, Ordering::SeqCst);
                                        connections.spawn(handler(stream, stats.clone()));
                                    }
                                }
                            }
                            while connections.try_join_next().is_some() {}
                        }
                        // Dropping the set aborts every connection still open.
                    });
                })
                .expect("spawn the test server thread")
        };
        TestServer {
            addr,
            scheme,
            host,
            stats,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// The URL to load: `http://127.0.0.1:PORT/` (or `https://localhost:PORT/`).
    pub fn url(&self) -> String {
        format!("{}://{}:{}/", self.scheme, self.host, self.addr.port())
    }

    /// The listening address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// What the server saw so far.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn serve_http<I>(io: I, stats: Arc<Stats>, responder: Responder)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |request: Request<Incoming>| {
        let (stats, responder) = (stats.clone(), responder.clone());
        async move {
            let now = Instant::now();
            let index = stats.requests.fetch_add(1, Ordering::SeqCst);
            if request.version() == Version::HTTP_2 {
                stats.h2_requests.fetch_add(1, Ordering::SeqCst);
            }
            let first = *stats.first_request.get_or_init(|| now);
            let reply = responder(RequestInfo {
                index,
                since_first: now.saturating_duration_since(first),
                version: request.version(),
            });
            // Read the request to its end so the connection stays usable.
            let _ = request.into_body().collect().await;
            if !reply.delay.is_zero() {
                tokio::time::sleep(reply.delay).await;
            }
            let mut response = Response::new(Full::new(Bytes::from_static(b"ok\n")));
            *response.status_mut() =
                StatusCode::from_u16(reply.status).expect("a responder returns a valid status");
            if reply.close {
                response.headers_mut().insert(
                    hyper::header::CONNECTION,
                    hyper::header::HeaderValue::from_static("close"),
                );
            }
            Ok::<_, Infallible>(response)
        }
    });
    let _ = auto::Builder::new(TokioExecutor::new())
        .serve_connection(TokioIo::new(io), service)
        .await;
}

fn tls_server_config() -> Arc<rustls::ServerConfig> {
    use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_string()])
        .expect("rcgen should make a self-signed certificate");
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(certified.key_pair.serialize_der()));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("ring supports the default TLS versions")
        .with_no_client_auth()
        .with_single_cert(vec![certified.cert.der().clone()], key)
        .expect("the generated certificate and key should match");
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Arc::new(config)
}

/// Reads one HTTP/1.1 request head (up to the blank line). `false` if the peer closed first.
/// gapless sends bodyless GETs in these tests, so the head is the whole request.
pub async fn read_request_head(stream: &mut TcpStream) -> bool {
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return false,
            Ok(n) => seen.extend_from_slice(&buf[..n]),
        }
        if seen.windows(4).any(|w| w == b"\r\n\r\n") {
            return true;
        }
    }
}

/// Reads and discards until the peer closes (or the connection breaks).
pub async fn wait_for_close(stream: &mut TcpStream) {
    let mut buf = [0u8; 4096];
    while let Ok(n) = stream.read(&mut buf).await {
        if n == 0 {
            break;
        }
    }
}

/// A loopback port that nothing listens on: bound, read, and released again.
pub fn refused_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free loopback port");
    listener.local_addr().expect("the bound address").port()
}
