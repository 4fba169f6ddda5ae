//! Unit tests of the simulated Asana workspace, driven through the public `call` entry point like the
//! server layer drives it. Shared helpers live here; each child module covers one tool family.

mod fuzz;
mod projects;
mod search;
mod tasks;

use serde_json::{Map, Value, json};

use super::{DEFAULT_FIRST_PROJECT_GID, DEFAULT_FIRST_WORKSPACE_GID, Scale, SimError, Workspace};

fn args(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        other => panic!("arguments must be an object, got {other}"),
    }
}

fn call(ws: &mut Workspace, tool: &str, value: Value) -> Value {
    match ws.call(tool, &args(value)) {
        Ok(out) => out.value,
        Err(e) => panic!("{tool} failed: {e}"),
    }
}

fn fail(ws: &mut Workspace, tool: &str, value: Value) -> SimError {
    match ws.call(tool, &args(value)) {
        Ok(out) => panic!("{tool} should have failed, got {}", out.value),
        Err(e) => e,
    }
}

fn gids(value: &Value) -> Vec<String> {
    value["data"].as_array().map_or_else(Vec::new, |items| {
        items
            .iter()
            .filter_map(|i| i["gid"].as_str().map(str::to_string))
            .collect()
    })
}

fn str_of(value: &Value) -> String {
    value.as_str().unwrap_or_default().to_string()
}

fn default_ws() -> Workspace {
    Workspace::seeded(42, Scale::default())
}

/// Checks that every two-sided relation agrees with its other side.
fn assert_consistent(ws: &Workspace) {
    for section in ws.sections.values() {
        assert!(ws.projects.contains_key(&section.project));
        for gid in &section.tasks {
            let task = &ws.tasks[gid];
            assert_eq!(
                task.membership_in(section.project).map(|m| m.section),
                Some(section.gid)
            );
        }
    }
    for task in ws.tasks.values() {
        for m in &task.memberships {
            assert!(
                ws.sections[&m.section].tasks.contains(&task.gid),
                "membership without section entry"
            );
        }
        for sub in &task.subtasks {
            assert_eq!(ws.tasks[sub].parent, Some(task.gid));
        }
        if let Some(parent) = task.parent {
            assert!(ws.tasks[&parent].subtasks.contains(&task.gid));
        }
        for dep in &task.dependencies {
            assert!(ws.tasks[dep].dependents.contains(&task.gid));
        }
        for dep in &task.dependents {
            assert!(ws.tasks[dep].dependencies.contains(&task.gid));
        }
        for tag in &task.tags {
            assert!(ws.tags.contains_key(tag));
        }
    }
}

#[test]
fn default_gids_are_fixed_and_seed_independent() {
    for seed in [0, 1, 42, u64::MAX] {
        let ws = Workspace::seeded(seed, Scale::default());
        assert_eq!(ws.first_workspace_gid(), DEFAULT_FIRST_WORKSPACE_GID);
        assert_eq!(ws.first_project_gid(), DEFAULT_FIRST_PROJECT_GID);
    }
    let ws = default_ws();
    assert_eq!(
        ws.tasks.values().filter(|t| t.parent.is_none()).count(),
        1200
    );
    assert_eq!(
        ws.tasks.values().filter(|t| t.parent.is_some()).count(),
        2400
    );
    assert_eq!(ws.projects.len(), 12);
    assert_eq!(ws.users.len(), 8);
    assert_eq!(Workspace::TOOL_NAMES.len(), 42);
    assert_consistent(&ws);
}

#[test]
fn same_seed_same_bytes_and_other_seed_other_data() {
    let run = |seed: u64| {
        let mut ws = Workspace::seeded(seed, Scale::default());
        let workspace = ws.first_workspace_gid();
        let project = ws.first_project_gid();
        let created = call(
            &mut ws,
            "asana_create_task",
            json!({"project_id": project, "name": "Determinism"}),
        );
        let task = str_of(&created["data"]["gid"]);
        let mut out = vec![created];
        out.push(call(
            &mut ws,
            "asana_update_task",
            json!({"task_id": task, "completed": true}),
        ));
        out.push(call(
            &mut ws,
            "asana_search_tasks",
            json!({"workspace": workspace, "text": "review"}),
        ));
        out.push(call(
            &mut ws,
            "asana_get_project_hierarchy",
            json!({"project_id": project}),
        ));
        serde_json::to_string(&out).unwrap_or_default()
    };
    assert_eq!(run(7), run(7));
    assert_ne!(run(7), run(8));
}

