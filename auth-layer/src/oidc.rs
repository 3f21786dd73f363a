//! The OpenID Connect relying party, on `openidconnect`: discovery, a JWKS cache that refetches
//! (rate-limited) when a token names an unknown key, authorization URLs with PKCE S256, `state`
//! and `nonce`, the code exchange and every ID-token check, and the end-session URL.
//!
//! It knows nothing of HTTP servers or cookies; [`AuthClient`](crate::AuthClient) wires it to
//! the stores.

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use openidconnect::core::{
    CoreAuthenticationFlow, CoreClient, CoreIdToken, CoreIdTokenVerifier, CoreJsonWebKeySet, CoreJwsSigningAlgorithm,
    CoreTokenResponse,
};
use openidconnect::{
    AuthType, AuthorizationCode, ClientId, ClientSecret, CsrfToken, EndpointMaybeSet, EndpointNotSet, EndpointSet,
    IssuerUrl, JsonWebKey, JsonWebKeySetUrl, JwsSigningAlgorithm, Nonce, OAuth2TokenResponse, PkceCodeChallenge,
    PkceCodeVerifier, RedirectUrl, RequestTokenError, Scope, TokenResponse,
};
use serde_json::{Map, Value};
use url::Url;

use crate::config::{AuthConfig, LogoutStrategy, ResponseMode, TokenEndpointAuth};
use crate::dpop::{DPOP_ALG, DpopKey};
use crate::error::{AuthError, Chain, ProviderError, cause};
use crate::telemetry;

/// Who asks for a JWKS refetch, for an unknown `kid`. Each has a budget of its own, so that
/// input anyone can send (a forged logout token naming made-up keys) cannot spend the one
/// logins need right after the provider rotates its key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyNeed {
    /// An ID token that came straight from the token endpoint, over TLS: trusted to name a
    /// real key. A refetch at most every [`ID_TOKEN_REFETCH_SPACING`].
    IdToken,
    /// A logout token, posted by anyone: at most every [`LOGOUT_TOKEN_REFETCH_SPACING`].
    LogoutToken,
}

/// The least time between two JWKS refetches for ID tokens.
const ID_TOKEN_REFETCH_SPACING: Duration = Duration::from_secs(2);
/// The least time between two JWKS refetches for logout tokens.
const LOGOUT_TOKEN_REFETCH_SPACING: Duration = Duration::from_secs(30);
/// The largest ID token accepted, in bytes.
const MAX_ID_TOKEN_LEN: usize = 64 * 1024;

type Client = CoreClient<EndpointSet, EndpointNotSet, EndpointNotSet, EndpointNotSet, EndpointSet, EndpointMaybeSet>;

/// An authorization request, ready to send the browser to.
pub(crate) struct AuthorizationRequest {
    pub(crate) url: Url,
    pub(crate) state: String,
    pub(crate) nonce: String,
    pub(crate) code_verifier: String,
}

/// What a successful refresh gives.
pub(crate) struct RefreshedTokens {
    pub(crate) access_token: String,
    pub(crate) expires_at: Option<u64>,
    pub(crate) scope: Option<String>,
    /// A rotated refresh token, when the provider sent one.
    pub(crate) refresh_token: Option<String>,
    /// When that refresh token expires, when the answer said.
    pub(crate) refresh_token_ends_at: Option<u64>,
    /// A new ID token and its claims, when the provider sent one.
    pub(crate) id_token: Option<(String, Map<String, Value>)>,
}

/// What a valid logout token names.
#[derive(Debug)]
pub(crate) struct LogoutClaims {
    pub(crate) sub: Option<String>,
    pub(crate) sid: Option<String>,
    pub(crate) jti: String,
    /// Until when the token could be replayed: the later of its `exp` and its age limit, plus
    /// the clock tolerance.
    pub(crate) replayable_until: u64,
}

/// What a successful code exchange gives.
pub(crate) struct LoginTokens {
    pub(crate) id_token: String,
    pub(crate) claims: Map<String, Value>,
    pub(crate) access_token: String,
    pub(crate) refresh_token: Option<String>,
    /// When the refresh token expires, when the answer said (`refresh_token_expires_in`).
    pub(crate) refresh_token_ends_at: Option<u64>,
    pub(crate) expires_at: Option<u64>,
    pub(crate) scope: Option<String>,
}

/// The discovery document's members beyond openidconnect's core set that the relying party
/// reads.
#[derive(Clone, Debug, serde::Deserialize, serde::Serialize)]
struct ProviderExtras {
    /// RP-Initiated Logout 1.0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    end_session_endpoint: Option<openidconnect::EndSessionUrl>,
    /// RFC 7009: where tokens are revoked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    revocation_endpoint: Option<String>,
    /// RFC 9207: the provider puts `iss` in every authorization response.
    #[serde(default)]
    authorization_response_iss_parameter_supported: bool,
    /// RFC 9126: where authorization requests are pushed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pushed_authorization_request_endpoint: Option<String>,
    /// RFC 9126: the provider takes no authorization request that was not pushed.
    #[serde(default)]
    require_pushed_authorization_requests: bool,
    /// RFC 9449: the algorithms of the DPoP proofs the provider takes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    dpop_signing_alg_values_supported: Option<Vec<String>>,
    /// RFC 8414: the PKCE methods the provider takes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    code_challenge_methods_supported: Option<Vec<String>>,
}

impl openidconnect::AdditionalProviderMetadata for ProviderExtras {}

/// The provider's metadata, with [`ProviderExtras`].
type ProviderMetadata = openidconnect::ProviderMetadata<
    ProviderExtras,
    openidconnect::core::CoreAuthDisplay,
    openidconnect::core::CoreClientAuthMethod,
    openidconnect::core::CoreClaimName,
    openidconnect::core::CoreClaimType,
    openidconnect::core::CoreGrantType,
    openidconnect::core::CoreJweContentEncryptionAlgorithm,
    openidconnect::core::CoreJweKeyManagementAlgorithm,
    openidconnect::core::CoreJsonWebKey,
    openidconnect::core::CoreResponseMode,
    openidconnect::core::CoreResponseType,
    openidconnect::core::CoreSubjectIdentifierType,
>;

/// The HTTP client of token requests: openidconnect's requests, sent by
/// [`RelyingParty::token_call`] (with a DPoP proof when there is a key).
struct TokenClient<'a> {
    rp: &'a RelyingParty,
    key: Option<&'a DpopKey>,
    /// Whether a 5xx answer is the provider being unavailable (a refresh: the session stays,
    /// 503) rather than a bad answer (a code exchange: 502).
    server_error_is_outage: bool,
    /// The refresh token's lifetime in seconds a successful answer gave
    /// (`refresh_token_expires_in`, which openidconnect's token response does not keep); 0: none.
    refresh_token_expires_in: std::sync::atomic::AtomicU64,
}

impl<'a> TokenClient<'a> {
    fn new(rp: &'a RelyingParty, key: Option<&'a DpopKey>, server_error_is_outage: bool) -> Self {
        Self { rp, key, server_error_is_outage, refresh_token_expires_in: 0.into() }
    }

    /// When the refresh token of the answer expires, if the answer said (seconds since the Unix
    /// epoch, from `now`).
    fn refresh_token_ends_at(&self, now: u64) -> Option<u64> {
        match self.refresh_token_expires_in.load(std::sync::atomic::Ordering::Acquire) {
            0 => None,
            seconds => Some(now.saturating_add(seconds)),
        }
    }
}

/// The one member of a token response openidconnect's type drops that auth-layer reads.
#[derive(serde::Deserialize)]
struct RefreshLifetime {
    refresh_token_expires_in: Option<u64>,
}

impl<'c> openidconnect::AsyncHttpClient<'c> for TokenClient<'_> {
    type Error = openidconnect::HttpClientError<reqwest::Error>;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<openidconnect::HttpResponse, Self::Error>> + Send + 'c>,
    >;

    fn call(&'c self, request: openidconnect::HttpRequest) -> Self::Future {
        let status = |answer: &Result<openidconnect::HttpResponse, Self::Error>| {
            answer.as_ref().ok().map(|r| r.status().as_u16())
        };
        let url = url::Url::parse(&request.uri().to_string()).unwrap_or_else(|_| self.rp.issuer.url().clone());
        let method = request.method().clone();
        Box::pin(async move {
            let call = self.rp.token_call(self.key, request);
            let answer = telemetry::provider_call("token", (method.as_str(), &url), status, call).await?;
            if self.server_error_is_outage && answer.status().is_server_error() {
                return Err(openidconnect::HttpClientError::Other(format!(
                    "the provider answered {}",
                    answer.status()
                )));
            }
            if answer.status().is_success()
                && let Ok(RefreshLifetime { refresh_token_expires_in: Some(seconds) }) =
                    serde_json::from_slice(answer.body())
            {
                self.refresh_token_expires_in.store(seconds, std::sync::atomic::Ordering::Release);
            }
            Ok(answer)
        })
    }
}

/// Which of the provider's servers a DPoP nonce is of: each gives its own (RFC 9449, 8 and 9).
#[derive(Debug, Clone, Copy)]
enum NonceOf {
    /// The authorization server: the token and pushed authorization request endpoints.
    AuthorizationServer = 0,
    /// The userinfo endpoint, a resource server.
    Userinfo = 1,
}

/// The most published keys an ID token without `kid` is tried against.
const MAX_KEYS_TRIED: usize = 8;

