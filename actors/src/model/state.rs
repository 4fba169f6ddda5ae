//! What a service is doing (its lifecycle) and how it is doing (its
//! health), as everyone reads them.

use serde::{Deserialize, Serialize};

/// Lifecycle state of a service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[repr(u8)]
pub enum ServiceState {
    /// Launching and negotiating.
    Starting = 0,
    /// Connected and serving.
    Ready = 1,
    /// Crashed; a restart is scheduled.
    Restarting = 2,
    /// Restart intensity exceeded: retried at a slow cadence (or not at
    /// all, with `restart.give_up`).
    Failed = 3,
    /// Switched off by an operator or by config.
    Disabled = 4,
    /// Stopped because the daemon is shutting down.
    Stopped = 5,
}

impl ServiceState {
    pub(super) fn from_u8(v: u8) -> Self {
        match v {
            0 => Self::Starting,
            1 => Self::Ready,
            2 => Self::Restarting,
            3 => Self::Failed,
            4 => Self::Disabled,
            _ => Self::Stopped,
        }
    }
}

/// Health status of a service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[repr(u8)]
pub enum HealthStatus {
    /// Not seen up yet.
    Unknown = 0,
    /// Answering, and fast.
    Healthy = 1,
    /// Answering, but slower than its threshold.
    Degraded = 2,
    /// Failing, or down and restarting.
    Unhealthy = 3,
    /// Switched off by an operator.
    Disabled = 4,
    /// Restart intensity exceeded; no more restarts.
    Failed = 5,
}

impl HealthStatus {
    /// From the byte stored in a service's handle.
    pub fn from_u8(v: u8) -> Self {
        match v {
            1 => Self::Healthy,
            2 => Self::Degraded,
            3 => Self::Unhealthy,
            4 => Self::Disabled,
            5 => Self::Failed,
            _ => Self::Unknown,
        }
    }

    /// Whether the service can take calls in this status.
    pub fn serving(self) -> bool {
        matches!(self, Self::Healthy | Self::Degraded)
    }
}
