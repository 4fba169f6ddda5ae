//! Pagination, the project hierarchy and its work units, sections, tags, statuses and task counts.

use serde_json::{Value, json};

use super::super::{SimError, Workspace};
use super::{args, assert_consistent, call, default_ws, fail, gids, str_of};

#[test]
fn pagination_walks_the_whole_list_with_opaque_tokens() {
    let mut ws = default_ws();
    let project = ws.first_project_gid();
    let everything = call(
        &mut ws,
        "asana_get_tasks_for_project",
        json!({"project_id": project}),
    );
    assert_eq!(gids(&everything).len(), 100);
    assert!(everything["next_page"].is_null());

    let mut seen = Vec::new();
    let mut offset: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut a = json!({"project_id": project, "limit": 30});
        if let Some(o) = &offset {
            a["offset"] = json!(o);
        }
        let page = call(&mut ws, "asana_get_tasks_for_project", a);
        pages += 1;
        seen.extend(gids(&page));
        match page["next_page"]["offset"].as_str() {
            Some(o) => offset = Some(o.to_string()),
            None => break,
        }
    }
    assert_eq!(pages, 4);
    assert_eq!(seen, gids(&everything));

    let first = call(
        &mut ws,
        "asana_get_tasks_for_project",
        json!({"project_id": project, "limit": 10}),
    );
    let token = str_of(&first["next_page"]["offset"]);
    let other_project = ws
        .projects
        .keys()
        .nth(1)
        .map(u64::to_string)
        .unwrap_or_default();
    for bad in [
        json!({"project_id": other_project, "offset": token}),
        json!({"project_id": project, "offset": "garbage"}),
    ] {
        let e = fail(&mut ws, "asana_get_tasks_for_project", bad);
        assert!(matches!(e, SimError::InvalidArgument { ref field, .. } if field == "offset"));
    }
    for limit in [json!(0), json!(101), json!("many")] {
        let e = fail(
            &mut ws,
            "asana_get_tasks_for_project",
            json!({"project_id": project, "limit": limit}),
        );
        assert!(matches!(e, SimError::InvalidArgument { ref field, .. } if field == "limit"));
    }

    let workspace = ws.first_workspace_gid();
    let tags = call(
        &mut ws,
        "asana_get_tags_for_workspace",
        json!({"workspace_gid": workspace, "limit": 5}),
    );
    assert_eq!(gids(&tags).len(), 5);
    assert!(
        tags["next_page"]["path"]
            .as_str()
            .is_some_and(|p| p.contains("/tags?limit=5"))
    );
    let statuses = call(
        &mut ws,
        "asana_get_project_statuses",
        json!({"project_gid": project, "limit": 1}),
    );
    assert_eq!(gids(&statuses).len(), 1);
}

