//! Pack files: many blobs in one immutable, self-describing object.
//!
//! ```text
//! header   "ENVSNPK" + format byte (1)                     8 bytes
//! blobs    each blob's stored bytes, back to back          (zstd frame or plain)
//! footer   one entry per blob, in blob order               50 bytes each
//!            id (32) kind (1) compression (1)
//!            offset (u64 LE) length (u32 LE) raw length (u32 LE)
//! trailer  entry count (u32 LE) + "ENVSNPKE"               12 bytes
//! ```
//!
//! The footer makes each pack describe itself, so the chunk index can be rebuilt
//! from the packs alone. A pack is named by the BLAKE3 hash of all its bytes, so any
//! damage, even to the footer, is detected by `check --read-data`.
//!
//! An encrypted repository's packs (format 2, see [`crate::crypto`]) have a longer
//! header (the pack's sealed key), each blob sealed (16 bytes more) and the footer
//! sealed (16 bytes more); entries and trailer are laid out alike.

use crate::crypto::{self, CryptoError, PackSealer};
use crate::id::ObjectId;

const HEADER: &[u8; 8] = b"ENVSNPK\x01";
const TRAILER_MAGIC: &[u8; 8] = b"ENVSNPKE";
/// Bytes of one footer entry.
pub const ENTRY_SIZE: usize = 32 + 1 + 1 + 8 + 4 + 4;
/// Bytes of the trailer: the entry count and the closing magic.
pub const TRAILER_SIZE: usize = 4 + 8;

/// Where a pack's blobs begin and what each seal adds: what tells a format-1 pack's
/// layout from a format-2 one's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    /// Bytes of the header.
    pub header: usize,
    /// Bytes a seal adds to a blob and to the footer.
    pub tag: usize,
}

/// A format-1 pack: plain.
pub const PLAIN: Layout = Layout { header: 8, tag: 0 };
/// A format-2 pack: sealed.
pub const SEALED: Layout = Layout { header: crypto::PACK_HEADER, tag: crypto::TAG };

/// The largest plain length a data blob may claim: no chunker cuts a larger chunk,
/// whatever a repository's parameters.
pub const MAX_DATA_BLOB: u32 = fastcdc::v2020::MAXIMUM_MAX;
/// The largest plain length a tree blob may claim: a directory listing of several
/// hundred thousand entries, far above any real one, far below what exhausts memory.
pub const MAX_TREE_BLOB: u32 = 64 << 20;

/// The largest pack a reader accepts. A writer closes a pack once it holds
/// [`PACK_TARGET`](super::PACK_TARGET) bytes, footer included, so the last blob added,
/// at most a tree's [`MAX_TREE_BLOB`] stored plain, is all it can go past that by;
/// this leaves room for as much again. A larger "pack" (a sparse file, a planted
/// object) is refused before any of it is read.
pub const MAX_PACK_SIZE: u64 = 128 << 20;

// The bound holds for a sealed pack too: what sealing adds (a longer header, a tag on
// each blob and on the footer) is counted by [`PackBuilder::len`] before the pack is
// closed, so only the last blob's tag and entry can go past the target with it.
const _: () = assert!(
    (super::PACK_TARGET + MAX_TREE_BLOB as usize + crypto::TAG + ENTRY_SIZE) as u64 <= MAX_PACK_SIZE,
    "a full pack, plain or sealed, fits under MAX_PACK_SIZE"
);

/// What a blob holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BlobKind {
    /// A piece of file (or dump) content.
    Data,
    /// A directory listing: a serialized [`crate::tree::Tree`].
    Tree,
}

impl BlobKind {
    /// The byte that stands for this kind on disk and in the catalog.
    pub fn code(self) -> u8 {
        match self {
            BlobKind::Data => 0,
            BlobKind::Tree => 1,
        }
    }

    /// The largest plain length a blob of this kind may have.
    pub fn max_raw_length(self) -> u32 {
        match self {
            BlobKind::Data => MAX_DATA_BLOB,
            BlobKind::Tree => MAX_TREE_BLOB,
        }
    }

    /// The kind a byte stands for.
    pub fn from_code(code: u8) -> Option<Self> {
        match code {
            0 => Some(BlobKind::Data),
            1 => Some(BlobKind::Tree),
            _ => None,
        }
    }
}

/// How a blob's bytes are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// As is: used when compressing does not pay.
    None,
    /// One zstd frame.
    Zstd,
}

impl Compression {
    /// The byte that stands for this on disk and in the catalog.
    pub fn code(self) -> u8 {
        match self {
            Compression::None => 0,
            Compression::Zstd => 1,
        }
    }

