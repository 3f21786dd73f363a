//! [`AuthClient`]: every auth operation as a method taking the request's [`StoreContext`], for
//! apps that write their own routes (the seed's `start_login`, `complete_login`, `user`,
//! `session`, `logout`). The layer's routes are thin wrappers over these.
//!
//! Here: the client, starting a login and reading a session. `builder` makes the client,
//! `options` holds what operations take and give, `callback` completes a login, `tokens` serves
//! and refreshes access tokens, `ending` ends sessions (logout, back-channel logout,
//! revocation); `login` merges a login's parameters, `logout` its `state` round trip, `sessions`
//! the user's list, `fleet` the state every process shares, `health` readiness.

mod builder;
mod callback;
mod ending;
mod fleet;
mod health;
mod login;
mod logout;
mod options;
mod sessions;
mod tokens;

pub use self::builder::AuthClientBuilder;
#[cfg(any(fuzzing, test))]
pub(crate) use self::callback::parse_callback_query;
pub(crate) use self::options::StepUp;
pub use self::options::{AccessToken, AccessTokenOptions, LoginOptions, LoginResult, LogoutOptions};
pub use fleet::{DEFAULT_MAX_SHARED_ENTRIES, SharedState};
pub use health::{Check, READINESS_TIMEOUT, Readiness};
pub use sessions::{MAX_LOCATION_BYTES, SessionInfo};

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use url::Url;

use self::fleet::{Fleet, Lease};
use crate::config::{AuthConfig, DpopMode};
use crate::dpop::DpopKey;
use crate::error::AuthError;
use crate::error::ProviderError;
use crate::model::{DpopBinding, SessionData, TokenSet, TransactionData, User};
use crate::oidc::RelyingParty;
use crate::return_to;
use crate::store::{
    CookieSessionStore, CookieTransactionStore, LogoutTarget, SessionStore, StoreContext, TransactionStore,
};
use crate::telemetry;

// A hook run on a session before it is saved at login or after a refresh: filter or add claims.
type BeforeSaveHook = Arc<dyn Fn(&mut SessionData) + Send + Sync>;
// A hook run after a login completed, with its result.
type AfterCallbackHook = Arc<dyn Fn(&LoginResult) + Send + Sync>;
/// What describes where a login came from ([`AuthClientBuilder::session_location`]).
type LocationHook = Arc<dyn Fn(&http::HeaderMap) -> Option<String> + Send + Sync>;
// An async hook run on a session before it is saved (after the sync one): it may read the
// app's database; an error refuses the login (or the refresh).
type BeforeSaveAsyncHook = Arc<
    dyn Fn(SessionData) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<SessionData, AuthError>> + Send>>
        + Send
        + Sync,
>;

struct Inner {
    config: AuthConfig,
    rp: RelyingParty,
    session_store: Arc<dyn SessionStore>,
    transaction_store: Arc<dyn TransactionStore>,
    before_save: Option<BeforeSaveHook>,
    before_save_async: Option<BeforeSaveAsyncHook>,
    after_callback: Option<AfterCallbackHook>,
    session_location: Option<LocationHook>,
    /// Names sessions in a listing: a keyed hash of a session's id ([`SessionInfo::handle`]).
    session_handles: crate::seal::KeyHasher,
    /// Refreshes under way or just done in this process, by session and token: concurrent
    /// requests of one session here share one wait for the fleet's lease and its result.
    refreshes: moka::future::Cache<String, Arc<SessionData>>,
    /// The state every process sees: used logout tokens, refresh leases and results.
    fleet: Fleet,
    /// Whether that state (and the default cookie store's logout markers with it) lives in
    /// this client alone ([`SharedState::in_memory`]): lost with the client.
    state_in_client: bool,
}

