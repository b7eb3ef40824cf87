//! Small helpers more than one stage needs: the atomic file write, short
//! hex digests, and retry backoff.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::Path;
use std::time::Duration;

use sha2::{Digest, Sha256};

/// Writes `bytes` to `path` so that readers see the old or the new content,
/// never a mix, even across a crash: write a temporary file, fsync it,
/// rename it over `path`, fsync the directory.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let result = (|| {
        let mut file = File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::rename(&tmp, path)?;
        File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// The first `bytes` bytes of the SHA-256 of `data`, in lowercase hex: a
/// short name that tells contents apart (not a security check).
pub fn sha256_hex_prefix(data: &[u8], bytes: usize) -> String {
    hex::encode(&Sha256::digest(data)[..bytes])
}

/// The wait before retry number `failures + 1`: `min` doubled for each
/// failure so far, at most `max`.
pub fn backoff(failures: u32, min: Duration, max: Duration) -> Duration {
    min.saturating_mul(2u32.saturating_pow(failures)).min(max)
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_its_bound() {
        let (min, max) = (Duration::from_millis(500), Duration::from_secs(30));
        let waits: Vec<u128> = (0..8).map(|n| backoff(n, min, max).as_millis()).collect();
        assert_eq!(waits, [500, 1000, 2000, 4000, 8000, 16000, 30000, 30000]);
        assert_eq!(backoff(u32::MAX, min, max), max);
    }

    #[test]
    fn hex_prefix_of_a_known_digest() {
        // sha256("abc") = ba7816bf 8f01cfea ...
        assert_eq!(sha256_hex_prefix(b"abc", 4), "ba7816bf");
        assert_eq!(sha256_hex_prefix(b"abc", 8), "ba7816bf8f01cfea");
    }

    #[test]
    fn write_atomic_replaces_the_file_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.json");
        write_atomic(&path, b"old").unwrap();
        write_atomic(&path, b"new").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"new");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
