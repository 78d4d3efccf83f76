//! The parts of an environment's data that a snapshot captures.
//!
//! Mounts are directory trees; services are databases and servers captured through
//! their dump interface, whose dump streams are stored as the files of a tree.

pub mod mount;
pub mod service;
