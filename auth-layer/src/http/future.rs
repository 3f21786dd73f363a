//! The response future of [`AuthService`](super::AuthService).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use pin_project_lite::pin_project;
use tower_service::Service;

use super::AuthBody;
use super::session::Session;

pub(crate) type RouteFuture = Pin<Box<dyn Future<Output = Response<Full<Bytes>>> + Send>>;

pin_project! {
    /// Either the inner service's response (with any cookies the session asked for), or the
    /// response of one of the layer's routes.
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
    }
}

impl<S: Service<Request<B>>, B> ResponseFuture<S, B> {
    pub(crate) fn inner(future: S::Future, session: Session) -> Self {
        Self { kind: Kind::Inner { future, session } }
    }

    pub(crate) fn route(future: RouteFuture) -> Self {
        Self { kind: Kind::Route { future } }
    }
}

impl<S, B, ResBody> Future for ResponseFuture<S, B>
where
    S: Service<Request<B>, Response = Response<ResBody>>,
{
    type Output = Result<Response<AuthBody<ResBody>>, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Inner { future, session } => {
                let response = ready!(future.poll(cx))?;
                let mut response = response.map(AuthBody::inner);
                if let Some(cookies) = session.take_response_cookies() {
                    cookies.apply(response.headers_mut());
                }
                Poll::Ready(Ok(response))
            }
            KindProj::Route { future } => future.as_mut().poll(cx).map(|r| Ok(r.map(AuthBody::own))),
        }
    }
}
