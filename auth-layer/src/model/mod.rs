//! The records auth-layer keeps: the session ([`SessionData`], with the [`User`]'s claims) and the
//! login attempt in flight ([`TransactionData`]). Stores persist them; they know nothing of
//! where they are kept.

pub(crate) mod compact;

use crate::config::AuthConfig;
use crate::record::chunk;

use std::sync::{Arc, OnceLock};

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

/// The signed-in user: the claims of the verified ID token, protocol claims removed.
///
/// ```
/// use auth_layer::User;
///
/// let claims = serde_json::json!({"sub": "auth0|alice", "email": "alice@example.com", "org_id": "org_acme"});
/// let user = User::from_id_token_claims(claims.as_object().unwrap().clone());
/// assert_eq!(user.sub(), "auth0|alice");
/// assert_eq!(user.email(), Some("alice@example.com"));
/// assert_eq!(user.claim_str("org_id"), Some("org_acme")); // any claim the provider sent
/// ```
///
/// Cloning a `User` is cheap: clones share the claims, so the axum extractor hands every
/// request its own `User` without copying them; [`User::claims_mut`] copies them first if
/// they are shared.
#[derive(Clone)]
pub struct User {
    claims: Arc<Claims>,
}

/// A user's claims, and their `sub` once somebody asked for it: a handler reads `sub` on
/// every request, and a session read from the store's cache is the same `Claims` every time,
/// so the map is searched once per session, not once per request.
struct Claims {
    map: Map<String, Value>,
    sub: OnceLock<Box<str>>,
}

/// A copy is made to be changed ([`User::claims_mut`]): its `sub` is found again.
impl Clone for Claims {
    fn clone(&self) -> Self {
        Self { map: self.map.clone(), sub: OnceLock::new() }
    }
}

impl Claims {
    fn new(map: Map<String, Value>) -> Arc<Self> {
        Arc::new(Self { map, sub: OnceLock::new() })
    }
}

impl PartialEq for User {
    fn eq(&self, other: &Self) -> bool {
        self.claims.map == other.claims.map
    }
}

impl std::fmt::Debug for User {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("User").field("claims", &self.claims.map).finish()
    }
}

impl Serialize for User {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.claims.map.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for User {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Map::deserialize(deserializer).map(|claims| Self { claims: Claims::new(claims) })
    }
}

/// ID-token claims that describe the token, not the user; they are not kept in the session.
/// The ID token's claims about the token itself, dropped. Those about the authentication
/// (`auth_time`, `acr`, `amr`) stay: step-up guards read them.
const PROTOCOL_CLAIMS: &[&str] = &["aud", "exp", "iat", "nbf", "nonce", "at_hash", "c_hash", "azp", "jti"];

impl User {
    /// The user from an ID token's verified claims.
    pub fn from_id_token_claims(mut claims: Map<String, Value>) -> Self {
        claims.retain(|name, _| !PROTOCOL_CLAIMS.contains(&name.as_str()));
        Self { claims: Claims::new(claims) }
    }

    /// The subject: the user's id at the provider. Looked up once per session (and again
    /// after [`claims_mut`](Self::claims_mut)), not on every call.
    pub fn sub(&self) -> &str {
        self.claims.sub.get_or_init(|| self.claim_str("sub").unwrap_or_default().into())
    }

    /// The `name` claim, when the provider sent one.
    pub fn name(&self) -> Option<&str> {
        self.claim_str("name")
    }

    /// The `email` claim, when the provider sent one.
    pub fn email(&self) -> Option<&str> {
        self.claim_str("email")
    }

    /// The provider's session id (`sid`), when the provider sent one.
    pub fn sid(&self) -> Option<&str> {
        self.claim_str("sid")
    }

    /// When the user authenticated (`auth_time`, seconds since the Unix epoch), when the
    /// provider said.
    pub fn auth_time(&self) -> Option<u64> {
        self.claims.map.get("auth_time").and_then(Value::as_u64)
    }

    /// The authentication context class the provider reached (`acr`), when it said.
    pub fn acr(&self) -> Option<&str> {
        self.claim_str("acr")
    }

