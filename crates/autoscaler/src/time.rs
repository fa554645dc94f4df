//! The autoscaler's clock: plain values the caller passes in, never read from the system.

use std::ops::Add;
use std::time::Duration;

/// A point in time, as the time elapsed since an epoch the caller chooses.
///
/// The daemon can use the Unix epoch (so timestamps map onto `metav1.Time`) or the moment it
/// started; tests use small numbers of seconds. All that matters is that every value passed to
/// [`decide`](crate::decide) for one ScaledObject comes from the same clock.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(Duration);

impl Timestamp {
    /// The epoch itself.
    pub const ZERO: Timestamp = Timestamp(Duration::ZERO);

    /// `secs` seconds after the epoch.
    pub const fn from_secs(secs: u64) -> Self {
        Timestamp(Duration::from_secs(secs))
    }

    /// `millis` milliseconds after the epoch.
    pub const fn from_millis(millis: u64) -> Self {
        Timestamp(Duration::from_millis(millis))
    }

    /// `since_epoch` after the epoch.
    pub const fn from_duration(since_epoch: Duration) -> Self {
        Timestamp(since_epoch)
    }

    /// The time elapsed since the epoch.
    pub const fn as_duration(self) -> Duration {
        self.0
    }

    /// How long after `earlier` this is; zero when `earlier` is later.
    pub fn saturating_since(self, earlier: Timestamp) -> Duration {
        self.0.saturating_sub(earlier.0)
    }

    /// Whether `self` lies strictly inside the window of length `window` that ends at `now`,
    /// i.e. `self > now - window` (Go's `timestamp.After(now.Add(-window))`). A window of zero
    /// contains nothing that is not in the future.
    pub(crate) fn within(self, now: Timestamp, window: Duration) -> bool {
        if self > now {
            return !window.is_zero();
        }
        now.saturating_since(self) < window
    }
}

impl Add<Duration> for Timestamp {
    type Output = Timestamp;

    fn add(self, rhs: Duration) -> Timestamp {
        Timestamp(self.0.saturating_add(rhs))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_excludes_its_left_edge_like_go_after() {
        let now = Timestamp::from_secs(100);
        let w = Duration::from_secs(15);
        assert!(Timestamp::from_secs(86).within(now, w));
        assert!(!Timestamp::from_secs(85).within(now, w));
        assert!(Timestamp::from_secs(100).within(now, w));
        assert!(!Timestamp::from_secs(100).within(now, Duration::ZERO));
    }

    #[test]
    fn windows_longer_than_the_clock_contain_everything_since_the_epoch() {
        let now = Timestamp::from_secs(10);
        assert!(Timestamp::ZERO.within(now, Duration::from_secs(300)));
    }
}
