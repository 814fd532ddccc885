//! Policy text as pushed by an admin (or anyone who can get a file pushed):
//! parsing never panics, every refusal has a problem with a valid position,
//! and accepted text re-parses to the same version. Mirrored by the
//! `the_parser_survives_*` proptests in tests/props.rs.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mandate_policy::PolicySet;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match PolicySet::parse(text) {
        Ok(set) => {
            let again = PolicySet::parse(set.text()).expect("accepted text re-parses");
            assert_eq!(again.hash(), set.hash());
        }
        Err(e) => {
            assert!(!e.problems.is_empty());
            for p in &e.problems {
                if let Some(loc) = p.location {
                    assert!(loc.line >= 1 && loc.column >= 1);
                }
            }
        }
    }
});
