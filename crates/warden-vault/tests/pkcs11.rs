//! The PKCS#11 provider against a real SoftHSM2 token.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

mod support;

use warden_vault::key::{DataKey, KeyProvider, kwp_unwrap};
use warden_vault::pkcs11::{Pkcs11Config, Pkcs11Provider};
use zeroize::Zeroizing;

fn provider(token: &str, pin: &str) -> Result<Pkcs11Provider, warden_vault::Error> {
    Pkcs11Provider::connect(&Pkcs11Config {
        module: support::module(),
        token: token.into(),
        pin: Zeroizing::new(pin.into()),
    })
}

#[test]
fn wrap_unwrap_destroy_on_softhsm() {
    let Some(token) = support::softhsm("wrap_unwrap_destroy_on_softhsm") else {
        return;
    };
    let p = provider(&token, support::PIN).unwrap();
    assert!(!p.posture().development_only);
    let kek = p.create("release-a").unwrap();
    assert_eq!(kek.id(), "pkcs11:release-a");
    assert!(
        p.create("release-a")
            .unwrap_err()
            .to_string()
            .contains("already exists")
    );

    let key = DataKey::generate().unwrap();
    let wrapped = kek.wrap(&key).unwrap();
    assert_ne!(&wrapped[..], key.as_bytes());
    let again = p
        .open("pkcs11:release-a")
        .unwrap()
        .unwrap(&wrapped)
        .unwrap();
    assert_eq!(again.as_bytes(), key.as_bytes());

    // Another KEK cannot unwrap it; a modified wrapped key is rejected.
    let other = p.create("release-b").unwrap();
    let err = other.unwrap(&wrapped).unwrap_err().to_string();
    assert!(
        err.starts_with("key-encryption key pkcs11:release-b: unwrap:"),
        "{err}"
    );
    let mut bad = wrapped.clone();
    bad[3] ^= 1;
    assert!(kek.unwrap(&bad).is_err());

    // Destroy: the KEK is gone from the token and the key is unrecoverable.
    kek.destroy().unwrap();
    let err = p.open("pkcs11:release-a").unwrap_err().to_string();
    assert!(err.contains("no such key on token"), "{err}");
    assert!(kek.unwrap(&wrapped).is_err());
}

#[test]
fn kek_is_not_extractable() {
    let Some(token) = support::softhsm("kek_is_not_extractable") else {
        return;
    };
    let p = provider(&token, support::PIN).unwrap();
    p.create("k").unwrap();
    // pkcs11-tool (OpenSC) reads the object's attributes as any other client would.
    let out = std::process::Command::new("pkcs11-tool")
        .args([
            "--module",
            support::module().to_str().unwrap(),
            "--token-label",
            &token,
        ])
        .args([
            "--login",
            "--pin",
            support::PIN,
            "--list-objects",
            "--type",
            "secrkey",
        ])
        .output()
        .expect("pkcs11-tool (opensc) missing: run .ci/setup");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("label:      k"), "{text}");
    assert!(
        text.contains("sensitive") && text.contains("never extractable"),
        "{text}"
    );
    // And reading the value fails.
    let out = std::process::Command::new("pkcs11-tool")
        .args([
            "--module",
            support::module().to_str().unwrap(),
            "--token-label",
            &token,
        ])
        .args([
            "--login",
            "--pin",
            support::PIN,
            "--read-object",
            "--type",
            "secrkey",
            "--label",
            "k",
        ])
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "the KEK value could be read off the token"
    );
}

#[test]
fn token_wrapping_is_rfc5649() {
    // SoftHSM2's CKM_AES_KEY_WRAP_PAD is RFC 5649: a key wrapped on the token with a
    // session KEK whose value we know unwraps with the software RFC 5649 implementation.
    let Some(token) = support::softhsm("token_wrapping_is_rfc5649") else {
        return;
    };
    use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
    use cryptoki::mechanism::Mechanism;
    use cryptoki::object::{Attribute, KeyType, ObjectClass};
    use cryptoki::session::UserType;
    let ctx = Pkcs11::new(support::module()).unwrap();
    let _ = ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK));
    let slot = ctx
        .get_slots_with_token()
        .unwrap()
        .into_iter()
        .find(|s| ctx.get_token_info(*s).unwrap().label().trim_end() == token)
        .unwrap();
    let s = ctx.open_rw_session(slot).unwrap();
    s.login(UserType::User, Some(&support::PIN.to_owned().into()))
        .unwrap();
    let kek_bytes: Vec<u8> = (100u8..132).collect();
    let key_bytes: Vec<u8> = (1u8..33).collect();
    let secret = |v: Vec<u8>, wrap: bool| {
        vec![
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::KeyType(KeyType::AES),
            Attribute::Token(false),
            Attribute::Sensitive(false),
            Attribute::Extractable(true),
            Attribute::Wrap(wrap),
            Attribute::Value(v),
        ]
    };
    let kek = s.create_object(&secret(kek_bytes.clone(), true)).unwrap();
    let key = s.create_object(&secret(key_bytes.clone(), false)).unwrap();
    let wrapped = s.wrap_key(&Mechanism::AesKeyWrapPad, kek, key).unwrap();
    assert_eq!(wrapped.len(), 40);
    let sw = kwp_unwrap(&kek_bytes, &wrapped).unwrap();
    assert_eq!(sw.as_bytes(), &key_bytes[..]);
}

