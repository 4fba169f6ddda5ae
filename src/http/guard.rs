//! The one guard every request passes first, in this order:
//!
//! 1. **Host**: a loopback name or address, or one of
//!    `server.allowed_hosts` — so a page that rebinds its DNS name to
//!    127.0.0.1 is refused (DNS rebinding).
//! 2. **Origin**, when present: loopback, or one of `server.allowed_origins`
//!    (no wildcard). Allowed browser origins get explicit CORS headers and
//!    preflight answers.
//! 3. **Authentication and scope**: the bearer token names a [`Client`]
//!    (see [`crate::auth`]); the route's class says which scope it needs.
//!    `/healthz`, `/readyz` and the protected-resource metadata are open.
//! 4. **Per-client limits**: a request rate (token bucket) and a number of
//!    requests open at once (streams included); over them, 429.
//!
//! Handlers find the caller's [`Client`] in the request's extensions.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use actix_web::body::{BodySize, BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderValue};
use actix_web::http::{Method, StatusCode};
use actix_web::middleware::Next;
use actix_web::web::Bytes;
use actix_web::{HttpMessage, HttpResponse, web};
use dashmap::DashMap;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use mcpvisor_actors::{CallError, ErrorCategory};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::AppState;
use super::errors::body_of;
use crate::auth::{Authenticator, Client, Denied, LimitsSpec, Scope};

/// Which scope a route needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteClass {
    /// Probes and discovery: no credentials.
    Open,
    /// Running tools.
    Call,
    /// Reading state.
    Read,
    /// Changing state.
    Admin,
}

/// The class of a request.
pub fn classify(method: &Method, path: &str) -> RouteClass {
    if path == "/healthz" || path == "/readyz" || path.starts_with("/.well-known/") {
        return RouteClass::Open;
    }
    // The dashboard's page and assets hold no data (it comes from the API).
    if super::dashboard::ASSET_PATHS.contains(&path) {
        return RouteClass::Open;
    }
    if path == "/mcp" || path.starts_with("/api/mcp/") || path == "/sse" || path == "/message" {
        return RouteClass::Call;
    }
    // The self-tests read (and call only read-only tools), whatever their method.
    if path.starts_with("/api/test-mcp-") {
        return RouteClass::Read;
    }
    // Reading is GET and HEAD; anything else that is not a call changes
    // the daemon (admin routes, and any route added later) — so an
    // unclassified route is never weaker than admin.
    if matches!(*method, Method::GET | Method::HEAD) {
        RouteClass::Read
    } else {
        RouteClass::Admin
    }
}

/// Whether `host` (a Host header, port included or not) is loopback.
fn loopback_host(host: &str) -> bool {
    let name = host_name(host);
    if name.eq_ignore_ascii_case("localhost") || name.to_ascii_lowercase().ends_with(".localhost") {
        return true;
    }
    name.trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
        .is_ok_and(|ip| ip.is_loopback())
}

/// The name part of `host[:port]` (IPv6 literals keep their brackets).
fn host_name(host: &str) -> &str {
    if host.starts_with('[') {
        return host.find(']').map_or(host, |end| &host[..=end]);
    }
    host.rsplit_once(':').map_or(host, |(name, _)| name)
}

/// Whether a request's Host is one this daemon answers to.
pub fn host_allowed(host: Option<&str>, allowed: &[String]) -> bool {
    let Some(host) = host else { return false };
    loopback_host(host)
        || allowed
            .iter()
            .any(|a| a.eq_ignore_ascii_case(host) || a.eq_ignore_ascii_case(host_name(host)))
}

/// Whether an Origin is allowed: loopback, or listed exactly.
pub fn origin_allowed(origin: &str, allowed: &[String]) -> bool {
    if allowed.iter().any(|a| a == origin) {
        return true;
    }
    reqwest::Url::parse(origin).is_ok_and(|u| {
        matches!(u.scheme(), "http" | "https")
            && u.host_str()
                .is_some_and(|h| loopback_host(h) || h == "[::1]")
    })
}

/// Clients tracked for limits before idle ones are forgotten.
const MAX_TRACKED: usize = 4096;

/// Headers a browser may send on a cross-origin MCP request.
const CORS_ALLOW_HEADERS: &str = "authorization, content-type, accept, mcp-session-id, \
    mcp-protocol-version, last-event-id, mcp-method, mcp-name";
/// Headers a browser may read from the answer.
const CORS_EXPOSE_HEADERS: &str = "mcp-session-id, mcp-protocol-version, www-authenticate";

