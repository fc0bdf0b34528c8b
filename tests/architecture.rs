//! The crate's data flows one way (docs/architecture.md): the top-level modules of `src/`
//! import each other without a circle, and the leaves (`identity`, `signal`, `model`,
//! `alloc`) import nothing from the crate. The import graph is read from the source:
//! every `crate::module` path outside comments and string literals, `use crate::{a, b}`
//! groups included, test code included.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

type Graph = BTreeMap<String, BTreeSet<String>>;

/// The source with comments, string and char literals blanked out.
fn code_only(src: &str) -> String {
    let b = src.as_bytes();
    let mut out = String::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'/' if b.get(i + 1) == Some(&b'/') => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                let mut depth = 0;
                while i < b.len() {
                    if b[i] == b'/' && b.get(i + 1) == Some(&b'*') {
                        depth += 1;
                        i += 2;
                    } else if b[i] == b'*' && b.get(i + 1) == Some(&b'/') {
                        depth -= 1;
                        i += 2;
                        if depth == 0 {
                            break;
                        }
                    } else {
                        i += 1;
                    }
                }
            }
            b'r' if matches!(b.get(i + 1), Some(b'"' | b'#'))
                && (i == 0 || !(b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_')) =>
            {
                // raw string r#"…"#
                let mut j = i + 1;
                let mut hashes = 0;
                while b.get(j) == Some(&b'#') {
                    hashes += 1;
                    j += 1;
                }
                if b.get(j) != Some(&b'"') {
                    out.push('r');
                    i += 1;
                    continue;
                }
                j += 1;
                loop {
                    if j >= b.len() {
                        break;
                    }
                    if b[j] == b'"'
                        && b[j + 1..]
                            .iter()
                            .take(hashes)
                            .filter(|&&c| c == b'#')
                            .count()
                            == hashes
                    {
                        j += 1 + hashes;
                        break;
                    }
                    j += 1;
                }
                out.push_str("\"\"");
                i = j;
            }
            b'"' => {
                i += 1;
                while i < b.len() && b[i] != b'"' {
                    i += if b[i] == b'\\' { 2 } else { 1 };
                }
                i += 1;
                out.push_str("\"\"");
            }
            b'\'' => {
                // a char literal ('x', '\n', '\u{..}') or a lifetime ('a)
                if b.get(i + 1) == Some(&b'\\') {
                    i += 2;
                    while i < b.len() && b[i] != b'\'' {
                        i += 1;
                    }
                    i += 1;
                } else if b.get(i + 2) == Some(&b'\'') {
                    i += 3;
                } else {
                    // a lifetime, or a multi-byte char: skip to the closing quote if near
                    let end = src[i + 1..].char_indices().nth(1).map(|(k, _)| i + 1 + k);
                    match end {
                        Some(e) if b.get(e) == Some(&b'\'') => i = e + 1,
                        _ => {
                            out.push('\'');
                            i += 1;
                        }
                    }
                }
            }
            _ => {
                let c = src[i..].chars().next().unwrap();
                out.push(c);
                i += c.len_utf8();
            }
        }
    }
    out
}

fn ident_at(s: &str) -> &str {
    let n = s
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(s.len());
    &s[..n]
}

/// The top-level modules `code` names through `crate::`.
fn imports(code: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = code;
    while let Some(k) = rest.find("crate::") {
        let before = rest[..k].chars().next_back();
        rest = &rest[k + "crate::".len()..];
        if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$') {
            continue; // `momentum_crate::`, `$crate::`
        }
        let t = rest.trim_start();
        if let Some(group) = t.strip_prefix('{') {
            // `crate::{a::x, b, c::{d, e}}`: the names at depth 1
            let mut depth = 1;
            let mut at_name = true;
            let mut i = 0;
            let g = group.as_bytes();
            while i < g.len() && depth > 0 {
                match g[i] {
                    b'{' => depth += 1,
                    b'}' => depth -= 1,
                    b',' if depth == 1 => at_name = true,
                    c if at_name && depth == 1 && (c.is_ascii_alphabetic() || c == b'_') => {
                        let name = ident_at(&group[i..]);
                        out.insert(name.to_string());
                        i += name.len();
                        at_name = false;
                        continue;
                    }
                    _ => {}
                }
                i += 1;
            }
        } else {
            let name = ident_at(t);
            if !name.is_empty() {
                out.insert(name.to_string());
            }
        }
    }
    out
}

