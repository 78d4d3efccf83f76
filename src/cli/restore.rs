//! `envsnap restore`

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;

use anyhow::{Result, bail};
use envsnap::Error;
use envsnap::backup::{BackupOptions, backup};
use envsnap::element::mount::Mount;
use envsnap::repository::{Access, Repository};
use envsnap::restore::{RestoreTarget, restore};
use envsnap::snapshot::{ElementKind, Mode, Snapshot, Trigger};

use super::backup::{hostname, whoami};
use super::context::{Context, Global};
use super::format::{SHORT_ID, bytes};
use super::progress::reporter;

/// Options of `envsnap restore`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The snapshot: an id prefix of at least 4 characters, or `latest` (the default).
    #[arg(default_value = "latest")]
    pub id: String,
    /// Write the files into DIR/<element>/ instead, touching no environment.
    #[arg(long, value_name = "DIR")]
    pub to: Option<PathBuf>,
    /// Only these elements (repeatable).
    #[arg(long = "element", value_name = "NAME")]
    pub elements: Vec<String>,
    /// For `latest`: the environment whose newest snapshot to take.
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
}

pub fn run(global: &Global, args: &Args) -> Result<()> {
    let context = Context::discover(global)?;
    let env_for_latest =
        if args.id == "latest" { Some(context.workspace.environment(args.env.as_deref())?) } else { None };
    let access = if args.to.is_some() || args.dry_run { Access::Read } else { Access::Write };
    let repository = context.open(access)?;
    let snapshot = repository.resolve(&args.id, env_for_latest.as_deref())?;
    snapshot.manifest.check_element_names()?;
    let elements = chosen_elements(&snapshot, &args.elements)?;
    let progress = reporter();

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
        let report = restore(&repository, &targets, progress.as_ref())?;
        eprintln!(
            "restored snapshot {} into {}: {} files, {} directories, {} symlinks, {}",
            snapshot.id.short(SHORT_ID),
            directory.display(),
            report.files,
            report.dirs,
            report.symlinks,
            bytes(report.bytes)
        );
        return Ok(());
    }

    let env = context.workspace.environment(args.env.as_deref())?;
    if snapshot.manifest.env != env {
        bail!(
            "snapshot {} belongs to environment `{}`, not `{env}`: check out `{}` to restore it there, \
             or write its files elsewhere with --to DIR",
            snapshot.id.short(SHORT_ID),
            snapshot.manifest.env,
            snapshot.manifest.env
        );
    }
    let mounts = context.mounts(&env)?;
    let mut pairs = Vec::new();
    for element in &elements {
        let mount = mounts.iter().find(|mount| mount.name == element.name).ok_or_else(|| Error::UnknownElement {
            name: element.name.clone(),
            context: " among the mounts of envsnap.toml".into(),
            known: mounts.iter().map(|mount| mount.name.clone()).collect(),
        })?;
        pairs.push((element, mount.clone()));
    }
    if args.dry_run {
        for (element, mount) in &pairs {
            println!(
                "would replace {} with {} ({} files, {}) from snapshot {}",
                mount.path.display(),
                element.name,
                element.files,
                bytes(element.size),
                snapshot.id.short(SHORT_ID)
            );
        }
        return Ok(());
    }
    confirm(
        args.yes,
        &format!(
            "Restore snapshot {} ({}) into {}, replacing {}?",
            snapshot.id.short(SHORT_ID),
            snapshot.manifest.created.format("%Y-%m-%d %H:%M"),
            env,
            pairs.iter().map(|(_, mount)| mount.path.display().to_string()).collect::<Vec<_>>().join(", ")
        ),
    )?;
    if !args.no_safety_snapshot {
        let existing: Vec<Mount> =
            pairs.iter().map(|(_, mount)| mount.clone()).filter(|mount| mount.path.is_dir()).collect();
        if !existing.is_empty() {
            let safety = safety_snapshot(&repository, &context, &env, existing)?;
            eprintln!(
                "safety snapshot {} taken; to go back: envsnap restore {} --yes",
                safety.id.short(SHORT_ID),
                safety.id.short(SHORT_ID)
            );
        }
    }
    let mut targets = Vec::new();
    for (element, mount) in &pairs {
        targets.push(RestoreTarget {
            tree: element.tree,
            destination: mount.path.clone(),
            replace: Some(mount.excludes()?),
        });
    }
    let report = restore(&repository, &targets, progress.as_ref())?;
    eprintln!(
        "restored snapshot {} into {env}: {} files, {} directories, {} symlinks, {}",
        snapshot.id.short(SHORT_ID),
        report.files,
        report.dirs,
        report.symlinks,
        bytes(report.bytes)
    );
    Ok(())
}

fn chosen_elements<'a>(snapshot: &'a Snapshot, names: &[String]) -> Result<Vec<&'a envsnap::snapshot::Element>> {
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
    Ok(snapshot
        .manifest
        .elements
        .iter()
        .filter(|element| element.kind == ElementKind::Mount)
        .filter(|element| names.is_empty() || names.contains(&element.name))
        .collect())
}

fn safety_snapshot(repository: &Repository, context: &Context, env: &str, mounts: Vec<Mount>) -> Result<Snapshot> {
    let options = BackupOptions {
        env: env.to_owned(),
        commit: context.workspace.commit.clone(),
        trigger: Trigger::Safety,
        mode: Mode::Live,
        note: Some("taken before a restore".to_owned()),
        expires: None,
        user: whoami(),
        host: hostname(),
        mounts,
    };
    Ok(backup(repository, &options, reporter().as_ref())?.snapshot)
}

/// Asks on a terminal; refuses without one unless `--yes` was given.
fn confirm(yes: bool, question: &str) -> Result<()> {
    if yes {
        return Ok(());
    }
    if !std::io::stdin().is_terminal() {
        bail!("{question}\nrefusing to overwrite without confirmation: run it again with --yes");
    }
    eprint!("{question} [y/N] ");
    std::io::stderr().flush()?;
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    if matches!(answer.trim(), "y" | "Y" | "yes" | "YES" | "Yes") {
        Ok(())
    } else {
        bail!("restore cancelled; nothing was changed")
    }
}
