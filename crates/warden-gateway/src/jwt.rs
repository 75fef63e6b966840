//! JWT verification for OIDC access tokens, with aws-lc-rs: asymmetric algorithms from an
//! allowlist only (`none` and every HMAC algorithm are refused before any key is looked
//! at, so an RSA public key can never be used as an HMAC secret), keys only from the
//! configured JWKS (never from `jku`/`x5u`/`jwk` headers), the key's type must match the
//! algorithm, and `iss`, `aud`, `exp`, `nbf` and `iat` (not in the future) are checked. A header or claims set that
//! repeats a member name (in any object) is refused.
//!
//! A token's identity is named `jwt:<sub>` ([`IDENTITY_PREFIX`]): OIDC subjects live in
//! their own namespace, so a subject can never share the blocks, limits or
//! `principal == Warden::User::"…"` policies of an API-key or mTLS identity of the same
//! name; directory identities may not start with the prefix ([`is_reserved_name`]).
//!
//! A key set is used for at most [`JwtPolicy::max_key_set_age_secs`] after it was
//! fetched: when the provider cannot be reached for longer, keys it may have rotated out
//! would otherwise stay valid, so every token is refused ([`JwtError::StaleKeySet`]).

use crate::directory::Identity;
use aws_lc_rs::signature::{self, UnparsedPublicKey};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::Value;

/// Algorithms this verifier implements (all asymmetric).
pub const SUPPORTED_ALGS: &[&str] = &[
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA",
];

/// Longest token accepted, bytes.
const MAX_TOKEN: usize = 16 * 1024;

/// The namespace of identities that come from tokens: a token with `sub` `alice` is the
/// identity `jwt:alice`, never the directory identity `alice`.
pub const IDENTITY_PREFIX: &str = "jwt:";

/// The identity name of an OIDC subject.
pub fn identity_name(sub: &str) -> String {
    format!("{IDENTITY_PREFIX}{sub}")
}

/// Whether `name` lies in the token namespace (compared without regard to ASCII case, so
/// no directory identity can even look like a token identity). Such names are refused for
/// API-key and mTLS identities.
pub fn is_reserved_name(name: &str) -> bool {
    name.get(..IDENTITY_PREFIX.len())
        .is_some_and(|p| p.eq_ignore_ascii_case(IDENTITY_PREFIX))
}

/// Why a token was refused. Messages never contain the token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwtError {
    /// Not three base64url JSON parts.
    #[error("malformed token")]
    Malformed,
    /// `none`, an HMAC algorithm, or one not on the allowlist.
    #[error("algorithm {0} is not accepted")]
    Algorithm(String),
    /// No key in the JWKS for this `kid`/algorithm.
    #[error("no matching signing key")]
    UnknownKey,
    /// Signature does not verify.
    #[error("bad signature")]
    Signature,
    /// A `typ` header naming another kind of JWT (a DPoP proof, a security event, a
    /// logout token…) than an access token.
    #[error("token type {0} is not an access token")]
    Type(String),
    /// `exp` is in the past.
    #[error("token expired")]
    Expired,
    /// `nbf` is in the future.
    #[error("token not yet valid")]
    NotYetValid,
    /// Wrong `iss`.
    #[error("wrong issuer")]
    Issuer,
    /// Wrong `aud`.
    #[error("wrong audience")]
    Audience,
    /// A required claim is missing or has the wrong type.
    #[error("claim {0} missing or invalid")]
    Claim(&'static str),
    /// The key set was fetched longer ago than the maximum age allows (the provider has
    /// been unreachable): no token is accepted until a fetch succeeds.
    #[error("identity provider key set is older than {max_age_secs} s (JWKS refresh failing)")]
    StaleKeySet {
        /// The configured maximum age.
        max_age_secs: u64,
    },
}

#[derive(Debug, Clone)]
enum KeyMaterial {
    Rsa { n: Vec<u8>, e: Vec<u8> },
    EcP256(Vec<u8>),
    EcP384(Vec<u8>),
    Ed25519(Vec<u8>),
}

#[derive(Debug, Clone)]
struct Jwk {
    kid: Option<String>,
    alg: Option<String>,
    key: KeyMaterial,
}

