#![no_main]
//! Any bytes as a stored RDB file: reading it item by item, every value copied out as
//! a restore does, ends at its end or in an error, and copies no more than it holds.
//!
//! The reader is internal to the library, so its source file is compiled in here.
use libfuzzer_sys::fuzz_target;

#[allow(dead_code)]
#[path = "../../src/element/service/redis/rdb.rs"]
mod rdb;

fuzz_target!(|bytes: &[u8]| {
    let _ = rdb::split_payload(bytes);
    let Ok(mut reader) = rdb::RdbReader::new(bytes) else { return };
    let mut copied = reader.head().len();
    loop {
        match reader.next() {
            Ok(rdb::Item::Key { kind, .. }) => {
                copied += reader.head().len();
                let mut value = vec![kind];
                if reader.value(kind, &mut value).is_err() {
                    break;
                }
                copied += value.len() - 1;
                let payload = rdb::dump_payload(value);
                assert!(rdb::split_payload(&payload).is_some(), "a payload made here is refused");
            }
            Ok(rdb::Item::Eof) => {
                let _ = reader.checksum();
                break;
            }
            Ok(_) => copied += reader.head().len(),
            Err(_) => break,
        }
    }
    assert!(copied <= bytes.len(), "{copied} bytes copied out of {}", bytes.len());
});
