//! Progress bars on a terminal; nothing otherwise.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use envsnap::progress::{NoProgress, Progress};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// An indicatif bar on stderr.
pub struct Bar {
    bar: ProgressBar,
    /// Files of the current phase.
    files: AtomicU64,
    /// Drawn nowhere (tests).
    hidden: bool,
}

/// A bar when stderr is a terminal (and not `--quiet`), else silence.
pub fn reporter() -> Box<dyn Progress> {
    if std::io::stderr().is_terminal() && super::output::says(super::output::Level::Normal) {
        Box::new(Bar { bar: ProgressBar::hidden(), files: AtomicU64::new(0), hidden: false })
    } else {
        Box::new(NoProgress)
    }
}

/// A bar of a job's percent complete, for `wait`, when stderr is a terminal (and not
/// `--quiet`): the job's process reports bytes to its catalog record as a percent, so
/// percent is what a watcher can show.
pub fn percent_bar(message: String) -> Option<ProgressBar> {
    if !std::io::stderr().is_terminal() || !super::output::says(super::output::Level::Normal) {
        return None;
    }
    let bar = ProgressBar::with_draw_target(Some(100), ProgressDrawTarget::stderr());
    let style = ProgressStyle::with_template("{msg:20} [{bar:30}] {pos:>3}% {elapsed}")
        .map(|style| style.progress_chars("=> "))
        .unwrap_or_else(|_| ProgressStyle::default_bar());
    bar.set_style(style);
    bar.set_message(message);
    bar.enable_steady_tick(Duration::from_millis(120));
    Some(bar)
}

impl Bar {
    /// A bar against `total` bytes with the rate and time left, or — when the total is
    /// not known, or the work has gone past it (a mount that grew since the snapshot
    /// the total came from) — a spinner with the bytes and files so far and no time
    /// left, which would be a guess.
    fn style(&self, total_bytes: Option<u64>) {
        let style = match total_bytes.filter(|&total| total >= self.bar.position()) {
            Some(total) => {
                self.bar.set_length(total);
                ProgressStyle::with_template(
                    "{msg:20} [{bar:30}] {bytes}/{total_bytes} {prefix} {bytes_per_sec} eta {eta}",
                )
            }
            None => {
                self.bar.unset_length();
                ProgressStyle::with_template("{spinner} {msg:20} {bytes} {prefix} {bytes_per_sec} {elapsed}")
            }
        };
        let style = style.map(|style| style.progress_chars("=> ")).unwrap_or_else(|_| ProgressStyle::default_bar());
        self.bar.set_style(style);
    }
}

impl Progress for Bar {
    fn begin(&self, phase: &str, total_bytes: Option<u64>) {
        // The phase's name first, so that no draw shows its size under the last name.
        self.bar.set_message(phase.to_owned());
        self.bar.reset();
        self.files.store(0, Ordering::Relaxed);
        self.bar.set_prefix("");
        self.style(total_bytes);
        // Drawn only once styled, so no default bar flashes first.
        self.bar.set_draw_target(self.target());
        self.bar.enable_steady_tick(Duration::from_millis(120));
    }

    fn estimate(&self, total_bytes: u64) {
        // What was read while the count ran may already pass it (files that grew):
        // then it is no total to show.
        self.style(Some(total_bytes));
    }

    fn add_bytes(&self, bytes: u64) {
        self.bar.inc(bytes);
        // Past the total it was given, a bar would show a wrong total and "eta 0s".
        if self.bar.length().is_some_and(|total| self.bar.position() > total) {
            self.style(None);
        }
    }

    fn add_file(&self) {
        let files = self.files.fetch_add(1, Ordering::Relaxed) + 1;
        self.bar.set_prefix(if files == 1 { "1 file".to_owned() } else { format!("{files} files") });
    }

    fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

impl Bar {
    /// Where the bar draws: stderr, or nowhere for a bar made to be looked at in tests.
    fn target(&self) -> ProgressDrawTarget {
        if self.hidden { ProgressDrawTarget::hidden() } else { ProgressDrawTarget::stderr() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hidden() -> Bar {
        Bar { bar: ProgressBar::hidden(), files: AtomicU64::new(0), hidden: true }
    }

    #[test]
    fn a_bar_past_its_total_becomes_a_spinner_with_no_time_left() {
        let bar = hidden();
        // The mount had 4 bytes in the last snapshot; it holds 30 MiB now.
        bar.begin("backing up uploads", Some(4));
        assert_eq!(bar.bar.length(), Some(4));
        bar.add_bytes(3);
        assert_eq!(bar.bar.length(), Some(4), "within its total it stays a bar");
        bar.add_bytes(30 << 20);
        assert_eq!(bar.bar.length(), None, "past it, no total and so no ETA");
        assert_eq!(bar.bar.position(), 3 + (30 << 20), "the bytes are still counted");
        // A count learned later that is below what was read is no total either.
        bar.estimate(10);
        assert_eq!(bar.bar.length(), None);
        bar.estimate(40 << 20);
        assert_eq!(bar.bar.length(), Some(40 << 20), "one above it is");
    }

    #[test]
    fn an_unknown_total_shows_bytes_and_files() {
        let bar = hidden();
        bar.begin("dumping db", None);
        assert_eq!(bar.bar.length(), None);
        bar.add_file();
        assert_eq!(bar.bar.prefix(), "1 file");
        bar.add_file();
        bar.add_bytes(100);
        assert_eq!(bar.bar.prefix(), "2 files");
        bar.begin("backing up uploads", Some(1000));
        assert_eq!(bar.bar.prefix(), "", "each phase counts its own files");
        assert_eq!(bar.bar.length(), Some(1000));
    }
}
