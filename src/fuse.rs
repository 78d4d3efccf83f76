//! The read-only FUSE file system over [`crate::view`]: the only module that knows fuser.
//!
//! [`mount`] checks the machine and the mount point, mounts a [`View`] and serves it on
//! several threads until [`Mounted::unmount`] or an outside `fusermount3 -u`. fuser is
//! used without libfuse: as root it mounts with mount(2), otherwise through the
//! `fusermount3` program (Debian's `fuse3` package).
//!
//! # Decisions
//!
//! - **Read-only, twice.** The file system is mounted `ro`, so the kernel refuses every
//!   write with `EROFS` before it reaches envsnap; every writing operation answers
//!   `EROFS` too, should one get through.
//! - **Built for data that never changes.** What a snapshot holds is immutable: entries
//!   and attributes are cached by the kernel for a day, files open with
//!   `FOPEN_KEEP_CACHE` (pages stay cached from one open to the next) and directories
//!   with `FOPEN_CACHE_DIR`. Only the folders that follow the snapshot list (`envs/`,
//!   `ids/`, `commits/` and those below them down to the snapshot folders) use a
//!   one-second timeout, so that new snapshots, and a new `latest`, show up.
//! - **Few, large requests.** Reads of up to 1 MiB (`max_read`, and the kernel's
//!   largest readahead), an `st_blksize` of 1 MiB so that `cp` and friends read 1 MiB at
//!   a time, and `READDIRPLUS`, so that a listing brings every entry's attributes with
//!   it and `ls -l` or `find` cost no lookup per entry. Files are opened by the kernel
//!   alone (`FUSE_NO_OPEN_SUPPORT`): every read names its inode, so an open and a
//!   release per file would be two round trips for nothing. What the view decodes
//!   ahead of a reader is stored into the kernel's page cache (`FUSE_NOTIFY_STORE`), so
//!   that `cp -r` or `tar` find the next files, and the next chunks of a large file,
//!   there without asking: copying many small files out costs one listing per
//!   directory and little else.
//! - **No dead mounts.** Where `fusermount3` can (always as root; for others when
//!   `/etc/fuse.conf` has `user_allow_other`), the mount is made with `auto_unmount`:
//!   `fusermount3` stays behind and unmounts as soon as envsnap ends, however it ends,
//!   even by `kill -9`. An unmount of a busy mount point falls back to a lazy one, which
//!   detaches it at once.
//! - **No permission checks of its own.** Without `default_permissions` the kernel lets
//!   the mounting user (and root) read every file, whatever owner and mode were captured:
//!   they may read the whole repository anyway. Others cannot enter the mount at all.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fuser::{
    AccessFlags, Config, Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo, InitFlags,
    KernelConfig, LockOwner, MountOption, OpenAccMode, OpenFlags, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory,
    ReplyDirectoryPlus, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite, Request, SessionACL,
    SessionUnmounter, TimeOrNow, WriteFlags,
};

use crate::error::{Error, Result};
use crate::store;
use crate::view::{Attributes, EntryKind, Listing, Timestamp, View, ViewError};

/// How long the kernel keeps what never changes: entries and attributes of snapshots.
const IMMUTABLE_TTL: Duration = Duration::from_secs(24 * 60 * 60);

/// How long it keeps entries of the folders that follow the snapshot list.
const LIVE_TTL: Duration = Duration::from_secs(1);

/// The largest read request, and `st_blksize`: 1 MiB, the kernel's own limit
/// (`fs.fuse.max_pages_limit`, 256 pages) and the store's average chunk.
const IO_SIZE: u32 = 1 << 20;

/// Readahead requests the kernel may have in flight at once.
const MAX_BACKGROUND: u16 = 64;

