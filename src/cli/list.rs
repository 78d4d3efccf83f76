//! `envsnap list`

use std::io::Write;

use anyhow::Result;
use envsnap::repository::Access;

use super::context::{Context, Global};
use super::format::{SHORT_ID, SnapshotView, bytes, table};

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
    let mut out = std::io::stdout().lock();
    if args.json {
        let views: Vec<SnapshotView> = snapshots.iter().map(SnapshotView::of).collect();
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
    let rows: Vec<Vec<String>> = snapshots
        .iter()
        .map(|snapshot| {
            let view = SnapshotView::of(snapshot);
            let cells = [
                snapshot.manifest.created.format("%Y-%m-%d %H:%M:%S").to_string(),
                snapshot.id.short(SHORT_ID),
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
                eprintln!("no snapshots{scope} yet: take one with `envsnap backup`");
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
