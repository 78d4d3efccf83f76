//! `envsnap export` (alias `backup:get`): standard files that need no envsnap, checked
//! with the tools people would use on them: `tar`, `gunzip`, `sqlite3`, `redis-server`.

mod common;
mod redis_server;

use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::Path;
use std::process::Command;

use common::{Project, TestResult, assert_same_tree, noise};
use redis_server::{RedisServer, assert_same_keys, fill};

fn run(program: &str, args: &[&str], dir: &Path) -> Result<Vec<u8>, Box<dyn std::error::Error>> {
    let output = Command::new(program).args(args).current_dir(dir).output()?;
    if !output.status.success() {
        return Err(format!("{program} {args:?}: {}", String::from_utf8_lossy(&output.stderr)).into());
    }
    Ok(output.stdout)
}

/// A tree with what a tar archive must carry: modes, nanosecond times, symlinks, hard
/// links, empty and multi-chunk files, long names.
fn make_tree(root: &Path) -> TestResult {
    let deep = root.join("a/b/c").join("d".repeat(60)).join("e".repeat(60));
    fs::create_dir_all(&deep)?;
    fs::write(deep.join("f".repeat(120)), b"deep and long")?;
    fs::write(root.join("empty"), b"")?;
    fs::write(root.join("big.bin"), noise(1, 3 << 20))?;
    fs::write(root.join("script.sh"), b"#!/bin/sh\necho hi\n")?;
    fs::set_permissions(root.join("script.sh"), fs::Permissions::from_mode(0o750))?;
    fs::write(root.join("a/secret"), b"private")?;
    fs::set_permissions(root.join("a/secret"), fs::Permissions::from_mode(0o600))?;
    fs::hard_link(root.join("a/secret"), root.join("a/b/secret-link"))?;
    symlink("../empty", root.join("a/link-to-empty"))?;
    symlink("/nowhere/at/all", root.join("dangling"))?;
    fs::set_permissions(root.join("a/b"), fs::Permissions::from_mode(0o700))?;
    let time = filetime::FileTime::from_unix_time(1_600_000_000, 123_456_789);
    filetime::set_file_mtime(root.join("big.bin"), time)?;
    filetime::set_file_mtime(root.join("a/b/c"), filetime::FileTime::from_unix_time(1_500_000_000, 5))?;
    Ok(())
}

#[test]
fn a_mount_exports_as_tar_gz_and_tar_zst_that_tar_extracts_identically() -> TestResult {
    let project = Project::new("production = \"main\"\n\n[[mount]]\nname = \"uploads\"\npath = \"var/uploads\"\n")?;
    project.ok(&["init"])?;
    let source = project.root().join("var/uploads");
    make_tree(&source)?;
    let id = project.backup(&[])?;
    let out = project.root().join("out");
    fs::create_dir(&out)?;
    for (name, flags) in [("uploads.tar.gz", "-xpzf"), ("uploads.tar.zst", "--zstd -xpf"), ("uploads.tar", "-xpf")] {
        let archive = out.join(name);
        project.ok(&["export", &id[..12], "--element", "uploads", "--to", archive.to_str().ok_or("utf-8")?])?;
        let extracted = out.join(format!("{name}.d"));
        fs::create_dir(&extracted)?;
        let mut args: Vec<&str> = flags.split(' ').collect();
        args.extend([archive.to_str().ok_or("utf-8")?, "-C", extracted.to_str().ok_or("utf-8")?]);
        run("tar", &args, project.root())?;
        assert_same_tree(&source, &extracted.join("uploads")).map_err(|error| format!("{name}: {error}"))?;
    }
    Ok(())
}

