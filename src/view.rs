//! The tree of snapshots that `envsnap mount` shows (and any other browser could):
//!
//! ```text
//! envs/<branch>/<created>_<id12>/     one folder a snapshot; a branch `a/b` nests as envs/a/b/
//! envs/<branch>/latest -> …           what `latest` names (retention::latest)
//! ids/<id>/                           the same folders, by full id (any unique prefix of 4+ also resolves)
//! commits/<commit>/<id>/              the snapshots taken at that commit (a unique prefix of 4+ also resolves)
//! ```
//!
//! Inside a snapshot folder: `files/<mount>/…` (the mount's tree, with its modes, owners,
//! times, symlinks and hard links as captured), `services/<name>.<ext>` (a service whose
//! dump is one stream, named after that stream's extension: `dump.sql` gives
//! `<name>.sql`) or `services/<name>/` (one file per stream, when there are several),
//! and `snapshot.json`. `<created>` is the snapshot's start in UTC, as
//! `2026-11-21T23-33-58Z` (no colons, which `rsync` and `scp` would take for a host).
//!
//! This module knows nothing of FUSE: it hands out inode numbers, attributes, directory
//! listings and file bytes, and [`crate::fuse`] serves them to the kernel.
//!
//! # Decisions
//!
//! - **Lazy.** A directory's tree is read from the store the first time it is looked
//!   into, never before, so opening a repository of any size costs the snapshot list
//!   only, and memory grows with what is visited, not with the repository.
//! - **Bounded.** What is visited is bounded too: the entries given numbers may take at
//!   most [`ViewOptions::entry_bytes`] (1 GiB, about four million entries, by default).
//!   Stable numbers mean an entry is never forgotten, and a few kilobytes of stored
//!   trees that share subtrees can name 2^40 paths, so without a bound a `find` in a
//!   hostile snapshot would take all the memory there is. Past the bound, directories
//!   not listed yet fail to list ([`ViewError::Exhausted`]); those already listed, and
//!   every file in them, still read.
//! - **Stable inode numbers.** A number is given to an entry once, when its directory is
//!   first listed, and is never reused or changed while the view lives. Directories of a
//!   snapshot never change, so their entries are made once. The folders that follow the
//!   snapshot list (`envs/`, `ids/`, `commits/`) keep a map from what an entry shows to
//!   its number, so a refreshed listing gives the same numbers again. Each path gets its
//!   own numbers (`ids/<id>/files` and `envs/…/files` are different directories): a
//!   directory the kernel sees under two names would confuse it and every tree walker.
//!   Files with several links share one number within an element, so `tar`, `cp -a` and
//!   `find -samefile` see the hard links that were captured.
//! - **Reads straight from the store.** A file's chunks are located when it is opened;
//!   each read decodes the chunks it covers, verified against their hash, through a
//!   cache of decoded chunks bounded in bytes. Two threads decode ahead of readers: the
//!   next chunks of a file read sequentially, and the first chunk of the files that
//!   follow an opened one in its directory (the order in which `cp -r`, `tar` and
//!   `rsync` read them). A chunk that fails verification fails the reads that need it,
//!   and nothing else.
//! - **New snapshots appear.** The snapshot list is read again from the catalog when a
//!   folder that follows it is looked into and the last read is older than
//!   [`ViewOptions::refresh`].

use std::collections::{HashMap, HashSet};
use std::convert::Infallible;
use std::ops::{Deref, Range};
use std::os::unix::fs::MetadataExt;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::mpsc::{SyncSender, sync_channel};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use quick_cache::sync::{Cache, GuardResult};

use crate::catalog::Catalog;
use crate::error::{Error, Result};
use crate::id::ObjectId;
use crate::repository::Repository;
use crate::snapshot::{ElementKind, Snapshot};
use crate::store::pack::PackEntry;
use crate::store::{self};
use crate::tree::{Node, NodeKind};

/// An inode number: 1 is the root; numbers are never reused while the view lives.
pub type Ino = u64;

/// The root directory's number.
pub const ROOT: Ino = 1;

/// What the view shows at its root.
#[derive(Debug, Clone)]
pub enum Scope {
    /// `envs/`, `ids/` and `commits/`: every snapshot, new ones included.
    All,
    /// One snapshot's folder (`files/`, `services/`, `snapshot.json`) as the root.
    One(Box<Snapshot>),
}

/// How a view behaves.
pub struct ViewOptions {
    /// What the root shows.
    pub scope: Scope,
    /// The bytes of each snapshot folder's `snapshot.json` (the binary's stable JSON).
    pub describe: Describe,
    /// Told once about each chunk or tree that turns out damaged or missing.
    pub damaged: Box<dyn Fn(&Error) + Send + Sync>,
    /// Bytes of decoded chunks kept for reads to come.
    pub cache_bytes: u64,
    /// Chunks decoded ahead of a sequential reader.
    pub prefetch: usize,
    /// How old the snapshot list may be when a folder that follows it is looked into.
    pub refresh: Duration,
    /// Bytes the entries given numbers may take: their inodes, names, chunk lists and
    /// symlink targets.
    pub entry_bytes: u64,
    /// Told once, the first time a listing is refused for [`ViewOptions::entry_bytes`].
    pub exhausted: Box<dyn Fn(&ViewError) + Send + Sync>,
}

impl ViewOptions {
    /// The defaults for `scope`: 32 MiB of cache, 2 chunks of prefetch, a refresh every
    /// second, 1 GiB of entries, `snapshot.json` as the manifest, and neither damage nor
    /// the entry bound reported.
    pub fn new(scope: Scope) -> Self {
        ViewOptions {
            scope,
            describe: Box::new(|snapshot| {
                serde_json::to_vec_pretty(&snapshot.manifest).expect("a manifest always serializes")
            }),
            damaged: Box::new(|_| {}),
            cache_bytes: 32 << 20,
            prefetch: 2,
            refresh: Duration::from_secs(1),
            entry_bytes: ENTRY_BYTES,
            exhausted: Box::new(|_| {}),
        }
    }
}

impl std::fmt::Debug for ViewOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ViewOptions")
            .field("scope", &self.scope)
            .field("cache_bytes", &self.cache_bytes)
            .field("entry_bytes", &self.entry_bytes)
            .field("prefetch", &self.prefetch)
            .field("refresh", &self.refresh)
            .finish_non_exhaustive()
    }
}

/// Told of file content decoded ahead of its reader: the file, the offset, the bytes.
pub type Prefetched = Box<dyn Fn(Ino, u64, &[u8]) + Send + Sync>;

/// Makes the bytes of a snapshot's `snapshot.json`.
pub type Describe = Box<dyn Fn(&Snapshot) -> Vec<u8> + Send + Sync>;

/// The snapshot list, newest first, shared by the listings made from it.
type Snapshots = Arc<Vec<Arc<Snapshot>>>;

/// What identifies an entry of a live folder: its parent, its name, what it shows.
type LiveKey = (Ino, Box<[u8]>, LiveKind);

/// Why a view operation failed; [`crate::fuse`] turns each into an errno.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ViewError {
    /// No such entry, or an inode number the view never gave.
    #[error("no such entry")]
    NotFound,
    /// A directory operation on something else.
    #[error("not a directory")]
    NotADirectory,
    /// A file operation on a directory.
    #[error("is a directory")]
    IsADirectory,
    /// `readlink` of something that is not a symlink, or `open` of something that is not a file.
    #[error("not a file or symlink of that kind")]
    WrongKind,
    /// The stored data is damaged or missing; the message says which.
    #[error("{0}")]
    Damaged(String),
    /// Listing the directory would take the view's entries past
    /// [`ViewOptions::entry_bytes`].
    #[error("the entries shown so far take the view's limit of {} MiB", limit >> 20)]
    Exhausted {
        /// The limit, in bytes.
        limit: u64,
    },
}

/// What kind of entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    /// A directory.
    Directory,
    /// A regular file.
    File,
    /// A symbolic link.
    Symlink,
}

/// A point in time, as stored in trees.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timestamp {
    /// Seconds since the epoch.
    pub seconds: i64,
    /// Nanoseconds.
    pub nanoseconds: u32,
}

impl Timestamp {
    fn of(time: DateTime<Utc>) -> Self {
        Timestamp { seconds: time.timestamp(), nanoseconds: time.timestamp_subsec_nanos() }
    }
}

/// An entry's attributes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attributes {
    /// Its inode number.
    pub ino: Ino,
    /// Directory, file or symlink.
    pub kind: EntryKind,
    /// Bytes (files), the target's length (symlinks), 0 (directories).
    pub size: u64,
    /// Permission bits with setuid, setgid and sticky.
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Modification time.
    pub mtime: Timestamp,
    /// Change time.
    pub ctime: Timestamp,
    /// Hard links.
    pub links: u64,
    /// True when neither the entry nor, for a directory, its entries can ever change,
    /// so the kernel may keep them as long as it likes.
    pub immutable: bool,
}

