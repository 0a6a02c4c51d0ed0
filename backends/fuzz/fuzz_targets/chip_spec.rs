//! Fuzzes the `--chip` spec parser: arbitrary text never panics, an accepted
//! spec has a usable address range, and its canonical form parses back to
//! the same spec and prints the same again.

#![no_main]

use dangle_backends::i2c::spec::{ChipSpec, FIRST_ADDRESS, LAST_ADDRESS};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    let Ok(spec) = text.parse::<ChipSpec>() else {
        return;
    };
    let span = spec.address_span();
    assert!(span >= 1);
    assert!(spec.addr() >= FIRST_ADDRESS);
    assert!(spec.addr() + span - 1 <= LAST_ADDRESS);
    assert_eq!(spec.addr() % span, 0);

    let canonical = spec.to_string();
    let again: ChipSpec = canonical.parse().expect("canonical form parses");
    assert_eq!(again, spec);
    assert_eq!(again.to_string(), canonical);

    // Building touches the file system only with file=, so only build the rest.
    if spec.file().is_none() {
        let chip = spec.build().expect("a chip without a file always builds");
        assert_eq!(chip.model(), spec.model_name());
        assert_eq!(chip.address_span(), span);
    }
});
