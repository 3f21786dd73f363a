//! [`AuthService`]: routes auth paths to [`routes`](crate::routes), wraps everything else.

use std::sync::Arc;
use std::task::{Context, Poll};

use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use tower_service::Service;

use super::future::Waiting;
use super::response::error_response;
use super::routes::{self, Route, RouteBody};
use super::session::{CookieHeaders, Session};
use super::tenants::{self, Resolved, Tenants};
use super::{AuthBody, ResponseFuture};
use crate::client::AuthClient;

/// The service [`AuthLayer`](super::AuthLayer) produces.
///
/// The inner service is `Clone` (as every axum router and most Tower services are): a request
/// whose tenant is still loading ([`Tenants::load_with`]) takes the readied service with it
/// and leaves a clone.
#[derive(Clone, Debug)]
pub struct AuthService<S> {
    inner: S,
    clients: Clients,
}

/// The client, or the tenants' clients, a layer serves requests with.
#[derive(Clone, Debug)]
pub(crate) enum Clients {
    One(AuthClient),
    Tenants(Arc<Tenants>),
}

impl<S> AuthService<S> {
    pub(crate) fn new(inner: S, clients: Clients) -> Self {
        Self { inner, clients }
    }
}

impl<S, B, ResBody> Service<Request<B>> for AuthService<S>
where
    S: Service<Request<B>, Response = Response<ResBody>> + Clone,
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
        match &self.clients {
            Clients::One(client) => dispatch(&mut self.inner, None, client.clone(), req),
            Clients::Tenants(tenants) => match tenants.resolve(req.headers(), req.uri()) {
                Resolved::Client(client) => dispatch(&mut self.inner, Some(tenants), client, req),
                Resolved::Unknown => unknown_tenant(req.headers()),
                Resolved::Unavailable => tenant_unavailable(req.headers()),
                Resolved::Load(key) => {
                    // The readied service goes with the request; this one keeps a clone.
                    let clone = self.inner.clone();
                    let inner = std::mem::replace(&mut self.inner, clone);
                    let loading = tenants.clone();
                    ResponseFuture::load(
                        Box::pin(async move { loading.load(key).await }),
                        Waiting { inner, request: req, tenants: tenants.clone() },
                    )
                }
            },
        }
    }
}

/// 400 for a request that is for no tenant.
pub(crate) fn unknown_tenant<S: Service<Request<B>>, B>(headers: &HeaderMap) -> ResponseFuture<S, B> {
    tracing::warn!(host = ?headers.get(http::header::HOST), "request for no configured tenant; refused");
    let response = error_response(StatusCode::BAD_REQUEST, "unknown_tenant", "No app is served here.", headers);
    ResponseFuture::route(Box::pin(std::future::ready(response)))
}

/// 503 for a request whose tenant's load failed (now, or a moment ago).
pub(crate) fn tenant_unavailable<S: Service<Request<B>>, B>(headers: &HeaderMap) -> ResponseFuture<S, B> {
    let response = error_response(
        StatusCode::SERVICE_UNAVAILABLE,
        "temporarily_unavailable",
        "The sign-in service is temporarily unavailable. Please try again shortly.",
        headers,
    );
    ResponseFuture::route(Box::pin(std::future::ready(response)))
}

/// Serves `req` with `client` (its tenant's, among `tenants` when there are several): one of
/// the auth routes, a silent login, or the inner service with a lazy [`Session`].
pub(crate) fn dispatch<S, B, ResBody>(
    inner: &mut S,
    tenants: Option<&Arc<Tenants>>,
    client: AuthClient,
    mut req: Request<B>,
) -> ResponseFuture<S, B>
where
    S: Service<Request<B>, Response = Response<ResBody>>,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let config = client.config();
    if let Some(route) = Route::matching(req.uri().path(), config.route_prefix(), config.routes) {
        let (parts, body) = req.into_parts();
        if route != Route::BackchannelLogout {
            drop(body);
            return ResponseFuture::route(Box::pin(routes::handle(client, route, parts, RouteBody::None)));
        }
        let tenants = tenants.cloned();
        return ResponseFuture::route(Box::pin(async move {
            let body = match Limited::new(body, routes::MAX_LOGOUT_BODY).collect().await {
                Ok(collected) => RouteBody::Read(collected.to_bytes()),
                Err(err) if err.is::<http_body_util::LengthLimitError>() => RouteBody::TooLarge,
                Err(_) => RouteBody::Failed,
            };
            // Several providers: the token's issuer picks the tenant, the one this request
            // reached first, else among the configured ones (its signature and claims are then
            // checked by that tenant's client).
            let client = match (&tenants, &body) {
                (Some(tenants), RouteBody::Read(bytes)) => match tenants::logout_token_issuer(bytes) {
                    Some(issuer) if issuer == client.issuer() => client,
                    Some(issuer) => match tenants.by_issuer(&issuer) {
                        Some(owner) => owner.clone(),
                        None => {
                            tracing::warn!(?issuer, "logout token of no configured tenant; refused");
                            return error_response(
                                StatusCode::BAD_REQUEST,
                                "invalid_request",
                                "The logout token's issuer is not a provider of this app.",
                                &parts.headers,
                            );
                        }
                    },
                    None => client,
                },
                _ => client,
            };
            routes::handle(client, route, parts, body).await
        }));
    }
    if req.method() == http::Method::GET
        && routes::silent_login_due(req.headers(), config)
        && let Some(here) = req.uri().path_and_query().map(|pq| pq.as_str().to_owned())
        && crate::return_to::validate(&here).is_ok()
    {
        let headers = req.headers().clone();
        return ResponseFuture::route(Box::pin(routes::silent_login(client, headers, here)));
    }
    let session = Session::new(client, CookieHeaders::of(req.headers()));
    req.extensions_mut().insert(session.clone());
    ResponseFuture::inner(inner.call(req), session)
}
