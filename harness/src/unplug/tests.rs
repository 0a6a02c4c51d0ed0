//! Each method against the simulated machine and guest.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::*;
use crate::sim::{SimGuest, SimMachine, SimWorld};
use crate::suite::guest::{self, Guest};
use crate::suite::translate::GuestMap;
use crate::vm::devices::DeviceSpec;

/// A rig over the simulated world; pauses are recorded, not slept.
pub(crate) struct SimRig {
    pub world: Arc<Mutex<SimWorld>>,
    pub machine: SimMachine,
    pub guest: SimGuest,
    pub map: GuestMap,
    pub paused: Vec<Duration>,
    pub killed: Vec<(String, bool)>,
}

impl SimRig {
    pub fn new(devices: Vec<DeviceSpec>) -> Self {
        let world = SimWorld::new(devices.clone());
        let mut guest = SimGuest::new(&world);
        let map = guest::resolve(&mut guest, &devices, Duration::from_secs(1)).unwrap();
        Self {
            machine: SimMachine::new(&world),
            guest,
            world,
            map,
            paused: Vec::new(),
            killed: Vec::new(),
        }
    }

    fn log(&self) -> Vec<String> {
        self.world.lock().unwrap().log.clone()
    }

    fn present(&self, id: &str) -> bool {
        self.world.lock().unwrap().present.contains(id)
    }
}

impl Rig for SimRig {
    fn machine(&mut self) -> &mut dyn Machine {
        &mut self.machine
    }

    fn guest(&mut self) -> &mut dyn Guest {
        &mut self.guest
    }

    fn guest_name(&self, id: &str) -> Option<GuestName> {
        self.map.get(id).cloned()
    }

    fn pause(&mut self, d: Duration) -> Result<(), UnplugError> {
        self.paused.push(d);
        Ok(())
    }

    fn backend_killed(&mut self, id: &str, killed: bool) {
        self.killed.push((id.to_owned(), killed));
    }
}

const P: Params = Params {
    timeout: Duration::from_secs(3),
    dead_time: Duration::from_secs(1),
};

fn two_devices() -> Vec<DeviceSpec> {
    vec![
        DeviceSpec::gpio("gpio0", 8),
        DeviceSpec::i2c("i2c0", &["at24:0x50:24c02"]),
    ]
}

#[test]
fn qmp_unplug_then_replug_removes_and_restores_the_device() {
    let mut rig = SimRig::new(two_devices());
    let m = method(Method::Qmp);
    assert_eq!(m.unplug(&mut rig, "i2c0", P).unwrap(), Completion::Done);
    assert!(!rig.present("i2c0"));
    assert_eq!(m.replug(&mut rig, "i2c0", P).unwrap(), Completion::Done);
    assert!(rig.present("i2c0"));
    assert_eq!(rig.log(), ["device_del i2c0", "device_add i2c0"]);
}

#[test]
fn qmp_unplug_without_device_deleted_is_never_completed() {
    let mut rig = SimRig::new(two_devices());
    rig.world.lock().unwrap().stuck_unplug.insert("i2c0".into());
    match method(Method::Qmp).unplug(&mut rig, "i2c0", P).unwrap() {
        Completion::Never(s) => {
            assert_eq!(s.title, "unplug never completed: i2c0 (qmp)");
            assert!(s.detail.contains("DEVICE_DELETED"), "{}", s.detail);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn unbind_writes_the_virtio_name_to_the_driver_files() {
    let mut rig = SimRig::new(two_devices());
    let m = method(Method::Unbind);
    m.unplug(&mut rig, "gpio0", P).unwrap();
    assert!(!rig.present("gpio0"));
    m.replug(&mut rig, "gpio0", P).unwrap();
    assert!(rig.present("gpio0"));
    assert_eq!(
        rig.log(),
        [
            "write /sys/bus/virtio/drivers/gpio_virtio/unbind virtio0",
            "write /sys/bus/virtio/drivers/gpio_virtio/bind virtio0"
        ]
    );
}

#[test]
fn unbind_write_that_never_returns_is_never_completed() {
    let mut rig = SimRig::new(two_devices());
    rig.world
        .lock()
        .unwrap()
        .hanging_writes
        .insert("/sys/bus/virtio/drivers/i2c_virtio/unbind".into());
    match method(Method::Unbind).unplug(&mut rig, "i2c0", P).unwrap() {
        Completion::Never(s) => assert_eq!(s.title, "unplug never completed: i2c0 (unbind)"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn pci_remove_removes_the_endpoint_and_rescans() {
    let mut rig = SimRig::new(two_devices());
    let m = method(Method::PciRemove);
    m.unplug(&mut rig, "i2c0", P).unwrap();
    assert!(!rig.present("i2c0"));
    m.replug(&mut rig, "i2c0", P).unwrap();
    assert!(rig.present("i2c0"));
    assert_eq!(
        rig.log(),
        [
            "write /sys/bus/pci/devices/0000:02:00.0/remove 1",
            "write /sys/bus/pci/rescan 1"
        ]
    );
}

#[test]
fn pci_remove_of_a_device_the_guest_lacks_is_an_error_not_a_finding() {
    let mut rig = SimRig::new(two_devices());
    rig.map.remove("gpio0");
    let e = method(Method::PciRemove)
        .unplug(&mut rig, "gpio0", P)
        .unwrap_err();
    assert!(matches!(e, UnplugError::NotVisible { .. }), "{e}");
}

#[test]
fn backend_kill_kills_waits_restarts_then_replaces_the_device() {
    let mut rig = SimRig::new(two_devices());
    let m = method(Method::BackendKill);
    m.unplug(&mut rig, "gpio0", P).unwrap();
    m.replug(&mut rig, "gpio0", P).unwrap();
    assert_eq!(
        rig.log(),
        [
            "kill gpio0",
            "restart gpio0",
            "device_del gpio0",
            "device_add gpio0"
        ]
    );
    assert_eq!(rig.paused, [P.dead_time]);
    assert_eq!(
        rig.killed,
        [("gpio0".to_owned(), true), ("gpio0".to_owned(), false)]
    );
}

#[test]
fn backend_stall_holds_for_the_timeout_and_keeps_the_device() {
    let mut rig = SimRig::new(two_devices());
    let m = method(Method::BackendStall);
    assert!(!m.removes_device());
    m.unplug(&mut rig, "i2c0", P).unwrap();
    assert!(rig.present("i2c0"));
    assert_eq!(rig.paused, [P.timeout]);
    assert_eq!(
        rig.log(),
        [
            r#"control i2c0 {"cmd":"set_faults","faults":["hold"]}"#,
            r#"control i2c0 {"cmd":"clear_faults"}"#,
            r#"control i2c0 {"cmd":"release_held"}"#
        ]
    );
}
