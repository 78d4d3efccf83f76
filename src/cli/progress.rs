//! Progress bars on a terminal; nothing otherwise.

use std::io::IsTerminal;
use std::time::Duration;

use envsnap::progress::{NoProgress, Progress};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// An indicatif bar on stderr.
pub struct Bar {
    bar: ProgressBar,
}

/// A bar when stderr is a terminal (and not `--quiet`), else silence.
pub fn reporter() -> Box<dyn Progress> {
    if std::io::stderr().is_terminal() && super::output::says(super::output::Level::Normal) {
        Box::new(Bar { bar: ProgressBar::hidden() })
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
    /// A bar against `total` bytes with the rate and time left, or a spinner with the
    /// rate alone when the total is not known.
    fn style(&self, total_bytes: Option<u64>) {
        let style = match total_bytes {
            Some(total) => {
                self.bar.set_length(total);
                ProgressStyle::with_template("{msg:20} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}")
            }
            None => {
                self.bar.unset_length();
                ProgressStyle::with_template("{spinner} {msg:20} {bytes} {bytes_per_sec} {elapsed}")
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
        self.style(total_bytes);
        // Drawn only once styled, so no default bar flashes first.
        self.bar.set_draw_target(ProgressDrawTarget::stderr());
        self.bar.enable_steady_tick(Duration::from_millis(120));
    }

    fn estimate(&self, total_bytes: u64) {
        // What was read while the count ran may already pass it (files that grew).
        self.style(Some(total_bytes.max(self.bar.position())));
    }

    fn add_bytes(&self, bytes: u64) {
        self.bar.inc(bytes);
    }

    fn finish(&self) {
        self.bar.finish_and_clear();
    }
}
