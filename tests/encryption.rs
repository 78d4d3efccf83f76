//! Encrypted repositories (format 2), black-box: nothing readable is stored, the right
//! password restores byte for byte, a wrong or missing one fails in one clear line,
//! damage anywhere is named and never restored, keys come and go without rewriting
//! data, and a write-only key backs up but reads nothing.

mod common;
mod redis_server;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{Project, TestResult, assert_same_tree, noise};
use redis_server::{RedisServer, Value};

const PASSWORD: &str = "correct horse battery staple";
/// In file contents, a file name, a database row and a Redis key: it must appear in no
/// byte of the repository.
const MARKER: &str = "ZQXMARKER7731";

const MOUNT_CONFIG: &str = r#"
production = "main"

[[mount]]
name = "uploads"
path = "var/uploads"
"#;

/// Protected `main`, snapshotted by the hooks and by a schedule.
const HOOKED_CONFIG: &str = r#"
production = "main"
protected = ["main"]

[[mount]]
name = "uploads"
path = "var/uploads"

[schedule]
cron = "0 3 * * *"
branches = ["main"]
"#;

/// Runs envsnap in `project` with `password` in `ENVSNAP_PASSWORD` (none when `None`).
fn run(project: &Project, args: &[&str], password: Option<&str>) -> Result<Output, std::io::Error> {
    let mut command = Command::new(env!("CARGO_BIN_EXE_envsnap"));
    command.args(args).current_dir(project.root()).env("ENVSNAP_REPOSITORY", &project.repository);
    for name in ["ENVSNAP_PASSWORD", "ENVSNAP_PASSWORD_FILE", "ENVSNAP_PASSWORD_COMMAND", "ENVSNAP_NEW_PASSWORD"] {
        command.env_remove(name);
    }
    if let Some(password) = password {
        command.env("ENVSNAP_PASSWORD", password);
    }
    command.output()
}

/// Runs envsnap with `password`, expecting success; returns stdout.
fn ok(project: &Project, args: &[&str], password: &str) -> Result<String, Box<dyn std::error::Error>> {
    let output = run(project, args, Some(password))?;
    if !output.status.success() {
        return Err(format!(
            "envsnap {args:?} failed ({}):\n{}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
        .into());
    }
    Ok(String::from_utf8(output.stdout)?)
}

/// Runs envsnap with `password`, expecting exit 1 with one line on stderr; returns it.
fn fails(project: &Project, args: &[&str], password: Option<&str>) -> Result<String, Box<dyn std::error::Error>> {
    let output = run(project, args, password)?;
    let stderr = String::from_utf8(output.stderr)?;
    assert_eq!(output.status.code(), Some(1), "envsnap {args:?}: {stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "one line: {stderr}");
    Ok(stderr)
}

/// An encrypted repository in a new project with `config`.
fn encrypted_project(config: &str) -> Result<Project, Box<dyn std::error::Error>> {
    let project = Project::new(config)?;
    let out = ok(&project, &["init", "--encrypt"], PASSWORD)?;
    assert!(out.contains("encrypted"), "{out}");
    Ok(project)
}

/// Every file under `dir`, recursively.
fn files_under(dir: &Path) -> Result<Vec<PathBuf>, std::io::Error> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_owned()];
    while let Some(dir) = pending.pop() {
        for entry in fs::read_dir(&dir)? {
            let entry = entry?;
            if entry.file_type()?.is_dir() {
                pending.push(entry.path());
            } else {
                files.push(entry.path());
            }
        }
    }
    Ok(files)
}

/// The files under `dir` whose bytes or name hold `needle`.
fn holding(dir: &Path, needle: &[u8]) -> Result<Vec<PathBuf>, std::io::Error> {
    let mut found = Vec::new();
    for file in files_under(dir)? {
        let bytes = fs::read(&file)?;
        let named = file.as_os_str().as_encoded_bytes().windows(needle.len()).any(|w| w == needle);
        if named || bytes.windows(needle.len()).any(|window| window == needle) {
            found.push(file);
        }
    }
    Ok(found)
}

fn psql(database: &str, sql: &str) -> Result<String, Box<dyn std::error::Error>> {
    let output = Command::new("psql")
        .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-U", "postgres", "-d", database])
        .args(["-c", sql])
        .output()?;
    if !output.status.success() {
        return Err(format!("psql {sql}: {}", String::from_utf8_lossy(&output.stderr)).into());
    }
    Ok(String::from_utf8(output.stdout)?)
}

