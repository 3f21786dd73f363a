//! The per-request [`Session`] handle the layer puts in every request's extensions. It is lazy:
//! nothing is decrypted or fetched until a handler asks, and then only once per request.

use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use http::header::COOKIE;
use http::{HeaderMap, HeaderValue};
use tokio::sync::Notify;

use crate::client::{AccessToken, AccessTokenOptions, AuthClient};
use crate::error::AuthError;
use crate::model::{SessionData, User};
use crate::store::StoreContext;

/// The session of the current request.
///
/// Get it from the request's extensions (or, with the `axum` feature, as an extractor) and ask
/// for what you need:
///
/// ```no_run
/// # async fn handler(session: auth_layer::Session) -> Result<String, auth_layer::AuthError> {
/// match session.user().await? {
///     Some(user) => Ok(format!("hello {}", user.name().unwrap_or(user.sub()))),
///     None => Ok("hello stranger".into()),
/// }
/// # }
/// ```
#[derive(Clone)]
pub struct Session {
    inner: Arc<Inner>,
}

struct Inner {
    client: AuthClient,
    cookies: CookieHeaders,
    loaded: Loaded,
    /// Cookies the load wants set on the response (renewal, clearing an expired session);
    /// boxed, since most requests have none and every request allocates this handle.
    response: Mutex<Option<Box<StoreContext>>>,
    /// Whether `response` holds any: most responses have none, and take no lock to learn it.
    has_response: AtomicBool,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session").field("loaded", &self.inner.loaded.value.get().is_some()).finish_non_exhaustive()
    }
}

impl Session {
    pub(crate) fn new(client: AuthClient, cookies: CookieHeaders) -> Self {
        Self {
            inner: Arc::new(Inner {
                client,
                cookies,
                loaded: Loaded::default(),
                response: Mutex::new(None),
                has_response: AtomicBool::new(false),
            }),
        }
    }

    /// The session's data, if the request has a valid, unexpired session. Loaded on first use
    /// (see [`AuthClient::session`]: expiry checked, rolling renewal).
    pub async fn data(&self) -> Result<Option<&SessionData>, AuthError> {
        Ok(self.loaded().await?.as_deref())
    }

    /// The session as the store shares it, read once per request.
    async fn loaded(&self) -> Result<&Option<Arc<SessionData>>, AuthError> {
        self.inner.loaded.get_or_try_load(|| self.load()).await
    }

    /// The logged-in user, if any.
    pub async fn user(&self) -> Result<Option<&User>, AuthError> {
        Ok(self.data().await?.map(|s| &s.user))
    }

    /// An access token for this session, refreshed when due (see
    /// [`AuthClient::access_token`]); the refreshed session's cookies go on the response. The
    /// session is the one this request has read (once), not read again.
    pub async fn access_token(&self, options: AccessTokenOptions) -> Result<AccessToken, AuthError> {
        let session = self.loaded().await?.clone().ok_or(AuthError::NotAuthenticated)?;
        let mut ctx = StoreContext::from_cookie_headers(self.inner.cookies.as_slice());
        let result = self.inner.client.access_token_of(&mut ctx, session, options).await;
        self.keep_response_cookies(ctx);
        result
    }

    /// Starts a login back to `return_to` that asks for what `step_up` needs; its transaction
    /// cookie goes on the response.
    pub(crate) async fn start_login(
        &self,
        return_to: &str,
        step_up: crate::client::StepUp,
    ) -> Result<url::Url, AuthError> {
        let mut ctx = StoreContext::from_cookie_headers(self.inner.cookies.as_slice());
        let mut options = crate::client::LoginOptions::default().return_to(return_to);
        options.step_up = Some(step_up);
        let result = self.inner.client.start_login(&mut ctx, options).await;
        self.keep_response_cookies(ctx);
        result
    }

    /// The sessions of this request's user, this one marked `current`, newest first (see
    /// [`AuthClient::list_sessions`]).
    ///
    /// ```no_run
    /// # async fn handler(session: auth_layer::Session) -> Result<String, auth_layer::AuthError> {
    /// let devices = session.list_sessions().await?;
    /// let names: Vec<String> = devices.iter().map(|s| s.device.clone().unwrap_or_default()).collect();
    /// Ok(names.join(", "))
    /// # }
    /// ```
    pub async fn list_sessions(&self) -> Result<Vec<crate::client::SessionInfo>, AuthError> {
        let session = self.loaded().await?.clone().ok_or(AuthError::NotAuthenticated)?;
        self.inner.client.sessions_beside(&session).await
    }

    /// Ends the user's session named by `handle` (see [`AuthClient::end_session`]); `false`
    /// when it names none of theirs. This request's own: its cookies are cleared.
    pub async fn end_session(&self, handle: &str) -> Result<bool, AuthError> {
        let session = self.loaded().await?.clone().ok_or(AuthError::NotAuthenticated)?;
        let mut ctx = StoreContext::from_cookie_headers(self.inner.cookies.as_slice());
        let result = self.inner.client.end_session_beside(&mut ctx, &session, handle).await;
        self.keep_response_cookies(ctx);
        result
    }

