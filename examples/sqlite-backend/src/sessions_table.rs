//! A [`SessionStore`] written directly: sessions as rows of the app's own `sessions` table,
//! next to its `users`, so that the app can query them ("where is this user logged in?",
//! "end every session of this user") with plain SQL.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use auth_layer::store::{LogoutTarget, SessionStore, StoreContext};
use auth_layer::{AuthConfig, SessionData, StoreError};
use rusqlite::{Connection, OptionalExtension, params};
use sha2::{Digest, Sha256};

/// Sessions in a `sessions` table: the cookie holds the session's random id; the table holds
/// its SHA-256 (a leaked table or backup holds no cookie anyone could present), the user, the
/// provider's session id and issuer (for back-channel logout), the session as JSON and when it
/// ends.
///
/// The JSON holds the user's tokens as they are: keep the file where only the app reads it (or
/// use [`SqliteBackend`](crate::SqliteBackend) under auth-layer's `ServerSessionStore`, which
/// seals every record).
pub struct SessionsTable {
    connection: Arc<Mutex<Connection>>,
    config: AuthConfig,
}

impl std::fmt::Debug for SessionsTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionsTable").finish_non_exhaustive()
    }
}

fn unavailable(err: rusqlite::Error) -> StoreError {
    StoreError::unavailable("SQLite", err)
}

