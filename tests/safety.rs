//! Black-box safety tests of the `envsnap` binary: a backup killed at any moment loses
//! no snapshot, a damaged byte is found and costs only what needs it, hostile snapshots
//! cannot write outside the restore target, a full disk fails cleanly, and writers take
//! turns on the repository.
//!
//! Each test builds its own git work tree and repository in a temporary directory, drives
//! the binary, and compares restored files byte for byte with copies kept by the test.
//! The helpers below serve only these tests, so they live here rather than in
//! `tests/common`.

use std::collections::{BTreeMap, BTreeSet};
use std::error::Error;
use std::ffi::OsStr;
use std::fs::{self, File, OpenOptions};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, MetadataExt, PermissionsExt};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::thread::sleep;
use std::time::{Duration, Instant};

use envsnap::id::ObjectId;
use envsnap::repository::{Access, Repository};
use envsnap::snapshot::{Element, ElementKind, MANIFEST_FORMAT, Manifest, Mode, Trigger};
use envsnap::store::BlobWriter;
use envsnap::store::lock::{LockKind, RepositoryLock};
use envsnap::store::pack::BlobKind;
use envsnap::tree::{Node, NodeKind, Tree};
use envsnap::view::{EntryKind, Scope, View, ViewError, ViewOptions};

type TestResult<T = ()> = Result<T, Box<dyn Error>>;

mod common;

use common::Format;

const BINARY: &str = env!("CARGO_BIN_EXE_envsnap");
const SIGKILL: i32 = 9;

// ---------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------

common::on_both_formats!(
    kill_during_backup_never_loses_a_snapshot,
    flipped_byte_is_found_and_contained,
    restore_refuses_hostile_snapshots,
    full_disk_during_backup,
    second_writer_waits_for_the_first,
    a_damaged_snapshot_never_replaces_intact_live_files,
    a_size_that_disagrees_with_the_chunks_is_named,
    a_directory_swapped_for_a_symlink_during_restore_leads_nowhere,
    a_killed_restore_leaves_every_file_old_or_new,
    trees_that_name_too_much_are_refused_at_once,
    kill_minus_nine_across_operations_loses_nothing,
    a_restore_in_place_crosses_into_another_file_system,
);

/// Rounds of "change the data, start a backup, SIGKILL it after a random delay". After
/// every round each snapshot listed before is still listed and `check` is clean; at a
/// few points, and for every snapshot at the end, restores match the copies the test
/// kept of what each snapshot captured.
fn kill_during_backup_never_loses_a_snapshot(format: Format) -> TestResult {
    const ROUNDS: usize = 30;
    let base = tempfile::tempdir()?;
    let repository = base.path().join("repository");
    let workspace = Workspace::create(base.path(), &repository, format)?;
    let mut rng = Xorshift::new(0x5eed_0001);
    let mut files = Files::default();
    for index in 0..300 {
        let len = rng.below(6000) as usize;
        let content = if index % 3 == 0 { compressible(&mut rng, len) } else { rng.bytes(len) };
        files.put(&workspace.data, &format!("d{}/f{index}.txt", index % 10), content)?;
    }
    for index in 0..4 {
        files.put(&workspace.data, &format!("big{index}.bin"), big_file(&mut rng))?;
    }

    let first = workspace.backup()?;
    let mut captured: BTreeMap<String, Files> = BTreeMap::new();
    captured.insert(first.clone(), files.clone());

    // How long a backup of one round's change takes here: the kill delays are drawn
    // from 0 to 1.5 times that, so they spread over the whole backup however fast or
    // slow the machine is. The last phases (pack, catalog, snapshot) are short, so every
    // third round waits for the pack to be started or stored, then kills within 3 ms.
    change_for_round(&mut files, &workspace.data, &mut rng, 0)?;
    let started = Instant::now();
    let timed = workspace.backup()?;
    let duration_ms = u64::try_from(started.elapsed().as_millis())?.max(20);
    captured.insert(timed, files.clone());
    eprintln!("one round's backup takes {duration_ms} ms");

    let restores = base.path().join("restores");
    let mut phases: BTreeMap<&str, usize> = BTreeMap::new();
    let mut kills = Vec::new();
    for round in 1..=ROUNDS {
        change_for_round(&mut files, &workspace.data, &mut rng, round)?;
        let before = workspace.snapshot_ids()?;
        let packs_before = count_files(&repository.join("packs"))?;
        let log = base.path().join("killed-backup");
        let mut child = workspace.spawn_backup(&log)?;
        // Halfway, one backup runs to its end: a snapshot taken mid-way, between kills.
        let kill = if round == ROUNDS / 2 {
            Kill::Never
        } else if round % 6 == 0 {
            Kill::AfterPackStored(rng.below(4))
        } else if round % 6 == 3 {
            Kill::AfterPackStarts(rng.below(4))
        } else {
            Kill::After(rng.below(duration_ms * 3 / 2 + 1))
        };
        let status = match kill {
            Kill::Never => wait_with_timeout(&mut child, Duration::from_secs(60))?,
            Kill::After(delay) => {
                sleep(Duration::from_millis(delay));
                child.kill()?;
                child.wait()?
            }
            Kill::AfterPackStarts(delay) | Kill::AfterPackStored(delay) => {
                let stored_only = matches!(kill, Kill::AfterPackStored(_));
                let deadline = Instant::now() + Duration::from_secs(30);
                loop {
                    let started = count_files(&repository.join("tmp"))? > 0;
                    let stored = count_files(&repository.join("packs"))? > packs_before;
                    let reached = stored || (started && !stored_only);
                    if reached || child.try_wait()?.is_some() || Instant::now() > deadline {
                        break;
                    }
                    sleep(Duration::from_micros(200));
                }
                sleep(Duration::from_millis(delay));
                child.kill()?;
                child.wait()?
            }
        };
        kills.push(kill);
        let printed = fs::read_to_string(log.with_extension("stdout"))?;
        let after = workspace.snapshot_ids()?;
        for id in &before {
            if !after.contains(id) {
                return Err(format!(
                    "round {round} ({kill:?}): snapshot {id} was listed before the round and \
                     is gone"
                )
                .into());
            }
        }
        let new: Vec<&String> = after.iter().filter(|id| !before.contains(id)).collect();
        if new.len() > 1 {
            return Err(format!("round {round}: one backup added {} snapshots", new.len()).into());
        }
        if status.success() {
            let printed = printed.trim();
            if new.first().map(|id| id.as_str()) != Some(printed) {
                return Err(
                    format!("round {round}: the backup printed `{printed}` but the new snapshots are {new:?}").into()
                );
            }
            expect_no_temporary_files(&repository, &format!("round {round}"))?;
            *phases.entry("finished before the kill").or_default() += 1;
        } else if status.signal() == Some(SIGKILL) {
            let packs_after = count_files(&repository.join("packs"))?;
            let phase = if !new.is_empty() {
                "killed after its snapshot was written"
            } else if packs_after > packs_before {
                "killed after writing a pack, before the snapshot"
            } else if count_files(&repository.join("tmp"))? > 0 {
                "killed while writing a pack or the snapshot"
            } else {
                "killed before writing anything"
            };
            *phases.entry(phase).or_default() += 1;
        } else {
            return Err(format!(
                "round {round}: the backup failed on its own ({status}): {}",
                fs::read_to_string(log.with_extension("stderr"))?
            )
            .into());
        }
        if let Some(id) = new.first() {
            captured.insert((*id).clone(), files.clone());
        }
        let check = workspace.run(&["check"])?;
        expect_exit(&check, 0, &format!("round {round}: check"))?;

        if round % 8 == 0 {
            // The first snapshot, one in the middle and the newest.
            let ids = workspace.snapshot_ids()?;
            let mut chosen = vec![first.clone()];
            chosen.extend(ids.get(ids.len() / 2).cloned());
            chosen.extend(ids.first().cloned());
            for id in chosen {
                verify_restore(&workspace, &captured, &id, &restores, &format!("round {round}"))?;
            }
        }
    }
    eprintln!("kills: {kills:?}");
    eprintln!("what the kills hit: {phases:?}");
    let killed: usize = phases.iter().filter(|(phase, _)| phase.starts_with("killed")).map(|(_, count)| count).sum();
    if killed < ROUNDS / 3 {
        return Err(format!(
            "only {killed} of {ROUNDS} backups were killed before they finished ({phases:?}): \
             make the data larger so that the kills land mid-way"
        )
        .into());
    }

    // A last backup after all that succeeds, leaves nothing in tmp/, and every snapshot
    // ever listed still restores exactly what it captured.
    files.put(&workspace.data, "last.txt", b"the last backup".to_vec())?;
    let last = workspace.backup()?;
    captured.insert(last.clone(), files.clone());
    expect_no_temporary_files(&repository, "after the last backup")?;
    let ids = workspace.snapshot_ids()?;
    for id in captured.keys() {
        if !ids.contains(id) {
            return Err(format!("snapshot {id} is no longer listed at the end").into());
        }
    }
    for id in &ids {
        verify_restore(&workspace, &captured, id, &restores, "at the end")?;
    }
    let check = workspace.run(&["check", "--read-data"])?;
    expect_exit(&check, 0, "check --read-data at the end")?;
    Ok(())
}

