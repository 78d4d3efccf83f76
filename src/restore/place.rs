//! Laying a restore down through directory handles.
//!
//! Nothing here resolves a path of the target twice. Each target's root is opened
//! once; every directory below it is opened relative to its parent's handle with
//! `O_NOFOLLOW`, and every create, rename, removal, chmod, chown and utimes is made
//! relative to a handle or through an open file. A directory swapped for a symlink
//! while a restore runs is then met as a symlink (and refused or replaced), never
//! followed: the restore cannot be led outside its target.
//!
//! Files are **staged**: written in full into a private directory in the target's
//! root ([`Staging`]), then renamed over their places ([`commit`]). A rename replaces
//! a file atomically, so a restore that fails or is killed leaves every file either as
//! it was or as the snapshot holds it, never half written.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use rustix::fs::{self as rfs, AtFlags, FileType, Mode, OFlags, Timespec, Timestamps};
use rustix::io::Errno;

use crate::element::mount::Excludes;
use crate::error::{Error, Result};
use crate::tree::Node;

use super::plan::{Entry, MAX_DEPTH, Plan};

/// How the names of a restore's staging directories start. A backup leaves such
/// entries of an element's root out, and a snapshot may not hold one there.
pub(crate) const STAGING_PREFIX: &str = ".envsnap-restore-";

const DIR_FLAGS: OFlags = OFlags::RDONLY.union(OFlags::DIRECTORY).union(OFlags::NOFOLLOW).union(OFlags::CLOEXEC);

/// A rustix result as one of ours, naming what was being done to which path.
pub(super) fn at<T>(result: rustix::io::Result<T>, action: &'static str, path: &Path) -> Result<T> {
    result.map_err(|errno| Error::io(action, path, io::Error::from(errno)))
}

fn os(name: &[u8]) -> &OsStr {
    OsStr::from_bytes(name)
}

/// Opens the directory `name` of `parent`, never following a symlink.
fn open_dir(parent: BorrowedFd<'_>, name: &OsStr) -> rustix::io::Result<OwnedFd> {
    rfs::openat(parent, name, DIR_FLAGS, Mode::empty())
}

/// Opens a target's root. An element's root restored in place may be a symlink the
/// user chose (a mount on another disk); one restored with `--to` is opened with
/// `O_NOFOLLOW`, since a symlink there could only have been planted. `create` makes
/// the directory (and its parents) first; without it, a root that does not exist is
/// `None`.
pub(super) fn open_root(path: &Path, in_place: bool, create: bool) -> Result<Option<OwnedFd>> {
    if create {
        std::fs::create_dir_all(path).map_err(|error| Error::io("creating", path, error))?;
    }
    let flags = if in_place { DIR_FLAGS.difference(OFlags::NOFOLLOW) } else { DIR_FLAGS };
    match rfs::open(path, flags, Mode::empty()) {
        Ok(fd) => Ok(Some(fd)),
        Err(Errno::NOENT) if !create => Ok(None),
        Err(Errno::LOOP | Errno::NOTDIR) if !in_place => Err(planted_symlink(path)),
        Err(errno) => Err(Error::io("opening", path, errno.into())),
    }
}

fn planted_symlink(path: &Path) -> Error {
    Error::UnsafePath {
        path: path.to_owned(),
        reason: "it is a symlink in the target where the snapshot has a directory; \
                 remove it, or restore with --to into an empty directory"
            .to_owned(),
    }
}

/// Refuses, before anything is written, a restore with `--to` whose target holds a
/// symlink where the snapshot has a directory: the user pointed the restore at a
/// directory holding it, so it is refused rather than silently replaced. (In place,
/// such a symlink is simply replaced by the directory; the safety snapshot keeps it.)
pub(super) fn refuse_planted_symlinks(plan: &Plan, dir: usize, fd: BorrowedFd<'_>, depth: usize) -> Result<()> {
    for entry in &plan.dirs[dir].entries {
        let Entry::Dir(child) = *entry else { continue };
        let name = os(plan.name(*entry));
        let path = &plan.dirs[child].path;
        match rfs::statat(fd, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(stat) if FileType::from_raw_mode(stat.st_mode) == FileType::Symlink => {
                return Err(planted_symlink(path));
            }
            Ok(stat) if FileType::from_raw_mode(stat.st_mode) == FileType::Directory && depth < MAX_DEPTH => {
                let child_fd = at(open_dir(fd, name), "opening", path)?;
                refuse_planted_symlinks(plan, child, child_fd.as_fd(), depth + 1)?;
            }
            Ok(_) | Err(Errno::NOENT) => {}
            Err(errno) => return Err(Error::io("reading", path, errno.into())),
        }
    }
    Ok(())
}

