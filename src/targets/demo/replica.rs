//! One replica of the demo service: a real hyper server on its own loopback port, labelled with a
//! version, that listens only after its startup time (a connection before then is refused, as
//! with a pod whose process is still starting).
//!
//! It speaks what the services rolled out in front of a proxy speak: HTTP/1.1 and h2c (its
//! version, after its latency), gRPC over h2c (`grpc.health.v1.Health/Check` and `/Watch`:
//! [`super::health`]), WebSocket (an echo session on any path: [`super::websocket`]) and
//! server-sent events (`GET /events`: an event naming its version every [`EVENT_EVERY`]).
//!
//! It ends in one of two ways. [`Replica::kill`] stops it at once: the listener closes and every
//! connection, in flight or idle, upgraded or not, is cut with a reset. [`Replica::drain`] stops
//! it gracefully: it stops accepting, tells each HTTP/1.1 connection to close after its current
//! request and each HTTP/2 connection `GOAWAY` (hyper's graceful shutdown), ends its gRPC
//! `Watch` streams (`NOT_SERVING`, then status `OK`), its event streams (the body's end) and its
//! WebSockets (close frame `1001`), and cuts what is left after the grace period.

use std::convert::Infallible;
use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Method, header};
use http_body_util::{Full, StreamBody};
use hyper::Response;
use hyper::body::{Frame, Incoming};
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tonic::codegen::Service;
use tonic_health::pb::health_server::HealthServer;

use super::health::{self, ReplicaHealth};
use super::{Error, websocket};
use crate::targets::accept::{self, Answer, Broken, Ending, Readying, Sessions};

/// How often `GET /events` sends an event.
pub const EVENT_EVERY: Duration = Duration::from_millis(250);

/// How a replica behaves.
#[derive(Clone, Debug)]
pub struct ReplicaSpec {
    /// Name, such as `v2-4`.
    pub name: String,
    /// Version label: the `x-version` header and the body.
    pub version: String,
    /// Time from start until it listens.
    pub startup: Duration,
    /// Time it takes to answer a request.
    pub latency: Duration,
    /// How long a drain may take before what is left is cut.
    pub grace: Duration,
}

/// A running (or starting) replica.
#[derive(Debug)]
pub struct Replica {
    spec: ReplicaSpec,
    addr: SocketAddr,
    ready: watch::Receiver<bool>,
    kill: CancellationToken,
    drain: CancellationToken,
}

impl Replica {
    /// Prepares a replica on a free loopback port; it listens `spec.startup` after the returned
    /// server future starts running (the caller spawns it and owns the task).
    pub async fn start(
        spec: ReplicaSpec,
    ) -> Result<(Replica, impl Future<Output = ()> + Send + 'static), Error> {
        // Take a free port now so the endpoint is known before the process "listens".
        let probe = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .map_err(Error::Bind)?;
        let addr = probe.local_addr().map_err(Error::Bind)?;
        drop(probe);
        let (ready_tx, ready) = watch::channel(false);
        let (kill, drain) = (CancellationToken::new(), CancellationToken::new());
        let replica = Replica {
            spec: spec.clone(),
            addr,
            ready,
            kill: kill.clone(),
            drain: drain.clone(),
        };
        let serve = async move {
            tokio::select! {
                _ = tokio::time::sleep(spec.startup) => {}
                _ = kill.cancelled() => return,
                _ = drain.cancelled() => return,
            }
            let Ok(listener) = listen(addr) else {
                return;
            };
            let _ = ready_tx.send(true);
            serve(listener, &spec, &kill, &drain).await;
        };
        Ok((replica, serve))
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.spec.name
    }

    /// Its version label.
    pub fn version(&self) -> &str {
        &self.spec.version
    }

    /// Its address (refuses connections until it is ready).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// True once it listens.
    pub fn is_ready(&self) -> bool {
        *self.ready.borrow()
    }

