//! Just enough of the Redis protocol (RESP2) for envsnap: pipelined commands, their
//! replies, and the raw byte stream a `SYNC` answers with.
//!
//! Written by hand rather than taken from the `redis` crate because a capture reads the
//! replication stream itself, which no client library exposes, and the few commands
//! needed besides fit in this file.

use std::io::{self, BufRead, BufReader, BufWriter, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::Duration;

/// Where a server listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Endpoint {
    /// A TCP host and port.
    Tcp {
        /// Host name or address.
        host: String,
        /// Port.
        port: u16,
    },
    /// A Unix socket.
    Unix(PathBuf),
}

/// How long to wait for a connection, and for any single read or write.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timeouts {
    /// Connecting.
    pub connect: Duration,
    /// One read or write once connected.
    pub io: Duration,
}

/// A byte stream to the server, over TCP or a Unix socket.
#[derive(Debug)]
enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Stream {
    fn try_clone(&self) -> io::Result<Stream> {
        Ok(match self {
            Stream::Tcp(stream) => Stream::Tcp(stream.try_clone()?),
            Stream::Unix(stream) => Stream::Unix(stream.try_clone()?),
        })
    }
}

impl Read for Stream {
    fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(stream) => stream.read(buffer),
            Stream::Unix(stream) => stream.read(buffer),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buffer: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(stream) => stream.write(buffer),
            Stream::Unix(stream) => stream.write(buffer),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Tcp(stream) => stream.flush(),
            Stream::Unix(stream) => stream.flush(),
        }
    }
}

/// One reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Reply {
    /// `+OK` and the like.
    Status(String),
    /// `-ERR …`: the server refused the command.
    Error(String),
    /// `:42`.
    Integer(i64),
    /// `$…`: bytes, or nil.
    Bulk(Option<Vec<u8>>),
    /// `*…`: replies, or nil.
    Array(Option<Vec<Reply>>),
}

/// A connection to one server.
pub(crate) struct Connection {
    reader: BufReader<Stream>,
    writer: BufWriter<Stream>,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection").finish_non_exhaustive()
    }
}

/// Replies longer than this are refused: no reply envsnap asks for is larger than
/// Redis's own limit on a value (512 MiB), plus room for framing.
const MAX_BULK: i64 = 1 << 30;

/// Arrays nested deeper than this are refused rather than followed: the deepest reply
/// envsnap asks for (`SCAN`: a cursor and an array of keys) has two levels, and each
/// level costs a stack frame, so a server sending `*1` forever must not exhaust the stack.
const MAX_DEPTH: usize = 16;

/// The longest line read, so that a server that never sends a line end costs no more.
const MAX_LINE: u64 = 64 << 10;

impl Connection {
    /// Connects to `endpoint`.
    pub fn open(endpoint: &Endpoint, timeouts: Timeouts) -> io::Result<Connection> {
        let stream = match endpoint {
            Endpoint::Tcp { host, port } => {
                let mut last_error = io::Error::new(io::ErrorKind::NotFound, format!("`{host}` has no address"));
                let mut connected = None;
                for address in (host.as_str(), *port).to_socket_addrs()? {
                    match TcpStream::connect_timeout(&address, timeouts.connect) {
                        Ok(stream) => {
                            connected = Some(stream);
                            break;
                        }
                        Err(error) => last_error = error,
                    }
                }
                let stream = connected.ok_or(last_error)?;
                stream.set_nodelay(true)?;
                stream.set_read_timeout(Some(timeouts.io))?;
                stream.set_write_timeout(Some(timeouts.io))?;
                Stream::Tcp(stream)
            }
            Endpoint::Unix(path) => {
                let stream = UnixStream::connect(path)?;
                stream.set_read_timeout(Some(timeouts.io))?;
                stream.set_write_timeout(Some(timeouts.io))?;
                Stream::Unix(stream)
            }
        };
        let writer = BufWriter::with_capacity(64 << 10, stream.try_clone()?);
        Ok(Connection { reader: BufReader::with_capacity(64 << 10, stream), writer })
    }

