//! [`AuthService`]: routes auth paths to [`routes`](super::routes), wraps everything else.

use std::task::{Context, Poll};

use http::{Request, Response};
use tower_service::Service;

use super::routes::{self, Route};
use super::session::{CookieHeaders, Session};
use super::{AuthBody, ResponseFuture};
use crate::client::AuthClient;

/// The service [`AuthLayer`](super::AuthLayer) produces: one provider's routes and sessions.
/// Several providers in one app put a [`TenantService`](super::TenantService) in front, which
/// picks the client for each request.
#[derive(Clone, Debug)]
pub struct AuthService<S> {
    inner: S,
    client: AuthClient,
}

impl<S> AuthService<S> {
    pub(crate) fn new(inner: S, client: AuthClient) -> Self {
        Self { inner, client }
    }
}

impl<S, B, ResBody> Service<Request<B>> for AuthService<S>
where
    S: Service<Request<B>, Response = Response<ResBody>>,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Response = Response<AuthBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S, B>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        dispatch(&mut self.inner, self.client.clone(), req)
    }
}

/// Serves `req` with `client`: one of the auth routes, a silent login, or the inner service
/// (made ready) with a lazy [`Session`].
pub(crate) fn dispatch<S, B, ResBody>(inner: &mut S, client: AuthClient, mut req: Request<B>) -> ResponseFuture<S, B>
where
    S: Service<Request<B>, Response = Response<ResBody>>,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let config = client.config();
    let Some(origin) = config.origin_of(req.uri(), req.headers(), req.extensions()) else {
        let response = routes::unknown_host(req.headers());
        return ResponseFuture::route(Box::pin(std::future::ready(response)));
    };
    if let Some(route) = Route::matching(req.uri().path(), config.route_prefix(), config.routes) {
        let (parts, body) = req.into_parts();
        if !route.reads_body(&parts.method, config) {
            drop(body);
            let answer = routes::handle(client, route, parts, routes::RouteBody::None, origin);
            return ResponseFuture::route(Box::pin(answer));
        }
        return ResponseFuture::route(Box::pin(async move {
            let body = routes::read_body(body).await;
            routes::handle(client, route, parts, body, origin).await
        }));
    }
    if req.method() == http::Method::GET
        && routes::silent_login_due(req.headers(), config)
        && let Some(here) = req.uri().path_and_query().map(|pq| pq.as_str().to_owned())
        && crate::return_to::validate(&here).is_ok()
    {
        let headers = req.headers().clone();
        return ResponseFuture::route(Box::pin(routes::silent_login(client, headers, here, origin)));
    }
    let session = Session::new(client, CookieHeaders::of(req.headers()));
    req.extensions_mut().insert(session.clone());
    ResponseFuture::inner(inner.call(req), session)
}
