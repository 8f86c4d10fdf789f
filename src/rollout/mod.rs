//! The rollout runner: runs the scenario's steps on the run's clock, beside the load.
//!
//! Each command step runs in its own process group (`sh -c LINE`, or the program itself for the
//! quick form), with stdin closed and stdout and stderr streamed line by line to the console as
//! `[name] line`; the last lines are kept for the report. A step ends when its command exits;
//! anything it left running in its process group is killed 200 ms later (a daemon it started
//! has detached into its own session by then), so no step outlives its turn.
//! A step that times out, or any step when the run is interrupted, has its whole process group
//! killed (SIGKILL) and reaped. Background steps (watchers) run until the end of the run, and each
//! line they print becomes a timestamped [`Event`].
//!
//! Every step's process group is registered while it lives, so that a second Ctrl-C, which exits
//! at once (and `std::process::exit` runs no destructor, so `kill_on_drop` would not fire), can
//! still kill them all first: [`kill_every_group`].
//!
//! Memory is bounded: lines are cut at [`MAX_LINE`] bytes, tails hold [`TAIL_LINES`] lines and a
//! watcher keeps at most [`MAX_EVENTS`] events (the rest are counted).

use std::collections::VecDeque;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

pub mod step;
pub mod strategy;

use self::step::{Action, Step};
use self::strategy::Orchestrator;
use crate::redact::Redactor;
use crate::ui::console::Console;

/// Longest output line kept (bytes); the rest of the line is dropped.
pub const MAX_LINE: usize = 1000;
/// Output lines kept per step for the report.
pub const TAIL_LINES: usize = 20;
/// Events kept per watcher.
pub const MAX_EVENTS: usize = 10_000;
/// After a step's command exits or is killed, how long its output may still take to drain (a
/// process that escaped the group could hold the pipe open forever).
const DRAIN: Duration = Duration::from_millis(500);
/// After a step's command exits by itself, how long what it left in its process group may live
/// before it is killed: a daemon it started (`nginx`, `haproxy -D`) has this long to detach
/// into its own session, which it does within milliseconds.
const LEFTOVER_GRACE: Duration = Duration::from_millis(200);

/// The process groups of the steps running now (their leaders' pids).
static LIVE_GROUPS: Mutex<Vec<u32>> = Mutex::new(Vec::new());

/// Kills (SIGKILL) the process group of every step still running, foreground and background.
/// For an exit that skips destructors: the second Ctrl-C.
pub fn kill_every_group() {
    let groups = LIVE_GROUPS.lock().unwrap_or_else(PoisonError::into_inner);
    for &leader in groups.iter() {
        kill_group(Some(leader));
    }
}

/// Keeps a step's process group in [`LIVE_GROUPS`] while it lives.
struct Registered(Option<u32>);

impl Registered {
    fn new(leader: Option<u32>) -> Registered {
        if let Some(pid) = leader {
            LIVE_GROUPS
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(pid);
        }
        Registered(leader)
    }
}

impl Drop for Registered {
    fn drop(&mut self) {
        if let Some(pid) = self.0 {
            let mut groups = LIVE_GROUPS.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(i) = groups.iter().position(|&p| p == pid) {
                groups.swap_remove(i);
            }
        }
    }
}

/// How a step ended.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepStatus {
    /// Exited with the expected status (or a pause that ran out).
    Ok,
    /// Exited with another status, was killed by a signal, or could not start.
    Failed,
    /// Ran past its timeout and was killed.
    TimedOut,
    /// Killed because the run was interrupted.
    Interrupted,
    /// A watcher stopped at the end of the run.
    Stopped,
    /// Never started: an earlier step failed, the warmup failed, or the run was interrupted.
    #[default]
    Skipped,
}

impl std::fmt::Display for StepStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl StepStatus {
    /// The stable name used in reports (serde's).
    pub fn as_str(self) -> &'static str {
        crate::measure::outcome::wire_name(&self)
    }

    /// True when this step makes the rollout fail (exit 3).
    pub fn is_failure(self) -> bool {
        matches!(self, StepStatus::Failed | StepStatus::TimedOut)
    }
}

