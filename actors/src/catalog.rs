//! What each service offers besides tools: resources, resource templates,
//! prompts, and the capabilities that say which other requests it answers
//! (completion, logging, resource subscriptions). The relay routes
//! `resources/read`, `prompts/get`, `completion/complete` and friends by it.
//!
//! Each service actor writes its own entry when it connects and again when
//! the upstream announces a list change; readers take a snapshot.
//!
//! Resource subscriptions are shared: however many clients watch a URI, the
//! owning service holds one upstream subscription for it, opened for the
//! first watcher and closed after the last; updates are broadcast and each
//! client's stream keeps those it watches.

use std::collections::HashSet;
use std::sync::Arc;

use dashmap::DashMap;
use rmcp::model::{Prompt, Resource, ResourceTemplate, ServerCapabilities};
use tokio::sync::broadcast;

/// One service's offer.
#[derive(Debug, Clone, Default)]
pub struct Offer {
    pub resources: Vec<Resource>,
    pub templates: Vec<ResourceTemplate>,
    pub prompts: Vec<Prompt>,
    /// It declared the `resources` capability.
    pub has_resources: bool,
    /// It accepts `resources/subscribe`.
    pub subscribe: bool,
    /// It declared the `prompts` capability.
    pub has_prompts: bool,
    /// It declared `completions`.
    pub completions: bool,
    /// It declared `logging`.
    pub logging: bool,
}

impl Offer {
    /// An offer with the capabilities a server declared and nothing listed yet.
    pub fn from_capabilities(c: &ServerCapabilities) -> Self {
        Self {
            has_resources: c.resources.is_some(),
            subscribe: c
                .resources
                .as_ref()
                .and_then(|r| r.subscribe)
                .unwrap_or(false),
            has_prompts: c.prompts.is_some(),
            completions: c.completions.is_some(),
            logging: c.logging.is_some(),
            ..Self::default()
        }
    }
}

/// Every service's offer, by service name, and the resource subscriptions
/// clients hold through mcpvisor.
pub struct Catalog {
    offers: DashMap<String, Arc<Offer>>,
    /// (service, uri) -> clients watching it.
    watchers: DashMap<(String, String), usize>,
    updates: broadcast::Sender<ResourceUpdate>,
}

impl Default for Catalog {
    fn default() -> Self {
        Self {
            offers: DashMap::new(),
            watchers: DashMap::new(),
            updates: broadcast::channel(256).0,
        }
    }
}

/// An upstream said a subscribed resource changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceUpdate {
    pub service: String,
    pub uri: String,
}

/// Which kind of capability a request needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Capability {
    Resources,
    Subscribe,
    Prompts,
    Completions,
    Logging,
}

impl Catalog {
    pub fn new() -> Self {
        Self::default()
    }

    /// Counts one more client watching `uri` on `service`; true when it is
    /// the first (the upstream subscription must be opened).
    pub fn watch(&self, service: &str, uri: &str) -> bool {
        let mut n = self
            .watchers
            .entry((service.to_owned(), uri.to_owned()))
            .or_insert(0);
        *n += 1;
        *n == 1
    }

    /// Counts one client fewer; true when it was the last (the upstream
    /// subscription may be closed).
    pub fn unwatch(&self, service: &str, uri: &str) -> bool {
        let key = (service.to_owned(), uri.to_owned());
        let last = match self.watchers.get_mut(&key) {
            Some(mut n) => {
                *n = n.saturating_sub(1);
                *n == 0
            }
            None => false,
        };
        if last {
            self.watchers.remove_if(&key, |_, n| *n == 0);
        }
        last
    }

    /// URIs some client watches on `service` (re-subscribed after a restart).
    pub fn watched(&self, service: &str) -> Vec<String> {
        self.watchers
            .iter()
            .filter(|e| e.key().0 == service && *e.value() > 0)
            .map(|e| e.key().1.clone())
            .collect()
    }

    /// Announces an upstream's resource update to every watching client.
    pub fn publish(&self, update: ResourceUpdate) {
        let _ = self.updates.send(update);
    }

    /// Resource updates as they are announced.
    pub fn updates(&self) -> broadcast::Receiver<ResourceUpdate> {
        self.updates.subscribe()
    }

    /// Replaces a service's offer.
    pub fn set(&self, service: &str, offer: Offer) {
        self.offers.insert(service.to_owned(), Arc::new(offer));
    }

    /// Forgets a service's offer (the service left the configuration).
    pub fn remove(&self, service: &str) {
        self.offers.remove(service);
    }

    /// A service's current offer.
    pub fn get(&self, service: &str) -> Option<Arc<Offer>> {
        self.offers.get(service).map(|o| o.clone())
    }

    /// Offers in the order of `services` (the directory's order), skipping
    /// services that have none.
    fn ordered<'a>(&'a self, services: &'a [String]) -> impl Iterator<Item = Arc<Offer>> + 'a {
        services.iter().filter_map(|s| self.get(s))
    }

    /// All resources, one per URI (replicas list the same ones).
    pub fn resources(&self, services: &[String]) -> Vec<Resource> {
        let mut seen = HashSet::new();
        self.ordered(services)
            .flat_map(|o| o.resources.clone())
            .filter(|r| seen.insert(r.uri.clone()))
            .collect()
    }

    /// All resource templates, one per URI template.
    pub fn templates(&self, services: &[String]) -> Vec<ResourceTemplate> {
        let mut seen = HashSet::new();
        self.ordered(services)
            .flat_map(|o| o.templates.clone())
            .filter(|t| seen.insert(t.uri_template.clone()))
            .collect()
    }

