//! Services captured through their dump interface: the `command` adapter, which the
//! other adapters share their plumbing with (streams through the chunker, restore
//! from a verified stream, failures named).

mod common;

use std::fs;

use common::{Project, TestResult};

const CONFIG: &str = r#"
production = "main"

[[service]]
name = "notes"
type = "command"
dump = "cat var/{branch}/notes.txt"
restore = "cat > var/{branch}/notes.txt"
extension = "txt"
"#;

fn notes(project: &Project, slug: &str) -> std::path::PathBuf {
    project.root().join("var").join(slug).join("notes.txt")
}

#[test]
fn a_command_service_round_trips_and_restores_into_another_branch() -> TestResult {
    let project = Project::new(CONFIG)?;
    project.ok(&["init"])?;
    fs::create_dir_all(project.root().join("var/main"))?;
    let original: String = (0..200_000).map(|n| format!("line {n}\n")).collect();
    fs::write(notes(&project, "main"), &original)?;
    let id = project.backup(&[])?;
    let snapshot = &project.snapshots()?[0];
    assert_eq!(snapshot["elements"][0]["kind"], "service");
    assert_eq!(snapshot["elements"][0]["size"], original.len());

    fs::write(notes(&project, "main"), "overwritten\n")?;
    project.ok(&["restore", &id[..12], "--yes"])?;
    assert_eq!(fs::read_to_string(notes(&project, "main"))?, original, "the dump restored byte for byte");

    fs::create_dir_all(project.root().join("var/staging"))?;
    fs::write(notes(&project, "staging"), "staging's own data\n")?;
    project.ok(&["restore", &id[..12], "--target", "staging", "--branch-from", "main", "--yes"])?;
    assert_eq!(fs::read_to_string(notes(&project, "staging"))?, original);

    let out = project.root().join("out");
    project.ok(&["restore", &id[..12], "--to", out.to_str().ok_or("utf-8")?])?;
    assert_eq!(fs::read_to_string(out.join("notes/dump.txt"))?, original, "--to writes the dump as a file");
    Ok(())
}

#[test]
fn a_failing_dump_fails_the_snapshot_and_shows_its_stderr() -> TestResult {
    let config = CONFIG.replace("cat var/{branch}/notes.txt", "echo partial; echo disk on fire >&2; exit 3");
    let project = Project::new(&config)?;
    project.ok(&["init"])?;
    let stderr = project.fails(&["backup"], 1)?;
    assert!(
        stderr.contains("service `notes`") && stderr.contains("disk on fire") && stderr.contains("exit status: 3"),
        "{stderr}"
    );
    assert!(project.snapshots()?.is_empty(), "no snapshot is recorded");

    let missing = CONFIG.replace("cat var/{branch}/notes.txt", "no-such-dump-tool --all");
    fs::write(project.root().join("envsnap.toml"), missing)?;
    let stderr = project.fails(&["backup"], 1)?;
    assert!(stderr.contains("service `notes`") && stderr.contains("no-such-dump-tool"), "{stderr}");
    assert!(project.snapshots()?.is_empty());
    Ok(())
}

#[test]
fn a_failing_restore_command_says_how_to_go_back() -> TestResult {
    let project = Project::new(CONFIG)?;
    project.ok(&["init"])?;
    fs::create_dir_all(project.root().join("var/main"))?;
    fs::write(notes(&project, "main"), "data\n")?;
    let id = project.backup(&[])?;
    let broken = CONFIG.replace("cat > var/{branch}/notes.txt", "cat > /dev/null; echo refused >&2; exit 1");
    fs::write(project.root().join("envsnap.toml"), broken)?;
    let stderr = project.fails(&["restore", &id[..12], "--yes"], 1)?;
    assert!(stderr.contains("refused") && stderr.contains("envsnap undo"), "{stderr}");
    Ok(())
}

#[test]
fn an_unknown_service_type_is_refused_with_the_types_there_are() -> TestResult {
    let project = Project::new(&CONFIG.replace(r#"type = "command""#, r#"type = "mongodb""#))?;
    for args in [&["init"][..], &["backup"][..]] {
        let stderr = project.fails(args, 1)?;
        assert!(stderr.contains("envsnap.toml:6") && stderr.contains("mongodb"), "{stderr}");
        assert!(stderr.contains("postgresql") && stderr.contains("command"), "{stderr}");
    }
    assert!(!project.repository.join("snapshots").exists() || project.snapshots()?.is_empty());
    Ok(())
}

#[test]
fn a_backup_told_to_stop_stops_the_whole_dump_pipeline() -> TestResult {
    let project = Project::new(
        // The sleep ignores SIGINT, as a careless tool may: it is killed all the same.
        "[[service]]\nname = \"slow\"\ntype = \"command\"\ndump = \"sh -c \\\"trap '' INT; sleep 300\\\" | cat\"\n\
         restore = \"cat > /dev/null\"\n",
    )?;
    project.ok(&["init"])?;
    for signal in ["-TERM", "-INT", "-HUP"] {
        let mut backup = project.start(&["backup"], &[])?;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let mut tools = Vec::new();
        // sh, sh, sleep and cat.
        while tools.len() < 4 && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(20));
            tools = common::descendants(backup.id());
        }
        assert!(tools.len() >= 4, "the dump runs: {tools:?}");
        common::signal(backup.id(), signal)?;
        let output = common::wait_at_most(&mut backup, 15)?;
        assert!(!output.status.success(), "{signal}: {:?}", output.status);
        std::thread::sleep(std::time::Duration::from_millis(200));
        let left: Vec<u32> = tools.iter().copied().filter(|&pid| common::running(pid)).collect();
        assert!(left.is_empty(), "{signal}: processes of the dump left running: {left:?}");
    }
    Ok(())
}
