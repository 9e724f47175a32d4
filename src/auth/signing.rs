//! Gatehouse's own signing key: loaded from a PKCS#8 PEM file (or an HMAC secret file),
//! generated on first start when missing, published as a JWK and used to sign tokens.

use std::path::Path;

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use aws_lc_rs::signature::{self, EcdsaKeyPair, Ed25519KeyPair, KeyPair, RsaKeyPair};
use aws_lc_rs::{digest, hmac, rsa};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD as B64};
use jsonwebtoken::Algorithm;
use rustls_pki_types::PrivateKeyDer;
use rustls_pki_types::pem::PemObject;
use serde_json::{Value, json};

use super::keys::{KeyFamily, VerifyKey};

// A handful of long-lived values per key set: their size does not matter.
#[allow(clippy::large_enum_variant)]
enum Signer {
    Hmac(hmac::Key),
    Ecdsa(EcdsaKeyPair),
    Ed25519(Ed25519KeyPair),
    Rsa(RsaKeyPair, &'static dyn signature::RsaEncoding),
}

/// The JOSE `typ` of the access tokens Gatehouse signs (RFC 9068 §2.1).
pub const ACCESS_TOKEN_TYP: &str = "at+jwt";

/// A private key plus what others need to verify its signatures.
pub struct SigningKey {
    pub algorithm: Algorithm,
    pub kid: String,
    signer: Signer,
    /// The public JWK (`None` for HMAC, whose key is never published).
    pub jwk: Option<Value>,
    /// SHA-256 of the private key material, the root of [`SigningKey::derive_secret`].
    material_digest: [u8; 32],
    pub verify_key: std::sync::Arc<VerifyKey>,
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read or write {path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("{path}: {message}")]
    Invalid { path: String, message: String },
}

impl SigningKey {
    /// Reads the key at `path`, or generates one there (mode 0600) if the file is missing.
    pub fn load_or_generate(path: &Path, algorithm: Algorithm) -> Result<Self, KeyError> {
        let io = |source| KeyError::Io { path: path.display().to_string(), source };
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let generated = generate(algorithm)
                    .map_err(|message| KeyError::Invalid { path: path.display().to_string(), message })?;
                if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir).map_err(io)?;
                }
                if publish_private(path, &generated).map_err(io)? {
                    tracing::info!(path = %path.display(), ?algorithm, "generated a new signing key");
                    generated
                } else {
                    // Another process (a replica, `gatehouse token`) won the race: use its key.
                    std::fs::read(path).map_err(io)?
                }
            }
            Err(e) => return Err(io(e)),
        };
        Self::from_bytes(&bytes, algorithm)
            .map_err(|message| KeyError::Invalid { path: path.display().to_string(), message })
    }

    /// A key from its file form: PKCS#8 PEM, or the raw secret for HS*.
    pub fn from_bytes(bytes: &[u8], algorithm: Algorithm) -> Result<Self, String> {
        let material_digest: [u8; 32] = digest::digest(&digest::SHA256, bytes).as_ref().try_into().expect("32 bytes");
        use Algorithm::*;
        if let HS256 | HS384 | HS512 = algorithm {
            let secret = crate::config::trim_secret(bytes);
            if secret.len() < 32 {
                return Err("an HMAC secret needs at least 32 bytes".into());
            }
            let h = match algorithm {
                HS256 => hmac::HMAC_SHA256,
                HS384 => hmac::HMAC_SHA384,
                _ => hmac::HMAC_SHA512,
            };
            let kid = thumb(secret);
            // The kid is never published (the secret is not), but tokens carry it and the key
            // set is indexed by it: without it here, own HS* tokens would find no key.
            let mut verify_key = VerifyKey::from_secret(secret, &[algorithm]);
            verify_key.kid = Some(kid.clone());
            return Ok(SigningKey {
                algorithm,
                kid,
                signer: Signer::Hmac(hmac::Key::new(h, secret)),
                jwk: None,
                material_digest,
                verify_key: std::sync::Arc::new(verify_key),
            });
        }
        let der = match PrivateKeyDer::from_pem_slice(bytes) {
            Ok(PrivateKeyDer::Pkcs8(d)) => d.secret_pkcs8_der().to_vec(),
            Ok(_) => return Err("the key must be PKCS#8 (`-----BEGIN PRIVATE KEY-----`)".into()),
            Err(_) => return Err("not a PEM private key".into()),
        };
        let bad = |e: aws_lc_rs::error::KeyRejected| format!("key does not fit {algorithm:?}: {e}");
        let (signer, family, material, jwk) = match algorithm {
            ES256 | ES384 => {
                let (alg, family, crv) = if algorithm == ES256 {
                    (&signature::ECDSA_P256_SHA256_FIXED_SIGNING, KeyFamily::P256, "P-256")
                } else {
                    (&signature::ECDSA_P384_SHA384_FIXED_SIGNING, KeyFamily::P384, "P-384")
                };
                let pair = EcdsaKeyPair::from_pkcs8(alg, &der).map_err(bad)?;
                let point = pair.public_key().as_ref().to_vec();
                let half = (point.len() - 1) / 2;
                let jwk = json!({"kty": "EC", "crv": crv, "x": B64.encode(&point[1..1 + half]), "y": B64.encode(&point[1 + half..])});
                (Signer::Ecdsa(pair), family, point, jwk)
            }
            EdDSA => {
                let pair = Ed25519KeyPair::from_pkcs8(&der).map_err(bad)?;
                let x = pair.public_key().as_ref().to_vec();
                let jwk = json!({"kty": "OKP", "crv": "Ed25519", "x": B64.encode(&x)});
                (Signer::Ed25519(pair), KeyFamily::Ed25519, x, jwk)
            }
            RS256 | RS384 | RS512 | PS256 | PS384 | PS512 => {
                let pair = RsaKeyPair::from_pkcs8(&der).map_err(bad)?;
                if pair.public_modulus_len() < 256 {
                    return Err("RSA keys must have at least 2048 bits".into());
                }
                let public: &rsa::PublicKey = pair.public_key();
                let jwk = json!({
                    "kty": "RSA",
                    "n": B64.encode(public.modulus().big_endian_without_leading_zero()),
                    "e": B64.encode(public.exponent().big_endian_without_leading_zero()),
                });
                let material = public.as_ref().to_vec();
                let encoding: &'static dyn signature::RsaEncoding = match algorithm {
                    RS256 => &signature::RSA_PKCS1_SHA256,
                    RS384 => &signature::RSA_PKCS1_SHA384,
                    RS512 => &signature::RSA_PKCS1_SHA512,
                    PS256 => &signature::RSA_PSS_SHA256,
                    PS384 => &signature::RSA_PSS_SHA384,
                    _ => &signature::RSA_PSS_SHA512,
                };
                (Signer::Rsa(pair, encoding), KeyFamily::Rsa, material, jwk)
            }
            other => {
                return Err(format!("{other:?} cannot be used for Gatehouse's own tokens"));
            }
        };
        let kid = thumb(&material);
        let mut jwk = jwk;
        jwk["kid"] = json!(kid);
        jwk["alg"] = json!(format!("{algorithm:?}"));
        jwk["use"] = json!("sig");
        let verify_key = VerifyKey::from_public(Some(kid.clone()), family, &material, &[algorithm])?;
        Ok(SigningKey {
            algorithm,
            kid,
            signer,
            jwk: Some(jwk),
            material_digest,
            verify_key: std::sync::Arc::new(verify_key),
        })
    }

    /// A new key in file form (PKCS#8 PEM, or a random secret for HS*).
    pub fn generate_bytes(algorithm: Algorithm) -> Result<Vec<u8>, String> {
        generate(algorithm)
    }

    /// A secret for another purpose, derived from (and as secret as) this key.
    pub fn derive_secret(&self, label: &[u8]) -> [u8; 32] {
        let key = hmac::Key::new(hmac::HMAC_SHA256, &self.material_digest);
        hmac::sign(&key, label).as_ref().try_into().expect("32 bytes")
    }

    /// Signs `claims` as an access token: a compact JWS with this key's `alg` and `kid` and
    /// `typ: at+jwt` (RFC 9068), which Gatehouse's verifier requires of its own tokens, so
    /// no other JWT this key might ever sign (an ID token, a link token) passes as one.
    pub fn sign(&self, claims: &impl serde::Serialize) -> String {
        let header = json!({"alg": format!("{:?}", self.algorithm), "typ": ACCESS_TOKEN_TYP, "kid": self.kid});
        self.sign_with_header(&header, claims)
    }

    /// Signs with a caller-built JOSE header (tests use it to forge odd headers).
    pub fn sign_with_header(&self, header: &Value, claims: &impl serde::Serialize) -> String {
        let mut token = B64.encode(serde_json::to_vec(&header).expect("header serialises"));
        token.push('.');
        token.push_str(&B64.encode(serde_json::to_vec(claims).expect("claims serialise")));
        let rng = SystemRandom::new();
        let sig = match &self.signer {
            Signer::Hmac(key) => hmac::sign(key, token.as_bytes()).as_ref().to_vec(),
            Signer::Ecdsa(pair) => pair.sign(&rng, token.as_bytes()).expect("ECDSA signing").as_ref().to_vec(),
            Signer::Ed25519(pair) => pair.sign(token.as_bytes()).as_ref().to_vec(),
            Signer::Rsa(pair, encoding) => {
                let mut sig = vec![0; pair.public_modulus_len()];
                pair.sign(*encoding, &rng, token.as_bytes(), &mut sig).expect("RSA signing");
                sig
            }
        };
        token.push('.');
        token.push_str(&B64.encode(sig));
        token
    }
}

