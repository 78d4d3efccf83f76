//! What a restore will lay down, found by walking every tree of the snapshot before
//! anything is written.
//!
//! The trees are stored bytes, so the walk trusts nothing: every name is checked, and
//! the walk is bounded in entries and depth. Without the bound, a snapshot of a few
//! kilobytes whose trees share subtrees (a tree holding two directories that are both
//! the next tree, forty levels deep) names 2^40 paths.

use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use crate::error::{Error, Result};
use crate::id::ObjectId;
use crate::repository::Repository;
use crate::tree::{Node, NodeKind, Tree};

use super::RestoreTarget;
use super::place::STAGING_PREFIX;

/// The most entries (files, directories, symlinks) one restore lays down: about a
/// gigabyte of plan at most.
pub(super) const MAX_ENTRIES: usize = 4_000_000;

/// The deepest directory a restore creates, counted from the element's root. Linux
/// paths end at 4096 bytes, so real trees stay far shallower; a deeper one is forged.
pub(super) const MAX_DEPTH: usize = 512;

/// A directory to lay down: an element's root, or a directory of the snapshot.
#[derive(Debug)]
pub(super) struct PlannedDir {
    /// Where it goes, for messages.
    pub path: PathBuf,
    /// Its path below the element's root, which is what excludes match.
    pub relative: PathBuf,
    /// `None` for an element's root, whose own metadata a snapshot does not hold.
    pub node: Option<Node>,
    /// What it holds, in the snapshot's order.
    pub entries: Vec<Entry>,
    /// The names of `entries`: everything else in a directory restored in place goes.
    pub names: HashSet<Vec<u8>>,
    /// Index into the restore's targets.
    pub target: usize,
}

/// One entry of a planned directory, by index into the plan's lists.
#[derive(Debug, Clone, Copy)]
pub(super) enum Entry {
    Dir(usize),
    File(usize),
    /// A further name of a file already planned (a hard link).
    Link(usize),
    Symlink(usize),
}

/// A file or symlink to lay down.
#[derive(Debug)]
pub(super) struct PlannedFile {
    /// Where it goes, for messages.
    pub path: PathBuf,
    pub node: Node,
    /// Index of its directory in [`Plan::dirs`].
    pub parent: usize,
}

/// A further name of a planned file.
#[derive(Debug)]
pub(super) struct PlannedLink {
    pub path: PathBuf,
    pub name: Vec<u8>,
    /// Index of the file in [`Plan::files`].
    pub file: usize,
}

/// Everything a restore lays down.
#[derive(Debug, Default)]
pub(super) struct Plan {
    /// Directories; each target's root comes before its children.
    pub dirs: Vec<PlannedDir>,
    pub files: Vec<PlannedFile>,
    pub symlinks: Vec<PlannedFile>,
    pub links: Vec<PlannedLink>,
    /// The index in `dirs` of each target's root.
    pub roots: Vec<usize>,
}

fn unsafe_name(dir: &Path, name: &[u8], reason: &str) -> Error {
    Error::UnsafePath { path: dir.join(OsStr::from_bytes(name)), reason: reason.to_owned() }
}

/// Refuses a name that could lead out of its directory or collide.
fn check_name(dir: &Path, name: &[u8], names: &mut HashSet<Vec<u8>>) -> Result<()> {
    if name.is_empty() || name == b"." || name == b".." {
        return Err(unsafe_name(dir, name, "the snapshot holds an entry named `.`, `..` or nothing"));
    }
    if name.contains(&b'/') || name.contains(&0) {
        return Err(unsafe_name(
            dir,
            name,
            "the snapshot holds a name with a `/` or NUL: it could point outside the target",
        ));
    }
    if !names.insert(name.to_vec()) {
        return Err(unsafe_name(dir, name, "the snapshot holds this name twice in one directory"));
    }
    Ok(())
}

