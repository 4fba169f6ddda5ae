//! The daemon's configuration: a TOML file, `${VAR}` interpolation for
//! secrets, and a few `MCPVISOR_*` environment overrides.
//!
//! Loading is strict (unknown keys are errors) and every error names the
//! file, the line and the field, because a daemon that silently ignores a
//! misspelt limit is worse than one that refuses to start.

pub mod discovery;
pub mod import;
mod interpolate;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use mcpvisor_actors::health::AlertConfig;
use mcpvisor_actors::manifest::{Manifest, ManifestError};
use mcpvisor_actors::registry::{Registry, ToolNaming};
use mcpvisor_actors::retry::RetryConfig;
use mcpvisor_actors::spec::{ServiceSpec, TransportKind};
use serde::{Deserialize, Serialize};

/// The configuration the daemon runs with when given none.
pub const DEFAULT_CONFIG: &str = include_str!("../../config/default.toml");
/// Where the embedded default config pretends to live (for messages).
pub const DEFAULT_CONFIG_NAME: &str = "<embedded config/default.toml>";

/// Manifests compiled into the binary, for `manifest = "builtin:NAME"`.
const BUILTIN_MANIFESTS: &[(&str, &str)] = &[("asana", include_str!("../../manifests/asana.json"))];

/// The whole configuration.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// HTTP server settings.
    #[serde(default)]
    pub server: ServerConfig,
    /// Routing settings.
    #[serde(default)]
    pub router: RouterSection,
    /// Alerts.
    #[serde(default)]
    pub alerts: AlertConfig,
    /// Retry strategies per error category.
    #[serde(default)]
    pub retry: RetryConfig,
    /// Client authentication and per-client limits.
    #[serde(default)]
    pub auth: crate::auth::AuthConfig,
    /// The result cache of read-only tools.
    #[serde(default)]
    pub cache: mcpvisor_actors::cache::CacheConfig,
    /// Services found in a fragment directory and desktop server lists.
    #[serde(default)]
    pub discovery: discovery::DiscoverySection,
    /// Where call spans are exported (OpenTelemetry).
    #[serde(default)]
    pub telemetry: crate::telemetry::TelemetryConfig,
    /// Upstream MCP services.
    #[serde(default)]
    pub services: Vec<ServiceSpec>,
    /// Where the config came from (not part of the file).
    #[serde(skip)]
    pub source: PathBuf,
}

/// `[server]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Bearer token for admin and drill routes; empty disables them.
    pub admin_token: String,
    /// Largest request body accepted.
    pub max_body_bytes: usize,
    /// Idle SSE streams get a comment line this often.
    pub heartbeat_ms: u64,
    /// Events buffered per call between the engine and a slow client.
    pub event_buffer: usize,
    /// Browser origins allowed besides loopback ones (exact
    /// `scheme://host[:port]`; no wildcard).
    pub allowed_origins: Vec<String>,
    /// Host names (or `host:port`) this daemon answers to besides loopback
    /// ones: the names clients reach it by when it listens beyond loopback.
    pub allowed_hosts: Vec<String>,
    /// Bearer token of one client with the `call` and `read` scopes
    /// (`MCPVISOR_CLIENT_TOKEN`); setting it turns client authentication on.
    #[serde(skip)]
    pub client_token: String,
    /// HTTP worker threads (0: one per core but one, at least 1, at most 8).
    pub workers: usize,
    /// Idle legacy MCP sessions are forgotten after this long.
    pub session_idle_secs: u64,
    /// Most legacy MCP sessions kept at once.
    pub max_sessions: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 3000)),
            admin_token: String::new(),
            max_body_bytes: 1024 * 1024,
            heartbeat_ms: 15_000,
            event_buffer: 256,
            allowed_origins: Vec::new(),
            allowed_hosts: Vec::new(),
            client_token: String::new(),
            workers: 0,
            session_idle_secs: 3600,
            max_sessions: 10_000,
        }
    }
}

/// `[router]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RouterSection {
    /// Most attempts one call may make across replicas.
    pub max_attempts: u32,
    /// How long a call may wait for a restarting replica.
    pub wait_for_service_ms: u64,
    /// Naming of tools that several logical services offer:
    /// `prefix_on_conflict` (`service.tool` for those only), `prefix_always`,
    /// or `never` (such a conflict is a configuration error).
    pub tool_names: ToolNaming,
    /// Hedging of safe calls that linger on a slow or suspect replica.
    pub hedge: mcpvisor_actors::hedge::HedgeConfig,
    /// How long calls that crashed their upstream twice are refused.
    pub quarantine: mcpvisor_actors::quarantine::QuarantineConfig,
}

