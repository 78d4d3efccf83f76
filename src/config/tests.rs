//! Tests of the configuration as a whole: files in, typed values or
//! `file:line: key` errors out.

use std::collections::BTreeMap;
use std::error::Error;
use std::path::{Path, PathBuf};

use super::*;
use crate::retention::{KeepRules, Policy};

type TestResult = Result<(), Box<dyn Error>>;

/// The minimal file of PRODUCT.md, exactly.
const PRODUCT_MINIMAL: &str = r#"production = "main"
protected = ["main", "release/*"]

[[mount]]
name = "uploads"
path = "var/uploads"            # relative to the repository root
exclude = ["styles/", "*.tmp"]

[[service]]
name = "db"
type = "postgresql"
url = "postgresql://127.0.0.1:5432/app_{branch}"

[[service]]
name = "cache"
type = "redis"
url = "redis://127.0.0.1:6379/0"
"#;

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(text, Path::new("envsnap.toml"))
}

/// The error message `text` gets, or a note that it parsed.
fn error(text: &str) -> String {
    match parse(text) {
        Ok(_) => "(parsed without error)".to_owned(),
        Err(error) => error.to_string(),
    }
}

fn globs(patterns: &[&str]) -> Result<Vec<Glob>, GlobError> {
    patterns.iter().map(|pattern| Glob::new(pattern)).collect()
}

fn no_variables(_: &str) -> Option<String> {
    None
}

#[test]
fn the_product_minimal_file_parses_as_written() -> TestResult {
    let config = parse(PRODUCT_MINIMAL)?;
    assert_eq!(config.production(), "main");
    assert_eq!(config.protected(), globs(&["main", "release/*"])?.as_slice());
    assert_eq!(
        config.mounts(),
        [Mount {
            name: "uploads".to_owned(),
            path: "var/uploads".to_owned(),
            exclude: vec!["styles/".to_owned(), "*.tmp".to_owned()],
        }]
    );
    assert_eq!(
        config.services(),
        [
            Service {
                name: "db".to_owned(),
                kind: ServiceKind::Postgresql,
                access: ServiceAccess::Url("postgresql://127.0.0.1:5432/app_{branch}".to_owned()),
            },
            Service {
                name: "cache".to_owned(),
                kind: ServiceKind::Redis,
                access: ServiceAccess::Url("redis://127.0.0.1:6379/0".to_owned()),
            },
        ]
    );
    assert_eq!(config.element_names().collect::<Vec<_>>(), ["uploads", "db", "cache"]);
    assert_eq!(config.repository(), None);
    assert!(config.admins().is_empty());
    assert!(config.environments().is_empty());
    assert_eq!(config.retention(), None);
    assert_eq!(config.schedule(), None);
    Ok(())
}

#[test]
fn the_product_minimal_file_resolves_per_branch() -> TestResult {
    let config = parse(PRODUCT_MINIMAL)?;
    let work_tree = Path::new("/srv/app");
    let mounts = config.mounts_for("feature/Login-Form", work_tree, &no_variables)?;
    assert_eq!(
        mounts,
        [ResolvedMount {
            name: "uploads".to_owned(),
            path: PathBuf::from("/srv/app/var/uploads"),
            exclude: vec!["styles/".to_owned(), "*.tmp".to_owned()],
        }]
    );
    let services = config.services_for("feature/Login-Form", work_tree, &no_variables)?;
    assert_eq!(
        services.first().map(|service| &service.access),
        Some(&ServiceAccess::Url("postgresql://127.0.0.1:5432/app_feature_login_form".to_owned()))
    );
    Ok(())
}

#[test]
fn an_empty_file_gets_the_defaults() -> TestResult {
    let config = parse("")?;
    assert_eq!(config.production(), "main");
    assert_eq!(config.protected(), globs(&["main"])?.as_slice());
    assert!(config.mounts().is_empty() && config.services().is_empty());
    let config = parse("production = \"trunk\"\n[schedule]\ncron = \"0 3 * * *\"\n")?;
    assert_eq!(config.protected(), globs(&["trunk"])?.as_slice());
    assert_eq!(config.schedule().map(|schedule| schedule.branches.clone()), Some(globs(&["trunk"])?));
    Ok(())
}

