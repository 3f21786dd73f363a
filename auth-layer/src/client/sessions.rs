//! The sessions a user manages: listing theirs, ending one or every other, an administrator
//! ending all of a user's, and the cap on sessions per user a login enforces. Every session
//! ended here has its refresh token revoked at the provider, as a logout does.
//!
//! A listing names sessions by a handle, a keyed hash of the session's id: it tells a
//! session apart and ends it through [`AuthClient::end_session`], and never opens one (the
//! id is a bearer secret; the handle is not).

use http::HeaderMap;
use serde::Serialize;

use super::AuthClient;
use crate::error::AuthError;
use crate::model::SessionData;
use crate::store::{LoginDevice, LogoutTarget, StoreContext};
use crate::telemetry;

/// The longest location a [`session_location`](crate::AuthClientBuilder::session_location)
/// hook may give, in bytes: longer text is cut (at a character boundary).
pub const MAX_LOCATION_BYTES: usize = 100;

/// The characters of a handle: 128 bits of a keyed hash, base64url.
const HANDLE_LEN: usize = 22;

/// One session of a user, as a listing shows it ([`AuthClient::list_sessions`],
/// `GET {prefix}/sessions`). Times are seconds since the Unix epoch.
///
/// ```no_run
/// # async fn run(client: auth_layer::AuthClient, mut ctx: auth_layer::store::StoreContext) -> Result<(), auth_layer::AuthError> {
/// // "Where you're logged in": each session but this one, with a button that ends it.
/// for session in client.list_sessions(&mut ctx).await?.into_iter().filter(|s| !s.current) {
///     let device = session.device.as_deref().unwrap_or("an unknown device");
///     println!("{device}, since {} (end it: {})", session.created_at, session.handle);
/// }
/// // The user pressed "end" on one:
/// # let handle = String::new();
/// client.end_session(&mut ctx, &handle).await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct SessionInfo {
    /// Names this session to [`AuthClient::end_session`]: a keyed hash of its id, which does
    /// not open it.
    pub handle: String,
    /// When the user logged in.
    pub created_at: u64,
    /// When it was last seen in use: its last renewal (sessions are renewed once half their
    /// inactivity window has passed, so this is accurate to that half window, without a write
    /// per request).
    pub last_active: u64,
    /// When it ends unless renewed.
    pub expires_at: u64,
    /// The browser and platform of its login ("Firefox on Linux"), when known.
    pub device: Option<String>,
    /// Where its login came from, when the app's hook said.
    pub location: Option<String>,
    /// Whether it is the session of the request that asked.
    pub current: bool,
}

impl AuthClient {
    /// The user's sessions, the request's own among them (`current`), newest first.
    ///
    /// [`AuthError::NotAuthenticated`] without a session; [`AuthError::Misconfigured`] when
    /// the session store cannot list sessions (the cookie store: they live in browsers).
    pub async fn list_sessions(&self, ctx: &mut StoreContext) -> Result<Vec<SessionInfo>, AuthError> {
        let current = self.session(ctx).await?.ok_or(AuthError::NotAuthenticated)?;
        self.sessions_beside(&current).await
    }

    /// The sessions of `current`'s user, `current` marked.
    pub(crate) async fn sessions_beside(&self, current: &SessionData) -> Result<Vec<SessionInfo>, AuthError> {
        let sessions = self.live_sessions_of(current.sub()).await?;
        Ok(sessions.iter().map(|session| self.info(session, Some(current.id()))).collect())
    }

    /// Every live session of the user `sub`, newest first, for support staff (no `current`).
    pub async fn sessions_of(&self, sub: &str) -> Result<Vec<SessionInfo>, AuthError> {
        let sessions = self.live_sessions_of(sub).await?;
        Ok(sessions.iter().map(|session| self.info(session, None)).collect())
    }

    /// Ends the request's user's session named by `handle` (from
    /// [`list_sessions`](Self::list_sessions)) and revokes its refresh token; `false` when the
    /// handle names none of the user's live sessions. Ending the request's own session is a
    /// local logout (its cookies are cleared in `ctx`).
    pub async fn end_session(&self, ctx: &mut StoreContext, handle: &str) -> Result<bool, AuthError> {
        let current = self.session(ctx).await?.ok_or(AuthError::NotAuthenticated)?;
        self.end_session_beside(ctx, &current, handle).await
    }

    /// [`end_session`](Self::end_session) for the request's session `current`.
    pub(crate) async fn end_session_beside(
        &self,
        ctx: &mut StoreContext,
        current: &SessionData,
        handle: &str,
    ) -> Result<bool, AuthError> {
        let sessions = self.live_sessions_of(current.sub()).await?;
        let Some(target) = sessions.into_iter().find(|session| self.handle(session) == handle) else {
            return Ok(false);
        };
        let store = &self.inner.session_store;
        if target.id() == current.id() {
            store.delete(ctx).await?;
            self.inner.transaction_store.delete_all(ctx).await?;
        } else {
            store.end(&target).await?;
        }
        tracing::info!(sub = target.sub(), "session ended from the user's list");
        self.ended(&target, "ended_by_user");
        Ok(true)
    }

