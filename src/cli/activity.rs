//! The activity log from the command line: recording each command that changes
//! something, and `envsnap activity` to read the log.
//!
//! A command says what it concerned as it goes ([`env`], [`snapshot`]); once it
//! ends, [`finish`] appends one entry with its result to the catalog of the
//! repository it used. A command that never found a repository records nothing.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Instant;

use anyhow::Result;
use chrono::{DateTime, Utc};
use envsnap::activity::{Activity, Outcome};
use envsnap::catalog::Catalog;
use envsnap::id::ObjectId;
use envsnap::repository::Access;

use super::context::{Context, Global};
use super::format::{SHORT_ID, table};
use super::take::{hostname, whoami};

/// Options of `envsnap activity`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Only what concerned this environment.
    #[arg(long, value_name = "BRANCH")]
    pub env: Option<String>,
    /// The newest N entries.
    #[arg(long, value_name = "N", default_value_t = 50)]
    pub limit: usize,
    /// Every entry.
    #[arg(long, conflicts_with = "limit")]
    pub all: bool,
    /// Print JSON: an array of entries, newest first.
    #[arg(long)]
    pub json: bool,
}

/// What the running command has said about itself so far.
struct Current {
    /// Set when the command's work was handed to another process, which logs it.
    handed_off: bool,
    repository: Option<PathBuf>,
    user: Option<String>,
    env: Option<String>,
    snapshots: Vec<String>,
    detail: Option<String>,
}

static CURRENT: Mutex<Current> = Mutex::new(Current {
    handed_off: false,
    repository: None,
    user: None,
    env: None,
    snapshots: Vec::new(),
    detail: None,
});

fn current() -> std::sync::MutexGuard<'static, Current> {
    CURRENT.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Notes the repository and work tree the command runs against (from
/// [`Context::discover`]).
pub fn context(repository: &Path, work_tree: &Path) {
    let mut current = current();
    current.repository = Some(repository.to_owned());
    current.user = Some(envsnap::git::branch::user_email(work_tree).unwrap_or_else(whoami));
}

/// Notes the environment the command concerns.
pub fn env(name: &str) {
    current().env = Some(name.to_owned());
}

/// Notes a snapshot the command made, restored or removed.
pub fn snapshot(id: &ObjectId) {
    current().snapshots.push(id.to_hex());
}

/// Notes that the command handed its work to a process of its own (`backup
/// --no-wait`), which logs it: this one logs nothing more, unless it fails after all.
pub fn handed_off() {
    current().handed_off = true;
}

/// Notes a word on what a successful command did.
pub fn detail(text: impl Into<String>) {
    current().detail = Some(text.into());
}

/// Records the command that ran as `action`, started at `started`, with its result.
/// The log is a record, not the work: a failure to write it is a warning.
pub fn finish(action: &str, started: (DateTime<Utc>, Instant), result: &Result<()>) {
    let current = std::mem::replace(
        &mut *current(),
        Current { handed_off: false, repository: None, user: None, env: None, snapshots: Vec::new(), detail: None },
    );
    if current.handed_off && result.is_ok() {
        return;
    }
    let Some(repository) = current.repository else { return };
    if !repository.join("config.json").is_file() {
        return;
    }
    let (outcome, detail) = match result {
        Ok(()) => (Outcome::Success, current.detail),
        Err(error) => (Outcome::Failure, Some(format!("{error:#}"))),
    };
    let activity = Activity {
        started: started.0,
        duration_ms: u64::try_from(started.1.elapsed().as_millis()).unwrap_or(u64::MAX),
        user: current.user.unwrap_or_else(whoami),
        host: hostname(),
        action: action.to_owned(),
        env: current.env,
        snapshots: current.snapshots,
        result: outcome,
        detail,
    };
    if let Err(error) = Catalog::open(&repository.join("catalog.sqlite")).and_then(|catalog| catalog.record(&activity))
    {
        eprintln!("envsnap: warning: could not add to the activity log: {error}");
    }
}

pub fn run(global: &Global, args: &Args) -> Result<()> {
    let context = Context::discover(global)?;
    let repository = context.open(Access::Read)?;
    let limit = if args.all { None } else { Some(args.limit) };
    let log = repository.activities(args.env.as_deref(), limit)?;
    let mut out = std::io::stdout().lock();
    if args.json {
        serde_json::to_writer_pretty(&mut out, &log)?;
        writeln!(out)?;
        return Ok(());
    }
    let rows: Vec<Vec<String>> = log
        .iter()
        .map(|entry| {
            let snapshots = match entry.snapshots.as_slice() {
                [] => String::new(),
                [one] => one.get(..SHORT_ID).unwrap_or(one).to_owned(),
                [first, rest @ ..] => format!("{} +{}", first.get(..SHORT_ID).unwrap_or(first), rest.len()),
            };
            vec![
                entry.started.format("%Y-%m-%d %H:%M:%S").to_string(),
                entry.user.clone(),
                entry.action.clone(),
                entry.env.clone().unwrap_or_default(),
                snapshots,
                entry.result.as_str().to_owned(),
                if entry.duration_ms < 1000 {
                    format!("{} ms", entry.duration_ms)
                } else {
                    format!("{:.1} s", entry.duration_ms as f64 / 1000.0)
                },
                entry.detail.clone().unwrap_or_default(),
            ]
        })
        .collect();
    write!(
        out,
        "{}",
        table(&["When", "Who", "Action", "Environment", "Snapshot", "Result", "Duration", "Detail"], &rows)
    )?;
    Ok(())
}

/// The time a command started, for [`finish`].
pub fn now() -> (DateTime<Utc>, Instant) {
    (super::clock::now().unwrap_or_else(|_| Utc::now()), Instant::now())
}
