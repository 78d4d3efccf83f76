//! `envsnap prune`: frees what no snapshot uses, and never what one does, even with a
//! backup or a reader at work at the same time.

mod common;

use std::fs::{self, File};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Project, TestResult, noise};

const CONFIG: &str = r#"
production = "main"

[[mount]]
name = "data"
path = "data"
"#;

/// Bytes of the repository's packs.
fn packs_size(project: &Project) -> Result<u64, std::io::Error> {
    let mut total = 0;
    for dir in fs::read_dir(project.repository.join("packs"))? {
        for pack in fs::read_dir(dir?.path())? {
            total += pack?.metadata()?.len();
        }
    }
    Ok(total)
}

/// The names of the repository's packs.
fn pack_names(project: &Project) -> Result<std::collections::BTreeSet<std::ffi::OsString>, std::io::Error> {
    let mut names = std::collections::BTreeSet::new();
    for dir in fs::read_dir(project.repository.join("packs"))? {
        for pack in fs::read_dir(dir?.path())? {
            names.insert(pack?.file_name());
        }
    }
    Ok(names)
}

/// Writes `count` files of `size` random bytes named `<prefix><n>` into `data/`.
fn write_files(project: &Project, prefix: &str, count: u64, size: usize) -> TestResult {
    let dir = project.root().join("data");
    fs::create_dir_all(&dir)?;
    for n in 0..count {
        let seed = prefix.bytes().fold(n, |seed, byte| seed.wrapping_mul(31).wrapping_add(u64::from(byte)));
        fs::write(dir.join(format!("{prefix}{n}")), noise(seed, size))?;
    }
    Ok(())
}

/// Restores snapshot `id` beside the work tree and compares it, file by file, with
/// `data/` as it is now.
fn assert_restores(project: &Project, id: &str) -> TestResult {
    let out = project.root().join(format!("restored-{}", &id[..12]));
    project.ok(&["restore", &id[..12], "--to", out.to_str().ok_or("utf-8")?])?;
    let mut count = 0;
    for entry in fs::read_dir(project.root().join("data"))? {
        let entry = entry?;
        assert_eq!(fs::read(entry.path())?, fs::read(out.join("data").join(entry.file_name()))?);
        count += 1;
    }
    assert_eq!(fs::read_dir(out.join("data"))?.count(), count, "no file more, none less");
    fs::remove_dir_all(out)?;
    Ok(())
}

#[test]
fn prune_frees_what_deleted_snapshots_held_and_every_other_snapshot_restores() -> TestResult {
    let project = Project::new(CONFIG)?;
    project.ok(&["init"])?;
    write_files(&project, "old", 12, 1 << 20)?;
    write_files(&project, "kept", 4, 1 << 20)?;
    let first = project.backup(&[])?;
    for n in 0..12 {
        fs::remove_file(project.root().join(format!("data/old{n}")))?;
    }
    write_files(&project, "new", 3, 1 << 20)?;
    let second = project.backup(&[])?;
    // Nothing is freed while every snapshot is kept.
    let said = project.ok(&["prune"])?;
    assert!(said.starts_with("freed 0 B"), "{said}");

    project.ok(&["delete", &first[..12], "--yes"])?;
    let before = packs_size(&project)?;
    let said = project.ok(&["prune", "--dry-run"])?;
    assert!(said.starts_with("would free 12."), "about 12 MiB: {said}");
    assert_eq!(packs_size(&project)?, before, "a dry run changes nothing");

    let said = project.ok(&["prune"])?;
    assert!(said.starts_with("freed 12."), "{said}");
    let after = packs_size(&project)?;
    assert!(before - after > 11 << 20 && after > 7 << 20, "{before} -> {after}");
    assert!(project.ok(&["check", "--read-data"])?.starts_with("no errors"));
    assert_restores(&project, &second)?;

    let said = project.ok(&["prune"])?;
    assert!(said.starts_with("freed 0 B"), "a second prune finds nothing: {said}");
    Ok(())
}

#[test]
fn a_backup_running_beside_prune_loses_nothing() -> TestResult {
    let project = Project::new(CONFIG)?;
    project.ok(&["init"])?;
    write_files(&project, "a", 10, 1 << 20)?;
    let first = project.backup(&[])?;
    write_files(&project, "b", 40, 1 << 20)?;
    project.ok(&["delete", &first[..12], "--yes"])?;
    // The backup and the prune start together; whichever takes the writers' lock
    // first makes the other wait.
    let spawn = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_envsnap"))
            .args(args)
            .current_dir(project.root())
            .env("ENVSNAP_REPOSITORY", &project.repository)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
    };
    let backup = spawn(&["backup"])?;
    let prune = spawn(&["prune"])?;
    let backup = backup.wait_with_output()?;
    let prune = prune.wait_with_output()?;
    assert!(backup.status.success(), "{}", String::from_utf8_lossy(&backup.stderr));
    assert!(prune.status.success(), "{}", String::from_utf8_lossy(&prune.stderr));
    let second = String::from_utf8(backup.stdout)?.trim().to_owned();
    assert!(project.ok(&["check", "--read-data"])?.starts_with("no errors"));
    assert_restores(&project, &second)?;
    Ok(())
}