/// The guard's shared state.
pub struct Guard {
    auth: Authenticator,
    limits: LimitsSpec,
    rates: DashMap<Arc<str>, Arc<DefaultDirectRateLimiter>>,
    streams: DashMap<Arc<str>, Arc<Semaphore>>,
    /// `resource_metadata` for `WWW-Authenticate`, with OAuth.
    metadata_url: Option<String>,
}

impl std::fmt::Debug for Guard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Guard").field("auth", &self.auth).finish()
    }
}

impl Guard {
    /// A guard with these credentials and limits.
    pub fn new(auth: Authenticator, limits: LimitsSpec) -> Self {
        let metadata_url = auth
            .oauth()
            .map(|o| super::oauth::metadata_url(&o.config().resource));
        Self {
            auth,
            limits,
            rates: DashMap::new(),
            streams: DashMap::new(),
            metadata_url,
        }
    }

    /// The authenticator.
    pub fn auth(&self) -> &Authenticator {
        &self.auth
    }

    /// The client's rate limiter, if it has a rate.
    fn rate(&self, key: &Arc<str>, client: &Client) -> Option<Arc<DefaultDirectRateLimiter>> {
        let per_second = client
            .requests_per_second
            .unwrap_or(self.limits.requests_per_second);
        if per_second == 0 {
            return None;
        }
        if let Some(r) = self.rates.get(key) {
            return Some(r.clone());
        }
        let burst = self.limits.burst.max(per_second);
        let quota = Quota::per_second(NonZeroU32::new(per_second).unwrap_or(NonZeroU32::MIN))
            .allow_burst(NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN));
        Some(
            self.rates
                .entry(key.clone())
                .or_insert_with(|| Arc::new(RateLimiter::direct(quota)))
                .clone(),
        )
    }

    fn stream_slots(&self, key: &Arc<str>, client: &Client) -> Arc<Semaphore> {
        // Anonymous callers are keyed by address: forget the idle ones
        // before the table grows without bound.
        if self.streams.len() > MAX_TRACKED && !self.streams.contains_key(key) {
            self.streams
                .retain(|_, s| s.available_permits() < self.limits.max_streams);
            self.rates.retain(|k, _| self.streams.contains_key(k));
        }
        self.streams
            .entry(key.clone())
            .or_insert_with(|| {
                Arc::new(Semaphore::new(
                    client.max_streams.unwrap_or(self.limits.max_streams).max(1),
                ))
            })
            .clone()
    }
}

fn refuse(status: StatusCode, category: ErrorCategory, message: String) -> HttpResponse {
    HttpResponse::build(status).json(body_of(&CallError::new(category, message)))
}

fn bearer(req: &ServiceRequest) -> Option<&str> {
    req.headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
}

/// The request id of a request: the client's `X-Request-Id` when it is a
/// sensible token, else one made here. It names the request in logs (the
/// call's span), in `/api/mcp/stream` events and in the `X-Request-Id`
/// response header.
#[derive(Debug, Clone)]
pub struct RequestId(pub Arc<str>);

fn request_id(req: &ServiceRequest) -> RequestId {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    static EPOCH: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    let given = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            !v.is_empty()
                && v.len() <= 64
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
        });
    RequestId(match given {
        Some(v) => v.into(),
        None => {
            let epoch = *EPOCH.get_or_init(|| {
                SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs())
            });
            let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            format!("{epoch:x}-{n:x}").into()
        }
    })
}

/// The request id the guard gave a request.
pub fn request_id_of(req: &actix_web::HttpRequest) -> Arc<str> {
    req.extensions()
        .get::<RequestId>()
        .map_or_else(|| Arc::from("-"), |r| r.0.clone())
}

