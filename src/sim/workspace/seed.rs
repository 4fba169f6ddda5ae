//! Seeding: a tiny PRNG and the fixed order in which the initial data is built.
//!
//! The order of gid allocation is part of the contract (see `Scale`): users, then per workspace its
//! team and tags, then per project its sections, tasks (each followed by its comments and subtasks) and
//! status updates. The PRNG decides only content (names, dates, assignees…), never how many gids are
//! taken before the first workspace or project, which is why their gids are seed-independent.

use serde_json::{Map, json};

use super::clock::{DAY, Timestamp, format_date};
use super::model::{
    COLORS, Membership, Project, ProjectStatus, STATUS_COLORS, Section, Space, Story, Tag, Task,
    Team, User, html_from_text, push_unique,
};
use super::{Gid, Scale, Workspace};

/// splitmix64: small, fast, and good enough for plausible test data.
pub(super) struct Prng(u64);

impl Prng {
    pub fn new(seed: u64) -> Self {
        Prng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform-ish in `0..n` (0 when `n == 0`).
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next_u64() % n as u64) as usize
        }
    }

    pub fn chance(&mut self, percent: u64) -> bool {
        self.next_u64() % 100 < percent
    }

    /// One item of a non-empty constant list.
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items
            .get(self.below(items.len()))
            .copied()
            .unwrap_or_default()
    }
}

const FIRST_NAMES: &[&str] = &[
    "Ada", "Grace", "Alan", "Edsger", "Barbara", "Ken", "Frances", "Donald", "Radia", "Linus",
];
const LAST_NAMES: &[&str] = &[
    "Lovelace", "Hopper", "Turing", "Dijkstra", "Liskov", "Thompson", "Allen", "Knuth", "Perlman",
    "Torvalds",
];
const WORKSPACE_NAMES: &[&str] = &["Acme Corp", "Globex Labs", "Initech", "Umbrella Research"];
const PROJECT_NAMES: &[&str] = &[
    "Website Redesign",
    "Mobile App Launch",
    "Q3 Marketing Campaign",
    "Customer Onboarding",
    "Data Platform Migration",
    "Security Audit",
    "Hiring Pipeline",
    "Product Roadmap",
    "Billing Revamp",
    "Support Knowledge Base",
    "Partner Integrations",
    "Office Move",
];
const SECTION_NAMES: &[&str] = &[
    "To do",
    "In progress",
    "Review",
    "Done",
    "Backlog",
    "Blocked",
];
const TAG_NAMES: &[&str] = &[
    "urgent",
    "bug",
    "feature",
    "blocked",
    "design",
    "backend",
    "frontend",
    "research",
    "customer",
    "tech-debt",
    "quick-win",
    "needs-review",
];
const VERBS: &[&str] = &[
    "Draft", "Review", "Update", "Design", "Test", "Ship", "Plan", "Fix", "Document", "Audit",
    "Migrate", "Refine",
];
const OBJECTS: &[&str] = &[
    "landing page",
    "pricing table",
    "onboarding email",
    "API schema",
    "release notes",
    "login flow",
    "dashboard",
    "budget",
    "vendor contract",
    "search index",
    "error reporting",
    "style guide",
    "analytics events",
    "backup job",
];
const NOTES: &[&str] = &[
    "Coordinate with the design team before starting.",
    "See the spec linked in the project brief.",
    "Blocked on legal review last week; now unblocked.",
    "Customer reported this twice; prioritise.",
    "Keep the scope small and ship behind a flag.",
    "",
];
const COMMENTS: &[&str] = &[
    "Looks good to me.",
    "Can we move this to next sprint?",
    "Done, please verify.",
    "I left a few notes in the doc.",
    "Waiting on feedback.",
];
const PRIORITIES: &[&str] = &["High", "Medium", "Low"];

