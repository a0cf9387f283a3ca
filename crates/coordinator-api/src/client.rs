//! A typed async client of the coordinator's HTTP API (used by miners, the devnet and audit).

use crate::api::{
    answer_signing_hash, ApiError, ChallengeInfo, CompactSignature, CycleRecord, CycleStatus,
    Health, MinerCertificates, Receipt, RegisterRequest, RegisterResponse, TaskInfo, MINER_HEADER,
    SIGNATURE_HEADER, STEPS_HEADER, TASK_HASH_HEADER, TRANSCRIPT_ROOT_HEADER,
};
use bitcoin::secp256k1::{PublicKey, Secp256k1, SecretKey, Signing};
use learning::ModelCard;
use primitives::{sha256, Hash256};
use serde::de::DeserializeOwned;
use std::time::Duration;

/// Generous per-request timeout: the largest downloads (weights, shards) are tens of MB on
/// loopback or a LAN.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// Timeout of a job post: the coordinator writes and loads the job's data (a 24 MiB corpus
/// takes seconds) before it answers.
pub const JOB_REQUEST_TIMEOUT: Duration = Duration::from_secs(300);

/// Largest answer the client reads: a shard may be up to `learning::SHARD_BYTES_MAX`, and
/// nothing else the API sends is larger. Past it the server is misbehaving, and reading on would
/// let it decide how much memory a miner allocates.
pub const RESPONSE_BYTES_MAX: usize = learning::SHARD_BYTES_MAX + 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("coordinator unreachable: {0}")]
    Transport(String),
    /// The coordinator answered with an error status and a JSON error body.
    #[error("coordinator refused ({status}): {} ({})", .error.message, .error.error)]
    Api { status: u16, error: ApiError },
    #[error("coordinator answer does not parse: {0}")]
    Decode(String),
    #[error("coordinator answer is over {RESPONSE_BYTES_MAX} bytes")]
    TooLarge,
}

impl ClientError {
    /// The API's error code, if the coordinator answered with one.
    pub fn code(&self) -> Option<&str> {
        match self {
            ClientError::Api { error, .. } => Some(&error.error),
            _ => None,
        }
    }
}

fn transport(e: reqwest::Error) -> ClientError {
    ClientError::Transport(e.to_string())
}

fn decode<T: DeserializeOwned>(body: &[u8]) -> Result<T, ClientError> {
    serde_json::from_slice(body).map_err(|e| ClientError::Decode(e.to_string()))
}

#[derive(Clone)]
pub struct CoordinatorClient {
    base: String,
    http: reqwest::Client,
}

