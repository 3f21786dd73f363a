//! A login's return: the callback's parameters read, the transaction found, the code exchanged,
//! the ID token checked against what the login asked for, the session saved.

use super::*;

/// OpenID Connect Core §3.1.2.1 and §3.1.3.7: a login that sent `max_age` needs the ID
/// token's `auth_time`, and an authentication no older than `max_age` (plus the tolerance).
pub(super) fn check_auth_time(
    claims: &serde_json::Map<String, Value>,
    max_age: u64,
    now: u64,
    skew: u64,
) -> Result<(), AuthError> {
    let invalid = |why: String| AuthError::Provider(ProviderError::InvalidIdToken(why));
    let Some(auth_time) = claims.get("auth_time").and_then(Value::as_u64) else {
        return Err(invalid("max_age was sent but the ID token has no auth_time".into()));
    };
    if auth_time > now + skew {
        return Err(invalid(format!("auth_time {auth_time} is in the future (now {now})")));
    }
    if now.saturating_sub(auth_time) > max_age + skew {
        return Err(invalid(format!("the authentication at {auth_time} is older than max_age {max_age} (now {now})")));
    }
    Ok(())
}

/// Auth0's rule for a login that asked for an `organization`: an `org_`-prefixed value is an
/// id and must equal the ID token's `org_id`; any other value is a name and must equal its
/// `org_name`, case-insensitively; a missing claim is a refusal (the user may not be a member).
pub(super) fn check_organization(claims: &serde_json::Map<String, Value>, organization: &str) -> Result<(), AuthError> {
    let invalid = |why: String| AuthError::Provider(ProviderError::InvalidIdToken(why));
    let (claim, matches): (&str, &dyn Fn(&str) -> bool) = if organization.starts_with("org_") {
        ("org_id", &|got| got == organization)
    } else {
        ("org_name", &|got| got.to_lowercase() == organization.to_lowercase())
    };
    match claims.get(claim).and_then(Value::as_str) {
        Some(got) if matches(got) => Ok(()),
        Some(got) => Err(invalid(format!("{claim} `{got}` is not the organization `{organization}` asked for"))),
        None => {
            Err(invalid(format!("the organization `{organization}` was asked for but the ID token has no {claim}")))
        }
    }
}

/// Parses a callback query as [`AuthClient::complete_login`] does (for the fuzz targets).
#[cfg(any(fuzzing, test))]
pub(crate) fn parse_callback_query(query: &str) -> Result<(), AuthError> {
    CallbackParams::parse(query).map(|_| ())
}

/// The callback's query parameters that matter.
#[derive(Default)]
pub(super) struct CallbackParams {
    pub(super) state: Option<String>,
    pub(super) code: Option<String>,
    pub(super) iss: Option<String>,
    pub(super) error: Option<String>,
    pub(super) error_description: Option<String>,
}

impl CallbackParams {
    const MAX_QUERY: usize = 8 * 1024;

    pub(super) fn parse(query: &str) -> Result<Self, AuthError> {
        if query.len() > Self::MAX_QUERY {
            return Err(AuthError::InvalidRequest("the callback's query is too long".into()));
        }
        let mut params = Self::default();
        for (name, value) in url::form_urlencoded::parse(query.as_bytes()) {
            let slot = match name.as_ref() {
                "state" => &mut params.state,
                "code" => &mut params.code,
                "iss" => &mut params.iss,
                "error" => &mut params.error,
                "error_description" => &mut params.error_description,
                _ => continue,
            };
            if slot.is_some() {
                return Err(AuthError::InvalidRequest(format!("the callback repeats `{name}`")));
            }
            *slot = Some(value.into_owned());
        }
        Ok(params)
    }
}

impl AuthClient {
    /// Completes a login from the callback URL's query: checks `state`, `iss` and any `error`,
    /// exchanges the code, checks the ID token, and saves a new session (a new id, the old
    /// session replaced).
    pub async fn complete_login(&self, ctx: &mut StoreContext, callback_query: &str) -> Result<LoginResult, AuthError> {
        let started = std::time::Instant::now();
        let result = self.complete_login_checked(ctx, callback_query).await;
        let outcome = match &result {
            Ok(_) => {
                telemetry::count(telemetry::LOGINS_COMPLETED);
                telemetry::count(telemetry::SESSIONS_CREATED);
                "completed"
            }
            Err(err) => {
                telemetry::count_by(telemetry::LOGINS_REFUSED, "reason", err.code());
                "refused"
            }
        };
        telemetry::time(telemetry::CALLBACK_DURATION, ("outcome", outcome), started.elapsed());
        result
    }