/// A parsed JSON Web Key Set (unsupported or symmetric keys are dropped), with the time
/// it was fetched.
#[derive(Debug, Clone, Default)]
pub struct Jwks {
    keys: Vec<Jwk>,
    /// Unix seconds of the fetch; 0: never fetched (too old for any maximum age).
    fetched_at: u64,
}

fn b64(v: &Value, field: &'static str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(v.get(field)?.as_str()?).ok()
}

impl Jwks {
    /// Parse a JWKS document. Keys with `use` other than `sig` and symmetric keys are ignored.
    pub fn parse(doc: &[u8]) -> Result<Jwks, String> {
        let v: Value = serde_json::from_slice(doc).map_err(|e| format!("not JSON: {e}"))?;
        let arr = v
            .get("keys")
            .and_then(Value::as_array)
            .ok_or("no \"keys\" array")?;
        let mut keys = Vec::new();
        for k in arr {
            if k.get("use")
                .and_then(Value::as_str)
                .is_some_and(|u| u != "sig")
            {
                continue;
            }
            let key = match k.get("kty").and_then(Value::as_str) {
                Some("RSA") => match (b64(k, "n"), b64(k, "e")) {
                    (Some(n), Some(e)) => KeyMaterial::Rsa { n, e },
                    _ => continue,
                },
                Some("EC") => {
                    let (Some(x), Some(y)) = (b64(k, "x"), b64(k, "y")) else {
                        continue;
                    };
                    let mut point = vec![4u8];
                    point.extend_from_slice(&x);
                    point.extend_from_slice(&y);
                    match k.get("crv").and_then(Value::as_str) {
                        Some("P-256") if x.len() == 32 && y.len() == 32 => {
                            KeyMaterial::EcP256(point)
                        }
                        Some("P-384") if x.len() == 48 && y.len() == 48 => {
                            KeyMaterial::EcP384(point)
                        }
                        _ => continue,
                    }
                }
                Some("OKP") if k.get("crv").and_then(Value::as_str) == Some("Ed25519") => {
                    match b64(k, "x") {
                        Some(x) if x.len() == 32 => KeyMaterial::Ed25519(x),
                        _ => continue,
                    }
                }
                _ => continue,
            };
            keys.push(Jwk {
                kid: k.get("kid").and_then(Value::as_str).map(str::to_owned),
                alg: k.get("alg").and_then(Value::as_str).map(str::to_owned),
                key,
            });
        }
        Ok(Jwks {
            keys,
            fetched_at: 0,
        })
    }

    /// The same set, fetched at `unix_secs`.
    pub fn fetched(mut self, unix_secs: u64) -> Jwks {
        self.fetched_at = unix_secs;
        self
    }

    /// When the set was fetched (Unix seconds; 0: never).
    pub fn fetched_at(&self) -> u64 {
        self.fetched_at
    }

