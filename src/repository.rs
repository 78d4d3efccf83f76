//! A repository: the store's objects, its config, the catalog and the lock.
//!
//! The objects (config, packs, snapshots, pins, …) are reached only through a
//! [`Backend`], so that a repository runs over any storage: the local file system, memory,
//! a fault-injecting twin in tests, and later object storage. The catalog, the locks and
//! the jobs' lock files stay local files under the repository folder whatever the
//! backend: SQLite and `flock` need a local file system.
//!
//! ```text
//! <repository>/
//!   config.json        format version and chunker sizes; checked on open
//!   keys/<id>          encrypted repositories (format 2): the master keys, sealed by a password
//!   packs/<xx>/<id>.pack
//!   snapshots/<id>.json
//!   pins/<id>          empty: the snapshot is pinned
//!   gone/<hex name>    when envsnap first saw that branch deleted (RFC 3339)
//!   catalog.sqlite     the index; rebuilt from packs and snapshots by `repair`
//!   records.sqlite     the jobs and the activity log: primary data, never rebuilt
//!   lock               held by writers
//!   tmp/               objects being written
//! ```

use std::collections::{HashMap, HashSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};

use crate::catalog::{self, Catalog, records};
use crate::crypto::keyfile::{KdfParams, KeyFile, KeyKind, MAX_KEY_FILE};
use crate::crypto::{Crypto, CryptoError, MasterKeys};
use crate::error::{Error, IoContext, Result};
use crate::id::ObjectId;
use crate::snapshot::{MANIFEST_FORMAT, MAX_MANIFEST_SIZE, Manifest, Snapshot, manifest_name};
use crate::store;
use crate::store::backend::{Backend, LocalBackend};
use crate::store::chunker::ChunkerParams;
use crate::store::lock::{LockKind, RepositoryLock};
use crate::store::pack::{self, PackEntry};
use crate::tree::Tree;

/// The newest store format this build reads and writes: 2, an encrypted repository.
pub const FORMAT_VERSION: u32 = 2;
/// The format of an unencrypted repository, which `init` without `--encrypt` writes.
pub const PLAIN_FORMAT: u32 = 1;
/// The format of an encrypted repository.
pub const ENCRYPTED_FORMAT: u32 = 2;

/// What an encrypted repository's `config.json` names as its scheme: AES-256-GCM
/// seals, X25519 key sealing, BLAKE3 keyed ids, argon2id key files (docs/FORMAT.md).
pub const ENCRYPTION_SCHEME: &str = "aes256gcm-x25519-blake3keyed-argon2id";

/// Where the key files are.
const KEYS: &str = "keys";

/// Gives the password of an encrypted repository when asked; asked at most once per
/// open, and only for an encrypted repository.
pub type PasswordSource<'a> = &'a mut dyn FnMut() -> Result<zeroize::Zeroizing<String>>;

const CONFIG: &str = "config.json";
/// A `config.json` is a hundred bytes; anything past this is not one.
const MAX_CONFIG_SIZE: u64 = 64 << 10;
/// The catalog's file in the repository.
pub const CATALOG: &str = "catalog.sqlite";

/// The repository's `config.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RepositoryConfig {
    /// The store format version.
    pub format: u32,
    /// How content is cut into chunks.
    pub chunker: ChunkerParams,
    /// The encryption scheme ([`ENCRYPTION_SCHEME`]) of a format-2 repository; absent
    /// in format 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption: Option<String>,
}

/// What an open repository may do, and so which lock it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// List, show, diff, restore: no lock. Packs are immutable and snapshots appear
    /// atomically, so a concurrent backup cannot be seen half done.
    Read,
    /// Check: a shared lock, so that no writer adds packs while they are counted.
    Verify,
    /// Backup, delete, prune: the exclusive lock; waits for the holder.
    Write,
    /// Repair: the exclusive lock, and a catalog that cannot be opened or read is no
    /// error, since rebuilding it is the point ([`Repository::repair`]).
    Repair,
}

/// An open repository.
pub struct Repository {
    root: PathBuf,
    backend: Box<dyn Backend>,
    catalog: Mutex<Catalog>,
    config: RepositoryConfig,
    /// The keys every stored byte goes through (plain for format 1).
    crypto: Crypto,
    /// The key file the password opened, in an encrypted repository.
    key_id: Option<String>,
    _lock: Option<RepositoryLock>,
    /// The readers' lock, shared for as long as the repository is open: prune takes it
    /// alone while it deletes packs, so that no reader loses a pack it located a chunk
    /// in. `None` on storage where the lock file cannot be made (read-only), which
    /// nothing can prune either.
    readers: Mutex<Option<RepositoryLock>>,
    access: Access,
    /// Why the catalog file could not be opened, when opened for [`Access::Repair`]
    /// (an empty catalog in memory stands in for it meanwhile).
    catalog_damage: Option<String>,
    /// What `repair` saved of a damaged records file, found as it opened the repository.
    records_salvage: Option<records::Salvage>,
}

/// The name of the object that pins snapshot `id`.
fn pin_name(id: &ObjectId) -> String {
    format!("pins/{id}")
}

/// The object that records when `branch` was first seen deleted. Branch names hold
/// slashes and other characters a file name should not, hence hex; in an encrypted
/// repository, a keyed hash, and the name is inside the sealed record.
fn gone_name(crypto: &Crypto, branch: &str) -> String {
    format!("gone/{}", crypto.record_name(branch))
}

/// An encrypted repository's `gone/` record: the name is no longer in the file name.
#[derive(Serialize, Deserialize)]
struct GoneRecord {
    branch: String,
    since: DateTime<Utc>,
}

/// The file of the readers' lock (see [`Repository::exclude_readers`]).
const READERS_LOCK: &str = "lock.read";

impl std::fmt::Debug for Repository {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Repository").field("root", &self.root).finish_non_exhaustive()
    }
}

impl Repository {
    /// Creates a repository at `root` that cuts chunks with `chunker`. Returns
    /// `Ok(false)` when one is there already (and leaves it as it is).
    pub fn init(root: &Path, chunker: ChunkerParams) -> Result<bool> {
        Self::init_with(root, &LocalBackend::new(root), chunker)
    }

