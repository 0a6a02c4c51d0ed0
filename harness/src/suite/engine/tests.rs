//! The engine against the simulated machine and guest (`crate::sim`): the
//! cycle loop, findings the kernel cannot print, and replay, with no QEMU.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::*;
use crate::sim::{SimLauncher, SimWorld};
use crate::suite::events::Event;
use crate::suite::load;
use crate::suite::outcome::FindingSource;
use crate::suite::schedule::{Cycle, Schedule};

#[derive(Default)]
struct Recorder(Vec<Event>);

impl Reporter for Recorder {
    fn event(&mut self, e: &Event) {
        self.0.push(e.clone());
    }
}

/// One scenario with two GPIO controllers and a blocking edge reader on
/// gpio0; `extra` is appended to the scenario.
fn plan(method: &str, extra: &str) -> Plan {
    let yaml = format!(
        "name: sim\nscenarios:\n  - name: s\n    devices:\n      - {{ kind: gpio, id: gpio0, lines: 8 }}\n      - {{ kind: gpio, id: gpio1, lines: 8 }}\n    consumers:\n      - gpio-edge-blocking: {{ device: gpio0, line: 1 }}\n    unplug: {{ method: {method}, delay: 0ms }}\n    settle: 0s\n    expect: clean\n{extra}"
    );
    load::load_str(&yaml, Path::new("sim.yaml"))
        .unwrap_or_else(|e| panic!("{}", crate::exit::chain(&e).to_string()))
        .remove(0)
}

struct Outcome_ {
    result: ScenarioResult,
    events: Vec<Event>,
    world: Arc<Mutex<SimWorld>>,
    _dir: tempfile::TempDir,
}

fn run(plan: &Plan, cycles: u32, set_up: impl FnOnce(&mut SimWorld)) -> Outcome_ {
    run_with(plan, cycles, None, set_up)
}

fn run_with(
    plan: &Plan,
    cycles: u32,
    replay: Option<Schedule>,
    set_up: impl FnOnce(&mut SimWorld),
) -> Outcome_ {
    let world = SimWorld::new(plan.devices.clone());
    set_up(&mut world.lock().unwrap());
    let launcher = SimLauncher::new(&world);
    let dir = tempfile::tempdir().unwrap();
    let lookup = |_: &str| replay.clone();
    let ctx = RunContext {
        launcher: &launcher,
        symbolizer: None,
        seed: 7,
        cycles: Some(cycles),
        duration: None,
        artifacts: dir.path().to_owned(),
        replay: replay.is_some().then_some(&lookup as &ReplayLookup),
        timing: Timing {
            boot: Duration::from_secs(1),
            reprobe: Duration::from_millis(400),
        },
    };
    let mut rec = Recorder::default();
    let result = run_scenario(plan, &ctx, &mut rec);
    Outcome_ {
        result,
        events: rec.0,
        world,
        _dir: dir,
    }
}

fn titles(r: &ScenarioResult) -> Vec<String> {
    r.findings.iter().map(|g| g.title.clone()).collect()
}

#[test]
fn engine_qmp_cycles_unplug_and_replug_each_time_and_meet_clean() {
    let o = run(&plan("qmp", ""), 3, |_| {});
    assert_eq!(o.result.outcome, Outcome::Met, "{:?}", titles(&o.result));
    assert_eq!(o.result.cycles, 3);
    assert_eq!(o.result.cycle_secs.len(), 3);
    let w = o.world.lock().unwrap();
    assert_eq!(w.logged("device_del").len(), 3);
    assert_eq!(w.logged("device_add").len(), 3);
    assert!(w.powered_off, "the guest is powered off at the end");
    let cycles = o
        .events
        .iter()
        .filter(|e| matches!(e, Event::Cycle { .. }))
        .count();
    assert_eq!(cycles, 3);
    assert!(matches!(
        o.events.last(),
        Some(Event::ScenarioFinished { .. })
    ));
}

