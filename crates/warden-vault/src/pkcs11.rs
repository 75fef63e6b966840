//! The PKCS#11 key provider: KEKs are AES-256 keys generated on a token (an HSM, or
//! SoftHSM2 in tests) as non-extractable, sensitive and private objects; data keys are
//! wrapped and unwrapped on the token with `CKM_AES_KEY_WRAP_PAD` (RFC 5649 on SoftHSM2;
//! `cryptoki` has no `CKM_AES_KEY_WRAP_KWP` constant).
//!
//! The module is loaded and initialised once per process and never finalised, so several
//! providers (and tests) can share it. One logged-in session per provider, behind a mutex.

use crate::error::{Error, Result};
use crate::key::{DataKey, Kek, KeyProvider, Posture, check_label};
use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::RvError;
use cryptoki::mechanism::Mechanism;
use cryptoki::mechanism::eddsa::{EddsaParams, EddsaSignatureScheme};
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::types::AuthPin;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use zeroize::Zeroizing;

/// `CKM_AES_KEY_WRAP_KWP` (PKCS#11 3.0), to report whether the token lists it.
const CKM_AES_KEY_WRAP_KWP: u64 = 0x0000_210B;

/// Where to find the token and how to log in.
#[derive(Clone)]
pub struct Pkcs11Config {
    /// Path of the PKCS#11 module (e.g. `/usr/lib/softhsm/libsofthsm2.so`).
    pub module: PathBuf,
    /// Token label.
    pub token: String,
    /// User PIN.
    pub pin: Zeroizing<String>,
}

impl std::fmt::Debug for Pkcs11Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pkcs11Config")
            .field("module", &self.module)
            .field("token", &self.token)
            .field("pin", &"(redacted)")
            .finish()
    }
}

/// A provider over one token.
#[derive(Debug, Clone)]
pub struct Pkcs11Provider {
    session: Arc<Mutex<Session>>,
    token: String,
    module: PathBuf,
    kwp_listed: bool,
}

fn words(debug: &str) -> String {
    let mut out = String::new();
    for (i, c) in debug.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push(' ');
        }
        out.push(c.to_ascii_lowercase());
    }
    out
}

/// A PKCS#11 failure in words, without type names.
fn p11(what: &str, e: &cryptoki::error::Error) -> String {
    match e {
        cryptoki::error::Error::Pkcs11(rv, _f) => {
            let cause = match rv {
                RvError::PinIncorrect => "incorrect pin".to_owned(),
                RvError::MechanismInvalid => "mechanism not supported by the token".to_owned(),
                RvError::WrappedKeyInvalid
                | RvError::EncryptedDataInvalid
                | RvError::WrappedKeyLenRange => {
                    "wrapped key rejected: wrong key-encryption key or modified wrapped key"
                        .to_owned()
                }
                other => words(&format!("{other:?}")),
            };
            format!("{what}: {cause}")
        }
        cryptoki::error::Error::LibraryLoading(l) => format!("{what}: cannot load module: {l}"),
        other => format!("{what}: {}", other.to_string().to_lowercase()),
    }
}

fn context(module: &Path) -> Result<Pkcs11> {
    static CTX: OnceLock<Mutex<HashMap<PathBuf, Pkcs11>>> = OnceLock::new();
    let map = CTX.get_or_init(|| Mutex::new(HashMap::new()));
    let mut map = map.lock().map_err(|_| Error::Kek {
        kek: "pkcs11".into(),
        detail: "module table poisoned".into(),
    })?;
    if let Some(c) = map.get(module) {
        return Ok(c.clone());
    }
    let shown = module.display().to_string();
    if !module.exists() {
        return Err(Error::Kek {
            kek: "pkcs11".into(),
            detail: format!("{shown}: module not found (install softhsm2 or set the module path)"),
        });
    }
    let ctx = Pkcs11::new(module).map_err(|e| Error::Kek {
        kek: "pkcs11".into(),
        detail: p11(&shown, &e),
    })?;
    match ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
        Ok(()) => {}
        Err(cryptoki::error::Error::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
        Err(e) => {
            return Err(Error::Kek {
                kek: "pkcs11".into(),
                detail: p11(&format!("{shown}: initialise"), &e),
            });
        }
    }
    map.insert(module.to_path_buf(), ctx.clone());
    Ok(ctx)
}

