//! `type = "sqlite"`: an SQLite database file, captured with SQLite's online backup
//! API and restored by writing a new file and renaming it into place.
//!
//! # Capture
//!
//! `sqlite3_backup_step(-1)` copies every page of the database inside one read
//! transaction, so the copy is the database as it was at one commit, whatever the
//! application writes meanwhile: in WAL mode writers go on undisturbed (their new
//! commits are simply not in the copy); in rollback-journal mode a writer's commit
//! waits for the copy, as it would for any long reader. A copy in several steps would
//! let writers in between, but SQLite restarts such a backup whenever another
//! connection writes, so under a steady writer it might never finish.
//!
//! **Trade-off:** the backup API writes into another SQLite database, not into a
//! stream, so the copy is made into a temporary file next to the database (never in
//! memory, and not in `/tmp`, which may be memory) and then streamed through the
//! chunker and deleted. A capture therefore needs free space for one more copy of the
//! database on its file system, for the duration of the capture. Reading the database
//! file directly would avoid that copy but is only consistent in rollback-journal mode,
//! and would miss the pages still in the WAL.
//!
//! # Restore
//!
//! The dump is written to `<file>.envsnap-restore` beside the database, synced, given
//! the old file's permissions, and renamed over the database, so the database is
//! always either the old one or the new one, whole. The old file's `-wal`, `-shm` and
//! `-journal` are removed just before the rename: SQLite would otherwise replay the old
//! file's journal into the new file and damage it (the old file's state they held is
//! in the safety snapshot a restore takes first). Connections still open on the old
//! file keep reading it until they reopen the database, and what they write goes
//! nowhere: stop the application, or let the `pause` command of consistent mode do
//! it, around a restore.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use rusqlite::backup::{Backup, StepResult};
use rusqlite::{Connection, OpenFlags};

use super::{DumpSink, DumpSource, Service};
use crate::error::{Error, IoContext, Result};

/// The name of the one stream an SQLite capture is stored as.
pub const STREAM: &str = "database.sqlite";

/// How long a capture waits for a writer that keeps the database locked.
const LOCK_PATIENCE: Duration = Duration::from_secs(60);

/// The first bytes of every SQLite database file.
const MAGIC: &[u8; 16] = b"SQLite format 3\0";

/// An SQLite database file.
#[derive(Debug, Clone)]
pub struct SqliteService {
    name: String,
    path: PathBuf,
}

impl SqliteService {
    /// The service `name`, the database at `path` (absolute).
    pub fn new(name: &str, path: &Path) -> Self {
        SqliteService { name: name.to_owned(), path: path.to_owned() }
    }

    fn failed(&self, detail: impl Into<String>) -> Error {
        Error::ServiceFailed { name: self.name.clone(), address: self.address(), detail: detail.into() }
    }

    /// The database file itself: a symlink's target, since SQLite keeps the journals
    /// beside the file the link leads to, and replacing the link would change the layout.
    fn real_path(&self) -> PathBuf {
        fs::canonicalize(&self.path).unwrap_or_else(|_| self.path.clone())
    }

    /// Copies the database into `destination`, an empty file, at one point in time.
    fn copy_to(&self, destination: &Path) -> Result<()> {
        let sqlite = |error: rusqlite::Error| self.failed(describe(&error));
        // Read-write without create: a missing file is an error, never a new database.
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let source = Connection::open_with_flags(&self.path, flags).map_err(sqlite)?;
        source.busy_timeout(Duration::from_secs(5)).map_err(sqlite)?;
        let mut copy = Connection::open(destination).map_err(sqlite)?;
        // A scratch file, read once and deleted: it needs no journal and no syncs.
        copy.pragma_update(None, "journal_mode", "OFF").map_err(sqlite)?;
        copy.pragma_update(None, "synchronous", "OFF").map_err(sqlite)?;
        let backup = Backup::new(&source, &mut copy).map_err(sqlite)?;
        let started = Instant::now();
        loop {
            // All pages in one step: one read transaction, one point in time.
            match backup.step(-1).map_err(sqlite)? {
                StepResult::Done => return Ok(()),
                StepResult::More => {}
                _ if started.elapsed() > LOCK_PATIENCE => {
                    return Err(self.failed(format!(
                        "another connection kept the database locked for {} s; try again when its writes pause",
                        LOCK_PATIENCE.as_secs()
                    )));
                }
                _ => thread::sleep(Duration::from_millis(50)),
            }
        }
    }

    /// Writes the dump into `staged`, checked and synced, with the database's mode.
    fn stage(&self, input: &mut dyn Read, staged: &Path) -> Result<()> {
        let mut file = File::create(staged).context("creating", staged)?;
        let mut header = Vec::with_capacity(MAGIC.len());
        input.take(MAGIC.len() as u64).read_to_end(&mut header).map_err(|error| self.reading(&error))?;
        self.check_header(&header)?;
        file.write_all(&header).context("writing", staged)?;
        let mut output = io::BufWriter::with_capacity(1 << 20, &mut file);
        copy(input, &mut output).map_err(|error| match error {
            Copy::Read(error) => self.reading(&error),
            Copy::Write(error) => Error::io("writing", staged, error),
        })?;
        output.flush().context("writing", staged)?;
        drop(output);
        if let Ok(metadata) = fs::metadata(&self.path) {
            let mode = metadata.permissions().mode() & 0o7777;
            file.set_permissions(fs::Permissions::from_mode(mode)).context("setting the mode of", staged)?;
        }
        file.sync_all().context("syncing", staged)
    }

