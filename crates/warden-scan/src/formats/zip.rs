//! A structural zip reader that sees what loaders see.
//!
//! The central directory is authoritative (that is what PyTorch's miniz reader and
//! Python's `zipfile` use to find members); every local header is compared with it,
//! because tools that stream from the front trust the local headers instead. The reader
//! reports duplicate names, name/method/size mismatches between local and central
//! records, encrypted members, data-descriptor disagreements, overlapping members,
//! unaccounted bytes, unsupported compression methods, CRC mismatches (low: PyTorch
//! ignores CRCs) and compression bombs; then it scans every member by content.
//!
//! Rules: WS201 duplicate name, WS202 local/central mismatch, WS203 encrypted member,
//! WS204 data-descriptor mismatch, WS205 overlapping members, WS206 unaccounted bytes,
//! WS207 unsupported method, WS208 CRC mismatch, WS209 compression bomb, WS210 member
//! size differs from the directory, WS211 unsafe member path, WS212 malformed
//! directory, WS222 archive total size limit, WS311 PyTorch checkpoint layout, WS312
//! TorchScript code.

#![deny(clippy::indexing_slicing)]

use crate::driver::Walker;
use crate::io::{Window, spool};
use crate::{Error, Input, Location, Severity};
use std::collections::HashMap;
use std::io::{BufReader, Read, SeekFrom};

/// Members above this size are not handed to the Keras member check.
const KERAS_MEMBER_MAX: u64 = 16 << 20;
/// Bombs: members that inflate to less than this are never called bombs.
const BOMB_FLOOR: u64 = 10 << 20;
/// Largest central directory read.
const MAX_CD: u64 = 256 << 20;

#[derive(Debug, Clone)]
struct Entry {
    name: String,
    raw_name: Vec<u8>,
    flags: u16,
    method: u16,
    crc: u32,
    csize: u64,
    usize: u64,
    lho: u64,
    /// Start of the member data (after the local header), once read.
    data: u64,
    /// Bytes taken by a data descriptor after the data.
    descriptor: u64,
}

fn le16(b: &[u8], at: usize) -> u16 {
    let mut a = [0u8; 2];
    if let Some(s) = b.get(at..at + 2) {
        a.copy_from_slice(s);
    }
    u16::from_le_bytes(a)
}

fn le32(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    if let Some(s) = b.get(at..at + 4) {
        a.copy_from_slice(s);
    }
    u32::from_le_bytes(a)
}

fn le64(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    if let Some(s) = b.get(at..at + 8) {
        a.copy_from_slice(s);
    }
    u64::from_le_bytes(a)
}

/// End-of-central-directory facts.
#[derive(Debug, Clone, Copy)]
pub struct Eocd {
    /// Offset of the EOCD record.
    pub at: u64,
    entries: u64,
    cd_size: u64,
    cd_offset: u64,
    comment_len: u64,
    zip64: bool,
}

fn read_at(input: &mut dyn Input, at: u64, buf: &mut [u8]) -> std::io::Result<()> {
    input.seek(SeekFrom::Start(at))?;
    input.read_exact(buf)
}

/// Find the end-of-central-directory record (the last one whose comment fits).
pub fn find_eocd(input: &mut dyn Input, len: u64) -> std::io::Result<Option<Eocd>> {
    if len < 22 {
        return Ok(None);
    }
    let tail_len = len.min(65_535 + 22);
    let mut tail = vec![0u8; tail_len as usize];
    read_at(input, len - tail_len, &mut tail)?;
    let base = len - tail_len;
    let mut i = tail.len().saturating_sub(22);
    loop {
        if tail.get(i..i + 4) == Some(b"PK\x05\x06") {
            let comment_len = u64::from(le16(&tail, i + 20));
            if (i as u64) + 22 + comment_len <= tail_len {
                let at = base + i as u64;
                let mut e = Eocd {
                    at,
                    entries: u64::from(le16(&tail, i + 10)),
                    cd_size: u64::from(le32(&tail, i + 12)),
                    cd_offset: u64::from(le32(&tail, i + 16)),
                    comment_len,
                    zip64: false,
                };
                // ZIP64 locator right before the EOCD.
                if at >= 20
                    && tail.get(i.wrapping_sub(20)..i.wrapping_sub(16)) == Some(b"PK\x06\x07")
                {
                    let z64_at = le64(&tail, i - 12);
                    let mut rec = [0u8; 56];
                    if z64_at + 56 <= len
                        && read_at(input, z64_at, &mut rec).is_ok()
                        && rec.get(..4) == Some(b"PK\x06\x06")
                    {
                        e.entries = le64(&rec, 32);
                        e.cd_size = le64(&rec, 40);
                        e.cd_offset = le64(&rec, 48);
                        e.zip64 = true;
                        e.at = z64_at;
                    }
                }
                return Ok(Some(e));
            }
        }
        if i == 0 {
            return Ok(None);
        }
        i -= 1;
    }
}

