//! Signed tree heads as C2SP `tlog-checkpoint`s in C2SP `signed-note` format.
//!
//! Using the standard checkpoint/note encoding (rather than a bespoke JSON
//! envelope) lets existing transparency-log tooling — witnesses, monitors,
//! Go's `golang.org/x/mod/sumdb/note` — read and cosign Mandate's audit log.
//! Parsing is deliberately strict: a signed artifact should have exactly one
//! textual form, so anything non-canonical is refused rather than repaired.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};

use super::merkle::Hash;

/// Upper bound on a note's size, so hostile input cannot make us buffer or
/// scan unbounded text (the spec asks verifiers to apply such a limit).
pub const MAX_NOTE_SIZE: usize = 64 * 1024;

/// Upper bound on signature lines; the spec requires accepting at least 16.
pub const MAX_SIGNATURES: usize = 100;

/// Signature lines start with U+2014 EM DASH and a space.
const SIG_PREFIX: &str = "\u{2014} ";

/// Signature type byte for Ed25519 in key ids and verifier keys.
const ED25519_TYPE: u8 = 0x01;

/// Everything that can go wrong building, parsing or verifying a checkpoint.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum CheckpointError {
    #[error("invalid key name {0:?}: must be non-empty and contain no whitespace or '+'")]
    InvalidKeyName(String),
    #[error("invalid checkpoint origin: must be non-empty and contain no control characters")]
    InvalidOrigin,
    #[error("note is {len} bytes, larger than the {max}-byte limit")]
    NoteTooLarge { len: usize, max: usize },
    #[error("note contains forbidden control character U+{0:04X} (only newline is allowed)")]
    ControlCharacter(u32),
    #[error("note does not end with a newline")]
    MissingFinalNewline,
    #[error("note has no blank line separating the text from the signatures")]
    MissingSeparator,
    #[error("note has no signature lines")]
    NoSignatures,
    #[error("note has more than {max} signature lines")]
    TooManySignatures { max: usize },
    #[error("malformed signature line {line}: {reason}")]
    MalformedSignatureLine { line: usize, reason: &'static str },
    #[error("checkpoint body must have origin, tree size and root hash lines")]
    MissingBodyLines,
    #[error("checkpoint body line {0} is empty")]
    EmptyBodyLine(usize),
    #[error("tree size {0:?} is not a canonical decimal u64")]
    InvalidSize(String),
    #[error("root hash is not canonical standard base64")]
    InvalidRootEncoding,
    #[error("root hash is {0} bytes, expected 32")]
    InvalidRootLength(usize),
    #[error("malformed verifier key: {0}")]
    InvalidVkey(&'static str),
    #[error("unsupported signature type 0x{0:02x} (only Ed25519, 0x01, is supported)")]
    UnsupportedKeyType(u8),
    #[error("verifier key id does not match its name and public key")]
    KeyIdMismatch,
    #[error("invalid Ed25519 public key")]
    InvalidPublicKey,
    #[error("checkpoint fields do not match the signed note text")]
    CheckpointMismatch,
    #[error("note carries more than one signature from key {0:?}")]
    DuplicateSignature(String),
    #[error("signature from known key {0:?} does not verify")]
    BadSignature(String),
    #[error("note is not signed by any known key")]
    UnknownKey,
}

/// A transparency-log tree head: which log, how many leaves, which root.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Checkpoint {
    pub origin: String,
    pub size: u64,
    pub root: Hash,
}

impl Checkpoint {
    /// The note text: `<origin>\n<size>\n<base64 root>\n`. We never emit
    /// extension lines: they are not auditable by log monitors.
    pub fn body(&self) -> String {
        format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.size,
            B64.encode(self.root)
        )
    }

    /// Checks the origin can be encoded; a checkpoint failing this produces a
    /// note that [`SignedCheckpoint::parse`] would refuse.
    pub fn validate(&self) -> Result<(), CheckpointError> {
        if self.origin.is_empty() || self.origin.chars().any(|c| (c as u32) < 0x20) {
            return Err(CheckpointError::InvalidOrigin);
        }
        Ok(())
    }

    /// Parses a checkpoint body. Extension lines are accepted but not
    /// represented here; they stay in [`SignedCheckpoint::note`].
    pub fn parse_body(body: &str) -> Result<Self, CheckpointError> {
        check_chars(body)?;
        let text = body
            .strip_suffix('\n')
            .ok_or(CheckpointError::MissingFinalNewline)?;
        let lines: Vec<&str> = text.split('\n').collect();
        if let Some(i) = lines.iter().position(|l| l.is_empty()) {
            return Err(CheckpointError::EmptyBodyLine(i + 1));
        }
        let [origin, size, root, ..] = lines.as_slice() else {
            return Err(CheckpointError::MissingBodyLines);
        };
        Ok(Checkpoint {
            origin: (*origin).to_owned(),
            size: parse_size(size)?,
            root: parse_root(root)?,
        })
    }
}

