//! `envsnap completions` and `envsnap man`, checked the way people use them: the bash
//! script loaded into a real bash and asked for completions, the man pages written to a
//! directory and read back. The subcommands expected are read from `envsnap --help`, so a
//! new subcommand is covered without touching these tests.

mod common;

use std::collections::BTreeSet;
use std::error::Error;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::TestResult;

/// Runs envsnap with `args`, outside any git repository (neither command needs one).
fn envsnap(args: &[&str]) -> Result<Output, std::io::Error> {
    Command::new(env!("CARGO_BIN_EXE_envsnap")).args(args).current_dir(std::env::temp_dir()).output()
}

/// Runs envsnap and fails unless it succeeds; returns its stdout.
fn stdout_of(args: &[&str]) -> Result<String, Box<dyn Error>> {
    let output = envsnap(args)?;
    if !output.status.success() {
        return Err(format!(
            "envsnap {args:?} failed ({}):\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        )
        .into());
    }
    Ok(String::from_utf8(output.stdout)?)
}

/// The subcommands `envsnap <path> --help` lists under "Commands:", `help` left out.
fn subcommands(path: &[&str]) -> Result<Vec<String>, Box<dyn Error>> {
    let mut args = path.to_vec();
    args.push("--help");
    let help = stdout_of(&args)?;
    Ok(help
        .lines()
        .skip_while(|line| *line != "Commands:")
        .skip(1)
        .take_while(|line| !line.is_empty())
        // A wrapped description continues on lines indented further than the names.
        .filter_map(|line| line.strip_prefix("  ").filter(|rest| !rest.starts_with(' ')))
        .filter_map(|rest| rest.split_whitespace().next())
        .filter(|name| *name != "help")
        .map(str::to_owned)
        .collect())
}

/// Every command `--help` shows, as its path of subcommand names: `[]` for envsnap
/// itself, then `["backup"]`, …, `["hooks", "install"]`, ….
fn command_paths() -> Result<Vec<Vec<String>>, Box<dyn Error>> {
    let mut paths = vec![Vec::new()];
    let mut next = 0;
    while let Some(path) = paths.get(next).cloned() {
        let args: Vec<&str> = path.iter().map(String::as_str).collect();
        for name in subcommands(&args)? {
            let mut child = path.clone();
            child.push(name);
            paths.push(child);
        }
        next += 1;
    }
    Ok(paths)
}

/// The top-level subcommands, checked to hold a few known ones so that a change to the
/// help layout cannot make the tests pass on an empty list.
fn top_level_subcommands() -> Result<Vec<String>, Box<dyn Error>> {
    let names = subcommands(&[])?;
    for known in ["backup", "restore", "prune", "hooks", "completions", "man"] {
        assert!(names.iter().any(|name| name == known), "`envsnap --help` lists {known}: {names:?}");
    }
    Ok(names)
}

/// Loads `envsnap completions bash` into bash, then calls the completion function the
/// way bash does when Tab is pressed after `envsnap <words>` (the last word is the one
/// being completed); returns the candidates it offers.
fn bash_completions(words: &[&str]) -> Result<Vec<String>, Box<dyn Error>> {
    let script = r#"
        source <("$ENVSNAP" completions bash) || exit 1
        function=$(complete -p envsnap | sed -n 's/.*-F \([^ ]*\).*/\1/p')
        [ -n "$function" ] || exit 1
        COMP_WORDS=(envsnap "$@")
        COMP_CWORD=$#
        COMP_LINE="${COMP_WORDS[*]}"
        COMP_POINT=${#COMP_LINE}
        "$function" envsnap "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD-1]}"
        printf '%s\n' "${COMPREPLY[@]}"
    "#;
    let output = Command::new("bash")
        .args(["--norc", "--noprofile", "-c", script, "bash"])
        .args(words)
        .env("ENVSNAP", env!("CARGO_BIN_EXE_envsnap"))
        .output()?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "completing {words:?} in bash failed: {stderr}");
    Ok(String::from_utf8(output.stdout)?.lines().filter(|line| !line.is_empty()).map(str::to_owned).collect())
}

#[test]
fn bash_loads_the_script_and_registers_a_completion_function() -> TestResult {
    let output = Command::new("bash")
        .args(["--norc", "--noprofile", "-c", r#"source <("$ENVSNAP" completions bash) && complete -p envsnap"#])
        .env("ENVSNAP", env!("CARGO_BIN_EXE_envsnap"))
        .output()?;
    let stdout = String::from_utf8(output.stdout)?;
    assert!(output.status.success(), "{stdout}{}", String::from_utf8_lossy(&output.stderr));
    assert!(output.stderr.is_empty(), "loading the script says nothing: {}", String::from_utf8_lossy(&output.stderr));
    assert!(stdout.contains("-F _envsnap") && stdout.trim_end().ends_with(" envsnap"), "{stdout}");
    Ok(())
}

#[test]
fn bash_offers_every_subcommand() -> TestResult {
    let offered = bash_completions(&[""])?;
    for name in top_level_subcommands()? {
        assert!(offered.contains(&name), "{name} is offered after `envsnap `: {offered:?}");
    }
    assert!(offered.iter().any(|word| word == "--repository"), "global options are offered too: {offered:?}");
    Ok(())
}

#[test]
fn bash_completes_a_prefix_to_the_one_subcommand_it_starts() -> TestResult {
    assert_eq!(bash_completions(&["pru"])?, ["prune"]);
    assert_eq!(bash_completions(&["rest"])?, ["restore"]);
    Ok(())
}

#[test]
fn bash_offers_nested_subcommands() -> TestResult {
    let offered = bash_completions(&["hooks", ""])?;
    for action in subcommands(&["hooks"])? {
        assert!(offered.contains(&action), "{action} is offered after `envsnap hooks `: {offered:?}");
    }
    assert!(!offered.iter().any(|word| word == "backup"), "only the hooks' actions are offered: {offered:?}");
    Ok(())
}

#[test]
fn no_shell_is_offered_the_internal_hooks_run() -> TestResult {
    let offered = bash_completions(&["hooks", ""])?;
    assert!(!offered.iter().any(|word| word == "run"), "`hooks run` is for the git hooks only: {offered:?}");
    assert_eq!(bash_completions(&["hooks", "r"])?, Vec::<String>::new());
    for (shell, _) in SUBCOMMAND_ENTRIES {
        let script = stdout_of(&["completions", shell])?;
        if shell == "bash" {
            // Bash's script has no descriptions; COMPREPLY was checked above.
            continue;
        }
        assert!(script.contains("Install the hooks"), "the {shell} script describes `hooks install`");
        // `hooks run` is known by its description, which nothing else has.
        assert!(!script.contains("as the installed shims do"), "the {shell} script offers no `hooks run`");
    }
    Ok(())
}

#[test]
fn bash_offers_the_shells_after_completions() -> TestResult {
    let offered = bash_completions(&["completions", ""])?;
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        assert!(offered.iter().any(|word| word == shell), "{shell} is offered: {offered:?}");
    }
    Ok(())
}

/// How each shell's script offers a subcommand `NAME` (a plain mention could be in any
/// description: "man" is in "envsnap's man page").
const SUBCOMMAND_ENTRIES: [(&str, &str); 5] = [
    ("bash", "envsnap,NAME)"),
    ("zsh", "'NAME:"),
    ("fish", "-a \"NAME\""),
    ("elvish", "cand NAME '"),
    ("powershell", "[CompletionResult]::new('NAME', 'NAME',"),
];

#[test]
fn every_shell_gets_a_script_offering_every_subcommand() -> TestResult {
    let names = top_level_subcommands()?;
    for (shell, entry) in SUBCOMMAND_ENTRIES {
        let script = stdout_of(&["completions", shell])?;
        assert!(!script.trim().is_empty(), "the {shell} script is not empty");
        for name in &names {
            let expected = entry.replace("NAME", name);
            assert!(script.contains(&expected), "the {shell} script offers {name} ({expected:?})");
        }
    }
    Ok(())
}

#[test]
fn an_unknown_shell_is_a_usage_error() -> TestResult {
    let output = envsnap(&["completions", "tcsh"])?;
    assert_eq!(output.status.code(), Some(2));
    assert!(output.stdout.is_empty());
    assert!(String::from_utf8(output.stderr)?.contains("possible values"));
    Ok(())
}

/// The first argument (the title) and second (the section) of the page's `.TH` line,
/// which must come before any section of the page.
fn title_and_section(page: &str) -> Option<(&str, &str)> {
    let line = page.lines().take_while(|line| !line.starts_with(".SH")).find(|line| line.starts_with(".TH "))?;
    let mut words = line.split_whitespace().skip(1);
    Some((words.next()?, words.next()?))
}

/// `text` as roff writes it in running text: `-` as `\-`, `'` as the `\*(Aq` string.
fn roff_escaped(text: &str) -> String {
    text.replace('-', r"\-").replace('\'', r"\*(Aq")
}

#[test]
fn man_prints_the_page_of_envsnap() -> TestResult {
    let page = stdout_of(&["man"])?;
    assert_eq!(title_and_section(&page), Some(("envsnap", "1")), "{page}");
    let help = stdout_of(&["--help"])?;
    let about = help.lines().next().ok_or("`envsnap --help` starts with the about text")?;
    assert!(page.contains(&format!("envsnap \\- {}", roff_escaped(about))), "the NAME section says {about:?}:\n{page}");
    for name in top_level_subcommands()? {
        assert!(
            page.contains(&format!("envsnap\\-{}(1)", roff_escaped(&name))),
            "the page refers to envsnap-{name}(1)"
        );
    }
    Ok(())
}

#[test]
fn man_dir_writes_a_page_for_every_command() -> TestResult {
    let temporary = tempfile::tempdir()?;
    // Missing directories on the way are created, as under a fresh ~/.local/share.
    let dir = temporary.path().join("share/man/man1");
    let dir_argument = dir.to_str().ok_or("the temporary path is UTF-8")?;
    let stdout = stdout_of(&["man", "--dir", dir_argument])?;

    let expected: BTreeSet<String> = command_paths()?
        .iter()
        .map(|path| std::iter::once("envsnap").chain(path.iter().map(String::as_str)).collect::<Vec<_>>().join("-"))
        .collect();
    assert!(expected.contains("envsnap-hooks-install"), "nested subcommands are enumerated: {expected:?}");
    let mut written = BTreeSet::new();
    for entry in fs::read_dir(&dir)? {
        let path = entry?.path();
        let name = path.file_name().and_then(|name| name.to_str()).ok_or("page names are UTF-8")?;
        let title = name.strip_suffix(".1").ok_or_else(|| format!("{name} is a section 1 page"))?;
        let page = fs::read_to_string(&path)?;
        assert_eq!(title_and_section(&page), Some((title, "1")), "{name} starts with its .TH line");
        written.insert(title.to_owned());
    }
    assert_eq!(written, expected);

    let printed: BTreeSet<PathBuf> = stdout.lines().map(PathBuf::from).collect();
    let pages: BTreeSet<PathBuf> = expected.iter().map(|title| dir.join(format!("{title}.1"))).collect();
    assert_eq!(printed, pages, "it prints the path of every page it wrote");
    assert_eq!(stdout.lines().next(), Some(dir.join("envsnap.1").to_str().ok_or("UTF-8")?));
    Ok(())
}

#[test]
fn man_dir_that_cannot_be_created_is_named_in_the_error() -> TestResult {
    let temporary = tempfile::tempdir()?;
    let file = temporary.path().join("not-a-directory");
    fs::write(&file, "")?;
    let dir = file.join("man1");
    let output = envsnap(&["man", "--dir", dir.to_str().ok_or("the temporary path is UTF-8")?])?;
    let stderr = String::from_utf8(output.stderr)?;
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains(&dir.display().to_string()), "the error names {}: {stderr}", dir.display());
    assert!(output.stdout.is_empty(), "no page is reported written");
    Ok(())
}

/// Whether a `man` that can format a local file (`man -l`) is installed.
fn man_is_installed() -> bool {
    Command::new("man").arg("--version").output().is_ok_and(|output| output.status.success())
}

/// The page at `path` as `man -l` formats it for an 80-column terminal.
fn rendered(path: &Path) -> Result<String, Box<dyn Error>> {
    let output = Command::new("man").arg("-l").arg(path).env("MANWIDTH", "80").env("MANPAGER", "cat").output()?;
    assert!(output.status.success(), "man -l {}: {}", path.display(), String::from_utf8_lossy(&output.stderr));
    Ok(String::from_utf8(output.stdout)?)
}

#[test]
fn man_renders_the_pages_when_it_is_installed() -> TestResult {
    if !man_is_installed() {
        eprintln!("skipped: no `man` to render the pages with");
        return Ok(());
    }
    let temporary = tempfile::tempdir()?;
    stdout_of(&["man", "--dir", temporary.path().to_str().ok_or("the temporary path is UTF-8")?])?;
    let top = rendered(&temporary.path().join("envsnap.1"))?;
    for heading in ["NAME", "SYNOPSIS", "OPTIONS", "SUBCOMMANDS"] {
        assert!(top.contains(heading), "envsnap(1) has a {heading} section:\n{top}");
    }
    assert!(top.contains("envsnap-backup(1)"), "{top}");
    let nested = rendered(&temporary.path().join("envsnap-hooks-install.1"))?;
    // man justifies the synopsis line, so words may be apart by more than one space.
    let words = nested.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(words.contains("SYNOPSIS envsnap hooks install"), "the synopsis is the full command:\n{nested}");
    Ok(())
}