/// A short stable key id: the first 16 bytes of the SHA-256 of the public material.
fn thumb(material: &[u8]) -> String {
    B64.encode(&digest::digest(&digest::SHA256, material).as_ref()[..16])
}

fn generate(algorithm: Algorithm) -> Result<Vec<u8>, String> {
    use Algorithm::*;
    let rng = SystemRandom::new();
    let fail = |_| "key generation failed".to_string();
    let pkcs8 = match algorithm {
        HS256 | HS384 | HS512 => {
            let mut secret = [0u8; 64];
            rng.fill(&mut secret).map_err(fail)?;
            return Ok(B64.encode(secret).into_bytes());
        }
        ES256 => EcdsaKeyPair::generate_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .map_err(fail)?
            .as_ref()
            .to_vec(),
        ES384 => EcdsaKeyPair::generate_pkcs8(&signature::ECDSA_P384_SHA384_FIXED_SIGNING, &rng)
            .map_err(fail)?
            .as_ref()
            .to_vec(),
        // PKCS#8 v1: the most widely read form (Python cryptography refuses the v2 encoding).
        EdDSA => Ed25519KeyPair::generate_pkcs8v1(&rng).map_err(fail)?.as_ref().to_vec(),
        _ => {
            let pair = RsaKeyPair::generate(rsa::KeySize::Rsa2048).map_err(fail)?;
            AsDer::<aws_lc_rs::encoding::Pkcs8V1Der>::as_der(&pair).map_err(fail)?.as_ref().to_vec()
        }
    };
    let body = STANDARD.encode(pkcs8);
    let mut pem = String::from("-----BEGIN PRIVATE KEY-----\n");
    for line in body.as_bytes().chunks(64) {
        pem.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
        pem.push('\n');
    }
    pem.push_str("-----END PRIVATE KEY-----\n");
    Ok(pem.into_bytes())
}

