//! `dangle bench`: figures users can expect, printed by commands (never
//! asserted by timed tests).
//!
//! - `boot`: QEMU start to agent ready, N boots, TCG and (when a probe VM
//!   boots under it) KVM, median and spread;
//! - `cycles`: seconds per unplug+replug cycle with consumers busy, for each
//!   unplug method, and cycles per minute over a duration.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::exit::Status;
use crate::prepare::{self, KernelSelect};
use crate::suite::agent_guest::AgentGuest;
use crate::suite::engine::{BOOT_TIMEOUT, error_chain};
use crate::vm::accel::{self, AccelChoice};
use crate::vm::devices::DeviceSpec;
use crate::vm::fixture::{Vm, VmSpec, find_qemu};
use crate::vm::qemu::Accel;

/// Arguments of `dangle bench`.
#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    #[command(subcommand)]
    what: BenchWhat,
}

#[derive(Debug, clap::Subcommand)]
enum BenchWhat {
    /// Boot to agent ready (default hardware), N boots per accelerator.
    Boot {
        /// Boots per accelerator.
        #[arg(short = 'n', long, default_value_t = 5)]
        runs: u32,
        #[command(flatten)]
        kernel: KernelSelect,
        /// Where consoles go (default: ./dangle-artifacts/bench-boot).
        #[arg(long)]
        artifacts: Option<PathBuf>,
    },
    /// Seconds per unplug+replug cycle with GPIO consumers busy, per method,
    /// and cycles per minute over --duration.
    Cycles {
        /// How long each method cycles.
        #[arg(long, value_parser = humantime::parse_duration, default_value = "60s")]
        duration: Duration,
        /// Methods (default: qmp, unbind, pci-remove, backend-kill).
        #[arg(long = "method", value_name = "METHOD")]
        methods: Vec<String>,
        #[command(flatten)]
        kernel: KernelSelect,
        /// Where the run's artifacts go (default: ./dangle-artifacts/bench-cycles).
        #[arg(long)]
        artifacts: Option<PathBuf>,
    },
}

/// Median, min and max of samples (seconds).
pub fn spread(samples: &[f64]) -> Option<(f64, f64, f64)> {
    if samples.is_empty() {
        return None;
    }
    let mut s = samples.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    let median = if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    };
    Some((median, s[0], s[n - 1]))
}

/// Runs `dangle bench`.
pub fn run(args: BenchArgs) -> Status {
    match args.what {
        BenchWhat::Boot {
            runs,
            kernel,
            artifacts,
        } => boot(runs, &kernel, artifacts),
        BenchWhat::Cycles {
            duration,
            methods,
            kernel,
            artifacts,
        } => cycles(duration, methods, kernel, artifacts),
    }
}

fn boot(runs: u32, kernel: &KernelSelect, artifacts: Option<PathBuf>) -> Status {
    if find_qemu().is_none() {
        eprintln!("dangle bench: qemu-system-x86_64 not found: sudo bash ci/setup-host.sh");
        return Status::Infrastructure;
    }
    let b = match prepare::bootable(kernel, &[], &[]) {
        Ok(b) => b,
        Err(e) => {
            crate::exit::print_error(&e);
            return e.status();
        }
    };
    let dir = artifacts.unwrap_or_else(|| PathBuf::from("dangle-artifacts/bench-boot"));
    let qemu = find_qemu().unwrap_or_else(|| "qemu-system-x86_64".into());
    let (kvm, why) = accel::resolve(
        AccelChoice::Auto,
        &qemu,
        &b.kernel.bzimage,
        &crate::paths::cache_dir(),
    );
    let mut accels = vec![(Accel::Tcg, AccelChoice::Tcg)];
    if kvm == Accel::Kvm {
        accels.push((Accel::Kvm, AccelChoice::Kvm));
    } else {
        println!("kvm: not measured ({why})");
    }
    println!(
        "kernel {} ({}), {runs} boot(s) per accelerator, default hardware",
        b.kernel.version, b.kernel.source
    );
    let mut status = Status::Ok;
    for (accel, choice) in accels {
        let mut samples = Vec::new();
        for i in 0..runs {
            let mut spec = VmSpec::new(
                b.kernel.bzimage.clone(),
                b.initrd.clone(),
                dir.join(format!("{accel}-{i}")),
            );
            spec.devices = DeviceSpec::defaults();
            spec.accel = choice;
            let t0 = Instant::now();
            let vm = match Vm::start(spec, None) {
                Ok(vm) => vm,
                Err(e) => {
                    eprintln!("boot {i}: {}", error_chain(&e));
                    status = Status::Infrastructure;
                    continue;
                }
            };
            match AgentGuest::connect(&vm, BOOT_TIMEOUT) {
                Ok(g) => {
                    let secs = t0.elapsed().as_secs_f64();
                    samples.push(secs);
                    eprintln!("{accel} boot {}: agent ready after {secs:.2} s", i + 1);
                    let _ = g.client().poweroff();
                }
                Err(e) => {
                    eprintln!("boot {i}: {}", error_chain(&e));
                    status = Status::Infrastructure;
                }
            }
            let mut vm = vm;
            if vm.wait_exit(Duration::from_secs(20)).is_none() {
                vm.quit();
            }
        }
        if let Some((med, min, max)) = spread(&samples) {
            println!(
                "{accel}: boot to agent ready: median {med:.2} s, min {min:.2} s, max {max:.2} s ({} boots)",
                samples.len()
            );
        }
    }
    status
}

