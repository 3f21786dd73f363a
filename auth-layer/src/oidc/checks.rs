//! What the relying party checks of what the provider sends: ID tokens and logout tokens
//! (signature by `kid`, with the rate-limited JWKS refetch, and every claim).

use super::*;

/// Who asks for a JWKS refetch, for an unknown `kid`. Each has a budget of its own, so that
/// input anyone can send (a forged logout token naming made-up keys) cannot spend the one
/// logins need right after the provider rotates its key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum KeyNeed {
    /// An ID token that came straight from the token endpoint, over TLS: trusted to name a
    /// real key. A refetch at most every [`ID_TOKEN_REFETCH_SPACING`].
    IdToken,
    /// A logout token, posted by anyone: at most every [`LOGOUT_TOKEN_REFETCH_SPACING`].
    LogoutToken,
}

/// The least time between two JWKS refetches for ID tokens.
pub(super) const ID_TOKEN_REFETCH_SPACING: Duration = Duration::from_secs(2);

/// The least time between two JWKS refetches for logout tokens.
pub(super) const LOGOUT_TOKEN_REFETCH_SPACING: Duration = Duration::from_secs(30);

/// The largest ID token accepted, in bytes.
pub(super) const MAX_ID_TOKEN_LEN: usize = 64 * 1024;

/// The most published keys an ID token without `kid` is tried against.
pub(super) const MAX_KEYS_TRIED: usize = 8;

pub(super) fn decode_json(segment: &str) -> Option<Map<String, Value>> {
    let bytes = URL_SAFE_NO_PAD.decode(segment).ok()?;
    serde_json::from_slice(&bytes).ok()
}

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
pub(super) fn header_kid(jwt: &str) -> Option<String> {
    let header = jwt.split('.').next()?;
    if header.len() > 4096 {
        return None;
    }
    let bytes = URL_SAFE_NO_PAD.decode(header).ok()?;
    let value: Value = serde_json::from_slice(&bytes).ok()?;
    value.get("kid")?.as_str().map(str::to_owned)
}

pub(super) fn timestamp(secs: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(secs, 0).unwrap_or_default()
}

impl RelyingParty {
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
    pub(super) async fn verify_id_token(
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

    pub(super) fn keys(&self) -> Arc<CoreJsonWebKeySet> {
        self.jwks.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub(super) fn knows_kid(&self, kid: &str) -> bool {
        self.keys().keys().iter().any(|k| k.key_id().is_some_and(|id| id.as_str() == kid))
    }

    /// Refetches the JWKS for an unknown `kid`, within `need`'s budget (see [`KeyNeed`]);
    /// concurrent callers of one budget wait for the refetch under way instead of starting
    /// another, and find the key it brought.
    pub(super) async fn refetch_jwks(&self, kid: &str, need: KeyNeed) {
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
}
