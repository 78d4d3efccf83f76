//! Backups as jobs: `queued` while they wait for the repository, `running` with a
//! progress figure, then `complete` or `failed`.
//!
//! Every snapshot is recorded as a job in the catalog before it starts, so that
//! `list` and `status` show what is waiting and what is running, and `wait` can
//! follow a backup started with `--no-wait`. The process that runs a job holds an
//! exclusive `flock` on `jobs/<id>.lock` in the repository for as long as it lives;
//! the kernel drops it when the process dies, however it dies. So a job left
//! `queued` or `running` whose lock anyone can take is dead, and the next command
//! that looks marks it `failed` ([`reap`]): the catalog never claims a dead
//! process is still at work. Jobs run in the order they were asked for
//! ([`wait_for_turn`]), and their records go [`RECORD_DAYS`] after they end.

use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::activity::{Activity, Outcome};
use crate::catalog::Catalog;
use crate::error::Result;
use crate::id::ObjectId;
use crate::snapshot::{Mode, Trigger};
use crate::store::lock::{LockKind, RepositoryLock};

/// Where a job is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    /// Waiting for the repository, behind another writer.
    Queued,
    /// Capturing data.
    Running,
    /// Its snapshot is published.
    Complete,
    /// It ended without a snapshot; [`Job::error`] says why.
    Failed,
}

impl JobState {
    /// The word stored and shown.
    pub const fn as_str(self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Running => "running",
            JobState::Complete => "complete",
            JobState::Failed => "failed",
        }
    }

    /// The state a stored word names; anything unknown counts as failed.
    pub fn parse(text: &str) -> Self {
        match text {
            "queued" => JobState::Queued,
            "running" => JobState::Running,
            "complete" => JobState::Complete,
            _ => JobState::Failed,
        }
    }

    /// Whether the job has ended.
    pub const fn ended(self) -> bool {
        matches!(self, JobState::Complete | JobState::Failed)
    }
}

/// One backup job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    /// Its id: 64 hex digits, like a snapshot's, and accepted wherever one is.
    pub id: String,
    /// The environment.
    pub env: String,
    /// The environment's commit.
    pub commit: Option<String>,
    /// Why it runs.
    pub trigger: Trigger,
    /// Consistent or live.
    pub mode: Mode,
    /// When it was asked for.
    pub created: DateTime<Utc>,
    /// Where it is.
    pub state: JobState,
    /// 0–100: bytes captured against the size of the environment's last snapshot, or
    /// without one against a count of the mounts' bytes (never 100 before it is
    /// complete).
    pub progress: u8,
    /// The note its snapshot will carry.
    pub note: Option<String>,
    /// Days retention must keep its snapshot (`--keep-for`, or the configured default).
    pub keep_for: Option<u32>,
    /// Who asked for it: git's `user.email`, else the login name.
    pub user: String,
    /// The machine it was asked for on.
    pub host: String,
    /// When it started running.
    pub started: Option<DateTime<Utc>>,
    /// When its process last showed it was at work (started, or wrote its progress).
    pub seen: Option<DateTime<Utc>>,
    /// When it ended.
    pub finished: Option<DateTime<Utc>>,
    /// The snapshot it made.
    pub snapshot: Option<String>,
    /// Why it failed.
    pub error: Option<String>,
}

impl Job {
    /// A new queued job of `env`, asked for at `created` by `user` on `host`.
    pub fn new(request: JobRequest<'_>, created: DateTime<Utc>) -> Self {
        let JobRequest { env, commit, trigger, mode, note, keep_for, user, host } = request;
        let seed = format!(
            "{env}\0{}\0{}\0{:?}",
            created.timestamp_nanos_opt().unwrap_or_default(),
            std::process::id(),
            std::time::SystemTime::now()
        );
        Job {
            id: ObjectId::of(seed.as_bytes()).to_hex(),
            env: env.to_owned(),
            commit,
            trigger,
            mode,
            created,
            state: JobState::Queued,
            progress: 0,
            note,
            keep_for,
            user: user.to_owned(),
            host: host.to_owned(),
            started: None,
            seen: None,
            finished: None,
            snapshot: None,
            error: None,
        }
    }
}

/// What a new job is asked to do, and by whom.
#[derive(Debug, Clone)]
pub struct JobRequest<'a> {
    /// The environment.
    pub env: &'a str,
    /// The environment's commit.
    pub commit: Option<String>,
    /// Why it runs.
    pub trigger: Trigger,
    /// Consistent or live.
    pub mode: Mode,
    /// The note its snapshot will carry.
    pub note: Option<String>,
    /// Days retention must keep its snapshot.
    pub keep_for: Option<u32>,
    /// Who asks.
    pub user: &'a str,
    /// The machine asked on.
    pub host: &'a str,
}

