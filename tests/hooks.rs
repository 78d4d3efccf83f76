//! The git hooks, driven by the real git binary: which git commands snapshot a
//! protected branch's environment (and which do not), the one line a hook prints,
//! chaining with hooks already there, `core.hooksPath`, skipping, and failures.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{Project, TestResult};

const CONFIG: &str = r#"
production = "main"
protected = ["main"]

[[mount]]
name = "uploads"
path = "var/uploads"
"#;

type Fallible<T> = Result<T, Box<dyn std::error::Error>>;

/// A project on `main` with data, a repository, and the hooks installed.
fn project() -> Fallible<Project> {
    let project = Project::new(CONFIG)?;
    fs::write(project.root().join(".gitignore"), "var/\nstore/\n")?;
    let uploads = project.root().join("var/uploads");
    fs::create_dir_all(&uploads)?;
    fs::write(uploads.join("a.txt"), "production data")?;
    project.ok(&["init"])?;
    project.ok(&["hooks", "install"])?;
    Ok(project)
}

/// Runs git in the project as a person would, hooks and all: the repository comes
/// from the environment, which git passes on to its hooks.
fn git_output(project: &Project, args: &[&str], env: &[(&str, &str)]) -> Fallible<Output> {
    let mut command = Command::new("git");
    command
        .args(["-c", "user.name=envsnap test", "-c", "user.email=test@example.invalid"])
        .args(args)
        .current_dir(project.root())
        .env("ENVSNAP_REPOSITORY", &project.repository)
        .env("GIT_EDITOR", "true")
        .env_remove("ENVSNAP_SKIP_HOOKS")
        .env_remove("GIT_REFLOG_ACTION");
    for (name, value) in env {
        command.env(name, value);
    }
    Ok(command.output()?)
}

/// Runs git, which must succeed; returns the lines envsnap printed.
fn git(project: &Project, args: &[&str]) -> Fallible<Vec<String>> {
    git_env(project, args, &[])
}

fn git_env(project: &Project, args: &[&str], env: &[(&str, &str)]) -> Fallible<Vec<String>> {
    let output = git_output(project, args, env)?;
    let stderr = String::from_utf8(output.stderr)?;
    if !output.status.success() {
        return Err(format!("git {args:?} failed ({}):\n{stderr}", output.status).into());
    }
    Ok(envsnap_lines(&stderr))
}

/// Runs git, which must fail; returns the lines envsnap printed.
fn git_fails(project: &Project, args: &[&str]) -> Fallible<Vec<String>> {
    let output = git_output(project, args, &[])?;
    let stderr = String::from_utf8(output.stderr)?;
    if output.status.success() {
        return Err(format!("git {args:?} succeeded, but should have failed:\n{stderr}").into());
    }
    Ok(envsnap_lines(&stderr))
}

fn envsnap_lines(stderr: &str) -> Vec<String> {
    stderr.lines().filter(|line| line.starts_with("envsnap:")).map(str::to_owned).collect()
}

/// Commits a new file `name` on the current branch.
fn commit(project: &Project, name: &str) -> Fallible<()> {
    fs::write(project.root().join(name), name)?;
    git(project, &["add", name])?;
    git(project, &["commit", "-q", "-m", name])?;
    Ok(())
}

fn head(project: &Project, rev: &str) -> Fallible<String> {
    let output = git_output(project, &["rev-parse", rev], &[])?;
    Ok(String::from_utf8(output.stdout)?.trim().to_owned())
}

/// Asserts the one line of a snapshot taken before `occasion`; returns its short id.
fn assert_snapshot_line(lines: &[String], branch: &str, occasion: &str) -> Fallible<String> {
    assert_eq!(lines.len(), 1, "one line: {lines:?}");
    let rest = lines[0].strip_prefix("envsnap: snapshot ").ok_or(format!("a snapshot line: {lines:?}"))?;
    let (id, rest) = rest.split_once(' ').ok_or("an id")?;
    assert!(id.len() == 12 && id.chars().all(|c| c.is_ascii_hexdigit()), "{id}");
    let seconds = rest.strip_prefix(&format!("of {branch} before {occasion} (")).ok_or(format!("{lines:?}"))?;
    let seconds = seconds.strip_suffix(" s)").ok_or(format!("{lines:?}"))?;
    seconds.parse::<f64>()?;
    Ok(id.to_owned())
}

