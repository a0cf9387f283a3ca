//! The coordinator service: the pure cycle machine plus its store, the learning workload and
//! the chain observations. Synchronous and clock-free (time and entropy are arguments), so
//! tests drive whole cycles without sleeping; the HTTP server and the driver loop wrap it.

use crate::api::{
    CertificateHex, CycleRecord, CycleStatus, Health, MinerCertificates, Receipt, RegisterRequest,
    RegisterResponse, TaskInfo,
};
use crate::chain::UnspentOutput;
use crate::cycle::{
    bond_precheck, tick, Action, BondPolicy, CycleEnv, CycleState, CycleTiming, Event, Phase,
    ProofParams, Refusal,
};
use crate::error::ServiceError;
use crate::jobs::JobContext;
use crate::limits::CYCLE_RECORDS_PAGE_BYTES_MAX;
use crate::metrics::Metrics;
use crate::store::{ModelInfo, Store};
use crate::work::{check_update, WorkSetup, Workload};
use bitcoin::secp256k1::{PublicKey, Secp256k1, SecretKey};
use bitcoin::BlockHash;
use bytes::Bytes;
use learning::{
    model_from_safetensors, model_hash, model_to_safetensors, write_export, ExpectedSegment, Model,
    ModelCard,
};
use primitives::{sha256, Certificate, CertificateKind, ChainParams, Hash256};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use tracing::{debug, info, warn};

/// What a miner claims with an upload besides the bytes (its signed commitment's other fields).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubmissionClaim {
    pub task_hash: Hash256,
    pub transcript_root: Hash256,
    pub steps: u64,
}

/// File name of the coordinator's store inside its data directory.
pub const STORE_FILE: &str = "coordinator.redb";
/// Directory (inside the data directory) where the latest global model is exported.
pub const EXPORT_DIR: &str = "model";
/// File stem of the exported model (`global.safetensors`, `global.json`).
pub const EXPORT_STEM: &str = "global";

/// What the coordinator's node shows, fetched by the driver before a step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainView {
    pub tip: BlockHash,
    pub tip_height: u32,
    /// The block at the live cycle's height, if the cycle is in its block window.
    pub at_target: Option<(BlockHash, Certificate)>,
    /// `next_model_hash` of the tip's certificate, or `None` when the tip is genesis: the
    /// model a cycle opened on this tip must train (consensus checks the winner's block).
    pub tip_next_model: Option<Hash256>,
}

/// The serialised shards of one cycle: (cycle, shard bytes by index). Built once per cycle;
/// every download is a reference-counted view of the same bytes.
type CachedShards = (u64, Arc<Vec<Bytes>>);

/// A global model loaded for serving and scoring.
pub(crate) struct LoadedModel {
    pub(crate) model: Model,
    bytes: Bytes,
}

/// The newest global model as served by `/v1/model` and `/v1/model/card`: rebuilt when the
/// coordinator opens and after each merge, never per request.
struct LatestModel {
    bytes: Bytes,
    card: ModelCard,
}

