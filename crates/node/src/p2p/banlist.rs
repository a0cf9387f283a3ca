//! Bans kept across restarts in `<data-dir>/banlist.json` ([`BAN_FILE`]):
//!
//! ```json
//! {"version": 1, "bans": [{"peer_id": "12D3KooW…", "until_unix_secs": 1700000000, "reason": "…"}]}
//! ```
//!
//! Written atomically (temporary file, then rename) at most once per network tick when the bans
//! changed, and on shutdown. On load, bans that have run out are dropped; a file that is too
//! large or does not parse is renamed to `banlist.json.bad`, logged, and the node starts with
//! no bans rather than not at all.

use super::peers::{BanEntry, BANS_MAX, BAN_REASON_BYTES_MAX};
use crate::persist::{self, ReadError};
use libp2p::PeerId;
use serde::{Deserialize, Serialize};
use std::path::Path;
use tracing::{info, warn};

/// File name of the ban list inside the data directory.
pub const BAN_FILE: &str = "banlist.json";

/// The only version written and read.
pub const BAN_FILE_VERSION: u32 = 1;

/// Largest JSON one ban takes: a peer id (52 characters for an Ed25519 key, at most 100 for
/// others), the expiry, and a reason of [`BAN_REASON_BYTES_MAX`] bytes that JSON may escape to
/// six bytes each, plus field names.
const BAN_JSON_BYTES_MAX: u64 = 256 + 6 * BAN_REASON_BYTES_MAX as u64;

/// Largest ban file read: [`BANS_MAX`] bans of the largest size (about 16 MiB).
pub const BAN_FILE_BYTES_MAX: u64 = 64 + BANS_MAX as u64 * BAN_JSON_BYTES_MAX;

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct BanFile {
    version: u32,
    bans: Vec<BanRecord>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct BanRecord {
    peer_id: String,
    until_unix_secs: u64,
    reason: String,
}

/// Why a ban file was not used.
#[derive(Debug, thiserror::Error)]
pub enum BanFileError {
    #[error("reading: {0}")]
    Read(#[from] ReadError),
    #[error("not a ban list: {0}")]
    Parse(#[from] serde_json::Error),
    #[error("version {0}, this node reads version {BAN_FILE_VERSION}")]
    Version(u32),
    #[error("ban {index}: peer id {peer_id:?} does not parse")]
    PeerId { index: usize, peer_id: String },
}

/// The bans in `bytes` still in force at `now_secs`.
pub fn decode(bytes: &[u8], now_secs: u64) -> Result<Vec<BanEntry>, BanFileError> {
    let file: BanFile = serde_json::from_slice(bytes)?;
    if file.version != BAN_FILE_VERSION {
        return Err(BanFileError::Version(file.version));
    }
    let mut bans = Vec::with_capacity(file.bans.len().min(BANS_MAX));
    for (index, record) in file.bans.into_iter().enumerate() {
        let peer = record
            .peer_id
            .parse::<PeerId>()
            .map_err(|_| BanFileError::PeerId {
                index,
                peer_id: record.peer_id.chars().take(128).collect(),
            })?;
        if record.until_unix_secs > now_secs {
            bans.push(BanEntry {
                peer,
                until_unix_secs: record.until_unix_secs,
                reason: record.reason,
            });
        }
    }
    Ok(bans)
}

pub fn encode(bans: &[BanEntry]) -> Vec<u8> {
    let file = BanFile {
        version: BAN_FILE_VERSION,
        bans: bans
            .iter()
            .map(|b| BanRecord {
                peer_id: b.peer.to_string(),
                until_unix_secs: b.until_unix_secs,
                reason: b.reason.clone(),
            })
            .collect(),
    };
    // Serialising plain strings and integers cannot fail.
    serde_json::to_vec(&file).unwrap_or_default()
}

/// Loads the bans in force from `path`; never fails the node: a missing file is no bans, an
/// unreadable one is set aside with a warning.
pub fn load(path: &Path, now_secs: u64) -> Vec<BanEntry> {
    let result = persist::read_bounded(path, BAN_FILE_BYTES_MAX)
        .map_err(BanFileError::from)
        .and_then(|bytes| match bytes {
            Some(bytes) => decode(&bytes, now_secs).map(Some),
            None => Ok(None),
        });
    match result {
        Ok(Some(bans)) => {
            info!(path = %path.display(), bans = bans.len(), "ban list loaded");
            bans
        }
        Ok(None) => Vec::new(),
        Err(error) => {
            let aside = persist::set_aside(path);
            warn!(
                path = %path.display(),
                %error,
                set_aside = ?aside.as_ref().map(|p| p.display().to_string()),
                "ban list unreadable; starting without bans"
            );
            Vec::new()
        }
    }
}

/// Writes `bans` to `path` atomically, checking first that the file will load back.
pub fn save(path: &Path, bans: &[BanEntry]) -> std::io::Result<()> {
    let bytes = encode(bans);
    if bytes.len() as u64 > BAN_FILE_BYTES_MAX {
        return Err(std::io::Error::other(format!(
            "ban list of {} bytes is over the {BAN_FILE_BYTES_MAX}-byte read limit",
            bytes.len()
        )));
    }
    persist::write_atomic(path, &bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ban(until_unix_secs: u64, reason: &str) -> BanEntry {
        BanEntry {
            peer: PeerId::random(),
            until_unix_secs,
            reason: reason.into(),
        }
    }

    #[test]
    fn bans_round_trip_and_expired_ones_are_dropped_on_load() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(BAN_FILE);
        let bans = vec![ban(100, "old"), ban(300, "invalid block: \"x\"\n")];
        save(&path, &bans).unwrap();
        let loaded = load(&path, 200);
        assert_eq!(loaded, bans[1..]);
        assert_eq!(load(&path, 50), bans);
    }

    #[test]
    fn a_malformed_ban_file_is_set_aside() {
        let cases: [&[u8]; 4] = [
            b"not json",
            br#"{"version": 2, "bans": []}"#,
            br#"{"version": 1, "bans": [{"peer_id": "nope", "until_unix_secs": 9, "reason": ""}]}"#,
            br#"{"version": 1, "bans": [], "extra": 1}"#,
        ];
        for bytes in cases {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join(BAN_FILE);
            std::fs::write(&path, bytes).unwrap();
            assert!(decode(bytes, 0).is_err());
            assert!(load(&path, 0).is_empty());
            assert!(!path.exists());
            assert_eq!(
                std::fs::read(dir.path().join("banlist.json.bad")).unwrap(),
                bytes
            );
        }
    }
}
