//! Fuzz JWT handling with untrusted bytes: a JWKS document and a bearer token (split at
//! the first 0xFF byte). Neither parsing nor verification may panic, and nothing
//! verifies: the fuzzer holds no private key.
#![no_main]

use libfuzzer_sys::fuzz_target;
use warden_gateway::jwt::{Jwks, JwtPolicy, verify};

fuzz_target!(|data: &[u8]| {
    let (doc, token) = match data.iter().position(|b| *b == 0xFF) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (&data[..0], data),
    };
    // Fresh, so verification goes past the key-set age check.
    let jwks = Jwks::parse(doc).unwrap_or_default().fetched(1_700_000_000);
    let policy = JwtPolicy {
        issuer: "https://issuer.example".into(),
        audience: "warden".into(),
        algorithms: vec!["ES256".into(), "RS256".into(), "EdDSA".into()],
        roles_claim: "roles".into(),
        team_claim: "team".into(),
        clearance_claim: "clearance".into(),
        leeway_secs: 60,
        max_key_set_age_secs: 86_400,
        with_client_certificate: false,
    };
    if let Ok(t) = std::str::from_utf8(token) {
        assert!(verify(t, &jwks, &policy, 1_700_000_000).is_err());
    }
});
