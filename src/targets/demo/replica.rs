//! One replica of the demo service: a real hyper server on its own loopback port, labelled with a
//! version, that listens only after its startup time (a connection before then is refused, as
//! with a pod whose process is still starting).
//!
//! It ends in one of two ways. [`Replica::kill`] stops it at once: the listener closes and every
//! connection, in flight or idle, is cut with a reset. [`Replica::drain`] stops it gracefully: it
//! stops accepting, tells each HTTP/1.1 connection to close after its current request (hyper's
//! graceful shutdown), and cuts what is left after the grace period.

use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use bytes::Bytes;
use http::HeaderValue;
use http_body_util::Full;
use hyper::Response;
use hyper::body::Incoming;
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::Error;
use crate::targets::accept::{self, Answer, Broken, Ending, Readying};

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
    let answer = Version {
        header: HeaderValue::from_str(&spec.version).ok(),
        body: Bytes::from(format!("{}\n", spec.version)),
        latency: spec.latency,
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

/// A replica's answer: its version, after its latency.
#[derive(Clone, Debug)]
struct Version {
    header: Option<HeaderValue>,
    body: Bytes,
    latency: Duration,
}

impl Answer for Version {
    async fn answer(&self, _: hyper::Request<Incoming>) -> Result<Response<Full<Bytes>>, Broken> {
        if !self.latency.is_zero() {
            tokio::time::sleep(self.latency).await;
        }
        let mut response = Response::new(Full::new(self.body.clone()));
        if let Some(v) = &self.header {
            response.headers_mut().insert("x-version", v.clone());
        }
        Ok(response)
    }
}
