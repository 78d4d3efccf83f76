//! `type = "postgresql"`: one database, captured with `pg_dump` and restored with `psql`.
//!
//! # Capture
//!
//! A control session (`psql`) opens a read-only repeatable-read transaction, exports
//! its snapshot (`pg_export_snapshot()`), lists the tables and takes an `ACCESS SHARE`
//! lock on each, as `pg_dump -j` does: no `TRUNCATE` or `ALTER` can slip between the
//! snapshot and the reads. Every session waits at most `ENVSNAP_LOCK_TIMEOUT` seconds
//! (60 by default) for a lock; the control session, when it gives up, names the table
//! and the session that holds an `ACCESS EXCLUSIVE` lock on it. Then several tools read inside that one snapshot at once
//! (`--snapshot`), one per core plus one for the schema, each writing one stream:
//!
//! | stream | written by |
//! |---|---|
//! | `0-header.sql` | envsnap: a comment holding the server version, encoding and locale |
//! | `1-pre-data.sql` | `pg_dump --section=pre-data --section=data`, less the tables below: the schema, then small tables, sequences and large objects |
//! | `2-data-<schema>.<table>.sql` | `COPY <table> TO STDOUT` by `psql`, framed as `pg_dump --section=data -t <table>` frames it, for each table of 4 MiB or more |
//! | `2-data-<schema>.<table>.<n>.sql` | instead, for a table of 192 MiB or more (PostgreSQL 14+): `COPY` of the rows in one 128 MiB range of its blocks, read by a TID range scan |
//! | `3-post-data.sql` | `pg_dump --section=post-data`: indexes, constraints, triggers |
//!
//! Run in name order by `psql`, the streams rebuild the database (each sets up its own
//! session, as `pg_dump` output does). The `2-data` streams may also run at once, in
//! any order, since constraints and triggers come after them.
//!
//! Why this shape (measured with `bench/services-sql` on 2 cores):
//! - **A stream per large table** keeps a table's rows together, so a change to one
//!   table leaves the others' chunks as they were: after 1% of one table's rows of ten
//!   changed, the next snapshot stores that table's share of the first (10%); tables of
//!   a few rows share a stream, since such a table is smaller than one chunk. A large
//!   table is read by `psql`'s `COPY`, not by a `pg_dump --table` of its own, which
//!   would read the whole catalog first: 0.1 s of CPU more for each table, a third of
//!   a first snapshot's time on a database of ten tables of random rows.
//! - **Both cores.** `pg_dump` piped into the store is serial: the store waits while
//!   the server formats rows, then the reverse. Every stream is read ahead on a thread
//!   of its own, streams run at once, and a large table (a pgbench database is one) is
//!   read in block ranges by parallel `COPY`s. On a pgbench database of scale 20, one
//!   `pg_dump` into the store takes 1.5× the time `pg_dump` alone takes to write to
//!   `/dev/null`; a stream per table read ahead, 1.04–1.08×; block ranges, 1.0–1.04×,
//!   for 20% more CPU than one stream per table (`COPY (SELECT …)` costs the server more
//!   than `COPY table`, and each range is one more connection). Ranges are of a fixed
//!   number of blocks, so their boundaries stay put from one snapshot to the next.
//! - **`\restrict` keys.** Recent `pg_dump`s (13.22, 14.19, 15.14, 16.10, 17.6 and
//!   later) open and close their output with `\restrict <random key>`, which stops
//!   `psql` from running meta-commands smuggled into a dump. A new key at both ends of
//!   every stream makes two chunks of every stream new in every snapshot (4% of a
//!   pgbench snapshot stored again with nothing changed); envsnap removes the key lines
//!   as it stores a stream, and loads each stream inside `\restrict` with a fresh random
//!   key of its own, which protects the restore as well.
//!
//! # Restore
//!
//! First the dump's server version is checked against the target server's: a dump of
//! a newer major version is refused before anything is changed ([`Service::check_restore`]).
//! Then the target database is dropped (`WITH (FORCE)`, which ends the sessions
//! connected to it; before PostgreSQL 13, `pg_terminate_backend`) and created again from
//! `template0` with the dump's encoding and locale and the old database's owner, and
//! the streams are loaded by `psql -v ON_ERROR_STOP=1`, the data streams in parallel.
//!
//! Loading into a new database beside the target and renaming it into place would keep
//! the target whole if the load failed; it was measured and dropped: `DROP DATABASE`
//! forces a checkpoint, which then has to write out everything just loaded (1.2 s of a
//! 4.6 s restore of a pgbench database of scale 20, where `psql` alone took 3.0 s). A failed
//! restore is undone from the safety snapshot taken before it (`envsnap undo`).
//!
//! What the owner set on the database itself (its ICU or built-in locale, `ALTER
//! DATABASE … SET` settings, comment, connection limit and grants) is not in a dump
//! taken without `--create`, and a `--create` dump names the database it was taken
//! from. So the capture records it in the header ([`DatabaseProperties`]), and the
//! restore creates the database with the locale and sets the rest after the load, then
//! runs `ANALYZE`. Roles are not captured: they belong to the server (docs/SERVICES.md).

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::process::{ChildStdin, ChildStdout, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::connection::ConnectionUrl;
use super::process::{Cancellable, Tool, ToolError, default_workers, read_ahead, run_parallel};
use super::sql::{self, Advice, HEADER, LOCK_TIMEOUT_VARIABLE, Pieces, Produce, show_seconds, stream_error};
use super::{DumpSink, DumpSource, Service};
use crate::error::{Error, Result};

const PRE_DATA: &str = "1-pre-data.sql";
const POST_DATA: &str = "3-post-data.sql";
/// The version of the stream layout above, recorded in the header.
const LAYOUT_FORMAT: u32 = 1;

/// libpq's connection parameters that a URL's query may set, and the environment
/// variable that passes each to the tools.
const PARAMETERS: &[(&str, &str)] = &[
    ("host", "PGHOST"),
    ("hostaddr", "PGHOSTADDR"),
    ("port", "PGPORT"),
    ("user", "PGUSER"),
    ("password", "PGPASSWORD"),
    ("passfile", "PGPASSFILE"),
    ("service", "PGSERVICE"),
    ("options", "PGOPTIONS"),
    ("application_name", "PGAPPNAME"),
    ("connect_timeout", "PGCONNECT_TIMEOUT"),
    ("sslmode", "PGSSLMODE"),
    ("sslcert", "PGSSLCERT"),
    ("sslkey", "PGSSLKEY"),
    ("sslrootcert", "PGSSLROOTCERT"),
    ("sslcrl", "PGSSLCRL"),
    ("gssencmode", "PGGSSENCMODE"),
    ("target_session_attrs", "PGTARGETSESSIONATTRS"),
];

/// How a capture cuts a database into streams, and how many tools run at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DumpLayout {
    /// Tools run at once, at capture and at restore.
    pub workers: usize,
    /// A table whose on-disk size is at least this many bytes gets a stream of its own.
    pub own_stream_from: u64,
    /// A table whose heap holds at least one and a half times this many bytes is read
    /// in ranges of blocks of this many bytes (the last range takes the rest), one
    /// stream each (servers of version 14 and later).
    pub piece_size: u64,
}

impl Default for DumpLayout {
    fn default() -> Self {
        DumpLayout { workers: default_workers(), own_stream_from: 4 << 20, piece_size: 128 << 20 }
    }
}

/// A PostgreSQL database.
#[derive(Debug, Clone)]
pub struct PostgresService {
    name: String,
    url: ConnectionUrl,
    address: String,
    layout: DumpLayout,
    /// Whether a restore keeps the dump's owners (`ALTER … OWNER TO`); see
    /// [`Service::restore_without_owners`].
    owners: bool,
}

