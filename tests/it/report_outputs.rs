//! Report outputs: each is written whatever became of the others, and a report that cannot be
//! written at the end is gapless's own failure (exit 5, not the usage error 2). Paths that
//! cannot be written at all are found before the load (see `cli_errors.rs`).

use std::time::Duration;

use crate::support::{Run, TestServer, temp_path};

#[test]
fn a_report_that_cannot_be_written_at_the_end_does_not_stop_the_others() {
    // The HTML report's directory exists when the run starts (so the check before the load
    // passes) and is removed while it runs.
    let doomed = temp_path("dir");
    std::fs::create_dir(&doomed).expect("create the doomed directory");
    let kept = temp_path("dir");
    std::fs::create_dir(&kept).expect("create the output directory");
    let html = doomed.join("report.html");
    let [json, markdown, junit, fortio] =
        ["result.json", "summary.md", "junit.xml", "fortio.json"].map(|f| kept.join(f));
    let server = TestServer::healthy();
    let path = |p: &std::path::Path| p.to_str().expect("UTF-8 temp path").to_string();
    let (code, stdout, stderr, _) = std::thread::scope(|scope| {
        // Once the load has begun (the check before it passed), the directory goes.
        scope.spawn(|| {
            let begun = std::time::Instant::now();
            while server.stats().requests() == 0 && begun.elapsed() < Duration::from_secs(30) {
                std::thread::sleep(Duration::from_millis(5));
            }
            std::fs::remove_dir_all(&doomed).expect("remove the doomed directory");
        });
        Run::new(&server.url())
            .qps(20)
            .duration("1s")
            .opt("--html", path(&html))
            .opt("--json", path(&json))
            .opt("--markdown", path(&markdown))
            .opt("--junit", path(&junit))
            .opt("--fortio-json", path(&fortio))
            .output()
    });
    assert_eq!(code, 5, "an internal failure, not a usage error: {stderr}");
    assert!(
        stderr.contains(&format!("gapless: cannot write report {}", html.display())),
        "{stderr}"
    );
    assert!(stdout.contains("PASS: every request succeeded"), "{stdout}");
    for written in [&json, &markdown, &junit, &fortio] {
        let text = std::fs::read_to_string(written)
            .unwrap_or_else(|e| panic!("{} was not written ({e})", written.display()));
        assert!(!text.is_empty(), "{} is empty", written.display());
    }
    let result: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).expect("the JSON result"))
            .expect("the JSON result parses");
    assert_eq!(
        result["verdict"]["exit_code"], 0,
        "the verdict itself passed"
    );
    let _ = std::fs::remove_dir_all(&kept);
}
