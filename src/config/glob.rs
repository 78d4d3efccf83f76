//! Branch patterns: `*`, `**` and `?`, written by hand because branch names need
//! only these three and a general glob crate would accept (and mean) much more.

use std::fmt;

/// A branch pattern such as `release/*` or `feature/**`.
///
/// `*` matches any run of characters within one path component (it does not cross
/// `/`), `**` matches anything, `?` matches one character other than `/`, and every
/// other character matches itself. As in gitignore, `**/` also matches no component
/// at all, so `team/**/wip` matches `team/wip`. A pattern must match the whole name.
#[derive(Debug, Clone)]
pub struct Glob {
    pattern: String,
    tokens: Vec<Token>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Token {
    Literal(char),
    /// `?`
    OneChar,
    /// `*`
    Star,
    /// `**` not followed by `/`
    Globstar,
    /// `**/`: nothing, or anything ending with `/`
    GlobstarSlash,
}

/// Why a string is not a usable branch pattern.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{pattern}` is not a valid branch pattern: {reason}")]
pub struct GlobError {
    /// The pattern as written.
    pub pattern: String,
    /// What is wrong with it, and what to write instead.
    pub reason: &'static str,
}

impl Glob {
    /// Checks and compiles `pattern`.
    ///
    /// Rejected: the empty pattern, `***`, `[` (character classes are not supported),
    /// and what git forbids in a branch name anyway: spaces and control characters,
    /// `~ ^ : \`, a leading or trailing `/`, and `//`.
    pub fn new(pattern: &str) -> Result<Self, GlobError> {
        let fail = |reason| GlobError { pattern: pattern.to_owned(), reason };
        if pattern.is_empty() {
            return Err(fail("it is empty; write a branch name or a pattern such as `release/*`"));
        }
        if pattern.starts_with('/') || pattern.ends_with('/') || pattern.contains("//") {
            return Err(fail("a branch name cannot start or end with `/` or contain `//`"));
        }
        let chars: Vec<char> = pattern.chars().collect();
        let mut tokens = Vec::with_capacity(chars.len());
        let mut position = 0;
        while let Some(&c) = chars.get(position) {
            position += 1;
            let token = match c {
                '*' => {
                    let mut stars = 1;
                    while chars.get(position) == Some(&'*') {
                        stars += 1;
                        position += 1;
                    }
                    match stars {
                        1 => Token::Star,
                        2 if chars.get(position) == Some(&'/') => {
                            position += 1;
                            Token::GlobstarSlash
                        }
                        2 => Token::Globstar,
                        _ => {
                            return Err(fail("use `*` within one path component or `**` across components, not `***`"));
                        }
                    }
                }
                '?' => Token::OneChar,
                '[' => {
                    return Err(fail("character classes (`[...]`) are not supported; use `?` or `*`"));
                }
                '~' | '^' | ':' | '\\' => {
                    return Err(fail("`~`, `^`, `:` and `\\` cannot appear in a branch name"));
                }
                c if c.is_whitespace() || c.is_control() => {
                    return Err(fail("a branch name cannot contain spaces or control characters"));
                }
                c => Token::Literal(c),
            };
            tokens.push(token);
        }
        Ok(Self { pattern: pattern.to_owned(), tokens })
    }

    /// A pattern that matches exactly `name`, whatever characters it holds.
    pub(crate) fn exact(name: &str) -> Self {
        Self { pattern: name.to_owned(), tokens: name.chars().map(Token::Literal).collect() }
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.pattern
    }

