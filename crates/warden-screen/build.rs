//! Embeds the transformer tier's LoRA adapter (`model/transformer-adapter.bin`) when the
//! feature `transformer` is on and the file exists. Whether it must exist is the head
//! card's decision, checked at load (`transformer.rs`): a card that pins an adapter
//! refuses a build without one, naming the file, instead of failing to compile.

#![allow(clippy::print_stdout, reason = "build scripts talk to cargo on stdout")]

use std::path::Path;

fn main() -> std::io::Result<()> {
    // The whole directory: cargo then also notices the adapter appearing or disappearing.
    println!("cargo::rerun-if-changed=model");
    let manifest = std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default();
    let out = std::env::var_os("OUT_DIR").unwrap_or_default();
    let adapter = Path::new(&manifest).join("model/transformer-adapter.bin");
    let code = if std::env::var_os("CARGO_FEATURE_TRANSFORMER").is_some() && adapter.is_file() {
        format!("Some(include_bytes!({:?}))", adapter.display().to_string())
    } else {
        "None".to_owned()
    };
    std::fs::write(Path::new(&out).join("adapter.rs"), code)
}
