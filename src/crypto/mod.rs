//! Encryption at rest: the keys of an encrypted repository (format 2) and every seal
//! and opening of its stored bytes.
//!
//! Everything a format-2 repository stores goes through a [`Crypto`] value that its
//! [`crate::repository::Repository`] holds: blob ids ([`Crypto::ids`]), the chunker's
//! seed, packs (blobs and footer), manifests and the small records that carry names.
//! A format-1 repository holds a [`Crypto::plain`], which hashes with plain BLAKE3
//! and stores bytes as they are, so the two formats share every code path.
//!
//! The design, argued in docs/FORMAT.md:
//! - a master key set: an id key (BLAKE3 keyed mode: ids and the chunker seed), an
//!   index key (pack footers) and an X25519 key pair;
//! - each pack has a random key of its own, sealed to the repository's public key in
//!   the pack's header; blobs are sealed with it (AES-256-GCM, the nonce is the blob's
//!   offset, unique in its pack), bound to their id, kind and length;
//! - manifests and named records are sealed to the public key likewise, bound to
//!   their object name;
//! - so a *write-only* key (no private key) can store packs and manifests it cannot
//!   read back, while deduplicating against the footers, which its index key opens.

pub mod keyfile;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use ring::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};
use x25519_dalek::{PublicKey, StaticSecret};
use zeroize::{Zeroize, Zeroizing};

use crate::id::{IdKey, ObjectId};
use crate::store::backend::Backend;
use crate::store::pack::{BlobKind, Compression, PackEntry};

/// Bytes an AES-256-GCM seal adds: its tag.
pub const TAG: usize = 16;

/// The magic of a format-2 pack's header.
pub const PACK_MAGIC: &[u8; 8] = b"ENVSNPK\x02";
/// Bytes of a format-2 pack's header: magic, ephemeral public key, sealed pack key.
pub const PACK_HEADER: usize = 8 + 32 + 32 + TAG;

/// The magic of a sealed object (a manifest, a named record).
const OBJECT_MAGIC: &[u8; 8] = b"ENVSNPS\x02";
/// Bytes a sealed object adds to its plain bytes.
pub const OBJECT_OVERHEAD: usize = 8 + 32 + TAG;

/// BLAKE3 `derive_key` contexts: one per use, so no key serves two purposes.
const CONTEXT_ID_KEY: &str = "envsnap 2026-12 blob id key";
const CONTEXT_CHUNKER_SEED: &str = "envsnap 2026-12 chunker seed";
const CONTEXT_PACK_KEY: &str = "envsnap 2026-12 pack key wrap";
const CONTEXT_FOOTER_KEY: &str = "envsnap 2026-12 pack footer";
const CONTEXT_OBJECT_KEY: &str = "envsnap 2026-12 sealed object";
const CONTEXT_NAME_KEY: &str = "envsnap 2026-12 record name";
const CONTEXT_KEY_FILE_MAC: &str = "envsnap 2026-12 key file mac";

/// Why sealed bytes could not be opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    /// The key in use holds no private key.
    #[error("the key in use is write-only: it can add snapshots but not read them")]
    WriteOnly,
    /// The bytes are not what was sealed (damaged, or swapped for another object's).
    #[error("it does not authenticate: damaged, or swapped for another object")]
    Damaged,
    /// Too short, or of an unknown layout.
    #[error("not a sealed object of a known version")]
    Malformed,
}

/// The secrets of an encrypted repository, as a key file holds them.
pub struct MasterKeys {
    /// BLAKE3 keyed mode: blob, tree and manifest ids, the chunker seed, record names.
    id_key: [u8; 32],
    /// Seals pack footers, so that any key can rebuild the index.
    index_key: [u8; 32],
    /// The repository's X25519 public key: packs and objects are sealed to it.
    public: [u8; 32],
    /// Its private key: `None` in a write-only key.
    secret: Option<[u8; 32]>,
}