/// What the header stream records about the captured database.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Header {
    /// [`LAYOUT_FORMAT`].
    format: u32,
    /// `server_version_num`, e.g. 150020.
    server_version_num: u32,
    /// `server_version`, for people.
    server_version: String,
    /// The database captured.
    database: String,
    /// Its encoding, e.g. `UTF8`, given to the database a restore creates.
    encoding: String,
    /// Its `LC_COLLATE`, likewise.
    collate: String,
    /// Its `LC_CTYPE`, likewise.
    ctype: String,
    /// Its locale provider, `c` (libc), `i` (ICU, PostgreSQL 15 and later) or `b`
    /// (built in, 17 and later); none in a dump of an older server or envsnap.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    locale_provider: Option<String>,
    /// The ICU or built-in locale, for those providers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    locale: Option<String>,
    /// ICU's tailoring rules (16 and later).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    icu_rules: Option<String>,
    /// What its owner set on it, beyond the dump.
    #[serde(default)]
    properties: DatabaseProperties,
}

/// What the owner of a database set on the database itself, which `pg_dump` leaves
/// out of a dump taken without `--create`: a restore sets it on the new database, with
/// the target's name (a `--create` dump names the database it was taken from).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct DatabaseProperties {
    /// The owner's name on the server the dump was taken from.
    #[serde(default)]
    owner: String,
    /// `ALTER DATABASE … SET` settings, as `name=value`.
    #[serde(default)]
    settings: Vec<String>,
    /// `COMMENT ON DATABASE`.
    #[serde(default)]
    comment: Option<String>,
    /// `CONNECTION LIMIT`, -1 for none.
    #[serde(default = "no_limit")]
    connection_limit: i64,
    /// The grants on the database (`CONNECT`, `CREATE`, `TEMPORARY`); `None` while they
    /// are the defaults.
    #[serde(default)]
    grants: Option<Vec<Grant>>,
}

fn no_limit() -> i64 {
    -1
}

/// One privilege on a database granted to a role, or to `PUBLIC` when `grantee` is `None`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Grant {
    grantee: Option<String>,
    privilege: String,
    grantable: bool,
}

impl Header {
    fn to_sql(&self) -> String {
        sql::header_text(
            &format!(
                "envsnap PostgreSQL dump of database {:?}: the other streams, run by psql in name order, rebuild it.",
                self.database
            ),
            self,
        )
    }
}

/// What a restore needs to know of the target server.
#[derive(Debug, Clone, Deserialize)]
struct Target {
    /// `server_version_num`.
    version: u32,
    /// The owner of the target database, if it exists: the new one gets the same.
    owner: Option<String>,
}

/// One table, as the control session lists it.
#[derive(Debug, Clone, Deserialize)]
struct Table {
    oid: u32,
    schema: String,
    name: String,
    /// `pg_table_size`: heap, TOAST and maps.
    size: u64,
    /// Heap blocks.
    blocks: u64,
    /// Whether the dump's user may read it (if not, `pg_dump` says so).
    readable: bool,
    /// Whether it belongs to an extension (then `pg_dump` decides what to dump of it).
    extension: bool,
}

/// Heap blocks `from..to` of a table (to the end when `to` is `None`).
#[derive(Debug, Clone, Copy)]
struct Blocks {
    from: u64,
    to: Option<u64>,
}

/// One stream to write, and how.
#[derive(Debug, Clone)]
enum Job {
    /// `pg_dump --section=…`, with extra arguments.
    Dump { stream: String, section: &'static str, arguments: Vec<String>, estimate: u64 },
    /// `COPY` of a table's rows through `psql`: all of them, or those in a range of
    /// blocks. For a whole table this is what `pg_dump --table` writes, without the
    /// catalog reads of one more `pg_dump` (a tenth of a second of CPU each).
    Rows { stream: String, table: String, columns: String, blocks: Option<Blocks>, estimate: u64 },
}

impl Job {
    fn estimate(&self) -> u64 {
        match self {
            Job::Dump { estimate, .. } | Job::Rows { estimate, .. } => *estimate,
        }
    }
}

impl PostgresService {
    /// The service `name` at `url` (`postgresql://[user[:password]@]host[:port]/database[?param=value…]`,
    /// where a parameter is one of libpq's, e.g. `sslmode`).
    pub fn new(name: &str, url: &str) -> Result<Self> {
        let invalid = |detail: String| Error::ServiceFailed {
            name: name.to_owned(),
            address: "postgresql".to_owned(),
            detail: format!("{detail}; fix `url` in envsnap.toml"),
        };
        let url = ConnectionUrl::parse(url, &["postgresql", "postgres"]).map_err(invalid)?;
        if let Some((key, _)) = url.parameters.iter().find(|(key, _)| !PARAMETERS.iter().any(|(known, _)| known == key))
        {
            let known: Vec<&str> = PARAMETERS.iter().map(|(known, _)| *known).collect();
            return Err(invalid(format!(
                "`url` has a parameter `{key}` that libpq does not know (known: {})",
                known.join(", ")
            )));
        }
        let parameter =
            |wanted: &str| url.parameters.iter().find(|(key, _)| key == wanted).map(|(_, value)| value.clone());
        let local = parameter("host").unwrap_or_else(|| "local socket".to_owned());
        let mut address = url.address(5432, &local);
        if url.port.is_none()
            && let Some(port) = parameter("port")
        {
            address = address.replacen(":5432/", &format!(":{port}/"), 1);
        }
        Ok(PostgresService { name: name.to_owned(), url, address, layout: DumpLayout::default(), owners: true })
    }

    /// The same service, cutting its dumps as `layout` says.
    #[must_use]
    pub fn with_layout(mut self, layout: DumpLayout) -> Self {
        self.layout = layout;
        self
    }

    /// `program` (a libpq tool) set to connect to `database`, with stdin and stdout closed.
    fn command(&self, program: &str, database: &str) -> Command {
        let mut command = Command::new(installed(program));
        command
            .env("PGDATABASE", database)
            .env("PGAPPNAME", "envsnap")
            .env("PGCONNECT_TIMEOUT", "10")
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        if let Some(host) = &self.url.host {
            command.env("PGHOST", host);
        }
        if let Some(port) = self.url.port {
            command.env("PGPORT", port.to_string());
        }
        if let Some(user) = &self.url.user {
            command.env("PGUSER", user);
        }
        // Through the environment, where other users cannot see it, never argv.
        if let Some(password) = &self.url.password {
            command.env("PGPASSWORD", password);
        }
        for (key, value) in &self.url.parameters {
            if let Some((_, variable)) = PARAMETERS.iter().find(|(known, _)| known == key) {
                command.env(variable, value);
            }
        }
        // Never wait for a password typed at a terminal.
        command.arg("--no-password");
        command
    }

    /// `psql` on `database`, stopping at the first error, printing rows bare.
    fn psql(&self, database: &str) -> Command {
        let mut command = self.command("psql", database);
        command.args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"]);
        command
    }

    fn failed(&self, detail: String) -> Error {
        Error::ServiceFailed { name: self.name.clone(), address: self.address.clone(), detail }
    }

    fn tool_failed(&self, error: ToolError) -> Error {
        self.failed(ADVICE.describe(error))
    }

    /// The database the admin commands connect to: not the target, which they drop.
    fn maintenance_database(&self) -> &'static str {
        if self.url.database == "postgres" { "template1" } else { "postgres" }
    }

    /// Runs `statements` one by one (each in its own transaction) on the maintenance
    /// database; returns what they printed.
    fn admin(&self, statements: &[String]) -> Result<String> {
        match self.admin_on(self.maintenance_database(), statements) {
            // A server without a `postgres` database still has template1.
            Err(ToolError::Failed { stderr, .. }) if stderr.contains("database \"postgres\" does not exist") => {
                self.admin_on("template1", statements).map_err(|error| self.tool_failed(error))
            }
            result => result.map_err(|error| self.tool_failed(error)),
        }
    }

