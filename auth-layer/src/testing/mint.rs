//! [`TestSession`]: sessions made without a login, for an app's tests of its own handlers.

use std::time::Duration;

use http::HeaderValue;
use serde_json::{Map, Value};

use crate::client::AuthClient;
use crate::config::AuthConfig;
use crate::error::AuthError;
use crate::model::{SessionData, TokenSet, User};
use crate::store::{CookieSessionStore, SessionStore, StoreContext};

/// A session for a user, written into the client's session store as a login would write it,
/// and the `Cookie` header a browser holding it would send: an app tests its guarded handlers
/// with [`tower::ServiceExt::oneshot`](https://docs.rs/tower/latest/tower/trait.ServiceExt.html#method.oneshot)
/// and no provider, in whichever store it runs (cookie, memory, Redis, PostgreSQL, its own).
///
/// ```
/// # async fn demo(client: auth_layer::AuthClient) -> Result<(), auth_layer::AuthError> {
/// use auth_layer::testing::TestSession;
///
/// let cookie = TestSession::for_user("auth0|alice").claim("email", "alice@example.com").mint(&client).await?;
/// // `cookie` is the `Cookie` header of a request from Alice's browser.
/// # let _ = cookie; Ok(()) }
/// ```
///
/// A whole test (a guarded axum route: 200 with a minted session, 401 without, expired or
/// forged) is in the guide's chapter on testing (`auth_layer::guide::testing`, built with the
/// `axum` feature).
///
/// The client may be one built by [`AuthClientBuilder::build_without_provider`](crate::AuthClientBuilder::build_without_provider)
/// (no provider at all) or the app's real one (a test that also runs a provider). The session
/// holds what the app's handlers read: the user's claims (`sub`, any added, and `iss`, `sid`
/// when given), an access token and a refresh token when asked for. Its ID token is a
/// placeholder: nothing checks it again after a login, and a logout sends it only as a hint.
#[derive(Clone)]
pub struct TestSession {
    claims: Map<String, Value>,
    /// Access tokens with their scope and lifetime from the session's making.
    access_tokens: Vec<(String, String, Duration)>,
    refresh_token: Option<String>,
    age: Option<Duration>,
    expired: bool,
}

impl TestSession {
    /// A session of the user `sub`, made now.
    pub fn for_user(sub: impl Into<String>) -> Self {
        let mut claims = Map::new();
        claims.insert("sub".into(), Value::String(sub.into()));
        Self { claims, access_tokens: Vec::new(), refresh_token: None, age: None, expired: false }
    }

    /// Adds the claim `name` (as the ID token or userinfo would have given it).
    pub fn claim(mut self, name: impl Into<String>, value: impl Into<Value>) -> Self {
        self.claims.insert(name.into(), value.into());
        self
    }

    /// Gives the session an access token for the login's audience and `scope`, expiring
    /// `expires_in` from now (what [`Session::access_token`](crate::Session::access_token)
    /// returns while it lasts).
    pub fn access_token(mut self, token: impl Into<String>, scope: impl Into<String>, expires_in: Duration) -> Self {
        self.access_tokens.push((token.into(), scope.into(), expires_in));
        self
    }

    /// Gives the session a refresh token (used only if a handler asks for a fresh access token,
    /// which then goes to the provider).
    pub fn refresh_token(mut self, token: impl Into<String>) -> Self {
        self.refresh_token = Some(token.into());
        self
    }

    /// Makes the session as if its user logged in `age` ago and has been active since: the
    /// absolute limit counts from then.
    pub fn logged_in_ago(mut self, age: Duration) -> Self {
        self.age = Some(age);
        self
    }

    /// Makes the session one past its limits (logged in and last active longer ago than the
    /// configuration allows): the layer refuses it (401 where a user is required) and deletes it.
    pub fn expired(mut self) -> Self {
        self.expired = true;
        self
    }