    /// Number of usable keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether there is no usable key.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

/// What the verifier needs from the OIDC configuration.
#[derive(Debug, Clone)]
pub struct JwtPolicy {
    /// Required issuer.
    pub issuer: String,
    /// Required audience.
    pub audience: String,
    /// Accepted algorithms.
    pub algorithms: Vec<String>,
    /// Claim names.
    pub roles_claim: String,
    /// Claim names.
    pub team_claim: String,
    /// Claim names.
    pub clearance_claim: String,
    /// Allowed clock skew.
    pub leeway_secs: u64,
    /// Oldest key set (seconds since its fetch) still used to accept tokens.
    pub max_key_set_age_secs: u64,
    /// A token over a connection with a client certificate is served as the token's
    /// identity ([`crate::config::OidcConfig::tokens_with_client_certificates`]).
    pub with_client_certificate: bool,
}

/// A verified token's identity and whether the provider asserted MFA (`amr` contains `mfa`).
#[derive(Debug, Clone)]
pub struct Verified {
    /// The identity (name = `jwt:<sub>`).
    pub identity: Identity,
    /// MFA asserted by the provider.
    pub mfa: bool,
}

fn verify_sig(alg: &str, key: &KeyMaterial, msg: &[u8], sig: &[u8]) -> Result<(), JwtError> {
    let ok = match (alg, key) {
        ("RS256" | "RS384" | "RS512" | "PS256" | "PS384" | "PS512", KeyMaterial::Rsa { n, e }) => {
            let params: &signature::RsaParameters = match alg {
                "RS256" => &signature::RSA_PKCS1_2048_8192_SHA256,
                "RS384" => &signature::RSA_PKCS1_2048_8192_SHA384,
                "RS512" => &signature::RSA_PKCS1_2048_8192_SHA512,
                "PS256" => &signature::RSA_PSS_2048_8192_SHA256,
                "PS384" => &signature::RSA_PSS_2048_8192_SHA384,
                _ => &signature::RSA_PSS_2048_8192_SHA512,
            };
            signature::RsaPublicKeyComponents { n, e }
                .verify(params, msg, sig)
                .is_ok()
        }
        ("ES256", KeyMaterial::EcP256(p)) => {
            UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, p)
                .verify(msg, sig)
                .is_ok()
        }
        ("ES384", KeyMaterial::EcP384(p)) => {
            UnparsedPublicKey::new(&signature::ECDSA_P384_SHA384_FIXED, p)
                .verify(msg, sig)
                .is_ok()
        }
        ("EdDSA", KeyMaterial::Ed25519(p)) => UnparsedPublicKey::new(&signature::ED25519, p)
            .verify(msg, sig)
            .is_ok(),
        _ => return Err(JwtError::UnknownKey),
    };
    if ok { Ok(()) } else { Err(JwtError::Signature) }
}

/// A header or claims part. A member name repeated in any object is refused: JSON
/// parsers disagree on which copy counts (`serde_json` keeps the last), so another reader
/// of the same token (a relying party, an audit tool) could see another `sub` or role.
fn decode_part(s: &str) -> Result<Value, JwtError> {
    let bytes = URL_SAFE_NO_PAD.decode(s).map_err(|_| JwtError::Malformed)?;
    match crate::json::parse(&bytes) {
        Ok(p) if !p.duplicate_keys => Ok(p.value),
        _ => Err(JwtError::Malformed),
    }
}

/// The `typ` header of an access token: absent, `JWT` (RFC 7519) or `at+jwt` (RFC 9068),
/// compared as media types (RFC 7515 §4.1.9: without regard to case, `application/`
/// optional). Anything else is another kind of JWT the provider signs — a DPoP proof, a
/// security event, a logout token — that must not be replayed as an access token (RFC
/// 8725 §3.11).
fn access_token_type(typ: Option<&Value>) -> Result<(), JwtError> {
    let Some(typ) = typ else {
        return Ok(());
    };
    let Some(t) = typ.as_str() else {
        return Err(JwtError::Type("(not a string)".into()));
    };
    let lower = t.to_ascii_lowercase();
    let bare = lower.strip_prefix("application/").unwrap_or(&lower);
    if bare == "jwt" || bare == "at+jwt" {
        return Ok(());
    }
    Err(JwtError::Type(format!(
        "{:?}",
        t.chars().take(32).collect::<String>()
    )))
}

