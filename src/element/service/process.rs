//! Running a database's own client tools (`pg_dump`, `psql`, `mariadb-dump`, …) for
//! the SQL adapters: starting them, collecting their stderr on a thread, reading their
//! output ahead of the store, stopping them when a capture is abandoned, and running
//! several at once.

use std::io::{self, Read};
use std::process::{Child, ChildStdin, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex};
use std::thread;

use crate::error::Error;

/// Why a tool did not do its work. The adapters turn it into an
/// [`Error::ServiceFailed`] that names the service and says what to do.
#[derive(Debug)]
pub enum ToolError {
    /// The program is not installed, or not in `PATH`.
    Missing {
        /// The program.
        program: String,
    },
    /// It could not be started or waited for.
    Io {
        /// The program.
        program: String,
        /// What the system said.
        error: io::Error,
    },
    /// It exited unsuccessfully.
    Failed {
        /// The program.
        program: String,
        /// How it ended.
        status: ExitStatus,
        /// What it wrote to stderr, trimmed.
        stderr: String,
    },
}

/// How much of a tool's stderr is kept: its last 64 KiB.
const STDERR_KEPT: usize = 64 << 10;

/// A tool that was started. Dropped before [`Tool::finish`], it is killed and
/// reaped, so that an abandoned capture never leaves a dump running.
#[derive(Debug)]
pub struct Tool {
    program: String,
    child: Option<Child>,
    stderr: Option<thread::JoinHandle<String>>,
}

impl Tool {
    /// Starts `command` (whose stdin and stdout the caller has set); its stderr is
    /// collected. `program` names it in errors.
    pub fn start(program: &str, command: &mut Command) -> Result<Tool, ToolError> {
        let mut child = command.stderr(Stdio::piped()).spawn().map_err(|error| {
            if error.kind() == io::ErrorKind::NotFound {
                ToolError::Missing { program: program.to_owned() }
            } else {
                ToolError::Io { program: program.to_owned(), error }
            }
        })?;
        let stderr = child.stderr.take().map(|mut stderr| {
            // On a thread of its own, so a chatty tool never blocks on a full pipe; only
            // the end is kept, where the error is, so memory stays bounded.
            thread::spawn(move || {
                let mut kept = Vec::new();
                let mut buffer = [0; 8192];
                loop {
                    let count = match stderr.read(&mut buffer) {
                        Ok(0) => break,
                        Ok(count) => count,
                        Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                        Err(_) => break,
                    };
                    kept.extend_from_slice(&buffer[..count]);
                    if kept.len() > 2 * STDERR_KEPT {
                        kept.drain(..kept.len() - STDERR_KEPT);
                    }
                }
                if kept.len() > STDERR_KEPT {
                    kept.drain(..kept.len() - STDERR_KEPT);
                }
                String::from_utf8_lossy(&kept).into_owned()
            })
        });
        Ok(Tool { program: program.to_owned(), child: Some(child), stderr })
    }

    /// Its stdout, if it was piped and not taken yet.
    pub fn stdout(&mut self) -> Option<ChildStdout> {
        self.child.as_mut().and_then(|child| child.stdout.take())
    }

    /// Its stdin, if it was piped and not taken yet.
    pub fn stdin(&mut self) -> Option<ChildStdin> {
        self.child.as_mut().and_then(|child| child.stdin.take())
    }

    /// Stops it now (a capture that is abandoned).
    pub fn kill(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
        }
    }

    /// Waits for it to exit; fails, with its stderr, unless it succeeded.
    pub fn finish(mut self) -> Result<(), ToolError> {
        let child = self.child.take().expect("a tool is finished once, by value");
        let status = wait(&self.program, child)?;
        let stderr = self.stderr.take().and_then(|handle| handle.join().ok()).unwrap_or_default();
        if status.success() {
            Ok(())
        } else {
            Err(ToolError::Failed { program: self.program.clone(), status, stderr: stderr.trim().to_owned() })
        }
    }
}

fn wait(program: &str, mut child: Child) -> Result<ExitStatus, ToolError> {
    // Our ends of its pipes must close first, or a tool blocked writing to them waits forever.
    drop(child.stdin.take());
    drop(child.stdout.take());
    child.wait().map_err(|error| ToolError::Io { program: program.to_owned(), error })
}

impl Drop for Tool {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = wait(&self.program, child);
        }
    }
}

/// How much of a tool's output is read ahead of the store: enough that the tool
/// keeps writing while a batch of chunks is hashed and compressed, little enough to
/// keep memory flat (this much per stream, whatever the dump's size).
const READ_AHEAD: usize = 8 << 20;
const READ_AHEAD_BLOCK: usize = 256 << 10;

/// Reads `source` on a thread of its own, up to `READ_AHEAD` (8 MiB) ahead of the
/// consumer; stops when `cancel` is set (another stream failed). Dropping the reader
/// stops the thread, which drops `source`: a tool writing to it then gets `EPIPE`.
pub fn read_ahead(source: impl Read + Send + 'static, cancel: Arc<AtomicBool>) -> ReadAhead {
    let blocks = READ_AHEAD / READ_AHEAD_BLOCK;
    let (sender, receiver) = sync_channel(blocks);
    // Read blocks go back to the reading thread: allocating each anew costs page faults.
    let (recycle, recycled) = sync_channel(blocks + 1);
    thread::spawn(move || fill(source, &sender, &recycled));
    ReadAhead { receiver, recycle, block: Vec::new(), position: 0, cancel, done: false }
}

