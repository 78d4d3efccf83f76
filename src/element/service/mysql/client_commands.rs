//! The client's own commands in a dump: what a stored dump must not hold.
//!
//! A dump read from the store is hostile input, and the `mariadb` client runs some
//! of what it reads itself instead of sending it to the server (`\!` runs a shell
//! command). This scanner is kept apart from the adapter, with no dependency beyond
//! `std`, so that the fuzz target compiles this very file.

/// Finds, in a dump fed to it piece by piece, the first place where the `mariadb` (or
/// `mysql`) client would see a command of its own rather than SQL: a backslash
/// command (`\!`, `\.`, `\u`, `\r`, `\T`, …) anywhere outside strings and comments, or a
/// long-form one (`system`, `source`, `connect`, `use`, `tee`, `pager`, `exit`, …)
/// as the first word of a statement. It follows the client's own reading: quoted
/// strings and identifiers (backslash escapes in them), `#` and `-- ` comments, `/* */`
/// comments, whose executable forms `/*!` and `/*M!` it reads as the client does, as
/// SQL, and the delimiter that `DELIMITER` sets.
///
/// Two commands are what dumps hold: `DELIMITER`, around routines and triggers, and
/// the `\-` of `/*M!999999\- enable the sandbox mode */`, the first line of a recent
/// `mariadb-dump`'s output, which turns sandbox mode on. Every other one is refused.
/// A statement that only looks like a command inside a string, e.g. a row holding
/// `\! rm`, is data, and passes.
#[derive(Debug)]
pub struct ClientCommands {
    state: ScanState,
    /// The statement delimiter, `;` unless `DELIMITER` changed it.
    delimiter: Vec<u8>,
    /// The last bytes read as SQL, as many as the delimiter has.
    recent: Vec<u8>,
    /// A statement has begun and has not been ended by the delimiter.
    pending: bool,
    /// The first word of a line that starts a statement, while it is read.
    word: Option<Vec<u8>>,
    /// The line being read, its number in the stream and its first bytes, for the message.
    line: u64,
    shown: Vec<u8>,
}

/// Where [`ClientCommands`] is, lexically.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ScanState {
    Sql,
    /// After a `\` in SQL.
    Backslash,
    /// After `-` in SQL, and after `--`.
    Dash,
    DashDash,
    /// After `/` in SQL; after `/*`; after `/*M`.
    Slash,
    CommentStart,
    CommentM,
    /// In a `/* */` comment; after a `*` in it.
    Comment,
    CommentStar,
    /// To the end of the line: a `#` or `-- ` comment.
    LineComment,
    /// In a string or quoted identifier opened by this quote; after a `\` in it.
    Quoted(u8),
    QuotedBackslash(u8),
    /// The rest of a `DELIMITER` line: the new delimiter.
    Delimiter,
}

/// A client command that [`ClientCommands`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoundCommand {
    /// Its line, counted from 1 in its stream.
    pub line: u64,
    /// The start of that line, made printable.
    pub text: String,
    /// The command, as the client names it.
    pub command: String,
}

/// The client's long-form commands (`help` in the client lists them); `delimiter` is
/// handled apart.
const LONG_COMMANDS: &[&str] = &[
    "?",
    "charset",
    "clear",
    "connect",
    "edit",
    "ego",
    "exit",
    "go",
    "help",
    "nopager",
    "notee",
    "nowarning",
    "pager",
    "print",
    "prompt",
    "quit",
    "rehash",
    "sandbox",
    "source",
    "status",
    "system",
    "tee",
    "use",
    "warnings",
];

impl Default for ClientCommands {
    fn default() -> Self {
        ClientCommands {
            state: ScanState::Sql,
            delimiter: b";".to_vec(),
            recent: Vec::new(),
            pending: false,
            word: Some(Vec::new()),
            line: 1,
            shown: Vec::new(),
        }
    }
}

impl ClientCommands {
    /// The next stream starts: lines are counted anew (the client reads the streams
    /// as one, so nothing else changes).
    pub fn start_stream(&mut self) {
        self.line = 1;
        self.shown.clear();
    }

    fn found(&self, command: &str) -> FoundCommand {
        let text: String = String::from_utf8_lossy(&self.shown)
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .take(80)
            .collect();
        FoundCommand { line: self.line, text: text.trim().to_owned(), command: command.to_owned() }
    }

