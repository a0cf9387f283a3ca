//! The miner's cycle loop: register, train, submit, and produce the block when it wins.

use crate::behaviour::{produce, Behaviour, Work};
use crate::block::assemble;
use crate::cpu::CycleClock;
use crate::error::MinerError;
use crate::metrics::{MinerMetrics, TrainingRun};
use crate::node_rpc::{NodeRpc, SubmitOutcome};
use crate::progress::{Progress, ProgressMode, TICK};
use crate::report::{self, CycleReport, ProducedBlock};
use crate::retry::retry;
use bitcoin::secp256k1::{All, PublicKey, Secp256k1, SecretKey};
use bitcoin::{Address, CompressedPublicKey, Network};
use coordinator::api::{
    CertificateHex, CycleOutcome, CycleStatus, Hardware, PhaseName, RegisterRequest,
    ScoredSubmission, TaskInfo,
};
use coordinator::client::ClientError;
use coordinator::CoordinatorClient;
use learning::{model_from_safetensors, model_hash, Samples};
use primitives::{sha256, Certificate, Hash256};
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tracing::{info, warn};

/// How often the miner polls the coordinator while it waits for a phase to change: a tenth of
/// the shortest test cycle's registration window keeps it on time without measurable load.
pub const POLL_INTERVAL: Duration = Duration::from_millis(100);

/// How long the miner keeps polling a coordinator that does not answer before it gives up:
/// a restart takes seconds; minutes mean it is gone.
pub const STATUS_WAIT: Duration = Duration::from_secs(180);

/// Time kept back from the training window for encoding, signing and uploading the update: at
/// least this much...
pub const SUBMIT_MARGIN_MIN: Duration = Duration::from_millis(300);
/// ...or this fraction of the window, whichever is larger (a slow link or a busy machine).
pub const SUBMIT_MARGIN_FRACTION: f64 = 0.04;

/// Memory declared when the machine's cannot be read: what a small VM has.
const MEMORY_FALLBACK_BYTES: u64 = 1 << 30;

/// How a miner runs.
#[derive(Debug, Clone)]
pub struct MinerConfig {
    pub coordinator_url: String,
    pub node: NodeRpc,
    pub key: SecretKey,
    pub threads: usize,
    pub behaviour: Behaviour,
    /// Append one JSON line per cycle here.
    pub report_path: Option<PathBuf>,
    /// Stop after taking part in this many cycles (none: run until stopped).
    pub cycles_max: Option<u64>,
    pub progress: ProgressMode,
    /// The bond named in every registration (the same each cycle: it stays locked for the
    /// chain's `bond_lock_blocks` anyway). Without one, a coordinator that admits bonded
    /// registrations only refuses the miner with `bond_required`.
    pub bond: Option<coordinator::api::BondOutpoint>,
}

pub struct Miner {
    config: MinerConfig,
    secp: Secp256k1<All>,
    public_key: PublicKey,
    client: CoordinatorClient,
    progress: Progress,
    metrics: Arc<MinerMetrics>,
}

fn local_now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The coordinator's clock as seen from here: its time minus ours at the last answer.
/// Times come from the coordinator, so the arithmetic is in i128 and never overflows.
#[derive(Debug, Clone, Copy)]
struct Skew(i128);

/// Longest a miner waits for any one coordinator deadline: past it the deadline is nonsense
/// (cycles are minutes long), and the miner re-reads the cycle instead of sleeping on it.
const DEADLINE_WAIT_MAX: Duration = Duration::from_secs(24 * 60 * 60);

impl Skew {
    fn of(status: &CycleStatus) -> Self {
        Skew(i128::from(status.now_ms) - i128::from(local_now_ms()))
    }

    /// How long until the coordinator's clock reads `deadline_ms` (at most
    /// [`DEADLINE_WAIT_MAX`]).
    fn until(&self, deadline_ms: u64) -> Duration {
        let coordinator_now = i128::from(local_now_ms()) + self.0;
        let wait_ms = (i128::from(deadline_ms) - coordinator_now).max(0);
        Duration::from_millis(u64::try_from(wait_ms).unwrap_or(u64::MAX)).min(DEADLINE_WAIT_MAX)
    }
}

