//! [`AuthClient`]: every auth operation as a method taking the request's [`StoreContext`], for
//! apps that write their own routes (the seed's `start_login`, `complete_login`, `user`,
//! `session`, `logout`). The layer's routes are thin wrappers over these.

mod fleet;
mod health;
mod login;
mod logout;
mod sessions;

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

/// Options of [`AuthClient::start_login`]: `LoginOptions::default().return_to("/orders")`.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct LoginOptions {
    /// Where to send the browser after login: a same-origin path; `/` when unset.
    pub return_to: Option<String>,
    /// Extra authorization parameters for this login only (e.g. `prompt=login`, `screen_hint`);
    /// they replace configured ones of the same name (the app's code decides over its
    /// configuration; a query never does). `scope` and `audience` here are this login's scope
    /// and audience; the parameters auth-layer sets itself are refused.
    pub authorization_params: Vec<(String, String)>,
    /// Application state, given back by [`AuthClient::complete_login`].
    pub app_state: Option<Value>,
    /// This login's scope, instead of the configured one (`openid` is always asked for).
    pub scope: Option<String>,
    /// This login's API audience, instead of the configured one: the access token is filed
    /// under it.
    pub audience: Option<String>,
    /// A silent login (`prompt=none`), started by the layer.
    pub(crate) silent: bool,
    /// `/auth/login`'s query parameters (through the allowlist): they may add a parameter, never
    /// change one the configuration or the code set.
    pub(crate) query_params: Vec<(String, String)>,
    /// A step-up guard's requirements, when it started this login.
    pub(crate) step_up: Option<StepUp>,
}

/// What a step-up guard asks of a login: sent as code parameters, and checked as essential at
/// the callback (a login still short of them is refused with 403, not sent round again).
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct StepUp {
    /// Space-separated `acr_values`, one of which the ID token's `acr` must be.
    pub(crate) acr_values: Option<String>,
    /// The oldest authentication accepted, in seconds.
    pub(crate) max_age: Option<u64>,
}

/// What [`AuthClient::complete_login`] gives.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct LoginResult {
    /// The new session, already saved.
    pub session: SessionData,
    /// The same-origin path the login was started for.
    pub return_to: String,
    /// The application state passed to [`AuthClient::start_login`].
    pub app_state: Option<Value>,
}

/// Options of [`AuthClient::logout`]: `LogoutOptions::default().return_to("/bye")`.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct LogoutOptions {
    /// Where the provider should send the browser back: a same-origin path; `/` when unset.
    pub return_to: Option<String>,
    /// Extra parameters for the provider's end-session endpoint (e.g. `ui_locales`,
    /// `logout_hint`, Auth0's `federated`). The ones auth-layer sets itself are refused.
    pub extra_params: Vec<(String, String)>,
}

/// Options of [`AuthClient::access_token`]: `AccessTokenOptions::default().audience("https://api")`.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct AccessTokenOptions {
    /// The API audience; the configured one when unset.
    pub audience: Option<String>,
    /// The scope needed; any token of the audience when unset.
    pub scope: Option<String>,
    /// Refresh even when the token is still fresh.
    pub force_refresh: bool,
}

impl LoginOptions {
    /// Sends the browser to `path` (same-origin) after login.
    #[must_use]
    pub fn return_to(mut self, path: impl Into<String>) -> Self {
        self.return_to = Some(path.into());
        self
    }

    /// Adds an authorization parameter for this login only.
    #[must_use]
    pub fn param(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.authorization_params.push((name.into(), value.into()));
        self
    }

    /// Application state that [`AuthClient::complete_login`] gives back.
    #[must_use]
    pub fn app_state(mut self, state: Value) -> Self {
        self.app_state = Some(state);
        self
    }

    /// Logs in to `organization` (Auth0 Organizations: an `org_...` id or a name); the ID
    /// token must then name it.
    #[must_use]
    pub fn organization(self, organization: impl Into<String>) -> Self {
        self.param("organization", organization)
    }

    /// Accepts an organization invitation (the `invitation` of an Auth0 invitation link).
    #[must_use]
    pub fn invitation(self, invitation: impl Into<String>) -> Self {
        self.param("invitation", invitation)
    }

    /// Asks for `scope` in this login instead of the configured scope.
    #[must_use]
    pub fn scope(mut self, scope: impl Into<String>) -> Self {
        self.scope = Some(scope.into());
        self
    }

    /// Asks for an access token for `audience` in this login instead of the configured one.
    #[must_use]
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        self.audience = Some(audience.into());
        self
    }
}

impl LogoutOptions {
    /// Asks the provider to send the browser back to `path` (same-origin).
    #[must_use]
    pub fn return_to(mut self, path: impl Into<String>) -> Self {
        self.return_to = Some(path.into());
        self
    }

    /// Adds a parameter for the provider's end-session endpoint.
    #[must_use]
    pub fn param(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.extra_params.push((name.into(), value.into()));
        self
    }
}

impl AccessTokenOptions {
    /// A token for this API audience.
    #[must_use]
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        self.audience = Some(audience.into());
        self
    }

    /// A token with this scope.
    #[must_use]
    pub fn scope(mut self, scope: impl Into<String>) -> Self {
        self.scope = Some(scope.into());
        self
    }

    /// Refreshes even when the token is still fresh.
    #[must_use]
    pub fn force_refresh(mut self) -> Self {
        self.force_refresh = true;
        self
    }
}

/// An access token, as [`AuthClient::access_token`] gives it. `Debug` leaves the token out.
///
/// A DPoP-bound token ([`AuthConfigBuilder::dpop`](crate::AuthConfigBuilder::dpop)) is sent
/// to an API with a proof of the session's key for each request:
///
/// ```
/// # fn call(token: &auth_layer::AccessToken, http: &reqwest::Client) -> Result<(), auth_layer::AuthError> {
/// let url = "https://api.example.com/orders";
/// let mut request = http.get(url).header("authorization", token.authorization());
/// if let Some(proof) = token.dpop_proof("GET", url, None)? {
///     request = request.header("dpop", proof);
/// }
/// # Ok(()) }
/// ```
#[derive(Clone, PartialEq, serde::Serialize)]
pub struct AccessToken {
    /// The token.
    pub access_token: String,
    /// When it expires (seconds since the Unix epoch), if known.
    pub expires_at: Option<u64>,
    /// The scope granted.
    pub scope: String,
    /// `DPoP` for a DPoP-bound token, else `Bearer`.
    pub token_type: &'static str,
    /// The key the token is bound to.
    #[serde(skip)]
    dpop: Option<crate::dpop::DpopKey>,
}

