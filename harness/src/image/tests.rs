//! Image builder tests: the archive reads back, caching, ELF checks.

use std::collections::BTreeMap;
use std::io::{Cursor, Read};

use super::*;

/// A minimal ELF64 x86-64 executable header, with one `PT_INTERP` program
/// header when `dynamic`.
fn fake_elf(dynamic: bool) -> Vec<u8> {
    let mut h = vec![0u8; 64];
    h[..4].copy_from_slice(b"\x7fELF");
    h[4] = 2; // ELFCLASS64
    h[5] = 1; // ELFDATA2LSB
    h[6] = 1; // EV_CURRENT
    h[16..18].copy_from_slice(&2u16.to_le_bytes()); // ET_EXEC
    h[18..20].copy_from_slice(&0x3eu16.to_le_bytes()); // EM_X86_64
    h[20..24].copy_from_slice(&1u32.to_le_bytes());
    h[52..54].copy_from_slice(&64u16.to_le_bytes()); // e_ehsize
    h[54..56].copy_from_slice(&56u16.to_le_bytes()); // e_phentsize
    if dynamic {
        h[32..40].copy_from_slice(&64u64.to_le_bytes()); // e_phoff
        h[56..58].copy_from_slice(&1u16.to_le_bytes()); // e_phnum
        let mut ph = vec![0u8; 56];
        ph[..4].copy_from_slice(&object::elf::PT_INTERP.to_le_bytes());
        h.extend(ph);
    }
    h
}

struct Read_ {
    mode: u32,
    data: Vec<u8>,
    rdev: (u32, u32),
}

fn read_archive(bytes: &[u8]) -> BTreeMap<String, Read_> {
    let mut out = BTreeMap::new();
    let mut cur = Cursor::new(bytes.to_vec());
    loop {
        let mut r = cpio::NewcReader::new(cur).expect("entry header");
        if r.entry().is_trailer() {
            break;
        }
        let name = r.entry().name().to_owned();
        let mode = r.entry().mode();
        let rdev = (r.entry().rdev_major(), r.entry().rdev_minor());
        let mut data = Vec::new();
        r.read_to_end(&mut data).expect("entry data");
        out.insert(name, Read_ { mode, data, rdev });
        cur = r.finish().expect("finish");
    }
    out
}

#[test]
fn write_newc_archive_reads_back_with_init_0755() {
    let dir = tempfile::tempdir().expect("tempdir");
    let agent = dir.path().join("agent");
    std::fs::write(&agent, b"agent bytes").expect("write");
    let mut r = recipe(&agent, &Extras::default()).expect("recipe");
    r.add(
        "bin/sh",
        Entry::Symlink {
            target: "busybox".to_owned(),
        },
    );
    let bytes = write_newc(&r, Vec::new()).expect("write");
    let a = read_archive(&bytes);
    let init = a.get("init").expect("/init");
    assert_eq!(init.mode, 0o100_755);
    assert_eq!(init.data, b"agent bytes");
    for d in ["dev", "proc", "sys", "tmp", "mnt"] {
        let e = a.get(d).unwrap_or_else(|| panic!("missing /{d}"));
        assert_eq!(e.mode & 0o170_000, 0o040_000, "/{d} is a directory");
    }
    let console = a.get("dev/console").expect("/dev/console");
    assert_eq!(console.mode, 0o020_600);
    assert_eq!(console.rdev, (5, 1));
    let sh = a.get("bin/sh").expect("/bin/sh");
    assert_eq!(sh.mode, 0o120_777);
    assert_eq!(sh.data, b"busybox");
}