    /// [`complete_login`](Self::complete_login)'s work, which it counts and times.
    pub(super) async fn complete_login_checked(
        &self,
        ctx: &mut StoreContext,
        callback_query: &str,
    ) -> Result<LoginResult, AuthError> {
        let params = CallbackParams::parse(callback_query)?;
        let state = params.state.ok_or_else(|| AuthError::InvalidRequest("the callback has no state".into()))?;
        if state.len() > 128 || !state.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
            return Err(AuthError::MissingTransaction);
        }
        let store = &self.inner.transaction_store;
        let transaction = store.get(ctx, &state).await?.ok_or(AuthError::MissingTransaction)?;
        // Single use: whatever happens next, this transaction is spent. The browser's other
        // attempts stay (a login in another tab completes too); the store bounds how many.
        store.delete(ctx, &state).await?;
        if transaction.tenant != self.inner.config.tenant {
            // Started by another tenant's client (a store shared by mistake): not ours to finish.
            tracing::warn!(login = ?transaction.tenant, here = ?self.inner.config.tenant, "callback for a login of another tenant; refused");
            return Err(AuthError::MissingTransaction);
        }
        if let Some(issuer) = &transaction.issuer
            && issuer != self.issuer()
        {
            // The tenant's provider changed since this login started: its answer is not checked
            // against another provider's keys.
            return Err(AuthError::IssuerMismatch(issuer.clone()));
        }
        if let Some(error) = params.error {
            if transaction.silent {
                tracing::info!(?error, "silent login declined; back to the page, anonymous");
                return Err(AuthError::SilentLoginDeclined { error, return_to: transaction.return_to });
            }
            return Err(AuthError::ProviderRefused { error, description: params.error_description });
        }
        match params.iss {
            Some(iss) if iss != self.inner.rp.issuer() => return Err(AuthError::IssuerMismatch(iss)),
            None if self.inner.rp.requires_iss() => return Err(AuthError::MissingIssuer),
            _ => {}
        }
        let code = params.code.ok_or_else(|| AuthError::InvalidRequest("the callback has no code".into()))?;
        let redirect = self.login_redirect(ctx, &transaction)?;
        let (dpop, binding) = self.login_dpop_key(&transaction)?;
        let verifier = &transaction.code_verifier;
        let mut tokens =
            self.inner.rp.exchange_code(&code, verifier, &transaction.nonce, dpop.as_ref(), redirect).await?;
        self.inner.rp.merge_userinfo(&tokens.access_token, &mut tokens.claims, dpop.as_ref()).await?;
        let now = self.inner.config.clock.now();
        self.check_what_the_login_asked(&transaction, &tokens.claims, now)?;
        let mut session = SessionData::new(User::from_id_token_claims(tokens.claims), tokens.id_token, now);
        session.refresh_token = tokens.refresh_token;
        session.refresh_token_ends_at = tokens.refresh_token_ends_at;
        session.bound_by_provider();
        session.tenant.clone_from(&self.inner.config.tenant);
        session.dpop = binding;
        if let Some(device) = ctx.login_device.take() {
            session.device = device.device;
            session.location = device.location;
        }
        // Filed under what this login asked for (a transaction of an earlier version has no
        // scope recorded: the configuration's then).
        let (audience, asked) = if transaction.scope.is_empty() {
            (self.inner.config.audience.clone(), self.inner.config.scope.clone())
        } else {
            (transaction.audience, transaction.scope)
        };
        session.token_sets.push(TokenSet {
            audience,
            scope: tokens.scope.unwrap_or(asked),
            access_token: tokens.access_token,
            expires_at: tokens.expires_at,
        });
        if let Some(hook) = &self.inner.before_save {
            hook(&mut session);
        }
        if let Some(hook) = &self.inner.before_save_async {
            session = hook(session).await?;
        }
        // A login over a session this browser still holds replaces it: counted as ended. Read
        // only when a session cookie came with the callback (a first login reads nothing).
        let name = &self.inner.config.cookies.session_name;
        if (ctx.cookie(name).is_some() || ctx.cookie(&format!("{name}.0")).is_some())
            && let Ok(Some(_)) = self.inner.session_store.get(&mut ctx.request_only()).await
        {
            telemetry::count_by(telemetry::SESSIONS_ENDED, "cause", "replaced");
        }
        self.inner.session_store.set(ctx, &session).await?;
        tracing::info!(sub = session.user.sub(), "login completed");
        self.enforce_session_cap(&session).await;
        let result = LoginResult { session, return_to: transaction.return_to, app_state: transaction.app_state };
        if let Some(hook) = &self.inner.after_callback {
            hook(&result);
        }
        Ok(result)
    }

    /// The `redirect_uri` the login's code exchange names: the callback at the origin the login
    /// started on, when that is not the base URL's (`None`: the base URL's). A callback at
    /// another origin than the login's, or an origin the app no longer lists, is refused.
    pub(super) fn login_redirect(
        &self,
        ctx: &StoreContext,
        transaction: &TransactionData,
    ) -> Result<Option<Url>, AuthError> {
        let config = &self.inner.config;
        let started = match &transaction.origin {
            None => 0,
            Some(origin) => {
                let listed = config.origins.iter().position(|o| o.origin().ascii_serialization() == *origin);
                listed.and_then(|i| u8::try_from(i).ok()).ok_or_else(|| {
                    tracing::warn!(origin = origin.as_str(), "login started at an origin the app no longer lists");
                    AuthError::InvalidRequest("the login started at an origin this app does not serve".into())
                })?
            }
        };
        if started != ctx.origin {
            tracing::warn!(started = ?transaction.origin, "callback at another origin than its login's; refused");
            return Err(AuthError::InvalidRequest("the callback came to another origin than the login".into()));
        }
        Ok((started != 0).then(|| config.callback_url_at(started)))
    }

    /// The DPoP key a login's code is bound to, and what its session keeps of it: by the
    /// configuration when the login started (a login started before DPoP was turned on, or
    /// off, is refused: the user logs in again).
    pub(super) fn login_dpop_key(
        &self,
        transaction: &TransactionData,
    ) -> Result<(Option<DpopKey>, Option<DpopBinding>), AuthError> {
        let changed = || {
            tracing::warn!("a login started under another DPoP setting reached the callback; refused");
            Err(AuthError::MissingTransaction)
        };
        match (&self.inner.config.dpop, &transaction.dpop_key) {
            (None, None) => Ok((None, None)),
            (Some(DpopMode::PerSession), Some(secret)) => {
                let key = DpopKey::from_secret_text(secret).map_err(|e| AuthError::InvalidRequest(e.to_string()))?;
                Ok((Some(key), Some(DpopBinding::Key(secret.clone()))))
            }
            (Some(DpopMode::PerProcess(key)), None) => {
                Ok((Some(DpopKey::clone(key)), Some(DpopBinding::Process(key.thumbprint().to_owned()))))
            }
            _ => changed(),
        }
    }

    /// The checks a login's own parameters call for: `max_age` (the ID token's `auth_time`),
    /// `organization`, essential `acr_values`. For a login a step-up guard started, falling
    /// short is [`AuthError::StepUpFailed`] (403): the guard would only send the browser round
    /// again.
    pub(super) fn check_what_the_login_asked(
        &self,
        transaction: &TransactionData,
        claims: &serde_json::Map<String, Value>,
        now: u64,
    ) -> Result<(), AuthError> {
        let short = |err: AuthError| match (transaction.step_up, err) {
            (true, AuthError::Provider(ProviderError::InvalidIdToken(why))) => AuthError::StepUpFailed(why),
            (_, err) => err,
        };
        if let Some(max_age) = transaction.max_age {
            check_auth_time(claims, max_age, now, self.inner.config.clock_skew.as_secs()).map_err(short)?;
        }
        if let Some(organization) = &transaction.organization {
            check_organization(claims, organization)?;
        }
        if let Some(wanted) = &transaction.essential_acr_values {
            let acr = claims.get("acr").and_then(Value::as_str);
            if !acr.is_some_and(|acr| wanted.split_whitespace().any(|w| w == acr)) {
                return Err(short(AuthError::Provider(ProviderError::InvalidIdToken(format!(
                    "the acr {acr:?} is none of the essential acr_values `{wanted}`"
                )))));
            }
        }
        Ok(())
    }
}
