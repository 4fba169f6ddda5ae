//! OAuth 2.0 Protected Resource Metadata (RFC 9728): where a client learns
//! which authorization server issues tokens for this server. Served at
//! `/.well-known/oauth-protected-resource` and at the path-suffixed form
//! for the resource URI (e.g. `/.well-known/oauth-protected-resource/mcp`),
//! and linked from every 401's `WWW-Authenticate` (`resource_metadata`).

use actix_web::{HttpResponse, web};
use serde_json::json;

use super::AppState;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route(
        "/.well-known/oauth-protected-resource",
        web::get().to(metadata),
    )
    .route(
        "/.well-known/oauth-protected-resource/{path:.*}",
        web::get().to(metadata),
    );
}

/// Where the metadata for `resource` is published.
pub fn metadata_url(resource: &str) -> String {
    match reqwest::Url::parse(resource) {
        Ok(url) => {
            let origin = url.origin().ascii_serialization();
            let path = url.path().trim_end_matches('/');
            format!("{origin}/.well-known/oauth-protected-resource{path}")
        }
        Err(_) => format!("{resource}/.well-known/oauth-protected-resource"),
    }
}

async fn metadata(state: web::Data<AppState>) -> HttpResponse {
    let Some(oauth) = state.guard.auth().oauth() else {
        return HttpResponse::NotFound().json(json!({"error": {
            "category": "not_found",
            "message": "no authorization server is configured (auth.oauth)",
        }}));
    };
    let config = oauth.config();
    let servers = if config.authorization_servers.is_empty() {
        vec![config.issuer.clone()]
    } else {
        config.authorization_servers.clone()
    };
    HttpResponse::Ok().json(json!({
        "resource": config.resource,
        "authorization_servers": servers,
        "scopes_supported": oauth.scopes_supported(),
        "bearer_methods_supported": ["header"],
        "resource_name": "mcpvisor",
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_lives_beside_the_resource() {
        assert_eq!(
            metadata_url("https://mcp.example.com/mcp"),
            "https://mcp.example.com/.well-known/oauth-protected-resource/mcp"
        );
        assert_eq!(
            metadata_url("http://127.0.0.1:3000"),
            "http://127.0.0.1:3000/.well-known/oauth-protected-resource"
        );
    }
}
