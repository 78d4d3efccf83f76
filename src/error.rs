//! The library's error type.
//!
//! Every variant carries the path, id, branch or element involved, and its message
//! ends with what the user can do about it: the binary prints `Display` as is.

use std::io;
use std::path::PathBuf;

use crate::config::ConfigError;

/// Everything that can go wrong in envsnap.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file system operation failed.
    #[error("{action} {}: {source}", path.display())]
    Io {
        /// What was being done, e.g. "reading".
        action: &'static str,
        /// The file involved.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },

    /// The storage that holds the repository is full.
    #[error(
        "no space left while writing {}: nothing was recorded and existing snapshots are intact; \
         free some space and run the command again",
        path.display()
    )]
    StorageFull {
        /// The file being written.
        path: PathBuf,
    },

    /// There is no repository where one was expected.
    #[error("no envsnap repository at {}: run `envsnap init` first", path.display())]
    RepositoryMissing {
        /// Where the repository was looked for.
        path: PathBuf,
    },

    /// The repository's `config.json` cannot be read as one. It holds only the format
    /// version and the chunk sizes, which no stored object depends on for reading, so
    /// writing it anew loses nothing; `repair` cannot, as it needs the config to open.
    #[error(
        "the repository's config {} is damaged: {detail}. The snapshots do not depend on it: it holds only \
         the format version and the chunk sizes. Move it aside and write it anew, e.g. \
         `mv '{path}' '{path}.damaged' && echo '{replacement}' > '{path}'` (the default chunk sizes: if the \
         repository was made with `init --chunker-params`, give those, so that new backups deduplicate \
         against the old ones), then run `envsnap check`",
        path.display(),
        path = path.display()
    )]
    ConfigDamaged {
        /// The config file.
        path: PathBuf,
        /// How it is damaged.
        detail: String,
        /// A config that works, in JSON.
        replacement: String,
    },

    /// The repository was written by a newer envsnap.
    #[error(
        "the repository at {} has format version {found}, but this envsnap reads up to version {supported}: \
         upgrade envsnap to use it",
        path.display()
    )]
    FormatTooNew {
        /// The repository or catalog file.
        path: PathBuf,
        /// The version found on disk.
        found: u32,
        /// The newest version this build understands.
        supported: u32,
    },

    /// Stored data does not match what it should be.
    #[error("{what} is damaged: {detail}; run `envsnap check --read-data` to see what is affected")]
    Corrupt {
        /// The object, pack or file that is damaged.
        what: String,
        /// How it is damaged.
        detail: String,
    },

    /// A chunk that a snapshot needs is not in the repository's index.
    #[error(
        "chunk {id} is missing from the repository; run `envsnap repair` to rebuild the index, \
         then `envsnap check`"
    )]
    ChunkMissing {
        /// The chunk id, in hex.
        id: String,
    },

    /// No snapshot matches the id given.
    #[error("no snapshot matches `{id}`{scope}: run `envsnap list --all` to see the snapshots")]
    SnapshotNotFound {
        /// The id, prefix or `latest` as given.
        id: String,
        /// Where it was looked for, e.g. " in environment main", or empty.
        scope: String,
    },

    /// A manual snapshot would take an environment past its `manual_limit`.
    #[error(
        "{env} ({env_type}) is at its limit of manual snapshots ({limit}): delete one first \
         (the oldest is {oldest}, taken {oldest_created}: `envsnap delete {oldest}`), or set \
         `manual_over_limit = \"drop-oldest\"` under [retention] in envsnap.toml"
    )]
    ManualLimit {
        /// The environment.
        env: String,
        /// Its type, which sets the limit.
        env_type: crate::config::EnvironmentType,
        /// The limit.
        limit: u32,
        /// The oldest manual snapshot's short id.
        oldest: String,
        /// When that was taken.
        oldest_created: String,
    },

    /// A manual snapshot would take an environment past its `manual_limit`, and every
    /// manual snapshot it has is pinned, so none can be deleted to make room.
    #[error(
        "{env} ({env_type}) is at its limit of manual snapshots ({limit}), and all of them are pinned: \
         unpin one (the oldest is {oldest}: `envsnap unpin {oldest}`, then `envsnap delete {oldest}`), or raise \
         `manual_limit.{env_type}` under [retention] in envsnap.toml"
    )]
    ManualLimitPinned {
        /// The environment.
        env: String,
        /// Its type, which sets the limit.
        env_type: crate::config::EnvironmentType,
        /// The limit.
        limit: u32,
        /// The oldest pinned manual snapshot's short id.
        oldest: String,
    },

    /// A pinned snapshot was to be deleted.
    #[error("snapshot {id} is pinned, to be kept until unpinned: run `envsnap unpin {id}` first if it is to go")]
    Pinned {
        /// The snapshot's short id.
        id: String,
    },

    /// An id prefix matches more than one snapshot.
    #[error("`{prefix}` matches {} snapshots ({}): give more characters of the id", candidates.len(), candidates.join(", "))]
    AmbiguousId {
        /// The prefix as given.
        prefix: String,
        /// The short ids it matches.
        candidates: Vec<String>,
    },

    /// An id that is not a hex prefix of at least four characters.
    #[error("`{id}` is not a snapshot id: give at least 4 hex characters of an id, or `latest`")]
    InvalidId {
        /// The id as given.
        id: String,
    },

    /// A mount's directory does not exist.
    #[error(
        "mount `{name}`: {} does not exist; create it or fix `path` in envsnap.toml",
        path.display()
    )]
    MountMissing {
        /// The mount's name.
        name: String,
        /// Its resolved path.
        path: PathBuf,
    },

    /// An element name that the configuration or snapshot does not have.
    #[error("no element named `{name}`{context}; elements: {}", known.join(", "))]
    UnknownElement {
        /// The name given.
        name: String,
        /// Where it was looked for.
        context: String,
        /// The names that exist.
        known: Vec<String>,
    },

    /// An exclude pattern that is not valid gitignore syntax.
    #[error(
        "mount `{mount}`: exclude pattern `{pattern}` is not valid gitignore syntax ({detail}); fix it in envsnap.toml"
    )]
    InvalidExclude {
        /// The mount's name.
        mount: String,
        /// The pattern.
        pattern: String,
        /// What is wrong with it.
        detail: String,
    },

    /// The thread that writes packs stopped; the error that stopped it is reported instead
    /// whenever it is known.
    #[error("the pack writer stopped unexpectedly; nothing was recorded; run the command again")]
    PackWriterStopped,

    /// A service of a type this build cannot capture yet.
    #[error(
        "service `{name}`: type `{kind}` is not supported by this envsnap yet; capture it with type = \"command\" and your own dump and restore commands"
    )]
    ServiceUnsupported {
        /// The service's name.
        name: String,
        /// Its type.
        kind: String,
    },

    /// Capturing or restoring a service failed.
    #[error("service `{name}` ({address}): {detail}")]
    ServiceFailed {
        /// The service's name.
        name: String,
        /// Where it is, without secrets.
        address: String,
        /// What went wrong, with the tool's own message.
        detail: String,
    },

    /// The `pause` or `resume` command of envsnap.toml failed.
    #[error("the {which} command `{command}` {detail}")]
    PauseFailed {
        /// `pause` or `resume`.
        which: &'static str,
        /// The command.
        command: String,
        /// What happened and what to do.
        detail: String,
    },

    /// Nothing to snapshot.
    #[error("envsnap.toml configures no elements: add a [[mount]] (or [[service]]) entry, then run the backup again")]
    NoElements,

    /// The configuration is wrong.
    #[error(transparent)]
    Config(#[from] ConfigError),

    /// A git operation failed.
    #[error("git: {message}")]
    Git {
        /// What went wrong, and what to do.
        message: String,
    },

    /// A restore would have written outside its target, or through a symlink.
    #[error("refusing to restore {}: {reason}", path.display())]
    UnsafePath {
        /// The path as it would have been written.
        path: PathBuf,
        /// Why it was refused.
        reason: String,
    },

    /// Some files of a restore could not be written from damaged or missing data.
    #[error(
        "{} file(s) could not be restored because their data is damaged, e.g. {}: {first_error}; \
         the other files were restored; run `envsnap check --read-data` for details",
        files.len(), files.first().map(|p| p.display().to_string()).unwrap_or_default()
    )]
    RestoreIncomplete {
        /// The files left incomplete.
        files: Vec<PathBuf>,
        /// The first error met.
        first_error: String,
    },

    /// A restore in place refused before changing anything: some of the data it would
    /// write is damaged or missing, and it would have replaced intact live files.
    #[error(
        "refusing to restore: {} file(s) of the snapshot cannot be restored in full, e.g. {}: {first_error}; \
         nothing was changed; run `envsnap check --read-data` for details, or write the rest elsewhere \
         with `envsnap restore ID --to DIR`",
        files.len(), files.first().map(|p| p.display().to_string()).unwrap_or_default()
    )]
    RestoreRefused {
        /// The files that cannot be restored in full.
        files: Vec<PathBuf>,
        /// The first error met.
        first_error: String,
    },

    /// The catalog database failed.
    #[error("catalog {}: {source}; if it is damaged, run `envsnap repair` to rebuild it from the store", path.display())]
    Catalog {
        /// The catalog file.
        path: PathBuf,
        /// The SQLite error.
        source: rusqlite::Error,
    },

    /// A directory whose listing is larger than a stored tree may be.
    #[error(
        "{}: its {entries} entries would take {bytes} bytes to list, more than the 64 MiB a snapshot keeps for one \
         directory; split it into subdirectories, or leave it out with `exclude` in envsnap.toml",
        path.display()
    )]
    DirectoryTooLarge {
        /// The directory.
        path: PathBuf,
        /// Its entries.
        entries: usize,
        /// The size its tree would have.
        bytes: usize,
    },

    /// The file of the jobs and the activity log is damaged.
    #[error(
        "{}: the jobs and the activity log are damaged ({detail}); run `envsnap repair`, which keeps every \
         entry it can still read and moves the damaged file aside",
        path.display()
    )]
    RecordsDamaged {
        /// The records file.
        path: PathBuf,
        /// What SQLite found wrong.
        detail: String,
    },

    /// A service's URL that its adapter cannot use.
    #[error("service `{name}`: its url {detail}; fix `url` in envsnap.toml")]
    ServiceUrl {
        /// The service's name.
        name: String,
        /// What is wrong with the URL, without echoing a password.
        detail: String,
    },

    /// An export whose file name does not say a format the element has.
    #[error(
        "element `{element}` cannot be exported as {}: name the file with one of {}",
        path.display(), fits.join(", ")
    )]
    ExportFormat {
        /// The element's name.
        element: String,
        /// The file asked for.
        path: PathBuf,
        /// The extensions that fit the element, with their dots.
        fits: Vec<String>,
    },

    /// An export would overwrite a file.
    #[error("{} already exists: remove it or export to another path", path.display())]
    ExportExists {
        /// The file asked for.
        path: PathBuf,
    },

    /// This machine cannot mount FUSE file systems.
    #[error(
        "FUSE is not available on this machine: {detail}; install it (Debian, Ubuntu: `apt-get install fuse3`; \
         Fedora: `dnf install fuse3`) and make sure /dev/fuse exists (`modprobe fuse`)"
    )]
    FuseUnavailable {
        /// What is missing.
        detail: String,
    },

    /// An encrypted repository was opened without a password to unlock it.
    #[error(
        "the repository at {} is encrypted and no password was given: pass --password-file FILE, or set \
         ENVSNAP_PASSWORD_FILE, ENVSNAP_PASSWORD_COMMAND or ENVSNAP_PASSWORD",
        path.display()
    )]
    PasswordNeeded {
        /// The repository.
        path: PathBuf,
    },

    /// The password could not be read from where it was to come from.
    #[error("cannot read the repository's password from {source_name}: {detail}")]
    PasswordUnreadable {
        /// Where it was to come from, e.g. "ENVSNAP_PASSWORD_COMMAND".
        source_name: String,
        /// What went wrong.
        detail: String,
    },

    /// No key of an encrypted repository opens with the password given.
    #[error(
        "wrong password: no key in {} opens with it; check the password (and which of --password-file, \
         ENVSNAP_PASSWORD_FILE, ENVSNAP_PASSWORD_COMMAND, ENVSNAP_PASSWORD gave it){damaged}",
        path.display()
    )]
    PasswordWrong {
        /// The repository's keys folder.
        path: PathBuf,
        /// Key files that could not be read, if any, said after a `; `.
        damaged: String,
    },

    /// The key in use is write-only and the command needs to read snapshots.
    #[error(
        "the key in use is write-only: it can add snapshots but cannot {action}; use the password of a read key \
         (`envsnap key list` shows the keys)"
    )]
    WriteOnlyKey {
        /// What was refused, e.g. "read snapshot 1a2b3c4d5e6f".
        action: String,
    },

    /// A key command on a repository that has no keys.
    #[error("the repository at {} is not encrypted: it has no keys (`envsnap init --encrypt` makes one that is)", path.display())]
    NotEncrypted {
        /// The repository.
        path: PathBuf,
    },

    /// No key has the id given.
    #[error("no key `{id}` in the repository: `envsnap key list` shows the keys")]
    KeyNotFound {
        /// The id as given.
        id: String,
    },

    /// Removing this key would leave no key that can read the repository.
    #[error(
        "key {id} is the repository's last read key: without it nothing could be restored; add another with \
         `envsnap key add` first"
    )]
    LastReadKey {
        /// The key.
        id: String,
    },

    /// A directory where snapshots cannot be mounted, or mounting there failed.
    #[error("cannot mount the snapshots at {}: {problem}", path.display())]
    MountPoint {
        /// The mount point as given.
        path: PathBuf,
        /// What is wrong, and what to do.
        problem: String,
    },
}

/// The library's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Wraps an I/O error with the action and path; a full disk becomes [`Error::StorageFull`].
    pub fn io(action: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        let path = path.into();
        if source.raw_os_error() == Some(libc::ENOSPC) || source.raw_os_error() == Some(libc::EDQUOT) {
            return Error::StorageFull { path };
        }
        Error::Io { action, path, source }
    }
}

/// Attaches an action and a path to I/O results.
pub(crate) trait IoContext<T> {
    /// Converts the error into [`Error::Io`] naming `action` and `path`.
    fn context(self, action: &'static str, path: impl Into<PathBuf>) -> Result<T>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn context(self, action: &'static str, path: impl Into<PathBuf>) -> Result<T> {
        self.map_err(|source| Error::io(action, path, source))
    }
}
