//! Entry points for the fuzz targets in `fuzz/` (built with `--cfg fuzzing`, and for this
//! module's tests): each runs one parser of untrusted input to completion. A panic here is a
//! bug. Each returns whether its input got through the code the target is named after, and the
//! tests below feed each one a valid input: a target that stops reaching its decoder fails
//! there, not silently in a fuzz run that finds nothing.

use std::sync::OnceLock;

use http::HeaderValue;

use crate::backend::{Backend, MokaBackend};
use crate::config::AuthConfig;
use crate::model::SessionData;
use crate::store::{CookieSessionStore, SessionStore, StoreContext};

fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap())
}

fn config() -> &'static AuthConfig {
    static CONFIG: OnceLock<AuthConfig> = OnceLock::new();
    CONFIG.get_or_init(|| {
        AuthConfig::builder()
            .issuer("https://issuer.example/")
            .client_id("fuzz")
            .client_secret("fuzz")
            .secret("fuzz-secret-fuzz-secret-fuzz-secret-00")
            .base_url("https://app.example")
            .build()
            .unwrap()
    })
}

/// The cookie opener and chunk assembler: a `Cookie` header as a browser could send it.
/// True when it opened to a session.
pub fn cookie_header(data: &[u8]) -> bool {
    let Ok(value) = HeaderValue::from_bytes(data) else { return false };
    let store = CookieSessionStore::new(config());
    let mut ctx = StoreContext::from_cookie_headers([&value]);
    matches!(runtime().block_on(store.get(&mut ctx)), Ok(Some(_)))
}

/// The logout-token parser and claim checks. True when the claims passed their checks.
pub fn logout_token(data: &[u8]) -> bool {
    let Ok(token) = std::str::from_utf8(data) else { return false };
    let Ok((header, claims, _, _)) = crate::oidc::parse_jwt(token) else { return false };
    let header_ok = crate::oidc::check_logout_header(&header).is_ok();
    let claims_ok = crate::oidc::check_logout_claims(
        &claims,
        "https://issuer.example/",
        "fuzz",
        1_000_000,
        crate::oidc::LogoutTokenLimits { skew: 60, max_age: 120 },
    )
    .is_ok();
    header_ok && claims_ok
}

/// The callback's query handling. True when the query parsed.
pub fn callback_query(data: &[u8]) -> bool {
    let Ok(query) = std::str::from_utf8(data) else { return false };
    let _ = crate::return_to::validate(query);
    crate::client::parse_callback_query(query).is_ok()
}

/// The typed stores' read path over a backend (unsealing, then the record's codec): bytes
/// stored under a session's key, opened as a session and as a JSON-envelope record. True when
/// either decoded.
pub fn stored_record(data: &[u8]) -> bool {
    // `TypedStore::new` writes and reads bytes, moka included (only `TypedStore::in_memory`
    // keeps records as they are, which would never reach a decoder).
    let backend = MokaBackend::new();
    let sessions = crate::record::TypedStore::<SessionData, _>::new(backend.clone(), &config().secrets);
    let plain = crate::record::TypedStore::<crate::model::TransactionData, _>::new(backend.clone(), &config().secrets);
    runtime().block_on(async {
        backend.put("session:fuzz", bytes::Bytes::copy_from_slice(data), None, vec![]).await.expect("moka");
        let session = matches!(sessions.get("fuzz").await, Ok(Some(_)));
        let transaction = matches!(plain.get_by_full_key("session:fuzz").await, Ok(Some(_)));
        session || transaction
    })
}

/// The cookie store's session decoder (compact and JSON), on what a cookie opens to. Behind the
/// AEAD only our own writes reach it; fuzzed all the same, as the last line of defence. A
/// session it accepts must encode and decode back to itself.
pub fn session_plaintext(data: &[u8]) -> bool {
    let Ok(session) = crate::model::compact::decode(data) else { return false };
    let again = crate::model::compact::encode(&session).expect("a decoded session encodes");
    assert_eq!(crate::model::compact::decode(&again).expect("its encoding decodes"), session);
    true
}

#[cfg(test)]
mod tests {
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use http::header::SET_COOKIE;

    use super::*;
    use crate::record::TypedStore;

    fn session() -> SessionData {
        let mut session = crate::model::compact::tests::realistic();
        session.id = "fuzz".into();
        session
    }

    #[test]
    fn cookie_header_reaches_the_cookie_opener() {
        let mut ctx = StoreContext::default();
        runtime().block_on(CookieSessionStore::new(config()).set(&mut ctx, &session())).unwrap();
        let mut response = http::HeaderMap::new();
        ctx.apply(&mut response);
        let cookies: Vec<String> = response
            .get_all(SET_COOKIE)
            .iter()
            .map(|line| line.to_str().unwrap().split(';').next().unwrap().to_owned())
            .collect();
        assert!(cookie_header(cookies.join("; ").as_bytes()), "a cookie the store wrote opens");
        assert!(!cookie_header(b"_a0_session=garbage"));
    }

    #[test]
    fn stored_record_reaches_the_session_decoder() {
        let backend = MokaBackend::new();
        let sessions = TypedStore::<SessionData, _>::new(backend.clone(), &config().secrets);
        let stored = runtime().block_on(async {
            sessions.set(&session()).await.unwrap();
            backend.get("session:fuzz").await.unwrap().expect("stored as bytes")
        });
        assert!(stored_record(&stored), "a sealed session decodes");
        assert!(!stored_record(b"garbage"));
    }

    #[test]
    fn logout_token_reaches_the_claim_checks() {
        let part = |json: &str| URL_SAFE_NO_PAD.encode(json);
        let header = part(r#"{"alg":"RS256","typ":"logout+jwt"}"#);
        let claims = part(
            r#"{"iss":"https://issuer.example/","aud":"fuzz","iat":1000000,"exp":1000100,"jti":"j","sid":"s",
                "events":{"http://schemas.openid.net/event/backchannel-logout":{}}}"#,
        );
        assert!(logout_token(format!("{header}.{claims}.c2ln").as_bytes()), "a well-formed token passes the checks");
        assert!(!logout_token(b"a.b.c"));
    }

    #[test]
    fn callback_query_and_session_plaintext_reach_their_parsers() {
        assert!(callback_query(b"code=c&state=s"));
        let plain = crate::model::compact::encode(&session()).unwrap();
        assert!(session_plaintext(&plain));
        assert!(!session_plaintext(b"\x02garbage"));
    }
}
