//! The accept loop of every HTTP server gapless starts itself (the built-in target, the demo's
//! proxy and replicas): accept, ready the connection, serve it with hyper (HTTP/1.1 and h2c),
//! and end in one of two ways: abruptly (every connection dropped at once) or gracefully (stop
//! accepting, let each connection finish its request and close, then drop what is left after a
//! grace period, or at once when killed).
//!
//! A connection an answer upgrades (HTTP/1.1 `Upgrade`, a WebSocket) leaves hyper once the `101`
//! is sent; the task that takes it over goes into the answer's [`Sessions`], which the server
//! owns as it owns its connections: waited for within the same grace period when it drains,
//! dropped (with `reset_on_drop`, reset) when it ends abruptly or is killed.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use hyper::body::{Body, Bytes, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// How a server ends.
#[derive(Clone, Debug)]
pub enum Ending {
    /// When the token fires: stop accepting and drop every connection at once.
    Abrupt(CancellationToken),
    /// When `drain` fires: stop accepting, ask every connection to close after its current
    /// request (HTTP/1.1 `Connection: close`, HTTP/2 GOAWAY), and drop what is left after
    /// `grace`; when `kill` fires (before or during the drain), drop every connection at once.
    Graceful {
        /// Starts the drain.
        drain: CancellationToken,
        /// Ends everything at once.
        kill: CancellationToken,
        /// Longest drain.
        grace: Duration,
    },
}

/// How accepted connections are readied (the default: as the kernel accepted them).
#[derive(Clone, Copy, Debug, Default)]
pub struct Readying {
    /// `TCP_NODELAY`: no Nagle delay on small writes.
    pub nodelay: bool,
    /// `SO_LINGER 0`: dropping a connection resets it (a killed process, an upstream break),
    /// instead of closing it cleanly.
    pub reset_on_drop: bool,
}

/// What answers each request: a response, always (an error is the server's own 5xx).
pub trait Answer: Clone + Send + Sync + 'static {
    /// The response body (`Full<Bytes>` for a whole answer; a streaming body for a proxy or a
    /// gRPC server stream).
    type Body: Body<Data = Bytes, Error: Into<Box<dyn std::error::Error + Send + Sync>>>
        + Send
        + 'static;

    /// The response to `request`.
    fn answer(
        &self,
        request: Request<Incoming>,
    ) -> impl Future<Output = Result<Response<Self::Body>, Broken>> + Send;

    /// Where the tasks that take over upgraded connections go (none by default: an answer that
    /// upgrades returns its set, for the server to end with its connections).
    fn sessions(&self) -> Option<&Sessions> {
        None
    }
}

/// The tasks that took over upgraded connections (WebSocket sessions, tunnels), owned by the
/// server that accepted them. Each task watches its server's drain and kill itself (a
/// WebSocket sends its close frame on a drain); the set is how the server waits for them or
/// drops them.
#[derive(Clone, Debug, Default)]
pub struct Sessions(Arc<Mutex<JoinSet<()>>>);

impl Sessions {
    /// Runs `task` in the set.
    pub fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        let mut set = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        while set.try_join_next().is_some() {}
        set.spawn(task);
    }

    /// Waits until every task has ended, those spawned meanwhile too. Cancelled, it drops (aborts)
    /// the tasks it was waiting for.
    async fn join(&self) {
        loop {
            let mut set =
                std::mem::take(&mut *self.0.lock().unwrap_or_else(PoisonError::into_inner));
            if set.is_empty() {
                return;
            }
            while set.join_next().await.is_some() {}
        }
    }

    /// Drops every task at once (their connections with them).
    async fn abort(&self) {
        let mut set = std::mem::take(&mut *self.0.lock().unwrap_or_else(PoisonError::into_inner));
        set.shutdown().await;
    }
}

/// A request the server breaks off: hyper closes (with `reset_on_drop`, resets) the connection
/// instead of answering.
#[derive(Debug, thiserror::Error)]
#[error("the server broke the connection off")]
pub struct Broken;

/// Serves `listener` with `answer` until `ending` says so.
pub async fn serve(listener: TcpListener, readying: Readying, ending: Ending, answer: impl Answer) {
    let sessions = answer.sessions().cloned().unwrap_or_default();
    let (stop, drain, kill, grace) = match &ending {
        Ending::Abrupt(stop) => (stop.clone(), None, stop.clone(), Duration::ZERO),
        Ending::Graceful { drain, kill, grace } => {
            (drain.clone(), Some(drain.clone()), kill.clone(), *grace)
        }
    };
    let connections = each_connection(listener, readying, &stop, &kill, |stream| {
        connection(stream, answer.clone(), drain.clone())
    })
    .await;
    let Some(mut connections) = connections else {
        sessions.abort().await;
        return;
    };
    if drain.is_some() {
        tokio::select! {
            _ = async {
                while connections.join_next().await.is_some() {}
                sessions.join().await;
            } => {}
            _ = tokio::time::sleep(grace) => {}
            _ = kill.cancelled() => {}
        }
    }
    connections.shutdown().await;
    sessions.abort().await;
}

/// The accept loop: each accepted connection, readied, is handed to `handle` in a task of its
/// own, until `stop` fires (the listener is closed then; the connections still open are
/// returned, for the caller to drain or drop) or `kill` does (every connection is dropped at
/// once: `None`).
pub async fn each_connection<F, Fut>(
    listener: TcpListener,
    readying: Readying,
    stop: &CancellationToken,
    kill: &CancellationToken,
    mut handle: F,
) -> Option<JoinSet<()>>
where
    F: FnMut(TcpStream) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let mut connections = JoinSet::new();
    loop {
        let accepted = tokio::select! {
            _ = kill.cancelled() => {
                connections.shutdown().await;
                return None;
            }
            _ = stop.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        while connections.try_join_next().is_some() {}
        if let Some(stream) = ready(accepted, readying).await {
            connections.spawn(handle(stream));
        }
    }
    drop(listener);
    Some(connections)
}

/// Serves one connection (upgrades allowed: an answer that upgrades takes the connection over
/// in its [`Sessions`]); with `drain`, it closes gracefully once that fires.
async fn connection(stream: TcpStream, answer: impl Answer, drain: Option<CancellationToken>) {
    let service = hyper::service::service_fn(move |request: Request<Incoming>| {
        let answer = answer.clone();
        async move { answer.answer(request).await }
    });
    let builder = auto::Builder::new(TokioExecutor::new());
    let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
    tokio::pin!(conn);
    let Some(drain) = drain else {
        let _ = conn.await;
        return;
    };
    tokio::select! {
        _ = conn.as_mut() => return,
        _ = drain.cancelled() => {}
    }
    conn.as_mut().graceful_shutdown();
    let _ = conn.await;
}

/// Readies an accepted connection: no Nagle delay and `SO_LINGER 0`, as asked. A failed accept
/// (out of descriptors) backs off briefly and yields nothing.
async fn ready(
    accepted: std::io::Result<(TcpStream, std::net::SocketAddr)>,
    readying: Readying,
) -> Option<TcpStream> {
    match accepted {
        Ok((stream, _)) => {
            if readying.nodelay {
                let _ = stream.set_nodelay(true);
            }
            if readying.reset_on_drop {
                let _ = stream.set_zero_linger();
            }
            Some(stream)
        }
        Err(_) => {
            tokio::time::sleep(Duration::from_millis(5)).await;
            None
        }
    }
}
