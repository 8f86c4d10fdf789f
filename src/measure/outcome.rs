//! What happened to one request: an HTTP status or a classified transport failure.
//!
//! Per-request failures are data, never `?`: every attempt the engine makes ends as exactly one
//! [`Completion`], which the recorder counts. Nothing here allocates per request: a failure's
//! [`Fault`] carries the error it came from (moved, not formatted), and only the first failure of
//! each class is put into words, as that class's sample ([`ErrorSamples`]).

use std::error::Error as StdError;
use std::fmt;
use std::io;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::measure::version::VersionId;

/// The name serde gives a unit variant (its `rename`): one table of names, for the JSON and the
/// text alike. Variants that are not unit variants have no name: `"?"`.
pub fn wire_name<T: serde::Serialize>(value: &T) -> &'static str {
    serde_variant::to_variant_name(value).unwrap_or("?")
}

/// A transport failure class. Every failure that is not an HTTP status lands in exactly one class.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum ErrorClass {
    /// The TCP connect was actively refused (nothing listening, or a RST to the SYN).
    ConnectRefused,
    /// The TCP connect (or TLS handshake) did not finish before the request's deadline.
    ConnectTimeout,
    /// The host name could not be resolved.
    Dns,
    /// The TLS handshake failed (certificate, protocol or ALPN).
    Tls,
    /// The connection was reset (RST) or the socket broke while the request was in flight.
    Reset,
    /// The peer closed the connection before a complete response arrived.
    ClosedBeforeResponse,
    /// No complete response before the deadline (the request was sent).
    Timeout,
    /// The peer answered with bytes that are not valid HTTP.
    Protocol,
    /// Anything else; should stay at zero.
    Other,
    /// Never sent: no connection was free in time for the request to make its deadline (its
    /// deadline passed in the backlog, or the time left was shorter than the connection's recent
    /// service time, or the connect-rate ceiling would not allow a connection before it). A
    /// failure, but not one of the target's: it carries no evidence about the target and is on
    /// no connection (see [`crate::measure::gaps`] and the README's "Bounded backlog").
    NotSent,
    /// A response that came later than `--max-late` after its intended send time: answered, but
    /// too late to count as kept (only with `--max-late`).
    AnsweredLate,
}

impl ErrorClass {
    /// Every class, in report order.
    pub const ALL: [ErrorClass; 11] = [
        ErrorClass::ConnectRefused,
        ErrorClass::ConnectTimeout,
        ErrorClass::Dns,
        ErrorClass::Tls,
        ErrorClass::Reset,
        ErrorClass::ClosedBeforeResponse,
        ErrorClass::Timeout,
        ErrorClass::Protocol,
        ErrorClass::Other,
        ErrorClass::NotSent,
        ErrorClass::AnsweredLate,
    ];

    /// Number of classes, for fixed-size counter arrays.
    pub const COUNT: usize = Self::ALL.len();

