//! The Redis adapter against real servers: one throw-away `redis-server` per test, so
//! nothing is shared. Every key is compared with its type, whole value and remaining
//! TTL.

mod common;
mod redis_server;

use std::fs;
use std::time::{Duration, Instant};

use common::{Project, TestResult};
use redis_server::{RedisServer, Value, assert_same_keys, fill};

fn config(url: &str) -> String {
    format!(
        r#"
production = "main"

[[service]]
name = "cache"
type = "redis"
url = "{url}"
"#
    )
}

#[test]
fn one_database_round_trips_every_type_with_expiries_and_restores_into_another_branch() -> TestResult {
    let sockets = tempfile::Builder::new().prefix("envsnap-sockets-").tempdir()?;
    let main = RedisServer::start(Some(&sockets.path().join("redis-main.sock")), &[])?;
    let staging = RedisServer::start(Some(&sockets.path().join("redis-staging.sock")), &[])?;
    // Each branch has a server of its own, reached through its socket.
    let url = format!("unix://{}/redis-{{branch}}.sock?db=3", sockets.path().display());
    let project = Project::new(&config(&url))?;
    project.ok(&["init"])?;

    let mut client = main.client()?;
    fill(&mut client, 3, "")?;
    client.ok(&["SET", "short-lived", "gone by the restore", "PX", "1500"])?;
    client.select(4)?;
    client.ok(&["SET", "other-db", "not part of the service"])?;
    let mut staging_client = staging.client()?;
    staging_client.select(3)?;
    staging_client.ok(&["SET", "staging-only", "replaced by the restore"])?;
    staging_client.select(5)?;
    staging_client.ok(&["SET", "staging-other-db", "untouched"])?;

    let mut original = client.describe(3)?;
    let captured = Instant::now();
    let id = project.backup(&[])?;
    let snapshot = &project.snapshots()?[0];
    assert_eq!(snapshot["elements"][0]["kind"], "service");
    assert!(snapshot["elements"][0]["size"].as_u64().unwrap_or(0) > 20_000, "{snapshot}");

    // Change everything: values, TTLs, keys added and removed.
    client.select(3)?;
    client.ok(&["SET", "string", "changed"])?;
    client.ok(&["DEL", "hash-big", "stream"])?;
    client.ok(&["PERSIST", "session"])?;
    client.ok(&["SET", "added-later", "x"])?;
    std::thread::sleep(Duration::from_millis(1600).saturating_sub(captured.elapsed()));

    project.ok(&["restore", &id[..12], "--yes"])?;
    // A key whose expiry passed since the capture is not brought back.
    assert!(original.remove(&b"short-lived"[..]).is_some());
    assert_same_keys(&original, &client.describe(3)?, captured.elapsed())?;
    client.select(4)?;
    assert_eq!(client.ok(&["GET", "other-db"])?, Value::Bytes(b"not part of the service".to_vec()));

    project.ok(&["restore", &id[..12], "--target", "staging", "--branch-from", "main", "--yes"])?;
    assert_same_keys(&original, &staging_client.describe(3)?, captured.elapsed())?;
    staging_client.select(5)?;
    assert_eq!(staging_client.ok(&["GET", "staging-other-db"])?, Value::Bytes(b"untouched".to_vec()));
    assert_same_keys(&original, &client.describe(3)?, captured.elapsed())?;
    // The safety snapshot took staging's own data before it was replaced.
    let safety = project.snapshots()?.into_iter().find(|s| s["trigger"] == "safety" && s["env"] == "staging");
    assert!(safety.is_some(), "a safety snapshot of staging was taken");
    Ok(())
}