#[test]
fn engine_unplug_timeout_becomes_unplug_never_completed_and_stops_cycling() {
    let o = run(&plan("qmp", ""), 3, |w| {
        w.stuck_unplug.insert("gpio1".into());
        w.stuck_unplug.insert("gpio0".into());
    });
    let t = titles(&o.result);
    assert_eq!(o.result.cycles, 1, "{t:?}");
    assert_eq!(t.len(), 1, "{t:?}");
    assert!(t[0].starts_with("unplug never completed: gpio"), "{t:?}");
    assert!(t[0].ends_with(" (qmp)"), "{t:?}");
    assert_eq!(
        o.result.findings[0].first.source,
        FindingSource::UnplugTimeout
    );
    assert!(matches!(o.result.outcome, Outcome::NotMet { .. }));
}

#[test]
fn engine_device_that_never_comes_back_is_a_finding() {
    let o = run(&plan("unbind", ""), 2, |w| {
        w.never_returns.insert("gpio0".into());
        w.never_returns.insert("gpio1".into());
    });
    let t = titles(&o.result);
    assert_eq!(t.len(), 1, "{t:?}");
    assert!(t[0].starts_with("device never came back: gpio"), "{t:?}");
    assert!(t[0].ends_with(" (unbind)"), "{t:?}");
    assert_eq!(o.result.cycles, 1);
}

#[test]
fn engine_stuck_consumer_is_a_finding_and_an_event() {
    let o = run(&plan("qmp", ""), 1, |w| w.stuck_consumers = true);
    let t = titles(&o.result);
    assert!(
        t.iter()
            .any(|t| t == "consumer stuck: gpio-edge-blocking in read"),
        "{t:?}"
    );
    assert!(
        o.events
            .iter()
            .any(|e| matches!(e, Event::ConsumerStuck { syscall, .. } if syscall == "read"))
    );
}

#[test]
fn engine_replay_follows_the_recorded_targets_in_order() {
    let recorded = schedule(&["gpio1", "gpio1", "gpio0"]);
    let o = run_with(&plan("qmp", ""), 3, Some(recorded), |_| {});
    let w = o.world.lock().unwrap();
    assert_eq!(
        w.logged("device_del"),
        ["device_del gpio1", "device_del gpio1", "device_del gpio0"]
    );
    let written: Schedule =
        serde_json::from_slice(&fs::read(o.result.artifacts.join("schedule.json")).unwrap())
            .unwrap();
    let targets: Vec<&str> = written.cycles.iter().map(|c| c.target.as_str()).collect();
    assert_eq!(targets, ["gpio1", "gpio1", "gpio0"]);
}

#[test]
fn engine_backend_kill_is_not_reported_as_a_crash() {
    let o = run(&plan("backend-kill", ""), 1, |_| {});
    assert_eq!(o.result.outcome, Outcome::Met, "{:?}", titles(&o.result));
    let w = o.world.lock().unwrap();
    assert_eq!(w.logged("kill").len(), 1);
    assert_eq!(w.logged("restart").len(), 1);
}

fn schedule(targets: &[&str]) -> Schedule {
    Schedule {
        seed: 1,
        scenario: "s".into(),
        scenario_seed: 1,
        cycles: targets
            .iter()
            .enumerate()
            .map(|(i, t)| Cycle {
                index: i as u32,
                target: (*t).into(),
                delay_ms: 0,
            })
            .collect(),
    }
}

#[test]
fn engine_replug_restarts_only_the_consumers_of_the_target() {
    let starts = |targets: &[&str]| {
        let o = run_with(&plan("qmp", ""), 1, Some(schedule(targets)), |_| {});
        o.world.lock().unwrap().logged("start").len()
    };
    // The reader uses gpio0: pulling gpio1 does not restart it.
    assert_eq!(starts(&["gpio1"]), 1);
    assert_eq!(starts(&["gpio0"]), 2);
}