impl Drop for MasterKeys {
    fn drop(&mut self) {
        self.id_key.zeroize();
        self.index_key.zeroize();
        if let Some(secret) = &mut self.secret {
            secret.zeroize();
        }
    }
}

impl std::fmt::Debug for MasterKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MasterKeys").field("write_only", &self.secret.is_none()).finish_non_exhaustive()
    }
}

/// Bytes of a read key's material: id key, index key, public key, private key.
pub const READ_KEY_MATERIAL: usize = 128;
/// Bytes of a write-only key's material: no private key.
pub const WRITE_KEY_MATERIAL: usize = 96;

impl MasterKeys {
    /// A new random key set, for `init --encrypt`.
    pub fn generate() -> Self {
        let id_key = random_bytes();
        let index_key = random_bytes();
        let secret = random_bytes();
        let public = *PublicKey::from(&StaticSecret::from(secret)).as_bytes();
        MasterKeys { id_key, index_key, public, secret: Some(secret) }
    }

    /// True when this key set cannot read what it stores.
    pub fn is_write_only(&self) -> bool {
        self.secret.is_none()
    }

    /// The same keys without the private one: what a write-only key file holds.
    pub fn write_only(&self) -> Self {
        MasterKeys { id_key: self.id_key, index_key: self.index_key, public: self.public, secret: None }
    }

    /// The material a key file seals.
    pub fn to_material(&self) -> Zeroizing<Vec<u8>> {
        let mut out = Zeroizing::new(Vec::with_capacity(READ_KEY_MATERIAL));
        out.extend_from_slice(&self.id_key);
        out.extend_from_slice(&self.index_key);
        out.extend_from_slice(&self.public);
        if let Some(secret) = &self.secret {
            out.extend_from_slice(secret);
        }
        out
    }

    /// Reads a key file's material back; `None` when it is not 96 or 128 bytes, or its
    /// private key does not belong to its public key.
    pub fn from_material(material: &[u8]) -> Option<Self> {
        let part = |index: usize| -> Option<[u8; 32]> { material.get(index * 32..(index + 1) * 32)?.try_into().ok() };
        let secret = match material.len() {
            READ_KEY_MATERIAL => Some(part(3)?),
            WRITE_KEY_MATERIAL => None,
            _ => return None,
        };
        let keys = MasterKeys { id_key: part(0)?, index_key: part(1)?, public: part(2)?, secret };
        if let Some(secret) = keys.secret
            && *PublicKey::from(&StaticSecret::from(secret)).as_bytes() != keys.public
        {
            return None;
        }
        Some(keys)
    }

    /// The key a key file's MAC is made with: any key of the repository can check
    /// every key file, so `check` can name a damaged one it cannot open.
    pub fn key_file_mac_key(&self) -> [u8; 32] {
        blake3::derive_key(CONTEXT_KEY_FILE_MAC, &self.id_key)
    }
}

/// 32 bytes from the system's random source.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    SystemRandom::new().fill(&mut bytes).expect("the system's random source does not fail on Linux");
    bytes
}

/// An AES-256-GCM key.
fn aead_key(bytes: &[u8; 32]) -> LessSafeKey {
    LessSafeKey::new(UnboundKey::new(&AES_256_GCM, bytes).expect("AES-256-GCM takes a 32-byte key"))
}

/// Seals `data` in place (appending the tag) under a key used for this one message or
/// with a nonce unique for the key.
fn seal_in_place(key: &LessSafeKey, nonce: [u8; 12], aad: &[u8], data: &mut Vec<u8>) {
    key.seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(aad), data)
        .expect("AES-256-GCM seals any message below 64 GiB");
}

/// Opens what [`seal_in_place`] sealed, or says it does not authenticate.
fn open_in_place(key: &LessSafeKey, nonce: [u8; 12], aad: &[u8], mut data: Vec<u8>) -> Result<Vec<u8>, CryptoError> {
    let length = key
        .open_in_place(Nonce::assume_unique_for_key(nonce), Aad::from(aad), &mut data)
        .map_err(|_| CryptoError::Damaged)?
        .len();
    data.truncate(length);
    Ok(data)
}

