//! Data keys and key-encryption-key (KEK) providers.
//!
//! Each release has one random 256-bit data key. It is stored only wrapped by a KEK held
//! by a [`KeyProvider`]: [`FileProvider`] (a 0600 key file; development only) or
//! [`crate::pkcs11::Pkcs11Provider`] (a non-extractable AES key on an HSM). A provider
//! creates, opens and destroys KEKs by id; a KEK wraps and unwraps data keys.

use crate::error::{Error, Result};
use aws_lc_rs::key_wrap::{AES_256, AesKek, KeyWrapPadded};
use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use zeroize::Zeroizing;

/// A release's 256-bit data key. Zeroed on drop; never printed.
pub struct DataKey(Zeroizing<[u8; 32]>);

impl DataKey {
    /// A fresh random key.
    pub fn generate() -> Result<Self> {
        let mut k = Zeroizing::new([0u8; 32]);
        aws_lc_rs::rand::fill(k.as_mut_slice())
            .map_err(|_| Error::Crypto("random generator failed".into()))?;
        Ok(DataKey(k))
    }

    /// A key from raw bytes (unwrapping, test vectors). Must be 32 bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let mut k = Zeroizing::new([0u8; 32]);
        if bytes.len() != 32 {
            return Err(Error::Crypto(format!(
                "data key must be 32 bytes, got {}",
                bytes.len()
            )));
        }
        k.copy_from_slice(bytes);
        Ok(DataKey(k))
    }

    /// The raw key, for the cipher and the KEK only.
    pub fn as_bytes(&self) -> &[u8] {
        self.0.as_slice()
    }

    /// A non-secret id for the key: hex of the first 8 bytes of SHA-256("warden data key id" ‖ key).
    pub fn id(&self) -> String {
        let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
        ctx.update(b"warden data key id");
        ctx.update(self.as_bytes());
        let d = ctx.finish();
        format!(
            "dk-{}",
            hex::encode(d.as_ref().get(..8).unwrap_or_default())
        )
    }
}

impl fmt::Debug for DataKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DataKey(redacted)")
    }
}

/// How a key provider protects keys, for `warden posture` and `warden init`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Posture {
    /// Provider name (`file`, `pkcs11`).
    pub provider: &'static str,
    /// True when the provider is not fit for production.
    pub development_only: bool,
    /// One sentence for people.
    pub description: String,
}

/// One key-encryption key.
pub trait Kek: Send + Sync + fmt::Debug {
    /// Stable id, stored with every wrapped key (`file:<label>`, `pkcs11:<label>`).
    fn id(&self) -> &str;
    /// Wrap a data key (AES key wrap with padding, RFC 5649).
    fn wrap(&self, key: &DataKey) -> Result<Vec<u8>>;
    /// Unwrap a data key; fails when the wrapped bytes were made by another KEK or modified.
    fn unwrap(&self, wrapped: &[u8]) -> Result<DataKey>;
    /// Destroy the KEK itself: every key it wrapped becomes unrecoverable.
    fn destroy(&self) -> Result<()>;
}

/// Creates, opens and describes KEKs.
pub trait KeyProvider: Send + Sync + fmt::Debug {
    /// How keys are protected.
    fn posture(&self) -> Posture;
    /// Create a new KEK named `label` (fails if it exists).
    fn create(&self, label: &str) -> Result<Box<dyn Kek>>;
    /// Open an existing KEK by id.
    fn open(&self, id: &str) -> Result<Box<dyn Kek>>;
}

/// Labels become file names and token labels: keep them plain.
pub(crate) fn check_label(label: &str) -> Result<()> {
    let ok = !label.is_empty()
        && label.len() <= 128
        && label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'@' | b'+'))
        && !label.starts_with('.');
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(
            label,
            "key label must be 1-128 characters of letters, digits, '-', '_', '.', '@', '+'",
        ))
    }
}

/// KEKs as 0600 files of 32 random bytes in one directory. **Development only**: the key
/// sits on the same disk as the ciphertext, protected by file permissions alone.
#[derive(Debug, Clone)]
pub struct FileProvider {
    dir: PathBuf,
}

impl FileProvider {
    /// Provider over `dir` (created 0700 if missing).
    pub fn new(dir: &Path) -> Result<Self> {
        create_private_dir(dir)?;
        Ok(FileProvider {
            dir: dir.to_path_buf(),
        })
    }

    fn path_of(&self, label: &str) -> PathBuf {
        self.dir.join(format!("kek-{label}.key"))
    }
}

/// Create `dir` (and parents) with mode 0700 for the last component.
pub(crate) fn create_private_dir(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir.display(), e))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| Error::io(dir.display(), e))?;
    }
    Ok(())
}

/// Write `bytes` to a new file readable by its owner only; refuses to overwrite.
pub(crate) fn write_private_file(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(0o600);
    }
    let mut f = o.open(path).map_err(|e| Error::io(path.display(), e))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .map_err(|e| Error::io(path.display(), e))
}

