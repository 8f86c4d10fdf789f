//! An SSE probe's session (hyper's HTTP/1.1 client): `GET` with `Accept: text/event-stream`,
//! then the body read as it arrives. Any bytes (an event, or a `:` comment line servers send
//! to keep a stream alive) show the stream is alive; none for `timeout` is a disconnect of
//! class `timeout`. The body ending as HTTP says it ends (the last chunk) is graceful
//! (`end_of_stream`); the connection closed in the middle (`closed`) or reset (`reset`) is not.

use std::error::Error as _;

use bytes::Bytes;
use http::header;
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{Class, End, Io};
use crate::config::StreamConfig;

/// An SSE response whose body is being read.
pub struct Session {
    body: Incoming,
    /// The connection's driver; aborted with the session.
    _driver: JoinSet<()>,
}

/// Sends the request over `io` and waits for a `200` response's head.
pub async fn open(config: &StreamConfig, io: Box<dyn Io>) -> Result<Session, End> {
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(|e| classify(&e))?;
    let mut driver = JoinSet::new();
    driver.spawn(async move {
        // Its errors reach the body.
        let _ = connection.await;
    });
    let mut request = http::Request::get(config.url.path_and_query())
        .header(header::HOST, config.url.authority())
        .header(header::ACCEPT, "text/event-stream")
        .header(header::CACHE_CONTROL, "no-cache");
    for (name, value) in &config.headers {
        request = request.header(name, value);
    }
    let request = request
        .body(Empty::<Bytes>::new())
        .map_err(|e| End::new(Class::Other, e.to_string()))?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| classify(&e))?;
    if response.status() != http::StatusCode::OK {
        return Err(End {
            class: Class::Status,
            code: Some(response.status().as_u16()),
            detail: format!("answered {}", response.status()),
        });
    }
    Ok(Session {
        body: response.into_body(),
        _driver: driver,
    })
}

impl Session {
    /// Reads until the stream ends (`Some`), or until `stop` (`None`).
    pub async fn hold(mut self, config: &StreamConfig, stop: &CancellationToken) -> Option<End> {
        let mut deadline = Instant::now() + config.timeout;
        loop {
            tokio::select! {
                () = stop.cancelled() => return None,
                () = tokio::time::sleep_until(deadline) => {
                    return Some(End::new(
                        Class::Timeout,
                        format!("no line for {:?}", config.timeout),
                    ));
                }
                frame = self.body.frame() => match frame {
                    None => return Some(End::new(Class::EndOfStream, "the response ended")),
                    Some(Ok(_)) => deadline = Instant::now() + config.timeout,
                    Some(Err(e)) => return Some(classify(&e)),
                },
            }
        }
    }
}

/// The class of a hyper error: its I/O cause if it has one, a body cut short as `closed`.
fn classify(e: &hyper::Error) -> End {
    let mut source = e.source();
    while let Some(cause) = source {
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            return End::new(Class::of_io(io), e.to_string());
        }
        source = cause.source();
    }
    let class = if e.is_incomplete_message() || e.is_closed() || e.is_canceled() {
        Class::Closed
    } else if e.is_parse() {
        Class::Protocol
    } else if e.is_timeout() {
        Class::Timeout
    } else {
        Class::Other
    };
    End::new(class, e.to_string())
}