/// One byte flipped inside a chunk that only the second snapshot uses: `check
/// --read-data` names the pack and that snapshot; restoring it restores every other
/// file and fails naming the damaged one; the first snapshot restores untouched.
fn flipped_byte_is_found_and_contained(format: Format) -> TestResult {
    let base = tempfile::tempdir()?;
    let repository = base.path().join("repository");
    let workspace = Workspace::create(base.path(), &repository, format)?;
    let mut rng = Xorshift::new(0x5eed_0002);
    let mut files = Files::default();
    for name in ["a1.bin", "a2.bin", "a3.bin"] {
        files.put(&workspace.data, name, rng.bytes(700 << 10))?;
    }
    files.put(&workspace.data, "notes.txt", compressible(&mut rng, 5000))?;
    let first = workspace.backup()?;
    let first_files = files.clone();
    files.put(&workspace.data, "b/b1.bin", rng.bytes(900 << 10))?;
    files.put(&workspace.data, "b/b2.bin", rng.bytes(700 << 10))?;
    let second = workspace.backup()?;

    // Where the first chunk of b/b1.bin is stored, and a check that the first snapshot
    // needs nothing from that pack (a pack holds one backup's new blobs).
    let (pack, entry, chunk) = {
        let repo = workspace.open(Access::Read)?;
        let snapshot = repo.resolve(&second, None)?;
        let root = snapshot.manifest.element("data").ok_or("no element `data`")?.tree;
        let directory = repo.read_tree(&root)?;
        let b = directory.find(b"b").and_then(|node| node.subtree).ok_or("no directory b")?;
        let node = repo.read_tree(&b)?.find(b"b1.bin").cloned().ok_or("no b/b1.bin")?;
        let chunk = *node.content.first().ok_or("b/b1.bin has no chunks")?;
        let location = repo
            .catalog()
            .lock()
            .map_err(|_| "the catalog lock is poisoned")?
            .locate(&chunk)?
            .ok_or("the chunk of b/b1.bin is not indexed")?;
        let first_snapshot = repo.resolve(&first, None)?;
        for blob in snapshot_blobs(&repo, &first_snapshot.manifest)? {
            let located = repo
                .catalog()
                .lock()
                .map_err(|_| "the catalog lock is poisoned")?
                .locate(&blob)?
                .ok_or("a blob of the first snapshot is not indexed")?;
            if located.pack == location.pack {
                return Err("the first snapshot shares the damaged pack: the test's data is \
                            not laid out as intended"
                    .into());
            }
        }
        (location.pack, location.entry, chunk)
    };
    let pack_path = repository.join(&pack);
    fs::set_permissions(&pack_path, fs::Permissions::from_mode(0o644))?;
    let damaged_at = entry.offset + u64::from(entry.length) / 2;
    let packed = OpenOptions::new().read(true).write(true).open(&pack_path)?;
    let mut byte = [0u8];
    packed.read_exact_at(&mut byte, damaged_at)?;
    packed.write_all_at(&[byte[0] ^ 0x40], damaged_at)?;
    packed.sync_all()?;
    drop(packed);

    let check = workspace.run(&["check", "--read-data"])?;
    expect_exit(&check, 1, "check --read-data of a damaged repository")?;
    let report = String::from_utf8_lossy(&check.stdout);
    let damaged_line = format!("damaged pack {}", pack_path.display());
    if !report.contains(&damaged_line) {
        return Err(format!("check does not say `{damaged_line}`:\n{report}").into());
    }
    let users = report
        .lines()
        .find(|line| line.trim_start().starts_with("needed by snapshots:"))
        .ok_or_else(|| format!("check names no snapshot that needs the pack:\n{report}"))?;
    if !users.contains(&second[..12]) || users.contains(&first[..12]) {
        return Err(format!(
            "check should name snapshot {} (and not {}) as needing the pack: {users}",
            &second[..12],
            &first[..12]
        )
        .into());
    }

    let damaged_target = base.path().join("restore-damaged");
    let restore = workspace.restore(&second, &damaged_target)?;
    expect_exit(&restore, 1, "restoring the damaged snapshot")?;
    let stderr = String::from_utf8_lossy(&restore.stderr);
    if !stderr.contains("b1.bin") && !stderr.contains(&chunk.short(12)) {
        return Err(format!("restore names neither b1.bin nor chunk {chunk:?}: {stderr}").into());
    }
    let mut intact = files.clone();
    intact.0.remove(Path::new("b/b1.bin"));
    let mut restored = read_files(&damaged_target.join("data"))?;
    restored.remove(Path::new("b/b1.bin"));
    compare_files(&restored, &intact, "the intact files of the damaged snapshot")?;

    let clean_target = base.path().join("restore-clean");
    let restore = workspace.restore(&first, &clean_target)?;
    expect_exit(&restore, 0, "restoring the snapshot that does not need the damaged chunk")?;
    compare_files(&read_files(&clean_target.join("data"))?, &first_files, "the first snapshot")
}

