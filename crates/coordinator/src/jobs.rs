//! Training jobs: models that owners post (`POST /v1/jobs`, signed) to be trained on the
//! chain's cycles. Jobs run one after another, in the order posted, and the coordinator's own
//! workload (`--dataset`, `--model`) runs whenever none is waiting, resuming from its last
//! model. One job at a time because a block certifies one next model: sharing a cycle between
//! jobs would split its miners and its lottery between models that no single
//! `next_model_hash` can name.
//!
//! A job is its [`JobTerms`] (model, seed, hints, the hashes of its files, its stopping rule);
//! its id is their hash, and every announcement names the job its cycle trains. At the last
//! cycle of a job the record keeps the merge as `merged_model_hash` (the job's result) and
//! names the next job's model as `next_model_hash`, so the chain's lineage rule (a cycle
//! trains the model its parent block certified) holds across jobs, and an auditor can check
//! that each job started from the model its terms give (`miner::jobs_audit`).

use crate::api::{
    job_cancel_signing_hash, job_request_signing_hash, CompactSignature, JobData, JobEnd,
    JobRequest, JobState, JobStatus, JobTerms, TrainHints, JOBS_QUEUED_MAX,
    JOBS_QUEUED_PER_OWNER_MAX, JOB_NAME_CHARS_MAX, JOB_PARAMS_MAX,
};
use crate::cycle::{CycleEnv, ProofParams};
use crate::error::{JobRefusal, ServiceError};
use crate::service::{lock, Coordinator};
use crate::work::{ModelQuality, WorkSetup, Workload};
use bitcoin::secp256k1::PublicKey;
use bytes::Bytes;
use learning::{model_from_safetensors, Dataset, DatasetSource, Model, ModelCard, ModelChoice};
use primitives::{sha256, Hash256};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::sync::Arc;
use tracing::{info, warn};

/// Directory (inside the data directory) holding each posted job's files, one directory per
/// request (`jobs/<sha256 of the request>/train.csv`, ...).
pub const JOBS_DIR: &str = "jobs";

/// Most job workloads (datasets, splits, held-out pools) kept loaded at once, the
/// coordinator's own and the live job's included (those two are never evicted): room for the
/// next job's and one past job's. Others are loaded again from their files, one at a time,
/// when a past cycle of theirs is asked about.
const CONTEXTS_CACHED_MAX: usize = 4;

/// Most start models a job's card lists (the newest): the coordinator's own workload gains
/// one per cycle for as long as it runs, and each stored job is read on every task.
pub const LINEAGE_MAX: usize = 1_000;

/// Largest learning rate a job may ask for: above it plain SGD diverges on every shipped model.
const JOB_LR_MAX: f32 = 10.0;
/// Largest batch a job may ask for: a step's activations stay within memory on a small miner.
const JOB_BATCH_MAX: usize = 4096;

/// Who may post jobs. A job holds the chain's training while it runs, and a cycle makes a
/// block only if some submission improves the job's model: a job nobody can improve (random
/// labels, data its model cannot learn) makes no block, and since the next block must train
/// the model its parent named, the chain stops until it does. So jobs are taken only from
/// owners the operator trusts, until a bond forfeited by a stalled job prices that risk.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum JobPolicy {
    /// No posted jobs (the default): only the coordinator's own workload runs.
    #[default]
    Closed,
    /// Jobs from these owner keys.
    Owners(std::collections::BTreeSet<PublicKey>),
    /// Jobs from anyone (a test or private network).
    Open,
}

impl JobPolicy {
    pub fn admits(&self, owner: &PublicKey) -> bool {
        match self {
            JobPolicy::Closed => false,
            JobPolicy::Owners(owners) => owners.contains(owner),
            JobPolicy::Open => true,
        }
    }
}

