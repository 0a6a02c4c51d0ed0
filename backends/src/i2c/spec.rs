//! Chip specifications as written on the command line (`--chip SPEC`), and
//! the shape of the chip registry ([`CHIPS`](super::CHIPS)) they are parsed
//! against.
//!
//! Syntax, per family in the registry:
//! - `at24:ADDR:MODEL[:file=PATH]`, MODEL one of 24c01 … 24c512, e.g.
//!   `at24:0x50:24c02` or `at24:0x50:24c256:file=eeprom.bin` (PATH is the
//!   rest of the spec and may contain `:`);
//! - `MODEL:ADDR` for a GPIO expander, MODEL one of pca9534, pca9535,
//!   pca9539, pca9554, pca9554a, pca9555, tca6408, tca6416, e.g.
//!   `pca9555:0x20`.
//!
//! In general a family is named by its own name followed by the address
//! and the model ([`Naming::FamilyThenModel`]), or by the model alone
//! followed by the address ([`Naming::Model`]); a family with a backing
//! file takes `:file=PATH` last.
//!
//! ADDR is a 7-bit address, hexadecimal with `0x` or decimal, in the range
//! 0x08..=0x77 (the others are reserved by the I2C specification). A chip
//! that answers several addresses (24c04: 2, 24c08: 4, 24c16: 8) must start
//! on a multiple of that count, as the real chip's address pins allow, and
//! all its addresses must be in range.
//!
//! [`ChipSpec`]'s `Display` writes the canonical form, which parses back to
//! an equal spec.

use std::error::Error;
use std::fmt;
use std::num::ParseIntError;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use super::client::I2cClient;

/// Lowest address a chip may use (0x00..=0x07 are reserved).
pub const FIRST_ADDRESS: u16 = 0x08;
/// Highest address a chip may use (0x78..=0x7f are reserved).
pub const LAST_ADDRESS: u16 = 0x77;

/// The error a family's constructor returns (a backing file that cannot be
/// used).
pub type ChipBuildError = Box<dyn Error + Send + Sync>;

/// A family's constructor: a chip of `model`, with its backing file if the
/// spec has one.
pub type Constructor<M> =
    fn(model: M, file: Option<&Path>) -> Result<Box<dyn I2cClient>, ChipBuildError>;

/// How a spec names a chip of a family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Naming {
    /// `FAMILY:ADDR:MODEL`, e.g. `at24:0x50:24c02`.
    FamilyThenModel,
    /// `MODEL:ADDR`, e.g. `pca9555:0x20`.
    Model,
}

/// The members of a chip family.
pub trait ChipModel: Copy + fmt::Debug + Send + Sync + 'static {
    /// Every model of the family.
    const MODELS: &'static [Self];
    /// The name Linux's driver uses (`24c02`, `pca9555`), also the spec
    /// syntax; matched case-insensitively.
    fn name(self) -> &'static str;
    /// Consecutive 7-bit addresses the model answers from its base address.
    fn address_span(self) -> u16 {
        1
    }
    /// The model called `name` (case-insensitive).
    fn from_name(name: &str) -> Option<Self> {
        Self::MODELS
            .iter()
            .copied()
            .find(|m| m.name().eq_ignore_ascii_case(name))
    }
}

/// One chip family: an entry of the registry. A model file declares its
/// family as a `static`, and the registry lists it.
#[derive(Debug)]
pub struct Family<M: ChipModel> {
    /// Family name (`at24`, `pca953x`): the first field of a
    /// [`Naming::FamilyThenModel`] spec.
    pub name: &'static str,
    /// How a spec names a chip of the family.
    pub naming: Naming,
    /// Whether a spec may end in `:file=PATH` (the chip's contents live in
    /// a file).
    pub backing_file: bool,
    /// Builds a chip.
    pub build: Constructor<M>,
}