#[test]
fn a_merge_commit_into_main_takes_one_pre_merge_snapshot() -> TestResult {
    let project = project()?;
    git(&project, &["checkout", "-q", "-b", "feature"])?;
    commit(&project, "feature.txt")?;
    git(&project, &["checkout", "-q", "main"])?;
    commit(&project, "main.txt")?;
    let before = head(&project, "main")?;

    let lines = git(&project, &["merge", "-q", "--no-edit", "feature"])?;
    let id = assert_snapshot_line(&lines, "main", "merge")?;
    let snapshots = project.snapshots()?;
    assert_eq!(snapshots.len(), 1, "pre-merge-commit and reference-transaction take one snapshot together");
    let snapshot = &snapshots[0];
    assert!(snapshot["id"].as_str().is_some_and(|full| full.starts_with(&id)));
    assert_eq!(snapshot["env"], "main");
    assert_eq!(snapshot["trigger"], "pre-merge");
    assert_eq!(snapshot["commit"], before.as_str(), "the commit main was at before the merge");
    assert_eq!(snapshot["note"], "git merge feature");
    // The activity log names the hook run that took it.
    let log: serde_json::Value = serde_json::from_str(&project.ok(&["activity", "--json"])?)?;
    let taken: Vec<&serde_json::Value> = log
        .as_array()
        .ok_or("the log is an array")?
        .iter()
        .filter(|entry| entry["snapshots"].get(0) == Some(&snapshot["id"]))
        .collect();
    assert_eq!(taken.len(), 1, "{log}");
    assert!(taken[0]["action"].as_str().is_some_and(|action| action.starts_with("hook ")), "{log}");
    assert_eq!(taken[0]["env"], "main");
    assert_eq!(taken[0]["result"], "success");
    Ok(())
}

#[test]
fn a_fast_forward_into_main_takes_a_snapshot() -> TestResult {
    let project = project()?;
    let before = head(&project, "main")?;
    git(&project, &["checkout", "-q", "-b", "feature"])?;
    commit(&project, "feature.txt")?;
    git(&project, &["checkout", "-q", "main"])?;

    let lines = git(&project, &["merge", "-q", "--ff-only", "feature"])?;
    assert_snapshot_line(&lines, "main", "fast-forward")?;
    let snapshots = project.snapshots()?;
    assert_eq!(snapshots.len(), 1);
    assert_eq!(snapshots[0]["trigger"], "pre-merge");
    assert_eq!(snapshots[0]["commit"], before.as_str());
    Ok(())
}

