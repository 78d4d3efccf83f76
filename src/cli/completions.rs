//! `envsnap completions SHELL`: the shell's completion script, generated from the clap
//! definitions so it can never fall behind the commands and options it completes.
//!
//! clap_complete's scripts would also complete hidden subcommands (`hooks run`, which
//! the git hooks call, and no person should type). `--help` and the man pages leave
//! those out; so do these scripts: they are generated from a copy of the definitions
//! in which each command with a hidden subcommand is rebuilt from its visible parts.

use std::io::Write;

use anyhow::{Context as _, Result};
use clap::{Command, CommandFactory};
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
    let mut command = without_hidden(Cli::command());
    let name = command.get_name().to_owned();
    // clap_complete panics when its writer fails; generating into memory first lets a
    // closed pipe (`envsnap completions bash | head`) reach main as an ordinary error.
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut command, name, &mut script);
    let mut out = std::io::stdout().lock();
    out.write_all(&script).and_then(|()| out.flush()).context("writing the completion script")
}

/// `command` without its hidden subcommands, at any depth. clap cannot remove a
/// subcommand, so a command that has a hidden one is rebuilt from what completion
/// reads of it (name, about, aliases, arguments) and its visible subcommands.
fn without_hidden(command: Command) -> Command {
    if !command.get_subcommands().any(Command::is_hide_set) {
        let names: Vec<String> = command.get_subcommands().map(|sub| sub.get_name().to_owned()).collect();
        return names.iter().fold(command, |command, name| command.mut_subcommand(name, without_hidden));
    }
    let mut rebuilt = Command::new(command.get_name().to_owned())
        .visible_aliases(command.get_visible_aliases().map(str::to_owned).collect::<Vec<_>>())
        .args(command.get_arguments().cloned().collect::<Vec<_>>());
    if let Some(about) = command.get_about() {
        rebuilt = rebuilt.about(about.clone());
    }
    rebuilt.subcommands(command.get_subcommands().filter(|sub| !sub.is_hide_set()).cloned().map(without_hidden))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(command: &Command) -> Vec<&str> {
        command.get_subcommands().map(Command::get_name).collect()
    }

    #[test]
    fn hidden_subcommands_are_left_out_and_the_rest_kept() {
        let command = without_hidden(Cli::command());
        let hooks = command.find_subcommand("hooks").expect("envsnap has `hooks`");
        assert_eq!(names(hooks), ["install", "uninstall", "status"]);
        assert_eq!(names(&command), names(&Cli::command()), "every top-level command stays");
        let delete = command.find_subcommand("delete").expect("envsnap has `delete`");
        assert!(delete.get_visible_aliases().any(|alias| alias == "backup:delete"));
        let install = command.find_subcommand("schedule").and_then(|schedule| schedule.find_subcommand("install"));
        assert!(install.is_some_and(|install| install.get_arguments().any(|arg| arg.get_id() == "every")));
    }
}
