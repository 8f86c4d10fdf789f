//! `[[stream]]` in a scenario: long-lived probes held beside the load.
//!
//! ```toml
//! [[stream]]
//! name = "chat"
//! url = "ws://127.0.0.1:9001/chat"
//! count = 4            # connections held at once (default 1)
//! interval = "1s"      # WebSocket ping interval (default 1s)
//! timeout = "5s"       # a ping unanswered (SSE: no line) this long is a disconnect (default 5s)
//! headers = { Authorization = "Bearer ${TOKEN}" }
//!
//! [[stream]]
//! url = "http://127.0.0.1:8080/events"
//! kind = "sse"
//!
//! [[stream]]
//! url = "http://127.0.0.1:50051"   # h2c; https:// for TLS with ALPN h2
//! kind = "grpc"
//! method = "grpc.health.v1.Health/Watch"   # the default; others need proto = "x.proto"
//! data = '{"service": ""}'                 # the request message, as JSON (default {})
//! ```
//!
//! The keys are declared once with the run's other options ([`super::options::StreamOptions`]);
//! their checks are with the others (`super::check`), and this module holds the rules between
//! them (a URL for each, `kind = "sse"` or `"grpc"` for an `http(s)://` URL, `method`, `proto`
//! and `data` for gRPC only, unique names), with errors naming `file:line:col` and the key.

use std::ops::Range;

use std::sync::Arc;

use http::HeaderMap;
use toml::Spanned;

use super::check::{Context, Error};
use super::options::StreamOptions;
use crate::client::grpc::StreamCall;
use crate::config::{GRPC_PING_INTERVAL, PING_INTERVAL, StreamConfig, StreamKind};

