//! The Kubernetes packaging (`deploy/kubernetes/`, `Dockerfile`, `.ci/run`): no cluster and no
//! container engine here, so the manifests are parsed (YAML, duplicate keys refused) and checked
//! for what a sharded run needs and against each other, the scenario and the Job's command line
//! go through gapless's own parser, and the scripts run for real: the shard wrapper around the
//! real gapless (as PID 1 of a PID namespace too), `run.sh` against a stand-in `kubectl`.

use std::fs::File;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use gapless::cli::Cli;
use saphyr::{LoadableYamlNode, YamlOwned};
use serde_json::Value;

use crate::support;
use crate::support::{GAPLESS, Reply, TempFile, TestServer, at, needs, temp_path, u64_at};

/// The release gates: Argo Rollouts, Flagger, GitHub Actions.
mod gates;

// ---------------------------------------------------------------------------------------------
// Reading the files
// ---------------------------------------------------------------------------------------------

/// A path in the repository.
fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo(path)).unwrap_or_else(|e| panic!("cannot read {path}: {e}"))
}

/// The YAML documents of `text` (saphyr refuses a mapping with a duplicate key).
fn parse_yaml(name: &str, text: &str) -> Vec<YamlOwned> {
    YamlOwned::load_from_str(text).unwrap_or_else(|e| panic!("{name} is not valid YAML: {e}"))
}

/// The documents of a manifest in `deploy/kubernetes/`.
fn manifest(file: &str) -> Vec<YamlOwned> {
    let path = format!("deploy/kubernetes/{file}");
    parse_yaml(&path, &read(&path))
}

/// The node at a dotted `path` (`spec.template.spec.containers.0.args`), or a panic naming it.
fn node<'a>(root: &'a YamlOwned, path: &str) -> &'a YamlOwned {
    try_node(root, path).unwrap_or_else(|| panic!("no {path} in the manifest"))
}

fn try_node<'a>(root: &'a YamlOwned, path: &str) -> Option<&'a YamlOwned> {
    path.split('.')
        .try_fold(root, |n, key| match key.parse::<usize>() {
            Ok(i) => n.as_sequence_get(i),
            Err(_) => n.as_mapping_get(key),
        })
}

fn text<'a>(root: &'a YamlOwned, path: &str) -> &'a str {
    node(root, path)
        .as_str()
        .unwrap_or_else(|| panic!("{path} should be a string"))
}

fn int(root: &YamlOwned, path: &str) -> i64 {
    node(root, path)
        .as_integer()
        .unwrap_or_else(|| panic!("{path} should be an integer"))
}

fn boolean(root: &YamlOwned, path: &str) -> bool {
    node(root, path)
        .as_bool()
        .unwrap_or_else(|| panic!("{path} should be a boolean"))
}

fn list<'a>(root: &'a YamlOwned, path: &str) -> &'a [YamlOwned] {
    node(root, path)
        .as_sequence()
        .map(Vec::as_slice)
        .unwrap_or_else(|| panic!("{path} should be a list"))
}

fn strings(root: &YamlOwned, path: &str) -> Vec<String> {
    list(root, path)
        .iter()
        .map(|n| {
            n.as_str()
                .unwrap_or_else(|| panic!("{path} should hold strings"))
                .to_string()
        })
        .collect()
}

/// The document of `kind` among `docs`.
fn of_kind<'a>(docs: &'a [YamlOwned], kind: &str) -> &'a YamlOwned {
    let mut found = docs
        .iter()
        .filter(|d| try_node(d, "kind").and_then(YamlOwned::as_str) == Some(kind));
    let doc = found
        .next()
        .unwrap_or_else(|| panic!("no {kind} in the manifest"));
    assert!(found.next().is_none(), "one {kind} expected");
    doc
}

/// job.yaml's Job.
fn job() -> YamlOwned {
    let docs = manifest("job.yaml");
    assert_eq!(docs.len(), 1, "job.yaml holds the Job alone");
    of_kind(&docs, "Job").clone()
}

const POD: &str = "spec.template.spec";
const CONTAINER: &str = "spec.template.spec.containers.0";

/// The value after `flag` in the container's args.
fn arg_after<'a>(args: &'a [String], flag: &str) -> &'a str {
    let i = args
        .iter()
        .position(|a| a == flag)
        .unwrap_or_else(|| panic!("the Job's args should give {flag}: {args:?}"));
    args.get(i + 1)
        .unwrap_or_else(|| panic!("{flag} without a value"))
}

/// The container's env var `name`.
fn env_var<'a>(job: &'a YamlOwned, name: &str) -> &'a YamlOwned {
    list(job, &format!("{CONTAINER}.env"))
        .iter()
        .find(|e| try_node(e, "name").and_then(YamlOwned::as_str) == Some(name))
        .unwrap_or_else(|| panic!("the container should set {name}"))
}

/// The container's volume mounted at `path`, and that volume.
fn volume_at<'a>(job: &'a YamlOwned, path: &str) -> &'a YamlOwned {
    let mount = list(job, &format!("{CONTAINER}.volumeMounts"))
        .iter()
        .find(|m| try_node(m, "mountPath").and_then(YamlOwned::as_str) == Some(path))
        .unwrap_or_else(|| panic!("nothing is mounted at {path}"));
    let name = text(mount, "name");
    list(job, &format!("{POD}.volumes"))
        .iter()
        .find(|v| try_node(v, "name").and_then(YamlOwned::as_str) == Some(name))
        .unwrap_or_else(|| panic!("no volume {name}"))
}

/// The start margin run.sh gives the shards (`START_IN`'s default), in seconds.
fn start_margin() -> u64 {
    let script = read("deploy/kubernetes/run.sh");
    let rest = script
        .split_once("start_in=\"${START_IN:-")
        .unwrap_or_else(|| panic!("run.sh should set start_in from START_IN with a default"))
        .1;
    rest.split_once('}')
        .and_then(|(n, _)| n.parse().ok())
        .unwrap_or_else(|| panic!("START_IN's default should be a number of seconds"))
}

