//! Environments are git branches: per-branch data paths, snapshots keyed to branch and
//! commit, branch-scoped restore, undo, notes, worktrees.

mod common;

use std::fs;

use common::{Project, TestResult, git};

const CONFIG: &str = r#"
production = "main"

[[mount]]
name = "uploads"
path = "var/{branch}/uploads"
"#;

fn write(project: &Project, branch_slug: &str, name: &str, text: &str) -> TestResult {
    let dir = project.root().join("var").join(branch_slug).join("uploads");
    fs::create_dir_all(&dir)?;
    fs::write(dir.join(name), text)?;
    Ok(())
}

fn read(project: &Project, branch_slug: &str, name: &str) -> Result<String, std::io::Error> {
    fs::read_to_string(project.root().join("var").join(branch_slug).join("uploads").join(name))
}

#[test]
fn snapshots_belong_to_their_branch_and_restore_across_needs_target() -> TestResult {
    let project = Project::new(CONFIG)?;
    project.ok(&["init"])?;
    write(&project, "main", "a.txt", "main data")?;
    let main_snapshot = project.backup(&[])?;
    git(project.root(), &["checkout", "-q", "-b", "feature/login"])?;
    write(&project, "feature_login", "a.txt", "feature data")?;
    let feature_snapshot = project.backup(&[])?;

    let main_list: Vec<serde_json::Value> = serde_json::from_str(&project.ok(&["list", "--env", "main", "--json"])?)?;
    assert_eq!(main_list.len(), 1);
    assert_eq!(main_list[0]["id"], main_snapshot.as_str());
    let here: Vec<serde_json::Value> = serde_json::from_str(&project.ok(&["list", "--json"])?)?;
    assert_eq!(here.len(), 1, "list shows the current branch's snapshots");
    assert_eq!(here[0]["env"], "feature/login");
    assert_eq!(project.snapshots()?.len(), 2, "--all shows every environment");

    let refused = project.fails(&["restore", &main_snapshot[..12], "--yes"], 1)?;
    assert!(
        refused.contains("belongs to environment `main`") && refused.contains("--target feature/login"),
        "{refused}"
    );
    assert_eq!(read(&project, "feature_login", "a.txt")?, "feature data", "a refused restore changes nothing");

    project.ok(&["restore", &main_snapshot[..12], "--target", "feature/login", "--yes"])?;
    assert_eq!(read(&project, "feature_login", "a.txt")?, "main data", "restored into the target's own path");
    assert_eq!(read(&project, "main", "a.txt")?, "main data", "the source environment is untouched");

    let safety: Vec<serde_json::Value> =
        project.snapshots()?.into_iter().filter(|s| s["trigger"] == "safety").collect();
    assert_eq!(safety.len(), 1);
    assert_eq!(safety[0]["env"], "feature/login");
    project.ok(&["undo", "--yes"])?;
    assert_eq!(read(&project, "feature_login", "a.txt")?, "feature data", "undo puts back what was overwritten");
    assert!(!feature_snapshot.is_empty());
    Ok(())
}

#[test]
fn target_branch_is_created_from_parent_only_when_asked() -> TestResult {
    let project = Project::new(CONFIG)?;
    project.ok(&["init"])?;
    write(&project, "main", "a.txt", "production data")?;
    let snapshot = project.backup(&[])?;

    let missing = project.fails(&["restore", &snapshot[..12], "--target", "staging", "--yes"], 1)?;
    assert!(missing.contains("no branch `staging`") && missing.contains("--branch-from"), "{missing}");
    assert!(git(project.root(), &["branch", "--list", "staging"])?.is_empty());

    let preview =
        project.ok(&["restore", &snapshot[..12], "--target", "staging", "--branch-from", "main", "--dry-run"])?;
    assert!(preview.contains("+  uploads/a.txt") && preview.contains("would create branch `staging`"), "{preview}");
    assert!(git(project.root(), &["branch", "--list", "staging"])?.is_empty(), "a dry run creates nothing");
    assert!(!project.root().join("var/staging").exists());

    project.ok(&["restore", &snapshot[..12], "--target", "staging", "--branch-from", "main", "--yes"])?;
    let head = git(project.root(), &["rev-parse", "main"])?;
    assert_eq!(git(project.root(), &["rev-parse", "staging"])?, head, "branch created at the parent's commit");
    assert_eq!(read(&project, "staging", "a.txt")?, "production data");
    Ok(())
}

