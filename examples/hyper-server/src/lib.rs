//! auth-layer on a plain hyper service: no axum anywhere.
//!
//! `/` says whether one is logged in, `/private` is guarded by [`RequireAuthLayer`], and the
//! layer answers `/auth/*`.

use std::convert::Infallible;

use auth_layer::{AuthBody, AuthLayer, AuthService, RequireAuthLayer, Session};
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use tower::util::BoxCloneSyncService;
use tower::{Layer, ServiceExt};

/// The body of the app's own responses.
pub type Body = BoxBody<Bytes, Infallible>;
/// The app's router, before the auth layer.
pub type Router = BoxCloneSyncService<Request<hyper::body::Incoming>, Response<Body>, Infallible>;

fn text(status: StatusCode, body: String) -> Response<Body> {
    let mut response = Response::new(Full::new(Bytes::from(body)).boxed());
    *response.status_mut() = status;
    response
}

async fn home(req: Request<hyper::body::Incoming>) -> Result<Response<Body>, Infallible> {
    let Some(session) = req.extensions().get::<Session>() else {
        return Ok(text(StatusCode::INTERNAL_SERVER_ERROR, "no auth layer".into()));
    };
    Ok(match session.user().await {
        Ok(Some(user)) => text(StatusCode::OK, format!("Logged in as {}", user.sub())),
        Ok(None) => text(StatusCode::OK, "Logged out".into()),
        Err(err) => text(err.status(), format!("Session unavailable: {}", err.code())),
    })
}

async fn private(req: Request<hyper::body::Incoming>) -> Result<Response<Body>, Infallible> {
    let sub = match req.extensions().get::<Session>() {
        Some(session) => session.user().await.ok().flatten().map(|u| u.sub().to_owned()),
        None => None,
    };
    Ok(text(StatusCode::OK, format!("private page of {}", sub.unwrap_or_default())))
}

/// The app as one service: the auth layer over a small router whose `/private` is guarded.
pub fn service(auth: AuthLayer) -> AuthService<Router> {
    let guarded = RequireAuthLayer::new().layer(tower::service_fn(private));
    let router = tower::service_fn(move |req: Request<hyper::body::Incoming>| {
        let guarded = guarded.clone();
        async move {
            match req.uri().path() {
                "/" => home(req).await,
                "/private" => guarded.oneshot(req).await.map(|r| r.map(|b: AuthBody<Body>| b.boxed())),
                _ => Ok(text(StatusCode::NOT_FOUND, "not found".into())),
            }
        }
    });
    auth.layer(BoxCloneSyncService::new(router))
}
