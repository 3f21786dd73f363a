//! No token or secret ever appears in a log line: the tracing output of a whole login, profile,
//! token refresh, back-channel logout and logout, at TRACE level for auth-layer, is captured and
//! searched for every secret the flow handled, and for a line that text a request chose
//! (a newline in a callback parameter) could have forged.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use auth_layer::StoreContext;
use auth_layer_tests::{Browser, CLIENT_SECRET, SECRET, TestEnv};
use reqwest::StatusCode;
use tracing_subscriber::fmt::MakeWriter;

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Captured {
    type Writer = Captured;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

/// What a forged log line would start with.
const FORGED: &str = "2026-12-05T00:00:00.000000Z  INFO auth_layer: forged";

#[tokio::test]
async fn no_secret_appears_and_no_request_text_forges_a_line_in_the_logs_of_a_whole_session() {
    let logs = Captured::default();
    tracing_subscriber::fmt()
        .with_writer(logs.clone())
        .with_env_filter("auth_layer=trace,quickstart=trace")
        .with_ansi(false)
        .init();

    let env = TestEnv::start().await;
    let browser = Browser::new();
    // A failed login first, so that error paths log too.
    let refused = browser.get(&env.url("/auth/callback?state=forged&code=stolen-code")).await;
    assert_eq!(refused.status(), StatusCode::BAD_REQUEST);
    // Text a request chooses (a callback's error_description, its iss) reaches the logs
    // escaped: a newline in it cannot start a line of its own.
    for tampered in [
        format!("error=access_denied&error_description=no%0A{}", FORGED.replace(' ', "%20")),
        format!("code=c&iss=https%3A%2F%2Fevil.example%0A{}", FORGED.replace(' ', "%20")),
    ] {
        let callback = browser.start_and_authorize(&env.app_url, "liz", "/auth/login").await;
        let state =
            url::Url::parse(&callback).unwrap().query_pairs().find(|(k, _)| k == "state").unwrap().1.into_owned();
        let forged = browser.get(&env.url(&format!("/auth/callback?state={state}&{tampered}"))).await;
        assert_eq!(forged.status(), StatusCode::BAD_REQUEST, "{tampered}");
    }
    browser.login(&env.app_url, "liz").await;
    let cookie = browser.cookie_header(&env.url("/"));
    let mut ctx = StoreContext::from_cookie_headers([&cookie.parse().unwrap()]);
    let session = env.client.session(&mut ctx).await.unwrap().unwrap();
    assert_eq!(browser.get(&env.url("/auth/profile")).await.status(), StatusCode::OK);
    env.advance_clock(Duration::from_secs(3600));
    assert_eq!(browser.get(&env.url("/auth/access-token")).await.status(), StatusCode::OK);
    let cookie_after = browser.cookie_header(&env.url("/"));
    let mut ctx = StoreContext::from_cookie_headers([&cookie_after.parse().unwrap()]);
    let refreshed = env.client.session(&mut ctx).await.unwrap().unwrap();
    let logout = browser.get(&env.url("/auth/logout")).await;
    let end_session = logout.headers()["location"].to_str().unwrap().to_owned();
    browser.confirm_provider_logout(&end_session).await;

    let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    assert!(text.contains("login completed"), "the capture works: {text}");
    assert!(text.contains("evil.example\\n"), "the tampered iss is logged, escaped: {text}");
    assert!(!text.lines().any(|line| line.starts_with(FORGED)), "a forged line: {text}");
    let mut secrets = vec![
        ("client secret", CLIENT_SECRET.to_owned()),
        ("app secret", SECRET.to_owned()),
        ("ID token", session.id_token.clone()),
        ("refreshed ID token", refreshed.id_token.clone()),
        ("refresh token", session.refresh_token.clone().unwrap()),
        ("rotated refresh token", refreshed.refresh_token.clone().unwrap()),
        ("session id", session.id().to_owned()),
        ("stolen code", "stolen-code".to_owned()),
    ];
    for set in session.token_sets.iter().chain(&refreshed.token_sets) {
        secrets.push(("access token", set.access_token.clone()));
    }
    for part in cookie.split("; ").chain(cookie_after.split("; ")) {
        if let Some((name, value)) = part.split_once('=')
            && name.starts_with("_a0_")
        {
            secrets.push(("sealed cookie", value.to_owned()));
        }
    }
    for (what, secret) in secrets {
        // Any 16-character window of the secret would be a leak.
        let probe = &secret[..secret.len().min(16)];
        assert!(!text.contains(probe), "the {what} appears in the logs");
    }
}

#[test]
fn the_quickstart_colours_its_log_only_on_a_terminal_and_writes_json_by_setting() {
    use quickstart::{LogFormat, log_settings};
    let env = |pairs: &'static [(&'static str, &'static str)]| {
        move |name: &str| pairs.iter().find(|(k, _)| *k == name).map(|(_, v)| (*v).to_owned())
    };
    assert_eq!(log_settings(env(&[]), true).unwrap(), (LogFormat::Text, true), "a terminal: colour");
    assert_eq!(log_settings(env(&[]), false).unwrap(), (LogFormat::Text, false), "a file or a collector: none");
    assert_eq!(log_settings(env(&[("NO_COLOR", "1")]), true).unwrap(), (LogFormat::Text, false));
    assert_eq!(log_settings(env(&[("LOG_FORMAT", "json")]), true).unwrap(), (LogFormat::Json, false));
    let err = log_settings(env(&[("LOG_FORMAT", "xml")]), false).unwrap_err();
    assert!(err.contains("LOG_FORMAT"), "{err}");

    // What each setting writes: colour codes only when asked for.
    let written = |format, ansi| {
        let logs = Captured::default();
        let subscriber = quickstart::log_subscriber(format, ansi, "info", logs.clone());
        tracing::subscriber::with_default(
            subscriber,
            || tracing::info!(target: "auth_layer", user = "jo", "login completed"),
        );
        String::from_utf8(logs.0.lock().unwrap().clone()).unwrap()
    };
    assert!(written(LogFormat::Text, true).contains('\x1b'), "coloured on a terminal");
    let plain = written(LogFormat::Text, false);
    assert!(!plain.contains('\x1b') && plain.contains("login completed"), "{plain}");
    let json = written(LogFormat::Json, false);
    let line: serde_json::Value = serde_json::from_str(json.trim()).expect("one JSON object per line");
    assert_eq!(line["level"], "INFO");
    assert_eq!(line["target"], "auth_layer");
    assert_eq!(line["fields"]["message"], "login completed");
    assert_eq!(line["fields"]["user"], "jo");
}

#[tokio::test(flavor = "current_thread")]
async fn a_whole_login_logs_json_lines_with_the_spans_they_happened_in() {
    let logs = Captured::default();
    let subscriber = quickstart::log_subscriber(quickstart::LogFormat::Json, false, "auth_layer=debug", logs.clone());
    let _scope = tracing::subscriber::set_default(subscriber);
    // The app runs on this thread (a current-thread runtime): everything it logs is captured.
    let env = TestEnv::start().await;
    let browser = Browser::new();
    browser.login(&env.app_url, "jo").await;
    assert_eq!(browser.get(&env.url("/auth/profile")).await.status(), StatusCode::OK);
    let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    assert!(!text.contains('\x1b'));
    let lines: Vec<serde_json::Value> =
        text.lines().map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"))).collect();
    assert!(lines.iter().all(|l| l["timestamp"].is_string() && l["level"].is_string()), "{text}");
    assert!(lines.iter().any(|l| l["fields"]["message"] == "login completed" && l["fields"]["sub"] == "jo"), "{text}");
}
