//! `warden scan`.
//!
//! (Being built in its own issue; until then the commands say so and exit 2.)

use crate::Global;
use std::process::ExitCode;

fn not_yet(what: &str) -> anyhow::Result<ExitCode> {
    anyhow::bail!("{what}: not available in this build yet")
}

/// Arguments of `warden scan`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Files or directories to scan.
    pub paths: Vec<std::path::PathBuf>,
}

/// Run `warden scan`.
pub fn run(_a: Args, _g: &Global) -> anyhow::Result<ExitCode> {
    not_yet("scan")
}
