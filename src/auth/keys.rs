//! Verification keys, parsed once when a key set is loaded. The algorithms a key may verify
//! are fixed here from its type (and its JWK `alg`), never taken from a token.

use aws_lc_rs::{hmac, signature};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use jsonwebtoken::Algorithm;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, PublicKeyUse};

/// What kind of key this is, which decides the algorithms it can ever verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyFamily {
    Hmac,
    Rsa,
    P256,
    P384,
    Ed25519,
}

impl KeyFamily {
    pub fn allows(self, alg: Algorithm) -> bool {
        use Algorithm::*;
        matches!(
            (self, alg),
            (KeyFamily::Hmac, HS256 | HS384 | HS512)
                | (KeyFamily::Rsa, RS256 | RS384 | RS512 | PS256 | PS384 | PS512)
                | (KeyFamily::P256, ES256)
                | (KeyFamily::P384, ES384)
                | (KeyFamily::Ed25519, EdDSA)
        )
    }
}

// A handful of long-lived values per key set: their size does not matter.
#[allow(clippy::large_enum_variant)]
enum Check {
    Public(signature::ParsedPublicKey),
    Hmac(hmac::Key),
}

/// A key ready to verify signatures: one prepared verifier per algorithm it may use.
pub struct VerifyKey {
    pub kid: Option<String>,
    pub family: KeyFamily,
    checks: Vec<(Algorithm, Check)>,
}

impl std::fmt::Debug for VerifyKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let algs: Vec<_> = self.checks.iter().map(|(a, _)| a).collect();
        f.debug_struct("VerifyKey")
            .field("kid", &self.kid)
            .field("family", &self.family)
            .field("algorithms", &algs)
            .finish()
    }
}

impl VerifyKey {
    /// Whether this key may verify a token signed with `alg`.
    pub fn allows(&self, alg: Algorithm) -> bool {
        self.checks.iter().any(|(a, _)| *a == alg)
    }

    /// Checks `signature` (already base64url-decoded) over `message` with algorithm `alg`.
    pub fn verify(&self, alg: Algorithm, message: &[u8], signature: &[u8]) -> bool {
        match self.checks.iter().find(|(a, _)| *a == alg) {
            Some((_, Check::Public(key))) => key.verify_sig(message, signature).is_ok(),
            Some((_, Check::Hmac(key))) => hmac::verify(key, message, signature).is_ok(),
            None => false,
        }
    }

    /// An HMAC shared secret, usable with the HS* algorithms in `allowed`.
    pub fn from_secret(secret: &[u8], allowed: &[Algorithm]) -> Self {
        let checks = allowed
            .iter()
            .filter_map(|&alg| {
                let h = match alg {
                    Algorithm::HS256 => hmac::HMAC_SHA256,
                    Algorithm::HS384 => hmac::HMAC_SHA384,
                    Algorithm::HS512 => hmac::HMAC_SHA512,
                    _ => return None,
                };
                Some((alg, Check::Hmac(hmac::Key::new(h, secret))))
            })
            .collect();
        VerifyKey { kid: None, family: KeyFamily::Hmac, checks }
    }

    /// A public key from a JWK. Symmetric (`oct`) keys are refused: an HMAC key is never
    /// taken from a key set, so a public key can never become an HMAC secret.
    pub fn from_jwk(jwk: &Jwk, allowed: &[Algorithm]) -> Result<Self, String> {
        if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)) {
            return Err("key is for encryption (use = enc)".into());
        }
        let pinned = match jwk.common.key_algorithm {
            None => None,
            Some(ka) => Some(key_alg(ka).ok_or_else(|| format!("unsupported key alg {ka:?}"))?),
        };
        let (family, material) = match &jwk.algorithm {
            AlgorithmParameters::RSA(p) => (KeyFamily::Rsa, rsa_der(&b64(&p.n)?, &b64(&p.e)?)),
            AlgorithmParameters::EllipticCurve(p) => {
                let family = match p.curve {
                    EllipticCurve::P256 => KeyFamily::P256,
                    EllipticCurve::P384 => KeyFamily::P384,
                    ref other => return Err(format!("unsupported curve {other:?}")),
                };
                let (x, y) = (b64(&p.x)?, b64(&p.y)?);
                let mut point = Vec::with_capacity(1 + x.len() + y.len());
                point.push(4);
                point.extend_from_slice(&x);
                point.extend_from_slice(&y);
                (family, point)
            }
            AlgorithmParameters::OctetKeyPair(p) if p.curve == EllipticCurve::Ed25519 => {
                (KeyFamily::Ed25519, b64(&p.x)?)
            }
            AlgorithmParameters::OctetKey(_) => {
                return Err("symmetric keys are not accepted from a key set".into());
            }
            _ => return Err("unsupported key type".into()),
        };
        let allowed: Vec<Algorithm> =
            allowed.iter().copied().filter(|a| family.allows(*a) && pinned.is_none_or(|p| p == *a)).collect();
        Self::from_public(jwk.common.key_id.clone(), family, &material, &allowed)
    }

    /// A public key from raw material: PKCS#1 DER for RSA, an uncompressed point for EC,
    /// 32 bytes for Ed25519.
    pub fn from_public(
        kid: Option<String>,
        family: KeyFamily,
        material: &[u8],
        allowed: &[Algorithm],
    ) -> Result<Self, String> {
        let mut checks = Vec::new();
        for &alg in allowed.iter().filter(|a| family.allows(**a)) {
            let verification: &'static dyn signature::VerificationAlgorithm = match alg {
                Algorithm::RS256 => &signature::RSA_PKCS1_2048_8192_SHA256,
                Algorithm::RS384 => &signature::RSA_PKCS1_2048_8192_SHA384,
                Algorithm::RS512 => &signature::RSA_PKCS1_2048_8192_SHA512,
                Algorithm::PS256 => &signature::RSA_PSS_2048_8192_SHA256,
                Algorithm::PS384 => &signature::RSA_PSS_2048_8192_SHA384,
                Algorithm::PS512 => &signature::RSA_PSS_2048_8192_SHA512,
                Algorithm::ES256 => &signature::ECDSA_P256_SHA256_FIXED,
                Algorithm::ES384 => &signature::ECDSA_P384_SHA384_FIXED,
                Algorithm::EdDSA => &signature::ED25519,
                _ => continue,
            };
            let parsed = signature::ParsedPublicKey::new(verification, material)
                .map_err(|e| format!("key rejected for {alg:?}: {e}"))?;
            checks.push((alg, Check::Public(parsed)));
        }
        if checks.is_empty() {
            return Err("the key cannot verify any of the issuer's allowed algorithms".into());
        }
        Ok(VerifyKey { kid, family, checks })
    }
}

