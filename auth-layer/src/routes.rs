//! The auth routes: login, callback, logout and profile, each a small async function from the
//! request's parts to a response, over [`AuthClient`].

use bytes::Bytes;
use http::header::{ALLOW, CACHE_CONTROL, CONTENT_TYPE, LOCATION};
use http::request::Parts;
use http::{HeaderValue, Method, Response, StatusCode};
use http_body_util::Full;

use crate::auth_client::{AuthClient, LoginOptions, LogoutOptions};
use crate::error::{AuthError, error_response};
use crate::store::StoreContext;

/// The longest query string the login and logout routes read.
const MAX_QUERY: usize = 4 * 1024;

/// A route the layer answers itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Route {
    Login,
    Callback,
    Logout,
    Profile,
}

impl Route {
    /// The route `path` names under `prefix`, if any.
    pub(crate) fn matching(path: &str, prefix: &str, profile: bool) -> Option<Self> {
        match path.strip_prefix(prefix)? {
            "/login" => Some(Self::Login),
            "/callback" => Some(Self::Callback),
            "/logout" => Some(Self::Logout),
            "/profile" if profile => Some(Self::Profile),
            _ => None,
        }
    }
}

/// Answers one auth route.
pub(crate) async fn handle(client: AuthClient, route: Route, parts: Parts) -> Response<Full<Bytes>> {
    if parts.method != Method::GET && parts.method != Method::HEAD {
        let mut response = error_response(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "this route answers GET only",
            &parts.headers,
        );
        response.headers_mut().insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
        tracing::warn!(method = %parts.method, path = parts.uri.path(), "auth route called with a wrong method");
        return response;
    }
    let query = parts.uri.query().unwrap_or("");
    let mut ctx = StoreContext::from_headers(&parts.headers);
    let span = tracing::info_span!("auth_route", route = ?route);
    let _enter = span.enter();
    let result = match route {
        Route::Login => login(&client, &mut ctx, query).await,
        Route::Callback => callback(&client, &mut ctx, query).await,
        Route::Logout => logout(&client, &mut ctx, query).await,
        Route::Profile => profile(&client, &mut ctx).await,
    };
    let mut response = result.unwrap_or_else(|err| err.into_response(&parts.headers));
    ctx.apply(response.headers_mut());
    response
}

async fn login(client: &AuthClient, ctx: &mut StoreContext, query: &str) -> Result<Response<Full<Bytes>>, AuthError> {
    let return_to = query_param(query, "returnTo")?;
    let url = client.start_login(ctx, LoginOptions { return_to, ..LoginOptions::default() }).await?;
    Ok(redirect(url.as_str()))
}

async fn callback(
    client: &AuthClient,
    ctx: &mut StoreContext,
    query: &str,
) -> Result<Response<Full<Bytes>>, AuthError> {
    let result = client.complete_login(ctx, query).await?;
    Ok(redirect(client.config().app_url(&result.return_to).as_str()))
}

async fn logout(client: &AuthClient, ctx: &mut StoreContext, query: &str) -> Result<Response<Full<Bytes>>, AuthError> {
    let return_to = query_param(query, "returnTo")?;
    let url = client.logout(ctx, LogoutOptions { return_to }).await?;
    Ok(redirect(url.as_str()))
}

async fn profile(client: &AuthClient, ctx: &mut StoreContext) -> Result<Response<Full<Bytes>>, AuthError> {
    let user = client.get_user(ctx).await?.ok_or(AuthError::NotAuthenticated)?;
    let body = serde_json::to_vec(&user).map_err(|e| AuthError::InvalidRequest(e.to_string()))?;
    let mut response = Response::new(Full::new(Bytes::from(body)));
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response.headers_mut().insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

/// The single value of `name` in `query`; a repeated parameter is refused.
fn query_param(query: &str, name: &str) -> Result<Option<String>, AuthError> {
    if query.len() > MAX_QUERY {
        return Err(AuthError::InvalidRequest("the query string is too long".into()));
    }
    let mut found = None;
    for (key, value) in url::form_urlencoded::parse(query.as_bytes()) {
        if key == name {
            if found.is_some() {
                return Err(AuthError::InvalidRequest(format!("`{name}` is repeated")));
            }
            found = Some(value.into_owned());
        }
    }
    Ok(found)
}

/// A `302 Found` to `location`, never cached.
pub(crate) fn redirect(location: &str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = StatusCode::FOUND;
    match HeaderValue::try_from(location) {
        Ok(value) => {
            response.headers_mut().insert(LOCATION, value);
        }
        Err(_) => {
            tracing::error!("redirect target is not a valid header value");
            *response.status_mut() = StatusCode::BAD_REQUEST;
        }
    }
    response.headers_mut().insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_exact_paths_under_the_prefix_are_routes() {
        assert_eq!(Route::matching("/auth/login", "/auth", false), Some(Route::Login));
        assert_eq!(Route::matching("/auth/callback", "/auth", false), Some(Route::Callback));
        assert_eq!(Route::matching("/auth/profile", "/auth", false), None);
        assert_eq!(Route::matching("/auth/profile", "/auth", true), Some(Route::Profile));
        assert_eq!(Route::matching("/auth/login/x", "/auth", true), None);
        assert_eq!(Route::matching("/authlogin", "/auth", true), None);
        assert_eq!(Route::matching("/private", "/auth", true), None);
    }

    #[test]
    fn repeated_return_to_is_refused() {
        assert!(query_param("returnTo=/a&returnTo=//evil", "returnTo").is_err());
        assert_eq!(query_param("returnTo=%2Fa", "returnTo").unwrap().as_deref(), Some("/a"));
    }
}