/// What one step did, on the run's clock.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StepRecord {
    /// The step's name.
    pub name: String,
    /// The command (or `sleep 5s`).
    pub command: String,
    /// A watcher.
    pub background: bool,
    /// From the start of the run; `None` if it never started.
    pub start: Option<Duration>,
    /// From the start of the run; `None` if it never started.
    pub end: Option<Duration>,
    /// Exit status, when the command exited by itself.
    pub exit_code: Option<i32>,
    /// The signal that ended the command, if one did.
    pub signal: Option<i32>,
    /// How it ended.
    pub status: StepStatus,
    /// Why, in words, when it did not end well (for the verdict).
    pub problem: Option<String>,
    /// Its last output lines (stdout and stderr, interleaved as read).
    pub output_tail: Vec<String>,
    /// When each line of `output_tail` was read, from the start of the run (same length).
    pub output_tail_at: Vec<Duration>,
}

impl StepRecord {
    fn skipped(step: &Step) -> StepRecord {
        StepRecord {
            name: step.name.clone(),
            command: step.command.clone(),
            background: step.background,
            start: None,
            end: None,
            exit_code: None,
            signal: None,
            status: StepStatus::Skipped,
            problem: None,
            output_tail: Vec::new(),
            output_tail_at: Vec::new(),
        }
    }

    /// True when the step was running at some time in `[from, to]` (a step still running at
    /// the end of the run counts as running until then).
    pub fn overlaps(&self, from: Duration, to: Duration) -> bool {
        match (self.start, self.end) {
            (Some(start), Some(end)) => start <= to && from <= end,
            (Some(start), None) => start <= to,
            _ => false,
        }
    }
}

/// One line printed by a watcher.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// When it was read, from the start of the run.
    pub at: Duration,
    /// The watcher's name.
    pub step: String,
    /// The line.
    pub line: String,
}

/// Everything the rollout did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RolloutReport {
    /// Every step, in scenario order.
    pub steps: Vec<StepRecord>,
    /// Watcher lines, in time order.
    pub events: Vec<Event>,
    /// Watcher lines beyond [`MAX_EVENTS`] per watcher, counted only.
    pub events_dropped: u64,
    /// Set when requests failed during warmup and no step ran: `(failed, total)` at the check.
    pub unhealthy_warmup: Option<(u64, u64)>,
}

impl RolloutReport {
    /// The first step that made the rollout fail.
    pub fn failed_step(&self) -> Option<&StepRecord> {
        self.steps.iter().find(|s| s.status.is_failure())
    }

    /// The last foreground step that ended at or before `t`, if any ran.
    pub fn step_before(&self, t: Duration) -> Option<&str> {
        self.steps
            .iter()
            .filter(|s| !s.background && s.end.is_some_and(|end| end <= t))
            .max_by_key(|s| s.end)
            .map(|s| s.name.as_str())
    }

    /// Names of the foreground steps running at some time in `[from, to]`.
    pub fn steps_during(&self, from: Duration, to: Duration) -> Vec<String> {
        self.steps
            .iter()
            .filter(|s| !s.background && s.overlaps(from, to))
            .map(|s| s.name.clone())
            .collect()
    }
}

/// The foreground step now running, for the progress line.
pub type Current = watch::Sender<Option<String>>;

/// Runs the steps of one run.
#[derive(Debug)]
pub struct Rollout {
    steps: Vec<Step>,
    start: Instant,
    console: Arc<Console>,
    demo: Option<Arc<dyn Orchestrator>>,
    records: Vec<Option<StepRecord>>,
    watchers: JoinSet<(usize, StepRecord, Vec<Event>, u64)>,
    watchers_stop: CancellationToken,
    events: Vec<Event>,
    events_dropped: u64,
    unhealthy_warmup: Option<(u64, u64)>,
}

impl Rollout {
    /// A rollout of `steps` for a run that started at `start`; `demo` performs the demo
    /// cluster's strategies.
    pub fn new(
        steps: Vec<Step>,
        start: Instant,
        console: Arc<Console>,
        demo: Option<Arc<dyn Orchestrator>>,
    ) -> Rollout {
        let records = vec![None; steps.len()];
        Rollout {
            steps,
            start,
            console,
            demo,
            records,
            watchers: JoinSet::new(),
            watchers_stop: CancellationToken::new(),
            events: Vec::new(),
            events_dropped: 0,
            unhealthy_warmup: None,
        }
    }

