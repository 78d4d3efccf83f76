//! The repository lock: one writer at a time.
//!
//! An advisory `flock` on `<repository>/lock`. The kernel drops it when its holder
//! dies, so a lock left by a killed process is cleared by construction; a live one
//! makes the next writer wait. The file's text names the holder, for the message.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::error::{IoContext, Result};

/// Held while a command may change the repository; released on drop.
#[derive(Debug)]
pub struct RepositoryLock {
    file: File,
    path: PathBuf,
}

/// Whether other holders may share the lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockKind {
    /// Many readers that need the repository not to change under them (check).
    Shared,
    /// One writer (backup, delete, repair).
    Exclusive,
}

impl RepositoryLock {
    /// Takes the writers' lock in `root`, waiting while another process holds it.
    /// `waiting` is called once, with the holder's description, before the wait begins.
    pub fn acquire(root: &Path, kind: LockKind, waiting: &mut dyn FnMut(&str)) -> Result<Self> {
        Self::acquire_at(&root.join("lock"), kind, waiting)
    }

    /// Takes the lock on the file at `path` unless others hold it for longer than
    /// `patience`: `None` then. `waiting` is called once if it has to wait.
    pub fn acquire_within(
        path: &Path,
        kind: LockKind,
        patience: std::time::Duration,
        waiting: &mut dyn FnMut(&str),
    ) -> Result<Option<Self>> {
        let deadline = std::time::Instant::now() + patience;
        let mut file = open(path)?;
        let mut told = false;
        while !try_take(&file, kind, path)? {
            if !told {
                waiting(&holder(&mut file));
                told = true;
            }
            if std::time::Instant::now() >= deadline {
                return Ok(None);
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        Self::taken(file, kind, path).map(Some)
    }

    /// Takes the lock on the file at `path`, as [`RepositoryLock::acquire`] does.
    pub fn acquire_at(path: &Path, kind: LockKind, waiting: &mut dyn FnMut(&str)) -> Result<Self> {
        let mut file = open(path)?;
        if !try_take(&file, kind, path)? {
            waiting(&holder(&mut file));
            match kind {
                LockKind::Shared => file.lock_shared(),
                LockKind::Exclusive => file.lock(),
            }
            .context("waiting for the lock", path)?;
        }
        Self::taken(file, kind, path)
    }

    /// The lock held on `file`; an exclusive holder leaves its note for those who wait.
    fn taken(mut file: File, kind: LockKind, path: &Path) -> Result<Self> {
        if kind == LockKind::Exclusive {
            write_note(&mut file, path)?;
        }
        Ok(RepositoryLock { file, path: path.to_owned() })
    }

    /// Who holds the writers' lock of the repository in `root` right now, by its note;
    /// `None` when no writer does. Takes nothing: the probe's own shared hold is
    /// released at once.
    pub fn writer(root: &Path) -> Result<Option<String>> {
        let path = root.join("lock");
        let mut file = open(&path)?;
        if try_take(&file, LockKind::Shared, &path)? {
            let _ = file.unlock();
            return Ok(None);
        }
        Ok(Some(holder(&mut file)))
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Opens (creating it if need be) the lock file at `path`.
fn open(path: &Path) -> Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(crate::store::backend::PRIVATE_FILE)
        .open(path)
        .context("opening the lock file", path)
}

/// Tries to take the lock on `file` without waiting; `false` if others hold it.
fn try_take(file: &File, kind: LockKind, path: &Path) -> Result<bool> {
    let attempt = match kind {
        LockKind::Shared => file.try_lock_shared(),
        LockKind::Exclusive => file.try_lock(),
    };
    match attempt {
        Ok(()) => Ok(true),
        Err(TryLockError::WouldBlock) => Ok(false),
        Err(TryLockError::Error(error)) => Err(crate::error::Error::io("locking", path, error)),
    }
}

/// The holder's note, for the message of whoever waits; an unreadable one is empty.
fn holder(file: &mut File) -> String {
    let mut note = String::new();
    let _ = file.read_to_string(&mut note);
    note.trim().to_owned()
}

/// Writes who holds the lock into its file, for the message of whoever waits.
fn write_note(file: &mut File, path: &Path) -> Result<()> {
    let note = format!("process {} ({})\n", std::process::id(), std::env::args().collect::<Vec<_>>().join(" "));
    file.set_len(0).context("writing the lock file", path)?;
    file.seek(SeekFrom::Start(0)).context("writing the lock file", path)?;
    file.write_all(note.as_bytes()).context("writing the lock file", path)?;
    Ok(())
}

impl Drop for RepositoryLock {
    fn drop(&mut self) {
        // Unlocking also happens when the file is closed; this only makes it prompt.
        let _ = self.file.unlock();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::time::Duration;

    #[test]
    fn a_second_writer_waits_for_the_first() -> Result<()> {
        let dir = tempfile::tempdir().context("temp", "tmp")?;
        let first = RepositoryLock::acquire(dir.path(), LockKind::Exclusive, &mut |_| {})?;
        let (sender, receiver) = mpsc::channel();
        let root = dir.path().to_owned();
        let waiter = std::thread::spawn(move || {
            let mut holder_seen = String::new();
            let lock = RepositoryLock::acquire(&root, LockKind::Exclusive, &mut |holder| {
                holder_seen = holder.to_owned();
            });
            sender.send(holder_seen).expect("send");
            lock.map(drop)
        });
        assert!(receiver.recv_timeout(Duration::from_millis(300)).is_err(), "must wait");
        drop(first);
        let holder = receiver.recv_timeout(Duration::from_secs(10)).expect("acquired after release");
        assert!(holder.contains(&format!("process {}", std::process::id())), "names the holder: {holder}");
        waiter.join().expect("join")
    }
}
