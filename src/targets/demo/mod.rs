//! The embedded demo cluster: the rollout failure modes, reproducible on one machine without
//! Kubernetes. Real TCP and HTTP on loopback, simulated orchestration.
//!
//! - [`replica`]: each replica is a real hyper server on its own port, labelled with a version,
//!   listening only after its startup time; it speaks HTTP/1.1, h2c, gRPC (`health`:
//!   `grpc.health.v1.Health`), WebSocket (`websocket`: an echo session) and server-sent events;
//!   it is killed at once or drained gracefully (GOAWAY, close frame 1001, streams ended).
//! - [`proxy`]: one listening address in front (kube-proxy / Ingress / Envoy), routing each
//!   request, HTTP/2 stream or WebSocket handshake to an endpoint of its table over its own
//!   pools (HTTP/1.1 keep-alive, h2c, tunnels).
//! - [`Cluster`]: owns both and performs the rollout [`Strategy`]s of scenario steps. Every change
//!   of the proxy's table reaches it only after a propagation delay, as endpoint and route changes
//!   do in real clusters: endpoints after `propagation`, route weights after `route_propagation`.
//!
//! Termination follows the spec's `prestop`: zero means the replica is killed the moment it is
//! removed (its endpoint is still listed until the removal propagates: resets, then 503s), a
//! positive `prestop` keeps it serving that long and then drains it gracefully.
//!
//! Nothing in the load engine depends on this module; the rollout runner calls
//! [`Orchestrator::perform`] for steps whose action is a [`Strategy`].

mod health;
pub mod proxy;
pub mod replica;
mod websocket;

use std::net::{Ipv4Addr, SocketAddr};
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::sync::Mutex as StdMutex;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::Mutex;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use self::proxy::{EndpointSet, Proxy, Table};
use self::replica::{Replica, ReplicaSpec};
use crate::rollout::strategy::{Orchestrator, Say, Strategy};

/// Errors of the demo cluster.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A loopback port could not be bound.
    #[error("demo cluster: cannot bind a loopback port")]
    Bind(#[source] std::io::Error),
}

/// The demo service as a scenario's `[target] demo = { ... }` describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DemoSpec {
    /// Replicas of the first version.
    pub replicas: NonZeroUsize,
    /// The first version's label.
    pub version: String,
    /// Time from a replica's start until it listens.
    pub startup: Duration,
    /// Time a replica takes to answer.
    pub latency: Duration,
    /// Delay before an endpoint change reaches the proxy.
    pub propagation: Duration,
    /// Delay before a route-weight change reaches the proxy.
    pub route_propagation: Duration,
    /// preStop sleep: zero kills a removed replica at once; otherwise it keeps serving this long,
    /// then drains gracefully.
    pub prestop: Duration,
    /// With readiness, a new replica's endpoint is published once it listens; without, at once.
    pub readiness: bool,
    /// Longest graceful drain before the rest is cut.
    pub grace: Duration,
    /// Where the proxy listens (port 0: any free port).
    pub listen: SocketAddr,
}

impl Default for DemoSpec {
    fn default() -> Self {
        DemoSpec {
            replicas: NonZeroUsize::new(3).unwrap_or(NonZeroUsize::MIN),
            version: "v1".to_string(),
            startup: Duration::from_millis(500),
            latency: Duration::from_millis(1),
            propagation: Duration::from_millis(100),
            route_propagation: Duration::from_millis(100),
            prestop: Duration::ZERO,
            readiness: true,
            grace: Duration::from_secs(5),
            listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
        }
    }
}

/// After a blue/green switch, how long the old set keeps serving (as a preStop sleep at least)
/// before it drains: requests routed to it just before the route change end well within it.
const RETIRE_MARGIN: Duration = Duration::from_millis(200);

/// How often the orchestration looks again while it waits for replicas to listen: the most a
/// "ready" event can lag behind the moment the replica began listening.
const POLL: Duration = Duration::from_millis(2);