/// A directory's entries, sorted by name.
#[derive(Debug)]
pub struct Listing {
    entries: Vec<(Box<[u8]>, Arc<Inode>)>,
}

impl Listing {
    /// How many entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when the directory is empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The entries from `start` on: name and attributes.
    pub fn entries(&self, start: usize) -> impl Iterator<Item = (&[u8], &Attributes)> {
        self.entries.iter().skip(start).map(|(name, inode)| (&**name, &inode.attributes))
    }

    fn find(&self, name: &[u8]) -> Option<&Arc<Inode>> {
        self.entries.binary_search_by(|(entry, _)| (**entry).cmp(name)).ok().map(|index| &self.entries[index].1)
    }

    fn sorted(mut entries: Vec<(Box<[u8]>, Arc<Inode>)>) -> Self {
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        // A hostile or damaged tree may hold a name twice: the first one is shown.
        entries.dedup_by(|later, earlier| later.0 == earlier.0);
        Listing { entries }
    }
}

/// One entry, as the view keeps it.
#[derive(Debug)]
struct Inode {
    parent: Ino,
    attributes: Attributes,
    body: Body,
}

#[derive(Debug)]
enum Body {
    /// A folder that follows the snapshot list; its listing is made again when the list
    /// changes, and tagged with the list's generation.
    Live { dir: LiveDir, listing: Mutex<Option<(u64, Arc<Listing>)>> },
    /// A directory whose entries never change, listed on first use.
    Fixed { dir: FixedDir, listing: Mutex<Option<Arc<Listing>>> },
    /// A file of a snapshot: its chunks; where it is in its directory's listing (for
    /// prefetching the files that follow it); whether its start was prefetched.
    File { content: Arc<[ObjectId]>, position: AtomicU32, prefetched: AtomicBool },
    /// A symlink.
    Symlink { target: Box<[u8]> },
    /// A file made by the view (`snapshot.json`).
    Generated { bytes: Arc<Vec<u8>> },
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum LiveDir {
    Root,
    /// `envs/` (prefix "") or `envs/<prefix>/`.
    Envs {
        prefix: String,
    },
    Ids,
    Commits,
    Commit {
        commit: String,
    },
}

#[derive(Debug)]
enum FixedDir {
    Snapshot(Arc<Snapshot>),
    Files(Arc<Snapshot>),
    Services(Arc<Snapshot>),
    /// A directory of a snapshot's tree (`None`: the tree is missing from its node).
    /// `links` is the element's hard-link group: its files with several links and the
    /// same captured inode share one inode.
    Tree {
        tree: Option<ObjectId>,
        links: u64,
    },
}

/// What an entry of a live folder shows; with the parent and the name, the key under
/// which its inode number is kept.
#[derive(Debug, Clone)]
enum LiveChild {
    Dir(LiveDir),
    Folder(Arc<Snapshot>),
    Latest(String),
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum LiveKind {
    Dir(LiveDir),
    Folder(ObjectId),
    Latest(String),
}

impl LiveChild {
    fn kind(&self) -> LiveKind {
        match self {
            LiveChild::Dir(dir) => LiveKind::Dir(dir.clone()),
            LiveChild::Folder(snapshot) => LiveKind::Folder(snapshot.id),
            LiveChild::Latest(target) => LiveKind::Latest(target.clone()),
        }
    }
}

/// The snapshot list, as last read from the catalog.
#[derive(Debug)]
struct SnapshotList {
    /// Newest first.
    snapshots: Snapshots,
    /// Grows by one each time the list changes.
    generation: u64,
    /// When it was last read.
    read_at: Instant,
}

/// The view: inode numbers, attributes, listings and file content.
pub struct View {
    chunks: Arc<ChunkSource>,
    describe: Describe,
    refresh: Duration,
    /// Every inode given, at index `ino - 1`. Only ever appended to.
    inodes: RwLock<Vec<Arc<Inode>>>,
    /// The numbers given to entries of live folders: (parent, name, what it shows).
    live_inos: Mutex<HashMap<LiveKey, Ino>>,
    /// The files with several links: (hard-link group, captured inode).
    hard_links: Mutex<HashMap<(u64, u64), Arc<Inode>>>,
    /// The next hard-link group: one per element root shown.
    link_groups: AtomicU64,
    snapshots: Mutex<SnapshotList>,
    /// The files read last, by number: where their chunks are, where a sequential
    /// reader is.
    open_files: Cache<Ino, Arc<OpenFile>>,
    /// Owner of the entries the view makes up: the repository's owner.
    owner: (u32, u32),
    /// When the view was made: the time of the folders it makes up.
    started: Timestamp,
    /// What the entries of snapshot directories listed so far take, by
    /// [`entry_weight`], and what they may take.
    entries: EntryBudget,
}

/// The bytes of the entries a view has given numbers to, within a limit.
struct EntryBudget {
    held: AtomicU64,
    limit: u64,
    exhausted: Box<dyn Fn(&ViewError) + Send + Sync>,
    told: AtomicBool,
}

impl EntryBudget {
    /// Takes `bytes` more, or refuses (telling the first time) if that passes the limit.
    fn take(&self, bytes: u64) -> Result<(), ViewError> {
        let taken = self.held.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |held| {
            held.checked_add(bytes).filter(|&total| total <= self.limit)
        });
        if taken.is_ok() {
            return Ok(());
        }
        let error = ViewError::Exhausted { limit: self.limit };
        if !self.told.swap(true, Ordering::Relaxed) {
            (self.exhausted)(&error);
        }
        Err(error)
    }
}

/// What the view keeps for `node` once it has a number, beside a fixed part: its name in
/// its directory's listing, its chunk ids or its symlink target.
fn entry_weight(node: &Node) -> u64 {
    let target = node.target.as_ref().map_or(0, Vec::len);
    (ENTRY_FIXED + node.name.len() + node.content.len() * size_of::<ObjectId>() + target) as u64
}

/// The fixed part of an entry's weight: its inode with the counts of its `Arc`, its
/// place in the inode list, its place in its directory's listing.
const ENTRY_FIXED: usize =
    size_of::<Inode>() + 2 * size_of::<usize>() + size_of::<Arc<Inode>>() * 2 + size_of::<Box<[u8]>>();

impl std::fmt::Debug for View {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("View").field("repository", &self.chunks.repository).finish_non_exhaustive()
    }
}

/// Characters of an id in folder names, as listings show them.
const SHORT_ID: usize = 12;

/// The shortest id or commit prefix that `ids/` and `commits/` resolve.
const MIN_PREFIX: usize = 4;

/// How many of the files that follow an opened one have their start decoded ahead…
/// (`cp -a` of the Rust sysroot out of a mount: 16 took 4.9 s, 64 took 4.5 s)
const SIBLING_FILES: usize = 64;

/// …within this many bytes of chunks.
const SIBLING_BYTES: u64 = 8 << 20;

/// The largest chunk the store cuts.
const MAX_CHUNK: u64 = 4 << 20;

/// Files whose chunk locations are kept after they are closed.
const LAYOUTS: usize = 4096;

/// Files kept ready for reading, by number.
const OPEN_FILES: usize = 1024;

/// Bytes the entries given numbers may take, by default: about four million entries of
/// snapshot trees, each a file of one chunk.
const ENTRY_BYTES: u64 = 1 << 30;

impl View {
    /// A view of `repository`. Reads the snapshot list; nothing else is read until asked.
    pub fn new(repository: Repository, options: ViewOptions) -> Result<Self> {
        let ViewOptions { scope, describe, damaged, cache_bytes, prefetch, refresh, entry_bytes, exhausted } = options;
        let metadata = std::fs::metadata(repository.root())
            .map_err(|error| Error::io("reading", repository.root().to_owned(), error))?;
        let owner = (metadata.uid(), metadata.gid());
        let snapshots = repository.snapshots(None)?.into_iter().map(Arc::new).collect();
        let started = Timestamp::of(Utc::now());
        let chunks = Arc::new(ChunkSource::new(repository, cache_bytes, prefetch, damaged)?);
        let view = View {
            chunks,
            describe,
            refresh,
            inodes: RwLock::new(Vec::new()),
            live_inos: Mutex::new(HashMap::new()),
            hard_links: Mutex::new(HashMap::new()),
            link_groups: AtomicU64::new(0),
            open_files: Cache::new(OPEN_FILES),
            snapshots: Mutex::new(SnapshotList {
                snapshots: Arc::new(snapshots),
                generation: 0,
                read_at: Instant::now(),
            }),
            owner,
            started,
            entries: EntryBudget {
                held: AtomicU64::new(0),
                limit: entry_bytes,
                exhausted,
                told: AtomicBool::new(false),
            },
        };
        let root = match scope {
            Scope::All => view.made_up_dir(ROOT, view.started, false, Body::live(LiveDir::Root)),
            Scope::One(snapshot) => view.snapshot_folder(ROOT, Arc::new(*snapshot)),
        };
        view.push(root);
        Ok(view)
    }