#[test]
fn a_merge_resolved_after_conflicts_takes_its_snapshot_when_committed() -> TestResult {
    let project = project()?;
    commit(&project, "shared.txt")?;
    for (branch, text) in [("feature", "feature's"), ("main", "main's")] {
        if branch == "feature" {
            git(&project, &["checkout", "-q", "-b", "feature"])?;
        } else {
            git(&project, &["checkout", "-q", "main"])?;
        }
        fs::write(project.root().join("shared.txt"), text)?;
        git(&project, &["commit", "-q", "-am", text])?;
    }

    let lines = git_fails(&project, &["merge", "-q", "feature"])?;
    assert!(lines.is_empty(), "no snapshot while the merge waits for a resolution: {lines:?}");
    assert!(project.snapshots()?.is_empty());
    fs::write(project.root().join("shared.txt"), "resolved")?;
    git(&project, &["add", "shared.txt"])?;
    let lines = git(&project, &["commit", "-q", "--no-edit"])?;
    assert_snapshot_line(&lines, "main", "merge")?;
    let snapshots = project.snapshots()?;
    assert_eq!(snapshots.len(), 1);
    assert_eq!(snapshots[0]["trigger"], "pre-merge");
    assert_eq!(snapshots[0]["note"], "Merge branch 'feature'");

    // The same, concluded with `git merge --continue`.
    git(&project, &["checkout", "-q", "feature"])?;
    fs::write(project.root().join("shared.txt"), "feature's again")?;
    git(&project, &["commit", "-q", "-am", "feature's again"])?;
    git(&project, &["checkout", "-q", "main"])?;
    fs::write(project.root().join("shared.txt"), "main's again")?;
    git(&project, &["commit", "-q", "-am", "main's again"])?;
    git_fails(&project, &["merge", "-q", "feature"])?;
    fs::write(project.root().join("shared.txt"), "resolved again")?;
    git(&project, &["add", "shared.txt"])?;
    let lines = git(&project, &["merge", "--continue"])?;
    assert_snapshot_line(&lines, "main", "merge")?;
    assert_eq!(project.snapshots()?.len(), 2);
    Ok(())
}

#[test]
fn the_commit_that_concludes_a_squash_merge_takes_a_snapshot() -> TestResult {
    let project = project()?;
    git(&project, &["checkout", "-q", "-b", "feature"])?;
    commit(&project, "feature.txt")?;
    git(&project, &["checkout", "-q", "main"])?;
    let lines = git(&project, &["merge", "-q", "--squash", "feature"])?;
    assert!(lines.is_empty(), "main does not move yet: {lines:?}");
    let lines = git(&project, &["commit", "-q", "-m", "feature, squashed"])?;
    assert_snapshot_line(&lines, "main", "merge")?;
    let lines = git(&project, &["commit", "-q", "--allow-empty", "-m", "after"])?;
    assert!(lines.is_empty(), "the next commit is a plain one: {lines:?}");
    assert_eq!(project.snapshots()?.len(), 1);
    Ok(())
}

#[test]
fn a_push_to_main_of_a_remote_takes_one_pre_push_snapshot() -> TestResult {
    let project = project()?;
    let remote = tempfile::tempdir()?;
    let remote_path = remote.path().to_str().ok_or("a UTF-8 path")?;
    git(&project, &["init", "-q", "--bare", remote_path])?;
    git(&project, &["checkout", "-q", "-b", "feature"])?;
    commit(&project, "feature.txt")?;
    git(&project, &["checkout", "-q", "main"])?;

    let lines = git(&project, &["push", "-q", remote_path, "main", "feature", "feature:refs/heads/other"])?;
    assert_snapshot_line(&lines, "main", &format!("push to {remote_path}"))?;
    let snapshots = project.snapshots()?;
    assert_eq!(snapshots.len(), 1, "main only: feature and other are not protected");
    assert_eq!(snapshots[0]["trigger"], "pre-push");
    assert_eq!(snapshots[0]["env"], "main");
    // main did not exist on the remote yet: the snapshot is of main's environment at
    // main's commit here, which `--at` and the git notes find.
    let local_main = head(&project, "main")?;
    assert_eq!(snapshots[0]["commit"], local_main.as_str(), "main is new on the remote");
    let noted = common::git(project.root(), &["notes", "--ref=envsnap", "show", &local_main])?;
    assert!(noted.contains(snapshots[0]["id"].as_str().ok_or("an id")?), "{noted}");

    commit(&project, "more.txt")?;
    let remote_main = head(&project, "main~1")?;
    let lines = git(&project, &["push", "-q", remote_path, "main"])?;
    assert_snapshot_line(&lines, "main", &format!("push to {remote_path}"))?;
    assert_eq!(project.snapshots()?[0]["commit"], remote_main.as_str(), "where the remote's main was");
    commit(&project, "unverified.txt")?;
    let lines = git(&project, &["push", "-q", "--no-verify", remote_path, "main"])?;
    assert!(lines.is_empty(), "--no-verify skips pre-push: {lines:?}");
    assert_eq!(project.snapshots()?.len(), 2);
    Ok(())
}

