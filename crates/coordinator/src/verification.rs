//! Proof of training on the coordinator's side: the replayable task it issues with every
//! assignment, the challenge each submitter gets at the submission deadline, the answers, and
//! the replay check of every submission before it is scored.

use crate::api::{answer_signing_hash, ChallengeInfo, CompactSignature};
use crate::cycle::{tick, Action, ClaimsJudged, CycleState, Event, Phase, Refusal};
use crate::error::ServiceError;
use crate::service::{lock, Coordinator};
use crate::work::check_update;
use bitcoin::secp256k1::PublicKey;
use learning::{ExpectedSegment, Model, Samples};
use primitives::sha256;
use proof::{
    batch_seed, check_with_replays, response::response_bytes_max, ChallengeResponse, CheckInputs,
    FraudEvidence, ReplayTask, Verdict,
};
use std::collections::BTreeMap;
use tracing::{info, warn};

/// One shard sample in this many is the miner's validation part (the task's last samples),
/// never trained on: an honest miner early-stops on it.
pub const VALIDATION_SHARE_DIVISOR: usize = 5;

pub use crate::pace::TRANSCRIPT_INTERVALS;

/// The task's learning rate shrinks by this factor each cycle, down to
/// [`LR_FLOOR_FRACTION`] of the setup's: a replayable run has one rate, and a model that has
/// converged needs smaller steps to improve at all (the miner cannot back off on its own; the
/// rate is part of what is replayed).
pub const LR_DECAY_PER_CYCLE: f64 = 0.7;
/// The smallest rate, as a fraction of the setup's.
pub const LR_FLOOR_FRACTION: f64 = 0.05;

/// The learning rate of cycle `cycle`'s tasks.
pub fn cycle_learning_rate(base: f32, cycle: u64) -> f32 {
    let decayed = f64::from(base) * LR_DECAY_PER_CYCLE.powi(cycle.min(1_000) as i32);
    decayed.max(f64::from(base) * LR_FLOOR_FRACTION) as f32
}

/// Threads a replay uses (the bits do not depend on it).
fn replay_threads() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get().min(4))
        .unwrap_or(1)
}

/// Samples of a shard of `len` that the task trains on.
pub fn train_samples(len: usize) -> usize {
    (len - len / VALIDATION_SHARE_DIVISOR).max(1)
}

impl Coordinator {
    /// The replayable task of `miner` in `state` (after registration closed). A pure function
    /// of the state, the shards and the work setup, so the task served with the assignment
    /// and the one checked at evaluation are the same.
    pub(crate) fn replay_task(
        &self,
        state: &CycleState,
        miner: &PublicKey,
    ) -> Result<ReplayTask, ServiceError> {
        let a = state.announcement();
        let assignment = state
            .registrations
            .get(miner)
            .ok_or_else(|| state.unregistered(miner))?
            .assignment
            .clone()
            .ok_or(Refusal::TrainingNotStarted {
                registration_deadline_ms: a.registration_deadline_ms,
            })?;
        let shards = self.shards(state)?;
        let shard = &shards[assignment.shard_index as usize];
        let ctx = self.context(&a.job)?;
        let shard_len = learning::shard_assignment(
            a.shard_seed(),
            ctx.work.split.train.len(),
            assignment.shard_count as usize,
        )?[assignment.shard_index as usize]
            .len();
        let hints = ctx.work.setup.hints;
        // The rate anneals over the job's own cycles: a job posted late starts at its rate.
        let first_cycle = self
            .store
            .job(&ctx.id)?
            .and_then(|j| j.status.first_cycle)
            .unwrap_or(a.cycle);
        let k = assignment.checkpoint_interval;
        Ok(ReplayTask {
            cycle: a.cycle,
            miner: *miner,
            model_hash: a.model_hash,
            segment: assignment.segment,
            shard_hash: sha256(shard),
            train_samples: train_samples(shard_len) as u64,
            lr: cycle_learning_rate(hints.lr, a.cycle.saturating_sub(first_cycle)),
            momentum: hints.momentum,
            batch: hints.batch as u32,
            steps_max: TRANSCRIPT_INTERVALS * k,
            checkpoint_interval: k,
            batch_seed: batch_seed(&a.commitment, a.cycle, miner),
        })
    }

