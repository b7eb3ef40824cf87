//! Loading a routes file again after a change, without parsing and
//! schema-checking the routes that did not change: the file is cut into the
//! part outside `routes:` and one piece of text per route, and each piece
//! that was loaded before is taken from the cache by its text. The whole
//! table still goes through the semantic checks (conflicts between routes).
//!
//! Only plain block YAML is cut: a file with anchors, aliases, tags, several
//! documents, tabs or a flow-style `routes:` is loaded whole, as is any file
//! with a problem, so that every diagnostic names its line exactly as
//! [`load`] does. Cutting never changes what a file means: each piece is
//! the text of one sequence item, which YAML parses the same on its own.

use std::collections::HashMap;

use serde::Deserialize;

use super::{VALIDATOR, load, semantic_errors, size_problem};
use crate::model::diagnostics::Diagnostics;
use crate::model::yaml;
use crate::model::{FORMAT_VERSION, Route, RoutesFile};

/// What the last load of a file kept: the whole text and table, the part
/// outside `routes:`, and each route by its text.
#[derive(Debug, Default)]
pub struct LoadCache {
    whole: Option<(String, RoutesFile)>,
    header: Option<(String, RoutesFile)>,
    routes: HashMap<String, Route>,
}

/// [`load`], reusing what `cache` kept of the previous load of `file`.
pub fn load_again(
    file: &str,
    text: &str,
    cache: &mut LoadCache,
) -> Result<RoutesFile, Diagnostics> {
    if let Some((previous, routes)) = &cache.whole
        && previous == text
    {
        return Ok(routes.clone());
    }
    let loaded = match (size_problem(file, text.len() as u64), cut(text)) {
        (None, Some(pieces)) => load_pieces(file, &pieces, cache),
        _ => None,
    };
    let routes = match loaded {
        Some(routes) => routes,
        None => {
            *cache = LoadCache::default();
            load(file, text)?
        }
    };
    cache.whole = Some((text.to_string(), routes.clone()));
    Ok(routes)
}

impl LoadCache {
    /// The table of the last file that loaded.
    pub fn last(&self) -> Option<&RoutesFile> {
        self.whole.as_ref().map(|(_, routes)| routes)
    }
}

/// The file without its routes (`routes: []` in their place) and the text
/// of each route.
struct Pieces<'t> {
    header: String,
    routes: Vec<&'t str>,
}

/// Cuts `text` into [`Pieces`], or `None` when it is not plain block YAML.
fn cut(text: &str) -> Option<Pieces<'_>> {
    let risky = text.contains('\t')
        || text.lines().any(|l| {
            let l = l.trim_start();
            l.starts_with("---") || l.starts_with("...") || l.starts_with('%')
        })
        || has_node_property(text);
    if risky {
        return None;
    }
    let lines: Vec<(usize, &str)> = line_starts(text);
    let start = lines.iter().position(|(_, l)| is_routes_key(l))?;
    // The block: from the first item to the first line that is neither an
    // item of the same sequence nor part of one.
    let mut item_indent = None;
    let mut items: Vec<usize> = Vec::new();
    let mut end = lines.len();
    for (i, (_, line)) in lines.iter().enumerate().skip(start + 1) {
        let content = line.trim_start();
        if content.is_empty() || content.starts_with('#') {
            continue;
        }
        let indent = line.len() - content.len();
        let is_item = content == "-" || content.starts_with("- ");
        match item_indent {
            None if is_item => {
                item_indent = Some(indent);
                items.push(i);
            }
            None => return None,
            Some(n) if indent == n && is_item => items.push(i),
            Some(n) if indent > n => {}
            Some(_) => {
                end = i;
                break;
            }
        }
    }
    let offset = |i: usize| lines.get(i).map_or(text.len(), |(o, _)| *o);
    let block_start = offset(start);
    let block_end = offset(end);
    let routes = items
        .iter()
        .enumerate()
        .map(|(k, &i)| {
            let to = items.get(k + 1).map_or(block_end, |&next| offset(next));
            &text[offset(i)..to]
        })
        .collect();
    let header = format!("{}routes: []\n{}", &text[..block_start], &text[block_end..]);
    Some(Pieces { header, routes })
}

/// Each line with the offset it starts at, without its line break.
fn line_starts(text: &str) -> Vec<(usize, &str)> {
    let mut offset = 0;
    text.split_inclusive('\n')
        .map(|raw| {
            let at = offset;
            offset += raw.len();
            (at, raw.trim_end_matches(['\n', '\r']))
        })
        .collect()
}

/// `routes:` at the top level, with nothing after it but a comment.
fn is_routes_key(line: &str) -> bool {
    line.strip_prefix("routes:")
        .is_some_and(|rest| rest.trim().is_empty() || rest.trim_start().starts_with('#'))
}

/// Whether some token starts with `&`, `*` or `!` (an anchor, alias or
/// tag), which would tie one piece to another. Conservative: such a
/// character at the start of a word inside a quoted string counts too.
fn has_node_property(text: &str) -> bool {
    let bytes = text.as_bytes();
    bytes.iter().enumerate().any(|(i, &b)| {
        matches!(b, b'&' | b'*' | b'!')
            && (i == 0
                || matches!(
                    bytes[i - 1],
                    b' ' | b'\n' | b'[' | b'{' | b',' | b'-' | b':'
                ))
            && bytes
                .get(i + 1)
                .is_some_and(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'<' | b'!'))
    })
}

