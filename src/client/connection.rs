//! Connections: DNS, TCP, TLS and the HTTP/1.1 or HTTP/2 handshake, with new-connection attempts
//! held under a rate ceiling (governor) so a refusing target does not get a connect storm.
//!
//! There is no pool and so no hidden retry: every connection is opened for a request that then
//! counts as sent on a `new` connection. HTTP/1.1 requests go through [`crate::client::wire`],
//! HTTP/2 requests and gRPC unary calls through [`crate::client::mux`], gapless's own HTTP/2
//! client (a gRPC answer is then read by `tonic`'s decoder, [`GrpcCall::read`]).

use std::io;
use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use bytes::Bytes;
use governor::clock::Clock;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use http::header::{CONTENT_LENGTH, HOST, HeaderName, HeaderValue, USER_AGENT};
use http::{HeaderMap, Method, StatusCode, Uri, Version};
use http_body_util::{BodyExt, Full};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::task::JoinSet;
use tokio_rustls::TlsConnector;

use crate::client::grpc::GrpcCall;
use crate::client::mux::Mux;
#[cfg(target_os = "linux")]
use crate::client::stamped::StampedStream;
use crate::client::stamped::{Activity, LastReceive};
use crate::client::wire::{EncodedRequest, Sink, Wire};
use crate::config::TargetConfig;
use crate::measure::outcome::{EnvoyReply, ErrorClass, Fault};
use crate::measure::version::{BODY_PREFIX, VersionId, VersionProbe};

/// Errors setting up the connector (not per-request failures, which are [`Fault`]s).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The URL's host is not a valid TLS server name.
    #[error("{0:?} is not a valid TLS server name")]
    ServerName(String),
}

/// A byte stream an HTTP/1.1 connection runs on: plain TCP (stamped on Linux) or TLS over it.
pub trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}

impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// The request every attempt of a run sends, built once: encoded for HTTP/1.1, and as the
/// header block of the HTTP/2 client.
#[derive(Debug)]
pub struct RequestTemplate {
    body: Bytes,
    encoded: EncodedRequest,
    /// The HTTP/2 header block ([`crate::client::hpack::encode_request`]), for
    /// [`crate::client::mux`] (gRPC calls too); empty for HTTP/1.1.
    block: Vec<u8>,
    /// A gRPC call: the body is its framed message, the answer is read as gRPC.
    grpc: Option<Arc<GrpcCall>>,
}

impl RequestTemplate {
    /// The request to `target`: its method, headers and body, plus `host` (HTTP/1.1) and
    /// `user-agent` unless given.
    pub fn new(target: &TargetConfig) -> RequestTemplate {
        let mut headers = target.headers.clone();
        let (mut method, mut body) = (target.method.clone(), target.body.clone());
        let (uri, version) = if let Some(call) = &target.grpc {
            // gRPC is HTTP/2 (the configuration sets `http2`): a POST to the method's path.
            headers.insert(
                http::header::CONTENT_TYPE,
                HeaderValue::from_static("application/grpc"),
            );
            headers.insert(http::header::TE, HeaderValue::from_static("trailers"));
            (method, body) = (Method::POST, call.body());
            h2_headers(&mut headers, &method, body.len());
            let mut parts = target.url.uri().clone().into_parts();
            parts.path_and_query = call.path().parse().ok();
            let uri = Uri::from_parts(parts).unwrap_or_else(|_| target.url.uri().clone());
            (uri, Version::HTTP_2)
        } else if target.http2 {
            h2_headers(&mut headers, &method, body.len());
            (target.url.uri().clone(), Version::HTTP_2)
        } else {
            if !headers.contains_key(HOST)
                && let Ok(host) = HeaderValue::from_str(target.url.authority())
            {
                headers.insert(HOST, host);
            }
            // Origin form for HTTP/1.1; a path from a valid URI is always a valid URI.
            let path = target
                .url
                .path_and_query()
                .parse()
                .unwrap_or_else(|_| Uri::from_static("/"));
            (path, Version::HTTP_11)
        };
        if !headers.contains_key(USER_AGENT) {
            headers.insert(
                USER_AGENT,
                HeaderValue::from_static(concat!("gapless/", env!("CARGO_PKG_VERSION"))),
            );
        }
        let encoded = EncodedRequest::new(&method, &uri.to_string(), &headers, body.clone());
        let block = if version == Version::HTTP_2 {
            h2_block(&method, &uri, &headers)
        } else {
            Vec::new()
        };
        RequestTemplate {
            body,
            encoded,
            block,
            grpc: target.grpc.clone(),
        }
    }
}

