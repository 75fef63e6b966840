//! Vault policy: the `[vault]` table of `warden.toml`. Every field has a safe default;
//! nothing here can turn two-person control off.

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use warden_scan::Severity;

/// What the integrity monitor does when a deployment no longer matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum OnTamper {
    /// Re-deploy the last known good copy of the same release from the vault.
    #[default]
    Restore,
    /// Re-deploy the previous release deployed to that directory (else restore).
    Rollback,
    /// Move the directory aside and mark the deployment quarantined.
    Quarantine,
}

/// A bound on one evaluation metric.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Threshold {
    /// The metric must be at least this.
    pub min: Option<f64>,
    /// The metric must be at most this.
    pub max: Option<f64>,
}

/// PKCS#11 settings (`[vault.pkcs11]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Pkcs11Settings {
    /// Module path.
    pub module: String,
    /// Token label.
    pub token: String,
    /// Environment variable holding the user PIN.
    pub pin_env: String,
    /// Or: a file holding the PIN (mode 0600).
    pub pin_file: Option<String>,
}

impl Default for Pkcs11Settings {
    fn default() -> Self {
        Pkcs11Settings {
            module: "/usr/lib/softhsm/libsofthsm2.so".into(),
            token: "warden".into(),
            pin_env: "WARDEN_PKCS11_PIN".into(),
            pin_file: None,
        }
    }
}

/// The `[vault]` table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Policy {
    /// `file` (development only) or `pkcs11`.
    pub key_provider: String,
    /// KEK used for every release unless `per_release_kek`.
    pub default_kek: String,
    /// Create (and on shred, destroy) one KEK per release.
    pub per_release_kek: bool,
    /// Refuse imports with a finding at or above this severity.
    pub scan_fail_on: String,
    /// Refuse imports without a verified signature.
    pub require_signature: bool,
    /// Refuse approvals and deployments of releases that have not passed evaluation.
    pub require_evaluation: bool,
    /// Distinct administrators needed for deploy and export (at least 2).
    pub approvals_required: u32,
    /// How long an approval stays valid.
    pub approval_ttl_secs: i64,
    /// Plaintext bytes per sealed segment (1..=4 MiB).
    pub segment_size: u32,
    /// Longest an evaluation command may run.
    pub evaluation_timeout_secs: u64,
    /// Metric bounds for the evaluation gate.
    pub thresholds: BTreeMap<String, Threshold>,
    /// Integrity monitor reaction.
    pub on_tamper: OnTamper,
    /// Integrity monitor period.
    pub monitor_interval_secs: u64,
    /// PKCS#11 provider settings.
    pub pkcs11: Pkcs11Settings,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            key_provider: "file".into(),
            default_kek: "file:default".into(),
            per_release_kek: false,
            scan_fail_on: "medium".into(),
            require_signature: false,
            require_evaluation: true,
            approvals_required: 2,
            approval_ttl_secs: 24 * 3600,
            segment_size: crate::sealed::DEFAULT_SEGMENT,
            evaluation_timeout_secs: 3600,
            thresholds: BTreeMap::new(),
            on_tamper: OnTamper::Restore,
            monitor_interval_secs: 30,
            pkcs11: Pkcs11Settings::default(),
        }
    }
}

impl Policy {
    /// Check the values; a policy that would weaken two-person control is refused.
    pub fn validate(&self) -> Result<()> {
        let bad = |d: String| Err(Error::invalid("warden.toml [vault]", d));
        if self.approvals_required < 2 {
            return bad(format!(
                "approvals_required = {} but two-person control needs at least 2",
                self.approvals_required
            ));
        }
        if self.approval_ttl_secs <= 0 {
            return bad("approval_ttl_secs must be positive".into());
        }
        if !(crate::sealed::MIN_SEGMENT..=crate::sealed::MAX_SEGMENT).contains(&self.segment_size) {
            return bad(format!(
                "segment_size = {} is outside 1 MiB..=4 MiB",
                self.segment_size
            ));
        }
        if !matches!(self.key_provider.as_str(), "file" | "pkcs11") {
            return bad(format!(
                "key_provider = {:?}: expected \"file\" or \"pkcs11\"",
                self.key_provider
            ));
        }
        self.scan_threshold()?;
        Ok(())
    }

    /// `scan_fail_on` as a severity.
    pub fn scan_threshold(&self) -> Result<Severity> {
        Severity::parse(&self.scan_fail_on).ok_or_else(|| {
            Error::invalid(
                "warden.toml [vault]",
                format!(
                    "scan_fail_on = {:?}: expected info, low, medium, high or critical",
                    self.scan_fail_on
                ),
            )
        })
    }
}