/// The table from the pieces, or `None` when anything in it has a problem
/// (the whole load then says where).
fn load_pieces(file: &str, pieces: &Pieces<'_>, cache: &mut LoadCache) -> Option<RoutesFile> {
    let header = match &cache.header {
        Some((text, table)) if *text == pieces.header => table.clone(),
        _ => load(file, &pieces.header).ok()?,
    };
    let mut routes = Vec::with_capacity(pieces.routes.len());
    let mut kept = HashMap::with_capacity(pieces.routes.len());
    for &piece in &pieces.routes {
        let route = match cache.routes.remove(piece) {
            Some(route) => route,
            None => load_route(file, piece)?,
        };
        kept.insert(piece.to_string(), route.clone());
        routes.push(route);
    }
    let table = RoutesFile {
        routes,
        ..header.clone()
    };
    if !semantic_errors(&table).is_empty() {
        return None;
    }
    cache.header = Some((pieces.header.clone(), header));
    cache.routes = kept;
    Some(table)
}

/// One route's text (`  - service: a ...`), checked against the schema as
/// the only route of a file.
fn load_route(file: &str, piece: &str) -> Option<Route> {
    let document = yaml::parse(file, piece).ok()?;
    let serde_json::Value::Array(mut items) = document.value else {
        return None;
    };
    if items.len() != 1 {
        return None;
    }
    let route = items.pop()?;
    let alone = serde_json::json!({ "version": FORMAT_VERSION, "routes": [route] });
    if !VALIDATOR.is_valid(&alone) {
        return None;
    }
    Route::deserialize(&alone["routes"][0]).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = "version: 1\ndefaults:\n  http_port: 8080\nroutes:\n  - service: a\n    port: 80\n    paths: [/a]\n  # b serves the shop\n  - service: b\n    port: 80\n    paths:\n      - /b\nuserlists:\n  ops:\n    - name: x\n      password_hash: \"$2y$05$abcdefghijklmnopqrstuuL2VMnJOjZ7QqBWvhWx5QzEOJz0l2ChK\"\n";

    #[test]
    fn pieces_are_the_routes_and_the_rest() {
        let pieces = cut(FILE).expect("plain block YAML");
        assert_eq!(pieces.routes.len(), 2);
        assert!(pieces.routes[0].starts_with("  - service: a\n"));
        assert!(pieces.routes[1].starts_with("  - service: b\n"));
        assert!(pieces.routes[1].ends_with("      - /b\n"));
        assert!(pieces.header.contains("routes: []\nuserlists:"));
    }

    #[test]
    fn loads_the_same_table_as_a_whole_load_and_reuses_unchanged_routes() {
        let mut cache = LoadCache::default();
        let whole = load("r.yaml", FILE).map_err(|d| d.to_string());
        assert_eq!(
            load_again("r.yaml", FILE, &mut cache).map_err(|d| d.to_string()),
            whole
        );
        let changed = FILE.replace("paths: [/a]", "paths: [/a, /a2]");
        let again = load_again("r.yaml", &changed, &mut cache).unwrap();
        assert_eq!(
            Ok(again),
            load("r.yaml", &changed).map_err(|d| d.to_string())
        );
        assert_eq!(cache.routes.len(), 2);
    }

    #[test]
    fn a_problem_is_reported_as_a_whole_load_reports_it() {
        let mut cache = LoadCache::default();
        load_again("r.yaml", FILE, &mut cache).unwrap();
        for bad in [
            FILE.replace("port: 80\n    paths: [/a]", "port: nope\n    paths: [/a]"),
            FILE.replace("service: b", "service: a"),
            FILE.replace("    paths: [/a]\n", "    paths: [/a]\n    bogus: 1\n"),
        ] {
            let got = load_again("r.yaml", &bad, &mut cache)
                .unwrap_err()
                .to_string();
            assert_eq!(got, load("r.yaml", &bad).unwrap_err().to_string());
        }
    }

    #[test]
    fn anchors_tags_and_flow_style_are_loaded_whole() {
        for text in [
            "version: 1\nroutes:\n  - &a\n    service: a\n    port: 80\n  - *a\n",
            "version: 1\nroutes: [{service: a, port: 80}]\n",
            "version: 1\nroutes:\n  - !!map\n    service: a\n    port: 80\n",
            "---\nversion: 1\nroutes:\n  - service: a\n    port: 80\n",
        ] {
            assert!(cut(text).is_none(), "{text}");
        }
        // A wildcard domain is no alias.
        assert!(cut("version: 1\nroutes:\n  - service: a\n    port: 80\n    domains: [\"*.example.com\"]\n").is_some());
    }

    #[test]
    fn the_example_files_load_as_a_whole_load_loads_them() {
        let mut files = vec![std::path::PathBuf::from("routes.yaml")];
        for entry in std::fs::read_dir("examples/routes").unwrap() {
            files.push(entry.unwrap().path());
        }
        for path in files
            .iter()
            .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        {
            let text = std::fs::read_to_string(path).unwrap();
            let name = path.display().to_string();
            let whole = load(&name, &text).map_err(|d| d.to_string());
            let mut cache = LoadCache::default();
            let again = load_again(&name, &text, &mut cache).map_err(|d| d.to_string());
            assert_eq!(again, whole, "{name}");
        }
    }
}
