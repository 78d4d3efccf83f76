//! envsnap: snapshots of an environment's data, keyed to git branches and commits.
pub mod backup;
pub mod catalog;
pub mod check;
pub mod config;
pub mod diff;
pub mod element;
pub mod error;
pub mod git;
pub mod id;
pub mod progress;
pub mod repository;
pub mod restore;
pub mod snapshot;
pub mod store;
pub mod tree;

pub use error::{Error, Result};
