//! The auditor's check of training jobs: every announcement names a job whose published terms
//! hash to that name; each job starts from the model its terms give (its seed's first model,
//! or its own last merge when it resumes); a cycle that ends a job keeps the merge as the job's
//! result and names the next job's start; and no posted job is dropped before its stopping
//! rule, or kept past it. A coordinator that swaps a job's model, steers a job's lineage, or
//! ends an owner's job early without a target reached or the owner's signed cancel is caught
//! here.

use crate::audit::AuditError;
use crate::published::PublishedSource;
use coordinator::api::{job_cancel_signing_hash, CycleOutcome, CycleRecord, JobStatus};
use learning::{model_hash, Model, ModelSpec};
use primitives::Hash256;
use std::collections::BTreeMap;

fn fail(record: &CycleRecord, why: String) -> AuditError {
    AuditError::Job {
        cycle: record.announcement.announcement.cycle,
        job: record.announcement.announcement.job,
        why,
    }
}

/// Fetches every job the records name and checks that its terms hash to its id.
pub async fn fetch_jobs(
    source: &impl PublishedSource,
    records: &[CycleRecord],
) -> Result<BTreeMap<Hash256, JobStatus>, AuditError> {
    let mut jobs = BTreeMap::new();
    for record in records {
        let id = record.announcement.announcement.job;
        if id == Hash256::ZERO || jobs.contains_key(&id) {
            continue;
        }
        let status = source.job(&id).await?;
        check_terms(record, &status)?;
        jobs.insert(id, status);
    }
    Ok(jobs)
}

/// The published job `status` is the one `record`'s announcement names: its terms hash to it.
pub fn check_terms(record: &CycleRecord, status: &JobStatus) -> Result<(), AuditError> {
    let id = record.announcement.announcement.job;
    let terms_id = status.terms.id();
    if terms_id != id || status.id != id {
        return Err(fail(
            record,
            format!("the published terms of job {id} hash to {terms_id} (the job was rewritten)"),
        ));
    }
    Ok(())
}

/// The job `record` trained: the one its announcement names, or for a record from before
/// jobs (zero) the coordinator's own workload (the published job without an owner), if any.
fn job_of(record: &CycleRecord, jobs: &BTreeMap<Hash256, JobStatus>) -> Hash256 {
    let job = record.announcement.announcement.job;
    if job != Hash256::ZERO {
        return job;
    }
    jobs.values()
        .find(|j| j.terms.owner.is_none())
        .map_or(Hash256::ZERO, |j| j.id)
}

/// The model `record` trained: its job's (the model card's for a record from before jobs on
/// a coordinator that publishes none).
pub fn spec_of<'a>(
    record: &CycleRecord,
    jobs: &'a BTreeMap<Hash256, JobStatus>,
    card_spec: &'a ModelSpec,
) -> &'a ModelSpec {
    jobs.get(&job_of(record, jobs))
        .map_or(card_spec, |j| &j.terms.model)
}

/// The model a job's first cycle must train: its terms' seed's.
fn first_model(status: &JobStatus) -> Result<Hash256, String> {
    let model = Model::new(status.terms.model.clone(), status.terms.model_seed)
        .map_err(|e| format!("the job's model does not build: {e}"))?;
    Ok(Hash256(model_hash(&model)))
}

/// Whether a posted job may end at `last`, its `evaluated`-th evaluated cycle: its cycles are
/// done, a target was reached there, or its owner signed a cancel.
fn may_end(status: &JobStatus, last: &CycleRecord, evaluated: u64) -> bool {
    let Some(rule) = status.terms.stop else {
        return true;
    };
    let quality = last.next_quality;
    let loss_reached = rule
        .target_held_out_loss
        .zip(quality)
        .is_some_and(|(t, q)| q.held_out_loss_units <= (t * 1e6).round() as i64);
    let accuracy_reached = rule
        .target_accuracy
        .zip(quality)
        .is_some_and(|(t, q)| f64::from(q.test_accuracy_ppm) >= (t * 1e6).round());
    let cancelled = match (status.terms.owner, status.cancel_signature) {
        (Some(owner), Some(signature)) => signature.verify(
            &bitcoin::secp256k1::Secp256k1::verification_only(),
            &owner,
            &job_cancel_signing_hash(&last.announcement.announcement.coordinator, &status.id),
        ),
        _ => false,
    };
    evaluated >= rule.cycles || loss_reached || accuracy_reached || cancelled
}