    /// The compression a byte stands for.
    pub fn from_code(code: u8) -> Option<Self> {
        match code {
            0 => Some(Compression::None),
            1 => Some(Compression::Zstd),
            _ => None,
        }
    }
}

/// Where one blob sits in its pack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PackEntry {
    /// The hash of the blob's plain bytes.
    pub id: ObjectId,
    /// What it holds.
    pub kind: BlobKind,
    /// How it is stored.
    pub compression: Compression,
    /// Its first byte in the pack.
    pub offset: u64,
    /// Its stored (possibly compressed) length.
    pub length: u32,
    /// Its plain length.
    pub raw_length: u32,
}

/// Builds one pack in memory.
#[derive(Debug)]
pub struct PackBuilder {
    bytes: Vec<u8>,
    entries: Vec<PackEntry>,
    /// Seals every blob and the footer, in an encrypted repository.
    sealer: Option<PackSealer>,
}

impl Default for PackBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl PackBuilder {
    /// An empty plain pack.
    pub fn new() -> Self {
        Self::sealed(None)
    }

    /// An empty pack, sealed by `sealer` when there is one (see
    /// [`crate::crypto::Crypto::pack_sealer`]).
    pub fn sealed(sealer: Option<PackSealer>) -> Self {
        PackBuilder { bytes: Vec::new(), entries: Vec::new(), sealer }
    }

    /// Appends one blob's stored bytes (sealed on the way in an encrypted pack).
    pub fn add(&mut self, id: ObjectId, kind: BlobKind, compression: Compression, stored: &[u8], raw_length: u32) {
        if self.bytes.is_empty() {
            // Reserved once, so that filling a pack never copies it to grow.
            self.bytes.reserve_exact(super::PACK_TARGET + super::PACK_SLACK);
            self.header_written();
        }
        let offset = self.bytes.len();
        self.bytes.extend_from_slice(stored);
        if let Some(sealer) = &self.sealer {
            let tag =
                sealer.seal_blob_in_place(offset as u64, &id, kind, compression, raw_length, &mut self.bytes[offset..]);
            self.bytes.extend_from_slice(&tag);
        }
        let length = u32::try_from(self.bytes.len() - offset).expect("blobs are at most a few MiB");
        self.entries.push(PackEntry { id, kind, compression, offset: offset as u64, length, raw_length });
    }

    /// The pack's size were it finished now: its bytes so far, footer and trailer
    /// counted, so that many small blobs cannot grow a footer past what readers take.
    pub fn len(&self) -> usize {
        let layout = self.layout();
        self.bytes.len().max(layout.header) + self.entries.len() * ENTRY_SIZE + layout.tag + TRAILER_SIZE
    }

    /// How this pack is laid out: sealed when it has a sealer.
    pub fn layout(&self) -> Layout {
        if self.sealer.is_some() { SEALED } else { PLAIN }
    }

    fn header_written(&mut self) {
        if self.bytes.is_empty() {
            match &self.sealer {
                Some(sealer) => self.bytes.extend_from_slice(sealer.header()),
                None => self.bytes.extend_from_slice(HEADER),
            }
        }
    }

    /// True when no blob has been added.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Writes the footer; returns the pack's id, bytes and entries.
    pub fn finish(mut self) -> (ObjectId, Vec<u8>, Vec<PackEntry>) {
        self.header_written();
        let mut footer = Vec::with_capacity(self.entries.len() * ENTRY_SIZE + crypto::TAG);
        for entry in &self.entries {
            footer.extend_from_slice(entry.id.as_bytes());
            footer.push(entry.kind.code());
            footer.push(entry.compression.code());
            footer.extend_from_slice(&entry.offset.to_le_bytes());
            footer.extend_from_slice(&entry.length.to_le_bytes());
            footer.extend_from_slice(&entry.raw_length.to_le_bytes());
        }
        let count = u32::try_from(self.entries.len()).expect("a pack holds far fewer than 2^32 blobs");
        if let Some(sealer) = &self.sealer {
            sealer.seal_footer(count, &mut footer);
        }
        self.bytes.extend_from_slice(&footer);
        self.bytes.extend_from_slice(&count.to_le_bytes());
        self.bytes.extend_from_slice(TRAILER_MAGIC);
        (ObjectId::of(&self.bytes), self.bytes, self.entries)
    }
}