/// The relying party for one provider and one client.
pub(crate) struct RelyingParty {
    client: Client,
    /// The provider's revocation endpoint (RFC 7009), when it announces one.
    revocation_endpoint: Option<Url>,
    client_id: ClientId,
    client_secret: ClientSecret,
    issuer: IssuerUrl,
    jwks_uri: JsonWebKeySetUrl,
    jwks: RwLock<Arc<CoreJsonWebKeySet>>,
    /// When an unknown `kid` last caused a refetch (discovery's own fetch does not count).
    /// Held during a refetch, so concurrent logins with the new key share one.
    last_jwks_refetch: tokio::sync::Mutex<Option<Instant>>,
    /// The same, for refetches asked for by logout tokens (a budget of their own).
    last_logout_jwks_refetch: tokio::sync::Mutex<Option<Instant>>,
    /// The algorithm the client registered (one: `allowed_algs` of openidconnect's verifier).
    allowed_algs: Vec<CoreJwsSigningAlgorithm>,
    /// Whether authorization responses come as a form post (`response_mode=form_post`).
    form_post: bool,
    /// Where a logout sends the browser, by the configured strategy.
    logout: LogoutTarget,
    /// Where authorization requests are pushed first (RFC 9126), when they are.
    par_endpoint: Option<Url>,
    /// The userinfo endpoint, when logins call it.
    userinfo_endpoint: Option<Url>,
    /// The client's key, for `private_key_jwt`.
    assertion: Option<ClientAssertion>,
    /// Whether every authorization response must carry `iss` (RFC 9207, 2.4).
    requires_iss: bool,
    /// The last DPoP nonce each of the provider's servers gave (RFC 9449, 8 and 9).
    dpop_nonces: [RwLock<Option<String>>; 2],
    http: crate::egress::ProviderHttp,
    config: AuthConfig,
}

/// An endpoint-policy refusal, naming the setting that lifts it.
fn policy(why: String) -> String {
    format!("{why}: refused by the endpoint policy (AuthConfigBuilder::allow_private_endpoints allows it)")
}

impl RelyingParty {
    /// Discovers the provider and fetches its keys, under the endpoint policy
    /// ([`crate::endpoint`]) unless the configuration allows private endpoints.
    pub(crate) async fn discover(config: &AuthConfig) -> Result<Self, ProviderError> {
        let http = crate::egress::ProviderHttp::new(config).map_err(|e| ProviderError::Discovery(cause(e)))?;
        let client = http.client();
        let issuer = IssuerUrl::new(config.issuer.clone()).map_err(|e| ProviderError::Discovery(cause(e)))?;
        // Discovery fetches the metadata, then the keys its `jwks_uri` names: each URL is checked
        // against the endpoint policy before it is fetched.
        let allow_private = config.allow_private_endpoints;
        let guarded = |request: openidconnect::HttpRequest| {
            let http = client.clone();
            async move {
                if !allow_private {
                    let url = url::Url::parse(&request.uri().to_string())
                        .map_err(|e| openidconnect::HttpClientError::Other(e.to_string()))?;
                    crate::endpoint::check(&url).map_err(|why| openidconnect::HttpClientError::Other(policy(why)))?;
                }
                openidconnect::AsyncHttpClient::call(&http, request).await
            }
        };
        // A provider that did not answer (or answered 5xx) is asked again, after a wait that
        // grows and varies by instance: a fleet started together does not ask in step.
        let mut attempt = 0;
        let metadata = loop {
            match ProviderMetadata::discover_async(issuer.clone(), &guarded).await {
                Ok(metadata) => break metadata,
                Err(err) if attempt + 1 < crate::egress::DISCOVERY_ATTEMPTS && transient(&err) => {
                    let wait = crate::egress::backoff(attempt);
                    tracing::warn!(issuer = issuer.as_str(), error = ?Chain(&err), wait_ms = wait.as_millis() as u64, "discovery failed; asking again");
                    tokio::time::sleep(wait).await;
                    attempt += 1;
                }
                Err(err) => return Err(ProviderError::Discovery(cause(format!("{err}: {}", Chain(&err))))),
            }
        };
        Self::from_metadata(config, http, issuer, metadata)
    }

    /// A relying party for an app's tests, with no provider behind it (feature `testing`):
    /// metadata made up from the configured issuer (every endpoint under it, no signing keys).
    /// Sessions made without a login read and renew; whatever would reach the provider (a
    /// login's token exchange, a refresh, a revocation) fails as it would with the provider down.
    #[cfg(feature = "testing")]
    pub(crate) fn without_provider(config: &AuthConfig) -> Result<Self, ProviderError> {
        let http = crate::egress::ProviderHttp::new(config).map_err(|e| ProviderError::Discovery(cause(e)))?;
        let issuer = IssuerUrl::new(config.issuer.clone()).map_err(|e| ProviderError::Discovery(cause(e)))?;
        let base = config.issuer.trim_end_matches('/');
        let document = serde_json::json!({
            "issuer": config.issuer,
            "authorization_endpoint": format!("{base}/authorize"),
            "token_endpoint": format!("{base}/oauth/token"),
            "userinfo_endpoint": format!("{base}/userinfo"),
            "jwks_uri": format!("{base}/.well-known/jwks.json"),
            "end_session_endpoint": format!("{base}/oidc/logout"),
            "revocation_endpoint": format!("{base}/oauth/revoke"),
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": [config.id_token_alg],
        });
        let metadata: ProviderMetadata = serde_json::from_value(document)
            .map_err(|e| ProviderError::Discovery(cause(format!("made-up metadata: {e}"))))?;
        let metadata = metadata.set_jwks(openidconnect::JsonWebKeySet::new(Vec::new()));
        Self::from_metadata(config, http, issuer, metadata)
    }

    /// The relying party of `config` at the provider `metadata` describes (its keys fetched).
    fn from_metadata(
        config: &AuthConfig,
        http: crate::egress::ProviderHttp,
        issuer: IssuerUrl,
        metadata: ProviderMetadata,
    ) -> Result<Self, ProviderError> {
        let allow_private = config.allow_private_endpoints;
        if !allow_private {
            let extras = metadata.additional_metadata();
            let pushed = extras.pushed_authorization_request_endpoint.as_deref().and_then(|u| url::Url::parse(u).ok());
            let revocation = extras.revocation_endpoint.as_deref().and_then(|u| url::Url::parse(u).ok());
            let named = [
                Some(metadata.authorization_endpoint().url()),
                metadata.token_endpoint().map(|u| u.url()),
                metadata.userinfo_endpoint().map(|u| u.url()),
                extras.end_session_endpoint.as_ref().map(|u| u.url()),
                pushed.as_ref(),
                revocation.as_ref(),
            ];
            for url in named.into_iter().flatten() {
                crate::endpoint::check(url).map_err(|why| ProviderError::Discovery(cause(policy(why))))?;
            }
        }
        let token_url = metadata
            .token_endpoint()
            .cloned()
            .ok_or_else(|| ProviderError::Discovery(cause("the provider announces no token_endpoint")))?;
        // The one algorithm the client registered, not any the provider lists (a token signed
        // with another, even by a published key, is refused: the back-channel plan's `wrong-alg`).
        let pinned: CoreJwsSigningAlgorithm = serde_json::from_value(Value::String(config.id_token_alg.clone()))
            .map_err(|_| ProviderError::Discovery(cause(format!("unknown algorithm `{}`", config.id_token_alg))))?;
        if matches!(pinned, CoreJwsSigningAlgorithm::None) {
            return Err(ProviderError::Discovery(cause("unsigned ID tokens are never accepted")));
        }
        if !metadata.id_token_signing_alg_values_supported().contains(&pinned) {
            return Err(ProviderError::Discovery(cause(format!(
                "the provider does not announce {} for ID tokens (id_token_signing_alg_values_supported); \
                 configure the algorithm the client is registered for (id_token_signed_response_alg)",
                config.id_token_alg
            ))));
        }
        let allowed_algs = vec![pinned];
        // form_post when asked for, or when the provider offers it and not the query.
        let form_post = config.response_mode == ResponseMode::FormPost
            || metadata.response_modes_supported().is_some_and(|modes| {
                modes.contains(&openidconnect::core::CoreResponseMode::FormPost)
                    && !modes.contains(&openidconnect::core::CoreResponseMode::Query)
            });
        let announced = metadata.additional_metadata().end_session_endpoint.as_ref().map(|u| u.url().clone());
        let logout = logout_target(config.logout_strategy, announced, issuer.url())?;
        let userinfo_endpoint = match (config.fetch_userinfo, metadata.userinfo_endpoint()) {
            (false, _) => None,
            (true, Some(endpoint)) => Some(endpoint.url().clone()),
            (true, None) => {
                return Err(ProviderError::Discovery(cause(
                    "userinfo is to be fetched at login but the provider announces no userinfo_endpoint",
                )));
            }
        };
        let extras = metadata.additional_metadata();
        let par_endpoint = par_endpoint(
            config.pushed_authorization,
            extras.pushed_authorization_request_endpoint.as_deref(),
            extras.require_pushed_authorization_requests,
        )?;
        check_profile(config, &metadata)?;
        // With several providers (a tenant), `iss` is the mix-up defence: required (RFC 9207);
        // and FAPI 2.0 requires it always.
        let requires_iss = metadata.additional_metadata().authorization_response_iss_parameter_supported
            || config.tenant.is_some()
            || config.fapi2;
        let jwks_uri = metadata.jwks_uri().clone();
        let jwks = metadata.jwks().clone();
        let client_id = ClientId::new(config.client_id.clone());
        let client_secret = ClientSecret::new(config.client_secret.clone());
        let redirect = RedirectUrl::from_url(config.callback_url());
        let assertion = match &config.client_assertion {
            Some((pem, alg, kid)) => Some(ClientAssertion::new(pem, *alg, kid.clone())?),
            None => None,
        };
        // With private_key_jwt there is no secret: the client id goes in the body with the
        // assertion (an HMAC-signed ID token is refused by the configuration then).
        let secret = assertion.is_none().then(|| client_secret.clone());
        let revocation_endpoint = match metadata.additional_metadata().revocation_endpoint.as_deref() {
            Some(url) => Some(
                Url::parse(url).map_err(|e| ProviderError::Discovery(cause(format!("revocation_endpoint: {e}"))))?,
            ),
            None => None,
        };
        let client = CoreClient::from_provider_metadata(metadata, client_id.clone(), secret)
            .set_token_uri(token_url)
            .set_redirect_uri(redirect)
            .set_auth_type(match config.token_endpoint_auth {
                TokenEndpointAuth::ClientSecretBasic => AuthType::BasicAuth,
                _ => AuthType::RequestBody,
            });
        tracing::info!(issuer = %issuer.as_str(), keys = jwks.keys().len(), "discovered OpenID Provider");
        Ok(Self {
            client,
            revocation_endpoint,
            client_id,
            client_secret,
            issuer,
            jwks_uri,
            jwks: RwLock::new(Arc::new(jwks)),
            last_jwks_refetch: tokio::sync::Mutex::new(None),
            last_logout_jwks_refetch: tokio::sync::Mutex::new(None),
            allowed_algs,
            form_post,
            logout,
            par_endpoint,
            userinfo_endpoint,
            assertion,
            requires_iss,
            dpop_nonces: Default::default(),
            http,
            config: config.clone(),
        })
    }

