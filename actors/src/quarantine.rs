//! Poison calls: a call that crashes its upstream is not sent again and
//! again until the service is marked failed.
//!
//! A call is known by its fingerprint — the tool and its arguments in
//! canonical form, so key order and whitespace do not matter. When an
//! upstream process dies by itself (not killed by a signal mcpvisor or an
//! operator sends) every call in flight becomes a *suspect* of its logical
//! service. A suspect is sent next *alone*: its replica holds other calls
//! back until it has answered. If the upstream dies again while a suspect
//! is the only call in flight — or any crash happens with a single call in
//! flight that was already a suspect — that call crashed two instances:
//! it is quarantined for `duration`, refused with the `quarantined`
//! category before anything is sent, and the crash it caused does not count
//! towards the restart intensity (the service is not at fault). A suspect
//! that answers is cleared.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A call's identity: tool and canonical arguments.
pub type Fingerprint = u64;

/// The fingerprint of `tool` called with `arguments`: object keys are
/// taken in sorted order, so `{"a":1,"b":2}` and `{"b":2, "a":1}` agree.
pub fn fingerprint(tool: &str, arguments: Option<&serde_json::Map<String, Value>>) -> Fingerprint {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    tool.hash(&mut h);
    match arguments {
        Some(map) => hash_object(map, &mut h),
        None => hash_object(&serde_json::Map::new(), &mut h),
    }
    h.finish()
}

fn hash_value(v: &Value, h: &mut impl Hasher) {
    match v {
        Value::Null => 0u8.hash(h),
        Value::Bool(b) => (1u8, b).hash(h),
        Value::Number(n) => (2u8, n.to_string()).hash(h),
        Value::String(s) => (3u8, s).hash(h),
        Value::Array(a) => {
            (4u8, a.len()).hash(h);
            for x in a {
                hash_value(x, h);
            }
        }
        Value::Object(o) => hash_object(o, h),
    }
}

fn hash_object(o: &serde_json::Map<String, Value>, h: &mut impl Hasher) {
    let mut keys: Vec<&String> = o.keys().collect();
    keys.sort_unstable();
    (5u8, keys.len()).hash(h);
    for k in keys {
        k.hash(h);
        hash_value(&o[k], h);
    }
}

/// The `[router.quarantine]` settings.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct QuarantineConfig {
    /// How long a poison call is refused.
    pub duration_ms: u64,
    /// How long a call stays a suspect after a crash.
    pub suspect_ms: u64,
}

impl Default for QuarantineConfig {
    fn default() -> Self {
        Self {
            duration_ms: 300_000,
            suspect_ms: 600_000,
        }
    }
}

/// A quarantined call, as reported.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Quarantined {
    pub group: String,
    pub tool: String,
    pub remaining_ms: u64,
}

#[derive(Debug)]
struct Entry {
    tool: String,
    /// Suspect since (a crash with it in flight).
    suspect_at: Option<Instant>,
    /// Refused until.
    until: Option<Instant>,
}

/// Suspects and quarantined calls of every logical service.
#[derive(Debug, Default)]
pub struct Quarantine {
    config: QuarantineConfig,
    entries: Mutex<HashMap<(String, Fingerprint), Entry>>,
    /// Entries there are: a call looks at the table only when some are.
    count: std::sync::atomic::AtomicUsize,
}

