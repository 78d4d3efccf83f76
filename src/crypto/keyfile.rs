//! Key files, `keys/<id>`: the master keys sealed under a key derived from one
//! password with argon2id.
//!
//! A key file is small JSON, read as hostile input: at most [`MAX_KEY_FILE`] bytes,
//! every field checked, and KDF parameters bounded before any memory is spent on them,
//! so a planted key file cannot make an open take gigabytes or hours.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::{
    MasterKeys, READ_KEY_MATERIAL, TAG, WRITE_KEY_MATERIAL, aead_key, open_in_place, random_bytes, seal_in_place,
};

/// The largest key file read: a real one is under 1 KiB.
pub const MAX_KEY_FILE: usize = 16 << 10;

/// The argon2id parameters of new key files: 64 MiB, 3 passes, one lane. Above the
/// OWASP minimum (19 MiB, 2 passes) by a margin, and about a quarter of a second on
/// this project's 2-core machine: paid once per command, not per object.
pub const DEFAULT_KDF: KdfParams = KdfParams { memory_kib: 64 << 10, iterations: 3, parallelism: 1 };

/// Bounds on what a key file may ask of the KDF: 1 GiB, 64 passes, 16 lanes.
const MAX_MEMORY_KIB: u32 = 1 << 20;
const MAX_ITERATIONS: u32 = 64;
const MAX_PARALLELISM: u32 = 16;

/// What a key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum KeyKind {
    /// Read and write: holds the repository's private key.
    Read,
    /// Add snapshots only: holds no private key, so it opens no pack and no manifest.
    WriteOnly,
}

impl KeyKind {
    /// As `key list` shows it.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyKind::Read => "read",
            KeyKind::WriteOnly => "write-only",
        }
    }
}

/// argon2id's cost parameters, recorded in each key file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct KdfParams {
    /// Memory, in KiB.
    pub memory_kib: u32,
    /// Passes over it.
    pub iterations: u32,
    /// Lanes.
    pub parallelism: u32,
}

/// The KDF section of a key file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Kdf {
    algorithm: String,
    version: u32,
    memory_kib: u32,
    iterations: u32,
    parallelism: u32,
    /// 32 random bytes, hex.
    salt: String,
}

/// One key file, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyFile {
    format: u32,
    id: String,
    kind: KeyKind,
    created: DateTime<Utc>,
    kdf: Kdf,
    /// The key material sealed with AES-256-GCM under the KDF's output, hex.
    sealed: String,
    /// BLAKE3 keyed with a key derived from the master keys over the file with this
    /// field empty, hex: any key of the repository verifies every key file.
    mac: String,
}

/// Why a key file was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct KeyFileError(String);

impl KeyFile {
    /// Seals `keys` (without the private key when `kind` is write-only) under `password`.
    pub fn create(keys: &MasterKeys, kind: KeyKind, password: &str, params: KdfParams, created: DateTime<Utc>) -> Self {
        let id = hex::encode(random_bytes::<8>());
        Self::create_with_id(keys, kind, password, params, created, id)
    }

    /// Like [`KeyFile::create`], keeping an existing key's id (`key passwd`).
    pub fn create_with_id(
        keys: &MasterKeys,
        kind: KeyKind,
        password: &str,
        params: KdfParams,
        created: DateTime<Utc>,
        id: String,
    ) -> Self {
        let salt = random_bytes::<32>();
        let material = match kind {
            KeyKind::Read => keys.to_material(),
            KeyKind::WriteOnly => keys.write_only().to_material(),
        };
        let wrap = derive(password, &salt, params).expect("the default parameters are valid");
        let mut sealed = material.to_vec();
        seal_in_place(&aead_key(&wrap), [0; 12], &aad(&id, kind), &mut sealed);
        let mut file = KeyFile {
            format: 1,
            id,
            kind,
            created,
            kdf: Kdf {
                algorithm: "argon2id".to_owned(),
                version: 0x13,
                memory_kib: params.memory_kib,
                iterations: params.iterations,
                parallelism: params.parallelism,
                salt: hex::encode(salt),
            },
            sealed: hex::encode(sealed),
            mac: String::new(),
        };
        file.mac = file.compute_mac(keys);
        file
    }

