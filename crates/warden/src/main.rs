//! `warden`: the command-line front end. The only crate that reads config files and
//! prints for humans; every capability lives in a library crate.

#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "the CLI prints for humans"
)]

mod cmd;
#[allow(
    dead_code,
    reason = "helpers are adopted by command modules as they land"
)]
mod ui;

/// mimalloc instead of glibc's malloc: the gateway allocates on one worker thread and
/// frees on another for every request, where glibc's arenas spent about 14 % of the
/// gateway's CPU (see README, "Gateway overhead").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

/// Deploy and operate AI models developed by others, securely.
#[derive(Debug, Parser)]
#[command(name = "warden", version, about, long_about = None, propagate_version = true)]
struct Cli {
    /// Warden home (state, keys, vault, audit log). Defaults to $WARDEN_HOME, then a per-user data directory.
    #[arg(long, global = true, env = "WARDEN_HOME", value_name = "DIR")]
    home: Option<PathBuf>,

    /// When to use colours: auto (only on a terminal), always, never.
    #[arg(long, global = true, value_enum, default_value_t = ui::ColorChoice::Auto)]
    color: ui::ColorChoice,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Scan model files, directories and archives for code execution and tampering.
    Scan(cmd::scan::Args),
    /// Sign a model directory or file (OpenSSF Model Signing v1 bundle).
    Sign(cmd::sign::SignArgs),
    /// Verify a model against its OpenSSF Model Signing signature.
    Verify(cmd::sign::VerifyArgs),
    /// Tamper-evident audit log: verify, show, prove, append.
    #[command(subcommand)]
    Audit(cmd::audit::Command),
    /// Create a Warden home: state, audit log key and key-encryption key provider.
    Init(cmd::vault::InitArgs),
    /// Manage administrator identities who approve releases.
    #[command(subcommand)]
    Admin(cmd::vault::AdminCommand),
    /// Sealed model vault: import, export, list, shred.
    #[command(subcommand)]
    Vault(cmd::vault::VaultCommand),
    /// Release lifecycle: evaluate, approve, deploy, rollback.
    #[command(subcommand)]
    Release(cmd::vault::ReleaseCommand),
    /// Watch deployed files for tampering; alert, quarantine or roll back.
    Monitor(cmd::vault::MonitorArgs),
    /// Run the secure inference gateway in front of model servers.
    Serve(cmd::gateway::ServeArgs),
    /// Manage gateway API keys.
    #[command(subcommand)]
    Keys(cmd::gateway::KeysCommand),
    /// Block an identity at the gateway at once, closing its open streams.
    Block(cmd::gateway::BlockArgs),
    /// Close the public listener and every open connection (or lift the lockdown).
    Lockdown(cmd::gateway::LockdownArgs),
    /// Check authorization policies and explain decisions.
    #[command(subcommand)]
    Policy(cmd::gateway::PolicyCommand),
    /// Screen prompts for injection and jailbreaks, one per line.
    Screen(cmd::screen::Args),
    /// List behaviour and drift alerts.
    Alerts(cmd::screen::AlertsArgs),
    /// Check the running configuration and host against the deployment guidance.
    Posture(cmd::posture::Args),
}

/// What every command may need besides its own arguments.
#[derive(Debug)]
pub struct Global {
    /// `--home`, if given (or `WARDEN_HOME`).
    pub home: Option<PathBuf>,
    /// Colour choice after resolution against the terminal.
    pub color: ui::ColorChoice,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let global = Global {
        home: cli.home,
        color: cli.color,
    };
    ui::init_color(global.color);
    let result = match cli.command {
        Command::Scan(a) => cmd::scan::run(a, &global),
        Command::Sign(a) => cmd::sign::run_sign(a, &global),
        Command::Verify(a) => cmd::sign::run_verify(a, &global),
        Command::Audit(c) => cmd::audit::run(c, &global),
        Command::Init(a) => cmd::vault::run_init(a, &global),
        Command::Admin(c) => cmd::vault::run_admin(c, &global),
        Command::Vault(c) => cmd::vault::run_vault(c, &global),
        Command::Release(c) => cmd::vault::run_release(c, &global),
        Command::Monitor(a) => cmd::vault::run_monitor(a, &global),
        Command::Serve(a) => cmd::gateway::run_serve(a, &global),
        Command::Keys(c) => cmd::gateway::run_keys(c, &global),
        Command::Block(a) => cmd::gateway::run_block(a, &global),
        Command::Lockdown(a) => cmd::gateway::run_lockdown(a, &global),
        Command::Policy(c) => cmd::gateway::run_policy(c, &global),
        Command::Screen(a) => cmd::screen::run(a, &global),
        Command::Alerts(a) => cmd::screen::run_alerts(a, &global),
        Command::Posture(a) => cmd::posture::run(a, &global),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            ui::print_error(&e);
            // 2: the command could not do its job (bad input, unusable state). Commands that
            // have a verdict (scan, verify, audit verify) return 0/1 themselves.
            ExitCode::from(2)
        }
    }
}
