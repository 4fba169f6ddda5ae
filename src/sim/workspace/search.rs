//! Search: `search_tasks` (Asana's advanced search), `search_projects`, `get_my_tasks`.
//!
//! `search_tasks` understands: `text` (case-insensitive substring of name or notes), `resource_subtype`,
//! `completed`, `is_subtask`, `is_blocked`, `is_blocking`, `has_attachment` (there are no attachments),
//! `{assignee,projects,sections,tags,created_by}_{any,not}`, `{projects,sections,tags}_all`, `teams_any`,
//! `followers_not`, `commented_on_by_not` (gid lists, comma-separated; `me` allowed), the date filters
//! `{due,start,created,completed,modified}_on[_before|_after]` (dates; `_on` may be `null`) and
//! `{…}_at_before|_after` (date-times), `custom_fields` (`{"name.value": v}`, `.is_set`, `.contains`,
//! `.less_than`, `.greater_than`), `sort_by` (`due_date`, `created_at`, `completed_at`, `modified_at`,
//! `likes`; default `modified_at`) and `sort_ascending` (default false). Before/after bounds are
//! exclusive. Other filters (`portfolios_any`, `assigned_by_*`, `liked_by_not`) are accepted and ignored.
//! Results are not capped.

use std::cmp::Ordering;
use std::collections::BTreeSet;

use serde_json::{Map, Value, json};

use super::args::Args;
use super::clock::{DAY, Timestamp, parse_date, parse_datetime};
use super::model::{Task, compact, find};
use super::{Gid, Result, Workspace, invalid};

/// A half-open time window `[from, until)` on one of a task's dates, or "has no such date".
struct DateFilter {
    field: &'static str,
    from: Option<Timestamp>,
    until: Option<Timestamp>,
    is_null: bool,
}

/// What a gid-list filter tests.
#[derive(Clone, Copy)]
enum Set {
    Assignee,
    Projects,
    Sections,
    Tags,
    CreatedBy,
    Teams,
    Followers,
}

/// How the task's gids must meet the listed ones.
#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Any,
    All,
    Not,
}

/// The gid-list filters: (argument, what it tests, how).
const GID_FILTERS: &[(&str, Set, Mode)] = &[
    ("assignee_any", Set::Assignee, Mode::Any),
    ("assignee_not", Set::Assignee, Mode::Not),
    ("projects_any", Set::Projects, Mode::Any),
    ("projects_not", Set::Projects, Mode::Not),
    ("projects_all", Set::Projects, Mode::All),
    ("sections_any", Set::Sections, Mode::Any),
    ("sections_not", Set::Sections, Mode::Not),
    ("sections_all", Set::Sections, Mode::All),
    ("tags_any", Set::Tags, Mode::Any),
    ("tags_not", Set::Tags, Mode::Not),
    ("tags_all", Set::Tags, Mode::All),
    ("teams_any", Set::Teams, Mode::Any),
    ("followers_not", Set::Followers, Mode::Not),
    ("created_by_any", Set::CreatedBy, Mode::Any),
    ("created_by_not", Set::CreatedBy, Mode::Not),
];

const DATE_FIELDS: &[&str] = &["due", "start", "created", "completed", "modified"];