    /// The organization the user logged in to (Auth0's `org_id` claim), when there was one.
    pub fn org_id(&self) -> Option<&str> {
        self.claim_str("org_id")
    }

    /// The organization's name (Auth0's `org_name` claim), when the provider sent it.
    pub fn org_name(&self) -> Option<&str> {
        self.claim_str("org_name")
    }

    /// Any claim, by name.
    pub fn claim(&self, name: &str) -> Option<&Value> {
        self.claims.map.get(name)
    }

    /// A string claim, by name.
    pub fn claim_str(&self, name: &str) -> Option<&str> {
        self.claims.map.get(name).and_then(Value::as_str)
    }

    /// All claims.
    pub fn claims(&self) -> &Map<String, Value> {
        &self.claims.map
    }

    /// All claims, to change before the session is saved. Copies them first if another
    /// clone of this `User` shares them.
    pub fn claims_mut(&mut self) -> &mut Map<String, Value> {
        let claims = Arc::make_mut(&mut self.claims);
        // Found again from the changed claims when next asked for (a copy starts without it).
        claims.sub = OnceLock::new();
        &mut claims.map
    }
}

/// An access token for one audience and scope, with its expiry. `Debug` leaves the token out.
///
/// ```no_run
/// # async fn run(config: auth_layer::AuthConfig) -> Result<(), auth_layer::AuthError> {
/// use auth_layer::AuthClient;
///
/// // Keep only the orders API's token in sessions: smaller cookies, nothing unused kept.
/// let client = AuthClient::builder(config)
///     .before_save(|session| {
///         session.token_sets.retain(|set| set.audience.as_deref() == Some("https://orders.example.com"));
///     })
///     .build()
///     .await?;
/// # let _ = client; Ok(()) }
/// ```
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenSet {
    /// The audience it was issued for, when one was asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audience: Option<String>,
    /// The scope granted.
    #[serde(default)]
    pub scope: String,
    /// The access token.
    pub access_token: String,
    /// When it expires, in seconds since the Unix epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<u64>,
}

impl std::fmt::Debug for TokenSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenSet")
            .field("audience", &self.audience)
            .field("scope", &self.scope)
            .field("access_token", &crate::config::Redacted::of(&self.access_token))
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// A session: who is logged in and the tokens the provider gave.
///
/// Kept whole in the session cookie by the cookie store, or by a server-side store under a
/// keyed hash of `session:{id}` (sealed, and indexed by `sub` and `sid` for back-channel logout).
///
/// A handler reads it through the layer's extractors (`Session`, `User`); a store, a hook or a
/// test sees it whole:
///
/// ```
/// use auth_layer::{AuthConfig, SessionData, User};
/// use serde_json::json;
/// # let config = AuthConfig::builder().issuer("https://op.example/").client_id("c").client_secret("s")
/// #     .secret("a secret of at least thirty-two bytes, from the environment").base_url("http://localhost:3000").build()?;
///
/// let claims = json!({ "sub": "auth0|42", "sid": "op-session-7", "email": "ada@example.com" });
/// let user = User::from_id_token_claims(claims.as_object().unwrap().clone());
/// let now = config.clock().now();
/// let session = SessionData::new(user, "the ID token".into(), now);
/// assert_eq!((session.sub(), session.sid()), ("auth0|42", Some("op-session-7")));
/// assert!(!session.is_expired(&config, now));
/// // Neither its Debug nor a log line prints a token.
/// assert!(!format!("{session:?}").contains("the ID token"));
/// # Ok::<(), auth_layer::ConfigError>(())
/// ```
#[derive(Clone, PartialEq, Serialize, Deserialize, auth_derive::Store)]
#[store(key = "session:{id}", name = "session", encrypt, codec = crate::model::compact)]
#[doc(alias = "StateData")]
pub struct SessionData {
    /// A random id of this session (256 bits), new at every login.
    pub(crate) id: String,
    /// The user's subject, indexed for back-channel logout.
    #[store(index)]
    pub(crate) sub: String,
    /// The provider's session id, when it sent one; indexed for back-channel logout.
    #[store(index)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) sid: Option<String>,
    /// The user's claims.
    pub user: User,
    /// The raw ID token, kept for `id_token_hint` at logout.
    pub id_token: String,
    /// The refresh token, when the provider gave one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    /// Access tokens by audience and scope.
    #[serde(default)]
    pub token_sets: Vec<TokenSet>,
    /// When the user logged in (seconds since the Unix epoch): the absolute limit counts from here.
    pub created_at: u64,
    /// When the session was last renewed: the inactivity limit counts from here.
    pub touched_at: u64,
    /// The logout markers of its user and provider session that already existed when it was
    /// created (their generations), written by the cookie store: a marker it has seen is older
    /// than the session and does not end it, whatever the clocks say.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) markers_seen: Vec<u64>,
    /// The tenant whose login made it ([`AuthConfig::tenant`]), in a multi-tenant app: read
    /// under any other tenant, it is no session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) tenant: Option<String>,
    /// The DPoP key its tokens are bound to, when they are.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) dpop: Option<DpopBinding>,
    /// The provider's upper bound on the session (seconds since the Unix epoch), when its ID
    /// token gave one (Auth0's `session_expiry` claim): past it the session ends, whatever the
    /// app's own limits allow, without a call to the provider.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) ends_by: Option<u64>,
    /// When its refresh token expires, when the token response said
    /// (`refresh_token_expires_in`): past it the session cannot be refreshed, and ends
    /// ([`ends_by`](Self::ends_by) takes it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) refresh_token_ends_at: Option<u64>,
    /// What a person recognises the login's browser by ("Firefox on Linux"), from its
    /// `User-Agent`: recorded by stores that list sessions, for the listing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) device: Option<String>,
    /// Where the login came from, as the app's hook described it
    /// ([`AuthClientBuilder::session_location`](crate::AuthClientBuilder::session_location)).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) location: Option<String>,
}

