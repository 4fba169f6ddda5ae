//! The in-memory data model of the simulated Asana service.
//!
//! A [`Workspace`] is a seeded, deterministic copy of an Asana account — users, workspaces, one team per
//! workspace, projects, sections, tasks and subtasks, comments (stories), tags and project status updates —
//! on which the 41 tools of `@roychri/mcp-server-asana` 1.8.0 plus `asana_get_project_hierarchy` operate
//! with real semantics: what one call creates, the next can fetch, change, move or delete.
//!
//! Shape of the module:
//! - `mod.rs` (this file): the public surface — [`Scale`], [`Workspace::seeded`], [`Workspace::call`]
//!   (the dispatch table), [`ToolOutput`], [`SimError`].
//! - `model.rs`: the entity records and their Asana-style JSON (compact records in lists, full records
//!   in get/create/update); `clock.rs`: the logical clock and ISO-8601 dates.
//! - `args.rs`: typed argument access, `opt_fields` and offset pagination.
//! - `seed.rs`: the PRNG and the seeding order that fixes every gid.
//! - one file per tool family: `tasks.rs`, `relations.rs`, `search.rs`, `projects.rs`, `tags.rs`,
//!   `hierarchy.rs`; unit tests in `tests/`.
//!
//! Conventions a caller may not guess: "me" (the authenticated user) is the workspace's first member;
//! `opt_fields` adds the named fields to compact list items and is otherwise ignored; `offset` tokens are
//! positions bound to the list they were issued for (a token from another list is an invalid argument);
//! `search_tasks` results are not capped; `search_projects` returns unarchived projects unless
//! `archived: true`; stories are comments only (no system stories).
//!
//! Determinism: gids come from one counter in a fixed order, time comes from a logical clock that only
//! mutating calls advance, and every collection is ordered (`BTreeMap`, `Vec`), so the same seed, scale
//! and call sequence give byte-identical results. No real time, no global randomness.
//!
//! Every result is an Asana API response body: `{"data": ...}`, plus `next_page` for paginated lists.
//! [`ToolOutput::work_units`] says how many REST requests the real server would have made, which the
//! server layer turns into simulated latency and progress notifications.

mod args;
mod clock;
mod hierarchy;
mod model;
mod projects;
mod relations;
mod search;
mod seed;
mod tags;
mod tasks;

use std::collections::BTreeMap;
use std::fmt;

use serde_json::{Map, Value};

use args::Args;
use clock::Timestamp;
use model::{Project, ProjectStatus, Section, Space, Story, Tag, Task, Team, User};

/// Gid of the first workspace seeded by `Workspace::seeded(_, Scale::default())`, whatever the seed.
pub const DEFAULT_FIRST_WORKSPACE_GID: &str = "1200000000000009";
/// Gid of the first project seeded by `Workspace::seeded(_, Scale::default())`, whatever the seed.
pub const DEFAULT_FIRST_PROJECT_GID: &str = "1200000000000023";

/// The first gid handed out; every entity takes the next one in seeding (then creation) order.
const FIRST_GID: u64 = 1_200_000_000_000_001;

/// Internal gid: Asana gids are numeric strings, kept here as numbers so maps sort by creation order.
type Gid = u64;
type Result<T> = std::result::Result<T, SimError>;

/// Size of the seeded data.
///
/// Seeding allocates gids in a fixed order — all users, then per workspace: the workspace, its team, its
/// tags, then per project: the project, its sections, their tasks (each followed by its comments and
/// subtasks) and the project's status updates. Hence the first workspace's gid is
/// `FIRST_GID + users` and the first project's is that plus `2 + tags_per_workspace`; they do not depend
/// on the seed. At least one user, and one section per project, are always seeded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scale {
    pub workspaces: usize,
    pub projects_per_workspace: usize,
    pub sections_per_project: usize,
    pub tasks_per_section: usize,
    pub subtasks_per_task: usize,
    pub tags_per_workspace: usize,
    pub users: usize,
}

impl Default for Scale {
    /// 2 workspaces × 6 projects × 4 sections × 25 tasks (1200 top-level tasks) with 2 subtasks each
    /// (2400 subtasks), 12 tags per workspace, 8 users. First workspace gid: `1200000000000009`
    /// ([`DEFAULT_FIRST_WORKSPACE_GID`]); first project gid: `1200000000000023`
    /// ([`DEFAULT_FIRST_PROJECT_GID`]).
    fn default() -> Self {
        Scale {
            workspaces: 2,
            projects_per_workspace: 6,
            sections_per_project: 4,
            tasks_per_section: 25,
            subtasks_per_task: 2,
            tags_per_workspace: 12,
            users: 8,
        }
    }
}

