//! `warden audit …`: verify, inspect, prove and append to the tamper-evident audit log
//! (`warden-tlog`), and create its signing key.
//!
//! `--log` defaults to `<home>/audit`; the signer key to `<home>/keys/audit.key`; the
//! verifier key to `<home>/keys/audit.pub` (or the one derived from the signer key).

use crate::Global;
use anyhow::{Context, bail};
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use warden_tlog::tiles::LogReader;
use warden_tlog::{AuditEvent, Log, LogOptions, PosixStorage, Receipt, Signer, Verifier};

/// Output format of `show` and `verify`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Default)]
pub enum Format {
    /// For people.
    #[default]
    Text,
    /// JSON.
    Json,
}

/// Subcommands of `warden audit`.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Verify a log: recompute every level from the entry bundles, check every tile, the
    /// checkpoint signature and (with --previous) consistency with an older checkpoint.
    /// Exit 0 when it verifies, 1 when it does not, 2 when it cannot be checked.
    Verify {
        /// Log directory (default: <home>/audit).
        #[arg(long, value_name = "DIR")]
        log: Option<PathBuf>,
        /// Verifier key (`name+id+base64`), or a file holding one or a signer key
        /// (default: <home>/keys/audit.pub, else <home>/keys/audit.key).
        #[arg(long, value_name = "VKEY")]
        key: Option<String>,
        /// An older checkpoint file the log must be consistent with.
        #[arg(long, value_name = "CHECKPOINT")]
        previous: Option<PathBuf>,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Show entries (after verifying the checkpoint signature).
    Show {
        /// Log directory (default: <home>/audit).
        #[arg(long, value_name = "DIR")]
        log: Option<PathBuf>,
        /// Verifier key (see `verify`).
        #[arg(long, value_name = "VKEY")]
        key: Option<String>,
        /// First index to show.
        #[arg(long, default_value_t = 0)]
        since: u64,
        /// Most entries to show.
        #[arg(long)]
        limit: Option<u64>,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Print an offline receipt (C2SP tlog-proof) for one entry.
    Prove {
        /// Log directory (default: <home>/audit).
        #[arg(long, value_name = "DIR")]
        log: Option<PathBuf>,
        /// Verifier key (see `verify`).
        #[arg(long, value_name = "VKEY")]
        key: Option<String>,
        /// Entry index.
        index: u64,
    },
    /// Verify a receipt made by `prove` (or any C2SP tlog-proof) offline.
    VerifyReceipt {
        /// Receipt file.
        receipt: PathBuf,
        /// Verifier key of the log (see `verify`).
        #[arg(long, value_name = "VKEY")]
        key: Option<String>,
        /// The entry, when the receipt does not carry it.
        #[arg(long, value_name = "FILE")]
        entry: Option<PathBuf>,
    },
    /// Append entries from standard input, one JSON value per line; prints each index
    /// once it is durable.
    Append {
        /// Log directory (default: <home>/audit).
        #[arg(long, value_name = "DIR")]
        log: Option<PathBuf>,
        /// Signer key file (default: <home>/keys/audit.key).
        #[arg(long, value_name = "FILE")]
        signer: Option<PathBuf>,
        /// Entries in flight at once (they share commits); indices follow input order
        /// and each is printed once durable.
        #[arg(long, default_value_t = 64)]
        writers: usize,
        /// Print throughput and time-to-acknowledge percentiles to standard error.
        #[arg(long)]
        stats: bool,
    },
    /// Create a log signing key: writes the signer key (mode 0600) and prints the
    /// verifier key.
    Keygen {
        /// Key name; use the log's origin, e.g. `warden.example.com/audit`.
        name: String,
        /// Where to write the signer key (default: <home>/keys/audit.key); the verifier
        /// key goes beside it with `.pub`.
        #[arg(long, value_name = "FILE")]
        output: Option<PathBuf>,
    },
}

fn home(g: &Global) -> anyhow::Result<PathBuf> {
    if let Some(h) = &g.home {
        return Ok(h.clone());
    }
    if let Some(x) = std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
        return Ok(PathBuf::from(x).join("warden"));
    }
    match std::env::var_os("HOME").filter(|v| !v.is_empty()) {
        Some(h) => Ok(PathBuf::from(h).join(".local/share/warden")),
        None => bail!("no Warden home: pass --home or set WARDEN_HOME"),
    }
}

fn log_dir(log: Option<PathBuf>, g: &Global) -> anyhow::Result<PathBuf> {
    match log {
        Some(l) => Ok(l),
        None => Ok(home(g)?.join("audit")),
    }
}