impl Pkcs11Provider {
    /// Load the module, find the token by label, open a session and log in.
    pub fn connect(cfg: &Pkcs11Config) -> Result<Self> {
        let err = |detail: String| Error::Kek {
            kek: format!("pkcs11 token {}", cfg.token),
            detail,
        };
        let ctx = context(&cfg.module)?;
        let slots = ctx
            .get_slots_with_token()
            .map_err(|e| err(p11("list slots", &e)))?;
        let mut found = None;
        for s in slots {
            let info = ctx
                .get_token_info(s)
                .map_err(|e| err(p11("token info", &e)))?;
            if info.label().trim_end() == cfg.token {
                found = Some(s);
                break;
            }
        }
        let slot = found.ok_or_else(|| err("no token with this label".into()))?;
        let kwp_listed = ctx
            .get_mechanism_list(slot)
            .map(|l| l.iter().any(|m| u64::from(*m) == CKM_AES_KEY_WRAP_KWP))
            .unwrap_or(false);
        let session = ctx
            .open_rw_session(slot)
            .map_err(|e| err(p11("open session", &e)))?;
        let pin = AuthPin::from(cfg.pin.as_str().to_owned());
        match session.login(UserType::User, Some(&pin)) {
            Ok(()) | Err(cryptoki::error::Error::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => {}
            Err(e) => return Err(err(p11("log in", &e))),
        }
        Ok(Pkcs11Provider {
            session: Arc::new(Mutex::new(session)),
            token: cfg.token.clone(),
            module: cfg.module.clone(),
            kwp_listed,
        })
    }

    fn find(&self, s: &Session, label: &str) -> Result<Option<ObjectHandle>> {
        let objs = s
            .find_objects(&[
                Attribute::Class(ObjectClass::SECRET_KEY),
                Attribute::Label(label.as_bytes().to_vec()),
            ])
            .map_err(|e| Error::Kek {
                kek: format!("pkcs11:{label}"),
                detail: p11("find key", &e),
            })?;
        Ok(objs.into_iter().next())
    }

    /// Whether the token lists `CKM_AES_KEY_WRAP_KWP` (informational).
    pub fn kwp_listed(&self) -> bool {
        self.kwp_listed
    }

    /// The token's label.
    pub fn token(&self) -> &str {
        &self.token
    }

    fn find_class(
        &self,
        s: &Session,
        class: ObjectClass,
        label: &str,
    ) -> Result<Option<ObjectHandle>> {
        let objs = s
            .find_objects(&[
                Attribute::Class(class),
                Attribute::Label(label.as_bytes().to_vec()),
            ])
            .map_err(|e| Error::Kek {
                kek: format!("pkcs11:{label}"),
                detail: p11("find key", &e),
            })?;
        Ok(objs.into_iter().next())
    }

    /// Generate an Ed25519 signing key pair on the token under `label`: the private key
    /// is a token object, private, sensitive, never extractable, usable only to sign.
    /// Returns the raw 32-byte public key.
    pub fn generate_signing_key(&self, label: &str) -> Result<Vec<u8>> {
        check_label(label)?;
        let id = format!("pkcs11:{label}");
        let err = |what: &str, e: &cryptoki::error::Error| Error::Kek {
            kek: id.clone(),
            detail: p11(what, e),
        };
        let s = lock(&self.session, &id)?;
        if self
            .find_class(&s, ObjectClass::PRIVATE_KEY, label)?
            .is_some()
        {
            return Err(Error::Kek {
                kek: id,
                detail: "already exists on the token".into(),
            });
        }
        let common = |mut v: Vec<Attribute>| {
            v.push(Attribute::Token(true));
            v.push(Attribute::Label(label.as_bytes().to_vec()));
            v.push(Attribute::Id(label.as_bytes().to_vec()));
            v
        };
        let (public, _private) = s
            .generate_key_pair(
                &Mechanism::EccEdwardsKeyPairGen,
                &common(vec![
                    Attribute::KeyType(KeyType::EC_EDWARDS),
                    Attribute::EcParams(ED25519_OID_DER.to_vec()),
                    Attribute::Verify(true),
                    Attribute::Private(false),
                ]),
                &common(vec![
                    Attribute::KeyType(KeyType::EC_EDWARDS),
                    Attribute::Private(true),
                    Attribute::Sensitive(true),
                    Attribute::Extractable(false),
                    Attribute::Sign(true),
                    Attribute::Decrypt(false),
                    Attribute::Derive(false),
                    Attribute::Unwrap(false),
                ]),
            )
            .map_err(|e| err("generate Ed25519 key pair", &e))?;
        let point = s
            .get_attributes(public, &[AttributeType::EcPoint])
            .map_err(|e| err("read public key", &e))?;
        let raw = point.into_iter().find_map(|a| match a {
            Attribute::EcPoint(p) => ed25519_point(&p),
            _ => None,
        });
        raw.ok_or_else(|| Error::Kek {
            kek: format!("pkcs11:{label}"),
            detail: "token returned no Ed25519 public key".into(),
        })
    }

    /// Destroy the signing key pair `label` (both halves); missing halves are fine.
    pub fn destroy_signing_key(&self, label: &str) -> Result<()> {
        let id = format!("pkcs11:{label}");
        let s = lock(&self.session, &id)?;
        for class in [ObjectClass::PRIVATE_KEY, ObjectClass::PUBLIC_KEY] {
            if let Some(h) = self.find_class(&s, class, label)? {
                s.destroy_object(h).map_err(|e| Error::Kek {
                    kek: id.clone(),
                    detail: p11("destroy", &e),
                })?;
            }
        }
        Ok(())
    }

    /// Sign `msg` with the Ed25519 private key `label` on the token (pure EdDSA).
    pub fn sign_with(&self, label: &str, msg: &[u8]) -> Result<Vec<u8>> {
        let id = format!("pkcs11:{label}");
        let s = lock(&self.session, &id)?;
        let key = self
            .find_class(&s, ObjectClass::PRIVATE_KEY, label)?
            .ok_or_else(|| Error::Kek {
                kek: id.clone(),
                detail: format!("no such signing key on token {:?}", self.token),
            })?;
        s.sign(
            &Mechanism::Eddsa(EddsaParams::new(EddsaSignatureScheme::Pure)),
            key,
            msg,
        )
        .map_err(|e| Error::Kek {
            kek: id,
            detail: p11("sign", &e),
        })
    }
}

/// DER of the Ed25519 curve OID 1.3.101.112, as `CKA_EC_PARAMS`.
const ED25519_OID_DER: [u8; 5] = [0x06, 0x03, 0x2b, 0x65, 0x70];

/// The raw 32-byte Ed25519 public key from `CKA_EC_POINT` (raw, or DER OCTET STRING).
fn ed25519_point(p: &[u8]) -> Option<Vec<u8>> {
    match p {
        [0x04, 0x20, rest @ ..] if rest.len() == 32 => Some(rest.to_vec()),
        _ if p.len() == 32 => Some(p.to_vec()),
        _ => None,
    }
}

impl KeyProvider for Pkcs11Provider {
    fn posture(&self) -> Posture {
        Posture {
            provider: "pkcs11",
            development_only: false,
            description: format!(
                "key-encryption keys are non-extractable AES-256 keys on PKCS#11 token {:?} ({}); data keys wrapped on the token with CKM_AES_KEY_WRAP_PAD",
                self.token,
                self.module.display()
            ),
        }
    }

