//! # auth-layer
//!
//! Server-side OpenID Connect login for any Tower service (axum, hyper, anything built on
//! `tower::Service<http::Request<_>>`), with sessions in an encrypted cookie or a store of your
//! choice.
//!
//! Stack one [`AuthLayer`] and the app has `/auth/login`, `/auth/callback`, `/auth/logout`
//! (and, opt-in, `/auth/profile`), and a lazy [`Session`] in every request's extensions:
//!
//! ```no_run
//! use std::convert::Infallible;
//!
//! use auth_layer::{AuthConfig, AuthLayer, Session};
//! use bytes::Bytes;
//! use http::{Request, Response};
//! use http_body_util::Full;
//! use tower::ServiceBuilder;
//!
//! async fn hello(req: Request<Full<Bytes>>) -> Result<Response<Full<Bytes>>, Infallible> {
//!     let session = req.extensions().get::<Session>().expect("inside the AuthLayer");
//!     let text = match session.user().await {
//!         Ok(Some(user)) => format!("hello {}", user.sub()),
//!         Ok(None) => "hello stranger: log in at /auth/login".to_owned(),
//!         Err(err) => format!("sessions are unavailable: {}", err.code()),
//!     };
//!     Ok(Response::new(Full::new(Bytes::from(text))))
//! }
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//! // AUTH_ISSUER, AUTH_CLIENT_ID, AUTH_CLIENT_SECRET, AUTH_SECRET, APP_BASE_URL
//! let config = AuthConfig::from_env()?;
//! let auth = AuthLayer::from_config(config).await?.with_profile_route(true);
//! let service = ServiceBuilder::new().layer(auth).service_fn(hello);
//! // serve `service` with hyper (see examples/hyper-server), or use axum (feature `axum`)
//! # let _ = service; Ok(()) }
//! ```
//!
//! With the `axum` feature, [`User`] and [`Session`] are extractors; see the `axum` module.
//!
//! ## Stores
//!
//! Sessions live in the encrypted cookie by default ([`store::CookieStateStore`]: no server
//! state, revocation by logout markers). For server-side sessions, only an id in the cookie:
//!
//! ```no_run
//! # async fn run(config: auth_layer::AuthConfig) -> Result<(), auth_layer::AuthError> {
//! use auth_layer::AuthLayer;
//! use auth_layer::store::ServerStateStore;
//!
//! let layer = AuthLayer::builder(config.clone())
//!     .with_state_store(ServerStateStore::in_memory(&config)) // or ServerStateStore::new(backend, &config)
//!     .build()
//!     .await?
//!     .with_profile_route(true);
//! # Ok(()) }
//! ```
//!
//! Backends: [`backend::MokaBackend`] (memory), `RedisBackend` (feature `redis`) and
//! `PostgresBackend` (feature `postgres`), all behind the small [`backend::Backend`] trait.
//!
//! ## Typed stores of your own
//!
//! `#[derive(Store)]` turns a struct into a record with a key, a time to live, sealing at rest
//! and indexes; see [`record`] for an example that runs.
//!
//! ## Guards and extractors
//!
//! [`RequireAuthLayer`] guards any Tower service: browsers without a session are redirected to
//! login with the current path as `returnTo`, API clients (no `text/html` in `Accept`) get 401
//! JSON. With the `axum` feature, [`User`], `Option<User>`, [`Session`] and [`AccessToken`] are
//! extractors with the same behaviour.
//!
//! ## Errors
//!
//! Every failure is an [`AuthError`] with a stable [`code`](AuthError::code) and an HTTP
//! [`status`](AuthError::status): 400 for a bad callback or token, 401 for no session or a refused
//! refresh, 502 for a broken provider answer, 503 when the provider or the store is unreachable.
//! Responses are HTML for browsers and `{"error", "message"}` JSON for API clients, chosen by
//! `Accept`, never cached, and each is logged once (no token or secret in the line).
//!
//! ## What it checks
//! PKCE S256, fresh `state` and `nonce` per login, one transaction cookie per login (parallel
//! tabs work), `iss` on the callback (mix-up defence), the ID token's signature (JWKS refetched
//! once for an unknown `kid`), algorithm, `iss`, `aud`, `azp`, `exp`, `iat` and `nonce`; a new
//! session at every login; absolute and inactivity expiry checked on the server; `returnTo`
//! limited to same-origin paths. A tampered, truncated or foreign cookie is "logged out", never
//! an error.
//!
//! ## Writing your own routes
//! Every operation is a method of [`AuthClient`] taking the request's [`StoreContext`]; see
//! [`AuthClient::start_login`] and [`AuthClient::complete_login`].
//!
//! ## Features
//! - `axum`: the extractors [`User`] and [`Session`] (see the `axum` module).

#![deny(missing_docs, unreachable_pub, unsafe_code)]
#![warn(clippy::await_holding_lock)]

// The derive names paths as `::auth_layer::...`, which must resolve inside this crate too.
extern crate self as auth_layer;

mod auth_client;
#[cfg(feature = "axum")]
pub mod axum;
pub mod backend;
mod client;
mod config;
mod data;
mod error;
#[cfg(fuzzing)]
#[doc(hidden)]
pub mod fuzz_entry;
mod layer;
pub mod record;
mod return_to;
mod routes;
pub mod seal;
mod session;
pub mod store;

pub use auth_client::{
    AccessToken, AccessTokenOptions, AuthClient, AuthClientBuilder, LoginOptions, LoginResult, LogoutOptions,
};
pub use client::ProviderError;
pub use config::{AuthConfig, AuthConfigBuilder, Clock, ConfigError, CookieOptions, MIN_SECRET_LEN, TokenEndpointAuth};
pub use data::{StateData, TokenSet, TransactionData, User};
pub use error::AuthError;
pub use layer::{AuthBody, AuthLayer, AuthLayerBuilder, AuthService, RequireAuth, RequireAuthLayer, ResponseFuture};
pub use return_to::validate as validate_return_to;
pub use session::Session;
pub use store::StoreContext;

/// Derives a typed store record: see [`record`].
pub use auth_derive::Store;

#[doc(hidden)]
pub mod __private {
    pub use serde;
}

/// The `SameSite` attribute values, re-exported for [`CookieOptions`].
pub use cookie::SameSite;
