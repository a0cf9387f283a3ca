//! The auditor's re-measurement of a cycle: from the published start model, the revealed
//! held-out batch and the published updates, recompute every submission's parameters trained,
//! loss reduction and score, and the merged model, with the coordinator's own code
//! (`coordinator::work::evaluate_submissions`), and compare bit for bit with the record. Also
//! the record chain: each announcement names the previous record's digest, and every
//! certificate of a cycle carries its record's digest (so the chain anchors the records).

use crate::audit::AuditError;
use crate::published::PublishedSource;
use coordinator::api::{record_digest, CycleRecord};
use coordinator::work::evaluate_submissions;
use learning::{model_from_safetensors, model_hash, ModelSpec, Samples};
use primitives::{sha256, Hash256};

/// What a cycle's re-measurement needs besides its record.
pub struct PublishedCycle {
    /// `/v1/cycles/{cycle}/weights`: the model the cycle trained.
    pub start_model: Vec<u8>,
    /// `/v1/cycles/{cycle}/held-out`.
    pub held_out: Vec<u8>,
    /// Every receipted update, in the record's order.
    pub updates: Vec<Vec<u8>>,
}

fn fail(record: &CycleRecord, why: String) -> AuditError {
    AuditError::Remeasure {
        cycle: record.announcement.announcement.cycle,
        why,
    }
}

/// `next` chains to `previous`: it names `previous`'s record digest, and every step budget in
/// it follows from `previous` by the pacing rule (`coordinator::pace`), so the coordinator gave
/// no miner more (or less) training time than its last verified run earned.
pub fn check_record_chain(previous: &CycleRecord, next: &CycleRecord) -> Result<(), AuditError> {
    let expected = record_digest(previous);
    let found = next.announcement.announcement.prev_record_hash;
    if found != expected {
        return Err(fail(
            next,
            format!("its announcement chains to record {found}, but the previous record's digest is {expected} (a record was rewritten)"),
        ));
    }
    // A run on another job's model paces nothing: every miner starts afresh on a new job.
    let same_job = previous.announcement.announcement.job == next.announcement.announcement.job;
    check_paces(same_job.then_some(previous), next)
}

/// Every submission of `next` had the checkpoint interval the pacing rule gives from
/// `previous` (the record before it; `None` for cycle 0) and `next`'s own window and new
/// miners' interval, and committed to no more steps than that budget. New miners' interval is
/// never above the protocol's default: the coordinator sizes it down for a slow model only.
pub fn check_paces(previous: Option<&CycleRecord>, next: &CycleRecord) -> Result<(), AuditError> {
    if next.submissions.is_empty() {
        return Ok(());
    }
    let initial = next.verification.checkpoint_interval;
    if !(1..=proof::CHECKPOINT_INTERVAL_DEFAULT).contains(&initial) {
        return Err(fail(
            next,
            format!(
                "new miners' checkpoint interval {initial} is outside 1..={}",
                proof::CHECKPOINT_INTERVAL_DEFAULT
            ),
        ));
    }
    let a = &next.announcement.announcement;
    let window_ms = a
        .submission_deadline_ms
        .saturating_sub(a.registration_deadline_ms);
    let samples = previous.map(coordinator::pace::samples).unwrap_or_default();
    for s in &next.submissions {
        let budget = coordinator::pace::TRANSCRIPT_INTERVALS.saturating_mul(s.checkpoint_interval);
        if s.commitment.steps > budget {
            return Err(fail(
                next,
                format!(
                    "miner {}'s commitment has {} steps, over its budget of {budget}",
                    s.miner, s.commitment.steps
                ),
            ));
        }
        let paced = coordinator::pace::checkpoint_interval(
            samples.get(&s.miner).copied(),
            window_ms,
            initial,
        );
        if s.checkpoint_interval != paced {
            return Err(fail(
                next,
                format!(
                    "miner {}'s task has checkpoint interval {}, but its last verified run paces it at {paced} (a budget the coordinator chose)",
                    s.miner, s.checkpoint_interval
                ),
            ));
        }
    }
    Ok(())
}

