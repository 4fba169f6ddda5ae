//! Alerts: raised on a transition, resolved by the recovery that undoes it.
//!
//! Each alert has a key (`unhealthy:asana-http`, `group_down:asana`); at
//! most one alert per key is active. Raising an active key again only
//! updates its message (and severity, if higher); resolving closes it and
//! records how long it lasted. Closed alerts stay in a bounded history.

use std::collections::VecDeque;

use serde::Serialize;

/// How bad it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Worth knowing.
    Info,
    /// Something is slow or flapping.
    Warning,
    /// A service is down; replicas are covering for it.
    Error,
    /// Callers are affected: no replica can serve, or a service gave up.
    Critical,
}

/// One alert.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Alert {
    /// Unique id, increasing.
    pub id: u64,
    /// What it is about; one active alert per key.
    pub key: String,
    pub severity: Severity,
    /// The service (replica) concerned, if one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// The logical service concerned.
    pub group: String,
    pub message: String,
    /// Unix ms.
    pub raised_at_ms: u64,
    /// Unix ms; `None` while active.
    pub resolved_at_ms: Option<u64>,
    /// How long it was (or has been) active.
    pub duration_ms: u64,
    pub active: bool,
}

/// A change the alert book made, for sinks such as the webhook.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum AlertEvent {
    /// A new alert.
    Raised(Alert),
    /// An alert closed.
    Resolved(Alert),
}

/// Active alerts and a bounded history of closed ones.
#[derive(Debug)]
pub struct AlertBook {
    active: Vec<Alert>,
    closed: VecDeque<Alert>,
    capacity: usize,
    next_id: u64,
}

/// What an alert is raised with.
#[derive(Debug, Clone)]
pub struct Raise<'a> {
    pub key: String,
    pub severity: Severity,
    pub service: Option<&'a str>,
    pub group: &'a str,
    pub message: String,
}

impl AlertBook {
    /// An empty book keeping `capacity` closed alerts.
    pub fn new(capacity: usize) -> Self {
        Self {
            active: Vec::new(),
            closed: VecDeque::new(),
            capacity: capacity.max(1),
            next_id: 1,
        }
    }

    /// Raises (or refreshes) the alert for `r.key`; returns the event when
    /// the alert is new.
    pub fn raise(&mut self, r: Raise<'_>, now_ms: u64) -> Option<AlertEvent> {
        if let Some(a) = self.active.iter_mut().find(|a| a.key == r.key) {
            a.message = r.message;
            a.severity = a.severity.max(r.severity);
            return None;
        }
        let alert = Alert {
            id: self.next_id,
            key: r.key,
            severity: r.severity,
            service: r.service.map(str::to_owned),
            group: r.group.to_owned(),
            message: r.message,
            raised_at_ms: now_ms,
            resolved_at_ms: None,
            duration_ms: 0,
            active: true,
        };
        self.next_id += 1;
        self.active.push(alert.clone());
        Some(AlertEvent::Raised(alert))
    }

    /// Resolves the alert for `key`, if active.
    pub fn resolve(&mut self, key: &str, now_ms: u64) -> Option<AlertEvent> {
        let i = self.active.iter().position(|a| a.key == key)?;
        let mut a = self.active.remove(i);
        a.active = false;
        a.resolved_at_ms = Some(now_ms);
        a.duration_ms = now_ms.saturating_sub(a.raised_at_ms);
        if self.closed.len() == self.capacity {
            self.closed.pop_front();
        }
        self.closed.push_back(a.clone());
        Some(AlertEvent::Resolved(a))
    }

    /// Whether `key` is active.
    pub fn is_active(&self, key: &str) -> bool {
        self.active.iter().any(|a| a.key == key)
    }

    /// Active alerts (durations up to `now_ms`), most severe first.
    pub fn active(&self, now_ms: u64) -> Vec<Alert> {
        let mut v: Vec<Alert> = self
            .active
            .iter()
            .cloned()
            .map(|mut a| {
                a.duration_ms = now_ms.saturating_sub(a.raised_at_ms);
                a
            })
            .collect();
        v.sort_by(|a, b| b.severity.cmp(&a.severity).then(a.id.cmp(&b.id)));
        v
    }

    /// Every alert, newest first: active ones, then the closed history.
    pub fn all(&self, now_ms: u64) -> Vec<Alert> {
        let mut v = self.active(now_ms);
        v.extend(self.closed.iter().rev().cloned());
        v.sort_by_key(|a| std::cmp::Reverse(a.id));
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raise(book: &mut AlertBook, key: &str, severity: Severity, now: u64) -> Option<AlertEvent> {
        book.raise(
            Raise {
                key: key.into(),
                severity,
                service: Some("s"),
                group: "g",
                message: format!("{key} happened"),
            },
            now,
        )
    }

    #[test]
    fn raise_is_idempotent_per_key_and_resolve_records_duration() {
        let mut b = AlertBook::new(10);
        assert!(raise(&mut b, "unhealthy:s", Severity::Error, 1_000).is_some());
        assert!(raise(&mut b, "unhealthy:s", Severity::Error, 2_000).is_none());
        assert_eq!(b.active(3_000)[0].duration_ms, 2_000);
        let Some(AlertEvent::Resolved(a)) = b.resolve("unhealthy:s", 4_500) else {
            panic!("expected a resolution");
        };
        assert_eq!((a.duration_ms, a.active), (3_500, false));
        assert!(b.resolve("unhealthy:s", 5_000).is_none());
        assert!(b.active(5_000).is_empty());
        assert_eq!(b.all(5_000).len(), 1);
    }

    #[test]
    fn history_is_bounded_and_active_sorted_by_severity() {
        let mut b = AlertBook::new(2);
        for i in 0..5 {
            raise(&mut b, &format!("k{i}"), Severity::Warning, i);
            b.resolve(&format!("k{i}"), i + 1);
        }
        assert_eq!(b.all(10).len(), 2);
        raise(&mut b, "a", Severity::Warning, 20);
        raise(&mut b, "b", Severity::Critical, 21);
        let active = b.active(30);
        assert_eq!(active[0].key, "b");
        assert_eq!(active[1].key, "a");
    }
}