    /// The stable snake_case name used in reports and JSON (serde's).
    pub fn as_str(self) -> &'static str {
        wire_name(&self)
    }

    /// Parses a name produced by [`ErrorClass::as_str`].
    pub fn from_name(name: &str) -> Option<ErrorClass> {
        use serde::de::IntoDeserializer;
        let name: serde::de::value::StrDeserializer<'_, serde::de::value::Error> =
            name.into_deserializer();
        serde::Deserialize::deserialize(name).ok()
    }

    /// True when the target said something (refused, reset, closed, bytes that are not HTTP, a
    /// TLS alert); false when gapless's own clock ran out (a timeout) or nothing reached the
    /// target (not sent, no address, another failure). See [`crate::measure::stalls`].
    pub fn is_answer(self) -> bool {
        matches!(
            self,
            ErrorClass::ConnectRefused
                | ErrorClass::Reset
                | ErrorClass::ClosedBeforeResponse
                | ErrorClass::Protocol
                | ErrorClass::Tls
                | ErrorClass::AnsweredLate
        )
    }

    /// Position in [`ErrorClass::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }

    /// Classifies a failed TCP connect.
    pub fn from_connect_error(err: &io::Error) -> ErrorClass {
        match err.kind() {
            io::ErrorKind::ConnectionRefused => ErrorClass::ConnectRefused,
            io::ErrorKind::TimedOut => ErrorClass::ConnectTimeout,
            _ => Self::from_io_kind(err.kind()).unwrap_or(ErrorClass::Other),
        }
    }

    /// Classifies a failed TLS handshake: socket-level trouble keeps its own class, the rest is `tls`.
    pub fn from_tls_error(err: &io::Error) -> ErrorClass {
        Self::from_io_kind(err.kind()).unwrap_or(ErrorClass::Tls)
    }

    /// Classifies an error from hyper (sending the request or reading the response).
    pub fn from_hyper_error(err: &hyper::Error) -> ErrorClass {
        if let Some(class) = io_cause(err).and_then(|io| Self::from_io_kind(io.kind())) {
            return class;
        }
        if err.is_parse() || err.is_parse_status() || err.is_parse_too_large() {
            ErrorClass::Protocol
        } else if err.is_incomplete_message() || err.is_canceled() || err.is_closed() {
            ErrorClass::ClosedBeforeResponse
        } else if err.is_timeout() {
            ErrorClass::Timeout
        } else if is_h2_reset(err) {
            ErrorClass::Reset
        } else if err.source().is_some() && !err.is_user() {
            // h2 framing errors and friends: the peer spoke something that is not valid HTTP/2.
            ErrorClass::Protocol
        } else {
            ErrorClass::Other
        }
    }

    /// Classifies an error from `h2` (HTTP/2) as [`ErrorClass::from_hyper_error`] classified it
    /// when it came through hyper: an OS error by its kind, a `RST_STREAM` or `GOAWAY` the peer
    /// sent as `reset`, a misuse of the API (no reason, no OS error) as `other`, and anything else
    /// (h2's own refusals of what the peer sent) as `protocol`.
    pub fn from_h2_error(err: &h2::Error) -> ErrorClass {
        if let Some(io) = err.get_io() {
            return Self::from_io_kind(io.kind()).unwrap_or(ErrorClass::Protocol);
        }
        if err.is_remote() {
            ErrorClass::Reset
        } else if err.reason().is_none() {
            ErrorClass::Other
        } else {
            ErrorClass::Protocol
        }
    }

    /// Classifies a failed read or write on an open connection.
    pub fn from_io_error(err: &io::Error) -> ErrorClass {
        match err.kind() {
            // Bytes that do not decode (a bad TLS record, typically).
            io::ErrorKind::InvalidData => ErrorClass::Protocol,
            // The connection broke under the request: an ICMP error ended the retransmissions,
            // the socket is no longer connected, or it took no more bytes.
            io::ErrorKind::HostUnreachable
            | io::ErrorKind::NetworkUnreachable
            | io::ErrorKind::NotConnected
            | io::ErrorKind::WriteZero => ErrorClass::Reset,
            kind => Self::from_io_kind(kind).unwrap_or(ErrorClass::Other),
        }
    }

    fn from_io_kind(kind: io::ErrorKind) -> Option<ErrorClass> {
        match kind {
            io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe => Some(ErrorClass::Reset),
            io::ErrorKind::UnexpectedEof => Some(ErrorClass::ClosedBeforeResponse),
            io::ErrorKind::TimedOut => Some(ErrorClass::Timeout),
            io::ErrorKind::ConnectionRefused => Some(ErrorClass::ConnectRefused),
            _ => None,
        }
    }
}

