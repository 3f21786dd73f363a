//! The errors of every layer, at the bottom so that every layer can name them: [`StoreError`]
//! (backends and stores), [`ProviderError`] (the OpenID Provider and its tokens) and
//! [`AuthError`], which an operation of the [`AuthClient`](crate::AuthClient) returns, each
//! with a stable code and an HTTP status. How an error is rendered is the HTTP module's job.

use std::error::Error as StdError;
use std::fmt;
use std::sync::Arc;

use http::StatusCode;

/// The cause of an error, shared so that errors stay `Clone`.
pub type Cause = Arc<dyn StdError + Send + Sync>;

/// A [`Cause`] from any error or message.
pub(crate) fn cause(err: impl Into<Box<dyn StdError + Send + Sync>>) -> Cause {
    Arc::from(err.into())
}

/// Why a store or a backend could not do what was asked.
///
/// A backend of the app's own reports a database it cannot reach as
/// [`unavailable`](Self::unavailable): the layer answers 503 and the browser or provider retries.
///
/// ```
/// use auth_layer::StoreError;
///
/// fn read_row() -> Result<Vec<u8>, std::io::Error> {
///     Err(std::io::Error::other("database is locked"))
/// }
/// let err = read_row().map_err(|e| StoreError::unavailable("sqlite", e)).unwrap_err();
/// assert!(matches!(err, StoreError::Unavailable { .. }));
/// ```
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The backend could not be reached or failed (the layer answers 503). Retrying later may
    /// work; nothing that was committed before is lost.
    #[error("the {backend} store is unavailable")]
    Unavailable {
        /// Which backend: "Redis", "PostgreSQL", or the name a custom backend gives.
        backend: &'static str,
        /// What failed.
        #[source]
        source: Cause,
    },
    /// A record could not be written in its stored form (a bug in the record's `Serialize`).
    #[error("a `{record}` record does not serialize")]
    Encode {
        /// The record's store name.
        record: &'static str,
        /// What the encoder said.
        #[source]
        source: Cause,
    },
    /// The session is larger than the store can keep (the cookie store: about 30 KB).
    #[error("the session is {size} bytes sealed, more than the store can carry ({limit}); use a server-side store")]
    TooLarge {
        /// The sealed session's size in bytes.
        size: usize,
        /// The most the store keeps.
        limit: usize,
    },
    /// The store cannot do this at all.
    #[error("the session store does not support {0}")]
    Unsupported(&'static str),
}

impl StoreError {
    /// An [`Unavailable`](Self::Unavailable) error of `backend`, caused by `err`.
    pub fn unavailable(backend: &'static str, err: impl Into<Box<dyn StdError + Send + Sync>>) -> Self {
        Self::Unavailable { backend, source: cause(err) }
    }

    /// An [`Encode`](Self::Encode) error of `record`, caused by `err`.
    pub fn encode(record: &'static str, err: impl Into<Box<dyn StdError + Send + Sync>>) -> Self {
        Self::Encode { record, source: cause(err) }
    }
}

