//! Sessions of 2025/2024-era MCP clients (`Mcp-Session-Id`).
//!
//! 2026-07-28 clients need none of this. For older clients a session
//! remembers the negotiated version, the client's capabilities, the calls
//! in flight (so `notifications/cancelled` can stop one), and the requests
//! sent to the client on an upstream's behalf (sampling, elicitation) until
//! the client answers them. Sessions are bounded in number
//! and forgotten after an idle period.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use std::collections::HashMap;

use dashmap::DashMap;
use mcpvisor_actors::passthrough::ResourceWatch;
use mcpvisor_actors::stream::AskError;
use serde_json::Value;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

/// One legacy session.
#[derive(Debug)]
pub struct Session {
    /// Negotiated protocol revision.
    pub version: String,
    /// The client that opened it: only that client may use it.
    owner: Arc<str>,
    /// What the client declared it can do (sampling, elicitation, ...).
    pub client_capabilities: Value,
    created: Instant,
    last_seen_ms: AtomicU64,
    in_flight: Keyed<CancellationToken>,
    /// Requests sent to the client on behalf of an upstream, by JSON-RPC id.
    asks: Keyed<oneshot::Sender<Result<Value, AskError>>>,
    next_ask: AtomicU64,
    /// Resources the client subscribed to, by URI; ended with the session.
    watches: Keyed<ResourceWatch>,
    /// The lowest log level the client wants (`logging/setLevel`).
    log_level: std::sync::Mutex<Option<String>>,
}

