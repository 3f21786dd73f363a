//! How a session is written before it is sealed, in a cookie or in a stateful store's backend:
//! compact binary (postcard), each token's base64url segments kept as the bytes they stand for,
//! and `sub` and `sid` not repeated when the user's claims already hold them.
//!
//! A session is mostly tokens, and tokens are base64url text. Written as JSON and then sealed
//! into the cookie's own base64url, every token byte went through base64 twice: a third of the
//! cookie was encoding, and the browser sends the cookie with every request. The compact form
//! cuts a typical session cookie by about a quarter (see `compact_cookie_is_a_quarter_smaller`),
//! and a session in Redis or PostgreSQL, sealed as bytes, from 3.0 KB to 1.7 KB.
//!
//! Cookies and stored sessions written before it (JSON, `{"v":1,"d":...}`, the typed stores'
//! envelope) still open.

use std::borrow::Cow;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};

use crate::error::StoreError;
use crate::model::{DpopBinding, SessionData, TokenSet, User};

/// The first byte of a compact plaintext. JSON, the format before it, starts with `{`.
const COMPACT: u8 = 2;
/// The first byte of a compact plaintext followed by a [`Tail`]: a session with a DPoP key.
/// Sessions without one are still written as [`COMPACT`], byte for byte as before.
const COMPACT_WITH_TAIL: u8 = 3;

/// The first byte of a compact plaintext followed by a [`Tail`] and the provider's bound on the
/// session ([`SessionData::ends_by`]): written only for a session that has one, so every other
/// is written as before.
const COMPACT_WITH_BOUND: u8 = 4;

/// The first byte of a compact plaintext followed by a [`Tail`] and an [`About`]: a session a
/// listing describes (its device or location) or whose refresh token's expiry is known,
/// written only for one that has any of them, so every other is written as before.
const COMPACT_WITH_ABOUT: u8 = 5;

/// What follows the [`Tail`] in the [`COMPACT_WITH_ABOUT`] form.
#[derive(Serialize, Deserialize)]
struct About<'a> {
    ends_by: Option<u64>,
    refresh_token_ends_at: Option<u64>,
    device: Option<Cow<'a, str>>,
    location: Option<Cow<'a, str>>,
}

/// What follows the compact session in the [`COMPACT_WITH_TAIL`] form.
#[derive(Serialize, Deserialize)]
struct Tail<'a> {
    markers_seen: Cow<'a, [u64]>,
    tenant: Option<Cow<'a, str>>,
    dpop: Option<DpopBinding>,
}

/// A token: its segments' bytes when every dot-separated segment is canonical base64url (a JWT,
/// most opaque tokens), else its text.
#[derive(Serialize, Deserialize)]
enum Token<'a> {
    Segments(Vec<Vec<u8>>),
    Text(Cow<'a, str>),
}

impl<'a> Token<'a> {
    fn of(token: &'a str) -> Self {
        let mut segments = Vec::with_capacity(3);
        for segment in token.split('.') {
            // The decoder takes only canonical text (no padding, unused bits zero), so the bytes
            // it gives always encode back to exactly this segment.
            match URL_SAFE_NO_PAD.decode(segment) {
                Ok(bytes) => segments.push(bytes),
                Err(_) => return Self::Text(Cow::Borrowed(token)),
            }
        }
        Self::Segments(segments)
    }

    fn into_string(self) -> String {
        match self {
            Self::Text(text) => text.into_owned(),
            Self::Segments(segments) => {
                let len = segments.iter().map(|s| s.len().div_ceil(3) * 4 + 1).sum();
                let mut text = String::with_capacity(len);
                for (i, segment) in segments.iter().enumerate() {
                    if i > 0 {
                        text.push('.');
                    }
                    URL_SAFE_NO_PAD.encode_string(segment, &mut text);
                }
                text
            }
        }
    }
}

#[derive(Serialize, Deserialize)]
struct CompactTokenSet<'a> {
    audience: Option<Cow<'a, str>>,
    scope: Cow<'a, str>,
    access_token: Token<'a>,
    expires_at: Option<u64>,
}

