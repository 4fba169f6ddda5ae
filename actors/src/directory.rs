//! The fixed set of configured services, by name.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::Notify;

use crate::quarantine::{Quarantine, QuarantineConfig};
use crate::service::ServiceHandle;
use crate::spec::ServiceSpec;

/// Every configured service's handle, in configuration order.
#[derive(Debug)]
pub struct Directory {
    services: Vec<Arc<ServiceHandle>>,
    by_name: HashMap<String, Arc<ServiceHandle>>,
    ready: Arc<Notify>,
    quarantine: Quarantine,
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
        let services: Vec<Arc<ServiceHandle>> = specs
            .into_iter()
            .map(|s| Arc::new(ServiceHandle::new(Arc::new(s), ready.clone())))
            .collect();
        let by_name = services
            .iter()
            .map(|h| (h.name().to_owned(), h.clone()))
            .collect();
        Self {
            services,
            by_name,
            ready,
            quarantine: Quarantine::new(quarantine),
        }
    }

    /// Poison calls of every logical service.
    pub fn quarantine(&self) -> &Quarantine {
        &self.quarantine
    }

    /// All services.
    pub fn all(&self) -> &[Arc<ServiceHandle>] {
        &self.services
    }

    /// One service.
    pub fn get(&self, name: &str) -> Option<&Arc<ServiceHandle>> {
        self.by_name.get(name)
    }

    /// Fires whenever any service becomes ready.
    pub fn ready(&self) -> &Arc<Notify> {
        &self.ready
    }
}