/// Scan a zip archive: structure first, then every member by content.
pub fn scan(
    w: &mut Walker,
    input: &mut dyn Input,
    len: u64,
    loc: &Location,
    depth: u32,
) -> Result<(), Error> {
    let io = |source| Error::Io {
        path: loc.to_string(),
        source,
    };
    let Some(eocd) = find_eocd(input, len).map_err(io)? else {
        w.finding(loc, "WS212", Severity::High, None, "zip archive without an end-of-central-directory record (truncated or not really a zip)".into());
        return Err(Error::Unsupported {
            path: loc.to_string(),
            detail: "zip archive without a central directory".into(),
        });
    };
    if eocd.cd_size > MAX_CD || eocd.cd_size > eocd.at {
        w.finding(
            loc,
            "WS212",
            Severity::High,
            None,
            format!(
                "zip central directory of {} bytes does not fit the archive",
                eocd.cd_size
            ),
        );
        return Err(Error::Limit {
            path: loc.to_string(),
            detail: "zip central directory too large".into(),
        });
    }
    // Where the directory really is; a difference from the recorded offset means bytes
    // were prepended (self-extractor, polyglot).
    let cd_at = eocd.at - eocd.cd_size;
    let shift = cd_at.wrapping_sub(eocd.cd_offset);
    if cd_at != eocd.cd_offset {
        if cd_at > eocd.cd_offset {
            w.finding(loc, "WS206", Severity::Medium, Some(0), format!("{shift} bytes precede the zip archive (prepended data: a polyglot or self-extractor)"));
        } else {
            w.finding(
                loc,
                "WS212",
                Severity::High,
                None,
                "zip central directory offset points past its real position".into(),
            );
        }
    }
    let shift = if cd_at > eocd.cd_offset { shift } else { 0 };
    let trailing = len.saturating_sub(eocd_end(&eocd, len));
    if trailing > 0 {
        w.finding(
            loc,
            "WS206",
            Severity::Low,
            Some(len - trailing),
            format!("{trailing} bytes after the end of the zip archive"),
        );
    }
    let mut cd = vec![0u8; eocd.cd_size as usize];
    read_at(input, cd_at, &mut cd).map_err(io)?;
    let mut entries = parse_cd(w, &cd, loc, shift);
    if entries.len() as u64 != eocd.entries {
        w.finding(
            loc,
            "WS212",
            Severity::Medium,
            None,
            format!(
                "zip end record announces {} members but the central directory holds {}",
                eocd.entries,
                entries.len()
            ),
        );
    }
    // Local headers.
    for e in &mut entries {
        check_local(w, input, len, cd_at, e, loc).map_err(io)?;
    }
    check_layout(w, &entries, cd_at, loc);
    check_names(w, &entries, loc);

    // PyTorch checkpoint layout: <prefix>data.pkl with raw storages under <prefix>data/.
    let torch_prefix = entries.iter().find_map(|e| {
        e.name
            .strip_suffix("data.pkl")
            .filter(|p| p.is_empty() || p.ends_with('/'))
            .map(str::to_owned)
    });
    let mut torchscript_noted = false;
    let mut total: u64 = 0;
    let max_total = w.options.max_uncompressed_bytes;
    for e in &entries {
        if e.name.ends_with('/') && e.usize == 0 {
            continue;
        }
        let mloc = loc.member(&e.name);
        if e.flags & 1 != 0 || e.method == 99 {
            w.finding(
                &mloc,
                "WS203",
                Severity::High,
                None,
                "encrypted zip member: its content cannot be inspected".into(),
            );
            continue;
        }
        if e.method != 0 && e.method != 8 {
            w.finding(&mloc, "WS207", Severity::High, None, format!("zip member compressed with method {}, which PyTorch cannot read and Warden cannot inspect", e.method));
            w.error(
                &mloc,
                format!("zip compression method {} not supported", e.method),
            );
            continue;
        }
        if e.method == 8
            && e.usize > BOMB_FLOOR
            && e.usize / e.csize.max(1) > w.options.max_compression_ratio
        {
            w.finding(
                &mloc,
                "WS209",
                Severity::High,
                None,
                format!(
                    "compression bomb: {} bytes inflate to {} (more than {}x); not decompressed",
                    e.csize, e.usize, w.options.max_compression_ratio
                ),
            );
            continue;
        }
        total = total.saturating_add(e.usize);
        if total > max_total {
            w.finding(loc, "WS222", Severity::High, None, format!("archive inflates to more than {max_total} bytes in total; the rest was not examined"));
            return Err(Error::Limit {
                path: loc.to_string(),
                detail: format!("archive larger than {max_total} bytes uncompressed"),
            });
        }
        if let Some(prefix) = &torch_prefix {
            if let Some(rest) = e.name.strip_prefix(prefix.as_str()) {
                if rest.starts_with("data/") {
                    // Raw tensor storage: torch.load reads it as bytes, never unpickles it.
                    w.report.scanned.push(crate::Scanned {
                        location: mloc,
                        format: crate::Format::TensorData,
                        bytes: e.usize,
                    });
                    continue;
                }
                if rest.starts_with("code/") && !torchscript_noted {
                    torchscript_noted = true;
                    w.finding(&mloc, "WS312", Severity::Medium, None, "TorchScript program: torch.jit.load compiles and runs its code, which Warden does not analyse".into());
                }
            }
        }
        scan_member(w, input, e, &mloc, depth).map_err(io)?;
    }
    Ok(())
}

