//! The append-only log with durable group commit.
//!
//! Callers submit entries from any thread ([`Log::append`] blocks,
//! [`Log::append_async`] returns a runtime-agnostic future). One writer thread takes
//! everything queued (up to [`LogOptions::max_batch`]), appends it to the right edge of
//! the tree, writes the new entry bundles and tiles durably, signs and publishes the
//! checkpoint, and only then acknowledges each entry with its index.
//!
//! Several writers (processes, or `Log`s in one process) can append to one log: each
//! batch is committed under the storage's writer lock (taken per batch, with a bounded
//! wait), after checking that the published checkpoint is still the one this writer
//! last saw, or else verifying the new one and that it extends the old tree (a
//! consistency proof from the tiles) and reloading the edge from it.
//!
//! **Invariant:** an index is returned only after the bundle, tiles and signed
//! checkpoint containing it are durable. Objects written for a batch whose checkpoint
//! was never published are beyond the published tree: readers never need them, and the
//! next holder of the writer lock removes them before writing again ([`Log::open`]
//! always; a writer before its next batch when the lock's last holder did not release
//! it cleanly).

use crate::checkpoint::Checkpoint;
use crate::error::{Error, Result};
use crate::merkle::{self, Hash};
use crate::note::{Signer, Verifier};
use crate::storage::{CHECKPOINT, PosixStorage, Storage, WriterLock};
use crate::tiles::{self, MAX_ENTRY, TILE_WIDTH, bundle_path, tile_path};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, mpsc};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

/// Tuning of the writer.
#[derive(Debug, Clone)]
pub struct LogOptions {
    /// Most entries committed together (default 4096, at most [`MAX_BATCH`]).
    pub max_batch: usize,
    /// How long the writer waits for more entries after the first of a batch
    /// (default zero: batches form while the previous one is being made durable).
    pub max_delay: Duration,
    /// How long opening the log, or committing a batch, waits for another writer (in
    /// this process or another) to release the writer lock before failing with
    /// [`Error::Locked`] (default 30 s).
    pub lock_wait: Duration,
    /// With a storage that keeps a journal ([`Storage::journal`]): how long entries
    /// may stay durable in the journal before the writer publishes them as tiles and a
    /// signed checkpoint (default zero: every batch is published as it is committed).
    /// A batch with a caller waiting for its index ([`Log::append`],
    /// [`Log::append_async`]) is published at once; entries queued with
    /// [`Log::append_detached`] are only journaled. The writer holds the writer lock
    /// while it has unpublished entries, so other writers wait up to this long.
    pub publish_interval: Duration,
    /// Most entries submitted and not yet committed (queued, or in the batch being
    /// made durable) (default [`DEFAULT_MAX_QUEUED`], at least 1), counting the room
    /// held by [`Permit`]s. [`Log::reserve`] and [`Log::append_detached`] beyond it fail
    /// with [`Error::QueueFull`] and queue nothing, so a writer that falls behind (a
    /// slow or stalled disk) bounds the memory its callers can fill. A waited append
    /// ([`Log::append`], [`Log::append_async`]) is counted but never refused for room:
    /// its caller waits for it, which bounds those.
    pub max_queued: usize,
    /// Room beyond `max_queued` that only [`Log::append_detached`] (an entry without a
    /// [`Permit`]) may use (default 0): callers that reserve room for their main entries
    /// keep some for occasional ones (refusals) that must not compete with them.
    pub headroom: usize,
    /// Nice value the writer thread adds to its own (default 0; Linux, per thread). A
    /// server whose request threads must not wait behind a commit sets it: a woken
    /// writer at nice 0 preempts the request thread on its core (the scheduler does
    /// not move the request thread to an idle core for the writer's burst, which
    /// measured up to 2 ms), while a niced one is less likely to preempt it and runs
    /// beside it or after it instead. A value the system refuses leaves the writer at
    /// its priority.
    pub writer_nice: i32,
}

/// Default of [`LogOptions::max_queued`].
pub const DEFAULT_MAX_QUEUED: usize = 65_536;

impl Default for LogOptions {
    fn default() -> Self {
        LogOptions {
            max_batch: 4096,
            max_delay: Duration::ZERO,
            lock_wait: Duration::from_secs(30),
            publish_interval: Duration::ZERO,
            max_queued: DEFAULT_MAX_QUEUED,
            headroom: 0,
            writer_nice: 0,
        }
    }
}

/// The right edge of the tree: everything needed to append.
#[derive(Debug, Clone)]
struct Edge {
    size: u64,
    /// Current partial entry bundle.
    bundle: Vec<u8>,
    /// Partial tile hashes per tile level.
    levels: Vec<Vec<Hash>>,
    /// Per level, the roots of the perfect subtrees that cover the partial row, largest
    /// first (kept as hashes are pushed, so a commit's root costs O(log n) hashes instead
    /// of rehashing every partial row).
    frontier: Vec<Frontier>,
}

/// Roots of the perfect subtrees covering a row, largest first: `(height, root)`.
#[derive(Debug, Clone, Default)]
struct Frontier(Vec<(u32, Hash)>);

impl Frontier {
    fn of(row: &[Hash]) -> Frontier {
        let mut f = Frontier::default();
        for h in row {
            f.push(*h);
        }
        f
    }

    /// Append a hash to the row (a binary counter: equal heights merge).
    fn push(&mut self, h: Hash) {
        let mut node = (0u32, h);
        while let Some(&(height, left)) = self.0.last() {
            if height != node.0 {
                break;
            }
            self.0.pop();
            node = (height + 1, merkle::node_hash(&left, &node.1));
        }
        self.0.push(node);
    }
}

impl Edge {
    fn new(size: u64, bundle: Vec<u8>, levels: Vec<Vec<Hash>>) -> Edge {
        let frontier = levels.iter().map(|r| Frontier::of(r)).collect();
        Edge {
            size,
            bundle,
            levels,
            frontier,
        }
    }

    fn root(&self) -> Hash {
        let parts: Vec<Hash> = self
            .frontier
            .iter()
            .rev()
            .flat_map(|f| f.0.iter().map(|(_, h)| *h))
            .collect();
        merkle::root_from_decomposition(&parts)
    }

    /// Load the edge of the tree of `cp.size` entries and check it against `cp.root`.
    fn load(storage: &dyn Storage, cp: &Checkpoint) -> Result<Edge> {
        let size = cp.size;
        let mut levels = Vec::new();
        let mut level = 0u32;
        while tiles::hashes_at_level(size, level) > 0 {
            let hashes = tiles::hashes_at_level(size, level);
            let w = hashes % TILE_WIDTH;
            let n = hashes / TILE_WIDTH;
            let row = if w == 0 {
                Vec::new()
            } else {
                let name = tile_path(level, n, w);
                let data = storage
                    .read(&name)?
                    .ok_or_else(|| Error::tampered(&name, "missing"))?;
                tiles::parse_tile(&data, w, &name)?
            };
            levels.push(row);
            level += 1;
        }
        let w = size % TILE_WIDTH;
        let bundle = if w == 0 {
            Vec::new()
        } else {
            let name = bundle_path(size / TILE_WIDTH, w);
            let data = storage
                .read(&name)?
                .ok_or_else(|| Error::tampered(&name, "missing"))?;
            let entries = tiles::parse_bundle(&data, &name)?;
            if entries.len() as u64 != w {
                return Err(Error::tampered(
                    &name,
                    format!("{} entries, expected {w}", entries.len()),
                ));
            }
            let hashes: Vec<Hash> = entries.iter().map(|e| merkle::leaf_hash(e)).collect();
            if levels.first().map(Vec::as_slice) != Some(hashes.as_slice()) {
                return Err(Error::tampered(
                    &name,
                    "entries do not match the level-0 tile",
                ));
            }
            data
        };
        let edge = Edge::new(size, bundle, levels);
        if edge.root() != cp.root {
            return Err(Error::tampered(
                CHECKPOINT,
                "root hash does not match the tiles at the edge of the tree",
            ));
        }
        Ok(edge)
    }
}

/// Largest batch the writer commits; bounds how far beyond the published tree an
/// interrupted batch can have written.
pub const MAX_BATCH: usize = 16_384;

/// Most bytes of entries a writer keeps journaled before publishing them.
pub const MAX_PENDING_BYTES: usize = 64 << 20;

/// Remove objects a crashed batch wrote beyond the published tree of `size` entries.
/// Renames of one batch may persist in any subset after a crash, so every tile index a
/// batch could have reached is checked, not only a contiguous run.
fn discard_unpublished(storage: &dyn Storage, size: u64) -> Result<()> {
    // Tile levels -1 (entry bundles) and 0..=8 cover every tree a u64 can size.
    for level in -1i32..=8 {
        let lv = u32::try_from(level.max(0)).unwrap_or(0);
        let hashes = tiles::hashes_at_level(size, lv);
        let first = hashes / TILE_WIDTH;
        let width = hashes % TILE_WIDTH;
        let reach = (MAX_BATCH as u64 >> (8 * lv.min(7))) / TILE_WIDTH + 2;
        let path = |n: u64, w: u64| {
            if level < 0 {
                bundle_path(n, w)
            } else {
                tile_path(lv, n, w)
            }
        };
        for n in first..first.saturating_add(reach) {
            let full = path(n, 0);
            storage.remove(&full)?;
            let partial_dir = format!("{full}.p");
            let keep = if n == first { width } else { 0 };
            for w in storage.list(&partial_dir)? {
                match w.parse::<u64>() {
                    Ok(w) if w <= keep => {}
                    _ => storage.remove(&format!("{partial_dir}/{w}"))?,
                }
            }
        }
    }
    Ok(())
}

/// The last checkpoint this writer verified or published: what it knows the log to be.
struct Known {
    size: u64,
    root: Hash,
    /// The checkpoint as stored; an unchanged file means nobody else appended.
    bytes: Vec<u8>,
}

