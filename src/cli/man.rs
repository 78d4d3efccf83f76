//! `envsnap man [--dir DIR]`: man pages in roff, generated from the clap definitions so
//! they say exactly what `--help` says.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};
use clap::CommandFactory;
use clap_mangen::Man;

use super::Cli;

/// Options of `envsnap man`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Write envsnap.1 and one envsnap-<subcommand>.1 per subcommand into DIR (created if
    /// missing) instead of printing envsnap(1).
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

/// Prints envsnap(1), or writes every page into `args.dir` and prints their paths.
pub fn run(args: &Args) -> Result<()> {
    let command = documented_command();
    // Every page's footer names the program and its version. clap_mangen would name each
    // subcommand alone (`hooks`), with no version, since only the top command has one.
    let source = format!("{} {}", command.get_name(), command.get_version().unwrap_or_default());
    let mut out = std::io::stdout().lock();
    match &args.dir {
        None => {
            Man::new(command).source(source).render(&mut out).context("writing the man page")?;
        }
        Some(dir) => {
            fs::create_dir_all(dir).with_context(|| format!("creating the man page directory {}", dir.display()))?;
            write_pages(&command, &source, dir, &mut out)?;
        }
    }
    out.flush()?;
    Ok(())
}

/// The command tree the pages describe, built so that every subcommand knows its full
/// name (`envsnap-hooks-install`), which becomes its page's title and file name.
fn documented_command() -> clap::Command {
    // The `help` subcommand clap adds only repeats `--help`; a page of its own (and an
    // entry in every SUBCOMMANDS list) would be noise. clap_mangen's own generate_to
    // leaves it out for the same reason.
    let mut command = Cli::command().disable_help_subcommand(true);
    command.build();
    command
}

/// Writes the page of `command` and, recursively, of each subcommand that `--help`
/// shows (hidden ones, such as what the git hooks call, are not for people), parents
/// before their subcommands; prints each path to `out` once its page is written, so a
/// failure part-way leaves a true list of what is there.
fn write_pages(command: &clap::Command, source: &str, dir: &Path, out: &mut impl Write) -> Result<()> {
    let page = Man::new(command.clone()).source(source);
    let path = dir.join(page.get_filename());
    // clap_mangen's Man::generate_to would do the same, but its error would not say which file.
    let mut file = fs::File::create(&path).with_context(|| format!("creating the man page {}", path.display()))?;
    page.render(&mut file)
        .and_then(|()| file.flush())
        .with_context(|| format!("writing the man page {}", path.display()))?;
    writeln!(out, "{}", path.display())?;
    for subcommand in command.get_subcommands().filter(|subcommand| !subcommand.is_hide_set()) {
        write_pages(subcommand, source, dir, out)?;
    }
    Ok(())
}
