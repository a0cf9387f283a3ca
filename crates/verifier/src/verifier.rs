//! The verifier's loop: each cycle it enrols with its bond during Training, waits for its
//! assignments at the end of the challenge window, replays each one and signs the leaf.

use crate::replay::replay_assignment;
use bitcoin::secp256k1::{All, PublicKey, Secp256k1, SecretKey};
use coordinator_api::api::{
    BondOutpoint, Claim, ClaimSubject, EnrolRequest, PhaseName, ReplayAssignments,
};
use coordinator_api::client::ClientError;
use coordinator_api::CoordinatorClient;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use thiserror::Error;
use tracing::{info, warn};

/// How often the coordinator is polled for the phase and for assignments: a fraction of the
/// shortest (1.5 s) verification window.
pub const POLL_INTERVAL: Duration = Duration::from_millis(200);
/// How long the verifier waits for its assignments after enrolling before giving the cycle
/// up: longer than any sane training plus challenge window.
pub const ASSIGNMENT_WAIT_MAX: Duration = Duration::from_secs(3_600);
/// How long the coordinator may be unreachable before the verifier stops.
pub const UNREACHABLE_MAX: Duration = Duration::from_secs(120);

pub struct VerifierConfig {
    pub coordinator_url: String,
    pub key: SecretKey,
    /// A `consensus::bond` output for this key (`trainchain wallet bond create`).
    pub bond: BondOutpoint,
    /// Where finder shares go.
    pub payout_address: String,
    pub threads: usize,
    /// Devnet bad-actor testing only: sign the shown leaf without replaying.
    pub lazy: bool,
    /// Stop after this many cycles taken part in (none: run until stopped).
    pub cycles_max: Option<u64>,
    /// Append one JSON line per cycle here.
    pub report_path: Option<PathBuf>,
}

