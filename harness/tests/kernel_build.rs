//! Heavy test: builds the default dangle kernel through the cache (minutes
//! the first time on 2 cores; instant afterwards, and the VM tests reuse the
//! same cache) and checks the result.
//!
//! Needs Debian's linux-source-6.12 and the kernel build dependencies
//! (ci/setup-host.sh). When they are missing the test fails with the install
//! command; it never passes without building.

use dangle::kernel::{self, KernelRequest, Progress, ProgressMode, Value, config};

#[test]
fn kernel_build_default_has_every_requested_symbol() {
    let req = KernelRequest::default();
    let progress = Progress::new(ProgressMode::Plain);
    let k = match kernel::ensure_kernel(&req, &progress) {
        Ok(k) => k,
        Err(e) => panic!(
            "default kernel build failed (run ci/setup-host.sh for the host packages):\n{:#}",
            dangle::exit::chain(&e)
        ),
    };
    assert!(k.bzimage.is_file(), "{}", k.bzimage.display());
    assert!(k.vmlinux.is_file(), "{}", k.vmlinux.display());
    assert!(k.version.starts_with("6.12"), "version {}", k.version);
    assert_eq!(k.cache_key.len(), 20);

    let config_path = k.config.as_ref().expect("a built kernel has a config");
    let text = std::fs::read_to_string(config_path).unwrap();
    let final_cfg = config::parse_dotconfig(&text);
    let mut requests = Vec::new();
    for f in config::fragment_files(&kernel::default_images_dir()).unwrap() {
        requests.extend(config::read_fragment(&f).unwrap());
    }
    let merged = config::merge(&requests);
    assert!(
        merged.len() > 50,
        "suspiciously few requests: {}",
        merged.len()
    );
    for r in &merged {
        assert_eq!(
            config::value_of(&final_cfg, &r.symbol),
            &r.value,
            "CONFIG_{} ({})",
            r.symbol,
            r.origin
        );
    }
    for sym in [
        "KASAN",
        "KASAN_GENERIC",
        "KASAN_INLINE",
        "LKDTM",
        "PROVE_LOCKING",
        "GPIO_VIRTIO",
        "I2C_VIRTIO",
        "EEPROM_AT24",
        "GPIO_SIM",
        "I2C_STUB",
        "DANGLE_NVMEM_CONSUMER",
        "DEBUG_INFO",
    ] {
        assert_eq!(
            config::value_of(&final_cfg, sym),
            &Value::Yes,
            "CONFIG_{sym}"
        );
    }
    assert_eq!(config::value_of(&final_cfg, "MODULES"), &Value::No);
    assert!(
        kernel::build::has_dwarf(&k.vmlinux).unwrap(),
        "{} has no .debug_line",
        k.vmlinux.display()
    );

    // A second call is a cache hit and returns the same files.
    let t = std::time::Instant::now();
    let again = kernel::ensure_kernel(&req, &Progress::quiet()).unwrap();
    assert!(again.cached);
    assert_eq!(again.bzimage, k.bzimage);
    assert!(
        t.elapsed() < std::time::Duration::from_secs(20),
        "cache hit took {:?}",
        t.elapsed()
    );
}