/// Snapshots forged with the library, each trying to make a restore write outside its
/// target. Every restore must fail saying "refusing", and write nothing anywhere.
fn restore_refuses_hostile_snapshots(format: Format) -> TestResult {
    let base = tempfile::tempdir()?;
    let repository = base.path().join("repository");
    let workspace = Workspace::create(base.path(), &repository, format)?;
    let cases_dir = base.path().join("cases");
    let case_names = [
        "dot-dot-directory",
        "dot-dot-slash-name",
        "dot-dot-slash-victim",
        "absolute-name",
        "symlink-and-directory-of-one-name",
        "nul-in-name",
        "planted-symlink-in-target",
        "element-named-dot-dot",
        "element-with-absolute-name",
        "two-elements-of-one-name",
    ];
    // Every case gets a target (empty, or with a planted symlink) and an `outside`
    // directory holding one file the snapshot tries to overwrite.
    for case in case_names {
        let dir = cases_dir.join(case);
        fs::create_dir_all(dir.join("target"))?;
        fs::create_dir_all(dir.join("outside"))?;
        fs::write(dir.join("outside/victim.txt"), VICTIM)?;
    }
    let outside = |case: &str| cases_dir.join(case).join("outside");

    let mut snapshots: Vec<(&str, String)> = Vec::new();
    {
        let repo = workspace.open(Access::Write)?;
        let forger = Forger::new(&repo)?;
        let payload = forger.file(b"escape.txt", b"written outside the target")?;

        // `..` / `..` / outside / escape.txt: a directory named `..`, twice.
        let inner = forger.tree(vec![payload])?;
        let to_outside = forger.tree(vec![Forger::dir(b"outside", inner)])?;
        let up = forger.tree(vec![Forger::dir(b"..", to_outside)])?;
        let root = forger.tree(vec![Forger::dir(b"..", up)])?;
        snapshots.push(("dot-dot-directory", forger.publish(&[("data", root)])?));

        let root = forger.tree(vec![forger.file(b"../escape.txt", b"one level up")?])?;
        snapshots.push(("dot-dot-slash-name", forger.publish(&[("data", root)])?));

        let root = forger.tree(vec![forger.file(b"../../outside/victim.txt", b"overwritten")?])?;
        snapshots.push(("dot-dot-slash-victim", forger.publish(&[("data", root)])?));

        let absolute = outside("absolute-name").join("abs.txt");
        let root = forger.tree(vec![forger.file(absolute.as_os_str().as_bytes(), b"absolute")?])?;
        snapshots.push(("absolute-name", forger.publish(&[("data", root)])?));

        let case = "symlink-and-directory-of-one-name";
        let through = forger.tree(vec![forger.file(b"victim.txt", b"overwritten")?])?;
        let root = forger.tree(vec![
            Forger::symlink(b"link", outside(case).as_os_str().as_bytes()),
            Forger::dir(b"link", through),
        ])?;
        snapshots.push((case, forger.publish(&[("data", root)])?));

        let root = forger.tree(vec![forger.file(b"escape.txt\0../../x", b"nul")?])?;
        snapshots.push(("nul-in-name", forger.publish(&[("data", root)])?));

        // A legitimate snapshot; the hostility is the symlink planted in the target.
        let sub = forger.tree(vec![forger.file(b"victim.txt", b"overwritten")?])?;
        let root = forger.tree(vec![Forger::dir(b"sub", sub)])?;
        snapshots.push(("planted-symlink-in-target", forger.publish(&[("data", root)])?));

        // Element names become directories of the target too.
        let root = forger.tree(vec![forger.file(b"victim.txt", b"overwritten")?])?;
        snapshots.push(("element-named-dot-dot", forger.publish(&[("../outside", root)])?));
        let absolute = outside("element-with-absolute-name");
        let absolute = absolute.to_str().ok_or("temporary path is not UTF-8")?;
        snapshots.push(("element-with-absolute-name", forger.publish(&[(absolute, root)])?));

        // Each element alone is harmless; together, `sub` is a symlink to outside in
        // one and a directory holding victim.txt in the other.
        let case = "two-elements-of-one-name";
        let linked = forger.tree(vec![Forger::symlink(b"sub", outside(case).as_os_str().as_bytes())])?;
        let sub = forger.tree(vec![forger.file(b"victim.txt", b"overwritten")?])?;
        let with_dir = forger.tree(vec![Forger::dir(b"sub", sub)])?;
        snapshots.push((case, forger.publish(&[("data", linked), ("data", with_dir)])?));
    }

    let planted = cases_dir.join("planted-symlink-in-target/target/data");
    fs::create_dir_all(&planted)?;
    std::os::unix::fs::symlink(outside("planted-symlink-in-target"), planted.join("sub"))?;

    let mut problems = Vec::new();
    for (case, id) in &snapshots {
        let target = cases_dir.join(case).join("target");
        let target_before = list_tree(&target)?;
        let output = workspace.restore(id, &target)?;
        let stderr = String::from_utf8_lossy(&output.stderr);
        if output.status.code() != Some(1) || !stderr.contains("refusing") {
            problems.push(format!(
                "{case}: expected exit 1 and `refusing`, got {} with stderr: {}",
                output.status,
                stderr.trim()
            ));
        }
        let outside_after = list_tree(&outside(case))?;
        let victim = fs::read(outside(case).join("victim.txt"))?;
        if outside_after != BTreeSet::from([PathBuf::from("victim.txt")]) || victim != VICTIM {
            problems.push(format!(
                "{case}: the restore wrote outside its target: {outside_after:?}, victim.txt \
                 now holds {:?}",
                String::from_utf8_lossy(&victim)
            ));
        }
        let target_after = list_tree(&target)?;
        if target_after != target_before {
            problems.push(format!("{case}: the refused restore still wrote into its target: {target_after:?}"));
        }
    }
    let strays: Vec<PathBuf> = list_tree(base.path())?
        .into_iter()
        .filter(|path| path.file_name().is_some_and(|name| name == "escape.txt" || name == "abs.txt"))
        .collect();
    if !strays.is_empty() {
        problems.push(format!("files the snapshots planted: {strays:?}"));
    }
    if problems.is_empty() { Ok(()) } else { Err(problems.join("\n").into()) }
}

/// A backup that does not fit on the repository's file system fails saying so, leaves
/// the earlier snapshots intact and the store clean, and the next backup that fits works.
fn full_disk_during_backup(format: Format) -> TestResult {
    let base = tempfile::tempdir()?;
    let mount_point = base.path().join("small-disk");
    fs::create_dir(&mount_point)?;
    // Declared after `base`, so it is unmounted before the directory is removed.
    let _tmpfs = Tmpfs::mount(&mount_point, "8m")?;
    let repository = mount_point.join("repository");
    let workspace = Workspace::create(base.path(), &repository, format)?;
    let mut rng = Xorshift::new(0x5eed_0004);
    let mut files = Files::default();
    for index in 0..20 {
        let len = 1000 + rng.below(30_000) as usize;
        files.put(&workspace.data, &format!("small/{index}.bin"), rng.bytes(len))?;
    }
    let first = workspace.backup()?;
    let first_files = files.clone();

    for index in 0..3 {
        files.put(&workspace.data, &format!("big/{index}.bin"), rng.bytes(4 << 20))?;
    }
    let output = workspace.run(&["backup"])?;
    expect_exit(&output, 1, "a backup larger than the disk")?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !stderr.contains("no space left") {
        return Err(format!("the error does not say the disk is full: {stderr}").into());
    }
    let ids = workspace.snapshot_ids()?;
    if ids != [first.clone()] {
        return Err(format!("after the failed backup, list shows {ids:?}, not only {first}").into());
    }
    expect_no_temporary_files(&repository, "after the failed backup")?;
    expect_exit(&workspace.run(&["check"])?, 0, "check after the failed backup")?;
    let restores = base.path().join("restores");
    let captured = BTreeMap::from([(first.clone(), first_files)]);
    verify_restore(&workspace, &captured, &first, &restores, "after the failed backup")?;

    files.remove(&workspace.data, "big/0.bin")?;
    files.remove(&workspace.data, "big/1.bin")?;
    files.remove(&workspace.data, "big/2.bin")?;
    files.put(&workspace.data, "small/0.bin", b"changed after the disk filled".to_vec())?;
    let second = workspace.backup()?;
    let captured = BTreeMap::from([(second.clone(), files.clone())]);
    let check = workspace.run(&["check", "--read-data"])?;
    expect_exit(&check, 0, "check --read-data after space was freed")?;
    verify_restore(&workspace, &captured, &second, &restores, "after space was freed")?;
    expect_no_temporary_files(&repository, "after the backup that fitted")?;

    // The disk fills up at every step of a backup in turn: the space left for it grows
    // 4 KiB a time from just its new data, so that first the pack fits, then the
    // catalog's update, then the snapshot. Whatever step fails, the exit status and the
    // listing must agree: a backup that fails leaves no snapshot, one that succeeds lists
    // its own. Each step has a fresh repository, so that the steps differ only by space.
    const PAYLOAD: usize = 64 << 10;
    let filler = mount_point.join("filler");
    let mut outcomes = Vec::new();
    let mut problems = Vec::new();
    fs::remove_dir_all(&repository)?; // done with: its space is the steps'
    for step in 0..32 {
        let margin = step * 4096;
        let edge = workspace.with_repository(&mount_point.join("edge"))?;
        edge.backup()?;
        files.put(&workspace.data, "edge.bin", rng.bytes(PAYLOAD))?;
        let free = available_bytes(&mount_point)?;
        fs::write(&filler, vec![0u8; free.saturating_sub(PAYLOAD + margin)])?;
        let before = edge.snapshot_ids()?;
        let output = edge.run(&["backup"])?;
        fs::remove_file(&filler)?;
        let after = edge.snapshot_ids()?;
        let new: Vec<&String> = after.iter().filter(|id| !before.contains(id)).collect();
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        let first_line = stderr.lines().next().unwrap_or_default().to_owned();
        match output.status.code() {
            Some(0) if new.len() == 1 && new[0] == stdout.trim() => outcomes.push("ok"),
            Some(1) if new.is_empty() => {
                outcomes.push("full");
                if !stderr.contains("no space left") {
                    problems
                        .push(format!("{margin} bytes spare: the error does not say `no space left`: {first_line}"));
                }
            }
            _ => {
                outcomes.push("inconsistent");
                problems.push(format!(
                    "{margin} bytes spare: backup exited {} but the new snapshots are {new:?}: \
                     {first_line}",
                    output.status
                ));
            }
        }
        let check = edge.run(&["check"])?;
        if let Err(error) = expect_exit(&check, 0, &format!("check, {margin} bytes spare")) {
            problems.push(error.to_string());
        }
        let retry = edge.run(&["backup"])?;
        let what = format!("backup once {margin} bytes were freed");
        if let Err(error) = expect_exit(&retry, 0, &what) {
            problems.push(error.to_string());
        }
        files.remove(&workspace.data, "edge.bin")?;
        fs::remove_dir_all(&edge.repository)?;
    }
    eprintln!("backups with 0, 4, 8... KiB spare: {outcomes:?}");
    if !outcomes.contains(&"ok") || !outcomes.contains(&"full") {
        problems.push(format!("the free space never crossed what a backup needs: {outcomes:?}"));
    }
    if problems.is_empty() { Ok(()) } else { Err(problems.join("\n").into()) }
}