impl Plan {
    /// Plans every target, refusing targets that overlap: one restored after the
    /// other could be led anywhere by a symlink the first laid down.
    pub fn new(repository: &Repository, targets: &[RestoreTarget]) -> Result<Plan> {
        for (index, target) in targets.iter().enumerate() {
            for other in &targets[index + 1..] {
                let (a, b) = (&target.destination, &other.destination);
                if a.starts_with(b) || b.starts_with(a) {
                    return Err(Error::UnsafePath {
                        path: if a.starts_with(b) { a.clone() } else { b.clone() },
                        reason: format!(
                            "{} and {} overlap: restore them one at a time, or fix the mounts in envsnap.toml",
                            a.display(),
                            b.display()
                        ),
                    });
                }
            }
        }
        let mut plan = Plan::default();
        for (index, target) in targets.iter().enumerate() {
            plan.add_target(repository, target, index)?;
        }
        Ok(plan)
    }

    /// How many entries the plan holds so far.
    fn entries(&self) -> usize {
        self.dirs.len() + self.files.len() + self.symlinks.len() + self.links.len()
    }

    fn add_target(&mut self, repository: &Repository, target: &RestoreTarget, target_index: usize) -> Result<()> {
        let mut trees = Trees { repository, trees: HashMap::new(), sizes: HashMap::new() };
        trees.expanded(target.tree, 0)?;
        let mut inodes: HashMap<u64, usize> = HashMap::new();
        let root = self.dirs.len();
        self.roots.push(root);
        self.dirs.push(PlannedDir {
            path: target.destination.clone(),
            relative: PathBuf::new(),
            node: None,
            entries: Vec::new(),
            names: HashSet::new(),
            target: target_index,
        });
        let mut pending = vec![(root, target.tree)];
        while let Some((dir, tree_id)) = pending.pop() {
            let tree = trees.read(tree_id)?;
            let path = self.dirs[dir].path.clone();
            let relative = self.dirs[dir].relative.clone();
            let mut names = HashSet::with_capacity(tree.nodes.len());
            for child in &tree.nodes {
                check_name(&path, &child.name, &mut names)?;
                if dir == root && child.name.starts_with(STAGING_PREFIX.as_bytes()) {
                    return Err(unsafe_name(
                        &path,
                        &child.name,
                        "the snapshot holds a name envsnap reserves for the files of a restore in progress",
                    ));
                }
            }
            if self.entries() + tree.nodes.len() > MAX_ENTRIES {
                return Err(Error::Corrupt {
                    what: format!("the snapshot's trees below {}", target.destination.display()),
                    detail: format!(
                        "they name more than {MAX_ENTRIES} entries (trees that repeat their subtrees name \
                         more paths than any file system holds); envsnap restores at most {MAX_ENTRIES} at once"
                    ),
                });
            }
            let mut entries = Vec::with_capacity(tree.nodes.len());
            for child in tree.nodes.iter().cloned() {
                let name = OsStr::from_bytes(&child.name);
                let child_path = path.join(name);
                match child.kind {
                    NodeKind::Dir => {
                        let subtree = child.subtree.ok_or_else(|| Error::Corrupt {
                            what: format!("tree {}", tree_id.short(12)),
                            detail: format!("directory {} has no subtree", child_path.display()),
                        })?;
                        let index = self.dirs.len();
                        self.dirs.push(PlannedDir {
                            path: child_path,
                            relative: relative.join(name),
                            node: Some(child),
                            entries: Vec::new(),
                            names: HashSet::new(),
                            target: target_index,
                        });
                        pending.push((index, subtree));
                        entries.push(Entry::Dir(index));
                    }
                    NodeKind::Symlink => {
                        entries.push(Entry::Symlink(self.symlinks.len()));
                        self.symlinks.push(PlannedFile { path: child_path, node: child, parent: dir });
                    }
                    NodeKind::File => {
                        if child.links > 1 {
                            if let Some(first) = inodes.get(&child.inode) {
                                entries.push(Entry::Link(self.links.len()));
                                self.links.push(PlannedLink { path: child_path, name: child.name, file: *first });
                                continue;
                            }
                            inodes.insert(child.inode, self.files.len());
                        }
                        entries.push(Entry::File(self.files.len()));
                        self.files.push(PlannedFile { path: child_path, node: child, parent: dir });
                    }
                }
            }
            let planned = &mut self.dirs[dir];
            planned.entries = entries;
            planned.names = names;
        }
        Ok(())
    }