fn duration(text: &str) -> Duration {
    humantime::parse_duration(text).unwrap_or_else(|e| panic!("{text:?}: {e}"))
}

// ---------------------------------------------------------------------------------------------
// The manifests
// ---------------------------------------------------------------------------------------------

#[test]
fn the_yaml_parser_refuses_duplicate_keys() {
    // kubectl refuses a manifest with a key given twice; a parser that kept the last value would
    // let these tests check a value Kubernetes never sees.
    assert!(YamlOwned::load_from_str("spec:\n  backoffLimit: 0\n  backoffLimit: 6\n").is_err());
    assert!(YamlOwned::load_from_str("spec:\n  backoffLimit: 0\n").is_ok());
}

#[test]
fn every_manifest_parses_and_applies_to_any_namespace() {
    for file in ["job.yaml", "configmap.yaml", "rbac.yaml"] {
        let docs = manifest(file);
        assert!(!docs.is_empty(), "{file} is empty");
        for doc in &docs {
            let kind = text(doc, "kind");
            assert!(!text(doc, "apiVersion").is_empty(), "{file}: {kind}");
            assert!(!text(doc, "metadata.name").is_empty(), "{file}: {kind}");
            // `kubectl apply -n NS` (or the context's namespace) chooses where they go.
            assert!(
                try_node(doc, "metadata.namespace").is_none(),
                "{file}: {kind} names a namespace"
            );
        }
    }
}

#[test]
fn the_job_is_indexed_with_one_pod_per_shard_that_never_runs_twice() {
    let job = job();
    assert_eq!(text(&job, "apiVersion"), "batch/v1");
    assert_eq!(text(&job, "spec.completionMode"), "Indexed");
    let args = strings(&job, &format!("{CONTAINER}.args"));
    let shards: i64 = arg_after(&args, "--shards")
        .parse()
        .expect("--shards is a number");
    assert!(shards >= 2, "a sharded Job has shards: {shards}");
    assert_eq!(
        int(&job, "spec.completions"),
        shards,
        "completions = --shards"
    );
    assert_eq!(int(&job, "spec.parallelism"), shards, "every shard at once");
    // A shard run again would send its share of the schedule twice.
    assert_eq!(int(&job, "spec.backoffLimit"), 0);
    assert_eq!(text(&job, &format!("{POD}.restartPolicy")), "Never");
    assert!(int(&job, "spec.ttlSecondsAfterFinished") > 0);
    // The deadline covers the start margin, the load and a minute to finish and report.
    let deadline = u64::try_from(int(&job, "spec.activeDeadlineSeconds")).expect("positive");
    let load = duration(arg_after(&args, "--duration")).as_secs();
    let margin = start_margin();
    assert!(
        deadline >= margin + load + 60,
        "activeDeadlineSeconds {deadline} < start margin {margin} s + --duration {load} s + 60 s"
    );
}

#[test]
fn the_container_runs_the_wrapper_with_what_a_shard_needs() {
    let job = job();
    assert_eq!(text(&job, &format!("{CONTAINER}.image")), "${IMAGE}");
    assert_eq!(
        strings(&job, &format!("{CONTAINER}.command")),
        ["gapless-shard"]
    );
    let args = strings(&job, &format!("{CONTAINER}.args"));
    assert_eq!(args.first().map(String::as_str), Some("run"));
    // Kubernetes expands $(START_AT) from the container's env, which run.sh fills.
    assert_eq!(arg_after(&args, "--start-at"), "$(START_AT)");
    assert_eq!(text(env_var(&job, "START_AT"), "value"), "${START_AT}");
    // The shard's label: the node it runs on, from the downward API.
    assert_eq!(
        text(env_var(&job, "NODE_NAME"), "valueFrom.fieldRef.fieldPath"),
        "spec.nodeName"
    );
    // The index comes from the Indexed Job's JOB_COMPLETION_INDEX: nothing may override it.
    assert!(!args.iter().any(|a| a == "--shard-index"));
    // kubectl's cache goes to a writable HOME.
    let home = text(env_var(&job, "HOME"), "value");
    assert!(
        try_node(volume_at(&job, home), "emptyDir").is_some(),
        "HOME ({home}) should be an emptyDir"
    );
    for (path, value) in [
        ("requests.cpu", "1"),
        ("requests.memory", "128Mi"),
        ("limits.cpu", "2"),
        ("limits.memory", "256Mi"),
    ] {
        let path = format!("{CONTAINER}.resources.{path}");
        assert_eq!(text(&job, &path), value, "{path}");
    }
}

#[test]
fn the_shards_spread_over_nodes_and_zones() {
    let job = job();
    let labels = node(&job, "spec.template.metadata.labels");
    let constraints = list(&job, &format!("{POD}.topologySpreadConstraints"));
    let spread = |key: &str| {
        let c = constraints
            .iter()
            .find(|c| try_node(c, "topologyKey").and_then(YamlOwned::as_str) == Some(key))
            .unwrap_or_else(|| panic!("no topology spread over {key}"));
        assert_eq!(int(c, "maxSkew"), 1, "{key}");
        // The selector counts this Job's pods: every label it matches is on them.
        let selector = node(c, "labelSelector.matchLabels")
            .as_mapping()
            .expect("matchLabels");
        assert!(!selector.is_empty());
        for (k, v) in selector {
            let k = k.as_str().expect("a label name");
            assert_eq!(
                labels.as_mapping_get(k),
                Some(v),
                "{key}: the selector's {k} is not on the pods"
            );
        }
        text(c, "whenUnsatisfiable").to_string()
    };
    assert_eq!(spread("kubernetes.io/hostname"), "DoNotSchedule");
    assert_eq!(spread("topology.kubernetes.io/zone"), "ScheduleAnyway");
}

