//! Restoring snapshot elements into directories.
//!
//! A restore in place first **verifies** ([`verify`]): it reads every chunk it will
//! write and checks each against its id, and each file's chunks against its recorded
//! size, so that damage is found while the live files are still intact. Then it runs
//! in three steps:
//! 1. **Plan**: walk the snapshot's trees and check every name. Nothing is written
//!    until the whole snapshot has been found safe: a name that is empty, `.`, `..`,
//!    holds a `/` or a NUL, or appears twice is refused, and so is a directory of the
//!    target that is a symlink (it could lead outside the target).
//! 2. **Lay out**: create the directories and symlinks; remove what stands where a
//!    file will go (in a directory that existed before), never following a link.
//! 3. **Fill**: group the chunks by pack and read each pack once, packs in parallel,
//!    writing each chunk at its offset(s) in whatever order it comes. A file is created
//!    (`O_NOFOLLOW`) by its first chunk and finished (size, owner, mode, times, all
//!    through the open handle) by its last, so most files cost one open. All-zero
//!    chunks are not written, which keeps sparse files sparse. Directory metadata
//!    comes last, deepest first, so a read-only directory is made so after its children.

use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::fs::{self, File, FileTimes, OpenOptions};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rayon::prelude::*;

use crate::catalog::Location;
use crate::diff::{Change, ChangeKind};
use crate::element::mount::Excludes;
use crate::element::service::{DumpSource, Service};
use crate::error::{Error, IoContext, Result};
use crate::id::ObjectId;
use crate::progress::Progress;
use crate::repository::Repository;
use crate::store::pack::PackEntry;
use crate::store::{self, decode_blob};
use crate::tree::{Node, NodeKind};

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
/// A restore in place is verified first (see [`verify`]): a snapshot with any damaged
/// or missing data is refused before a single live file is touched.
pub fn restore(repository: &Repository, targets: &[RestoreTarget], progress: &dyn Progress) -> Result<RestoreReport> {
    if targets.iter().any(|target| target.replace.is_some()) {
        let verified = verify(repository, targets, progress)?;
        restore_verified(repository, targets, &verified, progress)
    } else {
        write(repository, targets, progress)
    }
}

/// Restores `targets` that [`verify`] found sound; see [`restore`].
pub fn restore_verified(
    repository: &Repository,
    targets: &[RestoreTarget],
    _verified: &Verified,
    progress: &dyn Progress,
) -> Result<RestoreReport> {
    write(repository, targets, progress)
}

fn write(repository: &Repository, targets: &[RestoreTarget], progress: &dyn Progress) -> Result<RestoreReport> {
    let plan = Plan::new(repository, targets)?;
    plan.check_target(targets)?;
    let fresh = plan.lay_out(targets)?;
    plan.clear_file_places(&fresh)?;
    let failures = Mutex::new(Vec::new());
    plan.fill(repository, progress, &failures)?;
    plan.finish_links()?;
    plan.apply_dir_metadata()?;
    let failures = failures.into_inner().unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some((_, first_error)) = failures.first() {
        let mut files: Vec<PathBuf> = failures.iter().map(|(index, _)| plan.files[*index].path.clone()).collect();
        files.sort();
        files.dedup();
        return Err(Error::RestoreIncomplete { files, first_error: first_error.clone() });
    }
    Ok(plan.report())
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
/// This is what makes a restore in place safe: it deletes and rewrites live files,
/// so it must know before it starts that it can write every one of them in full.
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
    let mut changes = Vec::new();
    let root = PathBuf::from(target.destination.file_name().unwrap_or_default());
    preview_dir(repository, target, target.tree, &target.destination, Path::new(""), &root, &mut changes)?;
    Ok(changes)
}