/// A job as the coordinator keeps it (JSON in the store's `jobs` table).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredJob {
    /// Order of posting; the coordinator's own workload is 0.
    pub seq: u64,
    pub status: JobStatus,
    /// What the coordinator loads to run it (paths into [`JOBS_DIR`]).
    pub setup: WorkSetup,
    /// `sha256` of the request body that posted it (zero for the coordinator's own): a second
    /// post of the same bytes is refused as a duplicate.
    pub request_hash: Hash256,
    /// The start models of its cycles, oldest first: the lineage on its model card.
    pub lineage: Vec<Hash256>,
}

/// A job loaded for running: its workload and the cycle environment its model's layout gives.
pub(crate) struct JobContext {
    pub id: Hash256,
    pub env: CycleEnv,
    pub work: Workload,
}

/// The directory of a posted job's uploaded files (`None` for a shipped dataset).
fn job_dir(setup: &WorkSetup) -> Option<PathBuf> {
    match &setup.dataset {
        DatasetSource::Csv(path) | DatasetSource::Text(path) => {
            path.parent().map(std::path::Path::to_path_buf)
        }
        _ => None,
    }
}

/// The terms of the coordinator's own workload.
pub fn own_terms(setup: &WorkSetup) -> JobTerms {
    JobTerms {
        name: "coordinator".into(),
        owner: None,
        model: setup.model.clone(),
        model_seed: setup.model_seed,
        hints: setup.hints,
        dataset: setup.dataset.to_string(),
        train_hash: None,
        held_out_hash: None,
        test_hash: None,
        stop: None,
    }
}

/// A job's status before its first cycle.
fn fresh_status(id: Hash256, terms: JobTerms, state: JobState, now_ms: u64) -> JobStatus {
    JobStatus {
        id,
        terms,
        state,
        submitted_at_ms: now_ms,
        cycles_run: 0,
        first_cycle: None,
        last_cycle: None,
        model_hash: None,
        held_out_loss: None,
        test_accuracy: None,
        ended: None,
        cancel_requested: false,
        cancel_signature: None,
    }
}

/// The stored entry of the coordinator's own workload, before its first cycle.
pub(crate) fn own_job(setup: &WorkSetup, now_ms: u64) -> StoredJob {
    let terms = own_terms(setup);
    StoredJob {
        seq: 0,
        status: fresh_status(terms.id(), terms, JobState::Running, now_ms),
        setup: setup.clone(),
        request_hash: Hash256::ZERO,
        lineage: Vec::new(),
    }
}

/// The cycle environment of `work`'s model: the coordinator's identity, chain, timing and
/// bond policy from `base`, the segments, registration cap and new miners' interval from the
/// job's model and data.
fn job_env(base: &CycleEnv, id: Hash256, work: &Workload) -> Result<CycleEnv, ServiceError> {
    let initial = work.initial_model()?;
    let configured = ProofParams::default();
    Ok(CycleEnv {
        secp: base.secp.clone(),
        key: base.key,
        chain_id: base.chain_id,
        network: base.network,
        timing: base.timing,
        registrations_max: work.registrations_max(),
        segments: Workload::segments(&initial),
        proof: ProofParams {
            checkpoint_interval: crate::work::initial_checkpoint_interval(
                &work.setup.model,
                work.setup.hints.batch,
                base.timing.training_ms,
                configured.checkpoint_interval,
            ),
            ..base.proof
        },
        bonds: base.bonds,
        block_reward_sats: base.block_reward_sats,
        job: id,
    })
}

fn invalid(why: impl Into<String>) -> ServiceError {
    JobRefusal::Invalid(why.into()).into()
}

