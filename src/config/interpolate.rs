//! `{branch}` and `${VAR}` in configuration values.
//!
//! Only the exact text `{branch}` is a placeholder: other braces are left alone,
//! because shell commands (`dump`, `restore`, `pause`) are full of them. `${VAR}`
//! is expanded by envsnap, not by a shell, so that an unset variable is an error
//! naming the key instead of an empty database name; `$${` writes a literal `${`.

/// The longest slug [`branch_slug`] returns. PostgreSQL and MySQL cut identifiers
/// at 63 and 64 bytes; 48 leaves room for a prefix such as `app_` or `shop_test_`.
const SLUG_MAX: usize = 48;

/// The slug of a branch whose name has no letter or digit at all.
const EMPTY_SLUG: &str = "default";

/// The branch name made safe for database and file names: the value of `{branch}`.
///
/// Lowercase ASCII letters, digits and `_` are kept (uppercase letters are lowered);
/// everything else becomes `_`; runs of `_` collapse to one and leading or trailing
/// `_` are trimmed, so `feature/JIRA-12--login` becomes `feature_jira_12_login`. A name
/// with nothing left is `default`. A slug longer than 48 characters is cut and ends
/// with `_` and 8 hex digits of a hash of the full branch name, so that two long
/// branches sharing a prefix still get two databases.
///
/// Short names that differ only in punctuation or case (`a-b`, `A_b`) share a slug.
/// The hash is part of the names of users' databases: it must never change.
pub fn branch_slug(branch: &str) -> String {
    let mut slug = String::with_capacity(branch.len());
    for c in branch.chars() {
        let c = c.to_ascii_lowercase();
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            slug.push(c);
        } else if !slug.is_empty() && !slug.ends_with('_') {
            slug.push('_');
        }
    }
    let slug = slug.trim_end_matches('_');
    if slug.is_empty() {
        return EMPTY_SLUG.to_owned();
    }
    if slug.len() <= SLUG_MAX {
        return slug.to_owned();
    }
    let hash = format!("{:08x}", fnv1a_32(branch.as_bytes()));
    // The slug is ASCII, so any byte index is a character boundary.
    let head = slug.get(..SLUG_MAX - 1 - hash.len()).unwrap_or(slug).trim_end_matches('_');
    format!("{head}_{hash}")
}

/// 32-bit FNV-1a: tiny, stable across versions and platforms, and good enough to
/// tell branch names apart (it is not a defence against chosen collisions).
fn fnv1a_32(bytes: &[u8]) -> u32 {
    const OFFSET_BASIS: u32 = 0x811c_9dc5;
    const PRIME: u32 = 0x0100_0193;
    bytes.iter().fold(OFFSET_BASIS, |hash, &byte| (hash ^ u32::from(byte)).wrapping_mul(PRIME))
}

/// Looks a variable up in the process environment: the lookup the binary passes to
/// [`Config::mounts_for`](super::Config::mounts_for) and the other resolved views.
pub fn process_environment(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// Why a value could not be expanded.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum ExpandError {
    /// The value is not well formed; the message says how to fix it.
    Syntax(String),
    /// `${name}` names a variable that is not set.
    Unset(String),
}

/// Checks the syntax of a value without expanding it, so that a malformed `${`
/// is reported when the file is read.
pub(crate) fn check(value: &str) -> Result<(), String> {
    pieces(value).map(drop)
}

