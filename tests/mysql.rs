//! The mysql adapter against the MariaDB server of this machine (127.0.0.1:3306, user
//! `root` without a password). Every test makes its own databases, named
//! `envsnap_t_<pid>_<n>_<branch>`, and drops them when it ends, even when it fails.
//! Databases are compared by content: `mariadb-dump` of the original (tables, rows in
//! key order, views, routines, triggers, events) equals `mariadb-dump` of the restore.

mod common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::{Project, TestResult, bin_dir};
use envsnap::element::service::mysql::MysqlService;
use envsnap::element::service::{DumpSink, DumpSource, Service};

type Error = Box<dyn std::error::Error>;

/// Runs SQL as root (on `database`, if given); returns the rows, tab-separated.
fn sql(database: Option<&str>, text: &str) -> Result<String, Error> {
    let mut command = Command::new("mariadb");
    command.args([
        "-h",
        "127.0.0.1",
        "-u",
        "root",
        "--batch",
        "--skip-column-names",
        "--default-character-set=utf8mb4",
    ]);
    if let Some(database) = database {
        command.arg(format!("--database={database}"));
    }
    let mut child = command.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn()?;
    child.stdin.take().ok_or("stdin")?.write_all(text.as_bytes())?;
    let output = child.wait_with_output()?;
    if !output.status.success() {
        return Err(format!("mariadb: {}", String::from_utf8_lossy(&output.stderr)).into());
    }
    Ok(String::from_utf8(output.stdout)?)
}

/// Everything of a database, as `mariadb-dump` prints it (without the comments that
/// name the database).
fn dump(database: &str) -> Result<String, Error> {
    let output = Command::new("mariadb-dump")
        .args([
            "-h",
            "127.0.0.1",
            "-u",
            "root",
            "--default-character-set=utf8mb4",
            "--routines",
            "--triggers",
            "--events",
            "--hex-blob",
        ])
        .args(["--skip-extended-insert", "--skip-comments", "--single-transaction", "--", database])
        .output()?;
    if !output.status.success() {
        return Err(format!("mariadb-dump {database}: {}", String::from_utf8_lossy(&output.stderr)).into());
    }
    Ok(String::from_utf8(output.stdout)?)
}

fn assert_same(expected: &str, database: &str) -> TestResult {
    let actual = dump(database)?;
    if let Some((want, got)) = expected.lines().zip(actual.lines()).find(|(want, got)| want != got) {
        return Err(format!("{database} differs: expected `{want}`, found `{got}`").into());
    }
    assert_eq!(expected.lines().count(), actual.lines().count(), "lines in the dump of {database}");
    Ok(())
}

fn exists(database: &str) -> Result<bool, Error> {
    Ok(sql(None, &format!("SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = '{database}'"))?.trim()
        == "1")
}

/// Unique database names for one test, dropped at the end.
struct Databases {
    prefix: String,
}

const BRANCHES: &[&str] = &["main", "feature", "copy"];

