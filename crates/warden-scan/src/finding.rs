//! The finding model shared by every format parser: rule ids, severities and locations.

use serde::Serialize;
use std::fmt;

/// How bad a finding is. Ordered: `Info < Low < Medium < High < Critical`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Worth knowing; never fails a scan at the default threshold.
    Info,
    /// Unusual but not known to be exploitable.
    Low,
    /// Outside the allowlist or structurally suspicious; fails at the default threshold.
    Medium,
    /// Likely malicious or a loader-confusion trick.
    High,
    /// Code execution, file/network/process access, import machinery.
    Critical,
}

impl Severity {
    /// Lower-case name as used on the command line and in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }

    /// Parse a name as accepted by `--fail-on`.
    pub fn parse(s: &str) -> Option<Severity> {
        match s.to_ascii_lowercase().as_str() {
            "info" => Some(Severity::Info),
            "low" => Some(Severity::Low),
            "medium" => Some(Severity::Medium),
            "high" => Some(Severity::High),
            "critical" => Some(Severity::Critical),
            _ => None,
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a finding was made: the file on disk, the chain of archive members inside
/// it (outermost first), and a byte offset within the innermost member when known.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Location {
    /// Path of the file on disk, as given or as found while walking a directory.
    pub path: String,
    /// Archive member names from the outermost archive inward; empty for a plain file.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub members: Vec<String>,
    /// Byte offset inside the innermost member (or the file), if one applies.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub offset: Option<u64>,
}

impl Location {
    /// A location naming a whole file.
    pub fn file(path: impl Into<String>) -> Self {
        Location {
            path: path.into(),
            members: Vec::new(),
            offset: None,
        }
    }

    /// The same location inside archive member `name`.
    pub fn member(&self, name: impl Into<String>) -> Self {
        let mut members = self.members.clone();
        members.push(name.into());
        Location {
            path: self.path.clone(),
            members,
            offset: None,
        }
    }

    /// The same location at byte `offset`.
    pub fn at(&self, offset: u64) -> Self {
        Location {
            offset: Some(offset),
            ..self.clone()
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.path)?;
        for m in &self.members {
            write!(f, "!{m}")?;
        }
        if let Some(o) = self.offset {
            write!(f, "@{o}")?;
        }
        Ok(())
    }
}

/// One thing the scanner wants a human to look at.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// Stable rule id, e.g. `WS101`. Never reused for a different meaning.
    pub rule: &'static str,
    /// Severity after block-list escalation.
    pub severity: Severity,
    /// Where.
    pub location: Location,
    /// Plain-language explanation naming the offending construct.
    pub message: String,
}
