//! Where an encrypted repository's password comes from.
//!
//! In this order: `--password-file FILE`, `ENVSNAP_PASSWORD_FILE`,
//! `ENVSNAP_PASSWORD_COMMAND` (run with `sh -c`; the first line it prints),
//! `ENVSNAP_PASSWORD`, and last a prompt, only when standard input and standard error
//! are a terminal. Hooks, schedules and `mount` run without one, so they take it from
//! the environment they inherit; a `--no-wait` backup's process is handed a prompted
//! password through `ENVSNAP_PASSWORD` in its environment (see [`prompted`]).

use std::io::{IsTerminal, Read};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use envsnap::Error;
use zeroize::Zeroizing;

/// A password file larger than this is not one.
const MAX_PASSWORD_FILE: u64 = 64 << 10;

/// The password typed at the prompt, if one was: a background job started from this
/// process cannot prompt, so it is handed this one.
static PROMPTED: OnceLock<Zeroizing<String>> = OnceLock::new();

/// The password the prompt gave, if it was asked.
pub fn prompted() -> Option<&'static str> {
    PROMPTED.get().map(|password| password.as_str())
}

/// The password of the repository at `repository`, from the first source that has one.
pub fn read(password_file: Option<&Path>, repository: &Path) -> envsnap::Result<Zeroizing<String>> {
    if let Some(file) = password_file {
        return from_file(file, "--password-file");
    }
    if let Some(file) = std::env::var_os("ENVSNAP_PASSWORD_FILE").filter(|value| !value.is_empty()) {
        return from_file(Path::new(&file), "ENVSNAP_PASSWORD_FILE");
    }
    if let Some(command) = std::env::var_os("ENVSNAP_PASSWORD_COMMAND").filter(|value| !value.is_empty()) {
        return from_command(&command);
    }
    if let Ok(password) = std::env::var("ENVSNAP_PASSWORD")
        && !password.is_empty()
    {
        return Ok(Zeroizing::new(password));
    }
    if let Some(password) = PROMPTED.get() {
        return Ok(password.clone());
    }
    if std::io::stdin().is_terminal() && std::io::stderr().is_terminal() {
        let password = prompt(&format!("password of the repository at {}: ", repository.display()))?;
        let _ = PROMPTED.set(password.clone());
        return Ok(password);
    }
    Err(Error::PasswordNeeded { path: repository.to_owned() })
}

/// A new password (for `init --encrypt`, `key add`, `key passwd`): from `file`, else
/// `ENVSNAP_NEW_PASSWORD_FILE`, else `ENVSNAP_NEW_PASSWORD`, else asked twice on a
/// terminal.
pub fn read_new(file: Option<&Path>) -> envsnap::Result<Zeroizing<String>> {
    if let Some(file) = file {
        return from_file(file, "--new-password-file");
    }
    if let Some(file) = std::env::var_os("ENVSNAP_NEW_PASSWORD_FILE").filter(|value| !value.is_empty()) {
        return from_file(Path::new(&file), "ENVSNAP_NEW_PASSWORD_FILE");
    }
    if let Ok(password) = std::env::var("ENVSNAP_NEW_PASSWORD")
        && !password.is_empty()
    {
        return Ok(Zeroizing::new(password));
    }
    if std::io::stdin().is_terminal() && std::io::stderr().is_terminal() {
        let first = prompt("new password: ")?;
        let second = prompt("the new password again: ")?;
        if first != second {
            return Err(unreadable("the prompt", "the two passwords differ; nothing changed"));
        }
        return Ok(first);
    }
    Err(unreadable(
        "anywhere",
        "give the new password with --new-password-file FILE, ENVSNAP_NEW_PASSWORD_FILE or ENVSNAP_NEW_PASSWORD",
    ))
}

fn unreadable(source_name: &str, detail: &str) -> Error {
    Error::PasswordUnreadable { source_name: source_name.to_owned(), detail: detail.to_owned() }
}

fn prompt(text: &str) -> envsnap::Result<Zeroizing<String>> {
    let password =
        Zeroizing::new(rpassword::prompt_password(text).map_err(|error| unreadable("the prompt", &error.to_string()))?);
    if password.is_empty() {
        return Err(unreadable("the prompt", "the password is empty"));
    }
    Ok(password)
}

/// The first line of `file`.
fn from_file(file: &Path, source: &str) -> envsnap::Result<Zeroizing<String>> {
    let named = format!("{source} {}", file.display());
    let opened = std::fs::File::open(file).map_err(|error| unreadable(&named, &error.to_string()))?;
    let mut bytes = Zeroizing::new(Vec::new());
    opened.take(MAX_PASSWORD_FILE).read_to_end(&mut bytes).map_err(|error| unreadable(&named, &error.to_string()))?;
    first_line(&bytes, &named)
}

/// The first line `command` prints, run with `sh -c`.
fn from_command(command: &std::ffi::OsStr) -> envsnap::Result<Zeroizing<String>> {
    let named = "ENVSNAP_PASSWORD_COMMAND";
    let output = Command::new("sh")
        .arg("-c")
        .arg(command)
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .map_err(|error| unreadable(named, &format!("cannot run it: {error}")))?;
    let stdout = Zeroizing::new(output.stdout);
    if !output.status.success() {
        return Err(unreadable(named, &format!("it failed ({})", output.status)));
    }
    first_line(&stdout, named)
}

fn first_line(bytes: &[u8], source: &str) -> envsnap::Result<Zeroizing<String>> {
    let line = bytes.split(|byte| *byte == b'\n').next().unwrap_or_default();
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let text = std::str::from_utf8(line).map_err(|_| unreadable(source, "the password is not UTF-8"))?;
    if text.is_empty() {
        return Err(unreadable(source, "its first line is empty"));
    }
    Ok(Zeroizing::new(text.to_owned()))
}
