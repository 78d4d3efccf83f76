//! Restoring snapshot elements into directories, in three steps:
//! 1. **Plan** ([`plan`]): walk the snapshot's trees and check every name, within a
//!    bound on entries and depth. Nothing is written until the whole snapshot has been
//!    found safe: a name that is empty, `.`, `..`, holds a `/` or a NUL, or appears
//!    twice is refused; so, with `--to`, is a symlink in the target where the
//!    snapshot has a directory.
//! 2. **Stage** ([`stage`], [`fill`]): write every file, hard link and symlink in full
//!    into a private staging directory in its target's root, reading each pack once
//!    and verifying every chunk against its id and every file against its recorded
//!    size. Damage found here, in place, refuses the restore with nothing changed; the
//!    caller may take a safety snapshot between staging and committing.
//! 3. **Commit** ([`place`]): walk the target through directory handles, never
//!    following a symlink, making directories, removing what a restore in place does
//!    not keep, and renaming each staged entry over its place; a directory's metadata
//!    is set after its children, so a read-only directory is made so last.
//!
//! A file is replaced only by a rename of a complete file, so a restore that fails or
//! is killed leaves each file as it was or as the snapshot holds it, never half
//! written; a restore in place that cannot write every file changes nothing.

mod fill;
mod place;
mod plan;

use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::fs;
use std::io;
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rayon::prelude::*;

use crate::diff::{Change, ChangeKind};
use crate::element::mount::Excludes;
use crate::element::service::{DumpSource, Service};
use crate::error::{Error, Result};
use crate::id::ObjectId;
use crate::progress::Progress;
use crate::repository::Repository;
use crate::store::{self, pack::PackEntry};
use crate::tree::NodeKind;

use fill::PackReader;
use place::{Commit, Staging, staged_name};
use plan::{Entry, Plan};

pub(crate) use place::STAGING_PREFIX;
pub(crate) use plan::check_bounds;

/// One element to restore, and where.
#[derive(Debug, Clone)]
pub struct RestoreTarget {
    /// The element's root tree.
    pub tree: ObjectId,
    /// The directory that receives the element's files.
    pub destination: PathBuf,
    /// For a restore in place: what the mount excludes. Entries of the destination that
    /// the snapshot lacks are removed, except excluded ones, which were never captured.
    /// `None` leaves extra entries alone (a restore into another directory).
    pub replace: Option<Excludes>,
}

/// What a restore wrote.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RestoreReport {
    /// Regular files, hard links included.
    pub files: u64,
    /// Directories.
    pub dirs: u64,
    /// Symlinks.
    pub symlinks: u64,
    /// Bytes of file content.
    pub bytes: u64,
}

/// Restores `targets`. See the module documentation for the order of work.
///
/// Nothing in place changes before every file has been staged in full, each chunk
/// verified against its id on the way: a snapshot with any damaged or missing data is
/// refused before a single live file is touched.
pub fn restore(repository: &Repository, targets: &[RestoreTarget], progress: &dyn Progress) -> Result<RestoreReport> {
    stage(repository, targets, progress)?.commit()
}

/// A restore whose files are all written, waiting beside their places to be moved in
/// ([`Staged::commit`]). Dropping it removes what was staged and changes nothing.
pub struct Staged {
    targets: Vec<RestoreTarget>,
    plan: Plan,
    stagings: Vec<Staging>,
    failures: Vec<(usize, String)>,
    verified: Verified,
}

