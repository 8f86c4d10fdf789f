//! Every option of `gapless run`, declared once.
//!
//! One declaration per option, in the [`options!`] invocations at the end of this file, carries:
//! the `--help` text (its doc comment), the flag names (its clap attributes), the raw type both
//! sources give (the command line's text, or the scenario file's TOML value), the typed value it
//! becomes, the default (as a user would write it) and the check (a range or a parser, from
//! [`super::check`]). From that one declaration come:
//!
//! - the clap arguments (the structs are `#[command(flatten)]`ed into `gapless run`),
//! - the serde fields of the scenario file's `[target]`, `[load]` and `[verdict]` tables,
//! - the merge of the command line over the file, field by field ([`TargetOptions::or`], ...),
//! - an accessor per option that applies the default and the check and says where the value came
//!   from ([`Setting`]), with errors that name the flag or `file:line:col` and the key,
//! - the table of defaults and ranges that `--help` and README show ([`Spec`]).
//!
//! Rules between options (a duration with steps, a slot longer than the run, ...) are checked
//! once, in [`super::RunArgs::validate`].

use std::num::{NonZeroU32, NonZeroUsize};
use std::str::FromStr;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Method};
use serde::{Deserialize, Deserializer};
use toml::Spanned;

use super::check::{
    AnyText, BodyFile, CaBundle, Check, Codes, Context, Count, DemoCheck, DemoTable, Error,
    Expanded, Given, GrpcMethod, HeaderLine, HeaderNames, Label, ListenCheck, Methods, Origin,
    Percent, Place, ProtoFile, PushCheck, RateCheck, Ratio, Span, StartAt, StreamKinds,
    StreamUrlCheck, Switch, UrlCheck, VersionPattern,
};
use crate::config::{OkCodes, Rate, StreamKind, StreamUrl, TargetUrl};
pub use crate::config::{Setting, Source};
use crate::targets::demo::DemoSpec;

/// One option's declaration, as `--help` and README show it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Spec {
    /// The clap argument id (the field name).
    pub id: &'static str,
    /// The scenario key, such as `load.qps`; `None` for an option of the command line only.
    pub key: Option<String>,
    /// The default as a user would write it, or how it is chosen.
    pub default: Option<&'static str>,
    /// The accepted values.
    pub range: Option<String>,
}

/// The flag of argument `id` in `args` (`--qps`, or the value name of a positional argument).
pub fn flag_of(args: &clap::Command, id: &str) -> String {
    match args.get_arguments().find(|a| a.get_id() == id) {
        Some(arg) => match arg.get_long() {
            Some(long) => format!("--{long}"),
            None => arg
                .get_value_names()
                .and_then(|names| names.first())
                .map_or_else(|| id.to_uppercase(), |n| n.to_string()),
        },
        None => format!("--{}", id.replace('_', "-")),
    }
}

/// Applies the default and the check to one option's value.
pub fn resolve<C: Check>(
    given: Option<&Given<C::Raw>>,
    default: Option<&str>,
    check: &C,
    (flag, key): (&str, &str),
    cx: &Context,
) -> Result<Option<Setting<C::Out>>, Error>
where
    C::Raw: FromStr,
{
    let parsed;
    let (raw, origin, source) = match (given, default) {
        (Some(g), _) => (&g.value, &g.origin, None),
        (None, Some(text)) => {
            // Defaults are constants written as a user would; a unit test checks each parses.
            parsed = C::Raw::from_str(text).map_err(|_| Error::Flag {
                flag: flag.to_string(),
                message: format!("cannot use the default {text:?} (a bug in gapless)"),
            })?;
            (&parsed, &Origin::Command, Some(Source::Default))
        }
        (None, None) => return Ok(None),
    };
    let place = Place { flag, key, origin };
    let value = check.check(raw, &place, cx)?;
    Ok(Some(Setting {
        value,
        source: source.unwrap_or_else(|| place.source()),
    }))
}

/// `check`, with its raw and typed values named (so a generic check's types are known).
pub fn declared<R, O, C: Check<Raw = R, Out = O>>(check: C) -> C {
    check
}

