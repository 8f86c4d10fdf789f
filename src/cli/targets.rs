//! `--targets FILE`: several endpoints in vegeta's text format, so existing vegeta files work
//! unchanged.
//!
//! ```text
//! GET http://127.0.0.1:8080/
//! X-Account-ID: 8675309
//!
//! POST http://127.0.0.1:8080/api
//! Content-Type: application/json
//! @body.json
//! ```
//!
//! Each target is a `METHOD URL` line, then its header lines (`Name: value`), then optionally an
//! `@path` line whose file is the request body (relative to the working directory, as vegeta
//! reads it); targets are separated by blank lines (vegeta's separator; a new `METHOD URL` line
//! also starts one). Lines starting with `#` are comments. `-` reads the file from stdin.
//!
//! The file fills the same option declarations as the command line and a scenario's
//! `[[target]]` ([`TargetOptions`]), with each value's position in the file: a value that fails
//! its option's check names `FILE:LINE:COL` and the option's key, as a scenario's does, and a
//! line that is not what the format expects names `FILE:LINE:COL` and what was expected.

use std::ops::Range;
use std::path::Path;

use super::check::{Context, Error, Given, Origin, ScenarioText};
use super::options::TargetOptions;

/// Parses a targets file's `text` (read from `path`, for error positions) into one set of target
/// options per endpoint, each value with its span in `text`.
pub fn parse(path: &Path, text: &str) -> Result<Vec<TargetOptions>, Error> {
    let cx = Context::new(Some(ScenarioText { path, source: text }), &|_| None);
    let mut targets: Vec<TargetOptions> = Vec::new();
    // Whether the current target still takes header lines (no body line yet), and whether one
    // is open at all (no blank line since its request line).
    let mut open = false;
    let mut has_body = false;
    let mut offset = 0;
    for raw in text.split_inclusive('\n') {
        let start = offset;
        offset += raw.len();
        let line = raw.trim_end_matches(['\n', '\r']);
        let span = |from: usize, len: usize| start + from..start + from + len;
        let trimmed = line.trim();
        if trimmed.is_empty() {
            open = false;
            continue;
        }
        if trimmed.starts_with('#') {
            continue;
        }
        if let Some((method, url)) = request_line(line) {
            let method_at = line.find(method).unwrap_or(0);
            let url_at =
                method_at + method.len() + line[method_at + method.len()..].find(url).unwrap_or(0);
            targets.push(TargetOptions {
                method: Some(given(method, span(method_at, method.len()))),
                url: Some(given(url, span(url_at, url.len()))),
                ..TargetOptions::default()
            });
            open = true;
            has_body = false;
            continue;
        }
        let here = span(0, line.len());
        let Some(target) = targets.last_mut().filter(|_| open) else {
            return Err(expected(
                &cx,
                here,
                "a request line, METHOD URL (such as GET http://host/)",
            ));
        };
        if has_body {
            return Err(expected(
                &cx,
                here,
                "a blank line after the @body line, then the next METHOD URL",
            ));
        }
        if let Some(body) = line.strip_prefix('@') {
            let file = body.trim();
            if file.is_empty() {
                return Err(expected(&cx, here, "a body file after @ (@path/to/body)"));
            }
            // vegeta reads it from the working directory: made absolute here, so the check does
            // not read it relative to the targets file.
            let absolute = std::env::current_dir()
                .map(|d| d.join(file))
                .unwrap_or_else(|_| file.into());
            target.body_file = Some(given(&absolute.to_string_lossy(), span(1, body.len())));
            has_body = true;
            continue;
        }
        if line.contains(':') {
            target.headers.push(given(line, here));
            continue;
        }
        return Err(expected(
            &cx,
            here,
            "a header line (Name: value), an @body line, or a blank line before the next METHOD URL",
        ));
    }
    if targets.is_empty() {
        return Err(expected(
            &cx,
            0..0,
            "at least one target: a request line, METHOD URL (such as GET http://host/)",
        ));
    }
    for target in &targets {
        target.check_all(&cx)?;
    }
    Ok(targets)
}

/// `METHOD URL` when the line is a request line: a method token, spaces, an absolute URL.
fn request_line(line: &str) -> Option<(&str, &str)> {
    let mut words = line.split_whitespace();
    let (method, url) = (words.next()?, words.next()?);
    let is_method = method.bytes().all(|b| b.is_ascii_alphabetic()) && !method.ends_with(':');
    let is_url = url.contains("://");
    (is_method && is_url && words.next().is_none()).then_some((method, url))
}

