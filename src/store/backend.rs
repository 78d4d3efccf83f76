//! Where the store's objects live.
//!
//! The store speaks to its storage only through [`Backend`]: whole immutable objects
//! written once under a name, read whole or by range, listed and removed. Nothing
//! needs an append or an in-place rewrite, so object storage (S3 and the like) can
//! implement it later, and tests can use [`MemoryBackend`] or inject faults with
//! [`FaultyBackend`].

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Storage of named, immutable objects.
///
/// Names are relative paths with `/` separators, such as `packs/3f/3f…a1.pack`.
pub trait Backend: Send + Sync {
    /// Stores `data` under `name`, durably and atomically: once this returns, the
    /// object survives a crash; before it returns, no reader sees a partial object.
    fn put(&self, name: &str, data: &[u8]) -> io::Result<()>;

    /// Reads a whole object of at most `limit` bytes. A larger one is refused with
    /// [`TooLarge`] (as `InvalidData`), its bytes unread: every stored object is
    /// hostile input, and each kind has a size no honest writer exceeds, so reading
    /// one never costs more memory than its kind allows.
    fn get(&self, name: &str, limit: u64) -> io::Result<Vec<u8>>;

    /// Reads `length` bytes at `offset` of an object.
    fn get_range(&self, name: &str, offset: u64, length: usize) -> io::Result<Vec<u8>>;

    /// Lists the objects under the folder `prefix` (recursively), with their sizes.
    fn list(&self, prefix: &str) -> io::Result<Vec<(String, u64)>>;

    /// Removes an object; removing one that does not exist is not an error.
    fn remove(&self, name: &str) -> io::Result<()>;

    /// The path of an object, for messages.
    fn describe(&self, name: &str) -> PathBuf;

    /// Removes what interrupted writes left behind. Called only while the repository's
    /// exclusive lock is held, so that no live write is removed. Storage whose writes
    /// leave nothing behind when they fail (object stores, memory) has nothing to do.
    fn clean_temporary(&self) -> io::Result<()> {
        Ok(())
    }
}

/// An object larger than its reader allows: damaged or planted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("it is {size} bytes, more than the {limit} bytes an object of its kind can be")]
pub struct TooLarge {
    /// Its size, or as much of it as was seen.
    pub size: u64,
    /// The reader's limit.
    pub limit: u64,
}

/// Refuses an object of `size` bytes if its reader allows only `limit`.
fn within(size: u64, limit: u64) -> io::Result<()> {
    if size > limit {
        return Err(io::Error::new(io::ErrorKind::InvalidData, TooLarge { size, limit }));
    }
    Ok(())
}

/// A backend on the local file system, rooted at the repository directory.
pub struct LocalBackend {
    root: PathBuf,
    counter: AtomicU64,
    /// Objects lately read by range, kept open: reading one chunk of a pack is then one
    /// `pread`, where opening the pack each time costs an `open` (and a walk of its
    /// path) and a `close` more. Objects never change once written, so a handle kept
    /// open reads what a fresh one would.
    open: quick_cache::sync::Cache<String, Arc<File>>,
}

/// How many objects [`LocalBackend`] keeps open.
const OPEN_OBJECTS: usize = 64;

impl std::fmt::Debug for LocalBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalBackend").field("root", &self.root).finish_non_exhaustive()
    }
}

/// The folder, inside the root, where objects are written before they are renamed
/// into place. A crash leaves files here; [`Backend::clean_temporary`] removes them.
const TEMPORARY: &str = "tmp";

impl LocalBackend {
    /// A backend rooted at `root`, which must exist.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        LocalBackend {
            root: root.into(),
            counter: AtomicU64::new(0),
            open: quick_cache::sync::Cache::new(OPEN_OBJECTS),
        }
    }

    /// The root folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn temporary_path(&self) -> PathBuf {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        self.root.join(TEMPORARY).join(format!("{}-{n}.tmp", std::process::id()))
    }
}

/// Mode of every file the repository writes: it holds database dumps, so only its
/// owner may read them, whatever the umask.
pub(crate) const PRIVATE_FILE: u32 = 0o600;
/// Mode of every directory of the repository.
pub(crate) const PRIVATE_DIR: u32 = 0o700;

/// Creates `dir` and any missing parents inside the repository, each `0700`.
pub(crate) fn create_private_dir_all(dir: &Path) -> io::Result<()> {
    fs::DirBuilder::new().recursive(true).mode(PRIVATE_DIR).create(dir)
}

/// Syncs a directory, so that a rename into it is durable.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

