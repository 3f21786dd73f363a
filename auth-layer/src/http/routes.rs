//! The auth routes: login, callback, logout, profile and the user's sessions, each a small async
//! function from the request's parts to a response, over [`AuthClient`].

use bytes::Bytes;
use http::header::{ALLOW, CACHE_CONTROL, CONTENT_TYPE};
use http::request::Parts;
use http::{HeaderValue, Method, Response, StatusCode};
use http_body_util::Full;
use tracing::Instrument;

use super::response::{error_response, redirect};
use crate::client::{AccessTokenOptions, AuthClient, LoginOptions, LogoutOptions};
use crate::config::{OptionalRoutes, RESERVED_AUTHORIZATION_PARAMS, ResponseMode};
use crate::error::{AuthError, Chain};
use crate::store::StoreContext;

/// The longest query string the login and logout routes read.
const MAX_QUERY: usize = 4 * 1024;

/// The largest request body a route reads (a back-channel logout, a form post's response).
pub(crate) const MAX_ROUTE_BODY: usize = 16 * 1024;

/// A route the layer answers itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Route {
    Login,
    Callback,
    Logout,
    LogoutCallback,
    Profile,
    AccessToken,
    BackchannelLogout,
    /// `GET {prefix}/sessions`.
    Sessions,
    /// `POST {prefix}/sessions/{handle}/end`.
    EndSession,
    /// `POST {prefix}/sessions/end-others`.
    EndOtherSessions,
}

impl Route {
    /// Its name, as spans and logs give it.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Login => "login",
            Self::Callback => "callback",
            Self::Logout => "logout",
            Self::LogoutCallback => "logout_callback",
            Self::Profile => "profile",
            Self::AccessToken => "access_token",
            Self::BackchannelLogout => "backchannel_logout",
            Self::Sessions => "sessions",
            Self::EndSession => "end_session",
            Self::EndOtherSessions => "end_other_sessions",
        }
    }

    /// The route `path` names under `prefix`, if any.
    pub(crate) fn matching(path: &str, prefix: &str, optional: OptionalRoutes) -> Option<Self> {
        match path.strip_prefix(prefix)? {
            "/login" => Some(Self::Login),
            "/callback" => Some(Self::Callback),
            "/logout" => Some(Self::Logout),
            "/logout/callback" if optional.logout_callback => Some(Self::LogoutCallback),
            "/profile" if optional.profile => Some(Self::Profile),
            "/access-token" if optional.access_token => Some(Self::AccessToken),
            "/backchannel-logout" if optional.backchannel_logout => Some(Self::BackchannelLogout),
            "/sessions" if optional.sessions => Some(Self::Sessions),
            "/sessions/end-others" if optional.sessions => Some(Self::EndOtherSessions),
            rest if optional.sessions && session_handle(rest).is_some() => Some(Self::EndSession),
            _ => None,
        }
    }

    /// Whether the route changes something on a `POST` that a page of another site must not
    /// be able to send: refused cross-site.
    fn refuses_cross_site(self) -> bool {
        matches!(self, Self::Logout | Self::EndSession | Self::EndOtherSessions)
    }

    /// The methods the route answers under `config` (whether `GET` logs out, whether the
    /// authorization response comes as a form post).
    fn methods(self, config: &crate::config::AuthConfig) -> &'static [Method] {
        match self {
            Self::BackchannelLogout | Self::EndSession | Self::EndOtherSessions => &[Method::POST],
            Self::Logout if config.logout_by_get => &[Method::GET, Method::HEAD, Method::POST],
            Self::Logout => &[Method::POST],
            Self::Callback if config.response_mode == ResponseMode::FormPost => &[Method::POST],
            _ => &[Method::GET, Method::HEAD],
        }
    }

    /// Whether the route reads the request's body under `config`: a back-channel logout's
    /// token, a form post's authorization response (only in form_post mode: a `POST` of the
    /// callback otherwise gets 405 without its body being read).
    pub(crate) fn reads_body(self, method: &Method, config: &crate::config::AuthConfig) -> bool {
        self == Self::BackchannelLogout
            || (self == Self::Callback && method == Method::POST && config.response_mode == ResponseMode::FormPost)
    }
}

