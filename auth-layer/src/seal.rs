//! Sealing: authenticated encryption of everything auth-layer hands to a browser or a store.
//!
//! Keys come from the application secret by HKDF-SHA256, one sub-key per purpose, so the session
//! cookie, the transaction cookies and each typed store never share a key. Values are sealed with
//! XChaCha20-Poly1305 under a random 192-bit nonce, with the record's name (for a cookie, its
//! name) as associated data: a value moved to another name does not open.
//!
//! Several secrets may be configured for rotation: the first seals, any of them opens.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chacha20poly1305::aead::{Aead, Payload};
use chacha20poly1305::{Key, KeyInit, XChaCha20Poly1305, XNonce};
use std::sync::Arc;

use hkdf::Hkdf;
use sha2::Sha256;

/// The first byte of every sealed value: the format's version, so it can change later.
const VERSION: u8 = 1;
const NONCE_LEN: usize = 24;
const TAG_LEN: usize = 16;

/// Seals and opens values for one purpose, with one key per configured secret.
#[derive(Clone)]
pub struct Sealer {
    /// `keys[0]` seals; every key is tried when opening.
    keys: Vec<XChaCha20Poly1305>,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sealer").field("keys", &self.keys.len()).finish()
    }
}

impl Sealer {
    /// Derives one key per secret for `purpose` (HKDF-SHA256, the purpose as `info`).
    ///
    /// # Panics
    /// When `secrets` is empty. [`AuthConfig`](crate::AuthConfig) never builds without a secret.
    pub fn new<S: AsRef<[u8]>>(secrets: &[S], purpose: &str) -> Self {
        assert!(!secrets.is_empty(), "a Sealer needs at least one secret");
        let keys = secrets.iter().map(|secret| XChaCha20Poly1305::new(&Key::from(sub_key(secret, purpose)))).collect();
        Self { keys }
    }

    /// Seals `plaintext` bound to `name`, as unpadded base64url (cookie- and URL-safe): the
    /// text form of [`seal_bytes`](Self::seal_bytes).
    pub fn seal(&self, name: &str, plaintext: &[u8]) -> String {
        URL_SAFE_NO_PAD.encode(self.seal_bytes(name, plaintext))
    }

    /// Seals `plaintext` bound to `name`, as bytes: the format's version byte, the nonce, then
    /// the ciphertext and its tag. A third smaller than [`seal`](Self::seal)'s text, for
    /// stores that keep bytes.
    pub fn seal_bytes(&self, name: &str, plaintext: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::fill(&mut nonce).expect("the operating system's random generator failed");
        let ciphertext = self.keys[0]
            .encrypt(&XNonce::from(nonce), Payload { msg: plaintext, aad: name.as_bytes() })
            .expect("XChaCha20-Poly1305 accepts any message a cookie or store can hold");
        let mut raw = Vec::with_capacity(1 + NONCE_LEN + ciphertext.len());
        raw.push(VERSION);
        raw.extend_from_slice(&nonce);
        raw.extend_from_slice(&ciphertext);
        raw
    }

    /// Opens a value sealed for `name` by any configured secret; `None` when it was tampered
    /// with, truncated, sealed for another name, sealed with an unknown key, or is not ours.
    pub fn open(&self, name: &str, sealed: &str) -> Option<Vec<u8>> {
        self.open_bytes(name, &URL_SAFE_NO_PAD.decode(sealed).ok()?)
    }

    /// [`open`](Self::open) for the bytes of [`seal_bytes`](Self::seal_bytes).
    pub fn open_bytes(&self, name: &str, raw: &[u8]) -> Option<Vec<u8>> {
        if raw.len() < 1 + NONCE_LEN + TAG_LEN || raw[0] != VERSION {
            return None;
        }
        let nonce = XNonce::try_from(&raw[1..1 + NONCE_LEN]).ok()?;
        let msg = &raw[1 + NONCE_LEN..];
        self.keys.iter().find_map(|key| key.decrypt(&nonce, Payload { msg, aad: name.as_bytes() }).ok())
    }

    /// Opens a stored value in either form, bytes or text: the bytes start with the version
    /// byte, which no base64url text does.
    pub(crate) fn open_stored(&self, name: &str, stored: &[u8]) -> Option<Vec<u8>> {
        if stored.first() == Some(&VERSION) {
            return self.open_bytes(name, stored);
        }
        self.open(name, std::str::from_utf8(stored).ok()?)
    }
}

/// A fresh random token of `bytes` bytes from the operating system's generator, as base64url.
/// Keyed hashes (HMAC-SHA256) of names, under one key per secret derived like a [`Sealer`]'s:
/// a name that must not appear in the clear (a bearer session id used as a record's key) is
/// stored under its hash, which only the app can compute.
#[derive(Clone)]
pub(crate) struct KeyHasher {
    /// One HMAC per secret, already keyed: a hash clones one (the key's two blocks are not
    /// hashed again on every read).
    keyed: Arc<[hkdf::hmac::Hmac<Sha256>]>,
}

impl KeyHasher {
    /// One key per secret for `purpose` (HKDF-SHA256, the purpose as `info`).
    pub(crate) fn new<S: AsRef<[u8]>>(secrets: &[S], purpose: &str) -> Self {
        use hkdf::hmac::Mac;
        let keyed = secrets
            .iter()
            .map(|secret| {
                <hkdf::hmac::Hmac<Sha256> as Mac>::new_from_slice(&sub_key(secret, purpose))
                    .expect("HMAC takes a key of any length")
            })
            .collect();
        Self { keyed }
    }