    /// Asks to be told of every piece of file content decoded ahead of its reader
    /// (the FUSE view hands it to the kernel's page cache, so that the read that
    /// follows never reaches envsnap). Only the first hook set is kept.
    pub fn on_prefetched(&self, hook: Prefetched) {
        let _ = self.chunks.prefetched.set(hook);
    }

    /// The attributes of `ino`.
    pub fn attributes(&self, ino: Ino) -> Result<Attributes, ViewError> {
        Ok(self.inode(ino)?.attributes.clone())
    }

    /// The directory that holds `ino` (the root for the root, and for files with
    /// several links, the first directory they were found in).
    pub fn parent(&self, ino: Ino) -> Result<Ino, ViewError> {
        Ok(self.inode(ino)?.parent)
    }

    /// The entry `name` of directory `parent`.
    pub fn lookup(&self, parent: Ino, name: &[u8]) -> Result<Attributes, ViewError> {
        let dir = self.inode(parent)?;
        let listing = self.listing_of(&dir)?;
        if let Some(inode) = listing.find(name) {
            return Ok(inode.attributes.clone());
        }
        // `ids/` and `commits/` also resolve a unique prefix they do not list.
        if let Body::Live { dir: live @ (LiveDir::Ids | LiveDir::Commits), .. } = &dir.body {
            let snapshots = self.current_snapshots()?.1;
            if let Some(child) = resolve_prefix(live, name, &snapshots) {
                return Ok(self.live_inode(parent, name, child).attributes.clone());
            }
        }
        Err(ViewError::NotFound)
    }

    /// The entries of directory `ino`, sorted by name. A listing of a folder that
    /// follows the snapshot list is a copy of the moment: keep it for one `readdir`.
    pub fn list(&self, ino: Ino) -> Result<Arc<Listing>, ViewError> {
        let dir = self.inode(ino)?;
        self.listing_of(&dir)
    }

    /// The target of symlink `ino`.
    pub fn read_link(&self, ino: Ino) -> Result<Vec<u8>, ViewError> {
        match &self.inode(ino)?.body {
            Body::Symlink { target } => Ok(target.to_vec()),
            _ => Err(ViewError::WrongKind),
        }
    }

    /// File `ino`, ready for reading: its chunks located. The same file is handed out
    /// to every reader while it is in use (it is kept for the files read last), so a
    /// caller need not keep it between reads. A file whose chunks cannot all be
    /// located still opens; its reads fail.
    pub fn open(&self, ino: Ino) -> Result<Arc<OpenFile>, ViewError> {
        if let Some(file) = self.open_files.get(&ino) {
            return Ok(file);
        }
        let inode = self.inode(ino)?;
        let content = match &inode.body {
            Body::File { content, .. } => {
                self.prefetch_siblings(&inode);
                Content::Chunks(self.chunks.layout(ino, content, inode.attributes.size))
            }
            Body::Generated { bytes } => Content::Bytes(bytes.clone()),
            Body::Live { .. } | Body::Fixed { .. } => return Err(ViewError::IsADirectory),
            Body::Symlink { .. } => return Err(ViewError::WrongKind),
        };
        let file = Arc::new(OpenFile { ino, size: inode.attributes.size, content, expected: AtomicU64::new(0) });
        self.open_files.insert(ino, file.clone());
        Ok(file)
    }

    /// Up to `size` bytes of `file` from `offset` (fewer at its end).
    pub fn read(&self, file: &OpenFile, offset: u64, size: usize) -> Result<Data, ViewError> {
        let end = offset.saturating_add(size as u64).min(file.size);
        if offset >= end {
            return Ok(Data::Owned(Vec::new()));
        }
        let chunks = match &file.content {
            Content::Bytes(bytes) => {
                return Ok(Data::Shared(bytes.clone(), offset as usize..end as usize));
            }
            Content::Chunks(layout) => match &**layout {
                Err(damage) => return Err(ViewError::Damaged(damage.clone())),
                Ok(chunks) => chunks,
            },
        };
        let sequential = file.expected.swap(end, Ordering::Relaxed) == offset;
        let first = chunks.partition_point(|chunk| chunk.end <= offset);
        let mut last = first;
        let mut data = None;
        let mut gathered = Vec::new();
        for (index, chunk) in chunks.iter().enumerate().skip(first) {
            let start = chunk.end - u64::from(chunk.entry.raw_length);
            if start >= end {
                break;
            }
            last = index;
            let bytes = self.chunks.get(chunk)?;
            let from = (offset.max(start) - start) as usize;
            let to = (end.min(chunk.end) - start) as usize;
            if data.is_none() && gathered.is_empty() && end <= chunk.end {
                // The whole read lies in one chunk: hand out a slice of it, no copy.
                data = Some(Data::Shared(bytes, from..to));
                break;
            }
            gathered.extend_from_slice(&bytes[from..to]);
        }
        if sequential {
            self.chunks.prefetch(file.ino, chunks, last + 1);
        }
        Ok(data.unwrap_or(Data::Owned(gathered)))
    }

    /// Starts decoding the first chunk of the files that follow `file` in its directory:
    /// `cp -r`, `tar` and `rsync` open a directory's files one after the other, each
    /// read as soon as it is opened, and find them decoded.
    fn prefetch_siblings(&self, file: &Inode) {
        let Body::File { position, .. } = &file.body else { return };
        let position = position.load(Ordering::Relaxed);
        if position == u32::MAX {
            return;
        }
        let Ok(parent) = self.inode(file.parent) else { return };
        let Body::Fixed { listing, .. } = &parent.body else { return };
        let Some(listing) = store::lock(listing).clone() else { return };
        let mut budget = SIBLING_BYTES;
        let mut files = Vec::new();
        for (_, sibling) in listing.entries.iter().skip(position as usize + 1).take(SIBLING_FILES) {
            let Body::File { content, prefetched, .. } = &sibling.body else { continue };
            if budget == 0 {
                break;
            }
            let size = sibling.attributes.size;
            budget = budget.saturating_sub(size.min(MAX_CHUNK));
            if !content.is_empty() && !prefetched.swap(true, Ordering::Relaxed) {
                files.push((sibling.attributes.ino, content.clone(), size));
            }
        }
        if !files.is_empty() {
            self.chunks.prefetch_starts(files);
        }
    }

    /// Walks `path` (components separated by `/`) from the root, following relative
    /// symlinks (such as `latest`) on the way, as the kernel would; a symlink that ends
    /// the path is not followed, unless a `/` follows it.
    pub fn resolve(&self, path: &str) -> Result<Attributes, ViewError> {
        let mut ancestors = vec![self.attributes(ROOT)?];
        let mut pending: Vec<Vec<u8>> = path.split('/').rev().map(|name| name.as_bytes().to_vec()).collect();
        let mut links = 0;
        while let Some(name) = pending.pop() {
            let current = ancestors.last().ok_or(ViewError::NotFound)?.ino;
            match name.as_slice() {
                b"" | b"." => continue,
                b".." => {
                    if ancestors.len() > 1 {
                        ancestors.pop();
                    }
                    continue;
                }
                _ => {}
            }
            let found = self.lookup(current, &name)?;
            // A symlink is followed unless it ends the path (`latest/` is followed).
            if found.kind == EntryKind::Symlink && !pending.is_empty() {
                links += 1;
                let target = self.read_link(found.ino)?;
                if links > 40 || target.starts_with(b"/") {
                    return Err(ViewError::NotFound);
                }
                pending.extend(target.split(|byte| *byte == b'/').rev().map(<[u8]>::to_vec));
            } else {
                ancestors.push(found);
            }
        }
        ancestors.pop().ok_or(ViewError::NotFound)
    }

    fn inode(&self, ino: Ino) -> Result<Arc<Inode>, ViewError> {
        let index = usize::try_from(ino.checked_sub(1).ok_or(ViewError::NotFound)?).map_err(|_| ViewError::NotFound)?;
        read(&self.inodes).get(index).cloned().ok_or(ViewError::NotFound)
    }

    /// Gives `inode` the next number.
    fn push(&self, mut inode: Inode) -> Arc<Inode> {
        let mut inodes = write(&self.inodes);
        inode.attributes.ino = inodes.len() as Ino + 1;
        let inode = Arc::new(inode);
        inodes.push(inode.clone());
        inode
    }

