//! The agent's imports follow the data: ingest → model → publish/control, with Spark's REST API
//! (`spark_api`) beside the model and the shared helpers (`auth`, `telemetry`, `clock`,
//! `shutdown`, `tls`, `flags`) below everything; `agent` and `config` (the assembly) above, and
//! `upkeep` (the timers over the store) beside publish. This test reads every module path that
//! each source file names (`crate::…`, `super::…`, and `use` groups) and fails on an import
//! against the layers or on two files that import each other, directly or around a longer
//! circle.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The helpers every layer may name.
const BELOW: [&str; 6] = ["auth", "telemetry", "clock", "shutdown", "tls", "flags"];

/// Which top-level modules each top-level module may name besides [`BELOW`].
const ALLOWED: &[(&str, &[&str])] = &[
    ("spark_api", &[]),
    ("model", &["spark_api"]),
    ("ingest", &["model", "spark_api"]),
    ("control", &["ingest", "model"]),
    ("publish", &["control", "model", "spark_api"]),
    ("upkeep", &["model"]),
    ("auth", &["flags"]),
    ("telemetry", &["clock"]),
    ("clock", &[]),
    ("shutdown", &[]),
    ("tls", &[]),
    ("flags", &[]),
];

/// The assembly: it may name anything.
const ASSEMBLY: [&str; 2] = ["agent", "config"];

type ModPath = Vec<String>;

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Every module file of the library, by module path (`publish/stream/ws.rs` → publish::stream::ws).
fn modules() -> BTreeMap<ModPath, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![src()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("read src") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            let rel = path.strip_prefix(src()).expect("under src");
            let mut parts: Vec<String> = rel
                .with_extension("")
                .iter()
                .map(|p| p.to_string_lossy().into_owned())
                .collect();
            // The binary's files (`main.rs`, `cli/`) name the library as `sparkscope::`.
            let binary = parts == ["main"] || parts.first().is_some_and(|p| p == "cli");
            if binary || parts == ["lib"] || path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            if parts.last().is_some_and(|p| p == "mod") {
                parts.pop();
            }
            out.insert(parts, std::fs::read_to_string(&path).expect("read"));
        }
    }
    out
}