/// The final stage's `USER uid[:gid]` in the Dockerfile.
fn dockerfile_user() -> (i64, Option<i64>) {
    let dockerfile = read("Dockerfile");
    let user = dockerfile
        .lines()
        .filter_map(|l| l.strip_prefix("USER "))
        .next_back()
        .expect("the Dockerfile sets a USER");
    let (uid, gid) = match user.trim().split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (user.trim(), None),
    };
    let number = |s: &str| {
        s.parse::<i64>().unwrap_or_else(|_| {
            panic!("USER {user}: numeric, so the kubelet can check runAsNonRoot")
        })
    };
    (number(uid), gid.map(number))
}

#[test]
fn the_job_runs_as_the_images_unprivileged_user() {
    let job = job();
    let (uid, gid) = dockerfile_user();
    assert!(uid > 0, "the image's USER is root");
    let pod = format!("{POD}.securityContext");
    assert!(boolean(&job, &format!("{pod}.runAsNonRoot")));
    assert_eq!(
        int(&job, &format!("{pod}.runAsUser")),
        uid,
        "Dockerfile USER"
    );
    if let Some(gid) = gid {
        assert_eq!(
            int(&job, &format!("{pod}.runAsGroup")),
            gid,
            "Dockerfile USER"
        );
    }
    let container = format!("{CONTAINER}.securityContext");
    assert!(boolean(
        &job,
        &format!("{container}.readOnlyRootFilesystem")
    ));
    assert!(!boolean(
        &job,
        &format!("{container}.allowPrivilegeEscalation")
    ));
    if let Some(u) = try_node(&job, &format!("{container}.runAsUser")) {
        assert_eq!(u.as_integer(), Some(uid));
    }
    // The image's user is the one its useradd made.
    assert!(
        read("Dockerfile").contains(&format!("useradd --uid {uid} ")),
        "the Dockerfile should create uid {uid}"
    );
}

/// The scenario the Job reads: the `--scenario` path's file in the ConfigMap mounted there.
fn mounted_scenario() -> (String, String) {
    let job = job();
    let args = strings(&job, &format!("{CONTAINER}.args"));
    let path = arg_after(&args, "--scenario").to_string();
    let (dir, file) = path.rsplit_once('/').expect("an absolute --scenario path");
    let volume = volume_at(&job, dir);
    let configmap = of_kind(&manifest("configmap.yaml"), "ConfigMap").clone();
    assert_eq!(
        text(volume, "configMap.name"),
        text(&configmap, "metadata.name"),
        "{dir} should hold configmap.yaml's ConfigMap"
    );
    if let Some(items) = try_node(volume, "configMap.items") {
        panic!(
            "the volume maps keys to paths ({items:?}): the test expects the keys as file names"
        );
    }
    // The key has a dot: looked up whole, not as a path.
    let scenario = node(&configmap, "data")
        .as_mapping_get(file)
        .and_then(YamlOwned::as_str)
        .unwrap_or_else(|| panic!("the ConfigMap has no {file}"))
        .to_string();
    (path, scenario)
}

/// The Job's container args as shard `index` would run them, with the scenario at `scenario`.
fn job_args_for_shard(scenario: &Path, index: u32, start_at: &str) -> Vec<String> {
    let job = job();
    let (path, _) = mounted_scenario();
    let mut args = vec!["gapless".to_string()];
    for arg in strings(&job, &format!("{CONTAINER}.args")) {
        args.push(if arg == path {
            scenario.display().to_string()
        } else {
            arg.replace("$(START_AT)", start_at)
        });
    }
    // What the Job and the downward API set in the environment.
    args.extend([
        "--shard-index".to_string(),
        index.to_string(),
        "--shard-label".to_string(),
        format!("node-{index}"),
    ]);
    args
}

#[test]
fn the_mounted_scenario_is_one_gapless_accepts_with_the_jobs_command_line() {
    let (_, scenario) = mounted_scenario();
    let file = TempFile::with("toml", &scenario);
    let job = job();
    let args = strings(&job, &format!("{CONTAINER}.args"));
    let load = duration(arg_after(&args, "--duration"));
    let shards: u32 = arg_after(&args, "--shards").parse().expect("a number");
    for index in [0, shards - 1] {
        let argv = job_args_for_shard(file.path(), index, "2026-12-03T18:00:00Z");
        let cli = Cli::parse_from(&argv).unwrap_or_else(|e| panic!("{argv:?}: {e}"));
        let gapless::cli::Command::Run(run) = cli.command else {
            panic!("the Job runs `gapless run`")
        };
        let parsed = run
            .scenario()
            .unwrap_or_else(|e| panic!("the scenario: {e}"));
        let validated = run
            .validate(parsed.as_ref(), &|_| None)
            .unwrap_or_else(|e| panic!("shard {index}: {e}"));
        let config = validated.config;
        let shard = config.load.shard.as_ref().expect("a sharded run");
        assert_eq!((shard.index, shard.count.get()), (index, shards));
        assert_eq!(config.load.duration, load);
        assert_eq!(config.target.url.to_string(), "http://web/healthz");
        let steps = &config.rollout.steps;
        if index == 0 {
            // The conductor: its steps (not the watchers) end inside the load, or they fail.
            assert!(
                steps.iter().any(|s| !s.background),
                "shard 0 runs the rollout"
            );
            let longest = config.rollout.warmup
                + steps
                    .iter()
                    .filter(|s| !s.background)
                    .map(|s| s.timeout)
                    .sum::<Duration>();
            assert!(
                longest < load,
                "warmup + the steps' timeouts ({longest:?}) should end within --duration ({load:?})"
            );
        } else {
            assert!(steps.is_empty(), "shard {index} only loads");
        }
    }
}