    fn listing_of(&self, dir: &Inode) -> Result<Arc<Listing>, ViewError> {
        match &dir.body {
            Body::Live { dir: live, listing } => {
                let (generation, snapshots) = self.current_snapshots()?;
                let mut listing = store::lock(listing);
                if let Some((made_for, current)) = &*listing
                    && *made_for == generation
                {
                    return Ok(current.clone());
                }
                let entries = live_children(live, &snapshots)
                    .into_iter()
                    .map(|(name, child)| {
                        let inode = self.live_inode(dir.attributes.ino, &name, child);
                        (name.into_boxed_slice(), inode)
                    })
                    .collect();
                let made = Arc::new(Listing::sorted(entries));
                *listing = Some((generation, made.clone()));
                Ok(made)
            }
            Body::Fixed { dir: fixed, listing } => {
                // Held while listing, so that a directory is listed (and its entries
                // numbered) once, however many readers ask at the same time.
                let mut listing = store::lock(listing);
                if let Some(current) = &*listing {
                    return Ok(current.clone());
                }
                let made = Arc::new(self.fixed_children(dir.attributes.ino, fixed)?);
                *listing = Some(made.clone());
                Ok(made)
            }
            _ => Err(ViewError::NotADirectory),
        }
    }

    /// The snapshot list and its generation, read again when it is older than allowed.
    fn current_snapshots(&self) -> Result<(u64, Snapshots), ViewError> {
        let mut list = store::lock(&self.snapshots);
        if list.read_at.elapsed() >= self.refresh {
            // Should the catalog be unreadable for a moment, the list read last is shown.
            if let Ok(fresh) = self.chunks.repository.snapshots(None) {
                let same = fresh.len() == list.snapshots.len()
                    && fresh.iter().zip(list.snapshots.iter()).all(|(a, b)| a.id == b.id);
                if !same {
                    list.snapshots = Arc::new(fresh.into_iter().map(Arc::new).collect());
                    list.generation += 1;
                }
                list.read_at = Instant::now();
            }
        }
        Ok((list.generation, list.snapshots.clone()))
    }

    /// The inode of entry `name` of live folder `parent`: the same number as before for
    /// the same thing shown under the same name.
    fn live_inode(&self, parent: Ino, name: &[u8], child: LiveChild) -> Arc<Inode> {
        let key = (parent, Box::<[u8]>::from(name), child.kind());
        let mut known = store::lock(&self.live_inos);
        if let Some(ino) = known.get(&key)
            && let Ok(inode) = self.inode(*ino)
        {
            return inode;
        }
        let inode = match child {
            LiveChild::Dir(dir) => self.made_up_dir(parent, self.started, false, Body::live(dir)),
            LiveChild::Folder(snapshot) => self.snapshot_folder(parent, snapshot),
            LiveChild::Latest(target) => Inode {
                parent,
                attributes: Attributes {
                    kind: EntryKind::Symlink,
                    size: target.len() as u64,
                    mode: 0o777,
                    links: 1,
                    immutable: true,
                    ..self.made_up(self.started)
                },
                body: Body::Symlink { target: target.into_bytes().into_boxed_slice() },
            },
        };
        let inode = self.push(inode);
        known.insert(key, inode.attributes.ino);
        inode
    }

    fn fixed_children(&self, ino: Ino, dir: &FixedDir) -> Result<Listing, ViewError> {
        let mut entries: Vec<(Box<[u8]>, Arc<Inode>)> = Vec::new();
        let mut add = |name: &[u8], inode: Inode| entries.push((name.into(), self.push(inode)));
        match dir {
            FixedDir::Snapshot(snapshot) => {
                let time = Timestamp::of(snapshot.manifest.created);
                let mounts = snapshot.manifest.elements.iter().filter(|e| e.kind == ElementKind::Mount).count();
                let mut files = self.made_up_dir(ino, time, true, Body::fixed(FixedDir::Files(snapshot.clone())));
                files.attributes.links = 2 + mounts as u64;
                add(b"files", files);
                add(b"services", self.made_up_dir(ino, time, true, Body::fixed(FixedDir::Services(snapshot.clone()))));
                let bytes = (self.describe)(snapshot);
                let attributes = Attributes {
                    kind: EntryKind::File,
                    size: bytes.len() as u64,
                    mode: 0o444,
                    links: 1,
                    ..self.made_up(time)
                };
                add(
                    b"snapshot.json",
                    Inode { parent: ino, attributes, body: Body::Generated { bytes: Arc::new(bytes) } },
                );
            }
            FixedDir::Files(snapshot) => {
                let time = Timestamp::of(snapshot.manifest.created);
                for element in &snapshot.manifest.elements {
                    if element.kind == ElementKind::Mount && plain_name(element.name.as_bytes()) {
                        add(element.name.as_bytes(), self.element_root(ino, time, element.tree));
                    }
                }
            }
            FixedDir::Services(snapshot) => {
                let time = Timestamp::of(snapshot.manifest.created);
                for element in &snapshot.manifest.elements {
                    if element.kind != ElementKind::Service || !plain_name(element.name.as_bytes()) {
                        continue;
                    }
                    // A dump that cannot be read is shown as a directory whose listing
                    // fails, so that the other services stay readable.
                    let tree = self.chunks.tree(&element.tree).ok();
                    match tree.as_ref().map(|tree| tree.nodes.as_slice()) {
                        Some([node]) if node.kind == NodeKind::File && plain_name(&node.name) => {
                            let name = match stream_extension(&node.name) {
                                Some(extension) => format!("{}.{extension}", element.name),
                                None => element.name.clone(),
                            };
                            add(name.as_bytes(), self.node_inode(ino, node, 0));
                        }
                        _ => add(element.name.as_bytes(), self.element_root(ino, time, element.tree)),
                    }
                }
            }
            FixedDir::Tree { tree, links } => {
                let tree_id =
                    tree.ok_or_else(|| ViewError::Damaged("a directory of the snapshot has no tree".into()))?;
                let tree = self.chunks.tree(&tree_id)?;
                self.entries.take(tree.nodes.iter().map(entry_weight).sum())?;
                let mut hard_links = store::lock(&self.hard_links);
                for node in tree.nodes.iter().filter(|node| plain_name(&node.name)) {
                    let inode = if node.kind == NodeKind::File && node.links > 1 {
                        hard_links
                            .entry((*links, node.inode))
                            .or_insert_with(|| self.push(self.node_inode(ino, node, *links)))
                            .clone()
                    } else {
                        self.push(self.node_inode(ino, node, *links))
                    };
                    entries.push((node.name.as_slice().into(), inode));
                }
                let listing = Listing::sorted(entries);
                for (index, (_, inode)) in listing.entries.iter().enumerate() {
                    if let Body::File { position, .. } = &inode.body
                        && inode.parent == ino
                    {
                        position.store(u32::try_from(index).unwrap_or(u32::MAX), Ordering::Relaxed);
                    }
                }
                return Ok(listing);
            }
        }
        Ok(Listing::sorted(entries))
    }

    /// A snapshot folder: `files/`, `services/`, `snapshot.json`.
    fn snapshot_folder(&self, parent: Ino, snapshot: Arc<Snapshot>) -> Inode {
        let time = Timestamp::of(snapshot.manifest.created);
        let mut inode = self.made_up_dir(parent, time, true, Body::fixed(FixedDir::Snapshot(snapshot)));
        inode.attributes.links = 4;
        inode
    }

    /// The root directory of an element, whose own metadata a snapshot does not hold.
    /// It starts a new hard-link group.
    fn element_root(&self, parent: Ino, time: Timestamp, tree: ObjectId) -> Inode {
        let links = self.link_groups.fetch_add(1, Ordering::Relaxed);
        let mut inode = self.made_up_dir(parent, time, true, Body::fixed(FixedDir::Tree { tree: Some(tree), links }));
        inode.attributes.mode = 0o755;
        inode
    }

    /// The inode of a tree's node; `links` is the hard-link group of its element.
    fn node_inode(&self, parent: Ino, node: &Node, links: u64) -> Inode {
        let (kind, size, body) = match node.kind {
            NodeKind::File => {
                let content = Arc::from(node.content.as_slice());
                let body =
                    Body::File { content, position: AtomicU32::new(u32::MAX), prefetched: AtomicBool::new(false) };
                (EntryKind::File, node.size, body)
            }
            NodeKind::Dir => (EntryKind::Directory, 0, Body::fixed(FixedDir::Tree { tree: node.subtree, links })),
            NodeKind::Symlink => {
                let target = node.target.clone().unwrap_or_default();
                (EntryKind::Symlink, target.len() as u64, Body::Symlink { target: target.into_boxed_slice() })
            }
        };
        Inode {
            parent,
            attributes: Attributes {
                ino: 0,
                kind,
                size,
                mode: node.mode & 0o7777,
                uid: node.uid,
                gid: node.gid,
                mtime: Timestamp { seconds: node.mtime, nanoseconds: node.mtime_nsec },
                ctime: Timestamp { seconds: node.ctime, nanoseconds: node.ctime_nsec },
                links: node.links.max(1),
                immutable: true,
            },
            body,
        }
    }

