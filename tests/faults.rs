//! Backup, restore, prune, repair and check over storage that fails on command: a full
//! disk, read errors, torn writes and slow calls, through [`FaultyBackend`] over the
//! local file system, so that what is left on disk can be inspected too.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use common::{Format, PASSWORD, TestResult, noise};
use envsnap::backup::{BackupOptions, backup};
use envsnap::check::check;
use envsnap::element::mount::Mount;
use envsnap::progress::NoProgress;
use envsnap::repository::{Access, Repository};
use envsnap::restore::{RestoreTarget, restore};
use envsnap::snapshot::{Mode, Snapshot, Trigger};
use envsnap::store::backend::{Backend, Faults, FaultyBackend, LocalBackend};

common::on_both_formats!(
    a_full_disk_fails_the_backup_and_every_earlier_snapshot_still_restores_byte_for_byte,
    a_read_error_during_restore_or_check_names_the_pack_and_fails_cleanly,
    a_torn_write_is_never_visible_as_an_object,
    prune_that_fails_on_a_full_disk_or_a_read_error_leaves_every_snapshot_restorable,
    repair_that_meets_a_read_error_leaves_every_snapshot_restorable,
    repair_never_indexes_from_a_pack_whose_footer_is_damaged,
    slow_storage_is_slow_but_loses_nothing,
    repair_moves_a_damaged_catalog_aside_and_rebuilds_it,
    repair_restores_a_damaged_manifest_from_the_catalogs_copy,
    a_damaged_config_gets_advice_that_works,
    repair_loses_neither_the_activity_log_nor_the_jobs,
    check_names_every_snapshot_a_lost_pack_breaks_and_list_shows_them_not_restorable,
    check_names_a_file_whose_size_disagrees_with_its_chunks_and_trees_no_restore_can_write,
    repair_keeps_what_can_be_read_of_damaged_jobs_and_activity,
);

/// A work folder with data to back up and a repository, removed when dropped.
struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new(format: Format) -> Result<Self, Box<dyn std::error::Error>> {
        let dir = tempfile::Builder::new().prefix("envsnap-faults-").tempdir()?;
        fs::create_dir(dir.path().join("data"))?;
        format.init(&dir.path().join("store"))?;
        Ok(Fixture { dir })
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn store(&self) -> PathBuf {
        self.dir.path().join("store")
    }

    /// The repository opened for writing over a faulty twin of its local storage.
    fn open(&self) -> Result<(Repository, Arc<Faults>), envsnap::Error> {
        self.open_for(Access::Write)
    }

    /// The repository opened for `access` over a faulty twin of its local storage.
    fn open_for(&self, access: Access) -> Result<(Repository, Arc<Faults>), envsnap::Error> {
        let (backend, faults) = FaultyBackend::new(Box::new(LocalBackend::new(self.store())));
        Ok((Format::open(&self.store(), Box::new(backend), access)?, faults))
    }

    /// Writes `size` bytes that do not compress to `data/<name>`; returns them.
    fn write(&self, name: &str, seed: u64, size: usize) -> Result<Vec<u8>, std::io::Error> {
        let bytes = noise(seed, size);
        fs::write(self.data().join(name), &bytes)?;
        Ok(bytes)
    }

    /// What `data/` holds now, by file name.
    fn contents(&self) -> Result<BTreeMap<String, Vec<u8>>, std::io::Error> {
        let mut files = BTreeMap::new();
        for entry in fs::read_dir(self.data())? {
            let entry = entry?;
            files.insert(entry.file_name().to_string_lossy().into_owned(), fs::read(entry.path())?);
        }
        Ok(files)
    }
}

fn backup_of(repository: &Repository, data: &Path) -> envsnap::Result<Snapshot> {
    let options = BackupOptions {
        env: "main".into(),
        commit: None,
        created: chrono::Utc::now(),
        trigger: Trigger::Manual,
        mode: Mode::Live,
        note: None,
        expires: None,
        user: "tester".into(),
        host: "here".into(),
        mounts: vec![Mount { name: "data".into(), path: data.to_owned(), exclude: vec![] }],
        services: vec![],
        partial: false,
        pause: None,
    };
    Ok(backup(repository, &options, &NoProgress)?.snapshot)
}

