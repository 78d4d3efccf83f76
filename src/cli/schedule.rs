//! `envsnap schedule run`, `install`, `status` and `uninstall`

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context as _, Result, bail};
use chrono::{DateTime, Local, NaiveDateTime, Offset, Utc};
use envsnap::config::{Config, Schedule};
use envsnap::forget;
use envsnap::repository::{Access, Repository};
use envsnap::snapshot::{Mode, Trigger};

use super::activity;
use super::backup::{commit_of, elements, summary};
use super::clock;
use super::context::{Context, Global};
use super::forget::plan;
use super::format::{SHORT_ID, counted};
use super::output;
use super::output::note;
use super::prune;
use super::take::{Request, take};

/// Options of `envsnap schedule`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// What to do.
    #[command(subcommand)]
    pub command: Action,
}

/// The `schedule` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum Action {
    /// Take the automated snapshots that are due by `[schedule]`, then apply `[retention]`
    /// and free what it let go. Run it from cron or a systemd timer: a second run in the
    /// same period does nothing.
    Run(RunArgs),
    /// Run `envsnap schedule run` every few minutes from the user's crontab or a systemd
    /// user timer.
    Install(InstallArgs),
    /// The schedule: its cron expression and branches, each branch's last automated
    /// snapshot and whether one is due, and whether `install` put a crontab line or a
    /// systemd timer in place.
    Status,
    /// Remove what `install` put in place for this work tree: its crontab line, its
    /// systemd user timer and service (both, unless --cron or --systemd says which).
    Uninstall(UninstallArgs),
}

/// Options of `envsnap schedule uninstall`.
#[derive(Debug, clap::Args)]
pub struct UninstallArgs {
    /// Only the crontab line.
    #[arg(long, conflicts_with = "systemd")]
    pub cron: bool,
    /// Only the systemd user timer and service.
    #[arg(long)]
    pub systemd: bool,
}

/// Options of `envsnap schedule run`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Say which snapshots are due, and take none.
    #[arg(long)]
    pub dry_run: bool,
    /// Forget what retention lets go, but leave freeing the space to `envsnap prune`.
    #[arg(long)]
    pub no_prune: bool,
}

/// Options of `envsnap schedule install`.
#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("how").required(true).args(["cron", "systemd"])))]
pub struct InstallArgs {
    /// Add a line to the user's crontab (replacing the one an earlier install added).
    #[arg(long)]
    pub cron: bool,
    /// Write a systemd user timer and service to ~/.config/systemd/user/.
    #[arg(long)]
    pub systemd: bool,
    /// Print what would be installed, and install nothing.
    #[arg(long)]
    pub print: bool,
    /// How often `schedule run` looks for due snapshots, in minutes (1 to 60).
    #[arg(long, value_name = "MINUTES", default_value_t = 15, value_parser = clap::value_parser!(u32).range(1..=60))]
    pub every: u32,
}

pub fn run(global: &Global, args: &Args) -> Result<()> {
    let context = Context::discover(global)?;
    match &args.command {
        Action::Run(run) => run_due(&context, run),
        Action::Install(install) => self::install(global, &context, install),
        Action::Status => status(&context),
        Action::Uninstall(uninstall) => self::uninstall(&context, uninstall),
    }
}

/// A branch whose automated snapshot is due, and the run of the schedule it is for.
struct Due {
    branch: String,
    run: DateTime<Utc>,
}

