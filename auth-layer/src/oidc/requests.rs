//! What the relying party sends the provider: authorization requests (pushed or not), the
//! code exchange, refreshes, revocations and userinfo, with client authentication, DPoP proofs
//! and the provider's DPoP nonces.

use super::*;

/// The HTTP client of token requests: openidconnect's requests, sent by
/// [`RelyingParty::token_call`] (with a DPoP proof when there is a key).
pub(super) struct TokenClient<'a> {
    pub(super) rp: &'a RelyingParty,
    pub(super) key: Option<&'a DpopKey>,
    /// Whether a 5xx answer is the provider being unavailable (a refresh: the session stays,
    /// 503) rather than a bad answer (a code exchange: 502).
    pub(super) server_error_is_outage: bool,
    /// The refresh token's lifetime in seconds a successful answer gave
    /// (`refresh_token_expires_in`, which openidconnect's token response does not keep); 0: none.
    pub(super) refresh_token_expires_in: std::sync::atomic::AtomicU64,
}

impl<'a> TokenClient<'a> {
    pub(super) fn new(rp: &'a RelyingParty, key: Option<&'a DpopKey>, server_error_is_outage: bool) -> Self {
        Self { rp, key, server_error_is_outage, refresh_token_expires_in: 0.into() }
    }

    /// When the refresh token of the answer expires, if the answer said (seconds since the Unix
    /// epoch, from `now`).
    pub(super) fn refresh_token_ends_at(&self, now: u64) -> Option<u64> {
        match self.refresh_token_expires_in.load(std::sync::atomic::Ordering::Acquire) {
            0 => None,
            seconds => Some(now.saturating_add(seconds)),
        }
    }
}

/// The one member of a token response openidconnect's type drops that auth-layer reads.
#[derive(serde::Deserialize)]
pub(super) struct RefreshLifetime {
    pub(super) refresh_token_expires_in: Option<u64>,
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

pub(super) fn token_error(err: TokenError) -> ProviderError {
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
pub(super) fn check_token_type(response: &CoreTokenResponse, dpop: bool) -> Result<(), ProviderError> {
    let kind = response.token_type().as_ref();
    if kind.eq_ignore_ascii_case("DPoP") == dpop {
        return Ok(());
    }
    let asked = if dpop { "a DPoP-bound token" } else { "a Bearer token" };
    Err(ProviderError::BadTokenResponse(format!(
        "the token endpoint answered a `{kind}` token where {asked} was asked for"
    )))
}

pub(super) fn has_id_token(body: &[u8]) -> bool {
    serde_json::from_slice::<Map<String, Value>>(body).is_ok_and(|answer| answer.contains_key("id_token"))
}

impl RelyingParty {
    /// The nonce `server` last gave, for the next proof sent to it.
    pub(super) fn dpop_nonce(&self, server: NonceOf) -> Option<String> {
        self.dpop_nonces[server as usize].read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Keeps the `DPoP-Nonce` of an answer of `server` (a token-sized printable value only),
    /// and returns it when it is new.
    pub(super) fn remember_dpop_nonce(&self, server: NonceOf, headers: &reqwest::header::HeaderMap) -> Option<String> {
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
    pub(super) fn nonce_to_retry_with(
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
    pub(super) async fn send_proved(
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
    pub(super) async fn token_call(
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
    pub(super) fn with_fresh_assertion(
        &self,
        body: &[u8],
    ) -> Result<Vec<u8>, openidconnect::HttpClientError<reqwest::Error>> {
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
    pub(super) fn assertion_params(&self) -> Result<Vec<(String, String)>, AuthError> {
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
    pub(super) fn authenticated(
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
}
