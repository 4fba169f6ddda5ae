//! Tool manifests: what a service's tools are for, beyond what MCP says.
//!
//! A manifest (`manifests/<service>.json`) lists a service's tools with the
//! metadata MCP has no field for — category, routing priority, streaming mode,
//! performance hints — next to a description, an input schema and MCP
//! annotations. A live `tools/list` from the service wins for schemas and
//! descriptions; the manifest supplies the rest (see [`crate::registry`]).
//!
//! Loading is strict: unknown fields are refused, and every error names the
//! file, the line and the field, so a typo is found in seconds.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// One service's manifest.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Manifest {
    /// Logical service the tools belong to.
    pub service: String,
    /// Version of the upstream server the manifest describes.
    #[serde(default)]
    pub version: Option<String>,
    /// What the service is.
    #[serde(default)]
    pub description: Option<String>,
    /// The tools.
    pub tools: Vec<ToolManifest>,
}

/// One tool's manifest entry.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ToolManifest {
    /// MCP tool name.
    pub name: String,
    /// Human-friendly title.
    #[serde(default)]
    pub title: Option<String>,
    /// What the tool does.
    pub description: String,
    /// JSON Schema of the arguments.
    pub input_schema: Map<String, Value>,
    /// MCP behaviour hints.
    #[serde(default)]
    pub annotations: Annotations,
    /// Functional grouping.
    pub category: Category,
    /// Routing and scheduling priority.
    #[serde(default)]
    pub priority: Priority,
    /// How calls to this tool are streamed to clients (`null`: not at all).
    #[serde(default)]
    pub streaming: Option<Streaming>,
    /// Performance hints.
    #[serde(default)]
    pub performance: Performance,
    /// How results of this tool are cached (reads), or which cached reads
    /// a call of it makes stale (writes). Absent: the `[cache]` defaults.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache: Option<CacheHint>,
    /// How calls of this single-item read fold into one multi-get call
    /// when they come in one batch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch: Option<MultiGet>,
    /// Arguments that make a good call of it (the streaming self-test's
    /// default call).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub example: Option<Map<String, Value>>,
}

/// A single-item read's multi-get: `asana_get_task {task_id}` calls of one
/// batch become one `asana_get_multiple_tasks_by_gid {task_ids}` call, its
/// items handed back one per call.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct MultiGet {
    /// The multi-get tool.
    pub into: String,
    /// This tool's argument naming the item (a string).
    pub argument: String,
    /// The multi-get's argument taking the list of them.
    pub list_argument: String,
    /// Where the multi-get's result holds the items (a JSON pointer); one
    /// call's result is the multi-get's with the list replaced by its item.
    pub items_pointer: String,
    /// The field of an item that holds its id.
    pub item_key: String,
    /// Most items one multi-get call takes.
    pub max_items: usize,
}

/// A tool's `cache` block: `"off"`, or its rules.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(untagged)]
pub enum CacheHint {
    /// `"off"`: never cached.
    Off(CacheOff),
    /// Rules for this tool.
    Rules(CacheRules),
}

/// The word `off`.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CacheOff {
    Off,
}

/// How one tool's results are cached.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CacheRules {
    /// How long a result stays fresh (reads; `0`: not cached).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_ms: Option<u64>,
    /// Whether a result may be given to every client or only to the one
    /// that asked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<CacheScope>,
    /// Writes: the read tools whose cached results a call of this tool
    /// makes stale (empty: every cached result of the service).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub invalidates: Vec<String>,
}

/// Who may be given a cached result.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CacheScope {
    /// Any client allowed to call the tool.
    #[default]
    Shared,
    /// Only the client whose call produced it.
    PerClient,
}

/// MCP tool annotations (all hints; absent means the MCP default).
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Annotations {
    /// The tool does not modify its environment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_only_hint: Option<bool>,
    /// The tool may perform destructive updates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destructive_hint: Option<bool>,
    /// Repeating the call with the same arguments has no further effect.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotent_hint: Option<bool>,
    /// The tool talks to an open world of external entities.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub open_world_hint: Option<bool>,
}

impl Annotations {
    /// Whether re-sending a call that may have run is safe: the tool is
    /// read-only, or declared idempotent. MCP defaults (absent hints) are
    /// not safe.
    pub fn safe_to_repeat(&self) -> bool {
        self.read_only_hint == Some(true) || self.idempotent_hint == Some(true)
    }
}

