//! The front proxy of the demo service: what kube-proxy, an Ingress or an Envoy sidecar is. One
//! listening address; each request (each HTTP/2 stream) goes to an endpoint of the routing table,
//! over the proxy's own pools (no retries): HTTP/1.1 upstream for an HTTP/1.1 request, h2c for an
//! HTTP/2 one (gRPC), as Envoy's `USE_DOWNSTREAM_PROTOCOL` does. Bodies and trailers stream
//! through as they come (a gRPC server stream, server-sent events).
//!
//! The table holds sets of endpoints (a Service's pods, or a mesh subset) with route weights. A
//! set is chosen by weight (a deterministic low-discrepancy sequence), then an endpoint round
//! robin. Failures are answered the way Envoy answers them:
//!
//! - no endpoint in the chosen set: `503`, body `no healthy upstream`;
//! - the upstream connection cannot be opened (the endpoint is gone but still listed): `503`,
//!   body `upstream connect error or disconnect/reset before headers. reset reason: connection
//!   failure`;
//! - to a gRPC request, either is Envoy's gRPC local reply instead: `200` with `grpc-status: 14`
//!   (`UNAVAILABLE`) and the same text as `grpc-message`, headers only;
//! - the upstream connection breaks under a request (the replica was killed): what the client
//!   was sent through breaks too: its HTTP/1.1 connection is reset (as it would be if the client
//!   were connected to the pod itself), its HTTP/2 stream is reset (`RST_STREAM`, the client's
//!   other streams go on). Envoy itself answers a break before the response headers with its
//!   local reply (`503`, to a gRPC call `UNAVAILABLE`, "... reset reason: connection
//!   termination") and resets only after them; the demo resets in both cases, as kube-proxy's
//!   forwarding of the pod's own connection would: either way the request fails.
//!
//! HTTP/2 is terminated on each side, as Envoy and nginx do: an upstream `GOAWAY` (a draining
//! replica) ends that upstream connection gracefully (its streams finish, the next requests
//! open a new one), never the client's connection; what the client sees of a drain is each of
//! its streams ending as the replica ended it (a `Watch` stream's status `OK`).
//!
//! A WebSocket handshake (HTTP/1.1 `Upgrade`) is forwarded upstream; once the replica answers
//! `101`, the two connections are joined into a tunnel until either side ends (Envoy's
//! `upgrade_configs`, nginx's `proxy_set_header Upgrade`). A side that closes (FIN) is closed on
//! the other side in turn, so a replica's close frame and clean close reach the client as such;
//! a side that breaks (reset) breaks the other: the client's connection is reset.
//!
//! Every `503` carries `server: envoy`. The table changes only through [`Table`] updates, which
//! the cluster applies after the configured propagation delays.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use super::health::is_grpc;
use crate::targets::accept::{self, Answer, Broken, Ending, Readying, Sessions};
use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, Uri, Version, header};
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// Body of the 503 for a set without endpoints.
pub const NO_HEALTHY_UPSTREAM: &str = "no healthy upstream";
/// Body of the 503 for an endpoint that refuses connections.
pub const CONNECT_FAILURE: &str =
    "upstream connect error or disconnect/reset before headers. reset reason: connection failure";

/// One set of endpoints and its route weight.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EndpointSet {
    /// Route weight (0 = no traffic).
    pub weight: u32,
    /// Endpoint addresses.
    pub endpoints: Vec<SocketAddr>,
}

/// The proxy's view of the service.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Table {
    /// The sets, by index.
    pub sets: Vec<EndpointSet>,
}

impl Table {
    /// The set for request number `n`: by weight, spread evenly.
    fn pick(&self, n: u64) -> Option<(usize, &EndpointSet)> {
        let total: u64 = self.sets.iter().map(|s| u64::from(s.weight)).sum();
        if total == 0 {
            return None;
        }
        // The golden-ratio sequence spreads each set's share evenly over time.
        const PHI: f64 = 0.618_033_988_749_894_9;
        let point = ((n as f64 * PHI).fract() * total as f64) as u64;
        let mut acc = 0;
        for (i, set) in self.sets.iter().enumerate() {
            acc += u64::from(set.weight);
            if point < acc {
                return Some((i, set));
            }
        }
        self.sets
            .iter()
            .enumerate()
            .rev()
            .find(|(_, s)| s.weight > 0)
    }

