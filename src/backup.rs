//! Taking a snapshot of an environment's mounts.
//!
//! Directories are walked in parallel (rayon): every entry of a directory is handled
//! on whichever core is free, subdirectories recursively, and large files are cut
//! into batches of chunks that are hashed and compressed in parallel. A file whose
//! inode, size, mtime and ctime match the parent snapshot is not read again.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::{self, File, Metadata};
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use rayon::prelude::*;

use crate::element::mount::{Excludes, Mount, scan_size};
use crate::element::service::{DumpSink, Service};
use crate::error::{Error, IoContext, Result};
use crate::id::ObjectId;
use crate::progress::Progress;
use crate::repository::Repository;
use crate::snapshot::{Element, ElementKind, MANIFEST_FORMAT, Manifest, Mode, Snapshot, Trigger};
use crate::store::BlobWriter;
use crate::store::chunker::ChunkerParams;
use crate::store::pack::{BlobKind, MAX_TREE_BLOB};
use crate::tree::{Node, NodeKind, Tree};

/// A service to capture: its element name and its adapter.
pub struct ServiceSource {
    /// The element name.
    pub name: String,
    /// The adapter that dumps it.
    pub service: Box<dyn Service>,
}

impl std::fmt::Debug for ServiceSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceSource").field("name", &self.name).field("address", &self.service.address()).finish()
    }
}

/// What to capture, and how to label it.
#[derive(Debug)]
pub struct BackupOptions {
    /// The environment (branch).
    pub env: String,
    /// Its HEAD commit, if it has one.
    pub commit: Option<String>,
    /// When it is taken, as recorded in the manifest. The caller's clock, so that
    /// retention and schedules can be tested, and a history replayed, at any time.
    pub created: DateTime<Utc>,
    /// Why.
    pub trigger: Trigger,
    /// Consistent or live.
    pub mode: Mode,
    /// A note from the user.
    pub note: Option<String>,
    /// When retention may remove it.
    pub expires: Option<DateTime<Utc>>,
    /// Who takes it.
    pub user: String,
    /// Where.
    pub host: String,
    /// The mounts to capture.
    pub mounts: Vec<Mount>,
    /// The services to capture.
    pub services: Vec<ServiceSource>,
    /// Whether these are only some of the environment's elements (`--element`).
    pub partial: bool,
    /// For a consistent snapshot of a live application: how to pause and resume it.
    pub pause: Option<Box<dyn PauseControl>>,
}

/// Pauses and resumes an environment (e.g. maintenance mode on and off).
pub trait PauseControl: Send + Sync {
    /// Stops the application writing.
    fn pause(&self) -> Result<()>;
    /// Lets it write again. Always called once `pause` was attempted.
    fn resume(&self) -> Result<()>;
}

impl std::fmt::Debug for dyn PauseControl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PauseControl")
    }
}

/// What a backup did.
#[derive(Debug, Clone)]
pub struct BackupReport {
    /// The new snapshot.
    pub snapshot: Snapshot,
    /// Files read because they were new or changed.
    pub files_read: u64,
    /// Files whose content was taken from the parent snapshot unread.
    pub files_unchanged: u64,
    /// Bytes read from files.
    pub bytes_read: u64,
    /// Special files (sockets, fifos, devices) left out.
    pub skipped: u64,
    /// How long the environment was paused, when it was.
    pub paused: Option<std::time::Duration>,
    /// How long capturing each element took, by name, in the order captured (both
    /// passes of a mount in a paused snapshot counted together).
    pub durations: Vec<(String, std::time::Duration)>,
    /// Why resuming failed, if it did: the snapshot is complete, but the environment
    /// may still be paused.
    pub resume_error: Option<String>,
}

