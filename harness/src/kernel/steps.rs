//! The steps of one build on a cache miss, under the tree's lock: source
//! tree, patches, config, compile, collect.

use std::path::Path;
use std::time::Instant;

use super::cache::{Plan, read_bytes};
use super::{BuiltKernel, KernelError, KernelRequest, Progress, build, config, patch, source};

/// Builds `plan` into its build directory (see the pipeline in the
/// [module docs](super)).
pub(super) fn build_locked(
    req: &KernelRequest,
    plan: &Plan,
    progress: &Progress,
) -> Result<BuiltKernel, KernelError> {
    let tree_dir = plan.tree_dir();
    let src = tree_dir.join("src");
    let obj = tree_dir.join("obj");
    let out = plan.build_dir();
    std::fs::create_dir_all(&out).map_err(|e| KernelError::io(&out, e))?;
    let _ = std::fs::remove_file(out.join("kernel.json"));
    let log = out.join("build.log");
    std::fs::write(
        &log,
        format!(
            "# dangle kernel build {}\n# source {}\n",
            plan.key, plan.source_id
        ),
    )
    .map_err(|e| KernelError::io(&log, e))?;
    let started = Instant::now();

    // 1. source tree
    match &plan.user_tree {
        None => {
            let marker = tree_dir.join("extracted");
            if !marker.exists() {
                progress.message(&format!("extracting {}", source::DEBIAN_TARBALL));
                if src.exists() {
                    std::fs::remove_dir_all(&src).map_err(|e| KernelError::io(&src, e))?;
                }
                source::extract_tarball(Path::new(source::DEBIAN_TARBALL), &src)?;
                std::fs::write(&marker, &plan.source_id)
                    .map_err(|e| KernelError::io(&marker, e))?;
            }
        }
        Some(user) => {
            progress.message(&format!("syncing {} into the cache", user.display()));
            let mut skip = patch::manifest_files(&tree_dir)?;
            for p in &plan.series {
                skip.extend(patch::touched_files(&String::from_utf8_lossy(&read_bytes(
                    p,
                )?)));
            }
            let n = source::mirror(user, &src, &skip)?;
            tracing::info!("mirrored {n} changed files");
        }
    }

    // 2. patches
    let base = match &plan.user_tree {
        Some(u) => patch::Base::Dir(u),
        None => patch::Base::SavedOriginals,
    };
    let applied = patch::apply_series(&src, &tree_dir, base, &plan.series)?;
    progress.message(&format!(
        "{} patches, {} files touched, {} rewritten",
        plan.series.len(),
        applied.touched.len(),
        applied.written.len()
    ));

    // 3. config
    std::fs::create_dir_all(&obj).map_err(|e| KernelError::io(&obj, e))?;
    let jobs = req
        .jobs
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, std::num::NonZero::get));
    let ccache_dir = plan.root.join("ccache");
    let make = build::Make {
        src: &src,
        obj: &obj,
        log: &log,
        ccache_dir: &ccache_dir,
        jobs,
    };
    progress.message("configuring: tinyconfig + fragments + olddefconfig");
    make.run(&["tinyconfig"], None)?;
    let dotconfig = obj.join(".config");
    let base_cfg =
        std::fs::read_to_string(&dotconfig).map_err(|e| KernelError::io(&dotconfig, e))?;
    std::fs::write(
        &dotconfig,
        config::apply_to_dotconfig(&base_cfg, &plan.requests),
    )
    .map_err(|e| KernelError::io(&dotconfig, e))?;
    make.run(&["olddefconfig"], None)?;
    let final_text =
        std::fs::read_to_string(&dotconfig).map_err(|e| KernelError::io(&dotconfig, e))?;
    let final_cfg = config::parse_dotconfig(&final_text);
    let dropped = config::check(&plan.requests, &final_cfg, &src);
    if !dropped.is_empty() {
        let kept = out.join("config");
        let _ = std::fs::write(&kept, &final_text);
        return Err(KernelError::Dropped {
            dropped,
            config: kept,
        });
    }

    // 4. compile
    let vmlinux_obj = obj.join("vmlinux");
    let cold = !vmlinux_obj.exists();
    let count_file = tree_dir.join("cc-count");
    let estimate = if cold {
        Some(
            std::fs::read_to_string(&count_file)
                .ok()
                .and_then(|s| s.trim().parse().ok())
                .unwrap_or(DEFAULT_CC_ESTIMATE),
        )
    } else {
        None
    };
    progress.message(&format!(
        "building bzImage with -j{jobs} ({}); log: {}",
        if cold {
            "cold object tree"
        } else {
            "reusing the object tree"
        },
        log.display()
    ));
    progress.start_compile(estimate);
    let result = make.run(&["bzImage"], Some(progress));
    let compiled = progress.finish_compile();
    result?;
    if cold {
        let _ = std::fs::write(&count_file, compiled.to_string());
    }

    // 5. collect
    let bz_obj = obj.join("arch/x86/boot/bzImage");
    for (what, p) in [("bzImage", &bz_obj), ("vmlinux", &vmlinux_obj)] {
        if !p.is_file() {
            return Err(KernelError::Artefact {
                what,
                path: p.clone(),
            });
        }
    }
    let version = make.kernelrelease()?;
    let kernel = BuiltKernel {
        bzimage: build::install_file(&bz_obj, &out.join("bzImage"))?,
        vmlinux: build::install_file(&vmlinux_obj, &out.join("vmlinux"))?,
        config: Some(build::install_file(&dotconfig, &out.join("config"))?),
        version,
        source: plan.source_id.clone(),
        cache_key: plan.key.clone(),
        log: Some(log.clone()),
        cached: false,
    };
    let json = out.join("kernel.json");
    let bytes = serde_json::to_vec_pretty(&kernel)
        .map_err(|e| KernelError::io(&json, std::io::Error::other(e)))?;
    std::fs::write(&json, bytes).map_err(|e| KernelError::io(&json, e))?;
    progress.message(&format!(
        "built {} ({compiled} files compiled) in {:.0?}",
        kernel.version,
        started.elapsed()
    ));
    Ok(kernel)
}

/// `CC` lines expected from a cold build when no previous count exists
/// (the default config compiles about this many files).
const DEFAULT_CC_ESTIMATE: u64 = 1300;
