//! Black-box tests of file snapshots: what goes in comes back out, byte for byte and
//! attribute for attribute, and bad input gets a clear error that changes nothing.

mod common;

use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use common::{Project, TestResult, assert_same_tree, git, noise};

const CONFIG: &str = r#"
production = "main"

[[mount]]
name = "uploads"
path = "var/uploads"
exclude = ["styles/", "*.tmp"]
"#;

/// Fills `dir` with every kind of thing a mount may hold.
fn populate(dir: &Path) -> TestResult {
    fs::create_dir_all(dir.join("photos/2024/empty"))?;
    fs::create_dir_all(dir.join("styles"))?;
    fs::write(dir.join("readme.txt"), "hello\n")?;
    fs::write(dir.join("empty.bin"), b"")?;
    fs::write(dir.join("photos/2024/big.jpg"), noise(1, 3 << 20))?;
    fs::write(dir.join("photos/repeated.txt"), "the same line again\n".repeat(50_000))?;
    fs::write(dir.join("styles/generated.css"), "body {}")?;
    fs::write(dir.join("upload.tmp"), "partial upload")?;
    // Sparse: 8 MiB with 5 bytes written in the middle.
    let sparse = fs::File::create(dir.join("sparse.img"))?;
    sparse.set_len(8 << 20)?;
    std::os::unix::fs::FileExt::write_all_at(&sparse, b"data!", 4 << 20)?;
    drop(sparse);
    // Names that are not UTF-8.
    fs::write(dir.join(OsStr::from_bytes(b"caf\xe9-latin1.txt")), "latin-1 name")?;
    // Symlinks, stored and never followed: relative, absolute, dangling, to a directory.
    std::os::unix::fs::symlink("readme.txt", dir.join("link-to-readme"))?;
    std::os::unix::fs::symlink("/etc/hostname", dir.join("absolute-link"))?;
    std::os::unix::fs::symlink("does/not/exist", dir.join("dangling"))?;
    std::os::unix::fs::symlink("photos", dir.join("photos-link"))?;
    // Hard links.
    fs::write(dir.join("photos/original.txt"), "linked content")?;
    fs::hard_link(dir.join("photos/original.txt"), dir.join("hardlink.txt"))?;
    // Permissions and nanosecond times.
    fs::set_permissions(dir.join("readme.txt"), fs::Permissions::from_mode(0o640))?;
    fs::set_permissions(dir.join("photos/2024"), fs::Permissions::from_mode(0o750))?;
    fs::set_permissions(dir.join("empty.bin"), fs::Permissions::from_mode(0o4755))?;
    let when = filetime::FileTime::from_unix_time(1_600_000_000, 123_456_789);
    filetime::set_file_mtime(dir.join("readme.txt"), when)?;
    filetime::set_file_mtime(dir.join("photos/2024/empty"), when)?;
    Ok(())
}

/// A copy of `source` without what CONFIG excludes, to compare restores with.
fn expected_copy(source: &Path, into: &Path) -> TestResult {
    let status = std::process::Command::new("cp").arg("-a").arg(source).arg(into).status()?;
    assert!(status.success(), "cp -a");
    fs::remove_dir_all(into.join("styles"))?;
    fs::remove_file(into.join("upload.tmp"))?;
    Ok(())
}

fn uploads(project: &Project) -> std::path::PathBuf {
    project.root().join("var/uploads")
}

#[test]
fn round_trip_preserves_contents_and_attributes() -> TestResult {
    let project = Project::new(CONFIG)?;
    populate(&uploads(&project))?;
    project.ok(&["init"])?;
    let id = project.backup(&[])?;
    assert_eq!(id.len(), 64, "backup prints the full id: {id}");

    let expected = project.root().join("expected");
    expected_copy(&uploads(&project), &expected)?;
    let target = project.root().join("restored");
    project.ok(&["restore", &id[..12], "--to", target.to_str().ok_or("utf-8")?])?;
    let restored = target.join("uploads");
    assert_same_tree(&expected, &restored)?;

    let sparse = fs::metadata(restored.join("sparse.img"))?;
    assert_eq!(sparse.len(), 8 << 20);
    assert!(sparse.blocks() * 512 < 1 << 20, "the sparse file stays sparse: {} blocks", sparse.blocks());
    let links = fs::metadata(restored.join("hardlink.txt"))?;
    assert_eq!(links.ino(), fs::metadata(restored.join("photos/original.txt"))?.ino(), "hard links restored as links");
    Ok(())
}

