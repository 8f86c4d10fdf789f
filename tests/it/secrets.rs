//! Secrets never reach an output: a URL's credentials become `Authorization: Basic` (not part of
//! `Host`) and are shown redacted; a secret variable a step expands or echoes is `<redacted>` in
//! every output, stream and file; steps are shown as written, `${VAR}` unexpanded.

use std::sync::{Arc, Mutex};

use crate::support;
use crate::support::{Run, TempFile, TestServer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A keep-alive HTTP/1.1 server that answers `200` and keeps the head of every request it read.
fn recording_server() -> (TestServer, Arc<Mutex<Vec<String>>>) {
    let heads = Arc::new(Mutex::new(Vec::new()));
    let seen = heads.clone();
    let server = TestServer::raw(move |mut stream| {
        let seen = seen.clone();
        async move {
            let mut buffer = Vec::new();
            let mut chunk = [0u8; 4096];
            loop {
                while let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                    let head = String::from_utf8_lossy(&buffer[..end]).into_owned();
                    buffer.drain(..end + 4);
                    seen.lock().unwrap().push(head);
                    let reply = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                    if stream.write_all(reply).await.is_err() {
                        return;
                    }
                }
                match stream.read(&mut chunk).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => buffer.extend_from_slice(&chunk[..n]),
                }
            }
        }
    });
    (server, heads)
}

/// Every output file of a run, and the run's stdout and stderr: none may hold `secret`.
fn assert_nowhere(secret: &str, streams: &[&str], files: &[&TempFile]) {
    for (i, text) in streams.iter().enumerate() {
        assert!(
            !text.contains(secret),
            "stream {i} holds the secret:\n{text}"
        );
    }
    for file in files {
        let text = std::fs::read_to_string(file.path()).unwrap_or_default();
        assert!(!text.is_empty(), "{} was written", file.as_str());
        assert!(
            !text.contains(secret),
            "{} holds the secret:\n{text}",
            file.as_str()
        );
    }
}

#[test]
fn url_credentials_are_sent_as_basic_authorization_and_shown_nowhere() {
    let (server, heads) = recording_server();
    let port = server.addr().port();
    let url = format!("http://alice:hunter2%21@127.0.0.1:{port}/path");
    let outputs: Vec<TempFile> = ["json", "html", "md", "xml", "fortio.json"]
        .iter()
        .map(|s| TempFile::new(s))
        .collect();
    let (code, stdout, stderr, _) = Run::new(&url)
        .qps(20)
        .duration("300ms")
        .connections(1)
        .opt("--json", outputs[0].as_str())
        .opt("--html", outputs[1].as_str())
        .opt("--markdown", outputs[2].as_str())
        .opt("--junit", outputs[3].as_str())
        .opt("--fortio-json", outputs[4].as_str())
        .output();
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let heads = heads.lock().unwrap().clone();
    assert_eq!(heads.len(), 6, "20 req/s for 300 ms");
    for head in &heads {
        let lines: Vec<&str> = head.lines().collect();
        assert_eq!(lines[0], "GET /path HTTP/1.1", "{head}");
        assert!(
            lines
                .iter()
                .any(|l| l.eq_ignore_ascii_case(&format!("host: 127.0.0.1:{port}"))),
            "Host is host:port only: {head}"
        );
        // alice:hunter2!, as curl sends it.
        assert!(
            lines
                .iter()
                .any(|l| l.eq_ignore_ascii_case("authorization: Basic YWxpY2U6aHVudGVyMiE=")),
            "{head}"
        );
    }
    let refs: Vec<&TempFile> = outputs.iter().collect();
    assert_nowhere("hunter2", &[&stdout, &stderr], &refs);
    let json = std::fs::read_to_string(outputs[0].path()).unwrap();
    assert!(
        json.contains(&format!(
            "\"http://alice:<redacted>@127.0.0.1:{port}/path\""
        )),
        "the URL is shown with its password redacted: {json}"
    );

    // An explicit Authorization header wins over the URL's credentials.
    let (server, heads) = recording_server();
    let url = format!("http://alice:hunter2@127.0.0.1:{}/", server.addr().port());
    let (code, _, _, _) = Run::new(&url)
        .qps(10)
        .duration("200ms")
        .connections(1)
        .opt("-H", "Authorization: Bearer t")
        .output();
    assert_eq!(code, 0);
    for head in heads.lock().unwrap().iter() {
        let auth: Vec<&str> = head
            .lines()
            .filter(|l| l.to_ascii_lowercase().starts_with("authorization:"))
            .collect();
        assert_eq!(auth, ["authorization: Bearer t"], "{head}");
    }
}

#[test]
fn a_step_that_echoes_its_token_shows_it_nowhere() {
    let _machine = support::shared();
    let server = TestServer::healthy();
    let scenario = TempFile::with(
        "toml",
        &format!(
            "[target]\nurl = \"{}\"\n[load]\nqps = 20\nwarmup = \"200ms\"\ncooldown = \"200ms\"\n\
             [[step]]\nname = \"watch\"\nrun = \"echo watching with ${{KUBE_TOKEN}}; sleep 5\"\nbackground = true\n\
             [[step]]\nname = \"deploy\"\nrun = \"echo token=${{KUBE_TOKEN}}; echo other=$MY_PASSPHRASE; exit 3\"\n",
            server.url()
        ),
    );
    let outputs: Vec<TempFile> = ["json", "html", "md", "xml"]
        .iter()
        .map(|s| TempFile::new(s))
        .collect();
    let token = "kt-0123456789abcdef";
    let passphrase = "pp-9876543210";
    let output = std::process::Command::new(support::GAPLESS)
        .args([
            "run",
            "--scenario",
            scenario.as_str(),
            "--redact-env",
            "MY_PASSPHRASE",
            "--json",
            outputs[0].as_str(),
            "--html",
            outputs[1].as_str(),
            "--markdown",
            outputs[2].as_str(),
            "--junit",
            outputs[3].as_str(),
        ])
        .env("KUBE_TOKEN", token)
        .env("MY_PASSPHRASE", passphrase)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(3), "{stdout}\n{stderr}");
    let refs: Vec<&TempFile> = outputs.iter().collect();
    assert_nowhere(token, &[&stdout, &stderr], &refs);
    assert_nowhere(passphrase, &[&stdout, &stderr], &refs);
    // What the step printed is still there, with the secret replaced; its command as written.
    assert!(stderr.contains("[deploy] token=<redacted>"), "{stderr}");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(outputs[0].path()).unwrap()).unwrap();
    let deploy = &json["steps"][1];
    assert_eq!(
        deploy["command"],
        "echo token=${KUBE_TOKEN}; echo other=$MY_PASSPHRASE; exit 3"
    );
    let tail: Vec<&str> = deploy["output_tail"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|l| l.as_str())
        .collect();
    assert_eq!(tail, ["token=<redacted>", "other=<redacted>"]);
    let events = json["events"].as_array().unwrap();
    assert!(
        events
            .iter()
            .any(|e| e["line"] == "watching with <redacted>"),
        "{events:?}"
    );
}
