//! `trainchain audit`: an independent check of a chain and its coordinator.
//!
//! Walks the node's best chain from genesis, checks every block with the consensus rules
//! (certificate signed by a coordinator key of the chain parameters, bound to its height and
//! parent, producer signature, Merkle root, coinbase), fetches every published cycle record,
//! checks the announcement signature, that the revealed secret opens the commitment, and
//! recomputes each score, the contributions root, the seed and the complete draw order with
//! the shared [`consensus::lottery`] code. Each block's certificate must name the miner the
//! draw picked for its attempt. Any equivocation the node has seen fails the audit.
//!
//! Proof of training: a score counts only if the submission's replay check passed; the
//! digest of the cycle's commitments (which fixes every challenge) is recomputed; and every
//! piece of fraud evidence is rechecked by replaying it on the cycle's start model and the
//! shard it names, so a coordinator cannot fail an honest miner without being caught.
//!
//! The pure checks ([`check_record`], [`check_chain_block`]) take fetched data; [`audit`]
//! fetches it.

use crate::error::MinerError;
use crate::node_rpc::NodeRpc;
use crate::published::PublishedSource;
use bitcoin::secp256k1::{PublicKey, Secp256k1};
use bitcoin::BlockHash;
use consensus::lottery::{self, Contribution, Entry};
use coordinator::api::{CycleOutcome, CycleRecord, Receipt};
use coordinator::client::ClientError;
use coordinator::CoordinatorClient;
use primitives::{Block, ChainParams, Hash256};
use serde::Serialize;
use std::collections::BTreeMap;

/// Records fetched per request (the server caps pages too).
pub const RECORDS_PAGE: u64 = 100;