/// Check that `cp` (signature and origin already verified) extends the log this writer
/// knew: the same root at the same size, or, when it grew, a consistency proof built
/// from the tiles that proves the old tree a prefix of the new one. A log that shrank or
/// whose history was rewritten is refused.
fn check_extends(storage: &dyn Storage, known: &Known, cp: &Checkpoint) -> Result<()> {
    let what = || format!("{}/{CHECKPOINT}", storage.location());
    if cp.size < known.size {
        return Err(Error::tampered(
            what(),
            format!(
                "the log shrank from {} to {} entries since this writer last appended",
                known.size, cp.size
            ),
        ));
    }
    if cp.size == known.size {
        if cp.root != known.root {
            return Err(Error::tampered(
                what(),
                format!(
                    "another root hash for the same {} entries: the log's history was rewritten",
                    cp.size
                ),
            ));
        }
        return Ok(());
    }
    if known.size == 0 {
        // Every tree extends the empty one.
        return Ok(());
    }
    let proof = tiles::LogReader::new(storage, cp.size).consistency_proof(known.size)?;
    merkle::verify_consistency(known.size, cp.size, &proof, &known.root, &cp.root).map_err(|e| {
        Error::tampered(
            what(),
            format!(
                "the tree of {} entries is not an extension of the {} entries this \
                     writer last appended to (its history was rewritten): {e}",
                cp.size, known.size
            ),
        )
    })
}

struct Writer {
    storage: Arc<dyn Storage>,
    signer: Signer,
    verifier: Verifier,
    origin: String,
    lock_wait: Duration,
    edge: Edge,
    known: Known,
    published: Arc<AtomicU64>,
    commits: Arc<AtomicU64>,
    failures: Arc<AtomicU64>,
    publish_interval: Duration,
    /// The writer lock and the entries journaled under it, not yet published.
    held: Option<Held>,
}

/// What a writer holds between its first journaled batch and its publication.
struct Held {
    lock: Box<dyn WriterLock>,
    /// When the first unpublished entry was journaled.
    since: Instant,
    pending: Vec<Vec<u8>>,
    /// Bytes of `pending`.
    bytes: usize,
}

impl Writer {
    fn push_hash(
        &mut self,
        level: usize,
        h: Hash,
        files: &mut Vec<(String, Vec<u8>)>,
        dirty: &mut Vec<bool>,
        completed: &mut Vec<String>,
    ) {
        let mut level = level;
        let mut h = h;
        loop {
            while self.edge.levels.len() <= level {
                self.edge.levels.push(Vec::new());
            }
            while self.edge.frontier.len() <= level {
                self.edge.frontier.push(Frontier::default());
            }
            while dirty.len() <= level {
                dirty.push(false);
            }
            let (Some(row), Some(front)) = (
                self.edge.levels.get_mut(level),
                self.edge.frontier.get_mut(level),
            ) else {
                return;
            };
            row.push(h);
            front.push(h);
            if (row.len() as u64) < TILE_WIDTH {
                if let Some(d) = dirty.get_mut(level) {
                    *d = true;
                }
                return;
            }
            let lv = u32::try_from(level).unwrap_or(0);
            let n = tiles::hashes_at_level(self.edge.size, lv) / TILE_WIDTH - 1;
            let data: Vec<u8> = row.iter().flatten().copied().collect();
            // A full row is one perfect subtree: the frontier holds exactly its root.
            let root = match front.0.as_slice() {
                [(_, r)] => *r,
                _ => merkle::perfect_root(row),
            };
            row.clear();
            front.0.clear();
            if let Some(d) = dirty.get_mut(level) {
                *d = false;
            }
            files.push((tile_path(lv, n, 0), data));
            completed.push(format!("{}.p", tile_path(lv, n, 0)));
            h = root;
            level += 1;
        }
    }

    /// Take the writer lock, catch up with what other writers published, append the
    /// batch and publish; returns the index of the first entry. A failed append is
    /// cleaned up (unpublished objects removed, the edge reloaded) before the lock is
    /// released.
    fn commit(&mut self, entries: Vec<Vec<u8>>, publish: bool) -> Result<u64> {
        if !self.publish_interval.is_zero() && self.storage.journal().is_some() {
            return self.journal_commit(entries, publish);
        }
        self.publish_now(&entries)
    }

    /// Commit by appending to the journal (taking the writer lock first if this writer
    /// does not hold it yet); publish when asked to or when the oldest unpublished
    /// entry has waited [`LogOptions::publish_interval`].
    fn journal_commit(&mut self, entries: Vec<Vec<u8>>, publish: bool) -> Result<u64> {
        let storage = Arc::clone(&self.storage);
        let Some(journal) = storage.journal() else {
            return self.publish_now(&entries);
        };
        // A caller waits for an index: publish what is journaled, then this batch as a
        // commit of its own, so an error it is told means the entries are not in the log
        // (a journaled batch would be published by recovery after its failure).
        if publish {
            self.publish_pending()?;
            return self.publish_now(&entries);
        }
        // One publication appends at most MAX_BATCH entries (the reach of recovery's
        // `discard_unpublished`) and MAX_PENDING_BYTES: publish what is pending before
        // it would grow past either.
        let batch_bytes: usize = entries.iter().map(Vec::len).sum();
        if self.held.as_ref().is_some_and(|h| {
            h.pending.len() + entries.len() > MAX_BATCH || h.bytes + batch_bytes > MAX_PENDING_BYTES
        }) {
            self.publish_pending()?;
        }
        let held = match self.held.take() {
            Some(h) => h,
            None => {
                let lock = self.storage.lock_writer(self.lock_wait)?;
                self.catch_up(lock.as_ref(), false)?;
                Held {
                    lock,
                    since: Instant::now(),
                    pending: Vec::new(),
                    bytes: 0,
                }
            }
        };
        let first = self.edge.size + held.pending.len() as u64;
        let appended = crate::journal::encode_frame(
            &self.signer,
            &self.origin,
            self.edge.size,
            &self.known.root,
            first,
            &entries,
        )
        .and_then(|frame| journal.append(&frame));
        if let Err(e) = appended {
            // This batch is not durable; what was journaled before it is: publish that,
            // which empties the journal of the failed frame's remains too (or leave it
            // to the next holder's recovery), and let the lock go.
            if held.pending.is_empty() {
                // Nothing to publish: empty the journal, or leave the lock interrupted
                // so that its next holder does before appending behind the remains.
                if journal.clear().is_ok() {
                    let _ = held.lock.release();
                }
            } else {
                self.held = Some(held);
                let _ = self.publish_pending();
            }
            return Err(e);
        }
        let mut held = held;
        held.bytes += batch_bytes;
        held.pending.extend(entries);
        let due = held.since.elapsed() >= self.publish_interval;
        self.held = Some(held);
        if due {
            self.publish_pending()?;
        }
        Ok(first)
    }

    /// Whether journaled entries wait for publication, and until when at most.
    fn publish_deadline(&self) -> Option<Instant> {
        self.held.as_ref().map(|h| h.since + self.publish_interval)
    }

    /// Publish the journaled entries as tiles and a checkpoint, empty the journal and
    /// release the writer lock. On failure the lock is dropped unreleased: its next
    /// holder (this writer's next batch, or another writer) recovers by discarding
    /// what was written beyond the checkpoint and replaying the journal.
    fn publish_pending(&mut self) -> Result<()> {
        let Some(held) = self.held.take() else {
            return Ok(());
        };
        let Held { lock, pending, .. } = held;
        let target = self.edge.size + pending.len() as u64;
        let published = if pending.is_empty() {
            Ok(())
        } else {
            self.append_batch(&pending).map(|_| ())
        };
        // Emptied in either case: an append that failed may have left a torn frame.
        let r = published.and_then(|()| self.storage.journal().map_or(Ok(()), |j| j.clear()));
        match r {
            Ok(()) => {
                let _ = lock.release();
                Ok(())
            }
            Err(e) => match self.catch_up(lock.as_ref(), true) {
                // Recovery replayed the journal: the entries are published after all.
                Ok(()) if self.known.size >= target => {
                    let _ = lock.release();
                    Ok(())
                }
                Ok(()) => {
                    let _ = lock.release();
                    Err(e)
                }
                Err(e2) => Err(Error::Commit(format!("{e}; recovery failed: {e2}"))),
            },
        }
    }

    /// Take the writer lock, catch up and publish `entries` at once.
    fn publish_now(&mut self, entries: &[Vec<u8>]) -> Result<u64> {
        let lock = self.storage.lock_writer(self.lock_wait)?;
        // On error (the checkpoint did not check out, or recovering from an interrupted
        // writer failed) the lock is dropped unreleased: marked interrupted for the next.
        self.catch_up(lock.as_ref(), false)?;
        // A failed `release` only leaves the lock marked interrupted: the next holder
        // then checks for objects beyond the checkpoint, of which there are none. The
        // batch's outcome stands either way.
        match self.append_batch(entries) {
            Ok(first) => {
                let _ = lock.release();
                Ok(first)
            }
            Err(e) => match self.catch_up(lock.as_ref(), true) {
                Ok(()) => {
                    let _ = lock.release();
                    Err(e)
                }
                Err(e2) => Err(Error::Commit(format!("{e}; recovery failed: {e2}"))),
            },
        }
    }

    /// Under the writer lock: make the edge match the published checkpoint. The cheap
    /// path (the checkpoint file is the one this writer last saw, nobody was
    /// interrupted) reads one file and compares it. Otherwise the checkpoint's signature
    /// and origin are verified, it must extend what this writer knew (same root at the
    /// same size, or a consistency proof from the tiles from the old tree to the new
    /// one, so rewritten history is refused, not adopted), objects an interrupted
    /// writer left beyond it are removed, and the edge is reloaded from the tiles.
    /// `recover` forces the slow path (after a failed append of our own).
    fn catch_up(&mut self, lock: &dyn WriterLock, recover: bool) -> Result<()> {
        let bytes = self
            .storage
            .read(CHECKPOINT)?
            .ok_or_else(|| Error::tampered(CHECKPOINT, "missing"))?;
        let interrupted = lock.interrupted() || recover;
        if bytes == self.known.bytes && !interrupted {
            return Ok(());
        }
        let (cp, _) = Checkpoint::open(&bytes, &self.verifier, Some(&self.origin), CHECKPOINT)?;
        check_extends(self.storage.as_ref(), &self.known, &cp)?;
        if interrupted {
            discard_unpublished(self.storage.as_ref(), cp.size)?;
        }
        if interrupted || cp.size != self.edge.size {
            self.edge = Edge::load(self.storage.as_ref(), &cp)?;
        }
        self.known = Known {
            size: cp.size,
            root: cp.root,
            bytes,
        };
        self.published.store(cp.size, Ordering::Release);
        if interrupted {
            self.replay_journal()?;
        }
        Ok(())
    }

