//! A fresh chain for the devnet, as `trainchain init` makes one: a coordinator key (mode
//! 0600) and chain parameters with a genesis block signed by it.

use crate::error::{io, DevnetError};
use bitcoin::secp256k1::Secp256k1;
use bitcoin::Network;
use primitives::genesis::{build_genesis, GenesisSpec};
use primitives::params::{
    SubsidySchedule, DEFAULT_BLOCK_BYTES_MAX, DEFAULT_COINBASE_MATURITY_BLOCKS,
};
use primitives::{ChainParams, Hash256};
use std::path::Path;

/// Chain id of devnet chains (certificates never cross chains).
pub const DEVNET_CHAIN_ID: u32 = 7001;
/// File names inside the devnet data directory (the same as `trainchain init` writes).
pub const PARAMS_FILE: &str = "chain.toml";
pub const COORDINATOR_KEY_FILE: &str = "coordinator.key";

/// Writes `<dir>/coordinator.key` and `<dir>/chain.toml` for a new regtest chain whose cycles
/// last `cycle_secs`, with genesis at `time`.
pub fn create(dir: &Path, cycle_secs: u64, time: u32) -> Result<ChainParams, DevnetError> {
    create_funded(dir, cycle_secs, time, Vec::new())
}

/// Like [`create`], with a genesis coinbase that also pays `allocations` (for instance each
/// miner's P2WPKH script, so bonds can be made from the start). Their total must stay within
/// the height-0 subsidy (50 coins), which consensus applies to genesis too.
pub fn create_funded(
    dir: &Path,
    cycle_secs: u64,
    time: u32,
    allocations: Vec<(bitcoin::ScriptBuf, bitcoin::Amount)>,
) -> Result<ChainParams, DevnetError> {
    let subsidy = bitcoin::Amount::from_sat(SubsidySchedule::default().initial_sats);
    match primitives::genesis::allocations_total(&allocations) {
        Some(total) if total <= subsidy => {}
        _ => {
            return Err(DevnetError::Config(format!(
                "genesis allocations total more than the height-0 subsidy of {subsidy}"
            )))
        }
    }
    let params_path = dir.join(PARAMS_FILE);
    if params_path.exists() {
        return Err(DevnetError::DataDirInUse(dir.to_owned()));
    }
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let key = wallet::key_file::create(
        &dir.join(COORDINATOR_KEY_FILE),
        &mut bitcoin::secp256k1::rand::thread_rng(),
    )?;
    let secp = Secp256k1::new();
    let genesis = build_genesis(
        &secp,
        &GenesisSpec {
            chain_id: DEVNET_CHAIN_ID,
            time,
            model_hash: Hash256::ZERO,
            message: "trainchain devnet",
            allocations,
        },
        &key,
    );
    let params = ChainParams {
        name: "trainchain-devnet".into(),
        chain_id: DEVNET_CHAIN_ID,
        network: Network::Regtest,
        coordinator_keys: vec![key.public_key(&secp)],
        subsidy: SubsidySchedule::default(),
        block_bytes_max: DEFAULT_BLOCK_BYTES_MAX,
        coinbase_maturity_blocks: DEFAULT_COINBASE_MATURITY_BLOCKS,
        cycle_secs,
        bond_min: primitives::params::DEFAULT_BOND_MIN,
        bond_lock_blocks: primitives::params::DEFAULT_BOND_LOCK_BLOCKS,
        bond_slash_key: key.public_key(&secp),
        slash_finder_share_percent: primitives::params::DEFAULT_SLASH_FINDER_SHARE_PERCENT,
        bonds_required: false,
        genesis,
    };
    std::fs::write(&params_path, params.to_toml()).map_err(io(&params_path))?;
    Ok(params)
}