/// Mounts `view` at `mount_point` and serves it on threads of its own. `ended` is
/// called with the outcome when the file system is unmounted, from here or outside.
pub fn mount(view: View, mount_point: &Path, ended: impl FnOnce(io::Result<()>) + Send + 'static) -> Result<Mounted> {
    check_fuse()?;
    let mount_point = check_mount_point(mount_point)?;
    let threads = std::thread::available_parallelism().map_or(4, |n| (n.get() * 2).clamp(4, 16));
    let filesystem = ViewFilesystem::new(view);
    let shared = filesystem.shared.clone();
    let options = |auto_unmount: bool| {
        let mut config = Config::default();
        config.mount_options = vec![
            MountOption::RO,
            MountOption::NoDev,
            MountOption::NoSuid,
            MountOption::NoAtime,
            MountOption::FSName("envsnap".to_owned()),
            MountOption::Subtype("envsnap".to_owned()),
            MountOption::CUSTOM(format!("max_read={IO_SIZE}")),
        ];
        if auto_unmount {
            config.mount_options.push(MountOption::AutoUnmount);
            // fusermount3 accepts auto_unmount only with allow_other (or allow_root,
            // which fuser grants through allow_other and then filters itself).
            config.acl = SessionACL::RootAndOwner;
        }
        config.n_threads = Some(threads);
        config.clone_fd = true;
        config
    };
    let problem = |error: io::Error| mount_problem(&mount_point, &error);
    let (mut session, auto_unmount) = match fuser::Session::new(filesystem.clone(), &mount_point, &options(true)) {
        Ok(session) => (session, true),
        // No fusermount3 (root mounts without it), or `user_allow_other` not set: a
        // plain mount, unmounted by envsnap itself.
        Err(_) => match fuser::Session::new(filesystem, &mount_point, &options(false)) {
            Ok(session) => (session, false),
            Err(error) => return Err(problem(error)),
        },
    };
    let unmounter = session.unmount_callable();
    // What the view decodes ahead goes straight into the kernel's page cache: the
    // reads that follow (the next files of a `cp -r`, the next chunks of a large file)
    // are then served by the kernel alone. An inode the kernel has not met yet is
    // refused, harmlessly: it is read the usual way.
    let notifier = session.notifier();
    shared.view.on_prefetched(Box::new(move |ino, offset, bytes| {
        let _ = notifier.store(INodeNo(ino), offset, bytes);
    }));
    std::thread::Builder::new()
        .name("envsnap-fuse".to_owned())
        .spawn(move || ended(session.run()))
        .map_err(|error| Error::io("starting", "the FUSE session", error))?;
    Ok(Mounted { unmounter, mount_point, auto_unmount })
}

/// A mounted view. Dropping it unmounts too.
#[derive(Debug)]
pub struct Mounted {
    unmounter: SessionUnmounter,
    mount_point: PathBuf,
    auto_unmount: bool,
}

impl Mounted {
    /// Where it is mounted.
    pub fn mount_point(&self) -> &Path {
        &self.mount_point
    }

    /// Whether `fusermount3` unmounts it should envsnap die without doing so.
    pub fn auto_unmount(&self) -> bool {
        self.auto_unmount
    }

    /// Unmounts; lazily (detached now, gone once nothing uses it) when it is busy. The
    /// session ends, and `ended` is called, once the kernel lets go of it.
    pub fn unmount(&mut self) -> Result<()> {
        // fusermount3's auto_unmount acts only once envsnap has died (the mount then
        // answers ENOTCONN), so a living envsnap unmounts by itself; so does root,
        // whose mount(2) fuser would undo with a plain umount(2) that fails when busy.
        let unmounted = self.run_unmount(false) || self.run_unmount(true);
        // What fuser holds is let go of too: the auto_unmount helper, or, for a user
        // mount without a helper, `fusermount3 -u -z` run by fuser itself.
        let released = self.unmounter.unmount();
        match (unmounted, released) {
            (true, _) | (false, Ok(())) => Ok(()),
            (false, Err(error)) => Err(Error::MountPoint {
                path: self.mount_point.clone(),
                problem: format!(
                    "it could not be unmounted ({error}); run `fusermount3 -u -z {}` (or `umount -l` as root)",
                    self.mount_point.display()
                ),
            }),
        }
    }

    /// Runs `fusermount3 -u` (or, without it, `umount`), lazily when `lazy`.
    fn run_unmount(&self, lazy: bool) -> bool {
        let (program, flags): (&str, &[&str]) = match (find_program("fusermount3").is_some(), lazy) {
            (true, false) => ("fusermount3", &["-u", "-q"]),
            (true, true) => ("fusermount3", &["-u", "-q", "-z"]),
            (false, false) => ("umount", &[]),
            (false, true) => ("umount", &["-l"]),
        };
        Command::new(program)
            .args(flags)
            .arg("--")
            .arg(&self.mount_point)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success())
    }
}