impl AccessToken {
    /// A Bearer token.
    pub fn bearer(access_token: impl Into<String>, expires_at: Option<u64>, scope: impl Into<String>) -> Self {
        Self { access_token: access_token.into(), expires_at, scope: scope.into(), token_type: "Bearer", dpop: None }
    }

    fn of(set: &TokenSet, dpop: Option<crate::dpop::DpopKey>) -> Self {
        Self {
            access_token: set.access_token.clone(),
            expires_at: set.expires_at,
            scope: set.scope.clone(),
            token_type: if dpop.is_some() { "DPoP" } else { "Bearer" },
            dpop,
        }
    }

    /// Whether the token is DPoP-bound: an API takes it only with a proof
    /// ([`dpop_proof`](Self::dpop_proof)).
    pub fn is_dpop(&self) -> bool {
        self.dpop.is_some()
    }

    /// The `Authorization` header's value: `DPoP <token>` or `Bearer <token>` (RFC 9449, 7.1).
    pub fn authorization(&self) -> String {
        format!("{} {}", self.token_type, self.access_token)
    }

    /// For a DPoP-bound token, a proof for one request to `method` `url` (RFC 9449, 4.2), with
    /// the token's hash (`ath`) and the API's `nonce` when it gave one (send again with it when
    /// it answers `use_dpop_nonce`); `None` for a Bearer token. Each proof is for one request,
    /// dated by the system clock (the API's server compares it with its own).
    pub fn dpop_proof(&self, method: &str, url: &str, nonce: Option<&str>) -> Result<Option<String>, AuthError> {
        let Some(key) = &self.dpop else { return Ok(None) };
        let parsed = Url::parse(url).map_err(|e| AuthError::InvalidRequest(format!("DPoP proof URL: {e}")))?;
        if !matches!(parsed.scheme(), "https" | "http") {
            return Err(AuthError::InvalidRequest("a DPoP proof is for an http(s) URL".into()));
        }
        if method.is_empty() || !method.bytes().all(|b| b.is_ascii_uppercase()) {
            return Err(AuthError::InvalidRequest(format!("`{method}` is not an HTTP method in upper case")));
        }
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        Ok(Some(key.proof(method, parsed.as_str(), Some(&self.access_token), nonce, now)))
    }
}

impl std::fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessToken")
            .field("access_token", &crate::config::Redacted::of(&self.access_token))
            .field("expires_at", &self.expires_at)
            .field("scope", &self.scope)
            .field("token_type", &self.token_type)
            .finish()
    }
}

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

/// Builds an [`AuthClient`]: the cookie stores unless others are given.
#[must_use]
pub struct AuthClientBuilder {
    config: AuthConfig,
    session_store: Option<Arc<dyn SessionStore>>,
    transaction_store: Option<Arc<dyn TransactionStore>>,
    before_save: Option<BeforeSaveHook>,
    before_save_async: Option<BeforeSaveAsyncHook>,
    after_callback: Option<AfterCallbackHook>,
    session_location: Option<LocationHook>,
    shared_state: Option<SharedState>,
}

impl AuthClientBuilder {
    /// Keeps the state every process of the app must see alike (used logout tokens, refresh
    /// leases; with the default cookie store, its logout markers too) in `state`. By default:
    /// the session store's backend when it is shared, else this process's memory (see
    /// [`SharedState`]).
    ///
    /// ```no_run
    /// # #[cfg(feature = "redis")]
    /// # async fn run(config: auth_layer::AuthConfig) -> Result<(), Box<dyn std::error::Error>> {
    /// use auth_layer::{AuthClient, SharedState};
    /// use auth_layer::backend::RedisBackend;
    ///
    /// // Cookie sessions on three instances: logout markers, used logout tokens and refresh
    /// // leases in Redis, so that each instance answers alike.
    /// let redis = RedisBackend::connect("redis://127.0.0.1:6379").await?;
    /// let client = AuthClient::builder(config).with_shared_state(SharedState::in_backend(redis)).build().await?;
    /// # let _ = client; Ok(()) }
    /// ```
    pub fn with_shared_state(mut self, state: SharedState) -> Self {
        self.shared_state = Some(state);
        self
    }

    /// Keeps sessions in `store` instead of the encrypted cookie.
    pub fn with_session_store(mut self, store: impl SessionStore) -> Self {
        self.session_store = Some(Arc::new(store));
        self
    }

    /// Keeps logins in flight in `store` instead of per-login cookies.
    pub fn with_transaction_store(mut self, store: impl TransactionStore) -> Self {
        self.transaction_store = Some(Arc::new(store));
        self
    }

    /// Runs `hook` on every session before it is saved at login or after a refresh, e.g. to
    /// drop claims the app does not need or to add its own.
    pub fn before_save(mut self, hook: impl Fn(&mut SessionData) + Send + Sync + 'static) -> Self {
        self.before_save = Some(Arc::new(hook));
        self
    }

    /// Runs `hook` on every session before it is saved, at login and after a refresh, after
    /// [`before_save`](Self::before_save): an async step that may read the app's own
    /// database (roles, a tenant) and return the session changed. An error refuses the login
    /// or the refresh with it.
    ///
    /// ```no_run
    /// # async fn run(config: auth_layer::AuthConfig) -> Result<(), auth_layer::AuthError> {
    /// use auth_layer::AuthClient;
    ///
    /// let client = AuthClient::builder(config)
    ///     .before_save_async(|mut session| async move {
    ///         // let roles = db.roles_of(session.sub()).await?;
    ///         session.user.claims_mut().insert("roles".into(), serde_json::json!(["reader"]));
    ///         Ok(session)
    ///     })
    ///     .build()
    ///     .await?;
    /// # let _ = client; Ok(()) }
    /// ```
    pub fn before_save_async<F, Fut>(mut self, hook: F) -> Self
    where
        F: Fn(SessionData) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = Result<SessionData, AuthError>> + Send + 'static,
    {
        self.before_save_async = Some(Arc::new(move |session| Box::pin(hook(session))));
        self
    }

