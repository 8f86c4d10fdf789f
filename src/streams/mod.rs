//! Long-lived probes (`[[stream]]`): K WebSocket connections or SSE streams per probe, held
//! for the whole run beside the load, on its clock and its shutdown token.
//!
//! Each connection connects, then holds its stream ([`websocket`]: a ping every `interval`, a
//! pong due within `timeout`; [`sse`]: the response body read as it arrives, some line due
//! within `timeout`). When the stream ends, the disconnect is recorded with its [`Class`] and
//! the connection reconnects at once: attempts are admitted by a rate ceiling per probe
//! ([`RECONNECTS_PER_SECOND`] per connection, governor, as the load's connects are), so a
//! refusing target gets no connect storm. An outage lasts from the lost stream until the next
//! connected one (its reconnect latency); the first failed attempt of an outage (or of the run)
//! is a disconnect of its own class (`refused`, ...), later ones are counted only. Memory is
//! bounded: counters, a histogram, and at most [`tally::MAX_EVENTS`] events a probe.
//!
//! A new kind (a gRPC server stream) is a session module beside [`websocket`] and [`sse`]: its
//! `open` and `hold`, and a variant of [`Session`] and of [`crate::config::StreamKind`].

pub mod sse;
pub mod tally;
pub mod websocket;

use std::num::NonZeroU32;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::config::{StreamConfig, StreamKind, StreamUrl};
pub use tally::{Disconnect, Tally};

/// Reconnect attempts per second per connection, at most (the probe's ceiling is this times
/// its connections, with a burst of one per connection).
pub const RECONNECTS_PER_SECOND: u32 = 10;

/// How a stream ended, or why a connect attempt failed.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    serde::Serialize,
    serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Class {
    /// Graceful: a WebSocket close frame (its code in the event).
    CloseFrame,
    /// Graceful: the SSE response ended as HTTP says a body ends.
    EndOfStream,
    /// The connection was reset (RST, broken pipe).
    Reset,
    /// The connection was closed without a close frame (WebSocket) or in the middle of the
    /// body (SSE).
    Closed,
    /// A ping unanswered, or an SSE stream silent, for `timeout`.
    Timeout,
    /// Bytes that break the protocol.
    Protocol,
    /// Connect attempt: refused (nothing listening).
    Refused,
    /// Connect attempt: no connection and handshake within `timeout`.
    ConnectTimeout,
    /// Connect attempt: the host name did not resolve.
    Dns,
    /// Connect attempt: the TLS handshake failed.
    Tls,
    /// Connect attempt: the handshake was answered with another status than 101 (WebSocket) or
    /// 200 (SSE).
    Status,
    /// Anything else.
    #[default]
    Other,
}

impl Class {
    /// Its name in results: `close_frame`, `reset`, ...
    pub fn as_str(self) -> &'static str {
        match self {
            Class::CloseFrame => "close_frame",
            Class::EndOfStream => "end_of_stream",
            Class::Reset => "reset",
            Class::Closed => "closed",
            Class::Timeout => "timeout",
            Class::Protocol => "protocol",
            Class::Refused => "refused",
            Class::ConnectTimeout => "connect_timeout",
            Class::Dns => "dns",
            Class::Tls => "tls",
            Class::Status => "status",
            Class::Other => "other",
        }
    }

    /// A close frame or the end of an SSE stream: the server meant to end it.
    pub fn is_graceful(self) -> bool {
        matches!(self, Class::CloseFrame | Class::EndOfStream)
    }

    /// The class of an I/O error on an established stream.
    pub fn of_io(e: &std::io::Error) -> Class {
        use std::io::ErrorKind::*;
        match e.kind() {
            ConnectionReset | ConnectionAborted | BrokenPipe => Class::Reset,
            UnexpectedEof => Class::Closed,
            TimedOut => Class::Timeout,
            InvalidData => Class::Protocol,
            _ => Class::Other,
        }
    }
}

impl std::fmt::Display for Class {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a stream or an attempt ended: the class, the close code or status, a few words.
#[derive(Clone, Debug, PartialEq)]
pub struct End {
    /// The class.
    pub class: Class,
    /// The close frame's code, or the handshake's status.
    pub code: Option<u16>,
    /// The close reason or the error.
    pub detail: String,
}

impl End {
    /// An end of `class`, saying `detail`.
    pub fn new(class: Class, detail: impl Into<String>) -> End {
        End {
            class,
            code: None,
            detail: detail.into(),
        }
    }
}

/// What one probe measured.
#[derive(Clone, Debug)]
pub struct ProbeReport {
    /// The probe.
    pub config: StreamConfig,
    /// Its counters, histogram and events.
    pub tally: Tally,
}

/// A byte stream a session runs on: TCP, or TLS over TCP.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// One probe's shared parts: its configuration, TLS, rate ceiling and tally.
struct Probe {
    config: StreamConfig,
    tls: Option<tokio_rustls::TlsConnector>,
    limiter: DefaultDirectRateLimiter,
    tally: Mutex<Tally>,
}

impl Probe {
    fn new(config: StreamConfig) -> Probe {
        let connections = u32::try_from(config.count.get()).unwrap_or(u32::MAX);
        let burst = NonZeroU32::new(connections).unwrap_or(NonZeroU32::MIN);
        let rate = NonZeroU32::new(connections.saturating_mul(RECONNECTS_PER_SECOND))
            .unwrap_or(NonZeroU32::MIN);
        let tls = config.url.is_tls().then(|| {
            tokio_rustls::TlsConnector::from(crate::client::tls::client_config(
                config.insecure,
                false,
                &config.ca_certs,
            ))
        });
        Probe {
            tls,
            limiter: RateLimiter::direct(Quota::per_second(rate).allow_burst(burst)),
            tally: Mutex::new(Tally::default()),
            config,
        }
    }