/// Fails with what to install when this machine cannot mount FUSE file systems.
pub fn check_fuse() -> Result<()> {
    let unavailable = |detail: &str| Err(Error::FuseUnavailable { detail: detail.to_owned() });
    if !Path::new("/dev/fuse").exists() {
        return unavailable("/dev/fuse does not exist (in a container, start it with `--device /dev/fuse`)");
    }
    let root = fs::metadata("/proc/self").is_ok_and(|metadata| metadata.uid() == 0);
    if !root && find_program("fusermount3").is_none() && find_program("fusermount").is_none() {
        return unavailable("the fusermount3 program is missing, and only root can mount without it");
    }
    Ok(())
}

/// Checks that `path` is a directory where nothing is mounted; returns it absolute.
pub fn check_mount_point(path: &Path) -> Result<PathBuf> {
    let problem = |problem: String| Error::MountPoint { path: path.to_owned(), problem };
    match fs::metadata(path) {
        Ok(metadata) if metadata.is_dir() => {}
        Ok(_) => return Err(problem("it is not a directory; give an empty directory".to_owned())),
        Err(error) if error.kind() == io::ErrorKind::NotFound => {
            return Err(problem(format!("it does not exist; create it with `mkdir -p {}`", path.display())));
        }
        Err(error) if error.raw_os_error() == Some(libc::ENOTCONN) => {
            return Err(problem(format!(
                "a FUSE file system whose program has ended is still mounted there; \
                 unmount it with `fusermount3 -u {}`",
                path.display()
            )));
        }
        Err(error) => return Err(problem(error.to_string())),
    }
    let absolute = path.canonicalize().map_err(|error| problem(error.to_string()))?;
    if let Some(kind) = mounted_at(&absolute) {
        return Err(problem(format!(
            "it is busy: a {kind} file system is mounted there already; unmount it first (`umount {}`) \
             or choose another directory",
            absolute.display()
        )));
    }
    Ok(absolute)
}

/// The type of the file system mounted exactly at `path`, if one is.
fn mounted_at(path: &Path) -> Option<String> {
    let table = fs::read_to_string("/proc/self/mountinfo").ok()?;
    // Fields: id parent major:minor root mount-point options … - type source super-options
    table.lines().rev().find_map(|line| {
        let mut fields = line.split(' ');
        let point = fields.nth(4)?;
        if unescape_mount_path(point) != path.as_os_str().as_bytes() {
            return None;
        }
        let mut rest = fields.skip_while(|field| *field != "-");
        rest.next();
        Some(rest.next().unwrap_or("file system").to_owned())
    })
}

/// /proc/self/mountinfo writes space, tab, newline and backslash as `\ooo`.
fn unescape_mount_path(text: &str) -> Vec<u8> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        let octal = bytes.get(index + 1..index + 4).filter(|digits| digits.iter().all(|d| (b'0'..=b'7').contains(d)));
        match (bytes[index], octal) {
            (b'\\', Some(digits)) => {
                out.push(digits.iter().fold(0u8, |value, digit| value.wrapping_mul(8) + (digit - b'0')));
                index += 4;
            }
            (byte, _) => {
                out.push(byte);
                index += 1;
            }
        }
    }
    out
}

fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|dir| dir.join(name)).find(|candidate| candidate.is_file())
}

fn mount_problem(mount_point: &Path, error: &io::Error) -> Error {
    let text = error.to_string();
    let problem = if error.raw_os_error() == Some(libc::EBUSY) || text.contains("busy") {
        format!("it is busy ({text}); choose another directory")
    } else if text.trim().is_empty() {
        "mounting failed; check that the fuse3 package is installed and /dev/fuse is usable".to_owned()
    } else {
        text.trim().to_owned()
    };
    Error::MountPoint { path: mount_point.to_owned(), problem }
}

/// The view as fuser's [`Filesystem`]. Cheap to clone: a first mount attempt that
/// fails must leave it for the next.
#[derive(Clone)]
struct ViewFilesystem {
    shared: Arc<Shared>,
}

struct Shared {
    view: View,
    dirs: Mutex<HashMap<u64, Arc<Listing>>>,
    next_handle: AtomicU64,
    /// Whether the kernel opens files without asking (`FUSE_NO_OPEN_SUPPORT`).
    no_open: AtomicBool,
}