    /// Runs `hook` after every completed login.
    pub fn after_callback(mut self, hook: impl Fn(&LoginResult) + Send + Sync + 'static) -> Self {
        self.after_callback = Some(Arc::new(hook));
        self
    }

    /// Describes where each login came from, for the user's list of sessions
    /// ([`AuthClient::list_sessions`]): `hook` gets the callback request's headers and returns
    /// a place a person recognises ("Lyon, France"), e.g. from a header the app's CDN adds
    /// (`CF-IPCountry`) or its own lookup of the address. Without it, a listing shows no
    /// location, and auth-layer never records the user's IP address itself; a hook that returns
    /// one is the app's choice. At most [`MAX_LOCATION_BYTES`] are kept. Used only with a store
    /// that lists sessions.
    ///
    /// ```no_run
    /// # async fn run(config: auth_layer::AuthConfig) -> Result<(), auth_layer::AuthError> {
    /// use auth_layer::AuthClient;
    ///
    /// let client = AuthClient::builder(config)
    ///     .session_location(|headers| {
    ///         let country = headers.get("cf-ipcountry")?.to_str().ok()?;
    ///         Some(country.to_owned())
    ///     })
    ///     .build()
    ///     .await?;
    /// # let _ = client; Ok(()) }
    /// ```
    pub fn session_location(
        mut self,
        hook: impl Fn(&http::HeaderMap) -> Option<String> + Send + Sync + 'static,
    ) -> Self {
        self.session_location = Some(Arc::new(hook));
        self
    }

    /// Discovers the provider and builds the client. Fails with [`AuthError::Misconfigured`]
    /// when the configuration asks what the session store cannot give (a cap on sessions per
    /// user, or the sessions routes, over a store that cannot list a user's sessions).
    pub async fn build(self) -> Result<AuthClient, AuthError> {
        let rp = RelyingParty::discover(&self.config).await?;
        self.build_with(rp)
    }

    /// Builds the client with no provider behind it, for an app's own tests (feature
    /// `testing`): sessions minted with [`TestSession`](crate::testing::TestSession) read,
    /// renew and log out as a login's would, and no request leaves the process for them. What
    /// needs the provider (a login's token exchange, a refresh, a revocation) fails as it
    /// would with the provider down (its endpoints are made up, under the configured issuer).
    ///
    /// ```
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// use auth_layer::{AuthClient, AuthConfig};
    ///
    /// let config = AuthConfig::builder()
    ///     .issuer("https://tenant.example.auth0.com/")
    ///     .client_id("test-client")
    ///     .client_secret("test-client-secret")
    ///     .secret("a test secret of at least thirty-two bytes")
    ///     .base_url("http://localhost:3000")
    ///     .build()?;
    /// let client = AuthClient::builder(config).build_without_provider()?;
    /// assert_eq!(client.config().issuer(), "https://tenant.example.auth0.com/");
    /// # Ok(()) }
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(demo()).unwrap();
    /// ```
    #[cfg(feature = "testing")]
    #[cfg_attr(docsrs, doc(cfg(feature = "testing")))]
    pub fn build_without_provider(self) -> Result<AuthClient, AuthError> {
        let rp = RelyingParty::without_provider(&self.config)?;
        self.build_with(rp)
    }

