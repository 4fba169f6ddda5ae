//! Import of desktop MCP client configs: turns a Claude Desktop, Cursor,
//! Windsurf, Cline or VS Code server list (JSON) into mcpvisor config TOML.
//!
//! Two shapes are read, found by their top-level key:
//!
//! - `mcpServers` (Claude Desktop, Claude Code's `.mcp.json`, Cursor,
//!   Windsurf, Cline, Roo): `{"mcpServers": {"NAME": {"command", "args",
//!   "env", "cwd"} | {"url" (Windsurf: "serverUrl"), "headers", "type"}}}`;
//! - `servers` (VS Code `.vscode/mcp.json`, or `mcp.servers` in VS Code's
//!   `settings.json`), with `inputs` beside it.
//!
//! The text may be JSONC (`//` and `/* */` comments, trailing commas), as
//! VS Code allows.
//!
//! Each server becomes one `[[services]]` table, in the file's order
//! (serde_json is built with `preserve_order`), with no `manifest`: mcpvisor
//! then lists the service's tools live from the server. Everything else
//! (limits, health, restart, `[server]`) keeps its defaults.
//!
//! - Transport: `type` (or `transport`, or Cline's `transportType`):
//!   `stdio`; `http`, `streamable-http` (and spellings such as
//!   `streamableHttp`) become `streamable_http`; `sse` stays `sse`. Without
//!   one, a `command` means stdio and a `url` means Streamable HTTP unless
//!   its path ends with `/sse` (then the legacy SSE transport). Fields the
//!   transport does not use (a `url` of a stdio server, ...) are left out
//!   with a warning, as the client itself ignores them.
//! - `disabled: true` (Cline, Roo) or `enabled: false` become
//!   `enabled = false`.
//! - Names: mcpvisor allows `[A-Za-z0-9-_.]`; every run of other characters
//!   becomes one `-` (`"My Server"` -> `My-Server`), and a name already
//!   taken gets `-2`, `-3`, ...; each change is a warning.
//! - Values of `env` and `headers` (often secrets) are copied as written,
//!   the user's own file being the source, with a comment suggesting a
//!   `${VAR}` reference instead.
//! - Keys mcpvisor has no setting for (`autoApprove`, `timeout`, VS Code's
//!   `envFile`, ...) are dropped with a warning.
//!
//! Variable references in `command`, `args`, `env`, `cwd`, `url` and
//! `headers` values:
//!
//! - `${env:FOO}` (VS Code, Cursor) becomes mcpvisor's `${FOO}`. Unlike
//!   VS Code, mcpvisor refuses to start when `FOO` is unset or empty.
//! - `${FOO}` and `${FOO:-default}` (Claude Code) are kept: they mean the
//!   same in mcpvisor.
//! - `${input:foo}` (a VS Code prompt) cannot be asked for by a daemon, so
//!   it becomes the environment reference `${INPUT_FOO}` (the id upper-cased,
//!   other characters as `_`) with a warning naming the variable to set and
//!   the prompt's description; loading the config then fails with
//!   "environment variable `INPUT_FOO` is not set" until it is set.
//! - `${userHome}` becomes `${HOME}`, `${pathSeparator}` and `${/}` become
//!   `/`.
//! - Other VS Code variables (`${workspaceFolder}`, `${command:...}`, ...)
//!   have no meaning outside the editor: they are kept as literal text and
//!   warned about.
//! - Any other `$` is written as `$$`, so it stays a literal dollar sign.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use mcpvisor_actors::spec::TransportKind;
use serde_json::{Map, Value};

/// The result of an import.
#[derive(Debug, Clone)]
pub struct Imported {
    /// mcpvisor config TOML, ready for [`super::Config::parse`].
    pub toml: String,
    /// What was changed or left out, one sentence each, led by the JSON
    /// path it concerns.
    pub warnings: Vec<String>,
}

/// A file that cannot be imported.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// Not JSON (nor JSONC).
    #[error("{file}:{line}:{column}: not valid JSON: {message}")]
    Json {
        file: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
    /// JSON without a server list.
    #[error(
        "{file}: no `mcpServers` (Claude Desktop, Cursor, Windsurf) or `servers` (VS Code) \
         object at the top level"
    )]
    NoServers { file: PathBuf },
    /// A field with the wrong type or value; `path` is its JSON path, e.g.
    /// `servers.github.args`.
    #[error("{file}: {path}: {message}")]
    Invalid {
        file: PathBuf,
        path: String,
        message: String,
    },
}

/// Whether `text` is a desktop client's server list (an object with
/// `mcpServers`, `servers` or `mcp.servers`), i.e. something [`to_toml`]
/// imports rather than mcpvisor TOML.
pub fn looks_like_servers_json(text: &str) -> bool {
    let Ok(root) = serde_json::from_str::<Value>(&strip_jsonc(text)) else {
        return false;
    };
    matches!(find_servers(&root), Ok(Some((_, Value::Object(_), _))))
}

