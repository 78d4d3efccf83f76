//! The git hooks that snapshot a protected branch's environment before the branch
//! changes: where they live, installing and removing the shims of `hooks/`, and the
//! rules that turn what git tells a hook into the snapshots that are due.
//!
//! ## Where
//!
//! The hooks directory is `core.hooksPath` when it is set (a relative path is taken
//! from the root of the work tree, as git does; husky sets `.husky` or `.husky/_`),
//! otherwise `hooks/` in the git directory shared by all worktrees. A hook already
//! there is kept as `HOOK.envsnap-chained` and run first by the shim.
//!
//! ## When a snapshot is due
//!
//! "Before a merge into a protected branch" means: before the branch takes in commits
//! made elsewhere. Each way that happens is caught by exactly one hook, so one merge
//! never takes two snapshots:
//!
//! | the branch is about to…                                   | caught by               |
//! |-----------------------------------------------------------|-------------------------|
//! | get a merge commit from `git merge` / `git pull`           | `pre-merge-commit`      |
//! | be fast-forwarded by `git merge` / `git pull`              | `reference-transaction` |
//! | get a merge commit from `git commit` (a merge concluded after conflicts, `git merge --continue`, plumbing) | `reference-transaction` |
//! | get the commit that concludes `git merge --squash`         | `reference-transaction` |
//! | be rebased onto a commit it does not contain (`git rebase`, `git pull --rebase`) | `reference-transaction` |
//! | be pushed to, on a remote                                  | `pre-push`              |
//!
//! `reference-transaction` tells a merge made by `git merge` / `git pull` from one
//! recorded by `git commit` through `GIT_REFLOG_ACTION`, which only the former set:
//! the former are `pre-merge-commit`'s, so that `git merge --no-verify` skips them.
//!
//! No snapshot for: a plain commit, an amend, a cherry-pick, a revert, a reset,
//! `git branch -f`, a fetch into the branch, the branch's creation or deletion, a
//! rebase of the branch within its own history (`git rebase -i` onto one of its own
//! commits: nothing comes in), or a rebase of another branch onto it (the protected
//! branch does not move; a later fast-forward of it to the rebased branch is a merge).
//! The snapshot records the commit the branch was at before the change.

use std::fmt;
use std::fs;
use std::io::ErrorKind;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use super::{git_error, open, trim_trailing_separator};
use crate::error::{Error, IoContext, Result};
use crate::snapshot::Trigger;

/// A hook envsnap installs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Hook {
    /// Before `git merge` / `git pull` records a merge commit.
    PreMergeCommit,
    /// Around every change to refs; envsnap acts in its `prepared` state, which can
    /// still abort the change.
    ReferenceTransaction,
    /// Before `git push` sends anything.
    PrePush,
}

impl Hook {
    /// Every hook envsnap installs, in the order reported.
    pub const ALL: [Hook; 3] = [Hook::PreMergeCommit, Hook::ReferenceTransaction, Hook::PrePush];

    /// The hook's file name, as git knows it.
    pub fn name(self) -> &'static str {
        match self {
            Hook::PreMergeCommit => "pre-merge-commit",
            Hook::ReferenceTransaction => "reference-transaction",
            Hook::PrePush => "pre-push",
        }
    }

    /// The shim's text as committed in `hooks/`, before the binary's path is filled in.
    fn shim(self) -> &'static str {
        match self {
            Hook::PreMergeCommit => include_str!("../../hooks/pre-merge-commit"),
            Hook::ReferenceTransaction => include_str!("../../hooks/reference-transaction"),
            Hook::PrePush => include_str!("../../hooks/pre-push"),
        }
    }
}

impl fmt::Display for Hook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Hook {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Hook::ALL.into_iter().find(|hook| hook.name() == text).ok_or_else(|| {
            let names: Vec<&str> = Hook::ALL.iter().map(|hook| hook.name()).collect();
            format!("`{text}` is not a hook envsnap handles; it handles {}", names.join(", "))
        })
    }
}

/// What a kept hook's name ends with: `pre-push` becomes `pre-push.envsnap-chained`.
pub const CHAINED_SUFFIX: &str = ".envsnap-chained";