    fn made_up(&self, time: Timestamp) -> Attributes {
        Attributes {
            ino: 0,
            kind: EntryKind::Directory,
            size: 0,
            mode: 0o555,
            uid: self.owner.0,
            gid: self.owner.1,
            mtime: time,
            ctime: time,
            links: 2,
            immutable: true,
        }
    }

    fn made_up_dir(&self, parent: Ino, time: Timestamp, immutable: bool, body: Body) -> Inode {
        Inode { parent, attributes: Attributes { immutable, ..self.made_up(time) }, body }
    }
}

impl Body {
    fn live(dir: LiveDir) -> Self {
        Body::Live { dir, listing: Mutex::new(None) }
    }

    fn fixed(dir: FixedDir) -> Self {
        Body::Fixed { dir, listing: Mutex::new(None) }
    }
}

/// True for a name that is one plain path component. Anything else (possible only in a
/// damaged or hostile snapshot) is left out of the view.
fn plain_name(name: &[u8]) -> bool {
    !name.is_empty() && name != b"." && name != b".." && !name.contains(&b'/') && !name.contains(&0)
}

/// `sql` for `dump.sql`; `None` for a name without an extension (or a dot file).
fn stream_extension(name: &[u8]) -> Option<&str> {
    let name = std::str::from_utf8(name).ok()?;
    let (stem, extension) = name.rsplit_once('.')?;
    (!stem.is_empty() && !extension.is_empty()).then_some(extension)
}

/// The folder name of a snapshot: its start in UTC and its short id.
pub fn folder_name(snapshot: &Snapshot) -> String {
    format!("{}_{}", snapshot.manifest.created.format("%Y-%m-%dT%H-%M-%SZ"), snapshot.id.short(SHORT_ID))
}

/// The entries of a live folder, given the snapshot list (newest first).
fn live_children(dir: &LiveDir, snapshots: &[Arc<Snapshot>]) -> Vec<(Vec<u8>, LiveChild)> {
    let mut children: Vec<(Vec<u8>, LiveChild)> = Vec::new();
    match dir {
        LiveDir::Root => {
            children.push((b"envs".to_vec(), LiveChild::Dir(LiveDir::Envs { prefix: String::new() })));
            children.push((b"ids".to_vec(), LiveChild::Dir(LiveDir::Ids)));
            children.push((b"commits".to_vec(), LiveChild::Dir(LiveDir::Commits)));
        }
        LiveDir::Envs { prefix } => {
            let mut taken = HashSet::new();
            let here: Vec<&Snapshot> =
                snapshots.iter().filter(|snapshot| &snapshot.manifest.env == prefix).map(AsRef::as_ref).collect();
            for snapshot in snapshots.iter().filter(|snapshot| &snapshot.manifest.env == prefix) {
                let name = folder_name(snapshot);
                taken.insert(name.clone());
                children.push((name.into_bytes(), LiveChild::Folder(snapshot.clone())));
            }
            // What `envsnap restore latest` would restore, by the same rule.
            if let Some(target) = crate::retention::latest(here).map(folder_name) {
                taken.insert("latest".to_owned());
                children.push((b"latest".to_vec(), LiveChild::Latest(target)));
            }
            // Branches below this prefix: `release/1.0` is envs/release/1.0/. A branch
            // component named like an entry already here is left out (it stays in ids/).
            let mut nested = HashSet::new();
            for snapshot in snapshots.iter() {
                let env = &snapshot.manifest.env;
                let rest = if prefix.is_empty() { Some(env.as_str()) } else { env.strip_prefix(&format!("{prefix}/")) };
                let Some(component) = rest.and_then(|rest| rest.split('/').next()) else { continue };
                if !plain_name(component.as_bytes()) || taken.contains(component) || !nested.insert(component) {
                    continue;
                }
                let prefix = if prefix.is_empty() { component.to_owned() } else { format!("{prefix}/{component}") };
                children.push((component.as_bytes().to_vec(), LiveChild::Dir(LiveDir::Envs { prefix })));
            }
        }
        LiveDir::Ids => {
            for snapshot in snapshots {
                children.push((snapshot.id.to_hex().into_bytes(), LiveChild::Folder(snapshot.clone())));
            }
        }
        LiveDir::Commits => {
            let mut seen = HashSet::new();
            for commit in snapshots.iter().filter_map(|snapshot| snapshot.manifest.commit.as_deref()) {
                if plain_name(commit.as_bytes()) && seen.insert(commit) {
                    let dir = LiveDir::Commit { commit: commit.to_owned() };
                    children.push((commit.as_bytes().to_vec(), LiveChild::Dir(dir)));
                }
            }
        }
        LiveDir::Commit { commit } => {
            for snapshot in snapshots.iter().filter(|s| s.manifest.commit.as_deref() == Some(commit.as_str())) {
                children.push((snapshot.id.to_hex().into_bytes(), LiveChild::Folder(snapshot.clone())));
            }
        }
    }
    children
}

/// What a name that `ids/` or `commits/` does not list stands for: the one snapshot
/// (or commit) it is a prefix of, when it is at least [`MIN_PREFIX`] hex digits.
fn resolve_prefix(dir: &LiveDir, name: &[u8], snapshots: &[Arc<Snapshot>]) -> Option<LiveChild> {
    let prefix = std::str::from_utf8(name).ok()?.to_ascii_lowercase();
    if prefix.len() < MIN_PREFIX || !prefix.bytes().all(|byte| byte.is_ascii_hexdigit()) {
        return None;
    }
    match dir {
        LiveDir::Ids => {
            let mut matches = snapshots.iter().filter(|snapshot| snapshot.id.to_hex().starts_with(&prefix));
            let found = matches.next()?;
            matches.next().is_none().then(|| LiveChild::Folder(found.clone()))
        }
        LiveDir::Commits => {
            let commits: HashSet<&str> = snapshots
                .iter()
                .filter_map(|snapshot| snapshot.manifest.commit.as_deref())
                .filter(|commit| commit.starts_with(&prefix))
                .collect();
            let mut commits = commits.into_iter();
            let found = commits.next()?;
            commits.next().is_none().then(|| LiveChild::Dir(LiveDir::Commit { commit: found.to_owned() }))
        }
        _ => None,
    }
}

/// An open file: where its bytes come from, and where the next sequential read starts.
#[derive(Debug)]
pub struct OpenFile {
    ino: Ino,
    size: u64,
    content: Content,
    expected: AtomicU64,
}

impl OpenFile {
    /// The file's inode number.
    pub fn ino(&self) -> Ino {
        self.ino
    }
}

#[derive(Debug)]
enum Content {
    Chunks(Arc<Layout>),
    Bytes(Arc<Vec<u8>>),
}

/// A file's chunks in order, located; `Err` says why they could not all be.
type Layout = Result<Vec<LocatedChunk>, String>;

/// One chunk of an open file.
#[derive(Debug)]
struct LocatedChunk {
    /// The file offset just after it.
    end: u64,
    pack: Arc<str>,
    entry: PackEntry,
}

/// Bytes read from a file: a slice of a decoded chunk, or bytes gathered from several.
#[derive(Debug)]
pub enum Data {
    /// A range of a chunk held in the cache.
    Shared(Arc<Vec<u8>>, Range<usize>),
    /// Bytes gathered from several chunks.
    Owned(Vec<u8>),
}

impl Deref for Data {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            Data::Shared(bytes, range) => &bytes[range.clone()],
            Data::Owned(bytes) => bytes,
        }
    }
}

/// Decoded chunks for reads: the repository, a cache bounded in bytes, and the threads
/// that decode ahead of sequential readers.
struct ChunkSource {
    repository: Repository,
    cache: Cache<ObjectId, Arc<Vec<u8>>, ChunkWeight>,
    /// Where the chunks of recently opened files are: reopening a file, or opening one
    /// whose start was prefetched, asks the catalog nothing.
    layouts: Cache<Ino, Arc<Layout>>,
    prefetch: usize,
    prefetcher: Prefetcher,
    damaged: Box<dyn Fn(&Error) + Send + Sync>,
    /// Chunks and trees already reported damaged: each is reported once.
    reported: Mutex<HashSet<ObjectId>>,
    /// Told of each chunk decoded ahead of its reader.
    prefetched: OnceLock<Prefetched>,
}