    /// The client of this builder over `rp`.
    fn build_with(mut self, rp: RelyingParty) -> Result<AuthClient, AuthError> {
        if rp.form_post() {
            // Settled at discovery (a provider may require it): the stores built below see it.
            self.config.response_mode = crate::config::ResponseMode::FormPost;
        }
        let session_store: Arc<dyn SessionStore> = match (self.session_store, &self.shared_state) {
            (Some(store), _) => store,
            // The default cookie store keeps its logout markers with the rest of the shared state.
            (None, Some(state)) if state.is_shared() => {
                Arc::new(CookieSessionStore::new(&self.config).with_marker_backend(state.backend().clone()))
            }
            (None, _) => Arc::new(CookieSessionStore::new(&self.config)),
        };
        if !session_store.lists_sessions() {
            let asked = if self.config.max_sessions_per_user.is_some() {
                Some("max_sessions_per_user")
            } else if self.config.routes.sessions {
                Some("the sessions routes")
            } else {
                None
            };
            if let Some(asked) = asked {
                return Err(AuthError::Misconfigured(format!(
                    "{asked} need a session store that lists a user's sessions (ServerSessionStore); the cookie store cannot"
                )));
            }
        }
        let shared_state = self.shared_state.unwrap_or_else(|| {
            session_store.shared_backend().map_or_else(SharedState::in_memory, SharedState::in_shared_backend)
        });
        let transaction_store =
            self.transaction_store.unwrap_or_else(|| Arc::new(CookieTransactionStore::new(&self.config)));
        let refreshes = moka::future::Cache::builder().time_to_live(REFRESH_SHARING).max_capacity(100_000).build();
        let fleet = Fleet::new(&shared_state, &self.config.secrets);
        let state_in_client = !shared_state.is_shared();
        let session_handles = crate::seal::KeyHasher::new(&self.config.secrets, "auth-layer session handle");
        tracing::debug!(shared = shared_state.is_shared(), "auth client built");
        Ok(AuthClient {
            inner: Arc::new(Inner {
                config: self.config,
                rp,
                session_store,
                transaction_store,
                before_save: self.before_save,
                before_save_async: self.before_save_async,
                after_callback: self.after_callback,
                session_location: self.session_location,
                session_handles,
                refreshes,
                fleet,
                state_in_client,
            }),
        })
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

    /// Completes a login from the callback URL's query: checks `state`, `iss` and any `error`,
    /// exchanges the code, checks the ID token, and saves a new session (a new id, the old
    /// session replaced).
    pub async fn complete_login(&self, ctx: &mut StoreContext, callback_query: &str) -> Result<LoginResult, AuthError> {
        let started = std::time::Instant::now();
        let result = self.complete_login_checked(ctx, callback_query).await;
        let outcome = match &result {
            Ok(_) => {
                telemetry::count(telemetry::LOGINS_COMPLETED);
                telemetry::count(telemetry::SESSIONS_CREATED);
                "completed"
            }
            Err(err) => {
                telemetry::count_by(telemetry::LOGINS_REFUSED, "reason", err.code());
                "refused"
            }
        };
        telemetry::time(telemetry::CALLBACK_DURATION, ("outcome", outcome), started.elapsed());
        result
    }

    /// [`complete_login`](Self::complete_login)'s work, which it counts and times.
    async fn complete_login_checked(
        &self,
        ctx: &mut StoreContext,
        callback_query: &str,
    ) -> Result<LoginResult, AuthError> {
        let params = CallbackParams::parse(callback_query)?;
        let state = params.state.ok_or_else(|| AuthError::InvalidRequest("the callback has no state".into()))?;
        if state.len() > 128 || !state.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
            return Err(AuthError::MissingTransaction);
        }
        let store = &self.inner.transaction_store;
        let transaction = store.get(ctx, &state).await?.ok_or(AuthError::MissingTransaction)?;
        // Single use: whatever happens next, this transaction is spent. The browser's other
        // attempts stay (a login in another tab completes too); the store bounds how many.
        store.delete(ctx, &state).await?;
        if transaction.tenant != self.inner.config.tenant {
            // Started by another tenant's client (a store shared by mistake): not ours to finish.
            tracing::warn!(login = ?transaction.tenant, here = ?self.inner.config.tenant, "callback for a login of another tenant; refused");
            return Err(AuthError::MissingTransaction);
        }
        if let Some(issuer) = &transaction.issuer
            && issuer != self.issuer()
        {
            // The tenant's provider changed since this login started: its answer is not checked
            // against another provider's keys.
            return Err(AuthError::IssuerMismatch(issuer.clone()));
        }
        if let Some(error) = params.error {
            if transaction.silent {
                tracing::info!(?error, "silent login declined; back to the page, anonymous");
                return Err(AuthError::SilentLoginDeclined { error, return_to: transaction.return_to });
            }
            return Err(AuthError::ProviderRefused { error, description: params.error_description });
        }
        match params.iss {
            Some(iss) if iss != self.inner.rp.issuer() => return Err(AuthError::IssuerMismatch(iss)),
            None if self.inner.rp.requires_iss() => return Err(AuthError::MissingIssuer),
            _ => {}
        }
        let code = params.code.ok_or_else(|| AuthError::InvalidRequest("the callback has no code".into()))?;
        let redirect = self.login_redirect(ctx, &transaction)?;
        let (dpop, binding) = self.login_dpop_key(&transaction)?;
        let verifier = &transaction.code_verifier;
        let mut tokens =
            self.inner.rp.exchange_code(&code, verifier, &transaction.nonce, dpop.as_ref(), redirect).await?;
        self.inner.rp.merge_userinfo(&tokens.access_token, &mut tokens.claims, dpop.as_ref()).await?;
        let now = self.inner.config.clock.now();
        self.check_what_the_login_asked(&transaction, &tokens.claims, now)?;
        let mut session = SessionData::new(User::from_id_token_claims(tokens.claims), tokens.id_token, now);
        session.refresh_token = tokens.refresh_token;
        session.refresh_token_ends_at = tokens.refresh_token_ends_at;
        session.bound_by_provider();
        session.tenant.clone_from(&self.inner.config.tenant);
        session.dpop = binding;
        if let Some(device) = ctx.login_device.take() {
            session.device = device.device;
            session.location = device.location;
        }
        // Filed under what this login asked for (a transaction of an earlier version has no
        // scope recorded: the configuration's then).
        let (audience, asked) = if transaction.scope.is_empty() {
            (self.inner.config.audience.clone(), self.inner.config.scope.clone())
        } else {
            (transaction.audience, transaction.scope)
        };
        session.token_sets.push(TokenSet {
            audience,
            scope: tokens.scope.unwrap_or(asked),
            access_token: tokens.access_token,
            expires_at: tokens.expires_at,
        });
        if let Some(hook) = &self.inner.before_save {
            hook(&mut session);
        }
        if let Some(hook) = &self.inner.before_save_async {
            session = hook(session).await?;
        }
        // A login over a session this browser still holds replaces it: counted as ended. Read
        // only when a session cookie came with the callback (a first login reads nothing).
        let name = &self.inner.config.cookies.session_name;
        if (ctx.cookie(name).is_some() || ctx.cookie(&format!("{name}.0")).is_some())
            && let Ok(Some(_)) = self.inner.session_store.get(&mut ctx.request_only()).await
        {
            telemetry::count_by(telemetry::SESSIONS_ENDED, "cause", "replaced");
        }
        self.inner.session_store.set(ctx, &session).await?;
        tracing::info!(sub = session.user.sub(), "login completed");
        self.enforce_session_cap(&session).await;
        let result = LoginResult { session, return_to: transaction.return_to, app_state: transaction.app_state };
        if let Some(hook) = &self.inner.after_callback {
            hook(&result);
        }
        Ok(result)
    }

    /// The `redirect_uri` the login's code exchange names: the callback at the origin the login
    /// started on, when that is not the base URL's (`None`: the base URL's). A callback at
    /// another origin than the login's, or an origin the app no longer lists, is refused.
    fn login_redirect(&self, ctx: &StoreContext, transaction: &TransactionData) -> Result<Option<Url>, AuthError> {
        let config = &self.inner.config;
        let started = match &transaction.origin {
            None => 0,
            Some(origin) => {
                let listed = config.origins.iter().position(|o| o.origin().ascii_serialization() == *origin);
                listed.and_then(|i| u8::try_from(i).ok()).ok_or_else(|| {
                    tracing::warn!(origin = origin.as_str(), "login started at an origin the app no longer lists");
                    AuthError::InvalidRequest("the login started at an origin this app does not serve".into())
                })?
            }
        };
        if started != ctx.origin {
            tracing::warn!(started = ?transaction.origin, "callback at another origin than its login's; refused");
            return Err(AuthError::InvalidRequest("the callback came to another origin than the login".into()));
        }
        Ok((started != 0).then(|| config.callback_url_at(started)))
    }

