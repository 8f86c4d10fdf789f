//! gRPC unary calls, as a kind of HTTP/2 request on the engine's one path.
//!
//! A [`GrpcCall`] is built once per run: the request message (a `grpc.health.v1` check, or any
//! message from a `.proto` file or descriptor set, filled from JSON with `prost-reflect`) is
//! framed by tonic's own encoder ([`EncodeBody`]) into the bytes every attempt sends, as the
//! body of a `POST /package.Service/Method` with `content-type: application/grpc`. The engine
//! sends it like any HTTP/2 request ([`crate::client::connection::Link::exchange`]): same
//! schedule, same connections, latency from the intended send time, no retry. The answer is read
//! by tonic's decoder ([`Streaming`]) and becomes one code ([`crate::measure::code`]):
//!
//! - the `grpc-status` the server sent (in the trailers, or a trailers-only answer): `OK`,
//!   `UNAVAILABLE`, ...; for a health check that returned `OK`, the answer's serving status
//!   instead (`SERVING`, `NOT_SERVING`, `SERVICE_UNKNOWN`);
//! - an HTTP status other than 200 without `grpc-status` (a proxy's `502`, say) stays that HTTP
//!   status, as gapless counts it for HTTP (Envoy's own replies recognised alike);
//! - a broken stream or connection is the transport class it is for HTTP/2 (`reset`, ...), and
//!   an answer that is not valid gRPC (no `grpc-status`, no message, a message that does not
//!   decode) is `protocol`.
//!
//! A [`StreamCall`] is the server-streaming call a `[[stream]]` of `kind = "grpc"` holds
//! (`crate::streams::grpc`): the same descriptors, method lookup, JSON request and framing,
//! and tonic's decoder over its answers as they arrive.

use std::error::Error as StdError;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use bytes::{Buf, Bytes};
use http::StatusCode;
use http_body_util::BodyExt;
use miette::Diagnostic;
use prost::Message;
use prost_reflect::{DescriptorPool, DynamicMessage, MessageDescriptor, MethodDescriptor};
use tonic::Status;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBody, EncodeBuf, Encoder, Streaming};
use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse};
use tonic_prost::ProstCodec;

use crate::measure::code;
use crate::measure::outcome::{ErrorClass, Fault};

/// The health check's method path.
const HEALTH_PATH: &str = "/grpc.health.v1.Health/Check";

/// A call that cannot be made: each one sentence naming the file (and line) or the field.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The `.proto` file (or descriptor set) could not be read or compiled.
    #[error("{place}: {message}")]
    Proto {
        /// `file` or `file:line:column`.
        place: String,
        /// What is wrong there.
        message: String,
    },
    /// The method is not `package.Service/Method`.
    #[error("--grpc {0:?} is not a method such as package.Service/Method")]
    MethodSyntax(String),
    /// No such service, or no such method in it.
    #[error("{file}: {what}")]
    UnknownMethod {
        /// The file that was searched.
        file: String,
        /// What is not there, and what is.
        what: String,
    },
    /// The method streams: only unary calls are loaded.
    #[error(
        "--grpc {0}: a streaming method; gapless loads unary calls only (a server-streaming \
         method is held by a [[stream]] of kind = \"grpc\")"
    )]
    Streaming(String),
    /// The JSON does not fit the request message.
    #[error("--data does not fit {message}: {problem}")]
    Data {
        /// The request message's full name.
        message: String,
        /// serde's sentence (it names the field, line and column).
        problem: String,
    },
    /// tonic's encoder refused the message.
    #[error("cannot encode the gRPC request: {0}")]
    Encode(String),
    /// A `[[stream]]` of kind `grpc` holds a server stream: the method is not one.
    #[error("{0} is not a server-streaming method (one request, a stream of answers)")]
    NotServerStreaming(String),
}

impl Error {
    /// The sentence without the command-line flag it names (for a scenario key, which names
    /// itself): `does not fit demo.v1.HelloRequest: ...`.
    pub fn reason(&self) -> String {
        match self {
            Error::MethodSyntax(method) => {
                format!("{method:?} is not a method such as package.Service/Method")
            }
            Error::Streaming(method) => {
                format!("{method}: a streaming method; gapless loads unary calls only")
            }
            Error::Data { message, problem } => format!("does not fit {message}: {problem}"),
            other => other.to_string(),
        }
    }
}

