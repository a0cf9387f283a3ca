//! The wallet's secret key on disk.
//!
//! # Format
//!
//! One line: the 32-byte secp256k1 secret key as 64 lowercase hexadecimal digits, followed by a
//! single `\n`. Nothing else: no network, no label, no encryption. The network comes from the
//! chain parameters, so the same key file gives a `bcrt1…` address on a devnet and a `bc1…`
//! address on a chain whose parameters say `bitcoin`. On reading, upper-case digits and a
//! missing or `\r\n` line end are accepted; anything else is refused.
//!
//! # Permissions
//!
//! On Unix the file is created with mode `0600` and with `O_EXCL` (it never replaces an
//! existing file or follows a symlink planted at its path). Loading refuses a file that group or
//! others may read or write, as `ssh` does: a key file that others could read may already be
//! lost, and one they could write may have been swapped.

use bitcoin::secp256k1::rand::Rng;
use bitcoin::secp256k1::SecretKey;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use thiserror::Error;

/// Hex digits of the key: 32 bytes.
pub const KEY_HEX_CHARS: usize = 64;

/// Largest file [`load`] reads. A key file is 65 bytes; a bigger file is not a key file, and
/// there is no reason to read all of it to say so.
pub const KEY_FILE_BYTES_MAX: u64 = 256;

/// The mode a key file is created with on Unix: owner read and write only.
#[cfg(unix)]
pub const KEY_FILE_MODE: u32 = 0o600;

#[derive(Debug, Error)]
pub enum KeyFileError {
    #[error("key file {path} already exists; refusing to overwrite it")]
    AlreadyExists { path: PathBuf },
    #[error("key file {path} does not exist")]
    Missing { path: PathBuf },
    #[error("key file {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error(
        "key file {path} has mode {mode:03o}; group and others must have no access (chmod 600 it)"
    )]
    PermissionsTooOpen { path: PathBuf, mode: u32 },
    #[error("key file {path} is {len} bytes or more; a key file is {} bytes", KEY_HEX_CHARS + 1)]
    TooLarge { path: PathBuf, len: u64 },
    #[error("key file {path} is malformed: {reason}")]
    Malformed {
        path: PathBuf,
        reason: KeyFormatError,
    },
}

/// Why the contents of a key file are not a key; see the module documentation for the format.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum KeyFormatError {
    #[error("expected {KEY_HEX_CHARS} hex digits and a line end, found {found} characters")]
    WrongLength { found: usize },
    #[error("not hexadecimal: {0}")]
    NotHex(String),
    #[error("not a valid secp256k1 secret key (zero or not below the group order)")]
    OutOfRange,
}

/// The file contents for `key`: see the module documentation.
pub fn encode(key: &SecretKey) -> String {
    format!("{}\n", hex::encode(key.secret_bytes()))
}

/// Parses file contents written by [`encode`].
pub fn decode(text: &str) -> Result<SecretKey, KeyFormatError> {
    let line = text
        .strip_suffix('\n')
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .unwrap_or(text);
    if line.len() != KEY_HEX_CHARS {
        return Err(KeyFormatError::WrongLength {
            found: text.chars().count(),
        });
    }
    let bytes = hex::decode(line).map_err(|e| KeyFormatError::NotHex(e.to_string()))?;
    SecretKey::from_slice(&bytes).map_err(|_| KeyFormatError::OutOfRange)
}

/// Generates a key from `rng` and writes it to a new file at `path` (see [`write_new`]).
pub fn create<R: Rng + ?Sized>(path: &Path, rng: &mut R) -> Result<SecretKey, KeyFileError> {
    let key = SecretKey::new(rng);
    write_new(path, &key)?;
    Ok(key)
}

/// Writes `key` to a file that must not exist yet, with mode `0600` on Unix, and syncs it to
/// disk. If writing fails part way, the partial file is removed.
pub fn write_new(path: &Path, key: &SecretKey) -> Result<(), KeyFileError> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(KEY_FILE_MODE);
    }
    let mut file = options.open(path).map_err(|source| match source.kind() {
        io::ErrorKind::AlreadyExists => KeyFileError::AlreadyExists {
            path: path.to_owned(),
        },
        _ => KeyFileError::Io {
            path: path.to_owned(),
            source,
        },
    })?;
    let written = file
        .write_all(encode(key).as_bytes())
        .and_then(|()| file.sync_all());
    if let Err(source) = written {
        drop(file);
        // Best effort: the write error is the one worth reporting.
        let _ = std::fs::remove_file(path);
        return Err(KeyFileError::Io {
            path: path.to_owned(),
            source,
        });
    }
    Ok(())
}

/// Reads the key at `path`, refusing files others can access (Unix), oversized files and
/// anything not in the documented format.
pub fn load(path: &Path) -> Result<SecretKey, KeyFileError> {
    let io_error = |source: io::Error| match source.kind() {
        io::ErrorKind::NotFound => KeyFileError::Missing {
            path: path.to_owned(),
        },
        _ => KeyFileError::Io {
            path: path.to_owned(),
            source,
        },
    };
    let file = File::open(path).map_err(io_error)?;
    check_permissions(path, &file)?;
    let mut bytes = Vec::new();
    file.take(KEY_FILE_BYTES_MAX)
        .read_to_end(&mut bytes)
        .map_err(io_error)?;
    if bytes.len() as u64 >= KEY_FILE_BYTES_MAX {
        return Err(KeyFileError::TooLarge {
            path: path.to_owned(),
            len: bytes.len() as u64,
        });
    }
    let malformed = |reason| KeyFileError::Malformed {
        path: path.to_owned(),
        reason,
    };
    let text = String::from_utf8(bytes)
        .map_err(|_| malformed(KeyFormatError::NotHex("not UTF-8 text".into())))?;
    decode(&text).map_err(malformed)
}

