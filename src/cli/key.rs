//! `envsnap key list|add|remove|passwd`: an encrypted repository's keys.
//!
//! Each key is one file under `keys/`, the repository's master keys sealed by one
//! password; adding, changing or removing one rewrites nothing else.

use std::io::Write as _;
use std::path::PathBuf;

use anyhow::Result;
use envsnap::crypto::keyfile::{DEFAULT_KDF, KeyKind};
use envsnap::repository::Access;

use super::context::{Context, Global};
use super::password;

/// Options of `envsnap key`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// What to do.
    #[command(subcommand)]
    pub action: Action,
}

/// The key subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum Action {
    /// The keys: id, kind, when made, KDF parameters; `*` marks the one in use.
    List(ListArgs),
    /// Add a key with a new password (a teammate's, or a write-only one for a host that
    /// should back up but never read back).
    Add(AddArgs),
    /// Remove a key; the last read key cannot be removed.
    Remove(RemoveArgs),
    /// Change the password of the key in use: the old one stops working.
    Passwd(NewPassword),
}

/// Options of `envsnap key list`.
#[derive(Debug, clap::Args)]
pub struct ListArgs {
    /// As JSON.
    #[arg(long)]
    pub json: bool,
}

/// Where a new password comes from.
#[derive(Debug, clap::Args)]
pub struct NewPassword {
    /// The new password: the first line of FILE. Else ENVSNAP_NEW_PASSWORD_FILE,
    /// ENVSNAP_NEW_PASSWORD, or asked twice on a terminal.
    #[arg(long, value_name = "FILE")]
    pub new_password_file: Option<PathBuf>,
}

/// Options of `envsnap key add`.
#[derive(Debug, clap::Args)]
pub struct AddArgs {
    /// A key that can add snapshots (and deduplicate against the repository) but cannot
    /// read, restore, mount, export or diff any.
    #[arg(long)]
    pub write_only: bool,
    #[command(flatten)]
    pub password: NewPassword,
}

/// Options of `envsnap key remove`.
#[derive(Debug, clap::Args)]
pub struct RemoveArgs {
    /// The key's id, or a unique prefix of at least 4 digits.
    pub id: String,
}

pub fn run(global: &Global, args: &Args) -> Result<()> {
    let context = Context::discover(global)?;
    let access = if matches!(args.action, Action::List(_)) { Access::Read } else { Access::Write };
    let repository = context.open(access)?;
    match &args.action {
        Action::List(list) => {
            let keys = repository.keys()?;
            let mut out = std::io::stdout().lock();
            if list.json {
                let rows: Vec<serde_json::Value> = keys
                    .iter()
                    .map(|key| match &key.file {
                        Ok(file) => serde_json::json!({
                            "id": file.id(),
                            "kind": file.kind().as_str(),
                            "created": file.created(),
                            "in_use": repository.key_id() == Some(file.id()),
                            "kdf": file.params(),
                            "damaged": null,
                        }),
                        Err(problem) => serde_json::json!({
                            "id": key.name.trim_start_matches("keys/"),
                            "damaged": problem,
                        }),
                    })
                    .collect();
                serde_json::to_writer_pretty(&mut out, &rows)?;
                writeln!(out)?;
                return Ok(());
            }
            writeln!(out, "  {:<16}  {:<10}  {:<20}  KDF", "ID", "KIND", "CREATED")?;
            for key in &keys {
                match &key.file {
                    Ok(file) => {
                        let params = file.params();
                        writeln!(
                            out,
                            "{} {:<16}  {:<10}  {:<20}  argon2id {} MiB, {}, {}",
                            if repository.key_id() == Some(file.id()) { '*' } else { ' ' },
                            file.id(),
                            file.kind().as_str(),
                            file.created().format("%Y-%m-%d %H:%M:%S"),
                            params.memory_kib / 1024,
                            super::format::counted(params.iterations.into(), "pass", "passes"),
                            super::format::counted(params.parallelism.into(), "lane", "lanes")
                        )?;
                    }
                    Err(problem) => {
                        writeln!(out, "  {:<16}  damaged: {problem}", key.name.trim_start_matches("keys/"))?;
                    }
                }
            }
        }
        Action::Add(add) => {
            let new = password::read_new(add.password.new_password_file.as_deref())?;
            let kind = if add.write_only { KeyKind::WriteOnly } else { KeyKind::Read };
            let file = repository.add_key(kind, &new, DEFAULT_KDF)?;
            println!("added {} key {}", kind.as_str(), file.id());
        }
        Action::Remove(remove) => {
            let removed = repository.remove_key(&remove.id)?;
            println!("removed key {removed}: its password no longer opens the repository");
        }
        Action::Passwd(new) => {
            let new = password::read_new(new.new_password_file.as_deref())?;
            let file = repository.change_password(&new, DEFAULT_KDF)?;
            println!("changed the password of key {}: the old password no longer opens it", file.id());
        }
    }
    Ok(())
}
