//! Connections: DNS, TCP, TLS and the HTTP/1.1 or HTTP/2 handshake, with new-connection attempts
//! held under a rate ceiling (governor) so a refusing target does not get a connect storm.
//!
//! hyper's low-level `client::conn` API is used directly: there is no pool and so no hidden retry.
//! Every connection is opened for a request that then counts as sent on a `new` connection.

use std::future::{Future, poll_fn};
use std::io;
use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::Poll;
use std::time::Instant;

use bytes::Bytes;
use governor::clock::Clock;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::task::JoinSet;
use tokio_rustls::TlsConnector;

use crate::config::TargetConfig;
use crate::outcome::{EnvoyReply, ErrorClass};
#[cfg(target_os = "linux")]
use crate::stamped::StampedStream;
use crate::stamped::{Activity, LastReceive};
use crate::version::{BODY_PREFIX, VersionId, VersionProbe};

/// The request body type the engine sends.
pub type RequestBody = Full<Bytes>;

/// Errors setting up the connector (not per-request failures, which are [`ErrorClass`]).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The URL's host is not a valid TLS server name.
    #[error("{0:?} is not a valid TLS server name")]
    ServerName(String),
}

/// The future that drives an HTTP/1.1 connection (reads and writes its socket).
type Driver = Pin<Box<dyn Future<Output = hyper::Result<()>> + Send>>;

/// A complete response: its status, and the size of its body (read to the end and discarded).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reply {
    /// Status code.
    pub status: u16,
    /// Body bytes read.
    pub body_bytes: u64,
    /// Which version answered, if a probe is set.
    pub version: Option<VersionId>,
    /// A 5xx that Envoy produced itself (`server: envoy`, or its `upstream connect error` /
    /// `no healthy upstream` bodies): the mesh, not the application, failed the request.
    pub envoy: Option<EnvoyReply>,
    /// When the kernel received the response's last bytes (HTTP/1.1 on Linux), which can be
    /// earlier than when gapless read them.
    pub received: Option<Instant>,
}

/// Bytes of a 5xx body kept to recognise who produced it.
const SIGNATURE_PREFIX: usize = 512;

/// An open connection.
pub enum Link {
    /// HTTP/1.1: one request at a time. The connection is driven inside the task that sends on
    /// it (no driver task, no cross-task wake-ups per request).
    H1 {
        /// Sends requests.
        sender: http1::SendRequest<RequestBody>,
        /// Drives the socket; polled together with each exchange.
        driver: Driver,
        /// The driver has finished: the connection is gone.
        ended: bool,
        /// When the bytes last read reached the socket.
        received: Arc<LastReceive>,
        /// Where a response body being read counts as a transfer under way.
        activity: Arc<Activity>,
    },
    /// HTTP/2: cloneable, streams multiplexed, driven by its own task.
    H2(http2::SendRequest<RequestBody>),
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Link::H1 { ended, .. } => f.debug_struct("H1").field("ended", ended).finish(),
            Link::H2(_) => f.write_str("H2"),
        }
    }
}

impl Link {
    /// True if the connection can take a request. For HTTP/1.1 this first lets the connection
    /// process what arrived while it was idle (a close from the server, typically). Sends nothing.
    pub async fn ready(&mut self) -> bool {
        match self {
            Link::H1 {
                sender,
                driver,
                ended,
                ..
            } => {
                if !*ended {
                    let finished = poll_fn(|cx| Poll::Ready(driver.as_mut().poll(cx).is_ready()));
                    *ended = finished.await;
                }
                !*ended && !sender.is_closed()
            }
            Link::H2(s) => !s.is_closed() && s.ready().await.is_ok(),
        }
    }

    /// Sends one request and reads the whole response.
    pub async fn exchange(
        &mut self,
        request: Request<RequestBody>,
        probe: &VersionProbe,
        received: &AtomicU64,
    ) -> Result<Reply, ErrorClass> {
        match self {
            Link::H1 {
                sender,
                driver,
                ended,
                received: last,
                activity,
            } => {
                if *ended {
                    return Err(ErrorClass::ClosedBeforeResponse);
                }
                last.clear();
                let response = sender.send_request(request);
                let exchange = read_reply(response, probe, received, Some(activity));
                tokio::pin!(exchange);
                let reply = tokio::select! {
                    biased;
                    reply = &mut exchange => reply,
                    _ = driver.as_mut() => {
                        // The connection ended; the exchange now resolves with its error.
                        *ended = true;
                        exchange.await
                    }
                };
                if reply.is_ok() && last.drains() > 1 {
                    // It came in pieces, with waits between them: never nap on this target
                    // again (see `Activity`).
                    activity.arrived_in_pieces();
                }
                reply.map(|reply| Reply {
                    received: last.get(),
                    ..reply
                })
            }
            Link::H2(s) => read_reply(s.send_request(request), probe, received, None).await,
        }
    }

