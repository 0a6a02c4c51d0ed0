//! The `dangle` binary on bad input: exit code 2 and a message that points
//! at the place, through the real command line. Nothing here boots a VM or
//! builds a kernel (`dangle run --list` stops after loading the suites).

use std::path::Path;
use std::process::{Command, Output};

fn dangle(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_dangle"))
        .args(args)
        .env_remove("DANGLE_SUITES_DIR")
        .output()
        .expect("run dangle")
}

/// Writes `text` as a suite file in `dir` and runs `dangle run FILE --list`.
fn list(dir: &Path, text: &str) -> (String, Output) {
    let path = dir.join("bad.yaml");
    std::fs::write(&path, text).expect("write suite");
    let path = path.to_str().expect("utf-8 path").to_owned();
    let out = dangle(&["run", &path, "--list"]);
    (path, out)
}

/// `FILE:LINE:COL` of the first `needle` on 1-based `line` of `text`.
fn pos(file: &str, text: &str, line: usize, needle: &str) -> String {
    let l = text.lines().nth(line - 1).expect("line");
    format!("{file}:{line}:{}", l.find(needle).expect("needle") + 1)
}

fn assert_bad_input_at(out: &Output, at: &str, message: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "stderr: {stderr}");
    assert!(
        stderr.contains(&format!("{at}: ")),
        "want {at} in: {stderr}"
    );
    assert!(stderr.contains(message), "want {message:?} in: {stderr}");
    assert!(out.stdout.is_empty(), "nothing listed on bad input");
}

#[test]
fn run_list_unknown_chip_exits_2_at_the_chip() {
    let dir = tempfile::tempdir().expect("tempdir");
    let text = "scenarios:\n  - name: a\n    devices:\n      - { kind: i2c, id: i2c0, chips: [\"foo:0x20\"] }\n    expect: clean\n";
    let (file, out) = list(dir.path(), text);
    assert_bad_input_at(&out, &pos(&file, text, 4, "\"foo"), "unknown chip `foo`");
}

#[test]
fn run_list_gpio_line_past_lines_exits_2_at_the_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let text = "scenarios:\n  - name: a\n    devices: [{ kind: gpio, id: gpio0, lines: 4 }]\n    consumers:\n      - gpio-hold:\n          device: gpio0\n          line: 4\n    expect: clean\n";
    let (file, out) = list(dir.path(), text);
    assert_bad_input_at(
        &out,
        &pos(&file, text, 7, "4"),
        "uses line 4, but `gpio0` has 4 lines",
    );
}

#[test]
fn run_list_i2c_consumer_without_chip_exits_2_at_the_address() {
    let dir = tempfile::tempdir().expect("tempdir");
    let text = "scenarios:\n  - name: a\n    devices: [{ kind: i2c, id: i2c0, chips: [\"pca9555:0x20\"] }]\n    consumers:\n      - i2c-transfer: { device: i2c0, addr: 0x50 }\n    expect: clean\n";
    let (file, out) = list(dir.path(), text);
    assert_bad_input_at(
        &out,
        &pos(&file, text, 5, "0x50"),
        "talks to address 0x50 on `i2c0`, where no chip answers",
    );
}

#[test]
fn run_list_duplicate_device_id_exits_2_at_the_second_id() {
    let dir = tempfile::tempdir().expect("tempdir");
    let text = "scenarios:\n  - name: a\n    devices:\n      - { kind: gpio, id: dev0 }\n      - { kind: gpio, id: dev0 }\n    expect: clean\n";
    let (file, out) = list(dir.path(), text);
    assert_bad_input_at(
        &out,
        &pos(&file, text, 5, "dev0"),
        "device id `dev0` is used twice",
    );
}

#[test]
fn run_list_duplicate_scenario_name_exits_2_at_the_second_name() {
    let dir = tempfile::tempdir().expect("tempdir");
    let text =
        "scenarios:\n  - name: twice\n    expect: clean\n  - name: twice\n    expect: clean\n";
    let (file, out) = list(dir.path(), text);
    assert_bad_input_at(
        &out,
        &pos(&file, text, 4, "twice"),
        "duplicate scenario name",
    );
}