    /// Marks the steps stopped by the end of the load (not by a signal) as failed, saying `why`.
    pub fn cut_short(&mut self, why: &str) {
        for record in self.records.iter_mut().flatten() {
            if record.status == StepStatus::Interrupted && !record.background {
                record.status = StepStatus::Failed;
                record.problem = Some(why.to_string());
            }
        }
    }

    /// Records that the warmup failed (`failed` of `total` requests) so no step will run.
    pub fn abandon_for_warmup(&mut self, failed: u64, total: u64) {
        self.unhealthy_warmup = Some((failed, total));
    }

    /// Runs the steps in order; the phase started at `steps_start`. Returns once the last
    /// foreground step ended, a step failed (the rest are skipped), or `stop` fired (the running
    /// step is killed). Watchers keep running until [`Rollout::stop_watchers`].
    pub async fn perform(
        &mut self,
        steps_start: Instant,
        stop: &CancellationToken,
        current: &Current,
    ) {
        for index in 0..self.steps.len() {
            let step = self.steps[index].clone();
            if let Some(at) = step.at {
                tokio::select! {
                    _ = tokio::time::sleep_until((steps_start + at).into()) => {}
                    _ = stop.cancelled() => return,
                }
            }
            if stop.is_cancelled() {
                return;
            }
            if step.background {
                let (start, console) = (self.start, self.console.clone());
                let (stop, demo) = (self.watchers_stop.clone(), self.demo.clone());
                self.console
                    .line(&format!("gapless: starting watcher {:?}", step.name));
                self.watchers.spawn(async move {
                    let mut log = EventLog::default();
                    let record =
                        execute(&step, start, &console, demo.as_deref(), &stop, &mut log).await;
                    (index, record, log.events, log.dropped)
                });
                continue;
            }
            self.console.line(&format!(
                "gapless: step {:?} starts: {}",
                step.name, step.command
            ));
            current.send_replace(Some(step.name.clone()));
            let mut log = EventLog::default();
            let record = execute(
                &step,
                self.start,
                &self.console,
                self.demo.as_deref(),
                stop,
                &mut log,
            )
            .await;
            self.events.extend(log.events);
            self.events_dropped += log.dropped;
            current.send_replace(None);
            let failed = record.status.is_failure();
            self.console.line(&format!(
                "gapless: step {:?} {}",
                step.name,
                record.problem.as_deref().unwrap_or("done")
            ));
            self.records[index] = Some(record);
            if failed {
                return;
            }
        }
    }

    /// Stops every watcher (killing its process group) and collects what they printed.
    pub async fn stop_watchers(&mut self) {
        self.watchers_stop.cancel();
        while let Some(joined) = self.watchers.join_next().await {
            if let Ok((index, record, events, dropped)) = joined {
                self.records[index] = Some(record);
                self.events.extend(events);
                self.events_dropped += dropped;
            }
        }
        self.events.sort_by_key(|e| e.at);
    }

    /// The report, with secrets redacted from commands, output and events (see
    /// [`crate::redact`]); steps that never ran are marked skipped.
    pub fn into_report(mut self, redactor: &Redactor) -> RolloutReport {
        let steps = self
            .steps
            .iter()
            .zip(self.records.drain(..))
            .map(|(step, record)| record.unwrap_or_else(|| StepRecord::skipped(step)))
            .map(|mut record| {
                record.command = redactor.text(&record.command);
                for line in &mut record.output_tail {
                    *line = redactor.text(line);
                }
                record
            })
            .collect();
        for event in &mut self.events {
            event.line = redactor.text(&event.line);
        }
        RolloutReport {
            steps,
            events: self.events,
            events_dropped: self.events_dropped,
            unhealthy_warmup: self.unhealthy_warmup,
        }
    }
}

/// A step's timeline events, bounded.
#[derive(Debug, Default)]
struct EventLog {
    events: Vec<Event>,
    dropped: u64,
}

