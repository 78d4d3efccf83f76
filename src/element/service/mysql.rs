//! `type = "mysql"`: one MySQL or MariaDB database, captured with `mariadb-dump`
//! (or `mysqldump`) and restored with `mariadb` (or `mysql`).
//!
//! # Capture
//!
//! One `mariadb-dump --single-transaction --routines --triggers --events --hex-blob
//! --skip-extended-insert --no-autocommit` of the database: one process, so one
//! consistent snapshot (`--single-transaction` in several processes would be several
//! snapshots). Its output is cut, as it passes, into one stream a table, where the dump
//! starts each table (`TableParts`):
//!
//! | stream | holds |
//! |---|---|
//! | `0-header.sql` | envsnap: a comment holding the server version and the database's character set and collation |
//! | `1-dump-000000.sql` | the dump's opening (session settings) |
//! | `1-dump-000001-<table>.sql`, … | each table's structure and rows, in the dump's order; the last also holds the views, routines and events that follow |
//!
//! The streams, one after the other, are the dump byte for byte. Cut so, a table's rows
//! start chunks of their own: after 1% of one table's rows of ten changed, the next
//! snapshot stored 10.8% of the first as one stream (the chunks that straddle the
//! table's neighbours change too), against that table's share, 10%, cut by table.
//!
//! **One row per line** (`--skip-extended-insert`). By default `mariadb-dump` packs
//! rows into `INSERT`s of about 1 MB, cut by length, so a row that grows or shrinks
//! can move the cuts after it. Measured with `bench/services-sql`'s data (ten tables of
//! random rows, 325 MiB of dump): after 5 rows of one table grew by a byte and 10 were
//! added, the next snapshot stored 3.3 MiB one row per line, 4.6 MiB with extended
//! inserts (and 6.4 MiB for restic given the extended dump); after 1% of one table's
//! rows changed, the same for both (that table's share). Dumping takes the same time.
//!
//! Loading is another matter: one `INSERT` per row is one statement, and in autocommit
//! one transaction, per row (ten minutes were not enough to load such a dump that loads
//! in 23 s with extended inserts). So a restore merges consecutive rows of a table back
//! into statements of up to 1 MiB as it feeds the client ([`Rebatch`]), each committed
//! at once: it then loads as fast as the extended dump (16.8 s against 17.1 s). The
//! dump is taken with `--no-autocommit`, which makes each table one transaction, for
//! whoever loads an exported dump without envsnap (two minutes rather than more than
//! ten; `envsnap export` merges the rows as a restore does, and anything else may pipe it through [`Rebatch`]).
//!
//! `--single-transaction` gives a consistent snapshot of InnoDB tables; MyISAM tables
//! are read as they are at the moment each is dumped, as with `mariadb-dump` alone.
//!
//! On MariaDB 10.11 and later, `--dump-history` keeps the past rows of
//! system-versioned tables, with their times.
//!
//! `FLOAT` values come out of the server with six digits; a session beside the dump
//! reads them exactly and puts them into the dump as it passes ([`floats`]).
//!
//! # Restore
//!
//! The dump's server version is checked first: a dump of a newer major version than
//! the target's (or of the other product, MySQL against MariaDB) is refused before
//! anything is changed, as is a dump in which the client would find a command of its
//! own ([`ClientCommands`]: the dump is read once for that, then again to load it). Then the sessions using the target database are ended, the
//! database is dropped and created again with the dump's character set and collation,
//! and the dump is loaded into it. A restore that fails half-way leaves the database
//! half loaded: `envsnap undo` puts back the safety snapshot taken before it.

use std::collections::HashSet;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

mod client_commands;
mod floats;

use client_commands::ClientCommands;
use floats::{ExactFloats, FloatTable};

use super::connection::ConnectionUrl;
use super::process::{Cancellable, Tool, ToolError, read_ahead};
use super::sql::{self, Advice, HEADER, LOCK_TIMEOUT_VARIABLE, Pieces, Produce, stream_error};
use super::{DumpSink, DumpSource, Service};
use crate::error::{Error, Result};

/// The dump's streams: `1-dump-000000.sql` (what comes before the first table), then
/// `1-dump-000001-<table>.sql` and so on, one a table, in the dump's order.
const DUMP_PREFIX: &str = "1-dump";
/// The version of the stream layout above, recorded in the header.
const LAYOUT_FORMAT: u32 = 1;
/// How the header stream names the dump.
const TITLE: &str = "envsnap MySQL dump";
/// The stream that opens the dump, which [`is_header`] recognises.
pub const HEADER_STREAM: &str = HEADER;

/// Whether `text`, the start of a dump's [`HEADER_STREAM`], opens a dump of this adapter.
pub fn is_header(text: &str) -> bool {
    text.contains(TITLE)
}

/// The client options a URL's query may set (`?socket=/run/mysqld/mysqld.sock`).
const PARAMETERS: &[&str] = &["socket", "ssl-ca", "ssl-capath", "ssl-cert", "ssl-key", "ssl-cipher"];

/// The dump tools, newest name first; MySQL installs only the second.
const DUMP_TOOLS: &[&str] = &["mariadb-dump", "mysqldump"];
/// The clients, likewise.
const CLIENTS: &[&str] = &["mariadb", "mysql"];

