//! The [`SessionStore`] rules, and [`check_session_store`], which checks them.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use http::HeaderMap;
use http::header::{COOKIE, SET_COOKIE};

use super::{OrFail, Outcome, Rule, Runner, ensure, fresh_prefix, join_all};
use crate::config::AuthConfig;
use crate::model::{SessionData, User};
use crate::store::{LogoutTarget, SessionStore, StoreContext};

/// The issuer of the kit's sessions.
const ISSUER: &str = "https://provider.kit.invalid/";
/// How long a logout on one instance may take to reach another (a store that pushes logouts,
/// such as the cookie store over Redis or PostgreSQL); a store that reads its database on
/// every request ends the session at once.
const FLEET_BOUND: Duration = Duration::from_secs(5);

/// Every rule [`check_session_store`] checks, by name, with why it matters.
pub const SESSION_STORE_RULES: &[Rule] = &[
    Rule { name: "no_cookie_no_session", rule: "a request without the store's cookies has no session (`Ok(None)`)." },
    Rule {
        name: "a_saved_session_reads_back_whole",
        rule: "after `set`, a request carrying the response's cookies reads the same session: id, \
               user's claims, tokens, times. The app's handlers see exactly what the login saved.",
    },
    Rule {
        name: "unreadable_cookies_are_no_session",
        rule: "tampered, truncated or made-up cookie values read as no session (`Ok(None)`), never an \
               error: bad input from a browser gets the login page, not a 500.",
    },
    Rule {
        name: "sessions_are_apart",
        rule: "two browsers' sessions never mix: each request reads its own, and ending one leaves the \
               other (the Auth0 docs' hand-written Redis store shared one record between all users).",
    },
    Rule {
        name: "update_saves_a_live_session",
        rule: "`update` of a session the request read returns true and the next request reads the new \
               data: renewals and refreshed tokens are kept.",
    },
    Rule {
        name: "delete_ends_the_session_and_every_copy",
        rule: "after `delete` (a logout), the session's cookies, even a copy taken before, read as no \
               session, and an `update` with them returns false and writes nothing: a logout is final.",
    },
    Rule {
        name: "a_new_login_ends_the_session_it_replaces",
        rule: "`set` on a request that carries a session replaces it: the new cookies read the new \
               session, and copies of the old ones no longer read anything (no session fixation).",
    },
    Rule {
        name: "logout_by_sid_ends_only_that_session",
        rule: "`delete_by_logout_token` with a `sid` ends the sessions of that provider session, and no \
               other session of the same user or of anyone else.",
    },
    Rule {
        name: "logout_by_sub_ends_every_session_of_the_user",
        rule: "`delete_by_logout_token` with only a `sub` ends every session of that user, and no one \
               else's.",
    },
    Rule {
        name: "a_login_after_a_logout_survives_it",
        rule: "a session saved after a back-channel logout of its user, in the same second too, is not \
               ended by it: the user who logs in again stays logged in.",
    },
    Rule {
        name: "a_save_after_a_logout_does_not_bring_it_back",
        rule: "a session read, then ended by a back-channel logout, then saved with `update` (a renewal \
               or refresh that was under way) stays ended: `update` returns false.",
    },
    Rule {
        name: "saves_racing_logouts_never_bring_a_session_back",
        rule: "many `update`s racing a logout (by `sid`, by `sub`, or `delete`) leave the session ended \
               every time: the check that it is live and the write are one atomic step.",
    },
    Rule {
        name: "a_listing_names_the_users_sessions_and_ends_one",
        rule: "a store that says it lists sessions (`lists_sessions`) returns from `sessions_of` every \
               session of that user and no one else's, and `end` of one makes its cookies read as no \
               session while the user's others stay: a user's \"sign out that device\" and a cap on \
               sessions rely on it. A store that does not list returns none and ends none.",
    },
    Rule {
        name: "a_logout_on_one_instance_ends_the_session_on_every_other",
        rule: "stores made by the factory are instances of one app over the same data: a session saved \
               on one is read on another, and a back-channel logout on one ends it on the others, at \
               once or within 5 s (a store that pushes logouts). An app behind a load balancer relies \
               on it.",
    },
];