/// What is wrong with a request's name or hints, if anything.
fn check_request(request: &JobRequest) -> Result<(), ServiceError> {
    let name = request.name.trim();
    if name.is_empty() || name.chars().count() > JOB_NAME_CHARS_MAX {
        return Err(invalid(format!(
            "the name must have 1 to {JOB_NAME_CHARS_MAX} characters"
        )));
    }
    if name.chars().any(char::is_control) {
        return Err(invalid("the name has control characters"));
    }
    if let Some(problem) = request.stop.problem() {
        return Err(invalid(problem));
    }
    if let Some(h) = &request.hints {
        let lr_ok = h.lr.is_finite() && h.lr > 0.0 && h.lr <= JOB_LR_MAX;
        let momentum_ok = h.momentum.is_finite() && (0.0..1.0).contains(&h.momentum);
        if !lr_ok || !momentum_ok || !(1..=JOB_BATCH_MAX).contains(&h.batch) {
            return Err(invalid(format!(
                "hints must have 0 < lr <= {JOB_LR_MAX}, 0 <= momentum < 1 and a batch of 1..={JOB_BATCH_MAX}"
            )));
        }
    }
    Ok(())
}

impl Coordinator {
    /// The loaded job `id` (zero: the coordinator's own, as in stores from before jobs).
    pub(crate) fn context(&self, id: &Hash256) -> Result<Arc<JobContext>, ServiceError> {
        let id = if *id == Hash256::ZERO {
            self.own_job
        } else {
            *id
        };
        if let Some(ctx) = lock(&self.contexts).get(&id) {
            return Ok(ctx.clone());
        }
        let _one_load = lock(&self.loading);
        if let Some(ctx) = lock(&self.contexts).get(&id) {
            return Ok(ctx.clone());
        }
        let stored = self.store.job(&id)?.ok_or(JobRefusal::Unknown(id))?;
        let secret = if id == self.own_job {
            self.secret.clone()
        } else {
            self.secret.for_job(&id)
        };
        let work = Workload::load(stored.setup, secret)?;
        self.cache_context(JobContext {
            env: job_env(&self.env, id, &work)?,
            id,
            work,
        })
    }

    fn cache_context(&self, ctx: JobContext) -> Result<Arc<JobContext>, ServiceError> {
        let ctx = Arc::new(ctx);
        let live = *lock(&self.live_job);
        let mut cache = lock(&self.contexts);
        while cache.len() >= CONTEXTS_CACHED_MAX {
            let Some(evict) = cache
                .keys()
                .find(|k| **k != self.own_job && **k != live)
                .copied()
            else {
                break;
            };
            cache.remove(&evict);
        }
        cache.insert(ctx.id, ctx.clone());
        Ok(ctx)
    }

    /// The job `cycle` trains: the one its start model belongs to (stored when the cycle
    /// opened; no lock on the live state, so callers may hold it).
    pub(crate) fn cycle_context(&self, cycle: u64) -> Result<Arc<JobContext>, ServiceError> {
        let info = self
            .store
            .model_info(cycle)?
            .ok_or(ServiceError::UnknownCycle(cycle))?;
        self.context(&info.job)
    }

