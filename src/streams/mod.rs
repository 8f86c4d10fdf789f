//! Long-lived probes (`[[stream]]`): K WebSocket connections, SSE streams or gRPC server
//! streams per probe, held for the whole run beside the load, on its clock and its shutdown
//! token.
//!
//! Each connection connects, then holds its stream ([`websocket`]: a ping every `interval`, a
//! pong due within `timeout`; [`sse`]: the response body read as it arrives, some line due
//! within `timeout`; [`grpc`]: the answers read as they arrive, an HTTP/2 PING every
//! `interval` whose PONG is due within `timeout`). A health watch's answer other than SERVING
//! is an event of class `not_serving`, not a disconnect: the connection counts as without a
//! stream (its gap) until a SERVING answer. When the stream ends, the disconnect is recorded
//! with its [`Class`] and the connection reconnects at once: attempts are admitted by a rate
//! ceiling per probe ([`RECONNECTS_PER_SECOND`] per connection, governor, as the load's connects
//! are), so a refusing target gets no connect storm. An outage lasts from the lost stream until the next
//! connected one (its reconnect latency); the first failed attempt of an outage (or of the run)
//! is a disconnect of its own class (`refused`, ...), later ones are counted only. Memory is
//! bounded: counters, a histogram, and at most [`tally::MAX_EVENTS`] events a probe.
//!
//! A new kind is a session module beside [`websocket`], [`sse`] and [`grpc`]: its `open` and
//! `hold`, and a variant of [`Session`] and of [`crate::config::StreamKind`].

pub mod grpc;
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
    /// Graceful: the SSE response ended as HTTP says a body ends, or the gRPC stream ended with
    /// `grpc-status` OK.
    EndOfStream,
    /// Graceful: the server sent HTTP/2 GOAWAY (NO_ERROR), draining, before the gRPC stream
    /// ended (however it then ended, but by a ping timeout).
    Goaway,
    /// The connection was reset (RST, broken pipe).
    Reset,
    /// The connection was closed without a close frame (WebSocket) or in the middle of the
    /// body (SSE).
    Closed,
    /// A ping unanswered, or an SSE stream silent, for `timeout`.
    Timeout,
    /// Bytes that break the protocol.
    Protocol,
    /// A gRPC stream ended with a `grpc-status` other than OK (`UNAVAILABLE`, ...; its number
    /// in the event), or a connect attempt was answered with one (trailers only).
    GrpcStatus,
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
    /// Not a disconnect: a health watch answered other than SERVING (its serving status in the
    /// event) on a connected stream.
    NotServing,
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
            Class::Goaway => "goaway",
            Class::Reset => "reset",
            Class::Closed => "closed",
            Class::Timeout => "timeout",
            Class::Protocol => "protocol",
            Class::GrpcStatus => "grpc_status",
            Class::Refused => "refused",
            Class::ConnectTimeout => "connect_timeout",
            Class::Dns => "dns",
            Class::Tls => "tls",
            Class::Status => "status",
            Class::NotServing => "not_serving",
            Class::Other => "other",
        }
    }

    /// A close frame, the end of an SSE stream or of a gRPC stream with status OK, or a
    /// GOAWAY: the server meant to end it.
    pub fn is_graceful(self) -> bool {
        matches!(self, Class::CloseFrame | Class::EndOfStream | Class::Goaway)
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
        // gRPC offers ALPN h2; the others HTTP/1.1.
        let tls = config.url.is_tls().then(|| {
            tokio_rustls::TlsConnector::from(crate::client::tls::client_config(
                config.insecure,
                config.kind == StreamKind::Grpc,
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
                StreamKind::Grpc => grpc::open(&self.config, io)
                    .await
                    .map(|s| Session::Grpc(Box::new(s))),
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

/// What a health watch answered on a connected stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Health {
    /// `SERVING`.
    Serving,
    /// Another serving status, as the protocol numbers it (`2`: `NOT_SERVING`).
    Not(i32),
}

/// An established stream.
enum Session {
    Websocket(Box<websocket::Session>),
    Sse(sse::Session),
    Grpc(Box<grpc::Session>),
}

impl Session {
    /// True if the stream is usable once established; a health watch is usable from its first
    /// SERVING answer.
    fn usable_when_open(&self) -> bool {
        match self {
            Session::Grpc(s) => !s.watches_health(),
            Session::Websocket(_) | Session::Sse(_) => true,
        }
    }

    /// Holds the stream until it ends (`Some`) or `stop` (`None`, after closing it); a health
    /// watch's answers go to `health` as they come.
    async fn hold(
        self,
        config: &StreamConfig,
        stop: &CancellationToken,
        health: &mut (dyn FnMut(Health) + Send),
    ) -> Option<End> {
        match self {
            Session::Websocket(s) => s.hold(config, stop).await,
            Session::Sse(s) => s.hold(config, stop).await,
            Session::Grpc(s) => s.hold(config, stop, health).await,
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
            // Accepted into a listen queue whose socket then closed (its process gone).
            std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::ConnectionAborted => {
                Class::Reset
            }
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
    let event = |at, end: End| Disconnect {
        at,
        connection: index,
        class: end.class,
        code: end.code,
        detail: end.detail,
    };
    // When the stream was lost (or the first attempt failed), and whether an attempt failed
    // since: the reconnect latency, and the rule that an outage is one disconnect.
    let mut lost: Option<(Duration, bool)> = None;
    // Since when this connection has had no usable stream (lost, or not serving).
    let mut gap: Option<Duration> = None;
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
                gap.get_or_insert(at);
                // The first failure of an outage (or of the run) is a disconnect; later ones are
                // counted only.
                let first = match &mut lost {
                    Some((_, failed)) => !std::mem::replace(failed, true),
                    None => {
                        lost = Some((at, true));
                        true
                    }
                };
                if first {
                    tally.disconnected(event(at, end));
                }
            }
            Ok(session) => {
                {
                    let at = now();
                    let mut tally = probe.tally();
                    tally.connected();
                    if let Some((since, _)) = lost.take() {
                        tally.reconnected(at.saturating_sub(since));
                    }
                    if session.usable_when_open()
                        && let Some(since) = gap.take()
                    {
                        tally.outage(at.saturating_sub(since));
                    }
                }
                let mut health = |said: Health| {
                    let at = now();
                    let mut tally = probe.tally();
                    match said {
                        Health::Serving => {
                            if let Some(since) = gap.take() {
                                tally.outage(at.saturating_sub(since));
                            }
                        }
                        // A change from serving (or the run's start) is an event; the time
                        // until SERVING again is the connection's gap.
                        Health::Not(status) if gap.is_none() => {
                            gap = Some(at);
                            let code = crate::measure::code::health(status);
                            let name = crate::measure::code::name(code).unwrap_or("HEALTH_UNKNOWN");
                            tally.not_serving(Disconnect {
                                at,
                                connection: index,
                                class: Class::NotServing,
                                code: u16::try_from(status).ok(),
                                detail: format!("the health watch answered {name}"),
                            });
                        }
                        Health::Not(_) => {}
                    }
                };
                let Some(end) = session.hold(&probe.config, &stop, &mut health).await else {
                    break;
                };
                let at = now();
                probe.tally().disconnected(event(at, end));
                lost = Some((at, false));
                gap.get_or_insert(at);
            }
        }
    }
    if let Some(since) = gap {
        probe.tally().outage(now().saturating_sub(since));
    }
}