#[derive(Debug, Error)]
pub enum VerifierError {
    #[error("coordinator: {0}")]
    Coordinator(#[from] ClientError),
    #[error("writing the report {path}: {source}")]
    Report {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// What the verifier did in one cycle.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct VerifierCycleReport {
    pub cycle: u64,
    pub verifier: String,
    pub lazy: bool,
    pub enrolled: bool,
    /// Why enrolment or the assignments were refused, if they were.
    pub refused: Option<String>,
    pub assignments: u64,
    pub claims_sent: u64,
    /// Claims whose leaf differs from the leaf shown (a flag, or a miner's false leaf).
    pub disputed: u64,
    pub replayed_steps: u64,
    pub replay_secs: f64,
}

pub struct Verifier {
    config: VerifierConfig,
    secp: Secp256k1<All>,
    public_key: PublicKey,
    client: CoordinatorClient,
}

impl Verifier {
    pub fn new(config: VerifierConfig) -> Result<Self, VerifierError> {
        let secp = Secp256k1::new();
        let public_key = config.key.public_key(&secp);
        let client = CoordinatorClient::new(&config.coordinator_url)?;
        Ok(Verifier {
            config,
            secp,
            public_key,
            client,
        })
    }

    pub fn public_key(&self) -> PublicKey {
        self.public_key
    }

    /// Takes part in cycles until `cycles_max` (or forever), one report per cycle.
    pub async fn run(&self) -> Result<Vec<VerifierCycleReport>, VerifierError> {
        info!(verifier = %self.public_key, bond = %self.config.bond, lazy = self.config.lazy, "verifier started");
        let mut reports = Vec::new();
        let mut last_cycle: Option<u64> = None;
        let mut unreachable_since: Option<Instant> = None;
        loop {
            if self
                .config
                .cycles_max
                .is_some_and(|max| reports.len() as u64 >= max)
            {
                return Ok(reports);
            }
            let status = match self.client.status().await {
                Ok(status) => {
                    unreachable_since = None;
                    status
                }
                Err(e) if transient(&e) => {
                    let since = *unreachable_since.get_or_insert_with(Instant::now);
                    if since.elapsed() > UNREACHABLE_MAX {
                        return Err(e.into());
                    }
                    tokio::time::sleep(POLL_INTERVAL).await;
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            let cycle = status.announcement.announcement.cycle;
            let fresh = last_cycle.is_none_or(|last| cycle > last);
            if !fresh || status.phase != PhaseName::Training {
                tokio::time::sleep(POLL_INTERVAL).await;
                continue;
            }
            last_cycle = Some(cycle);
            let report = self.run_cycle(cycle).await;
            info!(
                cycle,
                enrolled = report.enrolled,
                assignments = report.assignments,
                claims = report.claims_sent,
                disputed = report.disputed,
                replayed_steps = report.replayed_steps,
                refused = report.refused.as_deref().unwrap_or("-"),
                "verifier cycle done"
            );
            if let Some(path) = &self.config.report_path {
                append(path, &report)?;
            }
            reports.push(report);
        }
    }

    /// One cycle: enrol, wait for the assignments, replay and claim each.
    pub async fn run_cycle(&self, cycle: u64) -> VerifierCycleReport {
        let mut report = VerifierCycleReport {
            cycle,
            verifier: self.public_key.to_string(),
            lazy: self.config.lazy,
            ..VerifierCycleReport::default()
        };
        let request = EnrolRequest::new_signed(
            &self.secp,
            &self.config.key,
            cycle,
            self.config.payout_address.clone(),
            self.config.bond,
        );
        if let Err(e) = self.client.enrol_verifier(&request).await {
            warn!(cycle, error = %e, "enrolment refused");
            report.refused = Some(e.to_string());
            return report;
        }
        report.enrolled = true;
        let assignments = match self.wait_assignments(cycle).await {
            Ok(a) => a,
            Err(e) => {
                report.refused = Some(e.to_string());
                return report;
            }
        };
        report.assignments = assignments.assignments.len() as u64;
        let mut weights: Option<Vec<u8>> = None;
        let mut inputs = BTreeMap::new();
        for assignment in &assignments.assignments {
            let (miner, interval) = (assignment.miner, assignment.interval);
            let started = Instant::now();
            let replayed = self
                .replay(assignment, &mut weights, &mut inputs, self.config.lazy)
                .await;
            report.replay_secs += started.elapsed().as_secs_f64();
            let (subject, leaf) = match replayed {
                Ok((subject, Some(leaf))) => {
                    report.replayed_steps +=
                        assignment.to_step.saturating_sub(assignment.from_step);
                    (subject, leaf)
                }
                // Lazy: the shown leaf, unreplayed.
                Ok((subject, None)) => (subject, assignment.shown_leaf),
                Err(why) => {
                    // No claim: an unreplayable interval is the coordinator's to judge, and a
                    // guess would put the bond at stake.
                    warn!(cycle, %miner, interval, %why, "cannot replay the assignment; no claim");
                    continue;
                }
            };
            if leaf != assignment.shown_leaf {
                report.disputed += 1;
            }
            let claim = Claim::new_signed(&self.secp, &self.config.key, &subject, leaf);
            match self.client.claim(&claim).await {
                Ok(()) => report.claims_sent += 1,
                Err(e) => warn!(cycle, %miner, interval, error = %e, "claim refused"),
            }
        }
        report
    }

    /// Polls for the assignments until the challenge window closed.
    async fn wait_assignments(&self, cycle: u64) -> Result<ReplayAssignments, ClientError> {
        let started = Instant::now();
        loop {
            match self
                .client
                .assignments(&self.secp, &self.config.key, cycle)
                .await
            {
                Ok(a) => return Ok(a),
                Err(e)
                    if e.code() == Some("verification_not_open")
                        && started.elapsed() < ASSIGNMENT_WAIT_MAX => {}
                Err(e) if transient(&e) && started.elapsed() < ASSIGNMENT_WAIT_MAX => {}
                Err(e) => return Err(e),
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    /// The subject of a claim on `assignment` and, unless `lazy`, the leaf its replay ends in.
    /// Downloads the cycle's weights once and each miner's task and shard once; the replay
    /// checks them against the task, and the claim signs the task's hash and the start state.
    async fn replay(
        &self,
        assignment: &coordinator_api::api::ReplayAssignment,
        weights: &mut Option<Vec<u8>>,
        inputs: &mut BTreeMap<PublicKey, (coordinator_api::api::TaskInfo, Vec<u8>)>,
        lazy: bool,
    ) -> Result<(ClaimSubject, Option<primitives::Hash256>), String> {
        let cycle = assignment.cycle;
        if let std::collections::btree_map::Entry::Vacant(slot) = inputs.entry(assignment.miner) {
            let task = self
                .client
                .task(cycle, &assignment.miner)
                .await
                .map_err(|e| e.to_string())?;
            let shard = if lazy {
                Vec::new()
            } else {
                self.client
                    .shard(cycle, &assignment.miner)
                    .await
                    .map_err(|e| e.to_string())?
            };
            slot.insert((task, shard));
        }
        let (task, shard) = &inputs[&assignment.miner];
        let subject = assignment.subject(task.replay.hash())?;
        if lazy {
            return Ok((subject, None));
        }
        if weights.is_none() {
            *weights = Some(
                self.client
                    .weights(cycle)
                    .await
                    .map_err(|e| e.to_string())?,
            );
        }
        let threads = self.config.threads;
        let (assignment, task, weights, shard) = (
            assignment.clone(),
            task.clone(),
            weights.clone().unwrap_or_default(),
            shard.clone(),
        );
        // Training is CPU-bound: off the async runtime.
        let leaf = tokio::task::spawn_blocking(move || {
            replay_assignment(&assignment, &task, &weights, &shard, threads)
        })
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
        Ok((subject, Some(leaf)))
    }
}

/// A failure that may go away by itself (the coordinator restarting, or rate limiting).
fn transient(e: &ClientError) -> bool {
    match e {
        ClientError::Transport(_) => true,
        ClientError::Api { status, .. } => *status == 429 || *status >= 500,
        _ => false,
    }
}

fn append(path: &PathBuf, report: &VerifierCycleReport) -> Result<(), VerifierError> {
    let line = serde_json::to_string(report).expect("a report serialises");
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .and_then(|mut f| writeln!(f, "{line}"))
        .map_err(|source| VerifierError::Report {
            path: path.clone(),
            source,
        })
}
