#![no_main]
//! Any bytes as a whole pack: parsing returns entries inside the data area, in order.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    if let Ok(entries) = envsnap::store::pack::parse_pack(bytes) {
        let mut end = 0;
        for entry in entries {
            assert!(entry.offset >= end, "entries overlap");
            end = entry.offset + u64::from(entry.length);
            assert!(end <= bytes.len() as u64);
            assert!(entry.raw_length <= entry.kind.max_raw_length());
        }
    }
});