fn parse_size(s: &str) -> Result<u64, CheckpointError> {
    let err = || CheckpointError::InvalidSize(s.to_owned());
    // `u64::from_str` also accepts a leading '+'; require bare digits.
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) || (s.len() > 1 && s.starts_with('0'))
    {
        return Err(err());
    }
    s.parse().map_err(|_| err())
}

fn parse_root(s: &str) -> Result<Hash, CheckpointError> {
    let bytes = B64
        .decode(s)
        .map_err(|_| CheckpointError::InvalidRootEncoding)?;
    let len = bytes.len();
    bytes
        .try_into()
        .map_err(|_| CheckpointError::InvalidRootLength(len))
}

/// Rejects ASCII control characters other than newline (includes CR), as the
/// signed-note spec requires.
fn check_chars(text: &str) -> Result<(), CheckpointError> {
    match text.chars().find(|&c| c != '\n' && (c as u32) < 0x20) {
        Some(c) => Err(CheckpointError::ControlCharacter(c as u32)),
        None => Ok(()),
    }
}

/// Key names appear in signature lines and vkeys, where spaces and '+' are
/// field separators.
fn valid_key_name(name: &str) -> bool {
    !name.is_empty() && !name.chars().any(|c| c.is_whitespace() || c == '+')
}

/// `SHA-256(name || "\n" || 0x01 || public key)[:4]`; ties a signature line
/// to one (name, algorithm, key) triple.
fn ed25519_key_id(name: &str, key: &VerifyingKey) -> [u8; 4] {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update([b'\n', ED25519_TYPE]);
    h.update(key.as_bytes());
    let digest: [u8; 32] = h.finalize().into();
    [digest[0], digest[1], digest[2], digest[3]]
}

/// Signs checkpoints as a named Ed25519 note key.
#[derive(Clone)]
pub struct NoteSigner {
    name: String,
    key: SigningKey,
}

impl std::fmt::Debug for NoteSigner {
    // Never print key material.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NoteSigner")
            .field("name", &self.name)
            .field("key_id", &hex4(&self.key_id()))
            .finish_non_exhaustive()
    }
}

impl NoteSigner {
    pub fn new(name: String, key: SigningKey) -> Result<Self, CheckpointError> {
        if !valid_key_name(&name) {
            return Err(CheckpointError::InvalidKeyName(name));
        }
        Ok(Self { name, key })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn key_id(&self) -> [u8; 4] {
        ed25519_key_id(&self.name, &self.key.verifying_key())
    }

    /// The public half, for distribution to verifiers.
    pub fn verifier(&self) -> NoteVerifier {
        NoteVerifier {
            name: self.name.clone(),
            key_id: self.key_id(),
            key: self.key.verifying_key(),
        }
    }

    /// Signs `cp.body()`. The origin should pass [`Checkpoint::validate`],
    /// otherwise the note will not parse back.
    pub fn sign(&self, cp: &Checkpoint) -> SignedCheckpoint {
        SignedCheckpoint {
            checkpoint: cp.clone(),
            note: self.sign_note(&cp.body()),
        }
    }

    /// Signs any text as a signed note (the text must end with a newline
    /// and contain no blank line), e.g. an evidence pack's manifest.
    pub fn sign_note(&self, body: &str) -> String {
        let sig = self.key.sign(body.as_bytes());
        let mut blob = Vec::with_capacity(4 + 64);
        blob.extend_from_slice(&self.key_id());
        blob.extend_from_slice(&sig.to_bytes());
        format!("{body}\n{SIG_PREFIX}{} {}\n", self.name, B64.encode(blob))
    }
}

/// A trusted Ed25519 note key: name, key id and public key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoteVerifier {
    name: String,
    key_id: [u8; 4],
    key: VerifyingKey,
}

