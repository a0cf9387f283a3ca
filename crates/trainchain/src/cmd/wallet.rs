//! `trainchain wallet`: keys, addresses, balances and payments.
//!
//! `balance` and `pay` read a node's chain store directly (the node must be stopped: the store
//! is opened exclusively). Against a running node, use the RPC-backed commands.

use super::params::{self, CHAIN_STORE_FILE};
use anyhow::{Context, Result};
use bitcoin::{Address, Amount, Denomination, FeeRate, Network};
use node::ChainState;
use std::path::{Path, PathBuf};
use wallet::{ChainTip, Wallet};

#[derive(clap::Subcommand)]
pub enum Command {
    /// Create a new key file (mode 0600; never overwrites) and print its address.
    New {
        #[arg(long)]
        key: PathBuf,
        #[arg(long, default_value = "regtest")]
        network: Network,
    },
    /// Print the P2WPKH address of a key file.
    Address {
        #[arg(long)]
        key: PathBuf,
        #[arg(long, default_value = "regtest")]
        network: Network,
    },
    /// Spendable and immature balance, from a stopped node's data directory.
    Balance {
        #[arg(long)]
        key: PathBuf,
        #[command(flatten)]
        chain: ChainArgs,
    },
    /// Build and sign a payment from the key's coins; prints the raw transaction in hex.
    Pay {
        #[arg(long)]
        key: PathBuf,
        /// Destination address.
        #[arg(long)]
        to: String,
        /// Amount in coins, e.g. 1.5.
        #[arg(long, value_parser = parse_coins)]
        amount: Amount,
        /// Fee rate in satoshis per virtual byte.
        #[arg(long, default_value_t = 1)]
        fee_rate: u64,
        #[command(flatten)]
        chain: ChainArgs,
    },
}

#[derive(clap::Args)]
pub struct ChainArgs {
    /// A node's data directory (holds chain.toml and chain.redb).
    #[arg(long)]
    data_dir: PathBuf,
    /// Chain parameters, if not `<data-dir>/chain.toml`.
    #[arg(long)]
    params: Option<PathBuf>,
}

fn parse_coins(text: &str) -> Result<Amount, String> {
    Amount::from_str_in(text, Denomination::Bitcoin).map_err(|e| e.to_string())
}

pub fn run(command: Command) -> Result<()> {
    match command {
        Command::New { key, network } => {
            let secret =
                wallet::key_file::create(&key, &mut bitcoin::secp256k1::rand::thread_rng())
                    .with_context(|| format!("creating {}", key.display()))?;
            println!("{}", Wallet::new(secret, network).address());
        }
        Command::Address { key, network } => {
            println!("{}", load_wallet(&key, network)?.address());
        }
        Command::Balance { key, chain } => {
            let (state, wallet) = open(&key, &chain)?;
            let (coins, tip) = owned_coins(&state, &wallet)?;
            let balance = wallet.balance(&coins, tip);
            println!("address:   {}", wallet.address());
            println!("spendable: {}", balance.confirmed_spendable);
            println!("immature:  {}", balance.immature);
        }
        Command::Pay {
            key,
            to,
            amount,
            fee_rate,
            chain,
        } => {
            let (state, wallet) = open(&key, &chain)?;
            let to: Address = to
                .parse::<Address<_>>()
                .context("parsing destination address")?
                .require_network(wallet.network())
                .context("destination address is for another network")?;
            let fee_rate = FeeRate::from_sat_per_vb(fee_rate).context("fee rate too large")?;
            let (coins, tip) = owned_coins(&state, &wallet)?;
            let tx = wallet.build_payment(&coins, tip, &to, amount, fee_rate)?;
            eprintln!("txid: {}", tx.compute_txid());
            println!("{}", bitcoin::consensus::encode::serialize_hex(&tx));
        }
    }
    Ok(())
}

fn load_wallet(key: &Path, network: Network) -> Result<Wallet> {
    let secret =
        wallet::key_file::load(key).with_context(|| format!("loading {}", key.display()))?;
    Ok(Wallet::new(secret, network))
}

fn open(key: &Path, chain: &ChainArgs) -> Result<(ChainState, Wallet)> {
    let params = params::load(chain.params.as_deref(), &chain.data_dir)?;
    let wallet = load_wallet(key, params.network)?;
    let store = chain.data_dir.join(CHAIN_STORE_FILE);
    let state = ChainState::open(&store, params).with_context(|| {
        format!(
            "opening {} (is a node running on it? stop it or use its RPC)",
            store.display()
        )
    })?;
    Ok((state, wallet))
}

fn owned_coins(
    state: &ChainState,
    wallet: &Wallet,
) -> Result<(Vec<(bitcoin::OutPoint, primitives::Coin)>, ChainTip)> {
    let (_, height) = state.tip()?;
    let coins = state.store().coins_by_script(wallet.script_pubkey())?;
    Ok((coins, ChainTip::new(height, state.params())))
}
