//! The tamper-evident audit log: what an event is, how entries are hashed
//! into an RFC 9162 Merkle tree, how checkpoints are signed (C2SP
//! tlog-checkpoint), and how a whole log is verified offline.

pub mod checkpoint;
pub mod event;
pub mod export;
pub mod merkle;
pub mod trace;
pub mod verify;

pub use event::{Actor, AuditEvent, EventKind, LogEntry};
pub use merkle::Hash;

/// Lowercase hex, the form hashes take in storage and exports.
pub fn to_hex(h: &[u8]) -> String {
    // A table rather than `write!("{:02x}")`: every appended entry and every
    // verified one goes through here, and the formatter cost more than the hash.
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(h.len() * 2);
    for b in h {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 0x0f)] as char);
    }
    s
}

/// Parses a 32-byte hash from lowercase or uppercase hex.
pub fn hash_from_hex(s: &str) -> Option<Hash> {
    fn nibble(c: u8) -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            b'A'..=b'F' => Some(c - b'A' + 10),
            _ => None,
        }
    }
    let s = s.as_bytes();
    if s.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (o, pair) in out.iter_mut().zip(s.chunks_exact(2)) {
        *o = nibble(pair[0])? << 4 | nibble(pair[1])?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn hex_round_trips(h in any::<[u8; 32]>()) {
            let text = to_hex(&h);
            prop_assert_eq!(text.len(), 64);
            prop_assert!(text.bytes().all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c)));
            prop_assert_eq!(hash_from_hex(&text), Some(h));
            prop_assert_eq!(hash_from_hex(&text.to_uppercase()), Some(h));
        }

        #[test]
        fn anything_but_64_hex_digits_is_refused(s in "\\PC{0,70}") {
            let hex = s.len() == 64 && s.bytes().all(|c| c.is_ascii_hexdigit());
            prop_assert_eq!(hash_from_hex(&s).is_some(), hex);
        }
    }

    #[test]
    fn signs_and_spaces_are_not_hex() {
        // `u8::from_str_radix` takes "+f"; a stored hash must be digits only.
        let mut s = "ab".repeat(32);
        s.replace_range(0..2, "+f");
        assert_eq!(hash_from_hex(&s), None);
        s.replace_range(0..2, " f");
        assert_eq!(hash_from_hex(&s), None);
        assert_eq!(to_hex(&[0x00, 0x0f, 0xf0, 0xff]), "000ff0ff");
    }
}
