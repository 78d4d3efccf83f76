//! `envsnap mount`: the snapshots as a read-only file system, in the foreground until
//! unmounted (`fusermount3 -u`) or interrupted (Ctrl-C, SIGTERM, SIGHUP).

use std::io::Write;
use std::path::PathBuf;
use std::sync::mpsc;
use std::time::Duration;

use anyhow::{Context as _, Result};
use envsnap::fuse;
use envsnap::repository::Access;
use envsnap::view::{Scope, View, ViewOptions};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use super::context::{Context, Global};
use super::format::{SHORT_ID, SnapshotView};
use super::output::note;

/// Options of `envsnap mount`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// An existing directory to mount at (preferably empty: what it holds is hidden
    /// while mounted).
    #[arg(value_name = "MOUNTPOINT")]
    pub mount_point: PathBuf,
    /// Mount only this snapshot (an id prefix of at least 4 characters, or `latest`):
    /// its files/, services/ and snapshot.json at the root. Default: every snapshot,
    /// under envs/, ids/ and commits/, new ones included.
    pub id: Option<String>,
    /// For `latest`: the environment (default: the checked-out branch).
    #[arg(long, value_name = "BRANCH", requires = "id")]
    pub env: Option<String>,
    /// MiB of decoded chunks kept in memory for reads.
    #[arg(long, value_name = "MIB", default_value_t = 32)]
    pub cache: u64,
}

/// What ends the wait.
enum Event {
    Signal,
    Ended(std::io::Result<()>),
}

/// How long to wait for the kernel to let go of the file system once unmounted.
const UNMOUNT_WAIT: Duration = Duration::from_secs(5);

pub fn run(global: &Global, args: &Args) -> Result<()> {
    // Signals are caught from the start, so that one arriving while mounting still
    // unmounts instead of killing the process.
    let mut signals = Signals::new([SIGINT, SIGTERM, SIGHUP]).context("catching signals")?;
    let signal_handle = signals.handle();
    let (sender, events) = mpsc::channel();
    let signal_sender = sender.clone();
    std::thread::spawn(move || {
        for _ in signals.forever() {
            if signal_sender.send(Event::Signal).is_err() {
                break;
            }
        }
    });

    let context = Context::discover(global)?;
    let repository = context.open(Access::Read)?;
    repository.require_read_key("mount snapshots")?;
    let scope = match &args.id {
        None => Scope::All,
        Some(id) => Scope::One(Box::new(context.resolve(&repository, id, args.env.as_deref())?)),
    };
    let what = match &scope {
        Scope::All => format!("the snapshots of {}", context.repository_path.display()),
        Scope::One(snapshot) => format!("snapshot {}", snapshot.id.short(SHORT_ID)),
    };
    let mut options = ViewOptions::new(scope);
    options.cache_bytes = args.cache.max(8) << 20;
    options.describe = Box::new(|snapshot| {
        let mut json = serde_json::to_vec_pretty(&SnapshotView::of(snapshot)).expect("the view always serializes");
        json.push(b'\n');
        json
    });
    options.damaged = Box::new(|error| {
        eprintln!("envsnap: {error}; the files that need it fail to read with an input/output error (EIO)");
    });
    options.exhausted = Box::new(|error| {
        eprintln!(
            "envsnap: {error}; directories not listed yet fail with 'Cannot allocate memory' (ENOMEM): \
             unmount and mount again, or mount one snapshot (`envsnap mount ID`), to look further"
        );
    });
    let view = View::new(repository, options)?;

    let mut mounted = fuse::mount(view, &args.mount_point, move |outcome| {
        let _ = sender.send(Event::Ended(outcome));
    })?;
    let shown = mounted.mount_point().display().to_string();
    note!("{what} mounted read-only at {shown}; Ctrl-C (or `fusermount3 -u {shown}`) unmounts");
    let _ = std::io::stderr().flush();

    let outcome = match events.recv() {
        Ok(Event::Ended(outcome)) => outcome,
        Ok(Event::Signal) | Err(_) => {
            mounted.unmount()?;
            // A busy mount point was detached lazily: the session ends once its last
            // user lets go, which need not be waited for. A second signal stops waiting.
            match events.recv_timeout(UNMOUNT_WAIT) {
                Ok(Event::Ended(outcome)) => outcome,
                Ok(Event::Signal) | Err(_) => Ok(()),
            }
        }
    };
    signal_handle.close();
    outcome.with_context(|| format!("serving the mount at {shown}"))?;
    note!("unmounted {shown}");
    Ok(())
}
