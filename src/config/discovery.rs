//! Services found beside the config file (`[discovery]`): a directory of
//! TOML fragments, each holding `[[services]]` tables only, read in name
//! order; and desktop clients' server lists (`mcpServers`, VS Code
//! `servers`), imported as services. Both are merged after the file's own
//! services, and, unless `watch = false`, watched: a fragment or list
//! added, changed or removed is picked up as a reload would.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{Config, ConfigError, import};

/// `[discovery]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DiscoverySection {
    /// A directory of `*.toml` fragments holding `[[services]]` tables
    /// (relative to the config file). A missing directory holds none.
    pub services_dir: Option<PathBuf>,
    /// Desktop clients' server lists whose servers are services too
    /// (relative to the config file; `~/` is the home directory). A missing
    /// file lists none.
    pub mcp_servers_files: Vec<PathBuf>,
    /// Reload when any of them changes.
    pub watch: bool,
}

impl Default for DiscoverySection {
    fn default() -> Self {
        Self {
            services_dir: None,
            mcp_servers_files: Vec::new(),
            watch: true,
        }
    }
}

impl DiscoverySection {
    /// The fragment directory, resolved against the config's directory.
    pub fn dir(&self, base: &Path) -> Option<PathBuf> {
        self.services_dir.as_deref().map(|d| resolve(base, d))
    }

    /// The server lists, resolved against the config's directory.
    pub fn files(&self, base: &Path) -> Vec<PathBuf> {
        self.mcp_servers_files
            .iter()
            .map(|f| resolve(base, f))
            .collect()
    }
}

fn resolve(base: &Path, p: &Path) -> PathBuf {
    if let Ok(rest) = p.strip_prefix("~")
        && let Some(home) = std::env::var_os("HOME")
    {
        return PathBuf::from(home).join(rest);
    }
    base.join(p)
}

/// Adds the discovered services to `config` (after its own), checking
/// that names stay unique across files.
pub(super) fn merge(
    config: &mut Config,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(), ConfigError> {
    let base = config
        .source
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_owned);
    let mut sources: Vec<(PathBuf, String, Config)> = Vec::new();
    if let Some(dir) = config.discovery.dir(&base) {
        for path in fragments(&dir)? {
            let text = read(&path)?;
            only_services(&path, &text)?;
            let fragment = Config::parse(&path, &text, env)?;
            sources.push((path, text, fragment));
        }
    }
    for path in config.discovery.files(&base) {
        if !path.exists() {
            tracing::warn!(file = %path.display(), "server list not found; it lists no services");
            continue;
        }
        let text = read(&path)?;
        let imported = import::to_toml(&path, &text)?;
        let fragment = Config::parse(&path, &imported.toml, env)?;
        sources.push((path, imported.toml, fragment));
    }
    for (path, text, fragment) in sources {
        let dir = path
            .parent()
            .map_or_else(|| PathBuf::from("."), Path::to_owned);
        for (i, mut spec) in fragment.services.into_iter().enumerate() {
            if config.services.iter().any(|s| s.name == spec.name) {
                return Err(ConfigError::Invalid {
                    file: path.clone(),
                    line: super::service_line(&text, &spec.name),
                    field: format!("services[{i}].name"),
                    message: format!(
                        "duplicate service `{}` (already defined in {} or an earlier fragment)",
                        spec.name,
                        config.source.display()
                    ),
                });
            }
            // A fragment's manifest path is relative to the fragment.
            if let Some(m) = &spec.manifest
                && !m.starts_with("builtin:")
                && Path::new(m).is_relative()
            {
                spec.manifest = Some(dir.join(m).to_string_lossy().into_owned());
            }
            config.services.push(spec);
        }
    }
    Ok(())
}

/// The `*.toml` files of `dir`, by name; none if it does not exist.
fn fragments(dir: &Path) -> Result<Vec<PathBuf>, ConfigError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            tracing::warn!(dir = %dir.display(), "services directory not found; it holds no services");
            return Ok(Vec::new());
        }
        Err(source) => {
            return Err(ConfigError::Io {
                file: dir.to_owned(),
                source,
            });
        }
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml") && p.is_file())
        .collect();
    files.sort();
    Ok(files)
}

fn read(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
        file: path.to_owned(),
        source,
    })
}

/// A fragment may hold `[[services]]` tables and nothing else.
fn only_services(path: &Path, text: &str) -> Result<(), ConfigError> {
    let Ok(table) = text.parse::<toml::Table>() else {
        return Ok(()); // the parse proper reports where
    };
    match table.keys().find(|k| *k != "services") {
        Some(key) => Err(ConfigError::Invalid {
            file: path.to_owned(),
            line: text
                .lines()
                .position(|l| {
                    let t = l.trim_start().trim_start_matches('[');
                    t.starts_with(key.as_str())
                })
                .map_or(0, |i| i + 1),
            field: key.clone(),
            message: "a services.d fragment holds only [[services]] tables".into(),
        }),
        None => Ok(()),
    }
}