impl Backend for LocalBackend {
    fn put(&self, name: &str, data: &[u8]) -> io::Result<()> {
        let target = self.root.join(name);
        let temporary = self.temporary_path();
        create_private_dir_all(&self.root.join(TEMPORARY))?;
        let written = (|| {
            let mut file = OpenOptions::new().write(true).create_new(true).mode(PRIVATE_FILE).open(&temporary)?;
            file.write_all(data)?;
            file.sync_all()?;
            let parent = target.parent().unwrap_or(&self.root);
            create_private_dir_all(parent)?;
            fs::rename(&temporary, &target)?;
            sync_dir(parent)
        })();
        if written.is_err() {
            // Best effort: the temporary file is garbage either way, and the next
            // writer's clean-up removes it if this fails too.
            let _ = fs::remove_file(&temporary);
        }
        written
    }

    fn get(&self, name: &str, limit: u64) -> io::Result<Vec<u8>> {
        let file = File::open(self.root.join(name))?;
        let size = file.metadata()?.len();
        within(size, limit)?;
        // Read to at most one byte past the limit: a file that grew since it was
        // measured is refused too, never read whole.
        let mut bytes = Vec::with_capacity(size as usize);
        file.take(limit.saturating_add(1)).read_to_end(&mut bytes)?;
        within(bytes.len() as u64, limit)?;
        Ok(bytes)
    }

    fn get_range(&self, name: &str, offset: u64, length: usize) -> io::Result<Vec<u8>> {
        let file = self.open.get_or_insert_with(name, || File::open(self.root.join(name)).map(Arc::new))?;
        let mut buffer = vec![0; length];
        file.read_exact_at(&mut buffer, offset)?;
        Ok(buffer)
    }

    fn list(&self, prefix: &str) -> io::Result<Vec<(String, u64)>> {
        let mut found = Vec::new();
        let mut pending = vec![self.root.join(prefix)];
        while let Some(dir) = pending.pop() {
            let entries = match fs::read_dir(&dir) {
                Ok(entries) => entries,
                Err(error) if error.kind() == io::ErrorKind::NotFound => continue,
                Err(error) => return Err(error),
            };
            for entry in entries {
                let entry = entry?;
                let kind = entry.file_type()?;
                if kind.is_dir() {
                    pending.push(entry.path());
                } else if kind.is_file() {
                    let path = entry.path();
                    let Ok(relative) = path.strip_prefix(&self.root) else {
                        continue;
                    };
                    let Some(name) = relative.to_str() else {
                        continue;
                    };
                    found.push((name.to_owned(), entry.metadata()?.len()));
                }
            }
        }
        found.sort();
        Ok(found)
    }

    fn remove(&self, name: &str) -> io::Result<()> {
        self.open.remove(name);
        let path = self.root.join(name);
        match fs::remove_file(&path) {
            Ok(()) => sync_dir(path.parent().unwrap_or(&self.root)),
            Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(error) => Err(error),
        }
    }

    fn describe(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    fn clean_temporary(&self) -> io::Result<()> {
        let dir = self.root.join(TEMPORARY);
        match fs::read_dir(&dir) {
            Ok(entries) => {
                for entry in entries {
                    let entry = entry?;
                    fs::remove_file(entry.path())?;
                }
                Ok(())
            }
            Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(error) => Err(error),
        }
    }
}

/// A backend in memory, for tests.
#[derive(Debug, Default)]
pub struct MemoryBackend {
    objects: Mutex<BTreeMap<String, Vec<u8>>>,
}

impl MemoryBackend {
    fn objects(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Vec<u8>>> {
        // A panic while holding the lock cannot leave a half-written map entry.
        self.objects.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

fn not_found(name: &str) -> io::Error {
    io::Error::new(io::ErrorKind::NotFound, format!("{name} not found"))
}

impl Backend for MemoryBackend {
    fn put(&self, name: &str, data: &[u8]) -> io::Result<()> {
        self.objects().insert(name.to_owned(), data.to_vec());
        Ok(())
    }

    fn get(&self, name: &str, limit: u64) -> io::Result<Vec<u8>> {
        let objects = self.objects();
        let data = objects.get(name).ok_or_else(|| not_found(name))?;
        within(data.len() as u64, limit)?;
        Ok(data.clone())
    }

    fn get_range(&self, name: &str, offset: u64, length: usize) -> io::Result<Vec<u8>> {
        let objects = self.objects();
        let data = objects.get(name).ok_or_else(|| not_found(name))?;
        let start = usize::try_from(offset).map_err(|_| not_found(name))?;
        start
            .checked_add(length)
            .and_then(|end| data.get(start..end))
            .map(<[u8]>::to_vec)
            .ok_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, "range past the end"))
    }

    fn list(&self, prefix: &str) -> io::Result<Vec<(String, u64)>> {
        let folder = format!("{}/", prefix.trim_end_matches('/'));
        Ok(self
            .objects()
            .iter()
            .filter(|(name, _)| name.starts_with(&folder))
            .map(|(name, data)| (name.clone(), data.len() as u64))
            .collect())
    }

    fn remove(&self, name: &str) -> io::Result<()> {
        self.objects().remove(name);
        Ok(())
    }

    fn describe(&self, name: &str) -> PathBuf {
        PathBuf::from(format!("memory:{name}"))
    }
}

/// A backend that fails on command, wrapping another: the twin that tests of full
/// disks, read errors, torn writes and slow storage run on, without root and without
/// filling a real disk. The faults are set through the [`Faults`] handle, which a test
/// keeps while the repository owns the backend.
///
/// It is public, beside [`MemoryBackend`], rather than behind a cargo feature: the
/// black-box tests in `tests/` link the library as users build it, and a twin that
/// costs nothing unless constructed is simpler than a feature each test must remember.
/// It is for tests: nothing in envsnap constructs one.
pub struct FaultyBackend {
    inner: Box<dyn Backend>,
    faults: Arc<Faults>,
}

impl std::fmt::Debug for FaultyBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FaultyBackend").field("faults", &self.faults).finish_non_exhaustive()
    }
}

