//! The postgresql adapter against the PostgreSQL server of this machine (127.0.0.1:5432,
//! user `postgres`, trust authentication). Every test makes its own databases, named
//! `envsnap_t_<pid>_<n>_<branch>`, and drops them when it ends, even when it fails.
//! Databases are compared by content: the schema as `pg_dump --schema-only` prints it,
//! and every line of `pg_dump --data-only` (rows, sequence values, large objects),
//! sorted, since a parallel restore may lay rows out in another physical order.

mod common;

use std::collections::BTreeMap;
use std::io::Read;
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::{Project, TestResult, bin_dir};
use envsnap::element::service::postgresql::{DumpLayout, PostgresService};
use envsnap::element::service::{DumpSink, DumpSource, Service};

type Error = Box<dyn std::error::Error>;

/// Runs SQL as `postgres` on `database`; returns the rows, bare.
fn psql(database: &str, sql: &str) -> Result<String, Error> {
    let output = Command::new("psql")
        .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-U", "postgres", "-d", database])
        .args(["-c", sql])
        .output()?;
    if !output.status.success() {
        return Err(format!("psql {sql}: {}", String::from_utf8_lossy(&output.stderr)).into());
    }
    Ok(String::from_utf8(output.stdout)?)
}

fn pg_dump(database: &str, section: &str) -> Result<String, Error> {
    let output = Command::new("pg_dump").args(["-h", "127.0.0.1", "-U", "postgres", section, database]).output()?;
    if !output.status.success() {
        return Err(format!("pg_dump {database}: {}", String::from_utf8_lossy(&output.stderr)).into());
    }
    // The \restrict keys are random in every dump.
    let text = String::from_utf8(output.stdout)?;
    Ok(text
        .lines()
        .filter(|line| !line.starts_with("\\restrict ") && !line.starts_with("\\unrestrict "))
        .collect::<Vec<_>>()
        .join("\n"))
}

/// The content of a database: its schema, and every line of its data dump, sorted.
fn fingerprint(database: &str) -> Result<(String, Vec<String>), Error> {
    let mut data: Vec<String> = pg_dump(database, "--data-only")?.lines().map(str::to_owned).collect();
    data.sort();
    Ok((pg_dump(database, "--schema-only")?, data))
}

fn assert_same(expected: &(String, Vec<String>), database: &str) -> TestResult {
    let actual = fingerprint(database)?;
    if actual.0 != expected.0 {
        return Err(
            format!("the schema of {database} differs:\n{}\n----- expected -----\n{}", actual.0, expected.0).into()
        );
    }
    if let Some((want, got)) = expected.1.iter().zip(&actual.1).find(|(want, got)| want != got) {
        return Err(format!("the data of {database} differs: expected `{want}`, found `{got}`").into());
    }
    assert_eq!(expected.1.len(), actual.1.len(), "lines of data in {database}");
    Ok(())
}

fn exists(database: &str) -> Result<bool, Error> {
    Ok(psql("postgres", &format!("SELECT count(*) FROM pg_database WHERE datname = '{database}'"))?.trim() == "1")
}

/// Unique database names for one test, dropped at the end.
struct Databases {
    prefix: String,
}

