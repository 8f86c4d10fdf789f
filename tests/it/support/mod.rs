//! Shared helpers for the integration tests: running the compiled `gapless` binary and reading its
//! JSON result, and in-process targets on `127.0.0.1:0`.
//!
//! Every target runs on its own current-thread tokio runtime in a background thread, so a test
//! stays an ordinary synchronous `#[test]` that drives the binary with `std::process::Command`.
//! [`TestServer`] is either a hyper server (HTTP/1.1 and h2c, optionally behind TLS) whose answers
//! come from a closure, or a raw TCP server whose per-connection handler misbehaves on purpose.
//! Dropping a [`TestServer`] stops it and joins its thread.
//!
//! A test that needs a real component (nginx, haproxy, Chromium, openssl) is marked
//! `#[ignore = "needs NAME"]`, so a plain `cargo test` lists it as ignored instead of passing it
//! without its component; `cargo test -- --include-ignored` (as `.ci/run` does, after installing
//! them) runs it, and then [`needs`] fails it if the component is missing.

use std::cell::Cell;
use std::convert::Infallible;
use std::future::Future;
use std::io::Read;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use gapless::internals::accept::{self, Readying};
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
use tokio_util::sync::CancellationToken;

pub mod h2raw;
pub mod netns;
pub mod pausing;
pub mod proxy;

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

/// Shared by the tests that make load, held by one test alone when its timing assertions need
/// the machine to itself (the proxy tests at 1,000 requests per second, a window measured to the
/// millisecond). All areas' tests run side by side in this one test crate, so a lock in one
/// module would not keep another module's load away.
static MACHINE: RwLock<()> = RwLock::new(());

thread_local! {
    /// Whether this thread (one test) holds [`MACHINE`] already: taking a std `RwLock` again in
    /// the same thread can deadlock (a writer waiting between the two reads).
    static HOLDING: Cell<bool> = const { Cell::new(false) };
}

/// A hold on the machine ([`shared`] or [`exclusive`]), released on drop.
#[must_use = "the machine is released when this is dropped"]
pub struct Machine {
    shared: Option<RwLockReadGuard<'static, ()>>,
    exclusive: Option<RwLockWriteGuard<'static, ()>>,
}

impl Drop for Machine {
    fn drop(&mut self) {
        if self.shared.is_some() || self.exclusive.is_some() {
            HOLDING.set(false);
        }
    }
}

/// The machine to this test alone, once the tests holding it [`shared`] are done; they wait
/// meanwhile.
pub fn exclusive() -> Machine {
    assert!(
        !HOLDING.get(),
        "exclusive() while this test holds the machine would wait for itself"
    );
    let guard = MACHINE.write().unwrap_or_else(PoisonError::into_inner);
    HOLDING.set(true);
    Machine {
        shared: None,
        exclusive: Some(guard),
    }
}

/// The machine, shared with the other tests that make load (none holds it [`exclusive`]ly
/// meanwhile). [`run_gapless`] and [`Run`] take it themselves; a test that starts gapless
/// otherwise takes it first. Nothing more if this test holds it already.
pub fn shared() -> Machine {
    if HOLDING.get() {
        return Machine {
            shared: None,
            exclusive: None,
        };
    }
    let guard = MACHINE.read().unwrap_or_else(PoisonError::into_inner);
    HOLDING.set(true);
    Machine {
        shared: Some(guard),
        exclusive: None,
    }
}