    /// An empty file is a valid, empty database; anything else starts with the magic.
    fn check_header(&self, header: &[u8]) -> Result<()> {
        if header.is_empty() || header == MAGIC {
            return Ok(());
        }
        Err(Error::Corrupt {
            what: format!("the dump of service `{}`", self.name),
            detail: "it is not an SQLite database".to_owned(),
        })
    }

    fn reading(&self, error: &io::Error) -> Error {
        self.failed(format!("reading the dump: {error}"))
    }
}

/// SQLite's own words for an error. The backup API reports errors on the destination
/// connection, whose message is then the meaningless "not an error": the code says more.
fn describe(error: &rusqlite::Error) -> String {
    match error {
        rusqlite::Error::SqliteFailure(code, Some(message)) if message != "not an error" => message.clone(),
        rusqlite::Error::SqliteFailure(code, _) => {
            let text = code.to_string();
            text.split_once(": ").map_or(text.clone(), |(_, words)| words.to_owned())
        }
        other => other.to_string(),
    }
}

/// Which side of a copy failed.
enum Copy {
    Read(io::Error),
    Write(io::Error),
}

fn copy(input: &mut dyn Read, output: &mut dyn Write) -> Result<(), Copy> {
    let mut buffer = vec![0; 256 << 10];
    loop {
        let count = match input.read(&mut buffer) {
            Ok(0) => return Ok(()),
            Ok(count) => count,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(error) => return Err(Copy::Read(error)),
        };
        output.write_all(&buffer[..count]).map_err(Copy::Write)?;
    }
}

/// The directory holding `path`.
fn directory(path: &Path) -> &Path {
    path.parent().filter(|parent| !parent.as_os_str().is_empty()).unwrap_or(Path::new("."))
}

/// `path` with `suffix` appended to its file name.
fn beside(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_owned();
    name.push(suffix);
    path.with_file_name(name)
}

/// Removes `path` if it is there.
fn remove_if_present(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Err(error) if error.kind() != io::ErrorKind::NotFound => Err(Error::io("removing", path, error)),
        _ => Ok(()),
    }
}

impl Service for SqliteService {
    fn address(&self) -> String {
        self.path.display().to_string()
    }

    fn exists(&self) -> Result<bool> {
        self.path.try_exists().context("reading", &self.path)
    }

    fn capture(&self, sink: &dyn DumpSink) -> Result<()> {
        if !self.exists()? {
            return Err(self.failed("the database file does not exist; create it, or fix `path` in envsnap.toml"));
        }
        let path = self.real_path();
        let directory = directory(&path);
        let prefix = format!(".{}.envsnap-capture-", path.file_name().unwrap_or_default().to_string_lossy());
        let mut builder = tempfile::Builder::new();
        builder.prefix(&prefix);
        // Deleted when dropped, whatever happens below.
        let copy = match builder.tempfile_in(directory) {
            Ok(copy) => copy,
            // A directory envsnap may not write to: the system's temporary directory.
            Err(error)
                if matches!(error.kind(), io::ErrorKind::PermissionDenied | io::ErrorKind::ReadOnlyFilesystem) =>
            {
                builder.tempfile().context("creating a temporary copy in", std::env::temp_dir())?
            }
            Err(error) => return Err(Error::io("creating a temporary copy in", directory, error)),
        };
        self.copy_to(copy.path())?;
        let mut file = File::open(copy.path()).context("reading", copy.path())?;
        sink.add(STREAM, &mut file)
    }

    fn check_restore(&self, source: &dyn DumpSource) -> Result<()> {
        let mut header = Vec::with_capacity(MAGIC.len());
        let input = source.open(STREAM)?;
        input.take(MAGIC.len() as u64).read_to_end(&mut header).map_err(|error| self.reading(&error))?;
        self.check_header(&header)
    }

    fn restore(&self, source: &dyn DumpSource) -> Result<()> {
        self.check_restore(source)?;
        let mut input = source.open(STREAM)?;
        let path = self.real_path();
        let directory = directory(&path);
        fs::create_dir_all(directory).context("creating", directory)?;
        // A fixed name: a restore killed half-way leaves one file, which the next replaces.
        let staged = beside(&path, ".envsnap-restore");
        if let Err(error) = self.stage(&mut input, &staged) {
            let _ = fs::remove_file(&staged);
            return Err(error);
        }
        // The old file's journals would be replayed into the new file: they go first.
        for suffix in ["-wal", "-shm", "-journal"] {
            remove_if_present(&beside(&path, suffix))?;
        }
        fs::rename(&staged, &path).context("replacing", &path)?;
        crate::store::backend::sync_dir(directory).context("syncing", directory)
    }
}
