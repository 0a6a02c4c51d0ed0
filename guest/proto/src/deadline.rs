//! Deadlines that cannot overflow.
//!
//! `Instant::now() + d` panics when `d` is too large (`Duration::MAX`, or a
//! user's `--exec-timeout 1000years`). Both ends of the protocol take
//! durations from users and from the wire, so every deadline in dangle is a
//! [`Deadline`]: a timeout too large to represent is simply no deadline.

use std::time::{Duration, Instant};

/// A point in time after which a wait gives up, or none at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadline(Option<Instant>);

impl Deadline {
    /// `timeout` from now; unbounded when that instant cannot be represented.
    pub fn after(timeout: Duration) -> Self {
        Self(Instant::now().checked_add(timeout))
    }

    /// A deadline that never passes.
    pub fn never() -> Self {
        Self(None)
    }

    /// `Some(timeout)` from now, or never for `None`.
    pub fn within(timeout: Option<Duration>) -> Self {
        timeout.map_or_else(Self::never, Self::after)
    }

    /// Whether the deadline has passed.
    pub fn expired(&self) -> bool {
        self.0.is_some_and(|at| Instant::now() >= at)
    }

    /// Time left, zero once passed; `None` when unbounded.
    pub fn remaining(&self) -> Option<Duration> {
        self.0
            .map(|at| at.saturating_duration_since(Instant::now()))
    }

    /// Time left, capped at `step`: how long one poll may sleep.
    pub fn step(&self, step: Duration) -> Duration {
        self.remaining().map_or(step, |r| r.min(step))
    }

    /// The instant, when bounded.
    pub fn instant(&self) -> Option<Instant> {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadline_after_duration_max_is_unbounded_not_a_panic() {
        let d = Deadline::after(Duration::MAX);
        assert_eq!(d, Deadline::never());
        assert!(!d.expired());
        assert_eq!(d.remaining(), None);
        assert_eq!(d.step(Duration::from_millis(20)), Duration::from_millis(20));
    }

    #[test]
    fn deadline_after_zero_is_expired() {
        let d = Deadline::after(Duration::ZERO);
        assert!(d.expired());
        assert_eq!(d.remaining(), Some(Duration::ZERO));
        assert_eq!(d.step(Duration::from_secs(1)), Duration::ZERO);
    }

    #[test]
    fn deadline_within_none_never_expires() {
        assert_eq!(Deadline::within(None), Deadline::never());
        let d = Deadline::within(Some(Duration::from_secs(3600)));
        assert!(!d.expired());
        assert!(d.remaining().is_some_and(|r| r > Duration::from_secs(3500)));
    }
}