/// Converts the server list in `json` (read from `file`, which only names
/// it in the output and in errors) into mcpvisor config TOML.
pub fn to_toml(file: &Path, json: &str) -> Result<Imported, ImportError> {
    let invalid = |path: &str, message: String| ImportError::Invalid {
        file: file.to_owned(),
        path: path.to_owned(),
        message,
    };
    let root: Value = serde_json::from_str(&strip_jsonc(json)).map_err(|e| {
        let at = format!(" at line {} column {}", e.line(), e.column());
        let message = e.to_string();
        ImportError::Json {
            file: file.to_owned(),
            line: e.line(),
            column: e.column(),
            message: message.strip_suffix(&at).unwrap_or(&message).to_owned(),
        }
    })?;
    let (key, servers, inputs) = find_servers(&root)
        .map_err(|(path, message)| invalid(path, message))?
        .ok_or_else(|| ImportError::NoServers {
            file: file.to_owned(),
        })?;
    let Value::Object(servers) = servers else {
        return Err(invalid(
            key,
            format!(
                "expected an object of servers by name, found {}",
                kind(servers)
            ),
        ));
    };
    let file_name = file.file_name().map_or_else(
        || file.display().to_string(),
        |n| n.to_string_lossy().into(),
    );
    let mut ctx = Ctx {
        inputs,
        warnings: Vec::new(),
    };
    let format = if key == "mcpServers" {
        "the `mcpServers` list of Claude Desktop, Cursor or Windsurf"
    } else {
        "the VS Code `servers` list"
    };
    let mut toml = format!(
        "# mcpvisor configuration imported from {}\n\
         # ({format}).\n\
         # The services have no manifest: mcpvisor lists their tools live.\n\
         # Unset settings keep their defaults (see config/default.toml).\n",
        printable(&file.display().to_string())
    );
    if servers.is_empty() {
        ctx.warnings
            .push(format!("{key}: no servers; the config has no services"));
    }
    let mut taken = HashSet::new();
    for (raw_name, server) in servers {
        let path = format!("{key}{}", segment(raw_name));
        let service = ctx
            .service(&path, server)
            .map_err(|(p, m)| invalid(&p, m))?;
        let name = ctx.unique_name(&path, raw_name, &mut taken);
        toml.push('\n');
        toml.push_str("[[services]]\n");
        if name != *raw_name {
            toml.push_str(&format!(
                "# {} in {}\n",
                printable(&Value::String(raw_name.clone()).to_string()),
                printable(&file_name)
            ));
        }
        toml.push_str(&kv("name", toml::Value::String(name.clone())));
        toml.push_str(&service.body(&name, &file_name));
    }
    Ok(Imported {
        toml,
        warnings: ctx.warnings,
    })
}

/// The server list, its key and the VS Code `inputs`: `Err` for a bad
/// shape, `Ok(None)` for none at all.
#[allow(clippy::type_complexity)]
fn find_servers(
    root: &Value,
) -> Result<Option<(&'static str, &Value, Option<&Vec<Value>>)>, (&'static str, String)> {
    let Value::Object(top) = root else {
        return Ok(None);
    };
    match (top.get("mcpServers"), top.get("servers")) {
        (Some(_), Some(_)) => Err((
            "servers",
            "the file has both `mcpServers` and `servers`; keep one".into(),
        )),
        (Some(s), None) => Ok(Some(("mcpServers", s, inputs_of(top)))),
        (None, Some(s)) => Ok(Some(("servers", s, inputs_of(top)))),
        (None, None) => Ok(top
            .get("mcp")
            .and_then(Value::as_object)
            .and_then(|mcp| Some(("mcp.servers", mcp.get("servers")?, inputs_of(mcp))))),
    }
}

/// One server, checked and with its values translated.
struct Service {
    transport: TransportKind,
    command: Option<String>,
    args: Vec<String>,
    cwd: Option<String>,
    url: Option<String>,
    enabled: bool,
    env: Vec<(String, String)>,
    headers: Vec<(String, String)>,
}

impl Service {
    /// The `[[services]]` table after its `name`.
    fn body(&self, name: &str, file_name: &str) -> String {
        let transport = match self.transport {
            TransportKind::Stdio => "stdio",
            TransportKind::StreamableHttp => "streamable_http",
            TransportKind::Sse => "sse",
        };
        let mut out = kv("transport", toml::Value::String(transport.into()));
        if let Some(c) = &self.command {
            out.push_str(&kv("command", toml::Value::String(c.clone())));
        }
        if !self.args.is_empty() {
            let args = self.args.iter().cloned().map(toml::Value::String).collect();
            out.push_str(&kv("args", toml::Value::Array(args)));
        }
        if let Some(c) = &self.cwd {
            out.push_str(&kv("cwd", toml::Value::String(c.clone())));
        }
        if let Some(u) = &self.url {
            out.push_str(&kv("url", toml::Value::String(u.clone())));
        }
        if !self.enabled {
            out.push_str(&kv("enabled", toml::Value::Boolean(false)));
        }
        for (table, entries) in [("env", &self.env), ("headers", &self.headers)] {
            if entries.is_empty() {
                continue;
            }
            if let Some((key, value)) = entries.iter().find(|(_, v)| !v.contains("${")) {
                let (suggestion, variable) = secret_hint(table, name, key, value);
                out.push_str(&format!(
                    "# Copied as written from {}.\n\
                     # To keep secrets out of this file, write\n\
                     #   {}\
                     # and set {variable} in mcpvisor's environment.\n",
                    printable(file_name),
                    kv(key, toml::Value::String(suggestion)),
                ));
            }
            out.push_str(&format!("[services.{table}]\n"));
            for (k, v) in entries {
                out.push_str(&kv(&escape_dollars(k), toml::Value::String(v.clone())));
            }
        }
        out
    }
}

/// A `${VAR}` spelling of a literal env or header value, and the variable.
fn secret_hint(table: &str, service: &str, key: &str, value: &str) -> (String, String) {
    if table == "env" {
        let variable = if is_identifier(key) {
            key.to_owned()
        } else {
            env_name(&[key])
        };
        return (format!("${{{variable}}}"), variable);
    }
    match value.split_once(' ') {
        Some((scheme, _)) if scheme.eq_ignore_ascii_case("bearer") => {
            let variable = env_name(&[service, "token"]);
            (format!("{scheme} ${{{variable}}}"), variable)
        }
        _ => {
            let variable = env_name(&[service, key]);
            (format!("${{{variable}}}"), variable)
        }
    }
}

