//! A fast path for the YAML that routes files are written in: block
//! mappings and sequences, one-line flow sequences, plain and quoted
//! one-line scalars, comments. It builds the same value serde-saphyr
//! builds, about ten times faster, because it skips the general machinery
//! (events, serde's visitor) that a 10,000-route file pays for on every
//! scalar.
//!
//! It answers `None` on anything outside that shape (anchors, tags, block
//! scalars, multi-line scalars, flow mappings, tabs, non-ASCII text, a
//! duplicate key, anything it is unsure of), and [`super::parse`] then
//! hands the whole text to serde-saphyr, which also gives every error. So
//! the fast path never decides what a file means on its own: where it
//! answers, a property test checks that serde-saphyr answers the same.
//!
//! Scalars whose type is plain from their first characters (`go-demo`,
//! `/api`, `8080`, `5s`, `10.0.0.1:8080`) are typed here; any other plain
//! scalar (`0x1F`, `1e3`, `True`, `~`) is typed by serde-saphyr itself,
//! once per distinct text (a file needing more than a few hundred of those
//! goes to serde-saphyr whole).

use std::collections::HashMap;

use serde_json::{Map, Value};

/// Nesting deeper than this goes to serde-saphyr (and keeps recursion here shallow).
const MAX_DEPTH: usize = 64;

/// Distinct scalars serde-saphyr may type before the whole text goes to it
/// instead: each costs a parser of its own, and a file of nothing but
/// distinct `0x..` numbers would otherwise parse slower than serde-saphyr
/// parses it whole. Routes files have a few (timeouts' `1h`, `true`).
const MAX_TYPED_BY_SAPHYR: usize = 512;

/// The value of `text`, or `None` when serde-saphyr must parse it.
pub fn parse(text: &str) -> Option<Value> {
    let bytes = text.as_bytes();
    // Tabs, carriage returns, control and non-ASCII characters (NEL and the
    // Unicode line separators among them) change how YAML reads a line.
    if bytes
        .iter()
        .any(|&b| !(b == b'\n' || (0x20..0x7f).contains(&b)))
    {
        return None;
    }
    let mut lines = Vec::new();
    for raw in text.split('\n') {
        let content = raw.trim_start_matches(' ');
        if content.is_empty() || content.starts_with('#') {
            continue;
        }
        let indent = raw.len() - content.len();
        // Directives and document markers: several documents, or a `%YAML` header.
        if indent == 0
            && (content.starts_with("---")
                || content.starts_with("...")
                || content.starts_with('%'))
        {
            return None;
        }
        lines.push(Line {
            indent,
            content: content.trim_end_matches(' '),
        });
    }
    if lines.first()?.indent != 0 {
        return None;
    }
    let mut parser = Parser {
        lines,
        next: 0,
        typed: HashMap::new(),
    };
    let value = parser.node(0, 0)?;
    (parser.next == parser.lines.len()).then_some(value)
}

#[derive(Debug, Clone, Copy)]
struct Line<'t> {
    indent: usize,
    /// Without the indentation and trailing spaces; never empty, never a comment.
    content: &'t str,
}

struct Parser<'t> {
    lines: Vec<Line<'t>>,
    next: usize,
    /// What serde-saphyr makes of each plain scalar the fast path cannot type.
    typed: HashMap<&'t str, Option<Value>>,
}