/// Functional grouping of tools.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Category {
    /// Workspaces and organisations.
    Workspace,
    /// Tasks, subtasks and dependencies.
    TaskManagement,
    /// Projects, sections and statuses.
    ProjectManagement,
    /// Comments and conversations.
    Collaboration,
    /// Search.
    Search,
    /// Tags.
    Tagging,
    /// Anything else.
    Other,
}

/// Routing priority: higher-priority tools and services are preferred.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize, Serialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Priority {
    /// Rarely used.
    Low,
    /// The default.
    #[default]
    Medium,
    /// Everyday, latency-sensitive.
    High,
}

/// How a tool's calls are streamed.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(tag = "mode", rename_all = "snake_case", deny_unknown_fields)]
pub enum Streaming {
    /// Upstream progress notifications are passed through as they arrive.
    Progress,
    /// A large list in the result is delivered in chunks.
    #[serde(rename_all = "camelCase")]
    Incremental {
        /// Items per chunk.
        chunk_size: usize,
        /// JSON pointer to the array inside the result.
        items_pointer: String,
    },
    /// Status lines (routing, retries, waiting) while the call runs, and a
    /// "still working" line every `intervalMs`.
    #[serde(rename_all = "camelCase")]
    Status {
        /// Period of the "still working" line.
        #[serde(default = "default_status_interval")]
        interval_ms: u64,
    },
}

fn default_status_interval() -> u64 {
    1_000
}

/// Performance hints.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Performance {
    /// Typical duration of one call.
    #[serde(default)]
    pub estimated_duration_ms: Option<u64>,
    /// Whether the tool may be called in batches.
    #[serde(default)]
    pub batchable: bool,
}

/// A manifest that could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// The file could not be read.
    #[error("{file}: {source}")]
    Io {
        /// The file.
        file: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The JSON is malformed or a field is wrong.
    #[error("{file}:{line}:{column}: field `{field}`: {message}")]
    Invalid {
        /// The file.
        file: PathBuf,
        /// 1-based line (0 when unknown).
        line: usize,
        /// 1-based column (0 when unknown).
        column: usize,
        /// Path to the offending field, e.g. `tools[3].streaming.chunkSize`.
        field: String,
        /// What is wrong.
        message: String,
    },
}

/// Characters MCP allows in tool names.
pub fn valid_tool_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'/' | b'-'))
}

impl Manifest {
    /// Reads and validates a manifest file.
    pub fn load(path: &Path) -> Result<Self, ManifestError> {
        let text = std::fs::read_to_string(path).map_err(|source| ManifestError::Io {
            file: path.to_owned(),
            source,
        })?;
        Self::parse(path, &text)
    }

    /// Parses and validates manifest text; `file` is only used in errors.
    pub fn parse(file: &Path, text: &str) -> Result<Self, ManifestError> {
        let de = &mut serde_json::Deserializer::from_str(text);
        let manifest: Manifest = serde_path_to_error::deserialize(de).map_err(|e| {
            let field = e.path().to_string();
            let inner = e.into_inner();
            ManifestError::Invalid {
                file: file.to_owned(),
                line: inner.line(),
                column: inner.column(),
                field,
                message: inner.to_string(),
            }
        })?;
        manifest.validate(file, text)?;
        Ok(manifest)
    }

    fn validate(&self, file: &Path, text: &str) -> Result<(), ManifestError> {
        let mut seen = std::collections::HashSet::new();
        for (i, tool) in self.tools.iter().enumerate() {
            let fail = |field: &str, message: String| {
                let line = locate(text, &tool.name);
                ManifestError::Invalid {
                    file: file.to_owned(),
                    line,
                    column: 0,
                    field: format!("tools[{i}].{field}"),
                    message,
                }
            };
            if !valid_tool_name(&tool.name) {
                return Err(fail(
                    "name",
                    format!("`{}` is not 1-64 characters of [A-Za-z0-9_./-]", tool.name),
                ));
            }
            if !seen.insert(tool.name.as_str()) {
                return Err(fail("name", format!("duplicate tool `{}`", tool.name)));
            }
            if tool.input_schema.get("type") != Some(&Value::String("object".into())) {
                return Err(fail("inputSchema.type", "must be \"object\"".into()));
            }
            if let Err(e) = jsonschema::validator_for(&Value::Object(tool.input_schema.clone())) {
                return Err(fail("inputSchema", format!("not a valid JSON Schema: {e}")));
            }
            if let Some(Streaming::Incremental {
                chunk_size,
                items_pointer,
            }) = &tool.streaming
            {
                if *chunk_size == 0 {
                    return Err(fail("streaming.chunkSize", "must be at least 1".into()));
                }
                if !items_pointer.is_empty() && !items_pointer.starts_with('/') {
                    return Err(fail(
                        "streaming.itemsPointer",
                        format!("`{items_pointer}` is not a JSON pointer (must start with /)"),
                    ));
                }
            }
        }
        Ok(())
    }