#[test]
fn a_shard_of_the_job_runs_the_mounted_scenario() {
    // The same command line with the binary, a second long and against a local target: shard 1
    // (no steps, so no kubectl) sends its quarter of the scenario's total rate.
    let (_, scenario) = mounted_scenario();
    let file = TempFile::with("toml", &scenario);
    let server = TestServer::healthy();
    let start = SystemTime::now() + Duration::from_millis(300);
    let start_ms = start
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_millis();
    let mut argv = job_args_for_shard(file.path(), 1, &start_ms.to_string());
    argv.remove(0);
    let i = argv
        .iter()
        .position(|a| a == "--duration")
        .expect("--duration")
        + 1;
    argv[i] = "1s".to_string();
    argv.push(server.url());
    let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
    let (code, json) = support::run_json(&argv);
    assert_eq!(code, 0, "{json}");
    // qps 2000 in total over 4 shards: 500 per second from this one.
    assert_eq!(u64_at(&json, "/requests/total"), 500);
    assert_eq!(u64_at(&json, "/requests/ok"), 500);
    assert_eq!(server.stats().requests(), 500);
}

/// What kubectl needs to run `command`: (API group, resource, object name, verbs). A command the
/// table does not know fails the test: add it here with the verbs it needs, and to rbac.yaml.
fn kubectl_needs(command: &str) -> Vec<(&'static str, String, Option<String>, Vec<&'static str>)> {
    let words: Vec<&str> = command.split_whitespace().collect();
    assert_eq!(
        words.first(),
        Some(&"kubectl"),
        "not a kubectl command: {command}"
    );
    assert!(
        !command.contains(['|', ';', '&', '`', '$']),
        "one kubectl command per step, please: {command}"
    );
    // The words that are not flags, nor the value of a flag that takes one as the next word.
    const VALUED: [&str; 10] = [
        "-l",
        "--selector",
        "-o",
        "--output",
        "-n",
        "--namespace",
        "-c",
        "--container",
        "-f",
        "--filename",
    ];
    let mut positional = Vec::new();
    let mut rest = words[1..].iter();
    while let Some(word) = rest.next() {
        if VALUED.contains(word) {
            rest.next();
        } else if !word.starts_with('-') {
            positional.push(*word);
        }
    }
    let object = |word: &str| -> (&'static str, String, Option<String>) {
        let (kind, name) = match word.split_once('/') {
            Some((k, n)) => (k, Some(n.to_string())),
            None => (word, None),
        };
        match kind {
            "deployment" | "deployments" | "deploy" => ("apps", "deployments".into(), name),
            "pod" | "pods" | "po" => ("", "pods".into(), name),
            _ => panic!("{command}: kind {kind} is not in the test's table"),
        }
    };
    match positional.as_slice() {
        ["rollout", "restart", target] => {
            let (group, resource, name) = object(target);
            vec![(group, resource, name, vec!["get", "patch"])]
        }
        ["set", "image", target, ..] => {
            let (group, resource, name) = object(target);
            vec![(group, resource, name, vec!["get", "patch"])]
        }
        ["rollout", "status", target] => {
            let (group, resource, name) = object(target);
            vec![
                (group, resource.clone(), name, vec!["get"]),
                // The watch is by field selector: a list and a watch of the resource.
                (group, resource, None, vec!["list", "watch"]),
            ]
        }
        ["get", target] => {
            let (group, resource, name) = object(target);
            let watch = words.iter().any(|w| *w == "-w" || *w == "--watch");
            let verbs = match (&name, watch) {
                (Some(_), false) => vec!["get"],
                (None, false) => vec!["list"],
                (_, true) => vec!["list", "watch"],
            };
            let name = if watch { None } else { name };
            vec![(group, resource, name, verbs)]
        }
        _ => panic!("kubectl command not in the test's table of verbs: {command}"),
    }
}

/// Whether one of the Role's `rules` allows `verb` on `resource` (named `name`) in `group`.
fn allows(
    rules: &[YamlOwned],
    group: &str,
    resource: &str,
    name: Option<&str>,
    verb: &str,
) -> bool {
    rules.iter().any(|rule| {
        let has = |key: &str, value: &str| strings(rule, key).iter().any(|v| v == value);
        let named = match try_node(rule, "resourceNames") {
            None => true,
            Some(_) => name.is_some_and(|n| has("resourceNames", n)),
        };
        has("apiGroups", group) && has("resources", resource) && has("verbs", verb) && named
    })
}

#[test]
fn the_role_allows_every_kubectl_step_and_nothing_more() {
    let (_, scenario) = mounted_scenario();
    let parsed =
        gapless::cli::scenario::Scenario::parse(Path::new("scenario.toml"), &scenario, &|_| None)
            .unwrap_or_else(|e| panic!("{e}"));
    let rbac = manifest("rbac.yaml");
    let role = of_kind(&rbac, "Role");
    let rules = list(role, "rules");
    let mut used = Vec::new();
    let kubectl_steps: Vec<_> = parsed
        .steps
        .iter()
        .filter(|s| s.command.trim_start().starts_with("kubectl"))
        .collect();
    assert!(
        !kubectl_steps.is_empty(),
        "the scenario rolls out with kubectl"
    );
    for step in kubectl_steps {
        for (group, resource, name, verbs) in kubectl_needs(&step.command) {
            for verb in verbs {
                assert!(
                    allows(rules, group, &resource, name.as_deref(), verb),
                    "rbac.yaml's Role does not allow {verb} on {resource} {name:?} (group {group:?}), \
                     which step {:?} needs",
                    step.name
                );
                used.push((group.to_string(), resource.clone(), verb.to_string()));
            }
        }
    }
    // Least privilege: every verb the Role grants is one a step uses.
    for rule in rules {
        for group in strings(rule, "apiGroups") {
            for resource in strings(rule, "resources") {
                for verb in strings(rule, "verbs") {
                    assert!(
                        used.contains(&(group.clone(), resource.clone(), verb.clone())),
                        "the Role grants {verb} on {resource} (group {group:?}), which no step needs"
                    );
                }
            }
        }
    }
    // Bound to the service account the Job runs as, in the binding's own namespace.
    let binding = of_kind(&rbac, "RoleBinding");
    assert_eq!(text(binding, "roleRef.kind"), "Role");
    assert_eq!(text(binding, "roleRef.name"), text(role, "metadata.name"));
    let subjects = list(binding, "subjects");
    assert_eq!(subjects.len(), 1);
    let account = text(of_kind(&rbac, "ServiceAccount"), "metadata.name");
    assert_eq!(text(&subjects[0], "kind"), "ServiceAccount");
    assert_eq!(text(&subjects[0], "name"), account);
    assert!(
        try_node(&subjects[0], "namespace").is_none(),
        "a namespace on the subject ties the files to it"
    );
    assert_eq!(text(&job(), &format!("{POD}.serviceAccountName")), account);
}

