//! `envsnap restore` (and, through [`into_environment`], `envsnap undo`).

use std::collections::HashSet;
use std::io::Write;
use std::path::PathBuf;

use anyhow::{Result, bail};
use envsnap::Error;
use envsnap::backup::ServiceSource;
use envsnap::diff::ChangeKind;
use envsnap::git::branch;
use envsnap::repository::{Access, Repository, RestoreRecord, RestoreState};
use envsnap::restore::{
    RestoreTarget, Staged, Verified, check_restore, preview, restore, restore_service, stage, verify, verify_snapshot,
};
use envsnap::snapshot::{Element, ElementKind, Mode, Snapshot, Trigger};

use super::activity;
use super::confirm::{Question, confirm};
use super::context::{Context, Global};
use super::format::{SHORT_ID, bytes, counted};
use super::output::note;
use super::progress::reporter;
use super::take::{Request, take};

/// Options of `envsnap restore`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The snapshot: an id prefix of at least 4 characters, or `latest` (the default):
    /// the newest complete snapshot of the whole environment (the current one, or
    /// --env) taken by a user, a hook or a schedule; never a safety snapshot (`envsnap
    /// undo` restores that) nor a partial --element one.
    #[arg(default_value = "latest")]
    pub id: String,
    /// Take the newest snapshot taken at COMMIT, or at its nearest ancestor.
    #[arg(long, value_name = "COMMIT", conflicts_with = "id")]
    pub at: Option<String>,
    /// Restore into the environment of BRANCH instead of the snapshot's own.
    #[arg(long, value_name = "BRANCH", conflicts_with = "to")]
    pub target: Option<String>,
    /// Create the --target branch from PARENT first, if it does not exist.
    #[arg(long, value_name = "PARENT", requires = "target")]
    pub branch_from: Option<String>,
    /// Write the files into DIR/<element>/ instead, touching no environment.
    #[arg(long, value_name = "DIR")]
    pub to: Option<PathBuf>,
    /// Only these elements (repeatable).
    #[arg(long = "element", value_name = "NAME")]
    pub elements: Vec<String>,
    /// The environment whose snapshots `latest` and --at choose from (default: the
    /// checked-out branch).
    #[arg(long, value_name = "BRANCH")]
    pub env: Option<String>,
    /// Say what would be overwritten, and change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Do not take a safety snapshot of what the restore overwrites.
    #[arg(long)]
    pub no_safety_snapshot: bool,
    /// Do not ask for confirmation.
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// Give every object of a PostgreSQL dump to the user in `url` instead of its owner
    /// in the dump: for a server that lacks the dump's roles (roles are not in a
    /// snapshot).
    #[arg(long)]
    pub no_owner: bool,
}

pub fn run(global: &Global, args: &Args) -> Result<()> {
    let context = Context::discover(global)?;
    // A --branch-from that cannot be carried out is refused before anything is opened,
    // taken or changed.
    let new_branch = match (&args.target, &args.branch_from) {
        (Some(target), Some(parent)) => Some(NewBranch::check(&context, target, parent)?),
        _ => None,
    };
    let access = if args.to.is_some() || args.dry_run { Access::Read } else { Access::Write };
    let repository = context.open(access)?;
    repository.require_read_key("restore snapshots")?;
    let snapshot = choose(&context, &repository, args)?;
    let elements = chosen_elements(&snapshot, &args.elements)?;

    if let Some(directory) = &args.to {
        let targets: Vec<RestoreTarget> = elements
            .iter()
            .map(|element| RestoreTarget {
                tree: element.tree,
                destination: directory.join(&element.name),
                replace: None,
            })
            .collect();
        if args.dry_run {
            for target in &targets {
                println!("would write {}", target.destination.display());
            }
            return Ok(());
        }
        activity::snapshot(&snapshot.id);
        activity::detail(format!("into {}", directory.display()));
        let report = restore(&repository, &targets, reporter().as_ref())?;
        note!(
            "restored snapshot {} into {}: {}, {}, {}, {}",
            snapshot.id.short(SHORT_ID),
            directory.display(),
            counted(report.files, "file", "files"),
            counted(report.dirs, "directory", "directories"),
            counted(report.symlinks, "symlink", "symlinks"),
            bytes(report.bytes)
        );
        return Ok(());
    }

    let target = match &args.target {
        Some(target) => target.clone(),
        None => {
            let current = context.workspace.environment(args.env.as_deref())?;
            if snapshot.manifest.env != current {
                bail!(
                    "snapshot {} belongs to environment `{}`, not `{current}`: restore it into `{current}` with \
                     --target {current}, or write its files elsewhere with --to DIR",
                    snapshot.id.short(SHORT_ID),
                    snapshot.manifest.env,
                );
            }
            current
        }
    };
    let options =
        Options { yes: args.yes, safety: !args.no_safety_snapshot, dry_run: args.dry_run, no_owner: args.no_owner };
    if new_branch.is_none() && args.target.is_some() && !branch::branch_exists(context.work_tree(), &target)? {
        bail!(
            "there is no branch `{target}` to restore into: create it from a parent with --branch-from PARENT, \
             or check the name with `git branch`"
        );
    }
    into_environment(&context, &repository, &snapshot, &elements, &target, new_branch.as_ref(), options)
}

