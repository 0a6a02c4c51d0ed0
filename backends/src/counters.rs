//! Request counters of a device, reported through the control socket.

use std::collections::BTreeMap;

/// What a device has seen since it started (all connections together).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Counters {
    /// Requests per type (`get_value`, `write`, `read`, `malformed`, ...).
    pub requests: BTreeMap<String, u64>,
    /// Requests answered with an error status (including injected ones).
    pub errors: u64,
    /// Malformed chains (returned with an error status where possible).
    pub malformed: u64,
    /// Fault rules fired, per kind.
    pub faults_fired: BTreeMap<String, u64>,
    /// Event buffers returned `VALID` (GPIO interrupts delivered).
    pub irqs: u64,
    /// Chains currently held by a `hold` fault.
    pub held: u64,
    /// Front-end connections accepted.
    pub connections: u64,
}

impl Counters {
    /// Counts one request of `kind`.
    pub fn request(&mut self, kind: &str) {
        *self.requests.entry(kind.to_owned()).or_default() += 1;
    }

    /// Counts fired fault rules.
    pub fn fired(&mut self, kinds: &[&'static str]) {
        for kind in kinds {
            *self.faults_fired.entry((*kind).to_owned()).or_default() += 1;
        }
    }
}