/// A PostgreSQL database of this test's own, dropped at the end.
struct Database(String);

impl Database {
    fn create() -> Result<Self, Box<dyn std::error::Error>> {
        let name = format!("envsnap_t_crypt_{}_main", std::process::id());
        psql("postgres", &format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))?;
        psql("postgres", &format!("CREATE DATABASE \"{name}\""))?;
        Ok(Database(name))
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        let _ = psql("postgres", &format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", self.0));
    }
}

#[test]
fn a_marker_in_file_names_contents_a_row_and_a_redis_key_is_in_no_byte_of_the_repository() -> TestResult {
    let database = Database::create()?;
    psql(&database.0, "CREATE TABLE customers (id int PRIMARY KEY, note text)")?;
    psql(&database.0, &format!("INSERT INTO customers VALUES (1, 'row {MARKER} row'), (2, 'plain')"))?;
    let redis = RedisServer::start(None, &[])?;
    let mut client = redis.client()?;
    client.ok(&["SET", &format!("session:{MARKER}"), "value"])?;
    let config = format!(
        "{MOUNT_CONFIG}\n[[service]]\nname = \"db\"\ntype = \"postgresql\"\nurl = \"postgresql://postgres@127.0.0.1:5432/envsnap_t_crypt_{}_{{branch}}\"\n\n[[service]]\nname = \"cache\"\ntype = \"redis\"\nurl = \"{}\"\n",
        std::process::id(),
        redis.url(Some(0))
    );
    let project = encrypted_project(&config)?;
    let uploads = project.root().join("var/uploads");
    fs::create_dir_all(uploads.join(format!("dir-{MARKER}")))?;
    fs::write(uploads.join(format!("dir-{MARKER}/name-{MARKER}.txt")), "plain content")?;
    fs::write(uploads.join("contents.txt"), format!("{MARKER}\n").repeat(1000))?;
    fs::write(uploads.join("small.txt"), format!("a {MARKER}"))?;
    fs::write(uploads.join("noise.bin"), noise(3, 2 << 20))?;
    let id = ok(&project, &["backup", "--note", "nightly"], PASSWORD)?.trim().to_owned();
    // A second snapshot, and the records a restore and a forget leave.
    fs::write(uploads.join("later.txt"), format!("later {MARKER}"))?;
    ok(&project, &["backup"], PASSWORD)?;

    let found = holding(&project.repository, MARKER.as_bytes())?;
    assert!(found.is_empty(), "the marker is readable in {found:?}");
    // Nor does any object name say which branch it belongs to.
    let found = holding(&project.repository.join("snapshots"), b"main")?;
    assert!(found.is_empty(), "{found:?}");
    for file in files_under(&project.repository)? {
        if file.starts_with(project.repository.join("packs")) {
            assert!(fs::read(&file)?.starts_with(b"ENVSNPK\x02"), "{} is a sealed pack", file.display());
        }
    }

    // The right password restores byte for byte.
    let target = project.root().join("restored");
    ok(&project, &["restore", &id[..12], "--element", "uploads", "--to", target.to_str().ok_or("utf-8")?], PASSWORD)?;
    fs::remove_file(uploads.join("later.txt"))?;
    assert_same_tree(&uploads, &target.join("uploads"))?;
    psql(&database.0, "DELETE FROM customers")?;
    client.ok(&["FLUSHALL"])?;
    ok(&project, &["restore", &id[..12], "--yes"], PASSWORD)?;
    assert_eq!(psql(&database.0, "SELECT note FROM customers ORDER BY id")?, format!("row {MARKER} row\nplain\n"));
    assert_eq!(client.ok(&["GET", &format!("session:{MARKER}")])?, Value::Bytes(b"value".to_vec()));
    let found = holding(&project.repository, MARKER.as_bytes())?;
    assert!(found.is_empty(), "after the restore, the marker is readable in {found:?}");
    Ok(())
}

