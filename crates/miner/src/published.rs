//! Where the audit reads a coordinator's published data: the live HTTP API, or an archive of
//! it on disk. The archive is what makes the audit independent of the coordinator's uptime:
//! anyone can save what was published, the coordinator can go away, and the audit still
//! recomputes every score and merge from the saved bytes alone.
//!
//! Archive layout (a directory; every file is exactly the bytes or JSON the API served):
//! ```text
//! records.json                               every cycle record, oldest first (JSON array)
//! model-card.json                            GET /v1/model/card
//! cycles/<c>/weights.safetensors             GET /v1/cycles/<c>/weights      (evaluated cycles)
//! cycles/<c>/held-out.safetensors            GET /v1/cycles/<c>/held-out     (evaluated cycles)
//! cycles/<c>/updates/<update hash>.safetensors  GET /v1/cycles/<c>/updates/<hash>
//! cycles/<c>/evidence/<miner>.json           GET /v1/cycles/<c>/evidence/<miner>  (failed checks)
//! cycles/<c>/evidence/<miner>.shard          GET /v1/cycles/<c>/evidence/<miner>/shard
//! cycles/<c>/claims/<miner>-<interval>.json  GET /v1/cycles/<c>/claims/<miner>/<interval>/evidence
//!                                            (claims judged wrong or caught_cheat; the miner's
//!                                            shard is saved under evidence/ as above)
//! jobs/<id>.json                             GET /v1/jobs/<id>  (every job a record names)
//! ```
//! Nothing in an archive is trusted: the audit checks every byte against the hashes the
//! records and the chain commit to, exactly as it checks the live API's answers.

use crate::audit::{fetch_records, AuditError};
use bitcoin::secp256k1::PublicKey;
use coordinator::api::CycleRecord;
use coordinator::client::RESPONSE_BYTES_MAX;
use coordinator::CoordinatorClient;
use learning::ModelCard;
use primitives::Hash256;
use std::path::{Path, PathBuf};

/// A coordinator's published data, as the audit reads it.
// The audit runs these futures on the caller's task (never spawned), so they need no `Send`.
#[allow(async_fn_in_trait)]
pub trait PublishedSource {
    /// Every cycle record, oldest first.
    async fn records(&self) -> Result<Vec<CycleRecord>, AuditError>;
    async fn model_card(&self) -> Result<ModelCard, AuditError>;
    /// The model `cycle` trained.
    async fn weights(&self, cycle: u64) -> Result<Vec<u8>, AuditError>;
    /// `cycle`'s revealed held-out batch.
    async fn held_out(&self, cycle: u64) -> Result<Vec<u8>, AuditError>;
    /// A receipted update of `cycle`, by its hash.
    async fn update(&self, cycle: u64, update_hash: &Hash256) -> Result<Vec<u8>, AuditError>;
    async fn evidence(
        &self,
        cycle: u64,
        miner: &PublicKey,
    ) -> Result<proof::FraudEvidence, AuditError>;
    async fn evidence_shard(&self, cycle: u64, miner: &PublicKey) -> Result<Vec<u8>, AuditError>;
    /// What a verifier's claim judged `wrong` or `caught_cheat` was judged on.
    async fn claim_evidence(
        &self,
        cycle: u64,
        miner: &PublicKey,
        interval: u64,
    ) -> Result<coordinator::api::ClaimEvidence, AuditError>;
    /// `GET /v1/jobs/{id}`: the job a cycle's announcement names.
    async fn job(&self, id: &Hash256) -> Result<coordinator::api::JobStatus, AuditError>;
}

/// The verdicts of `record` that slashed or paid someone: every claim judged `wrong` or
/// `caught_cheat`, whose evidence is published.
pub fn judged_claims(
    record: &CycleRecord,
) -> impl Iterator<Item = &coordinator::api::ClaimVerdict> {
    use coordinator::api::ClaimOutcome;
    record
        .verification
        .verdicts
        .iter()
        .filter(|v| matches!(v.outcome, ClaimOutcome::Wrong | ClaimOutcome::CaughtCheat))
}

