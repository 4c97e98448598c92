//! The series of a route in shadow mode, and the counts `/status` reads
//! from them (docs/invalidation.md, "Shadow mode").

use std::sync::atomic::{AtomicU32, Ordering};

use prometheus::IntCounter;

use super::Metrics;

/// What the cache would have done with a request on a shadow route.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ShadowResult {
    /// Served the stored response, the same as the app's.
    Match,
    /// Served the stored response, which differs from the app's.
    Mismatch,
    /// Gone to the app (nothing fresh stored).
    Miss,
    /// Served the stored response; the app's body was too large to compare.
    Uncompared,
}

const RESULTS: [&str; 4] = ["match", "mismatch", "miss", "uncompared"];

/// One route's shadow series, created together at zero.
pub(crate) struct ShadowSeries {
    results: [IntCounter; 4],
    /// Their values when this config's route was made: `/status` counts
    /// from the config load (the counters, being counters, never go back).
    base: [u64; 4],
    mismatches: IntCounter,
    /// Mismatches logged so far: only the first few are.
    logged: AtomicU32,
}

/// A shadow route's counts, for `/status`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ShadowCounts {
    /// Requests seen since the config was loaded.
    pub requests: u64,
    /// Of which the cache would have answered (matches, mismatches, uncompared).
    pub would_hit: u64,
    /// Would-be hits that differed from the app.
    pub mismatches: u64,
}

impl ShadowSeries {
    /// The series of `route`, at zero.
    pub(crate) fn new(m: &Metrics, route: &str) -> Self {
        let results = RESULTS.map(|r| m.shadow_requests_total.with_label_values(&[route, r]));
        Self {
            base: results.each_ref().map(IntCounter::get),
            results,
            mismatches: m.shadow_mismatches_total.with_label_values(&[route]),
            logged: AtomicU32::new(0),
        }
    }

    /// Counts one request.
    pub(crate) fn count(&self, result: ShadowResult) {
        self.results[result as usize].inc();
        if result == ShadowResult::Mismatch {
            self.mismatches.inc();
        }
    }

    /// Whether one more mismatch may be logged, at most `max` in all.
    pub(crate) fn log_one_more(&self, max: u32) -> bool {
        self.logged.fetch_add(1, Ordering::Relaxed) < max
    }

    /// The counts since the config was loaded.
    pub(crate) fn counts(&self) -> ShadowCounts {
        let mut now = self.results.each_ref().map(IntCounter::get);
        for (n, base) in now.iter_mut().zip(self.base) {
            *n = n.saturating_sub(base);
        }
        let [matched, mismatched, missed, uncompared] = now;
        ShadowCounts {
            requests: matched + mismatched + missed + uncompared,
            would_hit: matched + mismatched + uncompared,
            mismatches: mismatched,
        }
    }
}

#[cfg(test)]
mod tests {
    use prometheus::Registry;

    use super::*;

    #[test]
    fn status_counts_from_the_config_load_while_the_counters_go_on() {
        let m = Metrics::new(&Registry::new()).unwrap();
        let first = ShadowSeries::new(&m, "r");
        for result in [
            ShadowResult::Match,
            ShadowResult::Mismatch,
            ShadowResult::Miss,
        ] {
            first.count(result);
        }
        let counts = first.counts();
        assert_eq!(
            (counts.requests, counts.would_hit, counts.mismatches),
            (3, 2, 1)
        );
        let reloaded = ShadowSeries::new(&m, "r");
        reloaded.count(ShadowResult::Uncompared);
        let counts = reloaded.counts();
        assert_eq!(
            (counts.requests, counts.would_hit, counts.mismatches),
            (1, 1, 0)
        );
        let total = m
            .shadow_requests_total
            .with_label_values(&["r", "mismatch"])
            .get();
        assert_eq!(total, 1, "the counter itself never goes back");
        assert!(first.log_one_more(2) && first.log_one_more(2) && !first.log_one_more(2));
    }
}
