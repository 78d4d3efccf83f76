#![no_main]
//! Any bytes as a stored manifest: decoding refuses, or returns a manifest within the
//! bounds that encodes to one decoding to itself (the catalog keeps such a copy).
use envsnap::snapshot::{MAX_ELEMENTS, Manifest};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    if let Ok(manifest) = Manifest::decode(bytes) {
        assert!(manifest.elements.len() <= MAX_ELEMENTS);
        let _ = manifest.size();
        let _ = manifest.check_element_names();
        let (_, encoded) = manifest.encode();
        let again = Manifest::decode(&encoded).expect("a manifest that was read is written readably");
        assert_eq!(again, manifest);
    }
});