/// The line that marks a file as envsnap's shim (followed by the shim's version).
const SHIM_MARKER: &str = "# envsnap-shim: ";

/// The line of a shim that records the binary; install fills in the path.
const INSTALLED_BY: &str = "envsnap_installed=";

/// A repository's hooks directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HooksDir {
    /// The directory.
    pub path: PathBuf,
    /// True when `core.hooksPath` names it; false for the default, `.git/hooks`.
    pub configured: bool,
}

/// What [`HooksDir::install`] or [`HooksDir::uninstall`] did to one hook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookChange {
    /// The hook.
    pub hook: Hook,
    /// What was done.
    pub change: Change,
}

/// One hook's change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// The shim was written; `chained` is the hook it runs first, if there is one.
    Installed {
        /// The kept hook, `HOOK.envsnap-chained`.
        chained: Option<PathBuf>,
    },
    /// The shim of an older envsnap, or of another envsnap binary, was rewritten.
    Updated,
    /// The shim was there already, as this envsnap would write it.
    Unchanged,
    /// The shim was removed, and the hook it kept put back when `restored`.
    Removed {
        /// Whether a kept hook went back under its name.
        restored: bool,
    },
    /// No shim was there, but a kept hook was: it went back under its name.
    Restored,
    /// Nothing of envsnap's was there.
    NotInstalled,
    /// Another hook has replaced envsnap's shim while a kept hook waits beside it:
    /// both are left as they are, for a person to sort out.
    LeftAlone {
        /// The kept hook.
        chained: PathBuf,
    },
}

/// One hook, as [`HooksDir::status`] finds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookStatus {
    /// The hook.
    pub hook: Hook,
    /// Where git looks for it.
    pub path: PathBuf,
    /// What is there.
    pub state: HookState,
    /// The kept hook the shim runs first, if any.
    pub chained: Option<PathBuf>,
}

/// What is at a hook's path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HookState {
    /// Nothing.
    Missing,
    /// envsnap's shim.
    Installed {
        /// The envsnap it runs (`None`: whichever is on `PATH`).
        binary: Option<PathBuf>,
        /// False when an older envsnap wrote it: `install` updates it.
        current: bool,
    },
    /// A hook that is not envsnap's.
    Other,
}

/// What is at a hook's path, with its content.
enum Existing {
    Absent,
    Shim(Vec<u8>),
    Other(Vec<u8>),
}

impl HooksDir {
    /// The hooks directory of the repository whose work tree is `work_tree`, honouring
    /// `core.hooksPath` (absolute, `~/…`, or relative to the root of the work tree).
    pub fn locate(work_tree: &Path) -> Result<Self> {
        let repository = open(work_tree)?;
        let config = repository.config().map_err(|e| git_error("reading the git configuration", &e))?;
        match config.get_path("core.hooksPath") {
            // `join` keeps an absolute path as it is.
            Ok(path) => {
                let base = repository.workdir().unwrap_or_else(|| repository.path());
                Ok(HooksDir { path: trim_trailing_separator(base.join(path)), configured: true })
            }
            Err(error) if error.code() == git2::ErrorCode::NotFound => {
                Ok(HooksDir { path: trim_trailing_separator(repository.commondir().join("hooks")), configured: false })
            }
            Err(error) => Err(git_error("reading core.hooksPath", &error)),
        }
    }

    /// Where git looks for `hook`.
    pub fn hook_path(&self, hook: Hook) -> PathBuf {
        self.path.join(hook.name())
    }

    /// Where the hook that was there before envsnap's is kept.
    pub fn chained_path(&self, hook: Hook) -> PathBuf {
        self.path.join(format!("{}{CHAINED_SUFFIX}", hook.name()))
    }

    /// Writes the shims, each running `binary`. A hook already there is kept as
    /// `HOOK.envsnap-chained`, never overwritten; installing again changes nothing.
    /// Every hook is checked before any is changed, so a refusal changes nothing.
    pub fn install(&self, binary: &Path) -> Result<Vec<HookChange>> {
        fs::create_dir_all(&self.path).context("creating the hooks directory", &self.path)?;
        for hook in Hook::ALL {
            self.check_installable(hook)?;
        }
        Hook::ALL.into_iter().map(|hook| Ok(HookChange { hook, change: self.install_one(hook, binary)? })).collect()
    }