#[test]
fn hierarchy_shape_and_work_units() {
    let mut ws = default_ws();
    let project = ws.first_project_gid();
    let full = ws
        .call(
            "asana_get_project_hierarchy",
            &args(json!({"project_id": project})),
        )
        .map_err(|e| e.to_string());
    let full = full.unwrap_or_else(|e| panic!("{e}"));
    // 1 project + 1 sections + 4 section task lists + 100 tasks with subtasks.
    assert_eq!(full.work_units, 106);
    let data = &full.value["data"];
    assert_eq!(data["project"]["gid"], project.as_str());
    assert_eq!(
        data["stats"],
        json!({"sections": 4, "tasks": 100, "subtasks": 200})
    );
    assert_eq!(
        data["sections"][0]["tasks"][0]["subtasks"]
            .as_array()
            .map(Vec::len),
        Some(2)
    );
    assert!(data["sections"][0]["tasks"][0]["completed"].is_boolean());

    let units = |ws: &mut Workspace, extra: Value| {
        let mut a = args(extra);
        a.insert("project_id".into(), json!(project));
        ws.call("asana_get_project_hierarchy", &a)
            .map(|o| (o.work_units, o.value))
    };
    let (u, v) = units(&mut ws, json!({"max_depth": 1})).unwrap_or_default();
    assert_eq!(u, 2);
    assert!(v["data"]["sections"][0].get("tasks").is_none());
    let (u, v) = units(&mut ws, json!({"max_depth": 2})).unwrap_or_default();
    assert_eq!(u, 6);
    assert!(
        v["data"]["sections"][0]["tasks"][0]
            .get("subtasks")
            .is_none()
    );
    assert_eq!(
        units(&mut ws, json!({"include_subtasks": false})).map(|x| x.0),
        Ok(6)
    );

    let (u, v) = units(&mut ws, json!({"include_completed": false})).unwrap_or_default();
    let open = v["data"]["stats"]["tasks"].as_u64().unwrap_or(0);
    assert!(open < 100);
    assert_eq!(u as u64, 6 + open, "every seeded task has subtasks");
    let sections = v["data"]["sections"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(
        sections
            .iter()
            .flat_map(|s| s["tasks"].as_array().cloned().unwrap_or_default())
            .all(|t| t["completed"] == false)
    );

    for depth in [json!(0), json!(4)] {
        assert!(matches!(
            units(&mut ws, json!({"max_depth": depth})),
            Err(SimError::InvalidArgument { .. })
        ));
    }
}

#[test]
fn sections_tags_statuses_and_counts() {
    let mut ws = default_ws();
    let project = ws.first_project_gid();
    let counts = call(
        &mut ws,
        "asana_get_project_task_counts",
        json!({"project_id": project}),
    );
    assert_eq!(counts["data"]["num_tasks"], 100);
    let done = counts["data"]["num_completed_tasks"].as_u64().unwrap_or(0);
    assert_eq!(
        counts["data"]["num_incomplete_tasks"].as_u64(),
        Some(100 - done)
    );

    let sections = gids(&call(
        &mut ws,
        "asana_get_project_sections",
        json!({"project_id": project}),
    ));
    assert_eq!(sections.len(), 4);
    let e = fail(
        &mut ws,
        "asana_delete_section",
        json!({"section_id": sections[0]}),
    );
    assert!(matches!(e, SimError::InvalidArgument { .. }));
    let workspace = ws.first_workspace_gid();
    let fresh = call(
        &mut ws,
        "asana_create_project",
        json!({"workspace": workspace, "name": "Fresh", "color": "light-green"}),
    );
    let fresh = str_of(&fresh["data"]["gid"]);
    let only = gids(&call(
        &mut ws,
        "asana_get_project_sections",
        json!({"project_id": fresh}),
    ));
    assert_eq!(only.len(), 1, "new projects get an untitled section");
    assert!(matches!(
        fail(
            &mut ws,
            "asana_delete_section",
            json!({"section_id": only[0]})
        ),
        SimError::InvalidArgument { .. }
    ));
    let extra = call(
        &mut ws,
        "asana_create_section",
        json!({"project_id": fresh, "name": "Extra"}),
    );
    let extra = str_of(&extra["data"]["gid"]);
    call(
        &mut ws,
        "asana_update_section",
        json!({"section_id": extra, "name": "Renamed"}),
    );
    call(
        &mut ws,
        "asana_delete_section",
        json!({"section_id": extra}),
    );
    assert!(matches!(
        fail(
            &mut ws,
            "asana_update_section",
            json!({"section_id": extra, "name": "x"})
        ),
        SimError::NotFound {
            kind: "section",
            ..
        }
    ));

    let task = ws
        .tasks
        .values()
        .find(|t| !t.tags.is_empty())
        .map(|t| (t.gid, t.tags[0]))
        .unwrap_or_default();
    call(
        &mut ws,
        "asana_delete_tag",
        json!({"tag_gid": task.1.to_string()}),
    );
    assert!(ws.tasks.values().all(|t| !t.tags.contains(&task.1)));

    let status = call(
        &mut ws,
        "asana_create_project_status",
        json!({"project_gid": project, "text": "On track", "color": "yellow"}),
    );
    let status = str_of(&status["data"]["gid"]);
    let listed = gids(&call(
        &mut ws,
        "asana_get_project_statuses",
        json!({"project_gid": project}),
    ));
    assert_eq!(listed.first(), Some(&status), "newest first");
    call(
        &mut ws,
        "asana_delete_project_status",
        json!({"project_status_gid": status}),
    );
    assert!(matches!(
        fail(
            &mut ws,
            "asana_get_project_status",
            json!({"project_status_gid": status})
        ),
        SimError::NotFound {
            kind: "project_status",
            ..
        }
    ));
    let bad = fail(
        &mut ws,
        "asana_create_project_status",
        json!({"project_gid": project, "text": "x", "color": "blue"}),
    );
    assert!(matches!(bad, SimError::InvalidArgument { ref field, .. } if field == "color"));
    assert_consistent(&ws);
}
