//! mcpvisor, the application: configuration, the HTTP server, the
//! simulated Asana service and the command line. The engine (actors,
//! routing, supervision) is the `mcpvisor-actors` crate.

pub mod auth;
pub mod cli;
pub mod config;
pub mod http;
pub mod reload;
pub mod sim;
pub mod telemetry;
