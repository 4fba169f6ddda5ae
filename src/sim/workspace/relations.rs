//! Where a task sits: its parent, its dependencies, and its project/section memberships.
//!
//! Each of these is stored on both sides (see `model.rs`); the small mutators here (`reparent`,
//! `move_to_section`, `link_dependency`) are the only places that change them, and they are called only
//! after every check of the tool call has passed.

use serde_json::{Value, json};

use super::args::Args;
use super::model::{Membership, find, push_unique};
use super::{Gid, Result, Workspace, invalid};

/// Where to put a task in an ordered list (a section's tasks, a parent's subtasks).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Anchor {
    End,
    Before(Gid),
    After(Gid),
}

/// Moves (or adds) `item` in `list` to the place `anchor` names; an anchor no longer there means the end.
fn insert_at(list: &mut Vec<Gid>, item: Gid, anchor: Anchor) {
    list.retain(|&g| g != item);
    let index = match anchor {
        Anchor::End => None,
        Anchor::Before(a) => list.iter().position(|&g| g == a),
        Anchor::After(a) => list.iter().position(|&g| g == a).map(|i| i + 1),
    };
    list.insert(index.unwrap_or(list.len()), item);
}

impl Workspace {
    /// Reads `insert_before` / `insert_after` (at most one), which must name a task of `siblings`.
    fn anchor(&self, a: &Args, siblings: &[Gid], moving: Gid) -> Result<Anchor> {
        let (key, raw) = match (a.opt_ref("insert_before")?, a.opt_ref("insert_after")?) {
            (None, None) => return Ok(Anchor::End),
            (Some(_), Some(_)) => {
                return Err(invalid(
                    a.field("insert_after"),
                    "give insert_before or insert_after, not both",
                ));
            }
            (Some(raw), None) => ("insert_before", raw),
            (None, Some(raw)) => ("insert_after", raw),
        };
        let gid = find(&self.tasks, raw)?.gid;
        if gid == moving {
            return Err(invalid(
                a.field(key),
                "a task cannot be placed relative to itself",
            ));
        }
        if !siblings.contains(&gid) {
            return Err(invalid(
                a.field(key),
                format!("task {raw} is not in the list the task is moving into"),
            ));
        }
        Ok(if key == "insert_before" {
            Anchor::Before(gid)
        } else {
            Anchor::After(gid)
        })
    }

    /// Refuses a parent in another workspace, the task itself, or one of its descendants.
    pub(super) fn check_parent(
        &self,
        field: &str,
        task: Gid,
        parent: Gid,
        workspace: Gid,
    ) -> Result<()> {
        if self.tasks.get(&parent).map(|p| p.workspace) != Some(workspace) {
            return Err(invalid(
                field,
                format!("task {parent} is in another workspace"),
            ));
        }
        let mut cursor = Some(parent);
        // Bounded walk up the ancestors: the tree is acyclic, the bound only guards against surprises.
        for _ in 0..=self.tasks.len() {
            match cursor {
                Some(g) if g == task => {
                    return Err(invalid(
                        field,
                        "a task cannot become a subtask of itself or of its own subtask",
                    ));
                }
                Some(g) => cursor = self.tasks.get(&g).and_then(|t| t.parent),
                None => break,
            }
        }
        Ok(())
    }

    /// Detaches `task` from its parent and, if `parent` is given, attaches it there at `anchor`.
    pub(super) fn reparent(&mut self, task: Gid, parent: Option<Gid>, anchor: Anchor) {
        let old = self.tasks.get(&task).and_then(|t| t.parent);
        if let Some(old) = old.and_then(|g| self.tasks.get_mut(&g)) {
            old.subtasks.retain(|&g| g != task);
        }
        if let Some(new) = parent.and_then(|g| self.tasks.get_mut(&g)) {
            insert_at(&mut new.subtasks, task, anchor);
        }
        if let Some(t) = self.tasks.get_mut(&task) {
            t.parent = parent;
        }
    }