/// Says `NAME ready` for each replica of `replicas` that `listening` marks and that was not
/// said yet; `announced` (parallel to `replicas`, grown as needed) records what was said.
fn announce(
    replicas: &[Arc<Replica>],
    listening: &[bool],
    announced: &mut Vec<bool>,
    say: Say<'_>,
) {
    announced.resize(replicas.len(), false);
    for ((r, &up), said) in replicas.iter().zip(listening).zip(announced.iter_mut()) {
        if up && !*said {
            say(format!("{} ready", r.name()));
            *said = true;
        }
    }
}

/// Waits until every replica of `replicas` listens, saying each ready when it is seen listening
/// (within [`POLL`]), in the order they became ready. Waits forever for a replica stopped
/// before it listened (the step's timeout or the run's end cuts it short).
async fn announce_all(replicas: &[Arc<Replica>], announced: &mut Vec<bool>, say: Say<'_>) {
    loop {
        let listening: Vec<bool> = replicas.iter().map(|r| r.is_ready()).collect();
        announce(replicas, &listening, announced, say);
        if announced.iter().all(|&said| said) {
            return;
        }
        tokio::time::sleep(POLL).await;
    }
}

/// One set of replicas (a Service's pods, or a subset), by creation order.
#[derive(Debug, Default)]
struct Set {
    replicas: Vec<Arc<Replica>>,
    weight: u32,
}

#[derive(Debug, Default)]
struct State {
    sets: Vec<Set>,
    next_id: usize,
}

/// The demo service: a proxy and its replicas.
#[derive(Debug)]
pub struct Cluster {
    spec: DemoSpec,
    proxy: Proxy,
    state: Mutex<State>,
    tasks: StdMutex<JoinSet<()>>,
    stop: CancellationToken,
}

impl Orchestrator for Cluster {
    /// Performs a rollout strategy; `say` receives one line per orchestration event. Returns once
    /// the new replicas are in place (like `kubectl rollout status`); terminations and
    /// propagation may still be under way.
    fn perform<'a>(
        &'a self,
        strategy: &'a Strategy,
        say: Say<'a>,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), String>> + Send + 'a>> {
        Box::pin(self.run_strategy(strategy, say))
    }
}

impl Cluster {
    /// Starts the proxy and the first set of replicas, and waits until they are ready and listed.
    pub async fn start(spec: DemoSpec) -> Result<Cluster, Error> {
        let listener = TcpListener::bind(spec.listen).await.map_err(Error::Bind)?;
        let stop = CancellationToken::new();
        let mut tasks = JoinSet::new();
        let proxy = Proxy::start(listener, Table::default(), &mut tasks, stop.clone())
            .map_err(Error::Bind)?;
        let cluster = Cluster {
            spec,
            proxy,
            state: Mutex::new(State::default()),
            tasks: StdMutex::new(tasks),
            stop,
        };
        let version = cluster.spec.version.clone();
        let replicas = cluster
            .start_replicas(&version, cluster.spec.replicas.get())
            .await?;
        for r in &replicas {
            r.wait_ready().await;
        }
        cluster.proxy.update(|t| {
            *t.set_mut(0) = EndpointSet {
                weight: 100,
                endpoints: replicas.iter().map(|r| r.addr()).collect(),
            }
        });
        cluster.state.lock().await.sets.push(Set {
            replicas,
            weight: 100,
        });
        Ok(cluster)
    }

    /// The URL clients load.
    pub fn url(&self) -> String {
        format!("http://{}/", self.proxy.addr())
    }

    /// The URL to load: the proxy.
    pub fn target_url(&self) -> crate::config::TargetUrl {
        crate::config::TargetUrl::of_addr(self.proxy.addr())
    }

    /// Points the `[[stream]]` probes whose URL has port 0 (`ws://127.0.0.1:0/chat`) at the
    /// proxy, whose port is chosen when it starts: the scheme and path stay, the host and port
    /// become the proxy's.
    pub fn aim(&self, streams: &mut [crate::config::StreamConfig]) {
        for probe in streams.iter_mut().filter(|p| p.url.port() == 0) {
            let scheme = probe.url.uri().scheme_str().unwrap_or("ws");
            let url = format!(
                "{scheme}://{}{}",
                self.proxy.addr(),
                probe.url.path_and_query()
            );
            if let Ok(url) = url.parse() {
                probe.url = url;
            }
        }
    }