/// Verify `token` against `jwks` and `policy` at `now` (Unix seconds).
pub fn verify(
    token: &str,
    jwks: &Jwks,
    policy: &JwtPolicy,
    now: u64,
) -> Result<Verified, JwtError> {
    if now.saturating_sub(jwks.fetched_at) > policy.max_key_set_age_secs {
        return Err(JwtError::StaleKeySet {
            max_age_secs: policy.max_key_set_age_secs,
        });
    }
    if token.len() > MAX_TOKEN {
        return Err(JwtError::Malformed);
    }
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(JwtError::Malformed);
    };
    let header = decode_part(h)?;
    let alg = header
        .get("alg")
        .and_then(Value::as_str)
        .ok_or(JwtError::Malformed)?;
    // Refuse `none` and every symmetric algorithm outright, whatever the configuration says.
    if alg.eq_ignore_ascii_case("none")
        || alg.to_ascii_uppercase().starts_with("HS")
        || !SUPPORTED_ALGS.contains(&alg)
        || !policy.algorithms.iter().any(|a| a == alg)
    {
        return Err(JwtError::Algorithm(alg.chars().take(16).collect()));
    }
    if header.get("crit").is_some() {
        return Err(JwtError::Malformed);
    }
    access_token_type(header.get("typ"))?;
    let sig = URL_SAFE_NO_PAD.decode(s).map_err(|_| JwtError::Malformed)?;
    let kid = header.get("kid").and_then(Value::as_str);
    let signed = token
        .get(..h.len() + 1 + p.len())
        .ok_or(JwtError::Malformed)?;
    let candidates = jwks.keys.iter().filter(|k| {
        kid.is_none_or(|kid| k.kid.as_deref() == Some(kid))
            && k.alg.as_deref().is_none_or(|a| a == alg)
    });
    let mut result = Err(JwtError::UnknownKey);
    for k in candidates {
        match verify_sig(alg, &k.key, signed.as_bytes(), &sig) {
            Ok(()) => {
                result = Ok(());
                break;
            }
            Err(JwtError::UnknownKey) => {}
            Err(e) => result = Err(e),
        }
    }
    result?;
    let claims = decode_part(p)?;
    if claims.get("iss").and_then(Value::as_str) != Some(policy.issuer.as_str()) {
        return Err(JwtError::Issuer);
    }
    let aud_ok = match claims.get("aud") {
        Some(Value::String(a)) => a == &policy.audience,
        Some(Value::Array(a)) => a
            .iter()
            .any(|x| x.as_str() == Some(policy.audience.as_str())),
        _ => false,
    };
    if !aud_ok {
        return Err(JwtError::Audience);
    }
    let exp = claims
        .get("exp")
        .and_then(numeric_date)
        .ok_or(JwtError::Claim("exp"))?;
    if now >= exp.saturating_add(policy.leeway_secs) {
        return Err(JwtError::Expired);
    }
    // A token issued (`iat`) or valid (`nbf`) only later than now, beyond the leeway,
    // is not valid yet: a clock far ahead at the issuer, or a token minted for later.
    for k in ["nbf", "iat"] {
        if let Some(v) = claims.get(k) {
            let t = numeric_date(v).ok_or(JwtError::Claim(k))?;
            if t > now.saturating_add(policy.leeway_secs) {
                return Err(JwtError::NotYetValid);
            }
        }
    }
    let sub = claims
        .get("sub")
        .and_then(Value::as_str)
        // 252 bytes: with the `jwt:` prefix the identity fits the 256-byte names that
        // blocks and the directory accept, so every token identity can be blocked.
        .filter(|s| !s.is_empty() && s.len() <= 252 && !s.chars().any(char::is_control))
        .ok_or(JwtError::Claim("sub"))?;
    let roles = match claims.get(&policy.roles_claim) {
        None => Vec::new(),
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect(),
        Some(Value::String(s)) => s.split_whitespace().map(str::to_owned).collect(),
        Some(_) => return Err(JwtError::Claim("roles")),
    };
    let team = claims
        .get(&policy.team_claim)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let clearance = claims
        .get(&policy.clearance_claim)
        .and_then(Value::as_i64)
        .unwrap_or(0);
    let mfa = claims
        .get("amr")
        .and_then(Value::as_array)
        .is_some_and(|a| a.iter().any(|m| m.as_str() == Some("mfa")));
    Ok(Verified {
        identity: Identity {
            name: identity_name(sub),
            roles,
            team,
            clearance,
        },
        mfa,
    })
}

