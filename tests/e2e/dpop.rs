//! DPoP-bound tokens (RFC 9449) and the FAPI 2.0 profile, against the real provider
//! (oidc-provider) with DPoP required for the client, its server nonces on, and its FAPI 2.0
//! profile: logins, refreshes and userinfo carry proofs, the provider's nonce is honoured with
//! one retry at each endpoint, the tokens come back bound, and a proof the app signs for an API
//! is taken once and refused when replayed.

use auth_layer::{AccessTokenOptions, AuthLayer, ClientAssertionAlg, DpopKey, StoreContext};
use auth_layer_tests::{Browser, ProviderOptions, TestEnv};
use reqwest::StatusCode;
use serde_json::Value;

fn app(client: auth_layer::AuthClient) -> axum::Router {
    axum::Router::new().layer(AuthLayer::new(client))
}

async fn profile(browser: &Browser, env: &TestEnv) -> StatusCode {
    browser.http.get(env.url("/auth/profile")).header("accept", "application/json").send().await.unwrap().status()
}

async fn stats(env: &TestEnv) -> Value {
    env.provider.stats().await
}

/// How many requests to `path` carried a proof, and how many answers asked for a nonce.
fn counted(stats: &Value, path: &str) -> (u64, u64) {
    (stats["dpop_proofs"][path].as_u64().unwrap_or(0), stats["use_dpop_nonce"][path].as_u64().unwrap_or(0))
}

/// The session of `browser`'s cookies, as a store context.
fn context(browser: &Browser, env: &TestEnv) -> StoreContext {
    let cookie = browser.cookie_header(&env.url("/"));
    StoreContext::from_cookie_headers([&cookie.parse().unwrap()])
}

/// `GET {issuer}/me` with `token` under `scheme` and `proof`: the provider's userinfo endpoint,
/// an API that takes DPoP-bound tokens. Its status and `DPoP-Nonce`.
async fn call_userinfo(env: &TestEnv, scheme: &str, token: &str, proof: Option<&str>) -> (StatusCode, Option<String>) {
    let mut request = reqwest::Client::new()
        .get(format!("{}/me", env.provider.issuer))
        .header("authorization", format!("{scheme} {token}"));
    if let Some(proof) = proof {
        request = request.header("dpop", proof);
    }
    let response = request.send().await.unwrap();
    let nonce = response.headers().get("dpop-nonce").map(|v| v.to_str().unwrap().to_owned());
    (response.status(), nonce)
}

#[tokio::test]
async fn dpop_bound_tokens_log_in_refresh_and_call_userinfo_with_the_providers_nonces() {
    let provider = ProviderOptions { dpop_bound: true, dpop_nonce: true, ..ProviderOptions::default() };
    let env = TestEnv::start_custom_with(provider, |c| c.dpop(true).fetch_userinfo(true), app).await;
    let browser = Browser::new();
    browser.login(&env.app_url, "pat").await;
    assert_eq!(profile(&browser, &env).await, StatusCode::OK, "the login with a DPoP-bound code completed");

    let after_login = stats(&env).await;
    // The authorization request named the key; the code exchange was sent again with the nonce
    // the provider asked for; userinfo (a server of its own nonces) likewise.
    let jkt = after_login["dpop_jkt"].as_str().expect("dpop_jkt sent with the authorization request");
    assert_eq!(jkt.len(), 43, "a SHA-256 thumbprint, base64url");
    assert_eq!(counted(&after_login, "/token"), (2, 1), "one nonce challenge, one retry: {after_login}");
    assert_eq!(counted(&after_login, "/me"), (2, 1), "userinfo: one nonce challenge, one retry");

    // A refresh: bound again, and the nonce the provider gave is reused (no new challenge).
    let mut ctx = context(&browser, &env);
    let token = env.client.access_token(&mut ctx, AccessTokenOptions::default().force_refresh()).await.unwrap();
    assert!(token.is_dpop());
    assert_eq!(token.token_type, "DPoP");
    assert_eq!(token.authorization(), format!("DPoP {}", token.access_token));
    let after_refresh = stats(&env).await;
    assert_eq!(after_refresh["refresh_grants"], 1);
    assert_eq!(counted(&after_refresh, "/token"), (3, 1), "the kept nonce served the refresh at once");

    // The app calls an API (userinfo) with the token and proofs it signs itself.
    let userinfo = format!("{}/me", env.provider.issuer);
    let (status, _) = call_userinfo(&env, "Bearer", &token.access_token, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "a DPoP-bound token is worth nothing without its key");
    let first = token.dpop_proof("GET", &userinfo, None).unwrap().unwrap();
    let (status, nonce) = call_userinfo(&env, "DPoP", &token.access_token, Some(&first)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "no nonce yet");
    let nonce = nonce.expect("the provider names its nonce");
    let proof = token.dpop_proof("GET", &userinfo, Some(&nonce)).unwrap().unwrap();
    let (status, _) = call_userinfo(&env, "DPoP", &token.access_token, Some(&proof)).await;
    assert_eq!(status, StatusCode::OK, "token and proof of its key, with the nonce");
    let (status, _) = call_userinfo(&env, "DPoP", &token.access_token, Some(&proof)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "the same proof again is a replay, refused by the provider");
    // A proof by another key is refused: the token is bound to the session's.
    let stranger = DpopKey::generate().proof("GET", &userinfo, Some(&token.access_token), Some(&nonce), now());
    let (status, _) = call_userinfo(&env, "DPoP", &token.access_token, Some(&stranger)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "another key's proof");

    // The logout revokes the session's refresh token, with a proof of its key.
    let logout = browser.http.get(env.url("/auth/logout")).header("accept", "text/html").send().await.unwrap();
    assert!(logout.status().is_redirection());
    assert_eq!(env.provider.revocations_settled(1).await, 1, "the provider took the revocation");
}

fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}

#[tokio::test]
async fn each_login_binds_a_key_of_its_own_and_the_session_keeps_it_for_refreshes_on_any_instance() {
    let provider = ProviderOptions { dpop_bound: true, ..ProviderOptions::default() };
    let env = TestEnv::start_custom_with(provider, |c| c.dpop(true), app).await;
    let (ann, bob) = (Browser::new(), Browser::new());
    ann.login(&env.app_url, "ann").await;
    let ann_jkt = stats(&env).await["dpop_jkt"].as_str().unwrap().to_owned();
    bob.login(&env.app_url, "bob").await;
    let bob_jkt = stats(&env).await["dpop_jkt"].as_str().unwrap().to_owned();
    assert_ne!(ann_jkt, bob_jkt, "a key per login");
    // Without nonces the provider takes a fresh proof at once.
    assert_eq!(counted(&stats(&env).await, "/token").1, 0);

    // Another instance (the same secret, no shared state): the cookie carries the key, so the
    // refresh there proves it.
    let config = env.client.config().clone();
    let other = auth_layer::AuthClient::new(config).await.unwrap();
    let mut ctx = context(&ann, &env);
    let session = other.session(&mut ctx).await.unwrap().unwrap();
    assert!(session.is_dpop_bound());
    let token = other.access_token(&mut ctx, AccessTokenOptions::default().force_refresh()).await;
    assert!(token.is_ok_and(|t| t.is_dpop()), "refreshed on another instance with the session's key");
}

#[tokio::test]
async fn a_process_key_binds_every_session_and_an_instance_with_another_key_cannot_refresh_them() {
    let key = DpopKey::generate();
    let provider = ProviderOptions { dpop_bound: true, dpop_nonce: true, ..ProviderOptions::default() };
    let shared = key.clone();
    let env = TestEnv::start_custom_with(provider, move |c| c.dpop_key(shared), app).await;
    let browser = Browser::new();
    browser.login(&env.app_url, "pat").await;
    assert_eq!(stats(&env).await["dpop_jkt"], key.thumbprint(), "the process's key");

    let base = env.client.config().clone();
    // The fleet's other instance holds the same key (from AUTH_DPOP_KEY): it refreshes.
    let same = auth_layer::AuthClient::new(base.clone()).await.unwrap();
    let mut ctx = context(&browser, &env);
    assert!(same.access_token(&mut ctx, AccessTokenOptions::default().force_refresh()).await.is_ok());
    assert_eq!(stats(&env).await["refresh_grants"], 1);

    // An instance with another key: refused before any call to the provider, the session ends.
    // Its key from PEM, as AUTH_DPOP_KEY gives it.
    let other_key = DpopKey::from_pem(&client_key_pair().0).unwrap();
    assert_ne!(other_key.thumbprint(), key.thumbprint());
    let other = auth_layer::AuthClient::new(
        auth_layer::AuthConfig::builder()
            .issuer(env.provider.issuer.clone())
            .client_id("test-app")
            .client_secret(auth_layer_tests::CLIENT_SECRET)
            .secret(auth_layer_tests::SECRET)
            .base_url(env.app_url.clone())
            .dpop_key(other_key)
            .build()
            .unwrap(),
    )
    .await
    .unwrap();
    let mut ctx = context(&browser, &env);
    let refused = other.access_token(&mut ctx, AccessTokenOptions::default().force_refresh()).await;
    assert!(
        matches!(&refused, Err(auth_layer::AuthError::Provider(auth_layer::ProviderError::InvalidGrant(why))) if why.contains("another process")),
        "{refused:?}"
    );
    assert_eq!(stats(&env).await["refresh_grants"], 1, "no refresh was tried with a key the tokens are not bound to");
    assert!(other.session(&mut ctx).await.unwrap().is_none(), "the session ended there");
}

