//! A network namespace of the test's own, with a `gapless serve` target inside, for faults that
//! need the kernel's packet filter (iptables rules on the target's side) without touching the
//! host's.
//!
//! [`Netns::new`] creates namespace `gls-PID-N` and a veth pair on a /30 of `10.250.0.0/16`
//! that no address or route of the host overlaps (the host's end `.1`, the namespace's `.2`);
//! [`Netns::with_server`] also runs `gapless serve` on the namespace's address through `ip netns
//! exec`, and [`Netns::command`] runs any program inside (a shard of a split load, say). Dropping it (also
//! while a failing test unwinds) kills the server and deletes the namespace, which removes the
//! veth pair. It needs root, `ip` (iproute2) and `iptables`: a test using it is
//! `#[ignore = "needs root, ip netns and iptables"]` and fails with a clear message when one of
//! them is missing.

use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use super::{GAPLESS, needs};

/// The port `gapless serve` listens on inside the namespace (nothing else does there).
pub const PORT: u16 = 8080;

/// How long the server may take to accept connections.
const START_LIMIT: Duration = Duration::from_secs(10);

/// A network namespace with a veth pair to the host and a `gapless serve` inside; torn down on
/// drop.
pub struct Netns {
    name: String,
    host_link: String,
    host_addr: Ipv4Addr,
    ns_addr: Ipv4Addr,
    ip: PathBuf,
    iptables: PathBuf,
    server: Option<Child>,
}

impl Netns {
    /// Creates the namespace and its veth pair, starts `gapless serve --listen ADDR:8080` in
    /// it and waits until it accepts connections from the host. Panics, saying what is
    /// missing, without root, `ip` or `iptables`.
    pub fn with_server() -> Netns {
        let mut netns = Netns::new();
        netns.serve();
        netns
    }

