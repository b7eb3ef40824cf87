//! The grammar of routes.yaml's strings, stated once: the JSON schema
//! publishes each [`Grammar`]'s pattern and lengths (so routes.yaml is
//! validated against them), and the model types' `FromStr` check the same
//! (so values built in code, such as Docker Flow Proxy's parameters, are
//! held to them too).

use std::sync::OnceLock;

use fancy_regex::Regex;

/// A pattern and length bounds a whole value must meet.
#[derive(Debug)]
pub struct Grammar {
    pattern: &'static str,
    min_len: usize,
    max_len: usize,
    /// The pattern is one character class, repeated: a bad value is blamed
    /// on its first character that is not a value on its own.
    class: bool,
    regex: OnceLock<Regex>,
}

/// Why a text does not meet a [`Grammar`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidValue {
    #[error("is empty")]
    Empty,
    #[error("is {len} characters long; at most {max} are allowed")]
    TooLong { len: usize, max: usize },
    /// A character the grammar never allows (character-class grammars only).
    #[error("`{0}` is not allowed")]
    Character(char),
    #[error("does not match `{0}`")]
    Mismatch(&'static str),
}

impl Grammar {
    const fn new(pattern: &'static str, min_len: usize, max_len: usize, class: bool) -> Self {
        Self {
            pattern,
            min_len,
            max_len,
            class,
            regex: OnceLock::new(),
        }
    }

    /// The regular expression, as the schema publishes it.
    pub fn pattern(&self) -> &'static str {
        self.pattern
    }

    pub fn min_len(&self) -> usize {
        self.min_len
    }

    pub fn max_len(&self) -> usize {
        self.max_len
    }

    fn matches(&self, text: &str) -> bool {
        let regex = self
            .regex
            .get_or_init(|| Regex::new(self.pattern).expect("grammar patterns compile"));
        // The patterns use no backtracking constructs, so matching cannot fail.
        regex.is_match(text).unwrap_or(false)
    }

    /// Whether `c` alone is a valid value: for a character-class grammar,
    /// whether it may appear at all.
    pub fn allows_char(&self, c: char) -> bool {
        self.matches(c.encode_utf8(&mut [0; 4]))
    }

    /// Checks `value` as the schema would (lengths count characters, as JSON Schema does).
    pub fn check(&self, value: &str) -> Result<(), InvalidValue> {
        let len = value.chars().count();
        if len < self.min_len {
            return Err(InvalidValue::Empty);
        }
        if len > self.max_len {
            return Err(InvalidValue::TooLong {
                len,
                max: self.max_len,
            });
        }
        if self.matches(value) {
            return Ok(());
        }
        let stray = self
            .class
            .then(|| value.chars().find(|&c| !self.allows_char(c)));
        match stray.flatten() {
            Some(c) => Err(InvalidValue::Character(c)),
            None => Err(InvalidValue::Mismatch(self.pattern)),
        }
    }
}

/// A Swarm service, route or userlist name, safe in HAProxy identifiers.
pub static NAME: Grammar = Grammar::new(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", 1, 63, false);

/// An absolute file system path without whitespace or quotes.
pub static FILE_PATH: Grammar = Grammar::new(r"^/[A-Za-z0-9_./@+-]*$", 0, 4096, false);

/// A certificate's name, also its file name: no path separators, no leading
/// `.`, nothing HAProxy's runtime API or a crt-list line would read as more
/// than one word.
pub static CERT_NAME: Grammar = Grammar::new(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", 1, 128, false);

/// `host:port` or `[ipv6]:port`.
pub static ADDRESS: Grammar = Grammar::new(
    r"^([A-Za-z0-9][A-Za-z0-9_.-]*|\[[0-9A-Fa-f:]+\]):[0-9]{1,5}$",
    0,
    300,
    false,
);

/// A URL path, or a regular expression over paths: printable ASCII without
/// spaces, quotes, `#` or backticks.
pub static PATH: Grammar = Grammar::new(r"^[!$-&(-_a-~]+$", 1, 1024, true);

/// A host name, exact or `*.`-prefixed wildcard.
pub static DOMAIN: Grammar = Grammar::new(
    r"^(\*\.)?[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*$",
    0,
    253,
    false,
);

/// An HTTP header name: an RFC 9110 token without `'` and `$`.
pub static HEADER_NAME: Grammar = Grammar::new(r"^[A-Za-z0-9!&*+.^_`|~-]+$", 1, 256, true);

/// A literal header value: no double quotes, backslashes, `%`, `$` or control characters.
pub static HEADER_VALUE: Grammar = Grammar::new(r#"^[^"\\%$\x00-\x1f\x7f]*$"#, 0, 1024, true);

/// A path rewrite's replacement: [`PATH`]'s characters but `%`, and `\`
/// only before a group number.
pub static PATH_REPLACE: Grammar = Grammar::new(r"^([!$&(-\[\]-_a-~]|\\[0-9])*$", 0, 1024, false);

/// An HTTP method: upper-case letters and digits, with inner `-` or `_`
/// (`GET`, `PROPFIND`, `M-SEARCH`). Methods are case-sensitive: `get` is
/// another method than `GET`.
pub static METHOD: Grammar = Grammar::new(r"^[A-Z0-9]([A-Z0-9_-]*[A-Z0-9])?$", 1, 32, false);

/// A crypt(3) password hash.
pub static PASSWORD_HASH: Grammar =
    Grammar::new(r"^\$(1|5|6|2[aby]|y)\$[A-Za-z0-9./$=,-]+$", 0, 512, false);

/// A media type without parameters (`text/html`): RFC 6838's characters
/// but `#` and `$`.
pub static MIME_TYPE: Grammar = Grammar::new(
    r"^[A-Za-z0-9][A-Za-z0-9!&^_.+-]*/[A-Za-z0-9][A-Za-z0-9!&^_.+-]*$",
    0,
    255,
    false,
);

/// A port number as text: 1 to 5 digits, 1 to 65535 (`+80` and ` 80` are not).
pub fn port(text: &str) -> Option<u16> {
    let digits = (1..=5).contains(&text.len()) && text.bytes().all(|b| b.is_ascii_digit());
    digits
        .then(|| text.parse::<u16>().ok())
        .flatten()
        .filter(|&p| p > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn class_grammars_blame_a_character() {
        assert_eq!(PATH.check("/a"), Ok(()));
        assert_eq!(PATH.check("/a#b c"), Err(InvalidValue::Character('#')));
        assert_eq!(PATH.check(""), Err(InvalidValue::Empty));
        assert_eq!(HEADER_VALUE.check(""), Ok(()));
        assert_eq!(HEADER_VALUE.check("a%b"), Err(InvalidValue::Character('%')));
        assert_eq!(
            NAME.check("-a"),
            Err(InvalidValue::Mismatch(NAME.pattern()))
        );
        assert!(PATH_REPLACE.allows_char('/') && !PATH_REPLACE.allows_char('%'));
        assert_eq!(
            NAME.check(&"a".repeat(64)),
            Err(InvalidValue::TooLong { len: 64, max: 63 })
        );
    }

    #[test]
    fn ports() {
        assert_eq!(port("80"), Some(80));
        assert_eq!(port("65535"), Some(65535));
        for bad in ["0", "65536", "+80", "080808", "", " 80"] {
            assert_eq!(port(bad), None, "{bad}");
        }
    }
}
