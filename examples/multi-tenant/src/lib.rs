//! The quickstart's app for several providers: each host name the app answers under is a
//! tenant with its own provider and client, from `AUTH_TENANTS`:
//!
//! ```text
//! AUTH_TENANTS='[
//!   {"host": "127.0.0.1:3000", "issuer": "https://acme.okta.com/", "client_id": "...", "client_secret": "..."},
//!   {"host": "localhost:3000", "issuer": "https://globex.eu.auth0.com/", "client_id": "...", "client_secret": "..."}
//! ]'
//! ```
//!
//! `host` as the browser sends it, port included. Every other setting is the quickstart's
//! (`AUTH_SECRET`, `LISTEN_ADDR`, `SESSION_STORE`, ...), shared by the tenants; each tenant's
//! sessions are its own all the same (see `auth_layer::Tenants`).

use auth_layer::{AuthConfigBuilder, TenantLayer, Tenants};
use quickstart::{SharedChoice, StoreChoice};
use serde::Deserialize;

/// One entry of `AUTH_TENANTS`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantSpec {
    /// The host name (and port) browsers reach this tenant at.
    pub host: String,
    /// The tenant's provider.
    pub issuer: String,
    /// The app's client id at that provider.
    pub client_id: String,
    /// Its client secret.
    pub client_secret: String,
    /// The tenant's public URL; `http://{host}` for a loopback host, `https://{host}` otherwise.
    #[serde(default)]
    pub base_url: Option<String>,
}

impl TenantSpec {
    fn base_url(&self) -> String {
        if let Some(base) = &self.base_url {
            return base.clone();
        }
        let name = self.host.rsplit_once(':').map_or(self.host.as_str(), |(name, _)| name);
        let scheme = if matches!(name, "localhost" | "127.0.0.1" | "[::1]") { "http" } else { "https" };
        format!("{scheme}://{}", self.host)
    }
}

/// Reads `AUTH_TENANTS` (a JSON array of [`TenantSpec`]) from `lookup`.
pub fn tenants_from(lookup: &impl Fn(&str) -> Option<String>) -> Result<Vec<TenantSpec>, String> {
    let json = lookup("AUTH_TENANTS").ok_or("AUTH_TENANTS is required: a JSON array of tenants")?;
    let tenants: Vec<TenantSpec> =
        serde_json::from_str(&json).map_err(|e| format!("AUTH_TENANTS is not a JSON array of tenants: {e}"))?;
    if tenants.is_empty() {
        return Err("AUTH_TENANTS names no tenant".into());
    }
    Ok(tenants)
}

/// The layer for `tenants`, the other settings from `lookup` (as the quickstart reads them),
/// sessions in `store`: each tenant a client of its own, discovered now.
pub async fn layer(
    tenants: &[TenantSpec],
    lookup: impl Fn(&str) -> Option<String>,
    store: StoreChoice,
    shared: SharedChoice,
) -> Result<TenantLayer, Box<dyn std::error::Error + Send + Sync>> {
    let mut all = Tenants::new();
    for tenant in tenants {
        let config = AuthConfigBuilder::from_lookup(&lookup)?
            .tenant(tenant.host.to_ascii_lowercase())
            .issuer(&tenant.issuer)
            .client_id(&tenant.client_id)
            .client_secret(&tenant.client_secret)
            .base_url(tenant.base_url())
            .profile_route(true)
            .access_token_route(true)
            .backchannel_logout_route(true)
            .build()?;
        let client = quickstart::client_with(config, store.clone(), shared.clone()).await?;
        tracing::info!(host = %tenant.host, issuer = %tenant.issuer, "tenant ready");
        all = all.tenant(client, [tenant.host.as_str()])?;
    }
    Ok(TenantLayer::new(all)?)
}
