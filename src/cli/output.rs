//! How much the binary says besides its results: `--quiet` says nothing but results
//! and errors, `--verbose` adds details. Results go to stdout; everything said here
//! goes to stderr, so a script that reads stdout is never disturbed by it.

use std::sync::atomic::{AtomicU8, Ordering};

/// How much to say.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// Results and errors only; no progress bars.
    Quiet = 0,
    /// Results, errors, and a summary line of what was done.
    Normal = 1,
    /// All of that and details: each element, timings.
    Verbose = 2,
}

static LEVEL: AtomicU8 = AtomicU8::new(Level::Normal as u8);

/// Sets the level for the rest of the run.
pub fn set(level: Level) {
    LEVEL.store(level as u8, Ordering::Relaxed);
}

/// Whether a message of this level is said.
pub fn says(level: Level) -> bool {
    LEVEL.load(Ordering::Relaxed) >= level as u8
}

/// Says a summary of what was done, on stderr, unless `--quiet`.
macro_rules! note {
    ($($arg:tt)*) => {
        if $crate::cli::output::says($crate::cli::output::Level::Normal) {
            eprintln!($($arg)*);
        }
    };
}

/// Says a detail, on stderr, with `--verbose` only.
macro_rules! detail {
    ($($arg:tt)*) => {
        if $crate::cli::output::says($crate::cli::output::Level::Verbose) {
            eprintln!($($arg)*);
        }
    };
}

pub(crate) use {detail, note};