#[test]
fn every_key_is_read() -> TestResult {
    let config = parse(
        r#"
production = "trunk"
protected = ["trunk", "release/**"]
repository = "../snapshots"
admins = ["alice@example.com", "bob"]
pause = "bin/maintenance on {branch}"
resume = "bin/maintenance off"

[environments]
staging = ["staging", "release/*"]
production = ["hotfix/*"]

[retention]
keep_last = 3
keep_daily = 7
keep_within = "36h"
manual_limit = { production = 20, development = 5 }
manual_over_limit = "drop-oldest"
keep_for = 30
safety_days = 3
deleted_branch_days = 60

[retention.staging]
keep_six_hourly = 4
keep_yearly = 2

[schedule]
cron = "0 3 * * 1-5"
branches = ["trunk", "staging"]

[[mount]]
name = "files"
path = "/var/lib/app/{branch}"

[[service]]
name = "local"
type = "sqlite"
path = "var/{branch}.sqlite"

[[service]]
name = "search.index"
type = "command"
dump = "solr-dump {branch}"
restore = "solr-restore {branch}"
"#,
    )?;
    assert_eq!(config.production(), "trunk");
    assert_eq!(config.repository(), Some(Path::new("../snapshots")));
    assert_eq!(config.repository_in(Path::new("/w")), Some(PathBuf::from("/w/../snapshots")));
    assert_eq!(config.admins(), ["alice@example.com", "bob"]);
    assert_eq!(
        config.environments(),
        [
            EnvironmentRule { environment: EnvironmentType::Staging, branches: globs(&["staging", "release/*"])? },
            EnvironmentRule { environment: EnvironmentType::Production, branches: globs(&["hotfix/*"])? },
        ]
    );
    let policy = Policy {
        automated: KeepRules { last: 3, daily: 7, within: Some(chrono::Duration::hours(36)), ..KeepRules::default() },
        per_type: BTreeMap::from([(
            EnvironmentType::Staging,
            KeepRules { six_hourly: 4, yearly: 2, ..KeepRules::default() },
        )]),
        manual_limit: BTreeMap::from([(EnvironmentType::Production, 20), (EnvironmentType::Development, 5)]),
        safety_days: 3,
        gone_branch_days: 60,
        ..Policy::default()
    };
    assert_eq!(config.retention(), Some(&Retention { policy, over_limit: OverLimit::DropOldest, keep_for: Some(30) }));
    let schedule = config.schedule().ok_or("no schedule")?;
    assert_eq!(schedule.cron.as_str(), "0 3 * * 1-5");
    assert!(schedule.live);
    assert!(schedule.applies_to("staging") && !schedule.applies_to("feature/x"));

    let work_tree = Path::new("/w");
    let mounts = config.mounts_for("Feature/X", work_tree, &no_variables)?;
    assert_eq!(mounts.first().map(|mount| mount.path.clone()), Some(PathBuf::from("/var/lib/app/feature_x")));
    let services = config.services_for("Feature/X", work_tree, &no_variables)?;
    assert_eq!(
        services,
        [
            ResolvedService {
                name: "local".to_owned(),
                kind: ServiceKind::Sqlite,
                access: ServiceAccess::File(PathBuf::from("/w/var/feature_x.sqlite")),
            },
            ResolvedService {
                name: "search.index".to_owned(),
                kind: ServiceKind::Command,
                access: ServiceAccess::Commands {
                    dump: "solr-dump feature_x".to_owned(),
                    restore: "solr-restore feature_x".to_owned(),
                    extension: "dump".to_owned(),
                },
            },
        ]
    );
    assert_eq!(config.pause_for("Feature/X", &no_variables)?.as_deref(), Some("bin/maintenance on feature_x"));
    assert_eq!(config.resume_for("Feature/X", &no_variables)?.as_deref(), Some("bin/maintenance off"));
    Ok(())
}

