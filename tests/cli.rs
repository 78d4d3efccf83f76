//! The command line as a user coming from the hosting platforms types it: their
//! aliases and `--yes`, what `latest` names, the columns of `list`, restores into new
//! branches, secrets a command does not need, and what `-v` says.

mod common;

use std::fs;

use common::{Project, TestResult, git};

const CONFIG: &str = r#"
production = "main"

[[mount]]
name = "files"
path = "var/files"

[[mount]]
name = "cache"
path = "var/cache"
"#;

type Fallible<T> = Result<T, Box<dyn std::error::Error>>;

/// A project on `main` with data in both mounts, and a repository.
fn project() -> Fallible<Project> {
    let project = Project::new(CONFIG)?;
    fs::write(project.root().join(".gitignore"), "var/\nstore/\n")?;
    git(project.root(), &["add", "."])?;
    git(project.root(), &["commit", "-q", "-m", "config"])?;
    write(&project, "files", "one")?;
    write(&project, "cache", "one")?;
    project.ok(&["init"])?;
    Ok(project)
}

fn write(project: &Project, mount: &str, text: &str) -> TestResult {
    let dir = project.root().join("var").join(mount);
    fs::create_dir_all(&dir)?;
    fs::write(dir.join("data.txt"), text)?;
    Ok(())
}

fn read(project: &Project, mount: &str) -> Fallible<String> {
    Ok(fs::read_to_string(project.root().join("var").join(mount).join("data.txt"))?)
}

fn ids(project: &Project) -> Fallible<Vec<String>> {
    Ok(project.snapshots()?.iter().filter_map(|snapshot| snapshot["id"].as_str().map(str::to_owned)).collect())
}

#[test]
fn the_platforms_cron_line_backup_create_yes_takes_a_snapshot() -> TestResult {
    let project = project()?;
    let id = project.ok(&["backup:create", "--yes"])?;
    assert_eq!(ids(&project)?, [id.trim()]);
    project.ok(&["backup", "-y", "--note", "nightly"])?;
    assert_eq!(project.snapshots()?.len(), 2);
    Ok(())
}

#[test]
fn deleting_a_production_snapshot_asks_and_needs_yes_without_a_terminal() -> TestResult {
    let project = project()?;
    let production = project.backup(&[])?;
    let refused = project.fails(&["backup:delete", &production[..12]], 1)?;
    assert!(refused.contains("protected environment") && refused.contains("run it again with --yes"), "{refused}");
    assert_eq!(ids(&project)?, [production.as_str()], "nothing was deleted");
    let said = project.ok(&["snapshot:delete", &production[..12], "--yes"])?;
    assert!(said.starts_with(&format!("deleted snapshot {}", &production[..12])), "{said}");
    assert!(ids(&project)?.is_empty());

    // A development branch's snapshot goes without a question.
    git(project.root(), &["checkout", "-q", "-b", "feature"])?;
    let feature = project.backup(&[])?;
    project.ok(&["delete", &feature[..12]])?;
    assert!(ids(&project)?.is_empty());
    Ok(())
}

#[test]
fn latest_is_the_newest_whole_snapshot_never_a_safety_or_partial_one() -> TestResult {
    let project = project()?;
    let whole = project.backup(&[])?;
    write(&project, "files", "two")?;
    write(&project, "cache", "two")?;
    let partial = project.backup(&["--element", "files"])?;
    let listed = project.snapshots()?;
    assert_eq!(listed[0]["partial"], true, "{}", listed[0]);
    assert_eq!(listed[1]["partial"], false, "{}", listed[1]);

    // A plain restore brings back the whole environment as the whole snapshot had it.
    write(&project, "files", "three")?;
    write(&project, "cache", "three")?;
    project.ok(&["restore", "--yes"])?;
    assert_eq!((read(&project, "files")?, read(&project, "cache")?), ("one".into(), "one".into()));
    // Right after a restore, `latest` is still that snapshot, not the safety one.
    let newest = &project.snapshots()?[0];
    assert_eq!(newest["trigger"], "safety");
    let shown: serde_json::Value = serde_json::from_str(&project.ok(&["show", "latest", "--json"])?)?;
    assert_eq!(shown["id"], whole.as_str());
    write(&project, "files", "four")?;
    project.ok(&["restore", "--yes"])?;
    assert_eq!(read(&project, "files")?, "one", "restore did not do what undo does");

    // The partial snapshot is still there, by id, and says what it holds.
    let table = project.ok(&["list", "--columns", "id,elements"])?;
    assert!(table.contains(&format!("{}  files (partial)", &partial[..12])), "{table}");
    assert!(table.contains(&format!("{}  files cache\n", &whole[..12])), "{table}");
    let help = project.ok(&["restore", "--help"])?.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(help.contains("never a safety snapshot") && help.contains("nor a partial --element one"), "{help}");
    Ok(())
}

