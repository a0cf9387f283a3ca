//! Small files the node keeps in its data directory besides the chain store (the ban list, the
//! saved mempool): written atomically, read with a size bound, set aside when unreadable.

use std::io::Write;
use std::path::{Path, PathBuf};

/// Writes `bytes` to `path` so that a crash leaves either the old file or the new one, never
/// half of one: a temporary file next to it, flushed to disk, then renamed over it.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let temp = sibling(path, "tmp");
    let result = (|| {
        let mut file = std::fs::File::create(&temp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&temp, path)?;
        // Make the rename itself durable; best effort where directories cannot be opened.
        if let Some(dir) = path.parent() {
            if let Ok(dir) = std::fs::File::open(dir) {
                let _ = dir.sync_all();
            }
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    result
}

/// Why [`read_bounded`] returned no bytes.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("{bytes} bytes, over the {limit}-byte limit")]
    TooLarge { bytes: u64, limit: u64 },
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// The file's bytes, `None` if it does not exist; refuses a file over `limit` bytes before
/// reading it, and reads at most `limit + 1` bytes in case it grows meanwhile.
pub fn read_bounded(path: &Path, limit: u64) -> Result<Option<Vec<u8>>, ReadError> {
    use std::io::Read;
    let file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let bytes = file.metadata()?.len();
    if bytes > limit {
        return Err(ReadError::TooLarge { bytes, limit });
    }
    let mut out = Vec::with_capacity(bytes as usize);
    file.take(limit + 1).read_to_end(&mut out)?;
    if out.len() as u64 > limit {
        return Err(ReadError::TooLarge {
            bytes: out.len() as u64,
            limit,
        });
    }
    Ok(Some(out))
}

/// Renames an unreadable file to `<name>.bad` (replacing an older one) so the node can start
/// without it and the operator can still look at it. Returns the new path.
pub fn set_aside(path: &Path) -> std::io::Result<PathBuf> {
    let aside = sibling(path, "bad");
    std::fs::rename(path, &aside)?;
    Ok(aside)
}

fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".");
    name.push(suffix);
    path.with_file_name(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_replaces_and_bounded_read_refuses_large_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.dat");
        assert!(read_bounded(&path, 10).unwrap().is_none());
        write_atomic(&path, b"one").unwrap();
        write_atomic(&path, b"two!").unwrap();
        assert_eq!(read_bounded(&path, 4).unwrap().unwrap(), b"two!");
        assert!(!dir.path().join("f.dat.tmp").exists());
        assert!(matches!(
            read_bounded(&path, 3),
            Err(ReadError::TooLarge { bytes: 4, .. })
        ));
        let aside = set_aside(&path).unwrap();
        assert_eq!(aside, dir.path().join("f.dat.bad"));
        assert!(!path.exists() && aside.exists());
    }
}