#[derive(Debug, Clone, Copy)]
struct ChunkWeight;

impl quick_cache::Weighter<ObjectId, Arc<Vec<u8>>> for ChunkWeight {
    fn weight(&self, _id: &ObjectId, bytes: &Arc<Vec<u8>>) -> u64 {
        bytes.len() as u64 + 64
    }
}

/// Threads that decode chunks ahead of sequential readers. Two keep a reader ahead of
/// the data on the machines measured, and leave the other cores to serve requests.
const PREFETCH_THREADS: usize = 2;

/// Decoding jobs that may wait for a prefetch thread; more are dropped.
const PREFETCH_QUEUE: usize = 64;

type Job = Box<dyn FnOnce() + Send>;

/// Threads that run the jobs handed to them. A job that finds every thread busy and
/// the queue full is dropped: prefetching is a bet, never worth waiting for. Idle
/// threads sleep (a pool that spins while idle, as rayon's does, takes the CPU from
/// the very readers it should serve on a small machine).
struct Prefetcher {
    jobs: SyncSender<Job>,
}

impl Prefetcher {
    fn start(threads: usize) -> std::io::Result<Self> {
        let (jobs, queue) = sync_channel::<Job>(PREFETCH_QUEUE);
        let queue = Arc::new(Mutex::new(queue));
        for index in 0..threads {
            let queue = queue.clone();
            std::thread::Builder::new().name(format!("envsnap-prefetch-{index}")).spawn(move || {
                // Ends when the view, and with it the sender, is gone.
                while let Ok(job) = store::lock(&queue).recv() {
                    job();
                }
            })?;
        }
        Ok(Prefetcher { jobs })
    }

    fn submit(&self, job: impl FnOnce() + Send + 'static) {
        let _ = self.jobs.try_send(Box::new(job));
    }
}

impl ChunkSource {
    fn new(
        repository: Repository,
        cache_bytes: u64,
        prefetch: usize,
        damaged: Box<dyn Fn(&Error) + Send + Sync>,
    ) -> Result<Self> {
        let prefetcher = Prefetcher::start(PREFETCH_THREADS)
            .map_err(|error| Error::io("starting", "the prefetch threads", error))?;
        // Few shards, so that each holds the largest chunk (4 MiB) several times over.
        let cache_options = quick_cache::OptionsBuilder::new()
            .estimated_items_capacity((cache_bytes / (256 << 10)).max(16) as usize)
            .weight_capacity(cache_bytes)
            .shards(4)
            .build()
            .expect("the cache options are complete");
        let cache = Cache::with_options(cache_options, ChunkWeight, Default::default(), Default::default());
        Ok(ChunkSource {
            repository,
            cache,
            layouts: Cache::new(LAYOUTS),
            prefetch,
            prefetcher,
            damaged,
            reported: Mutex::new(HashSet::new()),
            prefetched: OnceLock::new(),
        })
    }

    /// The layout of file `ino`, from the cache or the catalog.
    fn layout(&self, ino: Ino, content: &[ObjectId], size: u64) -> Arc<Layout> {
        let layout = self.layouts.get_or_insert_with(&ino, || {
            let catalog = store::lock(self.repository.catalog());
            Ok::<_, Infallible>(Arc::new(self.locate(&catalog, content, size)))
        });
        match layout {
            Ok(layout) => layout,
        }
    }

    /// Where each chunk of a file is, and where it ends in the file.
    fn locate(&self, catalog: &Catalog, content: &[ObjectId], size: u64) -> Layout {
        let mut chunks = Vec::with_capacity(content.len());
        let mut end = 0u64;
        let mut packs: HashMap<String, Arc<str>> = HashMap::new();
        for id in content {
            let location = catalog.locate(id).map_err(|error| error.to_string())?;
            let Some(location) = location else {
                let error = Error::ChunkMissing { id: id.to_hex() };
                self.report(id, &error);
                return Err(error.to_string());
            };
            end += u64::from(location.entry.raw_length);
            let pack = packs.entry(location.pack).or_insert_with_key(|name| Arc::from(name.as_str())).clone();
            chunks.push(LocatedChunk { end, pack, entry: location.entry });
        }
        if end != size {
            return Err(format!("its chunks hold {end} bytes where the snapshot says {size}"));
        }
        Ok(chunks)
    }

    /// A chunk's bytes, decoded and verified, from the cache or the store.
    fn get(&self, chunk: &LocatedChunk) -> Result<Arc<Vec<u8>>, ViewError> {
        self.cache.get_or_insert_with(&chunk.entry.id, || self.load(chunk))
    }

    fn load(&self, chunk: &LocatedChunk) -> Result<Arc<Vec<u8>>, ViewError> {
        match self.repository.read_located(&chunk.pack, &chunk.entry) {
            Ok(bytes) => Ok(Arc::new(bytes)),
            Err(error) => {
                self.report(&chunk.entry.id, &error);
                Err(ViewError::Damaged(error.to_string()))
            }
        }
    }

    /// Decodes chunks `from..from + prefetch` of a file in the background, unless they
    /// are cached or being decoded already.
    fn prefetch(self: &Arc<Self>, ino: Ino, chunks: &[LocatedChunk], from: usize) {
        for chunk in chunks.iter().skip(from).take(self.prefetch) {
            if self.cache.contains_key(&chunk.entry.id) {
                continue;
            }
            // Jobs hold the source weakly: queued ones must not keep a dropped view alive.
            let source = Arc::downgrade(self);
            let chunk = LocatedChunk { end: chunk.end, pack: chunk.pack.clone(), entry: chunk.entry };
            self.prefetcher.submit(move || {
                if let Some(source) = source.upgrade() {
                    source.decode_ahead(ino, &chunk);
                }
            });
        }
    }

    /// Decodes `chunk` of file `ino` into the cache, unless it is there or on its way,
    /// and hands it to the [`View::on_prefetched`] hook.
    fn decode_ahead(&self, ino: Ino, chunk: &LocatedChunk) {
        if let GuardResult::Guard(guard) = self.cache.get_value_or_guard(&chunk.entry.id, Some(Duration::ZERO))
            && let Ok(bytes) = self.load(chunk)
        {
            let _ = guard.insert(bytes.clone());
            if let Some(hook) = self.prefetched.get() {
                hook(ino, chunk.end - u64::from(chunk.entry.raw_length), &bytes);
            }
        }
    }

    /// Locates `files` (inode, chunks, size) and decodes the first chunk of each in the
    /// background. They are located together, in one read of the catalog: a `cp -r`
    /// opens tens of thousands of small files, and a lookup each, every one taking the
    /// catalog's lock and its database's read lock, cost a tenth of the mount's CPU.
    fn prefetch_starts(self: &Arc<Self>, files: Vec<(Ino, Arc<[ObjectId]>, u64)>) {
        let source = Arc::downgrade(self);
        self.prefetcher.submit(move || {
            let Some(source) = source.upgrade() else { return };
            let missing: Vec<_> = files.iter().filter(|(ino, _, _)| source.layouts.get(ino).is_none()).collect();
            if !missing.is_empty() {
                let catalog = store::lock(source.repository.catalog());
                let _ = catalog.reading(|catalog| {
                    for (ino, content, size) in missing {
                        source.layouts.insert(*ino, Arc::new(source.locate(catalog, content, *size)));
                    }
                    Ok(())
                });
            }
            // Decoded one a job, so that every prefetch thread takes a share.
            for (ino, content, size) in files {
                let layout = source.layout(ino, &content, size);
                let weak = Arc::downgrade(&source);
                source.prefetcher.submit(move || {
                    if let (Some(source), Ok(chunks)) = (weak.upgrade(), &*layout)
                        && let Some(first) = chunks.first()
                    {
                        source.decode_ahead(ino, first);
                    }
                });
            }
        });
    }

    /// A tree, read and verified.
    fn tree(&self, id: &ObjectId) -> Result<crate::tree::Tree, ViewError> {
        self.repository.read_tree(id).map_err(|error| {
            self.report(id, &error);
            ViewError::Damaged(error.to_string())
        })
    }

    fn report(&self, id: &ObjectId, error: &Error) {
        if store::lock(&self.reported).insert(*id) {
            (self.damaged)(error);
        }
    }
}

fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;
    use crate::backup::{BackupOptions, ServiceSource, backup};
    use crate::element::mount::Mount;
    use crate::element::service::{DumpSink, DumpSource, Service};
    use crate::progress::NoProgress;
    use crate::repository::Access;
    use crate::snapshot::{Element, Manifest, Mode, Trigger};
    use crate::store::chunker::ChunkerParams;

    type TestResult = std::result::Result<(), Box<dyn std::error::Error>>;

    /// A service whose dump is the streams given.
    struct Streams(Vec<(&'static str, Vec<u8>)>);

    impl Service for Streams {
        fn address(&self) -> String {
            "test".to_owned()
        }

        fn capture(&self, sink: &dyn DumpSink) -> Result<()> {
            for (name, bytes) in &self.0 {
                sink.add(name, &mut bytes.as_slice())?;
            }
            Ok(())
        }

        fn restore(&self, _source: &dyn DumpSource) -> Result<()> {
            Ok(())
        }
    }

    /// Bytes that do not compress.
    fn noise(seed: u64, length: usize) -> Vec<u8> {
        let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        (0..length)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state >> 24) as u8
            })
            .collect()
    }

    struct Fixture {
        dir: tempfile::TempDir,
        data: std::path::PathBuf,
    }

    impl Fixture {
        /// A repository cutting small chunks, and a data directory with a bit of everything.
        fn new() -> std::result::Result<Self, Box<dyn std::error::Error>> {
            let dir = tempfile::tempdir()?;
            let data = dir.path().join("data");
            fs::create_dir_all(data.join("sub/deeper"))?;
            fs::write(data.join("hello.txt"), "hello\n")?;
            fs::write(data.join("sub/big.bin"), noise(1, 600 << 10))?;
            fs::hard_link(data.join("hello.txt"), data.join("sub/again.txt"))?;
            std::os::unix::fs::symlink("../hello.txt", data.join("sub/link"))?;
            Repository::init(
                &dir.path().join("store"),
                ChunkerParams { min: 16 << 10, avg: 64 << 10, max: 256 << 10, seed: 0 },
            )?;
            Ok(Fixture { dir, data })
        }

        fn repository(&self, access: Access) -> Result<Repository> {
            Repository::open(&self.dir.path().join("store"), access, &mut |_| {})
        }

        fn backup(&self, env: &str, commit: Option<&str>) -> Result<Snapshot> {
            let services = vec![
                ServiceSource {
                    name: "db".into(),
                    service: Box::new(Streams(vec![("dump.sql", b"SELECT 1;\n".to_vec())])),
                },
                ServiceSource {
                    name: "tables".into(),
                    service: Box::new(Streams(vec![("a.sql", b"a".to_vec()), ("b.sql", b"b".to_vec())])),
                },
            ];
            let options = BackupOptions {
                env: env.into(),
                commit: commit.map(str::to_owned),
                created: Utc::now(),
                trigger: Trigger::Manual,
                mode: Mode::Live,
                note: None,
                expires: None,
                user: "me".into(),
                host: "here".into(),
                mounts: vec![Mount { name: "data".into(), path: self.data.clone(), exclude: vec![] }],
                services,
                partial: false,
                pause: None,
            };
            Ok(backup(&self.repository(Access::Write)?, &options, &NoProgress)?.snapshot)
        }

        fn view(&self, scope: Scope) -> Result<View> {
            let mut options = ViewOptions::new(scope);
            options.refresh = Duration::ZERO;
            View::new(self.repository(Access::Read)?, options)
        }
    }

    fn names(view: &View, path: &str) -> std::result::Result<Vec<String>, ViewError> {
        let listing = view.list(view.resolve(path)?.ino)?;
        Ok(listing.entries(0).map(|(name, _)| String::from_utf8_lossy(name).into_owned()).collect())
    }

    fn read_all(view: &View, path: &str) -> std::result::Result<Vec<u8>, ViewError> {
        let file = view.open(view.resolve(path)?.ino)?;
        let mut bytes = Vec::new();
        loop {
            let data = view.read(&file, bytes.len() as u64, 100_000)?;
            if data.is_empty() {
                return Ok(bytes);
            }
            bytes.extend_from_slice(&data);
        }
    }

    #[test]
    fn a_snapshot_folder_holds_files_services_and_its_json() -> TestResult {
        let fixture = Fixture::new()?;
        let snapshot = fixture.backup("main", Some("c0ffee00"))?;
        let view = fixture.view(Scope::All)?;
        assert_eq!(names(&view, "")?, ["commits", "envs", "ids"]);
        let folder = folder_name(&snapshot);
        assert_eq!(names(&view, "envs/main")?, [folder.as_str(), "latest"]);
        assert_eq!(view.read_link(view.resolve("envs/main/latest")?.ino)?, folder.as_bytes());
        assert_eq!(names(&view, "envs/main/latest/")?, ["files", "services", "snapshot.json"]);
        assert_eq!(names(&view, "envs/main/latest/services")?, ["db.sql", "tables"]);
        assert_eq!(names(&view, "envs/main/latest/services/tables")?, ["a.sql", "b.sql"]);
        assert_eq!(read_all(&view, "envs/main/latest/services/db.sql")?, b"SELECT 1;\n");
        assert_eq!(names(&view, "envs/main/latest/files/data")?, ["hello.txt", "sub"]);
        assert_eq!(names(&view, "envs/main/latest/files/data/sub")?, ["again.txt", "big.bin", "deeper", "link"]);
        let json: serde_json::Value = serde_json::from_slice(&read_all(&view, "envs/main/latest/snapshot.json")?)?;
        assert_eq!(json["env"], "main");

        let id = snapshot.id.to_hex();
        for path in
            [format!("ids/{id}"), format!("ids/{}", &id[..6]), format!("commits/c0ffee00/{id}"), "commits/c0ff/".into()]
        {
            assert!(view.resolve(&path).is_ok(), "{path} resolves");
        }
        assert_eq!(view.resolve(&format!("ids/{}", &id[..3])).err(), Some(ViewError::NotFound), "too short");
        assert_eq!(view.resolve("envs/main/latest/nothing").err(), Some(ViewError::NotFound));
        assert_eq!(
            view.list(view.resolve("envs/main/latest/snapshot.json")?.ino).err(),
            Some(ViewError::NotADirectory)
        );
        Ok(())
    }

    #[test]
    fn listings_past_the_entry_bound_are_refused_and_what_was_listed_still_reads() -> TestResult {
        let fixture = Fixture::new()?;
        fixture.backup("main", None)?;
        let told = Arc::new(AtomicU64::new(0));
        let mut options = ViewOptions::new(Scope::All);
        // Room for `data` (two entries), not for `data/sub` as well (four more).
        options.entry_bytes = 3 * ENTRY_FIXED as u64;
        options.exhausted = Box::new({
            let told = told.clone();
            move |_| {
                told.fetch_add(1, Ordering::Relaxed);
            }
        });
        let view = View::new(fixture.repository(Access::Read)?, options)?;
        assert_eq!(names(&view, "envs/main/latest/files/data")?, ["hello.txt", "sub"]);
        let refused = Some(ViewError::Exhausted { limit: 3 * ENTRY_FIXED as u64 });
        assert_eq!(names(&view, "envs/main/latest/files/data/sub").err(), refused);
        assert_eq!(names(&view, "envs/main/latest/files/data/sub").err(), refused, "refused again");
        assert_eq!(told.load(Ordering::Relaxed), 1, "told once");
        assert_eq!(read_all(&view, "envs/main/latest/files/data/hello.txt")?, b"hello\n");
        assert_eq!(names(&view, "envs/main/latest/files/data")?, ["hello.txt", "sub"], "still listed");
        assert_eq!(names(&view, "envs/main/latest/services")?, ["db.sql", "tables"], "made-up folders cost nothing");

        let view = fixture.view(Scope::All)?;
        assert_eq!(names(&view, "envs/main/latest/files/data/sub")?, ["again.txt", "big.bin", "deeper", "link"]);
        Ok(())
    }

    #[test]
    fn files_read_as_captured_across_chunks() -> TestResult {
        let fixture = Fixture::new()?;
        fixture.backup("main", None)?;
        let view = fixture.view(Scope::All)?;
        let base = "envs/main/latest/files/data";
        let big = fs::read(fixture.data.join("sub/big.bin"))?;
        assert_eq!(read_all(&view, &format!("{base}/sub/big.bin"))?, big);
        let file = view.open(view.resolve(&format!("{base}/sub/big.bin"))?.ino)?;
        let Content::Chunks(layout) = &file.content else { return Err("a stored file".into()) };
        assert!(layout.as_ref().as_ref().map(Vec::len).map_err(String::clone)? > 3, "several chunks");
        for (offset, size) in [(0, 1), (65_535, 300_000), (599 << 10, 1 << 20), (600 << 10, 10), (1 << 30, 10)] {
            let end = (offset + size).min(big.len());
            let expected = big.get(offset..end).unwrap_or_default();
            assert_eq!(&*view.read(&file, offset as u64, size)?, expected, "{offset}+{size}");
        }

        let hello = view.resolve(&format!("{base}/hello.txt"))?;
        let again = view.resolve(&format!("{base}/sub/again.txt"))?;
        assert_eq!(hello.ino, again.ino, "hard links share an inode");
        assert_eq!(hello.links, 2);
        let link = view.resolve(&format!("{base}/sub/link"))?;
        assert_eq!(link.kind, EntryKind::Symlink);
        assert_eq!(view.read_link(link.ino)?, b"../hello.txt");
        assert_eq!(view.open(view.resolve(base)?.ino).err(), Some(ViewError::IsADirectory));
        Ok(())
    }

    #[test]
    fn inode_numbers_stay_and_new_snapshots_appear() -> TestResult {
        let fixture = Fixture::new()?;
        let first = fixture.backup("main", None)?;
        let view = fixture.view(Scope::All)?;
        let file = view.resolve("envs/main/latest/files/data/hello.txt")?;
        let folder = view.resolve(&format!("envs/main/{}", folder_name(&first)))?;
        let latest = view.resolve("envs/main/latest")?;

        std::thread::sleep(Duration::from_millis(1100));
        fs::write(fixture.data.join("hello.txt"), "changed\n")?;
        let second = fixture.backup("main", None)?;
        fixture.backup("release/1.0", None)?;
        assert_eq!(names(&view, "envs/main")?, [folder_name(&first), folder_name(&second), "latest".to_owned()]);
        assert_eq!(names(&view, "envs")?, ["main", "release"]);
        assert_eq!(names(&view, "envs/release")?, ["1.0"]);
        assert_eq!(view.resolve(&format!("envs/main/{}", folder_name(&first)))?.ino, folder.ino, "same number");
        assert_ne!(view.resolve("envs/main/latest")?.ino, latest.ino, "latest points elsewhere: a new symlink");
        assert_eq!(read_all(&view, "envs/main/latest/files/data/hello.txt")?, b"changed\n");
        assert_eq!(view.attributes(file.ino)?, file, "the old file keeps its number and attributes");
        assert_eq!(view.resolve(&format!("ids/{}/files/data/hello.txt", first.id))?.kind, EntryKind::File);
        Ok(())
    }

    #[test]
    fn a_damaged_chunk_fails_the_reads_that_need_it() -> TestResult {
        let fixture = Fixture::new()?;
        let big = fs::read(fixture.data.join("sub/big.bin"))?;
        fixture.backup("main", None)?;
        let needle = &big[300_000..300_064];
        let mut flipped = false;
        for (name, _) in fixture.repository(Access::Read)?.backend().list("packs")? {
            let path = fixture.dir.path().join("store").join(&name);
            let mut bytes = fs::read(&path)?;
            if let Some(at) = bytes.windows(needle.len()).position(|window| window == needle) {
                bytes[at] ^= 1;
                fs::write(&path, &bytes)?;
                flipped = true;
            }
        }
        assert!(flipped);
        let reports = Arc::new(AtomicU64::new(0));
        let mut options = ViewOptions::new(Scope::All);
        let counter = reports.clone();
        options.damaged = Box::new(move |_| {
            counter.fetch_add(1, Ordering::Relaxed);
        });
        let view = View::new(fixture.repository(Access::Read)?, options)?;
        let path = "envs/main/latest/files/data/sub/big.bin";
        assert!(matches!(read_all(&view, path), Err(ViewError::Damaged(_))));
        assert!(matches!(read_all(&view, path), Err(ViewError::Damaged(_))));
        let file = view.open(view.resolve(path)?.ino)?;
        assert_eq!(&*view.read(&file, 0, 1000)?, &big[..1000], "the chunks before it still read");
        assert_eq!(reports.load(Ordering::Relaxed), 1, "reported once");
        assert_eq!(read_all(&view, "envs/main/latest/files/data/hello.txt")?, b"hello\n");
        Ok(())
    }

    #[test]
    fn the_files_after_an_opened_one_are_decoded_ahead() -> TestResult {
        let fixture = Fixture::new()?;
        for index in 0..5 {
            fs::write(fixture.data.join(format!("sub/deeper/{index}.txt")), format!("file {index}\n"))?;
        }
        fixture.backup("main", None)?;
        let view = fixture.view(Scope::All)?;
        let (sender, prefetched) = std::sync::mpsc::channel();
        let sender = Mutex::new(sender);
        view.on_prefetched(Box::new(move |ino, offset, bytes| {
            let _ = store::lock(&sender).send((ino, offset, bytes.to_vec()));
        }));
        let dir = "envs/main/latest/files/data/sub/deeper";
        let first = view.open(view.resolve(&format!("{dir}/0.txt"))?.ino)?;
        assert_eq!(&*view.read(&first, 0, 100)?, b"file 0\n");
        let mut seen = Vec::new();
        while let Ok((ino, offset, bytes)) = prefetched.recv_timeout(Duration::from_secs(5)) {
            assert_eq!(offset, 0);
            seen.push((ino, bytes));
            if seen.len() == 4 {
                break;
            }
        }
        seen.sort();
        for (index, (ino, bytes)) in seen.iter().enumerate() {
            assert_eq!(view.resolve(&format!("{dir}/{}.txt", index + 1))?.ino, *ino);
            assert_eq!(bytes, format!("file {}\n", index + 1).as_bytes());
        }
        assert_eq!(seen.len(), 4, "files 1 to 4 were decoded ahead");
        Ok(())
    }

    #[test]
    fn one_snapshot_at_the_root() -> TestResult {
        let fixture = Fixture::new()?;
        let snapshot = fixture.backup("main", None)?;
        let view = fixture.view(Scope::One(Box::new(snapshot)))?;
        assert_eq!(names(&view, "")?, ["files", "services", "snapshot.json"]);
        assert_eq!(read_all(&view, "files/data/hello.txt")?, b"hello\n");
        Ok(())
    }

    fn snapshot(env: &str, commit: Option<&str>, seconds: i64) -> Arc<Snapshot> {
        let manifest = Manifest {
            format: 1,
            env: env.into(),
            commit: commit.map(str::to_owned),
            created: DateTime::from_timestamp(1_800_000_000 + seconds, 0).unwrap_or_default(),
            trigger: Trigger::Manual,
            mode: Mode::Live,
            note: None,
            expires: None,
            host: "h".into(),
            user: "u".into(),
            parent: None,
            stored: 0,
            paused_ms: None,
            duration_ms: None,
            partial: false,
            elements: vec![Element {
                name: "data".into(),
                kind: ElementKind::Mount,
                source: "/".into(),
                tree: ObjectId::of(b"tree"),
                size: 0,
                files: 0,
                dirs: 1,
            }],
        };
        let (id, _) = manifest.encode();
        Arc::new(Snapshot { id, manifest })
    }

    #[test]
    fn branches_nest_and_names_that_collide_are_left_out() {
        // Newest first, as the catalog lists them.
        let snapshots = [
            snapshot("release/latest", None, 4),
            snapshot("release/1.0", Some("abcd1234"), 3),
            snapshot("release", Some("abcd1234"), 2),
            snapshot("main", Some("ffff0000"), 1),
        ];
        let names = |dir: LiveDir| -> Vec<String> {
            let mut names: Vec<String> = live_children(&dir, &snapshots)
                .into_iter()
                .map(|(name, _)| String::from_utf8_lossy(&name).into_owned())
                .collect();
            names.sort();
            names
        };
        assert_eq!(names(LiveDir::Envs { prefix: String::new() }), ["main", "release"]);
        let release = names(LiveDir::Envs { prefix: "release".into() });
        assert_eq!(release, ["1.0", folder_name(&snapshots[2]).as_str(), "latest"], "release/latest is left out");
        assert_eq!(names(LiveDir::Commits), ["abcd1234", "ffff0000"]);
        assert_eq!(names(LiveDir::Commit { commit: "abcd1234".into() }).len(), 2);
        assert_eq!(names(LiveDir::Ids).len(), 4);
        assert!(resolve_prefix(&LiveDir::Commits, b"abcd", &snapshots).is_some());
        assert!(resolve_prefix(&LiveDir::Commits, b"abc", &snapshots).is_none(), "too short");
        assert!(resolve_prefix(&LiveDir::Commits, b"zzzz", &snapshots).is_none());
        assert_eq!(stream_extension(b"dump.sql"), Some("sql"));
        assert_eq!(stream_extension(b".hidden"), None);
        assert_eq!(stream_extension(b"dump"), None);
        assert!(folder_name(&snapshots[0]).starts_with("2027-01-15T08-00-04Z_"), "{}", folder_name(&snapshots[0]));
    }
}
