#![no_main]
//! Any bytes as a key file: parsing is bounded and never panics; what parses has KDF
//! parameters within bounds and re-serializes to a file that parses alike. (Unlocking
//! runs argon2, far too slow to fuzz; its inputs are what parsing checked.)
use std::sync::OnceLock;

use envsnap::crypto::MasterKeys;
use envsnap::crypto::keyfile::{KeyFile, MAX_KEY_FILE};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    static KEYS: OnceLock<MasterKeys> = OnceLock::new();
    let keys = KEYS.get_or_init(MasterKeys::generate);
    if let Ok(file) = KeyFile::parse(bytes) {
        assert!(bytes.len() <= MAX_KEY_FILE);
        let params = file.params();
        assert!(params.memory_kib <= 1 << 20 && params.iterations <= 64 && params.parallelism <= 16);
        assert_eq!(KeyFile::parse(&file.to_bytes()).as_ref(), Ok(&file));
        // A file no key of this repository wrote never passes its MAC.
        assert!(!file.mac_matches(keys));
    }
});
