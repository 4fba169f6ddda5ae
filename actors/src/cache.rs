//! The result cache: answers of read-only tools kept for a while, and
//! concurrent identical calls coalesced into one upstream call.
//!
//! A result is keyed by its logical service, the tool, its arguments in
//! canonical form (key order and whitespace do not matter) and — for tools
//! whose results depend on who asks — the client. Only successful results
//! of read-only tools are kept; errors and tool errors never are. A result
//! lives for its tool's TTL (the manifest's `cache.ttlMs`, else the
//! default), within a bound on entries and on bytes.
//!
//! Writes make reads stale without touching the store: every logical
//! service and every read tool has an *epoch*, and a result remembers the
//! epochs it was read under. A write bumps the epochs of the reads it
//! affects (those its manifest lists, else the whole service); a result
//! read under an older epoch is a miss. A read that was already running
//! when a write finished is stored under its old epoch, so it is never
//! served.
//!
//! Coalescing: a call finding an identical one in flight waits for it
//! instead of going upstream; progress and the outcome go to every waiter.
//! The shared call runs on its own task, so a waiter that leaves — the
//! first one included — does not cancel it for the others; when the last
//! one leaves, it is cancelled upstream.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dashmap::DashMap;
use moka::notification::RemovalCause;
use rmcp::model::JsonObject;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::error::{CallError, ErrorCategory};
use crate::manifest::{CacheHint, CacheScope};
use crate::metrics::Metrics;
use crate::registry::ToolEntry;
use crate::reply::CallOutcome;
use crate::service::CallReply;
use crate::stream::{EventSink, StreamEvent};

/// The `[cache]` settings.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct CacheConfig {
    /// Whether results are cached and identical calls coalesced.
    pub enabled: bool,
    /// TTL of a read-only tool's results when its manifest gives none
    /// (`0`: only tools with a manifest TTL are cached).
    pub default_ttl_ms: u64,
    /// Most results kept.
    pub max_entries: u64,
    /// Most bytes of results kept (their JSON size).
    pub max_bytes: u64,
    /// Scope of tools whose manifest names none.
    pub scope: CacheScope,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            default_ttl_ms: 30_000,
            max_entries: 10_000,
            max_bytes: 64 * 1024 * 1024,
            scope: CacheScope::Shared,
        }
    }
}

/// How a caller uses the cache.
#[derive(Debug, Clone, Default)]
pub struct CacheUse {
    /// Go upstream whatever is cached (the result is not stored either).
    pub bypass: bool,
    /// The calling client, for tools cached per client.
    pub client: Option<Arc<str>>,
}

/// How one tool's results are cached.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Policy {
    pub ttl: Duration,
    pub scope: CacheScope,
}

/// What a cached result is found by.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Key {
    group: Arc<str>,
    tool: Arc<str>,
    arguments: String,
    client: Option<Arc<str>>,
}

impl Key {
    /// The key of `tool` of `group` called with `arguments`, for `client`
    /// when results are per client.
    pub fn new(
        group: &str,
        tool: &str,
        arguments: Option<&JsonObject>,
        client: Option<Arc<str>>,
    ) -> Self {
        let mut canonical = String::new();
        match arguments {
            Some(map) => write_object(map, &mut canonical),
            None => canonical.push_str("{}"),
        }
        Self {
            group: Arc::from(group),
            tool: Arc::from(tool),
            arguments: canonical,
            client,
        }
    }
}

/// `v` as JSON with every object's keys sorted, without whitespace: equal
/// for equal values whatever their key order.
pub fn canonical_json(v: &Value) -> String {
    let mut out = String::new();
    write_value(v, &mut out);
    out
}

/// `v` as JSON with every object's keys sorted.
fn write_value(v: &Value, out: &mut String) {
    match v {
        Value::Object(o) => write_object(o, out),
        Value::Array(a) => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_value(x, out);
            }
            out.push(']');
        }
        // Scalars print the same whatever the map order.
        other => out.push_str(&other.to_string()),
    }
}

fn write_object(o: &serde_json::Map<String, Value>, out: &mut String) {
    let mut keys: Vec<&String> = o.keys().collect();
    keys.sort_unstable();
    out.push('{');
    for (i, k) in keys.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&Value::String(k.clone()).to_string());
        out.push(':');
        write_value(&o[k], out);
    }
    out.push('}');
}

