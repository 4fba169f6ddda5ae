//! mcpvisor: supervises MCP services and streams their tool calls to HTTP
//! clients. This file is the command line; `serve` is the daemon.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use mcpvisor::{cli, config, sim, telemetry};

#[derive(Debug, Parser)]
#[command(
    name = "mcpvisor",
    version,
    about = "Supervises MCP services and streams their tool calls"
)]
struct Cli {
    /// Log format on stderr: `text` (one line per event), `json` (one JSON
    /// object per line) or `pretty` (multi-line).
    #[arg(
        long,
        global = true,
        value_enum,
        env = "MCPVISOR_LOG_FORMAT",
        default_value_t = LogFormat::Text
    )]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
    Pretty,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the daemon (the default).
    Serve(ServeArgs),
    /// Validate a config file and explain what it sets up.
    CheckConfig {
        /// The file (default: the embedded default config).
        file: Option<PathBuf>,
        /// Also connect to every enabled service (launching those it
        /// launches) and show its live tools and any name conflicts.
        #[arg(long)]
        probe: bool,
    },
    /// List tools, from a running daemon or from a config's manifests.
    Tools(cli::tools::ToolsArgs),
    /// Call a tool through a running daemon, showing progress.
    Call(cli::call::CallArgs),
    /// Show a running daemon's services and active alerts.
    Status(cli::status::StatusArgs),
    /// Run the simulated Asana MCP service.
    Sim(sim::SimOptions),
    /// Connect to an MCP server as a service actor would, and report.
    Probe(cli::probe::ProbeArgs),
    /// Run a restart or failover drill against a running daemon.
    Drill(cli::drill::DrillArgs),
    /// Print the mcpvisor config equivalent to a desktop client's MCP
    /// server list (`mcpServers` of Claude Desktop, Cursor, Windsurf; VS
    /// Code `servers`); `serve --config FILE.json` reads such a file as is.
    Import {
        /// The JSON file.
        file: PathBuf,
    },
}

#[derive(Debug, Default, clap::Args)]
struct ServeArgs {
    /// Config file (default: the embedded config/default.toml).
    #[arg(long, short, env = "MCPVISOR_CONFIG")]
    config: Option<PathBuf>,
    /// Listen address, overriding the config.
    #[arg(long)]
    listen: Option<std::net::SocketAddr>,
}

/// jemalloc: a call allocates and frees dozens of small buffers (request,
/// tables, the upstream's answer), and its thread caches cost less per
/// call than the system allocator, while an idle connection keeps the same
/// resident memory (mimalloc, tried too, cost half as much again per idle
/// SSE stream).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    // The warden of an upstream server's process group: a separate small
    // program that happens to live in this executable.
    let mut args = std::env::args_os().skip(1);
    if args
        .next()
        .is_some_and(|a| a == mcpvisor_actors::process::warden::ARG)
    {
        mcpvisor_actors::process::warden::run(args.collect());
    }
    let cli = Cli::parse();
    if !matches!(
        cli.command,
        None | Some(Command::Serve(_) | Command::Sim(_))
    ) {
        mcpvisor_actors::process::die_on_closed_pipe();
    }
    let command = cli.command.unwrap_or(Command::Serve(ServeArgs::default()));
    let result = match command {
        Command::Serve(args) => serve(args, cli.log_format),
        other => {
            let _ = init_tracing(cli.log_format, None);
            run(other)
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Logs go to stderr (stdout may be an MCP stdio channel); the filter
/// comes from `MCPVISOR_LOG`, then `RUST_LOG`, default `info` (rmcp:
/// `warn`). The HTTP/1 dispatcher's own errors are about malformed client
/// requests and dropped connections — a client's garbage is no error of
/// the daemon's — so they are left out unless asked for. `format` is
/// `--log-format` (`MCPVISOR_LOG_FORMAT`). With a telemetry config that
/// names a collector, call spans go there too, whatever the log level (the
/// returned guard flushes them at exit).
fn init_tracing(
    format: LogFormat,
    telemetry: Option<&telemetry::TelemetryConfig>,
) -> anyhow::Result<Option<telemetry::Telemetry>> {
    use tracing_subscriber::Layer;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let mut filter = std::env::var("MCPVISOR_LOG")
        .or_else(|_| std::env::var("RUST_LOG"))
        .unwrap_or_else(|_| "info,rmcp=warn".into());
    if !filter.contains("actix_http") {
        filter.push_str(",actix_http::h1::dispatcher=off");
    }
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let fmt = match format {
        LogFormat::Text => fmt.with_ansi(ansi).boxed(),
        LogFormat::Json => fmt.json().with_ansi(false).boxed(),
        LogFormat::Pretty => fmt.pretty().with_ansi(ansi).boxed(),
    }
    .with_filter(tracing_subscriber::EnvFilter::new(filter));
    let (guard, otel) = match telemetry.filter(|t| t.enabled()) {
        Some(config) => {
            let (guard, tracer) = telemetry::Telemetry::start(config)?;
            // Call spans (and the events inside them), whatever the log level.
            let layer = tracing_opentelemetry::layer()
                .with_tracer(tracer)
                .with_filter(
                    tracing_subscriber::filter::Targets::new()
                        .with_target("mcpvisor_actors", tracing::Level::INFO)
                        .with_target("mcpvisor", tracing::Level::INFO),
                );
            (Some(guard), Some(layer))
        }
        None => (None, None),
    };
    let _ = tracing_subscriber::registry()
        .with(otel)
        .with(fmt)
        .try_init();
    if let Some(config) = telemetry.filter(|t| t.enabled()) {
        tracing::info!(
            endpoint = %mcpvisor_actors::secrets::redact_url(&config.traces_url()),
            "exporting call spans over OTLP/HTTP"
        );
    }
    Ok(guard)
}

/// Every command but `serve`.
fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Serve(_) => unreachable!("serve is run on its own"),
        Command::CheckConfig { file, probe } => {
            cli::check_config(file.as_deref()).and_then(|config| match probe {
                true => run_async(cli::probe::services(config)),
                false => Ok(()),
            })
        }
        Command::Tools(args) => run_async(cli::tools::run(args)),
        Command::Call(args) => run_async(cli::call::run(args)),
        Command::Status(args) => run_async(cli::status::run(args)),
        Command::Sim(opts) => run_async(sim::run(opts)),
        Command::Probe(args) => run_async(cli::probe::run(args)),
        Command::Drill(args) => run_async(cli::drill::run(args)),
        Command::Import { file } => cli::import(&file),
    }
}

fn run_async<F: std::future::Future<Output = anyhow::Result<()>>>(f: F) -> anyhow::Result<()> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(f)
}

fn serve(args: ServeArgs, log_format: LogFormat) -> anyhow::Result<()> {
    let loaded = config::Config::load(args.config.as_deref());
    // Logging starts as the config asks (telemetry), or plainly to say why
    // there is none.
    let _telemetry = init_tracing(log_format, loaded.as_ref().ok().map(|c| &c.telemetry))?;
    let mut config = loaded?;
    if let Some(listen) = args.listen {
        config.server.listen = listen;
    }
    actix_rt::System::new().block_on(cli::serve::run(config, args.config, args.listen))
}
