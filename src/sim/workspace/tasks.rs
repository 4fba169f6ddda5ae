//! Task tools: get, create (top-level and subtask), update, delete, batch get, comments.
//!
//! Create and update share one validated [`TaskPatch`], built completely before anything is touched, so
//! a call that fails on its last argument has changed nothing.

use std::collections::BTreeSet;

use serde_json::{Map, Value, json};

use super::args::Args;
use super::clock::{Timestamp, format_date, parse_date};
use super::model::{Story, Task, check_html, find, html_from_text, push_unique, text_from_html};
use super::relations::Anchor;
use super::{Gid, Result, ToolOutput, Workspace, invalid};

/// Asana's cap on `get_multiple_tasks_by_gid` in the real server.
const MAX_BATCH: usize = 25;
const SUBTYPES: &[&str] = &["default_task", "milestone", "approval"];

/// Validated task fields from create/update arguments; `None` means "leave as is".
#[derive(Default)]
struct TaskPatch {
    name: Option<String>,
    /// `(notes, html_notes)`, kept in step as Asana does.
    notes: Option<(String, String)>,
    due_on: Option<Option<String>>,
    assignee: Option<Option<Gid>>,
    followers: Option<Vec<Gid>>,
    completed: Option<bool>,
    resource_subtype: Option<String>,
    /// Merged into the task's fields; `null` values remove a field.
    custom_fields: Option<Map<String, Value>>,
}

impl TaskPatch {
    fn apply(self, task: &mut Task, now: Timestamp) {
        if let Some(name) = self.name {
            task.name = name;
        }
        if let Some((notes, html)) = self.notes {
            task.notes = notes;
            task.html_notes = html;
        }
        if let Some(due_on) = self.due_on {
            task.due_on = due_on;
        }
        if let Some(assignee) = self.assignee {
            task.assignee = assignee;
        }
        if let Some(followers) = self.followers {
            task.followers = followers;
        }
        if let Some(completed) = self.completed {
            if completed != task.completed {
                task.completed_at = completed.then_some(now);
            }
            task.completed = completed;
        }
        if let Some(subtype) = self.resource_subtype {
            task.resource_subtype = subtype;
        }
        for (key, value) in self.custom_fields.unwrap_or_default() {
            if value.is_null() {
                task.custom_fields.remove(&key);
            } else {
                task.custom_fields.insert(key, value);
            }
        }
        task.modified_at = now;
    }
}

impl Workspace {
    /// A user named by gid, e-mail or `me`, who must belong to `workspace`.
    pub(super) fn resolve_user(&self, field: &str, raw: &str, workspace: Gid) -> Result<Gid> {
        let raw = raw.trim();
        let gid = if raw == "me" {
            self.me(workspace)
        } else if raw.contains('@') {
            match self
                .users
                .values()
                .find(|u| u.email.eq_ignore_ascii_case(raw))
            {
                Some(user) => user.gid,
                None => {
                    return Err(super::SimError::NotFound {
                        kind: "user",
                        gid: raw.to_string(),
                    });
                }
            }
        } else {
            find(&self.users, raw)?.gid
        };
        match self.spaces.get(&workspace) {
            Some(space) if space.users.contains(&gid) => Ok(gid),
            _ => Err(invalid(
                field,
                format!("user {raw} is not a member of the workspace"),
            )),
        }
    }

    fn task_patch(&self, a: &Args, workspace: Gid) -> Result<TaskPatch> {
        let mut patch = TaskPatch {
            name: a.opt_str("name")?.map(str::to_string),
            ..TaskPatch::default()
        };
        patch.notes = match (a.opt_str("notes")?, a.opt_str("html_notes")?) {
            (_, Some(html)) => {
                check_html(&a.field("html_notes"), html)?;
                Some((text_from_html(html), html.to_string()))
            }
            (Some(notes), None) => Some((notes.to_string(), html_from_text(notes))),
            (None, None) => None,
        };
        patch.due_on = match a.nullable_str("due_on")? {
            Some(Some(raw)) => match parse_date(raw) {
                Some(day) => Some(Some(format_date(day))),
                None => return Err(invalid(a.field("due_on"), "must be a date as YYYY-MM-DD")),
            },
            other => other.map(|_| None),
        };
        patch.assignee = match a.nullable_str("assignee")? {
            Some(Some(raw)) => Some(Some(self.resolve_user(
                &a.field("assignee"),
                raw,
                workspace,
            )?)),
            other => other.map(|_| None),
        };
        if let Some(raw) = a.opt_list("followers")? {
            let mut followers = Vec::new();
            for item in raw {
                push_unique(
                    &mut followers,
                    self.resolve_user(&a.field("followers"), &item, workspace)?,
                );
            }
            patch.followers = Some(followers);
        }
        patch.completed = a.opt_bool("completed")?;
        if let Some(subtype) = a.opt_str("resource_subtype")? {
            if !SUBTYPES.contains(&subtype) {
                return Err(invalid(
                    a.field("resource_subtype"),
                    format!("must be one of {}", SUBTYPES.join(", ")),
                ));
            }
            patch.resource_subtype = Some(subtype.to_string());
        }
        patch.custom_fields = a.opt_object("custom_fields")?;
        Ok(patch)
    }