fn signer_path(p: Option<PathBuf>, g: &Global) -> anyhow::Result<PathBuf> {
    match p {
        Some(p) => Ok(p),
        None => Ok(home(g)?.join("keys/audit.key")),
    }
}

/// A verifier from a key string, a file holding a verifier or signer key, or the home.
fn verifier(key: Option<String>, g: &Global) -> anyhow::Result<Verifier> {
    let (text, what) = match key {
        Some(k) if k.contains('+') && !Path::new(&k).exists() => (k, "--key".to_owned()),
        Some(k) => (std::fs::read_to_string(&k).with_context(|| k.clone())?, k),
        None => {
            let h = home(g)?;
            let pubf = h.join("keys/audit.pub");
            let keyf = h.join("keys/audit.key");
            let f = if pubf.exists() { pubf } else { keyf };
            (
                std::fs::read_to_string(&f)
                    .with_context(|| format!("{}: no verifier key (pass --key)", f.display()))?,
                f.display().to_string(),
            )
        }
    };
    let text = text.trim();
    if text.starts_with("PRIVATE+KEY+") {
        return Ok(Signer::parse(text)
            .with_context(|| what.clone())?
            .verifier());
    }
    Verifier::parse(text).with_context(|| what)
}

/// Run `warden audit`.
pub fn run(c: Command, g: &Global) -> anyhow::Result<ExitCode> {
    match c {
        Command::Verify {
            log,
            key,
            previous,
            format,
        } => verify(log_dir(log, g)?, verifier(key, g)?, previous, format),
        Command::Show {
            log,
            key,
            since,
            limit,
            format,
        } => show(log_dir(log, g)?, verifier(key, g)?, since, limit, format),
        Command::Prove { log, key, index } => {
            let dir = log_dir(log, g)?;
            let storage = PosixStorage::new(&dir);
            let r = Receipt::prove(&storage, &verifier(key, g)?, index)
                .with_context(|| dir.display().to_string())?;
            std::io::stdout().write_all(&r.to_bytes())?;
            Ok(ExitCode::SUCCESS)
        }
        Command::VerifyReceipt {
            receipt,
            key,
            entry,
        } => verify_receipt(&receipt, verifier(key, g)?, entry),
        Command::Append {
            log,
            signer,
            writers,
            stats,
        } => append(log_dir(log, g)?, signer_path(signer, g)?, writers, stats),
        Command::Keygen { name, output } => keygen(&name, signer_path(output, g)?),
    }
}