/// What kind of answer a call gets.
#[derive(Clone, Debug)]
enum Answer {
    /// `grpc.health.v1.HealthCheckResponse`: its serving status is the code.
    Health,
    /// A message of this type: the `grpc-status` is the code.
    Message(MessageDescriptor),
}

/// One unary call, encoded once: what every attempt of the run sends.
#[derive(Clone, Debug)]
pub struct GrpcCall {
    path: String,
    body: Bytes,
    answer: Answer,
}

impl GrpcCall {
    /// `grpc.health.v1.Health/Check` of `service` (empty: the server as a whole).
    pub fn health(service: &str) -> Result<GrpcCall, Error> {
        let request = HealthCheckRequest {
            service: service.to_string(),
        };
        let body = frame(
            ProstCodec::<HealthCheckRequest, HealthCheckResponse>::default().encoder(),
            request,
        )?;
        Ok(GrpcCall {
            path: HEALTH_PATH.to_string(),
            body,
            answer: Answer::Health,
        })
    }

    /// `method` (`package.Service/Method`) as `proto` declares it, `.proto` source or a binary
    /// descriptor set (`.pb`, `.desc`, `.protoset`, `.bin`), with the request message `json`.
    pub fn unary(proto: &Path, method: &str, json: &str) -> Result<GrpcCall, Error> {
        let pool = descriptors(proto)?;
        let found = find_method(&pool, &proto.display().to_string(), method)?;
        if found.is_client_streaming() || found.is_server_streaming() {
            return Err(Error::Streaming(method.to_string()));
        }
        let request = request_message(&found.input(), json)?;
        let body = frame(DynamicCodec(found.output()).encoder(), request)?;
        Ok(GrpcCall {
            path: format!("/{}/{}", found.parent_service().full_name(), found.name()),
            body,
            answer: Answer::Message(found.output()),
        })
    }

    /// The request path, `/package.Service/Method`.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The request body: the message, framed.
    pub fn body(&self) -> Bytes {
        self.body.clone()
    }

    /// The code of a success: `SERVING` for a health check, `OK` otherwise.
    pub fn success(&self) -> u16 {
        match self.answer {
            Answer::Health => code::SERVING,
            Answer::Message(_) => code::GRPC_OK,
        }
    }

    /// True if `status` and `headers` are a gRPC answer (HTTP 200, or a `grpc-status` header);
    /// otherwise the response is read as plain HTTP, its status the code.
    pub fn is_grpc(status: StatusCode, headers: &http::HeaderMap) -> bool {
        status == StatusCode::OK || headers.contains_key("grpc-status")
    }

    /// Reads a gRPC answer ([`GrpcCall::is_grpc`]) to its end: its code and the body bytes.
    pub async fn read<B>(&self, headers: &http::HeaderMap, body: B) -> Result<(u16, u64), Fault>
    where
        B: hyper::body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<Box<dyn StdError + Send + Sync>>,
    {
        // A trailers-only answer: the status is in the headers, there is no message.
        if let Some(status) = Status::from_header_map(headers) {
            if status.code() == tonic::Code::Ok {
                return Err(Fault::protocol(
                    "a gRPC answer without a message (trailers only, status OK)",
                ));
            }
            let mut body = std::pin::pin!(body);
            while let Some(frame) = body.frame().await {
                if let Err(e) = frame {
                    let e: Box<dyn StdError + Send + Sync> = e.into();
                    return Err(Fault::boxed(classify(&*e), e));
                }
            }
            return Ok((code::grpc(status.code() as i32), 0));
        }
        match &self.answer {
            Answer::Health => {
                let decoder =
                    ProstCodec::<HealthCheckRequest, HealthCheckResponse>::default().decoder();
                let stream = Streaming::new_response(decoder, body, StatusCode::OK, None, None);
                finish(stream, |m| (code::health(m.status), m.encoded_len() as u64)).await
            }
            Answer::Message(output) => {
                let decoder = DynamicCodec(output.clone()).decoder();
                let stream = Streaming::new_response(decoder, body, StatusCode::OK, None, None);
                finish(stream, |m| (code::GRPC_OK, m.encoded_len() as u64)).await
            }
        }
    }
}

/// The server-streaming method a `[[stream]]` of kind `grpc` holds when none is given: the
/// standard health watch, built in (no `.proto` needed).
pub const HEALTH_WATCH: &str = "grpc.health.v1.Health/Watch";