/// The first thing found wrong. One variant per check.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("node: {0}")]
    Node(#[from] MinerError),
    /// A measurement, the merge, the held-out reveal or the record chain does not recompute.
    #[error("cycle {cycle}: {why}")]
    Remeasure { cycle: u64, why: String },
    /// A job's terms, lineage or stopping rule does not hold.
    #[error("cycle {cycle} (job {job}): {why}")]
    Job {
        cycle: u64,
        job: Hash256,
        why: String,
    },
    #[error("coordinator: {0}")]
    Coordinator(#[from] ClientError),
    #[error("the node's genesis {found} is not the chain parameters' genesis {expected}")]
    GenesisMismatch {
        expected: BlockHash,
        found: BlockHash,
    },
    #[error("block at height {height}: the node named {named} but the block hashes to {actual}")]
    BlockHashMismatch {
        height: u32,
        named: BlockHash,
        actual: BlockHash,
    },
    #[error("block at height {height} does not extend the block below it ({parent})")]
    BrokenLink { height: u32, parent: BlockHash },
    #[error("block at height {height} is invalid: {error}")]
    InvalidBlock {
        height: u32,
        error: consensus::BlockError,
    },
    #[error("block at height {height} carries a certificate for height {certificate_height}")]
    CertificateHeight {
        height: u32,
        certificate_height: u32,
    },
    #[error("cycle {cycle}: the announcement's signature does not verify")]
    AnnouncementSignature { cycle: u64 },
    #[error(
        "cycle {cycle}: announced by {coordinator}, which is not a coordinator key of this chain"
    )]
    UnknownCoordinator { cycle: u64, coordinator: PublicKey },
    #[error("cycle {cycle}: announced for chain {found}, this chain is {expected}")]
    WrongChain {
        cycle: u64,
        expected: u32,
        found: u32,
    },
    #[error("cycle {cycle}: the revealed secret does not open the commitment")]
    SecretDoesNotOpen { cycle: u64 },
    #[error("cycle {cycle}: the lottery was published without a revealed secret")]
    MissingSecret { cycle: u64 },
    #[error(
        "cycle {cycle}: miner {miner} is listed with score {listed}, its numbers give {recomputed}"
    )]
    ScoreMismatch {
        cycle: u64,
        miner: PublicKey,
        listed: u64,
        recomputed: u64,
    },
    #[error("cycle {cycle}: contributions root {listed:?} published, recomputed {recomputed}")]
    RootMismatch {
        cycle: u64,
        listed: Option<Hash256>,
        recomputed: Hash256,
    },
    #[error("cycle {cycle}: lottery seed {listed:?} published, recomputed {recomputed}")]
    SeedMismatch {
        cycle: u64,
        listed: Option<Hash256>,
        recomputed: Hash256,
    },
    #[error("cycle {cycle}: published draw order differs from the recomputed one")]
    DrawMismatch { cycle: u64 },
    #[error(
        "cycle {cycle}: the admitted registrations differ from the draw by bond value \
         recomputed from the revealed secret (the coordinator steered admission)"
    )]
    AdmissionMismatch { cycle: u64 },
    #[error("cycle {cycle}: miner {miner} has a submission but was not admitted by the draw")]
    SubmissionNotAdmitted { cycle: u64, miner: PublicKey },
    #[error(
        "cycle {cycle}: the admission draw weighed {miner}'s bond {bond} as {listed} sat, but \
         the chain has {found}"
    )]
    AdmissionBondMismatch {
        cycle: u64,
        miner: PublicKey,
        bond: String,
        listed: u64,
        found: String,
    },
    #[error("cycle {cycle}: block-signing certificate of attempt {attempt} names {found}, the draw picked {expected:?}")]
    RecordCertificateWinner {
        cycle: u64,
        attempt: u32,
        expected: Option<PublicKey>,
        found: PublicKey,
    },
    #[error("block at height {height} is from cycle {cycle}, whose record the coordinator does not publish")]
    MissingRecord { height: u32, cycle: u64 },
    #[error("block at height {height} (cycle {cycle}) has no published lottery")]
    NoLottery { height: u32, cycle: u64 },
    #[error("block at height {height}: certificate {field} differs from cycle {cycle}'s record")]
    CertificateDiffers {
        height: u32,
        cycle: u64,
        field: &'static str,
    },
    #[error("block at height {height}: attempt {attempt} of cycle {cycle} drew {expected:?}, the block's certificate names {found}")]
    WrongWinner {
        height: u32,
        cycle: u64,
        attempt: u32,
        expected: Option<PublicKey>,
        found: PublicKey,
    },
    #[error("cycle {cycle} says it produced {hash} at height {height}, the best chain has {found:?} there")]
    OutcomeNotInChain {
        cycle: u64,
        height: u32,
        hash: BlockHash,
        found: Option<BlockHash>,
    },
    #[error("cycle {cycle}: commitments digest {listed:?} published, recomputed {recomputed}")]
    CommitmentsDigestMismatch {
        cycle: u64,
        listed: Option<Hash256>,
        recomputed: Hash256,
    },
    #[error("cycle {cycle}: miner {miner} failed its check but the evidence does not hold: {why}")]
    EvidenceDoesNotHold {
        cycle: u64,
        miner: PublicKey,
        why: String,
    },
    #[error("cycle {cycle}: verifier {verifier}'s claim on miner {miner}'s interval {interval} does not hold: {why}")]
    ClaimDoesNotHold {
        cycle: u64,
        verifier: PublicKey,
        miner: PublicKey,
        interval: u64,
        why: String,
    },
    #[error("cycle {cycle}: verifier assignments: {why}")]
    VerificationDraw { cycle: u64, why: String },
    #[error("archive {path}: {why}")]
    Archive { path: String, why: String },
    #[error("receipt for miner {miner}'s update {update_hash} in cycle {cycle} is not signed by a coordinator key of this chain")]
    ReceiptNotSigned {
        cycle: u64,
        miner: PublicKey,
        update_hash: Hash256,
    },
    #[error("cycle {cycle}: the coordinator receipted miner {miner}'s update {update_hash}, but the record omits it (a dropped submission)")]
    ReceiptOmitted {
        cycle: u64,
        miner: PublicKey,
        update_hash: Hash256,
    },
    #[error("cycle {cycle}: the record lists miner {miner}'s update {update_hash} with another submission time, step count or transcript root than the coordinator's receipt signed (a misrecorded submission)")]
    ReceiptMisrecorded {
        cycle: u64,
        miner: PublicKey,
        update_hash: Hash256,
    },
    #[error("the node holds {count} equivocation(s); first at height {height}, attempt {attempt}")]
    Equivocation {
        count: usize,
        height: u64,
        attempt: u64,
    },
}

