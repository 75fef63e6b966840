//! hdf5 structural validation (owned by the formats work; placeholder until it lands).

use crate::{Context, Error, Input};

/// True when `prefix` (the first bytes of an input) looks like this format.
pub fn sniff(_prefix: &[u8]) -> bool {
    false
}

/// Validate the structure of one input of this format and report findings.
pub fn scan(_input: &mut dyn Input, _len: u64, cx: &mut Context) -> Result<(), Error> {
    Err(Error::Unsupported {
        path: cx.location.to_string(),
        detail: "hdf5 support not built yet".into(),
    })
}