/// Which end of a tool envsnap talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pipe {
    /// Its stdin: envsnap writes a dump to it.
    Input,
    /// Its stdout: envsnap reads its output.
    Output,
    /// Both: envsnap writes statements and reads their answers.
    Both,
    /// Neither.
    None,
}

/// A MySQL or MariaDB database.
#[derive(Debug, Clone)]
pub struct MysqlService {
    name: String,
    url: ConnectionUrl,
    address: String,
}

/// What the header stream records about the captured database.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Header {
    /// [`LAYOUT_FORMAT`].
    format: u32,
    /// `VERSION()`, e.g. `10.11.19-MariaDB-0+deb12u1`.
    server_version: String,
    /// The database captured.
    database: String,
    charset: String,
    collation: String,
}

impl Header {
    fn to_sql(&self) -> String {
        sql::header_text(
            &format!(
                "{TITLE} of database {:?}: load the {DUMP_PREFIX}-*.sql streams, in name order, into an \
                 empty database.",
                self.database
            ),
            self,
        )
    }
}

/// A server's product and version, as far as dumps care.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ServerVersion {
    mariadb: bool,
    major: u32,
    minor: u32,
}

impl ServerVersion {
    /// Reads `VERSION()`: `8.0.36`, `10.11.19-MariaDB-0+deb12u1`, `5.5.5-10.6.4-MariaDB`.
    fn parse(text: &str) -> ServerVersion {
        let mariadb = text.contains("MariaDB");
        // Old MariaDB replication proxies prefix a fake 5.5.5 for old clients.
        let text = if mariadb { text.strip_prefix("5.5.5-").unwrap_or(text) } else { text };
        let mut numbers = text.split(|c: char| !c.is_ascii_digit()).map(|part| part.parse::<u32>().unwrap_or(0));
        ServerVersion { mariadb, major: numbers.next().unwrap_or(0), minor: numbers.next().unwrap_or(0) }
    }

    fn product(self) -> &'static str {
        if self.mariadb { "MariaDB" } else { "MySQL" }
    }
}

impl std::fmt::Display for ServerVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}.{}", self.product(), self.major, self.minor)
    }
}

impl MysqlService {
    /// The service `name` at `url` (`mysql://[user[:password]@]host[:port]/database[?socket=…]`).
    pub fn new(name: &str, url: &str) -> Result<Self> {
        let invalid = |detail: String| Error::ServiceFailed {
            name: name.to_owned(),
            address: "mysql".to_owned(),
            detail: format!("{detail}; fix `url` in envsnap.toml"),
        };
        let url = ConnectionUrl::parse(url, &["mysql", "mariadb"]).map_err(invalid)?;
        if let Some((key, _)) = url.parameters.iter().find(|(key, _)| !PARAMETERS.contains(&key.as_str())) {
            return Err(invalid(format!(
                "`url` has a parameter `{key}` that envsnap does not know (known: {})",
                PARAMETERS.join(", ")
            )));
        }
        let socket = url.parameters.iter().find(|(key, _)| key == "socket").map(|(_, value)| value.clone());
        let address = url.address(3306, &socket.unwrap_or_else(|| "localhost".to_owned()));
        Ok(MysqlService { name: name.to_owned(), url, address })
    }

    fn failed(&self, detail: String) -> Error {
        Error::ServiceFailed { name: self.name.clone(), address: self.address.clone(), detail }
    }

    fn tool_failed(&self, error: ToolError, candidates: &[&str]) -> Error {
        let detail = match error {
            ToolError::Missing { .. } => {
                format!("neither `{}` is installed or in PATH: {}", candidates.join("` nor `"), ADVICE.install)
            }
            other => ADVICE.describe(other),
        };
        self.failed(detail)
    }

    /// Starts the first of `candidates` that is installed, with the connection options
    /// and then `arguments`.
    fn start(&self, candidates: &[&str], arguments: &[String], pipe: Pipe) -> Result<Tool> {
        for program in candidates {
            let mut command = Command::new(program);
            if let Some(host) = &self.url.host {
                command.arg(format!("--host={host}"));
            }
            if let Some(port) = self.url.port {
                command.arg(format!("--port={port}"));
            }
            if let Some(user) = &self.url.user {
                command.arg(format!("--user={user}"));
            }
            for (key, value) in &self.url.parameters {
                command.arg(format!("--{key}={value}"));
            }
            // Through the environment, where other users cannot see it, never argv.
            if let Some(password) = &self.url.password {
                command.env("MYSQL_PWD", password);
            }
            command.arg("--default-character-set=utf8mb4").args(arguments);
            let piped = |wanted: bool| if wanted { Stdio::piped() } else { Stdio::null() };
            command
                .stdin(piped(matches!(pipe, Pipe::Input | Pipe::Both)))
                .stdout(piped(matches!(pipe, Pipe::Output | Pipe::Both)));
            match Tool::start(program, &mut command) {
                Err(ToolError::Missing { .. }) => continue,
                started => return started.map_err(|error| self.tool_failed(error, candidates)),
            }
        }
        Err(self.tool_failed(ToolError::Missing { program: candidates[0].to_owned() }, candidates))
    }

