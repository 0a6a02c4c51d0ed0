//! Kernel configuration: fragments, `SYMBOL=val` additions, the merge onto
//! `tinyconfig`, and the check that `olddefconfig` kept every request.
//!
//! The merge is our own rather than `scripts/kconfig/merge_config.sh`: it is
//! a few lines, it needs no shell, and it gives us the request list (symbol,
//! value, the fragment and line that asked for it) that the dropped-symbol
//! check needs anyway. Semantics follow merge_config.sh: fragments are read
//! in order, a later assignment overrides an earlier one (logged), and the
//! result replaces those symbols' lines in the base `.config` before
//! `olddefconfig` resolves dependencies and defaults.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

/// Errors of parsing and checking kernel configurations.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A fragment could not be read.
    #[error("cannot read config fragment {path}")]
    Read {
        /// The fragment.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A fragment line is neither an assignment, `# CONFIG_X is not set`, a
    /// comment nor blank.
    #[error("{path}:{line}: not a kconfig assignment: {text:?}")]
    Syntax {
        /// Where the line came from (a file, or `--config-add`).
        path: String,
        /// 1-based line number.
        line: usize,
        /// The offending text.
        text: String,
    },
    /// `--config-add` got something that is neither an existing fragment
    /// file nor `SYMBOL=value`.
    #[error("--config-add {0:?}: expected a fragment file or SYMBOL=value (e.g. KASAN=y)")]
    BadAddition(String),
}

/// The value a kconfig symbol is set to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Value {
    /// `y`.
    Yes,
    /// `m`.
    Module,
    /// `n`, also written `# CONFIG_X is not set`, or the symbol is absent.
    No,
    /// A string, integer or hex value, kept verbatim (quotes included).
    Other(String),
}

impl Value {
    fn parse(s: &str) -> Self {
        match s {
            "y" => Value::Yes,
            "m" => Value::Module,
            "n" => Value::No,
            other => Value::Other(other.to_owned()),
        }
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Yes => f.write_str("y"),
            Value::Module => f.write_str("m"),
            Value::No => f.write_str("n"),
            Value::Other(s) => f.write_str(s),
        }
    }
}

/// One requested assignment and where it was asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// Symbol name without the `CONFIG_` prefix.
    pub symbol: String,
    /// Requested value.
    pub value: Value,
    /// `file:line` (or `--config-add`) of the request.
    pub origin: String,
}

/// A line that is neither an assignment, `# CONFIG_X is not set`, a
/// comment nor blank.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotAssignment;

/// Parses one line of a fragment or `.config`. `Ok(None)` for comments and
/// blank lines; symbol names come back without `CONFIG_`.
pub fn parse_line(line: &str) -> Result<Option<(String, Value)>, NotAssignment> {
    let line = line.trim();
    if line.is_empty() {
        return Ok(None);
    }
    if let Some(rest) = line.strip_prefix('#') {
        let rest = rest.trim();
        if let Some(sym) = rest
            .strip_prefix("CONFIG_")
            .and_then(|r| r.strip_suffix(" is not set"))
        {
            if is_symbol(sym) {
                return Ok(Some((sym.to_owned(), Value::No)));
            }
        }
        return Ok(None);
    }
    let (name, value) = line.split_once('=').ok_or(NotAssignment)?;
    let sym = name.trim().strip_prefix("CONFIG_").ok_or(NotAssignment)?;
    let value = value.trim();
    if !is_symbol(sym) || value.is_empty() {
        return Err(NotAssignment);
    }
    Ok(Some((sym.to_owned(), Value::parse(value))))
}

fn is_symbol(s: &str) -> bool {
    !s.is_empty()
        && s.bytes().all(|b| {
            b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_' || b.is_ascii_lowercase()
        })
}

/// Parses fragment text; `origin` names it in errors and requests.
pub fn parse_fragment(origin: &str, text: &str) -> Result<Vec<Request>, ConfigError> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        match parse_line(line) {
            Ok(Some((symbol, value))) => out.push(Request {
                symbol,
                value,
                origin: format!("{origin}:{}", i + 1),
            }),
            Ok(None) => {}
            Err(NotAssignment) => {
                return Err(ConfigError::Syntax {
                    path: origin.to_owned(),
                    line: i + 1,
                    text: line.to_owned(),
                });
            }
        }
    }
    Ok(out)
}

/// Reads and parses a fragment file.
pub fn read_fragment(path: &Path) -> Result<Vec<Request>, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    parse_fragment(&path.display().to_string(), &text)
}

