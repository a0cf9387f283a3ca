//! What a devnet runs.

use crate::error::DevnetError;
use miner::behaviour::Cheat;
use miner::Behaviour;
use std::path::PathBuf;

/// The devnet's model, as `--model` names it (`mlp:W1,...` or `cnn:C1,C2[,kK]`).
pub type ModelArg = learning::ModelChoice;

/// One miner of the devnet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MinerRole {
    pub name: String,
    pub behaviour: Behaviour,
    /// Index of the node it talks to.
    pub node: usize,
    /// One of the `--sybil-miners` keys, all run by one operator.
    pub sybil: bool,
    /// Whether the genesis block pays it a bond it registers with.
    pub bonded: bool,
}

/// One verifier of the devnet (bonded at genesis like a miner).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifierRole {
    pub name: String,
    /// Signs the leaf it is shown without replaying (`--lazy-verifiers`).
    pub lazy: bool,
}

#[derive(Debug, Clone)]
pub struct DevnetConfig {
    /// The `trainchain` binary that runs every role.
    pub exe: PathBuf,
    pub data_dir: PathBuf,
    pub nodes: usize,
    /// Honest miners.
    pub miners: usize,
    pub lazy_miners: usize,
    pub noise_miners: usize,
    /// Miners that cheat at proof of training: `cheat` for all, or each kind in turn.
    pub cheat_miners: usize,
    pub cheat: Option<Cheat>,
    /// Extra keys run by one operator (honest training each), bonded or not.
    pub sybil_miners: usize,
    pub sybil_bonds: bool,
    /// Honest verifiers and lazy ones (bonded, each its own key and process).
    pub verifiers: usize,
    pub lazy_verifiers: usize,
    pub cycles: u64,
    pub cycle_secs: u64,
    pub dataset: String,
    pub model: ModelArg,
    pub json: Option<PathBuf>,
    /// Training threads per miner.
    pub miner_threads: usize,
    /// Kill the coordinator (SIGKILL) while this cycle trains, then restart it.
    pub restart_coordinator_in_cycle: Option<u64>,
    /// A training job to post on the devnet's dataset once the coordinator is up (with
    /// `trainchain job submit`, as an owner would), and its number of cycles.
    pub job: Option<ModelArg>,
    pub job_cycles: u64,
}

/// Most processes a devnet starts per role: it is a single-machine demo, and each process
/// holds a few file descriptors and a runtime.
pub const ROLE_PROCESSES_MAX: usize = 64;

impl DevnetConfig {
    pub fn check(&self) -> Result<(), DevnetError> {
        let bad = |why: String| Err(DevnetError::Config(why));
        if self.nodes == 0 || self.nodes > ROLE_PROCESSES_MAX {
            return bad(format!("--nodes must be 1..={ROLE_PROCESSES_MAX}"));
        }
        let miners = self.miners
            + self.lazy_miners
            + self.noise_miners
            + self.cheat_miners
            + self.sybil_miners;
        if self.miners == 0 || miners > ROLE_PROCESSES_MAX {
            return bad(format!(
                "need at least one honest miner and at most {ROLE_PROCESSES_MAX} miners in all"
            ));
        }
        let verifiers = self.verifiers + self.lazy_verifiers;
        if verifiers > coordinator::verifiers::VERIFIERS_PER_CYCLE_MAX {
            return bad(format!(
                "at most {} verifiers in all (the coordinator's per-cycle cap)",
                coordinator::verifiers::VERIFIERS_PER_CYCLE_MAX
            ));
        }
        if self.cycles == 0 {
            return bad("--cycles must be at least 1".into());
        }
        if self.cycle_secs < 2 {
            return bad("--cycle-secs must be at least 2 (registration needs a moment)".into());
        }
        if self.miner_threads == 0 {
            return bad("miner threads must be at least 1".into());
        }
        if self.job.is_some() {
            if !(1..=coordinator::api::JOB_CYCLES_MAX).contains(&self.job_cycles) {
                return bad(format!(
                    "--job-cycles must be 1..={}",
                    coordinator::api::JOB_CYCLES_MAX
                ));
            }
            if self.dataset.starts_with("mnist:") {
                return bad(
                    "--job posts the devnet's dataset as the job's data: a shipped one, csv:FILE or text:FILE (not mnist:DIR)".into(),
                );
            }
        }
        Ok(())
    }

    /// Honest miners first, then lazy, noise and cheating ones, then the sybil operator's
    /// keys; spread over the nodes round-robin.
    pub fn miner_roles(&self) -> Vec<MinerRole> {
        let cheats = (0..self.cheat_miners)
            .map(|i| Behaviour::Cheat(self.cheat.unwrap_or(Cheat::ALL[i % Cheat::ALL.len()])));
        let kinds = std::iter::repeat_n(Behaviour::Honest, self.miners)
            .chain(std::iter::repeat_n(Behaviour::Lazy, self.lazy_miners))
            .chain(std::iter::repeat_n(Behaviour::Noise, self.noise_miners))
            .chain(cheats);
        let mut roles: Vec<MinerRole> = kinds
            .enumerate()
            .map(|(i, behaviour)| MinerRole {
                name: format!("miner-{i}"),
                behaviour,
                node: i % self.nodes,
                sybil: false,
                bonded: true,
            })
            .collect();
        let first = roles.len();
        roles.extend((0..self.sybil_miners).map(|i| MinerRole {
            name: format!("sybil-{i}"),
            behaviour: Behaviour::Honest,
            node: (first + i) % self.nodes,
            sybil: true,
            bonded: self.sybil_bonds,
        }));
        roles
    }

    /// Honest verifiers first, then lazy ones.
    pub fn verifier_roles(&self) -> Vec<VerifierRole> {
        (0..self.verifiers + self.lazy_verifiers)
            .map(|i| VerifierRole {
                name: format!("verifier-{i}"),
                lazy: i >= self.verifiers,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_arg_parses_widths_and_refuses_nonsense() {
        assert_eq!(
            "mlp:32".parse::<ModelArg>().unwrap(),
            ModelArg::Mlp { hidden: vec![32] }
        );
        assert_eq!(
            "mlp:64,16".parse::<ModelArg>().unwrap().to_string(),
            "mlp:64,16"
        );
        assert!("cnn:3".parse::<ModelArg>().is_err());
        assert!("mlp:0".parse::<ModelArg>().is_err());
        assert!("mlp:".parse::<ModelArg>().is_err());
    }
}
