//! Verifying a repository.
//!
//! The structural check compares the store's packs with the index, reads every
//! snapshot manifest against its id, and walks every tree, making sure each blob a
//! snapshot needs is indexed, each file's chunks add up to its recorded size, and each
//! tree is one a restore could write (no `..`, no name twice, every directory a tree). With `read_data`, every pack is read whole: its bytes
//! against its name, and every blob in it against its id. Damage is reported by pack,
//! with the snapshots that need the damaged blobs.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Mutex;

use rayon::prelude::*;

use crate::catalog::Catalog;
use crate::error::Result;
use crate::id::ObjectId;
use crate::progress::Progress;
use crate::repository::Repository;
use crate::store::{self, pack, read_pack_entries};
use crate::tree::{NodeKind, Tree};

/// What a check found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct CheckReport {
    /// Packs in the store.
    pub packs: usize,
    /// Snapshots checked.
    pub snapshots: usize,
    /// Packs whose data was read and verified.
    pub packs_read: usize,
    /// Damaged packs: name, what is wrong, and the snapshots that need their damaged blobs.
    pub damaged_packs: Vec<DamagedPack>,
    /// Snapshots that cannot be fully restored, with why.
    pub damaged_snapshots: Vec<(ObjectId, String)>,
    /// Problems that affect no snapshot's data (e.g. a pack the index lacks).
    pub warnings: Vec<String>,
    /// Key files of an encrypted repository that are damaged: name, what is wrong.
    pub damaged_keys: Vec<(String, String)>,
    /// Records beside the snapshots (restores, deleted branches) that cannot be read,
    /// each with its path and why ([`Repository::damaged_records`]).
    pub damaged_records: Vec<String>,
}

/// A pack whose data is damaged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DamagedPack {
    /// The pack's path.
    pub pack: String,
    /// What is wrong.
    pub detail: String,
    /// The snapshots that need a damaged blob of it.
    pub snapshots: Vec<ObjectId>,
}

impl CheckReport {
    /// True when nothing is damaged.
    pub fn is_clean(&self) -> bool {
        self.damaged_packs.is_empty()
            && self.damaged_snapshots.is_empty()
            && self.damaged_keys.is_empty()
            && self.damaged_records.is_empty()
    }
}

