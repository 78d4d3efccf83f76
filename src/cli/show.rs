//! `envsnap show`

use std::io::Write;

use anyhow::Result;
use chrono::SecondsFormat;
use envsnap::repository::Access;

use super::context::{Context, Global};
use super::format::{SnapshotView, bytes, table};

/// Options of `envsnap show`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The snapshot: an id prefix of at least 4 characters, or `latest`: the newest
    /// complete snapshot of the whole environment taken by a user, a hook or a
    /// schedule (never a safety or --element one).
    pub id: String,
    /// For `latest`: the environment (default: the checked-out branch).
    #[arg(long, value_name = "BRANCH")]
    pub env: Option<String>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn run(global: &Global, args: &Args) -> Result<()> {
    let context = Context::discover(global)?;
    let repository = context.open(Access::Read)?;
    let snapshot = context.resolve(&repository, &args.id, args.env.as_deref())?;
    let mut out = std::io::stdout().lock();
    if args.json {
        serde_json::to_writer_pretty(&mut out, &SnapshotView::of(&snapshot).pinned_among(&repository.pinned()?))?;
        writeln!(out)?;
        return Ok(());
    }
    let manifest = &snapshot.manifest;
    let mut fields = vec![
        ("Snapshot ID", snapshot.id.to_hex()),
        ("Environment", manifest.env.clone()),
        ("Commit", manifest.commit.clone().unwrap_or_else(|| "-".into())),
        ("Created", manifest.created.to_rfc3339_opts(SecondsFormat::Secs, true)),
        ("Trigger", manifest.trigger.to_string()),
        ("Mode", manifest.mode.as_str().to_owned()),
        ("State", "complete".into()),
        ("Taken by", format!("{} on {}", manifest.user, manifest.host)),
        ("Size", bytes(manifest.size())),
        ("Stored", format!("{} new in the repository", bytes(manifest.stored))),
    ];
    if let Some(paused) = manifest.paused_ms {
        fields.push(("Paused", format!("{:.2} s", paused as f64 / 1000.0)));
    }
    if let Some(duration) = manifest.duration_ms {
        fields.push(("Duration", format!("{:.2} s", duration as f64 / 1000.0)));
    }
    if let Some(note) = &manifest.note {
        fields.push(("Note", note.clone()));
    }
    if let Some(expires) = manifest.expires {
        fields.push(("Expires", expires.to_rfc3339_opts(SecondsFormat::Secs, true)));
    }
    if repository.pinned()?.contains(&snapshot.id) {
        fields.push(("Pinned", format!("kept until `envsnap unpin {}`", snapshot.id.short(12))));
    }
    if manifest.partial {
        fields.push(("Partial", "some elements only (backup --element): `latest` never names it".to_owned()));
    }
    if let Some(parent) = manifest.parent {
        fields.push(("Parent", parent.short(12)));
    }
    for (name, value) in fields {
        writeln!(out, "{name:<12} {value}")?;
    }
    writeln!(out)?;
    let rows: Vec<Vec<String>> = manifest
        .elements
        .iter()
        .map(|element| {
            vec![
                element.name.clone(),
                element.kind.as_str().to_owned(),
                bytes(element.size),
                element.files.to_string(),
                element.dirs.to_string(),
                element.source.clone(),
            ]
        })
        .collect();
    write!(out, "{}", table(&["Element", "Kind", "Size", "Files", "Dirs", "Source"], &rows))?;
    Ok(())
}
