//! An injectable clock, so that a 2-hour TCP timeout runs in a test in milliseconds.
//!
//! [`Instant`] is a plain count of nanoseconds since an arbitrary origin: `Copy`, 8 bytes, and
//! every arithmetic operator saturates instead of panicking.

use std::ops::{Add, AddAssign, Sub};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// A point in time: nanoseconds since an arbitrary origin.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug, Default, Hash)]
pub struct Instant(u64);

/// Nanoseconds of a duration, saturated to `u64` (about 584 years).
fn duration_nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

impl Instant {
    /// The origin.
    pub const ZERO: Instant = Instant(0);
    /// The latest representable instant ("never").
    pub const MAX: Instant = Instant(u64::MAX);

    /// An instant `nanos` nanoseconds after the origin.
    pub const fn from_nanos(nanos: u64) -> Self {
        Instant(nanos)
    }

    /// Nanoseconds since the origin.
    pub const fn as_nanos(self) -> u64 {
        self.0
    }

    /// `self + d`, `None` on overflow.
    pub fn checked_add(self, d: Duration) -> Option<Instant> {
        u64::try_from(d.as_nanos()).ok().and_then(|n| self.0.checked_add(n)).map(Instant)
    }

    /// `self - d`, `None` before the origin.
    pub fn checked_sub(self, d: Duration) -> Option<Instant> {
        u64::try_from(d.as_nanos()).ok().and_then(|n| self.0.checked_sub(n)).map(Instant)
    }

    /// `self - earlier`, `None` if `earlier` is later than `self`.
    pub fn checked_duration_since(self, earlier: Instant) -> Option<Duration> {
        self.0.checked_sub(earlier.0).map(Duration::from_nanos)
    }

    /// `self - earlier`, zero if `earlier` is later than `self`.
    pub fn saturating_duration_since(self, earlier: Instant) -> Duration {
        Duration::from_nanos(self.0.saturating_sub(earlier.0))
    }
}

impl Add<Duration> for Instant {
    type Output = Instant;
    /// Saturates at [`Instant::MAX`].
    fn add(self, d: Duration) -> Instant {
        Instant(self.0.saturating_add(duration_nanos(d)))
    }
}

impl AddAssign<Duration> for Instant {
    fn add_assign(&mut self, d: Duration) {
        *self = *self + d;
    }
}

impl Sub<Duration> for Instant {
    type Output = Instant;
    /// Saturates at [`Instant::ZERO`].
    fn sub(self, d: Duration) -> Instant {
        Instant(self.0.saturating_sub(duration_nanos(d)))
    }
}

impl Sub<Instant> for Instant {
    type Output = Duration;
    /// Saturates at zero.
    fn sub(self, earlier: Instant) -> Duration {
        self.saturating_duration_since(earlier)
    }
}

/// A source of the current time.
pub trait Clock: Send {
    /// The current time.
    fn now(&self) -> Instant;
}

/// The monotonic system clock, counted from when it was created.
#[derive(Clone, Copy, Debug)]
pub struct SystemClock {
    origin: std::time::Instant,
}

impl SystemClock {
    /// A clock whose origin is now.
    pub fn new() -> Self {
        SystemClock { origin: std::time::Instant::now() }
    }

    /// A clock counted from `origin` (share one origin between workers to compare their instants).
    pub fn with_origin(origin: std::time::Instant) -> Self {
        SystemClock { origin }
    }
}

impl Default for SystemClock {
    fn default() -> Self {
        SystemClock::new()
    }
}

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant(duration_nanos(self.origin.elapsed()))
    }
}

/// A clock that moves only when told to; clones share the same time.
#[derive(Clone, Debug)]
pub struct ManualClock(Arc<AtomicU64>);

impl ManualClock {
    /// A clock stopped at `start`.
    pub fn new(start: Instant) -> Self {
        ManualClock(Arc::new(AtomicU64::new(start.0)))
    }

    /// Jump to `t` (may go backwards).
    pub fn set(&self, t: Instant) {
        self.0.store(t.0, Ordering::SeqCst);
    }

    /// Move forward by `d`, saturating at [`Instant::MAX`].
    pub fn advance(&self, d: Duration) {
        let n = duration_nanos(d);
        // The closure always returns Some, so fetch_update cannot fail.
        let _ = self.0.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |t| Some(t.saturating_add(n)));
    }
}

impl Default for ManualClock {
    fn default() -> Self {
        ManualClock::new(Instant::ZERO)
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Instant {
        Instant(self.0.load(Ordering::SeqCst))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arithmetic_saturates() {
        let t = Instant::from_nanos(10);
        assert_eq!((t + Duration::from_nanos(5)).as_nanos(), 15);
        assert_eq!(t - Duration::from_nanos(20), Instant::ZERO);
        assert_eq!(Instant::MAX + Duration::from_secs(1), Instant::MAX);
        assert_eq!(t + Duration::MAX, Instant::MAX);
        assert_eq!(Instant::from_nanos(3) - t, Duration::ZERO);
        assert_eq!(t - Instant::from_nanos(3), Duration::from_nanos(7));
        let mut u = t;
        u += Duration::from_nanos(1);
        assert_eq!(u.as_nanos(), 11);
    }

    #[test]
    fn checked_ops() {
        let t = Instant::from_nanos(10);
        assert_eq!(t.checked_add(Duration::from_nanos(1)), Some(Instant::from_nanos(11)));
        assert_eq!(Instant::MAX.checked_add(Duration::from_nanos(1)), None);
        assert_eq!(t.checked_add(Duration::MAX), None);
        assert_eq!(t.checked_sub(Duration::from_nanos(11)), None);
        assert_eq!(t.checked_sub(Duration::from_nanos(10)), Some(Instant::ZERO));
        assert_eq!(t.checked_duration_since(Instant::from_nanos(11)), None);
        assert_eq!(t.checked_duration_since(Instant::from_nanos(4)), Some(Duration::from_nanos(6)));
    }

    #[test]
    fn manual_clock_clones_share_time() {
        let clock = ManualClock::new(Instant::from_nanos(5));
        let other = clock.clone();
        clock.advance(Duration::from_secs(7440));
        assert_eq!(other.now(), Instant::from_nanos(5) + Duration::from_secs(7440));
        other.set(Instant::from_nanos(1));
        assert_eq!(clock.now(), Instant::from_nanos(1));
        clock.set(Instant::MAX);
        clock.advance(Duration::from_secs(1));
        assert_eq!(clock.now(), Instant::MAX);
    }

    #[test]
    fn system_clock_is_monotonic() {
        let clock = SystemClock::new();
        let a = clock.now();
        std::thread::sleep(Duration::from_millis(2));
        let b = clock.now();
        assert!(b > a);
        assert!(b - a >= Duration::from_millis(2));
    }

    #[test]
    fn clock_is_object_safe() {
        let clocks: Vec<Box<dyn Clock>> =
            vec![Box::new(SystemClock::default()), Box::new(ManualClock::new(Instant::from_nanos(42)))];
        assert_eq!(clocks[1].now(), Instant::from_nanos(42));
    }
}
