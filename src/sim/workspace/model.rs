//! Entity records and their Asana-shaped JSON.
//!
//! Relations that need an order are stored on both sides and kept in step by the tool code: a section's
//! `tasks` with each task's `memberships`, a parent's `subtasks` with each child's `parent`, and a task's
//! `dependencies` with the other task's `dependents`. Everything else (a project's sections, a tag's tasks,
//! a task's stories) is derived by scanning the ordered maps, so it cannot drift.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use super::clock::{Timestamp, format_datetime};
use super::{Gid, Result, SimError, Workspace};

#[derive(Debug, Clone)]
pub(super) struct User {
    pub gid: Gid,
    pub name: String,
    pub email: String,
}

/// An Asana workspace (named `Space` to keep `Workspace` for the whole simulated account).
#[derive(Debug, Clone)]
pub(super) struct Space {
    pub gid: Gid,
    pub name: String,
    /// Members in order; the first is "me", the authenticated user.
    pub users: Vec<Gid>,
}

#[derive(Debug, Clone)]
pub(super) struct Team {
    pub gid: Gid,
    pub name: String,
    pub workspace: Gid,
}

#[derive(Debug, Clone)]
pub(super) struct Project {
    pub gid: Gid,
    pub name: String,
    pub notes: String,
    pub html_notes: String,
    pub color: Option<String>,
    pub archived: bool,
    pub privacy_setting: String,
    pub default_view: String,
    pub workspace: Gid,
    pub team: Gid,
    pub owner: Option<Gid>,
    pub created_at: Timestamp,
    pub modified_at: Timestamp,
}

#[derive(Debug, Clone)]
pub(super) struct Section {
    pub gid: Gid,
    pub name: String,
    pub project: Gid,
    /// Tasks in board/list order.
    pub tasks: Vec<Gid>,
    pub created_at: Timestamp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Membership {
    pub project: Gid,
    pub section: Gid,
}

#[derive(Debug, Clone)]
pub(super) struct Task {
    pub gid: Gid,
    pub name: String,
    pub notes: String,
    pub html_notes: String,
    pub completed: bool,
    pub completed_at: Option<Timestamp>,
    /// A validated `YYYY-MM-DD`, so string order is date order.
    pub due_on: Option<String>,
    pub assignee: Option<Gid>,
    pub followers: Vec<Gid>,
    pub parent: Option<Gid>,
    pub subtasks: Vec<Gid>,
    pub memberships: Vec<Membership>,
    pub tags: Vec<Gid>,
    pub dependencies: Vec<Gid>,
    pub dependents: Vec<Gid>,
    pub custom_fields: Map<String, Value>,
    pub resource_subtype: String,
    pub workspace: Gid,
    pub created_by: Gid,
    pub created_at: Timestamp,
    pub modified_at: Timestamp,
}

impl Task {
    /// A blank, incomplete task; callers fill in what they know.
    pub fn new(gid: Gid, workspace: Gid, name: String, created_by: Gid, at: Timestamp) -> Self {
        Task {
            gid,
            html_notes: html_from_text(""),
            name,
            notes: String::new(),
            completed: false,
            completed_at: None,
            due_on: None,
            assignee: None,
            followers: vec![created_by],
            parent: None,
            subtasks: Vec::new(),
            memberships: Vec::new(),
            tags: Vec::new(),
            dependencies: Vec::new(),
            dependents: Vec::new(),
            custom_fields: Map::new(),
            resource_subtype: "default_task".to_string(),
            workspace,
            created_by,
            created_at: at,
            modified_at: at,
        }
    }

    pub fn projects(&self) -> impl Iterator<Item = Gid> + '_ {
        self.memberships.iter().map(|m| m.project)
    }

    pub fn membership_in(&self, project: Gid) -> Option<Membership> {
        self.memberships
            .iter()
            .copied()
            .find(|m| m.project == project)
    }
}

/// A comment on a task.
#[derive(Debug, Clone)]
pub(super) struct Story {
    pub gid: Gid,
    pub task: Gid,
    pub text: String,
    pub html_text: String,
    pub created_by: Gid,
    pub created_at: Timestamp,
}

#[derive(Debug, Clone)]
pub(super) struct Tag {
    pub gid: Gid,
    pub workspace: Gid,
    pub name: String,
    pub color: Option<String>,
    pub notes: String,
    pub followers: Vec<Gid>,
    pub created_at: Timestamp,
}

#[derive(Debug, Clone)]
pub(super) struct ProjectStatus {
    pub gid: Gid,
    pub project: Gid,
    pub title: String,
    pub text: String,
    pub html_text: String,
    pub color: String,
    pub author: Gid,
    pub created_at: Timestamp,
}