    /// Ends every session of the user but this one (see [`AuthClient::end_other_sessions`]).
    pub async fn end_other_sessions(&self) -> Result<(), AuthError> {
        let session = self.loaded().await?.clone().ok_or(AuthError::NotAuthenticated)?;
        let mut ctx = StoreContext::from_cookie_headers(self.inner.cookies.as_slice());
        let result = self.inner.client.end_sessions_beside(&mut ctx, &session).await;
        self.keep_response_cookies(ctx);
        result
    }

    /// The client behind this session, for operations beyond reading it.
    pub fn client(&self) -> &AuthClient {
        &self.inner.client
    }

    async fn load(&self) -> Result<Option<Arc<SessionData>>, AuthError> {
        let mut ctx = StoreContext::from_cookie_headers(self.inner.cookies.as_slice());
        let session = self.inner.client.session(&mut ctx).await?;
        self.keep_response_cookies(ctx);
        Ok(session)
    }

    /// Adds the cookies `ctx` wants set to the response's, later ones replacing earlier ones of
    /// the same name (a refresh's session cookie wins over the renewal before it).
    fn keep_response_cookies(&self, ctx: StoreContext) {
        if !ctx.has_response_cookies() {
            return;
        }
        let mut response = self.inner.response.lock().unwrap_or_else(|e| e.into_inner());
        match response.as_mut() {
            Some(pending) => pending.absorb(ctx),
            None => *response = Some(Box::new(ctx)),
        }
        self.inner.has_response.store(true, Ordering::Release);
    }

    /// The cookies this request's session wants set on the response, if any.
    pub(crate) fn take_response_cookies(&self) -> Option<StoreContext> {
        if !self.inner.has_response.load(Ordering::Acquire) {
            return None;
        }
        self.inner.response.lock().unwrap_or_else(|e| e.into_inner()).take().map(|ctx| *ctx)
    }
}

/// The request's session, read by whoever asks first; whoever asks while that read runs waits
/// for it (a handler and a middleware reading at once make one read, not two). A read that
/// fails, or is dropped before it ends, leaves the next asker to read again.
///
/// What tokio's `OnceCell` does, without its semaphore: a request that reads its session once
/// (nearly all) pays two atomic swaps for it, and nobody is woken unless somebody waits.
#[derive(Default)]
struct Loaded {
    value: OnceLock<Option<Arc<SessionData>>>,
    /// [`IDLE`], [`READING`], or [`WAITED_FOR`] (reading, and somebody waits for it).
    state: AtomicU8,
    read: Notify,
}

const IDLE: u8 = 0;
const READING: u8 = 1;
const WAITED_FOR: u8 = 2;

impl Loaded {
    async fn get_or_try_load<F, Fut>(&self, read: F) -> Result<&Option<Arc<SessionData>>, AuthError>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<Option<Arc<SessionData>>, AuthError>>,
    {
        loop {
            if let Some(value) = self.value.get() {
                return Ok(value);
            }
            if self.state.compare_exchange(IDLE, READING, Ordering::AcqRel, Ordering::Acquire).is_ok() {
                // Dropped after the value is set (or on an error, or when this future is
                // dropped mid-read): the state goes back to idle and waiters look again.
                let _turn = Turn(self);
                let value = read().await?;
                return Ok(self.value.get_or_init(|| value));
            }
            // Registered before saying so: a `notify_waiters` after this line reaches it.
            let notified = self.read.notified();
            let reading = self.state.compare_exchange(READING, WAITED_FOR, Ordering::AcqRel, Ordering::Acquire);
            if matches!(reading, Ok(_) | Err(WAITED_FOR)) {
                notified.await;
            }
        }
    }
}

/// The turn of the one reading: gives it back when it ends, however it ends.
struct Turn<'a>(&'a Loaded);

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        if self.0.state.swap(IDLE, Ordering::AcqRel) == WAITED_FOR {
            self.0.read.notify_waiters();
        }
    }
}

/// A request's `Cookie` headers, kept until the session is read. HTTP/1.1 sends at most one,
/// which is kept as it is; only HTTP/2's split headers take a `Vec`.
pub(crate) enum CookieHeaders {
    One(HeaderValue),
    Many(Vec<HeaderValue>),
}

impl CookieHeaders {
    /// The `Cookie` headers of `headers` (a `HeaderValue` clone shares the bytes hyper read).
    pub(crate) fn of(headers: &HeaderMap) -> Self {
        let mut values = headers.get_all(COOKIE).iter();
        match (values.next(), values.next()) {
            (Some(one), None) => Self::One(one.clone()),
            _ => Self::Many(headers.get_all(COOKIE).iter().cloned().collect()),
        }
    }