/// The nonce of a blob: its offset in its pack, which no other blob of the pack has,
/// and each pack has a key of its own.
fn blob_nonce(offset: u64) -> [u8; 12] {
    let mut nonce = [0u8; 12];
    nonce[..8].copy_from_slice(&offset.to_le_bytes());
    nonce
}

/// What a blob's seal is bound to, so that a blob moved to another entry fails.
fn blob_aad(id: &ObjectId, kind: BlobKind, compression: Compression, raw_length: u32) -> [u8; 38] {
    let mut aad = [0u8; 38];
    aad[..32].copy_from_slice(id.as_bytes());
    aad[32] = kind.code();
    aad[33] = compression.code();
    aad[34..].copy_from_slice(&raw_length.to_le_bytes());
    aad
}

/// An X25519 key for one seal: its public half goes with the sealed bytes, and the
/// shared secret with the repository's public key derives the key (`context`).
fn ephemeral_key(repository_public: &[u8; 32], context: &str) -> ([u8; 32], Zeroizing<[u8; 32]>) {
    let secret = StaticSecret::from(random_bytes::<32>());
    let public = *PublicKey::from(&secret).as_bytes();
    let shared = secret.diffie_hellman(&PublicKey::from(*repository_public));
    (public, Zeroizing::new(derive_shared(context, shared.as_bytes(), &public, repository_public)))
}

fn derive_shared(context: &str, shared: &[u8; 32], ephemeral: &[u8; 32], repository_public: &[u8; 32]) -> [u8; 32] {
    let mut material = Zeroizing::new([0u8; 96]);
    material[..32].copy_from_slice(shared);
    material[32..64].copy_from_slice(ephemeral);
    material[64..].copy_from_slice(repository_public);
    blake3::derive_key(context, material.as_ref())
}

/// The keys of a repository, or none for a format-1 one: what every read and write of
/// the store goes through.
pub struct Crypto {
    keys: Option<MasterKeys>,
    ids: IdKey,
    /// Opened pack keys by pack name: a pack's header is read and unsealed once per
    /// process, not once per blob.
    packs: Mutex<HashMap<String, Arc<PackOpener>>>,
}

impl std::fmt::Debug for Crypto {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Crypto").field("keys", &self.keys).finish_non_exhaustive()
    }
}

impl Crypto {
    /// A format-1 repository's: plain BLAKE3 ids, bytes stored as they are.
    pub fn plain() -> Self {
        Crypto { keys: None, ids: IdKey::Plain, packs: Mutex::new(HashMap::new()) }
    }

    /// An encrypted repository's, with the keys a password opened.
    pub fn encrypted(keys: MasterKeys) -> Self {
        let ids = IdKey::Keyed(blake3::derive_key(CONTEXT_ID_KEY, &keys.id_key));
        Crypto { keys: Some(keys), ids, packs: Mutex::new(HashMap::new()) }
    }

    /// True for a format-2 repository.
    pub fn is_encrypted(&self) -> bool {
        self.keys.is_some()
    }

    /// True when the key in use cannot read snapshots (see [`MasterKeys::is_write_only`]).
    pub fn is_write_only(&self) -> bool {
        self.keys.as_ref().is_some_and(MasterKeys::is_write_only)
    }

    /// The master keys, for writing key files.
    pub fn keys(&self) -> Option<&MasterKeys> {
        self.keys.as_ref()
    }

    /// How ids are computed.
    pub fn ids(&self) -> &IdKey {
        &self.ids
    }

    /// The id of `data`.
    pub fn id_of(&self, data: &[u8]) -> ObjectId {
        self.ids.id_of(data)
    }

