//! The SQLite adapter: the online backup API while the application writes, restores
//! that swap a new file into place, and the failures users meet.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::Duration;

use common::{Project, TestResult};
use rusqlite::Connection;

const CONFIG: &str = r#"
production = "main"

[[service]]
name = "app"
type = "sqlite"
path = "var/{branch}/app.sqlite"
"#;

fn database(project: &Project, branch: &str) -> PathBuf {
    project.root().join("var").join(branch).join("app.sqlite")
}

/// The content of row `id`: deterministic, so a torn row would show.
fn payload(id: i64) -> Vec<u8> {
    common::noise(id as u64, 500 + (id as usize % 700))
}

/// A database with `rows` rows, in WAL or rollback-journal mode.
fn create(path: &Path, rows: i64, wal: bool) -> rusqlite::Result<Connection> {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
    }
    let connection = Connection::open(path)?;
    connection.pragma_update(None, "journal_mode", if wal { "WAL" } else { "DELETE" })?;
    connection.busy_timeout(Duration::from_secs(30))?;
    connection.execute_batch("CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT NOT NULL, data BLOB NOT NULL);")?;
    insert(&connection, 1, rows)?;
    Ok(connection)
}

fn insert(connection: &Connection, from: i64, count: i64) -> rusqlite::Result<()> {
    connection.execute_batch("BEGIN")?;
    for id in from..from + count {
        connection.execute("INSERT INTO items VALUES (?1, ?2, ?3)", (id, format!("item {id}"), payload(id)))?;
    }
    connection.execute_batch("COMMIT")
}

/// Checks the file's integrity and that it holds exactly rows 1..=n, each intact; returns n.
fn check(path: &Path) -> Result<i64, Box<dyn std::error::Error>> {
    let connection = Connection::open(path)?;
    let integrity: String = connection.query_row("PRAGMA integrity_check", [], |row| row.get(0))?;
    assert_eq!(integrity, "ok", "{}", path.display());
    let mut statement = connection.prepare("SELECT id, name, data FROM items ORDER BY id")?;
    let mut expected = 1;
    let mut rows = statement.query([])?;
    while let Some(row) = rows.next()? {
        let (id, name, data): (i64, String, Vec<u8>) = (row.get(0)?, row.get(1)?, row.get(2)?);
        assert_eq!(id, expected, "rows are 1..=n with none missing");
        assert_eq!(name, format!("item {id}"));
        assert!(data == payload(id), "row {id} is intact");
        expected += 1;
    }
    Ok(expected - 1)
}

#[test]
fn a_database_round_trips_and_restores_into_other_branches() -> TestResult {
    let project = Project::new(CONFIG)?;
    project.ok(&["init"])?;
    let main = database(&project, "main");
    let app = create(&main, 2000, true)?;
    // Rows still in the WAL, not yet in the database file, are part of the capture.
    app.pragma_update(None, "wal_autocheckpoint", 0)?;
    insert(&app, 2001, 500)?;
    assert!(main.with_file_name("app.sqlite-wal").metadata()?.len() > 0);
    let id = project.backup(&[])?;
    assert_eq!(project.snapshots()?[0]["elements"][0]["kind"], "service");

    // After the capture: more rows, and a WAL left behind as by a crash. A restore must
    // not replay that WAL into the restored file.
    insert(&app, 2501, 300)?;
    app.execute("DELETE FROM items WHERE id < 100", [])?;
    let stale_wal = fs::read(main.with_file_name("app.sqlite-wal"))?;
    drop(app);
    fs::write(main.with_file_name("app.sqlite-wal"), stale_wal)?;
    fs::set_permissions(&main, fs::Permissions::from_mode(0o640))?;

    project.ok(&["restore", &id[..12], "--yes"])?;
    assert_eq!(check(&main)?, 2500);
    assert_eq!(fs::metadata(&main)?.permissions().mode() & 0o777, 0o640, "the file keeps its mode");
    assert!(!main.with_file_name("app.sqlite.envsnap-restore").exists(), "nothing is left beside it");

    // Into another branch that has its own database (through a symlink, which stays),
    // and into one that has none yet.
    let staging = database(&project, "staging");
    let real = project.root().join("data/staging.sqlite");
    drop(create(&real, 10, false)?);
    fs::create_dir_all(staging.parent().ok_or("parent")?)?;
    std::os::unix::fs::symlink(&real, &staging)?;
    project.ok(&["restore", &id[..12], "--target", "staging", "--branch-from", "main", "--yes"])?;
    assert_eq!(check(&real)?, 2500);
    assert!(fs::symlink_metadata(&staging)?.file_type().is_symlink(), "the link is kept");
    project.ok(&["restore", &id[..12], "--target", "fresh", "--branch-from", "main", "--yes"])?;
    assert_eq!(check(&database(&project, "fresh"))?, 2500);
    // The original is untouched by restores into other branches.
    let modified = Connection::open(&main)?;
    modified.execute("DELETE FROM items WHERE id > 2400", [])?;
    drop(modified);
    project.ok(&["restore", &id[..12], "--target", "staging", "--yes"])?;
    assert_eq!(check(&main)?, 2400);
    Ok(())
}

