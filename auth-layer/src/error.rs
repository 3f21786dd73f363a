//! Errors on request paths, each with a stable code and an HTTP status, and their rendering:
//! an HTML page for browsers, JSON `{error, message}` for API clients.

use bytes::Bytes;
use http::header::{ACCEPT, CACHE_CONTROL, CONTENT_TYPE};
use http::{HeaderMap, HeaderValue, Response, StatusCode};
use http_body_util::Full;

use crate::client::ProviderError;
use crate::store::StoreError;

/// Why an auth operation failed.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// A request parameter is missing or not acceptable (e.g. a `returnTo` to another site).
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// The callback's `state` names no login this browser started, or one already completed.
    #[error("no login in progress matches this callback (unknown, expired or already used state)")]
    MissingTransaction,
    /// The provider answered the authorization request with an error.
    #[error("the provider refused the login: {error}{}", description.as_deref().map(|d| format!(" ({d})")).unwrap_or_default())]
    ProviderRefused {
        /// The OAuth error code, e.g. `access_denied`.
        error: String,
        /// The provider's description, when given.
        description: Option<String>,
    },
    /// The callback's `iss` is not this provider (mix-up attack).
    #[error("the callback's issuer `{0}` is not the configured provider")]
    IssuerMismatch(String),
    /// The provider or its tokens failed (unreachable, refused, or a token that fails a check).
    #[error(transparent)]
    Provider(#[from] ProviderError),
    /// The session store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The request needs a logged-in user.
    #[error("not logged in")]
    NotAuthenticated,
    /// An access token is due for a refresh but the session has no refresh token.
    #[error("the access token has expired and the session has no refresh token")]
    MissingRefreshToken,
}

impl AuthError {
    /// A stable, machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidRequest(_) => "invalid_request",
            Self::MissingTransaction => "missing_transaction",
            Self::ProviderRefused { .. } => "provider_refused",
            Self::IssuerMismatch(_) => "issuer_mismatch",
            Self::Provider(ProviderError::InvalidIdToken(_)) => "invalid_id_token",
            Self::Provider(ProviderError::TokenRefused(_)) => "token_refused",
            Self::Provider(ProviderError::InvalidGrant(_)) => "refresh_refused",
            Self::Provider(ProviderError::InvalidLogoutToken(_)) => "invalid_logout_token",
            Self::Provider(ProviderError::BadTokenResponse(_)) => "bad_token_response",
            Self::Provider(ProviderError::Unreachable(_) | ProviderError::Discovery(_)) => "provider_unavailable",
            Self::Store(_) => "store_unavailable",
            Self::NotAuthenticated => "not_authenticated",
            Self::MissingRefreshToken => "missing_refresh_token",
        }
    }

    /// The HTTP status this error answers with.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::NotAuthenticated | Self::MissingRefreshToken | Self::Provider(ProviderError::InvalidGrant(_)) => {
                StatusCode::UNAUTHORIZED
            }
            Self::Provider(ProviderError::Unreachable(_) | ProviderError::Discovery(_)) | Self::Store(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Self::Provider(ProviderError::BadTokenResponse(_)) => StatusCode::BAD_GATEWAY,
            _ => StatusCode::BAD_REQUEST,
        }
    }

    /// The error as a response, HTML or JSON as the request's `Accept` prefers, never cached.
    pub fn into_response(&self, request_headers: &HeaderMap) -> Response<Full<Bytes>> {
        let status = self.status();
        if status.is_server_error() {
            tracing::error!(code = self.code(), error = %self, "auth request failed");
        } else {
            tracing::warn!(code = self.code(), error = %self, "auth request refused");
        }
        error_response(status, self.code(), &self.to_string(), request_headers)
    }
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
        let browser = AuthError::MissingTransaction.into_response(&accept("text/html,application/xhtml+xml,*/*;q=0.8"));
        assert_eq!(browser.status(), StatusCode::BAD_REQUEST);
        assert!(browser.headers()[CONTENT_TYPE].to_str().unwrap().starts_with("text/html"));
        let api = AuthError::MissingTransaction.into_response(&accept("application/json"));
        assert_eq!(api.headers()[CONTENT_TYPE], "application/json");
        assert!(wants_json(&HeaderMap::new()));
    }

    #[test]
    fn error_pages_escape_what_the_provider_said() {
        let err = AuthError::ProviderRefused { error: "<script>".into(), description: Some("\"x\"".into()) };
        let response = err.into_response(&accept("text/html"));
        let body = format!("{:?}", response.body());
        assert!(!body.contains("<script>"), "{body}");
    }

    #[test]
    fn store_and_provider_outages_are_503() {
        assert_eq!(AuthError::Store(StoreError::Unavailable("down".into())).status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            AuthError::Provider(ProviderError::Unreachable("x".into())).status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(AuthError::NotAuthenticated.status(), StatusCode::UNAUTHORIZED);
    }
}
