#![no_main]
//! Any bytes as what a Redis server answers: replies are read one after another until
//! the input ends or is refused, never with a panic, deep recursion or an allocation
//! larger than what was sent.
//!
//! The protocol is internal to the library, so its source file is compiled in here.
use libfuzzer_sys::fuzz_target;

#[allow(dead_code)]
#[path = "../../src/element/service/redis/resp.rs"]
mod resp;

fuzz_target!(|bytes: &[u8]| {
    let mut input = bytes;
    while !input.is_empty() {
        if resp::read_reply(&mut input).is_err() {
            break;
        }
    }
});
