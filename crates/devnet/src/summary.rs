//! The devnet's summary: printed at the end and, with `--json PATH`, written as JSON in
//! exactly this shape:
//!
//! ```json
//! {"chain": {"height", "best_hash"},
//!  "blocks": [{"height", "hash", "cycle", "attempt", "winner"}],
//!  "cycles": [{"cycle", "entries", "winner", "seed", "held_out_loss", "test_accuracy",
//!              "verified", "failed", "unanswered"}],
//!  "miners": [{"name", "behaviour", "blocks", "useful_work_fraction", "window_utilisation",
//!              "samples_per_sec", "tokens_per_sec" (language models), "verified", "failed",
//!              "unanswered", "failures", "bond", "bond_kept", "sybil", "cycles_without_work",
//!              "missed_reason"}],
//!  "verifiers": [{"name", "lazy", "public_key", "bond", "bond_kept", "cycles_enrolled",
//!                 "assignments", "trusted", "confirmed", "caught_cheats", "wrong",
//!                 "finder_sats"}],
//!  "model": {"path", "test_accuracy", "parameters", "sample_before", "sample_after"
//!            (language models: generated text before and after training)},
//!  "jobs": [{"id", "name", "state", "cycles_run", "first_cycle", "last_cycle", "model_hash",
//!            "held_out_loss", "model_path"}],
//!  "useful_work_fraction", "window_utilisation", "replayed_steps", "challenged_steps",
//!  "nodes_agree"}
//! ```
//!
//! `winner` is the producing miner's public key (hex, compressed), `null` for a cycle without
//! a block; `seed` is the lottery seed (hex), `null` if the cycle had no lottery;
//! `held_out_loss` and `test_accuracy` are of the global model after the cycle.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChainTip {
    pub height: u32,
    pub best_hash: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BlockLine {
    pub height: u32,
    pub hash: String,
    pub cycle: u64,
    pub attempt: u32,
    pub winner: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CycleLine {
    pub cycle: u64,
    /// Lottery entries (submissions that scored above zero).
    pub entries: usize,
    pub winner: Option<String>,
    pub seed: Option<String>,
    pub held_out_loss: f32,
    pub test_accuracy: f32,
    /// Submissions whose replay check passed, failed (fraud evidence) or went unanswered.
    #[serde(default)]
    pub verified: usize,
    #[serde(default)]
    pub failed: usize,
    #[serde(default)]
    pub unanswered: usize,
}

/// One miner over the whole run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MinerLine {
    pub name: String,
    pub behaviour: String,
    pub blocks: usize,
    pub useful_work_fraction: f64,
    /// Wall-clock training time over the cycles' training windows (the cycles it trained
    /// in): how much of the time it was given its compute spent training.
    #[serde(default)]
    pub window_utilisation: f64,
    /// Training samples per second of training wall time (steps × batch / seconds), and for a
    /// language model the same in tokens (samples × context).
    #[serde(default)]
    pub samples_per_sec: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens_per_sec: Option<f64>,
    /// Its replay checks: passed, failed, unanswered.
    pub verified: usize,
    pub failed: usize,
    pub unanswered: usize,
    /// The reason of each failed check, in cycle order.
    pub failures: Vec<String>,
    /// Its bond (`txid:vout`), and whether it was still an unspent output (in the chain and
    /// the mempool of node 0) at the end: false once the coordinator slashed it.
    #[serde(default)]
    pub bond: String,
    #[serde(default)]
    pub bond_kept: bool,
    /// One of the `--sybil-miners` keys.
    #[serde(default)]
    pub sybil: bool,
    /// Cycles it took part in without a receipted submission (registration refused, not
    /// admitted, or its work failed), and the first such cycle's reason.
    #[serde(default)]
    pub cycles_without_work: usize,
    #[serde(default)]
    pub missed_reason: Option<String>,
}

/// One verifier over the whole run, from the cycle records' `verification`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct VerifierLine {
    pub name: String,
    pub lazy: bool,
    pub public_key: String,
    pub bond: String,
    /// Whether its bond was still unspent at the end (false once slashed).
    pub bond_kept: bool,
    pub cycles_enrolled: usize,
    pub assignments: usize,
    /// Its claims by outcome (see `coordinator::api::ClaimOutcome`).
    pub trusted: usize,
    pub confirmed: usize,
    pub caught_cheats: usize,
    pub wrong: usize,
    /// Claims on openings that did not hold (the miner failed; the claim counted for nothing).
    #[serde(default)]
    pub void: usize,
    /// Finder shares of slashed miners' bonds paid to it, in satoshis.
    pub finder_sats: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelLine {
    /// The exported safetensors file (its model card is next to it, `.json`).
    pub path: String,
    pub test_accuracy: f32,
    pub parameters: usize,
    /// A language model's text from the same prompt and seed before and after training
    /// (`learning::sample_text`, UTF-8 with invalid bytes replaced); absent for other models.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sample_before: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sample_after: Option<String>,
}

/// One training job (the coordinator's own workload included), at the end of the run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobLine {
    pub id: String,
    pub name: String,
    /// `queued`, `running`, `waiting`, `done` or `cancelled`.
    pub state: String,
    pub cycles_run: u64,
    pub first_cycle: Option<u64>,
    pub last_cycle: Option<u64>,
    /// Its newest merged model's hash and loss on the batch of the cycle that made it.
    pub model_hash: Option<String>,
    pub held_out_loss: Option<f64>,
    /// Where `trainchain job fetch` wrote a posted job's model.
    pub model_path: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub chain: ChainTip,
    pub blocks: Vec<BlockLine>,
    pub cycles: Vec<CycleLine>,
    pub model: ModelLine,
    #[serde(default)]
    pub miners: Vec<MinerLine>,
    #[serde(default)]
    pub verifiers: Vec<VerifierLine>,
    /// Steps the coordinator replayed itself, against the steps of every challenged interval
    /// (what it replays with no verifier), over the run.
    #[serde(default)]
    pub replayed_steps: u64,
    #[serde(default)]
    pub challenged_steps: u64,
    /// Training CPU over all CPU of the honest miners' processes, over the devnet's cycles.
    pub useful_work_fraction: f64,
    /// The honest miners' wall-clock training time over their training windows.
    #[serde(default)]
    pub window_utilisation: f64,
    /// The coordinator's jobs, its own workload first.
    #[serde(default)]
    pub jobs: Vec<JobLine>,
    pub nodes_agree: bool,
}
