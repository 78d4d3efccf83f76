//! `envsnap wait`

use std::time::Duration;

use anyhow::{Result, bail};
use envsnap::jobs::JobState;
use envsnap::repository::Access;

use super::context::{Context, Global};
use super::format::SHORT_ID;
use super::output::note;
use super::progress::percent_bar;

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
pub fn run(global: &Global, args: &Args) -> Result<()> {
    let context = Context::discover(global)?;
    let repository = context.open(Access::Read)?;
    let id = if args.id == "latest" {
        let env = context.workspace.environment(args.env.as_deref())?;
        match repository.jobs(Some(&env))?.into_iter().next() {
            Some(job) => job.id,
            None => bail!("no backup of `{env}` has been started as a job yet: nothing to wait for"),
        }
    } else {
        args.id.to_ascii_lowercase()
    };
    let short = id.get(..SHORT_ID).unwrap_or(&id);
    let mut said = None;
    let mut bar = None;
    loop {
        let jobs = repository.jobs_with_prefix(&id)?;
        let job = match jobs.as_slice() {
            [job] => job,
            [] => {
                // A snapshot has no job to wait for: it is complete.
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