impl EventLog {
    fn push(&mut self, event: Event) {
        if self.events.len() < MAX_EVENTS {
            self.events.push(event);
        } else {
            self.dropped += 1;
        }
    }
}

/// Why the wait for a command ended.
enum End {
    Exited(std::io::Result<ExitStatus>),
    TimedOut,
    Stopped,
}

/// Runs one step to its end. Lines a background step prints, and every demo orchestration
/// event, go to `log`.
async fn execute(
    step: &Step,
    start: Instant,
    console: &Console,
    demo: Option<&dyn Orchestrator>,
    stop: &CancellationToken,
    log: &mut EventLog,
) -> StepRecord {
    let mut record = StepRecord::skipped(step);
    let began = Instant::now();
    record.start = Some(began.saturating_duration_since(start));
    let deadline = began + step.timeout;
    let child = match &step.action {
        Action::Sleep(pause) => {
            let status = tokio::select! {
                _ = tokio::time::sleep(*pause) => StepStatus::Ok,
                _ = stop.cancelled() => StepStatus::Interrupted,
            };
            record.status = status;
            record.end = Some(start.elapsed());
            return record;
        }
        Action::Orchestrated(strategy) => {
            perform_demo(
                step,
                strategy,
                demo,
                start,
                console,
                stop,
                deadline,
                log,
                &mut record,
            )
            .await;
            return record;
        }
        Action::Shell(line) => spawn(Command::new("sh").arg("-c").arg(line)),
        Action::Exec(argv) => match argv.split_first() {
            Some((program, args)) => spawn(Command::new(program).args(args)),
            None => Err(std::io::Error::other("empty command")),
        },
    };
    let mut child = match child {
        Ok(child) => child,
        Err(err) => {
            record.status = StepStatus::Failed;
            record.problem = Some(format!("could not start: {err}"));
            record.end = Some(start.elapsed());
            return record;
        }
    };
    let group = child.id();
    // Registered until the group has been killed, at the end of this function.
    let _registered = Registered::new(group);
    let mut out = Lines::new(child.stdout.take());
    let mut err = Lines::new(child.stderr.take());
    let mut tail = VecDeque::with_capacity(TAIL_LINES);
    let mut emit = |line: String| {
        let at = start.elapsed();
        console.line(&format!("[{}] {line}", step.name));
        if step.background {
            log.push(Event {
                at,
                step: step.name.clone(),
                line: line.clone(),
            });
        }
        if tail.len() == TAIL_LINES {
            tail.pop_front();
        }
        tail.push_back((at, line));
    };
    let end = loop {
        tokio::select! {
            biased;
            _ = stop.cancelled() => break End::Stopped,
            _ = tokio::time::sleep_until(deadline.into()), if !step.background => break End::TimedOut,
            status = child.wait() => break End::Exited(status),
            line = out.next(), if !out.done => if let Some(line) = line { emit(line) },
            line = err.next(), if !err.done => if let Some(line) = line { emit(line) },
        }
    };
    // Whatever is left of the group goes: the command itself if it did not exit, and anything
    // it left behind if it did (after a grace that lets a daemon detach, reading output meanwhile).
    if matches!(end, End::Exited(_)) {
        read_output_for(LEFTOVER_GRACE, &mut out, &mut err, &mut emit).await;
    }
    kill_group(group);
    let status = match &end {
        End::Exited(status) => status.as_ref().ok().copied(),
        End::TimedOut | End::Stopped => child.wait().await.ok(),
    };
    read_output_for(DRAIN, &mut out, &mut err, &mut emit).await;
    record.end = Some(start.elapsed());
    (record.output_tail_at, record.output_tail) = tail.into_iter().unzip();
    record.exit_code = status.and_then(|s| s.code());
    record.signal = status.and_then(exit_signal);
    let (status, problem) = match end {
        End::Stopped if step.background => (StepStatus::Stopped, None),
        End::Stopped => (
            StepStatus::Interrupted,
            Some("was killed: the run was interrupted".to_string()),
        ),
        End::TimedOut => (
            StepStatus::TimedOut,
            Some(format!(
                "timed out after {} and was killed",
                humantime::format_duration(step.timeout)
            )),
        ),
        End::Exited(_) => match (record.exit_code, record.signal) {
            (Some(code), _) if code == step.expect_exit || step.background => {
                (StepStatus::Ok, None)
            }
            (Some(code), _) => (
                StepStatus::Failed,
                Some(format!("exited {code} (expected {})", step.expect_exit)),
            ),
            (None, Some(signal)) => (
                StepStatus::Failed,
                Some(format!("was killed by signal {signal}")),
            ),
            (None, None) => (
                StepStatus::Failed,
                Some("ended without an exit status".to_string()),
            ),
        },
    };
    record.status = status;
    record.problem = problem;
    record
}

