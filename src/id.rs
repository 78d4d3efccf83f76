//! Content ids: the BLAKE3 hash of an object's plain bytes, keyed in an encrypted
//! repository (see [`IdKey`]).

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The id of a chunk, tree or snapshot: the BLAKE3 hash of its uncompressed bytes.
///
/// It is always 32 bytes, so it cannot be built invalid; its text form is 64 hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectId([u8; 32]);

impl ObjectId {
    /// Hashes `data`.
    pub fn of(data: &[u8]) -> Self {
        ObjectId(*blake3::hash(data).as_bytes())
    }

    /// Wraps raw hash bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        ObjectId(bytes)
    }

    /// Parses 64 hex digits; `None` for anything else.
    pub fn from_hex(text: &str) -> Option<Self> {
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(text, &mut bytes).ok()?;
        Some(ObjectId(bytes))
    }

    /// The raw hash bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The 64 hex digits.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// The first `n` hex digits, as listings show them.
    pub fn short(&self, n: usize) -> String {
        let mut text = self.to_hex();
        text.truncate(n);
        text
    }
}

/// How a repository names its blobs, trees and manifests.
///
/// Plain BLAKE3 in a format-1 repository; BLAKE3 in keyed mode in an encrypted one, so
/// that an id says nothing about the content to whoever lacks the key (a plain hash
/// would confirm a guessed file).
#[derive(Clone)]
pub enum IdKey {
    /// `blake3::hash`.
    Plain,
    /// `blake3::keyed_hash` with this key.
    Keyed([u8; 32]),
}

impl IdKey {
    /// The id of `data`.
    pub fn id_of(&self, data: &[u8]) -> ObjectId {
        match self {
            IdKey::Plain => ObjectId::of(data),
            IdKey::Keyed(key) => ObjectId(*blake3::keyed_hash(key, data).as_bytes()),
        }
    }
}

impl fmt::Debug for IdKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            IdKey::Plain => "IdKey::Plain",
            IdKey::Keyed(_) => "IdKey::Keyed(..)",
        })
    }
}

impl fmt::Display for ObjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for ObjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ObjectId({})", self.short(12))
    }
}

// In trees (CBOR) an id is a 32-byte string; in manifests (JSON) it is hex text.
impl Serialize for ObjectId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            serializer.serialize_str(&self.to_hex())
        } else {
            serializer.serialize_bytes(&self.0)
        }
    }
}

impl<'de> Deserialize<'de> for ObjectId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::Error as _;
        if deserializer.is_human_readable() {
            let text = String::deserialize(deserializer)?;
            ObjectId::from_hex(&text).ok_or_else(|| D::Error::custom("expected 64 hex digits"))
        } else {
            let bytes: serde_bytes::ByteBuf = serde_bytes::ByteBuf::deserialize(deserializer)?;
            let array: [u8; 32] = bytes.as_slice().try_into().map_err(|_| D::Error::custom("expected a 32-byte id"))?;
            Ok(ObjectId(array))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip() {
        let id = ObjectId::of(b"hello");
        assert_eq!(ObjectId::from_hex(&id.to_hex()), Some(id));
        assert_eq!(id.short(12).len(), 12);
        assert_eq!(ObjectId::from_hex("abc"), None);
    }

    #[test]
    fn cbor_round_trip_is_32_bytes() {
        let id = ObjectId::of(b"x");
        let mut out = Vec::new();
        ciborium::into_writer(&id, &mut out).expect("serialize");
        assert_eq!(out.len(), 34, "2-byte CBOR header + 32 bytes");
        let back: ObjectId = ciborium::from_reader(out.as_slice()).expect("deserialize");
        assert_eq!(back, id);
    }
}
