//! `warden sign` and `warden verify`: OpenSSF Model Signing v1 signatures, compatible
//! with the `model_signing` reference tool. All format and crypto work lives in
//! `warden-sign`; this module resolves paths the way the reference CLI does, draws
//! the progress bar, writes the signature atomically and maps errors to exit codes
//! (0 verified, 1 verification failed, 2 unusable input).

use crate::Global;
use crate::ui;
use anyhow::Context as _;
use std::io::Write as _;
use std::path::{Component, Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use warden_sign::{
    Certificates, Error, HashAlgorithm, HashOptions, Method, Progress, SignerIdentity, SigningKey,
    Trust, VerificationKey, VerifyOptions,
};

/// Draw a progress bar only for models larger than this.
const PROGRESS_THRESHOLD: u64 = 1 << 30;

/// Content hash choices of `--hash`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum HashChoice {
    /// SHA-256 (default, what every verifier supports).
    Sha256,
    /// BLAKE2b-512.
    Blake2b,
    /// BLAKE3 (files serialization only).
    Blake3,
}

/// Output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Default)]
pub enum OutputFormat {
    /// For people.
    #[default]
    Text,
    /// One JSON document on standard output.
    Json,
}

/// Arguments of `warden sign`.
#[derive(Debug, clap::Args)]
pub struct SignArgs {
    /// Model file or directory.
    pub model_path: PathBuf,
    /// PEM private key (ECDSA P-256, P-384 or P-521; unencrypted).
    #[arg(long, value_name = "PRIVATE.pem")]
    pub key: PathBuf,
    /// Where to write the signature.
    #[arg(long, value_name = "OUT", default_value = "model.sig")]
    pub signature: PathBuf,
    /// Signing certificate (PEM) for certificate mode.
    #[arg(long, value_name = "LEAF.pem")]
    pub certificate: Option<PathBuf>,
    /// Certificates to embed after the leaf (intermediates, root), PEM; repeatable.
    #[arg(long, value_name = "CHAIN.pem", requires = "certificate")]
    pub certificate_chain: Vec<PathBuf>,
    /// Leave a path out of the signature (relative to the current directory, like
    /// model_signing); repeatable.
    #[arg(long = "ignore-path", value_name = "PATH")]
    pub ignore_paths: Vec<PathBuf>,
    /// Sign `.git`, `.gitattributes`, `.github`, `.gitignore` too.
    #[arg(long)]
    pub no_ignore_git_paths: bool,
    /// Follow symbolic links to files instead of refusing them.
    #[arg(long)]
    pub allow_symlinks: bool,
    /// Use the shards serialization (one digest per shard) instead of files.
    #[arg(long)]
    pub shards: bool,
    /// Shard size in bytes (with --shards).
    #[arg(long, value_name = "BYTES", default_value_t = warden_sign::manifest::DEFAULT_SHARD_SIZE, requires = "shards")]
    pub shard_size: u64,
    /// Content hash.
    #[arg(long, value_enum, default_value_t = HashChoice::Sha256)]
    pub hash: HashChoice,
    /// Output format.
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub format: OutputFormat,
}

/// Arguments of `warden verify`.
#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("trust").required(true).args(["public_key", "certificate_chain"])))]
pub struct VerifyArgs {
    /// Model file or directory.
    pub model_path: PathBuf,
    /// The signature file (Sigstore bundle).
    #[arg(long, value_name = "SIG")]
    pub signature: PathBuf,
    /// PEM public key the model must be signed with.
    #[arg(long, value_name = "PUB.pem")]
    pub public_key: Option<PathBuf>,
    /// Trusted root (and intermediate) certificates, PEM; repeatable.
    #[arg(long, value_name = "ROOTS.pem")]
    pub certificate_chain: Vec<PathBuf>,
    /// Accept files on disk that the signature does not list.
    #[arg(long)]
    pub ignore_unsigned_files: bool,
    /// Leave a path out of the check (relative to the current directory); repeatable.
    #[arg(long = "ignore-path", value_name = "PATH")]
    pub ignore_paths: Vec<PathBuf>,
    /// Check `.git`, `.gitattributes`, `.github`, `.gitignore` too.
    #[arg(long)]
    pub no_ignore_git_paths: bool,
    /// Follow symbolic links to files instead of refusing them.
    #[arg(long)]
    pub allow_symlinks: bool,
    /// Output format.
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub format: OutputFormat,
}