fn verify(
    dir: PathBuf,
    key: Verifier,
    previous: Option<PathBuf>,
    format: Format,
) -> anyhow::Result<ExitCode> {
    if !dir.is_dir() {
        bail!("{}: no such log directory", dir.display());
    }
    if !dir.join("checkpoint").is_file() {
        bail!("{}: no checkpoint: not an audit log", dir.display());
    }
    let prev = match &previous {
        Some(p) => Some(std::fs::read(p).with_context(|| p.display().to_string())?),
        None => None,
    };
    let storage = PosixStorage::new(&dir);
    // The journal is read before the checkpoint: a live writer publishes and journals
    // on meanwhile, and a journal read first extends the checkpoint read after it or an
    // older one, never a newer one.
    let journal = match warden_tlog::Storage::journal(&storage) {
        Some(j) => j.read().with_context(|| dir.display().to_string())?,
        None => Vec::new(),
    };
    let started = std::time::Instant::now();
    let bar = crate::ui::progress_entries(0, "verify");
    let result = warden_tlog::verify_log_with_progress(&storage, &key, prev.as_deref(), &|d, t| {
        bar.set_length(t);
        bar.set_position(d);
    });
    bar.finish_and_clear();
    // Entries made durable in the journal but not yet published (a running gateway's
    // last second, or what a writer that died left for the next one to publish).
    let result = result.and_then(|r| {
        warden_tlog::journal::unpublished(
            &journal,
            &key,
            &r.checkpoint.origin,
            r.entries,
            &r.checkpoint.root,
            &format!("{}/{}", dir.display(), warden_tlog::storage::JOURNAL),
        )
        .map(|j| (r, j))
    });
    match result {
        Ok((r, journaled)) => {
            match format {
                Format::Text => {
                    println!(
                        "ok: {}: {} entries, {} tiles, root {} signed by {}{} ({:.2}s)",
                        dir.display(),
                        r.entries,
                        r.tiles,
                        hex::encode(r.checkpoint.root),
                        key.name(),
                        r.consistent_with
                            .map(|s| format!(", consistent with size {s}"))
                            .unwrap_or_default(),
                        started.elapsed().as_secs_f64()
                    );
                    if journaled > 0 {
                        println!(
                            "{journaled} more entries are durable in the journal and not yet \
                             published (the writer publishes them within its interval, or the \
                             next writer to open the log does)"
                        );
                    }
                }
                Format::Json => println!(
                    "{}",
                    serde_json::json!({
                        "ok": true,
                        "log": dir.display().to_string(),
                        "origin": r.checkpoint.origin,
                        "size": r.entries,
                        "tiles": r.tiles,
                        "root": hex::encode(r.checkpoint.root),
                        "consistent_with": r.consistent_with,
                        "journaled": journaled,
                    })
                ),
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(e) if e.is_verdict() => {
            match format {
                Format::Text => eprintln!("error: {}: {e}", dir.display()),
                Format::Json => println!(
                    "{}",
                    serde_json::json!({"ok": false, "log": dir.display().to_string(), "error": e.to_string()})
                ),
            }
            Ok(ExitCode::from(1))
        }
        Err(e) => Err(anyhow::Error::new(e).context(dir.display().to_string())),
    }
}

fn show(
    dir: PathBuf,
    key: Verifier,
    since: u64,
    limit: Option<u64>,
    format: Format,
) -> anyhow::Result<ExitCode> {
    let storage = PosixStorage::new(&dir);
    let (cp, _, mut reader) =
        LogReader::open(&storage, &key).with_context(|| dir.display().to_string())?;
    let end = match limit {
        Some(l) => since.saturating_add(l).min(cp.size),
        None => cp.size,
    };
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    if format == Format::Text {
        writeln!(
            out,
            "{} — {} entries, root {}",
            cp.origin,
            cp.size,
            hex::encode(cp.root)
        )?;
    }
    let mut i = since;
    let mut json_items = Vec::new();
    while i < end {
        let (_, entries) = reader
            .bundle(i / 256)
            .with_context(|| dir.display().to_string())?;
        for (k, e) in entries.iter().enumerate() {
            let idx = (i / 256) * 256 + k as u64;
            if idx < i || idx >= end {
                continue;
            }
            match format {
                Format::Text => writeln!(out, "{idx:>8}  {}", summary(e))?,
                Format::Json => {
                    let v = serde_json::from_slice::<serde_json::Value>(e)
                        .unwrap_or_else(|_| serde_json::json!({ "bytes_hex": hex::encode(e) }));
                    json_items.push(serde_json::json!({"index": idx, "entry": v}));
                }
            }
        }
        i = (i / 256 + 1) * 256;
    }
    if format == Format::Json {
        serde_json::to_writer_pretty(
            &mut out,
            &serde_json::json!({
                "origin": cp.origin,
                "size": cp.size,
                "root": hex::encode(cp.root),
                "entries": json_items,
            }),
        )?;
        writeln!(out)?;
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

/// One line for a person: typed events get time, actor and kind; other JSON as-is.
fn summary(e: &[u8]) -> String {
    if let Ok(ev) = AuditEvent::from_entry(e) {
        let v = serde_json::to_value(&ev.kind).unwrap_or_default();
        let kind = v
            .get("event")
            .and_then(|k| k.as_str())
            .unwrap_or("?")
            .to_owned();
        let mut rest = Vec::new();
        if let Some(o) = v.as_object() {
            for (k, val) in o {
                if k != "event" {
                    rest.push(format!(
                        "{k}={}",
                        val.as_str().map_or(val.to_string(), str::to_owned)
                    ));
                }
            }
        }
        return format!(
            "{}  {:<12} {:<18} {}",
            ev.time,
            ev.actor,
            kind,
            rest.join(" ")
        );
    }
    match std::str::from_utf8(e) {
        Ok(s) if !s.chars().any(char::is_control) => s.to_owned(),
        _ => format!(
            "<{} bytes: {}>",
            e.len(),
            hex::encode(e.get(..32).unwrap_or(e))
        ),
    }
}

fn verify_receipt(path: &Path, key: Verifier, entry: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let bytes = std::fs::read(path).with_context(|| path.display().to_string())?;
    let entry = match &entry {
        Some(p) => Some(std::fs::read(p).with_context(|| p.display().to_string())?),
        None => None,
    };
    let r = match Receipt::parse(&bytes, &path.display().to_string()) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(ExitCode::from(1));
        }
    };
    match r.verify(&key, entry.as_deref()) {
        Ok(v) => {
            println!(
                "ok: {}: entry {} is in {} at size {} (root {})",
                path.display(),
                v.index,
                v.checkpoint.origin,
                v.checkpoint.size,
                hex::encode(v.checkpoint.root)
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(e) if e.is_verdict() => {
            eprintln!("error: {}: {e}", path.display());
            Ok(ExitCode::from(1))
        }
        Err(e) => Err(anyhow::Error::new(e).context(path.display().to_string())),
    }
}

fn append(dir: PathBuf, signer: PathBuf, writers: usize, stats: bool) -> anyhow::Result<ExitCode> {
    let signer_key = Signer::from_file(&signer)?;
    let origin = signer_key.name().to_owned();
    let log = Log::open(
        Arc::new(PosixStorage::new(&dir)),
        signer_key,
        &origin,
        LogOptions {
            // At most `writers` + 2 entries are in flight (the channel below, the one
            // the printer waits for, the one being sent): never refused as queue full.
            max_queued: writers
                .max(1)
                .saturating_add(2)
                .max(warden_tlog::log::DEFAULT_MAX_QUEUED),
            ..LogOptions::default()
        },
    )
    .with_context(|| dir.display().to_string())?;
    // Entries are submitted in input order from one thread and acknowledged in the same
    // order, with up to `writers` of them in flight at once (they share commits). A line
    // on stdout is an acknowledgement: it is printed only once its entry is durable.
    type InFlight = (std::time::Instant, warden_tlog::AppendFuture);
    let (tx, rx) = std::sync::mpsc::sync_channel::<InFlight>(writers.max(1));
    let printer = std::thread::spawn(move || -> warden_tlog::Result<Vec<std::time::Duration>> {
        let mut lat = Vec::new();
        for (t0, fut) in rx {
            let idx = block_on(fut)?;
            lat.push(t0.elapsed());
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{idx}");
        }
        Ok(lat)
    });
    let started = std::time::Instant::now();
    let mut read_err = None;
    for (n, line) in std::io::stdin().lock().lines().enumerate() {
        let line = match line {
            Ok(l) => l,
            Err(e) => {
                read_err = Some(anyhow::Error::new(e).context("standard input"));
                break;
            }
        };
        if line.trim().is_empty() {
            continue;
        }
        if let Err(e) = serde_json::from_str::<serde_json::Value>(&line) {
            read_err = Some(anyhow::anyhow!(
                "standard input: line {}: not JSON: {e}",
                n + 1
            ));
            break;
        }
        let inflight = (
            std::time::Instant::now(),
            log.append_async(line.into_bytes()),
        );
        if tx.send(inflight).is_err() {
            break;
        }
    }
    drop(tx);
    let mut lat = printer
        .join()
        .map_err(|_| anyhow::anyhow!("append thread panicked"))?
        .with_context(|| dir.display().to_string())?;
    if let Some(e) = read_err {
        return Err(e);
    }
    if stats && !lat.is_empty() {
        let secs = started.elapsed().as_secs_f64();
        lat.sort_unstable();
        let pct = |p: f64| {
            let i = ((lat.len() as f64 * p).ceil() as usize).clamp(1, lat.len()) - 1;
            lat.get(i).map_or(0.0, |d| d.as_secs_f64() * 1000.0)
        };
        eprintln!(
            "appends={} writers={} commits={} seconds={secs:.3} appends_per_s={:.0} p50_ms={:.2} p99_ms={:.2}",
            lat.len(),
            writers.max(1),
            log.commits(),
            lat.len() as f64 / secs,
            pct(0.50),
            pct(0.99)
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Wait for a future on this thread (the log's futures need no runtime).
fn block_on<F: std::future::Future>(fut: F) -> F::Output {
    struct Unpark(std::thread::Thread);
    impl std::task::Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = std::task::Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = std::task::Context::from_waker(&waker);
    let mut fut = std::pin::pin!(fut);
    loop {
        if let std::task::Poll::Ready(v) = fut.as_mut().poll(&mut cx) {
            return v;
        }
        std::thread::park();
    }
}

fn keygen(name: &str, path: PathBuf) -> anyhow::Result<ExitCode> {
    use std::os::unix::fs::OpenOptionsExt;
    let signer = Signer::generate(name)?;
    if let Some(parent) = path.parent()
        && !parent.as_os_str().is_empty()
    {
        std::fs::create_dir_all(parent).with_context(|| parent.display().to_string())?;
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .with_context(|| {
            format!(
                "{}: cannot create (refusing to overwrite a key)",
                path.display()
            )
        })?;
    writeln!(f, "{}", signer.to_key_string()).with_context(|| path.display().to_string())?;
    f.sync_all().with_context(|| path.display().to_string())?;
    let vkey = signer.verifier().to_string();
    let pubf = path.with_extension("pub");
    std::fs::write(&pubf, format!("{vkey}\n")).with_context(|| pubf.display().to_string())?;
    println!("{vkey}");
    Ok(ExitCode::SUCCESS)
}
