//! Real proxies for `proxies.rs`: nginx and haproxy from the system's packages, each an
//! ordinary process on loopback ports with its config, pid file, logs and temp paths in a
//! [`Scratch`] directory, started and stopped by the test; `gapless serve` backends; and a runner
//! for `gapless run --scenario` with extra environment variables.
//!
//! A test that needs a proxy is `#[ignore = "needs nginx"]` (or haproxy) and asks
//! [`needs`](super::needs) for its binary, which fails the test when it is missing. Tests hold
//! [`serial`] so that their timing is not disturbed by each other's load.

use std::io::Read;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;

pub use super::GAPLESS;
use super::drain;

/// A `gapless run` that takes longer than this is a hang: it is killed and the test fails.
const RUN_LIMIT: Duration = Duration::from_secs(90);

/// How long a process may take to start listening.
const START_LIMIT: Duration = Duration::from_secs(10);

/// One proxy test at a time, and no other test's load meanwhile: each runs about 1,000 requests
/// per second through real processes, and the timing assertions would suffer from another
/// test's load on the same cores.
pub fn serial() -> super::Machine {
    super::exclusive()
}

/// A free loopback port: bound on port 0, read, and released for a child process to bind.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind a free loopback port")
        .port()
}

/// True when something accepts connections on `127.0.0.1:port`.
pub fn accepting(port: u16) -> bool {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
}