/// The epochs a result was read under: its service's and its tool's.
type Epochs = (u64, u64);

/// A stored result.
#[derive(Debug)]
struct Stored {
    result: crate::reply::ToolResult,
    service: String,
    epochs: Epochs,
    ttl: Duration,
    bytes: u64,
}

/// A call in flight that identical calls wait for.
struct Flight {
    epochs: Epochs,
    /// The sinks of everyone waiting: progress goes to each.
    waiters: Mutex<Vec<EventSink>>,
    /// How many are waiting.
    interest: AtomicU64,
    /// Fires when the last waiter left.
    abandoned: CancellationToken,
    outcome: watch::Sender<Option<Result<CallOutcome, CallError>>>,
}

/// The cache's figures.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CacheStats {
    pub enabled: bool,
    pub entries: u64,
    pub bytes: u64,
    pub max_entries: u64,
    pub max_bytes: u64,
    pub hits: u64,
    pub misses: u64,
    /// Calls that waited for an identical one instead of going upstream.
    pub coalesced: u64,
    /// Results dropped to stay within the bounds.
    pub evictions: u64,
    /// Hits over hits and misses (coalesced calls count as hits).
    pub hit_rate: f64,
}

#[derive(Default)]
struct Counters {
    hits: AtomicU64,
    misses: AtomicU64,
    coalesced: AtomicU64,
    evictions: AtomicU64,
    bytes: AtomicU64,
    entries: AtomicU64,
}

/// The result cache of every logical service.
pub struct ResultCache {
    config: CacheConfig,
    store: moka::sync::Cache<Arc<Key>, Arc<Stored>>,
    flights: Mutex<HashMap<Arc<Key>, Arc<Flight>>>,
    /// Epochs by logical service, and by `service\0tool`.
    epochs: DashMap<String, u64>,
    counters: Arc<Counters>,
    metrics: Arc<Metrics>,
}

/// Expires each result after its own TTL.
struct ByTtl;

impl moka::Expiry<Arc<Key>, Arc<Stored>> for ByTtl {
    fn expire_after_create(
        &self,
        _key: &Arc<Key>,
        value: &Arc<Stored>,
        _created_at: std::time::Instant,
    ) -> Option<Duration> {
        Some(value.ttl)
    }
}

impl ResultCache {
    /// A cache with `config`'s bounds.
    pub fn new(config: CacheConfig, metrics: Arc<Metrics>) -> Self {
        let counters = Arc::new(Counters::default());
        // Each result weighs at least a fair share of the byte budget, so
        // the byte bound also keeps the count within `max_entries`.
        let floor = config
            .max_bytes
            .checked_div(config.max_entries.max(1))
            .unwrap_or(1)
            .max(1);
        let evicted = counters.clone();
        let gauges = metrics.clone();
        let store = moka::sync::Cache::builder()
            .max_capacity(config.max_bytes.max(1))
            .weigher(move |_k: &Arc<Key>, v: &Arc<Stored>| {
                u32::try_from(v.bytes.max(floor)).unwrap_or(u32::MAX)
            })
            .expire_after(ByTtl)
            .eviction_listener(move |_k, v: Arc<Stored>, cause| {
                let left = evicted
                    .bytes
                    .fetch_sub(v.bytes, Ordering::Relaxed)
                    .saturating_sub(v.bytes);
                let entries = evicted
                    .entries
                    .fetch_sub(1, Ordering::Relaxed)
                    .saturating_sub(1);
                gauges.cache_size(left, entries);
                if cause == RemovalCause::Size {
                    evicted.evictions.fetch_add(1, Ordering::Relaxed);
                    gauges.cache_evicted();
                }
            })
            .build();
        Self {
            config,
            store,
            flights: Mutex::new(HashMap::new()),
            epochs: DashMap::new(),
            counters,
            metrics,
        }
    }

    /// Whether the cache is on at all.
    pub fn enabled(&self) -> bool {
        self.config.enabled
    }