impl Quarantine {
    /// An empty quarantine with the given settings.
    pub fn new(config: QuarantineConfig) -> Self {
        Self {
            config,
            entries: Mutex::default(),
            count: std::sync::atomic::AtomicUsize::new(0),
        }
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, HashMap<(String, Fingerprint), Entry>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether there is nothing to look up (the common case).
    fn empty(&self) -> bool {
        self.count.load(std::sync::atomic::Ordering::Acquire) == 0
    }

    fn recount(&self, entries: &HashMap<(String, Fingerprint), Entry>) {
        self.count
            .store(entries.len(), std::sync::atomic::Ordering::Release);
    }

    /// How much longer the call is refused, if it is quarantined.
    pub fn refused_for(&self, group: &str, fp: Fingerprint) -> Option<Duration> {
        if self.empty() {
            return None;
        }
        let now = Instant::now();
        let entries = self.entries();
        entries
            .get(&(group.to_owned(), fp))
            .and_then(|e| e.until)
            .and_then(|until| until.checked_duration_since(now))
    }

    /// Whether the call is a suspect (it must be sent alone).
    pub fn is_suspect(&self, group: &str, fp: Fingerprint) -> bool {
        if self.empty() {
            return false;
        }
        let ttl = Duration::from_millis(self.config.suspect_ms);
        self.entries()
            .get(&(group.to_owned(), fp))
            .and_then(|e| e.suspect_at)
            .is_some_and(|at| at.elapsed() < ttl)
    }

    /// An upstream of `group` died by itself with these calls in flight.
    /// Returns the tools of calls quarantined by it: when any, the crash
    /// was the call's doing, not the service's.
    pub fn crashed(&self, group: &str, in_flight: &[(Fingerprint, String)]) -> Vec<String> {
        let now = Instant::now();
        let ttl = Duration::from_millis(self.config.suspect_ms);
        let duration = Duration::from_millis(self.config.duration_ms);
        let mut entries = self.entries();
        entries.retain(|_, e| {
            e.until.is_some_and(|u| u > now) || e.suspect_at.is_some_and(|at| at.elapsed() < ttl)
        });
        let alone = in_flight.len() == 1;
        let mut quarantined = Vec::new();
        for (fp, tool) in in_flight {
            let e = entries.entry((group.to_owned(), *fp)).or_insert(Entry {
                tool: tool.clone(),
                suspect_at: None,
                until: None,
            });
            if alone && e.suspect_at.is_some() {
                e.until = Some(now + duration);
                e.suspect_at = None;
                quarantined.push(tool.clone());
            } else if e.until.is_none() {
                e.suspect_at = Some(now);
            }
        }
        self.recount(&entries);
        quarantined
    }

    /// A suspect answered: it is no poison.
    pub fn cleared(&self, group: &str, fp: Fingerprint) {
        if self.empty() {
            return;
        }
        let mut entries = self.entries();
        if entries
            .get(&(group.to_owned(), fp))
            .is_some_and(|e| e.until.is_none())
        {
            entries.remove(&(group.to_owned(), fp));
        }
        self.recount(&entries);
    }

    /// Lifts every quarantine and suspicion of `group` (a poison drill
    /// leaves nothing behind).
    pub fn release_group(&self, group: &str) {
        let mut entries = self.entries();
        entries.retain(|(g, _), _| g != group);
        self.recount(&entries);
    }

    /// Every call refused now.
    pub fn list(&self) -> Vec<Quarantined> {
        let now = Instant::now();
        self.entries()
            .iter()
            .filter_map(|((group, _), e)| {
                let left = e.until?.checked_duration_since(now)?;
                Some(Quarantined {
                    group: group.clone(),
                    tool: e.tool.clone(),
                    remaining_ms: left.as_millis() as u64,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn args(v: Value) -> serde_json::Map<String, Value> {
        v.as_object().cloned().unwrap()
    }

    #[test]
    fn fingerprints_ignore_key_order_but_not_values() {
        let a = args(json!({"a": 1, "b": {"x": [1, 2], "y": "z"}}));
        let b: serde_json::Map<String, Value> =
            serde_json::from_str(r#"{ "b": {"y":"z", "x":[1,2]}, "a":1 }"#).unwrap();
        assert_eq!(fingerprint("t", Some(&a)), fingerprint("t", Some(&b)));
        let c = args(json!({"a": 2, "b": {"x": [1, 2], "y": "z"}}));
        assert_ne!(fingerprint("t", Some(&a)), fingerprint("t", Some(&c)));
        assert_ne!(fingerprint("t", Some(&a)), fingerprint("u", Some(&a)));
        assert_eq!(
            fingerprint("t", None),
            fingerprint("t", Some(&args(json!({}))))
        );
    }

    #[test]
    fn a_suspect_that_crashes_alone_is_quarantined_and_bystanders_are_not() {
        let q = Quarantine::new(QuarantineConfig::default());
        let (poison, bystander) = ((1, "poison".to_owned()), (2, "read".to_owned()));
        // First crash: both in flight, neither is blamed.
        assert!(
            q.crashed("g", &[poison.clone(), bystander.clone()])
                .is_empty()
        );
        assert!(q.is_suspect("g", 1) && q.is_suspect("g", 2));
        assert_eq!(q.refused_for("g", 1), None);
        // Sent alone, the bystander answers and is cleared.
        q.cleared("g", 2);
        assert!(!q.is_suspect("g", 2));
        // Sent alone, the poison crashes the next instance.
        assert_eq!(q.crashed("g", &[poison]), vec!["poison".to_owned()]);
        assert!(q.refused_for("g", 1).is_some());
        assert_eq!(q.list().len(), 1);
        // Other services are not affected.
        assert_eq!(q.refused_for("other", 1), None);
    }
}