/// The branch a restore with `--branch-from` creates, checked before anything else.
#[derive(Debug)]
pub struct NewBranch {
    /// The parent as given: a branch, tag or commit.
    pub parent: String,
    /// The commit it names, which the new branch starts at.
    pub commit: String,
}

impl NewBranch {
    /// Checks that `target` can be created from `parent`: `target` is a valid name
    /// and no branch yet, `parent` names a commit.
    fn check(context: &Context, target: &str, parent: &str) -> Result<Self> {
        if branch::branch_exists(context.work_tree(), target)? {
            bail!(
                "branch `{target}` exists already, and --branch-from only creates a new one: restore into it \
                 without --branch-from, or give --target a new name"
            );
        }
        branch::check_branch_name(target)?;
        let commit = branch::resolve_commit(context.work_tree(), parent).map_err(|_| {
            anyhow::anyhow!(
                "--branch-from `{parent}` names no commit: give an existing branch, tag or commit \
                 (`git branch` lists them); nothing was changed"
            )
        })?;
        Ok(NewBranch { parent: parent.to_owned(), commit })
    }
}

/// How a restore into an environment behaves.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Skip the confirmation.
    pub yes: bool,
    /// Take a safety snapshot first.
    pub safety: bool,
    /// Only say what would change.
    pub dry_run: bool,
    /// Restore the services without the dump's owners (`--no-owner`).
    pub no_owner: bool,
}

/// Finds the snapshot the arguments name: an id, `latest`, or `--at COMMIT`.
fn choose(context: &Context, repository: &Repository, args: &Args) -> Result<Snapshot> {
    let snapshot = if let Some(commit) = &args.at {
        let env = context.workspace.environment(args.env.as_deref())?;
        let wanted = branch::resolve_commit(context.work_tree(), commit)?;
        let snapshots = repository.snapshots(Some(&env))?;
        let commits: HashSet<String> = snapshots.iter().filter_map(|s| s.manifest.commit.clone()).collect();
        let found = branch::nearest_ancestor_in(context.work_tree(), &wanted, &commits)?;
        let Some(found) = found else {
            bail!(
                "no snapshot of environment `{env}` was taken at {commit} or any of its ancestors: \
                 see `envsnap list --env {env}`"
            );
        };
        // Newest first, so the first match is the newest snapshot at that commit.
        snapshots
            .into_iter()
            .find(|snapshot| snapshot.manifest.commit.as_deref() == Some(found.as_str()))
            .ok_or_else(|| anyhow::anyhow!("the snapshot at {found} vanished while looking for it"))?
    } else {
        context.resolve(repository, &args.id, args.env.as_deref())?
    };
    snapshot.manifest.check_element_names()?;
    Ok(snapshot)
}

