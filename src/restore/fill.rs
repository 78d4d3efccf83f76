//! Reading a restore's chunks and writing them into its staged files.
//!
//! The chunks are grouped by pack and each pack is read once, packs in parallel, each
//! chunk written at its offset(s) in whatever order it comes. A staged file is created
//! by its first chunk and finished (size, owner, mode, times, all through the open
//! handle) by its last, so most files cost one open. All-zero chunks are not written,
//! which keeps sparse files sparse.

use std::collections::HashMap;
use std::fs::{self, File, FileTimes};
use std::io;
use std::os::unix::fs::{FileExt, PermissionsExt};
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rayon::prelude::*;

use crate::catalog::Location;
use crate::error::{Error, IoContext, Result};
use crate::id::ObjectId;
use crate::progress::Progress;
use crate::repository::Repository;
use crate::store;
use crate::store::pack::PackEntry;
use crate::tree::Node;

use super::place::{Staging, staged_name};
use super::plan::{Entry, Plan};

/// Where a chunk goes: (index into the planned files, offset in the file).
type Positions = Vec<(usize, u64)>;

/// Files that could not be written in full: (index into the planned files, why).
pub(super) type Failures = Mutex<Vec<(usize, String)>>;

/// Writes every planned file into its target's staging directory.
pub(super) fn fill(
    repository: &Repository,
    plan: &Plan,
    stagings: &[Staging],
    progress: &dyn Progress,
    failures: &Failures,
) -> Result<()> {
    // chunk -> every (file, offset) that needs it
    let mut uses: HashMap<ObjectId, Positions> = HashMap::new();
    let mut locations: HashMap<ObjectId, Location> = HashMap::new();
    // Per file, the chunk writes still to come; the one that brings it to zero
    // finishes the file.
    let remaining: Vec<AtomicUsize> = plan.files.iter().map(|_| AtomicUsize::new(0)).collect();
    let mut without_chunks = Vec::new();
    {
        let catalog = store::lock(repository.catalog());
        for (index, file) in plan.files.iter().enumerate() {
            let mut offset = 0u64;
            let mut positions = Vec::with_capacity(file.node.content.len().min(1 << 16));
            let mut failed = false;
            for id in &file.node.content {
                let location = match locations.get(id) {
                    Some(location) => location,
                    None => match catalog.locate(id)? {
                        Some(location) => locations.entry(*id).or_insert(location),
                        None => {
                            let message = format!("chunk {} is missing from the repository", id.short(12));
                            store::lock(failures).push((index, message));
                            failed = true;
                            break;
                        }
                    },
                };
                positions.push((*id, offset));
                offset += u64::from(location.entry.raw_length);
            }
            // A file is written only as its chunks hold it: never cut short or padded
            // to a size the snapshot claims and its data does not bear out.
            if !failed && offset != file.node.size {
                let message =
                    format!("its chunks hold {offset} bytes but the snapshot records {} bytes", file.node.size);
                store::lock(failures).push((index, message));
                failed = true;
            }
            if failed {
                continue;
            }
            if positions.is_empty() {
                without_chunks.push(index);
            }
            remaining[index].store(positions.len(), Ordering::Relaxed);
            for (id, offset) in positions {
                uses.entry(id).or_default().push((index, offset));
            }
        }
    }
    let writer = Writer { plan, stagings };
    let total = plan.files.iter().map(|file| file.node.size).sum();
    progress.begin("restoring", Some(total));
    let mut by_pack: HashMap<&str, Vec<(&Location, &Positions)>> = HashMap::new();
    for (id, positions) in &uses {
        let location = &locations[id];
        by_pack.entry(location.pack.as_str()).or_default().push((location, positions));
    }
    by_pack.into_par_iter().try_for_each(|(pack, mut blobs)| -> Result<()> {
        blobs.sort_by_key(|(location, _)| location.entry.offset);
        let entries: Vec<&PackEntry> = blobs.iter().map(|(location, _)| &location.entry).collect();
        let mut reader = PackReader::new(repository, pack, &entries)?;
        // Consecutive chunks of one file share a handle; at most one file is open
        // per pack task, however many files a pack holds.
        let mut open: Option<(usize, File)> = None;
        for (location, positions) in blobs {
            let data = match reader.read(&location.entry)? {
                Ok(data) => Some(data),
                Err(detail) => {
                    let message = format!(
                        "chunk {} in pack {}: {detail}",
                        location.entry.id.short(12),
                        repository.backend().describe(pack).display()
                    );
                    store::lock(failures).extend(positions.iter().map(|(index, _)| (*index, message.clone())));
                    None
                }
            };
            for (index, offset) in positions {
                if let Some(data) = &data {
                    write_sparse(data, *offset, || writer.handle(&mut open, *index))
                        .context("writing", &plan.files[*index].path)?;
                }
                progress.add_bytes(u64::from(location.entry.raw_length));
                if remaining[*index].fetch_sub(1, Ordering::AcqRel) == 1 {
                    let file = writer.handle(&mut open, *index)?;
                    finish_file(file, &plan.files[*index].node, &plan.files[*index].path)?;
                    open = None;
                }
            }
        }
        Ok(())
    })?;
    without_chunks.par_iter().try_for_each(|index| {
        let mut open = None;
        let file = writer.handle(&mut open, *index)?;
        finish_file(file, &plan.files[*index].node, &plan.files[*index].path)
    })?;
    progress.finish();
    Ok(())
}

struct Writer<'p> {
    plan: &'p Plan,
    stagings: &'p [Staging],
}