    /// The chunker's seed: cut points keyed too, so chunk sizes do not fingerprint
    /// known files. 0 (FastCDC's own gear table) when unencrypted.
    pub fn chunker_seed(&self) -> u64 {
        match &self.keys {
            None => 0,
            Some(keys) => {
                let derived = blake3::derive_key(CONTEXT_CHUNKER_SEED, &keys.id_key);
                u64::from_le_bytes(derived[..8].try_into().expect("8 of 32 bytes"))
            }
        }
    }

    /// The object name that stands for `plain` (a branch name) in an encrypted
    /// repository: its keyed hash, so the name reveals nothing. Unencrypted: its hex.
    pub fn record_name(&self, plain: &str) -> String {
        match &self.keys {
            None => hex::encode(plain),
            Some(keys) => {
                let key = blake3::derive_key(CONTEXT_NAME_KEY, &keys.id_key);
                blake3::keyed_hash(&key, plain.as_bytes()).to_hex()[..32].to_owned()
            }
        }
    }

    /// A sealer for a new pack, `None` when unencrypted.
    pub fn pack_sealer(&self) -> Option<PackSealer> {
        let keys = self.keys.as_ref()?;
        let pack_key = Zeroizing::new(random_bytes::<32>());
        let (ephemeral, wrap) = ephemeral_key(&keys.public, CONTEXT_PACK_KEY);
        let mut header = Vec::with_capacity(PACK_HEADER);
        header.extend_from_slice(PACK_MAGIC);
        header.extend_from_slice(&ephemeral);
        let mut sealed = pack_key.to_vec();
        seal_in_place(&aead_key(&wrap), [0; 12], &header, &mut sealed);
        header.extend_from_slice(&sealed);
        Some(PackSealer {
            key: aead_key(&pack_key),
            footer: aead_key(&footer_key(&keys.index_key, &ephemeral)),
            header,
        })
    }

    /// Opens a format-2 pack's footer, given its header and trailer entry count.
    pub fn open_footer(&self, header: &[u8], count: u32, sealed: Vec<u8>) -> Result<Vec<u8>, CryptoError> {
        let keys = self.keys.as_ref().ok_or(CryptoError::Malformed)?;
        let ephemeral: &[u8; 32] =
            header.get(8..40).and_then(|bytes| bytes.try_into().ok()).ok_or(CryptoError::Malformed)?;
        if header.len() != PACK_HEADER || &header[..8] != PACK_MAGIC {
            return Err(CryptoError::Malformed);
        }
        open_in_place(&aead_key(&footer_key(&keys.index_key, ephemeral)), [0; 12], &footer_aad(header, count), sealed)
    }

    /// The opener of pack `name`'s blobs: its header read and its key unsealed, once.
    pub fn pack_opener(&self, backend: &dyn Backend, name: &str) -> Result<Arc<PackOpener>, String> {
        if let Some(opener) = crate::store::lock(&self.packs).get(name) {
            return Ok(opener.clone());
        }
        let header = backend
            .get_range(name, 0, PACK_HEADER)
            .map_err(|error| format!("cannot read its pack's header: {error}"))?;
        let opener = Arc::new(self.opener_from_header(&header).map_err(|error| format!("its pack's key: {error}"))?);
        let mut packs = crate::store::lock(&self.packs);
        // Bounded: a process that reads more packs than this starts over, at the cost
        // of reading some headers twice.
        if packs.len() >= 1 << 16 {
            packs.clear();
        }
        packs.insert(name.to_owned(), opener.clone());
        Ok(opener)
    }

