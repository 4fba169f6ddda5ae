//! Typed errors of the engine, each with a category.
//!
//! Every failure that reaches a client is a [`CallError`]: it carries a
//! [`ErrorCategory`] (what kind of failure), a [`Delivery`] (whether the
//! upstream may have executed the call) and the services that were tried.
//! The category decides whether a retry makes sense at all; the delivery and
//! the tool's annotations decide whether a retry is *safe*.

use std::time::Duration;

use serde::Serialize;

/// What kind of failure happened. The names are part of the HTTP API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCategory {
    /// The connection to the upstream failed or broke.
    Network,
    /// The upstream did not answer in time.
    Timeout,
    /// The upstream refused our credentials.
    Auth,
    /// The arguments do not match the tool's input schema.
    Validation,
    /// The upstream asked us to slow down.
    RateLimit,
    /// No such tool (or no such object upstream).
    NotFound,
    /// No service that offers the tool is available.
    ServiceUnavailable,
    /// The upstream broke the MCP protocol.
    Protocol,
    /// The tool ran and reported an error (`isError: true`).
    UpstreamToolError,
    /// The caller went away or cancelled.
    Cancelled,
    /// A bug or invariant violation inside mcpvisor.
    Internal,
    /// Too many calls in flight; the call was not accepted.
    Overload,
    /// The call crashed its upstream twice and is refused for a while.
    Quarantined,
}

impl ErrorCategory {
    /// All categories, for metrics and documentation.
    pub const ALL: [ErrorCategory; 13] = [
        Self::Network,
        Self::Timeout,
        Self::Auth,
        Self::Validation,
        Self::RateLimit,
        Self::NotFound,
        Self::ServiceUnavailable,
        Self::Protocol,
        Self::UpstreamToolError,
        Self::Cancelled,
        Self::Internal,
        Self::Overload,
        Self::Quarantined,
    ];

    /// The category's wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Network => "network",
            Self::Timeout => "timeout",
            Self::Auth => "auth",
            Self::Validation => "validation",
            Self::RateLimit => "rate_limit",
            Self::NotFound => "not_found",
            Self::ServiceUnavailable => "service_unavailable",
            Self::Protocol => "protocol",
            Self::UpstreamToolError => "upstream_tool_error",
            Self::Cancelled => "cancelled",
            Self::Internal => "internal",
            Self::Overload => "overload",
            Self::Quarantined => "quarantined",
        }
    }

    /// Whether trying again (later, or elsewhere) can change the outcome.
    /// Safety is a separate question, answered by [`Delivery`] and the tool.
    pub fn retryable(self) -> bool {
        matches!(
            self,
            Self::Network
                | Self::Timeout
                | Self::RateLimit
                | Self::ServiceUnavailable
                | Self::Overload
        )
    }

    /// Whether this failure says the *service* is unhealthy (as opposed to
    /// the call or its arguments being wrong).
    pub fn blames_service(self) -> bool {
        matches!(
            self,
            Self::Network | Self::Timeout | Self::Protocol | Self::ServiceUnavailable
        )
    }
}

impl std::fmt::Display for ErrorCategory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether a failed call may have been executed by the upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Delivery {
    /// The request provably never reached the upstream (queued, connect
    /// refused, write failed). Re-sending cannot execute it twice.
    NeverSent,
    /// The request was written; the upstream may or may not have run it.
    MaybeSent,
}

/// A failed tool call, as reported to clients.
#[derive(Debug, Clone, thiserror::Error, Serialize)]
#[error("{category}: {message}")]
pub struct CallError {
    /// What kind of failure.
    pub category: ErrorCategory,
    /// Human-readable explanation.
    pub message: String,
    /// Whether the request may have reached the upstream.
    pub delivery: Delivery,
    /// Services that were tried, in order.
    pub services: Vec<String>,
    /// How long the upstream asked us to wait before trying again.
    #[serde(
        skip_serializing_if = "Option::is_none",
        rename = "retryAfterMs",
        with = "opt_millis"
    )]
    pub retry_after: Option<Duration>,
    /// JSON-RPC error code from the upstream, when there was one.
    #[serde(skip_serializing_if = "Option::is_none", rename = "upstreamCode")]
    pub upstream_code: Option<i32>,
    /// The upstream's JSON-RPC error `data`, passed on as it came.
    #[serde(skip)]
    pub upstream_data: Option<Box<serde_json::Value>>,
    /// The call may have run and is not safe to repeat: trying again could
    /// run it twice, so it is never retryable.
    #[serde(skip)]
    pub outcome_unknown: bool,
}

impl CallError {
    /// A new error that never reached an upstream. URLs in the message
    /// lose their credentials and query values: errors are shown.
    pub fn new(category: ErrorCategory, message: impl Into<String>) -> Self {
        let message = message.into();
        let message = if message.contains("://") {
            crate::secrets::scrub(&message)
        } else {
            message
        };
        Self {
            category,
            message,
            delivery: Delivery::NeverSent,
            services: Vec::new(),
            retry_after: None,
            upstream_code: None,
            upstream_data: None,
            outcome_unknown: false,
        }
    }

    /// Marks the error as having happened after the request was written.
    pub fn maybe_sent(mut self) -> Self {
        self.delivery = Delivery::MaybeSent;
        self
    }

    /// Records the service that produced the error.
    pub fn at(mut self, service: &str) -> Self {
        if !self.services.iter().any(|s| s == service) {
            self.services.push(service.to_owned());
        }
        self
    }

    /// Whether another attempt can help — and is safe: a call whose
    /// outcome is unknown is not, whatever its category.
    pub fn retryable(&self) -> bool {
        self.category.retryable() && !self.outcome_unknown
    }

    /// "Outcome unknown": the call may have run, and it is not safe to repeat.
    pub fn outcome_unknown(mut self) -> Self {
        self.message = format!(
            "outcome unknown: the request reached the upstream before it failed ({}); \
             the tool is not read-only or idempotent, so it was not re-sent",
            self.message
        );
        self.delivery = Delivery::MaybeSent;
        self.outcome_unknown = true;
        self
    }
}

mod opt_millis {
    use std::time::Duration;

    pub fn serialize<S: serde::Serializer>(v: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(d) => s.serialize_u64(d.as_millis() as u64),
            None => s.serialize_none(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn categories_have_distinct_names() {
        let mut names: Vec<_> = ErrorCategory::ALL.iter().map(|c| c.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), ErrorCategory::ALL.len());
    }

    #[test]
    fn only_transient_categories_are_retryable() {
        assert!(ErrorCategory::Network.retryable());
        assert!(ErrorCategory::RateLimit.retryable());
        assert!(!ErrorCategory::Validation.retryable());
        assert!(!ErrorCategory::UpstreamToolError.retryable());
        assert!(!ErrorCategory::Cancelled.retryable());
    }

    #[test]
    fn an_unknown_outcome_is_never_retryable() {
        let e = CallError::new(ErrorCategory::Network, "connection closed").maybe_sent();
        assert!(e.retryable());
        let e = e.outcome_unknown();
        assert!(!e.retryable());
        assert_eq!(e.delivery, Delivery::MaybeSent);
    }

    #[test]
    fn error_serialises_with_category_and_services() {
        let e = CallError::new(ErrorCategory::Timeout, "no answer in 5s")
            .maybe_sent()
            .at("a")
            .at("b")
            .at("a");
        let v = serde_json::to_value(&e).unwrap();
        assert_eq!(v["category"], "timeout");
        assert_eq!(v["delivery"], "maybe_sent");
        assert_eq!(v["services"], serde_json::json!(["a", "b"]));
    }
}
