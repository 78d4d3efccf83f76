//! The resolved views: a configuration's elements and commands for one branch, with
//! `{branch}` and `${VAR}` filled in and paths made absolute.

use std::path::{Component, Path, PathBuf};

use super::interpolate::{self, ExpandError};
use super::source::Origin;
use super::{Config, ConfigError, ResolvedMount, ResolvedService, ServiceAccess, branch_slug};

impl Config {
    /// The mounts of `branch`, in the order written. Relative paths are joined onto
    /// `work_tree`; `lookup` gives the value of each `${VAR}` (the binary passes
    /// [`process_environment`](super::process_environment)).
    ///
    /// Fails on the first `${VAR}` that `lookup` does not know, and on a path that
    /// would make the work tree itself (or one of its ancestors) a mount, which a
    /// restore would overwrite.
    pub fn mounts_for(
        &self,
        branch: &str,
        work_tree: &Path,
        lookup: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Vec<ResolvedMount>, ConfigError> {
        (0..self.mounts.len()).map(|index| self.resolve_mount(index, branch, work_tree, lookup)).collect()
    }

    /// The mount called `name` for `branch`, resolved as [`Config::mounts_for`] does;
    /// `None` when there is no such mount. Only its own `${VAR}`s are looked up, so a
    /// command that needs one element works without the others' secrets.
    pub fn mount_for(
        &self,
        name: &str,
        branch: &str,
        work_tree: &Path,
        lookup: &dyn Fn(&str) -> Option<String>,
    ) -> Option<Result<ResolvedMount, ConfigError>> {
        let index = self.mounts.iter().position(|mount| mount.name == name)?;
        Some(self.resolve_mount(index, branch, work_tree, lookup))
    }

    fn resolve_mount(
        &self,
        index: usize,
        branch: &str,
        work_tree: &Path,
        lookup: &dyn Fn(&str) -> Option<String>,
    ) -> Result<ResolvedMount, ConfigError> {
        let (mount, origin) = (&self.mounts[index], &self.mount_origins[index]);
        let slug = branch_slug(branch);
        let path = work_tree.join(self.expand(&mount.path, origin, "path", &slug, lookup)?);
        if lexical(work_tree).starts_with(lexical(&path)) {
            return Err(self.source_of(origin).invalid(
                &origin.key.key("path"),
                format!(
                    "`{}` holds the whole repository; a mount must be a data directory such as \"var/uploads\"",
                    path.display()
                ),
            ));
        }
        Ok(ResolvedMount { name: mount.name.clone(), path, exclude: mount.exclude.clone() })
    }

    /// The services of `branch`, in the order written; see [`Config::mounts_for`].
    /// A relative SQLite path is joined onto `work_tree`.
    pub fn services_for(
        &self,
        branch: &str,
        work_tree: &Path,
        lookup: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Vec<ResolvedService>, ConfigError> {
        (0..self.services.len()).map(|index| self.resolve_service(index, branch, work_tree, lookup)).collect()
    }

    /// The service called `name` for `branch`, resolved as [`Config::services_for`]
    /// does; `None` when there is no such service. Only its own `${VAR}`s are looked
    /// up: `backup --element db` needs no other service's password.
    pub fn service_for(
        &self,
        name: &str,
        branch: &str,
        work_tree: &Path,
        lookup: &dyn Fn(&str) -> Option<String>,
    ) -> Option<Result<ResolvedService, ConfigError>> {
        let index = self.services.iter().position(|service| service.name == name)?;
        Some(self.resolve_service(index, branch, work_tree, lookup))
    }

    fn resolve_service(
        &self,
        index: usize,
        branch: &str,
        work_tree: &Path,
        lookup: &dyn Fn(&str) -> Option<String>,
    ) -> Result<ResolvedService, ConfigError> {
        let (service, origin) = (&self.services[index], &self.service_origins[index]);
        let slug = branch_slug(branch);
        let expand = |value: &str, field| self.expand(value, origin, field, &slug, lookup);
        let access = match &service.access {
            ServiceAccess::Url(url) => ServiceAccess::Url(expand(url, "url")?),
            ServiceAccess::File(path) => ServiceAccess::File(work_tree.join(expand(&path.to_string_lossy(), "path")?)),
            ServiceAccess::Commands { dump, restore, extension } => ServiceAccess::Commands {
                dump: expand(dump, "dump")?,
                restore: expand(restore, "restore")?,
                extension: extension.clone(),
            },
        };
        Ok(ResolvedService { name: service.name.clone(), kind: service.kind, access })
    }

    /// The `pause` command for `branch`, resolved; `None` when none is configured.
    pub fn pause_for(
        &self,
        branch: &str,
        lookup: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Option<String>, ConfigError> {
        self.command_for(self.pause.as_ref(), branch, lookup)
    }

    /// The `resume` command for `branch`, resolved; `None` when none is configured.
    pub fn resume_for(
        &self,
        branch: &str,
        lookup: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Option<String>, ConfigError> {
        self.command_for(self.resume.as_ref(), branch, lookup)
    }

    fn command_for(
        &self,
        command: Option<&(String, Origin)>,
        branch: &str,
        lookup: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Option<String>, ConfigError> {
        let Some((command, origin)) = command else {
            return Ok(None);
        };
        // `origin.key` is the key of the command itself, not of a table holding it.
        let slug = branch_slug(branch);
        let source = self.source_of(origin);
        interpolate::expand(command, &slug, lookup).map(Some).map_err(|error| match error {
            ExpandError::Unset(variable) => source.unset_variable(&origin.key, &variable),
            ExpandError::Syntax(problem) => source.invalid(&origin.key, problem),
        })
    }

    /// `value`, the `field` of the element at `origin`, expanded for `slug`.
    fn expand(
        &self,
        value: &str,
        origin: &Origin,
        field: &str,
        slug: &str,
        lookup: &dyn Fn(&str) -> Option<String>,
    ) -> Result<String, ConfigError> {
        let key = origin.key.key(field);
        let source = self.source_of(origin);
        let expanded = interpolate::expand(value, slug, lookup).map_err(|error| match error {
            ExpandError::Unset(variable) => source.unset_variable(&key, &variable),
            ExpandError::Syntax(problem) => source.invalid(&key, problem),
        })?;
        if expanded.trim().is_empty() {
            return Err(source.invalid(&key, "is empty once its variables are filled in; give them values"));
        }
        Ok(expanded)
    }
}

/// `path` with `.` dropped and `..` applied, without touching the file system: good
/// enough to see that `.` or `..` names the work tree, and never fails.
fn lexical(path: &Path) -> PathBuf {
    let mut clean = PathBuf::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => match clean.components().next_back() {
                Some(Component::Normal(_)) => {
                    clean.pop();
                }
                // `/..` is `/`.
                Some(Component::RootDir | Component::Prefix(_)) => {}
                _ => clean.push(component),
            },
            other => clean.push(other),
        }
    }
    clean
}