/// The request body of a route that reads one: its bytes, or why it could not be read.
pub(crate) enum RouteBody {
    None,
    Read(Bytes),
    TooLarge,
    Failed,
}

/// Reads the body of a route that takes one ([`Route::reads_body`]), at most
/// [`MAX_ROUTE_BODY`] bytes.
pub(crate) async fn read_body<B>(body: B) -> RouteBody
where
    B: http_body::Body,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    use http_body_util::BodyExt;
    match http_body_util::Limited::new(body, MAX_ROUTE_BODY).collect().await {
        Ok(collected) => RouteBody::Read(collected.to_bytes()),
        Err(err) if err.is::<http_body_util::LengthLimitError>() => RouteBody::TooLarge,
        Err(_) => RouteBody::Failed,
    }
}

/// A form-encoded request body as text, or why there is none.
fn form_body<'a>(headers: &http::HeaderMap, body: &'a RouteBody) -> Result<&'a str, &'static str> {
    let form = headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|v| {
        v.split(';').next().is_some_and(|m| m.trim().eq_ignore_ascii_case("application/x-www-form-urlencoded"))
    });
    match (form, body) {
        (false, _) => Err("the body must be application/x-www-form-urlencoded"),
        (true, RouteBody::TooLarge) => Err("the body is too large"),
        (true, RouteBody::None | RouteBody::Failed) => Err("the body could not be read"),
        (true, RouteBody::Read(bytes)) => std::str::from_utf8(bytes).map_err(|_| "the body is not UTF-8"),
    }
}

/// The one `logout_token` of a back-channel logout request's form body, or why there is none.
pub(crate) fn logout_token(headers: &http::HeaderMap, body: &RouteBody) -> Result<String, &'static str> {
    let form = form_body(headers, body)?;
    let mut tokens = url::form_urlencoded::parse(form.as_bytes()).filter(|(k, _)| k == "logout_token").map(|(_, v)| v);
    match (tokens.next(), tokens.next()) {
        (Some(token), None) => Ok(token.into_owned()),
        (None, _) => Err("logout_token is missing"),
        (Some(_), Some(_)) => Err("logout_token is repeated"),
    }
}

/// Answers one auth route, inside a span of its own: `.instrument` (not a span guard held over
/// `.await`) so that on a multi-threaded runtime no other request's events land in it.
pub(crate) async fn handle(
    client: AuthClient,
    route: Route,
    parts: Parts,
    body: RouteBody,
    origin: u8,
) -> Response<Full<Bytes>> {
    let span = tracing::info_span!(
        "auth_route",
        auth_layer.route = route.name(),
        http.request.method = parts.method.as_str(),
        http.route = parts.uri.path(),
        http.response.status_code = tracing::field::Empty,
    );
    let response = answer(client, route, parts, body, origin).instrument(span.clone()).await;
    span.record("http.response.status_code", response.status().as_u16());
    response
}

/// The answer to a request for a host the app does not list, when it lists several
/// ([`public_origins`](crate::AuthConfigBuilder::public_origins)): 400, before anything else.
pub(crate) fn unknown_host(headers: &http::HeaderMap) -> Response<Full<Bytes>> {
    tracing::warn!(host = ?headers.get(http::header::HOST), "request for a host the app does not list; refused");
    error_response(StatusCode::BAD_REQUEST, "unknown_host", "this host is not one of the app's origins", headers)
}