/// What a record's lottery recomputes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lottery {
    pub contributions_root: Hash256,
    pub seed: Hash256,
    pub draw_order: Vec<PublicKey>,
    pub entries: Vec<Entry>,
}

/// What an audit covered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditReport {
    pub height: u32,
    pub best_hash: String,
    pub blocks_checked: u32,
    pub cycles_checked: usize,
    pub lotteries_recomputed: usize,
    /// Cycles whose every measurement, score and merge was recomputed bit for bit from the
    /// published start model, held-out batch and updates.
    pub cycles_remeasured: usize,
    /// Jobs the records name (their terms checked against their ids), and the changes from one
    /// job to the next whose lineage and stopping rule were checked.
    pub jobs_checked: usize,
    pub job_changes_checked: usize,
    /// Replay checks per cycle, and fraud evidence rechecked.
    pub verification: Vec<CycleVerification>,
    pub evidence_rechecked: usize,
    /// Verifier claims that slashed or paid someone, replayed from their evidence.
    pub claims_rechecked: usize,
    /// Miners' receipts found in their cycle's record.
    pub receipts_checked: usize,
    /// Bonds of admission draws read back from the chain (value and script as weighed), and
    /// those already spent (slashed or reclaimed), which the node no longer shows.
    pub admission_bonds_checked: usize,
    pub admission_bonds_spent: usize,
}

/// How a cycle's submissions fared in their replay checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct CycleVerification {
    pub cycle: u64,
    pub verified: usize,
    pub failed: usize,
    pub unanswered: usize,
}

impl CycleVerification {
    pub fn of(record: &CycleRecord) -> Self {
        let count = |name: &str| {
            record
                .submissions
                .iter()
                .filter(|s| s.verification.name() == name)
                .count()
        };
        CycleVerification {
            cycle: record.announcement.announcement.cycle,
            verified: count("verified"),
            failed: count("failed"),
            unanswered: count("unanswered"),
        }
    }
}

/// Checks one cycle record on its own and recomputes its lottery (if published).
pub fn check_record(
    record: &CycleRecord,
    params: &ChainParams,
) -> Result<Option<Lottery>, AuditError> {
    let secp = Secp256k1::verification_only();
    let a = &record.announcement.announcement;
    let cycle = a.cycle;
    if !params.coordinator_keys.contains(&a.coordinator) {
        return Err(AuditError::UnknownCoordinator {
            cycle,
            coordinator: a.coordinator,
        });
    }
    if a.chain_id != params.chain_id {
        return Err(AuditError::WrongChain {
            cycle,
            expected: params.chain_id,
            found: a.chain_id,
        });
    }
    if !record.announcement.verify(&secp) {
        return Err(AuditError::AnnouncementSignature { cycle });
    }
    if let Some(secret) = &record.revealed_secret {
        if !lottery::verify_reveal(&a.commitment, &secret.0) {
            return Err(AuditError::SecretDoesNotOpen { cycle });
        }
    }
    if let (Some(draw), Some(secret)) = (&record.admission, &record.revealed_secret) {
        check_admission(draw, &secret.0, record)?;
    }
    if record.lottery_seed.is_none() && record.contributions_root.is_none() {
        return Ok(None);
    }
    let secret = record
        .revealed_secret
        .ok_or(AuditError::MissingSecret { cycle })?;
    let commitments: Vec<(PublicKey, proof::Commitment)> = record
        .submissions
        .iter()
        .map(|s| (s.miner, s.commitment))
        .collect();
    let digest = proof::commitments_digest(&commitments);
    if record.commitments_digest != Some(digest) {
        return Err(AuditError::CommitmentsDigestMismatch {
            cycle,
            listed: record.commitments_digest,
            recomputed: digest,
        });
    }
    for s in &record.submissions {
        let recomputed =
            coordinator::api::verified_score(&s.verification, s.params_trained, s.loss_reduction);
        if recomputed != s.score {
            return Err(AuditError::ScoreMismatch {
                cycle,
                miner: s.miner,
                listed: s.score,
                recomputed,
            });
        }
    }
    let contributions: Vec<Contribution> = record
        .submissions
        .iter()
        .map(|s| s.contribution())
        .collect();
    let root = lottery::contributions_root(&contributions);
    if record.contributions_root != Some(root) {
        return Err(AuditError::RootMismatch {
            cycle,
            listed: record.contributions_root,
            recomputed: root,
        });
    }
    let seed = lottery::lottery_seed(&secret.0, &a.parent, &root);
    if record.lottery_seed != Some(seed) {
        return Err(AuditError::SeedMismatch {
            cycle,
            listed: record.lottery_seed,
            recomputed: seed,
        });
    }
    let entries: Vec<Entry> = record.submissions.iter().map(|s| s.entry()).collect();
    // The coordinator publishes the first DRAW_ATTEMPTS_MAX draws, the most attempts a cycle
    // can make.
    let draw_order =
        lottery::published_draw_order(&seed, &entries, coordinator::cycle::DRAW_ATTEMPTS_MAX);
    if draw_order != record.draw_order {
        return Err(AuditError::DrawMismatch { cycle });
    }
    for cert in &record.block_certificates {
        let body = &cert.0.body;
        let expected = draw_order.get(body.attempt as usize).copied();
        if expected != Some(body.miner) {
            return Err(AuditError::RecordCertificateWinner {
                cycle,
                attempt: body.attempt,
                expected,
                found: body.miner,
            });
        }
    }
    Ok(Some(Lottery {
        contributions_root: root,
        seed,
        draw_order,
        entries,
    }))
}

