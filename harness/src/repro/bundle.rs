//! The reproducer bundle: a directory anyone with dangle can rerun.
//!
//! | file | what |
//! |---|---|
//! | `scenario.yaml` | the suite file with this one scenario (its defaults kept, its patches copied under `patches/`) |
//! | `run.json`, `<scenario>/schedule.json` | what `--replay` reads: the seed and the realised schedule |
//! | `schedule.json` | the same schedule, at the top for people |
//! | `kernel.json` | the kernel identity (version, source, patches, config hash) |
//! | `kernel.config` | the kernel's `.config`, when dangle built the kernel |
//! | `console.txt` | the console excerpt of the matching finding |
//! | `COMMAND` | `dangle run bundle/scenario.yaml --replay bundle` |

use std::path::{Path, PathBuf};

use crate::suite::engine;
use crate::suite::load::Plan;
use crate::suite::schema::SuiteFile;

use super::Reproduction;

/// Why a bundle cannot be written.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    /// A file cannot be read or written.
    #[error("cannot write the bundle file {path}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The suite file no longer parses.
    #[error("cannot re-read the suite file {path}")]
    Suite {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: serde_yaml_ng::Error,
    },
    /// The scenario is gone from its suite file.
    #[error("{path} no longer has scenario {scenario}")]
    Missing {
        /// The file.
        path: PathBuf,
        /// The scenario.
        scenario: String,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> BundleError + '_ {
    move |source| BundleError::Io {
        path: path.to_owned(),
        source,
    }
}

fn put(path: &Path, bytes: &[u8]) -> Result<(), BundleError> {
    std::fs::write(path, bytes).map_err(io(path))
}

/// The suite text with only `plan`'s scenario, patches pointing into
/// `patches/` (copied there from beside the suite file).
pub fn scenario_yaml(plan: &Plan, dir: &Path) -> Result<String, BundleError> {
    let text = std::fs::read_to_string(&plan.file).map_err(io(&plan.file))?;
    let suite_err = |source| BundleError::Suite {
        path: plan.file.clone(),
        source,
    };
    let de = serde_yaml_ng::Deserializer::from_str(&text);
    let mut file: SuiteFile =
        serde_yaml_ng::with::singleton_map_recursive::deserialize(de).map_err(suite_err)?;
    file.name = Some(plan.suite.clone());
    file.scenarios.retain(|s| s.name == plan.name());
    let Some(sc) = file.scenarios.first_mut() else {
        return Err(BundleError::Missing {
            path: plan.file.clone(),
            scenario: plan.name().to_owned(),
        });
    };
    if !plan.patches.is_empty() {
        let pdir = dir.join("patches");
        std::fs::create_dir_all(&pdir).map_err(io(&pdir))?;
        let mut names = Vec::new();
        for (i, p) in plan.patches.iter().enumerate() {
            let name = format!(
                "{i:02}-{}",
                p.file_name()
                    .map_or("patch".into(), |n| n.to_string_lossy())
            );
            let to = pdir.join(&name);
            std::fs::copy(p, &to).map_err(io(p))?;
            names.push(format!("patches/{name}"));
        }
        sc.kernel.patches = names;
    }
    let mut out = Vec::new();
    let mut ser = serde_yaml_ng::Serializer::new(&mut out);
    serde_yaml_ng::with::singleton_map_recursive::serialize(&file, &mut ser).map_err(suite_err)?;
    Ok(format!(
        "# A dangle repro bundle: the scenario that reproduced, from suite {}.\n{}",
        plan.suite,
        String::from_utf8_lossy(&out)
    ))
}

/// The command that replays a bundle at `dir` (as the user named it).
pub fn command(dir: &Path) -> String {
    format!(
        "dangle run {} --replay {}",
        dir.join("scenario.yaml").display(),
        dir.display()
    )
}

/// Writes the bundle of `r` (a run of `plan`) into `dir`.
pub fn write(dir: &Path, plan: &Plan, r: &Reproduction) -> Result<(), BundleError> {
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    put(
        &dir.join("scenario.yaml"),
        scenario_yaml(plan, dir)?.as_bytes(),
    )?;
    let record = serde_json::json!({
        "seed": r.attempt.seed,
        "suites": ["scenario.yaml"],
        "scenarios": [plan.name()],
    });
    put(
        &dir.join("run.json"),
        serde_json::to_string_pretty(&record)
            .unwrap_or_default()
            .as_bytes(),
    )?;
    if let Some(s) = &r.schedule {
        let bytes = std::fs::read(s).map_err(io(s))?;
        let sdir = engine::scenario_dir(dir, plan.name());
        std::fs::create_dir_all(&sdir).map_err(io(&sdir))?;
        put(&sdir.join("schedule.json"), &bytes)?;
        put(&dir.join("schedule.json"), &bytes)?;
    }
    put(
        &dir.join("kernel.json"),
        serde_json::to_string_pretty(&r.kernel)
            .unwrap_or_default()
            .as_bytes(),
    )?;
    if let Some(c) = &r.config {
        let bytes = std::fs::read(c).map_err(io(c))?;
        put(&dir.join("kernel.config"), &bytes)?;
    }
    put(&dir.join("console.txt"), r.finding.report.as_bytes())?;
    put(
        &dir.join("COMMAND"),
        format!("{}\n", command(dir)).as_bytes(),
    )?;
    Ok(())
}