    /// Reads `bytes`, the next piece of the dump; returns the first command found.
    pub fn scan(&mut self, bytes: &[u8]) -> Option<FoundCommand> {
        for &byte in bytes {
            if byte != b'\n' && self.shown.len() < 200 {
                self.shown.push(byte);
            }
            if let Some(found) = self.step(byte) {
                return Some(found);
            }
            if byte == b'\n' {
                self.line += 1;
                self.shown.clear();
            }
        }
        None
    }

    /// A byte of SQL (not of a string or comment): statements begin and end here.
    fn sql(&mut self, byte: u8) -> Option<FoundCommand> {
        if let Some(word) = &mut self.word {
            if word.is_empty() && byte.is_ascii_whitespace() {
                return None;
            }
            if byte.is_ascii_alphabetic() || (word.is_empty() && byte == b'?') {
                word.push(byte.to_ascii_lowercase());
                if word.len() > 16 {
                    self.word = None;
                }
            } else {
                let word = self.word.take().unwrap_or_default();
                let ends = byte.is_ascii_whitespace() || byte == b';' || byte == b'\n';
                if ends && word == b"delimiter" {
                    self.state = ScanState::Delimiter;
                    self.recent.clear();
                    return None;
                }
                if ends && let Some(command) = LONG_COMMANDS.iter().find(|command| command.as_bytes() == word) {
                    return Some(self.found(command));
                }
            }
        }
        if byte == b'\n' {
            // A new line starts a statement if the last one was ended.
            self.word = (!self.pending).then(Vec::new);
            return None;
        }
        if byte.is_ascii_whitespace() {
            return None;
        }
        self.recent.push(byte);
        if self.recent.len() > self.delimiter.len() {
            self.recent.remove(0);
        }
        if self.recent == self.delimiter {
            self.pending = false;
            self.recent.clear();
            // The client takes the rest of the line as the next statement's start.
            self.word = Some(Vec::new());
        } else {
            self.pending = true;
        }
        None
    }