impl PublishedSource for CoordinatorClient {
    async fn records(&self) -> Result<Vec<CycleRecord>, AuditError> {
        fetch_records(self).await
    }
    async fn model_card(&self) -> Result<ModelCard, AuditError> {
        Ok(CoordinatorClient::model_card(self).await?)
    }
    async fn weights(&self, cycle: u64) -> Result<Vec<u8>, AuditError> {
        Ok(CoordinatorClient::weights(self, cycle).await?)
    }
    async fn held_out(&self, cycle: u64) -> Result<Vec<u8>, AuditError> {
        Ok(CoordinatorClient::held_out(self, cycle).await?)
    }
    async fn update(&self, cycle: u64, update_hash: &Hash256) -> Result<Vec<u8>, AuditError> {
        Ok(self.published_update(cycle, update_hash).await?)
    }
    async fn evidence(
        &self,
        cycle: u64,
        miner: &PublicKey,
    ) -> Result<proof::FraudEvidence, AuditError> {
        Ok(CoordinatorClient::evidence(self, cycle, miner).await?)
    }
    async fn evidence_shard(&self, cycle: u64, miner: &PublicKey) -> Result<Vec<u8>, AuditError> {
        Ok(CoordinatorClient::evidence_shard(self, cycle, miner).await?)
    }
    async fn claim_evidence(
        &self,
        cycle: u64,
        miner: &PublicKey,
        interval: u64,
    ) -> Result<coordinator::api::ClaimEvidence, AuditError> {
        Ok(CoordinatorClient::claim_evidence(self, cycle, miner, interval).await?)
    }
    async fn job(&self, id: &Hash256) -> Result<coordinator::api::JobStatus, AuditError> {
        Ok(CoordinatorClient::job(self, id).await?)
    }
}

/// A directory of saved published data (layout in the module docs).
#[derive(Debug, Clone)]
pub struct Archive {
    dir: PathBuf,
}

/// What [`Archive::save`] wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ArchiveStats {
    pub records: usize,
    /// Evaluated cycles whose model, batch and updates were saved.
    pub cycles: usize,
    pub updates: usize,
    pub evidence: usize,
    /// Everything written, in bytes.
    pub bytes: u64,
}

fn io_error(path: &Path, error: impl std::fmt::Display) -> AuditError {
    AuditError::Archive {
        path: path.display().to_string(),
        why: error.to_string(),
    }
}

