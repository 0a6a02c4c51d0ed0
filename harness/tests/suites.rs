//! Suite tests: `dangle run` end to end on the default kernel, as a user
//! runs it (real QEMU, kernel, backends, agent). One VM at a time (nextest
//! group `vm`).

use std::path::PathBuf;
use std::process::Command;

fn run(name: &str, args: &[&str]) -> (i32, serde_json::Value, String) {
    let dir = std::env::var_os("DANGLE_TEST_ARTIFACTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("suite-tests"))
        .join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("artifacts dir");
    let json = dir.join("result.json");
    let out = Command::new(env!("CARGO_BIN_EXE_dangle"))
        .arg("run")
        .args(args)
        .arg("--seed")
        .arg("1")
        .arg("--json")
        .arg(&json)
        .arg("--artifacts")
        .arg(&dir)
        .env("CI", "true")
        .output()
        .expect("run dangle");
    let text = format!(
        "--- stdout\n{}\n--- stderr\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let v = std::fs::read(&json)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or(serde_json::Value::Null);
    (out.status.code().unwrap_or(-1), v, text)
}

fn titles(v: &serde_json::Value, scenario: &str) -> Vec<String> {
    v["scenarios"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|s| s["scenario"] == scenario)
        .flat_map(|s| s["findings"].as_array().cloned().unwrap_or_default())
        .filter_map(|f| f["title"].as_str().map(str::to_owned))
        .collect()
}

#[test]
fn suite_smoke_passes_on_default_kernel() {
    let (code, v, text) = run("smoke", &["smoke"]);
    assert_eq!(code, 0, "smoke suite did not pass\n{text}");
    assert_eq!(v["met"], v["total"], "{text}");
    assert!(v["total"].as_u64().unwrap_or(0) >= 4, "{v}");
    // The LKDTM scenario proves the pipeline: its finding must be there.
    assert!(
        titles(&v, "lkdtm-use-after-free")
            .iter()
            .any(|t| t == "KASAN: slab-use-after-free Write in lkdtm_WRITE_AFTER_FREE"),
        "{v}"
    );
    // The unplug scenarios really cycled.
    for s in v["scenarios"].as_array().unwrap() {
        if s["method"] == "qmp" {
            assert_eq!(s["cycles"], 1, "{s}");
        }
    }
}

#[test]
fn suite_i2c_open_fd_hangs_in_i2c_del_adapter() {
    let (code, v, text) = run("i2c-open-fd", &["known-bugs", "--only", "i2c-open-fd"]);
    assert_eq!(code, 0, "expectation not met\n{text}");
    let t = titles(&v, "i2c-open-fd");
    assert!(
        t.iter().any(|t| t == "INFO: task hung in i2c_del_adapter"),
        "{t:?}\n{text}"
    );
    assert!(
        t.iter()
            .any(|t| t.starts_with("unplug never completed: i2c0")),
        "{t:?}\n{text}"
    );
}