#[test]
fn rebases_snapshot_main_only_when_main_takes_in_other_commits() -> TestResult {
    let project = project()?;
    git(&project, &["checkout", "-q", "-b", "feature"])?;
    commit(&project, "feature.txt")?;
    git(&project, &["checkout", "-q", "main"])?;
    commit(&project, "main.txt")?;

    // Rebasing feature onto main leaves main where it is...
    git(&project, &["checkout", "-q", "feature"])?;
    let lines = git(&project, &["rebase", "-q", "main"])?;
    assert!(lines.is_empty(), "{lines:?}");
    assert!(project.snapshots()?.is_empty());
    // ...and fast-forwarding main to the rebased feature is a merge.
    git(&project, &["checkout", "-q", "main"])?;
    let lines = git(&project, &["merge", "-q", "feature"])?;
    assert_snapshot_line(&lines, "main", "fast-forward")?;

    // Rewriting main within its own history brings nothing in.
    let lines = git(&project, &["rebase", "-q", "--force-rebase", "HEAD~1"])?;
    assert!(lines.is_empty(), "{lines:?}");
    assert_eq!(project.snapshots()?.len(), 1);

    // Rebasing main onto a branch it does not contain takes that branch in.
    git(&project, &["checkout", "-q", "-b", "topic", "main~1"])?;
    commit(&project, "topic.txt")?;
    git(&project, &["checkout", "-q", "main"])?;
    let before = head(&project, "main")?;
    let lines = git(&project, &["rebase", "-q", "topic"])?;
    assert_snapshot_line(&lines, "main", "rebase")?;
    let snapshots = project.snapshots()?;
    assert_eq!(snapshots.len(), 2);
    assert_eq!(snapshots[0]["commit"], before.as_str());
    assert_eq!(snapshots[0]["trigger"], "pre-merge");
    Ok(())
}

#[test]
fn plain_commits_and_merges_into_unprotected_branches_take_no_snapshot() -> TestResult {
    let project = project()?;
    commit(&project, "main.txt")?;
    git(&project, &["commit", "-q", "--amend", "-m", "amended"])?;
    git(&project, &["checkout", "-q", "-b", "feature"])?;
    commit(&project, "feature.txt")?;
    git(&project, &["checkout", "-q", "main"])?;
    commit(&project, "main2.txt")?;
    git(&project, &["checkout", "-q", "feature"])?;
    let lines = git(&project, &["merge", "-q", "--no-edit", "main"])?;
    assert!(lines.is_empty(), "feature is not protected: {lines:?}");
    git(&project, &["checkout", "-q", "-b", "other", "main"])?;
    let lines = git(&project, &["merge", "-q", "feature"])?;
    assert!(lines.is_empty(), "a fast-forward of an unprotected branch: {lines:?}");
    assert!(project.snapshots()?.is_empty());
    Ok(())
}

#[test]
fn no_verify_and_the_skip_variable_skip_the_snapshot() -> TestResult {
    let project = project()?;
    git(&project, &["checkout", "-q", "-b", "feature"])?;
    commit(&project, "feature.txt")?;
    git(&project, &["checkout", "-q", "main"])?;
    commit(&project, "main.txt")?;
    let lines = git(&project, &["merge", "-q", "--no-verify", "--no-edit", "feature"])?;
    assert!(lines.is_empty(), "{lines:?}");

    git(&project, &["checkout", "-q", "feature"])?;
    commit(&project, "feature2.txt")?;
    git(&project, &["checkout", "-q", "main"])?;
    commit(&project, "main2.txt")?;
    let lines = git_env(&project, &["merge", "-q", "--no-edit", "feature"], &[("ENVSNAP_SKIP_HOOKS", "1")])?;
    assert!(lines.is_empty(), "{lines:?}");
    git(&project, &["checkout", "-q", "-b", "ahead"])?;
    commit(&project, "ahead.txt")?;
    git(&project, &["checkout", "-q", "main"])?;
    let lines = git_env(&project, &["merge", "-q", "ahead"], &[("ENVSNAP_SKIP_HOOKS", "1")])?;
    assert!(lines.is_empty(), "{lines:?}");
    assert!(project.snapshots()?.is_empty());
    Ok(())
}