/// Restores `elements` of `snapshot` in place into environment `env` (its own mount
/// paths), creating the branch `new_branch` first when given: asks, checks the
/// admin guard, takes a safety snapshot, restores.
pub fn into_environment(
    context: &Context,
    repository: &Repository,
    snapshot: &Snapshot,
    elements: &[&Element],
    env: &str,
    new_branch: Option<&NewBranch>,
    options: Options,
) -> Result<()> {
    activity::env(env);
    activity::snapshot(&snapshot.id);
    require_admin(context, env, "restore into")?;
    // Only the elements restored are resolved: restoring the files needs no
    // database password.
    let root = context.work_tree();
    let mut pairs = Vec::new();
    let mut service_pairs = Vec::new();
    for element in elements {
        let unknown = || Error::UnknownElement {
            name: element.name.clone(),
            context: format!(" among the {}s of envsnap.toml for `{env}`", element.kind.as_str()),
            known: context.config.iter().flat_map(|config| config.element_names()).map(str::to_owned).collect(),
        };
        match element.kind {
            ElementKind::Mount => {
                let mount = context.mount_named(&element.name, env, root)?.ok_or_else(unknown)?;
                pairs.push((*element, mount));
            }
            ElementKind::Service => {
                let mut service = context.service_named(&element.name, env)?.ok_or_else(unknown)?;
                if options.no_owner {
                    service.service.restore_without_owners();
                }
                service_pairs.push((*element, service));
            }
        }
    }
    require_admin_for_shared(context, env, &service_pairs)?;
    // The checks the restore makes before it asks, takes a safety snapshot or changes
    // anything; a dry run makes the same ones, so that what it passes the restore
    // passes too.
    let fresh = check_services(repository, &service_pairs)?;
    let targets = pairs
        .iter()
        .map(|(element, mount)| {
            Ok(RestoreTarget { tree: element.tree, destination: mount.path.clone(), replace: Some(mount.excludes()?) })
        })
        .collect::<Result<Vec<_>, Error>>()?;

    if options.dry_run {
        let mut out = std::io::stdout().lock();
        let mut counts = [0usize; 5];
        for ((element, mount), target) in pairs.iter().zip(&targets) {
            writeln!(out, "{} → {} ({}):", element.name, mount.path.display(), env)?;
            for change in preview(repository, target)? {
                counts[change.kind as usize] += 1;
                let slash = if change.is_dir { "/" } else { "" };
                writeln!(out, "{}  {}{slash}", change.kind.mark(), change.path.display())?;
            }
        }
        verify_dumps(repository, &service_pairs)?;
        verify(repository, &targets, reporter().as_ref())?;
        for ((element, source), new) in service_pairs.iter().zip(&fresh) {
            let what =
                if *new { "does not exist yet: it would be created from" } else { "its data would be replaced by" };
            // A database is dropped to be replaced: whoever is connected to it is cut off.
            let sessions = match source.service.other_sessions()? {
                Some(count) if !*new => {
                    format!(
                        "; the {} connected to it now would be ended",
                        counted(count, "other session", "other sessions")
                    )
                }
                _ => String::new(),
            };
            writeln!(
                out,
                "{} → {} ({env}): {what} the {} dump{sessions}",
                element.name,
                source.service.address(),
                bytes(element.size)
            )?;
        }
        if let Some(new_branch) = new_branch {
            writeln!(
                out,
                "would create branch `{env}` from `{}` at {}",
                new_branch.parent,
                new_branch.commit.get(..10).unwrap_or(&new_branch.commit)
            )?;
        }
        note!(
            "restoring snapshot {} would overwrite {} and remove {} paths, and create {}; nothing was changed",
            snapshot.id.short(SHORT_ID),
            counts[ChangeKind::Modified as usize]
                + counts[ChangeKind::Metadata as usize]
                + counts[ChangeKind::TypeChanged as usize],
            counts[ChangeKind::Removed as usize],
            counts[ChangeKind::Added as usize],
        );
        return Ok(());
    }

    let creating =
        new_branch.map(|new_branch| format!(" (a new branch from `{}`)", new_branch.parent)).unwrap_or_default();
    let question = format!(
        "Restore snapshot {} of `{}` ({}) into environment `{env}`{creating}, replacing {}?",
        snapshot.id.short(SHORT_ID),
        snapshot.manifest.env,
        snapshot.manifest.created.format("%Y-%m-%d %H:%M"),
        pairs
            .iter()
            .map(|(_, mount)| mount.path.display().to_string())
            .chain(service_pairs.iter().map(|(_, source)| source.service.address()))
            .collect::<Vec<_>>()
            .join(", ")
    );
    confirm(options.yes, &Question { text: &question, verb: "overwrite", action: "restore" })?;
    // Everything the restore will write is read and verified before anything is taken
    // or changed: a damaged snapshot is refused while the live data is still intact.
    // The files are staged beside their places on the way, so they are read once.
    verify_dumps(repository, &service_pairs)?;
    let existing: Vec<_> = pairs.iter().map(|(_, mount)| mount.clone()).filter(|mount| mount.path.is_dir()).collect();
    let staged = if targets.is_empty() { None } else { Some(stage(repository, &targets, reporter().as_ref())?) };
    let mut safety_id = None;
    if options.safety {
        // Fresh adapters for the safety snapshot: the ones matched above restore.
        let mut live_services = Vec::new();
        for (element, _) in &service_pairs {
            if let Some(source) = context.service_named(&element.name, env)?
                && source.service.exists()?
            {
                live_services.push(source);
            }
        }
        if !existing.is_empty() || !live_services.is_empty() {
            let commit = if context.workspace.branch.as_deref() == Some(env) {
                context.workspace.commit.clone()
            } else if let Some(new_branch) = new_branch {
                // The branch will start there: the data it had is of that commit's time.
                Some(new_branch.commit.clone())
            } else {
                envsnap::git::branch_commit(context.work_tree(), env)?
            };
            let request = Request {
                env,
                commit,
                mounts: existing,
                services: live_services,
                trigger: Trigger::Safety,
                mode: Mode::Live,
                note: Some(format!("taken before restoring snapshot {}", snapshot.id.short(SHORT_ID))),
                keep_for: None,
                partial: false,
                job: None,
            };
            let safety = take(context, repository, request)?.snapshot;
            // The safety snapshot deduplicates onto chunks already stored; if one is
            // damaged it could not put back what the restore overwrites.
            let nothing_staged = Verified::default();
            let verified = staged.as_ref().map_or(&nothing_staged, Staged::verified);
            if let Err(error) = verify_snapshot(repository, &safety, verified, reporter().as_ref()) {
                let _ = repository.delete(&safety.id);
                bail!(
                    "{error}\nthe safety snapshot of `{env}` would depend on damaged data, so it was deleted and \
                     nothing was restored; nothing was changed: run `envsnap check --read-data`, then \
                     `envsnap repair`"
                );
            }
            safety_id = Some(safety.id);
            activity::detail(format!("safety snapshot {} taken first", safety.id.short(SHORT_ID)));
            note!(
                "safety snapshot {} taken; to go back: envsnap undo (or envsnap restore {} --target {env})",
                safety.id.short(SHORT_ID),
                safety.id.short(SHORT_ID)
            );
        }
    }
    // From here on the environment changes: record it, so `undo` acts on this restore.
    let mut record = RestoreRecord {
        env: env.to_owned(),
        restored: snapshot.id,
        safety: safety_id,
        started: chrono::Utc::now(),
        state: RestoreState::Changing,
    };
    repository.record_restore(&record)?;
    let work = Work { staged, services: &service_pairs };
    let result = change(context, repository, snapshot, env, new_branch, work);
    record.state = if result.is_ok() { RestoreState::Done } else { RestoreState::Failed };
    let recorded = repository.record_restore(&record);
    result.and(recorded.map_err(anyhow::Error::from))
}