fn eocd_end(e: &Eocd, len: u64) -> u64 {
    if e.zip64 {
        // The classic EOCD follows the ZIP64 records; find its end from the file end.
        len
    } else {
        e.at + 22 + e.comment_len
    }
}

fn parse_cd(w: &mut Walker, cd: &[u8], loc: &Location, shift: u64) -> Vec<Entry> {
    let mut out = Vec::new();
    let mut i = 0usize;
    while i + 46 <= cd.len() {
        if cd.get(i..i + 4) != Some(b"PK\x01\x02") {
            w.finding(
                loc,
                "WS212",
                Severity::Medium,
                None,
                format!(
                    "unexpected bytes in the zip central directory at entry {}",
                    out.len()
                ),
            );
            break;
        }
        let flags = le16(cd, i + 8);
        let method = le16(cd, i + 10);
        let crc = le32(cd, i + 16);
        let mut csize = u64::from(le32(cd, i + 20));
        let mut usize = u64::from(le32(cd, i + 24));
        let nlen = usize::from(le16(cd, i + 28));
        let xlen = usize::from(le16(cd, i + 30));
        let clen = usize::from(le16(cd, i + 32));
        let mut lho = u64::from(le32(cd, i + 42));
        let Some(raw_name) = cd.get(i + 46..i + 46 + nlen) else {
            w.finding(
                loc,
                "WS212",
                Severity::Medium,
                None,
                "zip central directory entry runs past its end".into(),
            );
            break;
        };
        let extra = cd.get(i + 46 + nlen..i + 46 + nlen + xlen).unwrap_or(&[]);
        // ZIP64 extended information: only the fields that overflowed, in order.
        let mut j = 0;
        while j + 4 <= extra.len() {
            let id = le16(extra, j);
            let sz = usize::from(le16(extra, j + 2));
            let body = extra.get(j + 4..j + 4 + sz).unwrap_or(&[]);
            if id == 1 {
                let mut k = 0;
                if usize == 0xffff_ffff {
                    usize = le64(body, k);
                    k += 8;
                }
                if csize == 0xffff_ffff {
                    csize = le64(body, k);
                    k += 8;
                }
                if lho == 0xffff_ffff {
                    lho = le64(body, k);
                }
            } else if id == 0x7075 && body.len() > 5 {
                // Info-ZIP Unicode path: some tools show this name instead of the real one.
                if let Some(alt) = body.get(5..)
                    && alt != raw_name
                {
                    let alt = String::from_utf8_lossy(alt).into_owned();
                    w.finding(loc, "WS202", Severity::Medium, None, format!("zip member {:?} carries a different Unicode path {alt:?}; tools disagree on its name", String::from_utf8_lossy(raw_name)));
                }
            }
            j += 4 + sz;
        }
        let name = if flags & 0x800 != 0 || raw_name.is_ascii() {
            String::from_utf8_lossy(raw_name).into_owned()
        } else {
            // CP437, as Python's zipfile decodes it; bytes above 0x7f shown escaped.
            raw_name
                .iter()
                .map(|&b| {
                    if b.is_ascii() {
                        char::from(b).to_string()
                    } else {
                        format!("\\x{b:02x}")
                    }
                })
                .collect()
        };
        out.push(Entry {
            name,
            raw_name: raw_name.to_vec(),
            flags,
            method,
            crc,
            csize,
            usize,
            lho: lho.wrapping_add(shift),
            data: 0,
            descriptor: 0,
        });
        i += 46 + nlen + xlen + clen;
        if out.len() > 1_000_000 {
            w.finding(
                loc,
                "WS212",
                Severity::High,
                None,
                "more than a million zip members".into(),
            );
            break;
        }
    }
    out
}