impl ViewFilesystem {
    fn new(view: View) -> Self {
        ViewFilesystem {
            shared: Arc::new(Shared {
                view,
                dirs: Mutex::new(HashMap::new()),
                next_handle: AtomicU64::new(1),
                no_open: AtomicBool::new(false),
            }),
        }
    }

    fn view(&self) -> &View {
        &self.shared.view
    }

    fn handle(&self) -> u64 {
        self.shared.next_handle.fetch_add(1, Ordering::Relaxed)
    }

    /// How long the kernel may keep an entry found in directory `parent`.
    fn entry_ttl(&self, parent: INodeNo) -> Duration {
        match self.view().attributes(parent.0) {
            Ok(attributes) if attributes.immutable => IMMUTABLE_TTL,
            _ => LIVE_TTL,
        }
    }
}

fn attribute_ttl(attributes: &Attributes) -> Duration {
    if attributes.immutable { IMMUTABLE_TTL } else { LIVE_TTL }
}

fn errno(error: &ViewError) -> Errno {
    match error {
        ViewError::NotFound => Errno::ENOENT,
        ViewError::NotADirectory => Errno::ENOTDIR,
        ViewError::IsADirectory => Errno::EISDIR,
        ViewError::WrongKind => Errno::EINVAL,
        ViewError::Damaged(_) => Errno::EIO,
        ViewError::Exhausted { .. } => Errno::ENOMEM,
    }
}

fn system_time(time: Timestamp) -> SystemTime {
    let nanoseconds = Duration::from_nanos(u64::from(time.nanoseconds.min(999_999_999)));
    match u64::try_from(time.seconds) {
        Ok(seconds) => UNIX_EPOCH + Duration::from_secs(seconds) + nanoseconds,
        Err(_) => UNIX_EPOCH - Duration::from_secs(time.seconds.unsigned_abs()) + nanoseconds,
    }
}

fn file_type(kind: EntryKind) -> FileType {
    match kind {
        EntryKind::Directory => FileType::Directory,
        EntryKind::File => FileType::RegularFile,
        EntryKind::Symlink => FileType::Symlink,
    }
}

fn file_attr(attributes: &Attributes) -> FileAttr {
    let mtime = system_time(attributes.mtime);
    FileAttr {
        ino: INodeNo(attributes.ino),
        size: attributes.size,
        blocks: attributes.size.div_ceil(512),
        atime: mtime,
        mtime,
        ctime: system_time(attributes.ctime),
        crtime: mtime,
        kind: file_type(attributes.kind),
        perm: (attributes.mode & 0o7777) as u16,
        nlink: u32::try_from(attributes.links).unwrap_or(u32::MAX),
        uid: attributes.uid,
        gid: attributes.gid,
        rdev: 0,
        blksize: IO_SIZE,
        flags: 0,
    }
}

const GENERATION: Generation = Generation(0);

impl Filesystem for ViewFilesystem {
    fn init(&mut self, _request: &Request, config: &mut KernelConfig) -> io::Result<()> {
        // Each is asked for alone, so that a kernel without one still gets the others.
        for capability in
            [InitFlags::FUSE_DO_READDIRPLUS, InitFlags::FUSE_PARALLEL_DIROPS, InitFlags::FUSE_CACHE_SYMLINKS]
        {
            let _ = config.add_capabilities(capability);
        }
        // Files need no open: every read names its inode, and the view keeps what a
        // read needs by inode. Answering the first open with ENOSYS tells the kernel
        // to open files by itself from then on (keeping their cached pages), which
        // saves two requests per file, the open and the release.
        if config.capabilities().contains(InitFlags::FUSE_NO_OPEN_SUPPORT) {
            self.shared.no_open.store(true, Ordering::Relaxed);
        }
        if let Err(largest) = config.set_max_readahead(IO_SIZE) {
            let _ = config.set_max_readahead(largest);
        }
        let _ = config.set_max_background(MAX_BACKGROUND);
        Ok(())
    }

    fn lookup(&self, _request: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        match self.view().lookup(parent.0, name.as_bytes()) {
            Ok(attributes) => reply.entry_with_ttls(
                &attribute_ttl(&attributes),
                &self.entry_ttl(parent),
                &file_attr(&attributes),
                GENERATION,
            ),
            Err(error) => reply.error(errno(&error)),
        }
    }

