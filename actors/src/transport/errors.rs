//! Translation of rmcp's errors into categorised [`CallError`]s.
//!
//! The delivery flag matters most here: an error that provably happened
//! before the request left (connect refused, HTTP 429/503 answered without
//! running anything) is `NeverSent` and safe to re-send anywhere.

use std::error::Error as StdError;
use std::time::Duration;

use rmcp::model::ErrorCode;
use rmcp::service::{ClientInitializeError, ServiceError};
use rmcp::transport::streamable_http_client::{HttpStatusError, StreamableHttpError};

use crate::error::{CallError, Delivery, ErrorCategory};

/// Category of a JSON-RPC error code returned by an upstream.
pub fn category_of_code(code: ErrorCode) -> ErrorCategory {
    match code {
        ErrorCode::INVALID_PARAMS => ErrorCategory::Validation,
        ErrorCode::METHOD_NOT_FOUND | ErrorCode::RESOURCE_NOT_FOUND => ErrorCategory::NotFound,
        ErrorCode::INTERNAL_ERROR => ErrorCategory::UpstreamToolError,
        _ => ErrorCategory::Protocol,
    }
}

/// Converts an rmcp request error. `written` says whether the request had
/// been handed to the transport when the error happened.
pub fn from_service_error(err: ServiceError, written: bool) -> CallError {
    let delivery = if written {
        Delivery::MaybeSent
    } else {
        Delivery::NeverSent
    };
    let mut out = match &err {
        ServiceError::McpError(e) => {
            let mut c = CallError::new(category_of_code(e.code), e.message.to_string());
            c.upstream_code = Some(e.code.0);
            c.upstream_data = e.data.clone().map(Box::new);
            c
        }
        ServiceError::TransportSend(e) => return from_transport_error(e.error.as_ref(), written),
        ServiceError::TransportClosed => {
            CallError::new(ErrorCategory::Network, "upstream connection closed")
        }
        ServiceError::Timeout { timeout } => CallError::new(
            ErrorCategory::Timeout,
            format!("no answer within {} ms", timeout.as_millis()),
        ),
        ServiceError::Cancelled { reason } => CallError::new(
            ErrorCategory::Cancelled,
            reason.clone().unwrap_or_else(|| "cancelled".into()),
        ),
        other => CallError::new(ErrorCategory::Protocol, other.to_string()),
    };
    out.delivery = delivery;
    out
}