/// Checks the repository; see the module documentation.
pub fn check(repository: &Repository, read_data: bool, progress: &dyn Progress) -> Result<CheckReport> {
    let mut report = CheckReport::default();
    let backend = repository.backend();
    if repository.crypto().is_encrypted() {
        // Every key file, not only the one in use: a damaged one locks its holder out.
        for key in repository.keys()? {
            if let Err(problem) = key.file {
                report.damaged_keys.push((backend.describe(&key.name).display().to_string(), problem));
            }
        }
    }
    report.damaged_records = repository.damaged_records()?;
    let stored = backend.list("packs").map_err(|e| crate::Error::io("listing", repository.root().join("packs"), e))?;
    let indexed: HashMap<String, u64> = store::lock(repository.catalog()).packs()?.into_iter().collect();
    report.packs = stored.len();
    let stored_names: HashSet<&str> = stored.iter().map(|(name, _)| name.as_str()).collect();
    // Packs the index places blobs in that the store lost, whole or in part: every
    // snapshot that needs one of their blobs can no longer be restored in full.
    let mut lost: BTreeMap<String, String> = BTreeMap::new();
    for name in indexed.keys() {
        if !stored_names.contains(name.as_str()) {
            lost.insert(name.clone(), "it is missing from the store".to_owned());
        }
    }
    for (name, size) in &stored {
        match indexed.get(name) {
            None => report
                .warnings
                .push(format!("pack {} is not in the index: run `envsnap repair`", backend.describe(name).display())),
            Some(known) if known != size => {
                lost.insert(name.clone(), format!("it is {size} bytes, the index says {known}: truncated or replaced"));
            }
            Some(_) => {}
        }
    }

    // Blobs found damaged, and in which pack.
    let mut damaged_blobs: HashMap<ObjectId, String> = HashMap::new();
    let mut pack_problems: BTreeMap<String, String> = BTreeMap::new();
    // What the index places in each pack: lost with it when it cannot be read, or
    // when its footer, which would say so, is damaged too.
    let mut indexed_blobs: HashMap<String, Vec<ObjectId>> = HashMap::new();
    if read_data || !lost.is_empty() {
        for (blob, pack) in store::lock(repository.catalog()).blob_packs()? {
            indexed_blobs.entry(pack).or_default().push(blob);
        }
    }
    for (name, detail) in lost {
        for blob in indexed_blobs.get(&name).map(Vec::as_slice).unwrap_or_default() {
            damaged_blobs.insert(*blob, name.clone());
        }
        pack_problems.insert(name, detail);
    }
    if read_data {
        let total = stored.iter().map(|(_, size)| size).sum();
        progress.begin("reading all data", Some(total));
        let found = Mutex::new(Vec::new());
        stored.par_iter().filter(|(name, _)| !pack_problems.contains_key(name)).for_each(|(name, size)| {
            let indexed = indexed_blobs.get(name).map(Vec::as_slice).unwrap_or_default();
            let result = verify_pack(repository, name, *size, indexed);
            progress.add_bytes(*size);
            store::lock(&found).push((name.clone(), result));
        });
        progress.finish();
        report.packs_read = stored.len();
        for (name, result) in found.into_inner().unwrap_or_else(std::sync::PoisonError::into_inner) {
            if let Err((detail, blobs)) = result {
                for blob in blobs {
                    damaged_blobs.insert(blob, name.clone());
                }
                pack_problems.insert(name, detail);
            }
        }
    }

    // Walk every snapshot's trees once each.
    let snapshots = repository.snapshots(None)?;
    report.snapshots = snapshots.len();
    // A manifest the catalog lacks was refused when the catalog was brought in line
    // with the store: torn, damaged or planted. No snapshot is listed from it.
    let listed: HashSet<ObjectId> = snapshots.iter().map(|snapshot| snapshot.id).collect();
    let manifests =
        backend.list("snapshots").map_err(|e| crate::Error::io("listing", backend.describe("snapshots"), e))?;
    for (name, _) in manifests {
        let id =
            name.strip_prefix("snapshots/").and_then(|file| file.strip_suffix(".json")).and_then(ObjectId::from_hex);
        let problem = match id {
            Some(id) if listed.contains(&id) => continue,
            Some(id) => match repository.read_manifest(&id) {
                Ok(_) => "it is not in the catalog: run `envsnap repair`".to_owned(),
                Err(error) => format!("{error}; no snapshot is listed from it"),
            },
            None => "not a snapshot manifest's name".to_owned(),
        };
        report.warnings.push(format!("{}: {problem}", backend.describe(&name).display()));
    }
    // Per tree, the first thing wrong with it: a chunk it needs that the index lacks, a
    // file whose chunks do not add up to its size, an entry no restore could write.
    // Trees are shared by many snapshots, so each is looked up once.
    let mut missing_in_tree: HashMap<ObjectId, Option<String>> = HashMap::new();
    let mut users: BTreeMap<String, BTreeSet<ObjectId>> = BTreeMap::new();
    for snapshot in &snapshots {
        let mut problem: Option<String> = repository.read_manifest(&snapshot.id).err().map(|error| error.to_string());
        let mut pending: Vec<(ObjectId, String)> =
            snapshot.manifest.elements.iter().map(|element| (element.tree, element.name.clone())).collect();
        let mut visited = HashSet::new();
        while let Some((tree_id, path)) = pending.pop() {
            if !visited.insert(tree_id) {
                continue;
            }
            let tree = match repository.read_tree(&tree_id) {
                Ok(tree) => tree,
                Err(error) => {
                    if let Some(pack) = damaged_blobs.get(&tree_id) {
                        users.entry(pack.clone()).or_default().insert(snapshot.id);
                    }
                    problem.get_or_insert_with(|| error.to_string());
                    continue;
                }
            };
            for node in &tree.nodes {
                if let Some(subtree) = node.subtree.filter(|_| node.kind == NodeKind::Dir) {
                    pending.push((subtree, format!("{path}/{}", String::from_utf8_lossy(&node.name))));
                }
                for chunk in &node.content {
                    if let Some(pack) = damaged_blobs.get(chunk) {
                        users.entry(pack.clone()).or_default().insert(snapshot.id);
                        problem.get_or_insert_with(|| {
                            format!(
                                "chunk {} in pack {} is lost or damaged",
                                chunk.short(12),
                                backend.describe(pack).display()
                            )
                        });
                    }
                }
            }
            let missing = match missing_in_tree.get(&tree_id) {
                Some(missing) => missing.clone(),
                None => {
                    let missing = tree_problem(&tree, &store::lock(repository.catalog()))?;
                    missing_in_tree.insert(tree_id, missing.clone());
                    missing
                }
            };
            if let Some(missing) = missing {
                problem.get_or_insert_with(|| format!("in {path}: {missing}"));
            }
        }
        if let Some(problem) = problem {
            report.damaged_snapshots.push((snapshot.id, problem));
        }
    }
    // What list shows: a snapshot found damaged is not restorable until a check finds
    // it whole. A structural check cannot see what only reading the data finds, so it
    // adds to what the last full check found; a check that read all data replaces it.
    store::lock(repository.catalog()).record_damage(&report.damaged_snapshots, read_data)?;
    report.damaged_packs = pack_problems
        .into_iter()
        .map(|(pack, detail)| DamagedPack {
            snapshots: users.get(&pack).map(|ids| ids.iter().copied().collect()).unwrap_or_default(),
            pack: backend.describe(&pack).display().to_string(),
            detail,
        })
        .collect();
    Ok(report)
}