#[test]
fn a_preset_is_read() -> TestResult {
    let config = parse("[retention]\npreset = \"premium\"\nmanual_limit = { staging = 5 }\n")?;
    let retention = config.retention().ok_or("no retention")?;
    let mut premium = Policy::preset(RetentionPreset::Premium);
    premium.manual_limit.insert(EnvironmentType::Staging, 5);
    assert_eq!(retention.policy, premium);
    assert_eq!(retention.over_limit, OverLimit::Refuse);
    // A table without rules gets essential's.
    let config = parse("[retention]\nkeep_for = 10\n")?;
    assert_eq!(config.retention().map(|retention| &retention.policy), Some(&Policy::default()));
    // Rules of 0 are explicit rules (keep no automated snapshot but the newest), with
    // no manual limit, not a table without rules.
    let config = parse("[retention]\nkeep_daily = 0\n")?;
    let policy = &config.retention().ok_or("no retention")?.policy;
    assert_eq!(policy.automated, KeepRules::default());
    assert!(policy.manual_limit.is_empty(), "{policy:?}");
    Ok(())
}

#[test]
fn branch_helpers() -> TestResult {
    let config = parse(
        r#"
production = "main"
protected = ["main", "release/*"]
admins = ["Alice@Example.com"]
[environments]
staging = ["staging", "release/**"]
production = ["release/**", "hotfix/*"]
"#,
    )?;
    assert!(config.is_protected("main"));
    assert!(config.is_protected("release/2.0"));
    assert!(!config.is_protected("release/2.0/fix"));
    assert!(!config.is_protected("feature/x"));

    assert_eq!(config.environment_type("main"), EnvironmentType::Production);
    // The first matching entry wins, in the order written.
    assert_eq!(config.environment_type("release/2.0"), EnvironmentType::Staging);
    assert_eq!(config.environment_type("hotfix/1"), EnvironmentType::Production);
    assert_eq!(config.environment_type("feature/x"), EnvironmentType::Development);

    assert!(config.is_admin("alice@example.com"));
    assert!(config.is_admin(" ALICE@example.com "));
    assert!(!config.is_admin("mallory"));
    assert!(parse("")?.is_admin("anyone"));
    assert!(parse("admins = []")?.is_admin("anyone"));
    Ok(())
}

// ---- Errors: each names the file, the line and the key ----

#[test]
fn an_unknown_key_lists_the_expected_ones() {
    let text = "production = \"main\"\n\n[[mount]]\nname = \"uploads\"\npath = \"var/uploads\"\n\n[[mount]]\nname = \"b\"\npth = \"y\"\n";
    assert_eq!(error(text), "envsnap.toml:9: mount[1].pth: unknown key; expected one of name, path, exclude");
    assert_eq!(
        error("prodution = \"main\""),
        "envsnap.toml:1: prodution: unknown key; expected one of production, protected, repository, admins, pause, resume, environments, retention, schedule, mount, service"
    );
    assert_eq!(
        error("[retention]\npreset = \"essential\"\nkeep_decadely = 2\n"),
        "envsnap.toml:3: retention.keep_decadely: unknown key; expected one of preset, keep_last, keep_hourly, keep_six_hourly, keep_daily, keep_weekly, keep_monthly, keep_yearly, keep_within, manual_limit, manual_over_limit, keep_for, safety_days, deleted_branch_days, production, staging, development"
    );
}

#[test]
fn an_unknown_environment_type_is_an_unknown_key() {
    assert_eq!(
        error("[environments]\nstaging = [\"s\"]\nprod = [\"main\"]\n"),
        "envsnap.toml:3: environments.prod: unknown key; expected one of production, staging, development"
    );
    assert_eq!(
        error("[retention]\nmanual_limit = { dev = 3 }\n"),
        "envsnap.toml:2: retention.manual_limit.dev: unknown key; expected one of production, staging, development"
    );
}