/// Converts a transport-level error. The HTTP client's errors come boxed
/// as `StreamableHttpError<reqwest::Error>`, whose status variant hides the
/// status from `source()`, so it is downcast first; other transports fall
/// back to a walk of the source chain.
pub fn from_transport_error(
    err: &(dyn StdError + Send + Sync + 'static),
    written: bool,
) -> CallError {
    if let Some(classified) = classify_http(err) {
        return classified;
    }
    let mut source: Option<&(dyn StdError + 'static)> = Some(err);
    while let Some(e) = source {
        if let Some(status) = e.downcast_ref::<HttpStatusError>() {
            return from_http_status(status.status, status.retry_after.as_deref());
        }
        if let Some(r) = e.downcast_ref::<reqwest::Error>()
            && r.is_connect()
        {
            return CallError::new(
                ErrorCategory::Network,
                format!("connect failed: {}", without_url(r)),
            );
        }
        source = e.source();
    }
    let c = CallError::new(ErrorCategory::Network, err.to_string());
    if written { c.maybe_sent() } else { c }
}

/// An HTTP status or a refused connection from the Streamable HTTP client.
fn classify_http(err: &(dyn StdError + Send + Sync + 'static)) -> Option<CallError> {
    match err.downcast_ref::<StreamableHttpError<reqwest::Error>>()? {
        StreamableHttpError::HttpStatus(status) => Some(from_http_status(
            status.status,
            status.retry_after.as_deref(),
        )),
        // The request never left: nothing can have run.
        StreamableHttpError::Client(r) if r.is_connect() => Some(CallError::new(
            ErrorCategory::Network,
            format!("connect failed: {}", without_url(r)),
        )),
        StreamableHttpError::AuthRequired(_) | StreamableHttpError::InsufficientScope(_) => {
            Some(CallError::new(ErrorCategory::Auth, err.to_string()))
        }
        _ => None,
    }
}

/// What a reqwest error says, without the request's URL (its Display
/// names the URL, whose query string may carry a token).
fn without_url(e: &reqwest::Error) -> String {
    let mut text = String::from(if e.is_connect() {
        "could not connect"
    } else {
        "request failed"
    });
    let mut source = StdError::source(e);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Category and delivery of an HTTP error status from an upstream.
pub fn from_http_status(status: u16, retry_after: Option<&str>) -> CallError {
    let (category, delivery) = match status {
        401 | 403 => (ErrorCategory::Auth, Delivery::NeverSent),
        404 => (ErrorCategory::NotFound, Delivery::NeverSent),
        408 | 504 => (ErrorCategory::Timeout, Delivery::MaybeSent),
        429 => (ErrorCategory::RateLimit, Delivery::NeverSent),
        503 => (ErrorCategory::ServiceUnavailable, Delivery::NeverSent),
        _ => (ErrorCategory::Protocol, Delivery::MaybeSent),
    };
    let mut c = CallError::new(category, format!("upstream answered HTTP {status}"));
    c.delivery = delivery;
    c.retry_after = retry_after.and_then(parse_retry_after);
    c
}

/// Parses a `Retry-After` value given in seconds. (HTTP dates are rare from
/// MCP servers and are treated as absent.)
pub fn parse_retry_after(v: &str) -> Option<Duration> {
    v.trim()
        .parse::<f64>()
        .ok()
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map(Duration::from_secs_f64)
}

/// Converts a failed handshake.
pub fn from_init_error(err: ClientInitializeError) -> CallError {
    // After a failed discover, the legacy handshake's failure is the telling one.
    let err = match err {
        ClientInitializeError::LegacyFallbackFailed { fallback, .. } => *fallback,
        other => other,
    };
    if let Some(challenge) = err.auth_challenge() {
        return CallError::new(
            ErrorCategory::Auth,
            format!("upstream requires authorization: {challenge}"),
        );
    }
    if let ClientInitializeError::TransportError { error, .. } = &err
        && let Some(mut c) = classify_http(error.error.as_ref())
    {
        c.message = format!("handshake failed: {}", c.message);
        return c;
    }
    let category = match &err {
        // The upstream answered, but not with what the handshake needs.
        ClientInitializeError::ExpectedInitResponse(_)
        | ClientInitializeError::ExpectedInitResult(_)
        | ClientInitializeError::ConflictInitResponseId(..)
        | ClientInitializeError::UncorrelatedErrorResponse { .. }
        | ClientInitializeError::JsonRpcError(_)
        | ClientInitializeError::NoCompatibleProtocolVersion { .. } => ErrorCategory::Protocol,
        _ => ErrorCategory::Network,
    };
    CallError::new(category, format!("handshake failed: {err}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_limit_keeps_retry_after_and_is_never_sent() {
        let c = from_http_status(429, Some("2"));
        assert_eq!(c.category, ErrorCategory::RateLimit);
        assert_eq!(c.delivery, Delivery::NeverSent);
        assert_eq!(c.retry_after, Some(Duration::from_secs(2)));
    }

    fn transport_error(e: StreamableHttpError<reqwest::Error>) -> ServiceError {
        ServiceError::TransportSend(rmcp::transport::DynamicTransportError::from_parts(
            "streamable-http",
            std::any::TypeId::of::<()>(),
            Box::new(e),
        ))
    }

    #[test]
    fn http_429_from_the_client_transport_is_rate_limit_never_sent() {
        let e = transport_error(StreamableHttpError::HttpStatus(HttpStatusError::new(
            429,
            Some("3".into()),
        )));
        let c = from_service_error(e, true);
        assert_eq!(c.category, ErrorCategory::RateLimit);
        assert_eq!(c.delivery, Delivery::NeverSent);
        assert_eq!(c.retry_after, Some(Duration::from_secs(3)));
        let e = transport_error(StreamableHttpError::HttpStatus(HttpStatusError::new(
            500, None,
        )));
        assert_eq!(from_service_error(e, true).delivery, Delivery::MaybeSent);
    }

    #[tokio::test]
    async fn refused_connection_is_never_sent() {
        // Nothing listens on port 9 of loopback (discard); the connect fails.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let r = reqwest::Client::new()
            .get(format!("http://127.0.0.1:{port}/?token=s3cret"))
            .send()
            .await
            .expect_err("nothing listens there");
        assert!(r.is_connect());
        let c = from_service_error(transport_error(StreamableHttpError::Client(r)), true);
        assert_eq!(
            (c.category, c.delivery),
            (ErrorCategory::Network, Delivery::NeverSent)
        );
        // The URL, token and all, stays out of the message.
        assert!(c.message.contains("connect"), "{}", c.message);
        assert!(!c.message.contains("s3cret"), "{}", c.message);
    }

    #[test]
    fn closed_transport_after_write_may_have_run() {
        let c = from_service_error(ServiceError::TransportClosed, true);
        assert_eq!(c.category, ErrorCategory::Network);
        assert_eq!(c.delivery, Delivery::MaybeSent);
        let c = from_service_error(ServiceError::TransportClosed, false);
        assert_eq!(c.delivery, Delivery::NeverSent);
    }

    #[test]
    fn retry_after_parsing() {
        assert_eq!(
            parse_retry_after(" 1.5 "),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(parse_retry_after("-1"), None);
        assert_eq!(parse_retry_after("Wed, 21 Oct 2026 07:28:00 GMT"), None);
    }
}