/// Reading state: the VS Code `inputs` and the warnings so far.
struct Ctx<'a> {
    inputs: Option<&'a Vec<Value>>,
    warnings: Vec<String>,
}

type Fail = (String, String);

impl Ctx<'_> {
    fn service(&mut self, path: &str, server: &Value) -> Result<Service, Fail> {
        let Value::Object(o) = server else {
            return Err((
                path.to_owned(),
                format!("expected an object, found {}", kind(server)),
            ));
        };
        let at = |field: &str| format!("{path}.{field}");
        let string = |field: &str| get_str(o, path, field);
        let flag = |field: &str| get_bool(o, path, field);

        let mut explicit = None;
        for field in ["type", "transport", "transportType"] {
            let Some(t) = string(field)? else { continue };
            let named = transport_named(t).ok_or_else(|| {
                (
                    at(field),
                    format!(
                        "unknown transport `{t}` (expected stdio, http, streamable-http or sse)"
                    ),
                )
            })?;
            match explicit {
                Some((other, k)) if k != named => {
                    return Err((at(field), format!("disagrees with `{other}`")));
                }
                _ => explicit = Some((field, named)),
            }
        }
        let command = string("command")?;
        let (url_field, url) = match (string("url")?, string("serverUrl")?) {
            (Some(_), Some(_)) => {
                return Err((
                    path.to_owned(),
                    "both `url` and `serverUrl`; keep one".into(),
                ));
            }
            (Some(u), None) => ("url", Some(u)),
            (None, u) => ("serverUrl", u),
        };
        let transport = match (explicit, command, url) {
            (Some((_, k)), ..) => k,
            (None, Some(_), _) => TransportKind::Stdio,
            (None, None, Some(u)) if ends_with_sse(u) => TransportKind::Sse,
            (None, None, Some(_)) => TransportKind::StreamableHttp,
            (None, None, None) => {
                return Err((
                    path.to_owned(),
                    "needs a `command` (a stdio server) or a `url` (a remote server)".into(),
                ));
            }
        };
        let stdio = transport == TransportKind::Stdio;
        let type_name = match transport {
            TransportKind::Stdio => "stdio",
            TransportKind::StreamableHttp => "http",
            TransportKind::Sse => "sse",
        };
        if stdio && command.is_none() {
            return Err((
                at("command"),
                "missing: a stdio server needs a command".into(),
            ));
        }
        if !stdio && url.is_none() {
            return Err((
                at("url"),
                format!("missing: an {type_name} server needs a url"),
            ));
        }
        if command.is_some_and(|c| c.trim().is_empty()) {
            return Err((at("command"), "is empty".into()));
        }

        let mut service = Service {
            transport,
            command: None,
            args: Vec::new(),
            cwd: None,
            url: None,
            enabled: !flag("disabled")?.unwrap_or(false) && flag("enabled")?.unwrap_or(true),
            env: Vec::new(),
            headers: Vec::new(),
        };
        let args = match o.get("args") {
            None | Some(Value::Null) => &[][..],
            Some(Value::Array(a)) => a.as_slice(),
            Some(v) => {
                return Err((
                    at("args"),
                    format!("expected an array of strings, found {}", kind(v)),
                ));
            }
        };
        let mut args_strings = Vec::with_capacity(args.len());
        for (i, a) in args.iter().enumerate() {
            let Value::String(a) = a else {
                return Err((
                    at("args"),
                    format!("expected an array of strings, found {} at [{i}]", kind(a)),
                ));
            };
            args_strings.push((format!("{path}.args[{i}]"), a.as_str()));
        }
        let env = self.string_map(path, o, "env")?;
        let headers = self.string_map(path, o, "headers")?;

        let ignored = |field: &str, this: &mut Self| {
            this.warnings.push(format!(
                "{}: ignored: a{} {type_name} server does not use it",
                at(field),
                if stdio { "" } else { "n" },
            ));
        };
        if stdio {
            service.command = command.map(|c| self.translate(&at("command"), c));
            service.args = args_strings
                .iter()
                .map(|(p, a)| self.translate(p, a))
                .collect();
            service.cwd = string("cwd")?.map(|c| self.translate(&at("cwd"), c));
            service.env = env;
            if url.is_some() {
                ignored(url_field, self);
            }
            if !headers.is_empty() {
                ignored("headers", self);
            }
        } else {
            let u = url.unwrap_or_default();
            let u = self.translate(&at(url_field), u);
            if !u.contains('$') {
                match reqwest::Url::parse(&u) {
                    Ok(parsed) if matches!(parsed.scheme(), "http" | "https") => {}
                    Ok(parsed) => {
                        return Err((
                            at(url_field),
                            format!(
                                "unsupported scheme `{}` (expected http or https)",
                                parsed.scheme()
                            ),
                        ));
                    }
                    Err(e) => return Err((at(url_field), format!("`{u}`: {e}"))),
                }
            }
            service.url = Some(u);
            service.headers = headers;
            for (field, present) in [
                ("command", command.is_some()),
                ("args", !args.is_empty()),
                ("env", !env.is_empty()),
                ("cwd", o.contains_key("cwd")),
            ] {
                if present {
                    ignored(field, self);
                }
            }
        }

        const USED: &[&str] = &[
            "type",
            "transport",
            "transportType",
            "command",
            "args",
            "env",
            "cwd",
            "url",
            "serverUrl",
            "headers",
            "disabled",
            "enabled",
        ];
        for field in o.keys().filter(|k| !USED.contains(&k.as_str())) {
            let why = if field == "envFile" {
                "not imported: mcpvisor reads no env file; copy its variables into `env` \
                 or mcpvisor's environment"
            } else {
                "ignored: mcpvisor has no such setting"
            };
            self.warnings
                .push(format!("{path}{}: {why}", segment(field)));
        }
        Ok(service)
    }

    /// `env` or `headers`: strings (numbers and booleans are written as
    /// text; `null` leaves the entry out).
    fn string_map(
        &mut self,
        path: &str,
        o: &Map<String, Value>,
        field: &str,
    ) -> Result<Vec<(String, String)>, Fail> {
        let map = match o.get(field) {
            None | Some(Value::Null) => return Ok(Vec::new()),
            Some(Value::Object(m)) => m,
            Some(v) => {
                return Err((
                    format!("{path}.{field}"),
                    format!("expected an object of strings, found {}", kind(v)),
                ));
            }
        };
        let mut out = Vec::with_capacity(map.len());
        for (k, v) in map {
            let at = format!("{path}.{field}{}", segment(k));
            let text = match v {
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                Value::Bool(b) => b.to_string(),
                Value::Null => {
                    self.warnings.push(format!("{at}: null: left out"));
                    continue;
                }
                v => return Err((at, format!("expected a string, found {}", kind(v)))),
            };
            out.push((k.clone(), self.translate(&at, &text)));
        }
        Ok(out)
    }

    /// A valid, unused service name for `raw`.
    fn unique_name(&mut self, path: &str, raw: &str, taken: &mut HashSet<String>) -> String {
        let base = sanitize_name(raw);
        let mut name = base.clone();
        let mut n = 2;
        while taken.contains(&name) {
            name = format!("{base}-{n}");
            n += 1;
        }
        if name != raw {
            let why = if base == raw {
                "the name is taken"
            } else {
                "mcpvisor names allow only A-Z a-z 0-9 - _ ."
            };
            self.warnings
                .push(format!("{path}: imported as service `{name}` ({why})"));
        }
        taken.insert(name.clone());
        name
    }

    /// `value` with its variable references in mcpvisor's syntax (see the
    /// module documentation).
    fn translate(&mut self, path: &str, value: &str) -> String {
        let mut out = String::with_capacity(value.len());
        let mut rest = value;
        while let Some(at) = rest.find('$') {
            out.push_str(&rest[..at]);
            let after = &rest[at..];
            let Some(end) = after.strip_prefix("${").and_then(|b| b.find('}')) else {
                out.push_str("$$");
                rest = &after[1..];
                continue;
            };
            let inner = &after[2..2 + end];
            rest = &after[3 + end..];
            if let Some(var) = inner.strip_prefix("env:").filter(|v| is_identifier(v)) {
                out.push_str(&format!("${{{var}}}"));
            } else if let Some(id) = inner.strip_prefix("input:").filter(|i| !i.is_empty()) {
                let var = env_name(&["input", id]);
                out.push_str(&format!("${{{var}}}"));
                self.input_warning(path, id, &var);
            } else if inner == "userHome" {
                out.push_str("${HOME}");
            } else if inner == "pathSeparator" || inner == "/" {
                out.push('/');
            } else if is_identifier(inner.split_once(":-").map_or(inner, |(n, _)| n))
                && !VSCODE_VARIABLES.contains(&inner)
            {
                out.push_str(&format!("${{{inner}}}"));
            } else {
                out.push_str(&format!("$${{{inner}}}"));
                self.warnings.push(format!(
                    "{path}: `${{{inner}}}` is an editor variable mcpvisor cannot resolve; \
                     kept as literal text, replace it by hand"
                ));
            }
        }
        out.push_str(rest);
        out
    }

    fn input_warning(&mut self, path: &str, id: &str, var: &str) {
        let input = self
            .inputs
            .into_iter()
            .flatten()
            .find(|i| i.get("id").and_then(Value::as_str) == Some(id));
        let about = match input {
            None => " (not declared in `inputs`)".to_owned(),
            Some(i) => {
                let description = i
                    .get("description")
                    .and_then(Value::as_str)
                    .map(|d| format!(": {}", printable(d)))
                    .unwrap_or_default();
                let secret = if i.get("password").and_then(Value::as_bool) == Some(true) {
                    ", a secret"
                } else {
                    ""
                };
                format!(" (VS Code prompt{secret}{description})")
            }
        };
        self.warnings.push(format!(
            "{path}: `${{input:{id}}}`{about} cannot be prompted for; it became `${{{var}}}`: \
             set {var} in mcpvisor's environment"
        ));
    }
}

