//! `trainchain wallet`: keys, addresses, balances and payments.
//!
//! `balance` and `pay` read either a stopped node's chain store directly (`--data-dir`; the
//! store is opened exclusively) or a running node over JSON-RPC (`--rpc URL`, coins found with
//! `scantxoutset`). `send` builds a payment like `pay` and broadcasts it with
//! `sendrawtransaction`.

use super::params::{self, CHAIN_STORE_FILE};
use super::rpc::Connection;
use anyhow::{anyhow, bail, Context, Result};
use bitcoin::{Address, Amount, Denomination, FeeRate, Network, OutPoint, ScriptBuf, TxOut};
use node::ChainState;
use primitives::Coin;
use serde_json::{json, Value};
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
        #[command(flatten)]
        payment: PaymentArgs,
        #[command(flatten)]
        chain: ChainArgs,
    },
    /// Build, sign and broadcast a payment through a running node; prints the txid.
    Send {
        #[command(flatten)]
        payment: PaymentArgs,
        #[command(flatten)]
        connection: Connection,
    },
}

/// Where the wallet reads the chain: a stopped node's data directory, or a node's RPC.
/// What `pay` and `send` both need: whose coins, to whom, how much, at what fee rate.
#[derive(clap::Args)]
pub struct PaymentArgs {
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
}

#[derive(clap::Args)]
pub struct ChainArgs {
    /// A stopped node's data directory (holds chain.toml and chain.redb).
    #[arg(long, required_unless_present = "rpc", conflicts_with = "rpc")]
    data_dir: Option<PathBuf>,
    /// Chain parameters, if not `<data-dir>/chain.toml`.
    #[arg(long)]
    params: Option<PathBuf>,
    /// A running node's RPC URL, e.g. http://127.0.0.1:7332.
    #[arg(long)]
    rpc: Option<String>,
    /// Node RPC credentials: none, cookie:DIR (the node's data directory) or user:password.
    #[arg(long, requires = "rpc")]
    rpc_auth: Option<node::rpc::client::ClientAuth>,
    /// Shorthand for `--rpc-auth cookie:DIR`: the node's data directory, holding its cookie.
    #[arg(long, requires = "rpc")]
    rpc_data_dir: Option<PathBuf>,
}

impl ChainArgs {
    fn connection(&self) -> Option<Connection> {
        self.rpc.as_ref().map(|url| Connection {
            url: Some(url.clone()),
            rpc_auth: self.rpc_auth.clone(),
            rpc_data_dir: self.rpc_data_dir.clone(),
        })
    }
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
            let (wallet, coins, tip) = wallet_view(&key, &chain)?;
            let balance = wallet.balance(&coins, tip);
            println!("address:   {}", wallet.address());
            println!("spendable: {}", balance.confirmed_spendable);
            println!("immature:  {}", balance.immature);
        }
        Command::Pay { payment, chain } => {
            let (wallet, coins, tip) = wallet_view(&payment.key, &chain)?;
            let tx = build(&wallet, &coins, tip, &payment)?;
            eprintln!("txid: {}", tx.compute_txid());
            println!("{}", bitcoin::consensus::encode::serialize_hex(&tx));
        }
        Command::Send {
            payment,
            connection,
        } => {
            let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
            let client = connection.client()?;
            let (wallet, coins, tip) = runtime.block_on(rpc_view(&client, &payment.key))?;
            let tx = build(&wallet, &coins, tip, &payment)?;
            let hex = bitcoin::consensus::encode::serialize_hex(&tx);
            let txid = runtime.block_on(client.call("sendrawtransaction", vec![json!(hex)]))?;
            println!("{}", txid.as_str().unwrap_or_default());
        }
    }
    Ok(())
}

fn build(
    wallet: &Wallet,
    coins: &[(OutPoint, Coin)],
    tip: ChainTip,
    payment: &PaymentArgs,
) -> Result<bitcoin::Transaction> {
    let to: Address = payment
        .to
        .parse::<Address<_>>()
        .context("parsing destination address")?
        .require_network(wallet.network())
        .context("destination address is for another network")?;
    let fee_rate = FeeRate::from_sat_per_vb(payment.fee_rate).context("fee rate too large")?;
    Ok(wallet.build_payment(coins, tip, &to, payment.amount, fee_rate)?)
}

type WalletView = (Wallet, Vec<(OutPoint, Coin)>, ChainTip);

