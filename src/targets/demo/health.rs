//! A replica's gRPC service: `grpc.health.v1.Health` (tonic-health's generated server), over
//! the replica's own HTTP/2 (h2c). `Check` of the whole server (service `""`) answers `SERVING`;
//! another service is `NOT_FOUND`, as the standard health servers answer.
//!
//! `Watch` sends `SERVING` at once and holds the stream. When the replica drains, it sends
//! `NOT_SERVING` and ends the stream with status `OK` (the trailers), beside the `GOAWAY` that
//! hyper's graceful shutdown sends: a graceful end a client can tell from a reset. Killed, the
//! replica drops the connection and the stream with it.

use std::pin::Pin;

use futures_util::Stream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_server::{Health, HealthServer};
use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse};

/// The service of one replica; ends its `Watch` streams when `drain` fires.
#[derive(Debug)]
pub struct ReplicaHealth {
    drain: CancellationToken,
}

/// The replica's gRPC service, ready to answer requests.
pub fn server(drain: &CancellationToken) -> HealthServer<ReplicaHealth> {
    HealthServer::new(ReplicaHealth {
        drain: drain.clone(),
    })
}

/// True for a gRPC request (`content-type: application/grpc...`).
pub fn is_grpc<B>(request: &http::Request<B>) -> bool {
    request
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/grpc"))
}

fn status(status: ServingStatus) -> HealthCheckResponse {
    HealthCheckResponse {
        status: status as i32,
    }
}

type Statuses = Pin<Box<dyn Stream<Item = Result<HealthCheckResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Health for ReplicaHealth {
    async fn check(
        &self,
        request: Request<HealthCheckRequest>,
    ) -> Result<Response<HealthCheckResponse>, Status> {
        if request.get_ref().service.is_empty() {
            Ok(Response::new(status(ServingStatus::Serving)))
        } else {
            Err(Status::not_found("unknown service"))
        }
    }

    type WatchStream = Statuses;

    async fn watch(
        &self,
        request: Request<HealthCheckRequest>,
    ) -> Result<Response<Statuses>, Status> {
        let first = if request.get_ref().service.is_empty() {
            ServingStatus::Serving
        } else {
            ServingStatus::ServiceUnknown
        };
        // The first status at once; NOT_SERVING when the drain starts; then the end (OK).
        let drain = self.drain.clone();
        let stream = futures_util::stream::unfold(Some(first), move |next| {
            let drain = drain.clone();
            async move {
                let now = next?;
                if now == ServingStatus::NotServing {
                    drain.cancelled().await;
                }
                let after = (now != ServingStatus::NotServing).then_some(ServingStatus::NotServing);
                Some((Ok(status(now)), after))
            }
        });
        Ok(Response::new(Box::pin(stream)))
    }
}
