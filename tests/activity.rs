//! `envsnap activity` and `envsnap status` with the real binary: what was done, by
//! whom, with what result; and the state of the current environment.

mod common;

use std::fs;
use std::process::{Command, Stdio};

use common::{Project, TestResult, git};

const CONFIG: &str = r#"
[[mount]]
name = "data"
path = "data"

[retention]
keep_last = 1

[schedule]
cron = "0 3 * * *"
"#;

/// `activity --json`, parsed, newest first.
fn log(project: &Project, extra: &[&str]) -> Result<Vec<serde_json::Value>, Box<dyn std::error::Error>> {
    let mut args = vec!["activity", "--json"];
    args.extend_from_slice(extra);
    Ok(serde_json::from_str(&project.ok(&args)?)?)
}

#[test]
fn every_change_is_logged_with_who_what_and_how_it_ended() -> TestResult {
    let project = Project::new(CONFIG)?;
    git(project.root(), &["config", "user.email", "ann@example.com"])?;
    project.ok(&["init"])?;
    fs::create_dir_all(project.root().join("data"))?;
    fs::write(project.root().join("data/file.txt"), "one")?;
    let first = project.backup(&[])?;
    let stderr = project.fails(&["backup", "--element", "nope"], 1)?;
    fs::write(project.root().join("data/file.txt"), "two")?;
    // keep_last = 1 keeps the newer automated snapshot and lets this one go.
    let older = project.backup(&["--trigger", "schedule"])?;
    fs::write(project.root().join("data/file.txt"), "three")?;
    project.backup(&["--trigger", "schedule"])?;
    project.ok(&["restore", &first, "--yes"])?;
    project.ok(&["forget", "--dry-run"])?;
    project.ok(&["forget"])?;
    project.ok(&["prune"])?;
    project.ok(&["list"])?;

    let entries = log(&project, &[])?;
    let actions: Vec<&str> = entries.iter().filter_map(|entry| entry["action"].as_str()).collect();
    // Reads and dry runs change nothing and are not logged.
    assert_eq!(actions, ["prune", "forget", "restore", "backup", "backup", "backup", "backup"]);
    for entry in &entries {
        for field in ["started", "duration_ms", "user", "host", "action", "env", "snapshots", "result", "detail"] {
            assert!(entry.get(field).is_some(), "{field} missing in {entry}");
        }
        assert_eq!(entry["user"], "ann@example.com");
    }
    let [prune, forget, restore, _, _, failed, backup] = entries.as_slice() else { return Err("7 entries".into()) };
    assert_eq!(backup["result"], "success");
    assert_eq!(backup["env"], "main");
    assert_eq!(backup["snapshots"], serde_json::json!([first]));
    assert_eq!(failed["result"], "failure");
    assert!(
        failed["detail"].as_str().is_some_and(|detail| stderr.contains(detail) && detail.contains("nope")),
        "{failed}"
    );
    assert_eq!(restore["snapshots"], serde_json::json!([first]));
    assert!(restore["detail"].as_str().is_some_and(|detail| detail.starts_with("safety snapshot ")), "{restore}");
    assert_eq!(forget["detail"], "forgot 1 snapshot");
    assert_eq!(forget["snapshots"], serde_json::json!([older]));
    assert!(prune["detail"].as_str().is_some_and(|detail| detail.starts_with("freed ")), "{prune}");

    // By environment, and as a table.
    git(project.root(), &["branch", "other"])?;
    project.backup(&["--env", "other"])?;
    assert_eq!(log(&project, &["--env", "other"])?.len(), 1);
    assert_eq!(log(&project, &["--limit", "2"])?.len(), 2);
    let table = project.ok(&["activity"])?;
    assert!(table.starts_with("When "), "{table}");
    assert!(table.contains("ann@example.com") && table.contains("failure"), "{table}");

    // A --no-wait backup refused before it was handed over is logged by the command
    // itself; one handed over is logged once, by the process that took it.
    project.fails(&["backup", "--no-wait", "--element", "nope"], 1)?;
    let newest = log(&project, &["--limit", "1"])?;
    assert_eq!((newest[0]["action"].as_str(), newest[0]["result"].as_str()), (Some("backup"), Some("failure")));
    let before = log(&project, &[])?.len();
    let job = project.ok(&["backup", "--no-wait"])?.trim().to_owned();
    project.ok(&["wait", &job])?;
    assert_eq!(log(&project, &[])?.len(), before + 1);
    Ok(())
}

#[test]
fn status_shows_the_environment_its_newest_snapshot_and_the_running_writer() -> TestResult {
    let project = Project::new(CONFIG)?;
    project.ok(&["init"])?;
    fs::create_dir_all(project.root().join("data"))?;
    fs::write(project.root().join("data/file.txt"), "one")?;
    let text = project.ok(&["status"])?;
    assert!(text.contains("environment  main (production, protected)"), "{text}");
    assert!(text.contains("newest       none yet"), "{text}");

    let id = project.backup(&[])?;
    let status: serde_json::Value = serde_json::from_str(&project.ok(&["status", "--json"])?)?;
    assert_eq!(status["env"], "main");
    assert_eq!(status["type"], "production");
    assert_eq!(status["newest"]["id"], id.as_str());
    assert_eq!(status["snapshots"], 1);
    assert_eq!(status["scheduled"], true);
    assert_eq!(status["elements"][0]["name"], "data");
    assert_eq!(status["elements"][0]["location"], project.root().join("data").to_string_lossy().as_ref());
    assert_eq!(status["running"], serde_json::Value::Null);
    assert_eq!(status["recent"][0]["action"], "backup");

    // A writer at work is named by its own note in the lock.
    let lock = project.repository.join("lock");
    fs::write(&lock, "process 4242 (envsnap backup --env main)\n")?;
    let mut holder =
        Command::new("flock").arg(&lock).args(["-c", "echo held; sleep 30"]).stdout(Stdio::piped()).spawn()?;
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(holder.stdout.take().ok_or("the holder's stdout")?),
        &mut line,
    )?;
    let text = project.ok(&["status"])?;
    holder.kill()?;
    holder.wait()?;
    assert!(text.contains("running      process 4242 (envsnap backup --env main)"), "{text}");
    Ok(())
}

#[test]
fn quiet_says_nothing_but_results_and_verbose_says_more() -> TestResult {
    let project = Project::new(CONFIG)?;
    project.ok(&["init"])?;
    fs::create_dir_all(project.root().join("data"))?;
    fs::write(project.root().join("data/file.txt"), "one")?;

    let quiet = project.run(&["--quiet", "backup"])?;
    assert!(quiet.status.success());
    let id = String::from_utf8(quiet.stdout)?;
    assert_eq!(id.trim().len(), 64, "the result still goes to stdout: {id}");
    assert_eq!(String::from_utf8(quiet.stderr)?, "", "nothing else is said");

    let normal = project.run(&["backup"])?;
    let said = String::from_utf8(normal.stderr)?;
    assert!(said.starts_with("snapshot ") && !said.contains("took "), "{said}");

    let verbose = project.run(&["backup", "-v"])?;
    let said = String::from_utf8(verbose.stderr)?;
    assert!(said.contains("  data (mount): 3 B"), "{said}");
    assert!(said.contains("took "), "{said}");

    // Errors are said whatever the level.
    let failed = project.run(&["-q", "restore", "nope"])?;
    assert_eq!(failed.status.code(), Some(1));
    assert!(String::from_utf8(failed.stderr)?.contains("nope"));
    assert_eq!(project.run(&["-q", "-v", "list"])?.status.code(), Some(2), "the two levels conflict");
    Ok(())
}