/// Fits HTTP/1.1 headers to HTTP/2 as hyper's client did: connection-specific headers (and
/// those `connection` names) are removed, `te` unless it is `trailers`, and a `content-length`
/// is added when the body is not empty or the method defines a payload.
fn h2_headers(headers: &mut HeaderMap, method: &Method, body_len: usize) {
    use http::header::{CONNECTION, TE, TRANSFER_ENCODING, UPGRADE};
    for name in ["keep-alive", "proxy-connection"] {
        headers.remove(name);
    }
    headers.remove(TRANSFER_ENCODING);
    headers.remove(UPGRADE);
    if headers.get(TE).is_some_and(|te| te != "trailers") {
        headers.remove(TE);
    }
    if let Some(connection) = headers.remove(CONNECTION)
        && let Ok(names) = connection.to_str()
    {
        for name in names.split(',') {
            headers.remove(name.trim());
        }
    }
    let payload_defined = !matches!(
        *method,
        Method::GET | Method::HEAD | Method::DELETE | Method::CONNECT
    );
    if (body_len != 0 || payload_defined) && !headers.contains_key(CONTENT_LENGTH) {
        headers.insert(CONTENT_LENGTH, HeaderValue::from(body_len));
    }
}

/// The HTTP/2 header block of a request: the pseudo-header fields (`:authority` from the URL,
/// as the `h2` crate sends it), then the headers in their order.
fn h2_block(method: &Method, uri: &Uri, headers: &HeaderMap) -> Vec<u8> {
    let scheme = uri.scheme_str().unwrap_or("http");
    let authority = uri.authority().map_or("", |a| a.as_str());
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let mut fields: Vec<(&[u8], &[u8])> = vec![
        (b":method", method.as_str().as_bytes()),
        (b":scheme", scheme.as_bytes()),
        (b":authority", authority.as_bytes()),
        (b":path", path.as_bytes()),
    ];
    fields.extend(
        headers
            .iter()
            .map(|(name, value)| (name.as_str().as_bytes(), value.as_bytes())),
    );
    let mut block = Vec::new();
    crate::client::hpack::encode_request(&fields, &mut block);
    block
}

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
    /// HTTP/1.1: one request at a time, written and read by the task that sends it.
    H1 {
        /// The connection.
        wire: Box<Wire<Box<dyn Stream>>>,
        /// The connection cannot take another request.
        ended: bool,
        /// When the bytes last read reached the socket.
        received: Arc<LastReceive>,
        /// Where a response body being read counts as a transfer under way.
        activity: Arc<Activity>,
    },
    /// HTTP/2 (gapless's own client), gRPC calls included: cloneable, streams multiplexed;
    /// the connection is driven by its own task.
    Mux(Mux),
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Link::H1 { ended, .. } => f.debug_struct("H1").field("ended", ended).finish(),
            Link::Mux(_) => f.write_str("Mux"),
        }
    }
}

impl Link {
    /// True if the connection can take a request. For HTTP/1.1 this first looks at what arrived
    /// while it was idle (a close from the server, typically). Sends nothing.
    pub async fn ready(&mut self) -> bool {
        match self {
            Link::H1 { wire, ended, .. } => {
                if !*ended {
                    *ended = !wire.is_open().await;
                }
                !*ended
            }
            Link::Mux(mux) => mux.ready(),
        }
    }