#[test]
fn snapshot_records_branch_commit_and_json_fields() -> TestResult {
    let project = Project::new(CONFIG)?;
    populate(&uploads(&project))?;
    project.ok(&["init"])?;
    let id = project.backup(&["--note", "before the release", "--keep-for", "7"])?;
    let head = git(project.root(), &["rev-parse", "HEAD"])?;
    let snapshots = project.snapshots()?;
    assert_eq!(snapshots.len(), 1);
    let snapshot = &snapshots[0];
    assert_eq!(snapshot["id"], id.as_str());
    assert_eq!(snapshot["env"], "main");
    assert_eq!(snapshot["commit"], head.trim());
    assert_eq!(snapshot["trigger"], "manual");
    assert_eq!(snapshot["mode"], "consistent");
    assert_eq!(snapshot["state"], "complete");
    assert_eq!(snapshot["result"], "success");
    assert_eq!(snapshot["progress"], 100);
    assert_eq!(snapshot["restorable"], true);
    assert_eq!(snapshot["note"], "before the release");
    assert!(snapshot["expires"].is_string(), "--keep-for sets expires");
    assert!(snapshot["created"].as_str().is_some_and(|created| created.ends_with('Z')), "RFC 3339 UTC");
    let size = snapshot["size"].as_u64().ok_or("size")?;
    assert!(size > (3 << 20) + (8 << 20), "size counts captured bytes: {size}");
    assert!(snapshot["stored"].as_u64().ok_or("stored")? < size, "dedup and compression: stored < size");
    assert_eq!(snapshot["elements"][0]["name"], "uploads");
    assert_eq!(snapshot["elements"][0]["kind"], "mount");

    let shown: serde_json::Value = serde_json::from_str(&project.ok(&["show", &id[..8], "--json"])?)?;
    assert_eq!(&shown, snapshot);
    let table = project.ok(&["list"])?;
    assert!(table.starts_with("Created"), "{table}");
    for column in
        ["Snapshot ID", "Environment", "Commit", "Trigger", "% Complete", "State", "Result", "Restorable", "Size"]
    {
        assert!(table.contains(column), "list shows {column}: {table}");
    }
    assert!(table.contains(&id[..12]));
    let csv = project.ok(&["backups", "--format", "csv", "--columns", "id,env"])?;
    assert_eq!(csv, format!("Snapshot ID,Environment\n{},main\n", &id[..12]));
    // A column that does not exist is a usage error, and the message lists those that do.
    let stderr = project.fails(&["list", "--columns", "id,colour"], 2)?;
    assert!(stderr.contains("colour") && stderr.contains("restorable"), "{stderr}");

    // Output whose reader has gone (`envsnap list --json | head -1`) is not a failure.
    for args in [&["list", "--json"][..], &["show", "latest", "--json"], &["list"]] {
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_envsnap"))
            .args(args)
            .current_dir(project.root())
            .env("ENVSNAP_REPOSITORY", &project.repository)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()?;
        drop(child.stdout.take());
        let output = child.wait_with_output()?;
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success() && !stderr.contains("pipe"), "{args:?}: {:?} {stderr}", output.status);
    }
    Ok(())
}

#[test]
fn unchanged_files_are_not_read_again() -> TestResult {
    let project = Project::new(CONFIG)?;
    populate(&uploads(&project))?;
    project.ok(&["init"])?;
    project.backup(&[])?;
    let again = project.run(&["backup"])?;
    let stderr = String::from_utf8(again.stderr)?;
    assert!(again.status.success());
    assert!(stderr.contains("(0 read, 8 unchanged)"), "{stderr}");
    fs::write(uploads(&project).join("readme.txt"), "changed\n")?;
    let third = project.run(&["backup", "--json"])?;
    let stderr = String::from_utf8(third.stderr)?;
    assert!(stderr.contains("(1 read, 7 unchanged)"), "{stderr}");
    let snapshot: serde_json::Value = serde_json::from_slice(&third.stdout)?;
    let stored = snapshot["stored"].as_u64().ok_or("stored")?;
    assert!(stored < 64 << 10, "a one-file change stores little: {stored} bytes");
    Ok(())
}