/// Asana's palette for projects and tags.
pub(super) const COLORS: &[&str] = &[
    "dark-pink",
    "dark-green",
    "dark-blue",
    "dark-red",
    "dark-teal",
    "dark-brown",
    "dark-orange",
    "dark-purple",
    "dark-warm-gray",
    "light-pink",
    "light-green",
    "light-blue",
    "light-red",
    "light-teal",
    "light-brown",
    "light-orange",
    "light-purple",
    "light-warm-gray",
    "none",
];
/// The colours of a project status update.
pub(super) const STATUS_COLORS: &[&str] = &["green", "yellow", "red"];

/// What every stored entity shares: a gid, a display name and its Asana `resource_type`.
pub(super) trait Record {
    const KIND: &'static str;
    fn gid(&self) -> Gid;
    fn label(&self) -> &str;
}

macro_rules! record {
    ($ty:ty, $kind:literal, $label:ident) => {
        impl Record for $ty {
            const KIND: &'static str = $kind;
            fn gid(&self) -> Gid {
                self.gid
            }
            fn label(&self) -> &str {
                &self.$label
            }
        }
    };
}

record!(User, "user", name);
record!(Space, "workspace", name);
record!(Team, "team", name);
record!(Project, "project", name);
record!(Section, "section", name);
record!(Task, "task", name);
record!(Tag, "tag", name);
record!(ProjectStatus, "project_status", title);

/// Appends `gid` unless the list already holds it (followers, tags, dependencies are sets in order).
pub(super) fn push_unique(list: &mut Vec<Gid>, gid: Gid) {
    if !list.contains(&gid) {
        list.push(gid);
    }
}

/// Parses an Asana gid (a string of digits).
pub(super) fn parse_gid(raw: &str) -> Option<Gid> {
    let raw = raw.trim();
    if raw.is_empty() || !raw.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    raw.parse().ok()
}

/// Looks `raw` up in `map`, answering Asana's 404 in the entity's own words.
pub(super) fn find<'m, T: Record>(map: &'m BTreeMap<Gid, T>, raw: &str) -> Result<&'m T> {
    parse_gid(raw)
        .and_then(|gid| map.get(&gid))
        .ok_or_else(|| SimError::NotFound {
            kind: T::KIND,
            gid: raw.to_string(),
        })
}

/// `{gid, name, resource_type}`: how Asana lists and references most entities.
pub(super) fn compact<T: Record>(record: &T) -> Value {
    json!({ "gid": record.gid().to_string(), "name": record.label(), "resource_type": T::KIND })
}

/// The compact form of `gid` in `map`, or `null` when it is gone.
pub(super) fn reference<T: Record>(map: &BTreeMap<Gid, T>, gid: Gid) -> Value {
    map.get(&gid).map_or(Value::Null, compact)
}

fn references<T: Record>(map: &BTreeMap<Gid, T>, gids: &[Gid]) -> Value {
    Value::Array(
        gids.iter()
            .filter_map(|gid| map.get(gid))
            .map(compact)
            .collect(),
    )
}

fn reference_opt<T: Record>(map: &BTreeMap<Gid, T>, gid: Option<Gid>) -> Value {
    gid.map_or(Value::Null, |gid| reference(map, gid))
}

fn time_opt(t: Option<Timestamp>) -> Value {
    t.map_or(Value::Null, |t| Value::String(format_datetime(t)))
}

/// Asana keeps `notes` and `html_notes` in step; this is the text -> html direction.
pub(super) fn html_from_text(text: &str) -> String {
    let escaped = text
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;");
    format!("<body>{escaped}</body>")
}

/// The html -> text direction: drop the tags, undo the entities Asana emits.
pub(super) fn text_from_html(html: &str) -> String {
    let mut text = String::with_capacity(html.len());
    let mut in_tag = false;
    for c in html.chars() {
        match c {
            '<' => in_tag = true,
            '>' => in_tag = false,
            _ if !in_tag => text.push(c),
            _ => {}
        }
    }
    text.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&amp;", "&")
}

/// Asana rejects rich text that is not wrapped in `<body>…</body>`.
pub(super) fn check_html(field: &str, html: &str) -> Result<()> {
    let html = html.trim();
    if html.starts_with("<body>") && html.ends_with("</body>") {
        Ok(())
    } else {
        Err(super::invalid(
            field,
            "rich text must be wrapped in <body>…</body>",
        ))
    }
}

impl Workspace {
    /// "me": the authenticated user, i.e. the workspace's first member.
    pub(super) fn me(&self, workspace: Gid) -> Gid {
        self.spaces
            .get(&workspace)
            .and_then(|space| space.users.first().copied())
            .unwrap_or(super::FIRST_GID)
    }

    pub(super) fn task_compact(&self, task: &Task) -> Value {
        json!({
            "gid": task.gid.to_string(),
            "name": task.name,
            "resource_type": "task",
            "resource_subtype": task.resource_subtype,
        })
    }