/// Recomputes a cycle's admission draw (`consensus::lottery::admitted`, seeded by the revealed
/// secret) and checks that only admitted miners have submissions.
fn check_admission(
    draw: &coordinator::api::AdmissionDraw,
    secret: &[u8; 32],
    record: &CycleRecord,
) -> Result<(), AuditError> {
    let cycle = record.announcement.announcement.cycle;
    let seed = lottery::admission_seed(secret, cycle);
    if lottery::admitted(&seed, &draw.entries(), draw.slots) != draw.admitted {
        return Err(AuditError::AdmissionMismatch { cycle });
    }
    if let Some(s) = record
        .submissions
        .iter()
        .find(|s| !draw.admitted.contains(&s.miner))
    {
        return Err(AuditError::SubmissionNotAdmitted {
            cycle,
            miner: s.miner,
        });
    }
    Ok(())
}

/// A checked record and its recomputed lottery.
pub struct CheckedCycle<'a> {
    pub record: &'a CycleRecord,
    pub lottery: Option<Lottery>,
}

/// Checks the block at `height` (named `hash` by the node) on top of `parent`: consensus
/// rules, and that its certificate is the one its cycle's lottery drew for its attempt.
pub fn check_chain_block(
    height: u32,
    hash: &BlockHash,
    parent: &BlockHash,
    block: &Block,
    params: &ChainParams,
    cycles: &BTreeMap<u64, CheckedCycle<'_>>,
) -> Result<(), AuditError> {
    let actual = block.block_hash();
    if actual != *hash {
        return Err(AuditError::BlockHashMismatch {
            height,
            named: *hash,
            actual,
        });
    }
    if block.header.prev_block_hash != *parent {
        return Err(AuditError::BrokenLink {
            height,
            parent: *parent,
        });
    }
    consensus::check_block(block, params)
        .map_err(|error| AuditError::InvalidBlock { height, error })?;
    let body = &block.header.certificate.body;
    if body.height != height {
        return Err(AuditError::CertificateHeight {
            height,
            certificate_height: body.height,
        });
    }
    let cycle = body.cycle;
    let checked = cycles
        .get(&cycle)
        .ok_or(AuditError::MissingRecord { height, cycle })?;
    let lottery = checked
        .lottery
        .as_ref()
        .ok_or(AuditError::NoLottery { height, cycle })?;
    let a = &checked.record.announcement.announcement;
    let differs = |field| {
        Err(AuditError::CertificateDiffers {
            height,
            cycle,
            field,
        })
    };
    if body.prev_block_hash != a.parent {
        return differs("parent");
    }
    if body.height != a.height {
        return differs("height");
    }
    if body.model_hash != a.model_hash {
        return differs("model hash");
    }
    if body.contributions_root != lottery.contributions_root {
        return differs("contributions root");
    }
    if body.lottery_seed != lottery.seed {
        return differs("lottery seed");
    }
    let expected = lottery.draw_order.get(body.attempt as usize).copied();
    if expected != Some(body.miner) {
        return Err(AuditError::WrongWinner {
            height,
            cycle,
            attempt: body.attempt,
            expected,
            found: body.miner,
        });
    }
    // The certificate's numbers are the miner's published ones.
    let entry = lottery.entries.iter().find(|e| e.miner == body.miner);
    if entry.map(|e| e.score) != Some(body.score) {
        return differs("score");
    }
    Ok(())
}