/// The relying party with its stores: start and complete logins, read sessions, log out.
///
/// Every operation takes the request's [`StoreContext`] (its cookies in, the cookies to set out),
/// for an app that writes its own routes instead of (or beside) the layer's:
///
/// ```no_run
/// use auth_layer::{AuthClient, AuthConfig, LoginOptions, StoreContext};
///
/// # async fn routes(headers: http::HeaderMap) -> Result<(), auth_layer::AuthError> {
/// let client = AuthClient::new(AuthConfig::from_env().expect("configuration")).await?;
///
/// // GET /sign-in: where to send the browser, with the transaction cookie to set.
/// let mut ctx = StoreContext::from_headers(&headers);
/// let authorize = client.start_login(&mut ctx, LoginOptions::default().return_to("/orders")).await?;
/// let mut response = http::Response::builder().status(302).header("location", authorize.as_str());
/// ctx.apply(response.headers_mut().expect("a fresh builder"));
///
/// // Any later request: who is logged in.
/// let mut ctx = StoreContext::from_headers(&headers);
/// if let Some(user) = client.user(&mut ctx).await? {
///     println!("{} is logged in", user.sub());
/// }
/// # Ok(()) }
/// ```
///
/// Cheap to clone (one `Arc`).
#[derive(Clone)]
pub struct AuthClient {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for AuthClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthClient").field("issuer", &self.inner.config.issuer).finish_non_exhaustive()
    }
}

impl AuthClient {
    /// A builder over `config`.
    pub fn builder(config: AuthConfig) -> AuthClientBuilder {
        AuthClientBuilder {
            config,
            session_store: None,
            transaction_store: None,
            before_save: None,
            before_save_async: None,
            after_callback: None,
            session_location: None,
            shared_state: None,
        }
    }

    /// Discovers the provider; sessions in the encrypted cookie.
    pub async fn new(config: AuthConfig) -> Result<Self, AuthError> {
        Self::builder(config).build().await
    }

    /// Whether the state every process of the app must see alike (used logout-token ids,
    /// refresh leases, the cookie store's logout markers) is kept where other processes reach
    /// it ([`SharedState::in_backend`], or a store's backend through
    /// [`with_server_sessions`](AuthClientBuilder::with_server_sessions)): what an app on
    /// several instances needs. Such an app can refuse to start without it:
    ///
    /// ```no_run
    /// # fn check(client: &auth_layer::AuthClient, instances: usize) {
    /// if instances > 1 && !client.shares_state() {
    ///     panic!("several instances need the shared state in Redis or PostgreSQL (SharedState::in_backend)");
    /// }
    /// # }
    /// ```
    pub fn shares_state(&self) -> bool {
        !self.inner.state_in_client
    }

    /// Whether this client's logout markers, used logout-token ids and refresh leases live in
    /// it alone (this process's memory, made for it): a copy of the client shares them, a new
    /// client of the same configuration starts without them.
    pub(crate) fn state_in_client(&self) -> bool {
        self.inner.state_in_client
    }

    /// The store sessions live in.
    #[cfg(feature = "testing")]
    pub(crate) fn session_store(&self) -> &Arc<dyn SessionStore> {
        &self.inner.session_store
    }

    /// The provider's issuer, as discovered.
    pub(crate) fn issuer(&self) -> &str {
        self.inner.rp.issuer()
    }

    /// The configuration.
    pub fn config(&self) -> &AuthConfig {
        &self.inner.config
    }

    /// When `session` ends unless renewed: the earlier of its absolute and inactivity limits
    /// (seconds since the Unix epoch).
    pub fn session_expires_at(&self, session: &SessionData) -> u64 {
        session.expires_at(&self.inner.config)
    }

    /// A silent login's start (`prompt=none`, an error at the callback is no error page): the
    /// layer's, for a page request without a session.
    pub(crate) async fn start_silent_login(&self, ctx: &mut StoreContext, return_to: String) -> Result<Url, AuthError> {
        let options = LoginOptions { return_to: Some(return_to), silent: true, ..LoginOptions::default() };
        self.start_login(ctx, options).await
    }