    /// Inserts a new task made from `patch`, created by "me" who also follows it.
    fn insert_task(&mut self, workspace: Gid, name: &str, mut patch: TaskPatch) -> Gid {
        let gid = self.allocate();
        let now = self.tick();
        let mut task = Task::new(gid, workspace, name.to_string(), self.me(workspace), now);
        let extra_followers = patch.followers.take().unwrap_or_default();
        patch.apply(&mut task, now);
        for follower in extra_followers.into_iter().chain(task.assignee) {
            push_unique(&mut task.followers, follower);
        }
        self.tasks.insert(gid, task);
        gid
    }

    fn full_task(&self, gid: Gid) -> Value {
        json!({ "data": self.tasks.get(&gid).map(|t| self.task_full(t)) })
    }

    pub(super) fn get_task(&self, a: &Args) -> Result<Value> {
        let task = find(&self.tasks, a.str("task_id")?)?;
        Ok(json!({ "data": self.task_full(task) }))
    }

    pub(super) fn get_multiple_tasks_by_gid(&self, a: &Args) -> Result<ToolOutput> {
        let ids = a.list("task_ids")?;
        if ids.len() > MAX_BATCH {
            return Err(invalid(
                "task_ids",
                format!(
                    "at most {MAX_BATCH} task ids are allowed, got {}",
                    ids.len()
                ),
            ));
        }
        let data = ids
            .iter()
            .map(|id| find(&self.tasks, id).map(|t| self.task_full(t)))
            .collect::<Result<Vec<_>>>()?;
        // The real server fetches each task with its own GET /tasks/{gid}.
        Ok(ToolOutput {
            value: json!({ "data": data }),
            work_units: ids.len() as u32,
        })
    }

