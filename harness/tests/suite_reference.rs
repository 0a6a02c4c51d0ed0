//! `docs/suites.md` against the suite loader, so the reference cannot drift
//! from the schema: every YAML block in it loads with the real loader, and
//! every key and kind name the loader accepts is written in it as inline
//! code. The accepted names are not listed here: serde tells them, from
//! the error it gives for an unknown one.

use std::collections::BTreeSet;
use std::path::Path;

use dangle::suite::load::load_str;
use dangle::suite::schema::{
    Consumer, Defaults, Expectation, GpioLine, I2cOpName, KernelReq, Method, Scenario, Step,
    SuiteFile, Unplug,
};
use dangle::vm::devices::DeviceSpec;
use serde::de::DeserializeOwned;

fn doc() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/suites.md");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The ```yaml blocks: (line of the fence, text).
fn yaml_blocks(doc: &str) -> Vec<(usize, String)> {
    let mut blocks = Vec::new();
    let mut open: Option<(usize, String)> = None;
    for (i, line) in doc.lines().enumerate() {
        match &mut open {
            None if line.trim_start().starts_with("```yaml") => open = Some((i + 1, String::new())),
            Some(_) if line.trim_start().starts_with("```") => blocks.extend(open.take()),
            Some((_, text)) => {
                text.push_str(line);
                text.push('\n');
            }
            None => {}
        }
    }
    assert!(open.is_none(), "unclosed ```yaml block");
    blocks
}

/// The words of the inline code spans outside fenced blocks.
fn code_words(doc: &str) -> BTreeSet<String> {
    let mut prose = String::new();
    let mut fenced = false;
    for line in doc.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
        } else if !fenced {
            prose.push_str(line);
            prose.push('\n');
        }
    }
    prose
        .split('`')
        .skip(1)
        .step_by(2)
        .flat_map(|span| {
            span.split(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_'))
                .filter(|w| !w.is_empty())
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .collect()
}

/// The names serde says it expected when `probe` (which must hold an
/// unknown key or kind `zzz`) is read as `T`, the way the loader reads.
fn expected<T: DeserializeOwned>(probe: &str) -> Vec<String> {
    let de = serde_yaml_ng::Deserializer::from_str(probe);
    let Err(e) = serde_yaml_ng::with::singleton_map_recursive::deserialize::<T, _>(de) else {
        panic!("{probe:?} was accepted");
    };
    let msg = e.to_string();
    if !msg.contains("`zzz`") {
        return Vec::new();
    }
    let Some(i) = msg.find("expected") else {
        return Vec::new();
    };
    msg[i..]
        .split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect()
}

/// The variants of enum `T`, and for each struct or newtype-struct
/// variant, its fields.
fn enum_names<T: DeserializeOwned>() -> Vec<String> {
    let variants = expected::<T>("zzz");
    assert!(!variants.is_empty(), "no variants probed");
    let mut names = variants.clone();
    for v in variants {
        names.extend(expected::<T>(&format!("{v}: {{ zzz: 1 }}")));
    }
    names
}

/// Every key and kind name a suite file can hold.
fn accepted_names() -> BTreeSet<String> {
    let mut names = Vec::new();
    names.extend(expected::<SuiteFile>("zzz: 1"));
    names.extend(expected::<Defaults>("zzz: 1"));
    names.extend(expected::<Scenario>("zzz: 1"));
    names.extend(expected::<KernelReq>("zzz: 1"));
    names.extend(expected::<Unplug>("zzz: 1"));
    names.extend(expected::<GpioLine>("zzz: 1"));
    names.extend(enum_names::<Method>());
    names.extend(enum_names::<I2cOpName>());
    names.extend(enum_names::<Expectation>());
    names.extend(enum_names::<Step>());
    names.extend(enum_names::<Consumer>());
    let kinds = expected::<DeviceSpec>("kind: zzz");
    for k in &kinds {
        names.extend(expected::<DeviceSpec>(&format!("{{ kind: {k}, zzz: 1 }}")));
    }
    names.extend(kinds);
    names.into_iter().collect()
}

#[test]
fn suites_md_every_yaml_block_loads() {
    let doc = doc();
    let blocks = yaml_blocks(&doc);
    assert!(blocks.len() >= 8, "only {} yaml blocks", blocks.len());
    for (line, text) in blocks {
        let name = format!("docs/suites.md@{line}");
        if let Err(e) = load_str(&text, Path::new(&name)) {
            panic!("the block at line {line}: {}", dangle::exit::chain(&e));
        }
    }
}

#[test]
fn suites_md_names_every_key_and_kind_the_loader_accepts() {
    let names = accepted_names();
    assert!(
        names.len() > 60,
        "only {} names probed: {names:?}",
        names.len()
    );
    for probe in [
        "gpio-hold",
        "unplug-timeout",
        "no-replug",
        "chips",
        "backend-stall",
    ] {
        assert!(names.contains(probe), "probing missed {probe}: {names:?}");
    }
    let documented = code_words(&doc());
    let missing: Vec<&String> = names.iter().filter(|n| !documented.contains(*n)).collect();
    assert!(
        missing.is_empty(),
        "docs/suites.md does not mention (as `code`) {missing:?}"
    );
}