async fn answer(client: AuthClient, route: Route, parts: Parts, body: RouteBody, origin: u8) -> Response<Full<Bytes>> {
    let methods = route.methods(client.config());
    if !methods.contains(&parts.method) {
        let allow = methods.iter().map(Method::as_str).collect::<Vec<_>>().join(", ");
        let mut response = error_response(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            &format!("this route answers {allow} only"),
            &parts.headers,
        );
        if let Ok(allow) = HeaderValue::from_str(&allow) {
            response.headers_mut().insert(ALLOW, allow);
        }
        tracing::warn!(method = ?parts.method, path = parts.uri.path(), "auth route called with a wrong method");
        return response;
    }
    if route.refuses_cross_site()
        && parts.method == Method::POST
        && !same_origin(&parts.headers, client.config(), origin)
    {
        tracing::warn!(route = route.name(), "cross-site POST refused");
        return error_response(StatusCode::FORBIDDEN, "cross_site", "cross-site request refused", &parts.headers);
    }
    if route == Route::Logout && parts.method != Method::POST && !user_clicked(&parts.headers) {
        tracing::warn!("cross-site or prefetched GET of the logout route refused");
        return error_response(StatusCode::FORBIDDEN, "cross_site", "cross-site request refused", &parts.headers);
    }
    let query = parts.uri.query().unwrap_or("");
    let mut ctx = StoreContext::from_headers(&parts.headers);
    ctx.origin = origin;
    let result = match route {
        Route::Login => login(&client, &mut ctx, query).await,
        Route::Callback if parts.method == Method::POST => match form_body(&parts.headers, &body) {
            Ok(form) => {
                client.describe_login(&mut ctx, &parts.headers);
                let answer = callback(&client, &mut ctx, form).await;
                clear_withheld_session_cookies(client.config(), &mut ctx);
                answer
            }
            Err(why) => Err(AuthError::InvalidRequest(why.into())),
        },
        Route::Callback => {
            client.describe_login(&mut ctx, &parts.headers);
            callback(&client, &mut ctx, query).await
        }
        Route::Logout => logout(&client, &mut ctx, query).await,
        Route::LogoutCallback => Ok(redirect(client.complete_logout(&mut ctx, query).as_str())),
        Route::Profile => profile(&client, &mut ctx).await,
        Route::AccessToken => access_token(&client, &mut ctx).await,
        Route::Sessions => sessions(&client, &mut ctx).await,
        Route::EndSession => end_session(&client, &mut ctx, &parts).await,
        Route::EndOtherSessions => client.end_other_sessions(&mut ctx).await.map(|()| no_content()),
        // Answered in the back-channel format, without the session cookies of a browser.
        Route::BackchannelLogout => return backchannel_logout(&client, &parts, body).await,
    };
    let mut response = result.unwrap_or_else(|err| err.to_response(&parts.headers));
    ctx.apply(response.headers_mut());
    tracing::info!(status = response.status().as_u16(), "auth route answered");
    response
}

async fn login(client: &AuthClient, ctx: &mut StoreContext, query: &str) -> Result<Response<Full<Bytes>>, AuthError> {
    let mut return_to = query_param(query, "returnTo")?;
    // Third-party initiated login (OpenID Connect Core 4, the client's `initiate_login_uri`):
    // `iss` must be this app's provider (or this tenant's), and `target_link_uri` a page of
    // this app, which then is where the login returns. `login_hint` passes on as any allowed
    // parameter does.
    if let Some(iss) = query_param(query, "iss")?
        && iss != client.issuer()
    {
        tracing::warn!(iss = iss.as_str(), "third-party initiated login from another issuer refused");
        return Err(AuthError::InvalidRequest("`iss` is not this app's provider".into()));
    }
    if let Some(target) = query_param(query, "target_link_uri")? {
        if return_to.is_some() {
            return Err(AuthError::InvalidRequest("`returnTo` and `target_link_uri` are both given".into()));
        }
        return_to = Some(own_page(client.config(), &target, ctx.origin)?);
    }
    let options = LoginOptions {
        return_to,
        query_params: login_params(query, &client.config().login_query_params)?,
        ..LoginOptions::default()
    };
    let url = client.start_login(ctx, options).await?;
    Ok(redirect(url.as_str()))
}

/// `target` (a third-party initiated login's `target_link_uri`) as a path of this app: an
/// absolute URL of the app's own origin, or a path. Anything else is refused (400): a login
/// link may not send the user elsewhere.
fn own_page(config: &crate::config::AuthConfig, target: &str, origin: u8) -> Result<String, AuthError> {
    let refused = || AuthError::InvalidRequest("`target_link_uri` is not a page of this app".into());
    let url = match url::Url::parse(target) {
        Ok(url) => url,
        Err(url::ParseError::RelativeUrlWithoutBase) if target.starts_with('/') => {
            return crate::return_to::validate(target).map(str::to_owned).map_err(|_| refused());
        }
        Err(_) => return Err(refused()),
    };
    if url.origin() != config.app_url_at(origin, "/").origin() || url.fragment().is_some() {
        return Err(refused());
    }
    let path = match url.query() {
        Some(query) => format!("{}?{query}", url.path()),
        None => url.path().to_owned(),
    };
    crate::return_to::validate(&path).map(str::to_owned).map_err(|_| refused())
}

