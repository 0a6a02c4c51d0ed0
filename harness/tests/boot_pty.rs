//! `dangle boot` as a person uses it, through a real pseudo-terminal: the
//! banner, the shell prompt, typed commands, `poweroff` and Ctrl-A X, the
//! terminal settings afterwards, nothing left running, and `dangle ctl`
//! from a second "terminal" acting on the hardware under the shell.
//!
//! VM tests: real QEMU 10 and the default kernel, one VM at a time (the
//! `vm` nextest group). Without QEMU they fail saying how to install it.

mod common;
use common::require_qemu;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use expectrl::{ControlCode, Regex, Session};

/// Boot to the shell prompt under TCG with a KASAN kernel.
const BOOT: Duration = Duration::from_secs(240);
/// One typed command.
const COMMAND: Duration = Duration::from_secs(60);
/// The shell prompt the agent gives busybox's sh.
const PROMPT: &str = "dangle:/# ";

fn dangle() -> &'static str {
    env!("CARGO_BIN_EXE_dangle")
}

fn artifacts(name: &str) -> PathBuf {
    let base = std::env::var_os("DANGLE_TEST_ARTIFACTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("boot-pty"));
    let dir = base.join(name);
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// A private registry of running boots, so `dangle ctl` without --boot
/// finds this test's boot and no other.
fn runtime_dir(name: &str) -> PathBuf {
    let d = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("boot-pty-runtime")
        .join(name);
    let _ = std::fs::remove_dir_all(&d);
    d
}

/// `dangle boot` in a pty, inside a shell that reports its exit code and
/// the terminal settings afterwards, as a person's terminal would show.
fn spawn_boot(dir: &Path, runtime: &Path) -> Session {
    require_qemu();
    // A person's terminal: canonical mode with echo (a fresh pty has echo
    // off), and the settings compared before and after.
    let script = format!(
        "stty sane; before=$(stty -g); '{}' boot --artifacts '{}'; echo \"dangle-exit=$?\"; \
         if [ \"$(stty -g)\" = \"$before\" ]; then echo terminal=same; else echo terminal=changed; fi; \
         stty -a; echo end-of-stty",
        dangle(),
        dir.display()
    );
    let mut cmd = Command::new("sh");
    cmd.args(["-c", &script])
        .env("DANGLE_RUNTIME_DIR", runtime)
        .env_remove("CI");
    let mut s = Session::spawn(cmd).expect("spawn dangle boot in a pty");
    s.set_expect_timeout(Some(BOOT));
    s
}

fn expect(s: &mut Session, what: &str, timeout: Duration) -> String {
    s.set_expect_timeout(Some(timeout));
    match s.expect(what) {
        Ok(c) => String::from_utf8_lossy(c.before()).into_owned(),
        Err(e) => panic!("waiting for {what:?}: {e}"),
    }
}

fn expect_re(s: &mut Session, re: &str, timeout: Duration) -> String {
    s.set_expect_timeout(Some(timeout));
    match s.expect(Regex(re)) {
        Ok(c) => String::from_utf8_lossy(c.matches().next().unwrap_or_default()).into_owned(),
        Err(e) => panic!("waiting for /{re}/: {e}"),
    }
}

/// Checks the exit code and that the terminal is back in canonical mode
/// with echo.
fn expect_clean_exit(s: &mut Session) {
    let code = expect_re(s, r"dangle-exit=\d+", COMMAND);
    assert_eq!(code, "dangle-exit=0");
    let same = expect_re(s, r"terminal=(same|changed)", COMMAND);
    let stty = expect(s, "end-of-stty", COMMAND);
    assert_eq!(
        same, "terminal=same",
        "settings differ from before the boot:\n{stty}"
    );
    let words: Vec<&str> = stty.split_whitespace().collect();
    for (on, off) in [("icanon", "-icanon"), ("echo", "-echo"), ("isig", "-isig")] {
        assert!(
            words.contains(&on) && !words.contains(&off),
            "terminal not restored ({on}):\n{stty}"
        );
    }
}

/// The private socket directory of a boot, from the command lines it
/// recorded.
fn socket_dir(dir: &Path) -> String {
    let cmdlines = std::fs::read_to_string(dir.join("cmdlines.txt")).expect("cmdlines.txt");
    let at = cmdlines.find("--socket ").expect("a backend command line") + "--socket ".len();
    let sock = cmdlines[at..].split_whitespace().next().unwrap_or_default();
    Path::new(sock)
        .parent()
        .expect("socket dir")
        .display()
        .to_string()
}

/// Processes whose command line names `needle`.
fn processes_with(needle: &str) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(raw) = std::fs::read(e.path().join("cmdline")) else {
            continue;
        };
        let cmd = String::from_utf8_lossy(&raw).replace('\0', " ");
        if cmd.contains(needle) {
            out.push(format!("{}: {cmd}", e.file_name().to_string_lossy()));
        }
    }
    out
}

