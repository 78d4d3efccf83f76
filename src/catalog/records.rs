//! Saving what can be saved of a damaged [`RECORDS`] file.
//!
//! The jobs and the activity log are primary data: nothing could rebuild them. So a
//! damaged records file is never deleted and never simply started afresh: `repair`
//! copies every row SQLite can still read into a new file, moves the damaged one
//! aside beside it, and only then puts the new one in its place. A crash at any point
//! leaves either the damaged file where it was or the new one, never neither.

use std::fs;
use std::path::{Path, PathBuf};

use chrono::Utc;
use rusqlite::types::Value;
use rusqlite::{Connection, OpenFlags, ToSql};

use super::{RECORDS_SCHEMA, create_private};
use crate::error::{Error, IoContext, Result};

/// The tables of the records file, in the order they are copied.
const TABLES: [&str; 3] = ["jobs", "damage", "activity"];

/// What [`salvage`] did with a damaged records file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Salvage {
    /// What SQLite found wrong with it.
    pub damage: String,
    /// Where the damaged file now is.
    pub aside: PathBuf,
    /// Rows copied into the new file, per table, as `(table, rows)`.
    pub kept: Vec<(&'static str, usize)>,
    /// Tables that could not be read to their end (their later rows are lost), with why.
    pub cut_short: Vec<String>,
}

/// What is wrong with the records file at `path`, if anything: it cannot be opened
/// as a database, or SQLite's `quick_check` finds a damaged page.
pub fn damage(path: &Path) -> Option<String> {
    let connection = match Connection::open(path) {
        Ok(connection) => connection,
        Err(error) => return Some(error.to_string()),
    };
    let checked = connection.prepare("PRAGMA quick_check").and_then(|mut statement| {
        statement.query_map([], |row| row.get::<_, String>(0)).and_then(Iterator::collect::<rusqlite::Result<Vec<_>>>)
    });
    match checked {
        Ok(lines) if lines.iter().all(|line| line == "ok") => None,
        Ok(lines) => Some(lines.into_iter().take(3).collect::<Vec<_>>().join("; ")),
        Err(error) => Some(error.to_string()),
    }
}

/// When the records file at `path` is damaged, replaces it by a new one holding every
/// row that can still be read of it, and moves it aside to
/// `records.sqlite.damaged-<time>`. `None` when it is intact or absent.
///
/// Run only under the repository's exclusive lock, before anything opens the file.
pub fn salvage(path: &Path) -> Result<Option<Salvage>> {
    if fs::metadata(path).is_err() {
        return Ok(None);
    }
    let Some(damage) = damage(path) else { return Ok(None) };
    let rebuild = PathBuf::from(format!("{}.rebuild", path.display()));
    for leftover in [rebuild.clone(), PathBuf::from(format!("{}.rebuild-journal", path.display()))] {
        match fs::remove_file(&leftover) {
            Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
                return Err(Error::io("removing", &leftover, error));
            }
            _ => {}
        }
    }
    create_private(&rebuild)?;
    let (kept, cut_short) =
        copy_rows(path, &rebuild).map_err(|source| Error::Catalog { path: rebuild.clone(), source })?;

    let stamp = Utc::now().format("%Y%m%dT%H%M%S%.3fZ");
    let aside = PathBuf::from(format!("{}.damaged-{stamp}", path.display()));
    let journal = PathBuf::from(format!("{}-journal", path.display()));
    match fs::rename(&journal, format!("{}-journal", aside.display())) {
        Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
            return Err(Error::io("moving aside", &journal, error));
        }
        _ => {}
    }
    fs::rename(path, &aside).context("moving aside", path)?;
    fs::rename(&rebuild, path).context("replacing", path)?;
    if let Some(folder) = path.parent() {
        fs::File::open(folder).and_then(|folder| folder.sync_all()).context("syncing", folder)?;
    }
    Ok(Some(Salvage { damage, aside, kept, cut_short }))
}

