//! axum extractors (feature `axum`): [`Session`], [`User`] and [`AccessToken`].
//!
//! `User` guards a handler: a browser without a session is redirected to login with the
//! current path as `returnTo`, an API client gets 401 JSON. `Option<User>` never refuses.
//!
//! ```no_run
//! use auth_layer::User;
//! use axum::{Router, routing::get};
//!
//! async fn private(user: User) -> String {
//!     format!("hello {}", user.name().unwrap_or(user.sub()))
//! }
//! async fn home(user: Option<User>) -> &'static str {
//!     if user.is_some() { "welcome back" } else { "please log in" }
//! }
//! # async fn run() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//! let app: Router = Router::new()
//!     .route("/", get(home))
//!     .route("/private", get(private))
//!     .layer(auth_layer::AuthLayer::from_env().await?);
//! # Ok(()) }
//! ```

use axum::extract::{FromRequestParts, OptionalFromRequestParts};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::request::Parts;
use http_body_util::Full;

use super::response::{misconfigured, refusal};
use super::session::Session;
use crate::client::{AccessToken, AccessTokenOptions};
use crate::error::AuthError;
use crate::model::User;

/// Why an extractor refused: a redirect to login, a 401, or the error that prevented reading
/// the session (a 503 when the store is down).
#[derive(Debug)]
pub struct AuthRejection(Box<http::Response<Full<Bytes>>>);

impl IntoResponse for AuthRejection {
    fn into_response(self) -> Response {
        (*self.0).map(axum::body::Body::new)
    }
}

fn session_of(parts: &Parts) -> Result<Session, AuthRejection> {
    parts.extensions.get::<Session>().cloned().ok_or_else(|| AuthRejection(Box::new(misconfigured(&parts.headers))))
}

fn refused(session: &Session, parts: &Parts, err: &AuthError) -> AuthRejection {
    AuthRejection(Box::new(refusal(err, session.client().config().route_prefix(), &parts.uri, &parts.headers)))
}

impl<S: Send + Sync> FromRequestParts<S> for Session {
    type Rejection = AuthRejection;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        session_of(parts)
    }
}

impl<S: Send + Sync> OptionalFromRequestParts<S> for User {
    type Rejection = AuthRejection;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Option<Self>, Self::Rejection> {
        let session = session_of(parts)?;
        session.user().await.map(Option::<&User>::cloned).map_err(|err| refused(&session, parts, &err))
    }
}

impl<S: Send + Sync> FromRequestParts<S> for User {
    type Rejection = AuthRejection;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let session = session_of(parts)?;
        match session.user().await {
            Ok(Some(user)) => Ok(user.clone()),
            Ok(None) => Err(refused(&session, parts, &AuthError::NotAuthenticated)),
            Err(err) => Err(refused(&session, parts, &err)),
        }
    }
}

/// An access token for the logged-in user (the configured audience), refreshed when due.
/// Refuses like [`User`] when logged out; `401` when the refresh token is refused (the session
/// ends), `503` when the provider is unreachable (the session stays).
impl<S: Send + Sync> FromRequestParts<S> for AccessToken {
    type Rejection = AuthRejection;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let session = session_of(parts)?;
        session.access_token(AccessTokenOptions::default()).await.map_err(|err| refused(&session, parts, &err))
    }
}
