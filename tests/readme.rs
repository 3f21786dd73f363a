//! README.md's Rust code, compiled: each block of README.md is here word for word (inside a
//! function that gives it the variables the README's prose names), and a test fails when a
//! block of README.md is found nowhere here. The kit example also runs.
//!
//! Not formatted by rustfmt (`lib.rs` skips it), so that the blocks stay as README.md shows them.
#![allow(unused_variables, unused_must_use, dead_code, unused_imports, clippy::all)]

use auth_layer::store::ServerSessionStore;
use auth_layer::{AuthClient, AuthConfig, AuthLayer, TenantLayer, Tenants};
use serde::{Deserialize, Serialize};
use sqlite_backend::{SessionsTable, SqliteBackend};

type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// "Use it".
pub async fn use_it() -> Result {
use auth_layer::{AuthLayer, User};
use axum::{Router, routing::get};

let auth = AuthLayer::from_env().await?;  // AUTH_ROUTES=profile also serves /auth/profile
let app = Router::new()
    .route("/", get(|user: Option<User>| async move { format!("{:?}", user.map(|u| u.sub().to_owned())) }))
    .route("/private", get(|user: User| async move { format!("hello {}", user.sub()) }))
    .layer(auth);
    let _: axum::Router = app;
    Ok(())
}

/// "DPoP and FAPI 2.0".
pub async fn fapi2_client(app_secret: String) -> Result {
use auth_layer::{AccessToken, AuthClient, AuthConfig, AuthLayer, ClientAssertionAlg};

let config = AuthConfig::builder()
    .issuer("https://bank.example/").client_id("my-app")
    .client_assertion_key(std::fs::read_to_string("client-key.pem")?, ClientAssertionAlg::Es256, Some("key-1".into()))
    .secret(&app_secret)
    .base_url("https://app.example.com")
    .fapi2(true)          // PAR, PKCE S256, private_key_jwt, DPoP, iss, PS256/ES256/EdDSA, or no start
    .build()?;
let auth = AuthLayer::new(AuthClient::new(config).await?);

// A handler's call to the bank's API with the session's DPoP-bound token.
async fn accounts(token: AccessToken, http: reqwest::Client) -> Result<reqwest::Response> {
    let url = "https://api.bank.example/accounts";
    let mut nonce = None;
    loop {
        let mut request = http.get(url).header("authorization", token.authorization());
        if let Some(proof) = token.dpop_proof("GET", url, nonce.as_deref())? {
            request = request.header("dpop", proof);   // a fresh proof for each request
        }
        let response = request.send().await?;
        let asked = response.headers().get("dpop-nonce").and_then(|v| v.to_str().ok()).map(str::to_owned);
        if response.status() == 401 && nonce.is_none() && asked.is_some() {
            nonce = asked;                             // use_dpop_nonce: once more, with its nonce
            continue;
        }
        return Ok(response);
    }
}
    Ok(())
}

/// "Session stores".
pub async fn memory_store(config: AuthConfig) -> Result {
let store = ServerSessionStore::in_memory(&config);
let layer = AuthLayer::new(AuthClient::builder(config).with_session_store(store).build().await?);
    Ok(())
}

/// "Sessions users manage".
pub async fn sessions_users_manage(client: AuthClient, headers: http::HeaderMap) -> Result {
use auth_layer::StoreContext;
// With the request's cookies (the layer's routes below do the same):
let mut ctx = StoreContext::from_headers(&headers);
let sessions = client.list_sessions(&mut ctx).await?; // newest first, `current` marked
client.end_session(&mut ctx, &sessions[1].handle).await?; // that device is logged out
client.end_other_sessions(&mut ctx).await?; // every device but this one
client.end_all_sessions("auth0|user-id").await?; // support staff: every session of a user
    Ok(())
}

/// "Tenants and custom domains".
pub async fn configured_tenants(customers: Vec<(&str, &str, &str, &str)>, app_secret: String) -> Result {
let mut tenants = Tenants::new();
for (host, issuer, client_id, client_secret) in customers {
    let config = AuthConfig::builder()
        .tenant(host)                       // this tenant's own secrets, namespace, iss required
        .issuer(issuer).client_id(client_id).client_secret(client_secret)
        .secret(&app_secret)
        .base_url(format!("https://{host}"))
        .build()?;
    tenants = tenants.tenant(AuthClient::new(config).await?, [host])?;
}
let layer = TenantLayer::new(tenants)?;   // or .fallback("id"), .host_header(..), .pick_with(..)
    Ok(())
}

/// The app's own records of its customers, as the README's loader reads them.
#[derive(Clone)]
pub struct Db;

/// A customer's provider.
pub struct Customer {
    issuer: String,
    client_id: String,
    client_secret: String,
}

impl Db {
    async fn customer_by_host(&self, host: &str) -> std::io::Result<Option<Customer>> {
        Ok(None)
    }
}

