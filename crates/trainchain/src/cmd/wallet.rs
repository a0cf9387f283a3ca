//! `trainchain wallet`: keys, addresses, balances and payments.
//!
//! `balance` and `pay` read either a stopped node's chain store directly (`--data-dir`; the
//! store is opened exclusively) or a running node over JSON-RPC (`--rpc URL`, coins found with
//! `scantxoutset`). `send` builds a payment like `pay` and broadcasts it with
//! `sendrawtransaction`.
//!
//! `bond create | inspect | reclaim` work through a running node (`--rpc`, `--rpc-data-dir`)
//! and read the chain's bond terms from its chain.toml (`--params`, by default
//! `<rpc-data-dir>/chain.toml`), checked against the node's genesis hash: the node's RPC does not
//! report the terms.

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
    /// Bonds: lock coins under the chain's bond terms, look at a bond, reclaim it after its lock.
    Bond {
        #[command(subcommand)]
        command: BondCommand,
    },
}

#[derive(clap::Subcommand)]
pub enum BondCommand {
    /// Lock coins in a bond for the key (output 0, change back to the key) and broadcast it;
    /// prints the bond's TXID:VOUT and the height it becomes reclaimable at.
    Create {
        #[command(flatten)]
        bond: BondArgs,
        /// Bond value in coins (default: the chain's bond_min).
        #[arg(long, value_parser = parse_coins)]
        coins: Option<Amount>,
        /// Fee rate in satoshis per byte of the whole transaction, witness included (this
        /// chain has no witness discount); 1 is the mempool's minimum.
        #[arg(long, default_value_t = 1)]
        fee_rate: u64,
    },
    /// Value, confirmations, whether it is the key's bond under the chain's terms, and from
    /// which height it is reclaimable (or that it is spent).
    Inspect {
        #[command(flatten)]
        bond: BondArgs,
        /// The bond output, TXID:VOUT.
        outpoint: OutPoint,
    },
    /// Spend the key's bond back to its address through the timelocked branch and broadcast
    /// it; refused (nothing is sent) while the bond is still locked.
    Reclaim {
        #[command(flatten)]
        bond: BondArgs,
        /// The bond output, TXID:VOUT.
        outpoint: OutPoint,
        /// Fee rate in satoshis per byte of the whole transaction, witness included (this
        /// chain has no witness discount); 1 is the mempool's minimum.
        #[arg(long, default_value_t = 1)]
        fee_rate: u64,
    },
}

/// What every bond command needs: the key, the chain's terms and a running node.
#[derive(clap::Args)]
pub struct BondArgs {
    #[arg(long)]
    key: PathBuf,
    /// The chain's parameters (for its bond terms), if not `<rpc-data-dir>/chain.toml`.
    #[arg(long)]
    params: Option<PathBuf>,
    #[command(flatten)]
    connection: Connection,
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
    /// Fee rate in satoshis per byte of the whole transaction, witness included (this chain
    /// has no witness discount); 1 is the mempool's minimum.
    #[arg(long, default_value_t = 1)]
    fee_rate: u64,
}

#[derive(clap::Args)]
pub struct ChainArgs {
    /// A stopped node's data directory (holds chain.toml and chain.redb).
    #[arg(
        long,
        required_unless_present_any = ["rpc", "rpc_data_dir"],
        conflicts_with_all = ["rpc", "rpc_data_dir"]
    )]
    data_dir: Option<PathBuf>,
    /// Chain parameters, if not `<data-dir>/chain.toml`.
    #[arg(long)]
    params: Option<PathBuf>,
    /// A running node's RPC URL, e.g. http://127.0.0.1:7332. Default with --rpc-data-dir:
    /// `rpc_url` of its `node.json`.
    #[arg(long)]
    rpc: Option<String>,
    /// Node RPC credentials: none, cookie:DIR (the node's data directory) or user:password.
    #[arg(long, conflicts_with = "data_dir")]
    rpc_auth: Option<node::rpc::client::ClientAuth>,
    /// A running node's data directory: its `.cookie` holds the credentials and its
    /// `node.json` the RPC URL (as bitcoin-cli's -datadir).
    #[arg(long)]
    rpc_data_dir: Option<PathBuf>,
}

