//! The shared read model: what every part of the engine reads about the
//! services without asking an actor — each service's handle, its
//! lifecycle and health states, its circuit breaker, and the directory of
//! all services.
//!
//! It depends on nothing but the services' specs, their process slots and
//! the quarantine: the actors, the router, the health monitor and the
//! metrics all read and write it, and none of them is needed to read it.

mod breaker;
mod directory;
mod handle;
mod state;

pub use breaker::{Breaker, BreakerState};
pub use directory::{Directory, Snapshot};
pub use handle::{Part, ServiceHandle, ServiceSnapshot};
pub use state::{HealthStatus, ServiceState};
