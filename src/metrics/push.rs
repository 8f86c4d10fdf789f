//! `--metrics-push URL`: the final values, in the Prometheus text format, `PUT` to a Pushgateway
//! at `URL/metrics/job/gapless/run_id/ID` (and `/shard/I` for a shard of a split load), so a
//! later push of the same run replaces them and runs never overwrite each other.

use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, header};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use super::board::Board;
use super::{Error, PushUrl, exposition};

/// Longest wait for the Pushgateway's answer.
const PUSH_TIMEOUT: Duration = Duration::from_secs(10);

/// Where `board`'s values go on the Pushgateway at `url`.
pub fn group_url(url: &PushUrl, board: &Board) -> String {
    let mut to = format!("{}/metrics/job/gapless/run_id/{}", url.base, board.run_id());
    if let Some(shard) = board.shard() {
        to.push_str(&format!("/shard/{}", shard.index));
    }
    to
}

/// Pushes `board`'s values to the Pushgateway at `url`.
pub async fn push(url: &PushUrl, board: &Board) -> Result<(), Error> {
    let to = group_url(url, board);
    let shown = crate::redact::redact_password(&to);
    let failed = |why: String| Error::Push {
        url: shown.clone(),
        why,
    };
    let request = Request::builder()
        .method(Method::PUT)
        .uri(&to)
        .header(header::CONTENT_TYPE, exposition::PROMETHEUS_TEXT)
        .body(Full::new(Bytes::from(exposition::prometheus_text(board))))
        .map_err(|e| failed(e.to_string()))?;
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let response = tokio::time::timeout(PUSH_TIMEOUT, client.request(request))
        .await
        .map_err(|_| failed(format!("no answer within {}s", PUSH_TIMEOUT.as_secs())))?
        .map_err(|e| failed(e.to_string()))?;
    let status = response.status();
    if status.is_success() {
        return Ok(());
    }
    let body = tokio::time::timeout(PUSH_TIMEOUT, response.into_body().collect())
        .await
        .ok()
        .and_then(Result::ok)
        .map(|b| String::from_utf8_lossy(&b.to_bytes()).trim().to_string())
        .unwrap_or_default();
    let body: String = body.chars().take(200).collect();
    Err(failed(format!("the Pushgateway answered {status}: {body}")))
}