    /// How `entry`'s results are cached; `None` when they are not (the
    /// cache is off, the tool may change something, or its manifest or a
    /// zero TTL says so).
    pub fn policy(&self, entry: &ToolEntry) -> Option<Policy> {
        if !self.config.enabled || entry.annotations().read_only_hint != Some(true) {
            return None;
        }
        let rules = match entry.manifest.as_ref().and_then(|m| m.cache.as_ref()) {
            Some(CacheHint::Off(_)) => return None,
            Some(CacheHint::Rules(r)) => Some(r),
            None => None,
        };
        let ttl_ms = rules
            .and_then(|r| r.ttl_ms)
            .unwrap_or(self.config.default_ttl_ms);
        (ttl_ms > 0).then(|| Policy {
            ttl: Duration::from_millis(ttl_ms),
            scope: rules.and_then(|r| r.scope).unwrap_or(self.config.scope),
        })
    }

    /// The key of a call of `entry` under `policy`.
    pub fn key(
        &self,
        entry: &ToolEntry,
        policy: Policy,
        arguments: Option<&JsonObject>,
        client: Option<Arc<str>>,
    ) -> Arc<Key> {
        let client = match policy.scope {
            CacheScope::Shared => None,
            // An unnamed caller is a client of its own.
            CacheScope::PerClient => Some(client.unwrap_or_else(|| Arc::from("anonymous"))),
        };
        Arc::new(Key::new(
            &entry.group,
            &entry.upstream_name,
            arguments,
            client,
        ))
    }

    fn epoch(&self, name: &str) -> u64 {
        self.epochs.get(name).map_or(0, |e| *e)
    }

    fn epochs_of(&self, key: &Key) -> Epochs {
        (
            self.epoch(&key.group),
            self.epoch(&tool_epoch_name(&key.group, &key.tool)),
        )
    }

    /// A fresh stored result for `key`, if there is one.
    pub fn lookup(&self, key: &Arc<Key>) -> Option<CallOutcome> {
        let started = Instant::now();
        match self.store.get(key) {
            Some(stored) if stored.epochs == self.epochs_of(key) => {
                self.counters.hits.fetch_add(1, Ordering::Relaxed);
                self.metrics
                    .cache_hit(&key.group, started.elapsed().as_secs_f64());
                Some(CallOutcome {
                    result: CallReply::Complete(stored.result.clone()),
                    service: stored.service.clone(),
                    attempts: 0,
                    elapsed: started.elapsed(),
                    hedged: false,
                    cached: true,
                    coalesced: false,
                })
            }
            Some(_) => {
                // Read before a write that has since finished.
                self.store.invalidate(key);
                None
            }
            None => None,
        }
    }

    /// Runs the call behind `key` once for everyone asking at the same
    /// time: `run` starts it (on its own task) unless an identical call is
    /// already in flight. `events` is this caller's sink; it hears the
    /// shared call's progress.
    pub async fn run<F>(
        self: &Arc<Self>,
        key: Arc<Key>,
        policy: Policy,
        events: EventSink,
        run: impl FnOnce(EventSink) -> F,
    ) -> Result<CallOutcome, CallError>
    where
        F: std::future::Future<Output = Result<CallOutcome, CallError>> + Send + 'static,
    {
        let (flight, leader) = {
            let mut flights = self.flights.lock().unwrap_or_else(|p| p.into_inner());
            match flights.get(&key) {
                Some(f) if f.epochs == self.epochs_of(&key) => {
                    f.interest.fetch_add(1, Ordering::AcqRel);
                    (f.clone(), false)
                }
                _ => {
                    let (outcome, _) = watch::channel(None);
                    let f = Arc::new(Flight {
                        epochs: self.epochs_of(&key),
                        waiters: Mutex::new(Vec::new()),
                        interest: AtomicU64::new(1),
                        abandoned: CancellationToken::new(),
                        outcome,
                    });
                    flights.insert(key.clone(), f.clone());
                    (f, true)
                }
            }
        };
        let guard = Interest {
            cache: self.clone(),
            key: key.clone(),
            flight: flight.clone(),
        };
        flight
            .waiters
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(events.clone());
        let mut outcome = flight.outcome.subscribe();
        if leader {
            self.counters.misses.fetch_add(1, Ordering::Relaxed);
            self.metrics.cache_miss(&key.group);
            let (sink, rx) = EventSink::channel(64);
            let call = run(sink);
            let cache = self.clone();
            let flight = flight.clone();
            let key = key.clone();
            tokio::spawn(async move {
                let result = relay(&flight, rx, call).await;
                cache.land(&key, &flight, policy, &result);
                flight.outcome.send_replace(Some(result));
            });
        } else {
            self.counters.coalesced.fetch_add(1, Ordering::Relaxed);
            self.metrics.cache_coalesced(&key.group);
        }
        let result = loop {
            if let Some(r) = outcome.borrow_and_update().clone() {
                break r;
            }
            tokio::select! {
                changed = outcome.changed() => if changed.is_err() {
                    break Err(CallError::new(
                        ErrorCategory::Internal,
                        "the shared call ended without an answer",
                    ));
                },
                () = events.closed() => break Err(CallError::new(
                    ErrorCategory::Cancelled,
                    "the caller went away",
                )),
            }
        };
        drop(guard);
        result.map(|mut o| {
            o.coalesced = !leader;
            o
        })
    }

