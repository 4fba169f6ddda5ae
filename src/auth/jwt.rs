//! OAuth 2.1 resource server: access tokens are JWTs from the configured
//! authorization server, as the MCP authorization spec asks.
//!
//! A token is accepted when its signature checks out against a key of the
//! issuer's JWKS (fetched from `jwks_url` or read from `jwks_file`, cached,
//! and fetched again when a token names a key id it does not hold — at most
//! every [`REFRESH_GAP`]), its algorithm is an asymmetric one (never `none`,
//! never HMAC with a public key), `iss` is the issuer, `aud` names this
//! server's resource URI, and `exp`/`nbf` hold within `leeway_secs`. Its
//! `scope` claim (space-separated, or an `scp` array) maps onto mcpvisor's
//! scopes.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode, decode_header};
use serde::{Deserialize, Serialize};
use tokio::sync::RwLock;

use super::{Client, Scope, Scopes, ToolAccess};

/// The shortest time between two JWKS fetches caused by unknown key ids.
pub const REFRESH_GAP: Duration = Duration::from_secs(10);

/// `[auth.oauth]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct OAuthConfig {
    /// The authorization server's issuer identifier (`iss`).
    pub issuer: String,
    /// This server's resource URI: tokens must name it in `aud`.
    pub resource: String,
    /// Where the issuer publishes its keys.
    #[serde(default)]
    pub jwks_url: Option<String>,
    /// Or a JWKS file (relative to the config file).
    #[serde(default)]
    pub jwks_file: Option<PathBuf>,
    /// Clock skew allowed on `exp` and `nbf`.
    #[serde(default = "default_leeway")]
    pub leeway_secs: u64,
    /// Token scopes and the mcpvisor scope each grants; `call`, `read` and
    /// `admin` grant themselves.
    #[serde(default)]
    pub scopes: BTreeMap<String, Scope>,
    /// Which tools OAuth clients may use.
    #[serde(default)]
    pub tools: ToolAccess,
    /// Authorization servers named in the protected-resource metadata
    /// (default: the issuer).
    #[serde(default)]
    pub authorization_servers: Vec<String>,
}

fn default_leeway() -> u64 {
    60
}

/// Signature algorithms accepted: asymmetric ones only.
const ALGORITHMS: [Algorithm; 9] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

#[derive(Debug, Deserialize)]
struct Claims {
    #[serde(default)]
    sub: Option<String>,
    #[serde(default)]
    client_id: Option<String>,
    #[serde(default)]
    scope: Option<String>,
    #[serde(default)]
    scp: Option<ScopeList>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum ScopeList {
    One(String),
    Many(Vec<String>),
}

struct Keys {
    set: JwkSet,
    fetched: Option<Instant>,
    /// The last fetch an unknown key id caused.
    looked_again: Option<Instant>,
    /// The last failed fetch, and why.
    failed: Option<(Instant, String)>,
}

/// Checks access tokens.
pub struct Verifier {
    config: OAuthConfig,
    keys: RwLock<Keys>,
    /// One key-set fetch at a time.
    fetching: tokio::sync::Mutex<()>,
    http: reqwest::Client,
    tools: Arc<ToolAccess>,
}

impl Verifier {
    /// A verifier for `config`; keys are fetched when first needed.
    pub fn new(config: &OAuthConfig) -> Self {
        Self {
            tools: Arc::new(config.tools.clone()),
            config: config.clone(),
            keys: RwLock::new(Keys {
                set: JwkSet { keys: Vec::new() },
                fetched: None,
                looked_again: None,
                failed: None,
            }),
            fetching: tokio::sync::Mutex::new(()),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap_or_default(),
        }
    }

    /// The settings.
    pub fn config(&self) -> &OAuthConfig {
        &self.config
    }

    /// The scope a token scope grants.
    fn grant(&self, token_scope: &str) -> Option<Scope> {
        self.config
            .scopes
            .get(token_scope)
            .copied()
            .or_else(|| Scope::parse(token_scope))
    }

    /// Every token scope that means something here.
    pub fn scopes_supported(&self) -> Vec<String> {
        let mut names: Vec<String> = ["call", "read", "admin"].map(String::from).to_vec();
        names.extend(self.config.scopes.keys().cloned());
        names.sort();
        names.dedup();
        names
    }