#[test]
fn a_wrong_or_missing_password_fails_in_one_line_that_says_how_to_give_it() -> TestResult {
    let project = encrypted_project(MOUNT_CONFIG)?;
    fs::create_dir_all(project.root().join("var/uploads"))?;
    fs::write(project.root().join("var/uploads/a.txt"), "a")?;
    ok(&project, &["backup"], PASSWORD)?;
    for args in [&["list"][..], &["backup"], &["restore", "--to", "out"], &["check"]] {
        let missing = fails(&project, args, None)?;
        assert!(missing.contains("encrypted") && missing.contains("ENVSNAP_PASSWORD_FILE"), "{missing}");
        let wrong = fails(&project, args, Some("not the password"))?;
        assert!(wrong.contains("wrong password"), "{wrong}");
    }
    // The other sources, in their order: --password-file before the environment.
    let file = project.root().join("password.txt");
    fs::write(&file, format!("{PASSWORD}\nignored second line\n"))?;
    let listed = run(&project, &["--password-file", file.to_str().ok_or("utf-8")?, "list"], Some("wrong"))?;
    assert!(listed.status.success(), "{}", String::from_utf8_lossy(&listed.stderr));
    let command = format!("printf '%s\\n' '{PASSWORD}'");
    let output = Command::new(env!("CARGO_BIN_EXE_envsnap"))
        .args(["list"])
        .current_dir(project.root())
        .env("ENVSNAP_REPOSITORY", &project.repository)
        .env("ENVSNAP_PASSWORD_COMMAND", &command)
        .env_remove("ENVSNAP_PASSWORD")
        .output()?;
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let output = Command::new(env!("CARGO_BIN_EXE_envsnap"))
        .args(["list"])
        .current_dir(project.root())
        .env("ENVSNAP_REPOSITORY", &project.repository)
        .env("ENVSNAP_PASSWORD_COMMAND", "exit 3")
        .output()?;
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("ENVSNAP_PASSWORD_COMMAND"));
    Ok(())
}

/// Runs `program` (git, or envsnap) in `project` with no terminal, none of the
/// password sources set but those of `vars`.
fn run_with(project: &Project, program: &str, args: &[&str], vars: &[(&str, &str)]) -> Result<Output, std::io::Error> {
    let mut command = Command::new(program);
    command
        .args(args)
        .current_dir(project.root())
        .env("ENVSNAP_REPOSITORY", &project.repository)
        .env_remove("ENVSNAP_SKIP_HOOKS")
        .stdin(std::process::Stdio::null());
    for name in ["ENVSNAP_PASSWORD", "ENVSNAP_PASSWORD_FILE", "ENVSNAP_PASSWORD_COMMAND"] {
        command.env_remove(name);
    }
    command.envs(vars.iter().copied()).output()
}

#[test]
fn the_password_sources_are_taken_in_their_order() -> TestResult {
    let project = encrypted_project(MOUNT_CONFIG)?;
    let right = project.root().join("right.txt");
    fs::write(&right, format!("{PASSWORD}\n"))?;
    let wrong = project.root().join("wrong.txt");
    fs::write(&wrong, "not it\n")?;
    let (right, wrong) = (right.to_str().ok_or("utf-8")?, wrong.to_str().ok_or("utf-8")?);
    let right_command = format!("printf '%s\\n' '{PASSWORD}'");
    let envsnap = env!("CARGO_BIN_EXE_envsnap");
    // Each row: the arguments before `list`, the sources set, and whether the first of
    // them (the one that must be taken) is the right password.
    type Sources<'a> = Vec<(&'a str, &'a str)>;
    let cases: [(&[&str], Sources, bool); 6] = [
        (&["--password-file", right], vec![("ENVSNAP_PASSWORD_FILE", wrong), ("ENVSNAP_PASSWORD", "x")], true),
        (&["--password-file", wrong], vec![("ENVSNAP_PASSWORD_FILE", right)], false),
        (&[], vec![("ENVSNAP_PASSWORD_FILE", right), ("ENVSNAP_PASSWORD_COMMAND", "echo no")], true),
        (&[], vec![("ENVSNAP_PASSWORD_FILE", wrong), ("ENVSNAP_PASSWORD_COMMAND", &right_command)], false),
        (&[], vec![("ENVSNAP_PASSWORD_COMMAND", &right_command), ("ENVSNAP_PASSWORD", "x")], true),
        (&[], vec![("ENVSNAP_PASSWORD_COMMAND", "echo no"), ("ENVSNAP_PASSWORD", PASSWORD)], false),
    ];
    for (before, vars, first_is_right) in cases {
        let args: Vec<&str> = before.iter().copied().chain(["list"]).collect();
        let output = run_with(&project, envsnap, &args, &vars)?;
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.success(), first_is_right, "{before:?} {vars:?}: {stderr}");
        if !first_is_right {
            assert_eq!(stderr.trim_end().lines().count(), 1, "one line: {stderr}");
            assert!(stderr.contains("wrong password"), "{stderr}");
        }
    }
    Ok(())
}