/// A private directory in a target's root where files are written before they are
/// renamed into place. Dropping it removes it with whatever it still holds.
pub(super) struct Staging {
    root: OwnedFd,
    dir: OwnedFd,
    name: OsString,
    path: PathBuf,
}

static STAGINGS: AtomicU64 = AtomicU64::new(0);

impl Staging {
    /// Creates a staging directory (mode 0700) in the root `root` at `root_path`.
    pub fn create(root: OwnedFd, root_path: &Path) -> Result<Staging> {
        let name = OsString::from(format!(
            "{STAGING_PREFIX}{}-{}",
            std::process::id(),
            STAGINGS.fetch_add(1, Ordering::Relaxed)
        ));
        let path = root_path.join(&name);
        // A leftover of this process id from a restore killed long ago goes first.
        remove_tree(root.as_fd(), &name, &path, 0)?;
        at(rfs::mkdirat(&root, &name, Mode::from_raw_mode(0o700)), "creating", &path)?;
        let dir = at(open_dir(root.as_fd(), &name), "opening", &path)?;
        Ok(Staging { root, dir, name, path })
    }

    /// The target's root.
    pub fn root(&self) -> BorrowedFd<'_> {
        self.root.as_fd()
    }

    /// Creates (or opens, when another task created it) a staged file for writing.
    pub fn file(&self, staged: &str) -> Result<File> {
        let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let fd = at(rfs::openat(&self.dir, staged, flags, Mode::from_raw_mode(0o600)), "creating", &self.path)?;
        Ok(File::from(fd))
    }

    /// Stages a further name (a hard link) of the staged file `staged`.
    pub fn link(&self, staged: &str, link: &str) -> Result<()> {
        at(rfs::linkat(&self.dir, staged, &self.dir, link, AtFlags::empty()), "linking in", &self.path)
    }

    /// Stages a symlink with `node`'s target, owner and times.
    pub fn symlink(&self, staged: &str, node: &Node) -> Result<()> {
        let target = os(node.target.as_deref().unwrap_or_default());
        at(rfs::symlinkat(target, &self.dir, staged), "creating a symlink in", &self.path)?;
        // Ownership of a symlink matters only to root; its time is kept like any other.
        let _ = rfs::chownat(
            &self.dir,
            staged,
            Some(rfs::Uid::from_raw(node.uid)),
            Some(rfs::Gid::from_raw(node.gid)),
            AtFlags::SYMLINK_NOFOLLOW,
        );
        let time = timespec(node);
        let times = Timestamps { last_access: time, last_modification: time };
        at(rfs::utimensat(&self.dir, staged, &times, AtFlags::SYMLINK_NOFOLLOW), "setting the times in", &self.path)
    }

    fn is(&self, name: &[u8]) -> bool {
        name == self.name.as_bytes()
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        let _ = remove_tree(self.root.as_fd(), &self.name, &self.path, 0);
    }
}

/// The name a planned entry is staged under.
pub(super) fn staged_name(entry: Entry) -> String {
    match entry {
        Entry::Dir(index) => format!("d{index}"),
        Entry::File(index) => format!("f{index}"),
        Entry::Link(index) => format!("l{index}"),
        Entry::Symlink(index) => format!("s{index}"),
    }
}

fn timespec(node: &Node) -> Timespec {
    Timespec { tv_sec: node.mtime, tv_nsec: i64::from(node.mtime_nsec) }
}

/// What to commit of one target.
pub(super) struct Commit<'p> {
    pub plan: &'p Plan,
    pub staging: &'p Staging,
    /// What a restore in place keeps of the entries the snapshot lacks; `None` keeps
    /// them all (a restore into another directory).
    pub replace: Option<&'p Excludes>,
    /// Whether an entry was staged in full; one that was not keeps its place as it is.
    pub staged: &'p dyn Fn(Entry) -> bool,
}