    /// A second handle on an HTTP/2 connection (`None` for HTTP/1.1).
    pub fn share(&self) -> Option<Link> {
        match self {
            Link::H1 { .. } => None,
            Link::H2(s) => Some(Link::H2(s.clone())),
        }
    }
}

/// Awaits the response head, then reads the body to the end, discarding it (only its first
/// bytes are kept when the version is read from the body), so the response counts as complete
/// and the connection can be reused. Every body byte read is added to `received` as it arrives,
/// so a body that never ends is counted too. While the body is read it counts as a transfer in
/// `activity`, if given: a body that does not arrive in one piece keeps the engine watching.
async fn read_reply(
    response: impl Future<Output = Result<Response<Incoming>, hyper::Error>>,
    probe: &VersionProbe,
    received: &AtomicU64,
    activity: Option<&Activity>,
) -> Result<Reply, ErrorClass> {
    let response = response
        .await
        .map_err(|e| ErrorClass::from_hyper_error(&e))?;
    let _body = activity.map(Activity::transfer);
    let status = response.status().as_u16();
    let (parts, mut body) = response.into_parts();
    let mut prefix = Vec::new();
    let keep = if probe.needs_body() {
        BODY_PREFIX
    } else if status >= 500 {
        SIGNATURE_PREFIX
    } else {
        0
    };
    let mut body_bytes = 0u64;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| ErrorClass::from_hyper_error(&e))?;
        if let Some(data) = frame.data_ref() {
            body_bytes += data.len() as u64;
            received.fetch_add(data.len() as u64, Ordering::Relaxed);
            let room = keep.saturating_sub(prefix.len());
            prefix.extend_from_slice(&data[..data.len().min(room)]);
        }
    }
    let version = if probe.is_enabled() {
        probe.identify(&parts.headers, &prefix)
    } else {
        None
    };
    Ok(Reply {
        status,
        body_bytes,
        version,
        envoy: if status >= 500 {
            let server = parts
                .headers
                .get(http::header::SERVER)
                .and_then(|v| v.to_str().ok());
            EnvoyReply::recognise(server, &prefix)
        } else {
            None
        },
        received: None,
    })
}

/// Opens connections to one target.
pub struct Connector {
    host: String,
    port: u16,
    tls: Option<(TlsConnector, ServerName<'static>)>,
    http2: bool,
    limiter: DefaultDirectRateLimiter,
    opened: AtomicU64,
    failed: AtomicU64,
    activity: Arc<Activity>,
}

impl std::fmt::Debug for Connector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connector")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("tls", &self.tls.is_some())
            .field("http2", &self.http2)
            .finish_non_exhaustive()
    }
}

impl Connector {
    /// A connector for `target`, allowing at most `max_connect_rate` attempts per second (with a
    /// burst of `burst`, normally the number of connections).
    pub fn new(
        target: &TargetConfig,
        max_connect_rate: NonZeroU32,
        burst: NonZeroU32,
    ) -> Result<Connector, Error> {
        let url = &target.url;
        let tls = if url.is_tls() {
            let name = ServerName::try_from(url.host().to_string())
                .map_err(|_| Error::ServerName(url.host().to_string()))?;
            let config = crate::tls::client_config(target.insecure, target.http2, &target.ca_certs);
            Some((TlsConnector::from(config), name))
        } else {
            None
        };
        let quota = Quota::per_second(max_connect_rate).allow_burst(burst);
        Ok(Connector {
            host: url.host().to_string(),
            port: url.port(),
            tls,
            http2: target.http2,
            limiter: RateLimiter::direct(quota),
            opened: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            activity: Arc::default(),
        })
    }

    /// Connections opened successfully so far.
    pub fn opened(&self) -> u64 {
        self.opened.load(Ordering::Relaxed)
    }

    /// Connection attempts that failed so far.
    pub fn failed(&self) -> u64 {
        self.failed.load(Ordering::Relaxed)
    }

    /// What the connections to this target are doing, as far as naps are concerned.
    pub fn activity(&self) -> &Activity {
        &self.activity
    }

    /// True if the engine thread may stop watching the sockets for a moment: HTTP/1.1, receive
    /// timestamps arriving (a response that arrives meanwhile keeps its true completion time),
    /// and no connect, blocked write or response body under way (see [`crate::stamped`]).
    pub fn may_look_away(&self) -> bool {
        !self.http2 && self.activity.may_look_away()
    }

