//! The demo in a real browser: Debian's headless Chromium driven through chromedriver (WebDriver)
//! with fantoccini. Open the app, log in at the provider's form, consent, land back logged in,
//! see the name, refresh the access token, log out, land logged out. A screenshot of each step
//! goes to `target/artifacts/browser/` (not committed).

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use auth_layer_tests::{TestEnv, free_port};
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

async fn text_of(client: &Client, css: &str) -> String {
    client.wait().for_element(Locator::Css(css)).await.unwrap().text().await.unwrap()
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
    assert_eq!(text_of(&client, "#status").await, "Logged out");
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

    assert_eq!(text_of(&client, "#name").await, "Alice", "back at the app, logged in");
    assert!(client.current_url().await.unwrap().as_str().starts_with(&env.app_url));
    let token_before = text_of(&client, "#token-expiry").await;
    assert!(text_of(&client, "#claims").await.contains("alice@example.test"));
    steps.shot(&client, "home-logged-in").await;

    // Let the provider's clock move a second, so the refreshed token's expiry differs.
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    client.find(Locator::Css("#refresh")).await.unwrap().click().await.unwrap();
    assert_eq!(text_of(&client, "#name").await, "Alice");
    let token_after = text_of(&client, "#token-expiry").await;
    assert_ne!(token_after, token_before, "the access token was refreshed");
    assert_eq!(env.provider.refresh_grants().await, 1);
    steps.shot(&client, "token-refreshed").await;

    client.find(Locator::Css("#logout")).await.unwrap().click().await.unwrap();
    let confirm = client.wait().for_element(Locator::Css("button[name=logout][value=yes]")).await.unwrap();
    steps.shot(&client, "provider-logout").await;
    confirm.click().await.unwrap();
    assert_eq!(text_of(&client, "#status").await, "Logged out", "back at the app, logged out");
    steps.shot(&client, "home-logged-out-again").await;

    client.close().await.unwrap();
    let _ = std::fs::remove_dir_all(&profile);
}
