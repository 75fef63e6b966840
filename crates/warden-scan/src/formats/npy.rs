//! NumPy `.npy` (and, through the zip reader, `.npz`): the header is a Python dict
//! literal parsed here with bounds; arrays of dtype `object` are pickles, which the
//! pickle machine scans from the first data byte.
//!
//! Rules: WS301 object array (needs `allow_pickle=True`), WS302 malformed header, WS303
//! data size differs from the header.

#![deny(clippy::indexing_slicing)]

use crate::driver::Walker;
use crate::formats::pickle;
use crate::io::Window;
use crate::{Error, Input, Location, Severity};
use std::io::{BufReader, SeekFrom};

/// Longest header accepted (NumPy itself refuses headers above 10 000 bytes by default).
const MAX_HEADER: u64 = 1 << 20;

#[derive(Debug, Clone, PartialEq)]
enum Lit {
    Str(String),
    Int(i64),
    Bool(bool),
    None,
    Seq(Vec<Lit>),
    Dict(Vec<(Lit, Lit)>),
}

struct P<'a> {
    s: &'a [u8],
    i: usize,
    depth: u32,
}

impl P<'_> {
    fn ws(&mut self) {
        while self.s.get(self.i).is_some_and(u8::is_ascii_whitespace) {
            self.i += 1;
        }
    }
    fn eat(&mut self, c: u8) -> bool {
        self.ws();
        if self.s.get(self.i) == Some(&c) {
            self.i += 1;
            true
        } else {
            false
        }
    }
    fn value(&mut self) -> Option<Lit> {
        self.ws();
        self.depth += 1;
        if self.depth > 64 {
            return None;
        }
        let c = *self.s.get(self.i)?;
        let v = match c {
            b'\'' | b'"' => {
                self.i += 1;
                let start = self.i;
                while self.s.get(self.i)? != &c {
                    if self.s.get(self.i)? == &b'\\' {
                        self.i += 1;
                    }
                    self.i += 1;
                }
                let v = String::from_utf8_lossy(self.s.get(start..self.i)?).into_owned();
                self.i += 1;
                Lit::Str(v)
            }
            b'{' => {
                self.i += 1;
                let mut pairs = Vec::new();
                while !self.eat(b'}') {
                    let k = self.value()?;
                    if !self.eat(b':') {
                        return None;
                    }
                    let v = self.value()?;
                    pairs.push((k, v));
                    if !self.eat(b',') && !self.eat(b'}') {
                        return None;
                    } else if self.s.get(self.i.wrapping_sub(1)) == Some(&b'}') {
                        break;
                    }
                }
                Lit::Dict(pairs)
            }
            b'(' | b'[' => {
                let close = if c == b'(' { b')' } else { b']' };
                self.i += 1;
                let mut items = Vec::new();
                loop {
                    if self.eat(close) {
                        break;
                    }
                    items.push(self.value()?);
                    if self.eat(close) {
                        break;
                    }
                    if !self.eat(b',') {
                        return None;
                    }
                }
                Lit::Seq(items)
            }
            _ => {
                let start = self.i;
                while self
                    .s
                    .get(self.i)
                    .is_some_and(|b| b.is_ascii_alphanumeric() || *b == b'-' || *b == b'_')
                {
                    self.i += 1;
                }
                let word = std::str::from_utf8(self.s.get(start..self.i)?).ok()?;
                match word {
                    "True" => Lit::Bool(true),
                    "False" => Lit::Bool(false),
                    "None" => Lit::None,
                    w => Lit::Int(w.trim_end_matches('L').parse().ok()?),
                }
            }
        };
        self.depth -= 1;
        Some(v)
    }
}

fn parse_header(s: &[u8]) -> Option<Vec<(Lit, Lit)>> {
    let mut p = P { s, i: 0, depth: 0 };
    match p.value()? {
        Lit::Dict(d) => Some(d),
        _ => None,
    }
}

/// Item size of a dtype descriptor, `None` when it holds Python objects.
fn itemsize(d: &Lit) -> Result<Option<u64>, ()> {
    match d {
        Lit::Str(s) => {
            let code = s.trim_start_matches(['<', '>', '|', '=']);
            let kind = code.chars().next().ok_or(())?;
            if kind == 'O' {
                return Ok(None);
            }
            let n: u64 = code.get(1..).ok_or(())?.parse().map_err(|_| ())?;
            Ok(Some(if kind == 'U' { n * 4 } else { n }))
        }
        Lit::Seq(fields) => {
            let mut total = 0u64;
            for f in fields {
                let Lit::Seq(parts) = f else { return Err(()) };
                let sub = parts.get(1).ok_or(())?;
                let Some(size) = itemsize(sub)? else {
                    return Ok(None);
                };
                let count = match parts.get(2) {
                    Some(Lit::Seq(shape)) => shape.iter().try_fold(1u64, |a, v| match v {
                        Lit::Int(i) if *i >= 0 => a.checked_mul(*i as u64).ok_or(()),
                        _ => Err(()),
                    })?,
                    Some(Lit::Int(i)) if *i >= 0 => *i as u64,
                    _ => 1,
                };
                total = total
                    .checked_add(size.checked_mul(count).ok_or(())?)
                    .ok_or(())?;
            }
            Ok(Some(total))
        }
        _ => Err(()),
    }
}

