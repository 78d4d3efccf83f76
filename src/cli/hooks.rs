//! `envsnap hooks install|uninstall|status`, and `envsnap hooks run`, which the
//! installed shims call with git's arguments and input.
//!
//! `run` decides quickly and quietly whether a snapshot is due (the rules are in
//! `envsnap::git::hooks`), takes it, and prints one line. It never leaves git waiting
//! for long: when another envsnap holds the repository lock it gives up after
//! [`LOCK_WAIT`] with a line saying so.

use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, anyhow};
use envsnap::config::{self, Config, ConfigError};
use envsnap::git::Workspace;
use envsnap::git::hooks::{
    Change, DueSnapshot, Hook, HookChange, HookState, HooksDir, Occasion, PushedRef, RefUpdate,
    due_before_merge_commit, due_before_push, due_before_ref_updates,
};
use envsnap::repository::{Access, Repository};
use envsnap::snapshot::Mode;

use super::activity;
use super::context::{Context, Global};
use super::format::SHORT_ID;
use super::output::note;
use super::take::{Request, take};

/// The variable that skips every envsnap hook, deliberately.
pub const SKIP_VARIABLE: &str = "ENVSNAP_SKIP_HOOKS";

/// How long a hook waits for another envsnap's repository lock before giving up.
pub const LOCK_WAIT: Duration = Duration::from_secs(5);

/// Options of `envsnap hooks`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// What to do.
    #[command(subcommand)]
    pub action: Action,
}

/// The actions of `envsnap hooks`.
#[derive(Debug, clap::Subcommand)]
pub enum Action {
    /// Install the hooks; a hook already there is kept and runs first.
    Install,
    /// Remove envsnap's hooks and put back the hooks they kept.
    Uninstall,
    /// Show where the hooks are and which are installed.
    Status,
    /// Run a hook, as the installed shims do (git's arguments; its input on stdin).
    #[command(hide = true)]
    Run(RunArgs),
}

/// Options of `envsnap hooks run`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// The hook git ran.
    pub hook: Hook,
    /// Git's arguments to the hook.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub args: Vec<String>,
}

/// Runs `envsnap hooks`.
pub fn run(global: &Global, args: &Args) -> Result<()> {
    match &args.action {
        Action::Install => install(global),
        Action::Uninstall => uninstall(global),
        Action::Status => status(global),
        Action::Run(run) => run_hook(global, run),
    }
}

fn start_directory(global: &Global) -> Result<PathBuf> {
    Ok(match &global.directory {
        Some(directory) => directory.clone(),
        None => std::env::current_dir()?,
    })
}

fn hooks_dir(global: &Global) -> Result<(Workspace, HooksDir)> {
    let workspace = Workspace::discover(&start_directory(global)?)?;
    let dir = HooksDir::locate(&workspace.work_tree)?;
    Ok((workspace, dir))
}

fn describe_dir(dir: &HooksDir) -> String {
    let origin = if dir.configured { " (core.hooksPath)" } else { "" };
    format!("{}{origin}", dir.path.display())
}

fn install(global: &Global) -> Result<()> {
    let (workspace, dir) = hooks_dir(global)?;
    let binary = std::env::current_exe().context("finding the envsnap binary to record in the hooks")?;
    let binary = binary.canonicalize().unwrap_or(binary);
    let changes = dir.install(&binary)?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "hooks in {}, running {}:", describe_dir(&dir), binary.display())?;
    for change in &changes {
        writeln!(out, "  {:<22} {}", change.hook.name(), describe_change(change))?;
    }
    match Config::load(&workspace.work_tree, Some(&workspace.common_dir.join(config::LOCAL_FILE_NAME))) {
        Ok(config) => {
            let protected: Vec<String> = config.protected().iter().map(ToString::to_string).collect();
            writeln!(out, "snapshots before merges into, and pushes to: {}", protected.join(", "))?;
        }
        Err(ConfigError::NotFound { .. }) => {
            writeln!(out, "there is no envsnap.toml yet: the hooks do nothing until `envsnap init` writes one")?;
        }
        Err(error) => writeln!(out, "warning: {error}; until it is fixed, the hooks stop every merge they see")?,
    }
    Ok(())
}

fn uninstall(global: &Global) -> Result<()> {
    let (_, dir) = hooks_dir(global)?;
    let changes = dir.uninstall()?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "hooks in {}:", describe_dir(&dir))?;
    for change in &changes {
        writeln!(out, "  {:<22} {}", change.hook.name(), describe_change(change))?;
    }
    Ok(())
}

