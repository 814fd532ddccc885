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
    use std::fmt::Write;
    h.iter()
        .fold(String::with_capacity(h.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// Parses a 32-byte hash from lowercase or uppercase hex.
pub fn hash_from_hex(s: &str) -> Option<Hash> {
    if s.len() != 64 || !s.is_ascii() {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in s.as_bytes().chunks(2).enumerate() {
        let pair = std::str::from_utf8(pair).ok()?;
        out[i] = u8::from_str_radix(pair, 16).ok()?;
    }
    Some(out)
}