    /// Puts `task` into `section` at `anchor`, leaving whatever section of that project it was in.
    pub(super) fn move_to_section(&mut self, task: Gid, section: Gid, anchor: Anchor) {
        let Some(project) = self.sections.get(&section).map(|s| s.project) else {
            return;
        };
        let old = self.tasks.get(&task).and_then(|t| t.membership_in(project));
        if let Some(old) = old.and_then(|m| self.sections.get_mut(&m.section)) {
            old.tasks.retain(|&g| g != task);
        }
        if let Some(new) = self.sections.get_mut(&section) {
            insert_at(&mut new.tasks, task, anchor);
        }
        if let Some(t) = self.tasks.get_mut(&task) {
            let membership = Membership { project, section };
            match t.memberships.iter_mut().find(|m| m.project == project) {
                Some(m) => *m = membership,
                None => t.memberships.push(membership),
            }
        }
    }

    fn touch(&mut self, task: Gid) {
        let now = self.tick();
        if let Some(t) = self.tasks.get_mut(&task) {
            t.modified_at = now;
        }
    }

    pub(super) fn set_parent_for_task(&mut self, a: &Args) -> Result<Value> {
        let task = find(&self.tasks, a.str("task_id")?)?;
        let (task, workspace) = (task.gid, task.workspace);
        let data = a
            .opt_object("data")?
            .ok_or_else(|| invalid("data", "is required"))?;
        let d = Args::nested(&data, "data.");
        if !d.has("parent") {
            return Err(invalid(
                "data.parent",
                "is required (null makes the task top-level)",
            ));
        }
        let (parent, anchor) = match d.nullable_str("parent")?.flatten() {
            Some(raw) => {
                let parent = find(&self.tasks, raw)?;
                let gid = parent.gid;
                self.check_parent("data.parent", task, gid, workspace)?;
                (Some(gid), self.anchor(&d, &parent.subtasks, task)?)
            }
            None if d.opt_ref("insert_before")?.is_some()
                || d.opt_ref("insert_after")?.is_some() =>
            {
                return Err(invalid(
                    "data.parent",
                    "insert_before/insert_after need a parent",
                ));
            }
            None => (None, Anchor::End),
        };
        self.reparent(task, parent, anchor);
        self.touch(task);
        Ok(json!({ "data": self.tasks.get(&task).map(|t| self.task_full(t)) }))
    }

    /// Refuses a dependency of a task on itself, across workspaces, or one that would close a cycle.
    fn check_dependency(&self, field: &str, blocked: Gid, blocker: Gid) -> Result<()> {
        if blocked == blocker {
            return Err(invalid(field, "a task cannot depend on itself"));
        }
        let workspace = |g: Gid| self.tasks.get(&g).map(|t| t.workspace);
        if workspace(blocked) != workspace(blocker) {
            return Err(invalid(
                field,
                format!("task {blocker} is in another workspace than task {blocked}"),
            ));
        }
        // A cycle would appear if `blocker` already (transitively) depends on `blocked`.
        let mut seen = std::collections::BTreeSet::new();
        let mut stack = vec![blocker];
        while let Some(g) = stack.pop() {
            if g == blocked {
                return Err(invalid(
                    field,
                    format!(
                        "task {blocker} already depends on task {blocked}: that would be a cycle"
                    ),
                ));
            }
            if seen.insert(g) {
                stack.extend(
                    self.tasks
                        .get(&g)
                        .map(|t| t.dependencies.clone())
                        .unwrap_or_default(),
                );
            }
        }
        Ok(())
    }

    fn link_dependency(&mut self, blocked: Gid, blocker: Gid) {
        if let Some(t) = self.tasks.get_mut(&blocked) {
            push_unique(&mut t.dependencies, blocker);
        }
        if let Some(t) = self.tasks.get_mut(&blocker) {
            push_unique(&mut t.dependents, blocked);
        }
    }

