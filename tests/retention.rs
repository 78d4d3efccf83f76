//! Retention and schedules with the real binary, on a simulated calendar
//! (`ENVSNAP_NOW`): forget, the manual limit, deleted branches, `schedule run` and
//! `schedule install`.

mod common;

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::fs;

use common::{Project, TestResult, bin_dir, git};

type Failure = Box<dyn std::error::Error>;

const MOUNT: &str = r#"
[[mount]]
name = "data"
path = "data"
"#;

/// Runs envsnap at `now` (RFC 3339) in UTC; fails unless it succeeds; returns stdout.
fn at(project: &Project, now: &str, args: &[&str]) -> Result<String, Failure> {
    let output = project.run_with_env(args, &[("ENVSNAP_NOW", OsStr::new(now)), ("TZ", OsStr::new("UTC"))])?;
    if !output.status.success() {
        return Err(format!(
            "envsnap {args:?} at {now} failed ({}):\n{}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
        .into());
    }
    Ok(String::from_utf8(output.stdout)?)
}

/// Runs envsnap at `now`, expects exit 1; returns stderr.
fn fails_at(project: &Project, now: &str, args: &[&str]) -> Result<String, Failure> {
    let output = project.run_with_env(args, &[("ENVSNAP_NOW", OsStr::new(now)), ("TZ", OsStr::new("UTC"))])?;
    let stderr = String::from_utf8(output.stderr)?;
    assert_eq!(output.status.code(), Some(1), "envsnap {args:?} at {now}: {stderr}");
    Ok(stderr)
}

/// Writes `content` into the mount, then snapshots it at `now` with `extra` options;
/// returns the id.
fn snapshot_at(project: &Project, now: &str, content: &str, extra: &[&str]) -> Result<String, Failure> {
    fs::create_dir_all(project.root().join("data"))?;
    fs::write(project.root().join("data/file.txt"), content)?;
    let mut args = vec!["backup"];
    args.extend_from_slice(extra);
    Ok(at(project, now, &args)?.trim().to_owned())
}

/// The ids of every snapshot in the repository.
fn ids(project: &Project) -> Result<BTreeSet<String>, Failure> {
    Ok(project.snapshots()?.iter().filter_map(|snapshot| snapshot["id"].as_str().map(str::to_owned)).collect())
}

/// Restores snapshot `id` into a new directory and returns its file's content.
fn restored(project: &Project, id: &str) -> Result<String, Failure> {
    let target = tempfile::tempdir()?;
    let to = target.path().join("out");
    project.ok(&["restore", id, "--to", &to.to_string_lossy()])?;
    Ok(fs::read_to_string(to.join("data/file.txt"))?)
}

#[test]
fn forget_keeps_what_the_rules_say_and_every_survivor_restores() -> TestResult {
    // The limit is set after the manual snapshots are taken, for forget to apply.
    let project = Project::new(MOUNT)?;
    project.ok(&["init"])?;
    // Ten days of scheduled snapshots at 03:00 and 15:00, and two manual ones.
    let mut scheduled = Vec::new();
    for day in 10..20 {
        for hour in ["03", "15"] {
            let now = format!("2026-11-{day}T{hour}:00:00Z");
            scheduled.push(snapshot_at(&project, &now, &format!("day {day} {hour}h"), &["--trigger", "schedule"])?);
        }
    }
    let old_manual = snapshot_at(&project, "2026-11-12T09:00:00Z", "manual 1", &[])?;
    let new_manual = snapshot_at(&project, "2026-11-19T09:00:00Z", "manual 2", &[])?;
    let before = ids(&project)?;
    fs::write(
        project.root().join("envsnap.toml"),
        format!("{MOUNT}\n[retention]\nkeep_daily = 3\nmanual_limit = {{ production = 1 }}\n"),
    )?;

    // The plan: the last scheduled snapshot of each of the 3 newest days, and the newest manual one.
    let now = "2026-11-20T00:00:00Z";
    let plan: serde_json::Value = serde_json::from_str(&at(&project, now, &["forget", "--dry-run", "--json"])?)?;
    let plan = plan.as_array().ok_or("the plan is an array")?;
    assert_eq!(plan.len(), before.len());
    let kept: BTreeSet<String> = plan
        .iter()
        .filter(|entry| entry["keep"] == true)
        .filter_map(|entry| entry["id"].as_str().map(str::to_owned))
        .collect();
    let expected: BTreeSet<String> =
        [&scheduled[19], &scheduled[17], &scheduled[15], &new_manual].into_iter().cloned().collect();
    assert_eq!(kept, expected);
    let why = |id: &str| -> Vec<String> {
        plan.iter()
            .filter(|entry| entry["id"] == id)
            .flat_map(|entry| entry["reasons"].as_array().cloned().unwrap_or_default())
            .filter_map(|reason| reason.as_str().map(str::to_owned))
            .collect()
    };
    assert_eq!(why(&scheduled[15]), ["daily snapshot for 2026-11-17"]);
    assert_eq!(why(&scheduled[14]), ["matched no rule"]);
    assert_eq!(why(&old_manual), ["manual snapshot beyond the newest 1"]);
    assert_eq!(ids(&project)?, before, "a dry run deletes nothing");

    // The text plan names the environment and each snapshot's fate.
    let text = at(&project, now, &["forget", "--dry-run"])?;
    assert!(text.starts_with("main: keeping 4 of 22 snapshots\n"), "{text}");
    assert!(text.contains("daily snapshot for 2026-11-19"), "{text}");

    // A misspelt environment is an error that names those there are, not an empty plan.
    let stderr = fails_at(&project, now, &["forget", "--env", "mian"])?;
    assert!(stderr.contains("no snapshot of environment `mian`") && stderr.contains("are: main"), "{stderr}");
    assert_eq!(ids(&project)?, before);

    // With --json, stdout is the plan alone, even with --prune's report.
    let done: serde_json::Value = serde_json::from_str(&at(&project, now, &["forget", "--prune", "--json"])?)?;
    assert_eq!(done.as_array().map(Vec::len), Some(before.len()));
    assert_eq!(ids(&project)?, expected);
    for (id, content) in
        [(&scheduled[19], "day 19 15h"), (&scheduled[17], "day 18 15h"), (&scheduled[15], "day 17 15h")]
    {
        assert_eq!(restored(&project, id)?, content);
    }
    assert_eq!(restored(&project, &new_manual)?, "manual 2");
    project.ok(&["check", "--read-data"])?;

    // Applying the same plan again forgets nothing more.
    at(&project, now, &["forget"])?;
    assert_eq!(ids(&project)?, expected);
    Ok(())
}

#[test]
fn forget_without_retention_rules_refuses_and_deletes_nothing() -> TestResult {
    let project = Project::new(MOUNT)?;
    project.ok(&["init"])?;
    snapshot_at(&project, "2026-11-01T00:00:00Z", "a", &[])?;
    snapshot_at(&project, "2026-11-02T00:00:00Z", "b", &[])?;
    let stderr = fails_at(&project, "2027-11-01T00:00:00Z", &["forget"])?;
    assert!(stderr.contains("envsnap.toml has no [retention] table"), "{stderr}");
    assert!(stderr.contains("preset = \"essential\""), "{stderr}");
    assert_eq!(ids(&project)?.len(), 2);
    Ok(())
}

#[test]
fn a_deleted_branch_is_kept_for_its_days_counted_from_when_forget_saw_it_gone() -> TestResult {
    let project = Project::new(&format!("{MOUNT}\n[retention]\npreset = \"essential\"\ndeleted_branch_days = 10\n"))?;
    project.ok(&["init"])?;
    snapshot_at(&project, "2026-01-01T00:00:00Z", "main", &[])?;
    git(project.root(), &["checkout", "-q", "-b", "feature"])?;
    let feature = snapshot_at(&project, "2026-01-02T00:00:00Z", "feature", &[])?;
    let pinned = snapshot_at(&project, "2026-01-03T00:00:00Z", "feature pinned", &[])?;
    project.ok(&["pin", &pinned])?;
    git(project.root(), &["checkout", "-q", "main"])?;
    git(project.root(), &["branch", "-q", "-D", "feature"])?;

    // Idle for months, then deleted: forget first sees it gone on 1 June, and its
    // snapshots stay for 10 days from then.
    at(&project, "2026-06-01T00:00:00Z", &["forget"])?;
    assert!(ids(&project)?.contains(&feature));
    at(&project, "2026-06-10T23:00:00Z", &["forget"])?;
    assert!(ids(&project)?.contains(&feature));
    let plan = at(&project, "2026-06-11T01:00:00Z", &["forget", "--dry-run"])?;
    assert!(plan.contains("branch deleted 2026-06-01, kept 10 days"), "{plan}");
    at(&project, "2026-06-11T01:00:00Z", &["forget"])?;
    let left = ids(&project)?;
    assert!(!left.contains(&feature));
    assert!(left.contains(&pinned), "a pinned snapshot outlives its branch");
    Ok(())
}

#[test]
fn a_branch_that_comes_back_starts_its_days_again() -> TestResult {
    let project = Project::new(&format!("{MOUNT}\n[retention]\npreset = \"essential\"\ndeleted_branch_days = 5\n"))?;
    project.ok(&["init"])?;
    snapshot_at(&project, "2026-01-01T00:00:00Z", "main", &[])?;
    git(project.root(), &["branch", "feature"])?;
    let feature = snapshot_at(&project, "2026-01-02T00:00:00Z", "feature", &["--env", "feature"])?;
    git(project.root(), &["branch", "-q", "-D", "feature"])?;
    at(&project, "2026-02-01T00:00:00Z", &["forget"])?;
    git(project.root(), &["branch", "feature"])?;
    at(&project, "2026-02-03T00:00:00Z", &["forget"])?;
    git(project.root(), &["branch", "-q", "-D", "feature"])?;
    // Gone again on 10 February: 5 days from then, not from 1 February.
    at(&project, "2026-02-10T00:00:00Z", &["forget"])?;
    at(&project, "2026-02-14T00:00:00Z", &["forget"])?;
    assert!(ids(&project)?.contains(&feature));
    at(&project, "2026-02-15T00:00:01Z", &["forget"])?;
    assert!(!ids(&project)?.contains(&feature));
    Ok(())
}

#[test]
fn a_branch_that_came_back_unseen_and_went_again_starts_its_days_again() -> TestResult {
    let project = Project::new(&format!("{MOUNT}\n[retention]\npreset = \"essential\"\n"))?;
    project.ok(&["init"])?;
    snapshot_at(&project, "2026-01-01T00:00:00Z", "main", &[])?;
    git(project.root(), &["branch", "feature"])?;
    snapshot_at(&project, "2026-09-01T09:00:00Z", "old", &["--env", "feature"])?;
    git(project.root(), &["branch", "-q", "-D", "feature"])?;
    at(&project, "2026-10-01T00:00:00Z", &["forget"])?;
    // Back, a snapshot taken, deleted again, and no forget saw it meanwhile: the
    // record of 1 October is stale, and 30 days count from when forget sees it gone.
    git(project.root(), &["branch", "feature"])?;
    let recent = snapshot_at(&project, "2026-12-10T09:00:00Z", "recent", &["--env", "feature"])?;
    git(project.root(), &["branch", "-q", "-D", "feature"])?;
    let plan = at(&project, "2026-12-24T00:00:00Z", &["forget", "--dry-run"])?;
    assert!(!plan.contains("branch deleted 2026-10-01"), "{plan}");
    at(&project, "2026-12-24T00:00:00Z", &["forget"])?;
    assert!(ids(&project)?.contains(&recent));
    at(&project, "2027-01-22T00:00:00Z", &["forget"])?;
    assert!(ids(&project)?.contains(&recent), "29 days after 24 December");
    at(&project, "2027-01-24T00:00:00Z", &["forget"])?;
    assert!(!ids(&project)?.contains(&recent), "30 days after 24 December");
    Ok(())
}

#[test]
fn a_manual_snapshot_over_the_limit_is_refused_or_drops_the_oldest() -> TestResult {
    let limited = format!("{MOUNT}\n[retention]\npreset = \"essential\"\nmanual_limit = {{ production = 2 }}\n");
    let project = Project::new(&limited)?;
    project.ok(&["init"])?;
    let first = snapshot_at(&project, "2026-11-01T00:00:00Z", "1", &[])?;
    let second = snapshot_at(&project, "2026-11-02T00:00:00Z", "2", &[])?;
    // Automated snapshots do not count.
    snapshot_at(&project, "2026-11-02T12:00:00Z", "s", &["--trigger", "schedule"])?;

    fs::write(project.root().join("data/file.txt"), "3")?;
    let stderr = fails_at(&project, "2026-11-03T00:00:00Z", &["backup"])?;
    let short = &first[..12];
    assert!(stderr.contains("main (production) is at its limit of manual snapshots (2)"), "{stderr}");
    assert!(stderr.contains(&format!("`envsnap delete {short}`")), "{stderr}");
    assert!(stderr.contains("manual_over_limit = \"drop-oldest\""), "{stderr}");
    assert_eq!(ids(&project)?.len(), 3, "nothing was taken or deleted");
    // The snapshot it names is one `delete` takes: not a pinned one.
    project.ok(&["pin", &first])?;
    let stderr = fails_at(&project, "2026-11-03T00:00:00Z", &["backup"])?;
    assert!(stderr.contains(&format!("`envsnap delete {}`", &second[..12])), "{stderr}");
    project.ok(&["pin", &second])?;
    let stderr = fails_at(&project, "2026-11-03T00:00:00Z", &["backup"])?;
    assert!(stderr.contains("all of them are pinned"), "{stderr}");
    assert!(
        stderr.contains(&format!("`envsnap unpin {short}`")) && stderr.contains("manual_limit.production"),
        "{stderr}"
    );
    project.ok(&["unpin", &first])?;
    project.ok(&["unpin", &second])?;
    assert_eq!(ids(&project)?.len(), 3, "nothing was taken or deleted");

    fs::write(project.root().join("envsnap.toml"), format!("{limited}manual_over_limit = \"drop-oldest\"\n"))?;
    project.ok(&["pin", &first])?;
    let third = snapshot_at(&project, "2026-11-03T00:00:00Z", "3", &[])?;
    // The oldest is pinned, so the next oldest goes.
    let left = ids(&project)?;
    assert!(left.contains(&first) && left.contains(&third) && !left.contains(&second), "{left:?}");
    assert_eq!(restored(&project, &third)?, "3");

    // With every older manual snapshot pinned, the new one stays and nothing goes.
    project.ok(&["pin", &third])?;
    let fourth = snapshot_at(&project, "2026-11-04T00:00:00Z", "4", &[])?;
    let left = ids(&project)?;
    assert!(left.contains(&first) && left.contains(&third) && left.contains(&fourth), "{left:?}");
    Ok(())
}

/// Runs `schedule run` of `cron` for main at each of `times` (UTC) on a machine in
/// time zone `tz`; returns the creation times of the snapshots taken, newest first.
fn scheduled_in(tz: &str, cron: &str, times: &[&str]) -> Result<Vec<String>, Failure> {
    let project = Project::new(&SCHEDULED.replace("0 3 * * *", cron).replace(", \"staging\"", ""))?;
    project.ok(&["init"])?;
    fs::create_dir_all(project.root().join("data"))?;
    fs::write(project.root().join("data/file.txt"), "main data")?;
    for now in times {
        let output =
            project.run_with_env(&["schedule", "run"], &[("ENVSNAP_NOW", OsStr::new(now)), ("TZ", OsStr::new(tz))])?;
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    }
    Ok(project.snapshots()?.iter().filter_map(|s| s["created"].as_str().map(str::to_owned)).collect())
}

#[test]
fn a_run_in_a_daylight_saving_gap_is_taken_once() -> TestResult {
    // 2026-03-29 in Berlin: 02:00 jumps to 03:00, so there is no 02:30. Runs at 03:10,
    // 03:25 and 03:40 local time take one snapshot between them.
    let times = ["2026-03-28T12:00:00Z", "2026-03-29T01:10:00Z", "2026-03-29T01:25:00Z", "2026-03-29T01:40:00Z"];
    let created = scheduled_in("Europe/Berlin", "30 2 * * *", &times)?;
    assert_eq!(created, ["2026-03-29T01:10:00Z", "2026-03-28T12:00:00Z"]);
    Ok(())
}

#[test]
fn a_run_in_the_hour_daylight_saving_repeats_is_taken_once() -> TestResult {
    // 2026-11-01 in New York: 02:00 EDT goes back to 01:00 EST, so 01:30 comes twice,
    // at 05:30 and 06:30 UTC. Runs at 01:35 EDT, 01:50 EDT and 01:35 EST take one
    // snapshot between them; the next day's run takes the next.
    let times = ["2026-11-01T05:35:00Z", "2026-11-01T05:50:00Z", "2026-11-01T06:35:00Z", "2026-11-02T06:31:00Z"];
    let created = scheduled_in("America/New_York", "30 1 * * *", &times)?;
    assert_eq!(created, ["2026-11-02T06:31:00Z", "2026-11-01T05:35:00Z"]);
    Ok(())
}

#[test]
fn keep_for_from_the_config_dates_manual_snapshots_only() -> TestResult {
    let project = Project::new(&format!("{MOUNT}\n[retention]\npreset = \"essential\"\nkeep_for = 10\n"))?;
    project.ok(&["init"])?;
    let manual = snapshot_at(&project, "2026-11-01T08:00:00Z", "m", &[])?;
    let given = snapshot_at(&project, "2026-11-01T09:00:00Z", "g", &["--keep-for", "3"])?;
    let automated = snapshot_at(&project, "2026-11-01T10:00:00Z", "s", &["--trigger", "schedule"])?;
    let expires = |id: &str| -> Result<serde_json::Value, Failure> {
        let shown: serde_json::Value = serde_json::from_str(&project.ok(&["show", id, "--json"])?)?;
        Ok(shown["expires"].clone())
    };
    assert_eq!(expires(&manual)?, "2026-11-11T08:00:00Z");
    assert_eq!(expires(&given)?, "2026-11-04T09:00:00Z");
    assert_eq!(expires(&automated)?, serde_json::Value::Null);
    Ok(())
}

const SCHEDULED: &str = r#"
[[mount]]
name = "data"
path = "data"

[retention]
keep_daily = 2

[schedule]
cron = "0 3 * * *"
branches = ["main", "staging"]
"#;

#[test]
fn schedule_run_takes_each_due_snapshot_once_then_applies_retention() -> TestResult {
    let project = Project::new(SCHEDULED)?;
    project.ok(&["init"])?;
    fs::create_dir_all(project.root().join("data"))?;
    fs::write(project.root().join("data/file.txt"), "main data")?;
    // staging is checked out in a worktree of its own, with its own data.
    let staging = project.root().join("staging-tree");
    git(project.root(), &["worktree", "add", "-q", "-b", "staging", &staging.to_string_lossy()])?;
    fs::create_dir_all(staging.join("data"))?;
    fs::write(staging.join("data/file.txt"), "staging data")?;

    let first = at(&project, "2026-11-20T04:00:00Z", &["schedule", "run"])?;
    assert!(first.contains("main: snapshot") && first.contains("staging: snapshot"), "{first}");
    assert!(first.contains("for the run of 2026-11-20 03:00"), "{first}");
    let taken = project.snapshots()?;
    assert_eq!(taken.len(), 2);
    assert!(taken.iter().all(|snapshot| snapshot["trigger"] == "schedule" && snapshot["mode"] == "live"));
    let staging_id = taken.iter().find(|s| s["env"] == "staging").and_then(|s| s["id"].as_str()).ok_or("staging")?;
    assert_eq!(restored(&project, staging_id)?, "staging data");

    // Again in the same period: nothing.
    let again = at(&project, "2026-11-20T23:59:00Z", &["schedule", "run"])?;
    assert!(again.starts_with("nothing due"), "{again}");
    assert_eq!(project.snapshots()?.len(), 2);

    // Three more days: one snapshot a branch a day, and retention keeps the newest 2 days.
    for day in 21..24 {
        at(&project, &format!("2026-11-{day}T03:00:00Z"), &["schedule", "run"])?;
    }
    let left = project.snapshots()?;
    let created: BTreeSet<&str> = left.iter().filter_map(|snapshot| snapshot["created"].as_str()).collect();
    assert_eq!(created, BTreeSet::from(["2026-11-22T03:00:00Z", "2026-11-23T03:00:00Z"]));
    assert_eq!(left.len(), 4);
    Ok(())
}

#[test]
fn schedule_run_refuses_a_branch_whose_files_it_cannot_reach() -> TestResult {
    let project = Project::new(&SCHEDULED.replace("\"staging\"", "\"feature\""))?;
    project.ok(&["init"])?;
    fs::create_dir_all(project.root().join("data"))?;
    fs::write(project.root().join("data/file.txt"), "main data")?;
    git(project.root(), &["branch", "feature"])?;
    let stderr = fails_at(&project, "2026-11-20T04:00:00Z", &["schedule", "run"])?;
    assert!(stderr.contains("feature is not checked out in any work tree, and mount `data`"), "{stderr}");
    assert!(stderr.contains("the next `envsnap schedule run` tries again"), "{stderr}");
    // main was still taken, and only main.
    let envs: Vec<serde_json::Value> = project.snapshots()?.iter().map(|snapshot| snapshot["env"].clone()).collect();
    assert_eq!(envs, ["main"]);

    let project = Project::new(MOUNT)?;
    let stderr = project.fails(&["schedule", "run"], 1)?;
    assert!(stderr.contains("has no [schedule] table") && stderr.contains("cron = \"0 3 * * *\""), "{stderr}");
    Ok(())
}

#[test]
fn schedule_install_writes_a_crontab_line_or_systemd_units() -> TestResult {
    let project = Project::new(SCHEDULED)?;
    project.ok(&["init"])?;
    let root = project.root().to_string_lossy().into_owned();

    // A stand-in crontab that keeps the table in a file.
    let table = project.root().join("crontab.txt");
    fs::write(&table, "MAILTO=ops@example.invalid\n0 1 * * * backup-something\n")?;
    let script = format!("if [ \"$1\" = -l ]; then cat '{0}'; else cat > '{0}'; fi", table.display());
    let bin = bin_dir(&["cat"], &[("crontab", &script)])?;
    let path = std::env::join_paths([bin.path(), std::path::Path::new("/usr/bin"), std::path::Path::new("/bin")])?;
    for _ in 0..2 {
        let output = project.run_with_env(&["schedule", "install", "--cron", "--every", "10"], &[("PATH", &path)])?;
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    }
    let crontab = fs::read_to_string(&table)?;
    let lines: Vec<&str> = crontab.lines().collect();
    assert_eq!(lines.len(), 3, "the other lines stay and ours is there once: {crontab}");
    assert_eq!(&lines[..2], ["MAILTO=ops@example.invalid", "0 1 * * * backup-something"]);
    assert!(lines[2].starts_with("*/10 * * * * PATH="), "{crontab}");
    // The repository given by ENVSNAP_REPOSITORY goes along.
    assert!(lines[2].contains(&format!("-C '{root}' --repository '{root}/store' schedule run")), "{crontab}");
    assert!(lines[2].ends_with(&format!("# envsnap schedule {root}")), "{crontab}");

    let config_home = tempfile::tempdir()?;
    let output = project
        .run_with_env(&["schedule", "install", "--systemd"], &[("XDG_CONFIG_HOME", config_home.path().as_os_str())])?;
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let units = config_home.path().join("systemd/user");
    let mut names: Vec<String> =
        fs::read_dir(&units)?.filter_map(|entry| entry.ok()?.file_name().into_string().ok()).collect();
    names.sort();
    assert_eq!(names.len(), 2, "{names:?}");
    assert!(names[0].starts_with("envsnap-schedule-") && names[0].ends_with(".service"), "{names:?}");
    let service = fs::read_to_string(units.join(&names[0]))?;
    let timer = fs::read_to_string(units.join(&names[1]))?;
    assert!(
        service.contains("Type=oneshot")
            && service.contains(&format!("-C '{root}' --repository '{root}/store' schedule run")),
        "{service}"
    );
    assert!(timer.contains("OnCalendar=*:0/15") && timer.contains("Persistent=true"), "{timer}");

    // Without cron, the error says what to do, and --print needs nothing.
    let empty = bin_dir(&[], &[])?;
    let output = project.run_with_path(&["schedule", "install", "--cron"], empty.path())?;
    let stderr = String::from_utf8(output.stderr)?;
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr.contains("apt-get install cron") && stderr.contains("--systemd"), "{stderr}");
    let printed = project.ok(&["schedule", "install", "--cron", "--print"])?;
    assert!(printed.starts_with("*/15 * * * * ") && printed.contains("schedule run"), "{printed}");
    Ok(())
}