/// The DPoP key a session's tokens are bound to ([`AuthConfigBuilder::dpop`](crate::AuthConfigBuilder::dpop)).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum DpopBinding {
    /// The session's own key: its private scalar, base64url (sealed with the session).
    Key(String),
    /// The process's key, by its thumbprint.
    Process(String),
}

impl std::fmt::Debug for DpopBinding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Key(secret) => f.debug_tuple("Key").field(&crate::config::Redacted::of(secret)).finish(),
            Self::Process(thumbprint) => f.debug_tuple("Process").field(thumbprint).finish(),
        }
    }
}

impl std::fmt::Debug for SessionData {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionData")
            .field("id", &crate::config::Redacted::of(&self.id))
            .field("sub", &self.sub)
            .field("sid", &self.sid)
            .field("user", &self.user)
            .field("id_token", &crate::config::Redacted::of(&self.id_token))
            .field("refresh_token", &self.refresh_token.as_ref().map(crate::config::Redacted::of))
            .field("token_sets", &self.token_sets)
            .field("created_at", &self.created_at)
            .field("touched_at", &self.touched_at)
            .field("markers_seen", &self.markers_seen)
            .field("tenant", &self.tenant)
            .field("dpop", &self.dpop)
            .field("ends_by", &self.ends_by)
            .field("refresh_token_ends_at", &self.refresh_token_ends_at)
            .field("device", &self.device)
            .field("location", &self.location)
            .finish()
    }
}

/// The provider's bound on a session of `user`: its `session_expiry` claim (Auth0's), when it is
/// a time in whole seconds.
fn provider_bound(user: &User) -> Option<u64> {
    user.claims().get("session_expiry").and_then(Value::as_u64)
}

/// The memory a claim value holds beyond its own 32 bytes.
fn value_heap(value: &Value) -> usize {
    match value {
        Value::String(text) => chunk(text.capacity()),
        Value::Array(items) => {
            chunk(items.capacity() * std::mem::size_of::<Value>()) + items.iter().map(value_heap).sum::<usize>()
        }
        Value::Object(map) => map_heap(map),
        Value::Null | Value::Bool(_) | Value::Number(_) => 0,
    }
}

