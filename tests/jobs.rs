//! Backups as jobs, with the real binary: `--no-wait` then `wait`, a queue of
//! backups started together, a job whose process is killed, and the `--json` fields.

mod common;

use std::collections::BTreeSet;
use std::fs;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Project, TestResult};

type Failure = Box<dyn std::error::Error>;

/// A command service whose dump runs `script` (in the work tree) and then prints
/// `data`; restoring it writes the dump to `restored.txt`.
fn project_with_dump(script: &str) -> Result<Project, Failure> {
    project_with(script, "")
}

/// As [`project_with_dump`], with a mount `data` (the empty directory `data`) captured
/// before the dump.
fn project_with_data_and_dump(script: &str) -> Result<Project, Failure> {
    let project = project_with(script, "[[mount]]\nname = \"data\"\npath = \"data\"\n")?;
    fs::create_dir_all(project.root().join("data"))?;
    Ok(project)
}

/// An initialised project of the slow command service, after `before` in envsnap.toml.
fn project_with(script: &str, before: &str) -> Result<Project, Failure> {
    let project = Project::new(&format!(
        r#"{before}
[[service]]
name = "slow"
type = "command"
dump = "{script}; printf data"
restore = "cat > restored.txt"
"#
    ))?;
    project.ok(&["init"])?;
    Ok(project)
}

/// `list --json`, parsed.
fn listed(project: &Project) -> Result<Vec<serde_json::Value>, Failure> {
    Ok(serde_json::from_str(&project.ok(&["list", "--json"])?)?)
}

/// The listed entry with this id.
fn entry(project: &Project, id: &str) -> Result<Option<serde_json::Value>, Failure> {
    Ok(listed(project)?.into_iter().find(|entry| entry["id"] == id))
}

