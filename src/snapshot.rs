//! Snapshots: one capture of an environment's elements, with its commit and reason.
//!
//! A snapshot's manifest is a small JSON object stored at `snapshots/<id>.json`, where
//! the id is the BLAKE3 hash of the manifest's bytes. Writing the manifest is the
//! moment a snapshot comes into being: everything it refers to was stored and synced
//! before. A manifest never changes; deleting a snapshot removes it.
//!
//! A stored manifest is hostile input. [`Manifest::decode`] refuses one larger than
//! [`MAX_MANIFEST_SIZE`] before parsing it, and parsing, wherever it happens (the store,
//! the catalog's copy), refuses more than [`MAX_ELEMENTS`] elements as soon as it meets
//! one too many, and any text longer than [`MAX_TEXT`]. JSON nesting is bounded by the
//! parser itself (serde_json stops at 128 levels).

use std::fmt;
use std::marker::PhantomData;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};

use crate::id::ObjectId;

/// The manifest format this build writes and reads.
pub const MANIFEST_FORMAT: u32 = 1;

/// The largest manifest read. A real one is a few hundred bytes per element; this holds
/// [`MAX_ELEMENTS`] elements with long sources and a long note many times over.
pub const MAX_MANIFEST_SIZE: usize = 16 << 20;

/// The most elements one snapshot holds: one per mount or service in `envsnap.toml`.
pub const MAX_ELEMENTS: usize = 4096;

/// The longest text in a manifest, in bytes: a note, a branch, a source path or URL.
pub const MAX_TEXT: usize = 64 << 10;

/// Why a stored manifest could not be read.
#[derive(Debug, thiserror::Error)]
#[error("not a valid manifest: {0}")]
pub struct ManifestDecodeError(String);

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
    #[serde(deserialize_with = "text")]
    pub name: String,
    /// Mount or service.
    pub kind: ElementKind,
    /// Where it was captured from (a path or a URL without secrets), for people.
    #[serde(deserialize_with = "text")]
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
    #[serde(deserialize_with = "text")]
    pub env: String,
    /// The HEAD commit at the time, when the branch had one.
    #[serde(default, deserialize_with = "optional_text")]
    pub commit: Option<String>,
    /// When the snapshot was started.
    pub created: DateTime<Utc>,
    /// Why it was taken.
    pub trigger: Trigger,
    /// Consistent or live.
    pub mode: Mode,
    /// A note from the user.
    #[serde(default, deserialize_with = "optional_text")]
    pub note: Option<String>,
    /// When retention may remove it, if it was given a lifetime.
    pub expires: Option<DateTime<Utc>>,
    /// The machine it was taken on.
    #[serde(deserialize_with = "text")]
    pub host: String,
    /// Who took it.
    #[serde(deserialize_with = "text")]
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
    /// Whether it holds only some of the environment's elements (`backup --element`):
    /// such a snapshot is never what `latest` names, since restoring it would bring
    /// back part of an environment. Absent (false) in snapshots taken before.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub partial: bool,
    /// What it captured; at most [`MAX_ELEMENTS`].
    #[serde(deserialize_with = "elements")]
    pub elements: Vec<Element>,
}

fn text<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    let text = String::deserialize(deserializer)?;
    check_text(text.len())?;
    Ok(text)
}

fn optional_text<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<String>, D::Error> {
    let text = Option::<String>::deserialize(deserializer)?;
    check_text(text.as_ref().map_or(0, String::len))?;
    Ok(text)
}

fn check_text<E: de::Error>(length: usize) -> Result<(), E> {
    if length > MAX_TEXT {
        return Err(E::custom(format!("a text of {length} bytes (at most {MAX_TEXT})")));
    }
    Ok(())
}

fn elements<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<Element>, D::Error> {
    deserializer.deserialize_seq(ElementList(PhantomData))
}

/// At most [`MAX_ELEMENTS`] elements, refused at the first one too many.
struct ElementList(PhantomData<Element>);

impl<'de> Visitor<'de> for ElementList {
    type Value = Vec<Element>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a list of at most {MAX_ELEMENTS} elements")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut elements = Vec::new();
        while let Some(element) = seq.next_element()? {
            if elements.len() == MAX_ELEMENTS {
                return Err(de::Error::custom(format!("more than {MAX_ELEMENTS} elements")));
            }
            elements.push(element);
        }
        Ok(elements)
    }
}

impl Manifest {
    /// Bytes of data captured, all elements together. Saturates: the sizes are stored
    /// numbers, and a forged manifest's must not overflow.
    pub fn size(&self) -> u64 {
        self.elements.iter().fold(0, |total, element| total.saturating_add(element.size))
    }