    /// Removes the shims and puts each kept hook back under its name.
    pub fn uninstall(&self) -> Result<Vec<HookChange>> {
        Hook::ALL.into_iter().map(|hook| Ok(HookChange { hook, change: self.uninstall_one(hook)? })).collect()
    }

    /// What is installed, hook by hook.
    pub fn status(&self) -> Result<Vec<HookStatus>> {
        Hook::ALL
            .into_iter()
            .map(|hook| {
                let path = self.hook_path(hook);
                let chained = self.chained_path(hook);
                let state = match Existing::read(&path)? {
                    Existing::Absent => HookState::Missing,
                    Existing::Other(_) => HookState::Other,
                    Existing::Shim(content) => {
                        let binary = recorded_binary(&content);
                        let current = content == render(hook, binary.as_deref());
                        HookState::Installed { binary, current }
                    }
                };
                Ok(HookStatus { hook, path, state, chained: exists(&chained)?.then_some(chained) })
            })
            .collect()
    }

    /// Refuses when installing `hook` would lose a hook: another hook is at its path
    /// and a different one is already kept.
    fn check_installable(&self, hook: Hook) -> Result<()> {
        let path = self.hook_path(hook);
        let chained = self.chained_path(hook);
        if let Existing::Other(content) = Existing::read(&path)?
            && let Some(kept) = read_if_exists(&chained)?
            && kept != content
        {
            return Err(Error::Git {
                message: format!(
                    "hook {hook}: {} is not envsnap's, and {} (the hook envsnap keeps and runs first) differs \
                     from it, so installing would lose one of them: merge the two into {}, delete {}, then run \
                     `envsnap hooks install` again",
                    path.display(),
                    chained.display(),
                    chained.display(),
                    path.display()
                ),
            });
        }
        Ok(())
    }

    fn install_one(&self, hook: Hook, binary: &Path) -> Result<Change> {
        let path = self.hook_path(hook);
        let chained = self.chained_path(hook);
        let wanted = render(hook, Some(binary));
        let change = match Existing::read(&path)? {
            Existing::Shim(content) if content == wanted => return Ok(Change::Unchanged),
            Existing::Shim(_) => Change::Updated,
            Existing::Absent => Change::Installed { chained: exists(&chained)?.then_some(chained) },
            Existing::Other(_) if exists(&chained)? => {
                // The same hook as the one kept (a tool such as husky wrote it again
                // over the shim): keeping one copy loses nothing.
                fs::remove_file(&path).context("removing", &path)?;
                Change::Installed { chained: Some(chained) }
            }
            Existing::Other(_) => {
                fs::rename(&path, &chained).context("keeping the existing hook as", &chained)?;
                Change::Installed { chained: Some(chained) }
            }
        };
        write_shim(&path, &wanted)?;
        Ok(change)
    }

    fn uninstall_one(&self, hook: Hook) -> Result<Change> {
        let path = self.hook_path(hook);
        let chained = self.chained_path(hook);
        let kept = exists(&chained)?;
        match Existing::read(&path)? {
            Existing::Shim(_) => {
                fs::remove_file(&path).context("removing", &path)?;
                if kept {
                    fs::rename(&chained, &path).context("putting back the hook kept at", &chained)?;
                }
                Ok(Change::Removed { restored: kept })
            }
            Existing::Absent if kept => {
                fs::rename(&chained, &path).context("putting back the hook kept at", &chained)?;
                Ok(Change::Restored)
            }
            Existing::Other(_) if kept => Ok(Change::LeftAlone { chained }),
            Existing::Absent | Existing::Other(_) => Ok(Change::NotInstalled),
        }
    }
}

impl Existing {
    fn read(path: &Path) -> Result<Self> {
        match fs::symlink_metadata(path) {
            Err(error) if error.kind() == ErrorKind::NotFound => return Ok(Existing::Absent),
            Err(error) => return Err(Error::io("reading", path, error)),
            // A link is never envsnap's (shims are plain files); a dangling one is still a hook.
            Ok(metadata) if metadata.file_type().is_symlink() => {
                return Ok(Existing::Other(read_if_exists(path)?.unwrap_or_default()));
            }
            Ok(_) => {}
        }
        let content = fs::read(path).context("reading", path)?;
        Ok(if is_shim(&content) { Existing::Shim(content) } else { Existing::Other(content) })
    }
}

