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

/// Replies longer than this are refused rather than allocated: no reply envsnap asks
/// for is larger than Redis's own limit on a value (512 MiB), plus room for framing.
const MAX_BULK: i64 = 1 << 30;

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
        let line = self.line()?;
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
                let mut data = vec![0; length as usize + 2];
                self.reader.read_exact(&mut data)?;
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
                let mut items = Vec::with_capacity(count.min(1024) as usize);
                for _ in 0..count {
                    items.push(self.reply()?);
                }
                Ok(Reply::Array(Some(items)))
            }
            _ => Err(invalid("a reply of unknown type")),
        }
    }

    /// Reads one line, without its line ending (`\r\n`, or a bare `\n`, which a master
    /// sends to keep a replica waiting while it prepares a snapshot).
    pub fn line(&mut self) -> io::Result<Vec<u8>> {
        let mut line = Vec::new();
        (&mut self.reader).take(64 << 10).read_until(b'\n', &mut line)?;
        if !line.ends_with(b"\n") {
            return Err(if line.len() >= 64 << 10 {
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

    /// The raw bytes that follow, for the snapshot a `SYNC` streams.
    pub fn raw(&mut self) -> &mut dyn BufRead {
        &mut self.reader
    }
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
