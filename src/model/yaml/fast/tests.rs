//! The fast path against serde-saphyr: wherever it answers, the answer is
//! serde-saphyr's; where serde-saphyr refuses a text, it does not answer.

use proptest::prelude::*;
use serde_json::{Value, json};

use super::parse;

#[path = "../../../../tests/support/table.rs"]
mod table;

/// What `yaml::parse` makes of `text` without the fast path.
fn saphyr(text: &str) -> Option<Value> {
    let mut options = serde_saphyr::Options::default();
    options.strict_booleans = true;
    let mut value: Value = serde_saphyr::from_str_with_options(text, options).ok()?;
    super::super::integral_floats_to_integers(&mut value);
    Some(value)
}

/// Checks that the fast path agrees with serde-saphyr on `text`, and says
/// whether it answered.
fn agrees(text: &str) -> Result<bool, TestCaseError> {
    match parse(text) {
        None => Ok(false),
        Some(fast) => {
            prop_assert_eq!(Some(fast), saphyr(text), "{:?}", text);
            Ok(true)
        }
    }
}

fn check(text: &str) -> bool {
    agrees(text).unwrap_or_else(|e| panic!("{e}"))
}

/// Plain scalars whose type YAML decides by their text, and some that look
/// like them.
const SCALARS: &[&str] = &[
    "5s",
    "100ms",
    "30d",
    "8080",
    "0",
    "-0",
    "-5",
    "+5",
    "007",
    "00",
    "0x1F",
    "0xff",
    "0X10",
    "0o17",
    "0o8",
    "0b101",
    "1_000",
    "1_",
    "_1",
    "1.5",
    "1.0",
    "5.",
    ".5",
    "-.5",
    "1e3",
    "1E5",
    "1e",
    "1ee",
    "1e3s",
    "1.e5",
    "1e-3",
    ".inf",
    "+.inf",
    "-.inf",
    ".nan",
    ".NaN",
    "nan",
    "NaN",
    "inf",
    "Infinity",
    "true",
    "True",
    "TRUE",
    "false",
    "yes",
    "no",
    "on",
    "off",
    "y",
    "n",
    "null",
    "Null",
    "NULL",
    "~",
    "-",
    "--1",
    "-foo",
    "-5s",
    "1-2",
    "1.2.3",
    "0.0.0.0",
    "10.0.0.1:8080",
    "1:20",
    "12:30:45",
    "10 apples",
    "2001-12-14",
    "2001-12-14T21:59:43.10-05:00",
    "12345678901234567890",
    "18446744073709551616",
    "999999999999999999",
    "1000000000000000000",
    "go-demo",
    "/api",
    "/",
    "^/files/v[0-9]+/",
    "x[1]",
    "a:b",
    "a: b",
    "a:",
    "x#c",
    "x #c",
    "?x",
    "? x",
    ":x",
    "<<",
    "=",
    "it's",
    "a\"b",
    "@x",
    "`x",
    "%x",
    "&a x",
    "*a",
    "!x y",
    "!!str 5",
    "|",
    ">",
    "'q'",
    "\"d\"",
    "'it''s'",
    "\"a\\\"b\"",
    "\"\\x41\"",
    "\"\\u00e9\"",
    "''",
    "\"\"",
    "'a # b'",
    "\"a: b\"",
    "[]",
    "[ ]",
    "{}",
    "{ }",
    "[a, b ,c]",
    "[a,b]",
    "[a, ]",
    "[,]",
    "[a,,b]",
    "[a: b]",
    "[x #c]",
    "[x#c]",
    "[a]  # c",
    "[- a]",
    "[[a]]",
    "[{a: 1}]",
    "[1, 5]",
    "[\"*.x\", 'y']",
    "[a}b]",
    "{a: 1}",
    "max-age=31536000; includeSubDomains",
    "route 5",
    "b  c",
    "x   # c",
];

