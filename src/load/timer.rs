//! A sub-millisecond async timer for pacing.
//!
//! tokio's timer wheel has millisecond resolution: sleeping until a request's due time through it
//! adds up to a millisecond of self-inflicted lateness. On Linux this timer is a `timerfd`
//! registered in the runtime's own epoll, so a wake-up costs no extra thread and no cross-thread
//! hand-off; elsewhere it falls back to tokio's timer. [`nap_until`] is the blocking kind, for
//! an engine thread that has nothing to do until its pacer's next tick.

use std::io;
use std::time::{Duration, Instant};

/// The farthest ahead gapless ever looks: about 100 years. Instants and deadlines beyond it are
/// clamped to it, so no option value (a timeout of `u64::MAX` seconds, a rate of `1e-20`) can
/// overflow the clock's arithmetic.
pub const HORIZON: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// `t + d`, clamped to [`HORIZON`] after `t`: never panics, never wraps.
pub fn later(t: Instant, d: Duration) -> Instant {
    t.checked_add(d.min(HORIZON))
        .or_else(|| t.checked_add(Duration::from_secs(365 * 24 * 3600)))
        .unwrap_or(t)
}

/// Sleeps until instants with microsecond precision.
#[derive(Debug)]
pub struct PreciseTimer {
    #[cfg(target_os = "linux")]
    fd: tokio::io::unix::AsyncFd<std::os::fd::OwnedFd>,
}

impl PreciseTimer {
    /// A timer on the current tokio runtime (which must have IO enabled).
    pub fn new() -> io::Result<PreciseTimer> {
        #[cfg(target_os = "linux")]
        {
            use rustix::time::{TimerfdClockId, TimerfdFlags, timerfd_create};
            let fd: std::os::fd::OwnedFd = timerfd_create(
                TimerfdClockId::Monotonic,
                TimerfdFlags::NONBLOCK | TimerfdFlags::CLOEXEC,
            )?;
            // SAFETY: `fd` is an `OwnedFd` moved into the `AsyncFd`: it stays open, and refers to
            // the same timer, for as long as it is registered, and nothing else closes it.
            let fd = unsafe {
                tokio::io::unix::AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE)
            }
            .map_err(io::Error::from)?;
            Ok(PreciseTimer { fd })
        }
        #[cfg(not(target_os = "linux"))]
        {
            Ok(PreciseTimer {})
        }
    }

    /// Returns at or soon after `deadline` (immediately if it has passed).
    pub async fn sleep_until(&mut self, deadline: Instant) -> io::Result<()> {
        let wait = deadline.saturating_duration_since(Instant::now());
        if wait.is_zero() {
            return Ok(());
        }
        #[cfg(target_os = "linux")]
        {
            use rustix::time::{Itimerspec, TimerfdTimerFlags, Timespec, timerfd_settime};
            let value = Timespec {
                tv_sec: wait.as_secs() as _,
                tv_nsec: wait.subsec_nanos() as _,
            };
            let spec = Itimerspec {
                it_interval: Timespec {
                    tv_sec: 0,
                    tv_nsec: 0,
                },
                it_value: value,
            };
            timerfd_settime(self.fd.get_ref(), TimerfdTimerFlags::empty(), &spec)?;
            loop {
                let mut guard = self.fd.readable().await?;
                let mut expirations = [0u8; 8];
                let read = rustix::io::read(self.fd.get_ref(), &mut expirations);
                // A timerfd is unreadable once read: clearing the cached readiness now saves the
                // next wait a read that would only return EAGAIN.
                guard.clear_ready();
                match read {
                    Ok(_) => return Ok(()),
                    Err(rustix::io::Errno::AGAIN) => continue,
                    Err(e) => return Err(e.into()),
                }
            }
        }
        #[cfg(not(target_os = "linux"))]
        {
            tokio::time::sleep_until(deadline.into()).await;
            Ok(())
        }
    }
}

/// Blocks the calling thread until `deadline`, as precisely as the system allows, however much
/// IO is waiting. Only for a thread that has nothing else to do until then (see
/// [`crate::load::engine`]); inside [`with_precise_naps`].
pub fn nap_until(deadline: Instant) {
    let wait = deadline.saturating_duration_since(Instant::now());
    if !wait.is_zero() {
        std::thread::sleep(wait);
    }
}

/// Runs `f` with this thread's sleeps ending on time, then puts things back. Linux lets a
/// sleeping thread's wake-up slip by its "timer slack", 50 µs by default, to batch wake-ups;
/// inside `f` it is 1 µs. Best effort: where it cannot be set, `f` runs all the same.
pub fn with_precise_naps<R>(f: impl FnOnce() -> R) -> R {
    #[cfg(target_os = "linux")]
    {
        use rustix::thread::{current_timer_slack, set_current_timer_slack};
        let before = current_timer_slack().ok();
        let _ = set_current_timer_slack(std::num::NonZeroU64::new(1_000));
        let result = f();
        if let Some(before) = before {
            let _ = set_current_timer_slack(std::num::NonZeroU64::new(before));
        }
        result
    }
    #[cfg(not(target_os = "linux"))]
    f()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[cfg(target_os = "linux")]
    #[test]
    fn precise_naps_last_as_long_as_the_closure() {
        let before = rustix::thread::current_timer_slack().unwrap();
        let inside = with_precise_naps(|| rustix::thread::current_timer_slack().unwrap());
        assert_eq!(inside, 1_000);
        assert_eq!(rustix::thread::current_timer_slack().unwrap(), before);
    }

    #[test]
    fn later_never_overflows() {
        let now = Instant::now();
        assert_eq!(
            later(now, Duration::from_secs(5)),
            now + Duration::from_secs(5)
        );
        assert_eq!(later(now, Duration::MAX), now + HORIZON);
        assert!(later(now, Duration::from_secs(u64::MAX)) > now);
    }

    #[tokio::test]
    async fn sleeps_at_least_until_the_deadline() {
        let mut timer = PreciseTimer::new().unwrap();
        for micros in [0u64, 150, 700, 2500] {
            let deadline = Instant::now() + Duration::from_micros(micros);
            timer.sleep_until(deadline).await.unwrap();
            assert!(Instant::now() >= deadline);
        }
    }
}