impl Session {
    fn touch(&self) {
        self.last_seen_ms
            .store(self.created.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    fn idle_for(&self) -> Duration {
        let last = Duration::from_millis(self.last_seen_ms.load(Ordering::Relaxed));
        self.created.elapsed().saturating_sub(last)
    }

    /// Registers a call so a later `notifications/cancelled` can stop it.
    pub fn track(self: &Arc<Self>, request_id: String) -> TrackedCall {
        let token = CancellationToken::new();
        self.in_flight.insert(request_id.clone(), token.clone());
        TrackedCall {
            session: self.clone(),
            request_id,
            token,
        }
    }

    /// Registers a request to the client; returns the JSON-RPC id to send
    /// it with.
    pub fn expect_answer(&self, reply: oneshot::Sender<Result<Value, AskError>>) -> String {
        let id = format!(
            "mcpvisor-{}",
            self.next_ask.fetch_add(1, Ordering::Relaxed) + 1
        );
        self.asks.insert(id.clone(), reply);
        id
    }

    /// Delivers the client's response to a request sent with
    /// [`Session::expect_answer`]; false if nothing waits for that id.
    pub fn answer(&self, id: &str, outcome: Result<Value, AskError>) -> bool {
        match self.asks.remove(id) {
            Some(reply) => reply.send(outcome).is_ok(),
            None => false,
        }
    }

    /// Sets the lowest log level the client wants to hear.
    pub fn set_log_level(&self, level: String) {
        *self.log_level.lock().unwrap_or_else(|p| p.into_inner()) = Some(level);
    }

    /// The lowest log level the client wants, if it said.
    pub fn log_level(&self) -> Option<String> {
        self.log_level
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Ends everything the session holds: its resource subscriptions and the
    /// requests it was asked on an upstream's behalf.
    pub fn close(&self) {
        drop(self.watches.take());
        drop(self.asks.take());
    }

    /// Keeps a resource subscription for the session's life (or until
    /// `unwatch`).
    pub fn add_watch(&self, watch: ResourceWatch) {
        self.watches.insert(watch.uri().to_owned(), watch);
    }

    /// Ends a resource subscription; false if there was none.
    pub fn unwatch(&self, uri: &str) -> bool {
        self.watches.remove(uri).is_some()
    }

    /// Whether the session watches `uri` on `service`.
    pub fn watching(&self, service: &str, uri: &str) -> bool {
        self.watches
            .with(uri, |w| w.is_some_and(|w| w.service() == service))
    }

    /// Whether the session watches `uri` at all.
    pub fn watches(&self, uri: &str) -> bool {
        self.watches.with(uri, |w| w.is_some())
    }

    /// Drops a request the client never answered.
    pub fn forget(&self, id: &str) {
        self.asks.remove(id);
    }

    /// Cancels a call by its JSON-RPC id; false if it is not running.
    pub fn cancel(&self, request_id: &str) -> bool {
        match self.in_flight.remove(request_id) {
            Some(token) => {
                token.cancel();
                true
            }
            None => false,
        }
    }
}

/// A small table of one session's things by id. Sessions are many (10,000
/// idle ones must stay cheap) and each table is touched by one client's
/// requests: a mutex over a map that allocates only when used, not a sharded
/// concurrent map per table.
#[derive(Debug)]
struct Keyed<V>(std::sync::Mutex<HashMap<String, V>>);

impl<V> Default for Keyed<V> {
    fn default() -> Self {
        Self(std::sync::Mutex::new(HashMap::new()))
    }
}

impl<V> Keyed<V> {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, V>> {
        // Every change is one insert or remove: nothing half-done to fear.
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
    fn insert(&self, key: String, value: V) {
        self.lock().insert(key, value);
    }
    fn remove(&self, key: &str) -> Option<V> {
        self.lock().remove(key)
    }
    fn with<R>(&self, key: &str, f: impl FnOnce(Option<&V>) -> R) -> R {
        f(self.lock().get(key))
    }
    /// Everything, leaving the table empty (dropped outside the lock).
    fn take(&self) -> HashMap<String, V> {
        std::mem::take(&mut *self.lock())
    }
}

/// A call in flight within a session; unregisters itself when dropped.
pub struct TrackedCall {
    session: Arc<Session>,
    request_id: String,
    /// Cancelled by `notifications/cancelled`.
    pub token: CancellationToken,
}

impl Drop for TrackedCall {
    fn drop(&mut self) {
        self.session.in_flight.remove(&self.request_id);
    }
}

/// All legacy sessions.
#[derive(Debug)]
pub struct Sessions {
    map: DashMap<String, Arc<Session>>,
    idle: Duration,
    max: usize,
}

/// Why a session could not be created.
#[derive(Debug, thiserror::Error)]
#[error("too many sessions ({0}); try again later")]
pub struct TooManySessions(pub usize);

impl Sessions {
    /// An empty store.
    pub fn new(idle: Duration, max: usize) -> Self {
        Self {
            map: DashMap::new(),
            idle,
            max: max.max(1),
        }
    }

    /// Creates a session and returns its id.
    pub fn create(
        &self,
        version: String,
        client_capabilities: Value,
        owner: Arc<str>,
    ) -> Result<(String, Arc<Session>), TooManySessions> {
        if self.map.len() >= self.max {
            self.expire();
            if self.map.len() >= self.max {
                return Err(TooManySessions(self.max));
            }
        }
        let id = uuid::Uuid::new_v4().simple().to_string();
        let session = Arc::new(Session {
            version,
            owner,
            client_capabilities,
            created: Instant::now(),
            last_seen_ms: AtomicU64::new(0),
            in_flight: Keyed::default(),
            asks: Keyed::default(),
            next_ask: AtomicU64::new(0),
            watches: Keyed::default(),
            log_level: std::sync::Mutex::new(None),
        });
        self.map.insert(id.clone(), session.clone());
        Ok((id, session))
    }

    /// A live session by id.
    /// The session `id` if `client` opened it: a session id that leaked
    /// is worth nothing under another client's token.
    pub fn get_for(&self, id: &str, client: &str) -> Option<Arc<Session>> {
        self.get(id).filter(|s| &*s.owner == client)
    }

    pub fn get(&self, id: &str) -> Option<Arc<Session>> {
        let s = self.map.get(id)?.clone();
        if s.idle_for() > self.idle {
            self.map.remove(id);
            s.close();
            return None;
        }
        s.touch();
        Some(s)
    }

    /// Ends a session; false if there was none.
    pub fn remove(&self, id: &str) -> bool {
        match self.map.remove(id) {
            Some((_, s)) => {
                for token in s.in_flight.take().into_values() {
                    token.cancel();
                }
                s.close();
                true
            }
            None => false,
        }
    }

    /// Number of live sessions.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Forgets idle sessions, ending what they held (resource
    /// subscriptions above all: those keep upstream subscriptions open).
    pub fn expire(&self) {
        self.map.retain(|_, s| {
            let keep = s.idle_for() <= self.idle;
            if !keep {
                s.close();
            }
            keep
        });
    }

    /// Expires idle sessions every so often, for as long as `sessions`
    /// lives, so that a client that just went away does not keep them.
    pub fn sweep(sessions: &Arc<Self>) {
        let weak = Arc::downgrade(sessions);
        let period = (sessions.idle / 2).clamp(Duration::from_secs(1), Duration::from_secs(60));
        std::thread::Builder::new()
            .name("mcp-session-sweep".into())
            .spawn(move || {
                while let Some(sessions) = {
                    std::thread::sleep(period);
                    weak.upgrade()
                } {
                    sessions.expire();
                }
            })
            .map(|_| ())
            .unwrap_or_else(|e| tracing::warn!(error = %e, "no session sweeper"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_are_bounded_and_removable() {
        let s = Sessions::new(Duration::from_secs(60), 2);
        let (a, _) = s
            .create("2025-11-25".into(), Value::Null, "anonymous".into())
            .unwrap();
        let (_b, _) = s
            .create("2025-06-18".into(), Value::Null, "anonymous".into())
            .unwrap();
        assert!(
            s.create("2025-06-18".into(), Value::Null, "anonymous".into())
                .is_err()
        );
        assert!(s.remove(&a));
        assert!(s.get(&a).is_none());
        assert!(
            s.create("2025-06-18".into(), Value::Null, "anonymous".into())
                .is_ok()
        );
    }

    #[test]
    fn cancel_reaches_tracked_call_and_untracks_on_drop() {
        let s = Sessions::new(Duration::from_secs(60), 8);
        let (_, session) = s
            .create("2025-11-25".into(), Value::Null, "anonymous".into())
            .unwrap();
        let call = session.track("7".into());
        assert!(session.cancel("7"));
        assert!(call.token.is_cancelled());
        let call2 = session.track("8".into());
        drop(call2);
        assert!(!session.cancel("8"));
    }
}
