//! Timestamps: the current time and an RFC 3339 rendering, rendered by the `time` crate.

use crate::Timestamp;

/// The current time in whole seconds since the Unix epoch (0 if the clock is before 1970).
pub fn now() -> Timestamp {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Render a timestamp as `YYYY-MM-DDTHH:MM:SSZ` (UTC); outside the years 0000-9999,
/// which RFC 3339 cannot express, as `@<seconds>`.
pub fn format_utc(t: Timestamp) -> String {
    ::time::OffsetDateTime::from_unix_timestamp(t)
        .ok()
        .and_then(|d| {
            d.format(&::time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| format!("@{t}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_dates() {
        assert_eq!(format_utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(format_utc(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(format_utc(1_764_171_722), "2025-11-26T15:42:02Z");
        assert_eq!(format_utc(-1), "1969-12-31T23:59:59Z");
        assert_eq!(format_utc(4_102_444_800), "2100-01-01T00:00:00Z");
        assert_eq!(format_utc(253_402_300_800), "@253402300800");
        assert_eq!(format_utc(i64::MIN), format!("@{}", i64::MIN));
    }
}
