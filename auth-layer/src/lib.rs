//! # auth-layer
//!
//! ## How it is built (read this first)
//!
//! The crate is a stack. Each layer uses only the layers below it, never one above or beside
//! it (`tests/layout.rs` fails the build's tests otherwise), so any file can be read knowing
//! only what is under it:
//!
//! | layer | module | owns |
//! | --- | --- | --- |
//! | HTTP | `http` (private; its items are at the root) | [`AuthLayer`], [`AuthService`], [`ResponseFuture`], [`AuthBody`]; the auth routes; the lazy per-request [`Session`]; [`RequireAuthLayer`]; error pages and the one "redirect to login or 401" decision; `axum` extractors |
//! | test kits | `testing` (feature `testing`) | beside HTTP: `testing::TestSession` (a session minted through an [`AuthClient`], for an app's own tests); `check_backend`, `check_session_store`, `check_transaction_store`: every store contract's rules, run on a store of the app's own as on the built-in ones |
//! | client | `client` | [`AuthClient`]: login, callback, session reads with expiry and rolling renewal, access tokens and refresh, logout, back-channel logout; [`SharedState`]: what every process of a fleet must see alike (used logout tokens, the refresh lease) |
//! | relying party, stores | `oidc`, [`store`] | discovery, keys and every token check; the [`store::SessionStore`] and [`store::TransactionStore`] contracts and the cookie and server-side stores |
//! | session model | `model` | [`SessionData`], [`TransactionData`], [`User`], [`TokenSet`], the compact session codec |
//! | typed records | [`record`] | the [`record::Store`] trait (derived) and [`record::TypedStore`]: generic, it names no auth type |
//! | backends | [`backend`] | [`backend::Backend`]: bytes by key with a TTL and index tags; moka, Redis, PostgreSQL |
//! | foundations | `config`, `endpoint`, `seal`, `return_to`, `error` | [`AuthConfig`], the endpoint policy (where the provider's HTTP client may connect), sealing (XChaCha20-Poly1305, HKDF sub-keys), `returnTo` checks, every error type |
//!
//! One request: [`AuthService`] answers `/auth/*` itself through [`AuthClient`]; any other
//! request gets a [`Session`] handle in its extensions and goes on to the app. The handle reads
//! nothing until a handler asks, then reads once through the session store (a cookie opened,
//! or a backend read); on the way out, cookies the read or a refresh wants set are appended.
//!
//! ## Use
//!
//! The guide (`auth_layer::guide`, built with the `axum` and `testing` features, as on docs.rs) has a
//! chapter for each part; what follows is the short tour.
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
//! // AUTH_ISSUER, AUTH_CLIENT_ID, AUTH_CLIENT_SECRET, AUTH_SECRET, APP_BASE_URL (and AUTH_ROUTES)
//! let config = AuthConfig::from_env()?;
//! let auth = AuthLayer::from_config(config).await?;
//! let service = ServiceBuilder::new().layer(auth).service_fn(hello);
//! // serve `service` with hyper (see examples/hyper-server), or use axum (feature `axum`)
//! # let _ = service; Ok(()) }
//! ```
//!
//! With the `axum` feature, [`User`] and [`Session`] are extractors; see the `axum` module.
//!
//! ## Stores
//!
//! Sessions live in the encrypted cookie by default ([`store::CookieSessionStore`]: no server
//! state, revocation by logout markers). For server-side sessions, only an id in the cookie:
//!
//! ```no_run
//! # async fn run(config: auth_layer::AuthConfig) -> Result<(), auth_layer::AuthError> {
//! use auth_layer::{AuthClient, AuthLayer};
//! use auth_layer::store::ServerSessionStore;
//!
//! let store = ServerSessionStore::in_memory(&config); // or ServerSessionStore::new(backend, &config)
//! let layer = AuthLayer::new(AuthClient::builder(config).with_server_sessions(store).build().await?);
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
//! - `axum`: the extractors [`User`], `Option<User>`, [`Session`] and [`AccessToken`] (see the
//!   `axum` module).
//! - `redis`: `backend::RedisBackend` (standalone or cluster, TLS from the URL).
//! - `postgres`: `backend::PostgresBackend`.

#![deny(missing_docs, unreachable_pub, unsafe_code)]
#![warn(clippy::await_holding_lock)]
#![cfg_attr(docsrs, feature(doc_cfg))]

// The derive names paths as `::auth_layer::...`, which must resolve inside this crate too.
extern crate self as auth_layer;

// Listed in rustfmt's (alphabetical) order. The dependency order, in which a module uses only
// those below it, is top to bottom: http; client, testing; oidc, store; model; record; backend;
// config, endpoint, seal, return_to; error (tests/layout.rs checks it and says what each level owns).
#[cfg(test)]
#[allow(unsafe_code)]
mod alloc_count;
pub mod backend;
mod client;
mod config;
mod dpop;
mod egress;
mod endpoint;
mod error;
mod forwarded;
#[cfg(any(fuzzing, test))]
#[doc(hidden)]
pub mod fuzz_entry;
mod http;
mod model;
mod oidc;
pub mod record;
mod return_to;
mod seal;
pub mod store;
mod telemetry;
#[cfg(feature = "testing")]
#[cfg_attr(docsrs, doc(cfg(feature = "testing")))]
pub mod testing;

// The guide's examples use the axum extractors and the test kit: it is built with both.
#[cfg(all(feature = "axum", feature = "testing"))]
#[cfg_attr(docsrs, doc(cfg(all(feature = "axum", feature = "testing"))))]
pub mod guide;

pub use client::{
    AccessToken, AccessTokenOptions, AuthClient, AuthClientBuilder, Check, DEFAULT_MAX_SHARED_ENTRIES, LoginOptions,
    LoginResult, LogoutOptions, MAX_LOCATION_BYTES, READINESS_TIMEOUT, Readiness, SessionInfo, SharedState,
};
pub use config::{
    AuthConfig, AuthConfigBuilder, ClientAssertionAlg, Clock, ConfigError, CookieOptions, DEFAULT_LOGIN_QUERY_PARAMS,
    FAPI2_SIGNING_ALGS, ID_TOKEN_SIGNING_ALGS, LogoutStrategy, MIN_SECRET_LEN, ResponseMode, SameSite,
    TokenEndpointAuth,
};
pub use dpop::{DPOP_ALG, DpopKey, DpopKeyError};
pub use error::{AuthError, Cause, ProviderError, StoreError};
pub use forwarded::{PeerAddr, TrustedProxies};
#[cfg(feature = "axum")]
#[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
pub use http::axum;
pub use http::{
    AuthBody, AuthLayer, AuthService, RequireAuth, RequireAuthLayer, ResponseFuture, Session, TenantFuture,
    TenantLayer, TenantService, Tenants,
};
pub use model::{SessionData, TokenSet, TransactionData, User};
pub use return_to::validate as validate_return_to;
pub use store::StoreContext;
pub use telemetry::{METRICS, Metric, MetricKind, describe_metrics};

/// Derives [`record::Store`] for a struct: see [`record`]. The trait and its derive share the
/// name, as serde's do.
pub use auth_derive::Store;
pub use record::Store;

#[doc(hidden)]
pub mod __private {
    //! Not API: what the derive's generated code, and the project's own benches and tests, name.
    pub use serde;

    pub use crate::seal::Sealer;
}
