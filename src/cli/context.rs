//! What every command needs: the git work tree, the configuration, the repository.

use std::path::{Path, PathBuf};

use super::output::note;
use anyhow::Result;
use envsnap::backup::ServiceSource;
use envsnap::config::{self, Config, ConfigError};
use envsnap::element::mount::Mount;
use envsnap::element::service::adapter;
use envsnap::git::Workspace;
use envsnap::jobs::JobState;
use envsnap::repository::{Access, Repository};
use envsnap::snapshot::Snapshot;

/// Options shared by all subcommands.
#[derive(Debug, Clone)]
pub struct Global {
    /// `--repository` / `ENVSNAP_REPOSITORY`.
    pub repository: Option<PathBuf>,
    /// `-C DIR`.
    pub directory: Option<PathBuf>,
    /// `--password-file FILE`.
    pub password_file: Option<PathBuf>,
}

/// The work tree, its configuration and where its repository is.
#[derive(Debug)]
pub struct Context {
    /// The git work tree.
    pub workspace: Workspace,
    /// `envsnap.toml`, or `None` when the work tree has none yet.
    pub config: Option<Config>,
    /// The repository folder.
    pub repository_path: PathBuf,
    /// `--password-file FILE`, the first place an encrypted repository's password is
    /// looked for (see `password.rs`).
    pub password_file: Option<PathBuf>,
}

impl Context {
    /// Finds the work tree from `-C` or the current directory and reads its config.
    pub fn discover(global: &Global) -> Result<Self> {
        let start = match &global.directory {
            Some(directory) => directory.clone(),
            None => std::env::current_dir()?,
        };
        let workspace = Workspace::discover(&start)?;
        let local = workspace.common_dir.join(config::LOCAL_FILE_NAME);
        let config = match Config::load(&workspace.work_tree, Some(&local)) {
            Ok(config) => Some(config),
            Err(ConfigError::NotFound { .. }) => None,
            Err(error) => return Err(error.into()),
        };
        let repository_path = global
            .repository
            .clone()
            .map(|path| if path.is_absolute() { path } else { start.join(path) })
            .or_else(|| config.as_ref().and_then(|config| config.repository_in(&workspace.work_tree)))
            .unwrap_or_else(|| workspace.common_dir.join("envsnap"));
        super::activity::context(&repository_path, &workspace.work_tree);
        Ok(Context { workspace, config, repository_path, password_file: global.password_file.clone() })
    }

    /// Opens the repository, telling the user when it waits for another writer.
    pub fn open(&self, access: Access) -> Result<Repository> {
        let waiting = &mut |holder: &str| {
            note!(
                "envsnap: waiting for the repository lock held by {}",
                if holder.is_empty() { "another process" } else { holder }
            );
        };
        let password = &mut || super::password::read(self.password_file.as_deref(), &self.repository_path);
        Ok(Repository::open_unlocked(&self.repository_path, access, waiting, password)?)
    }

    /// The snapshot `id` names: `latest` is what [`envsnap::retention::latest`] names
    /// in environment `env` (default: the checked-out branch); anything else is an id prefix, in any environment.
    /// A backup job's id names the snapshot it made, once it is complete.
    pub fn resolve(&self, repository: &Repository, id: &str, env: Option<&str>) -> Result<Snapshot> {
        let env = if id == "latest" { Some(self.workspace.environment(env)?) } else { None };
        match repository.resolve(id, env.as_deref()) {
            Ok(snapshot) => Ok(snapshot),
            Err(error @ envsnap::Error::SnapshotNotFound { .. }) if id != "latest" => {
                let jobs = repository.jobs_with_prefix(&id.to_ascii_lowercase())?;
                let [job] = jobs.as_slice() else { return Err(error.into()) };
                let short = job.id.get(..super::format::SHORT_ID).unwrap_or(&job.id);
                match (&job.snapshot, job.state) {
                    (Some(snapshot), _) => Ok(repository.resolve(snapshot, None)?),
                    (None, JobState::Failed) => anyhow::bail!(
                        "the backup {short} of {} failed, so there is no snapshot: {}",
                        job.env,
                        job.error.as_deref().unwrap_or("no reason was recorded")
                    ),
                    (None, state) => anyhow::bail!(
                        "the backup {short} of {} is {} ({}%): `envsnap wait {short}` waits for its snapshot",
                        job.env,
                        state.as_str(),
                        job.progress
                    ),
                }
            }
            Err(error) => Err(error.into()),
        }
    }

    /// The configuration, or an error saying how to create one.
    pub fn config(&self) -> Result<&Config> {
        self.config
            .as_ref()
            .ok_or_else(|| ConfigError::NotFound { path: self.workspace.work_tree.join(config::FILE_NAME) }.into())
    }

    /// The mounts of environment `env`, resolved to absolute paths.
    pub fn mounts(&self, env: &str) -> Result<Vec<Mount>> {
        self.mounts_in(env, &self.workspace.work_tree)
    }

    /// The mounts of environment `env`, relative paths taken from `root`: the work tree
    /// where that branch is checked out.
    pub fn mounts_in(&self, env: &str, root: &Path) -> Result<Vec<Mount>> {
        let resolved = self.config()?.mounts_for(env, root, &config::process_environment)?;
        Ok(resolved
            .into_iter()
            .map(|mount| Mount { name: mount.name, path: mount.path, exclude: mount.exclude })
            .collect())
    }

    /// The services of environment `env`, each with its adapter.
    pub fn services(&self, env: &str) -> Result<Vec<ServiceSource>> {
        let resolved = self.config()?.services_for(env, &self.workspace.work_tree, &config::process_environment)?;
        resolved
            .iter()
            .map(|service| Ok(ServiceSource { name: service.name.clone(), service: adapter(service)? }))
            .collect()
    }

    /// The mount called `name` of environment `env`, relative paths taken from
    /// `root`; `None` when envsnap.toml has no such mount. Only its own `${VAR}`s
    /// are looked up.
    pub fn mount_named(&self, name: &str, env: &str, root: &Path) -> Result<Option<Mount>> {
        let Some(resolved) = self.config()?.mount_for(name, env, root, &config::process_environment) else {
            return Ok(None);
        };
        let mount = resolved?;
        Ok(Some(Mount { name: mount.name, path: mount.path, exclude: mount.exclude }))
    }

    /// The service called `name` of environment `env`, with its adapter; `None` when
    /// envsnap.toml has no such service. Only its own `${VAR}`s are looked up, so a
    /// command about one element needs no other element's secret.
    pub fn service_named(&self, name: &str, env: &str) -> Result<Option<ServiceSource>> {
        let Some(resolved) =
            self.config()?.service_for(name, env, &self.workspace.work_tree, &config::process_environment)
        else {
            return Ok(None);
        };
        let service = resolved?;
        Ok(Some(ServiceSource { name: service.name.clone(), service: adapter(&service)? }))
    }

    /// The work tree's root.
    pub fn work_tree(&self) -> &Path {
        &self.workspace.work_tree
    }
}
