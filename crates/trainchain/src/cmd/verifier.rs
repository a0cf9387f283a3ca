//! `trainchain verifier`: a bonded verifier that replays the intervals the coordinator assigns
//! it and signs what each replay ends in.

use anyhow::{Context, Result};
use bitcoin::{Address, CompressedPublicKey, Network};
use std::path::PathBuf;
use std::str::FromStr;
use verifier::{Verifier, VerifierConfig};

#[derive(clap::Args)]
pub struct Args {
    /// TOML file whose keys are this command's flags; flags given here override it.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// The coordinator's HTTP API, e.g. http://127.0.0.1:8080.
    #[arg(long)]
    pub coordinator: String,
    /// The verifier's secret key file (`trainchain wallet new` writes one). It must not be a
    /// key that mines in the same cycle.
    #[arg(long)]
    pub key: PathBuf,
    /// The verifier's bond (TXID:VOUT, a `trainchain wallet bond create` output for this key):
    /// every claim it signs puts this bond at stake.
    #[arg(long, value_name = "TXID:VOUT")]
    pub bond: coordinator::api::BondOutpoint,
    /// Where finder shares of slashed miners' bonds go. Default: the key's P2WPKH address on
    /// --network.
    #[arg(long, value_name = "ADDRESS")]
    pub payout: Option<String>,
    /// The chain's network, for the default payout address (bitcoin, testnet, signet, regtest).
    #[arg(long, default_value = "regtest")]
    pub network: Network,
    /// Replay threads (default: every core; the replayed bits do not depend on it).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Append one JSON line per cycle (assignments, claims, replayed steps) here.
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// Stop after this many cycles (default: run until stopped).
    #[arg(long)]
    pub cycles: Option<u64>,
    /// Devnet bad-actor testing only: sign the shown leaf without replaying.
    #[arg(long, hide = true)]
    pub lazy: bool,
}

pub fn run(args: Args) -> Result<()> {
    let key = wallet::key_file::load(&args.key)
        .with_context(|| format!("loading verifier key {}", args.key.display()))?;
    let payout_address = match args.payout {
        Some(address) => Address::from_str(&address)
            .with_context(|| format!("--payout {address:?} is not an address"))?
            .require_network(args.network)
            .with_context(|| format!("--payout {address:?} is not a {} address", args.network))?
            .to_string(),
        None => {
            let secp = bitcoin::secp256k1::Secp256k1::new();
            Address::p2wpkh(&CompressedPublicKey(key.public_key(&secp)), args.network).to_string()
        }
    };
    let threads = args.threads.unwrap_or_else(|| {
        std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
    });
    let config = VerifierConfig {
        coordinator_url: args.coordinator,
        key,
        bond: args.bond,
        payout_address,
        threads,
        lazy: args.lazy,
        cycles_max: args.cycles,
        report_path: args.report,
    };
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(async move {
        let verifier = Verifier::new(config)?;
        verifier.run().await?;
        Ok(())
    })
}