/// One `--config-add` argument.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ConfigAdd {
    /// A fragment file.
    Fragment(PathBuf),
    /// `SYMBOL=value` (`CONFIG_` prefix optional).
    Symbol(String, Value),
}

impl ConfigAdd {
    /// Parses `FRAGMENT|SYMBOL=val`: an existing file is a fragment, anything
    /// else must be an assignment.
    pub fn parse(arg: &str) -> Result<Self, ConfigError> {
        let p = Path::new(arg);
        if p.is_file() {
            return Ok(ConfigAdd::Fragment(p.to_owned()));
        }
        let (name, value) = arg
            .split_once('=')
            .ok_or_else(|| ConfigError::BadAddition(arg.to_owned()))?;
        let name = name.trim();
        let name = name.strip_prefix("CONFIG_").unwrap_or(name);
        let value = value.trim();
        if !is_symbol(name) || value.is_empty() {
            return Err(ConfigError::BadAddition(arg.to_owned()));
        }
        Ok(ConfigAdd::Symbol(name.to_owned(), Value::parse(value)))
    }

    /// The requests this addition makes.
    pub fn requests(&self) -> Result<Vec<Request>, ConfigError> {
        match self {
            ConfigAdd::Fragment(p) => read_fragment(p),
            ConfigAdd::Symbol(s, v) => Ok(vec![Request {
                symbol: s.clone(),
                value: v.clone(),
                origin: "--config-add".to_owned(),
            }]),
        }
    }
}

/// The `*.config` fragments of a directory, sorted by file name.
pub fn fragment_files(dir: &Path) -> Result<Vec<PathBuf>, ConfigError> {
    let rd = std::fs::read_dir(dir).map_err(|source| ConfigError::Read {
        path: dir.to_owned(),
        source,
    })?;
    let mut files: Vec<PathBuf> = rd
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "config") && p.is_file())
        .collect();
    files.sort();
    Ok(files)
}

/// Merges requests in order: the last assignment of a symbol wins.
/// Returns the effective requests, in first-seen order.
pub fn merge(requests: &[Request]) -> Vec<Request> {
    let mut order: Vec<String> = Vec::new();
    let mut map: BTreeMap<String, Request> = BTreeMap::new();
    for r in requests {
        match map.get(&r.symbol) {
            Some(prev) if prev.value != r.value => {
                tracing::info!(
                    "config: {} overrides CONFIG_{}={} ({}) with {}",
                    r.origin,
                    r.symbol,
                    prev.value,
                    prev.origin,
                    r.value
                );
            }
            Some(_) => {}
            None => order.push(r.symbol.clone()),
        }
        map.insert(r.symbol.clone(), r.clone());
    }
    order.into_iter().filter_map(|s| map.remove(&s)).collect()
}

/// Rewrites a base `.config` text with the requests applied: each requested
/// symbol's old line is dropped and the request appended.
pub fn apply_to_dotconfig(base: &str, requests: &[Request]) -> String {
    let wanted: std::collections::HashSet<&str> =
        requests.iter().map(|r| r.symbol.as_str()).collect();
    let mut out = String::with_capacity(base.len() + requests.len() * 32);
    for line in base.lines() {
        if let Ok(Some((sym, _))) = parse_line(line) {
            if wanted.contains(sym.as_str()) {
                continue;
            }
        }
        out.push_str(line);
        out.push('\n');
    }
    out.push_str("# dangle: merged fragments\n");
    for r in requests {
        out.push_str(&render(&r.symbol, &r.value));
        out.push('\n');
    }
    out
}

fn render(sym: &str, v: &Value) -> String {
    match v {
        Value::No => format!("# CONFIG_{sym} is not set"),
        v => format!("CONFIG_{sym}={v}"),
    }
}

/// Parses a `.config` into symbol -> value (absent symbols are `n`).
pub fn parse_dotconfig(text: &str) -> BTreeMap<String, Value> {
    text.lines()
        .filter_map(|l| parse_line(l).ok().flatten())
        .collect()
}

/// The final value of a symbol in a parsed `.config`.
pub fn value_of<'a>(cfg: &'a BTreeMap<String, Value>, sym: &str) -> &'a Value {
    cfg.get(sym).unwrap_or(&Value::No)
}

/// A requested symbol that `olddefconfig` did not keep.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dropped {
    /// The symbol (no `CONFIG_`).
    pub symbol: String,
    /// What was asked for.
    pub wanted: Value,
    /// What the final `.config` has.
    pub got: Value,
    /// Where it was asked for.
    pub origin: String,
    /// Its Kconfig definition: file:line, `depends on` lines and the value
    /// of every symbol they mention. `None` when no definition was found
    /// (the symbol does not exist in this tree).
    pub kconfig: Option<KconfigInfo>,
}