    /// Sends one request and reads the whole response.
    pub async fn exchange(
        &mut self,
        request: &RequestTemplate,
        probe: &VersionProbe,
        received: &AtomicU64,
    ) -> Result<Reply, Fault> {
        match self {
            Link::H1 {
                wire,
                ended,
                received: last,
                activity,
            } => {
                if *ended {
                    return Err(Fault::new(
                        ErrorClass::ClosedBeforeResponse,
                        "the connection had ended before the request",
                    ));
                }
                last.clear();
                let mut gleaned = Gleaned::new(probe, received);
                let result = wire
                    .exchange(&request.encoded, Some(activity), &mut gleaned)
                    .await;
                let response = match result {
                    Ok(response) => response,
                    Err(fault) => {
                        *ended = true;
                        return Err(fault);
                    }
                };
                *ended = !response.reusable;
                if last.drains() > 1 {
                    // It came in pieces, with waits between them: never nap on this target
                    // again (see `Activity`).
                    activity.arrived_in_pieces();
                }
                Ok(gleaned.reply(response.status, response.body_bytes, last.get()))
            }
            Link::Mux(mux) => match &request.grpc {
                None => mux_exchange(mux, request, probe, received).await,
                Some(call) => grpc_exchange(mux, request, call, probe, received).await,
            },
        }
    }

    /// A second handle on an HTTP/2 connection (`None` for HTTP/1.1).
    pub fn share(&self) -> Option<Link> {
        match self {
            Link::H1 { .. } => None,
            Link::Mux(mux) => Some(Link::Mux(mux.clone())),
        }
    }

    /// True for an HTTP/2 connection that takes no new stream but still finishes those it
    /// carries (GOAWAY): its driver ends by itself and must not be stopped.
    pub fn draining(&self) -> bool {
        matches!(self, Link::Mux(mux) if mux.draining())
    }
}

/// What an HTTP/1.1 exchange keeps of its response as it is read.
struct Gleaned<'a> {
    probe: &'a VersionProbe,
    received: &'a AtomicU64,
    version: Option<VersionId>,
    envoy_server: bool,
    keep: usize,
    prefix: Vec<u8>,
}

impl<'a> Gleaned<'a> {
    fn new(probe: &'a VersionProbe, received: &'a AtomicU64) -> Gleaned<'a> {
        Gleaned {
            probe,
            received,
            version: None,
            envoy_server: false,
            keep: 0,
            prefix: Vec::new(),
        }
    }

    /// Takes what the response head says: the version (from a header), whether Envoy
    /// answered, and how much of the body to keep. `value_of` looks a header's value up.
    fn note_head<'v>(&mut self, status: u16, value_of: impl Fn(&HeaderName) -> Option<&'v [u8]>) {
        self.version = self.probe.identify_header(&value_of);
        if status >= 500 {
            self.envoy_server =
                value_of(&http::header::SERVER).is_some_and(EnvoyReply::is_envoy_server);
        }
        self.keep = kept_prefix(self.probe.needs_body(), status);
    }

    /// The reply, once the body has been read.
    fn reply(self, status: u16, body_bytes: u64, received: Option<Instant>) -> Reply {
        Reply {
            status,
            body_bytes,
            version: self
                .version
                .or_else(|| self.probe.identify_body(&self.prefix)),
            envoy: (status >= 500)
                .then(|| EnvoyReply::recognise(self.envoy_server, &self.prefix))
                .flatten(),
            received,
        }
    }
}

impl Sink for Gleaned<'_> {
    fn head(&mut self, status: u16, headers: &[httparse::Header<'_>]) {
        self.note_head(status, |name| {
            headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case(name.as_str()))
                .map(|h| h.value)
        });
    }

    fn body(&mut self, data: &[u8]) {
        self.received
            .fetch_add(data.len() as u64, Ordering::Relaxed);
        self.keep_prefix(data);
    }
}

impl Gleaned<'_> {
    /// Keeps the start of the body, as much as [`Gleaned::note_head`] asked for.
    fn keep_prefix(&mut self, data: &[u8]) {
        let room = self.keep.saturating_sub(self.prefix.len());
        self.prefix.extend_from_slice(&data[..data.len().min(room)]);
    }
}