fn rs_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rs_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

fn graph() -> Graph {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rs_files(&src, &mut files);
    let mut g = Graph::new();
    for f in files {
        let rel = f.strip_prefix(&src).unwrap();
        let first = rel
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy();
        let top = first.trim_end_matches(".rs").to_string();
        if top == "lib" || top == "main" {
            continue; // the crate root declares every module; the binary uses the library
        }
        let code = code_only(&std::fs::read_to_string(&f).unwrap());
        let deps = g.entry(top.clone()).or_default();
        for m in imports(&code) {
            if m != top {
                deps.insert(m);
            }
        }
    }
    g
}

/// The strongly connected components with more than one module (Tarjan).
fn circles(g: &Graph) -> Vec<Vec<String>> {
    struct T<'a> {
        g: &'a Graph,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on: BTreeSet<&'a str>,
        out: Vec<Vec<String>>,
    }
    fn visit<'a>(t: &mut T<'a>, v: &'a str) {
        let n = t.index.len();
        t.index.insert(v, n);
        t.low.insert(v, n);
        t.stack.push(v);
        t.on.insert(v);
        for w in t.g.get(v).into_iter().flatten() {
            let w = w.as_str();
            if !t.index.contains_key(w) {
                visit(t, w);
                let lw = t.low[w];
                let lv = t.low.get_mut(v).unwrap();
                *lv = (*lv).min(lw);
            } else if t.on.contains(w) {
                let iw = t.index[w];
                let lv = t.low.get_mut(v).unwrap();
                *lv = (*lv).min(iw);
            }
        }
        if t.low[v] == t.index[v] {
            let mut comp = Vec::new();
            loop {
                let w = t.stack.pop().unwrap();
                t.on.remove(w);
                comp.push(w.to_string());
                if w == v {
                    break;
                }
            }
            if comp.len() > 1 {
                comp.sort();
                t.out.push(comp);
            }
        }
    }
    let mut t = T {
        g,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on: BTreeSet::new(),
        out: Vec::new(),
    };
    for v in g.keys() {
        if !t.index.contains_key(v.as_str()) {
            visit(&mut t, v);
        }
    }
    t.out
}

#[test]
fn the_module_graph_has_no_circle() {
    let g = graph();
    assert!(g.len() > 15, "the source was read: {:?}", g.keys());
    let c = circles(&g);
    let listing: Vec<String> = g
        .iter()
        .map(|(m, d)| {
            format!(
                "{m} -> {}",
                d.iter().cloned().collect::<Vec<_>>().join(", ")
            )
        })
        .collect();
    assert!(
        c.is_empty(),
        "modules that import each other (in a circle): {c:?}\nthe graph:\n{}",
        listing.join("\n")
    );
}

#[test]
fn the_leaves_import_nothing_from_the_crate() {
    let g = graph();
    for leaf in ["identity", "signal", "model", "alloc"] {
        let deps = g
            .get(leaf)
            .unwrap_or_else(|| panic!("src/{leaf}.rs exists"));
        assert!(deps.is_empty(), "{leaf} imports {deps:?}");
    }
}

#[test]
fn the_reader_sees_imports_and_skips_comments_and_strings() {
    let code = code_only(
        "use crate::a::X;\n// crate::b\n/* crate::c /* nested */ crate::d */\n\
         let s = \"crate::e\"; let r = r#\"crate::f\"#; let c = '\"'; fn g<'a>() {}\n\
         use crate::{h::Y, i, j::{k, l}};\nlet x = crate::m::f(); $crate::n; my_crate::o;",
    );
    let found: Vec<String> = imports(&code).into_iter().collect();
    assert_eq!(found, ["a", "h", "i", "j", "m"]);
    // A circle is found, and only a circle.
    let mut g = Graph::new();
    g.entry("x".into()).or_default().insert("y".into());
    g.entry("y".into()).or_default().insert("z".into());
    g.entry("z".into()).or_default();
    assert!(circles(&g).is_empty());
    g.entry("z".into()).or_default().insert("x".into());
    assert_eq!(circles(&g), vec![vec!["x", "y", "z"]]);
}
