//! The checks one file must pass on its own, turning a [`Document`] into a
//! [`Layer`] of typed values that each remember where they were written.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use super::cron::Cron;
use super::document::{
    Document, EnvironmentsTable, MountTable, RetentionTable, RulesTable, ScheduleTable, ServiceTable,
};
use super::source::{KeyPath, Origin, Source};
use super::{
    ConfigError, EnvironmentRule, EnvironmentType, Glob, Mount, Retention, RetentionPreset, Service, ServiceAccess,
    ServiceKind, interpolate,
};
use crate::retention::{KeepRules, Policy};

/// What one file says, checked. Keys the file leaves out are `None`, so that an
/// override changes only what it names.
#[derive(Debug, Default)]
pub(super) struct Layer {
    pub(super) production: Option<String>,
    pub(super) protected: Option<Vec<Glob>>,
    pub(super) repository: Option<PathBuf>,
    pub(super) admins: Option<Vec<String>>,
    pub(super) pause: Option<(String, Origin)>,
    pub(super) resume: Option<(String, Origin)>,
    pub(super) environments: Option<Vec<EnvironmentRule>>,
    pub(super) retention: Option<Retention>,
    pub(super) schedule: Option<ScheduleLayer>,
    pub(super) mounts: Vec<(Mount, Origin)>,
    pub(super) services: Vec<(Service, Origin)>,
}

/// `[schedule]` before defaults: `branches` falls back to the production branch,
/// which only the merged configuration knows.
#[derive(Debug)]
pub(super) struct ScheduleLayer {
    pub(super) cron: Cron,
    pub(super) branches: Option<Vec<Glob>>,
    pub(super) live: Option<bool>,
}

/// The extension of a command service's dump when none is given.
const DEFAULT_EXTENSION: &str = "dump";

/// Checks `document`, read from `source`, the `source_index`-th file of the config.
pub(super) fn check(document: Document, source: &Source, source_index: usize) -> Result<Layer, ConfigError> {
    let checker = Checker { source, source_index };
    checker.layer(document)
}

struct Checker<'a> {
    source: &'a Source,
    source_index: usize,
}