/// The full name of the health answer, whose `status` a stream of it is judged by.
const HEALTH_RESPONSE: &str = "grpc.health.v1.HealthCheckResponse";

/// A server-streaming call, encoded once: the request every stream of a probe sends, and the
/// type of the answers it reads.
#[derive(Clone, Debug)]
pub struct StreamCall {
    path: String,
    body: Bytes,
    output: MessageDescriptor,
}

impl StreamCall {
    /// `method` as `proto` declares it (without `proto`: the built-in `grpc.health.v1`, whose
    /// `Health/Watch` is the one server-streaming method), with the request message `json`.
    /// The descriptors, the method's lookup, the JSON and the framing are the unary call's.
    pub fn new(proto: Option<&Path>, method: &str, json: &str) -> Result<StreamCall, Error> {
        let (pool, file) =
            match proto {
                Some(path) => (descriptors(path)?, path.display().to_string()),
                None => {
                    let builtin = "the built-in grpc.health.v1 (give a proto for others)";
                    let pool = DescriptorPool::decode(tonic_health::pb::FILE_DESCRIPTOR_SET)
                        .map_err(|e| Error::Proto {
                            place: builtin.to_string(),
                            message: e.to_string(),
                        })?;
                    (pool, builtin.to_string())
                }
            };
        let found = find_method(&pool, &file, method)?;
        if found.is_client_streaming() || !found.is_server_streaming() {
            return Err(Error::NotServerStreaming(method.to_string()));
        }
        let request = request_message(&found.input(), json)?;
        let body = frame(DynamicCodec(found.output()).encoder(), request)?;
        Ok(StreamCall {
            path: format!("/{}/{}", found.parent_service().full_name(), found.name()),
            body,
            output: found.output(),
        })
    }

    /// The request path, `/package.Service/Method`.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The request body: the message, framed.
    pub fn body(&self) -> Bytes {
        self.body.clone()
    }

    /// True if the answers are health answers (`grpc.health.v1.HealthCheckResponse`).
    pub fn is_health(&self) -> bool {
        self.output.full_name() == HEALTH_RESPONSE
    }

    /// The answers of a response `body` (after a `200` head), decoded by tonic as they arrive;
    /// the stream's end yields its `grpc-status` (an error `Status` unless `OK`).
    pub fn answers<B>(&self, body: B) -> Streaming<DynamicMessage>
    where
        B: hyper::body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<Box<dyn StdError + Send + Sync>>,
    {
        Streaming::new_response(
            DynamicCodec(self.output.clone()).decoder(),
            body,
            StatusCode::OK,
            None,
            None,
        )
    }

    /// A health answer's serving status as the protocol numbers it (`1` SERVING, `2`
    /// NOT_SERVING, ...; its name is `code::name(code::health(n))`); `None` for answers of
    /// another type.
    pub fn health_of(&self, answer: &DynamicMessage) -> Option<i32> {
        if !self.is_health() {
            return None;
        }
        let status = answer.get_field_by_name("status")?;
        Some(status.as_enum_number().unwrap_or_default())
    }
}

/// The top-level field of a JSON object that does not fit `message` (serde's sentence names an
/// unknown field, but not one of a known name whose value has the wrong type).
fn field_at_fault(message: &MessageDescriptor, json: &str) -> Option<String> {
    let serde_json::Value::Object(fields) = serde_json::from_str(json).ok()? else {
        return None;
    };
    fields.into_iter().find_map(|(name, value)| {
        let alone = serde_json::Value::Object([(name.clone(), value)].into_iter().collect());
        DynamicMessage::deserialize(message.clone(), alone)
            .is_err()
            .then_some(name)
    })
}

/// "a, b" or "none".
fn list_or_none(names: &[String]) -> String {
    if names.is_empty() {
        "none".to_string()
    } else {
        names.join(", ")
    }
}

