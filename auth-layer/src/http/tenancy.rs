//! Several providers behind one layer: [`TenantLayer`] puts a [`TenantService`] in front of the
//! single-provider [`AuthService`](super::AuthService)'s work. For each request it finds the
//! tenant's [`AuthClient`] in [`Tenants`] (waiting for the app's loader the first time a loaded
//! tenant is asked for), answers a request for no tenant itself, and sends a back-channel logout
//! to the tenant whose provider issued its token; everything else is served as one provider's
//! layer serves it.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use http::{HeaderMap, Request, Response, StatusCode};
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use super::response::error_response;
use super::routes::{self, Route};
use super::service::dispatch;
use super::tenants::{Resolved, Tenants};
use super::{AuthBody, ResponseFuture};
use crate::client::AuthClient;
use crate::config::ConfigError;

/// Mounts several providers' auth routes and sessions on a service: each request is served by
/// the client of its tenant (see [`Tenants`]); a request that matches none gets 400 unless a
/// fallback is set, and one whose tenant's loader failed gets 503.
///
/// ```no_run
/// # async fn run(acme: auth_layer::AuthClient) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
/// use auth_layer::{TenantLayer, Tenants};
/// use tower::ServiceBuilder;
/// # let app = tower::service_fn(|_req: http::Request<http_body_util::Empty<bytes::Bytes>>| async {
/// #     Ok::<_, std::convert::Infallible>(http::Response::new(http_body_util::Empty::<bytes::Bytes>::new()))
/// # });
/// let layer = TenantLayer::new(Tenants::new().tenant(acme, ["acme.example.com"])?)?;
/// let service = ServiceBuilder::new().layer(layer).service(app);
/// # let _ = service; Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct TenantLayer {
    tenants: Arc<Tenants>,
}

impl TenantLayer {
    /// A layer over `tenants`. Refused without tenants (configured, or a loader).
    pub fn new(tenants: Tenants) -> Result<Self, ConfigError> {
        if tenants.clients().is_empty() && !tenants.loads() {
            return Err(ConfigError::Missing("a tenant (Tenants::tenant or Tenants::load_with)"));
        }
        if tenants.trusts_nobody_with_host_header() {
            return Err(ConfigError::Invalid {
                name: "host_header",
                reason: "anyone can send it: name the proxies that set it (Tenants::trusted_proxies)".into(),
            });
        }
        Ok(Self { tenants: Arc::new(tenants) })
    }

    /// The tenants the layer serves.
    pub fn tenants(&self) -> &Tenants {
        &self.tenants
    }
}

impl<S> Layer<S> for TenantLayer {
    type Service = TenantService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        TenantService { inner, tenants: self.tenants.clone() }
    }
}

/// The service [`TenantLayer`] produces.
///
/// The inner service is `Clone` (as every axum router and most Tower services are): a request
/// whose tenant is still loading ([`Tenants::load_with`]) takes the readied service with it
/// and leaves a clone.
#[derive(Clone, Debug)]
pub struct TenantService<S> {
    inner: S,
    tenants: Arc<Tenants>,
}

impl<S, B, ResBody> Service<Request<B>> for TenantService<S>
where
    S: Service<Request<B>, Response = Response<ResBody>> + Clone,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Response = Response<AuthBody<ResBody>>;
    type Error = S::Error;
    type Future = TenantFuture<S, B>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let future = match self.tenants.resolve(req.headers(), req.uri(), req.extensions()) {
            Resolved::Client(client) => serve(&mut self.inner, &self.tenants, client, req),
            Resolved::Unknown => unknown_tenant(req.headers()),
            Resolved::Unavailable => tenant_unavailable(req.headers()),
            Resolved::Load(key) => {
                // The readied service goes with the request; this one keeps a clone.
                let clone = self.inner.clone();
                let inner = std::mem::replace(&mut self.inner, clone);
                let tenants = self.tenants.clone();
                let load = Box::pin(async move { tenants.load(key).await });
                let waiting = Waiting { inner, request: req, tenants: self.tenants.clone() };
                return TenantFuture { state: State::Load { future: load, waiting: Some(Box::new(waiting)) } };
            }
        };
        TenantFuture { state: State::Serve { future } }
    }
}

