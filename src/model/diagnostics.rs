//! Errors about a routes file, each pinned to a file, line, column and field.

use std::fmt;

use serde::{Deserialize, Serialize};

/// At most this many characters of a user's value are quoted in a message.
pub const MAX_QUOTED_CHARS: usize = 64;

/// A user's value as error messages quote it: its first [`MAX_QUOTED_CHARS`]
/// characters, marked `… (<size> bytes)` when there is more, with control
/// characters escaped. Every message that quotes a value goes through this,
/// so that a huge value cannot grow status, state and logs by its own size.
pub fn excerpt(value: &str) -> String {
    let escape = |c: char| -> String {
        if c.is_control() {
            c.escape_default().collect()
        } else {
            c.to_string()
        }
    };
    let mut out: String = value.chars().take(MAX_QUOTED_CHARS).map(escape).collect();
    if value.chars().nth(MAX_QUOTED_CHARS).is_some() {
        out.push_str(&format!("… ({} bytes)", value.len()));
    }
    out
}

/// A location inside a document: `routes[2].port`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FieldPath(Vec<Segment>);

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Segment {
    Key(String),
    Index(usize),
}

impl FieldPath {
    pub fn root() -> Self {
        Self::default()
    }

    pub fn key(&self, key: impl Into<String>) -> Self {
        let mut path = self.clone();
        path.0.push(Segment::Key(key.into()));
        path
    }

    pub fn index(&self, index: usize) -> Self {
        let mut path = self.clone();
        path.0.push(Segment::Index(index));
        path
    }

    /// Drops the last segment; false when already at the root.
    pub fn pop(&mut self) -> bool {
        self.0.pop().is_some()
    }
}

impl From<&[Segment]> for FieldPath {
    fn from(segments: &[Segment]) -> Self {
        Self(segments.to_vec())
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, segment) in self.0.iter().enumerate() {
            // Keys are the user's text too (an unknown field, a userlist name).
            match segment {
                Segment::Key(key) if i == 0 => f.write_str(&excerpt(key))?,
                Segment::Key(key) => write!(f, ".{}", excerpt(key))?,
                Segment::Index(index) => write!(f, "[{index}]")?,
            }
        }
        Ok(())
    }
}

/// One problem with a routes file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Diagnostic {
    pub file: String,
    /// 1-based; 0 when the problem has no place in the file.
    pub line: usize,
    /// 1-based; 0 when the problem has no place in the file.
    pub column: usize,
    /// The field the problem is about, `routes[2].port`; empty for the whole document.
    pub field: String,
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if self.line > 0 {
            write!(f, ":{}:{}", self.line, self.column)?;
        }
        if !self.field.is_empty() {
            write!(f, ": {}", self.field)?;
        }
        write!(f, ": {}", self.message)
    }
}

/// Every problem found in one routes file, in file order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[serde(transparent)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl Diagnostics {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Diagnostic> {
        self.0.iter()
    }

    /// Orders by position so that messages read top to bottom, and drops repeats.
    pub fn sorted(mut self) -> Self {
        self.0.sort_by(|a, b| {
            (a.line, a.column, &a.field, &a.message).cmp(&(b.line, b.column, &b.field, &b.message))
        });
        self.0.dedup();
        self
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, diagnostic) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{diagnostic}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn excerpts_are_short_and_marked() {
        assert_eq!(excerpt("/api"), "/api");
        assert_eq!(excerpt("/a\nb\0"), "/a\\nb\\u{0}");
        let huge = "x".repeat(52_428_800);
        let shown = excerpt(&huge);
        assert_eq!(
            shown,
            format!("{}… (52428800 bytes)", "x".repeat(MAX_QUOTED_CHARS))
        );
        // Exactly the limit: nothing is cut, nothing is marked.
        assert_eq!(
            excerpt(&huge[..MAX_QUOTED_CHARS]),
            "x".repeat(MAX_QUOTED_CHARS)
        );
    }

    #[test]
    fn field_paths_read_like_the_document() {
        let path = FieldPath::root().key("routes").index(2).key("port");
        assert_eq!(path.to_string(), "routes[2].port");
        assert_eq!(FieldPath::root().to_string(), "");
        let long = FieldPath::root()
            .key("routes")
            .index(0)
            .key("k".repeat(100_000));
        assert_eq!(
            long.to_string(),
            format!("routes[0].{}… (100000 bytes)", "k".repeat(MAX_QUOTED_CHARS))
        );
    }

    #[test]
    fn diagnostic_names_file_line_field() {
        let d = Diagnostic {
            file: "routes.yaml".into(),
            line: 14,
            column: 9,
            field: "routes[2].port".into(),
            message: "70000 is greater than the maximum of 65535".into(),
        };
        assert_eq!(
            d.to_string(),
            "routes.yaml:14:9: routes[2].port: 70000 is greater than the maximum of 65535"
        );
    }
}
