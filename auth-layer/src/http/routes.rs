//! The auth routes: login, callback, logout and profile, each a small async function from the
//! request's parts to a response, over [`AuthClient`].

use bytes::Bytes;
use http::header::{ALLOW, CACHE_CONTROL, CONTENT_TYPE};
use http::request::Parts;
use http::{HeaderValue, Method, Response, StatusCode};
use http_body_util::Full;
use tracing::Instrument;

use super::response::{error_response, redirect};
use crate::client::{AccessTokenOptions, AuthClient, LoginOptions, LogoutOptions};
use crate::config::OptionalRoutes;
use crate::error::{AuthError, Chain};
use crate::store::StoreContext;

/// The longest query string the login and logout routes read.
const MAX_QUERY: usize = 4 * 1024;

/// The largest back-channel logout request body read.
pub(crate) const MAX_LOGOUT_BODY: usize = 16 * 1024;

/// A route the layer answers itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Route {
    Login,
    Callback,
    Logout,
    Profile,
    AccessToken,
    BackchannelLogout,
}

impl Route {
    /// The route `path` names under `prefix`, if any.
    pub(crate) fn matching(path: &str, prefix: &str, optional: OptionalRoutes) -> Option<Self> {
        match path.strip_prefix(prefix)? {
            "/login" => Some(Self::Login),
            "/callback" => Some(Self::Callback),
            "/logout" => Some(Self::Logout),
            "/profile" if optional.profile => Some(Self::Profile),
            "/access-token" if optional.access_token => Some(Self::AccessToken),
            "/backchannel-logout" if optional.backchannel_logout => Some(Self::BackchannelLogout),
            _ => None,
        }
    }

    fn allows(self, method: &Method) -> bool {
        match self {
            Self::BackchannelLogout => method == Method::POST,
            _ => method == Method::GET || method == Method::HEAD,
        }
    }
}

/// The request body of a route that reads one: its bytes, or why it could not be read.
pub(crate) enum RouteBody {
    None,
    Read(Bytes),
    TooLarge,
    Failed,
}

/// Answers one auth route, inside a span of its own: `.instrument` (not a span guard held over
/// `.await`) so that on a multi-threaded runtime no other request's events land in it.
pub(crate) async fn handle(client: AuthClient, route: Route, parts: Parts, body: RouteBody) -> Response<Full<Bytes>> {
    let span = tracing::info_span!("auth_route", route = ?route);
    answer(client, route, parts, body).instrument(span).await
}

async fn answer(client: AuthClient, route: Route, parts: Parts, body: RouteBody) -> Response<Full<Bytes>> {
    if !route.allows(&parts.method) {
        let allow = if route == Route::BackchannelLogout { "POST" } else { "GET, HEAD" };
        let mut response = error_response(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            &format!("this route answers {allow} only"),
            &parts.headers,
        );
        response.headers_mut().insert(ALLOW, HeaderValue::from_static(allow));
        tracing::warn!(method = %parts.method, path = parts.uri.path(), "auth route called with a wrong method");
        return response;
    }
    let query = parts.uri.query().unwrap_or("");
    let mut ctx = StoreContext::from_headers(&parts.headers);
    let result = match route {
        Route::Login => login(&client, &mut ctx, query).await,
        Route::Callback => callback(&client, &mut ctx, query).await,
        Route::Logout => logout(&client, &mut ctx, query).await,
        Route::Profile => profile(&client, &mut ctx).await,
        Route::AccessToken => access_token(&client, &mut ctx).await,
        // Answered in the back-channel format, without the session cookies of a browser.
        Route::BackchannelLogout => return backchannel_logout(&client, &parts, body).await,
    };
    let mut response = result.unwrap_or_else(|err| err.to_response(&parts.headers));
    ctx.apply(response.headers_mut());
    tracing::info!(status = response.status().as_u16(), "auth route answered");
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
    let url = client.logout(ctx, LogoutOptions { return_to, ..LogoutOptions::default() }).await?;
    Ok(redirect(url.as_str()))
}

