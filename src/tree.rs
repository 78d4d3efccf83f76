//! The file tree model: one [`Tree`] object per directory.
//!
//! A tree lists a directory's entries, sorted by name, each with its metadata and
//! either its content (the chunk ids of a file), its subtree (a directory) or its
//! target (a symlink). Trees are stored as blobs like file content, named by the hash
//! of their bytes, so an unchanged directory yields the same tree id and costs nothing.
//!
//! Trees are CBOR (RFC 8949): compact, binary-safe for names that are not UTF-8, and
//! self-describing, so later versions can add fields that older trees simply lack.

use serde::{Deserialize, Serialize};

use crate::id::ObjectId;

/// What kind of file system object a node is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeKind {
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// A symbolic link, stored and never followed.
    Symlink,
}

/// One entry of a directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Node {
    /// The entry's name: one path component, raw bytes (it need not be UTF-8).
    #[serde(with = "serde_bytes")]
    pub name: Vec<u8>,
    /// File, directory or symlink.
    pub kind: NodeKind,
    /// Permission bits, with setuid, setgid and sticky (`st_mode & 0o7777`).
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Modification time, seconds since the epoch.
    pub mtime: i64,
    /// Modification time, nanoseconds.
    pub mtime_nsec: u32,
    /// Change time, seconds; with `inode`, `size` and `mtime` it tells an unchanged file.
    pub ctime: i64,
    /// Change time, nanoseconds.
    pub ctime_nsec: u32,
    /// Inode number at backup time; files with more than one link and the same inode
    /// are restored as hard links to each other.
    pub inode: u64,
    /// Number of hard links at backup time.
    pub links: u64,
    /// Size in bytes (files).
    pub size: u64,
    /// The chunks of a file's content, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub content: Vec<ObjectId>,
    /// The tree of a directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subtree: Option<ObjectId>,
    /// The target of a symlink, raw bytes.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "serde_bytes")]
    pub target: Option<Vec<u8>>,
}

/// The entries of one directory, sorted by name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tree {
    /// The entries.
    pub nodes: Vec<Node>,
}

/// Why a tree could not be decoded.
#[derive(Debug, thiserror::Error)]
#[error("not a valid tree: {0}")]
pub struct TreeDecodeError(String);

impl Tree {
    /// The stored form.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        ciborium::into_writer(self, &mut out).expect("writing CBOR to a Vec cannot fail");
        out
    }

    /// Parses the stored form.
    pub fn decode(bytes: &[u8]) -> Result<Self, TreeDecodeError> {
        ciborium::from_reader(bytes).map_err(|error| TreeDecodeError(error.to_string()))
    }

    /// The node with this name, by binary search (nodes are sorted by name).
    pub fn find(&self, name: &[u8]) -> Option<&Node> {
        self.nodes.binary_search_by(|node| node.name.as_slice().cmp(name)).ok().map(|index| &self.nodes[index])
    }
}

impl Node {
    /// True when `other` (from the parent snapshot) describes the same, unchanged file:
    /// same inode, size, modification and change times. Its content can then be reused
    /// without reading the file again.
    pub fn unchanged_since(&self, other: &Node) -> bool {
        self.kind == NodeKind::File
            && other.kind == NodeKind::File
            && self.inode == other.inode
            && self.size == other.size
            && self.mtime == other.mtime
            && self.mtime_nsec == other.mtime_nsec
            && self.ctime == other.ctime
            && self.ctime_nsec == other.ctime_nsec
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &[u8]) -> Node {
        Node {
            name: name.to_vec(),
            kind: NodeKind::File,
            mode: 0o644,
            uid: 0,
            gid: 0,
            mtime: 1,
            mtime_nsec: 2,
            ctime: 3,
            ctime_nsec: 4,
            inode: 5,
            links: 1,
            size: 6,
            content: vec![ObjectId::of(b"c")],
            subtree: None,
            target: None,
        }
    }

    #[test]
    fn encode_decode_round_trip_with_binary_names() -> Result<(), TreeDecodeError> {
        let tree = Tree { nodes: vec![node(b"a"), node(&[0xff, 0xfe, b'x'])] };
        let bytes = tree.encode();
        assert_eq!(Tree::decode(&bytes)?, tree);
        assert_eq!(tree.encode(), bytes, "encoding is deterministic");
        assert!(tree.find(&[0xff, 0xfe, b'x']).is_some());
        assert!(tree.find(b"b").is_none());
        Ok(())
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(Tree::decode(b"\xff\x00garbage").is_err());
        assert!(Tree::decode(b"").is_err());
    }

    #[test]
    fn unchanged_since_compares_identity_and_times() {
        let a = node(b"a");
        let mut b = a.clone();
        assert!(a.unchanged_since(&b));
        b.ctime_nsec += 1;
        assert!(!a.unchanged_since(&b));
    }
}