    /// Stores a successful outcome of a flight and retires it.
    fn land(
        &self,
        key: &Arc<Key>,
        flight: &Arc<Flight>,
        policy: Policy,
        result: &Result<CallOutcome, CallError>,
    ) {
        let mut flights = self.flights.lock().unwrap_or_else(|p| p.into_inner());
        if flights.get(key).is_some_and(|f| Arc::ptr_eq(f, flight)) {
            flights.remove(key);
        }
        let Ok(done) = result else { return };
        let CallReply::Complete(r) = &done.result else {
            return;
        };
        if r.is_error() || flight.epochs != self.epochs_of(key) {
            return;
        }
        let bytes = r.len() as u64;
        if bytes > self.config.max_bytes {
            return;
        }
        let total = self.counters.bytes.fetch_add(bytes, Ordering::Relaxed) + bytes;
        let entries = self.counters.entries.fetch_add(1, Ordering::Relaxed) + 1;
        self.metrics.cache_size(total, entries);
        self.store.insert(
            key.clone(),
            Arc::new(Stored {
                result: r.clone(),
                service: done.service.clone(),
                epochs: flight.epochs,
                ttl: policy.ttl,
                bytes,
            }),
        );
    }

    /// A call of `entry`, which may change things, finished (or may have
    /// run): the reads it affects are stale from now on.
    pub fn wrote(&self, entry: &ToolEntry) {
        if !self.config.enabled {
            return;
        }
        let affected = match entry.manifest.as_ref().and_then(|m| m.cache.as_ref()) {
            Some(CacheHint::Rules(r)) if !r.invalidates.is_empty() => Some(&r.invalidates),
            _ => None,
        };
        match affected {
            Some(tools) => {
                for tool in tools {
                    *self
                        .epochs
                        .entry(tool_epoch_name(&entry.group, tool))
                        .or_insert(0) += 1;
                }
            }
            None => *self.epochs.entry(entry.group.clone()).or_insert(0) += 1,
        }
    }

    /// Drops every stored result.
    pub fn clear(&self) -> u64 {
        let n = self.store.entry_count();
        self.store.invalidate_all();
        self.store.run_pending_tasks();
        n
    }

    /// The cache's figures now.
    pub fn stats(&self) -> CacheStats {
        self.store.run_pending_tasks();
        let c = &self.counters;
        let hits = c.hits.load(Ordering::Relaxed);
        let misses = c.misses.load(Ordering::Relaxed);
        let coalesced = c.coalesced.load(Ordering::Relaxed);
        let served = hits + coalesced;
        CacheStats {
            enabled: self.config.enabled,
            entries: c.entries.load(Ordering::Relaxed),
            bytes: c.bytes.load(Ordering::Relaxed),
            max_entries: self.config.max_entries,
            max_bytes: self.config.max_bytes,
            hits,
            misses,
            coalesced,
            evictions: c.evictions.load(Ordering::Relaxed),
            hit_rate: if served + misses == 0 {
                0.0
            } else {
                served as f64 / (served + misses) as f64
            },
        }
    }
}

fn tool_epoch_name(group: &str, tool: &str) -> String {
    format!("{group}\0{tool}")
}