#[test]
fn a_missing_key_points_at_its_table() {
    assert_eq!(
        error("production = \"main\"\n\n[[mount]]\nname = \"uploads\"\n"),
        "envsnap.toml:3: mount[0].path: required key is missing; add it"
    );
    assert_eq!(
        error("[[service]]\nname = \"db\"\n"),
        "envsnap.toml:1: service[0].type: required key is missing; add it"
    );
}

#[test]
fn wrong_types_and_values_are_named() {
    assert_eq!(
        error("[[mount]]\nname = \"a\"\npath = 3\n"),
        "envsnap.toml:3: mount[0].path: wrong type: found integer `3`, expected a string"
    );
    assert_eq!(
        error("[[service]]\nname = \"db\"\ntype = \"postgres\"\n"),
        "envsnap.toml:3: service[0].type: unknown value `postgres`; expected one of postgresql, mysql, redis, sqlite, command"
    );
    assert_eq!(
        error("[retention]\npreset = \"gold\"\n"),
        "envsnap.toml:2: retention.preset: unknown value `gold`; expected one of essential, advanced, premium"
    );
    assert_eq!(
        error("[retention]\nkeep_last = -1\n"),
        "envsnap.toml:2: retention.keep_last: invalid value: integer `-1`, expected a whole number, 0 or more"
    );
}

#[test]
fn toml_syntax_errors_name_the_line() {
    let message = error("production = \"main\"\nprotected = [\"main\"\n\n[[mount]]\n");
    assert!(message.starts_with("envsnap.toml:4: invalid TOML: "), "{message}");
    assert!(!message.contains('\n'), "{message}");
    let message = error("production = \"a\"\nproduction = \"b\"\n");
    assert!(message.starts_with("envsnap.toml:2: invalid TOML: duplicate key"), "{message}");
}

#[test]
fn element_names_are_checked() {
    assert_eq!(
        error("[[mount]]\nname = \"my uploads\"\npath = \"x\"\n"),
        "envsnap.toml:2: mount[0].name: `my uploads` contains ' '; names may use only letters, digits, `_`, `.` and `-`"
    );
    assert_eq!(
        error("[[mount]]\nname = \"..\"\npath = \"x\"\n"),
        "envsnap.toml:2: mount[0].name: `..` cannot be a name; use letters or digits"
    );
    assert_eq!(
        error("[[mount]]\nname = \"\"\npath = \"x\"\n"),
        "envsnap.toml:2: mount[0].name: is empty; names may use only letters, digits, `_`, `.` and `-`"
    );
}

#[test]
fn names_are_unique_across_mounts_and_services() {
    let text = "[[mount]]\nname = \"data\"\npath = \"var/data\"\n\n[[service]]\nname = \"data\"\ntype = \"redis\"\nurl = \"redis://localhost\"\n";
    assert_eq!(
        error(text),
        "envsnap.toml:6: service[0].name: `data` is already the name of mount[0]; names must be unique across mounts and services"
    );
    let text = "[[mount]]\nname = \"a\"\npath = \"x\"\n[[mount]]\nname = \"a\"\npath = \"y\"\n";
    assert_eq!(
        error(text),
        "envsnap.toml:5: mount[1].name: `a` is already the name of mount[0]; names must be unique across mounts and services"
    );
}

#[test]
fn a_mount_path_must_not_be_empty() {
    assert_eq!(
        error("[[mount]]\nname = \"a\"\npath = \"\"\n"),
        "envsnap.toml:3: mount[0].path: is empty; give the directory, relative to the repository root, e.g. path = \"var/uploads\""
    );
    assert_eq!(
        error("[[mount]]\nname = \"a\"\npath = \"x\"\nexclude = [\"ok/\", \"\"]\n"),
        "envsnap.toml:4: mount[0].exclude[1]: is not a pattern; write one gitignore-style pattern per string, e.g. \"cache/\""
    );
}

