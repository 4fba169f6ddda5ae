//! Who is calling: client authentication and what each client may do.
//!
//! A request's bearer token is either one of the static tokens of the
//! config (`[[auth.clients]]`, `MCPVISOR_CLIENT_TOKEN`, and the admin token)
//! or an OAuth 2.1 access token — a JWT from the configured issuer, checked
//! against its JWKS ([`jwt`]). Either way the result is a [`Client`]: a name,
//! a set of [`Scopes`] and the tools it may use. With no client
//! authentication configured, callers are [`Client::anonymous`] (allowed
//! only on a loopback listen address unless `auth.allow_anonymous` says so).
//!
//! Tokens are compared in constant time and never logged; a client's token
//! is never sent upstream (nothing of the downstream request's headers is).

pub mod jwt;

use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// What a client may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// Run tools: `/mcp`, `/api/mcp/stream`.
    Call,
    /// Read the daemon's state: services, health, alerts, metrics.
    Read,
    /// Change it: enable, disable, drills.
    Admin,
}

impl Scope {
    fn bit(self) -> u8 {
        match self {
            Self::Call => 1,
            Self::Read => 2,
            Self::Admin => 4,
        }
    }

    /// The scope's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Call => "call",
            Self::Read => "read",
            Self::Admin => "admin",
        }
    }

    /// A scope by name.
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "call" => Some(Self::Call),
            "read" => Some(Self::Read),
            "admin" => Some(Self::Admin),
            _ => None,
        }
    }
}

/// A set of scopes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Scopes(u8);

impl Scopes {
    /// Every scope.
    pub const ALL: Scopes = Scopes(7);

    /// The set of `scopes`.
    pub fn of(scopes: &[Scope]) -> Self {
        Self(scopes.iter().fold(0, |acc, s| acc | s.bit()))
    }

    /// Whether `scope` is in the set.
    pub fn has(self, scope: Scope) -> bool {
        self.0 & scope.bit() != 0
    }

    /// Adds `scope`.
    pub fn with(self, scope: Scope) -> Self {
        Self(self.0 | scope.bit())
    }
}

/// Which tools a client may use: every tool matching an `allow` glob (all,
/// when there is none) and no `deny` glob. Globs take `*` and `?`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ToolAccess {
    pub allow: Vec<String>,
    pub deny: Vec<String>,
}

impl ToolAccess {
    /// Whether `tool` may be used.
    pub fn permits(&self, tool: &str) -> bool {
        (self.allow.is_empty() || self.allow.iter().any(|g| glob(g, tool)))
            && !self.deny.iter().any(|g| glob(g, tool))
    }

    /// Whether every tool may be used.
    pub fn unrestricted(&self) -> bool {
        self.allow.is_empty() && self.deny.is_empty()
    }
}

/// `*` matches any run of characters, `?` any one character.
fn glob(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

/// One `[[auth.clients]]` entry.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ClientSpec {
    /// Shown in logs and metrics (never the token).
    pub name: String,
    /// The bearer token; use `${VAR}` to keep it out of the file.
    pub token: String,
    /// What it may do.
    pub scopes: Vec<Scope>,
    /// Which tools it may use.
    #[serde(default)]
    pub tools: ToolAccess,
    /// Requests per second it may make (default `auth.limits`).
    #[serde(default)]
    pub requests_per_second: Option<u32>,
    /// Streams it may hold open at once (default `auth.limits`).
    #[serde(default)]
    pub max_streams: Option<usize>,
}

/// `[auth.limits]`: what each client may use at most.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsSpec {
    /// Sustained requests per second per client (0: no limit).
    pub requests_per_second: u32,
    /// Requests a client may make at once above that rate (default: one
    /// second's worth).
    pub burst: u32,
    /// Requests on the call routes (streams included) a client may have
    /// open at once.
    pub max_streams: usize,
}

impl Default for LimitsSpec {
    fn default() -> Self {
        Self {
            requests_per_second: 0,
            burst: 0,
            max_streams: 1024,
        }
    }
}

