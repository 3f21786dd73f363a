//! The OpenID Connect relying party, on `openidconnect`: discovery, a JWKS cache that refetches
//! (rate-limited) when a token names an unknown key, authorization URLs with PKCE S256, `state`
//! and `nonce`, the code exchange and every ID-token check, and the end-session URL.
//!
//! It knows nothing of HTTP servers or cookies; [`AuthClient`](crate::AuthClient) wires it to
//! the stores. Here: discovery and the relying party's settings from it (endpoints, the pinned
//! algorithm, the logout target). `requests` holds what it sends the provider, `checks` what it
//! checks of the provider's tokens, `assertion` the client's key for `private_key_jwt`.

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

mod assertion;
mod checks;
mod requests;

use self::assertion::ClientAssertion;
pub(crate) use self::checks::unverified_issuer;
#[cfg(any(fuzzing, test))]
pub(crate) use self::checks::{LogoutTokenLimits, check_logout_claims, check_logout_header, parse_jwt};

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

/// Which of the provider's servers a DPoP nonce is of: each gives its own (RFC 9449, 8 and 9).
#[derive(Debug, Clone, Copy)]
enum NonceOf {
    /// The authorization server: the token and pushed authorization request endpoints.
    AuthorizationServer = 0,
    /// The userinfo endpoint, a resource server.
    Userinfo = 1,
}

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

/// Where the endpoints of a client built without a provider point: a host under `.invalid`,
/// which DNS never resolves (RFC 6761), so no request of a test reaches anyone.
#[cfg(feature = "testing")]
pub(crate) const NO_PROVIDER: &str = "https://no-provider.invalid";

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
    /// metadata made up for the configured issuer, no signing keys, and every endpoint on
    /// [`NO_PROVIDER`], a `.invalid` host (RFC 6761) that never resolves: nothing is sent to the
    /// configured issuer (an app's real tenant, with its test credentials). Sessions made
    /// without a login read and renew; whatever would reach the provider (a login's token
    /// exchange, a refresh, a revocation) fails as it would with the provider down.
    #[cfg(feature = "testing")]
    pub(crate) fn without_provider(config: &AuthConfig) -> Result<Self, ProviderError> {
        let http = crate::egress::ProviderHttp::new(config).map_err(|e| ProviderError::Discovery(cause(e)))?;
        let issuer = IssuerUrl::new(config.issuer.clone()).map_err(|e| ProviderError::Discovery(cause(e)))?;
        let base = NO_PROVIDER;
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

/// A JWT's parts: header and claims (JSON objects), signature bytes, and the signed input.
pub(crate) type JwtParts<'t> = (Map<String, Value>, Map<String, Value>, Vec<u8>, &'t str);

#[cfg(test)]
mod tests {
    use super::assertion::*;
    use super::checks::*;
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