    /// Waits until it listens (or forever if it was stopped first).
    pub async fn wait_ready(&self) {
        let mut ready = self.ready.clone();
        if ready.wait_for(|r| *r).await.is_err() {
            std::future::pending::<()>().await;
        }
    }

    /// Stops it at once: the listener closes and every connection is reset.
    pub fn kill(&self) {
        self.kill.cancel();
    }

    /// Stops it gracefully: no new connections, in-flight requests finish, idle keep-alive
    /// connections close; whatever is left after the grace period is cut.
    pub fn drain(&self) {
        self.drain.cancel();
    }
}

/// Binds `addr` again (the port was reserved and released at start).
fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = TcpSocket::new_v4()?;
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

async fn serve(
    listener: TcpListener,
    spec: &ReplicaSpec,
    kill: &CancellationToken,
    drain: &CancellationToken,
) {
    let answer = Pod {
        header: HeaderValue::from_str(&spec.version).ok(),
        body: Bytes::from(format!("{}\n", spec.version)),
        event: Bytes::from(format!("data: {}\n\n", spec.version)),
        latency: spec.latency,
        health: health::server(drain),
        sessions: Sessions::default(),
        drain: drain.clone(),
        kill: kill.clone(),
    };
    let ending = Ending::Graceful {
        drain: drain.clone(),
        kill: kill.clone(),
        grace: spec.grace,
    };
    // Dropping a connection with SO_LINGER 0 resets it, as a killed process's would be.
    let readying = Readying {
        nodelay: true,
        reset_on_drop: true,
    };
    accept::serve(listener, readying, ending, answer).await;
}

/// A replica's answer: after its latency, its version, or the gRPC, WebSocket or event stream
/// answer; each labelled with its version (`x-version`).
#[derive(Clone, Debug)]
struct Pod {
    header: Option<HeaderValue>,
    body: Bytes,
    /// One event of `GET /events`.
    event: Bytes,
    latency: Duration,
    health: HealthServer<ReplicaHealth>,
    sessions: Sessions,
    drain: CancellationToken,
    kill: CancellationToken,
}

/// The body of every answer: a whole one, a gRPC one (messages, then trailers) or an event
/// stream.
type Body = tonic::body::Body;

impl Answer for Pod {
    type Body = Body;

    async fn answer(&self, request: hyper::Request<Incoming>) -> Result<Response<Body>, Broken> {
        if !self.latency.is_zero() {
            tokio::time::sleep(self.latency).await;
        }
        let mut response = if websocket::is_handshake(&request) {
            websocket::accept(request, &self.sessions, &self.drain, &self.kill).map(whole)
        } else if health::is_grpc(&request) {
            let Ok(response) = self.health.clone().call(request).await;
            response
        } else if request.method() == Method::GET && request.uri().path() == "/events" {
            self.events()
        } else {
            Response::new(whole(self.body.clone()))
        };
        if let Some(v) = &self.header {
            response.headers_mut().insert("x-version", v.clone());
        }
        Ok(response)
    }

    fn sessions(&self) -> Option<&Sessions> {
        Some(&self.sessions)
    }
}

impl Pod {
    /// `GET /events`: `data: VERSION` every [`EVENT_EVERY`] until the replica drains (the body
    /// ends as HTTP ends one) or is killed (the connection is reset under it).
    fn events(&self) -> Response<Body> {
        let (drain, event) = (self.drain.clone(), self.event.clone());
        let mut ticker = tokio::time::interval(EVENT_EVERY);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let frames = futures_util::stream::unfold(ticker, move |mut ticker| {
            let (drain, event) = (drain.clone(), event.clone());
            async move {
                tokio::select! {
                    () = drain.cancelled() => None,
                    _ = ticker.tick() => Some((Ok::<_, Infallible>(Frame::data(event)), ticker)),
                }
            }
        });
        let mut response = Response::new(Body::new(StreamBody::new(frames)));
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/event-stream"),
        );
        response
    }
}

/// A whole body.
fn whole(bytes: Bytes) -> Body {
    Body::new(Full::new(bytes))
}
