//! The release gates (`deploy/argo-rollouts/`, `deploy/flagger/`, `deploy/github-actions/`): no
//! cluster, no Argo Rollouts, no Flagger and no GitHub here, so every file is parsed (YAML,
//! duplicate keys refused), the objects are checked against each other (the Rollout and the Canary
//! name templates their directory defines, with the arguments those need; the Job analysis is an
//! inline step; the webhooks are of the blocking `bash` type), every gapless command line goes
//! through `gapless run --help` and gapless's own parser, and the commands run for real where
//! they can: the Job analysis's and the smoke webhook's against a local target, the workflow's
//! step script in bash with a stand-in kubectl.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use gapless::cli::{Cli, Command as Verb};
use saphyr::YamlOwned;
use serde_json::Value;

use super::{list, node, parse_yaml, read, repo, strings, text, try_node};
use crate::support::{self, GAPLESS, Reply, TestServer, needs, temp_path, u64_at};

// ---------------------------------------------------------------------------------------------
// Reading the files
// ---------------------------------------------------------------------------------------------

const DIRS: [&str; 3] = [
    "deploy/argo-rollouts",
    "deploy/flagger",
    "deploy/github-actions",
];

/// Every YAML file of the gate directories (`dir/file`), sorted.
fn yaml_files() -> Vec<String> {
    let mut files = Vec::new();
    for dir in DIRS {
        let entries =
            std::fs::read_dir(repo(dir)).unwrap_or_else(|e| panic!("cannot list {dir}: {e}"));
        for entry in entries {
            let name = entry.expect("a directory entry").file_name();
            let name = name.to_string_lossy();
            if name.ends_with(".yaml") || name.ends_with(".yml") {
                files.push(format!("{dir}/{name}"));
            }
        }
    }
    files.sort();
    files
}

fn docs(path: &str) -> Vec<YamlOwned> {
    parse_yaml(path, &read(path))
}

fn str_at<'a>(root: &'a YamlOwned, path: &str) -> Option<&'a str> {
    try_node(root, path).and_then(YamlOwned::as_str)
}

/// The document of `kind` named `name` in `path`.
fn object(path: &str, kind: &str, name: &str) -> YamlOwned {
    docs(path)
        .into_iter()
        .find(|d| str_at(d, "kind") == Some(kind) && str_at(d, "metadata.name") == Some(name))
        .unwrap_or_else(|| panic!("no {kind} {name} in {path}"))
}

/// Every document of `kind` in the directory `dir`, with its file.
fn objects_in(dir: &str, kind: &str) -> Vec<(String, YamlOwned)> {
    yaml_files()
        .into_iter()
        .filter(|f| f.starts_with(&format!("{dir}/")))
        .flat_map(|f| {
            docs(&f)
                .into_iter()
                .filter(|d| str_at(d, "kind") == Some(kind))
                .map(move |d| (f.clone(), d))
                .collect::<Vec<_>>()
        })
        .collect()
}

/// The items of the list at `path`, none if there is no such node.
fn items<'a>(root: &'a YamlOwned, path: &str) -> &'a [YamlOwned] {
    try_node(root, path)
        .and_then(YamlOwned::as_sequence)
        .map_or(&[], Vec::as_slice)
}

/// The words of a shell command (single and double quotes group, a backslash escapes the next
/// character, a backslash-newline continues the line, `#` starts a comment): enough for the
/// gates' commands, which use no other shell syntax.
fn shell_words(command: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word: Option<String> = None;
    let mut chars = command.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some('\n') | None => {}
                Some(next) => word.get_or_insert_with(String::new).push(next),
            },
            '\'' | '"' => {
                let w = word.get_or_insert_with(String::new);
                for q in chars.by_ref() {
                    if q == c {
                        break;
                    }
                    w.push(q);
                }
            }
            '#' if word.is_none() => {
                // A comment, to the end of its line.
                for n in chars.by_ref() {
                    if n == '\n' {
                        break;
                    }
                }
            }
            c if c.is_whitespace() => words.extend(word.take()),
            c => word.get_or_insert_with(String::new).push(c),
        }
    }
    words.extend(word);
    words
}

#[test]
fn shell_words_split_as_the_shell_does() {
    assert_eq!(
        shell_words(
            "# a comment\ngapless run \"$URL\" \\\n  --step-name 'a b' -- sh -c 'x && y' # why"
        ),
        [
            "gapless",
            "run",
            "$URL",
            "--step-name",
            "a b",
            "--",
            "sh",
            "-c",
            "x && y"
        ]
    );
}

/// `{{args.NAME}}` replaced by `args[NAME]` in `word`.
fn substitute(word: &str, args: &BTreeMap<String, String>) -> String {
    let mut out = word.to_string();
    for (name, value) in args {
        out = out.replace(&format!("{{{{args.{name}}}}}"), value);
    }
    out
}

