//! The command line: clap definitions here, one file per subcommand.

mod backup;
mod check;
mod context;
mod delete;
mod demo;
mod diff;
mod export;
mod format;
mod hooks;
mod init;
mod list;
mod mount;
mod pin;
mod progress;
mod prune;
mod repair;
mod restore;
mod show;
mod take;
mod undo;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// Snapshots of an environment's data — every database and data directory — keyed to
/// git branches and commits, in a deduplicated, content-addressed store.
#[derive(Debug, Parser)]
#[command(name = "envsnap", version, about, max_term_width = 100)]
pub struct Cli {
    /// Where snapshots live (default: `.git/envsnap/` of the repository).
    #[arg(long, global = true, env = "ENVSNAP_REPOSITORY", value_name = "DIR")]
    pub repository: Option<PathBuf>,

    /// Run as if started in DIR.
    #[arg(short = 'C', global = true, value_name = "DIR")]
    pub directory: Option<PathBuf>,

    /// The subcommand.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create the repository (and a starter envsnap.toml if there is none).
    Init(init::Args),
    /// Take a snapshot of the current (or named) environment; prints its id.
    #[command(visible_aliases = ["backup:create", "snapshot:create"])]
    Backup(backup::Args),
    /// List snapshots, newest first.
    #[command(visible_aliases = ["backups", "backup:list", "snapshot:list"])]
    List(list::Args),
    /// Show one snapshot, its elements and figures.
    Show(show::Args),
    /// Restore a snapshot into its environment, or into a directory with --to.
    #[command(visible_aliases = ["backup:restore", "snapshot:restore"])]
    Restore(restore::Args),
    /// Put back what the last restore overwrote (from its safety snapshot).
    Undo(undo::Args),
    /// What changed between two snapshots.
    Diff(diff::Args),
    /// Write one element of a snapshot as a standard file: a mount as .tar.gz or .tar.zst,
    /// a service as its dump (.sql.gz, .rdb, .sqlite, …).
    #[command(visible_aliases = ["backup:get"])]
    Export(export::Args),
    /// Verify the repository; with --read-data, every byte against its hash.
    Check(check::Args),
    /// Delete a snapshot.
    Delete(delete::Args),
    /// Keep a snapshot until it is unpinned: retention keeps it, delete refuses it.
    Pin(pin::Args),
    /// Let a pinned snapshot go again.
    Unpin(pin::Args),
    /// Free the space that no snapshot uses: delete unused packs, repack mostly-empty ones.
    Prune(prune::Args),
    /// Rebuild the catalog from the store alone.
    Repair(repair::Args),
    /// Install, remove or show the git hooks that snapshot protected branches before merges and pushes.
    Hooks(hooks::Args),
    /// Mount the snapshots as a read-only file system (FUSE), until unmounted or interrupted.
    Mount(mount::Args),
    /// Walk through envsnap in a throw-away repository: snapshot, change, list, diff, restore.
    Demo(demo::Args),
}

impl Cli {
    /// Runs the command.
    pub fn run(self) -> anyhow::Result<()> {
        let global = context::Global { repository: self.repository, directory: self.directory };
        match self.command {
            Command::Init(args) => init::run(&global, &args),
            Command::Backup(args) => backup::run(&global, &args),
            Command::List(args) => list::run(&global, &args),
            Command::Show(args) => show::run(&global, &args),
            Command::Restore(args) => restore::run(&global, &args),
            Command::Undo(args) => undo::run(&global, &args),
            Command::Diff(args) => diff::run(&global, &args),
            Command::Export(args) => export::run(&global, &args),
            Command::Check(args) => check::run(&global, &args),
            Command::Delete(args) => delete::run(&global, &args),
            Command::Pin(args) => pin::run(&global, &args, true),
            Command::Unpin(args) => pin::run(&global, &args, false),
            Command::Prune(args) => prune::run(&global, &args),
            Command::Repair(args) => repair::run(&global, &args),
            Command::Hooks(args) => hooks::run(&global, &args),
            Command::Mount(args) => mount::run(&global, &args),
            Command::Demo(args) => demo::run(&args),
        }
    }
}
