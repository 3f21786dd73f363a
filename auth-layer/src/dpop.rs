//! DPoP (RFC 9449): the P-256 keys an app proves possession of its tokens with, and the proof
//! JWTs they sign for one request each.
//!
//! A key is made at each login (kept sealed with the session, so that any instance of a fleet
//! can refresh it) or once per process ([`DpopKey::generate`], [`DpopKey::from_pem`] to share
//! one over a fleet). Proofs are ES256, the algorithm every DPoP server supports; the token
//! endpoint, pushed authorization requests and userinfo are sent with one, and an app signs its
//! own for an API with [`AccessToken::dpop_proof`](crate::AccessToken::dpop_proof).

use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use p256::ecdsa::SigningKey;
use sha2::{Digest, Sha256};

/// The signing algorithm of every proof.
pub const DPOP_ALG: &str = "ES256";

/// Why a DPoP key could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("DPoP key: {0}")]
pub struct DpopKeyError(String);

/// A DPoP key: a P-256 private key, its public JWK and thumbprint. `Debug` prints only the
/// thumbprint.
///
/// ```
/// use auth_layer::{AuthConfig, DpopKey};
///
/// // One key for every instance of the app (from a secret store in production: `from_pem`),
/// // so that a token bound on one instance is usable on the others.
/// let key = DpopKey::generate();
/// let thumbprint = key.thumbprint().to_owned();
/// let config = AuthConfig::builder()
///     .issuer("https://tenant.example.auth0.com/")
///     .client_id("my-app")
///     .client_secret("my-app-secret")
///     .secret("a secret of at least thirty-two bytes, from the environment")
///     .base_url("http://localhost:3000")
///     .dpop_key(key)
///     .build()?;
/// assert!(config.dpop());
/// assert!(!format!("{config:?}").contains("BEGIN PRIVATE KEY"));
/// # let _ = thumbprint;
/// # Ok::<(), auth_layer::ConfigError>(())
/// ```
#[derive(Clone)]
pub struct DpopKey {
    key: SigningKey,
    /// The proofs' protected header, base64url-encoded once (it names the public key).
    header: Arc<str>,
    /// The JWK thumbprint (RFC 7638) of the public key: `dpop_jkt`, and the `jkt` in the token.
    thumbprint: Arc<str>,
}

impl std::fmt::Debug for DpopKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DpopKey").field("thumbprint", &self.thumbprint).finish_non_exhaustive()
    }
}

impl PartialEq for DpopKey {
    fn eq(&self, other: &Self) -> bool {
        self.thumbprint == other.thumbprint
    }
}

impl DpopKey {
    /// A fresh random key.
    pub fn generate() -> Self {
        loop {
            let mut secret = zeroize::Zeroizing::new([0u8; 32]);
            getrandom::fill(secret.as_mut()).expect("the system's random source");
            // Out of range (above the group order, or zero) once in 2^32 draws: draw again.
            if let Ok(key) = SigningKey::from_slice(secret.as_ref()) {
                return Self::of(key);
            }
        }
    }

    /// A key from its text: PEM (PKCS#8 or SEC1 `EC PRIVATE KEY`) or a private JWK (`kty`
    /// `EC`, `crv` `P-256`), the way a fleet shares one process key.
    pub fn from_pem(text: &str) -> Result<Self, DpopKeyError> {
        let text = text.trim();
        let bad = |e: String| DpopKeyError(e);
        if text.starts_with('{') {
            let jwk: serde_json::Value = serde_json::from_str(text).map_err(|e| bad(e.to_string()))?;
            if jwk["kty"] != "EC" || jwk["crv"] != "P-256" {
                return Err(bad("a DPoP key is an EC key on P-256".into()));
            }
            let d = jwk["d"].as_str().ok_or_else(|| bad("the JWK has no `d`".into()))?;
            let d = URL_SAFE_NO_PAD.decode(d).map_err(|e| bad(format!("the JWK's `d`: {e}")))?;
            return Self::from_secret(&d);
        }
        let key = if text.contains("BEGIN EC PRIVATE KEY") {
            SigningKey::from(p256::SecretKey::from_sec1_pem(text).map_err(|e| bad(e.to_string()))?)
        } else {
            <SigningKey as p256::pkcs8::DecodePrivateKey>::from_pkcs8_pem(text).map_err(|e| bad(e.to_string()))?
        };
        Ok(Self::of(key))
    }

    /// The key of a 32-byte private scalar ([`secret`](Self::secret)).
    pub(crate) fn from_secret(secret: &[u8]) -> Result<Self, DpopKeyError> {
        SigningKey::from_slice(secret).map(Self::of).map_err(|_| DpopKeyError("not a P-256 private key".into()))
    }

