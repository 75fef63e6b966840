//! The writer's journal: entries made durable before they are published.
//!
//! Publishing a batch writes the entry bundle, the partial tiles and the checkpoint as
//! new files (created, synced, renamed, their directories synced). With
//! [`LogOptions::publish_interval`](crate::log::LogOptions::publish_interval) set, a
//! writer instead appends each batch to one journal file and syncs that file only;
//! the tiles and the signed checkpoint follow at most one interval later (at once when
//! a caller waits for an index). The writer holds the writer lock from its first
//! journaled batch until it has published, so the journal always extends the
//! published checkpoint.
//!
//! A frame is `u32 LE note length ‖ signed note ‖ u32 LE bundle length ‖ entry
//! bundle`. The note (signed by the log's key, like checkpoints) names the checkpoint
//! the journal extends (size and root), the index of the frame's first entry, the
//! entry count and the SHA-256 of the bundle:
//!
//! ```text
//! warden-tlog-journal/1
//! <origin>
//! <base size>
//! <base root, base64>
//! <first index>
//! <entry count>
//! <SHA-256 of the bundle, base64>
//! ```
//!
//! So nobody without the log's key can get entries into the log through its journal,
//! and frames cannot be reordered or dropped from the middle unnoticed. Only the last
//! frame can be incomplete after a crash (each append is synced before the next): an
//! incomplete last frame, or one whose bytes did not all land, was never durable and
//! is ignored. A frame signed by another key, or a bad frame followed by more data, is
//! refused as tampering.

use crate::error::{Error, Result};
use crate::merkle::{Hash, sha256};
use crate::note::{Note, Signer, Verifier};
use crate::tiles;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;

/// First line of every frame's note.
pub const FORMAT: &str = "warden-tlog-journal/1";
/// Largest note a frame may carry (origin, numbers, hashes and one signature line).
const MAX_FRAME_NOTE: usize = 4096;

/// What a journal holds: entries appended to the tree of `base_size` entries with root
/// `base_root`, from index `base_size` on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replay {
    /// Size of the checkpoint the journal extends.
    pub base_size: u64,
    /// Root of that checkpoint.
    pub base_root: Hash,
    /// The journaled entries, in order.
    pub entries: Vec<Vec<u8>>,
}

/// One frame holding `entries` (indices `first..`), extending the checkpoint
/// (`base_size`, `base_root`), signed by `signer` under `origin`.
pub fn encode_frame(
    signer: &Signer,
    origin: &str,
    base_size: u64,
    base_root: &Hash,
    first: u64,
    entries: &[Vec<u8>],
) -> Result<Vec<u8>> {
    let mut bundle = Vec::with_capacity(entries.iter().map(|e| e.len() + 2).sum());
    for e in entries {
        tiles::push_entry(&mut bundle, e)?;
    }
    let text = format!(
        "{FORMAT}\n{origin}\n{base_size}\n{}\n{first}\n{}\n{}\n",
        B64.encode(base_root),
        entries.len(),
        B64.encode(sha256(&bundle)),
    );
    let note = signer.sign(&text).to_bytes();
    let mut out = Vec::with_capacity(8 + note.len() + bundle.len());
    out.extend_from_slice(&len32(note.len())?.to_le_bytes());
    out.extend_from_slice(&note);
    out.extend_from_slice(&len32(bundle.len())?.to_le_bytes());
    out.extend_from_slice(&bundle);
    Ok(out)
}

fn len32(n: usize) -> Result<u32> {
    u32::try_from(n).map_err(|_| Error::Commit(format!("journal frame of {n} bytes is too large")))
}

/// The fields of a frame's note text.
struct Header {
    base_size: u64,
    base_root: Hash,
    first: u64,
    count: u64,
    digest: Hash,
}

fn parse_header(text: &str, origin: &str, what: &str) -> Result<Header> {
    let bad = |r: &str| Error::tampered(what, format!("journal frame: {r}"));
    let lines: Vec<&str> = text
        .strip_suffix('\n')
        .unwrap_or(text)
        .split('\n')
        .collect();
    let [format, o, base_size, base_root, first, count, digest] = lines.as_slice() else {
        return Err(bad("wrong number of lines"));
    };
    if *format != FORMAT {
        return Err(bad("unknown format"));
    }
    if *o != origin {
        return Err(bad(&format!("origin {o:?}, expected {origin:?}")));
    }
    let num = |s: &str, name: &str| {
        s.parse::<u64>()
            .map_err(|_| bad(&format!("{name} is not a number")))
    };
    let hash = |s: &str, name: &str| -> Result<Hash> {
        B64.decode(s)
            .ok()
            .and_then(|b| Hash::try_from(b.as_slice()).ok())
            .ok_or_else(|| bad(&format!("{name} is not a base64 SHA-256")))
    };
    Ok(Header {
        base_size: num(base_size, "base size")?,
        base_root: hash(base_root, "base root")?,
        first: num(first, "first index")?,
        count: num(count, "entry count")?,
        digest: hash(digest, "bundle hash")?,
    })
}

