//! `envsnap init`

use anyhow::{Context as _, Result};
use envsnap::config;
use envsnap::repository::Repository;
use envsnap::store::chunker::ChunkerParams;

use super::context::{Context, Global};
use envsnap::crypto::keyfile::DEFAULT_KDF;
use zeroize::Zeroizing;

/// The first key's password: from the usual sources, or asked twice on a terminal,
/// since a mistyped one would lock the repository for good.
fn new_repository_password(context: &Context) -> Result<Zeroizing<String>> {
    let given = context.password_file.is_some()
        || ["ENVSNAP_PASSWORD_FILE", "ENVSNAP_PASSWORD_COMMAND", "ENVSNAP_PASSWORD"]
            .iter()
            .any(|name| std::env::var_os(name).is_some_and(|value| !value.is_empty()));
    if given {
        Ok(super::password::read(context.password_file.as_deref(), &context.repository_path)?)
    } else {
        Ok(super::password::read_new(None)
            .map_err(|_| envsnap::Error::PasswordNeeded { path: context.repository_path.clone() })?)
    }
}

/// Options of `envsnap init`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Chunk sizes in bytes, MIN,AVG,MAX (default 262144,1048576,4194304). Fixed for the
    /// repository's life: snapshots deduplicate only against chunks cut the same way.
    #[arg(long, value_name = "MIN,AVG,MAX", value_parser = parse_chunker)]
    pub chunker_params: Option<ChunkerParams>,

    /// Encrypt the repository (format 2): every stored byte is unreadable without a key.
    /// Its first key's password comes from --password-file, ENVSNAP_PASSWORD_FILE,
    /// ENVSNAP_PASSWORD_COMMAND, ENVSNAP_PASSWORD, or a prompt (asked twice).
    #[arg(long)]
    pub encrypt: bool,
}

fn parse_chunker(text: &str) -> Result<ChunkerParams, String> {
    let sizes: Vec<u32> = text
        .split(',')
        .map(|part| part.trim().parse::<u32>().map_err(|_| format!("`{part}` is not a size in bytes")))
        .collect::<Result<_, _>>()?;
    let [min, avg, max] = sizes[..] else {
        return Err("give three sizes: MIN,AVG,MAX".to_owned());
    };
    let params = ChunkerParams { min, avg, max, seed: 0 };
    if params.is_valid() {
        Ok(params)
    } else {
        Err("sizes out of range: need 64 <= MIN <= 1 MiB, 256 <= AVG <= 4 MiB, 1 KiB <= MAX <= 16 MiB, MIN <= AVG <= MAX"
            .to_owned())
    }
}

pub fn run(global: &Global, args: &Args) -> Result<()> {
    let context = Context::discover(global)?;
    let config_path = context.work_tree().join(config::FILE_NAME);
    if context.config.is_none() {
        std::fs::write(&config_path, config::STARTER).with_context(|| format!("writing {}", config_path.display()))?;
        println!("wrote {}: add your mounts and services to it", config_path.display());
    }
    let chunker = args.chunker_params.unwrap_or_default();
    let created = if args.encrypt {
        if envsnap::repository::Repository::exists(&context.repository_path)? {
            false
        } else {
            let password = new_repository_password(&context)?;
            Repository::init_encrypted(&context.repository_path, chunker, &password, DEFAULT_KDF)?
        }
    } else {
        Repository::init(&context.repository_path, chunker)?
    };
    if created && args.encrypt {
        println!(
            "created the encrypted repository at {}: keep its password safe, nothing can be restored without it \
             (`envsnap key add` adds another)",
            context.repository_path.display()
        );
    } else if created {
        println!("created the repository at {}", context.repository_path.display());
    } else {
        println!("the repository at {} exists already; nothing changed", context.repository_path.display());
    }
    Ok(())
}