    fn admin_on(&self, database: &str, statements: &[String]) -> Result<String, ToolError> {
        let mut command = self.psql(database);
        for statement in statements {
            command.arg("-c").arg(statement);
        }
        command.stdout(Stdio::piped());
        let mut tool = Tool::start("psql", &mut command)?;
        let mut output = Vec::new();
        let read = tool.stdout().map(|mut stdout| stdout.read_to_end(&mut output));
        tool.finish()?;
        if let Some(Err(error)) = read {
            return Err(ToolError::Io { program: "psql".to_owned(), error });
        }
        Ok(String::from_utf8_lossy(&output).into_owned())
    }

    /// Reads the dump's header and what the restore needs to know of the target server
    /// (one query); refuses a dump of a newer major version than the server's.
    fn prepare_restore(&self, source: &dyn DumpSource) -> Result<(Header, Target)> {
        let header = self.read_header(source)?;
        let answer = self.admin(&[format!(
            "SELECT json_build_object('version', current_setting('server_version_num')::int, 'owner', \
             (SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = {}))::text",
            quote_literal(&self.url.database)
        )])?;
        let target: Target = parse_json(answer.trim()).map_err(|error| self.failed(error))?;
        if major(header.server_version_num) > major(target.version) {
            return Err(self.failed(format!(
                "the snapshot holds a dump of PostgreSQL {} ({}), newer than this server's {}: PostgreSQL cannot load \
                 it into an older version; nothing was changed; restore it into a server of version {} or newer",
                show_major(header.server_version_num),
                header.server_version,
                show_major(target.version),
                show_major(header.server_version_num)
            )));
        }
        let needs = match (header.locale_provider.as_deref(), &header.icu_rules) {
            (Some("i"), Some(_)) => Some(("ICU rules", 160_000)),
            (Some("i"), None) => Some(("an ICU locale", 150_000)),
            (Some("b"), _) => Some(("the built-in locale provider", 170_000)),
            _ => None,
        };
        if let Some((what, version)) = needs
            && target.version < version
        {
            return Err(self.failed(format!(
                "the snapshot's database uses {what} ({}), which a database of PostgreSQL {} cannot have; nothing \
                 was changed; restore it into a server of version {} or newer",
                header.locale.as_deref().unwrap_or_default(),
                show_major(target.version),
                show_major(version)
            )));
        }
        Ok((header, target))
    }

    /// `CREATE DATABASE` of the target with the dump's encoding and locale.
    fn create_statement(&self, header: &Header, owner: Option<&String>) -> String {
        let mut create = format!(
            "CREATE DATABASE {} TEMPLATE template0 ENCODING {} LC_COLLATE {} LC_CTYPE {}",
            quote_ident(&self.url.database),
            quote_literal(&header.encoding),
            quote_literal(&header.collate),
            quote_literal(&header.ctype)
        );
        let locale = header.locale.as_deref().unwrap_or_default();
        match header.locale_provider.as_deref() {
            Some("i") => {
                create.push_str(&format!(" LOCALE_PROVIDER icu ICU_LOCALE {}", quote_literal(locale)));
                if let Some(rules) = &header.icu_rules {
                    create.push_str(&format!(" ICU_RULES {}", quote_literal(rules)));
                }
            }
            Some("b") => create.push_str(&format!(" LOCALE_PROVIDER builtin BUILTIN_LOCALE {}", quote_literal(locale))),
            _ => {}
        }
        if let Some(owner) = owner {
            create.push_str(&format!(" OWNER {}", quote_ident(owner)));
        }
        create
    }

    /// What the owner had set on the database, set again on the loaded one: its
    /// comment, connection limit, grants (to the roles this server has) and settings,
    /// last, so that none of them (`default_transaction_read_only`) gets in the load's way.
    fn properties_statements(&self, properties: &DatabaseProperties) -> Result<Vec<String>> {
        let database = quote_ident(&self.url.database);
        let mut statements = Vec::new();
        if let Some(comment) = &properties.comment {
            statements.push(format!("COMMENT ON DATABASE {database} IS {}", quote_literal(comment)));
        }
        if properties.connection_limit != -1 {
            statements.push(format!("ALTER DATABASE {database} CONNECTION LIMIT {}", properties.connection_limit));
        }
        if let Some(grants) = &properties.grants {
            // The owner keeps every privilege, as a new database's owner has; the others'
            // are the dump's. A role this server lacks is left out: roles belong to the
            // server, not to a database's dump (see docs/SERVICES.md).
            let names: Vec<String> = grants
                .iter()
                .filter_map(|grant| grant.grantee.as_deref())
                .filter(|grantee| *grantee != properties.owner)
                .map(quote_literal)
                .collect();
            let existing: Vec<String> = if names.is_empty() {
                Vec::new()
            } else {
                let answer = self.admin(&[format!(
                    "SELECT coalesce(json_agg(rolname), '[]')::text FROM pg_roles WHERE rolname IN ({})",
                    names.join(", ")
                )])?;
                parse_json(answer.trim()).map_err(|error| self.failed(error))?
            };
            statements.push(format!("REVOKE ALL ON DATABASE {database} FROM PUBLIC"));
            for grant in grants {
                let grantee = match &grant.grantee {
                    None => "PUBLIC".to_owned(),
                    Some(grantee) if *grantee == properties.owner || !existing.contains(grantee) => continue,
                    Some(grantee) => quote_ident(grantee),
                };
                let option = if grant.grantable { " WITH GRANT OPTION" } else { "" };
                if ["CONNECT", "CREATE", "TEMPORARY"].contains(&grant.privilege.as_str()) {
                    statements.push(format!("GRANT {} ON DATABASE {database} TO {grantee}{option}", grant.privilege));
                }
            }
        }
        for setting in &properties.settings {
            let Some((name, value)) = setting.split_once('=') else { continue };
            statements.push(format!(
                "ALTER DATABASE {database} SET {} TO {}",
                quote_ident(name),
                setting_value(name, value)
            ));
        }
        Ok(statements)
    }

    fn read_header(&self, source: &dyn DumpSource) -> Result<Header> {
        sql::read_header(source, "postgresql", LAYOUT_FORMAT, |detail| self.failed(detail))
    }