    /// Queues a command; [`flush`](Self::flush) sends what is queued.
    pub fn send(&mut self, args: &[&[u8]]) -> io::Result<()> {
        write!(self.writer, "*{}\r\n", args.len())?;
        for arg in args {
            write!(self.writer, "${}\r\n", arg.len())?;
            self.writer.write_all(arg)?;
            self.writer.write_all(b"\r\n")?;
        }
        Ok(())
    }

    /// Sends every queued command.
    pub fn flush(&mut self) -> io::Result<()> {
        self.writer.flush()
    }

    /// Sends one command and reads its reply.
    pub fn call(&mut self, args: &[&[u8]]) -> io::Result<Reply> {
        self.send(args)?;
        self.flush()?;
        self.reply()
    }

    /// Reads the next reply.
    pub fn reply(&mut self) -> io::Result<Reply> {
        read_reply(&mut self.reader)
    }

    /// Reads one line, without its line ending (`\r\n`, or a bare `\n`, which a master
    /// sends to keep a replica waiting while it prepares a snapshot).
    pub fn line(&mut self) -> io::Result<Vec<u8>> {
        read_line(&mut self.reader)
    }

    /// The raw bytes that follow, for the snapshot a `SYNC` streams.
    pub fn raw(&mut self) -> &mut dyn BufRead {
        &mut self.reader
    }
}

/// Reads one reply from `reader`.
///
/// Nothing is allocated on the word of a length the server sends: a bulk reply grows as
/// its bytes arrive and an array as its items do, so a reply that claims a gigabyte and
/// stops costs what it really sent.
pub(crate) fn read_reply(reader: &mut impl BufRead) -> io::Result<Reply> {
    reply_at(reader, 0)
}

fn reply_at<R: BufRead>(reader: &mut R, depth: usize) -> io::Result<Reply> {
    let line = read_line(reader)?;
    let (kind, rest) = line.split_first().ok_or_else(|| invalid("an empty reply line"))?;
    let text = || String::from_utf8_lossy(rest).into_owned();
    match kind {
        b'+' => Ok(Reply::Status(text())),
        b'-' => Ok(Reply::Error(text())),
        b':' => Ok(Reply::Integer(number(rest)?)),
        b'$' => {
            let length = number(rest)?;
            if length < 0 {
                return Ok(Reply::Bulk(None));
            }
            if length > MAX_BULK {
                return Err(invalid("a reply larger than 1 GiB"));
            }
            let framed = length as u64 + 2;
            let mut data = Vec::new();
            reader.by_ref().take(framed).read_to_end(&mut data)?;
            if data.len() as u64 != framed {
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the server closed the connection mid-reply"));
            }
            if !data.ends_with(b"\r\n") {
                return Err(invalid("a bulk reply without its CRLF"));
            }
            data.truncate(length as usize);
            Ok(Reply::Bulk(Some(data)))
        }
        b'*' => {
            let count = number(rest)?;
            if count < 0 {
                return Ok(Reply::Array(None));
            }
            if depth >= MAX_DEPTH {
                return Err(invalid(&format!("arrays nested more than {MAX_DEPTH} deep")));
            }
            let mut items = Vec::new();
            for _ in 0..count {
                items.push(reply_at(reader, depth + 1)?);
            }
            Ok(Reply::Array(Some(items)))
        }
        _ => Err(invalid("a reply of unknown type")),
    }
}

/// Reads one line from `reader`, without its line ending (`\r\n` or a bare `\n`).
pub(crate) fn read_line(reader: &mut impl BufRead) -> io::Result<Vec<u8>> {
    let mut line = Vec::new();
    reader.by_ref().take(MAX_LINE).read_until(b'\n', &mut line)?;
    if !line.ends_with(b"\n") {
        return Err(if line.len() as u64 >= MAX_LINE {
            invalid("a reply line longer than 64 KiB")
        } else {
            io::Error::new(io::ErrorKind::UnexpectedEof, "the server closed the connection")
        });
    }
    line.pop();
    if line.ends_with(b"\r") {
        line.pop();
    }
    Ok(line)
}

