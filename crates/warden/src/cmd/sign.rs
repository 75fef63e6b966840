//! `warden sign` and `warden verify`.
//!
//! (Being built in its own issue; until then the commands say so and exit 2.)

use crate::Global;
use std::process::ExitCode;

fn not_yet(what: &str) -> anyhow::Result<ExitCode> {
    anyhow::bail!("{what}: not available in this build yet")
}

/// Arguments of `warden sign`.
#[derive(Debug, clap::Args)]
pub struct SignArgs {
    /// Model file or directory.
    pub model_path: std::path::PathBuf,
}

/// Arguments of `warden verify`.
#[derive(Debug, clap::Args)]
pub struct VerifyArgs {
    /// Model file or directory.
    pub model_path: std::path::PathBuf,
}

/// Run `warden sign`.
pub fn run_sign(_a: SignArgs, _g: &Global) -> anyhow::Result<ExitCode> {
    not_yet("sign")
}

/// Run `warden verify`.
pub fn run_verify(_a: VerifyArgs, _g: &Global) -> anyhow::Result<ExitCode> {
    not_yet("verify")
}
