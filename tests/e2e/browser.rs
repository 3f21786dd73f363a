//! The demo in a real browser: Debian's headless Chromium driven through chromedriver (WebDriver)
//! with fantoccini. Open the app, log in at the provider's form, consent, land back logged in,
//! see the name, refresh the access token, log out, land logged out. A screenshot of each step
//! goes to `target/artifacts/browser/` (not committed).

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use auth_layer_tests::{ProviderOptions, TestEnv, free_port};
use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;

struct Driver {
    child: tokio::process::Child,
    url: String,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

async fn chromedriver() -> Driver {
    let port = free_port();
    let child = tokio::process::Command::new("chromedriver")
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("chromedriver must be installed (apt-get install chromium chromium-driver; the test command does)");
    let url = format!("http://127.0.0.1:{port}");
    for _ in 0..100 {
        if reqwest::get(format!("{url}/status")).await.is_ok() {
            return Driver { child, url };
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("chromedriver did not start");
}

async fn browser(driver: &Driver, profile: &std::path::Path) -> Client {
    let args = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--window-size=1000,900",
    ];
    let mut args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    args.push(format!("--user-data-dir={}", profile.display()));
    let mut capabilities = serde_json::Map::new();
    capabilities
        .insert("goog:chromeOptions".into(), serde_json::json!({ "binary": "/usr/bin/chromium", "args": args }));
    ClientBuilder::new(HttpConnector::new())
        .capabilities(capabilities)
        .connect(&driver.url)
        .await
        .expect("a browser session")
}

struct Steps {
    dir: PathBuf,
    count: usize,
}

impl Steps {
    async fn shot(&mut self, client: &Client, name: &str) {
        self.count += 1;
        let png = client.screenshot().await.unwrap();
        std::fs::write(self.dir.join(format!("{:02}-{name}.png", self.count)), png).unwrap();
    }
}

/// Waits (up to 15 s) until the element `css` shows a text that `expected` accepts, and gives that
/// text. A click that navigates returns before the next page replaces the old one, so an element
/// found in between may belong to the old page and go stale: each poll finds it again, and a stale
/// or missing element is simply not there yet.
async fn text_when(client: &Client, css: &str, what: &str, expected: impl Fn(&str) -> bool) -> String {
    let mut last = None;
    for _ in 0..150 {
        if let Ok(element) = client.find(Locator::Css(css)).await
            && let Ok(text) = element.text().await
        {
            if expected(&text) {
                return text;
            }
            last = Some(text);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{what}: `{css}` never matched within 15 s; last text seen: {last:?}");
}

/// The Unix time in the app's "in 1 h 0 min (Unix time 1796000000)": the token's expiry itself,
/// where the "in ..." part also moves with the clock.
fn expiry(text: &str) -> Option<&str> {
    text.split_once("(Unix time ")?.1.strip_suffix(')')
}

#[tokio::test]
async fn a_person_logs_in_refreshes_the_token_and_logs_out_in_chromium() {
    let env = TestEnv::start().await;
    let driver = chromedriver().await;
    let profile = std::env::temp_dir().join(format!("auth-layer-chromium-{}", free_port()));
    let client = browser(&driver, &profile).await;
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/artifacts/browser");
    std::fs::create_dir_all(&dir).unwrap();
    let mut steps = Steps { dir, count: 0 };

    client.goto(&env.url("/")).await.unwrap();
    text_when(&client, "#status", "the app starts logged out", |t| t == "Logged out").await;
    steps.shot(&client, "home-logged-out").await;

    client.find(Locator::Css("#login")).await.unwrap().click().await.unwrap();
    let login = client.wait().for_element(Locator::Css("input[name=login]")).await.unwrap();
    login.send_keys("alice").await.unwrap();
    client.find(Locator::Css("input[name=password]")).await.unwrap().send_keys("any password").await.unwrap();
    steps.shot(&client, "provider-login-form").await;
    client.find(Locator::Css("button[type=submit]")).await.unwrap().click().await.unwrap();

    let consent = client.wait().for_element(Locator::Css("input[name=prompt][value=consent]")).await;
    assert!(consent.is_ok(), "the provider asks for consent");
    steps.shot(&client, "provider-consent").await;
    client.find(Locator::Css("button[type=submit]")).await.unwrap().click().await.unwrap();

    text_when(&client, "#name", "back at the app, logged in", |t| t == "Alice").await;
    assert!(client.current_url().await.unwrap().as_str().starts_with(&env.app_url));
    let token_before = text_when(&client, "#token-expiry", "the token's expiry shows", |t| expiry(t).is_some()).await;
    let expiry_before = expiry(&token_before).unwrap().to_owned();
    text_when(&client, "#claims", "the claims show the email", |t| t.contains("alice@example.test")).await;
    steps.shot(&client, "home-logged-in").await;

    // Let the provider's clock move a second, so the refreshed token's expiry differs.
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    client.find(Locator::Css("#refresh")).await.unwrap().click().await.unwrap();
    // The old page's expiry stays until the new page replaces it: wait for a different one.
    text_when(&client, "#token-expiry", "the access token was refreshed", |t| {
        expiry(t).is_some_and(|at| at != expiry_before)
    })
    .await;
    text_when(&client, "#name", "still logged in after the refresh", |t| t == "Alice").await;
    assert_eq!(env.provider.refresh_grants().await, 1);
    steps.shot(&client, "token-refreshed").await;

    client.find(Locator::Css("#logout")).await.unwrap().click().await.unwrap();
    let confirm = client.wait().for_element(Locator::Css("button[name=logout][value=yes]")).await.unwrap();
    steps.shot(&client, "provider-logout").await;
    confirm.click().await.unwrap();
    text_when(&client, "#status", "back at the app, logged out", |t| t == "Logged out").await;
    steps.shot(&client, "home-logged-out-again").await;

    client.close().await.unwrap();
    let _ = std::fs::remove_dir_all(&profile);
}

/// The Form Post RP flow in a real browser against the real provider: the provider's page posts
/// the authorization response to the callback (no code in any URL the browser visits), and the
/// RP-initiated logout returns through `/auth/logout/callback` with the `state` it was sent.
#[tokio::test]
async fn a_person_logs_in_by_form_post_and_logs_out_with_state_in_chromium() {
    let env = TestEnv::start_custom_with(
        ProviderOptions::default(),
        |c| c.response_mode(auth_layer::ResponseMode::FormPost).logout_state(true),
        |client| quickstart::app(auth_layer::AuthLayer::new(client)),
    )
    .await;
    let driver = chromedriver().await;
    let profile = std::env::temp_dir().join(format!("auth-layer-chromium-{}", free_port()));
    let client = browser(&driver, &profile).await;

    client.goto(&env.url("/")).await.unwrap();
    text_when(&client, "#status", "the app starts logged out", |t| t == "Logged out").await;
    client.find(Locator::Css("#login")).await.unwrap().click().await.unwrap();
    let login = client.wait().for_element(Locator::Css("input[name=login]")).await.unwrap();
    login.send_keys("alice").await.unwrap();
    client.find(Locator::Css("input[name=password]")).await.unwrap().send_keys("any password").await.unwrap();
    client.find(Locator::Css("button[type=submit]")).await.unwrap().click().await.unwrap();
    client.wait().for_element(Locator::Css("input[name=prompt][value=consent]")).await.unwrap();
    client.find(Locator::Css("button[type=submit]")).await.unwrap().click().await.unwrap();

    text_when(&client, "#name", "posted back to the app, logged in", |t| t == "Alice").await;
    let here = client.current_url().await.unwrap();
    assert!(here.as_str().starts_with(&env.app_url), "{here}");
    assert!(!here.as_str().contains("code="), "the code never appears in a URL: {here}");

    // The callback refuses a GET in form_post mode: had the provider answered with a redirect,
    // the login would have stopped there with 405.

    // A logout naming a page: reached only through the logout callback with the sent state.
    client.goto(&env.url("/auth/logout?returnTo=%2F%3Fbye%3D1")).await.unwrap();
    let confirm = client.wait().for_element(Locator::Css("button[name=logout][value=yes]")).await.unwrap();
    confirm.click().await.unwrap();
    text_when(&client, "#status", "back at the app through the logout callback, logged out", |t| t == "Logged out")
        .await;
    assert_eq!(client.current_url().await.unwrap().as_str(), env.url("/?bye=1"), "the state came back");

    client.close().await.unwrap();
    let _ = std::fs::remove_dir_all(&profile);
}
