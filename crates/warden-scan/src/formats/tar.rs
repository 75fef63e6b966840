//! Tar archives (ustar, GNU and pax): every regular member is scanned by content.
//! The very first PyTorch format was a tar of `sys_info`, `pickle`, `tensors` and
//! `storages`; its pickles are found this way.
//!
//! Rules: WS211 unsafe member path, WS230 malformed tar, WS231 link or special member.

#![deny(clippy::indexing_slicing)]

use crate::driver::Walker;
use crate::io::Window;
use crate::{Error, Input, Location, Severity};
use std::io::{BufReader, SeekFrom};

/// True when the first block is a tar header (ustar magic or a valid v7 checksum).
pub fn sniff(p: &[u8]) -> bool {
    let Some(h) = p.get(..512) else { return false };
    if h.get(257..262) == Some(b"ustar") {
        return true;
    }
    checksum_ok(h) && h.first().is_some_and(|&b| b != 0)
}

fn checksum_ok(h: &[u8]) -> bool {
    let Some(field) = h.get(148..156) else {
        return false;
    };
    let Some(stored) = octal(field) else {
        return false;
    };
    let sum: u64 = h
        .iter()
        .enumerate()
        .map(|(i, &b)| {
            if (148..156).contains(&i) {
                32
            } else {
                u64::from(b)
            }
        })
        .sum();
    sum == stored
}

fn octal(f: &[u8]) -> Option<u64> {
    if f.first().is_some_and(|&b| b & 0x80 != 0) {
        // GNU base-256.
        let mut v: u64 = u64::from(f.first().copied().unwrap_or(0) & 0x7f);
        for &b in f.get(1..).unwrap_or(&[]) {
            v = v.checked_mul(256)?.checked_add(u64::from(b))?;
        }
        return Some(v);
    }
    let s: Vec<u8> = f.iter().copied().filter(|&b| b != 0 && b != b' ').collect();
    if s.is_empty() {
        return Some(0);
    }
    u64::from_str_radix(std::str::from_utf8(&s).ok()?, 8).ok()
}

fn cstr(f: &[u8]) -> String {
    let end = f.iter().position(|&b| b == 0).unwrap_or(f.len());
    String::from_utf8_lossy(f.get(..end).unwrap_or(&[])).into_owned()
}

fn read_block(input: &mut dyn Input, at: u64, buf: &mut [u8]) -> std::io::Result<usize> {
    input.seek(SeekFrom::Start(at))?;
    let mut got = 0;
    while got < buf.len() {
        let n = input.read(buf.get_mut(got..).unwrap_or(&mut []))?;
        if n == 0 {
            break;
        }
        got += n;
    }
    Ok(got)
}

/// Scan a tar archive.
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
    let mut at = 0u64;
    let mut h = [0u8; 512];
    let mut long_name: Option<String> = None;
    let mut pax_path: Option<String> = None;
    let mut members = 0u64;
    loop {
        if at + 512 > len {
            if at < len {
                w.finding(
                    loc,
                    "WS230",
                    Severity::Medium,
                    Some(at),
                    "tar archive ends in the middle of a header".into(),
                );
            }
            break;
        }
        read_block(input, at, &mut h).map_err(io)?;
        if h.iter().all(|&b| b == 0) {
            break;
        }
        if !checksum_ok(&h) {
            w.finding(
                loc,
                "WS230",
                Severity::Medium,
                Some(at),
                format!("tar header at offset {at} has a bad checksum; loaders stop or skip here"),
            );
            return Err(Error::Unsupported {
                path: loc.to_string(),
                detail: format!("corrupt tar header at offset {at}"),
            });
        }
        let Some(size) = h.get(124..136).and_then(octal) else {
            w.finding(
                loc,
                "WS230",
                Severity::Medium,
                Some(at),
                "tar header with an unreadable size".into(),
            );
            return Err(Error::Unsupported {
                path: loc.to_string(),
                detail: "corrupt tar size field".into(),
            });
        };
        let kind = h.get(156).copied().unwrap_or(0);
        let mut name = cstr(h.get(0..100).unwrap_or(&[]));
        if h.get(257..262) == Some(b"ustar") {
            let prefix = cstr(h.get(345..500).unwrap_or(&[]));
            if !prefix.is_empty() {
                name = format!("{prefix}/{name}");
            }
        }
        if let Some(n) = long_name.take() {
            name = n;
        }
        if let Some(n) = pax_path.take() {
            name = n;
        }
        let data = at + 512;
        let padded = size.div_ceil(512).saturating_mul(512);
        if data.saturating_add(size) > len {
            w.finding(
                loc,
                "WS230",
                Severity::Medium,
                Some(at),
                format!("tar member {name:?} runs past the end of the archive"),
            );
            return Err(Error::Unsupported {
                path: loc.to_string(),
                detail: "truncated tar archive".into(),
            });
        }
        members += 1;
        if members > 1_000_000 {
            return Err(Error::Limit {
                path: loc.to_string(),
                detail: "more than a million tar members".into(),
            });
        }
        let mloc = loc.member(&name);
        match kind {
            b'L' | b'x' => {
                let n = size.min(1 << 20) as usize;
                let mut buf = vec![0u8; n];
                read_block(input, data, &mut buf).map_err(io)?;
                if kind == b'L' {
                    long_name = Some(cstr(&buf));
                } else {
                    pax_path = pax_field(&buf, "path");
                }
            }
            b'g' | b'5' => {}
            b'0' | 0 | b'7' => {
                if name.starts_with('/') || name.split('/').any(|p| p == "..") {
                    w.finding(
                        &mloc,
                        "WS211",
                        Severity::Medium,
                        None,
                        "tar member path is absolute or climbs out of the extraction directory"
                            .into(),
                    );
                }
                let mut win = Window::new(input, data, size);
                let mut r = BufReader::with_capacity(256 * 1024, &mut win);
                w.scan_input(&mut r, size, mloc, depth + 1);
            }
            b'1' | b'2' => {
                let target = cstr(h.get(157..257).unwrap_or(&[]));
                let what = if kind == b'1' {
                    "hard link"
                } else {
                    "symbolic link"
                };
                w.finding(
                    &mloc,
                    "WS231",
                    Severity::Medium,
                    None,
                    format!(
                        "tar {what} to {target:?}: extraction can overwrite or expose other files"
                    ),
                );
            }
            other => {
                w.finding(
                    &mloc,
                    "WS231",
                    Severity::Low,
                    None,
                    format!(
                        "tar member of type {:?} (device, fifo or vendor extension) skipped",
                        char::from(other)
                    ),
                );
            }
        }
        at = data.saturating_add(padded);
    }
    Ok(())
}

fn pax_field(buf: &[u8], key: &str) -> Option<String> {
    let text = String::from_utf8_lossy(buf);
    let mut rest: &str = &text;
    while !rest.is_empty() {
        let sp = rest.find(' ')?;
        let n: usize = rest.get(..sp)?.parse().ok()?;
        let rec = rest.get(sp + 1..n)?;
        if let Some((k, v)) = rec.trim_end_matches('\n').split_once('=')
            && k == key
        {
            return Some(v.to_owned());
        }
        rest = rest.get(n..)?;
    }
    None
}