/// The memory a claims map holds: its B-tree's nodes (11 entries each, about two thirds full
/// once it has more than one), each key and each value's own.
fn map_heap(map: &Map<String, Value>) -> usize {
    /// A leaf of `BTreeMap<String, Value>`: 11 keys, 11 values, a parent link and lengths.
    const NODE: usize = 8 + 11 * (std::mem::size_of::<String>() + std::mem::size_of::<Value>()) + 8;
    let nodes = match map.len() {
        0 => 0,
        1..=11 => 1,
        n => n.div_ceil(7),
    };
    nodes * chunk(NODE) + map.iter().map(|(key, value)| chunk(key.capacity()) + value_heap(value)).sum::<usize>()
}

fn text_heap(text: &str) -> usize {
    chunk(text.len())
}

impl SessionData {
    /// About how much memory this session takes when kept decoded behind an `Arc` (as the
    /// stores' caches keep it): the struct, and every allocation it holds with the allocator's
    /// overhead. What those caches count against their bounds.
    pub(crate) fn memory_size(&self) -> usize {
        let claims = chunk(16 + std::mem::size_of::<Claims>()) + map_heap(&self.user.claims.map);
        let sub_once = self.user.claims.sub.get().map_or(0, |sub| text_heap(sub));
        let tokens = chunk(self.token_sets.capacity() * std::mem::size_of::<TokenSet>())
            + self
                .token_sets
                .iter()
                .map(|set| {
                    set.audience.as_deref().map_or(0, text_heap) + text_heap(&set.scope) + text_heap(&set.access_token)
                })
                .sum::<usize>();
        chunk(16 + std::mem::size_of::<Self>())
            + text_heap(&self.id)
            + text_heap(&self.sub)
            + self.sid.as_deref().map_or(0, text_heap)
            + claims
            + sub_once
            + text_heap(&self.id_token)
            + self.refresh_token.as_deref().map_or(0, text_heap)
            + tokens
            + chunk(self.markers_seen.capacity() * 8)
            + self.tenant.as_deref().map_or(0, text_heap)
            + self.dpop.as_ref().map_or(0, |d| match d {
                DpopBinding::Key(text) | DpopBinding::Process(text) => text_heap(text),
            })
            + self.device.as_deref().map_or(0, text_heap)
            + self.location.as_deref().map_or(0, text_heap)
    }

    /// A new session for `user`, with a fresh random id, created `now`.
    pub fn new(user: User, id_token: String, now: u64) -> Self {
        let ends_by = provider_bound(&user);
        Self {
            id: crate::seal::random_token(32),
            sub: user.sub().to_owned(),
            sid: user.sid().map(str::to_owned),
            user,
            id_token,
            refresh_token: None,
            token_sets: Vec::new(),
            created_at: now,
            touched_at: now,
            markers_seen: Vec::new(),
            tenant: None,
            dpop: None,
            ends_by,
            refresh_token_ends_at: None,
            device: None,
            location: None,
        }
    }

    /// The browser and platform of the login, as a short label ("Chrome on Android"), when the
    /// session was saved by a store that lists sessions.
    pub fn device(&self) -> Option<&str> {
        self.device.as_deref()
    }

    /// Where the login came from, when the app's
    /// [`session_location`](crate::AuthClientBuilder::session_location) hook said.
    pub fn location(&self) -> Option<&str> {
        self.location.as_deref()
    }

    /// The provider's upper bound on the session, when it gave one (seconds since the Unix
    /// epoch): the earlier of its ID token's `session_expiry` claim (Auth0's) and its refresh
    /// token's own expiry (`refresh_token_expires_in` in the token response). The session ends
    /// then at the latest.
    pub fn provider_ends_at(&self) -> Option<u64> {
        self.ends_by
    }

    /// Takes the provider's bound again, from the user's claims and the refresh token's
    /// expiry (after a login, or a refresh that brought a new ID token or refresh token).
    pub(crate) fn bound_by_provider(&mut self) {
        self.ends_by = match (provider_bound(&self.user), self.refresh_token_ends_at) {
            (Some(claim), Some(token)) => Some(claim.min(token)),
            (claim, token) => claim.or(token),
        };
    }

    /// Whether its access tokens are DPoP-bound: sent with a proof of the key it holds (or the
    /// process's).
    pub fn is_dpop_bound(&self) -> bool {
        self.dpop.is_some()
    }

    /// The session's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The user's subject at the provider.
    pub fn sub(&self) -> &str {
        &self.sub
    }

