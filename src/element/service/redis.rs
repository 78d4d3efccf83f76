//! `type = "redis"`: a point-in-time snapshot of one logical database or of a whole
//! instance, taken and restored while the server runs.
//!
//! # Capture: the server's own snapshot, through replication
//!
//! envsnap connects as a replica would and sends `SYNC`. The server forks and its
//! child serializes the whole data set as it was at the fork, exactly as `BGSAVE`
//! does, and streams it over the connection as an RDB file (announcing `capa eof`
//! lets the server stream it without writing a file to its own disk; `REPLCONF
//! rdb-only` asks for that snapshot only, not the replication stream after it). So a
//! capture is **one point in time for every key of every database**: no write made
//! during the capture is half in it, and a `MULTI` is in or out as a whole. It costs
//! the server a fork (copy-on-write memory for pages written meanwhile), as `BGSAVE`
//! does; with diskless replication the server first waits `repl-diskless-sync-delay`
//! seconds (5 by default) for other replicas to share the fork.
//!
//! The stream is read item by item (module `rdb`) and written straight to the chunker: it
//! is never held whole in memory or on disk. For a service whose URL names a database
//! (`redis://host:6379/3`), the other databases, the functions and module data are
//! dropped on the way; a whole-instance service (no number) keeps everything. What is
//! stored is a valid RDB file (`dump.rdb`, checksum recomputed) that `redis-server`
//! loads as it is, with an AUX field `envsnap-db` naming the database it holds.
//!
//! A server that refuses `SYNC` (an ACL user without `+sync`, a managed service that
//! renamed it) is captured key by key instead: `SCAN`, then `DUMP` and `PTTL` of each
//! key, pipelined, written into the same RDB format. That is consistent **per key
//! only**: keys written during the scan may be captured before or after the write, and
//! a key created during the scan may be missing. The dump records which way it was
//! taken in its AUX field `envsnap-capture` (`sync` or `scan`).
//!
//! # Restore: `RESTORE` of every key, no restart
//!
//! Loading an RDB file needs a restart, so a restore instead replays the dump: it
//! empties the target (`FLUSHDB ASYNC`, or `FLUSHALL ASYNC` and `FUNCTION FLUSH` for a
//! whole instance), then sends one `RESTORE key expiry payload REPLACE ABSTTL` per key,
//! pipelined, where the payload is the value's RDB encoding with the version and
//! checksum `DUMP` would add. LRU idle time or LFU frequency are kept when the dump has
//! them, function libraries are loaded again with `FUNCTION LOAD`.
//!
//! **Expiries are absolute**, as in Redis's own RDB and AOF files: a key that was to
//! expire at 14:00 still expires at 14:00 after a restore, and a key whose expiry has
//! passed by the time of the restore is not restored at all. Restoring a snapshot taken
//! a week ago therefore does not bring back week-old sessions; a remaining TTL (PTTL)
//! after a restore equals the PTTL at capture minus the time since the capture.
//!
//! A dump of one database restores into any database (the target's, whatever number
//! the dump came from) or into a whole instance (into its own number); a dump of a
//! whole instance restores only into a whole instance. Clients see the target empty,
//! then filling, while a restore runs. Memory holds one key's value at a time.

mod rdb;
mod resp;

use std::collections::HashSet;
use std::io::{self, BufRead, BufReader, BufWriter, Read, Write};
use std::thread;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use self::rdb::{Item, RdbError, RdbReader, RdbWriter, opcode};
use self::resp::{Connection, Endpoint, Reply, Timeouts};
use super::{DumpSink, DumpSource, Service};
use crate::error::{Error, Result};

/// The name of the one stream a Redis capture is stored as.
pub const STREAM: &str = "dump.rdb";

/// The AUX field naming the database a dump of one database holds.
const AUX_DB: &[u8] = b"envsnap-db";

/// The AUX field saying how the dump was taken: `sync` or `scan`.
const AUX_CAPTURE: &[u8] = b"envsnap-capture";

