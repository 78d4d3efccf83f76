//! Reading the files, turning serde's errors into `file:line: key: message`, and
//! merging the per-clone override over the shared file.

use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use super::document::Document;
use super::source::{KeyPath, Origin, Segment, Source};
use super::validate::{self, Layer};
use super::{Config, ConfigError, FILE_NAME, Glob, Schedule};

/// The production branch when the file names none.
const DEFAULT_PRODUCTION: &str = "main";

impl Config {
    /// Reads `work_tree/envsnap.toml` and, when `local_override` names a file that
    /// exists, merges it over the shared file (see the module docs for the rules).
    ///
    /// Errors name the file they are about: a missing `envsnap.toml` is
    /// [`ConfigError::NotFound`]; an override that does not exist is no error.
    pub fn load(work_tree: &Path, local_override: Option<&Path>) -> Result<Self, ConfigError> {
        let path = work_tree.join(FILE_NAME);
        let shared = read(&path, work_tree)?.ok_or(ConfigError::NotFound { path })?;
        let mut sources = vec![shared];
        if let Some(path) = local_override {
            sources.extend(read(path, work_tree)?);
        }
        Self::from_sources(sources)
    }

    /// Parses one configuration held in memory; `file` is the name errors show.
    pub fn parse(text: &str, file: &Path) -> Result<Self, ConfigError> {
        Self::from_sources(vec![Source { file: file.to_owned(), text: text.to_owned() }])
    }

    /// Checks each source on its own, merges them in order, then applies defaults.
    pub(super) fn from_sources(sources: Vec<Source>) -> Result<Self, ConfigError> {
        let mut merged: Option<Layer> = None;
        for (index, source) in sources.iter().enumerate() {
            let layer = validate::check(parse_document(source)?, source, index)?;
            merged = Some(match merged {
                Some(base) => overlay(base, layer),
                None => layer,
            });
        }
        assemble(merged.unwrap_or_default(), sources)
    }
}

/// The file at `path`, or `None` when there is none.
fn read(path: &Path, work_tree: &Path) -> Result<Option<Source>, ConfigError> {
    match fs::read_to_string(path) {
        Ok(text) => Ok(Some(Source { file: shown_path(path, work_tree), text })),
        Err(error) if error.kind() == ErrorKind::NotFound => Ok(None),
        Err(source) => Err(ConfigError::Read { path: path.to_owned(), source }),
    }
}

/// How a file is named in errors: relative to the work tree, as the user knows it
/// (`envsnap.toml`, `.git/envsnap.local.toml`), or in full when outside it.
fn shown_path(path: &Path, work_tree: &Path) -> PathBuf {
    path.strip_prefix(work_tree).map_or_else(|_| path.to_owned(), Path::to_path_buf)
}

fn parse_document(source: &Source) -> Result<Document, ConfigError> {
    let deserializer = toml::Deserializer::new(&source.text);
    serde_path_to_error::deserialize(deserializer).map_err(|error| {
        let path: Vec<Option<Segment>> = error
            .path()
            .iter()
            .map(|segment| match segment {
                serde_path_to_error::Segment::Seq { index } => Some(Segment::Index(*index)),
                serde_path_to_error::Segment::Map { key } => Some(Segment::Key(key.clone())),
                serde_path_to_error::Segment::Enum { variant } => Some(Segment::Key(variant.clone())),
                serde_path_to_error::Segment::Unknown => None,
            })
            .collect();
        let error = error.into_inner();
        let (key, message) = explain(path, error.message());
        let line = error.span().map(|span| source.line_at(span.start)).or_else(|| source.line_of(&key));
        ConfigError::Invalid { file: source.file.clone(), line, key: key.to_string(), message }
    })
}