    /// Unseals a pack key from a pack's header bytes.
    pub fn opener_from_header(&self, header: &[u8]) -> Result<PackOpener, CryptoError> {
        let keys = self.keys.as_ref().ok_or(CryptoError::Malformed)?;
        if header.len() != PACK_HEADER || &header[..8] != PACK_MAGIC {
            return Err(CryptoError::Malformed);
        }
        let secret = keys.secret.ok_or(CryptoError::WriteOnly)?;
        let ephemeral: [u8; 32] = header[8..40].try_into().expect("32 bytes");
        let shared = StaticSecret::from(secret).diffie_hellman(&PublicKey::from(ephemeral));
        let wrap = Zeroizing::new(derive_shared(CONTEXT_PACK_KEY, shared.as_bytes(), &ephemeral, &keys.public));
        let pack_key = Zeroizing::new(open_in_place(&aead_key(&wrap), [0; 12], &header[..40], header[40..].to_vec())?);
        let pack_key: &[u8; 32] = pack_key.as_slice().try_into().map_err(|_| CryptoError::Damaged)?;
        Ok(PackOpener { key: aead_key(pack_key) })
    }

    /// A blob's stored bytes with its seal removed (still compressed, not yet checked
    /// against its id); as they are when unencrypted.
    pub fn open_stored(
        &self,
        backend: &dyn Backend,
        pack: &str,
        entry: &PackEntry,
        stored: Vec<u8>,
    ) -> Result<Vec<u8>, String> {
        if self.keys.is_none() {
            return Ok(stored);
        }
        let opener = self.pack_opener(backend, pack)?;
        opener.open(entry, stored).map_err(|error| format!("blob {}: {error}", entry.id))
    }

    /// A blob's stored bytes back to its plain bytes, opened, decompressed and checked
    /// against its id: the one way blobs are read.
    pub fn decode_blob(
        &self,
        backend: &dyn Backend,
        pack: &str,
        entry: &PackEntry,
        stored: Vec<u8>,
    ) -> Result<Vec<u8>, String> {
        let opened = self.open_stored(backend, pack, entry, stored)?;
        crate::store::decode_blob(&self.ids, entry, opened)
    }

    /// Bytes [`Crypto::seal_object`] adds to an object: what a reader's size limit for
    /// an object of its kind must allow on top of the plain bytes' bound.
    pub fn object_overhead(&self) -> u64 {
        if self.keys.is_some() { OBJECT_OVERHEAD as u64 } else { 0 }
    }

    /// Seals a small object (a manifest, a named record) to the repository's public
    /// key, bound to its object `name`; as it is when unencrypted.
    pub fn seal_object(&self, name: &str, plain: Vec<u8>) -> Vec<u8> {
        let Some(keys) = &self.keys else { return plain };
        let (ephemeral, key) = ephemeral_key(&keys.public, CONTEXT_OBJECT_KEY);
        let mut out = Vec::with_capacity(plain.len() + OBJECT_OVERHEAD);
        out.extend_from_slice(OBJECT_MAGIC);
        out.extend_from_slice(&ephemeral);
        let mut sealed = plain;
        seal_in_place(&aead_key(&key), [0; 12], &object_aad(&ephemeral, name), &mut sealed);
        out.extend_from_slice(&sealed);
        out
    }

    /// Opens what [`Crypto::seal_object`] sealed under the same `name`.
    pub fn open_object(&self, name: &str, stored: Vec<u8>) -> Result<Vec<u8>, CryptoError> {
        let Some(keys) = &self.keys else { return Ok(stored) };
        open_sealed_object(keys, name, stored)
    }
}

/// Opens a sealed object with `keys`; public for the fuzz target of its parser.
pub fn open_sealed_object(keys: &MasterKeys, name: &str, stored: Vec<u8>) -> Result<Vec<u8>, CryptoError> {
    if stored.len() < OBJECT_OVERHEAD || &stored[..8] != OBJECT_MAGIC {
        return Err(CryptoError::Malformed);
    }
    let secret = keys.secret.ok_or(CryptoError::WriteOnly)?;
    let ephemeral: [u8; 32] = stored[8..40].try_into().expect("32 bytes");
    let shared = StaticSecret::from(secret).diffie_hellman(&PublicKey::from(ephemeral));
    let key = Zeroizing::new(derive_shared(CONTEXT_OBJECT_KEY, shared.as_bytes(), &ephemeral, &keys.public));
    let mut stored = stored;
    let sealed = stored.split_off(40);
    open_in_place(&aead_key(&key), [0; 12], &object_aad(&ephemeral, name), sealed)
}

