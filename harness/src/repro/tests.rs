//! `dangle repro` without QEMU: reading reports, ranking the shipped
//! suites, and the whole command on the simulated platform (`crate::sim`),
//! whose rule decides per scenario and seed what the console shows.

use std::io::Cursor;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;

use super::cli::{self, Config, Platforms};
use super::*;
use crate::exit::{Status, status_of};
use crate::sim::{SimCounters, SimEffect, SimKernel, SimPlatform, SimRule};
use crate::suite::catalog::load_plans;

const AT24_KASAN: &str = "\
[   52.100000][  T412] ==================================================================
[   52.100100][  T412] BUG: KASAN: slab-use-after-free in at24_read+0x3a1/0x400
[   52.100200][  T412] Read of size 8 at addr ffff888104a3c200 by task dangle_nvmem/412
[   52.100300][  T412]
[   52.100400][  T412] CPU: 0 UID: 0 PID: 412 Comm: dangle_nvmem Not tainted 6.12.117 #1
[   52.100500][  T412] Call Trace:
[   52.100600][  T412]  <TASK>
[   52.100700][  T412]  dump_stack_lvl+0x5d/0x80
[   52.100800][  T412]  print_report+0xce/0x630
[   52.100900][  T412]  kasan_report+0xd8/0x110
[   52.101000][  T412]  at24_read+0x3a1/0x400
[   52.101100][  T412]  nvmem_reg_read+0x5a/0x90
[   52.101200][  T412]  __nvmem_device_read+0x8b/0x120
[   52.101300][  T412]  nvmem_device_read+0x44/0x70
[   52.101400][  T412]  dangle_nvmem_worker+0x51/0xa0 [dangle_nvmem]
[   52.101500][  T412]  kthread+0x2d1/0x3a0
[   52.101600][  T412]  ret_from_fork+0x34/0x70
[   52.101700][  T412]  </TASK>
[   52.101800][  T412] ==================================================================
";

const I2C_HUNG: &str = "\
[  245.000000] INFO: task kworker/u8:1:25 blocked for more than 122 seconds.
[  245.000100]       Not tainted 6.12.117 #1
[  245.000200] task:kworker/u8:1    state:D stack:0     pid:25    tgid:25
[  245.000300] Workqueue: kacpi_hotplug acpi_hotplug_work_fn
[  245.000400] Call Trace:
[  245.000500]  <TASK>
[  245.000600]  __schedule+0x6a1/0x1a30
[  245.000700]  schedule+0xd5/0x3b0
[  245.000800]  schedule_timeout+0x1f2/0x250
[  245.000900]  wait_for_completion+0x161/0x2e0
[  245.001000]  i2c_del_adapter+0x3c1/0x5e0
[  245.001100]  virtio_i2c_remove+0x2d/0x60
[  245.001200]  virtio_dev_remove+0xbb/0x250
[  245.001300]  device_release_driver_internal+0x36f/0x530
[  245.001400]  bus_remove_device+0x229/0x3c0
[  245.001500]  device_del+0x39d/0x9c0
[  245.001600]  acpiphp_disable_and_eject_slot+0x1a4/0x2c0
[  245.001700]  acpi_device_hotplug+0x8a0/0xc60
[  245.001800]  process_one_work+0x8c4/0x1a40
[  245.001900]  worker_thread+0x5f1/0xfd0
[  245.002000]  kthread+0x2d1/0x3a0
[  245.002100]  ret_from_fork+0x34/0x70
[  245.002200]  </TASK>
";

const EXT4_KASAN: &str = "\
[   12.000000] ==================================================================
[   12.000100] BUG: KASAN: use-after-free in ext4_xattr_set_entry+0x1f2/0x2a0
[   12.000200] Read of size 4 at addr ffff888012345678 by task touch/300
[   12.000300] Call Trace:
[   12.000400]  <TASK>
[   12.000500]  dump_stack_lvl+0x5d/0x80
[   12.000600]  kasan_report+0xd8/0x110
[   12.000700]  ext4_xattr_set_entry+0x1f2/0x2a0
[   12.000800]  ext4_xattr_ibody_set+0x7a/0x1d0
[   12.000900]  ext4_xattr_set_handle+0x4c1/0xd10
[   12.001000]  __vfs_setxattr+0x10b/0x150
[   12.001100]  do_syscall_64+0x4b/0x110
[   12.001200]  entry_SYSCALL_64_after_hwframe+0x76/0x7e
[   12.001300]  </TASK>
";

