//! `asana_get_project_hierarchy`: a project's sections, their tasks and the tasks' subtasks in one tree.
//!
//! The real tool builds this from many REST calls, and the server layer turns each into a progress step,
//! so `work_units` counts them exactly: 1 (project) + 1 (sections) + one per section (its tasks, when
//! `max_depth >= 2`) + one per listed task that has subtasks (when `max_depth == 3` and
//! `include_subtasks`). Completed tasks left out by `include_completed: false` are never fetched, so
//! they cost nothing.

use serde_json::{Value, json};

use super::args::Args;
use super::model::{Task, find};
use super::{Result, ToolOutput, Workspace, invalid};

fn node(task: &Task) -> Value {
    json!({ "gid": task.gid.to_string(), "name": task.name, "completed": task.completed })
}

impl Workspace {
    pub(super) fn get_project_hierarchy(&self, a: &Args) -> Result<ToolOutput> {
        let project = find(&self.projects, a.str("project_id")?)?;
        let include_subtasks = a.opt_bool("include_subtasks")?.unwrap_or(true);
        let include_completed = a.opt_bool("include_completed")?.unwrap_or(true);
        let max_depth = a.opt_int("max_depth")?.unwrap_or(3);
        if !(1..=3).contains(&max_depth) {
            return Err(invalid(
                "max_depth",
                "must be 1 (sections), 2 (+tasks) or 3 (+subtasks)",
            ));
        }
        let wanted = |t: &&Task| include_completed || !t.completed;
        let with_subtasks = max_depth == 3 && include_subtasks;
        let (mut work_units, mut task_count, mut subtask_count) = (2u32, 0usize, 0usize);
        let mut sections = Vec::new();
        for section in self.sections_of(project.gid) {
            let mut entry = json!({ "gid": section.gid.to_string(), "name": section.name });
            if max_depth >= 2 {
                work_units += 1;
                let mut tasks = Vec::new();
                for task in section
                    .tasks
                    .iter()
                    .filter_map(|g| self.tasks.get(g))
                    .filter(wanted)
                {
                    task_count += 1;
                    let mut item = node(task);
                    if with_subtasks {
                        if !task.subtasks.is_empty() {
                            work_units += 1;
                        }
                        let subtasks: Vec<Value> = task
                            .subtasks
                            .iter()
                            .filter_map(|g| self.tasks.get(g))
                            .filter(wanted)
                            .map(node)
                            .collect();
                        subtask_count += subtasks.len();
                        item["subtasks"] = Value::Array(subtasks);
                    }
                    tasks.push(item);
                }
                entry["tasks"] = Value::Array(tasks);
            }
            sections.push(entry);
        }
        let stats =
            json!({ "sections": sections.len(), "tasks": task_count, "subtasks": subtask_count });
        let value = json!({ "data": {
            "project": self.project_full(project),
            "sections": sections,
            "stats": stats,
        }});
        Ok(ToolOutput { value, work_units })
    }
}
