//! Sealed-format test vectors: generated from fixed keys, checked against
//! `tests/vectors/sealed-v1.json` and `docs/sealed-format.md`, and decrypted a second time
//! from the specification alone (HKDF, nonce layout, AAD) without the crate's reader.
//!
//! Regenerate after an intentional format change with `WARDEN_REGEN_VECTORS=1`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers may panic"
)]

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use aws_lc_rs::{digest, hkdf};
use std::collections::BTreeMap;
use std::io::Cursor;
use warden_vault::key::{DataKey, kwp_unwrap, kwp_wrap};
use warden_vault::sealed::{self, Binding, Header, SealOptions, SealedFile};

const PLAIN_LEN: usize = (1 << 20) + 100;

fn inputs() -> (Vec<u8>, Vec<u8>, [u8; 32], Vec<u8>) {
    let kek: Vec<u8> = (0x40u8..0x60).collect();
    let data_key: Vec<u8> = (0u8..32).collect();
    let mut salt = [0u8; 32];
    for (i, b) in salt.iter_mut().enumerate() {
        *b = 0x80 + i as u8;
    }
    let pt: Vec<u8> = (0..PLAIN_LEN).map(|i| (i % 251) as u8).collect();
    (kek, data_key, salt, pt)
}

fn sha(b: &[u8]) -> [u8; 32] {
    let mut o = [0u8; 32];
    o.copy_from_slice(digest::digest(&digest::SHA256, b).as_ref());
    o
}

fn generate() -> (BTreeMap<&'static str, String>, Vec<u8>) {
    let (kek, dk, salt, pt) = inputs();
    let wrapped = kwp_wrap(&kek, &dk).unwrap();
    let header = Header {
        segment_size: 1 << 20,
        plaintext_len: PLAIN_LEN as u64,
        salt,
        plaintext_sha256: sha(&pt),
        manifest_digest: sha(b"example manifest"),
        name: "example-model".into(),
        version: "1.0.0".into(),
        path: "model.safetensors".into(),
        kek_id: "file:vectors".into(),
        data_key_id: "dk-vectors".into(),
        wrapped_key: wrapped.clone(),
    };
    let key = DataKey::from_bytes(&dk).unwrap();
    let mut out = Vec::new();
    sealed::seal(
        &key,
        &header,
        &pt[..],
        &mut out,
        SealOptions {
            verify_digest: true,
        },
        &|_| {},
    )
    .unwrap();
    let body = header.encode_body().unwrap();
    let hl = body.len() + 16;
    let seg0_tag = &out[hl + (1 << 20)..hl + (1 << 20) + 16];
    let last_tag = &out[out.len() - 16..];
    let mut v = BTreeMap::new();
    v.insert("kek", hex::encode(&kek));
    v.insert("data_key", hex::encode(&dk));
    v.insert("salt", hex::encode(salt));
    v.insert("plaintext", "byte i = i mod 251, 1048676 bytes".to_owned());
    v.insert("wrapped_key", hex::encode(&wrapped));
    v.insert("header", hex::encode(&out[..hl]));
    v.insert("header_tag", hex::encode(&out[hl - 16..hl]));
    v.insert("segment0_tag", hex::encode(seg0_tag));
    v.insert("segment1_tag", hex::encode(last_tag));
    v.insert("sealed_len", out.len().to_string());
    v.insert("sealed_sha256", hex::encode(sha(&out)));
    (v, out)
}

fn expected_path() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors/sealed-v1.json")
}

#[test]
fn vectors_match_the_published_values() {
    let (v, _) = generate();
    let json = serde_json::to_string_pretty(&v).unwrap() + "\n";
    if std::env::var_os("WARDEN_REGEN_VECTORS").is_some() {
        std::fs::create_dir_all(expected_path().parent().unwrap()).unwrap();
        std::fs::write(expected_path(), &json).unwrap();
    }
    let want = std::fs::read_to_string(expected_path()).unwrap();
    assert_eq!(
        json, want,
        "sealed output changed: the format is not stable"
    );

    // The specification shows the same values.
    let doc = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/sealed-format.md");
    let doc = std::fs::read_to_string(doc).unwrap();
    let doc_flat: String = doc.split_whitespace().collect();
    for (k, val) in &v {
        if *k == "plaintext" {
            continue;
        }
        assert!(
            doc_flat.contains(val.as_str()),
            "docs/sealed-format.md lacks {k} = {val}"
        );
    }
}

#[test]
fn vectors_decrypt_from_the_specification_alone() {
    let (v, out) = generate();
    let (kek, _dk, salt, pt) = inputs();
    // 1. Unwrap the data key (RFC 5649 under the KEK).
    let dk = kwp_unwrap(&kek, &hex::decode(&v["wrapped_key"]).unwrap()).unwrap();
    // 2. Header: 14 bytes of magic, version, length; body up to length - 16; then the tag.
    assert_eq!(&out[..8], b"WARDSEAL");
    let hl = u32::from_be_bytes(out[10..14].try_into().unwrap()) as usize;
    let body = &out[..hl - 16];
    // 3. HKDF-SHA256(salt, data key, info) -> 32-byte key || 7-byte prefix.
    struct L(usize);
    impl hkdf::KeyType for L {
        fn len(&self) -> usize {
            self.0
        }
    }
    let mut okm = [0u8; 39];
    hkdf::Salt::new(hkdf::HKDF_SHA256, &salt)
        .extract(dk.as_bytes())
        .expand(&[b"warden-seal-v1 file key"], L(39))
        .unwrap()
        .fill(&mut okm)
        .unwrap();
    let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &okm[..32]).unwrap());
    let nonce = |i: u32, flag: u8| {
        let mut n = [0u8; 12];
        n[..7].copy_from_slice(&okm[32..]);
        n[7..11].copy_from_slice(&i.to_be_bytes());
        n[11] = flag;
        Nonce::assume_unique_for_key(n)
    };
    // 4. Header tag: GCM over an empty plaintext, AAD = header body, flag 0x02.
    let mut tag = out[hl - 16..hl].to_vec();
    key.open_in_place(nonce(0, 2), Aad::from(body), &mut tag)
        .unwrap();
    // 5. Segments: AAD = SHA-256(header body); flag 0 except 1 on the last.
    let aad = sha(body);
    let seg = 1 << 20;
    let mut s0 = out[hl..hl + seg + 16].to_vec();
    let p0 = key
        .open_in_place(nonce(0, 0), Aad::from(aad), &mut s0)
        .unwrap();
    assert_eq!(p0, &pt[..seg]);
    let mut s1 = out[hl + seg + 16..].to_vec();
    let p1 = key
        .open_in_place(nonce(1, 1), Aad::from(aad), &mut s1)
        .unwrap();
    assert_eq!(p1, &pt[seg..]);
    // And the crate's reader agrees.
    let mut f = SealedFile::open(
        Cursor::new(&out),
        "vectors",
        &Binding {
            name: "example-model".into(),
            version: "1.0.0".into(),
            path: "model.safetensors".into(),
            manifest_digest: sha(b"example manifest"),
        },
        &dk,
    )
    .unwrap();
    assert_eq!(
        f.read_range(seg as u64 - 3, 10).unwrap(),
        &pt[seg - 3..seg + 7]
    );
}