impl fmt::Display for Dropped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "CONFIG_{} requested {} ({}) but is {}",
            self.symbol, self.wanted, self.origin, self.got
        )?;
        match &self.kconfig {
            None => write!(f, "; no Kconfig defines it in this tree"),
            Some(k) => {
                write!(f, "; defined at {}", k.location)?;
                if k.depends.is_empty() {
                    write!(f, " with no 'depends on'")?;
                }
                for d in &k.depends {
                    write!(f, "; depends on {}", d.expr)?;
                    if !d.symbols.is_empty() {
                        let vals: Vec<String> =
                            d.symbols.iter().map(|(s, v)| format!("{s}={v}")).collect();
                        write!(f, " [{}]", vals.join(" "))?;
                    }
                }
                Ok(())
            }
        }
    }
}

/// A symbol's Kconfig definition, as far as the check needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KconfigInfo {
    /// `path:line` of the `config`/`menuconfig` line, relative to the tree.
    pub location: String,
    /// Its `depends on` clauses and the surrounding `if` blocks.
    pub depends: Vec<Dependency>,
}

/// One `depends on` expression with the final values of its symbols.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dependency {
    /// The expression as written (`if` blocks come out as `X (from 'if X')`).
    pub expr: String,
    /// Each symbol named in it with its value in the final `.config`.
    pub symbols: Vec<(String, Value)>,
}

/// Compares requests with the final `.config`; for each miss, looks the
/// symbol up in the Kconfig files under `tree`.
pub fn check(
    requests: &[Request],
    final_cfg: &BTreeMap<String, Value>,
    tree: &Path,
) -> Vec<Dropped> {
    let mut dropped: Vec<Dropped> = requests
        .iter()
        .filter(|r| value_of(final_cfg, &r.symbol) != &r.value)
        .map(|r| Dropped {
            symbol: r.symbol.clone(),
            wanted: r.value.clone(),
            got: value_of(final_cfg, &r.symbol).clone(),
            origin: r.origin.clone(),
            kconfig: None,
        })
        .collect();
    if dropped.is_empty() {
        return dropped;
    }
    let wanted: Vec<String> = dropped.iter().map(|d| d.symbol.clone()).collect();
    let found = find_kconfig(tree, &wanted);
    for d in &mut dropped {
        d.kconfig = found.get(&d.symbol).map(|(loc, deps)| KconfigInfo {
            location: loc.clone(),
            depends: deps
                .iter()
                .map(|expr| Dependency {
                    expr: expr.clone(),
                    symbols: expr_symbols(expr)
                        .into_iter()
                        .map(|s| {
                            let v = value_of(final_cfg, &s).clone();
                            (s, v)
                        })
                        .collect(),
                })
                .collect(),
        });
    }
    dropped
}

/// Symbols named in a Kconfig expression (skips `y`/`m`/`n` and literals).
fn expr_symbols(expr: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for tok in expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
        if tok.is_empty()
            || matches!(tok, "y" | "m" | "n" | "if")
            || tok.starts_with(|c: char| c.is_ascii_digit())
        {
            continue;
        }
        if tok
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
            && !out.iter().any(|o| o == tok)
        {
            out.push(tok.to_owned());
        }
    }
    out
}

/// Scans every `Kconfig*` file under `tree` for the definitions of
/// `symbols`. Returns symbol -> (location, depends expressions). Enclosing
/// `if X` blocks of the same file count as dependencies; `source`d files do
/// not inherit them (good enough to name the culprit).
pub fn find_kconfig(tree: &Path, symbols: &[String]) -> BTreeMap<String, (String, Vec<String>)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![tree.to_owned()];
    while let Some(dir) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in rd.filter_map(Result::ok) {
            let p = e.path();
            let Ok(ft) = e.file_type() else { continue };
            let name = e.file_name();
            let name = name.to_string_lossy();
            if ft.is_dir() {
                if !name.starts_with('.') && name != "Documentation" {
                    stack.push(p);
                }
            } else if ft.is_file() && name.starts_with("Kconfig") {
                if let Ok(text) = std::fs::read_to_string(&p) {
                    let rel = p.strip_prefix(tree).unwrap_or(&p).display().to_string();
                    scan_kconfig(&rel, &text, symbols, &mut out);
                }
            }
        }
    }
    out
}