impl Default for RouterSection {
    fn default() -> Self {
        let d = mcpvisor_actors::RouterConfig::default();
        Self {
            max_attempts: d.max_attempts,
            wait_for_service_ms: d.wait_for_service.as_millis() as u64,
            tool_names: ToolNaming::default(),
            hedge: d.hedge,
            quarantine: Default::default(),
        }
    }
}

/// A configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// Unreadable file.
    #[error("{file}: {source}")]
    Io {
        file: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Wrong syntax, type or value.
    #[error("{file}:{line}: field `{field}`: {message}")]
    Invalid {
        file: PathBuf,
        line: usize,
        field: String,
        message: String,
    },
    /// A manifest named by the config is broken.
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    /// A desktop client's server list that cannot be imported.
    #[error(transparent)]
    Import(#[from] import::ImportError),
}

impl Config {
    /// The embedded default configuration.
    pub fn embedded() -> Result<Self, ConfigError> {
        Self::parse(Path::new(DEFAULT_CONFIG_NAME), DEFAULT_CONFIG, &|k| {
            std::env::var(k).ok()
        })
    }

    /// Loads a file, or the embedded default when `path` is `None`.
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
        let Some(path) = path else {
            return Self::embedded();
        };
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            file: path.to_owned(),
            source,
        })?;
        if path.extension().is_some_and(|e| e == "json") || import::looks_like_servers_json(&text) {
            // A desktop client's `mcpServers` (or VS Code `servers`) file.
            let imported = import::to_toml(path, &text)?;
            for warning in &imported.warnings {
                tracing::warn!(file = %path.display(), "{warning}");
            }
            return Self::parse(path, &imported.toml, &|k| std::env::var(k).ok());
        }
        let env = |k: &str| std::env::var(k).ok();
        let mut config = Self::parse(path, &text, &env)?;
        discovery::merge(&mut config, &env)?;
        Ok(config)
    }

    /// Parses and validates configuration text. `env` resolves `${VAR}`.
    pub fn parse(
        file: &Path,
        text: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let text = interpolate::expand(text, env).map_err(|e| ConfigError::Invalid {
            file: file.to_owned(),
            line: e.line,
            field: e.variable.clone(),
            message: e.to_string(),
        })?;
        let invalid = |span: Option<std::ops::Range<usize>>, field: String, message: String| {
            ConfigError::Invalid {
                file: file.to_owned(),
                line: span.map_or(0, |s| line_of(&text, s.start)),
                field,
                message,
            }
        };
        let de = toml::Deserializer::parse(&text)
            .map_err(|e| invalid(e.span(), String::new(), e.message().to_owned()))?;
        let mut config: Config = serde_path_to_error::deserialize(de).map_err(|e| {
            let field = e.path().to_string();
            let inner = e.into_inner();
            invalid(inner.span(), field, inner.message().to_owned())
        })?;
        config.source = file.to_owned();
        config
            .apply_env(env)
            .map_err(|(field, message)| invalid(None, field, message))?;
        config
            .validate(&text)
            .map_err(|(line, field, message)| ConfigError::Invalid {
                file: file.to_owned(),
                line,
                field,
                message,
            })?;
        Ok(config)
    }

    fn apply_env(&mut self, env: &dyn Fn(&str) -> Option<String>) -> Result<(), (String, String)> {
        if let Some(v) = env("MCPVISOR_LISTEN") {
            self.server.listen = v
                .parse()
                .map_err(|e| ("MCPVISOR_LISTEN".to_owned(), format!("`{v}`: {e}")))?;
        }
        if let Some(v) = env("MCPVISOR_ADMIN_TOKEN") {
            self.server.admin_token = v;
        }
        if let Some(v) = env("MCPVISOR_CLIENT_TOKEN") {
            self.server.client_token = v;
        }
        if let Some(v) = env("MCPVISOR_MAX_BODY_BYTES") {
            self.server.max_body_bytes = v
                .parse()
                .map_err(|e| ("MCPVISOR_MAX_BODY_BYTES".to_owned(), format!("`{v}`: {e}")))?;
        }
        Ok(())
    }

    fn validate(&self, text: &str) -> Result<(), (usize, String, String)> {
        for (name, p) in [
            ("rate_limit", &self.retry.rate_limit),
            ("service_unavailable", &self.retry.service_unavailable),
            ("timeout", &self.retry.timeout),
            ("network", &self.retry.network),
            ("overload", &self.retry.overload),
        ] {
            let line = text
                .lines()
                .position(|l| l.trim() == format!("[retry.{name}]"))
                .map_or(0, |i| i + 1);
            if p.max_attempts == 0 {
                return Err((
                    line,
                    format!("retry.{name}.max_attempts"),
                    "must be at least 1".into(),
                ));
            }
            if !(0.0..=1.0).contains(&p.jitter) {
                return Err((
                    line,
                    format!("retry.{name}.jitter"),
                    "must be between 0 and 1".into(),
                ));
            }
        }
        let cache_line = text
            .lines()
            .position(|l| l.trim() == "[cache]")
            .map_or(0, |i| i + 1);
        if self.cache.max_entries == 0 {
            return Err((
                cache_line,
                "cache.max_entries".into(),
                "must be at least 1".into(),
            ));
        }
        if self.cache.max_bytes == 0 {
            return Err((
                cache_line,
                "cache.max_bytes".into(),
                "must be at least 1".into(),
            ));
        }
        self.validate_security(text)?;
        let mut names = std::collections::HashSet::new();
        for (i, s) in self.services.iter().enumerate() {
            let line = service_line(text, &s.name);
            let fail = |field: &str, msg: String| (line, format!("services[{i}].{field}"), msg);
            let well_named = |n: &str| {
                !n.is_empty()
                    && n.chars()
                        .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
            };
            if let Some(g) = &s.group
                && !well_named(g)
            {
                return Err(fail(
                    "group",
                    format!("`{g}` must be non-empty [A-Za-z0-9-_.]"),
                ));
            }
            if !well_named(&s.name) {
                return Err(fail(
                    "name",
                    format!("`{}` must be non-empty [A-Za-z0-9-_.]", s.name),
                ));
            }
            if !names.insert(&s.name) {
                return Err(fail("name", format!("duplicate service `{}`", s.name)));
            }
            match s.transport {
                TransportKind::Stdio if s.command.is_none() => {
                    return Err(fail("command", "a stdio service needs a command".into()));
                }
                TransportKind::StreamableHttp | TransportKind::Sse => {
                    let Some(url) = &s.url else {
                        return Err(fail(
                            "url",
                            "an HTTP (streamable_http or sse) service needs a url".into(),
                        ));
                    };
                    let probe = url.replace("{port}", "1");
                    match reqwest::Url::parse(&probe) {
                        Ok(u) if matches!(u.scheme(), "http" | "https") => {}
                        Ok(u) => {
                            return Err(fail(
                                "url",
                                format!("unsupported scheme `{}`", u.scheme()),
                            ));
                        }
                        Err(e) => return Err(fail("url", format!("`{url}`: {e}"))),
                    }
                    if url.contains("{port}") && s.command.is_none() {
                        return Err(fail(
                            "url",
                            "`{port}` needs a `command` that listens on it".into(),
                        ));
                    }
                }
                _ => {}
            }
            if let Some(p) = s.protocol.as_deref()
                && p != "auto"
                && mcpvisor_actors::transport::known_version(p).is_none()
            {
                return Err(fail(
                    "protocol",
                    format!("unknown protocol revision `{p}` (use `auto` or e.g. `2025-11-25`)"),
                ));
            }
            for (field, value) in [
                ("limits.max_in_flight", s.limits.max_in_flight as u64),
                ("limits.call_timeout_ms", s.limits.call_timeout_ms),
                ("limits.connect_timeout_ms", s.limits.connect_timeout_ms),
                ("health.timeout_ms", s.health.timeout_ms),
            ] {
                if value == 0 {
                    return Err(fail(field, "must be at least 1".into()));
                }
            }
            if s.health.interval_ms < 10 {
                return Err(fail("health.interval_ms", "must be at least 10".into()));
            }
            if let Some(m) = &s.manifest
                && let Err(e) = self.manifest_source(m)
            {
                return Err(fail("manifest", e));
            }
            // Credentials in the URL become Basic auth only when no
            // Authorization header is configured; both at once is ambiguous.
            let has_userinfo = s.url.as_deref().is_some_and(|u| {
                reqwest::Url::parse(&u.replace("{port}", "1"))
                    .is_ok_and(|u| !u.username().is_empty() || u.password().is_some())
            });
            if has_userinfo
                && s.headers
                    .keys()
                    .any(|k| k.eq_ignore_ascii_case("authorization"))
            {
                let header_line = text
                    .lines()
                    .enumerate()
                    .skip(line)
                    .find(|(_, l)| {
                        l.trim_start()
                            .to_ascii_lowercase()
                            .starts_with("authorization")
                    })
                    .map_or(line, |(i, _)| i + 1);
                return Err((
                    header_line,
                    format!("services[{i}].headers.Authorization"),
                    "both credentials in the url and an Authorization header; keep one".into(),
                ));
            }
        }
        Ok(())
    }

    /// `[auth]` and the Host / Origin lists.
    fn validate_security(&self, text: &str) -> Result<(), (usize, String, String)> {
        let line_of_key = |key: &str| {
            text.lines()
                .position(|l| l.trim_start().starts_with(key))
                .map_or(0, |i| i + 1)
        };
        if let Some(o) = self.server.allowed_origins.iter().find(|o| o.contains('*')) {
            return Err((
                line_of_key("allowed_origins"),
                "server.allowed_origins".into(),
                format!("`{o}`: wildcards are not allowed; list each origin"),
            ));
        }
        let mut names = std::collections::HashSet::new();
        for (i, c) in self.auth.clients.iter().enumerate() {
            let line = text
                .match_indices(&format!("\"{}\"", c.name))
                .next()
                .map_or(0, |(at, _)| line_of(text, at));
            if c.token.trim().is_empty() {
                return Err((line, format!("auth.clients[{i}].token"), "is empty".into()));
            }
            if c.token.len() < 16 {
                return Err((
                    line,
                    format!("auth.clients[{i}].token"),
                    "is shorter than 16 characters; use a long random token".into(),
                ));
            }
            if !names.insert(&c.name) {
                return Err((
                    line,
                    format!("auth.clients[{i}].name"),
                    format!("duplicate client `{}`", c.name),
                ));
            }
        }
        if let Some(o) = &self.auth.oauth {
            let line = line_of_key("[auth.oauth]");
            if o.jwks_url.is_none() == o.jwks_file.is_none() {
                return Err((
                    line,
                    "auth.oauth.jwks_url".into(),
                    "set exactly one of jwks_url and jwks_file".into(),
                ));
            }
            if reqwest::Url::parse(&o.resource).is_err() {
                return Err((
                    line,
                    "auth.oauth.resource".into(),
                    format!("`{}` is not an absolute URL", o.resource),
                ));
            }
        }
        Ok(())
    }

    /// Where a `manifest` value points.
    fn manifest_source(&self, value: &str) -> Result<ManifestSource, String> {
        if let Some(name) = value.strip_prefix("builtin:") {
            return BUILTIN_MANIFESTS
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(n, text)| ManifestSource::Builtin(n, text))
                .ok_or_else(|| format!("no builtin manifest `{name}`"));
        }
        let base = self.source.parent().unwrap_or(Path::new("."));
        Ok(ManifestSource::File(base.join(value)))
    }

    /// Loads the manifest a service names, if any.
    pub fn manifest_for(&self, service: &ServiceSpec) -> Result<Option<Manifest>, ConfigError> {
        let Some(value) = &service.manifest else {
            return Ok(None);
        };
        let source = self
            .manifest_source(value)
            .map_err(|message| ConfigError::Invalid {
                file: self.source.clone(),
                line: 0,
                field: format!("services.{}.manifest", service.name),
                message,
            })?;
        Ok(Some(match source {
            ManifestSource::Builtin(name, text) => {
                Manifest::parse(Path::new(&format!("builtin:{name}")), text)?
            }
            ManifestSource::File(path) => Manifest::load(&path)?,
        }))
    }

    /// The tool registry with every service's manifest, after checking the
    /// naming policy: under `never`, two services offering one tool name is
    /// an error naming the tool and the services.
    pub fn registry(&self) -> Result<Registry, ConfigError> {
        let registry = Registry::with_naming(self.router.tool_names);
        for spec in &self.services {
            registry.add_service(&spec.name, spec.group(), self.manifest_for(spec)?);
        }
        if self.router.tool_names == ToolNaming::Never
            && let Some((tool, groups)) = registry.conflicts().into_iter().next()
        {
            return Err(ConfigError::Invalid {
                file: self.source.clone(),
                line: 0,
                field: "router.tool_names".into(),
                message: format!(
                    "tool `{tool}` is offered by {}; \"never\" refuses such conflicts \
                     (use \"prefix_on_conflict\" or \"prefix_always\")",
                    groups.join(" and ")
                ),
            });
        }
        Ok(registry)
    }

    /// Router settings for the engine.
    pub fn router_config(&self) -> mcpvisor_actors::RouterConfig {
        mcpvisor_actors::RouterConfig {
            max_attempts: self.router.max_attempts.max(1),
            wait_for_service: std::time::Duration::from_millis(self.router.wait_for_service_ms),
            retry: std::sync::Arc::new(self.retry.clone()),
            hedge: self.router.hedge.clone(),
        }
    }
}