fn run_due(context: &Context, args: &RunArgs) -> Result<()> {
    let config = context.config()?;
    let schedule = config_schedule(context, config)?;
    let now = clock::now()?;
    let Some(run) = latest_run(schedule, now) else {
        println!("the schedule `{}` has not come round in nine years: nothing is due", schedule.cron.as_str());
        return Ok(());
    };
    let branches: Vec<String> = envsnap::git::branch::local_branches(context.work_tree())?
        .into_iter()
        .filter(|branch| schedule.applies_to(branch))
        .collect();
    if branches.is_empty() {
        bail!(
            "no branch here matches the schedule's branches; check `branches` under [schedule] in {}",
            context.work_tree().join(envsnap::config::FILE_NAME).display()
        );
    }
    // Decided first without the writers' lock, so that a run with nothing to do never
    // waits behind a long backup; decided again under it, so that two runs started
    // together take each snapshot once.
    let seen = due(&context.open(Access::Read)?, &branches, run)?;
    if seen.is_empty() {
        println!("nothing due: every scheduled branch has its snapshot for the run of {}", local_time(run));
        return Ok(());
    }
    if args.dry_run {
        for due in seen {
            println!("{}: due for the run of {}", due.branch, local_time(due.run));
        }
        return Ok(());
    }
    let repository = context.open(Access::Write)?;
    let mut failed = 0;
    for due in due(&repository, &branches, run)? {
        match snapshot(context, &repository, &due.branch, schedule) {
            Ok(report) => {
                activity::snapshot(&report.snapshot.id);
                println!("{}: snapshot {} for the run of {}", due.branch, report.snapshot.id, local_time(due.run));
                if output::says(output::Level::Normal) {
                    eprint!("{}", summary(&report));
                }
            }
            Err(error) => {
                failed += 1;
                eprintln!("envsnap: {}: no snapshot for the run of {}: {error:#}", due.branch, local_time(due.run));
            }
        }
    }
    retain(context, config, &repository, args)?;
    if failed > 0 {
        bail!(
            "{} failed; the next `envsnap schedule run` tries again",
            counted(failed, "scheduled snapshot", "scheduled snapshots")
        );
    }
    Ok(())
}

fn config_schedule<'a>(context: &Context, config: &'a Config) -> Result<&'a Schedule> {
    config.schedule().with_context(|| {
        format!(
            "{} has no [schedule] table, so no snapshot is ever due; add one, e.g. `[schedule]` with \
             `cron = \"0 3 * * *\"` (every day at 03:00) and `branches = [\"main\"]`",
            context.work_tree().join(envsnap::config::FILE_NAME).display()
        )
    })
}

/// The latest run of the schedule at or before `now`. Cron expressions are read in
/// the machine's local time, as cron reads them. A run in a daylight-saving gap
/// counts from the first minute after the gap; a run in the hour that the change back
/// repeats counts once, at its first occurrence, so a day's run is taken once.
fn latest_run(schedule: &Schedule, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let local: NaiveDateTime = now.with_timezone(&Local).naive_local();
    let run = schedule.cron.latest(local)?;
    // The first minute that exists at or after the run (daylight saving skips some),
    // never later than now: a run in a gap is due once, when the gap ends.
    (0..=180).find_map(|minutes| first_instant_of(run + chrono::Duration::minutes(minutes))).map(|time| time.min(now))
}

/// The first instant whose local wall-clock time is `wall`: `None` in a gap that
/// daylight saving skips, the first of two in the hour it repeats. Found by trying
/// the offsets in force a day either side, because chrono's `Local` answers a repeated
/// hour with one of its instants only, the later one on some systems.
fn first_instant_of(wall: NaiveDateTime) -> Option<DateTime<Utc>> {
    let near = wall.and_utc();
    [-1, 0, 1]
        .into_iter()
        .filter_map(|days| {
            let offset = (near + chrono::Duration::days(days)).with_timezone(&Local).offset().fix();
            let instant = (wall - chrono::Duration::seconds(i64::from(offset.local_minus_utc()))).and_utc();
            (instant.with_timezone(&Local).naive_local() == wall).then_some(instant)
        })
        .min()
}

/// The branches without an automated snapshot taken at or after `run`.
fn due(repository: &Repository, branches: &[String], run: DateTime<Utc>) -> Result<Vec<Due>> {
    let mut due = Vec::new();
    for branch in branches {
        let newest = repository
            .snapshots(Some(branch))?
            .into_iter()
            .filter(|snapshot| snapshot.manifest.trigger == Trigger::Schedule)
            .map(|snapshot| snapshot.manifest.created)
            .max();
        if newest.is_none_or(|created| created < run) {
            due.push(Due { branch: branch.clone(), run });
        }
    }
    Ok(due)
}