    /// Runs `sql` with the client, without a default database; returns its rows, one
    /// per line, columns separated by tabs.
    fn query(&self, sql: &str) -> Result<String> {
        let arguments = vec![
            "--batch".to_owned(),
            "--skip-column-names".to_owned(),
            "--connect-timeout=10".to_owned(),
            "--execute".to_owned(),
            sql.to_owned(),
        ];
        let mut tool = self.start(CLIENTS, &arguments, Pipe::Output)?;
        let mut output = Vec::new();
        let read = tool.stdout().map(|mut stdout| stdout.read_to_end(&mut output));
        tool.finish().map_err(|error| self.tool_failed(error, CLIENTS))?;
        if let Some(Err(error)) = read {
            return Err(self.failed(format!("reading the client's output: {error}")));
        }
        Ok(String::from_utf8_lossy(&output).into_owned())
    }

    fn server_version(&self) -> Result<String> {
        Ok(self.query("SELECT VERSION()")?.trim().to_owned())
    }

    /// The ids of the sessions on the server now.
    fn session_ids(&self) -> Result<HashSet<u64>> {
        let ids = self.query("SELECT ID FROM information_schema.PROCESSLIST")?;
        Ok(ids.lines().filter_map(|id| id.trim().parse().ok()).collect())
    }

    /// Watches, until `dumped`, for a session of the dump (one that is not in
    /// `earlier`, on the database) that has waited `timeout` or longer for a lock; ends
    /// it, and returns what it waited for and which sessions may hold the lock.
    fn watch_lock_waits(&self, earlier: &HashSet<u64>, timeout: Duration, dumped: &AtomicBool) -> Option<String> {
        let every = (timeout / 4).clamp(Duration::from_millis(250), Duration::from_secs(2));
        let mut next = Instant::now() + every;
        while !dumped.load(Ordering::Relaxed) {
            if Instant::now() < next {
                std::thread::sleep(Duration::from_millis(20));
                continue;
            }
            next = Instant::now() + every;
            let waiting = self
                .query(&format!(
                    "SELECT ID, TIME, STATE, LEFT(IFNULL(INFO, ''), 200) FROM information_schema.PROCESSLIST \
                     WHERE DB = {} AND STATE LIKE 'Waiting for%lock%'",
                    literal(&self.url.database)
                ))
                .unwrap_or_default();
            let found = waiting.lines().find_map(|line| {
                let mut fields = line.splitn(4, '\t');
                let id: u64 = fields.next()?.trim().parse().ok()?;
                let seconds: u64 = fields.next()?.trim().parse().ok()?;
                let state = fields.next()?.to_owned();
                let statement = fields.next().unwrap_or_default().to_owned();
                (!earlier.contains(&id) && Duration::from_secs(seconds) >= timeout).then_some((id, state, statement))
            });
            let Some((id, state, statement)) = found else { continue };
            let holders = self
                .query(&format!(
                    "SELECT ID, USER, COMMAND, TIME, LEFT(IFNULL(INFO, ''), 80) FROM information_schema.PROCESSLIST \
                     WHERE ID <> {id} AND ID <> CONNECTION_ID() AND COMMAND NOT IN ('Daemon', 'Binlog Dump') \
                     AND IFNULL(STATE, '') NOT LIKE 'Waiting for%lock%' ORDER BY TIME DESC LIMIT 3"
                ))
                .unwrap_or_default();
            let holders: Vec<String> = holders
                .lines()
                .filter_map(|line| {
                    let fields: Vec<&str> = line.splitn(5, '\t').collect();
                    let [session, user, command, seconds, statement] = fields[..] else { return None };
                    let doing = if statement.is_empty() { command.to_owned() } else { format!("`{statement}`") };
                    Some(format!("session {session} of `{user}`, {doing} for {seconds} s"))
                })
                .collect();
            // Ending the dump's session makes mariadb-dump fail at once; a session that
            // ended meanwhile is not an error.
            let _ = self.query(&format!("KILL CONNECTION {id}"));
            let holders = if holders.is_empty() { "none is listed".to_owned() } else { holders.join("; ") };
            return Some(format!(
                "the dump waited {} for a lock ({state}: `{statement}`) and was stopped; sessions that may hold \
                 the lock (LOCK TABLES, an ALTER TABLE, an open transaction): {holders}; let them finish or end them \
                 (KILL), then take the snapshot again; {LOCK_TIMEOUT_VARIABLE} sets how many seconds to wait for a lock",
                sql::show_seconds(timeout)
            ));
        }
        None
    }

    /// Refuses a dump in which the client would find a command of its own (see
    /// [`ClientCommands`]): a dump read from the store is hostile input, and a
    /// command in it could reach the file system, a shell, another server or another
    /// database, or end the load early.
    fn refuse_client_commands(&self, source: &dyn DumpSource) -> Result<()> {
        let mut names: Vec<String> = source.names().into_iter().filter(|name| name.starts_with(DUMP_PREFIX)).collect();
        names.sort();
        let mut scanner = ClientCommands::default();
        let mut buffer = vec![0; 256 << 10];
        for name in &names {
            let mut input = source.open(name)?;
            scanner.start_stream();
            loop {
                let count = match input.read(&mut buffer) {
                    Ok(0) => break,
                    Ok(count) => count,
                    Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                    Err(error) => return Err(stream_error(error, name)),
                };
                if let Some(found) = scanner.scan(&buffer[..count]) {
                    return Err(self.failed(format!(
                        "the dump's stream `{name}` holds, on its line {}, `{}`, which the client would run as a \
                         command of its own (`{}`), not send as SQL; a dump from mariadb-dump or mysqldump holds none \
                         but DELIMITER: the snapshot was altered; nothing was sent to the server and nothing was \
                         changed",
                        found.line, found.text, found.command
                    )));
                }
            }
        }
        Ok(())
    }