    /// Starts a login: saves a transaction and returns the provider's authorization URL to
    /// redirect the browser to.
    pub async fn start_login(&self, ctx: &mut StoreContext, options: LoginOptions) -> Result<Url, AuthError> {
        let return_to = match options.return_to.as_deref() {
            Some(target) => return_to::validate(target).map_err(|e| AuthError::InvalidRequest(e.into()))?.to_owned(),
            None => "/".to_owned(),
        };
        let merged = login::LoginParams::merge(&self.inner.config, &options)?;
        let dpop = match &self.inner.config.dpop {
            None => None,
            Some(DpopMode::PerSession) => Some(DpopKey::generate()),
            Some(DpopMode::PerProcess(key)) => Some(DpopKey::clone(key)),
        };
        // With several origins, the callback is at the origin this login started on: its
        // cookies live there.
        let origin = (ctx.origin != 0).then(|| self.inner.config.app_url_at(ctx.origin, "/"));
        let request = self.inner.rp.authorization_request(
            &merged.scope,
            merged.audience.as_deref(),
            &merged.params,
            dpop.as_ref(),
            origin.is_some().then(|| self.inner.config.callback_url_at(ctx.origin)),
        );
        // Pushed first when the provider takes pushed requests: a refusal saves no transaction.
        let redirect = self.inner.rp.redirect_for(&request, dpop.as_ref()).await?;
        let per_session = matches!(self.inner.config.dpop, Some(DpopMode::PerSession));
        let transaction = TransactionData {
            state: request.state,
            nonce: request.nonce,
            code_verifier: request.code_verifier,
            return_to,
            app_state: options.app_state,
            created_at: self.inner.config.clock.now(),
            audience: merged.audience,
            scope: merged.scope,
            max_age: merged.checks.max_age,
            organization: merged.checks.organization,
            essential_acr_values: merged.checks.essential_acr_values,
            step_up: merged.checks.step_up,
            silent: options.silent,
            tenant: self.inner.config.tenant.clone(),
            issuer: self.inner.config.tenant.is_some().then(|| self.issuer().to_owned()),
            dpop_key: dpop.filter(|_| per_session).map(|key| key.secret()),
            origin: origin.map(|url| url.origin().ascii_serialization()),
        };
        self.inner.transaction_store.set(ctx, &transaction).await?;
        telemetry::count(telemetry::LOGINS_STARTED);
        Ok(redirect)
    }

    /// The request's session, if any and not expired. Absolute and inactivity limits are
    /// checked here, for every store (an expired session is deleted), and a session with less
    /// than half its inactivity window left is renewed (rolling expiry; its cookies go in `ctx`).
    ///
    /// The session is shared with the store, which may hand the same one to later requests.
    #[doc(alias = "get_session")]
    pub async fn session(&self, ctx: &mut StoreContext) -> Result<Option<Arc<SessionData>>, AuthError> {
        let Some(mut session) = self.inner.session_store.get(ctx).await? else { return Ok(None) };
        if session.tenant != self.inner.config.tenant {
            // Another tenant's (a store shared by mistake): no session here.
            tracing::warn!(session = ?session.tenant, here = ?self.inner.config.tenant, "session of another tenant; treated as no session");
            return Ok(None);
        }
        if self.inner.config.tenant.is_some() && session.issuer() != Some(self.issuer()) {
            // The tenant's provider is not the one that made this session (the tenant moved to
            // another provider): its user is not known there.
            tracing::warn!(session = ?session.issuer(), here = self.issuer(), "session of another provider; treated as no session");
            return Ok(None);
        }
        let now = self.inner.config.clock.now();
        if session.is_expired(&self.inner.config, now) {
            tracing::info!(sub = session.user.sub(), "session expired");
            self.inner.session_store.delete(ctx).await?;
            telemetry::count_by(telemetry::SESSIONS_ENDED, "cause", "expired");
            return Ok(None);
        }
        if session.renewal_due(&self.inner.config, now) {
            Arc::make_mut(&mut session).touched_at = now;
            if !self.inner.session_store.update(ctx, &session).await? {
                // Ended (logged out) since this request read it: never brought back.
                return Ok(None);
            }
            telemetry::count(telemetry::SESSIONS_RENEWED);
        }
        Ok(Some(session))
    }

