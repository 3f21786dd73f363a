//! [`AuthService`]: routes auth paths to [`routes`](crate::routes), wraps everything else.

use std::task::{Context, Poll};

use http::{Request, Response};
use http_body_util::{BodyExt, Limited};
use tower_service::Service;

use super::routes::{self, Route, RouteBody};
use super::session::{CookieHeaders, Session};
use super::{AuthBody, ResponseFuture};
use crate::client::AuthClient;

/// The service [`AuthLayer`](super::AuthLayer) produces.
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
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let config = self.client.config();
        if let Some(route) = Route::matching(req.uri().path(), config.route_prefix(), config.routes) {
            let (parts, body) = req.into_parts();
            let client = self.client.clone();
            if route != Route::BackchannelLogout {
                drop(body);
                return ResponseFuture::route(Box::pin(routes::handle(client, route, parts, RouteBody::None)));
            }
            return ResponseFuture::route(Box::pin(async move {
                let body = match Limited::new(body, routes::MAX_LOGOUT_BODY).collect().await {
                    Ok(collected) => RouteBody::Read(collected.to_bytes()),
                    Err(err) if err.is::<http_body_util::LengthLimitError>() => RouteBody::TooLarge,
                    Err(_) => RouteBody::Failed,
                };
                routes::handle(client, route, parts, body).await
            }));
        }
        if req.method() == http::Method::GET
            && routes::silent_login_due(req.headers(), config)
            && let Some(here) = req.uri().path_and_query().map(|pq| pq.as_str().to_owned())
            && crate::return_to::validate(&here).is_ok()
        {
            let (client, headers) = (self.client.clone(), req.headers().clone());
            return ResponseFuture::route(Box::pin(routes::silent_login(client, headers, here)));
        }
        let session = Session::new(self.client.clone(), CookieHeaders::of(req.headers()));
        req.extensions_mut().insert(session.clone());
        ResponseFuture::inner(self.inner.call(req), session)
    }
}
