//! Shared by the benchmarks (`benches/`) and the `loadbench` server: the session they all
//! measure. The library never depends on this crate.

use auth_layer::{SessionData, TokenSet, User};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// About `n` characters of base64url (unpadded, as in a JWT) of filler bytes, for tokens of
/// realistic size.
fn filler(n: usize, seed: u8) -> String {
    let bytes: Vec<u8> = (0..n * 3 / 4).map(|i| (i * 7 + usize::from(seed)) as u8).collect();
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Resident set size of this process, in bytes (Linux).
pub fn rss() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("Linux /proc");
    let pages: u64 = statm.split_whitespace().nth(1).and_then(|p| p.parse().ok()).expect("statm's second field");
    pages * 4096
}

/// The benches' app configuration (no provider is reached).
pub fn bench_config() -> auth_layer::AuthConfig {
    auth_layer::AuthConfig::builder()
        .issuer("https://op.example.com")
        .client_id("bench")
        .client_secret("bench-client-secret")
        .secret("bench-secret-bench-secret-bench-secret-00")
        .base_url("https://app.example.com")
        .build()
        .expect("a valid configuration")
}

/// A realistic session of a test user: the usual profile claims, an RS256-sized ID token
/// (~900 bytes), an access token (~700 bytes) and a refresh token. About 2 KB as JSON.
pub fn test_session() -> SessionData {
    test_session_of("auth0|bench-user-0001", "bench-sid-0001")
}

/// [`test_session`] for another user and provider session.
pub fn test_session_of(sub: &str, sid: &str) -> SessionData {
    let claims = serde_json::json!({
        "sub": sub,
        "sid": sid,
        "name": "Bench User",
        "nickname": "bench",
        "email": "bench.user@example.com",
        "email_verified": true,
        "picture": "https://example.com/avatars/bench-user.png",
        "updated_at": "2026-11-01T12:00:00.000Z",
    });
    let user = User::from_id_token_claims(claims.as_object().expect("an object").clone());
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("after 1970").as_secs();
    let id_token = format!("{}.{}.{}", filler(100, 1), filler(450, 2), filler(342, 3));
    let mut session = SessionData::new(user, id_token, now);
    session.refresh_token = Some(filler(43, 4));
    session.token_sets.push(TokenSet {
        audience: Some("https://api.example.com".into()),
        scope: "openid profile email offline_access read:orders".into(),
        access_token: format!("{}.{}.{}", filler(100, 5), filler(260, 6), filler(342, 7)),
        expires_at: Some(now + 86_400),
    });
    session
}