impl Archive {
    /// Opens an archive written by [`Archive::save`]; it must at least hold its records.
    pub fn open(dir: &Path) -> Result<Self, AuditError> {
        let records = dir.join("records.json");
        if !records.is_file() {
            return Err(io_error(
                &records,
                "not an archive of published data (no records.json; save one with `trainchain audit --save-archive DIR`)",
            ));
        }
        Ok(Archive {
            dir: dir.to_path_buf(),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn cycle_dir(&self, cycle: u64) -> PathBuf {
        self.dir.join("cycles").join(cycle.to_string())
    }

    /// A file of the archive, refused above what the live API would ever serve
    /// ([`RESPONSE_BYTES_MAX`]): an archive from elsewhere cannot choose the audit's memory.
    fn read(&self, path: PathBuf) -> Result<Vec<u8>, AuditError> {
        use std::io::Read;
        let file = std::fs::File::open(&path).map_err(|e| io_error(&path, e))?;
        let mut bytes = Vec::new();
        file.take(RESPONSE_BYTES_MAX as u64 + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| io_error(&path, e))?;
        if bytes.len() > RESPONSE_BYTES_MAX {
            return Err(io_error(
                &path,
                format!("over {RESPONSE_BYTES_MAX} bytes, more than the coordinator serves"),
            ));
        }
        Ok(bytes)
    }

    fn read_json<T: serde::de::DeserializeOwned>(&self, path: PathBuf) -> Result<T, AuditError> {
        let bytes = self.read(path.clone())?;
        serde_json::from_slice(&bytes).map_err(|e| io_error(&path, e))
    }

    /// Saves everything the audit reads from `source` into `dir` (created if missing) and
    /// returns the archive. Cycles not yet evaluated keep only their record: their data is
    /// not published yet.
    pub async fn save(
        source: &impl PublishedSource,
        dir: &Path,
    ) -> Result<(Archive, ArchiveStats), AuditError> {
        let archive = Archive {
            dir: dir.to_path_buf(),
        };
        let mut written = 0u64;
        let mut stats = ArchiveStats::default();
        let mut write = |path: PathBuf, bytes: &[u8]| -> Result<(), AuditError> {
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).map_err(|e| io_error(parent, e))?;
            }
            std::fs::write(&path, bytes).map_err(|e| io_error(&path, e))?;
            written += bytes.len() as u64;
            Ok(())
        };
        let records = source.records().await?;
        let card = source.model_card().await?;
        let path = dir.join("model-card.json");
        write(path.clone(), &json(&path, &card)?)?;
        for record in &records {
            if record.next_model_hash.is_none() {
                continue;
            }
            let cycle = record.announcement.announcement.cycle;
            let cycle_dir = archive.cycle_dir(cycle);
            write(
                cycle_dir.join("weights.safetensors"),
                &source.weights(cycle).await?,
            )?;
            write(
                cycle_dir.join("held-out.safetensors"),
                &source.held_out(cycle).await?,
            )?;
            for s in &record.submissions {
                let bytes = source.update(cycle, &s.update_hash).await?;
                write(
                    cycle_dir
                        .join("updates")
                        .join(format!("{}.safetensors", s.update_hash)),
                    &bytes,
                )?;
                stats.updates += 1;
                if matches!(s.verification, proof::Verdict::Failed { .. }) {
                    let evidence = source.evidence(cycle, &s.miner).await?;
                    let evidence_dir = cycle_dir.join("evidence");
                    let path = evidence_dir.join(format!("{}.json", s.miner));
                    write(path.clone(), &json(&path, &evidence)?)?;
                    write(
                        evidence_dir.join(format!("{}.shard", s.miner)),
                        &source.evidence_shard(cycle, &s.miner).await?,
                    )?;
                    stats.evidence += 1;
                }
            }
            for verdict in judged_claims(record) {
                let evidence = source
                    .claim_evidence(cycle, &verdict.miner, verdict.interval)
                    .await?;
                let path = cycle_dir
                    .join("claims")
                    .join(format!("{}-{}.json", verdict.miner, verdict.interval));
                write(path.clone(), &json(&path, &evidence)?)?;
                write(
                    cycle_dir
                        .join("evidence")
                        .join(format!("{}.shard", verdict.miner)),
                    &source.evidence_shard(cycle, &verdict.miner).await?,
                )?;
                stats.evidence += 1;
            }
            stats.cycles += 1;
        }
        let jobs: std::collections::BTreeSet<Hash256> = records
            .iter()
            .map(|r| r.announcement.announcement.job)
            .filter(|j| *j != Hash256::ZERO)
            .collect();
        for id in jobs {
            let path = dir.join("jobs").join(format!("{id}.json"));
            write(path.clone(), &json(&path, &source.job(&id).await?)?)?;
        }
        // Records last: an archive with records.json is complete.
        let path = dir.join("records.json");
        write(path.clone(), &json(&path, &records)?)?;
        stats.records = records.len();
        stats.bytes = written;
        Ok((archive, stats))
    }
}

/// Archived JSON: the API's own serde types, pretty-printed for people reading the archive.
fn json(path: &Path, value: &impl serde::Serialize) -> Result<Vec<u8>, AuditError> {
    serde_json::to_vec_pretty(value).map_err(|e| io_error(path, e))
}

impl PublishedSource for Archive {
    async fn records(&self) -> Result<Vec<CycleRecord>, AuditError> {
        self.read_json(self.dir.join("records.json"))
    }
    async fn model_card(&self) -> Result<ModelCard, AuditError> {
        self.read_json(self.dir.join("model-card.json"))
    }
    async fn weights(&self, cycle: u64) -> Result<Vec<u8>, AuditError> {
        self.read(self.cycle_dir(cycle).join("weights.safetensors"))
    }
    async fn held_out(&self, cycle: u64) -> Result<Vec<u8>, AuditError> {
        self.read(self.cycle_dir(cycle).join("held-out.safetensors"))
    }
    async fn update(&self, cycle: u64, update_hash: &Hash256) -> Result<Vec<u8>, AuditError> {
        self.read(
            self.cycle_dir(cycle)
                .join("updates")
                .join(format!("{update_hash}.safetensors")),
        )
    }
    async fn evidence(
        &self,
        cycle: u64,
        miner: &PublicKey,
    ) -> Result<proof::FraudEvidence, AuditError> {
        self.read_json(
            self.cycle_dir(cycle)
                .join("evidence")
                .join(format!("{miner}.json")),
        )
    }
    async fn evidence_shard(&self, cycle: u64, miner: &PublicKey) -> Result<Vec<u8>, AuditError> {
        self.read(
            self.cycle_dir(cycle)
                .join("evidence")
                .join(format!("{miner}.shard")),
        )
    }
    async fn claim_evidence(
        &self,
        cycle: u64,
        miner: &PublicKey,
        interval: u64,
    ) -> Result<coordinator::api::ClaimEvidence, AuditError> {
        self.read_json(
            self.cycle_dir(cycle)
                .join("claims")
                .join(format!("{miner}-{interval}.json")),
        )
    }
    async fn job(&self, id: &Hash256) -> Result<coordinator::api::JobStatus, AuditError> {
        self.read_json(self.dir.join("jobs").join(format!("{id}.json")))
    }
}
