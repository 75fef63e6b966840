//! Typed audit events: the only thing other crates append to the log.
//!
//! Each event serializes to one JSON object with a fixed field order: `v` (schema
//! version), `time` (RFC 3339, UTC, milliseconds), `actor`, `event` (the kind), then the
//! kind's fields in declaration order. Optional fields are omitted when absent, so the
//! same event always produces the same bytes.
//!
//! Secrets never appear: prompts, responses and keys are recorded as SHA-256 (or, with
//! a [`ContentPolicy`] HMAC key, HMAC-SHA-256) digests. Storing content is an explicit
//! option, off by default, and then only sealed with AES-256-GCM.

use crate::error::{Error, Result};
use aws_lc_rs::aead::{self, Aad, LessSafeKey, Nonce, UnboundKey};
use aws_lc_rs::hmac;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde::{Deserialize, Serialize};

/// Version of the event schema written by this build.
pub const SCHEMA_VERSION: u32 = 1;

/// One audit event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEvent {
    /// Schema version ([`SCHEMA_VERSION`]).
    pub v: u32,
    /// When it happened: RFC 3339 UTC with milliseconds.
    pub time: String,
    /// Who did it (administrator, identity, `system`).
    pub actor: String,
    /// What happened.
    #[serde(flatten)]
    pub kind: EventKind,
}

/// Outcome of a check recorded in an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The check passed / the action was allowed.
    Pass,
    /// The check failed / the action was refused.
    Fail,
    /// The check could not run (fail closed).
    Error,
}

/// The kinds of events, tagged by `event`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum EventKind {
    /// A model was imported into the vault.
    ModelImport {
        /// Release identifier.
        release: String,
        /// Model name.
        model: String,
        /// SHA-256 (hex) of the model manifest or artifact.
        digest: String,
        /// Bytes imported.
        bytes: u64,
    },
    /// A model was scanned.
    ModelScan {
        /// Model name or path.
        model: String,
        /// SHA-256 (hex) of what was scanned.
        digest: String,
        /// Pass/fail against the policy threshold.
        outcome: Outcome,
        /// Highest finding severity, if any.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        max_severity: Option<String>,
        /// Number of findings.
        findings: u64,
    },
    /// A model signature was verified (or created).
    SignatureVerify {
        /// Model name or path.
        model: String,
        /// SHA-256 (hex) of the manifest.
        digest: String,
        /// Outcome of verification.
        outcome: Outcome,
        /// Signer identity (certificate subject or key fingerprint).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        signer: Option<String>,
        /// Why it failed.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// An administrator approved (or rejected) a release.
    Approval {
        /// Release identifier.
        release: String,
        /// Approving administrator.
        approver: String,
        /// Approved (true) or rejected.
        approved: bool,
        /// Approvals so far / approvals required.
        count: u32,
        /// Approvals required.
        quorum: u32,
    },
    /// A release was promoted (deployed).
    Promotion {
        /// Release identifier.
        release: String,
        /// Environment or stage.
        to: String,
    },
    /// A release was rolled back.
    Rollback {
        /// Release that was replaced.
        from_release: String,
        /// Release now deployed (last known good).
        to_release: String,
        /// Why.
        reason: String,
    },
    /// A release was crypto-shredded.
    Shred {
        /// Release identifier.
        release: String,
        /// Identifier (not material) of the destroyed data key.
        key_id: String,
    },
    /// A release was retired: never approved or deployed again (added by the vault).
    Retire {
        /// Release identifier.
        release: String,
        /// Why, in the retiring administrator's words.
        reason: String,
        /// Deployment directories deleted with it.
        removed: Vec<String>,
        /// Hex Ed25519 signature of the administrator over the retirement statement.
        signature: String,
    },
    /// A release's evaluation gate ran (added by the vault).
    Evaluation {
        /// Release identifier.
        release: String,
        /// SHA-256 (hex) of the evaluation command line.
        command_sha256: String,
        /// Whether the gate passed.
        outcome: Outcome,
        /// The metrics the command reported (JSON text).
        metrics: String,
    },
    /// Deployed files or configuration stopped matching what was deployed (added by the vault).
    TamperDetected {
        /// Release identifier.
        release: String,
        /// Deployment directory.
        dir: String,
        /// Changed, missing or unexpected paths.
        paths: Vec<String>,
        /// What was done: `restore`, `rollback`, `quarantine`.
        action: String,
    },
    /// A decrypted copy of a release was exported (added by the vault).
    Export {
        /// Release identifier.
        release: String,
        /// Destination directory.
        to: String,
    },
    /// A key was created.
    KeyCreated {
        /// Key identifier or fingerprint (never key material).
        key_id: String,
        /// What it is for (`audit`, `kek`, `api`, `admin`).
        purpose: String,
        /// Algorithm.
        algorithm: String,
    },
    /// A key was revoked.
    KeyRevoked {
        /// Key identifier or fingerprint.
        key_id: String,
        /// Why.
        reason: String,
    },
    /// An identity was blocked (or unblocked).
    Block {
        /// Identity.
        identity: String,
        /// Blocked (true) or unblocked.
        blocked: bool,
        /// Why.
        reason: String,
    },
    /// Global lockdown was engaged or lifted.
    Lockdown {
        /// Engaged (true) or lifted.
        engaged: bool,
        /// Why.
        reason: String,
    },
    /// A policy changed.
    PolicyChange {
        /// Policy name.
        policy: String,
        /// SHA-256 (hex) of the previous policy text, if any.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        old_sha256: Option<String>,
        /// SHA-256 (hex) of the new policy text.
        new_sha256: String,
    },
    /// One request through the gateway.
    GatewayRequest(Box<GatewayRecord>),
}

