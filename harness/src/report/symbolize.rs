//! Symbolization: `func+0xOFF/0xLEN` -> `path/file.c:LINE`, inlined calls
//! included, from an ELF (vmlinux) with DWARF, through addr2line/gimli.
//!
//! A frame is resolved by looking `func` up in the ELF symbol table (the
//! symbol whose size equals `0xLEN` when the name is not unique), adding
//! the offset and, for return addresses, stepping back one byte into the
//! call instruction. Frames of loadable modules (`[module]`) are left as
//! they are.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use object::{Object, ObjectSymbol, SymbolKind};

use super::extract::parse_frames;
use super::{Frame, Report};

/// Errors of [`Symbolizer::open`].
#[derive(Debug, thiserror::Error)]
pub enum SymbolizeError {
    /// The file cannot be opened or mapped.
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file is not an object file we can parse.
    #[error("{path} is not a usable ELF file")]
    Elf {
        path: PathBuf,
        #[source]
        source: object::Error,
    },
    /// The DWARF could not be loaded.
    #[error("cannot load the debug info of {path}")]
    Dwarf {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The ELF has no function symbols at all.
    #[error("{path} has no function symbols")]
    NoSymbols { path: PathBuf },
}

/// Resolves report frames against one ELF with DWARF.
pub struct Symbolizer {
    loader: addr2line::Loader,
    /// Function name -> (address, size) of every symbol with that name.
    symbols: HashMap<String, Vec<(u64, u64)>>,
}

impl std::fmt::Debug for Symbolizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Symbolizer")
            .field("symbols", &self.symbols.len())
            .finish_non_exhaustive()
    }
}

impl Symbolizer {
    /// Loads the symbol table and DWARF of `path` (a vmlinux).
    pub fn open(path: &Path) -> Result<Self, SymbolizeError> {
        let file = File::open(path).map_err(|source| SymbolizeError::Read {
            path: path.to_owned(),
            source,
        })?;
        // SAFETY: the mapping is read-only and private; a concurrent writer
        // to the vmlinux could change what we read but not break memory
        // safety of this process beyond garbage symbol data, and the map is
        // dropped before this function returns.
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|source| SymbolizeError::Read {
            path: path.to_owned(),
            source,
        })?;
        let obj = object::File::parse(&*map).map_err(|source| SymbolizeError::Elf {
            path: path.to_owned(),
            source,
        })?;
        let mut symbols: HashMap<String, Vec<(u64, u64)>> = HashMap::new();
        for s in obj.symbols() {
            if s.kind() != SymbolKind::Text || s.address() == 0 {
                continue;
            }
            if let Ok(name) = s.name() {
                symbols
                    .entry(name.to_owned())
                    .or_default()
                    .push((s.address(), s.size()));
            }
        }
        if symbols.is_empty() {
            return Err(SymbolizeError::NoSymbols {
                path: path.to_owned(),
            });
        }
        // addr2line's error is not Send; keep its text.
        let loader = addr2line::Loader::new(path).map_err(|e| SymbolizeError::Dwarf {
            path: path.to_owned(),
            source: std::io::Error::other(e.to_string()),
        })?;
        Ok(Self { loader, symbols })
    }

    /// The address of `function` (preferring the symbol of size `size`).
    fn address(&self, function: &str, size: u64) -> Option<u64> {
        let cands = self.symbols.get(function)?;
        cands
            .iter()
            .find(|(_, s)| *s == size)
            .or_else(|| cands.first())
            .map(|(a, _)| *a)
    }

    /// Resolves one frame: the returned list holds the inlined calls first
    /// (innermost first, `inlined: true`) and the frame itself last, with
    /// file and line set. Unknown functions come back unchanged.
    pub fn resolve(&self, frame: &Frame) -> Vec<Frame> {
        if frame.module.is_some() {
            return vec![frame.clone()];
        }
        let Some(addr) = self.address(&frame.function, frame.size) else {
            return vec![frame.clone()];
        };
        let mut pc = addr + frame.offset;
        if !frame.exact_pc && pc > addr {
            // A return address points after the call.
            pc -= 1;
        }
        let Ok(mut iter) = self.loader.find_frames(pc) else {
            return vec![frame.clone()];
        };
        let mut found = Vec::new();
        while let Ok(Some(f)) = iter.next() {
            let name = f
                .function
                .as_ref()
                .and_then(|n| n.demangle().ok().map(|c| c.into_owned()));
            let (file, line) = f
                .location
                .map_or((None, None), |l| (l.file.map(clean_path), l.line));
            found.push((name, file, line));
        }
        if found.is_empty() {
            return vec![frame.clone()];
        }
        let last = found.len() - 1;
        found
            .into_iter()
            .enumerate()
            .map(|(i, (name, file, line))| {
                let mut f = frame.clone();
                f.file = file;
                f.line = line;
                if i != last {
                    f.inlined = true;
                    f.function = name.unwrap_or_else(|| frame.function.clone());
                }
                f
            })
            .collect()
    }
}

