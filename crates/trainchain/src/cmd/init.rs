//! `trainchain init`: parameters and genesis for a new chain, with its coordinator key.

use super::params::{COORDINATOR_KEY_FILE, PARAMS_FILE};
use anyhow::{bail, Context, Result};
use bitcoin::secp256k1::Secp256k1;
use bitcoin::{Address, Amount, Denomination, Network, ScriptBuf};
use primitives::genesis::{allocations_total, build_genesis, GenesisSpec};
use primitives::params::{
    SubsidySchedule, BOND_LOCK_BLOCKS_MAX, BOND_LOCK_BLOCKS_MIN, DEFAULT_BLOCK_BYTES_MAX,
    DEFAULT_BOND_LOCK_BLOCKS, DEFAULT_BOND_MIN_SATS, DEFAULT_COINBASE_MATURITY_BLOCKS,
    DEFAULT_CYCLE_SECS,
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
    /// Pay COINS to ADDRESS in the genesis coinbase (repeatable, in order: output 1, 2, …).
    /// Together at most the height-0 subsidy (50 coins); spendable after coinbase maturity.
    #[arg(long = "allocate", value_name = "ADDRESS:COINS", value_parser = parse_allocation)]
    pub allocations: Vec<Allocation>,
    /// Smallest bond, in coins (default: 1).
    #[arg(long, value_parser = parse_coins)]
    pub bond_min: Option<Amount>,
    /// Relative lock of a bond's miner branch, in blocks (cycle plus dispute window).
    #[arg(long, default_value_t = DEFAULT_BOND_LOCK_BLOCKS,
          value_parser = clap::value_parser!(u32).range(i64::from(BOND_LOCK_BLOCKS_MIN)..=i64::from(BOND_LOCK_BLOCKS_MAX)))]
    pub bond_lock_blocks: u32,
    /// Every registration with a coordinator must name a bond (`trainchain wallet bond
    /// create`): fund the first miners with --allocate, or nobody can ever register.
    #[arg(long)]
    pub require_bonds: bool,
}

/// One `--allocate ADDRESS:COINS`; the address is checked against `--network` in [`new_chain`].
#[derive(Debug, Clone)]
pub struct Allocation {
    pub address: bitcoin::address::Address<bitcoin::address::NetworkUnchecked>,
    pub amount: Amount,
}

fn parse_coins(text: &str) -> Result<Amount, String> {
    Amount::from_str_in(text, Denomination::Bitcoin).map_err(|e| e.to_string())
}

fn parse_allocation(text: &str) -> Result<Allocation, String> {
    let (address, coins) = text
        .rsplit_once(':')
        .ok_or_else(|| format!("{text:?} is not ADDRESS:COINS"))?;
    let address = address
        .parse()
        .map_err(|e| format!("address {address:?}: {e}"))?;
    let amount = parse_coins(coins).map_err(|e| format!("amount {coins:?}: {e}"))?;
    if amount == Amount::ZERO {
        return Err(format!("allocation to {address:?} is zero"));
    }
    Ok(Allocation { address, amount })
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
    let params = new_chain(&args, &key, u32::try_from(now).context("clock past 2106")?)?;
    std::fs::write(&params_path, params.to_toml())
        .with_context(|| format!("writing {}", params_path.display()))?;
    println!("chain parameters: {}", params_path.display());
    println!(
        "coordinator key:  {} (mode 0600; keep it secret)",
        key_path.display()
    );
    println!("genesis block:    {}", params.genesis_hash());
    let txid = params.genesis.txdata[0].compute_txid();
    for (index, allocation) in args.allocations.iter().enumerate() {
        println!(
            "allocation:       {}:{} pays {} to {}",
            txid,
            index + 1,
            allocation.amount,
            allocation.address.clone().assume_checked()
        );
    }
    Ok(())
}

/// Parameters of a new chain whose only coordinator is `key`, with genesis at `time`. Refuses
/// allocations to another network's addresses or over the height-0 subsidy (the node would
/// refuse such a genesis block: consensus applies the subsidy rule to genesis too).
pub fn new_chain(
    args: &Args,
    key: &bitcoin::secp256k1::SecretKey,
    time: u32,
) -> Result<ChainParams> {
    let secp = Secp256k1::new();
    let subsidy = SubsidySchedule::default();
    let allocations = allocation_outputs(&args.allocations, args.network)?;
    let total = allocations_total(&allocations).context("allocations overflow")?;
    // Height 0 is before the first halving: its subsidy is the initial one.
    let allowed = Amount::from_sat(subsidy.initial_sats);
    if total > allowed {
        bail!(
            "genesis allocations total {total}, over the height-0 subsidy of {allowed} that \
             consensus lets the genesis coinbase pay"
        );
    }
    if args.require_bonds && allocations.is_empty() {
        bail!(
            "--require-bonds needs --allocate: with bonds required and no coins at genesis, \
             nobody can make the first bond, so no cycle can ever have a miner"
        );
    }
    if let Some(min) = args.bond_min {
        if min == Amount::ZERO || min > Amount::MAX_MONEY {
            bail!("--bond-min {min} must be above zero and at most the money supply");
        }
    }
    let genesis = build_genesis(
        &secp,
        &GenesisSpec {
            chain_id: args.chain_id,
            time,
            model_hash: Hash256::ZERO,
            message: &args.message,
            allocations,
        },
        key,
    );
    Ok(ChainParams {
        name: args.name.clone(),
        chain_id: args.chain_id,
        network: args.network,
        coordinator_keys: vec![key.public_key(&secp)],
        subsidy,
        block_bytes_max: args.block_bytes_max,
        coinbase_maturity_blocks: args.coinbase_maturity,
        cycle_secs: args.cycle_secs,
        bond_min: args
            .bond_min
            .unwrap_or(Amount::from_sat(DEFAULT_BOND_MIN_SATS)),
        bond_lock_blocks: args.bond_lock_blocks,
        bond_slash_key: key.public_key(&secp),
        slash_finder_share_percent: primitives::params::DEFAULT_SLASH_FINDER_SHARE_PERCENT,
        bonds_required: args.require_bonds,
        genesis,
    })
}

/// The output scripts and values of `--allocate`, each address checked against `network`.
fn allocation_outputs(
    allocations: &[Allocation],
    network: Network,
) -> Result<Vec<(ScriptBuf, Amount)>> {
    allocations
        .iter()
        .map(|allocation| {
            let address: Address = allocation
                .address
                .clone()
                .require_network(network)
                .with_context(|| {
                    format!(
                        "allocation address {} is not a {network} address",
                        allocation.address.clone().assume_checked()
                    )
                })?;
            let script = address.script_pubkey();
            // Consensus refuses outputs of other types (tx::check_transaction), genesis too.
            if !(script.is_p2wpkh() || script.is_p2wsh() || script.is_p2tr()) {
                bail!("allocation address {address} is not P2WPKH, P2WSH or P2TR");
            }
            Ok((script, allocation.amount))
        })
        .collect()
}