/// What a restore into an environment writes: its files staged, its services' dumps
/// verified.
struct Work<'a> {
    staged: Option<Staged>,
    services: &'a [(&'a Element, ServiceSource)],
}

/// The part of a restore into an environment that changes it.
fn change(
    context: &Context,
    repository: &Repository,
    snapshot: &Snapshot,
    env: &str,
    new_branch: Option<&NewBranch>,
    work: Work,
) -> Result<()> {
    let Work { staged, services: service_pairs } = work;
    if let Some(NewBranch { parent, commit }) = new_branch {
        // At the commit checked first, whatever `parent` names by now.
        let commit = branch::create_branch(context.work_tree(), env, commit)?;
        note!("created branch `{env}` from `{parent}` at {}", &commit[..10.min(commit.len())]);
    }
    let undo_hint = |error: Error| {
        anyhow::anyhow!("{error}\nthe restore did not finish; `envsnap undo` puts back what was there before")
    };
    if let Some(staged) = staged {
        let report = staged.commit().map_err(undo_hint)?;
        note!(
            "restored the files of snapshot {} into `{env}`: {}, {}, {}, {}",
            snapshot.id.short(SHORT_ID),
            counted(report.files, "file", "files"),
            counted(report.dirs, "directory", "directories"),
            counted(report.symlinks, "symlink", "symlinks"),
            bytes(report.bytes)
        );
    }
    for (element, source) in service_pairs {
        // Only said: a count that cannot be read is no reason to stop the restore.
        if let Some(count) = source.service.other_sessions().ok().flatten()
            && count > 0
        {
            note!(
                "service {}: ending the {} connected to {}",
                element.name,
                counted(count, "other session", "other sessions"),
                source.service.address()
            );
        }
        restore_service(repository, &element.tree, source.service.as_ref()).map_err(undo_hint)?;
        note!(
            "restored service {} of snapshot {} into {}",
            element.name,
            snapshot.id.short(SHORT_ID),
            source.service.address()
        );
    }
    Ok(())
}