/// The faults a [`FaultyBackend`] injects, changed at any time from any thread.
#[derive(Debug, Default)]
pub struct Faults {
    state: Mutex<FaultState>,
}

#[derive(Debug, Default)]
struct FaultState {
    /// Bytes that still fit, when the storage is to fill up.
    space: Option<u64>,
    /// Reads of an object whose name contains one of these fail with `EIO`.
    unreadable: Vec<String>,
    /// The next write of an object whose name starts with this is torn.
    tear: Option<String>,
    /// How long every call waits before it acts.
    delay: Duration,
    /// Bytes stored by successful writes.
    written: u64,
}

impl Faults {
    fn state(&self) -> std::sync::MutexGuard<'_, FaultState> {
        // Every critical section is a single field update: a panic leaves it consistent.
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The storage fills up after `bytes` more bytes: a write that does not fit fails
    /// with `ENOSPC` and stores nothing, as [`LocalBackend`] leaves nothing of one.
    pub fn fill_after(&self, bytes: u64) {
        self.state().space = Some(bytes);
    }

    /// The storage has room again.
    pub fn free_space(&self) {
        self.state().space = None;
    }

    /// Reads of every object whose name contains `pattern` fail with `EIO`.
    pub fn fail_reads(&self, pattern: &str) {
        self.state().unreadable.push(pattern.to_owned());
    }

    /// Reads succeed again.
    pub fn heal_reads(&self) {
        self.state().unreadable.clear();
    }

    /// The next write of an object whose name starts with `prefix` is torn: the first
    /// half of its bytes lands under its name and the write fails with `EIO`, which is
    /// what storage without an atomic rename leaves after a crash mid-write.
    pub fn tear_next_write(&self, prefix: &str) {
        self.state().tear = Some(prefix.to_owned());
    }

    /// Every call waits `delay` before it acts.
    pub fn slow_down(&self, delay: Duration) {
        self.state().delay = delay;
    }

    /// Bytes stored so far by writes that succeeded.
    pub fn written(&self) -> u64 {
        self.state().written
    }
}

impl FaultyBackend {
    /// Wraps `inner`; returns the backend and the handle that sets its faults. No
    /// fault is set at first.
    pub fn new(inner: Box<dyn Backend>) -> (Self, Arc<Faults>) {
        let faults = Arc::new(Faults::default());
        (FaultyBackend { inner, faults: Arc::clone(&faults) }, faults)
    }

    fn wait(&self) {
        let delay = self.faults.state().delay;
        if !delay.is_zero() {
            std::thread::sleep(delay);
        }
    }

    fn check_read(&self, name: &str) -> io::Result<()> {
        self.wait();
        if self.faults.state().unreadable.iter().any(|pattern| name.contains(pattern.as_str())) {
            return Err(io::Error::from_raw_os_error(libc::EIO));
        }
        Ok(())
    }
}