    /// The nonce `server` last gave, for the next proof sent to it.
    fn dpop_nonce(&self, server: NonceOf) -> Option<String> {
        self.dpop_nonces[server as usize].read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Keeps the `DPoP-Nonce` of an answer of `server` (a token-sized printable value only),
    /// and returns it when it is new.
    fn remember_dpop_nonce(&self, server: NonceOf, headers: &reqwest::header::HeaderMap) -> Option<String> {
        let fresh = headers.get("dpop-nonce")?.to_str().ok()?;
        if !crate::dpop::valid_nonce(fresh) {
            return None;
        }
        let mut slot = self.dpop_nonces[server as usize].write().unwrap_or_else(|e| e.into_inner());
        if slot.as_deref() == Some(fresh) {
            return None;
        }
        *slot = Some(fresh.to_owned());
        Some(fresh.to_owned())
    }

    /// The nonce to send a proof again with, when an answer of `server` (its status, headers
    /// and body) asks for one (RFC 9449, 8 and 9) and gives a new one; keeps any nonce it gives.
    fn nonce_to_retry_with(
        &self,
        server: NonceOf,
        status: http::StatusCode,
        headers: &http::HeaderMap,
        body: &[u8],
    ) -> Option<String> {
        let fresh = self.remember_dpop_nonce(server, headers)?;
        let challenge = headers.get(http::header::WWW_AUTHENTICATE).and_then(|h| h.to_str().ok());
        (status.is_client_error() && crate::dpop::asks_for_nonce(challenge, body)).then_some(fresh)
    }

    /// Sends a request built by `build` to `url`, with a DPoP proof by `key` when there is one
    /// (for `access_token` when the request carries it), the nonce `server` gave last, and
    /// once more with a new nonce when the answer asks for one. The answer's status, headers
    /// and body.
    async fn send_proved(
        &self,
        build: impl Fn(&reqwest::Client) -> Result<reqwest::RequestBuilder, AuthError>,
        key: Option<&DpopKey>,
        (method, url): (&str, &Url),
        access_token: Option<&str>,
        server: NonceOf,
        endpoint: &'static str,
    ) -> Result<(reqwest::StatusCode, reqwest::header::HeaderMap, bytes::Bytes), AuthError> {
        let status =
            |answer: &Result<(reqwest::StatusCode, _, _), _>| answer.as_ref().ok().map(|(status, ..)| status.as_u16());
        telemetry::provider_call(endpoint, (method, url), status, async {
            let unreachable = |e: reqwest::Error| AuthError::Provider(ProviderError::Unreachable(cause(e)));
            let mut nonce = self.dpop_nonce(server);
            let mut retried = false;
            loop {
                // Built again for a resend on a new connection: a fresh proof (`jti`) each time.
                let proved = |client: &reqwest::Client| {
                    let mut request = build(client)?;
                    if let Some(key) = key {
                        let proof =
                            key.proof(method, url.as_str(), access_token, nonce.as_deref(), self.config.clock.now());
                        request = request.header("dpop", proof);
                    }
                    Ok::<_, AuthError>(request)
                };
                let response = self.http.send(endpoint, proved).await.map_err(|err| match err {
                    crate::egress::SendError::Build(err) => err,
                    crate::egress::SendError::Failed(err) => unreachable(err),
                    crate::egress::SendError::FailingFast(why) => {
                        AuthError::Provider(ProviderError::Unreachable(cause(why)))
                    }
                })?;
                let (status, headers) = (response.status(), response.headers().clone());
                let body = response.bytes().await.map_err(unreachable)?;
                if key.is_none() {
                    return Ok((status, headers, body));
                }
                let asked = self.nonce_to_retry_with(server, status, &headers, &body);
                if !retried && asked.is_some() {
                    tracing::debug!(%url, "the provider asks for a DPoP nonce; sending the proof again with it");
                    retried = true;
                    nonce = asked;
                    continue;
                }
                return Ok((status, headers, body));
            }
        })
        .await
    }

    /// A request to the token endpoint (openidconnect's), with a DPoP proof by `key` when there
    /// is one, retried once with the provider's nonce when it asks for one; sent through
    /// [`ProviderHttp::send`](crate::egress::ProviderHttp::send), which sends it once more on a
    /// new connection when the first failed before an answer. Every send after the first
    /// carries a fresh client assertion and proof, as a provider may refuse a `jti` it has seen
    /// (RFC 7523, 3; RFC 9449, 11.1).
    async fn token_call(
        &self,
        key: Option<&DpopKey>,
        request: openidconnect::HttpRequest,
    ) -> Result<openidconnect::HttpResponse, openidconnect::HttpClientError<reqwest::Error>> {
        let (parts, body) = request.into_parts();
        let url = parts.uri.to_string();
        let mut nonce = self.dpop_nonce(NonceOf::AuthorizationServer);
        let sends = std::sync::atomic::AtomicU32::new(0);
        let mut retried = false;
        loop {
            let build = |client: &reqwest::Client| {
                let body = match sends.fetch_add(1, std::sync::atomic::Ordering::Relaxed) {
                    0 => body.clone(),
                    _ => self.with_fresh_assertion(&body)?,
                };
                let mut request = client.request(parts.method.clone(), &url).headers(parts.headers.clone()).body(body);
                if let Some(key) = key {
                    let proof = key.proof(parts.method.as_str(), &url, None, nonce.as_deref(), self.config.clock.now());
                    request = request.header("dpop", proof);
                }
                Ok::<_, openidconnect::HttpClientError<reqwest::Error>>(request)
            };
            let response = self.http.send("token", build).await.map_err(|err| match err {
                crate::egress::SendError::Build(err) => err,
                crate::egress::SendError::Failed(err) => openidconnect::HttpClientError::Reqwest(Box::new(err)),
                crate::egress::SendError::FailingFast(why) => openidconnect::HttpClientError::Other(why.into()),
            })?;
            let mut answer = openidconnect::HttpResponse::new(Vec::new());
            *answer.status_mut() = response.status();
            *answer.headers_mut() = response.headers().clone();
            *answer.body_mut() =
                response.bytes().await.map_err(|e| openidconnect::HttpClientError::Reqwest(Box::new(e)))?.to_vec();
            let Some(_) = key else { return Ok(answer) };
            let asked = self.nonce_to_retry_with(
                NonceOf::AuthorizationServer,
                answer.status(),
                answer.headers(),
                answer.body(),
            );
            if !retried && asked.is_some() {
                tracing::debug!("the token endpoint asks for a DPoP nonce; sending the proof again with it");
                retried = true;
                nonce = asked;
                continue;
            }
            return Ok(answer);
        }
    }

    /// A token request's form `body` with its `client_assertion` (if it has one) replaced by a
    /// fresh one.
    fn with_fresh_assertion(&self, body: &[u8]) -> Result<Vec<u8>, openidconnect::HttpClientError<reqwest::Error>> {
        let pairs: Vec<(String, String)> = url::form_urlencoded::parse(body).into_owned().collect();
        if !pairs.iter().any(|(name, _)| name == "client_assertion") {
            return Ok(body.to_vec());
        }
        let fresh = self.assertion_params().map_err(|e| openidconnect::HttpClientError::Other(e.to_string()))?;
        let mut form = url::form_urlencoded::Serializer::new(String::new());
        for (name, value) in &pairs {
            let replaced = fresh.iter().find(|(fresh_name, _)| fresh_name == name).map_or(value, |(_, v)| v);
            form.append_pair(name, replaced);
        }
        Ok(form.finish().into_bytes())
    }

    /// Whether the provider announced `authorization_response_iss_parameter_supported`: then an
    /// authorization response without `iss` is refused (RFC 9207, 2.4).
    pub(crate) fn requires_iss(&self) -> bool {
        self.requires_iss
    }

    /// Whether authorization responses come as a form post to the callback.
    pub(crate) fn form_post(&self) -> bool {
        self.form_post
    }

    /// The provider's issuer, as discovered.
    pub(crate) fn issuer(&self) -> &str {
        self.issuer.as_str()
    }

    /// A new authorization request: fresh `state`, `nonce` and PKCE S256 verifier.
    pub(crate) fn authorization_request(
        &self,
        scope: &str,
        audience: Option<&str>,
        extra: &[(String, String)],
        dpop: Option<&DpopKey>,
        redirect: Option<Url>,
    ) -> AuthorizationRequest {
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let state = crate::seal::random_token(32);
        let nonce = crate::seal::random_token(32);
        let (state_for_url, nonce_for_url) = (state.clone(), nonce.clone());
        let mut request = self
            .client
            .authorize_url(
                CoreAuthenticationFlow::AuthorizationCode,
                move || CsrfToken::new(state_for_url),
                move || Nonce::new(nonce_for_url),
            )
            .set_pkce_challenge(challenge);
        if let Some(redirect) = redirect {
            request = request.set_redirect_uri(std::borrow::Cow::Owned(RedirectUrl::from_url(redirect)));
        }
        for scope in scope.split_whitespace().filter(|s| *s != "openid") {
            request = request.add_scope(Scope::new(scope.to_owned()));
        }
        if let Some(audience) = audience {
            request = request.add_extra_param("audience", audience.to_owned());
        }
        if self.form_post {
            request = request.add_extra_param("response_mode", "form_post");
        }
        // RFC 9449, 10: the code is bound to the key that must then prove it at the exchange
        // (a pushed request carries a proof as well).
        if let Some(key) = dpop {
            request = request.add_extra_param("dpop_jkt", key.thumbprint().to_owned());
        }
        // The caller has taken `scope` and `audience` out and refused the reserved ones.
        for (name, value) in extra {
            request = request.add_extra_param(name.clone(), value.clone());
        }
        let (url, _, _) = request.url();
        AuthorizationRequest { url, state, nonce, code_verifier: verifier.secret().clone() }
    }

    /// `request` as the browser's redirect: as it is, or, with pushed authorization requests,
    /// its parameters posted to the provider (with the client's credentials) and the redirect
    /// reduced to `client_id` and the `request_uri` the provider answered.
    pub(crate) async fn redirect_for(
        &self,
        request: &AuthorizationRequest,
        dpop: Option<&DpopKey>,
    ) -> Result<Url, AuthError> {
        let Some(endpoint) = &self.par_endpoint else { return Ok(request.url.clone()) };
        let params: Vec<(String, String)> = request.url.query_pairs().into_owned().collect();
        // A fresh client assertion at each attempt: the provider may refuse a replayed `jti`.
        let build = |http: &reqwest::Client| self.authenticated(http.post(endpoint.clone()), &params);
        let (status, _, body) =
            self.send_proved(build, dpop, ("POST", endpoint), None, NonceOf::AuthorizationServer, "par").await?;
        let json: Option<Value> = serde_json::from_slice(&body).ok();
        if status.is_client_error()
            && let Some(error) = json.as_ref().and_then(|j| j.get("error")).and_then(Value::as_str)
        {
            let description = json.as_ref().and_then(|j| j.get("error_description")).and_then(Value::as_str);
            tracing::warn!(error, description, "the provider refused the pushed authorization request");
            return Err(AuthError::ProviderRefused {
                error: error.to_owned(),
                description: description.map(str::to_owned),
            });
        }
        let request_uri = json
            .as_ref()
            .filter(|_| status.is_success())
            .and_then(|j| j.get("request_uri"))
            .and_then(Value::as_str)
            .filter(|uri| !uri.is_empty() && uri.len() <= 2048);
        let Some(request_uri) = request_uri else {
            return Err(AuthError::Provider(ProviderError::BadTokenResponse(format!(
                "the pushed authorization request endpoint answered {status} without a request_uri"
            ))));
        };
        let mut url = request.url.clone();
        url.set_query(None);
        url.query_pairs_mut().append_pair("client_id", self.client_id.as_str()).append_pair("request_uri", request_uri);
        Ok(url)
    }

    /// Adds the userinfo endpoint's claims to `claims` (an ID token's: those already there win),
    /// when logins fetch them. The answer's `sub` must be the ID token's (OpenID Connect Core
    /// 5.3.2); a signed (JWT) answer is not taken.
    pub(crate) async fn merge_userinfo(
        &self,
        access_token: &str,
        claims: &mut Map<String, Value>,
        dpop: Option<&DpopKey>,
    ) -> Result<(), AuthError> {
        let Some(endpoint) = &self.userinfo_endpoint else { return Ok(()) };
        let bad = |why: String| AuthError::Provider(ProviderError::BadTokenResponse(why));
        // RFC 9449, 7.1: a DPoP-bound token goes with the `DPoP` scheme and a proof.
        let scheme = if dpop.is_some() { "DPoP" } else { "Bearer" };
        let build = |http: &reqwest::Client| {
            Ok(http
                .get(endpoint.clone())
                .header(reqwest::header::AUTHORIZATION, format!("{scheme} {access_token}"))
                .header(reqwest::header::ACCEPT, "application/json"))
        };
        let (status, _, body) =
            self.send_proved(build, dpop, ("GET", endpoint), Some(access_token), NonceOf::Userinfo, "userinfo").await?;
        if !status.is_success() {
            return Err(bad(format!("the userinfo endpoint answered {status}")));
        }
        let Ok(Value::Object(userinfo)) = serde_json::from_slice::<Value>(&body) else {
            return Err(bad("the userinfo endpoint's answer is not a JSON object".into()));
        };
        let expected = claims.get("sub").and_then(Value::as_str);
        if userinfo.get("sub").and_then(Value::as_str) != expected {
            return Err(AuthError::Provider(ProviderError::InvalidIdToken(
                "the userinfo endpoint names another sub than the ID token".into(),
            )));
        }
        for (name, value) in userinfo {
            claims.entry(name).or_insert(value);
        }
        Ok(())
    }

    /// The `client_assertion` parameters of a request to the provider, with a fresh assertion;
    /// none without `private_key_jwt`.
    fn assertion_params(&self) -> Result<Vec<(String, String)>, AuthError> {
        let Some(assertion) = &self.assertion else { return Ok(Vec::new()) };
        let jwt = assertion.sign(self.client_id.as_str(), self.issuer.as_str(), self.config.clock.now())?;
        Ok(vec![
            ("client_assertion_type".into(), "urn:ietf:params:oauth:client-assertion-type:jwt-bearer".into()),
            ("client_assertion".into(), jwt),
        ])
    }

    /// Exchanges an authorization code and checks the ID token against `nonce`.
    pub(crate) async fn exchange_code(
        &self,
        code: &str,
        code_verifier: &str,
        nonce: &str,
        dpop: Option<&DpopKey>,
        redirect: Option<Url>,
    ) -> Result<LoginTokens, ProviderError> {
        let assertion = self.assertion_params().map_err(|e| ProviderError::BadTokenResponse(e.to_string()))?;
        let mut request = self
            .client
            .exchange_code(AuthorizationCode::new(code.to_owned()))
            .set_pkce_verifier(PkceCodeVerifier::new(code_verifier.to_owned()));
        if let Some(redirect) = redirect {
            request = request.set_redirect_uri(std::borrow::Cow::Owned(RedirectUrl::from_url(redirect)));
        }
        for (name, value) in assertion {
            request = request.add_extra_param(name, value);
        }
        let send = TokenClient::new(self, dpop, false);
        let response: CoreTokenResponse = request.request_async(&send).await.map_err(|err| match token_error(err) {
            // At the code exchange, `invalid_grant` means a bad or used code, not a dead session.
            ProviderError::InvalidGrant(why) => ProviderError::TokenRefused(why),
            other => other,
        })?;
        check_token_type(&response, dpop.is_some())?;
        let id_token = response
            .id_token()
            .ok_or_else(|| ProviderError::BadTokenResponse("no id_token in the token response".into()))?;
        let claims = self.verify_id_token(id_token, Some(nonce)).await?;
        let now = self.config.clock.now();
        Ok(LoginTokens {
            id_token: id_token.to_string(),
            claims,
            access_token: response.access_token().secret().clone(),
            refresh_token: response.refresh_token().map(|t| t.secret().clone()),
            refresh_token_ends_at: response.refresh_token().and_then(|_| send.refresh_token_ends_at(now)),
            expires_at: response.expires_in().map(|d| now.saturating_add(d.as_secs())),
            scope: response.scopes().map(|s| s.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(" ")),
        })
    }

    /// Exchanges a refresh token; a new ID token in the answer is checked like any other (its
    /// `nonce` only if present) and must name the same `sub`.
    pub(crate) async fn refresh(
        &self,
        refresh_token: &str,
        audience: Option<&str>,
        scope: Option<&str>,
        sub: &str,
        dpop: Option<&DpopKey>,
    ) -> Result<RefreshedTokens, ProviderError> {
        let token = openidconnect::RefreshToken::new(refresh_token.to_owned());
        let mut request = self.client.exchange_refresh_token(&token);
        for (name, value) in self.assertion_params().map_err(|e| ProviderError::BadTokenResponse(e.to_string()))? {
            request = request.add_extra_param(name, value);
        }
        if let Some(scope) = scope {
            for s in scope.split_whitespace() {
                request = request.add_scope(Scope::new(s.to_owned()));
            }
        }
        if let Some(audience) = audience {
            request = request.add_extra_param("audience", audience.to_owned());
        }
        let send = TokenClient::new(self, dpop, true);
        let response: CoreTokenResponse = request.request_async(&send).await.map_err(token_error)?;
        check_token_type(&response, dpop.is_some())?;
        let now = self.config.clock.now();
        let id_token = match response.id_token() {
            Some(id_token) => {
                let claims = self.verify_id_token(id_token, None).await?;
                if claims.get("sub").and_then(Value::as_str) != Some(sub) {
                    return Err(ProviderError::InvalidIdToken("a refreshed ID token names another sub".into()));
                }
                Some((id_token.to_string(), claims))
            }
            None => None,
        };
        Ok(RefreshedTokens {
            access_token: response.access_token().secret().clone(),
            expires_at: response.expires_in().map(|d| now.saturating_add(d.as_secs())),
            scope: response.scopes().map(|s| s.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(" ")),
            refresh_token: response.refresh_token().map(|t| t.secret().clone()),
            refresh_token_ends_at: response.refresh_token().and_then(|_| send.refresh_token_ends_at(now)),
            id_token,
        })
    }

    /// Whether the provider announced a `revocation_endpoint` (RFC 7009).
    pub(crate) fn revokes(&self) -> bool {
        self.revocation_endpoint.is_some()
    }

    /// Revokes `refresh_token` at the provider's revocation endpoint (RFC 7009, 2.1), with the
    /// client's authentication and a DPoP proof by `dpop` when the session's tokens are bound to
    /// it. A token the provider no longer knows counts as revoked, by RFC 7009's rule (200).
    pub(crate) async fn revoke(&self, refresh_token: &str, dpop: Option<&DpopKey>) -> Result<(), AuthError> {
        let endpoint = self.revocation_endpoint.as_ref().ok_or_else(|| {
            AuthError::Provider(ProviderError::TokenRefused("the provider announces no revocation_endpoint".into()))
        })?;
        let mut params = vec![
            ("token".to_owned(), refresh_token.to_owned()),
            ("token_type_hint".to_owned(), "refresh_token".to_owned()),
        ];
        if !matches!(self.config.token_endpoint_auth, TokenEndpointAuth::ClientSecretBasic) {
            params.push(("client_id".to_owned(), self.client_id.as_str().to_owned()));
        }
        let build = |http: &reqwest::Client| self.authenticated(http.post(endpoint.clone()), &params);
        let (status, _, _) =
            self.send_proved(build, dpop, ("POST", endpoint), None, NonceOf::AuthorizationServer, "revocation").await?;
        if status.is_success() {
            return Ok(());
        }
        // The status alone: the provider's body does not reach a log line.
        let why = format!("the revocation endpoint answered {status}");
        Err(AuthError::Provider(if status.is_server_error() {
            ProviderError::Unreachable(cause(why))
        } else {
            ProviderError::TokenRefused(why)
        }))
    }

    /// `post` with the form `params` and the client's authentication, by the configured method:
    /// a fresh client assertion (`private_key_jwt`), the secret in the form
    /// (`client_secret_post`), or HTTP Basic (`client_secret_basic`, both parts form-encoded
    /// first, RFC 6749 2.3.1).
    fn authenticated(
        &self,
        post: reqwest::RequestBuilder,
        params: &[(String, String)],
    ) -> Result<reqwest::RequestBuilder, AuthError> {
        let post = post.header(reqwest::header::ACCEPT, "application/json");
        Ok(match self.config.token_endpoint_auth {
            TokenEndpointAuth::PrivateKeyJwt => post.form(&[params, &self.assertion_params()?].concat()),
            TokenEndpointAuth::ClientSecretPost => {
                post.form(&[params, &[("client_secret".into(), self.client_secret.secret().clone())]].concat())
            }
            _ => {
                let encode = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
                post.basic_auth(encode(self.client_id.as_str()), Some(encode(self.client_secret.secret())))
                    .form(&params)
            }
        })
    }

    /// Every check of a back-channel logout token (OpenID Connect Back-Channel Logout 1.0,
    /// 2.4 to 2.6) but replay, which the caller checks with `jti`.
    pub(crate) async fn verify_logout_token(&self, token: &str) -> Result<LogoutClaims, ProviderError> {
        let bad = |why: &str| ProviderError::InvalidLogoutToken(why.to_owned());
        let (header, claims, signature, signing_input) = parse_jwt(token)?;
        let alg = check_logout_header(&header)?;
        if !self.allowed_algs.contains(&alg) {
            return Err(bad("alg is not the one the client registered (id_token_signed_response_alg)"));
        }
        let kid = header.get("kid").and_then(Value::as_str);
        if let Some(kid) = kid
            && !self.knows_kid(kid)
        {
            self.refetch_jwks(kid, KeyNeed::LogoutToken).await;
        }
        let verified = if alg.uses_shared_secret() {
            let key =
                openidconnect::core::CoreJsonWebKey::new_symmetric(self.client_secret.secret().as_bytes().to_vec());
            key.verify_signature(&alg, signing_input.as_bytes(), &signature).is_ok()
        } else {
            let keys = self.keys();
            keys.keys()
                .iter()
                .filter(|k| kid.is_none() || k.key_id().is_some_and(|id| Some(id.as_str()) == kid))
                .any(|k| k.verify_signature(&alg, signing_input.as_bytes(), &signature).is_ok())
        };
        if !verified {
            return Err(bad("signature does not verify with the provider's keys"));
        }

        let now = self.config.clock.now();
        let limits = LogoutTokenLimits {
            skew: self.config.clock_skew.as_secs(),
            max_age: self.config.logout_token_max_age.as_secs(),
        };
        check_logout_claims(&claims, self.issuer.as_str(), self.client_id.as_str(), now, limits)
    }

    /// Every ID-token check: signature by `kid` (refetching the JWKS once for an unknown one),
    /// the registered algorithm (never `none`), `iss`, `aud`, `azp` with several audiences, `exp`
    /// and `iat` within the clock tolerance, `nonce`, `sub`. Returns all the token's claims.
    async fn verify_id_token(
        &self,
        id_token: &CoreIdToken,
        nonce: Option<&str>,
    ) -> Result<Map<String, Value>, ProviderError> {
        let raw = id_token.to_string();
        if raw.len() > MAX_ID_TOKEN_LEN {
            return Err(ProviderError::InvalidIdToken(format!("longer than {MAX_ID_TOKEN_LEN} bytes")));
        }
        if let Some(kid) = header_kid(&raw)
            && !self.knows_kid(&kid)
        {
            self.refetch_jwks(&kid, KeyNeed::IdToken).await;
        }
        let keys = self.keys();
        let now = self.config.clock.now() as i64;
        let skew = self.config.clock_skew.as_secs() as i64;
        // A header without `kid` over several published keys: each key is tried in turn, a
        // bounded number (openidconnect's verifier refuses the ambiguity; the keys are the
        // provider's own, so whichever verifies is the provider's signature).
        let candidates: Vec<CoreJsonWebKeySet> = if header_kid(&raw).is_none() && keys.keys().len() > 1 {
            keys.keys().iter().take(MAX_KEYS_TRIED).map(|k| CoreJsonWebKeySet::new(vec![k.clone()])).collect()
        } else {
            vec![(*keys).clone()]
        };
        let mut outcome = Err(ProviderError::InvalidIdToken("the provider publishes no key".into()));
        for set in candidates {
            let verifier = CoreIdTokenVerifier::new_confidential_client(
                self.client_id.clone(),
                self.client_secret.clone(),
                self.issuer.clone(),
                set,
            )
            .set_allowed_algs(self.allowed_algs.clone())
            // Extra audiences are allowed only with `azp`, checked below.
            .set_other_audience_verifier_fn(|_| true)
            // `exp` is compared with this time: the tolerance lets a token expire `skew` late.
            .set_time_fn(move || timestamp(now - skew))
            .set_issue_time_verifier_fn(move |iat| {
                if iat.timestamp() > now + skew {
                    Err(format!("issued in the future ({})", iat.timestamp()))
                } else {
                    Ok(())
                }
            });
            let verified = match nonce {
                Some(nonce) => id_token.claims(&verifier, &Nonce::new(nonce.to_owned())),
                // A refreshed ID token: no nonce was sent, so none is required.
                None => id_token.claims(&verifier, |_: Option<&Nonce>| Ok(())),
            };
            let another_key_may_verify =
                matches!(verified, Err(openidconnect::ClaimsVerificationError::SignatureVerification(_)));
            outcome = verified.map_err(|e| ProviderError::InvalidIdToken(e.to_string()));
            if !another_key_may_verify {
                break;
            }
        }
        let verified = outcome?;
        let audiences = verified.audiences();
        match verified.authorized_party() {
            Some(azp) if azp.as_str() != self.client_id.as_str() => {
                return Err(ProviderError::InvalidIdToken(format!("azp `{}` is not this client", azp.as_str())));
            }
            None if audiences.len() > 1 => {
                return Err(ProviderError::InvalidIdToken("several audiences and no azp".into()));
            }
            _ => {}
        }
        if verified.subject().is_empty() {
            return Err(ProviderError::InvalidIdToken("empty sub".into()));
        }
        // The signature is verified: read every claim, including those openidconnect has no type for.
        let payload = raw.split('.').nth(1).unwrap_or_default();
        URL_SAFE_NO_PAD
            .decode(payload)
            .ok()
            .and_then(|bytes| serde_json::from_slice::<Map<String, Value>>(&bytes).ok())
            .ok_or_else(|| ProviderError::InvalidIdToken("payload is not a JSON object".into()))
    }

    /// How many keys the provider's key set holds now.
    pub(crate) fn signing_keys(&self) -> usize {
        self.keys().keys().len()
    }

    fn keys(&self) -> Arc<CoreJsonWebKeySet> {
        self.jwks.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn knows_kid(&self, kid: &str) -> bool {
        self.keys().keys().iter().any(|k| k.key_id().is_some_and(|id| id.as_str() == kid))
    }

    /// Refetches the JWKS for an unknown `kid`, within `need`'s budget (see [`KeyNeed`]);
    /// concurrent callers of one budget wait for the refetch under way instead of starting
    /// another, and find the key it brought.
    async fn refetch_jwks(&self, kid: &str, need: KeyNeed) {
        let (budget, spacing) = match need {
            KeyNeed::IdToken => (&self.last_jwks_refetch, ID_TOKEN_REFETCH_SPACING),
            KeyNeed::LogoutToken => (&self.last_logout_jwks_refetch, LOGOUT_TOKEN_REFETCH_SPACING),
        };
        let mut last = budget.lock().await;
        if self.knows_kid(kid) {
            return;
        }
        if last.is_some_and(|at| at.elapsed() < spacing) {
            tracing::warn!(kid, ?need, "token names an unknown key; JWKS refetched too recently to try again");
            return;
        }
        *last = Some(Instant::now());
        tracing::info!(kid, ?need, "token names an unknown key; refetching the provider's JWKS");
        let for_ = match need {
            KeyNeed::IdToken => "id_token",
            KeyNeed::LogoutToken => "logout_token",
        };
        telemetry::count_by(telemetry::JWKS_REFETCHES, "for", for_);
        // Through the provider's client: a broken connection is retried on a new one, and a
        // provider that is down is not waited on.
        let url = self.jwks_uri.url();
        let fetch = async {
            let accept = "application/json, application/jwk-set+json";
            let get =
                |client: &reqwest::Client| Ok::<_, ()>(client.get(url.clone()).header(reqwest::header::ACCEPT, accept));
            let response = self.http.send("jwks", get).await.map_err(|err| match err {
                crate::egress::SendError::Failed(err) => (None, err.to_string()),
                crate::egress::SendError::FailingFast(why) => (None, why.to_owned()),
                crate::egress::SendError::Build(()) => (None, "the request could not be built".to_owned()),
            })?;
            let status = response.status().as_u16();
            if !response.status().is_success() {
                return Err((Some(status), format!("the key set's endpoint answered {status}")));
            }
            let body = response.bytes().await.map_err(|err| (Some(status), err.to_string()))?;
            let keys =
                serde_json::from_slice::<CoreJsonWebKeySet>(&body).map_err(|err| (Some(status), err.to_string()))?;
            Ok((status, keys))
        };
        let status = |answer: &Result<(u16, _), (Option<u16>, _)>| match answer {
            Ok((status, _)) => Some(*status),
            Err((status, _)) => *status,
        };
        match telemetry::provider_call("jwks", ("GET", url), status, fetch).await {
            Ok((_, jwks)) => *self.jwks.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(jwks),
            Err((_, why)) => tracing::warn!(error = why.as_str(), "JWKS refetch failed"),
        }
    }

    /// The provider's logout URL for this ID token, or `None` when the strategy logs out here
    /// only.
    pub(crate) fn end_session_url(
        &self,
        id_token: Option<&str>,
        post_logout_redirect_uri: &Url,
        state: Option<&str>,
        extra: &[(String, String)],
    ) -> Option<Url> {
        let (mut url, oidc) = match &self.logout {
            LogoutTarget::Oidc(url) => (url.clone(), true),
            LogoutTarget::Auth0V2(url) => (url.clone(), false),
            LogoutTarget::Local => return None,
        };
        {
            let mut query = url.query_pairs_mut();
            query.extend_pairs(extra);
            if oidc {
                if let Some(hint) = id_token {
                    query.append_pair("id_token_hint", hint);
                }
                query.append_pair("post_logout_redirect_uri", post_logout_redirect_uri.as_str());
                if let Some(state) = state {
                    query.append_pair("state", state);
                }
            } else {
                query.append_pair("returnTo", post_logout_redirect_uri.as_str());
            }
            query.append_pair("client_id", self.client_id.as_str());
        }
        Some(url)
    }
}

/// The client's private key for `private_key_jwt` (RFC 7523) client assertions.
struct ClientAssertion {
    key: AssertionKey,
    kid: Option<String>,
}

enum AssertionKey {
    Rsa(Box<openidconnect::core::CoreRsaPrivateSigningKey>, CoreJwsSigningAlgorithm),
    P256(p256::ecdsa::SigningKey),
}

impl ClientAssertion {
    /// From the key's text: PEM (RSA PKCS#1 or PKCS#8; P-256 PKCS#8 or SEC1) or a private JWK.
    fn new(text: &str, alg: crate::config::ClientAssertionAlg, kid: Option<String>) -> Result<Self, ProviderError> {
        use crate::config::ClientAssertionAlg;
        use rsa::pkcs1::EncodeRsaPrivateKey;
        use rsa::pkcs8::DecodePrivateKey;
        let refused = |why: String| ProviderError::Discovery(cause(format!("the client assertion key: {why}")));
        let text = text.trim();
        let mut kid = kid;
        if alg == ClientAssertionAlg::Es256 {
            let key = if text.starts_with('{') {
                let jwk: Value = serde_json::from_str(text).map_err(|e| refused(e.to_string()))?;
                if jwk["kty"] != "EC" || jwk["crv"] != "P-256" {
                    return Err(refused("ES256 needs an EC key on P-256".into()));
                }
                kid = kid.or_else(|| jwk["kid"].as_str().map(str::to_owned));
                let d = jwk_bytes(&jwk, "d").map_err(refused)?;
                p256::ecdsa::SigningKey::from_slice(&d).map_err(|e| refused(e.to_string()))?
            } else if text.contains("BEGIN EC PRIVATE KEY") {
                let secret = p256::SecretKey::from_sec1_pem(text).map_err(|e| refused(e.to_string()))?;
                p256::ecdsa::SigningKey::from(secret)
            } else {
                <p256::ecdsa::SigningKey as p256::pkcs8::DecodePrivateKey>::from_pkcs8_pem(text)
                    .map_err(|e| refused(e.to_string()))?
            };
            return Ok(Self { key: AssertionKey::P256(key), kid });
        }
        let rsa = if text.starts_with('{') {
            let jwk: Value = serde_json::from_str(text).map_err(|e| refused(e.to_string()))?;
            if jwk["kty"] != "RSA" {
                return Err(refused(format!("{alg:?} needs an RSA key")));
            }
            kid = kid.or_else(|| jwk["kid"].as_str().map(str::to_owned));
            let int = |name: &str| jwk_bytes(&jwk, name).map(|b| rsa::BigUint::from_bytes_be(&b));
            let (n, e, d) = (int("n").map_err(refused)?, int("e").map_err(refused)?, int("d").map_err(refused)?);
            let primes = match (int("p"), int("q")) {
                (Ok(p), Ok(q)) => vec![p, q],
                _ => Vec::new(),
            };
            rsa::RsaPrivateKey::from_components(n, e, d, primes).map_err(|e| refused(e.to_string()))?
        } else if text.contains("BEGIN PRIVATE KEY") {
            rsa::RsaPrivateKey::from_pkcs8_pem(text).map_err(|e| refused(e.to_string()))?
        } else {
            use rsa::pkcs1::DecodeRsaPrivateKey;
            rsa::RsaPrivateKey::from_pkcs1_pem(text).map_err(|e| refused(e.to_string()))?
        };
        // openidconnect signs with a PKCS#1 PEM key.
        let pkcs1 = rsa.to_pkcs1_pem(rsa::pkcs8::LineEnding::LF).map_err(|e| refused(e.to_string()))?;
        let key = openidconnect::core::CoreRsaPrivateSigningKey::from_pem(&pkcs1, None).map_err(refused)?;
        let alg = match alg {
            ClientAssertionAlg::Ps256 => CoreJwsSigningAlgorithm::RsaSsaPssSha256,
            _ => CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256,
        };
        Ok(Self { key: AssertionKey::Rsa(Box::new(key), alg), kid })
    }

    /// A fresh assertion of `client_id` for `audience` (the issuer), valid 60 s from `now`.
    fn sign(&self, client_id: &str, audience: &str, now: u64) -> Result<String, AuthError> {
        use openidconnect::PrivateSigningKey;
        let alg = match &self.key {
            AssertionKey::Rsa(_, CoreJwsSigningAlgorithm::RsaSsaPssSha256) => "PS256",
            AssertionKey::Rsa(..) => "RS256",
            AssertionKey::P256(_) => "ES256",
        };
        let mut header = serde_json::json!({ "alg": alg, "typ": "JWT" });
        if let Some(kid) = &self.kid {
            header["kid"] = Value::from(kid.as_str());
        }
        let claims = serde_json::json!({
            "iss": client_id, "sub": client_id, "aud": audience,
            "jti": crate::seal::random_token(24), "iat": now, "exp": now + 60,
        });
        let input =
            format!("{}.{}", URL_SAFE_NO_PAD.encode(header.to_string()), URL_SAFE_NO_PAD.encode(claims.to_string()));
        let failed = |e: String| {
            AuthError::Provider(ProviderError::BadTokenResponse(format!("signing the client assertion failed: {e}")))
        };
        let signature = match &self.key {
            AssertionKey::Rsa(key, alg) => key.sign(alg, input.as_bytes()).map_err(|e| failed(e.to_string()))?,
            AssertionKey::P256(key) => {
                use p256::ecdsa::signature::Signer;
                // JWS wants r and s, 32 bytes each (RFC 7518, 3.4), not DER.
                let signature: p256::ecdsa::Signature =
                    key.try_sign(input.as_bytes()).map_err(|e| failed(e.to_string()))?;
                signature.to_bytes().to_vec()
            }
        };
        Ok(format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature)))
    }
}

