//! Git notes: each snapshot id is noted on the commit it was taken at, under its own
//! notes ref, so `git log --notes=envsnap` shows which data went with which code.

use std::path::Path;

use super::{git_error, open};
use crate::error::Result;

/// The notes ref envsnap writes.
pub const NOTES_REF: &str = "refs/notes/envsnap";

/// Adds `line` to the note on `commit` (other lines are kept: several snapshots may
/// be taken at one commit).
pub fn add_line(work_tree: &Path, commit: &str, line: &str) -> Result<()> {
    edit(work_tree, commit, |lines| {
        if !lines.iter().any(|existing| existing == line) {
            lines.push(line.to_owned());
        }
    })
}

/// Removes the lines of the note on `commit` that contain `needle`.
pub fn remove_lines(work_tree: &Path, commit: &str, needle: &str) -> Result<()> {
    edit(work_tree, commit, |lines| lines.retain(|line| !line.contains(needle)))
}

/// The note on `commit`, if any.
pub fn read(work_tree: &Path, commit: &str) -> Result<Option<String>> {
    let repository = open(work_tree)?;
    let oid = git2::Oid::from_str(commit).map_err(|e| git_error("reading a commit id", &e))?;
    Ok(repository.find_note(Some(NOTES_REF), oid).ok().and_then(|note| note.message().map(str::to_owned)))
}

fn edit(work_tree: &Path, commit: &str, change: impl FnOnce(&mut Vec<String>)) -> Result<()> {
    let repository = open(work_tree)?;
    let oid = git2::Oid::from_str(commit).map_err(|e| git_error("reading a commit id", &e))?;
    let existing = repository.find_note(Some(NOTES_REF), oid).ok().and_then(|note| note.message().map(str::to_owned));
    let mut lines: Vec<String> = existing.iter().flat_map(|text| text.lines()).map(str::to_owned).collect();
    let before = lines.clone();
    change(&mut lines);
    if lines == before {
        return Ok(());
    }
    let signature = repository
        .signature()
        .or_else(|_| git2::Signature::now("envsnap", "envsnap@localhost"))
        .map_err(|e| git_error("making a signature", &e))?;
    if lines.is_empty() {
        repository
            .note_delete(oid, Some(NOTES_REF), &signature, &signature)
            .map_err(|e| git_error("removing a note", &e))?;
    } else {
        let text = lines.join("\n") + "\n";
        repository
            .note(&signature, &signature, Some(NOTES_REF), oid, &text, true)
            .map_err(|e| git_error("writing a note", &e))?;
    }
    Ok(())
}