#[test]
fn restore_in_place_replaces_data_keeps_excludes_and_can_be_undone() -> TestResult {
    let project = Project::new(CONFIG)?;
    let data = uploads(&project);
    populate(&data)?;
    project.ok(&["init"])?;
    let first = project.backup(&[])?;
    let expected = project.root().join("expected");
    expected_copy(&data, &expected)?;

    fs::write(data.join("readme.txt"), "edited")?;
    fs::remove_file(data.join("photos/2024/big.jpg"))?;
    fs::write(data.join("added.txt"), "new")?;
    fs::remove_dir_all(data.join("photos/2024/empty"))?;
    fs::write(data.join("styles/generated.css"), "regenerated")?;
    let changed = project.root().join("changed");
    expected_copy(&data, &changed)?;

    let refused = project.fails(&["restore", &first[..12]], 1)?;
    assert!(refused.contains("--yes"), "without a terminal, restore asks for --yes: {refused}");
    assert_eq!(fs::read_to_string(data.join("readme.txt"))?, "edited", "a refused restore changes nothing");

    project.ok(&["restore", &first[..12], "--yes"])?;
    let mut kept = fs::read_dir(&data)?.count();
    assert_eq!(fs::read_to_string(data.join("styles/generated.css"))?, "regenerated", "excluded files are left alone");
    fs::remove_dir_all(data.join("styles"))?;
    fs::remove_file(data.join("upload.tmp"))?;
    kept -= 2;
    assert_same_tree(&expected, &data)?;
    assert!(kept > 0);

    let snapshots = project.snapshots()?;
    let safety = snapshots.iter().find(|s| s["trigger"] == "safety").ok_or("a safety snapshot was taken")?;
    let safety_id = safety["id"].as_str().ok_or("id")?;
    project.ok(&["restore", &safety_id[..12], "--yes", "--no-safety-snapshot"])?;
    fs::remove_dir_all(data.join("styles")).ok();
    fs::remove_file(data.join("upload.tmp")).ok();
    assert_same_tree(&changed, &data)?;
    assert_eq!(project.snapshots()?.len(), 2, "--no-safety-snapshot takes none");
    Ok(())
}

#[test]
fn diff_lists_what_changed() -> TestResult {
    let project = Project::new(CONFIG)?;
    let data = uploads(&project);
    populate(&data)?;
    project.ok(&["init"])?;
    let first = project.backup(&[])?;
    fs::write(data.join("readme.txt"), "edited")?;
    fs::remove_file(data.join("empty.bin"))?;
    fs::write(data.join("photos/new.txt"), "new")?;
    fs::set_permissions(data.join("photos/repeated.txt"), fs::Permissions::from_mode(0o600))?;
    let second = project.backup(&[])?;
    let out = project.ok(&["diff", &first[..10], &second[..10]])?;
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines,
        vec![
            "-  uploads/empty.bin",
            "m  uploads/photos/",
            "+  uploads/photos/new.txt",
            "m  uploads/photos/repeated.txt",
            "M  uploads/readme.txt",
        ]
    );
    Ok(())
}

#[test]
fn ids_are_checked_and_delete_removes_one_snapshot() -> TestResult {
    let project = Project::new(CONFIG)?;
    populate(&uploads(&project))?;
    project.ok(&["init"])?;
    let first = project.backup(&[])?;
    fs::write(uploads(&project).join("readme.txt"), "second")?;
    let second = project.backup(&[])?;

    let unknown = project.fails(&["show", "0000000000"], 1)?;
    assert!(unknown.contains("no snapshot matches `0000000000`") && unknown.contains("envsnap list"), "{unknown}");
    let short = project.fails(&["show", "ab"], 1)?;
    assert!(short.contains("at least 4 hex characters"), "{short}");
    let usage = project.fails(&["restore", "--no-such-flag"], 2)?;
    assert!(usage.contains("--no-such-flag"), "{usage}");

    let deleted = project.ok(&["delete", &first[..12], "--yes"])?;
    assert!(deleted.contains(&first[..12]), "{deleted}");
    let left: Vec<String> = project.snapshots()?.iter().filter_map(|s| s["id"].as_str().map(str::to_owned)).collect();
    assert_eq!(left, vec![second.clone()]);
    project.fails(&["restore", &first[..12], "--to", "x"], 1)?;
    assert!(!project.root().join("x").exists(), "a failed lookup writes nothing");
    let check = project.ok(&["check"])?;
    assert!(check.starts_with("no errors: 1 snapshot,"), "{check}");
    Ok(())
}

