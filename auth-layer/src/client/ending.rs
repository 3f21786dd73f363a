//! How sessions end here: a logout (and its return from the provider), a back-channel logout,
//! and the revocation of an ended session's refresh token.

use super::*;

impl AuthClient {
    /// Ends the session here and returns where to send the browser, by the configured
    /// [`LogoutStrategy`](crate::LogoutStrategy): the provider's end-session endpoint (with
    /// `id_token_hint`, `post_logout_redirect_uri` and `client_id`), Auth0's `/v2/logout`, or
    /// straight back to `return_to`. A refused `return_to` or extra parameter ends nothing.
    /// With [`logout_state`](crate::AuthConfigBuilder::logout_state) and an end-session
    /// endpoint, the provider is sent a fresh `state` and returns to `{prefix}/logout/callback`
    /// ([`complete_logout`](Self::complete_logout)), which goes on to `return_to`.
    pub async fn logout(&self, ctx: &mut StoreContext, options: LogoutOptions) -> Result<Url, AuthError> {
        let return_to = match options.return_to.as_deref() {
            Some(target) => return_to::validate(target).map_err(|e| AuthError::InvalidRequest(e.into()))?,
            None => "/",
        };
        // Checked before anything ends: a refused request changes nothing.
        // `returnTo` is what Auth0's /v2/logout takes for `post_logout_redirect_uri`: set by us too.
        let reserved = ["id_token_hint", "post_logout_redirect_uri", "client_id", "returnTo"];
        let mut extra = self.inner.config.logout_params.clone();
        extra.extend(options.extra_params);
        let state_reserved = |n: &str| n == "state" && self.inner.config.logout_state;
        if let Some((name, _)) = extra.iter().find(|(n, _)| reserved.contains(&n.as_str()) || state_reserved(n)) {
            return Err(AuthError::InvalidRequest(format!("the logout parameter `{name}` is set by auth-layer")));
        }
        let session = self.inner.session_store.get(ctx).await?;
        self.inner.session_store.delete(ctx).await?;
        if session.is_some() {
            telemetry::count_by(telemetry::SESSIONS_ENDED, "cause", "logout");
        }
        self.inner.transaction_store.delete_all(ctx).await?;
        if let Some(session) = &session {
            self.revoke_ended(session);
        }
        let back = self.inner.config.app_url_at(ctx.origin, return_to);
        let id_token = session.as_ref().map(|s| s.id_token.as_str());
        if self.inner.config.logout_state {
            let mut pending = StoreContext::default();
            let state = logout::begin(&self.inner.config, &mut pending, return_to);
            let callback = self
                .inner
                .config
                .app_url_at(ctx.origin, &format!("{}/logout/callback", self.inner.config.route_prefix));
            if let Some(url) = self.inner.rp.end_session_url(id_token, &callback, Some(&state), &extra) {
                ctx.absorb(pending);
                return Ok(url);
            }
        }
        Ok(self.inner.rp.end_session_url(id_token, &back, None, &extra).unwrap_or(back))
    }