fn check_local(
    w: &mut Walker,
    input: &mut dyn Input,
    len: u64,
    cd_at: u64,
    e: &mut Entry,
    loc: &Location,
) -> std::io::Result<()> {
    let mloc = loc.member(&e.name);
    let mut h = [0u8; 30];
    if e.lho + 30 > cd_at
        || read_at(input, e.lho, &mut h).is_err()
        || h.get(..4) != Some(b"PK\x03\x04")
    {
        w.finding(
            &mloc,
            "WS212",
            Severity::High,
            Some(e.lho),
            "zip member has no local header where the central directory says".into(),
        );
        e.data = u64::MAX;
        return Ok(());
    }
    let lflags = le16(&h, 6);
    let lmethod = le16(&h, 8);
    let lcrc = le32(&h, 14);
    let lcsize = u64::from(le32(&h, 18));
    let lusize = u64::from(le32(&h, 22));
    let nlen = u64::from(le16(&h, 26));
    let xlen = u64::from(le16(&h, 28));
    let mut lname = vec![0u8; nlen as usize];
    read_at(input, e.lho + 30, &mut lname)?;
    e.data = e.lho + 30 + nlen + xlen;
    let mut diffs = Vec::new();
    if lname != e.raw_name {
        diffs.push(format!("name {:?}", String::from_utf8_lossy(&lname)));
    }
    if lmethod != e.method {
        diffs.push(format!(
            "compression method {lmethod} (directory: {})",
            e.method
        ));
    }
    if (lflags & 1) != (e.flags & 1) {
        diffs.push("encryption flag".to_owned());
    }
    if (lflags & 8) != (e.flags & 8) {
        diffs.push("data-descriptor flag".to_owned());
    }
    if lflags & 8 == 0 {
        if lcrc != e.crc {
            diffs.push(format!("CRC {lcrc:08x}"));
        }
        let z64 = lcsize == 0xffff_ffff || lusize == 0xffff_ffff;
        if !z64 && (lcsize != e.csize || lusize != e.usize) {
            diffs.push(format!(
                "sizes {lcsize}/{lusize} (directory: {}/{})",
                e.csize, e.usize
            ));
        }
    } else {
        // Data descriptor after the data: optional signature, CRC, sizes.
        let after = e.data.saturating_add(e.csize);
        let mut d = [0u8; 24];
        let avail = len.saturating_sub(after).min(24) as usize;
        if let Some(dst) = d.get_mut(..avail) {
            read_at(input, after, dst)?;
        }
        let (sig, at) = if d.get(..4) == Some(b"PK\x07\x08") {
            (4u64, 4usize)
        } else {
            (0, 0)
        };
        let dcrc = le32(&d, at);
        let big = e.csize > 0xffff_fffe || e.usize > 0xffff_fffe;
        let (dc, du, n) = if big {
            (le64(&d, at + 4), le64(&d, at + 12), 20)
        } else {
            (u64::from(le32(&d, at + 4)), u64::from(le32(&d, at + 8)), 12)
        };
        e.descriptor = sig + n;
        if dcrc != e.crc || dc != e.csize || du != e.usize {
            w.finding(&mloc, "WS204", Severity::Medium, Some(after), format!("data descriptor says crc {dcrc:08x}, sizes {dc}/{du}; the central directory says {:08x}, {}/{}", e.crc, e.csize, e.usize));
        }
        if lcsize != 0 && lcsize != e.csize {
            diffs.push(format!(
                "local sizes {lcsize}/{lusize} despite a data descriptor"
            ));
        }
    }
    if !diffs.is_empty() {
        w.finding(&mloc, "WS202", Severity::High, Some(e.lho), format!("local header disagrees with the central directory: {}; tools that read local headers see different content than PyTorch", diffs.join(", ")));
    }
    if e.data.saturating_add(e.csize) > cd_at {
        w.finding(
            &mloc,
            "WS212",
            Severity::High,
            Some(e.lho),
            "zip member data runs into the central directory".into(),
        );
    }
    Ok(())
}