/// Polls `list --json` until `done` holds of the entry `id`, for at most `limit`.
fn until(
    project: &Project,
    id: &str,
    limit: Duration,
    done: impl Fn(&serde_json::Value) -> bool,
) -> Result<serde_json::Value, Failure> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(entry) = entry(project, id)?
            && done(&entry)
        {
            return Ok(entry);
        }
        if Instant::now() > deadline {
            return Err(format!("job {id} never reached the state awaited: {:?}", entry(project, id)?).into());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn no_wait_returns_at_once_and_wait_ends_with_the_snapshot() -> TestResult {
    let project = project_with_dump("sleep 2")?;
    let started = Instant::now();
    let id = project.ok(&["backup", "--no-wait"])?.trim().to_owned();
    assert!(started.elapsed() < Duration::from_secs(1), "--no-wait took {:?}", started.elapsed());
    assert_eq!(id.len(), 64, "{id}");

    let running = until(&project, &id, Duration::from_secs(5), |entry| entry["state"] != "queued")?;
    assert_eq!(running["state"], "running");
    assert_eq!(running["result"], serde_json::Value::Null);
    assert_eq!(running["restorable"], false);
    let status = project.ok(&["status"])?;
    assert!(status.contains(&format!("running      manual backup {} of main, ", &id[..12])), "{status}");
    assert!(!status.contains("process "), "the job's line says what the lock's note would: {status}");
    // Commands given the job's id say it is not done yet.
    let stderr = project.fails(&["restore", &id[..12], "--to", "out"], 1)?;
    assert!(stderr.contains("is running") && stderr.contains(&format!("envsnap wait {}", &id[..12])), "{stderr}");

    let snapshot = project.ok(&["wait", &id[..8]])?.trim().to_owned();
    assert_eq!(snapshot.len(), 64);
    let complete = entry(&project, &snapshot)?.ok_or("the snapshot is listed")?;
    assert_eq!(complete["state"], "complete");
    assert_eq!(complete["result"], "success");
    assert_eq!(complete["progress"], 100);
    assert!(entry(&project, &id)?.is_none(), "the job gives way to its snapshot");
    // The job's id now names the snapshot.
    project.ok(&["restore", &id[..12], "--yes"])?;
    assert_eq!(fs::read_to_string(project.root().join("restored.txt"))?, "data");
    // An id too short to name one job is refused, not guessed.
    let stderr = project.fails(&["wait", &id[..2]], 1)?;
    assert!(stderr.contains("give at least 4 hex characters"), "{stderr}");
    // Waiting for a finished job returns at once.
    assert_eq!(project.ok(&["wait", &id])?.trim(), snapshot);
    Ok(())
}

#[test]
fn backups_started_together_queue_and_run_one_at_a_time() -> TestResult {
    let project =
        project_with_dump("echo start $(date +%s%N) >> runs.txt; sleep 1; echo end $(date +%s%N) >> runs.txt")?;
    let children: Vec<_> = (0..3)
        .map(|_| {
            Command::new(env!("CARGO_BIN_EXE_envsnap"))
                .arg("backup")
                .current_dir(project.root())
                .env("ENVSNAP_REPOSITORY", &project.repository)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
        })
        .collect::<Result<_, _>>()?;
    // While they run, the listing shows the waiting ones as queued.
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut seen = BTreeSet::new();
    while Instant::now() < deadline && !(seen.contains("queued") && seen.contains("running")) {
        for entry in listed(&project)? {
            if let Some(state) = entry["state"].as_str() {
                seen.insert(state.to_owned());
            }
        }
    }
    assert!(seen.contains("queued") && seen.contains("running"), "{seen:?}");
    let mut ids = BTreeSet::new();
    for child in children {
        let output = child.wait_with_output()?;
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        ids.insert(String::from_utf8(output.stdout)?.trim().to_owned());
    }
    assert_eq!(ids.len(), 3);
    let listed = listed(&project)?;
    assert_eq!(listed.len(), 3);
    assert!(listed.iter().all(|entry| entry["state"] == "complete"), "{listed:?}");

    // One at a time: each dump starts after the previous one ended.
    let runs = fs::read_to_string(project.root().join("runs.txt"))?;
    let marks: Vec<(&str, u128)> = runs
        .lines()
        .filter_map(|line| line.split_once(' '))
        .map(|(mark, time)| Ok((mark, time.parse()?)))
        .collect::<Result<_, std::num::ParseIntError>>()?;
    assert_eq!(marks.len(), 6, "{runs}");
    for pair in marks.chunks(2) {
        assert_eq!((pair[0].0, pair[1].0), ("start", "end"), "the runs did not overlap: {runs}");
    }
    assert!(marks.windows(2).all(|pair| pair[0].1 <= pair[1].1), "{runs}");
    Ok(())
}

#[test]
fn a_first_backup_shows_progress_though_nothing_was_measured_before() -> TestResult {
    // A mount of 4 MiB, read first, then a dump that takes its time: while it runs, the
    // job has read the mount, and with no earlier snapshot to measure against, the
    // mount's own count says how far that is.
    let project = project_with_data_and_dump("sleep 3")?;
    for index in 0..4 {
        fs::write(project.root().join(format!("data/{index}.bin")), common::noise(index, 1 << 20))?;
    }
    let id = project.ok(&["backup", "--no-wait"])?.trim().to_owned();
    let running =
        until(&project, &id, Duration::from_secs(5), |entry| entry["progress"].as_u64().is_some_and(|p| p > 0))?;
    assert_eq!(running["state"], "running", "{running}");
    assert!(running["progress"].as_u64().is_some_and(|progress| progress < 100), "{running}");
    project.ok(&["wait", &id])?;
    Ok(())
}

#[test]
fn snapshots_taken_by_schedules_and_restores_are_jobs_too() -> TestResult {
    let project = Project::new(
        r#"
[[service]]
name = "slow"
type = "command"
dump = "sleep 1; printf data"
restore = "cat > restored.txt"

[schedule]
cron = "* * * * *"
"#,
    )?;
    project.ok(&["init"])?;
    let mut run = Command::new(env!("CARGO_BIN_EXE_envsnap"))
        .args(["schedule", "run"])
        .current_dir(project.root())
        .env("ENVSNAP_REPOSITORY", &project.repository)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?;
    let deadline = Instant::now() + Duration::from_secs(5);
    let running = loop {
        let found = listed(&project)?.into_iter().find(|entry| entry["state"] == "running");
        if found.is_some() || Instant::now() > deadline {
            break found;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let running = running.ok_or("the scheduled snapshot was never listed as running")?;
    assert_eq!(running["trigger"], "schedule", "{running}");
    assert!(run.wait()?.success());
    let complete = listed(&project)?;
    assert_eq!(complete.len(), 1, "the job gave way to its snapshot: {complete:?}");
    assert_eq!((complete[0]["trigger"].as_str(), complete[0]["state"].as_str()), (Some("schedule"), Some("complete")));

    // A restore's safety snapshot, the same way; its job ends with the restore.
    project.ok(&["restore", "--yes"])?;
    let triggers: Vec<String> = listed(&project)?
        .iter()
        .map(|entry| format!("{} {}", entry["trigger"].as_str().unwrap_or("?"), entry["state"].as_str().unwrap_or("?")))
        .collect();
    assert_eq!(triggers, ["safety complete", "schedule complete"]);
    Ok(())
}

#[test]
fn jobs_survive_a_repair_and_their_ids_keep_working() -> TestResult {
    let project = project_with_data_and_dump("sleep 1")?;
    fs::write(project.root().join("data/one.txt"), "one")?;
    let first = project.ok(&["backup", "--no-wait"])?.trim().to_owned();
    fs::write(project.root().join("data/two.txt"), "two")?;
    let second = project.ok(&["backup", "--no-wait", "--note", "the second", "--keep-for", "3"])?.trim().to_owned();
    // A queued job shows what it was asked for.
    let queued = entry(&project, &second)?.ok_or("the second job is listed")?;
    assert_eq!(queued["note"], "the second", "{queued}");
    assert!(queued["expires"].is_string(), "{queued}");

    // `wait` only reads the catalog: it holds no lock a prune or a writer waits for.
    let waiter = Command::new(env!("CARGO_BIN_EXE_envsnap"))
        .args(["wait", &second])
        .current_dir(project.root())
        .env("ENVSNAP_REPOSITORY", &project.repository)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    std::thread::sleep(Duration::from_millis(300));
    for fd in fs::read_dir(format!("/proc/{}/fd", waiter.id()))? {
        let target = fs::read_link(fd?.path()).unwrap_or_default();
        // `lock` (the writers') and `lock.read` (the readers').
        let a_lock = target.parent() == Some(project.repository.as_path())
            && target.file_name().is_some_and(|name| name.to_string_lossy().starts_with("lock"));
        assert!(!a_lock, "wait holds {}", target.display());
    }

    // The first runs, the second waits in line; repair (behind the first) rebuilds
    // the catalog under both.
    project.ok(&["repair"])?;
    let snapshot = project.ok(&["wait", &second])?.trim().to_owned();
    let waited = waiter.wait_with_output()?;
    assert!(waited.status.success());
    assert_eq!(String::from_utf8(waited.stdout)?.trim(), snapshot);
    let listed = listed(&project)?;
    assert_eq!(listed.len(), 2, "{listed:?}");
    assert!(listed.iter().all(|entry| entry["state"] == "complete"), "{listed:?}");
    // Job ids name their snapshots after the repair too, in every command.
    let diff = project.ok(&["diff", &first[..8], &second[..8]])?;
    assert!(diff.contains("slow/dump.dump"), "the two dumps were taken at different times: {diff}");
    let shown: serde_json::Value = serde_json::from_str(&project.ok(&["show", &second[..8], "--json"])?)?;
    assert_eq!((shown["id"].as_str(), shown["note"].as_str()), (Some(snapshot.as_str()), Some("the second")));
    Ok(())
}

#[test]
fn queued_backups_run_in_the_order_they_were_asked_for() -> TestResult {
    // Each dump prints the time it ran: the snapshots' data says in which order they went.
    let project = project_with_dump("sleep 0.5; date +%s%N")?;
    let jobs: Vec<String> =
        (0..4).map(|_| Ok(project.ok(&["backup", "--no-wait"])?.trim().to_owned())).collect::<Result<_, Failure>>()?;
    let mut ran = Vec::new();
    for job in &jobs {
        let snapshot = project.ok(&["wait", job])?.trim().to_owned();
        let dump = project.root().join(format!("dump-{}.dump", &job[..8]));
        project.ok(&["export", &snapshot, "--element", "slow", "--to", &dump.display().to_string()])?;
        let text = fs::read_to_string(&dump)?;
        let time: u128 = text.trim_end_matches("data").trim().parse()?;
        ran.push(time);
    }
    assert!(ran.windows(2).all(|pair| pair[0] < pair[1]), "the jobs ran out of order: {ran:?}");
    Ok(())
}

#[test]
fn a_job_whose_process_is_killed_is_marked_failed() -> TestResult {
    let project = project_with_dump("echo $PPID > worker.pid; sleep 30")?;
    let id = project.ok(&["backup", "--no-wait"])?.trim().to_owned();
    until(&project, &id, Duration::from_secs(5), |entry| entry["state"] == "running")?;
    let pid_file = project.root().join("worker.pid");
    let deadline = Instant::now() + Duration::from_secs(5);
    // The shell creates the file before it writes the pid: wait for the pid.
    while fs::read_to_string(&pid_file).map_or(true, |pid| pid.trim().is_empty()) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let pid = fs::read_to_string(&pid_file)?.trim().to_owned();
    // The worker leads its own process group: kill it and its dump with it.
    let killed = Command::new("kill").args(["-9", "--", &format!("-{pid}")]).status()?;
    assert!(killed.success());
    // Found dead a while later: the log dates its end by its last sign of life.
    std::thread::sleep(Duration::from_millis(1500));

    let failed = until(&project, &id, Duration::from_secs(5), |entry| entry["state"] != "running")?;
    assert_eq!(failed["state"], "failed");
    assert_eq!(failed["result"], "failure");
    assert!(
        failed["error"].as_str().is_some_and(|error| error.contains("ended before the snapshot was complete")),
        "{failed}"
    );
    let stderr = project.fails(&["wait", &id], 1)?;
    assert!(stderr.contains("failed") && stderr.contains("take the snapshot again"), "{stderr}");
    let status = project.ok(&["status"])?;
    assert!(!status.contains("running      manual backup"), "{status}");
    // The process could not log its own end; the next command logged it for it.
    let log: serde_json::Value = serde_json::from_str(&project.ok(&["activity", "--json"])?)?;
    let failures: Vec<&serde_json::Value> =
        log.as_array().ok_or("an array")?.iter().filter(|entry| entry["result"] == "failure").collect();
    assert_eq!(failures.len(), 1, "{log}");
    assert_eq!(failures[0]["action"], "backup");
    assert_eq!(failures[0]["env"], "main");
    assert!(failures[0]["detail"].as_str().is_some_and(|detail| detail.contains("ended before")), "{log}");
    assert!(failures[0]["duration_ms"].as_u64().is_some_and(|ms| ms < 1500), "{log}");
    // Nothing was published, and the next backup works.
    assert!(listed(&project)?.iter().all(|entry| entry["state"] == "failed"));
    fs::write(
        project.root().join("envsnap.toml"),
        fs::read_to_string(project.root().join("envsnap.toml"))?.replace("sleep 30", "true"),
    )?;
    project.backup(&[])?;
    Ok(())
}

#[test]
fn json_carries_every_documented_field_for_jobs_and_snapshots() -> TestResult {
    let project = project_with_dump("sleep 1")?;
    let done = project.backup(&[])?;
    let id = project.ok(&["backup", "--no-wait"])?.trim().to_owned();
    let fields = [
        "id",
        "env",
        "commit",
        "created",
        "trigger",
        "mode",
        "state",
        "result",
        "progress",
        "restorable",
        "size",
        "stored",
        "note",
        "expires",
        "elements",
    ];
    let entries = listed(&project)?;
    for wanted in [&id, &done] {
        let entry = entries.iter().find(|entry| &entry["id"] == wanted).ok_or("listed")?;
        for field in fields {
            assert!(entry.get(field).is_some(), "{field} missing in {entry}");
        }
    }
    let complete = entries.iter().find(|entry| entry["id"] == done.as_str()).ok_or("listed")?;
    assert_eq!(complete["elements"][0]["name"], "slow");
    assert_eq!(complete["size"], 4);
    // `latest` waits for the newest job of the checked-out branch.
    let snapshot = project.ok(&["wait", "latest"])?.trim().to_owned();
    assert_eq!(entry(&project, &snapshot)?.ok_or("listed")?["state"], "complete");
    assert_eq!(project.ok(&["wait", &id])?.trim(), snapshot);
    // --no-wait --json prints the queued job as the snapshot object it will become.
    let queued: serde_json::Value = serde_json::from_str(&project.ok(&["backup", "--no-wait", "--json"])?)?;
    for field in fields {
        assert!(queued.get(field).is_some(), "{field} missing in {queued}");
    }
    assert_eq!((queued["state"].as_str(), queued["progress"].as_u64()), (Some("queued"), Some(0)), "{queued}");
    assert_eq!(queued["result"], serde_json::Value::Null);
    let queued_id = queued["id"].as_str().ok_or("an id")?;
    project.ok(&["wait", queued_id])?;
    Ok(())
}

#[test]
fn a_background_job_outlives_the_terminal_that_started_it() -> TestResult {
    let project = project_with_dump("echo $PPID > worker.pid; sleep 1")?;
    let id = project.ok(&["backup", "--no-wait"])?.trim().to_owned();
    let pid_file = project.root().join("worker.pid");
    let deadline = Instant::now() + Duration::from_secs(5);
    while fs::read_to_string(&pid_file).map_or(true, |pid| pid.trim().is_empty()) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let pid = fs::read_to_string(&pid_file)?.trim().to_owned();
    // What a closing terminal sends.
    assert!(Command::new("kill").args(["-HUP", &pid]).status()?.success());
    let snapshot = project.ok(&["wait", &id])?.trim().to_owned();
    let shown: serde_json::Value = serde_json::from_str(&project.ok(&["show", &snapshot, "--json"])?)?;
    assert_eq!(shown["state"], "complete");
    assert!(shown["duration_ms"].as_u64().is_some_and(|ms| ms >= 1000), "{shown}");
    let text = project.ok(&["show", &snapshot])?;
    assert!(text.contains("Duration "), "{text}");
    // The activity log has the backup once, recorded by the process that took it.
    let log: serde_json::Value = serde_json::from_str(&project.ok(&["activity", "--json"])?)?;
    let backups: Vec<&serde_json::Value> =
        log.as_array().ok_or("an array")?.iter().filter(|entry| entry["action"] == "backup").collect();
    assert_eq!(backups.len(), 1, "{log}");
    assert_eq!(backups[0]["snapshots"][0], snapshot.as_str());
    Ok(())
}
