//! `trainchain devnet`: a whole network on this machine (see the `devnet` crate).

use anyhow::{bail, Context, Result};
use devnet::{DevnetConfig, ModelArg};
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

#[derive(clap::Args)]
pub struct Args {
    /// Where the chain, every process's data and logs, and the exported model go (default:
    /// a fresh `trainchain-devnet/run-<unix time>`).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Node processes, linked over libp2p on loopback.
    #[arg(long, default_value_t = 2)]
    pub nodes: usize,
    /// Honest miners (each its own key, process and node).
    #[arg(long, default_value_t = 3)]
    pub miners: usize,
    /// Extra miners that upload their segment unchanged.
    #[arg(long, default_value_t = 0)]
    pub lazy_miners: usize,
    /// Extra miners that upload random weights.
    #[arg(long, default_value_t = 0)]
    pub noise_miners: usize,
    /// Extra miners that cheat at proof of training (each kind in turn, or `--cheat KIND`);
    /// the replay check catches each one and it wins nothing.
    #[arg(long, default_value_t = 0)]
    pub cheat_miners: usize,
    /// The cheat of every `--cheat-miners` miner: other-data, rescale, skip-steps,
    /// wrong-order, wrong-rate or perturb.
    #[arg(long, value_parser = parse_cheat)]
    pub cheat: Option<miner::behaviour::Cheat>,
    /// Extra keys run by one operator (a sybil), each training honestly in its own process:
    /// with `--sybil-bonds each` every key has its own bond (N bonds buy N slots, no more),
    /// with `none` they have no bond and every registration is refused.
    #[arg(long, default_value_t = 0)]
    pub sybil_miners: usize,
    /// Bonds of the `--sybil-miners` keys: `each` or `none`.
    #[arg(long, default_value = "each", value_parser = ["each", "none"])]
    pub sybil_bonds: String,
    /// Bonded verifiers that replay the intervals they are assigned and sign the results;
    /// they earn the finder share of a cheat's bond their claim exposes.
    #[arg(long, default_value_t = 1)]
    pub verifiers: usize,
    /// Extra bonded verifiers that sign the leaf they are shown without replaying: a planted
    /// flag catches each and its bond is slashed.
    #[arg(long, default_value_t = 0)]
    pub lazy_verifiers: usize,
    /// Training cycles to run.
    #[arg(long, default_value_t = 5)]
    pub cycles: u64,
    /// Length of a cycle (registration + training), in seconds.
    #[arg(long, default_value_t = 15)]
    pub cycle_secs: u64,
    /// Dataset: `wordnet` (shipped English text: WordNet 3.0's glosses, 1 MiB), `digits`
    /// (shipped 8x8 images, the fast setup), `mnist:DIR`, `csv:FILE` or `text:FILE`.
    #[arg(long, default_value = "wordnet")]
    pub dataset: String,
    /// Model: `lm:DIM,LAYERS,HEADS` (a byte-level transformer, for text; the default has
    /// 137,216 parameters and needs every second of a window), `mlp:W1,W2,...` (hidden layer
    /// widths; `mlp:32` with `--dataset digits` is the fast setup) or `cnn:C1,C2[,kK]` (two
    /// convolutions' channels, odd kernel size, default 3; square images).
    #[arg(long, default_value = "lm:64,2,4")]
    pub model: ModelArg,
    /// Write the summary as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Training threads per miner (default: this machine's cores shared among the miners).
    #[arg(long)]
    pub miner_threads: Option<usize>,
    /// After the summary, keep the nodes, the coordinator and the dashboard up for inspection
    /// until Ctrl-C (the miners stop, so the chain stays the one the summary describes).
    #[arg(long)]
    pub linger: bool,
    /// Testing: SIGKILL the coordinator while this cycle trains, then restart it.
    #[arg(long, hide = true)]
    pub restart_coordinator_in_cycle: Option<u64>,
    /// Post a training job of this model on the devnet's dataset once the coordinator is up
    /// (`trainchain job submit`, signed by an owner key in the data directory): it runs after
    /// cycle 0, for --job-cycles cycles, then the coordinator's own workload resumes; its model
    /// is fetched into `model/` (`trainchain job fetch`).
    #[arg(long, value_name = "MODEL")]
    pub job: Option<ModelArg>,
    /// Cycles of the --job.
    #[arg(long, default_value_t = 2)]
    pub job_cycles: u64,
}

fn parse_cheat(text: &str) -> Result<miner::behaviour::Cheat, String> {
    match text.parse::<miner::Behaviour>()? {
        miner::Behaviour::Cheat(cheat) => Ok(cheat),
        other => Err(format!("{other} is not a cheat")),
    }
}

pub fn run(args: Args) -> Result<()> {
    let exe = std::env::current_exe().context("locating the trainchain binary")?;
    let data_dir = args.data_dir.unwrap_or_else(|| {
        let secs = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        PathBuf::from("trainchain-devnet").join(format!("run-{secs}"))
    });
    let all_miners =
        args.miners + args.lazy_miners + args.noise_miners + args.cheat_miners + args.sybil_miners;
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    let config = DevnetConfig {
        exe,
        data_dir,
        nodes: args.nodes,
        miners: args.miners,
        lazy_miners: args.lazy_miners,
        noise_miners: args.noise_miners,
        cheat_miners: args.cheat_miners,
        cheat: args.cheat,
        sybil_miners: args.sybil_miners,
        sybil_bonds: args.sybil_bonds == "each",
        verifiers: args.verifiers,
        lazy_verifiers: args.lazy_verifiers,
        cycles: args.cycles,
        cycle_secs: args.cycle_secs,
        dataset: args.dataset,
        model: args.model,
        json: args.json,
        miner_threads: args
            .miner_threads
            .unwrap_or((cores / all_miners.max(1)).max(1)),
        restart_coordinator_in_cycle: args.restart_coordinator_in_cycle,
        job: args.job,
        job_cycles: args.job_cycles,
    };
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    let (outcome, network) = runtime.block_on(devnet::run::run_network(config))?;
    print!("{}", devnet::run::render(&outcome));
    if args.linger {
        runtime.block_on(network.linger())?;
    } else {
        drop(network);
    }
    if !outcome.passed() {
        bail!("the devnet did not end on one agreed, audited chain");
    }
    Ok(())
}