#[test]
fn a_failed_snapshot_stops_the_merge_and_says_how_to_skip_it() -> TestResult {
    let project = project()?;
    git(&project, &["checkout", "-q", "-b", "feature"])?;
    commit(&project, "feature.txt")?;
    git(&project, &["checkout", "-q", "main"])?;
    commit(&project, "main.txt")?;
    let before = head(&project, "main")?;
    fs::rename(project.root().join("var/uploads"), project.root().join("var/elsewhere"))?;

    let lines = git_fails(&project, &["merge", "-q", "--no-edit", "feature"])?;
    assert_eq!(lines.len(), 1, "{lines:?}");
    let line = &lines[0];
    assert!(line.starts_with("envsnap: no snapshot of main before merge, so the merge is not committed: "), "{line}");
    assert!(line.contains("var/uploads does not exist"), "says what failed: {line}");
    assert!(line.contains("ENVSNAP_SKIP_HOOKS=1") && line.contains("--no-verify"), "says how to skip: {line}");
    assert_eq!(head(&project, "main")?, before, "main is unchanged");
    git(&project, &["merge", "--abort"])?;

    // A fast-forward, which only reference-transaction sees, is stopped too.
    git(&project, &["checkout", "-q", "-b", "ahead"])?;
    commit(&project, "ahead.txt")?;
    git(&project, &["checkout", "-q", "main"])?;
    let lines = git_fails(&project, &["merge", "-q", "ahead"])?;
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].starts_with("envsnap: no snapshot of main before fast-forward, so main is unchanged"),
        "{lines:?}"
    );
    assert!(lines[0].contains("`ENVSNAP_SKIP_HOOKS=1 git merge ahead`"), "{lines:?}");
    assert_eq!(head(&project, "main")?, before);
    git(&project, &["reset", "-q", "--merge"])?;
    assert!(project.snapshots()?.is_empty());

    let lines = git_env(&project, &["merge", "-q", "ahead"], &[("ENVSNAP_SKIP_HOOKS", "1")])?;
    assert!(lines.is_empty(), "{lines:?}");
    assert_eq!(head(&project, "main")?, head(&project, "ahead")?, "skipped deliberately, the merge goes on");
    Ok(())
}

#[test]
fn a_held_repository_lock_fails_the_hook_instead_of_hanging_git() -> TestResult {
    let project = project()?;
    git(&project, &["checkout", "-q", "-b", "feature"])?;
    commit(&project, "feature.txt")?;
    git(&project, &["checkout", "-q", "main"])?;
    let lock = fs::OpenOptions::new().create(true).truncate(false).write(true).open(project.repository.join("lock"))?;
    lock.lock()?;
    let started = std::time::Instant::now();
    let lines = git_fails(&project, &["merge", "-q", "feature"])?;
    assert!(started.elapsed().as_secs() < 30, "gave up in time");
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].contains("is busy") && lines[0].contains("ENVSNAP_SKIP_HOOKS=1"), "{lines:?}");
    lock.unlock()?;
    Ok(())
}

