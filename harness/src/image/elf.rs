//! The one ELF fact the image builder needs: does a binary need a dynamic
//! loader (`PT_INTERP`)?

use std::path::Path;

use object::read::elf::{FileHeader, ProgramHeader};

use super::ImageError;

/// True if the 64-bit ELF file at `path` has no `PT_INTERP` program header
/// (static or static-pie).
///
/// # Errors
/// If the file cannot be read or is not a 64-bit ELF file.
pub fn is_static_elf(path: &Path) -> Result<bool, ImageError> {
    let data = std::fs::read(path).map_err(|source| ImageError::Io {
        what: "cannot read",
        path: path.to_owned(),
        source,
    })?;
    let elf_err = |source| ImageError::Elf {
        path: path.to_owned(),
        source,
    };
    let hdr = object::elf::FileHeader64::<object::Endianness>::parse(&*data).map_err(elf_err)?;
    let endian = hdr.endian().map_err(elf_err)?;
    let phdrs = hdr.program_headers(endian, &*data).map_err(elf_err)?;
    Ok(!phdrs
        .iter()
        .any(|p| p.p_type(endian) == object::elf::PT_INTERP))
}
