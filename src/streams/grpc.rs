//! A gRPC probe's session (`kind = "grpc"`): one call of a server-streaming method over its own
//! HTTP/2 connection (`h2`, with the load's client settings), its answers read as they arrive by
//! tonic's decoder ([`StreamCall::answers`], the unary calls' codec and descriptors), and an
//! HTTP/2 PING every `interval` whose PONG is due within `timeout`.
//!
//! How the stream ends:
//!
//! - **graceful**: the stream ended with `grpc-status` OK (`end_of_stream`); or the server sent
//!   GOAWAY with NO_ERROR (draining) while the stream was open, and the stream then ended
//!   however the server ended it (its end, RST_STREAM, a status, the connection closed) but by
//!   a connection reset or an unanswered PING (`goaway`);
//! - **ungraceful**: a `grpc-status` other than OK, such as UNAVAILABLE (`grpc_status`, its
//!   number the event's code); RST_STREAM, a GOAWAY with an error, or the connection reset
//!   (`reset`); the connection closed under the stream without a GOAWAY (`closed`); a PING
//!   unanswered for `timeout` (`timeout`); an answer that does not decode or breaks HTTP/2
//!   (`protocol`).
//!
//! A connect attempt answered with another HTTP status than 200 is `status`, one answered at
//! once with a `grpc-status` and no stream (trailers only) is `grpc_status`. A health watch's
//! answers go to the probe as they come ([`Health`]): one other than SERVING is not a
//! disconnect.

use std::error::Error as StdError;
use std::future::poll_fn;
use std::sync::Arc;

use bytes::Bytes;
use h2::{Ping, PingPong, Reason};
use http::header::{CONTENT_TYPE, HeaderValue, TE, USER_AGENT};
use prost_reflect::DynamicMessage;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tonic::Status;
use tonic::codec::Streaming;

use super::{Class, End, Health, Io};
use crate::client::connection::{H2Body, h2_builder};
use crate::client::grpc::StreamCall;
use crate::config::StreamConfig;
use crate::measure::code;

/// The serving status `SERVING`, as the health protocol numbers it.
const SERVING: i32 = 1;

/// An established gRPC server stream.
pub struct Session {
    call: Arc<StreamCall>,
    answers: Streaming<DynamicMessage>,
    /// To ask the connection, once the stream ended, whether a GOAWAY came first.
    send: h2::client::SendRequest<Bytes>,
    ping: PingPong,
    /// The connection's driver; aborted with the session.
    _driver: JoinSet<()>,
}

/// The call over `io`: the HTTP/2 handshake, the request, and a `200` response's head.
pub async fn open(config: &StreamConfig, io: Box<dyn Io>) -> Result<Session, End> {
    let Some(call) = config.grpc.clone() else {
        return Err(End::new(Class::Other, "a gRPC probe without its call"));
    };
    let (send, mut connection) = h2_builder()
        .handshake::<_, Bytes>(io)
        .await
        .map_err(|e| at_open(&e))?;
    let ping = connection
        .ping_pong()
        .ok_or_else(|| End::new(Class::Other, "the connection's PING handle was taken"))?;
    let mut driver = JoinSet::new();
    driver.spawn(async move {
        // Its errors reach the stream.
        let _ = connection.await;
    });
    let mut send = send.ready().await.map_err(|e| at_open(&e))?;
    let uri = http::Uri::builder()
        .scheme(if config.url.is_tls() { "https" } else { "http" })
        .authority(config.url.authority())
        .path_and_query(call.path())
        .build()
        .map_err(|e| End::new(Class::Other, e.to_string()))?;
    let mut request = http::Request::post(uri)
        .body(())
        .map_err(|e| End::new(Class::Other, e.to_string()))?;
    let headers = request.headers_mut();
    headers.clone_from(&config.headers);
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
    headers.insert(TE, HeaderValue::from_static("trailers"));
    if !headers.contains_key(USER_AGENT) {
        headers.insert(
            USER_AGENT,
            HeaderValue::from_static(concat!("gapless/", env!("CARGO_PKG_VERSION"))),
        );
    }
    let (response, mut upload) = send.send_request(request, false).map_err(|e| at_open(&e))?;
    upload
        .send_data(call.body(), true)
        .map_err(|e| at_open(&e))?;
    let response = response.await.map_err(|e| at_open(&e))?;
    let (parts, body) = response.into_parts();
    if let Some(status) = Status::from_header_map(&parts.headers) {
        let mut end = said(&status);
        end.detail = format!("answered at once, without a stream: {}", end.detail);
        return Err(end);
    }
    if parts.status != http::StatusCode::OK {
        return Err(End {
            class: Class::Status,
            code: Some(parts.status.as_u16()),
            detail: format!("answered {}", parts.status),
        });
    }
    Ok(Session {
        answers: call.answers(H2Body::new(body)),
        call,
        send,
        ping,
        _driver: driver,
    })
}

impl Session {
    /// True if its answers are a health watch's.
    pub fn watches_health(&self) -> bool {
        self.call.is_health()
    }

