//! YAML text to a JSON value plus a map from every field to its place in the text.
//!
//! serde-saphyr gives the value (full YAML 1.2 semantics and its own syntax
//! errors), or, for the plain block YAML most routes files are, a fast path
//! that builds the same value ([`fast`]); the parser's event stream, walked once more, gives the positions,
//! so that schema and semantic errors found later on plain data can still name
//! a line and column. That walk only happens when an error needs a position:
//! a valid file is parsed once.

use std::cell::OnceCell;
use std::collections::HashMap;

use granit_parser::{Event, Parser, Span};

use crate::model::diagnostics::{Diagnostic, FieldPath};

mod fast;

/// 1-based line and column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Position {
    pub line: usize,
    pub column: usize,
}

impl Position {
    fn of(span: &Span) -> Self {
        Self {
            line: span.start.line(),
            column: span.start.col() + 1,
        }
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct Place {
    key: Option<Position>,
    value: Position,
}

/// Where each field of a document is written, worked out on first use.
#[derive(Debug, Default)]
pub struct SourceMap<'a> {
    text: &'a str,
    places: OnceCell<HashMap<FieldPath, Place>>,
}

impl<'a> SourceMap<'a> {
    /// The map of `text`; empty text (data that did not come from a file)
    /// has no positions.
    pub fn new(text: &'a str) -> Self {
        Self {
            text,
            places: OnceCell::new(),
        }
    }

    /// Where the value of `path` starts, or of its nearest written ancestor.
    pub fn value(&self, path: &FieldPath) -> Position {
        self.nearest(path).map(|p| p.value).unwrap_or_default()
    }

    /// Where the key of `path` is written (its value when it has no key: a list item).
    pub fn key(&self, path: &FieldPath) -> Position {
        self.nearest(path)
            .map(|p| p.key.unwrap_or(p.value))
            .unwrap_or_default()
    }

    fn nearest(&self, path: &FieldPath) -> Option<&Place> {
        let places = self.places.get_or_init(|| map_positions(self.text));
        let mut path = path.clone();
        loop {
            if let Some(place) = places.get(&path) {
                return Some(place);
            }
            if !path.pop() {
                return None;
            }
        }
    }

    /// Builds a diagnostic at the value of `path`.
    pub fn at_value(&self, file: &str, path: &FieldPath, message: impl Into<String>) -> Diagnostic {
        diagnostic(file, self.value(path), path, message)
    }

    /// Builds a diagnostic at the key of `path`.
    pub fn at_key(&self, file: &str, path: &FieldPath, message: impl Into<String>) -> Diagnostic {
        diagnostic(file, self.key(path), path, message)
    }
}

fn diagnostic(
    file: &str,
    at: Position,
    path: &FieldPath,
    message: impl Into<String>,
) -> Diagnostic {
    Diagnostic {
        file: file.to_string(),
        line: at.line,
        column: at.column,
        field: path.to_string(),
        message: message.into(),
    }
}

/// A parsed YAML document.
#[derive(Debug)]
pub struct Document<'a> {
    pub value: serde_json::Value,
    pub source_map: SourceMap<'a>,
}

/// Parses one YAML document. An empty document is `null`.
pub fn parse<'a>(file: &str, text: &'a str) -> Result<Document<'a>, Diagnostic> {
    let value: serde_json::Value = if text.trim().is_empty() {
        serde_json::Value::Null
    } else if let Some(value) = fast::parse(text) {
        value
    } else {
        let mut options = serde_saphyr::Options::default();
        // `yes`, `no`, `on`, `off` are strings, as in YAML 1.2.
        options.strict_booleans = true;
        let mut value = serde_saphyr::from_str_with_options(text, options)
            .map_err(|e| syntax_error(file, &e))?;
        integral_floats_to_integers(&mut value);
        value
    };
    Ok(Document {
        value,
        source_map: SourceMap::new(text),
    })
}

