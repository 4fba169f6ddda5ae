//! Configuration reload while running (`SIGHUP`, `POST /api/reload`, a
//! watched file changing): the file is read and checked again; if it is
//! valid, the supervisor is handed its services, which it starts, stops or
//! restarts where they differ — services left unchanged, and the calls and
//! streams they serve, are not touched. A file that does not load is
//! refused with its file, line and field, and the running configuration
//! stays. Either outcome is logged and recorded in the alert book.
//!
//! Only services are reloaded: the other sections (`[server]`, `[auth]`,
//! `[router]`, `[cache]`, `[retry]`, `[alerts]`) are read at start-up; a
//! reload that changes them says so and leaves them as they were.

use std::net::SocketAddr;
use std::path::PathBuf;

use actix::Addr;
use mcpvisor_actors::health::{ConfigNotice, HealthMonitor};
use mcpvisor_actors::supervisor::{Reload, ReloadOutcome, Supervisor};
use serde::Serialize;
use serde_json::Value;

use crate::config::{Config, ConfigError};

/// What a refused or failed reload says.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The new file does not load; the running configuration stays.
    #[error("configuration reload refused: {0}")]
    Invalid(#[from] ConfigError),
    /// The engine did not take the new services (it is shutting down).
    #[error("configuration reload not applied: {0}")]
    Engine(String),
}

/// The outcome of a reload that was applied.
#[derive(Debug, Clone, Serialize)]
pub struct Applied {
    #[serde(flatten)]
    pub services: ReloadOutcome,
    /// Sections that changed in the file but keep their running values
    /// until a restart.
    #[serde(rename = "needsRestart")]
    pub needs_restart: Vec<&'static str>,
}

/// Reloads one daemon's configuration, one reload at a time.
pub struct Reloader {
    /// The file, or `None` for the embedded default.
    source: Option<PathBuf>,
    /// `serve --listen`, which outranks the file.
    listen: Option<SocketAddr>,
    supervisor: Addr<Supervisor>,
    monitor: Addr<HealthMonitor>,
    /// The configuration running now.
    current: tokio::sync::Mutex<Config>,
}

impl Reloader {
    pub fn new(
        config: Config,
        source: Option<PathBuf>,
        listen: Option<SocketAddr>,
        supervisor: Addr<Supervisor>,
        monitor: Addr<HealthMonitor>,
    ) -> Self {
        Self {
            source,
            listen,
            supervisor,
            monitor,
            current: tokio::sync::Mutex::new(config),
        }
    }

    /// Reads the file again and applies its services. `trigger` names what
    /// asked (for the log).
    pub async fn reload(&self, trigger: &str) -> Result<Applied, ReloadError> {
        let mut current = self.current.lock().await;
        let loaded = self.load();
        let (config, services) = match loaded {
            Ok(v) => v,
            Err(e) => {
                let e = ReloadError::Invalid(e);
                tracing::error!(trigger, error = %e, "the running configuration stays");
                self.monitor.do_send(ConfigNotice::Refused(e.to_string()));
                return Err(e);
            }
        };
        let needs_restart = changed_sections(&current, &config);
        let outcome = self
            .supervisor
            .send(Reload { services })
            .await
            .map_err(|e| ReloadError::Engine(e.to_string()))?;
        for section in &needs_restart {
            tracing::warn!(
                trigger,
                section,
                "changed in the file; takes effect at the next restart"
            );
        }
        tracing::info!(
            trigger,
            added = ?outcome.added,
            removed = ?outcome.removed,
            restarted = ?outcome.restarted,
            unchanged = outcome.unchanged.len(),
            "configuration reloaded"
        );
        self.monitor.do_send(ConfigNotice::Applied(format!(
            "configuration reloaded ({trigger}): {outcome}"
        )));
        *current = config;
        Ok(Applied {
            services: outcome,
            needs_restart,
        })
    }