impl CoordinatorClient {
    /// A client for the API at `base_url` (e.g. `http://127.0.0.1:8080`).
    pub fn new(base_url: &str) -> Result<Self, ClientError> {
        let http = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .build()
            .map_err(transport)?;
        Ok(CoordinatorClient {
            base: base_url.trim_end_matches('/').to_owned(),
            http,
        })
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Sends `request` and returns the body of a success answer (at most
    /// [`RESPONSE_BYTES_MAX`]); an error status becomes [`ClientError::Api`].
    async fn send(&self, request: reqwest::RequestBuilder) -> Result<Vec<u8>, ClientError> {
        let mut response = request.send().await.map_err(transport)?;
        let status = response.status();
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(transport)? {
            if body.len() + chunk.len() > RESPONSE_BYTES_MAX {
                return Err(ClientError::TooLarge);
            }
            body.extend_from_slice(&chunk);
        }
        if status.is_success() {
            return Ok(body);
        }
        let text = String::from_utf8_lossy(&body).into_owned();
        let error = serde_json::from_str(&text).unwrap_or(ApiError {
            error: "http".into(),
            message: text,
        });
        Err(ClientError::Api {
            status: status.as_u16(),
            error,
        })
    }

    async fn get_json<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        decode(&self.get_bytes(path).await?)
    }

    async fn get_bytes(&self, path: &str) -> Result<Vec<u8>, ClientError> {
        self.send(self.http.get(self.url(path))).await
    }

    pub async fn health(&self) -> Result<Health, ClientError> {
        self.get_json("/health").await
    }

    pub async fn metrics(&self) -> Result<String, ClientError> {
        let bytes = self.get_bytes("/metrics").await?;
        String::from_utf8(bytes).map_err(|e| ClientError::Decode(e.to_string()))
    }

    pub async fn status(&self) -> Result<CycleStatus, ClientError> {
        self.get_json("/v1/cycle").await
    }

    pub async fn register(
        &self,
        request: &RegisterRequest,
    ) -> Result<RegisterResponse, ClientError> {
        decode(
            &self
                .send(self.http.post(self.url("/v1/register")).json(request))
                .await?,
        )
    }

    /// Enrols a bonded verifier for the request's cycle (`POST /v1/verifiers/enrol`).
    pub async fn enrol_verifier(
        &self,
        request: &crate::api::EnrolRequest,
    ) -> Result<crate::api::EnrolResponse, ClientError> {
        decode(
            &self
                .send(
                    self.http
                        .post(self.url("/v1/verifiers/enrol"))
                        .json(request),
                )
                .await?,
        )
    }

    /// The replay assignments in `cycle` of the verifier with `key`, once the challenge window
    /// closed (the poll is signed: only the verifier reads what it is served).
    pub async fn assignments<C: Signing>(
        &self,
        secp: &Secp256k1<C>,
        key: &SecretKey,
        cycle: u64,
    ) -> Result<crate::api::ReplayAssignments, ClientError> {
        let verifier = key.public_key(secp);
        let signature =
            CompactSignature::sign(secp, key, &crate::api::poll_signing_hash(cycle, &verifier));
        let request = self
            .http
            .get(self.url(&format!(
                "/v1/cycles/{cycle}/verifiers/{verifier}/assignments"
            )))
            .header(SIGNATURE_HEADER, signature.to_string());
        decode(&self.send(request).await?)
    }

    /// What a judged claim on `miner`'s `interval` was judged on (claims judged `wrong` or
    /// `caught_cheat`).
    pub async fn claim_evidence(
        &self,
        cycle: u64,
        miner: &PublicKey,
        interval: u64,
    ) -> Result<crate::api::ClaimEvidence, ClientError> {
        self.get_json(&format!(
            "/v1/cycles/{cycle}/claims/{miner}/{interval}/evidence"
        ))
        .await
    }

    /// Sends a verifier's signed claim.
    pub async fn claim(&self, claim: &crate::api::Claim) -> Result<(), ClientError> {
        let cycle = claim.cycle;
        let response = self
            .send(
                self.http
                    .post(self.url(&format!("/v1/cycles/{cycle}/claims")))
                    .json(claim),
            )
            .await?;
        let _: serde_json::Value = decode(&response)?;
        Ok(())
    }

    pub async fn task(&self, cycle: u64, miner: &PublicKey) -> Result<TaskInfo, ClientError> {
        self.get_json(&format!("/v1/cycles/{cycle}/task/{miner}"))
            .await
    }

    /// The miner's shard as safetensors (`learning::Samples::from_safetensors`).
    pub async fn shard(&self, cycle: u64, miner: &PublicKey) -> Result<Vec<u8>, ClientError> {
        self.get_bytes(&format!("/v1/cycles/{cycle}/shard/{miner}"))
            .await
    }

    /// The global weights of `cycle` as safetensors (`learning::model_from_safetensors`).
    pub async fn weights(&self, cycle: u64) -> Result<Vec<u8>, ClientError> {
        self.get_bytes(&format!("/v1/cycles/{cycle}/weights")).await
    }

    /// The held-out batch `cycle` was scored on (safetensors), once its record is revealed.
    pub async fn held_out(&self, cycle: u64) -> Result<Vec<u8>, ClientError> {
        self.get_bytes(&format!("/v1/cycles/{cycle}/held-out"))
            .await
    }

    /// A receipted update of `cycle` by its hash, once its record is revealed.
    pub async fn published_update(
        &self,
        cycle: u64,
        hash: &primitives::Hash256,
    ) -> Result<Vec<u8>, ClientError> {
        self.get_bytes(&format!("/v1/cycles/{cycle}/updates/{hash}"))
            .await
    }

    /// Signs and uploads an update with its commitment (task hash, transcript root, steps;
    /// `update_hash` is computed here from `update`); the answer is the signed receipt.
    pub async fn submit<C: Signing>(
        &self,
        secp: &Secp256k1<C>,
        key: &SecretKey,
        cycle: u64,
        commitment: proof::Commitment,
        update: Vec<u8>,
    ) -> Result<Receipt, ClientError> {
        let miner = key.public_key(secp);
        let commitment = proof::Commitment {
            update_hash: sha256(&update),
            ..commitment
        };
        let digest = commitment.signing_hash(cycle, &miner);
        let signature = CompactSignature::sign(secp, key, &digest);
        self.submit_signed(cycle, &miner, &signature, &commitment, update)
            .await
    }

    /// Uploads an update with a signature made elsewhere.
    pub async fn submit_signed(
        &self,
        cycle: u64,
        miner: &PublicKey,
        signature: &CompactSignature,
        commitment: &proof::Commitment,
        update: Vec<u8>,
    ) -> Result<Receipt, ClientError> {
        let request = self
            .http
            .post(self.url(&format!("/v1/cycles/{cycle}/submit")))
            .header(MINER_HEADER, miner.to_string())
            .header(SIGNATURE_HEADER, signature.to_string())
            .header(TASK_HASH_HEADER, commitment.task_hash.to_string())
            .header(
                TRANSCRIPT_ROOT_HEADER,
                commitment.transcript_root.to_string(),
            )
            .header(STEPS_HEADER, commitment.steps.to_string())
            .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
            .body(update);
        decode(&self.send(request).await?)
    }

    /// The intervals the miner must open (from the submission deadline on).
    pub async fn challenge(
        &self,
        cycle: u64,
        miner: &PublicKey,
    ) -> Result<ChallengeInfo, ClientError> {
        self.get_json(&format!("/v1/cycles/{cycle}/challenge/{miner}"))
            .await
    }

    /// Signs and uploads the answer to a challenge (`proof::ChallengeResponse::encode`).
    pub async fn answer<C: Signing>(
        &self,
        secp: &Secp256k1<C>,
        key: &SecretKey,
        cycle: u64,
        answer: Vec<u8>,
    ) -> Result<(), ClientError> {
        let miner = key.public_key(secp);
        let digest = answer_signing_hash(cycle, &miner, &sha256(&answer));
        let signature = CompactSignature::sign(secp, key, &digest);
        let request = self
            .http
            .post(self.url(&format!("/v1/cycles/{cycle}/answer")))
            .header(MINER_HEADER, miner.to_string())
            .header(SIGNATURE_HEADER, signature.to_string())
            .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
            .body(answer);
        self.send(request).await.map(|_| ())
    }

    /// The shard fraud evidence against `miner` in `cycle` was found on (safetensors).
    pub async fn evidence_shard(
        &self,
        cycle: u64,
        miner: &PublicKey,
    ) -> Result<Vec<u8>, ClientError> {
        self.get_bytes(&format!("/v1/cycles/{cycle}/evidence/{miner}/shard"))
            .await
    }

    /// Fraud evidence against `miner` in `cycle` (404 if its check did not fail).
    pub async fn evidence(
        &self,
        cycle: u64,
        miner: &PublicKey,
    ) -> Result<proof::FraudEvidence, ClientError> {
        self.get_json(&format!("/v1/cycles/{cycle}/evidence/{miner}"))
            .await
    }

    pub async fn certificates(
        &self,
        cycle: u64,
        miner: &PublicKey,
    ) -> Result<MinerCertificates, ClientError> {
        self.get_json(&format!("/v1/cycles/{cycle}/certificates/{miner}"))
            .await
    }

    pub async fn record(&self, cycle: u64) -> Result<CycleRecord, ClientError> {
        self.get_json(&format!("/v1/cycles/{cycle}/record")).await
    }

    /// Records of cycles `from..`, at most `limit` (capped by the server).
    pub async fn records(&self, from: u64, limit: u64) -> Result<Vec<CycleRecord>, ClientError> {
        self.get_json(&format!("/v1/cycles?from={from}&limit={limit}"))
            .await
    }

    /// The newest global model as safetensors.
    pub async fn model(&self) -> Result<Vec<u8>, ClientError> {
        self.get_bytes("/v1/model").await
    }

    /// Posts a job signed by its owner's `key` (over the exact body bytes sent).
    pub async fn submit_job<C: Signing>(
        &self,
        secp: &Secp256k1<C>,
        key: &SecretKey,
        request: &crate::api::JobRequest,
    ) -> Result<crate::api::JobStatus, ClientError> {
        let body = serde_json::to_vec(request).map_err(|e| ClientError::Decode(e.to_string()))?;
        let coordinator = self.coordinator_key().await?;
        let signature = CompactSignature::sign(
            secp,
            key,
            &crate::api::job_request_signing_hash(&coordinator, &body),
        );
        let request = self
            .http
            .post(self.url("/v1/jobs"))
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(SIGNATURE_HEADER, signature.to_string())
            // A job's data may take a while to load on the coordinator.
            .timeout(JOB_REQUEST_TIMEOUT)
            .body(body);
        decode(&self.send(request).await?)
    }

    /// The key the coordinator signs its announcements with (what a job owner's signatures
    /// are bound to).
    pub async fn coordinator_key(&self) -> Result<PublicKey, ClientError> {
        Ok(self.status().await?.announcement.announcement.coordinator)
    }

    pub async fn jobs(&self) -> Result<Vec<crate::api::JobStatus>, ClientError> {
        self.get_json("/v1/jobs").await
    }

    pub async fn job(&self, id: &Hash256) -> Result<crate::api::JobStatus, ClientError> {
        self.get_json(&format!("/v1/jobs/{id}")).await
    }

    /// Cancels a job for its owner `key`.
    pub async fn cancel_job<C: Signing>(
        &self,
        secp: &Secp256k1<C>,
        key: &SecretKey,
        id: &Hash256,
    ) -> Result<crate::api::JobStatus, ClientError> {
        let coordinator = self.coordinator_key().await?;
        let signature = CompactSignature::sign(
            secp,
            key,
            &crate::api::job_cancel_signing_hash(&coordinator, id),
        );
        let request = self
            .http
            .post(self.url(&format!("/v1/jobs/{id}/cancel")))
            .header(SIGNATURE_HEADER, signature.to_string());
        decode(&self.send(request).await?)
    }

    /// A job's newest merged model (safetensors).
    pub async fn job_model(&self, id: &Hash256) -> Result<Vec<u8>, ClientError> {
        self.get_bytes(&format!("/v1/jobs/{id}/model")).await
    }

    pub async fn job_card(&self, id: &Hash256) -> Result<ModelCard, ClientError> {
        self.get_json(&format!("/v1/jobs/{id}/card")).await
    }

    pub async fn model_card(&self) -> Result<ModelCard, ClientError> {
        self.get_json("/v1/model/card").await
    }
}