impl ChainArgs {
    fn connection(&self) -> Option<Connection> {
        (self.rpc.is_some() || self.rpc_data_dir.is_some()).then(|| Connection {
            url: self.rpc.clone(),
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
        Command::Bond { command } => {
            let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
            runtime.block_on(bond(command))?;
        }
    }
    Ok(())
}

async fn bond(command: BondCommand) -> Result<()> {
    match command {
        BondCommand::Create {
            bond,
            coins,
            fee_rate,
        } => {
            let (client, terms) = bond_context(&bond).await?;
            let (wallet, owned, tip) = rpc_view(&client, &bond.key).await?;
            let value = coins.unwrap_or(terms.bond_min);
            let fee_rate = FeeRate::from_sat_per_vb(fee_rate).context("fee rate too large")?;
            let tx = wallet.build_bond(&owned, tip, &terms, value, fee_rate)?;
            let hex = bitcoin::consensus::encode::serialize_hex(&tx);
            let txid = client
                .call("sendrawtransaction", vec![json!(hex)])
                .await
                .context("the node refused the bond transaction")?;
            let next = u64::from(tip.height) + 1;
            println!("bond:           {}:0", txid.as_str().unwrap_or_default());
            println!("value:          {value}");
            println!(
                "reclaimable at: height {} if it confirms in the next block ({next}); \
                 {} blocks after the block that confirms it",
                next + u64::from(terms.lock_blocks),
                terms.lock_blocks
            );
        }
        BondCommand::Inspect { bond, outpoint } => {
            let (client, terms) = bond_context(&bond).await?;
            let wallet = load_wallet(&bond.key, network_of(&client).await?)?;
            let Some(coin) = bond_coin(&client, outpoint).await? else {
                let confirmed = client
                    .call(
                        "gettxout",
                        vec![
                            json!(outpoint.txid.to_string()),
                            json!(outpoint.vout),
                            json!(false),
                        ],
                    )
                    .await?;
                println!("outpoint:       {outpoint}");
                if confirmed.is_null() {
                    println!("status:         spent (or never created): not in the coin set");
                } else {
                    println!("status:         being spent by a transaction in the mempool");
                }
                return Ok(());
            };
            let own = wallet.is_own_bond(&terms, &coin.script_pubkey);
            println!("outpoint:       {outpoint}");
            println!("value:          {}", coin.value);
            println!("confirmations:  {}", coin.confirmations);
            println!(
                "this key's bond: {}",
                if own {
                    "yes (bond script for this key under the chain's terms)"
                } else {
                    "no (the output script is not this key's bond under the chain's terms)"
                }
            );
            if coin.value < terms.bond_min {
                println!("below bond_min: {} < {}", coin.value, terms.bond_min);
            }
            match coin.height {
                None => println!(
                    "status:         unconfirmed (in the mempool); reclaimable {} blocks after \
                     the block that confirms it",
                    terms.lock_blocks
                ),
                Some(height) => {
                    let at = wallet::bond::reclaimable_at(&terms, height);
                    let next = u64::from(coin.tip_height) + 1;
                    println!("confirmed at:   height {height}");
                    if next >= at {
                        println!("reclaimable at: height {at} (now: the next block is {next})");
                        println!("status:         reclaimable");
                    } else {
                        println!(
                            "reclaimable at: height {at} (after {} more blocks)",
                            at - next
                        );
                        println!("status:         locked");
                    }
                }
            }
        }
        BondCommand::Reclaim {
            bond,
            outpoint,
            fee_rate,
        } => {
            let (client, terms) = bond_context(&bond).await?;
            let network = network_of(&client).await?;
            let wallet = load_wallet(&bond.key, network)?;
            let coin = bond_coin(&client, outpoint).await?.ok_or_else(|| {
                anyhow!("{outpoint} is not unspent: already spent, or never created")
            })?;
            if !wallet.is_own_bond(&terms, &coin.script_pubkey) {
                bail!("{outpoint} is not this key's bond under the chain's bond terms");
            }
            let Some(height) = coin.height else {
                bail!(
                    "bond {outpoint} is not confirmed yet; it becomes reclaimable {} blocks after \
                     the block that confirms it",
                    terms.lock_blocks
                );
            };
            let tip = ChainTip {
                height: coin.tip_height,
                coinbase_maturity_blocks: 0,
            };
            let fee_rate = FeeRate::from_sat_per_vb(fee_rate).context("fee rate too large")?;
            let tx = wallet
                .build_reclaim(&terms, outpoint, coin.value, height, tip, fee_rate)
                .with_context(|| format!("not reclaiming bond {outpoint}; nothing was sent"))?;
            let hex = bitcoin::consensus::encode::serialize_hex(&tx);
            let txid = client
                .call("sendrawtransaction", vec![json!(hex)])
                .await
                .context("the node refused the reclaim transaction")?;
            println!("reclaim:        {}", txid.as_str().unwrap_or_default());
            println!(
                "pays:           {} to {}",
                tx.output[0].value,
                wallet.address()
            );
        }
    }
    Ok(())
}

/// The node's client and the chain's bond terms, from parameters whose genesis is the node's.
async fn bond_context(
    args: &BondArgs,
) -> Result<(node::rpc::client::RpcClient, consensus::bond::BondTerms)> {
    let path = match (&args.params, &args.connection.rpc_data_dir) {
        (Some(path), _) => path.clone(),
        (None, Some(dir)) => dir.join(params::PARAMS_FILE),
        (None, None) => bail!(
            "bond commands need the chain's parameters for its bond terms: give --params \
             chain.toml or --rpc-data-dir DIR (the node's data directory)"
        ),
    };
    let chain = params::load(Some(&path), Path::new("."))?;
    let client = args.connection.client()?;
    let info = client.call("getblockchaininfo", vec![]).await?;
    let genesis = info["genesisblockhash"].as_str().unwrap_or_default();
    if genesis != chain.genesis_hash().to_string() {
        bail!(
            "{} is another chain's parameters: its genesis is {}, the node's is {genesis}",
            path.display(),
            chain.genesis_hash()
        );
    }
    Ok((client, consensus::bond::BondTerms::from_params(&chain)))
}

async fn network_of(client: &node::rpc::client::RpcClient) -> Result<Network> {
    let info = client.call("getblockchaininfo", vec![]).await?;
    info["network"]
        .as_str()
        .ok_or_else(|| anyhow!("getblockchaininfo has no network"))?
        .parse()
        .context("node reports an unknown network")
}

/// An unspent output as `gettxout` (mempool included) shows it.
struct UnspentOutput {
    value: Amount,
    script_pubkey: ScriptBuf,
    confirmations: u64,
    /// The confirming block's height; `None` while only in the mempool.
    height: Option<u32>,
    /// Height of the tip the answer was read at.
    tip_height: u32,
}

async fn bond_coin(
    client: &node::rpc::client::RpcClient,
    outpoint: OutPoint,
) -> Result<Option<UnspentOutput>> {
    let out = client
        .call(
            "gettxout",
            vec![
                json!(outpoint.txid.to_string()),
                json!(outpoint.vout),
                json!(true),
            ],
        )
        .await?;
    if out.is_null() {
        return Ok(None);
    }
    let value = Amount::from_btc(out["value"].as_f64().unwrap_or(-1.0))
        .context("gettxout value is not an amount")?;
    let script_pubkey = ScriptBuf::from_bytes(
        hex::decode(out["scriptPubKey"]["hex"].as_str().unwrap_or_default())
            .context("gettxout scriptPubKey is not hex")?,
    );
    let confirmations = out["confirmations"]
        .as_u64()
        .ok_or_else(|| anyhow!("gettxout has no confirmations"))?;
    let best = out["bestblock"].as_str().unwrap_or_default();
    let header = client
        .call("getblockheader", vec![json!(best)])
        .await
        .context("reading the tip header")?;
    let tip_height = u32::try_from(
        header["height"]
            .as_u64()
            .ok_or_else(|| anyhow!("getblockheader has no height"))?,
    )?;
    let height = match confirmations {
        0 => None,
        n => Some(
            (u64::from(tip_height) + 1)
                .checked_sub(n)
                .and_then(|h| u32::try_from(h).ok())
                .ok_or_else(|| anyhow!("gettxout reports more confirmations than blocks"))?,
        ),
    };
    Ok(Some(UnspentOutput {
        value,
        script_pubkey,
        confirmations,
        height,
        tip_height,
    }))
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