    /// The DPoP key a login's code is bound to, and what its session keeps of it: by the
    /// configuration when the login started (a login started before DPoP was turned on, or
    /// off, is refused: the user logs in again).
    fn login_dpop_key(
        &self,
        transaction: &TransactionData,
    ) -> Result<(Option<DpopKey>, Option<DpopBinding>), AuthError> {
        let changed = || {
            tracing::warn!("a login started under another DPoP setting reached the callback; refused");
            Err(AuthError::MissingTransaction)
        };
        match (&self.inner.config.dpop, &transaction.dpop_key) {
            (None, None) => Ok((None, None)),
            (Some(DpopMode::PerSession), Some(secret)) => {
                let key = DpopKey::from_secret_text(secret).map_err(|e| AuthError::InvalidRequest(e.to_string()))?;
                Ok((Some(key), Some(DpopBinding::Key(secret.clone()))))
            }
            (Some(DpopMode::PerProcess(key)), None) => {
                Ok((Some(DpopKey::clone(key)), Some(DpopBinding::Process(key.thumbprint().to_owned()))))
            }
            _ => changed(),
        }
    }

    /// The key `session`'s tokens are bound to: its own, or this process's when the session
    /// names it. A session bound to another process's key cannot be refreshed here.
    fn session_dpop_key(&self, session: &SessionData) -> Result<Option<DpopKey>, AuthError> {
        match &session.dpop {
            None => Ok(None),
            Some(DpopBinding::Key(secret)) => DpopKey::from_secret_text(secret)
                .map(Some)
                .map_err(|e| AuthError::Provider(ProviderError::InvalidGrant(e.to_string()))),
            Some(DpopBinding::Process(thumbprint)) => match &self.inner.config.dpop {
                Some(DpopMode::PerProcess(key)) if key.thumbprint() == thumbprint => Ok(Some(DpopKey::clone(key))),
                _ => Err(AuthError::Provider(ProviderError::InvalidGrant(
                    "the session's tokens are bound to another process's DPoP key (give every instance the same dpop_key)"
                        .into(),
                ))),
            },
        }
    }