    /// Creates the namespace and its veth pair (nothing runs inside yet). Panics, saying what
    /// is missing, without root, `ip` or `iptables`.
    pub fn new() -> Netns {
        assert!(
            rustix::process::geteuid().is_root(),
            "this test needs root, to create a network namespace and set iptables rules in it \
             (it is ignored by a plain `cargo test`; .ci/run runs it as root)"
        );
        let ip = needs("ip");
        let iptables = needs("iptables");
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let (pid, n) = (std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
        let (host_addr, ns_addr) = free_slash_30(&ip, pid, n);
        let netns = Netns {
            name: format!("gls-{pid}-{n}"),
            // Interface names have at most 15 characters: "gls" + 7 digits + "-" + n + side.
            host_link: format!("gls{pid}-{n}h"),
            host_addr,
            ns_addr,
            ip,
            iptables,
            server: None,
        };
        let ns_link = format!("gls{pid}-{n}n");
        let (name, host_link) = (netns.name.clone(), netns.host_link.clone());
        let host = format!("{host_addr}/30");
        let inside = format!("{ns_addr}/30");
        netns.ip(&["netns", "add", &name]);
        netns.ip(&[
            "link", "add", &host_link, "type", "veth", "peer", "name", &ns_link, "netns", &name,
        ]);
        netns.ip(&["addr", "add", &host, "dev", &host_link]);
        netns.ip(&["link", "set", &host_link, "up"]);
        netns.ip(&["-n", &name, "addr", "add", &inside, "dev", &ns_link]);
        netns.ip(&["-n", &name, "link", "set", &ns_link, "up"]);
        netns.ip(&["-n", &name, "link", "set", "lo", "up"]);
        netns
    }

    /// Starts `gapless serve --listen ADDR:8080` inside and waits until it accepts connections
    /// from the host.
    fn serve(&mut self) {
        let (name, ns_addr) = (self.name.clone(), self.ns_addr);
        let netns = self;
        let listen = format!("{ns_addr}:{PORT}");
        let child = Command::new(&netns.ip)
            .args(["netns", "exec", &name])
            .arg(GAPLESS)
            .args(["serve", "--listen", &listen])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run ip netns exec {name} gapless serve: {e}"));
        netns.server = Some(child);
        let addr = SocketAddr::from((ns_addr, PORT));
        let until = Instant::now() + START_LIMIT;
        loop {
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                break;
            }
            let exited = netns
                .server
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten());
            assert!(
                exited.is_none() && Instant::now() < until,
                "gapless serve in namespace {name} does not accept on {addr} (exited: {exited:?})"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The namespace's name (`gls-PID-N`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The host's end of the veth pair.
    pub fn host_addr(&self) -> Ipv4Addr {
        self.host_addr
    }

    /// `ip netns exec NAME PROGRAM`: a command run inside the namespace.
    pub fn command(&self, program: &str) -> Command {
        let mut command = Command::new(&self.ip);
        command.args(["netns", "exec", &self.name, program]);
        command
    }

    /// Runs `ip ARGS` inside the namespace (`ip -n NAME ARGS`); panics if it fails.
    pub fn ip_inside(&self, args: &[&str]) {
        let mut all = vec!["-n", self.name.as_str()];
        all.extend_from_slice(args);
        run(&self.ip, &all);
    }

    /// `http://ADDR:8080/`, the server inside, as the host reaches it.
    pub fn url(&self) -> String {
        format!("http://{}:{PORT}/", self.ns_addr)
    }

    /// A shell command line running `iptables ARGS` inside the namespace, for a step's script:
    /// `ip netns exec NAME iptables ARGS`.
    pub fn iptables_command(&self, args: &str) -> String {
        format!(
            "{} netns exec {} {} {args}",
            self.ip.display(),
            self.name,
            self.iptables.display()
        )
    }

    /// Runs `ip ARGS`; panics with its output if it fails.
    fn ip(&self, args: &[&str]) {
        run(&self.ip, args);
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        if let Some(mut server) = self.server.take() {
            // `ip netns exec` execs the command: this is gapless serve itself.
            let _ = server.kill();
            let _ = server.wait();
        }
        // Deleting the namespace destroys the veth end inside it, and with it the host's end;
        // the host's end is deleted too, in case the namespace was never made.
        let quiet = |args: &[&str]| {
            let _ = Command::new(&self.ip)
                .args(args)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        };
        quiet(&["netns", "del", &self.name]);
        if Path::new("/sys/class/net").join(&self.host_link).exists() {
            quiet(&["link", "del", &self.host_link]);
        }
    }
}

/// Runs `program ARGS`; panics with its output if it fails.
fn run(program: &Path, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", program.display()));
    assert!(
        out.status.success(),
        "{} {} failed: {}",
        program.display(),
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A /30 of 10.250.0.0/16 that overlaps no address or route of the host (every table):
/// `(host end, namespace end)`. The search starts at a place given by `pid` and `n`, so that
/// namespaces made at the same time by other tests pick different ones.
fn free_slash_30(ip: &Path, pid: u32, n: u32) -> (Ipv4Addr, Ipv4Addr) {
    let taken: Vec<(u32, u32)> = [
        run(ip, &["-4", "-o", "addr", "show"]),
        run(ip, &["-4", "route", "show", "table", "all"]),
    ]
    .iter()
    .flat_map(|text| text.split_whitespace().filter_map(prefix))
    .collect();
    let base = u32::from(Ipv4Addr::new(10, 250, 0, 0));
    let slots = 1u32 << 14; // /30s in a /16
    let first = pid.wrapping_mul(7919).wrapping_add(n.wrapping_mul(104_729)) % slots;
    (0..slots)
        .map(|i| base + ((first + i) % slots) * 4)
        .find(|&net| {
            // Two prefixes overlap when the shorter one holds the other.
            taken.iter().all(|&(addr, mask)| {
                let shorter = mask & !3;
                addr & shorter != net & shorter
            })
        })
        .map(|net| (Ipv4Addr::from(net + 1), Ipv4Addr::from(net + 2)))
        .expect("a free /30 in 10.250.0.0/16")
}

/// `A.B.C.D` or `A.B.C.D/N` as (address, mask); `None` for any other word, and for a default
/// route (`/0`), which uses no address.
fn prefix(word: &str) -> Option<(u32, u32)> {
    let (addr, len) = match word.split_once('/') {
        Some((addr, len)) => (
            addr,
            len.parse::<u32>().ok().filter(|&l| (1..=32).contains(&l))?,
        ),
        None => (word, 32),
    };
    let addr = u32::from(addr.parse::<Ipv4Addr>().ok()?);
    let mask = u32::MAX << (32 - len);
    Some((addr, mask))
}