/// The wallet and its coins, from a stopped node's store or a running node's RPC.
fn wallet_view(key: &Path, chain: &ChainArgs) -> Result<WalletView> {
    if let Some(connection) = chain.connection() {
        let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
        return runtime.block_on(rpc_view(&connection.client()?, key));
    }
    let (state, wallet) = open(key, chain)?;
    let (coins, tip) = owned_coins(&state, &wallet)?;
    Ok((wallet, coins, tip))
}

/// The wallet's coins from a node's RPC: `getblockchaininfo` for the network, height and
/// coinbase maturity, `scantxoutset` for the coins, and `gettxout` (mempool included) to leave
/// out coins an unconfirmed transaction already spends.
async fn rpc_view(client: &node::rpc::client::RpcClient, key: &Path) -> Result<WalletView> {
    let info = client.call("getblockchaininfo", vec![]).await?;
    let network: Network = info["network"]
        .as_str()
        .ok_or_else(|| anyhow!("getblockchaininfo has no network"))?
        .parse()
        .context("node reports an unknown network")?;
    let height = info["blocks"]
        .as_u64()
        .ok_or_else(|| anyhow!("no block count"))?;
    let maturity = info["coinbase_maturity"]
        .as_u64()
        .ok_or_else(|| anyhow!("getblockchaininfo has no coinbase_maturity"))?;
    let tip = ChainTip {
        height: u32::try_from(height)?,
        coinbase_maturity_blocks: u32::try_from(maturity)?,
    };
    let wallet = load_wallet(key, network)?;
    let descriptor = format!("addr({})", wallet.address());
    let scan = client
        .call("scantxoutset", vec![json!("start"), json!([descriptor])])
        .await?;
    let mut coins = Vec::new();
    for unspent in scan["unspents"].as_array().into_iter().flatten() {
        let (outpoint, coin) = coin_from_json(unspent)?;
        let still_unspent = client
            .call(
                "gettxout",
                vec![
                    json!(outpoint.txid.to_string()),
                    json!(outpoint.vout),
                    json!(true),
                ],
            )
            .await?;
        if !still_unspent.is_null() {
            coins.push((outpoint, coin));
        }
    }
    Ok((wallet, coins, tip))
}

fn coin_from_json(unspent: &Value) -> Result<(OutPoint, Coin)> {
    let field = |name: &str| {
        unspent
            .get(name)
            .ok_or_else(|| anyhow!("unspent without {name}"))
    };
    let txid = field("txid")?.as_str().unwrap_or_default().parse()?;
    let vout = u32::try_from(field("vout")?.as_u64().unwrap_or(u64::MAX))?;
    let amount = Amount::from_btc(field("amount")?.as_f64().unwrap_or(-1.0))?;
    let script = hex::decode(field("scriptPubKey")?.as_str().unwrap_or_default())?;
    let height = u32::try_from(field("height")?.as_u64().unwrap_or(u64::MAX))?;
    let Some(is_coinbase) = field("coinbase")?.as_bool() else {
        bail!("unspent coinbase flag is not a boolean");
    };
    Ok((
        OutPoint::new(txid, vout),
        Coin {
            output: TxOut {
                value: amount,
                script_pubkey: ScriptBuf::from_bytes(script),
            },
            height,
            is_coinbase,
        },
    ))
}

fn load_wallet(key: &Path, network: Network) -> Result<Wallet> {
    let secret = match wallet::key_file::load(key) {
        Ok(secret) => secret,
        Err(wallet::key_file::KeyFileError::Missing { .. }) => bail!(
            "no wallet key at {path}: create one with `trainchain wallet new --key {path}` first",
            path = key.display()
        ),
        Err(error) => return Err(error).with_context(|| format!("loading {}", key.display())),
    };
    Ok(Wallet::new(secret, network))
}

fn open(key: &Path, chain: &ChainArgs) -> Result<(ChainState, Wallet)> {
    let data_dir = chain
        .data_dir
        .as_deref()
        .ok_or_else(|| anyhow!("give --data-dir (stopped node) or --rpc (running node)"))?;
    let params = params::load(chain.params.as_deref(), data_dir)?;
    let wallet = load_wallet(key, params.network)?;
    let store = data_dir.join(CHAIN_STORE_FILE);
    // Opening a store that is not there would create an empty one and report a balance of 0:
    // a read-only command must not write, and an empty chain is almost surely the wrong dir.
    if !store.is_file() {
        bail!(
            "no chain store in {dir} ({file} is missing): give the data directory of a node \
             that has run (`trainchain node --data-dir {dir}` creates it), or --rpc URL of a \
             running node",
            dir = data_dir.display(),
            file = CHAIN_STORE_FILE
        );
    }
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
