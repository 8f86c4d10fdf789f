//! The values of the options, and their checks.
//!
//! A raw value ([`Given`]) knows where it was written ([`Origin`]: the command line, or a span of
//! the scenario file). A [`Check`] turns it into the typed value the configuration holds, or into
//! one sentence of error ([`Error`]) that names the flag, or the file, line, column and key; it
//! also describes the values it accepts for `--help` and README. What a check needs beyond the
//! value is its [`Context`]: the scenario file (positions, relative paths) and the environment
//! (`${VAR}` in the file's strings, expanded by [`expand`]).

use std::cell::RefCell;
use std::fmt;
use std::marker::PhantomData;
use std::num::{NonZeroU32, NonZeroUsize};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use bytes::Bytes;
use http::Method;
use http::header::{self, HeaderName, HeaderValue};
use rustls::pki_types::CertificateDer;
use serde::{Deserialize, Deserializer};
use toml::Spanned;

use crate::config::{OkCodes, Rate, Source, StreamKind, StreamUrl, TargetUrl};
use crate::targets::demo::DemoSpec;

/// Errors in option values, each one sentence that names the flag, or the file, line, column and
/// key.
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    /// A value given on the command line.
    #[error("{}", flag_sentence(flag, message))]
    Flag {
        /// The flag, such as `--qps`, or `URL`.
        flag: String,
        /// What is wrong.
        message: String,
    },
    /// A value given on the command line that names something unusable (a file).
    #[error("{flag} {value}: {problem}")]
    FlagValue {
        /// The flag, such as `--cacert`.
        flag: String,
        /// The value, such as the file's path.
        value: String,
        /// What is wrong with what it names.
        problem: String,
    },
    /// A value in the scenario file.
    #[error("{path}:{line}:{column}: {key}: {message}")]
    At {
        /// The file, as given.
        path: String,
        /// 1-based line.
        line: usize,
        /// 1-based column (in characters).
        column: usize,
        /// The key, such as `load.qps` or `step[2].run`.
        key: String,
        /// What is wrong.
        message: String,
    },
}

/// `--connections must be at least 1`, or `--timeout: "soon" is not a duration ...`; a
/// positional argument's message names its value itself.
fn flag_sentence(flag: &str, message: &str) -> String {
    if !flag.starts_with('-') {
        message.to_string()
    } else if message.starts_with("must ") {
        format!("{flag} {message}")
    } else {
        format!("{flag}: {message}")
    }
}

/// Where a raw value was written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    /// On the command line.
    Command,
    /// In the scenario file, at this byte span.
    File(Range<usize>),
}

/// A raw value as the user wrote it, and where.
#[derive(Clone, Debug, PartialEq)]
pub struct Given<T> {
    /// The value.
    pub value: T,
    /// Where it was written.
    pub origin: Origin,
}

impl<T> Given<T> {
    /// A value written on the command line.
    pub fn command(value: T) -> Given<T> {
        Given {
            value,
            origin: Origin::Command,
        }
    }
}

/// clap parses a flag's value into `Given` with [`Origin::Command`].
impl<T: FromStr> FromStr for Given<T> {
    type Err = T::Err;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        T::from_str(s).map(Given::command)
    }
}

/// serde reads a scenario value into `Given` with its span ([`Origin::File`]).
impl<'de, T: Deserialize<'de>> Deserialize<'de> for Given<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let spanned = Spanned::<T>::deserialize(deserializer)?;
        Ok(Given {
            origin: Origin::File(spanned.span()),
            value: spanned.into_inner(),
        })
    }
}

/// The scenario file a value may come from.
#[derive(Clone, Copy, Debug)]
pub struct ScenarioText<'a> {
    /// The file, as given.
    pub path: &'a Path,
    /// Its text.
    pub source: &'a str,
}

/// Looks up `${VAR}` in a scenario.
pub type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

/// What checking a value needs beyond the value: the scenario file (for positions and relative
/// paths) and the environment (for `${VAR}`); it remembers which variables were expanded, so their
/// values can be kept out of the reports.
pub struct Context<'a> {
    file: Option<ScenarioText<'a>>,
    env: Env<'a>,
    expanded: RefCell<Vec<(String, String)>>,
}

impl fmt::Debug for Context<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Context")
            .field("file", &self.file)
            .finish_non_exhaustive()
    }
}