    fn getattr(&self, _request: &Request, ino: INodeNo, _handle: Option<FileHandle>, reply: ReplyAttr) {
        match self.view().attributes(ino.0) {
            Ok(attributes) => reply.attr(&attribute_ttl(&attributes), &file_attr(&attributes)),
            Err(error) => reply.error(errno(&error)),
        }
    }

    fn readlink(&self, _request: &Request, ino: INodeNo, reply: ReplyData) {
        match self.view().read_link(ino.0) {
            Ok(target) => reply.data(&target),
            Err(error) => reply.error(errno(&error)),
        }
    }

    fn open(&self, _request: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        if flags.acc_mode() != OpenAccMode::O_RDONLY || flags.0 & libc::O_TRUNC != 0 {
            return reply.error(Errno::EROFS);
        }
        match self.view().open(ino.0) {
            Ok(_) if self.shared.no_open.load(Ordering::Relaxed) => reply.error(Errno::ENOSYS),
            Ok(_) => reply.opened(FileHandle(0), FopenFlags::FOPEN_KEEP_CACHE | FopenFlags::FOPEN_NOFLUSH),
            Err(error) => reply.error(errno(&error)),
        }
    }

    fn read(
        &self,
        _request: &Request,
        ino: INodeNo,
        _handle: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let view = self.view();
        match view.open(ino.0).and_then(|file| view.read(&file, offset, size as usize)) {
            Ok(data) => reply.data(&data),
            Err(error) => reply.error(errno(&error)),
        }
    }

    fn opendir(&self, _request: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        let view = self.view();
        match view.list(ino.0).and_then(|listing| Ok((listing, view.attributes(ino.0)?))) {
            Ok((listing, attributes)) => {
                let handle = self.handle();
                store::lock(&self.shared.dirs).insert(handle, listing);
                // A snapshot's directories never change: the kernel may keep their
                // listings. Those that follow the snapshot list are read each time.
                let flags = if attributes.immutable {
                    FopenFlags::FOPEN_CACHE_DIR | FopenFlags::FOPEN_KEEP_CACHE
                } else {
                    FopenFlags::empty()
                };
                reply.opened(FileHandle(handle), flags);
            }
            Err(error) => reply.error(errno(&error)),
        }
    }

    fn readdir(&self, _request: &Request, ino: INodeNo, handle: FileHandle, offset: u64, mut reply: ReplyDirectory) {
        let Some((listing, dots)) = self.listing(ino, handle) else { return reply.error(Errno::EBADF) };
        for (index, (name, attributes)) in entries(&listing, &dots, offset) {
            if reply.add(INodeNo(attributes.ino), index + 1, file_type(attributes.kind), OsStr::from_bytes(name)) {
                break;
            }
        }
        reply.ok();
    }

    fn readdirplus(
        &self,
        _request: &Request,
        ino: INodeNo,
        handle: FileHandle,
        offset: u64,
        mut reply: ReplyDirectoryPlus,
    ) {
        let Some((listing, dots)) = self.listing(ino, handle) else { return reply.error(Errno::EBADF) };
        let ttl = self.entry_ttl(ino);
        for (index, (name, attributes)) in entries(&listing, &dots, offset) {
            let ttl = ttl.min(attribute_ttl(attributes));
            let full = reply.add(
                INodeNo(attributes.ino),
                index + 1,
                OsStr::from_bytes(name),
                &ttl,
                &file_attr(attributes),
                GENERATION,
            );
            if full {
                break;
            }
        }
        reply.ok();
    }

    fn releasedir(&self, _request: &Request, _ino: INodeNo, handle: FileHandle, _flags: OpenFlags, reply: ReplyEmpty) {
        store::lock(&self.shared.dirs).remove(&handle.0);
        reply.ok();
    }

    fn statfs(&self, _request: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        reply.statfs(0, 0, 0, 0, 0, IO_SIZE, 255, IO_SIZE);
    }

    fn access(&self, _request: &Request, ino: INodeNo, mask: AccessFlags, reply: ReplyEmpty) {
        match self.view().attributes(ino.0) {
            Ok(_) if mask.contains(AccessFlags::W_OK) => reply.error(Errno::EROFS),
            Ok(_) => reply.ok(),
            Err(error) => reply.error(errno(&error)),
        }
    }

    // Everything below would change the file system: refused.

