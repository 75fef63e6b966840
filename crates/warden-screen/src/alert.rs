//! alert (being written).