    /// The provider's session id, if it sent one.
    pub fn sid(&self) -> Option<&str> {
        self.sid.as_deref()
    }

    /// The tenant whose login made this session, in a multi-tenant app.
    pub fn tenant(&self) -> Option<&str> {
        self.tenant.as_deref()
    }

    /// The provider that issued the session's ID token (its `iss` claim), when known: a
    /// tenant's client reads only sessions of its own provider.
    pub fn issuer(&self) -> Option<&str> {
        self.user.claim_str("iss")
    }

    /// The same session as a login through `config`'s client would have made it: its tenant
    /// ([`AuthConfig::tenant`]) and its provider as the user's `iss` claim
    /// ([`issuer`](Self::issuer)). For a session written outside a login (a migration, a test)
    /// that a tenant's client must read: a tenant's client reads only sessions of its own
    /// tenant and provider.
    pub fn with_tenant(mut self, config: &AuthConfig) -> Self {
        self.tenant = config.tenant().map(str::to_owned);
        if self.issuer() != Some(config.issuer()) {
            self.user.claims_mut().insert("iss".into(), Value::String(config.issuer().to_owned()));
        }
        self
    }

    // The one expiry rule, used by the client (expiry, renewal) and by every store (cookie
    // `Max-Age`, a record's TTL).

    /// When the session ends unless renewed, under `config`'s limits: the earlier of its
    /// absolute limit (from login) and its inactivity limit (from the last renewal), in seconds
    /// since the Unix epoch.
    pub fn expires_at(&self, config: &AuthConfig) -> u64 {
        let ends = self.ends_at(config.absolute_duration.as_secs(), config.inactivity_duration.as_secs());
        self.ends_by.map_or(ends, |by| ends.min(by))
    }

    /// Whether the session has ended at `now`.
    pub fn is_expired(&self, config: &AuthConfig, now: u64) -> bool {
        now >= self.expires_at(config)
    }

    /// Seconds the session has left at `now` (0 once ended).
    pub fn seconds_left(&self, config: &AuthConfig, now: u64) -> u64 {
        self.expires_at(config).saturating_sub(now)
    }

    /// Whether the session is due for rolling renewal at `now`: less of its inactivity window
    /// left than `config`'s threshold (half the window by default).
    pub fn renewal_due(&self, config: &AuthConfig, now: u64) -> bool {
        let window_ends = self.touched_at.saturating_add(config.inactivity_duration.as_secs());
        window_ends.saturating_sub(now) < config.renew_below.as_secs()
    }

    fn ends_at(&self, absolute: u64, inactivity: u64) -> u64 {
        self.created_at.saturating_add(absolute).min(self.touched_at.saturating_add(inactivity))
    }
}

/// A login in flight, between the redirect to the provider and the callback. `Debug` leaves
/// its nonce and PKCE verifier out.
#[derive(Clone, PartialEq, Serialize, Deserialize, auth_derive::Store)]
#[store(key = "transaction:{state}", name = "transaction", ttl = "10m", encrypt)]
pub struct TransactionData {
    /// The `state` sent to the provider; the transaction's key.
    pub state: String,
    /// The `nonce` the ID token must carry.
    pub nonce: String,
    /// The PKCE code verifier.
    pub code_verifier: String,
    /// Where to send the browser after login: a same-origin path.
    pub return_to: String,
    /// Application state passed to [`AuthClient::start_login`](crate::AuthClient::start_login).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_state: Option<Value>,
    /// When the login started (seconds since the Unix epoch).
    pub created_at: u64,
    /// The API audience this login asked an access token for (the configured one, or this
    /// login's own): the token is filed under it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audience: Option<String>,
    /// The scope this login asked for: what the token is filed under when the provider does not
    /// say what it granted.
    #[serde(default)]
    pub scope: String,
    /// The `max_age` this login sent: the ID token's `auth_time` must then be present and no
    /// older than this (with the clock tolerance).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_age: Option<u64>,
    /// The `organization` this login asked for: the ID token must name it (`org_id`, or
    /// `org_name` for a name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub organization: Option<String>,
    /// The `acr_values` this login asked for, when the configuration makes them essential:
    /// the ID token's `acr` must be one of them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub essential_acr_values: Option<String>,
    /// Started by a step-up guard: a login that comes back short of `max_age` or the essential
    /// `acr_values` is refused with 403 instead of another round.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub step_up: bool,
    /// A silent login (`prompt=none`): an error at the callback sends the browser back to
    /// `return_to`, anonymous, instead of an error page.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub silent: bool,
    /// The tenant whose client started this login ([`AuthConfig::tenant`](crate::AuthConfig::tenant)), in a
    /// multi-tenant app: only that tenant's callback completes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// The provider this login went to, in a multi-tenant app: the callback is checked against
    /// it (its `iss` parameter, the ID token's issuer), never against another tenant's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    /// The DPoP key this login's code is bound to (its private scalar, base64url), when tokens
    /// are DPoP-bound with a key per session: the code exchange proves it, and the session
    /// keeps it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dpop_key: Option<String>,
    /// The origin this login started at, when the app is served at several
    /// ([`public_origins`](crate::AuthConfigBuilder::public_origins)) and it was not the base
    /// URL's: its `redirect_uri` was there, and the code exchange names the same.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<String>,
}