/// A JWK member's base64url bytes.
fn jwk_bytes(jwk: &Value, name: &str) -> Result<Vec<u8>, String> {
    let text = jwk[name].as_str().ok_or_else(|| format!("the JWK has no `{name}`"))?;
    URL_SAFE_NO_PAD.decode(text).map_err(|e| format!("the JWK's `{name}`: {e}"))
}

/// Where logins are pushed (RFC 9126), by the setting (`None`: as the provider requires) and
/// the provider's metadata.
fn par_endpoint(setting: Option<bool>, announced: Option<&str>, required: bool) -> Result<Option<Url>, ProviderError> {
    let discovery = |why: String| ProviderError::Discovery(cause(why));
    let endpoint = announced
        .map(|url| Url::parse(url).map_err(|e| discovery(format!("pushed_authorization_request_endpoint: {e}"))))
        .transpose()?;
    match (setting.unwrap_or(required), endpoint) {
        (true, Some(endpoint)) => Ok(Some(endpoint)),
        (true, None) => {
            Err(discovery("pushed authorization requests are on but the provider announces no endpoint".into()))
        }
        (false, _) if required => {
            Err(discovery("the provider requires pushed authorization requests and they are turned off".into()))
        }
        (false, _) => Ok(None),
    }
}

/// What DPoP and the FAPI 2.0 profile need of the provider's metadata: ES256 DPoP proofs
/// (when it lists what it takes; under FAPI 2.0 it must list them), and under FAPI 2.0
/// `private_key_jwt` and PKCE S256 (pushed requests are checked with their endpoint).
fn check_profile(config: &AuthConfig, metadata: &ProviderMetadata) -> Result<(), ProviderError> {
    let short = |why: String| Err(ProviderError::Discovery(cause(why)));
    let extras = metadata.additional_metadata();
    if config.dpop.is_some() {
        match &extras.dpop_signing_alg_values_supported {
            Some(algs) if !algs.iter().any(|a| a == DPOP_ALG) => {
                return short(format!(
                    "DPoP is on but the provider takes no {DPOP_ALG} proofs (dpop_signing_alg_values_supported: {})",
                    algs.join(", ")
                ));
            }
            None if config.fapi2 => {
                return short(
                    "the FAPI 2.0 profile needs DPoP, and the provider announces none \
                     (dpop_signing_alg_values_supported)"
                        .into(),
                );
            }
            _ => {}
        }
    }
    if !config.fapi2 {
        return Ok(());
    }
    if let Some(methods) = metadata.token_endpoint_auth_methods_supported()
        && !methods.contains(&openidconnect::core::CoreClientAuthMethod::PrivateKeyJwt)
    {
        return short(
            "the FAPI 2.0 profile needs private_key_jwt, which the provider does not announce \
             (token_endpoint_auth_methods_supported)"
                .into(),
        );
    }
    if !extras.code_challenge_methods_supported.as_ref().is_some_and(|m| m.iter().any(|m| m == "S256")) {
        return short(
            "the FAPI 2.0 profile needs PKCE S256, which the provider does not announce \
             (code_challenge_methods_supported)"
                .into(),
        );
    }
    Ok(())
}