/// What went wrong talking to the provider or checking what it sent.
///
/// ```
/// use auth_layer::{AuthError, ProviderError};
///
/// // What an app's own route might tell apart: the user must log in again, or try later.
/// fn advice(err: &AuthError) -> &'static str {
///     match err {
///         AuthError::Provider(ProviderError::InvalidGrant(_)) => "your session ended; log in again",
///         AuthError::Provider(ProviderError::Unreachable(_)) => "the login service is down; try again soon",
///         _ => "something went wrong",
///     }
/// }
/// let dead = AuthError::Provider(ProviderError::InvalidGrant("refresh token revoked".into()));
/// assert_eq!(advice(&dead), "your session ended; log in again");
/// assert_eq!(dead.status().as_u16(), 401);
/// ```
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum ProviderError {
    /// Discovery failed at start: the provider could not be reached or its metadata is unusable.
    #[error("provider discovery failed")]
    Discovery(#[source] Cause),
    /// The provider could not be reached.
    #[error("the provider is unreachable")]
    Unreachable(#[source] Cause),
    /// The token endpoint refused the request.
    #[error("the token endpoint refused the request: {0}")]
    TokenRefused(String),
    /// The token endpoint answered `invalid_grant`: the refresh token is dead (expired, revoked,
    /// or already used under rotation).
    #[error("the provider refused the refresh token: {0}")]
    InvalidGrant(String),
    /// A logout token failed a check.
    #[error("the logout token was rejected: {0}")]
    InvalidLogoutToken(String),
    /// The token endpoint answered with something that is not a token response.
    #[error("the token endpoint's answer is not a valid token response: {0}")]
    BadTokenResponse(String),
    /// The ID token failed a check.
    #[error("the ID token was rejected: {0}")]
    InvalidIdToken(String),
}

/// Why an auth operation failed.
///
/// What the layer answers for each error, and what reaches the browser:
///
/// ```
/// use auth_layer::{AuthError, StoreError};
///
/// let err = AuthError::NotAuthenticated;
/// assert_eq!((err.status().as_u16(), err.code()), (401, "not_authenticated"));
///
/// // A store that is down: 503, and the page never names the server.
/// let err = AuthError::from(StoreError::unavailable("redis", "10.0.0.7:6379: connection refused"));
/// assert_eq!((err.status().as_u16(), err.code()), (503, "store_unavailable"));
/// assert!(!err.public_message().contains("10.0.0.7"));
/// ```
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
    /// The callback has no `iss` though the provider announced that it always sends one
    /// (RFC 9207, 2.4: a response without it may come from another provider).
    #[error("the callback has no iss, which the provider announced it always sends")]
    MissingIssuer,
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
    /// A silent login (`prompt=none`) came back without a login (the user is not logged in at
    /// the provider, or must consent): the browser goes back to `return_to`, anonymous.
    #[error("the silent login came back without a login ({error})")]
    SilentLoginDeclined {
        /// The provider's error, e.g. `login_required`.
        error: String,
        /// Where the browser was going.
        return_to: String,
    },
    /// The session's authentication is not strong or recent enough for this route (RFC 9470):
    /// a new login with these requirements is needed.
    #[error("a stronger or more recent authentication is needed (acr_values {acr_values:?}, max_age {max_age:?})")]
    InsufficientAuthentication {
        /// The authentication context classes the route accepts, space-separated.
        acr_values: Option<String>,
        /// The oldest authentication the route accepts, in seconds.
        max_age: Option<u64>,
    },
    /// A login a step-up guard started came back still short of what the guard needs (the
    /// provider could not or would not authenticate the user that way): refused with 403, so
    /// that the guard does not send the browser round again. The session from before stays.
    #[error("the step-up login came back short of what the route needs: {0}")]
    StepUpFailed(String),
    /// The client's parts do not fit together (a feature asked of a store that cannot give
    /// it, such as a listing of sessions from the cookie store): fixed in code, not by retrying.
    #[error("misconfigured: {0}")]
    Misconfigured(String),
}

impl AuthError {
    /// A stable, machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidRequest(_) => "invalid_request",
            Self::MissingTransaction => "missing_transaction",
            Self::ProviderRefused { .. } => "provider_refused",
            Self::IssuerMismatch(_) | Self::MissingIssuer => "issuer_mismatch",
            Self::Provider(ProviderError::InvalidIdToken(_)) => "invalid_id_token",
            Self::Provider(ProviderError::TokenRefused(_)) => "token_refused",
            Self::Provider(ProviderError::InvalidGrant(_)) => "refresh_refused",
            Self::Provider(ProviderError::InvalidLogoutToken(_)) => "invalid_logout_token",
            Self::Provider(ProviderError::BadTokenResponse(_)) => "bad_token_response",
            Self::Provider(ProviderError::Unreachable(_) | ProviderError::Discovery(_)) => "provider_unavailable",
            Self::Store(StoreError::TooLarge { .. }) => "session_too_large",
            Self::Store(StoreError::Encode { .. }) => "session_not_encodable",
            Self::Store(StoreError::Unavailable { .. } | StoreError::Unsupported(_)) => "store_unavailable",
            Self::NotAuthenticated => "not_authenticated",
            Self::SilentLoginDeclined { .. } => "login_required",
            Self::InsufficientAuthentication { .. } | Self::StepUpFailed(_) => "insufficient_user_authentication",
            Self::MissingRefreshToken => "missing_refresh_token",
            Self::Misconfigured(_) => "misconfigured",
        }
    }

    /// What a response body says of this error: a fixed text per [`code`](Self::code), never
    /// the error's details (a database's error, a provider's description, a parameter's value),
    /// which go to the logs. Text a request can choose (an `error_description` in a crafted
    /// callback URL) never reaches a page. For a provider's refusal, the OAuth error code is
    /// named when it is a plain code (`access_denied`, `login_required`, ...).
    pub fn public_message(&self) -> std::borrow::Cow<'static, str> {
        let fixed = match self {
            Self::InvalidRequest(_) => "The request is missing a parameter or has one that is not acceptable.",
            Self::MissingTransaction => "No login in progress matches this response; please log in again.",
            Self::ProviderRefused { error, .. } => {
                let plain = !error.is_empty()
                    && error.len() <= 64
                    && error.bytes().all(|b| b.is_ascii_lowercase() || b == b'_');
                return if plain {
                    format!("The identity provider did not complete the login ({error}).").into()
                } else {
                    "The identity provider did not complete the login.".into()
                };
            }
            Self::IssuerMismatch(_) | Self::MissingIssuer => {
                "The login response may come from another identity provider."
            }
            Self::Provider(ProviderError::InvalidIdToken(_)) => "The identity provider's ID token failed a check.",
            Self::Provider(ProviderError::TokenRefused(_)) => "The identity provider refused to issue tokens.",
            Self::Provider(ProviderError::InvalidGrant(_)) => {
                "The session can no longer be refreshed; please log in again."
            }
            Self::Provider(ProviderError::InvalidLogoutToken(_)) => "The logout token failed a check.",
            Self::Provider(ProviderError::BadTokenResponse(_)) => {
                "The identity provider's answer is not a valid token response."
            }
            Self::Provider(ProviderError::Unreachable(_) | ProviderError::Discovery(_)) => {
                "The identity provider cannot be reached; please try again later."
            }
            Self::Store(StoreError::TooLarge { .. }) => "The session is too large to be stored.",
            Self::Store(StoreError::Encode { .. }) => "The session could not be stored.",
            Self::Store(StoreError::Unavailable { .. } | StoreError::Unsupported(_)) => {
                "Sessions are unavailable; please try again later."
            }
            Self::NotAuthenticated => "Please log in.",
            Self::SilentLoginDeclined { .. } => "Please log in.",
            Self::InsufficientAuthentication { .. } => "Please log in again to continue.",
            Self::StepUpFailed(_) => "This page needs a stronger or more recent sign-in than the one just made.",
            Self::MissingRefreshToken => "The access token has expired and cannot be refreshed; please log in again.",
            Self::Misconfigured(_) => "The app's sign-in is not set up for this.",
        };
        fixed.into()
    }

    /// The HTTP status this error answers with.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::NotAuthenticated
            | Self::SilentLoginDeclined { .. }
            | Self::InsufficientAuthentication { .. }
            | Self::MissingRefreshToken
            | Self::Provider(ProviderError::InvalidGrant(_)) => StatusCode::UNAUTHORIZED,
            Self::Provider(ProviderError::Unreachable(_) | ProviderError::Discovery(_))
            | Self::Store(StoreError::Unavailable { .. } | StoreError::Unsupported(_)) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            // The app's configuration, not the store's health nor the request: retrying cannot help.
            Self::Store(StoreError::TooLarge { .. } | StoreError::Encode { .. }) | Self::Misconfigured(_) => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
            Self::Provider(ProviderError::BadTokenResponse(_)) => StatusCode::BAD_GATEWAY,
            Self::StepUpFailed(_) => StatusCode::FORBIDDEN,
            _ => StatusCode::BAD_REQUEST,
        }
    }
}

