//! Chip specifications as written on the command line: `--chip SPEC`.
//!
//! Syntax:
//! - `at24:ADDR:MODEL[:file=PATH]`, MODEL one of 24c01 … 24c512, e.g.
//!   `at24:0x50:24c02` or `at24:0x50:24c256:file=eeprom.bin` (PATH is the
//!   rest of the spec and may contain `:`);
//! - `MODEL:ADDR` for a GPIO expander, MODEL one of pca9534, pca9535,
//!   pca9539, pca9554, pca9554a, pca9555, tca6408, tca6416, e.g.
//!   `pca9555:0x20`.
//!
//! ADDR is a 7-bit address, hexadecimal with `0x` or decimal, in the range
//! 0x08..=0x77 (the others are reserved by the I2C specification). A chip
//! that answers several addresses (24c04: 2, 24c08: 4, 24c16: 8) must start
//! on a multiple of that count, as the real chip's address pins allow, and
//! all its addresses must be in range.
//!
//! [`ChipSpec`]'s `Display` writes the canonical form, which parses back to
//! an equal spec.

use std::fmt;
use std::num::ParseIntError;
use std::path::PathBuf;
use std::str::FromStr;

use super::at24::{At24, At24Error, At24Model};
use super::client::I2cClient;
use super::pca953x::{Pca953x, Pca953xModel};

/// Lowest address a chip may use (0x00..=0x07 are reserved).
pub const FIRST_ADDRESS: u16 = 0x08;
/// Highest address a chip may use (0x78..=0x7f are reserved).
pub const LAST_ADDRESS: u16 = 0x77;

/// Errors parsing a chip spec. Each names the spec and the bad field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    /// Nothing to parse.
    #[error("empty chip spec (expected at24:ADDR:MODEL[:file=PATH] or MODEL:ADDR)")]
    Empty,
    /// The first field is no chip kind we know.
    #[error(
        "chip spec `{spec}`: unknown chip `{kind}` (expected at24 or one of {})",
        pca953x_names()
    )]
    UnknownKind {
        /// The whole spec.
        spec: String,
        /// The first field.
        kind: String,
    },
    /// A required field is absent.
    #[error("chip spec `{spec}`: missing {field} (expected {expected})")]
    MissingField {
        /// The whole spec.
        spec: String,
        /// Which field.
        field: &'static str,
        /// The syntax of this kind of spec.
        expected: &'static str,
    },
    /// The address field is not a number.
    #[error("chip spec `{spec}`: address `{value}` is not a number (write 0x50 or 80)")]
    BadAddress {
        /// The whole spec.
        spec: String,
        /// The address field.
        value: String,
        /// The parse failure.
        #[source]
        source: ParseIntError,
    },
    /// The address is outside the usable 7-bit range.
    #[error("chip spec `{spec}`: address {addr:#04x} is outside 0x08..=0x77 (7-bit, not reserved)")]
    AddressOutOfRange {
        /// The whole spec.
        spec: String,
        /// The address.
        addr: u32,
    },
    /// A multi-address chip does not start on a multiple of its address
    /// count, or runs past the last address.
    #[error(
        "chip spec `{spec}`: a {model} answers {span} addresses, so its address must be a multiple of {span} with all of them in 0x08..=0x77, not {addr:#04x}"
    )]
    BadAddressSpan {
        /// The whole spec.
        spec: String,
        /// The address.
        addr: u16,
        /// The model.
        model: &'static str,
        /// Addresses the model answers.
        span: u16,
    },
    /// The AT24 model field is unknown.
    #[error(
        "chip spec `{spec}`: unknown at24 model `{model}` (expected one of {})",
        at24_names()
    )]
    UnknownAt24Model {
        /// The whole spec.
        spec: String,
        /// The model field.
        model: String,
    },
    /// An option field is unknown.
    #[error("chip spec `{spec}`: unknown option `{option}` (expected file=PATH)")]
    UnknownOption {
        /// The whole spec.
        spec: String,
        /// The option field.
        option: String,
    },
    /// `file=` with nothing after it.
    #[error("chip spec `{spec}`: empty path in file=")]
    EmptyPath {
        /// The whole spec.
        spec: String,
    },
    /// A field after the last one this kind takes.
    #[error("chip spec `{spec}`: unexpected field `{field}` ({kind} takes MODEL:ADDR only)")]
    ExtraField {
        /// The whole spec.
        spec: String,
        /// The model.
        kind: &'static str,
        /// The first extra field.
        field: String,
    },
}

fn at24_names() -> String {
    At24Model::ALL.map(At24Model::name).join(", ")
}

fn pca953x_names() -> String {
    Pca953xModel::ALL.map(Pca953xModel::name).join(", ")
}

/// Errors building a chip from a valid spec.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The AT24's backing file is unusable.
    #[error("cannot set up chip `{spec}`")]
    At24 {
        /// The spec, in canonical form.
        spec: String,
        /// Why.
        #[source]
        source: At24Error,
    },
}

