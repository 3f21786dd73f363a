//! The per-request [`Session`] handle the layer puts in every request's extensions. It is lazy:
//! nothing is decrypted or fetched until a handler asks, and then only once per request.

use std::sync::{Arc, Mutex};

use http::header::COOKIE;
use http::{HeaderMap, HeaderValue};
use tokio::sync::OnceCell;

use crate::client::{AccessToken, AccessTokenOptions, AuthClient};
use crate::error::AuthError;
use crate::model::{SessionData, User};
use crate::store::StoreContext;

/// The session of the current request.
///
/// Get it from the request's extensions (or, with the `axum` feature, as an extractor) and ask
/// for what you need:
///
/// ```no_run
/// # async fn handler(session: auth_layer::Session) -> Result<String, auth_layer::AuthError> {
/// match session.user().await? {
///     Some(user) => Ok(format!("hello {}", user.name().unwrap_or(user.sub()))),
///     None => Ok("hello stranger".into()),
/// }
/// # }
/// ```
#[derive(Clone)]
pub struct Session {
    inner: Arc<Inner>,
}

struct Inner {
    client: AuthClient,
    cookies: CookieHeaders,
    loaded: OnceCell<Option<Arc<SessionData>>>,
    /// Cookies the load wants set on the response (renewal, clearing an expired session).
    response: Mutex<Option<StoreContext>>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session").field("loaded", &self.inner.loaded.initialized()).finish_non_exhaustive()
    }
}

impl Session {
    pub(crate) fn new(client: AuthClient, cookies: CookieHeaders) -> Self {
        Self { inner: Arc::new(Inner { client, cookies, loaded: OnceCell::new(), response: Mutex::new(None) }) }
    }

    /// The session's data, if the request has a valid, unexpired session. Loaded on first use
    /// (see [`AuthClient::session`]: expiry checked, rolling renewal).
    pub async fn data(&self) -> Result<Option<&SessionData>, AuthError> {
        Ok(self.loaded().await?.as_deref())
    }

    /// The session as the store shares it, read once per request.
    async fn loaded(&self) -> Result<&Option<Arc<SessionData>>, AuthError> {
        self.inner.loaded.get_or_try_init(|| self.load()).await
    }

    /// The logged-in user, if any.
    pub async fn user(&self) -> Result<Option<&User>, AuthError> {
        Ok(self.data().await?.map(|s| &s.user))
    }

    /// An access token for this session, refreshed when due (see
    /// [`AuthClient::access_token`]); the refreshed session's cookies go on the response. The
    /// session is the one this request has read (once), not read again.
    pub async fn access_token(&self, options: AccessTokenOptions) -> Result<AccessToken, AuthError> {
        let session = self.loaded().await?.clone().ok_or(AuthError::NotAuthenticated)?;
        let mut ctx = StoreContext::from_cookie_headers(self.inner.cookies.as_slice());
        let result = self.inner.client.access_token_of(&mut ctx, session, options).await;
        self.keep_response_cookies(ctx);
        result
    }

    /// The client behind this session, for operations beyond reading it.
    pub fn client(&self) -> &AuthClient {
        &self.inner.client
    }

    async fn load(&self) -> Result<Option<Arc<SessionData>>, AuthError> {
        let mut ctx = StoreContext::from_cookie_headers(self.inner.cookies.as_slice());
        let session = self.inner.client.session(&mut ctx).await?;
        self.keep_response_cookies(ctx);
        Ok(session)
    }

    /// Adds the cookies `ctx` wants set to the response's, later ones replacing earlier ones of
    /// the same name (a refresh's session cookie wins over the renewal before it).
    fn keep_response_cookies(&self, ctx: StoreContext) {
        if !ctx.has_response_cookies() {
            return;
        }
        let mut response = self.inner.response.lock().unwrap_or_else(|e| e.into_inner());
        match response.as_mut() {
            Some(pending) => pending.absorb(ctx),
            None => *response = Some(ctx),
        }
    }

    /// The cookies this request's session wants set on the response, if any.
    pub(crate) fn take_response_cookies(&self) -> Option<StoreContext> {
        self.inner.response.lock().unwrap_or_else(|e| e.into_inner()).take()
    }
}

/// A request's `Cookie` headers, kept until the session is read. HTTP/1.1 sends at most one,
/// which is kept as it is; only HTTP/2's split headers take a `Vec`.
pub(crate) enum CookieHeaders {
    One(HeaderValue),
    Many(Vec<HeaderValue>),
}

impl CookieHeaders {
    /// The `Cookie` headers of `headers` (a `HeaderValue` clone shares the bytes hyper read).
    pub(crate) fn of(headers: &HeaderMap) -> Self {
        let mut values = headers.get_all(COOKIE).iter();
        match (values.next(), values.next()) {
            (Some(one), None) => Self::One(one.clone()),
            _ => Self::Many(headers.get_all(COOKIE).iter().cloned().collect()),
        }
    }

    fn as_slice(&self) -> &[HeaderValue] {
        match self {
            Self::One(value) => std::slice::from_ref(value),
            Self::Many(values) => values,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cookie_values(cookies: &CookieHeaders) -> Vec<Option<String>> {
        let ctx = StoreContext::from_cookie_headers(cookies.as_slice());
        ["a", "b", "c"].iter().map(|name| ctx.cookie(name).map(str::to_owned)).collect()
    }

    #[test]
    fn cookies_split_over_several_headers_are_all_read() {
        let mut headers = HeaderMap::new();
        assert!(CookieHeaders::of(&headers).as_slice().is_empty());
        headers.append(COOKIE, HeaderValue::from_static("a=1; b=2"));
        let one = CookieHeaders::of(&headers);
        assert!(matches!(one, CookieHeaders::One(_)), "one header is kept without a Vec");
        assert_eq!(cookie_values(&one), [Some("1".into()), Some("2".into()), None]);
        headers.append(COOKIE, HeaderValue::from_static("c=3"));
        let split = CookieHeaders::of(&headers);
        assert_eq!(split.as_slice().len(), 2);
        assert_eq!(cookie_values(&split), [Some("1".into()), Some("2".into()), Some("3".into())]);
    }
}