fn preview_dir(
    repository: &Repository,
    target: &RestoreTarget,
    tree_id: ObjectId,
    dir: &Path,
    relative: &Path,
    shown: &Path,
    changes: &mut Vec<Change>,
) -> Result<()> {
    let tree = repository.read_tree(&tree_id)?;
    let mut names = HashSet::new();
    for node in &tree.nodes {
        check_name(dir, &node.name, &mut names)?;
        let name = OsStr::from_bytes(&node.name);
        let path = dir.join(name);
        let shown_path = shown.join(name);
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
        if is_dir
            && !matches!(kind, Some(ChangeKind::Added | ChangeKind::TypeChanged))
            && let Some(subtree) = node.subtree
        {
            preview_dir(repository, target, subtree, &path, &relative.join(name), &shown_path, changes)?;
        }
    }
    if let (Some(excludes), Ok(entries)) = (&target.replace, fs::read_dir(dir)) {
        let mut extra: Vec<(PathBuf, bool)> = Vec::new();
        for entry in entries.flatten() {
            let name = entry.file_name();
            let is_dir = entry.file_type().is_ok_and(|kind| kind.is_dir());
            if !names.contains(name.as_bytes()) && !excludes.is_excluded(&relative.join(&name), is_dir) {
                extra.push((shown.join(&name), is_dir));
            }
        }
        extra.sort();
        changes.extend(extra.into_iter().map(|(path, is_dir)| Change { kind: ChangeKind::Removed, path, is_dir }));
    }
    Ok(())
}

/// Where a chunk goes: (index into the planned files, offset in the file).
type Positions = Vec<(usize, u64)>;

#[derive(Debug)]
struct PlannedDir {
    path: PathBuf,
    relative: PathBuf,
    /// `None` for an element's root, whose own metadata a snapshot does not hold.
    node: Option<Node>,
    names: HashSet<Vec<u8>>,
    target: usize,
}

#[derive(Debug)]
struct PlannedFile {
    path: PathBuf,
    node: Node,
    /// Index of its directory in `Plan::dirs`.
    parent: usize,
}

#[derive(Debug, Default)]
struct Plan {
    dirs: Vec<PlannedDir>,
    files: Vec<PlannedFile>,
    symlinks: Vec<PlannedFile>,
    /// (existing file, new link), both restored paths.
    hard_links: Vec<(PathBuf, PathBuf)>,
}

fn unsafe_name(dir: &Path, name: &[u8], reason: &str) -> Error {
    Error::UnsafePath { path: dir.join(OsStr::from_bytes(name)), reason: reason.to_owned() }
}

/// Refuses a name that could lead out of its directory or collide.
fn check_name(dir: &Path, name: &[u8], names: &mut HashSet<Vec<u8>>) -> Result<()> {
    if name.is_empty() || name == b"." || name == b".." {
        return Err(unsafe_name(dir, name, "the snapshot holds an entry named `.`, `..` or nothing"));
    }
    if name.contains(&b'/') || name.contains(&0) {
        return Err(unsafe_name(
            dir,
            name,
            "the snapshot holds a name with a `/` or NUL: it could point outside the target",
        ));
    }
    if !names.insert(name.to_vec()) {
        return Err(unsafe_name(dir, name, "the snapshot holds this name twice in one directory"));
    }
    Ok(())
}

impl Plan {
    /// Plans every target, refusing targets that overlap: one restored after the
    /// other could be led anywhere by a symlink the first laid down.
    fn new(repository: &Repository, targets: &[RestoreTarget]) -> Result<Plan> {
        for (index, target) in targets.iter().enumerate() {
            for other in &targets[index + 1..] {
                let (a, b) = (&target.destination, &other.destination);
                if a.starts_with(b) || b.starts_with(a) {
                    return Err(Error::UnsafePath {
                        path: if a.starts_with(b) { a.clone() } else { b.clone() },
                        reason: format!(
                            "{} and {} overlap: restore them one at a time, or fix the mounts in envsnap.toml",
                            a.display(),
                            b.display()
                        ),
                    });
                }
            }
        }
        let mut plan = Plan::default();
        for (index, target) in targets.iter().enumerate() {
            plan.add_target(repository, target, index)?;
        }
        Ok(plan)
    }