#[test]
fn dry_run_lists_what_would_be_overwritten_and_changes_nothing() -> TestResult {
    let project = Project::new(CONFIG)?;
    project.ok(&["init"])?;
    write(&project, "main", "kept.txt", "same")?;
    write(&project, "main", "changed.txt", "before")?;
    let snapshot = project.backup(&[])?;
    write(&project, "main", "changed.txt", "after, longer")?;
    write(&project, "main", "added.txt", "new")?;
    fs::remove_file(project.root().join("var/main/uploads/kept.txt"))?;
    let out = project.ok(&["restore", &snapshot[..12], "--dry-run"])?;
    let lines: Vec<&str> = out.lines().skip(1).collect();
    assert_eq!(lines, vec!["M  uploads/changed.txt", "+  uploads/kept.txt", "-  uploads/added.txt"], "{out}");
    assert_eq!(read(&project, "main", "changed.txt")?, "after, longer");
    assert!(read(&project, "main", "added.txt").is_ok());
    assert_eq!(project.snapshots()?.len(), 1, "no safety snapshot on a dry run");
    Ok(())
}

#[test]
fn restore_at_a_commit_takes_the_nearest_ancestor_with_a_snapshot() -> TestResult {
    let project = Project::new(CONFIG)?;
    project.ok(&["init"])?;
    write(&project, "main", "a.txt", "v1")?;
    let first = project.backup(&[])?;
    let first_commit = git(project.root(), &["rev-parse", "HEAD"])?;
    git(project.root(), &["commit", "-q", "--allow-empty", "-m", "no snapshot here"])?;
    git(project.root(), &["commit", "-q", "--allow-empty", "-m", "two"])?;
    write(&project, "main", "a.txt", "v2")?;
    project.backup(&[])?;
    write(&project, "main", "a.txt", "v3")?;

    project.ok(&["restore", "--at", "HEAD~1", "--yes", "--no-safety-snapshot"])?;
    assert_eq!(read(&project, "main", "a.txt")?, "v1", "HEAD~1 has none; its parent has the first snapshot");
    project.ok(&["restore", "--at", "HEAD", "--yes", "--no-safety-snapshot"])?;
    assert_eq!(read(&project, "main", "a.txt")?, "v2");

    let note = git(project.root(), &["notes", "--ref=envsnap", "show", first_commit.trim()])?;
    assert!(note.contains(&format!("envsnap snapshot {first} env=main trigger=manual")), "{note}");
    let log = git(project.root(), &["log", "--notes=envsnap", "--format=%N"])?;
    assert_eq!(log.matches("envsnap snapshot").count(), 2, "{log}");

    let none = project.fails(&["restore", "--at", "no-such-commit", "--yes"], 1)?;
    assert!(none.contains("`no-such-commit` names no commit"), "{none}");
    Ok(())
}

#[test]
fn only_admins_restore_into_or_delete_from_production() -> TestResult {
    let config = format!("admins = [\"boss@example.invalid\"]\n{CONFIG}");
    let project = Project::new(&config)?;
    project.ok(&["init"])?;
    write(&project, "main", "a.txt", "data")?;
    let snapshot = project.backup(&[])?;
    let refused = project.fails(&["restore", &snapshot[..12], "--yes"], 1)?;
    assert!(refused.contains("only admins may restore into the production environment `main`"), "{refused}");
    let refused = project.fails(&["delete", &snapshot[..12]], 1)?;
    assert!(refused.contains("only admins may delete a snapshot of the production environment `main`"), "{refused}");
    git(project.root(), &["config", "user.email", "boss@example.invalid"])?;
    project.ok(&["restore", &snapshot[..12], "--yes"])?;
    project.ok(&["delete", &snapshot[..12], "--yes"])?;
    let listed = project.ok(&["list", "--json"])?;
    assert!(!listed.contains(&snapshot), "an admin deletes it: {listed}");
    Ok(())
}

