//! Which version answered: read from a response header (`--version-header`) or the first capture
//! group of a regex over the start of the body (`--version-regex`), and interned into a small
//! `Copy` id so completions stay plain data.
//!
//! Memory is bounded: at most [`MAX_VERSIONS`] distinct labels are tracked; any further label
//! counts as [`OTHER`].

use std::sync::{Arc, PoisonError, RwLock};

use http::HeaderName;
use regex::bytes::Regex;

/// Most distinct version labels tracked.
pub const MAX_VERSIONS: usize = 32;

/// The label of every version beyond [`MAX_VERSIONS`].
pub const OTHER: &str = "(other)";

/// How much of the body the regex sees.
pub const BODY_PREFIX: usize = 4096;

/// A version label, interned.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct VersionId(u8);

impl VersionId {
    /// Position in the label table.
    pub fn index(self) -> usize {
        usize::from(self.0)
    }
}

/// Where to find the version of a response.
#[derive(Clone, Debug, Default)]
pub struct VersionProbe {
    header: Option<HeaderName>,
    regex: Option<Regex>,
    labels: Labels,
}

impl VersionProbe {
    /// A probe reading the `header` response header, or else the first capture group of `regex`
    /// over the first [`BODY_PREFIX`] bytes of the body. Neither: no version tracking.
    pub fn new(header: Option<HeaderName>, regex: Option<Regex>) -> VersionProbe {
        VersionProbe {
            header,
            regex,
            labels: Labels::default(),
        }
    }

    /// True when versions are tracked at all.
    pub fn is_enabled(&self) -> bool {
        self.header.is_some() || self.regex.is_some()
    }

    /// True when the body must be kept (its first [`BODY_PREFIX`] bytes).
    pub fn needs_body(&self) -> bool {
        self.header.is_none() && self.regex.is_some()
    }

    /// The version from the probe's header, given a way to look a header's value up (`None`
    /// for a probe that reads the body). The value must be visible ASCII, like
    /// `HeaderValue::to_str` asks.
    pub fn identify_header<'v>(
        &self,
        value_of: impl FnOnce(&HeaderName) -> Option<&'v [u8]>,
    ) -> Option<VersionId> {
        let value = value_of(self.header.as_ref()?)?;
        if !value
            .iter()
            .all(|&b| b == b'\t' || (b' '..=b'~').contains(&b))
        {
            return None;
        }
        let value = std::str::from_utf8(value).ok()?.trim();
        (!value.is_empty()).then(|| self.labels.intern(value))
    }

    /// The version from the start of the body (`None` for a probe that reads a header).
    pub fn identify_body(&self, body_prefix: &[u8]) -> Option<VersionId> {
        if self.header.is_some() {
            return None;
        }
        let regex = self.regex.as_ref()?;
        let captures = regex.captures(body_prefix)?;
        let label = String::from_utf8_lossy(captures.get(1)?.as_bytes()).into_owned();
        Some(self.labels.intern(label.trim()))
    }

    /// The label table, shared with the reports.
    pub fn labels(&self) -> &Labels {
        &self.labels
    }
}

/// Interned labels, shared by every engine thread.
#[derive(Clone, Debug, Default)]
pub struct Labels(Arc<RwLock<Vec<String>>>);

impl Labels {
    /// The id of `label`, added if new (or [`OTHER`] once the table is full).
    pub fn intern(&self, label: &str) -> VersionId {
        let known = self.0.read().unwrap_or_else(PoisonError::into_inner);
        if let Some(i) = known.iter().position(|l| l == label) {
            return VersionId(i as u8);
        }
        drop(known);
        let mut table = self.0.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(i) = table.iter().position(|l| l == label) {
            return VersionId(i as u8);
        }
        if table.len() + 1 < MAX_VERSIONS {
            table.push(label.to_string());
            return VersionId((table.len() - 1) as u8);
        }
        match table.iter().position(|l| l == OTHER) {
            Some(i) => VersionId(i as u8),
            None => {
                table.push(OTHER.to_string());
                VersionId((table.len() - 1) as u8)
            }
        }
    }

    /// The label of `id`.
    pub fn name(&self, id: VersionId) -> String {
        self.0
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(id.index())
            .cloned()
            .unwrap_or_else(|| OTHER.to_string())
    }

    /// The id of `label`, if it was seen.
    pub fn find(&self, label: &str) -> Option<VersionId> {
        self.0
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .position(|l| l == label)
            .map(|i| VersionId(i as u8))
    }
}

#[cfg(test)]
mod tests {
    use http::HeaderMap;

    use super::*;

    #[test]
    fn header_and_regex_probes() {
        let probe = VersionProbe::new(Some(HeaderName::from_static("x-version")), None);
        let mut headers = HeaderMap::new();
        let value_of = |headers: &HeaderMap| {
            probe.identify_header(|name| headers.get(name).map(|v| v.as_bytes()))
        };
        assert_eq!(value_of(&headers), None);
        assert_eq!(
            probe.identify_body(b"v2"),
            None,
            "a header probe reads no body"
        );
        headers.insert("x-version", "v2".parse().unwrap());
        let v2 = value_of(&headers).unwrap();
        assert_eq!(probe.labels().name(v2), "v2");
        assert!(!probe.needs_body());

        let probe = VersionProbe::new(None, Some(Regex::new(r#""version":"([^"]+)""#).unwrap()));
        assert!(probe.needs_body());
        let id = probe
            .identify_body(br#"{"version":"1.4.2","ok":true}"#)
            .unwrap();
        assert_eq!(probe.labels().name(id), "1.4.2");
        assert_eq!(probe.identify_body(b"nothing"), None);
    }

    #[test]
    fn labels_are_bounded() {
        let labels = Labels::default();
        let a = labels.intern("a");
        assert_eq!(labels.intern("a"), a);
        for i in 0..100 {
            labels.intern(&format!("v{i}"));
        }
        let last = labels.intern("one too many");
        assert_eq!(labels.name(last), OTHER);
        assert!(labels.0.read().unwrap().len() <= MAX_VERSIONS);
        assert_eq!(labels.find("a"), Some(a));
    }
}