/// Checks every rule of [`SESSION_STORE_RULES`] on stores from `make`, which is given the
/// kit's configuration (the store's cookie names and secrets come from it) and returns one
/// instance of the app's store; every call must return an instance over the same data, as each
/// process of a fleet would have (for a store in one process's memory, a clone of one `Arc`).
/// Returns the rules broken, each with what the kit saw.
///
/// ```no_run
/// # async fn run() {
/// use auth_layer::backend::MokaBackend;
/// use auth_layer::store::ServerSessionStore;
///
/// let database = MokaBackend::new(); // every instance over the same data
/// auth_layer::testing::check_session_store(|config| {
///     let database = database.clone();
///     async move { ServerSessionStore::new(database, &config) }
/// })
/// .await
/// .unwrap();
/// # }
/// ```
#[doc(alias = "check_state_store")]
pub async fn check_session_store<S, F, Fut>(make: F) -> Result<(), super::Failures>
where
    S: SessionStore,
    F: Fn(AuthConfig) -> Fut,
    Fut: Future<Output = S>,
{
    let config = kit_config();
    let mut runner = Runner::new(SESSION_STORE_RULES);
    macro_rules! rule {
        ($name:ident) => {{
            let store = Arc::new(make(config.clone()).await);
            runner.run(stringify!($name), $name(store, Kit::new(&config))).await;
        }};
    }
    rule!(no_cookie_no_session);
    rule!(a_saved_session_reads_back_whole);
    rule!(unreadable_cookies_are_no_session);
    rule!(sessions_are_apart);
    rule!(update_saves_a_live_session);
    rule!(delete_ends_the_session_and_every_copy);
    rule!(a_new_login_ends_the_session_it_replaces);
    rule!(logout_by_sid_ends_only_that_session);
    rule!(logout_by_sub_ends_every_session_of_the_user);
    rule!(a_login_after_a_logout_survives_it);
    rule!(a_save_after_a_logout_does_not_bring_it_back);
    rule!(saves_racing_logouts_never_bring_a_session_back);
    rule!(a_listing_names_the_users_sessions_and_ends_one);
    let (one, other) = (Arc::new(make(config.clone()).await), Arc::new(make(config.clone()).await));
    runner
        .run(
            "a_logout_on_one_instance_ends_the_session_on_every_other",
            a_logout_on_one_instance_ends_the_session_on_every_other(one, other, Kit::new(&config)),
        )
        .await;
    runner.finish()
}

pub(super) fn kit_config() -> AuthConfig {
    AuthConfig::builder()
        .issuer(ISSUER)
        .client_id("conformance-kit")
        .client_secret("conformance-kit-client-secret")
        .secret("the conformance kit's session secret, 32 bytes or more")
        .base_url("https://app.kit.invalid")
        .build()
        .expect("the kit's configuration is valid")
}

/// Sessions of users and provider sessions of one rule's own (a random prefix).
struct Kit {
    config: AuthConfig,
    prefix: String,
}

impl Kit {
    fn new(config: &AuthConfig) -> Self {
        Self { config: config.clone(), prefix: fresh_prefix() }
    }

    /// A session of user `sub` in provider session `sid` (both under this rule's prefix).
    fn session(&self, sub: &str, sid: Option<&str>) -> SessionData {
        let mut claims = serde_json::Map::new();
        claims.insert("sub".into(), format!("{}{sub}", self.prefix).into());
        if let Some(sid) = sid {
            claims.insert("sid".into(), format!("{}{sid}", self.prefix).into());
        }
        claims.insert("name".into(), "Kit User".into());
        claims.insert("email".into(), format!("{sub}@kit.invalid").into());
        let now = self.config.clock.now();
        let mut session = SessionData::new(User::from_id_token_claims(claims), "header.claims.signature".into(), now);
        session.refresh_token = Some(format!("refresh-{}", crate::seal::random_token(16)));
        session
    }

    fn by_sid(&self, sid: &str) -> LogoutTarget {
        LogoutTarget { iss: ISSUER.into(), sub: None, sid: Some(format!("{}{sid}", self.prefix)) }
    }

    fn by_sub(&self, sub: &str) -> LogoutTarget {
        LogoutTarget { iss: ISSUER.into(), sub: Some(format!("{}{sub}", self.prefix)), sid: None }
    }
}

