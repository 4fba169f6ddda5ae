//! mcpvisor's engine: supervised MCP service actors, the router that picks
//! one for each call, and the shared tables they keep.
//!
//! The HTTP server lives in the application crate; this crate knows nothing
//! of HTTP downstream. See `DESIGN.md` of the project for the shape.

pub mod cache;
pub mod catalog;
pub mod drill;
pub mod error;
pub mod health;
pub mod hedge;
pub mod homes;
pub mod manifest;
pub mod metrics;
pub mod model;
pub mod process;
pub mod quarantine;
pub mod registry;
pub mod reply;
pub use router::passthrough;
pub mod retry;
pub mod router;
pub mod secrets;
pub mod service;
pub mod spec;
pub mod stream;
pub mod supervisor;
pub mod transport;

pub use error::{CallError, Delivery, ErrorCategory};
pub use health::HealthMonitor;
pub use model::Directory;
pub use model::HealthStatus;
pub use registry::Registry;
pub use router::{CallOutcome, Execute, Router, RouterConfig};
pub use service::{CallReply, Caller};
pub use stream::{EventSink, StreamEvent};
pub use supervisor::Supervisor;
