//! Task life cycle: create, get, update, tag, depend, move, delete; subtasks and parents.

use serde_json::json;

use super::super::SimError;
use super::{assert_consistent, call, default_ws, fail, gids, str_of};

#[test]
fn create_get_update_tag_depend_move_delete_round_trip() {
    let mut ws = default_ws();
    let workspace = ws.first_workspace_gid();
    let project = ws.first_project_gid();
    let created = call(
        &mut ws,
        "asana_create_task",
        json!({"project_id": project, "name": "Write the sim", "notes": "a < b", "due_on": "2024-05-01", "assignee": "me"}),
    );
    let task = str_of(&created["data"]["gid"]);
    assert_eq!(created["data"]["html_notes"], "<body>a &lt; b</body>");
    let fetched = call(&mut ws, "asana_get_task", json!({"task_id": task}));
    assert_eq!(fetched["data"]["name"], "Write the sim");
    assert_eq!(fetched["data"]["projects"][0]["gid"], project.as_str());
    assert_eq!(
        fetched["data"]["assignee"]["gid"],
        ws.me(ws.spaces.keys().copied().next().unwrap_or(0))
            .to_string()
    );

    let updated = call(
        &mut ws,
        "asana_update_task",
        json!({"task_id": task, "name": "Wrote the sim", "completed": true, "due_on": null, "custom_fields": {"priority": "High"}}),
    );
    assert_eq!(updated["data"]["name"], "Wrote the sim");
    assert_eq!(updated["data"]["completed"], true);
    assert!(updated["data"]["completed_at"].is_string());
    assert!(updated["data"]["due_on"].is_null());
    assert_eq!(updated["data"]["custom_fields"]["priority"], "High");

    let tag = call(
        &mut ws,
        "asana_create_tag_for_workspace",
        json!({"workspace_gid": workspace, "name": "sim", "color": "dark-blue"}),
    );
    let tag = str_of(&tag["data"]["gid"]);
    call(
        &mut ws,
        "asana_add_tag_to_task",
        json!({"task_gid": task, "tag_gid": tag}),
    );
    assert_eq!(
        gids(&call(
            &mut ws,
            "asana_get_tags_for_task",
            json!({"task_gid": task})
        )),
        vec![tag.clone()]
    );
    assert_eq!(
        gids(&call(
            &mut ws,
            "asana_get_tasks_for_tag",
            json!({"tag_gid": tag})
        )),
        vec![task.clone()]
    );

    let other = call(
        &mut ws,
        "asana_create_task",
        json!({"project_id": project, "name": "Blocker"}),
    );
    let other = str_of(&other["data"]["gid"]);
    call(
        &mut ws,
        "asana_add_task_dependencies",
        json!({"task_id": task, "dependencies": [other]}),
    );
    let blocker = call(&mut ws, "asana_get_task", json!({"task_id": other}));
    assert_eq!(blocker["data"]["dependents"][0]["gid"], task.as_str());
    let cycle = fail(
        &mut ws,
        "asana_add_task_dependents",
        json!({"task_id": task, "dependents": [other]}),
    );
    assert!(matches!(cycle, SimError::InvalidArgument { ref field, .. } if field == "dependents"));

    let section = call(
        &mut ws,
        "asana_create_section",
        json!({"project_id": project, "name": "Later"}),
    );
    let section = str_of(&section["data"]["gid"]);
    call(
        &mut ws,
        "asana_add_task_to_section",
        json!({"section_id": section, "task_id": other}),
    );
    call(
        &mut ws,
        "asana_add_task_to_section",
        json!({"section_id": section, "task_id": task, "insert_before": other}),
    );
    let moved = call(&mut ws, "asana_get_task", json!({"task_id": task}));
    assert_eq!(
        moved["data"]["memberships"][0]["section"]["gid"],
        section.as_str()
    );
    let order: Vec<String> = ws
        .sections
        .values()
        .filter(|s| s.gid.to_string() == section)
        .flat_map(|s| s.tasks.iter().map(u64::to_string))
        .collect();
    assert_eq!(order, vec![task.clone(), other.clone()]);

    call(&mut ws, "asana_delete_task", json!({"task_id": task}));
    assert_eq!(
        fail(&mut ws, "asana_get_task", json!({"task_id": task})),
        SimError::NotFound {
            kind: "task",
            gid: task.clone()
        }
    );
    let blocker = call(&mut ws, "asana_get_task", json!({"task_id": other}));
    assert_eq!(blocker["data"]["dependents"], json!([]));
    assert!(
        gids(&call(
            &mut ws,
            "asana_get_tasks_for_tag",
            json!({"tag_gid": tag})
        ))
        .is_empty()
    );
    assert_consistent(&ws);
}

#[test]
fn subtasks_and_parents() {
    let mut ws = default_ws();
    let project = ws.first_project_gid();
    let parent = call(
        &mut ws,
        "asana_create_task",
        json!({"project_id": project, "name": "Parent"}),
    );
    let parent = str_of(&parent["data"]["gid"]);
    let first = call(
        &mut ws,
        "asana_create_subtask",
        json!({"parent_task_id": parent, "name": "First"}),
    );
    let first = str_of(&first["data"]["gid"]);
    let second = call(
        &mut ws,
        "asana_create_subtask",
        json!({"parent_task_id": parent, "name": "Second"}),
    );
    assert_eq!(second["data"]["parent"]["gid"], parent.as_str());
    let second = str_of(&second["data"]["gid"]);
    assert_eq!(
        gids(&call(
            &mut ws,
            "asana_get_subtasks",
            json!({"task_gid": parent})
        )),
        vec![first.clone(), second.clone()]
    );

    let loose = call(
        &mut ws,
        "asana_create_task",
        json!({"project_id": project, "name": "Loose"}),
    );
    let loose = str_of(&loose["data"]["gid"]);
    let set = call(
        &mut ws,
        "asana_set_parent_for_task",
        json!({"task_id": loose, "data": {"parent": parent, "insert_before": second}}),
    );
    assert_eq!(set["data"]["parent"]["gid"], parent.as_str());
    assert_eq!(
        gids(&call(
            &mut ws,
            "asana_get_subtasks",
            json!({"task_gid": parent})
        )),
        vec![first.clone(), loose.clone(), second.clone()]
    );

    // The real server accepts `data` as a JSON string too; parent null detaches.
    let data = json!({"parent": null}).to_string();
    let set = call(
        &mut ws,
        "asana_set_parent_for_task",
        json!({"task_id": loose, "data": data}),
    );
    assert!(set["data"]["parent"].is_null());
    let cycle = fail(
        &mut ws,
        "asana_set_parent_for_task",
        json!({"task_id": parent, "data": {"parent": first}}),
    );
    assert!(matches!(cycle, SimError::InvalidArgument { ref field, .. } if field == "data.parent"));
    let missing = fail(
        &mut ws,
        "asana_set_parent_for_task",
        json!({"task_id": loose, "data": {}}),
    );
    assert!(
        matches!(missing, SimError::InvalidArgument { ref field, .. } if field == "data.parent")
    );
    let hierarchy = call(
        &mut ws,
        "asana_get_subtasks",
        json!({"task_gid": parent, "opt_fields": "name,completed"}),
    );
    assert_eq!(hierarchy["data"][0]["completed"], false);
    assert_consistent(&ws);
}
