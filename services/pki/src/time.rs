//! Times as the hierarchy takes them: unix milliseconds, cut to whole seconds because X.509
//! counts seconds.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::PkiError;

/// The latest instant X.509 can express (9999-12-31T23:59:59Z), in milliseconds.
pub const MAX_X509_TIME_MS: i64 = 253_402_300_799_000;

/// One day in milliseconds.
pub const DAY_MS: i64 = 24 * 3600 * 1000;

/// The system clock in unix milliseconds (0 if it is before 1970).
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// `ms` cut to whole seconds (still in milliseconds), if X.509 can express it.
pub(crate) fn whole_seconds(ms: i64) -> Result<i64, PkiError> {
    if !(0..=MAX_X509_TIME_MS).contains(&ms) {
        return Err(PkiError::InvalidTime(
            "time must lie between 1970 and the end of 9999",
        ));
    }
    Ok(ms - ms % 1000)
}

/// A checked, non-negative `ms` as rcgen's time type.
pub(crate) fn x509_time(ms: i64) -> time::OffsetDateTime {
    rcgen::date_time_ymd(1970, 1, 1) + Duration::from_millis(ms.unsigned_abs())
}

/// A validity period `[not_before_ms, not_after_ms]`, cut to whole seconds; refuses one that
/// is empty at second precision or outside what X.509 expresses.
pub(crate) fn validity(not_before_ms: i64, not_after_ms: i64) -> Result<(i64, i64), PkiError> {
    let not_before = whole_seconds(not_before_ms)?;
    let not_after = whole_seconds(not_after_ms)?;
    if not_after <= not_before {
        return Err(PkiError::InvalidTime(
            "validity is shorter than one whole second",
        ));
    }
    Ok((not_before, not_after))
}

/// `not_before_ms + validity_ms`, refusing a non-positive or overflowing validity.
pub(crate) fn end_of(not_before_ms: i64, validity_ms: i64) -> Result<i64, PkiError> {
    if validity_ms <= 0 {
        return Err(PkiError::InvalidTime("validity must be positive"));
    }
    not_before_ms
        .checked_add(validity_ms)
        .ok_or(PkiError::InvalidTime("not_after is out of range"))
}
