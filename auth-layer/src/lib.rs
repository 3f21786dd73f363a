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