/// The result of one tool call.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolOutput {
    /// An Asana API response body: `{"data": ...}` (and `next_page` for paginated lists).
    pub value: Value,
    /// How many Asana REST requests the real MCP server would make for this call (at least 1).
    pub work_units: u32,
}

/// Why a call failed. Nothing is changed by a failed call.
#[derive(Debug, Clone, PartialEq)]
pub enum SimError {
    /// A gid that names no live entity of this kind (Asana's 404).
    NotFound { kind: &'static str, gid: String },
    /// A missing, mistyped or refused argument (Asana's 400).
    InvalidArgument { field: String, reason: String },
    /// The tool is not one of [`Workspace::TOOL_NAMES`].
    UnknownTool(String),
}

impl fmt::Display for SimError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SimError::NotFound { kind, gid } => write!(f, "{kind} not found: {gid}"),
            SimError::InvalidArgument { field, reason } => {
                write!(f, "invalid argument `{field}`: {reason}")
            }
            SimError::UnknownTool(name) => write!(f, "unknown tool: {name}"),
        }
    }
}

impl std::error::Error for SimError {}

/// Shorthand for [`SimError::InvalidArgument`].
fn invalid(field: impl Into<String>, reason: impl Into<String>) -> SimError {
    SimError::InvalidArgument {
        field: field.into(),
        reason: reason.into(),
    }
}

/// A simulated Asana account: all entities, the gid counter and the logical clock.
#[derive(Debug, Clone)]
pub struct Workspace {
    next_gid: Gid,
    /// Logical "now"; advanced by one second per mutation so timestamps stay distinct and ordered.
    clock: Timestamp,
    users: BTreeMap<Gid, User>,
    spaces: BTreeMap<Gid, Space>,
    teams: BTreeMap<Gid, Team>,
    projects: BTreeMap<Gid, Project>,
    sections: BTreeMap<Gid, Section>,
    tasks: BTreeMap<Gid, Task>,
    stories: BTreeMap<Gid, Story>,
    tags: BTreeMap<Gid, Tag>,
    statuses: BTreeMap<Gid, ProjectStatus>,
}

fn one(value: Value) -> ToolOutput {
    ToolOutput {
        value,
        work_units: 1,
    }
}