/// Restores `snapshot` into a fresh folder `to` and returns what it holds, by file name.
fn restored(repository: &Repository, snapshot: &Snapshot, to: &Path) -> envsnap::Result<BTreeMap<String, Vec<u8>>> {
    let target = RestoreTarget { tree: snapshot.manifest.elements[0].tree, destination: to.to_owned(), replace: None };
    let outcome = restore(repository, &[target], &NoProgress).map(|_| ());
    let mut files = BTreeMap::new();
    if let Ok(entries) = fs::read_dir(to) {
        for entry in entries.flatten() {
            if let Ok(bytes) = fs::read(entry.path()) {
                files.insert(entry.file_name().to_string_lossy().into_owned(), bytes);
            }
        }
    }
    let _ = fs::remove_dir_all(to);
    outcome.map(|()| files)
}

/// Every object the store holds is whole: each pack's bytes match its name, each
/// manifest reads back as its id (sealed or not), and no write left anything in `tmp/`.
fn assert_no_partial_object(fixture: &Fixture) -> TestResult {
    let local = LocalBackend::new(fixture.store());
    for (name, _) in local.list("packs")? {
        let bytes = local.get(&name, u64::MAX)?;
        let hex = name.rsplit('/').next().and_then(|file| file.strip_suffix(".pack")).ok_or("a pack name")?;
        assert_eq!(blake3::hash(&bytes).to_hex().as_str(), hex, "pack {name} is whole");
    }
    // Read without a lock, beside the writer the test holds.
    let (repository, _) = fixture.open_for(Access::Read)?;
    for (name, _) in local.list("snapshots")? {
        let hex = name.strip_prefix("snapshots/").and_then(|file| file.strip_suffix(".json")).ok_or("a name")?;
        let id = envsnap::id::ObjectId::from_hex(hex).ok_or("a manifest named by an id")?;
        repository.read_manifest(&id).map_err(|error| format!("manifest {name} is not whole: {error}"))?;
    }
    assert!(local.list("tmp")?.is_empty(), "no partial write is left in tmp/");
    Ok(())
}

fn a_full_disk_fails_the_backup_and_every_earlier_snapshot_still_restores_byte_for_byte(format: Format) -> TestResult {
    let fixture = Fixture::new(format)?;
    fixture.write("a", 1, 700 << 10)?;
    fixture.write("b", 2, 300 << 10)?;
    let (repository, faults) = fixture.open()?;
    let first = backup_of(&repository, &fixture.data())?;
    let expected = fixture.contents()?;

    fixture.write("c", 3, 2 << 20)?;
    faults.fill_after(1 << 20);
    let failed = backup_of(&repository, &fixture.data()).expect_err("the disk is full");
    assert!(matches!(failed, envsnap::Error::StorageFull { .. }), "{failed}");
    assert_eq!(repository.snapshots(None)?.len(), 1, "the failed backup published nothing");
    assert_no_partial_object(&fixture)?;
    let to = fixture.dir.path().join("out");
    assert_eq!(restored(&repository, &first, &to)?, expected);
    drop(repository);

    // Reopened, with room again: the earlier snapshot is intact, and a backup goes through.
    let (repository, _) = fixture.open()?;
    assert!(check(&repository, true, &NoProgress)?.is_clean());
    assert_eq!(restored(&repository, &first, &to)?, expected);
    let second = backup_of(&repository, &fixture.data())?;
    assert_eq!(restored(&repository, &second, &to)?, fixture.contents()?);
    Ok(())
}

