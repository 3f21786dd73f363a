//! [`AuthClientBuilder`]: the client's stores, hooks and shared state, and the provider's
//! discovery at [`build`](AuthClientBuilder::build).

use super::tokens::REFRESH_SHARING;
use super::*;
use crate::backend::Backend;
use crate::store::ServerSessionStore;

/// Builds an [`AuthClient`]: the cookie stores unless others are given.
///
/// ```no_run
/// # async fn run(config: auth_layer::AuthConfig) -> Result<(), auth_layer::AuthError> {
/// use auth_layer::store::ServerSessionStore;
/// use auth_layer::{AuthClient, AuthLayer};
///
/// let client = AuthClient::builder(config.clone())
///     // Sessions on the server (here in memory; Redis or PostgreSQL the same way).
///     .with_server_sessions(ServerSessionStore::in_memory(&config))
///     // Keep less in each session: the app never shows the picture.
///     .before_save(|session| {
///         session.user.claims_mut().remove("picture");
///     })
///     .after_callback(|login| println!("{} logged in", login.session.sub()))
///     .build()
///     .await?;
/// let layer = AuthLayer::new(client);
/// # let _ = layer; Ok(()) }
/// ```
#[must_use]
pub struct AuthClientBuilder {
    pub(super) config: AuthConfig,
    pub(super) session_store: Option<ChosenStore>,
    pub(super) transaction_store: Option<Arc<dyn TransactionStore>>,
    pub(super) before_save: Option<BeforeSaveHook>,
    pub(super) before_save_async: Option<BeforeSaveAsyncHook>,
    pub(super) after_callback: Option<AfterCallbackHook>,
    pub(super) session_location: Option<LocationHook>,
    pub(super) shared_state: Option<SharedState>,
}

/// A session store the builder was given, and where the state the fleet shares goes beside it
/// when the store's type says (`None`: a store of the app's own, which cannot say).
pub(super) struct ChosenStore {
    store: Arc<dyn SessionStore>,
    state: Option<SharedState>,
    /// A cookie store whose logout markers are in this process's memory.
    local_markers: bool,
}

/// What [`AuthClientBuilder::build`] answers for a store of the app's own without a
/// [`SharedState`]: the client does not guess where the fleet's state lives.
const NO_SHARED_STATE: &str = "a session store given to `with_session_store` needs `with_shared_state` too: \
    where the state every process must see alike (used logout tokens, refresh leases) is kept. \
    Give `SharedState::in_backend(..)` with the backend the app's processes share, or \
    `SharedState::in_memory()` for one process; `with_server_sessions` and `with_cookie_sessions` \
    take it from their store";

impl AuthClientBuilder {
    /// Keeps the state every process of the app must see alike (used logout tokens, refresh
    /// leases; with the default cookie store, its logout markers too) in `state`. Needed with
    /// [`with_session_store`](Self::with_session_store); with
    /// [`with_server_sessions`](Self::with_server_sessions) or
    /// [`with_cookie_sessions`](Self::with_cookie_sessions) it replaces where their store would
    /// put it; with the default cookie store, unset means this process's memory (one process).
    /// See [`SharedState`].
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

    /// Keeps sessions on the server, in `store` (in memory, Redis, PostgreSQL, a backend of the
    /// app's own), and the state every process must see alike in the same place
    /// ([`ServerSessionStore::shared_state`]): a fleet over one Redis has one refresh per
    /// session and logout tokens used once, with nothing else to set. Takes the store or an
    /// `Arc` of it (to use it beside the client, e.g. in an admin task).
    ///
    /// ```
    /// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// use auth_layer::{AuthClient, AuthConfig};
    /// use auth_layer::store::ServerSessionStore;
    ///
    /// let config = AuthConfig::builder()
    ///     .issuer("https://tenant.example.auth0.com/")
    ///     .client_id("my-app")
    ///     .client_secret("my-app-secret")
    ///     .secret("a secret of at least thirty-two bytes, from the environment")
    ///     .base_url("http://localhost:3000")
    ///     .build()?;
    /// // With Redis: ServerSessionStore::new(RedisBackend::connect(&url).await?, &config).
    /// let store = ServerSessionStore::in_memory(&config);
    /// let builder = AuthClient::builder(config).with_server_sessions(store);
    /// # #[cfg(feature = "testing")]
    /// # { let client = builder.build_without_provider()?; assert!(!client.shares_state()); }
    /// # Ok(()) }
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(run()).unwrap();
    /// ```
    pub fn with_server_sessions<B: Backend>(mut self, store: impl Into<Arc<ServerSessionStore<B>>>) -> Self {
        let store = store.into();
        let state = store.shared_state();
        self.session_store = Some(ChosenStore { store, state: Some(state), local_markers: false });
        self
    }

