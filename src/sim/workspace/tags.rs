//! Tag tools. A tag belongs to one workspace and is applied to tasks of that workspace only; a task's
//! tags keep the order they were added in, and a tag's tasks are listed in creation (gid) order.

use serde_json::{Value, json};

use super::args::Args;
use super::model::{COLORS, Tag, compact, find, push_unique};
use super::{Gid, Result, Workspace, invalid};

impl Workspace {
    pub(super) fn get_tag(&self, a: &Args) -> Result<Value> {
        let tag = find(&self.tags, a.str("tag_gid")?)?;
        Ok(json!({ "data": self.tag_full(tag) }))
    }

    fn tag_page(&self, a: &Args, scope: Gid, tags: &[Gid], path: &str) -> Result<Value> {
        let page = a.page(scope)?;
        let opt = a.opt_fields()?;
        Ok(page.render(tags, path, |g| match self.tags.get(g) {
            Some(tag) => opt.shape(compact(tag), || self.tag_full(tag)),
            None => Value::Null,
        }))
    }

    pub(super) fn get_tags_for_task(&self, a: &Args) -> Result<Value> {
        let task = find(&self.tasks, a.str("task_gid")?)?;
        self.tag_page(
            a,
            task.gid,
            &task.tags,
            &format!("/tasks/{}/tags", task.gid),
        )
    }

    pub(super) fn get_tags_for_workspace(&self, a: &Args) -> Result<Value> {
        let space = find(&self.spaces, a.str("workspace_gid")?)?.gid;
        let tags: Vec<Gid> = self
            .tags
            .values()
            .filter(|t| t.workspace == space)
            .map(|t| t.gid)
            .collect();
        self.tag_page(a, space, &tags, &format!("/workspaces/{space}/tags"))
    }

    pub(super) fn get_tasks_for_tag(&self, a: &Args) -> Result<Value> {
        let tag = find(&self.tags, a.str("tag_gid")?)?.gid;
        let page = a.page(tag)?;
        let opt = a.opt_fields()?;
        let tasks: Vec<Gid> = self
            .tasks
            .values()
            .filter(|t| t.tags.contains(&tag))
            .map(|t| t.gid)
            .collect();
        Ok(page.render(&tasks, &format!("/tags/{tag}/tasks"), |g| {
            match self.tasks.get(g) {
                Some(t) => opt.shape(self.task_compact(t), || self.task_full(t)),
                None => Value::Null,
            }
        }))
    }

    pub(super) fn create_tag_for_workspace(&mut self, a: &Args) -> Result<Value> {
        let space = find(&self.spaces, a.str("workspace_gid")?)?.gid;
        let name = a.str("name")?;
        let color = a.opt_enum("color", COLORS)?;
        let mut followers = Vec::new();
        for raw in a.opt_list("followers")?.unwrap_or_default() {
            push_unique(&mut followers, self.resolve_user("followers", &raw, space)?);
        }
        let notes = a.opt_str("notes")?.unwrap_or_default().to_string();
        let gid = self.allocate();
        let now = self.tick();
        let tag = Tag {
            gid,
            workspace: space,
            name: name.to_string(),
            color: color.map(str::to_string),
            notes,
            followers,
            created_at: now,
        };
        let value = self.tag_full(&tag);
        self.tags.insert(gid, tag);
        Ok(json!({ "data": value }))
    }

    pub(super) fn update_tag(&mut self, a: &Args) -> Result<Value> {
        let gid = find(&self.tags, a.str("tag_gid")?)?.gid;
        let name = a.opt_str("name")?;
        if name.is_some_and(|n| n.trim().is_empty()) {
            return Err(invalid("name", "must not be empty"));
        }
        let color = a.opt_enum("color", COLORS)?;
        let notes = a.opt_str("notes")?;
        self.tick();
        if let Some(tag) = self.tags.get_mut(&gid) {
            if let Some(name) = name {
                tag.name = name.to_string();
            }
            if let Some(color) = color {
                tag.color = Some(color.to_string());
            }
            if let Some(notes) = notes {
                tag.notes = notes.to_string();
            }
        }
        Ok(json!({ "data": self.tags.get(&gid).map(|t| self.tag_full(t)) }))
    }

    /// Deleting a tag also removes it from every task that carried it.
    pub(super) fn delete_tag(&mut self, a: &Args) -> Result<Value> {
        let gid = find(&self.tags, a.str("tag_gid")?)?.gid;
        let now = self.tick();
        self.tags.remove(&gid);
        for task in self.tasks.values_mut().filter(|t| t.tags.contains(&gid)) {
            task.tags.retain(|&t| t != gid);
            task.modified_at = now;
        }
        Ok(json!({ "data": {} }))
    }

    /// Resolves `task_gid` and `tag_gid`, refusing a pair from different workspaces.
    fn task_and_tag(&self, a: &Args) -> Result<(Gid, Gid)> {
        let task = find(&self.tasks, a.str("task_gid")?)?;
        let tag = find(&self.tags, a.str("tag_gid")?)?;
        if task.workspace != tag.workspace {
            return Err(invalid(
                "tag_gid",
                "the tag belongs to another workspace than the task",
            ));
        }
        Ok((task.gid, tag.gid))
    }

    pub(super) fn add_tag_to_task(&mut self, a: &Args) -> Result<Value> {
        let (task, tag) = self.task_and_tag(a)?;
        let now = self.tick();
        if let Some(task) = self.tasks.get_mut(&task) {
            push_unique(&mut task.tags, tag);
            task.modified_at = now;
        }
        Ok(json!({ "data": {} }))
    }

    pub(super) fn remove_tag_from_task(&mut self, a: &Args) -> Result<Value> {
        let (task, tag) = self.task_and_tag(a)?;
        let now = self.tick();
        if let Some(task) = self.tasks.get_mut(&task) {
            task.tags.retain(|&t| t != tag);
            task.modified_at = now;
        }
        Ok(json!({ "data": {} }))
    }
}