fn a_read_error_during_restore_or_check_names_the_pack_and_fails_cleanly(format: Format) -> TestResult {
    let fixture = Fixture::new(format)?;
    fixture.write("a", 4, 400 << 10)?;
    let (repository, faults) = fixture.open()?;
    let snapshot = backup_of(&repository, &fixture.data())?;
    let (pack, _) = repository.backend().list("packs")?.remove(0);
    let pack_path = repository.backend().describe(&pack).display().to_string();

    faults.fail_reads("packs/");
    let to = fixture.dir.path().join("out");
    let failed = restored(&repository, &snapshot, &to).expect_err("the pack cannot be read");
    assert!(failed.to_string().contains(&pack_path), "the restore names the pack: {failed}");

    let report = check(&repository, false, &NoProgress)?;
    assert_eq!(report.damaged_snapshots.len(), 1, "{report:?}");
    assert!(report.damaged_snapshots[0].1.contains(&pack_path), "{report:?}");
    let report = check(&repository, true, &NoProgress)?;
    assert_eq!(report.damaged_packs.len(), 1, "{report:?}");
    assert_eq!(report.damaged_packs[0].pack, pack_path);
    assert_eq!(report.damaged_packs[0].snapshots, [snapshot.id], "the snapshot that needs it is named");

    // The error was the storage's, not the data's: once it reads again, all is there.
    faults.heal_reads();
    assert_eq!(restored(&repository, &snapshot, &to)?, fixture.contents()?);
    assert!(check(&repository, true, &NoProgress)?.is_clean());
    Ok(())
}

fn a_torn_write_is_never_visible_as_an_object(format: Format) -> TestResult {
    let fixture = Fixture::new(format)?;
    fixture.write("a", 5, 500 << 10)?;
    let (repository, faults) = fixture.open()?;
    let first = backup_of(&repository, &fixture.data())?;
    let expected = fixture.contents()?;

    // A pack torn in two, then a manifest torn in two.
    fixture.write("b", 6, 500 << 10)?;
    faults.tear_next_write("packs/");
    backup_of(&repository, &fixture.data()).expect_err("the pack write tore");
    fixture.write("c", 7, 100 << 10)?;
    faults.tear_next_write("snapshots/");
    backup_of(&repository, &fixture.data()).expect_err("the manifest write tore");
    drop(repository);

    for step in ["reopened", "repaired"] {
        let (repository, _) = fixture.open()?;
        if step == "repaired" {
            let report = repository.repair()?;
            assert_eq!(report.unreadable.len(), 2, "both torn objects are reported: {report:?}");
        }
        let listed: Vec<_> = repository.snapshots(None)?.into_iter().map(|snapshot| snapshot.id).collect();
        assert_eq!(listed, [first.id], "{step}: only the whole snapshot is listed");
        let report = check(&repository, true, &NoProgress)?;
        assert_eq!(report.damaged_packs.len(), 1, "{step}: check reports the torn pack: {report:?}");
        assert!(report.damaged_packs[0].snapshots.is_empty(), "{step}: no snapshot needs it");
        assert!(report.warnings.iter().any(|warning| warning.contains("snapshots/")), "{step}: {report:?}");
        let to = fixture.dir.path().join("out");
        assert_eq!(restored(&repository, &first, &to)?, expected, "{step}");
    }

    // The next backup stores what the torn pack held anew.
    let (repository, _) = fixture.open()?;
    let third = backup_of(&repository, &fixture.data())?;
    let to = fixture.dir.path().join("out");
    assert_eq!(restored(&repository, &third, &to)?, fixture.contents()?);
    Ok(())
}

fn prune_that_fails_on_a_full_disk_or_a_read_error_leaves_every_snapshot_restorable(format: Format) -> TestResult {
    let fixture = Fixture::new(format)?;
    for n in 0..6 {
        fixture.write(&format!("gone{n}"), 10 + n, 200 << 10)?;
    }
    fixture.write("kept", 20, 200 << 10)?;
    let (repository, faults) = fixture.open()?;
    let old = backup_of(&repository, &fixture.data())?;
    for n in 0..6 {
        fs::remove_file(fixture.data().join(format!("gone{n}")))?;
    }
    let kept = backup_of(&repository, &fixture.data())?;
    let expected = fixture.contents()?;
    repository.delete(&old.id)?;
    let to = fixture.dir.path().join("out");

    // Repacking the one pack `kept` shares with the deleted snapshot needs room.
    faults.fill_after(0);
    let failed = envsnap::prune::prune(&repository, false, Duration::ZERO, &mut |_| {}).expect_err("full");
    assert!(matches!(failed, envsnap::Error::StorageFull { .. }), "{failed}");
    faults.free_space();
    assert_eq!(restored(&repository, &kept, &to)?, expected);
    assert_no_partial_object(&fixture)?;

    faults.fail_reads("packs/");
    envsnap::prune::prune(&repository, false, Duration::ZERO, &mut |_| {}).expect_err("unreadable");
    faults.heal_reads();
    assert_eq!(restored(&repository, &kept, &to)?, expected);
    assert!(check(&repository, true, &NoProgress)?.is_clean());

    let report = envsnap::prune::prune(&repository, false, Duration::ZERO, &mut |_| {})?;
    assert!(report.packs_repacked + report.packs_deleted > 0, "{report:?}");
    assert_eq!(restored(&repository, &kept, &to)?, expected);
    assert!(check(&repository, true, &NoProgress)?.is_clean());
    Ok(())
}