/// Finds the first `io::Error` in an error's source chain.
fn io_cause<'a>(err: &'a (dyn StdError + 'static)) -> Option<&'a io::Error> {
    let mut cur: Option<&(dyn StdError + 'static)> = Some(err);
    while let Some(e) = cur {
        if let Some(io) = e.downcast_ref::<io::Error>() {
            return Some(io);
        }
        cur = e.source();
    }
    None
}

/// True when hyper's error comes from an HTTP/2 `RST_STREAM` or `GOAWAY` the peer sent: an
/// `h2::Error` in its chain of causes that `is_remote`.
fn is_h2_reset(err: &hyper::Error) -> bool {
    let mut cur = err.source();
    while let Some(e) = cur {
        // A RST_STREAM or GOAWAY the peer sent (h2's own refusals are protocol errors).
        if e.downcast_ref::<h2::Error>()
            .is_some_and(h2::Error::is_remote)
        {
            return true;
        }
        cur = e.source();
    }
    false
}

/// A failed attempt as the code that saw it failing reports it: the class it is counted in, and
/// what went wrong (the OS or TLS error, hyper's error, or a sentence about the bytes), read only
/// when it is the first failure of its class.
#[derive(Debug)]
pub struct Fault {
    /// The class the failure is counted in.
    pub class: ErrorClass,
    cause: Cause,
}

/// What went wrong, kept as it came.
#[derive(Debug)]
enum Cause {
    /// A fixed sentence.
    Said(&'static str),
    /// A malformed response head.
    Head(httparse::Error),
    /// An OS error (or a TLS error, which tokio-rustls hands over as an `io::Error`).
    Io(io::Error),
    /// hyper's error.
    Hyper(hyper::Error),
    /// h2's error (HTTP/2).
    H2(h2::Error),
    /// The request's deadline passed: the request timeout.
    Deadline(Duration),
    /// Any other error (a broken gRPC answer, see [`crate::client::grpc`]).
    Boxed(Box<dyn StdError + Send + Sync>),
}

impl Fault {
    /// A failure in `class`, described by a fixed sentence.
    pub fn new(class: ErrorClass, what: &'static str) -> Fault {
        Fault {
            class,
            cause: Cause::Said(what),
        }
    }

    /// Bytes that are not valid HTTP: a `protocol` failure, and what was wrong with them.
    pub fn protocol(what: &'static str) -> Fault {
        Fault::new(ErrorClass::Protocol, what)
    }

    /// A response head `httparse` refused: a `protocol` failure.
    pub fn head(err: httparse::Error) -> Fault {
        Fault {
            class: ErrorClass::Protocol,
            cause: Cause::Head(err),
        }
    }

    /// `err`, counted in `class`.
    pub fn io_as(class: ErrorClass, err: io::Error) -> Fault {
        Fault {
            class,
            cause: Cause::Io(err),
        }
    }

    /// A failed TCP connect ([`ErrorClass::from_connect_error`]).
    pub fn connect(err: io::Error) -> Fault {
        Fault::io_as(ErrorClass::from_connect_error(&err), err)
    }

    /// A failed TLS handshake ([`ErrorClass::from_tls_error`]).
    pub fn tls(err: io::Error) -> Fault {
        Fault::io_as(ErrorClass::from_tls_error(&err), err)
    }

    /// A failed read or write on an open connection ([`ErrorClass::from_io_error`]).
    pub fn io(err: io::Error) -> Fault {
        Fault::io_as(ErrorClass::from_io_error(&err), err)
    }

    /// An error from hyper ([`ErrorClass::from_hyper_error`]).
    pub fn hyper(err: hyper::Error) -> Fault {
        Fault {
            class: ErrorClass::from_hyper_error(&err),
            cause: Cause::Hyper(err),
        }
    }

    /// An error from h2 ([`ErrorClass::from_h2_error`]).
    pub fn h2(err: h2::Error) -> Fault {
        Fault {
            class: ErrorClass::from_h2_error(&err),
            cause: Cause::H2(err),
        }
    }

    /// `err`, counted in `class`.
    pub fn boxed(class: ErrorClass, err: Box<dyn StdError + Send + Sync>) -> Fault {
        Fault {
            class,
            cause: Cause::Boxed(err),
        }
    }

    /// The deadline of an attempt (its intended time plus `timeout`) passed while it was in
    /// `class` (`connect_timeout` or `timeout`).
    pub fn deadline(class: ErrorClass, timeout: Duration) -> Fault {
        Fault {
            class,
            cause: Cause::Deadline(timeout),
        }
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.cause {
            Cause::Said(what) => f.write_str(what),
            Cause::Head(err) => write!(f, "malformed response head: {err}"),
            Cause::Io(err) => write_chain(f, err),
            Cause::Hyper(err) => write_chain(f, err),
            Cause::H2(err) => write_chain(f, err),
            Cause::Boxed(err) => write_chain(f, &**err),
            Cause::Deadline(timeout) => {
                let timeout = humantime::format_duration(*timeout);
                match self.class {
                    ErrorClass::ConnectTimeout => {
                        write!(f, "not connected within the request timeout ({timeout})")
                    }
                    _ => write!(
                        f,
                        "no complete response within the request timeout ({timeout})"
                    ),
                }
            }
        }
    }
}

/// Writes `err` and its sources, `: `-separated, skipping a source whose text is already there.
fn write_chain(f: &mut fmt::Formatter<'_>, err: &(dyn StdError + 'static)) -> fmt::Result {
    let mut said = err.to_string();
    let mut cur = err.source();
    while let Some(e) = cur {
        let text = e.to_string();
        if !said.contains(&text) {
            said.push_str(": ");
            said.push_str(&text);
        }
        cur = e.source();
    }
    f.write_str(&said)
}

/// The longest error sample kept, in characters; a longer message is cut and ends with `…`.
pub const SAMPLE_CHARS: usize = 200;

/// The first failure message of each error class, for the reports ("what did the `tls` errors
/// say?"). Bounded: one short string per class, set once and never replaced. Noting a failure of
/// a class that has its sample already costs one atomic load; nothing is formatted.
#[derive(Debug)]
pub struct ErrorSamples([OnceLock<String>; ErrorClass::COUNT]);

impl Default for ErrorSamples {
    fn default() -> ErrorSamples {
        ErrorSamples(std::array::from_fn(|_| OnceLock::new()))
    }
}

impl ErrorSamples {
    /// Keeps `what` as the sample of `class` if it has none yet (formatted only then).
    pub fn note(&self, class: ErrorClass, what: impl fmt::Display) {
        let slot = &self.0[class.index()];
        if slot.get().is_none() {
            // A race with another thread noting the same class keeps one of the two.
            let _ = slot.set(shorten(&what.to_string()));
        }
    }

    /// The sample of `class`, if one of its failures was noted.
    pub fn get(&self, class: ErrorClass) -> Option<&str> {
        self.0[class.index()].get().map(String::as_str)
    }

    /// Every class with a sample, in report order.
    pub fn iter(&self) -> impl Iterator<Item = (ErrorClass, &str)> + '_ {
        ErrorClass::ALL
            .into_iter()
            .filter_map(|class| Some((class, self.get(class)?)))
    }
}

/// One line of at most [`SAMPLE_CHARS`] characters: control characters become spaces.
fn shorten(message: &str) -> String {
    let mut chars = message
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c });
    let mut line: String = chars.by_ref().take(SAMPLE_CHARS).collect();
    if chars.next().is_some() {
        line.pop();
        line.push('…');
    }
    line
}