    /// The session this makes for `config`'s client.
    pub fn data(&self, config: &AuthConfig) -> SessionData {
        let now = config.clock().now();
        let created_at = if self.expired {
            now.saturating_sub(config.absolute_duration.as_secs().max(config.inactivity_duration.as_secs()) + 1)
        } else {
            now.saturating_sub(self.age.map_or(0, |age| age.as_secs()))
        };
        let user = User::from_id_token_claims(self.claims.clone());
        let mut session = SessionData::new(user, placeholder_id_token(&self.claims), created_at).with_tenant(config);
        session.touched_at = if self.expired { created_at } else { now };
        session.refresh_token = self.refresh_token.clone();
        // Expiries from the configuration's clock, as a login's would be.
        session.token_sets = self
            .access_tokens
            .iter()
            .map(|(token, scope, expires_in)| TokenSet {
                audience: None,
                scope: scope.clone(),
                access_token: token.clone(),
                expires_at: Some(now.saturating_add(expires_in.as_secs())),
            })
            .collect();
        session
    }

    /// Writes the session into `client`'s session store and returns the `Cookie` header that
    /// carries it (every cookie the store set, chunks included).
    pub async fn mint(&self, client: &AuthClient) -> Result<HeaderValue, AuthError> {
        let session = self.data(client.config());
        let mut ctx = StoreContext::default();
        client.session_store().set(&mut ctx, &session).await?;
        Ok(cookie_header(&ctx))
    }

    /// A session cookie sealed with a secret that is not the app's (as an attacker would forge
    /// one): every store refuses it, and the request has no session. Nothing is written.
    pub async fn mint_with_foreign_secret(&self, client: &AuthClient) -> Result<HeaderValue, AuthError> {
        let config = client.config();
        let mut foreign = config.clone();
        foreign.secrets = vec!["a secret that is not the app's, 32 bytes or more".into()];
        let mut ctx = StoreContext::default();
        CookieSessionStore::new(&foreign).set(&mut ctx, &self.data(config)).await?;
        Ok(cookie_header(&ctx))
    }
}

impl std::fmt::Debug for TestSession {
    /// The claims and times; no token (a test's tokens may be real ones).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestSession")
            .field("claims", &self.claims)
            .field("access_tokens", &self.access_tokens.len())
            .field("refresh_token", &self.refresh_token.is_some())
            .field("age", &self.age)
            .field("expired", &self.expired)
            .finish()
    }
}

/// An unsigned token carrying `claims`, in the ID token's place (never checked after a login).
fn placeholder_id_token(claims: &Map<String, Value>) -> String {
    use base64::Engine;
    let encode = |value: &Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(value.to_string());
    let header = serde_json::json!({"alg": "none", "typ": "JWT"});
    format!("{}.{}.", encode(&header), encode(&Value::Object(claims.clone())))
}

/// The `Cookie` header a browser would send after the response `ctx` describes: every cookie
/// it set, whatever its `Max-Age` (an expired session's is still sent, to be refused).
fn cookie_header(ctx: &StoreContext) -> HeaderValue {
    let pairs: Vec<String> = ctx.response_cookies().map(|(name, value)| format!("{name}={value}")).collect();
    HeaderValue::from_str(&pairs.join("; ")).expect("cookie names and values are header-safe")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_names_no_token_and_expiries_follow_the_configurations_clock() {
        let session = TestSession::for_user("auth0|alice")
            .access_token("the-access-token", "openid", Duration::from_secs(600))
            .refresh_token("the-refresh-token");
        let printed = format!("{session:?}");
        assert!(!printed.contains("the-access-token") && !printed.contains("the-refresh-token"), "{printed}");
        assert!(printed.contains("auth0|alice"));
        let now = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(5_000_000));
        let config = crate::config::test_config(now).build().unwrap();
        let data = session.data(&config);
        assert_eq!(data.token_sets[0].expires_at, Some(5_000_600), "600 s from the configured clock's now");
        assert_eq!((data.created_at, data.touched_at), (5_000_000, 5_000_000));
    }
}
