//! The records auth-layer keeps: the session ([`StateData`], with the [`User`]'s claims) and the
//! login attempt in flight ([`TransactionData`]). Stores persist them; they know nothing of
//! where they are kept.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The signed-in user: the claims of the verified ID token, protocol claims removed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct User {
    claims: Map<String, Value>,
}

/// ID-token claims that describe the token, not the user; they are not kept in the session.
const PROTOCOL_CLAIMS: &[&str] =
    &["aud", "exp", "iat", "nbf", "nonce", "at_hash", "c_hash", "azp", "jti", "auth_time", "acr", "amr"];

impl User {
    /// The user from an ID token's verified claims.
    pub fn from_id_token_claims(mut claims: Map<String, Value>) -> Self {
        claims.retain(|name, _| !PROTOCOL_CLAIMS.contains(&name.as_str()));
        Self { claims }
    }

    /// The subject: the user's id at the provider.
    pub fn sub(&self) -> &str {
        self.claim_str("sub").unwrap_or_default()
    }

    /// The `name` claim, when the provider sent one.
    pub fn name(&self) -> Option<&str> {
        self.claim_str("name")
    }

    /// The `email` claim, when the provider sent one.
    pub fn email(&self) -> Option<&str> {
        self.claim_str("email")
    }

    /// The provider's session id (`sid`), when the provider sent one.
    pub fn sid(&self) -> Option<&str> {
        self.claim_str("sid")
    }

    /// Any claim, by name.
    pub fn claim(&self, name: &str) -> Option<&Value> {
        self.claims.get(name)
    }

    /// A string claim, by name.
    pub fn claim_str(&self, name: &str) -> Option<&str> {
        self.claims.get(name).and_then(Value::as_str)
    }

    /// All claims.
    pub fn claims(&self) -> &Map<String, Value> {
        &self.claims
    }

    /// All claims, to change before the session is saved.
    pub fn claims_mut(&mut self) -> &mut Map<String, Value> {
        &mut self.claims
    }
}

/// An access token for one audience and scope, with its expiry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenSet {
    /// The audience it was issued for, when one was asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audience: Option<String>,
    /// The scope granted.
    #[serde(default)]
    pub scope: String,
    /// The access token.
    pub access_token: String,
    /// When it expires, in seconds since the Unix epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<u64>,
}

/// Bookkeeping auth-layer keeps with every session.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionMeta {
    /// A random id of this session, new at every login.
    pub id: String,
    /// When the user logged in (seconds since the Unix epoch): the absolute limit counts from here.
    pub created_at: u64,
    /// When the session was last renewed: the inactivity limit counts from here.
    pub touched_at: u64,
}

/// A session: who is logged in and the tokens the provider gave.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StateData {
    /// The user's claims.
    pub user: User,
    /// The raw ID token, kept for `id_token_hint` at logout.
    pub id_token: String,
    /// The refresh token, when the provider gave one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    /// Access tokens by audience and scope.
    #[serde(default)]
    pub token_sets: Vec<TokenSet>,
    /// Session id and timestamps.
    pub meta: SessionMeta,
}

impl StateData {
    /// When the session ends, given the absolute and inactivity limits (seconds since the epoch).
    pub fn expires_at(&self, absolute: u64, inactivity: u64) -> u64 {
        self.meta.created_at.saturating_add(absolute).min(self.meta.touched_at.saturating_add(inactivity))
    }
}

/// A login in flight, between the redirect to the provider and the callback.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TransactionData {
    /// The `state` sent to the provider; the transaction's key.
    pub state: String,
    /// The `nonce` the ID token must carry.
    pub nonce: String,
    /// The PKCE code verifier.
    pub code_verifier: String,
    /// Where to send the browser after login: a same-origin path.
    pub return_to: String,
    /// Application state passed to [`AuthClient::start_login`](crate::AuthClient::start_login).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_state: Option<Value>,
    /// When the login started (seconds since the Unix epoch).
    pub created_at: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocol_claims_are_dropped_and_user_claims_kept() {
        let claims =
            serde_json::json!({"sub": "u1", "name": "Ann", "nonce": "n", "aud": "c", "exp": 1, "iat": 1, "sid": "s"});
        let user = User::from_id_token_claims(claims.as_object().unwrap().clone());
        assert_eq!(user.sub(), "u1");
        assert_eq!(user.name(), Some("Ann"));
        assert_eq!(user.sid(), Some("s"));
        assert!(user.claim("nonce").is_none() && user.claim("aud").is_none() && user.claim("exp").is_none());
    }

    #[test]
    fn session_ends_at_the_earlier_of_its_two_limits() {
        let meta = SessionMeta { id: "x".into(), created_at: 1_000, touched_at: 5_000 };
        let data = StateData {
            user: User::from_id_token_claims(Map::new()),
            id_token: String::new(),
            refresh_token: None,
            token_sets: vec![],
            meta,
        };
        assert_eq!(data.expires_at(10_000, 100), 5_100);
        assert_eq!(data.expires_at(4_050, 100), 5_050);
    }
}