struct TaskQuery {
    text: Option<String>,
    subtype: Option<String>,
    flags: Vec<(&'static str, bool)>,
    sets: Vec<(Set, Mode, Vec<Gid>)>,
    /// Tasks commented on by `commented_on_by_not` users, precomputed once per search.
    commented: Option<BTreeSet<Gid>>,
    dates: Vec<DateFilter>,
    custom: Map<String, Value>,
}

impl Workspace {
    fn task_query(&self, a: &Args, workspace: Gid) -> Result<TaskQuery> {
        let me = self.me(workspace);
        let mut flags = Vec::new();
        for key in [
            "completed",
            "is_subtask",
            "is_blocked",
            "is_blocking",
            "has_attachment",
        ] {
            if let Some(value) = a.opt_bool(key)? {
                flags.push((key, value));
            }
        }
        let mut sets = Vec::new();
        for &(key, set, mode) in GID_FILTERS {
            if let Some(gids) = a.opt_gids(key, me)? {
                sets.push((set, mode, gids));
            }
        }
        let commented = a.opt_gids("commented_on_by_not", me)?.map(|users| {
            self.stories
                .values()
                .filter(|s| users.contains(&s.created_by))
                .map(|s| s.task)
                .collect()
        });
        let mut dates = Vec::new();
        for &field in DATE_FIELDS {
            for suffix in ["_on", "_on_before", "_on_after", "_at_before", "_at_after"] {
                let key = format!("{field}{suffix}");
                let Some(raw) = a.opt_ref(&key)? else {
                    continue;
                };
                let bad = || {
                    invalid(
                        key.as_str(),
                        "must be an ISO-8601 date (or date-time for *_at_*)",
                    )
                };
                let mut filter = DateFilter {
                    field,
                    from: None,
                    until: None,
                    is_null: false,
                };
                match suffix {
                    "_on" if raw == "null" => filter.is_null = true,
                    "_on" => {
                        let day = parse_date(raw).ok_or_else(bad)?;
                        (filter.from, filter.until) = (Some(day), Some(day + DAY));
                    }
                    "_on_before" => filter.until = Some(parse_date(raw).ok_or_else(bad)?),
                    "_on_after" => filter.from = Some(parse_date(raw).ok_or_else(bad)? + DAY),
                    "_at_before" => filter.until = Some(parse_datetime(raw).ok_or_else(bad)?),
                    _ => filter.from = Some(parse_datetime(raw).ok_or_else(bad)? + 1),
                }
                dates.push(filter);
            }
        }
        Ok(TaskQuery {
            text: a.opt_ref("text")?.map(str::to_lowercase),
            subtype: a.opt_ref("resource_subtype")?.map(str::to_string),
            flags,
            sets,
            commented,
            dates,
            custom: a.opt_object("custom_fields")?.unwrap_or_default(),
        })
    }

    fn date_of(task: &Task, field: &str) -> Option<Timestamp> {
        match field {
            "due" => task.due_on.as_deref().and_then(parse_date),
            "created" => Some(task.created_at),
            "completed" => task.completed_at,
            "modified" => Some(task.modified_at),
            _ => None, // tasks carry no start dates
        }
    }

    fn set_of(&self, task: &Task, set: Set) -> Vec<Gid> {
        match set {
            Set::Assignee => task.assignee.into_iter().collect(),
            Set::Projects => task.projects().collect(),
            Set::Sections => task.memberships.iter().map(|m| m.section).collect(),
            Set::Tags => task.tags.clone(),
            Set::CreatedBy => vec![task.created_by],
            Set::Teams => task
                .projects()
                .filter_map(|p| self.projects.get(&p))
                .map(|p| p.team)
                .collect(),
            Set::Followers => task.followers.clone(),
        }
    }

    fn is_open(&self, gid: &Gid) -> bool {
        self.tasks.get(gid).is_some_and(|t| !t.completed)
    }