fn key_alg(ka: KeyAlgorithm) -> Option<Algorithm> {
    use KeyAlgorithm as K;
    Some(match ka {
        K::HS256 => Algorithm::HS256,
        K::HS384 => Algorithm::HS384,
        K::HS512 => Algorithm::HS512,
        K::ES256 => Algorithm::ES256,
        K::ES384 => Algorithm::ES384,
        K::RS256 => Algorithm::RS256,
        K::RS384 => Algorithm::RS384,
        K::RS512 => Algorithm::RS512,
        K::PS256 => Algorithm::PS256,
        K::PS384 => Algorithm::PS384,
        K::PS512 => Algorithm::PS512,
        K::EdDSA => Algorithm::EdDSA,
        _ => return None,
    })
}

fn b64(text: &str) -> Result<Vec<u8>, String> {
    B64.decode(text.trim_end_matches('=')).map_err(|_| "key component is not base64url".to_string())
}

/// DER `RSAPublicKey ::= SEQUENCE { modulus INTEGER, publicExponent INTEGER }` (RFC 8017).
pub fn rsa_der(n: &[u8], e: &[u8]) -> Vec<u8> {
    fn integer(out: &mut Vec<u8>, bytes: &[u8]) {
        let start = bytes.iter().position(|&b| b != 0).unwrap_or(bytes.len().saturating_sub(1));
        let bytes = &bytes[start..];
        let pad = bytes.first().is_some_and(|b| b & 0x80 != 0);
        out.push(0x02);
        length(out, bytes.len() + usize::from(pad));
        if pad {
            out.push(0);
        }
        out.extend_from_slice(bytes);
    }
    fn length(out: &mut Vec<u8>, len: usize) {
        if len < 0x80 {
            out.push(len as u8);
        } else {
            let be = len.to_be_bytes();
            let skip = be.iter().position(|&b| b != 0).unwrap_or(be.len() - 1);
            out.push(0x80 | (be.len() - skip) as u8);
            out.extend_from_slice(&be[skip..]);
        }
    }
    let mut inner = Vec::with_capacity(n.len() + e.len() + 16);
    integer(&mut inner, n);
    integer(&mut inner, e);
    let mut out = Vec::with_capacity(inner.len() + 4);
    out.push(0x30);
    length(&mut out, inner.len());
    out.extend_from_slice(&inner);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_pin_algorithms() {
        assert!(KeyFamily::Rsa.allows(Algorithm::PS256));
        assert!(!KeyFamily::Rsa.allows(Algorithm::HS256));
        assert!(!KeyFamily::P256.allows(Algorithm::ES384));
        assert!(!KeyFamily::Hmac.allows(Algorithm::RS256));
    }

    #[test]
    fn symmetric_jwk_is_refused() {
        let jwk: Jwk = serde_json::from_str(r#"{"kty":"oct","k":"c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0"}"#).unwrap();
        assert!(VerifyKey::from_jwk(&jwk, &[Algorithm::HS256]).is_err());
    }

    #[test]
    fn pinned_jwk_alg_limits_the_key() {
        let jwk: Jwk = serde_json::from_str(
            r#"{"kty":"OKP","crv":"Ed25519","alg":"EdDSA","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}"#,
        )
        .unwrap();
        let key = VerifyKey::from_jwk(&jwk, &[Algorithm::EdDSA, Algorithm::RS256]).unwrap();
        assert!(key.allows(Algorithm::EdDSA) && !key.allows(Algorithm::RS256));
    }

    #[test]
    fn der_integers_are_minimal_and_positive() {
        let der = rsa_der(&[0x00, 0x80, 0x01], &[0x01, 0x00, 0x01]);
        assert_eq!(der, vec![0x30, 0x0a, 0x02, 0x03, 0x00, 0x80, 0x01, 0x02, 0x03, 0x01, 0x00, 0x01]);
    }
}