impl Backend for FaultyBackend {
    fn put(&self, name: &str, data: &[u8]) -> io::Result<()> {
        self.wait();
        let torn = {
            let mut state = self.faults.state();
            if let Some(space) = state.space {
                if data.len() as u64 > space {
                    // A full disk: the raw errno, so that callers see what they would.
                    return Err(io::Error::from_raw_os_error(libc::ENOSPC));
                }
                state.space = Some(space - data.len() as u64);
            }
            match &state.tear {
                Some(prefix) if name.starts_with(prefix.as_str()) => {
                    state.tear = None;
                    true
                }
                _ => false,
            }
        };
        if torn {
            self.inner.put(name, &data[..data.len() / 2])?;
            return Err(io::Error::from_raw_os_error(libc::EIO));
        }
        self.inner.put(name, data)?;
        self.faults.state().written += data.len() as u64;
        Ok(())
    }

    fn get(&self, name: &str, limit: u64) -> io::Result<Vec<u8>> {
        self.check_read(name)?;
        self.inner.get(name, limit)
    }

    fn get_range(&self, name: &str, offset: u64, length: usize) -> io::Result<Vec<u8>> {
        self.check_read(name)?;
        self.inner.get_range(name, offset, length)
    }

    fn list(&self, prefix: &str) -> io::Result<Vec<(String, u64)>> {
        self.wait();
        self.inner.list(prefix)
    }

    fn remove(&self, name: &str) -> io::Result<()> {
        self.wait();
        self.inner.remove(name)
    }

    fn describe(&self, name: &str) -> PathBuf {
        self.inner.describe(name)
    }

    fn clean_temporary(&self) -> io::Result<()> {
        self.inner.clean_temporary()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exercise(backend: &dyn Backend) -> io::Result<()> {
        backend.put("packs/ab/one.pack", b"hello world")?;
        backend.put("snapshots/x.json", b"{}")?;
        assert_eq!(backend.get("packs/ab/one.pack", 11)?, b"hello world");
        let refused = backend.get("packs/ab/one.pack", 10).expect_err("one byte more than allowed");
        assert_eq!(refused.kind(), io::ErrorKind::InvalidData);
        assert_eq!(refused.to_string(), "it is 11 bytes, more than the 10 bytes an object of its kind can be");
        assert_eq!(backend.get_range("packs/ab/one.pack", 6, 5)?, b"world");
        assert!(backend.get_range("packs/ab/one.pack", u64::MAX, 2).is_err());
        assert_eq!(backend.list("packs")?, vec![("packs/ab/one.pack".to_owned(), 11)]);
        backend.remove("packs/ab/one.pack")?;
        backend.remove("packs/ab/one.pack")?;
        assert!(backend.list("packs")?.is_empty());
        assert!(backend.get("packs/ab/one.pack", 11).is_err());
        Ok(())
    }

    #[test]
    fn local_and_memory_backends_agree() -> io::Result<()> {
        let dir = tempfile::tempdir()?;
        exercise(&LocalBackend::new(dir.path()))?;
        exercise(&MemoryBackend::default())?;
        exercise(&FaultyBackend::new(Box::new(MemoryBackend::default())).0)
    }

    #[test]
    fn faults_fail_what_they_name_and_nothing_else() -> io::Result<()> {
        let (backend, faults) = FaultyBackend::new(Box::new(MemoryBackend::default()));
        faults.fill_after(10);
        let full = backend.put("packs/a", &[0; 11]).expect_err("does not fit");
        assert_eq!(full.raw_os_error(), Some(libc::ENOSPC));
        assert!(backend.get("packs/a", 11).is_err(), "a write that did not fit stores nothing");
        backend.put("packs/b", &[1; 10])?;
        faults.free_space();
        faults.fail_reads("packs/b");
        assert_eq!(backend.get_range("packs/b", 0, 1).expect_err("unreadable").raw_os_error(), Some(libc::EIO));
        faults.heal_reads();
        assert_eq!(backend.get("packs/b", 10)?, [1; 10]);
        faults.tear_next_write("snapshots/");
        backend.put("packs/c", b"whole")?;
        assert!(backend.put("snapshots/d", b"torn in two").is_err());
        assert_eq!(backend.get("snapshots/d", 100)?, b"torn ");
        backend.put("snapshots/e", b"whole again")?;
        assert_eq!(faults.written(), 10 + 5 + 11);
        Ok(())
    }

    #[test]
    fn clean_temporary_removes_leftovers() -> io::Result<()> {
        let dir = tempfile::tempdir()?;
        let backend = LocalBackend::new(dir.path());
        fs::create_dir_all(dir.path().join(TEMPORARY))?;
        fs::write(dir.path().join(TEMPORARY).join("1-0.tmp"), b"partial")?;
        backend.clean_temporary()?;
        assert_eq!(fs::read_dir(dir.path().join(TEMPORARY))?.count(), 0);
        Ok(())
    }
}