#[tokio::test]
async fn a_session_started_before_dpop_was_turned_on_keeps_its_bearer_tokens() {
    let env = TestEnv::start_custom_with(ProviderOptions::default(), |c| c, app).await;
    let browser = Browser::new();
    browser.login(&env.app_url, "pat").await;
    // The same app restarted with DPoP on (the same secret reads the same cookie).
    assert!(!env.client.config().dpop());
    let with_dpop = auth_layer::AuthConfig::builder()
        .issuer(env.provider.issuer.clone())
        .client_id("test-app")
        .client_secret(auth_layer_tests::CLIENT_SECRET)
        .secret(auth_layer_tests::SECRET)
        .base_url(env.app_url.clone())
        .dpop(true)
        .build()
        .unwrap();
    let restarted = auth_layer::AuthClient::new(with_dpop).await.unwrap();
    let mut ctx = context(&browser, &env);
    assert!(!restarted.session(&mut ctx).await.unwrap().unwrap().is_dpop_bound());
    let token = restarted.access_token(&mut ctx, AccessTokenOptions::default().force_refresh()).await.unwrap();
    assert!(!token.is_dpop(), "refreshed as it was issued: Bearer");
    assert_eq!(token.token_type, "Bearer");
    assert_eq!(stats(&env).await["refresh_grants"], 1);
    assert_eq!(counted(&stats(&env).await, "/token").0, 0, "no proof for a session without a key");
}

#[tokio::test]
async fn a_bearer_token_where_dpop_was_asked_for_is_refused_and_no_session_starts() {
    // The hostile provider answers `token_type: Bearer` whatever the request carried.
    let env = TestEnv::start_hostile_from("token-type-bearer", |c| c.dpop(true), app).await;
    let browser = Browser::new();
    let callback = browser.start_and_authorize(&env.app_url, "pat", "/auth/login").await;
    let response = browser.http.get(&callback).header("accept", "application/json").send().await.unwrap();
    assert_eq!(response.status(), StatusCode::BAD_GATEWAY, "the provider's answer is not what was asked for");
    assert_eq!(profile(&browser, &env).await, StatusCode::UNAUTHORIZED, "no session");
}

/// A P-256 client key pair for `private_key_jwt` (ES256), made by Node's crypto: the private
/// key (PKCS#8 PEM) and the public key (PEM).
fn client_key_pair() -> (String, String) {
    let script = "const {generateKeyPairSync}=require('crypto');\
        const {privateKey,publicKey}=generateKeyPairSync('ec',{namedCurve:'P-256'});\
        process.stdout.write(JSON.stringify([privateKey.export({type:'pkcs8',format:'pem'}),\
        publicKey.export({type:'spki',format:'pem'})]))";
    let out = std::process::Command::new("node").args(["-e", script]).output().expect("node");
    assert!(out.status.success());
    serde_json::from_slice(&out.stdout).unwrap()
}