/// Scan one `.npy` input.
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
    let bad = |w: &mut Walker, why: &str| {
        w.finding(
            loc,
            "WS302",
            Severity::Medium,
            Some(0),
            format!("malformed NumPy header: {why}"),
        );
        Err(Error::Unsupported {
            path: loc.to_string(),
            detail: format!("malformed NumPy header: {why}"),
        })
    };
    input.seek(SeekFrom::Start(0)).map_err(io)?;
    let mut pre = [0u8; 12];
    if len < 10 {
        return bad(w, "file too short");
    }
    let n = if len >= 12 { 12 } else { 10 };
    input
        .read_exact(pre.get_mut(..n).unwrap_or(&mut []))
        .map_err(io)?;
    let major = pre.get(6).copied().unwrap_or(0);
    let (hlen, hstart) = match major {
        1 => (
            u64::from(u16::from_le_bytes([
                pre.get(8).copied().unwrap_or(0),
                pre.get(9).copied().unwrap_or(0),
            ])),
            10u64,
        ),
        2 | 3 => {
            let mut a = [0u8; 4];
            a.copy_from_slice(pre.get(8..12).unwrap_or(&[0; 4]));
            (u64::from(u32::from_le_bytes(a)), 12u64)
        }
        v => return bad(w, &format!("unknown version {v}")),
    };
    if hlen > MAX_HEADER || hstart + hlen > len {
        return bad(w, &format!("header length {hlen} out of bounds"));
    }
    let mut header = vec![0u8; hlen as usize];
    input.seek(SeekFrom::Start(hstart)).map_err(io)?;
    input.read_exact(&mut header).map_err(io)?;
    let Some(dict) = parse_header(&header) else {
        return bad(w, "header is not a Python dict literal");
    };
    let get = |k: &str| {
        dict.iter()
            .find(|(key, _)| matches!(key, Lit::Str(s) if s == k))
            .map(|(_, v)| v.clone())
    };
    let (Some(descr), Some(shape)) = (get("descr"), get("shape")) else {
        return bad(w, "header lacks 'descr' or 'shape'");
    };
    let data_at = hstart + hlen;
    let data_len = len - data_at;
    let Ok(size) = itemsize(&descr) else {
        return bad(w, "unreadable dtype descriptor");
    };
    match size {
        None => {
            w.finding(loc, "WS301", Severity::Low, Some(data_at), "NumPy object array: its data is a pickle and loading it needs allow_pickle=True; the pickle was scanned".into());
            let mut win = Window::new(input, data_at, data_len);
            let mut r = BufReader::with_capacity(256 * 1024, &mut win);
            let mut cx = w.context(loc.clone(), depth);
            pickle::scan_stream(&mut r, data_at, &mut cx)?;
        }
        Some(item) => {
            let count = match &shape {
                Lit::Seq(s) => s.iter().try_fold(1u64, |a, v| match v {
                    Lit::Int(i) if *i >= 0 => a.checked_mul(*i as u64),
                    _ => None,
                }),
                _ => None,
            };
            let Some(count) = count else {
                return bad(w, "unreadable shape");
            };
            let want = count.checked_mul(item);
            if want != Some(data_len) {
                let want =
                    want.map_or_else(|| "an impossible number of".to_owned(), |v| v.to_string());
                w.finding(
                    loc,
                    "WS303",
                    Severity::Low,
                    Some(data_at),
                    format!("NumPy header promises {want} data bytes but {data_len} follow"),
                );
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_literal_parses() {
        let d = parse_header(b"{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }   \n")
            .unwrap();
        assert_eq!(d.len(), 3);
        assert_eq!(itemsize(&d[0].1), Ok(Some(4)));
        let d = parse_header(
            b"{'descr': [('a', '<i8'), ('b', '|O')], 'fortran_order': False, 'shape': (2,), }",
        )
        .unwrap();
        assert_eq!(itemsize(&d[0].1), Ok(None));
        assert!(parse_header(b"{'descr': ").is_none());
    }
}