/// A backup waits, saying so, while another holder has the repository lock, and goes on
/// when it is released; a lock held by a process killed with SIGKILL blocks nobody.
fn second_writer_waits_for_the_first(format: Format) -> TestResult {
    let base = tempfile::tempdir()?;
    let repository = base.path().join("repository");
    let workspace = Workspace::create(base.path(), &repository, format)?;
    let mut rng = Xorshift::new(0x5eed_0005);
    let mut files = Files::default();
    for index in 0..50 {
        files.put(&workspace.data, &format!("f{index}.bin"), rng.bytes(2000))?;
    }
    files.put(&workspace.data, "big.bin", big_file(&mut rng))?;
    workspace.backup()?;

    let held = RepositoryLock::acquire(&repository, LockKind::Exclusive, &mut |_| {})?;
    files.put(&workspace.data, "f0.bin", b"changed while the lock was held".to_vec())?;
    let log = base.path().join("waiting-backup");
    let mut child = workspace.spawn_backup(&log)?;
    sleep(Duration::from_secs(1));
    if let Some(status) = child.try_wait()? {
        return Err(format!(
            "the backup ended ({status}) while the test held the lock: {}",
            fs::read_to_string(log.with_extension("stderr"))?
        )
        .into());
    }
    let stderr = fs::read_to_string(log.with_extension("stderr"))?;
    let holder = format!("process {}", std::process::id());
    if !stderr.contains("waiting for the repository lock") || !stderr.contains(&holder) {
        return Err(format!("the waiting backup does not say it waits for {holder}: {stderr}").into());
    }
    drop(held);
    let status = wait_with_timeout(&mut child, Duration::from_secs(30))?;
    if !status.success() {
        return Err(format!(
            "the backup failed after the lock was released ({status}): {}",
            fs::read_to_string(log.with_extension("stderr"))?
        )
        .into());
    }
    let printed = fs::read_to_string(log.with_extension("stdout"))?;
    if !workspace.snapshot_ids()?.contains(&printed.trim().to_owned()) {
        return Err(format!("the snapshot `{}` it printed is not listed", printed.trim()).into());
    }

    // Kill a backup while it holds the lock: its note in the lock file says it does.
    files.put(&workspace.data, "big.bin", big_file(&mut rng))?;
    let log = base.path().join("killed-backup");
    let mut child = workspace.spawn_backup(&log)?;
    let note = format!("process {} ", child.id());
    let deadline = Instant::now() + Duration::from_secs(20);
    while !fs::read_to_string(repository.join("lock"))?.starts_with(&note) {
        if Instant::now() > deadline {
            child.kill()?;
            child.wait()?;
            return Err("the backup never took the lock".into());
        }
        sleep(Duration::from_millis(1));
    }
    child.kill()?;
    let status = child.wait()?;
    if status.signal() != Some(SIGKILL) {
        return Err(format!("the backup ended ({status}) before it could be killed").into());
    }
    let started = Instant::now();
    let output = workspace.run(&["backup"])?;
    let elapsed = started.elapsed();
    expect_exit(&output, 0, "a backup after the lock holder was killed")?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    if stderr.contains("waiting") || elapsed > Duration::from_secs(10) {
        return Err(format!("the backup after a killed holder took {elapsed:?} and said: {stderr}").into());
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// A work tree, its repository and the binary
// ---------------------------------------------------------------------------------------

/// A git work tree whose envsnap.toml has one mount, `data` (`<work tree>/data`), and
/// an initialised repository.
struct Workspace {
    work_tree: PathBuf,
    data: PathBuf,
    repository: PathBuf,
    format: Format,
}

impl Workspace {
    fn create(base: &Path, repository: &Path, format: Format) -> TestResult<Self> {
        let work_tree = base.join("work");
        let data = work_tree.join("data");
        fs::create_dir_all(&data)?;
        git(&work_tree, &["init", "-q", "-b", "main"])?;
        git(&work_tree, &["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "--allow-empty", "-m", "init"])?;
        fs::write(
            work_tree.join("envsnap.toml"),
            "production = \"main\"\n\n[[mount]]\nname = \"data\"\npath = \"data\"\n",
        )?;
        let workspace = Workspace { work_tree, data, repository: repository.to_owned(), format };
        workspace.init()?;
        Ok(workspace)
    }

    /// Creates the repository, encrypted or not as the workspace's format says:
    /// unencrypted with the binary, encrypted through the library with a quick key
    /// derivation (`init --encrypt` itself is tested in tests/encryption.rs).
    fn init(&self) -> TestResult {
        match self.format {
            Format::Plain => expect_exit(&self.run(&["init"])?, 0, "envsnap init"),
            Format::Encrypted => Ok(self.format.init(&self.repository).map(|_| ())?),
        }
    }

    /// The repository opened through the library, unlocked with the password when
    /// encrypted.
    fn open(&self, access: Access) -> TestResult<Repository> {
        let backend = Box::new(envsnap::store::backend::LocalBackend::new(&self.repository));
        Ok(Format::open(&self.repository, backend, access)?)
    }

    /// The binary, run in the work tree against the repository.
    fn command(&self) -> Command {
        let mut command = Command::new(BINARY);
        command
            .current_dir(&self.work_tree)
            .env("ENVSNAP_REPOSITORY", &self.repository)
            .env_remove("GIT_DIR")
            .env_remove("GIT_WORK_TREE");
        for source in ["ENVSNAP_PASSWORD", "ENVSNAP_PASSWORD_FILE", "ENVSNAP_PASSWORD_COMMAND"] {
            command.env_remove(source);
        }
        if let Some(password) = self.format.password() {
            command.env("ENVSNAP_PASSWORD", password);
        }
        command
    }

    /// The same work tree with another repository, initialised.
    fn with_repository(&self, repository: &Path) -> TestResult<Self> {
        let other = Workspace {
            work_tree: self.work_tree.clone(),
            data: self.data.clone(),
            repository: repository.to_owned(),
            format: self.format,
        };
        other.init()?;
        Ok(other)
    }

    fn run<S: AsRef<OsStr>>(&self, args: &[S]) -> TestResult<Output> {
        Ok(assert_cmd::Command::from_std(self.command()).args(args).output()?)
    }

    /// Takes a snapshot; returns its full id.
    fn backup(&self) -> TestResult<String> {
        let output = self.run(&["backup"])?;
        expect_exit(&output, 0, "envsnap backup")?;
        let id = String::from_utf8(output.stdout)?.trim().to_owned();
        if id.len() != 64 || !id.bytes().all(|byte| byte.is_ascii_hexdigit()) {
            return Err(format!("backup printed `{id}`, not a snapshot id").into());
        }
        Ok(id)
    }

    /// Starts a backup whose stdout and stderr go to `<log>.stdout` and `<log>.stderr`.
    fn spawn_backup(&self, log: &Path) -> TestResult<Child> {
        Ok(self
            .command()
            .arg("backup")
            .stdin(Stdio::null())
            .stdout(File::create(log.with_extension("stdout"))?)
            .stderr(File::create(log.with_extension("stderr"))?)
            .spawn()?)
    }

    /// The ids of the complete snapshots `list --json` shows (a killed or failed
    /// backup is listed too, as a `failed` job).
    fn snapshot_ids(&self) -> TestResult<Vec<String>> {
        let output = self.run(&["list", "--json"])?;
        expect_exit(&output, 0, "envsnap list --json")?;
        let listed: serde_json::Value = serde_json::from_slice(&output.stdout)?;
        listed
            .as_array()
            .ok_or("list --json did not print an array")?
            .iter()
            .filter(|entry| entry["state"] == "complete")
            .map(|snapshot| {
                snapshot["id"]
                    .as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| format!("a listed snapshot has no id: {snapshot}").into())
            })
            .collect()
    }

    fn restore(&self, id: &str, to: &Path) -> TestResult<Output> {
        self.run(&[OsStr::new("restore"), OsStr::new(id), OsStr::new("--to"), to.as_os_str()])
    }
}

fn git(dir: &Path, args: &[&str]) -> TestResult {
    let output = Command::new("git").current_dir(dir).args(args).output()?;
    if !output.status.success() {
        return Err(format!("git {}: {}", args.join(" "), String::from_utf8_lossy(&output.stderr)).into());
    }
    Ok(())
}

fn expect_exit(output: &Output, code: i32, what: &str) -> TestResult {
    if output.status.code() == Some(code) {
        return Ok(());
    }
    Err(format!(
        "{what}: expected exit {code}, got {}\nstdout: {}\nstderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stdout).trim(),
        String::from_utf8_lossy(&output.stderr).trim()
    )
    .into())
}

fn wait_with_timeout(child: &mut Child, timeout: Duration) -> TestResult<std::process::ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(status);
        }
        if Instant::now() > deadline {
            child.kill()?;
            child.wait()?;
            return Err(format!("the child did not end within {timeout:?}").into());
        }
        sleep(Duration::from_millis(10));
    }
}