    /// The set at `index`, created (empty, weight 0) if needed.
    pub fn set_mut(&mut self, index: usize) -> &mut EndpointSet {
        if index >= self.sets.len() {
            self.sets.resize_with(index + 1, EndpointSet::default);
        }
        &mut self.sets[index]
    }
}

/// The running proxy.
#[derive(Debug)]
pub struct Proxy {
    addr: SocketAddr,
    table: Arc<RwLock<Table>>,
}

impl Proxy {
    /// Starts the proxy on `listener` with `table`; the server task goes into `tasks` and stops
    /// with `stop`.
    pub fn start(
        listener: TcpListener,
        table: Table,
        tasks: &mut JoinSet<()>,
        stop: CancellationToken,
    ) -> std::io::Result<Proxy> {
        let addr = listener.local_addr()?;
        let table = Arc::new(RwLock::new(table));
        let shared = Arc::new(Shared {
            table: table.clone(),
            http1: Client::builder(TokioExecutor::new())
                .retry_canceled_requests(false)
                .pool_idle_timeout(Duration::from_secs(60))
                .build(connector()),
            http2: Client::builder(TokioExecutor::new())
                .retry_canceled_requests(false)
                .pool_idle_timeout(Duration::from_secs(60))
                .http2_only(true)
                .build(connector()),
            requests: AtomicU64::new(0),
            tunnels: Sessions::default(),
        });
        tasks.spawn(serve(listener, shared, stop));
        Ok(Proxy { addr, table })
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Changes the table (the caller applies propagation delays).
    pub fn update(&self, change: impl FnOnce(&mut Table)) {
        change(&mut self.table.write().unwrap_or_else(PoisonError::into_inner));
    }

    /// The table itself, for changes applied later.
    pub fn shared_table(&self) -> Arc<RwLock<Table>> {
        self.table.clone()
    }
}

fn connector() -> HttpConnector {
    let mut c = HttpConnector::new();
    c.set_nodelay(true);
    c.set_connect_timeout(Some(Duration::from_secs(1)));
    c
}

#[derive(Debug)]
struct Shared {
    table: Arc<RwLock<Table>>,
    /// Upstream HTTP/1.1, keep-alive (and upgrades).
    http1: Client<HttpConnector, Incoming>,
    /// Upstream h2c: one multiplexed connection per endpoint.
    http2: Client<HttpConnector, Incoming>,
    requests: AtomicU64,
    /// The WebSocket tunnels, ended with the proxy.
    tunnels: Sessions,
}

async fn serve(listener: TcpListener, shared: Arc<Shared>, stop: CancellationToken) {
    // With SO_LINGER 0, closing a client connection after an upstream break resets it.
    let readying = Readying {
        nodelay: true,
        reset_on_drop: true,
    };
    accept::serve(listener, readying, Ending::Abrupt(stop), Forward(shared)).await;
}

/// The proxy's answer: the request forwarded to an endpoint of the routed set.
#[derive(Clone, Debug)]
struct Forward(Arc<Shared>);

/// A response: the upstream's, streamed through, or the proxy's own.
type Body = Either<Incoming, Full<Bytes>>;

impl Answer for Forward {
    type Body = Body;

    async fn answer(&self, req: Request<Incoming>) -> Result<Response<Body>, Broken> {
        forward(&self.0, req).await.map_err(|UpstreamBroke| Broken)
    }

