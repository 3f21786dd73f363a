//! The Tower middleware: [`AuthLayer`] wraps any `Service<http::Request<B>>` in an
//! [`AuthService`] that answers the auth routes itself and gives every other request a lazy
//! [`Session`](crate::Session) in its extensions.
//!
//! A layer is configured in two places, each for its own kind of setting: what can be written
//! down ([`AuthConfig`]: provider, secrets, routes, cookies, durations; from the environment or
//! a builder) and what is code ([`AuthClient::builder`]: stores and hooks). The layer itself
//! has nothing more to set.
//!
//! ```no_run
//! use auth_layer::store::ServerSessionStore;
//! use auth_layer::{AuthClient, AuthConfig, AuthLayer};
//! use tower::ServiceBuilder;
//! # async fn run() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//! # let app = tower::service_fn(|_req: http::Request<http_body_util::Empty<bytes::Bytes>>| async {
//! #     Ok::<_, std::convert::Infallible>(http::Response::new(http_body_util::Empty::<bytes::Bytes>::new()))
//! # });
//! // Everything from the environment (AUTH_ROUTES=profile turns on /auth/profile):
//! let auth = AuthLayer::from_env().await?;
//! # let _ = auth;
//! // Or settings in code, and a store of your choice:
//! let config = AuthConfig::builder()
//!     .issuer("https://example.eu.auth0.com/")
//!     .client_id("client")
//!     .client_secret("secret")
//!     .secret("at-least-32-characters-of-secret!")
//!     .base_url("https://app.example.com")
//!     .profile_route(true)
//!     .build()?;
//! let store = ServerSessionStore::in_memory(&config);
//! let auth = AuthLayer::new(AuthClient::builder(config).with_server_sessions(store).build().await?);
//! let service = ServiceBuilder::new().layer(auth).service(app);
//! # Ok(()) }
//! ```

use tower_layer::Layer;

use super::service::AuthService;
use crate::client::AuthClient;
use crate::config::AuthConfig;
use crate::error::AuthError;

/// Mounts the auth routes and the per-request session on a service.
///
/// Routes, under the configured prefix (`/auth` by default): `GET login?returnTo=`,
/// `GET callback`, `GET logout?returnTo=`, and, when the configuration turns them on,
/// `GET profile`, `GET access-token` and `POST backchannel-logout`.
///
/// ```no_run
/// use auth_layer::{AuthClient, AuthConfig, AuthLayer};
/// use auth_layer::store::ServerSessionStore;
///
/// # async fn build() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
/// // Everything from the environment (AUTH_ISSUER, AUTH_CLIENT_ID, ...), cookie sessions:
/// let auth = AuthLayer::from_env().await?;
///
/// // Or a client built in code, with a store of its own:
/// let config = AuthConfig::from_env()?;
/// let store = ServerSessionStore::in_memory(&config);
/// let auth = AuthLayer::new(AuthClient::builder(config).with_server_sessions(store).build().await?);
/// # let _ = auth; Ok(()) }
/// ```
///
/// One provider; several in one app take a [`TenantLayer`](super::TenantLayer) instead.
#[derive(Clone, Debug)]
pub struct AuthLayer {
    client: AuthClient,
}

impl AuthLayer {
    /// A layer over an [`AuthClient`] (built with the stores and hooks of your choice by
    /// [`AuthClient::builder`]). Its routes are those its configuration turns on.
    pub fn new(client: AuthClient) -> Self {
        Self { client }
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

    /// The client behind the layer.
    pub fn client(&self) -> &AuthClient {
        &self.client
    }
}

impl From<AuthClient> for AuthLayer {
    fn from(client: AuthClient) -> Self {
        Self::new(client)
    }
}

impl<S> Layer<S> for AuthLayer {
    type Service = AuthService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        AuthService::new(inner, self.client.clone())
    }
}
