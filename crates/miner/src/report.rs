//! What a miner did in one cycle, written as one JSON line per cycle (`--report FILE`) so the
//! devnet and operators can read it back.

use crate::behaviour::Behaviour;
use crate::cpu::CpuAccount;
use crate::error::MinerError;
use coordinator::api::{CertificateHex, Receipt};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::Path;

/// A block this miner produced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProducedBlock {
    pub height: u32,
    pub hash: String,
    pub attempt: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CycleReport {
    pub cycle: u64,
    /// The miner's public key (hex, compressed).
    pub miner: String,
    pub behaviour: Behaviour,
    pub segment: Option<String>,
    pub segment_params: Option<u64>,
    pub shard_samples: Option<u64>,
    /// SGD steps taken (0 when the miner did not train).
    pub steps: u64,
    /// The coordinator's signed receipt of the upload.
    pub receipt: Option<Receipt>,
    /// The contribution certificate of the scored submission.
    pub contribution: Option<CertificateHex>,
    /// Block-signing certificates received (one per attempt won).
    pub block_certificates: Vec<CertificateHex>,
    /// The last block it produced, and how many it produced (one per attempt it won while
    /// the attempt's window was open).
    pub block: Option<ProducedBlock>,
    #[serde(default)]
    pub blocks_produced: u32,
    pub cpu: CpuAccount,
    pub useful_work_fraction: f64,
    /// Wall-clock seconds spent training, and the cycle's training window (registration
    /// deadline to submission deadline): how much of the window the miner's compute worked.
    #[serde(default)]
    pub training_wall_secs: f64,
    #[serde(default)]
    pub training_window_secs: f64,
    /// What went wrong, if the cycle's work did not complete.
    pub error: Option<String>,
}

/// Appends `report` as one JSON line to `path`.
pub fn append(path: &Path, report: &CycleReport) -> Result<(), MinerError> {
    let fail = |error| MinerError::Report {
        path: path.display().to_string(),
        error,
    };
    let mut line = serde_json::to_vec(report).map_err(|e| fail(std::io::Error::other(e)))?;
    line.push(b'\n');
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(fail)?;
    file.write_all(&line).map_err(fail)
}

/// Every report in a file written by [`append`]; lines that do not parse (a torn last line
/// of a killed miner) are skipped.
pub fn read_all(path: &Path) -> std::io::Result<Vec<CycleReport>> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    Ok(text
        .lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect())
}