    /// The target a file belongs to.
    pub fn target_of(&self, file: usize) -> usize {
        self.dirs[self.files[file].parent].target
    }

    /// The name an entry has in its directory.
    pub fn name(&self, entry: Entry) -> &[u8] {
        match entry {
            Entry::Dir(index) => self.dirs[index].node.as_ref().map(|node| node.name.as_slice()).unwrap_or_default(),
            Entry::File(index) => &self.files[index].node.name,
            Entry::Link(index) => &self.links[index].name,
            Entry::Symlink(index) => &self.symlinks[index].node.name,
        }
    }
}

/// Refuses the tree `root` when it expands to more than [`MAX_ENTRIES`] entries or lies
/// deeper than [`MAX_DEPTH`]: what any walk of a whole snapshot tree (restore, export,
/// diff) must know before it starts, reading each distinct tree once.
pub(crate) fn check_bounds(repository: &Repository, root: ObjectId) -> Result<()> {
    Trees { repository, trees: HashMap::new(), sizes: HashMap::new() }.expanded(root, 0).map(|_| ())
}

/// The distinct trees below a root, each read once.
struct Trees<'r> {
    repository: &'r Repository,
    trees: HashMap<ObjectId, Rc<Tree>>,
    /// How many entries each tree expands to, its subtrees' included.
    sizes: HashMap<ObjectId, usize>,
}

impl Trees<'_> {
    /// Reads every tree below `id` (at `depth`) and counts the entries it expands to,
    /// refusing as soon as they pass [`MAX_ENTRIES`] or the trees pass [`MAX_DEPTH`].
    /// Each distinct tree is read once, so trees that repeat their subtrees cost what
    /// they store, not what they name.
    fn expanded(&mut self, id: ObjectId, depth: usize) -> Result<usize> {
        if let Some(size) = self.sizes.get(&id) {
            return Ok(*size);
        }
        if depth > MAX_DEPTH {
            return Err(Error::Corrupt {
                what: format!("tree {}", id.short(12)),
                detail: format!(
                    "it lies more than {MAX_DEPTH} directories deep, deeper than any real file system allows"
                ),
            });
        }
        let tree = Rc::new(self.repository.read_tree(&id)?);
        let mut size = tree.nodes.len();
        for node in &tree.nodes {
            if let (NodeKind::Dir, Some(subtree)) = (node.kind, node.subtree) {
                size = size.saturating_add(self.expanded(subtree, depth + 1)?);
            }
            if size > MAX_ENTRIES {
                return Err(Error::Corrupt {
                    what: format!("tree {}", id.short(12)),
                    detail: format!(
                        "it names more than {MAX_ENTRIES} entries (trees that repeat their subtrees name more \
                         paths than any file system holds); envsnap restores at most {MAX_ENTRIES} at once"
                    ),
                });
            }
        }
        self.sizes.insert(id, size);
        self.trees.insert(id, tree);
        Ok(size)
    }

    /// A tree [`Trees::expanded`] read.
    fn read(&self, id: ObjectId) -> Result<Rc<Tree>> {
        self.trees.get(&id).cloned().ok_or_else(|| Error::Corrupt {
            what: format!("tree {}", id.short(12)),
            detail: "it is missing from the snapshot's trees".to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_lead_elsewhere_are_refused() {
        let mut names = HashSet::new();
        for bad in [&b""[..], b".", b"..", b"a/b", b"/etc", b"a\0b"] {
            assert!(check_name(Path::new("t"), bad, &mut names).is_err(), "{bad:?} was accepted");
        }
        check_name(Path::new("t"), b"a", &mut names).expect("a plain name");
        assert!(check_name(Path::new("t"), b"a", &mut names).is_err(), "a name twice was accepted");
    }
}