fn exists(path: &Path) -> Result<bool> {
    match fs::symlink_metadata(path) {
        Ok(_) => Ok(true),
        Err(error) if error.kind() == ErrorKind::NotFound => Ok(false),
        Err(error) => Err(Error::io("reading", path, error)),
    }
}

fn read_if_exists(path: &Path) -> Result<Option<Vec<u8>>> {
    match fs::read(path) {
        Ok(content) => Ok(Some(content)),
        Err(error) if error.kind() == ErrorKind::NotFound => Ok(None),
        Err(error) => Err(Error::io("reading", path, error)),
    }
}

fn is_shim(content: &[u8]) -> bool {
    content.split(|&byte| byte == b'\n').any(|line| line.starts_with(SHIM_MARKER.as_bytes()))
}

/// The shim for `hook`, running `binary` (or `envsnap` on `PATH` when `None`).
fn render(hook: Hook, binary: Option<&Path>) -> Vec<u8> {
    let template = hook.shim();
    let placeholder = format!("{INSTALLED_BY}''\n");
    let at = template.find(&placeholder).expect("every shim in hooks/ has the line `envsnap_installed=''`");
    let mut shim = template.as_bytes()[..at].to_vec();
    shim.extend_from_slice(INSTALLED_BY.as_bytes());
    shim.extend_from_slice(&shell_quote(binary.map_or(&[][..], |path| path.as_os_str().as_bytes())));
    shim.push(b'\n');
    shim.extend_from_slice(&template.as_bytes()[at + placeholder.len()..]);
    shim
}

/// `bytes` as one single-quoted `sh` word.
fn shell_quote(bytes: &[u8]) -> Vec<u8> {
    let mut quoted = vec![b'\''];
    for &byte in bytes {
        if byte == b'\'' {
            quoted.extend_from_slice(b"'\\''");
        } else {
            quoted.push(byte);
        }
    }
    quoted.push(b'\'');
    quoted
}

/// The binary a shim runs, read back from its `envsnap_installed='…'` line.
fn recorded_binary(content: &[u8]) -> Option<PathBuf> {
    let line = content.split(|&byte| byte == b'\n').find_map(|line| line.strip_prefix(INSTALLED_BY.as_bytes()))?;
    let inner = line.strip_prefix(b"'")?.strip_suffix(b"'")?;
    let mut path = Vec::with_capacity(inner.len());
    let mut rest = inner;
    while let Some(&byte) = rest.first() {
        if rest.starts_with(b"'\\''") {
            path.push(b'\'');
            rest = &rest[4..];
        } else {
            path.push(byte);
            rest = &rest[1..];
        }
    }
    (!path.is_empty()).then(|| PathBuf::from(std::ffi::OsStr::from_bytes(&path)))
}

/// Writes a shim whole (a temporary file renamed over `path`), executable.
fn write_shim(path: &Path, content: &[u8]) -> Result<()> {
    let name = path.file_name().map(|name| name.to_string_lossy().into_owned()).unwrap_or_default();
    let temporary = path.with_file_name(format!(".{name}.envsnap-new"));
    let written = fs::write(&temporary, content)
        .and_then(|()| fs::set_permissions(&temporary, fs::Permissions::from_mode(0o755)))
        .and_then(|()| fs::rename(&temporary, path));
    if let Err(error) = written {
        // Only the temporary file can be left behind; the hook itself is as it was.
        let _ = fs::remove_file(&temporary);
        return Err(Error::io("writing the hook", path, error));
    }
    Ok(())
}

/// One line of `reference-transaction`'s input: `<old> <new> <ref>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefUpdate {
    /// The value before (all zeros: none, or not checked by git).
    pub old: String,
    /// The value after (all zeros: the ref is deleted). A symbolic value reads `ref:…`.
    pub new: String,
    /// The full ref name, e.g. `refs/heads/main`.
    pub name: String,
}