    /// Like [`Repository::init`], with the objects in `backend`; `root` is the local
    /// folder of the catalog and the locks.
    pub fn init_with(root: &Path, backend: &dyn Backend, chunker: ChunkerParams) -> Result<bool> {
        Self::create(root, backend, chunker, None)
    }

    /// Creates an encrypted repository (format 2) at `root`, its master keys new and
    /// random, sealed in one key file by `password`. Returns `Ok(false)` when a
    /// repository is there already (and leaves it as it is).
    pub fn init_encrypted(root: &Path, chunker: ChunkerParams, password: &str, kdf: KdfParams) -> Result<bool> {
        Self::init_encrypted_with(root, &LocalBackend::new(root), chunker, password, kdf)
    }

    /// Like [`Repository::init_encrypted`], with the objects in `backend`.
    pub fn init_encrypted_with(
        root: &Path,
        backend: &dyn Backend,
        chunker: ChunkerParams,
        password: &str,
        kdf: KdfParams,
    ) -> Result<bool> {
        Self::create(root, backend, chunker, Some((password, kdf)))
    }

    fn create(
        root: &Path,
        backend: &dyn Backend,
        chunker: ChunkerParams,
        password: Option<(&str, KdfParams)>,
    ) -> Result<bool> {
        let config_path = backend.describe(CONFIG);
        match Self::read_config(root, backend) {
            Ok(_) => return Ok(false),
            Err(Error::RepositoryMissing { .. }) => {}
            Err(error) => return Err(error),
        }
        crate::store::backend::create_private_dir_all(root).context("creating the repository", root)?;
        // An existing empty directory given to init becomes private too.
        fs::set_permissions(root, std::os::unix::fs::PermissionsExt::from_mode(crate::store::backend::PRIVATE_DIR))
            .context("creating the repository", root)?;
        let config = match password {
            None => RepositoryConfig { format: PLAIN_FORMAT, chunker, encryption: None },
            Some((password, kdf)) => {
                // The key file first: a config that says "encrypted" is never there
                // without a key to open it.
                let keys = MasterKeys::generate();
                let file = KeyFile::create(&keys, KeyKind::Read, password, kdf, Utc::now());
                let name = key_name(file.id());
                backend.put(&name, &file.to_bytes()).context("writing", backend.describe(&name))?;
                RepositoryConfig { format: ENCRYPTED_FORMAT, chunker, encryption: Some(ENCRYPTION_SCHEME.to_owned()) }
            }
        };
        let bytes = serde_json::to_vec_pretty(&config).expect("the config always serializes");
        backend.put(CONFIG, &bytes).map_err(|e| Error::io("writing", &config_path, e))?;
        Catalog::open(&root.join(CATALOG))?;
        Ok(true)
    }

    /// True when a repository is at `root` (its config is there).
    pub fn exists(root: &Path) -> Result<bool> {
        match Self::read_config(root, &LocalBackend::new(root)) {
            Ok(_) => Ok(true),
            Err(Error::RepositoryMissing { .. }) => Ok(false),
            Err(error) => Err(error),
        }
    }

    /// Opens the repository at `root`. `waiting` is told who holds the lock when
    /// this has to wait for it.
    pub fn open(root: &Path, access: Access, waiting: &mut dyn FnMut(&str)) -> Result<Self> {
        Self::open_with(root, Box::new(LocalBackend::new(root)), access, waiting)
    }

    /// Like [`Repository::open`]; an encrypted repository is unlocked with what
    /// `password` gives.
    pub fn open_unlocked(
        root: &Path,
        access: Access,
        waiting: &mut dyn FnMut(&str),
        password: PasswordSource<'_>,
    ) -> Result<Self> {
        Self::open_with_unlocked(root, Box::new(LocalBackend::new(root)), access, waiting, password)
    }

    /// Like [`Repository::open`], with the objects in `backend`; `root` is the local
    /// folder of the catalog and the locks.
    pub fn open_with(
        root: &Path,
        backend: Box<dyn Backend>,
        access: Access,
        waiting: &mut dyn FnMut(&str),
    ) -> Result<Self> {
        let root_path = root.to_owned();
        Self::open_with_unlocked(root, backend, access, waiting, &mut || {
            Err(Error::PasswordNeeded { path: root_path.clone() })
        })
    }

    /// Like [`Repository::open_with`]; an encrypted repository is unlocked with what
    /// `password` gives.
    pub fn open_with_unlocked(
        root: &Path,
        backend: Box<dyn Backend>,
        access: Access,
        waiting: &mut dyn FnMut(&str),
        password: PasswordSource<'_>,
    ) -> Result<Self> {
        let mut config = Self::read_config(root, backend.as_ref())?;
        let (crypto, key_id) = Self::unlock(backend.as_ref(), &config, password)?;
        config.chunker.seed = crypto.chunker_seed();
        let lock = match access {
            Access::Read => None,
            Access::Verify => Some(RepositoryLock::acquire(root, LockKind::Shared, waiting)?),
            Access::Write | Access::Repair => Some(RepositoryLock::acquire(root, LockKind::Exclusive, waiting)?),
        };
        let readers = match RepositoryLock::acquire_at(&root.join(READERS_LOCK), LockKind::Shared, waiting) {
            Ok(readers) => Some(readers),
            Err(Error::Io { source, .. })
                if access == Access::Read
                    && matches!(
                        source.kind(),
                        std::io::ErrorKind::PermissionDenied | std::io::ErrorKind::ReadOnlyFilesystem
                    ) =>
            {
                None
            }
            Err(error) => return Err(error),
        };
        let catalog_path = root.join(CATALOG);
        // An empty file is what a catalog truncated to nothing leaves: SQLite takes it
        // for a new database, so it is rebuilt as a missing one is.
        let fresh_catalog = fs::metadata(&catalog_path).map_or(true, |metadata| metadata.len() == 0);
        // The records are saved before anything opens them: the catalog attaches them.
        let records_salvage =
            if access == Access::Repair { records::salvage(&root.join(catalog::RECORDS))? } else { None };
        let (catalog, catalog_damage) = match Catalog::open(&catalog_path) {
            Ok(catalog) => (catalog, None),
            // A newer catalog is not damaged: repair must not move it aside.
            Err(error @ Error::FormatTooNew { .. }) => return Err(error),
            Err(error) if access == Access::Repair => (Catalog::in_memory()?, Some(error.to_string())),
            Err(error) => return Err(error),
        };
        let repository = Repository {
            root: root.to_owned(),
            backend,
            catalog: Mutex::new(catalog),
            config,
            crypto,
            key_id,
            _lock: lock,
            readers: Mutex::new(readers),
            access,
            catalog_damage,
            records_salvage,
        };
        if access == Access::Repair {
            // Repair rebuilds everything from the store: nothing to reconcile first.
            repository.backend.clean_temporary().context("cleaning", repository.backend.describe("tmp"))?;
            return Ok(repository);
        }
        if access == Access::Write {
            repository.backend.clean_temporary().context("cleaning", repository.backend.describe("tmp"))?;
        }
        // A lost catalog is rebuilt; otherwise, packs written by a backup that was
        // killed before indexing them are indexed (writers only, as only they may
        // race nobody), and snapshots are brought in line with the store.
        if fresh_catalog || access == Access::Write {
            repository.index_new_packs()?;
        }
        repository.reconcile_snapshots()?;
        Ok(repository)
    }

