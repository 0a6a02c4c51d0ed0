//! dangle's harness library: kernel builder, guest image, VM fixture, QMP,
//! unplug engine, console parsing into crash reports, suites and reporters.
//!
//! The `dangle` binary is a thin front end over this crate (see [`cli`]).

pub mod agent;
pub mod bench;
pub mod bisect;
pub mod boot;
pub mod cli;
pub mod exit;
pub mod image;
pub mod kernel;
pub mod logging;
pub mod paths;
pub mod prepare;
pub mod report;
pub mod repro;
pub mod run;
pub mod suite;
pub mod unplug;
pub mod validate;
pub mod vm;

#[cfg(test)]
pub(crate) mod sim;