/// `[auth]`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// Serve clients without credentials even on a non-loopback address.
    pub allow_anonymous: bool,
    /// Static bearer tokens.
    pub clients: Vec<ClientSpec>,
    /// OAuth 2.1 access tokens (JWTs) from an authorization server.
    pub oauth: Option<jwt::OAuthConfig>,
    /// Per-client limits.
    pub limits: LimitsSpec,
}

impl AuthConfig {
    /// Whether any client authentication is configured.
    pub fn enabled(&self) -> bool {
        !self.clients.is_empty() || self.oauth.is_some()
    }
}

/// A caller, once identified.
#[derive(Debug, Clone)]
pub struct Client {
    /// Its name (`anonymous` without credentials).
    pub name: Arc<str>,
    pub scopes: Scopes,
    pub tools: Arc<ToolAccess>,
    /// Its own limits, if it has any.
    pub requests_per_second: Option<u32>,
    pub max_streams: Option<usize>,
}

impl Client {
    /// A caller without credentials, where those are not required.
    pub fn anonymous() -> Self {
        Self {
            name: "anonymous".into(),
            scopes: Scopes::of(&[Scope::Call, Scope::Read]),
            tools: Arc::default(),
            requests_per_second: None,
            max_streams: None,
        }
    }

    /// Whether it may use `tool`.
    pub fn may_use(&self, tool: &str) -> bool {
        self.tools.permits(tool)
    }
}

/// Compares secrets without an early exit, so the time taken says nothing
/// about how much of a guess was right.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = u8::from(a.len() != b.len());
    for i in 0..a.len().max(b.len()) {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0);
        diff |= x ^ y;
    }
    diff == 0
}

/// Why a request was not let in.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    /// No credentials, or ones nobody issued: 401.
    #[error("{0}")]
    Unauthenticated(String),
    /// Known, but not allowed to do this: 403.
    #[error("{0}")]
    Forbidden(String),
}

/// Turns bearer tokens into clients.
pub struct Authenticator {
    clients: Vec<(Vec<u8>, Client)>,
    oauth: Option<jwt::Verifier>,
    /// Clients need credentials.
    required: bool,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("clients", &self.clients.len())
            .field("oauth", &self.oauth.is_some())
            .field("required", &self.required)
            .finish()
    }
}

impl Authenticator {
    /// From the `[auth]` section, the admin token and `MCPVISOR_CLIENT_TOKEN`.
    pub fn new(config: &AuthConfig, admin_token: &str, env_client_token: Option<&str>) -> Self {
        let mut clients = Vec::new();
        for c in &config.clients {
            clients.push((
                c.token.as_bytes().to_vec(),
                Client {
                    name: c.name.as_str().into(),
                    scopes: Scopes::of(&c.scopes),
                    tools: Arc::new(c.tools.clone()),
                    requests_per_second: c.requests_per_second,
                    max_streams: c.max_streams,
                },
            ));
        }
        let env_client = env_client_token.filter(|t| !t.is_empty());
        if let Some(token) = env_client {
            clients.push((
                token.as_bytes().to_vec(),
                Client {
                    name: "client".into(),
                    scopes: Scopes::of(&[Scope::Call, Scope::Read]),
                    tools: Arc::default(),
                    requests_per_second: None,
                    max_streams: None,
                },
            ));
        }
        if !admin_token.is_empty() {
            clients.push((
                admin_token.as_bytes().to_vec(),
                Client {
                    name: "admin".into(),
                    scopes: Scopes::ALL,
                    tools: Arc::default(),
                    requests_per_second: None,
                    max_streams: None,
                },
            ));
        }
        Self {
            clients,
            oauth: config.oauth.as_ref().map(jwt::Verifier::new),
            required: config.enabled() || env_client.is_some(),
        }
    }

    /// Whether callers need credentials.
    pub fn required(&self) -> bool {
        self.required
    }

    /// Whether anyone can hold the admin scope.
    pub fn admin_possible(&self) -> bool {
        // A token from the issuer may carry `admin`.
        self.clients.iter().any(|(_, c)| c.scopes.has(Scope::Admin)) || self.oauth.is_some()
    }