#[test]
fn every_tool_dispatches_and_unknown_tools_are_refused() {
    let mut ws = default_ws();
    for tool in Workspace::TOOL_NAMES {
        match ws.call(tool, &Map::new()) {
            Ok(_) => assert_eq!(*tool, "asana_list_workspaces"),
            Err(SimError::InvalidArgument { .. }) => {}
            Err(other) => panic!("{tool}: unexpected {other:?}"),
        }
    }
    assert_eq!(
        fail(&mut ws, "asana_nope", json!({})),
        SimError::UnknownTool("asana_nope".into())
    );
    assert_eq!(
        call(&mut ws, "asana_list_workspaces", json!({}))["data"]
            .as_array()
            .map(Vec::len),
        Some(2)
    );
}

#[test]
fn errors_name_the_field_or_the_kind() {
    let mut ws = default_ws();
    assert_eq!(
        fail(&mut ws, "asana_create_task", json!({"name": "x"})),
        SimError::InvalidArgument {
            field: "project_id".into(),
            reason: "is required".into()
        }
    );
    assert!(
        matches!(fail(&mut ws, "asana_get_task", json!({"task_id": 12})), SimError::InvalidArgument { ref field, .. } if field == "task_id")
    );
    let workspace = ws.first_workspace_gid();
    assert!(
        matches!(fail(&mut ws, "asana_search_tasks", json!({"workspace": workspace, "completed": "maybe"})), SimError::InvalidArgument { ref field, .. } if field == "completed")
    );
    assert_eq!(
        fail(&mut ws, "asana_get_project", json!({"project_id": "999"})),
        SimError::NotFound {
            kind: "project",
            gid: "999".into()
        }
    );
    assert!(matches!(
        fail(&mut ws, "asana_get_tag", json!({"tag_gid": "nope"})),
        SimError::NotFound { kind: "tag", .. }
    ));
    assert!(matches!(
        fail(&mut ws, "asana_search_projects", json!({"workspace": "1"})),
        SimError::NotFound {
            kind: "workspace",
            ..
        }
    ));
    let project = ws.first_project_gid();
    assert!(
        matches!(fail(&mut ws, "asana_create_task", json!({"project_id": project, "name": "x", "due_on": "tomorrow"})), SimError::InvalidArgument { ref field, .. } if field == "due_on")
    );
    assert!(matches!(
        fail(
            &mut ws,
            "asana_create_task",
            json!({"project_id": project, "name": "x", "assignee": "404"})
        ),
        SimError::NotFound { kind: "user", .. }
    ));
    assert!(
        matches!(fail(&mut ws, "asana_create_task", json!({"project_id": project, "name": "x", "html_notes": "plain"})), SimError::InvalidArgument { ref field, .. } if field == "html_notes")
    );

    let some: Vec<String> = ws.tasks.keys().take(26).map(u64::to_string).collect();
    let out = ws.call(
        "asana_get_multiple_tasks_by_gid",
        &args(json!({"task_ids": some[..3].join(",")})),
    );
    assert_eq!(
        out.map(|o| (o.work_units, gids(&o.value).len())),
        Ok((3, 3))
    );
    assert!(matches!(
        fail(
            &mut ws,
            "asana_get_multiple_tasks_by_gid",
            json!({"task_ids": some})
        ),
        SimError::InvalidArgument { .. }
    ));
    assert!(matches!(
        fail(
            &mut ws,
            "asana_get_multiple_tasks_by_gid",
            json!({"task_ids": ["1"]})
        ),
        SimError::NotFound { kind: "task", .. }
    ));
    let e = SimError::NotFound {
        kind: "task",
        gid: "1".into(),
    };
    assert_eq!(e.to_string(), "task not found: 1");
}

#[test]
fn failed_calls_change_nothing() {
    let mut ws = default_ws();
    let before = format!("{:?}", ws.tasks);
    let project = ws.first_project_gid();
    // The last argument is bad: nothing before it may have been applied.
    fail(
        &mut ws,
        "asana_create_task",
        json!({"project_id": project, "name": "x", "resource_subtype": "epic"}),
    );
    let task = ws
        .tasks
        .keys()
        .next()
        .map(u64::to_string)
        .unwrap_or_default();
    fail(
        &mut ws,
        "asana_update_task",
        json!({"task_id": task, "name": "renamed", "custom_fields": 3}),
    );
    fail(
        &mut ws,
        "asana_add_task_dependencies",
        json!({"task_id": task, "dependencies": [task]}),
    );
    assert_eq!(format!("{:?}", ws.tasks), before);
}