#[test]
fn worktrees_are_environments_sharing_one_repository() -> TestResult {
    let project = Project::new(CONFIG)?;
    git(project.root(), &["add", "envsnap.toml"])?;
    git(project.root(), &["commit", "-q", "-m", "config"])?;
    // The default repository (in the common git directory) is what worktrees share.
    let run = |dir: &std::path::Path, args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_envsnap"))
            .args(args)
            .current_dir(dir)
            .env_remove("ENVSNAP_REPOSITORY")
            .output()
    };
    assert!(run(project.root(), &["init"])?.status.success());
    write(&project, "main", "a.txt", "main")?;
    assert!(run(project.root(), &["backup"])?.status.success());
    let other = project.root().join("worktree-b");
    git(project.root(), &["worktree", "add", "-q", "-b", "feature", other.to_str().ok_or("utf-8")?])?;
    let data = other.join("var/feature/uploads");
    fs::create_dir_all(&data)?;
    fs::write(data.join("b.txt"), "feature")?;
    let backup = run(&other, &["backup"])?;
    assert!(backup.status.success(), "{}", String::from_utf8_lossy(&backup.stderr));
    let listed = run(project.root(), &["list", "--all", "--json"])?;
    let snapshots: Vec<serde_json::Value> = serde_json::from_slice(&listed.stdout)?;
    let mut envs: Vec<&str> = snapshots.iter().filter_map(|s| s["env"].as_str()).collect();
    envs.sort_unstable();
    assert_eq!(envs, vec!["feature", "main"], "both worktrees write to the one repository");
    assert!(project.root().join(".git/envsnap/config.json").exists());
    Ok(())
}

#[test]
fn init_writes_a_starter_config_that_configures_nothing_yet() -> TestResult {
    let project = Project::new("")?;
    fs::remove_file(project.root().join("envsnap.toml"))?;
    let out = project.ok(&["init"])?;
    assert!(out.contains("wrote") && out.contains("envsnap.toml"), "{out}");
    let starter = fs::read_to_string(project.root().join("envsnap.toml"))?;
    assert!(starter.contains("[[mount]]") && starter.contains('#'), "commented examples: {starter}");
    let stderr = project.fails(&["backup"], 1)?;
    assert!(stderr.contains("no elements") && stderr.contains("[[mount]]"), "{stderr}");
    let again = project.ok(&["init"])?;
    assert!(again.contains("exists already"), "{again}");
    assert_eq!(fs::read_to_string(project.root().join("envsnap.toml"))?, starter, "init never overwrites the config");
    Ok(())
}

#[test]
fn backup_of_a_named_environment_while_detached() -> TestResult {
    let project = Project::new(CONFIG)?;
    project.ok(&["init"])?;
    write(&project, "main", "a.txt", "data")?;
    git(project.root(), &["checkout", "-q", "--detach"])?;
    let stderr = project.fails(&["backup"], 1)?;
    assert!(stderr.contains("detached") && stderr.contains("--env"), "{stderr}");
    project.backup(&["--env", "main"])?;
    let snapshots = project.snapshots()?;
    assert_eq!(snapshots[0]["env"], "main");
    assert_eq!(snapshots[0]["commit"], git(project.root(), &["rev-parse", "main"])?.trim());
    let unknown = project.fails(&["backup", "--env", "nope"], 1)?;
    assert!(unknown.contains("no branch `nope`"), "{unknown}");
    Ok(())
}

