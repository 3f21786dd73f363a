//! The OpenID Foundation's relying-party test plans, module by module (`tests/CONFORMANCE.md`
//! lists them, with what the suite's provider does and what the RP must do): Basic RP, Form Post
//! RP (the Basic modules again with `response_mode=form_post`: every Basic test runs both
//! ways), Config RP, RP-Initiated Logout RP, Back-Channel Logout RP, and 3rd Party-Init RP.
//!
//! Each test is named after its module (`oidcc-client-test-invalid-iss` is
//! `oidcc_client_test_invalid_iss`) and plays the suite's provider with the hostile test
//! provider (`tests/idp/hostile.mjs`) in the matching scenario. As the suite does, a test counts
//! what reaches the provider: after an ID token it must refuse, the RP calls no userinfo
//! endpoint, and after a good one it does (the plans run with userinfo on, as the quickstart
//! does with `AUTH_FETCH_USERINFO=true`).

use auth_layer::{AuthConfigBuilder, ResponseMode};
use auth_layer_tests::{Browser, TestEnv};
use reqwest::StatusCode;
use serde_json::Value;

/// How the provider returns the authorization response: the Basic plan and the Form Post plan.
const MODES: [ResponseMode; 2] = [ResponseMode::Query, ResponseMode::FormPost];

/// The quickstart app against the hostile provider in `scenario` from its first answer, with
/// what the plans exercise turned on (userinfo at login, the logout `state`) and `mode`.
async fn start(scenario: &str, mode: ResponseMode) -> TestEnv {
    start_configured(scenario, move |c| c.response_mode(mode)).await
}

async fn start_configured(scenario: &str, configure: impl FnOnce(AuthConfigBuilder) -> AuthConfigBuilder) -> TestEnv {
    TestEnv::start_hostile_from(
        scenario,
        |c| configure(c.fetch_userinfo(true).logout_state(true)),
        |client| quickstart::app(auth_layer::AuthLayer::new(client)),
    )
    .await
}

/// The fields of the first form of `html` and where it posts.
fn form_of(html: &str) -> (String, Vec<(String, String)>) {
    let attr = |tag: &str, name: &str| {
        let start = tag.find(&format!("{name}=\""))? + name.len() + 2;
        let len = tag[start..].find('"')?;
        Some(tag[start..start + len].replace("&#38;", "&").replace("&amp;", "&"))
    };
    let form = &html[html.find("<form").expect("a form")..];
    let action = attr(&form[..form.find('>').unwrap()], "action").expect("the form's action");
    let fields =
        form.split("<input").skip(1).filter_map(|input| Some((attr(input, "name")?, attr(input, "value")?))).collect();
    (action, fields)
}

/// Starts a login at `login_path` and brings the provider's answer to the callback as a browser
/// would (following the redirect, or posting the provider's form); returns the callback's
/// response, asked for as JSON so a refusal names its error code.
async fn log_in_at(env: &TestEnv, browser: &Browser, login_path: &str) -> reqwest::Response {
    let start = browser.get(&env.url(login_path)).await;
    assert_eq!(start.status(), StatusCode::FOUND, "{login_path}: to the provider");
    let authorize = start.headers()["location"].to_str().unwrap().to_owned();
    let answer = browser.get(&authorize).await;
    if answer.status() == StatusCode::FOUND {
        let callback = answer.headers()["location"].to_str().unwrap().to_owned();
        assert!(callback.starts_with(&env.url("/auth/callback?")), "{callback}");
        return browser.http.get(&callback).header("accept", "application/json").send().await.unwrap();
    }
    assert_eq!(answer.status(), StatusCode::OK, "the provider's form_post page");
    let (action, fields) = form_of(&answer.text().await.unwrap());
    assert_eq!(action, env.url("/auth/callback"));
    browser.http.post(&action).header("accept", "application/json").form(&fields).send().await.unwrap()
}

async fn log_in(env: &TestEnv, browser: &Browser) -> reqwest::Response {
    log_in_at(env, browser, "/auth/login").await
}

async fn profile(env: &TestEnv, browser: &Browser) -> StatusCode {
    browser.http.get(env.url("/auth/profile")).send().await.unwrap().status()
}

async fn stat(env: &TestEnv, name: &str) -> Value {
    env.provider.stats().await[name].clone()
}

/// A login the RP must complete: a session for the provider's user, and then a userinfo call
/// (the suite ends a passing module on it).
async fn assert_accepted(env: &TestEnv, browser: &Browser, what: &str) {
    let callback = log_in(env, browser).await;
    assert_eq!(callback.status(), StatusCode::FOUND, "{what}: {:?}", callback.text().await);
    let me: Value = browser.http.get(env.url("/auth/profile")).send().await.unwrap().json().await.unwrap();
    assert_eq!(me["sub"], "mallory", "{what}");
    assert_eq!(me["favourite_color"], "green", "{what}: the userinfo endpoint was called");
}