    /// Writes one stream of the capture.
    fn dump(&self, job: &Job, context: &DumpContext, sink: &dyn DumpSink, cancel: &Arc<AtomicBool>) -> Result<()> {
        let DumpContext { snapshot, encoding, lock_timeout } = context;
        let lock_timeout = lock_timeout.as_millis();
        let (stream, mut command, program) = match job {
            Job::Dump { stream, section, arguments, .. } => {
                let mut command = self.command("pg_dump", &self.url.database);
                command
                    .arg(format!("--section={section}"))
                    .arg(format!("--snapshot={snapshot}"))
                    // The control session holds every table's lock: a lock still awaited after
                    // this long is queued behind someone's ACCESS EXCLUSIVE that waits for it.
                    .arg(format!("--lock-wait-timeout={lock_timeout}ms"))
                    .args(arguments);
                (stream, command, "pg_dump")
            }
            Job::Rows { stream, table, columns, blocks, .. } => {
                let mut command = self.psql(&self.url.database);
                let copy = match blocks {
                    None => format!("COPY {table} ({columns}) TO STDOUT"),
                    Some(Blocks { from, to }) => {
                        let upper = to.map(|to| format!(" AND ctid < '({to},0)'::tid")).unwrap_or_default();
                        format!(
                            "COPY (SELECT {columns} FROM ONLY {table} WHERE ctid >= '({from},0)'::tid{upper}) TO STDOUT"
                        )
                    }
                };
                command
                    .env("PGCLIENTENCODING", encoding)
                    // As pg_dump reads: values that load back exactly, and all rows or an error.
                    .args(["-c", "SET DateStyle = ISO; SET IntervalStyle = postgres; SET extra_float_digits = 3"])
                    .arg("-c")
                    .arg(format!(
                        "SET row_security = off; SET statement_timeout = 0; SET lock_timeout = '{lock_timeout}ms'"
                    ))
                    .args(["-c", "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY"])
                    .arg("-c")
                    .arg(format!("SET TRANSACTION SNAPSHOT {}", quote_literal(snapshot)))
                    .arg("-c")
                    .arg(copy)
                    .args(["-c", "COMMIT"]);
                (stream, command, "psql")
            }
        };
        command.stdout(Stdio::piped());
        let mut tool = Tool::start(program, &mut command).map_err(|error| self.tool_failed(error))?;
        let stdout = tool.stdout().expect("stdout is piped");
        let stored = match job {
            Job::Dump { .. } => sink.add(stream, &mut RestrictFilter::new(read_ahead(stdout, cancel.clone()))),
            Job::Rows { table, columns, blocks, .. } => {
                let range = match blocks {
                    None => String::new(),
                    Some(Blocks { from, to: None }) => format!(" in blocks {from} and on"),
                    Some(Blocks { from, to: Some(to) }) => format!(" in blocks {from} to {}", to - 1),
                };
                let head = format!(
                    "--\n-- envsnap: rows of {table}{range}\n--\n\n\
                     SET statement_timeout = 0;\nSET lock_timeout = 0;\nSET client_encoding = {};\n\
                     SET standard_conforming_strings = on;\nSELECT pg_catalog.set_config('search_path', '', false);\n\
                     SET row_security = off;\n\nCOPY {table} ({columns}) FROM stdin;\n",
                    quote_literal(encoding)
                );
                let mut reader = io::Cursor::new(head).chain(read_ahead(stdout, cancel.clone())).chain(&b"\\.\n"[..]);
                sink.add(stream, &mut reader)
            }
        };
        if stored.is_err() {
            // The stream is abandoned (the store failed, or another stream did): stop the tool.
            tool.kill();
        }
        match (tool.finish(), stored) {
            // The tool's own failure explains a short stream better than the store can.
            (Err(error), Ok(())) => Err(self.tool_failed(error)),
            (_, stored) => stored,
        }
    }

    /// Takes the control session's `ACCESS SHARE` lock on every table to dump, waiting
    /// at most `timeout` for a lock another session holds; then names that session.
    fn lock_tables(&self, session: &mut Session, tables: &[String], timeout: Duration) -> Result<()> {
        let names: Vec<String> = tables.iter().map(|name| format!("ONLY {name}")).collect();
        session.send(&format!("LOCK TABLE {} IN ACCESS SHARE MODE;", names.join(", ")))?;
        // Any error of the lock shows here, before a dump starts.
        self.unless_locked_out(session.query("SELECT 1"), timeout).map(drop)
    }

    /// `result` of the control session, whose statements wait at most `timeout` for a
    /// lock (`pg_table_size` waits as `LOCK TABLE` does): a lock not granted in time is
    /// explained.
    fn unless_locked_out<T>(&self, result: Result<T>, timeout: Duration) -> Result<T> {
        match result {
            Err(Error::ServiceFailed { detail, .. }) if detail.contains("canceling statement due to lock timeout") => {
                Err(self.failed(self.lock_wait(timeout)))
            }
            other => other,
        }
    }

    /// Why a lock was not granted in time, in words: the sessions that hold or wait for
    /// an `ACCESS EXCLUSIVE` lock on a table of the database, and what to do.
    fn lock_wait(&self, timeout: Duration) -> String {
        let holders = self
            .admin_on(&self.url.database, &[BLOCKERS_QUERY.to_owned()])
            .ok()
            .and_then(|text| serde_json::from_str::<Vec<Blocker>>(text.trim()).ok())
            .unwrap_or_default();
        let waited = show_seconds(timeout);
        let advice = format!(
            "nothing was captured; let that session finish, or end it, then take the snapshot again \
             ({LOCK_TIMEOUT_VARIABLE} sets how many seconds a snapshot waits for a lock, now {waited})"
        );
        let Some(first) = holders.first() else {
            return format!(
                "waited {waited} for an ACCESS SHARE lock on the tables to dump: another session held or awaited a \
                 lock that conflicts (ACCESS EXCLUSIVE, taken by ALTER TABLE, TRUNCATE, DROP, VACUUM FULL or LOCK \
                 TABLE); {advice}"
            );
        };
        let others = holders.len() - 1;
        let others = if others == 0 { String::new() } else { format!(" (and {others} more)") };
        let how = if first.granted { "holds" } else { "waits for" };
        format!(
            "waited {waited} for an ACCESS SHARE lock on table {}: session {} ({}, {}, for {} s: `{}`) {how} an ACCESS \
             EXCLUSIVE lock on it{others}, which lets no one read the table; {advice}: \
             `SELECT pg_terminate_backend({})`",
            first.table, first.pid, first.application, first.state, first.since, first.query, first.pid
        )
    }

    /// Loads one stream into `database` through `psql`.
    fn load(
        &self,
        source: &dyn DumpSource,
        stream: &str,
        database: &str,
        restrict: bool,
        cancel: &AtomicBool,
    ) -> Result<()> {
        let mut input = source.open(stream)?;
        if !self.owners && !stream.starts_with("2-data") {
            input = Box::new(OwnerFilter::new(input));
        }
        let mut command = self.psql(database);
        command.stdin(Stdio::piped());
        let mut tool = Tool::start("psql", &mut command).map_err(|error| self.tool_failed(error))?;
        let mut stdin = tool.stdin().expect("stdin is piped");
        let copied = copy_restricted(input, &mut stdin, restrict, cancel);
        drop(stdin);
        match copied {
            Ok(()) => tool.finish().map_err(|error| self.load_failed(error)),
            // psql stopped reading: it died or its session was ended, and says why.
            Err(error) if error.kind() == io::ErrorKind::BrokenPipe => match tool.finish() {
                Err(failure) => Err(self.load_failed(failure)),
                Ok(()) => Err(self.failed(format!("psql stopped reading `{stream}` before its end: {error}"))),
            },
            // The stream could not be read, or another stream failed: psql must not take
            // what it was given so far for the whole stream, so it is stopped, not
            // told the stream ended.
            Err(error) => {
                tool.kill();
                drop(tool);
                Err(match stream_error(error, stream) {
                    Error::Io { source, .. } => self.failed(format!("reading `{stream}` for psql: {source}")),
                    other => other,
                })
            }
        }
    }

    /// A load that failed, in words: a role the dump names that this server lacks is
    /// the owner of objects in the dump (or a grantee), not the user in `url`.
    fn load_failed(&self, error: ToolError) -> Error {
        if let ToolError::Failed { stderr, .. } = &error
            && !stderr.contains("FATAL:")
            && let Some(role) = missing_role(stderr)
        {
            return self.failed(format!(
                "the dump names role `{role}`, the owner of objects in it (or a role granted rights on them), and \
                 this server has no such role (roles are not in a snapshot): create it (`CREATE ROLE {}`), or \
                 restore with --no-owner to give every object to the user in `url`; psql said: {}",
                quote_ident(&role),
                stderr.lines().rev().find(|line| line.contains("does not exist")).unwrap_or_default().trim()
            ));
        }
        self.tool_failed(error)
    }