    fn tally(&self) -> std::sync::MutexGuard<'_, Tally> {
        self.tally.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Opens one session: TCP, TLS and the handshake, within `timeout`.
    async fn open(&self) -> Result<Session, End> {
        let opening = async {
            let io = connect(&self.config.url, self.tls.as_ref()).await?;
            match self.config.kind {
                StreamKind::Websocket => websocket::open(&self.config, io)
                    .await
                    .map(|s| Session::Websocket(Box::new(s))),
                StreamKind::Sse => sse::open(&self.config, io).await.map(Session::Sse),
            }
        };
        match tokio::time::timeout(self.config.timeout, opening).await {
            Ok(result) => result,
            Err(_) => Err(End::new(
                Class::ConnectTimeout,
                format!("not connected within {:?}", self.config.timeout),
            )),
        }
    }
}

/// An established stream.
enum Session {
    Websocket(Box<websocket::Session>),
    Sse(sse::Session),
}

impl Session {
    /// Holds the stream until it ends (`Some`) or `stop` (`None`, after closing it).
    async fn hold(self, config: &StreamConfig, stop: &CancellationToken) -> Option<End> {
        match self {
            Session::Websocket(s) => s.hold(config, stop).await,
            Session::Sse(s) => s.hold(config, stop).await,
        }
    }
}

/// TCP to the URL's host (resolved first, so a name that does not resolve is `dns`), then TLS
/// for `wss://` and `https://`.
async fn connect(
    url: &StreamUrl,
    tls: Option<&tokio_rustls::TlsConnector>,
) -> Result<Box<dyn Io>, End> {
    let mut addrs = tokio::net::lookup_host((url.host(), url.port()))
        .await
        .map_err(|e| End::new(Class::Dns, e.to_string()))?;
    let addr = addrs
        .next()
        .ok_or_else(|| End::new(Class::Dns, format!("{} has no address", url.host())))?;
    let tcp = TcpStream::connect(addr).await.map_err(|e| {
        let class = match e.kind() {
            std::io::ErrorKind::ConnectionRefused => Class::Refused,
            std::io::ErrorKind::TimedOut => Class::ConnectTimeout,
            _ => Class::Other,
        };
        End::new(class, e.to_string())
    })?;
    let _ = tcp.set_nodelay(true);
    let Some(tls) = tls else {
        return Ok(Box::new(tcp));
    };
    let name = rustls::pki_types::ServerName::try_from(url.host().to_string())
        .map_err(|e| End::new(Class::Tls, e.to_string()))?;
    let stream = tls
        .connect(name, tcp)
        .await
        .map_err(|e| End::new(Class::Tls, e.to_string()))?;
    Ok(Box::new(stream))
}

/// Runs every probe until `stop`, each connection's offsets counted from `start`, and returns
/// what each measured, in order.
pub async fn run(
    configs: Vec<StreamConfig>,
    start: Instant,
    stop: CancellationToken,
) -> Vec<ProbeReport> {
    let probes: Vec<Arc<Probe>> = configs
        .into_iter()
        .map(|c| Arc::new(Probe::new(c)))
        .collect();
    let mut tasks = JoinSet::new();
    for probe in &probes {
        for index in 0..probe.config.count.get() {
            tasks.spawn(hold(probe.clone(), index, start, stop.clone()));
        }
    }
    while tasks.join_next().await.is_some() {}
    probes
        .into_iter()
        .map(|p| ProbeReport {
            tally: p.tally().clone(),
            config: p.config.clone(),
        })
        .collect()
}

/// One connection of a probe, from the start of the run until `stop`.
async fn hold(probe: Arc<Probe>, index: usize, start: Instant, stop: CancellationToken) {
    let now = || start.elapsed();
    // Since when this connection has had no stream, and whether an attempt failed since.
    let mut down: Option<(Duration, bool)> = None;
    loop {
        let admitted = tokio::select! {
            () = probe.limiter.until_ready() => true,
            () = stop.cancelled() => false,
        };
        if !admitted {
            break;
        }
        let opened = tokio::select! {
            opened = probe.open() => opened,
            () = stop.cancelled() => break,
        };
        match opened {
            Err(end) => {
                let at = now();
                let mut tally = probe.tally();
                tally.connect_failed(end.class);
                // The first failure of an outage (or of the run) is a disconnect; later ones are
                // counted only.
                let first = match &mut down {
                    Some((_, failed)) => !std::mem::replace(failed, true),
                    None => {
                        down = Some((at, true));
                        true
                    }
                };
                if first {
                    tally.disconnected(Disconnect {
                        at,
                        connection: index,
                        class: end.class,
                        code: end.code,
                        detail: end.detail,
                    });
                }
            }
            Ok(session) => {
                {
                    let mut tally = probe.tally();
                    tally.connected();
                    if let Some((since, _)) = down.take() {
                        tally.outage(now().saturating_sub(since), true);
                    }
                }
                let Some(end) = session.hold(&probe.config, &stop).await else {
                    break;
                };
                let at = now();
                probe.tally().disconnected(Disconnect {
                    at,
                    connection: index,
                    class: end.class,
                    code: end.code,
                    detail: end.detail,
                });
                down = Some((at, false));
            }
        }
    }
    if let Some((since, _)) = down {
        probe.tally().outage(now().saturating_sub(since), false);
    }
}