#[test]
fn a_hook_already_there_still_runs_first_and_comes_back_on_uninstall() -> TestResult {
    let project = Project::new(CONFIG)?;
    fs::create_dir_all(project.root().join("var/uploads"))?;
    project.ok(&["init"])?;
    let hooks = project.root().join(".git/hooks");
    let user_hook = hooks.join("pre-push");
    let log = project.root().join("user-hook.log");
    let script =
        format!("#!/bin/sh\necho \"$(basename \"$0\") $*\" >> '{}'\ncat >> '{}'\n", log.display(), log.display());
    fs::write(&user_hook, &script)?;
    fs::set_permissions(&user_hook, fs::Permissions::from_mode(0o755))?;
    let failing = hooks.join("pre-merge-commit");
    fs::write(&failing, "#!/bin/sh\necho 'user hook: no merges today' >&2\nexit 3\n")?;
    fs::set_permissions(&failing, fs::Permissions::from_mode(0o755))?;
    // A hook that is not a shell script, run as it is, in every state of every transaction.
    let states = project.root().join("states.log");
    let transaction = hooks.join("reference-transaction");
    fs::write(
        &transaction,
        format!(
            "#!/usr/bin/env bash
echo \"$1\" >> '{}'\n",
            states.display()
        ),
    )?;
    fs::set_permissions(&transaction, fs::Permissions::from_mode(0o755))?;

    let installed = project.ok(&["hooks", "install"])?;
    assert!(installed.contains("kept as pre-push.envsnap-chained"), "{installed}");
    let remote = tempfile::tempdir()?;
    let remote_path = remote.path().to_str().ok_or("a UTF-8 path")?;
    git(&project, &["init", "-q", "--bare", remote_path])?;
    let lines = git(&project, &["push", "-q", remote_path, "main"])?;
    assert_snapshot_line(&lines, "main", &format!("push to {remote_path}"))?;
    let logged = fs::read_to_string(&log)?;
    assert!(logged.starts_with(&format!("pre-push {remote_path} {remote_path}\nrefs/heads/main ")), "{logged}");

    git(&project, &["checkout", "-q", "-b", "feature"])?;
    commit(&project, "feature.txt")?;
    git(&project, &["checkout", "-q", "main"])?;
    commit(&project, "main.txt")?;
    let output = git_output(&project, &["merge", "-q", "--no-edit", "feature"], &[])?;
    assert_eq!(output.status.code(), Some(1), "git stops the merge when the user's hook fails");
    assert!(String::from_utf8(output.stderr)?.contains("user hook: no merges today"));
    assert_eq!(project.snapshots()?.len(), 1, "no snapshot after the user's hook failed");

    let logged_states = fs::read_to_string(&states)?;
    assert!(logged_states.contains("prepared\ncommitted\n"), "{logged_states}");

    let status = project.ok(&["hooks", "status"])?;
    assert!(status.contains("runs pre-merge-commit.envsnap-chained first"), "{status}");
    project.ok(&["hooks", "uninstall"])?;
    assert_eq!(fs::read_to_string(&user_hook)?, script, "put back as it was");
    assert!(fs::read_to_string(&failing)?.contains("no merges today"));
    assert!(!hooks.join("pre-push.envsnap-chained").exists());
    assert!(fs::read_to_string(&transaction)?.starts_with("#!/usr/bin/env bash\necho"));
    assert!(!hooks.join("reference-transaction.envsnap-chained").exists());
    Ok(())
}

