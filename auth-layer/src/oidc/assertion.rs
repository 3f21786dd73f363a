//! The client's key for `private_key_jwt` (RFC 7523): a fresh signed assertion per request.

use super::*;

/// The client's private key for `private_key_jwt` (RFC 7523) client assertions.
pub(super) struct ClientAssertion {
    pub(super) key: AssertionKey,
    pub(super) kid: Option<String>,
}

pub(super) enum AssertionKey {
    Rsa(Box<openidconnect::core::CoreRsaPrivateSigningKey>, CoreJwsSigningAlgorithm),
    P256(p256::ecdsa::SigningKey),
}

impl ClientAssertion {
    /// From the key's text: PEM (RSA PKCS#1 or PKCS#8; P-256 PKCS#8 or SEC1) or a private JWK.
    pub(super) fn new(
        text: &str,
        alg: crate::config::ClientAssertionAlg,
        kid: Option<String>,
    ) -> Result<Self, ProviderError> {
        use crate::config::ClientAssertionAlg;
        use rsa::pkcs1::EncodeRsaPrivateKey;
        use rsa::pkcs8::DecodePrivateKey;
        let refused = |why: String| ProviderError::Discovery(cause(format!("the client assertion key: {why}")));
        let text = text.trim();
        let mut kid = kid;
        if alg == ClientAssertionAlg::Es256 {
            let key = if text.starts_with('{') {
                let jwk: Value = serde_json::from_str(text).map_err(|e| refused(e.to_string()))?;
                if jwk["kty"] != "EC" || jwk["crv"] != "P-256" {
                    return Err(refused("ES256 needs an EC key on P-256".into()));
                }
                kid = kid.or_else(|| jwk["kid"].as_str().map(str::to_owned));
                let d = jwk_bytes(&jwk, "d").map_err(refused)?;
                p256::ecdsa::SigningKey::from_slice(&d).map_err(|e| refused(e.to_string()))?
            } else if text.contains("BEGIN EC PRIVATE KEY") {
                let secret = p256::SecretKey::from_sec1_pem(text).map_err(|e| refused(e.to_string()))?;
                p256::ecdsa::SigningKey::from(secret)
            } else {
                <p256::ecdsa::SigningKey as p256::pkcs8::DecodePrivateKey>::from_pkcs8_pem(text)
                    .map_err(|e| refused(e.to_string()))?
            };
            return Ok(Self { key: AssertionKey::P256(key), kid });
        }
        let rsa = if text.starts_with('{') {
            let jwk: Value = serde_json::from_str(text).map_err(|e| refused(e.to_string()))?;
            if jwk["kty"] != "RSA" {
                return Err(refused(format!("{alg:?} needs an RSA key")));
            }
            kid = kid.or_else(|| jwk["kid"].as_str().map(str::to_owned));
            let int = |name: &str| jwk_bytes(&jwk, name).map(|b| rsa::BigUint::from_bytes_be(&b));
            let (n, e, d) = (int("n").map_err(refused)?, int("e").map_err(refused)?, int("d").map_err(refused)?);
            let primes = match (int("p"), int("q")) {
                (Ok(p), Ok(q)) => vec![p, q],
                _ => Vec::new(),
            };
            rsa::RsaPrivateKey::from_components(n, e, d, primes).map_err(|e| refused(e.to_string()))?
        } else if text.contains("BEGIN PRIVATE KEY") {
            rsa::RsaPrivateKey::from_pkcs8_pem(text).map_err(|e| refused(e.to_string()))?
        } else {
            use rsa::pkcs1::DecodeRsaPrivateKey;
            rsa::RsaPrivateKey::from_pkcs1_pem(text).map_err(|e| refused(e.to_string()))?
        };
        // openidconnect signs with a PKCS#1 PEM key.
        let pkcs1 = rsa.to_pkcs1_pem(rsa::pkcs8::LineEnding::LF).map_err(|e| refused(e.to_string()))?;
        let key = openidconnect::core::CoreRsaPrivateSigningKey::from_pem(&pkcs1, None).map_err(refused)?;
        let alg = match alg {
            ClientAssertionAlg::Ps256 => CoreJwsSigningAlgorithm::RsaSsaPssSha256,
            _ => CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256,
        };
        Ok(Self { key: AssertionKey::Rsa(Box::new(key), alg), kid })
    }

    /// A fresh assertion of `client_id` for `audience` (the issuer), valid 60 s from `now`.
    pub(super) fn sign(&self, client_id: &str, audience: &str, now: u64) -> Result<String, AuthError> {
        use openidconnect::PrivateSigningKey;
        let alg = match &self.key {
            AssertionKey::Rsa(_, CoreJwsSigningAlgorithm::RsaSsaPssSha256) => "PS256",
            AssertionKey::Rsa(..) => "RS256",
            AssertionKey::P256(_) => "ES256",
        };
        let mut header = serde_json::json!({ "alg": alg, "typ": "JWT" });
        if let Some(kid) = &self.kid {
            header["kid"] = Value::from(kid.as_str());
        }
        let claims = serde_json::json!({
            "iss": client_id, "sub": client_id, "aud": audience,
            "jti": crate::seal::random_token(24), "iat": now, "exp": now + 60,
        });
        let input =
            format!("{}.{}", URL_SAFE_NO_PAD.encode(header.to_string()), URL_SAFE_NO_PAD.encode(claims.to_string()));
        let failed = |e: String| {
            AuthError::Provider(ProviderError::BadTokenResponse(format!("signing the client assertion failed: {e}")))
        };
        let signature = match &self.key {
            AssertionKey::Rsa(key, alg) => key.sign(alg, input.as_bytes()).map_err(|e| failed(e.to_string()))?,
            AssertionKey::P256(key) => {
                use p256::ecdsa::signature::Signer;
                // JWS wants r and s, 32 bytes each (RFC 7518, 3.4), not DER.
                let signature: p256::ecdsa::Signature =
                    key.try_sign(input.as_bytes()).map_err(|e| failed(e.to_string()))?;
                signature.to_bytes().to_vec()
            }
        };
        Ok(format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature)))
    }
}

/// A JWK member's base64url bytes.
pub(super) fn jwk_bytes(jwk: &Value, name: &str) -> Result<Vec<u8>, String> {
    let text = jwk[name].as_str().ok_or_else(|| format!("the JWK has no `{name}`"))?;
    URL_SAFE_NO_PAD.decode(text).map_err(|e| format!("the JWK's `{name}`: {e}"))
}