    /// Waits for the connect-rate ceiling to allow one attempt. `false` if that would be after
    /// `deadline` (the attempt is then not made).
    pub async fn admit(&self, deadline: Instant) -> bool {
        // Waiting counts as a transfer, like the connect it leads to: no nap may delay either.
        let _waiting = self.activity.transfer();
        loop {
            match self.limiter.check() {
                Ok(()) => return true,
                Err(not_until) => {
                    let wait = not_until.wait_time_from(self.limiter.clock().now());
                    let wake = Instant::now() + wait;
                    if wake >= deadline {
                        return false;
                    }
                    tokio::time::sleep_until(wake.into()).await;
                }
            }
        }
    }

    /// Opens one connection; an HTTP/2 connection's driver task goes into `drivers`. The caller
    /// bounds the time.
    pub async fn connect(&self, drivers: &mut JoinSet<()>) -> Result<Link, ErrorClass> {
        // Under way until it ends, however it ends (it can be dropped at its deadline).
        let _connecting = self.activity.transfer();
        let result = self.open(drivers).await;
        match result {
            Ok(_) => self.opened.fetch_add(1, Ordering::Relaxed),
            Err(_) => self.failed.fetch_add(1, Ordering::Relaxed),
        };
        result
    }

    async fn open(&self, drivers: &mut JoinSet<()>) -> Result<Link, ErrorClass> {
        let tcp = self.tcp().await?;
        // Latency matters more than packet count for a load generator.
        let _ = tcp.set_nodelay(true);
        if self.http2 {
            // Streams share the connection: one receive time per read would not say which
            // stream it belongs to. HTTP/2 reads plainly, and the engine never looks away.
            return self.secure(tcp, None, drivers).await;
        }
        #[cfg(target_os = "linux")]
        {
            let (stream, received) = StampedStream::new(tcp, self.activity.clone())
                .map_err(|e| ErrorClass::from_connect_error(&e))?;
            self.secure(stream, Some(received), drivers).await
        }
        #[cfg(not(target_os = "linux"))]
        self.secure(tcp, None, drivers).await
    }

    /// The TLS handshake if the target wants one, then the HTTP handshake.
    async fn secure<I>(
        &self,
        io: I,
        received: Option<Arc<LastReceive>>,
        drivers: &mut JoinSet<()>,
    ) -> Result<Link, ErrorClass>
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        match &self.tls {
            None => self.handshake(io, received, drivers).await,
            Some((connector, name)) => {
                let tls = connector
                    .connect(name.clone(), io)
                    .await
                    .map_err(|e| ErrorClass::from_tls_error(&e))?;
                self.handshake(tls, received, drivers).await
            }
        }
    }

    async fn tcp(&self) -> Result<TcpStream, ErrorClass> {
        let addrs: Vec<SocketAddr> = match self.host.parse::<std::net::IpAddr>() {
            Ok(ip) => vec![SocketAddr::new(ip, self.port)],
            Err(_) => tokio::net::lookup_host((self.host.as_str(), self.port))
                .await
                .map_err(|_| ErrorClass::Dns)?
                .collect(),
        };
        let mut last = io::Error::new(io::ErrorKind::NotFound, "no address");
        for addr in addrs.iter() {
            match TcpStream::connect(addr).await {
                Ok(s) => return Ok(s),
                Err(e) => last = e,
            }
        }
        if addrs.is_empty() {
            return Err(ErrorClass::Dns);
        }
        Err(ErrorClass::from_connect_error(&last))
    }

    async fn handshake<I>(
        &self,
        io: I,
        received: Option<Arc<LastReceive>>,
        drivers: &mut JoinSet<()>,
    ) -> Result<Link, ErrorClass>
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let io = TokioIo::new(io);
        if self.http2 {
            let (sender, conn) = http2::Builder::new(TokioExecutor::new())
                .handshake(io)
                .await
                .map_err(|e| ErrorClass::from_hyper_error(&e))?;
            drivers.spawn(async move {
                let _ = conn.await;
            });
            Ok(Link::H2(sender))
        } else {
            let (sender, conn) = http1::Builder::new()
                .handshake(io)
                .await
                .map_err(|e| ErrorClass::from_hyper_error(&e))?;
            Ok(Link::H1 {
                sender,
                driver: Box::pin(conn),
                ended: false,
                received: received.unwrap_or_default(),
                activity: self.activity.clone(),
            })
        }
    }
}
