//! The file tree model: one [`Tree`] object per directory.
//!
//! A tree lists a directory's entries, sorted by name, each with its metadata and
//! either its content (the chunk ids of a file), its subtree (a directory) or its
//! target (a symlink). Trees are stored as blobs like file content, named by the hash
//! of their bytes, so an unchanged directory yields the same tree id and costs nothing.
//!
//! Trees are CBOR (RFC 8949): compact, binary-safe for names that are not UTF-8, and
//! self-describing, so later versions can add fields that older trees simply lack.
//!
//! A stored tree is hostile input. Decoding is bounded by what a real tree can hold:
//! at most [`MAX_NODES`] entries, names of at most [`MAX_NAME`] bytes, symlink targets
//! of at most [`MAX_TARGET`] bytes and [`MAX_CONTENT`] chunks per file. A count is
//! checked as soon as the data declares it, before anything is allocated for it, and
//! every list grows only as its items are really read, so a tree that claims four
//! billion entries in a few bytes is refused at once and costs nothing.

use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};

use crate::id::ObjectId;
use crate::store::pack::MAX_TREE_BLOB;

/// The most entries a tree holds. Every node this build writes spends more than 64
/// bytes on its field names and values, so no tree that fits in [`MAX_TREE_BLOB`] has
/// more; a tree claiming more is damaged or forged.
pub const MAX_NODES: usize = MAX_TREE_BLOB as usize / 64;

/// The longest entry name: Linux's `NAME_MAX`, which every file system it mounts keeps.
pub const MAX_NAME: usize = 255;

/// The longest symlink target: Linux's `PATH_MAX`, which `symlink(2)` refuses to exceed.
pub const MAX_TARGET: usize = 4096;

/// The most chunks in one file's content: each id takes 33 bytes of a tree, so none
/// that fits in [`MAX_TREE_BLOB`] has more.
pub const MAX_CONTENT: usize = MAX_TREE_BLOB as usize / 33;

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
    /// The entry's name: one path component, raw bytes (it need not be UTF-8), at
    /// most [`MAX_NAME`] bytes.
    #[serde(serialize_with = "serde_bytes::serialize", deserialize_with = "name")]
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
    /// The chunks of a file's content, in order; at most [`MAX_CONTENT`].
    #[serde(default, skip_serializing_if = "Vec::is_empty", deserialize_with = "content")]
    pub content: Vec<ObjectId>,
    /// The tree of a directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subtree: Option<ObjectId>,
    /// The target of a symlink, raw bytes, at most [`MAX_TARGET`] of them.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "serde_bytes::serialize",
        deserialize_with = "target"
    )]
    pub target: Option<Vec<u8>>,
}

/// The entries of one directory, sorted by name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tree {
    /// The entries; at most [`MAX_NODES`].
    #[serde(deserialize_with = "nodes")]
    pub nodes: Vec<Node>,
}

fn nodes<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<Node>, D::Error> {
    deserializer.deserialize_seq(BoundedList { max: MAX_NODES, what: "entries", items: PhantomData })
}

fn content<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<ObjectId>, D::Error> {
    deserializer.deserialize_seq(BoundedList { max: MAX_CONTENT, what: "chunks in a file", items: PhantomData })
}

fn name<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<u8>, D::Error> {
    let name = serde_bytes::ByteBuf::deserialize(deserializer)?.into_vec();
    if name.len() > MAX_NAME {
        return Err(de::Error::custom(format!("a name of {} bytes (at most {MAX_NAME})", name.len())));
    }
    Ok(name)
}

fn target<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Vec<u8>>, D::Error> {
    let target = Option::<serde_bytes::ByteBuf>::deserialize(deserializer)?.map(serde_bytes::ByteBuf::into_vec);
    match target {
        Some(target) if target.len() > MAX_TARGET => {
            Err(de::Error::custom(format!("a symlink target of {} bytes (at most {MAX_TARGET})", target.len())))
        }
        target => Ok(target),
    }
}

/// A list of at most `max` items. A declared length is checked before any item is
/// read, and the list grows as items arrive rather than by the declared length, which
/// the data may lie about.
struct BoundedList<T> {
    max: usize,
    what: &'static str,
    items: PhantomData<T>,
}

impl<'de, T: Deserialize<'de>> Visitor<'de> for BoundedList<T> {
    type Value = Vec<T>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a list of at most {} {}", self.max, self.what)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let too_many = |count: String| de::Error::custom(format!("{count} {} (at most {})", self.what, self.max));
        if let Some(declared) = seq.size_hint().filter(|declared| *declared > self.max) {
            return Err(too_many(declared.to_string()));
        }
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            if items.len() == self.max {
                return Err(too_many(format!("more than {}", self.max)));
            }
            items.push(item);
        }
        Ok(items)
    }
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

    /// Parses the stored form, within the bounds this module documents.
    pub fn decode(bytes: &[u8]) -> Result<Self, TreeDecodeError> {
        if bytes.len() > MAX_TREE_BLOB as usize {
            return Err(TreeDecodeError(format!("{} bytes, more than a tree may hold", bytes.len())));
        }
        ciborium::from_reader(bytes).map_err(|error| TreeDecodeError(describe(error)))
    }

    /// The node with this name, by binary search (nodes are sorted by name).
    pub fn find(&self, name: &[u8]) -> Option<&Node> {
        self.nodes.binary_search_by(|node| node.name.as_slice().cmp(name)).ok().map(|index| &self.nodes[index])
    }
}

