//! Access tokens: found by audience and scope, refreshed when due, one refresh grant per session
//! at a time across the fleet, and a refreshed ID token checked against the session's.

use super::*;

/// How long a refresh's result is shared with requests of the same session that carry the
/// tokens it replaced (requests already in flight when it happened).
pub(super) const REFRESH_SHARING: Duration = Duration::from_secs(30);

/// What a refresh is for: the audience and scope wanted, and whether it was forced.
#[derive(Clone, Copy)]
pub(super) struct RefreshNeed<'a> {
    pub(super) audience: Option<&'a str>,
    pub(super) scope: Option<&'a str>,
    pub(super) force: bool,
}

/// OpenID Connect Core 12.2: an ID token a refresh brings names the same issuer (`iss`) as the
/// session's, and the same authentication (`auth_time`) when both carry one. (Its `sub` and
/// `aud` are checked with its signature; the relying party refuses any other.)
pub(super) fn check_refreshed_id_token(
    before: &serde_json::Map<String, Value>,
    claims: &serde_json::Map<String, Value>,
) -> Result<(), AuthError> {
    let invalid = |why: String| AuthError::Provider(ProviderError::InvalidIdToken(why));
    for (claim, what) in [("iss", "issuer"), ("auth_time", "authentication time")] {
        if let (Some(was), Some(now)) = (before.get(claim), claims.get(claim))
            && was != now
        {
            return Err(invalid(format!("a refreshed ID token names another {what} ({claim} {now}, was {was})")));
        }
    }
    Ok(())
}

/// The claims of a session after a refresh that brought a new ID token: the new token's, and
/// the session's claims it does not have (those userinfo added at login, or a `before_save`
/// hook), as at login, where the ID token's win.
pub(super) fn refreshed_claims(
    before: &serde_json::Map<String, Value>,
    mut claims: serde_json::Map<String, Value>,
) -> serde_json::Map<String, Value> {
    for (name, value) in before {
        if !claims.contains_key(name) {
            claims.insert(name.clone(), value.clone());
        }
    }
    claims
}

/// The token set for `audience` that covers `scope` (any scope when `None`).
pub(super) fn find_token_set<'a>(
    sets: &'a [TokenSet],
    audience: Option<&str>,
    scope: Option<&str>,
) -> Option<&'a TokenSet> {
    sets.iter().filter(|s| s.audience.as_deref() == audience).find(|s| match scope {
        None => true,
        Some(wanted) => wanted.split_whitespace().all(|w| s.scope.split_whitespace().any(|have| have == w)),
    })
}

/// The single-flight key of a refresh: the session, the tokens it replaces, what it asks for.
pub(super) fn refresh_key(
    session: &SessionData,
    refresh_token: &str,
    current: Option<&TokenSet>,
    audience: Option<&str>,
    scope: Option<&str>,
) -> String {
    fleet::hashed(&[
        session.id(),
        refresh_token,
        current.map_or("", |s| &s.access_token),
        audience.unwrap_or(""),
        scope.unwrap_or(""),
    ])
}

impl AuthClient {
    /// The key `session`'s tokens are bound to: its own, or this process's when the session
    /// names it. A session bound to another process's key cannot be refreshed here.
    pub(super) fn session_dpop_key(&self, session: &SessionData) -> Result<Option<DpopKey>, AuthError> {
        match &session.dpop {
            None => Ok(None),
            Some(DpopBinding::Key(secret)) => DpopKey::from_secret_text(secret)
                .map(Some)
                .map_err(|e| AuthError::Provider(ProviderError::InvalidGrant(e.to_string()))),
            Some(DpopBinding::Process(thumbprint)) => match &self.inner.config.dpop {
                Some(DpopMode::PerProcess(key)) if key.thumbprint() == thumbprint => Ok(Some(DpopKey::clone(key))),
                _ => Err(AuthError::Provider(ProviderError::InvalidGrant(
                    "the session's tokens are bound to another process's DPoP key (give every instance the same dpop_key)"
                        .into(),
                ))),
            },
        }
    }