/// `method` (`package.Service/Method`) in `pool`, read from `file`.
fn find_method(pool: &DescriptorPool, file: &str, method: &str) -> Result<MethodDescriptor, Error> {
    let (service_name, method_name) = method
        .trim_start_matches('/')
        .split_once('/')
        .filter(|(s, m)| !s.is_empty() && !m.is_empty() && !m.contains('/'))
        .ok_or_else(|| Error::MethodSyntax(method.to_string()))?;
    let unknown = |what: String| Error::UnknownMethod {
        file: file.to_string(),
        what,
    };
    let service = pool.get_service_by_name(service_name).ok_or_else(|| {
        let known: Vec<String> = pool.services().map(|s| s.full_name().to_string()).collect();
        unknown(format!(
            "no service {service_name} (it declares: {})",
            list_or_none(&known)
        ))
    })?;
    let found = service.methods().find(|m| m.name() == method_name);
    found.ok_or_else(|| {
        let known: Vec<String> = service.methods().map(|m| m.name().to_string()).collect();
        unknown(format!(
            "service {service_name} has no method {method_name} (it has: {})",
            list_or_none(&known)
        ))
    })
}

/// The request message of type `input`, filled from `json`.
fn request_message(input: &MessageDescriptor, json: &str) -> Result<DynamicMessage, Error> {
    let mut de = serde_json::Deserializer::from_str(json);
    DynamicMessage::deserialize(input.clone(), &mut de)
        .and_then(|m| de.end().map(|()| m))
        .map_err(|e| Error::Data {
            message: input.full_name().to_string(),
            problem: match field_at_fault(input, json) {
                Some(field) => format!("field {field:?}: {e}"),
                None => e.to_string(),
            },
        })
}

/// Reads a unary answer: one message, then the trailers. `code_of` gives a message's code and
/// encoded size.
async fn finish<T>(
    mut stream: Streaming<T>,
    code_of: impl Fn(&T) -> (u16, u64),
) -> Result<(u16, u64), Fault> {
    let message = match stream.message().await {
        Ok(message) => message,
        Err(status) => return status_code(status),
    };
    let trailers = match stream.trailers().await {
        Ok(trailers) => trailers,
        Err(status) => return status_code(status),
    };
    let status = trailers.and_then(|t| Status::from_header_map(t.as_ref()));
    match (message, status) {
        (_, None) => Err(Fault::protocol("a gRPC answer without grpc-status")),
        (None, Some(_)) => Err(Fault::protocol(
            "a gRPC answer without a message (status OK)",
        )),
        (Some(message), Some(_)) => {
            let (code, size) = code_of(&message);
            // The 5-byte gRPC frame header, then the message.
            Ok((code, size + 5))
        }
    }
}

/// The code of a status the server sent (it has no source), or the transport failure that
/// ended the stream (its source: hyper's, an I/O or an HTTP/2 error, or a message that did not
/// decode).
fn status_code(status: Status) -> Result<(u16, u64), Fault> {
    let Some(source) = status.source() else {
        return Ok((code::grpc(status.code() as i32), 0));
    };
    let class = classify(source);
    Err(Fault::boxed(class, Box::new(Broken(status))))
}

/// The transport class of an error that broke a gRPC answer.
fn classify(err: &(dyn StdError + 'static)) -> ErrorClass {
    let mut cur = Some(err);
    while let Some(e) = cur {
        if let Some(hyper) = e.downcast_ref::<hyper::Error>() {
            return ErrorClass::from_hyper_error(hyper);
        }
        if let Some(io) = e.downcast_ref::<io::Error>() {
            return ErrorClass::from_io_error(io);
        }
        if let Some(h2) = e.downcast_ref::<h2::Error>() {
            return ErrorClass::from_h2_error(h2);
        }
        cur = e.source();
    }
    ErrorClass::Protocol
}

/// A gRPC answer broken by a transport error: says what the error said.
#[derive(Debug)]
struct Broken(Status);

impl fmt::Display for Broken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0.message())
    }
}

impl StdError for Broken {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.0.source()
    }
}

/// Frames one message with tonic's client encoder: the bytes of the request body.
fn frame<E>(encoder: E, message: E::Item) -> Result<Bytes, Error>
where
    E: Encoder<Error = Status> + Send + 'static,
    E::Item: Send + 'static,
{
    let source = tokio_stream::iter([Ok::<_, Status>(message)]);
    let body = EncodeBody::new_client(encoder, source, None, None);
    // The message is at hand: encoding completes on the first poll, no runtime needed.
    let mut collect = pin!(body.collect());
    match collect
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
    {
        Poll::Ready(Ok(collected)) => Ok(collected.to_bytes()),
        Poll::Ready(Err(status)) => Err(Error::Encode(status.message().to_string())),
        Poll::Pending => Err(Error::Encode("the encoder did not finish".to_string())),
    }
}

