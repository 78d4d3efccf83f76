//! Fixtures for the black-box tests: a git work tree with an envsnap.toml, the binary,
//! and a precise description of a directory tree to compare restores against.

#![allow(dead_code, reason = "each test binary uses a different part of the fixtures")]

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub type TestResult = Result<(), Box<dyn std::error::Error>>;

/// Which kind of repository a test runs on. The safety and fault tests run on both
/// ([`on_both_formats`]), so that what holds of an unencrypted repository is shown to
/// hold of an encrypted one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Format 1: `envsnap init`.
    Plain,
    /// Format 2: `envsnap init --encrypt`, unlocked with [`PASSWORD`].
    Encrypted,
}

/// The password of the tests' encrypted repositories.
pub const PASSWORD: &str = "the tests' password";

/// The cheapest key derivation a key file accepts: a repository that the tests make
/// through the library opens in a millisecond instead of a fifth of a second, which
/// adds up over the hundreds of commands a kill loop runs. Each key file records its
/// own parameters, so the binary derives with these, by the same code.
pub const QUICK_KDF: envsnap::crypto::keyfile::KdfParams =
    envsnap::crypto::keyfile::KdfParams { memory_kib: 8, iterations: 1, parallelism: 1 };

impl Format {
    /// Creates a repository of this format at `store` through the library.
    pub fn init(self, store: &Path) -> Result<bool, envsnap::Error> {
        match self {
            Format::Plain => envsnap::repository::Repository::init(store, Default::default()),
            Format::Encrypted => {
                envsnap::repository::Repository::init_encrypted(store, Default::default(), PASSWORD, QUICK_KDF)
            }
        }
    }

    /// The repository at `store` opened for `access`, unlocked with [`PASSWORD`]
    /// when encrypted.
    pub fn open(
        store: &Path,
        backend: Box<dyn envsnap::store::backend::Backend>,
        access: envsnap::repository::Access,
    ) -> Result<envsnap::repository::Repository, envsnap::Error> {
        let password = &mut || Ok(zeroize::Zeroizing::new(PASSWORD.to_owned()));
        envsnap::repository::Repository::open_with_unlocked(store, backend, access, &mut |_| {}, password)
    }

    /// The password a command is given (in `ENVSNAP_PASSWORD`), if any.
    pub fn password(self) -> Option<&'static str> {
        match self {
            Format::Plain => None,
            Format::Encrypted => Some(PASSWORD),
        }
    }
}

/// A `#[test]` in module `plain` and one in module `encrypted` for each test function
/// named (`fn name(format: Format) -> TestResult`), each calling it with its format:
/// one body, run on both kinds of repository.
#[allow(unused_macros, reason = "only the safety and fault tests run on both formats")]
macro_rules! on_both_formats {
    ($($test:ident),* $(,)?) => {
        mod plain {
            $(#[test]
            fn $test() -> $crate::common::TestResult {
                super::$test($crate::common::Format::Plain)
            })*
        }
        mod encrypted {
            $(#[test]
            fn $test() -> $crate::common::TestResult {
                super::$test($crate::common::Format::Encrypted)
            })*
        }
    };
}
#[allow(unused_imports, reason = "only the safety and fault tests run on both formats")]
pub(crate) use on_both_formats;

/// A git work tree with a repository of its own, removed when dropped.
pub struct Project {
    pub dir: tempfile::TempDir,
    pub repository: PathBuf,
    /// The password every command is given in `ENVSNAP_PASSWORD`, for an encrypted
    /// repository; none of the password sources is passed on when `None`.
    pub password: Option<String>,
}

impl Project {
    /// A work tree on branch `main` with one commit and the given envsnap.toml.
    pub fn new(config: &str) -> Result<Self, Box<dyn std::error::Error>> {
        let dir = tempfile::Builder::new().prefix("envsnap-test-").tempdir()?;
        git(dir.path(), &["init", "-q", "-b", "main"])?;
        git(dir.path(), &["commit", "-q", "--allow-empty", "-m", "init"])?;
        fs::write(dir.path().join("envsnap.toml"), config)?;
        let repository = dir.path().join("store");
        Ok(Project { dir, repository, password: None })
    }

    /// The same, every command given `password` (see [`Project::password`]).
    pub fn with_password(config: &str, password: &str) -> Result<Self, Box<dyn std::error::Error>> {
        Ok(Project { password: Some(password.to_owned()), ..Project::new(config)? })
    }

