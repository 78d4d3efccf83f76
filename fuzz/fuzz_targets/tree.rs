#![no_main]
//! Any bytes as a tree blob: decoding refuses or returns a tree that encodes again.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    if let Ok(tree) = envsnap::tree::Tree::decode(bytes) {
        let _ = tree.encode();
    }
});
