//! The layer rule of `ARCHITECTURE.md` ("Layers"), held: every reference
//! one top-level module of `src/` makes to another (`use crate::x::…`,
//! `use crate::{x::…, y::…}`, `super::` climbing out of a module, a path
//! such as `crate::x::f()` written inline, and `gdpr_intake::x` in the
//! binary) must be an edge of [`ALLOWED`]. Comments and string literals do
//! not count. A new top-level module fails the test until it is placed in
//! the table.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// Each top-level module and the modules it may use, from the layer rule:
///
/// ```text
/// domain ← store ← service ← api / watchdog ← startup ← config ← main
/// ```
///
/// with `proto`, `errors` and `clock` beside `domain` (they use nothing),
/// `telemetry`, `auth` and `transport` beside `store` (they use only the
/// bottom row, and `transport` counts into `telemetry`), and nothing above
/// the service naming the store.
const ALLOWED: &[(&str, &[&str])] = &[
    ("domain", &[]),
    ("proto", &[]),
    ("errors", &[]),
    ("clock", &[]),
    ("keyfile", &[]),
    ("evidence", &["keyfile"]),
    ("telemetry", &["domain", "proto"]),
    ("auth", &["domain", "errors"]),
    ("transport", &["errors", "proto", "telemetry"]),
    ("store", &["domain", "clock", "keyfile", "evidence"]),
    (
        "service",
        &["domain", "clock", "telemetry", "auth", "store", "evidence"],
    ),
    (
        "api",
        &["domain", "proto", "errors", "telemetry", "auth", "service"],
    ),
    ("watchdog", &["domain", "telemetry", "service"]),
    (
        "startup",
        &[
            "domain",
            "proto",
            "errors",
            "clock",
            "telemetry",
            "auth",
            "transport",
            "store",
            "service",
            "api",
            "watchdog",
            "evidence",
        ],
    ),
    ("config", &["domain", "telemetry", "transport", "watchdog"]),
    (
        "main",
        &[
            "domain",
            "proto",
            "errors",
            "clock",
            "telemetry",
            "auth",
            "transport",
            "store",
            "service",
            "api",
            "watchdog",
            "startup",
            "config",
            "evidence",
        ],
    ),
];

/// One reference from a file to a top-level module.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Reference {
    line: usize,
    module: String,
}

fn allowed(from: &str) -> Option<&'static [&'static str]> {
    ALLOWED.iter().find(|(m, _)| *m == from).map(|(_, a)| *a)
}

#[test]
fn every_module_imports_only_what_its_layer_allows() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut broken = Vec::new();
    let mut seen = BTreeSet::new();
    for file in &files {
        let relative = file.strip_prefix(&src).expect("under src");
        let Some(path) = module_path(relative) else {
            continue;
        };
        let from = path[0].clone();
        seen.insert(from.clone());
        let text = std::fs::read_to_string(file).expect("readable source");
        let roots: &[&str] = if from == "main" {
            // The binary names the library by its crate name; its own
            // `crate::` and `super::` are the binary's.
            &["gdpr_intake"]
        } else {
            &["crate", "gdpr_intake"]
        };
        let Some(rule) = allowed(&from) else {
            broken.push(format!(
                "src/{}: module `{from}` is not in the layer table",
                relative.display()
            ));
            continue;
        };
        for r in references(&text, &path, roots) {
            if r.module == from || rule.contains(&r.module.as_str()) {
                continue;
            }
            let why = if allowed(&r.module).is_none() {
                format!("`{}` is not in the layer table", r.module)
            } else {
                format!("{from} may use only: {}", or_nothing(rule))
            };
            broken.push(format!(
                "src/{}:{}: {from} → {} breaks the layer rule ({why})\n    {}",
                relative.display(),
                r.line,
                r.module,
                text.lines().nth(r.line - 1).unwrap_or("").trim(),
            ));
        }
    }
    // Guards against a test that checks nothing: the sources were found,
    // and every module of the table has files.
    assert!(files.len() > 50, "only {} files under {src:?}", files.len());
    for (module, _) in ALLOWED {
        assert!(seen.contains(*module), "no file of module `{module}`");
    }
    assert!(
        broken.is_empty(),
        "{} import(s) against the layers of ARCHITECTURE.md:\n{}",
        broken.len(),
        broken.join("\n")
    );
}

