//! `warden scan`: scan model files, directories and archives; print the report as text,
//! JSON or SARIF 2.1.0; exit 0 (nothing at or above `--fail-on`), 1 (findings) or 2
//! (the scan could not be completed: the scanner fails closed and says why).

use crate::Global;
use crate::ui::{self, ReportFormat};
use anstyle::{AnsiColor, Style};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use warden_scan::{Finding, Report, ScanOptions, Severity, allowlist, rules};

/// Show a progress bar for inputs at least this large (on a terminal only).
const PROGRESS_FROM: u64 = 64 << 20;

/// Arguments of `warden scan`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Files or directories to scan (directories recursively; archives are opened).
    #[arg(required = true, value_name = "PATH")]
    pub paths: Vec<PathBuf>,

    /// Output format.
    #[arg(long, value_enum, default_value_t = ReportFormat::Text)]
    pub format: ReportFormat,

    /// Lowest severity that makes the scan fail (exit 1): info, low, medium, high, critical.
    #[arg(long, default_value = "medium", value_parser = parse_severity)]
    pub fail_on: Severity,

    /// Turn on an optional allowlist profile (repeatable), e.g. `sklearn` for
    /// scikit-learn estimators in joblib files.
    #[arg(long = "profile", value_name = "NAME", value_parser = parse_profile)]
    pub profiles: Vec<String>,

    /// Also read tensor data, not only headers.
    #[arg(long)]
    pub deep: bool,
}

fn parse_severity(s: &str) -> Result<Severity, String> {
    Severity::parse(s)
        .ok_or_else(|| format!("unknown severity {s:?} (use info, low, medium, high or critical)"))
}

fn parse_profile(s: &str) -> Result<String, String> {
    if allowlist::PROFILES.iter().any(|(n, _)| *n == s) {
        Ok(s.to_owned())
    } else {
        let known: Vec<&str> = allowlist::PROFILES.iter().map(|(n, _)| *n).collect();
        Err(format!(
            "unknown profile {s:?} (known: {})",
            known.join(", ")
        ))
    }
}

/// Run `warden scan`.
pub fn run(a: Args, _g: &Global) -> anyhow::Result<ExitCode> {
    let options = ScanOptions {
        deep: a.deep,
        profiles: a.profiles.clone(),
        ..ScanOptions::default()
    };
    let total = warden_scan::total_bytes(&a.paths);
    let bar = if total >= PROGRESS_FROM {
        ui::progress_bytes(total, "scanning")
    } else {
        indicatif::ProgressBar::hidden()
    };
    let report = {
        let mut progress = |n: u64| bar.inc(n);
        warden_scan::scan_paths_with_progress(&a.paths, &options, &mut progress)
    };
    bar.finish_and_clear();

    let failing = report
        .findings
        .iter()
        .filter(|f| f.severity >= a.fail_on)
        .count();
    let mut out = anstream::stdout().lock();
    match a.format {
        ReportFormat::Text => print_text(&mut out, &report, a.fail_on, total)?,
        ReportFormat::Json => {
            serde_json::to_writer_pretty(&mut out, &json_report(&report, a.fail_on, &options))?;
            writeln!(out)?;
        }
        ReportFormat::Sarif => {
            serde_json::to_writer_pretty(&mut out, &sarif(&report))?;
            writeln!(out)?;
        }
    }
    out.flush()?;
    if !report.complete() {
        // Fail closed: say why on standard error in every format.
        for e in &report.errors {
            let err = anyhow::anyhow!("{}: {}", e.location, e.message);
            ui::print_error(&err);
        }
        return Ok(ExitCode::from(2));
    }
    Ok(if failing > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn sev_style(s: Severity) -> Style {
    let c = match s {
        Severity::Critical => AnsiColor::Magenta,
        Severity::High => AnsiColor::Red,
        Severity::Medium => AnsiColor::Yellow,
        Severity::Low => AnsiColor::Cyan,
        Severity::Info => AnsiColor::BrightBlack,
    };
    Style::new().bold().fg_color(Some(c.into()))
}

fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS.get(u).copied().unwrap_or("B"))
    }
}