/// The result of one attempt: a status code, or a transport failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// A complete response with this status code (body read to the end).
    Status(u16),
    /// A transport failure.
    Failed(ErrorClass),
}

/// Whether an attempt used a connection opened for it or one reused from an earlier request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnectionUse {
    /// The connection was opened for this attempt (or the connect itself failed).
    New,
    /// A kept-alive connection that already carried earlier requests.
    Reused,
}

impl ConnectionUse {
    /// 0 for new, 1 for reused: index into two-element counters.
    pub fn index(self) -> usize {
        match self {
            ConnectionUse::New => 0,
            ConnectionUse::Reused => 1,
        }
    }
}

/// One finished attempt, as the recorder sees it.
#[derive(Clone, Copy, Debug)]
pub struct Completion {
    /// Sequence number in the schedule.
    pub seq: u64,
    /// When the schedule wanted it sent.
    pub due: Instant,
    /// When the engine started it (connect included). `None` only for a request that was never
    /// sent (the engine records those in batches, see `Recorder::record_not_sent`).
    pub sent: Option<Instant>,
    /// When it finished.
    pub done: Instant,
    /// What happened.
    pub outcome: Outcome,
    /// New or reused connection.
    pub connection: ConnectionUse,
    /// Response body bytes read (and discarded).
    pub body_bytes: u64,
    /// Which version answered (with `--version-header` / `--version-regex`).
    pub version: Option<VersionId>,
    /// A 5xx that Envoy produced itself, and which kind.
    pub envoy: Option<EnvoyReply>,
}

/// A failed response Envoy produced itself (`server: envoy`, or one of its own bodies).
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub enum EnvoyReply {
    /// `no healthy upstream`: the route points at a destination without ready endpoints.
    #[serde(rename = "envoy_no_healthy_upstream")]
    NoHealthyUpstream,
    /// `upstream connect error ...`: the endpoint it picked did not accept the connection.
    #[serde(rename = "envoy_upstream_connect_error")]
    ConnectFailure,
    /// Any other 5xx with `server: envoy`.
    #[serde(rename = "envoy_other")]
    Other,
}

impl fmt::Display for ErrorClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for EnvoyReply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl EnvoyReply {
    /// Every kind, in report order.
    pub const ALL: [EnvoyReply; 3] = [
        EnvoyReply::NoHealthyUpstream,
        EnvoyReply::ConnectFailure,
        EnvoyReply::Other,
    ];

