//! `warden serve`, `warden keys`, `warden block`, `warden lockdown`, `warden policy`.
//!
//! (Being built in its own issue; until then the commands say so and exit 2.)

use crate::Global;
use std::process::ExitCode;

fn not_yet(what: &str) -> anyhow::Result<ExitCode> {
    anyhow::bail!("{what}: not available in this build yet")
}

/// Arguments of `warden serve`.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {}

/// Subcommands of `warden keys`.
#[derive(Debug, clap::Subcommand)]
pub enum KeysCommand {
    /// Create an API key.
    Create,
}

/// Arguments of `warden block`.
#[derive(Debug, clap::Args)]
pub struct BlockArgs {
    /// Identity to block.
    pub identity: String,
}

/// Arguments of `warden lockdown`.
#[derive(Debug, clap::Args)]
pub struct LockdownArgs {
    /// Lift the lockdown instead.
    #[arg(long)]
    pub lift: bool,
}

/// Subcommands of `warden policy`.
#[derive(Debug, clap::Subcommand)]
pub enum PolicyCommand {
    /// Validate policies.
    Check,
}

/// Run `warden serve`.
pub fn run_serve(_a: ServeArgs, _g: &Global) -> anyhow::Result<ExitCode> {
    not_yet("serve")
}

/// Run `warden keys`.
pub fn run_keys(_c: KeysCommand, _g: &Global) -> anyhow::Result<ExitCode> {
    not_yet("keys")
}

/// Run `warden block`.
pub fn run_block(_a: BlockArgs, _g: &Global) -> anyhow::Result<ExitCode> {
    not_yet("block")
}

/// Run `warden lockdown`.
pub fn run_lockdown(_a: LockdownArgs, _g: &Global) -> anyhow::Result<ExitCode> {
    not_yet("lockdown")
}

/// Run `warden policy`.
pub fn run_policy(_c: PolicyCommand, _g: &Global) -> anyhow::Result<ExitCode> {
    not_yet("policy")
}