impl RefUpdate {
    /// The updates of a hook's input; malformed lines are skipped.
    pub fn parse(input: &str) -> Vec<RefUpdate> {
        input
            .lines()
            .filter_map(|line| {
                let mut fields = line.split_whitespace();
                let (old, new, name) = (fields.next()?, fields.next()?, fields.next()?);
                Some(RefUpdate { old: old.to_owned(), new: new.to_owned(), name: name.to_owned() })
            })
            .collect()
    }
}

/// One line of `pre-push`'s input: `<local ref> <local sha> <remote ref> <remote sha>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushedRef {
    /// The local ref pushed (`(delete)` for a deletion).
    pub local_ref: String,
    /// Its commit (all zeros for a deletion).
    pub local_sha: String,
    /// The remote's ref, e.g. `refs/heads/main`.
    pub remote_ref: String,
    /// Where the remote's ref is now (all zeros: it does not exist yet).
    pub remote_sha: String,
}

impl PushedRef {
    /// The refs of a hook's input; malformed lines are skipped.
    pub fn parse(input: &str) -> Vec<PushedRef> {
        input
            .lines()
            .filter_map(|line| {
                let mut fields = line.split_whitespace();
                Some(PushedRef {
                    local_ref: fields.next()?.to_owned(),
                    local_sha: fields.next()?.to_owned(),
                    remote_ref: fields.next()?.to_owned(),
                    remote_sha: fields.next()?.to_owned(),
                })
            })
            .collect()
    }
}

/// Why a hook takes a snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Occasion {
    /// A merge commit is about to be recorded on the branch.
    Merge,
    /// `git merge` / `git pull` is about to fast-forward the branch.
    FastForward,
    /// A rebase of the branch onto commits it does not contain is about to end.
    Rebase,
    /// The branch of a remote is about to be pushed to.
    Push {
        /// The remote's name (or URL, when the push named no remote).
        remote: String,
    },
}

impl Occasion {
    /// The trigger recorded in the snapshot.
    pub fn trigger(&self) -> Trigger {
        match self {
            Occasion::Merge | Occasion::FastForward | Occasion::Rebase => Trigger::PreMerge,
            Occasion::Push { .. } => Trigger::PrePush,
        }
    }
}

impl fmt::Display for Occasion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Occasion::Merge => f.write_str("merge"),
            Occasion::FastForward => f.write_str("fast-forward"),
            Occasion::Rebase => f.write_str("rebase"),
            Occasion::Push { remote } => write!(f, "push to {remote}"),
        }
    }
}

/// A snapshot a hook must take before git goes on. Whether the branch is protected
/// is the caller's question: these rules only read git.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DueSnapshot {
    /// The environment: the branch about to change (a remote's branch, for a push).
    pub branch: String,
    /// The commit the branch is at before the change, when known here.
    pub commit: Option<String>,
    /// Why.
    pub occasion: Occasion,
    /// What git is doing, for the snapshot's note, e.g. `git merge feature`.
    pub note: String,
}

/// For `pre-merge-commit`: the snapshot of the checked-out branch, which `git merge`
/// is about to give a merge commit; `None` when HEAD is detached. `reflog_action` is
/// `GIT_REFLOG_ACTION` (`merge feature`, `pull`).
pub fn due_before_merge_commit(work_tree: &Path, reflog_action: Option<&str>) -> Result<Option<DueSnapshot>> {
    let repository = open(work_tree)?;
    let head = repository.find_reference("HEAD").map_err(|e| git_error("reading HEAD", &e))?;
    let Some(branch) = head.symbolic_target().and_then(|target| target.strip_prefix("refs/heads/")) else {
        return Ok(None);
    };
    Ok(Some(DueSnapshot {
        branch: branch.to_owned(),
        commit: head.peel_to_commit().ok().map(|commit| commit.id().to_string()),
        occasion: Occasion::Merge,
        note: reflog_action.map_or_else(|| "git merge".to_owned(), |action| format!("git {action}")),
    }))
}

