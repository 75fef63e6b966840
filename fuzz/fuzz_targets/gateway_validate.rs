//! Fuzz strict request validation with untrusted request bodies for every endpoint. It
//! must never panic, and an accepted body must re-serialise to JSON that validates
//! again to the same model, stream flag and max_tokens (what is forwarded is stable).
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::collections::BTreeMap;
use warden_gateway::config::ValidationConfig;
use warden_gateway::validate::{Endpoint, ParamPolicy, validate};

fuzz_target!(|data: &[u8]| {
    let Some((&ctl, body)) = data.split_first() else {
        return;
    };
    let ep = match ctl & 3 {
        0 => Endpoint::Chat,
        1 => Endpoint::Completions,
        2 => Endpoint::Embeddings,
        _ => Endpoint::Responses,
    };
    let limits = ValidationConfig::default();
    // Half the inputs under a role that forwards unknown fields, whose engine aliases,
    // case folding and server fields have checks of their own.
    let mut roles = BTreeMap::new();
    let names = if ctl & 4 != 0 {
        roles.insert(
            "open".to_owned(),
            warden_gateway::config::RoleConfig {
                max_tokens: None,
                params: [(
                    "unknown".to_owned(),
                    warden_gateway::config::ParamAction::Allow,
                )]
                .into_iter()
                .collect(),
                limits: None,
            },
        );
        vec!["open".to_owned()]
    } else {
        Vec::new()
    };
    let policy = ParamPolicy::for_roles(&names, &roles, &limits);
    if let Ok(v) = validate(ep, body, &policy, &limits) {
        assert!(v.max_tokens <= policy.max_tokens_cap);
        let again = validate(ep, &v.body, &policy, &limits).expect("forwarded body validates");
        assert_eq!(again.model, v.model);
        assert_eq!(again.stream, v.stream);
        assert_eq!(again.max_tokens, v.max_tokens);
    }
});
