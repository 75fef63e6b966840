//! `warden screen` and `warden alerts`.
//!
//! (Being built in its own issue; until then the commands say so and exit 2.)

use crate::Global;
use std::process::ExitCode;

fn not_yet(what: &str) -> anyhow::Result<ExitCode> {
    anyhow::bail!("{what}: not available in this build yet")
}

/// Arguments of `warden screen`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Prompts, one per line (`-` for standard input).
    pub file: Option<std::path::PathBuf>,
}

/// Arguments of `warden alerts`.
#[derive(Debug, clap::Args)]
pub struct AlertsArgs {}

/// Run `warden screen`.
pub fn run(_a: Args, _g: &Global) -> anyhow::Result<ExitCode> {
    not_yet("screen")
}

/// Run `warden alerts`.
pub fn run_alerts(_a: AlertsArgs, _g: &Global) -> anyhow::Result<ExitCode> {
    not_yet("alerts")
}