#[test]
fn scalars_are_typed_as_serde_saphyr_types_them() {
    for scalar in SCALARS {
        for text in [
            format!("a: {scalar}\n"),
            format!("- {scalar}\n"),
            format!("a: [{scalar}]\n"),
            format!("a:\n  - {scalar}\n  - x\n"),
        ] {
            check(&text);
        }
    }
    // What the fast path types itself, it types as serde-saphyr does.
    for (text, value) in [
        ("a: 8080", json!({"a": 8080})),
        ("a: 5s", json!({"a": "5s"})),
        ("a: '10.0.0.1:8080'", json!({"a": "10.0.0.1:8080"})),
        ("a: it's", json!({"a": "it's"})),
        ("a: x #c", json!({"a": "x"})),
        ("a: [a, 'b', \"c\"]", json!({"a": ["a", "b", "c"]})),
    ] {
        assert_eq!(parse(text), Some(value.clone()), "{text}");
        assert_eq!(saphyr(text), Some(value), "{text}");
    }
}

#[test]
fn block_structure_is_read_as_serde_saphyr_reads_it() {
    let answered = [
        "a: 1\nb:\n  c: 2\n  d: [x]\n",
        "a:\n- x\n- y\nb: 2\n",
        "- a: 1\n  b: 2\n- c: 3\n",
        "-   a: 1\n    b:\n    - x\n",
        "- a:\n  - x\n  b: 1\n",
        "- a:\n- x\n",
        "-\n  a: 1\n- \n",
        "a: # comment\n  b: 1\n\n# between\nc: \"x\" # after\n",
        "'a b': 1\n\"c\": 2\n",
        "a:\n  -\n    - x\n",
        "x-y: 1\na.b: 2\na/b: 3\n",
    ];
    for text in answered {
        assert!(check(text), "the fast path should read {text:?}");
    }
    let refused = [
        // Duplicate keys, multi-line scalars, block scalars, anchors, tags,
        // documents, flow mappings, a scalar document, tabs, CRLF, non-ASCII.
        "a: 1\na: 2\n",
        "a: x\n  y\n",
        "a:\n  x\n",
        "a: |\n  x\n",
        "a: &x 1\nb: *x\n",
        "a: !!str 5\n",
        "---\na: 1\n",
        "a: {b: 1}\n",
        "hello\n",
        "a:\t1\n",
        "a: 1\r\n",
        "a: é\n",
        "a: [x,\n  y]\n",
        "a: \"x\n  y\"\n",
        " a: 1\n",
        "a: 1\n - x\n",
        "a: 1\n- x\n",
        "- - x\n",
        "- a: 1\n b: 2\n",
        "on: 1\n",
        "<<: {a: 1}\n",
    ];
    for text in refused {
        assert!(
            !check(text),
            "the fast path should leave {text:?} to serde-saphyr"
        );
    }
}

#[test]
fn many_scalars_only_serde_saphyr_can_type_are_left_to_it() {
    let few: String = (0..100).map(|i| format!("- 0x{i:x}\n")).collect();
    assert!(check(&few));
    let many: String = (0..2000).map(|i| format!("- 0x{i:x}\n")).collect();
    assert!(!check(&many));
    // The same scalar many times is typed once.
    let repeated = "- 1h\n- true\n".repeat(2000);
    assert!(check(&repeated));
}

#[test]
fn deep_nesting_is_left_to_serde_saphyr() {
    let text: String = (0..200).map(|i| format!("{}a:\n", " ".repeat(i))).collect();
    assert!(!check(&text));
}

#[test]
fn routes_files_take_the_fast_path() {
    let generated = table::generated_table(300, Some("[/etc/ssl/a.pem]"), 7);
    assert!(check(&generated), "the generated table");
    assert!(check(&std::fs::read_to_string("routes.yaml").unwrap()));
    let mut answered = 0;
    let mut files = 0;
    for entry in std::fs::read_dir("examples/routes").unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yaml") {
            files += 1;
            answered += usize::from(check(&std::fs::read_to_string(&path).unwrap()));
        }
    }
    assert!(answered * 2 > files, "{answered} of {files} examples");
}