/// A registry entry with its model type erased, so that families with
/// different model types share one table. Implemented by [`Family`];
/// models are numbered in the order of [`ChipModel::MODELS`].
pub trait ChipFamily: Sync + fmt::Debug {
    /// Family name.
    fn name(&self) -> &'static str;
    /// How a spec names a chip of the family.
    fn naming(&self) -> Naming;
    /// Whether a spec may end in `:file=PATH`.
    fn backing_file(&self) -> bool;
    /// Number of the model called `name` (case-insensitive).
    fn find(&self, name: &str) -> Option<usize>;
    /// Name of model `model`.
    fn model_name(&self, model: usize) -> &'static str;
    /// Addresses model `model` answers.
    fn address_span(&self, model: usize) -> u16;
    /// Every model name, comma separated.
    fn model_names(&self) -> String;
    /// Builds a chip of model `model`.
    fn build(
        &self,
        model: usize,
        file: Option<&Path>,
    ) -> Result<Box<dyn I2cClient>, ChipBuildError>;
}

impl<M: ChipModel> Family<M> {
    fn model(&self, model: usize) -> Option<M> {
        M::MODELS.get(model).copied()
    }
}

impl<M: ChipModel> ChipFamily for Family<M> {
    fn name(&self) -> &'static str {
        self.name
    }

    fn naming(&self) -> Naming {
        self.naming
    }

    fn backing_file(&self) -> bool {
        self.backing_file
    }

    fn find(&self, name: &str) -> Option<usize> {
        M::MODELS
            .iter()
            .position(|m| m.name().eq_ignore_ascii_case(name))
    }

    fn model_name(&self, model: usize) -> &'static str {
        self.model(model).map_or("", ChipModel::name)
    }

    fn address_span(&self, model: usize) -> u16 {
        self.model(model).map_or(1, ChipModel::address_span)
    }

    fn model_names(&self) -> String {
        let names: Vec<&str> = M::MODELS.iter().map(|m| m.name()).collect();
        names.join(", ")
    }

    fn build(
        &self,
        model: usize,
        file: Option<&Path>,
    ) -> Result<Box<dyn I2cClient>, ChipBuildError> {
        let model = self
            .model(model)
            .ok_or_else(|| format!("{} has no model number {model}", self.name))?;
        (self.build)(model, file)
    }
}

/// The syntax of a family's specs, for messages.
fn syntax(family: &dyn ChipFamily) -> String {
    let file = if family.backing_file() {
        "[:file=PATH]"
    } else {
        ""
    };
    match family.naming() {
        Naming::FamilyThenModel => format!("{}:ADDR:MODEL{file}", family.name()),
        Naming::Model => format!("MODEL:ADDR{file}"),
    }
}

/// Errors parsing a chip spec. Each names the spec and the bad field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    /// Nothing to parse.
    #[error("empty chip spec (expected {expected})")]
    Empty {
        /// The syntax of every family.
        expected: String,
    },
    /// The first field names no chip in the registry.
    #[error("chip spec `{spec}`: unknown chip `{kind}` (expected one of {expected})")]
    UnknownKind {
        /// The whole spec.
        spec: String,
        /// The first field.
        kind: String,
        /// Every first field the registry knows.
        expected: String,
    },
    /// A required field is absent.
    #[error("chip spec `{spec}`: missing {field} (expected {expected})")]
    MissingField {
        /// The whole spec.
        spec: String,
        /// Which field.
        field: &'static str,
        /// The syntax of this kind of spec.
        expected: String,
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
    /// The model field names no model of the family.
    #[error("chip spec `{spec}`: unknown {family} model `{model}` (expected one of {expected})")]
    UnknownModel {
        /// The whole spec.
        spec: String,
        /// The family.
        family: &'static str,
        /// The model field.
        model: String,
        /// The family's models.
        expected: String,
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
    #[error("chip spec `{spec}`: unexpected field `{field}` ({kind} takes {syntax} only)")]
    ExtraField {
        /// The whole spec.
        spec: String,
        /// The model.
        kind: &'static str,
        /// The first extra field.
        field: String,
        /// The syntax of this kind of spec.
        syntax: String,
    },
}

/// A chip could not be built from a valid spec.
#[derive(Debug, thiserror::Error)]
#[error("cannot set up chip `{spec}`")]
pub struct BuildError {
    /// The spec, in canonical form.
    pub spec: String,
    /// Why (the family's constructor's error).
    #[source]
    pub source: ChipBuildError,
}

/// One chip on the virtual I2C bus, as given on the command line.
#[derive(Clone)]
pub struct ChipSpec {
    family: &'static dyn ChipFamily,
    model: usize,
    addr: u16,
    file: Option<PathBuf>,
}

impl PartialEq for ChipSpec {
    fn eq(&self, other: &Self) -> bool {
        self.family.name() == other.family.name()
            && self.model == other.model
            && self.addr == other.addr
            && self.file == other.file
    }
}

impl Eq for ChipSpec {}

impl fmt::Debug for ChipSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChipSpec")
            .field("family", &self.family.name())
            .field("model", &self.model_name())
            .field("addr", &self.addr)
            .field("file", &self.file)
            .finish()
    }
}