#[test]
fn services_export_as_their_dump_files() -> TestResult {
    let server = RedisServer::start(None, &[])?;
    let config = format!(
        r#"
production = "main"

[[service]]
name = "notes"
type = "command"
dump = "cat var/notes.sql"
restore = "cat > var/notes.sql"
extension = "sql"

[[service]]
name = "app"
type = "sqlite"
path = "var/app.sqlite"

[[service]]
name = "cache"
type = "redis"
url = "{}"
"#,
        server.url(Some(3))
    );
    let project = Project::new(&config)?;
    project.ok(&["init"])?;
    let var = project.root().join("var");
    fs::create_dir_all(&var)?;
    let sql: String = (0..20_000).map(|n| format!("INSERT INTO notes VALUES ({n}, 'note {n}');\n")).collect();
    fs::write(var.join("notes.sql"), &sql)?;
    run(
        "sqlite3",
        &[var.join("app.sqlite").to_str().ok_or("utf-8")?, "CREATE TABLE t (x); INSERT INTO t VALUES (1), (2), (3);"],
        &var,
    )?;
    let mut client = server.client()?;
    fill(&mut client, 3, "")?;
    let keys = client.describe(3)?;
    let captured = std::time::Instant::now();
    let id = project.backup(&[])?;
    let out = project.root().join("out");
    fs::create_dir(&out)?;
    let export = |element: &str, name: &str| -> Result<std::path::PathBuf, Box<dyn std::error::Error>> {
        let path = out.join(name);
        project.ok(&["export", &id[..12], "--element", element, "--to", path.to_str().ok_or("utf-8")?])?;
        Ok(path)
    };

    let gz = export("notes", "notes.sql.gz")?;
    assert_eq!(run("gzip", &["-dc", gz.to_str().ok_or("utf-8")?], &out)?, sql.as_bytes(), "gunzip gives the dump");
    assert_eq!(fs::read(export("notes", "notes.sql")?)?, sql.as_bytes());
    let zst = export("notes", "notes.sql.zst")?;
    assert_eq!(run("zstd", &["-dc", zst.to_str().ok_or("utf-8")?], &out)?, sql.as_bytes());

    let sqlite = export("app", "app.sqlite")?;
    let answer =
        run("sqlite3", &[sqlite.to_str().ok_or("utf-8")?, "PRAGMA integrity_check; SELECT sum(x) FROM t;"], &out)?;
    assert_eq!(String::from_utf8(answer)?, "ok\n6\n");

    // The .rdb loads into a fresh server as it is, its keys in their database.
    let rdb = export("cache", "cache.rdb")?;
    let loaded = RedisServer::start(None, &["--dir", out.to_str().ok_or("utf-8")?, "--dbfilename", "cache.rdb"])?;
    assert_same_keys(&keys, &loaded.client()?.describe(3)?, captured.elapsed())?;
    assert!(rdb.exists(), "loading did not consume the file");

    // A name that fits no format says which ones fit.
    let stderr = project.fails(&["export", &id[..12], "--element", "cache", "--to", "cache.sql.gz"], 1)?;
    assert!(stderr.contains(".rdb, .rdb.gz, .rdb.zst, .tar, .tar.gz, .tar.zst"), "{stderr}");
    let stderr = project.fails(&["export", &id[..12], "--element", "app", "--to", "app.zip"], 1)?;
    assert!(stderr.contains(".sqlite"), "{stderr}");
    Ok(())
}

#[test]
fn an_export_never_overwrites_nor_leaves_a_partial_file() -> TestResult {
    let project = Project::new("production = \"main\"\n\n[[mount]]\nname = \"uploads\"\npath = \"var/uploads\"\n")?;
    project.ok(&["init"])?;
    let source = project.root().join("var/uploads");
    fs::create_dir_all(&source)?;
    fs::write(source.join("data.bin"), noise(7, 2 << 20))?;
    let id = project.backup(&[])?;

    let existing = project.root().join("existing.tar.gz");
    fs::write(&existing, b"mine")?;
    let stderr = project.fails(&["backup:get", &id[..12], "--element", "uploads", "--to", "existing.tar.gz"], 1)?;
    assert!(stderr.contains("already exists"), "{stderr}");
    assert_eq!(fs::read(&existing)?, b"mine");

    let stderr = project.fails(&["export", &id[..12], "--element", "nope", "--to", "x.tar.gz"], 1)?;
    assert!(stderr.contains("no element named `nope`") && stderr.contains("uploads"), "{stderr}");

    // Damage every pack: the export fails and leaves nothing behind.
    for entry in walk(&project.repository.join("packs"))? {
        let mut bytes = fs::read(&entry)?;
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0xff;
        fs::write(&entry, bytes)?;
    }
    project.fails(&["export", &id[..12], "--element", "uploads", "--to", "broken.tar.zst"], 1)?;
    assert!(!project.root().join("broken.tar.zst").exists());
    assert!(!project.root().join("broken.tar.zst.partial").exists());

    // The platform's name for the verb is an alias of export.
    let help = project.ok(&["help", "export"])?;
    assert!(help.contains("--element"), "{help}");
    Ok(())
}

fn walk(dir: &Path) -> Result<Vec<std::path::PathBuf>, std::io::Error> {
    let mut files = Vec::new();
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() { files.extend(walk(&path)?) } else { files.push(path) }
    }
    Ok(files)
}
