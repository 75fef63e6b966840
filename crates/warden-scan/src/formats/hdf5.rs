//! Legacy Keras `.h5` files: a minimal, bounded HDF5 reader.
//!
//! Only what it takes to find the root group's `model_config` and `training_config`
//! attributes (JSON written by Keras' HDF5 saver) and hand them to the Keras checks in
//! [`super::keras`]: the superblock (versions 0–3, with a user block before it), the
//! root object header (version 1, or version 2 `OHDR` with `OCHK` continuation blocks),
//! attribute messages (versions 1–3), fixed-length strings, and variable-length strings
//! through the global heap. Every address is checked against the file length before it
//! is read, every block has a size cap, and the number of blocks visited is bounded.
//! Corruption is a finding; valid HDF5 features this reader does not implement (dense
//! attribute storage, shared datatypes, unusual offset sizes) make the scan fail closed
//! with [`Error::Unsupported`] when they could hide the model config.

#![deny(clippy::indexing_slicing)]

use super::keras;
use super::safetensors::read_exact_at;
use crate::{Context, Error, Input, Severity};

const SIGNATURE: &[u8; 8] = b"\x89HDF\r\n\x1a\n";
/// Largest object-header block read (messages are at most 64 KiB each).
const MAX_BLOCK: u64 = 4 << 20;
/// Most object-header blocks (chunk 0 plus continuations) followed.
const MAX_BLOCKS: usize = 64;
/// Largest global heap collection read for a variable-length string.
const MAX_HEAP: u64 = 16 << 20;

/// True when `prefix` holds the HDF5 signature at offset 0 or, after a user block, at
/// 512, 1024, 2048... (as far as the prefix reaches: pass at least 520 bytes to see a
/// 512-byte user block).
pub fn sniff(prefix: &[u8]) -> bool {
    let mut at = 0usize;
    while let Some(window) = prefix.get(at..at + SIGNATURE.len()) {
        if window == SIGNATURE {
            return true;
        }
        at = if at == 0 { 512 } else { at * 2 };
    }
    false
}

/// Why reading stopped.
enum Stop {
    /// Corrupt or hostile structure: a finding.
    Bad(u64, String),
    /// Could not complete: an error.
    Err(Error),
}

type R<T> = Result<T, Stop>;

fn bad<T>(at: u64, msg: impl Into<String>) -> R<T> {
    Err(Stop::Bad(at, msg.into()))
}

/// A bounds-checked little-endian cursor over one block read from `base`.
struct Cur<'b> {
    b: &'b [u8],
    p: usize,
    base: u64,
}

impl<'b> Cur<'b> {
    fn new(b: &'b [u8], base: u64) -> Self {
        Cur { b, p: 0, base }
    }
    fn at(&self) -> u64 {
        self.base + self.p as u64
    }
    fn take(&mut self, n: usize) -> R<&'b [u8]> {
        match self.b.get(self.p..self.p.saturating_add(n)) {
            Some(s) if self.p.checked_add(n).is_some() => {
                self.p += n;
                Ok(s)
            }
            _ => bad(self.at(), "structure runs past the end of its block"),
        }
    }
    fn uint(&mut self, n: usize) -> R<u64> {
        let s = self.take(n)?;
        Ok(s.iter()
            .rev()
            .fold(0u64, |acc, &x| (acc << 8) | u64::from(x)))
    }
    fn u8(&mut self) -> R<u8> {
        Ok(self.uint(1)? as u8)
    }
    fn u16(&mut self) -> R<u64> {
        self.uint(2)
    }
    fn u32(&mut self) -> R<u64> {
        self.uint(4)
    }
    fn left(&self) -> usize {
        self.b.len().saturating_sub(self.p)
    }
}

struct File<'i, 'c, 'a> {
    input: &'i mut dyn Input,
    len: u64,
    cx: &'c mut Context<'a>,
    /// Absolute offset that addresses are relative to.
    base: u64,
    so: usize,
    sl: usize,
}