fn object_aad(ephemeral: &[u8; 32], name: &str) -> Vec<u8> {
    let mut aad = Vec::with_capacity(40 + name.len());
    aad.extend_from_slice(OBJECT_MAGIC);
    aad.extend_from_slice(ephemeral);
    aad.extend_from_slice(name.as_bytes());
    aad
}

fn footer_key(index_key: &[u8; 32], ephemeral: &[u8; 32]) -> [u8; 32] {
    let mut material = Zeroizing::new([0u8; 64]);
    material[..32].copy_from_slice(index_key);
    material[32..].copy_from_slice(ephemeral);
    blake3::derive_key(CONTEXT_FOOTER_KEY, material.as_ref())
}

/// The footer's seal is bound to its pack's header and its entry count.
fn footer_aad(header: &[u8], count: u32) -> Vec<u8> {
    let mut aad = header.to_vec();
    aad.extend_from_slice(&count.to_le_bytes());
    aad
}

/// Seals the blobs and footer of one pack being built.
pub struct PackSealer {
    key: LessSafeKey,
    footer: LessSafeKey,
    header: Vec<u8>,
}

impl std::fmt::Debug for PackSealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PackSealer").finish_non_exhaustive()
    }
}

impl PackSealer {
    /// The pack's header: magic, ephemeral public key, sealed pack key.
    pub fn header(&self) -> &[u8] {
        &self.header
    }

    /// Seals one blob's stored bytes, to be placed at `offset`.
    pub fn seal_blob(
        &self,
        offset: u64,
        id: &ObjectId,
        kind: BlobKind,
        compression: Compression,
        raw_length: u32,
        stored: &[u8],
    ) -> Vec<u8> {
        let mut sealed = stored.to_vec();
        let tag = self.seal_blob_in_place(offset, id, kind, compression, raw_length, &mut sealed);
        sealed.extend_from_slice(&tag);
        sealed
    }

    /// Seals one blob's stored bytes where they lie in the pack being built; returns the
    /// tag, which follows them. Saves copying every blob once more.
    pub fn seal_blob_in_place(
        &self,
        offset: u64,
        id: &ObjectId,
        kind: BlobKind,
        compression: Compression,
        raw_length: u32,
        data: &mut [u8],
    ) -> [u8; TAG] {
        let aad = blob_aad(id, kind, compression, raw_length);
        let tag = self
            .key
            .seal_in_place_separate_tag(Nonce::assume_unique_for_key(blob_nonce(offset)), Aad::from(&aad), data)
            .expect("AES-256-GCM seals any blob");
        tag.as_ref().try_into().expect("a 16-byte tag")
    }

    /// Seals the footer of `count` entries.
    pub fn seal_footer(&self, count: u32, footer: &mut Vec<u8>) {
        seal_in_place(&self.footer, [0; 12], &footer_aad(&self.header, count), footer);
    }
}

/// Opens the blobs of one pack.
pub struct PackOpener {
    key: LessSafeKey,
}

impl std::fmt::Debug for PackOpener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PackOpener").finish_non_exhaustive()
    }
}

impl PackOpener {
    /// One blob's stored bytes without their seal.
    pub fn open(&self, entry: &PackEntry, stored: Vec<u8>) -> Result<Vec<u8>, CryptoError> {
        let aad = blob_aad(&entry.id, entry.kind, entry.compression, entry.raw_length);
        open_in_place(&self.key, blob_nonce(entry.offset), &aad, stored)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: ObjectId, offset: u64, length: usize) -> PackEntry {
        PackEntry {
            id,
            kind: BlobKind::Data,
            compression: Compression::None,
            offset,
            length: length as u32,
            raw_length: (length - TAG) as u32,
        }
    }