#[test]
fn list_shows_pins_notes_expiry_mode_and_stored_and_csv_is_for_programs() -> TestResult {
    let project = project()?;
    let kept = project.backup(&["--note", "before, the \"upgrade\"", "--keep-for", "3", "--live"])?;
    let other = project.backup(&[])?;
    project.ok(&["pin", &kept[..12]])?;

    let json: Vec<serde_json::Value> = serde_json::from_str(&project.ok(&["list", "--json"])?)?;
    let pinned: Vec<bool> = json.iter().filter_map(|snapshot| snapshot["pinned"].as_bool()).collect();
    assert_eq!(pinned, [false, true], "newest first: {json:?}");

    let csv = project.ok(&[
        "list",
        "--format",
        "csv",
        "--columns",
        "id,created,elements,pinned,note,expires,mode,size,stored",
    ])?;
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines[0], "Snapshot ID,Created,Elements,Pinned,Note,Expires,Mode,Size,Stored");
    let created = json[1]["created"].as_str().ok_or("a time")?;
    let expires = json[1]["expires"].as_str().ok_or("an expiry")?;
    assert!(created.ends_with('Z') && created.contains('T'), "RFC 3339 in UTC: {created}");
    let size = json[1]["size"].as_u64().ok_or("a size")?;
    let stored = json[1]["stored"].as_u64().ok_or("a stored size")?;
    assert_eq!(
        lines[2],
        format!(
            "{},{created},files cache,true,\"before, the \"\"upgrade\"\"\",{expires},live,{size},{stored}",
            &kept[..12]
        )
    );
    assert!(lines[1].starts_with(&format!("{},", &other[..12])) && lines[1].contains(",false,,,consistent,"));

    // The table shows the same for people, the pinned one and its note among them.
    let table = project.ok(&["list"])?;
    let header = table.lines().next().ok_or("a header")?;
    for column in ["Elements", "Pinned", "Note"] {
        assert!(header.contains(column), "{header}");
    }
    let row = table.lines().find(|line| line.contains(&kept[..12])).ok_or("the pinned row")?;
    assert!(row.contains("true") && row.contains("before, the \"upgrade\""), "{row}");
    Ok(())
}

#[test]
fn branch_from_is_checked_before_anything_is_taken() -> TestResult {
    let project = Project::new(&CONFIG.replace("var/files", "var/{branch}/files"))?;
    fs::write(project.root().join(".gitignore"), "var/\nstore/\n")?;
    let files = project.root().join("var/main/files");
    fs::create_dir_all(&files)?;
    fs::write(files.join("data.txt"), "main")?;
    fs::create_dir_all(project.root().join("var/cache"))?;
    project.ok(&["init"])?;
    let snapshot = project.backup(&[])?;
    // Data already where the new branch's files go: a restore overwrites it.
    fs::create_dir_all(project.root().join("var/fresh/files"))?;
    fs::write(project.root().join("var/fresh/files/data.txt"), "left over")?;

    let said = project.fails(&["restore", "--target", "fresh", "--branch-from", "no-such-branch", "--yes"], 1)?;
    assert!(said.contains("`no-such-branch` names no commit") && said.contains("nothing was changed"), "{said}");
    assert_eq!(ids(&project)?, [snapshot.as_str()], "no safety snapshot was taken");
    let said = project.fails(&["restore", "--target", "main", "--branch-from", "main", "--yes"], 1)?;
    assert!(said.contains("branch `main` exists already") && said.contains("without --branch-from"), "{said}");
    assert_eq!(ids(&project)?.len(), 1);

    // A dry run says what it would create, then the restore creates it.
    let planned = project.ok(&["restore", "--target", "fresh", "--branch-from", "main", "--dry-run"])?;
    assert!(planned.contains("would create branch `fresh` from `main`"), "{planned}");
    project.ok(&["restore", "--target", "fresh", "--branch-from", "main", "--yes"])?;
    assert_eq!(fs::read_to_string(project.root().join("var/fresh/files/data.txt"))?, "main");
    // The safety snapshot of what was there records the commit the branch starts at,
    // so `--at` finds it.
    let main = git(project.root(), &["rev-parse", "main"])?;
    let safety = project.snapshots()?.into_iter().find(|snapshot| snapshot["trigger"] == "safety");
    let safety = safety.ok_or("a safety snapshot")?;
    assert_eq!(safety["env"], "fresh");
    assert_eq!(safety["commit"], main.trim());
    let found: serde_json::Value =
        serde_json::from_str(&project.ok(&["show", safety["id"].as_str().ok_or("an id")?, "--json"])?)?;
    assert_eq!(found["commit"], main.trim());
    Ok(())
}