/// Takes a snapshot. The repository must be open for writing.
pub fn backup(repository: &Repository, options: &BackupOptions, progress: &dyn Progress) -> Result<BackupReport> {
    let created = options.created;
    let began = std::time::Instant::now();
    // Every mount is checked before anything is stored.
    let mut sources = Vec::with_capacity(options.mounts.len());
    for mount in &options.mounts {
        let missing = || Error::MountMissing { name: mount.name.clone(), path: mount.path.clone() };
        match fs::metadata(&mount.path) {
            Ok(metadata) if metadata.is_dir() => {}
            Ok(_) => return Err(missing()),
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Err(missing()),
            Err(error) => return Err(Error::io("reading", &mount.path, error)),
        }
        sources.push((mount, mount.excludes()?));
    }
    let parent = repository.snapshots(Some(&options.env))?.into_iter().next();
    // What progress measures against: the element's size in the last snapshot.
    let expected =
        |name: &str| parent.as_ref().and_then(|parent| parent.manifest.element(name)).map(|element| element.size);
    let counters = Counters::default();
    let remembered: Mutex<HashMap<ObjectId, Tree>> = Mutex::new(HashMap::new());
    let mut paused = None;
    let mut resume_error = None;
    let durations: Mutex<Vec<(String, std::time::Duration)>> = Mutex::new(Vec::new());
    let timed = |name: &str, began: std::time::Instant| {
        let mut durations = durations.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        match durations.iter_mut().find(|(known, _)| known == name) {
            Some((_, total)) => *total += began.elapsed(),
            None => durations.push((name.to_owned(), began.elapsed())),
        }
    };
    let (elements, totals) =
        BlobWriter::pipelined(repository.backend(), repository.catalog(), repository.crypto(), |writer| {
            let walk = |mount: &Mount, excludes: &Excludes, parent_tree: Option<ObjectId>, remember: bool| {
                let began = std::time::Instant::now();
                let estimate = expected(&mount.name);
                progress.begin(&format!("backing up {}", mount.name), estimate);
                let walker = Walker {
                    repository,
                    writer,
                    excludes: excludes.clone(),
                    chunker: repository.config().chunker,
                    progress,
                    counters: &counters,
                    remembered: &remembered,
                    remember,
                };
                // With nothing to measure against, a second thread counts the mount's bytes
                // while the walk reads them, so that even a first backup shows how far it
                // is (a stat of every file: seconds for a tree whose reading takes minutes).
                let stop = AtomicBool::new(false);
                let summary = std::thread::scope(|scope| {
                    if estimate.is_none() {
                        scope.spawn(|| {
                            if let Some(total) = scan_size(&mount.path, excludes, &stop) {
                                progress.estimate(total);
                            }
                        });
                    }
                    let summary = walker.directory(&mount.path, Path::new(""), parent_tree);
                    stop.store(true, Ordering::Relaxed);
                    summary
                });
                progress.finish();
                timed(&mount.name, began);
                summary
            };
            let previous_tree = |mount: &Mount| {
                parent
                    .as_ref()
                    .and_then(|snapshot| snapshot.manifest.element(&mount.name))
                    .filter(|element| element.kind == ElementKind::Mount)
                    .map(|element| element.tree)
            };
            // Consistent mode with a pause: a first pass while the application runs reads
            // nearly everything; the second, paused, pass reads only what changed meanwhile,
            // so the pause lasts about as long as an unchanged re-backup.
            let mut first_pass = Vec::new();
            if options.pause.is_some() {
                for (mount, excludes) in &sources {
                    first_pass.push(walk(mount, excludes, previous_tree(mount), true)?.tree);
                }
            }
            let paused_at = std::time::Instant::now();
            let capture = || -> Result<Vec<Element>> {
                if let Some(control) = &options.pause {
                    control.pause()?;
                }
                let mut elements = Vec::with_capacity(sources.len() + options.services.len());
                for (index, (mount, excludes)) in sources.iter().enumerate() {
                    let parent_tree = first_pass.get(index).copied().flatten().or_else(|| previous_tree(mount));
                    let summary = walk(mount, excludes, parent_tree, false)?;
                    elements.push(Element {
                        name: mount.name.clone(),
                        kind: ElementKind::Mount,
                        source: mount.path.display().to_string(),
                        tree: summary.tree.expect("a directory always has a tree"),
                        size: summary.size,
                        files: summary.files,
                        dirs: summary.dirs,
                    });
                }
                for source in &options.services {
                    let began = std::time::Instant::now();
                    progress.begin(&format!("dumping {}", source.name), expected(&source.name));
                    let content =
                        Content { writer, chunker: repository.config().chunker, progress, counters: &counters };
                    let sink = ServiceSink { content, created, nodes: Mutex::new(Vec::new()) };
                    source.service.capture(&sink)?;
                    progress.finish();
                    timed(&source.name, began);
                    let mut nodes = sink.nodes.into_inner().unwrap_or_else(std::sync::PoisonError::into_inner);
                    nodes.sort_by(|a, b| a.name.cmp(&b.name));
                    if let Some(pair) = nodes.windows(2).find(|pair| pair[0].name == pair[1].name) {
                        return Err(Error::ServiceFailed {
                            name: source.name.clone(),
                            address: source.service.address(),
                            detail: format!("the adapter wrote `{}` twice", String::from_utf8_lossy(&pair[0].name)),
                        });
                    }
                    let size = nodes.iter().map(|node| node.size).sum();
                    let files = nodes.len() as u64;
                    let tree = writer.add(BlobKind::Tree, &Tree { nodes }.encode())?;
                    elements.push(Element {
                        name: source.name.clone(),
                        kind: ElementKind::Service,
                        source: source.service.address(),
                        tree,
                        size,
                        files,
                        dirs: 1,
                    });
                }
                Ok(elements)
            };
            let captured = capture();
            if let Some(control) = &options.pause {
                // Resumed whatever happened: an environment left paused is worse than a
                // failed snapshot.
                resume_error = control.resume().err().map(|error| error.to_string());
                paused = Some(paused_at.elapsed());
            }
            captured
        })?;
    let manifest = Manifest {
        format: MANIFEST_FORMAT,
        env: options.env.clone(),
        commit: options.commit.clone(),
        created,
        trigger: options.trigger,
        mode: options.mode,
        note: options.note.clone(),
        expires: options.expires,
        host: options.host.clone(),
        user: options.user.clone(),
        parent: parent.map(|snapshot| snapshot.id),
        stored: totals.stored_bytes,
        paused_ms: paused.map(|duration| u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)),
        duration_ms: Some(u64::try_from(began.elapsed().as_millis()).unwrap_or(u64::MAX)),
        partial: options.partial,
        elements,
    };
    let snapshot = repository.publish(&manifest)?;
    Ok(BackupReport {
        snapshot,
        files_read: counters.files_read.load(Ordering::Relaxed),
        files_unchanged: counters.files_unchanged.load(Ordering::Relaxed),
        bytes_read: counters.bytes_read.load(Ordering::Relaxed),
        skipped: counters.skipped.load(Ordering::Relaxed),
        paused,
        resume_error,
        durations: durations.into_inner().unwrap_or_else(std::sync::PoisonError::into_inner),
    })
}