    /// Stops every replica and the proxy.
    pub async fn shutdown(&self) {
        self.stop.cancel();
        for set in &self.state.lock().await.sets {
            for r in &set.replicas {
                r.kill();
            }
        }
        let mut tasks = std::mem::take(&mut *self.tasks.lock().unwrap_or_else(|e| e.into_inner()));
        tasks.shutdown().await;
    }

    /// Performs a rollout strategy; `say` receives one line per orchestration event. Returns once
    /// the new replicas are in place (like `kubectl rollout status`); terminations and
    /// propagation may still be under way.
    async fn run_strategy(&self, strategy: &Strategy, say: Say<'_>) -> Result<(), String> {
        match strategy {
            Strategy::Rolling {
                version,
                max_surge,
                max_unavailable,
                readiness,
                prestop,
            } => {
                if max_surge + max_unavailable == 0 {
                    return Err("max_surge and max_unavailable cannot both be 0".to_string());
                }
                self.rolling(
                    version,
                    *max_surge,
                    *max_unavailable,
                    readiness.unwrap_or(self.spec.readiness),
                    prestop.unwrap_or(self.spec.prestop),
                    say,
                )
                .await
            }
            Strategy::Restart => {
                let version = self.serving_version().await;
                self.rolling(&version, 1, 0, self.spec.readiness, self.spec.prestop, say)
                    .await
            }
            Strategy::Recreate { version } => self.recreate(version, say).await,
            Strategy::Switch { version } => self.switch(version, say).await,
            Strategy::Deploy { version } => self.deploy(version, say).await.map(|_| ()),
            Strategy::Weights { version, weights } => {
                self.weights(version.as_deref(), weights, say).await
            }
        }
    }

    fn spawn(&self, task: impl std::future::Future<Output = ()> + Send + 'static) {
        let mut tasks = self.tasks.lock().unwrap_or_else(|e| e.into_inner());
        while tasks.try_join_next().is_some() {}
        tasks.spawn(task);
    }

    async fn start_replicas(&self, version: &str, n: usize) -> Result<Vec<Arc<Replica>>, Error> {
        let mut started = Vec::with_capacity(n);
        for _ in 0..n {
            let id = {
                let mut state = self.state.lock().await;
                state.next_id += 1;
                state.next_id - 1
            };
            let spec = ReplicaSpec {
                name: format!("{version}-{id}"),
                version: version.to_string(),
                startup: self.spec.startup,
                latency: self.spec.latency,
                grace: self.spec.grace,
            };
            let (replica, serve) = Replica::start(spec).await?;
            self.spawn(serve);
            started.push(Arc::new(replica));
        }
        Ok(started)
    }

    /// Applies `change` to the proxy's table after `delay`.
    fn propagate(&self, delay: Duration, change: impl FnOnce(&mut Table) + Send + 'static) {
        let table = self.proxy.shared_table();
        let stop = self.stop.clone();
        self.spawn(async move {
            tokio::select! {
                _ = tokio::time::sleep(delay) => change(&mut table.write().unwrap_or_else(|e| e.into_inner())),
                _ = stop.cancelled() => {}
            }
        });
    }

    async fn serving_version(&self) -> String {
        let state = self.state.lock().await;
        state
            .sets
            .iter()
            .max_by_key(|s| s.weight)
            .and_then(|s| s.replicas.last())
            .map_or_else(|| self.spec.version.clone(), |r| r.version().to_string())
    }

    /// Index of the set that takes the most traffic.
    fn serving(state: &State) -> usize {
        state
            .sets
            .iter()
            .enumerate()
            .max_by_key(|(i, s)| (s.weight, std::cmp::Reverse(*i)))
            .map_or(0, |(i, _)| i)
    }

    /// The set that takes the most traffic, and its replicas.
    async fn serving_set(&self) -> (usize, Vec<Arc<Replica>>) {
        let state = self.state.lock().await;
        let set = Self::serving(&state);
        let replicas = state
            .sets
            .get(set)
            .map(|s| s.replicas.clone())
            .unwrap_or_default();
        (set, replicas)
    }

    /// Records `replicas` as the members of set `set`.
    async fn replace_replicas(&self, set: usize, replicas: Vec<Arc<Replica>>) {
        if let Some(s) = self.state.lock().await.sets.get_mut(set) {
            s.replicas = replicas;
        }
    }

