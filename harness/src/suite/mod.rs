//! Hot-unplug suites: the YAML format, loading and checking it, schedules
//! from seeds, the engine that runs one scenario, the runner that runs many
//! and reports through events. (`dangle run` itself is [`crate::run`].)

pub mod agent_guest;
pub mod catalog;
pub mod engine;
pub mod events;
pub mod guest;
pub mod load;
pub mod locate;
pub mod outcome;
pub mod reporters;
pub mod runner;
pub mod schedule;
pub mod schema;
pub mod translate;
