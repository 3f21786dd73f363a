//! [`RequireAuthLayer`]: a guard for protected routes. Browsers without a session are sent to
//! login (with the current path as `returnTo`); API clients get 401 JSON. A guard may also ask
//! for a stronger or more recent authentication (step-up, RFC 9470).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::{Request, Response};
use tower_layer::Layer;
use tower_service::Service;

use super::AuthBody;
use super::response::{misconfigured, redirect, refusal, wants_json};
use super::session::Session;
use crate::error::AuthError;

/// Guards the services it wraps: only requests with a session reach them. Put it inside an
/// [`AuthLayer`](super::AuthLayer).
///
/// With [`acr_values`](Self::acr_values) or [`max_age`](Self::max_age), the session must also
/// have been authenticated at one of those levels (its ID token's `acr`) or recently enough
/// (its `auth_time`): a browser is sent straight to the provider through a new login asking for
/// it, an API client gets 401 `insufficient_user_authentication` with a `WWW-Authenticate`
/// challenge (RFC 9470).
///
/// The guard's requirements are the app's code: they reach the provider whatever
/// `login_query_params` allows and over configured `acr_values`/`max_age`, and the callback
/// holds the login to them. A login that comes back still short (the provider could not do
/// multi-factor for this user, say) ends in 403 `insufficient_user_authentication` after that one
/// round, not in another redirect; the session from before stays.
///
/// ```
/// use std::time::Duration;
/// use auth_layer::RequireAuthLayer;
///
/// // Payments need a multi-factor login within the last 5 minutes.
/// let guard = RequireAuthLayer::new()
///     .acr_values(["http://schemas.openid.net/pape/policies/2007/06/multi-factor"])
///     .max_age(Duration::from_secs(300));
/// # let _ = guard;
/// ```
#[derive(Clone, Debug, Default)]
pub struct RequireAuthLayer {
    step_up: StepUp,
}

/// What a guard asks of a session's authentication beyond its existence.
#[derive(Clone, Debug, Default)]
struct StepUp {
    acr_values: Vec<String>,
    max_age: Option<u64>,
}

impl StepUp {
    /// `None` when `user`'s authentication meets these requirements at `now` (with `skew`), else
    /// the error naming them.
    fn missing(&self, user: &crate::model::User, now: u64, skew: u64) -> Option<AuthError> {
        let acr_ok =
            self.acr_values.is_empty() || user.acr().is_some_and(|acr| self.acr_values.iter().any(|a| a == acr));
        let fresh =
            self.max_age.is_none_or(|max| user.auth_time().is_some_and(|at| now.saturating_sub(at) <= max + skew));
        (!acr_ok || !fresh).then(|| AuthError::InsufficientAuthentication {
            acr_values: (!self.acr_values.is_empty()).then(|| self.acr_values.join(" ")),
            max_age: self.max_age,
        })
    }
}

impl RequireAuthLayer {
    /// The guard: a session is enough.
    pub fn new() -> Self {
        Self::default()
    }

    /// Requires an authentication at one of these context classes (the ID token's `acr`).
    pub fn acr_values<I, S>(mut self, values: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.step_up.acr_values = values.into_iter().map(Into::into).collect();
        self
    }

    /// Requires an authentication no older than `max_age` (the ID token's `auth_time`, with
    /// the configured clock tolerance).
    pub fn max_age(mut self, max_age: std::time::Duration) -> Self {
        self.step_up.max_age = Some(max_age.as_secs());
        self
    }
}

impl<S> Layer<S> for RequireAuthLayer {
    type Service = RequireAuth<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequireAuth { inner, step_up: self.step_up.clone() }
    }
}

/// The service [`RequireAuthLayer`] produces.
#[derive(Clone, Debug)]
pub struct RequireAuth<S> {
    inner: S,
    step_up: StepUp,
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
        let step_up = self.step_up.clone();
        Box::pin(async move {
            let Some(session) = req.extensions().get::<Session>().cloned() else {
                return Ok(misconfigured(req.headers()).map(AuthBody::own));
            };
            let config = session.client().config();
            let err = match session.user().await {
                Ok(Some(user)) => match step_up.missing(user, config.clock().now(), config.clock_skew.as_secs()) {
                    None => return Ok(inner.call(req).await?.map(AuthBody::inner)),
                    Some(_) if !wants_json(req.headers()) => {
                        return Ok(step_up_login(&session, &step_up, req.uri(), req.headers())
                            .await
                            .map(AuthBody::own));
                    }
                    Some(missing) => missing,
                },
                Ok(None) => AuthError::NotAuthenticated,
                Err(err) => err,
            };
            let prefix = session.client().config().route_prefix();
            Ok(refusal(&err, prefix, req.uri(), req.headers()).map(AuthBody::own))
        })
    }
}

/// Sends a browser whose session falls short of `step_up` straight to the provider, through a
/// login that asks for it (its transaction cookie set through the session's response cookies).
async fn step_up_login(
    session: &Session,
    step_up: &StepUp,
    uri: &http::Uri,
    headers: &http::HeaderMap,
) -> Response<http_body_util::Full<bytes::Bytes>> {
    let here = uri.path_and_query().map(|pq| pq.as_str()).unwrap_or("/");
    let here = if crate::return_to::validate(here).is_ok() { here } else { "/" };
    let need = crate::client::StepUp {
        acr_values: (!step_up.acr_values.is_empty()).then(|| step_up.acr_values.join(" ")),
        max_age: step_up.max_age,
    };
    match session.start_login(here, need).await {
        Ok(url) => redirect(url.as_str()),
        Err(err) => err.to_response(headers),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::User;

    fn user(claims: serde_json::Value) -> User {
        User::from_id_token_claims(claims.as_object().unwrap().clone())
    }

    #[test]
    fn step_up_asks_for_the_acr_and_the_recency_a_session_lacks() {
        let none = StepUp::default();
        assert!(none.missing(&user(serde_json::json!({"sub": "u"})), 10_000, 60).is_none(), "a session is enough");
        let mfa = StepUp { acr_values: vec!["urn:mfa".into(), "urn:hw".into()], max_age: None };
        assert!(mfa.missing(&user(serde_json::json!({"sub": "u", "acr": "urn:hw"})), 10_000, 60).is_none());
        let missing = mfa.missing(&user(serde_json::json!({"sub": "u", "acr": "urn:pwd"})), 10_000, 60).unwrap();
        assert!(
            matches!(missing, AuthError::InsufficientAuthentication { acr_values: Some(ref v), max_age: None } if v == "urn:mfa urn:hw")
        );
        assert!(mfa.missing(&user(serde_json::json!({"sub": "u"})), 10_000, 60).is_some(), "no acr at all");
        let recent = StepUp { acr_values: vec![], max_age: Some(300) };
        assert!(recent.missing(&user(serde_json::json!({"sub": "u", "auth_time": 9_700})), 10_000, 60).is_none());
        assert!(
            recent.missing(&user(serde_json::json!({"sub": "u", "auth_time": 9_600})), 10_000, 60).is_some(),
            "too old"
        );
        assert!(recent.missing(&user(serde_json::json!({"sub": "u"})), 10_000, 60).is_some(), "no auth_time");
    }
}