/// Read `n` bytes at `*at`, or `None` when the data ends first.
fn take<'a>(data: &'a [u8], at: &mut usize, n: usize) -> Option<&'a [u8]> {
    let end = at.checked_add(n)?;
    let s = data.get(*at..end)?;
    *at = end;
    Some(s)
}

fn take_u32(data: &[u8], at: &mut usize) -> Option<usize> {
    let b = take(data, at, 4)?;
    let a: [u8; 4] = b.try_into().ok()?;
    usize::try_from(u32::from_le_bytes(a)).ok()
}

/// The entries of a frame's bundle: the entry-bundle encoding (`u16` big-endian length,
/// then the bytes), but as many as the batch held, not at most one tile's 256.
fn parse_entries(mut b: &[u8], what: &str) -> Result<Vec<Vec<u8>>> {
    let mut out = Vec::new();
    while !b.is_empty() {
        let (Some(&hi), Some(&lo)) = (b.first(), b.get(1)) else {
            return Err(Error::tampered(
                what,
                "journal frame: truncated entry length",
            ));
        };
        let len = usize::from(u16::from_be_bytes([hi, lo]));
        let Some(e) = b.get(2..2 + len) else {
            return Err(Error::tampered(what, "journal frame: truncated entry"));
        };
        out.push(e.to_vec());
        b = b.get(2 + len..).unwrap_or_default();
    }
    Ok(out)
}

/// How reading one frame went.
enum Frame {
    /// A verified frame.
    Good(Header, Vec<Vec<u8>>),
    /// The data ends inside the frame: the last append was torn.
    Torn,
    /// A frame that does not verify: garbage where the last append did not land, or
    /// tampering if a genuine frame follows.
    Bad,
}

/// The frame starting at `*at` (which is left at its end).
fn frame(
    data: &[u8],
    at: &mut usize,
    verifier: &Verifier,
    origin: &str,
    what: &str,
) -> Result<Frame> {
    let Some(note_len) = take_u32(data, at) else {
        return Ok(Frame::Torn);
    };
    if note_len > MAX_FRAME_NOTE {
        return Ok(Frame::Bad);
    }
    let Some(note) = take(data, at, note_len) else {
        return Ok(Frame::Torn);
    };
    let Some(len) = take_u32(data, at) else {
        return Ok(Frame::Torn);
    };
    let Some(bundle) = take(data, at, len) else {
        return Ok(Frame::Torn);
    };
    let Ok(note) = Note::parse(note, what) else {
        return Ok(Frame::Bad);
    };
    // Zeroed blocks inside a torn note still parse: an unverifiable note is a bad frame,
    // whose verdict (torn tail or tampering) depends on what follows it.
    if note.verify(verifier, what).is_err() {
        return Ok(Frame::Bad);
    }
    // Signed by the log's key: from here on a mismatch is not a torn write.
    let h = parse_header(&note.text, origin, what)?;
    if sha256(bundle) != h.digest {
        return Ok(Frame::Bad);
    }
    let entries = parse_entries(bundle, what)?;
    if entries.len() as u64 != h.count {
        return Err(Error::tampered(
            what,
            format!(
                "journal frame: {} entries, its note says {}",
                entries.len(),
                h.count
            ),
        ));
    }
    Ok(Frame::Good(h, entries))
}

/// Where, after a damaged frame starting at `start`, a genuine frame (signed by the
/// log's key) begins, if anywhere: frames are found by the note's first line.
fn genuine_after(
    data: &[u8],
    start: usize,
    verifier: &Verifier,
    origin: &str,
    what: &str,
) -> Option<usize> {
    let marker = format!("{FORMAT}\n");
    let marker = marker.as_bytes();
    // The damaged frame's own note (at start + 4) does not count.
    let from = start.checked_add(5)?;
    let tail = data.get(from..)?;
    tail.windows(marker.len())
        .enumerate()
        .filter(|(_, w)| *w == marker)
        .filter_map(|(i, _)| (from + i).checked_sub(4))
        .find(|&at| {
            let mut pos = at;
            // A note that verifies but breaks the format is genuine too.
            matches!(
                frame(data, &mut pos, verifier, origin, what),
                Ok(Frame::Good(..)) | Err(_)
            )
        })
}