#[derive(Debug, Default)]
struct Counters {
    files_read: AtomicU64,
    files_unchanged: AtomicU64,
    bytes_read: AtomicU64,
    skipped: AtomicU64,
}

/// Totals of what an entry holds, and its tree when it is a directory.
#[derive(Debug, Default, Clone, Copy)]
struct Summary {
    tree: Option<ObjectId>,
    size: u64,
    files: u64,
    dirs: u64,
}

struct Walker<'a> {
    repository: &'a Repository,
    writer: &'a BlobWriter<'a>,
    excludes: Excludes,
    chunker: ChunkerParams,
    progress: &'a dyn Progress,
    counters: &'a Counters,
    /// Trees written by a first pass, which are not readable from the store until
    /// their pack is written: the second pass finds its parent trees here.
    remembered: &'a Mutex<HashMap<ObjectId, Tree>>,
    /// Whether this pass keeps its trees in `remembered`.
    remember: bool,
}

/// Chunks of a stream waiting to be stored, per core: enough to keep every core busy,
/// few enough to bound memory (each is at most the maximum chunk size).
const IN_FLIGHT: usize = 2;

impl Walker<'_> {
    fn directory(&self, path: &Path, relative: &Path, parent: Option<ObjectId>) -> Result<Summary> {
        let mut entries: Vec<(Vec<u8>, PathBuf)> = fs::read_dir(path)
            .context("reading the directory", path)?
            .map(|entry| entry.map(|entry| (entry.file_name().as_bytes().to_vec(), entry.path())))
            .collect::<io::Result<_>>()
            .context("reading the directory", path)?;
        entries.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        // A parent tree that cannot be read only costs reading the files again.
        let parent_tree = parent.and_then(|id| {
            let remembered = crate::store::lock(self.remembered).get(&id).cloned();
            remembered.or_else(|| self.repository.read_tree(&id).ok())
        });
        let results: Vec<Option<(Node, Summary)>> = entries
            .par_iter()
            .map(|(name, child)| self.entry(name, child, relative, parent_tree.as_ref()))
            .collect::<Result<_>>()?;
        let mut summary = Summary { dirs: 1, ..Summary::default() };
        let mut tree = Tree::default();
        for (node, child) in results.into_iter().flatten() {
            summary.size += child.size;
            summary.files += child.files;
            summary.dirs += child.dirs;
            tree.nodes.push(node);
        }
        let encoded = tree.encode();
        if encoded.len() > MAX_TREE_BLOB as usize {
            return Err(Error::DirectoryTooLarge {
                path: path.to_owned(),
                entries: tree.nodes.len(),
                bytes: encoded.len(),
            });
        }
        let id = self.writer.add(BlobKind::Tree, &encoded)?;
        if self.remember {
            crate::store::lock(self.remembered).insert(id, tree);
        }
        summary.tree = Some(id);
        Ok(summary)
    }

    fn entry(
        &self,
        name: &[u8],
        path: &Path,
        relative: &Path,
        parent: Option<&Tree>,
    ) -> Result<Option<(Node, Summary)>> {
        let metadata = match fs::symlink_metadata(path) {
            Ok(metadata) => metadata,
            // Removed since the directory was listed: it is simply not in the snapshot.
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(error) => return Err(Error::io("reading", path, error)),
        };
        // What a restore writes before it moves into place is not the environment's data.
        if relative.as_os_str().is_empty() && name.starts_with(crate::restore::STAGING_PREFIX.as_bytes()) {
            return Ok(None);
        }
        let relative = relative.join(OsStr::from_bytes(name));
        let file_type = metadata.file_type();
        if self.excludes.is_excluded(&relative, file_type.is_dir()) {
            return Ok(None);
        }
        let previous = parent.and_then(|tree| tree.find(name));
        let mut node = node_from(name, &metadata);
        let mut summary = Summary::default();
        if file_type.is_file() {
            node.kind = NodeKind::File;
            match previous.filter(|previous| node.unchanged_since(previous)) {
                Some(previous) => {
                    node.content.clone_from(&previous.content);
                    self.counters.files_unchanged.fetch_add(1, Ordering::Relaxed);
                    self.progress.add_bytes(node.size);
                }
                None => match self.file(path, node.size) {
                    Ok((content, size)) => {
                        node.content = content;
                        node.size = size;
                        self.counters.files_read.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
                    Err(error) => return Err(unwrap_store_error(error, path)),
                },
            }
            self.progress.add_file();
            summary.size = node.size;
            summary.files = 1;
        } else if file_type.is_dir() {
            node.kind = NodeKind::Dir;
            node.size = 0;
            let previous_tree = previous.filter(|p| p.kind == NodeKind::Dir).and_then(|p| p.subtree);
            summary = self.directory(path, &relative, previous_tree)?;
            node.subtree = summary.tree;
        } else if file_type.is_symlink() {
            node.kind = NodeKind::Symlink;
            let target = match fs::read_link(path) {
                Ok(target) => target,
                Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
                Err(error) => return Err(Error::io("reading the symlink", path, error)),
            };
            node.target = Some(target.as_os_str().as_bytes().to_vec());
        } else {
            self.counters.skipped.fetch_add(1, Ordering::Relaxed);
            return Ok(None);
        }
        Ok(Some((node, summary)))
    }

    /// Reads, chunks and stores a file; returns its chunk ids and the bytes read.
    /// `expected` is the size it had when listed; it may change while it is read.
    fn file(&self, path: &Path, expected: u64) -> io::Result<(Vec<ObjectId>, u64)> {
        let mut file = File::open(path)?;
        if expected <= WHOLE_FILE_LIMIT {
            // Most files are small: one read into a buffer of the right size, chunked
            // in place, costs less than a streaming chunker's buffer per file.
            let mut data = Vec::with_capacity(expected as usize + 1);
            file.read_to_end(&mut data)?;
            let pieces: Vec<&[u8]> = self.chunker.cut(&data).collect();
            let content = self.content().store_chunks(&pieces)?;
            self.content().account(data.len() as u64);
            return Ok((content, data.len() as u64));
        }
        self.content().stream(&mut file)
    }

    fn content(&self) -> Content<'_> {
        Content { writer: self.writer, chunker: self.chunker, progress: self.progress, counters: self.counters }
    }
}

