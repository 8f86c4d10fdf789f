//! The gRPC options (`--grpc-health`, `--grpc`, `--proto`, `--data`): their checks, and the call
//! they make together ([`call`]).

use std::path::PathBuf;

use super::check::{Check, Context, Error, Place};
use super::options::TargetOptions;
use crate::client::grpc::GrpcCall;

/// Text with `${VAR}` expanded for a value from the scenario file.
fn expanded(raw: &str, place: &Place, cx: &Context) -> Result<String, Error> {
    cx.expand(raw, place.origin)
        .map_err(|message| place.error(cx, message))
}

/// Any text (`${VAR}` expanded in a scenario): a health check's service name, the request JSON.
#[derive(Clone, Copy, Debug)]
pub struct Text;

impl Check for Text {
    type Raw = String;
    type Out = String;

    fn check(&self, raw: &String, place: &Place, cx: &Context) -> Result<String, Error> {
        expanded(raw, place, cx)
    }

    fn range(&self) -> Option<String> {
        None
    }
}

/// A gRPC method, `package.Service/Method`.
#[derive(Clone, Copy, Debug)]
pub struct Method;

impl Check for Method {
    type Raw = String;
    type Out = String;

    fn check(&self, raw: &String, place: &Place, cx: &Context) -> Result<String, Error> {
        let method = expanded(raw, place, cx)?;
        let ok = method
            .trim_start_matches('/')
            .split_once('/')
            .is_some_and(|(s, m)| !s.is_empty() && !m.is_empty() && !m.contains('/'));
        if !ok {
            return Err(place.error(
                cx,
                format!("{method:?} is not a method such as package.Service/Method"),
            ));
        }
        Ok(method)
    }

    fn range(&self) -> Option<String> {
        Some("package.Service/Method".to_string())
    }
}

/// A `.proto` file or descriptor set (in a scenario: relative to the file's directory).
#[derive(Clone, Copy, Debug)]
pub struct ProtoFile;

impl Check for ProtoFile {
    type Raw = String;
    type Out = PathBuf;

    fn check(&self, raw: &String, place: &Place, cx: &Context) -> Result<PathBuf, Error> {
        let name = expanded(raw, place, cx)?;
        Ok(cx.path(&name, place.origin))
    }

    fn range(&self) -> Option<String> {
        None
    }
}

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