#[derive(Serialize, Deserialize)]
struct Compact<'a> {
    id: Token<'a>,
    /// The user's claims as JSON text: postcard does not carry self-describing values.
    user: Cow<'a, str>,
    /// `None`: the user's `sub` claim.
    sub: Option<Cow<'a, str>>,
    /// `None`: the user's `sid` claim (or none, when the user has none).
    sid: Option<Option<Cow<'a, str>>>,
    id_token: Token<'a>,
    refresh_token: Option<Token<'a>>,
    token_sets: Vec<CompactTokenSet<'a>>,
    created_at: u64,
    touched_at: u64,
}

/// The JSON envelope of cookies written before the compact form.
#[derive(Deserialize)]
struct Envelope {
    v: u8,
    d: SessionData,
}

/// Why a plaintext is not a session.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct DecodeError(String);

/// `data` in the compact form.
pub(crate) fn encode(data: &SessionData) -> Result<Vec<u8>, StoreError> {
    let user = serde_json::to_string(&data.user).map_err(|e| StoreError::encode("session", e))?;
    let compact = Compact {
        id: Token::of(&data.id),
        user: Cow::Owned(user),
        sub: (data.sub != data.user.sub()).then_some(Cow::Borrowed(data.sub.as_str())),
        sid: (data.sid.as_deref() != data.user.sid()).then(|| data.sid.as_deref().map(Cow::Borrowed)),
        id_token: Token::of(&data.id_token),
        refresh_token: data.refresh_token.as_deref().map(Token::of),
        token_sets: data
            .token_sets
            .iter()
            .map(|set| CompactTokenSet {
                audience: set.audience.as_deref().map(Cow::Borrowed),
                scope: Cow::Borrowed(&set.scope),
                access_token: Token::of(&set.access_token),
                expires_at: set.expires_at,
            })
            .collect(),
        created_at: data.created_at,
        touched_at: data.touched_at,
    };
    let described = data.device.is_some() || data.location.is_some() || data.refresh_token_ends_at.is_some();
    if data.dpop.is_some() || data.ends_by.is_some() || described {
        let format = match (described, data.ends_by) {
            (true, _) => COMPACT_WITH_ABOUT,
            (false, Some(_)) => COMPACT_WITH_BOUND,
            (false, None) => COMPACT_WITH_TAIL,
        };
        let out = postcard::to_extend(&compact, vec![format]).map_err(|e| StoreError::encode("session", e))?;
        let tail = Tail {
            markers_seen: Cow::Borrowed(&data.markers_seen),
            tenant: data.tenant.as_deref().map(Cow::Borrowed),
            dpop: data.dpop.clone(),
        };
        let out = postcard::to_extend(&tail, out).map_err(|e| StoreError::encode("session", e))?;
        if described {
            let about = About {
                ends_by: data.ends_by,
                refresh_token_ends_at: data.refresh_token_ends_at,
                device: data.device.as_deref().map(Cow::Borrowed),
                location: data.location.as_deref().map(Cow::Borrowed),
            };
            return postcard::to_extend(&about, out).map_err(|e| StoreError::encode("session", e));
        }
        return match data.ends_by {
            Some(bound) => postcard::to_extend(&bound, out).map_err(|e| StoreError::encode("session", e)),
            None => Ok(out),
        };
    }
    let mut out = postcard::to_extend(&compact, vec![COMPACT]).map_err(|e| StoreError::encode("session", e))?;
    // Added after the first compact form, as a trailing part written only when present: a
    // session without it is byte for byte what earlier versions wrote, and theirs still decode.
    // Then the tenant (a multi-tenant app's), after the markers (written, empty or not, before it).
    if !data.markers_seen.is_empty() || data.tenant.is_some() {
        out = postcard::to_extend(&data.markers_seen, out).map_err(|e| StoreError::encode("session", e))?;
    }
    if let Some(tenant) = &data.tenant {
        out = postcard::to_extend(tenant, out).map_err(|e| StoreError::encode("session", e))?;
    }
    Ok(out)
}