const AT24_SYNTAX: &str = "at24:ADDR:MODEL[:file=PATH]";
const PCA953X_SYNTAX: &str = "MODEL:ADDR";

/// One chip on the virtual I2C bus, as given on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChipSpec {
    /// An AT24 EEPROM.
    At24 {
        /// Base 7-bit address.
        addr: u16,
        /// Which member of the family.
        model: At24Model,
        /// Backing file, written through.
        file: Option<PathBuf>,
    },
    /// A PCA953x-family GPIO expander.
    Pca953x {
        /// 7-bit address.
        addr: u16,
        /// Which member of the family.
        model: Pca953xModel,
    },
}

impl ChipSpec {
    /// Base 7-bit address.
    pub fn addr(&self) -> u16 {
        match self {
            Self::At24 { addr, .. } | Self::Pca953x { addr, .. } => *addr,
        }
    }

    /// Model name (`24c02`, `pca9555`).
    pub fn model_name(&self) -> &'static str {
        match self {
            Self::At24 { model, .. } => model.name(),
            Self::Pca953x { model, .. } => model.name(),
        }
    }

    /// Consecutive addresses the chip answers from [`ChipSpec::addr`] up.
    pub fn address_span(&self) -> u16 {
        match self {
            Self::At24 { model, .. } => model.address_span(),
            Self::Pca953x { .. } => 1,
        }
    }

    /// Builds the chip model. An AT24 with a backing file opens (or
    /// creates) it here.
    pub fn build(&self) -> Result<Box<dyn I2cClient>, BuildError> {
        Ok(match self {
            Self::At24 { model, file, .. } => match file {
                None => Box::new(At24::new(*model)),
                Some(path) => {
                    Box::new(At24::with_backing_file(*model, path).map_err(|source| {
                        BuildError::At24 {
                            spec: self.to_string(),
                            source,
                        }
                    })?)
                }
            },
            Self::Pca953x { model, .. } => Box::new(Pca953x::new(*model)),
        })
    }
}

fn parse_addr(spec: &str, value: &str) -> Result<u16, SpecError> {
    let parsed = match value
        .strip_prefix("0x")
        .or_else(|| value.strip_prefix("0X"))
    {
        Some(hex) => u32::from_str_radix(hex, 16),
        None => value.parse::<u32>(),
    };
    let addr = parsed.map_err(|source| SpecError::BadAddress {
        spec: spec.to_owned(),
        value: value.to_owned(),
        source,
    })?;
    if !(u32::from(FIRST_ADDRESS)..=u32::from(LAST_ADDRESS)).contains(&addr) {
        return Err(SpecError::AddressOutOfRange {
            spec: spec.to_owned(),
            addr,
        });
    }
    // In range, so it fits.
    Ok(addr as u16)
}

fn missing(spec: &str, field: &'static str, expected: &'static str) -> SpecError {
    SpecError::MissingField {
        spec: spec.to_owned(),
        field,
        expected,
    }
}

impl FromStr for ChipSpec {
    type Err = SpecError;

    fn from_str(spec: &str) -> Result<Self, SpecError> {
        if spec.trim().is_empty() {
            return Err(SpecError::Empty);
        }
        let mut fields = spec.splitn(4, ':');
        let kind = fields.next().unwrap_or_default();
        if kind.eq_ignore_ascii_case("at24") {
            let addr = fields
                .next()
                .filter(|f| !f.is_empty())
                .ok_or_else(|| missing(spec, "address", AT24_SYNTAX))?;
            let addr = parse_addr(spec, addr)?;
            let model_field = fields
                .next()
                .filter(|f| !f.is_empty())
                .ok_or_else(|| missing(spec, "model", AT24_SYNTAX))?;
            let model =
                At24Model::from_name(model_field).ok_or_else(|| SpecError::UnknownAt24Model {
                    spec: spec.to_owned(),
                    model: model_field.to_owned(),
                })?;
            let span = model.address_span();
            if addr % span != 0 || addr + span - 1 > LAST_ADDRESS {
                return Err(SpecError::BadAddressSpan {
                    spec: spec.to_owned(),
                    addr,
                    model: model.name(),
                    span,
                });
            }
            let file = match fields.next() {
                None => None,
                Some(option) => {
                    let path =
                        option
                            .strip_prefix("file=")
                            .ok_or_else(|| SpecError::UnknownOption {
                                spec: spec.to_owned(),
                                option: option.to_owned(),
                            })?;
                    if path.is_empty() {
                        return Err(SpecError::EmptyPath {
                            spec: spec.to_owned(),
                        });
                    }
                    Some(PathBuf::from(path))
                }
            };
            return Ok(Self::At24 { addr, model, file });
        }
        let model = Pca953xModel::from_name(kind).ok_or_else(|| SpecError::UnknownKind {
            spec: spec.to_owned(),
            kind: kind.to_owned(),
        })?;
        let addr = fields
            .next()
            .filter(|f| !f.is_empty())
            .ok_or_else(|| missing(spec, "address", PCA953X_SYNTAX))?;
        let addr = parse_addr(spec, addr)?;
        if let Some(field) = fields.next() {
            return Err(SpecError::ExtraField {
                spec: spec.to_owned(),
                kind: model.name(),
                field: field.to_owned(),
            });
        }
        Ok(Self::Pca953x { addr, model })
    }
}

