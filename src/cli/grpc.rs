//! The gRPC options (`--grpc-health`, `--grpc`, `--proto`, `--data`): the call they make
//! together ([`call`]); their checks are with the others, in `super::check`.

use super::check::Context;
use super::options::TargetOptions;
use crate::client::grpc::GrpcCall;

/// The gRPC call the options ask for, if any: a health check, or `--grpc` from `--proto` with
/// `--data`.
pub fn call(target: &TargetOptions, cx: &Context) -> Result<Option<GrpcCall>, super::Error> {
    let health = target.grpc_health(cx)?;
    let method = target.grpc(cx)?;
    let proto = target.proto(cx)?;
    let data = target.data(cx)?;
    match (health, method) {
        (Some(_), Some(_)) => Err(super::Error::GrpcBoth),
        (Some(service), None) => {
            if proto.is_some() {
                return Err(super::Error::GrpcWithout("--proto goes"));
            }
            if data.is_some() {
                return Err(super::Error::GrpcWithout("--data goes"));
            }
            Ok(Some(GrpcCall::health(&service.value)?))
        }
        (None, Some(method)) => {
            let proto = proto.ok_or(super::Error::GrpcNeedsProto)?;
            let json = data.map_or_else(|| "{}".to_string(), |d| d.value);
            Ok(Some(GrpcCall::unary(&proto.value, &method.value, &json)?))
        }
        (None, None) => {
            if proto.is_some() {
                return Err(super::Error::GrpcWithout("--proto goes"));
            }
            if data.is_some() {
                return Err(super::Error::GrpcWithout("--data goes"));
            }
            Ok(None)
        }
    }
}