pub struct Coordinator {
    /// The coordinator's own workload's environment: identity, chain, timing and bond policy
    /// for every job (each job's layout is in its [`JobContext`]'s).
    pub(crate) env: CycleEnv,
    /// Id of the coordinator's own workload (`--dataset`, `--model`).
    pub(crate) own_job: Hash256,
    /// Loaded jobs by id (see `crate::jobs`).
    pub(crate) contexts: Mutex<BTreeMap<Hash256, Arc<JobContext>>>,
    /// Seeds every job's held-out pool (`HeldOutSecret::for_job`).
    pub(crate) secret: crate::held_out::HeldOutSecret,
    /// Who may post jobs ([`crate::jobs::JobPolicy`], closed unless set).
    pub(crate) job_policy: crate::jobs::JobPolicy,
    /// Held across each read-modify-write of a stored job (post, cancel, a cycle opening or
    /// evaluated), so a cancel cannot be lost between another update's read and write.
    pub(crate) jobs_lock: Mutex<()>,
    /// One job workload is loaded at a time: concurrent requests about a job not in the cache
    /// wait for the one load instead of each loading its data.
    pub(crate) loading: Mutex<()>,
    /// The live cycle's job: never evicted from the cache, so nothing under the state lock
    /// loads a workload.
    pub(crate) live_job: Mutex<Hash256>,
    pub(crate) store: Store,
    pub(crate) data_dir: PathBuf,
    pub(crate) state: Mutex<Option<CycleState>>,
    models: Mutex<BTreeMap<u64, Arc<LoadedModel>>>,
    shards: Mutex<Option<CachedShards>>,
    latest: Mutex<Option<Arc<LatestModel>>>,
    /// Slashes to send, by (cycle, miner): see [`crate::slash`].
    pub(crate) slash_queue: Mutex<BTreeMap<(u64, PublicKey), crate::slash::PendingSlash>>,
    /// Bonds this coordinator sent a slash for: refused from then on, also while the slash
    /// waits in a mempool (the node's `gettxout` reads confirmed outputs only).
    pub(crate) slashed_bonds: Mutex<std::collections::BTreeSet<crate::api::BondOutpoint>>,
    pub metrics: Metrics,
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding a lock would be a bug; the data (plain state) is still usable.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Coordinator {
    /// Opens (or creates) the coordinator in `data_dir`. The work setup is fixed at the first
    /// start; a restart with a different one is refused rather than mixing models.
    pub fn open(
        data_dir: &Path,
        key: SecretKey,
        params: &ChainParams,
        setup: WorkSetup,
        timing: CycleTiming,
    ) -> Result<Self, ServiceError> {
        std::fs::create_dir_all(data_dir).map_err(|source| ServiceError::Io {
            path: data_dir.to_owned(),
            source,
        })?;
        let store = Store::open(&data_dir.join(STORE_FILE))?;
        match store.setup()? {
            Some(stored) if stored != setup => {
                return Err(ServiceError::SetupChanged(format!(
                    "stored {stored:?}, given {setup:?}"
                )))
            }
            Some(_) => {}
            None => store.put_setup(&setup)?,
        }
        let own = crate::jobs::own_job(&setup, 0);
        let own_job = own.status.id;
        if store.job(&own_job)?.is_none() {
            store.put_job(&own)?;
        }
        let secret = crate::held_out::HeldOutSecret::load_or_create(data_dir)?;
        let work = Workload::load(setup, secret.clone())?;
        let initial = work.initial_model()?;
        if store.model(0)?.is_none() {
            let quality = work.quality(&initial, &work.held_out.batch(0)?.samples)?;
            let info = ModelInfo {
                model_hash: Hash256(model_hash(&initial)),
                quality,
                job: own_job,
            };
            store.put_model(0, &model_to_safetensors(&initial)?, &info)?;
        }
        // New miners' first budgets follow the model's step cost.
        let configured = ProofParams::default();
        let proof = ProofParams {
            checkpoint_interval: crate::work::initial_checkpoint_interval(
                &work.setup.model,
                work.setup.hints.batch,
                timing.training_ms,
                configured.checkpoint_interval,
            ),
            ..configured
        };
        let secp = Secp256k1::new();
        let env = CycleEnv {
            block_reward_sats: params.subsidy.initial_sats,
            chain_id: params.chain_id,
            network: params.network,
            timing,
            registrations_max: work.registrations_max(),
            segments: Workload::segments(&initial),
            proof,
            bonds: BondPolicy::new(
                consensus::bond::BondTerms::from_params(params),
                params.bonds_required,
            ),
            secp,
            key,
            job: own_job,
        };
        let own_context = Arc::new(JobContext {
            id: own_job,
            env: env.clone(),
            work,
        });
        let state = store.current()?;
        let store_slashed = store.slashed_bonds()?;
        let coordinator = Coordinator {
            env,
            own_job,
            contexts: Mutex::new(BTreeMap::from([(own_job, own_context)])),
            secret,
            job_policy: crate::jobs::JobPolicy::default(),
            jobs_lock: Mutex::new(()),
            loading: Mutex::new(()),
            live_job: Mutex::new(
                state
                    .as_ref()
                    .map_or(own_job, |s: &CycleState| s.announcement().job),
            ),
            store,
            data_dir: data_dir.to_owned(),
            state: Mutex::new(state),
            models: Mutex::new(BTreeMap::new()),
            shards: Mutex::new(None),
            latest: Mutex::new(None),
            slash_queue: Mutex::new(BTreeMap::new()),
            slashed_bonds: Mutex::new(store_slashed.into_iter().collect()),
            metrics: Metrics::default(),
        };
        // The live cycle's slashes, and the last closed cycle's (a restart between its close
        // and the next tick of the sender would otherwise lose them); sent ones are skipped.
        if let Some(state) = coordinator.state() {
            let previous = state
                .cycle()
                .checked_sub(1)
                .and_then(|c| coordinator.store.cycle(c).ok().flatten());
            for s in previous.iter().chain([&state]) {
                for slash in crate::slash::slashes_due(s) {
                    coordinator.queue_slash(slash);
                }
            }
        }
        coordinator.export_latest()?;
        Ok(coordinator)
    }

    /// Takes posted jobs as `policy` says (none by default).
    pub fn accept_jobs(mut self, policy: crate::jobs::JobPolicy) -> Self {
        self.job_policy = policy;
        self
    }

    pub fn env(&self) -> &CycleEnv {
        &self.env
    }

    /// Admits bonded registrations only (`required`) or unbonded ones too. Until the chain
    /// parameters carry `bonds_required`, the caller sets it here after [`Coordinator::open`].
    pub fn require_bonds(mut self, required: bool) -> Self {
        self.env.bonds.required = required;
        // Loaded jobs copied the policy; nothing else holds them yet.
        let contexts = self.contexts.get_mut().unwrap_or_else(|e| e.into_inner());
        for ctx in contexts.values_mut() {
            if let Some(ctx) = Arc::get_mut(ctx) {
                ctx.env.bonds.required = required;
            }
        }
        self
    }

    /// A copy of the live cycle state, if a cycle was ever opened.
    pub fn state(&self) -> Option<CycleState> {
        lock(&self.state).clone()
    }

    /// The height whose block the driver must look up before the next step, if any.
    pub fn watched_height(&self) -> Option<u32> {
        lock(&self.state)
            .as_ref()
            .filter(|s| matches!(s.phase, Phase::BlockWindow { .. }))
            .map(|s| s.announcement().height)
    }

    /// Whether the next step opens a cycle (so the chain view must say what the tip's cycle
    /// produced).
    pub fn opens_next_cycle(&self) -> bool {
        lock(&self.state).as_ref().is_none_or(CycleState::is_closed)
    }

    /// Whether the next step needs a chain view (to open a cycle or watch for a block).
    pub fn needs_chain(&self) -> bool {
        match lock(&self.state).as_ref() {
            None => true,
            Some(s) => matches!(s.phase, Phase::BlockWindow { .. } | Phase::Closed { .. }),
        }
    }

    /// Advances the cycle to `now_ms`: opens the first or next cycle (needs `chain`), watches
    /// for the winner's block, and runs the evaluation at the deadline. Returns what happened.
    pub fn step(
        &self,
        now_ms: u64,
        entropy: [u8; 32],
        chain: Option<&ChainView>,
    ) -> Result<Vec<Action>, ServiceError> {
        let mut guard = lock(&self.state);
        let Some(state) = guard.clone() else {
            let Some(view) = chain else {
                return Ok(Vec::new());
            };
            let opened = self.open_cycle(0, view, now_ms, entropy, None)?;
            self.store.put_current(&opened)?;
            *guard = Some(opened);
            return Ok(Vec::new());
        };
        if state.is_closed() {
            let Some(view) = chain else {
                return Ok(Vec::new());
            };
            let next = self.open_cycle(state.cycle() + 1, view, now_ms, entropy, Some(&state))?;
            self.store.close_and_open(&state, &next)?;
            *guard = Some(next);
            return Ok(Vec::new());
        }
        let event = match (&state.phase, chain) {
            (Phase::BlockWindow { .. }, Some(view)) => Event::ChainObserved {
                tip_height: view.tip_height,
                at_target: view.at_target.clone().map(Box::new),
            },
            _ => Event::Tick,
        };
        let ctx = self.context(&state.announcement().job)?;
        let (next, mut actions) = tick(state.clone(), &ctx.env, now_ms, entropy, event);
        if next != state {
            self.store.put_current(&next)?;
        }
        let cycle = next.cycle();
        *guard = Some(next);
        if actions.iter().any(|a| matches!(a, Action::Evaluate { .. })) {
            // Evaluate without holding the lock: requests keep being answered (submissions
            // are refused as late, which the machine decides).
            drop(guard);
            actions.extend(self.evaluate(cycle, now_ms, entropy)?);
        }
        self.observe(&actions);
        Ok(actions)
    }

    fn open_cycle(
        &self,
        cycle: u64,
        view: &ChainView,
        now_ms: u64,
        entropy: [u8; 32],
        previous: Option<&CycleState>,
    ) -> Result<CycleState, ServiceError> {
        let info = self.start_model(cycle, view)?;
        let ctx = self.context(&info.job)?;
        *lock(&self.live_job) = ctx.id;
        let previous_job = previous.map(|p| p.announcement().job);
        self.job_opened(ctx.id, cycle, previous_job)?;
        // The secret must be unpredictable: derive it from the entropy under its own tag so
        // it is independent of the certificate nonces drawn from the same bytes.
        let secret = primitives::tagged_hash("trainchain/coordinator/secret", &[&entropy]).0;
        let held_out = ctx.work.held_out.batch(cycle)?.reveal;
        let mut state = CycleState::open(
            &ctx.env,
            cycle,
            view.tip,
            view.tip_height,
            info.model_hash,
            now_ms,
            secret,
            held_out.commitment(),
            previous.map_or(Hash256::ZERO, CycleState::record_digest),
        );
        // Budgets follow each miner's last verified run, as the previous record shows it; a
        // run on another job's model says nothing of this one's step cost.
        state.pace_samples = previous
            .filter(|p| p.announcement().job == ctx.id)
            .map(|p| crate::pace::samples(&p.record()))
            .unwrap_or_default();
        info!(
            cycle,
            job = %ctx.id,
            height = state.announcement().height,
            parent = %view.tip,
            model = %info.model_hash,
            held_out_pass = held_out.pass,
            "cycle opened"
        );
        self.metrics.set_cycle(cycle);
        Ok(state)
    }

    /// Makes the model the chain asks for the one `cycle` trains, and returns its info.
    ///
    /// A cycle trains the model its parent block's cycle produced (consensus checks that the
    /// winner's certificate names it), or the initial model on genesis. After a cycle without a
    /// block its merge is set aside and the next cycle trains the same model again.
    fn start_model(&self, cycle: u64, view: &ChainView) -> Result<ModelInfo, ServiceError> {
        let infos = self.store.model_infos()?;
        let wanted = match view.tip_next_model {
            Some(hash) => hash,
            None => infos
                .iter()
                .find(|(c, _)| *c == 0)
                .map(|(_, info)| info.model_hash)
                .ok_or(ServiceError::MissingModel(0))?,
        };
        if let Some((_, info)) = infos.iter().find(|(c, _)| *c == cycle) {
            if info.model_hash == wanted {
                return Ok(info.clone());
            }
        }
        let (source, info) = infos
            .iter()
            .rev()
            .find(|(_, info)| info.model_hash == wanted)
            .cloned()
            .ok_or(ServiceError::UnknownTipModel(wanted))?;
        let bytes = self
            .store
            .model(source)?
            .ok_or(ServiceError::MissingModel(source))?;
        self.store.put_model(cycle, &bytes, &info)?;
        lock(&self.models).remove(&cycle);
        *lock(&self.latest) = None;
        if cycle > 0 {
            info!(cycle, model = %wanted, from_cycle = source, "the last cycle made no block: training its start model again");
        }
        if let Err(e) = self.export_latest() {
            warn!(error = %e, "could not export the global model");
        }
        Ok(info)
    }

    /// Runs the evaluation of `cycle`, stores the next model, and feeds the result back.
    fn evaluate(
        &self,
        cycle: u64,
        now_ms: u64,
        entropy: [u8; 32],
    ) -> Result<Vec<Action>, ServiceError> {
        let state = self.state().ok_or(ServiceError::NotOpen)?;
        let global = self.model(cycle)?;
        let replay_started = std::time::Instant::now();
        let (mut verdicts, claims) = self.verify_submissions(&state, &global.model)?;
        let replay_secs = replay_started.elapsed().as_secs_f64();
        let mut updates = Vec::new();
        for miner in state.submissions.keys() {
            let segment = state.registrations[miner]
                .assignment
                .as_ref()
                .map(|a| a.segment.clone())
                .unwrap_or_default();
            let bytes = self.store.update(cycle, miner)?.unwrap_or_default();
            let verdict = verdicts.remove(miner).unwrap_or(proof::Verdict::Unanswered);
            updates.push((*miner, segment, bytes, verdict));
        }
        info!(
            cycle,
            submissions = updates.len(),
            replay_secs,
            "submissions replay-checked"
        );
        let started = std::time::Instant::now();
        let ctx = self.context(&state.announcement().job)?;
        let evaluation = ctx.work.evaluate_cycle(cycle, &global.model, &updates)?;
        self.metrics
            .add_evaluation(updates.len() as u64, started.elapsed().as_secs_f64());
        let mut evaluation = evaluation;
        evaluation.input.claims = claims;
        let merged_hash = evaluation.input.next_model_hash;
        let merged = model_to_safetensors(&evaluation.next_model)?;
        let next_job = self.job_evaluated(
            &ctx,
            cycle,
            state.announcement().model_hash,
            merged_hash,
            &merged,
            evaluation.next_quality,
        )?;
        // A next job whose data no longer loads is skipped (and ended), not the chain's stop.
        let next_job = match next_job {
            Some(next) => self.loadable_next(next, ctx.id)?,
            None => None,
        };
        let (next_bytes, info) = match next_job {
            None => (
                merged,
                ModelInfo {
                    model_hash: merged_hash,
                    quality: evaluation.next_quality,
                    job: ctx.id,
                },
            ),
            // The job ends (or the coordinator's own gives way): the merge is the job's
            // result, and the next cycle trains the next job's model.
            Some(next) => {
                let next_ctx = self.context(&next)?;
                let model = self.job_start_model(&next_ctx)?;
                let quality = next_ctx
                    .work
                    .quality(&model, &next_ctx.work.held_out.batch(cycle + 1)?.samples)?;
                let hash = Hash256(model_hash(&model));
                evaluation.input.merged_model_hash = Some(merged_hash);
                evaluation.input.next_model_hash = hash;
                info!(cycle, job = %ctx.id, next_job = %next, next_model = %hash, "the next cycle trains the next job");
                (
                    model_to_safetensors(&model)?,
                    ModelInfo {
                        model_hash: hash,
                        quality,
                        job: next,
                    },
                )
            }
        };
        self.store.put_model(cycle + 1, &next_bytes, &info)?;
        self.metrics.set_quality(
            evaluation.next_quality.held_out_loss,
            evaluation.next_quality.test_accuracy,
        );
        if let Err(e) = self.export_latest() {
            warn!(error = %e, "could not export the global model");
        }
        let mut guard = lock(&self.state);
        let Some(current) = guard.clone() else {
            return Ok(Vec::new());
        };
        if current.cycle() != cycle || current.phase != Phase::Evaluation {
            return Ok(Vec::new());
        }
        let (next, actions) = tick(
            current,
            &ctx.env,
            now_ms,
            entropy,
            Event::Evaluated(evaluation.input),
        );
        self.store.put_current(&next)?;
        for slash in crate::slash::slashes_due(&next) {
            self.queue_slash(slash);
        }
        if let Some(l) = &next.lottery {
            info!(
                cycle,
                submissions = l.scored.len(),
                eligible = l.draw_order.len(),
                winner = %l
                    .draw_order
                    .first()
                    .map_or_else(|| "none".to_owned(), ToString::to_string),
                held_out_loss = evaluation.next_quality.held_out_loss,
                "cycle evaluated"
            );
        }
        *guard = Some(next);
        Ok(actions)
    }

    fn observe(&self, actions: &[Action]) {
        for action in actions {
            match action {
                Action::Issued(certs) => {
                    self.metrics.add_certificates(certs.len() as u64);
                    for c in certs
                        .iter()
                        .filter(|c| c.body.kind == CertificateKind::BlockSigning)
                    {
                        info!(cycle = c.body.cycle, attempt = c.body.attempt, miner = %c.body.miner, height = c.body.height, "block-signing certificate issued");
                    }
                }
                Action::Closed(outcome) => {
                    self.metrics.add_closed(outcome);
                    info!(outcome = %outcome_text(outcome), "cycle closed");
                }
                _ => {}
            }
        }
    }

    /// The cheap checks of a registration, before any rate limit or signature: a cycle is
    /// open, it is `cycle`, and its registration has not closed at `now_ms`. Reads memory only.
    pub fn registration_open(&self, now_ms: u64, cycle: u64) -> Result<(), ServiceError> {
        let guard = lock(&self.state);
        let state = guard.as_ref().ok_or(ServiceError::NotOpen)?;
        let a = state.announcement();
        if a.cycle != cycle {
            return Err(Refusal::WrongCycle {
                current: a.cycle,
                found: cycle,
            }
            .into());
        }
        if state.phase != Phase::Registration || now_ms >= a.registration_deadline_ms {
            return Err(Refusal::RegistrationClosed {
                cycle,
                deadline_ms: a.registration_deadline_ms,
            }
            .into());
        }
        Ok(())
    }

    /// The bond checks of a registration that read memory only (see
    /// [`crate::cycle::bond_precheck`]): with bonds required an unbonded request is refused
    /// here, before any rate limit, signature check or chain read, and a bond already backing
    /// another registration of the cycle too. Logged with the reason at debug level: these
    /// refusals come before any rate limit, so a flood must not flood the log as well.
    pub fn registration_bond_precheck(
        &self,
        request: &RegisterRequest,
    ) -> Result<(), ServiceError> {
        if let Some(outpoint) = request.bond.filter(|b| self.bond_slashed(b)) {
            debug!(miner = %request.miner, bond = %outpoint, "registration refused: bond slashed");
            return Err(Refusal::BondSlashed { outpoint }.into());
        }
        let guard = lock(&self.state);
        let state = guard.as_ref().ok_or(ServiceError::NotOpen)?;
        let ctx = self.context(&state.announcement().job)?;
        bond_precheck(state, &ctx.env, request).map(drop).map_err(|refusal| {
            debug!(miner = %request.miner, bond = ?request.bond.map(|b| b.to_string()), %refusal, "registration refused");
            ServiceError::from(refusal)
        })
    }

    /// Registers a miner for the live cycle. The machine checks, in order: cycle, phase,
    /// signature, payout address, hardware, the bond, then a free slot. Rate limits are the
    /// server's (per peer address, after [`Coordinator::registration_open`]). A request that
    /// names a bond goes through [`Coordinator::register_bonded`] instead, with the bond read.
    pub fn register(
        &self,
        now_ms: u64,
        entropy: [u8; 32],
        request: RegisterRequest,
    ) -> Result<RegisterResponse, ServiceError> {
        self.register_event(now_ms, entropy, Event::Register(request))
    }

    /// Registers a miner naming a bond, with what the node showed at the bond's outpoint
    /// (`found`, from [`crate::ChainSource::unspent_output`]).
    pub fn register_bonded(
        &self,
        now_ms: u64,
        entropy: [u8; 32],
        request: RegisterRequest,
        found: Option<UnspentOutput>,
    ) -> Result<RegisterResponse, ServiceError> {
        self.register_event(now_ms, entropy, Event::RegisterBonded { request, found })
    }

    fn register_event(
        &self,
        now_ms: u64,
        entropy: [u8; 32],
        event: Event,
    ) -> Result<RegisterResponse, ServiceError> {
        let (miner, bond) = match &event {
            Event::Register(r) | Event::RegisterBonded { request: r, .. } => (r.miner, r.bond),
            _ => return Err(ServiceError::NotOpen),
        };
        if let Some(outpoint) = bond.filter(|b| self.bond_slashed(b)) {
            warn!(%miner, bond = %outpoint, "registration refused: bond slashed");
            return Err(Refusal::BondSlashed { outpoint }.into());
        }
        let mut guard = lock(&self.state);
        let state = guard.clone().ok_or(ServiceError::NotOpen)?;
        let ctx = self.context(&state.announcement().job)?;
        let (next, actions) = tick(state.clone(), &ctx.env, now_ms, entropy, event);
        if next != state {
            self.store.put_current(&next)?;
        }
        *guard = Some(next);
        drop(guard);
        for action in actions {
            match action {
                Action::Registered(response) => {
                    self.metrics.add_registration();
                    if let Some(bond) = bond {
                        info!(%miner, %bond, cycle = response.cycle, "bonded registration");
                    }
                    return Ok(response);
                }
                Action::Refused(refusal) => {
                    warn!(%miner, bond = ?bond.map(|b| b.to_string()), %refusal, "registration refused");
                    return Err(refusal.into());
                }
                _ => {}
            }
        }
        Err(ServiceError::NotOpen)
    }

    /// The checks of an upload that need no body byte: the cycle is live and `cycle`, `miner`
    /// is registered in it, training is on (not before the registration deadline, not after the
    /// submission deadline) and `miner` has not submitted yet. Returns the most bytes its
    /// update may have (its segment's `ExpectedSegment::limit_bytes`), which the server caps the
    /// body at. The signature is checked after the body arrives, by [`Coordinator::submit`].
    pub fn upload_limit(
        &self,
        now_ms: u64,
        cycle: u64,
        miner: &PublicKey,
    ) -> Result<usize, ServiceError> {
        let state = self.live(now_ms, cycle)?;
        let a = state.announcement();
        let registration = state
            .registrations
            .get(miner)
            .ok_or_else(|| state.unregistered(miner))?;
        let not_started = Refusal::TrainingNotStarted {
            registration_deadline_ms: a.registration_deadline_ms,
        };
        match state.phase {
            Phase::Registration => return Err(not_started.into()),
            Phase::Training if now_ms < a.submission_deadline_ms => {}
            _ => {
                return Err(Refusal::Late {
                    deadline_ms: a.submission_deadline_ms,
                    now_ms,
                }
                .into())
            }
        }
        if state.submissions.contains_key(miner) {
            return Err(Refusal::AlreadySubmitted.into());
        }
        let assignment = registration.assignment.as_ref().ok_or(not_started)?;
        let global = self.model(cycle)?;
        Ok(ExpectedSegment::of(&global.model, &assignment.segment)?.limit_bytes())
    }

    /// Checks, stores and receipts an uploaded update. The receipt is returned only after
    /// the update and the state that lists it are committed.
    #[allow(clippy::too_many_arguments)]
    pub fn submit(
        &self,
        now_ms: u64,
        entropy: [u8; 32],
        cycle: u64,
        miner: PublicKey,
        signature: crate::api::CompactSignature,
        claim: SubmissionClaim,
        bytes: &[u8],
    ) -> Result<Receipt, ServiceError> {
        let result = self.try_submit(now_ms, entropy, cycle, miner, signature, claim, bytes);
        match &result {
            Ok(_) => self.metrics.add_submission_accepted(),
            Err(e) => {
                self.metrics.add_submission_rejected();
                warn!(%miner, cycle, bytes = bytes.len(), error = %e, "submission refused");
            }
        }
        result
    }

    #[allow(clippy::too_many_arguments)]
    fn try_submit(
        &self,
        now_ms: u64,
        entropy: [u8; 32],
        cycle: u64,
        miner: PublicKey,
        signature: crate::api::CompactSignature,
        claim: SubmissionClaim,
        bytes: &[u8],
    ) -> Result<Receipt, ServiceError> {
        let commitment = proof::Commitment {
            task_hash: claim.task_hash,
            update_hash: sha256(bytes),
            transcript_root: claim.transcript_root,
            steps: claim.steps,
        };
        // Cheap checks before decoding: signature, cycle, registration and assignment.
        let digest = commitment.signing_hash(cycle, &miner);
        if !signature.verify(&self.env.secp, &miner, &digest) {
            return Err(Refusal::BadSignature.into());
        }
        let state = self.state().ok_or(ServiceError::NotOpen)?;
        if state.cycle() != cycle {
            return Err(Refusal::WrongCycle {
                current: state.cycle(),
                found: cycle,
            }
            .into());
        }
        let registration = state
            .registrations
            .get(&miner)
            .ok_or_else(|| state.unregistered(&miner))?;
        // Before the registration deadline there is no assignment yet; the machine decides
        // whether that is "not started" or (after a missed tick) already training.
        if let Some(assignment) = &registration.assignment {
            let global = self.model(cycle)?;
            check_update(&global.model, &assignment.segment, bytes)?;
            let expected = self.replay_task(&state, &miner)?.hash();
            if commitment.task_hash != expected {
                return Err(ServiceError::WrongTask {
                    expected,
                    found: commitment.task_hash,
                });
            }
        }
        let mut guard = lock(&self.state);
        let current = guard.clone().ok_or(ServiceError::NotOpen)?;
        let ctx = self.context(&current.announcement().job)?;
        let (next, actions) = tick(
            current.clone(),
            &ctx.env,
            now_ms,
            entropy,
            Event::Submit {
                cycle,
                miner,
                commitment,
                signature,
            },
        );
        let outcome = actions.into_iter().find_map(|a| match a {
            Action::Receipted(r) => Some(Ok(r)),
            Action::Refused(r) => Some(Err(r)),
            _ => None,
        });
        match outcome {
            Some(Ok(receipt)) => {
                // The assignment is fixed once training started: check against it if the
                // pre-check above ran before it existed.
                if registration.assignment.is_none() {
                    let segment = next.registrations[&miner]
                        .assignment
                        .as_ref()
                        .map(|a| a.segment.clone())
                        .unwrap_or_default();
                    let global = self.model(cycle)?;
                    check_update(&global.model, &segment, bytes)?;
                }
                self.store.put_submission(&next, &miner, bytes)?;
                *guard = Some(next);
                Ok(receipt)
            }
            Some(Err(refusal)) => {
                if next != current {
                    self.store.put_current(&next)?;
                }
                *guard = Some(next);
                Err(refusal.into())
            }
            None => Err(ServiceError::NotOpen),
        }
    }

    /// The global model a cycle trains (cached).
    pub(crate) fn model(&self, cycle: u64) -> Result<Arc<LoadedModel>, ServiceError> {
        if let Some(m) = lock(&self.models).get(&cycle) {
            return Ok(m.clone());
        }
        let bytes = self
            .store
            .model(cycle)?
            .ok_or(ServiceError::MissingModel(cycle))?;
        // The spec only: no workload is loaded to decode a model.
        let job = self
            .store
            .model_info(cycle)?
            .ok_or(ServiceError::UnknownCycle(cycle))?
            .job;
        let job = if job == Hash256::ZERO {
            self.own_job
        } else {
            job
        };
        let spec = self
            .store
            .job(&job)?
            .ok_or(crate::error::JobRefusal::Unknown(job))?
            .setup
            .model;
        let model = model_from_safetensors(spec, &bytes)?;
        let loaded = Arc::new(LoadedModel {
            model,
            bytes: Bytes::from(bytes),
        });
        let mut models = lock(&self.models);
        models.insert(cycle, loaded.clone());
        // Keep the two newest: the live cycle's and the one being produced.
        while models.len() > 2 {
            let oldest = *models.keys().next().expect("non-empty");
            models.remove(&oldest);
        }
        Ok(loaded)
    }

    /// Global weights of `cycle` as safetensors. The live cycle's come from the model cache
    /// (shared bytes, no copy); an older or newer cycle's are read from the store as they are,
    /// neither decoded nor cached, so asking for old cycles cannot evict the live model.
    pub fn weights(&self, cycle: u64) -> Result<Bytes, ServiceError> {
        let live = lock(&self.state).as_ref().map(CycleState::cycle);
        if live == Some(cycle) {
            return Ok(self.model(cycle)?.bytes.clone());
        }
        self.store
            .model(cycle)?
            .map(Bytes::from)
            .ok_or(ServiceError::UnknownCycle(cycle))
    }

    /// A registered miner's task for the live cycle (after registration closed).
    pub fn task(
        &self,
        now_ms: u64,
        cycle: u64,
        miner: &PublicKey,
    ) -> Result<TaskInfo, ServiceError> {
        let state = self.live(now_ms, cycle)?;
        let registration = state
            .registrations
            .get(miner)
            .ok_or_else(|| state.unregistered(miner))?;
        let a = state.announcement();
        let assignment = registration
            .assignment
            .as_ref()
            .ok_or(Refusal::TrainingNotStarted {
                registration_deadline_ms: a.registration_deadline_ms,
            })?;
        let global = self.model(cycle)?;
        let segment = ExpectedSegment::of(&global.model, &assignment.segment)?;
        let shards = self.shards(&state)?;
        let ctx = self.context(&a.job)?;
        let work = &ctx.work;
        let shard_samples = learning::shard_assignment(
            a.shard_seed(),
            work.split.train.len(),
            assignment.shard_count as usize,
        )?[assignment.shard_index as usize]
            .len() as u64;
        drop(shards);
        Ok(TaskInfo {
            cycle,
            miner: *miner,
            model: work.setup.model.clone(),
            model_hash: a.model_hash,
            segment_params: segment
                .tensors
                .iter()
                .map(|(_, s)| s.iter().product::<usize>() as u64)
                .sum(),
            update_bytes_max: segment.limit_bytes(),
            segment,
            shard_index: assignment.shard_index,
            shard_count: assignment.shard_count,
            shard_samples,
            feature_count: work.split.train.feature_count(),
            class_count: work.class_count,
            submission_deadline_ms: a.submission_deadline_ms,
            hints: work.setup.hints,
            replay: self.replay_task(&state, miner)?,
        })
    }

    /// A registered miner's shard of the live cycle, as safetensors.
    pub fn shard(&self, now_ms: u64, cycle: u64, miner: &PublicKey) -> Result<Bytes, ServiceError> {
        let state = self.live(now_ms, cycle)?;
        let registration = state
            .registrations
            .get(miner)
            .ok_or_else(|| state.unregistered(miner))?;
        let assignment = registration
            .assignment
            .as_ref()
            .ok_or(Refusal::TrainingNotStarted {
                registration_deadline_ms: state.announcement().registration_deadline_ms,
            })?;
        let shards = self.shards(&state)?;
        Ok(shards[assignment.shard_index as usize].clone())
    }

    /// The live state of `cycle`, advanced to `now_ms` (so a task is available as soon as the
    /// registration deadline passed, even between driver ticks).
    pub(crate) fn live(&self, now_ms: u64, cycle: u64) -> Result<CycleState, ServiceError> {
        let mut guard = lock(&self.state);
        let state = guard.clone().ok_or(ServiceError::NotOpen)?;
        if state.cycle() != cycle {
            return Err(Refusal::WrongCycle {
                current: state.cycle(),
                found: cycle,
            }
            .into());
        }
        if state.phase == Phase::Registration
            && now_ms >= state.announcement().registration_deadline_ms
        {
            let ctx = self.context(&state.announcement().job)?;
            let (next, _) = tick(state, &ctx.env, now_ms, [0; 32], Event::Tick);
            self.store.put_current(&next)?;
            *guard = Some(next.clone());
            return Ok(next);
        }
        Ok(state)
    }

    pub(crate) fn shards(&self, state: &CycleState) -> Result<Arc<Vec<Bytes>>, ServiceError> {
        let mut cache = lock(&self.shards);
        if let Some((cycle, shards)) = cache.as_ref() {
            if *cycle == state.cycle() {
                return Ok(shards.clone());
            }
        }
        let count = state.registrations.len() as u32;
        let shards = self
            .context(&state.announcement().job)?
            .work
            .shards(state.announcement().shard_seed(), count)?
            .iter()
            .map(|s| s.to_safetensors().map(Bytes::from))
            .collect::<Result<Vec<_>, _>>()?;
        let shards = Arc::new(shards);
        *cache = Some((state.cycle(), shards.clone()));
        Ok(shards)
    }

    pub(crate) fn cycle_state(&self, cycle: u64) -> Result<CycleState, ServiceError> {
        if let Some(state) = self.state().filter(|s| s.cycle() == cycle) {
            return Ok(state);
        }
        self.store
            .cycle(cycle)?
            .ok_or(ServiceError::UnknownCycle(cycle))
    }

    pub fn record(&self, cycle: u64) -> Result<CycleRecord, ServiceError> {
        self.with_slashes(self.cycle_state(cycle)?.record())
    }

    /// `record` with the slashes sent over its cycle's fraud (kept apart from the state).
    fn with_slashes(&self, mut record: CycleRecord) -> Result<CycleRecord, ServiceError> {
        record.slashes = self.store.slashes(record.announcement.announcement.cycle)?;
        Ok(record)
    }

    /// The held-out batch `cycle` was scored on (safetensors), once its record reveals it.
    pub fn held_out_batch(&self, cycle: u64) -> Result<Bytes, ServiceError> {
        let state = self.cycle_state(cycle)?;
        let Some(lottery) = state.lottery.as_ref() else {
            return Err(ServiceError::NotRevealed(
                "the held-out batch is revealed at evaluation",
            ));
        };
        let ctx = self.context(&state.announcement().job)?;
        let batch = ctx.work.held_out.batch(cycle)?;
        if batch.reveal != lottery.held_out {
            // The pool or the secret changed under a stored record: never serve other bytes.
            return Err(ServiceError::Corrupt(format!(
                "held-out batch of cycle {cycle} no longer matches its record"
            )));
        }
        Ok(Bytes::from(batch.bytes))
    }

    /// A receipted update of `cycle` by its hash, once the record reveals the submissions (so
    /// no miner can copy another's update before the deadline).
    pub fn published_update(&self, cycle: u64, hash: &Hash256) -> Result<Bytes, ServiceError> {
        let state = self.cycle_state(cycle)?;
        if state.lottery.is_none() {
            return Err(ServiceError::NotRevealed(
                "updates are published with the record",
            ));
        }
        let miner = state
            .submissions
            .iter()
            .find(|(_, s)| s.update_hash == *hash)
            .map(|(miner, _)| *miner)
            .ok_or(ServiceError::UnknownUpdate(*hash))?;
        let bytes = self
            .store
            .update(cycle, &miner)?
            .ok_or(ServiceError::UnknownUpdate(*hash))?;
        Ok(Bytes::from(bytes))
    }

    /// Records of cycles `from..`, at most `limit`, the live one included at the end.
    pub fn records(&self, from: u64, limit: u64) -> Result<Vec<CycleRecord>, ServiceError> {
        // One snapshot: a closing cycle moves from the live state to the store under this lock,
        // so reading both under it never misses the cycle in between (an auditor would see a
        // block whose cycle has no record).
        let live = lock(&self.state);
        let mut out: Vec<CycleRecord> = self
            .store
            .closed_cycles(from, limit as usize, CYCLE_RECORDS_PAGE_BYTES_MAX)?
            .iter()
            .map(CycleState::record)
            .collect();
        if let Some(live) = live.as_ref() {
            if live.cycle() >= from
                && (out.len() as u64) < limit
                && !out
                    .iter()
                    .any(|r| r.announcement.announcement.cycle == live.cycle())
            {
                out.push(live.record());
            }
        }
        drop(live);
        out.into_iter().map(|r| self.with_slashes(r)).collect()
    }

    pub fn certificates(
        &self,
        cycle: u64,
        miner: &PublicKey,
    ) -> Result<MinerCertificates, ServiceError> {
        let state = self.cycle_state(cycle)?;
        let contribution = state.contribution_certificates.get(miner).cloned();
        let block_signing: Vec<CertificateHex> = state
            .block_certificates
            .iter()
            .filter(|c| c.0.body.miner == *miner)
            .cloned()
            .collect();
        if contribution.is_none() && block_signing.is_empty() {
            return Err(ServiceError::NoCertificate);
        }
        Ok(MinerCertificates {
            cycle,
            miner: *miner,
            contribution,
            block_signing,
        })
    }

    pub fn status(&self, now_ms: u64) -> Result<CycleStatus, ServiceError> {
        let state = self.state().ok_or(ServiceError::NotOpen)?;
        Ok(CycleStatus {
            phase: state.phase.name(),
            attempt: state.attempt(),
            registered: state.registrations.len() as u64,
            submitted: state.submissions.len() as u64,
            announcement: state.announcement,
            now_ms,
        })
    }

    pub fn health(&self) -> Result<Health, ServiceError> {
        let state = self.state().ok_or(ServiceError::NotOpen)?;
        Ok(Health {
            status: "ok".into(),
            cycle: state.cycle(),
            phase: state.phase.name(),
        })
    }

    /// The newest global model as safetensors, with its card (cached; see [`LatestModel`]).
    pub fn latest_model(&self) -> Result<(Bytes, ModelCard), ServiceError> {
        if let Some(latest) = lock(&self.latest).clone() {
            return Ok((latest.bytes.clone(), latest.card.clone()));
        }
        let latest = self.load_latest()?.1;
        Ok((latest.bytes.clone(), latest.card.clone()))
    }

    /// Reads and decodes the newest model from the store and caches it for serving.
    fn load_latest(&self) -> Result<(Model, Arc<LatestModel>), ServiceError> {
        let (cycle, bytes) = self
            .store
            .latest_model()?
            .ok_or(ServiceError::MissingModel(0))?;
        let ctx = self.cycle_context(cycle)?;
        let model = model_from_safetensors(ctx.work.setup.model.clone(), &bytes)?;
        let card = self.card(cycle, &model, &ctx)?;
        let latest = Arc::new(LatestModel {
            bytes: Bytes::from(bytes),
            card,
        });
        *lock(&self.latest) = Some(latest.clone());
        Ok((model, latest))
    }

    /// The card of the model `cycle` trains, with the earlier models of its job as lineage.
    fn card(&self, cycle: u64, model: &Model, ctx: &JobContext) -> Result<ModelCard, ServiceError> {
        let job_of = |info: &ModelInfo| {
            if info.job == Hash256::ZERO {
                self.own_job
            } else {
                info.job
            }
        };
        let infos: Vec<(u64, ModelInfo)> = self
            .store
            .model_infos()?
            .into_iter()
            .filter(|(_, info)| job_of(info) == ctx.id)
            .collect();
        let accuracy = infos
            .iter()
            .find(|(c, _)| *c == cycle)
            .map(|(_, i)| i.quality.test_accuracy)
            .unwrap_or(0.0);
        let mut lineage: Vec<String> = Vec::new();
        for (_, info) in infos.iter().filter(|(c, _)| *c < cycle) {
            let hash = info.model_hash.to_string();
            if lineage.last() != Some(&hash) {
                lineage.push(hash);
            }
        }
        let mut card = ModelCard::new(
            model,
            &ctx.work.setup.dataset,
            &ctx.work.normalisation,
            accuracy,
            lineage,
        );
        if ctx.id != self.own_job {
            // A posted job's data is named as its terms name it, not by the coordinator's paths.
            if let Ok(Some(job)) = self.store.job(&ctx.id) {
                card.dataset = job.status.terms.dataset;
            }
        }
        Ok(card)
    }

    /// Refreshes the served newest model and writes it to
    /// `<data_dir>/model/global.{safetensors,json}` (at start and after each merge).
    fn export_latest(&self) -> Result<(), ServiceError> {
        let (model, latest) = self.load_latest()?;
        let card = &latest.card;
        let dir = self.data_dir.join(EXPORT_DIR);
        std::fs::create_dir_all(&dir).map_err(|source| ServiceError::Io {
            path: dir.clone(),
            source,
        })?;
        write_export(&dir, EXPORT_STEM, &model, card)?;
        Ok(())
    }
}

/// A cycle's outcome for the log, with keys in compressed hex as everywhere else.
fn outcome_text(outcome: &crate::api::CycleOutcome) -> String {
    use crate::api::CycleOutcome;
    match outcome {
        CycleOutcome::Produced {
            height,
            hash,
            attempt,
            miner,
        } => format!("block {height} {hash} by {miner} (attempt {attempt})"),
        CycleOutcome::NoEligibleEntries => "no block: no submission scored above zero".into(),
        CycleOutcome::WinnersSilent { attempts } => {
            format!("no block: all {attempts} drawn winners stayed silent")
        }
        CycleOutcome::Superseded { height, hash } => {
            format!("no block: another block {hash} took height {height}")
        }
    }
}