/// Plans `targets` and writes every file, hard link and symlink into a staging
/// directory in its target's root, reading each chunk once and verifying it; changes
/// nothing else. In place, any damage refuses the whole restore
/// ([`Error::RestoreRefused`]); with `--to`, the files that could not be written are
/// left out and reported when the restore is committed.
pub fn stage(repository: &Repository, targets: &[RestoreTarget], progress: &dyn Progress) -> Result<Staged> {
    let plan = Plan::new(repository, targets)?;
    for (index, target) in targets.iter().enumerate() {
        if target.replace.is_none()
            && let Some(root) = place::open_root(&target.destination, false, false)?
        {
            place::refuse_planted_symlinks(&plan, plan.roots[index], root.as_fd(), 0)?;
        }
    }
    let mut stagings = Vec::with_capacity(targets.len());
    for target in targets {
        let Some(root) = place::open_root(&target.destination, target.replace.is_some(), true)? else {
            return Err(Error::io("opening", &target.destination, io::ErrorKind::NotFound.into()));
        };
        stagings.push(Staging::create(root, &target.destination)?);
    }

    let failures = Mutex::new(Vec::new());
    fill::fill(repository, &plan, &stagings, progress, &failures)?;
    let failures = failures.into_inner().unwrap_or_else(std::sync::PoisonError::into_inner);
    let failed: HashSet<usize> = failures.iter().map(|(index, _)| *index).collect();
    for (index, link) in plan.links.iter().enumerate() {
        if !failed.contains(&link.file) {
            let staging = &stagings[plan.target_of(link.file)];
            staging.link(&staged_name(Entry::File(link.file)), &staged_name(Entry::Link(index)))?;
        }
    }
    for (index, symlink) in plan.symlinks.iter().enumerate() {
        stagings[plan.dirs[symlink.parent].target].symlink(&staged_name(Entry::Symlink(index)), &symlink.node)?;
    }
    let chunks = plan
        .files
        .iter()
        .enumerate()
        .filter(|(index, _)| !failed.contains(index))
        .flat_map(|(_, file)| file.node.content.iter().copied())
        .collect();
    let staged = Staged { targets: targets.to_vec(), plan, stagings, failures, verified: Verified { chunks } };
    // In place, every file is written or none: dropping the staging directories
    // leaves the live files as they were.
    if let Some((_, first_error)) = staged.failures.first()
        && targets.iter().any(|target| target.replace.is_some())
    {
        return Err(Error::RestoreRefused { files: staged.failed_files(), first_error: first_error.clone() });
    }
    Ok(staged)
}

impl Staged {
    /// The chunks staged, each read and verified: what a safety snapshot taken next
    /// may depend on without reading it again.
    pub fn verified(&self) -> &Verified {
        &self.verified
    }

    /// Moves every staged entry into place (see [`place`]), removing, in place, what
    /// the snapshot lacks.
    pub fn commit(self) -> Result<RestoreReport> {
        let plan = &self.plan;
        let failed: HashSet<usize> = self.failures.iter().map(|(index, _)| *index).collect();
        let staged = |entry: Entry| match entry {
            Entry::File(index) => !failed.contains(&index),
            Entry::Link(index) => !failed.contains(&plan.links[index].file),
            Entry::Dir(_) | Entry::Symlink(_) => true,
        };
        for (index, target) in self.targets.iter().enumerate() {
            let staging = &self.stagings[index];
            Commit { plan, staging, replace: target.replace.as_ref(), staged: &staged }.run(plan.roots[index])?;
        }
        if let Some((_, first_error)) = self.failures.first() {
            return Err(Error::RestoreIncomplete { files: self.failed_files(), first_error: first_error.clone() });
        }
        Ok(RestoreReport {
            files: (plan.files.len() + plan.links.len()) as u64,
            dirs: plan.dirs.len() as u64,
            symlinks: plan.symlinks.len() as u64,
            bytes: plan.files.iter().map(|file| file.node.size).sum(),
        })
    }

    fn failed_files(&self) -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> =
            self.failures.iter().map(|(index, _)| self.plan.files[*index].path.clone()).collect();
        files.sort();
        files.dedup();
        files
    }
}

/// The chunks a [`verify`] read back and found sound: proof that a restore of the
/// same targets can replace live files without meeting damaged data, and what a
/// safety snapshot taken next may depend on without reading it again.
#[derive(Debug, Default)]
pub struct Verified {
    chunks: HashSet<ObjectId>,
}

