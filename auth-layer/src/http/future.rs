//! The response future of [`AuthService`](super::AuthService).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use pin_project_lite::pin_project;
use tower_service::Service;

use super::AuthBody;
use super::service::{dispatch, tenant_unavailable, unknown_tenant};
use super::session::Session;
use super::tenants::{Resolved, Tenants};
use crate::client::AuthClient;

pub(crate) type RouteFuture = Pin<Box<dyn Future<Output = Response<Full<Bytes>>> + Send>>;

/// What the app's tenant loader answered.
pub(crate) type LoadFuture = Pin<Box<dyn Future<Output = Result<Option<AuthClient>, crate::error::Cause>> + Send>>;

pin_project! {
    /// Either the inner service's response (with any cookies the session asked for), or the
    /// response of one of the layer's routes; first, for a tenant not loaded yet, its loading.
    #[project = ResponseFutureProj]
    pub struct ResponseFuture<S, B>
    where
        S: Service<Request<B>>,
    {
        #[pin]
        kind: Kind<S, B>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<S, B>
    where
        S: Service<Request<B>>,
    {
        Inner { #[pin] future: S::Future, session: Session },
        Route { future: RouteFuture },
        Load { future: LoadFuture, waiting: Option<Box<Waiting<S, B>>> },
    }
}

/// A request waiting for its tenant to load, and the inner service (made ready) to call then.
pub(crate) struct Waiting<S, B> {
    pub(crate) inner: S,
    pub(crate) request: Request<B>,
    pub(crate) tenants: Arc<Tenants>,
}

impl<S: Service<Request<B>>, B> ResponseFuture<S, B> {
    pub(crate) fn inner(future: S::Future, session: Session) -> Self {
        Self { kind: Kind::Inner { future, session } }
    }

    pub(crate) fn route(future: RouteFuture) -> Self {
        Self { kind: Kind::Route { future } }
    }

    pub(crate) fn load(future: LoadFuture, waiting: Waiting<S, B>) -> Self {
        Self { kind: Kind::Load { future, waiting: Some(Box::new(waiting)) } }
    }
}

impl<S, B, ResBody> Future for ResponseFuture<S, B>
where
    S: Service<Request<B>, Response = Response<ResBody>>,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Output = Result<Response<AuthBody<ResBody>>, S::Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        loop {
            let next = match self.as_mut().project().kind.project() {
                KindProj::Inner { future, session } => {
                    let response = ready!(future.poll(cx))?;
                    let mut response = response.map(AuthBody::inner);
                    if let Some(cookies) = session.take_response_cookies() {
                        cookies.apply(response.headers_mut());
                    }
                    return Poll::Ready(Ok(response));
                }
                KindProj::Route { future } => return future.as_mut().poll(cx).map(|r| Ok(r.map(AuthBody::own))),
                KindProj::Load { future, waiting } => {
                    let loaded = ready!(future.as_mut().poll(cx));
                    let Some(waiting) = waiting.take() else {
                        // Not reached: the state is replaced below as soon as it is taken.
                        return Poll::Pending;
                    };
                    let Waiting { mut inner, request, tenants } = *waiting;
                    match loaded {
                        Ok(Some(client)) => dispatch(&mut inner, Some(&tenants), client, request),
                        Ok(None) => match tenants.or_fallback() {
                            Resolved::Client(client) => dispatch(&mut inner, Some(&tenants), client, request),
                            _ => unknown_tenant(request.headers()),
                        },
                        Err(err) => {
                            tracing::error!(error = ?err.to_string(), "the tenant loader failed; 503");
                            tenant_unavailable(request.headers())
                        }
                    }
                }
            };
            self.set(next);
        }
    }
}