    fn as_slice(&self) -> &[HeaderValue] {
        match self {
            Self::One(value) => std::slice::from_ref(value),
            Self::Many(values) => values,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cookie_values(cookies: &CookieHeaders) -> Vec<Option<String>> {
        let ctx = StoreContext::from_cookie_headers(cookies.as_slice());
        ["a", "b", "c"].iter().map(|name| ctx.cookie(name).map(str::to_owned)).collect()
    }

    /// A read of no session that counts itself and waits for `gate` before it answers.
    async fn counted_read(
        reads: &std::sync::atomic::AtomicUsize,
        gate: &Notify,
        answer: Result<(), AuthError>,
    ) -> Result<Option<Arc<SessionData>>, AuthError> {
        reads.fetch_add(1, Ordering::SeqCst);
        gate.notified().await;
        answer.map(|()| None)
    }

    #[tokio::test]
    async fn askers_meanwhile_wait_for_the_one_read() {
        let (loaded, reads, gate) = (Loaded::default(), std::sync::atomic::AtomicUsize::new(0), Notify::new());
        let read = || counted_read(&reads, &gate, Ok(()));
        let askers = join_then_open(loaded.get_or_try_load(read), loaded.get_or_try_load(read), &gate);
        let (first, second) = askers.await;
        assert!(matches!(first, Ok(None)) && matches!(second, Ok(None)));
        assert_eq!(reads.load(Ordering::SeqCst), 1, "one read for both");
        assert!(matches!(loaded.get_or_try_load(read).await, Ok(None)));
        assert_eq!(reads.load(Ordering::SeqCst), 1, "kept for the rest of the request");
    }

    #[tokio::test]
    async fn a_read_that_fails_or_is_dropped_leaves_the_next_asker_to_read() {
        let (loaded, reads, gate) = (Loaded::default(), std::sync::atomic::AtomicUsize::new(0), Notify::new());
        gate.notify_one();
        let failed = loaded.get_or_try_load(|| counted_read(&reads, &gate, Err(AuthError::NotAuthenticated))).await;
        assert!(matches!(failed, Err(AuthError::NotAuthenticated)));
        // A read that never ends, given up while another asker waits for it.
        let mut stuck = Box::pin(loaded.get_or_try_load(|| counted_read(&reads, &gate, Ok(()))));
        assert!(poll_once(stuck.as_mut()).await.is_none(), "reading");
        let mut waiting = Box::pin(loaded.get_or_try_load(|| counted_read(&reads, &gate, Ok(()))));
        assert!(poll_once(waiting.as_mut()).await.is_none(), "waiting for the read");
        assert_eq!(reads.load(Ordering::SeqCst), 2);
        drop(stuck);
        gate.notify_one();
        let waited = tokio::time::timeout(std::time::Duration::from_secs(5), waiting).await;
        assert!(matches!(waited, Ok(Ok(None))), "read by the one that waited, not left waiting");
        assert_eq!(reads.load(Ordering::SeqCst), 3);
    }

    /// Runs both futures at once, opening `gate` once both have started.
    async fn join_then_open<A: std::future::Future, B: std::future::Future>(
        a: A,
        b: B,
        gate: &Notify,
    ) -> (A::Output, B::Output) {
        let (mut a, mut b) = (Box::pin(a), Box::pin(b));
        let (mut out_a, mut out_b) = (poll_once(a.as_mut()).await, poll_once(b.as_mut()).await);
        gate.notify_waiters();
        if out_a.is_none() {
            out_a = Some(a.await);
        }
        if out_b.is_none() {
            out_b = Some(b.await);
        }
        (out_a.expect("done"), out_b.expect("done"))
    }

    /// Polls `future` once: its output if it is ready.
    async fn poll_once<F: std::future::Future>(future: std::pin::Pin<&mut F>) -> Option<F::Output> {
        let mut future = Some(future);
        std::future::poll_fn(|cx| {
            std::task::Poll::Ready(match future.take().expect("polled once").poll(cx) {
                std::task::Poll::Ready(out) => Some(out),
                std::task::Poll::Pending => None,
            })
        })
        .await
    }

    #[test]
    fn the_handle_every_request_allocates_stays_small() {
        // Every request allocates one; the response cookies, which most never have, are boxed.
        assert!(size_of::<Inner>() <= 160, "{} bytes", size_of::<Inner>());
    }

    #[test]
    fn cookies_split_over_several_headers_are_all_read() {
        let mut headers = HeaderMap::new();
        assert!(CookieHeaders::of(&headers).as_slice().is_empty());
        headers.append(COOKIE, HeaderValue::from_static("a=1; b=2"));
        let one = CookieHeaders::of(&headers);
        assert!(matches!(one, CookieHeaders::One(_)), "one header is kept without a Vec");
        assert_eq!(cookie_values(&one), [Some("1".into()), Some("2".into()), None]);
        headers.append(COOKIE, HeaderValue::from_static("c=3"));
        let split = CookieHeaders::of(&headers);
        assert_eq!(split.as_slice().len(), 2);
        assert_eq!(cookie_values(&split), [Some("1".into()), Some("2".into()), Some("3".into())]);
    }
}