/// Why a pack could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PackError {
    /// The pack is shorter than its header and trailer.
    #[error("too short to be a pack ({0} bytes)")]
    TooShort(u64),
    /// The pack is larger than any pack a writer makes.
    #[error("{0} bytes, more than the {max} bytes of the largest pack", max = MAX_PACK_SIZE)]
    Oversized(u64),
    /// The trailer magic is wrong.
    #[error("no pack trailer at the end")]
    BadTrailer,
    /// The header is wrong or of an unknown version.
    #[error("not a pack of a known version")]
    BadHeader,
    /// A footer entry is malformed.
    #[error("footer entry {0} is malformed")]
    BadEntry(usize),
    /// A footer entry's bytes overlap the entry before it's.
    #[error("footer entry {0} overlaps the entry before it")]
    Overlap(usize),
    /// An encrypted pack's header or footer does not authenticate.
    #[error("its footer cannot be opened: {0}")]
    Sealed(CryptoError),
    /// A footer entry claims a blob larger than any blob of its kind can be.
    #[error("footer entry {index} claims a blob of {raw_length} bytes, more than a blob of its kind can hold")]
    TooLarge {
        /// The entry.
        index: usize,
        /// Its claimed plain length.
        raw_length: u32,
    },
}

/// Reads the entry count from a plain pack's trailer; returns the footer's offset and length.
pub fn footer_location(trailer: &[u8], pack_size: u64) -> Result<(u64, usize), PackError> {
    footer_location_in(trailer, pack_size, PLAIN).map(|(data_end, length, _)| (data_end, length))
}

/// Reads the entry count from the trailer of a pack laid out as `layout`; returns the
/// footer's offset and length (its seal included), and the count.
pub fn footer_location_in(trailer: &[u8], pack_size: u64, layout: Layout) -> Result<(u64, usize, u32), PackError> {
    if pack_size < (layout.header + TRAILER_SIZE) as u64 || trailer.len() != TRAILER_SIZE {
        return Err(PackError::TooShort(pack_size));
    }
    if pack_size > MAX_PACK_SIZE {
        return Err(PackError::Oversized(pack_size));
    }
    if &trailer[4..] != TRAILER_MAGIC {
        return Err(PackError::BadTrailer);
    }
    let count = u32::from_le_bytes(trailer[..4].try_into().expect("4 bytes"));
    let footer_length = (count as usize)
        .checked_mul(ENTRY_SIZE)
        .and_then(|length| length.checked_add(layout.tag))
        .ok_or(PackError::BadTrailer)?;
    let data_end = pack_size
        .checked_sub((TRAILER_SIZE + footer_length) as u64)
        .filter(|end| *end >= layout.header as u64)
        .ok_or(PackError::BadTrailer)?;
    Ok((data_end, footer_length, count))
}

/// Parses a plain pack's footer read from `data_end`, checking every entry lies
/// inside the data area.
pub fn parse_footer(footer: &[u8], data_end: u64) -> Result<Vec<PackEntry>, PackError> {
    parse_footer_in(footer, data_end, PLAIN)
}

/// Parses a footer (opened, for a sealed pack) of a pack laid out as `layout`.
pub fn parse_footer_in(footer: &[u8], data_end: u64, layout: Layout) -> Result<Vec<PackEntry>, PackError> {
    // Entries are written in blob order, so each must start where or after the one
    // before it ended: overlapping entries would let one stored byte count twice.
    let mut previous_end = layout.header as u64;
    footer
        .chunks_exact(ENTRY_SIZE)
        .enumerate()
        .map(|(index, raw)| {
            let bad = || PackError::BadEntry(index);
            let id = ObjectId::from_bytes(raw[..32].try_into().map_err(|_| bad())?);
            let kind = BlobKind::from_code(raw[32]).ok_or_else(bad)?;
            let compression = Compression::from_code(raw[33]).ok_or_else(bad)?;
            let offset = u64::from_le_bytes(raw[34..42].try_into().map_err(|_| bad())?);
            let length = u32::from_le_bytes(raw[42..46].try_into().map_err(|_| bad())?);
            let raw_length = u32::from_le_bytes(raw[46..50].try_into().map_err(|_| bad())?);
            let end = offset.checked_add(u64::from(length)).ok_or_else(bad)?;
            if offset < layout.header as u64 || end > data_end {
                return Err(bad());
            }
            if offset < previous_end {
                return Err(PackError::Overlap(index));
            }
            previous_end = end;
            if raw_length > kind.max_raw_length() {
                return Err(PackError::TooLarge { index, raw_length });
            }
            // A writer stores a blob compressed only when that makes it smaller; a seal
            // adds its tag to either.
            let stored = u64::from(length).checked_sub(layout.tag as u64).ok_or_else(bad)?;
            let honest = match compression {
                Compression::None => stored == u64::from(raw_length),
                Compression::Zstd => stored < u64::from(raw_length),
            };
            if !honest {
                return Err(bad());
            }
            Ok(PackEntry { id, kind, compression, offset, length, raw_length })
        })
        .collect()
}

