//! The tool table: which services offer which tool, with what schema and
//! metadata.
//!
//! Inputs are the manifests (per logical service) and each replica's live
//! `tools/list`. Whenever an input changes the table is rebuilt and swapped
//! in whole, so the hot path (every call, every `tools/list`) reads a
//! consistent snapshot without locks. Replicas of one logical service are
//! merged into one entry; distinct services offering the same name are
//! disambiguated by prefixing the service name (`asana.get_task`).
//!
//! Beside the tool table the registry holds the [`Catalog`] of everything
//! else services offer (resources, templates, prompts), which the relay
//! routes by.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, OnceLock};

use arc_swap::ArcSwap;
use rmcp::model::{Tool, ToolAnnotations};
use serde_json::{Map, Value};

use crate::catalog::Catalog;
use crate::manifest::{Annotations, Manifest, ToolManifest};

/// One tool as clients see it.
#[derive(Debug)]
pub struct ToolEntry {
    /// The tool as advertised downstream (name possibly prefixed).
    pub tool: Tool,
    /// The name the upstream knows it by.
    pub upstream_name: String,
    /// Logical service offering it.
    pub group: String,
    /// Manifest metadata, when the manifest lists the tool.
    pub manifest: Option<ToolManifest>,
    /// Replicas that offer it.
    pub providers: Vec<String>,
    /// Compiled input schema, compiled at the first call and shared with
    /// the next table while the schema stays the same (`None` inside when
    /// the schema does not compile; the upstream then validates on its own).
    validator: Arc<OnceLock<Option<jsonschema::Validator>>>,
}

impl ToolEntry {
    /// Whether a call that may have run can be sent again.
    pub fn safe_to_repeat(&self) -> bool {
        let a = self.annotations();
        a.safe_to_repeat()
    }

    /// Effective annotations: live ones, else the manifest's.
    pub fn annotations(&self) -> Annotations {
        if let Some(a) = &self.tool.annotations {
            let live = Annotations {
                read_only_hint: a.read_only_hint,
                destructive_hint: a.destructive_hint,
                idempotent_hint: a.idempotent_hint,
                open_world_hint: a.open_world_hint,
            };
            if live != Annotations::default() {
                return live;
            }
        }
        self.manifest
            .as_ref()
            .map(|m| m.annotations.clone())
            .unwrap_or_default()
    }

    /// Checks arguments against the input schema; returns every violation.
    pub fn validate(&self, args: &Value) -> Result<(), Vec<String>> {
        let compiled = self.validator.get_or_init(|| {
            jsonschema::validator_for(&Value::Object((*self.tool.input_schema).clone())).ok()
        });
        let Some(v) = compiled else {
            return Ok(());
        };
        let errors: Vec<String> = v
            .iter_errors(args)
            .map(|e| {
                let at = e.instance_path().to_string();
                if at.is_empty() {
                    e.to_string()
                } else {
                    format!("{at}: {e}")
                }
            })
            .collect();
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }
}

/// An immutable snapshot of all tools.
#[derive(Debug, Default)]
pub struct ToolTable {
    by_name: HashMap<String, Arc<ToolEntry>>,
    ordered: Vec<Arc<ToolEntry>>,
    /// Under `never`: by logical service, the tool names it offers that an
    /// earlier service in the configuration holds (name, holder).
    refused: BTreeMap<String, Vec<(String, String)>>,
}

impl ToolTable {
    /// Logical services that offer a name another one holds, under the
    /// `never` naming policy: by service, each name and its holder.
    pub fn refused(&self) -> &BTreeMap<String, Vec<(String, String)>> {
        &self.refused
    }

    /// A tool by its downstream name.
    pub fn get(&self, name: &str) -> Option<&Arc<ToolEntry>> {
        self.by_name.get(name)
    }
    /// All tools, sorted by name (a deterministic order).
    pub fn tools(&self) -> &[Arc<ToolEntry>] {
        &self.ordered
    }
    /// Number of tools.
    pub fn len(&self) -> usize {
        self.ordered.len()
    }
    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.ordered.is_empty()
    }
}