impl Checker<'_> {
    fn layer(&self, document: Document) -> Result<Layer, ConfigError> {
        let Document {
            production,
            protected,
            repository,
            admins,
            pause,
            resume,
            environments,
            retention,
            schedule,
            mount,
            service,
        } = document;
        if let Some(production) = &production {
            self.production(production)?;
        }
        let protected = protected.map(|patterns| self.globs(&KeyPath::top("protected"), &patterns)).transpose()?;
        if repository.as_ref().is_some_and(|path| path.as_os_str().is_empty()) {
            return Err(self.fail(
                &KeyPath::top("repository"),
                "is empty; give a directory, or remove the key to keep snapshots in .git/envsnap/",
            ));
        }
        if let Some(admins) = &admins {
            for (index, admin) in admins.iter().enumerate() {
                if admin.trim().is_empty() {
                    return Err(self.fail(
                        &KeyPath::top("admins").index(index),
                        "is empty; write a user name or email, or remove it",
                    ));
                }
            }
        }
        let pause = pause.map(|command| self.command(KeyPath::top("pause"), command)).transpose()?;
        let resume = resume.map(|command| self.command(KeyPath::top("resume"), command)).transpose()?;
        let environments = environments.map(|table| self.environments(table)).transpose()?;
        let retention = retention.map(|table| self.retention(table)).transpose()?;
        let schedule = schedule.map(|table| self.schedule(table)).transpose()?;

        let mut names = HashMap::new();
        let mut mounts = Vec::with_capacity(mount.len());
        for (index, table) in mount.into_iter().enumerate() {
            let key = KeyPath::top("mount").index(index);
            self.element_name(&key, &table.name, &mut names)?;
            let mount = self.mount(&key, table)?;
            if let Some((other, _)) =
                mounts.iter().find(|(other, _): &&(Mount, Origin)| overlap(&mount.path, &other.path))
            {
                return Err(self.fail(
                    &key.key("path"),
                    format!(
                        "`{}` overlaps mount `{}` (path = \"{}\"): a restore of one would write through the \
                         other; give each mount a directory of its own, neither inside the other",
                        mount.path, other.name, other.path
                    ),
                ));
            }
            mounts.push((mount, self.origin(key)));
        }
        let mut services = Vec::with_capacity(service.len());
        for (index, table) in service.into_iter().enumerate() {
            let key = KeyPath::top("service").index(index);
            self.element_name(&key, &table.name, &mut names)?;
            services.push((self.service(&key, table)?, self.origin(key)));
        }

        Ok(Layer {
            production,
            protected,
            repository,
            admins,
            pause,
            resume,
            environments,
            retention,
            schedule,
            mounts,
            services,
        })
    }

    fn fail(&self, key: &KeyPath, message: impl Into<String>) -> ConfigError {
        self.source.invalid(key, message)
    }

    fn origin(&self, key: KeyPath) -> Origin {
        Origin { source: self.source_index, key }
    }

    fn production(&self, production: &str) -> Result<(), ConfigError> {
        let key = KeyPath::top("production");
        if production.contains(['*', '?']) {
            return Err(self.fail(
                &key,
                "must name one branch, not a pattern; list patterns under `protected` or `[environments]`",
            ));
        }
        Glob::new(production)
            .map(drop)
            .map_err(|error| self.fail(&key, format!("`{production}` is not a branch name: {}", error.reason)))
    }

    fn globs(&self, key: &KeyPath, patterns: &[String]) -> Result<Vec<Glob>, ConfigError> {
        patterns
            .iter()
            .enumerate()
            .map(|(index, pattern)| Glob::new(pattern).map_err(|error| self.fail(&key.index(index), error.to_string())))
            .collect()
    }

    /// A value that may hold `{branch}` and `${VAR}`: must not be blank, and any
    /// `${` must be well formed.
    fn template(&self, key: &KeyPath, value: &str, hint: &str) -> Result<(), ConfigError> {
        if value.trim().is_empty() {
            return Err(self.fail(key, format!("is empty; {hint}")));
        }
        interpolate::check(value).map_err(|problem| self.fail(key, problem))
    }

    fn command(&self, key: KeyPath, command: String) -> Result<(String, Origin), ConfigError> {
        self.template(&key, &command, "write a shell command, or remove the key")?;
        Ok((command, self.origin(key)))
    }

    fn environments(&self, table: EnvironmentsTable) -> Result<Vec<EnvironmentRule>, ConfigError> {
        let key = KeyPath::top("environments");
        table
            .0
            .into_iter()
            .map(|(environment, patterns)| {
                Ok(EnvironmentRule { environment, branches: self.globs(&key.key(environment.as_str()), &patterns)? })
            })
            .collect()
    }

    fn retention(&self, table: RetentionTable) -> Result<Retention, ConfigError> {
        let key = KeyPath::top("retention");
        let RetentionTable {
            preset,
            keep_last,
            keep_hourly,
            keep_six_hourly,
            keep_daily,
            keep_weekly,
            keep_monthly,
            keep_yearly,
            keep_within,
            manual_limit,
            manual_over_limit,
            keep_for,
            safety_days,
            deleted_branch_days,
            production,
            staging,
            development,
        } = table;
        let top = RulesTable {
            preset,
            keep_last,
            keep_hourly,
            keep_six_hourly,
            keep_daily,
            keep_weekly,
            keep_monthly,
            keep_yearly,
            keep_within,
        };
        // Explicit rules keep the preset's hook rules and days, but set no manual
        // limit the file does not give.
        let mut policy = match self.rules(&key, top)? {
            Some(Chosen::Preset(preset)) => Policy::preset(preset),
            Some(Chosen::Rules(rules)) => {
                Policy { automated: rules, manual_limit: BTreeMap::new(), ..Policy::default() }
            }
            None => Policy::default(),
        };
        if let Some((environment, _)) = manual_limit.iter().find(|(_, limit)| **limit == 0) {
            return Err(self.fail(
                &key.key("manual_limit").key(environment.as_str()),
                "must be at least 1; remove it to let this type keep every manual snapshot",
            ));
        }
        policy.manual_limit.extend(manual_limit);
        for (environment, table) in [
            (EnvironmentType::Production, production),
            (EnvironmentType::Staging, staging),
            (EnvironmentType::Development, development),
        ] {
            let Some(table) = table else { continue };
            let key = key.key(environment.as_str());
            let rules = match self.rules(&key, table)? {
                Some(Chosen::Preset(preset)) => KeepRules::preset(preset),
                Some(Chosen::Rules(rules)) => rules,
                None => {
                    return Err(self.fail(&key, "names no rule; give a `preset` or `keep_*` keys, or remove the table"));
                }
            };
            policy.per_type.insert(environment, rules);
        }
        if let Some(days) = safety_days {
            policy.safety_days = days;
        }
        if let Some(days) = deleted_branch_days {
            policy.gone_branch_days = days;
        }
        if keep_for == Some(0) {
            return Err(self.fail(
                &key.key("keep_for"),
                "must be at least 1 (day); remove it to keep snapshots until retention rules drop them",
            ));
        }
        Ok(Retention { policy, over_limit: manual_over_limit.unwrap_or_default(), keep_for })
    }

    /// A preset or explicit automated rules, never both; `None` when `table` gives neither.
    fn rules(&self, key: &KeyPath, table: RulesTable) -> Result<Option<Chosen>, ConfigError> {
        let RulesTable {
            preset,
            keep_last,
            keep_hourly,
            keep_six_hourly,
            keep_daily,
            keep_weekly,
            keep_monthly,
            keep_yearly,
            keep_within,
        } = table;
        // Rules are given when a key is, whatever its value: `keep_daily = 0` is a rule
        // (keep no daily snapshots), not the absence of one.
        let given = [keep_last, keep_hourly, keep_six_hourly, keep_daily, keep_weekly, keep_monthly, keep_yearly]
            .iter()
            .any(Option::is_some)
            || keep_within.is_some();
        let within = keep_within
            .map(|text| parse_within(&text).map_err(|problem| self.fail(&key.key("keep_within"), problem)))
            .transpose()?;
        let count = Option::unwrap_or_default;
        let rules = KeepRules {
            last: count(keep_last),
            hourly: count(keep_hourly),
            six_hourly: count(keep_six_hourly),
            daily: count(keep_daily),
            weekly: count(keep_weekly),
            monthly: count(keep_monthly),
            yearly: count(keep_yearly),
            within,
        };
        match (preset, given) {
            (Some(_), true) => Err(self.fail(
                &key.key("preset"),
                "a preset and explicit keep rules cannot be combined; remove `preset` or the `keep_*` keys",
            )),
            (Some(preset), false) => Ok(Some(Chosen::Preset(preset))),
            (None, true) => Ok(Some(Chosen::Rules(rules))),
            (None, false) => Ok(None),
        }
    }

    fn schedule(&self, table: ScheduleTable) -> Result<ScheduleLayer, ConfigError> {
        let key = KeyPath::top("schedule");
        let cron = Cron::parse(&table.cron).map_err(|problem| self.fail(&key.key("cron"), problem))?;
        let branches = table.branches.map(|patterns| self.globs(&key.key("branches"), &patterns)).transpose()?;
        Ok(ScheduleLayer { cron, branches, live: table.live })
    }

    /// Checks an element's name and that no earlier element in this file has it.
    /// Names become file names in snapshot views, hence the small alphabet.
    fn element_name(
        &self,
        element: &KeyPath,
        name: &str,
        seen: &mut HashMap<String, KeyPath>,
    ) -> Result<(), ConfigError> {
        const ALPHABET: &str = "names may use only letters, digits, `_`, `.` and `-`";
        let key = element.key("name");
        if name.is_empty() {
            return Err(self.fail(&key, format!("is empty; {ALPHABET}")));
        }
        if let Some(bad) = name.chars().find(|&c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))) {
            return Err(self.fail(&key, format!("`{name}` contains {bad:?}; {ALPHABET}")));
        }
        if name == "." || name == ".." {
            return Err(self.fail(&key, format!("`{name}` cannot be a name; use letters or digits")));
        }
        if let Some(first) = seen.get(name) {
            return Err(self.fail(
                &key,
                format!("`{name}` is already the name of {first}; names must be unique across mounts and services"),
            ));
        }
        seen.insert(name.to_owned(), element.clone());
        Ok(())
    }

    fn mount(&self, key: &KeyPath, table: MountTable) -> Result<Mount, ConfigError> {
        let MountTable { name, path, exclude } = table;
        self.template(
            &key.key("path"),
            &path,
            "give the directory, relative to the repository root, e.g. path = \"var/uploads\"",
        )?;
        for (index, pattern) in exclude.iter().enumerate() {
            if pattern.trim().is_empty() || pattern.contains(['\n', '\r']) {
                return Err(self.fail(
                    &key.key("exclude").index(index),
                    "is not a pattern; write one gitignore-style pattern per string, e.g. \"cache/\"",
                ));
            }
        }
        Ok(Mount { name, path, exclude })
    }

    fn service(&self, key: &KeyPath, table: ServiceTable) -> Result<Service, ConfigError> {
        let ServiceTable { name, kind, url, path, dump, restore, extension } = table;
        let given = [
            ("url", url.is_some()),
            ("path", path.is_some()),
            ("dump", dump.is_some()),
            ("restore", restore.is_some()),
            ("extension", extension.is_some()),
        ];
        let takes: &[&str] = match kind {
            ServiceKind::Postgresql | ServiceKind::Mysql | ServiceKind::Redis => &["url"],
            ServiceKind::Sqlite => &["path"],
            ServiceKind::Command => &["dump", "restore", "extension"],
        };
        if let Some((field, _)) = given.iter().find(|(field, is_given)| *is_given && !takes.contains(field)) {
            return Err(self.fail(
                &key.key(field),
                format!("does not apply to a {kind} service; remove it (a {kind} service takes {})", takes.join(", ")),
            ));
        }
        let access = match kind {
            ServiceKind::Postgresql | ServiceKind::Mysql | ServiceKind::Redis => {
                let url = self.required(key, "url", url, kind)?;
                self.url_scheme(&key.key("url"), &url, kind)?;
                ServiceAccess::Url(url)
            }
            ServiceKind::Sqlite => ServiceAccess::File(PathBuf::from(self.required(key, "path", path, kind)?)),
            ServiceKind::Command => {
                let dump = self.required(key, "dump", dump, kind)?;
                let restore = self.required(key, "restore", restore, kind)?;
                let extension = match extension {
                    Some(extension) => self.extension(&key.key("extension"), extension)?,
                    None => DEFAULT_EXTENSION.to_owned(),
                };
                ServiceAccess::Commands { dump, restore, extension }
            }
        };
        Ok(Service { name, kind, access })
    }

    /// A key that `kind` needs, checked as a template.
    fn required(
        &self,
        service: &KeyPath,
        field: &str,
        value: Option<String>,
        kind: ServiceKind,
    ) -> Result<String, ConfigError> {
        let key = service.key(field);
        let example = match (kind, field) {
            (ServiceKind::Postgresql, _) => "url = \"postgresql://user@127.0.0.1:5432/app_{branch}\"",
            (ServiceKind::Mysql, _) => "url = \"mysql://user@127.0.0.1:3306/app_{branch}\"",
            (ServiceKind::Redis, _) => "url = \"redis://127.0.0.1:6379/0\"",
            (ServiceKind::Sqlite, _) => "path = \"var/data/app_{branch}.sqlite\"",
            (ServiceKind::Command, "dump") => "dump = \"mongodump --archive --db=app_{branch}\"",
            (ServiceKind::Command, _) => "restore = \"mongorestore --archive --drop\"",
        };
        let hint = format!("a {kind} service needs it, e.g. {example}");
        let Some(value) = value else {
            return Err(self.fail(&key, format!("required key is missing; {hint}")));
        };
        self.template(&key, &value, &hint)?;
        Ok(value)
    }

    /// A URL must be of its service's type. Skipped when the URL starts with a
    /// variable (`url = "${DATABASE_URL}"`), whose value only resolving sees. The
    /// URL is not echoed: it may hold a password.
    fn url_scheme(&self, key: &KeyPath, url: &str, kind: ServiceKind) -> Result<(), ConfigError> {
        let schemes: &[&str] = match kind {
            ServiceKind::Postgresql => &["postgresql://", "postgres://"],
            ServiceKind::Mysql => &["mysql://", "mariadb://"],
            ServiceKind::Redis => &["redis://", "rediss://", "unix://"],
            ServiceKind::Sqlite | ServiceKind::Command => return Ok(()),
        };
        let lower = url.to_ascii_lowercase();
        if url.starts_with("${") || schemes.iter().any(|scheme| lower.starts_with(scheme)) {
            return Ok(());
        }
        Err(self.fail(
            key,
            format!(
                "is not a {kind} URL; it must start with {}",
                schemes.iter().map(|scheme| format!("`{scheme}`")).collect::<Vec<_>>().join(" or ")
            ),
        ))
    }

    fn extension(&self, key: &KeyPath, extension: String) -> Result<String, ConfigError> {
        let well_formed = !extension.is_empty()
            && !extension.starts_with('.')
            && !extension.ends_with('.')
            && extension.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
        if well_formed {
            Ok(extension)
        } else {
            Err(self.fail(
                key,
                format!("`{extension}` is not a file extension; write letters and digits without a leading dot, e.g. \"archive\" or \"json.gz\""),
            ))
        }
    }
}