    /// Keeps sessions in the encrypted cookie as `store` is set up (its opened cache, its
    /// logout markers), and the state every process must see alike where its markers are
    /// ([`CookieSessionStore::shared_state`]). The default cookie store needs none of this:
    /// [`with_shared_state`](Self::with_shared_state) alone puts its markers in a shared
    /// backend.
    ///
    /// Refused at [`build`](Self::build) when the markers stay in this process while
    /// [`with_shared_state`](Self::with_shared_state) names a shared backend: a logout on one
    /// instance would not end the session's copies on the others.
    pub fn with_cookie_sessions<M: Backend>(mut self, store: impl Into<Arc<CookieSessionStore<M>>>) -> Self {
        let store = store.into();
        let state = store.shared_state();
        let local_markers = !state.is_shared();
        self.session_store = Some(ChosenStore { store, state: Some(state), local_markers });
        self
    }

    /// Keeps sessions in a store of the app's own (any [`SessionStore`]). The client cannot
    /// tell where such a store shares state with other processes, so
    /// [`with_shared_state`](Self::with_shared_state) must say where the fleet's state goes:
    /// without it [`build`](Self::build) fails with [`AuthError::Misconfigured`] rather than
    /// keep it in one process unasked. For auth-layer's own stores,
    /// [`with_server_sessions`](Self::with_server_sessions) and
    /// [`with_cookie_sessions`](Self::with_cookie_sessions) need no second call.
    pub fn with_session_store(mut self, store: impl SessionStore) -> Self {
        self.session_store = Some(ChosenStore { store: Arc::new(store), state: None, local_markers: false });
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
    /// would with the provider down (its endpoints are on a `.invalid` host, which never resolves:
    /// nothing is sent to the configured issuer).
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
    pub(super) fn build_with(mut self, rp: RelyingParty) -> Result<AuthClient, AuthError> {
        if rp.form_post() {
            // Settled at discovery (a provider may require it): the stores built below see it.
            self.config.response_mode = crate::config::ResponseMode::FormPost;
        }
        let (session_store, shared_state): (Arc<dyn SessionStore>, SharedState) =
            match (self.session_store, self.shared_state) {
                // The default cookie store keeps its logout markers with the rest of the shared state.
                (None, Some(state)) if state.is_shared() => (
                    Arc::new(CookieSessionStore::new(&self.config).with_marker_backend(state.backend().clone())),
                    state,
                ),
                (None, state) => {
                    (Arc::new(CookieSessionStore::new(&self.config)), state.unwrap_or_else(SharedState::in_memory))
                }
                (Some(ChosenStore { local_markers: true, .. }), Some(state)) if state.is_shared() => {
                    return Err(AuthError::Misconfigured(
                        "the cookie store keeps its logout markers in this process while the shared state is shared: \
                         a logout would not end the session's copies on other instances; give the store \
                         `with_marker_backend`, or leave the cookie store to the builder"
                            .into(),
                    ));
                }
                (Some(ChosenStore { store, state: Some(_), .. }), Some(state)) => (store, state),
                (Some(ChosenStore { store, state: Some(own), .. }), None) => (store, own),
                (Some(ChosenStore { store, state: None, .. }), Some(state)) => (store, state),
                (Some(ChosenStore { state: None, .. }), None) => {
                    return Err(AuthError::Misconfigured(NO_SHARED_STATE.into()));
                }
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

#[cfg(all(test, feature = "testing"))]
mod tests {
    use super::*;
    use crate::backend::MokaBackend;

    fn config() -> AuthConfig {
        crate::config::test_config(Arc::default()).build().unwrap()
    }

    /// Two processes of one app over `backend`, each built by `build`: whether a logout token
    /// one of them used is seen as used by the other.
    async fn a_used_logout_token_reaches_the_other_process(
        build: impl Fn(AuthClientBuilder) -> AuthClientBuilder,
    ) -> bool {
        let a = build(AuthClient::builder(config())).build_without_provider().unwrap();
        let b = build(AuthClient::builder(config())).build_without_provider().unwrap();
        let ttl = Duration::from_secs(60);
        a.inner.fleet.record_logout_token("https://issuer.example/", "c", "jti-1", ttl).await.unwrap();
        b.inner.fleet.logout_token_seen("https://issuer.example/", "c", "jti-1").await.unwrap()
    }

    fn misconfigured(result: Result<AuthClient, AuthError>) -> String {
        match result {
            Err(AuthError::Misconfigured(why)) => why,
            Err(other) => panic!("another error: {other}"),
            Ok(_) => panic!("built"),
        }
    }

    #[tokio::test]
    async fn server_sessions_keep_the_fleets_state_in_their_backend() {
        let backend = MokaBackend::new();
        let build = |builder: AuthClientBuilder| {
            let store = ServerSessionStore::new(backend.clone(), &config());
            builder.with_server_sessions(store)
        };
        assert!(a_used_logout_token_reaches_the_other_process(build).await);
        let client = build(AuthClient::builder(config())).build_without_provider().unwrap();
        assert!(client.shares_state());

        // Sessions in this process's memory: so is the state, and nothing claims otherwise.
        let memory = AuthClient::builder(config())
            .with_server_sessions(ServerSessionStore::in_memory(&config()))
            .build_without_provider()
            .unwrap();
        assert!(!memory.shares_state());
    }

    #[tokio::test]
    async fn cookie_sessions_keep_the_fleets_state_where_their_markers_are() {
        let backend = MokaBackend::new();
        let shared = |builder: AuthClientBuilder| {
            builder.with_cookie_sessions(CookieSessionStore::new(&config()).with_marker_backend(backend.clone()))
        };
        assert!(a_used_logout_token_reaches_the_other_process(shared).await);
        let local = |builder: AuthClientBuilder| builder.with_cookie_sessions(CookieSessionStore::new(&config()));
        assert!(!a_used_logout_token_reaches_the_other_process(local).await);

        // The default cookie store: its markers and the state go where `with_shared_state` says.
        let state = SharedState::in_backend(MokaBackend::new());
        let default = |builder: AuthClientBuilder| builder.with_shared_state(state.clone());
        assert!(a_used_logout_token_reaches_the_other_process(default).await);
        assert!(!AuthClient::builder(config()).build_without_provider().unwrap().shares_state());
    }

    #[tokio::test]
    async fn a_store_of_the_apps_own_is_refused_until_told_where_the_fleets_state_goes() {
        let store = || ServerSessionStore::new(MokaBackend::new(), &config());
        let why = misconfigured(AuthClient::builder(config()).with_session_store(store()).build_without_provider());
        assert!(why.contains("with_shared_state"), "{why}");
        assert!(why.contains("SharedState::in_memory()"), "{why}");

        let backend = MokaBackend::new();
        let told = |builder: AuthClientBuilder| {
            builder.with_session_store(store()).with_shared_state(SharedState::in_backend(backend.clone()))
        };
        assert!(a_used_logout_token_reaches_the_other_process(told).await);
        let one_process = |builder: AuthClientBuilder| {
            builder.with_session_store(store()).with_shared_state(SharedState::in_memory())
        };
        assert!(!a_used_logout_token_reaches_the_other_process(one_process).await);
    }

    #[tokio::test]
    async fn cookie_markers_in_one_process_beside_shared_state_are_refused() {
        let why = misconfigured(
            AuthClient::builder(config())
                .with_cookie_sessions(CookieSessionStore::new(&config()))
                .with_shared_state(SharedState::in_backend(MokaBackend::new()))
                .build_without_provider(),
        );
        assert!(why.contains("with_marker_backend"), "{why}");
        // Markers and state shared, each where the app chose: built.
        let client = AuthClient::builder(config())
            .with_cookie_sessions(CookieSessionStore::new(&config()).with_marker_backend(MokaBackend::new()))
            .with_shared_state(SharedState::in_backend(MokaBackend::new()))
            .build_without_provider()
            .unwrap();
        assert!(client.shares_state());
    }
}