const TIMEOUTS: Timeouts = Timeouts { connect: Duration::from_secs(5), io: Duration::from_secs(120) };

/// Commands sent before their replies are read, when restoring or scanning.
const PIPELINE: usize = 512;

/// A Redis server, or one of its databases.
#[derive(Debug, Clone)]
pub struct RedisService {
    name: String,
    endpoint: Endpoint,
    /// The database; `None` for the whole instance.
    db: Option<u64>,
    user: Option<String>,
    password: Option<String>,
    address: String,
}

/// How the server sends its snapshot after `SYNC`.
enum Transfer {
    /// `$<length>`: that many bytes (a snapshot written to the server's disk first).
    Length(u64),
    /// `$EOF:<mark>`: a streamed snapshot, followed by the 40-byte mark.
    Mark(Vec<u8>),
}

impl RedisService {
    /// The service `name` at `url`: `redis://[user:password@]host[:port][/db]` or
    /// `unix:///path/to/socket[?db=N]`. Without a database number it is the whole
    /// instance.
    pub fn new(name: &str, url: &str) -> Result<Self> {
        let bad = |detail: &str| Error::ServiceUrl { name: name.to_owned(), detail: detail.to_owned() };
        let parsed = url::Url::parse(url).map_err(|error| bad(&format!("is not a valid URL ({error})")))?;
        let query = |key: &str| parsed.query_pairs().find(|(name, _)| name == key).map(|(_, value)| value.into_owned());
        let number =
            |text: &str| text.parse::<u64>().map_err(|_| bad(&format!("names database `{text}`, not a number")));
        let (endpoint, db, address) = match parsed.scheme() {
            "redis" => {
                let host = parsed.host_str().filter(|host| !host.is_empty()).unwrap_or("127.0.0.1");
                let host = host.trim_start_matches('[').trim_end_matches(']').to_owned();
                let port = parsed.port().unwrap_or(6379);
                let db = match parsed.path().trim_matches('/') {
                    "" => query("db").as_deref().map(number).transpose()?,
                    text => Some(number(text)?),
                };
                let shown_host = if host.contains(':') { format!("[{host}]") } else { host.clone() };
                let address =
                    format!("redis://{shown_host}:{port}{}", db.map(|db| format!("/{db}")).unwrap_or_default());
                (Endpoint::Tcp { host, port }, db, address)
            }
            "unix" | "redis+unix" => {
                let path = percent_decode(parsed.path());
                if path.is_empty() {
                    return Err(bad("names no socket: write it as unix:///path/to/redis.sock"));
                }
                let db = query("db").as_deref().map(number).transpose()?;
                let address = format!("unix://{path}{}", db.map(|db| format!("?db={db}")).unwrap_or_default());
                (Endpoint::Unix(path.into()), db, address)
            }
            "rediss" => {
                return Err(bad(
                    "uses TLS (rediss://), which envsnap cannot speak yet; reach the server through a local TLS tunnel and use redis://",
                ));
            }
            other => return Err(bad(&format!("has scheme `{other}`; Redis URLs start with redis:// or unix://"))),
        };
        let user = Some(parsed.username()).filter(|user| !user.is_empty()).map(percent_decode);
        let password = parsed.password().map(percent_decode).or_else(|| query("password"));
        let user = user.or_else(|| query("user"));
        Ok(RedisService { name: name.to_owned(), endpoint, db, user, password, address })
    }

    fn failed(&self, detail: impl Into<String>) -> Error {
        Error::ServiceFailed { name: self.name.clone(), address: self.address.clone(), detail: detail.into() }
    }

    fn lost(&self, error: &io::Error) -> Error {
        self.failed(format!("the connection failed: {error}"))
    }

    fn connect(&self) -> Result<Connection> {
        let mut connection = Connection::open(&self.endpoint, TIMEOUTS).map_err(|error| {
            self.failed(format!("cannot connect: {error}; check that the server is running and `url` in envsnap.toml"))
        })?;
        if let Some(password) = &self.password {
            let mut args: Vec<&[u8]> = vec![b"AUTH"];
            if let Some(user) = &self.user {
                args.push(user.as_bytes());
            }
            args.push(password.as_bytes());
            if let Reply::Error(message) = connection.call(&args).map_err(|error| self.lost(&error))? {
                return Err(self.failed(format!("the server refused the password: {message}; {PASSWORD_HINT}")));
            }
        }
        Ok(connection)
    }