fn repair_that_meets_a_read_error_leaves_every_snapshot_restorable(format: Format) -> TestResult {
    let fixture = Fixture::new(format)?;
    fixture.write("a", 30, 300 << 10)?;
    let (repository, faults) = fixture.open()?;
    let snapshot = backup_of(&repository, &fixture.data())?;
    let expected = fixture.contents()?;

    faults.fail_reads("packs/");
    let report = repository.repair()?;
    assert_eq!(report.unreadable.len(), 1, "the unreadable pack is reported: {report:?}");
    faults.heal_reads();
    let to = fixture.dir.path().join("out");
    assert_eq!(restored(&repository, &snapshot, &to)?, expected, "what restored before repair restores after it");
    assert!(check(&repository, true, &NoProgress)?.is_clean());
    Ok(())
}

/// The packs of the store at `store`, with their sizes.
fn packs_of(store: &Path) -> Result<Vec<(String, u64)>, std::io::Error> {
    LocalBackend::new(store).list("packs")
}

fn repair_never_indexes_from_a_pack_whose_footer_is_damaged(format: Format) -> TestResult {
    let fixture = Fixture::new(format)?;
    fixture.write("a", 31, 300 << 10)?;
    fixture.write("b", 32, 20)?;
    let (repository, _) = fixture.open()?;
    let snapshot = backup_of(&repository, &fixture.data())?;
    let expected = fixture.contents()?;
    drop(repository);
    // One flipped bit in the id of the footer's last entry: harmless while the catalog
    // holds the right one, as every read verifies a blob against the catalog's id.
    let (name, size) = packs_of(&fixture.store())?.remove(0);
    let path = fixture.store().join(&name);
    let mut bytes = fs::read(&path)?;
    let footer_tag = match format {
        Format::Plain => envsnap::store::pack::PLAIN.tag,
        Format::Encrypted => envsnap::store::pack::SEALED.tag,
    };
    let position = size as usize - 12 - footer_tag - 50;
    bytes[position] ^= 0x01;
    fs::write(&path, &bytes)?;
    let (repository, _) = fixture.open()?;
    let to = fixture.dir.path().join("out");
    assert_eq!(restored(&repository, &snapshot, &to)?, expected, "harmless before repair");

    let report = repository.repair()?;
    assert_eq!(report.unreadable.len(), 1, "the damaged pack is reported: {report:?}");
    assert_eq!(restored(&repository, &snapshot, &to)?, expected, "and after it");
    drop(repository);
    // Without the old catalog to say where the blobs are, repair keeps those of the
    // footer that verify; the snapshot is then honestly reported, not half indexed.
    fs::remove_file(fixture.store().join("catalog.sqlite"))?;
    let (repository, _) = fixture.open()?;
    let report = repository.repair()?;
    assert_eq!(report.unreadable.len(), 1, "{report:?}");
    let report = check(&repository, false, &NoProgress)?;
    assert_eq!(report.damaged_snapshots.len(), 1, "{report:?}");
    Ok(())
}

fn slow_storage_is_slow_but_loses_nothing(format: Format) -> TestResult {
    let fixture = Fixture::new(format)?;
    fixture.write("a", 40, 300 << 10)?;
    fixture.write("b", 41, 10)?;
    let (repository, faults) = fixture.open()?;
    faults.slow_down(Duration::from_millis(20));
    let started = std::time::Instant::now();
    let snapshot = backup_of(&repository, &fixture.data())?;
    let to = fixture.dir.path().join("out");
    assert_eq!(restored(&repository, &snapshot, &to)?, fixture.contents()?);
    assert!(check(&repository, true, &NoProgress)?.is_clean());
    assert!(started.elapsed() >= Duration::from_millis(100), "every call waited");
    assert!(faults.written() > 300 << 10);
    Ok(())
}