    /// The private scalar, base64url: what a session or a login in flight keeps (sealed).
    pub(crate) fn secret(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.key.to_bytes())
    }

    /// The key whose [`secret`](Self::secret) is `text`.
    pub(crate) fn from_secret_text(text: &str) -> Result<Self, DpopKeyError> {
        let bytes = zeroize::Zeroizing::new(
            URL_SAFE_NO_PAD.decode(text).map_err(|_| DpopKeyError("the kept key is not base64url".into()))?,
        );
        Self::from_secret(&bytes)
    }

    fn of(key: SigningKey) -> Self {
        let (x, y) = coordinates(&key);
        // RFC 7638: the required members in lexicographic order, no whitespace.
        let canonical = format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#);
        let thumbprint = URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes()));
        let header = format!(
            r#"{{"typ":"dpop+jwt","alg":"{DPOP_ALG}","jwk":{{"kty":"EC","crv":"P-256","x":"{x}","y":"{y}"}}}}"#
        );
        Self { key, header: URL_SAFE_NO_PAD.encode(header).into(), thumbprint: thumbprint.into() }
    }

    /// The public key's JWK thumbprint (RFC 7638, SHA-256, base64url): the `dpop_jkt` of an
    /// authorization request and the `cnf.jkt` of the tokens bound to this key.
    pub fn thumbprint(&self) -> &str {
        &self.thumbprint
    }

    /// A proof for one request (RFC 9449, 4.2): `method` and `url` (its query and fragment
    /// left out), `access_token`'s hash as `ath` when the request carries one, the server's
    /// `nonce` when it gave one, issued at `now` (seconds since the Unix epoch).
    pub fn proof(&self, method: &str, url: &str, access_token: Option<&str>, nonce: Option<&str>, now: u64) -> String {
        let htu = url.split(['?', '#']).next().unwrap_or(url);
        let mut claims = serde_json::json!({
            "jti": random_id(),
            "htm": method,
            "htu": htu,
            "iat": now,
        });
        if let Some(token) = access_token {
            claims["ath"] = URL_SAFE_NO_PAD.encode(Sha256::digest(token.as_bytes())).into();
        }
        if let Some(nonce) = nonce {
            claims["nonce"] = nonce.into();
        }
        self.signed(format!("{}.{}", self.header, URL_SAFE_NO_PAD.encode(claims.to_string())))
    }

    /// The compact JWS of `input` (`header.payload`, both base64url), signed with this key
    /// (ES256).
    pub(crate) fn signed(&self, input: String) -> String {
        use p256::ecdsa::signature::Signer;
        // JWS wants r and s, 32 bytes each (RFC 7518, 3.4), not DER.
        let signature: p256::ecdsa::Signature = self.key.sign(input.as_bytes());
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature.to_bytes()))
    }

    /// The public key's `x` and `y`, base64url, as a JWK names them.
    pub(crate) fn public_coordinates(&self) -> (String, String) {
        coordinates(&self.key)
    }
}

/// `key`'s public point's coordinates, base64url.
fn coordinates(key: &SigningKey) -> (String, String) {
    let point = key.verifying_key().to_sec1_point(false);
    let bytes = point.as_bytes();
    // An uncompressed point: 0x04, then x and y, 32 bytes each.
    (URL_SAFE_NO_PAD.encode(&bytes[1..33]), URL_SAFE_NO_PAD.encode(&bytes[33..65]))
}

/// A proof's `jti`: 128 random bits.
fn random_id() -> String {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).expect("the system's random source");
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The longest server nonce kept, in bytes.
const MAX_NONCE: usize = 512;

/// Whether `nonce` is a server nonce a proof may carry (RFC 9449, 8.1: `1*NQCHAR`, printable
/// ASCII but `"` and `\`), and of a size worth keeping.
pub(crate) fn valid_nonce(nonce: &str) -> bool {
    !nonce.is_empty()
        && nonce.len() <= MAX_NONCE
        && nonce.bytes().all(|b| (0x21..=0x7e).contains(&b) && b != b'"' && b != b'\\')
}

