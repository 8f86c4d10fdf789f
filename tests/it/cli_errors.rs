//! Usage errors: impossible values exit 2 with one clear sentence on stderr that names the
//! offending flag (or the URL), before any request is sent.

use crate::support;
use crate::support::{Run, TestServer, run_gapless};

/// Runs `gapless run ARGS` and checks it is a usage error: exit 2, nothing on stdout, no JSON,
/// and stderr mentioning every one of `mentions`. Returns stderr.
fn usage_error(args: &[&str], mentions: &[&str]) -> String {
    let mut argv = vec!["run"];
    argv.extend_from_slice(args);
    let (code, stdout, stderr, json) = run_gapless(&argv);
    assert_eq!(
        code, 2,
        "gapless {argv:?} should be a usage error; stderr:\n{stderr}"
    );
    assert!(stdout.is_empty(), "nothing on stdout, got:\n{stdout}");
    assert!(json.is_none(), "a usage error writes no JSON result");
    for m in mentions {
        assert!(stderr.contains(m), "stderr should mention {m:?}:\n{stderr}");
    }
    stderr
}

/// gapless's own validation errors are exactly one line: `gapless: <sentence>`.
fn one_sentence(args: &[&str], mentions: &[&str]) -> String {
    let stderr = usage_error(args, mentions);
    let line = stderr.trim_end();
    assert!(
        line.starts_with("gapless: ") && !line.contains('\n'),
        "expected one line `gapless: ...`, got:\n{stderr}"
    );
    stderr
}

/// A URL nothing listens on: validation must fail before it is ever contacted.
const URL: &str = "http://127.0.0.1:9/";

#[test]
fn zero_connections() {
    one_sentence(&[URL, "-d", "1s", "-c", "0"], &["--connections"]);
}

#[test]
fn negative_qps() {
    one_sentence(&[URL, "-d", "1s", "-q", "-5"], &["--qps"]);
}

/// gapless sets the body's length itself; a second framing would corrupt every request.
#[test]
fn framing_headers() {
    one_sentence(
        &[
            URL,
            "-d",
            "1s",
            "-H",
            "Content-Length: 5",
            "--body",
            "hello",
        ],
        &["\"content-length\"", "--body"],
    );
    one_sentence(
        &[URL, "-d", "1s", "-H", "transfer-encoding: chunked"],
        &["\"transfer-encoding\""],
    );
}

#[test]
fn slot_below_minimum() {
    one_sentence(&[URL, "-d", "1s", "--slot", "1ms"], &["--slot", "10ms"]);
}

#[test]
fn slot_longer_than_run() {
    one_sentence(
        &[URL, "-d", "1s", "--slot", "2s"],
        &["--slot", "--duration"],
    );
}

#[test]
fn missing_body_file() {
    one_sentence(
        &[URL, "-d", "1s", "--body-file", "/nonexistent"],
        &["--body-file", "/nonexistent"],
    );
}

#[test]
fn missing_body_file_states_the_cause_once() {
    let stderr = one_sentence(
        &[URL, "-d", "1s", "--body-file", "/nonexistent"],
        &["--body-file"],
    );
    assert_eq!(
        stderr.matches("No such file or directory").count(),
        1,
        "the cause should appear once:\n{stderr}"
    );
}

#[test]
fn unsupported_scheme() {
    one_sentence(&["ftp://x/", "-d", "1s"], &["ftp://x/", "scheme"]);
}

#[test]
fn url_without_scheme() {
    one_sentence(&["127.0.0.1:80", "-d", "1s"], &["127.0.0.1:80", "scheme"]);
}

#[test]
fn unknown_flag() {
    // clap's own message (with a usage line) for flags it does not know.
    usage_error(&[URL, "-d", "1s", "--no-such-flag"], &["--no-such-flag"]);
}

#[test]
fn usage_errors_send_nothing() {
    // Against a live server, an invalid flag still sends no request and opens no connection.
    let server = TestServer::healthy();
    usage_error(&[&server.url(), "-d", "1s", "-c", "0"], &["--connections"]);
    usage_error(&[&server.url(), "-d", "1s", "--slot", "2s"], &["--slot"]);
    assert_eq!(server.stats().connections(), 0);
}

#[test]
fn an_unreachable_target_says_so_in_one_line_before_the_report() {
    let port = support::refused_port();
    let url = format!("http://127.0.0.1:{port}/");
    let (code, stdout, stderr, _) = Run::new(&url).qps(10).duration("300ms").output();
    assert_eq!(code, 1, "{stdout}");
    let line = format!(
        "gapless: nothing accepts connections on 127.0.0.1:{port} (connection refused): the target is down or the port is wrong"
    );
    assert_eq!(stderr.lines().filter(|l| *l == line).count(), 1, "{stderr}");
    let (code, _, stderr, _) = Run::new("http://gapless-test.invalid/")
        .qps(10)
        .duration("300ms")
        .output();
    assert_eq!(code, 1);
    assert!(
        stderr.lines().any(|l| l
            == "gapless: cannot resolve gapless-test.invalid: the target's host name is unknown"),
        "{stderr}"
    );
}

