//! One run, start to finish: the engine and the recorder on one clock, then the verdict.

use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use tokio_util::sync::CancellationToken;

use crate::config::RunConfig;
use crate::engine::{self, Engine, LoadStats};
use crate::recorder::Recorder;
use crate::verdict::{Interruption, Verdict};

/// Errors that stop a run before it can produce a result.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The load engine failed.
    #[error(transparent)]
    Engine(#[from] engine::Error),
}

/// Everything a finished (or interrupted) run measured.
#[derive(Clone, Debug)]
pub struct Finished {
    /// The configuration it ran with.
    pub config: RunConfig,
    /// Wall-clock start.
    pub started_at: SystemTime,
    /// From the start until the last attempt ended.
    pub elapsed: Duration,
    /// Histograms, counters and the timeline.
    pub recorder: Recorder,
    /// Connection and interruption totals.
    pub stats: LoadStats,
    /// Set when a signal cut the run short.
    pub interruption: Option<Interruption>,
    /// The judgement.
    pub verdict: Verdict,
}

impl Finished {
    /// Achieved request rate: attempts recorded per second of elapsed time.
    pub fn actual_qps(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            self.recorder.total() as f64 / secs
        } else {
            0.0
        }
    }
}

/// Runs the load described by `config` for its duration. If `interrupt` resolves first, the load
/// stops at once and the partial result is returned, marked with the interruption.
pub async fn run(
    config: &RunConfig,
    interrupt: impl Future<Output = Interruption>,
) -> Result<Finished, Error> {
    let started_at = SystemTime::now();
    let start = Instant::now();
    let recorder = Arc::new(Mutex::new(Recorder::new(
        start,
        config.load.slot,
        config.target.ok_codes.clone(),
    )));
    let engine = Engine::new(config, start, recorder.clone())?;
    engine.control().end_at(config.load.duration);
    let token = CancellationToken::new();
    let load = engine.run(token.clone());
    tokio::pin!(load);
    let mut interruption = None;
    let stats = tokio::select! {
        stats = &mut load => stats?,
        cause = interrupt => {
            interruption = Some(cause);
            token.cancel();
            load.await?
        }
    };
    let elapsed = start.elapsed();
    let mut recorder = Arc::try_unwrap(recorder)
        .map(|m| m.into_inner().unwrap_or_else(PoisonError::into_inner))
        .unwrap_or_else(|shared| {
            shared
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone()
        });
    recorder.finish(if interruption.is_some() {
        elapsed
    } else {
        config.load.duration
    });
    let verdict = Verdict::judge(&recorder, &stats, interruption);
    Ok(Finished {
        config: config.clone(),
        started_at,
        elapsed,
        recorder,
        stats,
        interruption,
        verdict,
    })
}