    /// Takes a job: checks the owner's signature over the exact body, the terms, the limits,
    /// and that the data loads and fits the model; stores the files and queues it.
    pub fn submit_job(
        &self,
        now_ms: u64,
        body: &[u8],
        signature: CompactSignature,
    ) -> Result<JobStatus, ServiceError> {
        let request: JobRequest = serde_json::from_slice(body)
            .map_err(|e| invalid(format!("the request does not parse: {e}")))?;
        if !signature.verify(
            &self.env.secp,
            &request.owner,
            &job_request_signing_hash(&self.env.coordinator(), body),
        ) {
            return Err(JobRefusal::BadSignature.into());
        }
        if self.job_policy == JobPolicy::Closed {
            return Err(JobRefusal::Closed.into());
        }
        if !self.job_policy.admits(&request.owner) {
            return Err(JobRefusal::OwnerNotAdmitted(request.owner).into());
        }
        check_request(&request)?;
        let choice: ModelChoice = request.model.parse().map_err(invalid)?;
        let request_hash = sha256(body);
        let jobs = self.store.jobs()?;
        if let Some(same) = jobs.iter().find(|j| j.request_hash == request_hash) {
            return Err(JobRefusal::Duplicate(same.status.id).into());
        }
        let waiting = |owner: Option<&PublicKey>| {
            jobs.iter()
                .filter(|j| j.status.state == JobState::Queued)
                .filter(|j| owner.is_none() || j.status.terms.owner.as_ref() == owner)
                .count()
        };
        if waiting(None) >= JOBS_QUEUED_MAX {
            return Err(JobRefusal::QueueFull {
                queued: waiting(None),
                max: JOBS_QUEUED_MAX,
            }
            .into());
        }
        let owned = waiting(Some(&request.owner));
        if owned >= JOBS_QUEUED_PER_OWNER_MAX {
            return Err(JobRefusal::OwnerQueueFull {
                queued: owned,
                max: JOBS_QUEUED_PER_OWNER_MAX,
            }
            .into());
        }
        let dir = self
            .data_dir
            .join(JOBS_DIR)
            .join(hex::encode(request_hash.0));
        let taken = self.take_job(now_ms, &request, &choice, request_hash, &dir, &jobs);
        if taken.is_err() {
            // Nothing of a refused job stays on disk.
            let _ = std::fs::remove_dir_all(&dir);
        }
        taken
    }

