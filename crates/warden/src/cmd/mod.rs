//! One module per command group. Each exposes clap argument types and `run*` functions
//! returning the process exit code; errors bubble up as `anyhow::Error` and exit 2.

pub mod audit;
pub mod gateway;
pub mod posture;
pub mod scan;
pub mod screen;
pub mod sign;
pub mod vault;