    /// Sends a command and fails on an error reply.
    fn call(&self, connection: &mut Connection, args: &[&[u8]]) -> Result<Reply> {
        let reply = connection.call(args).map_err(|error| self.lost(&error))?;
        reply.ok().map_err(|message| {
            let command = String::from_utf8_lossy(args[0]);
            if message.starts_with("NOAUTH") {
                self.failed(format!("`{command}` failed: {message}; the server wants a password: {PASSWORD_HINT}"))
            } else {
                self.failed(format!("`{command}` failed: {message}"))
            }
        })
    }

    fn select(&self, connection: &mut Connection, db: u64) -> Result<()> {
        self.call(connection, &[b"SELECT", db.to_string().as_bytes()]).map(drop)
    }

    /// Asks for the server's snapshot: how it will come, or why the server refuses to
    /// send one (the caller then scans instead).
    fn start_sync(&self, connection: &mut Connection) -> Result<Result<Transfer, String>> {
        let lost = |error: io::Error| self.lost(&error);
        connection.send(&[b"REPLCONF", b"capa", b"eof"]).map_err(lost)?;
        connection.send(&[b"REPLCONF", b"rdb-only", b"1"]).map_err(lost)?;
        connection.flush().map_err(lost)?;
        if let Reply::Error(message) = connection.reply().map_err(lost)? {
            return Ok(Err(message));
        }
        // Servers before 7.0 do not know rdb-only: then the connection is simply closed
        // once the snapshot has been read.
        connection.reply().map_err(lost)?;
        connection.send(&[b"SYNC"]).and_then(|()| connection.flush()).map_err(lost)?;
        loop {
            let line = connection.line().map_err(lost)?;
            match line.first() {
                // A newline keeps a waiting replica's connection open.
                None => continue,
                Some(b'-') => return Ok(Err(String::from_utf8_lossy(&line[1..]).into_owned())),
                Some(b'$') => {
                    if let Some(mark) = line.strip_prefix(b"$EOF:") {
                        return Ok(Ok(Transfer::Mark(mark.to_vec())));
                    }
                    let length = std::str::from_utf8(&line[1..]).ok().and_then(|text| text.parse().ok());
                    return length.map(|length| Ok(Transfer::Length(length))).ok_or_else(|| {
                        self.failed(format!("unexpected answer to SYNC: {}", String::from_utf8_lossy(&line)))
                    });
                }
                _ => {
                    return Err(self.failed(format!("unexpected answer to SYNC: {}", String::from_utf8_lossy(&line))));
                }
            }
        }
    }

    fn rdb_error(&self, error: RdbError) -> Error {
        match error {
            RdbError::Io(error) => self.failed(format!("reading the snapshot: {error}")),
            RdbError::Format(detail) => self.failed(format!("the server sent {detail}")),
        }
    }

    /// Copies the snapshot the server streams after `SYNC`, keeping what this service
    /// captures (see the module documentation).
    fn copy_snapshot(&self, mut connection: Connection, transfer: Transfer, out: impl Write) -> Result<()> {
        let raw = connection.raw();
        match transfer {
            Transfer::Length(length) => {
                let mut limited = raw.take(length);
                self.filter(&mut limited, out)?;
                if limited.limit() != 0 {
                    return Err(self.failed("the snapshot is longer than the server announced"));
                }
            }
            Transfer::Mark(mark) => {
                self.filter(&mut *raw, out)?;
                let mut end = vec![0; mark.len()];
                raw.read_exact(&mut end).map_err(|error| self.lost(&error))?;
                if end != mark {
                    return Err(self.failed("the snapshot does not end with the mark the server announced"));
                }
            }
        }
        Ok(())
    }