impl std::fmt::Debug for TransactionData {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TransactionData")
            .field("state", &self.state)
            .field("nonce", &crate::config::Redacted::of(&self.nonce))
            .field("code_verifier", &crate::config::Redacted::of(&self.code_verifier))
            .field("return_to", &self.return_to)
            .field("app_state", &self.app_state)
            .field("created_at", &self.created_at)
            .field("audience", &self.audience)
            .field("scope", &self.scope)
            .field("max_age", &self.max_age)
            .field("organization", &self.organization)
            .field("essential_acr_values", &self.essential_acr_values)
            .field("step_up", &self.step_up)
            .field("silent", &self.silent)
            .field("tenant", &self.tenant)
            .field("issuer", &self.issuer)
            .field("dpop_key", &self.dpop_key.as_ref().map(crate::config::Redacted::of))
            .field("origin", &self.origin)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sessions of every shape a cache keeps: small, the benches' realistic one, many claims
    /// (nested ones too), several token sets.
    fn sessions_of_every_shape() -> Vec<SessionData> {
        let filler = |n: usize| "x".repeat(n);
        let small = SessionData::new(
            User::from_id_token_claims(serde_json::json!({"sub": "u"}).as_object().unwrap().clone()),
            filler(300),
            1,
        );
        let mut realistic = SessionData::new(
            User::from_id_token_claims(
                serde_json::json!({
                    "sub": "auth0|5f7c8ec7c33c6c004bbafe82", "sid": "s-1", "name": "Bench User", "nickname": "bench",
                    "email": "bench.user@example.com", "email_verified": true,
                    "picture": "https://example.com/avatars/bench-user.png", "updated_at": "2026-11-01T12:00:00.000Z",
                })
                .as_object()
                .unwrap()
                .clone(),
            ),
            filler(894),
            1,
        );
        realistic.refresh_token = Some(filler(43));
        realistic.token_sets.push(TokenSet {
            audience: Some("https://api.example.com".into()),
            scope: "openid profile email offline_access read:orders".into(),
            access_token: filler(704),
            expires_at: Some(2),
        });
        let mut claims = serde_json::Map::new();
        for i in 0..60 {
            claims.insert(format!("https://app.example.com/claim-{i}"), format!("value number {i}").into());
        }
        claims.insert("sub".into(), "many".into());
        claims.insert("groups".into(), serde_json::json!(["admins", "billing", {"org": "acme", "roles": ["a", "b"]}]));
        let mut many = SessionData::new(User::from_id_token_claims(claims), filler(2_000), 1);
        many.sid = Some("sid".into());
        many.tenant = Some("acme.example.com".into());
        many.markers_seen = vec![1, 2, 3];
        for i in 0..4 {
            many.token_sets.push(TokenSet {
                audience: Some(format!("https://api-{i}.example.com")),
                scope: "read write".into(),
                access_token: filler(1_200),
                expires_at: None,
            });
        }
        vec![small, realistic, many]
    }