/// Where a logout sends the browser.
#[derive(Debug, Clone, PartialEq, Eq)]
enum LogoutTarget {
    /// The provider's `end_session_endpoint` (RP-Initiated Logout).
    Oidc(Url),
    /// Auth0's `/v2/logout`.
    Auth0V2(Url),
    /// Nowhere: the session ends here only.
    Local,
}

/// The logout target `strategy` gives, with the `end_session_endpoint` the provider
/// `announced` (if any) and its `issuer`.
fn logout_target(
    strategy: LogoutStrategy,
    announced: Option<Url>,
    issuer: &Url,
) -> Result<LogoutTarget, ProviderError> {
    let auth0_v2 = || {
        issuer
            .join("/v2/logout")
            .map(LogoutTarget::Auth0V2)
            .map_err(|e| ProviderError::Discovery(cause(format!("no /v2/logout URL for the issuer: {e}"))))
    };
    let auth0_domain = issuer.host_str().is_some_and(|h| h.ends_with(".auth0.com"));
    match (strategy, announced) {
        (LogoutStrategy::Local, _) => Ok(LogoutTarget::Local),
        (LogoutStrategy::V2, _) => auth0_v2(),
        (LogoutStrategy::Oidc | LogoutStrategy::Auto, Some(url)) => Ok(LogoutTarget::Oidc(url)),
        (LogoutStrategy::Oidc, None) => Err(ProviderError::Discovery(cause(
            "the logout strategy is oidc but the provider announces no end_session_endpoint",
        ))),
        (_, None) if auth0_domain => auth0_v2(),
        (_, None) => {
            tracing::warn!(
                "the provider announces no end_session_endpoint: logging out ends the session here only, \
                 and the next login may be silent"
            );
            Ok(LogoutTarget::Local)
        }
    }
}