const CONFIG: &str = r#"
production = "main"

[[mount]]
name = "data"
path = "data"
"#;

/// A project with two snapshots of `data/`; returns it and their ids, oldest first.
fn project_with_snapshots(format: Format) -> Result<(common::Project, Vec<String>), Box<dyn std::error::Error>> {
    let project = match format {
        Format::Plain => common::Project::new(CONFIG)?,
        Format::Encrypted => common::Project::with_password(CONFIG, PASSWORD)?,
    };
    project.ok(match format {
        Format::Plain => &["init"],
        Format::Encrypted => &["init", "--encrypt"],
    })?;
    fs::create_dir(project.root().join("data"))?;
    fs::write(project.root().join("data/a"), noise(50, 200 << 10))?;
    let first = project.backup(&[])?;
    fs::write(project.root().join("data/b"), noise(51, 100 << 10))?;
    let second = project.backup(&[])?;
    Ok((project, vec![first, second]))
}

/// Restores snapshot `id` with the binary and compares it with `data/` as it is now.
fn assert_restores(project: &common::Project, id: &str) -> TestResult {
    let out = project.root().join(format!("restored-{}", &id[..12]));
    project.ok(&["restore", &id[..12], "--to", out.to_str().ok_or("utf-8")?])?;
    common::assert_same_tree(&project.root().join("data"), &out.join("data"))?;
    fs::remove_dir_all(out)?;
    Ok(())
}

fn repair_moves_a_damaged_catalog_aside_and_rebuilds_it(format: Format) -> TestResult {
    type Damage = fn(&mut Vec<u8>);
    let damages: [(&str, Damage); 3] = [
        ("truncated", |bytes| bytes.truncate(bytes.len() / 2)),
        ("garbage", |bytes| bytes.iter_mut().enumerate().for_each(|(n, byte)| *byte = (n * 7 % 251) as u8)),
        ("a flipped header byte", |bytes| bytes[0] ^= 0x20),
    ];
    for (what, damage) in damages {
        let (project, ids) = project_with_snapshots(format)?;
        let catalog = project.repository.join("catalog.sqlite");
        let mut bytes = fs::read(&catalog)?;
        damage(&mut bytes);
        fs::write(&catalog, &bytes)?;

        let said = project.ok(&["repair"]).map_err(|error| format!("{what}: {error}"))?;
        assert!(said.contains("moved it aside"), "{what}: {said}");
        let aside: Vec<_> = fs::read_dir(&project.repository)?
            .filter_map(|entry| entry.ok())
            .filter(|entry| entry.file_name().to_string_lossy().starts_with("catalog.sqlite.damaged-"))
            .collect();
        assert_eq!(aside.len(), 1, "{what}: the damaged catalog is kept");
        assert_eq!(fs::read(aside[0].path())?, bytes, "{what}: as it was");
        let listed: Vec<String> =
            project.snapshots()?.iter().filter_map(|entry| entry["id"].as_str().map(str::to_owned)).collect();
        assert_eq!(listed.len(), 2, "{what}: {listed:?}");
        for id in &ids {
            assert!(listed.contains(id), "{what}: {id} is listed again");
        }
        assert_restores(&project, &ids[1])?;
        project.ok(&["check", "--read-data"])?;
    }
    Ok(())
}