    #[test]
    fn a_sessions_memory_size_is_what_its_decoded_copy_holds() {
        for session in sessions_of_every_shape() {
            let plain = compact::encode(&session).unwrap();
            let (decoded, held) = crate::alloc_count::memory_kept_by(|| {
                let decoded = Arc::new(compact::decode(&plain).unwrap());
                decoded.user.sub();
                decoded
            });
            let estimate = decoded.memory_size() as f64;
            let ratio = estimate / held as f64;
            assert!(
                (0.9..=1.1).contains(&ratio),
                "{} claims: estimated {estimate} bytes, held {held} ({ratio:.2})",
                decoded.user.claims().len()
            );
        }
    }

    #[test]
    fn sub_follows_claims_changed_after_it_was_read() {
        let claims = serde_json::json!({"sub": "u1", "name": "Ann"});
        let mut user = User::from_id_token_claims(claims.as_object().unwrap().clone());
        let shared = user.clone();
        assert_eq!((user.sub(), shared.sub()), ("u1", "u1"));
        user.claims_mut().insert("sub".into(), "u2".into());
        assert_eq!(user.sub(), "u2", "read again from the changed claims");
        assert_eq!(shared.sub(), "u1", "the clone kept its own claims");
        user.claims_mut().remove("sub");
        assert_eq!(user.sub(), "");
        assert_eq!(user, User::from_id_token_claims(serde_json::json!({"name": "Ann"}).as_object().unwrap().clone()));
        let read: User = serde_json::from_str(r#"{"sub":"u3"}"#).unwrap();
        assert_eq!(read.sub(), "u3");
        assert_ne!(read, shared, "equal when the claims are");
    }

    #[test]
    fn protocol_claims_are_dropped_and_user_claims_kept() {
        let claims =
            serde_json::json!({"sub": "u1", "name": "Ann", "nonce": "n", "aud": "c", "exp": 1, "iat": 1, "sid": "s"});
        let user = User::from_id_token_claims(claims.as_object().unwrap().clone());
        assert_eq!(user.sub(), "u1");
        assert_eq!(user.name(), Some("Ann"));
        assert_eq!(user.sid(), Some("s"));
        assert!(user.claim("nonce").is_none() && user.claim("aud").is_none() && user.claim("exp").is_none());
        let claims = serde_json::json!({"sub": "u1", "auth_time": 1_000, "acr": "urn:mfa", "amr": ["otp"]});
        let user = User::from_id_token_claims(claims.as_object().unwrap().clone());
        assert_eq!((user.auth_time(), user.acr()), (Some(1_000), Some("urn:mfa")), "about the authentication: kept");
        assert!(user.claim("amr").is_some());
    }

    #[test]
    fn clones_of_a_user_share_its_claims_until_one_is_changed() {
        let claims = serde_json::json!({"sub": "u1", "name": "Ann", "picture": "https://example.com/a.png"});
        let user = User::from_id_token_claims(claims.as_object().unwrap().clone());
        let mut clone = user.clone();
        assert!(std::ptr::eq(user.claims(), clone.claims()), "a clone copied the claims");
        clone.claims_mut().insert("plan".into(), "gold".into());
        assert!(!std::ptr::eq(user.claims(), clone.claims()));
        assert_eq!(user.claim("plan"), None, "a change to a clone reached the original");
        assert_eq!(clone.claim_str("plan"), Some("gold"));
        assert_eq!(clone.name(), Some("Ann"));
    }

    #[test]
    fn a_user_serializes_as_its_claims_alone() {
        let claims = serde_json::json!({"sub": "u1", "name": "Ann"});
        let user = User::from_id_token_claims(claims.as_object().unwrap().clone());
        assert_eq!(serde_json::to_value(&user).unwrap(), claims);
        assert_eq!(serde_json::from_value::<User>(claims).unwrap(), user);
        assert!(serde_json::from_str::<User>("[1]").is_err(), "claims are an object");
    }

    #[test]
    fn session_ends_at_the_earlier_of_its_two_limits() {
        let mut data = SessionData::new(User::from_id_token_claims(Map::new()), String::new(), 1_000);
        data.touched_at = 5_000;
        assert_eq!(data.ends_at(10_000, 100), 5_100);
        assert_eq!(data.ends_at(4_050, 100), 5_050);
    }

    #[test]
    fn a_session_ends_by_the_providers_session_expiry_when_it_is_sooner_than_the_apps_limits() {
        let config = crate::config::test_config(Default::default()).build().unwrap();
        let user = |claims: serde_json::Value| User::from_id_token_claims(claims.as_object().unwrap().clone());
        let plain = SessionData::new(user(serde_json::json!({"sub": "u1"})), String::new(), 1_000);
        assert_eq!(plain.provider_ends_at(), None);
        let limits = plain.expires_at(&config);
        assert!(limits > 1_600);

        let mut bound =
            SessionData::new(user(serde_json::json!({"sub": "u1", "session_expiry": 1_600})), String::new(), 1_000);
        assert_eq!(bound.provider_ends_at(), Some(1_600));
        assert_eq!(bound.expires_at(&config), 1_600);
        assert!(!bound.is_expired(&config, 1_599) && bound.is_expired(&config, 1_600));
        assert_eq!(bound.seconds_left(&config, 1_500), 100, "a cookie's Max-Age and a record's TTL follow it");
        // A bound later than the app's limits changes nothing.
        bound.user = user(serde_json::json!({"sub": "u1", "session_expiry": limits + 1_000}));
        bound.bound_by_provider();
        assert_eq!(bound.expires_at(&config), limits);
        // A claim that is not a time in whole seconds is no bound.
        bound.user = user(serde_json::json!({"sub": "u1", "session_expiry": "soon"}));
        bound.bound_by_provider();
        assert_eq!(bound.provider_ends_at(), None);
        // The refresh token's own expiry bounds it too; the earlier of the two wins.
        bound.refresh_token_ends_at = Some(1_700);
        bound.bound_by_provider();
        assert_eq!(bound.expires_at(&config), 1_700);
        bound.user = user(serde_json::json!({"sub": "u1", "session_expiry": 1_650}));
        bound.bound_by_provider();
        assert_eq!(bound.provider_ends_at(), Some(1_650));
    }

    #[test]
    fn new_sessions_take_sub_and_sid_from_the_user_and_a_fresh_id() {
        let claims = serde_json::json!({"sub": "u1", "sid": "s1"});
        let a = SessionData::new(User::from_id_token_claims(claims.as_object().unwrap().clone()), String::new(), 1);
        let b = SessionData::new(a.user.clone(), String::new(), 1);
        assert_eq!((a.sub(), a.sid()), ("u1", Some("s1")));
        assert_ne!(a.id(), b.id());
        assert!(a.id().len() >= 43, "at least 256 bits, base64url");
    }

    #[tokio::test]
    async fn transactions_are_a_typed_store_record_too() {
        use crate::record::Store as _;
        let store = TransactionData::store();
        let tx = TransactionData {
            state: "st".into(),
            nonce: "n".into(),
            code_verifier: "v".into(),
            return_to: "/".into(),
            app_state: None,
            audience: None,
            scope: "openid".into(),
            max_age: None,
            organization: None,
            essential_acr_values: None,
            step_up: false,
            silent: false,
            created_at: 1,
            tenant: Some("acme".into()),
            issuer: Some("https://acme.example/".into()),
            dpop_key: None,
            origin: None,
        };
        assert_eq!(tx.key(), "transaction:st");
        assert_eq!(TransactionData::TTL, Some(std::time::Duration::from_secs(600)));
        store.set(&tx).await.unwrap();
        assert_eq!(store.get("st").await.unwrap(), Some(tx));
    }

    #[tokio::test]
    async fn sessions_are_indexed_by_sub_and_sid() {
        let store = SessionData::store();
        let claims = serde_json::json!({"sub": "u1", "sid": "s1"});
        let session = SessionData::new(User::from_id_token_claims(claims.as_object().unwrap().clone()), "t".into(), 1);
        store.set(&session).await.unwrap();
        assert_eq!(store.find_by(SessionData::SID, "s1").await.unwrap(), vec![session.clone()]);
        assert_eq!(store.find_by(SessionData::SUB, "u1").await.unwrap(), vec![session]);
    }
}