fn fill(mut source: impl Read, sender: &SyncSender<io::Result<Vec<u8>>>, recycled: &Receiver<Vec<u8>>) {
    loop {
        let mut block = recycled.try_recv().unwrap_or_default();
        block.resize(READ_AHEAD_BLOCK, 0);
        let mut filled = 0;
        // Fill whole blocks: pipes hand out 64 KiB at a time, the channel wants fewer, larger items.
        while filled < block.len() {
            match source.read(&mut block[filled..]) {
                Ok(0) => break,
                Ok(count) => filled += count,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => {
                    let _ = sender.send(Err(error));
                    return;
                }
            }
        }
        if filled == 0 {
            return;
        }
        block.truncate(filled);
        if sender.send(Ok(block)).is_err() {
            return;
        }
    }
}

/// The consuming end of [`read_ahead`].
#[derive(Debug)]
pub struct ReadAhead {
    receiver: Receiver<io::Result<Vec<u8>>>,
    recycle: SyncSender<Vec<u8>>,
    block: Vec<u8>,
    position: usize,
    cancel: Arc<AtomicBool>,
    done: bool,
}

impl Read for ReadAhead {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.cancel.load(Ordering::Relaxed) {
            return Err(cancelled());
        }
        while self.position == self.block.len() {
            if self.done {
                return Ok(0);
            }
            match self.receiver.recv() {
                Ok(block) => {
                    let used = std::mem::replace(&mut self.block, block?);
                    if used.capacity() > 0 {
                        let _ = self.recycle.try_send(used);
                    }
                    self.position = 0;
                }
                Err(_) => self.done = true,
            }
        }
        let count = out.len().min(self.block.len() - self.position);
        out[..count].copy_from_slice(&self.block[self.position..self.position + count]);
        self.position += count;
        Ok(count)
    }
}

/// Passes `inner` through until `cancel` is set.
pub struct Cancellable<'a, R> {
    /// The reader.
    pub inner: R,
    /// Set when the work this read belongs to is abandoned.
    pub cancel: &'a AtomicBool,
}

impl<R: Read> Read for Cancellable<'_, R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.cancel.load(Ordering::Relaxed) {
            return Err(cancelled());
        }
        self.inner.read(out)
    }
}

fn cancelled() -> io::Error {
    io::Error::new(io::ErrorKind::Interrupted, "stopped because another part of the dump failed")
}

/// How many tools run at once: one per core, at least two (a tool mostly waits on
/// its server, so two keep even one core busy), at most eight (more would only
/// compete for the server's disks).
pub fn default_workers() -> usize {
    thread::available_parallelism().map_or(2, usize::from).clamp(2, 8)
}

/// Runs `job` on every item, `workers` at a time, in order of the slice. The first
/// error sets the cancel flag handed to every job, so the others stop at their next
/// read, and is the one returned.
pub fn run_parallel<T: Sync>(
    items: &[T],
    workers: usize,
    job: impl Fn(&T, &Arc<AtomicBool>) -> Result<(), Error> + Sync,
) -> Result<(), Error> {
    let cancel = Arc::new(AtomicBool::new(false));
    let next = AtomicUsize::new(0);
    let first_error: Mutex<Option<Error>> = Mutex::new(None);
    thread::scope(|scope| {
        for _ in 0..workers.clamp(1, items.len().max(1)) {
            scope.spawn(|| {
                while !cancel.load(Ordering::Relaxed) {
                    let Some(item) = items.get(next.fetch_add(1, Ordering::Relaxed)) else { break };
                    if let Err(error) = job(item, &cancel) {
                        let mut first = crate::store::lock(&first_error);
                        if first.is_none() {
                            *first = Some(error);
                        }
                        cancel.store(true, Ordering::Relaxed);
                    }
                }
            });
        }
    });
    match first_error.into_inner().unwrap_or_else(std::sync::PoisonError::into_inner) {
        Some(error) => Err(error),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_ahead_yields_everything_in_order() -> io::Result<()> {
        let data: Vec<u8> = (0..3_000_000u32).map(|n| (n % 251) as u8).collect();
        let mut copy = Vec::new();
        read_ahead(io::Cursor::new(data.clone()), Arc::new(AtomicBool::new(false))).read_to_end(&mut copy)?;
        assert_eq!(copy, data);
        Ok(())
    }

    #[test]
    fn the_first_error_stops_the_other_jobs() {
        let started = AtomicUsize::new(0);
        let result = run_parallel(&[1, 2, 3, 4, 5, 6], 2, |item, cancel| {
            started.fetch_add(1, Ordering::Relaxed);
            if *item == 1 {
                return Err(Error::NoElements);
            }
            while !cancel.load(Ordering::Relaxed) {
                thread::yield_now();
            }
            Err(Error::PackWriterStopped)
        });
        assert!(matches!(result, Err(Error::NoElements)), "{result:?}");
        assert!(started.load(Ordering::Relaxed) <= 3, "no job starts after the failure");
    }

    #[test]
    fn a_missing_program_is_named() {
        let error = Tool::start("no-such-tool-xyz", &mut Command::new("no-such-tool-xyz")).err();
        assert!(matches!(error, Some(ToolError::Missing { program }) if program == "no-such-tool-xyz"));
    }
}
