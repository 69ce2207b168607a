//! Latency statistics shared by `sockit ping` and `sockit bench`: the
//! HdrHistogram both record round trips into ([`Latency`]), the one JSON
//! shape both report them in ([`LatencySummary`]), and how a time in
//! milliseconds is rounded for JSON ([`millis`]) and printed ([`format_ms`]).
//!
//! It sits on the lowest floor, beside `net` and `units`: the two clients
//! are programs of their own, and neither reaches into the other.

use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

/// The largest latency a histogram holds; longer ones are recorded as this.
/// An hour is far beyond any timeout either client uses.
const MAX_LATENCY: Duration = Duration::from_secs(3600);

/// Three significant digits: 0.1% error at any magnitude, which is below
/// the noise of a round trip on any machine.
const SIGNIFICANT_DIGITS: u8 = 3;

/// A latency histogram in nanoseconds.
///
/// It costs about 260 KB, so the load generator keeps one per worker
/// thread, shared by that thread's connections, not one per connection.
#[derive(Clone)]
pub(crate) struct Latency(Histogram<u64>);

impl Default for Latency {
    fn default() -> Self {
        Latency::new()
    }
}

impl Latency {
    /// An empty histogram.
    pub(crate) fn new() -> Latency {
        let max = MAX_LATENCY.as_nanos() as u64;
        Latency(
            Histogram::new_with_bounds(1, max, SIGNIFICANT_DIGITS)
                .expect("constant histogram bounds are valid"),
        )
    }

    /// Records one latency; anything over an hour counts as an hour.
    pub(crate) fn record(&mut self, latency: Duration) {
        self.record_n(latency, 1);
    }

    /// Records `count` equal latencies.
    pub(crate) fn record_n(&mut self, latency: Duration, count: u64) {
        let nanos = u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX);
        self.0.saturating_record_n(nanos.max(1), count);
    }

    /// Adds every value of `other`.
    pub(crate) fn merge(&mut self, other: &Latency) {
        // Both have the same bounds, so adding cannot fail.
        let _ = self.0.add(&other.0);
    }

    /// How many latencies were recorded.
    pub(crate) fn count(&self) -> u64 {
        self.0.len()
    }

    /// The latency at `percentile` (0-100).
    pub(crate) fn percentile(&self, percentile: f64) -> Duration {
        Duration::from_nanos(self.0.value_at_percentile(percentile))
    }

    /// The summary figures, all from the histogram, or `None` when nothing
    /// was recorded.
    pub(crate) fn summary(&self) -> Option<LatencySummary> {
        if self.count() == 0 {
            return None;
        }
        let h = &self.0;
        Some(LatencySummary {
            min: millis_f64(h.min()),
            avg: round_micros(h.mean() / 1e6),
            max: millis_f64(h.max()),
            mdev: round_micros(h.stdev() / 1e6),
            p50: millis(self.percentile(50.0)),
            p90: millis(self.percentile(90.0)),
            p99: millis(self.percentile(99.0)),
            p99_9: millis(self.percentile(99.9)),
            p99_99: millis(self.percentile(99.99)),
        })
    }
}

/// Latency figures in milliseconds, rounded to the microsecond: the
/// `rtt_ms` of `ping --json` and the `latency_ms` of `bench --json`.
///
/// The names are ping(8)'s: `avg` is the mean and `mdev` the standard
/// deviation.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct LatencySummary {
    pub(crate) min: f64,
    pub(crate) avg: f64,
    pub(crate) max: f64,
    pub(crate) mdev: f64,
    pub(crate) p50: f64,
    pub(crate) p90: f64,
    pub(crate) p99: f64,
    #[serde(rename = "p99.9")]
    pub(crate) p99_9: f64,
    #[serde(rename = "p99.99")]
    pub(crate) p99_99: f64,
}

/// A duration in milliseconds, rounded to the microsecond, for JSON.
pub(crate) fn millis(d: Duration) -> f64 {
    round_micros(d.as_secs_f64() * 1e3)
}

fn millis_f64(nanos: u64) -> f64 {
    round_micros(nanos as f64 / 1e6)
}

fn round_micros(ms: f64) -> f64 {
    (ms * 1e3).round() / 1e3
}

/// A duration in milliseconds the way ping(8) prints one: three decimals
/// below 1 ms, fewer as it grows, so every figure has about three digits.
pub(crate) fn format_ms(ms: f64) -> String {
    if ms >= 100.0 {
        format!("{ms:.0}")
    } else if ms >= 10.0 {
        format!("{ms:.1}")
    } else if ms >= 1.0 {
        format!("{ms:.2}")
    } else {
        format!("{ms:.3}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_come_from_the_histogram() {
        let mut l = Latency::new();
        for us in 1..=1000 {
            l.record(Duration::from_micros(us));
        }
        let s = l.summary().unwrap();
        assert_eq!(l.count(), 1000);
        assert_eq!(s.min, 0.001);
        assert!((s.p50 - 0.5).abs() < 0.001, "{}", s.p50);
        assert!((s.p99 - 0.99).abs() < 0.001, "{}", s.p99);
        assert!((s.max - 1.0).abs() < 0.001, "{}", s.max);
        let mut merged = Latency::new();
        merged.merge(&l);
        merged.merge(&l);
        assert_eq!(merged.count(), 2000);
        assert!(Latency::new().summary().is_none());
    }

    #[test]
    fn huge_latencies_saturate() {
        let mut l = Latency::new();
        l.record(Duration::from_secs(10 * 3600));
        l.record(Duration::ZERO);
        assert_eq!(l.count(), 2);
    }

    #[test]
    fn milliseconds_read_like_ping() {
        assert_eq!(format_ms(0.0834), "0.083");
        assert_eq!(format_ms(1.5), "1.50");
        assert_eq!(format_ms(12.345), "12.3");
        assert_eq!(format_ms(250.4), "250");
    }

    #[test]
    fn the_summary_has_one_json_shape() {
        let mut l = Latency::new();
        l.record(Duration::from_micros(80));
        let json = serde_json::to_value(l.summary().unwrap()).unwrap();
        let mut keys: Vec<&str> = json
            .as_object()
            .unwrap()
            .keys()
            .map(|k| k.as_str())
            .collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            [
                "avg", "max", "mdev", "min", "p50", "p90", "p99", "p99.9", "p99.99"
            ]
        );
        assert_eq!(json["p50"], 0.08);
    }
}
