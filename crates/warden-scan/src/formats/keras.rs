//! Keras `.keras` archives (placeholder until the formats work lands).

pub(crate) mod json;

use crate::{Context, Error};

/// Check one member of a zip archive that may belong to a Keras `.keras` file
/// (`config.json`, `metadata.json`). Returns `Ok(true)` when the member was a Keras
/// member and has been checked.
pub fn scan_archive_member(_name: &str, _data: &[u8], _cx: &mut Context) -> Result<bool, Error> {
    Ok(false)
}