#[test]
fn consistent_snapshots_pause_and_resume_the_environment() -> TestResult {
    let config =
        format!("pause = \"echo paused >> events.log; sleep 0.3\"\nresume = \"echo resumed >> events.log\"\n{CONFIG}");
    let project = Project::new(&config)?;
    project.ok(&["init"])?;
    write(&project, "main", "a.txt", "data")?;
    project.backup(&[])?;
    assert_eq!(fs::read_to_string(project.root().join("events.log"))?, "paused\nresumed\n");
    project.backup(&["--live"])?;
    assert_eq!(fs::read_to_string(project.root().join("events.log"))?, "paused\nresumed\n", "--live pauses nothing");
    let snapshots = project.snapshots()?;
    let modes: Vec<&str> = snapshots.iter().filter_map(|s| s["mode"].as_str()).collect();
    assert_eq!(modes, vec!["live", "consistent"]);
    let paused = snapshots[1]["paused_ms"].as_u64().ok_or("a consistent snapshot records its pause")?;
    assert!((300..5000).contains(&paused), "paused for {paused} ms");
    assert!(snapshots[0]["paused_ms"].is_null(), "a live one was not paused");

    let failing = format!("pause = \"exit 3\"\n{CONFIG}");
    fs::write(project.root().join("envsnap.toml"), failing)?;
    let stderr = project.fails(&["backup"], 1)?;
    assert!(
        stderr.contains("the pause command `exit 3` failed") && stderr.contains("no snapshot was taken"),
        "{stderr}"
    );
    assert_eq!(project.snapshots()?.len(), 2);
    Ok(())
}

