//! Where a value was written: the file it came from, its key path, its line.
//!
//! Serde reports where a *parse* error is, but the checks that run after parsing
//! (a name used twice, a pattern that is not a pattern) see only values. Rather than
//! carry a span in every field of the model, each file's text is kept and, on the way
//! to an error, parsed once more into a tree of spans that a key path can walk.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use super::ConfigError;
use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

/// The text of one configuration file and the name it is shown under.
#[derive(Debug, Clone)]
pub(crate) struct Source {
    /// The path as the user knows it: relative to the work tree when inside it.
    pub(crate) file: PathBuf,
    pub(crate) text: String,
}

impl Source {
    /// An [`ConfigError::Invalid`] about the value at `key` in this file.
    pub(crate) fn invalid(&self, key: &KeyPath, message: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            file: self.file.clone(),
            line: self.line_of(key),
            key: key.to_string(),
            message: message.into(),
        }
    }

    /// An [`ConfigError::UnsetVariable`] for `${variable}` in the value at `key`.
    pub(crate) fn unset_variable(&self, key: &KeyPath, variable: &str) -> ConfigError {
        ConfigError::UnsetVariable {
            file: self.file.clone(),
            line: self.line_of(key),
            key: key.to_string(),
            variable: variable.to_owned(),
        }
    }

    /// The 1-based line holding byte `offset`.
    pub(crate) fn line_at(&self, offset: usize) -> usize {
        let before = self.text.as_bytes().get(..offset).unwrap_or(self.text.as_bytes());
        before.iter().filter(|&&byte| byte == b'\n').count() + 1
    }

    /// The line of the value at `key`; when the key itself is absent (a required key
    /// left out), the line of the nearest table that holds it, which is where it
    /// belongs. `None` when not even the first key is in the file.
    pub(crate) fn line_of(&self, key: &KeyPath) -> Option<usize> {
        // Parsed again on demand: this runs only on the way to an error.
        let root: Node = toml::from_str(&self.text).ok()?;
        let mut node = &root;
        let mut start = None;
        for segment in &key.0 {
            let child = match (segment, node) {
                (Segment::Key(name), Node::Table(table)) => table.get(name),
                (Segment::Index(index), Node::Array(array)) => array.get(*index),
                _ => None,
            };
            let Some(child) = child else { break };
            start = child.start.or(start);
            node = &child.node;
        }
        start.map(|offset| self.line_at(offset))
    }
}

/// Which file, and which key in it, a checked value came from; kept for the
/// errors that only resolving can find (an unset `${VAR}`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Origin {
    /// Index into the config's sources: 0 is `envsnap.toml`, 1 the override.
    pub(crate) source: usize,
    pub(crate) key: KeyPath,
}

/// A key path such as `mount[1].path`, as shown in errors.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct KeyPath(Vec<Segment>);

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Segment {
    Key(String),
    Index(usize),
}

impl KeyPath {
    /// The path of a top-level key.
    pub(crate) fn top(key: &str) -> Self {
        Self(vec![Segment::Key(key.to_owned())])
    }

    /// The path of `key` inside the table at this path.
    pub(crate) fn key(&self, key: &str) -> Self {
        self.with(Segment::Key(key.to_owned()))
    }

    /// The path of element `index` of the array at this path.
    pub(crate) fn index(&self, index: usize) -> Self {
        self.with(Segment::Index(index))
    }

    pub(crate) fn push(&mut self, segment: Segment) {
        self.0.push(segment);
    }

    fn with(&self, segment: Segment) -> Self {
        let mut path = self.clone();
        path.push(segment);
        path
    }
}

impl fmt::Display for KeyPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (position, segment) in self.0.iter().enumerate() {
            match segment {
                Segment::Key(key) => {
                    if position > 0 {
                        f.write_str(".")?;
                    }
                    let bare =
                        !key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
                    if bare {
                        f.write_str(key)?;
                    } else {
                        write!(f, "{key:?}")?;
                    }
                }
                Segment::Index(index) => write!(f, "[{index}]")?,
            }
        }
        Ok(())
    }
}

