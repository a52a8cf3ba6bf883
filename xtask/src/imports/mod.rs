//! `cargo xtask imports`: no crate's modules import from each other in a loop. Modules in
//! a loop can only be read, tested and moved together, and such loops grow unnoticed, one
//! convenient import at a time; the check runs first in `cargo xtask test`.
//!
//! Every `.rs` file under a crate's `src/` is a module (`foo.rs` and `foo/mod.rs` are `foo`,
//! `foo/bar.rs` is `foo::bar`, `lib.rs` or `main.rs` the root). A module depends on another
//! when it names it, or an item in it, in a `use` declaration or a path in its code; items of
//! inline `mod x { … }` blocks are their file's. A small lexer of our own rather than a Rust
//! parser: paths are all the check needs, and comments and literals are all it must skip.
mod graph;
mod lex;
mod refs;

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt::Write as _,
    fs,
    path::Path,
};

use anyhow::{Context as _, Result, bail};

use crate::process::workspace_root;
use graph::{Graph, Site};

/// The crates whose modules are checked; `tests` is a crate of separate test binaries.
const CRATES: &[&str] = &[
    "monitor-agent",
    "monitor-ebpf",
    "monitor-protocols",
    "monitor-common",
    "xtask",
];

/// Checks every crate, prints what it found, and fails if any crate has a cycle. With
/// `show_rooms`, also prints the edges between each crate's top-level modules.
pub fn check(show_rooms: bool) -> Result<()> {
    let root = workspace_root()?;
    let mut tangled = Vec::new();
    for name in CRATES {
        let src = format!("{name}/src");
        let files = read_sources(&root.join(&src)).with_context(|| format!("cannot read {src}"))?;
        let graph = analyse(&src, &files)?;
        print!("{}", report(name, &graph, show_rooms));
        if !graph.tangles().is_empty() {
            tangled.push(*name);
        }
    }
    if !tangled.is_empty() {
        bail!("import cycles in {}", tangled.join(", "));
    }
    Ok(())
}

/// The `.rs` files under `src`, as paths relative to it with `/` separators, sorted so the
/// first site found for an edge is the same on every run.
fn read_sources(src: &Path) -> Result<Vec<(String, String)>> {
    let mut files = Vec::new();
    let mut folders = vec![src.to_path_buf()];
    while let Some(folder) = folders.pop() {
        let entries =
            fs::read_dir(&folder).with_context(|| format!("cannot list {}", folder.display()))?;
        for entry in entries {
            let path = entry
                .with_context(|| format!("cannot list {}", folder.display()))?
                .path();
            if path.is_dir() {
                folders.push(path);
            } else if path.extension().is_some_and(|ext| ext == "rs") {
                let relative = path
                    .strip_prefix(src)?
                    .to_str()
                    .with_context(|| format!("{} is not UTF-8", path.display()))?
                    .replace(std::path::MAIN_SEPARATOR, "/");
                let source = fs::read_to_string(&path)
                    .with_context(|| format!("cannot read {}", path.display()))?;
                files.push((relative, source));
            }
        }
    }
    files.sort();
    Ok(files)
}

/// The module a file under `src/` is; `None` for the separate binaries under `src/bin/`.
fn module_of(file: &str) -> Option<Vec<String>> {
    let mut parts: Vec<&str> = file.split('/').collect();
    let stem = parts.pop()?.strip_suffix(".rs")?;
    if parts.first() == Some(&"bin") {
        return None;
    }
    if parts.is_empty() && matches!(stem, "lib" | "main") {
        return Some(Vec::new());
    }
    if stem != "mod" {
        parts.push(stem);
    }
    Some(parts.into_iter().map(str::to_owned).collect())
}

/// The module graph of one crate from its files (relative to `src`, which prefixes the
/// sites reported).
fn analyse(src: &str, files: &[(String, String)]) -> Result<Graph> {
    // With a library, main.rs is the root of a separate binary crate: it reaches the library
    // only through its public paths, and nothing in the library can import from it, so it
    // is on no loop of the library's.
    let has_library = files.iter().any(|(file, _)| file == "lib.rs");
    let mut by_module: BTreeMap<Vec<String>, (&str, &str)> = BTreeMap::new();
    for (file, source) in files {
        if has_library && file == "main.rs" {
            continue;
        }
        let Some(module) = module_of(file) else {
            continue;
        };
        if let Some((other, _)) = by_module.insert(module, (file, source)) {
            bail!("{src}/{other} and {src}/{file} are the same module");
        }
    }
    let modules: BTreeSet<Vec<String>> = by_module.keys().cloned().collect();
    let index: BTreeMap<&[String], usize> = by_module
        .keys()
        .enumerate()
        .map(|(i, module)| (module.as_slice(), i))
        .collect();
    let mut graph = Graph::new(by_module.keys().cloned().collect());
    for (from, (module, (file, source))) in by_module.iter().enumerate() {
        let tokens = lex::tokenize(source).with_context(|| format!("cannot read {src}/{file}"))?;
        for reference in refs::references(&tokens, module, &modules) {
            // The longest prefix that is a module: `series::table::Budget` is in
            // `series::table`, and an item of an inline `mod tests` in its file's module.
            let owner = (0..=reference.path.len())
                .rev()
                .find_map(|len| index.get(&reference.path[..len]));
            if let Some(&to) = owner {
                let file = format!("{src}/{file}");
                graph.add_edge(
                    from,
                    to,
                    Site {
                        file,
                        line: reference.line,
                    },
                );
            }
        }
    }
    Ok(graph)
}

