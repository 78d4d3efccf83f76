//! `envsnap demo`: the whole cycle in a throw-away repository, each step shown.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, Result, bail};

/// Options of `envsnap demo`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Keep the demo repository instead of removing it at the end.
    #[arg(long)]
    pub keep: bool,
}

const CONFIG: &str = r#"# The demo environment: user uploads and an SQLite database file.
production = "main"

[[mount]]
name = "uploads"
path = "var/uploads"
exclude = ["cache/"]

[[mount]]
name = "db"
path = "var/db"
"#;

pub fn run(args: &Args) -> Result<()> {
    let temporary = tempfile::Builder::new().prefix("envsnap-demo-").tempdir()?;
    let root = temporary.path().to_owned();
    say(&format!("A throw-away git repository at {}, with uploads and an SQLite database:", root.display()));
    create_project(&root)?;
    show_tree(&root)?;

    step(&root, &["init"])?;
    let first = step_capture(&root, &["backup", "--note", "before the changes"])?;

    say("Now the environment changes: a file edited, one deleted, one added, rows inserted.");
    std::fs::write(root.join("var/uploads/readme.txt"), "edited after the first snapshot\n")?;
    std::fs::remove_file(root.join("var/uploads/photos/cat.jpg"))?;
    std::fs::write(root.join("var/uploads/new.txt"), "added later\n")?;
    let database = rusqlite::Connection::open(root.join("var/db/app.sqlite"))?;
    database.execute_batch("INSERT INTO notes (body) VALUES ('third'), ('fourth');")?;
    drop(database);
    let rows_now = count_rows(&root)?;
    say(&format!("The notes table now has {rows_now} rows."));

    step_capture(&root, &["backup", "--note", "after the changes"])?;
    step(&root, &["list"])?;
    step(&root, &["diff", &first[..12], "latest"])?;
    step(&root, &["restore", &first[..12], "--yes"])?;

    let rows_back = count_rows(&root)?;
    let readme = std::fs::read_to_string(root.join("var/uploads/readme.txt"))?;
    let cat_back = root.join("var/uploads/photos/cat.jpg").exists();
    let new_gone = !root.join("var/uploads/new.txt").exists();
    say(&format!(
        "After the restore: {rows_back} rows, readme says {:?}, cat.jpg is back: {cat_back}, new.txt is gone: {new_gone}.",
        readme.trim()
    ));
    if rows_back != 2 || !cat_back || !new_gone || readme != "hello from the first snapshot\n" {
        bail!("the demo restore did not bring the data back as it was");
    }
    step(&root, &["list"])?;
    say("The restore took a safety snapshot first (trigger `safety`): `envsnap undo` puts back what it overwrote.");
    step(&root, &["undo", "--yes"])?;
    let rows_undone = count_rows(&root)?;
    let new_again = root.join("var/uploads/new.txt").exists();
    say(&format!("After the undo: {rows_undone} rows, new.txt is back: {new_again}."));
    if rows_undone != rows_now || !new_again {
        bail!("the demo undo did not bring back the state before the restore");
    }
    step(&root, &["check", "--read-data"])?;
    if args.keep {
        let kept = temporary.keep();
        say(&format!("The demo repository is kept at {}.", kept.display()));
    } else {
        say("Done. The demo repository is removed; run `envsnap demo --keep` to look around in it.");
    }
    Ok(())
}

fn create_project(root: &Path) -> Result<()> {
    let repository = git2::Repository::init_opts(root, git2::RepositoryInitOptions::new().initial_head("main"))?;
    std::fs::write(root.join("envsnap.toml"), CONFIG)?;
    std::fs::create_dir_all(root.join("var/uploads/photos"))?;
    std::fs::create_dir_all(root.join("var/uploads/cache"))?;
    std::fs::create_dir_all(root.join("var/db"))?;
    std::fs::write(root.join("var/uploads/readme.txt"), "hello from the first snapshot\n")?;
    let picture: Vec<u8> = (0..200_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8).collect();
    std::fs::write(root.join("var/uploads/photos/cat.jpg"), &picture)?;
    std::fs::write(root.join("var/uploads/cache/thumb.bin"), b"generated, excluded")?;
    std::os::unix::fs::symlink("photos/cat.jpg", root.join("var/uploads/latest.jpg"))?;
    let database = rusqlite::Connection::open(root.join("var/db/app.sqlite"))?;
    database.execute_batch(
        "PRAGMA journal_mode = DELETE;
         CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT NOT NULL);
         INSERT INTO notes (body) VALUES ('first'), ('second');",
    )?;
    drop(database);
    std::fs::write(root.join(".gitignore"), "var/\n")?;
    let mut index = repository.index()?;
    index.add_path(Path::new("envsnap.toml"))?;
    index.add_path(Path::new(".gitignore"))?;
    index.write()?;
    let tree = repository.find_tree(index.write_tree()?)?;
    let signature = git2::Signature::now("envsnap demo", "demo@example.invalid")?;
    repository.commit(Some("HEAD"), &signature, &signature, "the demo application", &tree, &[])?;
    Ok(())
}

fn count_rows(root: &Path) -> Result<i64> {
    let database = rusqlite::Connection::open(root.join("var/db/app.sqlite"))?;
    Ok(database.query_row("SELECT count(*) FROM notes", [], |row| row.get(0))?)
}

fn show_tree(root: &Path) -> Result<()> {
    let mut paths: Vec<PathBuf> = Vec::new();
    let mut pending = vec![root.join("var")];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            if entry.file_type()?.is_dir() {
                pending.push(entry.path());
            } else {
                paths.push(entry.path());
            }
        }
    }
    paths.sort();
    for path in paths {
        println!("    {}", path.strip_prefix(root).unwrap_or(&path).display());
    }
    Ok(())
}

fn say(text: &str) {
    println!("\n{text}");
}

fn command(root: &Path, args: &[&str]) -> Result<Command> {
    println!("\n$ envsnap {}", args.join(" "));
    let mut command = Command::new(std::env::current_exe().context("finding the envsnap binary")?);
    command.args(args).current_dir(root).env_remove("ENVSNAP_REPOSITORY");
    Ok(command)
}

fn step(root: &Path, args: &[&str]) -> Result<()> {
    let status = command(root, args)?.status()?;
    if !status.success() {
        bail!("`envsnap {}` failed in the demo", args.join(" "));
    }
    Ok(())
}

/// Runs a step whose stdout (a snapshot id) the demo needs, and shows it too.
fn step_capture(root: &Path, args: &[&str]) -> Result<String> {
    let output = command(root, args)?.stderr(std::process::Stdio::inherit()).output()?;
    let text = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    println!("{text}");
    if !output.status.success() || text.len() < 12 {
        bail!("`envsnap {}` failed in the demo", args.join(" "));
    }
    Ok(text)
}
