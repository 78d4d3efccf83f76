//! `forget`: the retention plan for a repository's snapshots, and carrying it out.
//!
//! [`crate::retention::plan`] decides from facts alone; this module gathers them —
//! the snapshots, the pins, which branches still exist and since when the others
//! are gone — and deletes what the plan lets go. The data of a forgotten snapshot
//! stays in the store until `prune` frees what no snapshot uses.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};

use crate::config::EnvironmentType;
use crate::error::Result;
use crate::repository::Repository;
use crate::retention::{self, Candidate, Decision, Policy};
use crate::snapshot::{Snapshot, Trigger};

/// What forget knows of the environments from git and the configuration.
pub struct Environments<'a> {
    /// The branches that exist.
    pub existing: &'a HashSet<String>,
    /// The type of a branch's environment.
    pub env_type: &'a dyn Fn(&str) -> EnvironmentType,
}

/// One snapshot and what the plan decided for it.
#[derive(Debug, Clone)]
pub struct Planned {
    /// The snapshot.
    pub snapshot: Snapshot,
    /// Whether it stays, and why.
    pub decision: Decision,
}

/// The plan for the snapshots of environment `env` (every environment when `None`),
/// ordered by environment, then newest first.
///
/// A branch without git branch is gone from the first time forget sees it so: with
/// `record`, that time is written to the repository (and forgotten again for a
/// branch that came back), so that the deleted-branch days count from it. Without
/// `record` (a dry run) nothing is written, and a branch not yet recorded counts as
/// gone from `now`.
pub fn plan(
    repository: &Repository,
    policy: &Policy,
    environments: &Environments<'_>,
    env: Option<&str>,
    now: DateTime<Utc>,
    record: bool,
) -> Result<Vec<Planned>> {
    let snapshots = repository.snapshots(env)?;
    let pinned = repository.pinned()?;
    let mut gone = repository.branches_gone()?;
    let mut newest: HashMap<&str, DateTime<Utc>> = HashMap::new();
    for snapshot in &snapshots {
        let created = newest.entry(snapshot.manifest.env.as_str()).or_insert(snapshot.manifest.created);
        *created = (*created).max(snapshot.manifest.created);
    }
    for (name, newest) in newest {
        let exists = environments.existing.contains(name);
        // A snapshot taken after the branch was seen gone means it came back since,
        // though no forget saw it back: it was deleted again, later, and its days
        // count afresh.
        if !exists && gone.get(name).is_some_and(|since| *since < newest) {
            gone.remove(name);
        }
        match (exists, gone.contains_key(name)) {
            (true, true) => {
                gone.remove(name);
                if record {
                    repository.unmark_gone(name)?;
                }
            }
            (false, false) => {
                gone.insert(name.to_owned(), now);
                if record {
                    repository.mark_gone(name, now)?;
                }
            }
            _ => {}
        }
    }

    let candidates: Vec<Candidate> = snapshots
        .iter()
        .map(|snapshot| {
            let manifest = &snapshot.manifest;
            Candidate {
                id: snapshot.id.to_hex(),
                env: manifest.env.clone(),
                env_type: (environments.env_type)(&manifest.env),
                created: manifest.created,
                trigger: manifest.trigger,
                expires: manifest.expires,
                pinned: pinned.contains(&snapshot.id),
                branch_gone_since: gone.get(&manifest.env).copied(),
            }
        })
        .collect();
    let mut by_id: HashMap<String, Snapshot> =
        snapshots.into_iter().map(|snapshot| (snapshot.id.to_hex(), snapshot)).collect();
    Ok(retention::plan(&candidates, policy, now)
        .into_iter()
        .filter_map(|decision| by_id.remove(&decision.id).map(|snapshot| Planned { snapshot, decision }))
        .collect())
}

/// Deletes the snapshots `planned` lets go, calling `deleted` after each; returns how
/// many went.
pub fn apply(repository: &Repository, planned: &[Planned], deleted: &mut dyn FnMut(&Snapshot)) -> Result<usize> {
    let mut count = 0;
    for planned in planned.iter().filter(|planned| !planned.decision.keep) {
        repository.delete(&planned.snapshot.id)?;
        deleted(&planned.snapshot);
        count += 1;
    }
    Ok(count)
}

/// The manual snapshots of `env`, newest first: what a manual limit counts.
pub fn manual_snapshots(repository: &Repository, env: &str) -> Result<Vec<Snapshot>> {
    let mut snapshots: Vec<Snapshot> = repository
        .snapshots(Some(env))?
        .into_iter()
        .filter(|snapshot| snapshot.manifest.trigger == Trigger::Manual)
        .collect();
    snapshots.sort_by(|a, b| b.manifest.created.cmp(&a.manifest.created).then(a.id.cmp(&b.id)));
    Ok(snapshots)
}
