//! `type = "command"`: the user's dump command writes the dump to stdout, the
//! restore command reads it from stdin. Covers Solr, MongoDB and anything else.

use std::io::{self, Write};
use std::process::{Command, Stdio};

use super::process::{Tool, ToolError};
use super::{DumpSink, DumpSource, Service};
use crate::error::{Error, Result};

/// A service captured and restored by shell commands.
#[derive(Debug, Clone)]
pub struct CommandService {
    name: String,
    dump: String,
    restore: String,
    file: String,
}

impl CommandService {
    /// The service `name`, dumped by `dump`, restored by `restore`; the dump is stored
    /// as `dump.<extension>`.
    pub fn new(name: &str, dump: &str, restore: &str, extension: &str) -> Self {
        CommandService {
            name: name.to_owned(),
            dump: dump.to_owned(),
            restore: restore.to_owned(),
            file: format!("dump.{extension}"),
        }
    }

    /// Starts `command` with `sh -c`, as a [`Tool`]: it leads a process group of its
    /// own, so stopping it stops its whole pipeline, and envsnap stops it when told to
    /// stop.
    fn spawn(&self, command: &str, stdin: Stdio, stdout: Stdio) -> Result<Tool> {
        let mut shell = Command::new("sh");
        shell.arg("-c").arg(command).stdin(stdin).stdout(stdout);
        Tool::start("sh", &mut shell).map_err(|error| self.tool_failed(command, error))
    }

    fn failed(&self, command: &str, detail: String) -> Error {
        Error::ServiceFailed { name: self.name.clone(), address: format!("command `{command}`"), detail }
    }

    fn tool_failed(&self, command: &str, error: ToolError) -> Error {
        let detail = match error {
            ToolError::Missing { .. } => "cannot start it: `sh` is not installed or not in PATH".to_owned(),
            ToolError::Io { error, .. } => format!("cannot start it: {error}"),
            ToolError::Stopped { .. } => "it was not started: envsnap was told to stop".to_owned(),
            ToolError::Failed { status, stderr, .. } => {
                let said = stderr.trim();
                let said = if said.is_empty() { String::new() } else { format!(": {said}") };
                format!("it exited with {status}{said}")
            }
        };
        self.failed(command, detail)
    }
}

impl Service for CommandService {
    fn address(&self) -> String {
        format!("command `{}`", self.dump)
    }

    fn capture(&self, sink: &dyn DumpSink) -> Result<()> {
        let mut tool = self.spawn(&self.dump, Stdio::null(), Stdio::piped())?;
        let mut stdout = tool.stdout().ok_or_else(|| self.failed(&self.dump, "no stdout".to_owned()))?;
        let stored = sink.add(&self.file, &mut stdout);
        drop(stdout);
        if stored.is_err() {
            // The dump is abandoned; do not leave the command running.
            tool.kill();
        }
        // The command's own failure explains a short stream better than the store can.
        tool.finish().map_err(|error| self.tool_failed(&self.dump, error))?;
        stored
    }

    fn restore(&self, source: &dyn DumpSource) -> Result<()> {
        let mut input = source.open(&self.file)?;
        let mut tool = self.spawn(&self.restore, Stdio::piped(), Stdio::null())?;
        let mut stdin = tool.stdin().ok_or_else(|| self.failed(&self.restore, "no stdin".to_owned()))?;
        let copied = io::copy(&mut input, &mut stdin).and_then(|_| stdin.flush());
        drop(stdin);
        match copied {
            Ok(_) => tool.finish().map_err(|error| self.tool_failed(&self.restore, error)),
            // The command stopped reading: its own failure says why.
            Err(error) if error.kind() == io::ErrorKind::BrokenPipe => {
                tool.finish().map_err(|failure| self.tool_failed(&self.restore, failure))?;
                Err(self.failed(&self.restore, format!("it stopped reading the dump before its end: {error}")))
            }
            // The dump could not be read: the command is stopped rather than told the
            // dump ended, so it cannot take a part for the whole.
            Err(error) => {
                tool.kill();
                drop(tool);
                Err(match super::sql::stream_error(error, &self.file) {
                    Error::Io { source, .. } => self.failed(&self.restore, format!("reading the dump: {source}")),
                    other => other,
                })
            }
        }
    }
}
