//! vhost-user backends that emulate the hardware dangle pulls out from under
//! the guest kernel: a virtio-gpio controller and a virtio-i2c adapter with
//! AT24 EEPROMs and PCA953x expanders, each with a fault plan and a control
//! socket.
//!
//! One process serves one device: `dangle-backend gpio ...` or
//! `dangle-backend i2c ...` (the harness spawns the same thing as
//! `dangle backend ...`). The entry point is [`cli::run`]; the lifecycle
//! (socket safety, reconnects, SIGTERM) is described in [`daemon`]; the
//! device core both backends share (request pipeline, held chains,
//! connections) in [`device`]; the fault-spec syntax in [`fault`].
//!
//! # Control socket
//!
//! With `--control PATH` the backend listens on a second unix socket
//! (mode 0600, same directory rules as the vhost-user socket). A client
//! sends one JSON object a line; the backend answers each with one JSON
//! line `{"ok": true, ...}` or `{"ok": false, "error": "..."}`. A malformed
//! line gets an error reply and the connection stays usable. Several
//! clients may be connected at once. Addresses are 7-bit, as JSON numbers.
//!
//! | request | device | reply fields |
//! |---|---|---|
//! | `{"cmd":"ping"}` | all | `device`: `"gpio"` or `"i2c"` |
//! | `{"cmd":"counters"}` | all | `counters` (`requests` per type, `errors`, `malformed`, `faults_fired` per kind, `irqs`, `held`, `connections`), `faults` |
//! | `{"cmd":"set_faults","faults":["delay:ms=5","err:nth=3"]}` | all | `faults`; replaces the whole plan (and restarts storms) |
//! | `{"cmd":"clear_faults"}` | all | `faults: []`; also stops storms |
//! | `{"cmd":"release_held"}` | all | `released`: held chains returned with ERR |
//! | `{"cmd":"drive_line","line":3,"level":true}` | gpio | none; edges/levels reach the guest as interrupts |
//! | `{"cmd":"read_lines"}` or `{"cmd":"read_lines","line":3}` | gpio | `lines`: `[{line,name,direction,input,output,value,irq,latched,unmasked}]` |
//! | `{"cmd":"drive_pins","addr":32,"mask":3,"levels":1}` | i2c | none (PCA953x input pins) |
//! | `{"cmd":"read_pins","addr":32}` | i2c | `pins`: `{levels,inputs,outputs}` |
//! | `{"cmd":"dump_eeprom","addr":80}` | i2c | `hex`: the whole memory, lowercase hex |
//! | `{"cmd":"load_eeprom","addr":80,"hex":"00ff..."}` | i2c | none; loads from offset 0 (written through to a backing file) |
//!
//! [`control::Client`] wraps these in typed methods.
//!
//! # Guest input
//!
//! Every descriptor chain is parsed into a typed request before anything
//! runs. A chain that does not parse (wrong descriptor count or direction,
//! short buffers, unknown type, reserved bits) gets an error status in its
//! status byte when it has a writable byte, and always goes back to the
//! used ring: the Linux drivers wait for replies without a timeout.

pub mod cli;
pub mod control;
pub mod counters;
pub mod daemon;
pub mod device;
pub mod fault;
pub mod gpio;
pub mod i2c;
pub mod logging;
pub mod virtq;
