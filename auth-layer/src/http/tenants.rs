//! Several providers in one app: [`Tenants`] picks, for each request, the [`AuthClient`] of the
//! tenant it is for (by host name, a trusted proxy's header, or the app's own rule), among
//! tenants configured up front.

use std::collections::HashMap;
use std::sync::Arc;

use http::header::HOST;
use http::{HeaderMap, HeaderName, Uri};

use crate::client::AuthClient;
use crate::config::ConfigError;

/// The app's own rule: the tenant id (one of the configured [`AuthConfig::tenant`]s) a request
/// is for, from its headers and URI.
///
/// [`AuthConfig::tenant`]: crate::AuthConfig::tenant
type Pick = Arc<dyn Fn(&HeaderMap, &Uri) -> Option<String> + Send + Sync>;

/// The tenants of a multi-tenant app, each an [`AuthClient`] of its own (its provider, client,
/// base URL, stores), and how a request finds its tenant. Given to [`AuthLayer::tenants`](crate::AuthLayer::tenants).
///
/// Each tenant's configuration names it ([`AuthConfigBuilder::tenant`](crate::AuthConfigBuilder::tenant)): its secrets are then
/// derived for it alone, so a session or login of one tenant never opens on another, even where
/// they share a database, and its callback requires the provider's `iss` (RFC 9207). Providers
/// are discovered when their clients are built, so metadata and keys are fetched only from the
/// issuers configured here: never from one a request or a token names.
///
/// A request's tenant is its host (the `Host` header, or the URI's authority in HTTP/2), as the
/// browser sends it, port included; or the header a trusted proxy sets
/// ([`host_header`](Self::host_header)); or the app's rule ([`pick_with`](Self::pick_with)). A
/// request that matches no tenant gets 400, or the [`fallback`](Self::fallback) tenant when the
/// app set one: never a tenant chosen by accident. Back-channel logouts go to the tenant whose
/// issuer the logout token names (among the configured ones), whichever host they reach.
///
/// ```no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
/// use auth_layer::{AuthClient, AuthConfig, AuthLayer, Tenants};
///
/// let mut tenants = Tenants::new();
/// for (host, issuer, client_id, secret) in [
///     ("acme.example.com", "https://acme.okta.com/", "acme-app", "..."),
///     ("globex.example.com", "https://globex.eu.auth0.com/", "globex-app", "..."),
/// ] {
///     let config = AuthConfig::builder()
///         .tenant(host)
///         .issuer(issuer)
///         .client_id(client_id)
///         .client_secret(secret)
///         .secret(std::env::var("AUTH_SECRET")?)
///         .base_url(format!("https://{host}"))
///         .build()?;
///     tenants = tenants.tenant(AuthClient::new(config).await?, [host])?;
/// }
/// let layer = AuthLayer::tenants(tenants)?;
/// # let _ = layer; Ok(()) }
/// ```
#[derive(Clone, Default)]
pub struct Tenants {
    clients: Vec<AuthClient>,
    by_host: HashMap<String, usize>,
    by_id: HashMap<String, usize>,
    fallback: Option<usize>,
    host_header: Option<HeaderName>,
    pick: Option<Pick>,
}