type TokenError = RequestTokenError<
    openidconnect::HttpClientError<reqwest::Error>,
    openidconnect::StandardErrorResponse<openidconnect::core::CoreErrorResponseType>,
>;

/// Whether a discovery failure may pass by itself: no answer, or a 5xx. Not a refusal of the
/// endpoint policy, nor metadata that is wrong.
fn transient(err: &openidconnect::DiscoveryError<openidconnect::HttpClientError<reqwest::Error>>) -> bool {
    match err {
        openidconnect::DiscoveryError::Request(openidconnect::HttpClientError::Reqwest(_)) => true,
        openidconnect::DiscoveryError::Response(status, ..) => status.is_server_error(),
        _ => false,
    }
}

fn token_error(err: TokenError) -> ProviderError {
    match err {
        RequestTokenError::ServerResponse(e)
            if *e.error() == openidconnect::core::CoreErrorResponseType::InvalidGrant =>
        {
            ProviderError::InvalidGrant(e.to_string())
        }
        RequestTokenError::ServerResponse(e) => ProviderError::TokenRefused(e.to_string()),
        RequestTokenError::Request(e) => ProviderError::Unreachable(cause(e)),
        // A JSON answer with an ID token that does not parse: the ID token lacks a required
        // claim (`iat`, `sub`, ...) or has a malformed one.
        RequestTokenError::Parse(e, body) if has_id_token(&body) => ProviderError::InvalidIdToken(e.to_string()),
        RequestTokenError::Parse(e, _) => ProviderError::BadTokenResponse(e.to_string()),
        RequestTokenError::Other(e) => ProviderError::BadTokenResponse(e),
    }
}