fn repair_restores_a_damaged_manifest_from_the_catalogs_copy(format: Format) -> TestResult {
    let (project, ids) = project_with_snapshots(format)?;
    let manifest = project.repository.join(format!("snapshots/{}.json", ids[1]));
    let intact = fs::read(&manifest)?;
    let mut bytes = intact.clone();
    bytes[10] ^= 0x04;
    fs::write(&manifest, &bytes)?;
    let said = project.fails(&["check"], 1)?;
    assert!(said.contains("damaged"), "{said}");

    let said = project.ok(&["repair"])?;
    assert!(said.contains("restored from the catalog's copy"), "{said}");
    let written = fs::read(&manifest)?;
    match format {
        Format::Plain => assert_eq!(written, intact, "the manifest is as it was written"),
        // Sealed anew under a one-off key: other bytes, the same manifest, which the
        // restore and `check --read-data` below read against its id.
        Format::Encrypted => assert!(written != bytes && written.starts_with(b"ENVSNPS\x02"), "sealed anew"),
    }
    assert_eq!(project.snapshots()?.len(), 2, "no snapshot is dropped");
    assert_restores(&project, &ids[1])?;
    project.ok(&["check", "--read-data"])?;
    Ok(())
}

fn a_damaged_config_gets_advice_that_works(format: Format) -> TestResult {
    let (project, ids) = project_with_snapshots(format)?;
    let config = project.repository.join("config.json");
    for damaged in [&b"{\"format\": 1, \"chunk"[..], b"", b"\x00\xff garbage"] {
        fs::write(&config, damaged)?;
        let said = project.fails(&["list"], 1)?;
        assert!(said.contains("config.json") && said.contains("damaged"), "{said}");
        let advice = said.split("e.g. `").nth(1).and_then(|rest| rest.split('`').next()).ok_or(said.clone())?;
        let followed = std::process::Command::new("sh").arg("-c").arg(advice).status()?;
        assert!(followed.success(), "{advice}");
        assert!(fs::read(project.repository.join("config.json.damaged"))? == damaged, "the damaged one is kept");
        project.ok(&["check", "--read-data"])?;
        assert_eq!(project.snapshots()?.len(), 2);
        assert_restores(&project, &ids[1])?;
        fs::remove_file(project.repository.join("config.json.damaged"))?;
    }
    // A new backup deduplicates against the old ones: the chunk sizes are the same.
    let before = packs_of(&project.repository)?.len();
    project.backup(&[])?;
    assert!(packs_of(&project.repository)?.len() <= before + 1);
    Ok(())
}

fn repair_loses_neither_the_activity_log_nor_the_jobs(format: Format) -> TestResult {
    let (project, _) = project_with_snapshots(format)?;
    let log = project.ok(&["activity", "--json"])?;
    let jobs = project.ok(&["list", "--all", "--json"])?;
    assert!(log.contains("backup"), "{log}");
    for damage in ["deleted", "garbage"] {
        let catalog = project.repository.join("catalog.sqlite");
        match damage {
            "deleted" => fs::remove_file(&catalog)?,
            _ => fs::write(&catalog, noise(60, 8192))?,
        }
        project.ok(&["repair"])?;
        let after = project.ok(&["activity", "--json"])?;
        // The log holds what it held, and the repair itself after it.
        let before: Vec<serde_json::Value> = serde_json::from_str(&log)?;
        let after: Vec<serde_json::Value> = serde_json::from_str(&after)?;
        for entry in &before {
            assert!(after.contains(entry), "{damage}: {entry} is still in the log");
        }
        assert_eq!(project.ok(&["list", "--all", "--json"])?, jobs, "{damage}: the same jobs and snapshots");
    }
    Ok(())
}

fn check_names_every_snapshot_a_lost_pack_breaks_and_list_shows_them_not_restorable(format: Format) -> TestResult {
    for loss in ["truncated", "deleted"] {
        let (project, ids) = project_with_snapshots(format)?;
        // The pack of the first snapshot holds `a`, which both snapshots need.
        let packs = packs_of(&project.repository)?;
        let (name, size) = packs.iter().max_by_key(|(_, size)| *size).ok_or("a pack")?.clone();
        let path = project.repository.join(&name);
        match loss {
            "truncated" => fs::File::options().write(true).open(&path)?.set_len(size / 2)?,
            _ => fs::remove_file(&path)?,
        }
        let said = project.fails(&["check"], 1)?;
        let out = project.run(&["check"])?;
        let stdout = String::from_utf8(out.stdout)?;
        for id in &ids {
            assert!(stdout.contains(&format!("snapshot {} cannot be fully restored", &id[..12])), "{loss}: {stdout}");
        }
        assert!(said.contains("2 of 2 snapshots are affected"), "{loss}: {said}");
        for entry in project.snapshots()? {
            assert_eq!(entry["restorable"], false, "{loss}: {entry}");
        }
    }
    Ok(())
}