    /// The checks a login's own parameters call for: `max_age` (the ID token's `auth_time`),
    /// `organization`, essential `acr_values`. For a login a step-up guard started, falling
    /// short is [`AuthError::StepUpFailed`] (403): the guard would only send the browser round
    /// again.
    fn check_what_the_login_asked(
        &self,
        transaction: &TransactionData,
        claims: &serde_json::Map<String, Value>,
        now: u64,
    ) -> Result<(), AuthError> {
        let short = |err: AuthError| match (transaction.step_up, err) {
            (true, AuthError::Provider(ProviderError::InvalidIdToken(why))) => AuthError::StepUpFailed(why),
            (_, err) => err,
        };
        if let Some(max_age) = transaction.max_age {
            check_auth_time(claims, max_age, now, self.inner.config.clock_skew.as_secs()).map_err(short)?;
        }
        if let Some(organization) = &transaction.organization {
            check_organization(claims, organization)?;
        }
        if let Some(wanted) = &transaction.essential_acr_values {
            let acr = claims.get("acr").and_then(Value::as_str);
            if !acr.is_some_and(|acr| wanted.split_whitespace().any(|w| w == acr)) {
                return Err(short(AuthError::Provider(ProviderError::InvalidIdToken(format!(
                    "the acr {acr:?} is none of the essential acr_values `{wanted}`"
                )))));
            }
        }
        Ok(())
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

    /// Ends the session here and returns where to send the browser, by the configured
    /// [`LogoutStrategy`](crate::LogoutStrategy): the provider's end-session endpoint (with
    /// `id_token_hint`, `post_logout_redirect_uri` and `client_id`), Auth0's `/v2/logout`, or
    /// straight back to `return_to`. A refused `return_to` or extra parameter ends nothing.
    /// With [`logout_state`](crate::AuthConfigBuilder::logout_state) and an end-session
    /// endpoint, the provider is sent a fresh `state` and returns to `{prefix}/logout/callback`
    /// ([`complete_logout`](Self::complete_logout)), which goes on to `return_to`.
    pub async fn logout(&self, ctx: &mut StoreContext, options: LogoutOptions) -> Result<Url, AuthError> {
        let return_to = match options.return_to.as_deref() {
            Some(target) => return_to::validate(target).map_err(|e| AuthError::InvalidRequest(e.into()))?,
            None => "/",
        };
        // Checked before anything ends: a refused request changes nothing.
        // `returnTo` is what Auth0's /v2/logout takes for `post_logout_redirect_uri`: set by us too.
        let reserved = ["id_token_hint", "post_logout_redirect_uri", "client_id", "returnTo"];
        let mut extra = self.inner.config.logout_params.clone();
        extra.extend(options.extra_params);
        let state_reserved = |n: &str| n == "state" && self.inner.config.logout_state;
        if let Some((name, _)) = extra.iter().find(|(n, _)| reserved.contains(&n.as_str()) || state_reserved(n)) {
            return Err(AuthError::InvalidRequest(format!("the logout parameter `{name}` is set by auth-layer")));
        }
        let session = self.inner.session_store.get(ctx).await?;
        self.inner.session_store.delete(ctx).await?;
        if session.is_some() {
            telemetry::count_by(telemetry::SESSIONS_ENDED, "cause", "logout");
        }
        self.inner.transaction_store.delete_all(ctx).await?;
        if let Some(session) = &session {
            self.revoke_ended(session);
        }
        let back = self.inner.config.app_url_at(ctx.origin, return_to);
        let id_token = session.as_ref().map(|s| s.id_token.as_str());
        if self.inner.config.logout_state {
            let mut pending = StoreContext::default();
            let state = logout::begin(&self.inner.config, &mut pending, return_to);
            let callback = self
                .inner
                .config
                .app_url_at(ctx.origin, &format!("{}/logout/callback", self.inner.config.route_prefix));
            if let Some(url) = self.inner.rp.end_session_url(id_token, &callback, Some(&state), &extra) {
                ctx.absorb(pending);
                return Ok(url);
            }
        }
        Ok(self.inner.rp.end_session_url(id_token, &back, None, &extra).unwrap_or(back))
    }

    /// After a logout, a listing, a cap or an administrator ended `session`: its refresh token
    /// revoked at the provider (RFC 7009), by one process of the fleet (the fleet's revocation
    /// claim), in a task of its own, so the answer never waits for the provider. A failure is
    /// logged and counted; the session stays ended whatever the provider does.
    pub(crate) fn revoke_ended(&self, session: &SessionData) {
        let Some(refresh_token) = session.refresh_token.clone() else { return };
        if !self.inner.config.revoke_at_logout || !self.inner.rp.revokes() {
            return;
        }
        let dpop = match self.session_dpop_key(session) {
            Ok(dpop) => dpop,
            Err(err) => {
                tracing::warn!(code = "revocation_failed", sub = session.sub(), %err, "refresh token not revoked: its DPoP key is not at hand");
                telemetry::count_by(telemetry::REVOCATIONS, "outcome", "failed");
                return;
            }
        };
        let client = self.clone();
        let (session_id, sub) = (session.id().to_owned(), session.sub().to_owned());
        tokio::spawn(async move {
            match client.inner.fleet.claim_revocation(&session_id).await {
                Ok(true) => {}
                Ok(false) => {
                    tracing::debug!(sub = %sub, "another process revokes this session's refresh token");
                    return;
                }
                // Revoked without the claim: at worst twice, which the provider answers alike
                // (RFC 7009, 2.2), rather than not at all.
                Err(err) => {
                    tracing::warn!(sub = %sub, %err, "shared state unavailable; revoking without the fleet's claim")
                }
            }
            let outcome = match client.inner.rp.revoke(&refresh_token, dpop.as_ref()).await {
                Ok(()) => {
                    tracing::info!(sub = %sub, "refresh token of an ended session revoked at the provider");
                    "revoked"
                }
                Err(err) => {
                    tracing::warn!(code = "revocation_failed", sub = %sub, error = %err, "refresh token not revoked at the provider; the session stays ended");
                    "failed"
                }
            };
            telemetry::count_by(telemetry::REVOCATIONS, "outcome", outcome);
        });
    }

    /// Where the provider's return from an RP-initiated logout (`query`, at
    /// `{prefix}/logout/callback`) sends the browser, with
    /// [`logout_state`](crate::AuthConfigBuilder::logout_state): the page the logout named when
    /// the provider returned the `state` it was sent, else the app's root (logged as
    /// `logout_state_mismatch`). The local session ended at [`logout`](Self::logout) either way.
    pub fn complete_logout(&self, ctx: &mut StoreContext, query: &str) -> Url {
        logout::finish(&self.inner.config, ctx, query)
    }

    /// An access token for the request's session: the stored one while fresh, else a refreshed
    /// one. One refresh grant per session at a time, across every process sharing
    /// [`SharedState`]: concurrent calls wait for it and use its result, and a refresh for
    /// another audience starts from the refresh token it left. A refused refresh token
    /// (`invalid_grant`) ends the session, unless the stored session already holds a newer one
    /// (a refresh elsewhere won the race), which is then used; an unreachable provider leaves
    /// the session as it was.
    #[doc(alias = "get_access_token")]
    pub async fn access_token(
        &self,
        ctx: &mut StoreContext,
        options: AccessTokenOptions,
    ) -> Result<AccessToken, AuthError> {
        let session = self.session(ctx).await?.ok_or(AuthError::NotAuthenticated)?;
        self.access_token_of(ctx, session, options).await
    }

    /// [`access_token`](Self::access_token) for a session the caller has read already
    /// (through [`session`](Self::session), with this request's `ctx`).
    pub(crate) async fn access_token_of(
        &self,
        ctx: &mut StoreContext,
        mut session: Arc<SessionData>,
        options: AccessTokenOptions,
    ) -> Result<AccessToken, AuthError> {
        let config = &self.inner.config;
        let audience = options.audience.as_deref().or(config.audience.as_deref());
        let scope = options.scope.as_deref();
        let mut retried = false;
        let refreshed = loop {
            let current = find_token_set(&session.token_sets, audience, scope);
            if let Some(set) = current
                && !options.force_refresh
                && self.is_fresh(set)
            {
                return Ok(AccessToken::of(set, self.session_dpop_key(&session)?));
            }
            let refresh_token = session.refresh_token.as_deref().ok_or(AuthError::MissingRefreshToken)?;
            let key = refresh_key(&session, refresh_token, current, audience, scope);
            let need = RefreshNeed { audience, scope, force: options.force_refresh };
            let waiting = std::time::Instant::now();
            let outcome = self.inner.refreshes.try_get_with(key.clone(), self.refresh_once(&session, &key, need)).await;
            telemetry::time(telemetry::REFRESH_WAIT, ("scope", "process"), waiting.elapsed());
            match outcome {
                Ok(refreshed) => break refreshed,
                Err(err) => {
                    let err = AuthError::clone(&err);
                    if let AuthError::Provider(ProviderError::InvalidIdToken(why)) = &err {
                        // The provider's answer names another issuer or user, or fails a check:
                        // nothing of it is kept, and the session it was for does not go on
                        // (its refresh token may be spent); the user logs in again.
                        tracing::warn!(sub = session.sub(), why, "refreshed ID token refused; the session ends");
                        self.inner.session_store.delete(ctx).await?;
                        telemetry::count_by(telemetry::SESSIONS_ENDED, "cause", "refresh_refused");
                        return Err(err);
                    }
                    if !matches!(err, AuthError::Provider(ProviderError::InvalidGrant(_))) {
                        return Err(err);
                    }
                    // Lost a race to a refresh this process did not see (no shared state, or
                    // its result expired): the stored session may hold the newer token.
                    if !retried
                        && let Some(stored) = self.inner.session_store.get(ctx).await?
                        && stored.id() == session.id()
                        && stored.refresh_token != session.refresh_token
                    {
                        tracing::info!(
                            sub = session.sub(),
                            "refresh token refused; the stored session has a newer one"
                        );
                        retried = true;
                        session = stored;
                        continue;
                    }
                    tracing::warn!(sub = session.sub(), "refresh token refused; the session ends");
                    self.inner.session_store.delete(ctx).await?;
                    telemetry::count_by(telemetry::SESSIONS_ENDED, "cause", "refresh_refused");
                    return Err(err);
                }
            }
        };
        if !self.inner.session_store.update(ctx, &refreshed).await? {
            // Logged out while the provider answered: the new tokens are not saved nor used.
            return Err(AuthError::NotAuthenticated);
        }
        let set = find_token_set(&refreshed.token_sets, audience, scope).ok_or_else(|| {
            AuthError::InvalidRequest("the provider granted no token for this audience and scope".into())
        })?;
        Ok(AccessToken::of(set, self.session_dpop_key(&refreshed)?))
    }

    /// Whether `set` is good for longer than the refresh buffer.
    fn is_fresh(&self, set: &TokenSet) -> bool {
        let config = &self.inner.config;
        set.expires_at.is_none_or(|at| at > config.clock.now() + config.refresh_buffer.as_secs())
    }

    /// The refresh `key` of `session`, once for the fleet: under the session's lease (or with
    /// the result of whoever held it meanwhile).
    async fn refresh_once(
        &self,
        session: &SessionData,
        key: &str,
        need: RefreshNeed<'_>,
    ) -> Result<Arc<SessionData>, AuthError> {
        let lease = match self.inner.fleet.lease(session.id(), key).await? {
            Lease::Done(done) => return Ok(done),
            Lease::Held(lease) => lease,
        };
        let result = self.refresh_holding_lease(session, key, need).await;
        self.inner.fleet.release(lease).await;
        result
    }

    /// A refresh by the lease's holder: from the session's newest refresh token (a refresh for
    /// another audience or scope, here or elsewhere, may have rotated it since this request
    /// read the session), its result kept for the others.
    async fn refresh_holding_lease(
        &self,
        session: &SessionData,
        key: &str,
        need: RefreshNeed<'_>,
    ) -> Result<Arc<SessionData>, AuthError> {
        let newest = self.inner.fleet.newest(session.id()).await?.filter(|n| n.refresh_token != session.refresh_token);
        let refreshed = match newest {
            // That refresh may have brought what this one needs.
            Some(newest)
                if !need.force
                    && find_token_set(&newest.token_sets, need.audience, need.scope)
                        .is_some_and(|s| self.is_fresh(s)) =>
            {
                Arc::new(newest)
            }
            newest => {
                let base = newest.unwrap_or_else(|| session.clone());
                let refresh_token = base.refresh_token.clone().ok_or(AuthError::MissingRefreshToken)?;
                self.refresh(base, refresh_token, need.audience, need.scope).await?
            }
        };
        if let Err(err) = self.inner.fleet.keep(key, &refreshed, REFRESH_SHARING).await {
            // This request still saves and uses it; others of the session may refresh again.
            tracing::warn!(%err, "could not share a refresh's result");
        }
        Ok(refreshed)
    }

    /// One refresh: calls the token endpoint and returns the session updated with its answer.
    async fn refresh(
        &self,
        mut session: SessionData,
        refresh_token: String,
        audience: Option<&str>,
        scope: Option<&str>,
    ) -> Result<Arc<SessionData>, AuthError> {
        tracing::debug!(sub = session.sub(), "refreshing the access token");
        let dpop = self.session_dpop_key(&session)?;
        let tokens = self.inner.rp.refresh(&refresh_token, audience, scope, session.sub(), dpop.as_ref()).await;
        let outcome = match &tokens {
            Ok(_) => "granted",
            Err(ProviderError::InvalidGrant(_) | ProviderError::InvalidIdToken(_)) => "refused",
            Err(_) => "failed",
        };
        telemetry::count_by(telemetry::REFRESHES, "outcome", outcome);
        let tokens = tokens?;
        let granted = tokens.scope.or_else(|| scope.map(str::to_owned)).unwrap_or_else(|| {
            find_token_set(&session.token_sets, audience, None).map(|s| s.scope.clone()).unwrap_or_default()
        });
        let set = TokenSet {
            audience: audience.map(str::to_owned),
            scope: granted,
            access_token: tokens.access_token,
            expires_at: tokens.expires_at,
        };
        // One set per audience and scope: replace, never append a duplicate.
        session.token_sets.retain(|s| !(s.audience == set.audience && s.scope == set.scope));
        session.token_sets.push(set);
        if let Some(rotated) = tokens.refresh_token {
            session.refresh_token = Some(rotated);
            // A rotated refresh token brings its own expiry (or none); one kept keeps its own.
            session.refresh_token_ends_at = tokens.refresh_token_ends_at;
        }
        if let Some((id_token, claims)) = tokens.id_token {
            check_refreshed_id_token(session.user.claims(), &claims)?;
            session.id_token = id_token;
            session.user = User::from_id_token_claims(refreshed_claims(session.user.claims(), claims));
        }
        session.bound_by_provider();
        if let Some(hook) = &self.inner.before_save {
            hook(&mut session);
        }
        if let Some(hook) = &self.inner.before_save_async {
            session = hook(session).await?;
        }
        Ok(Arc::new(session))
    }

    /// Handles a back-channel logout token (the body of the provider's POST): checks it, refuses
    /// a replayed `jti` (one used on any process that shares [`SharedState`]), and ends every
    /// session it names, whatever the store, before returning.
    ///
    /// The `jti` is recorded only once the sessions are ended: when the store fails (503), the
    /// provider's retry of the same token is not mistaken for a replay, and ends them. Ending
    /// sessions twice (two copies of one token at once) does no harm.
    pub async fn handle_backchannel_logout(&self, logout_token: &str) -> Result<(), AuthError> {
        let result = self.end_sessions_by_logout_token(logout_token).await;
        let outcome = match &result {
            Ok(()) => {
                telemetry::count_by(telemetry::SESSIONS_ENDED, "cause", "backchannel");
                "ended"
            }
            Err(AuthError::Provider(ProviderError::InvalidLogoutToken(why))) if why.contains("replay") => "replayed",
            Err(AuthError::Provider(_)) => "refused",
            Err(_) => "failed",
        };
        telemetry::count_by(telemetry::BACKCHANNEL_LOGOUTS, "outcome", outcome);
        result
    }

    /// [`handle_backchannel_logout`](Self::handle_backchannel_logout)'s work, which it counts.
    async fn end_sessions_by_logout_token(&self, logout_token: &str) -> Result<(), AuthError> {
        let claims = self.inner.rp.verify_logout_token(logout_token).await?;
        let issuer = self.inner.rp.issuer();
        let client_id = self.inner.config.client_id();
        if self.inner.fleet.logout_token_seen(issuer, client_id, &claims.jti).await? {
            return Err(AuthError::Provider(ProviderError::InvalidLogoutToken("jti already used (replay)".into())));
        }
        let target = LogoutTarget { iss: issuer.to_owned(), sub: claims.sub, sid: claims.sid };
        self.inner.session_store.delete_by_logout_token(&target).await?;
        let ttl = Duration::from_secs(claims.replayable_until.saturating_sub(self.inner.config.clock.now()).max(1));
        self.inner.fleet.record_logout_token(issuer, client_id, &claims.jti, ttl).await?;
        tracing::info!(sid = target.sid.as_deref(), sub = target.sub.as_deref(), "back-channel logout handled");
        Ok(())
    }
}

/// How long a refresh's result is shared with requests of the same session that carry the
/// tokens it replaced (requests already in flight when it happened).
const REFRESH_SHARING: Duration = Duration::from_secs(30);

/// What a refresh is for: the audience and scope wanted, and whether it was forced.
#[derive(Clone, Copy)]
struct RefreshNeed<'a> {
    audience: Option<&'a str>,
    scope: Option<&'a str>,
    force: bool,
}

