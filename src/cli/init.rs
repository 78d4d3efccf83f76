//! `envsnap init`

use anyhow::{Context as _, Result};
use envsnap::config;
use envsnap::repository::Repository;
use envsnap::store::chunker::ChunkerParams;

use super::context::{Context, Global};

/// Options of `envsnap init`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Chunk sizes in bytes, MIN,AVG,MAX (default 262144,1048576,4194304). Fixed for the
    /// repository's life: snapshots deduplicate only against chunks cut the same way.
    #[arg(long, value_name = "MIN,AVG,MAX", value_parser = parse_chunker)]
    pub chunker_params: Option<ChunkerParams>,
}

fn parse_chunker(text: &str) -> Result<ChunkerParams, String> {
    let sizes: Vec<u32> = text
        .split(',')
        .map(|part| part.trim().parse::<u32>().map_err(|_| format!("`{part}` is not a size in bytes")))
        .collect::<Result<_, _>>()?;
    let [min, avg, max] = sizes[..] else {
        return Err("give three sizes: MIN,AVG,MAX".to_owned());
    };
    let params = ChunkerParams { min, avg, max };
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
    if Repository::init(&context.repository_path, args.chunker_params.unwrap_or_default())? {
        println!("created the repository at {}", context.repository_path.display());
    } else {
        println!("the repository at {} exists already; nothing changed", context.repository_path.display());
    }
    Ok(())
}