/// A browser's cookie jar: what it sends, and what a response's `Set-Cookie`s make of it.
#[derive(Clone, Default, Debug)]
pub(super) struct Browser {
    pub(super) cookies: BTreeMap<String, String>,
}

impl Browser {
    /// A request from this browser.
    pub(super) fn request(&self) -> StoreContext {
        let mut headers = HeaderMap::new();
        if !self.cookies.is_empty() {
            let line = self.cookies.iter().map(|(n, v)| format!("{n}={v}")).collect::<Vec<_>>().join("; ");
            if let Ok(value) = line.parse() {
                headers.insert(COOKIE, value);
            }
        }
        StoreContext::from_headers(&headers)
    }

    /// Takes a response's cookies, as a browser does (a removal deletes).
    pub(super) fn receive(&mut self, ctx: StoreContext) {
        let mut headers = HeaderMap::new();
        ctx.apply(&mut headers);
        for line in headers.get_all(SET_COOKIE) {
            let Some(cookie) = line.to_str().ok().and_then(|l| cookie::Cookie::parse(l.to_owned()).ok()) else {
                continue;
            };
            let removed =
                cookie.max_age().is_some_and(|age| age.is_zero() || age.is_negative()) || cookie.value().is_empty();
            if removed {
                self.cookies.remove(cookie.name());
            } else {
                self.cookies.insert(cookie.name().to_owned(), cookie.value().to_owned());
            }
        }
    }
}

/// Logs `session` in on a new browser through `store`.
async fn login<S: SessionStore>(store: &S, session: &SessionData) -> Result<Browser, String> {
    let mut browser = Browser::default();
    let mut ctx = browser.request();
    store.set(&mut ctx, session).await.or_fail("set")?;
    browser.receive(ctx);
    ensure!(!browser.cookies.is_empty(), "`set` set no cookie on the response");
    Ok(browser)
}

/// The session `browser` reads through `store` (and the cookies that response sets).
async fn read<S: SessionStore>(store: &S, browser: &mut Browser) -> Result<Option<Arc<SessionData>>, String> {
    let mut ctx = browser.request();
    let session = store.get(&mut ctx).await.or_fail("get")?;
    browser.receive(ctx);
    Ok(session)
}

/// Whether `browser` still reads a session through `store`, without keeping the response's
/// cookies (a copy of the cookies stays as it was).
async fn opens<S: SessionStore>(store: &S, browser: &Browser) -> Result<bool, String> {
    Ok(store.get(&mut browser.request()).await.or_fail("get")?.is_some())
}

/// `update` of `data` from `browser`; whether it saved.
async fn update<S: SessionStore>(store: &S, browser: &mut Browser, data: &SessionData) -> Result<bool, String> {
    let mut ctx = browser.request();
    let saved = store.update(&mut ctx, data).await.or_fail("update")?;
    browser.receive(ctx);
    Ok(saved)
}

/// The fields the app sees, for comparing a session read back with the one saved.
fn visible(s: &SessionData) -> impl PartialEq + std::fmt::Debug + '_ {
    (
        s.id(),
        s.sub(),
        s.sid(),
        s.user.claims(),
        &s.id_token,
        &s.refresh_token,
        &s.token_sets,
        s.created_at,
        s.touched_at,
    )
}

async fn no_cookie_no_session<S: SessionStore>(store: Arc<S>, _kit: Kit) -> Outcome {
    let got = store.get(&mut Browser::default().request()).await.or_fail("get")?;
    ensure!(got.is_none(), "a request without cookies read a session: {got:?}");
    Ok(())
}

async fn a_saved_session_reads_back_whole<S: SessionStore>(store: Arc<S>, kit: Kit) -> Outcome {
    let mut saved = kit.session("ann", Some("sid-1"));
    saved.token_sets.push(crate::model::TokenSet {
        audience: Some("https://api.kit.invalid".into()),
        scope: "openid profile read:all".into(),
        access_token: "an.access.token".into(),
        expires_at: Some(saved.created_at + 3_600),
    });
    let mut browser = login(&*store, &saved).await?;
    let read = read(&*store, &mut browser).await?.ok_or("the cookies `set` gave read as no session")?;
    ensure!(visible(&read) == visible(&saved), "read back {:?}, saved {:?}", visible(&read), visible(&saved));
    Ok(())
}