enum ManifestSource {
    Builtin(&'static str, &'static str),
    File(PathBuf),
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

/// Line of `name = "<service>"` inside a `[[services]]` table.
fn service_line(text: &str, name: &str) -> usize {
    let quoted = format!("\"{name}\"");
    text.lines()
        .position(|l| {
            let t = l.trim_start();
            t.starts_with("name") && t.contains(&quoted)
        })
        .map_or(0, |i| i + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(Path::new("c.toml"), text, &|k| match k {
            "TOKEN" => Some("s3cret".into()),
            _ => None,
        })
    }

    #[test]
    fn embedded_default_is_valid_and_has_two_replicas() {
        let c = Config::embedded().expect("default config");
        assert_eq!(c.services.len(), 2);
        assert!(c.services.iter().all(|s| s.group() == "asana"));
        for s in &c.services {
            let m = c.manifest_for(s).expect("manifest").expect("present");
            assert_eq!(m.tools.len(), 42);
        }
    }

    #[test]
    fn type_error_names_file_line_and_field() {
        let text = "[server]\nlisten = \"127.0.0.1:3000\"\n\n[[services]]\nname = \"a\"\ntransport = \"stdio\"\ncommand = \"x\"\n[services.limits]\nmax_in_flight = \"many\"\n";
        let err = parse(text).unwrap_err().to_string();
        assert!(err.starts_with("c.toml:9:"), "{err}");
        assert!(err.contains("services[0].limits.max_in_flight"), "{err}");
    }

    #[test]
    fn unknown_key_is_refused() {
        let err = parse("[server]\nlisten_addr = \"x\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("c.toml:2"), "{err}");
        assert!(err.contains("listen_addr"), "{err}");
    }

    #[test]
    fn semantic_errors_point_at_the_service() {
        let text = "[[services]]\nname = \"ok\"\ntransport = \"stdio\"\ncommand = \"x\"\n\n[[services]]\nname = \"web\"\ntransport = \"streamable_http\"\n";
        let err = parse(text).unwrap_err().to_string();
        assert_eq!(
            err,
            "c.toml:7: field `services[1].url`: an HTTP (streamable_http or sse) service needs a url"
        );
    }

    #[test]
    fn variables_are_interpolated_and_missing_ones_reported() {
        let c = parse("[server]\nadmin_token = \"${TOKEN}\"\n").unwrap();
        assert_eq!(c.server.admin_token, "s3cret");
        let c = parse("[server]\nadmin_token = \"${NOPE:-fallback}\"\n").unwrap();
        assert_eq!(c.server.admin_token, "fallback");
        let err = parse("[server]\n\nadmin_token = \"${NOPE}\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("c.toml:3: field `NOPE`"), "{err}");
    }

    #[test]
    fn env_overrides_listen() {
        let c = Config::parse(Path::new("c.toml"), "", &|k| {
            (k == "MCPVISOR_LISTEN").then(|| "127.0.0.1:0".to_owned())
        })
        .unwrap();
        assert_eq!(c.server.listen.port(), 0);
        let err = Config::parse(Path::new("c.toml"), "", &|k| {
            (k == "MCPVISOR_LISTEN").then(|| "nope".to_owned())
        })
        .unwrap_err()
        .to_string();
        assert!(err.contains("MCPVISOR_LISTEN"), "{err}");
    }
}