/// Re-measures one evaluated cycle from its published data. `earlier` are the records before
/// it (a held-out batch may never be scored on twice).
pub fn remeasure(
    spec: &ModelSpec,
    record: &CycleRecord,
    earlier: &[CycleRecord],
    published: &PublishedCycle,
) -> Result<(), AuditError> {
    let announcement = &record.announcement.announcement;
    let digest = record_digest(record);
    if record.record_hash.is_some_and(|h| h != digest) {
        return Err(fail(
            record,
            format!(
                "the record says its digest is {}, it is {digest}",
                record.record_hash.unwrap_or(Hash256::ZERO)
            ),
        ));
    }
    for cert in &record.block_certificates {
        if cert.0.body.record_hash != digest {
            return Err(fail(
                record,
                format!(
                    "attempt {}'s certificate anchors record {}, but the published record's digest is {digest} (the record was rewritten)",
                    cert.0.body.attempt, cert.0.body.record_hash
                ),
            ));
        }
    }
    let Some(reveal) = record.held_out else {
        return Err(fail(
            record,
            "evaluated, but no held-out batch revealed".into(),
        ));
    };
    if reveal.commitment() != announcement.held_out_commitment {
        return Err(fail(record, "the revealed held-out batch does not open the announcement's commitment (the batch was swapped)".into()));
    }
    if sha256(&published.held_out) != reveal.batch_hash {
        return Err(fail(
            record,
            "the served held-out batch is not the revealed one".into(),
        ));
    }
    if let Some(other) = earlier.iter().find(|r| {
        r.held_out
            .is_some_and(|h| h.batch_hash == reveal.batch_hash)
    }) {
        return Err(fail(
            record,
            format!(
                "scored on the same held-out batch as cycle {} (a batch is never reused)",
                other.announcement.announcement.cycle
            ),
        ));
    }
    let start = model_from_safetensors(spec.clone(), &published.start_model)
        .map_err(|e| fail(record, format!("start model: {e}")))?;
    if Hash256(model_hash(&start)) != announcement.model_hash {
        return Err(fail(
            record,
            "the served start model is not the announced one".into(),
        ));
    }
    let held_out =
        Samples::from_safetensors(&published.held_out, spec.input_features(), spec.classes())
            .map_err(|e| fail(record, format!("held-out batch: {e}")))?;
    if held_out.len() as u64 != reveal.samples {
        return Err(fail(
            record,
            "the held-out batch has another size than revealed".into(),
        ));
    }
    if published.updates.len() != record.submissions.len() {
        return Err(fail(
            record,
            "not every receipted update was published".into(),
        ));
    }
    let mut inputs = Vec::with_capacity(record.submissions.len());
    for (s, bytes) in record.submissions.iter().zip(&published.updates) {
        if sha256(bytes) != s.update_hash {
            return Err(fail(
                record,
                format!(
                    "the update published for {} is not the receipted one",
                    s.miner
                ),
            ));
        }
        inputs.push((
            s.miner,
            s.segment.clone(),
            bytes.clone(),
            s.verification.clone(),
        ));
    }
    let evaluated = evaluate_submissions(&start, &held_out, &inputs)
        .map_err(|e| fail(record, format!("evaluation: {e}")))?;
    if record.global_loss_units != Some(evaluated.global_loss_units) {
        return Err(fail(
            record,
            format!(
                "start model's held-out loss is {} units, the record says {:?}",
                evaluated.global_loss_units, record.global_loss_units
            ),
        ));
    }
    for (s, m) in record.submissions.iter().zip(&evaluated.measurements) {
        let score =
            coordinator::api::verified_score(&s.verification, m.params_trained, m.loss_reduction);
        if (m.params_trained, m.loss_reduction, score)
            != (s.params_trained, s.loss_reduction, s.score)
        {
            return Err(fail(
                record,
                format!(
                    "{}: measured {} parameters, loss reduction {}, score {}; the record says {}, {}, {} (a misreported measurement)",
                    s.miner, m.params_trained, m.loss_reduction, score, s.params_trained, s.loss_reduction, s.score
                ),
            ));
        }
    }
    // At a job's end the merge is the job's result and the next model is the next job's
    // (`jobs_audit` checks that one).
    let merged = Hash256(model_hash(&evaluated.next_model));
    let recorded = record.merged_model_hash.or(record.next_model_hash);
    if recorded != Some(merged) {
        return Err(fail(
            record,
            format!("the merge recomputes to model {merged}, the record says {recorded:?} (merged with other weights)"),
        ));
    }
    // The merge's loss on the batch: what a job's loss target is judged on.
    if let Some(quality) = record.next_quality {
        let loss = learning::evaluate(&evaluated.next_model, &held_out)
            .map_err(|e| fail(record, format!("evaluating the merge: {e}")))?
            .loss;
        let units =
            consensus::score::loss_reduction_units(f64::from(loss), 0.0).unwrap_or(i64::MAX);
        if units != quality.held_out_loss_units {
            return Err(fail(
                record,
                format!(
                    "the merge's held-out loss recomputes to {units} units, the record says {} (a misreported quality)",
                    quality.held_out_loss_units
                ),
            ));
        }
    }
    Ok(())
}

/// Fetches what `record`'s re-measurement needs and runs it. Returns false for a cycle not yet
/// evaluated (nothing to re-measure yet).
pub async fn fetch_and_remeasure(
    source: &impl PublishedSource,
    spec: &ModelSpec,
    record: &CycleRecord,
    earlier: &[CycleRecord],
) -> Result<bool, AuditError> {
    if record.next_model_hash.is_none() {
        return Ok(false);
    }
    let cycle = record.announcement.announcement.cycle;
    let mut updates = Vec::with_capacity(record.submissions.len());
    for s in &record.submissions {
        updates.push(source.update(cycle, &s.update_hash).await?);
    }
    let published = PublishedCycle {
        start_model: source.weights(cycle).await?,
        held_out: source.held_out(cycle).await?,
        updates,
    };
    remeasure(spec, record, earlier, &published)?;
    Ok(true)
}