/// A value of the file; `${` is kept literally (a vegeta file has no variables).
fn given(value: &str, span: Range<usize>) -> Given<String> {
    Given {
        value: value.replace("${", "$${"),
        origin: Origin::File(span),
    }
}

fn expected(cx: &Context, span: Range<usize>, what: &str) -> Error {
    cx.error_at(span, "targets", format!("expected {what}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_text(text: &str) -> Result<Vec<TargetOptions>, String> {
        parse(Path::new("t.txt"), text).map_err(|e| e.to_string())
    }

    #[test]
    fn vegeta_targets_with_headers_and_bodies() {
        let dir = std::env::temp_dir().join(format!("gapless-targets-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let body = dir.join("body.json");
        std::fs::write(&body, b"{\"a\": 1}\n").unwrap();
        let text = format!(
            "# two endpoints\nGET http://127.0.0.1:8080/\nX-Account-ID: 8675309\n\n\
             POST http://127.0.0.1:8080/api\r\nContent-Type: application/json\n@{}\n\n\nHEAD http://h/x\n",
            body.display()
        );
        let targets = parse_text(&text).unwrap();
        assert_eq!(targets.len(), 3);
        let cx = Context::new(None, &|_| None);
        assert_eq!(targets[0].method(&cx).unwrap().value, http::Method::GET);
        let headers = targets[0].headers(&cx).unwrap();
        assert_eq!(headers.len(), 1);
        assert_eq!(headers[0].value.0, "x-account-id");
        assert_eq!(headers[0].value.1, "8675309");
        assert_eq!(targets[1].method.as_ref().unwrap().value, "POST");
        assert_eq!(
            targets[1].url.as_ref().unwrap().value,
            "http://127.0.0.1:8080/api"
        );
        assert_eq!(
            targets[1].headers[0].value, "Content-Type: application/json",
            "the CR of a CRLF line is not part of the value"
        );
        assert!(targets[1].body_file.is_some());
        assert!(targets[2].headers.is_empty() && targets[2].body_file.is_none());
        // A request line right after another starts a new target, as vegeta reads it.
        let back_to_back = parse_text("GET http://a/\nGET http://b/\n").unwrap();
        assert_eq!(back_to_back.len(), 2);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_malformed_file_names_the_line_and_what_was_expected() {
        for (text, error) in [
            (
                "X-A: 1\n",
                "t.txt:1:1: targets: expected a request line, METHOD URL (such as GET http://host/)",
            ),
            (
                "GET http://a/\n\nX-A: 1\n",
                "t.txt:3:1: targets: expected a request line",
            ),
            (
                "GET http://a/\nnot a header\n",
                "t.txt:2:1: targets: expected a header line (Name: value)",
            ),
            (
                "GET http://a/\n@\n",
                "t.txt:2:1: targets: expected a body file after @",
            ),
            (
                "GET http://a/\n@/dev/null\nX-A: 1\n",
                "t.txt:3:1: targets: expected a blank line after the @body line",
            ),
            (
                "\n# nothing\n",
                "t.txt:1:1: targets: expected at least one target",
            ),
            (
                "GET http://a/\n\nGET ftp://b/\n",
                "t.txt:3:5: target.url: target URL \"ftp://b/\" has an unsupported scheme",
            ),
            (
                "GET http://a/\nBad Header Name: x\n",
                "t.txt:2:1: target.headers",
            ),
            (
                "GET http://a/\n@/nonexistent/body\n",
                "t.txt:2:2: target.body_file:",
            ),
        ] {
            let got = parse_text(text).unwrap_err();
            assert!(got.starts_with(error), "{text:?}: {got}");
            assert!(!got.contains('\n'), "one line: {got}");
        }
    }

    #[test]
    fn a_variable_in_a_vegeta_file_is_literal() {
        let targets = parse_text("GET http://a/\nX-A: ${NOT_SET}\n").unwrap();
        let cx = Context::new(None, &|_| None);
        let _ = &cx;
        let file_cx = Context::new(
            Some(ScenarioText {
                path: Path::new("t.txt"),
                source: "",
            }),
            &|_| None,
        );
        let headers = targets[0].headers(&file_cx).unwrap();
        assert_eq!(headers[0].value.1, "${NOT_SET}");
    }
}
