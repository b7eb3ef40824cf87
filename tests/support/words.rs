//! What HAProxy's config parser would change in a rendered config.
//! Include it with `#[path = "support/words.rs"] mod words;`.
//!
//! HAProxy decodes `\\`, `\xHH`, `\n`, `\t`, `\r`, `\ `, `\#` and quotes in
//! every word, starts a comment at an unquoted `#`, and expands `$VAR` and
//! `${VAR}` inside double quotes (checked against haproxy 2.6 with real
//! traffic, see tests/dfp_api.rs). A config capstan renders must contain
//! none of that, except the two forms it writes on purpose: `\\` (each
//! backslash of a regex, which PCRE then reads as one) and `\N` (a group in
//! a `replace-path` replacement, which HAProxy leaves alone).
#![allow(dead_code)] // each test binary uses part of it

/// Why HAProxy would not read `line` as written, if it would not.
pub fn decoded_part(line: &str) -> Option<String> {
    let replacement = line.trim_start().starts_with("http-request replace-path ");
    let mut quoted = false;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', _) => quoted = !quoted,
            ('$', true) => return Some("`$` inside double quotes: a variable".into()),
            ('\\', true) => return Some("`\\` inside double quotes: an escape".into()),
            ('#', false) => return Some("unquoted `#`: a comment".into()),
            ('\\', false) => match chars.next() {
                Some('\\') => {}
                Some(d) if d.is_ascii_digit() && replacement => {}
                other => return Some(format!("the escape `\\{}`", other.unwrap_or(' '))),
            },
            _ => {}
        }
    }
    None
}

/// The first line of `config` HAProxy would not read as written, and why.
pub fn first_decoded(config: &str) -> Option<(String, String)> {
    config
        .lines()
        .filter(|l| !l.starts_with("# Rendered by capstan"))
        .find_map(|line| decoded_part(line).map(|why| (line.to_string(), why)))
}

/// Panics naming the first line of `config` HAProxy would not read as written.
pub fn assert_read_as_written(config: &str) {
    if let Some((line, why)) = first_decoded(config) {
        panic!("HAProxy would decode {why} in {line:?}\n{config}");
    }
}