/// Whether an error answer asks for a proof with the server's nonce (RFC 9449, 8 and 9): a
/// JSON body with `error` `use_dpop_nonce` (token and PAR endpoints), or a `WWW-Authenticate`
/// challenge naming it (resource servers such as userinfo).
pub(crate) fn asks_for_nonce(www_authenticate: Option<&str>, body: &[u8]) -> bool {
    if www_authenticate.is_some_and(|h| h.contains("use_dpop_nonce")) {
        return true;
    }
    serde_json::from_slice::<serde_json::Value>(body)
        .is_ok_and(|json| json.get("error").and_then(|e| e.as_str()) == Some("use_dpop_nonce"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(segment: &str) -> serde_json::Value {
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(segment).unwrap()).unwrap()
    }

    #[test]
    fn a_proof_names_the_public_key_method_url_token_hash_and_nonce_and_verifies() {
        use p256::ecdsa::signature::Verifier;
        let key = DpopKey::generate();
        let proof = key.proof("POST", "https://op.example/token?x=1#f", Some("at-123"), Some("n-1"), 1_700_000_000);
        let parts: Vec<&str> = proof.split('.').collect();
        assert_eq!(parts.len(), 3);
        let (header, claims) = (decode(parts[0]), decode(parts[1]));
        assert_eq!(header["typ"], "dpop+jwt");
        assert_eq!(header["alg"], "ES256");
        assert!(header["jwk"].get("d").is_none(), "the private scalar never leaves");
        assert_eq!(claims["htm"], "POST");
        assert_eq!(claims["htu"], "https://op.example/token", "no query nor fragment");
        assert_eq!(claims["iat"], 1_700_000_000);
        assert_eq!(claims["nonce"], "n-1");
        // ath: base64url(SHA-256("at-123")).
        assert_eq!(claims["ath"], URL_SAFE_NO_PAD.encode(Sha256::digest(b"at-123")));
        let other = key.proof("POST", "https://op.example/token", None, None, 1);
        assert_ne!(decode(other.split('.').nth(1).unwrap())["jti"], claims["jti"], "a fresh jti per proof");
        assert!(decode(other.split('.').nth(1).unwrap()).get("ath").is_none());

        // The signature verifies with the key the header names.
        let x = URL_SAFE_NO_PAD.decode(header["jwk"]["x"].as_str().unwrap()).unwrap();
        let y = URL_SAFE_NO_PAD.decode(header["jwk"]["y"].as_str().unwrap()).unwrap();
        let point = [&[4u8][..], &x, &y].concat();
        let public = p256::ecdsa::VerifyingKey::from_sec1_bytes(&point).unwrap();
        let signature = p256::ecdsa::Signature::from_slice(&URL_SAFE_NO_PAD.decode(parts[2]).unwrap()).unwrap();
        let input = format!("{}.{}", parts[0], parts[1]);
        assert!(public.verify(input.as_bytes(), &signature).is_ok());
        assert!(public.verify(b"other input", &signature).is_err());
    }

    #[test]
    fn the_thumbprint_is_rfc_7638s_and_survives_the_kept_secret() {
        // RFC 7638's method over a known P-256 key (RFC 7515 appendix A.3's).
        let jwk = r#"{"kty":"EC","crv":"P-256",
            "x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
            "y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0",
            "d":"jpsQnnGQmL-YBIffH1136cspYG6-0iY7X1fCE9-E9LI"}"#;
        let key = DpopKey::from_pem(jwk).unwrap();
        let canonical = r#"{"crv":"P-256","kty":"EC","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}"#;
        assert_eq!(key.thumbprint(), URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes())));
        let again = DpopKey::from_secret_text(&key.secret()).unwrap();
        assert_eq!(again.thumbprint(), key.thumbprint());
        assert_ne!(DpopKey::generate().thumbprint(), key.thumbprint());
        assert!(!format!("{key:?}").contains(&key.secret()), "Debug prints no private key");
    }

    #[test]
    fn keys_that_are_not_p256_private_keys_are_refused() {
        assert!(DpopKey::from_pem(r#"{"kty":"RSA","n":"x","e":"AQAB"}"#).is_err());
        assert!(DpopKey::from_pem("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----").is_err());
        assert!(DpopKey::from_secret(&[0u8; 32]).is_err(), "zero is no scalar");
        assert!(DpopKey::from_secret_text("not base64!").is_err());
    }

    #[test]
    fn only_printable_nonces_of_a_sane_size_are_kept() {
        assert!(valid_nonce("eyJ7S_zG.9Ts-~"));
        for bad in ["", "with space", "quote\"", "back\\slash", "tab\t", "é"] {
            assert!(!valid_nonce(bad), "{bad:?}");
        }
        assert!(valid_nonce(&"n".repeat(512)));
        assert!(!valid_nonce(&"n".repeat(513)));
    }

    #[test]
    fn a_nonce_is_asked_for_by_a_json_error_or_a_challenge() {
        assert!(asks_for_nonce(None, br#"{"error":"use_dpop_nonce","error_description":"x"}"#));
        assert!(asks_for_nonce(Some(r#"DPoP error="use_dpop_nonce", algs="ES256""#), b""));
        assert!(!asks_for_nonce(None, br#"{"error":"invalid_dpop_proof"}"#));
        assert!(!asks_for_nonce(Some(r#"DPoP error="invalid_token""#), b"not json"));
    }
}