    fn filter(&self, input: &mut dyn BufRead, out: impl Write) -> Result<()> {
        let error = |error| self.rdb_error(error);
        let io_error = |error: io::Error| self.rdb_error(RdbError::Io(error));
        let mut rdb = RdbReader::new(input).map_err(error)?;
        let mut out = RdbWriter::new(out);
        out.write_all(rdb.head()).map_err(io_error)?;
        self.label(&mut out, b"sync").map_err(io_error)?;
        let mut keep = self.db.is_none_or(|db| db == 0);
        loop {
            let item = rdb.next().map_err(error)?;
            let copy = match &item {
                Item::SelectDb(db) => {
                    keep = self.db.is_none_or(|wanted| wanted == *db);
                    keep
                }
                Item::Aux { .. } => true,
                Item::Function(_) | Item::ModuleAux => self.db.is_none(),
                Item::Eof => break,
                _ => keep,
            };
            if copy {
                out.write_all(rdb.head()).map_err(io_error)?;
            }
            if let Item::Key { kind, .. } = item {
                if keep {
                    rdb.value(kind, &mut out).map_err(error)?;
                } else {
                    rdb.value(kind, &mut io::sink()).map_err(error)?;
                }
            }
        }
        let (stored, computed) = rdb.checksum().map_err(error)?;
        if stored != 0 && stored != computed {
            return Err(self.failed("the snapshot's checksum does not match: it was damaged on the way"));
        }
        out.finish().and_then(|mut out| out.flush()).map_err(io_error)
    }

    /// The AUX fields envsnap adds after the header.
    fn label<W: Write>(&self, out: &mut RdbWriter<W>, capture: &[u8]) -> io::Result<()> {
        out.aux(AUX_CAPTURE, capture)?;
        match self.db {
            Some(db) => out.aux(AUX_DB, db.to_string().as_bytes()),
            None => Ok(()),
        }
    }

    /// Captures key by key, for a server that refuses `SYNC` (see the module docs).
    fn scan(&self, mut connection: Connection, out: impl Write) -> Result<()> {
        let io_error = |error: io::Error| self.failed(format!("writing the dump: {error}"));
        let dbs = match self.db {
            Some(db) => vec![db],
            None => self.keyspace(&mut connection)?,
        };
        let mut out = RdbWriter::new(out);
        let mut started = false;
        for db in dbs {
            self.select(&mut connection, db)?;
            let mut selected = false;
            // SCAN may return a key twice (when the table grows meanwhile); an RDB file
            // must not hold it twice. 16 bytes per key is what this costs.
            let mut seen = HashSet::new();
            let mut cursor = b"0".to_vec();
            loop {
                let reply = self.call(&mut connection, &[b"SCAN", &cursor, b"COUNT", b"1000"])?;
                let Reply::Array(Some(mut parts)) = reply else {
                    return Err(self.failed("unexpected answer to SCAN"));
                };
                let keys = match parts.pop() {
                    Some(Reply::Array(Some(keys))) => keys,
                    _ => return Err(self.failed("unexpected answer to SCAN")),
                };
                cursor = parts.pop().and_then(Reply::into_bytes).unwrap_or_else(|| b"0".to_vec());
                let keys: Vec<Vec<u8>> = keys.into_iter().filter_map(Reply::into_bytes).collect();
                let lost = |error: io::Error| self.lost(&error);
                for key in &keys {
                    connection.send(&[b"DUMP", key]).map_err(lost)?;
                    connection.send(&[b"PTTL", key]).map_err(lost)?;
                }
                connection.flush().map_err(lost)?;
                for key in &keys {
                    let payload = connection.reply().map_err(lost)?;
                    let ttl = connection.reply().map_err(lost)?;
                    let now = now_millis();
                    let (Reply::Bulk(Some(payload)), Reply::Integer(ttl)) = (payload, ttl) else {
                        continue; // gone since SCAN listed it
                    };
                    let hash: [u8; 16] = blake3::hash(key).as_bytes()[..16].try_into().expect("16 of 32 bytes");
                    if ttl == -2 || !seen.insert(hash) {
                        continue;
                    }
                    let Some((version, body)) = rdb::split_payload(&payload) else {
                        return Err(self.failed("the server's DUMP of a key has a wrong checksum"));
                    };
                    if !started {
                        out.header(u32::from(version)).map_err(io_error)?;
                        self.label(&mut out, b"scan").map_err(io_error)?;
                        started = true;
                    }
                    if !selected {
                        out.write_all(&[opcode::SELECTDB]).and_then(|()| out.length(db)).map_err(io_error)?;
                        selected = true;
                    }
                    if ttl >= 0 {
                        out.write_all(&[opcode::EXPIRETIME_MS]).map_err(io_error)?;
                        out.write_all(&(now + ttl).to_le_bytes()).map_err(io_error)?;
                    }
                    out.write_all(&body[..1]).map_err(io_error)?;
                    out.string(key).map_err(io_error)?;
                    out.write_all(&body[1..]).map_err(io_error)?;
                }
                if cursor == b"0" {
                    break;
                }
            }
        }
        if !started {
            out.header(9).map_err(io_error)?;
            self.label(&mut out, b"scan").map_err(io_error)?;
        }
        if self.db.is_none() {
            // Function libraries: FUNCTION DUMP's body is RDB function records.
            if let Ok(Reply::Bulk(Some(payload))) = connection.call(&[b"FUNCTION", b"DUMP"])
                && let Some((_, body)) = rdb::split_payload(&payload)
            {
                out.write_all(body).map_err(io_error)?;
            }
        }
        out.finish().and_then(|mut out| out.flush()).map_err(io_error)
    }

