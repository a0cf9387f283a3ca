//! `trainchain init`: parameters and genesis for a new chain, with its coordinator key.

use super::params::{COORDINATOR_KEY_FILE, PARAMS_FILE};
use anyhow::{bail, Context, Result};
use bitcoin::secp256k1::Secp256k1;
use bitcoin::Network;
use primitives::genesis::{build_genesis, GenesisSpec};
use primitives::params::{
    SubsidySchedule, DEFAULT_BLOCK_BYTES_MAX, DEFAULT_COINBASE_MATURITY_BLOCKS, DEFAULT_CYCLE_SECS,
};
use primitives::{ChainParams, Hash256};
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

#[derive(clap::Args)]
pub struct Args {
    /// Directory to write `chain.toml` and `coordinator.key` into (created if missing).
    #[arg(long, default_value = "trainchain-data")]
    pub data_dir: PathBuf,
    /// Human-readable chain name.
    #[arg(long, default_value = "trainchain-devnet")]
    pub name: String,
    /// Chain id written into every certificate.
    #[arg(long, default_value_t = 7001)]
    pub chain_id: u32,
    /// Address format: regtest (bcrt1...), testnet, signet or bitcoin.
    #[arg(long, default_value = "regtest")]
    pub network: Network,
    /// Length of one training cycle, in seconds (the paper's default: 20 minutes).
    #[arg(long, default_value_t = DEFAULT_CYCLE_SECS)]
    pub cycle_secs: u64,
    /// Blocks before a coinbase output may be spent.
    #[arg(long, default_value_t = DEFAULT_COINBASE_MATURITY_BLOCKS)]
    pub coinbase_maturity: u32,
    /// Largest block, in bytes.
    #[arg(long, default_value_t = DEFAULT_BLOCK_BYTES_MAX)]
    pub block_bytes_max: u32,
    /// Text in the genesis coinbase's OP_RETURN output.
    #[arg(long, default_value = "trainchain: proof of useful training")]
    pub message: String,
}

pub fn run(args: Args) -> Result<()> {
    let params_path = args.data_dir.join(PARAMS_FILE);
    let key_path = args.data_dir.join(COORDINATOR_KEY_FILE);
    if params_path.exists() {
        bail!(
            "{} already exists; refusing to overwrite a chain's parameters",
            params_path.display()
        );
    }
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("creating {}", args.data_dir.display()))?;
    let key = wallet::key_file::create(&key_path, &mut bitcoin::secp256k1::rand::thread_rng())
        .with_context(|| format!("creating coordinator key {}", key_path.display()))?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .context("system clock is before 1970")?
        .as_secs();
    let params = new_chain(&args, &key, u32::try_from(now).context("clock past 2106")?);
    std::fs::write(&params_path, params.to_toml())
        .with_context(|| format!("writing {}", params_path.display()))?;
    println!("chain parameters: {}", params_path.display());
    println!(
        "coordinator key:  {} (mode 0600; keep it secret)",
        key_path.display()
    );
    println!("genesis block:    {}", params.genesis_hash());
    Ok(())
}

/// Parameters of a new chain whose only coordinator is `key`, with genesis at `time`.
pub fn new_chain(args: &Args, key: &bitcoin::secp256k1::SecretKey, time: u32) -> ChainParams {
    let secp = Secp256k1::new();
    let genesis = build_genesis(
        &secp,
        &GenesisSpec {
            chain_id: args.chain_id,
            time,
            model_hash: Hash256::ZERO,
            message: &args.message,
        },
        key,
    );
    ChainParams {
        name: args.name.clone(),
        chain_id: args.chain_id,
        network: args.network,
        coordinator_keys: vec![key.public_key(&secp)],
        subsidy: SubsidySchedule::default(),
        block_bytes_max: args.block_bytes_max,
        coinbase_maturity_blocks: args.coinbase_maturity,
        cycle_secs: args.cycle_secs,
        bond_min: primitives::params::DEFAULT_BOND_MIN,
        bond_lock_blocks: primitives::params::DEFAULT_BOND_LOCK_BLOCKS,
        bond_slash_key: key.public_key(&secp),
        slash_finder_share_percent: primitives::params::DEFAULT_SLASH_FINDER_SHARE_PERCENT,
        genesis,
    }
}