/// Bytes of memory this machine has (`/proc/meminfo`), or a small default.
pub fn machine_memory_bytes() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| {
            let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
            let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
            Some(kib * 1024)
        })
        .unwrap_or(MEMORY_FALLBACK_BYTES)
}

fn code_of(error: &MinerError) -> Option<&str> {
    match error {
        MinerError::Coordinator(e) => e.code(),
        _ => None,
    }
}

impl Miner {
    pub fn new(config: MinerConfig) -> Result<Self, MinerError> {
        let secp = Secp256k1::new();
        let public_key = config.key.public_key(&secp);
        let client = CoordinatorClient::new(&config.coordinator_url)?;
        let progress = Progress::new(config.progress);
        Ok(Miner {
            config,
            secp,
            public_key,
            client,
            progress,
            metrics: Arc::default(),
        })
    }

    /// The miner's Prometheus counters and gauges, updated as each cycle ends.
    pub fn metrics(&self) -> Arc<MinerMetrics> {
        self.metrics.clone()
    }

    pub fn public_key(&self) -> PublicKey {
        self.public_key
    }

    /// The P2WPKH address of the miner's key on `network`.
    pub fn payout_address(&self, network: Network) -> Address {
        Address::p2wpkh(&CompressedPublicKey(self.public_key), network)
    }

    /// The chain's address format, from the node.
    async fn network(&self) -> Result<Network, MinerError> {
        let info = self.config.node.call("getblockchaininfo", vec![]).await?;
        let name = info
            .get("network")
            .and_then(|n| n.as_str())
            .unwrap_or_default();
        Network::from_str(name).map_err(|_| MinerError::NodeAnswer {
            method: "getblockchaininfo",
            detail: format!("unknown network {name:?}"),
        })
    }

    /// Takes part in cycles until `cycles_max` is reached (or forever). A cycle whose work
    /// fails is reported and the miner moves on to the next one.
    pub async fn run(&self) -> Result<Vec<CycleReport>, MinerError> {
        let payout = self.payout_address(self.network().await?).to_string();
        self.progress.say(format!(
            "miner {} ({}), payout {payout}, {} threads",
            self.public_key, self.config.behaviour, self.config.threads
        ));
        let mut reports = Vec::new();
        let mut last_cycle: Option<u64> = None;
        let mut waiting_logged: Option<u64> = None;
        loop {
            if self
                .config
                .cycles_max
                .is_some_and(|max| reports.len() as u64 >= max)
            {
                return Ok(reports);
            }
            let status = self.wait_status().await?;
            let cycle = status.announcement.announcement.cycle;
            let fresh = last_cycle.is_none_or(|last| cycle > last);
            if !fresh || status.phase != PhaseName::Registration {
                if fresh && waiting_logged != Some(cycle) {
                    self.progress.say(format!(
                        "cycle {cycle} is past registration; waiting for the next one"
                    ));
                    waiting_logged = Some(cycle);
                }
                tokio::time::sleep(POLL_INTERVAL).await;
                continue;
            }
            last_cycle = Some(cycle);
            let report = self.run_cycle(&status, &payout).await;
            self.progress.say(summary_line(&report));
            if let Some(path) = &self.config.report_path {
                report::append(path, &report)?;
            }
            reports.push(report);
        }
    }