#[test]
fn hooks_and_schedules_find_the_password_without_a_terminal_or_say_in_one_line_how_to_give_it() -> TestResult {
    let project = encrypted_project(HOOKED_CONFIG)?;
    fs::write(project.root().join(".gitignore"), "var/\nstore/\n")?;
    fs::create_dir_all(project.root().join("var/uploads"))?;
    fs::write(project.root().join("var/uploads/a.txt"), "production data")?;
    ok(&project, &["hooks", "install"], PASSWORD)?;
    let git = |args: &[&str], vars: &[(&str, &str)]| -> Result<Output, std::io::Error> {
        let identity = ["-c", "user.name=envsnap test", "-c", "user.email=test@example.invalid"];
        let args: Vec<&str> = identity.iter().chain(args).copied().collect();
        run_with(&project, "git", &args, &[&[("GIT_EDITOR", "true")], vars].concat())
    };
    let branch_ahead = |name: &str| -> TestResult {
        for args in [
            &["checkout", "-q", "-b", name][..],
            &["commit", "-q", "--allow-empty", "-m", name],
            &["checkout", "-q", "main"],
        ] {
            let output = git(args, &[])?;
            assert!(output.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&output.stderr));
        }
        Ok(())
    };

    // From a command, as from a keyring: the hook snapshots main before the merge.
    let command = format!("printf '%s\\n' '{PASSWORD}'");
    branch_ahead("feature")?;
    let merged = git(&["merge", "-q", "feature"], &[("ENVSNAP_PASSWORD_COMMAND", &command)])?;
    let stderr = String::from_utf8_lossy(&merged.stderr);
    assert!(merged.status.success(), "{stderr}");
    assert!(stderr.contains("envsnap: snapshot "), "{stderr}");
    // Without a password: the merge stops, and the one line says how to give one.
    branch_ahead("second")?;
    let refused = git(&["merge", "-q", "second"], &[])?;
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "{stderr}");
    let lines: Vec<&str> = stderr.lines().filter(|line| line.starts_with("envsnap:")).collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(lines[0].contains("ENVSNAP_PASSWORD_COMMAND") && lines[0].contains("ENVSNAP_SKIP_HOOKS"), "{stderr}");

    // A schedule from cron: the password from a file the crontab line names.
    let file = project.root().join("password.txt");
    fs::write(&file, format!("{PASSWORD}\n"))?;
    let envsnap = env!("CARGO_BIN_EXE_envsnap");
    let now = ("ENVSNAP_NOW", "2026-11-20T04:00:00Z");
    let refused = run_with(&project, envsnap, &["schedule", "run", "--no-prune"], &[now])?;
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "one line: {stderr}");
    assert!(stderr.contains("ENVSNAP_PASSWORD_FILE"), "{stderr}");
    let scheduled = run_with(
        &project,
        envsnap,
        &["schedule", "run", "--no-prune"],
        &[now, ("ENVSNAP_PASSWORD_FILE", file.to_str().ok_or("utf-8")?)],
    )?;
    assert!(scheduled.status.success(), "{}", String::from_utf8_lossy(&scheduled.stderr));
    let listed: Vec<serde_json::Value> = serde_json::from_str(&ok(&project, &["list", "--json"], PASSWORD)?)?;
    let triggers: Vec<&str> = listed.iter().filter_map(|snapshot| snapshot["trigger"].as_str()).collect();
    assert!(triggers.contains(&"pre-merge") && triggers.contains(&"schedule"), "{triggers:?}");
    Ok(())
}

#[test]
fn a_background_backup_finds_the_password_without_a_terminal() -> TestResult {
    let project = encrypted_project(MOUNT_CONFIG)?;
    fs::create_dir_all(project.root().join("var/uploads"))?;
    fs::write(project.root().join("var/uploads/a.txt"), "a")?;
    let job = ok(&project, &["backup", "--no-wait"], PASSWORD)?.trim().to_owned();
    let snapshot = ok(&project, &["wait", &job], PASSWORD)?;
    assert!(!snapshot.trim().is_empty());
    let listed = ok(&project, &["list", "--json"], PASSWORD)?;
    assert!(listed.contains("\"complete\""), "{listed}");
    Ok(())
}