/// A login the RP must refuse: a clean 400 naming `code`, no session, no userinfo call after
/// the bad token, and the app still serving.
async fn assert_refused(env: &TestEnv, browser: &Browser, code: &str, what: &str) {
    let callback = log_in(env, browser).await;
    assert_eq!(callback.status(), StatusCode::BAD_REQUEST, "{what}");
    let sets_session = callback
        .headers()
        .get_all("set-cookie")
        .iter()
        .any(|c| c.to_str().unwrap().starts_with("_a0_session") && !c.to_str().unwrap().contains("Max-Age=0"));
    assert!(!sets_session, "{what}: a refused login sets no session cookie");
    let body: Value = callback.json().await.unwrap();
    assert_eq!(body["error"], code, "{what}");
    assert_eq!(profile(env, browser).await, StatusCode::UNAUTHORIZED, "{what}: no session");
    assert_eq!(stat(env, "userinfo_calls").await, 0, "{what}: nothing is asked with a refused token's grant");
    assert_eq!(browser.get(&env.url("/")).await.status(), StatusCode::OK, "{what}: the app still serves");
}

/// A Basic RP module the RP must refuse, in both response modes.
async fn refused_in_both_modes(scenario: &str, code: &str) {
    for mode in MODES {
        let env = start(scenario, mode).await;
        assert_refused(&env, &Browser::new(), code, &format!("{scenario} {mode:?}")).await;
    }
}

// ---- Basic RP (and Form Post RP: each test runs both response modes) ----

#[tokio::test]
async fn oidcc_client_test() {
    for mode in MODES {
        let env = start("ok", mode).await;
        assert_accepted(&env, &Browser::new(), &format!("{mode:?}")).await;
        let authorize = stat(&env, "authorize").await;
        assert_eq!(authorize["response_type"], "code");
        assert!(authorize["scope"].as_str().unwrap().split(' ').any(|s| s == "openid"), "{authorize}");
        assert_eq!(authorize["code_challenge_method"], "S256");
        assert!(authorize["state"].as_str().is_some_and(|s| s.len() >= 32), "{authorize}");
        assert!(authorize["nonce"].as_str().is_some_and(|s| s.len() >= 32), "{authorize}");
        let form_post = authorize.get("response_mode").and_then(Value::as_str) == Some("form_post");
        assert_eq!(form_post, mode == ResponseMode::FormPost, "{authorize}");
        assert_eq!(stat(&env, "userinfo_calls").await, 1);
    }
}

#[tokio::test]
async fn oidcc_client_test_invalid_iss() {
    refused_in_both_modes("wrong-iss", "invalid_id_token").await;
}

#[tokio::test]
async fn oidcc_client_test_missing_sub() {
    refused_in_both_modes("no-sub", "invalid_id_token").await;
}

#[tokio::test]
async fn oidcc_client_test_invalid_aud() {
    refused_in_both_modes("wrong-aud", "invalid_id_token").await;
}

#[tokio::test]
async fn oidcc_client_test_missing_iat() {
    refused_in_both_modes("no-iat", "invalid_id_token").await;
}

#[tokio::test]
async fn oidcc_client_test_kid_absent_single_jwks() {
    for mode in MODES {
        // The provider's one key has no `kid`, nor has the ID token's header.
        let env = start("kid-absent-single", mode).await;
        assert_accepted(&env, &Browser::new(), &format!("{mode:?}")).await;
    }
}

#[tokio::test]
async fn oidcc_client_test_kid_absent_multiple_jwks() {
    for mode in MODES {
        // Several keys without a `kid` (three RSA, one EC) and a header without one: the RP
        // tries the published keys in turn and accepts the one that verifies (the module lets
        // an RP refuse instead; openidconnect alone would).
        let env = start("kid-absent-multiple", mode).await;
        assert_accepted(&env, &Browser::new(), &format!("{mode:?}")).await;
    }
}

#[tokio::test]
async fn oidcc_client_test_idtoken_sig_rs256() {
    for mode in MODES {
        let env = start("ok", mode).await;
        assert_accepted(&env, &Browser::new(), &format!("{mode:?}")).await;
        // The same login signed ES256 by a key the provider publishes, an algorithm its
        // metadata lists too, is refused: the client registered RS256.
        let env = start("es256", mode).await;
        assert_refused(&env, &Browser::new(), "invalid_id_token", &format!("ES256 {mode:?}")).await;
    }
}

#[tokio::test]
async fn oidcc_client_test_idtoken_sig_none() {
    // The suite's module registers the client for `none`: auth-layer refuses to be configured so.
    let config = AuthConfigBuilder::default()
        .issuer("https://op.example")
        .client_id("c")
        .client_secret("s")
        .secret("a-secret-of-at-least-thirty-two-characters")
        .base_url("https://app.example")
        .id_token_signed_response_alg("none")
        .build();
    assert!(config.unwrap_err().to_string().contains("never accepted"));
    // And an unsigned ID token is refused, with no userinfo call (the suite marks it skipped).
    refused_in_both_modes("alg-none", "invalid_id_token").await;
}