    /// Whether `name` (a branch name) matches the whole pattern.
    pub fn matches(&self, name: &str) -> bool {
        // Dynamic programming over (token, character) instead of backtracking, so a
        // pattern full of stars stays linear in the product of the two lengths.
        // `row_below[j]`: do tokens[i + 1..] match text[j..]?
        let text: Vec<char> = name.chars().collect();
        let width = text.len() + 1;
        let mut row_below = vec![false; width];
        row_below[text.len()] = true;
        let mut row = vec![false; width];
        for token in self.tokens.iter().rev() {
            // For `**/`: is there a `/` at or after j whose rest matches?
            let mut slash_ahead = false;
            for j in (0..width).rev() {
                let here = text.get(j).copied();
                let next = row.get(j + 1).copied().unwrap_or(false);
                let next_below = row_below.get(j + 1).copied().unwrap_or(false);
                row[j] = match token {
                    Token::Literal(c) => here == Some(*c) && next_below,
                    Token::OneChar => here.is_some_and(|h| h != '/') && next_below,
                    Token::Star => row_below[j] || (here.is_some_and(|h| h != '/') && next),
                    Token::Globstar => row_below[j] || (here.is_some() && next),
                    Token::GlobstarSlash => {
                        slash_ahead = slash_ahead || (here == Some('/') && next_below);
                        row_below[j] || slash_ahead
                    }
                };
            }
            std::mem::swap(&mut row, &mut row_below);
        }
        row_below[0]
    }
}

impl PartialEq for Glob {
    fn eq(&self, other: &Self) -> bool {
        self.pattern == other.pattern
    }
}

impl Eq for Glob {}

impl fmt::Display for Glob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.pattern)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matches(pattern: &str, name: &str) -> Result<bool, GlobError> {
        Ok(Glob::new(pattern)?.matches(name))
    }

    #[test]
    fn literal_patterns_match_only_themselves() -> Result<(), GlobError> {
        assert!(matches("main", "main")?);
        assert!(!matches("main", "mainline")?);
        assert!(!matches("main", "mai")?);
        assert!(!matches("main", "")?);
        Ok(())
    }

    #[test]
    fn star_stays_within_one_component() -> Result<(), GlobError> {
        assert!(matches("release/*", "release/1.0")?);
        assert!(matches("release/*", "release/")?);
        assert!(!matches("release/*", "release/1.0/hotfix")?);
        assert!(!matches("release/*", "release")?);
        assert!(matches("*", "main")?);
        assert!(!matches("*", "feature/x")?);
        assert!(matches("feat*-x", "feature-x")?);
        assert!(matches("*-*-*", "a-b-c")?);
        assert!(!matches("*-*-*", "a-b")?);
        Ok(())
    }

    #[test]
    fn globstar_crosses_components() -> Result<(), GlobError> {
        assert!(matches("**", "a/b/c")?);
        assert!(matches("feature/**", "feature/a/b")?);
        assert!(!matches("feature/**", "feature")?);
        assert!(matches("**/wip", "a/b/wip")?);
        assert!(matches("**/wip", "wip")?);
        assert!(matches("team/**/wip", "team/wip")?);
        assert!(matches("team/**/wip", "team/a/b/wip")?);
        assert!(!matches("team/**/wip", "team/awip")?);
        assert!(matches("a**z", "a/b/z")?);
        Ok(())
    }

    #[test]
    fn question_mark_is_one_character_but_not_a_slash() -> Result<(), GlobError> {
        assert!(matches("v?", "v1")?);
        assert!(!matches("v?", "v12")?);
        assert!(!matches("a?b", "a/b")?);
        assert!(matches("caf?", "café")?);
        Ok(())
    }

    #[test]
    fn bad_patterns_are_rejected_with_a_reason() {
        for pattern in ["", "release/[0-9]", "a***", "with space", "/main", "main/", "a//b", "a:b"] {
            assert!(Glob::new(pattern).is_err(), "{pattern:?} should be rejected");
        }
        let error = Glob::new("release/[0-9]").err().map(|e| e.to_string());
        assert_eq!(
            error.as_deref(),
            Some(
                "`release/[0-9]` is not a valid branch pattern: character classes (`[...]`) are not supported; use `?` or `*`"
            )
        );
    }

    #[test]
    fn exact_matches_literally() {
        assert!(Glob::exact("main").matches("main"));
        assert!(!Glob::exact("ma*").matches("main"));
    }
}