impl File<'_, '_, '_> {
    fn undefined(&self, addr: u64) -> bool {
        self.so == 8 && addr == u64::MAX || self.so == 4 && addr == u64::from(u32::MAX)
    }

    /// Read `n` bytes at relative address `addr`, bounded by the file and `cap`.
    fn read(&mut self, addr: u64, n: u64, cap: u64, what: &str) -> R<(u64, Vec<u8>)> {
        let Some(abs) = self.base.checked_add(addr) else {
            return bad(addr, format!("{what} address overflows"));
        };
        if n > cap {
            return bad(
                abs,
                format!("{what} of {n} bytes exceeds the {cap}-byte limit"),
            );
        }
        match abs.checked_add(n) {
            Some(end) if end <= self.len => {}
            _ => {
                return bad(
                    abs,
                    format!(
                        "{what} at {abs} ({n} bytes) lies outside the {}-byte file",
                        self.len
                    ),
                );
            }
        }
        let mut v = vec![0u8; usize::try_from(n).unwrap_or(0)];
        read_exact_at(self.input, abs, &mut v, self.cx).map_err(Stop::Err)?;
        Ok((abs, v))
    }

    fn unsupported<T>(&self, detail: impl Into<String>) -> R<T> {
        Err(Stop::Err(Error::Unsupported {
            path: self.cx.location.to_string(),
            detail: detail.into(),
        }))
    }
}

/// Validate one HDF5 input: find the root group's Keras attributes and check them.
pub fn scan(input: &mut dyn Input, len: u64, cx: &mut Context) -> Result<(), Error> {
    let mut f = File {
        input,
        len,
        cx,
        base: 0,
        so: 8,
        sl: 8,
    };
    match run(&mut f) {
        Ok(()) => Ok(()),
        Err(Stop::Bad(at, msg)) => {
            f.cx.report(
                "WS710",
                Severity::High,
                Some(at),
                format!("malformed HDF5 file: {msg}"),
            );
            Ok(())
        }
        Err(Stop::Err(e)) => Err(e),
    }
}

fn find_superblock(f: &mut File) -> R<u64> {
    let mut at = 0u64;
    loop {
        if at.saturating_add(8) > f.len {
            return bad(
                0,
                "no HDF5 signature at offset 0 or any power of two from 512",
            );
        }
        let mut sig = [0u8; 8];
        read_exact_at(f.input, at, &mut sig, f.cx).map_err(Stop::Err)?;
        if &sig == SIGNATURE {
            return Ok(at);
        }
        at = if at == 0 { 512 } else { at.saturating_mul(2) };
    }
}

fn run(f: &mut File) -> R<()> {
    let sb = find_superblock(f)?;
    let n = (f.len - sb).min(256);
    let (_, head) = f.read(sb, n, 256, "superblock")?;
    let mut c = Cur::new(&head, sb);
    c.take(8)?;
    let version = c.u8()?;
    let root = match version {
        0 | 1 => {
            c.take(4)?; // free-space, root table, reserved, shared header versions
            let so = c.u8()? as usize;
            let sl = c.u8()? as usize;
            set_sizes(f, so, sl)?;
            c.take(1 + 2 + 2 + 4)?;
            if version == 1 {
                c.take(4)?;
            }
            let base = c.uint(f.so)?;
            c.uint(f.so)?; // free-space info
            let eof = c.uint(f.so)?;
            c.uint(f.so)?; // driver info
            c.uint(f.so)?; // root entry: link name offset
            let root = c.uint(f.so)?;
            check_eof(f, sb, base, eof)?;
            root
        }
        2 | 3 => {
            let so = c.u8()? as usize;
            let sl = c.u8()? as usize;
            set_sizes(f, so, sl)?;
            c.take(1)?;
            let base = c.uint(f.so)?;
            c.uint(f.so)?; // superblock extension
            let eof = c.uint(f.so)?;
            let root = c.uint(f.so)?;
            check_eof(f, sb, base, eof)?;
            root
        }
        v => return f.unsupported(format!("HDF5 superblock version {v}")),
    };
    if f.undefined(root) {
        return bad(sb, "root group object header address is undefined");
    }
    let attrs = read_object_header(f, root)?;
    let mut found = false;
    let mut dense = false;
    let mut seen: Vec<String> = Vec::new();
    for a in attrs {
        match a {
            Msg::Attr(at, body) => {
                if let Some((name, json)) = keras_attr(f, at, &body, &mut seen)? {
                    found = true;
                    keras::check_config(&name, &json.1, Some(json.0), f.cx);
                }
            }
            Msg::DenseAttrs => dense = true,
        }
    }
    if dense && !found {
        return f.unsupported(
            "root group keeps its attributes in dense storage (fractal heap), which this reader does not implement; the model config could not be checked",
        );
    }
    Ok(())
}