#[test]
fn mounts_must_not_overlap() {
    let text = "[[mount]]\nname = \"data\"\npath = \"data\"\n[[mount]]\nname = \"sub\"\npath = \"./data/sub/\"\n";
    assert_eq!(
        error(text),
        "envsnap.toml:6: mount[1].path: `./data/sub/` overlaps mount `data` (path = \"data\"): a restore of one would \
         write through the other; give each mount a directory of its own, neither inside the other"
    );
    let text = "[[mount]]\nname = \"a\"\npath = \"var/{branch}/a\"\n[[mount]]\nname = \"b\"\npath = \"var/{branch}\"\n";
    assert!(
        error(text).starts_with("envsnap.toml:6: mount[1].path: `var/{branch}` overlaps mount `a`"),
        "{}",
        error(text)
    );
    let text = "[[mount]]\nname = \"a\"\npath = \"data\"\n[[mount]]\nname = \"b\"\npath = \"database\"\n";
    assert_eq!(error(text), "(parsed without error)");
}

#[test]
fn services_need_the_keys_of_their_type() {
    assert_eq!(
        error("[[service]]\nname = \"db\"\ntype = \"postgresql\"\n"),
        "envsnap.toml:1: service[0].url: required key is missing; a postgresql service needs it, e.g. url = \"postgresql://user@127.0.0.1:5432/app_{branch}\""
    );
    assert_eq!(
        error("[[service]]\nname = \"local\"\ntype = \"sqlite\"\nurl = \"x\"\n"),
        "envsnap.toml:4: service[0].url: does not apply to a sqlite service; remove it (a sqlite service takes path)"
    );
    assert_eq!(
        error("[[service]]\nname = \"local\"\ntype = \"sqlite\"\n"),
        "envsnap.toml:1: service[0].path: required key is missing; a sqlite service needs it, e.g. path = \"var/data/app_{branch}.sqlite\""
    );
    assert_eq!(
        error("[[service]]\nname = \"s\"\ntype = \"command\"\ndump = \"solr-dump\"\n"),
        "envsnap.toml:1: service[0].restore: required key is missing; a command service needs it, e.g. restore = \"mongorestore --archive --drop\""
    );
    assert_eq!(
        error("[[service]]\nname = \"s\"\ntype = \"command\"\ndump = \"d\"\nrestore = \"r\"\nextension = \".sql\"\n"),
        "envsnap.toml:6: service[0].extension: `.sql` is not a file extension; write letters and digits without a leading dot, e.g. \"archive\" or \"json.gz\""
    );
    assert_eq!(
        error("[[service]]\nname = \"db\"\ntype = \"mysql\"\nurl = \"postgresql://x/y\"\n"),
        "envsnap.toml:4: service[0].url: is not a mysql URL; it must start with `mysql://` or `mariadb://`"
    );
    // A URL that is all variable is checked only once resolved.
    assert_eq!(
        error("[[service]]\nname = \"db\"\ntype = \"mysql\"\nurl = \"${DATABASE_URL}\"\n"),
        "(parsed without error)"
    );
}

#[test]
fn patterns_are_checked() {
    assert_eq!(
        error("protected = [\"main\",\n  \"release/[0-9]*\"]\n"),
        "envsnap.toml:2: protected[1]: `release/[0-9]*` is not a valid branch pattern: character classes (`[...]`) are not supported; use `?` or `*`"
    );
    assert_eq!(
        error("[environments]\nstaging = [\"a b\"]\n"),
        "envsnap.toml:2: environments.staging[0]: `a b` is not a valid branch pattern: a branch name cannot contain spaces or control characters"
    );
    assert_eq!(
        error("production = \"release/*\"\n"),
        "envsnap.toml:1: production: must name one branch, not a pattern; list patterns under `protected` or `[environments]`"
    );
}