    /// Publishes `replica` in set `set` once it is ready (or at once without readiness).
    fn publish(&self, set: usize, replica: &Arc<Replica>, readiness: bool, say: Say<'_>) {
        let delay = self.spec.propagation;
        let addr = replica.addr();
        say(format!(
            "{} starting (endpoint listed {})",
            replica.name(),
            if readiness {
                "once ready"
            } else {
                "at once: no readiness"
            }
        ));
        let table = self.proxy.shared_table();
        let (r, stop) = (replica.clone(), self.stop.clone());
        self.spawn(async move {
            if readiness {
                tokio::select! {
                    _ = r.wait_ready() => {}
                    _ = stop.cancelled() => return,
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = stop.cancelled() => return,
            }
            table
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .set_mut(set)
                .endpoints
                .push(addr);
        });
    }

    /// Removes `replica` from set `set` (after propagation) and terminates it: killed at once
    /// without a preStop sleep, else drained after it.
    fn retire(&self, set: usize, replica: &Arc<Replica>, prestop: Duration, say: Say<'_>) {
        let addr = replica.addr();
        self.propagate(self.spec.propagation, move |t| {
            t.set_mut(set).endpoints.retain(|a| *a != addr);
        });
        if prestop.is_zero() {
            say(format!(
                "{} killed (no preStop: its endpoint is still listed for {})",
                replica.name(),
                humantime::format_duration(self.spec.propagation)
            ));
            replica.kill();
        } else {
            say(format!(
                "{} terminating: preStop sleep {}, then graceful drain",
                replica.name(),
                humantime::format_duration(prestop)
            ));
            let (r, stop) = (replica.clone(), self.stop.clone());
            self.spawn(async move {
                tokio::select! {
                    _ = tokio::time::sleep(prestop) => r.drain(),
                    _ = stop.cancelled() => {}
                }
            });
        }
    }

    async fn rolling(
        &self,
        version: &str,
        surge: usize,
        unavailable: usize,
        readiness: bool,
        prestop: Duration,
        say: Say<'_>,
    ) -> Result<(), String> {
        let n = self.spec.replicas.get();
        let (set, mut old) = self.serving_set().await;
        let mut new: Vec<Arc<Replica>> = Vec::new();
        let mut announced: Vec<bool> = Vec::new();
        loop {
            // Which new replicas listen is read once per round and said at once, so a "ready"
            // event always comes before the terminations that replica's readiness allows.
            let listening: Vec<bool> = new.iter().map(|r| r.is_ready()).collect();
            announce(&new, &listening, &mut announced, say);
            let ready_new = if readiness {
                listening.iter().filter(|&&l| l).count()
            } else {
                new.len()
            };
            if old.is_empty() && new.len() >= n && ready_new >= n {
                break;
            }
            let up = (n + surge)
                .saturating_sub(old.len() + new.len())
                .min(n.saturating_sub(new.len()));
            let started = self
                .start_replicas(version, up)
                .await
                .map_err(|e| e.to_string())?;
            for r in &started {
                self.publish(set, r, readiness, say);
            }
            new.extend(started);
            announced.resize(new.len(), false);
            // Without readiness a replica counts as available the moment it starts.
            let ready_new = if readiness { ready_new } else { new.len() };
            let available = old.len() + ready_new;
            let down = available
                .saturating_sub(n.saturating_sub(unavailable))
                .min(old.len());
            for r in old.drain(..down) {
                self.retire(set, &r, prestop, say);
            }
            if up == 0 && down == 0 {
                tokio::time::sleep(POLL).await;
            }
        }
        // Without readiness the rollout was done before the new replicas listened: each is
        // said ready when it does.
        announce_all(&new, &mut announced, say).await;
        self.replace_replicas(set, new).await;
        Ok(())
    }

    async fn recreate(&self, version: &str, say: Say<'_>) -> Result<(), String> {
        let (set, old) = self.serving_set().await;
        for r in &old {
            self.retire(set, r, self.spec.prestop, say);
        }
        // Recreate starts the new replicas only once the old ones are gone.
        tokio::time::sleep(self.spec.prestop).await;
        let new = self
            .start_replicas(version, self.spec.replicas.get())
            .await
            .map_err(|e| e.to_string())?;
        for r in &new {
            self.publish(set, r, self.spec.readiness, say);
        }
        announce_all(&new, &mut Vec::new(), say).await;
        self.replace_replicas(set, new).await;
        Ok(())
    }

    /// Starts a new set of `version` with weight 0 and publishes it; returns its index.
    async fn deploy(&self, version: &str, say: Say<'_>) -> Result<usize, String> {
        let new = self
            .start_replicas(version, self.spec.replicas.get())
            .await
            .map_err(|e| e.to_string())?;
        let set = {
            let mut state = self.state.lock().await;
            state.sets.push(Set {
                replicas: new.clone(),
                weight: 0,
            });
            state.sets.len() - 1
        };
        for r in &new {
            self.publish(set, r, true, say);
        }
        announce_all(&new, &mut Vec::new(), say).await;
        Ok(set)
    }

    async fn switch(&self, version: &str, say: Say<'_>) -> Result<(), String> {
        let set = self.deploy(version, say).await?;
        // Wait until the new endpoints are listed before routing to them.
        tokio::time::sleep(self.spec.propagation).await;
        let sets = self.state.lock().await.sets.len();
        let mut weights = vec![0; sets];
        weights[set] = 100;
        self.route(&weights, say).await;
        // Retire blue once the route change reached the proxy and blue's last requests ended.
        tokio::time::sleep(self.spec.route_propagation + RETIRE_MARGIN).await;
        let old: Vec<(usize, Arc<Replica>)> = {
            let mut state = self.state.lock().await;
            let mut old = Vec::new();
            for (i, s) in state.sets.iter_mut().enumerate() {
                if i != set {
                    old.extend(s.replicas.drain(..).map(|r| (i, r)));
                }
            }
            old
        };
        for (i, r) in &old {
            self.retire(*i, r, self.spec.prestop.max(RETIRE_MARGIN), say);
        }
        Ok(())
    }

    async fn weights(
        &self,
        version: Option<&str>,
        weights: &[u32],
        say: Say<'_>,
    ) -> Result<(), String> {
        if let Some(v) = version {
            let exists = self
                .state
                .lock()
                .await
                .sets
                .iter()
                .any(|s| s.replicas.iter().any(|r| r.version() == v));
            if !exists {
                self.deploy(v, say).await?;
                tokio::time::sleep(self.spec.propagation).await;
            }
        }
        let sets = self.state.lock().await.sets.len();
        if weights.len() > sets {
            return Err(format!(
                "{} weights given but the demo service has {sets} set(s)",
                weights.len()
            ));
        }
        self.route(weights, say).await;
        Ok(())
    }

    /// Sets route weights (after the route propagation delay).
    async fn route(&self, weights: &[u32], say: Say<'_>) {
        {
            let mut state = self.state.lock().await;
            for (s, &w) in state.sets.iter_mut().zip(weights) {
                s.weight = w;
            }
        }
        say(format!(
            "route weights {weights:?} (reach the proxy in {})",
            humantime::format_duration(self.spec.route_propagation)
        ));
        let weights = weights.to_vec();
        self.propagate(self.spec.route_propagation, move |t| {
            for (i, &w) in weights.iter().enumerate() {
                t.set_mut(i).weight = w;
            }
        });
    }
}

#[cfg(test)]
mod tests {
    //! A gRPC `Watch` stream held through the proxy while its replica is retired: drained, the
    //! client sees `NOT_SERVING` then status `OK`; killed, its stream is reset.