/// The lock file of job `id` in the repository at `root`.
pub fn lock_path(root: &Path, id: &str) -> PathBuf {
    root.join("jobs").join(format!("{id}.lock"))
}

/// Takes the lock that says job `id` is alive, creating `jobs/` if need be. The job
/// is alive while the returned file, or any process it is handed to (as a child's
/// standard input, say), keeps it open: closing it in one process does not unlock it
/// while another holds it.
pub fn hold(root: &Path, id: &str) -> Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    let path = lock_path(root, id);
    if let Some(parent) = path.parent() {
        crate::store::backend::create_private_dir_all(parent)
            .map_err(|error| crate::Error::io("creating", parent, error))?;
    }
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(crate::store::backend::PRIVATE_FILE)
        .open(&path)
        .map_err(|error| crate::Error::io("opening", &path, error))?;
    file.lock().map_err(|error| crate::Error::io("locking", &path, error))?;
    Ok(file)
}

/// What a dead job's error says.
pub const DIED: &str = "the process running it ended before the snapshot was complete (killed, crashed, \
                        or the machine stopped); nothing of it was published: take the snapshot again";

/// Days the record of an ended job is kept: `wait` and the commands that accept a
/// job's id need it for a while after the job ends, nobody for long.
pub const RECORD_DAYS: i64 = 30;

/// Records the end of job `id` — complete with `snapshot`, or failed with `error` —
/// and removes its lock file, and its log when it completed (a failed job's log
/// stays, for whoever looks into why, until the record goes).
pub fn finish(
    root: &Path,
    catalog: &Catalog,
    id: &str,
    snapshot: Option<&ObjectId>,
    error: Option<&str>,
) -> Result<()> {
    catalog.finish_job(id, Utc::now(), snapshot, error)?;
    // The job has ended in the catalog first: a reaper that finds the file gone
    // finds the job ended too, and leaves it be.
    let path = lock_path(root, id);
    let _ = std::fs::remove_file(&path);
    if snapshot.is_some() {
        let _ = std::fs::remove_file(path.with_extension("log"));
    }
    Ok(())
}

/// Marks `failed` every job left `queued` or `running` whose process is gone, records
/// each in the activity log as the failed backup it was, and forgets the records of
/// jobs that ended more than [`RECORD_DAYS`] ago. Returns how many it marked.
pub fn reap(root: &Path, catalog: &Catalog) -> Result<usize> {
    let mut reaped = 0;
    for job in catalog.unfinished_jobs(None)? {
        if alive(root, &job.id)? {
            continue;
        }
        let now = Utc::now();
        if catalog.fail_dead_job(&job.id, now, DIED)? {
            let _ = std::fs::remove_file(lock_path(root, &job.id));
            // The process that died could not say so itself. It ran until its last
            // sign of life, as far as anyone can tell, not until it was found dead.
            let until = job.seen.unwrap_or(job.created);
            catalog.record(&Activity {
                started: job.created,
                duration_ms: u64::try_from((until - job.created).num_milliseconds()).unwrap_or(0),
                user: job.user.clone(),
                host: job.host.clone(),
                action: "backup".to_owned(),
                env: Some(job.env.clone()),
                snapshots: Vec::new(),
                result: Outcome::Failure,
                detail: Some(DIED.to_owned()),
            })?;
            reaped += 1;
        }
    }
    for id in catalog.remove_jobs_ended_before(Utc::now() - chrono::Duration::days(RECORD_DAYS))? {
        let path = lock_path(root, &id);
        let _ = std::fs::remove_file(&path);
        let _ = std::fs::remove_file(path.with_extension("log"));
    }
    Ok(reaped)
}

/// Whether the process of job `id` still holds its lock. Taking the lock proves
/// nobody holds it. A job whose file is gone never had a process that took it, or lost
/// it to [`reap`] after it ended.
fn alive(root: &Path, id: &str) -> Result<bool> {
    let path = lock_path(root, id);
    if std::fs::metadata(&path).is_err() {
        return Ok(false);
    }
    Ok(RepositoryLock::acquire_within(&path, LockKind::Exclusive, Duration::ZERO, &mut |_| {})?.is_none())
}

