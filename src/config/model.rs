//! The checked configuration's parts: elements, environment types, retention,
//! schedule, and the resolved views handed to the code that captures data.

use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::Glob;
use super::cron::Cron;
use crate::retention::Policy;

/// What kind of environment a branch is; decides manual-snapshot limits and, with
/// `admins`, who may overwrite it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EnvironmentType {
    /// The production branch, or a branch matched under `[environments] production`.
    Production,
    /// A branch matched under `[environments] staging`.
    Staging,
    /// Every other branch.
    Development,
}

impl EnvironmentType {
    /// The name used in the file and in `--json` output.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Production => "production",
            Self::Staging => "staging",
            Self::Development => "development",
        }
    }
}

impl fmt::Display for EnvironmentType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One entry of `[environments]`: branches matching `branches` are `environment`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvironmentRule {
    /// The type given to matching branches.
    pub environment: EnvironmentType,
    /// The patterns, in the order written.
    pub branches: Vec<Glob>,
}

/// A `[[mount]]` as written: a directory tree of files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// The element name: unique among mounts and services, `[A-Za-z0-9_.-]+`.
    pub name: String,
    /// The directory, relative to the work tree or absolute; may hold `{branch}`
    /// and `${VAR}`. Never empty.
    pub path: String,
    /// Paths left out of snapshots, in gitignore syntax (e.g. `styles/`, `*.tmp`).
    pub exclude: Vec<String>,
}

/// The engine behind a `[[service]]`: its `type` key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ServiceKind {
    /// PostgreSQL, reached by `url`.
    Postgresql,
    /// MySQL or MariaDB, reached by `url`.
    Mysql,
    /// Redis, reached by `url`.
    Redis,
    /// An SQLite database file at `path`.
    Sqlite,
    /// Anything else, through a user-given `dump` and `restore` command.
    Command,
}

impl ServiceKind {
    /// The name used in the file and in `--json` output.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Postgresql => "postgresql",
            Self::Mysql => "mysql",
            Self::Redis => "redis",
            Self::Sqlite => "sqlite",
            Self::Command => "command",
        }
    }
}

impl fmt::Display for ServiceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a service is reached. The variant follows from the [`ServiceKind`]:
/// `Url` for postgresql, mysql and redis, `File` for sqlite, `Commands` for command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServiceAccess {
    /// A connection URL.
    Url(String),
    /// A database file. In a [`Service`] the path as written; in a
    /// [`ResolvedService`] absolute.
    File(PathBuf),
    /// Shell commands that write and read a dump.
    Commands {
        /// The command that writes a dump.
        dump: String,
        /// The command that restores a dump.
        restore: String,
        /// The file extension of a dump, without a dot (default `dump`); names the
        /// file in snapshot views and exports.
        extension: String,
    },
}

/// A `[[service]]` as written: a database or other server, captured through its
/// own dump interface. Values may hold `{branch}` and `${VAR}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Service {
    /// The element name: unique among mounts and services, `[A-Za-z0-9_.-]+`.
    pub name: String,
    /// The engine.
    pub kind: ServiceKind,
    /// How to reach it.
    pub access: ServiceAccess,
}

/// A mount for one branch: placeholders filled in, path absolute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedMount {
    /// The element name.
    pub name: String,
    /// The directory: a relative path joined onto the work tree, an absolute path
    /// kept. Never the work tree itself nor one of its ancestors.
    pub path: PathBuf,
    /// Paths left out, in gitignore syntax, relative to `path`.
    pub exclude: Vec<String>,
}

/// A service for one branch: placeholders filled in, an SQLite path absolute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedService {
    /// The element name.
    pub name: String,
    /// The engine.
    pub kind: ServiceKind,
    /// How to reach it, ready to use.
    pub access: ServiceAccess,
}

/// A named set of keep rules: `[retention] preset`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RetentionPreset {
    /// The smallest set.
    Essential,
    /// More snapshots, kept longer.
    Advanced,
    /// The most snapshots, kept longest.
    Premium,
}

impl RetentionPreset {
    /// The name used in the file.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Essential => "essential",
            Self::Advanced => "advanced",
            Self::Premium => "premium",
        }
    }
}

impl fmt::Display for RetentionPreset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What `backup` does when a manual snapshot would take an environment past its
/// `manual_limit`: `[retention] manual_over_limit`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OverLimit {
    /// Take no snapshot, and say which snapshots to delete (the default: nothing a
    /// user asked to keep goes without being asked).
    #[default]
    Refuse,
    /// Take the snapshot, then delete the oldest manual snapshots that are neither
    /// pinned nor kept by `--keep-for`, down to the limit.
    DropOldest,
}

/// The `[retention]` table, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retention {
    /// Which snapshots `forget` keeps: the preset's rules (`essential` when the table
    /// names neither a preset nor a `keep_*` rule), or the explicit rules, with the
    /// limits and days the table gives.
    pub policy: Policy,
    /// What a manual snapshot over the limit does.
    pub over_limit: OverLimit,
    /// Days a manual snapshot is kept when `backup --keep-for` is not given (at least 1).
    pub keep_for: Option<u32>,
}

/// The `[schedule]` table: when automated snapshots are due, and of which branches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    /// When snapshots are due: a five-field cron expression (minute hour
    /// day-of-month month day-of-week), in the machine's local time as cron reads it.
    pub cron: Cron,
    /// The branches to snapshot; default: the production branch.
    pub branches: Vec<Glob>,
    /// Whether automated snapshots are live (default), as on hosting platforms: a
    /// schedule at 3 a.m. should not pause the application every night.
    pub live: bool,
}

impl Schedule {
    /// Whether `branch` gets automated snapshots.
    pub fn applies_to(&self, branch: &str) -> bool {
        self.branches.iter().any(|pattern| pattern.matches(branch))
    }
}