/// Every receipt the coordinator signed must be in its cycle's record: a coordinator that
/// accepted an update and then left it out of the record (so it was never scored) is caught by
/// the miner's receipt. Only evaluated cycles are due: before evaluation a record lists no
/// submissions yet, and a cycle never evaluated issues no certificate, so no block or reward
/// comes from it. Returns how many receipts were checked.
pub fn check_receipts(
    records: &[CycleRecord],
    receipts: &[Receipt],
    params: &ChainParams,
) -> Result<usize, AuditError> {
    let secp = Secp256k1::verification_only();
    let mut checked = 0;
    for receipt in receipts {
        let (cycle, miner, update_hash) = (receipt.cycle, receipt.miner, receipt.update_hash);
        if !params.coordinator_keys.contains(&receipt.coordinator) || !receipt.verify(&secp) {
            return Err(AuditError::ReceiptNotSigned {
                cycle,
                miner,
                update_hash,
            });
        }
        let Some(record) = records
            .iter()
            .find(|r| r.announcement.announcement.cycle == cycle && r.next_model_hash.is_some())
        else {
            continue;
        };
        let Some(entry) = record
            .submissions
            .iter()
            .find(|s| s.miner == miner && s.update_hash == update_hash)
        else {
            return Err(AuditError::ReceiptOmitted {
                cycle,
                miner,
                update_hash,
            });
        };
        // The time and steps the next budget is paced from are the ones the coordinator
        // signed when it took the update: a record that moves a submission earlier (to pace a
        // favoured miner up) or later (to pace one down) is caught here.
        if (
            entry.received_at_ms,
            entry.commitment.steps,
            entry.commitment.transcript_root,
        ) != (
            receipt.received_at_ms,
            receipt.steps,
            receipt.transcript_root,
        ) {
            return Err(AuditError::ReceiptMisrecorded {
                cycle,
                miner,
                update_hash,
            });
        }
        checked += 1;
    }
    Ok(checked)
}

/// Every published cycle record, oldest first.
pub async fn fetch_records(client: &CoordinatorClient) -> Result<Vec<CycleRecord>, AuditError> {
    let mut records: Vec<CycleRecord> = Vec::new();
    loop {
        let from = records
            .last()
            .map_or(0, |r| r.announcement.announcement.cycle + 1);
        let page = client.records(from, RECORDS_PAGE).await?;
        let fetched = page.len();
        records.extend(
            page.into_iter()
                .filter(|r| r.announcement.announcement.cycle >= from),
        );
        if fetched == 0
            || records
                .last()
                .map(|r| r.announcement.announcement.cycle + 1)
                == Some(from)
        {
            return Ok(records);
        }
    }
}