/// Serves `req` with its tenant's `client`; a back-channel logout with the client of the
/// tenant whose provider issued the token.
fn serve<S, B, ResBody>(
    inner: &mut S,
    tenants: &Arc<Tenants>,
    client: AuthClient,
    req: Request<B>,
) -> ResponseFuture<S, B>
where
    S: Service<Request<B>, Response = Response<ResBody>>,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let config = client.config();
    if Route::matching(req.uri().path(), config.route_prefix(), config.routes) != Some(Route::BackchannelLogout) {
        return dispatch(inner, client, req);
    }
    let (parts, body) = req.into_parts();
    let tenants = tenants.clone();
    ResponseFuture::route(Box::pin(async move {
        let body = routes::read_body(body).await;
        // The token's issuer picks the tenant: the one this request reached, else among the
        // configured ones. Its signature and claims are then checked by that tenant's client.
        let token = routes::logout_token(&parts.headers, &body);
        let client = match token.ok().and_then(|token| crate::oidc::unverified_issuer(&token)) {
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
        };
        routes::handle(client, Route::BackchannelLogout, parts, body, 0).await
    }))
}

/// 400 for a request that is for no tenant.
fn unknown_tenant<S: Service<Request<B>>, B>(headers: &HeaderMap) -> ResponseFuture<S, B> {
    tracing::warn!(host = ?headers.get(http::header::HOST), "request for no configured tenant; refused");
    let response = error_response(StatusCode::BAD_REQUEST, "unknown_tenant", "No app is served here.", headers);
    ResponseFuture::route(Box::pin(std::future::ready(response)))
}

/// 503 for a request whose tenant's load failed (now, or a moment ago).
fn tenant_unavailable<S: Service<Request<B>>, B>(headers: &HeaderMap) -> ResponseFuture<S, B> {
    let response = error_response(
        StatusCode::SERVICE_UNAVAILABLE,
        "temporarily_unavailable",
        "The sign-in service is temporarily unavailable. Please try again shortly.",
        headers,
    );
    ResponseFuture::route(Box::pin(std::future::ready(response)))
}

/// What the app's tenant loader answered.
type LoadFuture = Pin<Box<dyn Future<Output = Result<Option<AuthClient>, crate::error::Cause>> + Send>>;

/// A request waiting for its tenant to load, and the inner service (made ready) to call then.
struct Waiting<S, B> {
    inner: S,
    request: Request<B>,
    tenants: Arc<Tenants>,
}

pin_project! {
    /// The response future of [`TenantService`]: the tenant's loading, when it is not loaded
    /// yet, then its [`ResponseFuture`].
    pub struct TenantFuture<S, B>
    where
        S: Service<Request<B>>,
    {
        #[pin]
        state: State<S, B>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S, B>
    where
        S: Service<Request<B>>,
    {
        Load { future: LoadFuture, waiting: Option<Box<Waiting<S, B>>> },
        Serve { #[pin] future: ResponseFuture<S, B> },
    }
}

impl<S, B, ResBody> Future for TenantFuture<S, B>
where
    S: Service<Request<B>, Response = Response<ResBody>>,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Output = Result<Response<AuthBody<ResBody>>, S::Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        loop {
            let future = match self.as_mut().project().state.project() {
                StateProj::Serve { future } => return future.poll(cx),
                StateProj::Load { future, waiting } => {
                    let loaded = ready!(future.as_mut().poll(cx));
                    let Some(waiting) = waiting.take() else {
                        // Not reached: the state is replaced below as soon as it is taken.
                        return Poll::Pending;
                    };
                    let Waiting { mut inner, request, tenants } = *waiting;
                    match loaded {
                        Ok(Some(client)) => serve(&mut inner, &tenants, client, request),
                        Ok(None) => match tenants.or_fallback() {
                            Resolved::Client(client) => serve(&mut inner, &tenants, client, request),
                            _ => unknown_tenant(request.headers()),
                        },
                        Err(err) => {
                            tracing::error!(error = ?err.to_string(), "the tenant loader failed; 503");
                            tenant_unavailable(request.headers())
                        }
                    }
                }
            };
            self.as_mut().project().state.set(State::Serve { future });
        }
    }
}
