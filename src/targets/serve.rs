//! `gapless serve`: a small built-in HTTP target (HTTP/1.1 and h2c) for trying gapless with no
//! other setup. It answers every request with a fixed status, an optional delay, and its version
//! label in the `x-version` header and the body.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::targets::accept::{self, Broken, Ending, Readying};
use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Errors starting the server.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The version label is not a valid header value.
    #[error("--version {0:?} is not a valid header value")]
    Version(String),
}

/// How the built-in target answers.
#[derive(Clone, Debug)]
pub struct ServeConfig {
    /// Status of every response.
    pub status: StatusCode,
    /// Version label (`x-version` header and body).
    pub version: Option<String>,
    /// Delay before each response.
    pub delay: Duration,
}

impl Default for ServeConfig {
    fn default() -> Self {
        ServeConfig {
            status: StatusCode::OK,
            version: None,
            delay: Duration::ZERO,
        }
    }
}

/// Binds the listen address.
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, Error> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| Error::Bind { addr, source })
}

/// The address `listener` was bound to.
pub fn local_addr(listener: &TcpListener) -> Result<SocketAddr, Error> {
    listener.local_addr().map_err(|source| Error::Bind {
        addr: SocketAddr::from(([0, 0, 0, 0], 0)),
        source,
    })
}

/// The URL to load the server at `addr`.
pub fn url_of(addr: SocketAddr) -> crate::config::TargetUrl {
    crate::config::TargetUrl::of_addr(addr)
}

#[derive(Debug)]
struct Answer {
    status: StatusCode,
    version: Option<HeaderValue>,
    body: Bytes,
    delay: Duration,
}

/// Serves on `listener` until `shutdown` fires.
pub async fn serve(
    listener: TcpListener,
    config: ServeConfig,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    let version = config
        .version
        .as_deref()
        .map(|v| HeaderValue::from_str(v).map_err(|_| Error::Version(v.to_string())))
        .transpose()?;
    let body = match &config.version {
        Some(v) => Bytes::from(format!("{v}\n")),
        None => Bytes::from_static(b"ok\n"),
    };
    let answer = Arc::new(Answer {
        status: config.status,
        version,
        body,
        delay: config.delay,
    });
    let readying = Readying {
        nodelay: true,
        reset_on_drop: false,
    };
    accept::serve(listener, readying, Ending::Abrupt(shutdown), Fixed(answer)).await;
    Ok(())
}

/// The built-in target's answer: the same for every request.
#[derive(Clone, Debug)]
struct Fixed(Arc<Answer>);

impl accept::Answer for Fixed {
    type Body = Full<Bytes>;

    async fn answer(&self, _: hyper::Request<Incoming>) -> Result<Response<Full<Bytes>>, Broken> {
        Ok(respond(&self.0).await)
    }
}

async fn respond(answer: &Answer) -> Response<Full<Bytes>> {
    if !answer.delay.is_zero() {
        tokio::time::sleep(answer.delay).await;
    }
    let mut response = Response::new(Full::new(answer.body.clone()));
    *response.status_mut() = answer.status;
    if let Some(v) = &answer.version {
        response.headers_mut().insert("x-version", v.clone());
    }
    response
}
