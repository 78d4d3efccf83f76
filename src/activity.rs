//! The activity log: what was done to a repository, by whom, when, on which
//! environment, and with what result — the record a team reads after the fact.
//!
//! The binary appends one [`Activity`] per command that changes something (a backup,
//! a restore, a delete, a prune, a hook run, …), successful or not
//! ([`crate::catalog::Catalog::record`]). Unlike the index the log cannot be rebuilt
//! from the store, so it lives in a file of its own beside the catalog,
//! [`crate::catalog::RECORDS`], which rebuilding the catalog never touches.

use chrono::{DateTime, Utc};
use serde::Serialize;

/// How a command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// It did what was asked.
    Success,
    /// It failed; [`Activity::detail`] says why.
    Failure,
}

impl Outcome {
    /// The word stored and shown.
    pub const fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Failure => "failure",
        }
    }
}

/// One entry of the log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Activity {
    /// When the command started.
    pub started: DateTime<Utc>,
    /// How long it ran, in milliseconds.
    pub duration_ms: u64,
    /// Who ran it: git's `user.email`, else the login name.
    pub user: String,
    /// The machine it ran on.
    pub host: String,
    /// What was done: `backup`, `restore`, `hook pre-push`, `schedule run`, …
    pub action: String,
    /// The environment it concerned, if one.
    pub env: Option<String>,
    /// The snapshots it made, restored or removed (full ids).
    pub snapshots: Vec<String>,
    /// How it ended.
    pub result: Outcome,
    /// The error of a failure, or a word on what a success did.
    pub detail: Option<String>,
}