#[test]
fn schedule_status_shows_what_is_due_and_installed_and_uninstall_removes_it() -> TestResult {
    let project = Project::new(SCHEDULED)?;
    project.ok(&["init"])?;
    fs::create_dir_all(project.root().join("data"))?;
    fs::write(project.root().join("data/file.txt"), "main data")?;
    let root = project.root().to_string_lossy().into_owned();
    let table = project.root().join("crontab.txt");
    fs::write(&table, "0 1 * * * backup-something\n")?;
    let script = format!("if [ \"$1\" = -l ]; then cat '{0}'; else cat > '{0}'; fi", table.display());
    let bin = bin_dir(&["cat"], &[("crontab", &script)])?;
    let path = std::env::join_paths([bin.path(), std::path::Path::new("/usr/bin"), std::path::Path::new("/bin")])?;
    let config_home = tempfile::tempdir()?;
    let vars = |now: &'static str| {
        [
            ("PATH", path.as_os_str().to_owned()),
            ("XDG_CONFIG_HOME", config_home.path().as_os_str().to_owned()),
            ("ENVSNAP_NOW", now.into()),
            ("TZ", "UTC".into()),
        ]
    };
    let run = |args: &[&str], now: &'static str| -> Result<String, Failure> {
        let vars = vars(now);
        let vars: Vec<(&str, &OsStr)> = vars.iter().map(|(name, value)| (*name, value.as_os_str())).collect();
        let output = project.run_with_env(args, &vars)?;
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "envsnap {args:?}: {stderr}");
        Ok(String::from_utf8(output.stdout)?)
    };

    let status = run(&["schedule", "status"], "2026-11-20T04:00:00Z")?;
    assert!(status.contains("schedule     `0 3 * * *` (local time)"), "{status}");
    assert!(status.contains("main         due: no automated snapshot yet"), "{status}");
    assert!(status.contains("installed    nothing runs `schedule run`"), "{status}");

    run(&["schedule", "run"], "2026-11-20T04:00:00Z")?;
    run(&["schedule", "install", "--cron"], "2026-11-20T04:00:00Z")?;
    run(&["schedule", "install", "--systemd"], "2026-11-20T04:00:00Z")?;
    let status = run(&["schedule", "status"], "2026-11-20T05:00:00Z")?;
    assert!(status.contains("main         not due: last automated snapshot "), "{status}");
    assert!(status.contains("installed    crontab line: */15 * * * * "), "{status}");
    assert!(status.contains(&format!("# envsnap schedule {root}")), "{status}");
    assert!(status.contains("installed    systemd user unit ") && status.contains(".timer"), "{status}");
    let status = run(&["schedule", "status"], "2026-11-21T03:30:00Z")?;
    assert!(status.contains("main         due: last automated snapshot "), "the next day's run: {status}");

    let removed = run(&["schedule", "uninstall", "--cron"], "2026-11-21T03:30:00Z")?;
    assert!(removed.contains("removed the crontab line"), "{removed}");
    assert_eq!(fs::read_to_string(&table)?, "0 1 * * * backup-something\n", "the other lines stay");
    assert_eq!(fs::read_dir(config_home.path().join("systemd/user"))?.count(), 2, "--cron leaves the timer");
    let removed = run(&["schedule", "uninstall"], "2026-11-21T03:30:00Z")?;
    assert!(removed.contains(".service") && removed.contains(".timer"), "{removed}");
    assert_eq!(fs::read_dir(config_home.path().join("systemd/user"))?.count(), 0);
    let status = run(&["schedule", "status"], "2026-11-21T03:30:00Z")?;
    assert!(status.contains("installed    nothing runs"), "{status}");
    Ok(())
}