fn assert_nothing_left(dir: &Path) {
    let sockdir = socket_dir(dir);
    let end = Instant::now() + Duration::from_secs(10);
    loop {
        let left = processes_with(&sockdir);
        if left.is_empty() {
            return;
        }
        assert!(
            Instant::now() < end,
            "left running after exit:\n{}",
            left.join("\n")
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// `dangle ctl ARGS` as a second terminal would run it.
fn ctl(runtime: &Path, args: &[&str]) -> (i32, String) {
    let out = Command::new(dangle())
        .arg("ctl")
        .args(args)
        .env("DANGLE_RUNTIME_DIR", runtime)
        .output()
        .expect("run dangle ctl");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

#[test]
fn boot_shell_runs_a_command_and_poweroff_exits_zero_leaving_nothing() {
    let dir = artifacts("poweroff");
    let runtime = runtime_dir("poweroff");
    let mut s = spawn_boot(&dir, &runtime);
    let banner = expect(&mut s, "leave: poweroff (or Ctrl-A X)", BOOT);
    for needle in [
        "/dev/gpiochip",
        "/dev/i2c-",
        "/nvmem",
        "24c02 at 0x50",
        "pca9555 at 0x20",
    ] {
        assert!(
            banner.contains(needle),
            "banner lacks {needle:?}:\n{banner}"
        );
    }
    expect(&mut s, PROMPT, BOOT);
    // The chips are bound at the prompt, without new_device by hand.
    s.send_line("ls /sys/bus/nvmem/devices; echo hello-$((6*7))")
        .expect("type");
    let out = expect(&mut s, "hello-42", COMMAND);
    assert!(out.contains("-0050"), "no at24 nvmem device:\n{out}");
    expect(&mut s, PROMPT, COMMAND);
    s.send_line("poweroff").expect("type");
    expect_clean_exit(&mut s);
    assert_nothing_left(&dir);
    assert!(
        !runtime.join("boots").exists()
            || std::fs::read_dir(runtime.join("boots"))
                .unwrap()
                .next()
                .is_none(),
        "the boot left its registry entry"
    );
}

#[test]
fn boot_ctrl_a_x_leaves_and_restores_the_terminal() {
    let dir = artifacts("ctrl-a-x");
    let runtime = runtime_dir("ctrl-a-x");
    let mut s = spawn_boot(&dir, &runtime);
    expect(&mut s, PROMPT, BOOT);
    s.send(ControlCode::StartOfHeading).expect("Ctrl-A");
    s.send("x").expect("x");
    expect_clean_exit(&mut s);
    assert_nothing_left(&dir);
}

#[test]
fn boot_ctl_drives_a_line_into_gpiomon_and_unplugs_under_the_shell() {
    let dir = artifacts("ctl");
    let runtime = runtime_dir("ctl");
    let mut s = spawn_boot(&dir, &runtime);
    let banner = expect(&mut s, "leave: poweroff", BOOT);
    // The controller's chip, as the banner names it.
    let line = banner
        .lines()
        .find(|l| l.trim_start().starts_with("gpio0 "))
        .unwrap_or_else(|| panic!("no gpio0 in the banner:\n{banner}"));
    let chip = line
        .split_whitespace()
        .find(|w| w.starts_with("/dev/gpiochip"))
        .expect("gpio0's /dev path")
        .trim_start_matches("/dev/")
        .to_owned();
    expect(&mut s, PROMPT, BOOT);

    // A second terminal drives line 3 while gpiomon watches it.
    s.send_line(format!(
        "gpiomon --num-events=2 {chip} 3; echo gpiomon-$((1+1))-done"
    ))
    .expect("type");
    std::thread::sleep(Duration::from_secs(3));
    let (code, out) = ctl(&runtime, &["line", "gpio0", "3", "pulse"]);
    assert_eq!(code, 0, "{out}");
    let seen = expect(&mut s, "gpiomon-2-done", COMMAND);
    assert!(seen.contains("RISING EDGE offset: 3"), "{seen}");
    assert!(seen.contains("FALLING EDGE offset: 3"), "{seen}");

    // Unplug and replug the controller from the host while the shell runs.
    let (code, out) = ctl(&runtime, &["unplug", "gpio0"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("gpio0 unplugged (qmp)"), "{out}");
    let (_, status) = ctl(&runtime, &["--boot", &dir.display().to_string(), "status"]);
    assert!(status.contains("unplugged (qmp)"), "{status}");
    s.send_line("gpiodetect; echo detect-$((1+2))-done")
        .expect("type");
    let listed = expect(&mut s, "detect-3-done", COMMAND);
    assert!(
        !listed.contains("[virtio"),
        "the controller is still there:\n{listed}"
    );
    let (code, out) = ctl(&runtime, &["replug", "gpio0"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("gpio0 replugged (qmp)"), "{out}");
    s.send_line("gpiodetect; echo detect-$((2+2))-done")
        .expect("type");
    let listed = expect(&mut s, "detect-4-done", COMMAND);
    assert!(
        listed.contains("[virtio"),
        "the controller did not come back:\n{listed}"
    );

    // The expander's pins, driven from the host, read back in the guest.
    let expander = banner
        .lines()
        .filter(|l| l.contains("pca9555 at 0x20"))
        .find_map(|l| {
            l.split_whitespace()
                .find(|w| w.starts_with("/dev/gpiochip"))
        })
        .unwrap_or_else(|| panic!("no bound expander in the banner:\n{banner}"))
        .trim_start_matches("/dev/")
        .to_owned();
    for (level, want, n) in [("high", "1", 5), ("low", "0", 6)] {
        let (code, out) = ctl(&runtime, &["pin", "i2c0", "0x20", "4", level]);
        assert_eq!(code, 0, "{out}");
        s.send_line(format!("gpioget {expander} 4; echo pin-$((1+{n}))-done"))
            .expect("type");
        let read = expect(&mut s, &format!("pin-{}-done", 1 + n), COMMAND);
        assert!(
            read.lines().any(|l| l.trim() == want),
            "pin 4 should read {want}:\n{read}"
        );
    }

    // EEPROM contents loaded from the host are what the guest's nvmem
    // reader sees, and a dump gives them back.
    let image = dir.join("eeprom-in.bin");
    std::fs::write(&image, b"dangle-eeprom-42").expect("write image");
    let (code, out) = ctl(
        &runtime,
        &[
            "eeprom",
            "i2c0",
            "0x50",
            "load",
            &image.display().to_string(),
        ],
    );
    assert_eq!(code, 0, "{out}");
    s.send_line("head -c 16 /sys/bus/nvmem/devices/*/nvmem; echo; echo nv-$((3+4))-done")
        .expect("type");
    let read = expect(&mut s, "nv-7-done", COMMAND);
    assert!(read.contains("dangle-eeprom-42"), "{read}");
    let dump = dir.join("eeprom-out.bin");
    let (code, out) = ctl(
        &runtime,
        &[
            "eeprom",
            "i2c0",
            "0x50",
            "dump",
            &dump.display().to_string(),
        ],
    );
    assert_eq!(code, 0, "{out}");
    let bytes = std::fs::read(&dump).expect("dump written");
    assert_eq!(bytes.len(), 256, "a 24c02 holds 256 bytes");
    assert!(bytes.starts_with(b"dangle-eeprom-42"));

    // A fault plan set from the host shows in the status, and clears.
    let (code, out) = ctl(&runtime, &["fault", "i2c0", "delay=200ms"]);
    assert_eq!(code, 0, "{out}");
    let (_, status) = ctl(&runtime, &["status"]);
    assert!(status.contains("faults: delay:us=200000"), "{status}");
    let (code, out) = ctl(&runtime, &["fault", "i2c0", "clear"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("faults cleared"), "{out}");

    // Mistakes name what was expected.
    let (code, out) = ctl(&runtime, &["replug", "gpio0"]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("gpio0 is plugged"), "{out}");
    let (code, out) = ctl(&runtime, &["unplug", "gpio9"]);
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("no device gpio9 in this boot (it has gpio0, i2c0)"),
        "{out}"
    );

    expect(&mut s, PROMPT, COMMAND);
    s.send_line("poweroff").expect("type");
    expect_clean_exit(&mut s);
    assert_nothing_left(&dir);
    let (code, out) = ctl(&runtime, &["status"]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("no running `dangle boot`"), "{out}");
}

/// `dangle boot --exec` with and without `--no-bind`: what the guest
/// shows is what a command run by hand would see.
fn exec(args: &[&str], cmd: &str) -> (i32, String) {
    require_qemu();
    let out = Command::new(dangle())
        .arg("boot")
        .args(args)
        .args(["--exec", cmd])
        .output()
        .expect("run dangle boot --exec");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn boot_exec_finds_the_chips_bound_and_no_bind_leaves_them() {
    let list = "ls /sys/bus/nvmem/devices; gpiodetect; exit 7";
    let dir = artifacts("exec-bind");
    let (code, out) = exec(&["--artifacts", &dir.display().to_string()], list);
    assert_eq!(code, 7, "the command's status is dangle's:\n{out}");
    assert!(out.contains("-00500"), "no at24 nvmem device:\n{out}");
    assert!(
        out.contains("[0-0020]") || out.contains("-0020]"),
        "no expander chip:\n{out}"
    );
    let dir = artifacts("exec-no-bind");
    let (code, out) = exec(
        &["--no-bind", "--artifacts", &dir.display().to_string()],
        list,
    );
    assert_eq!(code, 7, "{out}");
    assert!(!out.contains("-0050"), "--no-bind bound the EEPROM:\n{out}");
    assert!(
        !out.contains("-0020]"),
        "--no-bind bound the expander:\n{out}"
    );
    assert!(out.contains("[virtio"), "the controller is there:\n{out}");
}
