//! Hot-unplug suites: the YAML format, loading and checking it, schedules
//! from seeds, the engine that runs scenarios, and `dangle run`.

pub mod agent_guest;
pub mod cli;
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
