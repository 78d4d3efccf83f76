//! Restoring snapshot elements into directories.
//!
//! A restore runs in three steps:
//! 1. **Plan**: walk the snapshot's trees and check every name. Nothing is written
//!    until the whole snapshot has been found safe: a name that is empty, `.`, `..`,
//!    holds a `/` or appears twice is refused, and so is a directory of the target
//!    that is a symlink (it could lead outside the target).
//! 2. **Lay out**: create directories, empty files of their final size (so holes stay
//!    holes), symlinks. Files are created fresh (an existing one is unlinked first) and
//!    opened with `O_NOFOLLOW`, so no write ever goes through a link.
//! 3. **Fill**: group the chunks by pack and read each pack once, packs in parallel,
//!    writing each chunk at its offset(s) in whatever order it comes. All-zero chunks
//!    are skipped, which keeps sparse files sparse. Metadata comes last, directories
//!    deepest first, so a read-only directory is made read-only after its children.

use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rayon::prelude::*;

use crate::catalog::Location;
use crate::element::mount::Excludes;
use crate::error::{Error, IoContext, Result};
use crate::id::ObjectId;
use crate::progress::Progress;
use crate::repository::Repository;
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
pub fn restore(
    repository: &Repository,
    targets: &[RestoreTarget],
    progress: &dyn Progress,
) -> Result<RestoreReport> {
    let mut plan = Plan::default();
    for (index, target) in targets.iter().enumerate() {
        plan.add_target(repository, target, index)?;
    }
    plan.check_target()?;
    plan.lay_out(targets)?;
    let failures = Mutex::new(Vec::new());
    plan.fill(repository, progress, &failures)?;
    plan.finish_links()?;
    plan.apply_metadata()?;
    let failures = failures
        .into_inner()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some((_, first_error)) = failures.first() {
        let mut files: Vec<PathBuf> = failures
            .iter()
            .map(|(index, _)| plan.files[*index].path.clone())
            .collect();
        files.sort();
        files.dedup();
        return Err(Error::RestoreIncomplete {
            files,
            first_error: first_error.clone(),
        });
    }
    Ok(plan.report())
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
    Error::UnsafePath {
        path: dir.join(OsStr::from_bytes(name)),
        reason: reason.to_owned(),
    }
}

impl Plan {
    fn add_target(
        &mut self,
        repository: &Repository,
        target: &RestoreTarget,
        target_index: usize,
    ) -> Result<()> {
        let mut inodes: HashMap<u64, PathBuf> = HashMap::new();
        let mut pending = vec![(
            target.tree,
            target.destination.clone(),
            PathBuf::new(),
            None::<Node>,
        )];
        while let Some((tree_id, path, relative, node)) = pending.pop() {
            let tree = repository.read_tree(&tree_id)?;
            let mut names = HashSet::with_capacity(tree.nodes.len());
            for child in &tree.nodes {
                let name = child.name.as_slice();
                if name.is_empty() || name == b"." || name == b".." {
                    return Err(unsafe_name(
                        &path,
                        name,
                        "the snapshot holds an entry named `.`, `..` or nothing",
                    ));
                }
                if name.contains(&b'/') || name.contains(&0) {
                    return Err(unsafe_name(
                        &path,
                        name,
                        "the snapshot holds a name with a `/`: it could point outside the target",
                    ));
                }
                if !names.insert(child.name.clone()) {
                    return Err(unsafe_name(
                        &path,
                        name,
                        "the snapshot holds this name twice",
                    ));
                }
                let child_path = path.join(OsStr::from_bytes(name));
                let child_relative = relative.join(OsStr::from_bytes(name));
                match child.kind {
                    NodeKind::Dir => {
                        let subtree = child.subtree.ok_or_else(|| Error::Corrupt {
                            what: format!("tree {}", tree_id.short(12)),
                            detail: format!("directory {} has no subtree", child_path.display()),
                        })?;
                        pending.push((subtree, child_path, child_relative, Some(child.clone())));
                    }
                    NodeKind::Symlink => self.symlinks.push(PlannedFile {
                        path: child_path,
                        node: child.clone(),
                    }),
                    NodeKind::File => {
                        if child.links > 1 {
                            if let Some(first) = inodes.get(&child.inode) {
                                self.hard_links.push((first.clone(), child_path));
                                continue;
                            }
                            inodes.insert(child.inode, child_path.clone());
                        }
                        self.files.push(PlannedFile {
                            path: child_path,
                            node: child.clone(),
                        });
                    }
                }
            }
            self.dirs.push(PlannedDir {
                path,
                relative,
                node,
                names,
                target: target_index,
            });
        }
        Ok(())
    }