    /// The client a token stands for, or why it is refused.
    pub async fn verify(&self, token: &str) -> Result<Client, String> {
        let header = decode_header(token).map_err(|e| format!("not a usable JWT: {e}"))?;
        if !ALGORITHMS.contains(&header.alg) {
            return Err(format!(
                "signature algorithm {:?} is not accepted",
                header.alg
            ));
        }
        let key = match self.key(header.kid.as_deref()).await? {
            Some(key) => key,
            None => {
                self.refresh(true).await?;
                self.key(header.kid.as_deref())
                    .await?
                    .ok_or_else(|| "the token's key id is not in the issuer's key set".to_owned())?
            }
        };
        let mut validation = Validation::new(header.alg);
        validation.set_issuer(&[self.config.issuer.as_str()]);
        validation.set_audience(&[self.config.resource.as_str()]);
        validation.leeway = self.config.leeway_secs;
        validation.validate_nbf = true;
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        let data = decode::<Claims>(token, &key, &validation)
            .map_err(|e| format!("the token is not valid: {e}"))?;
        let claims = data.claims;
        let mut scopes = Scopes::default();
        let listed: Vec<String> = match (&claims.scope, &claims.scp) {
            (Some(s), _) => s.split_whitespace().map(str::to_owned).collect(),
            (None, Some(ScopeList::One(s))) => s.split_whitespace().map(str::to_owned).collect(),
            (None, Some(ScopeList::Many(v))) => v.clone(),
            (None, None) => Vec::new(),
        };
        for s in &listed {
            if let Some(granted) = self.grant(s) {
                scopes = scopes.with(granted);
            }
        }
        let who = claims
            .client_id
            .or(claims.sub)
            .unwrap_or_else(|| "unknown".to_owned());
        Ok(Client {
            name: format!("oauth:{who}").into(),
            scopes,
            tools: self.tools.clone(),
            requests_per_second: None,
            max_streams: None,
        })
    }

    /// The key for `kid` (or the only key, when the token names none).
    async fn key(&self, kid: Option<&str>) -> Result<Option<DecodingKey>, String> {
        if self.keys.read().await.fetched.is_none() {
            self.refresh(false).await?;
        }
        let keys = self.keys.read().await;
        let jwk = match kid {
            Some(kid) => keys.set.find(kid),
            None if keys.set.keys.len() == 1 => keys.set.keys.first(),
            None => return Err("the token names no key id".into()),
        };
        jwk.map(|j| DecodingKey::from_jwk(j).map_err(|e| format!("unusable key: {e}")))
            .transpose()
    }

    /// Loads the key set. One fetch runs at a time, outside the lock that
    /// readers take; fetches an unknown key id asks for, and fetches after
    /// a failure, happen at most every [`REFRESH_GAP`].
    async fn refresh(&self, unknown_kid: bool) -> Result<(), String> {
        let _one = self.fetching.lock().await;
        {
            let mut keys = self.keys.write().await;
            let recent = |at: Option<Instant>| at.is_some_and(|at| at.elapsed() < REFRESH_GAP);
            if let Some((at, why)) = &keys.failed
                && recent(Some(*at))
            {
                return Err(why.clone());
            }
            if unknown_kid {
                if recent(keys.looked_again) {
                    return Ok(());
                }
                keys.looked_again = Some(Instant::now());
            } else if keys.fetched.is_some() {
                // Another request loaded them while this one waited.
                return Ok(());
            }
        }
        let fetched = self.fetch().await;
        let mut keys = self.keys.write().await;
        match fetched {
            Ok(set) => {
                tracing::info!(keys = set.keys.len(), "issuer keys loaded");
                keys.set = set;
                keys.fetched = Some(Instant::now());
                keys.failed = None;
                Ok(())
            }
            Err(why) => {
                tracing::warn!(error = %why, "issuer keys not loaded");
                keys.failed = Some((Instant::now(), why.clone()));
                Err(why)
            }
        }
    }

    async fn fetch(&self) -> Result<JwkSet, String> {
        if let Some(url) = &self.config.jwks_url {
            self.http
                .get(url)
                .send()
                .await
                .and_then(|r| r.error_for_status())
                .map_err(|e| format!("cannot fetch the issuer's keys: {}", e.without_url()))?
                .json()
                .await
                .map_err(|e| format!("the issuer's key set is not valid: {}", e.without_url()))
        } else if let Some(file) = &self.config.jwks_file {
            let text = std::fs::read_to_string(file)
                .map_err(|e| format!("cannot read {}: {e}", file.display()))?;
            serde_json::from_str(&text)
                .map_err(|e| format!("{} is not a JWKS: {e}", file.display()))
        } else {
            Err("auth.oauth has neither jwks_url nor jwks_file".into())
        }
    }
}

/// Whether a bearer token has the shape of a JWT (three base64url parts).
pub fn looks_like_jwt(token: &str) -> bool {
    token.split('.').count() == 3
}
