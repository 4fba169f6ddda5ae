//! `mcpvisor serve`: wires the engine to the HTTP server and runs both.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use mcpvisor_actors::cache::ResultCache;
use mcpvisor_actors::homes::{Homes, Unstarted};
use mcpvisor_actors::metrics::Metrics;
use mcpvisor_actors::process;
use mcpvisor_actors::supervisor::StopAll;
use mcpvisor_actors::{Directory, HealthMonitor, Router, Supervisor};

use crate::auth::Authenticator;
use crate::config::Config;
use crate::http::guard::Guard;
use crate::http::{self, AppState, Engine};
use crate::reload::Reloader;

/// Runs the daemon until it is told to stop (Ctrl-C / SIGTERM).
/// Client authentication as configured, and the rule for who may listen
/// where: beyond loopback, clients must authenticate unless
/// `auth.allow_anonymous` says otherwise.
fn guard(config: &Config) -> anyhow::Result<Guard> {
    let mut auth = config.auth.clone();
    if let Some(o) = auth.oauth.as_mut()
        && let Some(file) = o.jwks_file.as_mut()
        && file.is_relative()
    {
        let base = config.source.parent().unwrap_or(Path::new("."));
        *file = base.join(&*file);
    }
    let authenticator = Authenticator::new(
        &auth,
        &config.server.admin_token,
        Some(config.server.client_token.as_str()),
    );
    let loopback = config.server.listen.ip().is_loopback();
    match (authenticator.required(), loopback, auth.allow_anonymous) {
        (true, _, _) => tracing::info!(
            oauth = auth.oauth.is_some(),
            clients = auth.clients.len(),
            "client authentication on: every call and read needs a bearer token"
        ),
        (false, true, _) => tracing::info!(
            "no client authentication configured: clients on this machine need no token"
        ),
        (false, false, true) => tracing::warn!(
            listen = %config.server.listen,
            "listening beyond loopback without client authentication (auth.allow_anonymous): \
             anyone who reaches this address can run tools"
        ),
        (false, false, false) => anyhow::bail!(
            "refusing to listen on {} without client authentication: configure \
             [[auth.clients]], [auth.oauth] or MCPVISOR_CLIENT_TOKEN, or set \
             auth.allow_anonymous = true to accept anyone",
            config.server.listen
        ),
    }
    Ok(Guard::new(authenticator, auth.limits.clone()))
}

/// Runs the daemon on `config`, loaded from `source` (`None`: the embedded
/// default) with `serve --listen` as `listen`; both are kept for reloads.
pub async fn run(
    config: Config,
    source: Option<std::path::PathBuf>,
    listen: Option<std::net::SocketAddr>,
) -> anyhow::Result<()> {
    // Launched servers run under this executable's warden, so none outlives us.
    if let Ok(exe) = std::env::current_exe() {
        process::use_warden(exe);
    }
    let registry = Arc::new(config.registry()?);
    let directory = Arc::new(Directory::with_quarantine(
        config.services.clone(),
        config.router.quarantine.clone(),
    ));
    let metrics = Arc::new(Metrics::new());
    // The engine's actors start once the HTTP workers they live on exist
    // (see `mcpvisor_actors::homes`); their addresses are known before.
    let unstarted_monitor = Unstarted::<HealthMonitor>::default();
    let unstarted_supervisor = Unstarted::<Supervisor>::default();
    let monitor = unstarted_monitor.addr();
    let supervisor = unstarted_supervisor.addr();
    let make_monitor = {
        let (directory, alerts) = (directory.clone(), config.alerts.clone());
        move || HealthMonitor::new(directory, alerts)
    };
    let make_supervisor = {
        let (directory, registry, monitor, metrics) = (
            directory.clone(),
            registry.clone(),
            monitor.clone(),
            metrics.clone(),
        );
        move |homes| Supervisor::new(directory, registry, monitor, metrics).with_homes(homes)
    };
    let router = Router::new(
        registry.clone(),
        directory.clone(),
        config.router_config(),
        metrics.clone(),
        Arc::new(ResultCache::new(config.cache.clone(), metrics.clone())),
    );
    let guard = guard(&config)?;
    let reloader = Arc::new(Reloader::new(
        config.clone(),
        source,
        listen,
        supervisor.clone(),
        monitor.clone(),
    ));
    reload_on_hangup(reloader.clone())?;
    let _watcher = crate::reload::watch(reloader.clone(), &config)?;
    let directory_for_drain = directory.clone();
    let engine = Engine {
        router,
        supervisor: supervisor.clone(),
        reloader,
        monitor,
        metrics,
        registry: registry.clone(),
        directory,
    };
    let state = AppState::new(engine, config.server.clone(), guard);
    let homes = Homes::default();
    let (server, addr, workers) = http::bind(state, homes.clone())?;
    let server_handle = server.handle();
    let mut serving = actix_web::rt::spawn(server);
    let homes = homes.wait_for(workers, Duration::from_secs(10)).await;
    let engine_home = homes[0].clone();
    unstarted_monitor.start_in(&engine_home, make_monitor);
    unstarted_supervisor.start_in(&engine_home, move || make_supervisor(homes));
    tracing::info!(%addr, services = config.services.len(), tools = registry.snapshot().len(), "mcpvisor serving");
    // One line on stdout that scripts and tests can wait for.
    println!("mcpvisor listening on http://{addr}");
    // The services stop before the HTTP workers they run on: first no new
    // connections, then a moment for calls in flight, then the services
    // (their process groups ended), then the workers.
    tokio::select! {
        ended = &mut serving => {
            return match ended {
                Ok(result) => result.map_err(Into::into),
                Err(e) => Err(anyhow::anyhow!("the HTTP server stopped: {e}")),
            };
        }
        signal = stop_signal() => tracing::info!(signal, "shutting down"),
    }
    server_handle.pause().await;
    drain(&directory_for_drain, DRAIN).await;
    tracing::info!("shutting down services");
    let _ = supervisor.send(StopAll).await;
    // Each service ends its process group: SIGTERM, SIGKILL after its grace.
    let grace = config
        .services
        .iter()
        .map(|s| s.limits.stop_grace())
        .max()
        .unwrap_or_default();
    let left = process::wait_all_gone(grace + Duration::from_secs(2)).await;
    if left > 0 {
        tracing::warn!(groups = left, "upstream processes still running at exit");
    }
    server_handle.stop(false).await;
    let _ = serving.await;
    Ok(())
}

/// How long a shutdown waits for calls in flight.
const DRAIN: Duration = Duration::from_secs(5);

/// Resolves on SIGINT or SIGTERM, with the signal's name.
async fn stop_signal() -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::warn!(
            "cannot watch SIGTERM / SIGINT; only the HTTP server's end stops the daemon"
        );
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    }
}

/// Waits (at most `patience`) until no call is in flight or queued.
async fn drain(directory: &Directory, patience: Duration) {
    let deadline = tokio::time::Instant::now() + patience;
    let busy = || {
        directory
            .all()
            .iter()
            .map(|h| {
                let s = h.snapshot();
                s.in_flight + s.queued
            })
            .sum::<usize>()
    };
    while busy() > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `SIGHUP` reloads the configuration (instead of ending the daemon).
fn reload_on_hangup(reloader: Arc<Reloader>) -> std::io::Result<()> {
    let mut hangups = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
    actix_web::rt::spawn(async move {
        while hangups.recv().await.is_some() {
            // The outcome is logged and alerted by the reloader.
            let _ = reloader.reload("SIGHUP").await;
        }
    });
    Ok(())
}