    /// The databases that hold keys, from `INFO keyspace`.
    fn keyspace(&self, connection: &mut Connection) -> Result<Vec<u64>> {
        let info = self.call(connection, &[b"INFO", b"keyspace"])?.into_bytes().unwrap_or_default();
        Ok(String::from_utf8_lossy(&info)
            .lines()
            .filter_map(|line| line.strip_prefix("db")?.split(':').next()?.parse().ok())
            .collect())
    }
}

/// What to do about a refused or missing password.
const PASSWORD_HINT: &str = "check the user and password in `url` (`redis://[user]:password@host…`; keep the \
                             password out of envsnap.toml: write ${VARIABLE} and set it in the environment)";

/// Decodes `%XX` escapes (a URL's user, password and path keep them).
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut at = 0;
    while at < bytes.len() {
        let escaped =
            bytes.get(at + 1..at + 3).and_then(|hex| u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok());
        match (bytes[at], escaped) {
            (b'%', Some(byte)) => {
                decoded.push(byte);
                at += 3;
            }
            (byte, _) => {
                decoded.push(byte);
                at += 1;
            }
        }
    }
    String::from_utf8_lossy(&decoded).into_owned()
}

impl RedisService {
    fn damaged(&self, error: RdbError) -> Error {
        match error {
            RdbError::Io(error) => self.failed(format!("reading the dump: {error}")),
            RdbError::Format(detail) => Error::Corrupt { what: format!("the dump of service `{}`", self.name), detail },
        }
    }

    /// Reads the leading AUX fields, which say what the dump holds: the database it
    /// came from, or `None` for a whole instance. Refuses a whole instance for a
    /// service of one database. Returns the first item after them.
    fn dump_scope(&self, rdb: &mut RdbReader<impl BufRead>) -> Result<(Option<u64>, Item)> {
        let mut item = rdb.next().map_err(|error| self.damaged(error))?;
        let mut dump_db = None;
        while let Item::Aux { key, value } = &item {
            if key == AUX_DB {
                dump_db = String::from_utf8_lossy(value).parse::<u64>().ok();
            }
            item = rdb.next().map_err(|error| self.damaged(error))?;
        }
        if self.db.is_some() && dump_db.is_none() {
            return Err(self.failed(
                "the snapshot holds the whole instance (every database); it restores only into a service whose \
                 url names no database",
            ));
        }
        Ok((dump_db, item))
    }
}