/// Runs the whole audit against a node and a coordinator's published data (its live API or an
/// [`crate::published::Archive`]), with the miners' `receipts` if any are given.
pub async fn audit(
    node: &NodeRpc,
    coordinator: &impl PublishedSource,
    params: &ChainParams,
    receipts: &[Receipt],
) -> Result<AuditReport, AuditError> {
    let genesis = node.block_hash(0).await?;
    if genesis != params.genesis_hash() {
        return Err(AuditError::GenesisMismatch {
            expected: params.genesis_hash(),
            found: genesis,
        });
    }
    let (tip, height) = node.tip().await?;
    let records = coordinator.records().await?;
    let receipts_checked = check_receipts(&records, receipts, params)?;
    let mut cycles = BTreeMap::new();
    let mut lotteries = 0;
    for record in &records {
        let lottery = check_record(record, params)?;
        lotteries += usize::from(lottery.is_some());
        cycles.insert(
            record.announcement.announcement.cycle,
            CheckedCycle { record, lottery },
        );
    }
    let mut best = vec![genesis];
    for h in 1..=height {
        let hash = node.block_hash(h).await?;
        let block = node.block(&hash).await?;
        check_chain_block(h, &hash, &best[(h - 1) as usize], &block, params, &cycles)?;
        best.push(hash);
    }
    for record in &records {
        if let Some(CycleOutcome::Produced {
            height: h, hash, ..
        }) = &record.outcome
        {
            let found = best.get(*h as usize).copied();
            if found != Some(*hash) {
                return Err(AuditError::OutcomeNotInChain {
                    cycle: record.announcement.announcement.cycle,
                    height: *h,
                    hash: *hash,
                    found,
                });
            }
        }
    }
    let (admission_bonds_checked, admission_bonds_spent) =
        check_admission_bonds(node, &records, params).await?;
    let card_spec = coordinator.model_card().await?.spec;
    let jobs = crate::jobs_audit::fetch_jobs(coordinator, &records).await?;
    let job_changes = crate::jobs_audit::check_jobs(&records, &jobs)?;
    let mut remeasured = 0;
    if let Some(first) = records
        .first()
        .filter(|r| r.announcement.announcement.cycle == 0)
    {
        // Cycle 0 has no record before it: every miner in it is new.
        crate::remeasure::check_paces(None, first)?;
    }
    for pair in records.windows(2) {
        crate::remeasure::check_record_chain(&pair[0], &pair[1])?;
    }
    for (index, record) in records.iter().enumerate() {
        let earlier = &records[..index];
        let spec = crate::jobs_audit::spec_of(record, &jobs, &card_spec);
        if crate::remeasure::fetch_and_remeasure(coordinator, spec, record, earlier).await? {
            remeasured += 1;
        }
    }
    let mut evidence_rechecked = 0;
    for record in &records {
        for s in &record.submissions {
            if let proof::Verdict::Failed { failure } = &s.verification {
                recheck_evidence(coordinator, record, s.miner, failure).await?;
                evidence_rechecked += 1;
            }
        }
    }
    let mut claims_rechecked = 0;
    for record in &records {
        let spec = crate::jobs_audit::spec_of(record, &jobs, &card_spec);
        claims_rechecked +=
            crate::claims_audit::audit_claims_with_spec(coordinator, record, Some(spec)).await?;
    }
    let equivocations = node.equivocations().await?;
    if let Some(first) = equivocations.first() {
        let number = |key: &str| first.get(key).and_then(|v| v.as_u64()).unwrap_or(0);
        return Err(AuditError::Equivocation {
            count: equivocations.len(),
            height: number("height"),
            attempt: number("attempt"),
        });
    }
    Ok(AuditReport {
        height,
        best_hash: tip.to_string(),
        blocks_checked: height,
        cycles_checked: records.len(),
        lotteries_recomputed: lotteries,
        cycles_remeasured: remeasured,
        jobs_checked: jobs.len(),
        job_changes_checked: job_changes,
        verification: records.iter().map(CycleVerification::of).collect(),
        evidence_rechecked,
        claims_rechecked,
        receipts_checked,
        admission_bonds_checked,
        admission_bonds_spent,
    })
}