impl ChipSpec {
    /// Parses `spec` against `registry` (the program uses
    /// [`CHIPS`](super::CHIPS) through `FromStr`).
    pub fn parse_in(
        spec: &str,
        registry: &'static [&'static dyn ChipFamily],
    ) -> Result<Self, SpecError> {
        if spec.trim().is_empty() {
            let syntaxes: Vec<String> = registry.iter().map(|f| syntax(*f)).collect();
            return Err(SpecError::Empty {
                expected: syntaxes.join(" or "),
            });
        }
        let mut fields = Fields { rest: Some(spec) };
        let kind = fields.next().unwrap_or_default();
        let (family, named_model) = lookup(registry, kind).ok_or_else(|| {
            let kinds: Vec<String> = registry.iter().map(|f| first_fields(*f)).collect();
            SpecError::UnknownKind {
                spec: spec.to_owned(),
                kind: kind.to_owned(),
                expected: kinds.join(", "),
            }
        })?;
        let missing = |field| SpecError::MissingField {
            spec: spec.to_owned(),
            field,
            expected: syntax(family),
        };
        let addr = fields.next_nonempty().ok_or_else(|| missing("address"))?;
        let addr = parse_addr(spec, addr)?;
        let model = match named_model {
            Some(model) => model,
            None => {
                let field = fields.next_nonempty().ok_or_else(|| missing("model"))?;
                family.find(field).ok_or_else(|| SpecError::UnknownModel {
                    spec: spec.to_owned(),
                    family: family.name(),
                    model: field.to_owned(),
                    expected: family.model_names(),
                })?
            }
        };
        let span = family.address_span(model);
        if span == 0 || addr % span != 0 || addr + span - 1 > LAST_ADDRESS {
            return Err(SpecError::BadAddressSpan {
                spec: spec.to_owned(),
                addr,
                model: family.model_name(model),
                span,
            });
        }
        // The option is the rest of the spec: a path may contain `:`.
        let file = match fields.rest {
            None => None,
            Some(option) if family.backing_file() => {
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
            Some(_) => {
                return Err(SpecError::ExtraField {
                    spec: spec.to_owned(),
                    kind: family.model_name(model),
                    field: fields.next().unwrap_or_default().to_owned(),
                    syntax: syntax(family),
                });
            }
        };
        Ok(ChipSpec {
            family,
            model,
            addr,
            file,
        })
    }

    /// Base 7-bit address.
    pub fn addr(&self) -> u16 {
        self.addr
    }

    /// Family name (`at24`, `pca953x`).
    pub fn family(&self) -> &'static str {
        self.family.name()
    }

    /// Model name (`24c02`, `pca9555`).
    pub fn model_name(&self) -> &'static str {
        self.family.model_name(self.model)
    }

    /// Consecutive addresses the chip answers from [`ChipSpec::addr`] up.
    pub fn address_span(&self) -> u16 {
        self.family.address_span(self.model)
    }

    /// The backing file (`file=PATH`), if any.
    pub fn file(&self) -> Option<&Path> {
        self.file.as_deref()
    }

    /// Builds the chip model. A chip with a backing file opens (or creates)
    /// it here.
    pub fn build(&self) -> Result<Box<dyn I2cClient>, BuildError> {
        self.family
            .build(self.model, self.file())
            .map_err(|source| BuildError {
                spec: self.to_string(),
                source,
            })
    }
}