#[tokio::test]
async fn a_fapi2_client_logs_in_and_refreshes_against_the_provider_in_its_fapi2_mode() {
    let (private, public) = client_key_pair();
    let provider = ProviderOptions {
        auth_method: Some("private_key_jwt"),
        client_public_key: Some((public, "fapi-key".into())),
        dpop_nonce: true,
        fapi2: true,
        ..ProviderOptions::default()
    };
    let env = TestEnv::start_custom_with(
        provider,
        move |c| c.fapi2(true).client_assertion_key(private, ClientAssertionAlg::Es256, Some("fapi-key".into())),
        app,
    )
    .await;
    assert!(env.client.config().fapi2() && env.client.config().dpop());
    let browser = Browser::new();
    let start = browser.get(&env.url("/auth/login")).await;
    let authorize = Url::parse(start.headers()["location"].to_str().unwrap()).unwrap();
    let params: Vec<(String, String)> = authorize.query_pairs().into_owned().collect();
    let names: Vec<&str> = params.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(names, ["client_id", "request_uri"], "pushed: only the request_uri goes through the browser");

    browser.login(&env.app_url, "pat").await;
    assert_eq!(profile(&browser, &env).await, StatusCode::OK, "FAPI 2.0 login: PAR, PKCE, private_key_jwt, DPoP, iss");
    let after_login = stats(&env).await;
    assert!(counted(&after_login, "/request").0 >= 2, "the pushed requests carried proofs: {after_login}");
    assert!(counted(&after_login, "/request").1 >= 1, "and honoured the provider's nonce");
    assert_eq!(counted(&after_login, "/token").1, 0, "the PAR nonce served the token endpoint at once");

    let mut ctx = context(&browser, &env);
    let token = env.client.access_token(&mut ctx, AccessTokenOptions::default().force_refresh()).await.unwrap();
    assert!(token.is_dpop(), "a refresh under FAPI 2.0 is DPoP-bound too");
    let session = env.client.session(&mut context(&browser, &env)).await.unwrap().unwrap();
    let header = session.id_token.split('.').next().unwrap();
    let header: Value = serde_json::from_slice(&base64_decode(header)).unwrap();
    assert_eq!(header["alg"], "PS256", "ID tokens under the FAPI 2.0 algorithm");

    // The logout revokes the refresh token: a fresh client assertion, and a proof with the
    // provider's nonce.
    let logout = browser.http.get(env.url("/auth/logout")).header("accept", "text/html").send().await.unwrap();
    assert!(logout.status().is_redirection());
    assert_eq!(env.provider.revocations_settled(1).await, 1, "the provider took the revocation");
}

fn base64_decode(text: &str) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(text).unwrap()
}

use url::Url;

/// A client key for `private_key_jwt` (ES256) as a JWK: RFC 7515 appendix A.3's P-256 key.
const CLIENT_JWK: &str = r#"{"kty":"EC","crv":"P-256","kid":"k",
    "x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0",
    "d":"jpsQnnGQmL-YBIffH1136cspYG6-0iY7X1fCE9-E9LI"}"#;

#[tokio::test]
async fn a_fapi2_client_does_not_start_against_a_provider_that_cannot_meet_the_profile() {
    let fapi2 = |c: auth_layer::AuthConfigBuilder| {
        c.fapi2(true).client_assertion_key(CLIENT_JWK, ClientAssertionAlg::Es256, None)
    };
    // The hostile provider outside its FAPI 2.0 mode announces no DPoP algorithms and no
    // private_key_jwt.
    let (.., client) = TestEnv::hostile_discovery("ok", fapi2).await;
    let Err(err) = client else { panic!("a FAPI 2.0 client started against a provider short of the profile") };
    // The reason is in the error's chain of causes.
    let mut err: &dyn std::error::Error = &err;
    let mut text = err.to_string();
    while let Some(source) = err.source() {
        text = format!("{text}: {source}");
        err = source;
    }
    let err = text;
    assert!(err.contains("dpop_signing_alg_values_supported"), "{err}");
    // DPoP alone is fine there: proofs are offered, and the answer's token type is checked.
    let (.., client) = TestEnv::hostile_discovery("ok", |c| c.dpop(true)).await;
    assert!(client.is_ok());
    // In its FAPI 2.0 mode, it starts.
    let (.., client) = TestEnv::hostile_discovery("fapi2:ok", fapi2).await;
    assert!(client.is_ok(), "{:?}", client.err());
}

#[tokio::test]
async fn under_fapi2_a_link_cannot_make_a_login_silent() {
    let env = TestEnv::start_hostile_from(
        "fapi2:ok",
        |c| c.fapi2(true).client_assertion_key(CLIENT_JWK, ClientAssertionAlg::Es256, None),
        app,
    )
    .await;
    let start = Browser::new().get(&env.url("/auth/login?prompt=none&login_hint=ann")).await;
    assert_eq!(start.status(), StatusCode::FOUND);
    let pushed = stats(&env).await["par"].clone();
    assert_eq!(pushed["login_hint"], "ann", "other per-login parameters still pass: {pushed}");
    assert!(pushed.get("prompt").is_none(), "prompt is not taken from the URL under FAPI 2.0: {pushed}");
}
