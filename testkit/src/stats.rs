//! Latency figures for the benchmarks: nearest-rank percentiles of a run's samples, printed
//! for a person and as `FIGURE` lines for `ops/bench/run`.
//!
//! Why this exists: every benchmark reports latencies the same way, so their figures can be
//! compared in `ops/bench/RESULTS.md`; one definition of a percentile serves them all.

use std::time::Duration;

/// Nearest-rank percentile `p` (0–100) of `sorted` samples; zero for none.
pub fn pct(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Milliseconds, for printing.
pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// `a / b`, for comparing two figures of one run (zero when `b` is).
pub fn ratio(a: Duration, b: Duration) -> f64 {
    if b.is_zero() {
        0.0
    } else {
        a.as_secs_f64() / b.as_secs_f64()
    }
}

/// A run's latencies, summarized.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    /// How many samples.
    pub n: usize,
    /// Median.
    pub p50: Duration,
    /// 90th percentile.
    pub p90: Duration,
    /// 99th percentile.
    pub p99: Duration,
    /// Slowest.
    pub max: Duration,
    /// Mean.
    pub mean: Duration,
}

/// The summary of `samples` (in any order).
pub fn summarize(samples: &[Duration]) -> Summary {
    let mut s = samples.to_vec();
    s.sort();
    let total: Duration = s.iter().sum();
    Summary {
        n: s.len(),
        p50: pct(&s, 50.0),
        p90: pct(&s, 90.0),
        p99: pct(&s, 99.0),
        max: s.last().copied().unwrap_or_default(),
        mean: u32::try_from(s.len())
            .ok()
            .filter(|&n| n > 0)
            .map_or(Duration::ZERO, |n| total / n),
    }
}

/// Prints `s` under `label`, and as `FIGURE <key>_{n,p50_ms,p90_ms,p99_ms,max_ms,mean_ms}`.
pub fn print_summary(label: &str, key: &str, s: &Summary) {
    println!(
        "{label}: n={} p50 {:.1} ms  p90 {:.1} ms  p99 {:.1} ms  max {:.1} ms  mean {:.1} ms",
        s.n,
        ms(s.p50),
        ms(s.p90),
        ms(s.p99),
        ms(s.max),
        ms(s.mean)
    );
    println!("FIGURE {key}_n {}", s.n);
    println!("FIGURE {key}_p50_ms {:.1}", ms(s.p50));
    println!("FIGURE {key}_p90_ms {:.1}", ms(s.p90));
    println!("FIGURE {key}_p99_ms {:.1}", ms(s.p99));
    println!("FIGURE {key}_max_ms {:.1}", ms(s.max));
    println!("FIGURE {key}_mean_ms {:.1}", ms(s.mean));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let ms = |v: u64| Duration::from_millis(v);
        let samples: Vec<Duration> = (1..=100).rev().map(ms).collect();
        let s = summarize(&samples);
        assert_eq!(
            (s.n, s.p50, s.p90, s.p99, s.max),
            (100, ms(50), ms(90), ms(99), ms(100))
        );
        assert_eq!(s.mean, Duration::from_micros(50_500));
        let one = summarize(&[ms(7)]);
        assert_eq!((one.p50, one.p99, one.mean), (ms(7), ms(7), ms(7)));
        assert_eq!(summarize(&[]).p99, Duration::ZERO);
        assert_eq!(ratio(ms(3), ms(2)), 1.5);
        assert_eq!(ratio(ms(3), Duration::ZERO), 0.0);
    }
}