    /// The state of `cycle`, the live one advanced to `now_ms` (so a challenge is there as soon
    /// as the submission deadline passed, even between driver ticks).
    fn advanced(&self, now_ms: u64, cycle: u64) -> Result<CycleState, ServiceError> {
        let mut guard = lock(&self.state);
        if let Some(current) = guard.clone().filter(|s| s.cycle() == cycle) {
            // Only the deadline matters here; later transitions (which sign certificates
            // with fresh entropy) are the driver's.
            if current.phase != Phase::Training {
                return Ok(current);
            }
            let ctx = self.context(&current.announcement().job)?;
            let (next, _) = tick(current.clone(), &ctx.env, now_ms, [0; 32], Event::Tick);
            if next != current {
                self.store.put_current(&next)?;
                *guard = Some(next.clone());
            }
            return Ok(next);
        }
        drop(guard);
        self.cycle_state(cycle)
    }

    /// `miner`'s challenge in `cycle`, from the submission deadline on.
    pub fn challenge(
        &self,
        now_ms: u64,
        cycle: u64,
        miner: &PublicKey,
    ) -> Result<ChallengeInfo, ServiceError> {
        let state = self.advanced(now_ms, cycle)?;
        if state.revealed_secret().is_none() {
            return Err(Refusal::ChallengeNotOpen {
                opens_ms: state.announcement().submission_deadline_ms,
            }
            .into());
        }
        state
            .challenge(&self.env, miner)
            .ok_or_else(|| Refusal::NotSubmitted.into())
    }

    /// Most bytes `miner`'s answer may have: q + 1 openings of its segment's state.
    pub fn answer_limit(&self, cycle: u64, miner: &PublicKey) -> Result<usize, ServiceError> {
        let state = self.cycle_state(cycle)?;
        let segment = state
            .registrations
            .get(miner)
            .and_then(|r| r.assignment.as_ref())
            .map(|a| a.segment.clone())
            .ok_or(Refusal::NotSubmitted)?;
        let global = self.model(cycle)?;
        let expected = ExpectedSegment::of(&global.model, &segment)?;
        let state_bytes: usize = 12
            + expected
                .tensors
                .iter()
                .map(|(_, shape)| 8 + 8 * shape.iter().product::<usize>())
                .sum::<usize>();
        Ok(response_bytes_max(
            self.env.proof.challenges as usize + 1,
            state_bytes,
        ))
    }

    /// Checks and keeps `miner`'s answer to its challenge.
    pub fn answer(
        &self,
        now_ms: u64,
        entropy: [u8; 32],
        cycle: u64,
        miner: PublicKey,
        signature: CompactSignature,
        bytes: &[u8],
    ) -> Result<(), ServiceError> {
        let answer_hash = sha256(bytes);
        if !signature.verify(
            &self.env.secp,
            &miner,
            &answer_signing_hash(cycle, &miner, &answer_hash),
        ) {
            return Err(Refusal::BadSignature.into());
        }
        let limit = self.answer_limit(cycle, &miner)?;
        let openings = self.env.proof.challenges as usize + 1;
        let response = ChallengeResponse::decode(bytes, limit, openings)?;
        let opened = response.openings.iter().map(|o| o.interval).collect();
        let mut guard = lock(&self.state);
        let current = guard.clone().ok_or(ServiceError::NotOpen)?;
        let ctx = self.context(&current.announcement().job)?;
        let (next, actions) = tick(
            current.clone(),
            &ctx.env,
            now_ms,
            entropy,
            Event::Answer {
                cycle,
                miner,
                answer_hash,
                signature,
                opened,
            },
        );
        let refusal = actions.into_iter().find_map(|a| match a {
            Action::Refused(r) => Some(r),
            _ => None,
        });
        match refusal {
            None => {
                self.store.put_answer(&next, &miner, bytes)?;
                *guard = Some(next);
                Ok(())
            }
            Some(refusal) => {
                if next != current {
                    self.store.put_current(&next)?;
                }
                *guard = Some(next);
                warn!(%miner, cycle, error = %refusal, "answer refused");
                Err(refusal.into())
            }
        }
    }