/// OpenID Connect Core 12.2: an ID token a refresh brings names the same issuer (`iss`) as the
/// session's, and the same authentication (`auth_time`) when both carry one. (Its `sub` and
/// `aud` are checked with its signature; the relying party refuses any other.)
fn check_refreshed_id_token(
    before: &serde_json::Map<String, Value>,
    claims: &serde_json::Map<String, Value>,
) -> Result<(), AuthError> {
    let invalid = |why: String| AuthError::Provider(ProviderError::InvalidIdToken(why));
    for (claim, what) in [("iss", "issuer"), ("auth_time", "authentication time")] {
        if let (Some(was), Some(now)) = (before.get(claim), claims.get(claim))
            && was != now
        {
            return Err(invalid(format!("a refreshed ID token names another {what} ({claim} {now}, was {was})")));
        }
    }
    Ok(())
}

/// The claims of a session after a refresh that brought a new ID token: the new token's, and
/// the session's claims it does not have (those userinfo added at login, or a `before_save`
/// hook), as at login, where the ID token's win.
fn refreshed_claims(
    before: &serde_json::Map<String, Value>,
    mut claims: serde_json::Map<String, Value>,
) -> serde_json::Map<String, Value> {
    for (name, value) in before {
        if !claims.contains_key(name) {
            claims.insert(name.clone(), value.clone());
        }
    }
    claims
}

