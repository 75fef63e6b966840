//! `warden init`, `warden admin`, `warden vault`, `warden release`, `warden monitor`.
//!
//! (Being built in its own issue; until then the commands say so and exit 2.)

use crate::Global;
use std::process::ExitCode;

fn not_yet(what: &str) -> anyhow::Result<ExitCode> {
    anyhow::bail!("{what}: not available in this build yet")
}

/// Arguments of `warden init`.
#[derive(Debug, clap::Args)]
pub struct InitArgs {}

/// Subcommands of `warden admin`.
#[derive(Debug, clap::Subcommand)]
pub enum AdminCommand {
    /// Add an administrator.
    Add,
}

/// Subcommands of `warden vault`.
#[derive(Debug, clap::Subcommand)]
pub enum VaultCommand {
    /// Import a model.
    Import,
}

/// Subcommands of `warden release`.
#[derive(Debug, clap::Subcommand)]
pub enum ReleaseCommand {
    /// Approve a release.
    Approve,
}

/// Arguments of `warden monitor`.
#[derive(Debug, clap::Args)]
pub struct MonitorArgs {}

/// Run `warden init`.
pub fn run_init(_a: InitArgs, _g: &Global) -> anyhow::Result<ExitCode> {
    not_yet("init")
}

/// Run `warden admin`.
pub fn run_admin(_c: AdminCommand, _g: &Global) -> anyhow::Result<ExitCode> {
    not_yet("admin")
}

/// Run `warden vault`.
pub fn run_vault(_c: VaultCommand, _g: &Global) -> anyhow::Result<ExitCode> {
    not_yet("vault")
}

/// Run `warden release`.
pub fn run_release(_c: ReleaseCommand, _g: &Global) -> anyhow::Result<ExitCode> {
    not_yet("release")
}

/// Run `warden monitor`.
pub fn run_monitor(_a: MonitorArgs, _g: &Global) -> anyhow::Result<ExitCode> {
    not_yet("monitor")
}