    /// Refuses directories of the target that are symlinks: writing below one would
    /// write wherever it points.
    fn check_target(&self) -> Result<()> {
        let is_symlink =
            |path: &Path| fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink());
        if let Some(dir) = self
            .dirs
            .iter()
            .find(|dir| dir.node.is_some() && is_symlink(&dir.path))
        {
            return Err(Error::UnsafePath {
                path: dir.path.clone(),
                reason: "it is a symlink in the target where the snapshot has a directory; \
                         remove it, or restore with --to into an empty directory"
                    .to_owned(),
            });
        }
        Ok(())
    }

    fn lay_out(&self, targets: &[RestoreTarget]) -> Result<()> {
        // Parents come before children: the walk pushes a directory after reading its
        // parent, and pops depth first, so sorting by path puts every parent first.
        let mut order: Vec<&PlannedDir> = self.dirs.iter().collect();
        order.sort_by(|a, b| a.path.cmp(&b.path));
        for dir in order {
            if dir.node.is_none() {
                fs::create_dir_all(&dir.path).context("creating", &dir.path)?;
            } else {
                match fs::symlink_metadata(&dir.path) {
                    Ok(metadata) if metadata.is_dir() => {}
                    Ok(_) => {
                        fs::remove_file(&dir.path).context("replacing", &dir.path)?;
                        fs::create_dir(&dir.path).context("creating", &dir.path)?;
                    }
                    Err(error) if error.kind() == io::ErrorKind::NotFound => {
                        fs::create_dir(&dir.path).context("creating", &dir.path)?;
                    }
                    Err(error) => return Err(Error::io("reading", &dir.path, error)),
                }
            }
            if let Some(excludes) = targets
                .get(dir.target)
                .and_then(|target| target.replace.as_ref())
            {
                remove_extra_entries(dir, excludes)?;
            }
        }
        self.files.par_iter().try_for_each(|file| -> Result<()> {
            remove_existing(&file.path)?;
            let created = OpenOptions::new()
                .write(true)
                .create_new(true)
                .custom_flags(libc::O_NOFOLLOW)
                .mode(0o600)
                .open(&file.path)
                .context("creating", &file.path)?;
            created
                .set_len(file.node.size)
                .context("sizing", &file.path)
        })?;
        for link in &self.symlinks {
            remove_existing(&link.path)?;
            let target = OsStr::from_bytes(link.node.target.as_deref().unwrap_or_default());
            std::os::unix::fs::symlink(target, &link.path)
                .context("creating the symlink", &link.path)?;
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
        let mut total = 0u64;
        let mut locations: HashMap<ObjectId, Location> = HashMap::new();
        {
            let catalog = store::lock(repository.catalog());
            for (index, file) in self.files.iter().enumerate() {
                let mut offset = 0u64;
                for id in &file.node.content {
                    if !locations.contains_key(id) {
                        match catalog.locate(id)? {
                            Some(location) => {
                                locations.insert(*id, location);
                            }
                            None => {
                                store::lock(failures).push((
                                    index,
                                    format!(
                                        "chunk {} is missing from the repository",
                                        id.short(12)
                                    ),
                                ));
                                break;
                            }
                        }
                    }
                    uses.entry(*id).or_default().push((index, offset));
                    offset += u64::from(locations[id].entry.raw_length);
                }
                total += file.node.size;
            }
        }
        progress.begin("restoring", Some(total));
        let mut by_pack: HashMap<&str, Vec<(&Location, &Positions)>> = HashMap::new();
        for (id, positions) in &uses {
            let location = &locations[id];
            by_pack
                .entry(location.pack.as_str())
                .or_default()
                .push((location, positions));
        }
        by_pack
            .into_par_iter()
            .try_for_each(|(pack, mut blobs)| -> Result<()> {
                blobs.sort_by_key(|(location, _)| location.entry.offset);
                let mut open_files: HashMap<usize, File> = HashMap::new();
                for (location, positions) in blobs {
                    let data = repository
                        .backend()
                        .get_range(pack, location.entry.offset, location.entry.length as usize)
                        .map_err(|error| error.to_string())
                        .and_then(|stored| decode_blob(&location.entry, stored));
                    let data = match data {
                        Ok(data) => data,
                        Err(detail) => {
                            let message = format!(
                                "chunk {} in pack {}: {detail}",
                                location.entry.id.short(12),
                                repository.backend().describe(pack).display()
                            );
                            store::lock(failures).extend(
                                positions.iter().map(|(index, _)| (*index, message.clone())),
                            );
                            continue;
                        }
                    };
                    let zero = data.iter().all(|byte| *byte == 0);
                    for (index, offset) in positions {
                        progress.add_bytes(data.len() as u64);
                        if zero {
                            continue;
                        }
                        let path = &self.files[*index].path;
                        let file = match open_files.entry(*index) {
                            std::collections::hash_map::Entry::Occupied(entry) => entry.into_mut(),
                            std::collections::hash_map::Entry::Vacant(entry) => entry.insert(
                                OpenOptions::new()
                                    .write(true)
                                    .custom_flags(libc::O_NOFOLLOW)
                                    .open(path)
                                    .context("opening", path)?,
                            ),
                        };
                        file.write_all_at(&data, *offset).context("writing", path)?;
                    }
                }
                Ok(())
            })?;
        progress.finish();
        Ok(())
    }

    fn finish_links(&self) -> Result<()> {
        for (existing, link) in &self.hard_links {
            remove_existing(link)?;
            fs::hard_link(existing, link).context("linking", link)?;
        }
        Ok(())
    }

    fn apply_metadata(&self) -> Result<()> {
        self.files
            .par_iter()
            .try_for_each(|file| set_metadata(&file.path, &file.node))?;
        for link in &self.symlinks {
            // Ownership of a symlink matters only to root; times are best kept too.
            let _ = std::os::unix::fs::lchown(&link.path, Some(link.node.uid), Some(link.node.gid));
            let mtime = filetime::FileTime::from_unix_time(link.node.mtime, link.node.mtime_nsec);
            filetime::set_symlink_file_times(&link.path, mtime, mtime)
                .context("setting the times of", &link.path)?;
        }
        let mut dirs: Vec<&PlannedDir> = self.dirs.iter().collect();
        dirs.sort_by(|a, b| b.path.cmp(&a.path));
        for dir in dirs {
            if let Some(node) = &dir.node {
                set_metadata(&dir.path, node)?;
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

fn set_metadata(path: &Path, node: &Node) -> Result<()> {
    // Changing the owner needs privileges a normal user lacks; the files are then
    // theirs, as with `cp` or `tar` run by that user.
    let _ = std::os::unix::fs::chown(path, Some(node.uid), Some(node.gid));
    fs::set_permissions(path, fs::Permissions::from_mode(node.mode))
        .context("setting the mode of", path)?;
    let mtime = filetime::FileTime::from_unix_time(node.mtime, node.mtime_nsec);
    filetime::set_file_times(path, mtime, mtime).context("setting the times of", path)
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