/// Copies every readable row of the records at `damaged` into a new records file at
/// `rebuild`, table by table, row by row: a damaged page ends its table's copy there,
/// and a row that no longer fits the schema is left out. The damaged file is only
/// read, through a connection of its own, so that its errors are never the new one's.
type Copied = (Vec<(&'static str, usize)>, Vec<String>);
fn copy_rows(damaged: &Path, rebuild: &Path) -> rusqlite::Result<Copied> {
    let mut connection = Connection::open(rebuild)?;
    connection.execute_batch(&RECORDS_SCHEMA.replace("records.", ""))?;
    let mut kept = Vec::new();
    let mut cut_short = Vec::new();
    let old = match Connection::open_with_flags(damaged, OpenFlags::SQLITE_OPEN_READ_ONLY) {
        Ok(old) => old,
        // A file SQLite cannot read at all gives nothing, and an empty records file.
        Err(error) => {
            cut_short.push(format!("every table: {error}"));
            return Ok((kept, cut_short));
        }
    };
    let transaction = connection.transaction()?;
    for table in TABLES {
        match copy_table(&old, &transaction, table) {
            Ok(rows) => kept.push((table, rows)),
            Err((rows, error)) => {
                kept.push((table, rows));
                cut_short.push(format!("{table}: {error}"));
            }
        }
    }
    transaction.commit()?;
    Ok((kept, cut_short))
}

/// Copies the readable rows of `table` from `old` into `new`; on a read error, the
/// rows copied so far and the error.
fn copy_table(old: &Connection, new: &Connection, table: &str) -> std::result::Result<usize, (usize, rusqlite::Error)> {
    let mut select = old.prepare(&format!("SELECT * FROM {table}")).map_err(|error| (0, error))?;
    let columns: Vec<String> = select.column_names().map(str::to_owned).collect();
    let placeholders = vec!["?"; columns.len()].join(", ");
    let mut insert = new
        .prepare(&format!("INSERT OR IGNORE INTO {table} ({}) VALUES ({placeholders})", columns.join(", ")))
        .map_err(|error| (0, error))?;
    let mut rows = select.query([]).map_err(|error| (0, error))?;
    let mut copied = 0;
    loop {
        let row = match rows.next() {
            Ok(Some(row)) => row,
            Ok(None) => return Ok(copied),
            Err(error) => return Err((copied, error)),
        };
        let values: Vec<Value> = (0..columns.len()).map(|index| row.get(index).unwrap_or(Value::Null)).collect();
        let parameters: Vec<&dyn ToSql> = values.iter().map(|value| value as &dyn ToSql).collect();
        // A row whose damaged fields break a constraint is left out; the others go on.
        if insert.execute(parameters.as_slice()).is_ok_and(|inserted| inserted > 0) {
            copied += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn records_with(path: &Path, activities: usize) -> rusqlite::Result<()> {
        let connection = Connection::open(path)?;
        connection.execute_batch(&RECORDS_SCHEMA.replace("records.", ""))?;
        for n in 0..activities {
            connection.execute(
                "INSERT INTO activity (started, duration_ms, user, host, action, env, snapshots, result, detail)
                 VALUES ('2026-12-03T10:00:00Z', ?1, 'ann', 'box', 'backup', 'main', '[]', 'ok', ?2)",
                rusqlite::params![n as i64, "x".repeat(500)],
            )?;
        }
        Ok(())
    }

    #[test]
    fn an_intact_file_is_left_as_it_is() -> std::result::Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("records.sqlite");
        records_with(&path, 3)?;
        let before = fs::read(&path)?;
        assert_eq!(salvage(&path)?, None);
        assert_eq!(fs::read(&path)?, before);
        Ok(())
    }

    #[test]
    fn rows_before_a_damaged_page_are_kept_and_the_damaged_file_is_moved_aside()
    -> std::result::Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("records.sqlite");
        records_with(&path, 400)?;
        let mut bytes = fs::read(&path)?;
        let damaged_page = bytes.len() / 4096 - 2;
        bytes[damaged_page * 4096..(damaged_page + 1) * 4096].fill(0xA5);
        fs::write(&path, &bytes)?;

        let salvage = salvage(&path)?.ok_or("the damage is found")?;
        assert_eq!(fs::read(&salvage.aside)?, bytes, "the damaged file is kept, byte for byte");
        let activity = salvage.kept.iter().find(|(table, _)| *table == "activity").map_or(0, |(_, rows)| *rows);
        assert!((100..400).contains(&activity), "{activity} of 400 activity entries kept: {salvage:?}");
        assert_eq!(damage(&path), None, "the new file is intact");
        let connection = Connection::open(&path)?;
        let rows: usize = connection.query_row("SELECT count(*) FROM activity", [], |row| row.get(0))?;
        assert_eq!(rows, activity);
        Ok(())
    }

    #[test]
    fn a_file_that_is_no_database_at_all_is_replaced_by_an_empty_one()
    -> std::result::Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("records.sqlite");
        fs::write(&path, b"not a database, just garbage that fills more than one header's worth ".repeat(80))?;
        let salvage = salvage(&path)?.ok_or("the damage is found")?;
        assert!(salvage.damage.contains("not a database"), "{}", salvage.damage);
        assert!(salvage.aside.exists());
        let connection = Connection::open(&path)?;
        let rows: usize = connection.query_row("SELECT count(*) FROM jobs", [], |row| row.get(0))?;
        assert_eq!(rows, 0);
        Ok(())
    }
}