fn set_sizes(f: &mut File, so: usize, sl: usize) -> R<()> {
    if !matches!(so, 4 | 8) || !matches!(sl, 4 | 8) {
        return f.unsupported(format!("HDF5 offset size {so} / length size {sl}"));
    }
    f.so = so;
    f.sl = sl;
    Ok(())
}

fn check_eof(f: &mut File, sb: u64, base: u64, eof: u64) -> R<()> {
    if base != sb {
        // Addresses are relative to the base address, which is normally the superblock.
        if base > f.len {
            return bad(sb, format!("base address {base} lies outside the file"));
        }
    }
    f.base = base;
    if !f.undefined(eof) && base.saturating_add(eof) < f.len {
        f.cx.report(
            "WS711",
            Severity::Medium,
            Some(base.saturating_add(eof)),
            format!(
                "{} bytes after the end-of-file address the superblock declares (room for a hidden payload)",
                f.len - base.saturating_add(eof)
            ),
        );
    }
    Ok(())
}

enum Msg {
    /// Attribute message body and its absolute offset.
    Attr(u64, Vec<u8>),
    /// An attribute-info message: attributes live in dense storage.
    DenseAttrs,
}

fn read_object_header(f: &mut File, addr: u64) -> R<Vec<Msg>> {
    let (abs, pre) = f.read(
        addr,
        16.min(f.len.saturating_sub(f.base + addr)),
        16,
        "object header",
    )?;
    let mut out = Vec::new();
    // (relative address, length, v2 object header flags or None for v1) of blocks to read
    let mut queue: Vec<(u64, u64, Option<u8>)> = Vec::new();
    if pre.starts_with(b"OHDR") {
        let mut c = Cur::new(&pre, abs);
        c.take(4)?;
        let v = c.u8()?;
        if v != 2 {
            return f.unsupported(format!("object header version {v}"));
        }
        let flags = c.u8()?;
        let mut skip = 6u64;
        if flags & 0x20 != 0 {
            skip += 16;
        }
        if flags & 0x10 != 0 {
            skip += 4;
        }
        let width = 1u64 << (flags & 3);
        let (_, sz) = f.read(addr + skip, width, 8, "object header size")?;
        let size = Cur::new(&sz, abs + skip).uint(sz.len())?;
        // chunk 0 starts after the size field; block = messages + 4-byte checksum
        let start = addr + skip + width;
        let (b_abs, block) = f.read(start, size, MAX_BLOCK, "object header chunk")?;
        messages_v2(f, flags, &block, b_abs, &mut out, &mut queue)?;
    } else {
        let mut c = Cur::new(&pre, abs);
        let v = c.u8()?;
        if v != 1 {
            return bad(abs, format!("unknown object header version {v}"));
        }
        c.take(1)?;
        let _count = c.u16()?;
        c.u32()?;
        let size = c.u32()?;
        let (b_abs, block) = f.read(addr + 16, size, MAX_BLOCK, "object header")?;
        messages_v1(f, &block, b_abs, &mut out, &mut queue)?;
    }
    let mut blocks = 1;
    while let Some((a, n, v2)) = queue.pop() {
        blocks += 1;
        if blocks > MAX_BLOCKS {
            return bad(
                abs,
                format!("more than {MAX_BLOCKS} object header continuation blocks"),
            );
        }
        let (b_abs, block) = f.read(a, n, MAX_BLOCK, "object header continuation")?;
        if let Some(flags) = v2 {
            if !block.starts_with(b"OCHK") {
                return bad(b_abs, "continuation block without its OCHK signature");
            }
            let body = block
                .get(4..block.len().saturating_sub(4))
                .unwrap_or_default();
            messages_v2(f, flags, body, b_abs + 4, &mut out, &mut queue)?;
        } else {
            messages_v1(f, &block, b_abs, &mut out, &mut queue)?;
        }
    }
    Ok(out)
}