    fn read_header(&self, source: &dyn DumpSource) -> Result<Header> {
        if !source.names().iter().any(|name| name.starts_with(DUMP_PREFIX)) {
            return Err(self.failed(format!(
                "the snapshot's dump has no `{DUMP_PREFIX}…` streams: it was not taken by envsnap's mysql adapter"
            )));
        }
        sql::read_header(source, "mysql", LAYOUT_FORMAT, |detail| self.failed(detail))
    }
}

impl Service for MysqlService {
    fn address(&self) -> String {
        self.address.clone()
    }

    fn exists(&self) -> Result<bool> {
        let count = self.query(&format!(
            "SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = {}",
            literal(&self.url.database)
        ))?;
        Ok(count.trim() != "0")
    }

    fn capture(&self, sink: &dyn DumpSink) -> Result<()> {
        let probe = self.query(&format!(
            "SELECT VERSION(), IFNULL((SELECT CONCAT(DEFAULT_CHARACTER_SET_NAME, ' ', DEFAULT_COLLATION_NAME) \
             FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = {}), '')",
            literal(&self.url.database)
        ))?;
        let (version, charset) = probe.trim_end_matches('\n').split_once('\t').unwrap_or((probe.trim(), ""));
        let Some((charset, collation)) = charset.split_once(' ') else {
            return Err(self.failed(format!(
                "database `{}` does not exist; create it, or fix its name in `url` in envsnap.toml",
                self.url.database
            )));
        };
        let header = Header {
            format: LAYOUT_FORMAT,
            server_version: version.to_owned(),
            database: self.url.database.clone(),
            charset: charset.to_owned(),
            collation: collation.to_owned(),
        };
        let server = ServerVersion::parse(version);
        // System-versioned tables with their history: the rows of the past with their
        // row_start and row_end, which MariaDB 10.11 and later load back as they were
        // (`system_versioning_insert_history`, which the dump sets). Without it only
        // the current rows are dumped.
        let history = server.mariadb && (server.major, server.minor) >= (10, 11);
        let arguments: Vec<String> = [
            "--single-transaction",
            "--routines",
            "--triggers",
            "--events",
            "--hex-blob",
            "--skip-extended-insert",
            // One transaction per table rather than per row, for whoever loads the dump
            // without envsnap (see the module documentation).
            "--no-autocommit",
            // No date in the last line: the end of an unchanged dump stays unchanged.
            "--skip-dump-date",
        ]
        .iter()
        .map(|argument| (*argument).to_owned())
        .chain(history.then(|| "--dump-history".to_owned()))
        .chain(["--".to_owned(), self.url.database.clone()])
        .collect();
        // mariadb-dump has no lock timeout of its own: a watch ends its session when it
        // has waited for a lock too long.
        let timeout = sql::lock_timeout(|detail| self.failed(detail))?;
        // FLOAT values are read exactly beside the dump (see `floats`), by sessions that
        // start first, so that the watch below takes them for no session of the dump.
        let float_tables = FloatTable::parse(&self.query(&floats::columns_query(&self.url.database))?);
        let mut exact = match float_tables.is_empty() {
            true => None,
            false => Some(ExactFloats::open(self, float_tables, timeout.as_millis().div_ceil(1000).max(1))?),
        };
        let earlier = self.session_ids()?;
        let mut tool = self.start(DUMP_TOOLS, &arguments, Pipe::Output)?;
        let stdout = tool.stdout().expect("stdout is piped");
        let dumped = AtomicBool::new(false);
        let (stored, waited) = std::thread::scope(|scope| {
            let watch = scope.spawn(|| self.watch_lock_waits(&earlier, timeout, &dumped));
            let mut parts = TableParts::new(read_ahead(stdout, Arc::new(AtomicBool::new(false))));
            let mut stored = Ok(());
            for index in 0.. {
                if parts.finished() {
                    break;
                }
                let name = parts.next_name(index);
                let table = parts.table.clone();
                stored = match (exact.as_mut(), table) {
                    (Some(exact), Some(table)) if exact.has(&table) => {
                        let mut patched = exact.patch(self, &table, parts.part());
                        let added = sink.add(&name, &mut patched);
                        // The patch's own error names the table; the store's would only say it stopped.
                        match patched.producer_mut().take_failure() {
                            Some(failure) => Err(failure),
                            None => added,
                        }
                    }
                    _ => sink.add(&name, &mut parts.part()),
                };
                if stored.is_ok()
                    && index == 0
                    && let Some(exact) = exact.as_mut()
                {
                    // The dump has begun its first table, so its snapshot is taken.
                    stored = exact.dump_started(self);
                }
                if stored.is_err() {
                    break;
                }
            }
            dumped.store(true, Ordering::Relaxed);
            (stored, watch.join().unwrap_or(None))
        });
        if stored.is_err() {
            // The dump is abandoned: stop the tool.
            tool.kill();
        }
        let finished = tool.finish();
        if let Some(waited) = waited {
            return Err(self.failed(waited));
        }
        match (finished, stored) {
            // The tool's own failure explains a short stream better than the store can.
            (Err(error), Ok(())) => return Err(self.tool_failed(error, DUMP_TOOLS)),
            (_, stored) => stored?,
        }
        if let Some(exact) = exact {
            exact.close(self)?;
        }
        sink.add(HEADER, &mut header.to_sql().as_bytes())
    }

