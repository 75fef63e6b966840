//! Terminal presentation: colours only on a terminal, progress bars only on a terminal,
//! one error format (`error: <file>: <cause>`), and the report formats.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};

/// `--color`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ColorChoice {
    /// Colours when standard output is a terminal and `NO_COLOR` is unset.
    Auto,
    /// Always.
    Always,
    /// Never.
    Never,
}

/// `--format` for commands whose output is a report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Default)]
pub enum ReportFormat {
    /// For people.
    #[default]
    Text,
    /// One JSON document.
    Json,
    /// SARIF 2.1.0 (findings only).
    Sarif,
}

static COLOR: AtomicBool = AtomicBool::new(false);

/// Decide once whether colours are on.
pub fn init_color(choice: ColorChoice) {
    let on = match choice {
        ColorChoice::Always => true,
        ColorChoice::Never => false,
        ColorChoice::Auto => {
            std::env::var_os("NO_COLOR").is_none() && std::io::stdout().is_terminal()
        }
    };
    COLOR.store(on, Ordering::Relaxed);
}

/// Whether colours are on.
pub fn color() -> bool {
    COLOR.load(Ordering::Relaxed)
}

/// Wrap `text` in an ANSI style when colours are on.
pub fn paint(style: anstyle::Style, text: &str) -> String {
    if color() {
        format!("{}{text}{}", style.render(), style.render_reset())
    } else {
        text.to_owned()
    }
}

/// Print an error chain as `error: outer: inner: root` on standard error.
pub fn print_error(e: &anyhow::Error) {
    let on = std::env::var_os("NO_COLOR").is_none() && std::io::stderr().is_terminal();
    let head = if on {
        let s = anstyle::Style::new()
            .bold()
            .fg_color(Some(anstyle::AnsiColor::Red.into()));
        format!("{}error{}", s.render(), s.render_reset())
    } else {
        "error".to_owned()
    };
    eprintln!("{head}: {e:#}");
}

/// A progress bar for `total` bytes that draws only when standard error is a terminal;
/// in a pipe it stays hidden and costs nothing.
pub fn progress_bytes(total: u64, what: &str) -> indicatif::ProgressBar {
    progress(
        total,
        what,
        "{msg:>12} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
    )
}

/// A progress bar counting `total` entries (set it later with `set_length` if unknown),
/// drawn only on a terminal, like [`progress_bytes`].
pub fn progress_entries(total: u64, what: &str) -> indicatif::ProgressBar {
    progress(
        total,
        what,
        "{msg:>12} [{bar:30}] {pos}/{len} entries {per_sec} eta {eta}",
    )
}

fn progress(total: u64, what: &str, template: &str) -> indicatif::ProgressBar {
    if !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(total);
    let style = indicatif::ProgressStyle::with_template(template)
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
        .progress_chars("=> ");
    bar.set_style(style);
    bar.set_message(what.to_owned());
    bar
}
