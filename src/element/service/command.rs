//! `type = "command"`: the user's dump command writes the dump to stdout, the
//! restore command reads it from stdin. Covers Solr, MongoDB and anything else.

use std::io::{Read, Write};
use std::process::{Child, Command, Stdio};
use std::thread;

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

    fn spawn(&self, command: &str, stdin: Stdio, stdout: Stdio) -> Result<Child> {
        Command::new("sh")
            .arg("-c")
            .arg(command)
            .stdin(stdin)
            .stdout(stdout)
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|error| self.failed(command, format!("cannot start it: {error}")))
    }

    fn failed(&self, command: &str, detail: String) -> Error {
        Error::ServiceFailed { name: self.name.clone(), address: format!("command `{command}`"), detail }
    }

    /// Waits for `child`, whose stderr is collected by `stderr`; fails on a non-zero exit.
    fn finish(&self, command: &str, mut child: Child, stderr: thread::JoinHandle<String>) -> Result<()> {
        let status = child.wait().map_err(|error| self.failed(command, error.to_string()))?;
        let message = stderr.join().unwrap_or_default();
        if status.success() {
            Ok(())
        } else {
            let said = message.trim();
            let said = if said.is_empty() { String::new() } else { format!(": {said}") };
            Err(self.failed(command, format!("it exited with {status}{said}")))
        }
    }
}

/// Reads a child's stderr on a thread of its own, so a chatty command never blocks on it.
fn collect_stderr(child: &mut Child) -> thread::JoinHandle<String> {
    let stderr = child.stderr.take();
    thread::spawn(move || {
        let mut text = String::new();
        if let Some(mut stderr) = stderr {
            let _ = stderr.read_to_string(&mut text);
        }
        text
    })
}

impl Service for CommandService {
    fn address(&self) -> String {
        format!("command `{}`", self.dump)
    }

    fn capture(&self, sink: &dyn DumpSink) -> Result<()> {
        let mut child = self.spawn(&self.dump, Stdio::null(), Stdio::piped())?;
        let stderr = collect_stderr(&mut child);
        let mut stdout = child.stdout.take().ok_or_else(|| self.failed(&self.dump, "no stdout".to_owned()))?;
        let stored = sink.add(&self.file, &mut stdout);
        drop(stdout);
        if stored.is_err() {
            // The dump is abandoned; do not leave the command running.
            let _ = child.kill();
        }
        // The command's own failure explains a short stream better than the store can.
        self.finish(&self.dump, child, stderr)?;
        stored
    }

    fn restore(&self, source: &dyn DumpSource) -> Result<()> {
        let mut input = source.open(&self.file)?;
        let mut child = self.spawn(&self.restore, Stdio::piped(), Stdio::null())?;
        let stderr = collect_stderr(&mut child);
        let mut stdin = child.stdin.take().ok_or_else(|| self.failed(&self.restore, "no stdin".to_owned()))?;
        let copied = std::io::copy(&mut input, &mut stdin).and_then(|_| stdin.flush());
        drop(stdin);
        self.finish(&self.restore, child, stderr)?;
        copied.map(drop).map_err(|error| self.failed(&self.restore, format!("writing the dump to it: {error}")))
    }
}
