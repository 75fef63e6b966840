//! `warden audit …`.
//!
//! (Being built in its own issue; until then the commands say so and exit 2.)

use crate::Global;
use std::process::ExitCode;

fn not_yet(what: &str) -> anyhow::Result<ExitCode> {
    anyhow::bail!("{what}: not available in this build yet")
}

/// Subcommands of `warden audit`.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Verify a log.
    Verify,
}

/// Run `warden audit`.
pub fn run(_c: Command, _g: &Global) -> anyhow::Result<ExitCode> {
    not_yet("audit")
}
