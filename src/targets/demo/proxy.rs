//! The front proxy of the demo service: what kube-proxy, an Ingress or an Envoy sidecar is. One
//! listening address; each request goes to an endpoint of the routing table, over the proxy's own
//! keep-alive pool (no retries).
//!
//! The table holds sets of endpoints (a Service's pods, or a mesh subset) with route weights. A
//! set is chosen by weight (a deterministic low-discrepancy sequence), then an endpoint round
//! robin. Failures are answered the way Envoy answers them:
//!
//! - no endpoint in the chosen set: `503`, body `no healthy upstream`;
//! - the upstream connection cannot be opened (the endpoint is gone but still listed): `503`,
//!   body `upstream connect error or disconnect/reset before headers. reset reason: connection
//!   failure`;
//! - the upstream connection breaks under a request (the replica was killed): the client's
//!   connection is reset, as it would be if the client were connected to the pod itself.
//!
//! Every `503` carries `server: envoy`. The table changes only through [`Table`] updates, which
//! the cluster applies after the configured propagation delays.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use crate::targets::accept::{self, Answer, Broken, Ending, Readying};
use bytes::Bytes;
use http::{Request, Response, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
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
            client: Client::builder(TokioExecutor::new())
                .retry_canceled_requests(false)
                .pool_idle_timeout(Duration::from_secs(60))
                .build(connector()),
            requests: AtomicU64::new(0),
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
    client: Client<HttpConnector, Full<Bytes>>,
    requests: AtomicU64,
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

impl Answer for Forward {
    async fn answer(&self, req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Broken> {
        forward(&self.0, req).await.map_err(|UpstreamBroke| Broken)
    }
}

/// An upstream break: hyper closes the client connection (reset, with SO_LINGER 0).
#[derive(Debug, thiserror::Error)]
#[error("upstream connection broke")]
struct UpstreamBroke;

async fn forward(
    shared: &Shared,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, UpstreamBroke> {
    let n = shared.requests.fetch_add(1, Ordering::Relaxed);
    let endpoint = {
        let table = shared.table.read().unwrap_or_else(PoisonError::into_inner);
        table.pick(n).and_then(|(_, set)| {
            (!set.endpoints.is_empty()).then(|| set.endpoints[(n as usize) % set.endpoints.len()])
        })
    };
    let Some(endpoint) = endpoint else {
        return Ok(unavailable(NO_HEALTHY_UPSTREAM));
    };
    let (parts, body) = req.into_parts();
    let body = match body.collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return Err(UpstreamBroke),
    };
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let Ok(uri) = format!("http://{endpoint}{path}").parse::<Uri>() else {
        return Ok(unavailable(NO_HEALTHY_UPSTREAM));
    };
    let mut upstream = Request::new(Full::new(body));
    *upstream.method_mut() = parts.method;
    *upstream.uri_mut() = uri;
    for (name, value) in &parts.headers {
        if name != http::header::HOST && name != http::header::CONNECTION {
            upstream.headers_mut().append(name, value.clone());
        }
    }
    let response = match shared.client.request(upstream).await {
        Ok(r) => r,
        Err(e) if e.is_connect() => return Ok(unavailable(CONNECT_FAILURE)),
        Err(_) => return Err(UpstreamBroke),
    };
    let (parts, body) = response.into_parts();
    let body = match body.collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return Err(UpstreamBroke),
    };
    let mut out = Response::new(Full::new(body));
    *out.status_mut() = parts.status;
    for (name, value) in &parts.headers {
        if name != http::header::CONNECTION && name != http::header::CONTENT_LENGTH {
            out.headers_mut().append(name, value.clone());
        }
    }
    Ok(out)
}

fn unavailable(body: &'static str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *r.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
    r.headers_mut().insert(
        http::header::SERVER,
        http::HeaderValue::from_static("envoy"),
    );
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
