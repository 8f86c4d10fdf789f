//! Secrets stay out of the reports: the values of sensitive headers are replaced by
//! `<redacted>` wherever the reports echo how the run was started (the command line and the
//! scenario text). The request headers themselves are never reported.
//!
//! Sensitive: `Authorization`, `Proxy-Authorization`, `Cookie`, `Set-Cookie`, `X-Api-Key`, and
//! every header named with `--redact NAME`; the password of a URL (`http://user:password@...`);
//! and the values of secret variables (named like `*TOKEN*`, `*SECRET*`, `*PASSWORD*`, `*KEY*`,
//! `*CREDENTIAL*`, or given with `--redact-env`),
//! wherever they appear in a command, a step's output or an event. A scenario's `${VAR}` and a
//! step's command stay unexpanded in the reports.

use regex::Regex;

/// What replaces a secret.
pub const REDACTED: &str = "<redacted>";

/// Headers whose values are always redacted.
pub const ALWAYS: [&str; 5] = [
    "authorization",
    "proxy-authorization",
    "cookie",
    "set-cookie",
    "x-api-key",
];

/// Redacts header values.
#[derive(Clone, Debug)]
pub struct Redactor {
    names: Vec<String>,
    /// `Name = "value"` or `"Name" = 'value'` in TOML, for any sensitive name.
    toml: Regex,
    /// `Name: value` in free text (a step's command or output), up to a quote or the line end.
    free: Regex,
    /// Values of secret variables, longest first.
    secrets: Vec<String>,
}

