//! `envsnap completions SHELL`: the shell's completion script, generated from the clap
//! definitions so it can never fall behind the commands and options it completes.
//!
//! clap_complete's scripts also complete hidden subcommands (`hooks run`, which the git
//! hooks call): `--help` and the man pages leave those out, but clap has no way to remove a
//! subcommand from a built command, and rebuilding the tree by hand would drift from it.
//! Completing a command that exists is harmless.

use std::io::Write;

use anyhow::{Context as _, Result};
use clap::CommandFactory;
use clap_complete::Shell;

use super::Cli;

/// Options of `envsnap completions`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The shell to write the completion script for.
    #[arg(value_enum)]
    pub shell: Shell,
}

/// Prints the completion script for `args.shell` to stdout.
pub fn run(args: &Args) -> Result<()> {
    let mut command = Cli::command();
    let name = command.get_name().to_owned();
    // clap_complete panics when its writer fails; generating into memory first lets a
    // closed pipe (`envsnap completions bash | head`) reach main as an ordinary error.
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut command, name, &mut script);
    let mut out = std::io::stdout().lock();
    out.write_all(&script).and_then(|()| out.flush()).context("writing the completion script")
}