/// A TOML document reduced to its shape and where each value starts.
#[derive(Debug)]
enum Node {
    Table(BTreeMap<String, Located>),
    Array(Vec<Located>),
    Scalar,
}

/// A value and the byte offset it starts at, when toml knows it.
#[derive(Debug)]
struct Located {
    start: Option<usize>,
    node: Node,
}

// toml's protocol for `toml::Spanned` (serde_spanned 0.6): a value asked for as a
// struct of this name comes as a map of these three fields when its span is known.
// `Spanned<Node>` would fail the whole parse on a value without a span (an implicit
// table such as `retention` in `[retention.manual_limit]`); speaking the protocol
// directly lets such a value come as itself. Should toml rename these fields, the
// values come without spans and the tests below fail; nothing else breaks.
const SPANNED: &str = "$__serde_spanned_private_Spanned";
const SPANNED_START: &str = "$__serde_spanned_private_start";
const SPANNED_END: &str = "$__serde_spanned_private_end";
const SPANNED_VALUE: &str = "$__serde_spanned_private_value";

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(LocatedVisitor).map(|located| located.node)
    }
}

impl<'de> Deserialize<'de> for Located {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_struct(SPANNED, &[SPANNED_START, SPANNED_END, SPANNED_VALUE], LocatedVisitor)
    }
}

struct LocatedVisitor;

impl LocatedVisitor {
    fn unlocated<E>(node: Node) -> Result<Located, E> {
        Ok(Located { start: None, node })
    }
}

impl<'de> Visitor<'de> for LocatedVisitor {
    type Value = Located;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any TOML value")
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Located, E> {
        Self::unlocated(Node::Scalar)
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Located, E> {
        Self::unlocated(Node::Scalar)
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Located, E> {
        Self::unlocated(Node::Scalar)
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Located, E> {
        Self::unlocated(Node::Scalar)
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<Located, E> {
        Self::unlocated(Node::Scalar)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Located, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Self::unlocated(Node::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Located, A::Error> {
        let mut key: Option<String> = map.next_key()?;
        if key.as_deref() == Some(SPANNED_START) {
            let mut located = Located { start: Some(map.next_value()?), node: Node::Scalar };
            while let Some(key) = map.next_key::<String>()? {
                if key == SPANNED_VALUE {
                    located.node = map.next_value()?;
                } else {
                    map.next_value::<de::IgnoredAny>()?;
                }
            }
            return Ok(located);
        }
        let mut entries = BTreeMap::new();
        while let Some(name) = key {
            entries.insert(name, map.next_value()?);
            key = map.next_key()?;
        }
        Self::unlocated(Node::Table(entries))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(text: &str) -> Source {
        Source { file: PathBuf::from("envsnap.toml"), text: text.to_owned() }
    }

    #[test]
    fn key_paths_display_like_toml() {
        let path = KeyPath::top("mount").index(1).key("path");
        assert_eq!(path.to_string(), "mount[1].path");
        assert_eq!(KeyPath::top("environments").key("my env").to_string(), "environments.\"my env\"");
    }

    #[test]
    fn lines_of_values_and_of_missing_keys() {
        let text = "production = \"main\"\n\n[[mount]]\nname = \"a\"\npath = \"x\"\n\n[[mount]]\nname = \"b\"\nexclude = [\n  \"a\",\n  \"b\",\n]\n";
        let source = source(text);
        assert_eq!(source.line_of(&KeyPath::top("production")), Some(1));
        assert_eq!(source.line_of(&KeyPath::top("mount").index(0).key("path")), Some(5));
        // A missing key points at its table.
        assert_eq!(source.line_of(&KeyPath::top("mount").index(1).key("path")), Some(7));
        assert_eq!(source.line_of(&KeyPath::top("mount").index(1).key("exclude").index(1)), Some(11));
        assert_eq!(source.line_of(&KeyPath::top("service")), None);
    }

    #[test]
    fn lines_inside_implicit_tables() {
        let source = source("[retention.manual_limit]\nproduction = 3\n");
        assert_eq!(source.line_of(&KeyPath::top("retention").key("manual_limit").key("production")), Some(2));
    }
}