    fn take_job(
        &self,
        now_ms: u64,
        request: &JobRequest,
        choice: &ModelChoice,
        request_hash: Hash256,
        dir: &std::path::Path,
        jobs: &[StoredJob],
    ) -> Result<JobStatus, ServiceError> {
        let bad_data = |e: learning::LearningError| JobRefusal::BadData(e.to_string());
        let (dataset, held_out, test, label, hashes) = match &request.data {
            JobData::Shipped { dataset } => {
                let source = match dataset.as_str() {
                    "digits" => DatasetSource::Digits,
                    "wordnet" => DatasetSource::Wordnet,
                    other => {
                        return Err(invalid(format!(
                            "no shipped dataset {other:?}: digits or wordnet (or upload files)"
                        )))
                    }
                };
                (source, None, None, dataset.clone(), [None; 3])
            }
            JobData::Upload {
                format,
                train,
                held_out,
                test,
            } => {
                std::fs::create_dir_all(dir).map_err(|source| ServiceError::Io {
                    path: dir.to_owned(),
                    source,
                })?;
                let write = |name: &str, text: &str| -> Result<PathBuf, ServiceError> {
                    let path = dir.join(format!("{name}.{}", format.extension()));
                    std::fs::write(&path, text).map_err(|source| ServiceError::Io {
                        path: path.clone(),
                        source,
                    })?;
                    Ok(path)
                };
                let source = |path: PathBuf| match format {
                    crate::api::JobFormat::Csv => DatasetSource::Csv(path),
                    crate::api::JobFormat::Text => DatasetSource::Text(path),
                };
                let train_path = write("train", train)?;
                let held_out_path = held_out
                    .as_deref()
                    .map(|t| write("held-out", t))
                    .transpose()?;
                let test_path = test.as_deref().map(|t| write("test", t)).transpose()?;
                let hash = |t: &Option<String>| t.as_deref().map(|t| sha256(t.as_bytes()));
                (
                    source(train_path),
                    held_out_path.map(source),
                    test_path.map(source),
                    format!("{} upload", format.extension()),
                    [Some(sha256(train.as_bytes())), hash(held_out), hash(test)],
                )
            }
        };
        let loaded = Dataset::load(&dataset).map_err(bad_data)?;
        let model = choice
            .spec(loaded.samples.feature_count(), loaded.class_count)
            .map_err(bad_data)?;
        // Before any weight is allocated: an owner does not choose the coordinator's memory.
        let params: usize = model
            .param_shapes()
            .map_err(bad_data)?
            .iter()
            .map(|(_, shape)| shape.iter().product::<usize>())
            .sum();
        if params > JOB_PARAMS_MAX {
            return Err(invalid(format!(
                "the model has {params} parameters, at most {JOB_PARAMS_MAX}"
            )));
        }
        let setup = WorkSetup {
            hints: request
                .hints
                .unwrap_or_else(|| TrainHints::for_model(&model)),
            model: model.clone(),
            model_seed: request.model_seed,
            dataset,
            held_out,
            test,
        };
        let terms = JobTerms {
            name: request.name.trim().to_owned(),
            owner: Some(request.owner),
            model,
            model_seed: setup.model_seed,
            hints: setup.hints,
            dataset: label,
            train_hash: hashes[0],
            held_out_hash: hashes[1],
            test_hash: hashes[2],
            stop: Some(request.stop),
        };
        let id = terms.id();
        if jobs.iter().any(|j| j.status.id == id) {
            return Err(JobRefusal::Duplicate(id).into());
        }
        // The whole workload must load: split, held-out pool, model fit.
        let work = Workload::load(setup.clone(), self.secret.for_job(&id)).map_err(bad_data)?;
        if work.registrations_max() == 0 {
            return Err(JobRefusal::BadData(format!(
                "the training data has {} samples, fewer than one shard of {}",
                work.split.train.len(),
                crate::work::SHARD_SAMPLES_MIN
            ))
            .into());
        }
        let env = job_env(&self.env, id, &work)?;
        // The checks above read the jobs without the lock (loading takes seconds); the ones
        // another post could have changed meanwhile are made again under it.
        let _jobs = lock(&self.jobs_lock);
        let jobs = self.store.jobs()?;
        if let Some(same) = jobs
            .iter()
            .find(|j| j.status.id == id || j.request_hash == request_hash)
        {
            return Err(JobRefusal::Duplicate(same.status.id).into());
        }
        let waiting = |owner: Option<&PublicKey>| {
            jobs.iter()
                .filter(|j| j.status.state == JobState::Queued)
                .filter(|j| owner.is_none() || j.status.terms.owner.as_ref() == owner)
                .count()
        };
        if waiting(None) >= JOBS_QUEUED_MAX
            || waiting(Some(&request.owner)) >= JOBS_QUEUED_PER_OWNER_MAX
        {
            return Err(JobRefusal::QueueFull {
                queued: waiting(None),
                max: JOBS_QUEUED_MAX,
            }
            .into());
        }
        let stored = StoredJob {
            seq: jobs.iter().map(|j| j.seq).max().unwrap_or(0) + 1,
            status: fresh_status(id, terms, JobState::Queued, now_ms),
            setup,
            request_hash,
            lineage: Vec::new(),
        };
        self.store.put_job(&stored)?;
        self.cache_context(JobContext { id, env, work })?;
        info!(job = %id, owner = %request.owner, name = %stored.status.terms.name, model = %choice, "job queued");
        Ok(stored.status)
    }

    /// Whether this coordinator takes posted jobs at all (the server refuses a post before
    /// reading its body when not).
    pub fn takes_jobs(&self) -> bool {
        self.job_policy != JobPolicy::Closed
    }