/// The checks a restore makes of its services before anything is asked or changed:
/// each service's own (`Service::check_restore`: a dump of a newer server version,
/// a dump that cannot go where its address points); returns, service by service,
/// whether its data does not exist yet (a database the restore creates).
fn check_services(repository: &Repository, services: &[(&Element, ServiceSource)]) -> Result<Vec<bool>> {
    services
        .iter()
        .map(|(element, source)| {
            check_restore(repository, &element.tree, source.service.as_ref())?;
            Ok(!source.service.exists()?)
        })
        .collect()
}

/// Reads and verifies every byte of the services' dumps: a damaged snapshot is refused
/// while the live data is still intact.
fn verify_dumps(repository: &Repository, services: &[(&Element, ServiceSource)]) -> Result<()> {
    for (element, _) in services {
        let dump = [RestoreTarget { tree: element.tree, destination: PathBuf::from(&element.name), replace: None }];
        verify(repository, &dump, reporter().as_ref())?;
    }
    Ok(())
}

/// Refuses someone not listed in `admins` an action (`"restore into"`, `"delete a
/// snapshot of"`) on the production environment, when `admins` is set.
pub fn require_admin(context: &Context, env: &str, action: &str) -> Result<()> {
    let config = context.config()?;
    if env == config.production() && !config.admins().is_empty() {
        let identities = branch::user_identities(context.work_tree());
        if !identities.iter().any(|identity| config.is_admin(identity)) {
            bail!(
                "only admins may {action} the production environment `{env}`, and you are not one \
                 ({}): ask an admin listed in envsnap.toml",
                identities.join(", ")
            );
        }
    }
    Ok(())
}

/// A service whose address does not follow the branch (a URL or path without
/// `{branch}`) is the production environment's own: restoring it into any environment
/// overwrites production's data. Says so, and holds such a restore to production's
/// admin guard.
fn require_admin_for_shared(context: &Context, env: &str, services: &[(&Element, ServiceSource)]) -> Result<()> {
    let production = context.config()?.production().to_owned();
    if env == production || services.is_empty() {
        return Ok(());
    }
    let mut shared = Vec::new();
    for (_, source) in services {
        // Production's address of the same service: its own `${VAR}`s only.
        if let Some(theirs) = context.service_named(&source.name, &production)?
            && theirs.service.address() == source.service.address()
        {
            shared.push(format!("`{}` ({})", source.name, source.service.address()));
        }
    }
    if shared.is_empty() {
        return Ok(());
    }
    note!(
        "service {} of `{env}` is the one production `{production}` uses (its address has no `{{branch}}`): \
         this restore overwrites production's data",
        shared.join(", ")
    );
    require_admin(context, &production, &format!("restore shared service {} of", shared.join(", ")))
}

/// The elements of `snapshot` named in `names` (all when empty).
pub fn chosen_elements<'a>(snapshot: &'a Snapshot, names: &[String]) -> Result<Vec<&'a Element>> {
    let known: Vec<String> = snapshot.manifest.elements.iter().map(|element| element.name.clone()).collect();
    for name in names {
        if !known.contains(name) {
            return Err(Error::UnknownElement {
                name: name.clone(),
                context: format!(" in snapshot {}", snapshot.id.short(SHORT_ID)),
                known,
            }
            .into());
        }
    }
    Ok(snapshot.manifest.elements.iter().filter(|element| names.is_empty() || names.contains(&element.name)).collect())
}