    fn drop_statements(&self, database: &str, server: u32) -> Vec<String> {
        if server >= 130_000 {
            vec![format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", quote_ident(database))]
        } else {
            vec![
                format!(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = {} AND pid <> pg_backend_pid()",
                    quote_literal(database)
                ),
                format!("DROP DATABASE IF EXISTS {}", quote_ident(database)),
            ]
        }
    }

    fn load_all(&self, source: &dyn DumpSource, database: &str) -> Result<()> {
        let restrict = psql_supports_restrict();
        let names = source.names();
        let unknown = names
            .iter()
            .find(|name| ![HEADER, PRE_DATA, POST_DATA].contains(&name.as_str()) && !name.starts_with("2-data"));
        if let Some(unknown) = unknown {
            return Err(self.failed(format!("the dump holds a stream `{unknown}` that this envsnap does not know")));
        }
        let never = AtomicBool::new(false);
        if names.iter().any(|name| name == PRE_DATA) {
            self.load(source, PRE_DATA, database, restrict, &never)?;
        }
        let data: Vec<&String> = names.iter().filter(|name| name.starts_with("2-data")).collect();
        run_parallel(&data, self.layout.workers, |stream, cancel| {
            self.load(source, stream, database, restrict, cancel)
        })?;
        if names.iter().any(|name| name == POST_DATA) {
            self.load(source, POST_DATA, database, restrict, &never)?;
        }
        Ok(())
    }
}

/// What every stream of one capture shares.
struct DumpContext {
    /// The exported snapshot the streams read in.
    snapshot: String,
    /// The database's encoding.
    encoding: String,
    /// How long a tool waits for a lock ([`sql::lock_timeout`]).
    lock_timeout: Duration,
}

/// A session that holds or waits for an `ACCESS EXCLUSIVE` lock on a table.
#[derive(Debug, Deserialize)]
struct Blocker {
    table: String,
    pid: i64,
    granted: bool,
    application: String,
    state: String,
    /// Seconds since its transaction started.
    since: i64,
    query: String,
}

/// The sessions that hold or wait for an `ACCESS EXCLUSIVE` lock on a table of the
/// current database, oldest first (the one everybody waits for).
const BLOCKERS_QUERY: &str = "SELECT coalesce(json_agg(json_build_object('table', l.relation::regclass::text, \
     'pid', l.pid, 'granted', l.granted, 'application', coalesce(nullif(a.application_name, ''), 'no application name'), \
     'state', coalesce(a.state, 'unknown state'), \
     'since', coalesce(extract(epoch FROM now() - coalesce(a.xact_start, a.backend_start))::bigint, 0), \
     'query', left(regexp_replace(coalesce(a.query, ''), '\\s+', ' ', 'g'), 200)) \
     ORDER BY l.granted DESC, a.xact_start), '[]')::text \
     FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid \
     WHERE l.locktype = 'relation' AND l.mode = 'AccessExclusiveLock' AND l.pid <> pg_backend_pid() \
     AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())";

impl Service for PostgresService {
    fn address(&self) -> String {
        self.address.clone()
    }

    fn exists(&self) -> Result<bool> {
        let count = self.admin(&[format!(
            "SELECT count(*) FROM pg_database WHERE datname = {}",
            quote_literal(&self.url.database)
        )])?;
        Ok(count.trim() != "0")
    }

    fn capture(&self, sink: &dyn DumpSink) -> Result<()> {
        let lock_timeout = sql::lock_timeout(|detail| self.failed(detail))?;
        let mut session = Session::open(self)?;
        let version: u32 = session.query("SHOW server_version_num")?.trim().parse().unwrap_or(0);
        if version >= 90_600 {
            // A long dump keeps this session idle in its transaction.
            session.send("SET idle_in_transaction_session_timeout = 0;")?;
        }
        // Reading a table's size waits for its lock as LOCK TABLE does: every statement
        // of the session waits at most this long.
        session.send(&format!("SET lock_timeout = '{}ms';", lock_timeout.as_millis()))?;
        session.send("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY;")?;
        let snapshot = session.query("SELECT pg_export_snapshot()")?.trim().to_owned();
        if snapshot.is_empty() || !snapshot.bytes().all(|byte| byte.is_ascii_hexdigit() || byte == b'-') {
            return Err(self.failed(format!("the server gave `{snapshot}` as a snapshot id")));
        }
        let info: serde_json::Value = parse_json(&session.query(INFO_QUERY)?).map_err(|error| self.failed(error))?;
        let text = |key: &str| info[key].as_str().unwrap_or_default().to_owned();
        let header = Header {
            format: LAYOUT_FORMAT,
            server_version_num: version,
            server_version: text("version"),
            database: self.url.database.clone(),
            encoding: text("encoding"),
            collate: text("collate"),
            ctype: text("ctype"),
            locale_provider: info["provider"].as_str().map(str::to_owned),
            locale: info["locale"].as_str().map(str::to_owned),
            icu_rules: info["icu_rules"].as_str().map(str::to_owned),
            properties: serde_json::from_value(info["properties"].clone())
                .map_err(|error| self.failed(format!("cannot read the database's properties: {error}")))?,
        };
        let block_size = info["block_size"].as_u64().unwrap_or(8192).max(1);
        let tables = self.unless_locked_out(session.query(TABLES_QUERY), lock_timeout)?;
        let tables: Vec<Table> = parse_json(&tables).map_err(|error| self.failed(error))?;
        let readable: Vec<String> = tables.iter().filter(|table| table.readable).map(Table::qualified).collect();
        if !readable.is_empty() {
            self.lock_tables(&mut session, &readable, lock_timeout)?;
        }
        let jobs = self.plan(&mut session, &tables, version, block_size)?;
        sink.add(HEADER, &mut header.to_sql().as_bytes())?;
        let context = DumpContext { snapshot, encoding: header.encoding.clone(), lock_timeout };
        run_parallel(&jobs, self.layout.workers + 1, |job, cancel| self.dump(job, &context, sink, cancel))?;
        session.close()
    }

    fn check_restore(&self, source: &dyn DumpSource) -> Result<()> {
        self.prepare_restore(source).map(drop)
    }

    fn other_sessions(&self) -> Result<Option<u64>> {
        let count = self.admin(&[format!(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = {} AND pid <> pg_backend_pid()",
            quote_literal(&self.url.database)
        )])?;
        Ok(Some(count.trim().parse().unwrap_or(0)))
    }

    fn restore_without_owners(&mut self) {
        self.owners = false;
    }