/// The module paths a file names, resolved against `here` (its own module path).
fn references(here: &[String], text: &str) -> Vec<ModPath> {
    let code: String = text
        .lines()
        .map(|l| l.split("//").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n");
    let mut out = Vec::new();
    for start in ["crate::", "super::"] {
        let mut rest = code.as_str();
        while let Some(at) = rest.find(start) {
            let before = rest[..at].chars().next_back();
            rest = &rest[at..];
            let path_end = rest
                .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
                .unwrap_or(rest.len());
            let path = rest[..path_end].trim_end_matches(':');
            let group = rest[path_end..].starts_with('{') && rest[..path_end].ends_with("::");
            let items: Vec<&str> = if group {
                let close = rest[path_end..]
                    .find('}')
                    .map_or(rest.len(), |c| path_end + c);
                rest[path_end + 1..close]
                    .split(',')
                    .map(str::trim)
                    .collect()
            } else {
                vec![""]
            };
            if before.is_none_or(|c| !(c.is_alphanumeric() || c == '_' || c == ':')) {
                for item in items {
                    let item = item.split_whitespace().next().unwrap_or("");
                    let full = if item.is_empty() {
                        path.to_owned()
                    } else {
                        format!("{path}::{item}")
                    };
                    out.push(resolve(here, &full));
                }
            }
            rest = &rest[path_end.max(1)..];
        }
    }
    out
}

fn resolve(here: &[String], path: &str) -> ModPath {
    let mut parts = path.split("::").filter(|p| !p.is_empty());
    let mut base: ModPath = match parts.next() {
        Some("crate") => Vec::new(),
        // `super` of a module file is its parent; of `x/mod.rs` (module x) too.
        Some("super") => here[..here.len().saturating_sub(1)].to_vec(),
        _ => return Vec::new(),
    };
    for p in parts {
        if p == "super" {
            base.pop();
        } else if p != "self" {
            base.push(p.to_owned());
        }
    }
    base
}

/// The longest prefix of `path` that is a module file.
fn module_of(path: &[String], mods: &BTreeMap<ModPath, String>) -> Option<ModPath> {
    (1..=path.len())
        .rev()
        .map(|n| path[..n].to_vec())
        .find(|p| mods.contains_key(p))
}

#[test]
fn imports_follow_the_layers_and_no_files_import_each_other() {
    let mods = modules();
    assert!(mods.len() > 20, "found the sources: {:?}", mods.keys());
    let allowed: BTreeMap<&str, &[&str]> = ALLOWED.iter().copied().collect();
    let mut edges: BTreeMap<ModPath, BTreeSet<ModPath>> = BTreeMap::new();
    let mut wrong = Vec::new();
    for (here, text) in &mods {
        for r in references(here, text) {
            let Some(target) = module_of(&r, &mods) else {
                continue;
            };
            // A module naming its own descendants (its `mod` items) is structure, not a use.
            if target.starts_with(here) {
                continue;
            }
            let (from, to) = (here[0].as_str(), target[0].as_str());
            if from != to && !ASSEMBLY.contains(&from) {
                let below = BELOW.contains(&to) && !BELOW.contains(&from);
                let ok = below || allowed.get(from).is_some_and(|a| a.contains(&to));
                if !ok {
                    wrong.push(format!("{} names {}", here.join("::"), target.join("::")));
                }
            }
            edges.entry(here.clone()).or_default().insert(target);
        }
    }
    assert!(
        wrong.is_empty(),
        "imports against the layers:\n{}",
        wrong.join("\n")
    );
    // The layers' own check must see real edges, or it checks nothing.
    let model_users = edges
        .iter()
        .filter(|(from, to)| from[0] == "ingest" && to.iter().any(|t| t[0] == "model"))
        .count();
    assert!(
        model_users > 0,
        "no ingest → model import found: the reader is broken"
    );

    // No circles between files: a depth-first search for a back edge.
    fn visit(
        node: &ModPath,
        edges: &BTreeMap<ModPath, BTreeSet<ModPath>>,
        state: &mut BTreeMap<ModPath, u8>,
        trail: &mut Vec<ModPath>,
    ) -> Option<Vec<ModPath>> {
        state.insert(node.clone(), 1);
        trail.push(node.clone());
        for next in edges.get(node).into_iter().flatten() {
            match state.get(next).copied().unwrap_or(0) {
                1 => {
                    let at = trail.iter().position(|n| n == next).unwrap_or(0);
                    let mut circle = trail[at..].to_vec();
                    circle.push(next.clone());
                    return Some(circle);
                }
                0 => {
                    if let Some(c) = visit(next, edges, state, trail) {
                        return Some(c);
                    }
                }
                _ => {}
            }
        }
        trail.pop();
        state.insert(node.clone(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for node in mods.keys() {
        if state.get(node).copied().unwrap_or(0) == 0 {
            if let Some(circle) = visit(node, &edges, &mut state, &mut Vec::new()) {
                let names: Vec<String> = circle.iter().map(|m| m.join("::")).collect();
                panic!("files import each other: {}", names.join(" → "));
            }
        }
    }
}

#[test]
fn the_reader_sees_groups_and_super() {
    let here: ModPath = vec!["publish".into(), "stream".into(), "ws".into()];
    let refs = references(
        &here,
        "use super::subscriber::{self, Close};\nuse crate::auth;\nlet x = crate::telemetry::X; // crate::model\n",
    );
    assert!(refs.contains(&vec![
        "publish".into(),
        "stream".into(),
        "subscriber".into()
    ]));
    assert!(refs.contains(&vec!["auth".into()]));
    assert!(refs.contains(&vec!["telemetry".into(), "X".into()]));
    assert!(!refs.iter().any(|r| r.first().is_some_and(|m| m == "model")));
}
