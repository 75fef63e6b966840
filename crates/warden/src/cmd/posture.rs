//! `warden posture`.
//!
//! (Being built in its own issue; until then the commands say so and exit 2.)

use crate::Global;
use std::process::ExitCode;

fn not_yet(what: &str) -> anyhow::Result<ExitCode> {
    anyhow::bail!("{what}: not available in this build yet")
}

/// Arguments of `warden posture`.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Run `warden posture`.
pub fn run(_a: Args, _g: &Global) -> anyhow::Result<ExitCode> {
    not_yet("posture")
}
