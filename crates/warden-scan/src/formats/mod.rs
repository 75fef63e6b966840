//! One module per model format. Whole-input formats expose
//! `sniff(prefix: &[u8]) -> bool` and
//! `scan(input: &mut dyn Input, len: u64, cx: &mut Context) -> Result<(), Error>`.
//!
//! Rule id ranges: WS1xx pickle, WS2xx archives (zip, tar, gzip), WS3xx NumPy/PyTorch
//! containers, WS4xx safetensors, WS5xx GGUF (and chat templates), WS6xx ONNX, WS7xx
//! Keras and HDF5, WS9xx general (limits, unknown formats).

pub mod compress;
pub mod gguf;
pub mod hdf5;
pub mod keras;
pub mod npy;
pub mod onnx;
pub mod pickle;
pub mod safetensors;
pub mod tar;
pub mod zip;