/// Decode a journal (`what` names it in errors): `Ok(None)` when it holds no complete
/// frame. Every frame must be signed by `verifier` under `origin`, extend the same
/// checkpoint and continue where the previous one ended. Only the last append can be
/// torn (each is synced before the next), so a damaged frame is ignored as a torn tail
/// unless a genuine frame follows it, which is tampering (or damage to synced data),
/// as is any break in the sequence of indices.
pub fn decode(
    data: &[u8],
    verifier: &Verifier,
    origin: &str,
    what: &str,
) -> Result<Option<Replay>> {
    let mut at = 0usize;
    let mut replay: Option<Replay> = None;
    while at < data.len() {
        let start = at;
        let (h, entries) = match frame(data, &mut at, verifier, origin, what)? {
            Frame::Good(h, e) => (h, e),
            Frame::Torn | Frame::Bad => {
                if let Some(next) = genuine_after(data, start, verifier, origin, what) {
                    return Err(Error::tampered(
                        what,
                        format!(
                            "journal frame at byte {start} is damaged, yet a frame signed by the \
                             log's key follows at byte {next}: durable entries were altered"
                        ),
                    ));
                }
                break;
            }
        };
        let r = replay.get_or_insert_with(|| Replay {
            base_size: h.base_size,
            base_root: h.base_root,
            entries: Vec::new(),
        });
        let expected = r.base_size + r.entries.len() as u64;
        if h.base_size != r.base_size || h.base_root != r.base_root || h.first != expected {
            return Err(Error::tampered(
                what,
                format!(
                    "journal frame at byte {start} starts at index {} of the tree of {} entries; \
                     expected index {expected} of {}",
                    h.first, h.base_size, r.base_size
                ),
            ));
        }
        r.entries.extend(entries);
    }
    Ok(replay)
}