/// After a form post's callback that started a session: removes every session cookie name the
/// new session did not set. The post comes from the provider's site, so a browser withholds the
/// app's `SameSite=Lax` cookies from it, and the store could not see (to clear) the cookies of a
/// session from before: an old single cookie would otherwise be read before the new chunks, and
/// an old extra chunk would spoil the new set.
fn clear_withheld_session_cookies(config: &crate::config::AuthConfig, ctx: &mut StoreContext) {
    let name = &config.cookies.session_name;
    if !(ctx.sets_cookie(name) || ctx.sets_cookie(&format!("{name}.0"))) {
        return;
    }
    let chunks = (0..crate::store::MAX_SESSION_CHUNKS).map(|i| format!("{name}.{i}"));
    for candidate in std::iter::once(name.clone()).chain(chunks) {
        if !ctx.sets_cookie(&candidate) {
            ctx.remove_cookie(config, &candidate);
        }
    }
}

/// Whether a state-changing request comes from the app's own pages: `Sec-Fetch-Site` (sent by
/// every current browser) is `same-origin` or `none` (typed by the user), or, without it, the
/// `Origin` is the app's origin the request was sent to (number `origin`). A request with
/// neither is no browser's cross-site form (browsers send one of them with every POST) and
/// passes.
pub(crate) fn same_origin(headers: &http::HeaderMap, config: &crate::config::AuthConfig, origin: u8) -> bool {
    if let Some(site) = headers.get("sec-fetch-site") {
        return matches!(site.as_bytes(), b"same-origin" | b"none");
    }
    match headers.get(http::header::ORIGIN).and_then(|o| o.to_str().ok()) {
        Some(sent) => sent == config.app_url_at(origin, "/").origin().ascii_serialization(),
        None => true,
    }
}

/// Whether a `GET` of the logout route is a navigation the user made from the app's site: not
/// from another site (`Sec-Fetch-Site: cross-site`: any page can link or redirect there, or load
/// it as an image) and not a prefetch or prerender, which a browser makes of links the user has
/// not followed. A same-site link, one typed in, or a client sending no such header passes.
fn user_clicked(headers: &http::HeaderMap) -> bool {
    let says = |name: &str, what: &[u8]| {
        headers.get_all(name).iter().any(|v| {
            v.as_bytes().split(|b| matches!(b, b';' | b',' | b' ')).any(|part| part.eq_ignore_ascii_case(what))
        })
    };
    !(says("sec-fetch-site", b"cross-site")
        || says("sec-purpose", b"prefetch")
        || says("sec-purpose", b"prerender")
        || says("purpose", b"prefetch")
        || says("x-moz", b"prefetch")
        || says("x-purpose", b"preview"))
}

/// The longest value of a login parameter passed on.
const MAX_LOGIN_PARAM: usize = 512;

/// The parameters of `/auth/login`'s query that may go on to the authorization request: those
/// in `allowed`, each checked. A parameter auth-layer sets itself, a repeated one or a bad value
/// is refused (400); any other is ignored (tracking parameters, say). They then only add to
/// what the app set: one that would change it is refused when merged (`client::login`).
pub(crate) fn login_params(query: &str, allowed: &[String]) -> Result<Vec<(String, String)>, AuthError> {
    if query.len() > MAX_QUERY {
        return Err(AuthError::InvalidRequest("the query is too long".into()));
    }
    let mut params: Vec<(String, String)> = Vec::new();
    for (name, value) in url::form_urlencoded::parse(query.as_bytes()) {
        if RESERVED_AUTHORIZATION_PARAMS.contains(&name.as_ref()) {
            return Err(AuthError::InvalidRequest(format!("`{name}` is set by auth-layer, not by the query")));
        }
        if !allowed.iter().any(|a| *a == name) {
            continue;
        }
        if params.iter().any(|(n, _)| *n == name) {
            return Err(AuthError::InvalidRequest(format!("the query repeats `{name}`")));
        }
        let bad = |why: &str| AuthError::InvalidRequest(format!("`{name}`: {why}"));
        if value.is_empty() || value.len() > MAX_LOGIN_PARAM || value.chars().any(char::is_control) {
            return Err(bad("empty, too long, or with control characters"));
        }
        match name.as_ref() {
            "prompt"
                if !value.split(' ').all(|p| ["none", "login", "consent", "select_account", "create"].contains(&p)) =>
            {
                return Err(bad("expected none, login, consent, select_account or create"));
            }
            _ => {}
        }
        params.push((name.into_owned(), value.into_owned()));
    }
    Ok(params)
}