/// Kernel top-level source directories: DWARF paths are cut to start at the
/// first of them, so out-of-tree build prefixes disappear.
const KERNEL_DIRS: &[&str] = &[
    "arch", "block", "certs", "crypto", "drivers", "fs", "include", "init", "io_uring", "ipc",
    "kernel", "lib", "mm", "net", "rust", "samples", "security", "sound", "virt",
];

fn clean_path(path: &str) -> String {
    // When the source tree is on this machine, cut at its root (the
    // directory holding MAINTAINERS and Kbuild): a top-level name such as
    // `kernel/` may also occur in the path of the tree itself.
    if let Some(root) = Path::new(path)
        .ancestors()
        .skip(1)
        .find(|d| d.join("MAINTAINERS").is_file() && d.join("Kbuild").is_file())
    {
        if let Ok(rel) = Path::new(path).strip_prefix(root) {
            return rel.to_string_lossy().into_owned();
        }
    }
    let cut = KERNEL_DIRS
        .iter()
        .filter_map(|d| path.find(&format!("/{d}/")))
        .min();
    match cut {
        Some(p) => path[p + 1..].to_owned(),
        None => path.to_owned(),
    }
}

impl Report {
    /// Symbolizes the report's frames and its text: every
    /// `func+0xOFF/0xLEN` line gets ` file:LINE`, preceded by one
    /// ` inlined_fn file:LINE [inline]` line per inlined call.
    pub fn symbolize(&mut self, sym: &Symbolizer) {
        let mut text = Vec::with_capacity(self.report.len() * 2);
        let mut frames = Vec::new();
        for line in self.report.split_inclusive(|&b| b == b'\n') {
            let body = line.strip_suffix(b"\n").unwrap_or(line);
            let parsed = parse_frames(body);
            let Some(frame) = parsed.first() else {
                text.extend_from_slice(line);
                continue;
            };
            let resolved = sym.resolve(frame);
            text.extend(assemble(body, &resolved));
            if line.ends_with(b"\n") {
                // assemble() ends every line with '\n'.
            } else {
                text.pop();
            }
            frames.extend(resolved);
        }
        self.report = text;
        self.frames = frames;
    }
}

