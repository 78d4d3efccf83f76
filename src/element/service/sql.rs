//! What the SQL adapters ([`super::postgresql`], [`super::mysql`]) share: the header
//! stream that opens their dumps, the words for their tools' failures, and the errors
//! of streams read back from the store.

use std::io::{self, Read};
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::DumpSource;
use super::process::ToolError;
use crate::error::{Error, Result};

/// The stream that opens an SQL adapter's dump: an SQL comment that says what the dump
/// is, with the adapter's header, as JSON, on its last line. Being a comment, it leaves
/// the streams concatenated a dump any client loads.
pub const HEADER: &str = "0-header.sql";

/// The text of the [`HEADER`] stream: `title`, then `header` as JSON.
pub fn header_text(title: &str, header: &impl Serialize) -> String {
    let json = serde_json::to_string(header).unwrap_or_else(|_| "{}".to_owned());
    format!("--\n-- {title}\n--\n-- {json}\n")
}

/// Reads the [`HEADER`] stream of a dump taken by `adapter`, refusing one that is not
/// there, cannot be read, or has a layout newer than `layout_format`. `failed` turns a
/// reason into the adapter's error, which names the service.
pub fn read_header<H: DeserializeOwned>(
    source: &dyn DumpSource,
    adapter: &str,
    layout_format: u32,
    failed: impl Fn(String) -> Error,
) -> Result<H> {
    if !source.names().iter().any(|name| name == HEADER) {
        return Err(failed(format!(
            "the snapshot's dump has no `{HEADER}`: it was not taken by envsnap's {adapter} adapter"
        )));
    }
    let mut text = String::new();
    source.open(HEADER)?.take(64 << 10).read_to_string(&mut text).map_err(|error| stream_error(error, HEADER))?;
    let json = header_json(&text).ok_or_else(|| failed(format!("the dump's `{HEADER}` cannot be read")))?;
    let format = json.get("format").and_then(serde_json::Value::as_u64).unwrap_or(0);
    if format > u64::from(layout_format) {
        return Err(failed(format!(
            "the dump has layout version {format}, newer than this envsnap knows ({layout_format}): upgrade envsnap"
        )));
    }
    serde_json::from_value(json).map_err(|error| failed(format!("the dump's `{HEADER}` cannot be read: {error}")))
}

/// The JSON line of a [`header_text`].
fn header_json(text: &str) -> Option<serde_json::Value> {
    text.lines()
        .find_map(|line| line.strip_prefix("-- {").and_then(|json| serde_json::from_str(&format!("{{{json}")).ok()))
}

/// The environment variable that sets how long a dump or a restore waits for a lock
/// held by another session before it gives up, in seconds (a decimal fraction is
/// allowed).
pub const LOCK_TIMEOUT_VARIABLE: &str = "ENVSNAP_LOCK_TIMEOUT";

/// How long a dump or restore waits for a lock when [`LOCK_TIMEOUT_VARIABLE`] is not
/// set: long enough for a short migration or `VACUUM FULL` of a small table to end,
/// short enough that a snapshot stuck behind a session left idle holding a lock says
/// so within a minute.
pub const DEFAULT_LOCK_TIMEOUT: Duration = Duration::from_secs(60);

/// The lock timeout: [`LOCK_TIMEOUT_VARIABLE`], or [`DEFAULT_LOCK_TIMEOUT`]. `failed`
/// turns the reason a value is refused into the adapter's error.
pub fn lock_timeout(failed: impl Fn(String) -> Error) -> Result<Duration> {
    let Some(value) = std::env::var_os(LOCK_TIMEOUT_VARIABLE) else { return Ok(DEFAULT_LOCK_TIMEOUT) };
    let text = value.to_string_lossy();
    match text.trim().parse::<f64>() {
        // At least a millisecond: 0 would mean "wait forever" to the servers.
        Ok(seconds) if seconds.is_finite() && (0.001..=86_400.0).contains(&seconds) => {
            Ok(Duration::from_millis((seconds * 1000.0).round() as u64))
        }
        _ => Err(failed(format!(
            "{LOCK_TIMEOUT_VARIABLE} is `{text}`: set it to how many seconds a dump or restore may wait for a lock \
             (from 0.001 to 86400), or unset it for {} s",
            DEFAULT_LOCK_TIMEOUT.as_secs()
        ))),
    }
}

/// `duration` for people: `2 s`, `0.5 s`.
pub fn show_seconds(duration: Duration) -> String {
    let millis = duration.as_millis();
    if millis.is_multiple_of(1000) { format!("{} s", millis / 1000) } else { format!("{} s", duration.as_secs_f64()) }
}

