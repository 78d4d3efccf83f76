//! Freeing the space no snapshot uses: packs whose blobs are all unused are deleted,
//! packs with much unused space are repacked.
//!
//! Deleting packs is what makes prune dangerous, and the order below is what keeps it
//! safe (docs/ARCHITECTURE.md, "Prune"):
//!
//! 1. The caller opened the repository for writing: no backup adds packs, and no
//!    snapshot appears, while prune runs.
//! 2. Every snapshot in the store is read and every tree it reaches walked. One that
//!    cannot be read stops prune before anything changes: what it uses is unknown.
//! 3. The used blobs of the packs to repack are read, verified against their ids and
//!    written, in their stored form, to new packs, synced.
//! 4. One catalog transaction forgets the old packs and indexes the new ones.
//! 5. With the readers' lock held alone (no restore, export or mount is reading), the
//!    old pack files are removed.
//!
//! A crash at any step leaves every snapshot readable: packs not in the catalog are
//! indexed again when the repository is next opened for writing, and a pack left over
//! is freed by the next prune.

use std::collections::HashSet;

use crate::error::{Error, IoContext, Result};
use crate::id::ObjectId;
use crate::repository::Repository;
use crate::snapshot::Manifest;
use crate::store::pack::{PackBuilder, PackEntry};
use crate::store::{self, PACK_TARGET, pack_name};
use crate::tree::NodeKind;

/// A pack is repacked when at least this share of its bytes is unused. Lower would
/// rewrite much to free little; restic's default leaves up to 5% of the whole
/// repository unused, which on a small repository can mean a pack never freed.
const REPACK_UNUSED_SHARE: f64 = 0.2;

/// What prune found, and did unless it was a dry run.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PruneReport {
    /// Snapshots whose data was kept.
    pub snapshots: usize,
    /// Packs in the repository before.
    pub packs: usize,
    /// Bytes of packs before.
    pub bytes: u64,
    /// Packs with no used blob: deleted.
    pub packs_deleted: usize,
    /// Packs with much unused space: their used blobs moved to new packs.
    pub packs_repacked: usize,
    /// New packs written by the repacking.
    pub packs_written: usize,
    /// Bytes freed: the packs removed less the packs written.
    pub bytes_freed: u64,
    /// Unused bytes left in packs that were not worth repacking.
    pub unused_kept: u64,
    /// Packs no longer used but left on disk because readers stayed longer than prune
    /// would wait: the next prune removes them.
    pub packs_left: usize,
    /// Nothing was changed.
    pub dry_run: bool,
}

/// Frees what no snapshot uses. Before it removes packs, prune waits up to `patience`
/// for the processes reading the repository (a mount may read for hours, and prune
/// holds the writers' lock meanwhile, which would hold back every backup); `waiting`
/// is told when it has to wait. If readers stay, the packs are left in place, out of
/// the catalog, for the next prune to remove ([`PruneReport::packs_left`]).
pub fn prune(
    repository: &Repository,
    dry_run: bool,
    patience: std::time::Duration,
    waiting: &mut dyn FnMut(&str),
) -> Result<PruneReport> {
    let (snapshots, used) = used_blobs(repository)?;
    let packs = store::lock(repository.catalog()).pack_contents()?;
    let mut report = PruneReport {
        snapshots,
        packs: packs.len(),
        bytes: packs.iter().map(|(_, size, _)| size).sum(),
        dry_run,
        ..PruneReport::default()
    };
    let mut removed: Vec<(String, u64)> = Vec::new();
    let mut to_repack: Vec<(String, Vec<PackEntry>)> = Vec::new();
    for (name, size, entries) in packs {
        let (kept, unused): (Vec<PackEntry>, Vec<PackEntry>) =
            entries.into_iter().partition(|entry| used.contains(&entry.id));
        let unused_bytes: u64 = unused.iter().map(|entry| u64::from(entry.length)).sum();
        if kept.is_empty() {
            report.packs_deleted += 1;
            removed.push((name, size));
        } else if unused_bytes as f64 >= REPACK_UNUSED_SHARE * size as f64 {
            report.packs_repacked += 1;
            removed.push((name.clone(), size));
            to_repack.push((name, kept));
        } else {
            report.unused_kept += unused_bytes;
        }
    }
    let removed_bytes: u64 = removed.iter().map(|(_, size)| size).sum();
    if dry_run {
        let kept_bytes: u64 = to_repack.iter().flat_map(|(_, kept)| kept).map(|entry| u64::from(entry.length)).sum();
        report.bytes_freed = removed_bytes.saturating_sub(kept_bytes);
        return Ok(report);
    }
    if removed.is_empty() {
        return Ok(report);
    }
    let written = repack(repository, &to_repack)?;
    report.packs_written = written.len();
    let written_bytes: u64 = written.iter().map(|(_, size, _)| size).sum();
    let removed_names: Vec<String> = removed.iter().map(|(name, _)| name.clone()).collect();
    store::lock(repository.catalog()).replace_packs(&removed_names, &written)?;
    let Some(_alone) = repository.exclude_readers(patience, waiting)? else {
        report.packs_left = removed_names.len();
        return Ok(report);
    };
    let backend = repository.backend();
    for name in &removed_names {
        backend.remove(name).context("removing", backend.describe(name))?;
    }
    report.bytes_freed = removed_bytes.saturating_sub(written_bytes);
    Ok(report)
}