/// Rewrites one backtrace line for its resolved frames.
fn assemble(line: &[u8], resolved: &[Frame]) -> Vec<u8> {
    let mut out = Vec::new();
    let Some(outer) = resolved.last() else {
        out.extend_from_slice(line);
        out.push(b'\n');
        return out;
    };
    let key = format!("{}+0x{:x}/0x{:x}", outer.function, outer.offset, outer.size);
    let at = memchr::memmem::find(line, key.as_bytes());
    let indent: &[u8] = at.map_or(b" ", |p| &line[..p]);
    for f in resolved.iter().filter(|f| f.inlined) {
        out.extend_from_slice(indent);
        out.extend_from_slice(f.function.as_bytes());
        if let (Some(file), Some(l)) = (&f.file, f.line) {
            out.extend_from_slice(format!(" {file}:{l}").as_bytes());
        }
        out.extend_from_slice(b" [inline]\n");
    }
    match (at, &outer.file, outer.line) {
        (Some(p), Some(file), Some(l)) => {
            let end = p + key.len();
            out.extend_from_slice(&line[..end]);
            out.extend_from_slice(format!(" {file}:{l}").as_bytes());
            out.extend_from_slice(&line[end..]);
        }
        _ => out.extend_from_slice(line),
    }
    out.push(b'\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const PROBE_LINE: u32 = line!() + 3;
    #[unsafe(no_mangle)]
    #[inline(never)]
    pub extern "C" fn dangle_symbolize_probe(x: u32) -> u32 {
        std::hint::black_box(x).wrapping_mul(3).wrapping_add(1)
    }

    fn frame(function: &str, offset: u64) -> Frame {
        Frame {
            function: function.to_owned(),
            offset,
            size: 0,
            module: None,
            file: None,
            line: None,
            inlined: false,
            exact_pc: true,
        }
    }

    #[test]
    fn symbolizer_own_test_binary_resolves_file_and_line() {
        assert_eq!(dangle_symbolize_probe(1), 4);
        let exe = std::env::current_exe().expect("test executable path");
        let sym = Symbolizer::open(&exe).expect("test binary has symbols and DWARF");
        let out = sym.resolve(&frame("dangle_symbolize_probe", 0));
        let outer = out.last().expect("one frame");
        assert!(
            outer
                .file
                .as_deref()
                .is_some_and(|f| f.ends_with("symbolize.rs")),
            "{out:?}"
        );
        let line = outer.line.expect("a line");
        assert!(
            (PROBE_LINE..PROBE_LINE + 3).contains(&line),
            "line {line}, probe at {PROBE_LINE}"
        );
    }

    #[test]
    fn report_symbolize_adds_file_line_to_text_and_frames() {
        assert_eq!(dangle_symbolize_probe(2), 7);
        let log = b"[    1.0] WARNING: CPU: 0 PID: 1 at drivers/x.c:1 dangle_symbolize_probe+0x0/0x10\n\
[    1.0] RIP: 0010:dangle_symbolize_probe+0x0/0x10\n[    1.0] Call Trace:\n\
[    1.0]  dangle_symbolize_probe+0x0/0x10\n[    1.0]  some_caller+0x1/0x2\n[    1.0]  other+0x1/0x2\n\
[    1.0] ---[ end trace 0 ]---\n";
        let mut reports = crate::report::parse(log);
        assert_eq!(reports.len(), 1);
        let exe = std::env::current_exe().expect("test executable path");
        let sym = Symbolizer::open(&exe).expect("open");
        reports[0].symbolize(&sym);
        let text = String::from_utf8_lossy(&reports[0].report).into_owned();
        assert!(
            text.contains(" dangle_symbolize_probe+0x0/0x10 ") && text.contains("symbolize.rs:"),
            "{text}"
        );
        let probe = reports[0]
            .frames
            .iter()
            .rfind(|f| f.function == "dangle_symbolize_probe")
            .expect("probe frame");
        assert!(probe.line.is_some(), "{probe:?}");
        // Unknown functions keep their line as it was.
        assert!(text.contains(" some_caller+0x1/0x2\n"), "{text}");
    }

    #[test]
    fn symbolizer_unknown_function_left_unchanged() {
        let exe = std::env::current_exe().expect("test executable path");
        let sym = Symbolizer::open(&exe).expect("open");
        let f = frame("no_such_function_anywhere", 4);
        assert_eq!(sym.resolve(&f), vec![f]);
    }

    #[test]
    fn symbolizer_missing_file_error_names_it() {
        let err = Symbolizer::open(Path::new("does-not-exist/vmlinux")).expect_err("missing");
        assert!(err.to_string().contains("does-not-exist/vmlinux"), "{err}");
    }

    #[test]
    fn symbolizer_not_elf_error_names_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("vmlinux");
        std::fs::write(&p, b"not an elf").expect("write");
        let err = Symbolizer::open(&p).expect_err("not elf");
        assert!(err.to_string().contains("vmlinux"), "{err}");
    }

    #[test]
    fn assemble_inlined_frames_precede_outer_line() {
        let mut inner = frame("at24_read_inner", 0x10);
        inner.size = 0x80;
        inner.inlined = true;
        inner.file = Some("drivers/misc/eeprom/at24.c".into());
        inner.line = Some(42);
        let mut outer = inner.clone();
        outer.function = "at24_read".into();
        outer.inlined = false;
        outer.line = Some(99);
        let out = assemble(b" at24_read+0x10/0x80", &[inner, outer]);
        assert_eq!(
            String::from_utf8_lossy(&out),
            " at24_read_inner drivers/misc/eeprom/at24.c:42 [inline]\n at24_read+0x10/0x80 drivers/misc/eeprom/at24.c:99\n"
        );
    }

    #[test]
    fn clean_path_cuts_at_the_tree_root_when_present() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("cache/kernel/trees/x/src");
        std::fs::create_dir_all(root.join("drivers/misc")).unwrap();
        std::fs::write(root.join("MAINTAINERS"), "").unwrap();
        std::fs::write(root.join("Kbuild"), "").unwrap();
        let p = root.join("drivers/misc/heap.c");
        assert_eq!(clean_path(&p.to_string_lossy()), "drivers/misc/heap.c");
    }

    #[test]
    fn clean_path_build_prefix_removed() {
        assert_eq!(
            clean_path("/nonexistent/me/linux-6.12/drivers/i2c/i2c-core-base.c"),
            "drivers/i2c/i2c-core-base.c"
        );
        assert_eq!(
            clean_path("/rustc/x/library/core.rs"),
            "/rustc/x/library/core.rs"
        );
    }
}