    /// After a logout, a listing, a cap or an administrator ended `session`: its refresh token
    /// revoked at the provider (RFC 7009), by one process of the fleet (the fleet's revocation
    /// claim), in a task of its own, so the answer never waits for the provider. A failure is
    /// logged and counted; the session stays ended whatever the provider does.
    pub(crate) fn revoke_ended(&self, session: &SessionData) {
        let Some(refresh_token) = session.refresh_token.clone() else { return };
        if !self.inner.config.revoke_at_logout || !self.inner.rp.revokes() {
            return;
        }
        let dpop = match self.session_dpop_key(session) {
            Ok(dpop) => dpop,
            Err(err) => {
                tracing::warn!(code = "revocation_failed", sub = session.sub(), %err, "refresh token not revoked: its DPoP key is not at hand");
                telemetry::count_by(telemetry::REVOCATIONS, "outcome", "failed");
                return;
            }
        };
        let client = self.clone();
        let (session_id, sub) = (session.id().to_owned(), session.sub().to_owned());
        tokio::spawn(async move {
            match client.inner.fleet.claim_revocation(&session_id).await {
                Ok(true) => {}
                Ok(false) => {
                    tracing::debug!(sub = %sub, "another process revokes this session's refresh token");
                    return;
                }
                // Revoked without the claim: at worst twice, which the provider answers alike
                // (RFC 7009, 2.2), rather than not at all.
                Err(err) => {
                    tracing::warn!(sub = %sub, %err, "shared state unavailable; revoking without the fleet's claim")
                }
            }
            let outcome = match client.inner.rp.revoke(&refresh_token, dpop.as_ref()).await {
                Ok(()) => {
                    tracing::info!(sub = %sub, "refresh token of an ended session revoked at the provider");
                    "revoked"
                }
                Err(err) => {
                    tracing::warn!(code = "revocation_failed", sub = %sub, error = %err, "refresh token not revoked at the provider; the session stays ended");
                    "failed"
                }
            };
            telemetry::count_by(telemetry::REVOCATIONS, "outcome", outcome);
        });
    }

    /// Where the provider's return from an RP-initiated logout (`query`, at
    /// `{prefix}/logout/callback`) sends the browser, with
    /// [`logout_state`](crate::AuthConfigBuilder::logout_state): the page the logout named when
    /// the provider returned the `state` it was sent, else the app's root (logged as
    /// `logout_state_mismatch`). The local session ended at [`logout`](Self::logout) either way.
    pub fn complete_logout(&self, ctx: &mut StoreContext, query: &str) -> Url {
        logout::finish(&self.inner.config, ctx, query)
    }

    /// Handles a back-channel logout token (the body of the provider's POST): checks it, refuses
    /// a replayed `jti` (one used on any process that shares [`SharedState`]), and ends every
    /// session it names, whatever the store, before returning.
    ///
    /// The `jti` is recorded only once the sessions are ended: when the store fails (503), the
    /// provider's retry of the same token is not mistaken for a replay, and ends them. Ending
    /// sessions twice (two copies of one token at once) does no harm.
    pub async fn handle_backchannel_logout(&self, logout_token: &str) -> Result<(), AuthError> {
        let result = self.end_sessions_by_logout_token(logout_token).await;
        let outcome = match &result {
            Ok(()) => {
                telemetry::count_by(telemetry::SESSIONS_ENDED, "cause", "backchannel");
                "ended"
            }
            Err(AuthError::Provider(ProviderError::InvalidLogoutToken(why))) if why.contains("replay") => "replayed",
            Err(AuthError::Provider(_)) => "refused",
            Err(_) => "failed",
        };
        telemetry::count_by(telemetry::BACKCHANNEL_LOGOUTS, "outcome", outcome);
        result
    }

    /// [`handle_backchannel_logout`](Self::handle_backchannel_logout)'s work, which it counts.
    pub(super) async fn end_sessions_by_logout_token(&self, logout_token: &str) -> Result<(), AuthError> {
        let claims = self.inner.rp.verify_logout_token(logout_token).await?;
        let issuer = self.inner.rp.issuer();
        let client_id = self.inner.config.client_id();
        if self.inner.fleet.logout_token_seen(issuer, client_id, &claims.jti).await? {
            return Err(AuthError::Provider(ProviderError::InvalidLogoutToken("jti already used (replay)".into())));
        }
        let target = LogoutTarget { iss: issuer.to_owned(), sub: claims.sub, sid: claims.sid };
        self.inner.session_store.delete_by_logout_token(&target).await?;
        let ttl = Duration::from_secs(claims.replayable_until.saturating_sub(self.inner.config.clock.now()).max(1));
        self.inner.fleet.record_logout_token(issuer, client_id, &claims.jti, ttl).await?;
        tracing::info!(sid = target.sid.as_deref(), sub = target.sub.as_deref(), "back-channel logout handled");
        Ok(())
    }
}
