//! [`ConfigError`]: what is wrong with a configuration, where, and what to do.

use std::path::{Path, PathBuf};

/// A configuration that cannot be used.
///
/// Every message fits on one or two lines and ends with what to do. Errors about a
/// value name the file, the 1-based line and the key path, e.g.
/// `envsnap.toml:7: mount[0].pth: unknown key; expected one of name, path, exclude`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// There is no `envsnap.toml` at the root of the work tree.
    #[error("{}: not found; run `envsnap init` to write a starter configuration", .path.display())]
    NotFound {
        /// The path that was looked for.
        path: PathBuf,
    },

    /// The file exists but could not be read.
    #[error("{}: cannot read: {source}; check that it is a readable text file", .path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why reading failed.
        source: std::io::Error,
    },

    /// The file says something wrong: bad TOML, an unknown key, a value of the wrong
    /// type, or a value that fails a check (a bad name, pattern, cron expression…).
    #[error("{}: {message}", location(.file, *.line, .key))]
    Invalid {
        /// The file, relative to the work tree when inside it.
        file: PathBuf,
        /// The 1-based line of the offending value, when it can be found.
        line: Option<usize>,
        /// The key path, e.g. `mount[1].path`; empty for a TOML syntax error.
        key: String,
        /// What is wrong and what to do about it.
        message: String,
    },

    /// A value refers to `${VAR}` but `VAR` is not set in the environment.
    #[error(
        "{}: environment variable `{variable}` is not set; set it before running envsnap (write `$${{` for a literal `${{`)",
        location(.file, *.line, .key)
    )]
    UnsetVariable {
        /// The file, relative to the work tree when inside it.
        file: PathBuf,
        /// The 1-based line of the value, when it can be found.
        line: Option<usize>,
        /// The key path of the value, e.g. `service[0].url`.
        key: String,
        /// The name of the variable.
        variable: String,
    },
}

/// `file:line: key`, leaving out what is unknown.
fn location(file: &Path, line: Option<usize>, key: &str) -> String {
    let mut location = file.display().to_string();
    if let Some(line) = line {
        location.push(':');
        location.push_str(&line.to_string());
    }
    if !key.is_empty() {
        location.push_str(": ");
        location.push_str(key);
    }
    location
}