impl<'a> Context<'a> {
    /// A context for values from the command line and, if given, the scenario `file`; `env`
    /// expands `${VAR}` in the file's strings.
    pub fn new(file: Option<ScenarioText<'a>>, env: Env<'a>) -> Context<'a> {
        Context {
            file,
            env,
            expanded: RefCell::new(Vec::new()),
        }
    }

    /// Every `${VAR}` expanded so far, with its value, in order.
    pub fn expanded(&self) -> Vec<(String, String)> {
        self.expanded.borrow().clone()
    }

    /// The directory relative paths in the scenario are relative to.
    pub fn base(&self) -> &Path {
        self.file
            .and_then(|f| f.path.parent())
            .unwrap_or(Path::new(""))
    }

    /// A path as written at `origin`: relative to the scenario's directory for a file value.
    pub fn path(&self, written: &str, origin: &Origin) -> PathBuf {
        match origin {
            Origin::Command => PathBuf::from(written),
            Origin::File(_) => self.base().join(written),
        }
    }

    /// `text` with `${VAR}` expanded, for a value from the file (the shell expanded the command
    /// line's already). The error is a sentence naming the variable.
    pub fn expand(&self, text: &str, origin: &Origin) -> Result<String, String> {
        match origin {
            Origin::Command => Ok(text.to_string()),
            Origin::File(_) => expand(text, &|name| {
                let value = (self.env)(name);
                if let Some(v) = &value {
                    self.expanded
                        .borrow_mut()
                        .push((name.to_string(), v.clone()));
                }
                value
            }),
        }
    }

    /// An error at byte `span` of the scenario file, about `key`.
    pub fn error_at(&self, span: Range<usize>, key: &str, message: impl Into<String>) -> Error {
        let (path, (line, column)) = match self.file {
            Some(f) => (f.path.display().to_string(), position(f.source, span.start)),
            None => (String::new(), (1, 1)),
        };
        Error::At {
            path,
            line,
            column,
            key: key.to_string(),
            message: message.into(),
        }
    }
}

/// Where a value being checked was written: enough to name it in an error.
#[derive(Clone, Copy, Debug)]
pub struct Place<'a> {
    /// The flag, such as `--qps` (or `URL` for the positional argument).
    pub flag: &'a str,
    /// The scenario key, such as `load.qps`.
    pub key: &'a str,
    /// Where it was written.
    pub origin: &'a Origin,
}

impl Place<'_> {
    /// The error `message` about this value.
    pub fn error(&self, cx: &Context, message: impl Into<String>) -> Error {
        match self.origin {
            Origin::Command => Error::Flag {
                flag: self.flag.to_string(),
                message: message.into(),
            },
            Origin::File(span) => cx.error_at(span.clone(), self.key, message),
        }
    }

    /// The error "`value`: `problem`" about what this value names (`--cacert ca.pem: holds no
    /// PEM certificate`).
    pub fn error_about(&self, cx: &Context, value: &str, problem: impl Into<String>) -> Error {
        match self.origin {
            Origin::Command => Error::FlagValue {
                flag: self.flag.to_string(),
                value: value.to_string(),
                problem: problem.into(),
            },
            Origin::File(span) => cx.error_at(
                span.clone(),
                self.key,
                format!("{value}: {}", problem.into()),
            ),
        }
    }

    /// Who set the value.
    pub fn source(&self) -> Source {
        match self.origin {
            Origin::Command => Source::Flag(self.flag.to_string()),
            Origin::File(_) => Source::Key(self.key.to_string()),
        }
    }
}

/// Turns a raw value into a typed one: the range or parser of an option.
pub trait Check {
    /// What the command line and the file give.
    type Raw;
    /// What the configuration holds.
    type Out;

    /// The typed value, or an error naming `place`.
    fn check(&self, raw: &Self::Raw, place: &Place, cx: &Context) -> Result<Self::Out, Error>;

    /// The accepted values, for `--help` and README; `None` when any value of the type is.
    fn range(&self) -> Option<String>;
}

/// Smallest paced rate: one request in about 17 minutes. Below it, a run would send nothing.
pub const MIN_QPS: f64 = 0.001;
/// Largest rate accepted. One engine thread carries about 150,000 requests per second here; a
/// plan above what the engine and the connections can carry is warned about before the load.
pub const MAX_QPS: f64 = 1e9;
/// `[target] demo = { ... }`: the embedded demo cluster, each field optional.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct DemoTable {
    pub replicas: Option<Spanned<i64>>,
    pub version: Option<Spanned<String>>,
    pub startup: Option<Spanned<String>>,
    pub latency: Option<Spanned<String>>,
    pub propagation: Option<Spanned<String>>,
    pub route_propagation: Option<Spanned<String>>,
    pub prestop: Option<Spanned<String>>,
    pub readiness: Option<bool>,
    pub grace: Option<Spanned<String>>,
    pub listen: Option<Spanned<String>>,
}