/// Performs a demo strategy in-process; each orchestration event is printed, kept in the tail
/// and logged as a timeline event.
#[allow(clippy::too_many_arguments)]
async fn perform_demo(
    step: &Step,
    strategy: &strategy::Strategy,
    demo: Option<&dyn Orchestrator>,
    start: Instant,
    console: &Console,
    stop: &CancellationToken,
    deadline: Instant,
    log: &mut EventLog,
    record: &mut StepRecord,
) {
    let Some(cluster) = demo else {
        record.status = StepStatus::Failed;
        record.problem = Some("needs the demo cluster ([target] demo)".to_string());
        record.end = Some(start.elapsed());
        return;
    };
    let said = std::sync::Mutex::new(EventLog::default());
    let say = |line: String| {
        console.line(&format!("[{}] {line}", step.name));
        said.lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(Event {
                at: start.elapsed(),
                step: step.name.clone(),
                line,
            });
    };
    let result = tokio::select! {
        result = cluster.perform(strategy, &say) => Some(result),
        _ = tokio::time::sleep_until(deadline.into()) => None,
        _ = stop.cancelled() => Some(Err("was stopped: the run was interrupted".to_string())),
    };
    record.end = Some(start.elapsed());
    let said = said
        .into_inner()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let skip = said.events.len().saturating_sub(TAIL_LINES);
    (record.output_tail_at, record.output_tail) = said.events[skip..]
        .iter()
        .map(|e| (e.at, e.line.clone()))
        .unzip();
    log.dropped += said.dropped;
    for event in said.events {
        log.push(event);
    }
    (record.status, record.problem) = match result {
        Some(Ok(())) => (StepStatus::Ok, None),
        Some(Err(problem)) if stop.is_cancelled() => (StepStatus::Interrupted, Some(problem)),
        Some(Err(problem)) => (StepStatus::Failed, Some(problem)),
        None => (
            StepStatus::TimedOut,
            Some(format!(
                "timed out after {}",
                humantime::format_duration(step.timeout)
            )),
        ),
    };
}

/// Starts a command in its own process group with its output piped.
fn spawn(command: &mut Command) -> std::io::Result<Child> {
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    #[cfg(unix)]
    command.process_group(0);
    command.spawn()
}

/// SIGKILL to the whole process group led by `leader` (nothing if it is already gone).
fn kill_group(leader: Option<u32>) {
    #[cfg(unix)]
    if let Some(pid) = leader.and_then(|p| i32::try_from(p).ok()) {
        if let Some(pid) = rustix::process::Pid::from_raw(pid) {
            let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
        }
    }
    #[cfg(not(unix))]
    let _ = leader;
}

#[cfg(unix)]
fn exit_signal(status: ExitStatus) -> Option<i32> {
    std::os::unix::process::ExitStatusExt::signal(&status)
}

#[cfg(not(unix))]
fn exit_signal(_: ExitStatus) -> Option<i32> {
    None
}

/// Hands a step's output lines to `emit` until both pipes end or `limit` has passed.
async fn read_output_for<O, E>(
    limit: Duration,
    out: &mut Lines<O>,
    err: &mut Lines<E>,
    emit: &mut impl FnMut(String),
) where
    O: AsyncRead + Unpin,
    E: AsyncRead + Unpin,
{
    let timer = tokio::time::sleep(limit);
    tokio::pin!(timer);
    while !(out.done && err.done) {
        tokio::select! {
            _ = &mut timer => break,
            line = out.next(), if !out.done => if let Some(line) = line { emit(line) },
            line = err.next(), if !err.done => if let Some(line) = line { emit(line) },
        }
    }
}