/// The `:`-separated fields of a spec, taken one at a time.
struct Fields<'a> {
    /// What is left after the fields taken so far.
    rest: Option<&'a str>,
}

impl<'a> Fields<'a> {
    fn next(&mut self) -> Option<&'a str> {
        let rest = self.rest?;
        match rest.split_once(':') {
            Some((field, after)) => {
                self.rest = Some(after);
                Some(field)
            }
            None => {
                self.rest = None;
                Some(rest)
            }
        }
    }

    fn next_nonempty(&mut self) -> Option<&'a str> {
        self.next().filter(|f| !f.is_empty())
    }
}

/// The family named by the first field of a spec, and the model when the
/// first field names it.
fn lookup(
    registry: &'static [&'static dyn ChipFamily],
    kind: &str,
) -> Option<(&'static dyn ChipFamily, Option<usize>)> {
    registry.iter().find_map(|family| match family.naming() {
        Naming::FamilyThenModel => family
            .name()
            .eq_ignore_ascii_case(kind)
            .then_some((*family, None)),
        Naming::Model => family.find(kind).map(|model| (*family, Some(model))),
    })
}

/// What a spec of `family` may start with, for messages.
fn first_fields(family: &dyn ChipFamily) -> String {
    match family.naming() {
        Naming::FamilyThenModel => family.name().to_owned(),
        Naming::Model => family.model_names(),
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

impl FromStr for ChipSpec {
    type Err = SpecError;

    fn from_str(spec: &str) -> Result<Self, SpecError> {
        Self::parse_in(spec, super::CHIPS)
    }
}

impl fmt::Display for ChipSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (addr, model) = (self.addr, self.model_name());
        match self.family.naming() {
            Naming::FamilyThenModel => write!(f, "{}:{addr:#04x}:{model}", self.family.name())?,
            Naming::Model => write!(f, "{model}:{addr:#04x}")?,
        }
        if let Some(path) = &self.file {
            write!(f, ":file={}", path.display())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::i2c::CHIPS;
    use crate::i2c::client::I2cError;

    fn parse(s: &str) -> Result<ChipSpec, SpecError> {
        s.parse()
    }

    #[test]
    fn chip_spec_at24_forms_parse() {
        let spec = parse("at24:0x50:24c02").unwrap();
        assert_eq!(
            (spec.family(), spec.addr(), spec.model_name(), spec.file()),
            ("at24", 0x50, "24c02", None)
        );
        let spec = parse("at24:81:24C512:file=dir/e:e.bin").unwrap();
        assert_eq!(
            (spec.family(), spec.addr(), spec.model_name()),
            ("at24", 0x51, "24c512")
        );
        assert_eq!(spec.file(), Some(Path::new("dir/e:e.bin")));
    }

    #[test]
    fn chip_spec_pca953x_forms_parse() {
        let spec = parse("pca9555:0x20").unwrap();
        assert_eq!(
            (spec.family(), spec.addr(), spec.model_name(), spec.file()),
            ("pca953x", 0x20, "pca9555", None)
        );
        let spec = parse("TCA6408:33").unwrap();
        assert_eq!((spec.addr(), spec.model_name()), (33, "tca6408"));
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
        assert_ne!(parse("pca9555:0x20"), parse("pca9535:0x20"));
    }

    #[test]
    fn chip_spec_bad_inputs_name_the_field() {
        let cases: &[(&str, &str)] = &[
            (
                "",
                "empty chip spec (expected at24:ADDR:MODEL[:file=PATH] or MODEL:ADDR)",
            ),
            ("eeprom:0x50", "unknown chip `eeprom`"),
            (
                "foo:0x20",
                "unknown chip `foo` (expected one of at24, pca9534,",
            ),
            ("at24", "missing address"),
            ("at24::24c02", "missing address"),
            ("at24:0x50", "missing model"),
            ("at24:zz:24c02", "address `zz` is not a number"),
            ("at24:0x:24c02", "address `0x` is not a number"),
            ("at24:0x07:24c02", "address 0x07 is outside"),
            ("at24:0x78:24c02", "address 0x78 is outside"),
            ("at24:4294967296:24c02", "is not a number"),
            (
                "at24:0x50:24c03",
                "unknown at24 model `24c03` (expected one of 24c01,",
            ),
            ("at24:0x51:24c04", "a 24c04 answers 2 addresses"),
            ("at24:0x74:24c16", "a 24c16 answers 8 addresses"),
            ("at24:0x50:24c02:size=3", "unknown option `size=3`"),
            ("at24:0x50:24c02:file=", "empty path"),
            ("pca9555", "missing address"),
            (
                "pca9555:0x20:extra",
                "unexpected field `extra` (pca9555 takes MODEL:ADDR only)",
            ),
            ("pca9555:0x20:a:b", "unexpected field `a`"),
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
        let spec = parse(&format!("at24:0x50:24c02:file={}", path.display())).unwrap();
        let err = spec.build().unwrap_err();
        assert!(err.to_string().contains("at24:0x50:24c02:file="), "{err}");
        let source = Error::source(&err).unwrap().to_string();
        assert!(source.contains(&path.display().to_string()), "{source}");
        assert!(source.contains("10 bytes"), "{source}");
    }

    #[test]
    fn chip_registry_first_fields_are_unique() {
        let mut seen = Vec::new();
        for family in CHIPS {
            let firsts: Vec<String> = match family.naming() {
                Naming::FamilyThenModel => vec![family.name().to_lowercase()],
                Naming::Model => family
                    .model_names()
                    .split(", ")
                    .map(str::to_lowercase)
                    .collect(),
            };
            for first in firsts {
                assert!(!seen.contains(&first), "`{first}` names two chips");
                seen.push(first);
            }
        }
    }

    /// A chip family defined in a test: what a new model file declares.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum MockModel {
        Small,
        Wide,
    }

    impl ChipModel for MockModel {
        const MODELS: &'static [Self] = &[MockModel::Small, MockModel::Wide];

        fn name(self) -> &'static str {
            match self {
                MockModel::Small => "mock1",
                MockModel::Wide => "mock4",
            }
        }

        fn address_span(self) -> u16 {
            match self {
                MockModel::Small => 1,
                MockModel::Wide => 4,
            }
        }
    }

    #[derive(Debug)]
    struct MockChip(MockModel);

    impl I2cClient for MockChip {
        fn model(&self) -> &str {
            self.0.name()
        }
        fn write(&mut self, _data: &[u8]) -> Result<(), I2cError> {
            Ok(())
        }
        fn read(&mut self, _buf: &mut [u8]) -> Result<(), I2cError> {
            Ok(())
        }
        fn address_span(&self) -> u16 {
            ChipModel::address_span(self.0)
        }
    }

    fn build_mock(
        model: MockModel,
        _file: Option<&Path>,
    ) -> Result<Box<dyn I2cClient>, ChipBuildError> {
        Ok(Box::new(MockChip(model)))
    }

    static MOCK: Family<MockModel> = Family {
        name: "mock",
        naming: Naming::Model,
        backing_file: false,
        build: build_mock,
    };

    static REGISTRY: &[&dyn ChipFamily] = &[&MOCK];

    #[test]
    fn chip_registry_entry_is_all_a_new_chip_needs() {
        let spec = ChipSpec::parse_in("mock4:0x24", REGISTRY).unwrap();
        assert_eq!(
            (spec.family(), spec.model_name(), spec.address_span()),
            ("mock", "mock4", 4)
        );
        assert_eq!(spec.to_string(), "mock4:0x24");
        assert_eq!(spec.build().unwrap().model(), "mock4");
        let err = ChipSpec::parse_in("mock4:0x25", REGISTRY).unwrap_err();
        assert!(
            matches!(err, SpecError::BadAddressSpan { span: 4, .. }),
            "{err}"
        );
        let err = ChipSpec::parse_in("at24:0x50:24c02", REGISTRY).unwrap_err();
        assert!(
            err.to_string().contains("(expected one of mock1, mock4)"),
            "{err}"
        );
    }
}
