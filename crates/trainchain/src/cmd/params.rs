//! Where chain parameters live in a data directory, and loading them with a clear error.

use anyhow::{Context, Result};
use primitives::ChainParams;
use std::path::{Path, PathBuf};

/// File name of the chain parameters inside a data directory.
pub const PARAMS_FILE: &str = "chain.toml";
/// File name of the coordinator's signing key inside the directory `init` writes.
pub const COORDINATOR_KEY_FILE: &str = "coordinator.key";
/// File name of the chain store inside a node's data directory.
pub const CHAIN_STORE_FILE: &str = "chain.redb";

/// Chain parameters from `explicit`, or from `<data_dir>/chain.toml`.
pub fn load(explicit: Option<&Path>, data_dir: &Path) -> Result<ChainParams> {
    let path: PathBuf = explicit
        .map(Path::to_path_buf)
        .unwrap_or_else(|| data_dir.join(PARAMS_FILE));
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("reading chain parameters {}", path.display()))?;
    ChainParams::from_toml(&text)
        .with_context(|| format!("parsing chain parameters {}", path.display()))
}
