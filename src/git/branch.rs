//! Branches and commits: creating an environment's branch, resolving revisions,
//! finding the nearest commit that has a snapshot.

use std::collections::HashSet;
use std::path::Path;

use super::{git_error, open};
use crate::error::{Error, Result};

/// True when a local branch `name` exists.
pub fn branch_exists(work_tree: &Path, name: &str) -> Result<bool> {
    let repository = open(work_tree)?;
    Ok(repository.find_branch(name, git2::BranchType::Local).is_ok())
}

/// Creates branch `name` at the commit `from` names (a branch, tag or commit), as
/// `git branch NAME FROM` would; returns the commit id.
pub fn create_branch(work_tree: &Path, name: &str, from: &str) -> Result<String> {
    if !git2::Branch::name_is_valid(name).unwrap_or(false) {
        return Err(Error::Git { message: format!("`{name}` is not a valid branch name: choose another name") });
    }
    let repository = open(work_tree)?;
    let commit =
        repository.revparse_single(from).and_then(|object| object.peel_to_commit()).map_err(|_| Error::Git {
            message: format!("`{from}` names no commit: give an existing branch, tag or commit to --branch-from"),
        })?;
    repository.branch(name, &commit, false).map_err(|e| git_error(&format!("creating branch `{name}`"), &e))?;
    Ok(commit.id().to_string())
}

/// The full id of the commit `revision` names.
pub fn resolve_commit(work_tree: &Path, revision: &str) -> Result<String> {
    let repository = open(work_tree)?;
    let commit = repository.revparse_single(revision).and_then(|object| object.peel_to_commit()).map_err(|_| {
        Error::Git { message: format!("`{revision}` names no commit: give a commit id, branch or tag") }
    })?;
    Ok(commit.id().to_string())
}

/// The first of `start` and its ancestors (newest first) that is in `wanted`.
pub fn nearest_ancestor_in(work_tree: &Path, start: &str, wanted: &HashSet<String>) -> Result<Option<String>> {
    if wanted.contains(start) {
        return Ok(Some(start.to_owned()));
    }
    let repository = open(work_tree)?;
    let mut walk = repository.revwalk().map_err(|e| git_error("walking history", &e))?;
    walk.set_sorting(git2::Sort::TOPOLOGICAL | git2::Sort::TIME).map_err(|e| git_error("walking history", &e))?;
    let oid = git2::Oid::from_str(start).map_err(|e| git_error("reading a commit id", &e))?;
    walk.push(oid).map_err(|e| git_error("walking history", &e))?;
    for oid in walk {
        let id = oid.map_err(|e| git_error("walking history", &e))?.to_string();
        if wanted.contains(&id) {
            return Ok(Some(id));
        }
    }
    Ok(None)
}

/// The names the current user goes by: git's `user.email` and `user.name`, and the
/// login name. An admin list matches any of them.
pub fn user_identities(work_tree: &Path) -> Vec<String> {
    let mut names = Vec::new();
    if let Ok(config) =
        open(work_tree).and_then(|repository| repository.config().map_err(|e| git_error("reading the git config", &e)))
    {
        for key in ["user.email", "user.name"] {
            if let Ok(value) = config.get_string(key) {
                names.push(value);
            }
        }
    }
    if let Ok(login) = std::env::var("USER").or_else(|_| std::env::var("LOGNAME")) {
        names.push(login);
    }
    names
}
