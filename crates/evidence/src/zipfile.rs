//! The pack's zip encoding: one canonical byte string per list of files.
//!
//! The writer pins every field the zip format leaves free (stored, no
//! compression; a fixed 1980-01-01 timestamp; Unix system byte and 0644
//! attributes whatever the host; no ZIP64, no alignment padding, no comment)
//! so that the bytes are a function of the names and contents alone. The
//! verifier re-encodes what it extracted and compares: any byte that a zip
//! reader would skip or repair (a header field, the central directory, a
//! trailing comment, data before the first entry) then still fails.

use std::io::{Cursor, Read, Write};

use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, DateTime, System, ZipArchive, ZipWriter};

/// Regular file, `rw-r--r--`, as Unix external attributes (mode << 16).
const EXTERNAL_ATTRIBUTES: u32 = 0o100_644 << 16;

fn options() -> SimpleFileOptions {
    // Every field set explicitly: the crate's defaults depend on its enabled
    // features (deflate, `time` for "now") and on the host OS.
    SimpleFileOptions::default()
        .compression_method(CompressionMethod::Stored)
        .last_modified_time(DateTime::DEFAULT)
        .system(System::Unix)
        .external_attributes(EXTERNAL_ATTRIBUTES)
        .large_file(false)
}

/// Writes `files` in order as the canonical zip.
pub(crate) fn write(files: &[(&str, &[u8])]) -> Result<Vec<u8>, String> {
    let mut zip = ZipWriter::new(Cursor::new(Vec::new()));
    for (name, data) in files {
        zip.start_file(*name, options())
            .map_err(|e| format!("{name}: {e}"))?;
        zip.write_all(data).map_err(|e| format!("{name}: {e}"))?;
    }
    let out = zip.finish().map_err(|e| e.to_string())?;
    Ok(out.into_inner())
}

/// One file as read back: its raw name and contents.
pub(crate) struct Entry {
    pub name: Vec<u8>,
    pub data: Vec<u8>,
}

/// Reads every entry in central-directory order. Refuses anything but
/// stored entries, so no input can make us inflate more than its own size.
pub(crate) fn read(bytes: &[u8]) -> Result<Vec<Entry>, String> {
    let mut archive =
        ZipArchive::new(Cursor::new(bytes)).map_err(|e| format!("not a readable zip: {e}"))?;
    let mut out = Vec::with_capacity(archive.len().min(64));
    for i in 0..archive.len() {
        let mut file = archive
            .by_index(i)
            .map_err(|e| format!("zip entry {}: {e}", i + 1))?;
        let name = file.name_raw().to_vec();
        let shown = String::from_utf8_lossy(&name).into_owned();
        if file.compression() != CompressionMethod::Stored {
            return Err(format!(
                "{shown:?} is compressed ({}); pack files are stored uncompressed",
                file.compression()
            ));
        }
        let mut data = Vec::new();
        // A stored entry's data lies inside the input: never read past its size.
        (&mut file)
            .take(bytes.len() as u64)
            .read_to_end(&mut data)
            .map_err(|e| format!("{shown:?} cannot be read: {e}"))?;
        out.push(Entry { name, data });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest, Sha256};

    #[test]
    fn round_trips() {
        let files: [(&str, &[u8]); 2] = [("a.txt", b"hello\n"), ("b.json", b"{}")];
        let zip = write(&files).unwrap();
        let back = read(&zip).unwrap();
        assert_eq!(back.len(), 2);
        assert_eq!(back[0].name, b"a.txt");
        assert_eq!(back[1].data, b"{}");
    }

    /// Known answer: a `zip` crate upgrade that changes a single output byte
    /// would make every pack built before it fail the byte-exact check, so
    /// it must fail here first. Computed with this writer, and checked to
    /// list and extract with Info-ZIP `unzip -t` and Python's `zipfile`.
    #[test]
    fn output_is_pinned() {
        let files: [(&str, &[u8]); 2] = [("a.txt", b"hello\n"), ("b.json", b"{}")];
        let zip = write(&files).unwrap();
        assert_eq!(zip.len(), GOLDEN_LEN);
        let hex: String = Sha256::digest(&zip)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(hex, GOLDEN_SHA256);
    }

    const GOLDEN_LEN: usize = 204;
    const GOLDEN_SHA256: &str = "3cd99d6aae47e1ae46df5949c4095051bc855e57db0d3ca6c32076bb4df7bc05";

    #[test]
    fn refuses_garbage() {
        assert!(read(b"").is_err());
        assert!(read(b"PK\x05\x06").is_err());
        assert!(read(&[0u8; 100]).is_err());
    }
}