/// "Tenants looked up when first asked for".
pub async fn loaded_tenants(db: Db, app_secret: String) -> Result {
let tenants = Tenants::new().load_with(move |host: String| {
    let (db, app_secret) = (db.clone(), app_secret.clone());
    async move {
        let Some(customer) = db.customer_by_host(&host).await? else { return Ok(None) };  // 400
        let config = AuthConfig::builder()
            .tenant(&host)
            .issuer(customer.issuer).client_id(customer.client_id).client_secret(customer.client_secret)
            .secret(&app_secret)
            .base_url(format!("https://{host}"))
            .build()?;
        Ok(Some(AuthClient::new(config).await?))
    }
});
let layer = TenantLayer::new(tenants.clone())?;
// when a customer changes its provider:
tenants.forget("acme.example.com");
    Ok(())
}

/// An item of the README's cart.
#[derive(Serialize, Deserialize)]
pub struct Item {
    sku: String,
}

/// "Typed stores of your own".
pub async fn typed_store(backend: auth_layer::backend::MokaBackend, secret: String) -> Result {
let cart = Cart { user_id: "u-1".into(), org_id: "acme".into(), items: Vec::new() };
use auth_layer::Store;

#[derive(Serialize, Deserialize, Store)]
#[store(key = "cart:{user_id}", ttl = "30m", encrypt)]
struct Cart { user_id: String, #[store(index)] org_id: String, items: Vec<Item> }

let carts = Cart::store();                          // TypedStore<Cart, MokaBackend>
let carts = Cart::store_in(backend, &[secret]);     // any Backend
carts.set(&cart).await?;
let cart: Option<Cart> = carts.get("u-1").await?;   // by the key's fields
carts.delete("u-1").await?;
carts.delete_by(Cart::ORG_ID, "acme").await?;      // one constant per indexed field
carts.find_by(Cart::ORG_ID, "acme").await?;
    Ok(())
}

/// "A store of your own": the kit example, run (its database file in this crate's folder).
#[cfg(test)]
mod kit_example {
use super::*;
// Cargo.toml: [dev-dependencies] auth-layer = { version = "0.1", features = ["testing"] }
use auth_layer::testing::{check_backend, check_session_store};

#[tokio::test(flavor = "multi_thread")]
async fn my_store_keeps_every_rule() {
    // Every call returns a handle on the same data, as each process of the app would open it.
    check_backend(|| async { SqliteBackend::open("kit.sqlite3").unwrap() }).await.unwrap();
    check_session_store(|config| async move { SessionsTable::open("kit.sqlite3", &config).unwrap() })
        .await
        .unwrap();
}
}

#[cfg(test)]
mod metrics_table {
    /// Every metric auth-layer records is a row of README.md's table, with its kind and unit,
    /// and the table has no row of a metric it does not record.
    #[test]
    fn the_readme_lists_every_metric_and_no_other() {
        let readme = include_str!("../README.md");
        for m in auth_layer::METRICS {
            let kind = format!("{:?}", m.kind).to_lowercase();
            let row = format!("| `{}` | {kind} | {} |", m.name, m.unit);
            assert!(readme.contains(&row), "README.md lacks the row `{row}`");
        }
        let rows = readme.lines().filter(|l| l.starts_with("| `auth_layer.")).count();
        assert_eq!(rows, auth_layer::METRICS.len(), "README.md lists a metric auth-layer does not record");
        let mut names: Vec<&str> = auth_layer::METRICS.iter().map(|m| m.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), auth_layer::METRICS.len(), "two metrics of one name");
        assert!(names.iter().all(|n| n.starts_with("auth_layer.")));
    }
}

#[cfg(test)]
mod tests {
    /// The Rust blocks of `markdown`, each as its lines without leading and trailing blanks.
    fn rust_blocks(markdown: &str) -> Vec<Vec<&str>> {
        let mut blocks = Vec::new();
        let mut current: Option<Vec<&str>> = None;
        for line in markdown.lines() {
            match (&mut current, line.trim_start()) {
                (None, fence) if fence.starts_with("```rust") => current = Some(Vec::new()),
                (Some(_), "```") => blocks.push(current.take().unwrap_or_default()),
                (Some(block), text) => block.push(line.trim()),
                (None, _) => {}
            }
        }
        blocks.into_iter().map(|b| b.into_iter().filter(|l| !l.is_empty()).collect()).collect()
    }

    #[test]
    fn every_rust_block_of_the_readme_is_compiled_here() {
        let readme = include_str!("../README.md");
        let here: Vec<&str> = include_str!("readme.rs").lines().map(str::trim).filter(|l| !l.is_empty()).collect();
        let blocks = rust_blocks(readme);
        assert!(blocks.len() >= 6, "the README's Rust blocks were not found: {}", blocks.len());
        for block in blocks {
            assert!(
                here.windows(block.len()).any(|window| window == block.as_slice()),
                "this README block is compiled nowhere (copy it into tests/readme.rs word for word):\n{}",
                block.join("\n")
            );
        }
    }
}