    fn sessions(&self) -> Option<&Sessions> {
        Some(&self.0.tunnels)
    }
}

/// An upstream break: hyper closes the client's HTTP/1.1 connection (reset, with SO_LINGER 0)
/// or resets its HTTP/2 stream.
#[derive(Debug, thiserror::Error)]
#[error("upstream connection broke")]
struct UpstreamBroke;

/// Headers not forwarded: the hop-by-hop ones (but `Connection` and `Upgrade` of a WebSocket
/// handshake) and `Host` (the upstream request's URI names the endpoint).
const NOT_FORWARDED: [header::HeaderName; 5] = [
    header::CONNECTION,
    header::UPGRADE,
    header::TRANSFER_ENCODING,
    header::PROXY_AUTHORIZATION,
    header::HOST,
];

async fn forward(
    shared: &Shared,
    mut req: Request<Incoming>,
) -> Result<Response<Body>, UpstreamBroke> {
    let n = shared.requests.fetch_add(1, Ordering::Relaxed);
    let grpc = is_grpc(&req);
    let endpoint = {
        let table = shared.table.read().unwrap_or_else(PoisonError::into_inner);
        table.pick(n).and_then(|(_, set)| {
            (!set.endpoints.is_empty()).then(|| set.endpoints[(n as usize) % set.endpoints.len()])
        })
    };
    let Some(endpoint) = endpoint else {
        return Ok(unavailable(NO_HEALTHY_UPSTREAM, grpc));
    };
    let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
    let Ok(uri) = format!("http://{endpoint}{path}").parse::<Uri>() else {
        return Ok(unavailable(NO_HEALTHY_UPSTREAM, grpc));
    };
    let upgrade = req.version() == Version::HTTP_11 && req.headers().contains_key(header::UPGRADE);
    let downstream = upgrade.then(|| hyper::upgrade::on(&mut req));
    let (parts, body) = req.into_parts();
    let mut upstream = Request::new(body);
    *upstream.method_mut() = parts.method;
    *upstream.uri_mut() = uri;
    for (name, value) in &parts.headers {
        let handshake = upgrade && (name == header::CONNECTION || name == header::UPGRADE);
        if handshake || !NOT_FORWARDED.contains(name) {
            upstream.headers_mut().append(name, value.clone());
        }
    }
    let client = if parts.version == Version::HTTP_2 {
        *upstream.version_mut() = Version::HTTP_2;
        &shared.http2
    } else {
        &shared.http1
    };
    let mut response = match client.request(upstream).await {
        Ok(r) => r,
        Err(e) if e.is_connect() => return Ok(unavailable(CONNECT_FAILURE, grpc)),
        Err(_) => return Err(UpstreamBroke),
    };
    let switching = response.status() == StatusCode::SWITCHING_PROTOCOLS;
    if let (Some(downstream), true) = (downstream, switching) {
        shared
            .tunnels
            .spawn(tunnel(downstream, hyper::upgrade::on(&mut response)));
    }
    let (parts, body) = response.into_parts();
    let mut out = Response::new(Either::Left(body));
    *out.status_mut() = parts.status;
    for (name, value) in &parts.headers {
        if switching || !NOT_FORWARDED.contains(name) {
            out.headers_mut().append(name, value.clone());
        }
    }
    Ok(out)
}

/// Joins the client's upgraded connection and the replica's until both sides have closed, or
/// either breaks (then both are dropped: the client's is reset, its socket lingering 0).
async fn tunnel(downstream: OnUpgrade, upstream: OnUpgrade) {
    let (Ok(downstream), Ok(upstream)) = tokio::join!(downstream, upstream) else {
        return;
    };
    let (mut downstream, mut upstream) = (TokioIo::new(downstream), TokioIo::new(upstream));
    let _ = tokio::io::copy_bidirectional(&mut downstream, &mut upstream).await;
}

/// The proxy's own `503` saying `why`; to a gRPC request, Envoy's gRPC local reply: `200`,
/// `grpc-status: 14` (`UNAVAILABLE`) and `why` as `grpc-message`, headers only.
fn unavailable(why: &'static str, grpc: bool) -> Response<Body> {
    let mut r = if grpc {
        let mut r = Response::new(Either::Right(Full::new(Bytes::new())));
        let headers = r.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/grpc"),
        );
        headers.insert("grpc-status", HeaderValue::from_static("14"));
        headers.insert("grpc-message", HeaderValue::from_static(why));
        r
    } else {
        let mut r = Response::new(Either::Right(Full::new(Bytes::from_static(why.as_bytes()))));
        *r.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
        r
    };
    r.headers_mut()
        .insert(header::SERVER, HeaderValue::from_static("envoy"));
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_split_requests_evenly_and_exactly() {
        let a: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let table = Table {
            sets: vec![
                EndpointSet {
                    weight: 90,
                    endpoints: vec![a],
                },
                EndpointSet {
                    weight: 10,
                    endpoints: vec![a],
                },
            ],
        };
        let canary = (0..10_000)
            .filter(|&n| table.pick(n).unwrap().0 == 1)
            .count();
        assert!((990..=1010).contains(&canary), "{canary}");
        // Spread out: no 100-request stretch without a canary request.
        let picks: Vec<usize> = (0..1000).map(|n| table.pick(n).unwrap().0).collect();
        assert!(picks.windows(100).all(|w| w.contains(&1)));
        assert_eq!(Table::default().pick(0), None);
    }
}