/// Waits until job `id` is first in line: until no job queued before it, of any
/// environment, is still queued or running. Writers take the repository one at a time
/// and the lock wakes its waiters in no particular order, so without this a backup
/// asked for later could go first. Jobs whose process died are reaped as it waits, so
/// a killed job holds up nobody. `waiting` is called once, with the job ahead, if it
/// has to wait. The catalog is opened anew each time it looks: `repair` may replace
/// its file meanwhile, and the old one would never see the job ahead end.
pub fn wait_for_turn(root: &Path, id: &str, waiting: &mut dyn FnMut(&Job)) -> Result<()> {
    let mut told = false;
    loop {
        let catalog = Catalog::open(&root.join(crate::repository::CATALOG))?;
        reap(root, &catalog)?;
        let Some(ahead) = catalog.job_ahead_of(id)? else { return Ok(()) };
        if !told {
            waiting(&ahead);
            told = true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type TestResult = std::result::Result<(), Box<dyn std::error::Error>>;

    fn job(env: &str, created: DateTime<Utc>) -> Job {
        let request = JobRequest {
            env,
            commit: None,
            trigger: Trigger::Manual,
            mode: Mode::Live,
            note: None,
            keep_for: None,
            user: "ann",
            host: "box",
        };
        Job::new(request, created)
    }

    #[test]
    fn reap_fails_the_dead_spares_the_living_and_forgets_the_old() -> TestResult {
        let dir = tempfile::tempdir()?;
        let catalog = Catalog::open(&dir.path().join("catalog.sqlite"))?;
        let now = Utc::now();
        let living = job("main", now);
        let _held = hold(dir.path(), &living.id)?;
        catalog.add_job(&living)?;
        catalog.start_job(&living.id, now)?;
        // A lock file nobody holds: its process is gone.
        let dead = job("feature", now);
        drop(hold(dir.path(), &dead.id)?);
        catalog.add_job(&dead)?;
        let old = job("main", now - chrono::Duration::days(RECORD_DAYS + 2));
        catalog.add_job(&old)?;
        catalog.finish_job(&old.id, now - chrono::Duration::days(RECORD_DAYS + 1), None, Some("it failed"))?;
        let recent = job("main", now - chrono::Duration::days(2));
        catalog.add_job(&recent)?;
        catalog.finish_job(&recent.id, now - chrono::Duration::days(1), None, Some("it failed too"))?;

        assert_eq!(reap(dir.path(), &catalog)?, 1);
        let states: Vec<(String, JobState)> = catalog.jobs(None)?.into_iter().map(|job| (job.id, job.state)).collect();
        // Newest recorded first; the old record is gone.
        assert_eq!(
            states,
            [
                (recent.id, JobState::Failed),
                (dead.id.clone(), JobState::Failed),
                (living.id.clone(), JobState::Running)
            ]
        );
        assert!(!lock_path(dir.path(), &dead.id).exists());
        let logged = catalog.activities(None, None)?;
        assert_eq!(logged.len(), 1);
        assert_eq!((logged[0].env.as_deref(), logged[0].result), (Some("feature"), Outcome::Failure));
        assert_eq!((logged[0].user.as_str(), logged[0].host.as_str()), ("ann", "box"));
        // Nothing more to do the second time.
        assert_eq!(reap(dir.path(), &catalog)?, 0);
        assert_eq!(catalog.activities(None, None)?.len(), 1);
        Ok(())
    }

    #[test]
    fn a_job_waits_for_those_asked_for_before_it_of_any_environment() -> TestResult {
        let dir = tempfile::tempdir()?;
        let catalog = Catalog::open(&dir.path().join("catalog.sqlite"))?;
        let now = Utc::now();
        let (first, second, third) = (job("main", now), job("staging", now), job("main", now));
        let mut locks = Vec::new();
        for job in [&first, &second, &third] {
            locks.push(hold(dir.path(), &job.id)?);
            catalog.add_job(job)?;
        }
        assert_eq!(catalog.job_ahead_of(&first.id)?, None);
        assert_eq!(catalog.job_ahead_of(&third.id)?.map(|job| job.id), Some(first.id.clone()));
        finish(dir.path(), &catalog, &first.id, Some(&ObjectId::of(b"snapshot")), None)?;
        assert!(!lock_path(dir.path(), &first.id).exists(), "an ended job's lock file goes");
        assert_eq!(catalog.job_ahead_of(&third.id)?.map(|job| job.id), Some(second.id.clone()));
        // The second's process dies: waiting reaps it, and the third goes.
        drop(locks.remove(1));
        wait_for_turn(dir.path(), &third.id, &mut |_| {})?;
        assert_eq!(catalog.jobs_with_prefix(&second.id)?[0].state, JobState::Failed);
        Ok(())
    }
}