    #[test]
    fn a_blob_opens_only_where_it_was_sealed() -> Result<(), CryptoError> {
        let crypto = Crypto::encrypted(MasterKeys::generate());
        let sealer = crypto.pack_sealer().expect("encrypted");
        let id = crypto.id_of(b"secret");
        let sealed = sealer.seal_blob(88, &id, BlobKind::Data, Compression::None, 6, b"secret");
        assert!(!sealed.windows(6).any(|w| w == b"secret"));
        let opener = crypto.opener_from_header(sealer.header())?;
        assert_eq!(opener.open(&entry(id, 88, sealed.len()), sealed.clone())?, b"secret");
        // Another offset, another id, or one flipped bit: refused.
        assert_eq!(opener.open(&entry(id, 89, sealed.len()), sealed.clone()), Err(CryptoError::Damaged));
        let other = crypto.id_of(b"other");
        assert_eq!(opener.open(&entry(other, 88, sealed.len()), sealed.clone()), Err(CryptoError::Damaged));
        let mut flipped = sealed.clone();
        flipped[3] ^= 1;
        assert_eq!(opener.open(&entry(id, 88, sealed.len()), flipped), Err(CryptoError::Damaged));
        // Another pack's key cannot open it.
        let elsewhere = crypto.opener_from_header(crypto.pack_sealer().expect("encrypted").header())?;
        assert_eq!(elsewhere.open(&entry(id, 88, sealed.len()), sealed), Err(CryptoError::Damaged));
        Ok(())
    }

    #[test]
    fn a_write_only_key_seals_what_it_cannot_open() -> Result<(), CryptoError> {
        let keys = MasterKeys::generate();
        let reader = Crypto::encrypted(MasterKeys::from_material(&keys.to_material()).expect("material"));
        let writer = Crypto::encrypted(keys.write_only());
        assert!(writer.is_write_only() && !reader.is_write_only());
        assert_eq!(writer.id_of(b"x"), reader.id_of(b"x"), "both deduplicate alike");
        assert_ne!(writer.id_of(b"x"), ObjectId::of(b"x"), "ids are keyed");
        assert_eq!(writer.chunker_seed(), reader.chunker_seed());
        let sealed = writer.seal_object("snapshots/a.json", b"{\"env\":\"main\"}".to_vec());
        assert_eq!(writer.open_object("snapshots/a.json", sealed.clone()), Err(CryptoError::WriteOnly));
        assert_eq!(reader.open_object("snapshots/a.json", sealed.clone())?, b"{\"env\":\"main\"}");
        assert_eq!(reader.open_object("snapshots/b.json", sealed), Err(CryptoError::Damaged), "bound to its name");
        let sealer = writer.pack_sealer().expect("encrypted");
        assert_eq!(writer.opener_from_header(sealer.header()).err(), Some(CryptoError::WriteOnly));
        let mut footer = vec![7u8; 50];
        sealer.seal_footer(1, &mut footer);
        assert_eq!(writer.open_footer(sealer.header(), 1, footer.clone())?, vec![7u8; 50], "the index is rebuilt");
        assert_eq!(writer.open_footer(sealer.header(), 2, footer), Err(CryptoError::Damaged));
        Ok(())
    }

    #[test]
    fn key_material_round_trips_and_refuses_a_foreign_private_key() {
        let keys = MasterKeys::generate();
        let material = keys.to_material();
        assert_eq!(material.len(), READ_KEY_MATERIAL);
        assert!(MasterKeys::from_material(&material).is_some());
        assert_eq!(keys.write_only().to_material().len(), WRITE_KEY_MATERIAL);
        let mut foreign = material.to_vec();
        foreign[100] ^= 1;
        assert!(MasterKeys::from_material(&foreign).is_none());
        assert!(MasterKeys::from_material(&material[..50]).is_none());
    }
}
