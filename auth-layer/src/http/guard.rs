//! [`RequireAuthLayer`]: a guard for protected routes. Browsers without a session are sent to
//! login (with the current path as `returnTo`); API clients get 401 JSON.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::{Request, Response};
use tower_layer::Layer;
use tower_service::Service;

use super::AuthBody;
use super::response::{misconfigured, refusal};
use super::session::Session;
use crate::error::AuthError;

/// Guards the services it wraps: only requests with a session reach them. Put it inside an
/// [`AuthLayer`](super::AuthLayer).
#[derive(Clone, Debug, Default)]
pub struct RequireAuthLayer {
    _private: (),
}

impl RequireAuthLayer {
    /// The guard.
    pub fn new() -> Self {
        Self::default()
    }
}

impl<S> Layer<S> for RequireAuthLayer {
    type Service = RequireAuth<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequireAuth { inner }
    }
}

/// The service [`RequireAuthLayer`] produces.
#[derive(Clone, Debug)]
pub struct RequireAuth<S> {
    inner: S,
}

impl<S, B, ResBody> Service<Request<B>> for RequireAuth<S>
where
    S: Service<Request<B>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send,
    B: Send + 'static,
{
    type Response = Response<AuthBody<ResBody>>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        Box::pin(async move {
            let Some(session) = req.extensions().get::<Session>().cloned() else {
                return Ok(misconfigured(req.headers()).map(AuthBody::own));
            };
            let err = match session.user().await {
                Ok(Some(_)) => return Ok(inner.call(req).await?.map(AuthBody::inner)),
                Ok(None) => AuthError::NotAuthenticated,
                Err(err) => err,
            };
            let prefix = session.client().config().route_prefix();
            Ok(refusal(&err, prefix, req.uri(), req.headers()).map(AuthBody::own))
        })
    }
}