fn target(text: &str) -> Target {
    read_report(text.as_bytes(), "report.txt").unwrap()
}

fn shipped() -> Vec<Plan> {
    load_plans(&cli::shipped_suites().unwrap(), &[]).unwrap()
}

#[test]
fn read_report_console_excerpt_gives_title_frame_stack_and_subsystems() {
    let t = target(AT24_KASAN);
    assert_eq!(t.title, "KASAN: slab-use-after-free Read in at24_read");
    assert_eq!(t.frame, "at24_read");
    assert!(t.kind.starts_with("KASAN"), "{}", t.kind);
    assert!(t.functions.contains(&"nvmem_device_read".to_owned()));
    assert!(
        t.subsystems.contains(&Subsystem::Nvmem),
        "{:?}",
        t.subsystems
    );
}

#[test]
fn read_report_syzbot_email_takes_the_subject_as_title() {
    let mail = format!(
        "From: syzbot <syzbot@example.com>\nSubject: [syzbot] KASAN: slab-use-after-free Read in at24_read\n\nHello,\n\nsyzbot found the following issue:\n\n{AT24_KASAN}"
    );
    let t = target(&mail);
    assert_eq!(t.title, "KASAN: slab-use-after-free Read in at24_read");
    assert_eq!(t.frame, "at24_read");
    assert!(t.functions.contains(&"__nvmem_device_read".to_owned()));
}

#[test]
fn read_report_title_line_without_a_log_uses_the_title_alone() {
    let t = target("INFO: task hung in i2c_del_adapter\n");
    assert_eq!(t.title, "INFO: task hung in i2c_del_adapter");
    assert_eq!(t.frame, "i2c_del_adapter");
    assert_eq!(t.subsystems, [Subsystem::I2c]);
}

#[test]
fn read_report_dangle_json_finding_and_result_json_both_read() {
    let finding = serde_json::json!({
        "title": "INFO: task hung in i2c_del_adapter",
        "report": I2C_HUNG,
        "functions": ["i2c_del_adapter"],
    });
    let t = target(&finding.to_string());
    assert_eq!(t.title, "INFO: task hung in i2c_del_adapter");
    assert!(t.functions.contains(&"virtio_i2c_remove".to_owned()));
    let result = serde_json::json!({
        "scenario": "i2c-open-fd",
        "findings": [{ "title": "INFO: task hung in i2c_del_adapter", "count": 1, "first": finding }],
    });
    assert_eq!(target(&result.to_string()).title, t.title);
}

#[test]
fn read_report_garbage_is_bad_input_with_a_reason() {
    let e = read_report(b"hello\nthis is not a crash\n", "notes.txt").unwrap_err();
    assert_eq!(status_of(&e), Status::BadInput);
    let msg = e.to_string();
    assert!(
        msg.contains("no crash report in notes.txt") && msg.contains("no line matched"),
        "{msg}"
    );
    let e = read_report(b"{\"nope\": 1}", "x.json").unwrap_err();
    assert_eq!(status_of(&e), Status::BadInput);
    let e = read_report(b"{ not json", "x.json").unwrap_err();
    assert_eq!(status_of(&e), Status::BadInput);
}

#[test]
fn rank_at24_kasan_puts_nvmem_kernel_consumer_first() {
    let r = rank::rank(&target(AT24_KASAN), &shipped());
    assert_eq!(r[0].scenario, "nvmem-kernel-consumer", "{r:#?}");
    assert!(r[0].reasons[0].contains("expectation regex"), "{r:#?}");
    assert!(r[0].score >= rank::STRONG);
}

#[test]
fn rank_i2c_hang_puts_i2c_open_fd_first() {
    for t in [
        target(I2C_HUNG),
        target("INFO: task hung in i2c_del_adapter"),
    ] {
        let r = rank::rank(&t, &shipped());
        assert_eq!(r[0].scenario, "i2c-open-fd", "{r:#?}");
        assert!(
            r[0].reasons.iter().any(|x| x
                == "stack names i2c_del_adapter, the scenario expects hangs-in i2c_del_adapter"),
            "{r:#?}"
        );
        assert!(
            r[0].reasons
                .iter()
                .any(|x| x == "subsystem I2C matches device i2c0"),
            "{r:#?}"
        );
    }
}