    /// envsnap in the work tree, with this project's repository and password.
    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_envsnap"));
        command.args(args).current_dir(self.root()).env("ENVSNAP_REPOSITORY", &self.repository);
        for source in ["ENVSNAP_PASSWORD", "ENVSNAP_PASSWORD_FILE", "ENVSNAP_PASSWORD_COMMAND"] {
            command.env_remove(source);
        }
        if let Some(password) = &self.password {
            command.env("ENVSNAP_PASSWORD", password);
        }
        command
    }

    /// The work tree.
    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    /// Runs envsnap in the work tree.
    pub fn run(&self, args: &[&str]) -> Result<Output, std::io::Error> {
        self.command(args).output()
    }

    /// Runs envsnap in the work tree with the environment variables `vars` set.
    pub fn run_with_env(&self, args: &[&str], vars: &[(&str, &OsStr)]) -> Result<Output, std::io::Error> {
        self.command(args).envs(vars.iter().copied()).output()
    }

    /// Starts envsnap in the work tree with the environment variables `vars` set, its
    /// stderr piped, and returns at once.
    pub fn start(&self, args: &[&str], vars: &[(&str, &OsStr)]) -> Result<std::process::Child, std::io::Error> {
        self.command(args)
            .envs(vars.iter().copied())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
    }

    /// Runs envsnap in the work tree with `PATH` set to `path` (to hide or replace the
    /// tools it runs).
    pub fn run_with_path(&self, args: &[&str], path: &Path) -> Result<Output, std::io::Error> {
        self.run_with_env(args, &[("PATH", path.as_os_str())])
    }

    /// Runs `envsnap backup` (with `PATH` set to `path`, if given), expects it to fail
    /// with exit code 1 and record no snapshot; returns its stderr.
    pub fn failed_backup(&self, path: Option<&Path>) -> Result<String, Box<dyn std::error::Error>> {
        let output = match path {
            Some(path) => self.run_with_path(&["backup"], path)?,
            None => self.run(&["backup"])?,
        };
        let stderr = String::from_utf8(output.stderr)?;
        assert_eq!(output.status.code(), Some(1), "{stderr}");
        assert!(self.snapshots()?.is_empty(), "no snapshot is recorded: {stderr}");
        Ok(stderr)
    }

    /// Restores snapshot `id` of a service `db` whose database one other session is
    /// connected to: the plan and the restore both say that session is ended.
    pub fn restore_ending_one_session(&self, id: &str) -> TestResult {
        let plan = self.ok(&["restore", &id[..12], "--dry-run"])?;
        assert!(plan.contains("the 1 other session connected to it now would be ended"), "{plan}");
        let output = self.run(&["restore", &id[..12], "--yes"])?;
        let stderr = String::from_utf8(output.stderr)?;
        assert!(output.status.success(), "{stderr}");
        assert!(stderr.contains("service db: ending the 1 other session connected to 127.0.0.1"), "{stderr}");
        Ok(())
    }

    /// Runs envsnap and fails unless it succeeds; returns its stdout.
    pub fn ok(&self, args: &[&str]) -> Result<String, Box<dyn std::error::Error>> {
        let output = self.run(args)?;
        if !output.status.success() {
            return Err(format!(
                "envsnap {args:?} failed ({}):\n{}{}",
                output.status,
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            )
            .into());
        }
        Ok(String::from_utf8(output.stdout)?)
    }

    /// Runs envsnap, expects it to fail with `code`; returns its stderr.
    pub fn fails(&self, args: &[&str], code: i32) -> Result<String, Box<dyn std::error::Error>> {
        let output = self.run(args)?;
        let stderr = String::from_utf8(output.stderr)?;
        if output.status.code() != Some(code) {
            return Err(format!("envsnap {args:?}: expected exit {code}, got {}:\n{stderr}", output.status).into());
        }
        Ok(stderr)
    }

    /// Takes a snapshot; returns its full id.
    pub fn backup(&self, extra: &[&str]) -> Result<String, Box<dyn std::error::Error>> {
        let mut args = vec!["backup"];
        args.extend_from_slice(extra);
        Ok(self.ok(&args)?.trim().to_owned())
    }

    /// The complete snapshots of `list --all --json`, parsed. (`list` also shows
    /// backups that failed, as `failed`, and those still queued or running.)
    pub fn snapshots(&self) -> Result<Vec<serde_json::Value>, Box<dyn std::error::Error>> {
        let text = self.ok(&["list", "--all", "--json"])?;
        let listed: Vec<serde_json::Value> = serde_json::from_str(&text)?;
        Ok(listed.into_iter().filter(|entry| entry["state"] == "complete").collect())
    }
}

/// Runs git with a fixed identity.
pub fn git(dir: &Path, args: &[&str]) -> Result<String, Box<dyn std::error::Error>> {
    let output = Command::new("git")
        .args(["-c", "user.name=envsnap test", "-c", "user.email=test@example.invalid"])
        .args(args)
        .current_dir(dir)
        .output()?;
    if !output.status.success() {
        return Err(format!("git {args:?}: {}", String::from_utf8_lossy(&output.stderr)).into());
    }
    Ok(String::from_utf8(output.stdout)?)
}

/// Everything a restore must reproduce about one path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    File { mode: u32, mtime: (i64, i64), content: blake3::Hash, size: u64 },
    Dir { mode: u32, mtime: (i64, i64) },
    Symlink { target: PathBuf },
}

/// Every path of a tree, and the groups of paths that are hard links of one another.
pub type Description = (BTreeMap<PathBuf, Entry>, Vec<Vec<PathBuf>>);