/// How much of a body to keep: the start the version regex reads (when the probe reads the
/// body), or the start of a 5xx that tells who produced it.
fn kept_prefix(needs_body: bool, status: u16) -> usize {
    if needs_body {
        BODY_PREFIX
    } else if status >= 500 {
        SIGNATURE_PREFIX
    } else {
        0
    }
}

/// Sends one request on an HTTP/2 connection of gapless's own client and awaits the whole
/// response, which its connection's driver reads (only the first bytes of the body are kept,
/// see [`kept_prefix`]).
async fn mux_exchange(
    mux: &Mux,
    request: &RequestTemplate,
    probe: &VersionProbe,
    received: &AtomicU64,
) -> Result<Reply, Fault> {
    let keep = keep_for(probe.needs_body(), false);
    mux.exchange(&request.block, &request.body, keep, received, |answer| {
        let mut gleaned = Gleaned::new(probe, received);
        gleaned.note_head(answer.status, |name| answer.field(name.as_str().as_bytes()));
        gleaned.keep_prefix(answer.prefix);
        gleaned.reply(answer.status, answer.body_bytes, None)
    })
    .await
}

/// How much of a body a stream keeps for its exchange, by status ([`Mux::exchange`]'s `keep`):
/// what [`kept_prefix`] says; for a gRPC call, a `200` is a gRPC answer, its message kept whole
/// (up to [`GRPC_MAX_BODY`]).
fn keep_for(needs_body: bool, grpc: bool) -> fn(u16) -> usize {
    match (needs_body, grpc) {
        (true, false) => |status| kept_prefix(true, status),
        (false, false) => |status| kept_prefix(false, status),
        (true, true) => |status| match status {
            200 => GRPC_MAX_BODY,
            _ => kept_prefix(true, status),
        },
        (false, true) => |status| match status {
            200 => GRPC_MAX_BODY,
            _ => kept_prefix(false, status),
        },
    }
}

/// The most body bytes of a gRPC answer kept for tonic's decoder: one message of tonic's default
/// largest (4 MiB) and its 5-byte frame header. A longer body fails the call as `protocol`.
const GRPC_MAX_BODY: usize = 4 * 1024 * 1024 + 5;

/// A gRPC call on an HTTP/2 connection of gapless's own client: the stream keeps the head, the
/// whole message (up to [`GRPC_MAX_BODY`]) and the trailers, copied out of the connection as it
/// ends; tonic's decoder then reads them ([`GrpcCall::read`]) outside the connection's lock.
/// An answer that is not gRPC (no `200`, no `grpc-status`: a proxy's error) is read as HTTP,
/// its status the code, as [`mux_exchange`] reads it.
async fn grpc_exchange(
    mux: &Mux,
    request: &RequestTemplate,
    call: &GrpcCall,
    probe: &VersionProbe,
    received: &AtomicU64,
) -> Result<Reply, Fault> {
    let keep = keep_for(probe.needs_body(), true);
    let answer = mux
        .exchange(&request.block, &request.body, keep, received, Copied::of)
        .await?;
    let head = answer.head();
    let status = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::OK);
    let mut gleaned = Gleaned::new(probe, received);
    if !GrpcCall::is_grpc(status, &head) {
        gleaned.note_head(answer.status, |name| head.get(name).map(|v| v.as_bytes()));
        gleaned.keep_prefix(&answer.body);
        return Ok(gleaned.reply(answer.status, answer.body_bytes, None));
    }
    // A gRPC answer ([`GrpcCall::read`]): its code is the reply's status.
    gleaned.note_head(200, |name| head.get(name).map(|v| v.as_bytes()));
    if answer.body_bytes > answer.body.len() as u64 && !head.contains_key("grpc-status") {
        return Err(Fault::protocol(
            "a gRPC answer larger than one message of 4 MiB (tonic's default limit)",
        ));
    }
    let trailers = answer.trailers();
    let body = Full::new(answer.body).with_trailers(async move { trailers.map(Ok) });
    let (code, body_bytes) = call.read(&head, body).await?;
    Ok(gleaned.reply(code, body_bytes, None))
}