const MSG_ATTRIBUTE: u64 = 0x0C;
const MSG_CONTINUATION: u64 = 0x10;
const MSG_ATTRIBUTE_INFO: u64 = 0x15;

fn on_message(
    f: &mut File,
    ty: u64,
    body: &[u8],
    at: u64,
    v2: Option<u8>,
    out: &mut Vec<Msg>,
    queue: &mut Vec<(u64, u64, Option<u8>)>,
) -> R<()> {
    match ty {
        MSG_ATTRIBUTE => out.push(Msg::Attr(at, body.to_vec())),
        MSG_CONTINUATION => {
            let mut c = Cur::new(body, at);
            let a = c.uint(f.so)?;
            let n = c.uint(f.sl)?;
            if queue.len() >= MAX_BLOCKS {
                return bad(at, format!("more than {MAX_BLOCKS} continuation blocks"));
            }
            queue.push((a, n, v2));
        }
        MSG_ATTRIBUTE_INFO => {
            let mut c = Cur::new(body, at);
            c.u8()?;
            let flags = c.u8()?;
            if flags & 1 != 0 {
                c.u16()?;
            }
            let heap = c.uint(f.so)?;
            if !f.undefined(heap) {
                out.push(Msg::DenseAttrs);
            }
        }
        _ => {}
    }
    Ok(())
}

fn messages_v1(
    f: &mut File,
    block: &[u8],
    abs: u64,
    out: &mut Vec<Msg>,
    queue: &mut Vec<(u64, u64, Option<u8>)>,
) -> R<()> {
    let mut c = Cur::new(block, abs);
    while c.left() >= 8 {
        let ty = c.u16()?;
        let size = c.u16()? as usize;
        c.take(4)?; // flags, reserved
        let at = c.at();
        let body = c.take(size)?;
        on_message(f, ty, body, at, None, out, queue)?;
    }
    Ok(())
}

fn messages_v2(
    f: &mut File,
    header_flags: u8,
    block: &[u8],
    abs: u64,
    out: &mut Vec<Msg>,
    queue: &mut Vec<(u64, u64, Option<u8>)>,
) -> R<()> {
    // `block` holds messages only: chunk 0's size excludes its checksum, and callers
    // strip a continuation block's signature and checksum.
    let mut c = Cur::new(block, abs);
    // Bit 2 of the object header's flags says whether messages carry a creation-order
    // field; gaps at the end of a chunk are smaller than a message header.
    let order = header_flags & 0x04 != 0;
    while c.left() >= 4 {
        let ty = c.u8()?;
        let size = c.u16()? as usize;
        c.u8()?; // message flags
        if order {
            c.u16()?;
        }
        let at = c.at();
        let body = c.take(size)?;
        on_message(f, u64::from(ty), body, at, Some(header_flags), out, queue)?;
    }
    Ok(())
}

/// An attribute's name and its string value with the value's absolute offset.
type NamedText = (String, (u64, Vec<u8>));

