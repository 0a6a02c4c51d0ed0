//! The base cache: results of scenario runs on a base kernel, kept on disk
//! so that validating a second candidate against the same base runs only
//! the candidate.
//!
//! # Layout
//! ```text
//! <root>/<kernel identity key>/<scenario>-<fingerprint>/<seed>.json
//! ```
//! The root is `validate/` under [`crate::paths::cache_dir`] for the
//! command line. An entry holds the full [`KernelIdentity`], the scenario
//! fingerprint and the seed next to the result, and is used only when all
//! three equal the current ones: a key collision, an entry copied by hand
//! or written by another dangle can never pass for this kernel. The
//! fingerprint hashes the scenario as the engine runs it (every default
//! resolved, the suite file's path left out) and dangle's version, so an
//! edited scenario or a new engine runs afresh. Runs that failed for
//! infrastructure reasons are never stored.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::SideRun;
use crate::kernel::KernelIdentity;
use crate::suite::load::Plan;

/// A cache entry could not be written.
#[derive(Debug, thiserror::Error)]
#[error("cannot write {path}")]
pub struct CacheError {
    /// The file.
    pub path: PathBuf,
    /// Why.
    #[source]
    pub source: std::io::Error,
}

#[derive(Debug, Serialize, Deserialize)]
struct Entry {
    kernel: KernelIdentity,
    fingerprint: String,
    seed: u64,
    run: SideRun,
}

/// The base cache under one root directory.
#[derive(Debug, Clone)]
pub struct BaseCache {
    root: PathBuf,
}

/// The scenario as the engine runs it, hashed with dangle's version (20
/// hex digits).
pub fn fingerprint(plan: &Plan) -> String {
    let mut v = serde_json::to_value(plan).unwrap_or_default();
    if let Some(o) = v.as_object_mut() {
        o.remove("file");
    }
    let mut h = Sha256::new();
    h.update(env!("CARGO_PKG_VERSION").as_bytes());
    h.update([0]);
    h.update(v.to_string().as_bytes());
    crate::kernel::source::hex(&h.finalize())[..20].to_owned()
}

fn sanitize(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

impl BaseCache {
    /// A cache rooted at `root` (created on first store).
    pub fn new(root: &Path) -> Self {
        Self {
            root: root.to_owned(),
        }
    }

    fn path(&self, kernel: &KernelIdentity, plan: &Plan, seed: u64) -> PathBuf {
        self.root
            .join(kernel.key())
            .join(format!("{}-{}", sanitize(plan.name()), fingerprint(plan)))
            .join(format!("{seed}.json"))
    }

    /// The cached run of `plan` with `seed` on exactly `kernel`, if any.
    /// An unreadable or foreign entry is a miss.
    pub fn lookup(&self, kernel: &KernelIdentity, plan: &Plan, seed: u64) -> Option<SideRun> {
        let bytes = std::fs::read(self.path(kernel, plan, seed)).ok()?;
        let e: Entry = serde_json::from_slice(&bytes).ok()?;
        (e.kernel == *kernel
            && e.fingerprint == fingerprint(plan)
            && e.seed == seed
            && e.run.scenario == plan.name())
        .then_some(e.run)
    }

    /// Stores `run` of `plan` on `kernel` (written whole or not at all).
    pub fn store(
        &self,
        kernel: &KernelIdentity,
        plan: &Plan,
        run: &SideRun,
    ) -> Result<(), CacheError> {
        let path = self.path(kernel, plan, run.seed);
        let entry = Entry {
            kernel: kernel.clone(),
            fingerprint: fingerprint(plan),
            seed: run.seed,
            run: run.clone(),
        };
        let bytes = serde_json::to_vec_pretty(&entry).unwrap_or_default();
        let tmp = path.with_extension("json.tmp");
        let err = |path: &Path| {
            let path = path.to_owned();
            move |source| CacheError { path, source }
        };
        std::fs::create_dir_all(path.parent().unwrap_or(&self.root)).map_err(err(&path))?;
        std::fs::write(&tmp, bytes).map_err(err(&tmp))?;
        std::fs::rename(&tmp, &path).map_err(err(&path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::suite::outcome::Outcome;
    use crate::validate::Side;

    fn plan(extra: &str) -> Plan {
        let yaml = format!(
            "name: t\nscenarios:\n  - name: s\n    devices: []\n    expect: clean\n{extra}"
        );
        crate::suite::load::load_str(&yaml, Path::new("t.yaml"))
            .unwrap()
            .remove(0)
    }

    fn kernel(key: &str) -> KernelIdentity {
        KernelIdentity {
            version: "6.12.0".into(),
            source: "sim".into(),
            patches: Vec::new(),
            config_hash: Some("c".into()),
            cache_key: key.into(),
        }
    }

    fn run(seed: u64) -> SideRun {
        SideRun {
            side: Side::Base,
            index: 0,
            suite: "t".into(),
            scenario: "s".into(),
            expectation: "clean".into(),
            seed,
            outcome: Outcome::NotMet { reason: "r".into() },
            titles: vec!["WARNING in f".into()],
            kernel: kernel("a").key(),
            artifacts: "art".into(),
            cached: false,
        }
    }

    #[test]
    fn base_cache_round_trip_hits_only_the_same_kernel_scenario_and_seed() {
        let dir = tempfile::tempdir().unwrap();
        let c = BaseCache::new(dir.path());
        let p = plan("");
        c.store(&kernel("a"), &p, &run(7)).unwrap();
        assert_eq!(c.lookup(&kernel("a"), &p, 7), Some(run(7)));
        assert_eq!(c.lookup(&kernel("b"), &p, 7), None, "another kernel");
        assert_eq!(c.lookup(&kernel("a"), &p, 8), None, "another seed");
        let edited = plan("    settle: 9s\n");
        assert_eq!(
            c.lookup(&kernel("a"), &edited, 7),
            None,
            "an edited scenario"
        );
    }

    #[test]
    fn base_cache_entry_of_another_identity_under_the_same_key_is_a_miss() {
        let dir = tempfile::tempdir().unwrap();
        let c = BaseCache::new(dir.path());
        let p = plan("");
        let a = kernel("a");
        c.store(&a, &p, &run(7)).unwrap();
        // Same directory (forced), different identity inside.
        let path = c.path(&a, &p, 7);
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, text.replace("\"6.12.0\"", "\"6.12.1\"")).unwrap();
        assert_eq!(c.lookup(&a, &p, 7), None);
        std::fs::write(&path, "not json").unwrap();
        assert_eq!(c.lookup(&a, &p, 7), None);
    }
}
