//! gzip and zlib streams (`.gz`, `.tar.gz`, joblib's compressed files): decompressed into
//! a bounded spool and scanned by content, with compression bombs reported.
//!
//! Rules: WS209 compression bomb, WS240 corrupt stream.

use crate::driver::Walker;
use crate::io::spool;
use crate::{Error, Format, Input, Location, Severity};
use std::io::{BufReader, SeekFrom};

/// Below this many inflated bytes nothing is called a bomb.
const BOMB_FLOOR: u64 = 10 << 20;

/// A zlib stream header (what joblib writes with `compress=`): CMF/FLG check and deflate.
pub fn sniff_zlib(p: &[u8]) -> bool {
    match p {
        [cmf, flg, ..] => {
            cmf & 0x0f == 8
                && cmf >> 4 <= 7
                && (u16::from(*cmf) * 256 + u16::from(*flg)) % 31 == 0
                && flg & 0x20 == 0
        }
        _ => false,
    }
}

/// Decompress and scan the content.
pub fn scan(
    w: &mut Walker,
    input: &mut dyn Input,
    len: u64,
    loc: &Location,
    depth: u32,
    format: Format,
) -> Result<(), Error> {
    let io = |source| Error::Io {
        path: loc.to_string(),
        source,
    };
    input.seek(SeekFrom::Start(0)).map_err(io)?;
    let ratio = w.options.max_compression_ratio;
    let limit = len
        .saturating_mul(ratio)
        .max(BOMB_FLOOR)
        .min(w.options.max_uncompressed_bytes);
    let buffered = BufReader::with_capacity(256 * 1024, input);
    let (what, result) = match format {
        Format::Gzip => (
            "gzip",
            spool(&mut flate2::read::MultiGzDecoder::new(buffered), limit),
        ),
        _ => (
            "zlib",
            spool(&mut flate2::read::ZlibDecoder::new(buffered), limit),
        ),
    };
    let sp = match result {
        Ok(s) => s,
        Err(e) => {
            w.finding(
                loc,
                "WS240",
                Severity::Medium,
                None,
                format!("{what} stream is corrupt: {e}"),
            );
            return Err(Error::Unsupported {
                path: loc.to_string(),
                detail: format!("corrupt {what} stream: {e}"),
            });
        }
    };
    if sp.overflow {
        w.finding(loc, "WS209", Severity::High, None, format!("compression bomb: {len} bytes of {what} inflate to more than {limit} bytes; not examined further"));
        return Ok(());
    }
    let mut data = sp.data;
    w.scan_input(
        &mut data,
        sp.len,
        loc.member(format!("({what} content)")),
        depth + 1,
    );
    Ok(())
}