/// Parses a whole pack's bytes, plain or sealed: checks its header and returns its
/// entries. An unencrypted repository's `crypto` opens only plain packs, an encrypted
/// one's only sealed packs, so neither takes the other's for its own.
pub fn parse_any_pack(crypto: &crypto::Crypto, bytes: &[u8]) -> Result<Vec<PackEntry>, PackError> {
    if !crypto.is_encrypted() {
        return parse_pack(bytes);
    }
    if bytes.len() < SEALED.header + TRAILER_SIZE {
        return Err(PackError::TooShort(bytes.len() as u64));
    }
    if &bytes[..8] != crypto::PACK_MAGIC {
        return Err(PackError::BadHeader);
    }
    let size = bytes.len() as u64;
    let (data_end, footer_length, count) = footer_location_in(&bytes[bytes.len() - TRAILER_SIZE..], size, SEALED)?;
    let start = usize::try_from(data_end).map_err(|_| PackError::BadTrailer)?;
    let footer = crypto
        .open_footer(&bytes[..SEALED.header], count, bytes[start..start + footer_length].to_vec())
        .map_err(PackError::Sealed)?;
    parse_footer_in(&footer, data_end, SEALED)
}

/// Parses a whole plain pack's bytes: checks its header and returns its entries.
pub fn parse_pack(bytes: &[u8]) -> Result<Vec<PackEntry>, PackError> {
    if bytes.len() < HEADER.len() + TRAILER_SIZE {
        return Err(PackError::TooShort(bytes.len() as u64));
    }
    if &bytes[..HEADER.len()] != HEADER {
        return Err(PackError::BadHeader);
    }
    let size = bytes.len() as u64;
    let (data_end, footer_length) = footer_location(&bytes[bytes.len() - TRAILER_SIZE..], size)?;
    let start = usize::try_from(data_end).map_err(|_| PackError::BadTrailer)?;
    parse_footer(&bytes[start..start + footer_length], data_end)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_and_parse_round_trip() -> Result<(), PackError> {
        let mut builder = PackBuilder::new();
        let a = ObjectId::of(b"alpha");
        let b = ObjectId::of(b"beta!");
        builder.add(a, BlobKind::Data, Compression::None, b"alpha", 5);
        builder.add(b, BlobKind::Tree, Compression::Zstd, b"xyz", 5);
        let (pack_id, bytes, entries) = builder.finish();
        assert_eq!(pack_id, ObjectId::of(&bytes));
        let parsed = parse_pack(&bytes)?;
        assert_eq!(parsed, entries);
        assert_eq!(&bytes[parsed[0].offset as usize..][..5], b"alpha");
        assert_eq!(parsed[1].kind, BlobKind::Tree);
        Ok(())
    }

    #[test]
    fn damaged_packs_are_refused() {
        let mut builder = PackBuilder::new();
        builder.add(ObjectId::of(b"a"), BlobKind::Data, Compression::None, b"a", 1);
        let (_, bytes, _) = builder.finish();
        let mut bad_trailer = bytes.clone();
        let last = bad_trailer.len() - 1;
        bad_trailer[last] ^= 1;
        assert_eq!(parse_pack(&bad_trailer), Err(PackError::BadTrailer));
        let mut bad_count = bytes.clone();
        let count_at = bad_count.len() - TRAILER_SIZE;
        bad_count[count_at] = 200;
        assert_eq!(parse_pack(&bad_count), Err(PackError::BadTrailer));
        assert_eq!(parse_pack(&bytes[..10]), Err(PackError::TooShort(10)));
        let mut bad_offset = bytes;
        let offset_at = 8 + 1 + 34;
        bad_offset[offset_at] = 0xff;
        assert_eq!(parse_pack(&bad_offset), Err(PackError::BadEntry(0)));
    }

    #[test]
    fn overlapping_entries_are_refused() {
        let mut builder = PackBuilder::new();
        builder.add(ObjectId::of(b"abcd"), BlobKind::Data, Compression::None, b"abcd", 4);
        builder.add(ObjectId::of(b"efgh"), BlobKind::Data, Compression::None, b"efgh", 4);
        let (_, mut bytes, _) = builder.finish();
        // The second entry's offset moved back into the first blob.
        let second_offset = bytes.len() - TRAILER_SIZE - ENTRY_SIZE + 34;
        bytes[second_offset] = 10;
        assert_eq!(parse_pack(&bytes), Err(PackError::Overlap(1)));
    }

    #[test]
    fn a_blob_claiming_a_gibibyte_is_refused() {
        let stored = zstd::bulk::compress(&[0u8; 32 << 10], 3).expect("compresses");
        let mut builder = PackBuilder::new();
        builder.add(ObjectId::of(b"x"), BlobKind::Data, Compression::Zstd, &stored, 1 << 30);
        let (_, bytes, _) = builder.finish();
        assert_eq!(parse_pack(&bytes), Err(PackError::TooLarge { index: 0, raw_length: 1 << 30 }));
    }

    #[test]
    fn a_pack_larger_than_any_writer_makes_is_refused_unread() {
        let mut builder = PackBuilder::new();
        builder.add(ObjectId::of(b"x"), BlobKind::Data, Compression::None, b"x", 1);
        let (_, bytes, _) = builder.finish();
        // A sparse file, or a planted object, claiming a footer far beyond any pack.
        let trailer = &bytes[bytes.len() - TRAILER_SIZE..];
        assert_eq!(footer_location(trailer, 1 << 40), Err(PackError::Oversized(1 << 40)));
        assert_eq!(footer_location(trailer, MAX_PACK_SIZE).map(|(_, length)| length), Ok(ENTRY_SIZE));
    }

    #[test]
    fn a_pack_counts_its_footer_so_many_small_blobs_close_it_in_time() {
        let mut builder = PackBuilder::new();
        let mut count = 0u32;
        while builder.len() < crate::store::PACK_TARGET {
            builder.add(ObjectId::of(&count.to_le_bytes()), BlobKind::Data, Compression::None, &[1], 1);
            count += 1;
        }
        let (_, bytes, _) = builder.finish();
        assert_eq!(bytes.len(), builder_size(count), "len() is the finished size");
        assert!(bytes.len() as u64 <= MAX_PACK_SIZE);
        assert_eq!(parse_pack(&bytes).map(|entries| entries.len()), Ok(count as usize));
    }

    #[test]
    fn a_sealed_pack_counts_its_seals_so_it_closes_in_time_too() {
        let crypto = crypto::Crypto::encrypted(crypto::MasterKeys::generate());
        let mut builder = PackBuilder::sealed(crypto.pack_sealer());
        assert_eq!(builder.len(), SEALED.header + SEALED.tag + TRAILER_SIZE, "an empty sealed pack");
        let mut count = 0u32;
        while builder.len() < crate::store::PACK_TARGET {
            builder.add(crypto.id_of(&count.to_le_bytes()), BlobKind::Data, Compression::None, &[1], 1);
            count += 1;
        }
        let expected = builder.len();
        let (_, bytes, _) = builder.finish();
        assert_eq!(bytes.len(), expected, "len() is the finished size, every seal counted");
        assert!(bytes.len() as u64 <= MAX_PACK_SIZE);
        assert_eq!(parse_any_pack(&crypto, &bytes).map(|entries| entries.len()), Ok(count as usize));
    }

    #[test]
    fn a_sealed_blob_is_held_to_the_same_length_rules() {
        let crypto = crypto::Crypto::encrypted(crypto::MasterKeys::generate());
        let sealed = |compression, stored: &[u8], raw_length| {
            let mut builder = PackBuilder::sealed(crypto.pack_sealer());
            builder.add(crypto.id_of(b"x"), BlobKind::Data, compression, stored, raw_length);
            parse_any_pack(&crypto, &builder.finish().1).map(|entries| entries.len())
        };
        assert_eq!(sealed(Compression::None, b"abcd", 4), Ok(1), "plain: its length and the tag");
        assert_eq!(sealed(Compression::None, b"abcd", 5), Err(PackError::BadEntry(0)));
        assert_eq!(sealed(Compression::Zstd, &[0; 40], 41), Ok(1), "compressed smaller than plain");
        assert_eq!(sealed(Compression::Zstd, &[0; 40], 40), Err(PackError::BadEntry(0)), "no smaller");
    }

    fn builder_size(blobs: u32) -> usize {
        HEADER.len() + blobs as usize * (1 + ENTRY_SIZE) + TRAILER_SIZE
    }

    #[test]
    fn a_compressed_blob_no_smaller_than_its_plain_bytes_is_refused() {
        let mut builder = PackBuilder::new();
        builder.add(ObjectId::of(b"x"), BlobKind::Data, Compression::Zstd, &[0; 40], 40);
        let (_, bytes, _) = builder.finish();
        assert_eq!(parse_pack(&bytes), Err(PackError::BadEntry(0)));
    }
}