fn get_str<'a>(
    o: &'a Map<String, Value>,
    path: &str,
    field: &str,
) -> Result<Option<&'a str>, Fail> {
    match o.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(v) => Err((
            format!("{path}.{field}"),
            format!("expected a string, found {}", kind(v)),
        )),
    }
}

fn get_bool(o: &Map<String, Value>, path: &str, field: &str) -> Result<Option<bool>, Fail> {
    match o.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(v) => Err((
            format!("{path}.{field}"),
            format!("expected true or false, found {}", kind(v)),
        )),
    }
}

fn inputs_of(o: &Map<String, Value>) -> Option<&Vec<Value>> {
    o.get("inputs").and_then(Value::as_array)
}

/// VS Code's predefined variables without a mcpvisor meaning.
const VSCODE_VARIABLES: &[&str] = &[
    "workspaceFolder",
    "workspaceFolderBasename",
    "workspaceRoot",
    "file",
    "fileWorkspaceFolder",
    "relativeFile",
    "relativeFileDirname",
    "fileBasename",
    "fileBasenameNoExtension",
    "fileExtname",
    "fileDirname",
    "fileDirnameBasename",
    "cwd",
    "lineNumber",
    "columnNumber",
    "selectedText",
    "execPath",
    "defaultBuildTask",
];