#[test]
fn a_whole_instance_round_trips_every_database_and_its_functions() -> TestResult {
    let server = RedisServer::start(None, &[])?;
    let project = Project::new(&config(&server.url(None)))?;
    project.ok(&["init"])?;
    let mut client = server.client()?;
    fill(&mut client, 0, "zero:")?;
    fill(&mut client, 2, "two:")?;
    client.select(9)?;
    client.ok(&["SET", "nine", "9"])?;
    let library = "#!lua name=envsnaplib\nredis.register_function('hello', function() return 'hi' end)";
    client.ok(&["FUNCTION", "LOAD", library])?;
    let before: Vec<_> = (0..16).map(|db| client.describe(db)).collect::<Result<_, _>>()?;
    let captured = Instant::now();
    let id = project.backup(&[])?;

    client.ok(&["FLUSHALL"])?;
    client.ok(&["FUNCTION", "FLUSH"])?;
    client.select(5)?;
    client.ok(&["SET", "stray", "removed by the restore"])?;
    project.ok(&["restore", &id[..12], "--yes"])?;
    for (db, keys) in before.iter().enumerate() {
        assert_same_keys(keys, &client.describe(db as u32)?, captured.elapsed())
            .map_err(|e| format!("db {db}: {e}"))?;
    }
    assert_eq!(client.ok(&["FCALL", "hello", "0"])?, Value::Bytes(b"hi".to_vec()), "the function library is back");

    // A whole instance does not fit into one database: refused before anything changes.
    fs::write(project.root().join("envsnap.toml"), config(&server.url(Some(5))))?;
    client.select(5)?;
    client.ok(&["SET", "kept", "1"])?;
    let stderr = project.fails(&["restore", &id[..12], "--yes", "--no-safety-snapshot"], 1)?;
    assert!(stderr.contains("whole instance"), "{stderr}");
    assert_eq!(client.ok(&["GET", "kept"])?, Value::Bytes(b"1".to_vec()));
    // The dry run makes the same check, and the restore makes it before it takes a
    // safety snapshot.
    let stderr = project.fails(&["restore", &id[..12], "--dry-run"], 1)?;
    assert!(stderr.contains("whole instance"), "{stderr}");
    let snapshots = project.snapshots()?.len();
    let stderr = project.fails(&["restore", &id[..12], "--yes"], 1)?;
    assert!(stderr.contains("whole instance"), "{stderr}");
    assert_eq!(project.snapshots()?.len(), snapshots, "no safety snapshot was taken");
    assert_eq!(client.ok(&["GET", "kept"])?, Value::Bytes(b"1".to_vec()));
    Ok(())
}

#[test]
fn a_server_that_refuses_sync_is_captured_key_by_key() -> TestResult {
    let server = RedisServer::start(None, &["--rename-command", "SYNC", ""])?;
    let project = Project::new(&config(&server.url(Some(1))))?;
    project.ok(&["init"])?;
    let mut client = server.client()?;
    fill(&mut client, 1, "")?;
    let original = client.describe(1)?;
    let captured = Instant::now();
    let id = project.backup(&[])?;
    let out = project.root().join("out");
    project.ok(&["restore", &id[..12], "--to", out.to_str().ok_or("utf-8")?])?;
    let dump = fs::read(out.join("cache/dump.rdb"))?;
    assert!(dump.starts_with(b"REDIS00"), "an RDB file");
    assert!(dump.windows(4).any(|window| window == b"scan"), "it says how it was taken");

    client.ok(&["FLUSHDB"])?;
    project.ok(&["restore", &id[..12], "--yes"])?;
    assert_same_keys(&original, &client.describe(1)?, captured.elapsed())?;
    Ok(())
}

#[test]
fn a_server_that_does_not_answer_fails_the_snapshot_and_names_it() -> TestResult {
    let project = Project::new(&config("redis://127.0.0.1:1/0"))?;
    project.ok(&["init"])?;
    let stderr = project.fails(&["backup"], 1)?;
    assert!(stderr.contains("service `cache`") && stderr.contains("redis://127.0.0.1:1/0"), "{stderr}");
    assert!(stderr.contains("cannot connect"), "{stderr}");
    assert!(project.snapshots()?.is_empty(), "no snapshot is recorded");

    let stderr = project.fails(&["backup"], 1)?;
    assert!(!stderr.contains("panicked"), "{stderr}");
    fs::write(project.root().join("envsnap.toml"), config("redis://127.0.0.1:6379/db-three"))?;
    let stderr = project.fails(&["backup"], 1)?;
    assert!(stderr.contains("service `cache`: its url names database `db-three`"), "{stderr}");
    Ok(())
}