    fn other_sessions(&self) -> Result<Option<u64>> {
        let count = self.query(&format!(
            "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE DB = {} AND ID <> CONNECTION_ID()",
            literal(&self.url.database)
        ))?;
        Ok(Some(count.trim().parse().unwrap_or(0)))
    }

    fn check_restore(&self, source: &dyn DumpSource) -> Result<()> {
        let header = self.read_header(source)?;
        let dump = ServerVersion::parse(&header.server_version);
        let server_text = self.server_version()?;
        let server = ServerVersion::parse(&server_text);
        let refuse = |why: &str| {
            self.failed(format!(
                "the snapshot holds a dump of {dump} ({}), and this server runs {server} ({server_text}): {why}; \
                 nothing was changed",
                header.server_version
            ))
        };
        if dump.mariadb != server.mariadb {
            return Err(refuse(&format!(
                "envsnap does not load a {} dump into {}; restore it into a {} server",
                dump.product(),
                server.product(),
                dump.product()
            )));
        }
        if (dump.major, dump.minor) > (server.major, server.minor) {
            return Err(refuse(&format!(
                "a dump of a newer version may not load into an older one; restore it into a server of version \
                 {}.{} or newer",
                dump.major, dump.minor
            )));
        }
        Ok(())
    }

    fn restore(&self, source: &dyn DumpSource) -> Result<()> {
        self.check_restore(source)?;
        let header = self.read_header(source)?;
        // Before anything is changed: the whole dump is read once more to load it.
        self.refuse_client_commands(source)?;
        let timeout = sql::lock_timeout(|detail| self.failed(detail))?;
        let database = &self.url.database;
        // Sessions left open on the database would hold its tables' metadata locks and
        // make the DROP wait for them.
        let sessions = self.query(&format!(
            "SELECT ID FROM information_schema.PROCESSLIST WHERE DB = {} AND ID <> CONNECTION_ID()",
            literal(database)
        ))?;
        let kills: String = sessions
            .lines()
            .filter(|id| id.trim().parse::<u64>().is_ok())
            .map(|id| format!("KILL CONNECTION {};", id.trim()))
            .collect();
        if !kills.is_empty() {
            // A session that ended meanwhile is not an error: --force goes on.
            let arguments = vec!["--force".to_owned(), "--execute".to_owned(), kills];
            let _ = self.start(CLIENTS, &arguments, Pipe::None).map(Tool::finish);
        }
        let is_name =
            |text: &str| !text.is_empty() && text.bytes().all(|byte| byte.is_ascii_alphanumeric() || byte == b'_');
        if !is_name(&header.charset) || !is_name(&header.collation) {
            return Err(self.failed(format!(
                "the dump's `{HEADER}` names the character set `{}` and collation `{}`, which are not names",
                header.charset, header.collation
            )));
        }
        // A session that could not be ended holds its locks: fail after a while rather
        // than wait for it forever (the server counts whole seconds).
        let seconds = timeout.as_millis().div_ceil(1000).max(1);
        self.query(&format!(
            "SET SESSION lock_wait_timeout = {seconds}; \
             DROP DATABASE IF EXISTS {ident}; CREATE DATABASE {ident} CHARACTER SET {} COLLATE {}",
            header.charset,
            header.collation,
            ident = identifier(database)
        ))?;
        let mut names: Vec<String> = source.names().into_iter().filter(|name| name.starts_with(DUMP_PREFIX)).collect();
        names.sort();
        let input = Concatenated { source, names, next: 0, current: None };
        // The dump is stored bytes, so hostile input: in sandbox mode the client refuses
        // its commands that reach the file system or a shell (`\!`, `\.`, `tee`, …).
        let arguments = vec!["--sandbox".to_owned(), format!("--database={database}")];
        let mut tool = self.start(CLIENTS, &arguments, Pipe::Input)?;
        let mut stdin = tool.stdin().expect("stdin is piped");
        let never = AtomicBool::new(false);
        let copied = io::copy(&mut Rebatch::new(Cancellable { inner: input, cancel: &never }), &mut stdin)
            .and_then(|_| stdin.flush());
        drop(stdin);
        match copied {
            Ok(_) => tool.finish().map_err(|error| self.tool_failed(error, CLIENTS)),
            // The client stopped reading: it died or its session was ended, and says why.
            Err(error) if error.kind() == io::ErrorKind::BrokenPipe => {
                tool.finish().map_err(|failure| self.tool_failed(failure, CLIENTS))?;
                Err(self.failed(format!("the client stopped reading the dump before its end: {error}")))
            }
            // The dump could not be read: the client is stopped rather than told the dump
            // ended, so that it cannot commit a part as the whole.
            Err(error) => {
                tool.kill();
                drop(tool);
                Err(match stream_error(error, DUMP_PREFIX) {
                    Error::Io { source, .. } => self.failed(format!("reading the dump for the client: {source}")),
                    other => other,
                })
            }
        }
    }
}

/// `text` as an SQL string, whatever the `sql_mode`: a hex literal converted to text.
fn literal(text: &str) -> String {
    if text.is_empty() { "''".to_owned() } else { format!("CONVERT(X'{}' USING utf8mb4)", hex::encode(text)) }
}