/// A per-request gateway record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GatewayRecord {
    /// Request identifier.
    pub request_id: String,
    /// Authenticated identity (never the API key itself).
    pub identity: String,
    /// Model requested.
    pub model: String,
    /// Allowed or refused.
    pub decision: Outcome,
    /// Why (rule or check that decided).
    pub reason: String,
    /// HTTP status returned.
    pub status: u16,
    /// Request body bytes.
    pub request_bytes: u64,
    /// Response body bytes.
    pub response_bytes: u64,
    /// Total latency in milliseconds.
    pub latency_ms: u64,
    /// Upstream (model server) latency in milliseconds, if forwarded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream_ms: Option<u64>,
    /// Digest of the prompt: `sha256:<hex>` or `hmac-sha256:<hex>`.
    pub prompt_digest: String,
    /// Digest of the response, same form.
    pub response_digest: String,
    /// The prompt sealed with AES-256-GCM, only when the operator enabled it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_sealed: Option<Sealed>,
    /// The response sealed with AES-256-GCM, only when the operator enabled it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_sealed: Option<Sealed>,
}

/// Content sealed with AES-256-GCM.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sealed {
    /// Algorithm, `A256GCM`.
    pub alg: String,
    /// Identifier of the content key (not the key).
    pub kid: String,
    /// Base64 96-bit nonce.
    pub nonce: String,
    /// Base64 ciphertext with tag.
    pub ct: String,
}

/// How secrets and content are recorded. The default records SHA-256 digests only.
#[derive(Default)]
pub struct ContentPolicy {
    hmac_key: Option<hmac::Key>,
    seal: Option<(String, LessSafeKey)>,
}

impl std::fmt::Debug for ContentPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ContentPolicy")
            .field("hmac", &self.hmac_key.is_some())
            .field("seal_content", &self.seal.as_ref().map(|(k, _)| k))
            .finish()
    }
}

impl ContentPolicy {
    /// Digest secrets with HMAC-SHA-256 under `key` instead of plain SHA-256 (so that
    /// low-entropy prompts cannot be confirmed by guessing).
    pub fn with_hmac_key(mut self, key: &[u8]) -> Self {
        self.hmac_key = Some(hmac::Key::new(hmac::HMAC_SHA256, key));
        self
    }

    /// Also store prompts and responses, sealed with AES-256-GCM under a 32-byte key
    /// identified by `kid`. Off by default; `warden posture` reports it.
    pub fn with_sealed_content(mut self, kid: &str, key: &[u8; 32]) -> Result<Self> {
        let k = UnboundKey::new(&aead::AES_256_GCM, key)
            .map_err(|_| Error::Crypto("invalid AES-256-GCM key".into()))?;
        self.seal = Some((kid.to_owned(), LessSafeKey::new(k)));
        Ok(self)
    }