#[tokio::test]
async fn oidcc_client_test_invalid_sig_rs256() {
    refused_in_both_modes("bad-signature", "invalid_id_token").await;
}

#[tokio::test]
async fn oidcc_client_test_userinfo_invalid_sub() {
    for mode in MODES {
        let env = start("userinfo-other-sub", mode).await;
        let browser = Browser::new();
        let callback = log_in(&env, &browser).await;
        assert_eq!(callback.status(), StatusCode::BAD_REQUEST, "{mode:?}");
        let body: Value = callback.json().await.unwrap();
        assert_eq!(body["error"], "invalid_id_token", "{mode:?}");
        assert_eq!(profile(&env, &browser).await, StatusCode::UNAUTHORIZED, "{mode:?}: no session");
        // Reached with the access token in the Authorization header (bearer-header).
        assert_eq!(stat(&env, "userinfo_auth").await, "header");
    }
}

#[tokio::test]
async fn oidcc_client_test_nonce_invalid() {
    refused_in_both_modes("wrong-nonce", "invalid_id_token").await;
}

#[tokio::test]
async fn oidcc_client_test_scope_userinfo_claims() {
    for mode in MODES {
        let env = start("ok", mode).await;
        assert_accepted(&env, &Browser::new(), &format!("{mode:?}")).await;
        let scope = stat(&env, "authorize").await["scope"].as_str().unwrap().to_owned();
        assert!(
            scope.split(' ').any(|s| ["profile", "email", "phone", "address"].contains(&s)),
            "claims asked for by scope: {scope}"
        );
    }
}

#[tokio::test]
async fn oidcc_client_test_client_secret_basic() {
    for mode in MODES {
        let env = start("ok", mode).await;
        assert_accepted(&env, &Browser::new(), &format!("{mode:?}")).await;
        assert_eq!(stat(&env, "token_auth").await, "client_secret_basic", "{mode:?}");
    }
}

// ---- Form Post RP: what only the form post has ----