#[test]
fn an_ambiguous_prefix_lists_the_candidates() -> TestResult {
    use envsnap::repository::{Access, Repository};
    let project = Project::new(CONFIG)?;
    populate(&uploads(&project))?;
    project.ok(&["init"])?;
    project.backup(&[])?;
    // Publish copies of the snapshot with different notes until two ids share 4 digits.
    let repository = Repository::open(&project.repository, Access::Write, &mut |_| {})?;
    let template = repository.snapshots(None)?.remove(0).manifest;
    let mut seen = std::collections::HashMap::new();
    let mut shared = None;
    for n in 0..5000 {
        let mut manifest = template.clone();
        manifest.note = Some(format!("copy {n}"));
        let snapshot = repository.publish(&manifest)?;
        let prefix = snapshot.id.short(4);
        if seen.insert(prefix.clone(), snapshot.id).is_some() {
            shared = Some(prefix);
            break;
        }
    }
    drop(repository);
    let prefix = shared.ok_or("two ids share a 4-digit prefix within 5000 snapshots")?;
    let stderr = project.fails(&["show", &prefix], 1)?;
    assert!(stderr.contains("matches 2 snapshots") && stderr.contains("give more characters"), "{stderr}");
    Ok(())
}

#[test]
fn bad_input_is_refused_with_a_clear_message_and_changes_nothing() -> TestResult {
    let project = Project::new(CONFIG)?;
    project.ok(&["init"])?;
    let missing = project.fails(&["backup"], 1)?;
    assert!(missing.contains("mount `uploads`") && missing.contains("var/uploads does not exist"), "{missing}");
    assert!(project.snapshots()?.is_empty(), "no partial snapshot");

    fs::write(
        project.root().join("envsnap.toml"),
        "production = \"main\"\n\n[[mount]]\nname = \"uploads\"\npth = \"x\"\n",
    )?;
    let typo = project.fails(&["backup"], 1)?;
    assert!(typo.contains("envsnap.toml:5") && typo.contains("mount[0].pth"), "names file, line and key: {typo}");
    fs::write(project.root().join("envsnap.toml"), CONFIG)?;

    let unknown = project.fails(&["backup", "--element", "nope"], 1)?;
    assert!(unknown.contains("no element named `nope`") && unknown.contains("uploads"), "{unknown}");

    let config_path = project.repository.join("config.json");
    let config = fs::read_to_string(&config_path)?;
    fs::write(&config_path, config.replace("\"format\": 1", "\"format\": 99"))?;
    let newer = project.fails(&["list"], 1)?;
    assert!(newer.contains("format version 99") && newer.contains("upgrade envsnap"), "{newer}");
    assert!(fs::read_to_string(&config_path)?.contains("\"format\": 99"), "left as it was");

    let detached = Project::new(CONFIG)?;
    git(detached.root(), &["checkout", "-q", "--detach"])?;
    let stderr = detached.fails(&["backup"], 1)?;
    assert!(stderr.contains("detached") && stderr.contains("--env"), "{stderr}");
    Ok(())
}

#[test]
fn a_lost_catalog_is_rebuilt_from_the_store() -> TestResult {
    let project = Project::new(CONFIG)?;
    populate(&uploads(&project))?;
    project.ok(&["init"])?;
    let id = project.backup(&[])?;
    for suffix in ["", "-wal", "-shm"] {
        let _ = fs::remove_file(project.repository.join(format!("catalog.sqlite{suffix}")));
    }
    let listed = project.snapshots()?;
    assert_eq!(listed[0]["id"], id.as_str(), "the catalog is rebuilt on open");
    let report = project.ok(&["repair"])?;
    assert!(report.contains("1 snapshot,") && report.contains("1 pack,"), "{report}");
    let target = project.root().join("restored");
    project.ok(&["restore", &id[..12], "--to", target.to_str().ok_or("utf-8")?])?;
    let expected = project.root().join("expected");
    expected_copy(&uploads(&project), &expected)?;
    assert_same_tree(&expected, &target.join("uploads"))?;
    assert!(project.ok(&["check", "--read-data"])?.contains("no errors"));
    Ok(())
}