fn transport_named(t: &str) -> Option<TransportKind> {
    let t: String = t
        .chars()
        .filter(|c| !"-_ ".contains(*c))
        .collect::<String>()
        .to_ascii_lowercase();
    match t.as_str() {
        "stdio" => Some(TransportKind::Stdio),
        "http" | "streamablehttp" | "streamable" => Some(TransportKind::StreamableHttp),
        "sse" => Some(TransportKind::Sse),
        _ => None,
    }
}

/// Whether a URL's path ends with `/sse` (the legacy transport's usual
/// endpoint).
fn ends_with_sse(url: &str) -> bool {
    let path = url.split(['?', '#']).next().unwrap_or(url);
    let path = path.strip_suffix('/').unwrap_or(path);
    path.to_ascii_lowercase().ends_with("/sse")
}

fn sanitize_name(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut gap = false;
    for c in raw.chars() {
        if c.is_ascii_alphanumeric() || "-_.".contains(c) {
            if gap && !out.is_empty() {
                out.push('-');
            }
            gap = false;
            out.push(c);
        } else {
            gap = true;
        }
    }
    if out.is_empty() { "server".into() } else { out }
}

/// An environment variable name made of `parts`: upper case, `_` between
/// and for every other character.
fn env_name(parts: &[&str]) -> String {
    let mut out = String::new();
    for part in parts {
        for c in part.chars() {
            let c = if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            };
            if !(c == '_' && (out.is_empty() || out.ends_with('_'))) {
                out.push(c);
            }
        }
        if !out.is_empty() && !out.ends_with('_') {
            out.push('_');
        }
    }
    let out = out.trim_end_matches('_');
    match out.chars().next() {
        Some(c) if !c.is_ascii_digit() => out.to_owned(),
        _ => format!("V_{out}"),
    }
}

fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// One `key = value` line, both spelt by the `toml` crate.
fn kv(key: &str, value: toml::Value) -> String {
    let mut line = toml::Table::new();
    line.insert(key.to_owned(), value);
    line.to_string()
}

/// `$` doubled, as mcpvisor interpolates the whole config text.
fn escape_dollars(s: &str) -> String {
    s.replace('$', "$$")
}

/// `.key`, or `["key"]` for a key that is not a plain word.
fn segment(key: &str) -> String {
    let plain = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if plain {
        format!(".{key}")
    } else {
        format!("[{}]", Value::String(key.to_owned()))
    }
}