impl<'t> Parser<'t> {
    fn peek(&self) -> Option<Line<'t>> {
        self.lines.get(self.next).copied()
    }

    /// The block node starting at the next line, whose indent is `indent`.
    fn node(&mut self, indent: usize, depth: usize) -> Option<Value> {
        if depth > MAX_DEPTH {
            return None;
        }
        let line = self.peek()?;
        if is_item(line.content) {
            self.sequence(indent, depth)
        } else if entry(line.content).is_some() {
            self.mapping(indent, depth)
        } else {
            // A scalar standing alone on its line, or a multi-line one.
            None
        }
    }

    /// A block sequence whose `- ` items are at `indent`.
    fn sequence(&mut self, indent: usize, depth: usize) -> Option<Value> {
        let mut items = Vec::new();
        while let Some(line) = self.peek() {
            if line.indent < indent || (line.indent == indent && !is_item(line.content)) {
                break;
            }
            if line.indent > indent {
                return None;
            }
            let rest = line.content[1..].trim_start_matches(' ');
            let column = indent + (line.content.len() - rest.len());
            let item = if rest.is_empty() {
                self.next += 1;
                self.nested_or_null(indent, depth)?
            } else if is_item(rest) {
                // `- - x`: a sequence in a sequence on one line.
                return None;
            } else if entry(rest).is_some() {
                // `- key: value`: a mapping whose keys line up after the dash.
                self.lines[self.next] = Line {
                    indent: column,
                    content: rest,
                };
                self.mapping(column, depth + 1)?
            } else {
                self.next += 1;
                let value = self.inline(rest)?;
                self.no_continuation(indent)?;
                value
            };
            items.push(item);
        }
        Some(Value::Array(items))
    }

    /// A block mapping whose keys are at `indent`.
    fn mapping(&mut self, indent: usize, depth: usize) -> Option<Value> {
        let mut map = Map::new();
        while let Some(line) = self.peek() {
            if line.indent < indent || (line.indent == indent && is_item(line.content)) {
                break;
            }
            if line.indent > indent {
                return None;
            }
            let (key, rest) = entry(line.content)?;
            let key = key_text(key)?;
            self.next += 1;
            let value = if rest.is_empty() {
                match self.peek() {
                    // A sequence may sit at its key's own indent.
                    Some(next) if next.indent == indent && is_item(next.content) => {
                        self.sequence(indent, depth + 1)?
                    }
                    _ => self.nested_or_null(indent, depth)?,
                }
            } else {
                let value = self.inline(rest)?;
                self.no_continuation(indent)?;
                value
            };
            if map.insert(key, value).is_some() {
                // serde-saphyr refuses duplicate keys, with its own message.
                return None;
            }
        }
        Some(Value::Object(map))
    }

    /// The node below a key or dash with nothing after it: more indented
    /// lines, or none (null).
    fn nested_or_null(&mut self, indent: usize, depth: usize) -> Option<Value> {
        match self.peek() {
            Some(next) if next.indent > indent => self.node(next.indent, depth + 1),
            _ => Some(Value::Null),
        }
    }

    /// A value written on its line must end there: a more indented line
    /// after it would continue a multi-line scalar (or be an error).
    fn no_continuation(&self, indent: usize) -> Option<()> {
        match self.peek() {
            Some(next) if next.indent > indent => None,
            _ => Some(()),
        }
    }

    /// A value written after `key: ` or `- `, up to the end of its line.
    fn inline(&mut self, text: &'t str) -> Option<Value> {
        match text.as_bytes()[0] {
            b'[' => self.flow_sequence(text),
            b'{' if text.starts_with("{}") => {
                after_token(text, "{}".len())?;
                Some(Value::Object(Map::new()))
            }
            b'{' => None,
            b'\'' | b'"' => {
                let (value, used) = self.quoted(text)?;
                after_token(text, used)?;
                Some(value)
            }
            _ => {
                let plain = block_plain(text)?;
                self.plain(plain)
            }
        }
    }

    /// `[a, "b", 'c']` on one line; nested collections go to serde-saphyr.
    fn flow_sequence(&mut self, text: &'t str) -> Option<Value> {
        let mut items = Vec::new();
        let mut rest = &text[1..];
        loop {
            rest = rest.trim_start_matches(' ');
            let first = *rest.as_bytes().first()?;
            if first == b']' {
                after_token(rest, 1)?;
                return Some(Value::Array(items));
            }
            let (value, used) = match first {
                b'\'' | b'"' => self.quoted(rest)?,
                b',' | b'[' | b'{' | b'#' => return None,
                _ => {
                    let end = rest.find([',', ']'])?;
                    let plain = flow_plain(&rest[..end])?;
                    (self.plain(plain)?, end)
                }
            };
            items.push(value);
            rest = rest[used..].trim_start_matches(' ');
            match rest.as_bytes().first()? {
                b',' => rest = &rest[1..],
                b']' => {}
                _ => return None,
            }
        }
    }

    /// A quoted scalar at the start of `text`, and how many bytes it takes.
    fn quoted(&mut self, text: &'t str) -> Option<(Value, usize)> {
        let bytes = text.as_bytes();
        let quote = bytes[0];
        let mut at = 1;
        let mut escaped = false;
        loop {
            match *bytes.get(at)? {
                b'\\' if quote == b'"' => {
                    escaped = true;
                    at += 2;
                    continue;
                }
                // `''` inside single quotes is one quote.
                b'\'' if quote == b'\'' && bytes.get(at + 1) == Some(&b'\'') => {
                    escaped = true;
                    at += 2;
                    continue;
                }
                b if b == quote => break,
                _ => at += 1,
            }
        }
        let token = &text[..=at];
        let inner = &token[1..token.len() - 1];
        let value = if !escaped {
            Value::String(inner.to_string())
        } else if quote == b'\'' {
            Value::String(inner.replace("''", "'"))
        } else {
            // Backslash escapes: serde-saphyr knows them all.
            self.typed_by_saphyr(token)?
        };
        Some((value, token.len()))
    }

    /// The value of a plain scalar.
    fn plain(&mut self, text: &'t str) -> Option<Value> {
        if let Some(number) = canonical_integer(text) {
            return Some(number);
        }
        if surely_text(text) {
            return Some(Value::String(text.to_string()));
        }
        self.typed_by_saphyr(text)
    }

    /// What serde-saphyr makes of one scalar, as the value of a key.
    fn typed_by_saphyr(&mut self, scalar: &'t str) -> Option<Value> {
        if self.typed.len() >= MAX_TYPED_BY_SAPHYR && !self.typed.contains_key(scalar) {
            return None;
        }
        self.typed
            .entry(scalar)
            .or_insert_with(|| {
                let mut options = serde_saphyr::Options::default();
                options.strict_booleans = true;
                let wrapped = format!("k: {scalar}\n");
                let mut value: Value =
                    serde_saphyr::from_str_with_options(&wrapped, options).ok()?;
                super::integral_floats_to_integers(&mut value);
                match value {
                    Value::Object(mut map) if map.len() == 1 => map.remove("k"),
                    _ => None,
                }
            })
            .clone()
    }
}

