//! `envsnap init`

use anyhow::{Context as _, Result};
use envsnap::config;
use envsnap::repository::Repository;

use super::context::{Context, Global};

/// Options of `envsnap init`.
#[derive(Debug, clap::Args)]
pub struct Args {}

pub fn run(global: &Global, _args: &Args) -> Result<()> {
    let context = Context::discover(global)?;
    let config_path = context.work_tree().join(config::FILE_NAME);
    if context.config.is_none() {
        std::fs::write(&config_path, config::STARTER).with_context(|| format!("writing {}", config_path.display()))?;
        println!("wrote {}: add your mounts and services to it", config_path.display());
    }
    if Repository::init(&context.repository_path)? {
        println!("created the repository at {}", context.repository_path.display());
    } else {
        println!("the repository at {} exists already; nothing changed", context.repository_path.display());
    }
    Ok(())
}