impl KeyProvider for FileProvider {
    fn posture(&self) -> Posture {
        Posture {
            provider: "file",
            development_only: true,
            description: format!(
                "key-encryption keys are plain files in {} (mode 0600) on the same host as the sealed models: development only; use the pkcs11 provider (an HSM) in production",
                self.dir.display()
            ),
        }
    }

    fn create(&self, label: &str) -> Result<Box<dyn Kek>> {
        check_label(label)?;
        let key = DataKey::generate()?;
        let path = self.path_of(label);
        write_private_file(&path, key.as_bytes()).map_err(|e| match e {
            Error::Io { source, .. } if source.kind() == std::io::ErrorKind::AlreadyExists => {
                Error::Kek {
                    kek: format!("file:{label}"),
                    detail: "already exists".into(),
                }
            }
            other => other,
        })?;
        Ok(Box::new(FileKek {
            id: format!("file:{label}"),
            path,
            key,
        }))
    }

    fn open(&self, id: &str) -> Result<Box<dyn Kek>> {
        let label = id.strip_prefix("file:").ok_or_else(|| Error::Kek {
            kek: id.to_owned(),
            detail: "not a file provider key id (configure the provider that created it)".into(),
        })?;
        check_label(label)?;
        let path = self.path_of(label);
        let bytes = Zeroizing::new(std::fs::read(&path).map_err(|e| Error::Kek {
            kek: id.to_owned(),
            detail: if e.kind() == std::io::ErrorKind::NotFound {
                format!("{}: key file not found (destroyed?)", path.display())
            } else {
                format!("{}: {e}", path.display())
            },
        })?);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path)
                .map_err(|e| Error::io(path.display(), e))?
                .permissions()
                .mode();
            if mode & 0o077 != 0 {
                return Err(Error::Kek {
                    kek: id.to_owned(),
                    detail: format!(
                        "{}: key file is readable by group or others (mode {:o}); chmod 600 it",
                        path.display(),
                        mode & 0o777
                    ),
                });
            }
        }
        let key = DataKey::from_bytes(&bytes).map_err(|_| Error::Kek {
            kek: id.to_owned(),
            detail: format!("{}: key file is not 32 bytes", path.display()),
        })?;
        Ok(Box::new(FileKek {
            id: id.to_owned(),
            path,
            key,
        }))
    }
}

/// A file-backed KEK.
#[derive(Debug)]
struct FileKek {
    id: String,
    path: PathBuf,
    key: DataKey,
}

impl Kek for FileKek {
    fn id(&self) -> &str {
        &self.id
    }

    fn wrap(&self, key: &DataKey) -> Result<Vec<u8>> {
        kwp_wrap(self.key.as_bytes(), key.as_bytes()).map_err(|d| Error::Kek {
            kek: self.id.clone(),
            detail: d,
        })
    }

    fn unwrap(&self, wrapped: &[u8]) -> Result<DataKey> {
        kwp_unwrap(self.key.as_bytes(), wrapped).map_err(|d| Error::Kek {
            kek: self.id.clone(),
            detail: d,
        })
    }

    fn destroy(&self) -> Result<()> {
        // Overwrite before unlinking, so the key is not left in the file's old blocks
        // (best effort: journaling and SSD remapping can keep copies; the HSM does not).
        let zeros = [0u8; 32];
        if let Ok(mut f) = std::fs::OpenOptions::new().write(true).open(&self.path) {
            let _ = f.write_all(&zeros).and_then(|()| f.sync_all());
        }
        std::fs::remove_file(&self.path).map_err(|e| Error::Kek {
            kek: self.id.clone(),
            detail: format!("{}: cannot delete key file: {e}", self.path.display()),
        })
    }
}

/// RFC 5649 AES key wrap with padding under a 256-bit KEK.
pub fn kwp_wrap(kek: &[u8], key: &[u8]) -> std::result::Result<Vec<u8>, String> {
    let k = AesKek::new(&AES_256, kek).map_err(|_| "invalid key-encryption key".to_owned())?;
    let mut out = vec![0u8; key.len() + 16];
    let n = k
        .wrap_with_padding(key, &mut out)
        .map_err(|_| "key wrap failed".to_owned())?
        .len();
    out.truncate(n);
    Ok(out)
}

/// RFC 5649 unwrap; the integrity check fails for another KEK or modified bytes.
pub fn kwp_unwrap(kek: &[u8], wrapped: &[u8]) -> std::result::Result<DataKey, String> {
    let k = AesKek::new(&AES_256, kek).map_err(|_| "invalid key-encryption key".to_owned())?;
    let mut out = Zeroizing::new(vec![0u8; wrapped.len()]);
    let n = k
        .unwrap_with_padding(wrapped, &mut out)
        .map_err(|_| {
            "cannot unwrap the data key: wrong key-encryption key or modified wrapped key"
                .to_owned()
        })?
        .len();
    DataKey::from_bytes(out.get(..n).unwrap_or_default()).map_err(|e| e.to_string())
}