/// `- x` or a lone `-`.
fn is_item(content: &str) -> bool {
    content == "-" || content.starts_with("- ")
}

/// `key: rest` split at its first `: ` (or a final `:`); the key is
/// checked by [`key_text`].
fn entry(content: &str) -> Option<(&str, &str)> {
    let bytes = content.as_bytes();
    let at = match bytes[0] {
        // A quoted key ends at its closing quote.
        q @ (b'\'' | b'"') => content[1..].find(q as char)? + 2,
        _ => content.find(':')?,
    };
    if bytes.get(at) != Some(&b':') {
        return None;
    }
    match bytes.get(at + 1) {
        None => Some((&content[..at], "")),
        Some(b' ') => {
            let rest = content[at + 1..].trim_start_matches(' ');
            // A comment after the key: the value is on the next lines.
            let rest = if rest.starts_with('#') { "" } else { rest };
            Some((&content[..at], rest))
        }
        _ => None,
    }
}

/// A key as a string: a plain word (`service`, `X-Tenant`, `a.b`) or a
/// quoted one without escapes.
fn key_text(key: &str) -> Option<String> {
    let bytes = key.as_bytes();
    match bytes.first()? {
        b'\'' | b'"' => {
            let inner = &key[1..key.len() - 1];
            (!inner.contains(['\'', '"', '\\'])).then(|| inner.to_string())
        }
        b'a'..=b'z' | b'A'..=b'Z' | b'_' => {
            let word = bytes
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b'/'));
            (word && !is_special_word(key)).then(|| key.to_string())
        }
        _ => None,
    }
}

