//! Latency statistics: nearest-rank percentiles over recorded samples.
//!
//! Nearest rank (the smallest sample with at least p% of all samples at or below it) always
//! reports a latency that was really observed, which is what a benchmark table should show.

use std::time::Duration;

use serde::Serialize;

/// The `p`-th percentile (0–100) of `sorted`, by nearest rank; `None` for no samples.
/// `sorted` must be in ascending order.
pub fn percentile(sorted: &[Duration], p: f64) -> Option<Duration> {
    if sorted.is_empty() {
        return None;
    }
    let p = p.clamp(0.0, 100.0);
    let rank = (p / 100.0 * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// Milliseconds as a float rounded to microseconds, the unit of every number in the report.
pub fn millis(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

/// What the report says about a set of latency samples, in milliseconds.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct LatencySummary {
    pub count: usize,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub mean_ms: f64,
}

impl LatencySummary {
    /// Summarizes `samples` (sorted in place). No samples give all zeros and `count: 0`.
    pub fn from_samples(samples: &mut [Duration]) -> Self {
        samples.sort_unstable();
        let at = |p: f64| percentile(samples, p).map(millis).unwrap_or(0.0);
        let total: Duration = samples.iter().sum();
        let mean = if samples.is_empty() {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(total.as_secs_f64() / samples.len() as f64)
        };
        LatencySummary {
            count: samples.len(),
            p50_ms: at(50.0),
            p90_ms: at(90.0),
            p99_ms: at(99.0),
            max_ms: at(100.0),
            mean_ms: millis(mean),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn nearest_rank_on_one_to_hundred() {
        let samples: Vec<Duration> = (1..=100).map(ms).collect();
        assert_eq!(percentile(&samples, 50.0), Some(ms(50)));
        assert_eq!(percentile(&samples, 99.0), Some(ms(99)));
        assert_eq!(percentile(&samples, 99.5), Some(ms(100)));
        assert_eq!(percentile(&samples, 100.0), Some(ms(100)));
        assert_eq!(percentile(&samples, 0.0), Some(ms(1)));
    }

    #[test]
    fn small_and_empty_sets() {
        assert_eq!(percentile(&[], 50.0), None);
        assert_eq!(percentile(&[ms(7)], 99.0), Some(ms(7)));
        // Of five samples the median is the third, and p99 is the largest.
        let five = [ms(1), ms(2), ms(3), ms(4), ms(50)];
        assert_eq!(percentile(&five, 50.0), Some(ms(3)));
        assert_eq!(percentile(&five, 99.0), Some(ms(50)));
    }

    #[test]
    fn summary_sorts_and_averages() {
        let mut samples = vec![ms(4), ms(1), ms(3), ms(2)];
        let s = LatencySummary::from_samples(&mut samples);
        assert_eq!(s.count, 4);
        assert_eq!(s.p50_ms, 2.0);
        assert_eq!(s.p99_ms, 4.0);
        assert_eq!(s.max_ms, 4.0);
        assert_eq!(s.mean_ms, 2.5);
        assert_eq!(LatencySummary::from_samples(&mut []), LatencySummary::default());
    }

    #[test]
    fn millis_keeps_microseconds() {
        assert_eq!(millis(Duration::from_micros(1234)), 1.234);
        assert_eq!(millis(Duration::from_nanos(1_234_567)), 1.235);
    }
}
