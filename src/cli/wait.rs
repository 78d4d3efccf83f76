//! `envsnap wait`

use std::time::Duration;

use anyhow::{Result, bail};
use envsnap::catalog::Catalog;
use envsnap::jobs::{self, JobState};
use envsnap::repository::Access;

use super::context::{Context, Global};
use super::format::SHORT_ID;
use super::output::note;
use super::progress::percent_bar;
use super::take::jobs_catalog;

/// Options of `envsnap wait`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The job `backup --no-wait` printed (at least 4 characters), a snapshot id, or
    /// `latest`: the newest backup job of the environment.
    pub id: String,
    /// The environment `latest` refers to (default: the checked-out branch).
    #[arg(long, value_name = "BRANCH")]
    pub env: Option<String>,
}

/// How often the job's record is read.
const POLL: Duration = Duration::from_millis(200);

/// Waits for the job to end; prints its snapshot's id, or fails with its error.
///
/// It reads the catalog alone, opened anew at each look, and holds no lock: a wait
/// must not hold back a `prune` (which waits for the repository's readers), and a
/// `repair` may replace the catalog's file while it waits.
pub fn run(global: &Global, args: &Args) -> Result<()> {
    let context = Context::discover(global)?;
    let root = &context.repository_path;
    let look = || -> Result<Catalog> {
        let catalog = jobs_catalog(&context)?;
        jobs::reap(root, &catalog)?;
        Ok(catalog)
    };
    let id = if args.id == "latest" {
        let env = context.workspace.environment(args.env.as_deref())?;
        match look()?.jobs(Some(&env))?.into_iter().next() {
            Some(job) => job.id,
            None => bail!("no backup of `{env}` has been started as a job yet: nothing to wait for"),
        }
    } else if args.id.len() < 4 || args.id.len() > 64 || !args.id.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(envsnap::Error::InvalidId { id: args.id.clone() }.into());
    } else {
        args.id.to_ascii_lowercase()
    };
    let short = id.get(..SHORT_ID).unwrap_or(&id);
    let mut said = None;
    let mut bar = None;
    loop {
        let jobs = look()?.jobs_with_prefix(&id)?;
        let job = match jobs.as_slice() {
            [job] => job,
            [] => {
                // A snapshot has no job to wait for: it is complete.
                let repository = context.open(Access::Read)?;
                let snapshot = context.resolve(&repository, &id, None)?;
                println!("{}", snapshot.id);
                return Ok(());
            }
            _ => bail!("`{id}` matches {} jobs: give more characters of the id", jobs.len()),
        };
        // On a terminal, a running job's percent as a bar.
        if job.state == JobState::Running {
            if bar.is_none() {
                bar = percent_bar(format!("backup of {}", job.env));
            }
            if let Some(bar) = &bar {
                bar.set_position(u64::from(job.progress));
            }
        }
        if job.state.ended()
            && let Some(bar) = bar.take()
        {
            bar.finish_and_clear();
        }
        match job.state {
            JobState::Complete => {
                println!("{}", job.snapshot.as_deref().unwrap_or_default());
                return Ok(());
            }
            JobState::Failed => bail!(
                "the backup of {} ({short}) failed: {}",
                job.env,
                job.error.as_deref().unwrap_or("no reason was recorded")
            ),
            state @ (JobState::Queued | JobState::Running) => {
                // A bar says it all, once there is one.
                if said != Some(state) && bar.is_none() {
                    note!("waiting for the backup of {} ({short}): {}", job.env, state.as_str());
                    said = Some(state);
                }
            }
        }
        std::thread::sleep(POLL);
    }
}
