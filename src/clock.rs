//! The wall clock that freshness is judged by.
//!
//! Every freshness decision (is an entry fresh, how old is it, until when
//! is it kept) reads [`Clock::now`] instead of `SystemTime::now()`, so a
//! test can move time forward instead of sleeping until an entry expires
//! (as mini-redis does with `tokio::time::pause`; freshness is wall-clock
//! time, which tokio's paused clock does not move). In production the
//! clock is the system's; [`Clock::manual`] is the system's plus an offset
//! that only [`Clock::advance`] changes.
//!
//! A leaf: it imports nothing from the crate.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

/// A wall clock. Cheap to clone; clones of a manual clock move together.
#[derive(Clone, Debug, Default)]
pub struct Clock {
    /// Nanoseconds added to the system time; `None` for the system clock,
    /// which then costs one branch over `SystemTime::now()`.
    offset: Option<Arc<AtomicU64>>,
}

impl Clock {
    /// The system clock.
    pub fn system() -> Self {
        Self { offset: None }
    }

    /// A clock that reads the system time until [`Clock::advance`] moves it
    /// ahead: for tests that need an entry to age without waiting.
    pub fn manual() -> Self {
        Self {
            offset: Some(Arc::default()),
        }
    }

    /// The current time.
    pub fn now(&self) -> SystemTime {
        let now = SystemTime::now();
        match &self.offset {
            None => now,
            Some(offset) => now + Duration::from_nanos(offset.load(Ordering::Acquire)),
        }
    }

    /// Moves a manual clock (and every clone of it) `by` into the future.
    ///
    /// # Panics
    ///
    /// On the system clock, which cannot be moved: a test that meant to
    /// age an entry would otherwise pass without doing so.
    pub fn advance(&self, by: Duration) {
        let offset = self
            .offset
            .as_ref()
            .expect("only a manual clock can be advanced");
        let nanos = u64::try_from(by.as_nanos()).unwrap_or(u64::MAX);
        offset.fetch_add(nanos, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manual_clock_moves_only_when_advanced_and_clones_move_together() {
        let clock = Clock::manual();
        let twin = clock.clone();
        let before = SystemTime::now();
        clock.advance(Duration::from_secs(3600));
        let read = twin.now();
        assert!(read >= before + Duration::from_secs(3600));
        assert!(read < SystemTime::now() + Duration::from_secs(3601));
    }

    #[test]
    fn the_system_clock_is_the_systems() {
        let before = SystemTime::now();
        let read = Clock::system().now();
        assert!(read >= before && read <= SystemTime::now());
    }

    #[test]
    #[should_panic(expected = "only a manual clock")]
    fn the_system_clock_cannot_be_advanced() {
        Clock::system().advance(Duration::from_secs(1));
    }
}