/// A token asked for with a DPoP proof must come back bound (`token_type` `DPoP`, RFC 9449,
/// 5): a Bearer token would then be sent where the app expects a sender-constrained one. And a
/// DPoP-bound token asked for without a proof is of no use (no key proves it).
fn check_token_type(response: &CoreTokenResponse, dpop: bool) -> Result<(), ProviderError> {
    let kind = response.token_type().as_ref();
    if kind.eq_ignore_ascii_case("DPoP") == dpop {
        return Ok(());
    }
    let asked = if dpop { "a DPoP-bound token" } else { "a Bearer token" };
    Err(ProviderError::BadTokenResponse(format!(
        "the token endpoint answered a `{kind}` token where {asked} was asked for"
    )))
}

fn has_id_token(body: &[u8]) -> bool {
    serde_json::from_slice::<Map<String, Value>>(body).is_ok_and(|answer| answer.contains_key("id_token"))
}

fn decode_json(segment: &str) -> Option<Map<String, Value>> {
    let bytes = URL_SAFE_NO_PAD.decode(segment).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// A JWT's parts: header and claims (JSON objects), signature bytes, and the signed input.
pub(crate) type JwtParts<'t> = (Map<String, Value>, Map<String, Value>, Vec<u8>, &'t str);

/// Splits and decodes a JWT. Structure only; nothing is verified.
pub(crate) fn parse_jwt(token: &str) -> Result<JwtParts<'_>, ProviderError> {
    let bad = |why: &str| ProviderError::InvalidLogoutToken(why.to_owned());
    if token.len() > MAX_ID_TOKEN_LEN {
        return Err(bad("too long"));
    }
    let mut parts = token.split('.');
    let (Some(header_b64), Some(payload_b64), Some(signature_b64), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(bad("not a signed JWT (three parts)"));
    };
    let header = decode_json(header_b64).ok_or_else(|| bad("header is not JSON"))?;
    let claims = decode_json(payload_b64).ok_or_else(|| bad("payload is not JSON"))?;
    let signature = URL_SAFE_NO_PAD.decode(signature_b64).map_err(|_| bad("signature is not base64url"))?;
    let signing_input = &token[..header_b64.len() + 1 + payload_b64.len()];
    Ok((header, claims, signature, signing_input))
}