/// `names[i]`, with a number once the list has been used up, so names stay unique at any scale.
fn nth_name(names: &[&str], i: usize) -> String {
    let base = names.get(i % names.len().max(1)).copied().unwrap_or("Item");
    match i / names.len().max(1) {
        0 => base.to_string(),
        round => format!("{base} {}", round + 1),
    }
}

struct Seeder<'w> {
    ws: &'w mut Workspace,
    rng: Prng,
    /// Seeding time: runs ahead by minutes per task so the history spans a few weeks.
    now: Timestamp,
    users: Vec<Gid>,
}

pub(super) fn populate(ws: &mut Workspace, seed: u64, scale: Scale) {
    let mut s = Seeder {
        ws,
        rng: Prng::new(seed),
        now: super::clock::SEED_EPOCH,
        users: Vec::new(),
    };
    for i in 0..scale.users.max(1) {
        let gid = s.ws.allocate();
        let (first, last) = (nth_name(FIRST_NAMES, i), LAST_NAMES[i % LAST_NAMES.len()]);
        let email = format!("{}.{}@example.com", first.replace(' ', ""), last).to_lowercase();
        s.ws.users.insert(
            gid,
            User {
                gid,
                name: format!("{first} {last}"),
                email,
            },
        );
        s.users.push(gid);
    }
    for w in 0..scale.workspaces {
        s.workspace(w, scale);
    }
    // "Now" is an hour after the last seeded change, so every seeded timestamp lies in the past.
    let latest =
        s.ws.tasks
            .values()
            .map(|t| t.modified_at)
            .max()
            .unwrap_or(s.now);
    s.ws.clock = latest.max(s.now) + 3600;
}