/// `name: N modules, M edges, …`, then each tangle's loops with the site of every edge.
fn report(name: &str, graph: &Graph, show_rooms: bool) -> String {
    let mut out = format!(
        "{name}: {}, {}",
        counted(graph.module_count(), "module"),
        counted(graph.edge_count(), "edge")
    );
    let tangles = graph.tangles();
    if tangles.is_empty() {
        out.push_str(", no import cycles\n");
    } else {
        out.push_str(", import cycles:\n");
    }
    for tangle in &tangles {
        let names: Vec<String> = tangle.iter().map(|&m| graph.name(m)).collect();
        let _ = writeln!(
            out,
            "  {} modules reach each other: {}",
            names.len(),
            names.join(", ")
        );
        for cycle in graph.loops(tangle) {
            let mut names: Vec<String> = cycle.iter().map(|&m| graph.name(m)).collect();
            names.push(names[0].clone());
            let _ = writeln!(out, "    {}", names.join(" → "));
            let edges: Vec<String> = names.windows(2).map(|w| w.join(" → ")).collect();
            let width = edges.iter().map(|e| e.chars().count()).max().unwrap_or(0);
            for (i, edge) in edges.iter().enumerate() {
                let site = graph.site(cycle[i], cycle[(i + 1) % cycle.len()]);
                let pad = width - edge.chars().count();
                let _ = writeln!(out, "      {edge}{:pad$}  {site}", "");
            }
        }
    }
    if show_rooms {
        let rooms = graph.rooms();
        let none = if rooms.is_empty() { " none" } else { "" };
        let _ = writeln!(out, "  edges between top-level modules:{none}");
        for ((from, to), (count, site)) in rooms {
            let edges = counted(count, "module edge");
            let _ = writeln!(out, "    {from} → {to}  ({edges}, first at {site})");
        }
    }
    out
}