/// The guard, as actix-web middleware.
pub async fn check(
    req: ServiceRequest,
    next: Next<BoxBody>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let Some(state) = req.app_data::<web::Data<AppState>>().cloned() else {
        // Without its state the guard cannot judge: nothing passes.
        let res = refuse(
            StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCategory::Internal,
            "the request guard is not configured".into(),
        );
        return Ok(req.into_response(res));
    };
    let server = &state.server;
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    if !host_allowed(host.as_deref(), &server.allowed_hosts) {
        tracing::debug!(host = host.as_deref().unwrap_or("-"), path = %req.path(), "refused: Host not allowed");
        let res = refuse(
            StatusCode::FORBIDDEN,
            ErrorCategory::Auth,
            "Host not allowed: use a loopback address or add it to server.allowed_hosts".into(),
        );
        return Ok(req.into_response(res));
    }
    let origin = req
        .headers()
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    if let Some(o) = &origin
        && !origin_allowed(o, &server.allowed_origins)
    {
        tracing::debug!(origin = %o, path = %req.path(), "refused: Origin not allowed");
        let res = refuse(
            StatusCode::FORBIDDEN,
            ErrorCategory::Auth,
            "Origin not allowed: add it to server.allowed_origins".into(),
        );
        return Ok(req.into_response(res));
    }
    // A CORS preflight carries no credentials; it only learns what is allowed.
    if req.method() == Method::OPTIONS
        && let Some(o) = &origin
        && req.headers().contains_key("access-control-request-method")
    {
        let res = HttpResponse::NoContent()
            .insert_header(("access-control-allow-origin", o.as_str()))
            .insert_header(("access-control-allow-methods", "GET, POST, DELETE, OPTIONS"))
            .insert_header(("access-control-allow-headers", CORS_ALLOW_HEADERS))
            .insert_header(("access-control-max-age", "600"))
            .insert_header(("vary", "Origin"))
            .finish();
        return Ok(req.into_response(res));
    }

    let rid = request_id(&req);
    req.extensions_mut().insert(rid.clone());
    // The path as routing sees it: percent-decoded (`/%6Dcp` is `/mcp`).
    let class = classify(req.method(), req.match_info().as_str());
    let guard = state.guard.clone();
    let mut permit = None;
    if class != RouteClass::Open {
        let client = match guard.auth.identify(bearer(&req)).await {
            Ok(c) => c,
            Err(Denied::Unauthenticated(why)) | Err(Denied::Forbidden(why)) => {
                let challenge = match &guard.metadata_url {
                    Some(url) => format!("Bearer realm=\"mcpvisor\", resource_metadata=\"{url}\""),
                    None => "Bearer realm=\"mcpvisor\"".to_owned(),
                };
                let res = HttpResponse::Unauthorized()
                    .insert_header((header::WWW_AUTHENTICATE, challenge))
                    .json(body_of(&CallError::new(ErrorCategory::Auth, why)));
                return Ok(req.into_response(res));
            }
        };
        let needed = match class {
            RouteClass::Call => Scope::Call,
            RouteClass::Read => Scope::Read,
            _ => Scope::Admin,
        };
        // Without credentials where some would do: authenticate first.
        if !client.scopes.has(needed) && &*client.name == "anonymous" && guard.auth.admin_possible()
        {
            let res = HttpResponse::Unauthorized()
                .insert_header((header::WWW_AUTHENTICATE, "Bearer realm=\"mcpvisor\""))
                .json(body_of(&CallError::new(
                    ErrorCategory::Auth,
                    format!("the `{}` scope needs a bearer token", needed.as_str()),
                )));
            return Ok(req.into_response(res));
        }
        if !client.scopes.has(needed) {
            let message = if needed == Scope::Admin && !guard.auth.admin_possible() {
                "admin routes are disabled: set server.admin_token (MCPVISOR_ADMIN_TOKEN)"
                    .to_owned()
            } else {
                format!(
                    "client `{}` lacks the `{}` scope",
                    client.name,
                    needed.as_str()
                )
            };
            let res = HttpResponse::Forbidden()
                .insert_header((
                    header::WWW_AUTHENTICATE,
                    format!(
                        "Bearer realm=\"mcpvisor\", error=\"insufficient_scope\", scope=\"{}\"",
                        needed.as_str()
                    ),
                ))
                .json(body_of(&CallError::new(ErrorCategory::Auth, message)));
            return Ok(req.into_response(res));
        }
        // Anonymous callers share limits per address.
        let key: Arc<str> = if &*client.name == "anonymous" {
            let peer = req
                .peer_addr()
                .map(|a| a.ip().to_string())
                .unwrap_or_default();
            format!("anonymous@{peer}").into()
        } else {
            client.name.clone()
        };
        if let Some(Err(not_until)) = guard.rate(&key, &client).map(|r| r.check()) {
            let wait = not_until.wait_time_from(governor::clock::Clock::now(
                &governor::clock::DefaultClock::default(),
            ));
            let secs = wait.as_secs_f64().ceil().max(1.0) as u64;
            let mut e = CallError::new(
                ErrorCategory::RateLimit,
                format!("client `{}` is over its request rate", client.name),
            );
            e.retry_after = Some(Duration::from_secs(secs));
            let res = HttpResponse::TooManyRequests()
                .insert_header((header::RETRY_AFTER, secs.to_string()))
                .json(body_of(&e));
            return Ok(req.into_response(res));
        }
        if class == RouteClass::Call {
            match guard.stream_slots(&key, &client).try_acquire_owned() {
                Ok(p) => permit = Some(p),
                Err(_) => {
                    let mut e = CallError::new(
                        ErrorCategory::RateLimit,
                        format!("client `{}` has too many requests open", client.name),
                    );
                    e.retry_after = Some(Duration::from_secs(1));
                    let res = HttpResponse::TooManyRequests()
                        .insert_header((header::RETRY_AFTER, "1"))
                        .json(body_of(&e));
                    return Ok(req.into_response(res));
                }
            }
        }
        req.extensions_mut().insert(client);
    }

    let mut res = next.call(req).await?;
    if let Ok(v) = HeaderValue::from_str(&rid.0) {
        res.headers_mut()
            .insert(header::HeaderName::from_static("x-request-id"), v);
    }
    if let Some(o) = origin {
        let headers = res.headers_mut();
        if let Ok(v) = HeaderValue::from_str(&o) {
            headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, v);
        }
        headers.insert(
            header::ACCESS_CONTROL_EXPOSE_HEADERS,
            HeaderValue::from_static(CORS_EXPOSE_HEADERS),
        );
        headers.append(header::VARY, HeaderValue::from_static("Origin"));
    }
    Ok(match permit {
        // The request counts as open until its body (a stream) has ended.
        Some(permit) => res.map_body(|_, body| {
            BoxBody::new(Held {
                body,
                _permit: permit,
            })
        }),
        None => res,
    })
}