    fn restore(&self, source: &dyn DumpSource) -> Result<()> {
        let (header, target) = self.prepare_restore(source)?;
        let database = &self.url.database;
        let mut statements = self.drop_statements(database, target.version);
        statements.push(self.create_statement(&header, target.owner.as_ref()));
        self.admin(&statements)?;
        self.load_all(source, database)?;
        // A new database has no statistics until autovacuum gets to it: the planner
        // would guess at every table meanwhile.
        self.admin_on(database, &["ANALYZE".to_owned()]).map_err(|error| self.tool_failed(error))?;
        let properties = self.properties_statements(&header.properties)?;
        if !properties.is_empty() {
            self.admin(&properties)?;
        }
        Ok(())
    }
}

impl PostgresService {
    /// The streams of a capture, largest first so that the workers finish together.
    fn plan(&self, session: &mut Session, tables: &[Table], version: u32, block_size: u64) -> Result<Vec<Job>> {
        let mut jobs = Vec::new();
        let mut excluded = Vec::new();
        let piece_blocks = (self.layout.piece_size / block_size).max(1);
        for table in tables {
            if !table.readable || table.extension || table.size < self.layout.own_stream_from {
                continue;
            }
            let stream_base = stream_name(&table.schema, &table.name);
            let pattern = table.pattern();
            excluded.push(format!("--exclude-table-data={pattern}"));
            let query = format!(
                "SELECT to_jsonb(coalesce(string_agg(quote_ident(attname), ', ' ORDER BY attnum), ''))::text \
                 FROM pg_attribute WHERE attrelid = {} AND attnum > 0 AND NOT attisdropped AND attgenerated = ''",
                table.oid
            );
            let columns = parse_json::<String>(&session.query(&query)?).map_err(|error| self.failed(error))?;
            if columns.is_empty() {
                // No columns to list (rows of nothing): pg_dump knows how to write that.
                jobs.push(Job::Dump {
                    stream: format!("{stream_base}.sql"),
                    section: "data",
                    arguments: vec![format!("--table={pattern}")],
                    estimate: table.size,
                });
                continue;
            }
            // TID range scans (version 14) read a range of blocks without reading the rest.
            // A remainder of less than half a piece goes with the last piece.
            let pieces = (table.blocks + piece_blocks / 2) / piece_blocks;
            if version < 140_000 || pieces < 2 {
                jobs.push(Job::Rows {
                    stream: format!("{stream_base}.sql"),
                    table: table.qualified(),
                    columns,
                    blocks: None,
                    estimate: table.size,
                });
                continue;
            }
            for piece in 0..pieces {
                let from = piece * piece_blocks;
                let to = (piece + 1 < pieces).then_some(from + piece_blocks);
                jobs.push(Job::Rows {
                    stream: format!("{stream_base}.{piece:04}.sql"),
                    table: table.qualified(),
                    columns: columns.clone(),
                    blocks: Some(Blocks { from, to }),
                    estimate: table.size / pieces,
                });
            }
        }
        jobs.sort_by_key(|job| std::cmp::Reverse(job.estimate()));
        // The schema first, on the extra worker that `capture` adds, so that it is done
        // by the time the large streams finish. The data of small tables rides with the
        // schema: one pg_dump fewer.
        excluded.push("--section=data".to_owned());
        let schema = [
            Job::Dump { stream: PRE_DATA.to_owned(), section: "pre-data", arguments: excluded, estimate: 0 },
            Job::Dump { stream: POST_DATA.to_owned(), section: "post-data", arguments: Vec::new(), estimate: 0 },
        ];
        jobs.splice(0..0, schema);
        Ok(jobs)
    }
}

/// The server and the database. The locale columns are read through `to_jsonb`, as
/// their names changed between versions (`daticulocale` became `datlocale` in 17).
const INFO_QUERY: &str = "SELECT json_build_object('version', current_setting('server_version'), \
     'encoding', pg_encoding_to_char(encoding), 'collate', datcollate, 'ctype', datctype, \
     'block_size', current_setting('block_size')::int, \
     'provider', to_jsonb(d) ->> 'datlocprovider', \
     'locale', coalesce(to_jsonb(d) ->> 'datlocale', to_jsonb(d) ->> 'daticulocale'), \
     'icu_rules', to_jsonb(d) ->> 'daticurules', \
     'properties', json_build_object('owner', pg_get_userbyid(d.datdba), 'connection_limit', d.datconnlimit, \
     'comment', shobj_description(d.oid, 'pg_database'), \
     'settings', coalesce((SELECT to_json(setconfig) FROM pg_db_role_setting \
     WHERE setdatabase = d.oid AND setrole = 0), '[]'), \
     'grants', (SELECT json_agg(json_build_object('grantee', \
     CASE WHEN a.grantee = 0 THEN NULL ELSE pg_get_userbyid(a.grantee) END, \
     'privilege', a.privilege_type, 'grantable', a.is_grantable)) FROM aclexplode(d.datacl) a)))::text \
     FROM pg_database d WHERE datname = current_database()";

/// Every table that holds rows, with what the plan needs to know of it.
const TABLES_QUERY: &str = "SELECT coalesce(jsonb_agg(jsonb_build_object('oid', c.oid::bigint, \
     'schema', n.nspname, 'name', c.relname, 'size', pg_table_size(c.oid), \
     'blocks', pg_relation_size(c.oid) / current_setting('block_size')::int, \
     'readable', has_table_privilege(c.oid, 'SELECT'), \
     'extension', EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass \
     AND d.objid = c.oid AND d.deptype = 'e')) ORDER BY n.nspname, c.relname), '[]')::text \
     FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
     WHERE c.relkind IN ('r', 'p') AND n.nspname <> 'information_schema' AND n.nspname NOT LIKE 'pg\\_%'";

impl Table {
    /// `"schema"."name"`, for SQL.
    fn qualified(&self) -> String {
        format!("{}.{}", quote_ident(&self.schema), quote_ident(&self.name))
    }

    /// The `pg_dump` pattern that matches this table alone: inside double quotes,
    /// pattern characters are taken literally.
    fn pattern(&self) -> String {
        self.qualified()
    }
}

/// The control session: one `psql` whose transaction holds the exported snapshot and
/// the locks until every stream is written.
struct Session<'a> {
    service: &'a PostgresService,
    tool: Option<Tool>,
    input: Option<ChildStdin>,
    output: BufReader<ChildStdout>,
}

impl<'a> Session<'a> {
    fn open(service: &'a PostgresService) -> Result<Self> {
        let mut command = service.psql(&service.url.database);
        command.env("PGCLIENTENCODING", "UTF8").stdin(Stdio::piped()).stdout(Stdio::piped());
        let mut tool = Tool::start("psql", &mut command).map_err(|error| service.tool_failed(error))?;
        let input = tool.stdin();
        let output = BufReader::new(tool.stdout().expect("stdout is piped"));
        Ok(Session { service, tool: Some(tool), input, output })
    }

    /// The session's error, once psql has stopped (ON_ERROR_STOP).
    fn stopped(&mut self) -> Error {
        drop(self.input.take());
        match self.tool.take().map(Tool::finish) {
            Some(Err(error)) => self.service.tool_failed(error),
            _ => self.service.failed("psql ended its session unexpectedly".to_owned()),
        }
    }

    fn send(&mut self, sql: &str) -> Result<()> {
        let input = self.input.as_mut().expect("the session is open");
        if input.write_all(sql.as_bytes()).and_then(|()| input.write_all(b"\n")).and_then(|()| input.flush()).is_err() {
            return Err(self.stopped());
        }
        Ok(())
    }

    /// Runs `sql`, which returns exactly one row of one column; returns it.
    fn query(&mut self, sql: &str) -> Result<String> {
        self.send(&format!("{sql};"))?;
        let mut line = String::new();
        match self.output.read_line(&mut line) {
            Ok(count) if count > 0 => Ok(line.trim_end_matches('\n').to_owned()),
            _ => Err(self.stopped()),
        }
    }

    /// Ends the transaction, which releases the snapshot and the locks.
    fn close(mut self) -> Result<()> {
        self.send("COMMIT;")?;
        drop(self.input.take());
        let tool = self.tool.take().expect("the session is open");
        tool.finish().map_err(|error| self.service.tool_failed(error))
    }
}

fn parse_json<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, String> {
    serde_json::from_str(text).map_err(|error| format!("cannot read the server's answer ({error}): `{text}`"))
}

/// The role of psql's `ERROR:  role "name" does not exist`.
fn missing_role(stderr: &str) -> Option<String> {
    let start = stderr.find("role \"")? + "role \"".len();
    let rest = &stderr[start..];
    let end = rest.find("\" does not exist")?;
    Some(rest[..end].to_owned())
}

/// Leaves out of a `pg_dump` stream the statements that give objects to their owners
/// (`ALTER TABLE public.t OWNER TO alice;`), as `pg_dump --no-owner` would have: the
/// restoring user then owns everything. Such a statement is one line, which `pg_dump`
/// writes after two blank lines at the end of an object's entry; lines of `COPY` data
/// are passed as they are, whatever they hold.
struct OwnerFilter<R> {
    inner: BufReader<R>,
    blank_lines: usize,
    in_copy: bool,
}

impl<R: Read> OwnerFilter<R> {
    fn new(inner: R) -> Pieces<Self> {
        Pieces::new(
            OwnerFilter { inner: BufReader::with_capacity(256 << 10, inner), blank_lines: 0, in_copy: false },
            Vec::new(),
        )
    }
}