/// Bounded lines from a pipe: a line longer than [`MAX_LINE`] is cut, never buffered whole.
struct Lines<R> {
    reader: Option<BufReader<R>>,
    line: Vec<u8>,
    done: bool,
}

impl<R: AsyncRead + Unpin> Lines<R> {
    fn new(reader: Option<R>) -> Lines<R> {
        Lines {
            done: reader.is_none(),
            reader: reader.map(BufReader::new),
            line: Vec::new(),
        }
    }

    /// The next line (without its newline), or `None` at the end. Cancel-safe: bytes are only
    /// consumed from the reader after they were copied into the line.
    async fn next(&mut self) -> Option<String> {
        let reader = self.reader.as_mut()?;
        loop {
            let buf = match reader.fill_buf().await {
                Ok(buf) => buf,
                Err(_) => &[][..],
            };
            if buf.is_empty() {
                self.done = true;
                self.reader = None;
                return (!self.line.is_empty()).then(|| self.take());
            }
            let (chunk, used, complete) = match buf.iter().position(|&b| b == b'\n') {
                Some(i) => (&buf[..i], i + 1, true),
                None => (buf, buf.len(), false),
            };
            let room = MAX_LINE.saturating_sub(self.line.len());
            self.line.extend_from_slice(&chunk[..chunk.len().min(room)]);
            reader.consume(used);
            if complete {
                return Some(self.take());
            }
        }
    }

