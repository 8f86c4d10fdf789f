//! Secrets stay out of the reports: the values of sensitive headers are replaced by
//! `<redacted>` wherever the reports echo how the run was started (the command line and the
//! scenario text). The request headers themselves are never reported.
//!
//! Sensitive: `Authorization`, `Proxy-Authorization`, `Cookie`, `Set-Cookie`, `X-Api-Key`, and
//! every header named with `--redact NAME`. A scenario's `${VAR}` stays unexpanded in the echoed
//! text, so values from the environment never reach a report either.

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
}

impl Redactor {
    /// A redactor for the default names plus `extra` (case-insensitive).
    pub fn new(extra: &[String]) -> Redactor {
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
        Redactor { names, toml, free }
    }

    /// Free text (a step's command, an output line) with `Name: value` redacted.
    pub fn text(&self, text: &str) -> String {
        if !self.free.is_match(text) {
            return text.to_string();
        }
        self.free
            .replace_all(text, format!("${{1}}${{2}}{REDACTED}").as_str())
            .into_owned()
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

    /// The command line with the values of sensitive `-H` / `--header` arguments redacted.
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
                out.push(arg.clone());
            }
        }
        out
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

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn command_line_headers() {
        let r = Redactor::new(&["X-Tenant-Token".to_string()]);
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
        let r = Redactor::new(&[]);
        assert_eq!(
            r.text("curl -H 'Authorization: Bearer abc' http://x/"),
            "curl -H 'Authorization: <redacted>' http://x/"
        );
        assert_eq!(r.text("set-cookie: a=b; Path=/"), "set-cookie: <redacted>");
        assert_eq!(r.text("nothing here"), "nothing here");
    }

    #[test]
    fn scenario_header_values() {
        let r = Redactor::new(&["X-Custom".to_string()]);
        let text = "[target]\nheaders = { Authorization = \"Bearer abc\", \"X-Api-Key\" = 'k', Accept = \"*/*\" }\n[target.more]\nx-custom = \"s\\\"x\"\nauthorization_note = \"keep\"\n";
        let out = r.scenario(text);
        assert_eq!(
            out,
            "[target]\nheaders = { Authorization = \"<redacted>\", \"X-Api-Key\" = \"<redacted>\", Accept = \"*/*\" }\n[target.more]\nx-custom = \"<redacted>\"\nauthorization_note = \"keep\"\n"
        );
    }
}
