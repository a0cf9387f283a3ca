//! `trainchain`: one binary, one subcommand per role. This file only parses arguments and
//! dispatches; each subcommand's glue lives in `cmd/<name>.rs` and the logic in the libraries.

mod cmd;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "trainchain",
    version,
    about = "A blockchain whose proof of work is proof of useful training",
    long_about = "A blockchain whose proof of work is proof of useful training: a coordinator \
                  runs training cycles, scores miners' model updates on a held-out set, and signs \
                  a block-signing certificate for the winner of a weighted, auditable lottery."
)]
struct Cli {
    /// What to log on stderr: a level (error, warn, info, debug, trace) or a `RUST_LOG`-style
    /// filter such as `info,node=debug`. Default: `RUST_LOG` if set, else info.
    #[arg(long, global = true, value_name = "FILTER")]
    log_level: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create a new chain: chain parameters (TOML) with a genesis block and a coordinator key.
    Init(cmd::init::Args),
    /// Keys, addresses, balances and payments.
    #[command(subcommand)]
    Wallet(cmd::wallet::Command),
    /// Run a node: chain store, libp2p network, JSON-RPC server.
    Node(cmd::node::Args),
    /// Call a node's JSON-RPC method (bitcoin-cli style).
    Rpc(cmd::rpc::Args),
    /// Run the coordinator: training cycles, scoring, lottery and certificates over HTTP.
    Coordinator(cmd::coordinator::Args),
    /// Take part in training cycles and produce the blocks won.
    Miner(cmd::miner::Args),
    /// Replay the training intervals a coordinator assigns, bonded, and sign the results.
    Verifier(cmd::verifier::Args),
    /// Run a whole network on this machine: nodes, a coordinator and miners.
    Devnet(cmd::devnet::Args),
    /// Post a training job to a coordinator, follow it, cancel it, fetch its model.
    #[command(subcommand)]
    Job(cmd::job::Command),
    /// Check a chain and its coordinator's lotteries independently.
    Audit(cmd::audit::Args),
    /// Serve a live web dashboard of a coordinator's cycles and a node's chain.
    Dashboard(cmd::dashboard::Args),
    /// Recheck one piece of fraud evidence (a failed proof-of-training check) by replaying it.
    VerifyEvidence(cmd::verify_evidence::Args),
}

fn main() -> ExitCode {
    // A role's `--config FILE` becomes flags in front of the command line's own.
    let args = match cmd::role_config::expand::<Cli>(std::env::args_os().collect()) {
        Ok(args) => args,
        Err(error) => {
            eprintln!("error: {}", describe(&error));
            return ExitCode::from(2);
        }
    };
    let cli = Cli::parse_from(args);
    if let Err(error) = cmd::logging::init(cli.log_level.as_deref()) {
        eprintln!("error: {}", describe(&error));
        return ExitCode::from(2);
    }
    let result = match cli.command {
        Command::Init(args) => cmd::init::run(args),
        Command::Wallet(command) => cmd::wallet::run(command),
        Command::Node(args) => cmd::node::run(args),
        Command::Rpc(args) => cmd::rpc::run(args),
        Command::Coordinator(args) => cmd::coordinator::run(args),
        Command::Miner(args) => cmd::miner::run(args),
        Command::Verifier(args) => cmd::verifier::run(args),
        Command::Devnet(args) => cmd::devnet::run(args),
        Command::Job(command) => cmd::job::run(command),
        Command::Audit(args) => cmd::audit::run(args),
        Command::Dashboard(args) => cmd::dashboard::run(args),
        Command::VerifyEvidence(args) => cmd::verify_evidence::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {}", describe(&error));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes, skipping a cause whose text the previous message already shows
/// (library errors often print their source inside their own message).
fn describe(error: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in error.chain() {
        let message = cause.to_string();
        if !text.contains(&message) {
            if !text.is_empty() {
                text.push_str(": ");
            }
            text.push_str(&message);
        }
    }
    text
}