    /// The replay verdict of every submission of `state` (in Evaluation), keeping evidence of
    /// each failure, and the judgement of the verifiers' claims: intervals a claim settled
    /// are not replayed again (see `crate::verifier_service`).
    pub(crate) fn verify_submissions(
        &self,
        state: &CycleState,
        global: &Model,
    ) -> Result<(BTreeMap<PublicKey, Verdict>, ClaimsJudged), ServiceError> {
        debug_assert_eq!(state.phase, Phase::Evaluation);
        let mut judged = ClaimsJudged::default();
        if state.submissions.is_empty() {
            // Nothing to check (and a cycle nobody registered for has no shards).
            return Ok((BTreeMap::new(), judged));
        }
        let shards = self.shards(state)?;
        let spec = global.spec();
        let mut verdicts = BTreeMap::new();
        for (miner, submission) in &state.submissions {
            let task = self.replay_task(state, miner)?;
            let shard_index = state.registrations[miner]
                .assignment
                .as_ref()
                .map(|a| a.shard_index as usize)
                .unwrap_or_default();
            let shard_bytes = &shards[shard_index];
            let shard =
                Samples::from_safetensors(shard_bytes, spec.input_features(), spec.classes())?;
            let train = proof::evidence::train_part(&shard, task.train_samples)
                .map_err(ServiceError::BadRequest)?;
            let update_bytes = self.store.update(state.cycle(), miner)?.unwrap_or_default();
            let verdict = match check_update(global, &task.segment, &update_bytes) {
                // Checked at upload; a damaged stored copy proves nothing about the miner.
                Err(_) => Verdict::Unanswered,
                Ok(update) => {
                    let challenge = state
                        .challenge(&self.env, miner)
                        .expect("every submitter has a challenge in evaluation");
                    let answer_bytes = self.store.answer(state.cycle(), miner)?;
                    let response = answer_bytes.as_deref().and_then(|b| {
                        ChallengeResponse::decode(b, usize::MAX, challenge.intervals.len()).ok()
                    });
                    let inputs = CheckInputs {
                        task: &task,
                        start_model: global,
                        train_samples: &train,
                        commitment: &submission.commitment,
                        update: &update,
                        threads: replay_threads(),
                    };
                    if response.is_some() {
                        judged.challenged_steps += challenged_steps(
                            &task,
                            submission.commitment.steps,
                            &challenge.intervals,
                        );
                    }
                    let claims = crate::verifier_service::judge_claims(
                        state,
                        miner,
                        &task,
                        &submission.commitment,
                        global,
                        shard_bytes,
                        response.as_ref(),
                        replay_threads(),
                    );
                    let (trusted, replayed) = (claims.trusted.clone(), claims.replayed.clone());
                    for evidence in &claims.evidence {
                        self.store.put_claim_evidence(
                            state.cycle(),
                            miner,
                            evidence,
                            shard_bytes,
                        )?;
                    }
                    crate::verifier_service::add_to(&mut judged, claims);
                    let verdict = check_with_replays(
                        &inputs,
                        &challenge.intervals,
                        response.as_ref(),
                        &trusted,
                        &replayed,
                    );
                    if let Verdict::Verified { replayed_steps, .. } = &verdict {
                        judged.coordinator_replayed_steps += replayed_steps;
                    }
                    if let Verdict::Failed { failure } = &verdict {
                        let evidence = FraudEvidence {
                            model: spec.clone(),
                            task: task.clone(),
                            commitment: submission.commitment,
                            signature: submission_signature_hex(state, miner),
                            revealed_secret: challenge.revealed_secret,
                            commitments_digest: challenge.commitments_digest,
                            challenges: challenge.challenges,
                            response: hex::encode(answer_bytes.unwrap_or_default()),
                            update: hex::encode(&update_bytes),
                            failure: failure.clone(),
                        };
                        self.store
                            .put_evidence(state.cycle(), miner, &evidence, shard_bytes)?;
                        warn!(%miner, cycle = state.cycle(), %failure, "training check failed");
                    }
                    verdict
                }
            };
            info!(%miner, cycle = state.cycle(), verdict = verdict.name(), "training checked");
            verdicts.insert(*miner, verdict);
        }
        Ok((verdicts, judged))
    }

    /// The shard fraud evidence against `miner` in `cycle` was found on (safetensors).
    pub fn evidence_shard(&self, cycle: u64, miner: &PublicKey) -> Result<Vec<u8>, ServiceError> {
        self.store
            .evidence_shard(cycle, miner)?
            .ok_or(ServiceError::NoEvidence)
    }

    /// Fraud evidence against `miner` in `cycle`.
    pub fn evidence(&self, cycle: u64, miner: &PublicKey) -> Result<FraudEvidence, ServiceError> {
        self.store
            .evidence(cycle, miner)?
            .ok_or(ServiceError::NoEvidence)
    }
}

/// Steps of the challenged `intervals` of a run of `steps` steps: what replaying them all costs.
fn challenged_steps(task: &ReplayTask, steps: u64, intervals: &[u64]) -> u64 {
    let k = task.checkpoint_interval;
    intervals
        .iter()
        .filter_map(|&i| {
            let from = proof::checkpoint_step(steps, k, i)?;
            Some(proof::checkpoint_step(steps, k, i.checked_add(1)?)?.saturating_sub(from))
        })
        .fold(0u64, u64::saturating_add)
}

/// The miner's signature over its commitment, as it arrived with the submission.
fn submission_signature_hex(state: &CycleState, miner: &PublicKey) -> String {
    state
        .submissions
        .get(miner)
        .map(|s| s.signature.to_string())
        .unwrap_or_default()
}