#[test]
fn a_wrong_or_missing_password_is_reported_without_showing_it() -> TestResult {
    let server = RedisServer::start(None, &[])?;
    let mut client = server.client()?;
    client.ok(&["SET", "kept", "yes"])?;
    client.ok(&["CONFIG", "SET", "requirepass", "right-horse-battery"])?;
    let url = server.url(Some(0));
    let project = Project::new(&config(&url.replace("redis://", "redis://:wrong-staple@")))?;
    project.ok(&["init"])?;
    let stderr = project.fails(&["backup"], 1)?;
    assert!(stderr.contains("service `cache`") && stderr.contains("refused the password"), "{stderr}");
    assert!(stderr.contains("check the user and password in `url`") && !stderr.contains("wrong-staple"), "{stderr}");
    assert!(project.snapshots()?.is_empty(), "no snapshot is recorded");

    fs::write(project.root().join("envsnap.toml"), config(&url))?;
    let stderr = project.fails(&["backup"], 1)?;
    assert!(stderr.contains("service `cache`") && stderr.contains("the server wants a password"), "{stderr}");
    assert!(project.snapshots()?.is_empty(), "no snapshot is recorded");

    fs::write(project.root().join("envsnap.toml"), config(&url.replace("redis://", "redis://:${CACHE_PASSWORD}@")))?;
    let output = project.run_with_env(&["backup"], &[("CACHE_PASSWORD", "right-horse-battery".as_ref())])?;
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(project.snapshots()?.len(), 1);
    Ok(())
}

/// The peak resident memory of a process, sampled until it exits.
fn run_measuring_memory(
    mut command: std::process::Command,
) -> Result<(std::process::Output, u64), Box<dyn std::error::Error>> {
    let child = command.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).spawn()?;
    let status_file = format!("/proc/{}/status", child.id());
    let peak = std::thread::spawn(move || {
        let mut peak = 0u64;
        while let Ok(status) = fs::read_to_string(&status_file) {
            if let Some(kb) = status.lines().find_map(|line| line.strip_prefix("VmHWM:")) {
                peak = peak.max(kb.trim().trim_end_matches("kB").trim().parse().unwrap_or(0));
            }
            if status.contains("State:\tZ") {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        peak * 1024
    });
    let output = child.wait_with_output()?;
    let peak = peak.join().map_err(|_| "the sampler panicked")?;
    Ok((output, peak))
}

#[test]
fn a_large_dump_streams_through_in_flat_memory() -> TestResult {
    // 600 MB of values, stored uncompressed in the snapshot stream.
    let server = RedisServer::start(None, &["--rdbcompression", "no"])?;
    let project = Project::new(&config(&server.url(Some(0))))?;
    project.ok(&["init"])?;
    let mut client = server.client()?;
    client.ok(&["DEBUG", "POPULATE", "600000", "key", "1000"])?;
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_envsnap"));
    command.arg("backup").current_dir(project.root()).env("ENVSNAP_REPOSITORY", &project.repository);
    let (output, peak) = run_measuring_memory(command)?;
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let snapshot = &project.snapshots()?[0];
    let size = snapshot["elements"][0]["size"].as_u64().unwrap_or(0);
    assert!(size > 600_000_000, "the whole dump was captured: {size}");
    eprintln!("peak memory {} MiB for a {} MiB dump", peak >> 20, size >> 20);
    assert!(peak < 250 << 20, "peak memory {} MiB for a {} MiB dump", peak >> 20, size >> 20);
    Ok(())
}