    /// Ends every session of the request's user but the request's own ("sign out other
    /// devices") and revokes their refresh tokens.
    ///
    /// On a store that cannot list sessions (the cookie store, with its logout markers shared
    /// by the fleet, or in memory on one process), it records a logout of the whole user and
    /// then saves the current session again after it: every other cookie of the user stops
    /// opening; the provider cannot be asked to revoke their refresh tokens, which live only in
    /// those cookies.
    pub async fn end_other_sessions(&self, ctx: &mut StoreContext) -> Result<(), AuthError> {
        let current = self.session(ctx).await?.ok_or(AuthError::NotAuthenticated)?;
        self.end_sessions_beside(ctx, &current).await
    }

    /// [`end_other_sessions`](Self::end_other_sessions) for the request's session `current`.
    pub(crate) async fn end_sessions_beside(
        &self,
        ctx: &mut StoreContext,
        current: &SessionData,
    ) -> Result<(), AuthError> {
        let store = &self.inner.session_store;
        if !store.lists_sessions() {
            store.delete_by_logout_token(&self.target_of(current.sub())).await?;
            store.set(ctx, current).await?;
            tracing::info!(sub = current.sub(), "the user's other sessions ended (logout marker)");
            return Ok(());
        }
        let mut ended = 0;
        for session in self.live_sessions_of(current.sub()).await? {
            if session.id() != current.id() {
                store.end(&session).await?;
                self.ended(&session, "ended_by_user");
                ended += 1;
            }
        }
        tracing::info!(sub = current.sub(), ended, "the user's other sessions ended");
        Ok(())
    }

    /// Ends every session of the user `sub` (support staff, an account disabled), on every
    /// store, and revokes their refresh tokens where the store holds them (not the cookie
    /// store's: they live in browsers). A login after this call is not ended by it.
    pub async fn end_all_sessions(&self, sub: &str) -> Result<(), AuthError> {
        let store = &self.inner.session_store;
        // Listed first, for their refresh tokens; then ended by the index, which also takes a
        // session saved between the two steps.
        let listed = if store.lists_sessions() { self.live_sessions_of(sub).await? } else { Vec::new() };
        store.delete_by_logout_token(&self.target_of(sub)).await?;
        for session in &listed {
            self.ended(session, "ended_by_admin");
        }
        tracing::info!(sub, listed = listed.len(), "every session of the user ended");
        Ok(())
    }

    /// After a login saved `new`: with a cap on sessions per user, the user's oldest sessions
    /// past it ended (and revoked). Run after the save, so that of two logins at once on two
    /// instances, the later listing sees both. A store that fails here leaves the login done and
    /// the cap to the next login (logged `session_cap_unenforced`).
    pub(crate) async fn enforce_session_cap(&self, new: &SessionData) {
        let Some(max) = self.inner.config.max_sessions_per_user else { return };
        let sessions = match self.live_sessions_of(new.sub()).await {
            Ok(sessions) => sessions,
            Err(err) => {
                tracing::warn!(code = "session_cap_unenforced", sub = new.sub(), error = ?crate::error::Chain(&err), "sessions not listed; the cap waits for the next login");
                return;
            }
        };
        // The new session counts, whether or not the listing shows it yet.
        let older = sessions.into_iter().filter(|session| session.id() != new.id());
        for session in older.skip(max.get() - 1) {
            if let Err(err) = self.inner.session_store.end(&session).await {
                tracing::warn!(code = "session_cap_unenforced", sub = new.sub(), error = ?crate::error::Chain(&err), "a session past the cap not ended; the cap waits for the next login");
                return;
            }
            tracing::info!(sub = new.sub(), max = max.get(), "a session past the cap on sessions per user ended");
            self.ended(&session, "cap");
        }
    }

    /// Records in `ctx`, for the session the login's [`complete_login`](Self::complete_login)
    /// saves, what a listing shows of its browser: a short label of the `User-Agent` in
    /// `headers` ([`SessionInfo::device`]) and the app's
    /// [`session_location`](crate::AuthClientBuilder::session_location). The layer's callback
    /// route does it; an app with a callback route of its own calls it before
    /// `complete_login`. Nothing is recorded over a store that does not list sessions.
    pub fn describe_login(&self, ctx: &mut StoreContext, headers: &HeaderMap) {
        if !self.inner.session_store.lists_sessions() {
            return;
        }
        let device = headers.get(http::header::USER_AGENT).and_then(|ua| ua.to_str().ok()).and_then(device_label);
        let location = self.inner.session_location.as_ref().and_then(|hook| hook(headers)).map(|mut place| {
            if place.len() > MAX_LOCATION_BYTES {
                let mut end = MAX_LOCATION_BYTES;
                while !place.is_char_boundary(end) {
                    end -= 1;
                }
                place.truncate(end);
            }
            place
        });
        ctx.login_device = Some(Box::new(LoginDevice { device, location }));
    }