    /// Under the writer lock, with the edge at the published checkpoint: publish what
    /// an interrupted holder left in the journal, or empty a journal whose entries were
    /// published before it could be emptied (it extends an older checkpoint).
    fn replay_journal(&mut self) -> Result<()> {
        let storage = Arc::clone(&self.storage);
        let Some(journal) = storage.journal() else {
            return Ok(());
        };
        let data = journal.read()?;
        if data.is_empty() {
            return Ok(());
        }
        let what = format!("{}/{}", self.storage.location(), crate::storage::JOURNAL);
        match crate::journal::decode(&data, &self.verifier, &self.origin, &what)? {
            Some(r) if r.base_size == self.edge.size => {
                if r.base_root != self.known.root {
                    return Err(Error::tampered(
                        what,
                        format!(
                            "extends another tree of {} entries than the checkpoint's",
                            r.base_size
                        ),
                    ));
                }
                if !r.entries.is_empty() {
                    self.append_batch(&r.entries)?;
                }
            }
            Some(r) if r.base_size > self.edge.size => {
                return Err(Error::tampered(
                    what,
                    format!(
                        "extends a tree of {} entries, but the checkpoint has {}",
                        r.base_size, self.edge.size
                    ),
                ));
            }
            // Published already, or no complete frame.
            _ => {}
        }
        journal.clear()
    }

    /// Append a batch to the edge and publish it (the writer lock is held).
    fn append_batch(&mut self, entries: &[Vec<u8>]) -> Result<u64> {
        let first = self.edge.size;
        let mut files = Vec::new();
        let mut dirty = Vec::new();
        let mut completed = Vec::new();
        let mut bundle_dirty = false;
        for e in entries {
            tiles::push_entry(&mut self.edge.bundle, e)?;
            self.edge.size += 1;
            if self.edge.size % TILE_WIDTH == 0 {
                let n = self.edge.size / TILE_WIDTH - 1;
                files.push((bundle_path(n, 0), std::mem::take(&mut self.edge.bundle)));
                completed.push(format!("{}.p", bundle_path(n, 0)));
                bundle_dirty = false;
            } else {
                bundle_dirty = true;
            }
            self.push_hash(
                0,
                merkle::leaf_hash(e),
                &mut files,
                &mut dirty,
                &mut completed,
            );
        }
        let size = self.edge.size;
        // The partial bundle (up to 255 entries) is lent to the commit, not copied, and
        // taken back below whatever the outcome.
        let lent_bundle = bundle_dirty.then_some(files.len());
        if bundle_dirty {
            files.push((
                bundle_path(size / TILE_WIDTH, size % TILE_WIDTH),
                std::mem::take(&mut self.edge.bundle),
            ));
        }
        for (level, d) in dirty.iter().enumerate() {
            let lv = u32::try_from(level).unwrap_or(0);
            if let (true, Some(row)) = (*d, self.edge.levels.get(level))
                && !row.is_empty()
            {
                let hashes = tiles::hashes_at_level(size, lv);
                files.push((
                    tile_path(lv, hashes / TILE_WIDTH, hashes % TILE_WIDTH),
                    row.iter().flatten().copied().collect(),
                ));
            }
        }
        let cp = Checkpoint {
            origin: self.origin.clone(),
            size,
            root: self.edge.root(),
            extensions: Vec::new(),
        };
        let signed = cp.sign(&self.signer);
        let committed = self.storage.commit(&files, &signed);
        if let Some((_, bundle)) = lent_bundle.and_then(|i| files.get_mut(i)) {
            self.edge.bundle = std::mem::take(bundle);
        }
        committed?;
        self.known = Known {
            size,
            root: cp.root,
            bytes: signed,
        };
        // Counted before the size shows, so whoever sees the size sees the commit.
        self.commits.fetch_add(1, Ordering::Relaxed);
        self.published.store(size, Ordering::Release);
        // Partial tiles of tiles that are now full are no longer needed (C2SP allows
        // removing them once the full tile exists). Failure here loses nothing.
        for dir in completed {
            let _ = self.storage.remove(&dir);
        }
        Ok(first)
    }
}

/// One caller's pending acknowledgement.
#[derive(Debug, Default)]
struct Slot {
    state: Mutex<SlotState>,
    cv: Condvar,
}

#[derive(Debug, Default)]
struct SlotState {
    result: Option<Result<u64>>,
    waker: Option<Waker>,
    done: bool,
}

impl Slot {
    fn complete(&self, r: Result<u64>) {
        let waker = match self.state.lock() {
            Ok(mut s) => {
                s.result = Some(r);
                s.done = true;
                s.waker.take()
            }
            Err(p) => {
                let mut s = p.into_inner();
                s.result = Some(r);
                s.done = true;
                s.waker.take()
            }
        };
        self.cv.notify_all();
        if let Some(w) = waker {
            w.wake();
        }
    }

    fn wait(&self) -> Result<u64> {
        let mut g = self
            .state
            .lock()
            .map_err(|_| Error::Closed("writer state poisoned".into()))?;
        loop {
            if let Some(r) = g.result.take() {
                return r;
            }
            g = self
                .cv
                .wait(g)
                .map_err(|_| Error::Closed("writer state poisoned".into()))?;
        }
    }
}

struct Request {
    entry: Vec<u8>,
    /// Where a caller waits for the index (and then the batch is published at once);
    /// `None` for a detached append, which nothing waits for: completing a slot costs a
    /// lock and a futex wake (the condvar's notify is a system call even with no
    /// waiter), once per entry on the writer thread.
    slot: Option<Arc<Slot>>,
}

impl Request {
    fn waited(&self) -> bool {
        self.slot.is_some()
    }

    fn complete(&self, r: Result<u64>) {
        if let Some(slot) = &self.slot {
            slot.complete(r);
        }
    }
}

impl Drop for Request {
    /// A request dropped without an answer (the writer stopped) must not leave its
    /// caller waiting forever.
    fn drop(&mut self) {
        let Some(slot) = &self.slot else { return };
        let pending = match slot.state.lock() {
            Ok(s) => !s.done,
            Err(_) => true,
        };
        if pending {
            slot.complete(Err(Error::Closed(
                "the writer stopped before committing".into(),
            )));
        }
    }
}

/// The future returned by [`Log::append_async`]: resolves to the entry's index once
/// it is durable. Works with any executor (no runtime dependency).
#[derive(Debug)]
pub struct AppendFuture {
    slot: Option<Arc<Slot>>,
    early: Option<Error>,
}

impl Future for AppendFuture {
    type Output = Result<u64>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if let Some(e) = self.early.take() {
            return Poll::Ready(Err(e));
        }
        let Some(slot) = self.slot.as_ref() else {
            return Poll::Ready(Err(Error::Closed("future polled after completion".into())));
        };
        let mut g = match slot.state.lock() {
            Ok(g) => g,
            Err(_) => return Poll::Ready(Err(Error::Closed("writer state poisoned".into()))),
        };
        if let Some(r) = g.result.take() {
            drop(g);
            self.slot = None;
            return Poll::Ready(r);
        }
        g.waker = Some(cx.waker().clone());
        Poll::Pending
    }
}

/// Where an entry's room in the queue comes from.
enum Room {
    /// Taken now, if fewer than this many are counted.
    Below(usize),
    /// Taken now whatever is counted (a waited append: its caller bounds them).
    Any,
    /// Already counted by a [`Permit`].
    Permit,
}

/// Room counted in [`Log::queued`] and not yet handed to the writer; given back when
/// dropped armed.
struct Counted<'a> {
    queued: &'a AtomicUsize,
    armed: bool,
}

impl Drop for Counted<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.queued.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

/// Room for one entry in a log's queue, from [`Log::reserve`]; dropping it unused gives
/// the room back.
pub struct Permit {
    log: Option<Log>,
}

impl std::fmt::Debug for Permit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Permit")
            .field("used", &self.log.is_none())
            .finish()
    }
}