async fn unreadable_cookies_are_no_session<S: SessionStore>(store: Arc<S>, kit: Kit) -> Outcome {
    let browser = login(&*store, &kit.session("ann", Some("sid-1"))).await?;
    for (name, value) in &browser.cookies {
        let mut variants = vec![String::new(), "x".into(), "%00%ff".into(), value[..value.len() / 2].to_owned()];
        let mut flipped: Vec<char> = value.chars().collect();
        if let Some(last) = flipped.last_mut() {
            *last = if *last == 'A' { 'B' } else { 'A' };
        }
        variants.push(flipped.into_iter().collect());
        variants.push(format!("{value}{value}"));
        for bad in variants {
            let mut tampered = browser.clone();
            tampered.cookies.insert(name.clone(), bad.clone());
            match store.get(&mut tampered.request()).await {
                Ok(None) => {}
                Ok(Some(_)) => return Err(format!("cookie `{name}` = {bad:?} (tampered) read as a session")),
                Err(err) => return Err(format!("cookie `{name}` = {bad:?} (tampered) made `get` fail: {err}")),
            }
        }
    }
    Ok(())
}

async fn sessions_are_apart<S: SessionStore>(store: Arc<S>, kit: Kit) -> Outcome {
    let (ann, bob) = (kit.session("ann", Some("sid-a")), kit.session("bob", Some("sid-b")));
    let (mut ann_browser, mut bob_browser) = (login(&*store, &ann).await?, login(&*store, &bob).await?);
    let a = read(&*store, &mut ann_browser).await?.ok_or("ann's session is gone after bob's login")?;
    let b = read(&*store, &mut bob_browser).await?.ok_or("bob's session is gone")?;
    ensure!(a.sub() == ann.sub() && b.sub() == bob.sub(), "ann read {:?}, bob read {:?}", a.sub(), b.sub());
    let mut ctx = bob_browser.request();
    store.delete(&mut ctx).await.or_fail("delete")?;
    ensure!(opens(&*store, &ann_browser).await?, "bob's logout ended ann's session");
    Ok(())
}

async fn update_saves_a_live_session<S: SessionStore>(store: Arc<S>, kit: Kit) -> Outcome {
    let mut browser = login(&*store, &kit.session("ann", Some("sid-1"))).await?;
    let mut session = (*read(&*store, &mut browser).await?.ok_or("no session after login")?).clone();
    session.refresh_token = Some("a-rotated-refresh-token".into());
    session.touched_at += 1;
    ensure!(update(&*store, &mut browser, &session).await?, "update of a live session returned false");
    let read = read(&*store, &mut browser).await?.ok_or("no session after update")?;
    ensure!(
        visible(&read) == visible(&session),
        "after update, read {:?}, saved {:?}",
        visible(&read),
        visible(&session)
    );
    Ok(())
}

async fn delete_ends_the_session_and_every_copy<S: SessionStore>(store: Arc<S>, kit: Kit) -> Outcome {
    let mut browser = login(&*store, &kit.session("ann", Some("sid-1"))).await?;
    let session = read(&*store, &mut browser).await?.ok_or("no session after login")?;
    let mut copy = browser.clone();
    let mut ctx = browser.request();
    store.delete(&mut ctx).await.or_fail("delete")?;
    browser.receive(ctx);
    ensure!(!opens(&*store, &browser).await?, "after delete, the browser's cookies still read a session");
    ensure!(!opens(&*store, &copy).await?, "after delete, a copy of the cookies taken before still reads the session");
    ensure!(
        !update(&*store, &mut copy, &session).await?,
        "update with a copy of the cookies returned true after delete"
    );
    ensure!(!opens(&*store, &copy).await?, "update after delete brought the session back");
    Ok(())
}