/// The key of a session's row: SHA-256 of its id, in hex.
fn id_hash(id: &str) -> String {
    Sha256::digest(id.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

impl SessionsTable {
    /// The table in the database at `path` (created with the app's `users` table if missing).
    pub fn open(path: impl AsRef<Path>, config: &AuthConfig) -> Result<Self, StoreError> {
        Self::setup(Connection::open(path).map_err(unavailable)?, config)
    }

    /// The table in a database in this process's memory: for tests.
    pub fn in_memory(config: &AuthConfig) -> Result<Self, StoreError> {
        Self::setup(Connection::open_in_memory().map_err(unavailable)?, config)
    }

    fn setup(connection: Connection, config: &AuthConfig) -> Result<Self, StoreError> {
        connection
            .execute_batch(
                "PRAGMA journal_mode = WAL;
                 PRAGMA busy_timeout = 2000;
                 -- The app's own table: auth-layer does not touch it.
                 CREATE TABLE IF NOT EXISTS users (sub TEXT PRIMARY KEY, email TEXT);
                 CREATE TABLE IF NOT EXISTS sessions (
                     id_hash TEXT PRIMARY KEY,
                     user_sub TEXT NOT NULL,
                     provider_sid TEXT,
                     issuer TEXT NOT NULL,
                     data TEXT NOT NULL,
                     expires_at INTEGER NOT NULL
                 );
                 CREATE INDEX IF NOT EXISTS sessions_by_user ON sessions (issuer, user_sub);
                 CREATE INDEX IF NOT EXISTS sessions_by_provider_sid ON sessions (issuer, provider_sid);",
            )
            .map_err(unavailable)?;
        Ok(Self { connection: Arc::new(Mutex::new(connection)), config: config.clone() })
    }

    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, StoreError> {
        let connection = self.connection.clone();
        tokio::task::spawn_blocking(move || work(&mut connection.lock().unwrap_or_else(|p| p.into_inner())))
            .await
            .map_err(|e| StoreError::unavailable("SQLite", e))?
            .map_err(unavailable)
    }

    fn cookie_name(&self) -> &str {
        &self.config.cookies().session_name
    }

    /// The session id the request's cookie carries, if any.
    fn request_id(&self, ctx: &StoreContext) -> Option<String> {
        ctx.cookie(self.cookie_name()).filter(|id| !id.is_empty()).map(str::to_owned)
    }

    /// The session's row: (expiry in seconds, JSON).
    fn row(&self, data: &SessionData) -> Result<(u64, String), StoreError> {
        let now = self.config.clock().now();
        let json = serde_json::to_string(data).map_err(|e| StoreError::encode("session", e))?;
        Ok((now + data.seconds_left(&self.config, now), json))
    }

    /// The users' cookie for `data`, for the rest of its life.
    fn set_cookie(&self, ctx: &mut StoreContext, data: &SessionData) {
        let left = data.seconds_left(&self.config, self.config.clock().now());
        ctx.set_cookie(&self.config, self.cookie_name(), data.id(), Duration::from_secs(left));
    }
}

#[async_trait]
impl SessionStore for SessionsTable {
    async fn get(&self, ctx: &mut StoreContext) -> Result<Option<Arc<SessionData>>, StoreError> {
        let Some(id) = self.request_id(ctx) else { return Ok(None) };
        let now = self.config.clock().now() as i64;
        let json: Option<String> = self
            .run(move |c| {
                c.query_row(
                    "SELECT data FROM sessions WHERE id_hash = ?1 AND expires_at > ?2",
                    params![id_hash(&id), now],
                    |row| row.get(0),
                )
                .optional()
            })
            .await?;
        // A row that does not parse (written by a newer version?) is no session, not a 500.
        Ok(json.and_then(|json| match serde_json::from_str(&json) {
            Ok(session) => Some(Arc::new(session)),
            Err(err) => {
                tracing::warn!(%err, "a sessions row does not parse; treated as no session");
                None
            }
        }))
    }

    /// A new login: its row, and the row of the session the browser had before deleted (a
    /// planted or stale session id never outlives a login).
    async fn set(&self, ctx: &mut StoreContext, data: &SessionData) -> Result<(), StoreError> {
        let (expires_at, json) = self.row(data)?;
        let old = self.request_id(ctx).filter(|old| old != data.id()).map(|old| id_hash(&old));
        let (hash, sub, sid, issuer) =
            (id_hash(data.id()), data.sub().to_owned(), data.sid().map(str::to_owned), self.config.issuer().to_owned());
        self.run(move |c| {
            let tx = c.transaction()?;
            if let Some(old) = old {
                tx.execute("DELETE FROM sessions WHERE id_hash = ?1", params![old])?;
            }
            tx.execute(
                "INSERT OR REPLACE INTO sessions (id_hash, user_sub, provider_sid, issuer, data, expires_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![hash, sub, sid, issuer, json, expires_at as i64],
            )?;
            tx.commit()
        })
        .await?;
        self.set_cookie(ctx, data);
        Ok(())
    }

    /// One `UPDATE ... WHERE` the row still exists and has not expired: a session deleted by a
    /// logout meanwhile matches no row, and nothing is written back.
    async fn update(&self, ctx: &mut StoreContext, data: &SessionData) -> Result<bool, StoreError> {
        let (expires_at, json) = self.row(data)?;
        let (hash, now) = (id_hash(data.id()), self.config.clock().now() as i64);
        let updated = self
            .run(move |c| {
                c.execute(
                    "UPDATE sessions SET data = ?2, expires_at = ?3 WHERE id_hash = ?1 AND expires_at > ?4",
                    params![hash, json, expires_at as i64, now],
                )
            })
            .await?;
        if updated == 0 {
            ctx.remove_cookie(&self.config, self.cookie_name());
            return Ok(false);
        }
        self.set_cookie(ctx, data);
        Ok(true)
    }

    async fn delete(&self, ctx: &mut StoreContext) -> Result<(), StoreError> {
        if let Some(id) = self.request_id(ctx) {
            self.run(move |c| c.execute("DELETE FROM sessions WHERE id_hash = ?1", params![id_hash(&id)])).await?;
        }
        ctx.remove_cookie(&self.config, self.cookie_name());
        Ok(())
    }

    /// By `sid` when the token names one (that provider session only), else by `sub` (every
    /// session of the user), and always of the token's issuer.
    async fn delete_by_logout_token(&self, target: &LogoutTarget) -> Result<(), StoreError> {
        let target = target.clone();
        self.run(move |c| match (&target.sid, &target.sub) {
            (Some(sid), _) => {
                c.execute("DELETE FROM sessions WHERE issuer = ?1 AND provider_sid = ?2", params![target.iss, sid])
            }
            (None, Some(sub)) => {
                c.execute("DELETE FROM sessions WHERE issuer = ?1 AND user_sub = ?2", params![target.iss, sub])
            }
            (None, None) => Ok(0),
        })
        .await?;
        Ok(())
    }

    /// The `sessions_by_user` index answers a user's list of sessions, and a cap on them.
    fn lists_sessions(&self) -> bool {
        true
    }

    async fn sessions_of(&self, sub: &str) -> Result<Vec<SessionData>, StoreError> {
        let (issuer, sub, now) = (self.config.issuer().to_owned(), sub.to_owned(), self.config.clock().now() as i64);
        let rows: Vec<String> = self
            .run(move |c| {
                let mut query = c.prepare_cached(
                    "SELECT data FROM sessions WHERE issuer = ?1 AND user_sub = ?2 AND expires_at > ?3",
                )?;
                let rows = query.query_map(params![issuer, sub, now], |row| row.get(0))?;
                rows.collect()
            })
            .await?;
        Ok(rows.iter().filter_map(|json| serde_json::from_str(json).ok()).collect())
    }

    async fn end(&self, session: &SessionData) -> Result<bool, StoreError> {
        let hash = id_hash(session.id());
        self.run(move |c| c.execute("DELETE FROM sessions WHERE id_hash = ?1", params![hash])).await?;
        Ok(true)
    }
}