    /// Cancels job `id` for its owner (`signature` over [`job_cancel_signing_hash`]): a
    /// queued job never runs; a running one ends at its next evaluation, its model final.
    pub fn cancel_job(
        &self,
        id: &Hash256,
        signature: CompactSignature,
    ) -> Result<JobStatus, ServiceError> {
        let _jobs = lock(&self.jobs_lock);
        let mut job = self.store.job(id)?.ok_or(JobRefusal::Unknown(*id))?;
        let Some(owner) = job.status.terms.owner else {
            return Err(JobRefusal::NotCancellable.into());
        };
        if !signature.verify(
            &self.env.secp,
            &owner,
            &job_cancel_signing_hash(&self.env.coordinator(), id),
        ) {
            return Err(JobRefusal::BadSignature.into());
        }
        match job.status.state {
            JobState::Queued => {
                job.status.state = JobState::Cancelled;
                job.status.ended = Some(JobEnd::Cancelled);
            }
            JobState::Running => job.status.cancel_requested = true,
            JobState::Done | JobState::Cancelled | JobState::Waiting => {
                return Err(JobRefusal::Ended(*id).into())
            }
        }
        job.status.cancel_signature = Some(signature);
        self.store.put_job(&job)?;
        let chosen = self
            .store
            .model_infos()?
            .iter()
            .any(|(_, info)| info.job == *id);
        if job.status.state == JobState::Cancelled && !chosen {
            // It never ran (nor was chosen to run next): no cycle needs its files.
            if let Some(dir) = job_dir(&job.setup) {
                if let Err(e) = std::fs::remove_dir_all(&dir) {
                    warn!(job = %id, dir = %dir.display(), error = %e, "could not remove a cancelled job's files");
                }
            }
        }
        info!(job = %id, state = ?job.status.state, "job cancelled by its owner");
        Ok(job.status)
    }

    /// Every job, in the order posted (the coordinator's own first).
    pub fn jobs(&self) -> Result<Vec<JobStatus>, ServiceError> {
        Ok(self.store.jobs()?.into_iter().map(|j| j.status).collect())
    }

    pub fn job(&self, id: &Hash256) -> Result<JobStatus, ServiceError> {
        Ok(self.store.job(id)?.ok_or(JobRefusal::Unknown(*id))?.status)
    }

    /// A job's newest merged model (safetensors) and its card, lineage included.
    pub fn job_model(&self, id: &Hash256) -> Result<(Bytes, ModelCard), ServiceError> {
        let job = self.store.job(id)?.ok_or(JobRefusal::Unknown(*id))?;
        let bytes = self.store.job_model(id)?.ok_or(JobRefusal::NoModel(*id))?;
        let ctx = self.context(id)?;
        let model = model_from_safetensors(job.setup.model.clone(), &bytes)?;
        let mut card = ModelCard::new(
            &model,
            &job.setup.dataset,
            &ctx.work.normalisation,
            job.status.test_accuracy.unwrap_or(0.0) as f32,
            job.lineage.iter().map(ToString::to_string).collect(),
        );
        // The card names the data as the terms do, not by the coordinator's file paths.
        card.dataset = job.status.terms.dataset.clone();
        Ok((Bytes::from(bytes), card))
    }

    /// `next` if its workload loads, else (ending it as failed) the coordinator's own workload,
    /// or `None` when that is the job `current` already.
    pub(crate) fn loadable_next(
        &self,
        next: Hash256,
        current: Hash256,
    ) -> Result<Option<Hash256>, ServiceError> {
        let Err(e) = self.context(&next) else {
            return Ok(Some(next));
        };
        warn!(job = %next, error = %e, "the next job's data does not load: it is skipped");
        {
            let _jobs = lock(&self.jobs_lock);
            if let Some(mut job) = self.store.job(&next)? {
                job.status.state = JobState::Cancelled;
                job.status.ended = Some(JobEnd::Failed);
                self.store.put_job(&job)?;
            }
        }
        Ok((current != self.own_job).then_some(self.own_job))
    }

    /// The model a job's next cycle starts from: its newest merge (the coordinator's own
    /// workload resuming), or its first model.
    pub(crate) fn job_start_model(&self, ctx: &JobContext) -> Result<Model, ServiceError> {
        match self.store.job_model(&ctx.id)? {
            Some(bytes) => Ok(model_from_safetensors(
                ctx.work.setup.model.clone(),
                &bytes,
            )?),
            None => Ok(ctx.work.initial_model()?),
        }
    }

