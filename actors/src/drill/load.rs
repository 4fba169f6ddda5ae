//! The load a drill drives while it breaks things: a few workers calling a
//! read-only tool through the router, exactly as clients' calls go, each
//! call timed and attributed to the phase it started in.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use std::sync::Mutex;

use crate::cache::CacheUse;
use crate::router::{Execute, Router};
use crate::service::Caller;
use crate::stream::EventSink;

/// Which part of the drill a call started in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Phase {
    Before = 0,
    During = 1,
    After = 2,
}

/// One finished call.
#[derive(Debug, Clone)]
pub struct Sample {
    pub phase: Phase,
    pub started: Instant,
    pub finished: Instant,
    pub ok: bool,
    /// The replica that answered (for a success) or the last one tried.
    pub service: Option<String>,
    pub hedged: bool,
    pub retried: bool,
    pub error: Option<String>,
}

/// Latency figures of one phase.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Latency {
    pub calls: usize,
    pub p50: Option<f64>,
    pub p99: Option<f64>,
    pub max: Option<f64>,
}

/// The drill's load generator.
pub struct Load {
    stop: Arc<AtomicBool>,
    phase: Arc<AtomicU8>,
    samples: Arc<Mutex<Vec<Sample>>>,
    workers: Vec<tokio::task::JoinHandle<bool>>,
    sent: Arc<std::sync::atomic::AtomicUsize>,
}

impl Load {
    /// Starts `workers` loops calling `tool` (no arguments) via `router`.
    pub fn start(router: Router, tool: String, workers: usize) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let phase = Arc::new(AtomicU8::new(Phase::Before as u8));
        let samples = Arc::new(Mutex::new(Vec::new()));
        let sent = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let workers = (0..workers.max(1))
            .map(|_| {
                let (router, tool) = (router.clone(), tool.clone());
                let (stop, phase, samples, sent) =
                    (stop.clone(), phase.clone(), samples.clone(), sent.clone());
                actix::spawn(async move {
                    while !stop.load(Ordering::Relaxed) {
                        let phase = match phase.load(Ordering::Relaxed) {
                            0 => Phase::Before,
                            1 => Phase::During,
                            _ => Phase::After,
                        };
                        sent.fetch_add(1, Ordering::Relaxed);
                        let started = Instant::now();
                        let outcome = router
                            .execute(Execute {
                                tool: tool.clone(),
                                arguments: None,
                                validated: false,
                                events: EventSink::discard(),
                                caller: Caller::default(),
                                service: None,
                                span: tracing::info_span!("drill_call"),
                                // Every call must reach a replica to prove it.
                                cache: CacheUse {
                                    bypass: true,
                                    client: None,
                                },
                            })
                            .await;
                        let finished = Instant::now();
                        let sample = match outcome {
                            Ok(done) => Sample {
                                phase,
                                started,
                                finished,
                                ok: !done.result.is_error(),
                                service: Some(done.service),
                                hedged: done.hedged,
                                retried: done.attempts > 1 && !done.hedged,
                                error: done
                                    .result
                                    .is_error()
                                    .then(|| "the tool reported an error".to_owned()),
                            },
                            Err(e) => Sample {
                                phase,
                                started,
                                finished,
                                ok: false,
                                service: e.services.last().cloned(),
                                hedged: false,
                                retried: e.services.len() > 1,
                                error: Some(format!(
                                    "{e} (tried {}; after {} ms)",
                                    e.services.join(", "),
                                    finished.duration_since(started).as_millis()
                                )),
                            },
                        };
                        samples
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .push(sample);
                    }
                    true
                })
            })
            .collect();
        Self {
            stop,
            phase,
            samples,
            workers,
            sent,
        }
    }

    /// Calls started so far.
    pub fn sent(&self) -> usize {
        self.sent.load(Ordering::Relaxed)
    }

    /// Calls from now on belong to `phase`.
    pub fn enter(&self, phase: Phase) {
        self.phase.store(phase as u8, Ordering::Relaxed);
    }

    /// The samples so far.
    pub fn samples(&self) -> Vec<Sample> {
        self.samples
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Calls answered so far: succeeded, failed.
    pub fn counts(&self) -> (usize, usize) {
        let s = self.samples.lock().unwrap_or_else(|p| p.into_inner());
        let ok = s.iter().filter(|s| s.ok).count();
        (ok, s.len() - ok)
    }

    /// Whether a call that started at or after `since` was answered by `service`.
    pub fn served_by_since(&self, service: &str, since: Instant) -> bool {
        self.samples
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .any(|s| s.ok && s.started >= since && s.service.as_deref() == Some(service))
    }

    /// Stops the workers; waits up to `patience` for calls in flight.
    /// Returns every sample and the number of calls that never finished.
    pub async fn finish(mut self, patience: Duration) -> (Vec<Sample>, usize) {
        self.stop.store(true, Ordering::Relaxed);
        let deadline = tokio::time::Instant::now() + patience;
        let mut lost = 0;
        for w in std::mem::take(&mut self.workers) {
            match tokio::time::timeout_at(deadline, w).await {
                Ok(_) => {}
                Err(_) => lost += 1,
            }
        }
        (self.samples(), lost)
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// p50, p99 and max of the calls of `phase`, in ms.
pub fn latency(samples: &[Sample], phase: Phase) -> Latency {
    let mut ms: Vec<f64> = samples
        .iter()
        .filter(|s| s.phase == phase)
        .map(|s| s.finished.duration_since(s.started).as_secs_f64() * 1000.0)
        .collect();
    ms.sort_by(f64::total_cmp);
    let at = |q: f64| (!ms.is_empty()).then(|| ms[((ms.len() as f64 - 1.0) * q).round() as usize]);
    Latency {
        calls: ms.len(),
        p50: at(0.5).map(round1),
        p99: at(0.99).map(round1),
        max: ms.last().copied().map(round1),
    }
}

fn round1(v: f64) -> f64 {
    (v * 10.0).round() / 10.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(phase: Phase, ms: u64) -> Sample {
        let started = Instant::now();
        Sample {
            phase,
            started,
            finished: started + Duration::from_millis(ms),
            ok: true,
            service: None,
            hedged: false,
            retried: false,
            error: None,
        }
    }

    #[test]
    fn latency_is_per_phase() {
        let mut s: Vec<Sample> = (1..=100).map(|i| sample(Phase::During, i)).collect();
        s.push(sample(Phase::Before, 5));
        let during = latency(&s, Phase::During);
        assert_eq!(during.calls, 100);
        assert_eq!(during.p50, Some(51.0));
        assert_eq!(during.p99, Some(99.0));
        assert_eq!(during.max, Some(100.0));
        assert_eq!(latency(&s, Phase::Before).p50, Some(5.0));
        assert_eq!(latency(&s, Phase::After).p50, None);
    }
}