#[derive(Default)]
struct Inputs {
    manifests: HashMap<String, Manifest>,
    /// service -> group, in configuration order.
    services: Vec<(String, String)>,
    /// service -> its live tools/list, once it answered.
    live: HashMap<String, Vec<Tool>>,
}

/// The shared tool registry.
#[derive(Default)]
pub struct Registry {
    naming: ToolNaming,
    inputs: Mutex<Inputs>,
    table: ArcSwap<ToolTable>,
    version: std::sync::atomic::AtomicU64,
    changed: tokio::sync::Notify,
    catalog: Catalog,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("tools", &self.table.load().len())
            .finish()
    }
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty registry naming tools by `naming`.
    pub fn with_naming(naming: ToolNaming) -> Self {
        Self {
            naming,
            ..Self::default()
        }
    }

    /// Resources, templates and prompts, per service.
    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    /// Tools offered by more than one logical service, with those services.
    pub fn conflicts(&self) -> Vec<(String, Vec<String>)> {
        let inputs = self.lock();
        let mut offered: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (service, group) in &inputs.services {
            let names: Vec<String> = match inputs.live.get(service) {
                Some(live) => live.iter().map(|t| t.name.to_string()).collect(),
                None => inputs
                    .manifests
                    .get(group)
                    .map(|m| m.tools.iter().map(|t| t.name.clone()).collect())
                    .unwrap_or_default(),
            };
            for name in names {
                let groups = offered.entry(name).or_default();
                if !groups.contains(group) {
                    groups.push(group.clone());
                }
            }
        }
        offered.into_iter().filter(|(_, g)| g.len() > 1).collect()
    }

    /// The current table.
    pub fn snapshot(&self) -> Arc<ToolTable> {
        self.table.load_full()
    }

    /// Increases every time the table changes.
    pub fn version(&self) -> u64 {
        self.version.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Resolves at the next change of the table. Enable it (or poll it
    /// once) before checking [`Self::version`] to not miss a change.
    pub fn changed(&self) -> tokio::sync::futures::Notified<'_> {
        self.changed.notified()
    }

    /// Manifest tools no replica offers now, as `(logical service, tool)`.
    pub fn unoffered(&self) -> Vec<(String, String)> {
        let inputs = self.lock();
        let table = self.snapshot();
        let mut gaps: Vec<(String, String)> = inputs
            .manifests
            .iter()
            .flat_map(|(group, m)| {
                m.tools
                    .iter()
                    .filter(|t| {
                        !table
                            .tools()
                            .iter()
                            .any(|e| e.group == *group && e.upstream_name == t.name)
                    })
                    .map(|t| (group.clone(), t.name.clone()))
                    .collect::<Vec<_>>()
            })
            .collect();
        gaps.sort();
        gaps
    }

    /// Declares a replica (and its logical service's manifest, if any).
    pub fn add_service(&self, service: &str, group: &str, manifest: Option<Manifest>) {
        let mut inputs = self.lock();
        if let Some(m) = manifest {
            inputs.manifests.insert(group.to_owned(), m);
        }
        if !inputs.services.iter().any(|(s, _)| s == service) {
            inputs.services.push((service.to_owned(), group.to_owned()));
        }
        self.rebuild(&inputs);
    }

    /// Forgets a replica (removed from the configuration): its tools leave
    /// the table, with its logical service's manifest when it was that
    /// service's last replica, and its resources and prompts.
    pub fn remove_service(&self, service: &str) {
        let mut inputs = self.lock();
        let Some(at) = inputs.services.iter().position(|(s, _)| s == service) else {
            return;
        };
        let (_, group) = inputs.services.remove(at);
        inputs.live.remove(service);
        if !inputs.services.iter().any(|(_, g)| *g == group) {
            inputs.manifests.remove(&group);
        }
        self.rebuild(&inputs);
        drop(inputs);
        self.catalog.remove(service);
    }

    /// Records a replica's live `tools/list`.
    pub fn set_live_tools(&self, service: &str, tools: Vec<Tool>) {
        let mut inputs = self.lock();
        if inputs.live.get(service) == Some(&tools) {
            return;
        }
        inputs.live.insert(service.to_owned(), tools);
        self.rebuild(&inputs);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inputs> {
        // A panic while holding this lock leaves consistent data behind
        // (every mutation is a single insert), so poisoning is ignored.
        self.inputs.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn rebuild(&self, inputs: &Inputs) {
        // upstream name -> group -> (tool, manifest entry, providers)
        let mut merged: BTreeMap<String, BTreeMap<String, Merged>> = BTreeMap::new();
        for (service, group) in &inputs.services {
            let manifest = inputs.manifests.get(group);
            let tools: Vec<Tool> = match inputs.live.get(service) {
                Some(live) => live.clone(),
                None => manifest
                    .map(|m| m.tools.iter().map(tool_from_manifest).collect())
                    .unwrap_or_default(),
            };
            for tool in tools {
                let slot = merged
                    .entry(tool.name.to_string())
                    .or_default()
                    .entry(group.clone())
                    .or_insert_with(|| {
                        let meta = manifest.and_then(|m| m.tool(&tool.name)).cloned();
                        (merge(tool.clone(), meta.as_ref()), meta, Vec::new())
                    });
                // A live list beats a manifest-derived placeholder.
                if inputs.live.contains_key(service) && !slot.2.iter().any(|s| is_live(inputs, s)) {
                    slot.0 = merge(tool, slot.1.as_ref());
                }
                slot.2.push(service.clone());
            }
        }
        let previous = self.table.load();
        let mut by_name = HashMap::new();
        let mut refused: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
        let group_order = |g: &str| inputs.services.iter().position(|(_, group)| group == g);
        for (name, groups) in merged {
            let conflict = groups.len() > 1;
            // Under `never`, the first service in configuration order keeps
            // a contested name; the others' tool is not offered.
            let keeper = groups.keys().min_by_key(|g| group_order(g)).cloned();
            for (group, (mut tool, manifest, providers)) in groups {
                let exposed = match self.naming {
                    ToolNaming::PrefixAlways => qualified(&group, &name),
                    ToolNaming::PrefixOnConflict if conflict => qualified(&group, &name),
                    ToolNaming::Never if conflict && keeper.as_deref() != Some(group.as_str()) => {
                        refused
                            .entry(group.clone())
                            .or_default()
                            .push((name.clone(), keeper.clone().unwrap_or_default()));
                        continue;
                    }
                    _ => name.clone(),
                };
                tool.name = exposed.clone().into();
                // Compiling is the costly part of a table (a 10,000-tool
                // list): it happens at a tool's first call, once per schema.
                let validator = previous
                    .by_name
                    .get(&exposed)
                    .filter(|e| e.tool.input_schema == tool.input_schema)
                    .map(|e| Arc::clone(&e.validator))
                    .unwrap_or_default();
                by_name.insert(
                    exposed,
                    Arc::new(ToolEntry {
                        tool,
                        upstream_name: name.clone(),
                        group,
                        manifest,
                        providers,
                        validator,
                    }),
                );
            }
        }
        let mut ordered: Vec<_> = by_name.values().cloned().collect();
        ordered.sort_by(|a, b| a.tool.name.cmp(&b.tool.name));
        self.table.store(Arc::new(ToolTable {
            by_name,
            ordered,
            refused,
        }));
        self.version
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        self.changed.notify_waiters();
    }
}

/// How tools of different logical services are named downstream.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ToolNaming {
    /// `service.tool` only where two services offer the same name.
    #[default]
    PrefixOnConflict,
    /// Always `service.tool`.
    PrefixAlways,
    /// Never prefixed; two services offering one name is a config error.
    Never,
}

/// `group.tool`, kept within MCP's 64 characters: a name that would be
/// longer is cut and ends in a hash of the whole, so it stays unique.
pub fn qualified(group: &str, tool: &str) -> String {
    let full = format!("{group}.{tool}");
    if full.len() <= 64 {
        return full;
    }
    // FNV-1a: small, stable across builds and platforms.
    let hash = full.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    let suffix = format!("-{:08x}", hash as u32);
    let mut cut = 64 - suffix.len();
    while !full.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}{suffix}", &full[..cut])
}

