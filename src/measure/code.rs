//! Response codes: an HTTP status, or a gRPC status or health answer, in one number space.
//!
//! Every answer a request gets is one `u16` code ([`crate::measure::outcome::Outcome::Status`]),
//! counted in the same tables (result `codes`, timeline slots, windows, `--ok-codes`):
//!
//! - `100..=999`: an HTTP status, shown as its number (`503`);
//! - `0..=16`: a gRPC status (`grpc-status`), shown by its name (`OK`, `UNAVAILABLE`, ...);
//! - `20..=23`: the answer of a gRPC health check (`grpc.health.v1.Health/Check` returned OK
//!   with this `ServingStatus`), shown as `HEALTH_UNKNOWN`, `SERVING`, `NOT_SERVING`,
//!   `SERVICE_UNKNOWN`.
//!
//! HTTP statuses start at 100, so the spaces never meet. This module is the one table of names:
//! the reports and the JSON show a code through [`Shown`], and read one back (or from
//! `--ok-codes`) with [`parse`]. In the JSON, code maps are keyed by the shown text
//! (`{"200": 3, "UNAVAILABLE": 2}`, see [`map`]).

use std::fmt;

/// gRPC status names, by `grpc-status` value (gRPC's `statuscodes.md`).
const GRPC: [&str; 17] = [
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
];

/// Health answers, by `ServingStatus` value (`grpc/health/v1/health.proto`); gRPC's own
/// `UNKNOWN` already names a status, so the health one is `HEALTH_UNKNOWN`.
const HEALTH: [&str; 4] = [
    "HEALTH_UNKNOWN",
    "SERVING",
    "NOT_SERVING",
    "SERVICE_UNKNOWN",
];

/// The first health code: `ServingStatus` `s` is code `HEALTH_BASE + s`.
const HEALTH_BASE: u16 = 20;

/// The code of gRPC status `OK`.
pub const GRPC_OK: u16 = 0;

/// The code of the health answer `SERVING`.
pub const SERVING: u16 = HEALTH_BASE + 1;

/// The code of a gRPC status (`grpc-status` value); a value gRPC does not define is `UNKNOWN`.
pub fn grpc(status: i32) -> u16 {
    match u16::try_from(status) {
        Ok(s) if usize::from(s) < GRPC.len() => s,
        _ => 2,
    }
}

/// The code of a health answer (`ServingStatus` value); one the protocol does not define is
/// `HEALTH_UNKNOWN`.
pub fn health(serving_status: i32) -> u16 {
    match u16::try_from(serving_status) {
        Ok(s) if usize::from(s) < HEALTH.len() => HEALTH_BASE + s,
        _ => HEALTH_BASE,
    }
}

/// The name of a gRPC or health code; `None` for an HTTP status (and unused numbers).
pub fn name(code: u16) -> Option<&'static str> {
    let i = usize::from(code);
    if i < GRPC.len() {
        return Some(GRPC[i]);
    }
    let h = usize::from(code.checked_sub(HEALTH_BASE)?);
    HEALTH.get(h).copied()
}

/// A code as the reports show it: its name, or the HTTP status number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shown(pub u16);

impl fmt::Display for Shown {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match name(self.0) {
            Some(name) => f.write_str(name),
            None => write!(f, "{}", self.0),
        }
    }
}

/// A code from its shown text: a name (any case), or an HTTP status 100 to 999.
pub fn parse(text: &str) -> Option<u16> {
    let text = text.trim();
    if let Ok(n) = text.parse::<u16>() {
        return (100..=999).contains(&n).then_some(n);
    }
    (0..HEALTH_BASE + HEALTH.len() as u16)
        .find(|&c| name(c).is_some_and(|n| n.eq_ignore_ascii_case(text)))
}

/// `#[serde(with = "crate::measure::code::map")]` for a map of counts per code: keyed by the
/// shown text, read back with [`parse`].
pub mod map {
    use std::collections::BTreeMap;

    use serde::de::Error as _;
    use serde::{Deserialize, Deserializer, Serializer};

    /// Writes the map keyed by each code's shown text.
    pub fn serialize<S: Serializer, V: serde::Serialize>(
        codes: &BTreeMap<u16, V>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.collect_map(codes.iter().map(|(&c, n)| (super::Shown(c).to_string(), n)))
    }

    /// Reads a map written by [`serialize`].
    pub fn deserialize<'de, D: Deserializer<'de>, V: Deserialize<'de>>(
        d: D,
    ) -> Result<BTreeMap<u16, V>, D::Error> {
        BTreeMap::<String, V>::deserialize(d)?
            .into_iter()
            .map(|(k, n)| {
                super::parse(&k)
                    .map(|c| (c, n))
                    .ok_or_else(|| D::Error::custom(format!("{k:?} is not a response code")))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_http_stays_numeric() {
        for code in (0..17).chain(20..24).chain([100, 200, 503, 999]) {
            assert_eq!(parse(&Shown(code).to_string()), Some(code), "{code}");
        }
        assert_eq!(Shown(14).to_string(), "UNAVAILABLE");
        assert_eq!(Shown(grpc(14)).to_string(), "UNAVAILABLE");
        assert_eq!(Shown(health(2)).to_string(), "NOT_SERVING");
        assert_eq!(Shown(health(3)).to_string(), "SERVICE_UNKNOWN");
        assert_eq!(Shown(SERVING).to_string(), "SERVING");
        assert_eq!(Shown(503).to_string(), "503");
        assert_eq!(grpc(99), 2, "undefined: UNKNOWN");
        assert_eq!(health(-1), 20);
        assert_eq!(parse("unavailable"), Some(14));
        assert_eq!(
            (parse("18"), parse("42"), parse("NOPE")),
            (None, None, None)
        );
    }

    #[test]
    fn maps_are_keyed_by_the_shown_code() {
        #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
        struct T {
            #[serde(with = "map")]
            codes: std::collections::BTreeMap<u16, u64>,
        }
        let t = T {
            codes: [(200, 3), (14, 2), (22, 1)].into(),
        };
        let json = serde_json::to_string(&t).unwrap();
        assert_eq!(
            json,
            r#"{"codes":{"UNAVAILABLE":2,"NOT_SERVING":1,"200":3}}"#
        );
        assert_eq!(serde_json::from_str::<T>(&json).unwrap(), t);
        assert!(serde_json::from_str::<T>(r#"{"codes":{"x":1}}"#).is_err());
    }
}