impl Workspace {
    /// Every tool [`Workspace::call`] knows: the 41 of `@roychri/mcp-server-asana` 1.8.0 in its
    /// `tools/list` order, then `asana_get_project_hierarchy`.
    pub const TOOL_NAMES: &'static [&'static str] = &[
        "asana_list_workspaces",
        "asana_search_projects",
        "asana_get_my_tasks",
        "asana_search_tasks",
        "asana_get_task",
        "asana_create_task",
        "asana_get_task_stories",
        "asana_update_task",
        "asana_get_project",
        "asana_get_project_task_counts",
        "asana_get_project_sections",
        "asana_get_tasks_for_project",
        "asana_create_project",
        "asana_create_task_story",
        "asana_add_task_dependencies",
        "asana_add_task_dependents",
        "asana_create_subtask",
        "asana_get_subtasks",
        "asana_get_multiple_tasks_by_gid",
        "asana_get_project_status",
        "asana_get_project_statuses",
        "asana_create_project_status",
        "asana_delete_project_status",
        "asana_set_parent_for_task",
        "asana_get_tag",
        "asana_get_tags_for_task",
        "asana_get_tags_for_workspace",
        "asana_update_tag",
        "asana_delete_tag",
        "asana_get_tasks_for_tag",
        "asana_create_tag_for_workspace",
        "asana_add_tag_to_task",
        "asana_remove_tag_from_task",
        "asana_add_project_to_task",
        "asana_remove_project_from_task",
        "asana_delete_task",
        "asana_create_section",
        "asana_update_section",
        "asana_delete_section",
        "asana_add_task_to_section",
        "asana_update_project",
        "asana_get_project_hierarchy",
    ];

    /// Builds the workspace for `seed` at `scale`; see [`Scale`] for the gid order.
    pub fn seeded(seed: u64, scale: Scale) -> Self {
        let mut ws = Workspace {
            next_gid: FIRST_GID,
            clock: clock::SEED_EPOCH,
            users: BTreeMap::new(),
            spaces: BTreeMap::new(),
            teams: BTreeMap::new(),
            projects: BTreeMap::new(),
            sections: BTreeMap::new(),
            tasks: BTreeMap::new(),
            stories: BTreeMap::new(),
            tags: BTreeMap::new(),
            statuses: BTreeMap::new(),
        };
        seed::populate(&mut ws, seed, scale);
        ws
    }

    /// Runs one tool. On error nothing has changed.
    pub fn call(&mut self, tool: &str, args: &Map<String, Value>) -> Result<ToolOutput> {
        let a = Args::new(args);
        match tool {
            "asana_list_workspaces" => self.list_workspaces(&a).map(one),
            "asana_search_projects" => self.search_projects(&a).map(one),
            "asana_get_my_tasks" => self.get_my_tasks(&a).map(one),
            "asana_search_tasks" => self.search_tasks(&a).map(one),
            "asana_get_task" => self.get_task(&a).map(one),
            "asana_create_task" => self.create_task(&a).map(one),
            "asana_get_task_stories" => self.get_task_stories(&a).map(one),
            "asana_update_task" => self.update_task(&a).map(one),
            "asana_get_project" => self.get_project(&a).map(one),
            "asana_get_project_task_counts" => self.get_project_task_counts(&a).map(one),
            "asana_get_project_sections" => self.get_project_sections(&a).map(one),
            "asana_get_tasks_for_project" => self.get_tasks_for_project(&a).map(one),
            "asana_create_project" => self.create_project(&a).map(one),
            "asana_create_task_story" => self.create_task_story(&a).map(one),
            "asana_add_task_dependencies" => self.add_task_dependencies(&a).map(one),
            "asana_add_task_dependents" => self.add_task_dependents(&a).map(one),
            "asana_create_subtask" => self.create_subtask(&a).map(one),
            "asana_get_subtasks" => self.get_subtasks(&a).map(one),
            "asana_get_multiple_tasks_by_gid" => self.get_multiple_tasks_by_gid(&a),
            "asana_get_project_status" => self.get_project_status(&a).map(one),
            "asana_get_project_statuses" => self.get_project_statuses(&a).map(one),
            "asana_create_project_status" => self.create_project_status(&a).map(one),
            "asana_delete_project_status" => self.delete_project_status(&a).map(one),
            "asana_set_parent_for_task" => self.set_parent_for_task(&a).map(one),
            "asana_get_tag" => self.get_tag(&a).map(one),
            "asana_get_tags_for_task" => self.get_tags_for_task(&a).map(one),
            "asana_get_tags_for_workspace" => self.get_tags_for_workspace(&a).map(one),
            "asana_update_tag" => self.update_tag(&a).map(one),
            "asana_delete_tag" => self.delete_tag(&a).map(one),
            "asana_get_tasks_for_tag" => self.get_tasks_for_tag(&a).map(one),
            "asana_create_tag_for_workspace" => self.create_tag_for_workspace(&a).map(one),
            "asana_add_tag_to_task" => self.add_tag_to_task(&a).map(one),
            "asana_remove_tag_from_task" => self.remove_tag_from_task(&a).map(one),
            "asana_add_project_to_task" => self.add_project_to_task(&a).map(one),
            "asana_remove_project_from_task" => self.remove_project_from_task(&a).map(one),
            "asana_delete_task" => self.delete_task(&a).map(one),
            "asana_create_section" => self.create_section(&a).map(one),
            "asana_update_section" => self.update_section(&a).map(one),
            "asana_delete_section" => self.delete_section(&a).map(one),
            "asana_add_task_to_section" => self.add_task_to_section(&a).map(one),
            "asana_update_project" => self.update_project(&a).map(one),
            "asana_get_project_hierarchy" => self.get_project_hierarchy(&a),
            _ => Err(SimError::UnknownTool(tool.to_string())),
        }
    }

    /// Gid of the first seeded project (empty if the scale seeds none).
    pub fn first_project_gid(&self) -> String {
        self.projects
            .keys()
            .next()
            .map(Gid::to_string)
            .unwrap_or_default()
    }

    /// Gid of the first seeded workspace (empty if the scale seeds none).
    pub fn first_workspace_gid(&self) -> String {
        self.spaces
            .keys()
            .next()
            .map(Gid::to_string)
            .unwrap_or_default()
    }

    /// Hands out the next gid.
    fn allocate(&mut self) -> Gid {
        let gid = self.next_gid;
        self.next_gid += 1;
        gid
    }

    /// Advances the logical clock for a mutation and returns the new "now".
    fn tick(&mut self) -> Timestamp {
        self.clock += 1;
        self.clock
    }
}

#[cfg(test)]
mod tests;