/// What a database's client tools need said when they fail.
pub struct Advice {
    /// What to install when one is missing, e.g. "install the PostgreSQL client tools
    /// (e.g. `apt install postgresql-client`)".
    pub install: &'static str,
    /// Whether a tool's stderr says it could not reach or log in to the server.
    pub connecting: fn(&str) -> bool,
    /// What to do about a tool's stderr, as `"; …"`, or `""` when there is nothing to say.
    pub hint: fn(&str) -> &'static str,
}

impl Advice {
    /// `error` in words for the user: what failed, what the tool said (the end of its
    /// stderr, where the reason is), and what to do.
    pub fn describe(&self, error: ToolError) -> String {
        match error {
            ToolError::Missing { program } => {
                format!("`{program}` is not installed or not in PATH: {}", self.install)
            }
            ToolError::Io { program, error } => format!("cannot run `{program}`: {error}"),
            ToolError::Stopped { program } => format!("`{program}` was not started: envsnap was told to stop"),
            ToolError::Failed { program, status, stderr } => {
                let said = summarize(&stderr);
                let hint = (self.hint)(&stderr);
                if (self.connecting)(&stderr) {
                    let reason = said.strip_prefix(&format!("{program}: error: ")).unwrap_or(&said);
                    format!("cannot connect: {reason}{hint}")
                } else if said.is_empty() {
                    format!("{program} failed ({status}){hint}")
                } else {
                    format!("{program} failed ({status}): {said}{hint}")
                }
            }
        }
    }
}

/// A tool's message on one line: the lines that continue another joined to it, blank
/// lines dropped, the last six kept (the error is at the end).
fn summarize(stderr: &str) -> String {
    let mut lines: Vec<String> = Vec::new();
    for line in stderr.lines() {
        match lines.last_mut() {
            Some(last) if line.starts_with([' ', '\t']) => {
                last.push(' ');
                last.push_str(line.trim());
            }
            _ if line.trim().is_empty() => {}
            _ => lines.push(line.trim().to_owned()),
        }
    }
    let keep = lines.len().saturating_sub(6);
    lines[keep..].join("; ")
}

/// A filter that rewrites a stream piece by piece as it passes (rows merged, lines
/// dropped, a dump cut where tables start). It only makes the next piece; [`Pieces`]
/// serves the pieces as a reader.
pub trait Produce {
    /// Appends the next piece to `out`, which is empty; returns `false` once nothing
    /// follows what it appended. A piece may be empty when input was taken in and
    /// nothing is due out yet.
    fn produce(&mut self, out: &mut Vec<u8>) -> io::Result<bool>;
}

/// A [`Produce`]r read as a stream.
pub struct Pieces<P> {
    producer: P,
    out: Vec<u8>,
    position: usize,
    done: bool,
}

impl<P: Produce> Pieces<P> {
    /// The pieces of `producer`, after `first`.
    pub fn new(producer: P, first: Vec<u8>) -> Self {
        Pieces { producer, out: first, position: 0, done: false }
    }

    /// The producer, e.g. to ask it why it stopped.
    pub fn producer_mut(&mut self) -> &mut P {
        &mut self.producer
    }
}

impl<P: Produce> Read for Pieces<P> {
    fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
        while self.position == self.out.len() {
            if self.done {
                return Ok(0);
            }
            self.out.clear();
            self.position = 0;
            self.done = !self.producer.produce(&mut self.out)?;
        }
        let count = buffer.len().min(self.out.len() - self.position);
        buffer[..count].copy_from_slice(&self.out[self.position..self.position + count]);
        self.position += count;
        Ok(count)
    }
}

/// Turns an I/O error met reading stream `stream` back into the store error it carries
/// (so a damaged chunk is reported as such), or names the stream.
pub fn stream_error(error: io::Error, stream: &str) -> Error {
    if error.get_ref().is_some_and(|inner| inner.is::<Error>()) {
        if let Some(Ok(inner)) = error.into_inner().map(|inner| inner.downcast::<Error>()) {
            return *inner;
        }
        return Error::Corrupt { what: format!("stream `{stream}`"), detail: "lost error".to_owned() };
    }
    Error::io("reading", stream, error)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_round_trip_whatever_the_names_hold() {
        let header = serde_json::json!({ "format": 1, "database": "app\n\"main\"\n-- {", "version": 150_020 });
        let title = format!("a dump of database {:?}", "app\n\"main\"");
        assert_eq!(header_json(&header_text(&title, &header)), Some(header));
    }

    #[test]
    fn seconds_are_shown_whole_when_they_are() {
        assert_eq!(show_seconds(Duration::from_secs(60)), "60 s");
        assert_eq!(show_seconds(Duration::from_millis(1500)), "1.5 s");
    }

    #[test]
    fn a_message_keeps_its_last_lines_with_their_continuations() {
        let stderr = "one\n\ntwo\n  more of two\nthree\nfour\nfive\nsix\nseven\n";
        assert_eq!(summarize(stderr), "two more of two; three; four; five; six; seven");
    }
}