/// Declares a group of options: one struct that clap fills (flattened into `gapless run`) and
/// serde fills (a table of the scenario file), with an accessor per option (see the module
/// documentation). Each option is written as
///
/// ```text
/// /// Help text.
/// #[arg(long, ...)]
/// name: RawType => OutType = "default" | none | ("how it is chosen"), check;
/// ```
///
/// An option with a default has an accessor returning `Setting<OutType>`; the others return
/// `Option<Setting<OutType>>`. Options repeated on the command line (`-H`) are declared after
/// `lists`, with the function that merges the command line's over the file's.
macro_rules! options {
    (
        $(#[$meta:meta])*
        pub struct $name:ident in $section:literal {
            $(
                $(#[doc = $doc:literal])*
                #[arg($($arg:tt)*)]
                $(#[serde($($serde:tt)*)])*
                $field:ident : $raw:ty => $out:ty = $default:tt, $check:expr;
            )*
        }
        $(lists {
            $(
                $(#[doc = $ldoc:literal])*
                #[arg($($larg:tt)*)]
                $(#[serde($($lserde:tt)*)])*
                $lfield:ident : $lraw:ty => $lout:ty, $lcheck:expr, merge $merge:path;
            )*
        })?
    ) => {
        #[derive(Clone, Debug, Default, clap::Args, serde::Deserialize)]
        #[serde(deny_unknown_fields, default)]
        $(#[$meta])*
        pub struct $name {
            $(
                $(#[doc = $doc])*
                #[arg($($arg)*)]
                $(#[serde($($serde)*)])*
                pub $field: Option<Given<$raw>>,
            )*
            $($(
                $(#[doc = $ldoc])*
                #[arg($($larg)*)]
                $(#[serde($($lserde)*)])*
                pub $lfield: Vec<Given<$lraw>>,
            )*)?
        }

        impl $name {
            /// The values given here, and `file`'s where none is: the command line over the
            /// scenario file.
            pub fn or(self, file: $name) -> $name {
                $name {
                    $( $field: self.$field.or(file.$field), )*
                    $($( $lfield: $merge(self.$lfield, file.$lfield), )*)?
                }
            }

            /// The declarations, in order.
            pub fn specs() -> Vec<Spec> {
                vec![
                    $(Spec {
                        id: stringify!($field),
                        key: Some(concat!($section, ".", stringify!($field)).to_string()),
                        default: options!(@text $default),
                        range: declared::<$raw, $out, _>($check).range(),
                    },)*
                    $($(Spec {
                        id: stringify!($lfield),
                        key: Some(concat!($section, ".", stringify!($lfield)).to_string()),
                        default: None,
                        range: declared::<$lraw, $lout, _>($lcheck).range(),
                    },)*)?
                ]
            }

            /// Checks every value given (the scenario file's, before any merge), so a mistake in
            /// the file is found even where the command line overrides it.
            pub fn check_all(&self, cx: &Context) -> Result<(), Error> {
                $( self.$field(cx)?; )*
                $($( self.$lfield(cx)?; )*)?
                Ok(())
            }

            fn flag(id: &str) -> String {
                let args = <$name as clap::Args>::augment_args(clap::Command::new("gapless"));
                flag_of(&args, id)
            }

            $(
                options!(@accessor $field, $raw, $out, $default, declared::<$raw, $out, _>($check), $section);
            )*

            $($(
                $(#[doc = $ldoc])*
                pub fn $lfield(&self, cx: &Context) -> Result<Vec<Setting<$lout>>, Error> {
                    let flag = Self::flag(stringify!($lfield));
                    let key = concat!($section, ".", stringify!($lfield));
                    self.$lfield
                        .iter()
                        .map(|g| {
                            resolve(Some(g), None, &declared::<$lraw, $lout, _>($lcheck), (&flag, key), cx)
                                .map(|s| s.expect("a given value resolves to a setting"))
                        })
                        .collect()
                }
            )*)?
        }
    };
    (@text none) => { None };
    (@text ($text:literal)) => { Some($text) };
    (@text $text:literal) => { Some($text) };
    (@accessor $field:ident, $raw:ty, $out:ty, none, $check:expr, $section:literal) => {
        options!(@optional $field, $raw, $out, $check, $section);
    };
    (@accessor $field:ident, $raw:ty, $out:ty, ($text:literal), $check:expr, $section:literal) => {
        options!(@optional $field, $raw, $out, $check, $section);
    };
    (@optional $field:ident, $raw:ty, $out:ty, $check:expr, $section:literal) => {
        #[doc = concat!("`", $section, ".", stringify!($field), "`, if given.")]
        pub fn $field(&self, cx: &Context) -> Result<Option<Setting<$out>>, Error> {
            let flag = Self::flag(stringify!($field));
            let key = concat!($section, ".", stringify!($field));
            resolve(self.$field.as_ref(), None, &$check, (&flag, key), cx)
        }
    };
    (@accessor $field:ident, $raw:ty, $out:ty, $default:literal, $check:expr, $section:literal) => {
        #[doc = concat!("`", $section, ".", stringify!($field), "`, or its default ", $default, ".")]
        pub fn $field(&self, cx: &Context) -> Result<Setting<$out>, Error> {
            let flag = Self::flag(stringify!($field));
            let key = concat!($section, ".", stringify!($field));
            resolve(self.$field.as_ref(), Some($default), &$check, (&flag, key), cx)?
                .ok_or_else(|| Error::Flag { flag, message: "has no value".to_string() })
        }
    };
}

/// Most connections: beyond this the descriptors and buffers, not the target, are the limit.
pub const MAX_CONNECTIONS: u64 = 10_000;

const fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}
const fn hours(n: u64) -> Duration {
    Duration::from_secs(n * 3600)
}

options! {
    /// `[target]`: what to send, and what counts as success.
    #[command(next_help_heading = "Target")]
    pub struct TargetOptions in "target" {
        /// Target URL (http:// or https://); optional with --scenario when the file has one.
        #[arg(value_name = "URL", help_heading = "Target")]
        url: String => TargetUrl = none, UrlCheck;
        /// HTTP method.
        #[arg(short = 'X', long, value_name = "METHOD")]
        method: String => Method = "GET", Methods;
        /// Request body.
        #[arg(long, value_name = "STR", conflicts_with = "body_file")]
        body: String => Bytes = none, Expanded;
        /// Request body from a file (in a scenario: relative to the file's directory).
        #[arg(long, value_name = "PATH")]
        body_file: String => Bytes = none, BodyFile;
        /// Deadline of each request, counted from its intended send time.
        #[arg(long, value_name = "DUR")]
        timeout: String => Duration = "3s", Span::new(ms(1), hours(1));
        /// Status codes that count as success, e.g. 200-299,304 (redirects are not followed: a 301 is a failure unless listed here).
        #[arg(long, value_name = "LIST")]
        ok_codes: String => OkCodes = "200-299", Codes;
        /// HTTP/2 (h2c prior knowledge for http://, ALPN for https://).
        #[arg(long, num_args = 0, default_missing_value = "true")]
        http2: bool => bool = "false", Switch;
        /// gRPC health check (grpc.health.v1.Health/Check) of SERVICE, or of the server without one, over HTTP/2; success is SERVING.
        #[arg(long, value_name = "SERVICE", num_args = 0..=1, default_missing_value = "", help_heading = "gRPC")]
        grpc_health: String => String = none, AnyText;
        /// gRPC unary call of METHOD (package.Service/Method) from --proto, over HTTP/2; success is OK.
        #[arg(long, value_name = "METHOD", help_heading = "gRPC")]
        grpc: String => String = none, GrpcMethod;
        /// The .proto file (or binary descriptor set) that declares the --grpc method.
        #[arg(long, value_name = "FILE", help_heading = "gRPC")]
        proto: String => std::path::PathBuf = none, ProtoFile;
        /// The --grpc request message, as JSON.
        #[arg(long, value_name = "JSON", help_heading = "gRPC")]
        data: String => String = ("{}"), AnyText;
        /// Do not verify TLS certificates.
        #[arg(short = 'k', long, num_args = 0, default_missing_value = "true")]
        insecure: bool => bool = "false", Switch;
        /// Trust the CA certificates of this PEM bundle (beside the built-in web roots), and a server certificate identical to one of them.
        #[arg(long, value_name = "FILE")]
        cacert: String => Vec<rustls::pki_types::CertificateDer<'static>> = none, CaBundle;
        /// Response header that names the version that answered (e.g. x-version).
        #[arg(long, value_name = "NAME", conflicts_with = "version_regex")]
        version_header: String => HeaderName = none, HeaderNames;
        /// Regex over the first 4 KiB of the body whose first capture group names the version.
        #[arg(long, value_name = "RE")]
        version_regex: String => regex::bytes::Regex = none, VersionPattern;
        /// Start the embedded demo cluster and load it (scenario files only).
        #[arg(skip)]
        demo: DemoTable => DemoSpec = none, DemoCheck;
        /// The endpoint's name in the reports, in a run of several (`[[target]]` only; default
        /// `METHOD URL`).
        #[arg(skip)]
        name: String => String = none, Label;
        /// The endpoint's weight in the run's rate, `-q` (`[[target]]` only; default 1 each:
        /// equal shares).
        #[arg(skip)]
        weight: i64 => NonZeroU32 = none, Count::new(1, crate::config::MAX_PERIOD);
        /// The endpoint's own rate, in requests per second (`[[target]]` only, given for every
        /// endpoint or none: the run's rate is then their sum).
        #[arg(skip)]
        qps: f64 => Rate = none, RateCheck;
    }
    lists {
        /// Extra header 'Name: value' (repeatable; replaces a header of that name from the scenario).
        #[arg(short = 'H', long = "header", value_name = "HEADER")]
        #[serde(deserialize_with = "header_table")]
        headers: String => (HeaderName, HeaderValue), HeaderLine, merge replace_by_name;
    }
}

options! {
    /// `[load]`: how much load, for how long.
    #[command(next_help_heading = "Load")]
    pub struct LoadOptions in "load" {
        /// Total requests per second; 0 = as fast as possible (closed loop).
        #[arg(short = 'q', long, value_name = "QPS", allow_negative_numbers = true)]
        qps: f64 => Rate = "100", RateCheck;
        /// Most connections to each origin (HTTP/1.1 keep-alive, one request in flight each), opened as the load needs them.
        #[arg(short = 'c', long, value_name = "N", allow_negative_numbers = true)]
        connections: i64 => NonZeroUsize = "16", Count::new(1, MAX_CONNECTIONS);
        /// Concurrent streams per HTTP/2 connection.
        #[arg(long, value_name = "N", allow_negative_numbers = true)]
        streams: i64 => NonZeroUsize = "1", Count::new(1, 1000);
        /// How long to run, without rollout steps (e.g. 10s, 1m30s); the load lasts that long even if its last request is answered sooner.
        #[arg(short = 'd', long, value_name = "DUR")]
        duration: String => Duration = "10s", Span::new(ms(1), hours(24 * 30));
        /// Load before the first step, nothing changing: the baseline.
        #[arg(long, value_name = "DUR", help_heading = "Rollout")]
        warmup: String => Duration = "3s", Span::new(Duration::ZERO, hours(24));
        /// Load after the last step.
        #[arg(long, value_name = "DUR", help_heading = "Rollout")]
        cooldown: String => Duration = "10s", Span::new(Duration::ZERO, hours(24));
        /// Width of one timeline slot (see README, Timeline slots).
        #[arg(long, value_name = "DUR")]
        slot: String => Duration = ("sized to the run, 10ms to 1s"), Span::new(ms(10), hours(1));
        /// Ceiling on new-connection attempts per second.
        #[arg(long, value_name = "N", allow_negative_numbers = true)]
        max_connect_rate: i64 => NonZeroU32 = ("the larger of 1000 and --qps"), Count::new(1, 10_000_000);
        /// Engine threads.
        #[arg(long, value_name = "N", allow_negative_numbers = true)]
        threads: i64 => NonZeroUsize = ("one per 100,000 qps, at most one per core"), Count::new(1, 1024);
        /// Split the load across this many processes (an Indexed Job's pods): each sends its
        /// share of one global schedule, and `gapless merge` joins their results.
        #[arg(long, value_name = "N", allow_negative_numbers = true, help_heading = "Shards")]
        shards: i64 => NonZeroU32 = ("1: not split"), Count::new(1, 1000);
        /// This process's shard, from 0 (shard 0 also runs the rollout steps).
        #[arg(long, value_name = "I", env = "JOB_COMPLETION_INDEX", allow_negative_numbers = true, help_heading = "Shards")]
        shard_index: i64 => u64 = ("$JOB_COMPLETION_INDEX"), Count::new(0, 999);
        /// The shards' common start of the schedule: RFC 3339 (2026-12-03T18:00:00Z) or Unix
        /// milliseconds.
        #[arg(long, value_name = "TIME", help_heading = "Shards")]
        start_at: String => std::time::SystemTime = none, StartAt;
        /// This shard's name in the reports.
        #[arg(long, value_name = "NAME", env = "NODE_NAME", help_heading = "Shards")]
        shard_label: String => String = ("$NODE_NAME, else the host name"), Label;
    }
}

options! {
    /// `[verdict]`: the thresholds, and how windows are found.
    #[command(next_help_heading = "Verdict")]
    pub struct VerdictOptions in "verdict" {
        /// Most failed requests allowed.
        #[arg(long, value_name = "N", allow_negative_numbers = true)]
        max_failures: i64 => u64 = ("0, unless --max-failure-ratio or --max-gap is given"), Count::new(0, i64::MAX as u64);
        /// Largest share of failed requests allowed (e.g. 0.001).
        #[arg(long, value_name = "R", allow_negative_numbers = true)]
        max_failure_ratio: f64 => f64 = none, Ratio;
        /// Longest availability gap allowed; 0s: any gap fails.
        #[arg(long, value_name = "DUR")]
        max_gap: String => Duration = ("0s, unless --max-failures or --max-failure-ratio is given"), Span::new(Duration::ZERO, hours(24));
        /// Largest p99 latency (from intended send time) allowed.
        #[arg(long, value_name = "DUR")]
        max_p99: String => Duration = none, Span::new(Duration::ZERO, hours(24));
        /// Failure windows closer than this merge into one.
        #[arg(long, value_name = "DUR")]
        merge_gap: String => Duration = "0s", Span::new(Duration::ZERO, hours(24));
        /// Report time slots whose p99 latency exceeds this as slow windows.
        #[arg(long, value_name = "DUR")]
        slow: String => Duration = none, Span::new(Duration::ZERO, hours(24));
        /// Longest time the target may answer nothing while requests wait for it (a stall).
        #[arg(long, value_name = "DUR")]
        max_stall: String => Duration = "1s", Span::new(ms(10), hours(24));
        /// Count a response that came later than this after its intended send time as failed
        /// (answered_late).
        #[arg(long, value_name = "DUR")]
        max_late: String => Duration = none, Span::new(ms(1), hours(1));
        /// Judge the run even if requests failed during warmup (otherwise exit 4, no step runs).
        #[arg(long, num_args = 0, default_missing_value = "true")]
        allow_warmup_errors: bool => bool = "false", Switch;
        /// After the last step, every successful response must come from this version.
        #[arg(long, value_name = "V")]
        expect_version: String => String = none, Label;
        /// Most ungraceful disconnects of the scenario's [[stream]] probes allowed (reset, closed
        /// without a close frame, timeout, refused reconnect ...).
        #[arg(long, value_name = "N", allow_negative_numbers = true)]
        max_ungraceful_disconnects: i64 => u64 = ("0, with [[stream]] probes"), Count::new(0, i64::MAX as u64);
        /// Longest time a [[stream]] probe's connection may go without a connected stream.
        #[arg(long, value_name = "DUR")]
        max_stream_gap: String => Duration = none, Span::new(Duration::ZERO, hours(24));
    }
}

options! {
    /// `[[stream]]`: a long-lived probe held beside the load (scenario files only; see
    /// [`super::streams`]).
    pub struct StreamOptions in "stream" {
        /// Its name in the reports (default: its URL).
        #[arg(skip)]
        name: String => String = none, Label;
        /// `ws://` or `wss://` (a WebSocket), or `http(s)://` with `kind = "sse"` or `"grpc"`.
        #[arg(skip)]
        url: String => StreamUrl = none, StreamUrlCheck;
        /// `websocket`, `sse` or `grpc`.
        #[arg(skip)]
        kind: String => StreamKind = ("websocket for ws(s)://; sse or grpc must be given"), StreamKinds;
        /// gRPC: the server-streaming method held (`kind = "grpc"` only).
        #[arg(skip)]
        method: String => String = ("grpc.health.v1.Health/Watch"), GrpcMethod;
        /// gRPC: the .proto file (or descriptor set) that declares `method`; not needed for the
        /// health watch.
        #[arg(skip)]
        proto: String => std::path::PathBuf = none, ProtoFile;
        /// gRPC: the request message, as JSON (the health watch: `{"service": "name"}`).
        #[arg(skip)]
        data: String => String = ("{}"), AnyText;
        /// Connections held at once.
        #[arg(skip)]
        count: i64 => NonZeroUsize = "1", Count::new(1, 1000);
        /// WebSocket ping (gRPC: HTTP/2 PING) interval.
        #[arg(skip)]
        interval: String => Duration = ("1s; grpc: 5m, what gRPC servers allow"), Span::new(ms(10), hours(1));
        /// A ping unanswered, or an SSE stream silent, this long is a disconnect (`timeout`).
        #[arg(skip)]
        timeout: String => Duration = "5s", Span::new(ms(10), hours(1));
    }
    lists {
        /// Extra headers of the handshake or request: `headers = { Name = "value" }`.
        #[arg(skip)]
        #[serde(deserialize_with = "header_table")]
        headers: String => (HeaderName, HeaderValue), HeaderLine, merge replace_by_name;
    }
}

options! {
    /// `[metrics]`: live Prometheus metrics and the run's state over HTTP (README, Live metrics).
    #[command(next_help_heading = "Metrics")]
    pub struct MetricsOptions in "metrics" {
        /// Serve Prometheus metrics at /metrics and the run's state as JSON at /status on this
        /// address while the run lasts: a bare port binds loopback only, host:port as given.
        #[arg(long = "metrics-listen", value_name = "ADDR")]
        listen: String => crate::metrics::Listen = none, ListenCheck;
        /// Keep serving the final values this long after the verdict, so the last scrape sees
        /// them.
        #[arg(long = "metrics-linger", value_name = "DUR")]
        linger: String => Duration = "0s", Span::new(Duration::ZERO, hours(24));
        /// Push the final values to this Prometheus Pushgateway (http://host:9091) at the end:
        /// job gapless, grouped by run id and shard.
        #[arg(long = "metrics-push", value_name = "URL")]
        push: String => crate::metrics::PushUrl = none, PushCheck;
    }
}

options! {
    /// `gapless diff`: how much worse NEW may be than BASE before the diff exits 1. Declared
    /// here like `run`'s options for their defaults and checks; no scenario file has a `[diff]`
    /// table.
    #[command(next_help_heading = "Limits")]
    pub struct DiffOptions in "diff" {
        /// Most failed requests NEW may have beyond BASE's.
        #[arg(long, value_name = "N", allow_negative_numbers = true)]
        max_failed_increase: i64 => u64 = "0", Count::new(0, i64::MAX as u64);
        /// How much longer NEW's longest availability gap may be than BASE's.
        #[arg(long, value_name = "DUR")]
        max_gap_increase: String => Duration = "0s", Span::new(Duration::ZERO, hours(24));
        /// How much higher NEW's p99 latency (from the intended send time) may be than BASE's, in percent.
        #[arg(long, value_name = "PCT", allow_negative_numbers = true)]
        max_p99_increase: String => f64 = "20", Percent;
    }
}

/// `headers = { Name = "value" }` in a scenario, as `Name: value` lines with the value's span.
fn header_table<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Given<String>>, D::Error> {
    let table = std::collections::BTreeMap::<String, Spanned<String>>::deserialize(d)?;
    Ok(table
        .into_iter()
        .map(|(name, value)| Given {
            origin: Origin::File(value.span()),
            value: format!("{name}: {}", value.into_inner()),
        })
        .collect())
}

/// The command line's headers over the file's: a header given on the command line replaces every
/// header of that name from the file.
fn replace_by_name(command: Vec<Given<String>>, file: Vec<Given<String>>) -> Vec<Given<String>> {
    let name = |h: &Given<String>| {
        h.value
            .split_once(':')
            .map(|(n, _)| n.trim().to_ascii_lowercase())
    };
    let replaced: Vec<_> = command.iter().filter_map(name).collect();
    file.into_iter()
        .filter(|h| name(h).is_none_or(|n| !replaced.contains(&n)))
        .chain(command)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "TOKEN" => Some("s3cret".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn every_default_passes_its_own_check() {
        let cx = Context::new(None, &env);
        TargetOptions::default().check_all(&cx).unwrap();
        let load = LoadOptions::default();
        assert_eq!(load.qps(&cx).unwrap().value.qps(), Some(100.0));
        assert_eq!(load.connections(&cx).unwrap().value.get(), 16);
        assert_eq!(load.duration(&cx).unwrap().source, Source::Default);
        assert_eq!(load.max_connect_rate(&cx).unwrap(), None);
        let verdict = VerdictOptions::default();
        assert_eq!(
            verdict.max_gap(&cx).unwrap(),
            None,
            "0s unless relaxed: see VerdictConfig"
        );
        // Every declared default is a value its own check accepts.
        let t = TargetOptions::default();
        assert_eq!(t.method(&cx).unwrap().value, Method::GET);
        assert_eq!(t.timeout(&cx).unwrap().value, Duration::from_secs(3));
        assert!(!t.http2(&cx).unwrap().value);
    }

    #[test]
    fn diff_limits_default_and_check_like_run_options() {
        let cx = Context::new(None, &env);
        let d = DiffOptions::default();
        assert_eq!(d.max_failed_increase(&cx).unwrap().value, 0);
        assert_eq!(d.max_gap_increase(&cx).unwrap().value, Duration::ZERO);
        let p99 = d.max_p99_increase(&cx).unwrap();
        assert_eq!((p99.value, p99.source), (20.0, Source::Default));
        let given = |text: &str| DiffOptions {
            max_p99_increase: Some(Given::command(text.to_string())),
            ..DiffOptions::default()
        };
        for (text, value) in [("25", 25.0), ("25%", 25.0), (" 7.5 % ", 7.5), ("0", 0.0)] {
            let p = given(text).max_p99_increase(&cx).unwrap();
            assert_eq!(p.value, value, "{text}");
            assert_eq!(p.source, Source::Flag("--max-p99-increase".into()));
        }
        for (text, says) in [
            ("-1", "--max-p99-increase must be 0 or more (got -1)"),
            (
                "lots",
                "--max-p99-increase: \"lots\" is not a percentage such as \"20\" or \"20%\"",
            ),
            (
                "2000000%",
                "--max-p99-increase must be at most 1000000 (got 2000000%)",
            ),
            ("NaN", "--max-p99-increase must be 0 or more (got NaN)"),
        ] {
            let err = given(text).max_p99_increase(&cx).unwrap_err();
            assert_eq!(err.to_string(), says);
        }
        let specs = DiffOptions::specs();
        let gap = specs.iter().find(|s| s.id == "max_gap_increase").unwrap();
        assert_eq!(
            (gap.default, gap.range.as_deref()),
            (Some("0s"), Some("0s to 1day"))
        );
    }

    #[test]
    fn specs_carry_defaults_and_ranges() {
        let load = LoadOptions::specs();
        let qps = load.iter().find(|s| s.id == "qps").unwrap();
        assert_eq!(qps.key.as_deref(), Some("load.qps"));
        assert_eq!(qps.default, Some("100"));
        assert_eq!(
            qps.range.as_deref(),
            Some("0 (closed loop), or 0.001 to 1000000000")
        );
        let c = load.iter().find(|s| s.id == "connections").unwrap();
        assert_eq!(c.range.as_deref(), Some("1 to 10000"));
    }

    #[test]
    fn the_command_line_replaces_file_headers_by_name() {
        let file = vec![
            Given {
                value: "X-A: file".to_string(),
                origin: Origin::File(0..1),
            },
            Given {
                value: "X-B: file".to_string(),
                origin: Origin::File(2..3),
            },
        ];
        let merged = replace_by_name(vec![Given::command("x-a: cli".to_string())], file);
        let values: Vec<&str> = merged.iter().map(|g| g.value.as_str()).collect();
        assert_eq!(values, ["X-B: file", "x-a: cli"]);
    }

    #[test]
    fn flags_are_named_as_the_user_types_them() {
        assert_eq!(LoadOptions::flag("qps"), "--qps");
        assert_eq!(LoadOptions::flag("max_connect_rate"), "--max-connect-rate");
        assert_eq!(TargetOptions::flag("headers"), "--header");
        assert_eq!(TargetOptions::flag("url"), "URL");
    }
}