/// Publishes a copy of `snapshot` whose root tree is `tree` changed by `change`.
fn publish_changed(
    repository: &Repository,
    snapshot: &Snapshot,
    change: impl FnOnce(&mut envsnap::tree::Tree),
) -> envsnap::Result<Snapshot> {
    let mut tree = repository.read_tree(&snapshot.manifest.elements[0].tree)?;
    change(&mut tree);
    let writer = envsnap::store::BlobWriter::new(repository.backend(), repository.catalog(), repository.crypto())?;
    let id = writer.add(envsnap::store::pack::BlobKind::Tree, &tree.encode())?;
    writer.flush()?;
    let mut manifest = snapshot.manifest.clone();
    manifest.elements[0].tree = id;
    manifest.note = Some(format!("{:?}", std::time::Instant::now()));
    repository.publish(&manifest)
}

fn check_names_a_file_whose_size_disagrees_with_its_chunks_and_trees_no_restore_can_write(
    format: Format,
) -> TestResult {
    let fixture = Fixture::new(format)?;
    fixture.write("a", 70, 100 << 10)?;
    fixture.write("b", 71, 10)?;
    let (repository, _) = fixture.open()?;
    let good = backup_of(&repository, &fixture.data())?;
    type Change = fn(&mut envsnap::tree::Tree);
    let changes: [(&str, Change); 4] = [
        ("records 5 bytes", |tree| tree.nodes[0].size = 5),
        ("`..`", |tree| tree.nodes[0].name = b"..".to_vec()),
        ("twice", |tree| tree.nodes[1].name = tree.nodes[0].name.clone()),
        ("has no tree", |tree| tree.nodes[0].kind = envsnap::tree::NodeKind::Dir),
    ];
    for (said, change) in changes {
        let bad = publish_changed(&repository, &good, change)?;
        let report = check(&repository, true, &NoProgress)?;
        let found: Vec<_> = report.damaged_snapshots.iter().filter(|(id, _)| *id == bad.id).collect();
        assert_eq!(found.len(), 1, "{said}: {report:?}");
        assert!(found[0].1.contains(said), "{said}: {}", found[0].1);
        assert!(report.damaged_snapshots.iter().all(|(id, _)| *id != good.id), "{said}: the good one is whole");
        repository.delete(&bad.id)?;
    }
    Ok(())
}

fn repair_keeps_what_can_be_read_of_damaged_jobs_and_activity(format: Format) -> TestResult {
    let (project, ids) = project_with_snapshots(format)?;
    let activity = |project: &common::Project| -> Result<usize, Box<dyn std::error::Error>> {
        let listed: serde_json::Value = serde_json::from_str(&project.ok(&["activity", "--json"])?)?;
        Ok(listed.as_array().map_or(0, Vec::len))
    };
    let before = activity(&project)?;
    assert!(before >= 2, "the two backups are in the activity log: {before}");
    let records = project.repository.join("records.sqlite");
    let mut bytes = fs::read(&records)?;
    bytes[..16].copy_from_slice(b"not a database!\0");
    fs::write(&records, &bytes)?;

    let said = project.fails(&["list"], 1)?;
    assert!(said.contains("records.sqlite") && said.contains("envsnap repair"), "{said}");
    let said = project.ok(&["repair"])?;
    assert!(said.contains("the jobs and the activity log were damaged"), "{said}");
    let aside: Vec<_> = fs::read_dir(&project.repository)?
        .filter_map(|entry| entry.ok())
        .filter(|entry| entry.file_name().to_string_lossy().starts_with("records.sqlite.damaged-"))
        .collect();
    assert_eq!(aside.len(), 1, "the damaged records are kept");
    assert_eq!(fs::read(aside[0].path())?, bytes, "as they were");
    assert!(!said.contains("catalog was damaged"), "the intact catalog is not moved aside: {said}");
    // The header was the damage: nothing could be read, and the log starts anew.
    assert!(activity(&project)? >= 1, "repair itself is recorded");
    assert_restores(&project, &ids[1])?;
    Ok(())
}