fn snapshot(
    context: &Context,
    repository: &Repository,
    branch: &str,
    schedule: &Schedule,
) -> Result<envsnap::backup::BackupReport> {
    let checked_out = envsnap::git::branch::checked_out_at(context.work_tree(), branch)?;
    let root = match checked_out {
        Some(root) => root,
        None => {
            // Files of a branch that no work tree has checked out are only where the
            // mount's path names the branch; elsewhere they are another branch's.
            if let Some(mount) = context.config()?.mounts().iter().find(|mount| !mount.path.contains("{branch}")) {
                bail!(
                    "{branch} is not checked out in any work tree, and mount `{}` (`{}`) is the same directory for \
                     every branch, so it holds another branch's files; check {branch} out in a worktree \
                     (`git worktree add`), put {{branch}} in the mount's path, or leave {branch} out of \
                     [schedule] branches",
                    mount.name,
                    mount.path
                );
            }
            context.work_tree().to_owned()
        }
    };
    let (mounts, services) = elements(context, branch, &root, &[])?;
    let request = Request {
        env: branch,
        commit: commit_of(context, branch)?,
        mounts,
        services,
        trigger: Trigger::Schedule,
        mode: if schedule.live { Mode::Live } else { Mode::Consistent },
        note: None,
        keep_for: None,
        partial: false,
        job: None,
    };
    take(context, repository, request)
}

/// Applies `[retention]` to every environment, then frees what it let go.
fn retain(context: &Context, config: &Config, repository: &Repository, args: &RunArgs) -> Result<()> {
    if config.retention().is_none() {
        note!("no [retention] in envsnap.toml: every snapshot is kept");
        return Ok(());
    }
    let planned = plan(context, repository, None, true)?;
    let forgotten = forget::apply(repository, &planned, &mut |snapshot| {
        println!(
            "forgot snapshot {} of {} taken {}",
            snapshot.id.short(SHORT_ID),
            snapshot.manifest.env,
            snapshot.manifest.created.format("%Y-%m-%d %H:%M UTC")
        );
    })?;
    activity::detail(format!("forgot {}", counted(forgotten as u64, "snapshot", "snapshots")));
    if forgotten > 0 && !args.no_prune {
        prune::prune(
            repository,
            &prune::Args { dry_run: false, wait: prune::DEFAULT_WAIT },
            &mut std::io::stdout().lock(),
        )?;
    }
    Ok(())
}

fn local_time(time: DateTime<Utc>) -> String {
    time.with_timezone(&Local).format("%Y-%m-%d %H:%M %Z").to_string()
}

fn status(context: &Context) -> Result<()> {
    let config = context.config()?;
    let mut out = std::io::stdout().lock();
    let installed = Installed::find(context)?;
    match config.schedule() {
        None => writeln!(out, "schedule     none: envsnap.toml has no [schedule] table, so no snapshot is ever due")?,
        Some(schedule) => {
            let now = clock::now()?;
            let branches: Vec<String> = envsnap::git::branch::local_branches(context.work_tree())?
                .into_iter()
                .filter(|branch| schedule.applies_to(branch))
                .collect();
            writeln!(
                out,
                "schedule     `{}` (local time){}",
                schedule.cron.as_str(),
                if schedule.live { ", live" } else { "" }
            )?;
            let run = latest_run(schedule, now);
            if let Some(run) = run {
                writeln!(out, "last run     {}", local_time(run))?;
            }
            if branches.is_empty() {
                writeln!(out, "branches     none here matches [schedule] branches")?;
            }
            let repository = context.open(Access::Read)?;
            let due = match run {
                Some(run) => due(&repository, &branches, run)?,
                None => Vec::new(),
            };
            for branch in &branches {
                let last = repository
                    .snapshots(Some(branch))?
                    .into_iter()
                    .find(|snapshot| snapshot.manifest.trigger == Trigger::Schedule);
                let last = match last {
                    Some(last) => format!(
                        "last automated snapshot {} at {}",
                        last.id.short(SHORT_ID),
                        local_time(last.manifest.created)
                    ),
                    None => "no automated snapshot yet".to_owned(),
                };
                let state = if due.iter().any(|due| &due.branch == branch) { "due" } else { "not due" };
                writeln!(out, "{branch:<12} {state}: {last}")?;
            }
        }
    }
    let mut any = false;
    if let Some(line) = &installed.cron {
        writeln!(out, "installed    crontab line: {line}")?;
        any = true;
    }
    for unit in &installed.systemd {
        writeln!(out, "installed    systemd user unit {}", unit.display())?;
        any = true;
    }
    if !any {
        writeln!(
            out,
            "installed    nothing runs `schedule run`: `envsnap schedule install --cron` (or --systemd) does"
        )?;
    }
    Ok(())
}