/// Lexically normalise an absolute path (`.` and `..` removed), for paths that may
/// not exist.
fn normalise(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other.as_os_str()),
        }
    }
    out
}

fn absolute(p: &Path) -> anyhow::Result<PathBuf> {
    if let Ok(c) = std::fs::canonicalize(p) {
        return Ok(c);
    }
    let abs = if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir()
            .context("current directory")?
            .join(p)
    };
    // Canonicalise the longest existing parent so that symlinked directories resolve.
    if let (Some(parent), Some(name)) = (abs.parent(), abs.file_name())
        && let Ok(c) = std::fs::canonicalize(parent)
    {
        return Ok(c.join(name));
    }
    Ok(normalise(&abs))
}

/// Paths given on the command line, relative to the model root; those outside the
/// model are dropped (as the reference CLI does).
fn resolve_ignore_paths(model: &Path, paths: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
    let root = absolute(model)?;
    let mut out = Vec::new();
    for p in paths {
        let abs = absolute(p)?;
        if let Ok(rel) = abs.strip_prefix(&root)
            && !rel.as_os_str().is_empty()
        {
            out.push(rel.to_path_buf());
        }
    }
    Ok(out)
}

fn progress_factory() -> warden_sign::ProgressFactory {
    Arc::new(|total: u64| -> Option<Progress> {
        if total < PROGRESS_THRESHOLD {
            return None;
        }
        let bar = ui::progress_bytes(total, "hashing");
        Some(Arc::new(move |n: u64| bar.inc(n)))
    })
}

/// Write `bytes` to `path` through a temporary file in the same directory, so that a
/// failure never leaves a half-written signature.
fn write_atomically(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .with_context(|| format!("{}: not a file name", path.display()))?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(".tmp-{}", std::process::id()));
    let tmp = dir.join(tmp_name);
    let result = (|| -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(e).with_context(|| path.display().to_string());
    }
    Ok(())
}

fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS.get(u).copied().unwrap_or("B"))
    }
}

/// Run `warden sign`.
pub fn run_sign(a: SignArgs, _g: &Global) -> anyhow::Result<ExitCode> {
    let key = SigningKey::from_pem_file(&a.key)?;
    let chain = match &a.certificate {
        Some(leaf) => {
            let mut files = vec![leaf.clone()];
            files.extend(a.certificate_chain.iter().cloned());
            Some(Certificates::from_pem_files(&files)?)
        }
        None => None,
    };
    let hash = match a.hash {
        HashChoice::Sha256 => HashAlgorithm::Sha256,
        HashChoice::Blake2b => HashAlgorithm::Blake2b,
        HashChoice::Blake3 => HashAlgorithm::Blake3,
    };
    let method = if a.shards {
        if hash == HashAlgorithm::Blake3 {
            anyhow::bail!("--hash blake3 is only defined for the files serialization");
        }
        if a.shard_size == 0 {
            anyhow::bail!("--shard-size must be positive");
        }
        Method::Shards {
            shard_size: a.shard_size,
        }
    } else {
        Method::Files
    };
    let mut to_ignore = a.ignore_paths.clone();
    to_ignore.push(a.signature.clone());
    let options = HashOptions {
        method,
        hash,
        allow_symlinks: a.allow_symlinks,
        ignore_paths: resolve_ignore_paths(&a.model_path, &to_ignore)?,
        ignore_git_paths: !a.no_ignore_git_paths,
        only: None,
    };
    let plan = warden_sign::plan(&a.model_path, &options)?;
    let total = plan.total_bytes();
    let started = std::time::Instant::now();
    let manifest = plan.hash(progress_factory()(total))?;
    let signer = match &chain {
        Some(chain) => warden_sign::Signer::Certificate { key: &key, chain },
        None => warden_sign::Signer::Key(&key),
    };
    let bundle = warden_sign::sign(&manifest, signer)?;
    write_atomically(&a.signature, &bundle)?;
    let digest = hex::encode(manifest.digest());
    match a.format {
        OutputFormat::Text => println!(
            "{} {}: {} resources, {} hashed in {:.2?}; sha256:{digest} -> {}",
            ui::paint(anstyle::Style::new().bold(), "signed"),
            a.model_path.display(),
            manifest.entries().len(),
            human_bytes(total),
            started.elapsed(),
            a.signature.display()
        ),
        OutputFormat::Json => println!(
            "{}",
            serde_json::json!({
                "status": "signed",
                "model": a.model_path,
                "signature": a.signature,
                "digest": { "sha256": digest },
                "resources": manifest.entries().len(),
                "bytes": total,
                "mode": if chain.is_some() { "certificate" } else { "key" },
                "curve": key.curve().name(),
            })
        ),
    }
    Ok(ExitCode::SUCCESS)
}

