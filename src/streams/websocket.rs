//! A WebSocket probe's session (tokio-tungstenite): the handshake, then a ping every
//! `interval`; a ping unanswered for `timeout` is a disconnect of class `timeout`, a close frame
//! a graceful one (with its code), the connection closed without one (`closed`) or reset
//! (`reset`) ungraceful ones.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::time::Instant;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::error::ProtocolError;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_util::sync::CancellationToken;

use super::{Class, End, Io};
use crate::config::StreamConfig;

/// How long closing at the end of the run may take.
const CLOSE_WITHIN: Duration = Duration::from_secs(1);

/// An established WebSocket.
pub struct Session {
    ws: WebSocketStream<Box<dyn Io>>,
}

/// The handshake over `io`, with the probe's headers.
pub async fn open(config: &StreamConfig, io: Box<dyn Io>) -> Result<Session, End> {
    let mut request = config
        .url
        .to_string()
        .into_client_request()
        .map_err(|e| End::new(Class::Other, e.to_string()))?;
    for (name, value) in &config.headers {
        request.headers_mut().append(name, value.clone());
    }
    match tokio_tungstenite::client_async(request, io).await {
        Ok((ws, _response)) => Ok(Session { ws }),
        Err(WsError::Http(response)) => Err(End {
            class: Class::Status,
            code: Some(response.status().as_u16()),
            detail: format!("handshake answered {}", response.status()),
        }),
        Err(e) => Err(classify(e)),
    }
}

impl Session {
    /// Pings until the stream ends (`Some`), or until `stop` (`None`, after a close frame).
    pub async fn hold(mut self, config: &StreamConfig, stop: &CancellationToken) -> Option<End> {
        let mut ticker =
            tokio::time::interval_at(Instant::now() + config.interval, config.interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // When the oldest unanswered ping was sent.
        let mut awaiting: Option<Instant> = None;
        let mut sent: u64 = 0;
        let far = Instant::now() + Duration::from_secs(86_400 * 365);
        loop {
            let deadline = awaiting.map_or(far, |t| t + config.timeout);
            tokio::select! {
                () = stop.cancelled() => {
                    let frame = CloseFrame {
                        code: CloseCode::Normal,
                        reason: "the gapless run ended".into(),
                    };
                    let _ = tokio::time::timeout(CLOSE_WITHIN, self.ws.close(Some(frame))).await;
                    return None;
                }
                _ = ticker.tick() => {
                    awaiting.get_or_insert_with(Instant::now);
                    sent += 1;
                    let ping = Message::Ping(sent.to_be_bytes().to_vec().into());
                    if let Err(e) = self.ws.send(ping).await {
                        return Some(classify(e));
                    }
                }
                () = tokio::time::sleep_until(deadline), if awaiting.is_some() => {
                    return Some(End::new(
                        Class::Timeout,
                        format!("a ping went unanswered for {:?}", config.timeout),
                    ));
                }
                message = self.ws.next() => match message {
                    None => return Some(End::new(Class::Closed, "closed without a close frame")),
                    Some(Ok(Message::Pong(_))) => awaiting = None,
                    Some(Ok(Message::Close(frame))) => {
                        // Answer it (tungstenite queued the reply), briefly.
                        let _ = tokio::time::timeout(CLOSE_WITHIN, self.ws.flush()).await;
                        return Some(match frame {
                            Some(frame) => End {
                                class: Class::CloseFrame,
                                code: Some(u16::from(frame.code)),
                                detail: frame.reason.to_string(),
                            },
                            None => End::new(Class::CloseFrame, "close frame without a code"),
                        });
                    }
                    Some(Ok(_)) => {}
                    Some(Err(e)) => return Some(classify(e)),
                },
            }
        }
    }
}

/// The class of a tungstenite error.
fn classify(e: WsError) -> End {
    let class = match &e {
        WsError::Io(io) => Class::of_io(io),
        WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake) => Class::Closed,
        WsError::ConnectionClosed | WsError::AlreadyClosed => Class::Closed,
        WsError::Protocol(_) | WsError::Capacity(_) | WsError::Utf8(_) => Class::Protocol,
        WsError::Http(_) | WsError::HttpFormat(_) => Class::Status,
        WsError::Tls(_) => Class::Tls,
        _ => Class::Other,
    };
    End::new(class, e.to_string())
}