/// If this attribute is `model_config` or `training_config`, its JSON text (with the
/// absolute offset of the value).
fn keras_attr(f: &mut File, at: u64, body: &[u8], seen: &mut Vec<String>) -> R<Option<NamedText>> {
    let mut c = Cur::new(body, at);
    let version = c.u8()?;
    let flags = c.u8()?;
    let name_size = c.u16()? as usize;
    let dt_size = c.u16()? as usize;
    let ds_size = c.u16()? as usize;
    if version == 3 {
        c.u8()?; // name character set
    }
    let pad = |n: usize| if version == 1 { n.div_ceil(8) * 8 } else { n };
    if !matches!(version, 1..=3) {
        return bad(at, format!("unknown attribute message version {version}"));
    }
    let name_raw = c.take(pad(name_size))?;
    let name = name_raw.get(..name_size).unwrap_or_default();
    let name = name.strip_suffix(b"\0").unwrap_or(name);
    if name != b"model_config" && name != b"training_config" {
        return Ok(None);
    }
    let name = String::from_utf8_lossy(name).into_owned();
    // HDF5 forbids two attributes with one name; a second one is a loader-confusion
    // trick (and reading each would multiply the work).
    if seen.contains(&name) {
        return bad(
            at,
            format!("attribute {name} occurs twice on the root group"),
        );
    }
    seen.push(name.clone());
    if flags & 0x03 != 0 {
        return f.unsupported(format!(
            "attribute {name} uses a shared datatype or dataspace"
        ));
    }
    let dt = c.take(pad(dt_size))?;
    let ds = c.take(pad(ds_size))?;
    let elements = dataspace_elements(ds, at, f.sl)?;
    if elements != 1 {
        return f.unsupported(format!(
            "attribute {name} holds {elements} values, not one string"
        ));
    }
    let mut d = Cur::new(dt, at);
    let class_version = d.u8()?;
    let bits0 = d.u8()?;
    d.take(2)?;
    let size = d.u32()? as usize;
    let value_at = c.at();
    match class_version & 0x0f {
        3 => {
            let raw = c.take(size)?;
            let end = raw
                .iter()
                .rposition(|&b| b != 0 && b != b' ')
                .map_or(0, |p| p + 1);
            let text = raw.get(..end).unwrap_or_default().to_vec();
            Ok(Some((name, (value_at, text))))
        }
        9 if bits0 & 0x0f == 1 => {
            let len = c.u32()?;
            let coll = c.uint(f.so)?;
            let index = c.u32()?;
            let (abs, text) = global_heap_object(f, coll, index, len)?;
            Ok(Some((name, (abs, text))))
        }
        other => f.unsupported(format!(
            "attribute {name} has datatype class {other}, not a string"
        )),
    }
}

fn dataspace_elements(ds: &[u8], at: u64, sl: usize) -> R<u64> {
    let mut c = Cur::new(ds, at);
    let version = c.u8()?;
    let rank = c.u8()?;
    let flags = c.u8()?;
    match version {
        1 => {
            c.take(5)?;
        }
        2 => {
            let ty = c.u8()?;
            if ty == 2 {
                return Ok(0);
            }
        }
        v => return bad(at, format!("unknown dataspace version {v}")),
    }
    let _ = flags;
    let mut n = 1u64;
    for _ in 0..rank {
        n = n.saturating_mul(c.uint(sl)?);
    }
    Ok(n)
}

fn global_heap_object(f: &mut File, coll: u64, index: u64, len: u64) -> R<(u64, Vec<u8>)> {
    let head_len = 8 + f.sl as u64;
    let (abs, head) = f.read(coll, head_len, head_len, "global heap")?;
    if !head.starts_with(b"GCOL") {
        return bad(abs, "global heap collection without its GCOL signature");
    }
    let size = Cur::new(head.get(8..).unwrap_or_default(), abs + 8).uint(f.sl)?;
    let (abs, heap) = f.read(coll, size, MAX_HEAP, "global heap collection")?;
    let mut c = Cur::new(&heap, abs);
    c.take(usize::try_from(head_len).unwrap_or(0))?;
    while c.left() >= 8 + f.sl {
        let idx = c.u16()?;
        c.take(6)?;
        let osize = c.uint(f.sl)?;
        if idx == 0 {
            break;
        }
        let at = c.at();
        let Ok(n) = usize::try_from(osize) else {
            return bad(at, "global heap object size overflows");
        };
        let data = c.take(n)?;
        if idx == index {
            let take = usize::try_from(len.min(osize)).unwrap_or(0);
            return Ok((at, data.get(..take).unwrap_or_default().to_vec()));
        }
        c.take((8 - n % 8) % 8).ok();
    }
    bad(abs, format!("global heap object {index} not found"))
}

#[cfg(test)]
mod tests;