impl<R: Read> Produce for OwnerFilter<R> {
    fn produce(&mut self, out: &mut Vec<u8>) -> io::Result<bool> {
        // Lines are read whole: outside COPY data, pg_dump's are short; inside, a long
        // row is only passed on.
        if self.inner.read_until(b'\n', out)? == 0 {
            return Ok(false);
        }
        let line = out.as_slice();
        if self.in_copy {
            self.in_copy = line != b"\\.\n";
            return Ok(true);
        }
        let is_owner = self.blank_lines >= 2
            && line.starts_with(b"ALTER ")
            && line.ends_with(b";\n")
            && find(line, b" OWNER TO ").is_some();
        self.blank_lines = if line == b"\n" { self.blank_lines + 1 } else { 0 };
        self.in_copy = line.starts_with(b"COPY ") && line.ends_with(b" FROM stdin;\n");
        if is_owner {
            out.clear();
        }
        Ok(true)
    }
}

/// The value of a `name=value` database setting as `ALTER DATABASE … SET name TO`
/// takes it: one literal, or for the settings that hold lists of names
/// (`search_path`: `"$user", public`) a literal for each, as `pg_dump` writes them.
fn setting_value(name: &str, value: &str) -> String {
    const LISTS: &[&str] = &[
        "local_preload_libraries",
        "search_path",
        "session_preload_libraries",
        "shared_preload_libraries",
        "temp_tablespaces",
        "unix_socket_directories",
    ];
    if !LISTS.contains(&name.to_ascii_lowercase().as_str()) {
        return quote_literal(value);
    }
    let mut items: Vec<String> = Vec::new();
    let mut chars = value.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let mut item = String::new();
        if chars.next_if_eq(&'"').is_some() {
            while let Some(c) = chars.next() {
                match c {
                    '"' if chars.next_if_eq(&'"').is_some() => item.push('"'),
                    '"' => break,
                    c => item.push(c),
                }
            }
            while chars.next_if(|c| *c != ',').is_some() {}
        } else {
            while let Some(c) = chars.next_if(|c| *c != ',') {
                item.push(c);
            }
            item = item.trim_end().to_owned();
        }
        if !(item.is_empty() && items.is_empty() && chars.peek().is_none()) {
            items.push(quote_literal(&item));
        }
        if chars.next().is_none() {
            break;
        }
    }
    if items.is_empty() { "''".to_owned() } else { items.join(", ") }
}

/// `name` quoted as an SQL identifier.
fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// `text` quoted as an SQL string literal (standard_conforming_strings is on by default
/// since 9.1, and the dumps set it).
fn quote_literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// `2-data-<schema>.<table>` with every byte outside `[A-Za-z0-9_-]` escaped as `%XX`,
/// so the name is one safe file name, different for every table; a name too long for
/// a file system becomes a hash.
fn stream_name(schema: &str, table: &str) -> String {
    let escape = |text: &str| {
        text.bytes()
            .map(|byte| {
                if byte.is_ascii_alphanumeric() || byte == b'_' || byte == b'-' {
                    char::from(byte).to_string()
                } else {
                    format!("%{byte:02X}")
                }
            })
            .collect::<String>()
    };
    let name = format!("2-data-{}.{}", escape(schema), escape(table));
    if name.len() <= 200 {
        name
    } else {
        let hash = blake3::hash(format!("{schema}\0{table}").as_bytes());
        format!("2-data-{}", &hash.to_hex()[..32])
    }
}

/// The major version of a `server_version_num`: 15 for 150020, 906 for 90624.
fn major(version: u32) -> u32 {
    if version >= 100_000 { version / 10_000 } else { version / 100 }
}

fn show_major(version: u32) -> String {
    if version >= 100_000 {
        (version / 10_000).to_string()
    } else {
        format!("{}.{}", version / 10_000, version / 100 % 100)
    }
}

/// How the PostgreSQL tools' failures are told.
const ADVICE: Advice = Advice {
    install: "install the PostgreSQL client tools (e.g. `apt install postgresql-client`)",
    // libpq's "connection to server at … failed", not "connection to server was lost".
    connecting: |stderr| {
        stderr.lines().any(|line| {
            (line.contains("connection to server at") || line.contains("connection to server on socket"))
                && line.contains("failed")
        }) || stderr.contains("could not translate host name")
    },
    hint,
};

/// What to do about a failure, from the tool's message.
fn hint(stderr: &str) -> &'static str {
    if stderr.contains("password authentication failed") || stderr.contains("no password supplied") {
        "; check the user and password in `url` (keep the password out of envsnap.toml: write ${VARIABLE} and set it in the environment)"
    } else if stderr.contains("database \"") && stderr.contains("does not exist") {
        "; create the database, or fix its name in `url` in envsnap.toml"
    } else if stderr.contains("role \"") && stderr.contains("does not exist") {
        "; fix the user in `url` in envsnap.toml"
    } else if stderr.contains("canceling statement due to lock timeout") {
        "; another session holds or waits for an ACCESS EXCLUSIVE lock on the table named above (ALTER TABLE, \
         TRUNCATE, DROP, VACUUM FULL or LOCK TABLE take one): let it finish, or end it, then try again \
         (ENVSNAP_LOCK_TIMEOUT sets how many seconds to wait for a lock)"
    } else if [
        "Connection refused",
        "could not translate host name",
        "timeout expired",
        "No route to host",
        "Network is unreachable",
        "No such file or directory",
    ]
    .iter()
    .any(|symptom| stderr.contains(symptom))
    {
        "; is the server running? check the host and port in `url` in envsnap.toml"
    } else if stderr.contains("server version mismatch")
        || stderr.contains("aborting because of server version mismatch")
    {
        "; install a pg_dump at least as new as the server"
    } else {
        ""
    }
}

/// The program to run for the PostgreSQL tool `program`. On Debian and Ubuntu,
/// `/usr/bin/pg_dump` and `/usr/bin/psql` are links to `pg_wrapper`, a Perl script that
/// runs the newest installed version of the tool; starting Perl costs some 30 ms of CPU
/// per tool, and a capture starts several, so envsnap picks that version itself.
fn installed(program: &str) -> std::ffi::OsString {
    let through_wrapper = std::env::var_os("PATH").is_some_and(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join(program))
            .find(|candidate| candidate.is_file())
            .and_then(|found| std::fs::canonicalize(found).ok())
            .is_some_and(|target| target.file_name().is_some_and(|name| name == "pg_wrapper"))
    });
    if through_wrapper && let Ok(versions) = std::fs::read_dir("/usr/lib/postgresql") {
        let newest = versions
            .filter_map(|entry| entry.ok())
            .filter_map(|entry| Some((entry.file_name().to_str()?.parse::<u32>().ok()?, entry.path())))
            .map(|(version, dir)| (version, dir.join("bin").join(program)))
            .filter(|(_, binary)| binary.is_file())
            .max_by_key(|(version, _)| *version);
        if let Some((_, binary)) = newest {
            return binary.into_os_string();
        }
    }
    program.into()
}

/// Whether this machine's `psql` knows `\restrict` (added in 13.22, 14.19, 15.14, 16.10,
/// 17.6 and 18).
fn psql_supports_restrict() -> bool {
    let Ok(output) = Command::new(installed("psql")).arg("--version").output() else { return false };
    let text = String::from_utf8_lossy(&output.stdout);
    // "psql (PostgreSQL) 15.20 (Debian …)"
    let Some(version) = text.split_whitespace().nth(2) else { return false };
    let mut parts = version.split(|c: char| !c.is_ascii_digit()).filter_map(|part| part.parse::<u32>().ok());
    let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    match major {
        13 => minor >= 22,
        14 => minor >= 19,
        15 => minor >= 14,
        16 => minor >= 10,
        17 => minor >= 6,
        major => major >= 18,
    }
}