    /// Parses and checks a key file's bytes; nothing is derived yet.
    pub fn parse(bytes: &[u8]) -> Result<Self, KeyFileError> {
        let bad = |detail: &str| KeyFileError(detail.to_owned());
        if bytes.len() > MAX_KEY_FILE {
            return Err(KeyFileError(format!("it is {} bytes, more than a key file holds", bytes.len())));
        }
        let file: KeyFile = serde_json::from_slice(bytes).map_err(|error| KeyFileError(error.to_string()))?;
        if file.format != 1 {
            return Err(KeyFileError(format!("key file format {} is not one this envsnap knows", file.format)));
        }
        if file.id.len() != 16 || !file.id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(bad("its id is not 16 hex digits"));
        }
        let kdf = &file.kdf;
        if kdf.algorithm != "argon2id" || kdf.version != 0x13 {
            return Err(bad("its KDF is not argon2id version 19"));
        }
        if !(8..=MAX_MEMORY_KIB).contains(&kdf.memory_kib)
            || !(1..=MAX_ITERATIONS).contains(&kdf.iterations)
            || !(1..=MAX_PARALLELISM).contains(&kdf.parallelism)
            || kdf.memory_kib < 8 * kdf.parallelism
        {
            return Err(bad("its KDF parameters are out of bounds"));
        }
        if hex::decode(&kdf.salt).map(|salt| salt.len()) != Ok(32) {
            return Err(bad("its salt is not 32 bytes of hex"));
        }
        let material = match file.kind {
            KeyKind::Read => READ_KEY_MATERIAL,
            KeyKind::WriteOnly => WRITE_KEY_MATERIAL,
        };
        if hex::decode(&file.sealed).map(|sealed| sealed.len()) != Ok(material + TAG) {
            return Err(bad("its sealed keys are not of the length its kind holds"));
        }
        if hex::decode(&file.mac).map(|mac| mac.len()) != Ok(32) {
            return Err(bad("its MAC is not 32 bytes of hex"));
        }
        Ok(file)
    }

    /// The stored bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec_pretty(self).expect("a key file always serializes")
    }

    /// Its id, 16 hex digits.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// What it may do.
    pub fn kind(&self) -> KeyKind {
        self.kind
    }

    /// When it was made.
    pub fn created(&self) -> DateTime<Utc> {
        self.created
    }

    /// Its KDF parameters.
    pub fn params(&self) -> KdfParams {
        KdfParams {
            memory_kib: self.kdf.memory_kib,
            iterations: self.kdf.iterations,
            parallelism: self.kdf.parallelism,
        }
    }

    /// The master keys, if `password` is this key's.
    pub fn unlock(&self, password: &str) -> Option<MasterKeys> {
        let salt = hex::decode(&self.kdf.salt).ok()?;
        let sealed = hex::decode(&self.sealed).ok()?;
        let wrap = derive(password, &salt, self.params())?;
        let material =
            Zeroizing::new(open_in_place(&aead_key(&wrap), [0; 12], &aad(&self.id, self.kind), sealed).ok()?);
        let keys = MasterKeys::from_material(&material)?;
        // The kind is bound by the seal's associated data; the material must agree.
        (keys.is_write_only() == (self.kind == KeyKind::WriteOnly)).then_some(keys)
    }

    /// True when the file is as a key of this repository wrote it.
    pub fn mac_matches(&self, keys: &MasterKeys) -> bool {
        self.mac == self.compute_mac(keys)
    }

    fn compute_mac(&self, keys: &MasterKeys) -> String {
        let unsigned = KeyFile { mac: String::new(), ..self.clone() };
        let bytes = serde_json::to_vec(&unsigned).expect("a key file always serializes");
        blake3::keyed_hash(&keys.key_file_mac_key(), &bytes).to_hex().to_string()
    }
}

/// The key sealed into a key file is bound to its id and kind.
fn aad(id: &str, kind: KeyKind) -> Vec<u8> {
    format!("envsnap key file {id} {}", kind.as_str()).into_bytes()
}

/// argon2id of `password`; `None` for parameters argon2 refuses.
fn derive(password: &str, salt: &[u8], params: KdfParams) -> Option<Zeroizing<[u8; 32]>> {
    let params = argon2::Params::new(params.memory_kib, params.iterations, params.parallelism, Some(32)).ok()?;
    let argon2 = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    let mut out = Zeroizing::new([0u8; 32]);
    argon2.hash_password_into(password.as_bytes(), salt, out.as_mut()).ok()?;
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FAST: KdfParams = KdfParams { memory_kib: 64, iterations: 1, parallelism: 1 };

    #[test]
    fn a_key_file_opens_with_its_password_only() -> Result<(), KeyFileError> {
        let keys = MasterKeys::generate();
        let file = KeyFile::create(&keys, KeyKind::Read, "correct horse", FAST, Utc::now());
        let parsed = KeyFile::parse(&file.to_bytes())?;
        assert_eq!(parsed, file);
        assert!(parsed.mac_matches(&keys));
        let opened = parsed.unlock("correct horse").expect("right password");
        assert!(!opened.is_write_only());
        assert!(parsed.unlock("wrong").is_none());
        let write_only = KeyFile::create(&keys, KeyKind::WriteOnly, "ci", FAST, Utc::now());
        assert!(write_only.unlock("ci").expect("right password").is_write_only());
        Ok(())
    }

    #[test]
    fn a_changed_field_is_refused_or_fails_the_mac() -> Result<(), KeyFileError> {
        let keys = MasterKeys::generate();
        let file = KeyFile::create(&keys, KeyKind::Read, "pw", FAST, Utc::now());
        let text = String::from_utf8(file.to_bytes()).expect("JSON");
        // A write-only claim on a read key's material: refused by length.
        let relabeled = text.replace("\"read\"", "\"write-only\"");
        assert!(KeyFile::parse(relabeled.as_bytes()).is_err());
        let weakened = text.replace("\"iterations\": 1", "\"iterations\": 2");
        let parsed = KeyFile::parse(weakened.as_bytes())?;
        assert!(!parsed.mac_matches(&keys));
        let greedy = text.replace("\"memory_kib\": 64", "\"memory_kib\": 4000000000");
        assert!(KeyFile::parse(greedy.as_bytes()).is_err(), "bounded before any memory is spent");
        assert!(KeyFile::parse(&vec![b' '; MAX_KEY_FILE + 1]).is_err());
        Ok(())
    }
}
