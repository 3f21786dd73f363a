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
//!
//! [`AuthLayer::around`] puts the layer around the whole router instead, one service in front
//! of it: the same routes, sessions and extractors, for less work per request than
//! `Router::layer`, which wraps every route in the layer and clones it for each request (see
//! BENCHMARKS.md, "The layer around the router").

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use axum::extract::{FromRequestParts, OptionalFromRequestParts, Request};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::request::Parts;
use http_body_util::Full;
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use super::response::{misconfigured, refusal};
use super::session::Session;
use super::{AuthLayer, AuthService, ResponseFuture};
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

impl AuthLayer {
    /// This layer in front of the whole `router`, as one service that
    /// [`axum::serve`](https://docs.rs/axum/0.8/axum/fn.serve.html) takes (through
    /// [`AuthRouter::into_make_service`]). It serves what `router.layer(auth)` serves; a request
    /// goes through the layer once, not through a copy of it that `Router::layer` puts on every
    /// route.
    ///
    /// ```no_run
    /// use auth_layer::User;
    /// use axum::{Router, routing::get};
    ///
    /// async fn private(user: User) -> String {
    ///     format!("hello {}", user.sub())
    /// }
    /// # async fn run() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    /// let app = Router::new().route("/private", get(private));
    /// let auth = auth_layer::AuthLayer::from_env().await?;
    /// let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
    /// axum::serve(listener, auth.around(app).into_make_service()).await?;
    /// # Ok(()) }
    /// ```
    pub fn around(&self, router: axum::Router) -> AuthRouter {
        AuthRouter { inner: self.layer(router) }
    }
}

/// An axum [`Router`](axum::Router) behind the layer, made by [`AuthLayer::around`]: a
/// `Service` of axum's requests and responses, as `axum::serve` wants.
///
/// ```no_run
/// use auth_layer::AuthLayer;
/// use axum::{Router, routing::get};
///
/// # async fn run(auth: AuthLayer) -> Result<(), Box<dyn std::error::Error>> {
/// let app = Router::new().route("/", get(|| async { "home" }));
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
/// axum::serve(listener, auth.around(app).into_make_service()).await?;
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct AuthRouter {
    inner: AuthService<axum::Router>,
}

impl AuthRouter {
    /// What `axum::serve` takes: this service for every connection.
    pub fn into_make_service(self) -> axum::routing::IntoMakeService<Self> {
        axum::ServiceExt::<Request>::into_make_service(self)
    }
}

impl Service<Request> for AuthRouter {
    type Response = Response;
    type Error = Infallible;
    type Future = AuthRouterFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Service::<Request>::poll_ready(&mut self.inner, cx)
    }

    fn call(&mut self, req: Request) -> Self::Future {
        AuthRouterFuture { inner: self.inner.call(req) }
    }
}

pin_project! {
    /// The response future of [`AuthRouter`].
    pub struct AuthRouterFuture {
        #[pin]
        inner: ResponseFuture<axum::Router, axum::body::Body>,
    }
}

impl Future for AuthRouterFuture {
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let response = ready!(self.project().inner.poll(cx))?;
        Poll::Ready(Ok(response.map(axum::body::Body::new)))
    }
}