#[test]
fn core_hooks_path_is_honoured_and_husky_hooks_keep_working() -> TestResult {
    let project = Project::new(CONFIG)?;
    fs::create_dir_all(project.root().join("var/uploads"))?;
    project.ok(&["init"])?;
    // husky 9's layout: git runs the shims of .husky/_/, which run the user's .husky/HOOK.
    let husky = project.root().join(".husky");
    fs::create_dir_all(husky.join("_"))?;
    let runner = "#!/usr/bin/env sh\nn=$(basename \"$0\")\ns=$(dirname \"$(dirname \"$0\")\")/$n\n\
                  [ ! -f \"$s\" ] && exit 0\nsh -e \"$s\" \"$@\"\n";
    fs::write(husky.join("_/h"), runner)?;
    let shim = "#!/usr/bin/env sh\n. \"$(dirname \"$0\")/h\"\n";
    for hook in ["pre-push", "pre-merge-commit", "pre-commit"] {
        fs::write(husky.join("_").join(hook), shim)?;
        fs::set_permissions(husky.join("_").join(hook), fs::Permissions::from_mode(0o755))?;
    }
    fs::write(husky.join("pre-push"), "touch husky-pre-push-ran\n")?;
    git(&project, &["config", "core.hooksPath", ".husky/_"])?;

    let installed = project.ok(&["hooks", "install"])?;
    assert!(installed.contains(".husky/_ (core.hooksPath)"), "{installed}");
    assert!(husky.join("_/reference-transaction").exists() && husky.join("_/pre-push.envsnap-chained").exists());
    assert!(!project.root().join(".git/hooks/pre-push").exists());

    let remote = tempfile::tempdir()?;
    let remote_path = remote.path().to_str().ok_or("a UTF-8 path")?;
    git(&project, &["init", "-q", "--bare", remote_path])?;
    let lines = git(&project, &["push", "-q", remote_path, "main"])?;
    assert_snapshot_line(&lines, "main", &format!("push to {remote_path}"))?;
    assert!(project.root().join("husky-pre-push-ran").exists(), "the user's husky hook ran");

    // husky rewrites its shims on `npm install`; installing again keeps one copy.
    fs::write(husky.join("_/pre-push"), shim)?;
    project.ok(&["hooks", "install"])?;
    assert_eq!(fs::read_to_string(husky.join("_/pre-push.envsnap-chained"))?, shim);
    project.ok(&["hooks", "uninstall"])?;
    assert_eq!(fs::read_to_string(husky.join("_/pre-push"))?, shim);
    Ok(())
}

#[test]
fn installing_twice_changes_nothing() -> TestResult {
    let project = project()?;
    let hooks = project.root().join(".git/hooks");
    let describe = || -> Fallible<Vec<(PathBuf, Vec<u8>, std::time::SystemTime)>> {
        let mut files = Vec::new();
        for entry in fs::read_dir(&hooks)? {
            let path = entry?.path();
            files.push((path.clone(), fs::read(&path)?, fs::metadata(&path)?.modified()?));
        }
        files.sort();
        Ok(files)
    };
    let before = describe()?;
    let again = project.ok(&["hooks", "install"])?;
    assert_eq!(again.matches("already installed").count(), 3, "{again}");
    assert_eq!(describe()?, before);
    assert!(!hooks.join("pre-push.envsnap-chained").exists(), "its own shims are not chained");
    Ok(())
}

#[test]
fn a_missing_binary_warns_and_lets_git_go_on() -> TestResult {
    let project = Project::new(CONFIG)?;
    fs::create_dir_all(project.root().join("var/uploads"))?;
    project.ok(&["init"])?;
    let bin = tempfile::tempdir()?;
    let copy = bin.path().join("envsnap");
    fs::copy(env!("CARGO_BIN_EXE_envsnap"), &copy)?;
    let output = Command::new(&copy).args(["hooks", "install"]).current_dir(project.root()).output()?;
    assert!(output.status.success());
    fs::remove_file(&copy)?;

    git(&project, &["checkout", "-q", "-b", "feature"])?;
    commit(&project, "feature.txt")?;
    git(&project, &["checkout", "-q", "main"])?;
    commit(&project, "main.txt")?;
    let path = std::env::var("PATH")?;
    let without_envsnap: Vec<&str> = path.split(':').filter(|dir| !Path::new(dir).join("envsnap").exists()).collect();
    let lines = git_env(&project, &["merge", "-q", "--no-edit", "feature"], &[("PATH", &without_envsnap.join(":"))])?;
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].starts_with("envsnap: reference-transaction hook: envsnap is not at "), "{lines:?}");
    assert!(lines[0].contains("no snapshot was taken"), "{lines:?}");
    assert!(project.snapshots()?.is_empty());
    Ok(())
}
