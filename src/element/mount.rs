//! Mounts: directory trees of files, with gitignore-style excludes.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use ignore::gitignore::{Gitignore, GitignoreBuilder};

use crate::error::{Error, Result};

/// A mount as a backup or in-place restore sees it: resolved for one environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// The mount's name in envsnap.toml.
    pub name: String,
    /// Its directory, absolute.
    pub path: PathBuf,
    /// Patterns, in gitignore syntax, of what is left out.
    pub exclude: Vec<String>,
}

/// Decides which paths of a mount are left out.
#[derive(Debug, Clone)]
pub struct Excludes(Gitignore);

impl Mount {
    /// The compiled exclude patterns; an invalid pattern is an error naming it.
    pub fn excludes(&self) -> Result<Excludes> {
        let mut builder = GitignoreBuilder::new(&self.path);
        for pattern in &self.exclude {
            builder.add_line(None, pattern).map_err(|error| Error::InvalidExclude {
                mount: self.name.clone(),
                pattern: pattern.clone(),
                detail: error.to_string(),
            })?;
        }
        let matcher = builder.build().map_err(|error| Error::InvalidExclude {
            mount: self.name.clone(),
            pattern: self.exclude.join(" "),
            detail: error.to_string(),
        })?;
        Ok(Excludes(matcher))
    }
}

impl Excludes {
    /// Nothing excluded.
    pub fn none() -> Self {
        Excludes(Gitignore::empty())
    }

    /// True when `relative` (a path inside the mount) is left out. Callers walk from
    /// the top and skip excluded directories, so parents need not be matched.
    pub fn is_excluded(&self, relative: &Path, is_dir: bool) -> bool {
        self.0.matched(relative, is_dir).is_ignore()
    }
}

/// The bytes of the regular files under `root` that `excludes` leaves in: what a
/// backup of it will read. An estimate for progress, not a figure to keep: what cannot
/// be read is passed over (the backup itself will say so), and the tree may change as
/// it is counted. Gives up, returning `None`, as soon as `stop` is set.
pub fn scan_size(root: &Path, excludes: &Excludes, stop: &AtomicBool) -> Option<u64> {
    let mut total = 0u64;
    let mut pending = vec![PathBuf::new()];
    while let Some(relative) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(root.join(&relative)) else { continue };
        for entry in entries.flatten() {
            if stop.load(Ordering::Relaxed) {
                return None;
            }
            let Ok(file_type) = entry.file_type() else { continue };
            let path = relative.join(entry.file_name());
            if excludes.is_excluded(&path, file_type.is_dir()) {
                continue;
            }
            if file_type.is_dir() {
                pending.push(path);
            } else if file_type.is_file() {
                total += entry.metadata().map_or(0, |metadata| metadata.len());
            }
        }
    }
    Some(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gitignore_semantics() -> Result<()> {
        let mount = Mount {
            name: "uploads".into(),
            path: PathBuf::from("/srv/uploads"),
            exclude: vec!["styles/".into(), "*.tmp".into(), "/top-only".into(), "!keep.tmp".into()],
        };
        let excludes = mount.excludes()?;
        assert!(excludes.is_excluded(Path::new("styles"), true));
        assert!(excludes.is_excluded(Path::new("a/b/styles"), true));
        assert!(!excludes.is_excluded(Path::new("styles"), false), "a trailing slash matches directories only");
        assert!(excludes.is_excluded(Path::new("x/y.tmp"), false));
        assert!(!excludes.is_excluded(Path::new("x/keep.tmp"), false));
        assert!(excludes.is_excluded(Path::new("top-only"), false));
        assert!(!excludes.is_excluded(Path::new("sub/top-only"), false));
        Ok(())
    }

    #[test]
    fn scan_counts_the_bytes_a_backup_reads() -> std::result::Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        std::fs::create_dir_all(dir.path().join("a/styles"))?;
        std::fs::write(dir.path().join("a/one"), [1u8; 1000])?;
        std::fs::write(dir.path().join("two"), [2u8; 234])?;
        std::fs::write(dir.path().join("a/styles/left-out.css"), [3u8; 5000])?;
        std::fs::write(dir.path().join("skip.tmp"), [4u8; 7000])?;
        std::os::unix::fs::symlink("two", dir.path().join("link"))?;
        let mount =
            Mount { name: "data".into(), path: dir.path().to_owned(), exclude: vec!["styles/".into(), "*.tmp".into()] };
        let excludes = mount.excludes()?;
        assert_eq!(scan_size(dir.path(), &excludes, &AtomicBool::new(false)), Some(1234));
        assert_eq!(scan_size(dir.path(), &excludes, &AtomicBool::new(true)), None, "stopped at once");
        Ok(())
    }
}
