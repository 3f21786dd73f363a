//! Readiness: whether this process can serve logins and sessions now, for a load balancer's or
//! an orchestrator's check ([`AuthClient::readiness`]).

use std::time::Duration;

use serde::Serialize;

use super::AuthClient;

/// How long a readiness check waits for a store before calling it failing.
pub const READINESS_TIMEOUT: Duration = Duration::from_secs(2);

/// What one part of a readiness check found. Serialises as `{"state":"ok"}`, `"not_used"` or
/// `"failing"`, without the reason: a `/readyz` anyone can reach must not tell them the names
/// and addresses of the app's servers; [`AuthClient::readiness`] logs the reasons instead.
///
/// ```
/// use auth_layer::Check;
///
/// // What a public /readyz shows: the state, never the reason (which is logged).
/// let down = Check::Failing("redis://10.0.0.7:6379: connection refused".into());
/// assert!(!down.passes());
/// assert_eq!(serde_json::to_string(&down).unwrap(), r#"{"state":"failing"}"#);
/// assert!(Check::NotUsed.passes());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Check {
    /// It answers.
    Ok,
    /// The app uses no such part (sessions in this process's memory have no server to reach).
    NotUsed,
    /// It does not answer, and why.
    Failing(String),
}

impl Check {
    /// Whether the part lets the process serve: it answers, or is not used.
    pub fn passes(&self) -> bool {
        !matches!(self, Self::Failing(_))
    }
}

impl Serialize for Check {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let state = match self {
            Self::Ok => "ok",
            Self::NotUsed => "not_used",
            Self::Failing(_) => "failing",
        };
        let mut map = serializer.serialize_map(Some(1))?;
        map.serialize_entry("state", state)?;
        map.end()
    }
}

/// Whether this process is ready to serve, part by part ([`AuthClient::readiness`]). Serialises
/// as the JSON a `/readyz` route answers: `{"ready":true,"provider":{"state":"ok"},...}`, no
/// failure's reason included (see [`Check`]).
///
/// ```no_run
/// # async fn run(client: auth_layer::AuthClient) {
/// // A /readyz handler's body: 200 when ready, else 503, the parts as JSON.
/// let readiness = client.readiness().await;
/// let status = if readiness.ready { 200 } else { 503 };
/// let body = serde_json::to_string(&readiness).unwrap();
/// // {"ready":true,"provider":{"state":"ok"},"store":{"state":"ok"},...}
/// # let _ = (status, body); }
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Readiness {
    /// Every part passes.
    pub ready: bool,
    /// The provider's metadata and signing keys are loaded: ID tokens and logout tokens can be
    /// checked (the provider is not called: an outage of it hits every instance alike, and
    /// taking them all out of rotation would stop the routes that do not need it).
    pub provider: Check,
    /// The session store reaches where it keeps sessions
    /// ([`SessionStore::ready`](crate::store::SessionStore::ready)).
    pub store: Check,
    /// The backend holding what the fleet shares (used logout tokens, refresh leases) answers;
    /// not used when that state lives in this process.
    pub shared_state: Check,
    /// The store's notices of logouts (Redis pub/sub, PostgreSQL `LISTEN`) are connected and
    /// heard from; not used by a store that asks its backend on every read.
    pub notices: Check,
}

impl AuthClient {
    /// Checks whether this process can serve now: the provider's metadata and keys are loaded,
    /// the session store and the shared state's backend answer (each within
    /// [`READINESS_TIMEOUT`]), and the logout notices a store relies on are connected. Mount it
    /// as the readiness check of a load balancer or orchestrator (the quickstart answers it at
    /// `/readyz`: 200 when [`ready`](Readiness::ready), else 503, with the parts as JSON).
    ///
    /// A process whose notices are down still answers correctly (its store asks the backend on
    /// every read instead), but slower: it is reported not ready so that traffic moves to the
    /// instances whose listener is connected.
    ///
    /// ```no_run
    /// # async fn run(client: auth_layer::AuthClient) {
    /// let readiness = client.readiness().await;
    /// if !readiness.ready {
    ///     eprintln!("not ready: {}", serde_json::to_string(&readiness).unwrap());
    /// }
    /// # }
    /// ```
    pub async fn readiness(&self) -> Readiness {
        let provider = match self.inner.rp.signing_keys() {
            0 => Check::Failing("the provider's key set holds no key".into()),
            _ => Check::Ok,
        };
        let store = probe(self.inner.session_store.ready()).await;
        let shared_state = match self.inner.state_in_client {
            true => Check::NotUsed,
            false => probe(self.inner.fleet.ping()).await,
        };
        let notices = match self.inner.session_store.notices() {
            None => Check::NotUsed,
            Some(notices) if notices.version().is_some() => Check::Ok,
            Some(_) => Check::Failing("the listener is not connected, or was not heard from lately".into()),
        };
        let parts =
            [("provider", &provider), ("store", &store), ("shared_state", &shared_state), ("notices", &notices)];
        for (part, check) in parts {
            if let Check::Failing(why) = check {
                tracing::warn!(part, why = why.as_str(), "not ready");
            }
        }
        let ready = parts.iter().all(|(_, check)| check.passes());
        Readiness { ready, provider, store, shared_state, notices }
    }
}

/// `check`'s answer as a [`Check`], failing after [`READINESS_TIMEOUT`].
async fn probe(check: impl Future<Output = Result<bool, crate::error::StoreError>>) -> Check {
    match tokio::time::timeout(READINESS_TIMEOUT, check).await {
        Ok(Ok(true)) => Check::Ok,
        Ok(Ok(false)) => Check::NotUsed,
        Ok(Err(err)) => Check::Failing(crate::error::Chain(&err).to_string()),
        Err(_) => Check::Failing(format!("no answer within {} s", READINESS_TIMEOUT.as_secs())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failing_part_serialises_its_state_and_never_its_reason() {
        let why = "the Redis store is unavailable: 10.1.2.3:6379: connection refused";
        let readiness = Readiness {
            ready: false,
            provider: Check::Ok,
            store: Check::Failing(why.into()),
            shared_state: Check::NotUsed,
            notices: Check::Failing(why.into()),
        };
        let json = serde_json::to_string(&readiness).unwrap();
        assert_eq!(
            json,
            r#"{"ready":false,"provider":{"state":"ok"},"store":{"state":"failing"},"shared_state":{"state":"not_used"},"notices":{"state":"failing"}}"#
        );
        assert!(!json.contains("10.1.2.3"));
    }
}