fn status(global: &Global) -> Result<()> {
    let (_, dir) = hooks_dir(global)?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "hooks in {}:", describe_dir(&dir))?;
    for hook in dir.status()? {
        let mut what = match &hook.state {
            HookState::Missing => "not installed: run `envsnap hooks install`".to_owned(),
            HookState::Other => {
                "not installed (another hook is there): run `envsnap hooks install`, which keeps it".to_owned()
            }
            HookState::Installed { binary, current } => {
                let runs = match binary {
                    Some(binary) if binary.exists() => format!("runs {}", binary.display()),
                    Some(binary) => format!("{} is missing, so it runs envsnap from PATH", binary.display()),
                    None => "runs envsnap from PATH".to_owned(),
                };
                let age = if *current { "" } else { " (an older envsnap's: `envsnap hooks install` updates it)" };
                format!("installed{age}, {runs}")
            }
        };
        if let Some(chained) = &hook.chained {
            what.push_str(&format!("; runs {} first", file_name(chained)));
        }
        writeln!(out, "  {:<22} {what}", hook.hook.name())?;
    }
    Ok(())
}

/// What was done to one hook, in words.
fn describe_change(change: &HookChange) -> String {
    match &change.change {
        Change::Installed { chained: None } => "installed".to_owned(),
        Change::Installed { chained: Some(chained) } => {
            format!("installed; the hook that was there runs first, kept as {}", file_name(chained))
        }
        Change::Updated => "updated".to_owned(),
        Change::Unchanged => "already installed".to_owned(),
        Change::Removed { restored: false } => "removed".to_owned(),
        Change::Removed { restored: true } | Change::Restored => {
            format!("removed; the hook it kept is back as {}", change.hook.name())
        }
        Change::NotInstalled => "not installed".to_owned(),
        Change::LeftAlone { chained } => format!(
            "left alone: another hook has replaced envsnap's, and the one envsnap kept is still at {}: \
             merge the two by hand",
            chained.display()
        ),
    }
}

fn file_name(path: &Path) -> String {
    path.file_name().map_or_else(|| path.display().to_string(), |name| name.to_string_lossy().into_owned())
}

/// What git told the hook, gathered once.
struct Invocation<'a> {
    hook: Hook,
    args: &'a [String],
    /// `GIT_REFLOG_ACTION`: the command behind a merge or a fast-forward.
    reflog_action: Option<String>,
}

fn run_hook(global: &Global, args: &RunArgs) -> Result<()> {
    if std::env::var(SKIP_VARIABLE).is_ok_and(|value| value == "1") {
        return Ok(());
    }
    let invocation = Invocation {
        hook: args.hook,
        args: &args.args,
        reflog_action: std::env::var("GIT_REFLOG_ACTION").ok().filter(|action| !action.is_empty()),
    };
    let input = match invocation.hook {
        Hook::PreMergeCommit => String::new(),
        // Only a person could have started it without input: do not wait for a terminal.
        Hook::ReferenceTransaction | Hook::PrePush if std::io::stdin().is_terminal() => String::new(),
        Hook::ReferenceTransaction | Hook::PrePush => {
            let mut input = Vec::new();
            std::io::stdin().read_to_end(&mut input).context("reading the hook's input")?;
            // Git allows ref names that are not UTF-8; such a name matches no protected pattern.
            String::from_utf8_lossy(&input).into_owned()
        }
    };
    if invocation.hook == Hook::ReferenceTransaction && invocation.args.first().map(String::as_str) != Some("prepared")
    {
        return Ok(());
    }
    // Outside a work tree, or without envsnap.toml, there is nothing to protect.
    let Ok(workspace) = Workspace::discover(&start_directory(global)?) else { return Ok(()) };
    if !workspace.work_tree.join(config::FILE_NAME).exists() {
        return Ok(());
    }
    // The rules read git only; envsnap.toml is read once a snapshot may be due, so
    // that a broken one stops merges, not every commit.
    let reflog_action = invocation.reflog_action.as_deref();
    let due = match invocation.hook {
        Hook::PreMergeCommit => {
            due_before_merge_commit(&workspace.work_tree, reflog_action).map(|due| due.into_iter().collect())
        }
        Hook::ReferenceTransaction => {
            due_before_ref_updates(&workspace.work_tree, &RefUpdate::parse(&input), reflog_action)
        }
        Hook::PrePush => {
            let remote = invocation.args.first().map_or("the remote", String::as_str);
            due_before_push(&workspace.work_tree, remote, &PushedRef::parse(&input))
        }
    }
    .map_err(|error| {
        anyhow!("{} hook: {error}; to skip envsnap's hooks deliberately, set {SKIP_VARIABLE}=1", invocation.hook)
    })?;
    let Some(first) = due.first() else { return Ok(()) };
    let context = Context::discover(global).map_err(|error| failure(&invocation, first, &error))?;
    let Some(config) = &context.config else { return Ok(()) };
    let mut repository = None;
    for snapshot in due.iter().filter(|snapshot| config.is_protected(&snapshot.branch)) {
        take_due(&context, &mut repository, snapshot).map_err(|error| failure(&invocation, snapshot, &error))?;
    }
    Ok(())
}