fn uninstall(context: &Context, args: &UninstallArgs) -> Result<()> {
    let (cron, systemd) = if args.cron || args.systemd { (args.cron, args.systemd) } else { (true, true) };
    let installed = Installed::find(context)?;
    let mut removed = false;
    if cron && installed.cron.is_some() {
        let marker = marker(context.work_tree());
        let current = installed.crontab.unwrap_or_default();
        let kept: Vec<&str> = current.lines().filter(|line| !line.ends_with(&marker)).collect();
        write_crontab(&kept, &format!("remove the line ending in `{marker}` with `crontab -e`"))?;
        println!("removed the crontab line of {}", context.work_tree().display());
        removed = true;
    }
    if systemd {
        for unit in &installed.systemd {
            std::fs::remove_file(unit).with_context(|| format!("removing {}", unit.display()))?;
            println!("removed {}", unit.display());
            removed = true;
        }
        if !installed.systemd.is_empty() {
            println!(
                "stop the timer if it is running: systemctl --user disable --now {}.timer; \
                 systemctl --user daemon-reload",
                unit_name(context.work_tree())
            );
        }
    }
    if !removed {
        note!("nothing to remove: no crontab line or systemd unit of `schedule install` for this work tree");
    }
    Ok(())
}

/// What `schedule install` put in place for a work tree.
struct Installed {
    /// The user's crontab, when `crontab -l` can be run and lists one.
    crontab: Option<String>,
    /// Its line of this work tree.
    cron: Option<String>,
    /// Its systemd units that exist.
    systemd: Vec<PathBuf>,
}

impl Installed {
    fn find(context: &Context) -> Result<Self> {
        // No cron on the machine, or no crontab for the user: no line of ours.
        let crontab = Command::new("crontab")
            .arg("-l")
            .stderr(Stdio::null())
            .output()
            .ok()
            .filter(|listed| listed.status.success())
            .map(|listed| String::from_utf8_lossy(&listed.stdout).into_owned());
        let marker = marker(context.work_tree());
        let cron = crontab.as_deref().and_then(|table| table.lines().find(|line| line.ends_with(&marker)));
        let cron = cron.map(str::to_owned);
        let name = unit_name(context.work_tree());
        let systemd = match systemd_user_directory() {
            Ok(directory) => ["service", "timer"]
                .iter()
                .map(|extension| directory.join(format!("{name}.{extension}")))
                .filter(|path| path.is_file())
                .collect(),
            Err(_) => Vec::new(),
        };
        Ok(Installed { crontab, cron, systemd })
    }
}

/// Replaces the user's crontab with `lines`; `otherwise` says what to do if it fails.
fn write_crontab(lines: &[&str], otherwise: &str) -> Result<()> {
    let mut child = Command::new("crontab").arg("-").stdin(Stdio::piped()).spawn().context("running `crontab -`")?;
    if let Some(mut stdin) = child.stdin.take() {
        let text = if lines.is_empty() { String::new() } else { lines.join("\n") + "\n" };
        stdin.write_all(text.as_bytes()).context("writing to `crontab -`")?;
    }
    let status = child.wait().context("running `crontab -`")?;
    if !status.success() {
        bail!("`crontab -` failed ({status}); the crontab is unchanged; {otherwise}");
    }
    Ok(())
}

/// The comment that marks the crontab line of the work tree `work_tree`.
fn marker(work_tree: &Path) -> String {
    format!("# envsnap schedule {}", work_tree.display())
}

/// A name for the systemd units of the work tree `work_tree`: unique per path, readable.
fn unit_name(work_tree: &Path) -> String {
    let base = work_tree.file_name().map(|name| envsnap::config::branch_slug(&name.to_string_lossy()));
    let hash = blake3::hash(work_tree.as_os_str().as_encoded_bytes()).to_hex();
    format!("envsnap-schedule-{}-{}", base.unwrap_or_default(), &hash[..8])
}

/// What installing runs: this binary, in this work tree, with the PATH of now (the
/// dump tools must be found under cron, whose PATH is short).
struct Job {
    work_tree: PathBuf,
    binary: PathBuf,
    repository: Option<PathBuf>,
    path: String,
    log: PathBuf,
}

fn install(global: &Global, context: &Context, args: &InstallArgs) -> Result<()> {
    config_schedule(context, context.config()?)?;
    let binary = std::env::current_exe().context("finding the envsnap binary")?;
    let job = Job {
        work_tree: context.work_tree().to_owned(),
        binary,
        repository: match &global.repository {
            Some(_) => Some(std::path::absolute(&context.repository_path).context("finding the repository's path")?),
            None => None,
        },
        path: std::env::var("PATH").unwrap_or_else(|_| "/usr/local/bin:/usr/bin:/bin".to_owned()),
        log: context.workspace.common_dir.join("envsnap-schedule.log"),
    };
    if args.cron { install_cron(&job, args) } else { install_systemd(&job, args) }
}