    /// Parses a stored manifest, refusing one larger than [`MAX_MANIFEST_SIZE`] before
    /// reading it. The format number is left for the caller to check, which can say
    /// where the manifest lies.
    pub fn decode(bytes: &[u8]) -> Result<Manifest, ManifestDecodeError> {
        if bytes.len() > MAX_MANIFEST_SIZE {
            return Err(ManifestDecodeError(format!("{} bytes (at most {MAX_MANIFEST_SIZE})", bytes.len())));
        }
        serde_json::from_slice(bytes).map_err(|error| ManifestDecodeError(error.to_string()))
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

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(elements: usize) -> Manifest {
        Manifest {
            format: MANIFEST_FORMAT,
            env: "main".to_owned(),
            commit: Some("0123abcd".to_owned()),
            created: DateTime::from_timestamp(1_700_000_000, 5).unwrap_or_default(),
            trigger: Trigger::PrePush,
            mode: Mode::Live,
            note: None,
            expires: None,
            host: "host".to_owned(),
            user: "user".to_owned(),
            parent: Some(ObjectId::of(b"parent")),
            stored: 7,
            paused_ms: None,
            duration_ms: Some(12),
            partial: false,
            elements: (0..elements)
                .map(|index| Element {
                    name: format!("e{index}"),
                    kind: ElementKind::Mount,
                    source: "/srv".to_owned(),
                    tree: ObjectId::of(b"tree"),
                    size: 1,
                    files: 1,
                    dirs: 1,
                })
                .collect(),
        }
    }

    #[test]
    fn a_written_manifest_decodes_to_itself() -> Result<(), ManifestDecodeError> {
        let written = manifest(3);
        let (id, bytes) = written.encode();
        assert_eq!(id, ObjectId::of(&bytes));
        assert_eq!(Manifest::decode(&bytes)?, written);
        Ok(())
    }

    #[test]
    fn a_manifest_larger_than_the_bound_is_refused_before_parsing() {
        let mut bytes = manifest(1).encode().1;
        bytes.resize(MAX_MANIFEST_SIZE + 1, b' ');
        let error = Manifest::decode(&bytes).err().map(|error| error.to_string());
        assert_eq!(error.as_deref(), Some("not a valid manifest: 16777217 bytes (at most 16777216)"));
    }

    #[test]
    fn more_elements_than_the_bound_are_refused_wherever_a_manifest_is_parsed() {
        let (_, most) = manifest(MAX_ELEMENTS).encode();
        assert!(Manifest::decode(&most).is_ok());
        let (_, too_many) = manifest(MAX_ELEMENTS + 1).encode();
        // The store's reader and the catalog's both parse with serde_json directly.
        let error = serde_json::from_slice::<Manifest>(&too_many).err().map(|error| error.to_string());
        assert!(error.as_deref().is_some_and(|error| error.starts_with("more than 4096 elements")), "{error:?}");
    }

    #[test]
    fn text_longer_than_the_bound_is_refused() {
        for field in ["note", "env", "source"] {
            let mut long = manifest(1);
            let text = "n".repeat(MAX_TEXT + 1);
            match field {
                "note" => long.note = Some(text),
                "env" => long.env = text,
                _ => long.elements[0].source = text,
            }
            let error = Manifest::decode(&long.encode().1).err().map(|error| error.to_string());
            assert!(
                error.as_deref().is_some_and(|error| error.contains("a text of 65537 bytes")),
                "{field}: {error:?}"
            );
        }
    }

    #[test]
    fn forged_sizes_add_up_without_overflowing() -> Result<(), ManifestDecodeError> {
        let mut forged = manifest(2);
        for element in &mut forged.elements {
            element.size = u64::MAX - 1;
        }
        let read = Manifest::decode(&forged.encode().1)?;
        assert_eq!(read.size(), u64::MAX);
        Ok(())
    }

    #[test]
    fn deep_json_nesting_is_skipped_or_refused_without_exhausting_the_stack() {
        let json = String::from_utf8_lossy(&manifest(0).encode().1).into_owned();
        let nested = format!("{}1{}", "[".repeat(100_000), "]".repeat(100_000));
        // A field a later version may add is skipped, with a counter rather than recursion.
        let unknown = json.replacen('{', &format!("{{\"later\": {nested},"), 1);
        assert!(Manifest::decode(unknown.as_bytes()).is_ok());
        // Where a text belongs, nesting is refused at its first bracket.
        let known = json.replacen("\"host\": \"host\"", &format!("\"host\": {nested}"), 1);
        let error = Manifest::decode(known.as_bytes()).err().map(|error| error.to_string());
        assert!(error.as_deref().is_some_and(|error| error.contains("invalid type: sequence")), "{error:?}");
    }
}