/// Checks the job lineage of `records` (every record, oldest first): returns how many job
/// changes were checked.
pub fn check_jobs(
    records: &[CycleRecord],
    jobs: &BTreeMap<Hash256, JobStatus>,
) -> Result<usize, AuditError> {
    let mut last_of_job: BTreeMap<Hash256, &CycleRecord> = BTreeMap::new();
    let mut evaluated: BTreeMap<Hash256, u64> = BTreeMap::new();
    let mut produced: BTreeMap<Hash256, u64> = BTreeMap::new();
    let mut changes = 0;
    let mut previous: Option<&CycleRecord> = None;
    for record in records {
        let a = &record.announcement.announcement;
        let job = job_of(record, jobs);
        if job == Hash256::ZERO {
            // Before jobs, on a coordinator without them: one fixed workload, nothing to check.
            previous = Some(record);
            continue;
        }
        let status = jobs
            .get(&job)
            .ok_or_else(|| fail(record, "the job it names is not published".into()))?;
        if record
            .merged_model_hash
            .is_some_and(|m| Some(m) == record.next_model_hash)
        {
            return Err(fail(
                record,
                "it marks a job's end but names its own merge as the next model".into(),
            ));
        }
        let changed = previous.is_none_or(|p| job_of(p, jobs) != job);
        if changed {
            if let Some(p) = previous {
                if p.merged_model_hash.is_none() {
                    return Err(fail(
                        record,
                        format!(
                            "it trains another job than cycle {}, which recorded no job end",
                            p.announcement.announcement.cycle
                        ),
                    ));
                }
                if p.next_model_hash != Some(a.model_hash) {
                    return Err(fail(
                        record,
                        format!(
                            "it trains model {}, but cycle {} named {:?} for the next job",
                            a.model_hash, p.announcement.announcement.cycle, p.next_model_hash
                        ),
                    ));
                }
                let ended = job_of(p, jobs);
                if let Some(ended_status) = jobs.get(&ended) {
                    let n = evaluated.get(&ended).copied().unwrap_or(0);
                    if !may_end(ended_status, p, n) {
                        return Err(fail(
                            p,
                            format!(
                                "job {ended} ended after {n} of its {} cycles with no target reached and no cancel signed by its owner (the job was dropped)",
                                ended_status.terms.stop.map_or(0, |r| r.cycles)
                            ),
                        ));
                    }
                }
            }
            let expected = match last_of_job.get(&job) {
                Some(last) => last.merged_model_hash.or(last.next_model_hash),
                None => Some(first_model(status).map_err(|why| fail(record, why))?),
            };
            if expected != Some(a.model_hash) {
                return Err(fail(
                    record,
                    format!(
                        "the job starts from model {}, its terms give {expected:?} (another model was put in its place)",
                        a.model_hash
                    ),
                ));
            }
            changes += usize::from(previous.is_some());
        } else if let Some(p) = previous {
            // A job's end followed by the same job is only a repeat after a cycle without a block.
            let made_block = matches!(p.outcome, Some(CycleOutcome::Produced { .. }));
            if p.merged_model_hash.is_some() && made_block {
                return Err(fail(
                    record,
                    format!(
                        "cycle {} ended the job and made a block, yet this cycle trains the same job",
                        p.announcement.announcement.cycle
                    ),
                ));
            }
        }
        if record.next_model_hash.is_some() {
            *evaluated.entry(job).or_default() += 1;
        }
        if matches!(record.outcome, Some(CycleOutcome::Produced { .. })) {
            let blocks = produced.entry(job).or_default();
            *blocks += 1;
            if let Some(rule) = status.terms.stop {
                if *blocks > rule.cycles {
                    return Err(fail(
                        record,
                        format!(
                            "the job made {blocks} blocks, past its stopping rule of {} cycles",
                            rule.cycles
                        ),
                    ));
                }
            }
        }
        last_of_job.insert(job, record);
        previous = Some(record);
    }
    Ok(changes)
}