    /// All prompts, one per name.
    pub fn prompts(&self, services: &[String]) -> Vec<Prompt> {
        let mut seen = HashSet::new();
        self.ordered(services)
            .flat_map(|o| o.prompts.clone())
            .filter(|p| seen.insert(p.name.clone()))
            .collect()
    }

    /// Services that can answer for a resource URI: those listing it, else
    /// those with a template it matches, else every service with resources
    /// (a server may serve URIs it does not list).
    pub fn owners_of_uri(&self, services: &[String], uri: &str) -> Vec<String> {
        let pick = |f: &dyn Fn(&Offer) -> bool| -> Vec<String> {
            services
                .iter()
                .filter(|s| self.get(s).is_some_and(|o| f(&o)))
                .cloned()
                .collect()
        };
        let listed = pick(&|o| o.resources.iter().any(|r| r.uri == uri));
        if !listed.is_empty() {
            return listed;
        }
        let templated = pick(&|o| {
            o.templates
                .iter()
                .any(|t| template_matches(&t.uri_template, uri))
        });
        if !templated.is_empty() {
            return templated;
        }
        pick(&|o| o.has_resources)
    }

    /// Services offering a prompt.
    pub fn owners_of_prompt(&self, services: &[String], name: &str) -> Vec<String> {
        services
            .iter()
            .filter(|s| {
                self.get(s)
                    .is_some_and(|o| o.prompts.iter().any(|p| p.name == name))
            })
            .cloned()
            .collect()
    }

    /// Services that declared a capability.
    pub fn with(&self, services: &[String], cap: Capability) -> Vec<String> {
        services
            .iter()
            .filter(|s| {
                self.get(s).is_some_and(|o| match cap {
                    Capability::Resources => o.has_resources,
                    Capability::Subscribe => o.subscribe,
                    Capability::Prompts => o.has_prompts,
                    Capability::Completions => o.completions,
                    Capability::Logging => o.logging,
                })
            })
            .cloned()
            .collect()
    }
}

/// Whether `uri` is an expansion of an RFC 6570 URI template. Simple
/// expressions (`{id}`) match one or more characters up to the next `/`;
/// reserved and fragment expansions (`{+path}`, `{#frag}`) match across
/// slashes; query forms (`{?q}`, `{&q}`) match the rest of the URI.
pub fn template_matches(template: &str, uri: &str) -> bool {
    enum Part<'a> {
        Literal(&'a str),
        Var { greedy: bool, rest: bool },
    }
    let mut parts = Vec::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        if open > 0 {
            parts.push(Part::Literal(&rest[..open]));
        }
        let Some(close) = rest[open..].find('}') else {
            return false;
        };
        let expr = &rest[open + 1..open + close];
        parts.push(Part::Var {
            greedy: expr.starts_with(['+', '#']),
            rest: expr.starts_with(['?', '&']),
        });
        rest = &rest[open + close + 1..];
    }
    if !rest.is_empty() {
        parts.push(Part::Literal(rest));
    }
    fn go(parts: &[Part<'_>], uri: &str) -> bool {
        match parts.split_first() {
            None => uri.is_empty(),
            Some((Part::Literal(l), tail)) => uri.strip_prefix(l).is_some_and(|u| go(tail, u)),
            Some((Part::Var { rest: true, .. }, tail)) => tail.is_empty(),
            Some((Part::Var { greedy, .. }, tail)) => {
                let limit = if *greedy {
                    uri.len()
                } else {
                    uri.find('/').unwrap_or(uri.len())
                };
                (1..=limit)
                    .filter(|&n| uri.is_char_boundary(n))
                    .any(|n| go(tail, &uri[n..]))
            }
        }
    }
    go(&parts, uri)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_match_their_expansions() {
        assert!(template_matches(
            "test://template/{id}/data",
            "test://template/123/data"
        ));
        assert!(!template_matches(
            "test://template/{id}/data",
            "test://template/1/2/data"
        ));
        assert!(!template_matches(
            "test://template/{id}/data",
            "test://template//data"
        ));
        assert!(template_matches("file:///{+path}", "file:///a/b/c.txt"));
        assert!(template_matches("s://x{?q,r}", "s://x?q=1&r=2"));
        assert!(!template_matches("s://{a}", "t://b"));
        assert!(template_matches("s://plain", "s://plain"));
    }

    #[test]
    fn watches_count_clients_per_service_and_uri() {
        let c = Catalog::new();
        assert!(c.watch("a", "x://1"));
        assert!(!c.watch("a", "x://1"));
        assert!(c.watch("b", "x://1"));
        assert_eq!(c.watched("a"), ["x://1"]);
        assert!(!c.unwatch("a", "x://1"));
        assert!(c.unwatch("a", "x://1"));
        assert!(c.watched("a").is_empty());
        assert!(!c.unwatch("a", "x://1"), "an extra unwatch is harmless");
    }

    #[test]
    fn owners_prefer_listed_then_templated_then_capable() {
        let c = Catalog::new();
        let mut a = Offer {
            has_resources: true,
            ..Offer::default()
        };
        a.resources.push(Resource::new("x://one", "one"));
        c.set("a", a);
        let mut b = Offer {
            has_resources: true,
            ..Offer::default()
        };
        b.templates.push(ResourceTemplate::new("y://{id}", "y"));
        c.set("b", b);
        let all = ["a".to_owned(), "b".to_owned()];
        assert_eq!(c.owners_of_uri(&all, "x://one"), ["a"]);
        assert_eq!(c.owners_of_uri(&all, "y://7"), ["b"]);
        assert_eq!(c.owners_of_uri(&all, "z://?"), ["a", "b"]);
        assert_eq!(c.resources(&all).len(), 1);
    }
}