/// Writes the key to a private temporary file, then links it into place, so no reader ever
/// sees a half-written key and an existing key is never replaced. `false`: one was there.
fn publish_private(path: &Path, bytes: &[u8]) -> std::io::Result<bool> {
    use std::io::Write;
    let mut nonce = [0u8; 8];
    SystemRandom::new().fill(&mut nonce).map_err(|_| std::io::Error::other("no randomness"))?;
    let tmp = path.with_extension(format!("tmp-{}", B64.encode(nonce)));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let written = options.open(&tmp).and_then(|mut f| f.write_all(bytes).and_then(|_| f.sync_all()));
    let linked = written.and_then(|_| std::fs::hard_link(&tmp, path));
    let _ = std::fs::remove_file(&tmp);
    match linked {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_own_algorithm_signs_and_verifies() {
        let dir = tempfile::tempdir().unwrap();
        for alg in
            [Algorithm::ES256, Algorithm::ES384, Algorithm::EdDSA, Algorithm::RS256, Algorithm::PS256, Algorithm::HS256]
        {
            let path = dir.path().join(format!("{alg:?}.pem"));
            let key = SigningKey::load_or_generate(&path, alg).unwrap();
            let again = SigningKey::load_or_generate(&path, alg).unwrap();
            assert_eq!(key.kid, again.kid, "{alg:?} key is persisted");
            assert_eq!(key.verify_key.kid.as_deref(), Some(key.kid.as_str()), "{alg:?} is found by its kid");
            let token = key.sign(&json!({"sub": "a"}));
            let (message, sig) = token.rsplit_once('.').unwrap();
            assert!(again.verify_key.verify(alg, message.as_bytes(), &B64.decode(sig).unwrap()), "{alg:?}");
            assert!(!again.verify_key.verify(alg, b"other", &B64.decode(sig).unwrap()));
        }
    }

    #[test]
    fn a_key_of_the_wrong_type_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.pem");
        SigningKey::load_or_generate(&path, Algorithm::ES256).unwrap();
        assert!(SigningKey::load_or_generate(&path, Algorithm::EdDSA).is_err());
    }
}
