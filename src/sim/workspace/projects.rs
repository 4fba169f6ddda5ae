//! Workspaces, projects, sections and project status updates.
//!
//! Every project always has at least one section: creating a project creates "Untitled section", and the
//! last section of a project cannot be deleted (as in Asana), so a task added to a project always has a
//! section to land in.

use serde_json::{Value, json};

use super::args::Args;
use super::model::{
    COLORS, Project, ProjectStatus, STATUS_COLORS, Section, check_html, compact, find,
    html_from_text, text_from_html,
};
use super::{Result, Workspace, invalid};

const PRIVACY: &[&str] = &["public_to_workspace", "private_to_team", "private"];
const VIEWS: &[&str] = &["list", "board", "calendar", "timeline"];

/// `(notes, html_notes)` from whichever of the two was given.
fn notes_pair(a: &Args, text_key: &str, html_key: &str) -> Result<Option<(String, String)>> {
    Ok(match (a.opt_str(text_key)?, a.opt_str(html_key)?) {
        (_, Some(html)) => {
            check_html(&a.field(html_key), html)?;
            Some((text_from_html(html), html.to_string()))
        }
        (Some(text), None) => Some((text.to_string(), html_from_text(text))),
        (None, None) => None,
    })
}

impl Workspace {
    pub(super) fn list_workspaces(&self, a: &Args) -> Result<Value> {
        let opt = a.opt_fields()?;
        let data: Vec<Value> = self
            .spaces
            .values()
            .map(|s| {
                opt.shape(
                    compact(s),
                    || json!({ "is_organization": true, "email_domains": ["example.com"] }),
                )
            })
            .collect();
        Ok(json!({ "data": data }))
    }

    pub(super) fn get_project(&self, a: &Args) -> Result<Value> {
        let project = find(&self.projects, a.str("project_id")?)?;
        Ok(json!({ "data": self.project_full(project) }))
    }

    pub(super) fn create_project(&mut self, a: &Args) -> Result<Value> {
        let workspace = find(&self.spaces, a.str("workspace")?)?.gid;
        let name = a.str("name")?;
        let team = match a.opt_ref("team")? {
            Some(raw) => match find(&self.teams, raw)? {
                team if team.workspace == workspace => team.gid,
                _ => {
                    return Err(invalid(
                        "team",
                        format!("team {raw} is in another workspace"),
                    ));
                }
            },
            None => match self.teams.values().find(|t| t.workspace == workspace) {
                Some(team) => team.gid,
                None => return Err(invalid("team", "the workspace has no team; name one")),
            },
        };
        let color = a.opt_enum("color", COLORS)?;
        let privacy = a
            .opt_enum("privacy_setting", PRIVACY)?
            .unwrap_or("public_to_workspace");
        let view = a.opt_enum("default_view", VIEWS)?.unwrap_or("list");
        let (notes, html_notes) = notes_pair(a, "notes", "html_notes")?
            .unwrap_or_else(|| (String::new(), html_from_text("")));
        let gid = self.allocate();
        let now = self.tick();
        let project = Project {
            gid,
            name: name.to_string(),
            notes,
            html_notes,
            color: color.map(str::to_string),
            archived: false,
            privacy_setting: privacy.to_string(),
            default_view: view.to_string(),
            workspace,
            team,
            owner: Some(self.me(workspace)),
            created_at: now,
            modified_at: now,
        };
        let value = self.project_full(&project);
        self.projects.insert(gid, project);
        let section = self.allocate();
        let record = Section {
            gid: section,
            name: "Untitled section".into(),
            project: gid,
            tasks: Vec::new(),
            created_at: now,
        };
        self.sections.insert(section, record);
        Ok(json!({ "data": value }))
    }

    /// Besides the tool's fields, accepts `archived` (a boolean), as Asana's PUT /projects does.
    pub(super) fn update_project(&mut self, a: &Args) -> Result<Value> {
        let gid = find(&self.projects, a.str("project_id")?)?.gid;
        let name = a.opt_str("name")?;
        if name.is_some_and(|n| n.trim().is_empty()) {
            return Err(invalid("name", "must not be empty"));
        }
        let notes = notes_pair(a, "notes", "html_notes")?;
        let color = a.opt_enum("color", COLORS)?;
        let privacy = a.opt_enum("privacy_setting", PRIVACY)?;
        let archived = a.opt_bool("archived")?;
        let now = self.tick();
        if let Some(project) = self.projects.get_mut(&gid) {
            if let Some(name) = name {
                project.name = name.to_string();
            }
            if let Some((notes, html)) = notes {
                (project.notes, project.html_notes) = (notes, html);
            }
            if let Some(color) = color {
                project.color = Some(color.to_string());
            }
            if let Some(privacy) = privacy {
                project.privacy_setting = privacy.to_string();
            }
            if let Some(archived) = archived {
                project.archived = archived;
            }
            project.modified_at = now;
        }
        Ok(json!({ "data": self.projects.get(&gid).map(|p| self.project_full(p)) }))
    }