fn counted(count: usize, what: &str) -> String {
    match count {
        1 => format!("1 {what}"),
        _ => format!("{count} {what}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn graph_of(files: &[(&str, &str)]) -> Graph {
        let files: Vec<(String, String)> = files
            .iter()
            .map(|(file, source)| (file.to_string(), source.to_string()))
            .collect();
        analyse("x/src", &files).unwrap()
    }

    fn report_of(files: &[(&str, &str)]) -> String {
        report("x", &graph_of(files), false)
    }

    #[test]
    fn files_are_modules() {
        let module = |file| module_of(file).map(|m| m.join("::"));
        assert_eq!(module("lib.rs").as_deref(), Some(""));
        assert_eq!(module("main.rs").as_deref(), Some(""));
        assert_eq!(module("foo.rs").as_deref(), Some("foo"));
        assert_eq!(module("foo/mod.rs").as_deref(), Some("foo"));
        assert_eq!(module("foo/bar.rs").as_deref(), Some("foo::bar"));
        assert_eq!(module("foo/main.rs").as_deref(), Some("foo::main"));
        assert_eq!(module("bin/tool.rs"), None);
    }

    #[test]
    fn a_cycle_through_a_braced_use_is_found_with_its_sites() {
        let report = report_of(&[
            ("lib.rs", "mod a;\nmod b;\nmod c;\n"),
            ("a.rs", "use crate::c::Z;\npub struct X;"),
            ("b.rs", "pub struct Y;"),
            ("c.rs", "use crate::{\n    a::X,\n    b,\n};\npub struct Z;"),
        ]);
        assert_eq!(
            report,
            "x: 4 modules, 3 edges, import cycles:\n  \
               2 modules reach each other: a, c\n    \
                 a → c → a\n      \
                   a → c  x/src/a.rs:1\n      \
                   c → a  x/src/c.rs:2\n"
        );
    }

    #[test]
    fn a_dag_passes() {
        let graph = graph_of(&[
            (
                "main.rs",
                "mod a;\nmod b;\nfn main() { a::run(); b::run(); }",
            ),
            ("a.rs", "use crate::b::helper;\npub fn run() { helper() }"),
            ("b.rs", "pub fn run() {}\npub fn helper() {}"),
        ]);
        assert_eq!((graph.module_count(), graph.edge_count()), (3, 3));
        assert!(graph.tangles().is_empty());
        assert_eq!(
            report("x", &graph, false),
            "x: 3 modules, 3 edges, no import cycles\n"
        );
    }

    #[test]
    fn a_parent_re_exporting_its_child_that_imports_back_is_a_cycle() {
        let report = report_of(&[
            ("lib.rs", "mod net;"),
            (
                "net/mod.rs",
                "mod tcp;\npub use tcp::Conn;\npub struct Config;",
            ),
            ("net/tcp.rs", "use super::Config;\npub struct Conn;"),
        ]);
        assert!(report.contains("net → net::tcp → net\n"), "{report}");
        assert!(
            report.contains("net::tcp → net  x/src/net/tcp.rs:1"),
            "{report}"
        );
    }

    #[test]
    fn super_resolves_from_a_file_and_from_its_inline_tests() {
        let graph = graph_of(&[
            ("lib.rs", "mod net;\nmod util;"),
            ("net/mod.rs", "mod tcp;"),
            (
                "net/tcp.rs",
                "use super::super::util::f;\n\
                 #[cfg(test)]\nmod tests {\n    use super::*;\n    use super::super::X;\n}",
            ),
            ("util.rs", "pub fn f() {}"),
        ]);
        // tcp → util, and tcp → net from its tests (which are tcp's, so no tcp → tcp).
        assert_eq!(graph.edge_count(), 2);
        assert_eq!(
            report("x", &graph, true).lines().nth(2),
            Some("    net → util  (1 module edge, first at x/src/net/tcp.rs:1)")
        );
    }

    #[test]
    fn comments_strings_and_doc_comments_are_ignored() {
        let graph = graph_of(&[
            ("lib.rs", "mod a;\nmod b;"),
            (
                "a.rs",
                "//! See [`crate::b::B`].\n\
                 /// Like `crate::b::f()`.\n\
                 // use crate::b;\n\
                 /* crate::b::f() /* nested */ crate::b */\n\
                 pub fn f() -> &'static str {\n    \
                     let _ = '\"';\n    \
                     \"crate::b::f()\"\n}\n\
                 const R: &str = r#\"use crate::b; \"quoted\" \"#;",
            ),
            ("b.rs", "pub fn f() { crate::a::f(); }"),
        ]);
        assert_eq!(graph.edge_count(), 1);
        assert!(graph.tangles().is_empty());
    }

    #[test]
    fn inline_paths_count_and_resolve_to_the_longest_module() {
        let graph = graph_of(&[
            ("lib.rs", "mod series;\nmod signals;"),
            ("series/mod.rs", "mod table;"),
            (
                "series/table.rs",
                "pub struct Budget;\nfn f() { crate::signals::g(); }",
            ),
            (
                "signals.rs",
                "pub fn g() {}\nfn h() -> crate::series::table::Budget {\n    \
                 crate::series::table::Budget\n}",
            ),
        ]);
        let report = report("x", &graph, false);
        assert!(
            report.contains("series::table → signals → series::table\n"),
            "{report}"
        );
        assert!(
            report.contains("signals → series::table  x/src/signals.rs:2"),
            "{report}"
        );
    }

    #[test]
    fn items_in_an_inline_module_belong_to_its_file() {
        let graph = graph_of(&[
            ("lib.rs", "mod a;\nmod b;"),
            ("a.rs", "#[cfg(test)]\npub mod tests { pub fn helper() {} }"),
            ("b.rs", "use crate::a::tests::helper;"),
        ]);
        assert_eq!(
            report("x", &graph, true),
            "x: 3 modules, 1 edge, no import cycles\n  \
               edges between top-level modules:\n    \
                 b → a  (1 module edge, first at x/src/b.rs:1)\n"
        );
    }

    #[test]
    fn main_rs_beside_lib_rs_is_a_separate_binary() {
        let graph = graph_of(&[
            ("lib.rs", "pub mod app;\npub fn version() {}"),
            (
                "main.rs",
                "fn main() { monitor::app::run(); crate::helper(); }",
            ),
            ("app.rs", "pub fn run() { crate::version(); }"),
        ]);
        assert_eq!((graph.module_count(), graph.edge_count()), (2, 1));
    }
}