    /// The coordinator's current cycle. Between cycles the miner polls at a fixed short
    /// interval rather than backing off, so it registers within [`POLL_INTERVAL`] of a cycle
    /// opening, also right after a coordinator (re)start.
    async fn wait_status(&self) -> Result<CycleStatus, MinerError> {
        let deadline = std::time::Instant::now() + STATUS_WAIT;
        loop {
            match self.client.status().await {
                Ok(status) => return Ok(status),
                Err(e)
                    if crate::retry::Transient::is_transient(&e)
                        && std::time::Instant::now() < deadline =>
                {
                    tokio::time::sleep(POLL_INTERVAL).await
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// One cycle from registration to the end of its block window.
    async fn run_cycle(&self, status: &CycleStatus, payout: &str) -> CycleReport {
        let cycle = status.announcement.announcement.cycle;
        let mut clock = CycleClock::start();
        let mut report = CycleReport {
            cycle,
            miner: self.public_key.to_string(),
            behaviour: self.config.behaviour,
            segment: None,
            segment_params: None,
            shard_samples: None,
            steps: 0,
            receipt: None,
            contribution: None,
            block_certificates: Vec::new(),
            block: None,
            blocks_produced: 0,
            cpu: Default::default(),
            useful_work_fraction: 0.0,
            training_wall_secs: 0.0,
            training_window_secs: 0.0,
            error: None,
        };
        let mut training = None;
        if let Err(error) = self
            .work(status, payout, &mut clock, &mut report, &mut training)
            .await
        {
            if code_of(&error) == Some("not_admitted") {
                // Not a failure: the cycle drew its slots by bond value and this bond lost.
                info!(cycle, %error, "sitting this cycle out");
            } else {
                warn!(cycle, %error, "cycle work failed");
            }
            report.error = Some(error.to_string());
        }
        report.cpu = clock.account();
        report.useful_work_fraction = report.cpu.useful_work_fraction();
        self.metrics.record_cycle(&report, training.as_ref());
        report
    }

    async fn work(
        &self,
        status: &CycleStatus,
        payout: &str,
        clock: &mut CycleClock,
        report: &mut CycleReport,
        training: &mut Option<TrainingRun>,
    ) -> Result<(), MinerError> {
        let announcement = &status.announcement.announcement;
        let cycle = announcement.cycle;
        let skew = Skew::of(status);
        let hardware = Hardware {
            threads: self.config.threads as u32,
            memory_bytes: machine_memory_bytes(),
        };
        let request = RegisterRequest::new_signed_bonded(
            &self.secp,
            &self.config.key,
            cycle,
            payout.to_owned(),
            hardware,
            self.config.bond,
        );
        if let Err(error) = retry("register", || self.client.register(&request)).await {
            // A refusal (no bond, or one that cannot back this cycle) is the coordinator's
            // to explain: say it as it said it, with the bond named.
            let bond = self
                .config
                .bond
                .map_or_else(|| "no bond".to_owned(), |b| format!("bond {b}"));
            self.progress.say(format!(
                "cycle {cycle}: registration refused ({bond}): {error}"
            ));
            return Err(error);
        }
        self.progress.say(format!("cycle {cycle}: registered"));

        tokio::time::sleep(skew.until(announcement.registration_deadline_ms)).await;
        let task = self.task(cycle).await?;
        report.segment = Some(task.segment.segment.clone());
        report.segment_params = Some(task.segment_params);
        report.shard_samples = Some(task.shard_samples);
        let weights = retry("weights", || self.client.weights(cycle)).await?;
        let shard = retry("shard", || self.client.shard(cycle, &self.public_key)).await?;
        let model = model_from_safetensors(task.model.clone(), &weights)?;
        if Hash256(model_hash(&model)) != task.model_hash {
            return Err(MinerError::BadTask {
                cycle,
                detail: "downloaded weights do not hash to the announced model".into(),
            });
        }
        let shard_bytes = shard;
        let shard = Samples::from_safetensors(&shard_bytes, task.feature_count, task.class_count)?;

        let remaining = skew.until(task.submission_deadline_ms);
        let margin = SUBMIT_MARGIN_MIN.max(remaining.mul_f64(SUBMIT_MARGIN_FRACTION));
        let window = remaining.saturating_sub(margin);
        if window.is_zero() {
            return Err(MinerError::BadTask {
                cycle,
                detail: "no time left to train before the submission deadline".into(),
            });
        }
        if task.replay.miner != self.public_key
            || task.replay.cycle != cycle
            || task.replay.model_hash != task.model_hash
            || task.replay.segment != task.segment.segment
            || task.replay.shard_hash != sha256(&shard_bytes)
            || task.replay.batch_seed
                != proof::batch_seed(&announcement.commitment, cycle, &self.public_key)
        {
            return Err(MinerError::BadTask {
                cycle,
                detail:
                    "the replayable task does not match the announcement, the segment or the shard"
                        .into(),
            });
        }
        let work = Work {
            task: task.replay.clone(),
            threads: self.config.threads,
            deadline: std::time::Instant::now() + window,
        };
        let behaviour = self.config.behaviour;
        let bar = self.progress.training(cycle, window);
        let training_cpu = crate::cpu::process_cpu_time();
        let training_started = Instant::now();
        let mut job =
            tokio::task::spawn_blocking(move || produce(behaviour, &model, &shard, &work));
        let joined = loop {
            tokio::select! {
                joined = &mut job => break joined,
                _ = tokio::time::sleep(TICK) => bar.tick(),
            }
        };
        clock.book_training(training_cpu);
        bar.finish();
        let training_wall = training_started.elapsed();
        report.training_wall_secs = training_wall.as_secs_f64();
        report.training_window_secs = announcement
            .submission_deadline_ms
            .saturating_sub(announcement.registration_deadline_ms)
            as f64
            / 1000.0;
        let produced = joined.map_err(|e| MinerError::TrainingTask(e.to_string()))??;
        report.steps = produced.steps();
        *training = Some(TrainingRun {
            samples: report.steps.saturating_mul(u64::from(task.replay.batch)),
            wall_secs: training_wall.as_secs_f64(),
        });

        let update = produced.update.to_safetensors()?;
        let update_hash = sha256(&update);
        let commitment = proof::Commitment {
            task_hash: task.replay.hash(),
            update_hash,
            transcript_root: produced.record.transcript().root(),
            steps: produced.steps(),
        };
        let submitted = retry("submit", || {
            self.client.submit(
                &self.secp,
                &self.config.key,
                cycle,
                commitment,
                update.clone(),
            )
        })
        .await;
        match submitted {
            Ok(receipt) => {
                if !receipt.verify(&self.secp) || receipt.update_hash != update_hash {
                    warn!(cycle, "the receipt does not verify or names another update");
                }
                self.progress.say(format!(
                    "cycle {cycle}: submitted {} after {} steps, receipt {}",
                    task.segment.segment, report.steps, receipt.update_hash
                ));
                report.receipt = Some(receipt);
            }
            // A retry after a lost answer: the first upload was stored.
            Err(e) if code_of(&e) == Some("already_submitted") => {
                self.progress
                    .say(format!("cycle {cycle}: submission already stored"));
            }
            Err(e) => return Err(e),
        }
        // Nothing is decided before the submission deadline: sleep through it rather than poll
        // (an early submission would otherwise spend its wait fetching records).
        tokio::time::sleep(skew.until(task.submission_deadline_ms)).await;
        self.answer_challenge(cycle, announcement, &produced.record)
            .await?;
        self.await_outcome(cycle, payout, report).await
    }

    /// Opens the intervals the challenge picked, once the secret is revealed. The challenge is
    /// checked before answering: the secret must open the announcement's commitment, and the
    /// miner answers the intervals that follow from it (its own derivation, so a coordinator
    /// cannot make it open, and copy, more states than the protocol asks for).
    async fn answer_challenge(
        &self,
        cycle: u64,
        announcement: &coordinator::api::Announcement,
        record: &proof::RunRecord,
    ) -> Result<(), MinerError> {
        let challenge = loop {
            match retry("challenge", || {
                self.client.challenge(cycle, &self.public_key)
            })
            .await
            {
                Err(e) if code_of(&e) == Some("challenge_not_open") => {
                    tokio::time::sleep(POLL_INTERVAL).await
                }
                other => break other?,
            }
        };
        if !consensus::lottery::verify_reveal(
            &announcement.commitment,
            &challenge.revealed_secret.0,
        ) || challenge.challenges > proof::CHALLENGES_MAX
        {
            return Err(MinerError::BadTask {
                cycle,
                detail: "the challenge's secret does not open the announcement's commitment, \
                         or it asks for more openings than the protocol allows"
                    .into(),
            });
        }
        let seed = proof::challenge_seed(
            &challenge.revealed_secret,
            &challenge.commitments_digest,
            &self.public_key,
        );
        let intervals = record.states().len().saturating_sub(1) as u64;
        let expected = proof::challenged_intervals(&seed, intervals, challenge.challenges);
        if expected != challenge.intervals {
            warn!(
                cycle,
                asked = ?challenge.intervals,
                derived = ?expected,
                "the challenge's intervals do not follow from its secret; answering the derived ones"
            );
        }
        let answer = record.respond(&expected).encode();
        let bytes = answer.len();
        match retry("answer", || {
            self.client
                .answer(&self.secp, &self.config.key, cycle, answer.clone())
        })
        .await
        {
            Ok(()) => {
                self.progress.say(format!(
                    "cycle {cycle}: opened intervals {expected:?} ({bytes} bytes)"
                ));
                Ok(())
            }
            Err(e) if code_of(&e) == Some("already_answered") => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// The task, once the coordinator assigned it (it may lag the deadline by a tick).
    async fn task(&self, cycle: u64) -> Result<TaskInfo, MinerError> {
        loop {
            match retry("task", || self.client.task(cycle, &self.public_key)).await {
                Err(e) if code_of(&e) == Some("training_not_started") => {
                    tokio::time::sleep(POLL_INTERVAL).await
                }
                other => return other,
            }
        }
    }

    /// Waits for the lottery, produces a block for each block-signing certificate this miner
    /// receives, and returns when the cycle closes (or a later one opened).
    async fn await_outcome(
        &self,
        cycle: u64,
        payout: &str,
        report: &mut CycleReport,
    ) -> Result<(), MinerError> {
        let mut produced_attempts: Vec<u32> = Vec::new();
        loop {
            let record = retry("cycle record", || self.client.record(cycle)).await?;
            if matches!(record.phase, PhaseName::BlockWindow | PhaseName::Closed) {
                match self.client.certificates(cycle, &self.public_key).await {
                    Ok(certs) => {
                        report.contribution = certs.contribution;
                        report.block_certificates = certs.block_signing.clone();
                        if record.outcome.is_none() {
                            // Only the attempt whose window is open: a block for an attempt the
                            // coordinator has moved past would compete with the next winner's
                            // (and fork choice prefers the lower attempt), so a miner that was
                            // too slow stays silent rather than fork the chain under the cycle.
                            let open_attempt = record
                                .block_certificates
                                .iter()
                                .map(|c| c.0.body.attempt)
                                .max();
                            for CertificateHex(cert) in certs.block_signing {
                                if produced_attempts.contains(&cert.body.attempt) {
                                    continue;
                                }
                                if Some(cert.body.attempt) != open_attempt {
                                    warn!(
                                        cycle,
                                        attempt = cert.body.attempt,
                                        "the block window of this attempt is over; not producing"
                                    );
                                    produced_attempts.push(cert.body.attempt);
                                    continue;
                                }
                                produced_attempts.push(cert.body.attempt);
                                match self.produce_block(&cert, payout).await {
                                    Ok(block) => {
                                        report.block = Some(block);
                                        report.blocks_produced += 1;
                                    }
                                    Err(e) => warn!(cycle, %e, "block not produced"),
                                }
                            }
                        }
                    }
                    Err(ClientError::Api { status: 404, .. }) => {}
                    Err(e) if crate::retry::Transient::is_transient(&e) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            if let Some(outcome) = &record.outcome {
                if let Some(reason) = no_block_reason(
                    outcome,
                    &record.submissions,
                    &record.draw_order,
                    &self.public_key,
                ) {
                    self.progress
                        .say(format!("cycle {cycle}: no block for this miner: {reason}"));
                }
                return Ok(());
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    /// Builds, signs and submits the block of `cert` on the node's template.
    async fn produce_block(
        &self,
        cert: &Certificate,
        payout: &str,
    ) -> Result<ProducedBlock, MinerError> {
        let height = cert.body.height;
        let payout_script = Address::from_str(payout)
            .map(|a| a.assume_checked().script_pubkey())
            .map_err(|e| MinerError::NodeAnswer {
                method: "gettemplate",
                detail: format!("payout address: {e}"),
            })?;
        // The miner's node may be a gossip hop behind the coordinator's: wait for the parent.
        let template = loop {
            let template = self.config.node.template(payout).await?;
            if template.prev_hash == cert.body.prev_block_hash {
                break template;
            }
            if template.height > height {
                return Err(MinerError::BlockRefused {
                    height,
                    reason: "the height was taken by another block".into(),
                });
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        };
        let block = assemble(&self.secp, &template, cert, payout_script, &self.config.key)?;
        let hash = block.block_hash();
        match self.config.node.submit_block(&block).await? {
            SubmitOutcome::Accepted | SubmitOutcome::Duplicate => {
                self.progress.say(format!(
                    "cycle {}: block {height} {hash} submitted (attempt {})",
                    cert.body.cycle, cert.body.attempt
                ));
                Ok(ProducedBlock {
                    height,
                    hash: hash.to_string(),
                    attempt: cert.body.attempt,
                })
            }
            SubmitOutcome::Rejected(reason) => Err(MinerError::BlockRefused { height, reason }),
        }
    }
}

fn summary_line(report: &CycleReport) -> String {
    let block = report
        .block
        .as_ref()
        .map(|b| format!(", produced block {} {}", b.height, b.hash))
        .unwrap_or_default();
    let error = report
        .error
        .as_ref()
        .map(|e| format!(", failed: {e}"))
        .unwrap_or_default();
    format!(
        "cycle {}: {} steps, cpu {:.2}s training / {:.2}s other, useful work {:.1}%{block}{error}",
        report.cycle,
        report.steps,
        report.cpu.training_secs,
        report.cpu.other_secs,
        100.0 * report.useful_work_fraction
    )
}

/// Why `me` got no block from a closed cycle, from what its record says: no receipted
/// submission, a failed or unanswered replay check, a score of zero (no held-out improvement),
/// not drawn, or drawn but another block won; `None` when `me` produced the cycle's block.
pub fn no_block_reason(
    outcome: &CycleOutcome,
    submissions: &[ScoredSubmission],
    draw_order: &[PublicKey],
    me: &PublicKey,
) -> Option<String> {
    if matches!(outcome, CycleOutcome::Produced { miner, .. } if miner == me) {
        return None;
    }
    let Some(mine) = submissions.iter().find(|s| &s.miner == me) else {
        return Some(
            "not scored: the cycle's record has no submission of this miner (none was \
             receipted before the submission deadline)"
                .into(),
        );
    };
    let nats = mine.loss_reduction as f64 / primitives::certificate::LOSS_UNITS_PER_NAT as f64;
    if !mine.verification.passed() {
        return Some(format!(
            "score 0: the replay check of its training {} (loss reduction {nats:.6} nat)",
            match mine.verification.name() {
                "unanswered" => "was not answered in time",
                _ => "failed",
            }
        ));
    }
    if mine.score == 0 {
        return Some(if mine.loss_reduction <= 0 {
            format!("score 0: no held-out improvement (loss reduction {nats:.6} nat)")
        } else {
            format!(
                "score 0 ({} parameters trained, loss reduction {nats:.6} nat)",
                mine.params_trained
            )
        });
    }
    let scored = format!("score {} (loss reduction {nats:.6} nat)", mine.score);
    let drawn = draw_order.iter().position(|k| k == me);
    let place = match drawn {
        Some(k) => format!("drawn for attempt {k}"),
        None => format!("not drawn in the first {} draws", draw_order.len()),
    };
    Some(match outcome {
        CycleOutcome::Produced {
            height,
            attempt,
            miner,
            ..
        } => {
            let why = match drawn {
                Some(k) if (k as u32) < *attempt => {
                    "; its block did not reach the coordinator's node in its window"
                }
                _ => "",
            };
            format!("{scored}, {place}{why}; the winner was {miner} (attempt {attempt}, block {height})")
        }
        CycleOutcome::NoEligibleEntries => {
            format!("{scored}, but the cycle closed with no eligible entry")
        }
        CycleOutcome::WinnersSilent { attempts } => match drawn {
            Some(k) if (k as u32) < *attempts => format!(
                "{scored}, {place}, but no block of this miner reached the coordinator's node \
                 in its window"
            ),
            _ => format!("{scored}, {place}; all {attempts} drawn winners stayed silent"),
        },
        CycleOutcome::Superseded { height, hash } => {
            format!("{scored}, {place}; another block {hash} took height {height}")
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use bitcoin::hashes::Hash;

    fn key(n: u8) -> PublicKey {
        let secp = Secp256k1::new();
        SecretKey::from_slice(&[n; 32]).unwrap().public_key(&secp)
    }

    fn submission(miner: PublicKey, loss_reduction: i64, score: u64) -> ScoredSubmission {
        ScoredSubmission {
            miner,
            payout_address: String::new(),
            segment: "l0".into(),
            update_hash: Hash256::ZERO,
            commitment: proof::Commitment {
                task_hash: Hash256::ZERO,
                update_hash: Hash256::ZERO,
                transcript_root: Hash256::ZERO,
                steps: 1,
            },
            received_at_ms: 0,
            params_trained: 10,
            loss_reduction,
            score,
            verification: proof::Verdict::Verified {
                intervals: vec![0],
                replayed_steps: 1,
            },
            checkpoint_interval: 16,
        }
    }

    fn produced(miner: PublicKey, attempt: u32) -> CycleOutcome {
        CycleOutcome::Produced {
            height: 4,
            hash: bitcoin::BlockHash::all_zeros(),
            attempt,
            miner,
        }
    }

    #[test]
    fn a_cycle_without_a_block_says_why() {
        let (me, other) = (key(1), key(2));
        let reason = |outcome: &CycleOutcome, subs: &[ScoredSubmission], draw: &[PublicKey]| {
            no_block_reason(outcome, subs, draw, &me)
        };
        assert_eq!(reason(&produced(me, 0), &[], &[me]), None);
        let none = reason(&CycleOutcome::NoEligibleEntries, &[], &[]).unwrap();
        assert!(none.starts_with("not scored"), "{none}");

        let flat = [submission(me, -12, 0)];
        let text = reason(&CycleOutcome::NoEligibleEntries, &flat, &[]).unwrap();
        assert!(text.contains("score 0: no held-out improvement"), "{text}");
        assert!(text.contains("-0.000012 nat"), "{text}");

        let mut unanswered = submission(me, 500, 0);
        unanswered.verification = proof::Verdict::Unanswered;
        let text = reason(&produced(other, 0), &[unanswered], &[other]).unwrap();
        assert!(text.contains("replay check"), "{text}");

        let good = [submission(me, 500, 7), submission(other, 900, 9)];
        let text = reason(&produced(other, 0), &good, &[other, me]).unwrap();
        assert!(text.contains("score 7"), "{text}");
        assert!(text.contains("drawn for attempt 1"), "{text}");
        assert!(text.contains(&format!("the winner was {other}")), "{text}");
        assert!(!text.contains("PublicKey("), "{text}");

        let text = reason(&produced(other, 1), &good, &[me, other]).unwrap();
        assert!(text.contains("did not reach"), "{text}");
        let text = reason(
            &CycleOutcome::WinnersSilent { attempts: 2 },
            &good,
            &[other],
        )
        .unwrap();
        assert!(text.contains("not drawn"), "{text}");
    }
}