fn now_millis() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |elapsed| elapsed.as_millis() as i64)
}

impl Service for RedisService {
    fn address(&self) -> String {
        self.address.clone()
    }

    fn exists(&self) -> Result<bool> {
        let mut connection = self.connect()?;
        match self.db {
            Some(db) => {
                self.select(&mut connection, db)?;
                Ok(matches!(self.call(&mut connection, &[b"DBSIZE"])?, Reply::Integer(keys) if keys > 0))
            }
            None => Ok(!self.keyspace(&mut connection)?.is_empty()),
        }
    }

    fn capture(&self, sink: &dyn DumpSink) -> Result<()> {
        let mut connection = self.connect()?;
        let transfer = self.start_sync(&mut connection)?;
        let connection = match transfer {
            Ok(_) => connection,
            // A refused SYNC may leave the connection in any state: scan on a new one.
            Err(_) => self.connect()?,
        };
        let (reader, writer) = io::pipe().map_err(|error| self.failed(format!("cannot create a pipe: {error}")))?;
        thread::scope(|scope| {
            let producer = scope.spawn(move || {
                let out = BufWriter::with_capacity(256 << 10, writer);
                match transfer {
                    Ok(transfer) => self.copy_snapshot(connection, transfer, out),
                    Err(_) => self.scan(connection, out),
                }
            });
            let mut reader = reader;
            let stored = sink.add(STREAM, &mut reader);
            // The producer sees a broken pipe if the store gave up first.
            drop(reader);
            let produced = producer.join().unwrap_or_else(|_| Err(self.failed("the capture thread panicked")));
            match (produced, stored) {
                (Ok(()), stored) => stored,
                // The server's failure explains a short stream; the store's explains
                // the producer's broken pipe.
                (Err(error), Ok(())) | (Err(_), Err(error)) => Err(error),
            }
        })
    }

    fn check_restore(&self, source: &dyn DumpSource) -> Result<()> {
        let input = source.open(STREAM)?;
        let mut rdb = RdbReader::new(BufReader::new(input)).map_err(|error| self.damaged(error))?;
        self.dump_scope(&mut rdb).map(drop)
    }

    fn restore(&self, source: &dyn DumpSource) -> Result<()> {
        self.check_restore(source)?;
        let damaged = |error: RdbError| self.damaged(error);
        let input = source.open(STREAM)?;
        let mut rdb = RdbReader::new(BufReader::with_capacity(256 << 10, input)).map_err(damaged)?;
        let (dump_db, mut item) = self.dump_scope(&mut rdb)?;
        let mut connection = self.connect()?;
        match self.db {
            Some(db) => {
                self.select(&mut connection, db)?;
                self.call(&mut connection, &[b"FLUSHDB", b"ASYNC"])?;
            }
            None => {
                self.call(&mut connection, &[b"FLUSHALL", b"ASYNC"])?;
                // Servers before 7.0 have no functions to flush.
                connection.call(&[b"FUNCTION", b"FLUSH"]).map_err(|error| self.lost(&error))?;
            }
        }
        let mut batch = Batch { service: self, connection, pending: Vec::new(), bytes: 0 };
        let mut db = self.db.or(dump_db).unwrap_or(0);
        let (mut expire, mut idle, mut freq) = (None, None, None);
        loop {
            match item {
                Item::SelectDb(number) if self.db.is_none() => {
                    db = number;
                    batch
                        .send(&[b"SELECT", number.to_string().as_bytes()], || format!("selecting database {number}"))?;
                }
                Item::ExpireAt(at) => expire = Some(at),
                Item::Idle(seconds) => idle = Some(seconds),
                Item::Freq(count) => freq = Some(count),
                Item::Function(code) if self.db.is_none() => {
                    batch
                        .send(&[b"FUNCTION", b"LOAD", b"REPLACE", &code], || "loading a function library".to_owned())?;
                }
                Item::Key { kind, key } => {
                    let mut value = vec![kind];
                    rdb.value(kind, &mut value).map_err(damaged)?;
                    // Expiries are absolute: a key already expired is left out.
                    if expire.is_none_or(|at| at > now_millis()) {
                        let payload = rdb::dump_payload(value);
                        let ttl = expire.unwrap_or(0).to_string();
                        let mut args: Vec<&[u8]> =
                            vec![b"RESTORE", &key, ttl.as_bytes(), &payload, b"REPLACE", b"ABSTTL"];
                        let idle_text = idle.map(|seconds: u64| seconds.to_string());
                        let freq_text = freq.map(|count: u8| count.to_string());
                        if let Some(text) = &idle_text {
                            args.extend([&b"IDLETIME"[..], text.as_bytes()]);
                        } else if let Some(text) = &freq_text {
                            args.extend([&b"FREQ"[..], text.as_bytes()]);
                        }
                        batch.send(&args, || {
                            format!("restoring key `{}` in database {db}", String::from_utf8_lossy(&key))
                        })?;
                    }
                    (expire, idle, freq) = (None, None, None);
                }
                Item::Eof => break,
                _ => {}
            }
            item = rdb.next().map_err(damaged)?;
        }
        let (stored, computed) = rdb.checksum().map_err(damaged)?;
        batch.finish()?;
        if stored != 0 && stored != computed {
            return Err(Error::Corrupt {
                what: format!("the dump of service `{}`", self.name),
                detail: "its checksum does not match".to_owned(),
            });
        }
        Ok(())
    }
}