/// What a gRPC call takes out of its stream's answer: copies, made under the connection's
/// lock and turned into `http` types after it.
struct Copied {
    status: u16,
    body_bytes: u64,
    body: Bytes,
    /// The names and values of the head's fields, then of the trailers', end to end.
    bytes: Vec<u8>,
    /// For each field: where its name ends and where its value ends in `bytes`.
    ends: Vec<(u32, u32)>,
    /// How many of `ends` are the head's (the rest are the trailers').
    head: usize,
    /// The stream ended with trailers (an empty block reads as none, which tonic takes alike).
    trailed: bool,
}

impl Copied {
    fn of(answer: crate::client::mux::Answer<'_>) -> Copied {
        let (mut bytes, mut ends) = (Vec::new(), Vec::new());
        let mut add = |(name, value): (&[u8], &[u8])| {
            bytes.extend_from_slice(name);
            let name_end = bytes.len() as u32;
            bytes.extend_from_slice(value);
            ends.push((name_end, bytes.len() as u32));
        };
        answer.fields().for_each(&mut add);
        let head = answer.fields().count();
        answer.trailers().for_each(&mut add);
        Copied {
            status: answer.status,
            body_bytes: answer.body_bytes,
            body: Bytes::copy_from_slice(answer.prefix),
            trailed: ends.len() > head,
            bytes,
            ends,
            head,
        }
    }

    /// The fields `ends[range]` as a header map (a field that is not a valid header is left
    /// out, as hyper would refuse it).
    fn map(&self, range: std::ops::Range<usize>) -> HeaderMap {
        let mut map = HeaderMap::with_capacity(range.len());
        let mut start = if range.start == 0 {
            0
        } else {
            self.ends[range.start - 1].1 as usize
        };
        for &(name_end, value_end) in &self.ends[range] {
            let (name_end, value_end) = (name_end as usize, value_end as usize);
            let name = HeaderName::from_bytes(&self.bytes[start..name_end]);
            let value = HeaderValue::from_bytes(&self.bytes[name_end..value_end]);
            if let (Ok(name), Ok(value)) = (name, value) {
                map.append(name, value);
            }
            start = value_end;
        }
        map
    }

    /// The final head's fields.
    fn head(&self) -> HeaderMap {
        self.map(0..self.head)
    }

    /// The trailers' fields, if the stream ended with some.
    fn trailers(&self) -> Option<HeaderMap> {
        self.trailed.then(|| self.map(self.head..self.ends.len()))
    }
}

/// An HTTP/2 response body from `h2` as a [`hyper::body::Body`] (what tonic's decoder reads):
/// its data frames, giving the window back as each is read, then its trailers. The unary gRPC
/// answers and the gRPC stream probes (`crate::streams::grpc`) read through it.
pub struct H2Body {
    stream: h2::RecvStream,
    state: BodyState,
}

/// Where an [`H2Body`] is.
#[derive(Clone, Copy, PartialEq, Eq)]
enum BodyState {
    Data,
    Trailers,
    Done,
}

impl H2Body {
    /// The body of `stream`.
    pub fn new(stream: h2::RecvStream) -> H2Body {
        H2Body {
            stream,
            state: BodyState::Data,
        }
    }
}