/// Never written on the command line (`#[arg(skip)]`); only here so the declaration's raw type
/// has the shape every option's has.
impl FromStr for DemoTable {
    type Err = std::convert::Infallible;

    fn from_str(_: &str) -> Result<Self, Self::Err> {
        Ok(DemoTable::default())
    }
}

/// Expands `${VAR}`, `${VAR:-default}` (the default when VAR is unset or empty) and
/// `${VAR-default}` (the default when VAR is unset); `$${` is a literal `${`. An unset variable
/// without a default is an error naming it.
pub fn expand(text: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(literal) = after.strip_prefix("${") {
            out.push_str("${");
            rest = literal;
        } else if let Some(open) = after.strip_prefix('{') {
            let close = open
                .find('}')
                .ok_or_else(|| "unclosed ${ (write $${ for a literal ${)".to_string())?;
            let inner = &open[..close];
            let (name, fallback) = match inner.find([':', '-']) {
                Some(at) if inner[at..].starts_with(":-") => {
                    (&inner[..at], Some((true, &inner[at + 2..])))
                }
                Some(at) if inner[at..].starts_with('-') => {
                    (&inner[..at], Some((false, &inner[at + 1..])))
                }
                _ => (inner, None),
            };
            let valid = !name.is_empty()
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                && !name.starts_with(|c: char| c.is_ascii_digit());
            if !valid {
                return Err(format!("${{{inner}}} is not a valid variable name"));
            }
            let value = match (env(name), fallback) {
                (Some(v), Some((true, default))) if v.is_empty() => default.to_string(),
                (Some(v), _) => v,
                (None, Some((_, default))) => default.to_string(),
                (None, None) => return Err(format!("environment variable {name} is not set")),
            };
            out.push_str(&value);
            rest = &open[close + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// 1-based line and column (in characters) of byte `offset`.
pub fn position(source: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(source.len());
    let before = source.get(..offset).unwrap_or(source);
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

/// `humantime`'s spelling of a duration: `10ms`, `1h`, `0s`.
pub fn show(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

/// A text value, with `${VAR}` expanded when it comes from the file.
pub(super) fn text(raw: &str, place: &Place, cx: &Context) -> Result<String, Error> {
    cx.expand(raw, place.origin)
        .map_err(|message| place.error(cx, message))
}

/// `-q`: 0 (a closed loop) or a rate in `[MIN_QPS, MAX_QPS]`.
#[derive(Clone, Copy, Debug)]
pub struct RateCheck;

impl Check for RateCheck {
    type Raw = f64;
    type Out = Rate;

    fn check(&self, raw: &f64, place: &Place, cx: &Context) -> Result<Rate, Error> {
        let q = *raw;
        if !q.is_finite() || q < 0.0 {
            return Err(place.error(cx, format!("must be a finite number, 0 or more (got {q})")));
        }
        if q > MAX_QPS {
            return Err(place.error(cx, format!("must be at most {MAX_QPS} (got {q})")));
        }
        if q > 0.0 && q < MIN_QPS {
            return Err(place.error(
                cx,
                format!("must be 0 (a closed loop) or at least {MIN_QPS} (got {q})"),
            ));
        }
        Rate::from_qps(q).map_err(|e| place.error(cx, e.to_string()))
    }

    fn range(&self) -> Option<String> {
        Some(format!("0 (closed loop), or {MIN_QPS} to {MAX_QPS}"))
    }
}

/// A whole number in `[min, max]`, as the type the configuration holds.
#[derive(Clone, Copy, Debug)]
pub struct Count<T> {
    min: u64,
    max: u64,
    out: PhantomData<T>,
}

impl<T> Count<T> {
    /// Numbers from `min` to `max`, both included.
    pub const fn new(min: u64, max: u64) -> Count<T> {
        Count {
            min,
            max,
            out: PhantomData,
        }
    }
}

/// The integer types counts become.
pub trait FromCount: Sized {
    /// `n`, already within the count's range (which excludes what the type cannot hold).
    fn from_count(n: u64) -> Option<Self>;
}

impl FromCount for u64 {
    fn from_count(n: u64) -> Option<u64> {
        Some(n)
    }
}

impl FromCount for NonZeroUsize {
    fn from_count(n: u64) -> Option<NonZeroUsize> {
        usize::try_from(n).ok().and_then(NonZeroUsize::new)
    }
}

impl FromCount for NonZeroU32 {
    fn from_count(n: u64) -> Option<NonZeroU32> {
        u32::try_from(n).ok().and_then(NonZeroU32::new)
    }
}

impl<T: FromCount> Check for Count<T> {
    type Raw = i64;
    type Out = T;

    fn check(&self, raw: &i64, place: &Place, cx: &Context) -> Result<T, Error> {
        let n = *raw;
        let low = u64::try_from(n).map_or(true, |n| n < self.min);
        if low {
            let message = match self.min {
                0 => format!("must be 0 or more (got {n})"),
                min => format!("must be at least {min} (got {n})"),
            };
            return Err(place.error(cx, message));
        }
        let n = n.unsigned_abs();
        if n > self.max {
            return Err(place.error(cx, format!("must be at most {} (got {n})", self.max)));
        }
        T::from_count(n).ok_or_else(|| place.error(cx, format!("cannot hold {n}")))
    }

    fn range(&self) -> Option<String> {
        Some(if self.max >= i64::MAX as u64 {
            format!("{} or more", self.min)
        } else {
            format!("{} to {}", self.min, self.max)
        })
    }
}

/// A duration such as `3s` or `1m30s`, in `[min, max]`.
#[derive(Clone, Copy, Debug)]
pub struct Span {
    min: Duration,
    max: Duration,
}

impl Span {
    /// Durations from `min` to `max`, both included.
    pub const fn new(min: Duration, max: Duration) -> Span {
        Span { min, max }
    }

    /// The shortest accepted.
    pub const fn min(&self) -> Duration {
        self.min
    }

    /// The longest accepted.
    pub const fn max(&self) -> Duration {
        self.max
    }

    /// Parses `text` (already expanded) and checks the range; the error is a sentence.
    pub fn parse(&self, text: &str) -> Result<Duration, String> {
        let d = humantime::parse_duration(text.trim())
            .map_err(|e| format!("{text:?} is not a duration such as \"3s\" or \"1m30s\" ({e})"))?;
        if d < self.min {
            return Err(format!(
                "must be at least {} (got {})",
                show(self.min),
                show(d)
            ));
        }
        if d > self.max {
            return Err(format!(
                "must be at most {} (got {})",
                show(self.max),
                show(d)
            ));
        }
        Ok(d)
    }
}

impl Check for Span {
    type Raw = String;
    type Out = Duration;

    fn check(&self, raw: &String, place: &Place, cx: &Context) -> Result<Duration, Error> {
        let text = text(raw, place, cx)?;
        self.parse(&text).map_err(|m| place.error(cx, m))
    }

    fn range(&self) -> Option<String> {
        Some(format!("{} to {}", show(self.min), show(self.max)))
    }
}

/// A share, from 0 to 1.
#[derive(Clone, Copy, Debug)]
pub struct Ratio;

impl Check for Ratio {
    type Raw = f64;
    type Out = f64;

    fn check(&self, raw: &f64, place: &Place, cx: &Context) -> Result<f64, Error> {
        if (0.0..=1.0).contains(raw) {
            Ok(*raw)
        } else {
            Err(place.error(cx, format!("must be between 0 and 1 (got {raw})")))
        }
    }

    fn range(&self) -> Option<String> {
        Some("0 to 1".to_string())
    }
}

/// Largest percentage accepted (`gapless diff --max-p99-increase`): ten thousand times as high.
pub const MAX_PERCENT: f64 = 1_000_000.0;

/// A percentage such as `20` or `20%`, from 0 to [`MAX_PERCENT`].
#[derive(Clone, Copy, Debug)]
pub struct Percent;

impl Check for Percent {
    type Raw = String;
    type Out = f64;

    fn check(&self, raw: &String, place: &Place, cx: &Context) -> Result<f64, Error> {
        let text = text(raw, place, cx)?;
        let trimmed = text.trim();
        let number = trimmed.strip_suffix('%').unwrap_or(trimmed).trim_end();
        let p: f64 = number.parse().map_err(|_| {
            place.error(
                cx,
                format!("{text:?} is not a percentage such as \"20\" or \"20%\""),
            )
        })?;
        if !p.is_finite() || p < 0.0 {
            return Err(place.error(cx, format!("must be 0 or more (got {trimmed})")));
        }
        if p > MAX_PERCENT {
            return Err(place.error(cx, format!("must be at most {MAX_PERCENT} (got {trimmed})")));
        }
        Ok(p)
    }

    fn range(&self) -> Option<String> {
        Some(format!("0% to {MAX_PERCENT}%"))
    }
}

/// A switch: on the command line a bare flag, in the file `true` or `false`.
#[derive(Clone, Copy, Debug)]
pub struct Switch;

impl Check for Switch {
    type Raw = bool;
    type Out = bool;

    fn check(&self, raw: &bool, _: &Place, _: &Context) -> Result<bool, Error> {
        Ok(*raw)
    }

    fn range(&self) -> Option<String> {
        None
    }
}

/// Any text (`${VAR}` expanded in the file), as bytes: a request body.
#[derive(Clone, Copy, Debug)]
pub struct Expanded;

impl Check for Expanded {
    type Raw = String;
    type Out = Bytes;

    fn check(&self, raw: &String, place: &Place, cx: &Context) -> Result<Bytes, Error> {
        text(raw, place, cx).map(Bytes::from)
    }

    fn range(&self) -> Option<String> {
        None
    }
}

/// A file read whole: a request body.
#[derive(Clone, Copy, Debug)]
pub struct BodyFile;

impl Check for BodyFile {
    type Raw = String;
    type Out = Bytes;

    fn check(&self, raw: &String, place: &Place, cx: &Context) -> Result<Bytes, Error> {
        let name = text(raw, place, cx)?;
        let path = cx.path(&name, place.origin);
        std::fs::read(&path).map(Bytes::from).map_err(|e| {
            place.error_about(
                cx,
                &path.display().to_string(),
                format!("cannot read it: {e}"),
            )
        })
    }

    fn range(&self) -> Option<String> {
        None
    }
}

/// A PEM bundle of certificates to trust.
#[derive(Clone, Copy, Debug)]
pub struct CaBundle;

impl Check for CaBundle {
    type Raw = String;
    type Out = Vec<CertificateDer<'static>>;

    fn check(
        &self,
        raw: &String,
        place: &Place,
        cx: &Context,
    ) -> Result<Vec<CertificateDer<'static>>, Error> {
        let name = text(raw, place, cx)?;
        let path = cx.path(&name, place.origin);
        crate::client::tls::read_ca_bundle(&path).map_err(|e| match e {
            crate::client::tls::Error::CaBundle { path, problem } => {
                place.error_about(cx, &path, problem)
            }
        })
    }

    fn range(&self) -> Option<String> {
        None
    }
}

/// An HTTP method gapless can send: any token but `CONNECT`, which opens a tunnel rather than
/// asking for a response to judge.
#[derive(Clone, Copy, Debug)]
pub struct Methods;

impl Check for Methods {
    type Raw = String;
    type Out = Method;

    fn check(&self, raw: &String, place: &Place, cx: &Context) -> Result<Method, Error> {
        let name = text(raw, place, cx)?;
        let method = Method::from_bytes(name.as_bytes())
            .map_err(|_| place.error(cx, format!("{name:?} is not a valid HTTP method")))?;
        if method == Method::CONNECT {
            return Err(place.error(
                cx,
                "CONNECT is not supported: it opens a tunnel, it does not ask for a response to judge",
            ));
        }
        Ok(method)
    }

    fn range(&self) -> Option<String> {
        Some("any method but CONNECT".to_string())
    }
}

/// Status codes and ranges, such as `200-299,304`.
#[derive(Clone, Copy, Debug)]
pub struct Codes;

impl Check for Codes {
    type Raw = String;
    type Out = OkCodes;

    fn check(&self, raw: &String, place: &Place, cx: &Context) -> Result<OkCodes, Error> {
        let list = text(raw, place, cx)?;
        list.parse().map_err(|_| {
            place.error(
                cx,
                format!(
                    "{list:?} is not a list of codes and ranges such as \"200-299,304\" (codes are 100 to 999, or gRPC names such as OK, NOT_FOUND, SERVING)"
                ),
            )
        })
    }

    fn range(&self) -> Option<String> {
        Some("codes 100 to 999, or gRPC names (OK, NOT_FOUND, SERVING, ...)".to_string())
    }
}

/// A header name.
#[derive(Clone, Copy, Debug)]
pub struct HeaderNames;

impl Check for HeaderNames {
    type Raw = String;
    type Out = HeaderName;

    fn check(&self, raw: &String, place: &Place, cx: &Context) -> Result<HeaderName, Error> {
        let name = text(raw, place, cx)?;
        HeaderName::from_bytes(name.trim().as_bytes())
            .map_err(|_| place.error(cx, format!("{name:?} is not a valid header name")))
    }

    fn range(&self) -> Option<String> {
        None
    }
}

/// A header `Name: value` the user may set: not one that frames the body.
#[derive(Clone, Copy, Debug)]
pub struct HeaderLine;

impl Check for HeaderLine {
    type Raw = String;
    type Out = (HeaderName, HeaderValue);

    fn check(
        &self,
        raw: &String,
        place: &Place,
        cx: &Context,
    ) -> Result<(HeaderName, HeaderValue), Error> {
        // In the file each header is its own key, `target.headers.NAME`.
        let key = raw
            .split_once(':')
            .map(|(n, _)| format!("{}.{}", place.key, n.trim()));
        let place = Place {
            key: key.as_deref().unwrap_or(place.key),
            ..*place
        };
        let line = text(raw, &place, cx)?;
        let bad = || match place.origin {
            Origin::Command => place.error(
                cx,
                format!("header {line:?} is not of the form 'Name: value'"),
            ),
            Origin::File(_) => place.error(
                cx,
                "is not a valid header (name, or value with control characters?)",
            ),
        };
        let (name, value) = line.split_once(':').ok_or_else(bad)?;
        let name = HeaderName::from_bytes(name.trim().as_bytes()).map_err(|_| bad())?;
        let value = HeaderValue::from_str(value.trim()).map_err(|_| bad())?;
        if name == header::CONTENT_LENGTH || name == header::TRANSFER_ENCODING {
            return Err(place.error(
                cx,
                format!(
                    "header {:?} cannot be set: gapless frames the request body itself (its length comes from --body or --body-file)",
                    name.as_str()
                ),
            ));
        }
        Ok((name, value))
    }

    fn range(&self) -> Option<String> {
        Some("not content-length or transfer-encoding".to_string())
    }
}

/// A regex whose first capture group names the version.
#[derive(Clone, Copy, Debug)]
pub struct VersionPattern;

impl Check for VersionPattern {
    type Raw = String;
    type Out = regex::bytes::Regex;

    fn check(
        &self,
        raw: &String,
        place: &Place,
        cx: &Context,
    ) -> Result<regex::bytes::Regex, Error> {
        let re = text(raw, place, cx)?;
        let bad = |why: String| place.error(cx, format!("{re:?} is not usable: {why}"));
        let regex = regex::bytes::Regex::new(&re).map_err(|e| bad(e.to_string()))?;
        if regex.captures_len() < 2 {
            return Err(bad(
                "it has no capture group: put the version in (...)".to_string()
            ));
        }
        Ok(regex)
    }

    fn range(&self) -> Option<String> {
        Some("a regex with a capture group".to_string())
    }
}

/// A version label: non-empty, usable as a header value.
#[derive(Clone, Copy, Debug)]
pub struct Label;

impl Label {
    /// `text` if it is a label, else the sentence saying what one is.
    pub fn parse(text: &str) -> Result<String, String> {
        if text.is_empty() || HeaderValue::from_str(text).is_err() {
            return Err("must be a short label such as \"v2\"".to_string());
        }
        Ok(text.to_string())
    }
}

impl Check for Label {
    type Raw = String;
    type Out = String;

    fn check(&self, raw: &String, place: &Place, cx: &Context) -> Result<String, Error> {
        let label = text(raw, place, cx)?;
        Label::parse(&label).map_err(|m| place.error(cx, m))
    }

    fn range(&self) -> Option<String> {
        None
    }
}

/// A time on the wall clock: RFC 3339 (`2026-12-03T18:00:00Z`, fractions allowed) or Unix
/// milliseconds.
#[derive(Clone, Copy, Debug)]
pub struct StartAt;

impl Check for StartAt {
    type Raw = String;
    type Out = std::time::SystemTime;

    fn check(
        &self,
        raw: &String,
        place: &Place,
        cx: &Context,
    ) -> Result<std::time::SystemTime, Error> {
        let written = text(raw, place, cx)?;
        let written = written.trim();
        if !written.is_empty() && written.chars().all(|c| c.is_ascii_digit()) {
            let ms: u64 = written
                .parse()
                .map_err(|_| place.error(cx, format!("{written:?} is too large a time")))?;
            return std::time::UNIX_EPOCH
                .checked_add(Duration::from_millis(ms))
                .ok_or_else(|| place.error(cx, format!("{written:?} is too large a time")));
        }
        humantime::parse_rfc3339_weak(written).map_err(|_| {
            place.error(
                cx,
                format!(
                    "{written:?} is not a time such as \"2026-12-03T18:00:00Z\" or Unix milliseconds"
                ),
            )
        })
    }

    fn range(&self) -> Option<String> {
        Some("RFC 3339 or Unix ms".to_string())
    }
}

/// An `http://` or `https://` URL with a host.
#[derive(Clone, Copy, Debug)]
pub struct UrlCheck;

impl Check for UrlCheck {
    type Raw = String;
    type Out = TargetUrl;

    fn check(&self, raw: &String, place: &Place, cx: &Context) -> Result<TargetUrl, Error> {
        let url = text(raw, place, cx)?;
        url.parse()
            .map_err(|e: crate::config::Error| place.error(cx, e.to_string()))
    }

    fn range(&self) -> Option<String> {
        Some("http:// or https://".to_string())
    }
}

/// `[target] demo = { ... }`: the embedded demo cluster.
#[derive(Clone, Copy, Debug)]
pub struct DemoCheck;

impl Check for DemoCheck {
    type Raw = DemoTable;
    type Out = DemoSpec;

    fn check(&self, raw: &DemoTable, place: &Place, cx: &Context) -> Result<DemoSpec, Error> {
        let key = |field: &str| format!("{}.{field}", place.key);
        let mut spec = DemoSpec::default();
        if let Some(n) = &raw.replicas {
            spec.replicas = positive(n, &key("replicas"), cx)?;
        }
        if let Some(v) = &raw.version {
            spec.version = label(v, &key("version"), cx)?;
        }
        let durations = [
            (&raw.startup, "startup", &mut spec.startup),
            (&raw.latency, "latency", &mut spec.latency),
            (&raw.propagation, "propagation", &mut spec.propagation),
            (
                &raw.route_propagation,
                "route_propagation",
                &mut spec.route_propagation,
            ),
            (&raw.prestop, "prestop", &mut spec.prestop),
            (&raw.grace, "grace", &mut spec.grace),
        ];
        for (value, field, slot) in durations {
            if let Some(v) = value {
                *slot = duration(v, &key(field), ANY_DURATION, cx)?;
            }
        }
        if let Some(r) = raw.readiness {
            spec.readiness = r;
        }
        if let Some(listen) = &raw.listen {
            let text = spanned_text(listen, &key("listen"), cx)?;
            spec.listen = text.parse().map_err(|_| {
                cx.error_at(
                    listen.span(),
                    &key("listen"),
                    format!("{text:?} is not an address such as \"127.0.0.1:8080\""),
                )
            })?;
        }
        Ok(spec)
    }

    fn range(&self) -> Option<String> {
        None
    }
}

/// Default timeout of a step.
pub const STEP_TIMEOUT: Duration = Duration::from_secs(600);

/// The range of a step's timeout (`--step-timeout`, `[[step]] timeout`).
pub const STEP_TIMEOUT_RANGE: Span =
    Span::new(Duration::from_millis(1), Duration::from_secs(24 * 3600));

/// Any duration up to a day, for the scenario's own values (demo timings, step times).
pub const ANY_DURATION: Span = Span::new(Duration::ZERO, Duration::from_secs(24 * 3600));

/// A scenario string at its span, `${VAR}` expanded; errors name `key`.
pub fn spanned_text(value: &Spanned<String>, key: &str, cx: &Context) -> Result<String, Error> {
    cx.expand(value.get_ref(), &Origin::File(value.span()))
        .map_err(|m| cx.error_at(value.span(), key, m))
}

/// A scenario duration at its span, within `range`.
pub fn duration(
    value: &Spanned<String>,
    key: &str,
    range: Span,
    cx: &Context,
) -> Result<Duration, Error> {
    let text = spanned_text(value, key, cx)?;
    range
        .parse(&text)
        .map_err(|m| cx.error_at(value.span(), key, m))
}

/// A scenario count of at least 1.
pub fn positive(value: &Spanned<i64>, key: &str, cx: &Context) -> Result<NonZeroUsize, Error> {
    usize::try_from(*value.get_ref())
        .ok()
        .and_then(NonZeroUsize::new)
        .ok_or_else(|| {
            cx.error_at(
                value.span(),
                key,
                format!("must be at least 1 (got {})", value.get_ref()),
            )
        })
}

/// A scenario version label.
pub fn label(value: &Spanned<String>, key: &str, cx: &Context) -> Result<String, Error> {
    let text = spanned_text(value, key, cx)?;
    Label::parse(&text).map_err(|m| cx.error_at(value.span(), key, m))
}

/// Any text (`${VAR}` expanded in a scenario): a health check's service name, the request JSON.
#[derive(Clone, Copy, Debug)]
pub struct AnyText;

impl Check for AnyText {
    type Raw = String;
    type Out = String;

    fn check(&self, raw: &String, place: &Place, cx: &Context) -> Result<String, Error> {
        text(raw, place, cx)
    }

    fn range(&self) -> Option<String> {
        None
    }
}

/// A gRPC method, `package.Service/Method`.
#[derive(Clone, Copy, Debug)]
pub struct GrpcMethod;

impl Check for GrpcMethod {
    type Raw = String;
    type Out = String;

    fn check(&self, raw: &String, place: &Place, cx: &Context) -> Result<String, Error> {
        let method = text(raw, place, cx)?;
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
        let name = text(raw, place, cx)?;
        Ok(cx.path(&name, place.origin))
    }

    fn range(&self) -> Option<String> {
        None
    }
}

/// A probe's URL: `ws://`, `wss://`, `http://` or `https://`.
#[derive(Clone, Copy, Debug)]
pub struct StreamUrlCheck;

impl Check for StreamUrlCheck {
    type Raw = String;
    type Out = StreamUrl;

    fn check(&self, raw: &String, place: &Place, cx: &Context) -> Result<StreamUrl, Error> {
        text(raw, place, cx)?
            .parse()
            .map_err(|m: String| place.error(cx, m))
    }

    fn range(&self) -> Option<String> {
        Some("ws://, wss://, http:// or https://".to_string())
    }
}

/// `websocket`, `sse` or `grpc`.
#[derive(Clone, Copy, Debug)]
pub struct StreamKinds;

impl Check for StreamKinds {
    type Raw = String;
    type Out = StreamKind;

    fn check(&self, raw: &String, place: &Place, cx: &Context) -> Result<StreamKind, Error> {
        text(raw, place, cx)?
            .parse()
            .map_err(|m: String| place.error(cx, m))
    }

    fn range(&self) -> Option<String> {
        Some("websocket, sse, grpc".to_string())
    }
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
    fn variables_expand_from_the_environment() {
        assert_eq!(expand("a ${TOKEN} b", &env).unwrap(), "a s3cret b");
        assert_eq!(
            expand("$HOME and $${TOKEN} and $", &env).unwrap(),
            "$HOME and ${TOKEN} and $"
        );
        assert_eq!(
            expand("${NOPE}", &env).unwrap_err(),
            "environment variable NOPE is not set"
        );
        assert!(expand("${TOKEN", &env).unwrap_err().contains("unclosed"));
        assert!(
            expand("${1A}", &env)
                .unwrap_err()
                .contains("not a valid variable name")
        );
        // Defaults, as in shells and Compose files.
        assert_eq!(expand("${NOPE:-a b}", &env).unwrap(), "a b");
        assert_eq!(expand("${NOPE-x}", &env).unwrap(), "x");
        assert_eq!(expand("${EMPTY:-x}", &env).unwrap(), "x");
        assert_eq!(expand("${EMPTY-x}", &env).unwrap(), "");
        assert_eq!(expand("${TOKEN:-x}", &env).unwrap(), "s3cret");
        assert_eq!(expand("${NOPE:-}", &env).unwrap(), "");
        assert_eq!(expand("${NOPE:-http://h:1/}", &env).unwrap(), "http://h:1/");
    }

    #[test]
    fn position_counts_characters() {
        assert_eq!(position("ab\ncé=x", 7), (2, 4));
        assert_eq!(position("", 0), (1, 1));
    }
}

/// `--metrics-listen`: a bare port (loopback only) or `host:port`.
#[derive(Clone, Copy, Debug)]
pub struct ListenCheck;

impl Check for ListenCheck {
    type Raw = String;
    type Out = crate::metrics::Listen;

    fn check(&self, raw: &String, place: &Place, cx: &Context) -> Result<Self::Out, Error> {
        let given = text(raw, place, cx)?;
        crate::metrics::Listen::parse(&given).map_err(|m| place.error(cx, m))
    }

    fn range(&self) -> Option<String> {
        Some("PORT (loopback) or HOST:PORT".to_string())
    }
}

/// `--metrics-push`: a Pushgateway's `http://` base URL.
#[derive(Clone, Copy, Debug)]
pub struct PushCheck;

impl Check for PushCheck {
    type Raw = String;
    type Out = crate::metrics::PushUrl;

    fn check(&self, raw: &String, place: &Place, cx: &Context) -> Result<Self::Out, Error> {
        let given = text(raw, place, cx)?;
        crate::metrics::PushUrl::parse(&given).map_err(|m| place.error(cx, m))
    }

    fn range(&self) -> Option<String> {
        None
    }
}
