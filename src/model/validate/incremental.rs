//! Loading a routes file again after a change, without parsing,
//! schema-checking and checking on their own again the routes that did not
//! change: the file is cut into the part outside `routes:` and one piece of
//! text per route, and each piece written as in the last file that loaded
//! is taken from that file's table. New pieces are parsed and checked; the
//! checks between routes (paths, domains, names and ports claimed twice)
//! still run over the whole table.
//!
//! Only plain block YAML is cut: a file with anchors, aliases, tags, several
//! documents, tabs or a flow-style `routes:` is loaded whole, as is any file
//! with a problem, so that every diagnostic names its line exactly as
//! [`load`] does. Cutting never changes what a file means: each piece is
//! the text of one sequence item, which YAML parses the same on its own.

use std::collections::HashMap;
use std::ops::Range;

use serde::Deserialize;

use super::{VALIDATOR, load, semantic_errors_of, size_problem};
use crate::model::diagnostics::Diagnostics;
use crate::model::yaml;
use crate::model::{FORMAT_VERSION, Route, RoutesFile};

/// The last file that loaded: its text, its table, and where each route is
/// written in it (when it could be cut).
#[derive(Debug, Default)]
pub struct LoadCache {
    last: Option<Loaded>,
}

#[derive(Debug)]
struct Loaded {
    text: String,
    table: RoutesFile,
    /// The file without its routes, and the text of each route in order
    /// (`table.routes[i]` is written at `routes[i]`).
    cut: Option<(String, Vec<Range<usize>>)>,
}

/// [`load`], reusing what `cache` kept of the previous load of `file`.
pub fn load_again(
    file: &str,
    text: &str,
    cache: &mut LoadCache,
) -> Result<RoutesFile, Diagnostics> {
    if let Some(last) = &cache.last
        && last.text == text
    {
        return Ok(last.table.clone());
    }
    let pieces = match size_problem(file, text.len() as u64) {
        None => cut(text),
        Some(_) => None,
    };
    let last = cache.last.take();
    let reused = match (last, &pieces) {
        (Some(last), Some(pieces)) => load_pieces(file, pieces, last),
        _ => None,
    };
    let table = match reused {
        Some(table) => table,
        None => load(file, text)?,
    };
    let cut = pieces
        .filter(|p| p.routes.len() == table.routes.len())
        .map(|p| {
            (
                p.header,
                p.routes.iter().map(|r| offset_in(text, r)).collect(),
            )
        });
    cache.last = Some(Loaded {
        text: text.to_string(),
        table: table.clone(),
        cut,
    });
    Ok(table)
}

impl LoadCache {
    /// The table of the last file that loaded.
    pub fn last(&self) -> Option<&RoutesFile> {
        self.last.as_ref().map(|l| &l.table)
    }
}

