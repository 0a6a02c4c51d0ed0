//! `dangle validate` end to end on the default kernel, with two small
//! kernel patches of our own whose effect is known (in `tests/data/validate`):
//! - one fixes `known-bugs/gpio-two-irqchips` (each virtio-gpio device gets
//!   its own irq_chip): validate must call that finding **fixed**;
//! - one puts a WARN on the GPIO removal path that `smoke/gpio-unplug-qmp`
//!   takes: validate must call it a **regression** and exit 1.
//!
//! VM tests: real QEMU 10, the default kernel and an incremental build of
//! the candidate on its object tree; one VM at a time (the `vm` group).

mod common;
use common::require_qemu;

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/validate")
        .join(name)
}

fn out_dir(name: &str) -> PathBuf {
    let d = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("validate")
        .join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("output dir");
    d
}

/// Runs `dangle validate ARGS --json --junit`; returns the exit code, the
/// JSON document, the JUnit text and the combined output.
fn validate(name: &str, args: &[&str]) -> (i32, Value, String, String) {
    require_qemu();
    let dir = out_dir(name);
    let json = dir.join("validate.json");
    let junit = dir.join("validate.xml");
    let out = Command::new(env!("CARGO_BIN_EXE_dangle"))
        .arg("validate")
        .args(args)
        .arg("--json")
        .arg(&json)
        .arg("--junit")
        .arg(&junit)
        .arg("--artifacts")
        .arg(dir.join("artifacts"))
        .output()
        .expect("run dangle validate");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: Value = serde_json::from_slice(
        &std::fs::read(&json).unwrap_or_else(|e| panic!("no {}: {e}\n{text}", json.display())),
    )
    .unwrap_or_else(|e| panic!("bad JSON: {e}\n{text}"));
    let xml = std::fs::read_to_string(&junit).unwrap_or_default();
    (out.status.code().unwrap_or(-1), doc, xml, text)
}

fn finding<'a>(doc: &'a Value, title_part: &str) -> &'a Value {
    doc["findings"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|f| f["title"].as_str().is_some_and(|t| t.contains(title_part)))
        .unwrap_or_else(|| panic!("no finding like {title_part:?} in {doc:#}"))
}

#[test]
fn validate_own_fix_of_two_irqchips_is_fixed() {
    let patch = data("0001-gpio-virtio-one-irq_chip-per-device.patch");
    let (code, doc, _, text) = validate(
        "fix",
        &[
            patch.to_str().expect("utf-8 path"),
            "--suite",
            "known-bugs",
            "--only",
            "gpio-two-irqchips",
            "--expect-fixed",
            "NULL pointer dereference in irq_enable",
        ],
    );
    assert_eq!(code, 0, "{text}");
    let f = finding(&doc, "NULL pointer dereference in irq_enable");
    assert_eq!(f["class"], "fixed", "{f:#}\n{text}");
    assert_eq!(f["base"]["seen"], f["base"]["runs"], "{f:#}");
    assert_eq!(f["candidate"]["seen"], 0, "{f:#}");
    let patches = doc["candidate"][0]["patches"].to_string();
    assert!(patches.contains("one-irq_chip-per-device"), "{patches}");
}

#[test]
fn validate_warn_on_the_removal_path_is_a_regression() {
    let patch = data("0001-gpio-virtio-warn-on-interrupt-lines-at-removal.patch");
    let (code, doc, xml, text) = validate(
        "regression",
        &[
            patch.to_str().expect("utf-8 path"),
            "--suite",
            "smoke",
            "--only",
            "gpio-unplug-qmp",
        ],
    );
    assert_eq!(code, 1, "{text}");
    let f = finding(&doc, "WARNING in virtio_gpio_remove");
    assert_eq!(f["class"], "regression", "{f:#}\n{text}");
    assert_eq!(f["base"]["seen"], 0, "{f:#}");
    assert!(xml.contains("<failure"), "{xml}");
}