/// An error and its sources on one line, for logs (never for responses).
///
/// Logged with `?` (its `Debug`): quoted, with control characters escaped, since an error's
/// text may carry what a request or an unverified token said (a callback's
/// `error_description`, a logout token's `iss`), and a raw `%0A` there would forge a log line.
pub(crate) struct Chain<'a>(pub(crate) &'a (dyn StdError + 'static));

impl fmt::Debug for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.to_string(), f)
    }
}

impl fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(cause) = source {
            write!(f, ": {cause}")?;
            source = cause.source();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_and_provider_outages_are_503() {
        assert_eq!(
            AuthError::Store(StoreError::unavailable("Redis", "down")).status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(
            AuthError::Provider(ProviderError::Unreachable(cause("x"))).status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(AuthError::NotAuthenticated.status(), StatusCode::UNAUTHORIZED);
    }

    #[test]
    fn a_session_too_large_is_not_reported_as_a_store_outage() {
        let err = AuthError::Store(StoreError::TooLarge { size: 40_000, limit: 30_400 });
        assert_eq!(err.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(err.code(), "session_too_large");
    }

    #[test]
    fn store_errors_keep_their_cause_and_logs_show_it() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "connection refused");
        let err = AuthError::Store(StoreError::unavailable("Redis", io));
        // `AuthError::Store` is transparent: its source is the store error's cause.
        assert_eq!(err.source().expect("the cause").to_string(), "connection refused");
        assert_eq!(Chain(&err).to_string(), "the Redis store is unavailable: connection refused");
    }
}
