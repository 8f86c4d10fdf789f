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
//! ```
//!
//! The keys are declared once with the run's other options ([`super::options::StreamOptions`]);
//! their checks are with the others (`super::check`), and this module holds the rules between
//! them (a URL for each, `kind = "sse"` for an `http(s)://` URL, unique names), with errors
//! naming `file:line:col` and the key.

use std::ops::Range;

use http::HeaderMap;
use toml::Spanned;

use super::check::{Context, Error};
use super::options::StreamOptions;
use crate::config::{StreamConfig, StreamKind};

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
        let kind_span = || match s.kind.as_ref().map(|g| &g.origin) {
            Some(super::check::Origin::File(span)) => span.clone(),
            _ => whole.clone(),
        };
        let kind = match (url.is_websocket(), given_kind.map(|k| k.value)) {
            (true, None | Some(StreamKind::Websocket)) => StreamKind::Websocket,
            (false, Some(StreamKind::Sse)) => StreamKind::Sse,
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
                    "an http:// or https:// URL needs kind = \"sse\" (WebSockets are ws:// or wss://)",
                ));
            }
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
            interval: s.interval(cx)?.value,
            timeout: s.timeout(cx)?.value,
            headers,
            insecure,
            ca_certs: ca_certs.to_vec(),
        })
    }
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
    fn stream_errors_name_file_line_column_and_key() {
        assert_eq!(
            probes("[[stream]]\nurl = \"http://h/e\"\n").unwrap_err(),
            "s.toml:1:1: stream[1].kind: an http:// or https:// URL needs kind = \"sse\" \
             (WebSockets are ws:// or wss://)"
        );
        assert_eq!(
            probes("[[stream]]\nurl = \"ws://h/\"\nkind = \"sse\"\n").unwrap_err(),
            "s.toml:3:8: stream[1].kind: a ws:// or wss:// URL is a WebSocket, not sse"
        );
        assert_eq!(
            probes("[[stream]]\nurl = \"ws://h/\"\nkind = \"grpc\"\n").unwrap_err(),
            "s.toml:3:8: stream[1].kind: \"grpc\" is not a stream kind: use websocket or sse"
        );
        assert_eq!(
            probes("[[stream]]\nurl = \"ftp://h/\"\n").unwrap_err(),
            "s.toml:2:7: stream[1].url: \"ftp://h/\" has no usable scheme: use ws://, wss://, or \
             http(s):// with kind = \"sse\""
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
