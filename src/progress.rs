//! Progress reporting: the library tells, the binary shows.

/// Receives progress from long operations. Every method has a do-nothing default, so
/// a reporter implements only what it shows. Calls come from many threads at once.
pub trait Progress: Sync {
    /// A phase begins, e.g. "backing up uploads", with the bytes it should process:
    /// exact when known (a restore), else an estimate (a backup passes the size the
    /// element had in the environment's last snapshot), and `None` when there is none.
    fn begin(&self, _phase: &str, _total_bytes: Option<u64>) {}

    /// The bytes the current phase should process, learned after it began: a backup
    /// of a mount that no earlier snapshot measured counts its files while it reads
    /// them, and tells the count here once it has it.
    fn estimate(&self, _total_bytes: u64) {}

    /// `bytes` more bytes were processed.
    fn add_bytes(&self, _bytes: u64) {}

    /// One more file was processed.
    fn add_file(&self) {}

    /// The phase ended.
    fn finish(&self) {}
}

/// Shows nothing.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoProgress;

impl Progress for NoProgress {}