    fn step(&mut self, byte: u8) -> Option<FoundCommand> {
        use ScanState::*;
        match self.state {
            Sql => match byte {
                b'\\' => self.state = Backslash,
                b'\'' | b'"' | b'`' => {
                    self.word = None;
                    self.pending = true;
                    self.state = Quoted(byte);
                }
                b'#' => self.state = LineComment,
                b'-' => self.state = Dash,
                b'/' => self.state = Slash,
                _ => return self.sql(byte),
            },
            Backslash => {
                self.state = Sql;
                // `\-` is the sandbox command that recent dumps open with.
                if byte != b'-' {
                    return Some(self.found(&format!("\\{}", char::from(byte).escape_default())));
                }
            }
            Dash => match byte {
                b'-' => self.state = DashDash,
                _ => {
                    self.state = Sql;
                    self.sql(b'-');
                    return self.step(byte);
                }
            },
            DashDash => {
                if byte.is_ascii_whitespace() {
                    self.state = LineComment;
                    if byte == b'\n' {
                        self.state = Sql;
                        return self.sql(byte);
                    }
                } else {
                    self.state = Sql;
                    self.sql(b'-');
                    self.sql(b'-');
                    return self.step(byte);
                }
            }
            Slash => match byte {
                b'*' => self.state = CommentStart,
                _ => {
                    self.state = Sql;
                    self.sql(b'/');
                    return self.step(byte);
                }
            },
            // `/*!` and `/*M!` hold SQL for the server, and the client reads them as SQL;
            // their closing `*/` is read as SQL too, which changes nothing here.
            CommentStart => match byte {
                b'!' => self.state = Sql,
                b'M' => self.state = CommentM,
                _ => {
                    self.state = Comment;
                    return self.step(byte);
                }
            },
            CommentM => {
                self.state = if byte == b'!' { Sql } else { Comment };
                if self.state == Comment {
                    return self.step(byte);
                }
            }
            Comment => {
                if byte == b'*' {
                    self.state = CommentStar;
                }
            }
            CommentStar => {
                self.state = match byte {
                    b'/' => Sql,
                    b'*' => CommentStar,
                    _ => Comment,
                };
            }
            LineComment => {
                if byte == b'\n' {
                    self.state = Sql;
                    return self.sql(byte);
                }
            }
            Quoted(quote) => {
                if byte == b'\\' && quote != b'`' {
                    self.state = QuotedBackslash(quote);
                } else if byte == quote {
                    self.state = Sql;
                }
            }
            QuotedBackslash(quote) => self.state = Quoted(quote),
            Delimiter => {
                if byte == b'\n' {
                    let text = std::mem::take(&mut self.recent);
                    let delimiter: Vec<u8> = text.trim_ascii().to_vec();
                    self.delimiter = if delimiter.is_empty() { b";".to_vec() } else { delimiter };
                    self.state = Sql;
                    self.pending = false;
                    self.word = Some(Vec::new());
                } else if self.recent.len() < 64 {
                    self.recent.push(byte);
                }
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_commands_are_found_outside_strings_and_comments_only() {
        let scan = |text: &str| ClientCommands::default().scan(text.as_bytes()).map(|found| found.command);
        let dump = "/*M!999999\\- enable the sandbox mode */ \n-- MariaDB dump\n/*!40101 SET NAMES utf8mb4 */;\n\
                    INSERT INTO `t` VALUES ('a\\\\!b'),('x\\'y \\! z'),(\"\\. q\");\n\
                    /* a comment \\! */ # or \\! this\n-- and \\. this\nsystem_user();\nDELIMITER ;;\n\
                    CREATE PROCEDURE p() BEGIN SELECT 1;\nsource x;\nEND ;;\nDELIMITER ;\nUSEless;\n";
        assert_eq!(scan(dump), None, "a dump's own content passes");
        assert_eq!(scan("SELECT 1;\n\\! touch /tmp/x\n"), Some("\\!".to_owned()));
        assert_eq!(scan("SELECT 1; \\. /etc/x\n"), Some("\\.".to_owned()));
        assert_eq!(scan("CREATE TABLE t (x int) \\u other\n"), Some("\\u".to_owned()));
        assert_eq!(scan("SELECT 1;\n  System touch /tmp/x\n"), Some("system".to_owned()));
        assert_eq!(scan("SELECT 1;\nsource /etc/passwd\n"), Some("source".to_owned()));
        assert_eq!(scan("SELECT 1; use other;\n"), Some("use".to_owned()));
        assert_eq!(scan("INSERT INTO t VALUES (1);\nexit\nINSERT INTO t VALUES (2);\n"), Some("exit".to_owned()));
        assert_eq!(scan("DELIMITER $$\nSELECT 1$$\ntee /tmp/out\n"), Some("tee".to_owned()));
        assert_eq!(scan("/*!50001 \\! x */;\n"), Some("\\!".to_owned()), "executable comments are SQL");
        let split = "SELECT 1;\n\\! touch /tmp/x\n";
        let mut scanner = ClientCommands::default();
        let found: Vec<_> = split.as_bytes().chunks(1).filter_map(|piece| scanner.scan(piece)).collect();
        assert_eq!(found.first().map(|found| (found.line, found.text.as_str())), Some((2, "\\!")));
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]

        /// Whatever a stored dump holds, the scanner neither panics nor grows: its
        /// buffers stay within their bounds, and where the dump is cut into pieces does
        /// not change what it finds.
        #[test]
        fn any_bytes_are_scanned_within_bounds_however_they_are_cut(
            bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..4096),
            cut in 0usize..4096,
        ) {
            let mut whole = ClientCommands::default();
            let found_whole = whole.scan(&bytes);
            let mut pieces = ClientCommands::default();
            let cut = cut.min(bytes.len());
            let found_pieces = pieces.scan(&bytes[..cut]).or_else(|| pieces.scan(&bytes[cut..]));
            proptest::prop_assert_eq!(found_whole, found_pieces);
            for scanner in [&whole, &pieces] {
                proptest::prop_assert!(scanner.shown.len() <= 200);
                proptest::prop_assert!(scanner.recent.len() <= 64.max(scanner.delimiter.len()));
                proptest::prop_assert!(scanner.delimiter.len() <= 64);
                proptest::prop_assert!(scanner.word.as_ref().is_none_or(|word| word.len() <= 17));
            }
        }
    }
}