async fn profile(client: &AuthClient, ctx: &mut StoreContext) -> Result<Response<Full<Bytes>>, AuthError> {
    let user = client.user(ctx).await?.ok_or(AuthError::NotAuthenticated)?;
    let body = serde_json::to_vec(&user).map_err(|e| AuthError::InvalidRequest(e.to_string()))?;
    let mut response = Response::new(Full::new(Bytes::from(body)));
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response.headers_mut().insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

async fn access_token(client: &AuthClient, ctx: &mut StoreContext) -> Result<Response<Full<Bytes>>, AuthError> {
    let token = client.access_token(ctx, AccessTokenOptions::default()).await?;
    let body = serde_json::to_vec(&token).map_err(|e| AuthError::InvalidRequest(e.to_string()))?;
    let mut response = Response::new(Full::new(Bytes::from(body)));
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response.headers_mut().insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

/// `POST {prefix}/backchannel-logout`: `200` with `Cache-Control: no-store` once every session
/// the token names is gone, `400 {"error":"invalid_request",...}` for a bad request or token.
async fn backchannel_logout(client: &AuthClient, parts: &Parts, body: RouteBody) -> Response<Full<Bytes>> {
    let form = parts.headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|v| {
        v.split(';').next().is_some_and(|m| m.trim().eq_ignore_ascii_case("application/x-www-form-urlencoded"))
    });
    let token = match (form, body) {
        (false, _) => Err("the body must be application/x-www-form-urlencoded"),
        (true, RouteBody::TooLarge) => Err("the body is too large"),
        (true, RouteBody::None | RouteBody::Failed) => Err("the body could not be read"),
        (true, RouteBody::Read(bytes)) => {
            let tokens: Vec<String> = url::form_urlencoded::parse(&bytes)
                .filter(|(k, _)| k == "logout_token")
                .map(|(_, v)| v.into_owned())
                .collect();
            match tokens.as_slice() {
                [token] => Ok(token.clone()),
                [] => Err("logout_token is missing"),
                _ => Err("logout_token is repeated"),
            }
        }
    };
    let result = match token {
        Ok(token) => client.handle_backchannel_logout(&token).await,
        Err(why) => Err(AuthError::InvalidRequest(why.into())),
    };
    let (status, body) = match result {
        Ok(()) => (StatusCode::OK, Bytes::new()),
        Err(err) => {
            let status = if err.status().is_server_error() { err.status() } else { StatusCode::BAD_REQUEST };
            tracing::warn!(code = err.code(), error = %Chain(&err), "back-channel logout refused");
            let error = if status == StatusCode::BAD_REQUEST { "invalid_request" } else { "temporarily_unavailable" };
            let json = serde_json::json!({ "error": error, "error_description": err.to_string() });
            (status, Bytes::from(json.to_string()))
        }
    };
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = status;
    if status != StatusCode::OK {
        response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    }
    response.headers_mut().insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    tracing::info!(status = status.as_u16(), "auth route answered");
    response
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_exact_paths_under_the_prefix_are_routes() {
        let none = OptionalRoutes::default();
        let all = OptionalRoutes { profile: true, access_token: true, backchannel_logout: true };
        assert_eq!(Route::matching("/auth/login", "/auth", none), Some(Route::Login));
        assert_eq!(Route::matching("/auth/callback", "/auth", none), Some(Route::Callback));
        assert_eq!(Route::matching("/auth/profile", "/auth", none), None);
        assert_eq!(Route::matching("/auth/access-token", "/auth", none), None);
        assert_eq!(Route::matching("/auth/backchannel-logout", "/auth", none), None);
        assert_eq!(Route::matching("/auth/profile", "/auth", all), Some(Route::Profile));
        assert_eq!(Route::matching("/auth/access-token", "/auth", all), Some(Route::AccessToken));
        assert_eq!(Route::matching("/auth/backchannel-logout", "/auth", all), Some(Route::BackchannelLogout));
        assert_eq!(Route::matching("/auth/login/x", "/auth", all), None);
        assert_eq!(Route::matching("/authlogin", "/auth", all), None);
        assert_eq!(Route::matching("/private", "/auth", all), None);
    }

    #[test]
    fn repeated_return_to_is_refused() {
        assert!(query_param("returnTo=/a&returnTo=//evil", "returnTo").is_err());
        assert_eq!(query_param("returnTo=%2Fa", "returnTo").unwrap().as_deref(), Some("/a"));
    }
}
