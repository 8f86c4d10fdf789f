//! The accept loop of every HTTP server gapless starts itself (the built-in target, the demo's
//! proxy and replicas): accept, ready the connection, serve it with hyper (HTTP/1.1 and h2c),
//! and end in one of two ways: abruptly (every connection dropped at once) or gracefully (stop
//! accepting, let each connection finish its request and close, then drop what is left after a
//! grace period, or at once when killed).

use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
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
    /// The response to `request`.
    fn answer(
        &self,
        request: Request<Incoming>,
    ) -> impl Future<Output = Result<Response<Full<Bytes>>, Broken>> + Send;
}

/// A request the server breaks off: hyper closes (with `reset_on_drop`, resets) the connection
/// instead of answering.
#[derive(Debug, thiserror::Error)]
#[error("the server broke the connection off")]
pub struct Broken;

/// Serves `listener` with `answer` until `ending` says so.
pub async fn serve(listener: TcpListener, readying: Readying, ending: Ending, answer: impl Answer) {
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
        return;
    };
    if drain.is_some() {
        tokio::select! {
            _ = async { while connections.join_next().await.is_some() {} } => {}
            _ = tokio::time::sleep(grace) => {}
            _ = kill.cancelled() => {}
        }
    }
    connections.shutdown().await;
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

/// Serves one connection; with `drain`, it closes gracefully once that fires.
async fn connection(stream: TcpStream, answer: impl Answer, drain: Option<CancellationToken>) {
    let service = hyper::service::service_fn(move |request: Request<Incoming>| {
        let answer = answer.clone();
        async move { answer.answer(request).await }
    });
    let builder = auto::Builder::new(TokioExecutor::new());
    let conn = builder.serve_connection(TokioIo::new(stream), service);
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
