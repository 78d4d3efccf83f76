//! What changed between two snapshots.
//!
//! Trees are compared side by side by name. Equal subtree ids mean equal contents,
//! so an unchanged directory is skipped without being read.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::error::Result;
use crate::id::ObjectId;
use crate::repository::Repository;
use crate::snapshot::Manifest;
use crate::tree::{Node, NodeKind, Tree};

/// How one path changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    /// Only in the second snapshot.
    Added,
    /// Only in the first.
    Removed,
    /// Content (or symlink target) differs.
    Modified,
    /// Same content; mode, owner or modification time differ.
    Metadata,
    /// A file became a directory, or the like.
    TypeChanged,
}

impl ChangeKind {
    /// The one-character mark that listings use: `+ - M m T`.
    pub fn mark(self) -> char {
        match self {
            ChangeKind::Added => '+',
            ChangeKind::Removed => '-',
            ChangeKind::Modified => 'M',
            ChangeKind::Metadata => 'm',
            ChangeKind::TypeChanged => 'T',
        }
    }
}

/// One changed path: `<element>/<path inside it>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// What happened.
    pub kind: ChangeKind,
    /// The path, starting with the element's name.
    pub path: PathBuf,
    /// True for a directory (its contents are listed too, when added or removed).
    pub is_dir: bool,
}

/// The changes from `old` to `new`, in path order.
pub fn diff(repository: &Repository, old: &Manifest, new: &Manifest) -> Result<Vec<Change>> {
    let mut changes = Vec::new();
    let mut names: Vec<&str> = old.elements.iter().chain(&new.elements).map(|e| e.name.as_str()).collect();
    names.sort_unstable();
    names.dedup();
    // The walk below expands every tree it meets: bound it first.
    for element in old.elements.iter().chain(&new.elements) {
        crate::restore::check_bounds(repository, element.tree)?;
    }
    for name in names {
        let root = PathBuf::from(name);
        match (old.element(name), new.element(name)) {
            (Some(a), Some(b)) => compare_trees(repository, Some(a.tree), Some(b.tree), &root, &mut changes)?,
            (Some(a), None) => {
                changes.push(Change { kind: ChangeKind::Removed, path: root.clone(), is_dir: true });
                compare_trees(repository, Some(a.tree), None, &root, &mut changes)?;
            }
            (None, Some(b)) => {
                changes.push(Change { kind: ChangeKind::Added, path: root.clone(), is_dir: true });
                compare_trees(repository, None, Some(b.tree), &root, &mut changes)?;
            }
            (None, None) => {}
        }
    }
    Ok(changes)
}

fn compare_trees(
    repository: &Repository,
    old: Option<ObjectId>,
    new: Option<ObjectId>,
    path: &Path,
    changes: &mut Vec<Change>,
) -> Result<()> {
    if old == new {
        return Ok(());
    }
    let read = |id: Option<ObjectId>| id.map(|id| repository.read_tree(&id)).transpose().map(Option::unwrap_or_default);
    let (old, new): (Tree, Tree) = (read(old)?, read(new)?);
    let (mut a, mut b) = (old.nodes.iter().peekable(), new.nodes.iter().peekable());
    loop {
        let order = match (a.peek(), b.peek()) {
            (None, None) => break,
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (Some(x), Some(y)) => x.name.cmp(&y.name),
        };
        match order {
            std::cmp::Ordering::Less => {
                let node = a.next().expect("peeked");
                one_sided(repository, node, ChangeKind::Removed, path, changes)?;
            }
            std::cmp::Ordering::Greater => {
                let node = b.next().expect("peeked");
                one_sided(repository, node, ChangeKind::Added, path, changes)?;
            }
            std::cmp::Ordering::Equal => {
                let (x, y) = (a.next().expect("peeked"), b.next().expect("peeked"));
                let child = path.join(OsStr::from_bytes(&x.name));
                if x.kind != y.kind {
                    changes.push(Change {
                        kind: ChangeKind::TypeChanged,
                        path: child,
                        is_dir: y.kind == NodeKind::Dir,
                    });
                    continue;
                }
                if x.kind == NodeKind::Dir {
                    if metadata_differs(x, y) {
                        changes.push(Change { kind: ChangeKind::Metadata, path: child.clone(), is_dir: true });
                    }
                    compare_trees(repository, x.subtree, y.subtree, &child, changes)?;
                } else if x.content != y.content || x.target != y.target || x.size != y.size {
                    changes.push(Change { kind: ChangeKind::Modified, path: child, is_dir: false });
                } else if metadata_differs(x, y) {
                    changes.push(Change { kind: ChangeKind::Metadata, path: child, is_dir: false });
                }
            }
        }
    }
    Ok(())
}

fn one_sided(
    repository: &Repository,
    node: &Node,
    kind: ChangeKind,
    path: &Path,
    changes: &mut Vec<Change>,
) -> Result<()> {
    let child = path.join(OsStr::from_bytes(&node.name));
    let is_dir = node.kind == NodeKind::Dir;
    changes.push(Change { kind, path: child.clone(), is_dir });
    if is_dir {
        let (old, new) = match kind {
            ChangeKind::Removed => (node.subtree, None),
            _ => (None, node.subtree),
        };
        compare_trees(repository, old, new, &child, changes)?;
    }
    Ok(())
}

fn metadata_differs(x: &Node, y: &Node) -> bool {
    x.mode != y.mode || x.uid != y.uid || x.gid != y.gid || x.mtime != y.mtime || x.mtime_nsec != y.mtime_nsec
}
