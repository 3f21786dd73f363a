//! Responses the layer writes itself: error pages (HTML for browsers, `{error, message}` JSON
//! for API clients), redirects, and the one decision of what a request without a session gets
//! (a redirect to login for a navigation, 401 otherwise), shared by the guard, the routes and
//! the axum extractors.

use bytes::Bytes;
use http::header::{ACCEPT, CACHE_CONTROL, CONTENT_TYPE, LOCATION};
use http::{HeaderMap, HeaderValue, Response, StatusCode, Uri};
use http_body_util::Full;

use crate::error::{AuthError, Chain};

impl AuthError {
    /// The error as a response, HTML or JSON as the request's `Accept` prefers, never cached,
    /// and logged once with its causes (the body carries only the error's own message).
    pub fn to_response(&self, request_headers: &HeaderMap) -> Response<Full<Bytes>> {
        let status = self.status();
        if status.is_server_error() {
            tracing::error!(code = self.code(), error = %Chain(self), "auth request failed");
        } else {
            tracing::warn!(code = self.code(), error = %Chain(self), "auth request refused");
        }
        error_response(status, self.code(), &self.to_string(), request_headers)
    }
}

/// What a request that `err` stopped gets: a browser without a session is sent to login with
/// the current path as `returnTo`; every other case is the error's own response.
pub(crate) fn refusal(err: &AuthError, prefix: &str, uri: &Uri, headers: &HeaderMap) -> Response<Full<Bytes>> {
    if !matches!(err, AuthError::NotAuthenticated) || wants_json(headers) {
        return err.to_response(headers);
    }
    let here = uri.path_and_query().map(|pq| pq.as_str()).unwrap_or("/");
    let return_to: String = url::form_urlencoded::byte_serialize(here.as_bytes()).collect();
    redirect(&format!("{prefix}/login?returnTo={return_to}"))
}

/// The answer when a guard or an extractor finds no [`Session`](super::Session): the app did
/// not put the [`AuthLayer`](super::AuthLayer) around it.
pub(crate) fn misconfigured(headers: &HeaderMap) -> Response<Full<Bytes>> {
    tracing::error!("a guard or an auth extractor is used outside the AuthLayer: no session to check");
    error_response(StatusCode::INTERNAL_SERVER_ERROR, "misconfigured", "authentication is not set up", headers)
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

/// Whether the client prefers JSON (an API client) over HTML (a browser).
pub(crate) fn wants_json(headers: &HeaderMap) -> bool {
    let accept = headers.get(ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or("");
    !accept.contains("text/html") && (accept.contains("json") || !accept.contains("*/*") || accept.is_empty())
}

/// A response for `code`/`message` in the format the client prefers.
pub(crate) fn error_response(
    status: StatusCode,
    code: &str,
    message: &str,
    headers: &HeaderMap,
) -> Response<Full<Bytes>> {
    let (content_type, body) = if wants_json(headers) {
        let body = serde_json::json!({ "error": code, "message": message }).to_string();
        ("application/json", body)
    } else {
        let reason = status.canonical_reason().unwrap_or("Error");
        let body = format!(
            "<!doctype html><html><head><meta charset=\"utf-8\"><title>{reason}</title></head>\
             <body><h1>{reason}</h1><p>{}</p><p><code>{code}</code></p><p><a href=\"/\">Home</a></p></body></html>",
            html_escape(message)
        );
        ("text/html; charset=utf-8", body)
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response.headers_mut().insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// Escapes text for HTML element content and attribute values.
pub(crate) fn html_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accept(value: &'static str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(ACCEPT, HeaderValue::from_static(value));
        headers
    }

    #[test]
    fn browsers_get_html_and_api_clients_get_json() {
        let browser = AuthError::MissingTransaction.to_response(&accept("text/html,application/xhtml+xml,*/*;q=0.8"));
        assert_eq!(browser.status(), StatusCode::BAD_REQUEST);
        assert!(browser.headers()[CONTENT_TYPE].to_str().unwrap().starts_with("text/html"));
        let api = AuthError::MissingTransaction.to_response(&accept("application/json"));
        assert_eq!(api.headers()[CONTENT_TYPE], "application/json");
        assert!(wants_json(&HeaderMap::new()));
    }

    #[test]
    fn error_pages_escape_what_the_provider_said() {
        let err = AuthError::ProviderRefused { error: "<script>".into(), description: Some("\"x\"".into()) };
        let response = err.to_response(&accept("text/html"));
        let body = format!("{:?}", response.body());
        assert!(!body.contains("<script>"), "{body}");
    }

    #[test]
    fn a_browser_without_a_session_is_sent_to_login_and_an_api_client_gets_401() {
        let uri: Uri = "/private?tab=2".parse().unwrap();
        let browser = refusal(&AuthError::NotAuthenticated, "/auth", &uri, &accept("text/html"));
        assert_eq!(browser.status(), StatusCode::FOUND);
        assert_eq!(browser.headers()[LOCATION], "/auth/login?returnTo=%2Fprivate%3Ftab%3D2");
        let api = refusal(&AuthError::NotAuthenticated, "/auth", &uri, &accept("application/json"));
        assert_eq!(api.status(), StatusCode::UNAUTHORIZED);
        let other = refusal(&AuthError::MissingRefreshToken, "/auth", &uri, &accept("text/html"));
        assert_eq!(other.status(), StatusCode::UNAUTHORIZED, "only a missing session redirects");
    }
}