/// Cuts content into chunks and stores them: shared by files and service dumps.
struct Content<'a> {
    writer: &'a BlobWriter<'a>,
    chunker: ChunkerParams,
    progress: &'a dyn Progress,
    counters: &'a Counters,
}

impl Content<'_> {
    /// Chunks and stores everything `reader` yields; returns the chunk ids and the
    /// bytes read. Cutting runs on this thread while the chunks already cut are hashed,
    /// compressed and stored on the others; at most [`IN_FLIGHT`] per core wait, which
    /// bounds memory for a stream of any length.
    fn stream(&self, reader: &mut dyn Read) -> io::Result<(Vec<ObjectId>, u64)> {
        let ids: Mutex<Vec<Option<ObjectId>>> = Mutex::new(Vec::new());
        let failure: Mutex<Option<io::Error>> = Mutex::new(None);
        let in_flight = InFlight::default();
        let limit = IN_FLIGHT * rayon::current_num_threads().max(1);
        let mut size = 0u64;
        rayon::in_place_scope(|scope| -> io::Result<()> {
            for (index, chunk) in self.chunker.stream(reader).enumerate() {
                let data = chunk.map_err(chunk_error)?.data;
                size += data.len() as u64;
                self.account(data.len() as u64);
                crate::store::lock(&ids).push(None);
                in_flight.wait_below(limit);
                if crate::store::lock(&failure).is_some() {
                    break;
                }
                in_flight.start();
                let (ids, failure, in_flight) = (&ids, &failure, &in_flight);
                scope.spawn(move |_| {
                    match self.writer.add(BlobKind::Data, &data) {
                        Ok(id) => crate::store::lock(ids)[index] = Some(id),
                        Err(error) => {
                            crate::store::lock(failure).get_or_insert(io::Error::other(WrappedError(error)));
                        }
                    }
                    in_flight.end();
                });
            }
            Ok(())
        })?;
        if let Some(error) = failure.into_inner().unwrap_or_else(std::sync::PoisonError::into_inner) {
            return Err(error);
        }
        let ids = ids.into_inner().unwrap_or_else(std::sync::PoisonError::into_inner);
        let content =
            ids.into_iter().collect::<Option<Vec<_>>>().ok_or_else(|| io::Error::other("a chunk was lost"))?;
        Ok((content, size))
    }

    /// Stores chunks, hashing and compressing them in parallel when there are several.
    fn store_chunks(&self, pieces: &[&[u8]]) -> io::Result<Vec<ObjectId>> {
        let store =
            |data: &&[u8]| self.writer.add(BlobKind::Data, data).map_err(|error| io::Error::other(WrappedError(error)));
        if pieces.len() > 1 { pieces.par_iter().map(store).collect() } else { pieces.iter().map(store).collect() }
    }

    fn account(&self, bytes: u64) {
        self.counters.bytes_read.fetch_add(bytes, Ordering::Relaxed);
        self.progress.add_bytes(bytes);
    }
}

