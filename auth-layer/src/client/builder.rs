//! [`AuthClientBuilder`]: the client's stores, hooks and shared state, and the provider's
//! discovery at [`build`](AuthClientBuilder::build).

use super::tokens::REFRESH_SHARING;
use super::*;

/// Builds an [`AuthClient`]: the cookie stores unless others are given.
#[must_use]
pub struct AuthClientBuilder {
    pub(super) config: AuthConfig,
    pub(super) session_store: Option<Arc<dyn SessionStore>>,
    pub(super) transaction_store: Option<Arc<dyn TransactionStore>>,
    pub(super) before_save: Option<BeforeSaveHook>,
    pub(super) before_save_async: Option<BeforeSaveAsyncHook>,
    pub(super) after_callback: Option<AfterCallbackHook>,
    pub(super) session_location: Option<LocationHook>,
    pub(super) shared_state: Option<SharedState>,
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