impl Writer<'_> {
    /// The open handle of staged file `index`, opening (creating) it when another is open.
    fn handle<'h>(&self, open: &'h mut Option<(usize, File)>, index: usize) -> Result<&'h File> {
        if open.as_ref().is_none_or(|(current, _)| *current != index) {
            let staging = &self.stagings[self.plan.target_of(index)];
            *open = Some((index, staging.file(&staged_name(Entry::File(index)))?));
        }
        match open {
            Some((_, file)) => Ok(file),
            None => Err(Error::io("creating", &self.plan.files[index].path, io::ErrorKind::NotFound.into())),
        }
    }
}

/// Gives a file whose data is written its size (holes at the end included), owner,
/// mode and times, through its handle.
pub(super) fn finish_file(file: &File, node: &Node, path: &Path) -> Result<()> {
    file.set_len(node.size).context("sizing", path)?;
    // Changing the owner needs privileges a normal user lacks; the files are then
    // theirs, as with `cp` or `tar` run by that user.
    let _ = std::os::unix::fs::fchown(file, Some(node.uid), Some(node.gid));
    file.set_permissions(fs::Permissions::from_mode(node.mode)).context("setting the mode of", path)?;
    let mtime = system_time(node.mtime, node.mtime_nsec);
    file.set_times(FileTimes::new().set_modified(mtime).set_accessed(mtime)).context("setting the times of", path)
}

/// Writes `data` at `offset`, leaving out blocks of zeros: the file was created
/// empty, so they read back as zeros anyway, and holes stay holes. The file is only
/// opened (by `open`) when there is something to write.
fn write_sparse<'f>(data: &[u8], offset: u64, open: impl FnOnce() -> Result<&'f File>) -> io::Result<()> {
    const BLOCK: usize = 4096;
    let mut open = Some(open);
    let mut file: Option<&File> = None;
    let mut start = None;
    let blocks = data.chunks(BLOCK).map(|block| block.iter().all(|byte| *byte == 0)).chain([true]);
    for (index, zero) in blocks.enumerate() {
        match (zero, start) {
            (false, None) => start = Some(index * BLOCK),
            (true, Some(from)) => {
                let to = (index * BLOCK).min(data.len());
                let handle = match (file, open.take()) {
                    (Some(handle), _) => handle,
                    (None, Some(opener)) => opener().map_err(io::Error::other)?,
                    (None, None) => return Err(io::ErrorKind::NotFound.into()),
                };
                file = Some(handle);
                handle.write_all_at(&data[from..to], offset + from as u64)?;
                start = None;
            }
            _ => {}
        }
    }
    Ok(())
}

fn system_time(seconds: i64, nanoseconds: u32) -> SystemTime {
    let nanos = Duration::from_nanos(u64::from(nanoseconds));
    match u64::try_from(seconds) {
        Ok(seconds) => UNIX_EPOCH + Duration::from_secs(seconds) + nanos,
        Err(_) => UNIX_EPOCH - Duration::from_secs(seconds.unsigned_abs()) + nanos,
    }
}

/// Reads the blobs a restore needs from one pack: the whole span in one read when the
/// blobs fill most of it (a first restore), else blob by blob (a few files).
pub(super) struct PackReader<'a> {
    repository: &'a Repository,
    pack: &'a str,
    span: Option<(u64, Vec<u8>)>,
}

/// The largest span read at once: a whole pack, with room for a large last blob.
const SPAN_LIMIT: u64 = 2 * store::PACK_TARGET as u64;

impl<'a> PackReader<'a> {
    pub fn new(repository: &'a Repository, pack: &'a str, sorted: &[&PackEntry]) -> Result<Self> {
        let (Some(first), Some(last)) = (sorted.first(), sorted.last()) else {
            return Ok(PackReader { repository, pack, span: None });
        };
        let start = first.offset;
        let end = last.offset.saturating_add(u64::from(last.length));
        let needed: u64 = sorted.iter().map(|entry| u64::from(entry.length)).sum();
        let span = if end - start <= SPAN_LIMIT && needed.saturating_mul(2) >= end - start {
            match repository.backend().get_range(pack, start, (end - start) as usize) {
                Ok(bytes) => Some((start, bytes)),
                // A short or missing pack: read blob by blob to save what can be saved.
                Err(error) if is_damage(&error) => None,
                Err(error) => return Err(Error::io("reading", repository.backend().describe(pack), error)),
            }
        } else {
            None
        };
        Ok(PackReader { repository, pack, span })
    }

    /// The blob's plain bytes; `Ok(Err(why))` when its data is damaged or missing,
    /// `Err` when reading failed for another reason (which stops the restore).
    pub fn read(&mut self, entry: &PackEntry) -> Result<Result<Vec<u8>, String>> {
        let stored = match &self.span {
            Some((start, bytes)) => {
                // The catalog's offsets are stored bytes too: slice only what is there.
                let span = entry
                    .offset
                    .checked_sub(*start)
                    .and_then(|from| usize::try_from(from).ok())
                    .and_then(|from| bytes.get(from..from.checked_add(entry.length as usize)?));
                match span {
                    Some(span) => span.to_vec(),
                    None => {
                        return Ok(Err(format!(
                            "it lies outside the bytes read from its pack (offset {})",
                            entry.offset
                        )));
                    }
                }
            }
            None => match self.repository.backend().get_range(self.pack, entry.offset, entry.length as usize) {
                Ok(stored) => stored,
                Err(error) if is_damage(&error) => return Ok(Err(error.to_string())),
                Err(error) => return Err(Error::io("reading", self.repository.backend().describe(self.pack), error)),
            },
        };
        Ok(self.repository.crypto().decode_blob(self.repository.backend(), self.pack, entry, stored))
    }
}

/// Errors that mean the data is gone (rather than that reading failed for now).
fn is_damage(error: &io::Error) -> bool {
    matches!(error.kind(), io::ErrorKind::NotFound | io::ErrorKind::UnexpectedEof)
}