impl Databases {
    fn new() -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        Databases { prefix: format!("envsnap_t_{}_{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed)) }
    }

    fn name(&self, branch: &str) -> String {
        format!("{}_{branch}", self.prefix)
    }

    fn config(&self) -> String {
        format!(
            "production = \"main\"\n\n[[service]]\nname = \"db\"\ntype = \"postgresql\"\nurl = \"postgresql://postgres@127.0.0.1:5432/{}_{{branch}}\"\n",
            self.prefix
        )
    }
}

impl Drop for Databases {
    fn drop(&mut self) {
        let pattern = format!("{}\\_%", self.prefix);
        if let Ok(names) = psql("postgres", &format!("SELECT datname FROM pg_database WHERE datname LIKE '{pattern}'"))
        {
            for name in names.lines() {
                let _ = psql("postgres", &format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"));
            }
        }
    }
}

const SCHEMA: &str = r#"
CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
CREATE TABLE people (
    id serial PRIMARY KEY,
    name text NOT NULL,
    note text,
    photo bytea,
    balance numeric(12, 2),
    born timestamptz,
    mood mood,
    tags text[],
    data jsonb,
    ratio double precision
);
CREATE INDEX people_name ON people (name);
CREATE TABLE orders (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    person int REFERENCES people (id),
    total numeric,
    doubled numeric GENERATED ALWAYS AS (total * 2) STORED,
    at timestamp DEFAULT '2024-01-01'
);
CREATE SEQUENCE free_counter START 100;
SELECT nextval('free_counter');
CREATE VIEW rich AS SELECT name FROM people WHERE balance > 100;
CREATE FUNCTION touch() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN NEW.note := coalesce(NEW.note, '') || '!'; RETURN NEW; END $$;
CREATE TRIGGER people_touch BEFORE UPDATE ON people FOR EACH ROW EXECUTE FUNCTION touch();
CREATE SCHEMA "Odd.Schema";
CREATE TABLE "Odd.Schema"."Table ""quoted""/x" (v text);
INSERT INTO people (name, note, photo, balance, born, mood, tags, data, ratio) VALUES
    ('O''Brien', E'line1\nline2\ttab \\ backslash', '\x00ff10', 12345.67, '2024-02-29 12:34:56.789+02',
     'happy', ARRAY['a', 'b c', NULL], '{"k": [1, 2, null], "s": "é"}', 0.1),
    ('Zoë 😀 名前', NULL, NULL, NULL, NULL, NULL, NULL, NULL, 'NaN');
INSERT INTO people (name, note, balance, ratio)
    SELECT 'bulk ' || g, repeat('x', g % 50), g, 1.0 / g FROM generate_series(1, 20000) g;
INSERT INTO orders (person, total) SELECT (g % 100) + 1, g * 1.5 FROM generate_series(1, 5000) g;
INSERT INTO "Odd.Schema"."Table ""quoted""/x" VALUES ('odd'), (E'\r' || 'estrict fake'), (NULL);
SELECT lo_from_bytea(0, 'a large object');
"#;

fn create(database: &str) -> TestResult {
    psql("postgres", &format!("CREATE DATABASE \"{database}\""))?;
    psql(database, SCHEMA)?;
    Ok(())
}

/// A session connected to `database` that would run for a minute.
fn busy_session(database: &str) -> Result<std::process::Child, Error> {
    let child = Command::new("psql")
        .args(["-X", "-h", "127.0.0.1", "-U", "postgres", "-d", database, "-c", "SELECT pg_sleep(60)"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    for _ in 0..100 {
        let count = psql("postgres", &format!("SELECT count(*) FROM pg_stat_activity WHERE datname = '{database}'"))?;
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
    let original = fingerprint(&main)?;
    let id = project.backup(&[])?;
    let snapshot = &project.snapshots()?[0];
    assert_eq!(snapshot["elements"][0]["kind"], "service");

    psql(&main, "UPDATE people SET balance = 0 WHERE id % 7 = 0; DELETE FROM orders WHERE id < 100; DROP VIEW rich;")?;
    psql(
        &main,
        "CREATE TABLE added (x int); SELECT setval('free_counter', 5000); INSERT INTO people (name) VALUES ('new')",
    )?;
    let mut session = busy_session(&main)?;
    project.restore_ending_one_session(&id)?;
    assert_same(&original, &main)?;
    assert!(session.wait()?.code().is_some_and(|code| code != 0), "the session connected to the target was ended");

    // Into another branch: its database is created; the original is left alone.
    psql(&main, "DELETE FROM people WHERE id > 10000")?;
    let changed = fingerprint(&main)?;
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
fn tables_cut_into_streams_and_block_ranges_round_trip() -> TestResult {
    let databases = Databases::new();
    let (source, target) = (databases.name("main"), databases.name("copy"));
    create(&source)?;
    let original = fingerprint(&source)?;
    // Every table in a stream of its own; tables of 32 KiB and more in 16 KiB block ranges.
    let layout = DumpLayout { workers: 3, own_stream_from: 0, piece_size: 16 << 10 };
    let url = |database: &str| format!("postgresql://postgres@127.0.0.1:5432/{database}");
    let dump = MemoryDump::default();
    PostgresService::new("db", &url(&source))?.with_layout(layout).capture(&dump)?;
    let names = dump.names();
    assert!(names.contains(&"2-data-public.people.0000.sql".to_owned()), "{names:?}");
    assert!(names.contains(&"2-data-public.orders.0001.sql".to_owned()), "{names:?}");
    assert!(names.contains(&"2-data-Odd%2ESchema.Table%20%22quoted%22%2Fx.sql".to_owned()), "{names:?}");
    for name in &names {
        let mut text = String::new();
        dump.open(name)?.read_to_string(&mut text)?;
        // The one `\restrict` line left is a row of "Odd.Schema" that merely looks like one.
        let key_lines = text.lines().filter(|line| line.starts_with("\\restrict ") && line.len() > 40).count();
        assert_eq!(key_lines, 0, "{name} keeps pg_dump's random \\restrict key");
    }

    let service = PostgresService::new("db", &url(&target))?.with_layout(layout);
    assert!(!service.exists()?);
    service.restore(&dump)?;
    assert!(service.exists()?);
    assert_same(&original, &target)?;
    Ok(())
}

#[test]
fn a_dump_of_a_newer_server_is_refused_before_anything_changes() -> TestResult {
    let databases = Databases::new();
    let target = databases.name("main");
    let dump = MemoryDump::default();
    let header = "-- {\"format\":1,\"server_version_num\":990001,\"server_version\":\"99.1\",\"database\":\"x\",\
                  \"encoding\":\"UTF8\",\"collate\":\"C\",\"ctype\":\"C\"}\n";
    dump.add("0-header.sql", &mut header.as_bytes())?;
    dump.add("1-pre-data.sql", &mut &b"CREATE TABLE t (x int);\n"[..])?;
    let service = PostgresService::new("db", &format!("postgresql://postgres@127.0.0.1:5432/{target}"))?;
    for result in [service.check_restore(&dump), service.restore(&dump)] {
        let message = result.err().map(|error| error.to_string()).unwrap_or_default();
        assert!(
            message.contains("PostgreSQL 99")
                && message.contains("newer than this server's 15")
                && message.contains("nothing was changed"),
            "{message}"
        );
    }
    assert!(!exists(&target)?, "no database was created");
    Ok(())
}

#[test]
fn a_server_that_does_not_answer_or_a_missing_database_fails_the_snapshot() -> TestResult {
    let databases = Databases::new();
    let config = databases.config().replace("127.0.0.1:5432", "127.0.0.1:1");
    let project = Project::new(&config)?;
    project.ok(&["init"])?;
    let stderr = project.failed_backup(None)?;
    let main = databases.name("main");
    assert!(stderr.contains("service `db`") && stderr.contains(&format!("127.0.0.1:1/{main}")), "{stderr}");
    assert!(stderr.contains("Connection refused") && stderr.contains("is the server running?"), "{stderr}");

    std::fs::write(project.root().join("envsnap.toml"), databases.config())?;
    let stderr = project.failed_backup(None)?;
    assert!(stderr.contains(&format!("database \"{main}\" does not exist")), "{stderr}");
    assert!(stderr.contains("create the database"), "{stderr}");
    Ok(())
}

#[test]
fn missing_tools_are_named() -> TestResult {
    let databases = Databases::new();
    create(&databases.name("main"))?;
    let project = Project::new(&databases.config())?;
    project.ok(&["init"])?;
    let only_psql = bin_dir(&["psql"], &[])?;
    let stderr = project.failed_backup(Some(only_psql.path()))?;
    assert!(stderr.contains("`pg_dump` is not installed or not in PATH"), "{stderr}");
    let nothing = bin_dir(&[], &[])?;
    let stderr = project.failed_backup(Some(nothing.path()))?;
    assert!(stderr.contains("`psql` is not installed or not in PATH"), "{stderr}");
    Ok(())
}

#[test]
fn a_dump_that_fails_or_is_killed_mid_stream_fails_the_snapshot() -> TestResult {
    let databases = Databases::new();
    let main = databases.name("main");
    create(&main)?;
    psql(&main, "INSERT INTO people (name, note) SELECT 'more', repeat('y', 1000) FROM generate_series(1, 20000)")?;
    let project = Project::new(&databases.config())?;
    project.ok(&["init"])?;
    let real = "/usr/bin/pg_dump \"$@\"";
    for (script, expected) in [
        (
            format!(
                "case \"$*\" in *section=data*) {real} | head -c 30000; echo 'pg_dump: error: disk on fire' >&2; exit 1;; esac\nexec {real}"
            ),
            "disk on fire",
        ),
        (
            format!("case \"$*\" in *section=data*) {real} | head -c 30000; kill -KILL $$;; esac\nexec {real}"),
            "SIGKILL",
        ),
    ] {
        let bin = bin_dir(&["psql", "head"], &[("pg_dump", &script)])?;
        let stderr = project.failed_backup(Some(bin.path()))?;
        assert!(
            stderr.contains("service `db`") && stderr.contains("pg_dump failed") && stderr.contains(expected),
            "{stderr}"
        );
    }

    // A table the dump's user may not read: pg_dump's own error.
    let reader = format!("{main}_reader");
    psql("postgres", &format!("CREATE ROLE \"{reader}\" LOGIN"))?;
    let cleanup = DropRole { role: reader.clone(), database: main.clone() };
    psql(
        &main,
        &format!(
            "GRANT SELECT ON ALL TABLES IN SCHEMA public, \"Odd.Schema\" TO \"{reader}\"; GRANT USAGE ON SCHEMA \"Odd.Schema\" TO \"{reader}\"; CREATE TABLE secret (x int); INSERT INTO secret VALUES (1)"
        ),
    )?;
    std::fs::write(
        project.root().join("envsnap.toml"),
        databases.config().replace("postgres@", &format!("{reader}@")),
    )?;
    let stderr = project.failed_backup(None)?;
    assert!(stderr.contains("pg_dump failed") && stderr.contains("ERROR:  permission denied for"), "{stderr}");
    drop(cleanup);
    Ok(())
}

/// A role made by a test, removed with its grants at the end.
struct DropRole {
    role: String,
    database: String,
}

impl Drop for DropRole {
    fn drop(&mut self) {
        // The grants are in the test's database; DROP OWNED removes them there. What
        // the role owns goes to postgres first, so that objects others depend on (a
        // table a view reads) do not keep the role alive.
        let _ = psql(&self.database, &format!("REASSIGN OWNED BY \"{}\" TO postgres", self.role));
        let _ = psql(&self.database, &format!("DROP OWNED BY \"{}\"", self.role));
        let _ = psql("postgres", &format!("DROP ROLE IF EXISTS \"{}\"", self.role));
    }
}

/// A PostgreSQL cluster of its own, with password authentication (the machine's
/// server trusts every local connection, so a wrong password would pass there).
struct PasswordCluster {
    dir: tempfile::TempDir,
    port: u16,
    bin: std::path::PathBuf,
}

impl PasswordCluster {
    fn start(password: &str) -> Result<Self, Error> {
        let bin = std::fs::read_dir("/usr/lib/postgresql")?
            .filter_map(Result::ok)
            .map(|entry| entry.path().join("bin"))
            .filter(|bin| bin.join("initdb").is_file())
            .max()
            .ok_or("no initdb under /usr/lib/postgresql")?;
        let dir = tempfile::Builder::new().prefix("envsnap-pg-").tempdir()?;
        std::fs::write(dir.path().join("password"), password)?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let cluster = PasswordCluster { dir, port, bin };
        as_postgres(&["chown", "-R", "postgres", &cluster.path("")], false)?;
        as_postgres(
            &[
                &cluster.program("initdb"),
                "-D",
                &cluster.path("data"),
                "-U",
                "postgres",
                "--auth=scram-sha-256",
                "-N",
                &format!("--pwfile={}", cluster.path("password")),
            ],
            true,
        )?;
        let options = format!("-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off", cluster.port, cluster.path(""));
        as_postgres(
            &[
                &cluster.program("pg_ctl"),
                "-D",
                &cluster.path("data"),
                "-o",
                &options,
                "-l",
                &cluster.path("log"),
                "-w",
                "start",
            ],
            true,
        )?;
        Ok(cluster)
    }

    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).to_string_lossy().into_owned()
    }

    fn program(&self, name: &str) -> String {
        self.bin.join(name).to_string_lossy().into_owned()
    }
}

impl Drop for PasswordCluster {
    fn drop(&mut self) {
        let _ =
            as_postgres(&[&self.program("pg_ctl"), "-D", &self.path("data"), "-m", "immediate", "-w", "stop"], true);
    }
}

/// Runs a command, as the `postgres` user when `switch` (initdb refuses to run as root).
fn as_postgres(command: &[&str], switch: bool) -> Result<(), Error> {
    let mut runner = if switch {
        let mut runner = Command::new("runuser");
        runner.args(["-u", "postgres", "--"]).args(command);
        runner
    } else {
        let mut runner = Command::new(command[0]);
        runner.args(&command[1..]);
        runner
    };
    let output = runner.output()?;
    if !output.status.success() {
        return Err(format!("{command:?}: {}", String::from_utf8_lossy(&output.stderr)).into());
    }
    Ok(())
}

#[test]
fn a_wrong_password_is_reported_without_showing_it() -> TestResult {
    let cluster = PasswordCluster::start("right-secret")?;
    let url = |password: &str| format!("postgresql://postgres:{password}@127.0.0.1:{}/postgres", cluster.port);
    let config = |password: &str| {
        format!(
            "production = \"main\"\n\n[[service]]\nname = \"db\"\ntype = \"postgresql\"\nurl = \"{}\"\n",
            url(password)
        )
    };
    let project = Project::new(&config("Wr0ngPassw0rd"))?;
    project.ok(&["init"])?;
    let stderr = project.failed_backup(None)?;
    assert!(
        stderr.contains("password authentication failed") && stderr.contains("check the user and password"),
        "{stderr}"
    );
    assert!(!stderr.contains("Wr0ngPassw0rd"), "the password is never shown: {stderr}");

    // The right password, given through the environment as the docs advise, works.
    std::fs::write(project.root().join("envsnap.toml"), config("${ENVSNAP_TEST_PG_PASSWORD}"))?;
    let output = project.run_with_env(&["backup"], &[("ENVSNAP_TEST_PG_PASSWORD", "right-secret".as_ref())])?;
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let listing = project.ok(&["list", "--all", "--json"])?;
    assert!(!listing.contains("right-secret"), "{listing}");
    Ok(())
}

/// Rows handed out slowly: a restore's loader stays in `COPY … FROM stdin` for as
/// long as a test needs to find it there.
struct SlowRows {
    head: std::io::Cursor<Vec<u8>>,
    next: u64,
    rows: u64,
}

impl Read for SlowRows {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        let count = self.head.read(out)?;
        if count > 0 {
            return Ok(count);
        }
        if self.next == self.rows {
            return (&b"\\.\n"[..]).read(out);
        }
        std::thread::sleep(Duration::from_millis(5));
        let mut text = String::new();
        for _ in 0..100.min(self.rows - self.next) {
            text.push_str(&format!("{}\n", self.next));
            self.next += 1;
        }
        let count = text.len().min(out.len());
        out[..count].copy_from_slice(&text.as_bytes()[..count]);
        // A test's buffers are larger than a hundred short rows.
        Ok(count)
    }
}

/// A dump of two tables whose data streams take a minute to read.
struct SlowDump {
    header: String,
}

impl SlowDump {
    fn new() -> Result<Self, Error> {
        let info = psql(
            "postgres",
            "SELECT current_setting('server_version_num') || '|' || datcollate || '|' || datctype \
             FROM pg_database WHERE datname = 'template0'",
        )?;
        let parts: Vec<&str> = info.trim().split('|').collect();
        let [version, collate, ctype] = parts[..] else { return Err(format!("server info: {info}").into()) };
        let header = format!(
            "-- {{\"format\":1,\"server_version_num\":{version},\"server_version\":\"x\",\"database\":\"x\",\
             \"encoding\":\"UTF8\",\"collate\":\"{collate}\",\"ctype\":\"{ctype}\"}}\n"
        );
        Ok(SlowDump { header })
    }
}

impl DumpSource for SlowDump {
    fn names(&self) -> Vec<String> {
        ["0-header.sql", "1-pre-data.sql", "2-data-public.a.sql", "2-data-public.b.sql"].map(str::to_owned).to_vec()
    }

    fn open(&self, name: &str) -> envsnap::Result<Box<dyn Read + Send + '_>> {
        let text = |text: &str| -> Box<dyn Read + Send> { Box::new(std::io::Cursor::new(text.as_bytes().to_vec())) };
        Ok(match name {
            "0-header.sql" => text(&self.header),
            "1-pre-data.sql" => text("CREATE TABLE public.a (x bigint);\nCREATE TABLE public.b (x bigint);\n"),
            _ => {
                let table = if name.contains(".a.") { "a" } else { "b" };
                let head = format!("COPY public.{table} (x) FROM stdin;\n").into_bytes();
                Box::new(SlowRows { head: std::io::Cursor::new(head), next: 0, rows: 1_200_000 })
            }
        })
    }
}

/// The sessions connected to `database` that run `COPY`.
fn copy_sessions(database: &str) -> Result<Vec<String>, Error> {
    let pids = psql(
        "postgres",
        &format!(
            "SELECT pid FROM pg_stat_activity WHERE datname = '{database}' AND query LIKE 'COPY %' \
             AND state = 'active'"
        ),
    )?;
    Ok(pids.lines().map(str::to_owned).collect())
}

/// Waits until `database` has `count` sessions running `COPY`; returns them.
fn wait_for_copies(database: &str, count: usize) -> Result<Vec<String>, Error> {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let pids = copy_sessions(database)?;
        if pids.len() >= count {
            return Ok(pids);
        }
        if std::time::Instant::now() > deadline {
            return Err(format!("{count} COPY sessions never ran on {database} (found {pids:?})").into());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits until no session is connected to `database`.
fn assert_no_session_left(database: &str) -> TestResult {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let left = psql(
            "postgres",
            &format!("SELECT pid || ' ' || coalesce(query, '') FROM pg_stat_activity WHERE datname = '{database}'"),
        )?;
        if left.trim().is_empty() {
            return Ok(());
        }
        if std::time::Instant::now() > deadline {
            return Err(format!("sessions are left on {database}: {left}").into());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_restore_whose_loader_session_is_ended_fails_at_once_naming_the_service() -> TestResult {
    let databases = Databases::new();
    let target = databases.name("main");
    let service = PostgresService::new("db", &format!("postgresql://postgres@127.0.0.1:5432/{target}"))?
        .with_layout(DumpLayout { workers: 2, ..DumpLayout::default() });
    let dump = SlowDump::new()?;
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = sender.send(service.restore(&dump).map_err(|error| error.to_string()));
    });
    let pids = wait_for_copies(&target, 2)?;
    psql("postgres", &format!("SELECT pg_terminate_backend({})", pids[0]))?;
    let started = std::time::Instant::now();
    let result = receiver.recv_timeout(Duration::from_secs(30)).map_err(|_| "the restore never ended")?;
    let message = result.err().ok_or("the restore succeeded")?;
    assert!(
        message.contains("service `db`") && message.contains("terminating connection due to administrator command"),
        "{message}"
    );
    assert!(started.elapsed() < Duration::from_secs(10), "it took {:?} to end", started.elapsed());
    // The other loader was stopped, not left waiting for the rest of its rows.
    assert_no_session_left(&target)?;
    Ok(())
}

/// Takes the streams of a capture slowly, so that the tools stay busy writing them.
#[derive(Default)]
struct SlowSink;

impl DumpSink for SlowSink {
    fn add(&self, name: &str, reader: &mut dyn Read) -> envsnap::Result<()> {
        let mut buffer = vec![0; 64 << 10];
        loop {
            match reader.read(&mut buffer) {
                Ok(0) => return Ok(()),
                Ok(_) => std::thread::sleep(Duration::from_millis(20)),
                // What the store does: retry an interrupted read.
                Err(error) if error.kind() == std::io::ErrorKind::Interrupted => {}
                Err(error) => return Err(envsnap::Error::io("reading", name, error)),
            }
        }
    }
}

#[test]
fn a_capture_whose_dump_session_is_ended_fails_at_once_naming_the_service() -> TestResult {
    let databases = Databases::new();
    let source = databases.name("main");
    psql("postgres", &format!("CREATE DATABASE \"{source}\""))?;
    psql(
        &source,
        "CREATE TABLE a (x bigint, y text); CREATE TABLE b (x bigint, y text); \
         INSERT INTO a SELECT g, repeat('a', 200) FROM generate_series(1, 150000) g; \
         INSERT INTO b SELECT g, repeat('b', 200) FROM generate_series(1, 150000) g;",
    )?;
    let layout = DumpLayout { workers: 2, own_stream_from: 0, piece_size: 1 << 40 };
    let service =
        PostgresService::new("db", &format!("postgresql://postgres@127.0.0.1:5432/{source}"))?.with_layout(layout);
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = sender.send(service.capture(&SlowSink).map_err(|error| error.to_string()));
    });
    let pids = wait_for_copies(&source, 2)?;
    psql("postgres", &format!("SELECT pg_terminate_backend({})", pids[0]))?;
    let started = std::time::Instant::now();
    let result = receiver.recv_timeout(Duration::from_secs(30)).map_err(|_| "the capture never ended")?;
    let message = result.err().ok_or("the capture succeeded")?;
    // psql hears of it as a lost connection (over TLS, without the server's reason).
    assert!(
        message.contains("service `db`")
            && message.contains("psql failed")
            && (message.contains("terminating connection") || message.contains("connection to server was lost")),
        "{message}"
    );
    assert!(started.elapsed() < Duration::from_secs(10), "it took {:?} to end", started.elapsed());
    assert_no_session_left(&source)?;
    Ok(())
}

/// A session that holds an `ACCESS EXCLUSIVE` lock on `table` of `database` for two
/// minutes, as a migration left open would; killed when dropped.
struct ExclusiveLock {
    child: std::process::Child,
}

impl ExclusiveLock {
    fn take(database: &str, table: &str) -> Result<Self, Error> {
        let child = Command::new("psql")
            .args(["-X", "-h", "127.0.0.1", "-U", "postgres", "-d", database, "-v", "ON_ERROR_STOP=1"])
            .args(["-c", &format!("BEGIN; LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE; SELECT pg_sleep(120)")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        let lock = ExclusiveLock { child };
        for _ in 0..250 {
            let held = psql(
                database,
                "SELECT count(*) FROM pg_locks WHERE mode = 'AccessExclusiveLock' AND granted AND locktype = 'relation'",
            )?;
            if held.trim() != "0" {
                return Ok(lock);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Err("the lock was never taken".into())
    }

    fn pid(database: &str) -> Result<String, Error> {
        let pid = psql(
            database,
            // Other tests take locks in their own databases at the same time: only this
            // database's table lock is the one held here.
            "SELECT pid FROM pg_locks WHERE mode = 'AccessExclusiveLock' AND granted AND locktype = 'relation' \
             AND database = (SELECT oid FROM pg_database WHERE datname = current_database()) \
             AND relation = 'orders'::regclass LIMIT 1",
        )?;
        Ok(pid.trim().to_owned())
    }
}

impl Drop for ExclusiveLock {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until a session of envsnap's on `database` waits for a lock.
fn wait_for_lock_wait(database: &str) -> TestResult {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while psql(
        "postgres",
        &format!(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = '{database}' AND wait_event_type = 'Lock' \
             AND application_name = 'envsnap'"
        ),
    )?
    .trim()
        == "0"
    {
        if std::time::Instant::now() > deadline {
            return Err("envsnap never waited for the lock".into());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

#[test]
fn a_snapshot_behind_an_exclusive_lock_gives_up_in_time_naming_the_table_and_the_session() -> TestResult {
    let databases = Databases::new();
    let main = databases.name("main");
    create(&main)?;
    let project = Project::new(&databases.config())?;
    project.ok(&["init"])?;
    let lock = ExclusiveLock::take(&main, "orders")?;
    let holder = ExclusiveLock::pid(&main)?;
    let started = std::time::Instant::now();
    let mut backup = project.start(&["backup"], &[("ENVSNAP_LOCK_TIMEOUT", "2".as_ref())])?;
    let output = common::wait_at_most(&mut backup, 40)?;
    let stderr = String::from_utf8(output.stderr)?;
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(started.elapsed() < Duration::from_secs(20), "it gave up after {:?}", started.elapsed());
    for said in [
        "service `db`",
        "waited 2 s",
        "on table orders",
        &format!("session {holder} "),
        "ACCESS EXCLUSIVE",
        "ENVSNAP_LOCK_TIMEOUT",
        &format!("pg_terminate_backend({holder})"),
    ] {
        assert!(stderr.contains(said), "says `{said}`: {stderr}");
    }
    assert!(project.snapshots()?.is_empty());
    drop(lock);

    // A value that is not a number of seconds is refused, naming the variable.
    let output = project.run_with_env(&["backup"], &[("ENVSNAP_LOCK_TIMEOUT", "soon".as_ref())])?;
    let stderr = String::from_utf8(output.stderr)?;
    assert!(stderr.contains("ENVSNAP_LOCK_TIMEOUT is `soon`"), "{stderr}");
    Ok(())
}

#[test]
fn a_snapshot_told_to_stop_leaves_no_tool_running_and_no_session_waiting() -> TestResult {
    let databases = Databases::new();
    let main = databases.name("main");
    create(&main)?;
    let project = Project::new(&databases.config())?;
    project.ok(&["init"])?;
    let lock = ExclusiveLock::take(&main, "people")?;
    for signal in ["-TERM", "-INT"] {
        let mut backup = project.start(&["backup"], &[])?;
        wait_for_lock_wait(&main)?;
        let tools = common::descendants(backup.id());
        assert!(!tools.is_empty(), "the backup runs psql");
        common::signal(backup.id(), signal)?;
        let output = common::wait_at_most(&mut backup, 15)?;
        assert!(!output.status.success(), "{signal}: {:?}", output.status);
        std::thread::sleep(Duration::from_millis(200));
        let left: Vec<u32> = tools.iter().copied().filter(|&pid| common::running(pid)).collect();
        assert!(left.is_empty(), "{signal}: tools left running: {left:?}");
        // psql cancelled its statement: no session of envsnap's is left in the lock's queue.
        let waiting = psql(
            "postgres",
            &format!("SELECT count(*) FROM pg_stat_activity WHERE datname = '{main}' AND application_name = 'envsnap'"),
        )?;
        assert_eq!(waiting.trim(), "0", "{signal}: envsnap sessions are left on the server");
    }
    drop(lock);
    Ok(())
}

#[test]
fn a_stream_that_holds_a_shell_command_runs_nothing() -> TestResult {
    let databases = Databases::new();
    let target = databases.name("main");
    let planted = std::env::temp_dir().join(format!("envsnap-restrict-{target}"));
    let dump = SlowDump::new()?;
    let streams = MemoryDump::default();
    streams.add("0-header.sql", &mut dump.open("0-header.sql")?)?;
    // envsnap loads every stream inside a \restrict of its own: a \! after a statement, or
    // after the table's rows, is refused by psql.
    let hostile = format!("CREATE TABLE public.a (x bigint);\n\\! touch {}\n", planted.display());
    streams.add("1-pre-data.sql", &mut hostile.as_bytes())?;
    let rows = format!("COPY public.a (x) FROM stdin;\n1\n\\.\n\\! touch {}\n", planted.display());
    streams.add("2-data-public.a.sql", &mut rows.as_bytes())?;
    let service = PostgresService::new("db", &format!("postgresql://postgres@127.0.0.1:5432/{target}"))?;
    let result = service.restore(&streams);
    assert!(!planted.exists(), "the dump ran a shell command: {} exists", planted.display());
    let message = result.err().map(|error| error.to_string()).unwrap_or_default();
    assert!(
        message.contains("service `db`") && message.contains("backslash commands are restricted"),
        "the restore fails, naming the service and why: {message}"
    );
    // The data stream alone, into the database the schema made.
    let rows_only = MemoryDump::default();
    rows_only.add("0-header.sql", &mut dump.open("0-header.sql")?)?;
    rows_only.add("1-pre-data.sql", &mut &b"CREATE TABLE public.a (x bigint);\n"[..])?;
    rows_only.add("2-data-public.a.sql", &mut rows.as_bytes())?;
    let message = service.restore(&rows_only).err().map(|error| error.to_string()).unwrap_or_default();
    assert!(!planted.exists(), "the rows' stream ran a shell command");
    assert!(message.contains("backslash commands are restricted"), "{message}");
    Ok(())
}

/// What the owner of `database` set on it, one line each.
fn database_properties(database: &str) -> Result<String, Error> {
    psql(
        "postgres",
        &format!(
            "SELECT datlocprovider, daticulocale, datcollate, datconnlimit, \
             (SELECT array_agg(item::text ORDER BY item::text) FROM unnest(datacl) item), \
             shobj_description(d.oid, 'pg_database'), \
             (SELECT setconfig::text FROM pg_db_role_setting WHERE setdatabase = d.oid AND setrole = 0) \
             FROM pg_database d WHERE datname = '{database}'"
        ),
    )
}

#[test]
fn what_the_owner_set_on_the_database_survives_a_restore_and_its_tables_are_analyzed() -> TestResult {
    let databases = Databases::new();
    // Dropped after the databases, which hold its grants.
    let role = DropRole { role: format!("{}_reader", databases.prefix), database: "postgres".to_owned() };
    let (main, feature) = (databases.name("main"), databases.name("feature"));
    psql(
        "postgres",
        &format!(
            "CREATE DATABASE \"{main}\" TEMPLATE template0 LOCALE_PROVIDER icu ICU_LOCALE 'en-US' LOCALE 'C.UTF-8'"
        ),
    )?;
    for statement in [
        format!("CREATE ROLE \"{}\"", role.role),
        format!("ALTER DATABASE \"{main}\" SET work_mem = '64MB'"),
        format!("ALTER DATABASE \"{main}\" SET search_path = \"$user\", public, \"Odd, one\""),
        format!("COMMENT ON DATABASE \"{main}\" IS 'the shop''s data'"),
        format!("REVOKE CONNECT ON DATABASE \"{main}\" FROM PUBLIC"),
        format!("GRANT CONNECT ON DATABASE \"{main}\" TO \"{}\" WITH GRANT OPTION", role.role),
        format!("ALTER DATABASE \"{main}\" CONNECTION LIMIT 50"),
    ] {
        psql("postgres", &statement)?;
    }
    psql(&main, "CREATE TABLE words (w text); INSERT INTO words VALUES ('b'), ('A'), ('a'), ('B');")?;
    let properties = database_properties(&main)?;
    assert!(properties.starts_with("i|en-US|"), "{properties}");
    let order = |database: &str| psql(database, "SELECT string_agg(w, ' ' ORDER BY w) FROM words");
    assert_eq!(order(&main)?.trim(), "a A b B", "ICU's order, not C's (A B a b)");
    let project = Project::new(&databases.config())?;
    project.ok(&["init"])?;
    let id = project.backup(&[])?;

    project.ok(&["restore", &id[..12], "--yes"])?;
    project.ok(&["restore", &id[..12], "--target", "feature", "--branch-from", "main", "--yes"])?;
    for database in [&main, &feature] {
        let restored = database_properties(database)?;
        assert_eq!(restored.replace(database.as_str(), "DB"), properties.replace(main.as_str(), "DB"), "{database}");
        assert_eq!(order(database)?.trim(), "a A b B", "{database}");
        let statistics = psql(database, "SELECT count(*) FROM pg_stats WHERE tablename = 'words'")?;
        assert_eq!(statistics.trim(), "1", "{database} was analyzed after the restore");
    }
    Ok(())
}

#[test]
fn a_restore_that_lacks_the_owner_of_objects_names_it_and_restores_without_owners() -> TestResult {
    let databases = Databases::new();
    let main = databases.name("main");
    create(&main)?;
    let owner = DropRole { role: format!("{}_owner", databases.prefix), database: main.clone() };
    psql("postgres", &format!("CREATE ROLE \"{}\"", owner.role))?;
    psql(&main, &format!("ALTER TABLE people OWNER TO \"{}\"", owner.role))?;
    let project = Project::new(&databases.config())?;
    project.ok(&["init"])?;
    let id = project.backup(&[])?;
    // Another server would not have the role: here it is dropped.
    psql(&main, &format!("REASSIGN OWNED BY \"{}\" TO postgres", owner.role))?;
    psql("postgres", &format!("DROP ROLE \"{}\"", owner.role))?;

    let stderr = project.fails(&["restore", &id[..12], "--yes", "--no-safety-snapshot"], 1)?;
    let said = [format!("names role `{}`, the owner of objects in it", owner.role), "--no-owner".to_owned()];
    for said in said {
        assert!(stderr.contains(&said), "says `{said}`: {stderr}");
    }
    assert!(!stderr.contains("fix the user in `url`"), "{stderr}");

    project.ok(&["restore", &id[..12], "--yes", "--no-safety-snapshot", "--no-owner"])?;
    let table_owner = psql(&main, "SELECT tableowner FROM pg_tables WHERE tablename = 'people'")?;
    assert_eq!(table_owner.trim(), "postgres", "the restoring user owns what the missing role owned");
    assert_eq!(psql(&main, "SELECT count(*) FROM people")?.trim(), "20002");
    Ok(())
}