/// An RFC 7519 NumericDate as whole seconds: an integer, or a non-negative number with a
/// fraction (allowed by the RFC and sent by some providers), rounded down.
fn numeric_date(v: &Value) -> Option<u64> {
    if let Some(n) = v.as_u64() {
        return Some(n);
    }
    let f = v
        .as_f64()
        .filter(|f| f.is_finite() && *f >= 0.0 && *f < 1.8e19)?;
    // In range by the filter above; the cast rounds toward zero.
    Some(f as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lc_rs::rand::SystemRandom;
    use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};

    fn policy() -> JwtPolicy {
        JwtPolicy {
            issuer: "https://idp.test".into(),
            audience: "warden".into(),
            algorithms: vec!["ES256".into()],
            roles_claim: "roles".into(),
            team_claim: "team".into(),
            clearance_claim: "clearance".into(),
            leeway_secs: 0,
            max_key_set_age_secs: 86_400,
            with_client_certificate: false,
        }
    }

    fn keypair() -> (EcdsaKeyPair, Jwks) {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let kp =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref()).unwrap();
        let pk = kp.public_key().as_ref().to_vec();
        let jwks = serde_json::json!({"keys": [{"kty": "EC", "crv": "P-256", "kid": "k1",
            "x": URL_SAFE_NO_PAD.encode(&pk[1..33]), "y": URL_SAFE_NO_PAD.encode(&pk[33..65])}]});
        (
            kp,
            Jwks::parse(jwks.to_string().as_bytes())
                .unwrap()
                .fetched(1_700_000_000 - 3600),
        )
    }

    fn sign(kp: &EcdsaKeyPair, header: Value, claims: Value) -> String {
        let h = URL_SAFE_NO_PAD.encode(header.to_string());
        let p = URL_SAFE_NO_PAD.encode(claims.to_string());
        let msg = format!("{h}.{p}");
        let sig = kp.sign(&SystemRandom::new(), msg.as_bytes()).unwrap();
        format!("{msg}.{}", URL_SAFE_NO_PAD.encode(sig.as_ref()))
    }

    fn claims(now: u64) -> Value {
        serde_json::json!({"iss": "https://idp.test", "aud": ["warden"], "sub": "alice",
            "exp": now + 60, "nbf": now - 1, "roles": ["analyst"], "team": "red", "clearance": 2,
            "amr": ["pwd", "mfa"]})
    }

    #[test]
    fn good_token_verifies_and_yields_identity() {
        let (kp, jwks) = keypair();
        let now = 1_700_000_000;
        let t = sign(
            &kp,
            serde_json::json!({"alg": "ES256", "kid": "k1"}),
            claims(now),
        );
        let v = verify(&t, &jwks, &policy(), now).unwrap();
        // Subjects have their own namespace: never the directory identity "alice".
        assert_eq!(v.identity.name, "jwt:alice");
        assert_eq!(v.identity.roles, vec!["analyst".to_owned()]);
        assert_eq!(v.identity.clearance, 2);
        assert!(v.mfa);
    }

    #[test]
    fn only_access_token_types_are_accepted() {
        let (kp, jwks) = keypair();
        let now = 1_700_000_000;
        let p = policy();
        let with = |typ: Option<Value>| {
            let mut h = serde_json::json!({"alg": "ES256", "kid": "k1"});
            if let Some(t) = typ {
                h["typ"] = t;
            }
            verify(&sign(&kp, h, claims(now)), &jwks, &p, now)
        };
        with(None).unwrap();
        // RFC 7515 §4.1.9: media types compare without regard to case, and
        // "application/" may be left out.
        for typ in [
            "JWT",
            "jwt",
            "application/jwt",
            "at+jwt",
            "AT+JWT",
            "application/at+jwt",
            "Application/At+JWT",
        ] {
            with(Some(typ.into())).unwrap_or_else(|e| panic!("{typ}: {e}"));
        }
        // Other JWTs the same provider signs must not pass as access tokens (RFC 8725
        // §3.11): DPoP proofs, security event tokens, logout tokens, ID tokens' kin.
        for typ in [
            "dpop+jwt",
            "secevent+jwt",
            "logout+jwt",
            "application/logout+jwt",
            "token-introspection+jwt",
            "",
            "at+jwt ",
        ] {
            assert!(
                matches!(with(Some(typ.into())), Err(JwtError::Type(_))),
                "{typ:?} accepted"
            );
        }
        for typ in [
            serde_json::json!(1),
            serde_json::json!(["JWT"]),
            Value::Null,
        ] {
            assert!(
                matches!(with(Some(typ.clone())), Err(JwtError::Type(_))),
                "{typ} accepted"
            );
        }
    }

    #[test]
    fn refusals() {
        let (kp, jwks) = keypair();
        let now = 1_700_000_000;
        let p = policy();
        let h = serde_json::json!({"alg": "ES256", "kid": "k1"});
        // expired, not yet valid, wrong iss, wrong aud
        let mut c = claims(now);
        c["exp"] = (now - 10).into();
        assert_eq!(
            verify(&sign(&kp, h.clone(), c), &jwks, &p, now).unwrap_err(),
            JwtError::Expired
        );
        let mut c = claims(now);
        c["nbf"] = (now + 100).into();
        assert_eq!(
            verify(&sign(&kp, h.clone(), c), &jwks, &p, now).unwrap_err(),
            JwtError::NotYetValid
        );
        // Issued in the future.
        let mut c = claims(now);
        c["iat"] = (now + 100).into();
        assert_eq!(
            verify(&sign(&kp, h.clone(), c), &jwks, &p, now).unwrap_err(),
            JwtError::NotYetValid
        );
        for (k, bad) in [
            ("iat", serde_json::json!("yesterday")),
            ("exp", serde_json::json!(-5.0)),
        ] {
            let mut c = claims(now);
            c[k] = bad;
            assert_eq!(
                verify(&sign(&kp, h.clone(), c), &jwks, &p, now).unwrap_err(),
                JwtError::Claim(k)
            );
        }
        // Fractional NumericDates (RFC 7519 allows them) are read, rounded down.
        let mut c = claims(now);
        c["iat"] = (now as f64 - 0.5).into();
        c["exp"] = (now as f64 + 60.25).into();
        assert!(verify(&sign(&kp, h.clone(), c), &jwks, &p, now).is_ok());
        let mut c = claims(now);
        c["exp"] = (now as f64 - 0.5).into();
        assert_eq!(
            verify(&sign(&kp, h.clone(), c), &jwks, &p, now).unwrap_err(),
            JwtError::Expired
        );
        let mut c = claims(now);
        c["iss"] = "https://evil".into();
        assert_eq!(
            verify(&sign(&kp, h.clone(), c), &jwks, &p, now).unwrap_err(),
            JwtError::Issuer
        );
        let mut c = claims(now);
        c["aud"] = "other".into();
        assert_eq!(
            verify(&sign(&kp, h.clone(), c), &jwks, &p, now).unwrap_err(),
            JwtError::Audience
        );
        // alg=none with an empty signature
        let none = format!(
            "{}.{}.",
            URL_SAFE_NO_PAD.encode(r#"{"alg":"none"}"#),
            URL_SAFE_NO_PAD.encode(claims(now).to_string())
        );
        assert!(matches!(
            verify(&none, &jwks, &p, now),
            Err(JwtError::Algorithm(_))
        ));
        // HS256 signed with the public key as secret (key confusion)
        let hs = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(r#"{"alg":"HS256","kid":"k1"}"#),
            URL_SAFE_NO_PAD.encode(claims(now).to_string())
        );
        let tag = aws_lc_rs::hmac::sign(
            &aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, kp.public_key().as_ref()),
            hs.as_bytes(),
        );
        let hs = format!("{hs}.{}", URL_SAFE_NO_PAD.encode(tag.as_ref()));
        assert!(matches!(
            verify(&hs, &jwks, &p, now),
            Err(JwtError::Algorithm(_))
        ));
        // tampered payload
        let good = sign(&kp, h.clone(), claims(now));
        let mut parts: Vec<&str> = good.split('.').collect();
        let mut c = claims(now);
        c["sub"] = "mallory".into();
        let forged = URL_SAFE_NO_PAD.encode(c.to_string());
        parts[1] = &forged;
        assert_eq!(
            verify(&parts.join("."), &jwks, &p, now).unwrap_err(),
            JwtError::Signature
        );
        // unknown kid, garbage
        let t = sign(
            &kp,
            serde_json::json!({"alg": "ES256", "kid": "other"}),
            claims(now),
        );
        assert_eq!(
            verify(&t, &jwks, &p, now).unwrap_err(),
            JwtError::UnknownKey
        );
        assert_eq!(
            verify("a.b", &jwks, &p, now).unwrap_err(),
            JwtError::Malformed
        );
        // algorithm not on the allowlist even though implemented
        let t = sign(
            &kp,
            serde_json::json!({"alg": "ES384", "kid": "k1"}),
            claims(now),
        );
        assert!(matches!(
            verify(&t, &jwks, &p, now),
            Err(JwtError::Algorithm(_))
        ));
    }

    #[test]
    fn token_identities_are_namespaced_and_the_prefix_is_reserved() {
        assert_eq!(identity_name("bob"), "jwt:bob");
        for n in ["jwt:bob", "JWT:bob", "Jwt:", "jwt:"] {
            assert!(is_reserved_name(n), "{n}");
        }
        for n in ["bob", "jwt", "jwtbob", "bob:jwt:", "", "é"] {
            assert!(!is_reserved_name(n), "{n}");
        }
        // A subject with a control character is refused.
        let (kp, jwks) = keypair();
        let now = 1_700_000_000;
        let mut c = claims(now);
        c["sub"] = "bob\nforged".into();
        let t = sign(&kp, serde_json::json!({"alg": "ES256", "kid": "k1"}), c);
        assert_eq!(
            verify(&t, &jwks, &policy(), now).unwrap_err(),
            JwtError::Claim("sub")
        );
    }

    /// A member name repeated in the claims or the header is refused (RFC 7519 §4 lets a
    /// parser keep the last, but a relying party or log reader keeping the first would
    /// see another subject than the gateway): the signature being good changes nothing.
    #[test]
    fn duplicate_member_names_in_claims_or_header_are_refused() {
        let (kp, jwks) = keypair();
        let now = 1_700_000_000;
        let sign_raw = |h: &str, c: &str| {
            let msg = format!(
                "{}.{}",
                URL_SAFE_NO_PAD.encode(h),
                URL_SAFE_NO_PAD.encode(c)
            );
            let sig = kp.sign(&SystemRandom::new(), msg.as_bytes()).unwrap();
            format!("{msg}.{}", URL_SAFE_NO_PAD.encode(sig.as_ref()))
        };
        let claims = format!(
            r#"{{"iss":"https://idp.test","aud":"warden","sub":"alice","exp":{},"sub":"admin"}}"#,
            now + 60
        );
        let header = r#"{"alg":"ES256","kid":"k1"}"#;
        // Control: the same token without the repeated `sub` verifies.
        let single = claims.replace(r#","sub":"admin""#, "");
        assert!(verify(&sign_raw(header, &single), &jwks, &policy(), now).is_ok());
        assert_eq!(
            verify(&sign_raw(header, &claims), &jwks, &policy(), now).unwrap_err(),
            JwtError::Malformed
        );
        let header = r#"{"alg":"ES256","kid":"nope","kid":"k1"}"#;
        assert_eq!(
            verify(&sign_raw(header, &single), &jwks, &policy(), now).unwrap_err(),
            JwtError::Malformed
        );
        // Nested objects too (a roles claim read by another party).
        let nested = single.replace(
            r#""sub":"alice""#,
            r#""sub":"alice","realm_access":{"roles":["user"],"roles":["admin"]}"#,
        );
        assert_eq!(
            verify(
                &sign_raw(r#"{"alg":"ES256","kid":"k1"}"#, &nested),
                &jwks,
                &policy(),
                now
            )
            .unwrap_err(),
            JwtError::Malformed
        );
    }

    #[test]
    fn a_key_set_older_than_the_maximum_age_accepts_no_token() {
        let (kp, jwks) = keypair();
        let now = 1_700_000_000;
        let t = sign(
            &kp,
            serde_json::json!({"alg": "ES256", "kid": "k1"}),
            claims(now),
        );
        let p = policy();
        // Fetched exactly max_age ago: still good; one second more: refused.
        let at_limit = jwks.clone().fetched(now - p.max_key_set_age_secs);
        assert!(verify(&t, &at_limit, &p, now).is_ok());
        let stale = jwks.clone().fetched(now - p.max_key_set_age_secs - 1);
        assert_eq!(
            verify(&t, &stale, &p, now).unwrap_err(),
            JwtError::StaleKeySet {
                max_age_secs: 86_400
            }
        );
        // A set never fetched is too old for any maximum age.
        let never = Jwks::parse(b"{\"keys\": []}").unwrap();
        assert_eq!(never.fetched_at(), 0);
        assert!(matches!(
            verify(&t, &never, &p, now),
            Err(JwtError::StaleKeySet { .. })
        ));
    }
}