    fn create(&self, label: &str) -> Result<Box<dyn Kek>> {
        check_label(label)?;
        let id = format!("pkcs11:{label}");
        let s = lock(&self.session, &id)?;
        if self.find(&s, label)?.is_some() {
            return Err(Error::Kek {
                kek: id,
                detail: "already exists on the token".into(),
            });
        }
        s.generate_key(
            &Mechanism::AesKeyGen,
            &[
                Attribute::Class(ObjectClass::SECRET_KEY),
                Attribute::KeyType(KeyType::AES),
                Attribute::ValueLen(32u64.into()),
                Attribute::Token(true),
                Attribute::Private(true),
                Attribute::Sensitive(true),
                Attribute::Extractable(false),
                Attribute::Wrap(true),
                Attribute::Unwrap(true),
                Attribute::Encrypt(false),
                Attribute::Decrypt(false),
                Attribute::Label(label.as_bytes().to_vec()),
            ],
        )
        .map_err(|e| Error::Kek {
            kek: id.clone(),
            detail: p11("generate key", &e),
        })?;
        drop(s);
        Ok(Box::new(Pkcs11Kek {
            id,
            label: label.to_owned(),
            provider: self.clone(),
        }))
    }

    fn open(&self, id: &str) -> Result<Box<dyn Kek>> {
        let label = id.strip_prefix("pkcs11:").ok_or_else(|| Error::Kek {
            kek: id.to_owned(),
            detail: "not a pkcs11 key id (configure the provider that created it)".into(),
        })?;
        check_label(label)?;
        let s = lock(&self.session, id)?;
        if self.find(&s, label)?.is_none() {
            return Err(Error::Kek {
                kek: id.to_owned(),
                detail: format!("no such key on token {:?} (destroyed?)", self.token),
            });
        }
        drop(s);
        Ok(Box::new(Pkcs11Kek {
            id: id.to_owned(),
            label: label.to_owned(),
            provider: self.clone(),
        }))
    }
}

fn lock<'a>(m: &'a Mutex<Session>, id: &str) -> Result<std::sync::MutexGuard<'a, Session>> {
    m.lock().map_err(|_| Error::Kek {
        kek: id.to_owned(),
        detail: "session poisoned by an earlier failure".into(),
    })
}