    fn add_target(&mut self, repository: &Repository, target: &RestoreTarget, target_index: usize) -> Result<()> {
        let mut inodes: HashMap<u64, PathBuf> = HashMap::new();
        let mut pending = vec![(target.tree, target.destination.clone(), PathBuf::new(), None::<Node>)];
        while let Some((tree_id, path, relative, node)) = pending.pop() {
            let tree = repository.read_tree(&tree_id)?;
            let mut names = HashSet::with_capacity(tree.nodes.len());
            for child in &tree.nodes {
                check_name(&path, &child.name, &mut names)?;
            }
            let parent = self.dirs.len();
            for child in tree.nodes {
                let name = OsStr::from_bytes(&child.name);
                let child_path = path.join(name);
                match child.kind {
                    NodeKind::Dir => {
                        let subtree = child.subtree.ok_or_else(|| Error::Corrupt {
                            what: format!("tree {}", tree_id.short(12)),
                            detail: format!("directory {} has no subtree", child_path.display()),
                        })?;
                        pending.push((subtree, child_path, relative.join(name), Some(child)));
                    }
                    NodeKind::Symlink => self.symlinks.push(PlannedFile { path: child_path, node: child, parent }),
                    NodeKind::File => {
                        if child.links > 1 {
                            if let Some(first) = inodes.get(&child.inode) {
                                self.hard_links.push((first.clone(), child_path));
                                continue;
                            }
                            inodes.insert(child.inode, child_path.clone());
                        }
                        self.files.push(PlannedFile { path: child_path, node: child, parent });
                    }
                }
            }
            self.dirs.push(PlannedDir { path, relative, node, names, target: target_index });
        }
        Ok(())
    }