/// Rewrites serde's and toml's messages in the words of a config file (keys and
/// values, not fields and variants) with a hint. `path` holds `None` where serde
/// could not name the segment: a map key, whose name the message gives.
fn explain(mut path: Vec<Option<Segment>>, message: &str) -> (KeyPath, String) {
    let unquoted = |text: &str| text.replace('`', "");
    let message = if let Some((_, expected)) = quoted_prefix(message, "unknown field `") {
        // serde puts the unknown key in the path already.
        format!("unknown key; {}", unquoted(expected).replace("there are no fields", "this table takes no keys"))
    } else if let Some((name, expected)) = quoted_prefix(message, "unknown variant `") {
        if let Some(slot @ None) = path.last_mut() {
            // An enum used as a map key: `[environments] prod = …`.
            *slot = Some(Segment::Key(name.to_owned()));
            format!("unknown key; {}", unquoted(expected))
        } else {
            format!("unknown value `{name}`; {}", unquoted(expected))
        }
    } else if let Some((name, _)) = quoted_prefix(message, "missing field `") {
        path.push(Some(Segment::Key(name.to_owned())));
        "required key is missing; add it".to_owned()
    } else {
        let message =
            message.trim().lines().collect::<Vec<_>>().join("; ").replace("invalid type: ", "wrong type: found ");
        let message = ["u32", "u64", "usize"].iter().fold(message, |message, integer| {
            message.replace(&format!("expected {integer}"), "expected a whole number, 0 or more")
        });
        if path.is_empty() { format!("invalid TOML: {message}") } else { message }
    };
    let mut key = KeyPath::default();
    for segment in path {
        key.push(segment.unwrap_or_else(|| Segment::Key("?".to_owned())));
    }
    (key, message)
}

/// For `` prefix`name`, rest ``: the name and the rest after the comma.
fn quoted_prefix<'a>(message: &'a str, prefix: &str) -> Option<(&'a str, &'a str)> {
    let after = message.strip_prefix(prefix)?;
    let (name, rest) = after.split_once('`')?;
    Some((name, rest.trim_start_matches(',').trim()))
}

/// `over` merged onto `base`: a key `over` gives replaces the whole value in `base`
/// (a table such as `[retention]` included); a mount or service replaces the one of
/// the same kind and name, or is added after the others.
fn overlay(base: Layer, over: Layer) -> Layer {
    let mut mounts = base.mounts;
    overlay_elements(&mut mounts, over.mounts, |mount| &mount.name);
    let mut services = base.services;
    overlay_elements(&mut services, over.services, |service| &service.name);
    Layer {
        production: over.production.or(base.production),
        protected: over.protected.or(base.protected),
        repository: over.repository.or(base.repository),
        admins: over.admins.or(base.admins),
        pause: over.pause.or(base.pause),
        resume: over.resume.or(base.resume),
        environments: over.environments.or(base.environments),
        retention: over.retention.or(base.retention),
        schedule: over.schedule.or(base.schedule),
        mounts,
        services,
    }
}

fn overlay_elements<T>(base: &mut Vec<(T, Origin)>, over: Vec<(T, Origin)>, name: impl Fn(&T) -> &str) {
    for (element, origin) in over {
        match base.iter_mut().find(|(existing, _)| name(existing) == name(&element)) {
            Some(slot) => *slot = (element, origin),
            None => base.push((element, origin)),
        }
    }
}

/// The merged layer with defaults applied, after the one check that needs both
/// files: a name may not be a mount in one and a service in the other.
fn assemble(layer: Layer, sources: Vec<Source>) -> Result<Config, ConfigError> {
    for (service, service_origin) in &layer.services {
        let clash = layer.mounts.iter().find(|(mount, _)| mount.name == service.name);
        if let Some((_, mount_origin)) = clash {
            // Report it in the later file: that is where the clash was introduced.
            let (here, there) = if service_origin.source >= mount_origin.source {
                (service_origin, mount_origin)
            } else {
                (mount_origin, service_origin)
            };
            // Origins index `sources` by construction.
            return Err(sources[here.source].invalid(
                &here.key.key("name"),
                format!(
                    "`{}` is already the name of {} in {}; names must be unique across mounts and services",
                    service.name,
                    there.key,
                    sources[there.source].file.display()
                ),
            ));
        }
    }

    let production = layer.production.unwrap_or_else(|| DEFAULT_PRODUCTION.to_owned());
    let protected = layer.protected.unwrap_or_else(|| vec![Glob::exact(&production)]);
    let schedule = layer.schedule.map(|schedule| Schedule {
        cron: schedule.cron,
        branches: schedule.branches.unwrap_or_else(|| vec![Glob::exact(&production)]),
        live: schedule.live.unwrap_or(true),
    });
    let (mounts, mount_origins) = layer.mounts.into_iter().unzip();
    let (services, service_origins) = layer.services.into_iter().unzip();
    Ok(Config {
        production,
        protected,
        repository: layer.repository,
        admins: layer.admins.unwrap_or_default(),
        pause: layer.pause,
        resume: layer.resume,
        environments: layer.environments.unwrap_or_default(),
        retention: layer.retention,
        schedule,
        mounts,
        mount_origins,
        services,
        service_origins,
        sources,
    })
}