/// A KEK on the token.
#[derive(Debug)]
struct Pkcs11Kek {
    id: String,
    label: String,
    provider: Pkcs11Provider,
}

impl Pkcs11Kek {
    fn err(&self, what: &str, e: &cryptoki::error::Error) -> Error {
        Error::Kek {
            kek: self.id.clone(),
            detail: p11(what, e),
        }
    }

    fn handle(&self, s: &Session) -> Result<ObjectHandle> {
        self.provider
            .find(s, &self.label)?
            .ok_or_else(|| Error::Kek {
                kek: self.id.clone(),
                detail: format!(
                    "no such key on token {:?} (destroyed?)",
                    self.provider.token
                ),
            })
    }
}

/// Template of the short-lived session object that carries a data key.
fn session_key_template() -> Vec<Attribute> {
    vec![
        Attribute::Class(ObjectClass::SECRET_KEY),
        Attribute::KeyType(KeyType::AES),
        Attribute::Token(false),
        Attribute::Private(true),
        Attribute::Sensitive(false),
        Attribute::Extractable(true),
    ]
}

impl Kek for Pkcs11Kek {
    fn id(&self) -> &str {
        &self.id
    }

    fn wrap(&self, key: &DataKey) -> Result<Vec<u8>> {
        let s = lock(&self.provider.session, &self.id)?;
        let kek = self.handle(&s)?;
        let mut t = session_key_template();
        t.push(Attribute::Value(key.as_bytes().to_vec()));
        let obj = s.create_object(&t);
        // The template held a copy of the key: wipe it before anything else.
        for a in &mut t {
            if let Attribute::Value(v) = a {
                zeroize::Zeroize::zeroize(v);
            }
        }
        let obj = obj.map_err(|e| self.err("load data key", &e))?;
        let wrapped = s.wrap_key(&Mechanism::AesKeyWrapPad, kek, obj);
        let _ = s.destroy_object(obj);
        wrapped.map_err(|e| self.err("wrap", &e))
    }

    fn unwrap(&self, wrapped: &[u8]) -> Result<DataKey> {
        let s = lock(&self.provider.session, &self.id)?;
        let kek = self.handle(&s)?;
        let obj = s
            .unwrap_key(
                &Mechanism::AesKeyWrapPad,
                kek,
                wrapped,
                &session_key_template(),
            )
            .map_err(|e| self.err("unwrap", &e))?;
        let attrs = s.get_attributes(obj, &[AttributeType::Value]);
        let _ = s.destroy_object(obj);
        let attrs = attrs.map_err(|e| self.err("read unwrapped key", &e))?;
        for a in attrs {
            if let Attribute::Value(v) = a {
                let v = Zeroizing::new(v);
                return DataKey::from_bytes(&v);
            }
        }
        Err(Error::Kek {
            kek: self.id.clone(),
            detail: "token returned no key value".into(),
        })
    }

    fn destroy(&self) -> Result<()> {
        let s = lock(&self.provider.session, &self.id)?;
        let h = self.handle(&s)?;
        s.destroy_object(h).map_err(|e| self.err("destroy", &e))?;
        if self.provider.find(&s, &self.label)?.is_some() {
            return Err(Error::Kek {
                kek: self.id.clone(),
                detail: "key still present on the token after destroy".into(),
            });
        }
        Ok(())
    }
}