/// Reads every chunk that restoring `targets` needs, verifies each against its id,
/// and checks that every file's chunks add up to its recorded size; writes nothing.
/// Any damage refuses the whole restore ([`Error::RestoreRefused`]), naming the files.
///
/// [`stage`] verifies the same way as it writes; this checks without writing, which is
/// what a service dump needs before its server is touched.
pub fn verify(repository: &Repository, targets: &[RestoreTarget], progress: &dyn Progress) -> Result<Verified> {
    let plan = Plan::new(repository, targets)?;
    let mut wanted: HashMap<ObjectId, Vec<usize>> = HashMap::new();
    let mut failures: Vec<(usize, String)> = Vec::new();
    let mut sizes: HashMap<ObjectId, u64> = HashMap::new();
    {
        let catalog = store::lock(repository.catalog());
        for (index, file) in plan.files.iter().enumerate() {
            let mut total = 0u64;
            let mut missing = None;
            for id in &file.node.content {
                let length = match sizes.get(id) {
                    Some(length) => *length,
                    None => match catalog.locate(id)? {
                        Some(location) => *sizes.entry(*id).or_insert(u64::from(location.entry.raw_length)),
                        None => {
                            missing = Some(format!("chunk {} is missing from the repository", id.short(12)));
                            break;
                        }
                    },
                };
                total += length;
                wanted.entry(*id).or_default().push(index);
            }
            if let Some(why) = missing {
                failures.push((index, why));
            } else if total != file.node.size {
                failures.push((
                    index,
                    format!("its chunks hold {total} bytes but the snapshot records {} bytes", file.node.size),
                ));
            }
        }
    }
    let ids: HashSet<ObjectId> = wanted.keys().copied().collect();
    for (id, why) in verify_chunks(repository, &ids, progress)? {
        for index in wanted.get(&id).into_iter().flatten() {
            failures.push((*index, why.clone()));
        }
    }
    if let Some((_, first_error)) = failures.first() {
        let first_error = first_error.clone();
        let mut files: Vec<PathBuf> = failures.iter().map(|(index, _)| plan.files[*index].path.clone()).collect();
        files.sort();
        files.dedup();
        return Err(Error::RestoreRefused { files, first_error });
    }
    Ok(Verified { chunks: ids })
}

/// Verifies that every chunk `snapshot`'s elements reference is sound, reading only
/// those `verified` does not already vouch for. A safety snapshot deduplicates onto
/// chunks already stored; should one of them be damaged, the snapshot could not put
/// back what it claims to hold, so it must be checked before anything relies on it.
pub fn verify_snapshot(
    repository: &Repository,
    snapshot: &crate::snapshot::Snapshot,
    verified: &Verified,
    progress: &dyn Progress,
) -> Result<()> {
    let targets: Vec<RestoreTarget> = snapshot
        .manifest
        .elements
        .iter()
        .map(|element| RestoreTarget { tree: element.tree, destination: PathBuf::from(&element.name), replace: None })
        .collect();
    let plan = Plan::new(repository, &targets)?;
    let mut owner: HashMap<ObjectId, usize> = HashMap::new();
    for (index, file) in plan.files.iter().enumerate() {
        for id in &file.node.content {
            if !verified.chunks.contains(id) {
                owner.entry(*id).or_insert(index);
            }
        }
    }
    let ids: HashSet<ObjectId> = owner.keys().copied().collect();
    let damaged = verify_chunks(repository, &ids, progress)?;
    if let Some((id, why)) = damaged.first() {
        let file = owner.get(id).map(|index| plan.files[*index].path.clone()).unwrap_or_default();
        return Err(Error::Corrupt {
            what: format!("snapshot {}", snapshot.id.short(12)),
            detail: format!(
                "it would keep {} from a damaged chunk ({why}), and {} more damaged chunk(s)",
                file.display(),
                damaged.len() - 1
            ),
        });
    }
    Ok(())
}