/// OpenID Connect Core §3.1.2.1 and §3.1.3.7: a login that sent `max_age` needs the ID
/// token's `auth_time`, and an authentication no older than `max_age` (plus the tolerance).
fn check_auth_time(
    claims: &serde_json::Map<String, Value>,
    max_age: u64,
    now: u64,
    skew: u64,
) -> Result<(), AuthError> {
    let invalid = |why: String| AuthError::Provider(ProviderError::InvalidIdToken(why));
    let Some(auth_time) = claims.get("auth_time").and_then(Value::as_u64) else {
        return Err(invalid("max_age was sent but the ID token has no auth_time".into()));
    };
    if auth_time > now + skew {
        return Err(invalid(format!("auth_time {auth_time} is in the future (now {now})")));
    }
    if now.saturating_sub(auth_time) > max_age + skew {
        return Err(invalid(format!("the authentication at {auth_time} is older than max_age {max_age} (now {now})")));
    }
    Ok(())
}

/// Auth0's rule for a login that asked for an `organization`: an `org_`-prefixed value is an
/// id and must equal the ID token's `org_id`; any other value is a name and must equal its
/// `org_name`, case-insensitively; a missing claim is a refusal (the user may not be a member).
fn check_organization(claims: &serde_json::Map<String, Value>, organization: &str) -> Result<(), AuthError> {
    let invalid = |why: String| AuthError::Provider(ProviderError::InvalidIdToken(why));
    let (claim, matches): (&str, &dyn Fn(&str) -> bool) = if organization.starts_with("org_") {
        ("org_id", &|got| got == organization)
    } else {
        ("org_name", &|got| got.to_lowercase() == organization.to_lowercase())
    };
    match claims.get(claim).and_then(Value::as_str) {
        Some(got) if matches(got) => Ok(()),
        Some(got) => Err(invalid(format!("{claim} `{got}` is not the organization `{organization}` asked for"))),
        None => {
            Err(invalid(format!("the organization `{organization}` was asked for but the ID token has no {claim}")))
        }
    }
}

/// The token set for `audience` that covers `scope` (any scope when `None`).
fn find_token_set<'a>(sets: &'a [TokenSet], audience: Option<&str>, scope: Option<&str>) -> Option<&'a TokenSet> {
    sets.iter().filter(|s| s.audience.as_deref() == audience).find(|s| match scope {
        None => true,
        Some(wanted) => wanted.split_whitespace().all(|w| s.scope.split_whitespace().any(|have| have == w)),
    })
}

/// The single-flight key of a refresh: the session, the tokens it replaces, what it asks for.
fn refresh_key(
    session: &SessionData,
    refresh_token: &str,
    current: Option<&TokenSet>,
    audience: Option<&str>,
    scope: Option<&str>,
) -> String {
    fleet::hashed(&[
        session.id(),
        refresh_token,
        current.map_or("", |s| &s.access_token),
        audience.unwrap_or(""),
        scope.unwrap_or(""),
    ])
}

/// Parses a callback query as [`AuthClient::complete_login`] does (for the fuzz targets).
#[cfg(any(fuzzing, test))]
pub(crate) fn parse_callback_query(query: &str) -> Result<(), AuthError> {
    CallbackParams::parse(query).map(|_| ())
}

/// The callback's query parameters that matter.
#[derive(Default)]
struct CallbackParams {
    state: Option<String>,
    code: Option<String>,
    iss: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

impl CallbackParams {
    const MAX_QUERY: usize = 8 * 1024;

    fn parse(query: &str) -> Result<Self, AuthError> {
        if query.len() > Self::MAX_QUERY {
            return Err(AuthError::InvalidRequest("the callback's query is too long".into()));
        }
        let mut params = Self::default();
        for (name, value) in url::form_urlencoded::parse(query.as_bytes()) {
            let slot = match name.as_ref() {
                "state" => &mut params.state,
                "code" => &mut params.code,
                "iss" => &mut params.iss,
                "error" => &mut params.error,
                "error_description" => &mut params.error_description,
                _ => continue,
            };
            if slot.is_some() {
                return Err(AuthError::InvalidRequest(format!("the callback repeats `{name}`")));
            }
            *slot = Some(value.into_owned());
        }
        Ok(params)
    }
}

#[cfg(test)]
mod tests {
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