    /// Books an evaluated cycle of `ctx`'s job (its start model, merge and the merge's
    /// quality) and says which job trains next: `None` for the same, or the next job when this
    /// one ended (its stopping rule, or its owner) or when the coordinator's own workload
    /// gives way to a waiting job. Idempotent per cycle (an evaluation re-run after a crash).
    pub(crate) fn job_evaluated(
        &self,
        ctx: &JobContext,
        cycle: u64,
        start_model: Hash256,
        merged_hash: Hash256,
        merged: &[u8],
        quality: ModelQuality,
    ) -> Result<Option<Hash256>, ServiceError> {
        let _jobs = lock(&self.jobs_lock);
        let jobs = self.store.jobs()?;
        let mut job = jobs
            .iter()
            .find(|j| j.status.id == ctx.id)
            .cloned()
            .ok_or(JobRefusal::Unknown(ctx.id))?;
        let status = &mut job.status;
        if status.last_cycle != Some(cycle) {
            status.cycles_run += 1;
        }
        status.first_cycle.get_or_insert(cycle);
        status.last_cycle = Some(cycle);
        status.model_hash = Some(merged_hash);
        status.held_out_loss = Some(f64::from(quality.held_out_loss));
        status.test_accuracy = Some(f64::from(quality.test_accuracy));
        if job.lineage.last() != Some(&start_model) {
            job.lineage.push(start_model);
            if job.lineage.len() > LINEAGE_MAX {
                job.lineage.remove(0);
            }
        }
        let ended = match (&status.terms.stop, status.cancel_requested) {
            (None, _) => None,
            (Some(_), true) => Some(JobEnd::Cancelled),
            (Some(rule), false) => rule.reached(
                status.cycles_run,
                f64::from(quality.held_out_loss),
                f64::from(quality.test_accuracy),
            ),
        };
        let first_waiting = jobs
            .iter()
            .find(|j| j.status.state == JobState::Queued && j.status.id != ctx.id)
            .map(|j| j.status.id);
        let next = match ended {
            Some(end) => {
                status.ended = Some(end);
                status.state = JobState::Done;
                info!(job = %ctx.id, cycle, reason = ?end, cycles = status.cycles_run, model = %merged_hash, "job done");
                Some(first_waiting.unwrap_or(self.own_job))
            }
            None if ctx.id == self.own_job => first_waiting,
            None => None,
        };
        self.store.put_job_model(&job, merged)?;
        Ok(next.filter(|n| *n != ctx.id))
    }

    /// Books that `cycle` opened on job `id`, after a cycle of `previous`.
    pub(crate) fn job_opened(
        &self,
        id: Hash256,
        cycle: u64,
        previous: Option<Hash256>,
    ) -> Result<(), ServiceError> {
        let _jobs = lock(&self.jobs_lock);
        let id = if id == Hash256::ZERO {
            self.own_job
        } else {
            id
        };
        let previous = previous.map(|p| if p == Hash256::ZERO { self.own_job } else { p });
        if let Some(prev) = previous.filter(|p| *p != id) {
            if let Some(mut p) = self.store.job(&prev)? {
                // Done only if it ended; a job the chain moved away from otherwise (another
                // tip) waits for its turn again.
                p.status.state = if prev == self.own_job {
                    JobState::Waiting
                } else if p.status.ended.is_some() {
                    JobState::Done
                } else {
                    JobState::Queued
                };
                self.store.put_job(&p)?;
            }
        }
        let Some(mut job) = self.store.job(&id)? else {
            warn!(job = %id, cycle, "a cycle opened on a job the store does not have");
            return Ok(());
        };
        if job.status.state != JobState::Running {
            // Cancelled after the cycle before it chose it: the block that chose it names its
            // model, so it trains this one cycle and ends at its evaluation.
            if job.status.state == JobState::Cancelled {
                job.status.cancel_requested = true;
            }
            job.status.state = JobState::Running;
            job.status.first_cycle.get_or_insert(cycle);
            info!(job = %id, cycle, "job running");
            self.store.put_job(&job)?;
        }
        Ok(())
    }
}
