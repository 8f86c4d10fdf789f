//! A replica's WebSocket endpoint (any path, on an HTTP/1.1 `Upgrade: websocket` request): the
//! handshake answered by the replica itself, then an echo session (tokio-tungstenite) that
//! answers pings with pongs and sends every text or binary message back.
//!
//! The session ends with its replica. Drained, it sends a close frame `1001 going away`, waits
//! briefly for the client's close frame, then closes the TCP connection cleanly (FIN both ways):
//! what a server that handles SIGTERM does. Killed, it just goes: the connection is dropped and,
//! as the replica's sockets linger 0, reset.

use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::{HeaderValue, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role};
use tokio_util::sync::CancellationToken;

use crate::targets::accept::Sessions;

/// The close frame's reason when a replica drains.
pub const GOING_AWAY: &str = "the replica is terminating";

/// How long a draining session waits for the client's close frame, then for its FIN.
const CLOSING: Duration = Duration::from_secs(1);

/// True for a WebSocket handshake: `Upgrade: websocket` with a key (HTTP/1.1 only).
pub fn is_handshake<B>(request: &Request<B>) -> bool {
    let upgrade = request
        .headers()
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    upgrade && request.headers().contains_key(header::SEC_WEBSOCKET_KEY)
}

/// Accepts the handshake `request`: the `101` to answer, and the echo session, in `sessions`,
/// once hyper hands the connection over. It ends as `drain` or `kill` says.
pub fn accept(
    mut request: Request<Incoming>,
    sessions: &Sessions,
    drain: &CancellationToken,
    kill: &CancellationToken,
) -> Response<Bytes> {
    let key = request
        .headers()
        .get(header::SEC_WEBSOCKET_KEY)
        .map(|k| derive_accept_key(k.as_bytes()))
        .and_then(|accept| HeaderValue::from_str(&accept).ok());
    let Some(accept) = key else {
        let mut bad = Response::new(Bytes::from_static(b"bad websocket key\n"));
        *bad.status_mut() = StatusCode::BAD_REQUEST;
        return bad;
    };
    let upgrade = hyper::upgrade::on(&mut request);
    let (drain, kill) = (drain.clone(), kill.clone());
    sessions.spawn(async move {
        tokio::select! {
            upgraded = upgrade => {
                if let Ok(upgraded) = upgraded {
                    let ws = WebSocketStream::from_raw_socket(
                        TokioIo::new(upgraded),
                        Role::Server,
                        None,
                    )
                    .await;
                    echo(ws, &drain, &kill).await;
                }
            }
            () = kill.cancelled() => {}
        }
    });
    let mut response = Response::new(Bytes::new());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
    response
}

type Io = TokioIo<hyper::upgrade::Upgraded>;

/// Echoes until the client leaves, the replica drains (close frame 1001) or is killed.
async fn echo(mut ws: WebSocketStream<Io>, drain: &CancellationToken, kill: &CancellationToken) {
    loop {
        tokio::select! {
            () = kill.cancelled() => return,
            () = drain.cancelled() => break,
            message = ws.next() => match message {
                Some(Ok(Message::Text(text))) => {
                    if ws.send(Message::Text(text)).await.is_err() {
                        return;
                    }
                }
                Some(Ok(Message::Binary(data))) => {
                    if ws.send(Message::Binary(data)).await.is_err() {
                        return;
                    }
                }
                // Pings are answered by tungstenite as it reads; a close frame is answered too.
                Some(Ok(_)) => {}
                None | Some(Err(_)) => return,
            },
        }
    }
    tokio::select! {
        () = kill.cancelled() => {}
        () = going_away(ws) => {}
    }
}

/// The graceful end: a close frame `1001`, the client's close frame awaited, then FIN, and the
/// client's FIN awaited (so the socket is not reset when it is dropped), each within
/// [`CLOSING`].
async fn going_away(mut ws: WebSocketStream<Io>) {
    let frame = CloseFrame {
        code: CloseCode::Away,
        reason: GOING_AWAY.into(),
    };
    if ws.send(Message::Close(Some(frame))).await.is_err() {
        return;
    }
    let _ = tokio::time::timeout(CLOSING, async {
        while let Some(Ok(_)) = ws.next().await {}
    })
    .await;
    let mut io = ws.into_inner();
    let _ = io.shutdown().await;
    let mut rest = [0u8; 256];
    let _ = tokio::time::timeout(CLOSING, async {
        while matches!(io.read(&mut rest).await, Ok(n) if n > 0) {}
    })
    .await;
}
