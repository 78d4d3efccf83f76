//! The one question envsnap asks before it changes what cannot be brought back
//! without a snapshot: on a terminal it asks, without one it needs `--yes`. `restore`,
//! `undo` and `delete` of a protected environment's snapshot all ask through it, so a
//! cron line or a script behaves the same for each.

use std::io::{BufRead, IsTerminal, Write};

use anyhow::{Result, bail};

/// What is asked for, in the words the refusal and the cancellation use.
pub struct Question<'a> {
    /// The question, one line: `Restore snapshot … into environment `main`…?`.
    pub text: &'a str,
    /// What is refused without an answer: `overwrite`, `delete`.
    pub verb: &'a str,
    /// What is cancelled when the answer is no: `restore`, `delete`.
    pub action: &'a str,
}

/// Asks `question` on a terminal; refuses without one unless `yes` (`--yes`) was given.
pub fn confirm(yes: bool, question: &Question<'_>) -> Result<()> {
    if yes {
        return Ok(());
    }
    let Question { text, verb, action } = question;
    if !std::io::stdin().is_terminal() {
        bail!("{text}\nrefusing to {verb} without confirmation: run it again with --yes");
    }
    eprint!("{text} [y/N] ");
    std::io::stderr().flush()?;
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    if matches!(answer.trim(), "y" | "Y" | "yes" | "YES" | "Yes") {
        Ok(())
    } else {
        bail!("{action} cancelled; nothing was changed")
    }
}
