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

/// The branches that exist: the local ones, and those of every remote as known from
/// the last fetch (`origin/feature` counts as `feature`), so that a clone sharing a
/// repository with others does not take their branches for deleted ones.
pub fn existing_branches(work_tree: &Path) -> Result<HashSet<String>> {
    let repository = open(work_tree)?;
    let remotes = repository.remotes().map_err(|e| git_error("listing remotes", &e))?;
    let prefixes: Vec<String> = remotes.iter().flatten().map(|remote| format!("refs/remotes/{remote}/")).collect();
    let mut names = HashSet::new();
    // A branch checked out before its first commit has no ref yet, but it exists.
    if let Some(unborn) = repository.find_reference("HEAD").ok().and_then(|head| {
        head.symbolic_target().and_then(|target| target.strip_prefix("refs/heads/")).map(str::to_owned)
    }) {
        names.insert(unborn);
    }
    let branches = repository.branches(None).map_err(|e| git_error("listing branches", &e))?;
    for branch in branches {
        let (branch, _) = branch.map_err(|e| git_error("listing branches", &e))?;
        let Some(reference) = branch.get().name() else { continue };
        if let Some(name) = reference.strip_prefix("refs/heads/") {
            names.insert(name.to_owned());
        } else if let Some(name) = prefixes.iter().find_map(|prefix| reference.strip_prefix(prefix.as_str()))
            && name != "HEAD"
        {
            names.insert(name.to_owned());
        }
    }
    Ok(names)
}

/// The local branches, sorted by name.
pub fn local_branches(work_tree: &Path) -> Result<Vec<String>> {
    let repository = open(work_tree)?;
    let branches = repository.branches(Some(git2::BranchType::Local)).map_err(|e| git_error("listing branches", &e))?;
    let mut names = Vec::new();
    for branch in branches {
        let (branch, _) = branch.map_err(|e| git_error("listing branches", &e))?;
        if let Ok(Some(name)) = branch.name() {
            names.push(name.to_owned());
        }
    }
    names.sort();
    Ok(names)
}

/// The work tree where `branch` is checked out: the main one or a linked worktree
/// (`git worktree add`); `None` when no work tree has it.
pub fn checked_out_at(work_tree: &Path, branch: &str) -> Result<Option<std::path::PathBuf>> {
    let repository = open(work_tree)?;
    let wanted = format!("refs/heads/{branch}");
    let head_of = |repository: &git2::Repository| -> Option<String> {
        // An unborn branch has no commit, but HEAD still names it.
        repository.find_reference("HEAD").ok()?.symbolic_target().map(str::to_owned)
    };
    // Start from the repository shared by every worktree.
    let common = git2::Repository::open(repository.commondir()).map_err(|e| git_error("opening the repository", &e))?;
    if !common.is_bare() && head_of(&common).as_deref() == Some(&wanted) {
        return Ok(common.workdir().map(Path::to_owned));
    }
    let names = common.worktrees().map_err(|e| git_error("listing worktrees", &e))?;
    for name in names.iter().flatten() {
        let Ok(worktree) = common.find_worktree(name) else { continue };
        let Ok(linked) = git2::Repository::open_from_worktree(&worktree) else { continue };
        if head_of(&linked).as_deref() == Some(&wanted) {
            return Ok(Some(worktree.path().to_owned()));
        }
    }
    Ok(None)
}

/// Refuses a name git would not take for a branch, before anything is done for it.
pub fn check_branch_name(name: &str) -> Result<()> {
    if git2::Branch::name_is_valid(name).unwrap_or(false) {
        Ok(())
    } else {
        Err(Error::Git { message: format!("`{name}` is not a valid branch name: choose another name") })
    }
}

/// Creates branch `name` at the commit `from` names (a branch, tag or commit), as
/// `git branch NAME FROM` would; returns the commit id.
pub fn create_branch(work_tree: &Path, name: &str, from: &str) -> Result<String> {
    check_branch_name(name)?;
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

/// Git's `user.email` for this work tree, if set.
pub fn user_email(work_tree: &Path) -> Option<String> {
    let repository = open(work_tree).ok()?;
    let config = repository.config().ok()?;
    config.get_string("user.email").ok().filter(|email| !email.is_empty())
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