async fn callback(
    client: &AuthClient,
    ctx: &mut StoreContext,
    query: &str,
) -> Result<Response<Full<Bytes>>, AuthError> {
    match client.complete_login(ctx, query).await {
        Ok(result) => Ok(redirect(client.config().app_url_at(ctx.origin, &result.return_to).as_str())),
        // A silent login that found no login at the provider: back to the page, anonymous.
        Err(AuthError::SilentLoginDeclined { return_to, .. }) => {
            Ok(redirect(client.config().app_url_at(ctx.origin, &return_to).as_str()))
        }
        Err(err) => Err(err),
    }
}

/// How long a silent login is not tried again after one was (or after a logout).
pub(crate) const SILENT_LOGIN_PAUSE: std::time::Duration = std::time::Duration::from_secs(3600);

/// The cookie that pauses silent logins.
pub(crate) fn silent_cookie_name(config: &crate::config::AuthConfig) -> String {
    format!("{}_silent", config.cookies.session_name)
}

/// Whether a page request (`headers`) should first try a silent login: silent login is on,
/// the request is a browser's navigation, and it carries neither a session cookie nor the
/// pause cookie. Reads cookie names only: nothing is opened.
pub(crate) fn silent_login_due(headers: &http::HeaderMap, config: &crate::config::AuthConfig) -> bool {
    if !config.attempt_silent_login || super::response::wants_json(headers) {
        return false;
    }
    let ctx = StoreContext::from_headers(headers);
    let session = &config.cookies.session_name;
    let pause = silent_cookie_name(config);
    !ctx.request_cookie_names()
        .any(|name| name == session || name == pause || crate::store::is_session_chunk(session, name))
}

/// Starts a silent login back to `return_to`, pausing further attempts.
pub(crate) async fn silent_login(
    client: AuthClient,
    headers: http::HeaderMap,
    return_to: String,
    origin: u8,
) -> Response<Full<Bytes>> {
    let mut ctx = StoreContext::from_headers(&headers);
    ctx.origin = origin;
    let config = client.config();
    ctx.set_cookie(config, &silent_cookie_name(config), "1", SILENT_LOGIN_PAUSE);
    let mut response = match client.start_silent_login(&mut ctx, return_to).await {
        Ok(url) => redirect(url.as_str()),
        Err(err) => err.to_response(&headers),
    };
    ctx.apply(response.headers_mut());
    response
}

async fn logout(client: &AuthClient, ctx: &mut StoreContext, query: &str) -> Result<Response<Full<Bytes>>, AuthError> {
    let return_to = query_param(query, "returnTo")?;
    let url = client.logout(ctx, LogoutOptions { return_to, ..LogoutOptions::default() }).await?;
    if client.config().attempt_silent_login {
        // A silent login right after would undo the logout (with a local one, at once).
        ctx.set_cookie(client.config(), &silent_cookie_name(client.config()), "1", SILENT_LOGIN_PAUSE);
    }
    Ok(redirect(url.as_str()))
}

async fn profile(client: &AuthClient, ctx: &mut StoreContext) -> Result<Response<Full<Bytes>>, AuthError> {
    let user = client.user(ctx).await?.ok_or(AuthError::NotAuthenticated)?;
    private_json(&user)
}

async fn access_token(client: &AuthClient, ctx: &mut StoreContext) -> Result<Response<Full<Bytes>>, AuthError> {
    private_json(&client.access_token(ctx, AccessTokenOptions::default()).await?)
}

/// `GET {prefix}/sessions`: `{"sessions": [...]}`, the user's sessions newest first.
async fn sessions(client: &AuthClient, ctx: &mut StoreContext) -> Result<Response<Full<Bytes>>, AuthError> {
    #[derive(serde::Serialize)]
    struct Listing {
        sessions: Vec<crate::client::SessionInfo>,
    }
    private_json(&Listing { sessions: client.list_sessions(ctx).await? })
}