    /// Whether content is stored (sealed).
    pub fn stores_content(&self) -> bool {
        self.seal.is_some()
    }

    /// The digest of a secret: `sha256:<hex>` or `hmac-sha256:<hex>`.
    pub fn digest(&self, secret: &[u8]) -> String {
        match &self.hmac_key {
            Some(k) => format!("hmac-sha256:{}", hex::encode(hmac::sign(k, secret))),
            None => format!("sha256:{}", hex::encode(crate::merkle::sha256(secret))),
        }
    }

    /// Seal content if the policy stores it.
    pub fn seal(&self, content: &[u8], aad: &str) -> Result<Option<Sealed>> {
        let Some((kid, key)) = &self.seal else {
            return Ok(None);
        };
        use aws_lc_rs::rand::SecureRandom;
        let mut nonce = [0u8; 12];
        aws_lc_rs::rand::SystemRandom::new()
            .fill(&mut nonce)
            .map_err(|_| Error::Crypto("no randomness for a nonce".into()))?;
        let mut buf = content.to_vec();
        key.seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(aad.as_bytes()),
            &mut buf,
        )
        .map_err(|_| Error::Crypto("sealing failed".into()))?;
        Ok(Some(Sealed {
            alg: "A256GCM".into(),
            kid: kid.clone(),
            nonce: B64.encode(nonce),
            ct: B64.encode(buf),
        }))
    }

    /// Open sealed content (for an auditor holding the key).
    pub fn open(&self, sealed: &Sealed, aad: &str) -> Result<Vec<u8>> {
        let Some((_, key)) = &self.seal else {
            return Err(Error::Crypto("no content key configured".into()));
        };
        let nonce: [u8; 12] = B64
            .decode(&sealed.nonce)
            .ok()
            .and_then(|n| n.try_into().ok())
            .ok_or_else(|| Error::malformed("sealed content", "bad nonce"))?;
        let mut buf = B64
            .decode(&sealed.ct)
            .map_err(|_| Error::malformed("sealed content", "bad ciphertext encoding"))?;
        let pt = key
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad.as_bytes()),
                &mut buf,
            )
            .map_err(|_| Error::Crypto("sealed content does not authenticate".into()))?;
        Ok(pt.to_vec())
    }
}

/// What the gateway knows about a request, before secrets are digested.
#[derive(Debug, Clone, Default)]
pub struct RequestFacts<'a> {
    /// Request identifier.
    pub request_id: &'a str,
    /// Authenticated identity.
    pub identity: &'a str,
    /// Model requested.
    pub model: &'a str,
    /// Whether the request was allowed.
    pub allowed: bool,
    /// Why.
    pub reason: &'a str,
    /// HTTP status.
    pub status: u16,
    /// Prompt (request body) — digested, never stored in clear.
    pub prompt: &'a [u8],
    /// Response body — digested, never stored in clear.
    pub response: &'a [u8],
    /// Total latency (ms).
    pub latency_ms: u64,
    /// Upstream latency (ms).
    pub upstream_ms: Option<u64>,
}

impl GatewayRecord {
    /// Build a record; prompt and response are digested (and sealed only if the policy
    /// says so).
    pub fn new(f: &RequestFacts<'_>, policy: &ContentPolicy) -> Result<GatewayRecord> {
        Ok(GatewayRecord {
            request_id: f.request_id.to_owned(),
            identity: f.identity.to_owned(),
            model: f.model.to_owned(),
            decision: if f.allowed {
                Outcome::Pass
            } else {
                Outcome::Fail
            },
            reason: f.reason.to_owned(),
            status: f.status,
            request_bytes: f.prompt.len() as u64,
            response_bytes: f.response.len() as u64,
            latency_ms: f.latency_ms,
            upstream_ms: f.upstream_ms,
            prompt_digest: policy.digest(f.prompt),
            response_digest: policy.digest(f.response),
            prompt_sealed: policy.seal(f.prompt, &format!("{}:prompt", f.request_id))?,
            response_sealed: policy.seal(f.response, &format!("{}:response", f.request_id))?,
        })
    }
}

