//! One module per command group. Each exposes clap argument types and `run*` functions
//! returning the process exit code; errors bubble up as `anyhow::Error` and exit 2.

pub mod audit;
pub mod gateway;
pub mod posture;
pub mod scan;
pub mod screen;
pub mod sign;
pub mod vault;

use anyhow::Context as _;
use std::path::PathBuf;

/// The Warden home: `--home`, else `$WARDEN_HOME` (clap reads both into `Global.home`),
/// else the per-user data directory (`$XDG_DATA_HOME/warden`, `~/.local/share/warden`).
pub fn home_dir(g: &crate::Global) -> anyhow::Result<PathBuf> {
    if let Some(h) = &g.home {
        return Ok(h.clone());
    }
    if let Some(x) = std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
        return Ok(PathBuf::from(x).join("warden"));
    }
    let home = std::env::var_os("HOME")
        .filter(|v| !v.is_empty())
        .context("no Warden home: pass --home DIR or set WARDEN_HOME (HOME is not set either)")?;
    Ok(PathBuf::from(home).join(".local/share/warden"))
}