/// Runs `gapless ARGS...` and returns `(exit code, stdout, stderr, JSON result)`.
///
/// Unless `args` already holds `--json`, `--json <temp file>` is appended and the file is parsed
/// (and removed) afterwards; the JSON is `None` when gapless wrote no file (a usage error). The
/// exit code is -1 if the process died from a signal. Panics if the run takes longer than a
/// minute (a hang), if gapless panicked, or if it wrote a file that is not JSON.
pub fn run_gapless(args: &[&str]) -> (i32, String, String, Option<Value>) {
    let _machine = shared();
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
    let code = status.code().unwrap_or(-1);
    let json = json_path.and_then(|path| {
        let text = std::fs::read_to_string(&path).ok()?;
        let _ = std::fs::remove_file(&path);
        // The exit and stderr say why a file is cut short (exit 5 with the write error, e.g.
        // a full disk; -1 for a signal), which the text alone does not.
        Some(serde_json::from_str(&text).unwrap_or_else(|e| {
            panic!(
                "gapless {args:?} exited {code} ({status}) and wrote a JSON result that does not \
                 parse ({e}):\n{text}\nstderr:\n{stderr}"
            )
        }))
    });
    (code, stdout, stderr, json)
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

/// A `gapless run` built up instead of listed:
/// `Run::new(&url).qps(20).duration("500ms").quiet().json()`. Arguments are passed in the order
/// given, so a test still reads as the command line it runs. [`Run::output`] runs it as
/// [`run_gapless`] does, [`Run::json`] as [`run_json`].
#[derive(Clone, Debug)]
#[must_use]
pub struct Run(Vec<String>);

impl Run {
    /// `gapless run URL`.
    pub fn new(url: &str) -> Run {
        Run(vec!["run".to_string(), url.to_string()])
    }

    /// `gapless run --scenario FILE`.
    pub fn scenario(file: &str) -> Run {
        Run(vec!["run".to_string()]).args(["--scenario", file])
    }

    /// `gapless run --targets FILE`.
    pub fn targets(file: &str) -> Run {
        Run(vec!["run".to_string()]).args(["--targets", file])
    }

    /// `-q QPS`.
    pub fn qps(self, qps: impl std::fmt::Display) -> Run {
        self.args(["-q".to_string(), qps.to_string()])
    }

    /// `-d DURATION`.
    pub fn duration(self, duration: &str) -> Run {
        self.args(["-d", duration])
    }

    /// `-c CONNECTIONS`.
    pub fn connections(self, connections: u64) -> Run {
        self.args(["-c".to_string(), connections.to_string()])
    }

    /// `--timeout TIMEOUT`.
    pub fn timeout(self, timeout: &str) -> Run {
        self.args(["--timeout", timeout])
    }

    /// `--quiet`.
    pub fn quiet(self) -> Run {
        self.arg("--quiet")
    }

    /// An option with its value: `FLAG VALUE`.
    pub fn opt(self, flag: &str, value: impl AsRef<str>) -> Run {
        self.arg(flag).arg(value)
    }

    /// One more argument, as it is.
    pub fn arg(mut self, arg: impl AsRef<str>) -> Run {
        self.0.push(arg.as_ref().to_string());
        self
    }

    /// More arguments, as they are.
    pub fn args(mut self, args: impl IntoIterator<Item = impl AsRef<str>>) -> Run {
        self.0
            .extend(args.into_iter().map(|a| a.as_ref().to_string()));
        self
    }

    /// Runs it: `(exit code, stdout, stderr, JSON result)`, as [`run_gapless`].
    pub fn output(&self) -> (i32, String, String, Option<Value>) {
        run_gapless(&self.argv())
    }

    /// Runs it, which must write a JSON result: `(exit code, JSON result)`, as [`run_json`].
    pub fn json(&self) -> (i32, Value) {
        run_json(&self.argv())
    }

    fn argv(&self) -> Vec<&str> {
        self.0.iter().map(String::as_str).collect()
    }
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
    /// Send this as the `x-version` header (and the body).
    pub version: Option<&'static str>,
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
            version: None,
        }
    }

    /// The same reply after `delay`.
    pub fn delayed(self, delay: Duration) -> Reply {
        Reply { delay, ..self }
    }

    /// The same reply from version `label` (`x-version` header and body).
    pub fn versioned(self, label: &'static str) -> Reply {
        Reply {
            version: Some(label),
            ..self
        }
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
    stop: Option<CancellationToken>,
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
        TestServer::https_with_cert(responder).0
    }

    /// Like [`TestServer::https`], and returns the certificate in PEM (to trust it with
    /// `--cacert`).
    pub fn https_with_cert(
        responder: impl Fn(RequestInfo) -> Reply + Send + Sync + 'static,
    ) -> (TestServer, String) {
        let (config, pem) = tls_server_config();
        (TestServer::https_with_config(config, responder), pem)
    }

    /// Like [`TestServer::https`], presenting the certificate `cert_pem` with its private key
    /// `key_pem` (PKCS#8 PEM, as `openssl req -x509 -nodes` writes it).
    pub fn https_with_identity(
        cert_pem: &str,
        key_pem: &str,
        responder: impl Fn(RequestInfo) -> Reply + Send + Sync + 'static,
    ) -> TestServer {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let cert = CertificateDer::from_pem_slice(cert_pem.as_bytes()).expect("a PEM certificate");
        let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).expect("a PEM private key");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("ring supports the default TLS versions")
            .with_no_client_auth()
            .with_single_cert(vec![cert], key)
            .expect("the certificate and key should match");
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        TestServer::https_with_config(Arc::new(config), responder)
    }

    fn https_with_config(
        config: Arc<rustls::ServerConfig>,
        responder: impl Fn(RequestInfo) -> Reply + Send + Sync + 'static,
    ) -> TestServer {
        let responder: Responder = Arc::new(responder);
        let acceptor = tokio_rustls::TlsAcceptor::from(config);
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

    /// A TLS server with a fresh self-signed certificate for `localhost` (ALPN `h2` and
    /// `http/1.1`): `handler` owns each connection after the handshake.
    pub fn tls_raw<H, F>(handler: H) -> TestServer
    where
        H: Fn(tokio_rustls::server::TlsStream<TcpStream>) -> F + Send + Sync + 'static,
        F: Future<Output = ()> + Send + 'static,
    {
        TestServer::tls_raw_with_cert(handler).0
    }

    /// [`TestServer::tls_raw`], and its certificate (PEM) for `--cacert`.
    pub fn tls_raw_with_cert<H, F>(handler: H) -> (TestServer, String)
    where
        H: Fn(tokio_rustls::server::TlsStream<TcpStream>) -> F + Send + Sync + 'static,
        F: Future<Output = ()> + Send + 'static,
    {
        let (config, pem) = tls_server_config();
        let acceptor = tokio_rustls::TlsAcceptor::from(config);
        let handler = Arc::new(handler);
        let server = TestServer::start("https", "localhost", move |stream, _stats| {
            let (acceptor, handler) = (acceptor.clone(), handler.clone());
            async move {
                let _ = stream.set_nodelay(true);
                if let Ok(tls) = acceptor.accept(stream).await {
                    handler(tls).await;
                }
            }
        });
        (server, pem)
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
        let stop = CancellationToken::new();
        let thread = {
            let (stats, stop) = (stats.clone(), stop.clone());
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
                        // gapless's own accept loop; dropping the connections still open when
                        // the server stops aborts them.
                        // As accepted: Nagle on, closed cleanly (the tests set what they need).
                        let readying = Readying::default();
                        accept::each_connection(listener, readying, &stop, &stop, |stream| {
                            stats.connections.fetch_add(1, Ordering::SeqCst);
                            handler(stream, stats.clone())
                        })
                        .await;
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
            stop.cancel();
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
            });
            // Read the request to its end so the connection stays usable.
            let _ = request.into_body().collect().await;
            if !reply.delay.is_zero() {
                tokio::time::sleep(reply.delay).await;
            }
            let body = reply.version.map_or(Bytes::from_static(b"ok\n"), |v| {
                Bytes::from(format!("{{\"version\":\"{v}\"}}\n"))
            });
            let mut response = Response::new(Full::new(body));
            if let Some(v) = reply.version {
                response
                    .headers_mut()
                    .insert("x-version", hyper::header::HeaderValue::from_static(v));
            }
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

fn tls_server_config() -> (Arc<rustls::ServerConfig>, String) {
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
    (Arc::new(config), certified.cert.pem())
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

/// The path of the program `name` that the calling test needs: the first executable `name` on
/// PATH, or in the sbin directories a non-root PATH may lack. Such a test is
/// `#[ignore = "needs NAME"]` and runs only when asked for, so a missing program fails it.
pub fn needs(name: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/local/sbin", "/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
        .unwrap_or_else(|| {
            panic!(
                "this test needs {name}, which is not installed (it is ignored by a plain \
                 `cargo test`; .ci/run installs {name} and runs it with --include-ignored)"
            )
        })
}

fn is_executable(path: &std::path::Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// A self-signed certificate for `localhost` and its key, `(certificate PEM, key PEM)`, made by
/// `openssl req -x509` as a user makes one: marked `CA:TRUE` (openssl's default configuration
/// marks it so; the test asks for it explicitly, whatever the local configuration says). For a
/// test marked `#[ignore = "needs openssl"]`: fails if openssl is not installed.
pub fn openssl_self_signed() -> (String, String) {
    let (cert, key) = (TempFile::new("crt"), TempFile::new("key"));
    let made = Command::new(needs("openssl"))
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
        .args(["ec_paramgen_curve:prime256v1", "-nodes", "-days", "2"])
        .args([
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost",
        ])
        .args(["-addext", "basicConstraints=critical,CA:TRUE"])
        .args(["-keyout", key.as_str(), "-out", cert.as_str()])
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run openssl: {e}"));
    assert!(
        made.status.success(),
        "openssl req -x509 failed: {}",
        String::from_utf8_lossy(&made.stderr)
    );
    let read = |f: &TempFile| std::fs::read_to_string(f.path()).expect("openssl's output");
    (read(&cert), read(&key))
}

/// A loopback port that nothing listens on: bound, read, and released again.
pub fn refused_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free loopback port");
    listener.local_addr().expect("the bound address").port()
}

// ---------------------------------------------------------------------------------------------
// Rollout helpers (rollout.rs): scenario files, process checks, a fault-injection target.
// ---------------------------------------------------------------------------------------------

/// A file in the temp directory, removed on drop.
pub struct TempFile(PathBuf);

impl TempFile {
    /// A fresh path ending in `.suffix`; nothing is written yet.
    pub fn new(suffix: &str) -> TempFile {
        TempFile(temp_path(suffix))
    }

    /// A fresh file ending in `.suffix` holding `text`.
    pub fn with(suffix: &str, text: &str) -> TempFile {
        let file = TempFile::new(suffix);
        std::fs::write(&file.0, text).expect("write a temp file");
        file
    }

    /// The path.
    pub fn path(&self) -> &std::path::Path {
        &self.0
    }

    /// The path as UTF-8 (temp paths are).
    pub fn as_str(&self) -> &str {
        self.0.to_str().expect("temp paths are UTF-8")
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Like [`run_gapless`], for argument lists that end in a quick-form command (`-- CMD ...`):
/// `--json FILE` goes before the `--`, where gapless still reads it as an option. Returns the
/// exit code, stdout, stderr and the JSON result (panics when none was written).
pub fn run_json_with_command(args: &[&str], command: &[&str]) -> (i32, String, String, Value) {
    let json = TempFile::new("json");
    let mut all: Vec<&str> = args.to_vec();
    all.extend_from_slice(&["--json", json.as_str(), "--"]);
    all.extend_from_slice(command);
    let (code, stdout, stderr, _) = run_gapless(&all);
    let text = std::fs::read_to_string(json.path()).unwrap_or_else(|e| {
        panic!("gapless {all:?} exited {code} without a JSON result ({e})\nstdout:\n{stdout}\nstderr:\n{stderr}")
    });
    let value = serde_json::from_str(&text).unwrap_or_else(|e| {
        panic!("gapless {all:?} exited {code} and wrote JSON that does not parse ({e}):\n{text}\nstderr:\n{stderr}")
    });
    (code, stdout, stderr, value)
}

/// The state letter of `/proc/PID/stat` (`R`, `S`, `Z`, ...), `None` once the pid is gone.
pub fn process_state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // `pid (comm) S ...`: comm may hold spaces and parentheses, the state follows the last ')'.
    stat.rsplit(')').next()?.trim_start().chars().next()
}

/// True while `pid` is a live process. A zombie (or dead) one is not running: PID 1 in a
/// container may never reap an orphan.
pub fn is_running(pid: u32) -> bool {
    !matches!(process_state(pid), None | Some('Z') | Some('X') | Some('x'))
}

/// Waits up to `limit` for `pid` to stop running; true if it did.
pub fn wait_not_running(pid: u32, limit: Duration) -> bool {
    let until = Instant::now() + limit;
    loop {
        if !is_running(pid) {
            return true;
        }
        if Instant::now() >= until {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Waits up to `limit` for `path` to hold a complete line (ending in a newline), and returns
/// the line's whitespace-separated words.
pub fn wait_for_line(path: &std::path::Path, limit: Duration) -> Option<Vec<String>> {
    let until = Instant::now() + limit;
    loop {
        if let Ok(text) = std::fs::read_to_string(path) {
            if let Some((line, _)) = text.split_once('\n') {
                return Some(line.split_whitespace().map(str::to_string).collect());
            }
        }
        if Instant::now() >= until {
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Binds a loopback listener on a port below the kernel's ephemeral range
/// (`/proc/sys/net/ipv4/ip_local_port_range`). No outgoing connection ever gets such a port as
/// its source port, so nothing can take it (not even a TCP self-connect of a client dialing it
/// while it is closed) and a server can close it and listen on it again.
pub fn bind_below_ephemeral() -> std::net::TcpListener {
    let low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    let lowest = low.saturating_sub(12_000).max(1024);
    let span = u32::from(low - lowest);
    let seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos())
        ^ std::process::id().wrapping_mul(2_654_435_761);
    for i in 0..span {
        let port = lowest + ((seed.wrapping_add(i.wrapping_mul(7919))) % span) as u16;
        if let Ok(listener) = std::net::TcpListener::bind(("127.0.0.1", port)) {
            return listener;
        }
    }
    panic!("no free loopback port between {lowest} and {low}");
}

/// How long after the fault began a [`FaultServer`] tells the caller of its control port `on`.
/// A step that waits for it is certainly running when the first faulty request is due, so the
/// window is attributed to it (a step that just dials and exits may be over before the server
/// even accepted the call).
pub const FAULT_ACK_DELAY: Duration = Duration::from_millis(20);

/// What a [`FaultServer`] does while its fault is on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Answer every request `503` instead of `200`.
    Status503,
    /// Close the listening socket and every open connection, then listen on the same port again
    /// when the fault ends: connection attempts meanwhile are refused.
    Refuse,
    /// Read each request, then close its connection with SO_LINGER 0 (an RST) instead of
    /// answering.
    Reset,
}

/// Counters and the fault window of a [`FaultServer`], shared with its thread.
#[derive(Debug)]
struct FaultShared {
    fault: Fault,
    after: Duration,
    length: Duration,
    /// When the fault started and ended, on the server's clock.
    window: std::sync::Mutex<Option<(Instant, Instant)>>,
    /// Connections made to the control port.
    triggers: AtomicU64,
    /// Requests answered 200.
    ok: AtomicU64,
    /// Requests answered 503, or reset.
    faulted: AtomicU64,
    /// Connections accepted on the main port.
    connections: AtomicU64,
    /// First and last time a request was faulted.
    faulted_span: std::sync::Mutex<Option<(Instant, Instant)>>,
}

impl FaultShared {
    fn in_fault(&self, now: Instant) -> bool {
        let window = *self.window.lock().unwrap_or_else(|e| e.into_inner());
        window.is_some_and(|(from, to)| from <= now && now < to)
    }

    fn note_fault(&self, now: Instant) {
        self.faulted.fetch_add(1, Ordering::SeqCst);
        let mut span = self.faulted_span.lock().unwrap_or_else(|e| e.into_inner());
        let (first, _) = span.unwrap_or((now, now));
        *span = Some((first, now));
    }
}

/// A shell command that dials a control port on loopback with bash's `/dev/tcp` and waits for
/// its `on`; it fails if no `on` comes (the fault servers' trigger).
pub fn dial_control(port: u16) -> String {
    format!("bash -c 'exec 3<>/dev/tcp/127.0.0.1/{port} && read -r ack <&3 && test $ack = on'")
}

/// A loopback HTTP/1.1 target (keep-alive, answers `200 ok`) with a control port: the first
/// connection made to the control port turns the fault on, `after` the call, for exactly
/// `length` on the server's own clock; then the server behaves again. The caller is answered
/// `on\n` [`FAULT_ACK_DELAY`] after the fault began. Stopped on drop.
///
/// The main port is below the ephemeral range ([`bind_below_ephemeral`]) so that [`Fault::Refuse`]
/// can close it and listen on it again.
pub struct FaultServer {
    port: u16,
    control_port: u16,
    shared: Arc<FaultShared>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl FaultServer {
    /// Starts the server; nothing is faulty until the control port is dialed. The fault then
    /// begins `after` the call and lasts `length`.
    pub fn start(fault: Fault, after: Duration, length: Duration) -> FaultServer {
        let main = bind_below_ephemeral();
        let port = main.local_addr().expect("the bound address").port();
        let control =
            std::net::TcpListener::bind("127.0.0.1:0").expect("bind the control loopback port");
        let control_port = control.local_addr().expect("the control address").port();
        for listener in [&main, &control] {
            listener
                .set_nonblocking(true)
                .expect("a tokio listener must be non-blocking");
        }
        let shared = Arc::new(FaultShared {
            fault,
            after,
            length,
            window: std::sync::Mutex::new(None),
            triggers: AtomicU64::new(0),
            ok: AtomicU64::new(0),
            faulted: AtomicU64::new(0),
            connections: AtomicU64::new(0),
            faulted_span: std::sync::Mutex::new(None),
        });
        let (stop, stopped) = oneshot::channel::<()>();
        let thread = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name(format!("fault-server-{port}"))
                .spawn(move || {
                    tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .expect("a fault server runtime")
                        .block_on(fault_server(main, control, shared, stopped));
                })
                .expect("spawn the fault server thread")
        };
        FaultServer {
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

    /// A shell command that turns the fault on: it dials the control port with bash's
    /// `/dev/tcp` and waits for the server's `on` ([`FAULT_ACK_DELAY`] after the fault began),
    /// so the step is still running when the fault starts. Fails if no `on` comes.
    pub fn trigger_command(&self) -> String {
        dial_control(self.control_port)
    }

    /// Connections made to the control port so far.
    pub fn triggers(&self) -> u64 {
        self.shared.triggers.load(Ordering::SeqCst)
    }

    /// Requests answered `200`.
    pub fn ok(&self) -> u64 {
        self.shared.ok.load(Ordering::SeqCst)
    }

    /// Requests answered `503` ([`Fault::Status503`]) or reset ([`Fault::Reset`]).
    pub fn faulted(&self) -> u64 {
        self.shared.faulted.load(Ordering::SeqCst)
    }

    /// Connections accepted on the main port.
    pub fn connections(&self) -> u64 {
        self.shared.connections.load(Ordering::SeqCst)
    }

    /// How long the fault lasted on the server's clock (for [`Fault::Refuse`]: from closing the
    /// port to listening again); `None` if it was never triggered.
    pub fn fault_length(&self) -> Option<Duration> {
        let window = *self.shared.window.lock().unwrap_or_else(|e| e.into_inner());
        window.map(|(from, to)| to - from)
    }

    /// Time between the first and the last faulted request, on the server's clock.
    pub fn faulted_span(&self) -> Option<Duration> {
        let span = *self
            .shared
            .faulted_span
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        span.map(|(first, last)| last - first)
    }
}

impl Drop for FaultServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn accept_on(listener: Option<&TcpListener>) -> std::io::Result<(TcpStream, SocketAddr)> {
    match listener {
        Some(l) => l.accept().await,
        None => std::future::pending().await,
    }
}

async fn sleep_until_some(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

async fn fault_server(
    main: std::net::TcpListener,
    control: std::net::TcpListener,
    shared: Arc<FaultShared>,
    mut stopped: oneshot::Receiver<()>,
) {
    let port = main.local_addr().expect("the bound address").port();
    let mut listener = Some(TcpListener::from_std(main).expect("register the listener"));
    let control = TcpListener::from_std(control).expect("register the control listener");
    let mut connections = JoinSet::new();
    // Fault::Refuse: when to close the port, and when to listen again.
    let (mut close_at, mut reopen_at) = (None, None);
    loop {
        tokio::select! {
            _ = &mut stopped => break,
            dialed = control.accept() => {
                let called = Instant::now();
                if shared.triggers.fetch_add(1, Ordering::SeqCst) > 0 {
                    continue; // the fault happens once; a second caller reads no "on"
                }
                let (from, to) = (called + shared.after, called + shared.after + shared.length);
                *shared.window.lock().unwrap_or_else(|e| e.into_inner()) = Some((from, to));
                if shared.fault == Fault::Refuse {
                    close_at = Some(from);
                }
                if let Ok((mut caller, _)) = dialed {
                    tokio::spawn(async move {
                        use tokio::io::AsyncWriteExt;
                        tokio::time::sleep_until((from + FAULT_ACK_DELAY).into()).await;
                        let _ = caller.write_all(b"on\n").await;
                    });
                }
            }
            () = sleep_until_some(close_at) => {
                // Close the port and every open connection.
                close_at = None;
                drop(listener.take());
                connections.abort_all();
                while connections.join_next().await.is_some() {}
                let closed = Instant::now();
                let mut window = shared.window.lock().unwrap_or_else(|e| e.into_inner());
                if let Some((from, to)) = window.as_mut() {
                    reopen_at = Some(closed + (*to - *from));
                    *from = closed;
                }
            }
            () = sleep_until_some(reopen_at) => {
                reopen_at = None;
                let reopened = loop {
                    match std::net::TcpListener::bind(("127.0.0.1", port)) {
                        Ok(l) => break l,
                        Err(e) => {
                            // Nothing else can take a port below the ephemeral range; retry
                            // briefly, and make the failure visible in the test's output.
                            eprintln!("fault server: listen again on {port}: {e}; retrying");
                            tokio::time::sleep(Duration::from_millis(1)).await;
                        }
                    }
                };
                reopened.set_nonblocking(true).expect("a non-blocking listener");
                listener = Some(TcpListener::from_std(reopened).expect("register the listener"));
                let now = Instant::now();
                if let Some(w) = shared.window.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
                    w.1 = now;
                }
            }
            accepted = accept_on(listener.as_ref()) => {
                if let Ok((stream, _)) = accepted {
                    shared.connections.fetch_add(1, Ordering::SeqCst);
                    connections.spawn(fault_connection(stream, shared.clone()));
                }
            }
        }
        while connections.try_join_next().is_some() {}
    }
}

/// Serves one keep-alive HTTP/1.1 connection of bodyless requests.
async fn fault_connection(mut stream: TcpStream, shared: Arc<FaultShared>) {
    use tokio::io::AsyncWriteExt;
    const OK: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\nok\n";
    const UNAVAILABLE: &[u8] =
        b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 12\r\n\r\nunavailable\n";
    let _ = stream.set_nodelay(true);
    let mut seen: Vec<u8> = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        // One request head; gapless keeps one request in flight per HTTP/1.1 connection.
        let end = loop {
            if let Some(i) = seen.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => seen.extend_from_slice(&buf[..n]),
            }
        };
        seen.drain(..end);
        let now = Instant::now();
        let faulty = shared.in_fault(now);
        match shared.fault {
            Fault::Reset if faulty => {
                if stream.set_zero_linger().is_ok() {
                    shared.note_fault(now);
                }
                return;
            }
            Fault::Status503 if faulty => {
                if stream.write_all(UNAVAILABLE).await.is_err() {
                    return;
                }
                shared.note_fault(now);
            }
            _ => {
                if stream.write_all(OK).await.is_err() {
                    return;
                }
                shared.ok.fetch_add(1, Ordering::SeqCst);
            }
        }
    }
}

/// A Python script run as a real peer (a grpcio server, say): it says `KEY value` lines on
/// stdout, which a thread of its own reads (a run blocks the test's thread), and takes commands
/// on stdin. Killed on drop.
pub struct PythonScript {
    child: std::process::Child,
    lines: std::sync::mpsc::Receiver<String>,
}

impl PythonScript {
    /// Runs `python3 -c SCRIPT ARGS...` once `python3 -c IMPORTS` works; fails naming
    /// `packages` (which `.ci/run` installs with pip) if it does not.
    pub fn start(imports: &str, packages: &str, script: &str, args: &[String]) -> PythonScript {
        let python = needs("python3");
        let imported = Command::new(&python)
            .args(["-c", imports])
            .status()
            .expect("python3 runs");
        assert!(
            imported.success(),
            "this test needs the Python packages {packages} (.ci/run installs them with pip)"
        );
        let mut child = Command::new(python)
            .args(["-c", script])
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("the Python script starts");
        let stdout = child.stdout.take().expect("piped");
        // Bounded: the script says a few lines per test.
        let (tx, lines) = std::sync::mpsc::sync_channel(64);
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        PythonScript { child, lines }
    }

    /// The value of the next line (within 30 s), which must start with `key`.
    pub fn said(&mut self, key: &str) -> String {
        let line = self
            .lines
            .recv_timeout(Duration::from_secs(30))
            .expect("the Python script said more");
        line.strip_prefix(key)
            .unwrap_or_else(|| panic!("expected {key:?}, the script said {line:?}"))
            .trim()
            .to_string()
    }

    /// Writes one line to its stdin.
    pub fn tell(&mut self, what: &str) {
        use std::io::Write;
        let stdin = self.child.stdin.as_mut().expect("piped");
        writeln!(stdin, "{what}").expect("the Python script reads");
    }

    /// Kills it (SIGKILL) and waits for it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for PythonScript {
    fn drop(&mut self) {
        self.kill();
    }
}