/// `80.0` is the number 80: JSON Schema calls it an integer, so the typed
/// model must read it as one too.
fn integral_floats_to_integers(value: &mut serde_json::Value) {
    use serde_json::Value;
    match value {
        Value::Number(n) => {
            if let Some(f) = n
                .as_f64()
                .filter(|f| n.is_f64() && f.fract() == 0.0 && f.abs() < 9e15)
            {
                *value = Value::from(f as i64);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(integral_floats_to_integers),
        Value::Object(map) => map.values_mut().for_each(integral_floats_to_integers),
        _ => {}
    }
}

fn syntax_error(file: &str, error: &serde_saphyr::Error) -> Diagnostic {
    let (line, column) = error
        .location()
        .map(|l| (l.line() as usize, l.column() as usize))
        .unwrap_or((0, 0));
    // The plain message, without serde-saphyr's source snippet: we print our own position.
    let message = error.without_snippet().to_string();
    let message = message.lines().next().unwrap_or("invalid YAML").to_string();
    Diagnostic {
        file: file.to_string(),
        line,
        column,
        field: String::new(),
        message: format!("invalid YAML: {message}"),
    }
}

enum Frame {
    Mapping {
        path: FieldPath,
        /// The key whose value comes next, or `None` while a key is awaited.
        key: Option<(String, Position)>,
    },
    Sequence {
        path: FieldPath,
        next: usize,
    },
}

/// Walks the event stream and records the position of every key and value.
/// Only called on text serde-saphyr accepted, so parse errors just end the walk.
fn map_positions(text: &str) -> HashMap<FieldPath, Place> {
    let mut places = HashMap::new();
    let mut stack: Vec<Frame> = Vec::new();
    for item in Parser::new_from_str(text) {
        let Ok((event, span)) = item else { break };
        let starts_node = matches!(
            event,
            Event::Scalar(..)
                | Event::SequenceStart(..)
                | Event::MappingStart(..)
                | Event::Alias(..)
        );
        if starts_node {
            let at = Position::of(&span);
            // A scalar in key position names the next value; it is not a node of its own.
            if let Some(Frame::Mapping {
                key: key @ None, ..
            }) = stack.last_mut()
            {
                let name = match &event {
                    Event::Scalar(value, ..) => value.to_string(),
                    _ => String::new(),
                };
                *key = Some((name, at));
                if let Event::SequenceStart(..) | Event::MappingStart(..) = event {
                    // A complex key: track it so its end pops correctly, record nothing.
                    stack.push(complex_key_frame(&event));
                }
                continue;
            }
            let (path, key_at) = child_path(&stack);
            places.insert(
                path.clone(),
                Place {
                    key: key_at,
                    value: at,
                },
            );
            match event {
                Event::MappingStart(..) => stack.push(Frame::Mapping { path, key: None }),
                Event::SequenceStart(..) => stack.push(Frame::Sequence { path, next: 0 }),
                _ => advance(&mut stack),
            }
        } else if matches!(event, Event::MappingEnd | Event::SequenceEnd) {
            stack.pop();
            advance(&mut stack);
        }
    }
    places
}

fn complex_key_frame(event: &Event) -> Frame {
    let path = FieldPath::root().key("<complex key>");
    match event {
        Event::MappingStart(..) => Frame::Mapping { path, key: None },
        _ => Frame::Sequence { path, next: 0 },
    }
}

/// The path and key position of the node that starts now.
fn child_path(stack: &[Frame]) -> (FieldPath, Option<Position>) {
    match stack.last() {
        None => (FieldPath::root(), None),
        Some(Frame::Mapping { path, key }) => {
            let (name, at) = key.clone().unwrap_or_default();
            (path.key(name), Some(at))
        }
        Some(Frame::Sequence { path, next }) => (path.index(*next), None),
    }
}

/// A value is complete: its mapping awaits the next key, its sequence the next item.
fn advance(stack: &mut [Frame]) {
    match stack.last_mut() {
        Some(Frame::Mapping { key, .. }) => *key = None,
        Some(Frame::Sequence { next, .. }) => *next += 1,
        None => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(segments: &[&str]) -> FieldPath {
        segments
            .iter()
            .fold(FieldPath::root(), |p, s| match s.parse::<usize>() {
                Ok(i) => p.index(i),
                Err(_) => p.key(*s),
            })
    }

    #[test]
    fn maps_keys_and_values_to_lines_and_columns() {
        let text = "version: 1\nroutes:\n  - service: a\n    port: 80\n  - service: b\n    paths: [/x, /y]\n";
        let doc = parse("r.yaml", text).unwrap();
        assert_eq!(doc.value["routes"][1]["paths"][1], "/y");
        let map = &doc.source_map;
        assert_eq!(
            map.value(&path(&["routes", "0", "port"])),
            Position {
                line: 4,
                column: 11
            }
        );
        assert_eq!(
            map.key(&path(&["routes", "0", "port"])),
            Position { line: 4, column: 5 }
        );
        assert_eq!(
            map.value(&path(&["routes", "1"])),
            Position { line: 5, column: 5 }
        );
        assert_eq!(
            map.value(&path(&["routes", "1", "paths", "1"])),
            Position {
                line: 6,
                column: 17
            }
        );
        // An unwritten field falls back to its nearest written ancestor.
        assert_eq!(
            map.value(&path(&["routes", "1", "port"])),
            Position { line: 5, column: 5 }
        );
    }

    #[test]
    fn syntax_errors_have_a_position() {
        let err = parse("r.yaml", "routes:\n  - service: a\n   port: [\n").unwrap_err();
        assert!(err.line >= 3, "{err}");
        assert!(err.message.starts_with("invalid YAML"), "{err}");
    }

    #[test]
    fn empty_text_is_null() {
        assert!(parse("r.yaml", "  \n").unwrap().value.is_null());
    }
}