/// A response body that holds a permit until it is dropped.
struct Held {
    body: BoxBody,
    _permit: OwnedSemaphorePermit,
}

impl MessageBody for Held {
    type Error = Box<dyn std::error::Error>;

    fn size(&self) -> BodySize {
        self.body.size()
    }

    fn poll_next(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Bytes, Self::Error>>> {
        Pin::new(&mut self.body).poll_next(cx)
    }
}

/// The caller of a request the guard let in.
pub fn client_of(req: &actix_web::HttpRequest) -> Client {
    req.extensions()
        .get::<Client>()
        .cloned()
        .unwrap_or_else(Client::anonymous)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts() {
        for ok in [
            "localhost",
            "localhost:3000",
            "127.0.0.1:3000",
            "[::1]:3000",
            "app.localhost",
        ] {
            assert!(host_allowed(Some(ok), &[]), "{ok}");
        }
        for bad in [
            "evil.example:3000",
            "evil.example",
            "10.0.0.5:3000",
            "127.0.0.1.evil.example",
        ] {
            assert!(!host_allowed(Some(bad), &[]), "{bad}");
        }
        assert!(!host_allowed(None, &[]));
        let allowed = vec!["mcp.internal".to_owned(), "10.0.0.5:3000".to_owned()];
        assert!(host_allowed(Some("mcp.internal:3000"), &allowed));
        assert!(host_allowed(Some("10.0.0.5:3000"), &allowed));
        assert!(!host_allowed(Some("10.0.0.5:4000"), &allowed));
    }

    #[test]
    fn origins() {
        assert!(origin_allowed("http://localhost:5173", &[]));
        assert!(origin_allowed("http://127.0.0.1", &[]));
        assert!(origin_allowed("http://[::1]:8080", &[]));
        assert!(!origin_allowed("http://evil.example", &[]));
        assert!(!origin_allowed("null", &[]));
        assert!(!origin_allowed("file://", &[]));
        assert!(origin_allowed(
            "https://app.example",
            &["https://app.example".into()]
        ));
        assert!(!origin_allowed(
            "https://app.example.evil",
            &["https://app.example".into()]
        ));
    }

    #[test]
    fn routes_are_classified() {
        let (get, post) = (Method::GET, Method::POST);
        assert_eq!(classify(&get, "/healthz"), RouteClass::Open);
        assert_eq!(
            classify(&get, "/.well-known/oauth-protected-resource"),
            RouteClass::Open
        );
        assert_eq!(classify(&post, "/mcp"), RouteClass::Call);
        assert_eq!(classify(&get, "/mcp"), RouteClass::Call);
        assert_eq!(classify(&post, "/api/mcp/stream"), RouteClass::Call);
        assert_eq!(classify(&get, "/api/services"), RouteClass::Read);
        assert_eq!(classify(&get, "/metrics"), RouteClass::Read);
        assert_eq!(
            classify(&post, "/api/services/a/disable"),
            RouteClass::Admin
        );
        assert_eq!(classify(&post, "/api/drills/failover"), RouteClass::Admin);
        assert_eq!(classify(&get, "/api/drills"), RouteClass::Read);
        assert_eq!(classify(&post, "/api/anything-new"), RouteClass::Admin);
        assert_eq!(
            classify(&post, "/api/test-mcp-integration"),
            RouteClass::Read
        );
    }
}