    /// The live sessions of `sub` in this client's store, of its tenant and provider, newest
    /// first (ties by id, so that every instance orders them alike).
    async fn live_sessions_of(&self, sub: &str) -> Result<Vec<SessionData>, AuthError> {
        let store = &self.inner.session_store;
        if !store.lists_sessions() {
            return Err(AuthError::Misconfigured(
                "the session store cannot list a user's sessions (use ServerSessionStore)".into(),
            ));
        }
        let config = &self.inner.config;
        let now = config.clock.now();
        let mut sessions = store.sessions_of(sub).await?;
        sessions.retain(|session| {
            session.sub() == sub
                && session.tenant == config.tenant
                && (config.tenant.is_none() || session.issuer() == Some(self.issuer()))
                && !session.is_expired(config, now)
        });
        sessions.sort_by(|a, b| b.created_at.cmp(&a.created_at).then_with(|| b.id().cmp(a.id())));
        Ok(sessions)
    }

    /// `session` as a listing shows it.
    fn info(&self, session: &SessionData, current: Option<&str>) -> SessionInfo {
        SessionInfo {
            handle: self.handle(session),
            created_at: session.created_at,
            last_active: session.touched_at,
            expires_at: session.expires_at(&self.inner.config),
            device: session.device.clone(),
            location: session.location.clone(),
            current: current == Some(session.id()),
        }
    }

    /// The handle of `session`: a keyed hash of its id under the current secret.
    fn handle(&self, session: &SessionData) -> String {
        let mut hash = self.inner.session_handles.hashes("", session.id()).next().unwrap_or_default();
        hash.truncate(HANDLE_LEN);
        hash
    }

    /// A logout of every session of `sub` at this client's provider.
    fn target_of(&self, sub: &str) -> LogoutTarget {
        LogoutTarget { iss: self.issuer().to_owned(), sub: Some(sub.to_owned()), sid: None }
    }

    /// `session` was ended (by `cause`): counted, and its refresh token revoked.
    fn ended(&self, session: &SessionData, cause: &'static str) {
        telemetry::count_by(telemetry::SESSIONS_ENDED, "cause", cause);
        self.revoke_ended(session);
    }
}

/// A short label of the browser and platform a `User-Agent` names ("Chrome on Android"), from
/// a fixed list of each: a person recognises it, and no text of the header itself is kept.
/// `None` when it names neither.
pub(crate) fn device_label(user_agent: &str) -> Option<String> {
    // Order matters: Edge and Opera also say Chrome, Chrome also says Safari, Android also
    // says Linux, iOS also says Mac OS X.
    const BROWSERS: &[(&str, &str)] = &[
        ("Edg", "Edge"),
        ("OPR/", "Opera"),
        ("SamsungBrowser/", "Samsung Internet"),
        ("Firefox/", "Firefox"),
        ("FxiOS/", "Firefox"),
        ("CriOS/", "Chrome"),
        ("Chrome/", "Chrome"),
        ("Safari/", "Safari"),
        ("curl/", "curl"),
    ];
    const PLATFORMS: &[(&str, &str)] = &[
        ("Android", "Android"),
        ("iPhone", "iOS"),
        ("iPad", "iPadOS"),
        ("CrOS", "ChromeOS"),
        ("Windows", "Windows"),
        ("Mac OS X", "macOS"),
        ("Macintosh", "macOS"),
        ("Linux", "Linux"),
    ];
    let find = |list: &[(&str, &'static str)]| list.iter().find(|(token, _)| user_agent.contains(token)).map(|p| p.1);
    match (find(BROWSERS), find(PLATFORMS)) {
        (Some(browser), Some(platform)) => Some(format!("{browser} on {platform}")),
        (Some(only), None) | (None, Some(only)) => Some(only.to_owned()),
        (None, None) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::device_label;

    #[test]
    fn a_user_agent_becomes_a_short_label_of_browser_and_platform_and_nothing_else_of_it_is_kept() {
        let cases = [
            ("Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0", Some("Firefox on Linux")),
            (
                "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36 Edg/131.0.0.0",
                Some("Edge on Windows"),
            ),
            (
                "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Mobile Safari/537.36",
                Some("Chrome on Android"),
            ),
            (
                "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1",
                Some("Safari on iOS"),
            ),
            (
                "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Safari/605.1.15",
                Some("Safari on macOS"),
            ),
            ("Mozilla/5.0 (X11; Linux x86_64) HeadlessChrome/131.0.0.0 Safari/537.36", Some("Chrome on Linux")),
            ("curl/8.5.0", Some("curl")),
            ("<script>alert(1)</script>", None),
            ("", None),
        ];
        for (agent, label) in cases {
            assert_eq!(device_label(agent).as_deref(), label, "{agent}");
        }
    }
}