/// Flips one byte of `file` at `offset` (from the end when negative).
fn flip(file: &Path, offset: i64) -> TestResult {
    let mut bytes = fs::read(file)?;
    let at = if offset < 0 { bytes.len() - offset.unsigned_abs() as usize } else { offset as usize };
    bytes[at] ^= 0x01;
    fs::write(file, bytes)?;
    Ok(())
}

fn only_file(dir: &Path) -> Result<PathBuf, Box<dyn std::error::Error>> {
    let files = files_under(dir)?;
    let [file] = files.as_slice() else { return Err(format!("{} holds {files:?}", dir.display()).into()) };
    Ok(file.clone())
}

#[test]
fn a_flipped_byte_in_any_encrypted_object_is_named_by_check_and_never_restored() -> TestResult {
    // A data blob, the tree blob (the pack's last), the footer, the trailer, the
    // pack's sealed key, the manifest.
    for case in ["data", "tree", "footer", "trailer", "header", "manifest"] {
        let project = encrypted_project(MOUNT_CONFIG)?;
        let uploads = project.root().join("var/uploads");
        fs::create_dir_all(&uploads)?;
        fs::write(uploads.join("data.bin"), noise(9, 100_000))?;
        let id = ok(&project, &["backup"], PASSWORD)?.trim().to_owned();
        assert!(ok(&project, &["check", "--read-data"], PASSWORD)?.contains("no errors"));
        let pack = only_file(&project.repository.join("packs"))?;
        let manifest = only_file(&project.repository.join("snapshots"))?;
        let bytes = fs::read(&pack)?;
        let count = i64::from(u32::from_le_bytes(bytes[bytes.len() - 12..bytes.len() - 8].try_into()?));
        // Before the 12-byte trailer: the footer, its entries and their 16-byte seal.
        let footer = 50 * count + 16;
        match case {
            "data" => flip(&pack, 200)?,
            // Inside the last blob's sealed bytes, before its tag.
            "tree" => flip(&pack, -(12 + footer + 16 + 3))?,
            "footer" => flip(&pack, -20)?,
            "trailer" => flip(&pack, -3)?,
            "header" => flip(&pack, 50)?,
            _ => flip(&manifest, -3)?,
        }
        let output = run(&project, &["check", "--read-data"], Some(PASSWORD))?;
        let stdout = String::from_utf8(output.stdout)?;
        assert_eq!(output.status.code(), Some(1), "{case}: {stdout}");
        let named = if case == "manifest" { id[..12].to_owned() } else { pack.display().to_string() };
        assert!(stdout.contains(&named), "{case}: check names {named}: {stdout}");
        let target = project.root().join("restored");
        let restored = run(&project, &["restore", &id[..12], "--to", target.to_str().ok_or("utf-8")?], Some(PASSWORD))?;
        let read = fs::read(target.join("uploads/data.bin")).unwrap_or_default();
        if case == "footer" || case == "trailer" {
            // Footer and trailer are only the index's source: the blobs they describe
            // are intact and the catalog still places them, so they restore, rightly.
            assert!(restored.status.success(), "{case}: {}", String::from_utf8_lossy(&restored.stderr));
            assert_eq!(read, noise(9, 100_000), "{case}: restored byte for byte");
        } else {
            assert!(!restored.status.success(), "{case}: a damaged snapshot is not restored");
            assert!(read.is_empty(), "{case}: nothing restored from damaged data");
        }
    }
    Ok(())
}

