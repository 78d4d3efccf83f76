//! The git repository envsnap serves: where it is, which branch (environment) is
//! checked out, and at which commit.

pub mod branch;
pub mod hooks;
pub mod notes;

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// The git work tree envsnap runs in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Workspace {
    /// The work tree's root, where envsnap.toml lives.
    pub work_tree: PathBuf,
    /// The git directory shared by all worktrees (`.git` of the main one).
    pub common_dir: PathBuf,
    /// The checked-out branch; `None` when HEAD is detached.
    pub branch: Option<String>,
    /// The HEAD commit; `None` on a branch with no commit yet.
    pub commit: Option<String>,
}

fn git_error(context: &str, error: &git2::Error) -> Error {
    Error::Git { message: format!("{context}: {}", error.message()) }
}

impl Workspace {
    /// Finds the git work tree containing `start`.
    pub fn discover(start: &Path) -> Result<Self> {
        let repository = git2::Repository::discover(start).map_err(|_| Error::Git {
            message: format!(
                "{} is not inside a git work tree: run envsnap inside the repository whose data it keeps",
                start.display()
            ),
        })?;
        let work_tree = repository
            .workdir()
            .ok_or_else(|| Error::Git {
                message: format!("{} is a bare repository: run envsnap in a work tree", repository.path().display()),
            })?
            .to_path_buf();
        let common_dir = repository.commondir().to_path_buf();
        let head = repository.find_reference("HEAD").map_err(|e| git_error("reading HEAD", &e))?;
        let branch = head.symbolic_target().and_then(|target| target.strip_prefix("refs/heads/")).map(str::to_owned);
        let commit = head.peel_to_commit().ok().map(|commit| commit.id().to_string());
        Ok(Workspace {
            work_tree: trim_trailing_separator(work_tree),
            common_dir: trim_trailing_separator(common_dir),
            branch,
            commit,
        })
    }

    /// The environment a command acts on: `env` when given, else the checked-out branch.
    pub fn environment(&self, env: Option<&str>) -> Result<String> {
        match (env, &self.branch) {
            (Some(env), _) => Ok(env.to_owned()),
            (None, Some(branch)) => Ok(branch.clone()),
            (None, None) => Err(Error::Git {
                message: "HEAD is detached, so there is no current environment: check out a branch, \
                          or name the environment with --env BRANCH"
                    .to_owned(),
            }),
        }
    }
}

/// The commit a local branch points at; an error when there is no such branch.
pub fn branch_commit(work_tree: &Path, branch: &str) -> Result<Option<String>> {
    let repository = open(work_tree)?;
    let reference = repository.find_branch(branch, git2::BranchType::Local).map_err(|_| Error::Git {
        message: format!("there is no branch `{branch}`: check the name with `git branch`"),
    })?;
    Ok(reference.get().peel_to_commit().ok().map(|commit| commit.id().to_string()))
}

fn open(work_tree: &Path) -> Result<git2::Repository> {
    git2::Repository::open(work_tree).map_err(|e| git_error(&format!("opening {}", work_tree.display()), &e))
}

fn trim_trailing_separator(path: PathBuf) -> PathBuf {
    path.components().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    fn git(dir: &Path, args: &[&str]) {
        let status = Command::new("git")
            .args(["-c", "user.name=t", "-c", "user.email=t@t", "-c", "init.defaultBranch=main"])
            .args(args)
            .current_dir(dir)
            .status()
            .expect("git runs");
        assert!(status.success(), "git {args:?}");
    }

    #[test]
    fn branch_commit_and_detached_head() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| Error::io("creating", "tmp", e))?;
        git(dir.path(), &["init", "-q"]);
        let unborn = Workspace::discover(dir.path())?;
        assert_eq!(unborn.branch.as_deref(), Some("main"));
        assert_eq!(unborn.commit, None);
        git(dir.path(), &["commit", "-q", "--allow-empty", "-m", "one"]);
        std::fs::create_dir(dir.path().join("sub")).map_err(|e| Error::io("creating", "sub", e))?;
        let workspace = Workspace::discover(&dir.path().join("sub"))?;
        assert_eq!(workspace.work_tree, dir.path().canonicalize().map_err(|e| Error::io("x", "y", e))?);
        assert_eq!(workspace.commit.as_ref().map(String::len), Some(40));
        assert_eq!(workspace.environment(None)?, "main");
        git(dir.path(), &["checkout", "-q", "--detach"]);
        let detached = Workspace::discover(dir.path())?;
        assert_eq!(detached.branch, None);
        assert!(detached.environment(None).is_err());
        assert_eq!(detached.environment(Some("main"))?, "main");
        Ok(())
    }
}
