//! Snapshots: one capture of an environment's elements, with its commit and reason.
//!
//! A snapshot's manifest is a small JSON object stored at `snapshots/<id>.json`, where
//! the id is the BLAKE3 hash of the manifest's bytes. Writing the manifest is the
//! moment a snapshot comes into being: everything it refers to was stored and synced
//! before. A manifest never changes; deleting a snapshot removes it.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::id::ObjectId;

/// The manifest format this build writes and reads.
pub const MANIFEST_FORMAT: u32 = 1;

/// Why a snapshot was taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Trigger {
    /// Asked for by a person.
    Manual,
    /// By the git hook, before a merge into a protected branch.
    PreMerge,
    /// By the git hook, before a push to a protected branch.
    PrePush,
    /// By `envsnap schedule run`.
    Schedule,
    /// Automatically, before a restore overwrote the environment.
    Safety,
}

impl Trigger {
    /// The word used in listings and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Manual => "manual",
            Trigger::PreMerge => "pre-merge",
            Trigger::PrePush => "pre-push",
            Trigger::Schedule => "schedule",
            Trigger::Safety => "safety",
        }
    }
}

impl fmt::Display for Trigger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Trigger {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        [Trigger::Manual, Trigger::PreMerge, Trigger::PrePush, Trigger::Schedule, Trigger::Safety]
            .into_iter()
            .find(|trigger| trigger.as_str() == text)
            .ok_or_else(|| format!("unknown trigger `{text}`"))
    }
}

/// Whether the elements were captured at one point in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// The environment was paused, or each element was captured at one instant.
    Consistent,
    /// Nothing was paused; elements may disagree slightly.
    Live,
}

impl Mode {
    /// The word used in listings and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Consistent => "consistent",
            Mode::Live => "live",
        }
    }
}

/// What kind of element a snapshot part is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ElementKind {
    /// A directory tree of files.
    Mount,
    /// A database or server, captured through its dump interface. Its dump is stored
    /// as a tree holding one file, so restore and browsing treat both kinds alike.
    Service,
}

impl ElementKind {
    /// The word used in listings and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            ElementKind::Mount => "mount",
            ElementKind::Service => "service",
        }
    }
}

/// One captured element.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Element {
    /// The element's name in envsnap.toml.
    pub name: String,
    /// Mount or service.
    pub kind: ElementKind,
    /// Where it was captured from (a path or a URL without secrets), for people.
    pub source: String,
    /// The root tree of what was captured.
    pub tree: ObjectId,
    /// Bytes of file content captured.
    pub size: u64,
    /// Regular files captured.
    pub files: u64,
    /// Directories captured, the root included.
    pub dirs: u64,
}

/// A snapshot's manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// The manifest format, [`MANIFEST_FORMAT`].
    pub format: u32,
    /// The environment: the git branch it belongs to.
    pub env: String,
    /// The HEAD commit at the time, when the branch had one.
    pub commit: Option<String>,
    /// When the snapshot was started.
    pub created: DateTime<Utc>,
    /// Why it was taken.
    pub trigger: Trigger,
    /// Consistent or live.
    pub mode: Mode,
    /// A note from the user.
    pub note: Option<String>,
    /// When retention may remove it, if it was given a lifetime.
    pub expires: Option<DateTime<Utc>>,
    /// The machine it was taken on.
    pub host: String,
    /// Who took it.
    pub user: String,
    /// The snapshot it was taken incrementally against.
    pub parent: Option<ObjectId>,
    /// New bytes it added to the repository (stored size, after dedup and compression).
    pub stored: u64,
    /// How long the environment was paused for it, in milliseconds (consistent mode
    /// with a `pause` command).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paused_ms: Option<u64>,
    /// How long taking it took, in milliseconds (absent in snapshots taken before
    /// this was recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
    /// What it captured.
    pub elements: Vec<Element>,
}

impl Manifest {
    /// Bytes of data captured, all elements together.
    pub fn size(&self) -> u64 {
        self.elements.iter().map(|element| element.size).sum()
    }

    /// The element with this name.
    pub fn element(&self, name: &str) -> Option<&Element> {
        self.elements.iter().find(|element| element.name == name)
    }

    /// Checks that every element name is one plain path component, and unique: a
    /// restore writes each element into `<directory>/<name>`, so a name such as `..`
    /// or `/etc` in a hostile manifest must never reach a path.
    pub fn check_element_names(&self) -> Result<(), crate::Error> {
        let mut seen = std::collections::HashSet::new();
        for element in &self.elements {
            let name = element.name.as_str();
            let plain = !name.is_empty() && name != "." && name != ".." && !name.contains(['/', '\0']);
            if !plain || !seen.insert(name) {
                return Err(crate::Error::UnsafePath {
                    path: std::path::PathBuf::from(name),
                    reason: "the snapshot holds an element whose name is not one plain, unique path component"
                        .to_owned(),
                });
            }
        }
        Ok(())
    }

    /// The stored form and the id it yields.
    pub fn encode(&self) -> (ObjectId, Vec<u8>) {
        let bytes = serde_json::to_vec_pretty(self).expect("a manifest always serializes");
        (ObjectId::of(&bytes), bytes)
    }
}

/// A snapshot as the catalog knows it: its id and manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// The hash of the manifest's bytes.
    pub id: ObjectId,
    /// What it holds.
    pub manifest: Manifest,
}

/// The name under which a snapshot's manifest is stored.
pub fn manifest_name(id: &ObjectId) -> String {
    format!("snapshots/{id}.json")
}
