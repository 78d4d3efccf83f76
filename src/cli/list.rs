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
    /// Only these columns, comma-separated, in this order (e.g. `created,id,size`);
    /// besides the default ones: elements, pinned, note, expires, mode, stored.
    #[arg(long, value_enum, value_delimiter = ',', value_name = "COLUMNS", ignore_case = true)]
    pub columns: Vec<Column>,
}

/// A column of the listing, by the name `--columns` takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Column {
    /// When it was taken (or asked for, while it waits).
    Created,
    /// The snapshot's id (a job's, until it has a snapshot).
    Id,
    /// The environment.
    Env,
    /// The commit, abbreviated.
    Commit,
    /// Why it was taken.
    Trigger,
    /// % Complete.
    Progress,
    /// queued, running, complete or failed.
    State,
    /// success, failure, or `-` while it runs.
    Result,
    /// Whether it can be restored.
    Restorable,
    /// The bytes captured.
    Size,
    /// The elements it holds, `(partial)` after those of a `--element` snapshot.
    Elements,
    /// Whether it is pinned.
    Pinned,
    /// The note given with `--note`.
    Note,
    /// When retention may remove it (`--keep-for`), or `-`.
    Expires,
    /// consistent or live.
    Mode,
    /// The new bytes it added to the repository.
    Stored,
}

impl Column {
    /// The columns shown without `--columns`: the platforms' listing, then what
    /// tells snapshots of one environment apart.
    const DEFAULT: [Column; 13] = [
        Column::Created,
        Column::Id,
        Column::Env,
        Column::Commit,
        Column::Trigger,
        Column::Progress,
        Column::State,
        Column::Result,
        Column::Restorable,
        Column::Size,
        Column::Elements,
        Column::Pinned,
        Column::Note,
    ];

    /// Its heading.
    const fn title(self) -> &'static str {
        match self {
            Column::Created => "Created",
            Column::Id => "Snapshot ID",
            Column::Env => "Environment",
            Column::Commit => "Commit",
            Column::Trigger => "Trigger",
            Column::Progress => "% Complete",
            Column::State => "State",
            Column::Result => "Result",
            Column::Restorable => "Restorable",
            Column::Size => "Size",
            Column::Elements => "Elements",
            Column::Pinned => "Pinned",
            Column::Note => "Note",
            Column::Expires => "Expires",
            Column::Mode => "Mode",
            Column::Stored => "Stored",
        }
    }
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
    // What `check` last found: a snapshot it found damaged is not restorable.
    let damage = repository.damage()?;
    let pinned = repository.pinned()?;
    let mut views: Vec<SnapshotView> = jobs
        .iter()
        .map(SnapshotView::of_job)
        .chain(
            snapshots
                .iter()
                .map(|snapshot| SnapshotView::of_checked(snapshot, damage.get(&snapshot.id)).pinned_among(&pinned)),
        )
        .collect();
    // RFC 3339 in UTC with whole seconds sorts as text; newest first.
    views.sort_by(|a, b| b.created.cmp(&a.created));
    let mut out = std::io::stdout().lock();
    if args.json {
        serde_json::to_writer_pretty(&mut out, &views)?;
        writeln!(out)?;
        return Ok(());
    }
    let chosen: &[Column] = if args.columns.is_empty() { &Column::DEFAULT } else { &args.columns };
    // A table is for people; CSV and TSV are for programs: RFC 3339 times with their
    // zone, sizes in bytes.
    let machine = args.format != Format::Table;
    let time = |rfc3339: &str| {
        if machine { rfc3339.to_owned() } else { rfc3339.replace('T', " ").trim_end_matches('Z').to_owned() }
    };
    let size = |count: u64| if machine { count.to_string() } else { bytes(count) };
    let none = || if machine { String::new() } else { "-".to_owned() };
    let rows: Vec<Vec<String>> = views
        .into_iter()
        .map(|view| {
            let cell = |column: &Column| match column {
                Column::Created => time(&view.created),
                Column::Id => view.id.get(..SHORT_ID).unwrap_or(&view.id).to_owned(),
                Column::Env => view.env.clone(),
                Column::Commit => {
                    view.commit.as_ref().map(|commit| commit.chars().take(10).collect()).unwrap_or_else(|| "-".into())
                }
                Column::Trigger => view.trigger.to_owned(),
                Column::Progress => view.progress.to_string(),
                Column::State => view.state.to_owned(),
                Column::Result => view.result.unwrap_or("-").to_owned(),
                Column::Restorable => view.restorable.to_string(),
                Column::Size => size(view.size),
                Column::Elements => {
                    let names: Vec<&str> = view.elements.iter().map(|element| element.name.as_str()).collect();
                    match (names.is_empty(), view.partial) {
                        (true, _) => "-".to_owned(),
                        (false, true) => format!("{} (partial)", names.join(" ")),
                        (false, false) => names.join(" "),
                    }
                }
                Column::Pinned => view.pinned.to_string(),
                Column::Note => match &view.note {
                    // One line in a table, whatever the note holds.
                    Some(note) if !machine => note.replace(['\n', '\r', '\t'], " "),
                    Some(note) => note.clone(),
                    None => none(),
                },
                Column::Expires => view.expires.as_deref().map_or_else(none, time),
                Column::Mode => view.mode.to_owned(),
                Column::Stored => size(view.stored),
            };
            chosen.iter().map(cell).collect()
        })
        .collect();
    let header: Vec<&str> = chosen.iter().map(|column| column.title()).collect();
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
