//! Screening latency (being written).
fn main() {}