#[test]
fn a_backup_while_the_application_writes_holds_a_consistent_prefix() -> TestResult {
    for wal in [true, false] {
        let project = Project::new(CONFIG)?;
        project.ok(&["init"])?;
        let main = database(&project, "main");
        drop(create(&main, 30_000, wal)?);
        let stop = Arc::new(AtomicBool::new(false));
        let written = Arc::new(AtomicI64::new(30_000));
        let writer = {
            let (stop, written, path) = (stop.clone(), written.clone(), main.clone());
            std::thread::spawn(move || -> rusqlite::Result<()> {
                let connection = Connection::open(&path)?;
                connection.busy_timeout(Duration::from_secs(30))?;
                while !stop.load(Ordering::Relaxed) {
                    let next = written.load(Ordering::Relaxed) + 1;
                    insert(&connection, next, 5)?;
                    written.store(next + 4, Ordering::Relaxed);
                }
                Ok(())
            })
        };
        std::thread::sleep(Duration::from_millis(50));
        let before = written.load(Ordering::Relaxed);
        let id = project.backup(&[]);
        let after = written.load(Ordering::Relaxed);
        stop.store(true, Ordering::Relaxed);
        writer.join().map_err(|_| "the writer panicked")??;
        let id = id?;
        assert!(after > before, "the application wrote during the backup");

        let out = project.root().join("out");
        project.ok(&["restore", &id[..12], "--to", out.to_str().ok_or("utf-8")?])?;
        let rows = check(&out.join("app/database.sqlite"))?;
        assert!(rows >= before && rows <= after, "{rows} rows, written {before}..{after} (wal: {wal})");
    }
    Ok(())
}

#[test]
fn a_missing_database_fails_the_snapshot_and_is_not_created() -> TestResult {
    let project = Project::new(CONFIG)?;
    project.ok(&["init"])?;
    let stderr = project.fails(&["backup"], 1)?;
    let main = database(&project, "main");
    assert!(stderr.contains("service `app`") && stderr.contains(&main.display().to_string()), "{stderr}");
    assert!(stderr.contains("does not exist"), "{stderr}");
    assert!(project.snapshots()?.is_empty(), "no snapshot is recorded");
    assert!(!main.exists(), "the database was not created");

    fs::create_dir_all(main.parent().ok_or("parent")?)?;
    fs::write(&main, b"not a database at all, just text that is long enough to have a header")?;
    let stderr = project.fails(&["backup"], 1)?;
    assert!(stderr.contains("service `app`") && stderr.contains("not a database"), "{stderr}");
    assert!(project.snapshots()?.is_empty());
    let leftovers: Vec<_> = fs::read_dir(main.parent().ok_or("parent")?)?.collect::<Result<_, _>>()?;
    assert_eq!(leftovers.len(), 1, "no temporary copy is left: {leftovers:?}");
    Ok(())
}
