//! Hostile input: the verifier never panics, and never passes a pack that is
//! not byte-for-byte the one that was built. Mirrored by the `pack` fuzz target.

mod common;

use std::sync::OnceLock;

use common::*;
use mandate_evidence::pack::{repack, unpack};
use mandate_evidence::verify;
use proptest::prelude::*;

fn good_pack() -> &'static [u8] {
    static PACK: OnceLock<Vec<u8>> = OnceLock::new();
    PACK.get_or_init(|| Scenario::new().pack())
}

/// One edit of a byte string.
#[derive(Debug, Clone)]
enum Edit {
    Set(prop::sample::Index, u8),
    Insert(prop::sample::Index, Vec<u8>),
    Delete(prop::sample::Index, usize),
    Truncate(prop::sample::Index),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (any::<prop::sample::Index>(), any::<u8>()).prop_map(|(i, b)| Edit::Set(i, b)),
        (
            any::<prop::sample::Index>(),
            prop::collection::vec(any::<u8>(), 1..8)
        )
            .prop_map(|(i, b)| Edit::Insert(i, b)),
        (any::<prop::sample::Index>(), 1usize..64).prop_map(|(i, n)| Edit::Delete(i, n)),
        any::<prop::sample::Index>().prop_map(Edit::Truncate),
    ]
}

fn apply(data: &mut Vec<u8>, e: &Edit) {
    match e {
        Edit::Set(i, b) => {
            if !data.is_empty() {
                let at = i.index(data.len());
                data[at] = *b;
            }
        }
        Edit::Insert(i, b) => {
            let at = i.index(data.len() + 1);
            data.splice(at..at, b.iter().copied());
        }
        Edit::Delete(i, n) => {
            if !data.is_empty() {
                let at = i.index(data.len());
                let end = (at + n).min(data.len());
                data.drain(at..end);
            }
        }
        Edit::Truncate(i) => {
            let at = i.index(data.len() + 1);
            data.truncate(at);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn arbitrary_bytes_never_panic_or_pass(data in prop::collection::vec(any::<u8>(), 0..4096)) {
        let v = verify(&data, None);
        prop_assert!(!v.passed());
        prop_assert_eq!(v.checks.len(), mandate_evidence::verify::CHECKS.len());
    }

    #[test]
    fn mutated_packs_never_pass(edits in prop::collection::vec(edit(), 1..4)) {
        let good = good_pack();
        let mut data = good.to_vec();
        for e in &edits {
            apply(&mut data, e);
        }
        prop_assume!(data != good);
        prop_assert!(!verify(&data, Some(&pinned())).passed());
        prop_assert!(!verify(&data, None).passed());
    }

    /// Edits inside one file, re-zipped canonically: the zip layer is then
    /// flawless and the signatures and contents checks must catch it.
    #[test]
    fn mutated_files_never_pass(file in 0usize..8, edits in prop::collection::vec(edit(), 1..4)) {
        let files = unpack(good_pack()).unwrap();
        let mut changed = files.clone();
        for e in &edits {
            apply(&mut changed[file].1, e);
        }
        prop_assume!(changed[file].1 != files[file].1);
        let list: Vec<(&str, &[u8])> =
            changed.iter().map(|(n, d)| (n.as_str(), d.as_slice())).collect();
        let zip = repack(&list).unwrap();
        prop_assert!(!verify(&zip, Some(&pinned())).passed());
        prop_assert!(!verify(&zip, None).passed());
    }
}
