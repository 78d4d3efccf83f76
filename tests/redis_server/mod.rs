//! A throw-away `redis-server` for one test (so tests never share a database), and a
//! small client that describes every key exactly: type, value and remaining TTL.

#![allow(dead_code, reason = "each test binary uses a different part of the fixture")]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub type Failure = Box<dyn std::error::Error>;

/// A redis-server listening on a free TCP port of 127.0.0.1 and on a Unix socket;
/// keeps nothing on disk; killed when dropped.
pub struct RedisServer {
    child: Child,
    pub port: u16,
    pub socket: PathBuf,
    _dir: tempfile::TempDir,
}

impl RedisServer {
    /// A server whose socket is at `socket` (or in a directory of its own), started
    /// with `extra` configuration arguments.
    pub fn start(socket: Option<&Path>, extra: &[&str]) -> Result<Self, Failure> {
        let dir = tempfile::Builder::new().prefix("envsnap-redis-").tempdir()?;
        let socket = socket.map_or_else(|| dir.path().join("redis.sock"), Path::to_path_buf);
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .arg("--unixsocket")
            .arg(&socket)
            .args(["--save", "", "--appendonly", "no", "--repl-diskless-sync-delay", "0"])
            .args(["--enable-debug-command", "yes", "--daemonize", "no"])
            .arg("--dir")
            .arg(dir.path())
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|error| format!("cannot start redis-server (is it installed?): {error}"))?;
        let server = RedisServer { child, port, socket, _dir: dir };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(mut client) = server.client()
                && client.call(&["PING"])? == Value::Status("PONG".into())
            {
                return Ok(server);
            }
            if Instant::now() > deadline {
                return Err("redis-server did not start within 10 s".into());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `redis://127.0.0.1:<port>[/db]`.
    pub fn url(&self, db: Option<u32>) -> String {
        format!("redis://127.0.0.1:{}{}", self.port, db.map(|db| format!("/{db}")).unwrap_or_default())
    }

    pub fn client(&self) -> Result<Client, Failure> {
        let stream = TcpStream::connect(("127.0.0.1", self.port))?;
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        Ok(Client { reader: BufReader::new(stream.try_clone()?), writer: stream })
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A reply.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Value {
    Nil,
    Status(String),
    Error(String),
    Int(i64),
    Bytes(Vec<u8>),
    Array(Vec<Value>),
}

pub struct Client {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Client {
    pub fn call<A: AsRef<[u8]>>(&mut self, args: &[A]) -> Result<Value, Failure> {
        let mut request = format!("*{}\r\n", args.len()).into_bytes();
        for arg in args {
            request.extend_from_slice(format!("${}\r\n", arg.as_ref().len()).as_bytes());
            request.extend_from_slice(arg.as_ref());
            request.extend_from_slice(b"\r\n");
        }
        self.writer.write_all(&request)?;
        self.reply()
    }

    /// Calls and fails on an error reply.
    pub fn ok<A: AsRef<[u8]>>(&mut self, args: &[A]) -> Result<Value, Failure> {
        match self.call(args)? {
            Value::Error(message) => Err(format!("{:?}: {message}", String::from_utf8_lossy(args[0].as_ref())).into()),
            value => Ok(value),
        }
    }

    fn reply(&mut self) -> Result<Value, Failure> {
        let mut line = Vec::new();
        self.reader.read_until(b'\n', &mut line)?;
        let text = String::from_utf8_lossy(line.get(1..line.len().saturating_sub(2)).unwrap_or_default()).into_owned();
        Ok(match line.first() {
            Some(b'+') => Value::Status(text),
            Some(b'-') => Value::Error(text),
            Some(b':') => Value::Int(text.parse()?),
            Some(b'$') => {
                let length: i64 = text.parse()?;
                if length < 0 {
                    return Ok(Value::Nil);
                }
                let mut data = vec![0; length as usize + 2];
                self.reader.read_exact(&mut data)?;
                data.truncate(length as usize);
                Value::Bytes(data)
            }
            Some(b'*') => {
                let count: i64 = text.parse()?;
                if count < 0 {
                    return Ok(Value::Nil);
                }
                Value::Array((0..count).map(|_| self.reply()).collect::<Result<_, _>>()?)
            }
            _ => return Err(format!("unexpected reply {line:?}").into()),
        })
    }

    pub fn select(&mut self, db: u32) -> Result<(), Failure> {
        self.ok(&["SELECT", &db.to_string()]).map(drop)
    }

    /// Every key of database `db`: its type, its whole value in a canonical form, and
    /// its remaining TTL in milliseconds (-1: none).
    pub fn describe(&mut self, db: u32) -> Result<BTreeMap<Vec<u8>, Key>, Failure> {
        self.select(db)?;
        let mut keys = BTreeMap::new();
        let mut cursor = b"0".to_vec();
        loop {
            let Value::Array(reply) = self.ok(&[&b"SCAN"[..], &cursor, b"COUNT", b"1000"])? else {
                return Err("SCAN".into());
            };
            let [Value::Bytes(next), Value::Array(names)] = &reply[..] else { return Err("SCAN".into()) };
            for name in names {
                let Value::Bytes(name) = name else { continue };
                let kind = match self.ok(&[&b"TYPE"[..], name])? {
                    Value::Status(kind) => kind,
                    other => return Err(format!("TYPE: {other:?}").into()),
                };
                let key: &[u8] = name;
                let mut value = match kind.as_str() {
                    "string" => self.ok(&[&b"GET"[..], key])?,
                    "hash" => self.ok(&[&b"HGETALL"[..], key])?,
                    "list" => self.ok(&[&b"LRANGE"[..], key, b"0", b"-1"])?,
                    "set" => self.ok(&[&b"SMEMBERS"[..], key])?,
                    "zset" => self.ok(&[&b"ZRANGE"[..], key, b"0", b"-1", b"WITHSCORES"])?,
                    "stream" => self.ok(&[&b"XINFO"[..], b"STREAM", key, b"FULL"])?,
                    other => return Err(format!("unexpected type {other}").into()),
                };
                if kind == "hash" || kind == "set" {
                    // Unordered: pairs (or members) sorted.
                    if let Value::Array(items) = &mut value {
                        if kind == "hash" {
                            let mut pairs: Vec<Vec<Value>> = items.chunks(2).map(<[Value]>::to_vec).collect();
                            pairs.sort();
                            *items = pairs.into_iter().flatten().collect();
                        } else {
                            items.sort();
                        }
                    }
                }
                let Value::Int(ttl) = self.ok(&[&b"PTTL"[..], key])? else { return Err("PTTL".into()) };
                keys.insert(name.clone(), Key { kind, value, ttl });
            }
            if next == b"0" {
                break;
            }
            cursor = next.clone();
        }
        Ok(keys)
    }
}

/// One key as [`Client::describe`] sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Key {
    pub kind: String,
    pub value: Value,
    pub ttl: i64,
}

/// Fails unless `restored` holds exactly the keys of `original` with the same values,
/// and each TTL is the original's less at most `elapsed` (and a little).
pub fn assert_same_keys(
    original: &BTreeMap<Vec<u8>, Key>,
    restored: &BTreeMap<Vec<u8>, Key>,
    elapsed: Duration,
) -> Result<(), Failure> {
    let names = |keys: &BTreeMap<Vec<u8>, Key>| {
        keys.keys().map(|k| String::from_utf8_lossy(k).into_owned()).collect::<Vec<_>>()
    };
    if original.len() != restored.len() || original.keys().ne(restored.keys()) {
        return Err(format!("keys differ:\n  original {:?}\n  restored {:?}", names(original), names(restored)).into());
    }
    for (name, want) in original {
        let got = &restored[name];
        let shown = String::from_utf8_lossy(name);
        if (&want.kind, &want.value) != (&got.kind, &got.value) {
            return Err(format!("key {shown:?} differs:\n  original {want:?}\n  restored {got:?}").into());
        }
        let slack = elapsed.as_millis() as i64 + 1000;
        let ttl_ok =
            if want.ttl < 0 { got.ttl == want.ttl } else { got.ttl <= want.ttl && got.ttl >= want.ttl - slack };
        if !ttl_ok {
            return Err(format!(
                "key {shown:?}: TTL {} ms before, {} ms after (elapsed {elapsed:?})",
                want.ttl, got.ttl
            )
            .into());
        }
    }
    Ok(())
}

/// Fills database `db` with one key of every type and encoding, binary keys and values,
/// and keys with expiries.
pub fn fill(client: &mut Client, db: u32, prefix: &str) -> Result<(), Failure> {
    client.select(db)?;
    let key = |name: &str| format!("{prefix}{name}").into_bytes();
    let mut set = |args: Vec<Vec<u8>>| client.ok(&args).map(drop);
    let bytes = |text: &str| text.as_bytes().to_vec();
    set(vec![bytes("SET"), key("string"), bytes("hello")])?;
    set(vec![bytes("SET"), key("number"), bytes("12345")])?;
    set(vec![bytes("SET"), key("negative"), bytes("-7")])?;
    // A long, compressible value (LZF in RDB) and a long, compressible key name.
    set(vec![bytes("SET"), key("long"), "abc".repeat(5000).into_bytes()])?;
    set(vec![bytes("SET"), key(&"k".repeat(300)), bytes("long key")])?;
    // Binary key and value.
    let mut binary_key = key("bin\0\u{1}");
    binary_key.extend_from_slice(&[0xff, 0xfe, b'\r', b'\n']);
    set(vec![bytes("SET"), binary_key, vec![0, 1, 2, 255, 254, b'\r', b'\n', 0]])?;
    set(vec![bytes("HSET"), key("hash-small"), bytes("f1"), bytes("v1"), bytes("f2"), bytes("v2")])?;
    let mut big_hash = vec![bytes("HSET"), key("hash-big")];
    for n in 0..600 {
        big_hash.push(format!("field{n}").into_bytes());
        big_hash.push(format!("value{n}").repeat(3).into_bytes());
    }
    set(big_hash)?;
    set(vec![bytes("RPUSH"), key("list-small"), bytes("a"), bytes("b"), bytes("a")])?;
    let mut big_list = vec![bytes("RPUSH"), key("list-big")];
    big_list.extend((0..5000).map(|n| format!("item {n}").into_bytes()));
    set(big_list)?;
    set(vec![bytes("SADD"), key("set-ints"), bytes("1"), bytes("2"), bytes("300000")])?;
    set(vec![bytes("SADD"), key("set-small"), bytes("x"), bytes("y")])?;
    let mut big_set = vec![bytes("SADD"), key("set-big")];
    big_set.extend((0..1000).map(|n| format!("member {n}").into_bytes()));
    set(big_set)?;
    set(vec![bytes("ZADD"), key("zset-small"), bytes("1.5"), bytes("a"), bytes("-2"), bytes("b")])?;
    let mut big_zset = vec![bytes("ZADD"), key("zset-big")];
    for n in 0..500 {
        big_zset.push(format!("{}.25", n * 3).into_bytes());
        big_zset.push(format!("member {n}").into_bytes());
    }
    set(big_zset)?;
    for n in 0..3 {
        set(vec![
            bytes("XADD"),
            key("stream"),
            format!("{}-1", 1000 + n).into_bytes(),
            bytes("field"),
            format!("v{n}").into_bytes(),
        ])?;
    }
    set(vec![bytes("XGROUP"), bytes("CREATE"), key("stream"), bytes("readers"), bytes("0")])?;
    set(vec![
        bytes("XREADGROUP"),
        bytes("GROUP"),
        bytes("readers"),
        bytes("alice"),
        bytes("COUNT"),
        bytes("2"),
        bytes("STREAMS"),
        key("stream"),
        bytes(">"),
    ])?;
    set(vec![bytes("SET"), key("session"), bytes("expires in an hour"), bytes("PX"), bytes("3600000")])?;
    set(vec![bytes("HSET"), key("expiring-hash"), bytes("a"), bytes("b")])?;
    set(vec![bytes("PEXPIRE"), key("expiring-hash"), bytes("900000")])?;
    Ok(())
}