fn or_nothing(modules: &[&str]) -> String {
    if modules.is_empty() {
        "nothing".to_owned()
    } else {
        modules.join(", ")
    }
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("readable directory") {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
    out.sort();
}

/// The module a file under `src/` holds, as a path from the crate root:
/// `api/dsr.rs` → `[api, dsr]`, `api/mod.rs` → `[api]`, `main.rs` →
/// `[main]`. `None` for the crate root and for the other binaries
/// (`src/bin/`), which are programs of their own.
fn module_path(relative: &Path) -> Option<Vec<String>> {
    let mut parts: Vec<String> = relative
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    if parts[0] == "bin" || parts == ["lib.rs"] {
        return None;
    }
    let last = parts.pop().expect("a file name");
    let stem = last.strip_suffix(".rs").expect("a .rs file");
    if stem != "mod" {
        parts.push(stem.to_owned());
    }
    Some(parts)
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Token {
    Ident(String),
    /// `::`
    Path,
    Open,
    Close,
    Comma,
    /// `$`, of `$crate` in a macro.
    Dollar,
    Other,
}

/// The top-level modules that `source`, the text of module `path`, refers
/// to through any of `roots` (`crate`, the library's name) or through
/// `super::` climbing to the crate root.
fn references(source: &str, path: &[String], roots: &[&str]) -> Vec<Reference> {
    let tokens = tokens(&code_only(source));
    let mut found = Vec::new();
    // Inline modules (`mod tests { … }`) deepen the path `super::` climbs
    // from: each with the brace depth its body is at.
    let mut inline: Vec<usize> = Vec::new();
    let mut depth = 0;
    let at = |i: usize| tokens.get(i).map(|(_, t)| t);
    let mut i = 0;
    while i < tokens.len() {
        let (line, token) = &tokens[i];
        match token {
            Token::Open => depth += 1,
            Token::Close => {
                if inline.last() == Some(&depth) {
                    inline.pop();
                }
                depth -= 1;
            }
            Token::Ident(word) if word == "mod" => {
                if let (Some(Token::Ident(_)), Some(Token::Open)) = (at(i + 1), at(i + 2)) {
                    inline.push(depth + 1);
                }
            }
            // The main binary's `crate` is its own, not the library.
            Token::Ident(word)
                if roots.contains(&word.as_str())
                    && !(word == "crate" && path[0] == "main")
                    && at(i + 1) == Some(&Token::Path)
                    && i.checked_sub(1).and_then(at) != Some(&Token::Dollar)
                    && i.checked_sub(1).and_then(at) != Some(&Token::Path) =>
            {
                found.extend(named_at(&tokens, i + 2, *line));
            }
            Token::Ident(word)
                if word == "super"
                    && path[0] != "main"
                    && at(i + 1) == Some(&Token::Path)
                    && i.checked_sub(1).and_then(at) != Some(&Token::Path) =>
            {
                let mut climb = 0;
                let mut j = i;
                while at(j) == Some(&Token::Ident("super".to_owned()))
                    && at(j + 1) == Some(&Token::Path)
                {
                    climb += 1;
                    j += 2;
                }
                let from = path.len() + inline.len();
                if climb == from {
                    found.extend(named_at(&tokens, j, *line));
                }
                i = j;
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    found
}

/// The top-level modules named at token `i`, just after `root::`: one
/// (`root::api::…`), or each item of a group (`root::{api::…, store}`).
fn named_at(tokens: &[(usize, Token)], i: usize, line: usize) -> Vec<Reference> {
    match tokens.get(i) {
        Some((_, Token::Ident(name))) if name != "self" => vec![Reference {
            line,
            module: name.clone(),
        }],
        Some((_, Token::Open)) => {
            let mut named = Vec::new();
            let mut depth = 0;
            let mut item_start = true;
            for (line, token) in &tokens[i..] {
                match token {
                    Token::Open => {
                        depth += 1;
                        item_start = depth == 1;
                        continue;
                    }
                    Token::Close => {
                        depth -= 1;
                        if depth == 0 {
                            break;
                        }
                    }
                    Token::Comma if depth == 1 => {
                        item_start = true;
                        continue;
                    }
                    Token::Ident(name) if item_start && depth == 1 && name != "self" => {
                        named.push(Reference {
                            line: *line,
                            module: name.clone(),
                        });
                    }
                    _ => {}
                }
                item_start = false;
            }
            named
        }
        _ => Vec::new(),
    }
}

/// `source` with comments and the contents of string and character
/// literals blanked (line breaks kept, so lines still count).
fn code_only(source: &str) -> String {
    let chars: Vec<char> = source.chars().collect();
    let mut out = String::with_capacity(source.len());
    let blank = |c: char| if c == '\n' { '\n' } else { ' ' };
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                out.push(' ');
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut nesting = 0;
            while i < chars.len() {
                if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
                    nesting += 1;
                    out.push_str("  ");
                    i += 2;
                } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                    nesting -= 1;
                    out.push_str("  ");
                    i += 2;
                    if nesting == 0 {
                        break;
                    }
                } else {
                    out.push(blank(chars[i]));
                    i += 1;
                }
            }
        } else if c == 'r'
            && (next == Some('"') || next == Some('#'))
            && !chars
                .get(i.wrapping_sub(1))
                .is_some_and(|p| p.is_alphanumeric() || *p == '_')
        {
            // A raw string: r"…", r#"…"#, as many hashes closing as opening.
            let mut j = i + 1;
            let mut hashes = 0;
            while chars.get(j) == Some(&'#') {
                hashes += 1;
                j += 1;
            }
            if chars.get(j) != Some(&'"') {
                out.push(c);
                i += 1;
                continue;
            }
            out.push(' ');
            for _ in i + 1..=j {
                out.push(' ');
            }
            i = j + 1;
            while i < chars.len() {
                if chars[i] == '"' && (0..hashes).all(|h| chars.get(i + 1 + h) == Some(&'#')) {
                    for _ in 0..=hashes {
                        out.push(' ');
                    }
                    i += 1 + hashes;
                    break;
                }
                out.push(blank(chars[i]));
                i += 1;
            }
        } else if c == '"' {
            out.push(' ');
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                if chars[i] == '\\' {
                    out.push(' ');
                    i += 1;
                }
                if let Some(&ch) = chars.get(i) {
                    out.push(blank(ch));
                }
                i += 1;
            }
            out.push(' ');
            i += 1;
        } else if c == '\'' {
            // A character literal ('x', '\n', '\''), or else a lifetime.
            let close = if next == Some('\\') {
                (i + 3..chars.len().min(i + 12)).find(|&j| chars[j] == '\'')
            } else {
                (chars.get(i + 2) == Some(&'\'')).then_some(i + 2)
            };
            match close {
                Some(end) => {
                    for _ in i..=end {
                        out.push(' ');
                    }
                    i = end + 1;
                }
                None => {
                    out.push(c);
                    i += 1;
                }
            }
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

fn tokens(code: &str) -> Vec<(usize, Token)> {
    let chars: Vec<char> = code.chars().collect();
    let mut out = Vec::new();
    let mut line = 1;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '\n' {
            line += 1;
            i += 1;
        } else if c.is_whitespace() {
            i += 1;
        } else if c.is_alphabetic() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            out.push((line, Token::Ident(chars[start..i].iter().collect())));
        } else if c == ':' && chars.get(i + 1) == Some(&':') {
            out.push((line, Token::Path));
            i += 2;
        } else {
            out.push((
                line,
                match c {
                    '{' => Token::Open,
                    '}' => Token::Close,
                    ',' => Token::Comma,
                    '$' => Token::Dollar,
                    _ => Token::Other,
                },
            ));
            i += 1;
        }
    }
    out
}

mod parsing {
    use super::*;

    fn modules(source: &str, path: &[&str]) -> Vec<(usize, String)> {
        let path: Vec<String> = path.iter().map(|p| (*p).to_owned()).collect();
        references(source, &path, &["crate", "gdpr_intake"])
            .into_iter()
            .map(|r| (r.line, r.module))
            .collect()
    }

    fn named(list: &[(usize, &str)]) -> Vec<(usize, String)> {
        list.iter().map(|(l, m)| (*l, (*m).to_owned())).collect()
    }

    #[test]
    fn plain_grouped_nested_and_inline_paths_are_found() {
        let source = "use crate::api::AppState;\n\
                      use crate::{store::{Store, Effects}, telemetry,\n    auth::Role};\n\
                      fn f() { let x = crate::watchdog::lease_ttl(d); }\n\
                      use gdpr_intake::config::Cli;\n";
        assert_eq!(
            modules(source, &["domain", "age"]),
            named(&[
                (1, "api"),
                (2, "store"),
                (2, "telemetry"),
                (3, "auth"),
                (4, "watchdog"),
                (5, "config"),
            ])
        );
    }

    #[test]
    fn super_counts_only_when_it_climbs_out_of_the_module() {
        // In `api/mod.rs`, `super` is the crate root.
        assert_eq!(
            modules("use super::store::Store;", &["api"]),
            named(&[(1, "store")])
        );
        // In `api/dsr.rs`, `super` is `api`.
        assert!(modules("use super::error::ApiError;", &["api", "dsr"]).is_empty());
        assert_eq!(
            modules("use super::super::{store, api::x};", &["api", "dsr"]),
            named(&[(1, "store"), (1, "api")])
        );
        // An inline module adds a level: here `super` is `api`.
        let tests = "mod tests {\n    use super::*;\n    use super::super::clock::Clock;\n}\nuse super::auth::Role;";
        assert_eq!(
            modules(tests, &["api"]),
            named(&[(3, "clock"), (5, "auth")])
        );
    }

    #[test]
    fn comments_strings_and_macro_paths_do_not_count() {
        let source = "// use crate::api::x;\n\
                      /// see [`crate::store::Store`]\n\
                      /* crate::watchdog:: /* nested */ crate::config:: */\n\
                      let s = \"crate::api::x\"; let r = r#\"crate::store\"#;\n\
                      let c = '\"'; let q = '\\''; fn f<'a>(x: &'a str) {}\n\
                      $crate::telemetry::x; pub(crate) fn g() {}\n\
                      use crate::domain::age;\n";
        assert_eq!(modules(source, &["store"]), named(&[(7, "domain")]));
    }

    #[test]
    fn files_map_to_their_module_paths() {
        let p = |s: &str| module_path(Path::new(s));
        assert_eq!(p("api/dsr.rs"), Some(vec!["api".into(), "dsr".into()]));
        assert_eq!(p("api/mod.rs"), Some(vec!["api".into()]));
        assert_eq!(p("main.rs"), Some(vec!["main".into()]));
        assert_eq!(p("lib.rs"), None);
        assert_eq!(p("bin/loadgen/calls.rs"), None);
    }
}