/// `name` quoted as an identifier.
fn identifier(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

/// How the MariaDB and MySQL tools' failures are told.
const ADVICE: Advice =
    Advice { install: "install the MariaDB or MySQL client (e.g. `apt install mariadb-client`)", connecting, hint };

/// Whether a tool says it could not reach the server or log in: the client's own
/// codes for a refused connection, an unknown host, a refused login.
fn connecting(stderr: &str) -> bool {
    ["2002", "2003", "2005", "1045"]
        .iter()
        .any(|code| stderr.contains(&format!("ERROR {code}")) || stderr.contains(&format!("Got error: {code}")))
}

/// What to do about a failure, from the tool's message.
fn hint(stderr: &str) -> &'static str {
    if stderr.contains("Access denied") {
        "; check the user and password in `url`, and that the user may read the database (keep the password out of \
         envsnap.toml: write ${VARIABLE} and set it in the environment)"
    } else if stderr.contains("Lock wait timeout exceeded") {
        "; another session holds a metadata lock on a table of the database (an open transaction that read it, \
         LOCK TABLES, or an ALTER TABLE), and envsnap could not end it: let it finish or end it (SHOW PROCESSLIST, \
         KILL), or give the user CONNECTION ADMIN or SUPER so envsnap can; ENVSNAP_LOCK_TIMEOUT sets how many \
         seconds to wait for a lock"
    } else if stderr.contains("Unknown database") {
        "; create the database, or fix its name in `url` in envsnap.toml"
    } else if ["Can't connect", "Unknown server host", "Lost connection", "timed out"]
        .iter()
        .any(|symptom| stderr.contains(symptom))
    {
        "; is the server running? check the host and port in `url` in envsnap.toml"
    } else {
        ""
    }
}

/// Cuts the output of `mariadb-dump` into parts, one a table, where the dump starts a
/// table (the comment ``-- Table structure for table `t` ``, with the `--` line before
/// it). The parts, one after the other, are the dump byte for byte; stored as
/// streams of their own, a table's rows start their own chunks, so a change to one
/// table leaves the chunks of the tables beside it as they were.
struct TableParts<R> {
    inner: BufReader<R>,
    /// The lines that begin the next part, read while looking for its start.
    carry: Vec<u8>,
    /// The table of the next part, from its comment.
    table: Option<String>,
    /// The part being read has met the start of the next one.
    at_boundary: bool,
    /// The dump has been read to its end.
    ended: bool,
    /// The last piece read ended inside a line.
    inside_line: bool,
}

const TABLE_COMMENT: &[u8] = b"-- Table structure for table `";

impl<R: Read> TableParts<R> {
    fn new(inner: R) -> Self {
        TableParts {
            inner: BufReader::with_capacity(256 << 10, inner),
            carry: Vec::new(),
            table: None,
            at_boundary: false,
            ended: false,
            inside_line: false,
        }
    }

    fn finished(&self) -> bool {
        self.ended && self.carry.is_empty()
    }

    /// The stream name of the next part, the `index`th.
    fn next_name(&self, index: usize) -> String {
        match &self.table {
            None => format!("{DUMP_PREFIX}-{index:06}.sql"),
            Some(table) => {
                let escaped: String = table
                    .bytes()
                    .map(|byte| {
                        if byte.is_ascii_alphanumeric() || byte == b'_' || byte == b'-' {
                            char::from(byte).to_string()
                        } else {
                            format!("%{byte:02X}")
                        }
                    })
                    .collect();
                let escaped = if escaped.len() <= 180 {
                    escaped
                } else {
                    blake3::hash(table.as_bytes()).to_hex()[..32].to_owned()
                };
                format!("{DUMP_PREFIX}-{index:06}-{escaped}.sql")
            }
        }
    }

    /// A reader of the next part.
    fn part(&mut self) -> Pieces<Part<'_, R>> {
        self.at_boundary = false;
        let start = std::mem::take(&mut self.carry);
        Pieces::new(Part { parts: self }, start)
    }

    /// Reads one line, or a piece of one at most [`BATCH_LIMIT`] long, into `line`;
    /// returns whether it is a whole line.
    fn read_line(&mut self, line: &mut Vec<u8>) -> io::Result<bool> {
        line.clear();
        if (&mut self.inner).take(BATCH_LIMIT as u64).read_until(b'\n', line)? == 0 {
            self.ended = true;
            return Ok(false);
        }
        let whole = !self.inside_line && line.ends_with(b"\n");
        self.inside_line = !line.ends_with(b"\n");
        Ok(whole)
    }
}

/// One part of a [`TableParts`]: ends where the next table starts.
struct Part<'a, R> {
    parts: &'a mut TableParts<R>,
}

impl<R: Read> Produce for Part<'_, R> {
    /// Appends the next lines of the part; none at the part's end.
    fn produce(&mut self, out: &mut Vec<u8>) -> io::Result<bool> {
        let parts = &mut *self.parts;
        if parts.at_boundary || parts.ended {
            return Ok(false);
        }
        let mut line = Vec::new();
        let whole = parts.read_line(&mut line)?;
        if !(whole && line == b"--\n") {
            *out = line;
            return Ok(!out.is_empty());
        }
        // A `--` line: the start of the next table if the comment follows it.
        let mut next = Vec::new();
        let next_whole = parts.read_line(&mut next)?;
        if next_whole && next.starts_with(TABLE_COMMENT) {
            let name = &next[TABLE_COMMENT.len()..];
            let name = name.strip_suffix(b"`\n").unwrap_or(name);
            parts.table = Some(String::from_utf8_lossy(name).replace("``", "`"));
            parts.carry = line;
            parts.carry.extend_from_slice(&next);
            parts.at_boundary = true;
            return Ok(false);
        }
        *out = line;
        out.extend_from_slice(&next);
        Ok(true)
    }
}