/// Reads and verifies `ids`, pack by pack in parallel; returns the damaged or
/// missing ones with why. Reading errors that are not damage stop it.
fn verify_chunks(
    repository: &Repository,
    ids: &HashSet<ObjectId>,
    progress: &dyn Progress,
) -> Result<Vec<(ObjectId, String)>> {
    let mut damaged = Vec::new();
    let mut by_pack: HashMap<String, Vec<PackEntry>> = HashMap::new();
    {
        let catalog = store::lock(repository.catalog());
        for id in ids {
            match catalog.locate(id)? {
                Some(location) => by_pack.entry(location.pack).or_default().push(location.entry),
                None => damaged.push((*id, format!("chunk {} is missing from the repository", id.short(12)))),
            }
        }
    }
    let total = by_pack.values().flatten().map(|entry| u64::from(entry.raw_length)).sum();
    progress.begin("verifying", Some(total));
    let found = Mutex::new(damaged);
    by_pack.into_par_iter().try_for_each(|(pack, mut entries)| -> Result<()> {
        entries.sort_by_key(|entry| entry.offset);
        let sorted: Vec<&PackEntry> = entries.iter().collect();
        let mut reader = PackReader::new(repository, &pack, &sorted)?;
        for entry in &entries {
            if let Err(detail) = reader.read(entry)? {
                let message = format!(
                    "chunk {} in pack {}: {detail}",
                    entry.id.short(12),
                    repository.backend().describe(&pack).display()
                );
                store::lock(&found).push((entry.id, message));
            }
            progress.add_bytes(u64::from(entry.raw_length));
        }
        Ok(())
    })?;
    progress.finish();
    Ok(found.into_inner().unwrap_or_else(std::sync::PoisonError::into_inner))
}

/// What restoring `target` would change on disk: paths it would create (`Added`),
/// overwrite (`Modified`, `Metadata`, `TypeChanged`) or, for a restore in place,
/// remove (`Removed`). Paths start with the destination's own name. Files are
/// compared by size and modification time, as a backup compares them.
pub fn preview(repository: &Repository, target: &RestoreTarget) -> Result<Vec<Change>> {
    let plan = Plan::new(repository, std::slice::from_ref(target))?;
    let mut changes = Vec::new();
    let root = PathBuf::from(target.destination.file_name().unwrap_or_default());
    preview_dir(&plan, target, plan.roots[0], &root, &mut changes);
    Ok(changes)
}

fn preview_dir(plan: &Plan, target: &RestoreTarget, index: usize, shown: &Path, changes: &mut Vec<Change>) {
    let dir = &plan.dirs[index];
    for entry in &dir.entries {
        let name = OsStr::from_bytes(plan.name(*entry));
        let path = dir.path.join(name);
        let shown_path = shown.join(name);
        let node = match *entry {
            Entry::Dir(child) => plan.dirs[child].node.as_ref(),
            Entry::File(file) => Some(&plan.files[file].node),
            Entry::Link(link) => Some(&plan.files[plan.links[link].file].node),
            Entry::Symlink(symlink) => Some(&plan.symlinks[symlink].node),
        };
        let Some(node) = node else { continue };
        let is_dir = node.kind == NodeKind::Dir;
        let kind = match fs::symlink_metadata(&path) {
            Err(_) => Some(ChangeKind::Added),
            Ok(metadata) => {
                let same_kind = match node.kind {
                    NodeKind::File => metadata.is_file(),
                    NodeKind::Dir => metadata.is_dir(),
                    NodeKind::Symlink => metadata.file_type().is_symlink(),
                };
                if !same_kind {
                    Some(ChangeKind::TypeChanged)
                } else if node.kind == NodeKind::Symlink {
                    let target_now = fs::read_link(&path).ok().map(|t| t.as_os_str().as_bytes().to_vec());
                    (target_now != node.target).then_some(ChangeKind::Modified)
                } else if node.kind == NodeKind::File
                    && (metadata.len() != node.size
                        || metadata.mtime() != node.mtime
                        || metadata.mtime_nsec() != i64::from(node.mtime_nsec))
                {
                    Some(ChangeKind::Modified)
                } else if metadata.mode() & 0o7777 != node.mode {
                    Some(ChangeKind::Metadata)
                } else {
                    None
                }
            }
        };
        if let Some(kind) = kind {
            changes.push(Change { kind, path: shown_path.clone(), is_dir });
        }
        if let Entry::Dir(child) = *entry
            && !matches!(kind, Some(ChangeKind::Added | ChangeKind::TypeChanged))
        {
            preview_dir(plan, target, child, &shown_path, changes);
        }
    }
    if let (Some(excludes), Ok(entries)) = (&target.replace, fs::read_dir(&dir.path)) {
        let mut extra: Vec<(PathBuf, bool)> = Vec::new();
        for entry in entries.flatten() {
            let name = entry.file_name();
            let is_dir = entry.file_type().is_ok_and(|kind| kind.is_dir());
            if !dir.names.contains(name.as_bytes()) && !excludes.is_excluded(&dir.relative.join(&name), is_dir) {
                extra.push((shown.join(&name), is_dir));
            }
        }
        extra.sort();
        changes.extend(extra.into_iter().map(|(path, is_dir)| Change { kind: ChangeKind::Removed, path, is_dir }));
    }
}

