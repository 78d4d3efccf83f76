#![no_main]
//! Any bytes as an encrypted repository's stored objects: a sealed object (manifest,
//! record), a whole sealed pack, a pack header, a blob. Nothing forged authenticates,
//! nothing panics, and a pack's entries stay inside it.
use std::sync::OnceLock;

use envsnap::crypto::{Crypto, MasterKeys, PACK_HEADER, open_sealed_object};
use envsnap::id::ObjectId;
use envsnap::store::pack::{BlobKind, Compression, PackEntry, parse_any_pack};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: (u8, u64, Vec<u8>)| {
    static CRYPTO: OnceLock<(Crypto, MasterKeys)> = OnceLock::new();
    let (crypto, keys) = CRYPTO.get_or_init(|| {
        let keys = MasterKeys::generate();
        let copy = MasterKeys::from_material(&keys.to_material()).expect("its own material");
        (Crypto::encrypted(copy), keys)
    });
    let (what, offset, bytes) = input;
    match what % 4 {
        0 => assert!(open_sealed_object(keys, "snapshots/x.json", bytes).is_err()),
        1 => {
            if let Ok(entries) = parse_any_pack(crypto, &bytes) {
                for entry in entries {
                    assert!(entry.offset + u64::from(entry.length) <= bytes.len() as u64);
                }
            }
        }
        2 => assert!(crypto.opener_from_header(&bytes).is_err() || bytes.len() == PACK_HEADER),
        _ => {
            if bytes.len() >= PACK_HEADER
                && let Ok(opener) = crypto.opener_from_header(&bytes[..PACK_HEADER])
            {
                let entry = PackEntry {
                    id: ObjectId::of(&bytes),
                    kind: BlobKind::Data,
                    compression: Compression::None,
                    offset,
                    length: (bytes.len() - PACK_HEADER) as u32,
                    raw_length: 0,
                };
                assert!(opener.open(&entry, bytes[PACK_HEADER..].to_vec()).is_err());
            }
        }
    }
});