/// Where `piece`, a slice of `text`, is in it.
fn offset_in(text: &str, piece: &str) -> Range<usize> {
    let start = piece.as_ptr() as usize - text.as_ptr() as usize;
    start..start + piece.len()
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
    // `routes:` without items is null, which the schema refuses.
    if items.is_empty() {
        return None;
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

/// The table from the pieces, each written as in `last` taken from its
/// table, or `None` when anything in it has a problem (the whole load then
/// says where).
fn load_pieces(file: &str, pieces: &Pieces<'_>, last: Loaded) -> Option<RoutesFile> {
    let (last_header, last_routes) = last.cut.as_ref()?;
    let same_header = *last_header == pieces.header;
    let mut header = if same_header {
        RoutesFile {
            routes: Vec::new(),
            ..last.table
        }
    } else {
        load(file, &pieces.header).ok()?
    };
    let previous = |j: usize| &last.text[last_routes[j].clone()];
    // Edits keep the order of the routes around them: what matches in
    // place at both ends is found without hashing; the rest by its text.
    let (new, old) = (&pieces.routes, last_routes.len());
    let prefix = (0..new.len().min(old))
        .take_while(|&i| new[i] == previous(i))
        .count();
    let suffix = (0..(new.len() - prefix).min(old - prefix))
        .take_while(|&k| new[new.len() - 1 - k] == previous(old - 1 - k))
        .count();
    let middle: HashMap<&str, usize> = (prefix..old - suffix).map(|j| (previous(j), j)).collect();
    let mut unchanged: Vec<Option<Route>> = last.table.routes.into_iter().map(Some).collect();
    let mut reused = Vec::with_capacity(new.len());
    for (i, &piece) in new.iter().enumerate() {
        let from = if i < prefix {
            Some(i)
        } else if i >= new.len() - suffix {
            Some(old - (new.len() - i))
        } else {
            middle.get(piece).copied()
        };
        // A piece written twice takes the route once, then is parsed again.
        let route = match from.and_then(|j| unchanged[j].take()) {
            Some(route) => {
                reused.push(true);
                route
            }
            None => {
                reused.push(false);
                load_route(file, piece)?
            }
        };
        header.routes.push(route);
    }
    // A route taken from the last table passed its own checks there, under
    // the same header (the userlists it names).
    let problems = semantic_errors_of(&header, |i| !(same_header && reused[i]));
    problems.is_empty().then_some(header)
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
        let (_, routes) = cache.last.as_ref().unwrap().cut.as_ref().unwrap();
        assert_eq!(routes.len(), 2);
    }

    /// A route of the random tables: few names, paths and ports, so that
    /// edits often clash; some name a userlist only some headers have, or
    /// set a timer HAProxy refuses.
    fn route_text() -> impl Strategy<Value = String> {
        (0..4usize, 0..3usize, 0..5usize, 0..4usize).prop_map(|(name, port, path, extra)| {
            let mut text = format!(
                "  - service: s{name}\n    port: {}\n    paths: [/p{path}]\n",
                80 + port
            );
            text.push_str(match extra {
                0 => "    auth:\n      userlist: ops\n",
                1 => "    timeouts:\n      server: 30d\n",
                2 => "    # a comment\n    servers: [\"10.0.0.1:8080\"]\n",
                _ => "",
            });
            text
        })
    }

    /// The file around `routes`: on one http port or another, with or
    /// without the userlist some routes name.
    fn header(variant: usize, routes: &[String]) -> String {
        let users = "userlists:\n  ops:\n    - name: x\n      password_hash: \"$2y$05$abcdefghijklmnopqrstuuL2VMnJOjZ7QqBWvhWx5QzEOJz0l2ChK\"\n";
        let port = if variant.is_multiple_of(2) {
            8080
        } else {
            8081
        };
        let tail = if variant >= 2 { users } else { "" };
        format!(
            "version: 1\ndefaults:\n  http_port: {port}\nroutes:\n{}{tail}",
            routes.concat()
        )
    }

    use proptest::prelude::*;

    proptest! {
        /// Loading each of a series of edited files again gives what loading
        /// it whole gives: the same table, or the same diagnostics.
        #[test]
        fn loading_again_equals_loading_whole(
            first in proptest::collection::vec(route_text(), 0..8),
            edits in proptest::collection::vec(
                (0..5usize, any::<prop::sample::Index>(), route_text(), 0..4usize),
                1..6,
            ),
        ) {
            let mut routes = first;
            let mut cache = LoadCache::default();
            let mut variant = 0;
            let mut text = header(variant, &routes);
            prop_assert_eq!(
                load_again("r.yaml", &text, &mut cache).map_err(|d| d.to_string()),
                load("r.yaml", &text).map_err(|d| d.to_string())
            );
            for (kind, at, route, new_variant) in edits {
                match kind {
                    0 => routes.insert(at.index(routes.len() + 1), route),
                    1 if !routes.is_empty() => { routes.remove(at.index(routes.len())); }
                    2 if !routes.is_empty() => {
                        let i = at.index(routes.len());
                        routes[i] = route;
                    }
                    3 => variant = new_variant,
                    _ => routes.reverse(),
                }
                text = header(variant, &routes);
                prop_assert_eq!(
                    load_again("r.yaml", &text, &mut cache).map_err(|d| d.to_string()),
                    load("r.yaml", &text).map_err(|d| d.to_string()),
                    "{}", text
                );
            }
        }
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
            // No items: `routes` is null, which the schema refuses.
            "version: 1\nroutes:\n",
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