impl hyper::body::Body for H2Body {
    type Data = Bytes;
    type Error = h2::Error;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, h2::Error>>> {
        use std::task::Poll;
        let this = self.get_mut();
        if this.state == BodyState::Data {
            match this.stream.poll_data(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Ok(data))) => {
                    let _ = this.stream.flow_control().release_capacity(data.len());
                    return Poll::Ready(Some(Ok(hyper::body::Frame::data(data))));
                }
                Poll::Ready(Some(Err(e))) => {
                    this.state = BodyState::Done;
                    return Poll::Ready(Some(Err(e)));
                }
                Poll::Ready(None) => this.state = BodyState::Trailers,
            }
        }
        if this.state == BodyState::Trailers {
            let trailers = std::task::ready!(this.stream.poll_trailers(cx));
            this.state = BodyState::Done;
            return Poll::Ready(match trailers {
                Ok(Some(t)) => Some(Ok(hyper::body::Frame::trailers(t))),
                Ok(None) => None,
                Err(e) => Some(Err(e)),
            });
        }
        Poll::Ready(None)
    }

    fn is_end_stream(&self) -> bool {
        self.state == BodyState::Done
    }
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
            let config =
                crate::client::tls::client_config(target.insecure, target.http2, &target.ca_certs);
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

    /// True when a connection opened for `a` serves `b` as well: everything [`Connector::new`]
    /// reads is the same (scheme, host, port, HTTP/2, and the TLS settings). The endpoints of
    /// a run that it holds for share one pool of connections.
    pub fn serves_both(a: &TargetConfig, b: &TargetConfig) -> bool {
        let (x, y) = (&a.url, &b.url);
        x.is_tls() == y.is_tls()
            && x.host() == y.host()
            && x.port() == y.port()
            && a.http2 == b.http2
            && (!x.is_tls() || (a.insecure == b.insecure && a.ca_certs == b.ca_certs))
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
    /// and no connect, blocked write or response body under way (see [`crate::client::stamped`]).
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
    pub async fn connect(&self, drivers: &mut JoinSet<()>) -> Result<Link, Fault> {
        // Under way until it ends, however it ends (it can be dropped at its deadline).
        let _connecting = self.activity.transfer();
        let result = self.open(drivers).await;
        match result {
            Ok(_) => self.opened.fetch_add(1, Ordering::Relaxed),
            Err(_) => self.failed.fetch_add(1, Ordering::Relaxed),
        };
        result
    }

    async fn open(&self, drivers: &mut JoinSet<()>) -> Result<Link, Fault> {
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
            let (stream, received) =
                StampedStream::new(tcp, self.activity.clone()).map_err(Fault::connect)?;
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
    ) -> Result<Link, Fault>
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        match &self.tls {
            None => self.handshake(io, received, drivers).await,
            Some((connector, name)) => {
                let tls = connector
                    .connect(name.clone(), io)
                    .await
                    .map_err(Fault::tls)?;
                self.handshake(tls, received, drivers).await
            }
        }
    }

    async fn tcp(&self) -> Result<TcpStream, Fault> {
        let addrs: Vec<SocketAddr> = match self.host.parse::<std::net::IpAddr>() {
            Ok(ip) => vec![SocketAddr::new(ip, self.port)],
            Err(_) => tokio::net::lookup_host((self.host.as_str(), self.port))
                .await
                .map_err(|e| Fault::io_as(ErrorClass::Dns, e))?
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
            return Err(Fault::new(
                ErrorClass::Dns,
                "the host name resolved to no address",
            ));
        }
        Err(Fault::connect(last))
    }

    async fn handshake<I>(
        &self,
        io: I,
        received: Option<Arc<LastReceive>>,
        drivers: &mut JoinSet<()>,
    ) -> Result<Link, Fault>
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        if self.http2 {
            let (mux, driver) = Mux::handshake(io);
            drivers.spawn(driver);
            Ok(Link::Mux(mux))
        } else {
            let io: Box<dyn Stream> = Box::new(io);
            Ok(Link::H1 {
                wire: Box::new(Wire::new(io)),
                ended: false,
                received: received.unwrap_or_default(),
                activity: self.activity.clone(),
            })
        }
    }
}

/// The HTTP/2 client settings hyper's client connection used (its defaults): windows of 2 MiB
/// per stream and 5 MiB per connection, 16 KiB frames and header lists, 100 streams until the
/// server's settings arrive, no server push. The gRPC stream probes use them.
pub fn h2_builder() -> h2::client::Builder {
    let mut builder = h2::client::Builder::new();
    builder
        .initial_max_send_streams(100)
        .initial_window_size(2 * 1024 * 1024)
        .initial_connection_window_size(5 * 1024 * 1024)
        .max_frame_size(16 * 1024)
        .max_header_list_size(16 * 1024)
        .max_send_buffer_size(1024 * 1024)
        .max_local_error_reset_streams(Some(1024))
        .enable_push(false);
    builder
}