impl Commit<'_> {
    /// Moves the staged entries of the target whose root is `root` into place.
    pub fn run(&self, root: usize) -> Result<()> {
        self.dir(root, self.staging.root(), 0)
    }

    fn dir(&self, index: usize, fd: BorrowedFd<'_>, depth: usize) -> Result<()> {
        let dir = &self.plan.dirs[index];
        if let Some(excludes) = self.replace {
            self.remove_extra_entries(index, fd, excludes, depth)?;
        }
        for entry in &dir.entries {
            let name = os(self.plan.name(*entry));
            match *entry {
                Entry::Dir(child) => {
                    let path = &self.plan.dirs[child].path;
                    let child_fd = self.make_dir(fd, name, path, depth)?;
                    self.dir(child, child_fd.as_fd(), depth + 1)?;
                    if let Some(node) = &self.plan.dirs[child].node {
                        set_dir_metadata(child_fd.as_fd(), node, path)?;
                    }
                }
                entry if (self.staged)(entry) => self.place(entry, fd, name, depth)?,
                _ => {}
            }
        }
        Ok(())
    }

    /// Opens the directory `name` of `parent`, making one where there is none or where
    /// something else stands (a restore with `--to` refuses a symlink there).
    fn make_dir(&self, parent: BorrowedFd<'_>, name: &OsStr, path: &Path, depth: usize) -> Result<OwnedFd> {
        match rfs::statat(parent, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(stat) => match FileType::from_raw_mode(stat.st_mode) {
                FileType::Directory => {}
                FileType::Symlink if self.replace.is_none() => return Err(planted_symlink(path)),
                _ => {
                    remove_tree(parent, name, path, depth)?;
                    at(rfs::mkdirat(parent, name, Mode::from_raw_mode(0o700)), "creating", path)?;
                }
            },
            Err(Errno::NOENT) => at(rfs::mkdirat(parent, name, Mode::from_raw_mode(0o700)), "creating", path)?,
            Err(errno) => return Err(Error::io("reading", path, errno.into())),
        }
        // Swapped for a symlink since it was looked at: `O_NOFOLLOW` refuses it here.
        match open_dir(parent, name) {
            Ok(fd) => Ok(fd),
            Err(Errno::LOOP | Errno::NOTDIR) => Err(planted_symlink(path)),
            Err(errno) => Err(Error::io("opening", path, errno.into())),
        }
    }

    /// Renames a staged entry over its place, replacing a directory that stands there.
    fn place(&self, entry: Entry, fd: BorrowedFd<'_>, name: &OsStr, depth: usize) -> Result<()> {
        let staged = staged_name(entry);
        let path = match entry {
            Entry::File(index) => &self.plan.files[index].path,
            Entry::Link(index) => &self.plan.links[index].path,
            Entry::Symlink(index) => &self.plan.symlinks[index].path,
            Entry::Dir(index) => &self.plan.dirs[index].path,
        };
        match rename_over(self.staging.dir.as_fd(), &staged, fd, name, path, depth)? {
            // Below a mount point of another file system: copy beside, then rename.
            Err(Errno::XDEV) => self.copy_into_place(entry, &staged, fd, name, path, depth),
            result => at(result, "moving into place", path),
        }
    }

    fn copy_into_place(
        &self,
        entry: Entry,
        staged: &str,
        fd: BorrowedFd<'_>,
        name: &OsStr,
        path: &Path,
        depth: usize,
    ) -> Result<()> {
        let temporary = format!("{STAGING_PREFIX}{}-{staged}", std::process::id());
        let _ = rfs::unlinkat(fd, temporary.as_str(), AtFlags::empty());
        match entry {
            Entry::Symlink(index) => {
                let node = &self.plan.symlinks[index].node;
                let target = os(node.target.as_deref().unwrap_or_default());
                at(rfs::symlinkat(target, fd, temporary.as_str()), "creating the symlink", path)?;
            }
            _ => {
                let node = match entry {
                    Entry::Link(index) => &self.plan.files[self.plan.links[index].file].node,
                    Entry::File(index) => &self.plan.files[index].node,
                    _ => return Err(Error::io("moving into place", path, io::ErrorKind::Unsupported.into())),
                };
                let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
                let mut from =
                    File::from(at(rfs::openat(&self.staging.dir, staged, flags, Mode::empty()), "reading", path)?);
                let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
                let mut to = File::from(at(
                    rfs::openat(fd, temporary.as_str(), flags, Mode::from_raw_mode(0o600)),
                    "creating",
                    path,
                )?);
                let copied = io::copy(&mut from, &mut to).map_err(|error| Error::io("writing", path, error));
                let finished = copied.and_then(|_| super::fill::finish_file(&to, node, path));
                if let Err(error) = finished {
                    let _ = rfs::unlinkat(fd, temporary.as_str(), AtFlags::empty());
                    return Err(error);
                }
            }
        }
        let renamed =
            rename_over(fd, &temporary, fd, name, path, depth).and_then(|result| at(result, "moving into place", path));
        if renamed.is_err() {
            let _ = rfs::unlinkat(fd, temporary.as_str(), AtFlags::empty());
        }
        renamed
    }

    /// Removes what a directory restored in place holds and the snapshot lacks, except
    /// excluded entries (never captured) and the restore's own staging directory.
    fn remove_extra_entries(&self, index: usize, fd: BorrowedFd<'_>, excludes: &Excludes, depth: usize) -> Result<()> {
        let dir = &self.plan.dirs[index];
        for (name, is_dir) in list(fd, &dir.path)? {
            if dir.names.contains(name.as_bytes()) || (dir.node.is_none() && self.staging.is(name.as_bytes())) {
                continue;
            }
            if excludes.is_excluded(&dir.relative.join(&name), is_dir) {
                continue;
            }
            remove_tree(fd, &name, &dir.path.join(&name), depth)?;
        }
        Ok(())
    }
}

