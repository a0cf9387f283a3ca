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

/// Smallest bond on a devnet: a tenth of a coin, so that the genesis coinbase (50 coins) pays
/// a bond to each of the devnet's up to 64 miners (6.4 coins).
pub const DEVNET_BOND_MIN: bitcoin::Amount = bitcoin::Amount::from_sat(10_000_000);
/// Relative lock of a devnet bond: far more blocks than a devnet runs cycles, so a bond paid
/// at genesis backs every cycle of the run (it backs cycles up to half its lock, the dispute
/// window being the other half).
pub const DEVNET_BOND_LOCK_BLOCKS: u32 = 10_000;
/// Coinbase maturity of a bonded devnet: one confirmation.
pub const DEVNET_COINBASE_MATURITY_BLOCKS: u32 = 1;

/// Writes `<dir>/coordinator.key` and `<dir>/chain.toml` for a new regtest chain whose cycles
/// last `cycle_secs`, with genesis at `time`.
pub fn create(dir: &Path, cycle_secs: u64, time: u32) -> Result<ChainParams, DevnetError> {
    create_funded(dir, cycle_secs, time, Vec::new())
}

/// A devnet chain whose genesis pays one bond of [`DEVNET_BOND_MIN`] to each of `miners`
/// (`consensus::bond::bond_script_pubkey` under the chain's terms, the coordinator's key
/// slashing), with `bonds_required`: no block can exist before someone registers, so the
/// first bonds cannot be made by transaction. Returns the parameters and each miner's bond,
/// the genesis coinbase's output `i + 1` (output 0 is its OP_RETURN).
pub fn create_bonded(
    dir: &Path,
    cycle_secs: u64,
    time: u32,
    miners: &[bitcoin::secp256k1::PublicKey],
) -> Result<(ChainParams, Vec<bitcoin::OutPoint>), DevnetError> {
    let (params, _) = create_with(dir, cycle_secs, time, |terms| {
        let terms = consensus::bond::BondTerms {
            bond_min: DEVNET_BOND_MIN,
            lock_blocks: DEVNET_BOND_LOCK_BLOCKS,
            ..terms
        };
        let allocations = miners
            .iter()
            .map(|m| {
                (
                    consensus::bond::bond_script_pubkey(&terms, m),
                    DEVNET_BOND_MIN,
                )
            })
            .collect();
        (allocations, true)
    })?;
    let coinbase = params.genesis.txdata[0].compute_txid();
    let bonds = (0..miners.len())
        .map(|i| bitcoin::OutPoint::new(coinbase, i as u32 + 1))
        .collect();
    Ok((params, bonds))
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
    create_with(dir, cycle_secs, time, |_| (allocations, false)).map(|(params, _)| params)
}

type Allocations = Vec<(bitcoin::ScriptBuf, bitcoin::Amount)>;

/// Makes the chain; `genesis_of` gets the default bond terms (with the coordinator's key as
/// the slashing key) and returns the genesis allocations and whether bonds are required. The
/// devnet's bond terms are [`DEVNET_BOND_MIN`] and [`DEVNET_BOND_LOCK_BLOCKS`] when bonds
/// are required, the defaults otherwise.
fn create_with(
    dir: &Path,
    cycle_secs: u64,
    time: u32,
    genesis_of: impl FnOnce(consensus::bond::BondTerms) -> (Allocations, bool),
) -> Result<(ChainParams, ()), DevnetError> {
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
    let default_terms = consensus::bond::BondTerms {
        slash_key: key.public_key(&secp),
        lock_blocks: primitives::params::DEFAULT_BOND_LOCK_BLOCKS,
        bond_min: primitives::params::DEFAULT_BOND_MIN,
        finder_share_percent: primitives::params::DEFAULT_SLASH_FINDER_SHARE_PERCENT,
    };
    let (allocations, bonds_required) = genesis_of(default_terms);
    let (bond_min, bond_lock_blocks) = if bonds_required {
        (DEVNET_BOND_MIN, DEVNET_BOND_LOCK_BLOCKS)
    } else {
        (default_terms.bond_min, default_terms.lock_blocks)
    };
    let subsidy = bitcoin::Amount::from_sat(SubsidySchedule::default().initial_sats);
    match primitives::genesis::allocations_total(&allocations) {
        Some(total) if total <= subsidy => {}
        _ => {
            return Err(DevnetError::Config(format!(
                "genesis allocations total more than the height-0 subsidy of {subsidy}"
            )))
        }
    }
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
        // A bonded devnet's bonds are genesis coinbase outputs: a slash must be able to spend
        // them in the next block, so coinbase outputs mature at once (genesis cannot be
        // reorganised, and a devnet's later coinbases are play money).
        coinbase_maturity_blocks: if bonds_required {
            DEVNET_COINBASE_MATURITY_BLOCKS
        } else {
            DEFAULT_COINBASE_MATURITY_BLOCKS
        },
        cycle_secs,
        bond_min,
        bond_lock_blocks,
        bond_slash_key: key.public_key(&secp),
        slash_finder_share_percent: primitives::params::DEFAULT_SLASH_FINDER_SHARE_PERCENT,
        bonds_required,
        genesis,
    };
    std::fs::write(&params_path, params.to_toml()).map_err(io(&params_path))?;
    Ok((params, ()))
}