/// The chunks of a stream being stored on other threads, which the thread that cuts
/// the stream waits on when too many are. Waiting blocks rather than spins: on a
/// machine of two cores a spinning cutter takes a core's share from the compressors
/// it waits for (measured: an eighth of the CPU time of a database capture).
#[derive(Default)]
struct InFlight {
    count: Mutex<usize>,
    ended: Condvar,
}

impl InFlight {
    fn start(&self) {
        *crate::store::lock(&self.count) += 1;
    }

    fn end(&self) {
        *crate::store::lock(&self.count) -= 1;
        self.ended.notify_one();
    }

    /// Returns once fewer than `limit` chunks are in flight. On a rayon thread it runs
    /// queued work meanwhile; it never waits long without looking for some, since the
    /// chunks it waits for may be queued behind it on the same pool.
    fn wait_below(&self, limit: usize) {
        loop {
            let count = crate::store::lock(&self.count);
            if *count < limit {
                return;
            }
            drop(count);
            if rayon::yield_now() == Some(rayon::Yield::Executed) {
                continue;
            }
            let count = crate::store::lock(&self.count);
            if *count >= limit {
                let _ = self.ended.wait_timeout(count, Duration::from_millis(1));
            }
        }
    }
}

/// Stores the dump streams of one service as the files of one tree.
struct ServiceSink<'a> {
    content: Content<'a>,
    created: DateTime<Utc>,
    nodes: Mutex<Vec<Node>>,
}