#[test]
fn retention_and_schedule_are_checked() {
    assert_eq!(
        error("[retention]\npreset = \"advanced\"\nkeep_daily = 7\n"),
        "envsnap.toml:2: retention.preset: a preset and explicit keep rules cannot be combined; remove `preset` or the `keep_*` keys"
    );
    // A rule of 0 is a rule: with a preset it is refused like any other.
    assert_eq!(
        error("[retention]\npreset = \"advanced\"\nkeep_daily = 0\n"),
        "envsnap.toml:2: retention.preset: a preset and explicit keep rules cannot be combined; remove `preset` or the `keep_*` keys"
    );
    assert_eq!(
        error("[schedule]\ncron = \"0 3 31 2 *\"\n"),
        "envsnap.toml:2: schedule.cron: `0 3 31 2 *` names no day that exists (day 31 of month 2 never comes); write 5 fields: minute hour day-of-month month day-of-week, e.g. \"0 3 * * *\""
    );
    assert_eq!(
        error("[retention]\nkeep_within = \"3\"\n"),
        "envsnap.toml:2: retention.keep_within: `3` has no unit; write a number of hours, days or weeks, e.g. \"36h\", \"7d\" or \"2w\""
    );
    assert_eq!(
        error("[retention]\nkeep_within = \"99999999999999999999d\"\n"),
        "envsnap.toml:2: retention.keep_within: `99999999999999999999d` is out of range; write a number of hours, days or weeks, e.g. \"36h\", \"7d\" or \"2w\""
    );
    assert_eq!(
        error("[retention]\nkeep_within = \"3 months\"\n"),
        "envsnap.toml:2: retention.keep_within: ` months` in `3 months` is not a unit envsnap knows; write a number of hours, days or weeks, e.g. \"36h\", \"7d\" or \"2w\""
    );
    assert_eq!(
        error("[retention]\nkeep_daily = 3\n[retention.staging]\nkeep_for = 3\n"),
        "envsnap.toml:4: retention.staging.keep_for: unknown key; expected one of preset, keep_last, keep_hourly, keep_six_hourly, keep_daily, keep_weekly, keep_monthly, keep_yearly, keep_within"
    );
    assert_eq!(
        error("[retention.development]\n"),
        "envsnap.toml:1: retention.development: names no rule; give a `preset` or `keep_*` keys, or remove the table"
    );
    assert_eq!(
        error("[retention]\nmanual_over_limit = \"drop\"\n"),
        "envsnap.toml:2: retention.manual_over_limit: unknown value `drop`; expected refuse or drop-oldest"
    );
    assert_eq!(
        error("[schedule]\ncron = \"0 3 * *\"\n"),
        "envsnap.toml:2: schedule.cron: a cron expression has 5 fields, this one has 4; write 5 fields: minute hour day-of-month month day-of-week, e.g. \"0 3 * * *\""
    );
    assert_eq!(
        error("[schedule]\ncron = \"0 3 * * *\"\nbranches = [\"\"]\n"),
        "envsnap.toml:3: schedule.branches[0]: `` is not a valid branch pattern: it is empty; write a branch name or a pattern such as `release/*`"
    );
}

#[test]
fn lines_are_found_in_dotted_keys_and_implicit_tables() {
    assert_eq!(
        error("production = \"main\"\nschedule.cron = \"0 3 * * mon-funday\"\n"),
        "envsnap.toml:2: schedule.cron: day of week field `mon-funday`: `funday` is not a number; write 5 fields: minute hour day-of-month month day-of-week, e.g. \"0 3 * * *\""
    );
    assert_eq!(
        error("[retention.manual_limit]\nstaging = 2\n\n[retention]\nkeep_for = 0\n"),
        "envsnap.toml:5: retention.keep_for: must be at least 1 (day); remove it to keep snapshots until retention rules drop them"
    );
}

#[test]
fn malformed_variables_are_found_on_load() {
    assert_eq!(
        error("[[mount]]\nname = \"a\"\npath = \"${DATA\"\n"),
        "envsnap.toml:3: mount[0].path: `${` is not closed; write `${NAME}`, or `$${` for a literal `${`"
    );
}

// ---- Interpolation ----