#[test]
fn a_flipped_byte_in_a_sealed_record_is_named_by_check() -> TestResult {
    let project = encrypted_project(&format!("{MOUNT_CONFIG}\n[retention]\npreset = \"essential\"\n"))?;
    fs::create_dir_all(project.root().join("var/uploads"))?;
    fs::write(project.root().join("var/uploads/a.txt"), "a")?;
    ok(&project, &["backup"], PASSWORD)?;
    // A restore in place records itself for `undo`.
    ok(&project, &["restore", "--yes"], PASSWORD)?;
    // A branch with a snapshot, then deleted: forget records since when it is gone.
    common::git(project.root(), &["branch", "feature"])?;
    ok(&project, &["backup", "--env", "feature"], PASSWORD)?;
    common::git(project.root(), &["branch", "-D", "feature"])?;
    ok(&project, &["forget"], PASSWORD)?;
    assert!(ok(&project, &["check", "--read-data"], PASSWORD)?.contains("no errors"));
    for records in ["restores", "gone"] {
        let record = only_file(&project.repository.join(records))?;
        flip(&record, -3)?;
        let output = run(&project, &["check", "--read-data"], Some(PASSWORD))?;
        let stdout = String::from_utf8(output.stdout)?;
        assert_eq!(output.status.code(), Some(1), "{records}: {stdout}");
        let line = format!(
            "damaged record: {}",
            if records == "gone" { "the record of a deleted branch" } else { "restore record" }
        );
        assert!(stdout.contains(&line) && stdout.contains(&record.display().to_string()), "{records}: {stdout}");
        let stderr = String::from_utf8(output.stderr)?;
        assert!(stderr.contains("every snapshot is restorable"), "{records}: {stderr}");
        flip(&record, -3)?;
    }
    assert!(ok(&project, &["check", "--read-data"], PASSWORD)?.contains("no errors"), "flipped back, whole again");
    Ok(())
}

#[test]
fn a_flipped_byte_in_a_key_file_is_named_by_check() -> TestResult {
    let project = encrypted_project(MOUNT_CONFIG)?;
    let second = project.root().join("second.txt");
    fs::write(&second, "a teammate's password\n")?;
    ok(&project, &["key", "add", "--new-password-file", second.to_str().ok_or("utf-8")?], PASSWORD)?;
    let listed = ok(&project, &["key", "list", "--json"], PASSWORD)?;
    let keys: Vec<serde_json::Value> = serde_json::from_str(&listed)?;
    let teammate = keys.iter().find(|key| key["in_use"] == false).ok_or("the added key")?;
    let file = project.repository.join("keys").join(teammate["id"].as_str().ok_or("id")?);
    // A byte of its sealed keys: still JSON, but the MAC shows the change.
    let text = fs::read_to_string(&file)?;
    let at = text.find("\"sealed\": \"").ok_or("sealed")? + 20;
    let mut bytes = text.into_bytes();
    bytes[at] = if bytes[at] == b'0' { b'1' } else { b'0' };
    fs::write(&file, bytes)?;
    let output = run(&project, &["check", "--read-data"], Some(PASSWORD))?;
    let stdout = String::from_utf8(output.stdout)?;
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains(&file.display().to_string()) && stdout.contains("MAC"), "{stdout}");
    let teammate_password = "a teammate's password";
    let refused = fails(&project, &["list"], Some(teammate_password))?;
    assert!(refused.contains("wrong password"), "{refused}");
    Ok(())
}

#[test]
fn keys_are_added_changed_and_removed_without_rewriting_any_data() -> TestResult {
    let project = encrypted_project(MOUNT_CONFIG)?;
    fs::create_dir_all(project.root().join("var/uploads"))?;
    fs::write(project.root().join("var/uploads/a.txt"), "a")?;
    ok(&project, &["backup"], PASSWORD)?;
    let data_before = stored_data(&project.repository)?;

    let teammate = project.root().join("teammate.txt");
    fs::write(&teammate, "teammate\n")?;
    ok(&project, &["key", "add", "--new-password-file", teammate.to_str().ok_or("utf-8")?], PASSWORD)?;
    assert_eq!(ok(&project, &["list", "--json"], "teammate")?, ok(&project, &["list", "--json"], PASSWORD)?);

    // passwd changes the key in use: the old password stops working, the new one works.
    let changed = project.root().join("changed.txt");
    fs::write(&changed, "changed\n")?;
    ok(&project, &["key", "passwd", "--new-password-file", changed.to_str().ok_or("utf-8")?], PASSWORD)?;
    assert!(fails(&project, &["list"], Some(PASSWORD))?.contains("wrong password"));
    ok(&project, &["list"], "changed")?;

    // The teammate's key goes; the last read key cannot.
    let keys: Vec<serde_json::Value> = serde_json::from_str(&ok(&project, &["key", "list", "--json"], "changed")?)?;
    assert_eq!(keys.len(), 2);
    let theirs = keys.iter().find(|key| key["in_use"] == false).ok_or("teammate's key")?["id"].as_str().ok_or("id")?;
    let mine = keys.iter().find(|key| key["in_use"] == true).ok_or("key in use")?["id"].as_str().ok_or("id")?;
    ok(&project, &["key", "remove", theirs], "changed")?;
    assert!(fails(&project, &["list"], Some("teammate"))?.contains("wrong password"));
    let last = fails(&project, &["key", "remove", mine], Some("changed"))?;
    assert!(last.contains("last read key"), "{last}");
    ok(&project, &["list"], "changed")?;

    assert_eq!(stored_data(&project.repository)?, data_before, "no pack or manifest was rewritten");
    Ok(())
}