    fn matches(&self, q: &TaskQuery, task: &Task) -> bool {
        let text_ok = |text: &String| {
            task.name.to_lowercase().contains(text) || task.notes.to_lowercase().contains(text)
        };
        if !q.text.as_ref().is_none_or(text_ok) {
            return false;
        }
        if q.subtype
            .as_ref()
            .is_some_and(|s| *s != task.resource_subtype)
        {
            return false;
        }
        let flag_ok = q.flags.iter().all(|&(key, want)| {
            let actual = match key {
                "completed" => task.completed,
                "is_subtask" => task.parent.is_some(),
                "is_blocked" => task.dependencies.iter().any(|g| self.is_open(g)),
                "is_blocking" => !task.completed && task.dependents.iter().any(|g| self.is_open(g)),
                _ => false, // has_attachment: the simulation has no attachments
            };
            actual == want
        });
        let sets_ok = q.sets.iter().all(|(set, mode, wanted)| {
            let have = self.set_of(task, *set);
            match mode {
                Mode::Any => wanted.iter().any(|g| have.contains(g)),
                Mode::All => wanted.iter().all(|g| have.contains(g)),
                Mode::Not => !wanted.iter().any(|g| have.contains(g)),
            }
        });
        let dates_ok = q.dates.iter().all(|f| match Self::date_of(task, f.field) {
            None => f.is_null,
            Some(_) if f.is_null => false,
            Some(t) => f.from.is_none_or(|from| t >= from) && f.until.is_none_or(|until| t < until),
        });
        let commented_ok = q.commented.as_ref().is_none_or(|c| !c.contains(&task.gid));
        let custom_ok = q
            .custom
            .iter()
            .all(|(key, want)| custom_field_matches(&task.custom_fields, key, want));
        flag_ok && sets_ok && dates_ok && commented_ok && custom_ok
    }

    pub(super) fn search_tasks(&self, a: &Args) -> Result<Value> {
        let workspace = find(&self.spaces, a.str("workspace")?)?.gid;
        let query = self.task_query(a, workspace)?;
        let sort_by = a.opt_ref("sort_by")?.unwrap_or("modified_at");
        let key: fn(&Task) -> Option<Timestamp> = match sort_by {
            "due_date" => |t| t.due_on.as_deref().and_then(parse_date),
            "created_at" => |t| Some(t.created_at),
            "completed_at" => |t| t.completed_at,
            "modified_at" => |t| Some(t.modified_at),
            "likes" => |_| None,
            _ => {
                return Err(invalid(
                    "sort_by",
                    "must be one of due_date, created_at, completed_at, modified_at, likes",
                ));
            }
        };
        let ascending = a.opt_bool("sort_ascending")?.unwrap_or(false);
        let mut hits: Vec<&Task> = self
            .tasks
            .values()
            .filter(|t| t.workspace == workspace && self.matches(&query, t))
            .collect();
        // Tasks without the sort key go last either way; gid order breaks ties so results are stable.
        hits.sort_by(|x, y| {
            let order = match (key(x), key(y)) {
                (Some(a), Some(b)) if ascending => a.cmp(&b),
                (Some(a), Some(b)) => b.cmp(&a),
                (Some(_), None) => Ordering::Less,
                (None, Some(_)) => Ordering::Greater,
                (None, None) => Ordering::Equal,
            };
            order.then(x.gid.cmp(&y.gid))
        });
        let data = self.task_list(a, hits.iter().map(|t| &t.gid))?;
        Ok(json!({ "data": data }))
    }

    /// Projects of the workspace whose name matches `name_pattern` (see [`name_matches`]); `archived`
    /// defaults to false, as in the real server.
    pub(super) fn search_projects(&self, a: &Args) -> Result<Value> {
        let workspace = find(&self.spaces, a.str("workspace")?)?.gid;
        let pattern = a
            .opt_str("name_pattern")?
            .ok_or_else(|| invalid("name_pattern", "is required"))?;
        let archived = a.opt_bool("archived")?.unwrap_or(false);
        let opt = a.opt_fields()?;
        let data: Vec<Value> = self
            .projects
            .values()
            .filter(|p| {
                p.workspace == workspace && p.archived == archived && name_matches(pattern, &p.name)
            })
            .map(|p| opt.shape(compact(p), || self.project_full(p)))
            .collect();
        Ok(json!({ "data": data }))
    }

