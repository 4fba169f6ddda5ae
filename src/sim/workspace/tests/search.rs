//! search_tasks filters and sorting, get_my_tasks, search_projects patterns.

use serde_json::{Value, json};

use super::super::{SimError, Workspace};
use super::{call, default_ws, fail, gids, str_of};

#[test]
fn search_tasks_filters_and_sorts() {
    let mut ws = default_ws();
    let workspace = ws.first_workspace_gid();
    let project = ws.first_project_gid();
    let ws_gid = ws.spaces.keys().copied().next().unwrap_or(0);
    let in_ws = |ws: &Workspace| ws.tasks.values().filter(|t| t.workspace == ws_gid).count();
    let all = call(
        &mut ws,
        "asana_search_tasks",
        json!({"workspace": workspace}),
    );
    assert_eq!(gids(&all).len(), in_ws(&ws));
    assert_eq!(gids(&all).len(), 1800);

    let top = call(
        &mut ws,
        "asana_search_tasks",
        json!({"workspace": workspace, "is_subtask": false}),
    );
    assert_eq!(gids(&top).len(), 600);

    let unique = call(
        &mut ws,
        "asana_create_task",
        json!({"project_id": project, "name": "Quokka census", "notes": "count them"}),
    );
    let unique = str_of(&unique["data"]["gid"]);
    for text in ["QUOKKA", "Count Them"] {
        let found = call(
            &mut ws,
            "asana_search_tasks",
            json!({"workspace": workspace, "text": text}),
        );
        assert_eq!(gids(&found), vec![unique.clone()]);
    }

    let in_project = call(
        &mut ws,
        "asana_search_tasks",
        json!({"workspace": workspace, "projects_any": project, "completed": false}),
    );
    let expected = ws
        .tasks
        .values()
        .filter(|t| !t.completed && t.projects().any(|p| p.to_string() == project))
        .count();
    assert_eq!(gids(&in_project).len(), expected);
    assert!(expected > 0);

    let section = ws.sections.values().next().map(|s| s.gid).unwrap_or(0);
    let by_section = call(
        &mut ws,
        "asana_search_tasks",
        json!({"workspace": workspace, "sections_any": section.to_string()}),
    );
    assert_eq!(gids(&by_section).len(), ws.sections[&section].tasks.len());

    let tag = ws.tags.keys().copied().next().unwrap_or(0);
    let tagged = call(
        &mut ws,
        "asana_search_tasks",
        json!({"workspace": workspace, "tags_any": tag.to_string()}),
    );
    assert_eq!(
        gids(&tagged).len(),
        ws.tasks.values().filter(|t| t.tags.contains(&tag)).count()
    );

    let me = ws.me(ws_gid);
    let mine = call(
        &mut ws,
        "asana_search_tasks",
        json!({"workspace": workspace, "assignee_any": "me"}),
    );
    let expected = ws
        .tasks
        .values()
        .filter(|t| t.workspace == ws_gid && t.assignee == Some(me))
        .count();
    assert_eq!(gids(&mine).len(), expected);
    let my_tasks = call(
        &mut ws,
        "asana_get_my_tasks",
        json!({"workspace": workspace}),
    );
    assert_eq!(gids(&my_tasks).len(), expected);
    let open_mine = call(
        &mut ws,
        "asana_get_my_tasks",
        json!({"workspace": workspace, "completed_since": "now"}),
    );
    let open = ws
        .tasks
        .values()
        .filter(|t| t.workspace == ws_gid && t.assignee == Some(me) && !t.completed)
        .count();
    assert_eq!(gids(&open_mine).len(), open);

    let window = call(
        &mut ws,
        "asana_search_tasks",
        json!({"workspace": workspace, "due_on_after": "2024-01-20", "due_on_before": "2024-02-01", "sort_by": "due_date", "sort_ascending": true}),
    );
    let dues: Vec<String> = gids(&window)
        .iter()
        .filter_map(|g| ws.tasks.values().find(|t| t.gid.to_string() == *g))
        .filter_map(|t| t.due_on.clone())
        .collect();
    assert!(!dues.is_empty());
    assert!(
        dues.iter()
            .all(|d| d.as_str() > "2024-01-20" && d.as_str() < "2024-02-01")
    );
    assert!(dues.windows(2).all(|w| w[0] <= w[1]), "ascending due dates");

    let high = call(
        &mut ws,
        "asana_search_tasks",
        json!({"workspace": workspace, "custom_fields": {"priority.value": "High"}}),
    );
    assert_eq!(
        gids(&high).len(),
        ws.tasks
            .values()
            .filter(|t| t.workspace == ws_gid
                && t.custom_fields.get("priority") == Some(&json!("High")))
            .count()
    );

    let bad = fail(
        &mut ws,
        "asana_search_tasks",
        json!({"workspace": workspace, "sort_by": "vibes"}),
    );
    assert!(matches!(bad, SimError::InvalidArgument { ref field, .. } if field == "sort_by"));
}

#[test]
fn search_projects_patterns_and_archived() {
    let mut ws = default_ws();
    let workspace = ws.first_workspace_gid();
    let names = |v: &Value| -> Vec<String> {
        v["data"]
            .as_array()
            .map_or_else(Vec::new, |a| a.iter().map(|p| str_of(&p["name"])).collect())
    };
    let search = |ws: &mut Workspace, pattern: &str| {
        names(&call(
            ws,
            "asana_search_projects",
            json!({"workspace": workspace, "name_pattern": pattern}),
        ))
    };
    assert_eq!(search(&mut ws, "website"), vec!["Website Redesign"]);
    assert_eq!(search(&mut ws, "^web.*DESIGN$"), vec!["Website Redesign"]);
    assert_eq!(search(&mut ws, "^redesign"), Vec::<String>::new());
    assert_eq!(
        search(&mut ws, "launch|migration"),
        vec!["Mobile App Launch", "Data Platform Migration"]
    );
    assert_eq!(
        search(&mut ws, ".*").len(),
        5,
        "the sixth project is archived"
    );
    let archived = call(
        &mut ws,
        "asana_search_projects",
        json!({"workspace": workspace, "name_pattern": "", "archived": true}),
    );
    assert_eq!(names(&archived), vec!["Security Audit"]);
}