impl Permit {
    /// [`Log::append_detached`] into the reserved room: never [`Error::QueueFull`].
    pub fn append_detached(mut self, entry: Vec<u8>) -> Result<()> {
        let Some(log) = self.log.take() else {
            return Err(Error::Closed("permit already used".into()));
        };
        log.submit(entry, None, Room::Permit)
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        if let Some(log) = self.log.take() {
            log.shared.queued.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

struct Shared {
    tx: Mutex<Option<mpsc::Sender<Request>>>,
    /// Entries submitted and not yet committed, and room held by permits (the writer
    /// subtracts a batch once its commit is over, durable or failed).
    queued: Arc<AtomicUsize>,
    max_queued: usize,
    headroom: usize,
    worker: Mutex<Option<std::thread::JoinHandle<()>>>,
    published: Arc<AtomicU64>,
    commits: Arc<AtomicU64>,
    failures: Arc<AtomicU64>,
    verifier: Verifier,
    origin: String,
    storage: Arc<dyn Storage>,
}

impl Drop for Shared {
    fn drop(&mut self) {
        if let Ok(mut tx) = self.tx.lock() {
            tx.take();
        }
        if let Ok(mut w) = self.worker.lock()
            && let Some(h) = w.take()
        {
            let _ = h.join();
        }
    }
}

/// An open, writable audit log. Cheap to clone and share across threads; the writer
/// thread stops (after committing what was queued) when the last clone is dropped.
#[derive(Clone)]
pub struct Log {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Log {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Log")
            .field("origin", &self.shared.origin)
            .field("size", &self.size())
            .field("storage", &self.shared.storage.location())
            .finish()
    }
}

impl Log {
    /// Open (or create) the log in `storage`, signing checkpoints with `signer` under
    /// `origin`. Under the storage's writer lock (waiting up to
    /// [`LogOptions::lock_wait`] for it) recovers from an interrupted batch (removing
    /// unpublished objects), checks the checkpoint signature and that the tiles at the
    /// edge match its root; then releases the lock and starts the writer thread.
    ///
    /// The lock is not held while the log is open: the writer takes it again for each
    /// batch, so other writers (other `Log`s, in this process or others) can append to
    /// the same log between batches. Before each batch the writer checks the published
    /// checkpoint; when another writer appended, it verifies that checkpoint and that it
    /// extends the tree it knew (a consistency proof), and continues from there.
    pub fn open(
        storage: Arc<dyn Storage>,
        signer: Signer,
        origin: &str,
        options: LogOptions,
    ) -> Result<Log> {
        let verifier = signer.verifier();
        let lock = storage.lock_writer(options.lock_wait)?;
        let (edge, known) = match storage.read(CHECKPOINT)? {
            Some(bytes) => {
                let (cp, _) = Checkpoint::open(&bytes, &verifier, Some(origin), CHECKPOINT)?;
                // Any writer may have been interrupted before (after a crash of the
                // machine the lock file's mark cannot be trusted): always recover.
                discard_unpublished(storage.as_ref(), cp.size)?;
                let edge = Edge::load(storage.as_ref(), &cp)?;
                let known = Known {
                    size: cp.size,
                    root: cp.root,
                    bytes,
                };
                (edge, known)
            }
            None => {
                if !storage.list("tile")?.is_empty() {
                    return Err(Error::tampered(
                        format!("{}/{CHECKPOINT}", storage.location()),
                        "missing, but the log has tiles",
                    ));
                }
                // A journal always extends a published checkpoint: one left here belongs
                // to a log that was removed and must not flow into a new one.
                if storage
                    .journal()
                    .is_some_and(|j| !matches!(j.read(), Ok(d) if d.is_empty()))
                {
                    return Err(Error::tampered(
                        format!("{}/{CHECKPOINT}", storage.location()),
                        format!(
                            "missing, but the log directory has a journal ({}): move it away \
                             to start a new log",
                            crate::storage::JOURNAL
                        ),
                    ));
                }
                let cp = Checkpoint {
                    origin: origin.to_owned(),
                    size: 0,
                    root: merkle::empty_root(),
                    extensions: Vec::new(),
                };
                let bytes = cp.sign(&signer);
                storage.publish_checkpoint(&bytes)?;
                let known = Known {
                    size: 0,
                    root: cp.root,
                    bytes,
                };
                (Edge::new(0, Vec::new(), Vec::new()), known)
            }
        };
        let published = Arc::new(AtomicU64::new(edge.size));
        let commits = Arc::new(AtomicU64::new(0));
        let failures = Arc::new(AtomicU64::new(0));
        let mut writer = Writer {
            storage: Arc::clone(&storage),
            signer,
            verifier: verifier.clone(),
            origin: origin.to_owned(),
            lock_wait: options.lock_wait,
            edge,
            known,
            published: Arc::clone(&published),
            commits: Arc::clone(&commits),
            failures: Arc::clone(&failures),
            publish_interval: options.publish_interval,
            held: None,
        };
        // Entries an interrupted writer left in the journal were durable: publish them
        // (still under the lock) before anything new.
        if let Err(e) = writer.replay_journal() {
            drop(lock);
            return Err(e);
        }
        lock.release()?;
        let (tx, rx) = mpsc::channel::<Request>();
        let max_batch = options.max_batch.clamp(1, MAX_BATCH);
        let max_delay = options.max_delay;
        let queued = Arc::new(AtomicUsize::new(0));
        let in_writer = Arc::clone(&queued);
        let nice = options.writer_nice;
        let handle = std::thread::Builder::new()
            .name("warden-tlog-writer".into())
            .spawn(move || {
                if nice != 0 {
                    // Per thread on Linux; refused (say, a negative value without the
                    // privilege), the writer keeps its priority: nothing depends on it.
                    let _ = rustix::process::nice(nice);
                }
                writer_loop(&mut writer, &rx, max_batch, max_delay, &in_writer)
            })
            .map_err(|e| Error::io("audit log writer thread", e))?;
        Ok(Log {
            shared: Arc::new(Shared {
                tx: Mutex::new(Some(tx)),
                queued,
                max_queued: options.max_queued.max(1),
                headroom: options.headroom,
                worker: Mutex::new(Some(handle)),
                published,
                commits,
                failures,
                verifier,
                origin: origin.to_owned(),
                storage,
            }),
        })
    }

    /// Open (or create) a log in a directory with a signer key file; the origin is the
    /// key's name. The embedded default used by the CLI, the vault and the gateway.
    pub fn open_dir(
        dir: &std::path::Path,
        key_file: &std::path::Path,
        options: LogOptions,
    ) -> Result<Log> {
        let signer = Signer::from_file(key_file)?;
        let origin = signer.name().to_owned();
        Log::open(Arc::new(PosixStorage::new(dir)), signer, &origin, options)
    }

    /// Queue `entry`; `slot` (a waited append) is completed with its index or error.
    fn submit(&self, entry: Vec<u8>, slot: Option<Arc<Slot>>, room: Room) -> Result<()> {
        let queued = &*self.shared.queued;
        // Room taken (or brought by a permit) and not yet given to the writer: given
        // back on every early return.
        let mut held = Counted {
            queued,
            armed: matches!(room, Room::Permit),
        };
        if entry.len() > MAX_ENTRY {
            return Err(Error::EntryTooLarge(entry.len()));
        }
        let tx = self
            .shared
            .tx
            .lock()
            .map_err(|_| Error::Closed("writer state poisoned".into()))?;
        let tx = tx
            .as_ref()
            .ok_or_else(|| Error::Closed("log closed".into()))?;
        match room {
            Room::Below(limit) => {
                // Compare and swap: never counts past the limit, even for a moment.
                queued
                    .fetch_update(Ordering::AcqRel, Ordering::Acquire, |q| {
                        (q < limit).then_some(q + 1)
                    })
                    .map_err(|_| Error::QueueFull(self.shared.max_queued))?;
                held.armed = true;
            }
            Room::Any => {
                queued.fetch_add(1, Ordering::AcqRel);
                held.armed = true;
            }
            Room::Permit => {}
        }
        // A send that fails hands the request back, and dropping it completes the slot
        // with an error that the caller ignores in favour of this one.
        tx.send(Request { entry, slot })
            .map_err(|_| Error::Closed("writer stopped".into()))?;
        // The writer gives the room back once the entry's commit is over.
        held.armed = false;
        Ok(())
    }

    /// Reserve room for one entry (counted in [`Log::queued`], at most
    /// [`LogOptions::max_queued`]), to be appended later with
    /// [`Permit::append_detached`], which then cannot fail for want of room; dropping
    /// the permit unused gives the room back. [`Error::QueueFull`] when there is none.
    pub fn reserve(&self) -> Result<Permit> {
        if self
            .shared
            .tx
            .lock()
            .map_err(|_| Error::Closed("writer state poisoned".into()))?
            .is_none()
        {
            return Err(Error::Closed("log closed".into()));
        }
        let max = self.shared.max_queued;
        self.shared
            .queued
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |q| {
                (q < max).then_some(q + 1)
            })
            .map_err(|_| Error::QueueFull(max))?;
        Ok(Permit {
            log: Some(self.clone()),
        })
    }

    /// Append an entry and block until it is durable; returns its index.
    pub fn append(&self, entry: Vec<u8>) -> Result<u64> {
        let slot = Arc::new(Slot::default());
        self.submit(entry, Some(Arc::clone(&slot)), Room::Any)?;
        slot.wait()
    }

    /// Queue an entry without waiting for it. Nothing wakes the caller when it is
    /// durable; a failed commit shows in [`Log::failed_commits`] instead (callers that
    /// must fail closed check it). An `Err` means the entry was not queued.
    pub fn append_detached(&self, entry: Vec<u8>) -> Result<()> {
        let limit = self.shared.max_queued.saturating_add(self.shared.headroom);
        self.submit(entry, None, Room::Below(limit))
    }

    /// Entries submitted and not yet committed, and room held by permits (at most
    /// [`LogOptions::max_queued`] plus the headroom, and waited appends).
    pub fn queued(&self) -> usize {
        self.shared.queued.load(Ordering::Acquire)
    }

    /// [`LogOptions::max_queued`] as applied (at least 1).
    pub fn max_queued(&self) -> usize {
        self.shared.max_queued
    }

    /// Batches (and batches refused after an unrecoverable failure) whose entries were
    /// not committed, since the log was opened.
    pub fn failed_commits(&self) -> u64 {
        self.shared.failures.load(Ordering::Acquire)
    }

    /// Append an entry; the future resolves to its index once it is durable.
    pub fn append_async(&self, entry: Vec<u8>) -> AppendFuture {
        let slot = Arc::new(Slot::default());
        match self.submit(entry, Some(Arc::clone(&slot)), Room::Any) {
            Ok(()) => AppendFuture {
                slot: Some(slot),
                early: None,
            },
            Err(e) => AppendFuture {
                slot: None,
                early: Some(e),
            },
        }
    }

    /// Append a typed audit event (its canonical JSON); returns its index once durable.
    pub fn append_event(&self, event: &crate::event::AuditEvent) -> Result<u64> {
        self.append(event.to_entry()?)
    }

    /// Append a typed audit event without blocking; resolves to its index once durable.
    pub fn append_event_async(&self, event: &crate::event::AuditEvent) -> AppendFuture {
        match event.to_entry() {
            Ok(e) => self.append_async(e),
            Err(e) => AppendFuture {
                slot: None,
                early: Some(e),
            },
        }
    }

    /// Size of the last published checkpoint.
    pub fn size(&self) -> u64 {
        self.shared.published.load(Ordering::Acquire)
    }

    /// Checkpoints published by this handle's writer (each one a group commit).
    pub fn commits(&self) -> u64 {
        self.shared.commits.load(Ordering::Relaxed)
    }

    /// The log's origin.
    pub fn origin(&self) -> &str {
        &self.shared.origin
    }

    /// The verifier key of the log's signer.
    pub fn verifier(&self) -> &Verifier {
        &self.shared.verifier
    }

    /// The storage the log lives in.
    pub fn storage(&self) -> &Arc<dyn Storage> {
        &self.shared.storage
    }
}

fn writer_loop(
    writer: &mut Writer,
    rx: &mpsc::Receiver<Request>,
    max_batch: usize,
    max_delay: Duration,
    queued: &AtomicUsize,
) {
    // A full batch means more may be queued: the next one is taken without waiting.
    let mut backlog = false;
    loop {
        let first = match writer.publish_deadline() {
            // Journaled entries wait for publication: no later than their deadline.
            Some(deadline) => {
                match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                    Ok(r) => r,
                    Err(mpsc::RecvTimeoutError::Timeout) => {
                        publish_or_count(writer);
                        continue;
                    }
                    Err(mpsc::RecvTimeoutError::Disconnected) => break,
                }
            }
            None => match rx.recv() {
                Ok(r) => r,
                Err(_) => break,
            },
        };
        let mut batch = vec![first];
        if !max_delay.is_zero() && !backlog {
            // Sleep through the window rather than wait on the channel: a receiver
            // blocked in `recv_timeout` is woken by every send (a futex wake and two
            // context switches per entry, paid by every gateway request), while a
            // sleeping one costs the senders nothing. Entries arriving meanwhile are
            // drained below.
            std::thread::sleep(max_delay);
        }
        while batch.len() < max_batch {
            match rx.try_recv() {
                Ok(r) => batch.push(r),
                Err(_) => break,
            }
        }
        backlog = batch.len() == max_batch;
        let publish = batch.iter().any(Request::waited);
        let entries: Vec<Vec<u8>> = batch
            .iter_mut()
            .map(|r| std::mem::take(&mut r.entry))
            .collect();
        let taken = batch.len();
        let result = writer.commit(entries, publish);
        // The batch is no longer held: its room goes back to the callers (before they
        // are woken, so one that appends again at once finds it).
        queued.fetch_sub(taken, Ordering::AcqRel);
        match result {
            Ok(first) => {
                for (i, r) in batch.into_iter().enumerate() {
                    r.complete(Ok(first + i as u64));
                }
            }
            Err(e) => {
                writer.failures.fetch_add(1, Ordering::Release);
                let msg = e.to_string();
                for r in batch {
                    r.complete(Err(Error::Commit(msg.clone())));
                }
            }
        }
    }
    // Closing: what is journaled is published before the thread ends.
    publish_or_count(writer);
}

/// Publish journaled entries; a failure counts as a failed commit (callers that fail
/// closed watch [`Log::failed_commits`]).
fn publish_or_count(writer: &mut Writer) {
    if writer.publish_pending().is_err() {
        writer.failures.fetch_add(1, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tiles::LogReader;

    fn open(dir: &std::path::Path, signer: &Signer) -> Log {
        open_options(dir, signer, LogOptions::default()).unwrap()
    }

    #[test]
    fn appends_survive_reopen_and_match_the_recursive_root() {
        let d = tempfile::tempdir().unwrap();
        let signer = Signer::generate("warden.test/log").unwrap();
        let mut all = Vec::new();
        for round in 0..3u32 {
            let log = open(d.path(), &signer);
            let n = [1usize, 300, 70][round as usize];
            for i in 0..n {
                let e = format!("round {round} entry {i}").into_bytes();
                let idx = log.append(e.clone()).unwrap();
                assert_eq!(idx, all.len() as u64);
                all.push(e);
            }
            assert_eq!(log.size(), all.len() as u64);
        }
        let storage = PosixStorage::new(d.path());
        let (cp, _, mut r) = LogReader::open(&storage, &signer.verifier()).unwrap();
        assert_eq!(cp.size, all.len() as u64);
        let leaves: Vec<Hash> = all.iter().map(|e| merkle::leaf_hash(e)).collect();
        assert_eq!(cp.root, merkle::root_from_leaf_hashes(&leaves));
        for (i, e) in all.iter().enumerate() {
            assert_eq!(&r.entry(i as u64).unwrap(), e);
        }
    }

    #[test]
    fn concurrent_appends_get_distinct_indices() {
        let d = tempfile::tempdir().unwrap();
        let signer = Signer::generate("warden.test/log").unwrap();
        let log = open(d.path(), &signer);
        let mut hs = Vec::new();
        for t in 0..8 {
            let log = log.clone();
            hs.push(std::thread::spawn(move || {
                (0..100)
                    .map(|i| log.append(format!("{t}-{i}").into_bytes()).unwrap())
                    .collect::<Vec<_>>()
            }));
        }
        let mut idx: Vec<u64> = hs.into_iter().flat_map(|h| h.join().unwrap()).collect();
        idx.sort_unstable();
        assert_eq!(idx, (0..800).collect::<Vec<_>>());
    }

    #[test]
    fn a_request_dropped_unanswered_releases_its_caller() {
        let slot = Arc::new(Slot::default());
        drop(Request {
            entry: vec![1],
            slot: Some(Arc::clone(&slot)),
        });
        assert!(matches!(slot.wait(), Err(Error::Closed(_))));
        // An answered request keeps its answer.
        let slot = Arc::new(Slot::default());
        let r = Request {
            entry: vec![1],
            slot: Some(Arc::clone(&slot)),
        };
        r.complete(Ok(7));
        drop(r);
        assert_eq!(slot.wait().unwrap(), 7);
    }

    #[test]
    fn log_and_its_future_can_cross_threads() {
        fn send_sync<T: Send + Sync + Clone>() {}
        fn send<T: Send>() {}
        send_sync::<Log>();
        send::<AppendFuture>();
    }

    #[test]
    fn oversized_entry_is_refused_without_touching_the_log() {
        let d = tempfile::tempdir().unwrap();
        let signer = Signer::generate("warden.test/log").unwrap();
        let log = open(d.path(), &signer);
        assert!(matches!(
            log.append(vec![0; 70_000]),
            Err(Error::EntryTooLarge(70_000))
        ));
        assert_eq!(log.size(), 0);
    }

    #[test]
    fn open_discards_objects_beyond_the_checkpoint() {
        let d = tempfile::tempdir().unwrap();
        let signer = Signer::generate("warden.test/log").unwrap();
        let log = open(d.path(), &signer);
        for i in 0..300u32 {
            log.append(i.to_be_bytes().to_vec()).unwrap();
        }
        drop(log);
        // What a batch killed before its checkpoint could leave behind.
        let s = PosixStorage::new(d.path());
        let junk = [
            "tile/entries/001.p/100",
            "tile/entries/002",
            "tile/0/001.p/45",
            "tile/0/001",
            "tile/0/002.p/3",
            "tile/1/000.p/2",
            "tile/2/000.p/1",
        ];
        s.write_durable(
            &junk
                .iter()
                .map(|j| (j.to_string(), vec![9u8; 64]))
                .collect::<Vec<_>>(),
        )
        .unwrap();
        drop(s);
        let log = open(d.path(), &signer);
        let s = PosixStorage::new(d.path());
        for j in junk {
            assert_eq!(s.read(j).unwrap(), None, "{j} survived recovery");
        }
        // The published partials are intact and the log grows correctly.
        assert!(s.read("tile/entries/001.p/44").unwrap().is_some());
        assert!(s.read("tile/1/000.p/1").unwrap().is_some());
        for i in 300..600u32 {
            log.append(i.to_be_bytes().to_vec()).unwrap();
        }
        drop(log);
        crate::verify::verify_log(&s, &signer.verifier(), None).unwrap();
    }

    #[test]
    fn wrong_key_cannot_open_the_log() {
        let d = tempfile::tempdir().unwrap();
        let signer = Signer::generate("warden.test/log").unwrap();
        drop(open(d.path(), &signer));
        let other = Signer::generate("warden.test/log").unwrap();
        let e = Log::open(
            Arc::new(PosixStorage::new(d.path())),
            other,
            "warden.test/log",
            LogOptions::default(),
        )
        .unwrap_err();
        assert!(
            e.to_string().contains("no signature by the trusted key"),
            "{e}"
        );
    }

    fn open_options(dir: &std::path::Path, signer: &Signer, options: LogOptions) -> Result<Log> {
        Log::open(
            Arc::new(PosixStorage::new(dir)),
            Signer::parse(&signer.to_key_string()).unwrap(),
            "warden.test/log",
            options,
        )
    }

    fn open_with(dir: &std::path::Path, signer: &Signer, lock_wait: Duration) -> Result<Log> {
        let options = LogOptions {
            lock_wait,
            ..LogOptions::default()
        };
        open_options(dir, signer, options)
    }

    fn open_batching(dir: &std::path::Path, signer: &Signer, max_batch: usize, ms: u64) -> Log {
        let options = LogOptions {
            max_batch,
            max_delay: Duration::from_millis(ms),
            ..LogOptions::default()
        };
        open_options(dir, signer, options).unwrap()
    }

    fn wait_for_size(log: &Log, n: u64) {
        let t0 = std::time::Instant::now();
        while log.size() < n {
            assert!(
                t0.elapsed() < Duration::from_secs(20),
                "log stuck at {}",
                log.size()
            );
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    #[test]
    fn entries_queued_within_the_window_share_one_commit() {
        let d = tempfile::tempdir().unwrap();
        let signer = Signer::generate("warden.test/log").unwrap();
        let log = open_batching(d.path(), &signer, 4096, 500);
        for i in 0..50u32 {
            log.append_detached(i.to_be_bytes().to_vec()).unwrap();
        }
        wait_for_size(&log, 50);
        assert_eq!(log.commits(), 1);
        drop(log);
        assert_eq!(read_all(d.path(), &signer).len(), 50);
    }

    /// Thread ids of this process.
    #[cfg(target_os = "linux")]
    fn tasks() -> std::collections::BTreeSet<String> {
        std::fs::read_dir("/proc/self/task")
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect()
    }

    #[cfg(target_os = "linux")]
    fn voluntary_switches(tid: &str) -> u64 {
        let s = std::fs::read_to_string(format!("/proc/self/task/{tid}/status")).unwrap();
        s.lines()
            .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    }

    /// Nice value of a thread of this process (field 19 of its `stat`).
    #[cfg(target_os = "linux")]
    fn nice_of(tid: &str) -> Option<i64> {
        let s = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")).ok()?;
        let after = s.get(s.rfind(')')? + 2..)?;
        after.split(' ').nth(16)?.parse().ok()
    }

    /// `writer_nice` lowers the writer thread's priority, and only that thread's.
    #[cfg(target_os = "linux")]
    #[test]
    fn the_writer_thread_takes_its_nice_value() {
        let me = std::fs::read_to_string("/proc/thread-self/stat").unwrap();
        let base: i64 = me[me.rfind(')').unwrap() + 2..]
            .split(' ')
            .nth(16)
            .unwrap()
            .parse()
            .unwrap();
        let want = (base + 7).min(19);
        let d = tempfile::tempdir().unwrap();
        let signer = Signer::generate("warden.test/log").unwrap();
        let before = tasks();
        let options = LogOptions {
            writer_nice: 7,
            ..LogOptions::default()
        };
        let log = open_options(d.path(), &signer, options).unwrap();
        log.append(b"one".to_vec()).unwrap();
        let t0 = std::time::Instant::now();
        loop {
            let niced = tasks().difference(&before).any(|t| {
                std::fs::read_to_string(format!("/proc/self/task/{t}/comm"))
                    .is_ok_and(|c| c.trim() == "warden-tlog-wri")
                    && nice_of(t) == Some(want)
            });
            if niced {
                break;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(10),
                "no writer thread at nice {want}"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        let me_now = std::fs::read_to_string("/proc/thread-self/stat").unwrap();
        assert!(
            me_now[me_now.rfind(')').unwrap() + 2..]
                .split(' ')
                .nth(16)
                .is_some_and(|n| n == base.to_string()),
            "the caller's thread was niced too"
        );
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn entries_queued_within_the_window_do_not_wake_the_writer_each() {
        let d = tempfile::tempdir().unwrap();
        let signer = Signer::generate("warden.test/log").unwrap();
        let before = tasks();
        let log = open_batching(d.path(), &signer, 4096, 400);
        // A new thread names itself once it runs: look until it has.
        let t0 = std::time::Instant::now();
        let writer = loop {
            let found = tasks()
                .difference(&before)
                .find(|t| {
                    std::fs::read_to_string(format!("/proc/self/task/{t}/comm"))
                        .is_ok_and(|c| c.trim() == "warden-tlog-wri")
                })
                .cloned();
            if let Some(w) = found {
                break w;
            }
            assert!(t0.elapsed() < Duration::from_secs(10), "no writer thread");
            std::thread::sleep(Duration::from_millis(1));
        };
        let s0 = voluntary_switches(&writer);
        for i in 0..100u32 {
            log.append_detached(i.to_be_bytes().to_vec()).unwrap();
            std::thread::sleep(Duration::from_millis(1));
        }
        wait_for_size(&log, 100);
        let woken = voluntary_switches(&writer) - s0;
        // One sleep, then the commit's waits on the disk; a writer woken by every
        // entry would switch at least 100 times.
        assert!(
            woken < 40,
            "the writer switched {woken} times for 100 entries"
        );
    }

    #[test]
    fn a_full_batch_is_followed_without_another_window() {
        let d = tempfile::tempdir().unwrap();
        let signer = Signer::generate("warden.test/log").unwrap();
        let log = open_batching(d.path(), &signer, 10, 400);
        let t0 = std::time::Instant::now();
        for i in 0..35u32 {
            log.append_detached(i.to_be_bytes().to_vec()).unwrap();
        }
        wait_for_size(&log, 35);
        // One window, then the backlog in full batches back to back: four windows
        // would take 1.6 s.
        assert_eq!(log.commits(), 4);
        assert!(
            t0.elapsed() < Duration::from_millis(1200),
            "{:?}",
            t0.elapsed()
        );
        drop(log);
        let all = read_all(d.path(), &signer);
        assert_eq!(all.len(), 35);
        assert_eq!(all[34], 34u32.to_be_bytes().to_vec());
    }

    /// Every entry of the log, in order, read through a verified checkpoint.
    fn read_all(dir: &std::path::Path, signer: &Signer) -> Vec<Vec<u8>> {
        let s = PosixStorage::new(dir);
        crate::verify::verify_log(&s, &signer.verifier(), None).unwrap();
        let (cp, _, mut r) = LogReader::open(&s, &signer.verifier()).unwrap();
        (0..cp.size).map(|i| r.entry(i).unwrap()).collect()
    }

    #[test]
    fn two_logs_on_one_directory_interleave_appends() {
        let d = tempfile::tempdir().unwrap();
        let signer = Signer::generate("warden.test/log").unwrap();
        let a = open(d.path(), &signer);
        let b = open(d.path(), &signer);
        // Alternate single appends (each writer must catch up with the other's batch)...
        let mut got = Vec::new();
        for i in 0..40u32 {
            let (log, tag) = if i % 2 == 0 { (&a, "a") } else { (&b, "b") };
            let e = format!("{tag}-seq-{i}").into_bytes();
            let idx = log.append(e.clone()).unwrap();
            assert_eq!(idx, u64::from(i), "indices follow the shared log");
            got.push((idx, e));
        }
        // ...then both at once from many threads, across tile boundaries.
        let mut hs = Vec::new();
        for (t, log) in [a.clone(), b.clone(), a.clone(), b.clone()]
            .into_iter()
            .enumerate()
        {
            hs.push(std::thread::spawn(move || {
                (0..150)
                    .map(|i| {
                        let e = format!("t{t}-{i}").into_bytes();
                        (log.append(e.clone()).unwrap(), e)
                    })
                    .collect::<Vec<_>>()
            }));
        }
        for h in hs {
            got.extend(h.join().unwrap());
        }
        assert!(a.commits() > 1 && b.commits() > 1);
        drop((a, b));
        let all = read_all(d.path(), &signer);
        assert_eq!(all.len(), got.len());
        let mut seen = std::collections::HashSet::new();
        for (idx, e) in &got {
            assert!(seen.insert(*idx), "index {idx} given twice");
            assert_eq!(&all[*idx as usize], e, "entry at {idx}");
        }
        // Indices 0..n, each entry once.
        let distinct: std::collections::HashSet<&Vec<u8>> = all.iter().collect();
        assert_eq!(distinct.len(), all.len());
    }

    /// Build, in `dir`, a log holding `entries`, signed by `signer`.
    fn build(dir: &std::path::Path, signer: &Signer, entries: &[Vec<u8>]) {
        let log = open(dir, signer);
        for e in entries {
            log.append(e.clone()).unwrap();
        }
    }

    fn replace_log(dir: &std::path::Path, with: &std::path::Path) {
        for name in ["checkpoint", "tile"] {
            let p = dir.join(name);
            if p.is_dir() {
                std::fs::remove_dir_all(&p).unwrap();
            } else {
                std::fs::remove_file(&p).unwrap();
            }
        }
        let copy = std::process::Command::new("cp")
            .arg("-a")
            .arg(with.join("checkpoint"))
            .arg(with.join("tile"))
            .arg(dir)
            .status()
            .unwrap();
        assert!(copy.success());
    }

    #[test]
    fn history_rewritten_between_batches_is_refused() {
        let signer = Signer::generate("warden.test/log").unwrap();
        let entries = |tag: &str, n: u32| -> Vec<Vec<u8>> {
            (0..n).map(|i| format!("{tag} {i}").into_bytes()).collect()
        };
        // Three cases: a longer log whose first entries differ (the consistency proof
        // fails), one of the same size with other entries, and a shorter one.
        for (case, forged) in [
            ("longer", {
                let mut f = entries("orig", 300);
                f[7] = b"forged".to_vec();
                f.extend(entries("more", 100));
                f
            }),
            ("same size", {
                let mut f = entries("orig", 300);
                f[299] = b"forged".to_vec();
                f
            }),
            ("shorter", entries("orig", 200)),
        ] {
            let d = tempfile::tempdir().unwrap();
            let log = open(d.path(), &signer);
            for e in entries("orig", 300) {
                log.append(e).unwrap();
            }
            // A third party with the signing key writes another history in place.
            let other = tempfile::tempdir().unwrap();
            build(other.path(), &signer, &forged);
            replace_log(d.path(), other.path());
            let e = log.append(b"after".to_vec()).unwrap_err();
            let msg = e.to_string();
            assert!(matches!(e, Error::Commit(_)), "{case}: {e}");
            let want = if case == "shorter" {
                "the log shrank from 300 to 200 entries"
            } else {
                "history was rewritten"
            };
            assert!(msg.contains(want), "{case}: {msg}");
            assert_eq!(log.failed_commits(), 1, "{case}");
            // It stays refused: the writer does not adopt the forged tree later either.
            assert!(log.append(b"again".to_vec()).is_err(), "{case}");
            assert_eq!(log.size(), 300, "{case}");
            drop(log);
            // Nothing was appended on top of the forged log.
            assert_eq!(read_all(d.path(), &signer), forged, "{case}");
        }
    }

    #[test]
    fn a_legitimate_append_by_another_writer_is_verified_and_adopted() {
        let d = tempfile::tempdir().unwrap();
        let signer = Signer::generate("warden.test/log").unwrap();
        let a = open(d.path(), &signer);
        a.append(b"first".to_vec()).unwrap();
        // Another writer appends 600 entries (crossing tile boundaries at two levels of
        // the edge) while `a` stays open.
        let b = open(d.path(), &signer);
        for i in 0..600u32 {
            b.append(i.to_be_bytes().to_vec()).unwrap();
        }
        drop(b);
        assert_eq!(a.size(), 1, "nothing read before the next batch");
        assert_eq!(a.append(b"last".to_vec()).unwrap(), 601);
        assert_eq!(a.size(), 602);
        drop(a);
        let all = read_all(d.path(), &signer);
        assert_eq!(all.len(), 602);
        assert_eq!(all[601], b"last");
    }

    #[test]
    fn a_checkpoint_signed_by_another_key_is_refused() {
        let d = tempfile::tempdir().unwrap();
        let signer = Signer::generate("warden.test/log").unwrap();
        let a = open(d.path(), &signer);
        a.append(b"one".to_vec()).unwrap();
        let other = tempfile::tempdir().unwrap();
        let intruder = Signer::generate("warden.test/log").unwrap();
        build(other.path(), &intruder, &[b"one".to_vec(), b"two".to_vec()]);
        replace_log(d.path(), other.path());
        let e = a.append(b"three".to_vec()).unwrap_err();
        assert!(
            e.to_string().contains("no signature by the trusted key"),
            "{e}"
        );
    }

    #[test]
    fn a_stuck_lock_holder_times_out_with_a_clear_error() {
        let d = tempfile::tempdir().unwrap();
        let signer = Signer::generate("warden.test/log").unwrap();
        let log = open_with(d.path(), &signer, Duration::from_millis(300)).unwrap();
        log.append(b"before".to_vec()).unwrap();
        let other = PosixStorage::new(d.path());
        let held = other.lock_writer(Duration::ZERO).unwrap();
        let t0 = std::time::Instant::now();
        let e = log.append(b"blocked".to_vec()).unwrap_err();
        assert!(t0.elapsed() >= Duration::from_millis(300));
        assert!(
            e.to_string().contains(
                "no writer lock after waiting 0.3 s: the audit log is in use by another writer"
            ),
            "{e}"
        );
        assert_eq!(log.failed_commits(), 1);
        // Opening waits the same way and fails with the typed error.
        let e = open_with(d.path(), &signer, Duration::from_millis(100)).unwrap_err();
        assert!(matches!(e, Error::Locked(_)), "{e}");
        // Once the holder lets go, appends go through again.
        held.release().unwrap();
        assert_eq!(log.append(b"after".to_vec()).unwrap(), 1);
        drop(log);
        assert_eq!(
            read_all(d.path(), &signer),
            vec![b"before".to_vec(), b"after".to_vec()]
        );
    }

    #[test]
    fn a_writer_recovers_after_another_writer_dies_mid_batch() {
        let d = tempfile::tempdir().unwrap();
        let signer = Signer::generate("warden.test/log").unwrap();
        let log = open(d.path(), &signer);
        for i in 0..300u32 {
            log.append(i.to_be_bytes().to_vec()).unwrap();
        }
        // Another writer takes the lock, writes objects of a batch it never publishes,
        // and dies (its lock goes away unreleased).
        let other = PosixStorage::new(d.path());
        let held = other.lock_writer(Duration::ZERO).unwrap();
        let junk = [
            "tile/entries/001.p/100",
            "tile/0/001.p/150",
            "tile/0/002.p/3",
        ];
        other
            .write_durable(
                &junk
                    .iter()
                    .map(|j| (j.to_string(), vec![9u8; 64]))
                    .collect::<Vec<_>>(),
            )
            .unwrap();
        drop(held);
        // The open log removes them under the lock before its next batch.
        log.append(b"next".to_vec()).unwrap();
        for j in junk {
            assert_eq!(other.read(j).unwrap(), None, "{j} survived recovery");
        }
        for i in 0..200u32 {
            log.append(i.to_le_bytes().to_vec()).unwrap();
        }
        drop(log);
        assert_eq!(read_all(d.path(), &signer).len(), 501);
    }

    #[test]
    fn a_busy_writer_does_not_starve_another() {
        // One log commits back to back; another must still get the lock for its batches
        // well within the wait.
        let d = tempfile::tempdir().unwrap();
        let signer = Signer::generate("warden.test/log").unwrap();
        let busy = open(d.path(), &signer);
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let h = {
            let (busy, stop) = (busy.clone(), Arc::clone(&stop));
            std::thread::spawn(move || {
                let mut n = 0u32;
                while !stop.load(Ordering::Relaxed) {
                    busy.append(n.to_be_bytes().to_vec()).unwrap();
                    n += 1;
                }
                n
            })
        };
        let other = open_with(d.path(), &signer, Duration::from_secs(10)).unwrap();
        for i in 0..20u32 {
            other.append(format!("other {i}").into_bytes()).unwrap();
        }
        stop.store(true, Ordering::Relaxed);
        let n = h.join().unwrap();
        drop((busy, other));
        assert_eq!(read_all(d.path(), &signer).len(), n as usize + 20);
    }

    fn open_journaling(dir: &std::path::Path, signer: &Signer, interval: Duration) -> Log {
        let options = LogOptions {
            max_delay: Duration::from_millis(1),
            publish_interval: interval,
            lock_wait: Duration::from_secs(20),
            ..LogOptions::default()
        };
        open_options(dir, signer, options).unwrap()
    }

    /// Entries in the directory's journal (decoded and verified), 0 when none.
    fn journaled(dir: &std::path::Path, signer: &Signer) -> usize {
        let s = PosixStorage::new(dir);
        let data = s.journal().unwrap().read().unwrap();
        crate::journal::decode(&data, &signer.verifier(), signer.name(), "journal")
            .unwrap()
            .map_or(0, |r| r.entries.len())
    }

    fn published(dir: &std::path::Path, signer: &Signer) -> u64 {
        let s = PosixStorage::new(dir);
        let bytes = s.read(CHECKPOINT).unwrap().unwrap();
        Checkpoint::open(&bytes, &signer.verifier(), None, "cp")
            .unwrap()
            .0
            .size
    }

    fn until(what: &str, mut f: impl FnMut() -> bool) {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while !f() {
            assert!(
                std::time::Instant::now() < deadline,
                "timed out waiting: {what}"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn detached_entries_are_journaled_and_a_waiting_append_publishes_them() {
        let d = tempfile::tempdir().unwrap();
        let signer = Signer::generate("warden.test/log").unwrap();
        let log = open_journaling(d.path(), &signer, Duration::from_secs(3600));
        for i in 0..50u32 {
            log.append_detached(i.to_be_bytes().to_vec()).unwrap();
        }
        until("50 journaled entries", || {
            journaled(d.path(), &signer) == 50
        });
        // Durable, not published: readers still see the empty tree.
        assert_eq!(log.size(), 0);
        assert_eq!(published(d.path(), &signer), 0);
        assert_eq!(log.commits(), 0);
        // A caller waiting for an index gets it only once everything is published.
        assert_eq!(log.append(b"waited".to_vec()).unwrap(), 50);
        assert_eq!(log.size(), 51);
        assert_eq!(published(d.path(), &signer), 51);
        assert_eq!(journaled(d.path(), &signer), 0);
        drop(log);
        let all = read_all(d.path(), &signer);
        assert_eq!(all.len(), 51);
        assert_eq!(all[49], 49u32.to_be_bytes().to_vec());
        assert_eq!(all[50], b"waited".to_vec());
    }

    #[test]
    fn journaled_entries_are_published_within_the_interval_and_on_close() {
        let d = tempfile::tempdir().unwrap();
        let signer = Signer::generate("warden.test/log").unwrap();
        let log = open_journaling(d.path(), &signer, Duration::from_millis(100));
        for i in 0..300u32 {
            log.append_detached(i.to_be_bytes().to_vec()).unwrap();
        }
        until("300 published", || log.size() == 300);
        assert_eq!(journaled(d.path(), &signer), 0);
        drop(log);
        // Closing publishes what is journaled, however long the interval.
        let log = open_journaling(d.path(), &signer, Duration::from_secs(3600));
        for i in 0..20u32 {
            log.append_detached(i.to_le_bytes().to_vec()).unwrap();
        }
        drop(log);
        assert_eq!(published(d.path(), &signer), 320);
        assert_eq!(read_all(d.path(), &signer).len(), 320);
    }

    /// What a writer leaves when it dies holding journaled entries: frames extending the
    /// published checkpoint, and the lock dropped unreleased.
    fn die_with_journal(dir: &std::path::Path, signer: &Signer, entries: &[Vec<u8>]) {
        let s = PosixStorage::new(dir);
        let held = s.lock_writer(Duration::from_secs(20)).unwrap();
        let bytes = s.read(CHECKPOINT).unwrap().unwrap();
        let (cp, _) = Checkpoint::open(&bytes, &signer.verifier(), None, "cp").unwrap();
        let (a, b) = entries.split_at(entries.len() / 2);
        let mut first = cp.size;
        for part in [a, b] {
            let frame =
                crate::journal::encode_frame(signer, signer.name(), cp.size, &cp.root, first, part)
                    .unwrap();
            s.journal().unwrap().append(&frame).unwrap();
            first += part.len() as u64;
        }
        drop(held);
    }

    #[test]
    fn entries_a_dead_writer_journaled_are_published_by_the_next_one() {
        let d = tempfile::tempdir().unwrap();
        let signer = Signer::generate("warden.test/log").unwrap();
        let log = open(d.path(), &signer);
        for i in 0..10u32 {
            log.append(i.to_be_bytes().to_vec()).unwrap();
        }
        let lost: Vec<Vec<u8>> = (0..7)
            .map(|i| format!("journaled {i}").into_bytes())
            .collect();
        die_with_journal(d.path(), &signer, &lost);
        // The open log's next batch finds the lock interrupted and replays the journal
        // first: the dead writer's entries keep the indices it journaled them at.
        assert_eq!(log.append(b"after".to_vec()).unwrap(), 17);
        assert_eq!(journaled(d.path(), &signer), 0);
        drop(log);
        let all = read_all(d.path(), &signer);
        assert_eq!(&all[10..17], lost.as_slice());
        assert_eq!(all[17], b"after".to_vec());

        // Opening the log recovers too (after a crash of the machine, say).
        let more: Vec<Vec<u8>> = (0..4).map(|i| format!("more {i}").into_bytes()).collect();
        die_with_journal(d.path(), &signer, &more);
        let log = open(d.path(), &signer);
        assert_eq!(log.size(), 22);
        drop(log);
        assert_eq!(&read_all(d.path(), &signer)[18..22], more.as_slice());
    }

    #[test]
    fn a_journal_already_published_is_not_replayed_again() {
        let d = tempfile::tempdir().unwrap();
        let signer = Signer::generate("warden.test/log").unwrap();
        let log = open_journaling(d.path(), &signer, Duration::from_secs(3600));
        for i in 0..5u32 {
            log.append_detached(i.to_be_bytes().to_vec()).unwrap();
        }
        until("5 journaled", || journaled(d.path(), &signer) == 5);
        let stale = std::fs::read(d.path().join(crate::storage::JOURNAL)).unwrap();
        log.append(b"publish".to_vec()).unwrap();
        drop(log);
        // A crash between publication and emptying the journal leaves it behind.
        std::fs::write(d.path().join(crate::storage::JOURNAL), &stale).unwrap();
        let log = open(d.path(), &signer);
        assert_eq!(log.size(), 6);
        assert_eq!(journaled(d.path(), &signer), 0);
        drop(log);
        assert_eq!(read_all(d.path(), &signer).len(), 6);
    }

    #[test]
    fn a_journal_frame_signed_by_another_key_is_never_published() {
        let d = tempfile::tempdir().unwrap();
        let signer = Signer::generate("warden.test/log").unwrap();
        drop(open(d.path(), &signer));
        let forger = Signer::generate("warden.test/log").unwrap();
        let s = PosixStorage::new(d.path());
        let frame = |by: &Signer, first: u64, e: &[u8]| {
            crate::journal::encode_frame(
                by,
                "warden.test/log",
                0,
                &merkle::empty_root(),
                first,
                &[e.to_vec()],
            )
            .unwrap()
        };
        // Alone, it reads as a torn write: ignored, nothing published.
        s.journal()
            .unwrap()
            .append(&frame(&forger, 0, b"forged"))
            .unwrap();
        let log = open(d.path(), &signer);
        assert_eq!(log.size(), 0);
        drop(log);
        // Followed by a genuine frame, it is tampering: the log refuses to open.
        s.journal()
            .unwrap()
            .append(&frame(&forger, 0, b"forged"))
            .unwrap();
        s.journal()
            .unwrap()
            .append(&frame(&signer, 0, b"genuine"))
            .unwrap();
        let e = open_options(d.path(), &signer, LogOptions::default()).unwrap_err();
        assert!(
            e.to_string().contains("signed by the log's key follows"),
            "{e}"
        );
        assert!(e.to_string().contains(".journal"), "{e}");
        assert_eq!(published(d.path(), &signer), 0);
    }

    #[test]
    fn a_journal_without_a_checkpoint_is_refused() {
        let d = tempfile::tempdir().unwrap();
        let signer = Signer::generate("warden.test/log").unwrap();
        let frame = crate::journal::encode_frame(
            &signer,
            "warden.test/log",
            0,
            &merkle::empty_root(),
            0,
            &[b"old".to_vec()],
        )
        .unwrap();
        let s = PosixStorage::new(d.path());
        std::fs::create_dir_all(d.path()).unwrap();
        s.journal().unwrap().append(&frame).unwrap();
        let e = open_options(d.path(), &signer, LogOptions::default()).unwrap_err();
        assert!(e.to_string().contains("move it away"), "{e}");
        std::fs::remove_file(d.path().join(crate::storage::JOURNAL)).unwrap();
        assert_eq!(open(d.path(), &signer).size(), 0);
    }

    #[test]
    fn another_writer_waits_for_the_journaling_one_and_both_entries_land_once() {
        let d = tempfile::tempdir().unwrap();
        let signer = Signer::generate("warden.test/log").unwrap();
        let journaling = open_journaling(d.path(), &signer, Duration::from_millis(300));
        // (The interval stays below the plain writer's 20 s lock wait, as the gateway's
        // publish_ms stays below the commands' 30 s.)
        let plain = open_with(d.path(), &signer, Duration::from_secs(20)).unwrap();
        for round in 0..3u32 {
            for i in 0..10u32 {
                journaling
                    .append_detached(format!("j{round}-{i}").into_bytes())
                    .unwrap();
            }
            // Journaled, or already published if the interval ran out first.
            let want = u64::from(round) * 11 + 10;
            until("journaled", || {
                journaled(d.path(), &signer) == 10 || published(d.path(), &signer) >= want
            });
            // The journaling writer holds the lock: this waits for its publication.
            let at = plain.append(format!("p{round}").into_bytes()).unwrap();
            assert_eq!(at, u64::from(round) * 11 + 10);
        }
        drop((journaling, plain));
        let all = read_all(d.path(), &signer);
        assert_eq!(all.len(), 33);
        assert_eq!(all[10], b"p0".to_vec());
        assert_eq!(all[32], b"p2".to_vec());
    }

    #[test]
    fn unpublished_entries_never_exceed_one_batch_of_recovery_reach() {
        let d = tempfile::tempdir().unwrap();
        let signer = Signer::generate("warden.test/log").unwrap();
        let log = open_journaling(d.path(), &signer, Duration::from_secs(3600));
        let n = MAX_BATCH + 3000;
        for i in 0..n {
            log.append_detached((i as u32).to_be_bytes().to_vec())
                .unwrap();
        }
        // Everything is durable: published, or journaled within one MAX_BATCH.
        until("all durable", || {
            log.size() + journaled(d.path(), &signer) as u64 == n as u64
        });
        let j = journaled(d.path(), &signer);
        assert!(j <= MAX_BATCH, "{j} entries wait in the journal");
        assert!(log.size() >= 3000, "published {}", log.size());
        drop(log);
        assert_eq!(read_all(d.path(), &signer).len(), n);
    }

    /// A PosixStorage whose commits fail while `fail` is set (a full or failing disk).
    #[derive(Debug)]
    struct Flaky {
        inner: PosixStorage,
        fail: std::sync::atomic::AtomicBool,
    }

    impl Storage for Flaky {
        fn read(&self, name: &str) -> Result<Option<Vec<u8>>> {
            self.inner.read(name)
        }
        fn write_durable(&self, objects: &[(String, Vec<u8>)]) -> Result<()> {
            self.inner.write_durable(objects)
        }
        fn publish_checkpoint(&self, data: &[u8]) -> Result<()> {
            self.inner.publish_checkpoint(data)
        }
        fn commit(&self, objects: &[(String, Vec<u8>)], checkpoint: &[u8]) -> Result<()> {
            if self.fail.load(Ordering::SeqCst) {
                return Err(Error::Commit("injected: disk full".into()));
            }
            self.inner.commit(objects, checkpoint)
        }
        fn remove(&self, name: &str) -> Result<()> {
            self.inner.remove(name)
        }
        fn list(&self, prefix: &str) -> Result<Vec<String>> {
            self.inner.list(prefix)
        }
        fn lock_writer(&self, wait: Duration) -> Result<Box<dyn WriterLock>> {
            self.inner.lock_writer(wait)
        }
        fn location(&self) -> String {
            self.inner.location()
        }
        fn journal(&self) -> Option<&dyn crate::storage::Journal> {
            self.inner.journal()
        }
    }

    /// After a failed publication another writer publishes and empties the journal; the
    /// first writer's next frame must land at the file's start, not behind a hole at
    /// the length it remembered (which made the journal undecodable after a crash). And
    /// an append reported as failed is never published later.
    #[test]
    fn a_writer_appends_to_the_journal_another_emptied_and_failed_appends_stay_out() {
        let d = tempfile::tempdir().unwrap();
        let signer = Signer::generate("warden.test/log").unwrap();
        let flaky = Arc::new(Flaky {
            inner: PosixStorage::new(d.path()),
            fail: std::sync::atomic::AtomicBool::new(false),
        });
        let key = || Signer::parse(&signer.to_key_string()).unwrap();
        let options = LogOptions {
            max_delay: Duration::from_millis(1),
            publish_interval: Duration::from_secs(3600),
            lock_wait: Duration::from_secs(20),
            ..LogOptions::default()
        };
        let a = Log::open(flaky.clone(), key(), "warden.test/log", options).unwrap();
        for i in 0..5u32 {
            a.append_detached(i.to_be_bytes().to_vec()).unwrap();
        }
        until("5 journaled", || journaled(d.path(), &signer) == 5);
        flaky.fail.store(true, Ordering::SeqCst);
        assert!(a.append(b"waited".to_vec()).is_err());
        flaky.fail.store(false, Ordering::SeqCst);
        // Another writer recovers: publishes the 5 journaled entries (not the failed
        // append) and empties the journal.
        let b = open(d.path(), &signer);
        assert_eq!(b.size(), 5);
        assert_eq!(b.append(b"b".to_vec()).unwrap(), 5);
        drop(b);
        a.append_detached(b"late".to_vec()).unwrap();
        until("late journaled", || journaled(d.path(), &signer) == 1);
        // `a` dies now: the next writer opens a copy of the directory as it is.
        let crashed = tempfile::tempdir().unwrap();
        let cp = std::process::Command::new("cp")
            .arg("-a")
            .arg(format!("{}/.", d.path().display()))
            .arg(crashed.path())
            .status()
            .unwrap();
        assert!(cp.success());
        let next = open(crashed.path(), &signer);
        assert_eq!(next.size(), 7);
        drop(next);
        let all = read_all(crashed.path(), &signer);
        assert_eq!(all[5], b"b".to_vec());
        assert_eq!(all[6], b"late".to_vec());
        assert!(!all.contains(&b"waited".to_vec()));
        drop(a);
    }

    /// A PosixStorage that grants its writer lock only while `held` is clear: a writer
    /// stalled by a slow disk or by another writer.
    #[derive(Debug)]
    struct Gated {
        inner: PosixStorage,
        held: std::sync::atomic::AtomicBool,
    }

    impl Storage for Gated {
        fn read(&self, name: &str) -> Result<Option<Vec<u8>>> {
            self.inner.read(name)
        }
        fn write_durable(&self, objects: &[(String, Vec<u8>)]) -> Result<()> {
            self.inner.write_durable(objects)
        }
        fn publish_checkpoint(&self, data: &[u8]) -> Result<()> {
            self.inner.publish_checkpoint(data)
        }
        fn remove(&self, name: &str) -> Result<()> {
            self.inner.remove(name)
        }
        fn list(&self, prefix: &str) -> Result<Vec<String>> {
            self.inner.list(prefix)
        }
        fn lock_writer(&self, wait: Duration) -> Result<Box<dyn WriterLock>> {
            while self.held.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(1));
            }
            self.inner.lock_writer(wait)
        }
        fn location(&self) -> String {
            self.inner.location()
        }
    }

    /// Opens the gate when dropped, also when a test fails: the writer can then finish
    /// and the log close (its drop waits for the writer).
    struct Opens<'a>(&'a Gated);

    impl Drop for Opens<'_> {
        fn drop(&mut self) {
            self.0.held.store(false, Ordering::SeqCst);
        }
    }

    /// While the writer cannot commit, at most `max_queued` entries wait (permits
    /// count); the next detached append or reservation is refused without being queued,
    /// `headroom` more are open to detached appends only, waited appends are never
    /// refused for room, and the room comes back once the writer has committed.
    #[test]
    fn appends_beyond_max_queued_are_refused_until_the_writer_catches_up() {
        let d = tempfile::tempdir().unwrap();
        let signer = Signer::generate("warden.test/log").unwrap();
        let gated = Arc::new(Gated {
            inner: PosixStorage::new(d.path()),
            held: std::sync::atomic::AtomicBool::new(false),
        });
        let options = LogOptions {
            max_queued: 3,
            headroom: 1,
            ..LogOptions::default()
        };
        let key = Signer::parse(&signer.to_key_string()).unwrap();
        let log = Log::open(gated.clone(), key, "warden.test/log", options).unwrap();
        let opens = Opens(&gated);
        gated.held.store(true, Ordering::SeqCst);
        log.append_detached(vec![0]).unwrap();
        let p1 = log.reserve().unwrap();
        let p2 = log.reserve().unwrap();
        assert_eq!(log.queued(), 3);
        assert!(
            matches!(log.reserve(), Err(Error::QueueFull(3))),
            "a fourth entry was reserved"
        );
        // An unused permit gives its room back.
        drop(p2);
        assert_eq!(log.queued(), 2);
        let p2 = log.reserve().unwrap();
        // The headroom takes one detached entry, not a reservation.
        log.append_detached(b"h".to_vec()).unwrap();
        assert!(
            matches!(log.append_detached(b"x".to_vec()), Err(Error::QueueFull(3))),
            "a detached entry beyond the headroom was queued"
        );
        assert!(matches!(log.reserve(), Err(Error::QueueFull(3))));
        // Reserved room is always there.
        p1.append_detached(vec![1]).unwrap();
        p2.append_detached(vec![2]).unwrap();
        assert_eq!(log.queued(), 4);
        // A waited append is queued (its caller waits for room on the disk).
        let waiter = {
            let log = log.clone();
            std::thread::spawn(move || log.append(b"w".to_vec()))
        };
        until("the waited entry queued", || log.queued() == 5);
        drop(opens);
        assert_eq!(waiter.join().unwrap().unwrap(), 4);
        until("the queue drained", || log.queued() == 0);
        assert_eq!(log.append(b"z".to_vec()).unwrap(), 5);
        drop(log);
        assert_eq!(
            read_all(d.path(), &signer),
            vec![
                vec![0],
                b"h".to_vec(),
                vec![1],
                vec![2],
                b"w".to_vec(),
                b"z".to_vec()
            ]
        );
    }
}