    /// Tasks assigned to "me" in the workspace: all incomplete ones, plus completed ones completed at or
    /// after `completed_since` (an ISO date/date-time, or `now` for none).
    pub(super) fn get_my_tasks(&self, a: &Args) -> Result<Value> {
        let workspace = find(&self.spaces, a.str("workspace")?)?.gid;
        let since = match a.opt_ref("completed_since")? {
            None => None,
            Some("now") => Some(Timestamp::MAX),
            Some(raw) => Some(parse_datetime(raw).ok_or_else(|| {
                invalid("completed_since", "must be an ISO-8601 date-time or `now`")
            })?),
        };
        let me = self.me(workspace);
        let mine = self.tasks.values().filter(|t| {
            t.workspace == workspace
                && t.assignee == Some(me)
                && (!t.completed || since.is_none_or(|s| t.completed_at.is_some_and(|at| at >= s)))
        });
        let data = self.task_list(a, mine.map(|t| &t.gid))?;
        Ok(json!({ "data": data }))
    }
}

/// `custom_fields` search: `name` or `name.value` (equality, numbers and strings compared loosely),
/// `name.is_set`, `name.contains`, `name.less_than`, `name.greater_than`.
fn custom_field_matches(fields: &Map<String, Value>, key: &str, want: &Value) -> bool {
    let (name, op) = match key.rsplit_once('.') {
        Some((name, op @ ("value" | "is_set" | "contains" | "less_than" | "greater_than"))) => {
            (name, op)
        }
        _ => (key, "value"),
    };
    let have = fields.get(name).filter(|v| !v.is_null());
    let text = |v: &Value| v.as_str().map_or_else(|| v.to_string(), str::to_string);
    let number = |v: &Value| {
        v.as_f64()
            .or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))
    };
    match (op, have) {
        ("is_set", have) => {
            Some(have.is_some())
                == want
                    .as_bool()
                    .or_else(|| want.as_str().map(|s| s == "true"))
        }
        (_, None) => false,
        ("contains", Some(v)) => text(v).to_lowercase().contains(&text(want).to_lowercase()),
        ("less_than", Some(v)) => matches!((number(v), number(want)), (Some(x), Some(y)) if x < y),
        ("greater_than", Some(v)) => {
            matches!((number(v), number(want)), (Some(x), Some(y)) if x > y)
        }
        (_, Some(v)) => v == want || text(v) == text(want),
    }
}

/// Asana's `name_pattern` is a JavaScript regex tested case-insensitively. The simulation supports the
/// subset people use: case-insensitive substring match, `.*` wildcards, `^`/`$` anchors, top-level `|`
/// alternatives, `\` escapes and a leading `(?i)`; every other character matches itself.
pub(super) fn name_matches(pattern: &str, name: &str) -> bool {
    let pattern = pattern
        .strip_prefix("(?i)")
        .unwrap_or(pattern)
        .to_lowercase();
    let name = name.to_lowercase();
    pattern
        .split('|')
        .any(|alternative| glob_matches(alternative, &name))
}

fn glob_matches(pattern: &str, name: &str) -> bool {
    let (anchored_start, pattern) = match pattern.strip_prefix('^') {
        Some(rest) => (true, rest),
        None => (false, pattern),
    };
    let (anchored_end, pattern) = match pattern
        .strip_suffix('$')
        .filter(|rest| !rest.ends_with('\\'))
    {
        Some(rest) => (true, rest),
        None => (false, pattern),
    };
    let pieces: Vec<String> = pattern.split(".*").map(unescape).collect();
    let last = pieces.len() - 1;
    let mut rest = name;
    for (i, piece) in pieces.iter().enumerate() {
        if i == last && anchored_end && !(i == 0 && anchored_start) {
            return rest.ends_with(piece.as_str());
        }
        let at = if i == 0 && anchored_start {
            rest.starts_with(piece.as_str()).then_some(0)
        } else {
            rest.find(piece.as_str())
        };
        match at {
            Some(at) => rest = &rest[at + piece.len()..],
            None => return false,
        }
    }
    !anchored_end || rest.is_empty()
}

fn unescape(piece: &str) -> String {
    let mut out = String::with_capacity(piece.len());
    let mut chars = piece.chars();
    while let Some(c) = chars.next() {
        out.push(if c == '\\' {
            chars.next().unwrap_or('\\')
        } else {
            c
        });
    }
    out
}