/// Only spaces, or spaces and a comment, after a token of `used` bytes.
fn after_token(text: &str, used: usize) -> Option<()> {
    let rest = text.get(used..)?;
    let trimmed = rest.trim_start_matches(' ');
    (trimmed.is_empty() || (trimmed.starts_with('#') && trimmed.len() < rest.len())).then_some(())
}

/// A plain scalar in block context, without its comment; `None` for what
/// would not be one plain scalar (`a: b: c`, an indicator first).
fn block_plain(text: &str) -> Option<&str> {
    let bytes = text.as_bytes();
    let mut end = bytes.len();
    for (i, &b) in bytes.iter().enumerate() {
        match b {
            b'#' if i > 0 && bytes[i - 1] == b' ' => {
                end = i;
                break;
            }
            // `a: b` would be a mapping, and so would a final `:`.
            b':' if matches!(bytes.get(i + 1), None | Some(b' ')) => return None,
            _ => {}
        }
    }
    let plain = text[..end].trim_end_matches(' ');
    let starts_well = match plain.as_bytes()[0] {
        b'-' => plain.len() > 1 && plain.as_bytes()[1] != b' ',
        b'?' | b':' | b',' | b']' | b'}' | b'#' | b'&' | b'*' | b'!' | b'|' | b'>' | b'%'
        | b'@' | b'`' => false,
        _ => true,
    };
    starts_well.then_some(plain)
}

/// A plain scalar in a flow sequence, trimmed; `None` where flow rules
/// differ from block ones (`:` before a space or the end, a comment).
fn flow_plain(text: &str) -> Option<&str> {
    let plain = text.trim_end_matches(' ');
    if plain.is_empty()
        || plain.contains(['[', ']', '{', '}'])
        || plain.contains(" #")
        || plain.ends_with(':')
        || plain.contains(": ")
    {
        return None;
    }
    block_plain(plain)
}

/// `0`, `8080`, `-5`: the integers every YAML reads alike (no sign `+`,
/// no leading zero, no `_`), small enough for an i64.
fn canonical_integer(text: &str) -> Option<Value> {
    let digits = text.strip_prefix('-').unwrap_or(text);
    let canonical = !digits.is_empty()
        && digits.len() <= 18
        && digits.bytes().all(|b| b.is_ascii_digit())
        && (digits == "0" || !digits.starts_with('0'));
    canonical.then(|| Value::from(text.parse::<i64>().expect("checked digits")))
}

/// Whether a plain scalar can only be a string: it starts with a letter
/// (and is no word YAML gives a meaning), `/` or `_`; or it starts like a
/// number but holds what no number holds (`5s`, `10.0.0.1:8080`, `1 a`).
fn surely_text(text: &str) -> bool {
    let bytes = text.as_bytes();
    match bytes[0] {
        b'a'..=b'z' | b'A'..=b'Z' => !is_special_word(text),
        b'/' | b'_' => true,
        // `.inf`, `-.5` and `-foo` go to serde-saphyr.
        b'0'..=b'9' | b'-' | b'+'
            if text
                .trim_start_matches(['-', '+'])
                .starts_with(|c: char| c.is_ascii_digit()) =>
        {
            bytes.iter().filter(|&&b| b == b'.').count() >= 2
                || bytes.iter().any(|&b| {
                    matches!(b, b' ' | b':' | b'/')
                        || (b.is_ascii_alphabetic() && !b"abcdefABCDEFxXoObBeE".contains(&b))
                })
        }
        _ => false,
    }
}

/// Words some YAML schema reads as a boolean, null or number.
fn is_special_word(text: &str) -> bool {
    const WORDS: [&str; 12] = [
        "true", "false", "null", "yes", "no", "on", "off", "y", "n", "nan", "inf", "infinity",
    ];
    text.len() <= "infinity".len() && WORDS.iter().any(|w| w.eq_ignore_ascii_case(text))
}

#[cfg(test)]
mod tests;