#[test]
fn a_dry_run_says_a_database_that_does_not_exist_would_be_created() -> TestResult {
    let project = Project::new(
        r#"
production = "main"

[[service]]
name = "app"
type = "sqlite"
path = "var/app.sqlite"
"#,
    )?;
    fs::create_dir_all(project.root().join("var"))?;
    let status = std::process::Command::new("sqlite3")
        .arg(project.root().join("var/app.sqlite"))
        .arg("CREATE TABLE t (x); INSERT INTO t VALUES (1);")
        .status()?;
    assert!(status.success());
    project.ok(&["init"])?;
    project.backup(&[])?;
    let planned = project.ok(&["restore", "--dry-run"])?;
    assert!(planned.contains("its data would be replaced by"), "{planned}");
    fs::remove_file(project.root().join("var/app.sqlite"))?;
    let planned = project.ok(&["restore", "--dry-run"])?;
    assert!(planned.contains("app → ") && planned.contains("does not exist yet: it would be created"), "{planned}");
    Ok(())
}

#[test]
fn commands_that_need_no_secret_work_without_it() -> TestResult {
    let project = Project::new(&format!(
        "{CONFIG}\n[[service]]\nname = \"db\"\ntype = \"postgresql\"\n\
         url = \"postgresql://app:${{ENVSNAP_TEST_NEVER_SET}}@127.0.0.1:5432/app_{{branch}}\"\n"
    ))?;
    write(&project, "files", "one")?;
    write(&project, "cache", "one")?;
    project.ok(&["init"])?;
    let status = project.ok(&["status"])?;
    assert!(status.contains("db (service: needs ${ENVSNAP_TEST_NEVER_SET}, which is not set)"), "{status}");
    assert!(status.contains("files (mount: "), "{status}");
    let id = project.backup(&["--element", "files"])?;
    write(&project, "files", "two")?;
    project.ok(&["restore", &id[..12], "--yes"])?;
    assert_eq!(read(&project, "files")?, "one");
    // A command that needs the secret still names it.
    let said = project.fails(&["backup", "--element", "db"], 1)?;
    assert!(said.contains("`ENVSNAP_TEST_NEVER_SET` is not set"), "{said}");
    Ok(())
}

#[test]
fn verbose_backups_say_how_long_each_element_took() -> TestResult {
    let project = project()?;
    let output = project.run(&["backup", "-v"])?;
    assert!(output.status.success());
    let stderr = String::from_utf8(output.stderr)?;
    for element in ["files (mount): 3 B in ", "cache (mount): 3 B in "] {
        let line = stderr.lines().find(|line| line.contains(element)).ok_or(format!("{element}: {stderr}"))?;
        let seconds = line.rsplit(" in ").next().and_then(|rest| rest.strip_suffix(" s"));
        assert!(seconds.is_some_and(|seconds| seconds.parse::<f64>().is_ok()), "{line}");
    }
    Ok(())
}

#[test]
fn the_readme_lists_every_command() -> TestResult {
    let readme = fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))?;
    let help = std::process::Command::new(env!("CARGO_BIN_EXE_envsnap")).arg("--help").output()?;
    let help = String::from_utf8(help.stdout)?;
    let commands: Vec<&str> = help
        .lines()
        .skip_while(|line| *line != "Commands:")
        .skip(1)
        .take_while(|line| !line.is_empty())
        .filter_map(|line| line.strip_prefix("  ").filter(|rest| !rest.starts_with(' ')))
        .filter_map(|rest| rest.split_whitespace().next())
        .filter(|name| *name != "help")
        .collect();
    assert!(commands.contains(&"undo") && commands.contains(&"export"), "{help}");
    for command in commands {
        let entry = format!("`envsnap {command}");
        let listed = readme.lines().any(|line| line.starts_with('|') && line.contains(&entry));
        assert!(listed, "README.md's table lists `{command}`");
    }
    for shown in ["cargo install --path .", "envsnap schedule status", "envsnap schedule uninstall", "--branch-from"] {
        assert!(readme.contains(shown), "README.md says {shown}");
    }
    Ok(())
}