    fn setattr(
        &self,
        _request: &Request,
        _ino: INodeNo,
        _mode: Option<u32>,
        _uid: Option<u32>,
        _gid: Option<u32>,
        _size: Option<u64>,
        _atime: Option<TimeOrNow>,
        _mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _handle: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        reply.error(Errno::EROFS);
    }

    fn mknod(
        &self,
        _request: &Request,
        _parent: INodeNo,
        _name: &OsStr,
        _mode: u32,
        _umask: u32,
        _rdev: u32,
        reply: ReplyEntry,
    ) {
        reply.error(Errno::EROFS);
    }

    fn mkdir(&self, _request: &Request, _parent: INodeNo, _name: &OsStr, _mode: u32, _umask: u32, reply: ReplyEntry) {
        reply.error(Errno::EROFS);
    }

    fn unlink(&self, _request: &Request, _parent: INodeNo, _name: &OsStr, reply: ReplyEmpty) {
        reply.error(Errno::EROFS);
    }

    fn rmdir(&self, _request: &Request, _parent: INodeNo, _name: &OsStr, reply: ReplyEmpty) {
        reply.error(Errno::EROFS);
    }

    fn symlink(&self, _request: &Request, _parent: INodeNo, _name: &OsStr, _target: &Path, reply: ReplyEntry) {
        reply.error(Errno::EROFS);
    }

    fn rename(
        &self,
        _request: &Request,
        _parent: INodeNo,
        _name: &OsStr,
        _new_parent: INodeNo,
        _new_name: &OsStr,
        _flags: fuser::RenameFlags,
        reply: ReplyEmpty,
    ) {
        reply.error(Errno::EROFS);
    }

    fn link(&self, _request: &Request, _ino: INodeNo, _new_parent: INodeNo, _new_name: &OsStr, reply: ReplyEntry) {
        reply.error(Errno::EROFS);
    }

    fn write(
        &self,
        _request: &Request,
        _ino: INodeNo,
        _handle: FileHandle,
        _offset: u64,
        _data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        reply.error(Errno::EROFS);
    }

    fn create(
        &self,
        _request: &Request,
        _parent: INodeNo,
        _name: &OsStr,
        _mode: u32,
        _umask: u32,
        _flags: i32,
        reply: ReplyCreate,
    ) {
        reply.error(Errno::EROFS);
    }

    fn setxattr(
        &self,
        _request: &Request,
        _ino: INodeNo,
        _name: &OsStr,
        _value: &[u8],
        _flags: i32,
        _position: u32,
        reply: ReplyEmpty,
    ) {
        reply.error(Errno::EROFS);
    }

    fn removexattr(&self, _request: &Request, _ino: INodeNo, _name: &OsStr, reply: ReplyEmpty) {
        reply.error(Errno::EROFS);
    }

    fn fallocate(
        &self,
        _request: &Request,
        _ino: INodeNo,
        _handle: FileHandle,
        _offset: u64,
        _length: u64,
        _mode: i32,
        reply: ReplyEmpty,
    ) {
        reply.error(Errno::EROFS);
    }
}

/// `.`, `..` and a directory's entries, from `offset` on, each with its offset.
type Dots = [(Vec<u8>, Attributes); 2];

impl ViewFilesystem {
    /// The listing kept for `handle`, with the attributes of `.` and `..`.
    fn listing(&self, ino: INodeNo, handle: FileHandle) -> Option<(Arc<Listing>, Dots)> {
        let listing = store::lock(&self.shared.dirs).get(&handle.0).cloned()?;
        let view = self.view();
        let own = view.attributes(ino.0).ok()?;
        let parent = view.parent(ino.0).and_then(|parent| view.attributes(parent)).ok()?;
        Some((listing, [(b".".to_vec(), own), (b"..".to_vec(), parent)]))
    }
}

fn entries<'a>(
    listing: &'a Listing,
    dots: &'a Dots,
    offset: u64,
) -> impl Iterator<Item = (u64, (&'a [u8], &'a Attributes))> {
    let start = usize::try_from(offset).unwrap_or(usize::MAX);
    let dots = dots.iter().map(|(name, attributes)| (name.as_slice(), attributes)).skip(start);
    // Straight to the offset: a large directory is listed in many requests.
    let rest = listing.entries(start.saturating_sub(2));
    dots.chain(rest).zip(start as u64..).map(|(entry, index)| (index, entry))
}
