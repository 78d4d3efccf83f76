//! The current time as envsnap sees it.
//!
//! `ENVSNAP_NOW` (RFC 3339) sets it, so that retention and schedules can be tried
//! on a simulated history — by the tests, by `bench/`, or by a user who wants to see
//! what `forget` will do next month — without waiting for the calendar.

use anyhow::{Context as _, Result};
use chrono::{DateTime, Utc};

/// The variable that sets the clock.
pub const VARIABLE: &str = "ENVSNAP_NOW";

/// `ENVSNAP_NOW` if it is set, otherwise the system clock.
pub fn now() -> Result<DateTime<Utc>> {
    match std::env::var(VARIABLE) {
        Ok(text) => DateTime::parse_from_rfc3339(text.trim()).map(|time| time.with_timezone(&Utc)).with_context(|| {
            format!("{VARIABLE}={text:?} is not an RFC 3339 time such as 2026-11-20T12:30:00Z; fix or unset it")
        }),
        Err(_) => Ok(Utc::now()),
    }
}