/// The `{{args.NAME}}` names used in `text`.
fn args_used(text: &str) -> Vec<String> {
    text.split("{{args.")
        .skip(1)
        .map(|rest| {
            rest.split_once("}}")
                .unwrap_or_else(|| panic!("an unclosed {{{{args. in {text}"))
                .0
                .to_string()
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Argo Rollouts
// ---------------------------------------------------------------------------------------------

const ARGO: &str = "deploy/argo-rollouts";

fn rollout() -> YamlOwned {
    object(&format!("{ARGO}/rollout.yaml"), "Rollout", "web")
}

/// The AnalysisTemplates of the directory, by name.
fn templates() -> BTreeMap<String, YamlOwned> {
    objects_in(ARGO, "AnalysisTemplate")
        .into_iter()
        .map(|(_, t)| (text(&t, "metadata.name").to_string(), t))
        .collect()
}

/// A template's arguments: name and default value (`None`: the Rollout must give it).
fn template_args(template: &YamlOwned) -> BTreeMap<String, Option<String>> {
    items(template, "spec.args")
        .iter()
        .map(|a| {
            (
                text(a, "name").to_string(),
                str_at(a, "value").map(str::to_string),
            )
        })
        .collect()
}

/// Where the Rollout names an analysis: `(inline, template names, the args it gives)`.
struct Reference {
    inline: bool,
    templates: Vec<String>,
    args: BTreeMap<String, YamlOwned>,
}

fn references(rollout: &YamlOwned) -> Vec<Reference> {
    let reference = |analysis: &YamlOwned, inline: bool| Reference {
        inline,
        templates: items(analysis, "templates")
            .iter()
            .map(|t| text(t, "templateName").to_string())
            .collect(),
        args: items(analysis, "args")
            .iter()
            .map(|a| (text(a, "name").to_string(), a.clone()))
            .collect(),
    };
    let mut found = Vec::new();
    if let Some(background) = try_node(rollout, "spec.strategy.canary.analysis") {
        found.push(reference(background, false));
    }
    for step in items(rollout, "spec.strategy.canary.steps") {
        if let Some(inline) = try_node(step, "analysis") {
            found.push(reference(inline, true));
        }
    }
    found
}

#[test]
fn the_rollout_names_the_templates_of_its_directory_with_the_args_they_need() {
    let templates = templates();
    for name in ["gapless-job", "gapless-web", "gapless-prometheus"] {
        assert!(templates.contains_key(name), "no AnalysisTemplate {name}");
    }
    let rollout = rollout();
    let references = references(&rollout);
    let mut used = Vec::new();
    for r in &references {
        for name in &r.templates {
            let template = templates
                .get(name)
                .unwrap_or_else(|| panic!("the Rollout names {name}, which {ARGO} lacks"));
            used.push(name.clone());
            let declared = template_args(template);
            // Every argument without a default is given, and nothing the template lacks.
            for (arg, default) in &declared {
                assert!(
                    default.is_some() || r.args.contains_key(arg),
                    "{name} needs {arg}, which the Rollout does not give"
                );
            }
            for arg in r.args.keys() {
                // Several templates of one analysis share its args; one of them takes each.
                assert!(
                    r.templates
                        .iter()
                        .any(|t| template_args(&templates[t]).contains_key(arg)),
                    "the Rollout gives {arg} to {:?}, which none of them declares",
                    r.templates
                );
            }
        }
    }
    for name in templates.keys() {
        assert!(used.contains(name), "the Rollout never uses {name}");
    }
    // Every {{args.X}} a template uses is one it declares.
    for (name, template) in &templates {
        let declared = template_args(template);
        let yaml = read_template_text(name);
        for arg in args_used(&yaml) {
            assert!(
                declared.contains_key(&arg),
                "{name} uses {{{{args.{arg}}}}} undeclared"
            );
        }
    }
}

/// The text of the file that defines AnalysisTemplate `name`.
fn read_template_text(name: &str) -> String {
    let (file, _) = objects_in(ARGO, "AnalysisTemplate")
        .into_iter()
        .find(|(_, t)| text(t, "metadata.name") == name)
        .unwrap_or_else(|| panic!("no AnalysisTemplate {name}"));
    read(&file)
}

#[test]
fn the_job_analysis_is_an_inline_step_never_background() {
    // A background AnalysisRun is terminated when the Rollout reaches its last step, and a Job
    // measurement cut short then does not fail it: the gapless Job's verdict must be waited for.
    let rollout = rollout();
    let references = references(&rollout);
    let job_refs: Vec<&Reference> = references
        .iter()
        .filter(|r| r.templates.iter().any(|t| t == "gapless-job"))
        .collect();
    assert!(!job_refs.is_empty(), "no step runs gapless-job");
    assert!(
        job_refs.iter().all(|r| r.inline),
        "gapless-job is used as background analysis"
    );
    // Each inline step comes after a weight change, whose weight it loads.
    let steps = items(&rollout, "spec.strategy.canary.steps");
    for (i, step) in steps.iter().enumerate() {
        if try_node(step, "analysis").is_some() {
            assert!(
                i > 0 && try_node(&steps[i - 1], "setWeight").is_some(),
                "step {i}: an analysis that does not follow a setWeight"
            );
        }
    }
    // The live-state templates are the background ones.
    let background = references.iter().find(|r| !r.inline).expect("background");
    assert_eq!(background.templates, ["gapless-web", "gapless-prometheus"]);
    // The namespace of the watcher's Service comes from the Rollout's own.
    assert_eq!(
        text(
            &background.args["namespace"],
            "valueFrom.fieldRef.fieldPath"
        ),
        "metadata.namespace"
    );
}

#[test]
fn the_job_analysis_fails_on_the_exit_code_of_one_unretried_run() {
    let template = &templates()["gapless-job"];
    let metrics = list(template, "spec.metrics");
    assert_eq!(metrics.len(), 1);
    let metric = &metrics[0];
    assert_eq!(super::int(metric, "count"), 1);
    assert_eq!(super::int(metric, "failureLimit"), 0);
    let job = node(metric, "provider.job.spec");
    assert_eq!(super::int(job, "backoffLimit"), 0);
    assert_eq!(text(job, "template.spec.restartPolicy"), "Never");
    // The deadline covers the load (the default duration) with room for the start and the report.
    let duration = template_args(template)["duration"]
        .clone()
        .expect("a default duration");
    let deadline = u64::try_from(super::int(job, "activeDeadlineSeconds")).expect("positive");
    assert!(deadline >= super::duration(&duration).as_secs() + 60);
    // The URL is the Service in front of both versions, which rollout.yaml defines.
    let rollout = rollout();
    let services: Vec<String> =
        super::parse_yaml("rollout.yaml", &read(&format!("{ARGO}/rollout.yaml")))
            .iter()
            .filter(|d| str_at(d, "kind") == Some("Service"))
            .map(|d| text(d, "metadata.name").to_string())
            .collect();
    for service in [
        text(&rollout, "spec.strategy.canary.stableService"),
        text(&rollout, "spec.strategy.canary.canaryService"),
    ] {
        assert!(
            services.iter().any(|s| s == service),
            "no Service {service}"
        );
    }
    for r in references(&rollout).iter().filter(|r| r.inline) {
        let url = text(&r.args["url"], "value");
        let host = url
            .strip_prefix("http://")
            .and_then(|u| u.split(['/', ':']).next())
            .unwrap_or_else(|| panic!("{url}"));
        assert!(
            services.iter().any(|s| s == host),
            "{url}: no Service {host}"
        );
        // That Service selects every pod of the Rollout, stable and canary.
        let service = object(&format!("{ARGO}/rollout.yaml"), "Service", host);
        assert_eq!(
            node(&service, "spec.selector"),
            node(&rollout, "spec.selector.matchLabels"),
            "{host} should select all of the Rollout's pods"
        );
    }
}

/// watch.yaml's Job, and the value after `flag` in its args.
fn watcher_arg(flag: &str) -> String {
    let job = object(&format!("{ARGO}/watch.yaml"), "Job", "gapless-watch");
    let args = strings(&job, "spec.template.spec.containers.0.args");
    super::arg_after(&args, flag).to_string()
}

#[test]
fn the_web_and_prometheus_analyses_read_the_watcher() {
    let path = format!("{ARGO}/watch.yaml");
    let service = object(&path, "Service", "gapless-watch");
    let job = object(&path, "Job", "gapless-watch");
    let port = super::int(&service, "spec.ports.0.port");
    // The Service reaches the listener: all interfaces (a bare port is loopback only), its port.
    assert_eq!(watcher_arg("--metrics-listen"), format!("0.0.0.0:{port}"));
    assert_eq!(
        node(&service, "spec.selector"),
        node(&job, "spec.template.metadata.labels")
    );
    assert!(!watcher_arg("--metrics-linger").is_empty());
    assert_eq!(super::int(&job, "spec.backoffLimit"), 0);

    let templates = templates();
    let web = &templates["gapless-web"];
    let metric = &list(web, "spec.metrics")[0];
    assert_eq!(
        text(metric, "provider.web.url"),
        format!("http://gapless-watch.{{{{args.namespace}}}}.svc:{port}/status")
    );
    assert_eq!(text(metric, "provider.web.jsonPath"), "{$.passed}");
    assert_eq!(text(metric, "successCondition"), "result == true");
    assert_eq!(super::int(metric, "failureLimit"), 0);

    let prometheus = &templates["gapless-prometheus"];
    let metric = &list(prometheus, "spec.metrics")[0];
    let query = text(metric, "provider.prometheus.query");
    assert!(
        query.contains("gapless_requests_total{outcome=\"failed\""),
        "{query}"
    );
    assert_eq!(super::int(metric, "failureLimit"), 0);
    // The default selector is the label the ServiceMonitor gives: job = the Service's name.
    let selector = template_args(prometheus)["selector"]
        .clone()
        .expect("a default");
    assert_eq!(selector, "job=\"gapless-watch\"");
    let monitor = object(
        &format!("{ARGO}/analysis-prometheus.yaml"),
        "ServiceMonitor",
        "gapless-watch",
    );
    assert_eq!(
        node(&monitor, "spec.selector.matchLabels"),
        node(&service, "metadata.labels")
    );
    assert_eq!(
        text(&monitor, "spec.endpoints.0.port"),
        text(&service, "spec.ports.0.name")
    );
}

// ---------------------------------------------------------------------------------------------
// Flagger
// ---------------------------------------------------------------------------------------------

const FLAGGER: &str = "deploy/flagger";

fn canary() -> YamlOwned {
    object(&format!("{FLAGGER}/canary.yaml"), "Canary", "web")
}

#[test]
fn the_canary_names_its_metric_template() {
    let canary = canary();
    let namespace = text(&canary, "metadata.namespace");
    let templates = objects_in(FLAGGER, "MetricTemplate");
    let metrics = list(&canary, "spec.analysis.metrics");
    assert!(!metrics.is_empty());
    for metric in metrics {
        let name = text(metric, "templateRef.name");
        let (_, template) = templates
            .iter()
            .find(|(_, t)| text(t, "metadata.name") == name)
            .unwrap_or_else(|| {
                panic!("the Canary names MetricTemplate {name}, which {FLAGGER} lacks")
            });
        let template_namespace = text(template, "metadata.namespace");
        assert_eq!(
            str_at(metric, "templateRef.namespace").unwrap_or(namespace),
            template_namespace
        );
        let query = text(template, "spec.query");
        assert!(
            query.contains("gapless_requests_total{") && query.contains("outcome=\"failed\""),
            "{query}"
        );
        // Not one failed request.
        assert_eq!(super::int(metric, "thresholdRange.max"), 0);
    }
}

/// The Canary's webhooks: `(name, type, metadata.type, metadata.cmd, timeout)`.
fn webhooks() -> Vec<(String, String, String, String, String)> {
    list(&canary(), "spec.analysis.webhooks")
        .iter()
        .map(|w| {
            (
                text(w, "name").to_string(),
                text(w, "type").to_string(),
                str_at(w, "metadata.type").unwrap_or("cmd").to_string(),
                text(w, "metadata.cmd").to_string(),
                text(w, "timeout").to_string(),
            )
        })
        .collect()
}

#[test]
fn every_webhook_blocks_on_its_command() {
    // The load tester's default `cmd` type answers 202 at once and never reports how the command
    // ended: a gapless run there could never fail the canary.
    let hooks = webhooks();
    let types: Vec<&str> = hooks.iter().map(|h| h.1.as_str()).collect();
    for needed in ["pre-rollout", "rollout"] {
        assert!(
            types.contains(&needed),
            "no {needed} webhook running gapless"
        );
    }
    for (name, _, task, cmd, timeout) in &hooks {
        assert_eq!(task, "bash", "{name}: metadata.type");
        // The webhook waits for the run: its timeout covers --duration with a margin.
        let words = shell_words(cmd);
        if words.first().map(String::as_str) == Some("gapless") {
            let load = super::duration(super::arg_after(&words, "--duration"));
            let limit = super::duration(timeout);
            assert!(
                limit >= load + std::time::Duration::from_secs(10),
                "{name}: timeout {timeout} does not cover --duration {load:?}"
            );
        }
    }
}

#[test]
fn the_webhooks_load_the_canarys_services_and_push_where_the_template_reads() {
    let canary = canary();
    let name = text(&canary, "metadata.name");
    let namespace = text(&canary, "metadata.namespace");
    let hooks = webhooks();
    let hook = |kind: &str| {
        hooks
            .iter()
            .find(|h| h.1 == kind)
            .map(|h| shell_words(&h.3))
            .unwrap_or_else(|| panic!("no {kind} webhook"))
    };
    // Before traffic: the canary's own Service; during the analysis: the one that splits it.
    assert_eq!(
        hook("pre-rollout")[2],
        format!("http://{name}-canary.{namespace}/")
    );
    assert_eq!(hook("rollout")[2], format!("http://{name}.{namespace}/"));
    // The push goes to a Pushgateway's base URL (gapless adds /metrics/job/gapless/run_id/ID),
    // and the MetricTemplate reads job gapless, only the runs pushed within two analysis
    // intervals.
    let rollout = hook("rollout");
    let push = super::arg_after(&rollout, "--metrics-push");
    let base = push
        .strip_prefix("http://")
        .unwrap_or_else(|| panic!("{push}"));
    assert!(
        !base.trim_end_matches('/').contains('/'),
        "{push}: a base URL"
    );
    let template = object(
        &format!("{FLAGGER}/metric-template.yaml"),
        "MetricTemplate",
        "gapless-failed-requests",
    );
    let query = text(&template, "spec.query");
    assert!(
        query.contains("job=\"gapless\", outcome=\"failed\""),
        "{query}"
    );
    let window: u64 = query
        .split("push_time_seconds{job=\"gapless\"} < ")
        .nth(1)
        .and_then(|rest| rest.split(')').next())
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no push_time_seconds window in {query}"));
    let interval = super::duration(text(&canary, "spec.analysis.interval")).as_secs();
    assert_eq!(window, 2 * interval, "{query}");
    assert_eq!(
        query.matches(&format!("< {window})")).count(),
        2,
        "both halves of the query use the same window: {query}"
    );
    // The load tester's address is the same in every hook.
    let urls: Vec<&str> = list(&canary, "spec.analysis.webhooks")
        .iter()
        .map(|w| text(w, "url"))
        .collect();
    assert!(
        urls.iter()
            .all(|u| *u == format!("http://flagger-loadtester.{namespace}/")),
        "{urls:?}"
    );
}

#[test]
fn the_load_tester_image_builds_gapless_as_ci_does() {
    let dockerfile = read(&format!("{FLAGGER}/loadtester.Dockerfile"));
    let builds = super::cargo_builds(&dockerfile);
    assert_eq!(builds, super::cargo_builds(&read(".ci/run")));
    assert!(
        dockerfile
            .lines()
            .any(|l| l.starts_with("FROM ghcr.io/fluxcd/flagger-loadtester:")),
        "the final stage is the load tester's image"
    );
    assert!(
        dockerfile.contains("COPY --from=build /src/target/release/gapless /usr/local/bin/gapless")
    );
}

// ---------------------------------------------------------------------------------------------
// GitHub Actions
// ---------------------------------------------------------------------------------------------

const WORKFLOW: &str = "deploy/github-actions/release-gate.yml";

fn workflow() -> YamlOwned {
    let docs = docs(WORKFLOW);
    assert_eq!(docs.len(), 1);
    docs.into_iter().next().expect("one document")
}

/// The workflow's steps.
fn steps() -> Vec<YamlOwned> {
    list(&workflow(), "jobs.release.steps").to_vec()
}

/// The step that runs gapless, and its script.
fn gapless_step() -> (YamlOwned, String) {
    let steps = steps();
    let mut found = steps
        .iter()
        .filter(|s| str_at(s, "run").is_some_and(|r| r.contains("gapless run")));
    let step = found.next().expect("a step runs gapless run").clone();
    assert!(found.next().is_none(), "one step runs gapless");
    let script = text(&step, "run").to_string();
    (step, script)
}

/// The step that `uses` an action `name@...`.
fn action(name: &str) -> YamlOwned {
    steps()
        .into_iter()
        .find(|s| str_at(s, "uses").is_some_and(|u| u.starts_with(&format!("{name}@"))))
        .unwrap_or_else(|| panic!("no step uses {name}"))
}

#[test]
fn the_workflow_gates_on_the_exit_code_and_keeps_every_report() {
    let workflow = workflow();
    assert!(try_node(&workflow, "on").is_some() && try_node(&workflow, "name").is_some());
    let (step, script) = gapless_step();
    // The exit code is the gate: nothing may swallow it.
    assert!(try_node(&step, "continue-on-error").is_none());
    assert!(
        !script.contains("|| true") && !script.contains("set +e"),
        "{script}"
    );
    let words = shell_words(&script);
    let report = |flag: &str| super::arg_after(&words, flag).to_string();
    // JUnit, for the test reporter, whatever the verdict.
    let reporter = action("dorny/test-reporter");
    assert_eq!(text(&reporter, "with.path"), report("--junit"));
    assert_eq!(text(&reporter, "with.reporter"), "java-junit");
    assert_eq!(text(&reporter, "if"), "${{ !cancelled() }}");
    // The JSON and the HTML, as an artifact, whatever the verdict.
    let upload = action("actions/upload-artifact");
    let paths: Vec<&str> = text(&upload, "with.path").lines().collect();
    for flag in ["--json", "--html", "--markdown"] {
        assert!(paths.contains(&report(flag).as_str()), "{flag}: {paths:?}");
    }
    assert_eq!(text(&upload, "if"), "${{ !cancelled() }}");
    // The test reporter's check run needs its permission.
    assert_eq!(text(&workflow, "permissions.checks"), "write");
}

#[test]
fn the_workflows_scripts_parse() {
    for step in steps() {
        if let Some(script) = str_at(&step, "run") {
            let out = Command::new("bash")
                .args(["-n", "-c", script])
                .output()
                .expect("run bash");
            assert!(
                out.status.success(),
                "bash -n: {script}\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}

#[test]
#[ignore = "needs shellcheck"]
fn the_workflows_scripts_pass_shellcheck() {
    let shellcheck = needs("shellcheck");
    for step in steps() {
        if let Some(script) = str_at(&step, "run") {
            let file = support::TempFile::with("sh", &format!("#!/usr/bin/env bash\n{script}"));
            let out = Command::new(&shellcheck)
                .arg(file.path())
                .output()
                .expect("run shellcheck");
            assert!(
                out.status.success(),
                "shellcheck: {script}\n{}",
                String::from_utf8_lossy(&out.stdout)
            );
        }
    }
}

/// A stand-in kubectl: records its calls in `$KUBECTL_CALLS`; when `$BROKEN` names a file,
/// `set image` creates it and `rollout status` removes it 300 ms later (a release that breaks the
/// service for a while, to a target that answers 503 while the file exists).
const FAKE_KUBECTL: &str = r#"#!/bin/sh
printf '%s\n' "$*" >>"$KUBECTL_CALLS"
if [ -n "${BROKEN:-}" ]; then
  case "$1" in
    set) touch "$BROKEN" ;;
    rollout) sleep 0.3; rm -f "$BROKEN" ;;
  esac
fi
"#;

/// The workflow's step script with `--warmup` and `--cooldown` shortened, run by bash in a
/// fresh directory with the gapless under test and a stand-in kubectl on PATH, loading `url`
/// (`broken`: the file the stand-in's release creates for a while). Returns its output, the
/// directory, and the stand-in's recorded calls.
fn run_workflow_step(url: &str, broken: Option<&Path>) -> (Output, PathBuf, String) {
    let (_, script) = gapless_step();
    let mut script = script;
    for (flag, short) in [("--warmup", "500ms"), ("--cooldown", "500ms")] {
        let words = shell_words(&script);
        let value = super::arg_after(&words, flag).to_string();
        let from = format!("{flag} {value}");
        assert_eq!(script.matches(&from).count(), 1, "{from}");
        script = script.replace(&from, &format!("{flag} {short}"));
    }
    let dir = temp_path("workflow");
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).expect("temp dir");
    let kubectl = bin.join("kubectl");
    std::fs::write(&kubectl, FAKE_KUBECTL).expect("write the stand-in kubectl");
    std::fs::set_permissions(&kubectl, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    std::os::unix::fs::symlink(GAPLESS, bin.join("gapless")).expect("link gapless");
    let summary = dir.join("summary.md");
    let calls = dir.join("kubectl-calls");
    let _machine = support::shared();
    let mut command = Command::new("bash");
    if let Some(broken) = broken {
        command.env("BROKEN", broken);
    }
    let out = command
        .args(["-e", "-c", &script])
        .current_dir(&dir)
        .env(
            "PATH",
            format!(
                "{}:{}",
                bin.display(),
                std::env::var("PATH").unwrap_or_default()
            ),
        )
        .env("TARGET_URL", url)
        .env("IMAGE", "registry.example.test/web:v2")
        .env("GITHUB_STEP_SUMMARY", &summary)
        .env("KUBECTL_CALLS", &calls)
        .stdin(Stdio::null())
        .output()
        .expect("run bash");
    let calls = std::fs::read_to_string(calls).unwrap_or_default();
    (out, dir, calls)
}

fn json_file(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn the_workflow_step_passes_a_clean_release_and_writes_every_report() {
    let server = TestServer::healthy();
    let (out, dir, calls) = run_workflow_step(&server.url(), None);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    // The rollout command ran, with the image of the input.
    assert_eq!(
        calls,
        "set image deployment/web web=registry.example.test/web:v2\n\
         rollout status deployment/web --timeout 9m\n"
    );
    let json = json_file(&dir.join("gapless.json"));
    assert_eq!(u64_at(&json, "/requests/failed"), 0);
    assert_eq!(
        json["steps"][0]["name"],
        "deploy registry.example.test/web:v2"
    );
    let markdown = std::fs::read_to_string(dir.join("gapless.md")).expect("gapless.md");
    // The summary on the run's page is the Markdown report.
    assert_eq!(
        std::fs::read_to_string(dir.join("summary.md")).expect("the step summary"),
        markdown
    );
    let junit = std::fs::read_to_string(dir.join("gapless-junit.xml")).expect("JUnit");
    let junit = roxmltree::Document::parse(&junit).expect("JUnit is XML");
    assert!(junit.descendants().any(|n| n.has_tag_name("testcase")));
    assert!(
        std::fs::read_to_string(dir.join("gapless.html"))
            .expect("gapless.html")
            .starts_with("<!DOCTYPE html>")
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn the_workflow_step_fails_a_release_that_drops_requests_and_still_writes_the_reports() {
    // 503 while the stand-in's release has the file: from `set image` to 300 ms into `rollout
    // status`.
    let broken = temp_path("broken");
    let flag = broken.clone();
    let server = TestServer::http(move |_| {
        if flag.exists() {
            Reply::status(503)
        } else {
            Reply::ok()
        }
    });
    let (out, dir, _) = run_workflow_step(&server.url(), Some(&broken));
    let stderr = String::from_utf8_lossy(&out.stderr);
    // Dropped requests: exit 1, so the step and the job fail.
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let json = json_file(&dir.join("gapless.json"));
    let failed = u64_at(&json, "/requests/failed");
    // 200 qps over at least the 300 ms the release broke the service.
    assert!(failed >= 50, "{failed} failed");
    assert_eq!(
        json["steps"][0]["status"], "ok",
        "the rollout command itself passed"
    );
    for file in [
        "gapless.md",
        "gapless-junit.xml",
        "gapless.html",
        "summary.md",
    ] {
        assert!(dir.join(file).exists(), "{file}");
    }
    let junit = std::fs::read_to_string(dir.join("gapless-junit.xml")).expect("JUnit");
    assert!(
        junit.contains("<failure"),
        "a failed criterion for the reporter: {junit}"
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn the_workflow_step_refuses_a_service_already_failing_and_still_writes_the_reports() {
    let server = TestServer::http(|_| Reply::status(503));
    let (out, dir, calls) = run_workflow_step(&server.url(), None);
    // Failing before the rollout: exit 4, the release is never started.
    assert_eq!(
        out.status.code(),
        Some(4),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(calls, "", "kubectl ran");
    let json = json_file(&dir.join("gapless.json"));
    assert!(u64_at(&json, "/requests/failed") > 0);
    for file in [
        "gapless.md",
        "gapless-junit.xml",
        "gapless.html",
        "summary.md",
    ] {
        assert!(dir.join(file).exists(), "{file}");
    }
    let _ = std::fs::remove_dir_all(dir);
}

// ---------------------------------------------------------------------------------------------
// Every gapless command line of the gates
// ---------------------------------------------------------------------------------------------

/// A `gapless run` the gates give: where, and its words after `gapless` (`run ...`, with any
/// `-- COMMAND`), placeholders filled with the values they take (an Argo template's defaults and
/// the Rollout's args, the workflow's environment).
struct Invocation {
    origin: String,
    argv: Vec<String>,
}

impl Invocation {
    /// The `--flags` before any `-- COMMAND`.
    fn flags(&self) -> Vec<String> {
        self.argv
            .iter()
            .take_while(|w| *w != "--")
            .filter(|w| w.starts_with("--"))
            .map(|w| w.split('=').next().unwrap_or(w).to_string())
            .collect()
    }
}

fn invocations() -> Vec<Invocation> {
    let mut found = Vec::new();
    // The Job analysis: its container args, with the template's defaults and the url the
    // Rollout's first inline step gives.
    let templates = templates();
    let job = &templates["gapless-job"];
    let mut args: BTreeMap<String, String> = template_args(job)
        .into_iter()
        .filter_map(|(k, v)| Some((k, v?)))
        .collect();
    let rollout = rollout();
    let first = references(&rollout)
        .into_iter()
        .find(|r| r.inline)
        .expect("an inline analysis");
    for (name, arg) in &first.args {
        args.insert(name.clone(), text(arg, "value").to_string());
    }
    for metric in list(job, "spec.metrics") {
        let argv = strings(metric, "provider.job.spec.template.spec.containers.0.args");
        found.push(Invocation {
            origin: "gapless-job".into(),
            argv: argv.iter().map(|w| substitute(w, &args)).collect(),
        });
    }
    // The watcher.
    let watcher = object(&format!("{ARGO}/watch.yaml"), "Job", "gapless-watch");
    found.push(Invocation {
        origin: "watch.yaml".into(),
        argv: strings(&watcher, "spec.template.spec.containers.0.args"),
    });
    // Flagger's webhooks.
    for (name, _, _, cmd, _) in webhooks() {
        let words = shell_words(&cmd);
        if words.first().map(String::as_str) == Some("gapless") {
            found.push(Invocation {
                origin: format!("webhook {name}"),
                argv: words[1..].to_vec(),
            });
        }
    }
    // The workflow's step.
    let (_, script) = gapless_step();
    let words = shell_words(&script);
    let env = [
        ("$TARGET_URL", "https://web.example.test/healthz"),
        ("$IMAGE", "registry.example.test/web:v2"),
    ];
    found.push(Invocation {
        origin: WORKFLOW.into(),
        argv: words[1..]
            .iter()
            .map(|w| {
                env.iter()
                    .fold(w.clone(), |w, (var, value)| w.replace(var, value))
            })
            .collect(),
    });
    for i in &found {
        assert_eq!(
            i.argv.first().map(String::as_str),
            Some("run"),
            "{}",
            i.origin
        );
    }
    found
}

#[test]
fn every_flag_the_gates_give_gapless_exists() {
    // The watcher and the Flagger rollout hook use the live-metrics flags (--metrics-listen,
    // --metrics-linger, --metrics-push): a renamed one fails this, named with its file.
    let out = Command::new(GAPLESS)
        .args(["run", "--help"])
        .output()
        .expect("run gapless");
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    let invocations = invocations();
    let given: Vec<String> = invocations.iter().flat_map(Invocation::flags).collect();
    for flag in [
        "--metrics-listen",
        "--metrics-linger",
        "--metrics-push",
        "--junit",
    ] {
        assert!(
            given.iter().any(|g| g == flag),
            "the gates no longer give {flag}"
        );
    }
    let missing: Vec<String> = invocations
        .iter()
        .flat_map(|i| {
            i.flags()
                .into_iter()
                .filter(|f| {
                    !help
                        .split(|c: char| c.is_whitespace() || c == ',')
                        .any(|w| w == f)
                })
                .map(|f| format!("{}: {f}", i.origin))
                .collect::<Vec<_>>()
        })
        .collect();
    assert!(
        missing.is_empty(),
        "the gates give flags `gapless run --help` does not list: {missing:#?}"
    );
}

#[test]
fn every_gapless_command_line_of_the_gates_is_a_valid_run() {
    // Each one checked, so that one that fails does not hide another.
    let mut invalid = Vec::new();
    for i in invocations() {
        let argv = std::iter::once("gapless".to_string()).chain(i.argv.clone());
        match Cli::parse_from(argv) {
            Ok(Cli {
                command: Verb::Run(args),
            }) => {
                if let Err(e) = args.validate(None, &|_| None) {
                    invalid.push(format!("{}: {:?}: {e}", i.origin, i.argv));
                }
            }
            Ok(_) => invalid.push(format!("{}: not gapless run", i.origin)),
            Err(e) => invalid.push(format!(
                "{}: {}",
                i.origin,
                e.to_string().lines().next().unwrap_or_default()
            )),
        }
    }
    assert!(invalid.is_empty(), "{invalid:#?}");
}

/// `argv` with the URL (its first word after `run`) replaced and the value of `--duration` set.
fn local(argv: &[String], url: &str, duration: &str) -> Vec<String> {
    let mut argv = argv.to_vec();
    argv[1] = url.to_string();
    let i = argv
        .iter()
        .position(|a| a == "--duration")
        .expect("--duration")
        + 1;
    argv[i] = duration.to_string();
    argv
}

#[test]
fn the_job_analysis_and_the_smoke_webhook_pass_a_healthy_target_and_fail_a_broken_one() {
    let invocations = invocations();
    let job = invocations
        .iter()
        .find(|i| i.origin == "gapless-job")
        .expect("the Job analysis");
    let qps: u64 = super::arg_after(&job.argv, "--qps")
        .parse()
        .expect("a number");
    // The Job's container runs exactly these args: exit 0 completes the Job (the measurement
    // passes), anything else fails it.
    let healthy = TestServer::healthy();
    let argv = local(&job.argv, &healthy.url(), "1s");
    let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
    let (code, json) = support::run_json(&argv);
    assert_eq!(code, 0, "{json}");
    assert_eq!(u64_at(&json, "/requests/total"), qps);
    assert_eq!(u64_at(&json, "/requests/ok"), qps);
    let broken = TestServer::http(|_| Reply::status(503));
    let argv = local(&job.argv, &broken.url(), "1s");
    let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
    let (code, json) = support::run_json(&argv);
    assert_eq!(code, 1, "{json}");
    assert_eq!(u64_at(&json, "/requests/failed"), qps);

    // The load tester runs a bash webhook's command with `bash -c` and answers 500 unless it
    // exits 0.
    let (_, _, _, cmd, _) = webhooks()
        .into_iter()
        .find(|h| h.1 == "pre-rollout")
        .expect("the smoke webhook");
    let words = shell_words(&cmd);
    let run = |url: &str| {
        let local = local(&words[1..], url, "1s");
        let command = format!("gapless {}", local.join(" "));
        let _machine = support::shared();
        Command::new("bash")
            .args(["-c", &command])
            .env("PATH", path_with_gapless())
            .stdin(Stdio::null())
            .output()
            .expect("run bash")
            .status
            .code()
    };
    assert_eq!(run(&healthy.url()), Some(0));
    assert_eq!(run(&broken.url()), Some(1));
}

/// `GET path` from `addr` over HTTP/1.0 (no chunked body): the body, or `None` if nothing listens
/// or the answer is not a 200.
fn http_get(addr: std::net::SocketAddr, path: &str) -> Option<String> {
    use std::io::{Read, Write};
    let mut stream =
        std::net::TcpStream::connect_timeout(&addr, std::time::Duration::from_secs(1)).ok()?;
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).ok()?;
    let (head, body) = answer.split_once("\r\n\r\n")?;
    let ok = head.starts_with("HTTP/1.1 200") || head.starts_with("HTTP/1.0 200");
    ok.then(|| body.to_string())
}

/// The watcher's command line (watch.yaml) against `url` for 1 s, listening on a free loopback
/// port instead of all interfaces: polls `/status` until the verdict is in, then reads
/// `/metrics` while it lingers. Returns the final `/status`, the `/metrics` text and the exit
/// code.
fn watch(url: &str) -> (Value, String, Option<i32>) {
    let invocations = invocations();
    let watcher = invocations
        .iter()
        .find(|i| i.origin == "watch.yaml")
        .expect("the watcher");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let mut argv = local(&watcher.argv, url, "1s");
    for (flag, value) in [
        ("--metrics-listen", addr.to_string()),
        ("--metrics-linger", "3s".to_string()),
    ] {
        let i = argv
            .iter()
            .position(|a| a == flag)
            .unwrap_or_else(|| panic!("the watcher gives {flag}"));
        argv[i + 1] = value;
    }
    let _machine = support::shared();
    let stderr = support::TempFile::new("err");
    let mut child = Command::new(GAPLESS)
        .args(&argv)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(stderr.path()).expect("a stderr file"))
        .spawn()
        .expect("run gapless");
    let started = std::time::Instant::now();
    let status = loop {
        let status = http_get(addr, "/status")
            .map(|body| serde_json::from_str::<Value>(&body).expect("/status is JSON"));
        if let Some(status) = status.filter(|s| s["finished"] == true) {
            break status;
        }
        if let Some(exit) = child.try_wait().expect("wait for gapless") {
            panic!(
                "gapless {argv:?} exited {exit} before /status said finished:\n{}",
                std::fs::read_to_string(stderr.path()).unwrap_or_default()
            );
        }
        if started.elapsed() > std::time::Duration::from_secs(15) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("no finished /status on {addr} within 15 s");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let metrics = http_get(addr, "/metrics").expect("/metrics while lingering");
    let code = child.wait().expect("wait for gapless").code();
    (status, metrics, code)
}

/// The value of the series `name{...labels...}` of `metrics` whose labels include `labels`.
fn series(metrics: &str, name: &str, labels: &[&str]) -> Option<f64> {
    metrics.lines().find_map(|line| {
        let rest = line.strip_prefix(name)?.strip_prefix('{')?;
        let (set, value) = rest.split_once("} ")?;
        labels
            .iter()
            .all(|l| set.split(',').any(|s| s == *l))
            .then(|| value.split(' ').next()?.parse().ok())?
    })
}

#[test]
fn the_watcher_answers_what_the_web_and_prometheus_analyses_read() {
    // The names the AnalysisTemplates read (`passed`, gapless_requests_total by outcome), from
    // the watcher's own command line.
    let healthy = TestServer::healthy();
    let (status, metrics, code) = watch(&healthy.url());
    assert_eq!(code, Some(0));
    // gapless-web: `{$.passed}` is a JSON boolean that `result == true` accepts.
    assert_eq!(status["passed"], true, "{status}");
    assert_eq!(status["ok"], 100);
    // gapless-prometheus: gapless_requests_total by outcome; no failed request counted.
    assert_eq!(
        series(&metrics, "gapless_requests_total", &["outcome=\"ok\""]),
        Some(100.0),
        "{metrics}"
    );
    assert_eq!(
        series(&metrics, "gapless_requests_total", &["outcome=\"failed\""]).unwrap_or(0.0),
        0.0
    );

    let broken = TestServer::http(|_| Reply::status(503));
    let (status, metrics, code) = watch(&broken.url());
    assert_eq!(code, Some(1));
    assert_eq!(status["passed"], false, "{status}");
    assert_eq!(
        series(&metrics, "gapless_requests_total", &["outcome=\"failed\""]),
        Some(100.0),
        "{metrics}"
    );
}

/// PATH with the gapless under test first.
fn path_with_gapless() -> String {
    let dir = Path::new(GAPLESS).parent().expect("the binary's directory");
    format!(
        "{}:{}",
        dir.display(),
        std::env::var("PATH").unwrap_or_default()
    )
}

// ---------------------------------------------------------------------------------------------
// Every file
// ---------------------------------------------------------------------------------------------

#[test]
fn every_gate_file_parses() {
    let files = yaml_files();
    for expected in [
        "deploy/argo-rollouts/analysis-job.yaml",
        "deploy/argo-rollouts/analysis-web.yaml",
        "deploy/argo-rollouts/analysis-prometheus.yaml",
        "deploy/argo-rollouts/rollout.yaml",
        "deploy/argo-rollouts/watch.yaml",
        "deploy/flagger/canary.yaml",
        "deploy/flagger/metric-template.yaml",
        WORKFLOW,
    ] {
        assert!(files.iter().any(|f| f == expected), "no {expected}");
    }
    for file in &files {
        let docs = docs(file);
        assert!(!docs.is_empty(), "{file} is empty");
        if file.as_str() == WORKFLOW {
            continue;
        }
        for doc in &docs {
            let kind = text(doc, "kind");
            assert!(!text(doc, "apiVersion").is_empty(), "{file}: {kind}");
            assert!(!text(doc, "metadata.name").is_empty(), "{file}: {kind}");
        }
    }
}