/// The session in `plain`: the compact form, or the JSON of earlier cookies.
pub(crate) fn decode(plain: &[u8]) -> Result<SessionData, DecodeError> {
    match plain.first() {
        Some(&format @ (COMPACT | COMPACT_WITH_TAIL | COMPACT_WITH_BOUND | COMPACT_WITH_ABOUT)) => {
            let (compact, rest) = postcard::take_from_bytes::<Compact<'_>>(&plain[1..])
                .map_err(|e| DecodeError(format!("compact session does not decode: {e}")))?;
            let mut dpop = None;
            let mut ends_by = None;
            let (mut device, mut location, mut refresh_token_ends_at) = (None, None, None);
            let (markers_seen, tenant) = if format != COMPACT {
                let tail = match postcard::take_from_bytes::<Tail<'_>>(rest) {
                    Ok((tail, [])) if format == COMPACT_WITH_TAIL => tail,
                    Ok((tail, after)) if format == COMPACT_WITH_BOUND => {
                        match postcard::take_from_bytes::<u64>(after) {
                            Ok((bound, [])) => {
                                ends_by = Some(bound);
                                tail
                            }
                            _ => return Err(DecodeError("the compact session's bound does not decode".into())),
                        }
                    }
                    Ok((tail, after)) if format == COMPACT_WITH_ABOUT => {
                        match postcard::take_from_bytes::<About<'_>>(after) {
                            Ok((about, [])) => {
                                ends_by = about.ends_by;
                                refresh_token_ends_at = about.refresh_token_ends_at;
                                device = about.device.map(Cow::into_owned);
                                location = about.location.map(Cow::into_owned);
                                tail
                            }
                            _ => return Err(DecodeError("the compact session's description does not decode".into())),
                        }
                    }
                    _ => return Err(DecodeError("the compact session's tail does not decode".into())),
                };
                dpop = tail.dpop;
                (tail.markers_seen.into_owned(), tail.tenant.map(Cow::into_owned))
            } else if rest.is_empty() {
                (Vec::new(), None)
            } else {
                // The markers, written only when not empty or before a tenant; then the
                // tenant. Anything else after the session is not ours.
                match postcard::take_from_bytes::<Vec<u64>>(rest) {
                    Ok((seen, [])) if !seen.is_empty() => (seen, None),
                    Ok((seen, tail)) if !tail.is_empty() => match postcard::take_from_bytes::<String>(tail) {
                        Ok((tenant, [])) => (seen, Some(tenant)),
                        _ => return Err(DecodeError(format!("{} bytes after the compact session", rest.len()))),
                    },
                    _ => return Err(DecodeError(format!("{} bytes after the compact session", rest.len()))),
                }
            };
            let user: User =
                serde_json::from_str(&compact.user).map_err(|e| DecodeError(format!("claims do not decode: {e}")))?;
            Ok(SessionData {
                id: compact.id.into_string(),
                sub: compact.sub.map_or_else(|| user.sub().to_owned(), Cow::into_owned),
                sid: compact.sid.map_or_else(|| user.sid().map(str::to_owned), |sid| sid.map(Cow::into_owned)),
                user,
                id_token: compact.id_token.into_string(),
                refresh_token: compact.refresh_token.map(Token::into_string),
                token_sets: compact
                    .token_sets
                    .into_iter()
                    .map(|set| TokenSet {
                        audience: set.audience.map(Cow::into_owned),
                        scope: set.scope.into_owned(),
                        access_token: set.access_token.into_string(),
                        expires_at: set.expires_at,
                    })
                    .collect(),
                created_at: compact.created_at,
                touched_at: compact.touched_at,
                markers_seen,
                tenant,
                dpop,
                ends_by,
                refresh_token_ends_at,
                device,
                location,
            })
        }
        Some(b'{') => match serde_json::from_slice::<Envelope>(plain) {
            Ok(Envelope { v: 1, d }) => Ok(d),
            Ok(Envelope { v, .. }) => Err(DecodeError(format!("unknown JSON format version {v}"))),
            Err(err) => Err(DecodeError(format!("JSON session does not decode: {err}"))),
        },
        Some(other) => Err(DecodeError(format!("unknown format byte {other}"))),
        None => Err(DecodeError("empty plaintext".into())),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// About `n` characters of base64url text, as a token's segment has.
    fn b64(n: usize, seed: usize) -> String {
        let bytes: Vec<u8> = (0..n * 3 / 4).map(|i| (i * 31 + seed) as u8).collect();
        URL_SAFE_NO_PAD.encode(bytes)
    }

    fn jwt(header: usize, payload: usize, signature: usize) -> String {
        format!("{}.{}.{}", b64(header, 1), b64(payload, 2), b64(signature, 3))
    }

    /// A session shaped like a real one: profile claims, an RS256 ID token, an access token for
    /// an API, a refresh token.
    pub(crate) fn realistic() -> SessionData {
        let claims = serde_json::json!({
            "sub": "auth0|user-0001", "sid": "sid-0001", "name": "Ann Example", "email": "ann@example.com",
            "email_verified": true, "picture": "https://example.com/ann.png", "updated_at": "2026-11-01T12:00:00Z",
        });
        let mut data = SessionData::new(
            User::from_id_token_claims(claims.as_object().unwrap().clone()),
            jwt(100, 450, 342),
            1_000,
        );
        data.refresh_token = Some(b64(43, 4));
        data.token_sets.push(TokenSet {
            audience: Some("https://api.example.com".into()),
            scope: "openid profile email offline_access".into(),
            access_token: jwt(100, 260, 342),
            expires_at: Some(87_400),
        });
        data.touched_at = 2_000;
        data
    }

    #[test]
    fn session_survives_the_compact_form() {
        let data = realistic();
        assert_eq!(decode(&encode(&data).unwrap()).unwrap(), data);
    }

    #[test]
    fn markers_seen_survive_and_a_session_without_them_is_written_as_before() {
        let mut data = realistic();
        let before = encode(&data).unwrap();
        data.markers_seen = vec![7, u64::MAX];
        let with = encode(&data).unwrap();
        assert_eq!(decode(&with).unwrap(), data);
        assert_eq!(&with[..before.len()], &before[..], "a trailing part: earlier bytes unchanged");
        data.markers_seen.clear();
        assert_eq!(encode(&data).unwrap(), before, "none: the earlier form, byte for byte");
    }

    #[test]
    fn a_tenant_survives_with_or_without_markers_and_trailing_garbage_is_refused() {
        let mut data = realistic();
        let before = encode(&data).unwrap();
        data.tenant = Some("acme.example.com:8443".into());
        let with = encode(&data).unwrap();
        assert_eq!(decode(&with).unwrap(), data);
        assert_eq!(&with[..before.len()], &before[..], "a trailing part: earlier bytes unchanged");
        data.markers_seen = vec![3];
        assert_eq!(decode(&encode(&data).unwrap()).unwrap(), data);
        let mut garbage = encode(&data).unwrap();
        garbage.push(0);
        assert!(decode(&garbage).is_err(), "a byte after the tenant is not ours");
        // Empty markers with nothing after them are not a form we write.
        let mut empty_markers = before.clone();
        empty_markers.push(0);
        assert!(decode(&empty_markers).is_err());
    }

    #[test]
    fn the_providers_bound_survives_with_or_without_a_dpop_key_and_a_session_without_one_is_written_as_before() {
        let mut data = realistic();
        let before = encode(&data).unwrap();
        assert_eq!(before[0], COMPACT, "no bound: the form of earlier versions");
        data.ends_by = Some(1_900_000_000);
        let bound = encode(&data).unwrap();
        assert_eq!(bound[0], COMPACT_WITH_BOUND);
        assert_eq!(decode(&bound).unwrap(), data);
        data.dpop = Some(DpopBinding::Process("thumbprint".into()));
        data.markers_seen = vec![4];
        data.tenant = Some("acme".into());
        let mut all = encode(&data).unwrap();
        assert_eq!(decode(&all).unwrap(), data);
        all.push(0);
        assert!(decode(&all).is_err(), "a byte after the bound is not ours");
        all.truncate(all.len() - 2);
        assert!(decode(&all).is_err(), "a bound cut short is refused");
    }

    #[test]
    fn a_device_and_location_survive_with_or_without_a_bound_and_a_session_without_them_is_written_as_before() {
        let plain = realistic();
        let before = encode(&plain).unwrap();
        assert_eq!(before[0], COMPACT, "nothing described: the first compact form");
        let mut described = realistic();
        described.device = Some("Firefox on Linux".into());
        described.location = Some("Lyon, FR".into());
        described.markers_seen = vec![3];
        let with = encode(&described).unwrap();
        assert_eq!(with[0], COMPACT_WITH_ABOUT);
        assert_eq!(decode(&with).unwrap(), described);
        described.ends_by = Some(1_900_000_000);
        described.location = None;
        assert_eq!(decode(&encode(&described).unwrap()).unwrap(), described);
        let mut bounded = realistic();
        bounded.refresh_token_ends_at = Some(1_800_000_000);
        bounded.ends_by = Some(1_800_000_000);
        assert_eq!(encode(&bounded).unwrap()[0], COMPACT_WITH_ABOUT, "a refresh token's expiry is kept too");
        assert_eq!(decode(&encode(&bounded).unwrap()).unwrap(), bounded);
        assert_eq!(decode(&encode(&described).unwrap()).unwrap(), described);
        let mut extended = encode(&described).unwrap();
        extended.push(0);
        assert!(decode(&extended).is_err(), "a byte after the description is not ours");
        assert!(decode(&with[..with.len() - 2]).is_err(), "a truncated description is refused");
    }

    #[test]
    fn a_dpop_key_survives_with_markers_and_tenant_and_sessions_without_one_are_written_as_before() {
        let mut data = realistic();
        let before = encode(&data).unwrap();
        data.dpop = Some(DpopBinding::Key(crate::dpop::DpopKey::generate().secret()));
        let with = encode(&data).unwrap();
        assert_eq!(with[0], COMPACT_WITH_TAIL);
        assert_eq!(decode(&with).unwrap(), data);
        data.markers_seen = vec![9, 1];
        data.tenant = Some("acme".into());
        assert_eq!(decode(&encode(&data).unwrap()).unwrap(), data);
        data.dpop = Some(DpopBinding::Process("thumbprint".into()));
        let mut process = encode(&data).unwrap();
        assert_eq!(decode(&process).unwrap(), data);
        process.push(0);
        assert!(decode(&process).is_err(), "a byte after the tail is not ours");
        data.dpop = None;
        data.markers_seen.clear();
        data.tenant = None;
        assert_eq!(encode(&data).unwrap(), before, "no key: the earlier form, byte for byte");
    }

    #[test]
    fn compact_cookie_is_a_quarter_smaller() {
        let data = realistic();
        let json = serde_json::to_vec(&serde_json::json!({"v": 1, "d": &data})).unwrap();
        let compact = encode(&data).unwrap();
        assert!(compact.len() * 4 <= json.len() * 3, "compact {} bytes, JSON {} bytes", compact.len(), json.len());
    }

    #[test]
    fn tokens_that_are_not_canonical_base64url_come_back_as_they_were() {
        let mut data = realistic();
        // Padding, a character outside the alphabet, a segment of impossible length, unused
        // bits set (`B` as the last of two characters), empty segments, no segment at all.
        let odd = ["abc=.def", "a+b.cd", "abcde.fg", "AB.QB", "..", "", "opaque token with spaces"];
        for token in odd {
            data.id_token = token.to_owned();
            data.refresh_token = Some(format!("{token}.{token}"));
            data.token_sets[0].access_token = token.to_owned();
            assert_eq!(decode(&encode(&data).unwrap()).unwrap(), data, "token {token:?}");
        }
    }

    #[test]
    fn claims_come_back_exactly_floats_included() {
        let mut data = realistic();
        // Values whose shortest text serde_json's default (best-effort) parser reads one step off.
        for float in [1.5777777777770001, 0.09144338512092887, 117.63331139400017, 0.30000000000000004] {
            data.user.claims_mut().insert("score".into(), serde_json::json!(float));
            let back = decode(&encode(&data).unwrap()).unwrap();
            assert_eq!(back.user.claim("score").and_then(serde_json::Value::as_f64), Some(float));
        }
    }

    #[test]
    fn sub_and_sid_that_differ_from_the_claims_are_kept() {
        let mut data = realistic();
        data.sub = "another-sub".into();
        data.sid = None;
        assert_eq!(decode(&encode(&data).unwrap()).unwrap(), data);
        data.sid = Some("another-sid".into());
        data.user.claims_mut().remove("sid");
        assert_eq!(decode(&encode(&data).unwrap()).unwrap(), data);
    }

    #[test]
    fn json_sessions_of_earlier_cookies_still_decode() {
        let data = realistic();
        let json = serde_json::to_vec(&serde_json::json!({"v": 1, "d": &data})).unwrap();
        assert_eq!(decode(&json).unwrap(), data);
        let future = serde_json::to_vec(&serde_json::json!({"v": 9, "d": &data})).unwrap();
        assert!(decode(&future).unwrap_err().to_string().contains("version 9"));
    }

    #[test]
    fn truncated_extended_or_unknown_plaintexts_are_refused() {
        let compact = encode(&realistic()).unwrap();
        for cut in [1, 2, 10, compact.len() / 2, compact.len() - 1] {
            assert!(decode(&compact[..cut]).is_err(), "cut at {cut}");
        }
        let mut longer = compact.clone();
        longer.push(0);
        assert!(decode(&longer).unwrap_err().to_string().contains("after the compact session"));
        assert!(decode(&[7, 1, 2]).unwrap_err().to_string().contains("format byte 7"));
        assert!(decode(&[]).is_err());
    }

    #[tokio::test]
    async fn stored_sessions_take_the_compact_form_through_the_record_codec_and_json_sessions_still_open() {
        use crate::backend::{Backend, MokaBackend};
        use crate::record::{Store as _, TypedStore};
        use crate::seal::Sealer;

        const SECRET: &str = "a-secret-of-at-least-32-characters!";
        let backend = MokaBackend::new();
        let sessions = TypedStore::<SessionData, _>::new(backend.clone(), &[SECRET]);
        let session = realistic();
        sessions.set(&session).await.unwrap();
        let key = session.key();
        let stored = backend.get(&key).await.unwrap().expect("written as bytes");
        let sealer = Sealer::new(&[SECRET], "auth-layer typed store v1: session");
        let plain = sealer.open_bytes(&key, &stored).unwrap();
        assert_eq!(plain.first(), Some(&COMPACT), "the session's codec, not the JSON envelope");
        let json = serde_json::to_vec(&serde_json::json!({ "v": 1, "d": &session })).unwrap();
        assert!(
            plain.len() * 4 < json.len() * 3,
            "compact {} bytes against {} of JSON: a quarter smaller at least",
            plain.len(),
            json.len()
        );
        assert_eq!(sessions.get_by_full_key(&key).await.unwrap().as_ref(), Some(&session));

        // A session an earlier version wrote: the JSON envelope, sealed as text.
        let mut older = session.clone();
        older.id = "older-session".into();
        let envelope = serde_json::to_vec(&serde_json::json!({ "v": 1, "d": &older })).unwrap();
        let text = sealer.seal(&older.key(), &envelope);
        backend.put(&older.key(), bytes::Bytes::from(text), None, vec![]).await.unwrap();
        assert_eq!(sessions.get_by_full_key(&older.key()).await.unwrap(), Some(older));
    }
}