    fn read_config(root: &Path, backend: &dyn Backend) -> Result<RepositoryConfig> {
        let path = backend.describe(CONFIG);
        let bytes = match backend.get(CONFIG, MAX_CONFIG_SIZE) {
            Ok(bytes) => bytes,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::RepositoryMissing { path: root.to_owned() });
            }
            Err(error) => return Err(Error::io("reading", &path, error)),
        };
        #[derive(Deserialize)]
        struct Version {
            format: u32,
        }
        let corrupt = |detail: String| {
            // The config written anew must be of the repository's kind: one with key
            // files is encrypted, and a format-1 config over it would be refused.
            let encrypted = backend.list(KEYS).is_ok_and(|keys| !keys.is_empty());
            let replacement = RepositoryConfig {
                format: if encrypted { ENCRYPTED_FORMAT } else { PLAIN_FORMAT },
                chunker: ChunkerParams::default(),
                encryption: encrypted.then(|| ENCRYPTION_SCHEME.to_owned()),
            };
            Error::ConfigDamaged {
                path: path.clone(),
                detail,
                replacement: serde_json::to_string(&replacement).expect("a config always serializes"),
            }
        };
        let version: Version = serde_json::from_slice(&bytes).map_err(|error| corrupt(error.to_string()))?;
        if version.format > FORMAT_VERSION {
            return Err(Error::FormatTooNew {
                path: root.to_owned(),
                found: version.format,
                supported: FORMAT_VERSION,
            });
        }
        let config: RepositoryConfig = serde_json::from_slice(&bytes).map_err(|error| corrupt(error.to_string()))?;
        if !config.chunker.is_valid() {
            return Err(corrupt("invalid chunker sizes".to_owned()));
        }
        match (config.format, config.encryption.as_deref()) {
            (PLAIN_FORMAT, None) | (ENCRYPTED_FORMAT, Some(ENCRYPTION_SCHEME)) => {}
            (ENCRYPTED_FORMAT, other) => {
                return Err(corrupt(format!("format 2 with an unknown encryption scheme {other:?}")));
            }
            (format, _) => return Err(corrupt(format!("format {format} with an encryption scheme"))),
        }
        Ok(config)
    }

    /// The keys of the repository: plain for format 1; for format 2, the master keys of
    /// the first key file that `password` opens, and that file's id.
    fn unlock(
        backend: &dyn Backend,
        config: &RepositoryConfig,
        password: PasswordSource<'_>,
    ) -> Result<(Crypto, Option<String>)> {
        let key_files = Self::read_key_files(backend)?;
        if config.format == PLAIN_FORMAT {
            // A config swapped for an unencrypted one must not make envsnap write plain
            // data into an encrypted repository.
            if !key_files.is_empty() {
                return Err(Error::Corrupt {
                    what: format!("the repository's config {}", backend.describe(CONFIG).display()),
                    detail: format!(
                        "it says the repository is not encrypted, but {} holds key files; restore `\"format\": {ENCRYPTED_FORMAT}, \"encryption\": \"{ENCRYPTION_SCHEME}\"` in it",
                        backend.describe(KEYS).display()
                    ),
                });
            }
            return Ok((Crypto::plain(), None));
        }
        let password = password()?;
        let mut damaged = Vec::new();
        for (name, file) in &key_files {
            match file {
                Ok(file) => {
                    if let Some(keys) = file.unlock(&password) {
                        return Ok((Crypto::encrypted(keys), Some(file.id().to_owned())));
                    }
                }
                Err(problem) => damaged.push(format!("{} is damaged ({problem})", backend.describe(name).display())),
            }
        }
        Err(Error::PasswordWrong {
            path: backend.describe(KEYS),
            damaged: if damaged.is_empty() { String::new() } else { format!("; {}", damaged.join("; ")) },
        })
    }

    /// Every key file, parsed (or why it could not be).
    fn read_key_files(backend: &dyn Backend) -> Result<Vec<(String, Result<KeyFile, String>)>> {
        let listed = backend.list(KEYS).context("listing", backend.describe(KEYS))?;
        let mut files = Vec::new();
        for (name, _) in listed {
            // Read within a key file's bound, so a planted huge file costs no memory.
            let file = match backend.get(&name, MAX_KEY_FILE as u64) {
                Ok(bytes) => KeyFile::parse(&bytes).map_err(|error| error.to_string()),
                Err(error) if error.kind() == std::io::ErrorKind::InvalidData => Err(error.to_string()),
                Err(error) => return Err(Error::io("reading", backend.describe(&name), error)),
            };
            files.push((name, file));
        }
        Ok(files)
    }

    /// The keys every stored byte goes through.
    pub fn crypto(&self) -> &Crypto {
        &self.crypto
    }

    /// True for an encrypted repository opened with a write-only key.
    pub fn is_write_only(&self) -> bool {
        self.crypto.is_write_only()
    }

    /// Fails with [`Error::WriteOnlyKey`] when the key in use cannot read: for the
    /// commands that read snapshots, so they refuse before doing anything.
    pub fn require_read_key(&self, action: &str) -> Result<()> {
        if self.crypto.is_write_only() {
            return Err(Error::WriteOnlyKey { action: action.to_owned() });
        }
        Ok(())
    }

    /// The id of the key file in use, in an encrypted repository.
    pub fn key_id(&self) -> Option<&str> {
        self.key_id.as_deref()
    }

    /// The key files: each with its id, or why it cannot be read, and whether its MAC
    /// shows it as a key of this repository wrote it.
    pub fn keys(&self) -> Result<Vec<KeyStatus>> {
        let keys = self.master_keys()?;
        Ok(Self::read_key_files(self.backend.as_ref())?
            .into_iter()
            .map(|(name, file)| {
                let file = file.and_then(|file| {
                    if file.mac_matches(keys) {
                        Ok(file)
                    } else {
                        Err("its MAC does not match: it was changed after it was written".to_owned())
                    }
                });
                KeyStatus { name, file }
            })
            .collect())
    }

    fn master_keys(&self) -> Result<&MasterKeys> {
        self.crypto.keys().ok_or_else(|| Error::NotEncrypted { path: self.root.clone() })
    }

    /// Adds a key that `password` opens: a read key, or a write-only one. A
    /// write-only key can add write-only keys only. Rewrites no data.
    pub fn add_key(&self, kind: KeyKind, password: &str, kdf: KdfParams) -> Result<KeyFile> {
        let keys = self.master_keys()?;
        if kind == KeyKind::Read {
            self.require_read_key("add a read key")?;
        }
        let file = KeyFile::create(keys, kind, password, kdf, Utc::now());
        let name = key_name(file.id());
        self.backend.put(&name, &file.to_bytes()).context("writing", self.backend.describe(&name))?;
        Ok(file)
    }

    /// Seals the key in use under a new password, in place: the old one stops working.
    pub fn change_password(&self, password: &str, kdf: KdfParams) -> Result<KeyFile> {
        let keys = self.master_keys()?;
        let id = self.key_id.clone().ok_or_else(|| Error::NotEncrypted { path: self.root.clone() })?;
        let kind = if keys.is_write_only() { KeyKind::WriteOnly } else { KeyKind::Read };
        let file = KeyFile::create_with_id(keys, kind, password, kdf, Utc::now(), id);
        let name = key_name(file.id());
        // Written whole over the old file (to tmp/, then renamed): never a moment with
        // neither password working.
        self.backend.put(&name, &file.to_bytes()).context("writing", self.backend.describe(&name))?;
        Ok(file)
    }

    /// Removes key `id` (a unique prefix of at least 4 digits), unless it is the last
    /// read key that verifies.
    pub fn remove_key(&self, id: &str) -> Result<String> {
        let keys = self.keys()?;
        let id = id.to_ascii_lowercase();
        let matches: Vec<&KeyStatus> = keys
            .iter()
            .filter(|key| key.name.strip_prefix("keys/").is_some_and(|name| id.len() >= 4 && name.starts_with(&id)))
            .collect();
        let [key] = matches.as_slice() else { return Err(Error::KeyNotFound { id }) };
        let is_read = |status: &KeyStatus| status.file.as_ref().is_ok_and(|file| file.kind() == KeyKind::Read);
        if is_read(key) && keys.iter().filter(|other| is_read(other)).count() < 2 {
            return Err(Error::LastReadKey { id: key.name.trim_start_matches("keys/").to_owned() });
        }
        self.backend.remove(&key.name).context("removing", self.backend.describe(&key.name))?;
        Ok(key.name.trim_start_matches("keys/").to_owned())
    }

    /// The repository folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The storage of its objects.
    pub fn backend(&self) -> &dyn Backend {
        self.backend.as_ref()
    }

    /// The catalog, behind its lock.
    pub fn catalog(&self) -> &Mutex<Catalog> {
        &self.catalog
    }

    /// The repository's config.
    pub fn config(&self) -> &RepositoryConfig {
        &self.config
    }

    /// Indexes every pack in the store that the catalog does not know and whose bytes
    /// match its name; forgets packs
    /// the catalog knows but the store has lost. Returns how many packs were indexed.
    pub fn index_new_packs(&self) -> Result<usize> {
        let stored = self.list("packs")?;
        let known = store::lock(&self.catalog).pack_names()?;
        let stored_names: HashSet<&str> = stored.iter().map(|(name, _)| name.as_str()).collect();
        let mut indexed = 0;
        for (name, size) in &stored {
            if !name.ends_with(".pack") || known.contains(name) {
                continue;
            }
            // Only a pack whose bytes match its name is indexed: one torn by a crash,
            // or damaged, is left for `check` to report. Packs the catalog lacks are few
            // (a backup killed before indexing), so reading them whole costs little;
            // after the catalog is lost, it is the price of indexing nothing false.
            let Ok(entries) = store::read_verified_pack(&self.crypto, self.backend.as_ref(), name) else {
                continue;
            };
            store::lock(&self.catalog).add_pack(name, *size, &entries)?;
            indexed += 1;
        }
        for name in known.iter().filter(|name| !stored_names.contains(name.as_str())) {
            store::lock(&self.catalog).remove_pack(name)?;
        }
        Ok(indexed)
    }

    /// Makes the catalog's snapshots those of the store: adds manifests it lacks,
    /// forgets those deleted from the store.
    fn reconcile_snapshots(&self) -> Result<()> {
        let stored: HashSet<ObjectId> = self
            .list("snapshots")?
            .iter()
            .filter_map(|(name, _)| name.strip_prefix("snapshots/")?.strip_suffix(".json"))
            .filter_map(ObjectId::from_hex)
            .collect();
        let known = store::lock(&self.catalog).snapshot_ids()?;
        for id in stored.difference(&known) {
            // A manifest that does not verify is left for `check` to report.
            if let Ok(manifest) = self.read_manifest(id) {
                store::lock(&self.catalog).add_snapshot(id, &manifest)?;
            }
        }
        for id in known.difference(&stored) {
            store::lock(&self.catalog).remove_snapshot(id)?;
        }
        Ok(())
    }

    fn list(&self, prefix: &str) -> Result<Vec<(String, u64)>> {
        self.backend.list(prefix).context("listing", self.backend.describe(prefix))
    }

    /// Reads and verifies a snapshot's manifest from the store.
    pub fn read_manifest(&self, id: &ObjectId) -> Result<Manifest> {
        let name = manifest_name(id);
        let bytes =
            // A sealed manifest is its plain bytes and the seal's overhead.
            self.backend
                .get(&name, MAX_MANIFEST_SIZE as u64 + self.crypto.object_overhead())
                .context("reading", self.backend.describe(&name))?;
        let what = || format!("snapshot {}", id.short(12));
        let bytes = self.crypto.open_object(&name, bytes).map_err(|error| match error {
            CryptoError::WriteOnly => Error::WriteOnlyKey { action: format!("read {}", what()) },
            error => Error::Corrupt { what: what(), detail: format!("its manifest {error}") },
        })?;
        if self.crypto.id_of(&bytes) != *id {
            return Err(Error::Corrupt { what: what(), detail: "its manifest does not match its id".to_owned() });
        }
        let manifest = Manifest::decode(&bytes).map_err(|e| Error::Corrupt { what: what(), detail: e.to_string() })?;
        if manifest.format > MANIFEST_FORMAT {
            return Err(Error::FormatTooNew {
                path: self.backend.describe(&name),
                found: manifest.format,
                supported: MANIFEST_FORMAT,
            });
        }
        Ok(manifest)
    }

    /// Publishes a snapshot: writes its manifest (the commit point) and records it.
    pub fn publish(&self, manifest: &Manifest) -> Result<Snapshot> {
        let (id, bytes) = self.encode_manifest(manifest);
        let name = manifest_name(&id);
        self.backend.put(&name, &bytes).map_err(|e| Error::io("writing", self.backend.describe(&name), e))?;
        // The manifest is the commit point: the snapshot exists now. Should recording it
        // in the catalog fail (a full disk, say), the next open reconciles the catalog
        // with the store, so this is not an error to report.
        let _ = store::lock(&self.catalog).add_snapshot(&id, manifest);
        Ok(Snapshot { id, manifest: manifest.clone() })
    }

    /// A manifest's id and stored bytes (sealed, in an encrypted repository).
    pub fn encode_manifest(&self, manifest: &Manifest) -> (ObjectId, Vec<u8>) {
        let (_, plain) = manifest.encode();
        let id = self.crypto.id_of(&plain);
        (id, self.crypto.seal_object(&manifest_name(&id), plain))
    }

    /// Waits, for `patience` at most, until no other process reads the repository,
    /// and keeps new readers out until the returned lock is dropped: what prune holds
    /// while it deletes packs. `None` if readers stayed. Only for a repository opened
    /// for writing, which keeps writers out too.
    pub fn exclude_readers(
        &self,
        patience: std::time::Duration,
        waiting: &mut dyn FnMut(&str),
    ) -> Result<Option<RepositoryLock>> {
        if self.access != Access::Write {
            return Err(Error::Corrupt {
                what: "the repository lock".to_owned(),
                detail: "readers can be excluded only by a writer".to_owned(),
            });
        }
        // Our own shared hold would make the exclusive one wait for ever.
        store::lock(&self.readers).take();
        RepositoryLock::acquire_within(&self.root.join(READERS_LOCK), LockKind::Exclusive, patience, waiting)
    }

    /// Pins a snapshot: retention keeps it and `delete` refuses it until it is unpinned.
    /// A pin is an empty object, `pins/<id>`, in the store rather than in the catalog,
    /// so that a rebuilt catalog loses none.
    pub fn pin(&self, id: &ObjectId) -> Result<()> {
        let name = pin_name(id);
        self.backend.put(&name, b"").context("writing", self.backend.describe(&name))
    }

    /// Unpins a snapshot; unpinning one that is not pinned does nothing.
    pub fn unpin(&self, id: &ObjectId) -> Result<()> {
        let name = pin_name(id);
        self.backend.remove(&name).context("removing", self.backend.describe(&name))
    }

    /// The pinned snapshots.
    pub fn pinned(&self) -> Result<HashSet<ObjectId>> {
        Ok(self
            .list("pins")?
            .iter()
            .filter_map(|(name, _)| name.strip_prefix("pins/"))
            .filter_map(ObjectId::from_hex)
            .collect())
    }

    /// The deleted branches and when envsnap first saw each gone, as recorded by
    /// [`Repository::mark_gone`]. Retention keeps a deleted branch's snapshots for a
    /// while counted from that time: counting from its newest snapshot would drop a
    /// branch that was idle for a month the moment it was deleted.
    pub fn branches_gone(&self) -> Result<HashMap<String, DateTime<Utc>>> {
        let mut gone = HashMap::new();
        for (name, _) in self.list("gone")? {
            if let Some((branch, since)) = self.read_gone(&name)? {
                gone.insert(branch, since);
            }
        }
        Ok(gone)
    }

    /// One `gone/` record: the branch and since when; `None` for an unencrypted
    /// repository's file whose name is not a branch's.
    fn read_gone(&self, name: &str) -> Result<Option<(String, DateTime<Utc>)>> {
        if self.crypto.is_encrypted() {
            return self.read_sealed_gone(name).map(Some);
        }
        let Some(branch) = name.strip_prefix("gone/").and_then(|hex| hex::decode(hex).ok()) else { return Ok(None) };
        let Ok(branch) = String::from_utf8(branch) else { return Ok(None) };
        // An RFC 3339 time is some 30 bytes.
        let bytes = self.backend.get(name, 4096).context("reading", self.backend.describe(name))?;
        let since = std::str::from_utf8(&bytes)
            .ok()
            .and_then(|text| DateTime::parse_from_rfc3339(text.trim()).ok())
            .ok_or_else(|| Error::Corrupt {
                what: format!(
                    "the record of branch `{branch}` being deleted ({})",
                    self.backend.describe(name).display()
                ),
                detail: "it holds no RFC 3339 time; remove the file, and the branch counts as deleted from now"
                    .to_owned(),
            })?;
        Ok(Some((branch, since.with_timezone(&Utc))))
    }

    /// The records beside the snapshots (the last restore into each environment, the
    /// branches seen deleted) that cannot be read, each with why: sealed ones in an
    /// encrypted repository, so `check` opens every one as `undo` and retention would.
    /// A write-only key cannot open them, and checks none.
    pub fn damaged_records(&self) -> Result<Vec<String>> {
        if self.crypto.is_write_only() {
            return Ok(Vec::new());
        }
        let mut damaged = Vec::new();
        for (name, _) in self.list("restores")? {
            if let Err(error) = self.read_restore_record(&name) {
                damaged.push(error.to_string());
            }
        }
        for (name, _) in self.list("gone")? {
            if let Err(error) = self.read_gone(&name) {
                damaged.push(error.to_string());
            }
        }
        Ok(damaged)
    }

    /// Records that `branch` was seen deleted at `since`; a branch already recorded
    /// keeps its first time.
    pub fn mark_gone(&self, branch: &str, since: DateTime<Utc>) -> Result<()> {
        let name = gone_name(&self.crypto, branch);
        let bytes = if self.crypto.is_encrypted() {
            let record = GoneRecord { branch: branch.to_owned(), since };
            let plain = serde_json::to_vec(&record).expect("a record always serializes");
            self.crypto.seal_object(&name, plain)
        } else {
            since.to_rfc3339_opts(SecondsFormat::Secs, true).into_bytes()
        };
        self.backend.put(&name, &bytes).context("writing", self.backend.describe(&name))
    }

    /// An encrypted repository's `gone/` record: the branch and since when.
    fn read_sealed_gone(&self, name: &str) -> Result<(String, DateTime<Utc>)> {
        /// A record is some tens of bytes; anything larger is not one.
        const MAX_RECORD: u64 = 64 << 10;
        let path = self.backend.describe(name);
        let corrupt = |detail: String| Error::Corrupt {
            what: format!("the record of a deleted branch ({})", path.display()),
            detail: format!("{detail}; remove the file, and the branch counts as deleted from now"),
        };
        let bytes = match self.backend.get(name, MAX_RECORD + self.crypto.object_overhead()) {
            Ok(bytes) => bytes,
            Err(error) if error.kind() == std::io::ErrorKind::InvalidData => return Err(corrupt(error.to_string())),
            Err(error) => return Err(Error::io("reading", &path, error)),
        };
        let plain = self.crypto.open_object(name, bytes).map_err(|error| match error {
            CryptoError::WriteOnly => Error::WriteOnlyKey { action: "read which branches were deleted".to_owned() },
            error => corrupt(error.to_string()),
        })?;
        let record: GoneRecord = serde_json::from_slice(&plain).map_err(|error| corrupt(error.to_string()))?;
        if gone_name(&self.crypto, &record.branch) != name {
            return Err(corrupt(format!("it names branch `{}`, whose record is another", record.branch)));
        }
        Ok((record.branch, record.since))
    }

    /// Forgets that `branch` was deleted: it exists again.
    pub fn unmark_gone(&self, branch: &str) -> Result<()> {
        let name = gone_name(&self.crypto, branch);
        self.backend.remove(&name).context("removing", self.backend.describe(&name))
    }

    /// Deletes a snapshot, unless it is pinned. Its data stays until `prune` frees
    /// what no snapshot uses.
    pub fn delete(&self, id: &ObjectId) -> Result<()> {
        if self.pinned()?.contains(id) {
            return Err(Error::Pinned { id: id.short(12) });
        }
        let name = manifest_name(id);
        self.backend.remove(&name).context("removing", self.backend.describe(&name))?;
        store::lock(&self.catalog).remove_snapshot(id)
    }

    /// The backup jobs, newest first; only those of `env` when given. Jobs whose
    /// process died are marked failed first (see [`crate::jobs::reap`]); on storage
    /// that cannot be written, they are shown as they are.
    pub fn jobs(&self, env: Option<&str>) -> Result<Vec<crate::jobs::Job>> {
        let catalog = store::lock(&self.catalog);
        let _ = crate::jobs::reap(&self.root, &catalog);
        catalog.jobs(env)
    }

    /// The jobs whose id starts with `prefix`.
    pub fn jobs_with_prefix(&self, prefix: &str) -> Result<Vec<crate::jobs::Job>> {
        let catalog = store::lock(&self.catalog);
        let _ = crate::jobs::reap(&self.root, &catalog);
        catalog.jobs_with_prefix(prefix)
    }

    /// The snapshots `check` found cannot be restored in full, with why (see
    /// [`crate::catalog::Catalog::record_damage`]).
    pub fn damage(&self) -> Result<HashMap<ObjectId, String>> {
        store::lock(&self.catalog).damage()
    }

    /// The activity log, newest first (see [`crate::catalog::Catalog::activities`]).
    pub fn activities(&self, env: Option<&str>, limit: Option<usize>) -> Result<Vec<crate::activity::Activity>> {
        store::lock(&self.catalog).activities(env, limit)
    }

    /// Records the restore into `record.env` that is changing it, or how it ended:
    /// what `undo` acts on. Written whole and atomically, one per environment.
    pub fn record_restore(&self, record: &RestoreRecord) -> Result<()> {
        let name = restore_record_name(&self.crypto, &record.env);
        let bytes = serde_json::to_vec_pretty(record).expect("a restore record always serializes");
        let bytes = self.crypto.seal_object(&name, bytes);
        self.backend.put(&name, &bytes).context("writing", self.backend.describe(&name))
    }

    /// The last restore that changed environment `env`, if one was recorded.
    pub fn last_restore(&self, env: &str) -> Result<Option<RestoreRecord>> {
        let name = restore_record_name(&self.crypto, env);
        let Some(record) = self.read_restore_record(&name)? else { return Ok(None) };
        if record.env != env {
            let path = self.backend.describe(&name);
            return Err(Error::Corrupt {
                what: format!("restore record {}", path.display()),
                detail: format!(
                    "it records a restore into `{}`; remove it to forget the last restore into `{env}`",
                    record.env
                ),
            });
        }
        Ok(Some(record))
    }

    /// The restore record `name`, opened and parsed; `None` when there is none.
    fn read_restore_record(&self, name: &str) -> Result<Option<RestoreRecord>> {
        /// A record is a few hundred bytes; anything larger is not one.
        const MAX_RECORD: u64 = 64 << 10;
        let path = self.backend.describe(name);
        let corrupt = |detail: String| Error::Corrupt {
            what: format!("restore record {}", path.display()),
            detail: format!("{detail}; remove it to forget the last restore it records"),
        };
        let bytes = match self.backend.get(name, MAX_RECORD + self.crypto.object_overhead()) {
            Ok(bytes) => bytes,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(error) if error.kind() == std::io::ErrorKind::InvalidData => return Err(corrupt(error.to_string())),
            Err(error) => return Err(Error::io("reading", &path, error)),
        };
        let bytes = self.crypto.open_object(name, bytes).map_err(|error| match error {
            CryptoError::WriteOnly => Error::WriteOnlyKey { action: "read the last restore".to_owned() },
            error => corrupt(error.to_string()),
        })?;
        serde_json::from_slice(&bytes).map(Some).map_err(|error| corrupt(error.to_string()))
    }

    /// Reads one blob, verified against its id.
    pub fn read_blob(&self, id: &ObjectId) -> Result<Vec<u8>> {
        let location = store::lock(&self.catalog).locate(id)?.ok_or_else(|| Error::ChunkMissing { id: id.to_hex() })?;
        self.read_located(&location.pack, &location.entry)
    }

    /// Reads one blob whose location is known.
    pub fn read_located(&self, pack: &str, entry: &PackEntry) -> Result<Vec<u8>> {
        let stored = self
            .backend
            .get_range(pack, entry.offset, entry.length as usize)
            .context("reading", self.backend.describe(pack))?;
        if self.crypto.is_write_only() {
            return Err(Error::WriteOnlyKey { action: format!("read chunk {}", entry.id.short(12)) });
        }
        self.crypto.decode_blob(self.backend.as_ref(), pack, entry, stored).map_err(|detail| Error::Corrupt {
            what: format!("chunk {} in pack {}", entry.id.short(12), self.backend.describe(pack).display()),
            detail,
        })
    }

    /// Reads a tree.
    pub fn read_tree(&self, id: &ObjectId) -> Result<Tree> {
        let bytes = self.read_blob(id)?;
        Tree::decode(&bytes)
            .map_err(|error| Error::Corrupt { what: format!("tree {}", id.short(12)), detail: error.to_string() })
    }

    /// The snapshots, newest first; of one environment when `env` is given.
    pub fn snapshots(&self, env: Option<&str>) -> Result<Vec<Snapshot>> {
        store::lock(&self.catalog).snapshots(env)
    }

    /// Finds a snapshot by `latest` (see [`crate::retention::latest`]: the newest
    /// complete snapshot of the whole of `env`, not a safety or partial one) or a
    /// unique id prefix.
    pub fn resolve(&self, text: &str, env: Option<&str>) -> Result<Snapshot> {
        if text == "latest" {
            let snapshots = self.snapshots(env)?;
            return crate::retention::latest(&snapshots).cloned().ok_or_else(|| Error::SnapshotNotFound {
                id: text.to_owned(),
                scope: format!(
                    "{} (`latest` is a snapshot of every element, not a safety or --element one; others go by id)",
                    env.map(|env| format!(" in environment {env}")).unwrap_or_default()
                ),
            });
        }
        let prefix = text.to_ascii_lowercase();
        if prefix.len() < 4 || prefix.len() > 64 || !prefix.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(Error::InvalidId { id: text.to_owned() });
        }
        let matches = store::lock(&self.catalog).snapshots_with_prefix(&prefix)?;
        match matches.as_slice() {
            [] => Err(Error::SnapshotNotFound { id: text.to_owned(), scope: String::new() }),
            [id] => Ok(Snapshot { id: *id, manifest: self.read_manifest(id)? }),
            many => Err(Error::AmbiguousId {
                prefix: text.to_owned(),
                candidates: many.iter().map(|id| id.short(12)).collect(),
            }),
        }
    }

    /// Rebuilds the catalog from the store alone: every pack's footer and every
    /// snapshot manifest. The new catalog replaces the old one only when complete.
    ///
    /// Repair only makes things better: a pack is indexed from its footer only when
    /// its bytes match its name. A damaged pack keeps, of what the old catalog and its
    /// footer place in it, every blob that still verifies where it is said to be; a pack
    /// that cannot be read at all keeps the old catalog's entries, untouched. So a blob
    /// that restored before `repair` restores after it.
    pub fn repair(&self) -> Result<RepairReport> {
        let partial = self.root.join(format!("{CATALOG}.rebuild"));
        for suffix in ["", "-wal", "-shm"] {
            let _ = fs::remove_file(format!("{}{suffix}", partial.display()));
        }
        let mut report = RepairReport { records: self.records_salvage.clone(), ..RepairReport::default() };
        let damage = match &self.catalog_damage {
            Some(damage) => Some(damage.clone()),
            None => store::lock(&self.catalog).integrity_problem(),
        };
        // What the old catalog places in each pack, if it can still say.
        let old_packs: HashMap<String, Vec<PackEntry>> = store::lock(&self.catalog)
            .pack_contents()
            .map(|packs| packs.into_iter().map(|(name, _, entries)| (name, entries)).collect())
            .unwrap_or_default();
        // The old catalog's copies of the manifests, if it can still give them.
        let old_manifests: HashMap<ObjectId, Manifest> = store::lock(&self.catalog)
            .snapshots(None)
            .map(|snapshots| snapshots.into_iter().map(|snapshot| (snapshot.id, snapshot.manifest)).collect())
            .unwrap_or_default();
        {
            let mut rebuilt = Catalog::open(&partial)?;
            for (name, size) in self.list("packs")? {
                let old = old_packs.get(&name).map(Vec::as_slice).unwrap_or_default();
                let (entries, problem) = self.entries_to_index(&name, old);
                if !entries.is_empty() {
                    rebuilt.add_pack(&name, size, &entries)?;
                    report.packs += 1;
                    report.blobs += entries.len();
                }
                if let Some(problem) = problem {
                    report.unreadable.push(format!("{name}: {problem}"));
                }
            }
            for (name, _) in self.list("snapshots")? {
                let id =
                    name.strip_prefix("snapshots/").and_then(|n| n.strip_suffix(".json")).and_then(ObjectId::from_hex);
                match id.map(|id| (id, self.read_manifest(&id))) {
                    Some((id, Ok(manifest))) => {
                        rebuilt.add_snapshot(&id, &manifest)?;
                        report.snapshots += 1;
                    }
                    // The catalog keeps a copy of every manifest: when it still encodes
                    // to the snapshot's id, it is the manifest, byte for byte.
                    Some((id, Err(error))) => {
                        match old_manifests.get(&id).map(|manifest| (manifest, self.encode_manifest(manifest))) {
                            Some((manifest, (encoded_id, bytes))) if encoded_id == id => {
                                self.backend.put(&name, &bytes).context("writing", self.backend.describe(&name))?;
                                rebuilt.add_snapshot(&id, manifest)?;
                                report.snapshots += 1;
                                report.manifests_restored.push(format!("{name}: {error}"));
                            }
                            _ => report.unreadable.push(format!("{name}: {error}")),
                        }
                    }
                    None => report.unreadable.push(format!("{name}: not a snapshot manifest name")),
                }
            }
        }
        let mut catalog = store::lock(&self.catalog);
        // The jobs and the activity log are in their own file (`records.sqlite`), which
        // the rebuilt catalog attaches as the old one did: nothing to carry over.
        // Close the old catalog before its files are replaced.
        *catalog = Catalog::in_memory()?;
        let target = self.root.join(CATALOG);
        if let Some(damage) = damage {
            // A damaged catalog is moved aside, never deleted: whoever wants to look
            // into what happened, or to dig out what the store cannot give back, can.
            let stamp = Utc::now().format("%Y%m%dT%H%M%S%.3fZ");
            let aside = self.root.join(format!("{CATALOG}.damaged-{stamp}"));
            for suffix in ["", "-wal", "-shm"] {
                let from = PathBuf::from(format!("{}{suffix}", target.display()));
                let to = PathBuf::from(format!("{}{suffix}", aside.display()));
                match fs::rename(&from, &to) {
                    Ok(()) => {}
                    Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
                    Err(error) => return Err(Error::io("moving aside", from, error)),
                }
            }
            report.moved_aside = Some((aside, damage));
        }
        for suffix in ["-wal", "-shm"] {
            let _ = fs::remove_file(format!("{}{suffix}", target.display()));
        }
        fs::rename(&partial, &target).context("replacing", &target)?;
        *catalog = Catalog::open(&target)?;
        Ok(report)
    }
}