    /// An access token for the request's session: the stored one while fresh, else a refreshed
    /// one. One refresh grant per session at a time, across every process sharing
    /// [`SharedState`]: concurrent calls wait for it and use its result, and a refresh for
    /// another audience starts from the refresh token it left. A refused refresh token
    /// (`invalid_grant`) ends the session, unless the stored session already holds a newer one
    /// (a refresh elsewhere won the race), which is then used; an unreachable provider leaves
    /// the session as it was.
    #[doc(alias = "get_access_token")]
    pub async fn access_token(
        &self,
        ctx: &mut StoreContext,
        options: AccessTokenOptions,
    ) -> Result<AccessToken, AuthError> {
        let session = self.session(ctx).await?.ok_or(AuthError::NotAuthenticated)?;
        self.access_token_of(ctx, session, options).await
    }

    /// [`access_token`](Self::access_token) for a session the caller has read already
    /// (through [`session`](Self::session), with this request's `ctx`).
    pub(crate) async fn access_token_of(
        &self,
        ctx: &mut StoreContext,
        mut session: Arc<SessionData>,
        options: AccessTokenOptions,
    ) -> Result<AccessToken, AuthError> {
        let config = &self.inner.config;
        let audience = options.audience.as_deref().or(config.audience.as_deref());
        let scope = options.scope.as_deref();
        let mut retried = false;
        let refreshed = loop {
            let current = find_token_set(&session.token_sets, audience, scope);
            if let Some(set) = current
                && !options.force_refresh
                && self.is_fresh(set)
            {
                return Ok(AccessToken::of(set, self.session_dpop_key(&session)?));
            }
            let refresh_token = session.refresh_token.as_deref().ok_or(AuthError::MissingRefreshToken)?;
            let key = refresh_key(&session, refresh_token, current, audience, scope);
            let need = RefreshNeed { audience, scope, force: options.force_refresh };
            let waiting = std::time::Instant::now();
            let outcome = self.inner.refreshes.try_get_with(key.clone(), self.refresh_once(&session, &key, need)).await;
            telemetry::time(telemetry::REFRESH_WAIT, ("scope", "process"), waiting.elapsed());
            match outcome {
                Ok(refreshed) => break refreshed,
                Err(err) => {
                    let err = AuthError::clone(&err);
                    if let AuthError::Provider(ProviderError::InvalidIdToken(why)) = &err {
                        // The provider's answer names another issuer or user, or fails a check:
                        // nothing of it is kept, and the session it was for does not go on
                        // (its refresh token may be spent); the user logs in again.
                        tracing::warn!(sub = session.sub(), why, "refreshed ID token refused; the session ends");
                        self.inner.session_store.delete(ctx).await?;
                        telemetry::count_by(telemetry::SESSIONS_ENDED, "cause", "refresh_refused");
                        return Err(err);
                    }
                    if !matches!(err, AuthError::Provider(ProviderError::InvalidGrant(_))) {
                        return Err(err);
                    }
                    // Lost a race to a refresh this process did not see (no shared state, or
                    // its result expired): the stored session may hold the newer token.
                    if !retried
                        && let Some(stored) = self.inner.session_store.get(ctx).await?
                        && stored.id() == session.id()
                        && stored.refresh_token != session.refresh_token
                    {
                        tracing::info!(
                            sub = session.sub(),
                            "refresh token refused; the stored session has a newer one"
                        );
                        retried = true;
                        session = stored;
                        continue;
                    }
                    tracing::warn!(sub = session.sub(), "refresh token refused; the session ends");
                    self.inner.session_store.delete(ctx).await?;
                    telemetry::count_by(telemetry::SESSIONS_ENDED, "cause", "refresh_refused");
                    return Err(err);
                }
            }
        };
        if !self.inner.session_store.update(ctx, &refreshed).await? {
            // Logged out while the provider answered: the new tokens are not saved nor used.
            return Err(AuthError::NotAuthenticated);
        }
        let set = find_token_set(&refreshed.token_sets, audience, scope).ok_or_else(|| {
            AuthError::InvalidRequest("the provider granted no token for this audience and scope".into())
        })?;
        Ok(AccessToken::of(set, self.session_dpop_key(&refreshed)?))
    }

    /// Whether `set` is good for longer than the refresh buffer.
    pub(super) fn is_fresh(&self, set: &TokenSet) -> bool {
        let config = &self.inner.config;
        set.expires_at.is_none_or(|at| at > config.clock.now() + config.refresh_buffer.as_secs())
    }