    /// Refuses directories of the target that are symlinks: writing below one would
    /// write wherever it points.
    fn check_target(&self, targets: &[RestoreTarget]) -> Result<()> {
        let is_symlink = |path: &Path| fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink());
        // An element's root may be a symlink in place (a mount on another disk), never
        // in a directory given with --to, where it could only have been planted.
        let checked = |dir: &&PlannedDir| dir.node.is_some() || targets[dir.target].replace.is_none();
        if let Some(dir) = self.dirs.iter().filter(checked).find(|dir| is_symlink(&dir.path)) {
            return Err(Error::UnsafePath {
                path: dir.path.clone(),
                reason: "it is a symlink in the target where the snapshot has a directory; \
                         remove it, or restore with --to into an empty directory"
                    .to_owned(),
            });
        }
        Ok(())
    }

    /// Creates the directories and symlinks; returns, per directory, whether it was
    /// created now (and so holds nothing to replace).
    fn lay_out(&self, targets: &[RestoreTarget]) -> Result<Vec<bool>> {
        let mut fresh = vec![false; self.dirs.len()];
        // Sorting by path puts every parent before its children.
        let mut order: Vec<usize> = (0..self.dirs.len()).collect();
        order.sort_by(|a, b| self.dirs[*a].path.cmp(&self.dirs[*b].path));
        for index in order {
            let dir = &self.dirs[index];
            fresh[index] = match fs::symlink_metadata(&dir.path) {
                Ok(metadata) if metadata.is_dir() => false,
                // An element's root may be a symlink the user chose (e.g. to another disk).
                Ok(metadata) if dir.node.is_none() && metadata.file_type().is_symlink() => false,
                Ok(_) => {
                    fs::remove_file(&dir.path).context("replacing", &dir.path)?;
                    fs::create_dir(&dir.path).context("creating", &dir.path)?;
                    true
                }
                Err(error) if error.kind() == io::ErrorKind::NotFound => {
                    if dir.node.is_none() { fs::create_dir_all(&dir.path) } else { fs::create_dir(&dir.path) }
                        .context("creating", &dir.path)?;
                    true
                }
                Err(error) => return Err(Error::io("reading", &dir.path, error)),
            };
            if let (false, Some(excludes)) = (fresh[index], targets.get(dir.target).and_then(|t| t.replace.as_ref())) {
                remove_extra_entries(dir, excludes)?;
            }
        }
        for link in &self.symlinks {
            if !fresh[link.parent] {
                remove_existing(&link.path)?;
            }
            let target = OsStr::from_bytes(link.node.target.as_deref().unwrap_or_default());
            std::os::unix::fs::symlink(target, &link.path).context("creating the symlink", &link.path)?;
            // Ownership of a symlink matters only to root; its time is kept like any other.
            let _ = std::os::unix::fs::lchown(&link.path, Some(link.node.uid), Some(link.node.gid));
            let mtime = filetime::FileTime::from_unix_time(link.node.mtime, link.node.mtime_nsec);
            filetime::set_symlink_file_times(&link.path, mtime, mtime).context("setting the times of", &link.path)?;
        }
        Ok(fresh)
    }

    /// Removes what stands where a file or hard link will be created, in directories
    /// that existed before, so that every file is created new.
    fn clear_file_places(&self, fresh: &[bool]) -> Result<()> {
        self.files.par_iter().filter(|file| !fresh[file.parent]).try_for_each(|file| remove_existing(&file.path))?;
        for (_, link) in &self.hard_links {
            remove_existing(link)?;
        }
        Ok(())
    }

    fn fill(
        &self,
        repository: &Repository,
        progress: &dyn Progress,
        failures: &Mutex<Vec<(usize, String)>>,
    ) -> Result<()> {
        // chunk -> every (file, offset) that needs it
        let mut uses: HashMap<ObjectId, Positions> = HashMap::new();
        let mut locations: HashMap<ObjectId, Location> = HashMap::new();
        // Per file, the chunk writes still to come; the one that brings it to zero
        // finishes the file.
        let remaining: Vec<AtomicUsize> = self.files.iter().map(|_| AtomicUsize::new(0)).collect();
        let mut without_chunks = Vec::new();
        {
            let catalog = store::lock(repository.catalog());
            for (index, file) in self.files.iter().enumerate() {
                let mut offset = 0u64;
                let mut positions = Vec::with_capacity(file.node.content.len());
                for id in &file.node.content {
                    let location = match locations.get(id) {
                        Some(location) => location,
                        None => match catalog.locate(id)? {
                            Some(location) => locations.entry(*id).or_insert(location),
                            None => {
                                let message = format!("chunk {} is missing from the repository", id.short(12));
                                store::lock(failures).push((index, message));
                                positions.clear();
                                break;
                            }
                        },
                    };
                    positions.push((*id, offset));
                    offset += u64::from(location.entry.raw_length);
                }
                // A file is written only as its chunks hold it: never cut short or padded
                // to a size the snapshot claims and its data does not bear out.
                if !positions.is_empty() && offset != file.node.size {
                    let message =
                        format!("its chunks hold {offset} bytes but the snapshot records {} bytes", file.node.size);
                    store::lock(failures).push((index, message));
                    positions.clear();
                }
                if positions.is_empty() {
                    without_chunks.push(index);
                }
                remaining[index].store(positions.len(), Ordering::Relaxed);
                for (id, offset) in positions {
                    uses.entry(id).or_default().push((index, offset));
                }
            }
        }
        let total = self.files.iter().map(|file| file.node.size).sum();
        progress.begin("restoring", Some(total));
        let mut by_pack: HashMap<&str, Vec<(&Location, &Positions)>> = HashMap::new();
        for (id, positions) in &uses {
            let location = &locations[id];
            by_pack.entry(location.pack.as_str()).or_default().push((location, positions));
        }
        by_pack.into_par_iter().try_for_each(|(pack, mut blobs)| -> Result<()> {
            blobs.sort_by_key(|(location, _)| location.entry.offset);
            let entries: Vec<&PackEntry> = blobs.iter().map(|(location, _)| &location.entry).collect();
            let mut reader = PackReader::new(repository, pack, &entries)?;
            // Consecutive chunks of one file share a handle; at most one file is open
            // per pack task, however many files a pack holds.
            let mut open: Option<(usize, File)> = None;
            for (location, positions) in blobs {
                let data = match reader.read(&location.entry)? {
                    Ok(data) => Some(data),
                    Err(detail) => {
                        let message = format!(
                            "chunk {} in pack {}: {detail}",
                            location.entry.id.short(12),
                            repository.backend().describe(pack).display()
                        );
                        store::lock(failures).extend(positions.iter().map(|(index, _)| (*index, message.clone())));
                        None
                    }
                };
                for (index, offset) in positions {
                    if let Some(data) = &data {
                        write_sparse(data, *offset, || self.handle(&mut open, *index))
                            .context("writing", &self.files[*index].path)?;
                    }
                    progress.add_bytes(u64::from(location.entry.raw_length));
                    if remaining[*index].fetch_sub(1, Ordering::AcqRel) == 1 {
                        let file = self.handle(&mut open, *index)?;
                        self.finish_file(*index, file)?;
                        open = None;
                    }
                }
            }
            Ok(())
        })?;
        without_chunks.par_iter().try_for_each(|index| {
            let mut open = None;
            let file = self.handle(&mut open, *index)?;
            self.finish_file(*index, file)
        })?;
        progress.finish();
        Ok(())
    }

    /// The open handle of file `index`, opening (creating) it when another is open.
    fn handle<'h>(&self, open: &'h mut Option<(usize, File)>, index: usize) -> Result<&'h File> {
        if open.as_ref().is_none_or(|(current, _)| *current != index) {
            let path = &self.files[index].path;
            let file = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(false)
                .custom_flags(libc::O_NOFOLLOW)
                .mode(0o600)
                .open(path)
                .context("creating", path)?;
            *open = Some((index, file));
        }
        Ok(&open.as_ref().expect("opened just above").1)
    }

    /// Gives a file whose data is written its size (holes at the end included),
    /// owner, mode and times, through its handle.
    fn finish_file(&self, index: usize, file: &File) -> Result<()> {
        let PlannedFile { path, node, .. } = &self.files[index];
        file.set_len(node.size).context("sizing", path)?;
        // Changing the owner needs privileges a normal user lacks; the files are then
        // theirs, as with `cp` or `tar` run by that user.
        let _ = std::os::unix::fs::fchown(file, Some(node.uid), Some(node.gid));
        file.set_permissions(fs::Permissions::from_mode(node.mode)).context("setting the mode of", path)?;
        let mtime = system_time(node.mtime, node.mtime_nsec);
        file.set_times(FileTimes::new().set_modified(mtime).set_accessed(mtime)).context("setting the times of", path)
    }

    fn finish_links(&self) -> Result<()> {
        for (existing, link) in &self.hard_links {
            fs::hard_link(existing, link).context("linking", link)?;
        }
        Ok(())
    }

    fn apply_dir_metadata(&self) -> Result<()> {
        let mut dirs: Vec<&PlannedDir> = self.dirs.iter().collect();
        dirs.sort_by(|a, b| b.path.cmp(&a.path));
        for dir in dirs {
            if let Some(node) = &dir.node {
                let _ = std::os::unix::fs::chown(&dir.path, Some(node.uid), Some(node.gid));
                fs::set_permissions(&dir.path, fs::Permissions::from_mode(node.mode))
                    .context("setting the mode of", &dir.path)?;
                let mtime = filetime::FileTime::from_unix_time(node.mtime, node.mtime_nsec);
                filetime::set_file_times(&dir.path, mtime, mtime).context("setting the times of", &dir.path)?;
            }
        }
        Ok(())
    }

    fn report(&self) -> RestoreReport {
        RestoreReport {
            files: (self.files.len() + self.hard_links.len()) as u64,
            dirs: self.dirs.len() as u64,
            symlinks: self.symlinks.len() as u64,
            bytes: self.files.iter().map(|file| file.node.size).sum(),
        }
    }
}