impl Repository {
    /// What `repair` indexes of pack `name`, and what was wrong with it; `old` is what
    /// the old catalog placed in it.
    fn entries_to_index(&self, name: &str, old: &[PackEntry]) -> (Vec<PackEntry>, Option<String>) {
        let bytes = match self.backend.get(name, pack::MAX_PACK_SIZE) {
            Ok(bytes) => bytes,
            Err(error) => {
                let problem = format!(
                    "cannot be read ({error}); {} the old catalog placed in it are kept as they were",
                    counted(old.len(), "blob", "blobs")
                );
                return (old.to_vec(), Some(problem));
            }
        };
        let footer = pack::parse_any_pack(&self.crypto, &bytes);
        let problem = match &footer {
            Ok(entries) if store::pack_id_of_name(name) == Some(ObjectId::of(&bytes)) => {
                return (entries.clone(), None);
            }
            Ok(_) => "its bytes do not match its name".to_owned(),
            Err(error) => error.to_string(),
        };
        // Damaged: keep every blob, from the old catalog or the footer, whose bytes
        // still match its id where it is said to be.
        let mut kept = Vec::new();
        let mut seen = HashSet::new();
        let candidates = old.iter().chain(footer.as_deref().unwrap_or_default());
        for entry in candidates {
            let Some(end) = entry.offset.checked_add(u64::from(entry.length)) else { continue };
            let Some(stored) = usize::try_from(entry.offset)
                .ok()
                .zip(usize::try_from(end).ok())
                .and_then(|(start, end)| bytes.get(start..end))
            else {
                continue;
            };
            if !seen.contains(&entry.id)
                && self.crypto.decode_blob(self.backend.as_ref(), name, entry, stored.to_vec()).is_ok()
            {
                seen.insert(entry.id);
                kept.push(*entry);
            }
        }
        let problem = format!("{problem}; indexed only the {} that verify", counted(kept.len(), "blob", "blobs"));
        (kept, Some(problem))
    }
}