/// A key for `\restrict`: 32 random bytes in hex (letters and digits only, as psql wants).
fn restrict_key() -> String {
    let mut bytes = [0u8; 32];
    if File::open("/dev/urandom").and_then(|mut random| random.read_exact(&mut bytes)).is_err() {
        // Unpredictable enough to whoever wrote the dump, which is what the key guards against.
        let seed = format!("{:?}{}{:p}", std::time::SystemTime::now(), std::process::id(), &bytes);
        bytes = *blake3::hash(seed.as_bytes()).as_bytes();
    }
    hex::encode(bytes)
}

/// Copies a stream into psql, inside `\restrict` with a fresh key when psql knows it.
fn copy_restricted(input: impl Read, output: &mut impl Write, restrict: bool, cancel: &AtomicBool) -> io::Result<()> {
    let key = restrict.then(restrict_key);
    if let Some(key) = &key {
        output.write_all(format!("\\restrict {key}\n").as_bytes())?;
    }
    io::copy(&mut Cancellable { inner: input, cancel }, output)?;
    if let Some(key) = &key {
        output.write_all(format!("\n\\unrestrict {key}\n").as_bytes())?;
    }
    output.flush()
}

/// Removes `pg_dump`'s `\restrict <key>` line from the head of a stream and the
/// matching `\unrestrict <key>` line from its end (see the module documentation).
/// Only the head (comments and blank lines up to the first statement) is read line by
/// line; the rest passes in blocks, the last few bytes held back until the end.
struct RestrictFilter<R> {
    inner: BufReader<R>,
    /// `None` while reading the head.
    key: Option<Option<String>>,
    /// The unwritten end of the stream, where the `\unrestrict` line may be.
    tail: Vec<u8>,
}

impl<R: Read> RestrictFilter<R> {
    fn new(inner: R) -> Pieces<Self> {
        let filter = RestrictFilter { inner: BufReader::with_capacity(256 << 10, inner), key: None, tail: Vec::new() };
        Pieces::new(filter, Vec::new())
    }

    fn tail_length(&self) -> usize {
        match &self.key {
            Some(Some(key)) => key.len() + 16,
            _ => 0,
        }
    }
}

impl<R: Read> Produce for RestrictFilter<R> {
    fn produce(&mut self, out: &mut Vec<u8>) -> io::Result<bool> {
        if self.key.is_none() {
            let mut line = Vec::new();
            if self.inner.read_until(b'\n', &mut line)? == 0 {
                return Ok(false);
            }
            let text = String::from_utf8_lossy(&line);
            let trimmed = text.trim_end();
            if let Some(key) = trimmed.strip_prefix("\\restrict ") {
                self.key = Some(Some(key.to_owned()));
            } else {
                if !(trimmed.is_empty() || trimmed.starts_with("--")) {
                    self.key = Some(None);
                }
                *out = line;
            }
            return Ok(true);
        }
        let block = self.inner.fill_buf()?;
        if block.is_empty() {
            *out = std::mem::take(&mut self.tail);
            if let Some(Some(key)) = &self.key {
                let line = format!("\\unrestrict {key}\n");
                if let Some(at) = find(out, line.as_bytes())
                    && (at == 0 || out[at - 1] == b'\n')
                {
                    out.drain(at..at + line.len());
                }
            }
            return Ok(false);
        }
        let length = block.len();
        self.tail.extend_from_slice(block);
        self.inner.consume(length);
        let keep = self.tail_length();
        if self.tail.len() > keep {
            let split = self.tail.len() - keep;
            out.extend_from_slice(&self.tail[..split]);
            self.tail.drain(..split);
        }
        Ok(true)
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).rposition(|window| window == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filtered(input: &[u8]) -> io::Result<String> {
        let mut out = String::new();
        RestrictFilter::new(input).read_to_string(&mut out)?;
        Ok(out)
    }

    #[test]
    fn the_restrict_key_lines_are_removed_and_nothing_else() -> io::Result<()> {
        let dump = "--\n-- PostgreSQL database dump\n--\n\n\\restrict abc123\n\n-- Dumped from 15\n\nSET x = 1;\n\
                    COPY t (a) FROM stdin;\n\\restrict abc123\n\\unrestrict other\n\\.\n\n\\unrestrict abc123\n\n";
        let out = filtered(dump.as_bytes())?;
        assert_eq!(
            out,
            "--\n-- PostgreSQL database dump\n--\n\n\n-- Dumped from 15\n\nSET x = 1;\n\
             COPY t (a) FROM stdin;\n\\restrict abc123\n\\unrestrict other\n\\.\n\n\n"
        );
        let plain = "--\nSET x = 1;\n\\unrestrict abc\n";
        assert_eq!(filtered(plain.as_bytes())?, plain, "without a key in the head nothing is removed");
        Ok(())
    }

    #[test]
    fn a_large_stream_passes_whole() -> io::Result<()> {
        let mut dump = b"--\n\\restrict k\nCOPY t FROM stdin;\n".to_vec();
        dump.extend((0..2_000_000u32).map(|n| b'a' + (n % 26) as u8));
        dump.extend_from_slice(b"\n\\.\n\\unrestrict k\n");
        let out = filtered(&dump)?;
        assert_eq!(out.len(), dump.len() - "\\restrict k\n".len() - "\\unrestrict k\n".len());
        assert!(out.ends_with("\n\\.\n"));
        Ok(())
    }

    #[test]
    fn stream_names_are_single_distinct_file_names() {
        assert_eq!(stream_name("public", "users"), "2-data-public.users");
        assert_eq!(stream_name("a.b", "c"), "2-data-a%2Eb.c");
        assert_ne!(stream_name("a.b", "c"), stream_name("a", "b.c"));
        assert_eq!(stream_name("s", "x/../y"), "2-data-s.x%2F%2E%2E%2Fy");
        assert!(stream_name("s", &"é".repeat(60)).len() <= 64);
    }

    #[test]
    fn owner_statements_are_left_out_and_copy_data_is_not() -> io::Result<()> {
        let dump = "CREATE TABLE public.t (\n    a text\n);\n\n\nALTER TABLE public.t OWNER TO alice;\n\n\
                    COPY public.t (a) FROM stdin;\n\n\nALTER TABLE x OWNER TO y;\n\\.\n\n\n\
                    ALTER FUNCTION public.f() OWNER TO \"Bob\";\nALTER TABLE public.t OWNER TO carol;\n";
        let mut out = String::new();
        OwnerFilter::new(dump.as_bytes()).read_to_string(&mut out)?;
        assert_eq!(
            out,
            "CREATE TABLE public.t (\n    a text\n);\n\n\n\nCOPY public.t (a) FROM stdin;\n\n\n\
             ALTER TABLE x OWNER TO y;\n\\.\n\n\nALTER TABLE public.t OWNER TO carol;\n"
        );
        assert_eq!(missing_role("psql:<stdin>:40: ERROR:  role \"alice\" does not exist\n").as_deref(), Some("alice"));
        Ok(())
    }

    #[test]
    fn list_settings_are_given_one_literal_an_item() {
        assert_eq!(setting_value("work_mem", "64MB"), "'64MB'");
        assert_eq!(
            setting_value("search_path", "\"$user\", public, \"Odd, \"\"one\"\"\""),
            "'$user', 'public', 'Odd, \"one\"'"
        );
        assert_eq!(setting_value("search_path", ""), "''");
        assert_eq!(setting_value("application_name", "it's"), "'it''s'");
    }

    #[test]
    fn versions_compare_by_major() {
        assert_eq!((major(150_020), major(90_624), major(100_001)), (15, 906, 10));
        assert_eq!((show_major(160_002), show_major(90_624)), ("16".to_owned(), "9.6".to_owned()));
    }
}