#[test]
fn an_unwritable_report_is_exit_2_before_the_load() {
    // A path under a regular file cannot be created, even by root.
    let file = support::TempFile::with("txt", "not a directory");
    let json = format!("{}/result.json", file.as_str());
    let server = support::TestServer::healthy();
    let started = std::time::Instant::now();
    let (code, stdout, stderr, _) = Run::new(&server.url())
        .qps(20)
        .duration("5s")
        .opt("--json", &json)
        .output();
    assert_eq!(code, 2, "{stderr}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(3),
        "found before the 5 s load, not after it"
    );
    assert_eq!(server.stats().requests(), 0, "no load was sent");
    assert_eq!(stdout, "", "no report without a run");
    assert!(
        stderr.contains(&format!("gapless: cannot write a report to {json}")),
        "{stderr}"
    );
}

#[test]
fn url_without_host() {
    one_sentence(
        &["http://:80/", "-d", "1s"],
        &["http://:80/", "has no host"],
    );
    one_sentence(
        &["http:///x", "-d", "1s"],
        &["http:///x", "not a valid URL"],
    );
}

/// Every numeric option has a range: a value outside it is one sentence naming the flag, exit 2,
/// before any load (these values used to panic, spin or grow without bound).
#[test]
fn values_outside_their_range_are_usage_errors() {
    for (args, mentions) in [
        (&["-q", "1e-20"][..], &["--qps", "0.001"][..]),
        (&["-q", "1e300"], &["--qps", "at most"]),
        (&["-c", "100000000"], &["--connections", "at most 10000"]),
        (&["--timeout", "18446744073709551615s"], &["--timeout"]),
        (&["--timeout", "2h"], &["--timeout", "at most 1h"]),
        (&["--streams", "5000"], &["--streams", "at most 1000"]),
        (
            &["--max-connect-rate", "0"],
            &["--max-connect-rate", "at least 1"],
        ),
        (&["--threads", "100000"], &["--threads", "at most 1024"]),
        (&["-d", "1000d"], &["--duration", "at most"]),
        (
            &["--max-failure-ratio", "-0.1"],
            &["--max-failure-ratio", "between 0 and 1"],
        ),
        (&["-X", "CONNECT"], &["--method", "CONNECT"]),
    ] {
        let mut argv = vec![URL];
        argv.extend_from_slice(args);
        one_sentence(&argv, mentions);
    }
}

/// The quick form's step options need the command after `--`.
#[test]
fn step_options_without_a_command() {
    one_sentence(&[URL, "--step-name", "deploy"], &["--step-name", "--"]);
    one_sentence(&[URL, "--step-timeout", "5s"], &["--step-timeout", "--"]);
}

/// The shard options: each rule between them is one sentence naming the flags.
#[test]
fn shard_options_that_do_not_fit_together() {
    let start = ["--start-at", "2026-12-03T18:00:00Z"];
    one_sentence(
        &[URL, "-d", "1s", start[0], start[1]],
        &["--start-at", "--shards"],
    );
    one_sentence(
        &[URL, "-d", "1s", "--shards", "4", "--shard-index", "0"],
        &["--start-at"],
    );
    one_sentence(
        &[URL, "-d", "1s", "--shards", "4", start[0], start[1]],
        &["--shard-index"],
    );
    one_sentence(
        &[
            URL,
            "-d",
            "1s",
            "--shards",
            "4",
            "--shard-index",
            "4",
            start[0],
            start[1],
        ],
        &["4"],
    );
    one_sentence(
        &[
            URL,
            "-d",
            "1s",
            "-q",
            "0",
            "--shards",
            "2",
            "--shard-index",
            "0",
            start[0],
            start[1],
        ],
        &["--qps"],
    );
    one_sentence(
        &[
            URL,
            "-d",
            "1s",
            "--shards",
            "2",
            "--shard-index",
            "1",
            "--merge-gap",
            "1s",
            start[0],
            start[1],
        ],
        &["--merge-gap", "gapless merge"],
    );
    one_sentence(
        &[
            URL,
            "-d",
            "1s",
            "--shards",
            "2",
            "--shard-index",
            "0",
            "--start-at",
            "yesterday",
        ],
        &["--start-at"],
    );
    // With steps, every shard needs the same explicit --duration.
    let file = support::TempFile::with(
        "toml",
        "[target]\nurl = \"http://127.0.0.1:9/\"\n\n[[step]]\nname = \"a\"\nrun = \"true\"\n",
    );
    one_sentence(
        &[
            "--scenario",
            file.as_str(),
            "--shards",
            "2",
            "--shard-index",
            "1",
            start[0],
            start[1],
        ],
        &["--duration"],
    );
}