/// `count` and the noun that fits it.
fn counted(count: usize, one: &str, many: &str) -> String {
    format!("{count} {}", if count == 1 { one } else { many })
}

/// What `repair` found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RepairReport {
    /// Packs indexed.
    pub packs: usize,
    /// Blobs indexed.
    pub blobs: usize,
    /// Snapshots recorded.
    pub snapshots: usize,
    /// Objects that could not be read, with why.
    pub unreadable: Vec<String>,
    /// Damaged manifests written anew from the catalog's intact copy, with what was wrong.
    pub manifests_restored: Vec<String>,
    /// Where the old catalog was moved, and why, when it was damaged.
    pub moved_aside: Option<(PathBuf, String)>,
    /// What was saved of the jobs and the activity log, when their file was damaged.
    pub records: Option<records::Salvage>,
}

/// A restore into an environment, as `undo` needs to know it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestoreRecord {
    /// The environment restored into.
    pub env: String,
    /// The snapshot restored.
    pub restored: ObjectId,
    /// The safety snapshot taken of what it overwrote, if one was.
    pub safety: Option<ObjectId>,
    /// When it began changing the environment.
    pub started: DateTime<Utc>,
    /// How far it got.
    pub state: RestoreState,
}

/// How far a recorded restore got.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RestoreState {
    /// It was changing the environment (and may have been stopped while doing so).
    Changing,
    /// It finished.
    Done,
    /// It failed after changing something.
    Failed,
}

/// Where the last restore into `env` is recorded: the name is the environment's bytes
/// in hex, so that any branch name is one safe file name (in an encrypted repository a
/// keyed hash, the record itself sealed).
fn restore_record_name(crypto: &Crypto, env: &str) -> String {
    format!("restores/{}.json", crypto.record_name(env))
}

/// The object name of key file `id`.
fn key_name(id: &str) -> String {
    format!("{KEYS}/{id}")
}

/// A key file as `key list` and `check` see it.
#[derive(Debug, Clone)]
pub struct KeyStatus {
    /// Its object name, `keys/<id>`.
    pub name: String,
    /// The key file, or why it cannot be trusted.
    pub file: Result<KeyFile, String>,
}