/// Waits up to [`START_LIMIT`] for `127.0.0.1:port` to accept; `alive` is asked between tries
/// and a `false` gives up at once (the process died).
fn wait_accepting(port: u16, mut alive: impl FnMut() -> bool) -> bool {
    let until = Instant::now() + START_LIMIT;
    while Instant::now() < until {
        if accepting(port) {
            return true;
        }
        if !alive() {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    false
}

/// A TOML basic string holding `text`, which must need no escaping (temp paths and shell lines
/// written by these tests).
pub fn toml_str(text: &str) -> String {
    assert!(
        !text.contains(['"', '\\', '$']) && !text.chars().any(char::is_control),
        "{text:?} would need escaping in TOML (or ${{VAR}} expansion)"
    );
    format!("\"{text}\"")
}

/// A temporary directory for one test's configs, scripts, pid files, logs and results. Removed
/// on drop, unless the test is failing: then it is kept, and its path printed, for a post-mortem.
pub struct Scratch(PathBuf);

impl Scratch {
    /// A fresh, empty directory in the system temp directory.
    pub fn new(name: &str) -> Scratch {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let dir = std::env::temp_dir().join(format!(
            "gapless-{name}-{}-{}-{nanos}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).expect("create a scratch directory");
        Scratch(dir)
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.0
    }

    /// A path inside it.
    pub fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    /// The directory, as a string (temp paths are UTF-8).
    pub fn as_str(&self) -> &str {
        self.0.to_str().expect("temp paths are UTF-8")
    }

    /// The path of `name` inside it, as a string (temp paths are UTF-8).
    pub fn file(&self, name: &str) -> String {
        self.join(name)
            .into_os_string()
            .into_string()
            .expect("temp paths are UTF-8")
    }

    /// Writes `name` and returns its path.
    pub fn write(&self, name: &str, text: &str) -> String {
        let path = self.file(name);
        std::fs::write(&path, text).unwrap_or_else(|e| panic!("write {path}: {e}"));
        path
    }

    /// The contents of `name`, or an empty string.
    pub fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.join(name)).unwrap_or_default()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("kept {} for inspection", self.0.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// A `gapless serve --version LABEL` child process on a free loopback port; killed on drop.
pub struct Backend {
    child: Child,
    port: u16,
}

impl Backend {
    /// Starts one and waits until it accepts connections.
    pub fn start(label: &str) -> Backend {
        for _ in 0..5 {
            let port = free_port();
            let mut child = Command::new(GAPLESS)
                .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
                .args(["--version", label])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start gapless serve");
            if wait_accepting(port, || matches!(child.try_wait(), Ok(None))) {
                return Backend { child, port };
            }
            // Someone else took the port between our probe and its bind: try another.
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("gapless serve --version {label} did not start listening");
    }

    /// Its port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Its process id, for a step that kills it.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An nginx master (daemonized, so that a step may stop and start it again) whose files all live
/// in a [`Scratch`] directory: `nginx.conf`, `nginx.pid`, `error.log` and `temp/`. Stopped on drop
/// through the pid file, whichever master wrote it last.
pub struct Nginx {
    binary: PathBuf,
    dir: PathBuf,
}

impl Nginx {
    /// The main config for a server on `127.0.0.1:port` whose `location /` holds `location`, with
    /// `http` holding `upstreams`; one worker process, no access log.
    pub fn config(dir: &Path, port: u16, upstreams: &str, location: &str) -> String {
        let d = dir.display();
        format!(
            "worker_processes 1;\n\
             pid {d}/nginx.pid;\n\
             error_log {d}/error.log notice;\n\
             events {{ worker_connections 1024; }}\n\
             http {{\n\
             \x20   access_log off;\n\
             \x20   client_body_temp_path {d}/temp/body;\n\
             \x20   proxy_temp_path {d}/temp/proxy;\n\
             \x20   fastcgi_temp_path {d}/temp/fastcgi;\n\
             \x20   uwsgi_temp_path {d}/temp/uwsgi;\n\
             \x20   scgi_temp_path {d}/temp/scgi;\n\
             {upstreams}\n\
             \x20   server {{\n\
             \x20       listen 127.0.0.1:{port};\n\
             \x20       location / {{\n\
             {location}\n\
             \x20       }}\n\
             \x20   }}\n\
             }}\n"
        )
    }

    /// Writes `config` to `DIR/nginx.conf`, starts nginx and waits until it accepts on `port`.
    pub fn start(binary: &Path, dir: &Scratch, port: u16, config: &str) -> Nginx {
        std::fs::create_dir_all(dir.join("temp")).expect("create nginx's temp directory");
        dir.write("nginx.conf", config);
        let nginx = Nginx {
            binary: binary.to_path_buf(),
            dir: dir.path().to_path_buf(),
        };
        let out = output_within(
            Command::new(binary).args(nginx.args()).env_remove("NGINX"),
            START_LIMIT,
        );
        assert!(
            out.status.success(),
            "nginx did not start: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            dir.read("error.log")
        );
        assert!(
            wait_accepting(port, || true),
            "nginx does not accept on port {port}:\n{}",
            dir.read("error.log")
        );
        nginx
    }

    /// `-p DIR -c DIR/nginx.conf -e DIR/error.log`: every nginx command line uses these.
    fn args(&self) -> Vec<String> {
        let d = self.dir.display();
        vec![
            "-p".into(),
            format!("{d}"),
            "-c".into(),
            format!("{d}/nginx.conf"),
            "-e".into(),
            format!("{d}/error.log"),
        ]
    }

    /// The shell command line of nginx with this directory's files and `extra` (e.g. `-s
    /// reload`), for scenario steps.
    pub fn command(&self, extra: &str) -> String {
        let mut line = self.binary.display().to_string();
        for arg in self.args() {
            line.push(' ');
            line.push_str(&arg);
        }
        if !extra.is_empty() {
            line.push(' ');
            line.push_str(extra);
        }
        line
    }

    /// The master's pid, from the pid file.
    fn master(&self) -> Option<i32> {
        std::fs::read_to_string(self.dir.join("nginx.pid"))
            .ok()?
            .trim()
            .parse()
            .ok()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let Some(pid) = self.master().and_then(rustix::process::Pid::from_raw) else {
            return;
        };
        // SIGTERM: nginx's fast shutdown (`nginx -s stop`); the master removes its pid file.
        if rustix::process::kill_process(pid, rustix::process::Signal::TERM).is_err() {
            return;
        }
        let until = Instant::now() + Duration::from_secs(5);
        while self.dir.join("nginx.pid").exists() && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// A haproxy child process (foreground, `-db`) with its config and log in a [`Scratch`]
/// directory and its runtime API on a loopback TCP port; killed on drop.
pub struct Haproxy {
    child: Child,
    port: u16,
    admin: u16,
}

impl Haproxy {
    /// Starts haproxy with `config` (written to `DIR/haproxy.cfg`, checked with `-c` first), its
    /// output in `DIR/haproxy.log`; waits until both `port` (the frontend) and `admin` (the
    /// runtime API) accept connections.
    pub fn start(binary: &Path, dir: &Scratch, port: u16, admin: u16, config: &str) -> Haproxy {
        let cfg = dir.write("haproxy.cfg", config);
        let check = Command::new(binary)
            .args(["-c", "-q", "-f", &cfg])
            .output()
            .expect("run haproxy -c");
        assert!(
            check.status.success(),
            "haproxy rejects its config: {}{}",
            String::from_utf8_lossy(&check.stdout),
            String::from_utf8_lossy(&check.stderr)
        );
        let log = std::fs::File::create(dir.join("haproxy.log")).expect("create haproxy.log");
        let mut child = Command::new(binary)
            .args(["-db", "-f", &cfg])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone the log handle"))
            .stderr(log)
            .spawn()
            .expect("start haproxy");
        let mut alive = || matches!(child.try_wait(), Ok(None));
        let up = wait_accepting(port, &mut alive) && wait_accepting(admin, &mut alive);
        let haproxy = Haproxy { child, port, admin };
        assert!(up, "haproxy did not start:\n{}", dir.read("haproxy.log"));
        haproxy
    }

    /// The frontend's port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The runtime API's port.
    pub fn admin(&self) -> u16 {
        self.admin
    }

    /// Sends one runtime API command and returns the answer.
    pub fn api(&self, command: &str) -> String {
        use std::io::Write;
        let mut stream = TcpStream::connect(("127.0.0.1", self.admin)).expect("runtime API");
        stream
            .write_all(format!("{command}\n").as_bytes())
            .expect("send a runtime API command");
        let mut answer = String::new();
        let _ = stream.read_to_string(&mut answer);
        answer
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What one `gapless run` produced.
pub struct Run {
    /// Exit code (-1 when killed by a signal).
    pub code: i32,
    /// The text report.
    pub stdout: String,
    /// Progress and step output.
    pub stderr: String,
    /// The JSON result.
    pub json: Value,
}

impl Run {
    /// The report's lines that README quotes: the verdict, the versions and the failure windows.
    pub fn summary(&self) -> String {
        self.stdout
            .lines()
            .filter(|l| {
                [
                    "PASS",
                    "FAIL",
                    "Versions",
                    "Failure windows",
                    "  gap",
                    "  window",
                    "  ...",
                ]
                .iter()
                .any(|p| l.starts_with(p))
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl std::fmt::Debug for Run {
    /// Everything, for assertion messages.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {}\n--- stdout\n{}\n--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

/// Runs `gapless run ARGS... --json DIR/result.json` from the package root (scenario steps may
/// use paths relative to it) with `env` added, and returns what it produced. Panics when it hangs,
/// panics, or writes no JSON result.
pub fn run_gapless(dir: &Scratch, args: &[&str], env: &[(&str, String)]) -> Run {
    let result = dir.join("result.json");
    let _ = std::fs::remove_file(&result);
    let mut child = Command::new(GAPLESS)
        .arg("run")
        .args(args)
        .arg("--json")
        .arg(&result)
        // nginx reads NGINX (inherited sockets): the steps must not pass one on.
        .env_remove("NGINX")
        .envs(env.iter().map(|(k, v)| (k, v)))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start gapless");
    let stdout = drain(child.stdout.take().expect("piped stdout"));
    let stderr = drain(child.stderr.take().expect("piped stderr"));
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for gapless") {
            break status;
        }
        if started.elapsed() > RUN_LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            panic!("gapless run {args:?} did not finish within {RUN_LIMIT:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let stdout = stdout.join().expect("stdout reader");
    let stderr = stderr.join().expect("stderr reader");
    assert!(!stderr.contains("panicked"), "gapless panicked:\n{stderr}");
    let code = status.code().unwrap_or(-1);
    let text = std::fs::read_to_string(&result).unwrap_or_else(|e| {
        panic!("gapless exited {code} without a JSON result ({e})\n{stdout}\n{stderr}")
    });
    let json = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("the JSON result does not parse ({e}):\n{text}"));
    Run {
        code,
        stdout,
        stderr,
        json,
    }
}

/// Runs `command` to its end with stdin closed and its output captured; panics if it takes
/// longer than `limit` (after killing it).
pub fn output_within(command: &mut Command, limit: Duration) -> Output {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {command:?}: {e}"));
    let stdout = drain(child.stdout.take().expect("piped stdout"));
    let stderr = drain(child.stderr.take().expect("piped stderr"));
    let until = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for a child") {
            break status;
        }
        if Instant::now() > until {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{command:?} did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Output {
        status,
        stdout: stdout.join().expect("stdout reader").into_bytes(),
        stderr: stderr.join().expect("stderr reader").into_bytes(),
    }
}

/// `key=value` pairs from the last line of a step's output that holds `key=`, as numbers.
pub fn step_values(step: &Value, key: &str) -> Vec<(String, f64)> {
    let needle = format!("{key}=");
    let tail = step["output_tail"].as_array().cloned().unwrap_or_default();
    let line = tail
        .iter()
        .filter_map(Value::as_str)
        .rfind(|l| l.contains(&needle))
        .unwrap_or_else(|| panic!("no {needle} line in the output of step {step:#}"));
    line.split_whitespace()
        .filter_map(|pair| {
            let (k, v) = pair.split_once('=')?;
            Some((k.to_string(), v.parse().ok()?))
        })
        .collect()
}

/// The value of `key` among `pairs`.
pub fn value(pairs: &[(String, f64)], key: &str) -> f64 {
    pairs
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| *v)
        .unwrap_or_else(|| panic!("no {key} in {pairs:?}"))
}

/// Shell functions for step scripts (bash). `stamp VAR` sets VAR to the wall clock in Unix
/// milliseconds (from `$EPOCHREALTIME`), `nap SECONDS` sleeps (a `read` timeout on a private
/// FIFO) and `accepting PORT` tries one TCP connection to 127.0.0.1:PORT. None of them forks, so
/// polling loops built from them measure to a few milliseconds without stealing the CPU from the
/// load.
pub const BASH_PRELUDE: &str = r#"set -euo pipefail
stamp() { local t=${EPOCHREALTIME//[!0-9]/}; printf -v "$1" '%s.%s' "${t:0:-3}" "${t: -3}"; }
fifo=$(mktemp -u); mkfifo "$fifo"; exec 9<>"$fifo"; rm -f "$fifo"
nap() { read -r -t "$1" -u 9 _ || true; }
accepting() { true 3<>"/dev/tcp/127.0.0.1/$1"; } 2>/dev/null
"#;

/// Bash functions for haproxy's runtime API on `127.0.0.1:admin` (to follow [`BASH_PRELUDE`]):
/// `api COMMAND` prints the answer to one command; `server NAME` reads `show stat` and sets
/// `qcur`, `scur` (current sessions), `stot` (total sessions) and `status` for server `be/NAME`.
/// Plain bash (`/dev/tcp`): no socat needed.
pub fn haproxy_api(admin: u16) -> String {
    r#"api() {
  exec 3<>"/dev/tcp/127.0.0.1/@ADMIN@"
  printf '%s\n' "$1" >&3
  local line
  while IFS= read -r line <&3; do printf '%s\n' "$line"; done
  exec 3<&-
}
server() {
  local f
  qcur='' scur='' stot='' status=''
  exec 3<>"/dev/tcp/127.0.0.1/@ADMIN@"
  printf 'show stat\n' >&3
  while IFS=, read -r -a f <&3; do
    if [[ ${f[0]:-} == be && ${f[1]:-} == "$1" ]]; then
      qcur=${f[2]} scur=${f[4]} stot=${f[7]} status=${f[17]}
    fi
  done
  exec 3<&-
}
"#
    .replace("@ADMIN@", &admin.to_string())
}