impl DumpSink for ServiceSink<'_> {
    fn add(&self, name: &str, reader: &mut dyn Read) -> Result<()> {
        if name.is_empty() || name == "." || name == ".." || name.contains(['/', '\0']) {
            return Err(Error::UnsafePath {
                path: PathBuf::from(name),
                reason: "a dump stream must be named by one plain file name".to_owned(),
            });
        }
        let (content, size) =
            self.content.stream(reader).map_err(|error| unwrap_store_error(error, Path::new(name)))?;
        self.content.progress.add_file();
        let node = Node {
            name: name.as_bytes().to_vec(),
            kind: NodeKind::File,
            mode: 0o644,
            uid: 0,
            gid: 0,
            mtime: self.created.timestamp(),
            mtime_nsec: self.created.timestamp_subsec_nanos(),
            ctime: self.created.timestamp(),
            ctime_nsec: self.created.timestamp_subsec_nanos(),
            inode: 0,
            links: 1,
            size,
            content,
            subtree: None,
            target: None,
        };
        crate::store::lock(&self.nodes).push(node);
        Ok(())
    }
}

/// Files up to this size are read whole and chunked in memory; larger ones are
/// streamed.
const WHOLE_FILE_LIMIT: u64 = 16 << 20;

/// Carries a store error through the `io::Error` of a file read, so a full repository
/// is reported as such rather than as a failure to read the file.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct WrappedError(Error);

fn chunk_error(error: fastcdc::v2020::Error) -> io::Error {
    match error {
        fastcdc::v2020::Error::IoError(error) => error,
        other => io::Error::other(other.to_string()),
    }
}

fn node_from(name: &[u8], metadata: &Metadata) -> Node {
    Node {
        name: name.to_vec(),
        kind: NodeKind::File,
        mode: metadata.mode() & 0o7777,
        uid: metadata.uid(),
        gid: metadata.gid(),
        mtime: metadata.mtime(),
        mtime_nsec: u32::try_from(metadata.mtime_nsec()).unwrap_or(0),
        ctime: metadata.ctime(),
        ctime_nsec: u32::try_from(metadata.ctime_nsec()).unwrap_or(0),
        inode: metadata.ino(),
        links: metadata.nlink(),
        size: metadata.len(),
        content: Vec::new(),
        subtree: None,
        target: None,
    }
}

/// Turns an I/O error from [`Walker::file`] back into the store error it carries, if any.
fn unwrap_store_error(error: io::Error, path: &Path) -> Error {
    if error.get_ref().is_some_and(|inner| inner.is::<WrappedError>()) {
        if let Some(Ok(wrapped)) = error.into_inner().map(|inner| inner.downcast::<WrappedError>()) {
            return wrapped.0;
        }
        return Error::Corrupt { what: path.display().to_string(), detail: "lost error".to_owned() };
    }
    Error::io("reading", path, error)
}
