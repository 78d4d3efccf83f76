//! `envsnap.toml`: what an environment's data is made of, and the rules around it.
//!
//! [`Config::load`] reads the shared `envsnap.toml` at the root of the work tree and
//! an optional per-clone override, checks everything that can be checked without
//! touching the outside world, and reports the first mistake as a [`ConfigError`]
//! naming the file, the line and the key. Values that depend on the branch or the
//! environment (`{branch}`, `${VAR}`) stay as written until a resolved view is asked
//! for ([`Config::mounts_for`], [`Config::services_for`], [`Config::pause_for`]), so
//! that `envsnap list` works on a machine that lacks the database password.
//!
//! ```
//! use std::path::Path;
//! use envsnap::config::{Config, ServiceAccess};
//!
//! let config = Config::parse(
//!     r#"
//!     [[service]]
//!     name = "db"
//!     type = "postgresql"
//!     url = "postgresql://app:${DB_PASSWORD}@127.0.0.1/app_{branch}"
//!     "#,
//!     Path::new("envsnap.toml"),
//! )?;
//! let lookup = |name: &str| (name == "DB_PASSWORD").then(|| "s3cret".to_owned());
//! let services = config.services_for("feature/Login", Path::new("/repo"), &lookup)?;
//! assert_eq!(
//!     services[0].access,
//!     ServiceAccess::Url("postgresql://app:s3cret@127.0.0.1/app_feature_login".to_owned())
//! );
//! assert!(config.is_protected("main"));
//! # Ok::<(), envsnap::config::ConfigError>(())
//! ```
//!
//! ## The per-clone override
//!
//! A second file of the same shape (by convention [`LOCAL_FILE_NAME`] in the git
//! directory, so it is never committed) changes one clone's settings. Each file is
//! checked on its own, then the override is merged over the shared file:
//!
//! - a top-level key it gives replaces the shared value; so does a table it gives
//!   (`[retention]`, `[schedule]`, `[environments]` are replaced whole, not merged);
//! - a `[[mount]]` or `[[service]]` replaces the shared one of the same name, or is
//!   added after the others; an override cannot remove an element;
//! - defaults (`production = "main"`, `protected = [production]`, schedule branches
//!   `[production]`) are applied after merging.

mod cron;
mod document;
mod error;
mod glob;
mod interpolate;
mod load;
mod model;
mod resolve;
mod source;
mod starter;
mod validate;

use std::path::{Path, PathBuf};

pub use cron::Cron;
pub use error::ConfigError;
pub use glob::{Glob, GlobError};
pub use interpolate::{branch_slug, process_environment};
pub use model::{
    EnvironmentRule, EnvironmentType, Mount, OverLimit, ResolvedMount, ResolvedService, Retention, RetentionPreset,
    Schedule, Service, ServiceAccess, ServiceKind,
};
pub use starter::STARTER;

use source::{Origin, Source};

/// The name of the shared configuration file, at the root of the work tree.
pub const FILE_NAME: &str = "envsnap.toml";

/// The conventional name of the per-clone override, kept in the git directory
/// (the common one, so that all worktrees share it).
pub const LOCAL_FILE_NAME: &str = "envsnap.local.toml";

/// A checked configuration: the shared file merged with the per-clone override.
///
/// Built only by [`Config::load`] or [`Config::parse`], so every value in it has
/// passed the checks: names are unique and well formed, patterns compile, each
/// service has the keys its type needs.
#[derive(Debug, Clone)]
pub struct Config {
    production: String,
    protected: Vec<Glob>,
    repository: Option<PathBuf>,
    admins: Vec<String>,
    pause: Option<(String, Origin)>,
    resume: Option<(String, Origin)>,
    environments: Vec<EnvironmentRule>,
    retention: Option<Retention>,
    schedule: Option<Schedule>,
    mounts: Vec<Mount>,
    /// Where each of `mounts` was written, index for index.
    mount_origins: Vec<Origin>,
    services: Vec<Service>,
    /// Where each of `services` was written, index for index.
    service_origins: Vec<Origin>,
    /// The files read, shared first; kept to name lines in errors found later.
    sources: Vec<Source>,
}

impl Config {
    /// The production branch (default `main`).
    pub fn production(&self) -> &str {
        &self.production
    }

    /// The protected branch patterns (default: the production branch).
    pub fn protected(&self) -> &[Glob] {
        &self.protected
    }

    /// Where snapshots live, as written; `None` for the default (`.git/envsnap/`).
    pub fn repository(&self) -> Option<&Path> {
        self.repository.as_deref()
    }

    /// [`Config::repository`] made absolute: a relative path is joined onto `work_tree`.
    pub fn repository_in(&self, work_tree: &Path) -> Option<PathBuf> {
        self.repository.as_ref().map(|path| work_tree.join(path))
    }

    /// The admins; empty when the team does not use that guard.
    pub fn admins(&self) -> &[String] {
        &self.admins
    }

    /// `[environments]`, in the order written.
    pub fn environments(&self) -> &[EnvironmentRule] {
        &self.environments
    }

    /// `[retention]`, if the file has one. Without it nothing expires: `forget`
    /// refuses to guess a policy, and `backup` sets no limit.
    pub fn retention(&self) -> Option<&Retention> {
        self.retention.as_ref()
    }

    /// `[schedule]`, if any.
    pub fn schedule(&self) -> Option<&Schedule> {
        self.schedule.as_ref()
    }

    /// The mounts as written, in order; see [`Config::mounts_for`] for one branch's.
    pub fn mounts(&self) -> &[Mount] {
        &self.mounts
    }

    /// The services as written, in order; see [`Config::services_for`].
    pub fn services(&self) -> &[Service] {
        &self.services
    }

    /// The names of all elements, mounts first, in the order written.
    pub fn element_names(&self) -> impl Iterator<Item = &str> {
        let mounts = self.mounts.iter().map(|mount| mount.name.as_str());
        mounts.chain(self.services.iter().map(|service| service.name.as_str()))
    }

    /// Whether a snapshot is taken before a merge into `branch` or a push to it.
    pub fn is_protected(&self, branch: &str) -> bool {
        self.protected.iter().any(|pattern| pattern.matches(branch))
    }

    /// The type of `branch`: production for the production branch; otherwise the
    /// type of the first `[environments]` entry with a matching pattern; otherwise
    /// development.
    pub fn environment_type(&self, branch: &str) -> EnvironmentType {
        if branch == self.production {
            return EnvironmentType::Production;
        }
        self.environments
            .iter()
            .find(|rule| rule.branches.iter().any(|pattern| pattern.matches(branch)))
            .map_or(EnvironmentType::Development, |rule| rule.environment)
    }

    /// Whether `user` (a name or email) may restore into production and delete
    /// snapshots: true for everyone when no admins are configured (absent or empty
    /// list). Compared ignoring ASCII case and surrounding spaces.
    pub fn is_admin(&self, user: &str) -> bool {
        let user = user.trim();
        self.admins.is_empty() || self.admins.iter().any(|admin| admin.trim().eq_ignore_ascii_case(user))
    }

    fn source_of(&self, origin: &Origin) -> &Source {
        // Origins index `sources` by construction.
        &self.sources[origin.source]
    }
}

#[cfg(test)]
mod tests;
