//! DFP's path rewrite, `http-request set-path %[path,regsub(search,replace)]`,
//! as capstan's `replace-path`, and back (to echo it); with the scanner that
//! counts a PCRE pattern's capture groups, which the translation shifts.

use crate::model::PathRewrite;
use crate::model::grammar::{self, InvalidValue};

/// Why a PCRE pattern is refused before HAProxy sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(super) enum PatternError {
    #[error("ends with a lone `\\`")]
    LoneBackslash,
    #[error("`\\Q...\\E` quoting is not supported")]
    Quoting,
    #[error("`(*...)` verbs are not supported")]
    Verb,
    #[error("branch resets, recursion, subroutine calls and callouts are not supported")]
    Subroutine,
    #[error("has an unbalanced `)`")]
    UnbalancedParen,
    #[error("has an unclosed `(`")]
    UnclosedParen,
    #[error("has an unclosed `[`")]
    UnclosedClass,
    #[error("has an unclosed `[:`")]
    UnclosedPosixClass,
}

/// `reqPathSearchReplace`: `search,replace` pairs separated by `:`, applied
/// in order, each to the path the previous one made (DFP renders one
/// `set-path` per pair).
pub(super) fn search_replace_value(value: &str) -> Result<Vec<PathRewrite>, String> {
    let pairs: Vec<&str> = value.split(':').collect();
    let several = pairs.len() > 1;
    pairs
        .into_iter()
        .enumerate()
        .map(|(i, pair)| {
            let rewrite = match pair.split(',').collect::<Vec<_>>().as_slice() {
                [search, replace] => regsub_rewrite(search, replace),
                _ => Err("is not `search,replace`".into()),
            };
            // Pairs are counted from 1, as a reader counts them.
            rewrite.map_err(|e| {
                if several {
                    format!("pair {}: {e}", i + 1)
                } else {
                    e
                }
            })
        })
        .collect()
}

/// DFP's rewrite (the first match of `search` in the path is replaced) as
/// capstan's `replace-path`, which replaces the whole path:
/// `^(.*?)(search)(.*)$` → `\1replace\N`, with `replace`'s back-references
/// shifted by two.
pub(super) fn regsub_rewrite(search: &str, replace: &str) -> Result<PathRewrite, String> {
    match grammar::PATH.check(search) {
        Ok(()) => {}
        Err(InvalidValue::Empty) => return Err("the search is empty".into()),
        Err(InvalidValue::Character(c)) => {
            return Err(format!("`{c}` is not allowed in the search"));
        }
        Err(other) => return Err(format!("the search {other}")),
    }
    // A `\` is a back-reference, read below; the rest is the model's.
    if let Some(c) = replace
        .chars()
        .find(|&c| c != '\\' && !grammar::PATH_REPLACE.allows_char(c))
    {
        return Err(format!("`{c}` is not allowed in the replacement"));
    }
    let groups = capture_groups(search).map_err(|e| format!("the search: {e}"))?;
    let rest = groups + 3;
    if rest > 9 {
        return Err(format!(
            "the search has {groups} capture groups; at most 6 are supported"
        ));
    }
    let shifted = map_references(replace, |k| match k {
        Some(k) if (k as usize) <= groups => Ok(k + 2),
        Some(k) => Err(format!(
            "the replacement refers to group {k}; the search has {groups}"
        )),
        None => Err("a `\\` in the replacement must be followed by a group number".to_string()),
    })?;
    Ok(PathRewrite {
        regex: format!("^(.*?)({search})(.*)$"),
        replace: format!("\\1{shifted}\\{rest}"),
    })
}

/// The `search,replace` a rewrite made by [`regsub_rewrite`] came from; any
/// other rewrite as its regex and replacement.
pub(super) fn search_replace_of(rewrite: &PathRewrite) -> (String, String) {
    let raw = || (rewrite.regex.clone(), rewrite.replace.clone());
    let Some(search) = rewrite
        .regex
        .strip_prefix("^(.*?)(")
        .and_then(|r| r.strip_suffix(")(.*)$"))
    else {
        return raw();
    };
    let Ok(groups) = capture_groups(search) else {
        return raw();
    };
    let Some(middle) = rewrite
        .replace
        .strip_prefix("\\1")
        .and_then(|r| r.strip_suffix(&format!("\\{}", groups + 3)))
    else {
        return raw();
    };
    let Ok(replace) = map_references(middle, |k| k.filter(|&k| k >= 2).map(|k| k - 2).ok_or(()))
    else {
        return raw();
    };
    (search.to_string(), replace)
}