/// A captured service's dump streams, read back from the store.
pub struct StoredDump<'a> {
    repository: &'a Repository,
    tree: crate::tree::Tree,
}

impl<'a> StoredDump<'a> {
    /// The dump whose streams are the files of `tree`.
    pub fn open(repository: &'a Repository, tree: &ObjectId) -> Result<Self> {
        Ok(StoredDump { repository, tree: repository.read_tree(tree)? })
    }
}

impl DumpSource for StoredDump<'_> {
    fn names(&self) -> Vec<String> {
        self.tree.nodes.iter().map(|node| String::from_utf8_lossy(&node.name).into_owned()).collect()
    }

    fn open(&self, name: &str) -> Result<Box<dyn io::Read + Send + '_>> {
        let node = self.tree.find(name.as_bytes()).ok_or_else(|| Error::Corrupt {
            what: "a service dump".to_owned(),
            detail: format!("it has no stream named `{name}`"),
        })?;
        Ok(Box::new(ChunkReader {
            repository: self.repository,
            chunks: node.content.clone(),
            next: 0,
            buffer: Vec::new(),
            position: 0,
        }))
    }
}

/// Reads a file's chunks in order, each verified against its id.
struct ChunkReader<'a> {
    repository: &'a Repository,
    chunks: Vec<ObjectId>,
    next: usize,
    buffer: Vec<u8>,
    position: usize,
}

impl io::Read for ChunkReader<'_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.position == self.buffer.len() {
            let Some(id) = self.chunks.get(self.next) else { return Ok(0) };
            self.buffer = self.repository.read_blob(id).map_err(io::Error::other)?;
            self.position = 0;
            self.next += 1;
        }
        let count = out.len().min(self.buffer.len() - self.position);
        out[..count].copy_from_slice(&self.buffer[self.position..self.position + count]);
        self.position += count;
        Ok(count)
    }
}

/// Asks `service` whether it can load the dump stored under `tree`
/// ([`Service::check_restore`]: e.g. not a dump of a newer server version), without
/// changing anything. A restore calls it for every service before it takes a safety
/// snapshot or touches any element; so does its dry run.
pub fn check_restore(repository: &Repository, tree: &ObjectId, service: &dyn Service) -> Result<()> {
    service.check_restore(&StoredDump::open(repository, tree)?)
}

/// Restores a service element into `service`: its data is replaced by the dump.
pub fn restore_service(repository: &Repository, tree: &ObjectId, service: &dyn Service) -> Result<()> {
    service.restore(&StoredDump::open(repository, tree)?)
}