    /// Shared by add_task_dependencies (`task` is blocked by each listed task) and add_task_dependents
    /// (each listed task is blocked by `task`).
    fn add_links(&mut self, a: &Args, field: &str, task_is_blocked: bool) -> Result<Value> {
        let task = find(&self.tasks, a.str("task_id")?)?.gid;
        let others = a
            .list(field)?
            .iter()
            .map(|raw| find(&self.tasks, raw).map(|t| t.gid))
            .collect::<Result<Vec<_>>>()?;
        let pairs: Vec<(Gid, Gid)> = others
            .iter()
            .map(|&o| {
                if task_is_blocked {
                    (task, o)
                } else {
                    (o, task)
                }
            })
            .collect();
        for &(blocked, blocker) in &pairs {
            self.check_dependency(field, blocked, blocker)?;
        }
        for (blocked, blocker) in pairs {
            self.link_dependency(blocked, blocker);
        }
        self.touch(task);
        Ok(json!({ "data": {} }))
    }

    pub(super) fn add_task_dependencies(&mut self, a: &Args) -> Result<Value> {
        self.add_links(a, "dependencies", true)
    }

    pub(super) fn add_task_dependents(&mut self, a: &Args) -> Result<Value> {
        self.add_links(a, "dependents", false)
    }

    pub(super) fn add_task_to_section(&mut self, a: &Args) -> Result<Value> {
        let section = find(&self.sections, a.str("section_id")?)?;
        let task = find(&self.tasks, a.str("task_id")?)?;
        if self.projects.get(&section.project).map(|p| p.workspace) != Some(task.workspace) {
            return Err(invalid(
                "section_id",
                "the section's project is in another workspace than the task",
            ));
        }
        let (section_gid, task_gid) = (section.gid, task.gid);
        let anchor = self.anchor(a, &section.tasks, task_gid)?;
        self.move_to_section(task_gid, section_gid, anchor);
        self.touch(task_gid);
        Ok(json!({ "data": {} }))
    }

    /// Adds the task to the project (or moves it within it). The section is, in order of preference:
    /// `section`, the section of the `insert_before`/`insert_after` task, the task's current section in
    /// that project, the project's first section.
    pub(super) fn add_project_to_task(&mut self, a: &Args) -> Result<Value> {
        let task = find(&self.tasks, a.str("task_id")?)?;
        let project = find(&self.projects, a.str("project_id")?)?;
        if project.workspace != task.workspace {
            return Err(invalid(
                "project_id",
                "the project is in another workspace than the task",
            ));
        }
        let (task, project) = (task.gid, project.gid);
        let anchor_raw = match a.opt_ref("insert_before")? {
            Some(raw) => Some(("insert_before", raw)),
            None => a.opt_ref("insert_after")?.map(|raw| ("insert_after", raw)),
        };
        let section = if let Some(raw) = a.opt_ref("section")? {
            let section = find(&self.sections, raw)?;
            if section.project != project {
                return Err(invalid(
                    "section",
                    format!("section {raw} is not in project {project}"),
                ));
            }
            section.gid
        } else if let Some((key, raw)) = anchor_raw {
            let membership = find(&self.tasks, raw)?.membership_in(project);
            membership
                .ok_or_else(|| invalid(key, format!("task {raw} is not in project {project}")))?
                .section
        } else if let Some(m) = self.tasks.get(&task).and_then(|t| t.membership_in(project)) {
            m.section
        } else {
            let first = self.sections_of(project).next().map(|s| s.gid);
            first.ok_or_else(|| invalid("project_id", "the project has no sections"))?
        };
        let siblings = self
            .sections
            .get(&section)
            .map(|s| s.tasks.as_slice())
            .unwrap_or_default();
        let anchor = self.anchor(a, siblings, task)?;
        self.move_to_section(task, section, anchor);
        self.touch(task);
        Ok(json!({ "data": {} }))
    }

    pub(super) fn remove_project_from_task(&mut self, a: &Args) -> Result<Value> {
        let task = find(&self.tasks, a.str("task_id")?)?.gid;
        let project = find(&self.projects, a.str("project_id")?)?.gid;
        let old = self.tasks.get(&task).and_then(|t| t.membership_in(project));
        if let Some(old) = old {
            if let Some(section) = self.sections.get_mut(&old.section) {
                section.tasks.retain(|&g| g != task);
            }
            if let Some(t) = self.tasks.get_mut(&task) {
                t.memberships.retain(|m| m.project != project);
            }
            self.touch(task);
        }
        Ok(json!({ "data": {} }))
    }
}