/// Says what is wrong in words, without the decoder's type names.
fn describe(error: ciborium::de::Error<std::io::Error>) -> String {
    use ciborium::de::Error;
    match error {
        Error::Io(error) if error.kind() == std::io::ErrorKind::UnexpectedEof => "it ends early".to_owned(),
        Error::Io(error) => error.to_string(),
        Error::Syntax(offset) => format!("malformed CBOR at byte {offset}"),
        Error::Semantic(Some(offset), detail) => format!("{detail}, at byte {offset}"),
        Error::Semantic(None, detail) => detail,
        Error::RecursionLimitExceeded => "nested too deep".to_owned(),
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

    /// `{"nodes": <array header declaring `count` items>}` and nothing more.
    fn claiming_entries(count: u64) -> Vec<u8> {
        let mut bytes = vec![0xa1, 0x65];
        bytes.extend_from_slice(b"nodes");
        bytes.push(0x9b);
        bytes.extend_from_slice(&count.to_be_bytes());
        bytes
    }

    #[test]
    fn a_stored_tree_claiming_four_billion_entries_is_refused_at_once_as_corrupt() -> crate::Result<()> {
        use crate::repository::{Access, Repository};
        use crate::store::BlobWriter;
        use crate::store::pack::BlobKind;

        let dir = tempfile::tempdir().map_err(|error| crate::Error::io("creating", std::env::temp_dir(), error))?;
        Repository::init(dir.path(), Default::default())?;
        let repository = Repository::open(dir.path(), Access::Write, &mut |_| {})?;
        let forged = claiming_entries(1 << 32);
        assert!(forged.len() < 20);
        let id = {
            let writer = BlobWriter::new(repository.backend(), repository.catalog(), repository.crypto())?;
            let id = writer.add(BlobKind::Tree, &forged)?;
            writer.flush()?;
            id
        };
        let started = std::time::Instant::now();
        match repository.read_tree(&id) {
            Err(crate::Error::Corrupt { what, detail }) => {
                assert_eq!(what, format!("tree {}", id.short(12)), "the error names the tree");
                assert!(detail.contains("4294967296 entries"), "the error says why: {detail}");
            }
            other => panic!("a tree claiming 2^32 entries was not refused as corrupt: {other:?}"),
        }
        assert!(started.elapsed() < std::time::Duration::from_secs(1), "refusing took {:?}", started.elapsed());
        Ok(())
    }

    #[test]
    fn declared_counts_beyond_the_bounds_are_refused_before_reading_the_items() {
        for count in [MAX_NODES as u64 + 1, u64::MAX] {
            let error = Tree::decode(&claiming_entries(count)).err().map(|error| error.to_string());
            assert!(error.as_deref().is_some_and(|error| error.contains(&format!("{count} entries"))), "{error:?}");
        }
        // A file whose content list claims 2^40 chunks, in a tree that ends right after.
        let mut tree = Tree { nodes: vec![node(b"a")] }.encode();
        let claim = [0x9b, 0, 0, 1, 0, 0, 0, 0, 0];
        let position = tree.windows(8).position(|window| window == b"content\x81").map(|at| at + 7);
        let Some(position) = position else { panic!("the encoded tree has no one-chunk content list") };
        tree.truncate(position);
        tree.extend_from_slice(&claim);
        let error = Tree::decode(&tree).err().map(|error| error.to_string());
        assert!(error.as_deref().is_some_and(|error| error.contains("1099511627776 chunks in a file")), "{error:?}");
    }

    #[test]
    fn names_and_symlink_targets_longer_than_linux_allows_are_refused() -> Result<(), TreeDecodeError> {
        let longest = Tree { nodes: vec![node(&[b'n'; MAX_NAME])] };
        assert_eq!(Tree::decode(&longest.encode())?, longest);
        let error = Tree::decode(&Tree { nodes: vec![node(&[b'n'; MAX_NAME + 1])] }.encode()).err();
        assert!(error.is_some_and(|error| error.to_string().contains("a name of 256 bytes")));

        let mut link = node(b"link");
        link.kind = NodeKind::Symlink;
        link.content.clear();
        link.target = Some(vec![b't'; MAX_TARGET]);
        let tree = Tree { nodes: vec![link.clone()] };
        assert_eq!(Tree::decode(&tree.encode())?, tree);
        link.target = Some(vec![b't'; MAX_TARGET + 1]);
        let error = Tree::decode(&Tree { nodes: vec![link] }.encode()).err();
        assert!(error.is_some_and(|error| error.to_string().contains("a symlink target of 4097 bytes")));
        Ok(())
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