impl Redactor {
    /// A redactor for the default header names plus `extra` (case-insensitive), and the values
    /// `secrets` wherever they appear.
    pub fn new(extra: &[String], mut secrets: Vec<String>) -> Redactor {
        secrets.retain(|s| !s.is_empty());
        // Longest first, so a secret that contains another is replaced whole.
        secrets.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        secrets.dedup();
        let mut names: Vec<String> = ALWAYS.iter().map(|s| s.to_string()).collect();
        for name in extra {
            let name = name.trim().to_ascii_lowercase();
            if !name.is_empty() && !names.contains(&name) {
                names.push(name);
            }
        }
        let alternatives = names
            .iter()
            .map(|n| regex::escape(n))
            .collect::<Vec<_>>()
            .join("|");
        let toml = Regex::new(&format!(
            r#"(?i)(^|[\s{{,])(["']?(?:{alternatives})["']?\s*=\s*)("(?:[^"\\]|\\.)*"|'[^']*')"#
        ))
        .unwrap_or_else(|_| unreachable!("escaped names make a valid pattern"));
        let free = Regex::new(&format!(r#"(?i)\b({alternatives})(\s*:\s*)[^'"\n]+"#))
            .unwrap_or_else(|_| unreachable!("escaped names make a valid pattern"));
        Redactor {
            names,
            toml,
            free,
            secrets,
        }
    }

    /// Free text (a step's command, an output line) with `Name: value`, URL passwords and secret
    /// values redacted.
    pub fn text(&self, text: &str) -> String {
        let mut out = if self.free.is_match(text) {
            self.free
                .replace_all(text, format!("${{1}}${{2}}{REDACTED}").as_str())
                .into_owned()
        } else {
            text.to_string()
        };
        if out.contains("://") {
            out = redact_password(&out);
        }
        self.secret_values(out)
    }

    /// `text` with every secret value replaced.
    fn secret_values(&self, mut text: String) -> String {
        for secret in &self.secrets {
            if text.contains(secret.as_str()) {
                text = text.replace(secret.as_str(), REDACTED);
            }
        }
        text
    }

    /// True when `name` is a sensitive header.
    pub fn is_sensitive(&self, name: &str) -> bool {
        let name = name.trim().to_ascii_lowercase();
        self.names.contains(&name)
    }

    /// `Name: value` with the value redacted if the name is sensitive.
    pub fn header(&self, header: &str) -> String {
        match header.split_once(':') {
            Some((name, _)) if self.is_sensitive(name) => format!("{name}: {REDACTED}"),
            _ => header.to_string(),
        }
    }

    /// The command line with the values of sensitive `-H` / `--header` arguments, URL passwords
    /// and secret values redacted.
    pub fn command_line(&self, args: &[String]) -> Vec<String> {
        let mut out = Vec::with_capacity(args.len());
        let mut next_is_header = false;
        for arg in args {
            if next_is_header {
                out.push(self.header(arg));
                next_is_header = false;
            } else if arg == "-H" || arg == "--header" {
                out.push(arg.clone());
                next_is_header = true;
            } else if let Some(h) = arg.strip_prefix("--header=") {
                out.push(format!("--header={}", self.header(h)));
            } else if let Some(h) = arg.strip_prefix("-H").filter(|h| !h.is_empty()) {
                out.push(format!("-H{}", self.header(h)));
            } else {
                out.push(self.text(arg));
            }
        }
        out.into_iter().map(|a| self.secret_values(a)).collect()
    }

    /// A scenario file's text with the values of sensitive header keys redacted, and any
    /// `Name: value` inside its strings (a step's `curl -H ...`).
    pub fn scenario(&self, text: &str) -> String {
        let keys = self
            .toml
            .replace_all(text, format!("${{1}}${{2}}\"{REDACTED}\"").as_str());
        self.text(&keys)
    }
}

/// `text` with the password of any `scheme://user:password@` in it replaced by `<redacted>` (and a
/// user given without a password, often a token, as a whole).
pub fn redact_password(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("://") {
        let (before, after) = rest.split_at(at + 3);
        out.push_str(before);
        // The authority ends at the first '/', '?', '#', whitespace or quote.
        let end = after
            .find(|c: char| "/?#\"' \t\n".contains(c))
            .unwrap_or(after.len());
        let authority = &after[..end];
        match authority.rsplit_once('@') {
            Some((info, host)) => match info.split_once(':') {
                Some((user, _)) => {
                    out.push_str(user);
                    out.push_str(":<redacted>@");
                    out.push_str(host);
                }
                None => {
                    out.push_str("<redacted>@");
                    out.push_str(host);
                }
            },
            None => out.push_str(authority),
        }
        rest = &after[end..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_in_free_text_are_redacted() {
        assert_eq!(
            redact_password(
                "curl http://u:pw@h:1/x and 'https://a:b@c' and http://plain/ and u:p@h"
            ),
            "curl http://u:<redacted>@h:1/x and 'https://a:<redacted>@c' and http://plain/ and u:p@h"
        );
        assert_eq!(redact_password("http://tok@h/"), "http://<redacted>@h/");
    }

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn command_line_headers() {
        let r = Redactor::new(&["X-Tenant-Token".to_string()], Vec::new());
        let out = r.command_line(&args(&[
            "gapless",
            "run",
            "-H",
            "Authorization: Bearer abc",
            "--header=cookie: a=b",
            "-HX-Api-Key: k",
            "-H",
            "x-tenant-token: t",
            "-H",
            "Accept: */*",
        ]));
        assert_eq!(
            out,
            args(&[
                "gapless",
                "run",
                "-H",
                "Authorization: <redacted>",
                "--header=cookie: <redacted>",
                "-HX-Api-Key: <redacted>",
                "-H",
                "x-tenant-token: <redacted>",
                "-H",
                "Accept: */*",
            ])
        );
    }

    #[test]
    fn free_text() {
        let r = Redactor::new(&[], Vec::new());
        assert_eq!(
            r.text("curl -H 'Authorization: Bearer abc' http://x/"),
            "curl -H 'Authorization: <redacted>' http://x/"
        );
        assert_eq!(r.text("set-cookie: a=b; Path=/"), "set-cookie: <redacted>");
        assert_eq!(r.text("nothing here"), "nothing here");
    }

    #[test]
    fn secrets_and_url_passwords() {
        let r = Redactor::new(&[], vec!["s3cr3t-123".to_string(), "s3cr3t".to_string()]);
        assert_eq!(
            r.text("kubectl --token=s3cr3t-123 get pods; echo s3cr3t"),
            "kubectl --token=<redacted> get pods; echo <redacted>"
        );
        assert_eq!(
            r.command_line(&args(&[
                "gapless",
                "run",
                "http://u:pw@h/",
                "--",
                "sh",
                "-c",
                "x=s3cr3t-123"
            ])),
            args(&[
                "gapless",
                "run",
                "http://u:<redacted>@h/",
                "--",
                "sh",
                "-c",
                "x=<redacted>"
            ])
        );
        assert_eq!(
            r.scenario("url = \"http://u:pw@h/\"\nrun = \"echo ${TOKEN}\"\n"),
            "url = \"http://u:<redacted>@h/\"\nrun = \"echo ${TOKEN}\"\n"
        );
    }

    #[test]
    fn scenario_header_values() {
        let r = Redactor::new(&["X-Custom".to_string()], Vec::new());
        let text = "[target]\nheaders = { Authorization = \"Bearer abc\", \"X-Api-Key\" = 'k', Accept = \"*/*\" }\n[target.more]\nx-custom = \"s\\\"x\"\nauthorization_note = \"keep\"\n";
        let out = r.scenario(text);
        assert_eq!(
            out,
            "[target]\nheaders = { Authorization = \"<redacted>\", \"X-Api-Key\" = \"<redacted>\", Accept = \"*/*\" }\n[target.more]\nx-custom = \"<redacted>\"\nauthorization_note = \"keep\"\n"
        );
    }
}