fn check_layout(w: &mut Walker, entries: &[Entry], cd_at: u64, loc: &Location) {
    let mut spans: Vec<(u64, u64, &str)> = entries
        .iter()
        .filter(|e| e.data != u64::MAX)
        .map(|e| {
            (
                e.lho,
                e.data.saturating_add(e.csize).saturating_add(e.descriptor),
                e.name.as_str(),
            )
        })
        .collect();
    spans.sort_unstable();
    let mut end = spans.first().map_or(cd_at, |s| s.0);
    let mut prev = "";
    let mut first = true;
    for (start, stop, name) in spans {
        if !first && start < end {
            w.finding(&loc.member(name), "WS205", Severity::High, Some(start), format!("zip member overlaps member {prev:?} (overlapping entries are a zip-bomb and confusion technique)"));
        } else if !first && start > end {
            w.finding(
                loc,
                "WS206",
                Severity::Low,
                Some(end),
                format!(
                    "{} unaccounted bytes between zip members at offset {end}",
                    start - end
                ),
            );
        }
        first = false;
        if stop > end {
            end = stop;
            prev = name;
        }
    }
    if end < cd_at {
        w.finding(
            loc,
            "WS206",
            Severity::Low,
            Some(end),
            format!(
                "{} unaccounted bytes before the zip central directory",
                cd_at - end
            ),
        );
    }
}

fn check_names(w: &mut Walker, entries: &[Entry], loc: &Location) {
    let mut seen: HashMap<&[u8], usize> = HashMap::new();
    for e in entries {
        *seen.entry(e.raw_name.as_slice()).or_default() += 1;
    }
    let mut reported = std::collections::HashSet::new();
    for e in entries {
        let n = seen.get(e.raw_name.as_slice()).copied().unwrap_or(0);
        if n > 1 && reported.insert(e.raw_name.as_slice()) {
            w.finding(&loc.member(&e.name), "WS201", Severity::High, None, format!("zip member name appears {n} times; loaders disagree on which copy they read (Python's zipfile takes the last, others the first)"));
        }
        let unsafe_path = e.name.starts_with('/')
            || e.name.starts_with('\\')
            || e.name.split(['/', '\\']).any(|p| p == "..")
            || e.name.get(1..2) == Some(":");
        if unsafe_path {
            w.finding(
                &loc.member(&e.name),
                "WS211",
                Severity::Medium,
                None,
                "zip member path is absolute or climbs out of the extraction directory".into(),
            );
        }
    }
}