/// `value` with `{branch}` replaced by `slug` and every `${VAR}` by its value.
pub(crate) fn expand(value: &str, slug: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Result<String, ExpandError> {
    let mut expanded = String::with_capacity(value.len());
    for piece in pieces(value).map_err(ExpandError::Syntax)? {
        match piece {
            Piece::Text(text) => expanded.push_str(text),
            Piece::Branch => expanded.push_str(slug),
            Piece::Variable(name) => {
                let value = lookup(name).ok_or_else(|| ExpandError::Unset(name.to_owned()))?;
                expanded.push_str(&value);
            }
        }
    }
    Ok(expanded)
}

#[derive(Debug, PartialEq, Eq)]
enum Piece<'a> {
    Text(&'a str),
    Branch,
    Variable(&'a str),
}

fn pieces(value: &str) -> Result<Vec<Piece<'_>>, String> {
    let mut pieces = Vec::new();
    let mut text_start = 0;
    let mut position = 0;
    while let Some(rest) = value.get(position..).filter(|rest| !rest.is_empty()) {
        let (piece, length) = if rest.starts_with("$${") {
            (Piece::Text("${"), 3)
        } else if let Some(after) = rest.strip_prefix("${") {
            let Some(end) = after.find('}') else {
                return Err("`${` is not closed; write `${NAME}`, or `$${` for a literal `${`".to_owned());
            };
            let name = &after[..end];
            if !is_variable_name(name) {
                return Err(format!(
                    "`${{{name}}}` is not a variable: a name is letters, digits and `_`, not starting with a digit; write `$${{` for a literal `${{`"
                ));
            }
            (Piece::Variable(name), end + 3)
        } else if rest.starts_with("{branch}") {
            (Piece::Branch, "{branch}".len())
        } else {
            position += rest.chars().next().map_or(1, char::len_utf8);
            continue;
        };
        if text_start < position {
            pieces.push(Piece::Text(&value[text_start..position]));
        }
        pieces.push(piece);
        position += length;
        text_start = position;
    }
    if text_start < value.len() {
        pieces.push(Piece::Text(&value[text_start..]));
    }
    Ok(pieces)
}

fn is_variable_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|first| first.is_ascii_alphabetic() || first == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_variables(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn slugs_are_lowercase_words_joined_by_underscores() {
        assert_eq!(branch_slug("main"), "main");
        assert_eq!(branch_slug("feature/JIRA-12--login"), "feature_jira_12_login");
        assert_eq!(branch_slug("__a__b__"), "a_b");
        assert_eq!(branch_slug("-/release/1.0/"), "release_1_0");
        assert_eq!(branch_slug("café"), "caf");
        assert_eq!(branch_slug("snake_case"), "snake_case");
    }

    #[test]
    fn empty_slugs_become_default() {
        assert_eq!(branch_slug(""), "default");
        assert_eq!(branch_slug("///"), "default");
        assert_eq!(branch_slug("éé"), "default");
    }

    #[test]
    fn a_slug_of_exactly_the_limit_is_kept() {
        let name = "a".repeat(SLUG_MAX);
        assert_eq!(branch_slug(&name), name);
    }

    #[test]
    fn long_slugs_are_cut_and_told_apart_by_a_hash() {
        let prefix = "feature/a-very-long-description-of-what-this-branch-does";
        let one = branch_slug(&format!("{prefix}-one"));
        let two = branch_slug(&format!("{prefix}-two"));
        assert_ne!(one, two);
        for slug in [&one, &two] {
            assert_eq!(slug.len(), SLUG_MAX, "{slug}");
            assert!(slug.starts_with("feature_a_very_long_description_of_what"), "{slug}");
        }
        // Names whose slugs are equal before cutting still differ by their hash.
        assert_ne!(branch_slug(&format!("{prefix}/x")), branch_slug(&format!("{prefix}-x")));
        // And the same name always gives the same slug.
        assert_eq!(one, branch_slug(&format!("{prefix}-one")));
    }

    #[test]
    fn a_cut_never_leaves_a_double_underscore() {
        // Character 39 of the slug is `_`, which must not stay before the hash.
        let name = format!("{}-{}", "a".repeat(38), "b".repeat(20));
        let slug = branch_slug(&name);
        assert!(!slug.contains("__"), "{slug}");
        assert!(slug.len() <= SLUG_MAX);
    }

    #[test]
    fn fnv1a_matches_the_reference_values() {
        assert_eq!(fnv1a_32(b""), 0x811c_9dc5);
        assert_eq!(fnv1a_32(b"a"), 0xe40c_292c);
        assert_eq!(fnv1a_32(b"foobar"), 0xbf9c_f968);
    }

    #[test]
    fn branch_and_variables_are_expanded() {
        let lookup = |name: &str| (name == "PASSWORD").then(|| "s3cret".to_owned());
        assert_eq!(
            expand("postgresql://app:${PASSWORD}@db/app_{branch}", "feature_x", &lookup),
            Ok("postgresql://app:s3cret@db/app_feature_x".to_owned())
        );
    }

    #[test]
    fn other_braces_and_dollars_are_left_alone() {
        assert_eq!(
            expand("awk '{print $1}' | tr {a,b} $HOME $", "main", &no_variables),
            Ok("awk '{print $1}' | tr {a,b} $HOME $".to_owned())
        );
        assert_eq!(expand("{Branch} {branch", "main", &no_variables), Ok("{Branch} {branch".to_owned()));
    }

    #[test]
    fn double_dollar_escapes_a_literal_variable() {
        assert_eq!(expand("echo $${HOME}", "main", &no_variables), Ok("echo ${HOME}".to_owned()));
        assert_eq!(expand("$${branch}", "main", &no_variables), Ok("${branch}".to_owned()));
    }

    #[test]
    fn a_missing_variable_is_named() {
        assert_eq!(expand("x${A}${MISSING_ONE}", "main", &|_: &str| None), Err(ExpandError::Unset("A".to_owned())));
        let lookup = |name: &str| (name == "A").then(String::new);
        assert_eq!(expand("x${A}${MISSING_ONE}", "main", &lookup), Err(ExpandError::Unset("MISSING_ONE".to_owned())));
    }

    #[test]
    fn malformed_variables_are_syntax_errors() {
        assert!(check("${UNCLOSED").is_err());
        assert!(check("${}").is_err());
        assert!(check("${1X}").is_err());
        assert!(check("${A:-default}").is_err());
        assert_eq!(check("${_ok_1} $${not a var} ünïcode {branch}"), Ok(()));
    }
}
