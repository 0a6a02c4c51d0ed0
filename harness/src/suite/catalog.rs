//! The shipped suites and how a suite argument resolves: a file, or the
//! name of a suite in `suites/`; `--only` selection with a clear error.

use std::path::{Path, PathBuf};

use super::load::{self, Plan};

/// The directory with the shipped suites: `DANGLE_SUITES_DIR`, else the
/// `suites/` of this checkout.
pub fn suites_dir() -> PathBuf {
    std::env::var_os("DANGLE_SUITES_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../suites"))
}

/// A suite argument: a file, or a shipped suite's name.
pub fn suite_path(arg: &str) -> PathBuf {
    let p = PathBuf::from(arg);
    if p.exists() || arg.contains('/') || arg.ends_with(".yaml") {
        p
    } else {
        suites_dir().join(format!("{arg}.yaml"))
    }
}

/// Why the suites of a command line cannot be run.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// A suite file is unreadable or invalid.
    #[error("suite")]
    Suite(#[from] load::SuiteError),
    /// `--only` names a scenario no suite has.
    #[error("--only {name}: no such scenario (known: {known})")]
    UnknownScenario {
        /// The name given.
        name: String,
        /// The names there are, comma-separated.
        known: String,
    },
}

/// Loads suites and applies `--only`.
pub fn load_plans(suites: &[String], only: &[String]) -> Result<Vec<Plan>, LoadError> {
    let mut plans = Vec::new();
    for s in &suite_names(suites) {
        plans.extend(load::load_file(&suite_path(s))?);
    }
    if !only.is_empty() {
        for o in only {
            if !plans.iter().any(|p| p.name() == o) {
                let known: Vec<&str> = plans.iter().map(Plan::name).collect();
                return Err(LoadError::UnknownScenario {
                    name: o.clone(),
                    known: known.join(", "),
                });
            }
        }
        plans.retain(|p| only.iter().any(|o| o == p.name()));
    }
    Ok(plans)
}

/// The suites asked for; `smoke` when none.
pub fn suite_names(suites: &[String]) -> Vec<String> {
    if suites.is_empty() {
        vec!["smoke".into()]
    } else {
        suites.to_vec()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn load_plans_shipped_smoke_suite_loads() {
        let plans = load_plans(&[], &[]).unwrap();
        assert!(plans.iter().any(|p| p.name() == "lkdtm-use-after-free"));
    }

    #[test]
    fn load_plans_only_unknown_name_is_an_error() {
        let e = load_plans(&["smoke".into()], &["nope".into()])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("no such scenario") && e.contains("devices-work"),
            "{e}"
        );
    }

    #[test]
    fn load_plans_every_shipped_suite_is_valid() {
        for entry in std::fs::read_dir(suites_dir()).unwrap() {
            let p = entry.unwrap().path();
            if p.extension().is_some_and(|e| e == "yaml") {
                load::load_file(&p)
                    .unwrap_or_else(|e| panic!("{}", crate::exit::chain(&e).to_string()));
            }
        }
    }
}