    /// The stable name used in reports (serde's).
    pub fn as_str(self) -> &'static str {
        wire_name(&self)
    }

    /// Position in [`EnvoyReply::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }

    /// True if a `server` header value names Envoy.
    pub fn is_envoy_server(server: &[u8]) -> bool {
        server
            .windows(b"envoy".len())
            .any(|w| w.eq_ignore_ascii_case(b"envoy"))
    }

    /// Recognises Envoy's own 5xx from whether its `server` header names Envoy
    /// ([`EnvoyReply::is_envoy_server`]) and the start of its body.
    pub fn recognise(envoy_server: bool, body_prefix: &[u8]) -> Option<EnvoyReply> {
        let has = |needle: &[u8]| body_prefix.windows(needle.len()).any(|w| w == needle);
        if has(b"no healthy upstream") {
            Some(EnvoyReply::NoHealthyUpstream)
        } else if has(b"upstream connect error") {
            Some(EnvoyReply::ConnectFailure)
        } else if envoy_server {
            Some(EnvoyReply::Other)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn h2_errors_are_classified_as_they_were_through_hyper() {
        // A reason h2 raised itself (not a frame from the peer): what the peer sent was not
        // valid HTTP/2.
        let own = h2::Error::from(h2::Reason::PROTOCOL_ERROR);
        assert_eq!(ErrorClass::from_h2_error(&own), ErrorClass::Protocol);
        assert_eq!(Fault::h2(own).class, ErrorClass::Protocol);
        // (A RST_STREAM from the peer is `reset`: tests/it/protocols.rs, with a real server.)
    }

    #[test]
    fn names_round_trip() {
        for class in ErrorClass::ALL {
            assert_eq!(ErrorClass::from_name(class.as_str()), Some(class));
            assert_eq!(ErrorClass::ALL[class.index()], class);
        }
        assert_eq!(ErrorClass::from_name("nope"), None);
    }

    #[test]
    fn each_class_keeps_its_first_message_only() {
        let samples = ErrorSamples::default();
        assert_eq!(samples.iter().count(), 0);
        let refused = Fault::connect(io::Error::from_raw_os_error(111));
        assert_eq!(refused.class, ErrorClass::ConnectRefused);
        samples.note(refused.class, &refused);
        samples.note(ErrorClass::ConnectRefused, "a later one");
        samples.note(
            ErrorClass::Protocol,
            Fault::protocol("chunk size too large"),
        );
        assert_eq!(
            samples.iter().collect::<Vec<_>>(),
            [
                (
                    ErrorClass::ConnectRefused,
                    "Connection refused (os error 111)"
                ),
                (ErrorClass::Protocol, "chunk size too large"),
            ]
        );
        assert_eq!(samples.get(ErrorClass::Tls), None);
    }

    #[test]
    fn a_sample_is_one_short_line() {
        let samples = ErrorSamples::default();
        samples.note(
            ErrorClass::Other,
            format!("line one\nline two {}", "é".repeat(300)),
        );
        let sample = samples.get(ErrorClass::Other).unwrap();
        assert_eq!(sample.chars().count(), SAMPLE_CHARS);
        assert!(sample.starts_with("line one line two éé"), "{sample}");
        assert!(sample.ends_with("é…"), "{sample}");
        assert_eq!(shorten("short"), "short");
        assert_eq!(shorten(&"x".repeat(SAMPLE_CHARS)), "x".repeat(SAMPLE_CHARS));
    }

    #[test]
    fn a_fault_says_what_went_wrong() {
        let timeout = Duration::from_millis(300);
        let cases = [
            (
                Fault::deadline(ErrorClass::ConnectTimeout, timeout),
                "not connected within the request timeout (300ms)",
            ),
            (
                Fault::deadline(ErrorClass::Timeout, timeout),
                "no complete response within the request timeout (300ms)",
            ),
            (
                Fault::head(httparse::Error::Token),
                "malformed response head: invalid token",
            ),
            (
                Fault::head(httparse::Error::TooManyHeaders),
                "malformed response head: too many headers",
            ),
            (
                Fault::tls(io::Error::new(
                    io::ErrorKind::InvalidData,
                    rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer),
                )),
                "invalid peer certificate: UnknownIssuer",
            ),
        ];
        for (fault, said) in cases {
            assert_eq!(fault.to_string(), said);
        }
    }

    #[test]
    fn connect_errors_are_classified() {
        let refused = io::Error::from(io::ErrorKind::ConnectionRefused);
        assert_eq!(
            ErrorClass::from_connect_error(&refused),
            ErrorClass::ConnectRefused
        );
        let timed_out = io::Error::from(io::ErrorKind::TimedOut);
        assert_eq!(
            ErrorClass::from_connect_error(&timed_out),
            ErrorClass::ConnectTimeout
        );
        let bad_cert = io::Error::new(io::ErrorKind::InvalidData, "invalid peer certificate");
        assert_eq!(ErrorClass::from_tls_error(&bad_cert), ErrorClass::Tls);
        let reset = io::Error::from(io::ErrorKind::ConnectionReset);
        assert_eq!(ErrorClass::from_tls_error(&reset), ErrorClass::Reset);
    }
}
