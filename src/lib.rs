//! envsnap: snapshots of an environment's data, keyed to git branches and commits.
//!
//! An *environment* is a git branch; its data is made of *elements*: mounts
//! (directory trees) and, later, services (databases captured through their dump
//! interface). A *snapshot* captures the elements of one environment into a
//! content-addressed store: files are cut into chunks named by their BLAKE3 hash,
//! compressed with zstd, stored once however many snapshots hold them, and gathered
//! into immutable packs. A SQLite catalog indexes it all and can be rebuilt from the
//! store alone. `docs/FORMAT.md` describes the format; `docs/ARCHITECTURE.md` the design.
//!
//! The library decides and never prints: the `envsnap` binary presents.
//!
//! ```
//! use envsnap::backup::{BackupOptions, backup};
//! use envsnap::element::mount::Mount;
//! use envsnap::progress::NoProgress;
//! use envsnap::repository::{Access, Repository};
//! use envsnap::restore::{RestoreTarget, restore};
//! use envsnap::snapshot::{Mode, Trigger};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! let data = dir.path().join("uploads");
//! std::fs::create_dir(&data)?;
//! std::fs::write(data.join("hello.txt"), "hello")?;
//!
//! let store = dir.path().join("store");
//! Repository::init(&store, Default::default())?;
//! let repository = Repository::open(&store, Access::Write, &mut |_holder| {})?;
//! let options = BackupOptions {
//!     env: "main".into(),
//!     commit: None,
//!     created: chrono::Utc::now(),
//!     trigger: Trigger::Manual,
//!     mode: Mode::Live,
//!     note: None,
//!     expires: None,
//!     user: "me".into(),
//!     host: "here".into(),
//!     mounts: vec![Mount { name: "uploads".into(), path: data, exclude: vec![] }],
//!     services: vec![],
//!     partial: false,
//!     pause: None,
//! };
//! let report = backup(&repository, &options, &NoProgress)?;
//!
//! let element = &report.snapshot.manifest.elements[0];
//! let target = dir.path().join("restored");
//! let targets = [RestoreTarget { tree: element.tree, destination: target.clone(), replace: None }];
//! restore(&repository, &targets, &NoProgress)?;
//! assert_eq!(std::fs::read_to_string(target.join("hello.txt"))?, "hello");
//! # Ok(())
//! # }
//! ```
//!
//! Modules, from the bottom up:
//! - [`id`], [`store`] (chunking, packs, the storage [`store::backend::Backend`], the lock),
//!   [`tree`], [`snapshot`], [`catalog`], [`repository`]: the store;
//! - [`config`], [`git`], [`element`]: what an environment is made of;
//! - [`backup`], [`restore`], [`diff`], [`check`], [`retention`], [`forget`], [`prune`]: the operations;
//! - [`progress`], [`error`]: how the library reports.

pub mod activity;
pub mod backup;
pub mod catalog;
pub mod check;
pub mod config;
pub mod crypto;
pub mod diff;
pub mod element;
pub mod error;
pub mod export;
pub mod forget;
pub mod fuse;
pub mod git;
pub mod id;
pub mod jobs;
pub mod progress;
pub mod prune;
pub mod repository;
pub mod restore;
pub mod retention;
pub mod snapshot;
pub mod store;
pub mod tree;
pub mod view;

pub use error::{Error, Result};