impl std::fmt::Debug for Tenants {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tenants")
            .field("tenants", &self.by_id.keys().collect::<Vec<_>>())
            .field("hosts", &self.by_host.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl Tenants {
    /// No tenants yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `client`'s tenant, served under `hosts` (as browsers send them: `app.example.com`,
    /// `127.0.0.1:3000`; compared without regard to case). Refused when its configuration names
    /// no tenant, or names one already added, or a host is taken.
    pub fn tenant<H: Into<String>>(
        mut self,
        client: AuthClient,
        hosts: impl IntoIterator<Item = H>,
    ) -> Result<Self, ConfigError> {
        let Some(id) = client.config().tenant().map(str::to_owned) else {
            return Err(ConfigError::Invalid {
                name: "tenant",
                reason: format!(
                    "the client of {} names no tenant: set AuthConfigBuilder::tenant, so that its secrets are its own",
                    client.config().issuer()
                ),
            });
        };
        if self.by_id.contains_key(&id) {
            return Err(ConfigError::Invalid { name: "tenant", reason: format!("tenant `{id}` is added twice") });
        }
        let index = self.clients.len();
        for host in hosts {
            let host = host.into().to_ascii_lowercase();
            if self.by_host.insert(host.clone(), index).is_some() {
                return Err(ConfigError::Invalid { name: "tenant", reason: format!("host `{host}` has two tenants") });
            }
        }
        self.by_id.insert(id, index);
        self.clients.push(client);
        Ok(self)
    }

    /// Serves requests that match no tenant with the tenant `id` (already added), instead of
    /// answering 400.
    pub fn fallback(mut self, id: &str) -> Result<Self, ConfigError> {
        let index = *self.by_id.get(id).ok_or_else(|| ConfigError::Invalid {
            name: "tenant",
            reason: format!("the fallback tenant `{id}` was not added"),
        })?;
        self.fallback = Some(index);
        Ok(self)
    }

    /// Reads the host from `header` (e.g. `x-forwarded-host`) instead of `Host`: only when a
    /// proxy the app trusts sets it on every request and drops the client's own, since anyone
    /// can send it.
    pub fn host_header(mut self, header: HeaderName) -> Self {
        self.host_header = Some(header);
        self
    }

    /// Picks the tenant with the app's own rule, which returns a configured tenant's id (an
    /// unknown id is no tenant): a path prefix, a header of the app's gateway.
    pub fn pick_with(mut self, pick: impl Fn(&HeaderMap, &Uri) -> Option<String> + Send + Sync + 'static) -> Self {
        self.pick = Some(Arc::new(pick));
        self
    }

    /// Every tenant's client, in the order added.
    pub fn clients(&self) -> &[AuthClient] {
        &self.clients
    }

    /// The client of the tenant a request with these headers and URI is for.
    pub(crate) fn resolve(&self, headers: &HeaderMap, uri: &Uri) -> Option<&AuthClient> {
        let found = match &self.pick {
            Some(pick) => pick(headers, uri).and_then(|id| self.by_id.get(&id).copied()),
            None => self.host(headers, uri).and_then(|host| self.by_host_name(host)),
        };
        found.or(self.fallback).map(|index| &self.clients[index])
    }

    /// The client of the configured tenant whose provider is `issuer`.
    pub(crate) fn by_issuer(&self, issuer: &str) -> Option<&AuthClient> {
        self.clients.iter().find(|client| client.issuer() == issuer)
    }

    fn host<'r>(&self, headers: &'r HeaderMap, uri: &'r Uri) -> Option<&'r str> {
        match &self.host_header {
            Some(header) => headers.get(header).and_then(|v| v.to_str().ok()),
            None => uri.authority().map(|a| a.as_str()).or_else(|| headers.get(HOST).and_then(|v| v.to_str().ok())),
        }
    }

    /// One lookup; a second, lowercased, only for a host sent with capitals.
    fn by_host_name(&self, host: &str) -> Option<usize> {
        let host = host.trim();
        self.by_host.get(host).copied().or_else(|| {
            host.bytes()
                .any(|b| b.is_ascii_uppercase())
                .then(|| self.by_host.get(&host.to_ascii_lowercase()).copied())
                .flatten()
        })
    }
}

/// The `iss` a back-channel logout request's token claims, read without checking anything:
/// only to pick, among the configured tenants, the one whose client then checks the token.
pub(crate) fn logout_token_issuer(body: &[u8]) -> Option<String> {
    use base64::Engine;
    let token = url::form_urlencoded::parse(body).find(|(name, _)| name == "logout_token")?.1;
    let payload = token.split('.').nth(1)?;
    let claims = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&claims).ok()?;
    claims.get("iss")?.as_str().map(str::to_owned)
}
