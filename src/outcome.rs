//! What happened to one request: an HTTP status or a classified transport failure.
//!
//! Per-request failures are data, never `?`: every attempt the engine makes ends as exactly one
//! [`Completion`], which the recorder counts. Nothing here allocates.

use std::error::Error as StdError;
use std::io;
use std::time::Instant;

use crate::version::VersionId;

/// A transport failure class. Every failure that is not an HTTP status lands in exactly one class.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
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
    /// no connection (see [`crate::gaps`] and the README's "Bounded backlog").
    NotSent,
}

impl ErrorClass {
    /// Every class, in report order.
    pub const ALL: [ErrorClass; 10] = [
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
    ];

    /// Number of classes, for fixed-size counter arrays.
    pub const COUNT: usize = Self::ALL.len();

    /// The stable snake_case name used in reports and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorClass::ConnectRefused => "connect_refused",
            ErrorClass::ConnectTimeout => "connect_timeout",
            ErrorClass::Dns => "dns",
            ErrorClass::Tls => "tls",
            ErrorClass::Reset => "reset",
            ErrorClass::ClosedBeforeResponse => "closed_before_response",
            ErrorClass::Timeout => "timeout",
            ErrorClass::Protocol => "protocol",
            ErrorClass::Other => "other",
            ErrorClass::NotSent => "not_sent",
        }
    }

    /// Parses a name produced by [`ErrorClass::as_str`].
    pub fn from_name(name: &str) -> Option<ErrorClass> {
        Self::ALL.into_iter().find(|c| c.as_str() == name)
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

/// HTTP/2 stream resets and GOAWAYs are reported by h2 with these words in their display text;
/// hyper does not expose h2's error type, so this is the one place that reads a message.
fn is_h2_reset(err: &hyper::Error) -> bool {
    let mut cur = err.source();
    while let Some(e) = cur {
        let text = e.to_string();
        if text.contains("stream error received") || text.contains("connection error received") {
            return true;
        }
        cur = e.source();
    }
    false
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
    /// sent (the engine records those in batches, see [`crate::schedule::Batch`]).
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
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EnvoyReply {
    /// `no healthy upstream`: the route points at a destination without ready endpoints.
    NoHealthyUpstream,
    /// `upstream connect error ...`: the endpoint it picked did not accept the connection.
    ConnectFailure,
    /// Any other 5xx with `server: envoy`.
    Other,
}

impl EnvoyReply {
    /// Every kind, in report order.
    pub const ALL: [EnvoyReply; 3] = [
        EnvoyReply::NoHealthyUpstream,
        EnvoyReply::ConnectFailure,
        EnvoyReply::Other,
    ];

    /// The stable name used in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            EnvoyReply::NoHealthyUpstream => "envoy_no_healthy_upstream",
            EnvoyReply::ConnectFailure => "envoy_upstream_connect_error",
            EnvoyReply::Other => "envoy_other",
        }
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
    fn names_round_trip() {
        for class in ErrorClass::ALL {
            assert_eq!(ErrorClass::from_name(class.as_str()), Some(class));
            assert_eq!(ErrorClass::ALL[class.index()], class);
        }
        assert_eq!(ErrorClass::from_name("nope"), None);
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
