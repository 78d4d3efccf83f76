//! Running the programs that dump and load services (`pg_dump`, `psql`, `mariadb-dump`,
//! a `type = "command"` service's commands, …): starting them, collecting their stderr
//! on a thread, reading their output ahead of the store, stopping them when a capture
//! is abandoned or envsnap is told to stop, and running several at once.
//!
//! # No tool outlives envsnap
//!
//! Every tool leads a process group of its own, and is listed in [`RUNNING`] from the
//! moment it is started until it has been waited for. [`stop_tools`], which the binary
//! calls when it is told to stop (SIGINT, SIGTERM, SIGHUP), signals every listed group
//! and waits for the tools to exit. A group of its own reaches whatever a tool started
//! itself (the pipeline of a shell command, the real `psql` behind Debian's wrapper),
//! and keeps a Ctrl-C at the terminal from reaching the tools before envsnap has
//! decided what to do. A tool leaves the list only once it has exited and before it is
//! reaped (`waitid` with `WNOWAIT`), so its process id cannot have been given to
//! another process when it is signalled.
//!
//! # Cancellation is an error of its own
//!
//! When one of several streams fails, the others stop at their next read with an
//! error whose kind is `Other` and whose payload is [`Cancelled`]. Never
//! `ErrorKind::Interrupted`: `io::copy`, `read_to_end` and `read_exact` retry that
//! kind, and the reader would refuse again at once, forever, at 100% CPU.

use std::collections::BTreeSet;
use std::io::{self, Read};
use std::os::unix::process::CommandExt;
use std::process::{Child, ChildStdin, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal, WaitId, WaitIdOptions};

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
    /// It was not started: envsnap is stopping ([`stop_tools`]).
    Stopped {
        /// The program.
        program: String,
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

/// The tools started and not yet waited for, by process id (which is also their
/// process group's id), and whether envsnap is stopping (then no tool starts).
static RUNNING: Mutex<Running> = Mutex::new(Running { tools: BTreeSet::new(), stopping: false });

struct Running {
    tools: BTreeSet<i32>,
    stopping: bool,
}

/// How long tools have, after the interrupt, to end their sessions on their own
/// before they are killed.
const STOP_GRACE: Duration = Duration::from_secs(3);

/// Stops every running tool, for a process that was told to stop: each tool's process
/// group gets SIGINT first, on which `psql` and `pg_dump` cancel their query on the
/// server and the MariaDB client kills its own, so no statement is left running or
/// waiting for a lock there; what still runs in the groups after three seconds, or
/// once every leader has exited, is killed. Returns
/// once every tool has exited. No tool starts afterwards. It may be called more than
/// once, from any thread.
pub fn stop_tools() {
    let mut running = crate::store::lock(&RUNNING);
    running.stopping = true;
    let tools: Vec<Pid> = running.tools.iter().filter_map(|&pid| Pid::from_raw(pid)).collect();
    for &pid in &tools {
        let _ = rustix::process::kill_process_group(pid, Signal::INT);
    }
    let deadline = Instant::now() + STOP_GRACE;
    let mut left = tools.clone();
    while !left.is_empty() && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(10));
        left.retain(|&pid| !exited(pid));
    }
    // Whatever is left of each group: a leader that would not stop, and what a leader
    // that did stop left running (a shell's pipeline). The leaders are not reaped yet
    // (their removal from the list waits for this lock), so each group id is still
    // theirs.
    for &pid in &tools {
        let _ = rustix::process::kill_process_group(pid, Signal::KILL);
    }
    // SIGKILL cannot be caught: each exits at once.
    let killed = Instant::now() + Duration::from_secs(2);
    while !left.is_empty() && Instant::now() < killed {
        left.retain(|&pid| !exited(pid));
        thread::sleep(Duration::from_millis(10));
    }
    // The tools stay listed: whoever waits for them removes them, and a tool not
    // waited for is reaped when envsnap exits.
}

/// Whether the child `pid` has exited (it is not reaped: its id stays taken).
fn exited(pid: Pid) -> bool {
    let options = WaitIdOptions::EXITED | WaitIdOptions::NOWAIT | WaitIdOptions::NOHANG;
    match rustix::process::waitid(WaitId::Pid(pid), options) {
        Ok(status) => status.is_some(),
        // Not a child any more (reaped meanwhile): gone.
        Err(_) => true,
    }
}

/// Waits until `child` has exited, without reaping it, then takes it off [`RUNNING`]:
/// while it is listed, its id cannot be another process's.
fn unlist(child: &Child) {
    let Some(pid) = i32::try_from(child.id()).ok() else { return };
    if let Some(id) = Pid::from_raw(pid) {
        let options = WaitIdOptions::EXITED | WaitIdOptions::NOWAIT;
        while let Err(rustix::io::Errno::INTR) = rustix::process::waitid(WaitId::Pid(id), options) {}
    }
    crate::store::lock(&RUNNING).tools.remove(&pid);
}

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
        // Listed under the same lock that `stop_tools` takes, so that no tool starts
        // unseen while envsnap stops.
        let mut running = crate::store::lock(&RUNNING);
        if running.stopping {
            return Err(ToolError::Stopped { program: program.to_owned() });
        }
        let mut child = command.stderr(Stdio::piped()).process_group(0).spawn().map_err(|error| {
            if error.kind() == io::ErrorKind::NotFound {
                ToolError::Missing { program: program.to_owned() }
            } else {
                ToolError::Io { program: program.to_owned(), error }
            }
        })?;
        if let Ok(pid) = i32::try_from(child.id()) {
            running.tools.insert(pid);
        }
        drop(running);
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

    /// Stops it now (a capture that is abandoned), with whatever it started itself.
    pub fn kill(&mut self) {
        if let Some(child) = &mut self.child {
            kill_group(child);
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
    unlist(&child);
    child.wait().map_err(|error| ToolError::Io { program: program.to_owned(), error })
}

/// Kills `child`'s process group (it leads one, see [`Tool::start`]); the child
/// itself at least, should the group be gone.
fn kill_group(child: &mut Child) {
    let group = i32::try_from(child.id()).ok().and_then(Pid::from_raw);
    if group.is_none_or(|group| rustix::process::kill_process_group(group, Signal::KILL).is_err()) {
        let _ = child.kill();
    }
}

impl Drop for Tool {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            kill_group(&mut child);
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

/// Why a read of one stream stopped: another stream of the same dump or restore
/// failed, and its error is the one reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("stopped because another part of the work failed")]
pub struct Cancelled;

/// The error a cancelled read returns: of kind `Other`, which no reader retries (see
/// the module documentation).
fn cancelled() -> io::Error {
    io::Error::other(Cancelled)
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