impl NoteVerifier {
    pub fn new(name: String, key: VerifyingKey) -> Result<Self, CheckpointError> {
        if !valid_key_name(&name) {
            return Err(CheckpointError::InvalidKeyName(name));
        }
        let key_id = ed25519_key_id(&name, &key);
        Ok(Self { name, key_id, key })
    }

    /// Parses `<name>+<8 hex key id>+<base64(0x01 || public key)>`. The key id
    /// is recomputed and must match, so a typo cannot silently pin a key
    /// under the wrong id.
    pub fn parse_vkey(vkey: &str) -> Result<Self, CheckpointError> {
        // The name has no '+', but the base64 key may: split only twice.
        let (name, rest) = vkey
            .split_once('+')
            .ok_or(CheckpointError::InvalidVkey("missing '+'"))?;
        let (id_hex, key_b64) = rest
            .split_once('+')
            .ok_or(CheckpointError::InvalidVkey("missing second '+'"))?;
        if !valid_key_name(name) {
            return Err(CheckpointError::InvalidKeyName(name.to_owned()));
        }
        if id_hex.len() != 8
            || !id_hex
                .bytes()
                .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        {
            return Err(CheckpointError::InvalidVkey(
                "key id must be 8 lowercase hex digits",
            ));
        }
        let id = u32::from_str_radix(id_hex, 16)
            .map_err(|_| CheckpointError::InvalidVkey("key id must be 8 lowercase hex digits"))?
            .to_be_bytes();
        let raw = B64
            .decode(key_b64)
            .map_err(|_| CheckpointError::InvalidVkey("key is not canonical standard base64"))?;
        let (&ty, key_bytes) = raw
            .split_first()
            .ok_or(CheckpointError::InvalidVkey("empty key"))?;
        if ty != ED25519_TYPE {
            return Err(CheckpointError::UnsupportedKeyType(ty));
        }
        let key_bytes: &[u8; 32] = key_bytes
            .try_into()
            .map_err(|_| CheckpointError::InvalidVkey("Ed25519 key must be 32 bytes"))?;
        let key =
            VerifyingKey::from_bytes(key_bytes).map_err(|_| CheckpointError::InvalidPublicKey)?;
        let verifier = Self::new(name.to_owned(), key)?;
        if verifier.key_id != id {
            return Err(CheckpointError::KeyIdMismatch);
        }
        Ok(verifier)
    }

    pub fn to_vkey(&self) -> String {
        let mut raw = Vec::with_capacity(33);
        raw.push(ED25519_TYPE);
        raw.extend_from_slice(self.key.as_bytes());
        format!("{}+{}+{}", self.name, hex4(&self.key_id), B64.encode(raw))
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn key_id(&self) -> [u8; 4] {
        self.key_id
    }

    pub fn key(&self) -> &VerifyingKey {
        &self.key
    }
}

fn hex4(id: &[u8; 4]) -> String {
    format!("{:08x}", u32::from_be_bytes(*id))
}

/// A checkpoint together with its exact signed-note text.
///
/// The note is kept verbatim because signatures cover its bytes (including
/// any extension lines we do not model); `verify` always works from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedCheckpoint {
    pub checkpoint: Checkpoint,
    pub note: String,
}

/// One parsed signature line.
struct SigLine<'a> {
    name: &'a str,
    key_id: [u8; 4],
    sig: Vec<u8>,
}

/// Splits and checks a note; returns the signed text and its signature lines.
fn split_note(note: &str) -> Result<(&str, Vec<SigLine<'_>>), CheckpointError> {
    if note.len() > MAX_NOTE_SIZE {
        return Err(CheckpointError::NoteTooLarge {
            len: note.len(),
            max: MAX_NOTE_SIZE,
        });
    }
    check_chars(note)?;
    if !note.ends_with('\n') {
        return Err(CheckpointError::MissingFinalNewline);
    }
    // The text ends at the *last* blank line; signature lines are never empty.
    let split = note
        .rfind("\n\n")
        .ok_or(CheckpointError::MissingSeparator)?;
    let body = &note[..=split];
    let sig_block = &note[split + 2..];
    let Some(sig_block) = sig_block.strip_suffix('\n') else {
        return Err(CheckpointError::NoSignatures);
    };
    let mut sigs = Vec::new();
    for (i, line) in sig_block.split('\n').enumerate() {
        if i == MAX_SIGNATURES {
            return Err(CheckpointError::TooManySignatures {
                max: MAX_SIGNATURES,
            });
        }
        sigs.push(parse_sig_line(line, i + 1)?);
    }
    Ok((body, sigs))
}