    /// Reads answers and pings until the stream ends (`Some`), or until `stop` (`None`; the
    /// stream is cancelled with RST_STREAM as the session drops). A health answer goes to
    /// `health`.
    pub async fn hold(
        mut self,
        config: &StreamConfig,
        stop: &CancellationToken,
        health: &mut (dyn FnMut(Health) + Send),
    ) -> Option<End> {
        let mut ticker =
            tokio::time::interval_at(Instant::now() + config.interval, config.interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // When the PING in flight was sent.
        let mut awaiting: Option<Instant> = None;
        let end = loop {
            let deadline = awaiting.map(|t| t + config.timeout);
            tokio::select! {
                () = stop.cancelled() => return None,
                _ = ticker.tick(), if awaiting.is_none() => {
                    // An error: the connection is gone, which the answers say.
                    if self.ping.send_ping(Ping::opaque()).is_ok() {
                        awaiting = Some(Instant::now());
                    }
                }
                // An error: the connection is gone, which the answers say.
                _ = poll_fn(|cx| self.ping.poll_pong(cx)), if awaiting.is_some() => {
                    awaiting = None;
                }
                () = sleep_until(deadline), if awaiting.is_some() => {
                    return Some(End::new(
                        Class::Timeout,
                        format!("an HTTP/2 PING went unanswered for {:?}", config.timeout),
                    ));
                }
                answer = self.answers.message() => match answer {
                    Ok(Some(message)) => {
                        if let Some(status) = self.call.health_of(&message) {
                            health(if status == SERVING {
                                Health::Serving
                            } else {
                                Health::Not(status)
                            });
                        }
                    }
                    Ok(None) => {
                        break End::new(Class::EndOfStream, "the stream ended with grpc-status OK");
                    }
                    Err(status) => break ended(&status),
                },
            }
        };
        Some(self.after_goaway(end))
    }

    /// `end`, as `goaway` if the server had sent GOAWAY (NO_ERROR) before it, unless the stream
    /// ended well anyway, or by a ping timeout, or the connection was reset.
    fn after_goaway(&mut self, end: End) -> End {
        if matches!(
            end.class,
            Class::EndOfStream | Class::Timeout | Class::Goaway
        ) {
            return end;
        }
        // The connection's error, if it has one: a GOAWAY received is kept until the connection
        // closes, and replaced by the I/O error if it is reset.
        let waker = std::task::Waker::noop();
        let mut cx = std::task::Context::from_waker(waker);
        match self.send.poll_ready(&mut cx) {
            std::task::Poll::Ready(Err(e))
                if e.is_go_away() && e.is_remote() && e.reason() == Some(Reason::NO_ERROR) =>
            {
                End {
                    class: Class::Goaway,
                    code: end.code,
                    detail: format!("GOAWAY (NO_ERROR), then {}", end.detail),
                }
            }
            _ => end,
        }
    }
}

/// Sleeps until `deadline` (forever without one).
async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

/// How a stream ended with an error `status`: one the server sent (no source), or the
/// transport's.
fn ended(status: &Status) -> End {
    let Some(source) = status.source() else {
        return said(status);
    };
    let mut cur: Option<&(dyn StdError + 'static)> = Some(source);
    while let Some(e) = cur {
        if let Some(h2) = e.downcast_ref::<h2::Error>() {
            return of_h2(h2);
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            return End::new(Class::of_io(io), io.to_string());
        }
        cur = e.source();
    }
    // The answer did not decode.
    End::new(Class::Protocol, status.message())
}

/// A `grpc-status` the server sent: `grpc_status`, with its number and name.
fn said(status: &Status) -> End {
    let number = status.code() as i32;
    let name = code::name(code::grpc(number)).unwrap_or("UNKNOWN");
    End {
        class: Class::GrpcStatus,
        code: u16::try_from(number).ok(),
        detail: if status.message().is_empty() {
            name.to_string()
        } else {
            format!("{name}: {}", status.message())
        },
    }
}

/// The class of an `h2` error that ended an established stream.
fn of_h2(e: &h2::Error) -> End {
    let reason = || e.reason().map_or_else(String::new, |r| format!("{r:?}"));
    if e.is_reset() && e.is_remote() {
        return End::new(Class::Reset, format!("RST_STREAM ({})", reason()));
    }
    if e.is_go_away() && e.is_remote() {
        return match e.reason() {
            Some(Reason::NO_ERROR) => End::new(Class::Goaway, "GOAWAY (NO_ERROR)"),
            _ => End::new(Class::Reset, format!("GOAWAY ({})", reason())),
        };
    }
    if let Some(io) = e.get_io() {
        // h2 ends a stream whose connection closed (without a reset) as a broken pipe.
        if io.kind() == std::io::ErrorKind::BrokenPipe {
            return End::new(Class::Closed, "the connection closed under the stream");
        }
        return End::new(Class::of_io(io), io.to_string());
    }
    End::new(Class::Protocol, e.to_string())
}

/// The class of an `h2` error before the answer's head: as on a stream, but a GOAWAY is a
/// refusal, not a drain of a stream it never had.
fn at_open(e: &h2::Error) -> End {
    let mut end = of_h2(e);
    if end.class == Class::Goaway {
        end.class = Class::Reset;
    }
    end
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn h2_errors_and_statuses_are_classified() {
        let reset = h2::Error::from(Reason::CANCEL);
        // A reason made locally is not the peer's RST_STREAM.
        assert_eq!(of_h2(&reset).class, Class::Protocol);
        let sent = said(&Status::unavailable("draining"));
        assert_eq!(
            (sent.class, sent.code, sent.detail.as_str()),
            (Class::GrpcStatus, Some(14), "UNAVAILABLE: draining")
        );
        let broken = Status::from_error(Box::new(std::io::Error::from(
            std::io::ErrorKind::ConnectionReset,
        )));
        assert_eq!(ended(&broken).class, Class::Reset);
    }
}