/// How many entries a journal (its bytes, `data`, read *before* the checkpoint
/// `size`/`root` was: checkpoints only grow, so a journal read first extends that
/// checkpoint or an older one) holds beyond the checkpoint: durable, and published by the
/// writer holding them or, if it died, by the next writer to take the lock or open the
/// log. A journal extending an older checkpoint was published already and counts zero;
/// one extending a newer tree, or another tree of the same size, is `Tampered`.
pub fn unpublished(
    data: &[u8],
    verifier: &Verifier,
    origin: &str,
    size: u64,
    root: &Hash,
    what: &str,
) -> Result<u64> {
    match decode(data, verifier, origin, what)? {
        Some(r) if r.base_size == size && r.base_root == *root => Ok(r.entries.len() as u64),
        Some(r) if r.base_size >= size => Err(Error::tampered(
            what,
            format!(
                "extends a tree of {} entries that is not the checkpoint's ({size})",
                r.base_size
            ),
        )),
        _ => Ok(0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signer() -> Signer {
        Signer::from_seed("example.org/log", [7u8; 32]).unwrap()
    }

    fn entries(from: usize, n: usize) -> Vec<Vec<u8>> {
        (from..from + n)
            .map(|i| format!("entry {i}").into_bytes())
            .collect()
    }

    fn journal(s: &Signer, frames: &[(u64, usize)]) -> Vec<u8> {
        let root = [9u8; 32];
        let mut out = Vec::new();
        let mut next = 10u64;
        for &(first, n) in frames {
            let e = entries(usize::try_from(next).unwrap(), n);
            out.extend(encode_frame(s, "example.org/log", 10, &root, first, &e).unwrap());
            next += n as u64;
        }
        out
    }

    #[test]
    fn frames_round_trip() {
        let s = signer();
        let data = journal(&s, &[(10, 3), (13, 1), (14, 5)]);
        let r = decode(&data, &s.verifier(), "example.org/log", "j")
            .unwrap()
            .unwrap();
        assert_eq!(r.base_size, 10);
        assert_eq!(r.base_root, [9u8; 32]);
        assert_eq!(r.entries, entries(10, 9));
        assert_eq!(
            decode(&[], &s.verifier(), "example.org/log", "j").unwrap(),
            None
        );
    }

    #[test]
    fn a_frame_holds_a_whole_batch_not_one_tile() {
        let s = signer();
        let e = entries(10, 5000);
        let data = encode_frame(&s, "example.org/log", 10, &[9u8; 32], 10, &e).unwrap();
        let r = decode(&data, &s.verifier(), "example.org/log", "j")
            .unwrap()
            .unwrap();
        assert_eq!(r.entries, e);
    }

    #[test]
    fn a_torn_last_frame_is_ignored_at_every_cut() {
        let s = signer();
        let data = journal(&s, &[(10, 3), (13, 2)]);
        let one = journal(&s, &[(10, 3)]).len();
        for cut in 0..data.len() {
            let r = decode(&data[..cut], &s.verifier(), "example.org/log", "j").unwrap();
            let n = r.map_or(0, |r| r.entries.len());
            assert_eq!(n, if cut < one { 0 } else { 3 }, "cut at {cut}");
        }
        // Zeros where the last write did not land (size extended, data lost).
        let mut zeroed = data.clone();
        for b in &mut zeroed[one..] {
            *b = 0;
        }
        let r = decode(&zeroed, &s.verifier(), "example.org/log", "j")
            .unwrap()
            .unwrap();
        assert_eq!(r.entries.len(), 3);
    }

    #[test]
    fn frames_of_another_key_or_out_of_order_are_refused() {
        let s = signer();
        let other = Signer::from_seed("example.org/log", [8u8; 32]).unwrap();
        // A forged frame followed by a genuine one.
        let mut data = journal(&other, &[(10, 2)]);
        data.extend(journal(&s, &[(10, 2)]));
        let e = decode(&data, &s.verifier(), "example.org/log", "j").unwrap_err();
        assert!(
            e.to_string().contains("signed by the log's key follows"),
            "{e}"
        );
        // A gap: the second frame claims index 20 after 10..12.
        let mut data = journal(&s, &[(10, 2)]);
        data.extend(
            encode_frame(&s, "example.org/log", 10, &[9u8; 32], 20, &entries(20, 1)).unwrap(),
        );
        let e = decode(&data, &s.verifier(), "example.org/log", "j").unwrap_err();
        assert!(e.to_string().contains("expected index 12"), "{e}");
        // Another origin signed with the same key.
        let data = journal(&s, &[(10, 1)]);
        let e = decode(&data, &s.verifier(), "example.org/other", "j").unwrap_err();
        assert!(e.to_string().contains("origin"), "{e}");
        // Only a forged frame: nothing from it is ever accepted (like a torn write; a
        // journal can always be deleted by whoever can write it, so nothing is lost).
        let data = journal(&other, &[(10, 2)]);
        assert_eq!(
            decode(&data, &s.verifier(), "example.org/log", "j").unwrap(),
            None
        );
    }

    fn two_frames(s: &Signer) -> (Vec<u8>, usize) {
        let e1: Vec<Vec<u8>> = (0..3).map(|i| format!("a{i}").into_bytes()).collect();
        let e2: Vec<Vec<u8>> = (0..40).map(|i| vec![b'x'; 100 + i]).collect();
        let mut data = encode_frame(s, "example.org/log", 10, &[9u8; 32], 10, &e1).unwrap();
        let one = data.len();
        data.extend(encode_frame(s, "example.org/log", 10, &[9u8; 32], 13, &e2).unwrap());
        (data, one)
    }

    #[test]
    fn damage_to_any_byte_of_a_synced_frame_is_refused_and_of_the_last_one_ignored() {
        let s = signer();
        let (data, one) = two_frames(&s);
        for pos in 0..data.len() {
            for bit in [0u8, 7] {
                let mut d = data.clone();
                d[pos] ^= 1 << bit;
                let r = decode(&d, &s.verifier(), "example.org/log", "j");
                if pos < one {
                    // The first frame was synced before the second was written: damage
                    // to it is never a torn write.
                    assert!(r.is_err(), "flip at {pos} accepted: {r:?}");
                } else {
                    let n = r.unwrap().map_or(0, |r| r.entries.len());
                    assert_eq!(n, 3, "flip at {pos}");
                }
            }
        }
    }

    /// Power lost during the last append: its later blocks and the new file size landed,
    /// its first block (shared with the previous frame) did not.
    #[test]
    fn a_last_frame_torn_at_its_head_is_ignored_not_tampering() {
        let s = signer();
        let (mut data, one) = two_frames(&s);
        for b in &mut data[one..one + 64] {
            *b = 0;
        }
        let r = decode(&data, &s.verifier(), "example.org/log", "j");
        assert_eq!(r.unwrap().unwrap().entries.len(), 3);
    }

    #[test]
    fn a_bad_length_followed_by_genuine_frames_is_refused() {
        let s = signer();
        let (mut data, _) = two_frames(&s);
        data[..4].copy_from_slice(&0xffff_ffffu32.to_le_bytes());
        let e = decode(&data, &s.verifier(), "example.org/log", "j").unwrap_err();
        assert!(e.to_string().contains("follows at byte"), "{e}");
    }

    #[test]
    fn unpublished_counts_a_journal_read_before_the_checkpoint() {
        let s = signer();
        let (data, _) = two_frames(&s);
        let v = s.verifier();
        let n = |size, root: [u8; 32]| unpublished(&data, &v, "example.org/log", size, &root, "j");
        assert_eq!(n(10, [9u8; 32]).unwrap(), 43);
        // The writer published since: the journal extends an older checkpoint.
        assert_eq!(n(53, [1u8; 32]).unwrap(), 0);
        // A checkpoint older than the journal's base, or another tree of that size.
        assert!(n(9, [9u8; 32]).is_err());
        assert!(n(10, [8u8; 32]).is_err());
    }
}
