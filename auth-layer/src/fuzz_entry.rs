//! Entry points for the fuzz targets in `fuzz/` (built only with `--cfg fuzzing`): each runs
//! one parser of untrusted input to completion. A panic here is a bug.

use std::sync::OnceLock;

use http::HeaderValue;

use crate::AuthConfig;
use crate::backend::{Backend, MokaBackend};
use crate::data::StateData;
use crate::store::{CookieStateStore, StateStore, StoreContext};

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
pub fn cookie_header(data: &[u8]) {
    let Ok(value) = HeaderValue::from_bytes(data) else { return };
    let store = CookieStateStore::new(config());
    let mut ctx = StoreContext::from_cookie_headers([&value]);
    let _ = runtime().block_on(store.get(&mut ctx));
}

/// The logout-token parser and claim checks.
pub fn logout_token(data: &[u8]) {
    let Ok(token) = std::str::from_utf8(data) else { return };
    if let Ok((header, claims, _, _)) = crate::client::parse_jwt(token) {
        let _ = crate::client::check_logout_header(&header);
        let _ = crate::client::check_logout_claims(&claims, "https://issuer.example/", "fuzz", 1_000_000, 60);
    }
}

/// The callback's query handling.
pub fn callback_query(data: &[u8]) {
    let Ok(query) = std::str::from_utf8(data) else { return };
    let _ = crate::auth_client::parse_callback_query(query);
    let _ = crate::return_to::validate(query);
}

/// The derive-generated decoders: bytes stored under a session's key, opened as a session.
pub fn stored_record(data: &[u8]) {
    let backend = MokaBackend::new();
    let sessions = crate::record::TypedStore::<StateData, _>::new(backend.clone(), &config().secrets);
    runtime().block_on(async {
        backend.put("session:fuzz", bytes::Bytes::copy_from_slice(data), None, vec![]).await.unwrap();
        let _ = sessions.get("fuzz").await;
    });
    let plain = crate::record::TypedStore::<crate::data::TransactionData, _>::new(backend, &config().secrets);
    let _ = runtime().block_on(plain.get_by_full_key("session:fuzz"));
}

/// The cookie store's session decoder (compact and JSON), on what a cookie opens to. Behind the
/// AEAD only our own writes reach it; fuzzed all the same, as the last line of defence. A
/// session it accepts must encode and decode back to itself.
pub fn session_plaintext(data: &[u8]) {
    if let Ok(session) = crate::store::compact::decode(data) {
        let again = crate::store::compact::encode(&session).expect("a decoded session encodes");
        assert_eq!(crate::store::compact::decode(&again).expect("its encoding decodes"), session);
    }
}