    /// The logged-in user, if any.
    #[doc(alias = "get_user")]
    pub async fn user(&self, ctx: &mut StoreContext) -> Result<Option<User>, AuthError> {
        Ok(self.session(ctx).await?.map(|s| s.user.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::callback::*;
    use super::tokens::*;
    use super::*;

    #[test]
    fn a_refresh_keeps_claims_userinfo_added_and_the_new_id_tokens_win() {
        let before = serde_json::json!({"sub": "u1", "name": "Old", "favourite_color": "green", "iat": 1});
        let new = serde_json::json!({"sub": "u1", "name": "New", "iat": 2});
        let merged = refreshed_claims(before.as_object().unwrap(), new.as_object().unwrap().clone());
        assert_eq!(
            serde_json::Value::Object(merged),
            serde_json::json!({"sub": "u1", "name": "New", "favourite_color": "green", "iat": 2})
        );
    }

    #[test]
    fn a_refreshed_id_token_must_keep_the_issuer_and_the_authentication_time() {
        let json = |v: serde_json::Value| v.as_object().unwrap().clone();
        let before = json(serde_json::json!({"iss": "https://op", "sub": "u1", "auth_time": 100}));
        for same in [
            serde_json::json!({"iss": "https://op", "sub": "u1", "auth_time": 100, "iat": 900}),
            serde_json::json!({"iss": "https://op", "sub": "u1"}),
        ] {
            assert!(check_refreshed_id_token(&before, &json(same.clone())).is_ok(), "{same}");
        }
        for other in [
            serde_json::json!({"iss": "https://op", "sub": "u1", "auth_time": 101}),
            serde_json::json!({"iss": "https://other", "sub": "u1", "auth_time": 100}),
        ] {
            let err = check_refreshed_id_token(&before, &json(other.clone())).unwrap_err();
            assert_eq!(err.code(), "invalid_id_token", "{other}");
        }
        let without = json(serde_json::json!({"iss": "https://op", "sub": "u1"}));
        assert!(check_refreshed_id_token(&without, &json(serde_json::json!({"auth_time": 5}))).is_ok());
    }

    #[test]
    fn debug_of_config_sessions_transactions_tokens_and_contexts_prints_no_secret() {
        let secrets = [
            "client-secret-0001",
            "app-secret-0123456789abcdef0123456789",
            "-----BEGIN PRIVATE KEY-----pem",
            "id-token-0002",
            "refresh-token-0003",
            "access-token-0004",
            "nonce-0005",
            "verifier-0006",
            "sealed-cookie-0007",
        ];
        let builder = AuthConfig::builder()
            .issuer("https://i.example/")
            .client_id("c")
            .client_secret(secrets[0])
            .client_assertion_key(secrets[2], crate::ClientAssertionAlg::Rs256, Some("kid-1".into()))
            .secret(secrets[1])
            .base_url("https://app.example");
        let builder_debug = format!("{builder:?}");
        let config = builder.build().unwrap();
        let mut session = SessionData::new(User::from_id_token_claims(Default::default()), secrets[3].into(), 1);
        session.refresh_token = Some(secrets[4].into());
        session.token_sets.push(TokenSet {
            audience: None,
            scope: "openid".into(),
            access_token: secrets[5].into(),
            expires_at: None,
        });
        let transaction = TransactionData {
            state: "st".into(),
            nonce: secrets[6].into(),
            code_verifier: secrets[7].into(),
            return_to: "/".into(),
            app_state: None,
            created_at: 1,
            audience: None,
            scope: "openid".into(),
            max_age: None,
            organization: None,
            essential_acr_values: None,
            step_up: false,
            silent: false,
            tenant: None,
            issuer: None,
            dpop_key: None,
            origin: None,
        };
        let token = AccessToken::bearer(secrets[5], None, "openid");
        let ctx =
            StoreContext::from_cookie_headers([&http::HeaderValue::from_static("_a0_session=sealed-cookie-0007")]);
        let printed = [
            builder_debug,
            format!("{config:?}"),
            format!("{session:?}"),
            format!("{transaction:?}"),
            format!("{token:?}"),
            format!("{ctx:?}"),
            format!("{:?}", CookieSessionStore::new(&config)),
            format!("{:?}", CookieTransactionStore::new(&config)),
        ];
        for text in &printed {
            for secret in secrets {
                assert!(!text.contains(secret), "{secret} in {text}");
            }
        }
        assert!(printed[1].contains("https://i.example/") && printed[5].contains("_a0_session"), "{printed:?}");
        assert!(session.id().len() > 16 && !printed[2].contains(session.id()), "the session id is a secret too");
    }

    fn config(renew_below: Option<u64>) -> AuthConfig {
        let mut builder = AuthConfig::builder()
            .issuer("https://i.example/")
            .client_id("c")
            .client_secret("s")
            .secret("0123456789abcdef0123456789abcdef")
            .base_url("https://app.example")
            .inactivity_duration(Duration::from_secs(1_000))
            .clock(crate::Clock::from_fn(|| 10_000));
        if let Some(secs) = renew_below {
            builder = builder.renew_below(Duration::from_secs(secs));
        }
        builder.build().unwrap()
    }

    fn touched(at: u64) -> SessionData {
        let mut session = SessionData::new(User::from_id_token_claims(serde_json::Map::new()), String::new(), at);
        session.touched_at = at;
        session
    }

    #[test]
    fn rolling_renewal_waits_until_less_than_the_threshold_is_left() {
        // Default threshold: half of 1,000 s. Now is 10,000.
        let default = config(None);
        assert!(!touched(9_600).renewal_due(&default, 10_000), "600 s left of 1,000: no write");
        assert!(touched(9_400).renewal_due(&default, 10_000), "400 s left: renew");
        let eager = config(Some(900));
        assert!(touched(9_600).renewal_due(&eager, 10_000), "600 s left, threshold 900: renew");
        let lazy = config(Some(100));
        assert!(!touched(9_400).renewal_due(&lazy, 10_000), "400 s left, threshold 100: no write");
    }

    #[test]
    fn organizations_are_checked_by_id_or_by_name_case_insensitively() {
        let claims = serde_json::json!({"org_id": "org_acme", "org_name": "Acme"}).as_object().unwrap().clone();
        assert!(check_organization(&claims, "org_acme").is_ok());
        assert!(check_organization(&claims, "org_other").is_err(), "another id");
        assert!(check_organization(&claims, "acme").is_ok(), "a name, any case");
        assert!(check_organization(&claims, "ACME").is_ok());
        assert!(check_organization(&claims, "globex").is_err(), "another name");
        assert!(check_organization(&claims, "org_ACME").is_err(), "ids are exact");
        let none = serde_json::Map::new();
        assert!(check_organization(&none, "org_acme").is_err(), "missing org_id");
        assert!(check_organization(&none, "acme").is_err(), "missing org_name");
    }

    #[test]
    fn auth_time_must_be_present_and_recent_when_max_age_was_sent() {
        let claims = |auth_time: Option<u64>| {
            let mut claims = serde_json::Map::new();
            if let Some(at) = auth_time {
                claims.insert("auth_time".into(), at.into());
            }
            claims
        };
        assert!(check_auth_time(&claims(Some(9_990)), 60, 10_000, 60).is_ok());
        assert!(check_auth_time(&claims(Some(9_890)), 60, 10_000, 60).is_ok(), "within max_age and the skew");
        assert!(check_auth_time(&claims(Some(9_800)), 60, 10_000, 60).is_err(), "too old");
        assert!(check_auth_time(&claims(None), 60, 10_000, 60).is_err(), "missing");
        assert!(check_auth_time(&claims(Some(20_000)), 60, 10_000, 60).is_err(), "in the future");
    }

    #[test]
    fn token_sets_are_found_by_audience_and_covering_scope() {
        let set = |aud: Option<&str>, scope: &str| TokenSet {
            audience: aud.map(str::to_owned),
            scope: scope.into(),
            access_token: format!("{aud:?} {scope}"),
            expires_at: None,
        };
        let sets = [set(None, "openid profile"), set(Some("api"), "read write")];
        assert_eq!(find_token_set(&sets, None, None).unwrap().scope, "openid profile");
        assert_eq!(find_token_set(&sets, Some("api"), Some("write")).unwrap().scope, "read write");
        assert!(find_token_set(&sets, Some("api"), Some("admin")).is_none());
        assert!(find_token_set(&sets, Some("other"), None).is_none());
    }

    #[test]
    fn callback_params_are_read_and_repeats_refused() {
        let params = CallbackParams::parse("code=c&state=s&iss=https%3A%2F%2Fi&x=1").unwrap();
        assert_eq!(
            (params.code.as_deref(), params.state.as_deref(), params.iss.as_deref()),
            (Some("c"), Some("s"), Some("https://i"))
        );
        assert!(CallbackParams::parse("state=a&state=b").is_err());
        assert!(CallbackParams::parse(&"a".repeat(9000)).is_err());
    }
}