/// Quotes a word for `sh`.
fn quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

impl Job {
    /// The command line that `schedule run` is started with.
    fn command(&self) -> String {
        let mut command =
            format!("{} -C {}", quote(&self.binary.to_string_lossy()), quote(&self.work_tree.to_string_lossy()));
        if let Some(repository) = &self.repository {
            command.push_str(&format!(" --repository {}", quote(&repository.to_string_lossy())));
        }
        command + " schedule run"
    }

    /// The comment that marks the crontab line of this work tree.
    fn marker(&self) -> String {
        marker(&self.work_tree)
    }

    /// A name for the systemd units of this work tree.
    fn unit_name(&self) -> String {
        unit_name(&self.work_tree)
    }
}

fn install_cron(job: &Job, args: &InstallArgs) -> Result<()> {
    let line = format!(
        "*/{} * * * * PATH={} {} >>{} 2>&1 {}",
        args.every,
        quote(&job.path),
        job.command(),
        quote(&job.log.to_string_lossy()),
        job.marker()
    );
    if args.print {
        println!("{line}");
        return Ok(());
    }
    let listed = Command::new("crontab").arg("-l").stderr(Stdio::null()).output().map_err(|error| {
        anyhow::anyhow!(
            "cannot run `crontab` ({error}): install cron (Debian, Ubuntu: `apt-get install cron`), or use \
             `envsnap schedule install --systemd`, or add the line `envsnap schedule install --cron --print` prints"
        )
    })?;
    // `crontab -l` fails when the user has no crontab yet: that is an empty one.
    let current =
        if listed.status.success() { String::from_utf8_lossy(&listed.stdout).into_owned() } else { String::new() };
    let marker = job.marker();
    let mut lines: Vec<&str> = current.lines().filter(|existing| !existing.ends_with(&marker)).collect();
    let replaced = lines.len() < current.lines().count();
    lines.push(&line);
    write_crontab(&lines, "add the line `envsnap schedule install --cron --print` prints by hand")?;
    println!(
        "{} the crontab line: `envsnap schedule run` every {} minutes; its output goes to {}",
        if replaced { "replaced" } else { "added" },
        args.every,
        job.log.display()
    );
    Ok(())
}

fn install_systemd(job: &Job, args: &InstallArgs) -> Result<()> {
    let name = job.unit_name();
    let service = format!(
        "[Unit]\nDescription=envsnap scheduled snapshots of {work_tree}\n\n[Service]\nType=oneshot\n\
         Environment=PATH={path}\nExecStart={command}\n",
        work_tree = job.work_tree.display(),
        path = job.path,
        command = job.command(),
    );
    let timer = format!(
        "[Unit]\nDescription=envsnap scheduled snapshots of {work_tree}, every {every} minutes\n\n[Timer]\n\
         OnCalendar=*:0/{every}\nPersistent=true\n\n[Install]\nWantedBy=timers.target\n",
        work_tree = job.work_tree.display(),
        every = args.every,
    );
    if args.print {
        print!("# {name}.service\n{service}\n# {name}.timer\n{timer}");
        return Ok(());
    }
    let directory = systemd_user_directory()?;
    std::fs::create_dir_all(&directory).with_context(|| format!("creating {}", directory.display()))?;
    for (extension, text) in [("service", &service), ("timer", &timer)] {
        let path = directory.join(format!("{name}.{extension}"));
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
        println!("wrote {}", path.display());
    }
    println!(
        "start it with: systemctl --user daemon-reload && systemctl --user enable --now {name}.timer\n\
         (and `loginctl enable-linger` so that it runs while you are logged out)"
    );
    Ok(())
}

fn systemd_user_directory() -> Result<PathBuf> {
    let config = match std::env::var_os("XDG_CONFIG_HOME").filter(|value| !value.is_empty()) {
        Some(directory) => PathBuf::from(directory),
        None => {
            Path::new(&std::env::var_os("HOME").context("HOME is not set: set it, or use --print")?).join(".config")
        }
    };
    Ok(config.join("systemd").join("user"))
}
