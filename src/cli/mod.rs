//! Subcommands of the `mcpvisor` binary.

pub mod call;
pub mod drill;
pub mod probe;
pub mod serve;
mod sse;
pub mod status;
pub mod tools;

use std::path::Path;

use crate::config::Config;

/// `mcpvisor import FILE`: the TOML on stdout, what changed on stderr.
pub fn import(file: &Path) -> anyhow::Result<()> {
    let text =
        std::fs::read_to_string(file).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
    let imported = crate::config::import::to_toml(file, &text)?;
    for warning in &imported.warnings {
        eprintln!("warning: {warning}");
    }
    print!("{}", imported.toml);
    Ok(())
}

/// `mcpvisor check-config`: validates and explains a config (which it
/// returns, for `--probe`).
pub fn check_config(file: Option<&Path>) -> anyhow::Result<Config> {
    let config = Config::load(file)?;
    let tools = config.registry()?.snapshot().len();
    println!("{}: ok", config.source.display());
    println!("  listen      {}", config.server.listen);
    println!(
        "  admin API   {}",
        if config.server.admin_token.is_empty() {
            "disabled (no admin_token)"
        } else {
            "enabled"
        }
    );
    let auth = &config.auth;
    let clients = auth.clients.len() + usize::from(!config.server.client_token.is_empty());
    println!(
        "  client auth {}",
        match (clients, &auth.oauth) {
            (0, None) if auth.allow_anonymous =>
                "off (allow_anonymous: anyone who reaches it)".to_owned(),
            (0, None) => "off (loopback clients need no token)".to_owned(),
            (n, None) => format!("{n} token client(s)"),
            (n, Some(o)) => format!("{n} token client(s); OAuth tokens from {}", o.issuer),
        }
    );
    let telemetry = &config.telemetry;
    println!(
        "  telemetry   {}",
        if telemetry.enabled() {
            format!(
                "call spans over OTLP/HTTP to {} (service.name {}, {} header(s))",
                mcpvisor_actors::secrets::redact_url(&telemetry.traces_url()),
                telemetry.service_name,
                telemetry.headers.len()
            )
        } else {
            "off".to_owned()
        }
    );
    println!("  services    {}", config.services.len());
    println!(
        "  tools       {tools} (naming: {:?})",
        config.router.tool_names
    );
    for s in &config.services {
        let manifest = config.manifest_for(s)?;
        let url = s.url.as_deref().map(mcpvisor_actors::secrets::redact_url);
        let wire = match (&s.command, &url) {
            (Some(c), Some(u)) => {
                format!("streamable_http {u} (launches `{c} {}`)", s.args.join(" "))
            }
            (None, Some(u)) => format!("streamable_http {u}"),
            (Some(c), None) => format!("stdio `{c} {}`", s.args.join(" ")),
            (None, None) => "?".into(),
        };
        println!(
            "  - {} (group {}, priority {:?}{}): {wire}",
            s.name,
            s.group(),
            s.priority,
            if s.enabled { "" } else { ", disabled" }
        );
        println!(
            "      manifest: {}; health every {} ms (timeout {} ms, restart after {} failures); \
             restarts: {} in {} s, backoff {}..{} ms; in-flight {} (queue {})",
            manifest.map_or_else(|| "none".into(), |m| format!("{} tools", m.tools.len())),
            s.health.interval_ms,
            s.health.timeout_ms,
            s.health.restart_after_failures,
            s.restart.max_restarts,
            s.restart.window_secs,
            s.restart.backoff_initial_ms,
            s.restart.backoff_max_ms,
            s.limits.max_in_flight,
            s.limits.max_queue,
        );
    }
    Ok(config)
}