/// Reads every bond an admission draw weighed back from the node (`gettxout`, mempool
/// included): one still unspent must have the value the draw used and the miner's bond script,
/// or the coordinator inflated a bond to steer the draw. Returns (checked, already spent).
async fn check_admission_bonds(
    node: &NodeRpc,
    records: &[CycleRecord],
    params: &ChainParams,
) -> Result<(usize, usize), AuditError> {
    let terms = consensus::bond::BondTerms::from_params(params);
    let (mut checked, mut spent) = (0, 0);
    for record in records {
        let Some(draw) = &record.admission else {
            continue;
        };
        for pending in &draw.pending {
            let outpoint = pending.bond.0;
            let coin = node
                .call(
                    "gettxout",
                    vec![outpoint.txid.to_string().into(), outpoint.vout.into()],
                )
                .await?;
            match admission_bond_matches(pending, &coin, &terms) {
                None => spent += 1,
                Some(Ok(())) => checked += 1,
                Some(Err(found)) => {
                    return Err(AuditError::AdmissionBondMismatch {
                        cycle: record.announcement.announcement.cycle,
                        miner: pending.miner,
                        bond: pending.bond.to_string(),
                        listed: pending.bond_sats,
                        found,
                    })
                }
            }
        }
    }
    Ok((checked, spent))
}

/// Whether `gettxout`'s answer `coin` is the bond `pending` says: `None` if the output is
/// spent (null), else its value and script checked, with what was found when they differ.
pub fn admission_bond_matches(
    pending: &coordinator::api::PendingBond,
    coin: &serde_json::Value,
    terms: &consensus::bond::BondTerms,
) -> Option<Result<(), String>> {
    if coin.is_null() {
        return None;
    }
    let value = coin["value"]
        .as_f64()
        .and_then(|btc| bitcoin::Amount::from_btc(btc).ok());
    let script = coin["scriptPubKey"]["hex"].as_str().unwrap_or_default();
    let expected = consensus::bond::bond_script_pubkey(terms, &pending.miner).to_hex_string();
    Some(match value {
        Some(v) if v.to_sat() == pending.bond_sats && script == expected => Ok(()),
        Some(v) if v.to_sat() != pending.bond_sats => Err(format!("{} sat", v.to_sat())),
        Some(_) => Err(format!("another script ({script})")),
        None => Err(format!("no value in {coin}")),
    })
}

/// Fetches the evidence of `miner`'s failed check in `record`'s cycle, the cycle's start model
/// and the shard, and replays it: the failure must be the one the record lists, under the
/// record's secret and commitments.
pub async fn recheck_evidence(
    coordinator: &impl PublishedSource,
    record: &CycleRecord,
    miner: PublicKey,
    listed: &proof::Failure,
) -> Result<(), AuditError> {
    let a = &record.announcement.announcement;
    let cycle = a.cycle;
    let fail = |why: String| AuditError::EvidenceDoesNotHold { cycle, miner, why };
    let evidence = coordinator.evidence(cycle, &miner).await?;
    let submission = record.submissions.iter().find(|s| s.miner == miner);
    if Some(evidence.commitment) != submission.map(|s| s.commitment)
        || Some(evidence.revealed_secret) != record.revealed_secret
        || Some(evidence.commitments_digest) != record.commitments_digest
        || evidence.task.cycle != cycle
        || evidence.task.miner != miner
        || evidence.task.model_hash != a.model_hash
        || submission.map(crate::claims_audit::paced_budget)
            != Some(crate::claims_audit::task_budget(&evidence.task))
    {
        return Err(fail(
            "it is not about this cycle's commitment, secret, model or step budget".into(),
        ));
    }
    if &evidence.failure != listed {
        return Err(fail(format!(
            "the record says {listed}, the evidence {}",
            evidence.failure
        )));
    }
    let weights = coordinator.weights(cycle).await?;
    let shard = coordinator.evidence_shard(cycle, &miner).await?;
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get().min(4));
    tokio::task::spawn_blocking(move || {
        let model = learning::model_from_safetensors(evidence.model.clone(), &weights)
            .map_err(|e| e.to_string())?;
        evidence
            .recheck(&model, &shard, threads)
            .map(|_| ())
            .map_err(|e| e.to_string())
    })
    .await
    .map_err(|e| fail(e.to_string()))?
    .map_err(fail)
}