    pub(super) fn create_task(&mut self, a: &Args) -> Result<Value> {
        let project = find(&self.projects, a.str("project_id")?)?;
        let workspace = project.workspace;
        let mut projects = vec![project.gid];
        for raw in a.opt_list("projects")?.unwrap_or_default() {
            let other = find(&self.projects, &raw)?;
            if other.workspace != workspace {
                return Err(invalid(
                    "projects",
                    format!("project {raw} is in another workspace"),
                ));
            }
            push_unique(&mut projects, other.gid);
        }
        let sections = projects
            .iter()
            .map(|&p| {
                self.sections_of(p).next().map(|s| s.gid).ok_or_else(|| {
                    invalid(
                        "project_id",
                        format!("project {p} has no section to put the task in"),
                    )
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let parent = match a.opt_ref("parent")? {
            Some(raw) => match find(&self.tasks, raw)? {
                parent if parent.workspace == workspace => Some(parent.gid),
                _ => {
                    return Err(invalid(
                        "parent",
                        format!("task {raw} is in another workspace"),
                    ));
                }
            },
            None => None,
        };
        let name = a.str("name")?;
        let patch = self.task_patch(a, workspace)?;
        let gid = self.insert_task(workspace, name, patch);
        for section in sections {
            self.move_to_section(gid, section, Anchor::End);
        }
        if let Some(parent) = parent {
            self.reparent(gid, Some(parent), Anchor::End);
        }
        Ok(self.full_task(gid))
    }

    pub(super) fn create_subtask(&mut self, a: &Args) -> Result<Value> {
        let parent = find(&self.tasks, a.str("parent_task_id")?)?;
        let (parent, workspace) = (parent.gid, parent.workspace);
        let name = a.str("name")?;
        let patch = self.task_patch(a, workspace)?;
        let gid = self.insert_task(workspace, name, patch);
        self.reparent(gid, Some(parent), Anchor::End);
        Ok(self.full_task(gid))
    }

    pub(super) fn update_task(&mut self, a: &Args) -> Result<Value> {
        let task = find(&self.tasks, a.str("task_id")?)?;
        let (gid, workspace) = (task.gid, task.workspace);
        let patch = self.task_patch(a, workspace)?;
        // Asana moves tasks between parents with setParent; accepting `parent` here appends at the end.
        let parent = match a.nullable_str("parent")? {
            Some(Some(raw)) => {
                let parent = find(&self.tasks, raw)?.gid;
                self.check_parent("parent", gid, parent, workspace)?;
                Some(Some(parent))
            }
            other => other.map(|_| None),
        };
        let now = self.tick();
        if let Some(task) = self.tasks.get_mut(&gid) {
            patch.apply(task, now);
        }
        if let Some(parent) = parent {
            self.reparent(gid, parent, Anchor::End);
        }
        Ok(self.full_task(gid))
    }

    /// Deletes the task, its subtasks (recursively) and their comments, and unlinks them everywhere.
    pub(super) fn delete_task(&mut self, a: &Args) -> Result<Value> {
        let root = find(&self.tasks, a.str("task_id")?)?.gid;
        let mut doomed = BTreeSet::from([root]);
        let mut queue = vec![root];
        while let Some(gid) = queue.pop() {
            for &sub in self
                .tasks
                .get(&gid)
                .map(|t| t.subtasks.as_slice())
                .unwrap_or_default()
            {
                if doomed.insert(sub) {
                    queue.push(sub);
                }
            }
        }
        for section in self.sections.values_mut() {
            section.tasks.retain(|g| !doomed.contains(g));
        }
        self.tasks.retain(|g, _| !doomed.contains(g));
        for task in self.tasks.values_mut() {
            task.subtasks.retain(|g| !doomed.contains(g));
            task.dependencies.retain(|g| !doomed.contains(g));
            task.dependents.retain(|g| !doomed.contains(g));
        }
        self.stories.retain(|_, s| !doomed.contains(&s.task));
        self.tick();
        Ok(json!({ "data": {} }))
    }

    pub(super) fn get_subtasks(&self, a: &Args) -> Result<Value> {
        let task = find(&self.tasks, a.str("task_gid")?)?;
        Ok(json!({ "data": self.task_list(a, &task.subtasks)? }))
    }

    /// Comments only: the simulation records no system stories.
    pub(super) fn get_task_stories(&self, a: &Args) -> Result<Value> {
        let task = find(&self.tasks, a.str("task_id")?)?.gid;
        let data: Vec<Value> = self
            .stories
            .values()
            .filter(|s| s.task == task)
            .map(|s| self.story_json(s))
            .collect();
        Ok(json!({ "data": data }))
    }

    pub(super) fn create_task_story(&mut self, a: &Args) -> Result<Value> {
        let task = find(&self.tasks, a.str("task_id")?)?;
        let (task, workspace) = (task.gid, task.workspace);
        let (text, html_text) = match (a.opt_str("text")?, a.opt_str("html_text")?) {
            (_, Some(html)) => {
                check_html("html_text", html)?;
                (text_from_html(html), html.to_string())
            }
            (Some(text), None) if !text.trim().is_empty() => {
                (text.to_string(), html_from_text(text))
            }
            _ => return Err(invalid("text", "is required (or html_text)")),
        };
        let gid = self.allocate();
        let now = self.tick();
        let story = Story {
            gid,
            task,
            text,
            html_text,
            created_by: self.me(workspace),
            created_at: now,
        };
        let value = self.story_json(&story);
        self.stories.insert(gid, story);
        if let Some(task) = self.tasks.get_mut(&task) {
            task.modified_at = now;
        }
        Ok(json!({ "data": value }))
    }

    /// Compact task records for `gids`, shaped by `opt_fields`.
    pub(super) fn task_list<'g>(
        &self,
        a: &Args,
        gids: impl IntoIterator<Item = &'g Gid>,
    ) -> Result<Vec<Value>> {
        let opt = a.opt_fields()?;
        Ok(gids
            .into_iter()
            .filter_map(|g| self.tasks.get(g))
            .map(|t| opt.shape(self.task_compact(t), || self.task_full(t)))
            .collect())
    }
}