/// Renames `from` of `from_dir` over `name` of `dir`, first removing a directory that
/// stands there (a rename replaces anything else atomically). `Err` is a failed
/// removal; the rename's own outcome is left to the caller, who may answer `EXDEV`.
fn rename_over(
    from_dir: BorrowedFd<'_>,
    from: &str,
    dir: BorrowedFd<'_>,
    name: &OsStr,
    path: &Path,
    depth: usize,
) -> Result<rustix::io::Result<()>> {
    match rfs::renameat(from_dir, from, dir, name) {
        Err(Errno::ISDIR | Errno::NOTEMPTY | Errno::EXIST) => {
            remove_tree(dir, name, path, depth)?;
            Ok(rfs::renameat(from_dir, from, dir, name))
        }
        result => Ok(result),
    }
}

/// Gives a directory its recorded owner, mode and times, through its handle.
fn set_dir_metadata(fd: BorrowedFd<'_>, node: &Node, path: &Path) -> Result<()> {
    // Changing the owner needs privileges a normal user lacks; the files are then
    // theirs, as with `cp` or `tar` run by that user.
    let _ = rfs::fchown(fd, Some(rfs::Uid::from_raw(node.uid)), Some(rfs::Gid::from_raw(node.gid)));
    at(rfs::fchmod(fd, Mode::from_raw_mode(node.mode & 0o7777)), "setting the mode of", path)?;
    let time = timespec(node);
    at(rfs::futimens(fd, &Timestamps { last_access: time, last_modification: time }), "setting the times of", path)
}

/// The entries of a directory, with whether each is a directory.
fn list(fd: BorrowedFd<'_>, path: &Path) -> Result<Vec<(OsString, bool)>> {
    let mut names = Vec::new();
    let dir = at(rfs::Dir::read_from(fd), "reading the directory", path)?;
    for entry in dir {
        let entry = at(entry, "reading the directory", path)?;
        let name = entry.file_name().to_bytes();
        if name == b"." || name == b".." {
            continue;
        }
        names.push((OsStr::from_bytes(name).to_owned(), entry.file_type() == FileType::Directory));
    }
    Ok(names)
}

/// Removes `name` of `parent` and, for a directory, all it holds; never follows a
/// symlink. Nothing there is not an error.
pub(super) fn remove_tree(parent: BorrowedFd<'_>, name: &OsStr, path: &Path, depth: usize) -> Result<()> {
    let stat = match rfs::statat(parent, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(stat) => stat,
        Err(Errno::NOENT) => return Ok(()),
        Err(errno) => return Err(Error::io("reading", path, errno.into())),
    };
    if FileType::from_raw_mode(stat.st_mode) != FileType::Directory {
        return match rfs::unlinkat(parent, name, AtFlags::empty()) {
            Ok(()) | Err(Errno::NOENT) => Ok(()),
            Err(errno) => Err(Error::io("replacing", path, errno.into())),
        };
    }
    if depth > MAX_DEPTH {
        return Err(Error::io("replacing", path, io::Error::other(format!("it is more than {MAX_DEPTH} levels deep"))));
    }
    let fd = match open_dir(parent, name) {
        Ok(fd) => fd,
        Err(Errno::NOENT) => return Ok(()),
        Err(errno) => return Err(Error::io("replacing", path, errno.into())),
    };
    // A directory without write permission (restored read-only) is one its owner
    // can still empty.
    if stat.st_mode & 0o300 != 0o300 {
        let _ = rfs::fchmod(&fd, Mode::from_raw_mode((stat.st_mode & 0o7777) | 0o700));
    }
    for (child, _) in list(fd.as_fd(), path)? {
        remove_tree(fd.as_fd(), &child, &path.join(&child), depth + 1)?;
    }
    match rfs::unlinkat(parent, name, AtFlags::REMOVEDIR) {
        Ok(()) | Err(Errno::NOENT) => Ok(()),
        Err(errno) => Err(Error::io("replacing", path, errno.into())),
    }
}