fn parse_sig_line(line: &str, n: usize) -> Result<SigLine<'_>, CheckpointError> {
    let bad = |reason| CheckpointError::MalformedSignatureLine { line: n, reason };
    let rest = line
        .strip_prefix(SIG_PREFIX)
        .ok_or(bad("must start with an em dash and a space"))?;
    let (name, b64) = rest
        .split_once(' ')
        .ok_or(bad("missing space between key name and signature"))?;
    if !valid_key_name(name) {
        return Err(bad("invalid key name"));
    }
    let raw = B64
        .decode(b64)
        .map_err(|_| bad("signature is not canonical standard base64"))?;
    if raw.len() < 5 {
        return Err(bad("signature is shorter than a key id plus one byte"));
    }
    let key_id = [raw[0], raw[1], raw[2], raw[3]];
    Ok(SigLine {
        name,
        key_id,
        sig: raw[4..].to_vec(),
    })
}

impl SignedCheckpoint {
    /// Strictly parses a signed checkpoint note. Signatures are only checked
    /// for shape here; call [`SignedCheckpoint::verify`] before trusting it.
    pub fn parse(note: &str) -> Result<Self, CheckpointError> {
        let (body, _) = split_note(note)?;
        let checkpoint = Checkpoint::parse_body(body)?;
        Ok(Self {
            checkpoint,
            note: note.to_owned(),
        })
    }

    /// The signed text (the checkpoint body, extension lines included).
    pub fn body(&self) -> Option<&str> {
        split_note(&self.note).ok().map(|(body, _)| body)
    }

    /// Extension lines of the signed body, if any.
    pub fn extension_lines(&self) -> Vec<&str> {
        self.body()
            .map(|b| b.trim_end_matches('\n').split('\n').skip(3).collect())
            .unwrap_or_default()
    }

    /// Verifies the note against trusted keys and returns the verifier of the
    /// first (in note order) known key whose signature verified.
    ///
    /// Per the signed-note spec, lines from unknown keys (name or id differ)
    /// are ignored, but any failing signature from a known key rejects the
    /// whole note: a bad signature under a trusted key is an attack, not noise.
    pub fn verify<'v>(
        &self,
        verifiers: &'v [NoteVerifier],
    ) -> Result<&'v NoteVerifier, CheckpointError> {
        let (body, sigs) = split_note(&self.note)?;
        // The public fields could have been edited after parsing; only the
        // note text is what was signed.
        if Checkpoint::parse_body(body)? != self.checkpoint {
            return Err(CheckpointError::CheckpointMismatch);
        }
        verify_signatures(body, &sigs, verifiers)
    }
}

/// Verifies any signed note (see [`NoteSigner::sign_note`]) and returns its
/// signed text with the key that vouched for it.
pub fn verify_note<'n, 'v>(
    note: &'n str,
    verifiers: &'v [NoteVerifier],
) -> Result<(&'n str, &'v NoteVerifier), CheckpointError> {
    let (body, sigs) = split_note(note)?;
    let v = verify_signatures(body, &sigs, verifiers)?;
    Ok((body, v))
}