// ---------------------------------------------------------------------------------------------
// The image and CI
// ---------------------------------------------------------------------------------------------

/// The `cargo build ...` command lines of `text` (a Dockerfile's RUN or a script's line).
fn cargo_builds(text: &str) -> Vec<String> {
    text.lines()
        .map(|l| l.trim().trim_start_matches("RUN ").trim())
        .filter(|l| l.starts_with("cargo build"))
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect()
}

#[test]
fn the_image_builds_with_the_command_ci_runs() {
    let dockerfile = read("Dockerfile");
    let docker = cargo_builds(&dockerfile);
    let ci = cargo_builds(&read(".ci/run"));
    assert_eq!(docker, ["cargo build --release --locked"]);
    assert_eq!(ci, docker, ".ci/run builds as the Dockerfile does");
    // The binary that command makes is the one the image holds, beside the Job's wrapper.
    assert!(
        dockerfile.contains("COPY --from=build /src/target/release/gapless /usr/local/bin/gapless")
    );
    let job = job();
    let wrapper = strings(&job, &format!("{CONTAINER}.command"));
    assert!(dockerfile.contains(&format!(
        "COPY deploy/kubernetes/shard.sh /usr/local/bin/{}",
        wrapper[0]
    )));
    // COPY keeps the mode: the wrapper is executable in the repository.
    let mode = std::fs::metadata(repo("deploy/kubernetes/shard.sh"))
        .expect("shard.sh")
        .permissions()
        .mode();
    assert_ne!(mode & 0o111, 0, "shard.sh should be executable");
    assert!(dockerfile.contains("ENTRYPOINT [\"gapless\"]"));
    // The build image's Rust is at least the crate's rust-version.
    let rust = dockerfile
        .lines()
        .find_map(|l| l.strip_prefix("FROM rust:"))
        .and_then(|l| l.split('-').next())
        .expect("FROM rust:VERSION-...");
    let manifest = read("Cargo.toml");
    let msrv = manifest
        .lines()
        .find_map(|l| l.strip_prefix("rust-version = \""))
        .and_then(|l| l.strip_suffix('"'))
        .expect("Cargo.toml's rust-version");
    let version =
        |v: &str| -> Vec<u32> { v.split('.').map(|n| n.parse().expect("a number")).collect() };
    assert!(
        version(rust) >= version(msrv),
        "rust:{rust} < rust-version {msrv}"
    );
    // kubectl is checked against its published checksum.
    assert!(dockerfile.contains("ARG KUBECTL_VERSION="));
    assert!(dockerfile.contains("${KUBECTL_VERSION}"));
    assert!(dockerfile.contains("kubectl.sha256"));
    assert!(dockerfile.contains("sha256sum --check"));
    // Any builder: nothing only BuildKit understands.
    for buildkit in [
        "# syntax",
        "--mount",
        "--chmod",
        "--link",
        "<<",
        "--checksum",
    ] {
        assert!(
            !dockerfile.contains(buildkit),
            "the Dockerfile uses {buildkit}"
        );
    }
    let ignored: Vec<String> = read(".dockerignore").lines().map(str::to_string).collect();
    for path in ["target", ".git"] {
        assert!(
            ignored.iter().any(|l| l == path),
            ".dockerignore should list {path}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// The scripts
// ---------------------------------------------------------------------------------------------

const SCRIPTS: [(&str, &str); 3] = [
    ("deploy/kubernetes/shard.sh", "sh"),
    ("deploy/kubernetes/run.sh", "bash"),
    (".ci/run", "bash"),
];

#[test]
fn the_scripts_parse() {
    for (script, shell) in SCRIPTS {
        let out = Command::new(shell)
            .arg("-n")
            .arg(repo(script))
            .output()
            .unwrap_or_else(|e| panic!("cannot run {shell}: {e}"));
        assert!(
            out.status.success(),
            "{shell} -n {script}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let first = read(script).lines().next().unwrap_or_default().to_string();
        assert!(
            first.ends_with(shell),
            "{script} should start with a {shell} shebang: {first}"
        );
    }
}

#[test]
#[ignore = "needs shellcheck"]
fn the_scripts_pass_shellcheck() {
    let shellcheck = needs("shellcheck");
    for (script, _) in SCRIPTS {
        let out = Command::new(&shellcheck)
            .arg(repo(script))
            .output()
            .expect("run shellcheck");
        assert!(
            out.status.success(),
            "shellcheck {script}:\n{}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
}

/// The `--flags` given to `gapless VERB` in the manifests and scripts.
fn flags_given(verb: &str) -> Vec<String> {
    let words: Vec<String> = match verb {
        "run" => strings(&job(), &format!("{CONTAINER}.args")),
        "merge" => {
            // run.sh's merge command, with its continuation lines.
            let script = read("deploy/kubernetes/run.sh");
            let start = script
                .find(" merge -")
                .expect("run.sh runs gapless merge -");
            let mut command = String::new();
            for line in script[start..].lines() {
                command.push_str(line);
                if !line.trim_end().ends_with('\\') {
                    break;
                }
            }
            command.split_whitespace().map(str::to_string).collect()
        }
        _ => unreachable!("{verb}"),
    };
    words.into_iter().filter(|w| w.starts_with("--")).collect()
}

#[test]
fn every_flag_the_deploy_files_give_gapless_exists() {
    // Until `gapless merge` exists this fails for merge: that is the check doing its job.
    for verb in ["run", "merge"] {
        let flags = flags_given(verb);
        assert!(!flags.is_empty(), "no flags found for gapless {verb}");
        let out = Command::new(GAPLESS)
            .args([verb, "--help"])
            .output()
            .expect("run gapless");
        let help = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "gapless {verb} --help failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        for flag in flags {
            assert!(
                help.split(|c: char| c.is_whitespace() || c == ',')
                    .any(|w| w == flag),
                "the deploy files give `gapless {verb} {flag}`, which `gapless {verb} --help` does not list"
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The shard wrapper, run for real
// ---------------------------------------------------------------------------------------------

/// Runs `shard.sh ARGS` with the gapless under test; stdout and stderr to files (no pipe to fill).
fn wrapper(gapless: &Path, args: &[&str]) -> (Option<i32>, String, String) {
    let _machine = support::shared();
    let (stdout, stderr) = (TempFile::new("out"), TempFile::new("err"));
    let status = Command::new(repo("deploy/kubernetes/shard.sh"))
        .args(args)
        .env("GAPLESS", gapless)
        .stdin(Stdio::null())
        .stdout(File::create(stdout.path()).expect("stdout file"))
        .stderr(File::create(stderr.path()).expect("stderr file"))
        .status()
        .expect("run shard.sh");
    let read = |f: &TempFile| std::fs::read_to_string(f.path()).expect("output");
    (status.code(), read(&stdout), read(&stderr))
}

fn last_line(text: &str) -> &str {
    text.trim_end().lines().last().unwrap_or_default()
}

/// A start time for `--start-at`, in Unix ms, `ahead` from now.
fn start_in(ahead: Duration) -> String {
    (SystemTime::now() + ahead)
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_millis()
        .to_string()
}

#[test]
fn a_shard_that_saw_only_503s_exits_0_with_its_result_on_stdout() {
    let server = TestServer::http(|_| Reply::status(503));
    let url = server.url();
    let start = start_in(Duration::from_millis(200));
    let (code, stdout, stderr) = wrapper(
        Path::new(GAPLESS),
        &[
            "run",
            &url,
            "-q",
            "200",
            "-d",
            "500ms",
            "--shards",
            "4",
            "--shard-index",
            "2",
            "--start-at",
            &start,
        ],
    );
    assert_eq!(code, Some(0), "the merge judges, not the pod:\n{stderr}");
    // Without --json a shard prints its result as one line: what `kubectl logs` collects.
    assert_eq!(stdout.lines().count(), 1, "one result line:\n{stdout}");
    let json: Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("stdout should be the result ({e}):\n{stdout}"));
    // 100 requests in the global schedule, shard 2 of 4 sends a quarter; all failed.
    assert_eq!(u64_at(&json, "/requests/total"), 25);
    assert_eq!(u64_at(&json, "/requests/failed"), 25);
    assert_eq!(server.stats().requests(), 25);
    assert_eq!(u64_at(&json, "/verdict/exit_code"), 1);
    assert_eq!(
        last_line(&stderr),
        "gapless-shard: gapless exited 1 with its result printed; the merge gives the verdict (this pod exits 0)"
    );
}

#[test]
fn a_usage_error_fails_the_shard_with_code_2() {
    let start = start_in(Duration::ZERO);
    let (code, stdout, stderr) = wrapper(
        Path::new(GAPLESS),
        &[
            "run",
            "http://127.0.0.1:9/",
            "--shards",
            "4",
            "--shard-index",
            "4",
            "--start-at",
            &start,
        ],
    );
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stdout.is_empty(), "{stdout}");
    assert!(
        stderr.contains("--shard-index 4"),
        "gapless's own sentence:\n{stderr}"
    );
    assert_eq!(
        last_line(&stderr),
        "gapless-shard: gapless exited 2: a usage or configuration error (this pod fails with 2)"
    );
}

#[test]
fn a_crashed_gapless_fails_the_shard() {
    // A stand-in that dies as the OOM killer would kill gapless.
    let dir = temp_path("d");
    std::fs::create_dir(&dir).expect("temp dir");
    let fake = dir.join("gapless");
    std::fs::write(&fake, "#!/bin/sh\nkill -KILL $$\n").expect("write");
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let (code, stdout, stderr) = wrapper(&fake, &["run"]);
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(code, Some(137), "{stderr}");
    assert!(stdout.is_empty());
    assert_eq!(
        last_line(&stderr),
        "gapless-shard: gapless exited 137: killed by signal 9, no result (this pod fails with 137)"
    );
}

#[test]
#[ignore = "needs root and unshare"]
fn as_pid_1_the_wrapper_hands_sigterm_to_gapless() {
    // In a container the wrapper is PID 1, which gets only the signals it handles: without its
    // trap the kubelet's SIGTERM would be dropped and the shard killed at the grace period's end
    // with no result.
    let unshare = needs("unshare");
    assert!(
        rustix::process::geteuid().is_root(),
        "this test needs root for a new PID namespace"
    );
    let _machine = support::shared();
    let server = TestServer::healthy();
    let (stdout, stderr) = (TempFile::new("out"), TempFile::new("err"));
    let started = Instant::now();
    let mut child = Command::new(unshare)
        .args(["--pid", "--fork"])
        .arg(repo("deploy/kubernetes/shard.sh"))
        .args([
            "run",
            &server.url(),
            "-q",
            "100",
            "-d",
            "10s",
            "--json",
            "-",
        ])
        .env("GAPLESS", GAPLESS)
        .stdin(Stdio::null())
        .stdout(File::create(stdout.path()).expect("stdout file"))
        .stderr(File::create(stderr.path()).expect("stderr file"))
        .spawn()
        .expect("run unshare");
    // The wrapper: unshare's child, PID 1 in its namespace.
    let unshare_pid = child.id();
    let pid1 = loop {
        let children =
            std::fs::read_to_string(format!("/proc/{unshare_pid}/task/{unshare_pid}/children"))
                .unwrap_or_default();
        if let Some(pid) = children.split_whitespace().next() {
            break pid.to_string();
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "unshare forked nothing"
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    let status = std::fs::read_to_string(format!("/proc/{pid1}/status")).expect("its status");
    let nspid = status
        .lines()
        .find_map(|l| l.strip_prefix("NSpid:"))
        .expect("NSpid");
    assert_eq!(
        nspid.split_whitespace().last(),
        Some("1"),
        "not PID 1: {nspid}"
    );
    // Once the load runs, the kubelet's SIGTERM.
    while server.stats().requests() < 50 {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "no load within 5 s"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let sent = Command::new("kill")
        .args(["-TERM", &pid1])
        .status()
        .expect("run kill(1)");
    assert!(sent.success());
    let code = loop {
        if let Some(status) = child.try_wait().expect("wait for unshare") {
            break status.code();
        }
        if started.elapsed() > Duration::from_secs(15) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the shard did not stop on SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let lived = started.elapsed();
    let stdout = std::fs::read_to_string(stdout.path()).expect("stdout");
    let stderr = std::fs::read_to_string(stderr.path()).expect("stderr");
    assert!(lived < Duration::from_secs(6), "a 10 s run lived {lived:?}");
    assert_eq!(code, Some(143), "{stderr}");
    let json: Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("the partial result on stdout ({e}):\n{stdout}"));
    assert_eq!(at(&json, "/interrupted"), true);
    assert_eq!(at(&json, "/interruption"), "terminate");
    let total = u64_at(&json, "/requests/total");
    assert!(
        (50..1000).contains(&total),
        "{total} requests: a partial run"
    );
    assert_eq!(
        last_line(&stderr),
        "gapless-shard: gapless exited 143: interrupted by a signal, its partial result printed (this pod fails with 143)"
    );
}

// ---------------------------------------------------------------------------------------------
// run.sh, against a stand-in kubectl
// ---------------------------------------------------------------------------------------------

/// A stand-in `kubectl` that records every call (one line each, in `calls`), keeps what `apply
/// -f -` reads (`applied.yaml`), reports the Job's conditions from `job-state` (after one poll
/// with none), lists the pods of `pods`, and prints `logs/POD` (fails when there is none).
const FAKE_KUBECTL: &str = r#"#!/usr/bin/env bash
dir="$FAKE_DIR"
printf '%s\n' "$*" >>"$dir/calls"
case "$1" in
  apply)
    for a in "$@"; do
      if [ "$a" = - ]; then cat >"$dir/applied.yaml"; fi
    done ;;
  get)
    case "$2" in
      job)
        polls=$(($(cat "$dir/polls" 2>/dev/null || echo 0) + 1))
        echo "$polls" >"$dir/polls"
        if [ "$polls" -gt 1 ]; then cat "$dir/job-state"; fi ;;
      pods) cat "$dir/pods" ;;
      *) exit 1 ;;
    esac ;;
  logs) cat "$dir/logs/$2" || exit 1 ;;
  delete) ;;
  *) echo "fake kubectl: unexpected $*" >&2; exit 1 ;;
esac
"#;

/// A stand-in `gapless merge`: keeps its arguments and stdin, exits `merge-exit`.
const FAKE_GAPLESS: &str = r#"#!/bin/sh
printf '%s\n' "$@" >"$FAKE_DIR/merge-args"
cat >"$FAKE_DIR/merge-stdin"
exit "$(cat "$FAKE_DIR/merge-exit")"
"#;

struct FakeCluster {
    dir: PathBuf,
}

impl FakeCluster {
    fn new(job_state: &str, pods: &[(&str, &str, Option<&str>)], merge_exit: i32) -> FakeCluster {
        let dir = temp_path("cluster");
        let bin = dir.join("bin");
        std::fs::create_dir_all(bin.clone()).expect("temp dir");
        std::fs::create_dir(dir.join("logs")).expect("logs dir");
        for (name, text) in [("kubectl", FAKE_KUBECTL), ("gapless", FAKE_GAPLESS)] {
            let path = bin.join(name);
            std::fs::write(&path, text).expect("write a stand-in");
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        }
        std::fs::write(dir.join("job-state"), job_state).expect("write");
        std::fs::write(dir.join("merge-exit"), merge_exit.to_string()).expect("write");
        let mut listing = String::new();
        for (pod, index, log) in pods {
            listing.push_str(&format!("{pod} {index}\n"));
            if let Some(log) = log {
                std::fs::write(dir.join("logs").join(pod), log).expect("write a log");
            }
        }
        std::fs::write(dir.join("pods"), listing).expect("write");
        FakeCluster { dir }
    }

    /// run.sh ARGS, with IMAGE set, started (not waited for).
    fn start(&self, args: &[&str]) -> std::process::Child {
        let path = format!(
            "{}:{}",
            self.dir.join("bin").display(),
            std::env::var("PATH").unwrap_or_default()
        );
        Command::new(repo("deploy/kubernetes/run.sh"))
            .args(args)
            .env("PATH", path)
            .env("FAKE_DIR", &self.dir)
            .env("IMAGE", "registry.example.test/gapless:test")
            .env("OUT", self.dir.join("out"))
            .env("POLL_SECONDS", "0.1")
            .env("GAPLESS", self.dir.join("bin/gapless"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run run.sh")
    }

    fn run(&self, args: &[&str]) -> Output {
        self.start(args).wait_with_output().expect("run.sh")
    }

    fn file(&self, name: &str) -> Option<String> {
        std::fs::read_to_string(self.dir.join(name)).ok()
    }

    fn calls(&self) -> Vec<String> {
        self.file("calls")
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }
}

impl Drop for FakeCluster {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// job.yaml's Job name and container name, which run.sh must use.
fn job_names() -> (String, String) {
    let job = job();
    (
        text(&job, "metadata.name").to_string(),
        text(&job, &format!("{CONTAINER}.name")).to_string(),
    )
}

#[test]
fn run_sh_applies_waits_collects_merges_and_deletes() {
    let (name, container) = job_names();
    let pods = [
        (
            "gapless-0-x7k2p",
            "0",
            Some("{\"shard\": 0}\nreport of shard 0\n"),
        ),
        (
            "gapless-1-q9w3z",
            "1",
            Some("{\"shard\": 1}\nreport of shard 1\n"),
        ),
        ("gapless-2-m4n8r", "2", None),
    ];
    let cluster = FakeCluster::new("SuccessCriteriaMet\nComplete\n", &pods, 1);
    let before = SystemTime::now();
    let out = cluster.run(&["--max-failure-ratio", "0.01"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "merge's code:\n{stderr}");

    // Every placeholder filled: the applied Job parses, with the image and an RFC 3339 start
    // run.sh's margin ahead.
    let applied = cluster
        .file("applied.yaml")
        .expect("run.sh applied the Job");
    assert!(!applied.contains("${"), "a placeholder left:\n{applied}");
    let docs = parse_yaml("the applied Job", &applied);
    let job = of_kind(&docs, "Job");
    assert_eq!(
        text(job, &format!("{CONTAINER}.image")),
        "registry.example.test/gapless:test"
    );
    let start_at = text(env_var(job, "START_AT"), "value");
    let start = humantime::parse_rfc3339(start_at)
        .unwrap_or_else(|e| panic!("START_AT {start_at:?} is not RFC 3339 UTC: {e}"));
    let ahead = start
        .duration_since(before)
        .unwrap_or_else(|_| panic!("START_AT {start_at} is in the past"));
    let margin = Duration::from_secs(start_margin());
    assert!(
        ahead > margin - Duration::from_secs(2) && ahead <= margin + Duration::from_secs(1),
        "START_AT is {ahead:?} ahead, not {margin:?}"
    );

    // The flow, on job.yaml's Job and container names.
    let calls = cluster.calls();
    let expected_order = [
        format!("delete job {name} "),
        "apply -f ".to_string(),
        "apply -f -".to_string(),
        format!("get job {name} "),
        format!("get job {name} "),
        format!("get pods -l job-name={name} "),
        format!("logs gapless-0-x7k2p -c {container}"),
        format!("logs gapless-1-q9w3z -c {container}"),
        format!("logs gapless-2-m4n8r -c {container}"),
        format!("delete job {name} "),
    ];
    assert_eq!(calls.len(), expected_order.len(), "{calls:#?}");
    for (call, expected) in calls.iter().zip(&expected_order) {
        assert!(
            call.starts_with(expected.as_str()),
            "{call:?}, expected {expected:?}: {calls:#?}"
        );
    }
    assert!(
        calls[1].contains("rbac.yaml") && calls[1].contains("configmap.yaml"),
        "{}",
        calls[1]
    );

    // Each log saved as OUT/shard-I-POD.log; the one that could not be read is left out.
    for (pod, index, log) in &pods {
        let saved = cluster.file(&format!("out/shard-{index}-{pod}.log"));
        assert_eq!(saved.as_deref(), *log, "{pod}");
    }
    // Merged from stdin, with the reports and run.sh's own arguments.
    let args = cluster.file("merge-args").expect("gapless merge ran");
    let args: Vec<&str> = args.lines().collect();
    assert_eq!(&args[..2], ["merge", "-"]);
    for flag in ["--json", "--html", "--markdown", "--junit"] {
        let i = args
            .iter()
            .position(|a| *a == flag)
            .unwrap_or_else(|| panic!("{flag}: {args:?}"));
        assert!(args[i + 1].starts_with(&cluster.dir.join("out").display().to_string()));
    }
    assert_eq!(&args[args.len() - 2..], ["--max-failure-ratio", "0.01"]);
    let stdin = cluster.file("merge-stdin").expect("merge's stdin");
    assert_eq!(
        stdin,
        "{\"shard\": 0}\nreport of shard 0\n{\"shard\": 1}\nreport of shard 1\n"
    );
}

#[test]
fn run_sh_exits_6_without_a_log_to_merge() {
    let (name, _) = job_names();
    let cluster = FakeCluster::new("Failed\n", &[("gapless-0-x7k2p", "0", None)], 0);
    let out = cluster.run(&[]);
    assert_eq!(
        out.status.code(),
        Some(6),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(cluster.file("merge-args").is_none(), "nothing to merge");
    let calls = cluster.calls();
    assert!(
        calls
            .last()
            .is_some_and(|c| c.starts_with(&format!("delete job {name} "))),
        "{calls:#?}"
    );
}

#[test]
fn run_sh_needs_an_image() {
    let cluster = FakeCluster::new("Complete\n", &[], 0);
    let mut command = Command::new(repo("deploy/kubernetes/run.sh"));
    command
        .env_remove("IMAGE")
        .env("FAKE_DIR", &cluster.dir)
        .env(
            "PATH",
            format!("{}:/usr/bin:/bin", cluster.dir.join("bin").display()),
        );
    let out = command.output().expect("run run.sh");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("IMAGE"));
    assert!(cluster.calls().is_empty(), "kubectl ran without an image");
}

#[test]
fn run_sh_deletes_the_job_and_exits_130_on_ctrl_c() {
    let (name, _) = job_names();
    // A Job that never finishes.
    let cluster = FakeCluster::new("", &[], 0);
    let mut child = cluster.start(&[]);
    let started = Instant::now();
    while !cluster.calls().iter().any(|c| c.starts_with("get job")) {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "run.sh never polled"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let sent = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("run kill(1)");
    assert!(sent.success());
    let stopped = Instant::now();
    let code = loop {
        if let Some(status) = child.try_wait().expect("wait for run.sh") {
            break status.code();
        }
        if stopped.elapsed() > Duration::from_secs(5) {
            let _ = child.kill();
            panic!("run.sh did not stop on SIGINT");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    assert_eq!(code, Some(130));
    let calls = cluster.calls();
    assert!(
        calls
            .last()
            .is_some_and(|c| c.starts_with(&format!("delete job {name} "))),
        "{calls:#?}"
    );
    assert!(cluster.file("merge-args").is_none(), "nothing merged");
}
