//! Property tests over scenario parsing and validation: whatever the file says, the result is a
//! scenario or one error that names `file:line:col` and a key; never a panic.

use std::path::Path;

use gapless::cli::scenario::Scenario;
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;

fn env(name: &str) -> Option<String> {
    (name == "SET").then(|| "value".to_string())
}

/// Checks the outcome of parsing `text`.
fn check(text: &str) -> Result<(), TestCaseError> {
    if let Err(e) = Scenario::parse(Path::new("s.toml"), text, &env) {
        let message = e.to_string();
        let rest = message
            .strip_prefix("s.toml:")
            .ok_or_else(|| TestCaseError::fail(format!("no file: {message}")))?;
        let mut parts = rest.splitn(3, ':');
        let line = parts.next().unwrap_or("");
        let column = parts.next().unwrap_or("");
        let after = parts.next().unwrap_or("");
        prop_assert!(line.parse::<usize>().is_ok_and(|l| l >= 1), "{message}");
        prop_assert!(column.parse::<usize>().is_ok_and(|c| c >= 1), "{message}");
        let (key, why) = after.split_once(": ").unwrap_or(("", ""));
        prop_assert!(!key.trim().is_empty() && !why.is_empty(), "{message}");
        prop_assert!(!message.contains('\n'), "one line: {message}");
    }
    Ok(())
}

const SECTIONS: [&str; 4] = ["[target]", "[load]", "[[step]]", "[verdict]"];
const KEYS: [&str; 24] = [
    "url",
    "method",
    "headers",
    "body",
    "timeout",
    "ok_codes",
    "http2",
    "demo",
    "qps",
    "connections",
    "warmup",
    "cooldown",
    "slot",
    "duration",
    "name",
    "run",
    "sleep",
    "at",
    "expect_exit",
    "background",
    "max_failures",
    "max_gap",
    "max_failure_ratio",
    "qpss",
];
const VALUES: [&str; 18] = [
    "\"http://127.0.0.1:9/\"",
    "\"ftp://x/\"",
    "\"3s\"",
    "\"soon\"",
    "0",
    "-1",
    "500",
    "1.5",
    "true",
    "\"${SET}\"",
    "\"${UNSET}\"",
    "\"${\"",
    "[1, 2]",
    "{ a = 1 }",
    "{ action = \"rolling\" }",
    "\"\"",
    "\"200-299\"",
    "99999999999999999999",
];

fn line() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(SECTIONS.to_vec()).prop_map(str::to_string),
        (
            prop::sample::select(KEYS.to_vec()),
            prop::sample::select(VALUES.to_vec())
        )
            .prop_map(|(k, v)| format!("{k} = {v}")),
    ]
}

/// 2,000 cases per property; regressions are read from (and saved to)
/// `scenario_fuzz.proptest-regressions` beside this file. proptest's default,
/// `SourceParallel`, would look in `tests/proptest-regressions/scenario_fuzz.txt` instead, since
/// this file is a module of the `tests/it/main.rs` crate.
fn config() -> ProptestConfig {
    ProptestConfig {
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource(
            "proptest-regressions",
        ))),
        ..ProptestConfig::with_cases(2000)
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn arbitrary_text_never_panics(text in ".{0,200}") {
        check(&text)?;
    }

    #[test]
    fn structurally_valid_but_wrong_scenarios_are_located(lines in prop::collection::vec(line(), 0..12)) {
        check(&lines.join("\n"))?;
    }
}