/// The descriptors `path` holds: a binary descriptor set, or `.proto` source compiled by protox
/// (its directory the include path; well-known imports built in).
fn descriptors(path: &Path) -> Result<DescriptorPool, Error> {
    let file = path.display().to_string();
    let binary = path
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| matches!(e, "pb" | "desc" | "protoset" | "bin"));
    if binary {
        let bytes = std::fs::read(path).map_err(|e| Error::Proto {
            place: file.clone(),
            message: format!("cannot read it: {e}"),
        })?;
        return DescriptorPool::decode(bytes.as_slice()).map_err(|e| Error::Proto {
            place: file,
            message: format!("not a descriptor set: {e}"),
        });
    }
    if let Err(e) = std::fs::metadata(path) {
        return Err(Error::Proto {
            place: file,
            message: format!("cannot read it: {e}"),
        });
    }
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let compiled = protox::Compiler::new([&dir]).and_then(|mut c| {
        c.include_imports(true).open_file(path)?;
        Ok(c.descriptor_pool())
    });
    compiled.map_err(|e| proto_error(path, &dir, &e))
}

/// A protox error as `file:line:column: message` (the line where it has one).
fn proto_error(path: &Path, dir: &Path, err: &protox::Error) -> Error {
    let in_file = err
        .file()
        .map_or_else(|| path.to_path_buf(), |f| dir.join(f));
    let mut place = in_file.display().to_string();
    let offset = err.labels().and_then(|mut l| l.next()).map(|l| l.offset());
    if let (Some(offset), Ok(text)) = (offset, std::fs::read_to_string(&in_file)) {
        let before = &text.as_bytes()[..offset.min(text.len())];
        let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
        let column = before.iter().rev().take_while(|&&b| b != b'\n').count() + 1;
        place = format!("{place}:{line}:{column}");
    }
    let message = match err.source() {
        Some(io) if err.is_io() => format!("{err}: {io}"),
        _ => err.to_string(),
    };
    Error::Proto { place, message }
}

/// A tonic codec over `prost-reflect`'s dynamic messages: encodes any message, decodes
/// messages of one type.
#[derive(Clone, Debug)]
struct DynamicCodec(MessageDescriptor);

impl Codec for DynamicCodec {
    type Encode = DynamicMessage;
    type Decode = DynamicMessage;
    type Encoder = DynamicCodec;
    type Decoder = DynamicCodec;

    fn encoder(&mut self) -> DynamicCodec {
        self.clone()
    }

    fn decoder(&mut self) -> DynamicCodec {
        self.clone()
    }
}

impl Encoder for DynamicCodec {
    type Item = DynamicMessage;
    type Error = Status;

    fn encode(&mut self, item: DynamicMessage, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        item.encode(dst)
            .map_err(|e| Status::internal(format!("cannot encode the message: {e}")))
    }
}

impl Decoder for DynamicCodec {
    type Item = DynamicMessage;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<DynamicMessage>, Status> {
        let bytes = src.copy_to_bytes(src.remaining());
        DynamicMessage::decode(self.0.clone(), bytes)
            .map(Some)
            // With a source: a transport failure (`protocol`), not a status the server sent.
            .map_err(|e| Status::from_error(Box::new(e)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_health_request_is_framed_once() {
        let call = GrpcCall::health("svc").unwrap();
        assert_eq!(call.path(), HEALTH_PATH);
        // Uncompressed, 5 bytes of message: field 1, length 3, "svc".
        assert_eq!(&call.body()[..], b"\0\0\0\0\x05\x0a\x03svc");
        assert_eq!(call.success(), code::SERVING);
    }

    #[test]
    fn transport_sources_are_classified() {
        let reset = io::Error::from(io::ErrorKind::ConnectionReset);
        assert_eq!(classify(&reset), ErrorClass::Reset);
        let h2 = h2::Error::from(h2::Reason::PROTOCOL_ERROR);
        assert_eq!(classify(&h2), ErrorClass::Protocol);
        let said = Status::unavailable("down");
        assert_eq!(status_code(said).unwrap(), (14, 0));
        let broken = Status::from_error(Box::new(io::Error::from(io::ErrorKind::BrokenPipe)));
        assert_eq!(status_code(broken).unwrap_err().class, ErrorClass::Reset);
    }
}