/// Restores `id` into a fresh directory and compares it with what it captured.
fn verify_restore(
    workspace: &Workspace,
    captured: &BTreeMap<String, Files>,
    id: &str,
    restores: &Path,
    when: &str,
) -> TestResult {
    let expected = captured.get(id).ok_or_else(|| format!("{when}: snapshot {id} is listed but no backup took it"))?;
    let target = restores.join(&id[..12]);
    let output = workspace.restore(id, &target)?;
    expect_exit(&output, 0, &format!("{when}: restoring {}", &id[..12]))?;
    compare_files(&read_files(&target.join("data"))?, expected, &format!("{when}: snapshot {}", &id[..12]))?;
    fs::remove_dir_all(&target)?;
    Ok(())
}

fn expect_no_temporary_files(repository: &Path, when: &str) -> TestResult {
    match count_files(&repository.join("tmp"))? {
        0 => Ok(()),
        count => Err(format!("{when}: {count} leftover file(s) in the repository's tmp/").into()),
    }
}

// ---------------------------------------------------------------------------------------
// Test data
// ---------------------------------------------------------------------------------------

/// What the mount holds, path → content, as the test wrote it. The contents are shared
/// between the copies kept per snapshot, so a copy costs only its map.
#[derive(Debug, Clone, Default)]
struct Files(BTreeMap<PathBuf, Arc<Vec<u8>>>);

impl Files {
    /// Writes a file under `root` and records it.
    fn put(&mut self, root: &Path, relative: &str, content: Vec<u8>) -> TestResult {
        let path = root.join(relative);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent)?;
        }
        fs::write(&path, &content)?;
        self.0.insert(PathBuf::from(relative), Arc::new(content));
        Ok(())
    }

    fn remove(&mut self, root: &Path, relative: &str) -> TestResult {
        fs::remove_file(root.join(relative))?;
        self.0.remove(Path::new(relative));
        Ok(())
    }
}

/// When a round's backup is killed.
#[derive(Debug, Clone, Copy)]
enum Kill {
    /// It runs to its end.
    Never,
    /// This many milliseconds after it started.
    After(u64),
    /// This many milliseconds after it starts writing its pack (a file appears in tmp/).
    AfterPackStarts(u64),
    /// This many milliseconds after its pack is stored (renamed into packs/).
    AfterPackStored(u64),
}

/// One round's change: two large files rewritten, some small ones changed, added and
/// removed, so every backup has megabytes of new data to store.
fn change_for_round(files: &mut Files, root: &Path, rng: &mut Xorshift, round: usize) -> TestResult {
    for _ in 0..2 {
        let index = rng.below(4);
        files.put(root, &format!("big{index}.bin"), big_file(rng))?;
    }
    let small: Vec<PathBuf> =
        files.0.keys().filter(|path| path.extension().is_some_and(|ext| ext == "txt")).cloned().collect();
    for _ in 0..10 {
        let path = &small[rng.below(small.len() as u64) as usize];
        let len = rng.below(6000) as usize;
        files.put(root, path.to_str().ok_or("path is not UTF-8")?, rng.bytes(len))?;
    }
    for index in 0..3 {
        let len = rng.below(3000) as usize;
        files.put(root, &format!("r{round}/new{index}.txt"), compressible(rng, len))?;
    }
    let removed = &small[rng.below(small.len() as u64) as usize];
    if files.0.contains_key(removed) {
        files.remove(root, removed.to_str().ok_or("path is not UTF-8")?)?;
    }
    Ok(())
}

/// 1.5 to 3 MiB: random bytes with a run of zeros in the middle (a hole on restore).
fn big_file(rng: &mut Xorshift) -> Vec<u8> {
    let len = (3 << 19) + rng.below(3 << 19) as usize;
    let mut content = rng.bytes(len);
    let zeros = len / 3..len / 3 + (300 << 10);
    content[zeros].fill(0);
    content
}

/// Text that compresses well, so that both stored forms of a blob are exercised.
fn compressible(rng: &mut Xorshift, len: usize) -> Vec<u8> {
    let words = ["alpha ", "beta ", "gamma ", "delta\n", "epsilon "];
    let mut text = Vec::with_capacity(len + 8);
    while text.len() < len {
        text.extend_from_slice(words[rng.below(words.len() as u64) as usize].as_bytes());
    }
    text.truncate(len);
    text
}

/// xorshift64: reproducible data and delays without a random-number crate.
struct Xorshift(u64);

impl Xorshift {
    fn new(seed: u64) -> Self {
        Xorshift(seed.max(1))
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// A number in `0..bound`.
    fn below(&mut self, bound: u64) -> u64 {
        self.next() % bound
    }

    fn bytes(&mut self, len: usize) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(len + 8);
        while bytes.len() < len {
            bytes.extend_from_slice(&self.next().to_le_bytes());
        }
        bytes.truncate(len);
        bytes
    }
}

/// Every regular file under `root`, by relative path; anything else is an error.
fn read_files(root: &Path) -> TestResult<BTreeMap<PathBuf, Vec<u8>>> {
    let mut found = BTreeMap::new();
    let mut pending = vec![root.to_owned()];
    while let Some(dir) = pending.pop() {
        for entry in fs::read_dir(&dir)? {
            let entry = entry?;
            let kind = entry.file_type()?;
            let path = entry.path();
            if kind.is_dir() {
                pending.push(path);
            } else if kind.is_file() {
                found.insert(path.strip_prefix(root)?.to_owned(), fs::read(&path)?);
            } else {
                return Err(format!("{} is neither a file nor a directory", path.display()).into());
            }
        }
    }
    Ok(found)
}

/// What a backup of the mount at `root` captures: its files, without what a killed
/// restore left staged.
fn read_live(root: &Path) -> TestResult<BTreeMap<PathBuf, Vec<u8>>> {
    let mut files = read_files(root)?;
    files.retain(|path, _| !path.to_string_lossy().starts_with(".envsnap-restore-"));
    Ok(files)
}

fn compare_files(restored: &BTreeMap<PathBuf, Vec<u8>>, expected: &Files, what: &str) -> TestResult {
    let mut problems = Vec::new();
    for (path, content) in &expected.0 {
        match restored.get(path) {
            None => problems.push(format!("{} is missing", path.display())),
            Some(found) if found != content.as_ref() => problems.push(format!(
                "{} differs ({} bytes restored, {} expected)",
                path.display(),
                found.len(),
                content.len()
            )),
            Some(_) => {}
        }
    }
    for path in restored.keys().filter(|path| !expected.0.contains_key(*path)) {
        problems.push(format!("{} should not be there", path.display()));
    }
    if problems.is_empty() {
        return Ok(());
    }
    problems.truncate(10);
    Err(format!("{what} does not restore byte for byte: {}", problems.join("; ")).into())
}

/// Every path under `root` (relative, symlinks not followed); empty if it does not exist.
fn list_tree(root: &Path) -> TestResult<BTreeSet<PathBuf>> {
    let mut found = BTreeSet::new();
    let mut pending = vec![root.to_owned()];
    while let Some(dir) = pending.pop() {
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => continue,
            Err(error) => return Err(error.into()),
        };
        for entry in entries {
            let entry = entry?;
            if entry.file_type()?.is_dir() {
                pending.push(entry.path());
            }
            found.insert(entry.path().strip_prefix(root)?.to_owned());
        }
    }
    Ok(found)
}

/// Files (not directories) under `dir`, recursively; 0 if it does not exist. A file
/// that goes between the listing and the look at it (a pack the backup still running
/// renames from `tmp/` into `packs/`) is not counted: it is counted where it went.
fn count_files(dir: &Path) -> TestResult<usize> {
    let mut count = 0;
    for path in list_tree(dir)? {
        match fs::symlink_metadata(dir.join(path)) {
            Ok(metadata) if metadata.is_file() => count += 1,
            Ok(_) => {}
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => return Err(error.into()),
        }
    }
    Ok(count)
}

// ---------------------------------------------------------------------------------------
// Forged snapshots and the store
// ---------------------------------------------------------------------------------------