async fn a_new_login_ends_the_session_it_replaces<S: SessionStore>(store: Arc<S>, kit: Kit) -> Outcome {
    let mut browser = login(&*store, &kit.session("ann", Some("sid-1"))).await?;
    let old = browser.clone();
    let next = kit.session("bob", Some("sid-2"));
    let mut ctx = browser.request();
    store.set(&mut ctx, &next).await.or_fail("set")?;
    browser.receive(ctx);
    let read = read(&*store, &mut browser).await?.ok_or("the new login's cookies read as no session")?;
    ensure!(read.sub() == next.sub(), "after a new login the browser reads {:?}, not {:?}", read.sub(), next.sub());
    ensure!(!opens(&*store, &old).await?, "a copy of the replaced session's cookies still reads it");
    Ok(())
}

async fn logout_by_sid_ends_only_that_session<S: SessionStore>(store: Arc<S>, kit: Kit) -> Outcome {
    let one = login(&*store, &kit.session("ann", Some("sid-1"))).await?;
    let two = login(&*store, &kit.session("ann", Some("sid-2"))).await?;
    let other = login(&*store, &kit.session("bob", Some("sid-3"))).await?;
    let sidless = login(&*store, &kit.session("ann", None)).await?;
    store.delete_by_logout_token(&kit.by_sid("sid-1")).await.or_fail("delete_by_logout_token")?;
    ensure!(!opens(&*store, &one).await?, "the session of the logged-out sid still reads");
    ensure!(opens(&*store, &two).await?, "a logout by sid ended the same user's session of another sid");
    ensure!(opens(&*store, &sidless).await?, "a logout by sid ended the same user's session without a sid");
    ensure!(opens(&*store, &other).await?, "a logout by sid ended another user's session");
    Ok(())
}

async fn logout_by_sub_ends_every_session_of_the_user<S: SessionStore>(store: Arc<S>, kit: Kit) -> Outcome {
    let one = login(&*store, &kit.session("ann", Some("sid-1"))).await?;
    let two = login(&*store, &kit.session("ann", Some("sid-2"))).await?;
    let sidless = login(&*store, &kit.session("ann", None)).await?;
    let other = login(&*store, &kit.session("bob", Some("sid-3"))).await?;
    store.delete_by_logout_token(&kit.by_sub("ann")).await.or_fail("delete_by_logout_token")?;
    for (name, browser) in [("sid-1", &one), ("sid-2", &two), ("without a sid", &sidless)] {
        ensure!(!opens(&*store, browser).await?, "after a logout by sub, the user's session {name} still reads");
    }
    ensure!(opens(&*store, &other).await?, "a logout by sub ended another user's session");
    Ok(())
}

async fn a_listing_names_the_users_sessions_and_ends_one<S: SessionStore>(store: Arc<S>, kit: Kit) -> Outcome {
    let (first, second, other) =
        (kit.session("ann", Some("sid-1")), kit.session("ann", None), kit.session("bob", None));
    let mut browsers = Vec::new();
    for session in [&first, &second, &other] {
        browsers.push(login(&*store, session).await?);
    }
    let listed = store.sessions_of(first.sub()).await.or_fail("sessions_of")?;
    if !store.lists_sessions() {
        ensure!(listed.is_empty(), "a store that does not list sessions listed {}", listed.len());
        ensure!(!store.end(&first).await.or_fail("end")?, "a store that does not list sessions said it ended one");
        return Ok(());
    }
    let mut ids: Vec<&str> = listed.iter().map(SessionData::id).collect();
    ids.sort_unstable();
    let mut expected = vec![first.id(), second.id()];
    expected.sort_unstable();
    ensure!(ids == expected, "sessions_of listed {} sessions, not the user's 2 (or others')", ids.len());
    ensure!(listed.iter().all(|s| s.refresh_token.is_some()), "a listed session lost its refresh token");
    ensure!(store.end(&first).await.or_fail("end")?, "`end` of a listed session returned false");
    ensure!(!opens(&*store, &browsers[0]).await?, "the ended session's cookies still read");
    ensure!(opens(&*store, &browsers[1]).await?, "`end` of one session ended the user's other one");
    ensure!(opens(&*store, &browsers[2]).await?, "`end` of one session ended another user's");
    let left = store.sessions_of(first.sub()).await.or_fail("sessions_of")?;
    ensure!(left.len() == 1, "after `end`, sessions_of listed {} sessions, not 1", left.len());
    Ok(())
}

