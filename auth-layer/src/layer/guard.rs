//! [`RequireAuthLayer`]: a guard for protected routes. Browsers without a session are sent to
//! login (with the current path as `returnTo`); API clients get 401 JSON.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode, Uri};
use http_body_util::Full;
use tower_layer::Layer;
use tower_service::Service;

use super::AuthBody;
use crate::error::{AuthError, error_response, wants_json};
use crate::session::Session;

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
                tracing::error!("RequireAuthLayer is not inside an AuthLayer: no session to check");
                let response = error_response(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "misconfigured",
                    "authentication is not set up",
                    req.headers(),
                );
                return Ok(response.map(AuthBody::own));
            };
            match session.user().await {
                Ok(Some(_)) => Ok(inner.call(req).await?.map(AuthBody::inner)),
                Ok(None) => {
                    Ok(guard_deny(session.client().config().route_prefix(), req.uri(), req.headers())
                        .map(AuthBody::own))
                }
                Err(err) => Ok(err.into_response(req.headers()).map(AuthBody::own)),
            }
        })
    }
}

/// The answer to a request without a session: a redirect to login for browsers, 401 otherwise.
pub(crate) fn guard_deny(prefix: &str, uri: &Uri, headers: &HeaderMap) -> Response<Full<Bytes>> {
    if wants_json(headers) {
        return AuthError::NotAuthenticated.into_response(headers);
    }
    let here = uri.path_and_query().map(|pq| pq.as_str()).unwrap_or("/");
    let return_to: String = url::form_urlencoded::byte_serialize(here.as_bytes()).collect();
    crate::routes::redirect(&format!("{prefix}/login?returnTo={return_to}"))
}