    /// The refresh `key` of `session`, once for the fleet: under the session's lease (or with
    /// the result of whoever held it meanwhile).
    pub(super) async fn refresh_once(
        &self,
        session: &SessionData,
        key: &str,
        need: RefreshNeed<'_>,
    ) -> Result<Arc<SessionData>, AuthError> {
        let lease = match self.inner.fleet.lease(session.id(), key).await? {
            Lease::Done(done) => return Ok(done),
            Lease::Held(lease) => lease,
        };
        let result = self.refresh_holding_lease(session, key, need).await;
        self.inner.fleet.release(lease).await;
        result
    }

    /// A refresh by the lease's holder: from the session's newest refresh token (a refresh for
    /// another audience or scope, here or elsewhere, may have rotated it since this request
    /// read the session), its result kept for the others.
    pub(super) async fn refresh_holding_lease(
        &self,
        session: &SessionData,
        key: &str,
        need: RefreshNeed<'_>,
    ) -> Result<Arc<SessionData>, AuthError> {
        let newest = self.inner.fleet.newest(session.id()).await?.filter(|n| n.refresh_token != session.refresh_token);
        let refreshed = match newest {
            // That refresh may have brought what this one needs.
            Some(newest)
                if !need.force
                    && find_token_set(&newest.token_sets, need.audience, need.scope)
                        .is_some_and(|s| self.is_fresh(s)) =>
            {
                Arc::new(newest)
            }
            newest => {
                let base = newest.unwrap_or_else(|| session.clone());
                let refresh_token = base.refresh_token.clone().ok_or(AuthError::MissingRefreshToken)?;
                self.refresh(base, refresh_token, need.audience, need.scope).await?
            }
        };
        if let Err(err) = self.inner.fleet.keep(key, &refreshed, REFRESH_SHARING).await {
            // This request still saves and uses it; others of the session may refresh again.
            tracing::warn!(%err, "could not share a refresh's result");
        }
        Ok(refreshed)
    }

    /// One refresh: calls the token endpoint and returns the session updated with its answer.
    pub(super) async fn refresh(
        &self,
        mut session: SessionData,
        refresh_token: String,
        audience: Option<&str>,
        scope: Option<&str>,
    ) -> Result<Arc<SessionData>, AuthError> {
        tracing::debug!(sub = session.sub(), "refreshing the access token");
        let dpop = self.session_dpop_key(&session)?;
        let tokens = self.inner.rp.refresh(&refresh_token, audience, scope, session.sub(), dpop.as_ref()).await;
        let outcome = match &tokens {
            Ok(_) => "granted",
            Err(ProviderError::InvalidGrant(_) | ProviderError::InvalidIdToken(_)) => "refused",
            Err(_) => "failed",
        };
        telemetry::count_by(telemetry::REFRESHES, "outcome", outcome);
        let tokens = tokens?;
        let granted = tokens.scope.or_else(|| scope.map(str::to_owned)).unwrap_or_else(|| {
            find_token_set(&session.token_sets, audience, None).map(|s| s.scope.clone()).unwrap_or_default()
        });
        let set = TokenSet {
            audience: audience.map(str::to_owned),
            scope: granted,
            access_token: tokens.access_token,
            expires_at: tokens.expires_at,
        };
        // One set per audience and scope: replace, never append a duplicate.
        session.token_sets.retain(|s| !(s.audience == set.audience && s.scope == set.scope));
        session.token_sets.push(set);
        if let Some(rotated) = tokens.refresh_token {
            session.refresh_token = Some(rotated);
            // A rotated refresh token brings its own expiry (or none); one kept keeps its own.
            session.refresh_token_ends_at = tokens.refresh_token_ends_at;
        }
        if let Some((id_token, claims)) = tokens.id_token {
            check_refreshed_id_token(session.user.claims(), &claims)?;
            session.id_token = id_token;
            session.user = User::from_id_token_claims(refreshed_claims(session.user.claims(), claims));
        }
        session.bound_by_provider();
        if let Some(hook) = &self.inner.before_save {
            hook(&mut session);
        }
        if let Some(hook) = &self.inner.before_save_async {
            session = hook(session).await?;
        }
        Ok(Arc::new(session))
    }
}