/// The first thing wrong with `tree` that reading its blobs would not show: a name no
/// restore can write (empty, `.`, `..`, holding `/` or NUL), a name twice, a directory
/// without a subtree, a chunk the index lacks, or a file whose chunks hold more or fewer
/// bytes than its recorded size.
fn tree_problem(tree: &Tree, catalog: &Catalog) -> Result<Option<String>> {
    let mut names = HashSet::new();
    for node in &tree.nodes {
        let name = String::from_utf8_lossy(&node.name);
        if node.name.is_empty()
            || node.name == b"."
            || node.name == b".."
            || node.name.contains(&b'/')
            || node.name.contains(&0)
        {
            return Ok(Some(format!("its tree holds an entry named `{name}`, which no restore can write")));
        }
        if !names.insert(node.name.as_slice()) {
            return Ok(Some(format!("its tree holds `{name}` twice")));
        }
        if node.kind == NodeKind::Dir && node.subtree.is_none() {
            return Ok(Some(format!("directory `{name}` has no tree")));
        }
        let mut held = 0u64;
        for chunk in &node.content {
            match catalog.locate(chunk)? {
                Some(location) => held += u64::from(location.entry.raw_length),
                None => return Ok(Some(format!("chunk {} is missing from the repository", chunk.short(12)))),
            }
        }
        if node.kind == NodeKind::File && held != node.size {
            return Ok(Some(format!("file `{name}` records {} bytes, its chunks hold {held}", node.size)));
        }
    }
    Ok(None)
}

/// Reads a whole pack and verifies it; on damage, says what is wrong and which blobs
/// are lost (all that `indexed` or its footer place in it, when it cannot be read or
/// parsed).
pub(crate) fn verify_pack(
    repository: &Repository,
    name: &str,
    size: u64,
    indexed: &[ObjectId],
) -> Result<(), (String, Vec<ObjectId>)> {
    let backend = repository.backend();
    let indexed_blobs = || -> Vec<ObjectId> {
        let mut blobs = indexed.to_vec();
        if let Ok(entries) = read_pack_entries(repository.crypto(), backend, name, size) {
            blobs.extend(entries.iter().map(|entry| entry.id));
        }
        blobs
    };
    let bytes = backend
        .get(name, pack::MAX_PACK_SIZE)
        .map_err(|error| (format!("cannot be read: {error}"), indexed_blobs()))?;
    let entries =
        pack::parse_any_pack(repository.crypto(), &bytes).map_err(|error| (error.to_string(), indexed_blobs()))?;
    let mut bad = Vec::new();
    for entry in &entries {
        let start = entry.offset as usize;
        let stored = bytes[start..start + entry.length as usize].to_vec();
        if repository.crypto().decode_blob(backend, name, entry, stored).is_err() {
            bad.push(entry.id);
        }
    }
    let name_matches = store::pack_id_of_name(name) == Some(ObjectId::of(&bytes));
    match (bad.is_empty(), name_matches) {
        (true, true) => Ok(()),
        (true, false) => Err(("its bytes do not match its name (the damage is outside the blobs)".to_owned(), bad)),
        (false, _) => Err((format!("{} of its {} blobs do not match their hash", bad.len(), entries.len()), bad)),
    }
}