/// For `reference-transaction` in its `prepared` state: the snapshots due before
/// `updates` are applied, by the rules of the module documentation. `reflog_action`
/// is `GIT_REFLOG_ACTION`, which `git merge` and `git pull` set (and `git commit` does not).
pub fn due_before_ref_updates(
    work_tree: &Path,
    updates: &[RefUpdate],
    reflog_action: Option<&str>,
) -> Result<Vec<DueSnapshot>> {
    let branch_updates: Vec<&RefUpdate> =
        updates.iter().filter(|update| update.name.starts_with("refs/heads/")).collect();
    if branch_updates.is_empty() {
        return Ok(Vec::new());
    }
    let repository = open(work_tree)?;
    let rebase = RebaseState::read(repository.path())?;
    let mut due: Vec<DueSnapshot> = Vec::new();
    for update in branch_updates {
        let branch = &update.name["refs/heads/".len()..];
        // A deletion, or a symbolic value: nothing comes into the branch.
        let Some(new) = object_id(&update.new) else { continue };
        // Git leaves `old` all zeros when it does not check it; while the transaction
        // is prepared the branch still holds it. No branch yet: a creation.
        let old = match object_id(&update.old) {
            Some(old) => old,
            None => match repository.refname_to_id(&update.name) {
                Ok(old) => old,
                Err(_) => continue,
            },
        };
        if old == new || due.iter().any(|snapshot| snapshot.branch == branch) {
            continue;
        }
        let occasion = match &rebase {
            Some(rebase) if rebase.head_name == update.name => rebase_occasion(&repository, rebase, old),
            _ => commit_occasion(&repository, old, new, reflog_action)?,
        };
        if let Some((occasion, note)) = occasion {
            due.push(DueSnapshot { branch: branch.to_owned(), commit: Some(old.to_string()), occasion, note });
        }
    }
    Ok(due)
}

/// For `pre-push`: one snapshot per branch of `remote` pushed to (updated or
/// deleted), in the order pushed. The commit recorded is where the remote's branch
/// is now, when this repository has that commit.
pub fn due_before_push(work_tree: &Path, remote: &str, pushed: &[PushedRef]) -> Result<Vec<DueSnapshot>> {
    let repository = open(work_tree)?;
    let mut due: Vec<DueSnapshot> = Vec::new();
    for push in pushed {
        let Some(branch) = push.remote_ref.strip_prefix("refs/heads/") else { continue };
        if push.local_sha == push.remote_sha || due.iter().any(|snapshot| snapshot.branch == branch) {
            continue;
        }
        // Where the remote's branch was; for a branch new on the remote, where the
        // environment's own branch is here (else what is pushed), so that `--at` and
        // the git notes find this snapshot too.
        let known = |id: Option<git2::Oid>| id.filter(|id| repository.find_commit(*id).is_ok());
        let local_branch = repository
            .find_branch(branch, git2::BranchType::Local)
            .ok()
            .and_then(|found| found.get().peel_to_commit().ok())
            .map(|commit| commit.id());
        let commit = known(object_id(&push.remote_sha))
            .or(local_branch)
            .or_else(|| known(object_id(&push.local_sha)))
            .map(|id| id.to_string());
        due.push(DueSnapshot {
            branch: branch.to_owned(),
            commit,
            occasion: Occasion::Push { remote: remote.to_owned() },
            note: format!("git push {remote}"),
        });
    }
    Ok(due)
}

/// An object id, or `None` for all zeros ("no value") or anything that is not an id.
fn object_id(text: &str) -> Option<git2::Oid> {
    git2::Oid::from_str(text).ok().filter(|id| !id.is_zero())
}

/// A rebase in progress in this worktree: `git rebase` keeps its state in
/// `rebase-merge/` (or `rebase-apply/` for `--apply`) until the branch is updated.
struct RebaseState {
    /// The branch being rebased, e.g. `refs/heads/main`.
    head_name: String,
    /// The commit the rebased commits are put on.
    onto: Option<git2::Oid>,
}

impl RebaseState {
    fn read(git_dir: &Path) -> Result<Option<Self>> {
        for dir in ["rebase-merge", "rebase-apply"] {
            let dir = git_dir.join(dir);
            let Some(head_name) = read_if_exists(&dir.join("head-name"))? else { continue };
            let onto =
                read_if_exists(&dir.join("onto"))?.and_then(|onto| object_id(String::from_utf8_lossy(&onto).trim()));
            return Ok(Some(RebaseState { head_name: String::from_utf8_lossy(&head_name).trim().to_owned(), onto }));
        }
        Ok(None)
    }
}