/// The number of snapshots in the store, and every blob (tree or chunk) they reach.
fn used_blobs(repository: &Repository) -> Result<(usize, HashSet<ObjectId>)> {
    let backend = repository.backend();
    let names = backend.list("snapshots").context("listing", backend.describe("snapshots"))?;
    let mut used = HashSet::new();
    let mut snapshots = 0;
    for (name, _) in names {
        let Some(id) = name.strip_prefix("snapshots/").and_then(|rest| rest.strip_suffix(".json")) else {
            continue;
        };
        let refuse = |detail: String| Error::Corrupt {
            what: format!("snapshot {}", backend.describe(&name).display()),
            detail: format!("{detail}; prune changed nothing (run `envsnap check`)"),
        };
        let id = ObjectId::from_hex(id).ok_or_else(|| refuse("its name is not an id".to_owned()))?;
        let manifest: Manifest = repository.read_manifest(&id).map_err(|error| refuse(error.to_string()))?;
        snapshots += 1;
        for element in &manifest.elements {
            walk(repository, element.tree, &mut used).map_err(|error| refuse(error.to_string()))?;
        }
    }
    Ok((snapshots, used))
}

/// Marks tree `root` and everything below it used; a subtree already marked (shared
/// with a snapshot walked before) is not read again.
fn walk(repository: &Repository, root: ObjectId, used: &mut HashSet<ObjectId>) -> Result<()> {
    let mut pending = vec![root];
    while let Some(id) = pending.pop() {
        if !used.insert(id) {
            continue;
        }
        for node in repository.read_tree(&id)?.nodes {
            match node.kind {
                NodeKind::File => used.extend(node.content),
                NodeKind::Dir => pending.extend(node.subtree),
                NodeKind::Symlink => {}
            }
        }
    }
    Ok(())
}

/// Writes the `kept` blobs of each pack into new packs, each blob read and verified
/// first, and stored as it was (compressed or not); returns the new packs, written and
/// synced but not yet indexed.
fn repack(repository: &Repository, packs: &[(String, Vec<PackEntry>)]) -> Result<Vec<(String, u64, Vec<PackEntry>)>> {
    let backend = repository.backend();
    let mut written = Vec::new();
    let crypto = repository.crypto();
    let mut builder = PackBuilder::sealed(crypto.pack_sealer());
    let mut finish = |builder: PackBuilder| -> Result<()> {
        let (id, bytes, entries) = builder.finish();
        let name = pack_name(&id);
        backend.put(&name, &bytes).context("writing", backend.describe(&name))?;
        written.push((name, bytes.len() as u64, entries));
        Ok(())
    };
    for (pack, kept) in packs {
        for entry in kept {
            let stored = backend
                .get_range(pack, entry.offset, entry.length as usize)
                .context("reading", backend.describe(pack))?;
            // Opened from its old pack's seal, verified, and sealed anew in the new pack
            // (with the new pack's key), still compressed as it was.
            let damaged = |detail: String| Error::Corrupt {
                what: format!("blob {} in pack {}", entry.id.short(12), backend.describe(pack).display()),
                detail: format!("{detail}; prune changed nothing (run `envsnap check --read-data`)"),
            };
            let stored = crypto.open_stored(backend, pack, entry, stored).map_err(damaged)?;
            store::decode_blob(crypto.ids(), entry, stored.clone()).map_err(damaged)?;
            builder.add(entry.id, entry.kind, entry.compression, &stored, entry.raw_length);
            if builder.len() >= PACK_TARGET {
                finish(std::mem::replace(&mut builder, PackBuilder::sealed(crypto.pack_sealer())))?;
            }
        }
    }
    if !builder.is_empty() {
        finish(builder)?;
    }
    Ok(written)
}