    /// The OAuth verifier, when tokens from an authorization server count.
    pub fn oauth(&self) -> Option<&jwt::Verifier> {
        self.oauth.as_ref()
    }

    /// The client presenting `token` (a bearer token, or none).
    pub async fn identify(&self, token: Option<&str>) -> Result<Client, Denied> {
        let Some(token) = token else {
            return if self.required {
                Err(Denied::Unauthenticated("a bearer token is required".into()))
            } else {
                Ok(Client::anonymous())
            };
        };
        // Every static token is compared, matching or not.
        let mut found = None;
        for (secret, client) in &self.clients {
            if constant_time_eq(secret, token.as_bytes()) && found.is_none() {
                found = Some(client.clone());
            }
        }
        if let Some(client) = found {
            return Ok(client);
        }
        if let Some(oauth) = &self.oauth
            && jwt::looks_like_jwt(token)
        {
            return oauth.verify(token).await.map_err(Denied::Unauthenticated);
        }
        if self.required {
            Err(Denied::Unauthenticated(
                "the bearer token is not valid".into(),
            ))
        } else {
            // Credentials are not needed here; an unknown token is ignored.
            Ok(Client::anonymous())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_like_a_shell() {
        assert!(glob("asana_get_*", "asana_get_task"));
        assert!(!glob("asana_get_*", "asana_delete_task"));
        assert!(glob("*", "anything"));
        assert!(glob("a?c", "abc"));
        assert!(!glob("a?c", "abbc"));
        assert!(glob("*task*", "asana_get_tasks_for_project"));
        assert!(glob("asana_*_task", "asana_get_task"));
        assert!(!glob("asana_*_task", "asana_get_tasks"));
    }

    #[test]
    fn allow_then_deny() {
        let a = ToolAccess {
            allow: vec!["asana_get_*".into()],
            deny: vec!["asana_get_secret*".into()],
        };
        assert!(a.permits("asana_get_task"));
        assert!(!a.permits("asana_get_secrets"));
        assert!(!a.permits("asana_delete_task"));
        assert!(ToolAccess::default().permits("x"));
    }

    #[test]
    fn constant_time_eq_is_eq() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
        assert!(!constant_time_eq(b"", b"a"));
    }

    #[tokio::test]
    async fn tokens_become_clients() {
        let config = AuthConfig {
            clients: vec![ClientSpec {
                name: "reader".into(),
                token: "r-token".into(),
                scopes: vec![Scope::Read],
                tools: ToolAccess::default(),
                requests_per_second: None,
                max_streams: None,
            }],
            ..Default::default()
        };
        let auth = Authenticator::new(&config, "adm", Some("env-token"));
        assert!(auth.required());
        let c = auth.identify(Some("r-token")).await.unwrap();
        assert_eq!(&*c.name, "reader");
        assert!(c.scopes.has(Scope::Read) && !c.scopes.has(Scope::Call));
        let c = auth.identify(Some("env-token")).await.unwrap();
        assert!(c.scopes.has(Scope::Call) && !c.scopes.has(Scope::Admin));
        assert!(
            auth.identify(Some("adm"))
                .await
                .unwrap()
                .scopes
                .has(Scope::Admin)
        );
        assert!(matches!(
            auth.identify(Some("nope")).await,
            Err(Denied::Unauthenticated(_))
        ));
        assert!(matches!(
            auth.identify(None).await,
            Err(Denied::Unauthenticated(_))
        ));
        // Without client auth, callers are anonymous.
        let open = Authenticator::new(&AuthConfig::default(), "adm", None);
        assert!(!open.required());
        assert_eq!(&*open.identify(None).await.unwrap().name, "anonymous");
        assert_eq!(
            &*open.identify(Some("junk")).await.unwrap().name,
            "anonymous"
        );
        assert!(
            open.identify(Some("adm"))
                .await
                .unwrap()
                .scopes
                .has(Scope::Admin)
        );
    }
}