const VICTIM: &[u8] = b"a file outside the restore target that must stay as it is";

/// Writes trees and blobs the way no backup would, and publishes them as snapshots.
struct Forger<'a> {
    repository: &'a Repository,
    writer: BlobWriter<'a>,
}

impl<'a> Forger<'a> {
    fn new(repository: &'a Repository) -> TestResult<Self> {
        Ok(Forger {
            repository,
            writer: BlobWriter::new(repository.backend(), repository.catalog(), repository.crypto())?,
        })
    }

    fn node(name: &[u8], kind: NodeKind) -> Node {
        Node {
            name: name.to_vec(),
            kind,
            mode: if kind == NodeKind::File { 0o644 } else { 0o755 },
            uid: 0,
            gid: 0,
            mtime: 1_700_000_000,
            mtime_nsec: 0,
            ctime: 1_700_000_000,
            ctime_nsec: 0,
            inode: 0,
            links: 1,
            size: 0,
            content: Vec::new(),
            subtree: None,
            target: None,
        }
    }

    /// A file node holding `content`, which is stored.
    fn file(&self, name: &[u8], content: &[u8]) -> TestResult<Node> {
        let mut node = Self::node(name, NodeKind::File);
        node.content = vec![self.writer.add(BlobKind::Data, content)?];
        node.size = content.len() as u64;
        Ok(node)
    }

    fn dir(name: &[u8], subtree: ObjectId) -> Node {
        let mut node = Self::node(name, NodeKind::Dir);
        node.subtree = Some(subtree);
        node
    }

    fn symlink(name: &[u8], target: &[u8]) -> Node {
        let mut node = Self::node(name, NodeKind::Symlink);
        node.target = Some(target.to_vec());
        node
    }

    /// Stores a tree of `nodes`, in the order given.
    fn tree(&self, nodes: Vec<Node>) -> TestResult<ObjectId> {
        Ok(self.writer.add(BlobKind::Tree, &Tree { nodes }.encode())?)
    }

    /// Publishes a snapshot of mount elements `(name, root tree)`; returns its id.
    fn publish(&self, elements: &[(&str, ObjectId)]) -> TestResult<String> {
        // Blobs must be stored before a snapshot refers to them.
        self.writer.flush()?;
        let manifest = Manifest {
            format: MANIFEST_FORMAT,
            env: "main".to_owned(),
            commit: None,
            created: chrono::Utc::now(),
            trigger: Trigger::Manual,
            mode: Mode::Live,
            note: Some("forged by tests/safety.rs".to_owned()),
            expires: None,
            host: "test".to_owned(),
            user: "test".to_owned(),
            parent: None,
            stored: 0,
            paused_ms: None,
            duration_ms: None,
            partial: false,
            elements: elements
                .iter()
                .map(|(name, tree)| Element {
                    name: (*name).to_owned(),
                    kind: ElementKind::Mount,
                    source: "forged".to_owned(),
                    tree: *tree,
                    size: 0,
                    files: 1,
                    dirs: 1,
                })
                .collect(),
        };
        Ok(self.repository.publish(&manifest)?.id.to_hex())
    }
}

/// Every blob (trees and chunks) a snapshot needs.
fn snapshot_blobs(repository: &Repository, manifest: &Manifest) -> TestResult<BTreeSet<ObjectId>> {
    let mut blobs = BTreeSet::new();
    let mut pending: Vec<ObjectId> = manifest.elements.iter().map(|element| element.tree).collect();
    while let Some(tree_id) = pending.pop() {
        if !blobs.insert(tree_id) {
            continue;
        }
        for node in repository.read_tree(&tree_id)?.nodes {
            blobs.extend(node.content);
            pending.extend(node.subtree);
        }
    }
    Ok(blobs)
}

/// A tmpfs mounted for one test; unmounted when dropped, lazily if still busy.
struct Tmpfs {
    path: PathBuf,
}

impl Tmpfs {
    fn mount(path: &Path, size: &str) -> TestResult<Self> {
        let output = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(path)
            .output()
            .map_err(|error| format!("cannot run mount(8): {error}; this test needs it, as root"))?;
        if !output.status.success() {
            return Err(format!(
                "mounting a {size} tmpfs at {} failed (this test needs root on Linux): {}",
                path.display(),
                String::from_utf8_lossy(&output.stderr).trim()
            )
            .into());
        }
        Ok(Tmpfs { path: path.to_owned() })
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let unmounted = Command::new("umount").arg(&self.path).status().is_ok_and(|status| status.success());
        if !unmounted {
            // Still busy (a child of a failed test): detach it so the directory can go.
            let _ = Command::new("umount").arg("-l").arg(&self.path).status();
        }
    }
}

/// Bytes an unprivileged writer may still use on the file system holding `path`.
fn available_bytes(path: &Path) -> TestResult<usize> {
    let output = Command::new("df").args(["-B1", "--output=avail"]).arg(path).output()?;
    let text = String::from_utf8(output.stdout)?;
    let value = text.lines().nth(1).ok_or("df printed no value")?;
    Ok(value.trim().parse()?)
}

/// Live files equal to a snapshot whose pack is damaged: restoring it in place must
/// refuse before touching anything (no file replaced, none removed, no safety snapshot
/// onto the damaged chunks), and must not send the user to `undo`.
fn a_damaged_snapshot_never_replaces_intact_live_files(format: Format) -> TestResult {
    let base = tempfile::tempdir()?;
    let repository = base.path().join("repository");
    let workspace = Workspace::create(base.path(), &repository, format)?;
    let mut rng = Xorshift::new(0x5eed_0012);
    let mut files = Files::default();
    files.put(&workspace.data, "a.bin", rng.bytes(700 << 10))?;
    files.put(&workspace.data, "notes.txt", compressible(&mut rng, 5000))?;
    let first = workspace.backup()?;
    let snapshots_before = workspace.snapshot_ids()?.len();

    let pack = {
        let repo = workspace.open(Access::Read)?;
        let snapshot = repo.resolve(&first, None)?;
        let root = snapshot.manifest.element("data").ok_or("no element `data`")?.tree;
        let node = repo.read_tree(&root)?.find(b"a.bin").cloned().ok_or("no a.bin")?;
        let chunk = *node.content.first().ok_or("a.bin has no chunks")?;
        let location = repo
            .catalog()
            .lock()
            .map_err(|_| "the catalog lock is poisoned")?
            .locate(&chunk)?
            .ok_or("the chunk of a.bin is not indexed")?;
        (location.pack, location.entry)
    };
    let pack_path = repository.join(&pack.0);
    let damaged_at = pack.1.offset + u64::from(pack.1.length) / 2;
    let packed = OpenOptions::new().read(true).write(true).open(&pack_path)?;
    let mut byte = [0u8];
    packed.read_exact_at(&mut byte, damaged_at)?;
    packed.write_all_at(&[byte[0] ^ 0x40], damaged_at)?;
    drop(packed);
    // Something the restore in place would remove, were it to go ahead.
    files.put(&workspace.data, "extra.txt", b"written after the snapshot".to_vec())?;

    let output = workspace.run(&["restore", &first[..12], "--yes"])?;
    expect_exit(&output, 1, "restoring a damaged snapshot in place")?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("nothing was changed") && stderr.contains("a.bin"), "{stderr}");
    assert!(!stderr.contains("envsnap undo"), "a refused restore must not offer undo: {stderr}");
    compare_files(&read_files(&workspace.data)?, &files, "the live files after the refused restore")?;
    assert_eq!(workspace.snapshot_ids()?.len(), snapshots_before, "no safety snapshot was kept");
    Ok(())
}

/// A file whose recorded size disagrees with its chunks is named, never silently cut
/// short or zero-padded: refused in place with nothing changed, reported with `--to`.
fn a_size_that_disagrees_with_the_chunks_is_named(format: Format) -> TestResult {
    let base = tempfile::tempdir()?;
    let repository = base.path().join("repository");
    let workspace = Workspace::create(base.path(), &repository, format)?;
    let id = {
        let repo = workspace.open(Access::Write)?;
        let forger = Forger::new(&repo)?;
        let mut long = forger.file(b"long.txt", b"twelve bytes")?;
        long.size = 4096;
        let mut short = forger.file(b"short.txt", b"twelve bytes")?;
        short.size = 5;
        let fine = forger.file(b"fine.txt", b"as recorded")?;
        let root = forger.tree(vec![fine, long, short])?;
        forger.publish(&[("data", root)])?
    };
    let target = base.path().join("to");
    let output = workspace.restore(&id, &target)?;
    expect_exit(&output, 1, "restoring files whose sizes disagree with their chunks")?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("2 file(s) could not be restored") && stderr.contains("the snapshot records"), "{stderr}");
    assert_eq!(fs::read(target.join("data/fine.txt"))?, b"as recorded");

    fs::write(workspace.data.join("long.txt"), b"live data")?;
    let output = workspace.run(&["restore", &id[..12], "--yes"])?;
    expect_exit(&output, 1, "restoring them in place")?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("nothing was changed") && stderr.contains("long.txt"), "{stderr}");
    assert_eq!(fs::read(workspace.data.join("long.txt"))?, b"live data", "the live file is untouched");
    Ok(())
}