/// The streams `names` of a dump, read one after the other.
struct Concatenated<'a> {
    source: &'a dyn DumpSource,
    names: Vec<String>,
    next: usize,
    current: Option<Box<dyn Read + Send + 'a>>,
}

impl Read for Concatenated<'_> {
    fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
        loop {
            if self.current.is_none() {
                let Some(name) = self.names.get(self.next) else { return Ok(0) };
                self.current = Some(self.source.open(name).map_err(io::Error::other)?);
                self.next += 1;
            }
            let count = self.current.as_mut().expect("a stream is open").read(buffer)?;
            if count > 0 || buffer.is_empty() {
                return Ok(count);
            }
            self.current = None;
        }
    }
}

/// The longest line [`Rebatch`] looks at, and the longest statement it makes.
const BATCH_LIMIT: usize = 1 << 20;

/// Merges the one-row `INSERT`s of a dump into statements of many rows as it is read,
/// so that a dump stored one row per line loads as fast as an extended-insert one.
/// Restores use it; so may anything else that feeds such a dump to a client.
///
/// Only lines between `mariadb-dump`'s `ALTER TABLE … DISABLE KEYS` and `ENABLE KEYS`
/// markers are touched (never the body of a routine or trigger), and only whole lines
/// of the form ``INSERT INTO `t` VALUES (…);``: consecutive ones of the same table
/// become ``INSERT INTO `t` VALUES (…),(…);``, each followed by a `COMMIT`. Lines
/// longer than `BATCH_LIMIT` (1 MiB) pass through in pieces, so memory stays bounded
/// whatever the rows hold.
pub struct Rebatch<R> {
    inner: BufReader<R>,
    line: Vec<u8>,
    /// A statement being built, without its final `;\n`.
    pending: Vec<u8>,
    /// The length of its `INSERT INTO `t` VALUES ` prefix.
    prefix: usize,
    in_data: bool,
    /// The last piece ended inside a line.
    inside_line: bool,
}

impl<R: Read> Rebatch<R> {
    /// Merges the rows of `inner`, a dump written by `mariadb-dump` or `mysqldump`.
    pub fn new(inner: R) -> Pieces<Self> {
        let rebatch = Rebatch {
            inner: BufReader::with_capacity(256 << 10, inner),
            line: Vec::new(),
            pending: Vec::new(),
            prefix: 0,
            in_data: false,
            inside_line: false,
        };
        Pieces::new(rebatch, Vec::new())
    }

    fn flush_pending(&mut self, out: &mut Vec<u8>) {
        if !self.pending.is_empty() {
            out.extend_from_slice(&self.pending);
            // `--no-autocommit` makes each table one transaction, which loads a third
            // slower than a transaction per statement; in autocommit this is a no-op.
            out.extend_from_slice(b";\nCOMMIT;\n");
            self.pending.clear();
        }
    }
}

impl<R: Read> Produce for Rebatch<R> {
    fn produce(&mut self, out: &mut Vec<u8>) -> io::Result<bool> {
        self.line.clear();
        if (&mut self.inner).take(BATCH_LIMIT as u64).read_until(b'\n', &mut self.line)? == 0 {
            self.flush_pending(out);
            return Ok(false);
        }
        let complete = self.line.ends_with(b"\n");
        let at_start = !self.inside_line;
        self.inside_line = !complete;
        if !(at_start && complete) {
            self.flush_pending(out);
            out.extend_from_slice(&self.line);
            return Ok(true);
        }
        if self.in_data {
            if let Some(prefix) = insert_prefix(&self.line) {
                let row = &self.line[prefix..self.line.len() - 2];
                let same_table = !self.pending.is_empty() && self.pending[..self.prefix] == self.line[..prefix];
                if same_table && self.pending.len() + 1 + row.len() <= BATCH_LIMIT {
                    self.pending.push(b',');
                    self.pending.extend_from_slice(row);
                } else {
                    self.flush_pending(out);
                    self.pending.extend_from_slice(&self.line[..self.line.len() - 2]);
                    self.prefix = prefix;
                }
                return Ok(true);
            }
            if self.line.starts_with(b"/*!40000 ALTER TABLE ") && self.line.ends_with(b" ENABLE KEYS */;\n") {
                self.in_data = false;
            }
        } else if self.line.starts_with(b"/*!40000 ALTER TABLE ") && self.line.ends_with(b" DISABLE KEYS */;\n") {
            self.in_data = true;
        }
        self.flush_pending(out);
        out.extend_from_slice(&self.line);
        Ok(true)
    }
}