    pub(super) fn task_full(&self, task: &Task) -> Value {
        let memberships: Vec<Value> = task
            .memberships
            .iter()
            .map(|m| {
                json!({
                    "project": reference(&self.projects, m.project),
                    "section": reference(&self.sections, m.section),
                })
            })
            .collect();
        let projects: Vec<Gid> = task.projects().collect();
        let permalink_project = projects.first().copied().unwrap_or(0);
        json!({
            "gid": task.gid.to_string(),
            "resource_type": "task",
            "resource_subtype": task.resource_subtype,
            "name": task.name,
            "notes": task.notes,
            "html_notes": task.html_notes,
            "completed": task.completed,
            "completed_at": time_opt(task.completed_at),
            "due_on": task.due_on,
            "due_at": Value::Null,
            "start_on": Value::Null,
            "assignee": reference_opt(&self.users, task.assignee),
            "followers": references(&self.users, &task.followers),
            "parent": reference_opt(&self.tasks, task.parent),
            "num_subtasks": task.subtasks.len(),
            "memberships": memberships,
            "projects": references(&self.projects, &projects),
            "tags": references(&self.tags, &task.tags),
            "dependencies": references(&self.tasks, &task.dependencies),
            "dependents": references(&self.tasks, &task.dependents),
            "custom_fields": task.custom_fields,
            "created_by": reference(&self.users, task.created_by),
            "created_at": format_datetime(task.created_at),
            "modified_at": format_datetime(task.modified_at),
            "workspace": reference(&self.spaces, task.workspace),
            "permalink_url": format!("https://app.asana.com/0/{permalink_project}/{}", task.gid),
        })
    }

    pub(super) fn project_full(&self, project: &Project) -> Value {
        let current_status = self
            .statuses_of(project.gid)
            .next_back()
            .map(|s| self.status_compact(s));
        json!({
            "gid": project.gid.to_string(),
            "resource_type": "project",
            "name": project.name,
            "notes": project.notes,
            "html_notes": project.html_notes,
            "color": project.color,
            "archived": project.archived,
            "privacy_setting": project.privacy_setting,
            "public": project.privacy_setting == "public_to_workspace",
            "default_view": project.default_view,
            "workspace": reference(&self.spaces, project.workspace),
            "team": reference(&self.teams, project.team),
            "owner": reference_opt(&self.users, project.owner),
            "current_status_update": current_status,
            "created_at": format_datetime(project.created_at),
            "modified_at": format_datetime(project.modified_at),
            "permalink_url": format!("https://app.asana.com/0/{}/list", project.gid),
        })
    }

    pub(super) fn section_full(&self, section: &Section) -> Value {
        json!({
            "gid": section.gid.to_string(),
            "resource_type": "section",
            "name": section.name,
            "project": reference(&self.projects, section.project),
            "created_at": format_datetime(section.created_at),
        })
    }

    pub(super) fn story_json(&self, story: &Story) -> Value {
        json!({
            "gid": story.gid.to_string(),
            "resource_type": "story",
            "resource_subtype": "comment_added",
            "type": "comment",
            "text": story.text,
            "html_text": story.html_text,
            "created_by": reference(&self.users, story.created_by),
            "created_at": format_datetime(story.created_at),
            "target": reference(&self.tasks, story.task),
        })
    }

    pub(super) fn tag_full(&self, tag: &Tag) -> Value {
        json!({
            "gid": tag.gid.to_string(),
            "resource_type": "tag",
            "name": tag.name,
            "color": tag.color,
            "notes": tag.notes,
            "followers": references(&self.users, &tag.followers),
            "workspace": reference(&self.spaces, tag.workspace),
            "created_at": format_datetime(tag.created_at),
            "permalink_url": format!("https://app.asana.com/0/{}/list", tag.gid),
        })
    }

    pub(super) fn status_compact(&self, status: &ProjectStatus) -> Value {
        json!({ "gid": status.gid.to_string(), "resource_type": "project_status", "title": status.title })
    }

    pub(super) fn status_full(&self, status: &ProjectStatus) -> Value {
        json!({
            "gid": status.gid.to_string(),
            "resource_type": "project_status",
            "title": status.title,
            "text": status.text,
            "html_text": status.html_text,
            "color": status.color,
            "author": reference(&self.users, status.author),
            "created_by": reference(&self.users, status.author),
            "created_at": format_datetime(status.created_at),
            "modified_at": format_datetime(status.created_at),
            "project": reference(&self.projects, status.project),
        })
    }

    /// A project's sections in order (creation order; Asana appends new sections at the end).
    pub(super) fn sections_of(
        &self,
        project: Gid,
    ) -> impl DoubleEndedIterator<Item = &Section> + '_ {
        self.sections.values().filter(move |s| s.project == project)
    }

    /// A project's status updates, oldest first.
    pub(super) fn statuses_of(
        &self,
        project: Gid,
    ) -> impl DoubleEndedIterator<Item = &ProjectStatus> + '_ {
        self.statuses.values().filter(move |s| s.project == project)
    }

    /// A project's tasks in list order: section by section.
    pub(super) fn project_task_gids(&self, project: Gid) -> Vec<Gid> {
        self.sections_of(project)
            .flat_map(|s| s.tasks.iter().copied())
            .collect()
    }
}