/// Takes one due snapshot, opening the repository on first use; prints its line.
fn take_due(context: &Context, repository: &mut Option<Repository>, due: &DueSnapshot) -> Result<()> {
    let started = Instant::now();
    let mounts = context.mounts(&due.branch)?;
    let services = context.services(&due.branch)?;
    if mounts.is_empty() && services.is_empty() {
        return Ok(());
    }
    let repository = match repository {
        Some(repository) => repository,
        None => repository.insert(open_within(&context.repository_path, LOCK_WAIT)?),
    };
    let request = Request {
        env: &due.branch,
        commit: due.commit.clone(),
        mounts,
        services,
        trigger: due.occasion.trigger(),
        // Hooks never pause the environment: a merge must not take the application down.
        mode: Mode::Live,
        note: Some(due.note.clone()),
        keep_for: None,
        partial: false,
        job: None,
    };
    activity::env(&due.branch);
    let report = take(context, repository, request)?;
    activity::snapshot(&report.snapshot.id);
    note!(
        "envsnap: snapshot {} of {} before {} ({:.2} s)",
        report.snapshot.id.short(SHORT_ID),
        due.branch,
        due.occasion,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Opens the repository for writing, giving up when another process has held its
/// lock for `limit`. The open runs on a thread of its own because the lock has no
/// timeout: on giving up, this process exits, and the waiting thread with it, before
/// it has changed anything.
fn open_within(root: &Path, limit: Duration) -> Result<Repository> {
    enum Opening {
        Waiting(String),
        // Boxed: sent once, and much larger than a holder's note.
        Done(Box<envsnap::Result<Repository>>),
    }
    let (sender, receiver) = mpsc::channel();
    let thread_root = root.to_owned();
    std::thread::spawn(move || {
        let waiting = sender.clone();
        let password_root = thread_root.clone();
        let result = Repository::open_unlocked(
            &thread_root,
            Access::Write,
            &mut |holder| {
                let _ = waiting.send(Opening::Waiting(holder.to_owned()));
            },
            &mut || super::password::read(None, &password_root),
        );
        let _ = sender.send(Opening::Done(Box::new(result)));
    });
    let mut holder: Option<String> = None;
    loop {
        let event = match &holder {
            None => receiver.recv().map_err(|_| RecvTimeoutError::Disconnected),
            Some(_) => receiver.recv_timeout(limit),
        };
        match event {
            Ok(Opening::Done(result)) => return Ok((*result)?),
            Ok(Opening::Waiting(note)) => holder = Some(note),
            Err(RecvTimeoutError::Timeout) => {
                let holder = holder.as_deref().filter(|note| !note.is_empty()).unwrap_or("another process");
                return Err(anyhow!(
                    "the repository {} is busy: {holder} has held its lock for more than {} s; wait for it to finish",
                    root.display(),
                    limit.as_secs()
                ));
            }
            Err(RecvTimeoutError::Disconnected) => return Err(anyhow!("opening {} failed", root.display())),
        }
    }
}

/// The one line a failed hook prints (`main` adds `envsnap: `): what failed and what
/// git did not do, why, and how to go on or skip the snapshot deliberately.
fn failure(invocation: &Invocation<'_>, due: &DueSnapshot, error: &anyhow::Error) -> anyhow::Error {
    let reason = error.chain().map(ToString::to_string).collect::<Vec<_>>().join(": ");
    let reason = reason.split_whitespace().collect::<Vec<_>>().join(" ");
    let reason = reason.trim_end_matches('.');
    let branch = &due.branch;
    let skip = format!("{SKIP_VARIABLE}=1");
    let command = invocation.reflog_action.as_deref().map_or_else(|| "git merge …".to_owned(), |a| format!("git {a}"));
    let (stopped, next) = match (&invocation.hook, &due.occasion) {
        (Hook::PreMergeCommit, _) => (
            "the merge is not committed".to_owned(),
            format!(
                "Once fixed, run `git commit`; or skip the snapshot deliberately: `{skip} git commit` \
                 (or `git merge --abort`, then `git merge --no-verify …`)"
            ),
        ),
        (_, Occasion::Push { .. }) => (
            "nothing was pushed".to_owned(),
            format!(
                "Once fixed, push again; or skip the snapshot deliberately: `git push --no-verify …` \
                 or `{skip} git push …`"
            ),
        ),
        (_, Occasion::FastForward) => (
            format!("{branch} is unchanged (`git reset --merge` puts the work tree back)"),
            format!("Once fixed, run `{command}` again; or skip the snapshot deliberately: `{skip} {command}`"),
        ),
        (_, Occasion::Rebase) => (
            format!("{branch} is unchanged and the rebase still in progress"),
            format!(
                "Once fixed, run `git rebase --continue`; or skip the snapshot deliberately: \
                 `{skip} git rebase --continue` (`git rebase --abort` gives up)"
            ),
        ),
        (_, Occasion::Merge) => (
            "the merge is not committed".to_owned(),
            format!("Once fixed, commit again; or skip the snapshot deliberately: `{skip} git commit`"),
        ),
    };
    anyhow!("no snapshot of {branch} before {}, so {stopped}: {reason}. {next}", due.occasion)
}