/// For a line ``INSERT INTO `t` VALUES (…);\n``, the length of ``INSERT INTO `t` VALUES ``.
fn insert_prefix(line: &[u8]) -> Option<usize> {
    const START: &[u8] = b"INSERT INTO `";
    if !line.starts_with(START) || !line.ends_with(b");\n") {
        return None;
    }
    let mut index = START.len();
    loop {
        let quote = index + line[index..].iter().position(|&byte| byte == b'`')?;
        if line.get(quote + 1) == Some(&b'`') {
            index = quote + 2;
            continue;
        }
        let rest = &line[quote + 1..];
        return rest.starts_with(b" VALUES (").then_some(quote + 1 + b" VALUES ".len());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rebatched(input: &str) -> io::Result<String> {
        let mut out = String::new();
        Rebatch::new(input.as_bytes()).read_to_string(&mut out)?;
        Ok(out)
    }

    #[test]
    fn rows_of_a_table_are_merged_between_the_key_markers_only() -> io::Result<()> {
        let dump = "CREATE TABLE `t` (a int);\n\
                    INSERT INTO `t` VALUES (0);\n\
                    /*!40000 ALTER TABLE `t` DISABLE KEYS */;\n\
                    INSERT INTO `t` VALUES (1,'a);\\n');\n\
                    INSERT INTO `t` VALUES (2,NULL);\n\
                    INSERT INTO `a``b` VALUES (3);\n\
                    INSERT INTO `a``b` VALUES (4);\n\
                    /*!40000 ALTER TABLE `t` ENABLE KEYS */;\n\
                    INSERT INTO `t` VALUES (5);\n\
                    INSERT INTO `t` VALUES (6);\n";
        assert_eq!(
            rebatched(dump)?,
            "CREATE TABLE `t` (a int);\n\
             INSERT INTO `t` VALUES (0);\n\
             /*!40000 ALTER TABLE `t` DISABLE KEYS */;\n\
             INSERT INTO `t` VALUES (1,'a);\\n'),(2,NULL);\nCOMMIT;\n\
             INSERT INTO `a``b` VALUES (3),(4);\nCOMMIT;\n\
             /*!40000 ALTER TABLE `t` ENABLE KEYS */;\n\
             INSERT INTO `t` VALUES (5);\n\
             INSERT INTO `t` VALUES (6);\n"
        );
        Ok(())
    }

    #[test]
    fn long_lines_and_large_batches_stay_bounded() -> io::Result<()> {
        let big = "x".repeat(BATCH_LIMIT * 2);
        let mut dump = String::from("/*!40000 ALTER TABLE `t` DISABLE KEYS */;\n");
        for n in 0..40_000 {
            dump.push_str(&format!("INSERT INTO `t` VALUES ({n},'{}');\n", "y".repeat(50)));
        }
        dump.push_str(&format!("INSERT INTO `t` VALUES (1,'{big}');\nINSERT INTO `t` VALUES (2);\n"));
        let out = rebatched(&dump)?;
        assert!(out.lines().all(|line| line.len() <= BATCH_LIMIT || line.contains(&big)));
        assert!(out.lines().count() < 20, "{} statements", out.lines().count());
        let rows = out.matches("'yyyyy").count();
        assert_eq!(rows, 40_000);
        assert!(out.ends_with(&format!("INSERT INTO `t` VALUES (1,'{big}');\nINSERT INTO `t` VALUES (2);\nCOMMIT;\n")));
        Ok(())
    }

    #[test]
    fn a_dump_is_cut_where_each_table_starts_and_rejoins_whole() -> io::Result<()> {
        let dump = "-- MariaDB dump\n--\n-- Host: x\n\nSET NAMES utf8mb4;\n\n--\n\
                    -- Table structure for table `a`\n--\n\nCREATE TABLE `a` (x int);\n--\n-- Dumping data\n\
                    INSERT INTO `a` VALUES (1);\n\n--\n-- Table structure for table `b``c d`\n--\n\
                    CREATE TABLE `b``c d` (y int);\n--\n-- Dumping routines\n--\n";
        let mut parts = TableParts::new(dump.as_bytes());
        let mut found = Vec::new();
        for index in 0.. {
            if parts.finished() {
                break;
            }
            let name = parts.next_name(index);
            let mut text = String::new();
            parts.part().read_to_string(&mut text)?;
            found.push((name, text));
        }
        let names: Vec<&str> = found.iter().map(|(name, _)| name.as_str()).collect();
        assert_eq!(names, ["1-dump-000000.sql", "1-dump-000001-a.sql", "1-dump-000002-b%60c%20d.sql"]);
        assert!(found[1].1.starts_with("--\n-- Table structure for table `a`\n"), "{}", found[1].1);
        assert_eq!(found.iter().map(|(_, text)| text.as_str()).collect::<String>(), dump);
        Ok(())
    }

    #[test]
    fn versions_are_read_from_either_product() {
        let maria = ServerVersion::parse("10.11.19-MariaDB-0+deb12u1");
        assert_eq!(maria, ServerVersion { mariadb: true, major: 10, minor: 11 });
        assert_eq!(ServerVersion::parse("5.5.5-10.6.4-MariaDB"), ServerVersion { mariadb: true, major: 10, minor: 6 });
        assert_eq!(ServerVersion::parse("8.0.36"), ServerVersion { mariadb: false, major: 8, minor: 0 });
        assert_eq!(maria.to_string(), "MariaDB 10.11");
    }

    #[test]
    fn literals_survive_any_text() {
        assert_eq!(literal("a'b"), "CONVERT(X'612762' USING utf8mb4)");
        assert_eq!(identifier("a`b"), "`a``b`");
    }
}