/// What a `[retention]` table (or one environment type's) chose for automated snapshots.
enum Chosen {
    Preset(RetentionPreset),
    Rules(KeepRules),
}

/// `keep_within`: a whole number of hours, days or weeks, such as `36h`, `7d`, `2w`.
fn parse_within(text: &str) -> Result<chrono::Duration, String> {
    const HINT: &str = "write a number of hours, days or weeks, e.g. \"36h\", \"7d\" or \"2w\"";
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    if number.is_empty() {
        return Err(format!("`{text}` does not start with a number; {HINT}"));
    }
    let Ok(number) = number.parse::<i64>() else { return Err(format!("`{text}` is out of range; {HINT}")) };
    let duration = match unit {
        "h" => chrono::Duration::try_hours(number),
        "d" => chrono::Duration::try_days(number),
        "w" => chrono::Duration::try_weeks(number),
        "" => return Err(format!("`{text}` has no unit; {HINT}")),
        _ => return Err(format!("`{unit}` in `{text}` is not a unit envsnap knows; {HINT}")),
    };
    match duration {
        Some(duration) if number > 0 => Ok(duration),
        _ => Err(format!("`{text}` is out of range; {HINT}")),
    }
}

/// Whether two mount paths (templates) are the same directory or one lies inside the
/// other, compared component by component: `data` and `./data/sub/` overlap, `data`
/// and `database` do not.
fn overlap(a: &str, b: &str) -> bool {
    let split = |path: &str| -> Vec<String> {
        path.split('/').filter(|part| !part.is_empty() && *part != ".").map(str::to_owned).collect()
    };
    let (a, b) = (split(a), split(b));
    let shorter = a.len().min(b.len());
    a[..shorter] == b[..shorter]
}