/// Passes the shared call's events to every waiter while it runs; when
/// the last waiter has left, closes its sink so it is cancelled upstream.
async fn relay<F>(
    flight: &Flight,
    rx: tokio::sync::mpsc::Receiver<StreamEvent>,
    call: F,
) -> Result<CallOutcome, CallError>
where
    F: std::future::Future<Output = Result<CallOutcome, CallError>>,
{
    let fan_out = |event: StreamEvent| {
        let mut waiters = flight.waiters.lock().unwrap_or_else(|p| p.into_inner());
        waiters.retain(|w| !w.is_closed());
        for w in waiters.iter() {
            w.emit(event.clone());
        }
    };
    tokio::pin!(call);
    let mut rx = Some(rx);
    let result = loop {
        tokio::select! {
            biased;
            Some(event) = next(&mut rx) => fan_out(event),
            result = &mut call => break result,
            () = flight.abandoned.cancelled(), if rx.is_some() => {
                // Nobody wants it any more.
                rx = None;
            }
        }
    };
    // Progress that raced the outcome still goes out before it.
    if let Some(rx) = rx.as_mut() {
        while let Ok(event) = rx.try_recv() {
            fan_out(event);
        }
    }
    result
}

async fn next(rx: &mut Option<tokio::sync::mpsc::Receiver<StreamEvent>>) -> Option<StreamEvent> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// One waiter's claim on a flight; the last one to go abandons it.
struct Interest {
    cache: Arc<ResultCache>,
    key: Arc<Key>,
    flight: Arc<Flight>,
}

impl Drop for Interest {
    fn drop(&mut self) {
        let mut flights = self.cache.flights.lock().unwrap_or_else(|p| p.into_inner());
        if self.flight.interest.fetch_sub(1, Ordering::AcqRel) == 1 {
            if flights
                .get(&self.key)
                .is_some_and(|f| Arc::ptr_eq(f, &self.flight))
            {
                flights.remove(&self.key);
            }
            self.flight.abandoned.cancel();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> JsonObject {
        match v {
            Value::Object(o) => o,
            _ => panic!("not an object"),
        }
    }

    #[test]
    fn keys_ignore_key_order_and_whitespace() {
        let a: Value =
            serde_json::from_str(r#"{"b": {"y": 1, "x": [1, {"q": 2, "p": 3}]}, "a": "s"}"#)
                .unwrap();
        let b: Value =
            serde_json::from_str(r#"{"a":"s","b":{"x":[1,{"p":3,"q":2}],"y":1}}"#).unwrap();
        let ka = Key::new("g", "t", Some(&obj(a)), None);
        let kb = Key::new("g", "t", Some(&obj(b)), None);
        assert_eq!(ka, kb);
        assert_eq!(
            ka.arguments,
            r#"{"a":"s","b":{"x":[1,{"p":3,"q":2}],"y":1}}"#
        );
        // Array order matters; so do the values and the client.
        let kc = Key::new("g", "t", Some(&obj(json!({"a": [2, 1]}))), None);
        let kd = Key::new("g", "t", Some(&obj(json!({"a": [1, 2]}))), None);
        assert_ne!(kc, kd);
        let ke = Key::new("g", "t", None, Some(Arc::from("alice")));
        let kf = Key::new("g", "t", Some(&JsonObject::new()), Some(Arc::from("bob")));
        assert_ne!(ke, kf);
        assert_eq!(ke.arguments, kf.arguments);
    }

    #[test]
    fn a_manifest_cache_block_is_off_or_rules() {
        use crate::manifest::{CacheOff, CacheRules};
        let off: CacheHint = serde_json::from_value(json!("off")).unwrap();
        assert_eq!(off, CacheHint::Off(CacheOff::Off));
        let rules: CacheHint = serde_json::from_value(
            json!({"ttlMs": 5000, "scope": "per_client", "invalidates": ["asana_get_task"]}),
        )
        .unwrap();
        assert_eq!(
            rules,
            CacheHint::Rules(CacheRules {
                ttl_ms: Some(5000),
                scope: Some(CacheScope::PerClient),
                invalidates: vec!["asana_get_task".into()],
            })
        );
        assert!(serde_json::from_value::<CacheHint>(json!("on")).is_err());
        assert!(serde_json::from_value::<CacheHint>(json!({"ttl": 5})).is_err());
    }

    #[test]
    fn keys_escape_what_they_quote() {
        let k = Key::new("g", "t", Some(&obj(json!({"a\"b": "c\"d"}))), None);
        assert_eq!(k.arguments, r#"{"a\"b":"c\"d"}"#);
    }
}