#[test]
fn prune_waits_for_readers_before_it_removes_packs() -> TestResult {
    let project = Project::new(CONFIG)?;
    project.ok(&["init"])?;
    write_files(&project, "a", 4, 1 << 20)?;
    let first = project.backup(&[])?;
    write_files(&project, "b", 1, 1 << 20)?;
    for n in 0..4 {
        fs::remove_file(project.root().join(format!("data/a{n}")))?;
    }
    project.backup(&[])?;
    project.ok(&["delete", &first[..12], "--yes"])?;
    let before = packs_size(&project)?;
    let packs_before = pack_names(&project)?;

    // A reader: what a restore, an export or a mount holds while it reads.
    let reader = File::open(project.repository.join("lock.read"))?;
    reader.lock_shared()?;
    let mut prune = Command::new(env!("CARGO_BIN_EXE_envsnap"))
        .arg("prune")
        .current_dir(project.root())
        .env("ENVSNAP_REPOSITORY", &project.repository)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let deadline = Instant::now() + Duration::from_millis(1500);
    while Instant::now() < deadline {
        assert!(prune.try_wait()?.is_none(), "prune must wait for the reader");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(pack_names(&project)?.is_superset(&packs_before), "no pack is removed while a reader reads");
    reader.unlock()?;
    let output = prune.wait_with_output()?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains("waiting for readers of the repository"), "{stderr}");
    assert!(packs_size(&project)? < before - (3 << 20));
    assert!(project.ok(&["check", "--read-data"])?.starts_with("no errors"));
    Ok(())
}

#[test]
fn prune_killed_at_any_moment_loses_nothing() -> TestResult {
    let project = Project::new(CONFIG)?;
    project.ok(&["init"])?;
    write_files(&project, "kept", 6, 1 << 20)?;
    for round in 0..12u64 {
        // Each round: a snapshot to delete, one to keep, and a prune killed part way.
        write_files(&project, &format!("gone{round}-"), 6, 1 << 20)?;
        let doomed = project.backup(&[])?;
        for n in 0..6 {
            fs::remove_file(project.root().join(format!("data/gone{round}-{n}")))?;
        }
        let kept = project.backup(&[])?;
        project.ok(&["delete", &doomed[..12], "--yes"])?;
        let mut prune = Command::new(env!("CARGO_BIN_EXE_envsnap"))
            .arg("prune")
            .current_dir(project.root())
            .env("ENVSNAP_REPOSITORY", &project.repository)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        std::thread::sleep(Duration::from_millis(round * 15));
        prune.kill()?;
        prune.wait()?;
        // Whatever the moment, the snapshot kept reads back, before and after the next
        // prune finishes the work.
        assert_restores(&project, &kept)?;
        let said = project.ok(&["prune"])?;
        assert!(said.starts_with("freed"), "{said}");
        assert!(project.ok(&["check", "--read-data"])?.starts_with("no errors"), "round {round}");
        assert_restores(&project, &kept)?;
    }
    Ok(())
}

#[test]
fn readers_that_stay_leave_the_packs_for_the_next_prune() -> TestResult {
    let project = Project::new(CONFIG)?;
    project.ok(&["init"])?;
    write_files(&project, "a", 4, 1 << 20)?;
    let first = project.backup(&[])?;
    for n in 0..4 {
        fs::remove_file(project.root().join(format!("data/a{n}")))?;
    }
    write_files(&project, "b", 1, 1 << 20)?;
    let second = project.backup(&[])?;
    project.ok(&["delete", &first[..12], "--yes"])?;
    let packs_before = pack_names(&project)?;

    let reader = File::open(project.repository.join("lock.read"))?;
    reader.lock_shared()?;
    let said = project.ok(&["prune", "--wait", "1"])?;
    assert!(said.contains("freed nothing yet") && said.contains("run `envsnap prune` again"), "{said}");
    assert!(pack_names(&project)?.is_superset(&packs_before), "no pack is removed while a reader reads");
    assert_restores(&project, &second)?;
    reader.unlock()?;

    let before = packs_size(&project)?;
    let said = project.ok(&["prune"])?;
    assert!(said.starts_with("freed 4."), "the packs left are freed now: {said}");
    assert!(packs_size(&project)? < before - (3 << 20));
    assert!(project.ok(&["check", "--read-data"])?.starts_with("no errors"));
    assert_restores(&project, &second)?;
    Ok(())
}
