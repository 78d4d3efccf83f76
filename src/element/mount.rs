//! Mounts: directory trees of files, with gitignore-style excludes.

use std::path::{Path, PathBuf};

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
}