fn number(text: &[u8]) -> io::Result<i64> {
    std::str::from_utf8(text).ok().and_then(|text| text.parse().ok()).ok_or_else(|| invalid("a malformed number"))
}

fn invalid(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("the server sent {what}"))
}

impl Reply {
    /// The reply, or the server's error as an `Err`.
    pub fn ok(self) -> Result<Reply, String> {
        match self {
            Reply::Error(message) => Err(message),
            reply => Ok(reply),
        }
    }

    /// The bytes of a bulk reply.
    pub fn into_bytes(self) -> Option<Vec<u8>> {
        match self {
            Reply::Bulk(bytes) => bytes,
            Reply::Status(text) => Some(text.into_bytes()),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::element::service::redis::rdb::allocation;

    fn parse(bytes: &[u8]) -> io::Result<Reply> {
        read_reply(&mut &bytes[..])
    }

    #[test]
    fn replies_of_every_type_parse() -> io::Result<()> {
        assert_eq!(parse(b"+OK\r\n")?, Reply::Status("OK".to_owned()));
        assert_eq!(parse(b"-ERR no\r\n")?, Reply::Error("ERR no".to_owned()));
        assert_eq!(parse(b":-42\r\n")?, Reply::Integer(-42));
        assert_eq!(parse(b"$3\r\na\r\n\r\n")?, Reply::Bulk(Some(b"a\r\n".to_vec())));
        assert_eq!(parse(b"$-1\r\n")?, Reply::Bulk(None));
        assert_eq!(parse(b"*-1\r\n")?, Reply::Array(None));
        let scan = parse(b"*2\r\n$1\r\n0\r\n*1\r\n$1\r\nk\r\n")?;
        let keys = Reply::Array(Some(vec![Reply::Bulk(Some(b"k".to_vec()))]));
        assert_eq!(scan, Reply::Array(Some(vec![Reply::Bulk(Some(b"0".to_vec())), keys])));
        Ok(())
    }

    #[test]
    fn deep_nesting_is_refused_without_exhausting_the_stack() {
        let nested = b"*1\r\n".repeat(1_000_000);
        let error = parse(&nested).err();
        assert!(
            error.as_ref().is_some_and(|error| error.kind() == io::ErrorKind::InvalidData
                && error.to_string().contains("nested more than 16 deep")),
            "{error:?}"
        );
        let mut just_deep_enough = b"*1\r\n".repeat(MAX_DEPTH);
        just_deep_enough.extend_from_slice(b":1\r\n");
        assert!(parse(&just_deep_enough).is_ok());
    }

    #[test]
    fn a_bulk_claiming_a_gibibyte_costs_only_what_arrived() {
        let started = std::time::Instant::now();
        let (result, largest) = allocation::largest(|| parse(b"$1073741823\r\nabc"));
        assert!(result.is_err_and(|error| error.kind() == io::ErrorKind::UnexpectedEof));
        assert!(largest < 64 << 10, "the claimed length drove an allocation of {largest} bytes");
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
        assert!(parse(b"$1073741825\r\n").is_err_and(|error| error.kind() == io::ErrorKind::InvalidData));
    }

    #[test]
    fn an_array_claiming_more_items_than_sent_costs_only_what_arrived() {
        let (result, largest) = allocation::largest(|| parse(b"*9223372036854775807\r\n:1\r\n:2\r\n"));
        assert!(result.is_err_and(|error| error.kind() == io::ErrorKind::UnexpectedEof));
        assert!(largest < 64 << 10, "the claimed count drove an allocation of {largest} bytes");
    }

    #[test]
    fn a_line_without_an_end_is_cut_at_64_kib() {
        let endless = vec![b'+'; 1 << 20];
        let error = parse(&endless).err();
        assert!(error.is_some_and(|error| error.to_string().contains("longer than 64 KiB")));
    }
}
