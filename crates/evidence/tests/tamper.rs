//! Any single changed byte of a pack fails verification: in file data, in
//! local headers, in the central directory and in the end record alike.

use std::collections::BTreeMap;

mod common;

use common::*;
use mandate_evidence::verify;

#[test]
fn flipping_any_single_byte_fails() {
    let zip = Scenario::new().pack();
    assert!(verify(&zip, Some(&pinned())).passed());
    let mut caught_by: BTreeMap<&str, usize> = BTreeMap::new();
    let mut mutated = zip.clone();
    for i in 0..zip.len() {
        // Two flips per position: the low bit (a digit or a length off by
        // one) and every bit. Unpinned is the weaker verifier: whatever it
        // refuses, a pinned verifier refuses too (it runs the same checks,
        // and additionally fails when the pack's key is not the pinned one).
        for mask in [0x01, 0xff] {
            mutated[i] ^= mask;
            let v = verify(&mutated, None);
            assert!(!v.passed(), "flipping byte {i} with {mask:#04x} passed");
            *caught_by
                .entry(v.failures().next().unwrap().name)
                .or_default() += 1;
            mutated[i] ^= mask;
        }
    }
    assert_eq!(mutated, zip);
    // Both layers are exercised: the zip reader (CRC, structure) and the
    // canonical re-encoding (fields a reader ignores).
    assert!(caught_by.contains_key("files"), "{caught_by:?}");
    assert!(caught_by.contains_key("byte-exact"), "{caught_by:?}");
    // Spot-check the pinned verifier on the same flips of the headers.
    let key = pinned();
    for i in (0..zip.len()).step_by(97) {
        mutated[i] ^= 0xff;
        assert!(
            !verify(&mutated, Some(&key)).passed(),
            "byte {i} passed pinned"
        );
        mutated[i] ^= 0xff;
    }
}

#[test]
fn truncating_or_appending_fails() {
    let zip = Scenario::new().pack();
    for cut in [1, 2, 22, zip.len() / 2, zip.len() - 1] {
        assert!(!verify(&zip[..zip.len() - cut], None).passed(), "cut {cut}");
    }
    let mut longer = zip.clone();
    longer.push(0);
    assert!(!verify(&longer, None).passed());
    let mut prefixed = vec![0u8; 16];
    prefixed.extend_from_slice(&zip);
    assert!(!verify(&prefixed, None).passed());
}
