//! Latency samples and the figures drawn from them: nearest-rank
//! percentiles over every sample (no histogram buckets, so p99 is a real
//! observed latency, not a bucket edge).

use std::time::Duration;

/// Latencies in nanoseconds, in the order they were taken.
#[derive(Debug, Default, Clone)]
pub struct Samples(Vec<u64>);

/// The figures a report line carries, in microseconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Summary {
    pub count: usize,
    pub p50_us: f64,
    pub p99_us: f64,
    pub max_us: f64,
    pub mean_us: f64,
}

impl Samples {
    pub fn with_capacity(n: usize) -> Samples {
        Samples(Vec::with_capacity(n))
    }

    pub fn push(&mut self, took: Duration) {
        self.0
            .push(u64::try_from(took.as_nanos()).unwrap_or(u64::MAX));
    }

    /// Takes another thread's samples in.
    pub fn extend(&mut self, other: Samples) {
        self.0.extend(other.0);
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The figures, or `None` when nothing was measured.
    pub fn summary(mut self) -> Option<Summary> {
        if self.0.is_empty() {
            return None;
        }
        self.0.sort_unstable();
        let sum: u128 = self.0.iter().map(|&ns| u128::from(ns)).sum();
        let mean = sum as f64 / self.0.len() as f64;
        Some(Summary {
            count: self.0.len(),
            p50_us: us(percentile(&self.0, 50.0)),
            p99_us: us(percentile(&self.0, 99.0)),
            max_us: us(*self.0.last().unwrap_or(&0)),
            mean_us: round_us(mean / 1e3),
        })
    }
}

/// The nearest-rank percentile of sorted values: the smallest value such
/// that at least `p` percent of the values are at or below it. `p` is
/// clamped to 0..=100; an empty slice gives 0.
pub fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let p = if p.is_nan() { 0.0 } else { p.clamp(0.0, 100.0) };
    let rank = (p / 100.0 * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Nanoseconds as microseconds, to 0.1 µs.
fn us(ns: u64) -> f64 {
    round_us(ns as f64 / 1e3)
}

fn round_us(us: f64) -> f64 {
    (us * 10.0).round() / 10.0
}

/// `a / b` to three decimals, or `None` when `b` is zero.
pub fn ratio(a: f64, b: f64) -> Option<f64> {
    (b > 0.0).then(|| (a / b * 1000.0).round() / 1000.0)
}

/// Events per second, to a whole number.
pub fn per_second(events: u64, over: Duration) -> f64 {
    let secs = over.as_secs_f64();
    if secs <= 0.0 {
        return 0.0;
    }
    (events as f64 / secs).round()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&v, 50.0), 50);
        assert_eq!(percentile(&v, 99.0), 99);
        assert_eq!(percentile(&v, 100.0), 100);
        assert_eq!(percentile(&v, 0.0), 1);
        assert_eq!(percentile(&v, 0.5), 1);
        assert_eq!(percentile(&v, 99.5), 100);
        // Out-of-range and NaN requests are clamped, never a panic.
        assert_eq!(percentile(&v, 250.0), 100);
        assert_eq!(percentile(&v, -3.0), 1);
        assert_eq!(percentile(&v, f64::NAN), 1);
    }

    #[test]
    fn percentiles_of_small_sets() {
        assert_eq!(percentile(&[], 50.0), 0);
        assert_eq!(percentile(&[7], 50.0), 7);
        assert_eq!(percentile(&[7], 99.0), 7);
        assert_eq!(percentile(&[1, 2], 50.0), 1);
        assert_eq!(percentile(&[1, 2], 51.0), 2);
        // p99 of ten values is the largest: 99 % of 10 rounds up to rank 10.
        let ten: Vec<u64> = (1..=10).collect();
        assert_eq!(percentile(&ten, 99.0), 10);
        assert_eq!(percentile(&ten, 90.0), 9);
    }

    #[test]
    fn summary_sorts_and_converts_to_microseconds() {
        let mut s = Samples::default();
        assert!(s.clone().summary().is_none());
        for us in [300, 100, 200, 5000] {
            s.push(Duration::from_micros(us));
        }
        s.push(Duration::from_nanos(1_450));
        let sum = s.summary().unwrap();
        assert_eq!(sum.count, 5);
        assert_eq!(sum.p50_us, 200.0);
        assert_eq!(sum.p99_us, 5000.0);
        assert_eq!(sum.max_us, 5000.0);
        assert_eq!(sum.mean_us, 1120.3);
    }

    #[test]
    fn merged_samples_count_once_each() {
        let mut a = Samples::with_capacity(2);
        a.push(Duration::from_micros(1));
        let mut b = Samples::default();
        b.push(Duration::from_micros(3));
        b.push(Duration::from_micros(2));
        a.extend(b);
        assert_eq!(a.len(), 3);
        assert_eq!(a.summary().unwrap().p50_us, 2.0);
    }

    #[test]
    fn ratios_and_rates() {
        assert_eq!(ratio(3.0, 2.0), Some(1.5));
        assert_eq!(ratio(1.0, 3.0), Some(0.333));
        assert_eq!(ratio(1.0, 0.0), None);
        assert_eq!(per_second(500, Duration::from_millis(250)), 2000.0);
        assert_eq!(per_second(5, Duration::ZERO), 0.0);
    }
}
