//! How snapshots are shown: sizes, times, tables and the stable `--json` object.

use chrono::SecondsFormat;
use envsnap::jobs::{Job, JobState};
use envsnap::snapshot::Snapshot;
use serde::Serialize;

/// Characters of an id that listings show.
pub const SHORT_ID: usize = 12;

/// `count` and the noun for it, plural unless one: `1 file`, `3 directories`.
pub fn counted(count: u64, one: &str, many: &str) -> String {
    format!("{count} {}", if count == 1 { one } else { many })
}

/// A byte count for people: `1.5 GiB`.
pub fn bytes(count: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = count as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 { format!("{count} B") } else { format!("{value:.1} {}", UNITS[unit]) }
}

/// One element of a snapshot, in `--json`.
#[derive(Debug, Serialize)]
pub struct ElementView {
    /// Its name.
    pub name: String,
    /// `mount` or `service`.
    pub kind: &'static str,
    /// Bytes captured.
    pub size: u64,
}

/// The stable `--json` form of a snapshot.
#[derive(Debug, Serialize)]
pub struct SnapshotView {
    /// Full id.
    pub id: String,
    /// Environment (branch).
    pub env: String,
    /// Commit, when the branch had one.
    pub commit: Option<String>,
    /// RFC 3339, UTC.
    pub created: String,
    /// Why it was taken.
    pub trigger: &'static str,
    /// `consistent` or `live`.
    pub mode: &'static str,
    /// `queued`, `running`, `complete` or `failed`.
    pub state: &'static str,
    /// `success`, `failure`, or null while running.
    pub result: Option<&'static str>,
    /// 0–100.
    pub progress: u8,
    /// Whether it can be restored.
    pub restorable: bool,
    /// Bytes of data captured.
    pub size: u64,
    /// Whether it is pinned: kept until unpinned, whatever retention says.
    pub pinned: bool,
    /// Whether it holds only some of the environment's elements (`backup --element`).
    pub partial: bool,
    /// New bytes it added to the repository.
    pub stored: u64,
    /// The user's note.
    pub note: Option<String>,
    /// When retention may remove it.
    pub expires: Option<String>,
    /// How long the environment was paused for it, in milliseconds, when it was.
    pub paused_ms: Option<u64>,
    /// How long taking it took, in milliseconds, when recorded.
    pub duration_ms: Option<u64>,
    /// What it holds.
    pub elements: Vec<ElementView>,
    /// Why it failed, when it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl SnapshotView {
    /// The view of a complete snapshot: only complete snapshots are ever published.
    pub fn of(snapshot: &Snapshot) -> Self {
        let manifest = &snapshot.manifest;
        SnapshotView {
            id: snapshot.id.to_hex(),
            env: manifest.env.clone(),
            commit: manifest.commit.clone(),
            created: manifest.created.to_rfc3339_opts(SecondsFormat::Secs, true),
            trigger: manifest.trigger.as_str(),
            mode: manifest.mode.as_str(),
            state: "complete",
            result: Some("success"),
            progress: 100,
            restorable: true,
            size: manifest.size(),
            pinned: false,
            partial: manifest.partial,
            stored: manifest.stored,
            note: manifest.note.clone(),
            expires: manifest.expires.map(|time| time.to_rfc3339_opts(SecondsFormat::Secs, true)),
            paused_ms: manifest.paused_ms,
            duration_ms: manifest.duration_ms,
            elements: manifest
                .elements
                .iter()
                .map(|element| ElementView {
                    name: element.name.clone(),
                    kind: element.kind.as_str(),
                    size: element.size,
                })
                .collect(),
            error: None,
        }
    }

    /// The view of a complete snapshot, restorable unless `check` found it damaged
    /// (`damage` says why).
    pub fn of_checked(snapshot: &Snapshot, damage: Option<&String>) -> Self {
        let mut view = SnapshotView::of(snapshot);
        if let Some(damage) = damage {
            view.restorable = false;
            view.error = Some(format!("`envsnap check` found it cannot be restored in full: {damage}"));
        }
        view
    }

    /// The same view, saying whether the snapshot is among `pinned`.
    pub fn pinned_among(mut self, pinned: &std::collections::HashSet<envsnap::id::ObjectId>) -> Self {
        self.pinned = envsnap::id::ObjectId::from_hex(&self.id).is_some_and(|id| pinned.contains(&id));
        self
    }

    /// The view of a backup job that has no snapshot (yet): queued, running or failed.
    pub fn of_job(job: &Job) -> Self {
        SnapshotView {
            id: job.id.clone(),
            env: job.env.clone(),
            commit: job.commit.clone(),
            created: job.created.to_rfc3339_opts(SecondsFormat::Secs, true),
            trigger: job.trigger.as_str(),
            mode: job.mode.as_str(),
            state: job.state.as_str(),
            result: match job.state {
                JobState::Complete => Some("success"),
                JobState::Failed => Some("failure"),
                JobState::Queued | JobState::Running => None,
            },
            progress: job.progress,
            restorable: false,
            size: 0,
            pinned: false,
            partial: false,
            stored: 0,
            note: job.note.clone(),
            // The date its snapshot will carry is counted from when it is taken; until
            // then, from when it was asked for.
            expires: job.keep_for.map(|days| {
                (job.created + chrono::Duration::days(i64::from(days))).to_rfc3339_opts(SecondsFormat::Secs, true)
            }),
            paused_ms: None,
            duration_ms: None,
            elements: Vec::new(),
            error: job.error.clone(),
        }
    }
}

/// Lays out rows under a header, columns padded to their widest cell.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|cell| cell.chars().count()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells.iter().zip(&widths).map(|(cell, width)| format!("{cell:<width$}")).collect();
        padded.join("  ").trim_end().to_owned() + "\n"
    };
    let mut out = line(header.to_vec());
    for row in rows {
        out += &line(row.iter().map(String::as_str).collect());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_well() {
        assert_eq!(bytes(0), "0 B");
        assert_eq!(bytes(1023), "1023 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(3 << 30), "3.0 GiB");
    }

    #[test]
    fn tables_align() {
        let out = table(&["A", "Bee"], &[vec!["long cell".into(), "x".into()]]);
        assert_eq!(out, "A          Bee\nlong cell  x\n");
    }
}
