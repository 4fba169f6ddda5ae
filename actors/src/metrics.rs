//! The daemon's metrics, in the Prometheus client's registry.
//!
//! Counters and histograms are updated where things happen (router,
//! service actors, HTTP streams); gauges that mirror shared state (in
//! flight, breaker, health, restarts) are refreshed from the service
//! handles when the registry is rendered, so they are never stale.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::error::ErrorCategory;
use crate::model::BreakerState;
use crate::model::Directory;

/// Labels of a finished call.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CallLabels {
    pub service: String,
    pub tool: String,
    /// `ok`, `tool_error` (the tool reported `isError`) or `error`.
    pub outcome: &'static str,
    /// Error category, or `none`.
    pub category: &'static str,
}

/// Labels naming a service.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ServiceLabels {
    pub service: String,
}

/// Labels of a retry.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RetryLabels {
    pub service: String,
    pub category: &'static str,
}

/// Labels of a failover.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FailoverLabels {
    pub tool: String,
    /// The service that failed.
    pub from: String,
}

/// Labels of a service's breaker state (one series per state, 0 or 1).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BreakerLabels {
    pub service: String,
    pub state: &'static str,
}

/// Labels of an open stream.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StreamLabels {
    /// `api_stream`, `mcp_call` or `mcp_listen`.
    pub kind: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct QuarantineLabels {
    pub service: String,
    pub tool: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct HedgeLabels {
    pub service: String,
    /// `hedge` or `primary`: which attempt answered first.
    pub winner: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct CacheLabels {
    /// The logical service.
    pub group: String,
    /// `hit`, `miss` or `coalesced`.
    pub outcome: &'static str,
}

/// Every metric of the daemon.
pub struct Metrics {
    registry: Registry,
    calls: Family<CallLabels, Counter>,
    call_seconds: Family<ServiceLabels, Histogram>,
    upstream_seconds: Family<ServiceLabels, Histogram>,
    retries: Family<RetryLabels, Counter>,
    failovers: Family<FailoverLabels, Counter>,
    streams: Family<StreamLabels, Gauge>,
    restarts: Family<ServiceLabels, Counter>,
    in_flight: Family<ServiceLabels, Gauge>,
    queued: Family<ServiceLabels, Gauge>,
    up: Family<ServiceLabels, Gauge>,
    health: Family<ServiceLabels, Gauge>,
    breaker: Family<BreakerLabels, Gauge>,
    breaker_opened: Family<ServiceLabels, Counter>,
    suspected: Family<ServiceLabels, Counter>,
    hedges: Family<HedgeLabels, Counter>,
    quarantined: Family<QuarantineLabels, Counter>,
    cache_lookups: Family<CacheLabels, Counter>,
    cache_hit_seconds: Histogram,
    cache_bytes: Gauge,
    cache_entries: Gauge,
    cache_evictions: Counter,
    resident_bytes: Gauge,
    open_fds: Gauge,
    threads: Gauge,
    cpu_seconds: Counter<f64, std::sync::atomic::AtomicU64>,
    service_processes: Family<ServiceLabels, Gauge>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

fn latency_histogram() -> Histogram {
    // 1 ms .. ~65 s
    Histogram::new(exponential_buckets(0.001, 2.0, 17))
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A registry with every family registered.
    pub fn new() -> Self {
        // The process series keep their standard, unprefixed names.
        let mut root = Registry::default();
        let registry = root.sub_registry_with_prefix("mcpvisor");
        let m = Self {
            calls: Family::default(),
            call_seconds: Family::new_with_constructor(latency_histogram),
            upstream_seconds: Family::new_with_constructor(latency_histogram),
            retries: Family::default(),
            failovers: Family::default(),
            streams: Family::default(),
            restarts: Family::default(),
            in_flight: Family::default(),
            queued: Family::default(),
            up: Family::default(),
            health: Family::default(),
            breaker: Family::default(),
            breaker_opened: Family::default(),
            suspected: Family::default(),
            hedges: Family::default(),
            quarantined: Family::default(),
            cache_lookups: Family::default(),
            cache_hit_seconds: Histogram::new(exponential_buckets(0.000_01, 2.0, 16)),
            cache_bytes: Gauge::default(),
            cache_entries: Gauge::default(),
            cache_evictions: Counter::default(),
            resident_bytes: Gauge::default(),
            open_fds: Gauge::default(),
            threads: Gauge::default(),
            cpu_seconds: Counter::default(),
            service_processes: Family::default(),
            registry: Registry::default(),
        };
        registry.register(
            "calls",
            "Tool calls finished, by service, tool, outcome and error category",
            m.calls.clone(),
        );
        registry.register(
            "call_duration_seconds",
            "Tool call duration seen by clients, failovers and retries included",
            m.call_seconds.clone(),
        );
        registry.register(
            "upstream_duration_seconds",
            "Duration of single upstream tool call attempts",
            m.upstream_seconds.clone(),
        );
        registry.register(
            "retries",
            "Calls put in a service's retry mailbox, by error category",
            m.retries.clone(),
        );
        registry.register(
            "failovers",
            "Calls moved to another replica after a failure",
            m.failovers.clone(),
        );
        registry.register(
            "open_streams",
            "Open streaming responses, by kind",
            m.streams.clone(),
        );
        registry.register(
            "service_restarts",
            "Restarts of a service since the daemon started",
            m.restarts.clone(),
        );
        registry.register(
            "service_in_flight",
            "Calls sent to a service and not yet answered",
            m.in_flight.clone(),
        );
        registry.register(
            "service_queued",
            "Calls waiting in a service's queue or retry mailbox",
            m.queued.clone(),
        );
        registry.register(
            "service_up",
            "1 when the service's connection is ready",
            m.up.clone(),
        );
        registry.register(
            "service_health",
            "Health status: 0 unknown, 1 healthy, 2 degraded, 3 unhealthy, 4 disabled, 5 failed",
            m.health.clone(),
        );
        registry.register(
            "service_breaker",
            "Circuit breaker state (1 for the current state)",
            m.breaker.clone(),
        );
        registry.register(
            "service_breaker_opened",
            "Times the service's breaker has opened",
            m.breaker_opened.clone(),
        );
        registry.register(
            "service_suspected",
            "Times the service was taken out of rotation for not answering",
            m.suspected.clone(),
        );
        registry.register(
            "hedges",
            "Safe calls sent to a second replica because the first was slow or suspect, by the replica hedged to and who answered first",
            m.hedges.clone(),
        );
        registry.register(
            "quarantined_calls",
            "Calls quarantined for crashing their upstream twice, by the service that crashed last and the tool",
            m.quarantined.clone(),
        );
        registry.register(
            "cache_lookups",
            "Calls of cached tools, by logical service and outcome: served from the cache (hit), sent upstream (miss), or joined to an identical call in flight (coalesced)",
            m.cache_lookups.clone(),
        );
        registry.register(
            "cache_hit_duration_seconds",
            "Time to serve a call from the cache",
            m.cache_hit_seconds.clone(),
        );
        registry.register(
            "cache_bytes",
            "Bytes of results held in the cache (their JSON size)",
            m.cache_bytes.clone(),
        );
        registry.register(
            "cache_evictions",
            "Results dropped from the cache to stay within its bounds",
            m.cache_evictions.clone(),
        );
        registry.register(
            "cache_entries",
            "Results held in the cache",
            m.cache_entries.clone(),
        );
        registry.register(
            "service_processes",
            "Live processes in the service's process group (its server and whatever it started)",
            m.service_processes.clone(),
        );
        root.register(
            "process_resident_memory_bytes",
            "Resident memory of the mcpvisor process",
            m.resident_bytes.clone(),
        );
        root.register(
            "process_open_fds",
            "Open file descriptors of the mcpvisor process",
            m.open_fds.clone(),
        );
        root.register(
            "process_threads",
            "Threads of the mcpvisor process",
            m.threads.clone(),
        );
        root.register(
            "process_cpu_seconds",
            "User and system CPU time of the mcpvisor process, in seconds",
            m.cpu_seconds.clone(),
        );
        Self {
            registry: root,
            ..m
        }
    }

    /// Records a result dropped to stay within the cache's bounds.
    pub fn cache_evicted(&self) {
        self.cache_evictions.inc();
    }

    /// Records how much the cache holds.
    pub fn cache_size(&self, bytes: u64, entries: u64) {
        self.cache_bytes
            .set(i64::try_from(bytes).unwrap_or(i64::MAX));
        self.cache_entries
            .set(i64::try_from(entries).unwrap_or(i64::MAX));
    }

    /// Records a call served from the cache.
    pub fn cache_hit(&self, group: &str, seconds: f64) {
        self.cache_lookup(group, "hit");
        self.cache_hit_seconds.observe(seconds);
    }

    /// Records a cached tool's call sent upstream.
    pub fn cache_miss(&self, group: &str) {
        self.cache_lookup(group, "miss");
    }

    /// Records a call that waited for an identical one in flight.
    pub fn cache_coalesced(&self, group: &str) {
        self.cache_lookup(group, "coalesced");
    }

    fn cache_lookup(&self, group: &str, outcome: &'static str) {
        self.cache_lookups
            .get_or_create(&CacheLabels {
                group: group.to_owned(),
                outcome,
            })
            .inc();
    }

    /// Records a call quarantined for crashing `service` twice.
    pub fn quarantined(&self, service: &str, tool: &str) {
        self.quarantined
            .get_or_create(&QuarantineLabels {
                service: service.to_owned(),
                tool: tool.to_owned(),
            })
            .inc();
    }

    /// Records a service taken out of rotation for not answering.
    pub fn suspected(&self, service: &str) {
        self.suspected
            .get_or_create(&ServiceLabels {
                service: service.to_owned(),
            })
            .inc();
    }

    /// Records a hedged call: the replica it was hedged to, and whether
    /// that replica answered first.
    pub fn hedge(&self, service: &str, won: bool) {
        self.hedges
            .get_or_create(&HedgeLabels {
                service: service.to_owned(),
                winner: if won { "hedge" } else { "primary" },
            })
            .inc();
    }

    /// Records a finished call.
    pub fn call(
        &self,
        service: &str,
        tool: &str,
        outcome: Result<bool, ErrorCategory>,
        seconds: f64,
    ) {
        let (outcome, category) = match outcome {
            Ok(false) => ("ok", "none"),
            Ok(true) => ("tool_error", "upstream_tool_error"),
            Err(c) => ("error", c.as_str()),
        };
        self.calls
            .get_or_create(&CallLabels {
                service: service.to_owned(),
                tool: tool.to_owned(),
                outcome,
                category,
            })
            .inc();
        self.call_seconds
            .get_or_create(&ServiceLabels {
                service: service.to_owned(),
            })
            .observe(seconds);
    }

    /// Records one upstream attempt's duration.
    pub fn upstream_attempt(&self, service: &str, seconds: f64) {
        self.upstream_seconds
            .get_or_create(&ServiceLabels {
                service: service.to_owned(),
            })
            .observe(seconds);
    }

    /// Records a retry.
    pub fn retry(&self, service: &str, category: ErrorCategory) {
        self.retries
            .get_or_create(&RetryLabels {
                service: service.to_owned(),
                category: category.as_str(),
            })
            .inc();
    }

    /// Records a failover away from `from`.
    pub fn failover(&self, tool: &str, from: &str) {
        self.failovers
            .get_or_create(&FailoverLabels {
                tool: tool.to_owned(),
                from: from.to_owned(),
            })
            .inc();
    }

    /// Counts an open stream until the guard is dropped.
    pub fn stream_opened(&self, kind: &'static str) -> StreamGuard {
        let gauge = self.streams.get_or_create_owned(&StreamLabels { kind });
        gauge.inc();
        StreamGuard { gauge }
    }

    /// Renders every metric as OpenMetrics text, refreshing the gauges
    /// that mirror the services' shared state first.
    pub fn render(&self, directory: &Directory) -> String {
        for h in directory.all() {
            let s = ServiceLabels {
                service: h.name().to_owned(),
            };
            let snap = h.snapshot();
            // Counters mirror the handles' running totals.
            catch_up(&self.restarts.get_or_create(&s), u64::from(snap.restarts));
            self.in_flight.get_or_create(&s).set(snap.in_flight as i64);
            self.queued.get_or_create(&s).set(snap.queued as i64);
            self.up
                .get_or_create(&s)
                .set(i64::from(snap.state == crate::model::ServiceState::Ready));
            self.health.get_or_create(&s).set(snap.health as i64);
            catch_up(&self.breaker_opened.get_or_create(&s), snap.breaker_opened);
            for (state, name) in [
                (BreakerState::Closed, "closed"),
                (BreakerState::Open, "open"),
                (BreakerState::HalfOpen, "half_open"),
            ] {
                self.breaker
                    .get_or_create(&BreakerLabels {
                        service: h.name().to_owned(),
                        state: name,
                    })
                    .set(i64::from(snap.breaker == state));
            }
        }
        let groups = crate::process::group_sizes();
        for h in directory.all() {
            let members = h
                .process()
                .pgid()
                .and_then(|g| groups.get(&g).copied())
                .unwrap_or(0);
            self.service_processes
                .get_or_create(&ServiceLabels {
                    service: h.name().to_owned(),
                })
                .set(i64::try_from(members).unwrap_or(i64::MAX));
        }
        if let Some(u) = crate::process::usage() {
            self.resident_bytes
                .set(i64::try_from(u.rss_bytes).unwrap_or(i64::MAX));
            self.threads
                .set(i64::try_from(u.threads).unwrap_or(i64::MAX));
            let behind = u.cpu_seconds - self.cpu_seconds.get();
            if behind > 0.0 {
                self.cpu_seconds.inc_by(behind);
            }
        }
        self.open_fds
            .set(i64::try_from(crate::process::open_fds()).unwrap_or(i64::MAX));
        let mut out = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::error!(error = %e, "cannot encode metrics");
        }
        out
    }
}

/// Keeps an open-stream gauge raised while alive.
pub struct StreamGuard {
    gauge: Gauge,
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        self.gauge.dec();
    }
}

/// Raises a counter to a running total kept elsewhere (never lowers it).
fn catch_up(counter: &Counter, total: u64) {
    let now = counter.get();
    if total > now {
        counter.inc_by(total - now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_histograms_and_gauges() {
        let m = Metrics::new();
        m.call("a", "t", Ok(false), 0.01);
        m.call("a", "t", Err(ErrorCategory::Timeout), 1.0);
        m.retry("a", ErrorCategory::RateLimit);
        let guard = m.stream_opened("api_stream");
        let text = m.render(&Directory::new(Vec::new()));
        assert!(
            text.contains(
                r#"mcpvisor_calls_total{service="a",tool="t",outcome="ok",category="none"} 1"#
            ),
            "{text}"
        );
        assert!(text.contains(r#"category="timeout"} 1"#), "{text}");
        assert!(
            text.contains("mcpvisor_call_duration_seconds_bucket"),
            "{text}"
        );
        assert!(
            text.contains(r#"mcpvisor_open_streams{kind="api_stream"} 1"#),
            "{text}"
        );
        drop(guard);
        let text = m.render(&Directory::new(Vec::new()));
        assert!(
            text.contains(r#"mcpvisor_open_streams{kind="api_stream"} 0"#),
            "{text}"
        );
    }
}
