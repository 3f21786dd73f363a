//! The Tower middleware: [`AuthLayer`] wraps any `Service<http::Request<B>>` in an
//! [`AuthService`] that answers the auth routes itself and gives every other request a lazy
//! [`Session`](crate::Session) in its extensions.
//!
//! ```no_run
//! use auth_layer::AuthLayer;
//! use tower::ServiceBuilder;
//! # async fn run() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//! # let app = tower::service_fn(|_req: http::Request<http_body_util::Empty<bytes::Bytes>>| async {
//! #     Ok::<_, std::convert::Infallible>(http::Response::new(http_body_util::Empty::<bytes::Bytes>::new()))
//! # });
//! let auth = AuthLayer::from_env().await?.with_profile_route(true);
//! let service = ServiceBuilder::new().layer(auth).service(app);
//! # Ok(()) }
//! ```

use tower_layer::Layer;

use super::routes::OptionalRoutes;
use super::service::AuthService;
use crate::client::AuthClient;
use crate::config::AuthConfig;
use crate::error::AuthError;

/// Mounts the auth routes and the per-request session on a service.
///
/// Routes, under the configured prefix (`/auth` by default): `GET login?returnTo=`,
/// `GET callback`, `GET logout?returnTo=`, and, when enabled, `GET profile`,
/// `GET access-token` and `POST backchannel-logout`.
#[derive(Clone, Debug)]
pub struct AuthLayer {
    client: AuthClient,
    routes: OptionalRoutes,
}

/// Builds an [`AuthLayer`]: stores and hooks, then discovery. The opt-in routes are turned on
/// on the built layer (`with_profile_route`, ...).
#[must_use]
pub struct AuthLayerBuilder {
    client: crate::client::AuthClientBuilder,
}

impl AuthLayerBuilder {
    /// Keeps sessions in `store` instead of the encrypted cookie.
    pub fn with_session_store(mut self, store: impl crate::store::SessionStore) -> Self {
        self.client = self.client.with_session_store(store);
        self
    }

    /// Keeps logins in flight in `store` instead of per-login cookies.
    pub fn with_transaction_store(mut self, store: impl crate::store::TransactionStore) -> Self {
        self.client = self.client.with_transaction_store(store);
        self
    }

    /// Runs `hook` on every session before it is saved at login or after a refresh.
    pub fn before_save(mut self, hook: impl Fn(&mut crate::model::SessionData) + Send + Sync + 'static) -> Self {
        self.client = self.client.before_save(hook);
        self
    }

    /// Runs `hook` after every completed login.
    pub fn after_callback(mut self, hook: impl Fn(&crate::client::LoginResult) + Send + Sync + 'static) -> Self {
        self.client = self.client.after_callback(hook);
        self
    }

    /// Discovers the provider and builds the layer.
    pub async fn build(self) -> Result<AuthLayer, AuthError> {
        Ok(AuthLayer::new(self.client.build().await?))
    }
}

impl AuthLayer {
    /// A builder over `config`: the cookie stores unless others are given.
    pub fn builder(config: AuthConfig) -> AuthLayerBuilder {
        AuthLayerBuilder { client: AuthClient::builder(config) }
    }

    /// A layer over an [`AuthClient`] (built with the stores of your choice).
    pub fn new(client: AuthClient) -> Self {
        Self { client, routes: OptionalRoutes::default() }
    }

    /// Reads [`AuthConfig::from_env`], discovers the provider, and keeps sessions in the
    /// encrypted cookie.
    pub async fn from_env() -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        let config = AuthConfig::from_env()?;
        Ok(Self::new(AuthClient::new(config).await?))
    }

    /// Discovers the provider for `config`; sessions in the encrypted cookie.
    pub async fn from_config(config: AuthConfig) -> Result<Self, AuthError> {
        Ok(Self::new(AuthClient::new(config).await?))
    }

    /// Serves `GET {prefix}/profile`: the user's claims as JSON, or 401. Off by default.
    pub fn with_profile_route(mut self, enabled: bool) -> Self {
        self.routes.profile = enabled;
        self
    }

    /// Serves `GET {prefix}/access-token`: `{access_token, expires_at, scope}` (refreshed when
    /// due), or 401. Off by default.
    pub fn with_access_token_route(mut self, enabled: bool) -> Self {
        self.routes.access_token = enabled;
        self
    }

    /// Serves `POST {prefix}/backchannel-logout`, where the provider ends sessions. Off by default.
    pub fn with_backchannel_logout(mut self, enabled: bool) -> Self {
        self.routes.backchannel_logout = enabled;
        self
    }

    /// The client behind the layer.
    pub fn client(&self) -> &AuthClient {
        &self.client
    }
}

impl<S> Layer<S> for AuthLayer {
    type Service = AuthService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        AuthService::new(inner, self.client.clone(), self.routes)
    }
}
