//! The `envsnap` command. The library decides; this binary presents and owns exit codes:
//! 0 done, 1 failed, 2 bad usage.

mod cli;

use std::io::ErrorKind;
use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = match cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => {
            // clap prints help and version to stdout (exit 0) and usage errors to stderr (exit 2).
            let _ = error.print();
            return ExitCode::from(u8::try_from(error.exit_code()).unwrap_or(2));
        }
    };
    stop_on_signals(&cli);
    match cli.run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) if is_broken_pipe(&error) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("envsnap: {}", message(&error));
            ExitCode::FAILURE
        }
    }
}

/// What envsnap does when it is told to stop (Ctrl-C, `kill`, `systemctl stop`, a
/// closed terminal): the tools it runs to dump and load services are stopped and
/// waited for — they lead process groups of their own, so no signal meant for envsnap
/// reaches them, and nothing else would stop a tool that waits on its server — then a
/// paused environment is resumed, and envsnap exits with 128 + the signal's number, as
/// shells report a process the signal ended.
///
/// `mount` catches these signals itself, to unmount; a background job (`--job`) keeps
/// ignoring hangups, since it outlives the terminal that started it.
fn stop_on_signals(cli: &cli::Cli) {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let wanted: &[i32] = match &cli.command {
        cli::Command::Mount(_) => return,
        cli::Command::Backup(args) if args.job.is_some() => &[SIGINT, SIGTERM],
        _ => &[SIGINT, SIGTERM, SIGHUP],
    };
    let Ok(mut signals) = signal_hook::iterator::Signals::new(wanted) else {
        // Without the handler a signal ends envsnap as it always did.
        return;
    };
    std::thread::spawn(move || {
        if let Some(signal) = signals.forever().next() {
            cli::interrupted(signal);
        }
    });
}

/// The error and its causes on one line, each said once.
fn message(error: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in error.chain() {
        let text = cause.to_string();
        if !parts.iter().any(|part| part.contains(&text)) {
            parts.push(text);
        }
    }
    parts.join(": ")
}

/// Whether the error is output that found its reader gone (`envsnap list | head`): not
/// a failure. A write of `--json` output reports it inside serde_json's error.
fn is_broken_pipe(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == ErrorKind::BrokenPipe)
            || cause.downcast_ref::<serde_json::Error>().and_then(serde_json::Error::io_error_kind)
                == Some(ErrorKind::BrokenPipe)
    })
}