/// The end of a rebase of the branch: a snapshot when the rebase puts its commits on
/// one the branch did not contain (`old` does not descend from `onto`); when `onto`
/// is unknown, a snapshot too, to be safe.
fn rebase_occasion(repository: &git2::Repository, rebase: &RebaseState, old: git2::Oid) -> Option<(Occasion, String)> {
    let onto = rebase.onto;
    let within_own_history =
        onto.is_some_and(|onto| onto == old || repository.graph_descendant_of(old, onto).unwrap_or(false));
    let note = match onto {
        Some(onto) => format!("git rebase onto {}", &onto.to_string()[..12]),
        None => "git rebase".to_owned(),
    };
    (!within_own_history).then_some((Occasion::Rebase, note))
}

/// The rules for a branch moving from `old` to `new` outside a rebase.
fn commit_occasion(
    repository: &git2::Repository,
    old: git2::Oid,
    new: git2::Oid,
    reflog_action: Option<&str>,
) -> Result<Option<(Occasion, String)>> {
    let by_merge_or_pull = reflog_action
        .and_then(|action| action.split_whitespace().next())
        .is_some_and(|command| command == "merge" || command == "pull");
    let Ok(commit) = repository.find_commit(new) else { return Ok(None) };
    let summary = || commit.summary().unwrap_or("merge").to_owned();
    let on_top = commit.parent_id(0).is_ok_and(|parent| parent == old);
    if commit.parent_count() >= 2 && on_top {
        // A merge commit made by `git merge` / `git pull` is pre-merge-commit's, which
        // already ran (or was skipped with --no-verify); any other is this hook's.
        return Ok((!by_merge_or_pull).then(|| (Occasion::Merge, summary())));
    }
    if by_merge_or_pull {
        let forward = repository.graph_descendant_of(new, old).map_err(|e| git_error("comparing commits", &e))?;
        let note = format!("git {}", reflog_action.unwrap_or("merge"));
        return Ok(forward.then_some((Occasion::FastForward, note)));
    }
    // `git merge --squash` leaves SQUASH_MSG for the commit that concludes it.
    if commit.parent_count() == 1 && on_top && repository.path().join("SQUASH_MSG").is_file() {
        return Ok(Some((Occasion::Merge, summary())));
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp() -> Result<tempfile::TempDir> {
        tempfile::tempdir().context("creating", "a temporary directory")
    }

    fn hooks_dir(root: &Path) -> HooksDir {
        HooksDir { path: root.join("hooks"), configured: false }
    }

    #[test]
    fn every_shim_records_its_binary_and_reads_it_back() {
        for hook in Hook::ALL {
            let binary = Path::new("/opt/it's here/envsnap");
            let shim = render(hook, Some(binary));
            assert!(is_shim(&shim), "{hook}");
            assert_eq!(recorded_binary(&shim).as_deref(), Some(binary), "{hook}");
            assert_eq!(recorded_binary(&render(hook, None)), None, "{hook}");
            assert_eq!(hook.name().parse::<Hook>(), Ok(hook));
        }
        assert!("post-commit".parse::<Hook>().is_err());
    }

    #[test]
    fn install_keeps_a_hook_and_uninstall_puts_it_back() -> Result<()> {
        let root = temp()?;
        let dir = hooks_dir(root.path());
        fs::create_dir(&dir.path).context("creating", &dir.path)?;
        let user_hook = dir.hook_path(Hook::PrePush);
        fs::write(&user_hook, "#!/bin/sh\nexit 0\n").context("writing", &user_hook)?;
        fs::set_permissions(&user_hook, fs::Permissions::from_mode(0o750)).context("chmod", &user_hook)?;

        let binary = Path::new("/usr/local/bin/envsnap");
        let changes = dir.install(binary)?;
        let chained = dir.chained_path(Hook::PrePush);
        assert_eq!(
            changes[2],
            HookChange { hook: Hook::PrePush, change: Change::Installed { chained: Some(chained.clone()) } }
        );
        assert_eq!(changes[0].change, Change::Installed { chained: None });
        let mode = fs::metadata(&chained).context("stat", &chained)?.permissions().mode() & 0o777;
        assert_eq!(mode, 0o750, "the kept hook keeps its mode");
        let status = dir.status()?;
        assert!(
            status.iter().all(|hook| hook.state == HookState::Installed { binary: Some(binary.into()), current: true })
        );
        assert_eq!(status[2].chained.as_ref(), Some(&chained));

        let again = dir.install(binary)?;
        assert!(again.iter().all(|hook| hook.change == Change::Unchanged), "{again:?}");
        let elsewhere = dir.install(Path::new("/elsewhere/envsnap"))?;
        assert!(elsewhere.iter().all(|hook| hook.change == Change::Updated), "{elsewhere:?}");

        let removed = dir.uninstall()?;
        assert_eq!(removed[2].change, Change::Removed { restored: true });
        assert_eq!(removed[0].change, Change::Removed { restored: false });
        assert_eq!(fs::read_to_string(&user_hook).context("reading", &user_hook)?, "#!/bin/sh\nexit 0\n");
        assert!(!chained.exists() && !dir.hook_path(Hook::PreMergeCommit).exists());
        assert!(dir.uninstall()?.iter().all(|hook| hook.change == Change::NotInstalled));
        Ok(())
    }

    #[test]
    fn install_never_loses_a_hook() -> Result<()> {
        let root = temp()?;
        let dir = hooks_dir(root.path());
        fs::create_dir(&dir.path).context("creating", &dir.path)?;
        let hook = dir.hook_path(Hook::PreMergeCommit);
        let chained = dir.chained_path(Hook::PreMergeCommit);
        fs::write(&chained, "kept").context("writing", &chained)?;
        fs::write(&hook, "written again by a tool").context("writing", &hook)?;
        let refused = dir.install(Path::new("/bin/envsnap"));
        assert!(matches!(&refused, Err(Error::Git { message }) if message.contains("merge the two")), "{refused:?}");
        assert!(!dir.hook_path(Hook::PrePush).exists(), "a refusal changes nothing");

        // The same hook written again over the shim (husky does so): one copy is kept.
        fs::write(&hook, "kept").context("writing", &hook)?;
        dir.install(Path::new("/bin/envsnap"))?;
        assert_eq!(fs::read_to_string(&chained).context("reading", &chained)?, "kept");
        fs::write(&hook, "another").context("writing", &hook)?;
        assert_eq!(dir.uninstall()?[0].change, Change::LeftAlone { chained: chained.clone() });
        assert_eq!(fs::read_to_string(&hook).context("reading", &hook)?, "another");
        Ok(())
    }

    #[test]
    fn locate_honours_core_hooks_path() -> Result<()> {
        let root = temp()?;
        let repository = git2::Repository::init(root.path()).map_err(|e| git_error("init", &e))?;
        let work_tree = root.path().canonicalize().context("canonicalize", root.path())?;
        let default = HooksDir::locate(&work_tree)?;
        assert_eq!(default, HooksDir { path: work_tree.join(".git").join("hooks"), configured: false });
        let mut config = repository.config().map_err(|e| git_error("config", &e))?;
        config.set_str("core.hooksPath", ".husky").map_err(|e| git_error("config", &e))?;
        assert_eq!(HooksDir::locate(&work_tree)?, HooksDir { path: work_tree.join(".husky"), configured: true });
        config.set_str("core.hooksPath", "/srv/hooks").map_err(|e| git_error("config", &e))?;
        assert_eq!(HooksDir::locate(&work_tree)?.path, Path::new("/srv/hooks"));
        Ok(())
    }

    #[test]
    fn hook_input_is_parsed_line_by_line() {
        let updates = RefUpdate::parse("0000 1111 refs/heads/main\nbroken\n2222 ref:refs/heads/x HEAD\n");
        assert_eq!(updates.len(), 2);
        assert_eq!(updates[0].name, "refs/heads/main");
        let pushed = PushedRef::parse("refs/heads/main 1111 refs/heads/main 0000\n(delete) 0000 refs/heads/old 2222\n");
        assert_eq!(pushed.len(), 2);
        assert_eq!(pushed[1].local_ref, "(delete)");
        assert_eq!(pushed[1].remote_ref, "refs/heads/old");
    }
}
