//! The configured services, by name. The set changes only when the
//! configuration is reloaded; readers take a snapshot and never wait.

use std::collections::HashMap;
use std::sync::Arc;

use arc_swap::ArcSwap;
use tokio::sync::Notify;

use super::handle::ServiceHandle;
use crate::quarantine::{Quarantine, QuarantineConfig};
use crate::spec::ServiceSpec;

/// Every configured service's handle, in configuration order.
#[derive(Debug)]
pub struct Directory {
    services: ArcSwap<Services>,
    ready: Arc<Notify>,
    quarantine: Quarantine,
}

/// One version of the set of services.
#[derive(Debug, Default)]
pub struct Services {
    list: Vec<Arc<ServiceHandle>>,
    by_name: HashMap<String, Arc<ServiceHandle>>,
}

impl Services {
    fn of(list: Vec<Arc<ServiceHandle>>) -> Self {
        let by_name = list
            .iter()
            .map(|h| (h.name().to_owned(), h.clone()))
            .collect();
        Self { list, by_name }
    }
}

/// The services at one moment: a slice of handles that stays valid
/// whatever a reload does meanwhile.
#[derive(Debug, Clone)]
pub struct Snapshot(Arc<Services>);

impl std::ops::Deref for Snapshot {
    type Target = [Arc<ServiceHandle>];

    fn deref(&self) -> &Self::Target {
        &self.0.list
    }
}

impl<'a> IntoIterator for &'a Snapshot {
    type Item = &'a Arc<ServiceHandle>;
    type IntoIter = std::slice::Iter<'a, Arc<ServiceHandle>>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.list.iter()
    }
}

impl IntoIterator for Snapshot {
    type Item = Arc<ServiceHandle>;
    type IntoIter = std::vec::IntoIter<Arc<ServiceHandle>>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.list.clone().into_iter()
    }
}

impl Directory {
    /// Handles for the given specs, with default quarantine settings.
    pub fn new(specs: impl IntoIterator<Item = ServiceSpec>) -> Self {
        Self::with_quarantine(specs, QuarantineConfig::default())
    }

    /// Handles for the given specs.
    pub fn with_quarantine(
        specs: impl IntoIterator<Item = ServiceSpec>,
        quarantine: QuarantineConfig,
    ) -> Self {
        let ready = Arc::new(Notify::new());
        let list = specs
            .into_iter()
            .map(|s| Arc::new(ServiceHandle::new(Arc::new(s), ready.clone())))
            .collect();
        Self {
            services: ArcSwap::from_pointee(Services::of(list)),
            ready,
            quarantine: Quarantine::new(quarantine),
        }
    }

    /// Poison calls of every logical service.
    pub fn quarantine(&self) -> &Quarantine {
        &self.quarantine
    }

    /// All services, now.
    pub fn all(&self) -> Snapshot {
        Snapshot(self.services.load_full())
    }

    /// One service.
    pub fn get(&self, name: &str) -> Option<Arc<ServiceHandle>> {
        self.services.load().by_name.get(name).cloned()
    }

    /// Whether a service of that name is configured.
    pub fn contains(&self, name: &str) -> bool {
        self.services.load().by_name.contains_key(name)
    }

    /// Fires whenever any service becomes ready.
    pub fn ready(&self) -> &Arc<Notify> {
        &self.ready
    }

    /// A handle for a service about to be added (not yet in the set).
    pub fn new_handle(&self, spec: ServiceSpec) -> Arc<ServiceHandle> {
        Arc::new(ServiceHandle::new(Arc::new(spec), self.ready.clone()))
    }

    /// Puts `handle` in the set: in place of the service of its name, or
    /// after the others.
    pub fn insert(&self, handle: Arc<ServiceHandle>) {
        self.services.rcu(|current| {
            let mut list = current.list.clone();
            match list.iter_mut().find(|h| h.name() == handle.name()) {
                Some(slot) => *slot = handle.clone(),
                None => list.push(handle.clone()),
            }
            Services::of(list)
        });
    }

    /// Takes a service out of the set; its handle, if it was there.
    pub fn remove(&self, name: &str) -> Option<Arc<ServiceHandle>> {
        let old = self.services.rcu(|current| {
            Services::of(
                current
                    .list
                    .iter()
                    .filter(|h| h.name() != name)
                    .cloned()
                    .collect(),
            )
        });
        old.by_name.get(name).cloned()
    }

    /// Puts the services in the order of `names` (those not named keep
    /// their place after the named ones).
    pub fn reorder(&self, names: &[&str]) {
        self.services.rcu(|current| {
            let mut list = current.list.clone();
            list.sort_by_key(|h| {
                names
                    .iter()
                    .position(|n| *n == h.name())
                    .unwrap_or(usize::MAX)
            });
            Services::of(list)
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(name: &str) -> ServiceSpec {
        serde_json::from_value(serde_json::json!({
            "name": name, "transport": "stdio", "command": "x"
        }))
        .unwrap()
    }

    #[test]
    fn a_snapshot_outlives_changes_to_the_set() {
        let d = Directory::new([spec("a"), spec("b")]);
        let before = d.all();
        d.remove("a");
        d.insert(d.new_handle(spec("c")));
        let b2 = d.new_handle(spec("b"));
        d.insert(b2.clone());
        let names = |s: &Snapshot| s.iter().map(|h| h.name().to_owned()).collect::<Vec<_>>();
        assert_eq!(names(&before), ["a", "b"]);
        assert_eq!(names(&d.all()), ["b", "c"]);
        assert!(Arc::ptr_eq(&d.get("b").unwrap(), &b2), "replaced in place");
        assert!(d.get("a").is_none());
        d.reorder(&["c", "b"]);
        assert_eq!(names(&d.all()), ["c", "b"]);
    }
}
