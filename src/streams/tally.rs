//! What one probe measured, in bounded memory: counters by class, a histogram of reconnect
//! latencies, the time without a connected (and, for a health watch, serving) stream, and the
//! disconnect and not-serving events (at most [`MAX_EVENTS`] a probe; the rest counted).

use std::collections::BTreeMap;
use std::time::Duration;

use hdrhistogram::Histogram;

use super::Class;

/// Disconnect events kept per probe, as the rollout keeps per watcher.
pub const MAX_EVENTS: usize = crate::rollout::MAX_EVENTS;

/// One disconnect (or, of class `not_serving`, a health watch's answer other than SERVING),
/// on the run's clock.
#[derive(Clone, Debug, PartialEq)]
pub struct Disconnect {
    /// When it was noticed, from the start of the run.
    pub at: Duration,
    /// Which of the probe's connections, from 0.
    pub connection: usize,
    /// How it ended.
    pub class: Class,
    /// The close frame's code, the HTTP status a handshake was answered with, the
    /// `grpc-status`, or the health answer's serving status.
    pub code: Option<u16>,
    /// What happened, in a few words (the close reason, the error).
    pub detail: String,
}

/// A probe's counters, histogram and events.
#[derive(Clone, Debug)]
pub struct Tally {
    /// Connections established (handshake complete), the first ones included.
    pub connects: u64,
    /// Disconnects by class (see [`super::Class`] for what each is).
    pub disconnects: BTreeMap<Class, u64>,
    /// Times a health watch's answer turned from SERVING (or the start) to another status on a
    /// connected stream: not disconnects, but time without a serving stream.
    pub not_serving: u64,
    /// Connect attempts that failed, by class (every attempt; an outage counts one disconnect).
    pub connect_failures: BTreeMap<Class, u64>,
    /// From each lost stream (or failed first connect) to the next connected one, microseconds.
    pub reconnect_us: Histogram<u64>,
    /// Time without a connected (for a health watch: serving) stream, summed over the
    /// connections.
    pub gap_total: Duration,
    /// The longest time one connection went without a connected (serving) stream.
    pub gap_longest: Duration,
    /// Disconnects and not-serving answers in time order per connection (at most
    /// [`MAX_EVENTS`]).
    pub events: Vec<Disconnect>,
    /// Disconnects beyond [`MAX_EVENTS`], counted only.
    pub events_dropped: u64,
}

impl Default for Tally {
    fn default() -> Self {
        Tally {
            connects: 0,
            disconnects: BTreeMap::new(),
            not_serving: 0,
            connect_failures: BTreeMap::new(),
            // Up to a day, 3 significant digits: valid bounds.
            reconnect_us: Histogram::new_with_bounds(1, 86_400_000_000, 3)
                .unwrap_or_else(|_| unreachable!("1 µs to a day at 3 digits is valid")),
            gap_total: Duration::ZERO,
            gap_longest: Duration::ZERO,
            events: Vec::new(),
            events_dropped: 0,
        }
    }
}

impl Tally {
    /// A connection was established.
    pub fn connected(&mut self) {
        self.connects += 1;
    }

    /// A disconnect (a lost stream, or the first failed connect of an outage).
    pub fn disconnected(&mut self, event: Disconnect) {
        *self.disconnects.entry(event.class).or_default() += 1;
        self.keep(event);
    }

    /// A health watch answered other than SERVING on a connected stream (class `not_serving`):
    /// an event, not a disconnect.
    pub fn not_serving(&mut self, event: Disconnect) {
        self.not_serving += 1;
        self.keep(event);
    }

    /// Keeps `event`, or counts it beyond [`MAX_EVENTS`].
    fn keep(&mut self, event: Disconnect) {
        if self.events.len() < MAX_EVENTS {
            self.events.push(event);
        } else {
            self.events_dropped += 1;
        }
    }

    /// A connect attempt failed with `class`.
    pub fn connect_failed(&mut self, class: Class) {
        *self.connect_failures.entry(class).or_default() += 1;
    }

    /// One connection went `gap` without a connected (serving) stream: until it had one
    /// again, or until the run ended.
    pub fn outage(&mut self, gap: Duration) {
        self.gap_total += gap;
        self.gap_longest = self.gap_longest.max(gap);
    }

    /// A lost stream was reconnected `latency` after it was lost.
    pub fn reconnected(&mut self, latency: Duration) {
        let us = u64::try_from(latency.as_micros())
            .unwrap_or(u64::MAX)
            .max(1);
        // Saturates at the histogram's top rather than failing.
        self.reconnect_us.saturating_record(us);
    }

    /// Graceful and ungraceful disconnects.
    pub fn split(&self) -> (u64, u64) {
        self.disconnects.iter().fold((0, 0), |(g, u), (class, &n)| {
            if class.is_graceful() {
                (g + n, u)
            } else {
                (g, u + n)
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_gaps_and_caps_events() {
        let mut t = Tally::default();
        t.connected();
        for i in 0..MAX_EVENTS + 3 {
            t.disconnected(Disconnect {
                at: Duration::from_millis(i as u64),
                connection: 0,
                class: if i % 2 == 0 {
                    Class::CloseFrame
                } else {
                    Class::Reset
                },
                code: None,
                detail: String::new(),
            });
        }
        assert_eq!(t.events.len(), MAX_EVENTS);
        assert_eq!(t.events_dropped, 3);
        let (graceful, ungraceful) = t.split();
        assert_eq!((graceful, ungraceful), (5002, 5001));
        for (gap, reconnect) in [(20, Some(20)), (50, None), (10, Some(10))] {
            t.outage(Duration::from_millis(gap));
            if let Some(ms) = reconnect {
                t.reconnected(Duration::from_millis(ms));
            }
        }
        assert_eq!(t.gap_total, Duration::from_millis(80));
        assert_eq!(t.gap_longest, Duration::from_millis(50));
        assert_eq!(
            t.reconnect_us.len(),
            2,
            "an outage the run ended is no reconnect"
        );
        let max = t.reconnect_us.max();
        assert!((20_000..20_100).contains(&max), "{max}");
        let not_serving = Disconnect {
            at: Duration::from_millis(5),
            connection: 0,
            class: Class::NotServing,
            code: Some(2),
            detail: String::new(),
        };
        t.not_serving(not_serving);
        assert_eq!(t.not_serving, 1);
        assert_eq!(t.split(), (5002, 5001), "not a disconnect");
        assert_eq!(t.events_dropped, 4, "but an event, over the cap");
    }
}
