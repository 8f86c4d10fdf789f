//! Rollout strategies, and who performs them: a step may ask for a rolling update, a recreate, a
//! blue/green switch or new route weights instead of running a command; the run's
//! [`Orchestrator`] (the embedded demo cluster) performs it and says each event as it happens.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

/// A rollout strategy, the action of a scenario step (`demo = { action = "rolling", ... }`): the
/// vocabulary of Kubernetes rollouts (RollingUpdate with maxSurge / maxUnavailable, Recreate, a
/// blue/green switch, subset weights), performed by an [`Orchestrator`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Strategy {
    /// Replace the serving set's replicas a few at a time, like a Deployment's RollingUpdate.
    Rolling {
        /// The new version.
        version: String,
        /// Replicas above the desired count during the update.
        max_surge: usize,
        /// Replicas below the desired count (not ready) allowed during the update.
        max_unavailable: usize,
        /// Overrides the spec's readiness.
        readiness: Option<bool>,
        /// Overrides the spec's preStop sleep.
        prestop: Option<Duration>,
    },
    /// Remove every replica, then start the new ones (the Recreate strategy).
    Recreate {
        /// The new version.
        version: String,
    },
    /// Blue/green: start a full new set, wait until it is ready and listed, flip the route at
    /// once, then retire the old set.
    Switch {
        /// The new version.
        version: String,
    },
    /// Start a new set (route weight 0) and publish its endpoints (a new subset).
    Deploy {
        /// The new version.
        version: String,
    },
    /// Set the route weights of the sets, in the order they were created (canary). With a
    /// version that has no set yet, that set is deployed first and its endpoints propagated.
    Weights {
        /// A version to deploy first if absent.
        version: Option<String>,
        /// One weight per set.
        weights: Vec<u32>,
    },
    /// Replace every replica with a fresh one of the same version (a rolling restart).
    Restart,
}

impl fmt::Display for Strategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Strategy::Rolling {
                version,
                max_surge,
                max_unavailable,
                ..
            } => write!(
                f,
                "demo rolling update to {version} (max_surge {max_surge}, max_unavailable {max_unavailable})"
            ),
            Strategy::Recreate { version } => write!(f, "demo recreate with {version}"),
            Strategy::Switch { version } => write!(f, "demo blue/green switch to {version}"),
            Strategy::Deploy { version } => write!(f, "demo deploy {version}"),
            Strategy::Weights { weights, .. } => write!(f, "demo route weights {weights:?}"),
            Strategy::Restart => f.write_str("demo rolling restart"),
        }
    }
}

/// Receives an orchestrator's events (`v2-4 ready`, `v1-0 killed`...), one line each, as they
/// happen.
pub type Say<'a> = &'a (dyn Fn(String) + Send + Sync);

/// Performs rollout strategies: the embedded demo cluster is one.
pub trait Orchestrator: fmt::Debug + Send + Sync {
    /// Performs `strategy`, saying each event; returns once the new replicas are in place (like
    /// `kubectl rollout status`), or why it could not.
    fn perform<'a>(
        &'a self,
        strategy: &'a Strategy,
        say: Say<'a>,
    ) -> Pin<Box<dyn Future<Output = Result<(), String>> + Send + 'a>>;
}