#[cfg(unix)]
fn check_permissions(path: &Path, file: &File) -> Result<(), KeyFileError> {
    use std::os::unix::fs::PermissionsExt;
    let mode = file
        .metadata()
        .map_err(|source| KeyFileError::Io {
            path: path.to_owned(),
            source,
        })?
        .permissions()
        .mode()
        & 0o777;
    if mode & 0o077 != 0 {
        return Err(KeyFileError::PermissionsTooOpen {
            path: path.to_owned(),
            mode,
        });
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_permissions(_path: &Path, _file: &File) -> Result<(), KeyFileError> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use bitcoin::secp256k1::rand::rngs::StdRng;
    use bitcoin::secp256k1::rand::SeedableRng;

    #[test]
    fn created_key_loads_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wallet.key");
        let key = create(&path, &mut StdRng::seed_from_u64(1)).unwrap();
        assert_eq!(load(&path).unwrap(), key);
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text, format!("{}\n", hex::encode(key.secret_bytes())));
    }

    #[cfg(unix)]
    #[test]
    fn key_file_is_created_with_mode_0600() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wallet.key");
        create(&path, &mut StdRng::seed_from_u64(2)).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    #[test]
    fn existing_file_is_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wallet.key");
        let first = create(&path, &mut StdRng::seed_from_u64(3)).unwrap();
        let err = create(&path, &mut StdRng::seed_from_u64(4)).unwrap_err();
        assert!(matches!(err, KeyFileError::AlreadyExists { .. }), "{err}");
        assert_eq!(load(&path).unwrap(), first);
    }

    #[cfg(unix)]
    #[test]
    fn symlink_at_key_path_is_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("elsewhere");
        let path = dir.path().join("wallet.key");
        std::os::unix::fs::symlink(&target, &path).unwrap();
        let err = create(&path, &mut StdRng::seed_from_u64(5)).unwrap_err();
        assert!(matches!(err, KeyFileError::AlreadyExists { .. }), "{err}");
        assert!(!target.exists());
    }

    #[test]
    fn missing_file_is_reported_as_missing() {
        let dir = tempfile::tempdir().unwrap();
        let err = load(&dir.path().join("nope.key")).unwrap_err();
        assert!(matches!(err, KeyFileError::Missing { .. }), "{err}");
    }

    /// Writes `contents` with mode 0600, so that only the contents are under test.
    fn write_private(path: &Path, contents: &[u8]) {
        let mut options = OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        options.open(path).unwrap().write_all(contents).unwrap();
    }

    #[test]
    fn malformed_contents_are_rejected_with_reason() {
        let good = "11".repeat(32);
        let cases: Vec<(Vec<u8>, KeyFormatError)> = vec![
            (b"".to_vec(), KeyFormatError::WrongLength { found: 0 }),
            (
                format!("{good}\n\n").into_bytes(),
                KeyFormatError::WrongLength { found: 66 },
            ),
            (
                format!("{good} \n").into_bytes(),
                KeyFormatError::WrongLength { found: 66 },
            ),
            (
                format!("zz{}\n", &good[2..]).into_bytes(),
                KeyFormatError::NotHex("Invalid character 'z' at position 0".into()),
            ),
            (
                format!("{}\n", "00".repeat(32)).into_bytes(),
                KeyFormatError::OutOfRange,
            ),
            (
                format!("{}\n", "ff".repeat(32)).into_bytes(),
                KeyFormatError::OutOfRange,
            ),
            (
                vec![0xff; 65],
                KeyFormatError::NotHex("not UTF-8 text".into()),
            ),
        ];
        let dir = tempfile::tempdir().unwrap();
        for (i, (contents, expected)) in cases.into_iter().enumerate() {
            let path = dir.path().join(format!("bad{i}.key"));
            write_private(&path, &contents);
            match load(&path) {
                Err(KeyFileError::Malformed { reason, .. }) => assert_eq!(reason, expected),
                other => panic!("case {i}: expected Malformed({expected}), got {other:?}"),
            }
        }
    }

    #[test]
    fn upper_case_and_crlf_are_accepted() {
        let key = SecretKey::from_slice(&[0xab; 32]).unwrap();
        assert_eq!(decode(&format!("{}\r\n", "AB".repeat(32))), Ok(key));
        assert_eq!(decode(&"ab".repeat(32)), Ok(key));
    }

    #[test]
    fn oversized_file_is_refused_without_reading_it_all() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big.key");
        write_private(&path, &vec![b'a'; 1 << 20]);
        let err = load(&path).unwrap_err();
        assert!(matches!(err, KeyFileError::TooLarge { .. }), "{err}");
    }

    #[cfg(unix)]
    #[test]
    fn group_or_world_accessible_file_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wallet.key");
        create(&path, &mut StdRng::seed_from_u64(6)).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        match load(&path) {
            Err(KeyFileError::PermissionsTooOpen { mode, .. }) => assert_eq!(mode, 0o644),
            other => panic!("expected PermissionsTooOpen, got {other:?}"),
        }
    }
}