#[test]
fn a_paused_backup_that_is_told_to_stop_resumes_the_environment_first() -> TestResult {
    // What `systemctl stop`, `kill` and Ctrl-C send: the environment must not stay in
    // maintenance mode because the snapshot was stopped.
    let config = format!(
        "pause = \"echo paused >> events.log\"\nresume = \"echo resumed >> events.log\"\n{CONFIG}\n\
         [[service]]\nname = \"slow\"\ntype = \"command\"\ndump = \"sleep 30\"\nrestore = \"cat\"\n"
    );
    let project = Project::new(&config)?;
    project.ok(&["init"])?;
    write(&project, "main", "a.txt", "data")?;
    for signal in ["-TERM", "-INT"] {
        fs::write(project.root().join("events.log"), "")?;
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_envsnap"))
            .arg("backup")
            .current_dir(project.root())
            .env("ENVSNAP_REPOSITORY", &project.repository)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()?;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while fs::read_to_string(project.root().join("events.log"))? != "paused\n" {
            assert!(std::time::Instant::now() < deadline, "the backup never paused the environment");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
        assert!(std::process::Command::new("kill").args([signal, &child.id().to_string()]).status()?.success());
        let output = child.wait_with_output()?;
        assert!(!output.status.success(), "{signal}: {:?}", output.status);
        assert_eq!(fs::read_to_string(project.root().join("events.log"))?, "paused\nresumed\n", "{signal}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("resuming the environment"), "{signal}: {stderr}");
    }
    // Nothing was published; the jobs are failed.
    let listed: Vec<serde_json::Value> = serde_json::from_str(&project.ok(&["list", "--json"])?)?;
    assert!(listed.iter().all(|entry| entry["state"] == "failed"), "{listed:?}");
    Ok(())
}

#[test]
fn a_consistent_snapshot_holds_the_data_as_it_was_while_paused() -> TestResult {
    // The application's last write lands just as it is paused: the first, live pass has
    // already read the file, so only the second, paused, pass can hold the new content.
    let config = format!("pause = \"echo last write >> var/main/uploads/log.txt\"\nresume = \"true\"\n{CONFIG}");
    let project = Project::new(&config)?;
    project.ok(&["init"])?;
    for n in 0..50 {
        write(&project, "main", &format!("file-{n}.txt"), &format!("content {n}"))?;
    }
    write(&project, "main", "log.txt", "first write\n")?;
    let id = project.backup(&[])?;
    let out = project.root().join("out");
    project.ok(&["restore", &id[..12], "--to", out.to_str().ok_or("utf-8")?])?;
    assert_eq!(fs::read_to_string(out.join("uploads/log.txt"))?, "first write\nlast write\n");
    assert_eq!(fs::read_to_string(out.join("uploads/file-49.txt"))?, "content 49");
    Ok(())
}

/// `undo` acts on the restore that last changed the environment, names it, and says
/// plainly when there is nothing to undo; a second undo redoes.
#[test]
fn undo_names_the_last_restore_or_says_there_is_nothing_to_undo() -> TestResult {
    let project = Project::new(CONFIG)?;
    project.ok(&["init"])?;
    write(&project, "main", "a.txt", "one")?;
    let first = project.backup(&[])?;
    let nothing = project.fails(&["undo", "--yes"], 1)?;
    assert!(nothing.contains("nothing to undo: no restore has changed environment `main`"), "{nothing}");

    write(&project, "main", "a.txt", "two")?;
    project.ok(&["restore", &first[..12], "--yes", "--no-safety-snapshot"])?;
    assert_eq!(read(&project, "main", "a.txt")?, "one");
    let refused = project.fails(&["undo", "--yes"], 1)?;
    assert!(refused.contains("took no safety snapshot"), "{refused}");

    write(&project, "main", "a.txt", "three")?;
    // A restore refused before it changes anything (the safety snapshot has nothing to
    // do with it) leaves the last real restore as the one to undo.
    project.fails(&["restore", &first[..12]], 1)?;
    project.ok(&["restore", &first[..12], "--yes"])?;
    assert_eq!(read(&project, "main", "a.txt")?, "one");
    let undo = project.run(&["undo", "--yes"])?;
    let said = String::from_utf8_lossy(&undo.stderr);
    assert!(undo.status.success(), "{said}");
    assert!(said.contains(&format!("undoing the restore of snapshot {}", &first[..12])), "{said}");
    assert_eq!(read(&project, "main", "a.txt")?, "three", "undo puts back what the restore overwrote");
    project.ok(&["undo", "--yes"])?;
    assert_eq!(read(&project, "main", "a.txt")?, "one", "a second undo redoes the restore");
    Ok(())
}

/// A service whose path has no `{branch}` is production's own, whatever branch a
/// restore targets: the restore says so and obeys production's admin guard.
#[test]
fn a_restore_into_a_service_shared_with_production_says_so_and_needs_an_admin() -> TestResult {
    let config = format!(
        "admins = [\"boss@example.invalid\"]\n{CONFIG}\n[[service]]\nname = \"db\"\ntype = \"sqlite\"\npath = \"var/shared.sqlite\"\n"
    );
    let project = Project::new(&config)?;
    project.ok(&["init"])?;
    let database = project.root().join("var/shared.sqlite");
    fs::create_dir_all(project.root().join("var"))?;
    let connection = rusqlite::Connection::open(&database)?;
    connection.execute_batch("CREATE TABLE t (v TEXT); INSERT INTO t VALUES ('production row');")?;
    drop(connection);
    write(&project, "main", "a.txt", "data")?;
    git(project.root(), &["config", "user.email", "boss@example.invalid"])?;
    let snapshot = project.backup(&[])?;
    git(project.root(), &["config", "user.email", "dev@example.invalid"])?;
    git(project.root(), &["checkout", "-q", "-b", "feature"])?;
    let connection = rusqlite::Connection::open(&database)?;
    connection.execute_batch("UPDATE t SET v = 'live row';")?;
    drop(connection);

    let refused = project.fails(&["restore", &snapshot[..12], "--target", "feature", "--yes"], 1)?;
    assert!(refused.contains("`db`") && refused.contains("production `main` uses"), "{refused}");
    assert!(refused.contains("only admins may restore shared service `db`"), "{refused}");
    let row: String = rusqlite::Connection::open(&database)?.query_row("SELECT v FROM t", [], |row| row.get(0))?;
    assert_eq!(row, "live row", "a refused restore changes nothing");

    // A service that follows the branch is the target's own: no admin needed.
    let own = config.replace("var/shared.sqlite", "var/{branch}.sqlite");
    fs::write(project.root().join("envsnap.toml"), own)?;
    project.ok(&["restore", &snapshot[..12], "--target", "feature", "--yes"])?;
    let own_database = project.root().join("var/feature.sqlite");
    let row: String = rusqlite::Connection::open(&own_database)?.query_row("SELECT v FROM t", [], |row| row.get(0))?;
    assert_eq!(row, "production row", "restored into the branch's own database");
    Ok(())
}