#[test]
fn rank_ext4_report_has_no_candidate() {
    let t = target(EXT4_KASAN);
    assert!(t.subsystems.is_empty(), "{:?}", t.subsystems);
    assert_eq!(rank::rank(&t, &shipped()), []);
}

/// Two I2C scenarios with an EEPROM: one can reproduce `WARNING in
/// at24_read`, the other never does.
const SUITE: &str = "name: sim
defaults:
  settle: 0s
scenarios:
  - name: i2c-quiet
    devices:
      - { kind: i2c, id: i2c0, chips: [\"at24:0x50:24c02\"] }
    unplug: { method: qmp, delay: 0ms }
    expect: clean
  - name: at24-race
    description: at24 reads racing an unplug
    devices:
      - { kind: i2c, id: i2c0, chips: [\"at24:0x50:24c02\"] }
    unplug: { method: qmp, delay: 0ms }
    expect: { reproduces: \"^WARNING in at24_read$\" }
";

struct Sim {
    rule: Arc<SimRule>,
    counters: Arc<SimCounters>,
}

impl Platforms for Sim {
    fn platform<'k>(&self, sel: &'k crate::prepare::KernelSelect) -> Box<dyn Platform + 'k> {
        Box::new(SimPlatform::new(sel, &self.rule, &self.counters))
    }
}

struct Ran {
    status: Status,
    repro: Option<Repro>,
    out: String,
    err: String,
    dir: tempfile::TempDir,
    counters: Arc<SimCounters>,
}

fn run_sim(
    report: &str,
    args: &[&str],
    rule: impl Fn(&SimKernel, &str, u64) -> Vec<SimEffect> + Send + Sync + 'static,
) -> Ran {
    let dir = tempfile::tempdir().unwrap();
    let suite = dir.path().join("sim.yaml");
    std::fs::write(&suite, SUITE).unwrap();
    let artifacts = dir.path().join("artifacts");
    let (suite, artifacts) = (suite.to_str().unwrap(), artifacts.to_str().unwrap());
    let mut argv = vec![
        "dangle",
        "repro",
        "-",
        "--suite",
        suite,
        "--artifacts",
        artifacts,
    ];
    argv.extend(args);
    let crate::cli::Command::Repro(a) = crate::cli::Cli::try_parse_from(argv).unwrap().command
    else {
        panic!("not repro")
    };
    let mut c = Config::try_from(a).unwrap();
    c.options.timing = Timing {
        boot: Duration::from_secs(1),
        reprobe: Duration::from_millis(400),
    };
    let counters: Arc<SimCounters> = Arc::default();
    let sim = Sim {
        rule: Arc::new(rule),
        counters: Arc::clone(&counters),
    };
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let (status, repro) = cli::execute(
        &c,
        &sim,
        &mut Cursor::new(report.as_bytes().to_vec()),
        &mut out,
        &mut err,
    );
    Ran {
        status,
        repro,
        out: String::from_utf8(out).unwrap(),
        err: String::from_utf8(err).unwrap(),
        dir,
        counters,
    }
}

/// `WARNING in at24_read` in scenario at24-race from seed 12 on.
fn from_seed_12(_: &SimKernel, scenario: &str, seed: u64) -> Vec<SimEffect> {
    if scenario == "at24-race" && seed >= 12 {
        vec![SimEffect::Warning("at24_read".into())]
    } else {
        Vec::new()
    }
}

#[test]
fn repro_title_from_a_later_seed_stops_at_the_first_reproduction_and_bundles() {
    let r = run_sim(
        "WARNING in at24_read\n",
        &["--seed", "10", "--candidates", "2"],
        from_seed_12,
    );
    assert_eq!(r.status, Status::Ok, "{}\n{}", r.out, r.err);
    let repro = r.repro.unwrap();
    assert_eq!(repro.ranking[0].scenario, "at24-race", "{}", r.out);
    // Round robin: at24-race 10, i2c-quiet 10, at24-race 11, i2c-quiet 11,
    // at24-race 12: reproduced, nothing after.
    let seen: Vec<(&str, u64)> = repro
        .attempts
        .iter()
        .map(|a| (a.scenario.as_str(), a.seed))
        .collect();
    assert_eq!(
        seen,
        [
            ("at24-race", 10),
            ("i2c-quiet", 10),
            ("at24-race", 11),
            ("i2c-quiet", 11),
            ("at24-race", 12)
        ]
    );
    let rep = repro.reproduced.unwrap();
    assert_eq!(rep.how, Match::SameTitle);
    assert!(r.out.contains("reproduced: same title"), "{}", r.out);
    assert!(r.out.contains("--only at24-race --replay"), "{}", r.out);
    assert_eq!(
        r.counters.prepares("base"),
        1,
        "one kernel for every attempt"
    );
    let bundle = r.dir.path().join("artifacts/bundle");
    let plans = crate::suite::load::load_file(&bundle.join("scenario.yaml")).unwrap();
    assert_eq!(plans.len(), 1);
    assert_eq!(plans[0].name(), "at24-race");
    let replay = runner::Replay::read(&bundle).unwrap();
    assert_eq!(replay.seed, 12);
    assert!(replay.schedules.contains_key("at24-race"));
    for f in ["schedule.json", "kernel.json", "console.txt", "COMMAND"] {
        assert!(bundle.join(f).exists(), "{f}");
    }
    let console = std::fs::read_to_string(bundle.join("console.txt")).unwrap();
    assert!(console.contains("at24_read"), "{console}");
    let command = std::fs::read_to_string(bundle.join("COMMAND")).unwrap();
    assert!(command.starts_with("dangle run ") && command.contains("--replay"));
}

#[test]
fn repro_same_guilty_frame_under_another_title_counts_and_says_so() {
    let r = run_sim(
        "KASAN: slab-use-after-free Read in at24_read\n",
        &["--seed", "12"],
        from_seed_12,
    );
    assert_eq!(r.status, Status::Ok, "{}\n{}", r.out, r.err);
    assert!(
        r.out.contains(
            "reproduced: same guilty frame at24_read, title differs: WARNING in at24_read"
        ),
        "{}",
        r.out
    );
}

#[test]
fn repro_budget_spent_without_the_title_exits_1() {
    let r = run_sim(
        "WARNING in at24_read\n",
        &["--seed", "1", "--budget", "1ms"],
        from_seed_12,
    );
    assert_eq!(r.status, Status::Findings, "{}\n{}", r.out, r.err);
    let repro = r.repro.unwrap();
    assert!(repro.reproduced.is_none());
    assert!(r.err.contains("budget spent"), "{}", r.err);
    assert!(r.out.contains("not reproduced"), "{}", r.out);
}

#[test]
fn repro_uncovered_subsystem_exits_1_without_preparing_a_kernel() {
    let r = run_sim(EXT4_KASAN, &[], from_seed_12);
    assert_eq!(r.status, Status::Findings, "{}\n{}", r.out, r.err);
    assert!(r.out.contains("no scenario of"), "{}", r.out);
    assert_eq!(r.counters.prepares("base"), 0);
    assert!(!r.dir.path().join("artifacts").exists());
}

#[test]
fn repro_garbage_report_exits_2() {
    let r = run_sim("nothing to see\n", &[], from_seed_12);
    assert_eq!(r.status, Status::BadInput);
    assert!(r.err.contains("no crash report in -"), "{}", r.err);
}

#[test]
fn bundle_every_shipped_scenario_reloads_with_the_real_loader() {
    let dir = tempfile::tempdir().unwrap();
    for plan in shipped() {
        let d = dir.path().join(plan.name());
        std::fs::create_dir_all(&d).unwrap();
        let text = bundle::scenario_yaml(&plan, &d).unwrap();
        let again = crate::suite::load::load_str(&text, &d.join("scenario.yaml"))
            .unwrap_or_else(|e| panic!("{}: {}", plan.name(), crate::exit::chain(&e)));
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].scenario, plan.scenario, "{}", plan.name());
        assert_eq!(again[0].devices, plan.devices);
        assert_eq!(again[0].cycles, plan.cycles);
    }
}