impl AuditEvent {
    /// An event happening now.
    pub fn now(actor: &str, kind: EventKind) -> AuditEvent {
        AuditEvent {
            v: SCHEMA_VERSION,
            time: rfc3339_now(),
            actor: actor.to_owned(),
            kind,
        }
    }

    /// The canonical JSON bytes appended to the log.
    pub fn to_entry(&self) -> Result<Vec<u8>> {
        serde_json::to_vec(self).map_err(|e| Error::malformed("audit event", e.to_string()))
    }

    /// Parse an entry written by [`AuditEvent::to_entry`].
    pub fn from_entry(bytes: &[u8]) -> Result<AuditEvent> {
        serde_json::from_slice(bytes).map_err(|e| Error::malformed("audit event", e.to_string()))
    }
}

/// The current time as RFC 3339 UTC with milliseconds.
pub fn rfc3339_now() -> String {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    rfc3339(d.as_millis() as i64)
}

/// Unix milliseconds as RFC 3339 UTC (`1970-01-01T00:00:00.000Z`).
/// Outside the years 0000-9999, which RFC 3339 cannot express: `@<ms>ms`.
pub fn rfc3339(ms: i64) -> String {
    let (secs, milli) = (ms.div_euclid(1000), ms.rem_euclid(1000));
    ::time::OffsetDateTime::from_unix_timestamp(secs)
        .ok()
        .and_then(|d| {
            d.format(&::time::format_description::well_known::Rfc3339)
                .ok()
        })
        .map_or_else(
            || format!("@{ms}ms"),
            |s| format!("{}.{milli:03}Z", s.trim_end_matches('Z')),
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_field_order_and_round_trip() {
        let e = AuditEvent {
            v: 1,
            time: rfc3339(0),
            actor: "alice".into(),
            kind: EventKind::Promotion {
                release: "r1".into(),
                to: "prod".into(),
            },
        };
        let s = String::from_utf8(e.to_entry().unwrap()).unwrap();
        assert_eq!(
            s,
            r#"{"v":1,"time":"1970-01-01T00:00:00.000Z","actor":"alice","event":"promotion","release":"r1","to":"prod"}"#
        );
        assert_eq!(AuditEvent::from_entry(s.as_bytes()).unwrap(), e);
    }

    #[test]
    fn rfc3339_known_dates() {
        assert_eq!(rfc3339(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(rfc3339(1_795_700_522_123), "2026-11-26T13:42:02.123Z");
    }

    #[test]
    fn gateway_record_never_contains_the_prompt() {
        let prompt = b"my secret prompt with sk-live-123";
        let facts = RequestFacts {
            request_id: "req-1",
            identity: "team-a",
            model: "llama",
            allowed: true,
            reason: "ok",
            status: 200,
            prompt,
            response: b"the answer",
            latency_ms: 12,
            upstream_ms: Some(10),
        };
        let plain = ContentPolicy::default();
        let rec = GatewayRecord::new(&facts, &plain).unwrap();
        let e = AuditEvent::now("gateway", EventKind::GatewayRequest(Box::new(rec.clone())));
        let s = String::from_utf8(e.to_entry().unwrap()).unwrap();
        assert!(
            !s.contains("secret") && !s.contains("sk-live") && !s.contains("answer"),
            "{s}"
        );
        assert!(s.contains(&format!(
            "sha256:{}",
            hex::encode(crate::merkle::sha256(prompt))
        )));
        assert!(rec.prompt_sealed.is_none());

        let keyed = ContentPolicy::default().with_hmac_key(b"k");
        let rec2 = GatewayRecord::new(&facts, &keyed).unwrap();
        assert!(rec2.prompt_digest.starts_with("hmac-sha256:"));
        assert_ne!(rec2.prompt_digest, rec.prompt_digest);

        let sealing = ContentPolicy::default()
            .with_sealed_content("k1", &[7; 32])
            .unwrap();
        let rec3 = GatewayRecord::new(&facts, &sealing).unwrap();
        let s3 = serde_json::to_string(&rec3).unwrap();
        assert!(!s3.contains("secret"), "{s3}");
        let sealed = rec3.prompt_sealed.unwrap();
        assert_eq!(sealing.open(&sealed, "req-1:prompt").unwrap(), prompt);
        assert!(sealing.open(&sealed, "req-2:prompt").is_err());
    }
}