#[test]
fn variables_come_from_the_lookup() -> TestResult {
    let config = parse(
        "[[service]]\nname = \"db\"\ntype = \"postgresql\"\nurl = \"postgresql://app:${DB_PASSWORD}@${DB_HOST}/app_{branch}\"\n",
    )?;
    let lookup = |name: &str| match name {
        "DB_PASSWORD" => Some("p@ss".to_owned()),
        "DB_HOST" => Some("db.internal".to_owned()),
        _ => None,
    };
    let services = config.services_for("main", Path::new("/w"), &lookup)?;
    assert_eq!(
        services.first().map(|service| &service.access),
        Some(&ServiceAccess::Url("postgresql://app:p@ss@db.internal/app_main".to_owned()))
    );
    Ok(())
}

#[test]
fn an_unset_variable_names_the_variable_file_and_key() -> TestResult {
    let config = parse(
        "production = \"main\"\n\n[[service]]\nname = \"db\"\ntype = \"postgresql\"\nurl = \"postgresql://app:${DB_PASSWORD}@localhost/app\"\n",
    )?;
    let error = config.services_for("main", Path::new("/w"), &no_variables).err().map(|error| error.to_string());
    assert_eq!(
        error.as_deref(),
        Some(
            "envsnap.toml:6: service[0].url: environment variable `DB_PASSWORD` is not set; set it before running envsnap (write `$${` for a literal `${`)"
        )
    );
    let config = parse("pause = \"echo ${WHO}\"\n")?;
    let error = config.pause_for("main", &no_variables).err().map(|error| error.to_string());
    assert_eq!(
        error.as_deref(),
        Some(
            "envsnap.toml:1: pause: environment variable `WHO` is not set; set it before running envsnap (write `$${` for a literal `${`)"
        )
    );
    Ok(())
}

#[test]
fn a_mount_cannot_be_the_work_tree() -> TestResult {
    for path in [".", "var/..", "..", "/"] {
        let config = parse(&format!("[[mount]]\nname = \"all\"\npath = \"{path}\"\n"))?;
        let result = config.mounts_for("main", Path::new("/srv/app"), &no_variables);
        let message = result.err().map(|error| error.to_string()).unwrap_or_default();
        assert!(message.starts_with("envsnap.toml:3: mount[0].path: "), "{path}: {message:?}");
    }
    let config = parse("[[mount]]\nname = \"data\"\npath = \"${DATA}\"\n")?;
    let empty = |_: &str| Some(String::new());
    let message = config.mounts_for("main", Path::new("/srv/app"), &empty).err().map(|error| error.to_string());
    assert_eq!(
        message.as_deref(),
        Some("envsnap.toml:3: mount[0].path: is empty once its variables are filled in; give them values")
    );
    Ok(())
}

// ---- Files on disk and the per-clone override ----

#[test]
fn a_missing_file_suggests_init() -> TestResult {
    let directory = tempfile::tempdir()?;
    let error = Config::load(directory.path(), None).err().ok_or("loaded a missing file")?;
    assert!(matches!(error, ConfigError::NotFound { .. }));
    assert_eq!(
        error.to_string(),
        format!(
            "{}: not found; run `envsnap init` to write a starter configuration",
            directory.path().join("envsnap.toml").display()
        )
    );
    Ok(())
}

#[test]
fn an_unreadable_file_is_a_read_error() -> TestResult {
    let directory = tempfile::tempdir()?;
    std::fs::create_dir(directory.path().join(FILE_NAME))?;
    let error = Config::load(directory.path(), None).err().ok_or("loaded a directory")?;
    assert!(matches!(&error, ConfigError::Read { path, .. } if path == &directory.path().join(FILE_NAME)));
    Ok(())
}