fn print_text(
    out: &mut impl Write,
    r: &Report,
    fail_on: Severity,
    total: u64,
) -> anyhow::Result<()> {
    let dim = Style::new().dimmed();
    let bold = Style::new().bold();
    // Group by file, in scan order.
    let mut order: Vec<&str> = Vec::new();
    let mut by_file: BTreeMap<&str, Vec<&Finding>> = BTreeMap::new();
    for f in &r.findings {
        let k = f.location.path.as_str();
        if !by_file.contains_key(k) {
            order.push(k);
        }
        by_file.entry(k).or_default().push(f);
    }
    for file in &order {
        writeln!(out, "{}", ui::paint(bold, file))?;
        for f in by_file.get(file).map(Vec::as_slice).unwrap_or(&[]) {
            let sev = format!("{:<8}", f.severity.as_str().to_uppercase());
            let mut place = String::new();
            for m in &f.location.members {
                place.push_str(" › ");
                place.push_str(m);
            }
            if let Some(o) = f.location.offset {
                place.push_str(&format!(" @ {o}"));
            }
            writeln!(
                out,
                "  {} {}{}",
                ui::paint(sev_style(f.severity), &sev),
                ui::paint(dim, f.rule),
                ui::paint(dim, &place)
            )?;
            writeln!(out, "           {}", f.message)?;
        }
        writeln!(out)?;
    }
    let files = r
        .scanned
        .iter()
        .filter(|s| s.location.members.is_empty())
        .count();
    let members = r.scanned.len() - files;
    let mut counts: BTreeMap<Severity, usize> = BTreeMap::new();
    for f in &r.findings {
        *counts.entry(f.severity).or_default() += 1;
    }
    let breakdown: Vec<String> = counts
        .iter()
        .rev()
        .map(|(s, n)| format!("{n} {s}"))
        .collect();
    let member_note = if members > 0 {
        format!(" ({members} archive members)")
    } else {
        String::new()
    };
    writeln!(
        out,
        "scanned {files} files{member_note}, {}; {} findings{}",
        human_bytes(total),
        r.findings.len(),
        if breakdown.is_empty() {
            String::new()
        } else {
            format!(" ({})", breakdown.join(", "))
        }
    )?;
    let failing = r.findings.iter().filter(|f| f.severity >= fail_on).count();
    let verdict = if !r.complete() {
        ui::paint(
            sev_style(Severity::High),
            &format!(
                "INCOMPLETE: {} inputs could not be fully examined (see errors); nothing is vouched for",
                r.errors.len()
            ),
        )
    } else if failing > 0 {
        ui::paint(
            sev_style(Severity::High),
            &format!("FAIL: {failing} findings at or above {fail_on}"),
        )
    } else {
        ui::paint(
            Style::new().bold().fg_color(Some(AnsiColor::Green.into())),
            &format!("PASS: nothing at or above {fail_on}"),
        )
    };
    writeln!(out, "{verdict}")?;
    Ok(())
}

fn counts(r: &Report) -> Value {
    let mut m = serde_json::Map::new();
    for s in [
        Severity::Critical,
        Severity::High,
        Severity::Medium,
        Severity::Low,
        Severity::Info,
    ] {
        let n = r.findings.iter().filter(|f| f.severity == s).count();
        m.insert(s.as_str().into(), json!(n));
    }
    Value::Object(m)
}

fn json_report(r: &Report, fail_on: Severity, o: &ScanOptions) -> Value {
    let failing = r.findings.iter().filter(|f| f.severity >= fail_on).count();
    json!({
        "tool": "warden",
        "version": env!("CARGO_PKG_VERSION"),
        "complete": r.complete(),
        "fail_on": fail_on,
        "verdict": if !r.complete() { "incomplete" } else if failing > 0 { "fail" } else { "pass" },
        "profiles": o.profiles,
        "counts": counts(r),
        "findings": r.findings,
        "errors": r.errors,
        "scanned": r.scanned,
    })
}

fn sarif_level(s: Severity) -> &'static str {
    match s {
        Severity::Critical | Severity::High => "error",
        Severity::Medium => "warning",
        Severity::Low | Severity::Info => "note",
    }
}

/// Percent-encode a path for a SARIF `uri` (RFC 3986 unreserved and `/` kept).
fn uri_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'/') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn sarif(r: &Report) -> Value {
    let mut used: Vec<&'static str> = r.findings.iter().map(|f| f.rule).collect();
    used.sort_unstable();
    used.dedup();
    let rule_objs: Vec<Value> = used
        .iter()
        .map(|id| {
            let (name, text) = rules::describe(id);
            json!({
                "id": id,
                "name": name,
                "shortDescription": { "text": text },
                "fullDescription": { "text": text },
                "helpUri": "https://example.invalid/warden/rules#".to_owned() + id,
            })
        })
        .collect();
    let results: Vec<Value> = r
        .findings
        .iter()
        .map(|f| {
            let mut uri = uri_encode(&f.location.path);
            if !f.location.members.is_empty() {
                let inner: Vec<String> = f.location.members.iter().map(|m| uri_encode(m)).collect();
                uri.push('#');
                uri.push_str(&inner.join("!"));
            }
            let mut phys = json!({ "artifactLocation": { "uri": uri } });
            if let Some(o) = f.location.offset
                && let Some(obj) = phys.as_object_mut()
            {
                obj.insert("region".into(), json!({ "byteOffset": o }));
            }
            let mut loc = json!({ "physicalLocation": phys });
            if !f.location.members.is_empty()
                && let Some(obj) = loc.as_object_mut()
            {
                obj.insert(
                    "logicalLocations".into(),
                    json!([{ "fullyQualifiedName": f.location.members.join("!"), "kind": "member" }]),
                );
            }
            json!({
                "ruleId": f.rule,
                "ruleIndex": used.iter().position(|u| *u == f.rule).unwrap_or(0),
                "level": sarif_level(f.severity),
                "message": { "text": f.message },
                "locations": [loc],
                "properties": { "severity": f.severity },
            })
        })
        .collect();
    let notes: Vec<Value> = r
        .errors
        .iter()
        .map(|e| {
            json!({
                "level": "error",
                "message": { "text": format!("{}: {}", e.location, e.message) },
            })
        })
        .collect();
    json!({
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{
            "tool": { "driver": {
                "name": "warden",
                "semanticVersion": env!("CARGO_PKG_VERSION"),
                "informationUri": "https://example.invalid/warden",
                "rules": rule_objs,
            }},
            "invocations": [{
                "executionSuccessful": r.complete(),
                "toolExecutionNotifications": notes,
            }],
            "results": results,
        }]
    })
}
