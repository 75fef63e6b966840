//! Seal or unseal one file with the vault's sealed format, for `bench/vault.sh`.
//!
//! `vault_bench seal IN OUT` and `vault_bench unseal IN OUT` (OUT may be `/dev/null`).
//! Uses a fixed benchmark key (never for real data) and prints `bytes seconds` on
//! standard output. Threads: `RAYON_NUM_THREADS`.

#![allow(
    clippy::print_stdout,
    reason = "a benchmark driver prints its measurement"
)]

use std::io::{BufReader, BufWriter};
use std::time::Instant;
use warden_vault::key::DataKey;
use warden_vault::sealed::{self, Binding, Header, SealOptions, SealedFile};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let (Some(mode), Some(input), Some(output)) = (args.get(1), args.get(2), args.get(3)) else {
        return Err("usage: vault_bench seal|unseal IN OUT".into());
    };
    let key = DataKey::from_bytes(&[0x42; 32])?;
    let binding = Binding {
        name: "bench".into(),
        version: "1".into(),
        path: "model.bin".into(),
        manifest_digest: [0; 32],
    };
    let out = BufWriter::with_capacity(1 << 20, std::fs::File::create(output)?);
    let started = Instant::now();
    let bytes = match mode.as_str() {
        "seal" => {
            let len = std::fs::metadata(input)?.len();
            let header = Header {
                segment_size: sealed::DEFAULT_SEGMENT,
                plaintext_len: len,
                salt: sealed::random_salt()?,
                plaintext_sha256: [0; 32],
                manifest_digest: binding.manifest_digest,
                name: binding.name.clone(),
                version: binding.version.clone(),
                path: binding.path.clone(),
                kek_id: "bench".into(),
                data_key_id: "bench".into(),
                wrapped_key: vec![0; 40],
            };
            let r = BufReader::with_capacity(1 << 20, std::fs::File::open(input)?);
            sealed::seal(&key, &header, r, out, SealOptions::default(), &|_| {})?;
            len
        }
        "unseal" => {
            let f = BufReader::with_capacity(1 << 20, std::fs::File::open(input)?);
            let mut s = SealedFile::open(f, input, &binding, &key)?;
            let len = s.header().plaintext_len;
            s.unseal_to(out, &|_| {})?;
            len
        }
        _ => return Err("usage: vault_bench seal|unseal IN OUT".into()),
    };
    println!("{bytes} {:.6}", started.elapsed().as_secs_f64());
    Ok(())
}