impl Seeder<'_> {
    fn user(&mut self) -> Gid {
        self.users
            .get(self.rng.below(self.users.len()))
            .copied()
            .unwrap_or(super::FIRST_GID)
    }

    fn workspace(&mut self, w: usize, scale: Scale) {
        let space = self.ws.allocate();
        let name = nth_name(WORKSPACE_NAMES, w);
        self.ws.spaces.insert(
            space,
            Space {
                gid: space,
                name: name.clone(),
                users: self.users.clone(),
            },
        );
        let team = self.ws.allocate();
        self.ws.teams.insert(
            team,
            Team {
                gid: team,
                name: format!("{name} Team"),
                workspace: space,
            },
        );
        let mut tags = Vec::new();
        for i in 0..scale.tags_per_workspace {
            let gid = self.ws.allocate();
            let color = Some(self.rng.pick(COLORS).to_string());
            let tag = Tag {
                gid,
                workspace: space,
                name: nth_name(TAG_NAMES, i),
                color,
                notes: String::new(),
                followers: Vec::new(),
                created_at: self.now,
            };
            self.ws.tags.insert(gid, tag);
            tags.push(gid);
        }
        for p in 0..scale.projects_per_workspace {
            self.project(
                space,
                team,
                &tags,
                w * scale.projects_per_workspace + p,
                scale,
            );
        }
    }

    fn project(&mut self, space: Gid, team: Gid, tags: &[Gid], index: usize, scale: Scale) {
        let gid = self.ws.allocate();
        let name = nth_name(PROJECT_NAMES, index);
        let notes = format!("Everything for {name}.");
        let project = Project {
            gid,
            html_notes: html_from_text(&notes),
            notes,
            name,
            color: Some(self.rng.pick(COLORS).to_string()),
            archived: index % 6 == 5,
            privacy_setting: if self.rng.chance(80) {
                "public_to_workspace"
            } else {
                "private_to_team"
            }
            .to_string(),
            default_view: self.rng.pick(&["list", "board", "timeline"]).to_string(),
            workspace: space,
            team,
            owner: Some(self.user()),
            created_at: self.now,
            modified_at: self.now,
        };
        self.ws.projects.insert(gid, project);
        for s in 0..scale.sections_per_project.max(1) {
            let section = self.ws.allocate();
            let record = Section {
                gid: section,
                name: nth_name(SECTION_NAMES, s),
                project: gid,
                tasks: Vec::new(),
                created_at: self.now,
            };
            self.ws.sections.insert(section, record);
            let mut previous = None;
            for _ in 0..scale.tasks_per_section {
                let task = self.task(
                    space,
                    tags,
                    Some(Membership {
                        project: gid,
                        section,
                    }),
                    None,
                );
                if let Some(sec) = self.ws.sections.get_mut(&section) {
                    sec.tasks.push(task);
                }
                if let Some(before) = previous.filter(|_| self.rng.chance(10)) {
                    self.depend(task, before);
                }
                for _ in 0..scale.subtasks_per_task {
                    let sub = self.task(space, tags, None, Some(task));
                    if let Some(parent) = self.ws.tasks.get_mut(&task) {
                        parent.subtasks.push(sub);
                    }
                }
                previous = Some(task);
            }
        }
        for week in 0..1 + self.rng.below(2) {
            let status = self.ws.allocate();
            let color = self.rng.pick(STATUS_COLORS).to_string();
            let text = format!("Week {} update: things are {color}.", week + 1);
            let record = ProjectStatus {
                gid: status,
                project: gid,
                title: format!("Week {} status", week + 1),
                html_text: html_from_text(&text),
                text,
                color,
                author: self.user(),
                created_at: self.now + week as Timestamp * 3600,
            };
            self.ws.statuses.insert(status, record);
        }
    }

    fn task(
        &mut self,
        space: Gid,
        tags: &[Gid],
        membership: Option<Membership>,
        parent: Option<Gid>,
    ) -> Gid {
        let gid = self.ws.allocate();
        self.now += 600 + self.rng.below(1200) as Timestamp;
        let name = format!("{} {}", self.rng.pick(VERBS), self.rng.pick(OBJECTS));
        let creator = self.user();
        let mut task = Task::new(gid, space, name, creator, self.now);
        task.notes = self.rng.pick(NOTES).to_string();
        task.html_notes = html_from_text(&task.notes);
        task.modified_at = self.now + self.rng.below(5 * DAY as usize) as Timestamp;
        if self.rng.chance(30) {
            task.completed = true;
            task.completed_at = Some(task.modified_at);
        }
        if self.rng.chance(75) {
            task.due_on = Some(format_date(
                self.now + (3 + self.rng.below(60)) as Timestamp * DAY,
            ));
        }
        if self.rng.chance(80) {
            let assignee = self.user();
            task.assignee = Some(assignee);
            push_unique(&mut task.followers, assignee);
        }
        for _ in 0..self.rng.below(3) {
            if let Some(&tag) = tags.get(self.rng.below(tags.len())) {
                push_unique(&mut task.tags, tag);
            }
        }
        if self.rng.chance(60) {
            let mut fields = Map::new();
            fields.insert("priority".into(), json!(self.rng.pick(PRIORITIES)));
            fields.insert("estimate_hours".into(), json!(1 + self.rng.below(16)));
            task.custom_fields = fields;
        }
        if parent.is_none() && self.rng.chance(5) {
            task.resource_subtype = "milestone".to_string();
        }
        task.memberships.extend(membership);
        task.parent = parent;
        let created = task.created_at;
        self.ws.tasks.insert(gid, task);
        for c in 0..self.rng.below(3) {
            let story = self.ws.allocate();
            let text = self.rng.pick(COMMENTS).to_string();
            let record = Story {
                gid: story,
                task: gid,
                html_text: html_from_text(&text),
                text,
                created_by: self.user(),
                created_at: created + 60 * (c as Timestamp + 1),
            };
            self.ws.stories.insert(story, record);
        }
        gid
    }

    /// `task` depends on (is blocked by) `on`.
    fn depend(&mut self, task: Gid, on: Gid) {
        if let Some(t) = self.ws.tasks.get_mut(&task) {
            t.dependencies.push(on);
        }
        if let Some(t) = self.ws.tasks.get_mut(&on) {
            t.dependents.push(task);
        }
    }
}