    use std::num::NonZeroUsize;
    use std::time::Duration;

    use bytes::{Buf, Bytes, BytesMut};
    use h2::RecvStream;

    use super::{Cluster, DemoSpec};
    use crate::rollout::strategy::{Orchestrator, Strategy};

    /// SERVING and NOT_SERVING, as `HealthCheckResponse` messages on the wire.
    const SERVING: &[u8] = &[0x08, 0x01];
    const NOT_SERVING: &[u8] = &[0x08, 0x02];

    /// How a `Watch` stream went on after its first message, once its replica was retired.
    #[derive(Debug, PartialEq)]
    enum After {
        /// Messages, then trailers with this `grpc-status`.
        Ended(Vec<Vec<u8>>, Option<String>),
        /// Messages, then the stream reset with this reason.
        Reset(Vec<Vec<u8>>, Option<h2::Reason>),
    }

    /// Reads the next whole gRPC message of `body` (buffered in `buf`), `None` at its end.
    async fn message(
        body: &mut RecvStream,
        buf: &mut BytesMut,
    ) -> Result<Option<Vec<u8>>, h2::Error> {
        loop {
            if buf.len() >= 5 {
                let len = u32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]) as usize;
                if buf.len() >= 5 + len {
                    buf.advance(5);
                    return Ok(Some(buf.split_to(len).to_vec()));
                }
            }
            match body.data().await {
                Some(Ok(data)) => {
                    let _ = body.flow_control().release_capacity(data.len());
                    buf.extend_from_slice(&data);
                }
                Some(Err(e)) => return Err(e),
                None => return Ok(None),
            }
        }
    }

    /// One replica behind the proxy, a `Watch` held through the proxy, and a rolling update to
    /// v2 with `prestop`: what the stream did after its first message (which must be SERVING).
    async fn watch_through_a_rollout(prestop: Duration) -> After {
        let spec = DemoSpec {
            replicas: NonZeroUsize::MIN,
            startup: Duration::from_millis(50),
            propagation: Duration::from_millis(50),
            prestop,
            ..DemoSpec::default()
        };
        let cluster = Cluster::start(spec).await.expect("the demo cluster starts");
        let tcp = tokio::net::TcpStream::connect(cluster.proxy.addr())
            .await
            .expect("the proxy accepts");
        let (mut client, connection) = h2::client::handshake(tcp).await.expect("h2c");
        let mut tasks = tokio::task::JoinSet::new();
        tasks.spawn(async move {
            let _ = connection.await;
        });
        let request = http::Request::post(format!(
            "http://{}/grpc.health.v1.Health/Watch",
            cluster.proxy.addr()
        ))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(())
        .expect("a request");
        let (response, mut send) = client.send_request(request, false).expect("a stream");
        // An empty HealthCheckRequest: the whole server.
        send.send_data(Bytes::from_static(&[0, 0, 0, 0, 0]), true)
            .expect("the request message");
        let response = response.await.expect("response headers");
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["x-version"], "v1");
        let mut body = response.into_body();
        let mut buf = BytesMut::new();
        let first = message(&mut body, &mut buf).await.expect("a message");
        assert_eq!(first.as_deref(), Some(SERVING));

        let rolling = Strategy::Rolling {
            version: "v2".to_string(),
            max_surge: 1,
            max_unavailable: 0,
            readiness: None,
            prestop: None,
        };
        cluster
            .perform(&rolling, &|_| {})
            .await
            .expect("the rollout");
        let mut messages = Vec::new();
        let after = tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                match message(&mut body, &mut buf).await {
                    Ok(Some(m)) => messages.push(m),
                    Ok(None) => {
                        let trailers = body.trailers().await.ok().flatten();
                        let status = trailers
                            .and_then(|t| t.get("grpc-status").cloned())
                            .and_then(|s| s.to_str().ok().map(str::to_string));
                        return After::Ended(std::mem::take(&mut messages), status);
                    }
                    Err(e) => return After::Reset(std::mem::take(&mut messages), e.reason()),
                }
            }
        })
        .await
        .expect("the stream ends within 5 s");
        cluster.shutdown().await;
        after
    }

    #[tokio::test]
    async fn a_drained_replica_ends_its_watch_streams_with_not_serving_then_ok() {
        let after = watch_through_a_rollout(Duration::from_millis(200)).await;
        assert_eq!(
            after,
            After::Ended(vec![NOT_SERVING.to_vec()], Some("0".to_string()))
        );
    }

    #[tokio::test]
    async fn a_killed_replicas_watch_streams_are_reset_by_the_proxy() {
        let after = watch_through_a_rollout(Duration::ZERO).await;
        assert_eq!(
            after,
            After::Reset(Vec::new(), Some(h2::Reason::INTERNAL_ERROR))
        );
    }
}