/// `POST {prefix}/sessions/{handle}/end`: 204 once it is ended, 404 when the handle names none
/// of the user's sessions.
async fn end_session(
    client: &AuthClient,
    ctx: &mut StoreContext,
    parts: &Parts,
) -> Result<Response<Full<Bytes>>, AuthError> {
    let path = parts.uri.path().strip_prefix(client.config().route_prefix()).unwrap_or_default();
    let handle = session_handle(path).unwrap_or_default();
    if client.end_session(ctx, handle).await? {
        return Ok(no_content());
    }
    tracing::info!("end of a session the user does not have asked; nothing ended");
    Ok(error_response(StatusCode::NOT_FOUND, "unknown_session", "No such session of yours.", &parts.headers))
}

/// The handle in `/sessions/{handle}/end` (the path after the prefix), when it is shaped like
/// one (base64url, at most 43 characters).
fn session_handle(path: &str) -> Option<&str> {
    let handle = path.strip_prefix("/sessions/")?.strip_suffix("/end")?;
    let shaped =
        (1..=43).contains(&handle.len()) && handle.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    shaped.then_some(handle)
}

/// `value` as a JSON answer no cache keeps.
fn private_json(value: &impl serde::Serialize) -> Result<Response<Full<Bytes>>, AuthError> {
    let body = serde_json::to_vec(value).map_err(|e| AuthError::InvalidRequest(e.to_string()))?;
    let mut response = Response::new(Full::new(Bytes::from(body)));
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response.headers_mut().insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

/// `204 No Content`.
fn no_content() -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = StatusCode::NO_CONTENT;
    response.headers_mut().insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// `POST {prefix}/backchannel-logout`: `200` with `Cache-Control: no-store` once every session
/// the token names is gone, `400 {"error":"invalid_request",...}` for a bad request or token.
async fn backchannel_logout(client: &AuthClient, parts: &Parts, body: RouteBody) -> Response<Full<Bytes>> {
    let token = logout_token(&parts.headers, &body);
    let result = match token {
        Ok(token) => client.handle_backchannel_logout(&token).await,
        Err(why) => Err(AuthError::InvalidRequest(why.into())),
    };
    let (status, body) = match result {
        Ok(()) => (StatusCode::OK, Bytes::new()),
        Err(err) => {
            let status = if err.status().is_server_error() { err.status() } else { StatusCode::BAD_REQUEST };
            tracing::warn!(code = err.code(), error = ?Chain(&err), "back-channel logout refused");
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
    fn login_parameters_pass_only_from_the_allowlist_and_reserved_or_bad_ones_are_refused() {
        let allowed: Vec<String> = crate::config::DEFAULT_LOGIN_QUERY_PARAMS.iter().map(|p| (*p).to_owned()).collect();
        let passed = login_params("screen_hint=signup&login_hint=a%40b.c&utm_source=mail&returnTo=%2Fx", &allowed);
        assert_eq!(
            passed.unwrap(),
            [("screen_hint".to_owned(), "signup".to_owned()), ("login_hint".to_owned(), "a@b.c".to_owned())],
            "tracking parameters and returnTo are not passed on"
        );
        assert_eq!(login_params("prompt=login%20consent&max_age=0", &allowed).unwrap().len(), 2);
        for refused in [
            "client_id=evil",
            "redirect_uri=https%3A%2F%2Fevil.example%2Fcb",
            "state=x",
            "nonce=x",
            "code_challenge=x",
            "response_type=token",
            "request_uri=urn%3Ax",
            "prompt=never",
            "prompt=login&prompt=none",
            "screen_hint=",
            "ui_locales=fr%0Aen",
        ] {
            assert!(login_params(refused, &allowed).is_err(), "{refused} must be refused");
        }
        assert!(login_params(&format!("login_hint={}", "a".repeat(600)), &allowed).is_err(), "too long");
        let only_hint = ["login_hint".to_owned()];
        assert_eq!(login_params("screen_hint=signup&login_hint=x", &only_hint).unwrap().len(), 1, "the app's list");
    }

    #[test]
    fn only_exact_paths_under_the_prefix_are_routes() {
        let none = OptionalRoutes::default();
        let all = OptionalRoutes {
            profile: true,
            access_token: true,
            backchannel_logout: true,
            logout_callback: true,
            sessions: true,
        };
        assert_eq!(Route::matching("/auth/login", "/auth", none), Some(Route::Login));
        assert_eq!(Route::matching("/auth/callback", "/auth", none), Some(Route::Callback));
        assert_eq!(Route::matching("/auth/profile", "/auth", none), None);
        assert_eq!(Route::matching("/auth/access-token", "/auth", none), None);
        assert_eq!(Route::matching("/auth/backchannel-logout", "/auth", none), None);
        assert_eq!(Route::matching("/auth/profile", "/auth", all), Some(Route::Profile));
        assert_eq!(Route::matching("/auth/access-token", "/auth", all), Some(Route::AccessToken));
        assert_eq!(Route::matching("/auth/backchannel-logout", "/auth", all), Some(Route::BackchannelLogout));
        assert_eq!(Route::matching("/auth/logout/callback", "/auth", none), None);
        assert_eq!(Route::matching("/auth/logout/callback", "/auth", all), Some(Route::LogoutCallback));
        assert_eq!(Route::matching("/auth/login/x", "/auth", all), None);
        assert_eq!(Route::matching("/authlogin", "/auth", all), None);
        assert_eq!(Route::matching("/private", "/auth", all), None);
        assert_eq!(Route::matching("/auth/sessions", "/auth", none), None);
        assert_eq!(Route::matching("/auth/sessions/abc_-9/end", "/auth", none), None);
        assert_eq!(Route::matching("/auth/sessions", "/auth", all), Some(Route::Sessions));
        assert_eq!(Route::matching("/auth/sessions/end-others", "/auth", all), Some(Route::EndOtherSessions));
        assert_eq!(Route::matching("/auth/sessions/abc_-9/end", "/auth", all), Some(Route::EndSession));
        for odd in ["/auth/sessions//end", "/auth/sessions/a.b/end", "/auth/sessions/a/b/end", "/auth/sessions/a"] {
            assert_eq!(Route::matching(odd, "/auth", all), None, "{odd}");
        }
        let long = format!("/auth/sessions/{}/end", "a".repeat(44));
        assert_eq!(Route::matching(&long, "/auth", all), None);
    }

    #[test]
    fn a_logout_link_from_another_site_or_a_prefetch_is_no_click() {
        let headers = |pairs: &[(&'static str, &'static str)]| {
            let mut map = http::HeaderMap::new();
            for (name, value) in pairs {
                map.append(*name, http::HeaderValue::from_static(value));
            }
            map
        };
        for clicked in [
            &[][..],
            &[("sec-fetch-site", "same-origin")],
            &[("sec-fetch-site", "same-site")],
            &[("sec-fetch-site", "none")],
        ] {
            assert!(user_clicked(&headers(clicked)), "{clicked:?}");
        }
        for not in [
            &[("sec-fetch-site", "cross-site")][..],
            &[("sec-fetch-site", "same-origin"), ("sec-purpose", "prefetch")],
            &[("sec-purpose", "prefetch;prerender")],
            &[("purpose", "prefetch")],
            &[("x-moz", "prefetch")],
            &[("x-purpose", "preview")],
        ] {
            assert!(!user_clicked(&headers(not)), "{not:?}");
        }
    }

    #[test]
    fn a_target_link_uri_is_held_to_the_apps_own_pages() {
        let config = crate::config::test_config(Default::default()).build().unwrap();
        assert_eq!(own_page(&config, "https://app.example/orders/7?tab=2", 0).unwrap(), "/orders/7?tab=2");
        assert_eq!(own_page(&config, "/orders", 0).unwrap(), "/orders");
        for refused in [
            "https://evil.example/orders",
            "http://app.example/orders",
            "https://app.example:8443/orders",
            "https://app.example.evil.example/",
            "//evil.example/x",
            "javascript:alert(1)",
            "orders",
            "https://app.example/x#frag",
        ] {
            assert!(own_page(&config, refused, 0).is_err(), "{refused}");
        }
    }

    #[test]
    fn repeated_return_to_is_refused() {
        assert!(query_param("returnTo=/a&returnTo=//evil", "returnTo").is_err());
        assert_eq!(query_param("returnTo=%2Fa", "returnTo").unwrap().as_deref(), Some("/a"));
    }
}