impl Databases {
    fn new() -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        Databases { prefix: format!("envsnap_t_{}_{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed)) }
    }

    fn name(&self, branch: &str) -> String {
        assert!(BRANCHES.contains(&branch), "the guard drops only these");
        format!("{}_{branch}", self.prefix)
    }

    fn config(&self) -> String {
        format!(
            "production = \"main\"\n\n[[service]]\nname = \"db\"\ntype = \"mysql\"\nurl = \"mysql://root@127.0.0.1:3306/{}_{{branch}}\"\n",
            self.prefix
        )
    }
}

impl Drop for Databases {
    fn drop(&mut self) {
        for branch in BRANCHES {
            let _ = sql(None, &format!("DROP DATABASE IF EXISTS `{}_{branch}`", self.prefix));
        }
    }
}

const SCHEMA: &str = r#"
SET SESSION max_recursive_iterations = 100000;
CREATE TABLE people (
    id INT AUTO_INCREMENT PRIMARY KEY,
    name VARCHAR(100) NOT NULL,
    note TEXT,
    photo BLOB,
    balance DECIMAL(12, 2),
    born DATETIME(3),
    ratio DOUBLE,
    data JSON,
    KEY people_name (name)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
CREATE TABLE orders (
    id BIGINT AUTO_INCREMENT PRIMARY KEY,
    person INT,
    total DECIMAL(10, 2),
    doubled DECIMAL(12, 2) AS (total * 2) STORED,
    FOREIGN KEY (person) REFERENCES people (id)
) ENGINE=InnoDB;
CREATE TABLE `odd``name` (v TEXT) ENGINE=InnoDB;
CREATE VIEW rich AS SELECT name FROM people WHERE balance > 100;
CREATE TRIGGER people_touch BEFORE UPDATE ON people FOR EACH ROW SET NEW.note = CONCAT(IFNULL(NEW.note, ''), '!');
DELIMITER ;;
CREATE PROCEDURE bump(IN amount INT)
BEGIN
INSERT INTO `orders` VALUES (NULL,1,amount,DEFAULT);
INSERT INTO `orders` VALUES (NULL,2,amount,DEFAULT);
END ;;
DELIMITER ;
CREATE FUNCTION twice(x INT) RETURNS INT DETERMINISTIC RETURN x * 2;
CREATE EVENT nightly ON SCHEDULE EVERY 1 DAY STARTS '2030-01-01 00:00:00' DO UPDATE people SET note = note;
INSERT INTO people (name, note, photo, balance, born, ratio, data) VALUES
    ('O''Brien', 'line1\nline2\ttab \\ backslash; ),(', 0x00FF10, 12345.67, '2024-02-29 12:34:56.789', 0.1, '{"k": [1, 2, null]}'),
    ('Zoë 😀 名前', NULL, NULL, NULL, NULL, NULL, NULL);
INSERT INTO people (name, note, balance, ratio)
    WITH RECURSIVE s(g) AS (SELECT 1 UNION ALL SELECT g + 1 FROM s WHERE g < 20000)
    SELECT CONCAT('bulk ', g), REPEAT('x', g % 50), g, 1.0 / g FROM s;
INSERT INTO orders (person, total)
    WITH RECURSIVE s(g) AS (SELECT 1 UNION ALL SELECT g + 1 FROM s WHERE g < 5000)
    SELECT (g % 100) + 1, g * 1.5 FROM s;
INSERT INTO `odd``name` VALUES ('odd'), ('INSERT INTO `x` VALUES (1);'), (NULL);
"#;

fn create(database: &str) -> TestResult {
    sql(None, &format!("CREATE DATABASE `{database}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"))?;
    sql(Some(database), SCHEMA)?;
    Ok(())
}

/// A session using `database` that would run for a minute.
fn busy_session(database: &str) -> Result<std::process::Child, Error> {
    let child = Command::new("mariadb")
        .args(["-h", "127.0.0.1", "-u", "root", &format!("--database={database}"), "-e", "SELECT SLEEP(60)"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    for _ in 0..100 {
        let count = sql(None, &format!("SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE DB = '{database}'"))?;
        if count.trim() != "0" {
            return Ok(child);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Err("the session did not connect".into())
}

#[test]
fn a_database_round_trips_in_place_and_into_another_branch() -> TestResult {
    let databases = Databases::new();
    let (main, feature) = (databases.name("main"), databases.name("feature"));
    create(&main)?;
    let project = Project::new(&databases.config())?;
    project.ok(&["init"])?;
    let original = dump(&main)?;
    let id = project.backup(&[])?;
    assert_eq!(project.snapshots()?[0]["elements"][0]["kind"], "service");
    // One stream a table, which put back together are the dump.
    let out = project.root().join("out");
    project.ok(&["restore", &id[..12], "--to", out.to_str().ok_or("utf-8")?])?;
    let mut streams: Vec<String> = std::fs::read_dir(out.join("db"))?
        .map(|entry| Ok(entry?.file_name().to_string_lossy().into_owned()))
        .collect::<Result<_, Error>>()?;
    streams.sort();
    assert_eq!(
        streams,
        [
            "0-header.sql",
            "1-dump-000000.sql",
            "1-dump-000001-odd%60name.sql",
            "1-dump-000002-orders.sql",
            "1-dump-000003-people.sql"
        ]
    );

    sql(
        Some(&main),
        "UPDATE people SET balance = 0 WHERE id % 7 = 0; DELETE FROM orders WHERE id < 100; DROP VIEW rich;",
    )?;
    sql(Some(&main), "CREATE TABLE added (x INT); DROP EVENT nightly; INSERT INTO people (name) VALUES ('new');")?;
    let mut session = busy_session(&main)?;
    project.restore_ending_one_session(&id)?;
    assert_same(&original, &main)?;
    let collation = sql(
        None,
        &format!("SELECT DEFAULT_COLLATION_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = '{main}'"),
    )?;
    assert_eq!(collation.trim(), "utf8mb4_unicode_ci", "the database keeps its collation");
    assert!(!session.wait()?.success(), "the session using the target was ended");

    // Into another branch: its database is created; the original is left alone.
    sql(Some(&main), "DELETE FROM people WHERE id > 10000")?;
    let changed = dump(&main)?;
    assert!(!exists(&feature)?);
    project.ok(&["restore", &id[..12], "--target", "feature", "--branch-from", "main", "--yes"])?;
    assert_same(&original, &feature)?;
    assert_same(&changed, &main)?;
    Ok(())
}

/// Stores the streams of a capture in memory (the tests' dumps are small).
#[derive(Default)]
struct MemoryDump {
    streams: Mutex<BTreeMap<String, Vec<u8>>>,
}

impl DumpSink for MemoryDump {
    fn add(&self, name: &str, reader: &mut dyn Read) -> envsnap::Result<()> {
        let mut bytes = Vec::new();
        reader.read_to_end(&mut bytes).map_err(|error| envsnap::Error::io("reading", name, error))?;
        self.streams.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(name.to_owned(), bytes);
        Ok(())
    }
}

impl DumpSource for MemoryDump {
    fn names(&self) -> Vec<String> {
        self.streams.lock().unwrap_or_else(std::sync::PoisonError::into_inner).keys().cloned().collect()
    }

    fn open(&self, name: &str) -> envsnap::Result<Box<dyn Read + Send + '_>> {
        let streams = self.streams.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        Ok(Box::new(std::io::Cursor::new(streams.get(name).cloned().unwrap_or_default())))
    }
}

#[test]
fn a_dump_of_a_newer_server_or_of_mysql_is_refused_before_anything_changes() -> TestResult {
    let databases = Databases::new();
    let target = databases.name("main");
    let service = MysqlService::new("db", &format!("mysql://root@127.0.0.1:3306/{target}"))?;
    for (version, expected) in [
        ("11.8.2-MariaDB", "a dump of MariaDB 11.8 (11.8.2-MariaDB), and this server runs MariaDB 10.11"),
        ("8.0.36", "envsnap does not load a MySQL dump into MariaDB"),
    ] {
        let dump = MemoryDump::default();
        let header = format!(
            "-- {{\"format\":1,\"server_version\":\"{version}\",\"database\":\"x\",\"charset\":\"utf8mb4\",\"collation\":\"utf8mb4_general_ci\"}}\n"
        );
        dump.add("0-header.sql", &mut header.as_bytes())?;
        dump.add("1-dump.sql", &mut &b"CREATE TABLE t (x int);\n"[..])?;
        for result in [service.check_restore(&dump), service.restore(&dump)] {
            let message = result.err().map(|error| error.to_string()).unwrap_or_default();
            assert!(message.contains(expected) && message.contains("nothing was changed"), "{message}");
        }
        assert!(!exists(&target)?, "no database was created");
    }
    Ok(())
}

#[test]
fn a_server_that_does_not_answer_or_a_missing_database_fails_the_snapshot() -> TestResult {
    let databases = Databases::new();
    let main = databases.name("main");
    let project = Project::new(&databases.config().replace("127.0.0.1:3306", "127.0.0.1:1"))?;
    project.ok(&["init"])?;
    let stderr = project.failed_backup(None)?;
    assert!(stderr.contains("service `db`") && stderr.contains(&format!("127.0.0.1:1/{main}")), "{stderr}");
    assert!(stderr.contains("Can't connect") && stderr.contains("is the server running?"), "{stderr}");

    std::fs::write(project.root().join("envsnap.toml"), databases.config())?;
    let stderr = project.failed_backup(None)?;
    assert!(stderr.contains(&format!("database `{main}` does not exist; create it")), "{stderr}");
    Ok(())
}

#[test]
fn missing_tools_are_named() -> TestResult {
    let databases = Databases::new();
    create(&databases.name("main"))?;
    let project = Project::new(&databases.config())?;
    project.ok(&["init"])?;
    let only_client = bin_dir(&["mariadb"], &[])?;
    let stderr = project.failed_backup(Some(only_client.path()))?;
    assert!(stderr.contains("neither `mariadb-dump` nor `mysqldump` is installed or in PATH"), "{stderr}");
    let nothing = bin_dir(&[], &[])?;
    let stderr = project.failed_backup(Some(nothing.path()))?;
    assert!(stderr.contains("neither `mariadb` nor `mysql` is installed or in PATH"), "{stderr}");
    Ok(())
}

#[test]
fn a_dump_that_fails_or_is_killed_mid_stream_fails_the_snapshot() -> TestResult {
    let databases = Databases::new();
    create(&databases.name("main"))?;
    let project = Project::new(&databases.config())?;
    project.ok(&["init"])?;
    let real = "/usr/bin/mariadb-dump \"$@\"";
    for (script, expected) in [
        (
            format!("{real} | head -c 30000; echo 'mariadb-dump: Got error: 2013: disk on fire' >&2; exit 2"),
            "disk on fire",
        ),
        (format!("{real} | head -c 30000; kill -KILL $$"), "SIGKILL"),
    ] {
        let bin = bin_dir(&["mariadb", "head"], &[("mariadb-dump", &script)])?;
        let stderr = project.failed_backup(Some(bin.path()))?;
        assert!(
            stderr.contains("service `db`") && stderr.contains("mariadb-dump failed") && stderr.contains(expected),
            "{stderr}"
        );
    }
    Ok(())
}

/// A user made by a test, dropped at the end.
struct DropUser(String);

impl Drop for DropUser {
    fn drop(&mut self) {
        let _ = sql(None, &format!("DROP USER IF EXISTS '{}'@'127.0.0.1'", self.0));
    }
}

#[test]
fn a_wrong_password_is_reported_without_showing_it() -> TestResult {
    let databases = Databases::new();
    let main = databases.name("main");
    create(&main)?;
    let user = databases.prefix.clone();
    sql(None, &format!("CREATE USER '{user}'@'127.0.0.1' IDENTIFIED BY 'right-secret'"))?;
    let _cleanup = DropUser(user.clone());
    // Dumping routines takes reading their definitions (MariaDB 10.11 keeps them in mysql.proc).
    sql(
        None,
        &format!("GRANT ALL ON `{main}`.* TO '{user}'@'127.0.0.1'; GRANT SELECT ON mysql.proc TO '{user}'@'127.0.0.1'"),
    )?;
    let config = |password: &str| databases.config().replace("root@", &format!("{user}:{password}@"));
    let project = Project::new(&config("Wr0ngPassw0rd"))?;
    project.ok(&["init"])?;
    let stderr = project.failed_backup(None)?;
    assert!(stderr.contains("Access denied") && stderr.contains("check the user and password"), "{stderr}");
    assert!(!stderr.contains("Wr0ngPassw0rd"), "the password is never shown: {stderr}");

    // The right password, given through the environment as the docs advise, works.
    std::fs::write(project.root().join("envsnap.toml"), config("${ENVSNAP_TEST_MYSQL_PASSWORD}"))?;
    let output = project.run_with_env(&["backup"], &[("ENVSNAP_TEST_MYSQL_PASSWORD", "right-secret".as_ref())])?;
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(!project.ok(&["list", "--all", "--json"])?.contains("right-secret"));
    Ok(())
}

#[test]
fn a_dump_that_holds_client_commands_is_refused_before_anything_changes() -> TestResult {
    let databases = Databases::new();
    let (target, other) = (databases.name("main"), databases.name("copy"));
    create(&target)?;
    let before = dump(&target)?;
    sql(None, &format!("CREATE DATABASE `{other}`"))?;
    sql(Some(&other), "CREATE TABLE kept (x int); INSERT INTO kept VALUES (1)")?;
    let service = MysqlService::new("db", &format!("mysql://root@127.0.0.1:3306/{target}"))?;
    let version = std::process::Command::new("mariadb")
        .args(["-uroot", "-h127.0.0.1", "-N", "-B", "-e", "SELECT VERSION()"])
        .output()?;
    let version = String::from_utf8(version.stdout)?.trim().to_owned();
    let planted = std::env::temp_dir().join(format!("envsnap-sandbox-{target}"));
    let header = format!(
        "-- {{\"format\":1,\"server_version\":\"{version}\",\"database\":\"x\",\"charset\":\"utf8mb4\",\"collation\":\"utf8mb4_general_ci\"}}\n"
    );
    let opening = "/*M!999999\\- enable the sandbox mode */ \n-- MariaDB dump\n/*!40101 SET NAMES utf8mb4 */;\n";
    for (hostile, command) in [
        (format!("\\! touch {}\nCREATE TABLE t (x int);\n", planted.display()), "`\\!`"),
        (format!("CREATE TABLE t (x int);\n  system touch {}\n", planted.display()), "`system`"),
        // Sandbox mode lets this one through: the rest of the dump would run in another database.
        (format!("CREATE TABLE t (x int);\nuse {other}\nDROP TABLE kept;\n"), "`use`"),
    ] {
        let dump_streams = MemoryDump::default();
        dump_streams.add("0-header.sql", &mut header.as_bytes())?;
        dump_streams.add("1-dump-000000.sql", &mut opening.as_bytes())?;
        dump_streams.add("1-dump-000001-t.sql", &mut hostile.as_bytes())?;
        let result = service.restore(&dump_streams);
        assert!(!planted.exists(), "the dump ran a shell command: {} exists", planted.display());
        let message = result.err().map(|error| error.to_string()).unwrap_or_default();
        for said in ["service `db`", "`1-dump-000001-t.sql`", command, "nothing was changed"] {
            assert!(message.contains(said), "says {said}: {message:?}");
        }
        assert_eq!(dump(&target)?, before, "the target was left as it was");
        assert_eq!(sql(Some(&other), "SELECT COUNT(*) FROM kept")?.trim(), "1", "the other database too");
    }
    Ok(())
}

/// A session that holds a metadata lock on a table of `database` for two minutes (an
/// open transaction that read it), from no database of its own, so that a restore
/// does not end it; killed when dropped.
struct MetadataLock {
    child: std::process::Child,
    /// Its own sleep, which names the database, so that no test ends another's lock.
    sleep: String,
}

impl MetadataLock {
    fn take(database: &str) -> Result<Self, Error> {
        Self::hold(database, &format!("BEGIN; SELECT COUNT(*) FROM `{database}`.`people`;"))
    }

    /// Runs `first`, then sleeps for two minutes in the same session.
    fn hold(database: &str, first: &str) -> Result<Self, Error> {
        let sleep = format!("SELECT SLEEP(120), '{database}'");
        let child = Command::new("mariadb")
            .args(["-h", "127.0.0.1", "-u", "root", "-e", &format!("{first} {sleep};")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        let lock = MetadataLock { child, sleep };
        for _ in 0..250 {
            let sleeping = sql(
                None,
                &format!("SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE INFO = \"{}\"", lock.sleep),
            )?;
            if sleeping.trim() != "0" {
                return Ok(lock);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Err("the lock was never taken".into())
    }
}

impl Drop for MetadataLock {
    fn drop(&mut self) {
        let _ = sql(None, "SELECT 1"); // the server is still there
        let ids = sql(None, &format!("SELECT ID FROM information_schema.PROCESSLIST WHERE INFO = \"{}\"", self.sleep));
        for id in ids.unwrap_or_default().lines() {
            let _ = sql(None, &format!("KILL {id}"));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The server's sessions that run a statement on `database`, other than SLEEP.
fn statements_on(database: &str) -> Result<String, Error> {
    sql(
        None,
        &format!(
            "SELECT ID, INFO FROM information_schema.PROCESSLIST WHERE INFO LIKE '%{database}%' AND ID <> CONNECTION_ID() AND INFO NOT LIKE '%PROCESSLIST%'"
        ),
    )
}

#[test]
fn a_snapshot_behind_a_table_lock_gives_up_in_time_and_names_the_lock() -> TestResult {
    let databases = Databases::new();
    let main = databases.name("main");
    create(&main)?;
    let project = Project::new(&databases.config())?;
    project.ok(&["init"])?;
    // LOCK TABLES … WRITE: the dump's read of `people` waits for it.
    let lock = MetadataLock::hold(&main, &format!("LOCK TABLES `{main}`.`people` WRITE;"))?;

    let started = std::time::Instant::now();
    let mut backup = project.start(&["backup"], &[("ENVSNAP_LOCK_TIMEOUT", "2".as_ref())])?;
    let output = common::wait_at_most(&mut backup, 40)?;
    let stderr = String::from_utf8(output.stderr)?;
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(started.elapsed() < Duration::from_secs(15), "it gave up after {:?}", started.elapsed());
    let said =
        ["service `db`", "waited 2 s for a lock", "metadata lock", "`people`", "may hold", "ENVSNAP_LOCK_TIMEOUT"];
    for said in said {
        assert!(stderr.contains(said), "says `{said}`: {stderr}");
    }
    let waiting = statements_on(&main)?;
    assert!(!waiting.contains("SQL_NO_CACHE"), "the dump's statement still waits on the server: {waiting}");
    assert!(project.snapshots()?.is_empty(), "no snapshot was recorded");
    drop(lock);
    Ok(())
}

#[test]
fn a_restore_behind_a_metadata_lock_gives_up_in_time_or_when_told_to_stop() -> TestResult {
    let databases = Databases::new();
    let main = databases.name("main");
    create(&main)?;
    let project = Project::new(&databases.config())?;
    project.ok(&["init"])?;
    let id = project.backup(&[])?;
    let lock = MetadataLock::take(&main)?;

    let started = std::time::Instant::now();
    let mut restore = project
        .start(&["restore", &id[..12], "--yes", "--no-safety-snapshot"], &[("ENVSNAP_LOCK_TIMEOUT", "2".as_ref())])?;
    let output = common::wait_at_most(&mut restore, 40)?;
    let stderr = String::from_utf8(output.stderr)?;
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(started.elapsed() < Duration::from_secs(20), "it gave up after {:?}", started.elapsed());
    for said in ["service `db`", "Lock wait timeout exceeded", "metadata lock", "ENVSNAP_LOCK_TIMEOUT"] {
        assert!(stderr.contains(said), "says `{said}`: {stderr}");
    }

    // Told to stop while it waits: the client goes, and so does its statement on the server.
    for signal in ["-TERM", "-INT"] {
        let mut restore = project.start(&["restore", &id[..12], "--yes", "--no-safety-snapshot"], &[])?;
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while !statements_on(&main)?.contains("DROP DATABASE") {
            assert!(std::time::Instant::now() < deadline, "the restore never waited for the lock");
            std::thread::sleep(Duration::from_millis(50));
        }
        let tools = common::descendants(restore.id());
        assert!(!tools.is_empty(), "the restore runs the client");
        common::signal(restore.id(), signal)?;
        let output = common::wait_at_most(&mut restore, 15)?;
        assert!(!output.status.success(), "{signal}: {:?}", output.status);
        std::thread::sleep(Duration::from_millis(300));
        let left: Vec<u32> = tools.iter().copied().filter(|&pid| common::running(pid)).collect();
        assert!(left.is_empty(), "{signal}: tools left running: {left:?}");
        let statements = statements_on(&main)?;
        assert!(!statements.contains("DROP DATABASE"), "{signal}: the DROP still waits on the server: {statements}");
    }
    drop(lock);
    Ok(())
}

#[test]
fn float_and_double_values_round_trip_exactly() -> TestResult {
    let databases = Databases::new();
    let (main, copy) = (databases.name("main"), databases.name("copy"));
    sql(None, &format!("CREATE DATABASE `{main}`"))?;
    // A secondary index on the FLOAT column, so that a read of it alone could come out in
    // another order than the dump's; a generated and an invisible FLOAT column beside it.
    sql(
        Some(&main),
        "SET SESSION max_recursive_iterations = 100000;
         CREATE TABLE measures (
             id INT PRIMARY KEY, x FLOAT, d DOUBLE, fixed FLOAT(10, 4), note VARCHAR(20),
             doubled FLOAT AS (x * 2) VIRTUAL, hidden FLOAT INVISIBLE, KEY measures_x (x)
         ) ENGINE=InnoDB;
         INSERT INTO measures (id, x, d, fixed, note, hidden)
             WITH RECURSIVE s(g) AS (SELECT 1 UNION ALL SELECT g + 1 FROM s WHERE g < 5000)
             SELECT g, (RAND(g) - 0.5) * POW(10, g % 40 - 20), (RAND(g + 7) - 0.5) * POW(10, g % 600 - 300),
                 RAND(g + 9) * 1000, CONCAT('r', g, ',(0.5)'), RAND(g + 11) FROM s;
         INSERT INTO measures (id, x, d, hidden) VALUES
             (5001, 3.4028234e38, 1.7976931348623157e308, 1.17549435e-38),
             (5002, -1.4e-45, 4.9e-324, -0.0), (5003, NULL, NULL, NULL);",
    )?;
    let project = Project::new(&databases.config())?;
    project.ok(&["init"])?;
    let id = project.backup(&[])?;
    project.ok(&["restore", &id[..12], "--target", "copy", "--branch-from", "main", "--yes"])?;
    let rows = sql(None, &format!("SELECT COUNT(*) FROM `{copy}`.measures"))?;
    assert_eq!(rows.trim(), "5003");
    let differ = sql(
        None,
        &format!(
            "SELECT COUNT(*) FROM `{main}`.measures a JOIN `{copy}`.measures b USING (id) \
             WHERE NOT (a.x <=> b.x) OR NOT (a.d <=> b.d) OR NOT (a.fixed <=> b.fixed) OR NOT (a.hidden <=> b.hidden) \
             OR NOT (a.doubled <=> b.doubled) OR NOT (a.note <=> b.note)"
        ),
    )?;
    assert_eq!(differ.trim(), "0", "rows whose values differ after a round trip");
    Ok(())
}

#[test]
fn system_versioned_tables_keep_their_history() -> TestResult {
    let databases = Databases::new();
    let (main, copy) = (databases.name("main"), databases.name("copy"));
    sql(None, &format!("CREATE DATABASE `{main}`"))?;
    sql(
        Some(&main),
        "CREATE TABLE prices (id INT PRIMARY KEY, amount INT) WITH SYSTEM VERSIONING;
         INSERT INTO prices VALUES (1, 10), (2, 20), (3, 30);
         UPDATE prices SET amount = 11 WHERE id = 1; UPDATE prices SET amount = 12 WHERE id = 1;
         DELETE FROM prices WHERE id = 2;",
    )?;
    let history = |database: &str| {
        sql(
            Some(database),
            "SELECT GROUP_CONCAT(CONCAT(id, ':', amount, ':', row_start, ':', row_end) ORDER BY id, row_start) \
             FROM prices FOR SYSTEM_TIME ALL",
        )
    };
    let before = history(&main)?;
    assert_eq!(before.split(',').count(), 5, "{before}");
    let project = Project::new(&databases.config())?;
    project.ok(&["init"])?;
    let id = project.backup(&[])?;
    project.ok(&["restore", &id[..12], "--target", "copy", "--branch-from", "main", "--yes"])?;
    assert_eq!(history(&copy)?, before, "the rows as they were, with their times");
    let current = sql(Some(&copy), "SELECT GROUP_CONCAT(CONCAT(id, ':', amount) ORDER BY id) FROM prices")?;
    assert_eq!(current.trim(), "1:12,3:30");
    Ok(())
}

#[test]
fn an_exported_dump_has_extended_inserts_and_loads_as_it_was() -> TestResult {
    let databases = Databases::new();
    let (main, copy) = (databases.name("main"), databases.name("copy"));
    create(&main)?;
    let original = dump(&main)?;
    let project = Project::new(&databases.config())?;
    project.ok(&["init"])?;
    let id = project.backup(&[])?;
    let path = project.root().join("db.sql");
    project.ok(&["export", &id[..12], "--element", "db", "--to", path.to_str().ok_or("utf-8")?])?;
    let exported = std::fs::read_to_string(&path)?;
    let inserts = exported.lines().filter(|line| line.starts_with("INSERT INTO `people`")).count();
    // 20,002 rows of `people`: one statement for many of them, as mariadb-dump writes by default.
    assert!((1..20).contains(&inserts), "{inserts} INSERTs of `people`");
    sql(None, &format!("CREATE DATABASE `{copy}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"))?;
    sql(Some(&copy), &exported)?;
    assert_same(&original, &copy)?;
    Ok(())
}