impl fmt::Display for ChipSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::At24 { addr, model, file } => {
                write!(f, "at24:{addr:#04x}:{model}")?;
                if let Some(path) = file {
                    write!(f, ":file={}", path.display())?;
                }
                Ok(())
            }
            Self::Pca953x { addr, model } => write!(f, "{model}:{addr:#04x}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<ChipSpec, SpecError> {
        s.parse()
    }

    #[test]
    fn chip_spec_at24_forms_parse() {
        assert_eq!(
            parse("at24:0x50:24c02").unwrap(),
            ChipSpec::At24 {
                addr: 0x50,
                model: At24Model::C02,
                file: None
            }
        );
        assert_eq!(
            parse("at24:81:24C512:file=dir/e:e.bin").unwrap(),
            ChipSpec::At24 {
                addr: 0x51,
                model: At24Model::C512,
                file: Some(PathBuf::from("dir/e:e.bin"))
            }
        );
    }

    #[test]
    fn chip_spec_pca953x_forms_parse() {
        assert_eq!(
            parse("pca9555:0x20").unwrap(),
            ChipSpec::Pca953x {
                addr: 0x20,
                model: Pca953xModel::Pca9555
            }
        );
        assert_eq!(
            parse("tca6408:33").unwrap(),
            ChipSpec::Pca953x {
                addr: 33,
                model: Pca953xModel::Tca6408
            }
        );
    }

    #[test]
    fn chip_spec_display_round_trips() {
        for text in [
            "at24:0x50:24c02",
            "at24:0x08:24c16",
            "at24:0x77:24c01:file=a b/c:d.bin",
            "pca9555:0x20",
            "pca9554a:0x38",
        ] {
            let spec = parse(text).unwrap();
            assert_eq!(spec.to_string(), text);
            assert_eq!(parse(&spec.to_string()).unwrap(), spec);
        }
        // Decimal input comes back canonical (hex).
        assert_eq!(parse("pca9539:116").unwrap().to_string(), "pca9539:0x74");
    }

    #[test]
    fn chip_spec_bad_inputs_name_the_field() {
        let cases: &[(&str, &str)] = &[
            ("", "empty chip spec"),
            ("eeprom:0x50", "unknown chip `eeprom`"),
            ("at24", "missing address"),
            ("at24::24c02", "missing address"),
            ("at24:0x50", "missing model"),
            ("at24:zz:24c02", "address `zz` is not a number"),
            ("at24:0x:24c02", "address `0x` is not a number"),
            ("at24:0x07:24c02", "address 0x07 is outside"),
            ("at24:0x78:24c02", "address 0x78 is outside"),
            ("at24:4294967296:24c02", "is not a number"),
            ("at24:0x50:24c03", "unknown at24 model `24c03`"),
            ("at24:0x51:24c04", "a 24c04 answers 2 addresses"),
            ("at24:0x74:24c16", "a 24c16 answers 8 addresses"),
            ("at24:0x50:24c02:size=3", "unknown option `size=3`"),
            ("at24:0x50:24c02:file=", "empty path"),
            ("pca9555", "missing address"),
            ("pca9555:0x20:extra", "unexpected field `extra`"),
            ("pca9555:300", "address 0x12c is outside"),
        ];
        for (input, needle) in cases {
            let err = parse(input).unwrap_err().to_string();
            assert!(err.contains(needle), "{input:?}: {err}");
            if !input.is_empty() {
                assert!(err.contains(&format!("`{input}`")), "{input:?}: {err}");
            }
        }
    }

    #[test]
    fn chip_spec_build_makes_the_named_model() {
        let chip = parse("at24:0x50:24c08").unwrap().build().unwrap();
        assert_eq!((chip.model(), chip.address_span()), ("24c08", 4));
        let chip = parse("pca9535:0x21").unwrap().build().unwrap();
        assert_eq!((chip.model(), chip.address_span()), ("pca9535", 1));
    }

    #[test]
    fn chip_spec_build_with_bad_backing_file_names_spec_and_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("e.bin");
        std::fs::write(&path, [0; 10]).unwrap();
        let spec = ChipSpec::At24 {
            addr: 0x50,
            model: At24Model::C02,
            file: Some(path.clone()),
        };
        let err = spec.build().unwrap_err();
        assert!(err.to_string().contains("at24:0x50:24c02:file="), "{err}");
        let source = std::error::Error::source(&err).unwrap().to_string();
        assert!(source.contains(&path.display().to_string()), "{source}");
        assert!(source.contains("10 bytes"), "{source}");
    }
}