#[test]
fn a_pinned_snapshot_is_refused_by_delete_until_unpinned() -> TestResult {
    let project = Project::new(CONFIG)?;
    populate(&uploads(&project))?;
    project.ok(&["init"])?;
    let first = project.backup(&[])?;
    fs::write(uploads(&project).join("later.txt"), "later\n")?;
    let second = project.backup(&[])?;
    assert!(project.ok(&["pin", &first[..8]])?.starts_with(&format!("pinned snapshot {}", &first[..12])));
    let shown = project.ok(&["show", &first[..8]])?;
    assert!(shown.contains(&format!("Pinned       kept until `envsnap unpin {}`", &first[..12])), "{shown}");
    assert!(!project.ok(&["show", &second[..8]])?.contains("Pinned"));

    // Deleting both is refused as a whole: the unpinned one is not deleted either.
    let said = project.fails(&["delete", &second[..12], &first[..12]], 1)?;
    assert!(said.contains(&format!("snapshot {} is pinned", &first[..12])), "{said}");
    assert!(said.contains(&format!("envsnap unpin {}", &first[..12])), "{said}");
    assert_eq!(project.snapshots()?.len(), 2, "nothing was deleted");

    // The pin lives in the store: a rebuilt catalog keeps it.
    for suffix in ["", "-wal", "-shm"] {
        let _ = fs::remove_file(project.repository.join(format!("catalog.sqlite{suffix}")));
    }
    project.ok(&["repair"])?;
    project.fails(&["delete", &first[..12]], 1)?;

    project.ok(&["unpin", &first[..12]])?;
    project.ok(&["delete", &first[..12], "--yes"])?;
    let left: Vec<String> = project.snapshots()?.iter().map(|s| s["id"].as_str().unwrap_or("").to_owned()).collect();
    assert_eq!(left, [second.as_str()]);

    // `latest` is the checked-out branch's newest, not the newest of all branches.
    git(project.root(), &["checkout", "-q", "-b", "feature"])?;
    project.backup(&[])?;
    git(project.root(), &["checkout", "-q", "main"])?;
    assert!(project.ok(&["pin", "latest"])?.starts_with(&format!("pinned snapshot {}", &second[..12])));
    Ok(())
}

#[test]
fn the_demo_runs_from_start_to_end() -> TestResult {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_envsnap")).arg("demo").output()?;
    let stdout = String::from_utf8(output.stdout)?;
    assert!(output.status.success(), "{stdout}{}", String::from_utf8_lossy(&output.stderr));
    assert!(stdout.contains("After the restore: 2 rows"), "{stdout}");
    assert!(stdout.contains("After the undo: 4 rows, new.txt is back: true"), "{stdout}");
    assert!(stdout.contains("no errors"), "{stdout}");
    Ok(())
}

/// Runs envsnap under umask 022, as a login shell usually has it.
fn run_with_umask_022(project: &Project, args: &[&str]) -> TestResult {
    let output = std::process::Command::new("sh")
        .arg("-c")
        .arg("umask 022; exec \"$0\" \"$@\"")
        .arg(env!("CARGO_BIN_EXE_envsnap"))
        .args(args)
        .current_dir(project.root())
        .env("ENVSNAP_REPOSITORY", &project.repository)
        .output()?;
    assert!(output.status.success(), "{args:?}: {}", String::from_utf8_lossy(&output.stderr));
    Ok(())
}

#[test]
fn repository_is_private_whatever_the_umask() -> TestResult {
    let project = Project::new(CONFIG)?;
    populate(&uploads(&project))?;
    run_with_umask_022(&project, &["init"])?;
    run_with_umask_022(&project, &["backup"])?;
    let mut pending = vec![project.repository.clone()];
    let (mut files, mut dirs) = (0, 0);
    while let Some(dir) = pending.pop() {
        let mode = fs::metadata(&dir)?.permissions().mode() & 0o777;
        assert_eq!(mode, 0o700, "{} is {mode:o}", dir.display());
        dirs += 1;
        for entry in fs::read_dir(&dir)? {
            let path = entry?.path();
            let metadata = fs::symlink_metadata(&path)?;
            if metadata.is_dir() {
                pending.push(path);
            } else {
                let mode = metadata.permissions().mode() & 0o777;
                assert_eq!(mode, 0o600, "{} is {mode:o}", path.display());
                files += 1;
            }
        }
    }
    assert!(files >= 3 && dirs >= 2, "{files} files, {dirs} dirs: a pack, a config and a catalog at least");
    Ok(())
}
