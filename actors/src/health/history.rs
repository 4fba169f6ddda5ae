//! A service's recent health samples and what they add up to.

use std::collections::VecDeque;

use serde::Serialize;

/// Where a sample came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// The service's own health probe (`ping` / `server/discover`).
    Probe,
    /// A real tool call.
    Call,
    /// The supervisor: the service went down or came up.
    Lifecycle,
}

/// One observation of a service.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Sample {
    /// Unix time in milliseconds.
    pub at_ms: u64,
    /// Whether the service answered.
    pub ok: bool,
    /// Round-trip time (successful samples).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<f64>,
    /// What produced it.
    pub source: Source,
    /// Why it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A bounded ring of samples.
#[derive(Debug, Clone)]
pub struct History {
    samples: VecDeque<Sample>,
    capacity: usize,
    consecutive_failures: u32,
}

/// Figures over the history.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    /// Samples held.
    pub samples: usize,
    /// Share of successful samples, in percent (`None` before any sample).
    pub uptime_pct: Option<f64>,
    /// Median latency of successful samples.
    pub p50_ms: Option<f64>,
    /// 95th percentile latency of successful samples.
    pub p95_ms: Option<f64>,
    /// Median latency of the most recent successful samples (what
    /// "degraded" is judged on).
    pub recent_p50_ms: Option<f64>,
    /// How many samples `recent_p50_ms` is taken over.
    pub recent_samples: usize,
    /// Failures in a row, newest last.
    pub consecutive_failures: u32,
}

/// How many recent successes decide "slow".
const RECENT: usize = 5;

/// The fewest recent successes a "slow" verdict is drawn from, so that one
/// slow answer after a restart does not flip a service to degraded and back.
pub const MIN_RECENT_FOR_SLOW: usize = 3;

impl History {
    /// An empty history holding at most `capacity` samples.
    pub fn new(capacity: usize) -> Self {
        Self {
            samples: VecDeque::with_capacity(capacity.min(1024)),
            capacity: capacity.max(1),
            consecutive_failures: 0,
        }
    }

    /// Adds a sample, dropping the oldest beyond capacity.
    pub fn push(&mut self, sample: Sample) {
        if sample.ok {
            self.consecutive_failures = 0;
        } else {
            self.consecutive_failures += 1;
        }
        if self.samples.len() == self.capacity {
            self.samples.pop_front();
        }
        self.samples.push_back(sample);
    }

    /// Samples, oldest first.
    pub fn samples(&self) -> impl DoubleEndedIterator<Item = &Sample> {
        self.samples.iter()
    }

    /// Failures in a row.
    pub fn consecutive_failures(&self) -> u32 {
        self.consecutive_failures
    }

    /// The median latency of the last few successes, and how many there
    /// were: what a "slow" verdict is drawn from. Cheap enough for every
    /// sample (the full [`Self::summary`] sorts the whole ring).
    pub fn recent_p50_ms(&self) -> (Option<f64>, usize) {
        let mut recent = [0f64; RECENT];
        let mut n = 0;
        for latency in self
            .samples
            .iter()
            .rev()
            .filter(|s| s.ok)
            .filter_map(|s| s.latency_ms)
            .take(RECENT)
        {
            recent[n] = latency;
            n += 1;
        }
        let recent = &mut recent[..n];
        recent.sort_unstable_by(f64::total_cmp);
        (percentile(recent, 0.50), n)
    }

    /// Uptime and latency figures.
    pub fn summary(&self) -> Summary {
        let total = self.samples.len();
        let mut latencies: Vec<f64> = self
            .samples
            .iter()
            .filter(|s| s.ok)
            .filter_map(|s| s.latency_ms)
            .collect();
        let ok = self.samples.iter().filter(|s| s.ok).count();
        let (recent_p50_ms, recent_samples) = self.recent_p50_ms();
        latencies.sort_by(f64::total_cmp);
        Summary {
            samples: total,
            uptime_pct: (total > 0).then(|| ok as f64 * 100.0 / total as f64),
            p50_ms: percentile(&latencies, 0.50),
            p95_ms: percentile(&latencies, 0.95),
            recent_p50_ms,
            recent_samples,
            consecutive_failures: self.consecutive_failures,
        }
    }
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (p * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(ok: bool, latency: f64) -> Sample {
        Sample {
            at_ms: 0,
            ok,
            latency_ms: ok.then_some(latency),
            source: Source::Probe,
            error: None,
        }
    }

    #[test]
    fn ring_is_bounded_and_uptime_counts_successes() {
        let mut h = History::new(4);
        for ok in [false, true, true, false, true] {
            h.push(sample(ok, 1.0));
        }
        let s = h.summary();
        assert_eq!(s.samples, 4);
        assert_eq!(s.uptime_pct, Some(75.0));
        assert_eq!(s.consecutive_failures, 0);
    }

    #[test]
    fn percentiles_use_successful_samples() {
        let mut h = History::new(100);
        for i in 1..=100 {
            h.push(sample(true, f64::from(i)));
        }
        h.push(sample(false, 0.0));
        let s = h.summary();
        assert_eq!(s.p50_ms, Some(51.0));
        assert_eq!(s.p95_ms, Some(96.0));
        // The five most recent successes: 96..=100 (one sample fell off).
        assert_eq!(s.recent_p50_ms, Some(98.0));
        assert_eq!(s.consecutive_failures, 1);
    }

    #[test]
    fn recent_window_counts_only_successes() {
        let mut h = History::new(10);
        h.push(sample(true, 400.0));
        h.push(sample(false, 0.0));
        assert_eq!(h.summary().recent_samples, 1);
        for _ in 0..6 {
            h.push(sample(true, 5.0));
        }
        let s = h.summary();
        assert_eq!(s.recent_samples, 5);
        assert_eq!(s.recent_p50_ms, Some(5.0));
    }

    #[test]
    fn empty_history_has_no_figures() {
        let s = History::new(10).summary();
        assert_eq!(s.uptime_pct, None);
        assert_eq!(s.p50_ms, None);
    }
}