    /// Finds a tool by name.
    pub fn tool(&self, name: &str) -> Option<&ToolManifest> {
        self.tools.iter().find(|t| t.name == name)
    }
}

/// Line of the first `"name": "<tool>"` in the text, for error messages.
fn locate(text: &str, tool: &str) -> usize {
    let needle = format!("\"{tool}\"");
    text.lines()
        .position(|l| l.contains("\"name\"") && l.contains(&needle))
        .map_or(0, |i| i + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Manifest, ManifestError> {
        Manifest::parse(Path::new("m.json"), text)
    }

    #[test]
    fn bundled_asana_manifest_loads() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../manifests/asana.json");
        let m = Manifest::load(&path).expect("bundled manifest is valid");
        assert_eq!(m.tools.len(), 42);
        let h = m
            .tool("asana_get_project_hierarchy")
            .expect("hierarchy tool");
        assert_eq!(h.streaming, Some(Streaming::Progress));
        assert!(h.annotations.safe_to_repeat());
        let create = m.tool("asana_create_task").expect("create tool");
        assert!(!create.annotations.safe_to_repeat());
    }

    #[test]
    fn wrong_field_type_names_line_and_field() {
        let text = r#"{
  "service": "x",
  "tools": [
    {
      "name": "t",
      "description": "d",
      "inputSchema": {"type": "object"},
      "category": "search",
      "streaming": {"mode": "incremental", "chunkSize": "ten", "itemsPointer": "/data"}
    }
  ]
}"#;
        let err = parse(text).unwrap_err();
        let ManifestError::Invalid {
            line,
            field,
            message,
            ..
        } = &err
        else {
            panic!("unexpected error {err}");
        };
        // serde reports a tagged enum's error where the object ends.
        assert!((9..=10).contains(line), "{err}");
        assert_eq!(field, "tools[0].streaming");
        assert!(message.contains("\"ten\""), "{err}");
    }

    #[test]
    fn unknown_field_is_refused() {
        let text = r#"{"service":"x","tools":[{"name":"t","description":"d",
            "inputSchema":{"type":"object"},"category":"search","prioritty":"high"}]}"#;
        let err = parse(text).unwrap_err().to_string();
        assert!(err.contains("prioritty"), "{err}");
    }

    #[test]
    fn duplicate_and_bad_names_are_refused() {
        let dup = r#"{"service":"x","tools":[
            {"name":"t","description":"d","inputSchema":{"type":"object"},"category":"search"},
            {"name":"t","description":"d","inputSchema":{"type":"object"},"category":"search"}]}"#;
        assert!(parse(dup).unwrap_err().to_string().contains("duplicate"));
        let bad = r#"{"service":"x","tools":[
            {"name":"a b","description":"d","inputSchema":{"type":"object"},"category":"search"}]}"#;
        assert!(
            parse(bad)
                .unwrap_err()
                .to_string()
                .contains("tools[0].name")
        );
    }

    #[test]
    fn invalid_schema_is_refused() {
        let text = r#"{"service":"x","tools":[{"name":"t","description":"d",
            "inputSchema":{"type":"object","properties":{"a":{"type":"nonsense"}}},"category":"search"}]}"#;
        assert!(parse(text).unwrap_err().to_string().contains("inputSchema"));
    }

    #[test]
    fn tool_names_follow_mcp_rules() {
        assert!(valid_tool_name("asana_get_task"));
        assert!(valid_tool_name("svc/tool.v2-x"));
        assert!(!valid_tool_name(""));
        assert!(!valid_tool_name(&"a".repeat(65)));
        assert!(!valid_tool_name("with space"));
    }
}