#[test]
fn wrong_pin_and_token_are_clear_errors() {
    let Some(token) = support::softhsm("wrong_pin_and_token_are_clear_errors") else {
        return;
    };
    let err = provider(&token, "0000").unwrap_err().to_string();
    assert_eq!(
        err,
        format!("key-encryption key pkcs11 token {token}: log in: incorrect pin")
    );
    let err = provider("no-such-token", support::PIN)
        .unwrap_err()
        .to_string();
    assert!(err.contains("no token with this label"), "{err}");
}

#[test]
fn admin_key_on_the_token_signs_and_never_leaves_it() {
    let Some(token) = support::softhsm("admin_key_on_the_token_signs_and_never_leaves_it") else {
        return;
    };
    use cryptoki::object::{Attribute, AttributeType, ObjectClass};
    use warden_vault::admin::AdminKey;
    let p = provider(&token, support::PIN).unwrap();
    let (key, public) = AdminKey::generate_on_token("bob", &p, "admin-bob").unwrap();
    assert!(key.on_a_token());
    assert_eq!(public.len(), 32);
    assert!(
        AdminKey::generate_on_token("bob", &p, "admin-bob")
            .unwrap_err()
            .to_string()
            .contains("already exists")
    );
    // Signed on the token, verified in software with the public key recorded at creation.
    let msg = b"warden-approval-v1\nname=m\n";
    let sig = key.sign(msg).unwrap();
    aws_lc_rs::signature::UnparsedPublicKey::new(&aws_lc_rs::signature::ED25519, &public)
        .verify(msg, &sig)
        .unwrap();
    assert!(
        aws_lc_rs::signature::UnparsedPublicKey::new(&aws_lc_rs::signature::ED25519, &public)
            .verify(b"another statement", &sig)
            .is_err()
    );
    // A second client session sees a private, sensitive, never-extractable key whose
    // value it cannot read.
    use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
    use cryptoki::session::UserType;
    let ctx = Pkcs11::new(support::module()).unwrap();
    let _ = ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK));
    let slot = ctx
        .get_slots_with_token()
        .unwrap()
        .into_iter()
        .find(|s| ctx.get_token_info(*s).unwrap().label().trim_end() == token)
        .unwrap();
    let s = ctx.open_ro_session(slot).unwrap();
    // (Login state is per application: the provider's session already logged in.)
    match s.login(UserType::User, Some(&support::PIN.to_owned().into())) {
        Ok(())
        | Err(cryptoki::error::Error::Pkcs11(cryptoki::error::RvError::UserAlreadyLoggedIn, _)) => {
        }
        Err(e) => panic!("{e}"),
    }
    let h = s
        .find_objects(&[
            Attribute::Class(ObjectClass::PRIVATE_KEY),
            Attribute::Label(b"admin-bob".to_vec()),
        ])
        .unwrap()[0];
    let attrs = s
        .get_attributes(
            h,
            &[
                AttributeType::Private,
                AttributeType::Sensitive,
                AttributeType::Extractable,
                AttributeType::NeverExtractable,
                AttributeType::Token,
            ],
        )
        .unwrap();
    for a in &attrs {
        match a {
            Attribute::Private(v)
            | Attribute::Sensitive(v)
            | Attribute::NeverExtractable(v)
            | Attribute::Token(v) => assert!(*v, "{a:?}"),
            Attribute::Extractable(v) => assert!(!*v, "{a:?}"),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(attrs.len(), 5);
    let value = s
        .get_attributes(h, &[AttributeType::Value])
        .unwrap_or_default();
    assert!(
        !value.iter().any(|a| matches!(a, Attribute::Value(_))),
        "the private key value was readable: {value:?}"
    );
    // Destroyed, it no longer signs.
    p.destroy_signing_key("admin-bob").unwrap();
    let err = key.sign(msg).unwrap_err().to_string();
    assert!(err.contains("no such signing key"), "{err}");
}