/// `text` with each back-reference `\k` renumbered by `renumber`, which
/// gets `None` for a `\` not followed by a digit.
fn map_references<E>(
    text: &str,
    renumber: impl Fn(Option<u32>) -> Result<u32, E>,
) -> Result<String, E> {
    let mut out = String::new();
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            let k = renumber(chars.next().and_then(|d| d.to_digit(10)))?;
            out.push('\\');
            out.push_str(&k.to_string());
        } else {
            out.push(c);
        }
    }
    Ok(out)
}

/// Counts the capture groups of a PCRE pattern, and checks that its
/// parentheses and brackets balance: a structural check, so that an obviously
/// broken pattern is a 400 rather than a config HAProxy refuses.
pub(super) fn capture_groups(regex: &str) -> Result<usize, PatternError> {
    let b = regex.as_bytes();
    let (mut i, mut depth, mut groups) = (0, 0usize, 0usize);
    while i < b.len() {
        match b[i] {
            b'\\' => match b.get(i + 1) {
                None => return Err(PatternError::LoneBackslash),
                Some(b'Q') => return Err(PatternError::Quoting),
                Some(_) => i += 2,
            },
            b'[' => i = class_end(b, i)?,
            b'(' => {
                depth += 1;
                groups += group_opened(&b[i + 1..])?;
                i += 1;
            }
            b')' => {
                if depth == 0 {
                    return Err(PatternError::UnbalancedParen);
                }
                depth -= 1;
                i += 1;
            }
            _ => i += 1,
        }
    }
    if depth > 0 {
        return Err(PatternError::UnclosedParen);
    }
    Ok(groups)
}

/// 1 when the `(` before `after` opens a capture group, 0 for other groups.
fn group_opened(after: &[u8]) -> Result<usize, PatternError> {
    match (after.first(), after.get(1), after.get(2)) {
        (Some(b'*'), ..) => Err(PatternError::Verb),
        (Some(b'?'), Some(b'<'), Some(b'=' | b'!')) => Ok(0),
        (Some(b'?'), Some(b'<' | b'\''), _) | (Some(b'?'), Some(b'P'), Some(b'<')) => Ok(1),
        (Some(b'?'), Some(b'P' | b'|' | b'R' | b'&' | b'+' | b'C' | b'0'..=b'9'), _) => {
            Err(PatternError::Subroutine)
        }
        (Some(b'?'), ..) => Ok(0),
        _ => Ok(1),
    }
}

/// The index after the `]` closing the character class opened at `start`.
fn class_end(b: &[u8], start: usize) -> Result<usize, PatternError> {
    let mut i = start + 1;
    if b.get(i) == Some(&b'^') {
        i += 1;
    }
    if b.get(i) == Some(&b']') {
        i += 1;
    }
    while i < b.len() {
        match b[i] {
            b'\\' => i += 2,
            b'[' if b.get(i + 1) == Some(&b':') => {
                let close = b[i + 2..]
                    .windows(2)
                    .position(|w| w == b":]")
                    .ok_or(PatternError::UnclosedPosixClass)?;
                i += 2 + close + 2;
            }
            b']' => return Ok(i + 1),
            _ => i += 1,
        }
    }
    Err(PatternError::UnclosedClass)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capture_groups_are_counted() {
        assert_eq!(capture_groups("/a"), Ok(0));
        assert_eq!(
            capture_groups("(a)(?:b)(?<n>c)(?P<m>d)(?'o'e)(?=f)(?<=g)(?!h)(?i)"),
            Ok(4)
        );
        assert_eq!(capture_groups("[(]\\(([)])"), Ok(1));
        assert_eq!(capture_groups("[]a(]"), Ok(0));
        assert_eq!(capture_groups("[[:alpha:](]"), Ok(0));
        for bad in [
            "(", ")", "[a", "\\", "\\Qa\\E", "(*UTF)", "(?|a)", "(?R)", "[[:alpha",
        ] {
            assert!(capture_groups(bad).is_err(), "{bad}");
        }
    }
}