/// Run `warden verify`.
pub fn run_verify(a: VerifyArgs, _g: &Global) -> anyhow::Result<ExitCode> {
    let bytes = std::fs::read(&a.signature).with_context(|| a.signature.display().to_string())?;
    let key;
    let roots;
    let trust = match &a.public_key {
        Some(p) => {
            key = VerificationKey::from_pem_file(p)?;
            Trust::Key(&key)
        }
        None => {
            roots = Certificates::from_pem_files(&a.certificate_chain)?;
            Trust::Roots(&roots)
        }
    };
    let mut to_ignore = a.ignore_paths.clone();
    to_ignore.push(a.signature.clone());
    let options = VerifyOptions {
        ignore_paths: resolve_ignore_paths(&a.model_path, &to_ignore)?,
        include_git_paths: a.no_ignore_git_paths,
        allow_symlinks: a.allow_symlinks,
        ignore_unsigned_files: a.ignore_unsigned_files,
        time: None,
        progress: Some(progress_factory()),
    };
    match warden_sign::verify(&a.model_path, &bytes, trust, &options) {
        Ok(v) => {
            let signer = match v.signer() {
                SignerIdentity::Key { hint } => format!("key {hint}"),
                SignerIdentity::Certificate { .. } => {
                    "a certificate chained to a trusted root".into()
                }
                _ => "an unknown signer".into(),
            };
            match a.format {
                OutputFormat::Text => println!(
                    "{} {}: {} resources match, signed by {signer}; sha256:{}",
                    ui::paint(
                        anstyle::Style::new()
                            .bold()
                            .fg_color(Some(anstyle::AnsiColor::Green.into())),
                        "verified"
                    ),
                    a.model_path.display(),
                    v.entries().len(),
                    v.digest_hex()
                ),
                OutputFormat::Json => println!(
                    "{}",
                    serde_json::json!({
                        "status": "verified",
                        "model": a.model_path,
                        "signature": a.signature,
                        "digest": { "sha256": v.digest_hex() },
                        "resources": v.entries().len(),
                        "signer": signer,
                    })
                ),
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(e) if e.is_verdict() => {
            let message = match &e {
                Error::Mismatch { .. } => e.to_string(),
                other => format!("{}: {other}", a.signature.display()),
            };
            if a.format == OutputFormat::Json {
                let differences: Vec<String> = match &e {
                    Error::Mismatch { differences, .. } => {
                        differences.iter().map(ToString::to_string).collect()
                    }
                    _ => Vec::new(),
                };
                println!(
                    "{}",
                    serde_json::json!({
                        "status": "failed",
                        "model": a.model_path,
                        "signature": a.signature,
                        "error": message,
                        "differences": differences,
                    })
                );
            }
            ui::print_error(&anyhow::anyhow!(message));
            Ok(ExitCode::from(1))
        }
        Err(e @ Error::Bundle(_)) => Err(anyhow::anyhow!("{}: {e}", a.signature.display())),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ignore_paths_resolve_inside_the_model_only() {
        let dir = tempfile::tempdir().unwrap();
        let model = dir.path().join("m");
        std::fs::create_dir_all(model.join("sub")).unwrap();
        let got = resolve_ignore_paths(
            &model,
            &[
                model.join("sub"),
                model.join("not-yet.sig"),
                dir.path().join("outside.sig"),
                model.join("sub/../x"),
            ],
        )
        .unwrap();
        assert_eq!(
            got,
            vec![
                PathBuf::from("sub"),
                PathBuf::from("not-yet.sig"),
                PathBuf::from("x")
            ]
        );
    }
}