/// The `iss` a JWT claims, read without checking anything: only to pick which of several
/// clients then verifies it.
pub(crate) fn unverified_issuer(token: &str) -> Option<String> {
    let (_, claims, _, _) = parse_jwt(token).ok()?;
    claims.get("iss")?.as_str().map(str::to_owned)
}

/// A logout token's header checks: `typ` (when present) and an algorithm that is not `none`.
pub(crate) fn check_logout_header(header: &Map<String, Value>) -> Result<CoreJwsSigningAlgorithm, ProviderError> {
    let bad = |why: &str| ProviderError::InvalidLogoutToken(why.to_owned());
    match header.get("typ").map(|t| t.as_str()) {
        None | Some(Some("logout+jwt" | "JWT" | "jwt" | "application/logout+jwt")) => {}
        _ => return Err(bad("typ is not logout+jwt")),
    }
    let alg: CoreJwsSigningAlgorithm = header
        .get("alg")
        .cloned()
        .and_then(|a| serde_json::from_value(a).ok())
        .ok_or_else(|| bad("alg missing or unknown"))?;
    if matches!(alg, CoreJwsSigningAlgorithm::None) {
        return Err(bad("alg none"));
    }
    Ok(alg)
}

/// The time limits of a logout token, in seconds.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LogoutTokenLimits {
    /// The clock tolerance.
    pub(crate) skew: u64,
    /// The oldest `iat` accepted, before the tolerance.
    pub(crate) max_age: u64,
}

/// A logout token's claim checks (Back-Channel Logout 1.0, 2.4 and 2.6), replay aside:
/// `exp` is required (as the final specification says, and as Auth0 and oidc-provider send
/// it), and `iat` must be at most `limits.max_age` old, so that a `jti` need only be remembered
/// until both have passed ([`LogoutClaims::replayable_until`]).
pub(crate) fn check_logout_claims(
    claims: &Map<String, Value>,
    issuer: &str,
    client_id: &str,
    now: u64,
    limits: LogoutTokenLimits,
) -> Result<LogoutClaims, ProviderError> {
    let skew = limits.skew;
    let bad = |why: &str| ProviderError::InvalidLogoutToken(why.to_owned());
    if claims.get("iss").and_then(Value::as_str) != Some(issuer) {
        return Err(bad("iss is not the provider"));
    }
    let aud_ok = match claims.get("aud") {
        Some(Value::String(aud)) => aud == client_id,
        Some(Value::Array(auds)) => auds.iter().any(|a| a.as_str() == Some(client_id)),
        _ => false,
    };
    if !aud_ok {
        return Err(bad("aud does not contain this client"));
    }
    let iat = claims.get("iat").and_then(Value::as_u64).ok_or_else(|| bad("iat missing"))?;
    if iat > now.saturating_add(skew) {
        return Err(bad("iat is in the future"));
    }
    if now > iat.saturating_add(limits.max_age).saturating_add(skew) {
        return Err(bad("issued too long ago (iat)"));
    }
    let exp = claims.get("exp").ok_or_else(|| bad("exp missing"))?;
    let exp = exp.as_u64().ok_or_else(|| bad("exp is not a number"))?;
    if now >= exp.saturating_add(skew) {
        return Err(bad("expired"));
    }
    let jti = claims.get("jti").and_then(Value::as_str).filter(|j| !j.is_empty()).ok_or_else(|| bad("jti missing"))?;
    let event = claims
        .get("events")
        .and_then(Value::as_object)
        .and_then(|events| events.get("http://schemas.openid.net/event/backchannel-logout"))
        .ok_or_else(|| bad("events lacks the back-channel logout event"))?;
    if !event.is_object() {
        return Err(bad("the back-channel logout event is not a JSON object"));
    }
    if claims.contains_key("nonce") {
        return Err(bad("a logout token must not carry a nonce"));
    }
    let string_claim = |name: &str| -> Result<Option<String>, ProviderError> {
        match claims.get(name) {
            None => Ok(None),
            Some(Value::String(v)) if !v.is_empty() => Ok(Some(v.clone())),
            Some(_) => Err(bad(&format!("{name} is not a string"))),
        }
    };
    let (sub, sid) = (string_claim("sub")?, string_claim("sid")?);
    if sub.is_none() && sid.is_none() {
        return Err(bad("neither sid nor sub"));
    }
    // Accepted until the later of its expiry and its age limit (plus the tolerance): its jti
    // is kept that long, and not a second longer is needed.
    let replayable_until = exp.max(iat.saturating_add(limits.max_age)).max(now).saturating_add(skew);
    Ok(LogoutClaims { sub, sid, jti: jti.to_owned(), replayable_until })
}

/// The `kid` of a JWT's header, if it has one.
fn header_kid(jwt: &str) -> Option<String> {
    let header = jwt.split('.').next()?;
    if header.len() > 4096 {
        return None;
    }
    let bytes = URL_SAFE_NO_PAD.decode(header).ok()?;
    let value: Value = serde_json::from_slice(&bytes).ok()?;
    value.get("kid")?.as_str().map(str::to_owned)
}

fn timestamp(secs: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(secs, 0).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_assertion_keys_that_do_not_fit_their_algorithm_are_refused_at_start() {
        use crate::config::ClientAssertionAlg;
        let ec_jwk = r#"{"kty":"EC","crv":"P-256","x":"x","y":"y","d":"AAAA"}"#;
        let rsa_jwk = r#"{"kty":"RSA","n":"AQAB","e":"AQAB","d":"AQAB"}"#;
        for (text, alg) in [
            ("not a key", ClientAssertionAlg::Rs256),
            ("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----", ClientAssertionAlg::Rs256),
            (ec_jwk, ClientAssertionAlg::Rs256),
            (rsa_jwk, ClientAssertionAlg::Es256),
            (r#"{"kty":"EC","crv":"P-384","d":"AAAA"}"#, ClientAssertionAlg::Es256),
            ("not a key", ClientAssertionAlg::Es256),
        ] {
            let err = ClientAssertion::new(text, alg, None).err().expect("refused");
            assert!(
                err.to_string().contains("discovery") || format!("{err:?}").contains("client assertion key"),
                "{err:?}"
            );
        }
    }

    #[test]
    fn logout_strategies_choose_the_end_session_endpoint_auth0_v2_or_none() {
        let url = |u: &str| Url::parse(u).unwrap();
        let (tenant, other) = (url("https://tenant.eu.auth0.com/"), url("https://login.example.com/"));
        let announced = Some(url("https://login.example.com/oidc/logout"));
        let target =
            |strategy, announced: &Option<Url>, issuer: &Url| logout_target(strategy, announced.clone(), issuer);
        assert_eq!(
            target(LogoutStrategy::Auto, &announced, &other).unwrap(),
            LogoutTarget::Oidc(url("https://login.example.com/oidc/logout"))
        );
        assert_eq!(
            target(LogoutStrategy::Auto, &None, &tenant).unwrap(),
            LogoutTarget::Auth0V2(url("https://tenant.eu.auth0.com/v2/logout")),
            "an Auth0 domain without OIDC logout: /v2/logout"
        );
        assert_eq!(target(LogoutStrategy::Auto, &None, &other).unwrap(), LogoutTarget::Local);
        assert!(target(LogoutStrategy::Oidc, &None, &other).is_err(), "oidc needs an end_session_endpoint");
        assert_eq!(
            target(LogoutStrategy::V2, &announced, &other).unwrap(),
            LogoutTarget::Auth0V2(url("https://login.example.com/v2/logout")),
            "v2 on a custom domain"
        );
        assert_eq!(target(LogoutStrategy::Local, &announced, &tenant).unwrap(), LogoutTarget::Local);
    }

    #[test]
    fn kid_is_read_from_the_jwt_header() {
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"RS256","kid":"key-1"}"#);
        assert_eq!(header_kid(&format!("{header}.e30.sig")).as_deref(), Some("key-1"));
        assert_eq!(header_kid("not-a-jwt"), None);
        assert_eq!(header_kid(""), None);
    }

    fn logout_claims(iat: u64, exp: Option<u64>) -> Map<String, Value> {
        let mut claims = serde_json::json!({
            "iss": "https://issuer.example/", "aud": "c", "iat": iat, "jti": "j", "sid": "s",
            "events": { "http://schemas.openid.net/event/backchannel-logout": {} },
        });
        if let Some(exp) = exp {
            claims["exp"] = exp.into();
        }
        claims.as_object().unwrap().clone()
    }

    #[test]
    fn logout_tokens_need_exp_and_a_recent_iat_and_their_jti_is_kept_until_both_pass() {
        let limits = LogoutTokenLimits { skew: 60, max_age: 120 };
        let check =
            |claims: &Map<String, Value>, now| check_logout_claims(claims, "https://issuer.example/", "c", now, limits);
        let now = 10_000;
        let err = check(&logout_claims(now, None), now).unwrap_err();
        assert!(err.to_string().contains("exp missing"), "{err}");
        let err = check(&logout_claims(now - 181, Some(now + 600)), now).unwrap_err();
        assert!(err.to_string().contains("too long ago"), "{err}");
        assert!(check(&logout_claims(now - 180, Some(now + 600)), now).is_ok(), "within the age limit and tolerance");
        // Kept until the later of exp and iat + max_age, plus the tolerance.
        assert_eq!(check(&logout_claims(now, Some(now + 600)), now).unwrap().replayable_until, now + 600 + 60);
        assert_eq!(check(&logout_claims(now, Some(now + 30)), now).unwrap().replayable_until, now + 120 + 60);
    }
}
