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
    /// The error as a response, an HTML page for a browser's navigation and JSON otherwise,
    /// never cached, and logged once with its details and causes; the body carries only the
    /// code and its fixed [`public_message`](AuthError::public_message).
    pub fn to_response(&self, request_headers: &HeaderMap) -> Response<Full<Bytes>> {
        let status = self.status();
        if status.is_server_error() {
            tracing::error!(code = self.code(), error = ?Chain(self), "auth request failed");
        } else {
            tracing::warn!(code = self.code(), error = ?Chain(self), "auth request refused");
        }
        let mut response = error_response(status, self.code(), &self.public_message(), request_headers);
        if status == StatusCode::SERVICE_UNAVAILABLE {
            // The provider or the store is down: a client may try again in a moment.
            response.headers_mut().insert(http::header::RETRY_AFTER, http::HeaderValue::from_static("1"));
        }
        response
    }
}

/// What a request that `err` stopped gets: a browser without a session is sent to login with
/// the current path as `returnTo`; every other case is the error's own response.
///
/// A session whose authentication is too weak or too old ([`AuthError::InsufficientAuthentication`])
/// gets, as an API client, 401 with `WWW-Authenticate: Bearer
/// error="insufficient_user_authentication"` naming what is missing (RFC 9470, section 3); a
/// browser is sent through a step-up login by the guard itself (`guard::step_up`), not here.
pub(crate) fn refusal(err: &AuthError, prefix: &str, uri: &Uri, headers: &HeaderMap) -> Response<Full<Bytes>> {
    match err {
        AuthError::NotAuthenticated if !wants_json(headers) => {
            let here = uri.path_and_query().map(|pq| pq.as_str()).unwrap_or("/");
            let mut login = url::form_urlencoded::Serializer::new(String::new());
            login.append_pair("returnTo", here);
            redirect(&format!("{prefix}/login?{}", login.finish()))
        }
        AuthError::InsufficientAuthentication { acr_values, max_age } => {
            let mut response = err.to_response(headers);
            let mut challenge = String::from(
                "Bearer error=\"insufficient_user_authentication\", \
                 error_description=\"A different authentication level is required\"",
            );
            if let Some(acr) = acr_values {
                challenge.push_str(&format!(", acr_values=\"{}\"", acr.replace(['"', '\\'], "")));
            }
            if let Some(max_age) = max_age {
                challenge.push_str(&format!(", max_age={max_age}"));
            }
            if let Ok(value) = HeaderValue::from_str(&challenge) {
                response.headers_mut().insert(http::header::WWW_AUTHENTICATE, value);
            }
            response
        }
        _ => err.to_response(headers),
    }
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

/// Whether the request is not a browser's navigation, and gets JSON and a 401 rather than a
/// page or a redirect. A navigation asks for `text/html` or says `Sec-Fetch-Mode: navigate`;
/// `Accept: */*` alone (what `fetch()` and most HTTP clients send) is not one.
pub(crate) fn wants_json(headers: &HeaderMap) -> bool {
    let navigates = headers.get("sec-fetch-mode").is_some_and(|mode| mode.as_bytes().eq_ignore_ascii_case(b"navigate"));
    let accepts_html = headers
        .get_all(ACCEPT)
        .iter()
        .any(|v| v.as_bytes().windows(b"text/html".len()).any(|w| w.eq_ignore_ascii_case(b"text/html")));
    !(navigates || accepts_html)
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

    #[test]
    fn only_navigations_are_redirected_and_fetch_with_any_accept_gets_401() {
        let uri: Uri = "/private".parse().unwrap();
        let fetch = refusal(&AuthError::NotAuthenticated, "/auth", &uri, &accept("*/*"));
        assert_eq!(fetch.status(), StatusCode::UNAUTHORIZED, "fetch()'s default Accept");
        assert_eq!(fetch.headers()[CONTENT_TYPE], "application/json");
        let none = refusal(&AuthError::NotAuthenticated, "/auth", &uri, &HeaderMap::new());
        assert_eq!(none.status(), StatusCode::UNAUTHORIZED, "no Accept at all");
        let mut navigate = accept("*/*");
        navigate.insert("sec-fetch-mode", HeaderValue::from_static("navigate"));
        assert_eq!(refusal(&AuthError::NotAuthenticated, "/auth", &uri, &navigate).status(), StatusCode::FOUND);
        let chrome = accept("text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8");
        assert_eq!(refusal(&AuthError::NotAuthenticated, "/auth", &uri, &chrome).status(), StatusCode::FOUND);
    }

    #[test]
    fn bodies_carry_a_fixed_message_per_code_never_the_details() {
        let details = [
            AuthError::Store(crate::StoreError::unavailable(
                "PostgreSQL",
                "password authentication failed for user app",
            )),
            AuthError::ProviderRefused { error: "access_denied".into(), description: Some("Call +1 555 0100".into()) },
            AuthError::InvalidRequest("the logout parameter `client_id` is set by auth-layer".into()),
            AuthError::Provider(crate::ProviderError::TokenRefused("invalid_client: secret abc".into())),
        ];
        for err in details {
            for headers in [accept("application/json"), accept("text/html")] {
                let body = format!("{:?}", err.to_response(&headers).into_body());
                for secret in ["password authentication", "555 0100", "client_id", "secret abc"] {
                    assert!(!body.contains(secret), "{secret} reached the body: {body}");
                }
                assert!(body.contains(err.code()), "{body}");
            }
        }
        let refused = AuthError::ProviderRefused { error: "access_denied".into(), description: None };
        assert!(refused.public_message().contains("access_denied"), "a plain OAuth code is named");
        let odd = AuthError::ProviderRefused { error: "<b>call us</b>".into(), description: None };
        assert!(!odd.public_message().contains("call us"), "anything else is not");
    }
}