fn scan_member(
    w: &mut Walker,
    input: &mut dyn Input,
    e: &Entry,
    mloc: &Location,
    depth: u32,
) -> std::io::Result<()> {
    if e.data == u64::MAX {
        return Ok(());
    }
    match e.method {
        0 => {
            if e.csize != e.usize {
                w.finding(
                    mloc,
                    "WS210",
                    Severity::Medium,
                    None,
                    format!(
                        "stored zip member has compressed size {} but size {}",
                        e.csize, e.usize
                    ),
                );
            }
            // Keras member check and CRC for small members; seekable window for the scan.
            if e.usize <= KERAS_MEMBER_MAX {
                let mut data = vec![0u8; e.csize as usize];
                read_at(input, e.data, &mut data)?;
                let crc = crc32fast::hash(&data);
                if crc != e.crc {
                    w.finding(mloc, "WS208", Severity::Low, None, format!("CRC mismatch (stored {:08x}, actual {crc:08x}); PyTorch ignores it, Python's zipfile refuses the member", e.crc));
                }
                if keras_member(w, e, &data, mloc, depth) {
                    return Ok(());
                }
                let len = data.len() as u64;
                let mut c = std::io::Cursor::new(data);
                w.scan_input(&mut c, len, mloc.clone(), depth + 1);
            } else {
                let mut win = Window::new(input, e.data, e.csize);
                let mut buffered = BufReader::with_capacity(256 * 1024, &mut win);
                w.scan_input(&mut buffered, e.csize, mloc.clone(), depth + 1);
            }
        }
        _ => {
            let mut win = Window::new(input, e.data, e.csize);
            let mut dec =
                flate2::read::DeflateDecoder::new(BufReader::with_capacity(256 * 1024, &mut win));
            let limit = e
                .usize
                .saturating_add(1)
                .min(w.options.max_uncompressed_bytes);
            let sp = match spool(&mut dec, limit) {
                Ok(s) => s,
                Err(err) => {
                    w.finding(
                        mloc,
                        "WS212",
                        Severity::Medium,
                        None,
                        format!("deflate data is corrupt: {err}"),
                    );
                    w.error(mloc, format!("cannot decompress: {err}"));
                    return Ok(());
                }
            };
            if sp.overflow || sp.len != e.usize {
                w.finding(
                    mloc,
                    "WS210",
                    Severity::High,
                    None,
                    format!(
                        "member inflates to {}{} bytes, not the {} the directory declares",
                        if sp.overflow { "more than " } else { "" },
                        sp.len.saturating_sub(u64::from(sp.overflow)),
                        e.usize
                    ),
                );
            }
            if sp.crc != e.crc && !sp.overflow {
                w.finding(mloc, "WS208", Severity::Low, None, format!("CRC mismatch (stored {:08x}, actual {:08x}); PyTorch ignores it, Python's zipfile refuses the member", e.crc, sp.crc));
            }
            let mut data = sp.data;
            if sp.len <= KERAS_MEMBER_MAX {
                let mut buf = Vec::with_capacity(sp.len as usize);
                data.read_to_end(&mut buf)?;
                if keras_member(w, e, &buf, mloc, depth) {
                    return Ok(());
                }
                let mut c = std::io::Cursor::new(buf);
                w.scan_input(&mut c, sp.len, mloc.clone(), depth + 1);
            } else {
                w.scan_input(&mut data, sp.len, mloc.clone(), depth + 1);
            }
        }
    }
    Ok(())
}

/// Offer a member to the Keras checks; true when it was a Keras member and is done.
fn keras_member(w: &mut Walker, e: &Entry, data: &[u8], mloc: &Location, depth: u32) -> bool {
    let result = {
        let mut cx = w.context(mloc.clone(), depth + 1);
        crate::formats::keras::scan_archive_member(&e.name, data, &mut cx)
    };
    match result {
        Ok(true) => {
            w.report.scanned.push(crate::Scanned {
                location: mloc.clone(),
                format: crate::Format::Keras,
                bytes: data.len() as u64,
            });
            true
        }
        Ok(false) => false,
        Err(err) => {
            w.error(mloc, err.to_string());
            true
        }
    }
}
