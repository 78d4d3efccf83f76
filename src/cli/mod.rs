//! The command line: clap definitions here, one file per subcommand.

mod activity;
mod backup;
mod check;
mod clock;
mod completions;
mod confirm;
mod context;
mod delete;
mod demo;
mod diff;
mod export;
mod forget;
mod format;
mod hooks;
mod init;
mod key;
mod list;
mod man;
mod mount;
mod output;
mod password;
mod pin;
mod progress;
mod prune;
mod repair;
mod restore;
mod schedule;
mod show;
mod status;
mod take;
mod undo;
mod wait;

use std::path::PathBuf;

pub(crate) use take::interrupted;

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

    /// An encrypted repository's password: the first line of FILE. Else it is taken from
    /// ENVSNAP_PASSWORD_FILE, ENVSNAP_PASSWORD_COMMAND (its first line of output),
    /// ENVSNAP_PASSWORD, or asked for on a terminal.
    #[arg(long, global = true, value_name = "FILE")]
    pub password_file: Option<PathBuf>,

    /// Say nothing but results and errors: no progress bars, no summaries.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,

    /// Say more: each element captured, how long it took.
    #[arg(short, long, global = true)]
    pub verbose: bool,

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
    /// Delete snapshots; one of a protected environment asks first (--yes without a terminal).
    #[command(visible_aliases = ["backup:delete", "snapshot:delete"])]
    Delete(delete::Args),
    /// Keep a snapshot until it is unpinned: retention keeps it, delete refuses it.
    Pin(pin::Args),
    /// Let a pinned snapshot go again.
    Unpin(pin::Args),
    /// Apply the retention rules of envsnap.toml: delete the snapshots they no longer keep,
    /// saying for each snapshot why it stays or goes.
    Forget(forget::Args),
    /// Free the space that no snapshot uses: delete unused packs, repack mostly-empty ones.
    Prune(prune::Args),
    /// Wait for a backup started with --no-wait to end; print its snapshot's id.
    Wait(wait::Args),
    /// What was done to the repository: by whom, when, on which environment, with what result.
    Activity(activity::Args),
    /// The current environment: its elements, its newest snapshot, what is running.
    Status(status::Args),
    /// Take the automated snapshots that are due (`run`) from cron or a systemd timer
    /// (`install`, `uninstall`); show the schedule (`status`).
    Schedule(schedule::Args),
    /// Rebuild the catalog from the store alone.
    Repair(repair::Args),
    /// Install, remove or show the git hooks that snapshot protected branches before merges and pushes.
    Hooks(hooks::Args),
    /// Mount the snapshots as a read-only file system (FUSE), until unmounted or interrupted.
    Mount(mount::Args),
    /// An encrypted repository's keys: list them, add one (a teammate's, or a write-only
    /// one for a production host), change a password, remove one. Rewrites no data.
    Key(key::Args),
    /// Walk through envsnap in a throw-away repository: snapshot, change, list, diff, restore.
    Demo(demo::Args),
    /// Print the completion script for a shell, generated from these definitions.
    Completions(completions::Args),
    /// Print envsnap's man page, or write one page per command into a directory with --dir.
    Man(man::Args),
}

impl Cli {
    /// Runs the command.
    pub fn run(self) -> anyhow::Result<()> {
        let global = context::Global {
            repository: self.repository,
            directory: self.directory,
            password_file: self.password_file,
        };
        output::set(match (self.quiet, self.verbose) {
            (true, _) => output::Level::Quiet,
            (false, true) => output::Level::Verbose,
            (false, false) => output::Level::Normal,
        });
        let recorded = self.command.activity();
        let started = activity::now();
        let result = self.command.run(&global);
        if let Some(action) = recorded {
            activity::finish(&action, started, &result);
        }
        result
    }
}

impl Command {
    /// The name the activity log gives this command, if it records it: those that
    /// change the repository or an environment, not their dry runs.
    fn activity(&self) -> Option<String> {
        let name = match self {
            // Of a --no-wait job, the process that runs it logs it once handed over
            // (activity::handed_off); a failure before is logged here.
            Command::Backup(_) => "backup",
            Command::Restore(args) if !args.dry_run => "restore",
            Command::Undo(args) if !args.dry_run => "undo",
            Command::Delete(_) => "delete",
            Command::Pin(_) => "pin",
            Command::Unpin(_) => "unpin",
            Command::Forget(args) if !args.dry_run => "forget",
            Command::Prune(args) if !args.dry_run => "prune",
            Command::Repair(_) => "repair",
            Command::Key(args) => match &args.action {
                key::Action::List(_) => return None,
                key::Action::Add(_) => "key add",
                key::Action::Remove(_) => "key remove",
                key::Action::Passwd(_) => "key passwd",
            },
            Command::Schedule(args) => match &args.command {
                schedule::Action::Run(run) if !run.dry_run => "schedule run",
                _ => return None,
            },
            Command::Hooks(args) => match &args.action {
                hooks::Action::Run(run) => return Some(format!("hook {}", run.hook.name())),
                _ => return None,
            },
            _ => return None,
        };
        Some(name.to_owned())
    }

    fn run(self, global: &context::Global) -> anyhow::Result<()> {
        let global = global.clone();
        match self {
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
            Command::Forget(args) => forget::run(&global, &args),
            Command::Prune(args) => prune::run(&global, &args),
            Command::Wait(args) => wait::run(&global, &args),
            Command::Activity(args) => activity::run(&global, &args),
            Command::Status(args) => status::run(&global, &args),
            Command::Schedule(args) => schedule::run(&global, &args),
            Command::Repair(args) => repair::run(&global, &args),
            Command::Hooks(args) => hooks::run(&global, &args),
            Command::Mount(args) => mount::run(&global, &args),
            Command::Key(args) => key::run(&global, &args),
            Command::Demo(args) => demo::run(&args),
            Command::Completions(args) => completions::run(&args),
            Command::Man(args) => man::run(&args),
        }
    }
}