    /// Counts over the project's tasks (its members, not their subtasks).
    pub(super) fn get_project_task_counts(&self, a: &Args) -> Result<Value> {
        let project = find(&self.projects, a.str("project_id")?)?.gid;
        let tasks: Vec<_> = self
            .project_task_gids(project)
            .iter()
            .filter_map(|g| self.tasks.get(g))
            .collect();
        let completed = tasks.iter().filter(|t| t.completed).count();
        let milestones: Vec<_> = tasks
            .iter()
            .filter(|t| t.resource_subtype == "milestone")
            .collect();
        let completed_milestones = milestones.iter().filter(|t| t.completed).count();
        Ok(json!({ "data": {
            "num_tasks": tasks.len(),
            "num_completed_tasks": completed,
            "num_incomplete_tasks": tasks.len() - completed,
            "num_milestones": milestones.len(),
            "num_completed_milestones": completed_milestones,
            "num_incomplete_milestones": milestones.len() - completed_milestones,
        }}))
    }

    pub(super) fn get_project_sections(&self, a: &Args) -> Result<Value> {
        let project = find(&self.projects, a.str("project_id")?)?.gid;
        let opt = a.opt_fields()?;
        let data: Vec<Value> = self
            .sections_of(project)
            .map(|s| opt.shape(compact(s), || self.section_full(s)))
            .collect();
        Ok(json!({ "data": data }))
    }

    /// The project's tasks in list order (section by section), one page at a time.
    pub(super) fn get_tasks_for_project(&self, a: &Args) -> Result<Value> {
        let project = find(&self.projects, a.str("project_id")?)?.gid;
        let page = a.page(project)?;
        let opt = a.opt_fields()?;
        let gids = self.project_task_gids(project);
        let path = format!("/projects/{project}/tasks");
        Ok(page.render(&gids, &path, |g| match self.tasks.get(g) {
            Some(t) => opt.shape(self.task_compact(t), || self.task_full(t)),
            None => Value::Null,
        }))
    }

    pub(super) fn create_section(&mut self, a: &Args) -> Result<Value> {
        let project = find(&self.projects, a.str("project_id")?)?.gid;
        let name = a.str("name")?;
        let gid = self.allocate();
        let now = self.tick();
        let section = Section {
            gid,
            name: name.to_string(),
            project,
            tasks: Vec::new(),
            created_at: now,
        };
        let value = self.section_full(&section);
        self.sections.insert(gid, section);
        Ok(json!({ "data": value }))
    }

    pub(super) fn update_section(&mut self, a: &Args) -> Result<Value> {
        let gid = find(&self.sections, a.str("section_id")?)?.gid;
        let name = a.str("name")?;
        self.tick();
        if let Some(section) = self.sections.get_mut(&gid) {
            section.name = name.to_string();
        }
        Ok(json!({ "data": self.sections.get(&gid).map(|s| self.section_full(s)) }))
    }

    /// Asana refuses to delete a section that still holds tasks, or a project's last section.
    pub(super) fn delete_section(&mut self, a: &Args) -> Result<Value> {
        let section = find(&self.sections, a.str("section_id")?)?;
        if !section.tasks.is_empty() {
            let reason = format!(
                "the section still has {} task(s); move or delete them first",
                section.tasks.len()
            );
            return Err(invalid("section_id", reason));
        }
        if self.sections_of(section.project).count() <= 1 {
            return Err(invalid(
                "section_id",
                "a project's last section cannot be deleted",
            ));
        }
        let gid = section.gid;
        self.sections.remove(&gid);
        self.tick();
        Ok(json!({ "data": {} }))
    }

    pub(super) fn get_project_status(&self, a: &Args) -> Result<Value> {
        let status = find(&self.statuses, a.str("project_status_gid")?)?;
        Ok(json!({ "data": self.status_full(status) }))
    }

    /// Newest first, as Asana lists them.
    pub(super) fn get_project_statuses(&self, a: &Args) -> Result<Value> {
        let project = find(&self.projects, a.str("project_gid")?)?.gid;
        let page = a.page(project)?;
        let opt = a.opt_fields()?;
        let statuses: Vec<&ProjectStatus> = self.statuses_of(project).rev().collect();
        let path = format!("/projects/{project}/project_statuses");
        Ok(page.render(&statuses, &path, |s| {
            opt.shape(self.status_compact(s), || self.status_full(s))
        }))
    }

    /// `color` defaults to green; `title` (not in the tool schema) defaults to "Status update".
    pub(super) fn create_project_status(&mut self, a: &Args) -> Result<Value> {
        let project = find(&self.projects, a.str("project_gid")?)?;
        let (project, workspace) = (project.gid, project.workspace);
        let (text, html_text) = match (a.opt_str("text")?, a.opt_str("html_text")?) {
            (Some(text), _) if text.trim().is_empty() => {
                return Err(invalid("text", "must not be empty"));
            }
            (None, _) => return Err(invalid("text", "is required")),
            (Some(text), Some(html)) => {
                check_html("html_text", html)?;
                (text.to_string(), html.to_string())
            }
            (Some(text), None) => (text.to_string(), html_from_text(text)),
        };
        let color = a
            .opt_enum("color", STATUS_COLORS)?
            .unwrap_or("green")
            .to_string();
        let title = a.opt_ref("title")?.unwrap_or("Status update").to_string();
        let gid = self.allocate();
        let now = self.tick();
        let status = ProjectStatus {
            gid,
            project,
            title,
            text,
            html_text,
            color,
            author: self.me(workspace),
            created_at: now,
        };
        let value = self.status_full(&status);
        self.statuses.insert(gid, status);
        Ok(json!({ "data": value }))
    }

    pub(super) fn delete_project_status(&mut self, a: &Args) -> Result<Value> {
        let gid = find(&self.statuses, a.str("project_status_gid")?)?.gid;
        self.statuses.remove(&gid);
        self.tick();
        Ok(json!({ "data": {} }))
    }
}
