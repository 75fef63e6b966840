//! Release manifests: every file of a model directory with its size and SHA-256, in a
//! canonical JSON form whose SHA-256 is the release's manifest digest.

use crate::error::{Error, Result};
use aws_lc_rs::digest;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::io::Read;
use std::path::{Path, PathBuf};

/// One file of a release.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestFile {
    /// Path relative to the model directory, `/`-separated.
    pub path: String,
    /// Size in bytes.
    pub size: u64,
    /// Hex SHA-256 of the content.
    pub sha256: String,
}

/// The canonical manifest of a release.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// Format marker.
    pub format: String,
    /// Model name.
    pub name: String,
    /// Model version.
    pub version: String,
    /// Files, sorted by path.
    pub files: Vec<ManifestFile>,
    /// Digest of the verified signature's manifest, when the import was signed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signed_digest: Option<String>,
}

impl Manifest {
    /// Canonical bytes: compact JSON with fields in declaration order, files sorted.
    pub fn canonical(&self) -> Result<Vec<u8>> {
        serde_json::to_vec(self).map_err(|e| Error::Crypto(format!("manifest encoding: {e}")))
    }

    /// SHA-256 of the canonical bytes.
    pub fn digest(&self) -> Result<[u8; 32]> {
        let mut out = [0u8; 32];
        out.copy_from_slice(digest::digest(&digest::SHA256, &self.canonical()?).as_ref());
        Ok(out)
    }

    /// Total bytes.
    pub fn total_bytes(&self) -> u64 {
        self.files.iter().map(|f| f.size).sum()
    }

    /// Parse a stored manifest.
    pub fn parse(text: &str) -> Result<Manifest> {
        serde_json::from_str(text)
            .map_err(|e| Error::invalid("stored manifest", format!("not a manifest: {e}")))
    }
}

/// Names and versions become directory names and AAD: keep them plain.
pub fn check_name(what: &str, s: &str) -> Result<()> {
    let ok = !s.is_empty()
        && s.len() <= 128
        && !s.starts_with('.')
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'+'));
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(
            s,
            format!(
                "invalid {what}: use 1-128 letters, digits, '-', '_', '.', '+', not starting with '.'"
            ),
        ))
    }
}

/// Regular files under `dir`, as (relative `/` path, absolute path), sorted. Symbolic
/// links and special files are refused: a sealed model is exactly its bytes.
pub fn list_files(dir: &Path) -> Result<Vec<(String, PathBuf)>> {
    let meta = std::fs::symlink_metadata(dir).map_err(|e| Error::io(dir.display(), e))?;
    if !meta.is_dir() {
        return Err(Error::invalid(
            dir.display().to_string(),
            "not a directory (import takes the model directory)",
        ));
    }
    let mut out = Vec::new();
    let mut stack = vec![(dir.to_path_buf(), String::new())];
    while let Some((abs, rel)) = stack.pop() {
        let rd = std::fs::read_dir(&abs).map_err(|e| Error::io(abs.display(), e))?;
        for entry in rd {
            let entry = entry.map_err(|e| Error::io(abs.display(), e))?;
            let name = entry.file_name();
            let name = name.to_str().ok_or_else(|| {
                Error::invalid(
                    entry.path().display().to_string(),
                    "file name is not valid utf-8",
                )
            })?;
            let r = if rel.is_empty() {
                name.to_owned()
            } else {
                format!("{rel}/{name}")
            };
            let ft = entry
                .file_type()
                .map_err(|e| Error::io(entry.path().display(), e))?;
            if ft.is_dir() {
                stack.push((entry.path(), r));
            } else if ft.is_file() {
                out.push((r, entry.path()));
            } else {
                return Err(Error::invalid(
                    entry.path().display().to_string(),
                    "symbolic links and special files are not allowed in a model directory",
                ));
            }
        }
    }
    out.sort();
    if out.is_empty() {
        return Err(Error::invalid(
            dir.display().to_string(),
            "the directory holds no files",
        ));
    }
    Ok(out)
}

/// SHA-256 of a file, streaming; `progress` gets byte counts as they are read.
pub fn sha256_file(path: &Path, progress: &(dyn Fn(u64) + Sync)) -> Result<([u8; 32], u64)> {
    let mut f = std::fs::File::open(path).map_err(|e| Error::io(path.display(), e))?;
    let mut ctx = digest::Context::new(&digest::SHA256);
    let mut buf = vec![0u8; 1 << 20];
    let mut n = 0u64;
    loop {
        let k = f.read(&mut buf).map_err(|e| Error::io(path.display(), e))?;
        if k == 0 {
            break;
        }
        ctx.update(buf.get(..k).unwrap_or_default());
        n += k as u64;
        progress(k as u64);
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    Ok((out, n))
}

/// Hash every file (in parallel across files) into a manifest.
pub fn build(
    name: &str,
    version: &str,
    files: &[(String, PathBuf)],
    progress: &(dyn Fn(u64) + Sync),
) -> Result<Manifest> {
    let hashed = files
        .par_iter()
        .map(|(rel, abs)| {
            let (d, size) = sha256_file(abs, progress)?;
            Ok(ManifestFile {
                path: rel.clone(),
                size,
                sha256: hex::encode(d),
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Manifest {
        format: "warden-manifest-v1".into(),
        name: name.to_owned(),
        version: version.to_owned(),
        files: hashed,
        signed_digest: None,
    })
}