/// Scans one Kconfig file's text (see [`find_kconfig`]).
pub fn scan_kconfig(
    rel: &str,
    text: &str,
    symbols: &[String],
    out: &mut BTreeMap<String, (String, Vec<String>)>,
) {
    let mut ifs: Vec<String> = Vec::new();
    let mut current: Option<String> = None;
    // Join continuation lines first, keeping the first line's number.
    let mut lines: Vec<(usize, String)> = Vec::new();
    let mut pending: Option<(usize, String)> = None;
    for (i, raw) in text.lines().enumerate() {
        let (n, mut acc) = pending.take().unwrap_or((i + 1, String::new()));
        if let Some(stripped) = raw.strip_suffix('\\') {
            acc.push_str(stripped);
            acc.push(' ');
            pending = Some((n, acc));
        } else {
            acc.push_str(raw);
            lines.push((n, acc));
        }
    }
    for (n, line) in lines {
        let t = line.trim();
        let word = t.split_whitespace().next().unwrap_or("");
        match word {
            "config" | "menuconfig" => {
                let sym = t[word.len()..].trim();
                current = None;
                if symbols.iter().any(|s| s == sym) && !out.contains_key(sym) {
                    let deps = ifs.iter().map(|c| format!("{c} (from 'if {c}')")).collect();
                    out.insert(sym.to_owned(), (format!("{rel}:{n}"), deps));
                    current = Some(sym.to_owned());
                }
            }
            "if" => {
                ifs.push(t[2..].trim().to_owned());
                current = None;
            }
            "endif" => {
                ifs.pop();
                current = None;
            }
            "choice" | "endchoice" | "menu" | "endmenu" | "comment" | "source" | "mainmenu" => {
                current = None
            }
            "depends" => {
                if let (Some(sym), Some(expr)) = (&current, t.strip_prefix("depends on")) {
                    if let Some(entry) = out.get_mut(sym) {
                        let expr = expr.split('#').next().unwrap_or("");
                        entry
                            .1
                            .push(expr.split_whitespace().collect::<Vec<_>>().join(" "));
                    }
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(s: &str, v: Value) -> Request {
        Request {
            symbol: s.to_owned(),
            value: v,
            origin: "t".to_owned(),
        }
    }

    #[test]
    fn parse_line_forms_parsed() {
        assert_eq!(
            parse_line("CONFIG_KASAN=y"),
            Ok(Some(("KASAN".into(), Value::Yes)))
        );
        assert_eq!(
            parse_line("# CONFIG_SLUB_TINY is not set"),
            Ok(Some(("SLUB_TINY".into(), Value::No)))
        );
        assert_eq!(
            parse_line("CONFIG_DEFAULT_HUNG_TASK_TIMEOUT=20"),
            Ok(Some((
                "DEFAULT_HUNG_TASK_TIMEOUT".into(),
                Value::Other("20".into())
            )))
        );
        assert_eq!(
            parse_line("CONFIG_CMDLINE=\"a b\""),
            Ok(Some(("CMDLINE".into(), Value::Other("\"a b\"".into()))))
        );
        assert_eq!(parse_line("# a comment"), Ok(None));
        assert_eq!(parse_line("   "), Ok(None));
        assert_eq!(parse_line("KASAN=y"), Err(NotAssignment));
        assert_eq!(parse_line("CONFIG_KASAN"), Err(NotAssignment));
    }

    #[test]
    fn parse_fragment_bad_line_names_file_and_line() {
        let err = parse_fragment("frag.config", "CONFIG_A=y\n\nbogus line\n").unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("frag.config:3"), "{msg}");
        assert!(msg.contains("bogus line"), "{msg}");
    }

    #[test]
    fn config_add_symbol_with_and_without_prefix_parsed() {
        assert_eq!(
            ConfigAdd::parse("KASAN=y").unwrap(),
            ConfigAdd::Symbol("KASAN".into(), Value::Yes)
        );
        assert_eq!(
            ConfigAdd::parse("CONFIG_NR_CPUS=4").unwrap(),
            ConfigAdd::Symbol("NR_CPUS".into(), Value::Other("4".into()))
        );
        assert_eq!(
            ConfigAdd::parse("LKDTM=n").unwrap(),
            ConfigAdd::Symbol("LKDTM".into(), Value::No)
        );
    }

    #[test]
    fn config_add_garbage_rejected() {
        for bad in ["no-such-file.config", "=y", "A B=y", "KASAN="] {
            assert!(
                matches!(ConfigAdd::parse(bad), Err(ConfigError::BadAddition(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn config_add_existing_file_is_fragment() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.config");
        std::fs::write(&p, "CONFIG_A=y\n").unwrap();
        let add = ConfigAdd::parse(p.to_str().unwrap()).unwrap();
        assert_eq!(add, ConfigAdd::Fragment(p));
        assert_eq!(add.requests().unwrap()[0].symbol, "A");
    }

    #[test]
    fn merge_later_assignment_wins_first_order_kept() {
        let merged = merge(&[
            req("A", Value::Yes),
            req("B", Value::Yes),
            req("A", Value::No),
            req("C", Value::Other("3".into())),
        ]);
        let got: Vec<(String, Value)> = merged.into_iter().map(|r| (r.symbol, r.value)).collect();
        assert_eq!(
            got,
            vec![
                ("A".into(), Value::No),
                ("B".into(), Value::Yes),
                ("C".into(), Value::Other("3".into()))
            ]
        );
    }

    #[test]
    fn apply_to_dotconfig_replaces_old_lines() {
        let base = "CONFIG_A=y\n# CONFIG_B is not set\nCONFIG_C=y\n";
        let out = apply_to_dotconfig(base, &[req("A", Value::No), req("B", Value::Yes)]);
        let cfg = parse_dotconfig(&out);
        assert_eq!(cfg["A"], Value::No);
        assert_eq!(cfg["B"], Value::Yes);
        assert_eq!(cfg["C"], Value::Yes);
        assert_eq!(out.matches("CONFIG_A").count(), 1, "{out}");
    }

    #[test]
    fn fragment_files_sorted_and_filtered() {
        let dir = tempfile::tempdir().unwrap();
        for n in ["20-b.config", "10-a.config", "notes.md", "30-c.config"] {
            std::fs::write(dir.path().join(n), "").unwrap();
        }
        let names: Vec<String> = fragment_files(dir.path())
            .unwrap()
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["10-a.config", "20-b.config", "30-c.config"]);
    }

    #[test]
    fn check_dropped_symbol_names_unmet_dependency() {
        let tree = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(tree.path().join("lib")).unwrap();
        std::fs::write(
            tree.path().join("lib/Kconfig.kasan"),
            "menuconfig KASAN\n\tbool \"KASAN\"\n\tdepends on (HAVE_ARCH_KASAN && \\\n\t\tCC_HAS_KASAN_GENERIC)\n\tdepends on SYSFS && !SLUB_TINY\n\nif KASAN\nconfig KASAN_INLINE\n\tbool \"inline\"\nendif\n",
        )
        .unwrap();
        let final_cfg = parse_dotconfig(
            "CONFIG_HAVE_ARCH_KASAN=y\nCONFIG_CC_HAS_KASAN_GENERIC=y\nCONFIG_SYSFS=y\nCONFIG_SLUB_TINY=y\n# CONFIG_KASAN is not set\n",
        );
        let reqs = [
            req("KASAN", Value::Yes),
            req("KASAN_INLINE", Value::Yes),
            req("SYSFS", Value::Yes),
            req("NO_SUCH", Value::Yes),
        ];
        let dropped = check(&reqs, &final_cfg, tree.path());
        assert_eq!(dropped.len(), 3, "{dropped:?}");
        let kasan = dropped[0].to_string();
        assert!(kasan.contains("CONFIG_KASAN requested y"), "{kasan}");
        assert!(kasan.contains("lib/Kconfig.kasan:1"), "{kasan}");
        assert!(
            kasan.contains("depends on SYSFS && !SLUB_TINY [SYSFS=y SLUB_TINY=y]"),
            "{kasan}"
        );
        assert!(kasan.contains("HAVE_ARCH_KASAN=y"), "{kasan}");
        assert!(
            kasan.contains("depends on (HAVE_ARCH_KASAN && CC_HAS_KASAN_GENERIC) ["),
            "{kasan}"
        );
        let inline = dropped[1].to_string();
        assert!(
            inline.contains("depends on KASAN (from 'if KASAN') [KASAN=n]"),
            "{inline}"
        );
        assert!(
            dropped[2].to_string().contains("no Kconfig defines it"),
            "{}",
            dropped[2]
        );
    }

    #[test]
    fn check_all_kept_returns_nothing() {
        let tree = tempfile::tempdir().unwrap();
        let cfg = parse_dotconfig("CONFIG_A=y\nCONFIG_N=20\n");
        let reqs = [
            req("A", Value::Yes),
            req("N", Value::Other("20".into())),
            req("B", Value::No),
        ];
        assert!(check(&reqs, &cfg, tree.path()).is_empty());
    }
}
