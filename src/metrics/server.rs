//! The metrics endpoint: `/metrics` (OpenMetrics text) and `/status` (JSON) on the
//! `--metrics-listen` listener, served by the accept loop of every server gapless starts until
//! the run's shutdown token fires.

use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::board::Board;
use super::exposition;
use crate::targets::accept::{self, Broken, Ending, Readying};

/// Serves `board` on `listener` until `shutdown` fires.
pub async fn serve(listener: TcpListener, board: Arc<Board>, shutdown: CancellationToken) {
    let readying = Readying {
        nodelay: true,
        reset_on_drop: false,
    };
    accept::serve(
        listener,
        readying,
        Ending::Abrupt(shutdown),
        Endpoint(board),
    )
    .await;
}

#[derive(Clone, Debug)]
struct Endpoint(Arc<Board>);

impl accept::Answer for Endpoint {
    type Body = Full<Bytes>;

    async fn answer(
        &self,
        request: hyper::Request<Incoming>,
    ) -> Result<Response<Full<Bytes>>, Broken> {
        Ok(answer(&self.0, request.method(), request.uri().path()))
    }
}

/// The response to `method path`.
fn answer(board: &Board, method: &Method, path: &str) -> Response<Full<Bytes>> {
    let (status, content_type, body) = match (method, path) {
        (&Method::GET | &Method::HEAD, "/metrics") => (
            StatusCode::OK,
            exposition::OPENMETRICS,
            exposition::openmetrics(board),
        ),
        (&Method::GET | &Method::HEAD, "/status") => (
            StatusCode::OK,
            "application/json",
            serde_json::to_string(&board.status()).unwrap_or_default() + "\n",
        ),
        (&Method::GET | &Method::HEAD, _) => (
            StatusCode::NOT_FOUND,
            "text/plain; charset=utf-8",
            "gapless serves /metrics and /status\n".to_string(),
        ),
        _ => (
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain; charset=utf-8",
            "GET /metrics or /status\n".to_string(),
        ),
    };
    let body = if method == Method::HEAD {
        String::new()
    } else {
        body
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    if let Ok(v) = header::HeaderValue::from_str(content_type) {
        response.headers_mut().insert(header::CONTENT_TYPE, v);
    }
    response
}
