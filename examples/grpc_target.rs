//! A gRPC and HTTP/2 target for the gRPC benchmark (BENCHMARKS.md, "gRPC unary"): on one h2c
//! port, `grpc.health.v1.Health/Check` answers SERVING (tonic), every other path `200 ok`.
//!
//! `cargo run --release --example grpc_target -- 127.0.0.1:18600`

use std::convert::Infallible;

use http_body_util::{BodyExt, Full};
use hyper::server::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::task::JoinSet;
use tonic::server::{Grpc, UnaryService};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse};
use tonic_prost::ProstCodec;

/// Always SERVING.
#[derive(Clone, Copy)]
struct Serving;

impl UnaryService<HealthCheckRequest> for Serving {
    type Response = HealthCheckResponse;
    type Future = std::future::Ready<Result<tonic::Response<HealthCheckResponse>, tonic::Status>>;

    fn call(&mut self, _: tonic::Request<HealthCheckRequest>) -> Self::Future {
        std::future::ready(Ok(tonic::Response::new(HealthCheckResponse {
            status: ServingStatus::Serving as i32,
        })))
    }
}

async fn answer(
    request: http::Request<hyper::body::Incoming>,
) -> Result<http::Response<tonic::body::Body>, Infallible> {
    if request.uri().path() == "/grpc.health.v1.Health/Check" {
        let mut grpc = Grpc::new(ProstCodec::<HealthCheckResponse, HealthCheckRequest>::default());
        return Ok(grpc.unary(Serving, request).await);
    }
    let body = Full::new(bytes::Bytes::from_static(b"ok\n")).map_err(|never| match never {});
    Ok(http::Response::new(tonic::body::Body::new(body)))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:18600".to_string());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    eprintln!("grpc_target: h2c on {}", listener.local_addr()?);
    let mut connections = JoinSet::new();
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        connections.spawn(async move {
            let service = hyper::service::service_fn(answer);
            let _ = http2::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
        // Reap the finished connections as they end.
        while connections.try_join_next().is_some() {}
    }
}