/// The probes of a scenario's `[[stream]]` tables (each spanned as a whole), checked; `insecure`
/// and `ca_certs` are the run's TLS settings.
pub fn configs(
    tables: &[Spanned<StreamOptions>],
    cx: &Context,
    insecure: bool,
    ca_certs: &[rustls::pki_types::CertificateDer<'static>],
) -> Result<Vec<StreamConfig>, Error> {
    let mut out: Vec<StreamConfig> = Vec::with_capacity(tables.len());
    for (i, table) in tables.iter().enumerate() {
        let probe = config(i, table, cx, insecure, ca_certs, &out).map_err(|e| indexed(e, i))?;
        out.push(probe);
    }
    Ok(out)
}

/// An error about `stream.KEY` of table `i` names it `stream[i+1].KEY`, as the file has several.
fn indexed(e: Error, i: usize) -> Error {
    match e {
        Error::At {
            path,
            line,
            column,
            key,
            message,
        } => Error::At {
            path,
            line,
            column,
            key: match key.strip_prefix("stream.") {
                Some(rest) => format!("stream[{}].{rest}", i + 1),
                None => key,
            },
            message,
        },
        other => other,
    }
}

/// The probe of table `i`, after the `earlier` ones.
fn config(
    i: usize,
    table: &Spanned<StreamOptions>,
    cx: &Context,
    insecure: bool,
    ca_certs: &[rustls::pki_types::CertificateDer<'static>],
    earlier: &[StreamConfig],
) -> Result<StreamConfig, Error> {
    {
        let key = |field: &str| format!("stream[{}].{field}", i + 1);
        let whole: Range<usize> = table.span();
        let s = table.get_ref();
        let Some(url) = s.url(cx)? else {
            return Err(cx.error_at(whole, &key("url"), "each [[stream]] needs a url"));
        };
        let url = url.value;
        let given_kind = s.kind(cx)?;
        // Where a key was written (the table's start when it was not).
        let span_of = |origin: Option<&super::check::Origin>| match origin {
            Some(super::check::Origin::File(span)) => span.clone(),
            _ => whole.clone(),
        };
        let kind_span = || span_of(s.kind.as_ref().map(|g| &g.origin));
        let kind = match (url.is_websocket(), given_kind.map(|k| k.value)) {
            (true, None | Some(StreamKind::Websocket)) => StreamKind::Websocket,
            (false, Some(kind @ (StreamKind::Sse | StreamKind::Grpc))) => kind,
            (true, Some(other)) => {
                return Err(cx.error_at(
                    kind_span(),
                    &key("kind"),
                    format!("a ws:// or wss:// URL is a WebSocket, not {other}"),
                ));
            }
            (false, _) => {
                return Err(cx.error_at(
                    kind_span(),
                    &key("kind"),
                    "an http:// or https:// URL needs kind = \"sse\" or kind = \"grpc\" \
                     (WebSockets are ws:// or wss://)",
                ));
            }
        };
        let grpc = if kind == StreamKind::Grpc {
            Some(Arc::new(grpc_call(s, cx, &key, &span_of)?))
        } else {
            let given = [
                ("method", s.method.as_ref().map(|g| &g.origin)),
                ("proto", s.proto.as_ref().map(|g| &g.origin)),
                ("data", s.data.as_ref().map(|g| &g.origin)),
            ];
            if let Some((field, origin)) = given.into_iter().find(|(_, o)| o.is_some()) {
                return Err(cx.error_at(
                    span_of(origin),
                    &key(field),
                    format!("{field} goes with kind = \"grpc\", not {kind}"),
                ));
            }
            None
        };
        let name = match s.name(cx)? {
            Some(name) => name.value,
            None => url.to_string(),
        };
        if earlier.iter().any(|p| p.name == name) {
            let span = match s.name.as_ref().map(|g| &g.origin) {
                Some(super::check::Origin::File(span)) => span.clone(),
                _ => whole.clone(),
            };
            return Err(cx.error_at(
                span,
                &key("name"),
                format!("{name:?} names an earlier stream too: stream names must be unique"),
            ));
        }
        let mut headers = HeaderMap::new();
        for h in s.headers(cx)? {
            let (name, value) = h.value;
            headers.append(name, value);
        }
        Ok(StreamConfig {
            name,
            url,
            kind,
            count: s.count(cx)?.value,
            interval: s.interval(cx)?.map_or(
                if kind == StreamKind::Grpc {
                    GRPC_PING_INTERVAL
                } else {
                    PING_INTERVAL
                },
                |i| i.value,
            ),
            timeout: s.timeout(cx)?.value,
            headers,
            insecure,
            ca_certs: ca_certs.to_vec(),
            grpc,
        })
    }
}

/// The gRPC call of a `kind = "grpc"` table: its `method` (default the health watch) from its
/// `proto` (none needed for the health watch) with its `data`, built as the unary options'
/// call is ([`StreamCall::new`]); an error names the key it is about, and the `.proto`'s own
/// `file:line:col` when it does not compile.
fn grpc_call(
    s: &StreamOptions,
    cx: &Context,
    key: &dyn Fn(&str) -> String,
    span_of: &dyn Fn(Option<&super::check::Origin>) -> Range<usize>,
) -> Result<StreamCall, Error> {
    use crate::client::grpc::{Error as GrpcError, HEALTH_WATCH};
    let method = s
        .method(cx)?
        .map_or_else(|| HEALTH_WATCH.to_string(), |m| m.value);
    let proto = s.proto(cx)?.map(|p| p.value);
    let json = s.data(cx)?.map_or_else(|| "{}".to_string(), |d| d.value);
    StreamCall::new(proto.as_deref(), &method, &json).map_err(|e| {
        let field = match e {
            GrpcError::Proto { .. } if s.proto.is_some() => "proto",
            GrpcError::Data { .. } | GrpcError::Encode(_) => "data",
            _ => "method",
        };
        let origin = match field {
            "proto" => s.proto.as_ref(),
            "data" => s.data.as_ref(),
            _ => s.method.as_ref(),
        };
        cx.error_at(span_of(origin.map(|g| &g.origin)), &key(field), e.reason())
    })
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::time::Duration;

    use super::*;
    use crate::cli::scenario::Scenario;

    fn env(name: &str) -> Option<String> {
        (name == "TOKEN").then(|| "s3cret".to_string())
    }

    fn probes(source: &str) -> Result<Vec<StreamConfig>, String> {
        let s = Scenario::parse(Path::new("s.toml"), source, &env).map_err(|e| e.to_string())?;
        configs(&s.streams, &s.context(&env), false, &[]).map_err(|e| e.to_string())
    }

    #[test]
    fn streams_validate_with_their_defaults() {
        let p = probes(
            "[[stream]]\nname = \"chat\"\nurl = \"ws://127.0.0.1:9/c\"\ncount = 3\ninterval = \"200ms\"\n\
             headers = { Authorization = \"Bearer ${TOKEN}\" }\n\n\
             [[stream]]\nurl = \"http://127.0.0.1:9/events\"\nkind = \"sse\"\ntimeout = \"2s\"\n",
        )
        .unwrap();
        assert_eq!(p.len(), 2);
        assert_eq!(
            (p[0].name.as_str(), p[0].kind),
            ("chat", StreamKind::Websocket)
        );
        assert_eq!(p[0].count.get(), 3);
        assert_eq!(p[0].interval, Duration::from_millis(200));
        assert_eq!(p[0].timeout, Duration::from_secs(5));
        assert_eq!(p[0].headers["authorization"], "Bearer s3cret");
        assert_eq!(p[1].name, "http://127.0.0.1:9/events");
        assert_eq!((p[1].kind, p[1].count.get()), (StreamKind::Sse, 1));
        assert_eq!(p[1].interval, Duration::from_secs(1));
        assert_eq!(p[1].timeout, Duration::from_secs(2));
    }

    #[test]
    fn a_grpc_stream_defaults_to_the_health_watch() {
        let p = probes(
            "[[stream]]\nurl = \"http://127.0.0.1:9\"\nkind = \"grpc\"\n\
             data = '{\"service\": \"api\"}'\n",
        )
        .unwrap();
        assert_eq!(p[0].kind, StreamKind::Grpc);
        assert_eq!(p[0].interval, Duration::from_secs(300));
        let call = p[0].grpc.as_ref().expect("the call");
        assert_eq!(call.path(), "/grpc.health.v1.Health/Watch");
        assert!(call.is_health());
        // Framed: field 1, length 3, "api".
        assert_eq!(&call.body()[..], b"\0\0\0\0\x05\x0a\x03api");
        assert!(
            probes("[[stream]]\nurl = \"ws://h/\"\n").unwrap()[0]
                .grpc
                .is_none()
        );
    }

    #[test]
    fn grpc_stream_errors_name_the_key_or_the_proto_line() {
        let protos = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/it/protos");
        let grpc = |keys: &str| {
            probes(&format!(
                "[[stream]]\nurl = \"http://h:1\"\nkind = \"grpc\"\n{keys}"
            ))
        };
        assert_eq!(
            grpc("method = \"grpc.health.v1.Health/Check\"\n").unwrap_err(),
            "s.toml:4:10: stream[1].method: grpc.health.v1.Health/Check is not a server-streaming \
             method (one request, a stream of answers)"
        );
        assert_eq!(
            grpc("method = \"demo.v1.Greeter/Hello\"\n").unwrap_err(),
            "s.toml:4:10: stream[1].method: the built-in grpc.health.v1 (give a proto for others): \
             no service demo.v1.Greeter (it declares: grpc.health.v1.Health)"
        );
        let e = grpc(&format!(
            "method = \"demo.v1.Greeter/Chat\"\nproto = \"{protos}/greeter.proto\"\n"
        ))
        .unwrap_err();
        assert!(
            e.starts_with(
                "s.toml:4:10: stream[1].method: demo.v1.Greeter/Chat is not a server-streaming"
            ),
            "{e}"
        );
        let e = grpc(&format!(
            "method = \"demo.v1.Greeter/Hello\"\nproto = \"{protos}/broken.proto\"\n"
        ))
        .unwrap_err();
        assert!(e.starts_with("s.toml:5:9: stream[1].proto: "), "{e}");
        assert!(e.contains("broken.proto:7:3: expected"), "{e}");
        assert_eq!(
            grpc("data = '{\"service\": 3}'\n").unwrap_err(),
            "s.toml:4:8: stream[1].data: does not fit grpc.health.v1.HealthCheckRequest: field \
             \"service\": invalid type: integer `3`, expected a string at line 1 column 13"
        );
        assert_eq!(
            grpc("method = \"Watch\"\n").unwrap_err(),
            "s.toml:4:10: stream[1].method: \"Watch\" is not a method such as package.Service/Method"
        );
        assert_eq!(
            probes("[[stream]]\nurl = \"ws://h/\"\nmethod = \"a.B/C\"\n").unwrap_err(),
            "s.toml:3:10: stream[1].method: method goes with kind = \"grpc\", not websocket"
        );
    }

    #[test]
    fn stream_errors_name_file_line_column_and_key() {
        assert_eq!(
            probes("[[stream]]\nurl = \"http://h/e\"\n").unwrap_err(),
            "s.toml:1:1: stream[1].kind: an http:// or https:// URL needs kind = \"sse\" or \
             kind = \"grpc\" (WebSockets are ws:// or wss://)"
        );
        assert_eq!(
            probes("[[stream]]\nurl = \"ws://h/\"\nkind = \"sse\"\n").unwrap_err(),
            "s.toml:3:8: stream[1].kind: a ws:// or wss:// URL is a WebSocket, not sse"
        );
        assert_eq!(
            probes("[[stream]]\nurl = \"ws://h/\"\nkind = \"rpc\"\n").unwrap_err(),
            "s.toml:3:8: stream[1].kind: \"rpc\" is not a stream kind: use websocket, sse or grpc"
        );
        assert_eq!(
            probes("[[stream]]\nurl = \"ftp://h/\"\n").unwrap_err(),
            "s.toml:2:7: stream[1].url: \"ftp://h/\" has no usable scheme: use ws://, wss://, or \
             http(s):// with kind = \"sse\" or \"grpc\""
        );
        assert_eq!(
            probes("[[stream]]\nurl = \"ws://h/\"\ncount = 0\n").unwrap_err(),
            "s.toml:3:9: stream[1].count: must be at least 1 (got 0)"
        );
        assert_eq!(
            probes("[[stream]]\nname = \"a\"\n").unwrap_err(),
            "s.toml:1:1: stream[1].url: each [[stream]] needs a url"
        );
        assert_eq!(
            probes("[[stream]]\nname = \"a\"\nurl = \"ws://h/\"\n[[stream]]\nname = \"a\"\nurl = \"ws://h/\"\n")
                .unwrap_err(),
            "s.toml:5:8: stream[2].name: \"a\" names an earlier stream too: stream names must be unique"
        );
        let e = probes("[[stream]]\nurl = \"ws://h/\"\ninterval = \"soon\"\n").unwrap_err();
        assert!(
            e.starts_with("s.toml:3:12: stream[1].interval: \"soon\" is not a duration"),
            "{e}"
        );
        let e = probes("[[stream]]\nurl = \"ws://h/\"\ncont = 2\n").unwrap_err();
        assert!(
            e.starts_with("s.toml:3:1: stream[1].cont: unknown field `cont`"),
            "{e}"
        );
        assert!(e.ends_with("did you mean `count`?"), "{e}");
    }
}