/// One tool of one logical service while the table is built: the tool,
/// its manifest entry, and the replicas offering it.
type Merged = (Tool, Option<ToolManifest>, Vec<String>);

fn is_live(inputs: &Inputs, service: &str) -> bool {
    inputs.live.contains_key(service)
}

/// The MCP view of a manifest entry.
pub fn tool_from_manifest(m: &ToolManifest) -> Tool {
    let mut tool = Tool::default();
    tool.name = m.name.clone().into();
    tool.title = m.title.clone();
    tool.description = Some(m.description.clone().into());
    tool.input_schema = Arc::new(m.input_schema.clone());
    tool.annotations = Some(annotations(&m.annotations, m.title.clone()));
    tool
}

fn annotations(a: &Annotations, title: Option<String>) -> ToolAnnotations {
    let mut t = ToolAnnotations::default();
    t.title = title;
    t.read_only_hint = a.read_only_hint;
    t.destructive_hint = a.destructive_hint;
    t.idempotent_hint = a.idempotent_hint;
    t.open_world_hint = a.open_world_hint;
    t
}

/// A live tool completed with manifest data: the live schema and
/// description win; annotations and a title fill in where the live tool
/// has none; the manifest's category, priority and streaming go to `_meta`.
fn merge(mut live: Tool, manifest: Option<&ToolManifest>) -> Tool {
    let Some(m) = manifest else {
        return live;
    };
    if live.title.is_none() {
        live.title = m.title.clone();
    }
    if live.description.as_deref().is_none_or(str::is_empty) {
        live.description = Some(m.description.clone().into());
    }
    if live.input_schema.is_empty() {
        live.input_schema = Arc::new(m.input_schema.clone());
    }
    let empty = live.annotations.as_ref().is_none_or(|a| {
        a.read_only_hint.is_none() && a.idempotent_hint.is_none() && a.destructive_hint.is_none()
    });
    if empty {
        live.annotations = Some(annotations(&m.annotations, m.title.clone()));
    }
    let mut meta: Map<String, Value> = live.meta.take().map(|m| m.0).unwrap_or_default();
    if let Ok(v) = serde_json::to_value(serde_json::json!({
        "category": m.category,
        "priority": m.priority,
        "streaming": m.streaming,
        "performance": m.performance,
    })) {
        meta.insert("io.mcpvisor/manifest".into(), v);
    }
    live.meta = Some(rmcp::model::MetaObject(meta));
    live
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn manifest() -> Manifest {
        serde_json::from_value(json!({
            "service": "asana",
            "tools": [
                {"name": "get", "description": "gets", "inputSchema": {"type": "object",
                  "properties": {"id": {"type": "string"}}, "required": ["id"]},
                 "annotations": {"readOnlyHint": true}, "category": "search"},
                {"name": "create", "description": "creates", "inputSchema": {"type": "object"},
                 "annotations": {"readOnlyHint": false}, "category": "task_management"}
            ]
        }))
        .unwrap()
    }

    #[test]
    fn replicas_merge_and_manifest_fills_metadata() {
        let r = Registry::new();
        r.add_service("a1", "asana", Some(manifest()));
        r.add_service("a2", "asana", None);
        let t = r.snapshot();
        assert_eq!(t.len(), 2);
        let get = t.get("get").unwrap();
        assert_eq!(get.providers, vec!["a1", "a2"]);
        assert!(get.safe_to_repeat());
        assert!(!t.get("create").unwrap().safe_to_repeat());
        let names: Vec<_> = t.tools().iter().map(|e| e.tool.name.to_string()).collect();
        assert_eq!(names, vec!["create", "get"]);
    }

    #[test]
    fn live_list_wins_for_schema_and_limits_providers() {
        let r = Registry::new();
        r.add_service("a1", "asana", Some(manifest()));
        r.add_service("a2", "asana", None);
        let mut live = Tool::default();
        live.name = "get".into();
        live.input_schema = Arc::new(
            json!({"type": "object", "properties": {"id": {"type": "integer"}}})
                .as_object()
                .unwrap()
                .clone(),
        );
        r.set_live_tools("a1", vec![live]);
        let t = r.snapshot();
        let get = t.get("get").unwrap();
        assert!(get.validate(&json!({"id": 3})).is_ok());
        assert!(get.validate(&json!({"id": "x"})).is_err());
        // Manifest annotations fill in where the live tool has none.
        assert!(get.safe_to_repeat());
        // a1 no longer lists `create`; a2 has not answered yet and keeps the manifest's view.
        assert_eq!(t.get("create").unwrap().providers, vec!["a2"]);
    }

    #[test]
    fn conflicting_services_are_prefixed() {
        let r = Registry::new();
        r.add_service("a1", "asana", Some(manifest()));
        let mut other = manifest();
        other.service = "notion".into();
        other.tools.truncate(1);
        r.add_service("n1", "notion", Some(other));
        let t = r.snapshot();
        assert!(t.get("asana.get").is_some());
        assert!(t.get("notion.get").is_some());
        assert!(t.get("create").is_some());
        assert_eq!(t.get("notion.get").unwrap().upstream_name, "get");
    }

    #[test]
    fn naming_policies() {
        let two = |naming| {
            let r = Registry::with_naming(naming);
            r.add_service("a1", "asana", Some(manifest()));
            let mut other = manifest();
            other.tools.truncate(1);
            r.add_service("n1", "notion", Some(other));
            let t = r.snapshot();
            let mut names: Vec<String> =
                t.tools().iter().map(|e| e.tool.name.to_string()).collect();
            names.sort();
            (names, r.conflicts())
        };
        let (names, conflicts) = two(ToolNaming::PrefixAlways);
        assert_eq!(names, vec!["asana.create", "asana.get", "notion.get"]);
        assert_eq!(
            conflicts,
            vec![(
                "get".to_owned(),
                vec!["asana".to_owned(), "notion".to_owned()]
            )]
        );
        let (names, _) = two(ToolNaming::Never);
        assert_eq!(
            names,
            vec!["create", "get"],
            "the first service keeps the name"
        );
    }

    #[test]
    fn qualified_names_stay_within_64_valid_characters() {
        let long = "t".repeat(70);
        let a = qualified("svc", &long);
        let b = qualified("svc", &format!("{long}x"));
        assert_eq!(a.len(), 64);
        assert_ne!(a, b);
        assert!(crate::manifest::valid_tool_name(&a));
        assert_eq!(qualified("svc", "get"), "svc.get");
    }

    #[test]
    fn validation_reports_each_violation() {
        let r = Registry::new();
        r.add_service("a1", "asana", Some(manifest()));
        let t = r.snapshot();
        let errs = t
            .get("get")
            .unwrap()
            .validate(&json!({"id": 5}))
            .unwrap_err();
        assert_eq!(errs.len(), 1);
        assert!(errs[0].contains("/id"), "{errs:?}");
        assert!(t.get("get").unwrap().validate(&json!({})).is_err());
    }

    #[test]
    fn compiled_validators_outlive_rebuilds_of_the_same_schema() {
        let r = Registry::new();
        r.add_service("a1", "asana", Some(manifest()));
        let before = r.snapshot();
        assert!(
            before
                .get("get")
                .unwrap()
                .validate(&json!({"id": "1"}))
                .is_ok()
        );
        // Another replica joining rebuilds the table; the schema is the same.
        r.add_service("a2", "asana", None);
        let after = r.snapshot();
        let (old, new) = (before.get("get").unwrap(), after.get("get").unwrap());
        assert!(!Arc::ptr_eq(old, new));
        assert!(Arc::ptr_eq(&old.validator, &new.validator));
        assert!(new.validator.get().is_some(), "compiled once, kept");
        // A live list with a different schema gets a fresh validator.
        let mut live = tool_from_manifest(manifest().tool("get").unwrap());
        live.input_schema = Arc::new(
            json!({"type": "object", "required": ["gid"]})
                .as_object()
                .unwrap()
                .clone(),
        );
        r.set_live_tools("a1", vec![live]);
        let changed = r.snapshot();
        let entry = changed.get("get").unwrap();
        assert!(!Arc::ptr_eq(&entry.validator, &new.validator));
        assert!(entry.validate(&json!({"id": "1"})).is_err());
    }
}