/// Another user swaps a directory of a `restore --to` target for a symlink to a
/// directory of theirs while the restore runs, again and again. The restore may fail,
/// but it never writes into that directory nor changes its mode.
fn a_directory_swapped_for_a_symlink_during_restore_leads_nowhere(format: Format) -> TestResult {
    let base = tempfile::tempdir()?;
    let repository = base.path().join("repository");
    let workspace = Workspace::create(base.path(), &repository, format)?;
    let mut files = Files::default();
    for index in 0..1500 {
        files.put(&workspace.data, &format!("dir/file-{index:04}.txt"), format!("file {index}\n").into_bytes())?;
    }
    fs::set_permissions(workspace.data.join("dir"), fs::Permissions::from_mode(0o777))?;
    let id = workspace.backup()?;
    let outside = base.path().join("outside");
    fs::create_dir(&outside)?;
    fs::set_permissions(&outside, fs::Permissions::from_mode(0o700))?;

    let mut escapes = Vec::new();
    for round in 0..8 {
        let target = base.path().join(format!("target-{round}"));
        let mut child = workspace
            .command()
            .args([OsStr::new("restore"), OsStr::new(&id), OsStr::new("--to"), target.as_os_str()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        // The attacker: whenever `dir` is a real directory, move it aside and put a
        // symlink to `outside` in its place.
        let dir = target.join("data/dir");
        let mut swaps = 0;
        while child.try_wait()?.is_none() {
            if fs::symlink_metadata(&dir).is_ok_and(|metadata| metadata.is_dir())
                && fs::rename(&dir, target.join(format!("data/moved-{swaps}"))).is_ok()
            {
                let _ = std::os::unix::fs::symlink(&outside, &dir);
                swaps += 1;
            }
        }
        let written = fs::read_dir(&outside)?.count();
        let mode = fs::metadata(&outside)?.permissions().mode() & 0o7777;
        if written != 0 || mode != 0o700 {
            escapes.push(format!("round {round} ({swaps} swaps): {written} file(s) written outside, mode {mode:o}"));
            for entry in fs::read_dir(&outside)? {
                fs::remove_file(entry?.path())?;
            }
            fs::set_permissions(&outside, fs::Permissions::from_mode(0o700))?;
        }
    }
    assert!(escapes.is_empty(), "the restore followed a swapped-in symlink: {escapes:?}");
    Ok(())
}

/// A restore in place killed at any moment leaves every file either as it was or as
/// the snapshot holds it: never cut short, never missing. The next restore finishes
/// the job, staging leftovers included.
fn a_killed_restore_leaves_every_file_old_or_new(format: Format) -> TestResult {
    let base = tempfile::tempdir()?;
    let repository = base.path().join("repository");
    let workspace = Workspace::create(base.path(), &repository, format)?;
    let mut rng = Xorshift::new(0x5eed_0017);
    let names: Vec<String> = (0..12).map(|index| format!("sub{}/file-{index}.bin", index % 3)).collect();
    let mut new = Files::default();
    for name in &names {
        new.put(&workspace.data, name, rng.bytes(2 << 20))?;
    }
    let id = workspace.backup()?;
    let mut old = Files::default();
    let write_old = |old: &mut Files, rng: &mut Xorshift| -> TestResult {
        for name in &names {
            old.put(&workspace.data, name, rng.bytes(2 << 20))?;
        }
        Ok(())
    };
    write_old(&mut old, &mut rng)?;

    expect_exit(&workspace.run(&["restore", &id, "--yes"])?, 0, "restoring in place")?;
    compare_files(&read_files(&workspace.data)?, &new, "the restored mount")?;

    // Each round kills the restore once it has changed `round + 1` files (or gone):
    // the moments when a restore that rewrote files in place would leave them half.
    let inodes = |data: &Path| -> Vec<Option<u64>> {
        names.iter().map(|name| fs::symlink_metadata(data.join(name)).ok().map(|m| m.ino())).collect()
    };
    let mut problems = Vec::new();
    for round in 0..8usize {
        old.0.clear();
        write_old(&mut old, &mut rng)?;
        let before = inodes(&workspace.data);
        let mut child = workspace
            .command()
            .args(["restore", &id, "--yes"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        while child.try_wait()?.is_none() {
            let now = inodes(&workspace.data);
            if now.iter().zip(&before).filter(|(now, before)| now != before).count() > round % 4 {
                break;
            }
        }
        let _ = child.kill();
        child.wait()?;
        let found = read_files(&workspace.data)?;
        for name in &names {
            let path = PathBuf::from(name);
            let now = found.get(&path).map(Vec::as_slice);
            if now != old.0.get(&path).map(|c| c.as_slice()) && now != new.0.get(&path).map(|c| c.as_slice()) {
                let what = now.map_or("missing".to_owned(), |bytes| format!("{} bytes of neither", bytes.len()));
                problems.push(format!("round {round}: {name} is {what}"));
            }
        }
    }
    assert!(problems.is_empty(), "a killed restore left files half done: {problems:?}");

    expect_exit(&workspace.run(&["restore", &id, "--yes"])?, 0, "restoring in place after the kills")?;
    compare_files(&read_files(&workspace.data)?, &new, "the mount restored after the kills")?;
    Ok(())
}

/// Trees that repeat their subtrees name 2^40 paths in a few kilobytes, and a chain of
/// 600 directories is deeper than any file system: both are refused at once, naming
/// the bound, before anything is written.
fn trees_that_name_too_much_are_refused_at_once(format: Format) -> TestResult {
    let base = tempfile::tempdir()?;
    let repository = base.path().join("repository");
    let workspace = Workspace::create(base.path(), &repository, format)?;
    let (wide, deep) = {
        let repo = workspace.open(Access::Write)?;
        let forger = Forger::new(&repo)?;
        let mut tree = forger.tree(vec![forger.file(b"leaf.txt", b"one leaf")?])?;
        for _ in 0..40 {
            tree = forger.tree(vec![Forger::dir(b"a", tree), Forger::dir(b"b", tree)])?;
        }
        let wide = forger.publish(&[("data", tree)])?;
        let mut tree = forger.tree(vec![forger.file(b"leaf.txt", b"one leaf")?])?;
        for _ in 0..600 {
            tree = forger.tree(vec![Forger::dir(b"d", tree)])?;
        }
        (wide, forger.publish(&[("data", tree)])?)
    };
    for (id, bound) in [(&wide, "entries"), (&deep, "directories deep")] {
        let target = base.path().join(format!("target-{}", &id[..8]));
        let started = Instant::now();
        let output = workspace.restore(id, &target)?;
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{stderr}");
        assert!(stderr.contains(bound), "the error should name the bound ({bound}): {stderr}");
        assert!(started.elapsed() < Duration::from_secs(20), "refusing took {:?}", started.elapsed());
        assert!(list_tree(&target)?.is_empty(), "a refused restore wrote {:?}", list_tree(&target)?);

        let archive = base.path().join(format!("{}.tar", &id[..8]));
        let output = workspace.run(&[
            OsStr::new("export"),
            OsStr::new(id),
            OsStr::new("--element"),
            OsStr::new("data"),
            OsStr::new("--to"),
            archive.as_os_str(),
        ])?;
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.code() == Some(1) && stderr.contains(bound), "export: {stderr}");
        assert!(!archive.exists(), "a refused export left {}", archive.display());
    }
    let output = workspace.run(&["diff", &wide[..12], &deep[..12]])?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.code() == Some(1) && stderr.contains("entries"), "diff: {stderr}");

    // The mount's view walks what it is asked to, so its bound is on the entries it
    // holds: a walk of all 2^40 paths stops at it, soon, and says so.
    let limit = 8 << 20;
    let mut options = ViewOptions::new(Scope::All);
    options.entry_bytes = limit;
    let view = View::new(workspace.open(Access::Read)?, options)?;
    let started = Instant::now();
    let mut directories = vec![view.resolve(&format!("ids/{wide}/files/data"))?.ino];
    let mut entries = 0_u64;
    let stopped = loop {
        let Some(directory) = directories.pop() else { break None };
        match view.list(directory) {
            Ok(listing) => {
                for (_, attributes) in listing.entries(0) {
                    entries += 1;
                    if attributes.kind == EntryKind::Directory {
                        directories.push(attributes.ino);
                    }
                }
            }
            Err(error) => break Some(error),
        }
    };
    assert_eq!(stopped, Some(ViewError::Exhausted { limit }), "after {entries} entries");
    assert!(entries <= limit / 64, "{entries} entries held within {limit} bytes");
    assert!(started.elapsed() < Duration::from_secs(20), "walking took {:?}", started.elapsed());
    Ok(())
}

/// Rounds of "start an operation, SIGKILL it after a random delay" across backup,
/// restore in place, undo, prune and repair. Every snapshot ever listed holds what
/// was live when it was taken (a safety snapshot too); at the end `check` is clean and
/// every listed snapshot restores byte for byte. `ENVSNAP_KILL_ROUNDS` sets the number
/// of rounds (the suite runs a short loop; `bench/kill-loop` runs hundreds).
fn kill_minus_nine_across_operations_loses_nothing(format: Format) -> TestResult {
    let rounds: usize = std::env::var("ENVSNAP_KILL_ROUNDS").ok().and_then(|text| text.parse().ok()).unwrap_or(15);
    let base = tempfile::tempdir()?;
    let repository = base.path().join("repository");
    let workspace = Workspace::create(base.path(), &repository, format)?;
    let mut rng = Xorshift::new(0x5eed_0200);
    let mut files = Files::default();
    for index in 0..200 {
        let len = rng.below(6000) as usize;
        files.put(&workspace.data, &format!("d{}/f{index}.txt", index % 10), rng.bytes(len))?;
    }
    for index in 0..4 {
        files.put(&workspace.data, &format!("big{index}.bin"), big_file(&mut rng))?;
    }
    // Snapshot id -> what was live when it was taken.
    let mut captured: BTreeMap<String, BTreeMap<PathBuf, Vec<u8>>> = BTreeMap::new();
    let first = workspace.backup()?;
    captured.insert(first, read_live(&workspace.data)?);

    const OPERATIONS: [&str; 5] = ["backup", "restore", "undo", "prune", "repair"];
    // Per operation, how long it last took when it was not killed: kills are drawn
    // from 0 to 1.3 times that.
    let mut took_ms = [400u64; 5];
    let mut kills = [0usize; 5];
    for round in 0..rounds {
        let operation = round % OPERATIONS.len();
        let listed = workspace.snapshot_ids()?;
        let args: Vec<String> = match OPERATIONS[operation] {
            "backup" => {
                // Restores and undo put back other contents: change what is live now.
                files = Files(
                    read_live(&workspace.data)?.into_iter().map(|(path, bytes)| (path, Arc::new(bytes))).collect(),
                );
                change_for_round(&mut files, &workspace.data, &mut rng, round)?;
                vec!["backup".into()]
            }
            "restore" => {
                let id = &listed[rng.below(listed.len() as u64) as usize];
                vec!["restore".into(), id.clone(), "--yes".into()]
            }
            "undo" => vec!["undo".into(), "--yes".into()],
            "prune" => {
                // The oldest snapshot but the first goes, so prune has packs to free.
                if listed.len() > 3 {
                    let oldest = &listed[listed.len() - 2];
                    expect_exit(&workspace.run(&["delete", oldest, "--yes"])?, 0, "envsnap delete")?;
                }
                vec!["prune".into()]
            }
            _ => vec!["repair".into()],
        };
        eprintln!("round {round}: {}", args.join(" "));
        let live = read_live(&workspace.data)?;
        let before: BTreeSet<String> = workspace.snapshot_ids()?.into_iter().collect();
        let delay = Duration::from_millis(rng.below(took_ms[operation] * 13 / 10 + 1));
        let started = Instant::now();
        let mut child =
            workspace.command().args(&args).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null()).spawn()?;
        while started.elapsed() < delay && child.try_wait()?.is_none() {
            sleep(Duration::from_millis(2));
        }
        match child.try_wait()? {
            Some(_) => took_ms[operation] = u64::try_from(started.elapsed().as_millis())?.max(20),
            None => {
                child.kill()?;
                child.wait()?;
                kills[operation] += 1;
            }
        }
        let after = workspace.snapshot_ids()?;
        for id in &after {
            if !before.contains(id) {
                captured.insert(id.clone(), live.clone());
            }
        }
        captured.retain(|id, _| after.contains(id));
        if let Some(id) = before.iter().find(|id| !after.contains(*id)) {
            return Err(format!("round {round} ({args:?}) lost snapshot {}", &id[..12]).into());
        }
    }
    eprintln!("kills per operation {OPERATIONS:?}: {kills:?}; last uninterrupted runs (ms): {took_ms:?}");

    expect_exit(&workspace.run(&["check", "--read-data"])?, 0, "envsnap check --read-data after the kills")?;
    let restores = base.path().join("restores");
    let listed = workspace.snapshot_ids()?;
    eprintln!("restoring all {} listed snapshots", listed.len());
    for id in listed {
        let expected = captured.get(&id).ok_or_else(|| format!("snapshot {} appeared from nowhere", &id[..12]))?;
        let target = restores.join(&id[..12]);
        expect_exit(&workspace.restore(&id, &target)?, 0, &format!("restoring {}", &id[..12]))?;
        let restored = read_files(&target.join("data"))?;
        if &restored != expected {
            let differing: Vec<&PathBuf> = expected
                .keys()
                .chain(restored.keys())
                .filter(|path| restored.get(*path) != expected.get(*path))
                .take(5)
                .collect();
            return Err(format!("snapshot {} does not restore what it captured: {differing:?}", &id[..12]).into());
        }
        fs::remove_dir_all(&target)?;
    }
    Ok(())
}

/// A mount that holds the mount point of another file system: files below it cannot be
/// renamed from the staging directory, so they are copied beside their place and
/// renamed from there. They come back byte for byte, with their modes and hard links
/// (as copies), and the other file system stays mounted.
fn a_restore_in_place_crosses_into_another_file_system(format: Format) -> TestResult {
    let base = tempfile::tempdir()?;
    let repository = base.path().join("repository");
    let workspace = Workspace::create(base.path(), &repository, format)?;
    let inner = workspace.data.join("inner");
    fs::create_dir_all(&inner)?;
    let _tmpfs = Tmpfs::mount(&inner, "16m")?;
    let mut rng = Xorshift::new(0x5eed_0e8d);
    let mut files = Files::default();
    files.put(&workspace.data, "top.txt", b"on the first file system".to_vec())?;
    files.put(&workspace.data, "inner/a.bin", rng.bytes(300 << 10))?;
    files.put(&workspace.data, "inner/deeper/b.txt", compressible(&mut rng, 9000))?;
    fs::set_permissions(inner.join("a.bin"), fs::Permissions::from_mode(0o640))?;
    std::os::unix::fs::symlink("a.bin", inner.join("link"))?;
    let id = workspace.backup()?;

    fs::write(inner.join("a.bin"), b"changed")?;
    fs::remove_file(inner.join("deeper/b.txt"))?;
    fs::remove_file(inner.join("link"))?;
    fs::write(inner.join("extra.txt"), b"not in the snapshot")?;
    let output = workspace.run(&["restore", &id, "--yes"])?;
    expect_exit(&output, 0, "restoring across file systems")?;

    for (path, content) in &files.0 {
        assert_eq!(&fs::read(workspace.data.join(path))?, content.as_ref(), "{} differs", path.display());
    }
    assert!(!inner.join("extra.txt").exists(), "what the snapshot lacks is removed");
    assert_eq!(fs::read_link(inner.join("link"))?, Path::new("a.bin"));
    assert_eq!(fs::metadata(inner.join("a.bin"))?.permissions().mode() & 0o777, 0o640);
    let mounted = fs::read_to_string("/proc/self/mounts")?;
    assert!(mounted.contains(inner.to_str().ok_or("utf-8")?), "the tmpfs is still mounted");
    let leftovers: Vec<PathBuf> = list_tree(&workspace.data)?
        .into_iter()
        .filter(|path| path.to_string_lossy().contains(".envsnap-restore-"))
        .collect();
    assert!(leftovers.is_empty(), "staging leftovers: {leftovers:?}");
    Ok(())
}
