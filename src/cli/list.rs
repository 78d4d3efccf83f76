//! `envsnap list`

use std::io::Write;

use anyhow::Result;
use envsnap::jobs::{Job, JobState};
use envsnap::repository::Access;

use super::clock;
use super::context::{Context, Global};
use super::format::{SHORT_ID, SnapshotView, bytes, table};
use super::output::note;

/// Options of `envsnap list`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Only this environment (default: the checked-out branch).
    #[arg(long, value_name = "BRANCH", conflicts_with = "all")]
    pub env: Option<String>,
    /// Every environment.
    #[arg(long)]
    pub all: bool,
    /// Print JSON: an array of snapshot objects.
    #[arg(long)]
    pub json: bool,
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    pub format: Format,
    /// Only these columns, comma-separated, by name (e.g. `created,id,size`).
    #[arg(long, value_delimiter = ',', value_name = "COLUMNS")]
    pub columns: Vec<String>,
}

/// How rows are laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Aligned columns.
    Table,
    /// Comma-separated values.
    Csv,
    /// Tab-separated values.
    Tsv,
}

/// Days a failed job stays in the listing.
const FAILED_SHOWN_DAYS: i64 = 7;

const COLUMNS: [(&str, &str); 10] = [
    ("created", "Created"),
    ("id", "Snapshot ID"),
    ("env", "Environment"),
    ("commit", "Commit"),
    ("trigger", "Trigger"),
    ("progress", "% Complete"),
    ("state", "State"),
    ("result", "Result"),
    ("restorable", "Restorable"),
    ("size", "Size"),
];

pub fn run(global: &Global, args: &Args) -> Result<()> {
    let context = Context::discover(global)?;
    let env = if args.all { None } else { Some(context.workspace.environment(args.env.as_deref())?) };
    let repository = context.open(Access::Read)?;
    let snapshots = repository.snapshots(env.as_deref())?;
    // Jobs that have no snapshot: waiting, running, or failed in the last week.
    let recent = clock::now()? - chrono::Duration::days(FAILED_SHOWN_DAYS);
    let jobs: Vec<Job> = repository
        .jobs(env.as_deref())?
        .into_iter()
        .filter(|job| match job.state {
            JobState::Queued | JobState::Running => true,
            JobState::Failed => job.created >= recent,
            JobState::Complete => false,
        })
        .collect();
    let mut views: Vec<SnapshotView> =
        jobs.iter().map(SnapshotView::of_job).chain(snapshots.iter().map(SnapshotView::of)).collect();
    // RFC 3339 in UTC with whole seconds sorts as text; newest first.
    views.sort_by(|a, b| b.created.cmp(&a.created));
    let mut out = std::io::stdout().lock();
    if args.json {
        serde_json::to_writer_pretty(&mut out, &views)?;
        writeln!(out)?;
        return Ok(());
    }
    let chosen: Vec<usize> = if args.columns.is_empty() {
        (0..COLUMNS.len()).collect()
    } else {
        args.columns
            .iter()
            .map(|name| {
                COLUMNS.iter().position(|(key, _)| key.eq_ignore_ascii_case(name.trim())).ok_or_else(|| {
                    let known: Vec<&str> = COLUMNS.iter().map(|(key, _)| *key).collect();
                    anyhow::anyhow!("unknown column `{name}`; columns: {}", known.join(", "))
                })
            })
            .collect::<Result<_>>()?
    };
    let rows: Vec<Vec<String>> = views
        .into_iter()
        .map(|view| {
            let cells = [
                view.created.replace('T', " ").trim_end_matches('Z').to_owned(),
                view.id.get(..SHORT_ID).unwrap_or(&view.id).to_owned(),
                view.env,
                view.commit.map(|commit| commit.chars().take(10).collect()).unwrap_or_else(|| "-".into()),
                view.trigger.to_owned(),
                view.progress.to_string(),
                view.state.to_owned(),
                view.result.unwrap_or("-").to_owned(),
                if view.restorable { "true" } else { "false" }.to_owned(),
                bytes(view.size),
            ];
            chosen.iter().map(|index| cells[*index].clone()).collect()
        })
        .collect();
    let header: Vec<&str> = chosen.iter().map(|index| COLUMNS[*index].1).collect();
    match args.format {
        Format::Table => {
            if rows.is_empty() {
                let scope = env.map(|env| format!(" of environment {env}")).unwrap_or_default();
                note!("no snapshots{scope} yet: take one with `envsnap backup`");
                return Ok(());
            }
            write!(out, "{}", table(&header, &rows))?;
        }
        Format::Csv | Format::Tsv => {
            let separator = if args.format == Format::Csv { "," } else { "\t" };
            writeln!(out, "{}", header.join(separator))?;
            for row in rows {
                let cells: Vec<String> = row.iter().map(|cell| quote(cell, separator)).collect();
                writeln!(out, "{}", cells.join(separator))?;
            }
        }
    }
    Ok(())
}

fn quote(cell: &str, separator: &str) -> String {
    if cell.contains(separator) || cell.contains('"') || cell.contains('\n') {
        format!("\"{}\"", cell.replace('"', "\"\""))
    } else {
        cell.to_owned()
    }
}