/// A random document: scalars from [`SCALARS`] and random text, keys from
/// a pool with awkward ones, nested in block and flow collections.
#[derive(Debug, Clone)]
enum Node {
    Scalar(String),
    /// Items, and how they are written: 0 block, 1 indentless under a key, 2 flow.
    Sequence(Vec<Node>, u8),
    Mapping(Vec<(String, Node)>),
}

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(vec!["a", "b", "service", "port", "X-Tenant", "a.b"]).prop_map(String::from),
        1 => prop::sample::select(vec!["on", "y", "'q k'", "\"d\"", "80", "a b", "<<", "a#b", "-a", "? a", "a:b", "''"]).prop_map(String::from),
    ]
}

fn scalar() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(SCALARS.to_vec()).prop_map(String::from),
        2 => "[a-z0-9 .:/#'\"_,&*!|>%@?~-]{1,8}",
        1 => "[a-z]{1,3}( #[a-z ]{0,4})?",
    ]
}

fn node() -> impl Strategy<Value = Node> {
    scalar()
        .prop_map(Node::Scalar)
        .prop_recursive(4, 24, 4, |inner| {
            prop_oneof![
                (prop::collection::vec(inner.clone(), 0..4), 0..3u8)
                    .prop_map(|(items, style)| Node::Sequence(items, style)),
                prop::collection::vec((key(), inner), 0..4).prop_map(Node::Mapping),
            ]
        })
}

/// Writes `node` as the value after `key:` or `-` at `indent`, `step`
/// spaces deeper for what nests.
fn write(node: &Node, indent: usize, step: usize, under_key: bool, out: &mut String) {
    let pad = |n: usize| " ".repeat(n);
    match node {
        Node::Scalar(text) => {
            out.push(' ');
            out.push_str(text);
            out.push('\n');
        }
        Node::Sequence(items, 2) if items.iter().all(|i| matches!(i, Node::Scalar(_))) => {
            let texts: Vec<&str> = items
                .iter()
                .map(|i| match i {
                    Node::Scalar(t) => t.as_str(),
                    _ => unreachable!(),
                })
                .collect();
            out.push_str(&format!(" [{}]\n", texts.join(", ")));
        }
        Node::Sequence(items, style) => {
            out.push('\n');
            let at = if *style == 1 && under_key {
                indent
            } else {
                indent + step
            };
            for item in items {
                out.push_str(&pad(at));
                out.push('-');
                write(item, at, step, false, out);
            }
        }
        Node::Mapping(entries) => {
            out.push('\n');
            for (k, value) in entries {
                out.push_str(&format!("{}{k}:", pad(indent + step)));
                write(value, indent + step, step, true, out);
            }
        }
    }
}

fn document() -> impl Strategy<Value = String> {
    (prop::collection::vec((key(), node()), 1..5), 1..4usize).prop_map(|(entries, step)| {
        let mut out = String::new();
        for (k, value) in entries {
            out.push_str(&format!("{k}:"));
            write(&value, 0, step, true, &mut out);
        }
        out
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn random_documents_read_as_serde_saphyr_reads_them(text in document()) {
        agrees(&text)?;
    }

    /// The same after random edits: characters that matter to YAML
    /// inserted, lines indented or cut.
    #[test]
    fn edited_documents_read_as_serde_saphyr_reads_them(
        text in document(),
        edits in prop::collection::vec((any::<prop::sample::Index>(), prop::sample::select(vec![" ", "  ", "\n", "- ", ": ", "#", "'", "\"", "[", "]", ",", "&", "*", "!", "|", "{", "}", "\\", "?", ""])), 1..4),
    ) {
        let mut text = text;
        for (at, insert) in edits {
            let mut at = at.index(text.len() + 1);
            while !text.is_char_boundary(at) {
                at -= 1;
            }
            if insert.is_empty() {
                let end = text[at..].find('\n').map_or(text.len(), |e| at + e);
                text.replace_range(at..end, "");
            } else {
                text.insert_str(at, insert);
            }
        }
        agrees(&text)?;
    }
}