fn cycles(
    duration: Duration,
    methods: Vec<String>,
    kernel: KernelSelect,
    artifacts: Option<PathBuf>,
) -> Status {
    let methods = if methods.is_empty() {
        vec![
            "qmp".into(),
            "unbind".into(),
            "pci-remove".into(),
            "backend-kill".into(),
        ]
    } else {
        methods
    };
    let dir = artifacts.unwrap_or_else(|| PathBuf::from("dangle-artifacts/bench-cycles"));
    if let Err(e) = std::fs::create_dir_all(&dir) {
        eprintln!("dangle bench: cannot create {}: {e}", dir.display());
        return Status::BadInput;
    }
    let mut yaml = String::from("name: bench-cycles\nscenarios:\n");
    for m in &methods {
        yaml.push_str(&format!(
            "  - name: cycles-{m}\n    devices: [{{ kind: gpio, id: gpio0, lines: 8 }}]\n    consumers:\n      - gpio-hold: {{ device: gpio0, line: 1 }}\n      - gpio-edge-poll: {{ device: gpio0, line: 2 }}\n      - gpio-toggle: {{ device: gpio0, line: 3 }}\n    unplug: {{ method: {m}, targets: [gpio0], delay: 200ms }}\n    unplug-timeout: 60s\n    settle: 1s\n    expect: clean\n"
        ));
    }
    let suite = dir.join("bench-cycles.yaml");
    let json = dir.join("result.json");
    if let Err(e) = std::fs::write(&suite, yaml) {
        eprintln!("dangle bench: cannot write {}: {e}", suite.display());
        return Status::Infrastructure;
    }
    let args = crate::suite::cli::RunArgs {
        suites: vec![suite.display().to_string()],
        only: Vec::new(),
        kernel,
        seed: Some(1),
        cycles: None,
        duration: Some(duration),
        json: Some(json.clone()),
        junit: None,
        artifacts: Some(dir.join("run")),
        replay: None,
        accel: AccelChoice::Auto,
        list: false,
    };
    let st = crate::suite::cli::run(args);
    let Ok(v) = std::fs::read(&json)
        .map_err(|e| e.to_string())
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).map_err(|e| e.to_string()))
    else {
        eprintln!("dangle bench: no results in {}", json.display());
        return Status::Infrastructure;
    };
    println!(
        "\nunplug+replug cycle of a GPIO controller with 3 consumers busy, {duration:?} per method:"
    );
    println!(
        "{:<14} {:>8} {:>10} {:>10} {:>10} {:>12}",
        "method", "cycles", "median s", "min s", "max s", "cycles/min"
    );
    for s in v["scenarios"].as_array().into_iter().flatten() {
        let secs: Vec<f64> = s["cycle_secs"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|x| x.as_f64())
            .collect();
        let method = s["method"].as_str().unwrap_or("?");
        match spread(&secs) {
            Some((med, min, max)) => println!(
                "{method:<14} {:>8} {med:>10.2} {min:>10.2} {max:>10.2} {:>12.1}",
                secs.len(),
                secs.len() as f64 / duration.as_secs_f64() * 60.0
            ),
            None => println!(
                "{method:<14} {:>8} (no completed cycle: {})",
                0,
                s["reason"].as_str().or(s["error"].as_str()).unwrap_or("")
            ),
        }
    }
    st
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spread_odd_even_and_empty() {
        assert_eq!(spread(&[3.0, 1.0, 2.0]), Some((2.0, 1.0, 3.0)));
        assert_eq!(spread(&[4.0, 1.0, 2.0, 3.0]), Some((2.5, 1.0, 4.0)));
        assert_eq!(spread(&[]), None);
    }
}
