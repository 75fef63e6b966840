//! What the fuzz targets share: driving a structural validator of `warden-scan` over
//! arbitrary bytes the way the scanner's driver does.

use warden_scan::{Context, Error, Input, Location, ScanOptions};

/// A format module's content sniffer.
pub type Sniff = fn(&[u8]) -> bool;
/// A format module's structural validator.
pub type Scan = fn(&mut dyn Input, u64, &mut Context<'_>) -> Result<(), Error>;

/// Sniff `data`, then validate it as one input file twice: header-only and `--deep`
/// (tensor data read too), with a 1 MiB header bound. Every outcome must be a finding
/// or a typed error: the target only fails on a panic, a hang or an allocation beyond
/// the bounds.
pub fn structural(data: &[u8], sniff: Sniff, scan: Scan) {
    let _ = sniff(data);
    for deep in [false, true] {
        let opts = ScanOptions {
            deep,
            max_header_bytes: 1 << 20,
            ..ScanOptions::default()
        };
        let mut findings = Vec::new();
        let mut cx = Context {
            location: Location::file("fuzz"),
            options: &opts,
            findings: &mut findings,
            depth: 0,
        };
        let _ = scan(&mut std::io::Cursor::new(data), data.len() as u64, &mut cx);
    }
}