/// Describes every path under `root` (root itself left out), and which paths are
/// hard links of one another (groups of two or more, by relative path).
pub fn describe(root: &Path) -> Result<Description, std::io::Error> {
    let mut entries = BTreeMap::new();
    let mut inodes: BTreeMap<u64, Vec<PathBuf>> = BTreeMap::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in fs::read_dir(&dir)? {
            let entry = entry?;
            let path = entry.path();
            let relative = path.strip_prefix(root).map_err(std::io::Error::other)?.to_path_buf();
            let metadata = fs::symlink_metadata(&path)?;
            let mode = metadata.mode() & 0o7777;
            let mtime = (metadata.mtime(), metadata.mtime_nsec());
            let described = if metadata.file_type().is_symlink() {
                Entry::Symlink { target: fs::read_link(&path)? }
            } else if metadata.is_dir() {
                pending.push(path.clone());
                Entry::Dir { mode, mtime }
            } else {
                if metadata.nlink() > 1 {
                    inodes.entry(metadata.ino()).or_default().push(relative.clone());
                }
                Entry::File { mode, mtime, content: blake3::hash(&fs::read(&path)?), size: metadata.len() }
            };
            entries.insert(relative, described);
        }
    }
    let mut links: Vec<Vec<PathBuf>> = inodes.into_values().filter(|group| group.len() > 1).collect();
    for group in &mut links {
        group.sort();
    }
    links.sort();
    Ok((entries, links))
}

/// Fails with the first difference between two descriptions.
pub fn assert_same_tree(expected: &Path, actual: &Path) -> TestResult {
    let (want, want_links) = describe(expected)?;
    let (got, got_links) = describe(actual)?;
    for (path, entry) in &want {
        match got.get(path) {
            None => return Err(format!("{} is missing from the restore", path.display()).into()),
            Some(found) if found != entry => {
                return Err(format!("{} differs:\n  expected {entry:?}\n  restored {found:?}", path.display()).into());
            }
            Some(_) => {}
        }
    }
    if let Some(extra) = got.keys().find(|path| !want.contains_key(*path)) {
        return Err(format!("{} was restored but is not in the source", extra.display()).into());
    }
    if want_links != got_links {
        return Err(format!("hard links differ: expected {want_links:?}, restored {got_links:?}").into());
    }
    Ok(())
}

/// Deterministic bytes that do not compress.
pub fn noise(seed: u64, length: usize) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..length)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect()
}

/// A directory for `PATH` holding links to the given programs of `/usr/bin` only, and
/// the shell scripts given as (name, body).
pub fn bin_dir(links: &[&str], scripts: &[(&str, &str)]) -> Result<tempfile::TempDir, std::io::Error> {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::Builder::new().prefix("envsnap-bin-").tempdir()?;
    for program in links {
        std::os::unix::fs::symlink(Path::new("/usr/bin").join(program), dir.path().join(program))?;
    }
    for (name, text) in scripts {
        let path = dir.path().join(name);
        fs::write(&path, format!("#!/bin/sh\n{text}\n"))?;
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755))?;
    }
    Ok(dir)
}

/// The processes that descend from `pid` (its children, theirs, …), from /proc.
pub fn descendants(pid: u32) -> Vec<u32> {
    let mut parents: Vec<(u32, u32)> = Vec::new();
    for entry in fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(child) = entry.file_name().to_str().and_then(|name| name.parse::<u32>().ok()) else { continue };
        if let Some((_, parent)) = process_state(child) {
            parents.push((child, parent));
        }
    }
    let mut found = vec![pid];
    let mut index = 0;
    while index < found.len() {
        let parent = found[index];
        found.extend(parents.iter().filter(|(_, of)| *of == parent).map(|(child, _)| *child));
        index += 1;
    }
    found.remove(0);
    found
}

/// Whether process `pid` runs (exists and is not a zombie waiting to be reaped).
pub fn running(pid: u32) -> bool {
    process_state(pid).is_some_and(|(state, _)| state != 'Z' && state != 'X')
}

/// The state letter and parent of process `pid`, from /proc/PID/stat.
fn process_state(pid: u32) -> Option<(char, u32)> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // "pid (name) state ppid …": the name may hold spaces and parentheses.
    let rest = &stat[stat.rfind(')')? + 2..];
    let mut fields = rest.split(' ');
    let state = fields.next()?.chars().next()?;
    let parent = fields.next()?.parse().ok()?;
    Some((state, parent))
}

/// Sends `signal` (e.g. `-TERM`) to process `pid`.
pub fn signal(pid: u32, signal: &str) -> TestResult {
    let status = Command::new("kill").args([signal, &pid.to_string()]).status()?;
    if !status.success() {
        return Err(format!("kill {signal} {pid} failed").into());
    }
    Ok(())
}

/// Waits for `child` to exit, at most `seconds`; kills it if it is still running then.
pub fn wait_at_most(child: &mut std::process::Child, seconds: u64) -> Result<Output, Box<dyn std::error::Error>> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(seconds);
    while child.try_wait()?.is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("still running after {seconds} s").into());
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let mut stderr = Vec::new();
    if let Some(mut pipe) = child.stderr.take() {
        std::io::Read::read_to_end(&mut pipe, &mut stderr)?;
    }
    Ok(Output { status: child.wait()?, stdout: Vec::new(), stderr })
}