/// Text fit for one comment line.
fn printable(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// JSONC to JSON: comments and trailing commas become spaces, so the line
/// and column of every other byte stay the same.
fn strip_jsonc(text: &str) -> String {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let b = text.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut comma = None;
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        match c {
            b'"' => {
                comma = None;
                let start = i;
                i += 1;
                while i < b.len() && b[i] != b'"' {
                    i += if b[i] == b'\\' { 2 } else { 1 };
                }
                i = (i + 1).min(b.len());
                out.extend_from_slice(&b[start..i]);
            }
            b'/' if b.get(i + 1) == Some(&b'/') => {
                while i < b.len() && b[i] != b'\n' {
                    out.push(b' ');
                    i += 1;
                }
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                out.extend_from_slice(b"  ");
                i += 2;
                while i < b.len() && !(b[i] == b'*' && b.get(i + 1) == Some(&b'/')) {
                    out.push(if b[i] == b'\n' { b'\n' } else { b' ' });
                    i += 1;
                }
                if i < b.len() {
                    out.extend_from_slice(b"  ");
                    i += 2;
                }
            }
            b',' => {
                comma = Some(out.len());
                out.push(c);
                i += 1;
            }
            b'}' | b']' => {
                if let Some(at) = comma.take() {
                    out[at] = b' ';
                }
                out.push(c);
                i += 1;
            }
            _ => {
                if !c.is_ascii_whitespace() {
                    comma = None;
                }
                out.push(c);
                i += 1;
            }
        }
    }
    // Only ASCII bytes were replaced, by ASCII; a string cut short by the end
    // of the text is copied whole.
    String::from_utf8(out).unwrap_or_else(|_| text.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn env(k: &str) -> Option<String> {
        match k {
            "GITHUB_TOKEN" => Some("gho_fromenv".into()),
            "INPUT_PERPLEXITY_KEY" => Some("pplx-fromenv".into()),
            "HOME" => Some("/home/me".into()),
            _ => None,
        }
    }

    /// Imports and loads the result, as `serve` would.
    fn load(file: &str, json: &str) -> (Imported, Config) {
        let imported = to_toml(Path::new(file), json).expect("import");
        let config = Config::parse(Path::new("imported.toml"), &imported.toml, &env)
            .unwrap_or_else(|e| panic!("{e}\n{}", imported.toml));
        (imported, config)
    }

    fn map(pairs: &[(&str, &str)]) -> std::collections::BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn error(file: &str, json: &str) -> String {
        to_toml(Path::new(file), json).unwrap_err().to_string()
    }

    const CLAUDE: &str = r#"{
  "mcpServers": {
    "filesystem": {
      "command": "npx",
      "args": [
        "-y",
        "@modelcontextprotocol/server-filesystem",
        "/Users/me/Desktop",
        "/Users/me/Downloads"
      ]
    },
    "github": {
      "command": "npx",
      "args": ["-y", "@modelcontextprotocol/server-github"],
      "env": {
        "GITHUB_PERSONAL_ACCESS_TOKEN": "ghp_0123456789abcdefghijklmnopqrstuvwxyz"
      }
    }
  },
  "globalShortcut": "Ctrl+Space"
}"#;

    #[test]
    fn claude_desktop_stdio_servers() {
        let (imported, config) = load("claude_desktop_config.json", CLAUDE);
        assert!(imported.warnings.is_empty(), "{:?}", imported.warnings);
        assert!(
            imported
                .toml
                .starts_with("# mcpvisor configuration imported from claude_desktop_config.json\n"),
            "{}",
            imported.toml
        );
        let [fs, gh] = &config.services[..] else {
            panic!("{:?}", config.services);
        };
        assert_eq!(fs.name, "filesystem");
        assert_eq!(fs.transport, TransportKind::Stdio);
        assert_eq!(fs.command.as_deref(), Some("npx"));
        assert_eq!(
            fs.args,
            [
                "-y",
                "@modelcontextprotocol/server-filesystem",
                "/Users/me/Desktop",
                "/Users/me/Downloads"
            ]
        );
        assert!(fs.env.is_empty() && fs.url.is_none() && fs.manifest.is_none());
        assert!(fs.enabled);
        assert_eq!(gh.name, "github");
        assert_eq!(gh.args, ["-y", "@modelcontextprotocol/server-github"]);
        assert_eq!(
            gh.env,
            map(&[(
                "GITHUB_PERSONAL_ACCESS_TOKEN",
                "ghp_0123456789abcdefghijklmnopqrstuvwxyz"
            )])
        );
        // The secret is copied, with a hint to move it to the environment.
        assert!(
            imported.toml.contains(
                "#   GITHUB_PERSONAL_ACCESS_TOKEN = \"${GITHUB_PERSONAL_ACCESS_TOKEN}\"\n\
                 # and set GITHUB_PERSONAL_ACCESS_TOKEN in mcpvisor's environment.\n\
                 [services.env]\n"
            ),
            "{}",
            imported.toml
        );
        // Tools come live: the registry needs no manifest.
        config.registry().expect("registry");
    }

    #[test]
    fn file_order_is_kept() {
        let (_, config) = load(
            "c.json",
            r#"{"mcpServers": {"zeta": {"command": "z"}, "alpha": {"command": "a"}, "mid": {"command": "m"}}}"#,
        );
        let names: Vec<_> = config.services.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["zeta", "alpha", "mid"]);
    }

    #[test]
    fn cursor_remote_with_headers() {
        let (imported, config) = load(
            "mcp.json",
            r#"{
  "mcpServers": {
    "linear": {
      "url": "https://mcp.linear.app/mcp",
      "headers": { "Authorization": "Bearer lin_api_0123456789" }
    },
    "context7": {
      "transport": "streamable-http",
      "url": "https://mcp.context7.com/mcp",
      "headers": { "CONTEXT7_API_KEY": "ctx7sk-abc" }
    },
    "windsurf-style": { "serverUrl": "https://example.com/mcp/" }
  }
}"#,
        );
        assert!(imported.warnings.is_empty(), "{:?}", imported.warnings);
        let [linear, ctx7, ws] = &config.services[..] else {
            panic!("{:?}", config.services);
        };
        assert_eq!(linear.transport, TransportKind::StreamableHttp);
        assert_eq!(linear.url.as_deref(), Some("https://mcp.linear.app/mcp"));
        assert_eq!(
            linear.headers,
            map(&[("Authorization", "Bearer lin_api_0123456789")])
        );
        assert!(linear.command.is_none() && linear.args.is_empty());
        assert!(
            imported
                .toml
                .contains("#   Authorization = \"Bearer ${LINEAR_TOKEN}\"\n"),
            "{}",
            imported.toml
        );
        assert_eq!(ctx7.transport, TransportKind::StreamableHttp);
        assert_eq!(ctx7.headers, map(&[("CONTEXT7_API_KEY", "ctx7sk-abc")]));
        assert_eq!(ws.transport, TransportKind::StreamableHttp);
        assert_eq!(ws.url.as_deref(), Some("https://example.com/mcp/"));
    }

    #[test]
    fn sse_remotes() {
        let (_, config) = load(
            "mcp.json",
            r#"{"mcpServers": {
                "atlassian": {"type": "sse", "url": "https://mcp.atlassian.com/v1/sse"},
                "local-sse": {"url": "http://localhost:8931/sse"},
                "sse-in-host": {"url": "https://sse.example.com/mcp"}
            }}"#,
        );
        let kinds: Vec<_> = config.services.iter().map(|s| s.transport).collect();
        assert_eq!(
            kinds,
            [
                TransportKind::Sse,
                TransportKind::Sse,
                TransportKind::StreamableHttp
            ]
        );
        assert_eq!(
            config.services[0].url.as_deref(),
            Some("https://mcp.atlassian.com/v1/sse")
        );
    }

    const VSCODE: &str = r#"{
  // Workspace MCP servers (JSONC, as VS Code writes it).
  "inputs": [
    {
      "type": "promptString",
      "id": "perplexity-key",
      "description": "Perplexity API Key",
      "password": true
    }
  ],
  "servers": {
    "Perplexity": {
      "type": "stdio",
      "command": "npx",
      "args": ["-y", "server-perplexity-ask"],
      "env": { "PERPLEXITY_API_KEY": "${input:perplexity-key}" }
    },
    "github": {
      "type": "http",
      "url": "https://api.githubcopilot.com/mcp/",
      "headers": { "Authorization": "Bearer ${env:GITHUB_TOKEN}" }
    },
    "fetch": {
      "type": "stdio",
      "command": "uvx",
      "args": ["mcp-server-fetch", "--root", "${userHome}${/}notes", "${workspaceFolder}"],
      "envFile": "${workspaceFolder}/.env",
    },
  },
}"#;

    #[test]
    fn vscode_servers_inputs_and_variables() {
        let (imported, config) = load(".vscode/mcp.json", VSCODE);
        let toml = &imported.toml;
        assert!(toml.contains("the VS Code `servers` list"), "{toml}");
        assert!(
            toml.contains("PERPLEXITY_API_KEY = \"${INPUT_PERPLEXITY_KEY}\"\n"),
            "{toml}"
        );
        assert!(
            toml.contains("Authorization = \"Bearer ${GITHUB_TOKEN}\"\n"),
            "{toml}"
        );
        // References need no secret hint.
        assert!(!toml.contains("Copied as written"), "{toml}");

        let [pplx, gh, fetch] = &config.services[..] else {
            panic!("{:?}", config.services);
        };
        assert_eq!(pplx.name, "Perplexity");
        assert_eq!(pplx.transport, TransportKind::Stdio);
        assert_eq!(pplx.env, map(&[("PERPLEXITY_API_KEY", "pplx-fromenv")]));
        assert_eq!(gh.transport, TransportKind::StreamableHttp);
        assert_eq!(
            gh.url.as_deref(),
            Some("https://api.githubcopilot.com/mcp/")
        );
        assert_eq!(gh.headers, map(&[("Authorization", "Bearer gho_fromenv")]));
        assert_eq!(fetch.command.as_deref(), Some("uvx"));
        assert_eq!(
            fetch.args,
            [
                "mcp-server-fetch",
                "--root",
                "/home/me/notes",
                "${workspaceFolder}"
            ]
        );

        let w = imported.warnings.join("\n");
        assert_eq!(imported.warnings.len(), 3, "{w}");
        assert!(
            w.contains(
                "servers.Perplexity.env.PERPLEXITY_API_KEY: `${input:perplexity-key}` \
                 (VS Code prompt, a secret: Perplexity API Key) cannot be prompted for; \
                 it became `${INPUT_PERPLEXITY_KEY}`: set INPUT_PERPLEXITY_KEY"
            ),
            "{w}"
        );
        assert!(
            w.contains("servers.fetch.args[3]: `${workspaceFolder}` is an editor variable"),
            "{w}"
        );
        assert!(w.contains("servers.fetch.envFile: not imported"), "{w}");

        // Without the input's variable the config does not load, and says why.
        let err = Config::parse(Path::new("imported.toml"), toml, &|k| {
            (k == "GITHUB_TOKEN").then(|| "t".to_owned())
        })
        .unwrap_err()
        .to_string();
        assert!(err.contains("`INPUT_PERPLEXITY_KEY` is not set"), "{err}");
    }

    #[test]
    fn vscode_settings_json_mcp_section() {
        let json = r#"{"editor.fontSize": 13, "mcp": {"servers": {"time": {"command": "uvx", "args": ["mcp-server-time"]}}}}"#;
        assert!(looks_like_servers_json(json));
        let (_, config) = load("settings.json", json);
        assert_eq!(config.services[0].name, "time");
        assert_eq!(config.services[0].args, ["mcp-server-time"]);
    }

    #[test]
    fn disabled_server_and_unknown_keys() {
        let (imported, config) = load(
            "cline_mcp_settings.json",
            r#"{"mcpServers": {
                "brave-search": {
                    "command": "npx",
                    "args": ["-y", "@modelcontextprotocol/server-brave-search"],
                    "env": {"BRAVE_API_KEY": "BSA-xyz"},
                    "disabled": true,
                    "autoApprove": [],
                    "transportType": "stdio"
                },
                "on": {"command": "x", "disabled": false}
            }}"#,
        );
        assert!(!config.services[0].enabled);
        assert!(config.services[1].enabled);
        assert!(imported.toml.contains("enabled = false\n"));
        assert_eq!(
            imported.warnings,
            ["mcpServers.brave-search.autoApprove: ignored: mcpvisor has no such setting"]
        );
    }

    #[test]
    fn empty_server_list() {
        let (imported, config) = load("claude_desktop_config.json", r#"{"mcpServers": {}}"#);
        assert!(config.services.is_empty());
        assert_eq!(
            imported.warnings,
            ["mcpServers: no servers; the config has no services"]
        );
    }

    #[test]
    fn names_are_sanitised_and_unique() {
        let (imported, config) = load(
            "c.json",
            r#"{"mcpServers": {
                "My Server (work)": {"command": "a"},
                "My-Server-work": {"command": "b"},
                "@scope/pkg": {"command": "c"},
                "日本": {"command": "d"}
            }}"#,
        );
        let names: Vec<_> = config.services.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(
            names,
            ["My-Server-work", "My-Server-work-2", "scope-pkg", "server"]
        );
        assert_eq!(imported.warnings.len(), 4, "{:?}", imported.warnings);
        assert!(
            imported.warnings[0].starts_with(
                "mcpServers[\"My Server (work)\"]: imported as service `My-Server-work`"
            )
        );
        assert!(imported.warnings[1].contains("(the name is taken)"));
        assert!(
            imported.toml.contains("# \"My Server (work)\" in c.json\n"),
            "{}",
            imported.toml
        );
    }

    #[test]
    fn quotes_backslashes_and_dollars_survive() {
        let args = [
            r#"say "hi""#,
            r"C:\Program Files\node\server.js",
            "it's",
            "cost $5 or $$",
            "${NOT_CLOSED",
            "tab\there",
        ];
        let json = serde_json::json!({"mcpServers": {"s": {
            "command": r"C:\tools\run.exe",
            "args": args,
            "env": {"WEIRD KEY": "a\"b", "DEFAULTED": "${MISSING:-fallback}"},
        }}});
        let (_, config) = load("c.json", &json.to_string());
        let s = &config.services[0];
        assert_eq!(s.command.as_deref(), Some(r"C:\tools\run.exe"));
        assert_eq!(s.args, args);
        assert_eq!(
            s.env,
            map(&[("WEIRD KEY", "a\"b"), ("DEFAULTED", "fallback")])
        );
    }

    #[test]
    fn stdio_fields_of_a_remote_are_dropped() {
        let (imported, config) = load(
            "c.json",
            r#"{"mcpServers": {"r": {"type": "http", "url": "https://x.example/mcp", "command": "npx", "args": ["a"]}}}"#,
        );
        assert!(config.services[0].command.is_none());
        assert_eq!(
            imported.warnings,
            [
                "mcpServers.r.command: ignored: an http server does not use it",
                "mcpServers.r.args: ignored: an http server does not use it"
            ]
        );
    }

    #[test]
    fn broken_inputs_name_file_and_field() {
        assert_eq!(
            error(
                "mcp.json",
                "{\n  \"mcpServers\": {\n    \"a\": {\"command\": }\n}"
            ),
            "mcp.json:3:22: not valid JSON: expected value"
        );
        assert!(
            error("mcp.json", "[server]\nlisten = 1").starts_with("mcp.json:1:2: not valid JSON"),
        );
        assert_eq!(
            error("package.json", r#"{"name": "x", "dependencies": {}}"#),
            "package.json: no `mcpServers` (Claude Desktop, Cursor, Windsurf) or `servers` \
             (VS Code) object at the top level"
        );
        assert_eq!(
            error("mcp.json", r#"{"servers": {"github": {"command": 42}}}"#),
            "mcp.json: servers.github.command: expected a string, found a number"
        );
        assert_eq!(
            error(
                "mcp.json",
                r#"{"servers": {"github": {"command": "x", "args": "a b"}}}"#
            ),
            "mcp.json: servers.github.args: expected an array of strings, found a string"
        );
        assert_eq!(
            error(
                "mcp.json",
                r#"{"servers": {"github": {"command": "x", "args": ["a", 1]}}}"#
            ),
            "mcp.json: servers.github.args: expected an array of strings, found a number at [1]"
        );
        assert_eq!(
            error("c.json", r#"{"mcpServers": {"x": {"env": {"A": "b"}}}}"#),
            "c.json: mcpServers.x: needs a `command` (a stdio server) or a `url` (a remote server)"
        );
        assert_eq!(
            error(
                "c.json",
                r#"{"mcpServers": {"x": {"type": "websocket", "url": "wss://x"}}}"#
            ),
            "c.json: mcpServers.x.type: unknown transport `websocket` \
             (expected stdio, http, streamable-http or sse)"
        );
        assert_eq!(
            error(
                "c.json",
                r#"{"mcpServers": {"x": {"type": "sse", "command": "y"}}}"#
            ),
            "c.json: mcpServers.x.url: missing: an sse server needs a url"
        );
        assert_eq!(
            error(
                "c.json",
                r#"{"mcpServers": {"x": {"url": "ftp://files.example"}}}"#
            ),
            "c.json: mcpServers.x.url: unsupported scheme `ftp` (expected http or https)"
        );
        assert_eq!(
            error(
                "c.json",
                r#"{"mcpServers": {"x": {"command": "y", "env": {"A": [1]}}}}"#
            ),
            "c.json: mcpServers.x.env.A: expected a string, found an array"
        );
        assert_eq!(
            error(
                "c.json",
                r#"{"mcpServers": {"x": {"command": "y", "disabled": "yes"}}}"#
            ),
            "c.json: mcpServers.x.disabled: expected true or false, found a string"
        );
        assert_eq!(
            error("c.json", r#"{"mcpServers": []}"#),
            "c.json: mcpServers: expected an object of servers by name, found an array"
        );
    }

    #[test]
    fn recognises_server_lists() {
        assert!(looks_like_servers_json(CLAUDE));
        assert!(looks_like_servers_json(VSCODE));
        assert!(looks_like_servers_json("\u{feff}{\"mcpServers\": {}}"));
        assert!(!looks_like_servers_json(crate::config::DEFAULT_CONFIG));
        assert!(!looks_like_servers_json(r#"{"tools": []}"#));
        assert!(!looks_like_servers_json(r#"{"servers": 3}"#));
        assert!(!looks_like_servers_json("not json"));
    }

    #[test]
    fn jsonc_keeps_strings_and_positions() {
        let text = "{\"a\": \"// not a comment, /* nor this */\", /* c */ \"b\": [1, 2,],}";
        let stripped = strip_jsonc(text);
        assert_eq!(stripped.len(), text.len());
        let v: Value = serde_json::from_str(&stripped).unwrap();
        assert_eq!(v["a"], "// not a comment, /* nor this */");
        assert_eq!(v["b"], serde_json::json!([1, 2]));
    }
}