/// The bytes of every pack and manifest.
fn stored_data(repository: &Path) -> Result<Vec<(PathBuf, Vec<u8>)>, std::io::Error> {
    let mut files = files_under(&repository.join("packs"))?;
    files.extend(files_under(&repository.join("snapshots"))?);
    files.sort();
    files.into_iter().map(|file| fs::read(&file).map(|bytes| (file, bytes))).collect()
}

#[test]
fn a_write_only_key_backs_up_and_deduplicates_but_reads_nothing() -> TestResult {
    let project = encrypted_project(MOUNT_CONFIG)?;
    let uploads = project.root().join("var/uploads");
    fs::create_dir_all(&uploads)?;
    fs::write(uploads.join("big.bin"), noise(5, 3 << 20))?;
    let first = ok(&project, &["backup"], PASSWORD)?.trim().to_owned();
    let host = project.root().join("host.txt");
    fs::write(&host, "host only\n")?;
    let added =
        ok(&project, &["key", "add", "--write-only", "--new-password-file", host.to_str().ok_or("utf-8")?], PASSWORD)?;
    assert!(added.contains("write-only"), "{added}");

    fs::write(uploads.join("new.txt"), "written by the host")?;
    let packs_before = files_under(&project.repository.join("packs"))?.len();
    let by_host = ok(&project, &["backup", "--json"], "host only")?;
    let by_host: serde_json::Value = serde_json::from_str(&by_host)?;
    let stored = by_host["stored"].as_u64().ok_or("stored")?;
    assert!(stored < 1 << 20, "the 3 MiB already stored is deduplicated, not stored again: {stored} bytes");
    assert_eq!(files_under(&project.repository.join("packs"))?.len(), packs_before + 1);
    let host_id = by_host["id"].as_str().ok_or("id")?.to_owned();

    let target = project.root().join("out");
    let out = target.to_str().ok_or("utf-8")?;
    let archive = project.root().join("uploads.tar.gz");
    for args in [
        vec!["restore", &first[..12], "--to", out],
        vec!["restore", "--to", out],
        vec!["diff", &first[..12], &host_id[..12]],
        vec!["export", &first[..12], "--element", "uploads", "--to", archive.to_str().ok_or("utf-8")?],
        vec!["mount", out],
    ] {
        let refused = fails(&project, &args, Some("host only"))?;
        assert!(refused.contains("write-only"), "{args:?}: {refused}");
    }
    assert!(!target.exists() && !archive.exists(), "nothing was written");
    // A read key restores what the write-only key stored.
    ok(&project, &["restore", &host_id[..12], "--to", out], PASSWORD)?;
    assert_eq!(fs::read(target.join("uploads/new.txt"))?, b"written by the host");
    assert_eq!(fs::read(target.join("uploads/big.bin"))?, noise(5, 3 << 20));
    // It cannot make itself a read key.
    let refused =
        fails(&project, &["key", "add", "--new-password-file", host.to_str().ok_or("utf-8")?], Some("host only"))?;
    assert!(refused.contains("write-only"), "{refused}");
    Ok(())
}

#[test]
fn an_unencrypted_config_over_an_encrypted_store_is_refused() -> TestResult {
    let project = encrypted_project(MOUNT_CONFIG)?;
    let config = project.repository.join("config.json");
    let text = fs::read_to_string(&config)?;
    let downgraded: serde_json::Value = serde_json::from_str(&text)?;
    let mut downgraded = downgraded.as_object().ok_or("object")?.clone();
    downgraded.insert("format".into(), 1.into());
    downgraded.remove("encryption");
    fs::write(&config, serde_json::to_vec(&downgraded)?)?;
    let refused = fails(&project, &["list"], Some(PASSWORD))?;
    assert!(refused.contains("key files"), "{refused}");
    Ok(())
}