    /// `prefix` followed by `name` hashed (base64url) under each secret's key, the current
    /// secret's first; one allocation each.
    pub(crate) fn hashes<'a>(&'a self, prefix: &'a str, name: &'a str) -> impl Iterator<Item = String> + 'a {
        use hkdf::hmac::Mac;
        self.keyed.iter().map(move |keyed| {
            let mut mac = keyed.clone();
            mac.update(name.as_bytes());
            let mut hashed = String::with_capacity(prefix.len() + 43);
            hashed.push_str(prefix);
            URL_SAFE_NO_PAD.encode_string(mac.finalize().into_bytes(), &mut hashed);
            hashed
        })
    }
}

/// The 256-bit key for `purpose` derived from `secret`: HKDF-SHA256, salt `auth-layer`, the
/// purpose as `info`. Every key of the crate comes from here, one per purpose.
fn sub_key(secret: impl AsRef<[u8]>, purpose: &str) -> [u8; 32] {
    let mut okm = [0u8; 32];
    Hkdf::<Sha256>::new(Some(b"auth-layer"), secret.as_ref())
        .expand(purpose.as_bytes(), &mut okm)
        .expect("32 bytes is a valid HKDF-SHA256 output length");
    okm
}

pub(crate) fn random_token(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf).expect("the operating system's random generator failed");
    URL_SAFE_NO_PAD.encode(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "an-application-secret-of-32-chars!!";
    const B: &str = "another-secret-that-is-long-enough-too";

    #[test]
    fn sealed_value_opens_under_its_own_name() {
        let sealer = Sealer::new(&[A], "session");
        let sealed = sealer.seal("_a0_session", b"hello");
        assert_eq!(sealer.open("_a0_session", &sealed).as_deref(), Some(&b"hello"[..]));
    }

    #[test]
    fn sealed_value_moved_to_another_name_does_not_open() {
        let sealer = Sealer::new(&[A], "session");
        let sealed = sealer.seal("_a0_session", b"hello");
        assert_eq!(sealer.open("_a0_tx.other", &sealed), None);
    }

    #[test]
    fn each_purpose_has_its_own_key() {
        let sealed = Sealer::new(&[A], "session").seal("n", b"hello");
        assert_eq!(Sealer::new(&[A], "transaction").open("n", &sealed), None);
    }

    #[test]
    fn tampered_truncated_or_foreign_values_do_not_open() {
        let sealer = Sealer::new(&[A], "session");
        let sealed = sealer.seal("n", b"hello world");
        let mut bytes = sealed.clone().into_bytes();
        let mid = bytes.len() / 2;
        bytes[mid] = if bytes[mid] == b'A' { b'B' } else { b'A' };
        assert_eq!(sealer.open("n", std::str::from_utf8(&bytes).unwrap()), None);
        assert_eq!(sealer.open("n", &sealed[..sealed.len() - 4]), None);
        assert_eq!(sealer.open("n", ""), None);
        assert_eq!(sealer.open("n", "not base64 at all!"), None);
        assert_eq!(Sealer::new(&[B], "session").open("n", &sealed), None);
    }

    #[test]
    fn rotation_seals_with_the_first_secret_and_opens_with_any() {
        let old = Sealer::new(&[A], "session");
        let rotated = Sealer::new(&[B, A], "session");
        let from_old = old.seal("n", b"before rotation");
        assert_eq!(rotated.open("n", &from_old).as_deref(), Some(&b"before rotation"[..]));
        let from_new = rotated.seal("n", b"after");
        assert_eq!(Sealer::new(&[B], "session").open("n", &from_new).as_deref(), Some(&b"after"[..]));
        assert_eq!(old.open("n", &from_new), None);
    }

    #[test]
    fn the_text_form_is_the_bytes_in_base64url_and_both_open_as_stored() {
        let sealer = Sealer::new(&[A], "store");
        let bytes = sealer.seal_bytes("k", b"record");
        assert_eq!(bytes[0], VERSION);
        let text = URL_SAFE_NO_PAD.encode(&bytes);
        assert_eq!(sealer.open("k", &text).as_deref(), Some(&b"record"[..]));
        assert_eq!(sealer.open_bytes("k", &bytes).as_deref(), Some(&b"record"[..]));
        assert_eq!(sealer.open_stored("k", &bytes).as_deref(), Some(&b"record"[..]), "bytes");
        assert_eq!(sealer.open_stored("k", text.as_bytes()).as_deref(), Some(&b"record"[..]), "older text");
        assert!(bytes.len() * 4 <= text.len() * 3 + 3, "bytes {} against text {}", bytes.len(), text.len());
        assert_eq!(sealer.open_bytes("other", &bytes), None, "bound to its name as the text is");
        let mut tampered = bytes.clone();
        *tampered.last_mut().unwrap() ^= 1;
        assert_eq!(sealer.open_stored("k", &tampered), None);
        assert_eq!(sealer.open_stored("k", &bytes[..bytes.len() - 1]), None);
        assert_eq!(sealer.open_stored("k", &[VERSION]), None);
        assert_eq!(sealer.open_stored("k", &[0xff, 0xfe]), None, "neither form");
    }

    #[test]
    fn two_seals_of_the_same_value_differ() {
        let sealer = Sealer::new(&[A], "session");
        assert_ne!(sealer.seal("n", b"same"), sealer.seal("n", b"same"));
    }
}
