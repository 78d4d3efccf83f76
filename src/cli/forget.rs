//! `envsnap forget`

use std::io::Write;

use anyhow::{Result, bail};
use chrono::SecondsFormat;
use envsnap::forget::{self, Environments, Planned};
use envsnap::repository::{Access, Repository};
use serde::Serialize;

use super::activity;
use super::clock;
use super::context::{Context, Global};
use super::format::{SHORT_ID, counted, table};
use super::output::note;
use super::prune;

/// Options of `envsnap forget`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Say what would go and what stays, and delete nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Only the snapshots of this environment (default: every environment).
    #[arg(long, value_name = "BRANCH")]
    pub env: Option<String>,
    /// Print the plan as JSON: one object per snapshot.
    #[arg(long)]
    pub json: bool,
    /// Then free the space the forgotten snapshots used (`envsnap prune`).
    #[arg(long, conflicts_with = "dry_run")]
    pub prune: bool,
}

/// One snapshot of the plan, as `--json` prints it.
#[derive(Serialize)]
struct PlannedView<'a> {
    id: String,
    env: &'a str,
    created: String,
    trigger: String,
    keep: bool,
    reasons: Vec<String>,
}

pub fn run(global: &Global, args: &Args) -> Result<()> {
    let context = Context::discover(global)?;
    if let Some(env) = &args.env {
        activity::env(env);
    }
    let repository = context.open(if args.dry_run { Access::Read } else { Access::Write })?;
    let planned = plan(&context, &repository, args.env.as_deref(), !args.dry_run)?;
    // A misspelt --env would plan nothing and look like a policy that keeps all.
    if let Some(env) = &args.env
        && planned.is_empty()
    {
        let known: std::collections::BTreeSet<String> =
            repository.snapshots(None)?.into_iter().map(|snapshot| snapshot.manifest.env).collect();
        let known: Vec<String> = known.into_iter().collect();
        anyhow::bail!(
            "no snapshot of environment `{env}` in the repository; its environments are: {}",
            if known.is_empty() { "none yet".to_owned() } else { known.join(", ") }
        );
    }
    let mut out = std::io::stdout().lock();
    if args.json {
        let views: Vec<PlannedView<'_>> = planned.iter().map(view).collect();
        serde_json::to_writer_pretty(&mut out, &views)?;
        writeln!(out)?;
    } else {
        write!(out, "{}", describe(&planned))?;
    }
    let going = planned.iter().filter(|planned| !planned.decision.keep).count() as u64;
    if args.dry_run {
        note!("would forget {}; nothing was deleted (dry run)", counted(going, "snapshot", "snapshots"));
        return Ok(());
    }
    let forgotten = forget::apply(&repository, &planned, &mut |snapshot| activity::snapshot(&snapshot.id))? as u64;
    activity::detail(format!("forgot {}", counted(forgotten, "snapshot", "snapshots")));
    note!("forgot {}", counted(forgotten, "snapshot", "snapshots"));
    if args.prune {
        let prune_args = prune::Args { dry_run: false, wait: prune::DEFAULT_WAIT };
        // With --json, stdout holds the plan alone, so that it parses.
        if args.json {
            prune::prune(&repository, &prune_args, &mut std::io::stderr().lock())?;
        } else {
            prune::prune(&repository, &prune_args, &mut out)?;
        }
    } else if forgotten > 0 {
        note!("their data stays in the repository until `envsnap prune` frees what no snapshot uses");
    }
    Ok(())
}

/// The retention plan of the configuration for `env` (every environment when `None`);
/// with `record`, newly deleted branches are recorded as such.
pub fn plan(context: &Context, repository: &Repository, env: Option<&str>, record: bool) -> Result<Vec<Planned>> {
    let config = context.config()?;
    let Some(retention) = config.retention() else {
        bail!(
            "{} has no [retention] table, so envsnap does not know which snapshots to keep and forgets none; \
             add one, e.g. `[retention]` with `preset = \"essential\"` (docs/RETENTION.md lists the rules)",
            context.work_tree().join(envsnap::config::FILE_NAME).display()
        );
    };
    let existing = envsnap::git::branch::existing_branches(context.work_tree())?;
    let env_type = |branch: &str| config.environment_type(branch);
    let environments = Environments { existing: &existing, env_type: &env_type };
    Ok(forget::plan(repository, &retention.policy, &environments, env, clock::now()?, record)?)
}

/// The plan as a table per environment: each snapshot, whether it stays, and why.
pub fn describe(planned: &[Planned]) -> String {
    let mut text = String::new();
    for environment in planned.chunk_by(|a, b| a.snapshot.manifest.env == b.snapshot.manifest.env) {
        let env = &environment[0].snapshot.manifest.env;
        let kept = environment.iter().filter(|planned| planned.decision.keep).count() as u64;
        text.push_str(&format!(
            "{env}: keeping {kept} of {}\n",
            counted(environment.len() as u64, "snapshot", "snapshots")
        ));
        let rows: Vec<Vec<String>> = environment
            .iter()
            .map(|planned| {
                let manifest = &planned.snapshot.manifest;
                vec![
                    if planned.decision.keep { "keep" } else { "forget" }.to_owned(),
                    manifest.created.format("%Y-%m-%d %H:%M").to_string(),
                    planned.snapshot.id.short(SHORT_ID),
                    manifest.trigger.to_string(),
                    reasons(planned).join("; "),
                ]
            })
            .collect();
        text.push_str(&table(&["", "Created", "Snapshot ID", "Trigger", "Why"], &rows));
        text.push('\n');
    }
    text
}

fn reasons(planned: &Planned) -> Vec<String> {
    planned.decision.reasons.iter().map(ToString::to_string).collect()
}

fn view(planned: &Planned) -> PlannedView<'_> {
    let manifest = &planned.snapshot.manifest;
    PlannedView {
        id: planned.snapshot.id.to_hex(),
        env: &manifest.env,
        created: manifest.created.to_rfc3339_opts(SecondsFormat::Secs, true),
        trigger: manifest.trigger.to_string(),
        keep: planned.decision.keep,
        reasons: reasons(planned),
    }
}