    #[allow(clippy::type_complexity)]
    fn load(
        &self,
    ) -> Result<
        (
            Config,
            Vec<(
                mcpvisor_actors::spec::ServiceSpec,
                Option<mcpvisor_actors::manifest::Manifest>,
            )>,
        ),
        ConfigError,
    > {
        let mut config = Config::load(self.source.as_deref())?;
        if let Some(listen) = self.listen {
            config.server.listen = listen;
        }
        // The naming policy's checks, as at start-up.
        config.registry()?;
        let services = config
            .services
            .iter()
            .map(|s| Ok((s.clone(), config.manifest_for(s)?)))
            .collect::<Result<Vec<_>, ConfigError>>()?;
        Ok((config, services))
    }
}

/// Sections other than `[[services]]` that differ between two configs.
fn changed_sections(old: &Config, new: &Config) -> Vec<&'static str> {
    fn value(v: &impl Serialize) -> Value {
        serde_json::to_value(v).unwrap_or(Value::Null)
    }
    let mut changed = Vec::new();
    let pairs: [(&'static str, Value, Value); 7] = [
        ("server", value(&old.server), value(&new.server)),
        ("telemetry", value(&old.telemetry), value(&new.telemetry)),
        ("auth", value(&old.auth), value(&new.auth)),
        ("router", value(&old.router), value(&new.router)),
        ("cache", value(&old.cache), value(&new.cache)),
        ("retry", value(&old.retry), value(&new.retry)),
        ("alerts", value(&old.alerts), value(&new.alerts)),
    ];
    for (name, a, b) in pairs {
        if a != b {
            changed.push(name);
        }
    }
    changed
}

/// How long the watched files must be quiet before a reload: editors and
/// `cp` write a file in several steps.
const SETTLE: std::time::Duration = std::time::Duration::from_millis(300);

/// Watches `config`'s discovery sources (its fragment directory and server
/// lists) and reloads when one is added, changed or removed. Nothing is
/// watched when `[discovery] watch = false` or there is nothing to watch;
/// the watch lasts as long as the returned watcher.
pub fn watch(
    reloader: std::sync::Arc<Reloader>,
    config: &Config,
) -> notify::Result<Option<notify::RecommendedWatcher>> {
    use notify::Watcher as _;
    let d = &config.discovery;
    let base = config
        .source
        .parent()
        .map_or_else(|| PathBuf::from("."), std::path::Path::to_owned);
    let dir = d.dir(&base);
    let files = d.files(&base);
    if !d.watch || (dir.is_none() && files.is_empty()) {
        return Ok(None);
    }
    // Directories are watched (a file that does not exist yet, or is
    // replaced by a rename, has no inode to watch); events are filtered.
    let mut roots: Vec<PathBuf> = Vec::new();
    for p in dir
        .iter()
        .cloned()
        .chain(files.iter().filter_map(|f| f.parent().map(Into::into)))
    {
        let root = if p.is_dir() {
            p
        } else {
            match p.parent() {
                Some(parent) if parent.is_dir() => parent.to_owned(),
                _ => continue,
            }
        };
        if !roots.contains(&root) {
            roots.push(root);
        }
    }
    let relevant = move |path: &std::path::Path| {
        dir.as_deref()
            .is_some_and(|d| path.starts_with(d) || path == d)
            || files.iter().any(|f| f == path)
    };
    let (tx, mut rx) = tokio::sync::mpsc::channel::<PathBuf>(64);
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        let Ok(event) = event else { return };
        if event.kind.is_access() {
            return;
        }
        for path in event.paths.into_iter().filter(|p| relevant(p)) {
            // A full queue already means a reload is coming.
            let _ = tx.try_send(path);
        }
    })?;
    for root in &roots {
        watcher.watch(root, notify::RecursiveMode::NonRecursive)?;
        tracing::info!(dir = %root.display(), "watching for service changes");
    }
    actix_web::rt::spawn(async move {
        while let Some(first) = rx.recv().await {
            let mut changed = vec![first];
            while let Ok(Some(p)) = tokio::time::timeout(SETTLE, rx.recv()).await {
                if !changed.contains(&p) {
                    changed.push(p);
                }
            }
            let files: Vec<String> = changed.iter().map(|p| p.display().to_string()).collect();
            tracing::info!(files = ?files, "discovered services changed");
            let _ = reloader.reload("discovery").await;
        }
    });
    Ok(Some(watcher))
}