fn verify_signatures<'v>(
    body: &str,
    sigs: &[SigLine<'_>],
    verifiers: &'v [NoteVerifier],
) -> Result<&'v NoteVerifier, CheckpointError> {
    let mut seen: Vec<usize> = Vec::new();
    for line in sigs {
        let Some(idx) = verifiers
            .iter()
            .position(|v| v.name == line.name && v.key_id == line.key_id)
        else {
            continue;
        };
        if seen.contains(&idx) {
            return Err(CheckpointError::DuplicateSignature(line.name.to_owned()));
        }
        seen.push(idx);
        let v = &verifiers[idx];
        let bad = || CheckpointError::BadSignature(v.name.clone());
        let sig_bytes: &[u8; 64] = line.sig.as_slice().try_into().map_err(|_| bad())?;
        let sig = Signature::from_bytes(sig_bytes);
        v.key
            .verify_strict(body.as_bytes(), &sig)
            .map_err(|_| bad())?;
    }
    seen.first()
        .map(|&i| &verifiers[i])
        .ok_or(CheckpointError::UnknownKey)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::merkle::{MerkleTree, leaf_hash};
    use proptest::prelude::*;

    fn signer(name: &str, seed: u8) -> NoteSigner {
        NoteSigner::new(name.into(), SigningKey::from_bytes(&[seed; 32])).unwrap()
    }

    fn sample_checkpoint() -> Checkpoint {
        let tree = MerkleTree::from_leaves((0u32..7).map(|i| leaf_hash(&i.to_be_bytes())));
        Checkpoint {
            origin: "mandate.example/audit".into(),
            size: tree.len(),
            root: tree.root(),
        }
    }

    #[test]
    fn known_answer_key_id_and_vkey() {
        // Computed independently with Python (hashlib + `cryptography`):
        // pk = Ed25519PrivateKey.from_private_bytes(b"\x01"*32) raw public key,
        // sha256(b"example.com/log\n\x01" + pk).digest()[:4].
        let s = signer("example.com/log", 0x01);
        assert_eq!(s.key_id(), [0x9b, 0xe5, 0xd3, 0xc6]);
        assert_eq!(
            s.verifier().to_vkey(),
            "example.com/log+9be5d3c6+AYqI4910CfGV/VLbLTy6XXLKZwm/HZQSG/N0iAG0D29c"
        );
    }

    #[test]
    fn known_answer_note_from_independent_signer() {
        // Signed by Python's `cryptography` over the body for size 5 and the
        // empty-tree root; Ed25519 is deterministic so we must match byte for byte.
        let note = "example.com/log\n5\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n\n\
                    \u{2014} example.com/log m+XTxnqzHXpbe41wmH8pbF3T53qfwDIhCAYj0tR5MraQRpkVH8PMJDifzMrwndFHJrn+O/USbcOeKqf99Br22IGRAwQ=\n";
        let s = signer("example.com/log", 0x01);
        let cp = Checkpoint {
            origin: "example.com/log".into(),
            size: 5,
            root: crate::audit::merkle::empty_root(),
        };
        assert_eq!(s.sign(&cp).note, note);
        let parsed = SignedCheckpoint::parse(note).unwrap();
        assert_eq!(parsed.checkpoint, cp);
        let vkey = NoteVerifier::parse_vkey(
            "example.com/log+9be5d3c6+AYqI4910CfGV/VLbLTy6XXLKZwm/HZQSG/N0iAG0D29c",
        )
        .unwrap();
        assert_eq!(parsed.verify(std::slice::from_ref(&vkey)).unwrap(), &vkey);
    }

    #[test]
    fn sign_parse_verify_round_trip() {
        let s = signer("mandate.example/audit", 7);
        let cp = sample_checkpoint();
        let signed = s.sign(&cp);
        assert!(signed.note.starts_with(&cp.body()));
        let parsed = SignedCheckpoint::parse(&signed.note).unwrap();
        assert_eq!(parsed, signed);
        assert_eq!(Checkpoint::parse_body(&cp.body()).unwrap(), cp);
        let v = s.verifier();
        assert_eq!(
            parsed.verify(std::slice::from_ref(&v)).unwrap().name(),
            "mandate.example/audit"
        );
    }

    #[test]
    fn tampered_fields_fail_verification() {
        let s = signer("log", 7);
        let cp = sample_checkpoint();
        let signed = s.sign(&cp);
        let v = [s.verifier()];
        let other_root = B64.encode(leaf_hash(b"x"));
        for (from, to) in [
            ("\n7\n".to_owned(), "\n8\n".to_owned()),
            (B64.encode(cp.root), other_root),
            (
                "mandate.example/audit\n".to_owned(),
                "mandate.example/audiT\n".to_owned(),
            ),
        ] {
            let tampered = signed.note.replacen(&from, &to, 1);
            assert_ne!(tampered, signed.note);
            let parsed = SignedCheckpoint::parse(&tampered).unwrap();
            assert_eq!(
                parsed.verify(&v),
                Err(CheckpointError::BadSignature("log".into()))
            );
        }
        // Editing the struct without the note is caught too.
        let mut edited = signed.clone();
        edited.checkpoint.size += 1;
        assert_eq!(edited.verify(&v), Err(CheckpointError::CheckpointMismatch));
    }

    #[test]
    fn same_name_different_key_is_refused() {
        let good = signer("log", 1);
        let evil = signer("log", 2);
        let cp = sample_checkpoint();
        let v = [good.verifier()];
        // Different key => different key id => not a known key.
        assert_eq!(evil.sign(&cp).verify(&v), Err(CheckpointError::UnknownKey));
        // Forged line claiming the good key's id, carrying the evil signature.
        let evil_note = evil.sign(&cp).note;
        let (body, sigs) = split_note(&evil_note).unwrap();
        let mut blob = good.key_id().to_vec();
        blob.extend_from_slice(&sigs[0].sig);
        let forged = format!("{body}\n{SIG_PREFIX}log {}\n", B64.encode(blob));
        let parsed = SignedCheckpoint::parse(&forged).unwrap();
        assert_eq!(
            parsed.verify(&v),
            Err(CheckpointError::BadSignature("log".into()))
        );
    }

    #[test]
    fn unknown_keys_are_ignored_but_not_sufficient() {
        let log = signer("log", 1);
        let witness = signer("witness.example", 3);
        let cp = sample_checkpoint();
        let signed = log.sign(&cp);
        assert_eq!(
            signed.verify(&[witness.verifier()]),
            Err(CheckpointError::UnknownKey)
        );
        assert_eq!(signed.verify(&[]), Err(CheckpointError::UnknownKey));

        // A cosigned note: an unknown witness line plus the known log line.
        let wline = witness.sign(&cp).note[cp.body().len() + 1..].to_owned();
        let cosigned = format!("{}{wline}", signed.note);
        let parsed = SignedCheckpoint::parse(&cosigned).unwrap();
        assert_eq!(parsed.verify(&[log.verifier()]).unwrap().name(), "log");
        // With both trusted, the first verified line (in note order) is reported.
        assert_eq!(
            parsed
                .verify(&[witness.verifier(), log.verifier()])
                .unwrap()
                .name(),
            "log"
        );

        // The same known signature twice is malformed.
        let logline = &signed.note[cp.body().len() + 1..];
        let doubled = format!("{}{logline}", signed.note);
        let parsed = SignedCheckpoint::parse(&doubled).unwrap();
        assert_eq!(
            parsed.verify(&[log.verifier()]),
            Err(CheckpointError::DuplicateSignature("log".into()))
        );
    }

    #[test]
    fn vkey_round_trip_and_errors() {
        let v = signer("example.com/log", 9).verifier();
        let vkey = v.to_vkey();
        assert_eq!(NoteVerifier::parse_vkey(&vkey).unwrap(), v);
        assert_eq!(
            NoteVerifier::new("example.com/log".into(), *v.key()).unwrap(),
            v
        );

        let (name, rest) = vkey.split_once('+').unwrap();
        let (id, key) = rest.split_once('+').unwrap();
        let raw = B64.decode(key).unwrap();
        let err = |s: &str| NoteVerifier::parse_vkey(s).unwrap_err();
        assert_eq!(
            err(&format!("other+{id}+{key}")),
            CheckpointError::KeyIdMismatch
        );
        assert_eq!(
            err(&format!("{name}+00000000+{key}")),
            CheckpointError::KeyIdMismatch
        );
        assert!(matches!(
            err(&format!("{name}+{}+{key}", id.to_uppercase())),
            CheckpointError::InvalidVkey(_)
        ));
        assert!(matches!(
            err(&format!("{name}+{}+{key}", &id[..7])),
            CheckpointError::InvalidVkey(_)
        ));
        assert!(matches!(
            err(&format!("{name}+{id}")),
            CheckpointError::InvalidVkey(_)
        ));
        assert!(matches!(
            err(&format!("+{id}+{key}")),
            CheckpointError::InvalidKeyName(_)
        ));
        assert!(matches!(
            err(&format!("a b+{id}+{key}")),
            CheckpointError::InvalidKeyName(_)
        ));
        let mut wrong_type = raw.clone();
        wrong_type[0] = 0x02;
        assert_eq!(
            err(&format!("{name}+{id}+{}", B64.encode(&wrong_type))),
            CheckpointError::UnsupportedKeyType(2)
        );
        assert!(matches!(
            err(&format!("{name}+{id}+{}", B64.encode(&raw[..32]))),
            CheckpointError::InvalidVkey(_)
        ));
        assert!(matches!(
            err(&format!("{name}+{id}+{}", &key[..key.len() - 1])),
            CheckpointError::InvalidVkey(_)
        ));
    }

    #[test]
    fn signer_rejects_bad_names() {
        for name in ["", "a b", "a+b", "a\tb", "a\u{a0}b", "a\nb"] {
            let key = SigningKey::from_bytes(&[1; 32]);
            assert_eq!(
                NoteSigner::new(name.into(), key).unwrap_err(),
                CheckpointError::InvalidKeyName(name.into())
            );
        }
    }

    #[test]
    fn extension_lines_are_preserved() {
        let s = signer("log", 4);
        let cp = sample_checkpoint();
        let body = format!("{}ext one\next two\n", cp.body());
        let sig = s.key.sign(body.as_bytes());
        let mut blob = s.key_id().to_vec();
        blob.extend_from_slice(&sig.to_bytes());
        let note = format!("{body}\n{SIG_PREFIX}log {}\n", B64.encode(blob));
        let parsed = SignedCheckpoint::parse(&note).unwrap();
        assert_eq!(parsed.checkpoint, cp);
        assert_eq!(parsed.note, note);
        assert_eq!(parsed.body(), Some(body.as_str()));
        assert_eq!(parsed.extension_lines(), vec!["ext one", "ext two"]);
        parsed.verify(&[s.verifier()]).unwrap();
    }

    #[test]
    fn parse_rejects_malformed_notes() {
        use CheckpointError as E;
        let s = signer("log", 5);
        let cp = sample_checkpoint();
        let good = s.sign(&cp).note;
        let body = cp.body();
        let sigline = &good[body.len() + 1..];
        let root = B64.encode(cp.root);
        let with_body = |b: &str| format!("{b}\n{sigline}");
        let parse = |n: &str| SignedCheckpoint::parse(n).unwrap_err();
        let line_err = |e: E| matches!(e, E::MalformedSignatureLine { line: 1, .. });

        assert_eq!(parse(good.trim_end_matches('\n')), E::MissingFinalNewline);
        assert_eq!(parse(&format!("{body}{sigline}")), E::MissingSeparator);
        assert_eq!(
            parse(&good.replace('\n', "\r\n")),
            E::ControlCharacter(0x0d)
        );
        assert_eq!(
            parse(&good.replacen("log", "l\tog", 1)),
            E::ControlCharacter(0x09)
        );
        assert_eq!(parse(&format!("{body}\n")), E::NoSignatures);
        assert!(line_err(parse(&format!("{body}\n- log AAAA\n"))));
        assert!(line_err(parse(&format!("{body}\n\u{2014}log AAAAAAAA\n"))));
        assert!(line_err(parse(&format!("{body}\n\u{2014} log\n"))));
        assert!(line_err(parse(&format!("{body}\n\u{2014} log AAAA\n")))); // 3 bytes: too short
        assert!(line_err(parse(&format!("{body}\n\u{2014} log !!!!!!!!\n"))));
        assert!(line_err(parse(&format!("{body}\n\u{2014} log AAAAAAA\n")))); // missing padding
        assert!(line_err(parse(&format!("{body}\n\u{2014} l+g AAAAAAAA\n"))));
        assert!(line_err(parse(&format!(
            "{body}\n\u{2014} log AAAAAAAA extra\n"
        ))));
        assert!(line_err(parse(&format!("{body}\n\u{2014}  AAAAAAAA\n"))));

        assert_eq!(
            parse(&with_body(&format!("x\n007\n{root}\n"))),
            E::InvalidSize("007".into())
        );
        assert_eq!(
            parse(&with_body(&format!("x\n+7\n{root}\n"))),
            E::InvalidSize("+7".into())
        );
        assert_eq!(
            parse(&with_body(&format!("x\n-1\n{root}\n"))),
            E::InvalidSize("-1".into())
        );
        assert_eq!(
            parse(&with_body(&format!("x\n 7\n{root}\n"))),
            E::InvalidSize(" 7".into())
        );
        assert_eq!(
            parse(&with_body(&format!("x\n18446744073709551616\n{root}\n"))),
            E::InvalidSize("18446744073709551616".into())
        );
        assert!(
            SignedCheckpoint::parse(&with_body(&format!("x\n18446744073709551615\n{root}\n")))
                .is_ok()
        );
        assert!(SignedCheckpoint::parse(&with_body(&format!("x\n0\n{root}\n"))).is_ok());
        assert_eq!(parse(&with_body("x\n7\n")), E::MissingBodyLines);
        assert_eq!(
            parse(&with_body(&format!("\n7\n{root}\n"))),
            E::EmptyBodyLine(1)
        );
        assert_eq!(
            parse(&with_body(&format!("x\n7\n{}\n", B64.encode([0u8; 31])))),
            E::InvalidRootLength(31)
        );
        assert_eq!(
            parse(&with_body(&format!("x\n7\n{}\n", B64.encode([0u8; 33])))),
            E::InvalidRootLength(33)
        );
        assert_eq!(
            parse(&with_body("x\n7\nnot base64!\n")),
            E::InvalidRootEncoding
        );
        assert_eq!(
            parse(&with_body(&format!(
                "x\n7\n{}\n",
                root.trim_end_matches('=')
            ))),
            E::InvalidRootEncoding
        );

        let huge = format!("{}{}", "a".repeat(MAX_NOTE_SIZE), good);
        assert!(matches!(parse(&huge), E::NoteTooLarge { .. }));
        let many = format!("{good}{}", sigline.repeat(MAX_SIGNATURES));
        assert_eq!(
            parse(&many),
            E::TooManySignatures {
                max: MAX_SIGNATURES
            }
        );
        // The spec's floor of 16 signatures is accepted.
        assert!(SignedCheckpoint::parse(&format!("{good}{}", sigline.repeat(15))).is_ok());
    }

    fn origin_strategy() -> impl Strategy<Value = String> {
        "[^\\x00-\\x1f]{1,40}"
    }

    proptest! {
        #[test]
        fn parse_never_panics(s in any::<String>()) {
            let _ = SignedCheckpoint::parse(&s);
        }

        #[test]
        fn parse_never_panics_on_mutated_notes(
            pos in any::<prop::sample::Index>(),
            cut in 0usize..8,
            insert in "(\\PC|\n|\u{2014} |\r){0,12}",
        ) {
            let note = signer("log", 6).sign(&sample_checkpoint()).note;
            let bounds: Vec<usize> = note.char_indices().map(|(i, _)| i).chain([note.len()]).collect();
            let at = pos.index(bounds.len());
            let end = bounds[(at + cut).min(bounds.len() - 1)];
            let mutated = format!("{}{}{}", &note[..bounds[at]], insert, &note[end..]);
            if let Ok(parsed) = SignedCheckpoint::parse(&mutated) {
                prop_assert_eq!(SignedCheckpoint::parse(&parsed.note).unwrap(), parsed.clone());
                let _ = parsed.verify(&[signer("log", 6).verifier()]);
            }
        }

        #[test]
        fn arbitrary_checkpoints_round_trip(
            origin in origin_strategy(),
            size in any::<u64>(),
            root in any::<[u8; 32]>(),
            seed in any::<[u8; 32]>(),
        ) {
            let cp = Checkpoint { origin, size, root };
            prop_assert_eq!(cp.validate(), Ok(()));
            prop_assert_eq!(Checkpoint::parse_body(&cp.body()).unwrap(), cp.clone());
            let s = NoteSigner::new("prop.example/log".into(), SigningKey::from_bytes(&seed)).unwrap();
            let signed = s.sign(&cp);
            let parsed = SignedCheckpoint::parse(&signed.note).unwrap();
            prop_assert_eq!(&parsed, &signed);
            let v = s.verifier();
            prop_assert_eq!(parsed.verify(std::slice::from_ref(&v)).unwrap(), &v);
            prop_assert_eq!(NoteVerifier::parse_vkey(&v.to_vkey()).unwrap(), v);
        }
    }
}
