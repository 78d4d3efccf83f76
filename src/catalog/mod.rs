//! The catalog: an SQLite database of the snapshots and of where every chunk is.
//!
//! It is an index, not the truth: everything in it can be rebuilt from the store
//! (pack footers and snapshot manifests) by [`crate::repository::Repository::repair`].
//! The jobs and the activity log, which nothing could rebuild, are kept in a database of
//! their own, [`RECORDS`], attached to the same connection, so the same queries reach them.
//! That is why it may lag the store after a crash, and why opening a repository
//! reconciles the two before use.

use std::collections::{HashMap, HashSet};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use rusqlite::{Connection, OptionalExtension, params};

use chrono::{DateTime, Utc};

use crate::activity::{Activity, Outcome};
use crate::error::{Error, Result};
use crate::id::ObjectId;
use crate::jobs::{Job, JobState};
use crate::snapshot::{Manifest, Mode, Snapshot, Trigger};
use crate::store::pack::{BlobKind, Compression, PackEntry};

pub mod records;

/// The schema version this build writes (SQLite's `user_version`).
pub const SCHEMA_VERSION: u32 = 1;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS packs (
    id    INTEGER PRIMARY KEY,
    name  TEXT NOT NULL UNIQUE,
    size  INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS chunks (
    id          BLOB PRIMARY KEY,
    pack        INTEGER NOT NULL REFERENCES packs(id),
    offset      INTEGER NOT NULL,
    length      INTEGER NOT NULL,
    raw_length  INTEGER NOT NULL,
    kind        INTEGER NOT NULL,
    compression INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS snapshots (
    id        TEXT PRIMARY KEY,
    env       TEXT NOT NULL,
    commit_id TEXT,
    created   TEXT NOT NULL,
    manifest  TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS snapshots_by_env ON snapshots(env, created);
";

/// The file beside the catalog that holds the jobs and the activity log.
pub const RECORDS: &str = "records.sqlite";

/// The tables of [`RECORDS`]: primary data, not an index. They live in a database of
/// their own, attached to the catalog's connection as `records`, so that rebuilding
/// the catalog, or moving a damaged one aside, cannot lose them.
const RECORDS_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS records.jobs (
    id        TEXT PRIMARY KEY,
    env       TEXT NOT NULL,
    commit_id TEXT,
    trigger   TEXT NOT NULL,
    mode      TEXT NOT NULL,
    created   TEXT NOT NULL,
    state     TEXT NOT NULL,
    progress  INTEGER NOT NULL,
    note      TEXT,
    keep_for  INTEGER,
    user      TEXT NOT NULL,
    host      TEXT NOT NULL,
    started   TEXT,
    seen      TEXT,
    finished  TEXT,
    snapshot  TEXT,
    error     TEXT
);
CREATE TABLE IF NOT EXISTS records.damage (
    snapshot TEXT PRIMARY KEY,
    problem  TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS records.activity (
    id          INTEGER PRIMARY KEY,
    started     TEXT NOT NULL,
    duration_ms INTEGER NOT NULL,
    user        TEXT NOT NULL,
    host        TEXT NOT NULL,
    action      TEXT NOT NULL,
    env         TEXT,
    snapshots   TEXT NOT NULL,
    result      TEXT NOT NULL,
    detail      TEXT
);
";

/// Records a pack and its blobs inside `transaction`; a blob already indexed keeps
/// its location.
fn insert_pack(
    transaction: &rusqlite::Transaction<'_>,
    name: &str,
    size: u64,
    entries: &[PackEntry],
) -> rusqlite::Result<()> {
    transaction.execute("INSERT OR IGNORE INTO packs (name, size) VALUES (?1, ?2)", params![name, size])?;
    let pack: i64 = transaction.query_row("SELECT id FROM packs WHERE name = ?1", [name], |row| row.get(0))?;
    let mut insert = transaction.prepare_cached(
        "INSERT OR IGNORE INTO chunks (id, pack, offset, length, raw_length, kind, compression)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?;
    for entry in entries {
        insert.execute(params![
            entry.id.as_bytes().as_slice(),
            pack,
            entry.offset,
            entry.length,
            entry.raw_length,
            entry.kind.code(),
            entry.compression.code(),
        ])?;
    }
    Ok(())
}

/// Where a blob is stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// The pack's object name.
    pub pack: String,
    /// The entry as the pack's footer gives it.
    pub entry: PackEntry,
}

/// The open catalog.
#[derive(Debug)]
pub struct Catalog {
    connection: Connection,
    path: PathBuf,
}

impl Catalog {
    /// Opens (creating if needed) the catalog at `path`; refuses a newer schema.
    pub fn open(path: &Path) -> Result<Self> {
        create_private(path)?;
        let records = path.with_file_name(RECORDS);
        create_private(&records)?;
        let connection = Connection::open(path).map_err(|source| catalog_error(path, source))?;
        let catalog = Catalog { connection, path: path.to_owned() };
        catalog.prepare(&records.to_string_lossy())?;
        Ok(catalog)
    }

    /// An in-memory catalog, for tests and for rebuilding.
    pub fn in_memory() -> Result<Self> {
        let path = PathBuf::from(":memory:");
        let connection = Connection::open_in_memory().map_err(|source| catalog_error(&path, source))?;
        let catalog = Catalog { connection, path };
        catalog.prepare(":memory:")?;
        Ok(catalog)
    }

    fn prepare(&self, records: &str) -> Result<()> {
        // A damaged records file is named as such: `repair` saves what it can of it,
        // while a rebuild of the catalog could not help.
        let records_error = |source: rusqlite::Error| match source.sqlite_error_code() {
            Some(rusqlite::ErrorCode::NotADatabase | rusqlite::ErrorCode::DatabaseCorrupt) => {
                Error::RecordsDamaged { path: PathBuf::from(records), detail: source.to_string() }
            }
            _ => self.error(source),
        };
        self.connection.execute("ATTACH DATABASE ?1 AS records", [records]).map_err(records_error)?;
        self.connection
            .query_row("SELECT count(*) FROM records.sqlite_master", [], |_| Ok(()))
            .map_err(records_error)?;
        let found: u32 = self
            .connection
            .pragma_query_value(None, "user_version", |row| row.get(0))
            .map_err(|source| self.error(source))?;
        if found > SCHEMA_VERSION {
            return Err(Error::FormatTooNew { path: self.path.clone(), found, supported: SCHEMA_VERSION });
        }
        // WAL lets readers list and restore while a backup writes. NORMAL sync may lose
        // the last transactions on power loss, never corrupt: the index is rebuilt from
        // the packs, which are synced themselves.
        // The records keep SQLite's rollback journal and full sync: they are rebuilt
        // from nowhere, and a reader of them needs no -wal and -shm files, so `list` on
        // a full disk still opens (WAL would make every open create two files more).
        self.connection
            .execute_batch(
                "PRAGMA main.journal_mode = WAL; PRAGMA main.synchronous = NORMAL; PRAGMA busy_timeout = 60000;",
            )
            .map_err(|source| self.error(source))?;
        self.connection.execute_batch(SCHEMA).map_err(|source| self.error(source))?;
        self.connection.execute_batch(RECORDS_SCHEMA).map_err(|source| self.error(source))?;
        self.move_records_out()?;
        self.connection.pragma_update(None, "user_version", SCHEMA_VERSION).map_err(|source| self.error(source))
    }

    /// Moves the jobs and the activity log of a catalog written before they had a file
    /// of their own into [`RECORDS`], in their order, in one transaction.
    fn move_records_out(&self) -> Result<()> {
        let old: i64 = self
            .connection
            .query_row(
                "SELECT count(*) FROM main.sqlite_master WHERE type = 'table' AND name IN ('jobs', 'activity')",
                [],
                |row| row.get(0),
            )
            .map_err(|e| self.error(e))?;
        // Both were added together, by one schema.
        if old != 2 {
            return Ok(());
        }
        self.connection
            .execute_batch(
                "BEGIN IMMEDIATE;
                 INSERT OR IGNORE INTO records.jobs SELECT * FROM main.jobs ORDER BY rowid;
                 INSERT INTO records.activity (started, duration_ms, user, host, action, env, snapshots, result, detail)
                     SELECT started, duration_ms, user, host, action, env, snapshots, result, detail
                     FROM main.activity ORDER BY id;
                 DROP TABLE main.jobs;
                 DROP TABLE main.activity;
                 COMMIT;",
            )
            .map_err(|e| {
                let _ = self.connection.execute_batch("ROLLBACK");
                self.error(e)
            })
    }

    /// What is wrong with the database file, if anything: SQLite's `quick_check`, which
    /// reads every page. `None` when it is intact.
    pub fn integrity_problem(&self) -> Option<String> {
        let checked = self.connection.prepare("PRAGMA main.quick_check").and_then(|mut statement| {
            statement
                .query_map([], |row| row.get::<_, String>(0))
                .and_then(Iterator::collect::<rusqlite::Result<Vec<_>>>)
        });
        match checked {
            Ok(lines) if lines.iter().all(|line| line == "ok") => None,
            Ok(lines) => Some(lines.into_iter().take(3).collect::<Vec<_>>().join("; ")),
            Err(error) => Some(error.to_string()),
        }
    }

    fn error(&self, source: rusqlite::Error) -> Error {
        catalog_error(&self.path, source)
    }

    /// The names of the packs the index knows.
    pub fn pack_names(&self) -> Result<HashSet<String>> {
        let mut statement = self.connection.prepare("SELECT name FROM packs").map_err(|e| self.error(e))?;
        let names = statement.query_map([], |row| row.get(0)).and_then(Iterator::collect).map_err(|e| self.error(e))?;
        Ok(names)
    }

    /// The packs the index knows, with their sizes.
    pub fn packs(&self) -> Result<Vec<(String, u64)>> {
        let mut statement =
            self.connection.prepare("SELECT name, size FROM packs ORDER BY name").map_err(|e| self.error(e))?;
        let packs = statement
            .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
            .and_then(Iterator::collect)
            .map_err(|e| self.error(e))?;
        Ok(packs)
    }

    /// Records a pack and its blobs in one transaction. A blob already indexed in
    /// another pack keeps its first location.
    pub fn add_pack(&mut self, name: &str, size: u64, entries: &[PackEntry]) -> Result<()> {
        let path = self.path.clone();
        let fail = |source| catalog_error(&path, source);
        let transaction = self.connection.transaction().map_err(fail)?;
        insert_pack(&transaction, name, size, entries).map_err(fail)?;
        transaction.commit().map_err(fail)
    }

    /// Replaces packs in one transaction: forgets `removed` and their blobs, then
    /// records `added`. What prune does once the packs that replace others are stored,
    /// so that their blobs take the new locations ([`Catalog::add_pack`] would keep the
    /// old ones).
    pub fn replace_packs(&mut self, removed: &[String], added: &[(String, u64, Vec<PackEntry>)]) -> Result<()> {
        let path = self.path.clone();
        let fail = |source| catalog_error(&path, source);
        let transaction = self.connection.transaction().map_err(fail)?;
        for name in removed {
            transaction
                .execute("DELETE FROM chunks WHERE pack = (SELECT id FROM packs WHERE name = ?1)", [name])
                .map_err(fail)?;
            transaction.execute("DELETE FROM packs WHERE name = ?1", [name]).map_err(fail)?;
        }
        for (name, size, entries) in added {
            insert_pack(&transaction, name, *size, entries).map_err(fail)?;
        }
        transaction.commit().map_err(fail)
    }

    /// Every indexed pack: its name, its size, and the blobs located in it.
    pub fn pack_contents(&self) -> Result<Vec<(String, u64, Vec<PackEntry>)>> {
        let mut packs: Vec<(String, u64, Vec<PackEntry>)> = Vec::new();
        let mut index: HashMap<i64, usize> = HashMap::new();
        let mut statement = self.connection.prepare("SELECT id, name, size FROM packs").map_err(|e| self.error(e))?;
        let mut rows = statement.query([]).map_err(|e| self.error(e))?;
        while let Some(row) = rows.next().map_err(|e| self.error(e))? {
            let id: i64 = row.get(0).map_err(|e| self.error(e))?;
            index.insert(id, packs.len());
            packs.push((row.get(1).map_err(|e| self.error(e))?, row.get(2).map_err(|e| self.error(e))?, Vec::new()));
        }
        let mut statement = self
            .connection
            .prepare("SELECT pack, id, offset, length, raw_length, kind, compression FROM chunks")
            .map_err(|e| self.error(e))?;
        let mut rows = statement.query([]).map_err(|e| self.error(e))?;
        while let Some(row) = rows.next().map_err(|e| self.error(e))? {
            let read = || -> rusqlite::Result<(i64, Vec<u8>, PackEntry)> {
                let bytes: Vec<u8> = row.get(1)?;
                let kind: u8 = row.get(5)?;
                let compression: u8 = row.get(6)?;
                let entry = PackEntry {
                    id: ObjectId::from_bytes(<[u8; 32]>::try_from(bytes.as_slice()).unwrap_or([0; 32])),
                    kind: BlobKind::from_code(kind).unwrap_or(BlobKind::Data),
                    compression: Compression::from_code(compression).unwrap_or(Compression::None),
                    offset: row.get(2)?,
                    length: row.get(3)?,
                    raw_length: row.get(4)?,
                };
                Ok((row.get(0)?, bytes, entry))
            };
            let (pack, bytes, entry) = read().map_err(|e| self.error(e))?;
            if bytes.len() != 32 {
                return Err(Error::Corrupt {
                    what: self.path.display().to_string(),
                    detail: "a blob id is not 32 bytes".to_owned(),
                });
            }
            if let Some(&position) = index.get(&pack) {
                packs[position].2.push(entry);
            }
        }
        Ok(packs)
    }

    /// Forgets a pack and its blobs (the pack is gone from the store).
    pub fn remove_pack(&mut self, name: &str) -> Result<()> {
        let path = self.path.clone();
        let fail = |source| catalog_error(&path, source);
        let transaction = self.connection.transaction().map_err(fail)?;
        transaction
            .execute("DELETE FROM chunks WHERE pack = (SELECT id FROM packs WHERE name = ?1)", [name])
            .map_err(fail)?;
        transaction.execute("DELETE FROM packs WHERE name = ?1", [name]).map_err(fail)?;
        transaction.commit().map_err(fail)
    }

    /// The ids of every indexed blob: the set a backup deduplicates against.
    pub fn blob_ids(&self) -> Result<HashSet<ObjectId>> {
        let mut statement = self.connection.prepare("SELECT id FROM chunks").map_err(|e| self.error(e))?;
        let mut ids = HashSet::new();
        let mut rows = statement.query([]).map_err(|e| self.error(e))?;
        while let Some(row) = rows.next().map_err(|e| self.error(e))? {
            let bytes: Vec<u8> = row.get(0).map_err(|e| self.error(e))?;
            if let Ok(array) = <[u8; 32]>::try_from(bytes.as_slice()) {
                ids.insert(ObjectId::from_bytes(array));
            }
        }
        Ok(ids)
    }

    /// Runs `read` inside one read transaction: many lookups then take the database's
    /// read lock once, not once each.
    pub fn reading<T>(&self, read: impl FnOnce(&Catalog) -> Result<T>) -> Result<T> {
        let transaction = self.connection.unchecked_transaction().map_err(|e| self.error(e))?;
        let result = read(self);
        // Only reads were made: ending the transaction either way changes nothing.
        let _ = transaction.rollback();
        result
    }

    /// Where a blob is stored, if it is indexed.
    pub fn locate(&self, id: &ObjectId) -> Result<Option<Location>> {
        let mut statement = self
            .connection
            .prepare_cached(
                "SELECT packs.name, offset, length, raw_length, kind, compression
                 FROM chunks JOIN packs ON packs.id = chunks.pack WHERE chunks.id = ?1",
            )
            .map_err(|e| self.error(e))?;
        statement
            .query_row([id.as_bytes().as_slice()], |row| {
                let kind: u8 = row.get(4)?;
                let compression: u8 = row.get(5)?;
                Ok(Location {
                    pack: row.get(0)?,
                    entry: PackEntry {
                        id: *id,
                        kind: BlobKind::from_code(kind).unwrap_or(BlobKind::Data),
                        compression: Compression::from_code(compression).unwrap_or(Compression::None),
                        offset: row.get(1)?,
                        length: row.get(2)?,
                        raw_length: row.get(3)?,
                    },
                })
            })
            .optional()
            .map_err(|e| self.error(e))
    }

    /// Which pack each blob is in, for every indexed blob.
    pub fn blob_packs(&self) -> Result<HashMap<ObjectId, String>> {
        let mut statement = self
            .connection
            .prepare("SELECT chunks.id, packs.name FROM chunks JOIN packs ON packs.id = chunks.pack")
            .map_err(|e| self.error(e))?;
        let mut map = HashMap::new();
        let mut rows = statement.query([]).map_err(|e| self.error(e))?;
        while let Some(row) = rows.next().map_err(|e| self.error(e))? {
            let bytes: Vec<u8> = row.get(0).map_err(|e| self.error(e))?;
            let pack: String = row.get(1).map_err(|e| self.error(e))?;
            if let Ok(array) = <[u8; 32]>::try_from(bytes.as_slice()) {
                map.insert(ObjectId::from_bytes(array), pack);
            }
        }
        Ok(map)
    }

    /// Records a complete snapshot.
    pub fn add_snapshot(&self, id: &ObjectId, manifest: &Manifest) -> Result<()> {
        let json = serde_json::to_string(manifest).expect("a manifest always serializes");
        self.connection
            .execute(
                "INSERT OR REPLACE INTO snapshots (id, env, commit_id, created, manifest) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![id.to_hex(), manifest.env, manifest.commit, manifest.created.to_rfc3339(), json],
            )
            .map_err(|e| self.error(e))?;
        Ok(())
    }

    /// Forgets a snapshot.
    pub fn remove_snapshot(&self, id: &ObjectId) -> Result<()> {
        self.connection.execute("DELETE FROM snapshots WHERE id = ?1", [id.to_hex()]).map_err(|e| self.error(e))?;
        Ok(())
    }

    /// The ids of every recorded snapshot.
    pub fn snapshot_ids(&self) -> Result<HashSet<ObjectId>> {
        let mut statement = self.connection.prepare("SELECT id FROM snapshots").map_err(|e| self.error(e))?;
        let ids: Vec<String> =
            statement.query_map([], |row| row.get(0)).and_then(Iterator::collect).map_err(|e| self.error(e))?;
        Ok(ids.iter().filter_map(|id| ObjectId::from_hex(id)).collect())
    }

    /// The snapshots, newest first; only those of `env` when given.
    pub fn snapshots(&self, env: Option<&str>) -> Result<Vec<Snapshot>> {
        let mut statement = self
            .connection
            .prepare(
                "SELECT id, manifest FROM snapshots WHERE ?1 IS NULL OR env = ?1
                 ORDER BY created DESC, id DESC",
            )
            .map_err(|e| self.error(e))?;
        let rows: Vec<(String, String)> = statement
            .query_map([env], |row| Ok((row.get(0)?, row.get(1)?)))
            .and_then(Iterator::collect)
            .map_err(|e| self.error(e))?;
        rows.into_iter()
            .map(|(id, json)| {
                let manifest = serde_json::from_str(&json).map_err(|error| Error::Corrupt {
                    what: format!("the catalog's copy of snapshot {id}"),
                    detail: error.to_string(),
                })?;
                let id = ObjectId::from_hex(&id).ok_or_else(|| Error::Corrupt {
                    what: "the catalog".to_owned(),
                    detail: format!("`{id}` is not a snapshot id"),
                })?;
                Ok(Snapshot { id, manifest })
            })
            .collect()
    }

    /// Records a new job.
    pub fn add_job(&self, job: &Job) -> Result<()> {
        self.insert_job("INSERT", job)
    }

    /// Records `job` as it stands, state and all: for a rebuilt catalog.
    pub fn copy_job(&self, job: &Job) -> Result<()> {
        self.insert_job("INSERT OR REPLACE", job)
    }

    /// Writes every field of `job` with `verb` (`INSERT`, `INSERT OR REPLACE`).
    fn insert_job(&self, verb: &str, job: &Job) -> Result<()> {
        let sql = format!(
            "{verb} INTO jobs (id, env, commit_id, trigger, mode, created, state, progress, note, keep_for, user,
             host, started, seen, finished, snapshot, error)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17)"
        );
        self.connection
            .execute(
                &sql,
                params![
                    job.id,
                    job.env,
                    job.commit,
                    job.trigger.as_str(),
                    job.mode.as_str(),
                    time(job.created),
                    job.state.as_str(),
                    job.progress,
                    job.note,
                    job.keep_for,
                    job.user,
                    job.host,
                    job.started.map(time),
                    job.seen.map(time),
                    job.finished.map(time),
                    job.snapshot,
                    job.error
                ],
            )
            .map_err(|e| self.error(e))?;
        Ok(())
    }

    /// A job starts running.
    pub fn start_job(&self, id: &str, started: DateTime<Utc>) -> Result<()> {
        self.connection
            .execute(
                "UPDATE jobs SET state = 'running', started = ?2, seen = ?2 WHERE id = ?1 AND state = 'queued'",
                params![id, time(started)],
            )
            .map_err(|e| self.error(e))?;
        Ok(())
    }

    /// A running job's progress, 0–99, reported at `seen`: its last sign of life.
    pub fn set_job_progress(&self, id: &str, progress: u8, seen: DateTime<Utc>) -> Result<()> {
        self.connection
            .execute(
                "UPDATE jobs SET progress = ?2, seen = ?3 WHERE id = ?1 AND state = 'running'",
                params![id, progress, time(seen)],
            )
            .map_err(|e| self.error(e))?;
        Ok(())
    }

    /// A job ends: complete with its snapshot, or failed with `error`.
    pub fn finish_job(
        &self,
        id: &str,
        finished: DateTime<Utc>,
        snapshot: Option<&ObjectId>,
        error: Option<&str>,
    ) -> Result<()> {
        let (state, progress) = if snapshot.is_some() { ("complete", 100) } else { ("failed", 0) };
        self.connection
            .execute(
                "UPDATE jobs SET state = ?2, progress = CASE WHEN ?3 = 100 THEN 100 ELSE progress END,
                 finished = ?4, snapshot = ?5, error = ?6 WHERE id = ?1",
                params![id, state, progress, time(finished), snapshot.map(ObjectId::to_hex), error],
            )
            .map_err(|e| self.error(e))?;
        Ok(())
    }

    /// Marks a job whose process died `failed`, unless it ended meanwhile: a job that
    /// completed between being listed and its lock being tried keeps its snapshot.
    pub fn fail_dead_job(&self, id: &str, finished: DateTime<Utc>, error: &str) -> Result<bool> {
        let changed = self
            .connection
            .execute(
                "UPDATE jobs SET state = 'failed', finished = ?2, error = ?3
                 WHERE id = ?1 AND state IN ('queued', 'running')",
                params![id, time(finished), error],
            )
            .map_err(|e| self.error(e))?;
        Ok(changed > 0)
    }

    /// Removes a job's record.
    pub fn remove_job(&self, id: &str) -> Result<()> {
        self.connection.execute("DELETE FROM jobs WHERE id = ?1", [id]).map_err(|e| self.error(e))?;
        Ok(())
    }

    /// The jobs, newest first; only those of `env` when given.
    pub fn jobs(&self, env: Option<&str>) -> Result<Vec<Job>> {
        self.select_jobs("WHERE ?1 IS NULL OR env = ?1", env)
    }

    /// The jobs that have not ended (`queued` or `running`), newest first; only those
    /// of `env` when given.
    pub fn unfinished_jobs(&self, env: Option<&str>) -> Result<Vec<Job>> {
        self.select_jobs("WHERE state IN ('queued', 'running') AND (?1 IS NULL OR env = ?1)", env)
    }

    /// Removes the records of the jobs that ended before `cutoff`; returns their ids.
    pub fn remove_jobs_ended_before(&self, cutoff: DateTime<Utc>) -> Result<Vec<String>> {
        let mut statement = self
            .connection
            .prepare("DELETE FROM jobs WHERE state IN ('complete', 'failed') AND finished < ?1 RETURNING id")
            .map_err(|e| self.error(e))?;
        statement.query_map([time(cutoff)], |row| row.get(0)).and_then(Iterator::collect).map_err(|e| self.error(e))
    }

    /// The oldest job recorded before job `id` that has not ended, if any: the one
    /// that goes first.
    pub fn job_ahead_of(&self, id: &str) -> Result<Option<Job>> {
        Ok(self
            .select_jobs(
                "WHERE state IN ('queued', 'running') AND rowid < (SELECT rowid FROM jobs WHERE id = ?1)",
                Some(id),
            )?
            .pop())
    }

    /// The jobs whose id starts with `prefix`.
    pub fn jobs_with_prefix(&self, prefix: &str) -> Result<Vec<Job>> {
        self.select_jobs("WHERE substr(id, 1, length(?1)) = ?1", Some(prefix))
    }

    fn select_jobs(&self, filter: &str, value: Option<&str>) -> Result<Vec<Job>> {
        let sql = format!(
            "SELECT id, env, commit_id, trigger, mode, created, state, progress, note, keep_for, user, host,
             started, seen, finished, snapshot, error FROM jobs {filter} ORDER BY rowid DESC"
        );
        let mut statement = self.connection.prepare(&sql).map_err(|e| self.error(e))?;
        let parse_time = |text: Option<String>| {
            text.and_then(|text| DateTime::parse_from_rfc3339(&text).ok()).map(|time| time.with_timezone(&Utc))
        };
        statement
            .query_map([value], |row| {
                let trigger: String = row.get(3)?;
                let mode: String = row.get(4)?;
                let state: String = row.get(6)?;
                Ok(Job {
                    id: row.get(0)?,
                    env: row.get(1)?,
                    commit: row.get(2)?,
                    trigger: trigger.parse().unwrap_or(Trigger::Manual),
                    mode: if mode == Mode::Live.as_str() { Mode::Live } else { Mode::Consistent },
                    created: parse_time(row.get(5)?).unwrap_or(DateTime::<Utc>::UNIX_EPOCH),
                    state: JobState::parse(&state),
                    progress: row.get(7)?,
                    note: row.get(8)?,
                    keep_for: row.get(9)?,
                    user: row.get(10)?,
                    host: row.get(11)?,
                    started: parse_time(row.get(12)?),
                    seen: parse_time(row.get(13)?),
                    finished: parse_time(row.get(14)?),
                    snapshot: row.get(15)?,
                    error: row.get(16)?,
                })
            })
            .and_then(Iterator::collect)
            .map_err(|e| self.error(e))
    }

    /// Appends an entry to the activity log.
    pub fn record(&self, activity: &Activity) -> Result<()> {
        self.connection
            .execute(
                "INSERT INTO activity (started, duration_ms, user, host, action, env, snapshots, result, detail)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                params![
                    activity.started.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                    i64::try_from(activity.duration_ms).unwrap_or(i64::MAX),
                    activity.user,
                    activity.host,
                    activity.action,
                    activity.env,
                    activity.snapshots.join(" "),
                    activity.result.as_str(),
                    activity.detail,
                ],
            )
            .map_err(|e| self.error(e))?;
        Ok(())
    }

    /// The activity log, newest first: the newest `limit` entries (all when `None`),
    /// only those of `env` when given.
    pub fn activities(&self, env: Option<&str>, limit: Option<usize>) -> Result<Vec<Activity>> {
        let limit = limit.map_or(-1, |limit| i64::try_from(limit).unwrap_or(i64::MAX));
        let mut statement = self
            .connection
            .prepare(
                "SELECT started, duration_ms, user, host, action, env, snapshots, result, detail FROM activity
                 WHERE ?1 IS NULL OR env = ?1 ORDER BY id DESC LIMIT ?2",
            )
            .map_err(|e| self.error(e))?;
        statement
            .query_map(params![env, limit], |row| {
                let started: String = row.get(0)?;
                let duration: i64 = row.get(1)?;
                let snapshots: String = row.get(6)?;
                let result: String = row.get(7)?;
                Ok(Activity {
                    started: DateTime::parse_from_rfc3339(&started)
                        .map(|time| time.with_timezone(&Utc))
                        .unwrap_or(DateTime::<Utc>::UNIX_EPOCH),
                    duration_ms: u64::try_from(duration).unwrap_or(0),
                    user: row.get(2)?,
                    host: row.get(3)?,
                    action: row.get(4)?,
                    env: row.get(5)?,
                    snapshots: snapshots.split_whitespace().map(str::to_owned).collect(),
                    result: if result == Outcome::Success.as_str() { Outcome::Success } else { Outcome::Failure },
                    detail: row.get(8)?,
                })
            })
            .and_then(Iterator::collect)
            .map_err(|e| self.error(e))
    }

    /// Records what `check` found: the snapshots that cannot be restored in full, with
    /// why. With `replace`, they replace what was recorded; else they are added to it.
    pub fn record_damage(&self, damaged: &[(ObjectId, String)], replace: bool) -> Result<()> {
        let transaction = self.connection.unchecked_transaction().map_err(|e| self.error(e))?;
        if replace {
            transaction.execute("DELETE FROM damage", []).map_err(|e| self.error(e))?;
        }
        for (id, problem) in damaged {
            transaction
                .execute(
                    "INSERT OR REPLACE INTO damage (snapshot, problem) VALUES (?1, ?2)",
                    params![id.to_hex(), problem],
                )
                .map_err(|e| self.error(e))?;
        }
        transaction.commit().map_err(|e| self.error(e))
    }

    /// The snapshots the last checks found damaged, with why.
    pub fn damage(&self) -> Result<HashMap<ObjectId, String>> {
        let mut statement =
            self.connection.prepare("SELECT snapshot, problem FROM damage").map_err(|e| self.error(e))?;
        let rows: Vec<(String, String)> = statement
            .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
            .and_then(Iterator::collect)
            .map_err(|e| self.error(e))?;
        Ok(rows.into_iter().filter_map(|(id, problem)| Some((ObjectId::from_hex(&id)?, problem))).collect())
    }

    /// The ids that start with `prefix` (lowercase hex).
    pub fn snapshots_with_prefix(&self, prefix: &str) -> Result<Vec<ObjectId>> {
        let mut statement = self
            .connection
            .prepare("SELECT id FROM snapshots WHERE substr(id, 1, length(?1)) = ?1 ORDER BY id")
            .map_err(|e| self.error(e))?;
        let ids: Vec<String> =
            statement.query_map([prefix], |row| row.get(0)).and_then(Iterator::collect).map_err(|e| self.error(e))?;
        Ok(ids.iter().filter_map(|id| ObjectId::from_hex(id)).collect())
    }
}

/// Creates `path` 0600 unless it exists: SQLite would create it after the umask, and
/// it gives the -wal and -shm files the mode of the database, so all three stay private.
fn create_private(path: &Path) -> Result<()> {
    match std::fs::OpenOptions::new().write(true).create_new(true).mode(crate::store::backend::PRIVATE_FILE).open(path)
    {
        // There already (or a read-only repository): SQLite opens it as it is.
        Ok(_) => Ok(()),
        Err(error) if error.kind() != std::io::ErrorKind::NotFound => Ok(()),
        Err(error) => Err(Error::io("creating", path, error)),
    }
}

/// A time as the catalog stores it.
fn time(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn catalog_error(path: &Path, source: rusqlite::Error) -> Error {
    if source.sqlite_error_code() == Some(rusqlite::ErrorCode::DiskFull) {
        return Error::StorageFull { path: path.to_owned() };
    }
    Error::Catalog { path: path.to_owned(), source }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packs_and_blobs_are_indexed() -> Result<()> {
        let mut catalog = Catalog::in_memory()?;
        let id = ObjectId::of(b"chunk");
        let entry = PackEntry {
            id,
            kind: BlobKind::Data,
            compression: Compression::Zstd,
            offset: 8,
            length: 10,
            raw_length: 20,
        };
        catalog.add_pack("packs/aa/one.pack", 100, &[entry])?;
        catalog.add_pack("packs/bb/two.pack", 100, &[PackEntry { offset: 30, ..entry }])?;
        let location = catalog.locate(&id)?.expect("indexed");
        assert_eq!(location.pack, "packs/aa/one.pack", "the first location is kept");
        assert_eq!(location.entry, entry);
        assert!(catalog.blob_ids()?.contains(&id));
        catalog.remove_pack("packs/aa/one.pack")?;
        assert_eq!(catalog.locate(&id)?, None);
        assert_eq!(catalog.pack_names()?.len(), 1);
        Ok(())
    }

    #[test]
    fn an_older_catalogs_jobs_and_log_move_to_their_own_file() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| Error::io("creating", "tmp", e))?;
        let path = dir.path().join("catalog.sqlite");
        let old = Connection::open(&path).map_err(|e| catalog_error(&path, e))?;
        let tables = RECORDS_SCHEMA.replace("records.", "");
        old.execute_batch(&tables).map_err(|e| catalog_error(&path, e))?;
        old.execute_batch(
            "INSERT INTO activity (started, duration_ms, user, host, action, env, snapshots, result, detail)
             VALUES ('2026-01-01T00:00:00.000Z', 5, 'ann', 'box', 'backup', 'main', '', 'success', NULL);",
        )
        .map_err(|e| catalog_error(&path, e))?;
        drop(old);
        let catalog = Catalog::open(&path)?;
        assert_eq!(catalog.activities(None, None)?.len(), 1);
        drop(catalog);
        // The catalog itself can go now: the log stays.
        std::fs::remove_file(&path).map_err(|e| Error::io("removing", &path, e))?;
        assert_eq!(Catalog::open(&path)?.activities(None, None)?.len(), 1);
        Ok(())
    }

    #[test]
    fn newer_schema_is_refused() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| Error::io("creating", "tmp", e))?;
        let path = dir.path().join("catalog.sqlite");
        drop(Catalog::open(&path)?);
        let connection = Connection::open(&path).map_err(|e| catalog_error(&path, e))?;
        connection.pragma_update(None, "user_version", 99).map_err(|e| catalog_error(&path, e))?;
        drop(connection);
        match Catalog::open(&path) {
            Err(Error::FormatTooNew { found: 99, .. }) => Ok(()),
            other => panic!("expected FormatTooNew, got {other:?}"),
        }
    }
}