    fn take(&mut self) -> String {
        let line = String::from_utf8_lossy(&self.line)
            .trim_end_matches('\r')
            .to_string();
        self.line.clear();
        line
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(name: &str, action: Action) -> Step {
        Step {
            name: name.to_string(),
            command: action.to_string(),
            action,
            at: None,
            timeout: Duration::from_secs(10),
            expect_exit: 0,
            background: false,
        }
    }

    fn shell(name: &str, line: &str) -> Step {
        step(name, Action::Shell(line.to_string()))
    }

    async fn perform(steps: Vec<Step>) -> RolloutReport {
        let start = Instant::now();
        let mut rollout = Rollout::new(steps, start, Arc::new(Console::silent()), None);
        let (current, _) = watch::channel(None);
        rollout
            .perform(start, &CancellationToken::new(), &current)
            .await;
        rollout.stop_watchers().await;
        rollout.into_report(&Redactor::new(&[], Vec::new()))
    }

    #[tokio::test]
    async fn steps_run_in_order_with_output_tails() {
        let report = perform(vec![
            shell("one", "echo out; echo err >&2"),
            step("pause", Action::Sleep(Duration::from_millis(20))),
            step(
                "two",
                Action::Exec(vec!["printf".into(), "a\\nb\\r\\nc".into()]),
            ),
        ])
        .await;
        let [one, pause, two] = &report.steps[..] else {
            panic!("{report:?}")
        };
        assert_eq!(one.status, StepStatus::Ok);
        assert_eq!(one.exit_code, Some(0));
        let mut tail = one.output_tail.clone();
        tail.sort();
        assert_eq!(tail, vec!["err", "out"]);
        assert_eq!(pause.status, StepStatus::Ok);
        assert!(pause.end.unwrap() - pause.start.unwrap() >= Duration::from_millis(20));
        assert!(pause.start.unwrap() >= one.end.unwrap());
        assert_eq!(two.output_tail, vec!["a", "b", "c"]);
        // Each tail line carries when it was read: within the step, in order.
        for s in [one, two] {
            assert_eq!(s.output_tail_at.len(), s.output_tail.len());
            assert!(s.output_tail_at.is_sorted());
            assert!(
                s.output_tail_at
                    .iter()
                    .all(|&t| s.start.unwrap() <= t && t <= s.end.unwrap())
            );
        }
        assert_eq!(two.command, r"printf 'a\nb\r\nc'");
        assert!(report.failed_step().is_none());
    }

    #[tokio::test]
    async fn a_failing_step_stops_the_rollout() {
        let report = perform(vec![
            shell("bad", "exit 7"),
            shell("never", "echo should not run"),
        ])
        .await;
        assert_eq!(report.steps[0].status, StepStatus::Failed);
        assert_eq!(report.steps[0].exit_code, Some(7));
        assert_eq!(
            report.steps[0].problem.as_deref(),
            Some("exited 7 (expected 0)")
        );
        assert_eq!(report.steps[1].status, StepStatus::Skipped);
        assert_eq!(report.failed_step().map(|s| s.name.as_str()), Some("bad"));
    }

    #[tokio::test]
    async fn expected_exit_status_is_configurable() {
        let mut s = shell("three", "exit 3");
        s.expect_exit = 3;
        assert_eq!(perform(vec![s]).await.steps[0].status, StepStatus::Ok);
    }

    #[tokio::test]
    async fn a_missing_program_fails_the_step() {
        let report = perform(vec![step(
            "nope",
            Action::Exec(vec!["/nonexistent/gapless-test".into()]),
        )])
        .await;
        assert_eq!(report.steps[0].status, StepStatus::Failed);
        assert!(
            report.steps[0]
                .problem
                .as_deref()
                .unwrap()
                .contains("could not start")
        );
    }

    #[tokio::test]
    async fn a_timed_out_step_is_killed_with_its_children() {
        let dir = std::env::temp_dir().join(format!("gapless-rollout-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let pidfile = dir.join("child.pid");
        let mut s = shell(
            "hang",
            &format!("sleep 30 & echo $! > {}; wait", pidfile.display()),
        );
        s.timeout = Duration::from_millis(300);
        let began = Instant::now();
        let report = perform(vec![s]).await;
        assert!(
            began.elapsed() < Duration::from_secs(5),
            "not killed in time"
        );
        assert_eq!(report.steps[0].status, StepStatus::TimedOut);
        assert_eq!(report.steps[0].signal, Some(9));
        let pid: i32 = std::fs::read_to_string(&pidfile)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert!(!running(pid), "the step's child {pid} survived");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn leftovers_of_a_finished_step_are_killed() {
        let report = perform(vec![shell("leaves", "sleep 30 & echo $!")]).await;
        assert_eq!(report.steps[0].status, StepStatus::Ok);
        let pid: i32 = report.steps[0].output_tail[0].parse().unwrap();
        assert!(!running(pid), "left-over {pid} survived");
    }

    #[tokio::test]
    async fn watchers_record_events_until_stopped() {
        let mut watcher = shell("watch", "echo first; sleep 0.05; echo second; sleep 30");
        watcher.background = true;
        let report = perform(vec![
            watcher,
            step("pause", Action::Sleep(Duration::from_millis(300))),
        ])
        .await;
        let w = &report.steps[0];
        assert_eq!(w.status, StepStatus::Stopped);
        let lines: Vec<&str> = report.events.iter().map(|e| e.line.as_str()).collect();
        assert_eq!(lines, vec!["first", "second"]);
        assert!(report.events[0].at < report.events[1].at);
        assert!(report.events.iter().all(|e| e.step == "watch"));
        assert_eq!(
            report.steps_during(Duration::ZERO, Duration::from_secs(9)),
            vec!["pause"]
        );
    }

    #[tokio::test]
    async fn long_lines_are_cut() {
        let report = perform(vec![shell(
            "long",
            "head -c 100000 /dev/zero | tr '\\0' x; echo; echo end",
        )])
        .await;
        let tail = &report.steps[0].output_tail;
        assert_eq!(tail[0].len(), MAX_LINE);
        assert_eq!(tail[1], "end");
    }

    /// True when `pid` is a live process (a zombie is not).
    fn running(pid: i32) -> bool {
        // Give the kernel a moment to deliver SIGKILL.
        for _ in 0..50 {
            match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
                Err(_) => return false,
                Ok(stat) => {
                    let state = stat.rsplit(')').next().unwrap_or("").trim_start();
                    if state.starts_with('Z') || state.starts_with('X') {
                        return false;
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        true
    }
}