/// Writes `data` at `offset`, leaving out blocks of zeros: the file was created
/// empty, so they read back as zeros anyway, and holes stay holes. The file is only
/// opened (by `open`) when there is something to write.
fn write_sparse<'f>(data: &[u8], offset: u64, open: impl FnOnce() -> Result<&'f File>) -> io::Result<()> {
    const BLOCK: usize = 4096;
    let mut open = Some(open);
    let mut file: Option<&File> = None;
    let mut start = None;
    let blocks = data.chunks(BLOCK).map(|block| block.iter().all(|byte| *byte == 0)).chain([true]);
    for (index, zero) in blocks.enumerate() {
        match (zero, start) {
            (false, None) => start = Some(index * BLOCK),
            (true, Some(from)) => {
                let to = (index * BLOCK).min(data.len());
                if file.is_none() {
                    let opener = open.take().expect("opened once");
                    file = Some(opener().map_err(io::Error::other)?);
                }
                file.expect("just opened").write_all_at(&data[from..to], offset + from as u64)?;
                start = None;
            }
            _ => {}
        }
    }
    Ok(())
}

fn system_time(seconds: i64, nanoseconds: u32) -> SystemTime {
    let nanos = Duration::from_nanos(u64::from(nanoseconds));
    match u64::try_from(seconds) {
        Ok(seconds) => UNIX_EPOCH + Duration::from_secs(seconds) + nanos,
        Err(_) => UNIX_EPOCH - Duration::from_secs(seconds.unsigned_abs()) + nanos,
    }
}