#[tokio::test]
async fn oidcc_client_test_form_post_error() {
    // The provider posts an error (login_required) to the callback: a clean 4xx, no session.
    let env = start("authorize-login-required", ResponseMode::FormPost).await;
    let browser = Browser::new();
    let callback = log_in(&env, &browser).await;
    assert!(callback.status().is_client_error(), "{}", callback.status());
    let body: Value = callback.json().await.unwrap();
    assert_eq!(body["error"], "provider_refused", "{body}");
    assert!(body["message"].as_str().unwrap().contains("login_required"), "{body}");
    assert_eq!(profile(&env, &browser).await, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_form_post_login_refuses_the_response_in_a_query_and_a_body_that_is_no_form() {
    let env = start("ok", ResponseMode::FormPost).await;
    let browser = Browser::new();
    let start = browser.get(&env.url("/auth/login")).await;
    let authorize = url::Url::parse(start.headers()["location"].to_str().unwrap()).unwrap();
    let state = authorize.query_pairs().find(|(k, _)| k == "state").unwrap().1.into_owned();
    let (_, fields) = form_of(&browser.get(authorize.as_str()).await.text().await.unwrap());
    // The code in a URL (logged, leaked by Referer) is not taken when the app asked for a post.
    let query = url::form_urlencoded::Serializer::new(String::new()).extend_pairs(&fields).finish();
    let get = browser.get(&env.url(&format!("/auth/callback?{query}"))).await;
    assert_eq!(get.status(), StatusCode::METHOD_NOT_ALLOWED);
    let json = browser.http.post(env.url("/auth/callback")).json(&serde_json::json!({ "state": state })).send();
    assert_eq!(json.await.unwrap().status(), StatusCode::BAD_REQUEST);
    // The transaction survived both: the real post completes the login.
    let post = browser.http.post(env.url("/auth/callback")).form(&fields).send().await.unwrap();
    assert_eq!(post.status(), StatusCode::FOUND);
    assert_eq!(profile(&env, &browser).await, StatusCode::OK);
}

#[tokio::test]
async fn a_form_post_login_clears_the_session_cookies_the_browser_withheld_from_it() {
    // Logged in once (a session in one cookie), then a second login whose session needs chunks.
    let env = start("ok", ResponseMode::FormPost).await;
    let browser = Browser::new();
    assert_eq!(log_in(&env, &browser).await.status(), StatusCode::FOUND);
    env.provider.set_scenario("big-claims").await;
    let start = browser.get(&env.url("/auth/login")).await;
    let authorize = start.headers()["location"].to_str().unwrap().to_owned();
    let (action, fields) = form_of(&browser.get(&authorize).await.text().await.unwrap());
    // The post comes from the provider's site: on https a browser sends the transaction cookie
    // (SameSite=None) and withholds the session cookie (SameSite=Lax).
    let cookies = browser.cookie_header(&env.url("/auth/callback"));
    let sent: Vec<&str> = cookies.split("; ").filter(|c| c.starts_with("_a0_tx.")).collect();
    assert_eq!(sent.len(), 1, "{cookies}");
    let post = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let answer = post.post(&action).header("cookie", sent[0]).form(&fields).send().await.unwrap();
    assert_eq!(answer.status(), StatusCode::FOUND);
    let app = url::Url::parse(&env.app_url).unwrap();
    for set in answer.headers().get_all("set-cookie") {
        reqwest::cookie::CookieStore::set_cookies(&*browser.jar, &mut std::iter::once(set), &app);
    }
    // The old single cookie is gone and the new chunks are read: the second login's session.
    assert!(!browser.cookie_header(&env.app_url).split("; ").any(|c| c.starts_with("_a0_session=")));
    let me: Value = browser.http.get(env.url("/auth/profile")).send().await.unwrap().json().await.unwrap();
    assert_eq!(me["bio"].as_str().map(str::len), Some(6000), "the new session, not the old one");
}

#[tokio::test]
async fn a_provider_that_offers_only_form_post_gets_form_posts_without_configuration() {
    let env = start_configured("form-post-only", |c| c).await;
    assert_eq!(env.client.config().response_mode(), ResponseMode::FormPost);
    assert_accepted(&env, &Browser::new(), "form_post chosen at discovery").await;
    assert_eq!(stat(&env, "authorize").await["response_mode"], "form_post");
}

// ---- Config RP ----

#[tokio::test]
async fn oidcc_client_test_discovery_openid_config() {
    let env = start("ok", ResponseMode::Query).await;
    let start = Browser::new().get(&env.url("/auth/login")).await;
    let to = start.headers()["location"].to_str().unwrap();
    assert!(to.starts_with(&format!("{}/authorize?", env.provider.issuer)), "the discovered endpoint: {to}");
    assert_accepted(&env, &Browser::new(), "discovered").await;
}

#[tokio::test]
async fn oidcc_client_test_discovery_jwks_uri_keys() {
    // The keys live at a path of this run only (`/jwks` answers 404): only the discovered
    // `jwks_uri` finds them.
    let env = start("jwks-random-path", ResponseMode::Query).await;
    assert_accepted(&env, &Browser::new(), "jwks_uri").await;
    assert!(stat(&env, "jwks_fetches").await.as_u64().unwrap() >= 1);
}

#[tokio::test]
async fn oidcc_client_test_discovery_issuer_mismatch() {
    let (provider, _, _, _, client) =
        TestEnv::hostile_discovery("discovery-issuer-mismatch", |c| c.fetch_userinfo(true)).await;
    let Err(err) = client else { panic!("a document naming another issuer must be refused") };
    let mut chain = err.to_string();
    let mut source = std::error::Error::source(&err);
    while let Some(cause) = source {
        chain = format!("{chain}: {cause}");
        source = cause.source();
    }
    assert!(chain.contains("INVALID"), "the mismatched issuer is named: {chain}");
    assert_eq!(provider.stats().await["authorize_calls"], 0, "the flow stops at discovery");
}

#[tokio::test]
async fn oidcc_client_test_signing_key_rotation_just_before_signing() {
    // Every ID token is signed by a key made just before (a new `kid`): the RP refetches.
    let env = start("rotate-before-signing", ResponseMode::Query).await;
    assert_accepted(&env, &Browser::new(), "rotated before signing").await;
    assert_eq!(stat(&env, "jwks_fetches").await, 2, "discovery's fetch and one refetch");
}

#[tokio::test]
async fn oidcc_client_test_signing_key_rotation() {
    // The first ID token under the key discovery saw; the keys rotate after it: the second
    // login's token names a new `kid`, which one refetch finds.
    let env = start("rotate-after-first", ResponseMode::Query).await;
    assert_accepted(&env, &Browser::new(), "first login").await;
    assert_eq!(stat(&env, "jwks_fetches").await, 1);
    let second = Browser::new();
    let callback = log_in(&env, &second).await;
    assert_eq!(callback.status(), StatusCode::FOUND, "second login, rotated key");
    assert_eq!(profile(&env, &second).await, StatusCode::OK);
    assert_eq!(stat(&env, "jwks_fetches").await, 2);
}

// ---- RP-Initiated Logout RP ----

/// Logs in, logs out at `/auth/logout?returnTo=/private`, follows the provider's return;
/// returns where the logout callback sent the browser.
async fn rp_initiated_logout(env: &TestEnv, browser: &Browser) -> String {
    assert_eq!(log_in(env, browser).await.status(), StatusCode::FOUND);
    let logout = browser.get(&env.url("/auth/logout?returnTo=%2Fprivate")).await;
    assert_eq!(logout.status(), StatusCode::FOUND);
    let end_session = url::Url::parse(logout.headers()["location"].to_str().unwrap()).unwrap();
    assert!(end_session.as_str().starts_with(&format!("{}/session/end?", env.provider.issuer)), "{end_session}");
    assert_eq!(profile(env, browser).await, StatusCode::UNAUTHORIZED, "logged out here before the provider");
    let back = browser.get(end_session.as_str()).await;
    let callback = back.headers()["location"].to_str().unwrap().to_owned();
    assert!(callback.starts_with(&env.url("/auth/logout/callback")), "{callback}");
    let landed = browser.get(&callback).await;
    assert_eq!(landed.status(), StatusCode::FOUND);
    landed.headers()["location"].to_str().unwrap().to_owned()
}

#[tokio::test]
async fn oidcc_client_test_rp_init_logout() {
    let env = start("ok", ResponseMode::Query).await;
    let browser = Browser::new();
    let landed = rp_initiated_logout(&env, &browser).await;
    let sent = stat(&env, "end_session").await;
    assert!(sent["id_token_hint"].as_str().is_some_and(|t| t.split('.').count() == 3), "{sent}");
    assert_eq!(sent["post_logout_redirect_uri"], env.url("/auth/logout/callback"));
    assert_eq!(sent["client_id"], "test-app");
    assert!(sent["state"].as_str().is_some_and(|s| s.len() >= 32), "{sent}");
    assert_eq!(landed, env.url("/private"), "the state came back: the page the logout named");
    // The suite then sends a back-channel logout for the ended session: answered 200.
    let (status, _) = env.provider.send_logout_token("valid", &env.url("/auth/backchannel-logout")).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn oidcc_client_test_rp_init_logout_other_state() {
    let env = start("logout-other-state", ResponseMode::Query).await;
    let browser = Browser::new();
    let landed = rp_initiated_logout(&env, &browser).await;
    assert_eq!(landed, env.url("/"), "another state: not the page the logout named");
    assert_eq!(profile(&env, &browser).await, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn oidcc_client_test_rp_init_logout_no_state() {
    let env = start("logout-no-state", ResponseMode::Query).await;
    let browser = Browser::new();
    let landed = rp_initiated_logout(&env, &browser).await;
    assert_eq!(landed, env.url("/"), "no state: not the page the logout named");
    assert_eq!(profile(&env, &browser).await, StatusCode::UNAUTHORIZED);
}

// ---- Back-Channel Logout RP ----

#[tokio::test]
async fn oidcc_client_test_rp_backchannel_rpinitlogout() {
    let env = start("ok", ResponseMode::Query).await;
    let browser = Browser::new();
    assert_eq!(log_in(&env, &browser).await.status(), StatusCode::FOUND);
    let (status, body) = env.provider.send_logout_token("valid", &env.url("/auth/backchannel-logout")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(profile(&env, &browser).await, StatusCode::UNAUTHORIZED, "the session the token named ended");
}

/// A logout token the RP must refuse with 400, the session it names left alive.
async fn logout_token_refused(variant: &str) {
    let env = start("ok", ResponseMode::Query).await;
    let browser = Browser::new();
    assert_eq!(log_in(&env, &browser).await.status(), StatusCode::FOUND);
    let (status, body) = env.provider.send_logout_token(variant, &env.url("/auth/backchannel-logout")).await;
    assert_eq!(status, 400, "{variant}: {body}");
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["error"], "invalid_request", "{variant}");
    assert_eq!(profile(&env, &browser).await, StatusCode::OK, "{variant}: the session survives");
}

#[tokio::test]
async fn oidcc_client_test_rp_backchannel_rpinitlogout_alg_none() {
    logout_token_refused("alg-none").await;
}

#[tokio::test]
async fn oidcc_client_test_rp_backchannel_rpinitlogout_no_event() {
    logout_token_refused("no-event").await;
}

#[tokio::test]
async fn oidcc_client_test_rp_backchannel_rpinitlogout_with_nonce() {
    logout_token_refused("with-nonce").await;
}

#[tokio::test]
async fn oidcc_client_test_rp_backchannel_rpinitlogout_wrong_alg() {
    // ES256, by the EC key the provider publishes (and its metadata lists ES256): the client
    // registered RS256.
    logout_token_refused("wrong-alg").await;
}

#[tokio::test]
async fn oidcc_client_test_rp_backchannel_rpinitlogout_wrong_aud() {
    logout_token_refused("wrong-aud").await;
}

#[tokio::test]
async fn oidcc_client_test_rp_backchannel_rpinitlogout_wrong_event() {
    logout_token_refused("wrong-event").await;
}

#[tokio::test]
async fn oidcc_client_test_rp_backchannel_rpinitlogout_wrong_iss() {
    logout_token_refused("wrong-iss").await;
}

// ---- Refresh Token (the suite's refresh-token plan, outside certification) ----

/// Logs in with an access token already due for refresh, then asks for an access token (a
/// refresh) while the provider follows `scenario`; returns the answer and the browser.
async fn refresh_under(scenario: &str) -> (TestEnv, Browser, reqwest::Response) {
    let env = start("short-access", ResponseMode::Query).await;
    let browser = Browser::new();
    assert_eq!(log_in(&env, &browser).await.status(), StatusCode::FOUND);
    env.provider.set_scenario(scenario).await;
    let answer = browser.http.get(env.url("/auth/access-token")).send().await.unwrap();
    (env, browser, answer)
}

#[tokio::test]
async fn oidcc_client_test_refresh_token() {
    let (env, browser, answer) = refresh_under("ok").await;
    assert_eq!(answer.status(), StatusCode::OK);
    let token: Value = answer.json().await.unwrap();
    assert!(token["access_token"].as_str().is_some_and(|t| t.starts_with("at-")), "{token}");
    assert_eq!(env.provider.refresh_grants().await, 1, "the refresh token was used");
    // The new token is the session's: the next request uses it, with no second grant.
    let again: Value = browser.http.get(env.url("/auth/access-token")).send().await.unwrap().json().await.unwrap();
    assert_eq!(again["access_token"], token["access_token"]);
    assert_eq!(env.provider.refresh_grants().await, 1);
}

/// A refresh whose ID token the RP must refuse: a clean error naming it, nothing of the answer
/// kept, and the session it was for ended.
async fn refreshed_id_token_refused(scenario: &str) {
    let (env, browser, answer) = refresh_under(scenario).await;
    assert!(answer.status().is_client_error(), "{scenario}: {}", answer.status());
    let body: Value = answer.json().await.unwrap();
    assert_eq!(body["error"], "invalid_id_token", "{scenario}: {body}");
    assert_eq!(env.provider.refresh_grants().await, 1);
    assert_eq!(profile(&env, &browser).await, StatusCode::UNAUTHORIZED, "{scenario}: the session ends");
}

#[tokio::test]
async fn oidcc_client_test_refresh_token_invalid_issuer() {
    refreshed_id_token_refused("wrong-iss").await;
}

#[tokio::test]
async fn oidcc_client_test_refresh_token_invalid_sub() {
    refreshed_id_token_refused("other-sub").await;
}

// ---- 3rd Party-Init RP ----

#[tokio::test]
async fn oidcc_client_test_3rd_party_init_login() {
    let env = start("ok", ResponseMode::Query).await;
    let issuer = url::form_urlencoded::byte_serialize(env.provider.issuer.as_bytes()).collect::<String>();
    let target = url::form_urlencoded::byte_serialize(env.url("/private?tab=2").as_bytes()).collect::<String>();
    let browser = Browser::new();
    let path = format!("/auth/login?iss={issuer}&login_hint=mallory%40example.com&target_link_uri={target}");
    let callback = log_in_at(&env, &browser, &path).await;
    assert_eq!(callback.status(), StatusCode::FOUND);
    assert_eq!(callback.headers()["location"], env.url("/private?tab=2").as_str(), "back at target_link_uri");
    assert_eq!(stat(&env, "authorize").await["login_hint"], "mallory@example.com");

    // Another issuer, or a target off the app: refused before anything reaches the provider.
    let calls = stat(&env, "authorize_calls").await;
    let elsewhere = url::form_urlencoded::byte_serialize(b"https://evil.example/").collect::<String>();
    for refused in [
        "/auth/login?iss=https%3A%2F%2Fevil.example".to_owned(),
        format!("/auth/login?iss={issuer}&target_link_uri={elsewhere}"),
        format!("/auth/login?iss={issuer}&target_link_uri={target}&returnTo=%2F"),
    ] {
        let answer = Browser::new().get(&env.url(&refused)).await;
        assert_eq!(answer.status(), StatusCode::BAD_REQUEST, "{refused}");
    }
    assert_eq!(stat(&env, "authorize_calls").await, calls);
}

// ---- FAPI 2.0 Security Profile (Final) client plan: private_key_jwt + DPoP, unsigned
// requests, plain responses ----

/// The client's key for `private_key_jwt` (ES256; the hostile provider takes any assertion):
/// RFC 7515 appendix A.3's P-256 key.
const FAPI_CLIENT_KEY: &str = r#"{"kty":"EC","crv":"P-256","kid":"fapi-client",
    "x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0",
    "d":"jpsQnnGQmL-YBIffH1136cspYG6-0iY7X1fCE9-E9LI"}"#;

/// The app as a FAPI 2.0 client against the hostile provider playing the FAPI 2.0 client
/// plan's provider (PS256 ID tokens, DPoP checked with nonces required) in `scenario`.
async fn start_fapi2(scenario: &str) -> TestEnv {
    start_configured(&format!("fapi2:{scenario}"), |c| {
        c.fapi2(true).client_assertion_key(FAPI_CLIENT_KEY, auth_layer::ClientAssertionAlg::Es256, None)
    })
    .await
}

/// A FAPI 2.0 module the client must refuse with `code`.
async fn fapi2_refused(scenario: &str, code: &str) {
    let env = start_fapi2(scenario).await;
    assert_refused(&env, &Browser::new(), code, scenario).await;
}

/// A FAPI 2.0 module the client must complete; the provider's record of it.
async fn fapi2_accepted(scenario: &str) -> (TestEnv, Value) {
    let env = start_fapi2(scenario).await;
    assert_accepted(&env, &Browser::new(), scenario).await;
    let stats = env.provider.stats().await;
    (env, stats)
}

#[tokio::test]
async fn fapi2_security_profile_final_client_test_happy_path() {
    let (_env, stats) = fapi2_accepted("ok").await;
    // Pushed (the browser carried only client_id and request_uri), with PKCE S256 and the
    // key's thumbprint; private_key_jwt; proofs at PAR, token and userinfo, each sent again
    // once with the nonce the provider asked for (the token endpoint got the PAR's at once).
    let authorize = stats["authorize"].as_object().unwrap();
    assert_eq!(authorize.keys().collect::<Vec<_>>(), ["client_id", "request_uri"], "{stats}");
    assert_eq!(stats["par"]["code_challenge_method"], "S256");
    assert_eq!(
        stats["par"]["dpop_jkt"], stats["dpop"]["/token"]["jkt"],
        "the code is bound to the key the exchange proves"
    );
    assert_eq!(stats["token_auth"], "private_key_jwt");
    assert_eq!(stats["userinfo_auth"], "dpop", "the token goes with the DPoP scheme");
    assert_eq!(stats["use_dpop_nonce"]["/par"], 1);
    assert_eq!(stats["use_dpop_nonce"]["/userinfo"], 1);
    assert!(stats["use_dpop_nonce"].get("/token").is_none(), "the nonce is kept for the provider");
    assert_eq!(stats["dpop"]["/token"]["nonced"], 1);
}

#[tokio::test]
async fn fapi2_security_profile_final_client_test_happy_path_no_dpop_nonce() {
    let (_env, stats) = fapi2_accepted("no-dpop-nonce").await;
    assert_eq!(stats["use_dpop_nonce"], serde_json::json!({}), "no nonce asked for, none needed");
    assert_eq!(stats["dpop"]["/token"]["count"], 1);
}

#[tokio::test]
async fn fapi2_security_profile_final_client_test_discovery_issuer_mismatch() {
    let (.., client) = TestEnv::hostile_discovery("fapi2:discovery-issuer-mismatch", |c| {
        c.fapi2(true).client_assertion_key(FAPI_CLIENT_KEY, auth_layer::ClientAssertionAlg::Es256, None)
    })
    .await;
    assert!(client.is_err(), "an issuer other than the discovery URL's is refused");
}

#[tokio::test]
async fn fapi2_security_profile_final_client_test_invalid_iss() {
    fapi2_refused("wrong-iss", "invalid_id_token").await;
}

#[tokio::test]
async fn fapi2_security_profile_final_client_test_invalid_aud() {
    fapi2_refused("wrong-aud", "invalid_id_token").await;
}

#[tokio::test]
async fn fapi2_security_profile_final_client_test_invalid_secondary_aud() {
    fapi2_refused("multi-aud-no-azp", "invalid_id_token").await;
}

#[tokio::test]
async fn fapi2_security_profile_final_client_test_invalid_null_alg() {
    fapi2_refused("alg-none", "invalid_id_token").await;
}

#[tokio::test]
async fn fapi2_security_profile_final_client_test_invalid_alternate_alg() {
    // RS256 by a key the provider publishes: not PS256, ES256 or EdDSA.
    fapi2_refused("alternate-alg", "invalid_id_token").await;
}

#[tokio::test]
async fn fapi2_security_profile_final_client_test_invalid_expired_exp() {
    fapi2_refused("expired", "invalid_id_token").await;
}

#[tokio::test]
async fn fapi2_security_profile_final_client_test_invalid_missing_exp() {
    fapi2_refused("no-exp", "invalid_id_token").await;
}

#[tokio::test]
async fn fapi2_security_profile_final_client_test_invalid_missing_aud() {
    fapi2_refused("no-aud", "invalid_id_token").await;
}

#[tokio::test]
async fn fapi2_security_profile_final_client_test_invalid_missing_iss() {
    fapi2_refused("no-iss", "invalid_id_token").await;
}

#[tokio::test]
async fn fapi2_security_profile_final_client_test_valid_aud_as_array() {
    fapi2_accepted("aud-array").await;
}

#[tokio::test]
async fn fapi2_security_profile_final_client_test_invalid_nonce() {
    fapi2_refused("wrong-nonce", "invalid_id_token").await;
}

#[tokio::test]
async fn fapi2_security_profile_final_client_test_invalid_missing_nonce() {
    fapi2_refused("no-nonce", "invalid_id_token").await;
}

#[tokio::test]
async fn fapi2_security_profile_final_client_test_invalid_authorization_response_iss() {
    fapi2_refused("authz-iss-wrong", "issuer_mismatch").await;
    assert_eq!(start_fapi2("ok").await.provider.stats().await["token_auth"], Value::Null, "no code exchanged");
}

#[tokio::test]
async fn fapi2_security_profile_final_client_test_remove_authorization_response_iss() {
    // FAPI 2.0 requires `iss` whatever the provider's metadata says.
    fapi2_refused("authz-iss-missing", "issuer_mismatch").await;
}

/// A FAPI 2.0 login whose authorization response's `state` is changed by `spoil`: refused with
/// `code` before any code exchange.
async fn fapi2_state_spoiled(spoil: impl Fn(&mut Vec<(String, String)>), code: &str) {
    let env = start_fapi2("ok").await;
    let browser = Browser::new();
    let start = browser.get(&env.url("/auth/login")).await;
    let answer = browser.get(start.headers()["location"].to_str().unwrap()).await;
    let mut callback = url::Url::parse(answer.headers()["location"].to_str().unwrap()).unwrap();
    let mut pairs: Vec<(String, String)> = callback.query_pairs().into_owned().collect();
    spoil(&mut pairs);
    callback.query_pairs_mut().clear().extend_pairs(&pairs);
    let refused = browser.http.get(callback.as_str()).header("accept", "application/json").send().await.unwrap();
    assert_eq!(refused.status(), StatusCode::BAD_REQUEST);
    assert_eq!(refused.json::<Value>().await.unwrap()["error"], code);
    assert_eq!(profile(&env, &browser).await, StatusCode::UNAUTHORIZED);
    assert_eq!(stat(&env, "token_auth").await, Value::Null, "the code was not exchanged");
}

#[tokio::test]
async fn fapi2_security_profile_final_client_test_ensure_authorization_response_with_invalid_state_fails() {
    fapi2_state_spoiled(
        |pairs| pairs.iter_mut().filter(|(k, _)| k == "state").for_each(|(_, v)| v.push_str("INVALID")),
        "missing_transaction",
    )
    .await;
}

#[tokio::test]
async fn fapi2_security_profile_final_client_test_ensure_authorization_response_with_invalid_missing_state_fails() {
    fapi2_state_spoiled(|pairs| pairs.retain(|(k, _)| k != "state"), "invalid_request").await;
}

#[tokio::test]
async fn fapi2_security_profile_final_client_test_token_endpoint_response_without_expires_in() {
    fapi2_accepted("no-expires-in").await;
}

#[tokio::test]
async fn fapi2_security_profile_final_client_test_token_type_case_insensitivity() {
    // `dpOP`: the token type is compared without regard to case (RFC 6749, 5.1).
    fapi2_accepted("token-type-inverted").await;
}

#[tokio::test]
async fn fapi2_security_profile_final_client_test_rs_dpop_auth_scheme_case_insensitivity() {
    // The userinfo endpoint's nonce challenge names the scheme `dpop`.
    let (_env, stats) = fapi2_accepted("rs-scheme-case").await;
    assert_eq!(stats["use_dpop_nonce"]["/userinfo"], 1, "challenged, and answered with the nonce");
}

#[tokio::test]
async fn fapi2_security_profile_final_client_refresh_token_test() {
    let env = start_fapi2("short-access").await;
    let browser = Browser::new();
    assert_eq!(log_in(&env, &browser).await.status(), StatusCode::FOUND);
    let answer = browser.http.get(env.url("/auth/access-token")).send().await.unwrap();
    assert_eq!(answer.status(), StatusCode::OK);
    let token: Value = answer.json().await.unwrap();
    assert_eq!(token["token_type"], "DPoP", "{token}");
    assert_eq!(env.provider.refresh_grants().await, 1);
    let stats = env.provider.stats().await;
    assert_eq!(stats["dpop"]["/token"]["count"], 2, "code exchange and refresh, each with a proof: {stats}");
    assert_eq!(stats["dpop"]["/token"]["nonced"], 2);
}

/// Beyond the plan: a provider whose nonce changed between PAR and the token request asks for
/// the new one there; the code exchange is sent again with it, and with a client assertion of
/// its own (a provider may refuse an assertion `jti` it has seen).
#[tokio::test]
async fn a_token_request_sent_again_for_a_new_nonce_carries_a_fresh_client_assertion() {
    let (_env, stats) = fapi2_accepted("nonce-rotates").await;
    assert_eq!(stats["use_dpop_nonce"]["/token"], 1, "{stats}");
    let jtis = stats["token_assertion_jtis"].as_array().unwrap();
    assert_eq!(jtis.len(), 2, "the exchange and its retry: {stats}");
    assert_ne!(jtis[0], jtis[1], "each attempt its own assertion");
}
