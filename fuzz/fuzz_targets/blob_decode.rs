#![no_main]
//! Any stored bytes and claimed lengths: decoding never allocates past the ceiling.
use envsnap::id::{IdKey, ObjectId};
use envsnap::store::pack::{BlobKind, Compression, PackEntry};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: (bool, bool, u32, Vec<u8>)| {
    let (tree, zstd, raw_length, stored) = input;
    let entry = PackEntry {
        id: ObjectId::of(&stored),
        kind: if tree { BlobKind::Tree } else { BlobKind::Data },
        compression: if zstd { Compression::Zstd } else { Compression::None },
        offset: 8,
        length: stored.len() as u32,
        raw_length,
    };
    let _ = envsnap::store::decode_blob(&IdKey::Plain, &entry, stored);
});