/// Reads the blobs a restore needs from one pack: the whole span in one read when the
/// blobs fill most of it (a first restore), else blob by blob (a few files).
struct PackReader<'a> {
    repository: &'a Repository,
    pack: &'a str,
    span: Option<(u64, Vec<u8>)>,
}

/// The largest span read at once: a whole pack, with room for a large last blob.
const SPAN_LIMIT: u64 = 2 * store::PACK_TARGET as u64;

impl<'a> PackReader<'a> {
    fn new(repository: &'a Repository, pack: &'a str, sorted: &[&PackEntry]) -> Result<Self> {
        let (Some(first), Some(last)) = (sorted.first(), sorted.last()) else {
            return Ok(PackReader { repository, pack, span: None });
        };
        let start = first.offset;
        let end = last.offset.saturating_add(u64::from(last.length));
        let needed: u64 = sorted.iter().map(|entry| u64::from(entry.length)).sum();
        let span = if end - start <= SPAN_LIMIT && needed.saturating_mul(2) >= end - start {
            match repository.backend().get_range(pack, start, (end - start) as usize) {
                Ok(bytes) => Some((start, bytes)),
                // A short or missing pack: read blob by blob to save what can be saved.
                Err(error) if is_damage(&error) => None,
                Err(error) => return Err(Error::io("reading", repository.backend().describe(pack), error)),
            }
        } else {
            None
        };
        Ok(PackReader { repository, pack, span })
    }

    /// The blob's plain bytes; `Ok(Err(why))` when its data is damaged or missing,
    /// `Err` when reading failed for another reason (which stops the restore).
    fn read(&mut self, entry: &PackEntry) -> Result<Result<Vec<u8>, String>> {
        let stored = match &self.span {
            Some((start, bytes)) => {
                // The catalog's offsets are stored bytes too: slice only what is there.
                let span = entry
                    .offset
                    .checked_sub(*start)
                    .and_then(|from| usize::try_from(from).ok())
                    .and_then(|from| bytes.get(from..from.checked_add(entry.length as usize)?));
                match span {
                    Some(span) => span.to_vec(),
                    None => {
                        return Ok(Err(format!(
                            "it lies outside the bytes read from its pack (offset {})",
                            entry.offset
                        )));
                    }
                }
            }
            None => match self.repository.backend().get_range(self.pack, entry.offset, entry.length as usize) {
                Ok(stored) => stored,
                Err(error) if is_damage(&error) => return Ok(Err(error.to_string())),
                Err(error) => return Err(Error::io("reading", self.repository.backend().describe(self.pack), error)),
            },
        };
        Ok(decode_blob(entry, stored))
    }
}

/// Errors that mean the data is gone (rather than that reading failed for now).
fn is_damage(error: &io::Error) -> bool {
    matches!(error.kind(), io::ErrorKind::NotFound | io::ErrorKind::UnexpectedEof)
}

/// Removes whatever is at `path`, never following a symlink.
fn remove_existing(path: &Path) -> Result<()> {
    match fs::symlink_metadata(path) {
        Ok(metadata) if metadata.is_dir() => fs::remove_dir_all(path).context("replacing", path),
        Ok(_) => fs::remove_file(path).context("replacing", path),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(error) => Err(Error::io("reading", path, error)),
    }
}

fn remove_extra_entries(dir: &PlannedDir, excludes: &Excludes) -> Result<()> {
    for entry in fs::read_dir(&dir.path).context("reading the directory", &dir.path)? {
        let entry = entry.context("reading the directory", &dir.path)?;
        let name = entry.file_name();
        if dir.names.contains(name.as_bytes()) {
            continue;
        }
        let is_dir = entry.file_type().is_ok_and(|kind| kind.is_dir());
        if excludes.is_excluded(&dir.relative.join(&name), is_dir) {
            continue;
        }
        remove_existing(&entry.path())?;
    }
    Ok(())
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

/// Restores a service element into `service`: its data is replaced by the dump.
pub fn restore_service(repository: &Repository, tree: &ObjectId, service: &dyn Service) -> Result<()> {
    service.restore(&StoredDump::open(repository, tree)?)
}