async fn a_login_after_a_logout_survives_it<S: SessionStore>(store: Arc<S>, kit: Kit) -> Outcome {
    let before = login(&*store, &kit.session("ann", Some("sid-1"))).await?;
    store.delete_by_logout_token(&kit.by_sub("ann")).await.or_fail("delete_by_logout_token")?;
    let after = login(&*store, &kit.session("ann", Some("sid-2"))).await?;
    ensure!(!opens(&*store, &before).await?, "the session from before the logout still reads");
    ensure!(opens(&*store, &after).await?, "a login right after a logout by sub (same second) was ended by it");
    Ok(())
}

async fn a_save_after_a_logout_does_not_bring_it_back<S: SessionStore>(store: Arc<S>, kit: Kit) -> Outcome {
    for (how, target) in [("sid", kit.by_sid("sid-1")), ("sub", kit.by_sub("ann"))] {
        let mut browser = login(&*store, &kit.session("ann", Some("sid-1"))).await?;
        let mut session = (*read(&*store, &mut browser).await?.ok_or("no session after login")?).clone();
        store.delete_by_logout_token(&target).await.or_fail("delete_by_logout_token")?;
        session.touched_at += 1;
        ensure!(!update(&*store, &mut browser, &session).await?, "update after a logout by {how} returned true");
        ensure!(!opens(&*store, &browser).await?, "update after a logout by {how} brought the session back");
    }
    Ok(())
}

async fn saves_racing_logouts_never_bring_a_session_back<S: SessionStore>(store: Arc<S>, kit: Kit) -> Outcome {
    let kit = Arc::new(kit);
    for round in 0..24u32 {
        let sid = format!("race-{round}");
        let mut browser = login(&*store, &kit.session("ann", Some(&sid))).await?;
        let session = (*read(&*store, &mut browser).await?.ok_or("no session after login")?).clone();
        let mut savers = Vec::new();
        for saver in 0..6u64 {
            let (store, mut browser, mut session) = (store.clone(), browser.clone(), session.clone());
            savers.push(tokio::spawn(async move {
                for i in 0..3 {
                    session.touched_at += saver * 10 + i + 1;
                    update(&*store, &mut browser, &session).await?;
                    tokio::task::yield_now().await;
                }
                Ok::<_, String>(())
            }));
        }
        let (logout_store, mut logout_browser, kit2) = (store.clone(), browser.clone(), kit.clone());
        let how = ["sid", "sub", "delete"][round as usize % 3];
        let logout = tokio::spawn(async move {
            tokio::task::yield_now().await;
            match how {
                "sid" => {
                    logout_store.delete_by_logout_token(&kit2.by_sid(&sid)).await.or_fail("delete_by_logout_token")
                }
                "sub" => {
                    logout_store.delete_by_logout_token(&kit2.by_sub("ann")).await.or_fail("delete_by_logout_token")
                }
                _ => {
                    let mut ctx = logout_browser.request();
                    let done = logout_store.delete(&mut ctx).await.or_fail("delete");
                    logout_browser.receive(ctx);
                    done
                }
            }
        });
        for outcome in join_all(vec![logout]).await? {
            outcome?;
        }
        for outcome in join_all(savers).await? {
            outcome?;
        }
        ensure!(
            !opens(&*store, &browser).await?,
            "round {round}: logged out by {how} while saves ran, then read again"
        );
        let mut late = session.clone();
        late.touched_at += 1_000;
        ensure!(
            !update(&*store, &mut browser.clone(), &late).await?,
            "round {round}: an update after the logout ({how}) returned true"
        );
    }
    Ok(())
}

async fn a_logout_on_one_instance_ends_the_session_on_every_other<S: SessionStore>(
    one: Arc<S>,
    other: Arc<S>,
    kit: Kit,
) -> Outcome {
    let browser = login(&*one, &kit.session("ann", Some("sid-1"))).await?;
    ensure!(opens(&*other, &browser).await?, "a session saved on one instance does not read on another");
    other.delete_by_logout_token(&kit.by_sid("sid-1")).await.or_fail("delete_by_logout_token")?;
    let started = tokio::time::Instant::now();
    while opens(&*one, &browser).await? {
        ensure!(
            started.elapsed() < FLEET_BOUND,
            "a back-channel logout on another instance had not ended the session after {} s",
            FLEET_BOUND.as_secs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}