#[test]
fn write_newc_archive_is_listed_by_cpio_tool() {
    let dir = tempfile::tempdir().expect("tempdir");
    let agent = dir.path().join("agent");
    std::fs::write(&agent, b"x").expect("write");
    let r = recipe(&agent, &Extras::default()).expect("recipe");
    let file = dir.path().join("img.cpio");
    std::fs::write(&file, write_newc(&r, Vec::new()).expect("write")).expect("write");
    // GNU cpio is a declared host tool of the test environment (ci/): fail,
    // do not skip, when it is missing.
    let out = Command::new("cpio")
        .args(["-t", "-v", "-F"])
        .arg(&file)
        .output()
        .expect("cpio must be installed (apt-get install cpio)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listing = String::from_utf8_lossy(&out.stdout);
    let init = listing
        .lines()
        .find(|l| l.ends_with(" init"))
        .unwrap_or_else(|| panic!("no init in {listing}"));
    assert!(init.starts_with("-rwxr-xr-x"), "{init}");
    assert!(
        listing
            .lines()
            .any(|l| l.starts_with('c') && l.ends_with(" dev/console"))
    );
}

#[test]
fn recipe_add_creates_parent_directories() {
    let mut r = Recipe::default();
    r.add(
        "/lib/x86_64-linux-gnu/libc.so.6",
        Entry::File {
            mode: 0o755,
            content: Content::Bytes(vec![1]),
        },
    );
    assert!(r.contains("lib"));
    assert!(r.contains("lib/x86_64-linux-gnu"));
    let order: Vec<&String> = r.entries().map(|(p, _)| p).collect();
    assert_eq!(
        order,
        [
            "lib",
            "lib/x86_64-linux-gnu",
            "lib/x86_64-linux-gnu/libc.so.6"
        ]
    );
}

#[test]
fn parse_ldd_typical_output_lists_files_only() {
    let out = "\tlinux-vdso.so.1 (0x00007ffd)\n\
               \tlibgpiod.so.2 => /lib/x86_64-linux-gnu/libgpiod.so.2 (0x00007f)\n\
               \tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f)\n\
               \t/lib64/ld-linux-x86-64.so.2 (0x00007f)\n\
               \tlibmissing.so => not found\n";
    assert_eq!(
        parse_ldd(out),
        vec![
            PathBuf::from("/lib/x86_64-linux-gnu/libgpiod.so.2"),
            PathBuf::from("/lib/x86_64-linux-gnu/libc.so.6"),
            PathBuf::from("/lib64/ld-linux-x86-64.so.2"),
        ]
    );
}

#[test]
fn is_static_elf_tells_static_from_dynamic() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = dir.path().join("static");
    let d = dir.path().join("dynamic");
    let t = dir.path().join("text");
    std::fs::write(&s, fake_elf(false)).expect("write");
    std::fs::write(&d, fake_elf(true)).expect("write");
    std::fs::write(&t, "#!/bin/sh\n").expect("write");
    assert!(is_static_elf(&s).expect("static"));
    assert!(!is_static_elf(&d).expect("dynamic"));
    let e = is_static_elf(&t).expect_err("not ELF");
    assert!(e.to_string().contains("text"), "{e}");
}

#[test]
fn build_image_second_call_is_cached_and_dynamic_agent_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let agent = dir.path().join("agent");
    std::fs::write(&agent, fake_elf(false)).expect("write");
    let opts = ImageOptions {
        cache_dir: dir.path().join("cache"),
        agent: AgentSource::Prebuilt(agent.clone()),
        extras: Extras::default(),
    };
    let first = build_image(&opts).expect("first");
    assert!(!first.cached);
    assert!(first.path.is_file());
    let second = build_image(&opts).expect("second");
    assert!(second.cached);
    assert_eq!(first.path, second.path);
    // A different agent gives a different image.
    std::fs::write(&agent, [fake_elf(false), vec![0; 8]].concat()).expect("write");
    let third = build_image(&opts).expect("third");
    assert_ne!(third.key, first.key);
    let a = read_archive(&std::fs::read(&third.path).expect("read"));
    assert_eq!(a.get("init").expect("init").data.len(), 72);

    std::fs::write(&agent, fake_elf(true)).expect("write");
    assert!(matches!(
        build_image(&opts),
        Err(ImageError::AgentNotStatic { prebuilt: true, .. })
    ));
}

#[test]
fn agent_build_command_is_static_guest_profile() {
    let cmd = agent_build_command(Path::new("ws"), Path::new("tgt"));
    let args: Vec<String> = cmd
        .get_args()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    assert!(
        args.windows(2).any(|w| w == ["--profile", "guest"]),
        "{args:?}"
    );
    assert!(
        args.windows(2)
            .any(|w| w == ["--target", "x86_64-unknown-linux-gnu"])
    );
    let envs: BTreeMap<String, String> = cmd
        .get_envs()
        .filter_map(|(k, v)| {
            Some((
                k.to_string_lossy().into_owned(),
                v?.to_string_lossy().into_owned(),
            ))
        })
        .collect();
    assert_eq!(
        envs.get("RUSTFLAGS").map(String::as_str),
        Some(AGENT_RUSTFLAGS)
    );
    assert_eq!(
        envs.get("CARGO_TARGET_DIR").map(String::as_str),
        Some("tgt")
    );
}