#[test]
fn run_list_unknown_key_exits_2_at_the_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let text = "scenarios:\n  - name: a\n    expect: clean\n    cycels: 3\n";
    let (file, out) = list(dir.path(), text);
    assert_bad_input_at(
        &out,
        &pos(&file, text, 4, "cycels"),
        "unknown field `cycels`",
    );
}

#[test]
fn run_list_good_suite_lists_and_exits_0() {
    let dir = tempfile::tempdir().expect("tempdir");
    let text = "scenarios:\n  - name: fine\n    unplug: { method: unbind, targets: [gpio0] }\n    expect: clean\n";
    let (_, out) = list(dir.path(), text);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("fine") && stdout.contains("unbind"),
        "{stdout}"
    );
}

#[test]
fn parse_unreadable_log_exits_2_with_the_cause() {
    let out = dangle(&["parse", "no/such/console.log"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("no/such/console.log") && stderr.contains("caused by:"),
        "{stderr}"
    );
}

#[test]
fn kernel_config_bad_config_add_exits_2() {
    let out = dangle(&["kernel", "config", "--config-add", "nonsense"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.starts_with("dangle: error: "), "{stderr}");
}

#[test]
fn validate_unreadable_patch_exits_2_before_building_anything() {
    let out = dangle(&["validate", "no/such/fix.patch"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("the change under test") && stderr.contains("no/such/fix.patch"),
        "{stderr}"
    );
}

#[test]
fn validate_unknown_scenario_exits_2_before_building_anything() {
    let dir = tempfile::tempdir().expect("tempdir");
    let patch = dir.path().join("fix.patch");
    std::fs::write(&patch, "--- a/x.c\n+++ b/x.c\n@@ -1 +1 @@\n-a\n+b\n").expect("write");
    let out = dangle(&[
        "validate",
        patch.to_str().expect("utf-8 path"),
        "--only",
        "no-such-scenario",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("no such scenario"), "{stderr}");
}

#[test]
fn validate_help_documents_its_exit_codes() {
    let out = dangle(&["validate", "--help"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0));
    for want in [
        "--runs <N|auto>",
        "--expect-fixed",
        "1  a regression",
        "3  infrastructure",
    ] {
        assert!(stdout.contains(want), "want {want:?} in:\n{stdout}");
    }
}

#[test]
fn run_replay_without_a_record_exits_2_naming_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dangle(&["run", "--replay", dir.path().to_str().expect("utf-8")]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "stderr: {stderr}");
    assert!(stderr.contains("run.json"), "{stderr}");
}

#[test]
fn run_replay_with_a_corrupt_schedule_exits_2_naming_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("run.json"),
        r#"{"seed": 3, "suites": ["smoke"], "scenarios": ["devices-work"]}"#,
    )
    .expect("run.json");
    std::fs::create_dir_all(dir.path().join("devices-work")).expect("dir");
    std::fs::write(dir.path().join("devices-work/schedule.json"), "{ not json").expect("write");
    let out = dangle(&["run", "--replay", dir.path().to_str().expect("utf-8")]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "stderr: {stderr}");
    assert!(stderr.contains("schedule.json"), "{stderr}");
}

#[test]
fn ctl_without_a_running_boot_exits_2_saying_what_was_expected() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = Command::new(env!("CARGO_BIN_EXE_dangle"))
        .args(["ctl", "status"])
        .env("DANGLE_RUNTIME_DIR", dir.path())
        .output()
        .expect("run dangle ctl");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "stderr: {stderr}");
    assert!(stderr.contains("no running `dangle boot`"), "{stderr}");
    let out = dangle(&[
        "ctl",
        "--boot",
        dir.path().to_str().expect("utf-8"),
        "status",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "stderr: {stderr}");
    assert!(stderr.contains("has no boot.json"), "{stderr}");
}

#[test]
fn boot_bad_chip_exits_2_naming_it() {
    let out = dangle(&["boot", "--i2c", "foo:0x20", "--exec", "true"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "stderr: {stderr}");
    assert!(stderr.contains("foo:0x20"), "{stderr}");
}
