//! The parts of an environment's data that a snapshot captures.
//!
//! Mounts (directory trees) are here; services (databases captured through their dump
//! interface) will be further elements whose dump is stored as a one-file tree.

pub mod mount;
