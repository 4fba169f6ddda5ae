//! Random argument maps against every tool.

use serde_json::{Map, Value, json};

use super::super::seed::Prng;
use super::super::{Scale, SimError, Workspace};
use super::assert_consistent;

/// A random value for `key`: usually of the right kind (a live gid of the right entity, a date, a name),
/// sometimes anything at all.
fn fuzz_value(ws: &Workspace, rng: &mut Prng, key: &str) -> Value {
    let pick = |rng: &mut Prng, gids: Vec<u64>| {
        gids.get(rng.below(gids.len()))
            .map_or(json!("1"), |g| json!(g.to_string()))
    };
    let tasks = || ws.tasks.keys().copied().collect::<Vec<_>>();
    let plausible = match key {
        "task_id" | "task_gid" | "parent_task_id" | "insert_before" | "insert_after" | "parent" => {
            pick(rng, tasks())
        }
        "dependencies" | "dependents" | "task_ids" => {
            json!([pick(rng, tasks()), pick(rng, tasks())])
        }
        "project_id" | "project_gid" | "projects_any" => {
            pick(rng, ws.projects.keys().copied().collect())
        }
        "section_id" | "section" | "sections_any" => {
            pick(rng, ws.sections.keys().copied().collect())
        }
        "tag_gid" | "tags_any" => pick(rng, ws.tags.keys().copied().collect()),
        "workspace" | "workspace_gid" => pick(rng, ws.spaces.keys().copied().collect()),
        "project_status_gid" => pick(rng, ws.statuses.keys().copied().collect()),
        "data" => json!({"parent": if rng.chance(30) { Value::Null } else { pick(rng, tasks()) }}),
        "due_on" | "due_on_before" | "completed_since" => json!("2024-02-01"),
        "assignee" | "assignee_any" => json!("me"),
        "limit" | "max_depth" => json!(1 + rng.below(3)),
        _ => json!(format!("fuzz {}", rng.below(5))),
    };
    if rng.chance(75) {
        return plausible;
    }
    match rng.below(8) {
        0 => Value::Null,
        1 => json!(rng.chance(50)),
        2 => json!(rng.below(200) as i64 - 50),
        3 => json!(
            [
                "me",
                "",
                "null",
                "2024-02-30",
                "^a.*$",
                "\\",
                "é",
                "dark-red",
                "<body>x</body>"
            ][rng.below(9)]
        ),
        4 => json!(1.5),
        5 => json!([plausible, "x"]),
        6 => json!({"parent": plausible, "insert_after": "1", "priority.value": "High"}),
        _ => json!(plausible.to_string()),
    }
}

/// Throws random argument maps at every tool (repairing missing required fields so calls get past
/// validation): no panic, every success is an Asana-shaped answer, and the model stays consistent.
#[test]
fn fuzzed_arguments_never_panic() {
    let small = Scale {
        workspaces: 2,
        projects_per_workspace: 2,
        sections_per_project: 2,
        tasks_per_section: 3,
        subtasks_per_task: 1,
        tags_per_workspace: 3,
        users: 2,
    };
    let mut ws = Workspace::seeded(3, small);
    let mut rng = Prng::new(99);
    let keys = [
        "name",
        "text",
        "notes",
        "html_notes",
        "due_on",
        "assignee",
        "followers",
        "parent",
        "projects",
        "completed",
        "limit",
        "offset",
        "insert_before",
        "insert_after",
        "section",
        "max_depth",
        "include_completed",
        "opt_fields",
        "custom_fields",
        "sort_by",
        "color",
        "completed_since",
        "due_on_before",
        "tags_any",
        "assignee_any",
        "archived",
        "resource_subtype",
        "html_text",
        "privacy_setting",
        "team",
        "include_subtasks",
        "sections_any",
        "projects_any",
    ];
    let mut succeeded = std::collections::BTreeSet::new();
    for round in 0..20_000 {
        let tool = Workspace::TOOL_NAMES[round % Workspace::TOOL_NAMES.len()];
        let mut map = Map::new();
        for _ in 0..rng.below(4) {
            let key = keys[rng.below(keys.len())];
            let value = fuzz_value(&ws, &mut rng, key);
            map.insert(key.to_string(), value);
        }
        for _ in 0..5 {
            match ws.call(tool, &map) {
                Ok(out) => {
                    assert!(
                        out.value.get("data").is_some(),
                        "{tool} answered without data"
                    );
                    assert!(out.work_units >= 1);
                    succeeded.insert(tool);
                    break;
                }
                Err(SimError::InvalidArgument { field, reason })
                    if reason.starts_with("is required") =>
                {
                    let key = field.trim_start_matches("data.").to_string();
                    let value = fuzz_value(&ws, &mut rng, &key);
                    match field.strip_prefix("data.") {
                        Some(inner) => map.insert("data".into(), json!({ inner: value })),
                        None => map.insert(field, value),
                    };
                }
                Err(_) => break,
            }
        }
    }
    assert_consistent(&ws);
    assert_eq!(
        succeeded.len(),
        Workspace::TOOL_NAMES.len(),
        "every tool succeeded at least once"
    );
}
