//! [`AuthService`]: routes auth paths to [`routes`](crate::routes), wraps everything else.

use std::task::{Context, Poll};

use http::header::COOKIE;
use http::{Request, Response};
use tower_service::Service;

use super::{AuthBody, ResponseFuture};
use crate::auth_client::AuthClient;
use crate::routes::{self, Route};
use crate::session::Session;

/// The service [`AuthLayer`](super::AuthLayer) produces.
#[derive(Clone, Debug)]
pub struct AuthService<S> {
    inner: S,
    client: AuthClient,
    profile_route: bool,
}

impl<S> AuthService<S> {
    pub(crate) fn new(inner: S, client: AuthClient, profile_route: bool) -> Self {
        Self { inner, client, profile_route }
    }
}

impl<S, B, ResBody> Service<Request<B>> for AuthService<S>
where
    S: Service<Request<B>, Response = Response<ResBody>>,
{
    type Response = Response<AuthBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let prefix = self.client.config().route_prefix();
        if let Some(route) = Route::matching(req.uri().path(), prefix, self.profile_route) {
            let (parts, _body) = req.into_parts();
            return ResponseFuture::route(Box::pin(routes::handle(self.client.clone(), route, parts)));
        }
        let cookies = req.headers().get_all(COOKIE).iter().cloned().collect();
        let session = Session::new(self.client.clone(), cookies);
        req.extensions_mut().insert(session.clone());
        ResponseFuture::inner(self.inner.call(req), session)
    }
}