/// Commands sent ahead of their replies, which are checked a batch at a time.
struct Batch<'a> {
    service: &'a RedisService,
    connection: Connection,
    /// What each command still unanswered does, for an error message.
    pending: Vec<String>,
    bytes: usize,
}

impl Batch<'_> {
    fn send(&mut self, args: &[&[u8]], what: impl FnOnce() -> String) -> Result<()> {
        self.connection.send(args).map_err(|error| self.service.lost(&error))?;
        self.pending.push(what());
        self.bytes += args.iter().map(|arg| arg.len()).sum::<usize>();
        if self.pending.len() >= PIPELINE || self.bytes >= 8 << 20 { self.finish() } else { Ok(()) }
    }

    /// Reads the replies of everything sent; fails on the first error.
    fn finish(&mut self) -> Result<()> {
        self.connection.flush().map_err(|error| self.service.lost(&error))?;
        let mut first_error = None;
        for what in self.pending.drain(..) {
            let reply = self.connection.reply().map_err(|error| self.service.lost(&error))?;
            if let (Reply::Error(message), None) = (reply, &first_error) {
                first_error = Some(format!("{what}: {message}"));
            }
        }
        self.bytes = 0;
        first_error.map_or(Ok(()), |detail| Err(self.service.failed(detail)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_name_a_database_or_the_whole_instance() -> Result<()> {
        let service = RedisService::new("cache", "redis://:s%40cret@127.0.0.1:6380/4")?;
        assert_eq!(service.db, Some(4));
        assert_eq!(service.password.as_deref(), Some("s@cret"));
        assert_eq!(service.address(), "redis://127.0.0.1:6380/4", "the password is never shown");
        let whole = RedisService::new("cache", "redis://localhost")?;
        assert_eq!((whole.db, whole.address()), (None, "redis://localhost:6379".to_owned()));
        assert_eq!(RedisService::new("cache", "redis://127.0.0.1:6379/")?.db, None);
        let socket = RedisService::new("cache", "unix:///run/redis/main.sock?db=2")?;
        assert_eq!(socket.endpoint, Endpoint::Unix("/run/redis/main.sock".into()));
        assert_eq!((socket.db, socket.address()), (Some(2), "unix:///run/redis/main.sock?db=2".to_owned()));
        for bad in ["redis://127.0.0.1/main", "rediss://127.0.0.1/0", "http://x", "unix://"] {
            let error = RedisService::new("cache", bad).err().map(|error| error.to_string()).unwrap_or_default();
            assert!(error.starts_with("service `cache`: its url"), "{bad}: {error}");
        }
        Ok(())
    }
}
