#![no_main]
//! Any bytes as a stored MariaDB/MySQL dump: the scan for the client's own commands
//! reads them without a panic, and finds the same command on the same line however the
//! dump is cut into pieces (a restore reads it in pieces of whatever size `read` gives).
//!
//! The scanner is internal to the library, so its source file is compiled in here.
use libfuzzer_sys::fuzz_target;

#[allow(dead_code)]
#[path = "../../src/element/service/mysql/client_commands.rs"]
mod client_commands;

use client_commands::ClientCommands;

fuzz_target!(|input: &[u8]| {
    // The first two bytes choose where to cut the rest, and into how many pieces.
    let (cut, bytes) = match input {
        [a, b, rest @ ..] => (usize::from(u16::from_le_bytes([*a, *b])), rest),
        _ => return,
    };
    let whole = ClientCommands::default().scan(bytes);
    let mut pieces = ClientCommands::default();
    let size = cut % 61 + 1;
    let found = bytes.chunks(size).find_map(|piece| pieces.scan(piece));
    assert_eq!(whole, found, "cut into pieces of {size} bytes");
    // A stream after the first is read with the state the first left.
    let mut streams = ClientCommands::default();
    let (first, second) = bytes.split_at((cut % (bytes.len() + 1)).min(bytes.len()));
    if streams.scan(first).is_none() {
        streams.start_stream();
        if let Some(found) = streams.scan(second) {
            assert!(found.line >= 1);
            assert!(found.text.chars().count() <= 80);
        }
    }
});
