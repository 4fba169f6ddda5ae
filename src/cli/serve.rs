//! `mcpvisor serve`: wires the engine to the HTTP server and runs both.

use std::sync::Arc;
use std::time::Duration;

use actix::Actor;
use mcpvisor_actors::metrics::Metrics;
use mcpvisor_actors::process;
use mcpvisor_actors::supervisor::StopAll;
use mcpvisor_actors::{Directory, HealthMonitor, Router, Supervisor};

use crate::config::Config;
use crate::http::{self, AppState};

/// Runs the daemon until it is told to stop (Ctrl-C / SIGTERM).
pub async fn run(config: Config) -> anyhow::Result<()> {
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
    let monitor = HealthMonitor::new(directory.clone(), config.alerts.clone()).start();
    let supervisor = Supervisor::new(
        directory.clone(),
        registry.clone(),
        monitor.clone(),
        metrics.clone(),
    )
    .start();
    let router = Router::new(
        registry.clone(),
        directory.clone(),
        config.router_config(),
        metrics.clone(),
    )
    .start();
    let state = AppState::new(
        router,
        supervisor.clone(),
        monitor,
        metrics,
        registry.clone(),
        directory,
        config.server.clone(),
    );
    let (server, addr) = http::bind(state)?;
    tracing::info!(%addr, services = config.services.len(), tools = registry.snapshot().len(), "mcpvisor serving");
    // One line on stdout that scripts and tests can wait for.
    println!("mcpvisor listening on http://{addr}");
    server.await?;
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
    Ok(())
}