#[test]
fn the_override_replaces_keys_and_elements_by_name() -> TestResult {
    let directory = tempfile::tempdir()?;
    let work_tree = directory.path();
    std::fs::write(work_tree.join(FILE_NAME), PRODUCT_MINIMAL)?;
    std::fs::create_dir(work_tree.join(".git"))?;
    let local = work_tree.join(".git").join(LOCAL_FILE_NAME);
    std::fs::write(
        &local,
        r#"production = "trunk"
pause = "true"

[[service]]
name = "db"
type = "postgresql"
url = "postgresql://127.0.0.1:6543/mine_{branch}"

[[mount]]
name = "cache-files"
path = "/tmp/cache"
"#,
    )?;
    let config = Config::load(work_tree, Some(&local))?;
    assert_eq!(config.production(), "trunk");
    // Kept from the shared file.
    assert_eq!(config.protected(), globs(&["main", "release/*"])?.as_slice());
    assert_eq!(config.element_names().collect::<Vec<_>>(), ["uploads", "cache-files", "db", "cache"]);
    assert_eq!(
        config.services().first().map(|service| &service.access),
        Some(&ServiceAccess::Url("postgresql://127.0.0.1:6543/mine_{branch}".to_owned()))
    );
    assert_eq!(config.pause_for("main", &no_variables)?.as_deref(), Some("true"));

    // An override that does not exist changes nothing.
    let config = Config::load(work_tree, Some(&work_tree.join("absent.toml")))?;
    assert_eq!(config.production(), "main");
    Ok(())
}

#[test]
fn errors_in_the_override_name_the_override() -> TestResult {
    let directory = tempfile::tempdir()?;
    let work_tree = directory.path();
    std::fs::write(work_tree.join(FILE_NAME), PRODUCT_MINIMAL)?;
    std::fs::create_dir(work_tree.join(".git"))?;
    let local = work_tree.join(".git").join(LOCAL_FILE_NAME);

    std::fs::write(&local, "\n[[service]]\nname = \"db\"\ntype = \"postgresql\"\nurl = \"mysql://x\"\n")?;
    let message = Config::load(work_tree, Some(&local)).err().map(|error| error.to_string());
    assert_eq!(
        message.as_deref(),
        Some(
            ".git/envsnap.local.toml:5: service[0].url: is not a postgresql URL; it must start with `postgresql://` or `postgres://`"
        )
    );

    // A clash between the two files is reported where it was introduced.
    std::fs::write(&local, "[[mount]]\nname = \"cache\"\npath = \"var/cache\"\n")?;
    let message = Config::load(work_tree, Some(&local)).err().map(|error| error.to_string());
    assert_eq!(
        message.as_deref(),
        Some(
            ".git/envsnap.local.toml:2: mount[0].name: `cache` is already the name of service[1] in envsnap.toml; names must be unique across mounts and services"
        )
    );

    // Resolving errors in an element from the override name the override too.
    std::fs::write(&local, "[[mount]]\nname = \"uploads\"\npath = \"${UPLOADS}\"\n")?;
    let config = Config::load(work_tree, Some(&local))?;
    let message = config.mounts_for("main", work_tree, &no_variables).err().map(|error| error.to_string());
    assert_eq!(
        message.as_deref(),
        Some(
            ".git/envsnap.local.toml:3: mount[0].path: environment variable `UPLOADS` is not set; set it before running envsnap (write `$${` for a literal `${`)"
        )
    );
    Ok(())
}

// ---- The starter file ----

#[test]
fn the_starter_parses_and_configures_no_element() -> TestResult {
    let config = parse(STARTER)?;
    assert_eq!(config.production(), "main");
    assert_eq!(config.protected(), globs(&["main"])?.as_slice());
    assert_eq!(config.element_names().count(), 0);
    Ok(())
}

#[test]
fn the_starter_examples_parse_once_uncommented() -> TestResult {
    // Uncomment every line that looks like TOML, except `preset`, which cannot be
    // combined with the explicit keep rules below it.
    let uncommented: String = STARTER
        .lines()
        .map(|line| match line.strip_prefix("# ") {
            Some(rest) if (rest.starts_with('[') || rest.contains(" = ")) && !rest.starts_with("preset") => rest,
            _ => line,
        })
        .flat_map(|line| [line, "\n"])
        .collect();
    let config = parse(&uncommented)?;
    assert_eq!(config.element_names().collect::<Vec<_>>(), ["uploads", "db", "shop", "cache", "local", "documents"]);
    assert!(config.schedule().is_some());
    assert_eq!(config.admins().len(), 2);
    assert_eq!(config.environments().len(), 2);
    Ok(())
}
