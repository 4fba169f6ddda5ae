//! How errors look on the HTTP API: one JSON shape, the right status.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, ResponseError, error::JsonPayloadError};
use mcpvisor_actors::{CallError, ErrorCategory};
use serde_json::json;

/// HTTP status for an error category.
pub fn status_of(category: ErrorCategory) -> StatusCode {
    match category {
        ErrorCategory::Validation => StatusCode::BAD_REQUEST,
        ErrorCategory::Quarantined => StatusCode::UNPROCESSABLE_ENTITY,
        ErrorCategory::NotFound => StatusCode::NOT_FOUND,
        ErrorCategory::RateLimit => StatusCode::TOO_MANY_REQUESTS,
        ErrorCategory::Overload | ErrorCategory::ServiceUnavailable => {
            StatusCode::SERVICE_UNAVAILABLE
        }
        ErrorCategory::Timeout => StatusCode::GATEWAY_TIMEOUT,
        ErrorCategory::Network
        | ErrorCategory::Protocol
        | ErrorCategory::Auth
        | ErrorCategory::UpstreamToolError => StatusCode::BAD_GATEWAY,
        ErrorCategory::Cancelled => StatusCode::from_u16(499).unwrap_or(StatusCode::BAD_REQUEST),
        ErrorCategory::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// The JSON body of an error.
pub fn body_of(e: &CallError) -> serde_json::Value {
    json!({ "error": {
        "category": e.category,
        "message": e.message,
        "retryable": e.retryable(),
        "delivery": e.delivery,
        "services": e.services,
        "retryAfterMs": e.retry_after.map(|d| d.as_millis() as u64),
    }})
}

/// `e` as a response whose error body also names the request.
pub fn response_with_id(e: &ApiError, request_id: &str) -> HttpResponse {
    let mut r = HttpResponse::build(e.status_code());
    if let Some(d) = e.0.retry_after {
        r.insert_header(("Retry-After", d.as_secs().max(1).to_string()));
    }
    let mut body = body_of(&e.0);
    body["error"]["requestId"] = json!(request_id);
    r.json(body)
}

/// A [`CallError`] as an HTTP response, with the category's status unless
/// one is given.
#[derive(Debug)]
pub struct ApiError(pub CallError, pub Option<StatusCode>);

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.1.unwrap_or_else(|| status_of(self.0.category))
    }
    fn error_response(&self) -> HttpResponse {
        let mut r = HttpResponse::build(self.status_code());
        if let Some(d) = self.0.retry_after {
            r.insert_header(("Retry-After", d.as_secs().max(1).to_string()));
        }
        r.json(body_of(&self.0))
    }
}

impl From<CallError> for ApiError {
    fn from(e: CallError) -> Self {
        Self(e, None)
    }
}

/// Malformed or oversized JSON bodies on the JSON APIs.
pub fn json_payload_error(err: JsonPayloadError, _req: &HttpRequest) -> actix_web::Error {
    let (category, status) = match &err {
        JsonPayloadError::OverflowKnownLength { .. } | JsonPayloadError::Overflow { .. } => {
            (ErrorCategory::Validation, StatusCode::PAYLOAD_TOO_LARGE)
        }
        JsonPayloadError::ContentType => (
            ErrorCategory::Validation,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ),
        _ => (ErrorCategory::Validation, StatusCode::BAD_REQUEST),
    };
    let body = body_of(&CallError::new(
        category,
        format!("invalid request body: {err}"),
    ));
    actix_web::error::InternalError::from_response(err, HttpResponse::build(status).json(body))
        .into()
}
