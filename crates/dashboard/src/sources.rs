//! Where the dashboard reads: the coordinator's public HTTP API and a node's JSON-RPC, behind
//! one trait so the pages can be tested against fixed data. Nothing here needs a privilege:
//! every call is one anyone may make.
//!
//! Every upstream read is bounded: the coordinator's client refuses an answer over
//! `coordinator_api::client::RESPONSE_BYTES_MAX`, the node's over `node::rpc::RPC_RESPONSE_BYTES_MAX`,
//! and each call here gives up after [`UPSTREAM_TIMEOUT`].

use crate::limits::UPSTREAM_TIMEOUT;
use bitcoin::consensus::encode::deserialize_hex;
use bitcoin::{BlockHash, Network, Transaction, Txid};
use coordinator_api::api::{CycleRecord, CycleStatus};
use coordinator_api::CoordinatorClient;
use learning::ModelCard;
use node::rpc::client::{ClientAuth, RpcClient, RpcClientError};
use primitives::Block;
use serde_json::{json, Value};
use std::future::Future;
use std::str::FromStr;

/// A failed upstream read, with which side failed and why (shown on the page, escaped).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SourceError {
    #[error("coordinator: {0}")]
    Coordinator(String),
    #[error("node: {0}")]
    Node(String),
}

/// The reads the dashboard makes. `Send` futures, so the poller can run on its own task.
pub trait Sources: Send + Sync + 'static {
    /// `GET /v1/cycle`.
    fn status(&self) -> impl Future<Output = Result<CycleStatus, SourceError>> + Send;
    /// `GET /v1/cycles?from=&limit=` (the coordinator caps `limit`).
    fn records(
        &self,
        from: u64,
        limit: u64,
    ) -> impl Future<Output = Result<Vec<CycleRecord>, SourceError>> + Send;
    /// `GET /v1/model/card`: the model's architecture (the segment layout) and accuracy.
    fn model_card(&self) -> impl Future<Output = Result<ModelCard, SourceError>> + Send;
    /// The node's network (for addresses).
    fn network(&self) -> impl Future<Output = Result<Network, SourceError>> + Send;
    /// Best chain height.
    fn height(&self) -> impl Future<Output = Result<u32, SourceError>> + Send;
    /// Hash of the best chain's block at `height` (`None` above the tip).
    fn block_hash(
        &self,
        height: u32,
    ) -> impl Future<Output = Result<Option<BlockHash>, SourceError>> + Send;
    /// The block `hash` (`None` if the node does not have it).
    fn block(
        &self,
        hash: BlockHash,
    ) -> impl Future<Output = Result<Option<Block>, SourceError>> + Send;
    /// A mempool transaction (`None` if not in the mempool).
    fn mempool_tx(
        &self,
        txid: Txid,
    ) -> impl Future<Output = Result<Option<Transaction>, SourceError>> + Send;
}

/// The live sources: a coordinator's API and a node's RPC.
#[derive(Clone)]
pub struct LiveSources {
    coordinator: CoordinatorClient,
    node_url: String,
    node_auth: ClientAuth,
}

impl LiveSources {
    pub fn new(
        coordinator_url: &str,
        node_url: &str,
        node_auth: ClientAuth,
    ) -> Result<Self, SourceError> {
        Ok(LiveSources {
            coordinator: CoordinatorClient::new(coordinator_url)
                .map_err(|e| SourceError::Coordinator(e.to_string()))?,
            node_url: node_url.to_owned(),
            node_auth,
        })
    }

    /// One RPC call with a fresh client (it re-reads the node's cookie, so a restarted node
    /// is reached again), bounded by [`UPSTREAM_TIMEOUT`]. `Ok(None)` for Core's "not found"
    /// codes.
    async fn call(&self, method: &str, params: Vec<Value>) -> Result<Option<Value>, SourceError> {
        let fail = |e: String| SourceError::Node(e);
        let client =
            RpcClient::new(&self.node_url, &self.node_auth).map_err(|e| fail(e.to_string()))?;
        match tokio::time::timeout(UPSTREAM_TIMEOUT, client.call(method, params)).await {
            Err(_) => Err(fail(format!(
                "{method}: no answer within {} s",
                UPSTREAM_TIMEOUT.as_secs()
            ))),
            // -5: not found (Core's RPC_INVALID_ADDRESS_OR_KEY); -8: height out of range.
            Ok(Err(RpcClientError::Server { code: -5 | -8, .. })) => Ok(None),
            Ok(Err(e)) => Err(fail(e.to_string())),
            Ok(Ok(value)) => Ok(Some(value)),
        }
    }
}

async fn coordinator_call<T>(
    call: impl Future<Output = Result<T, coordinator_api::client::ClientError>>,
) -> Result<T, SourceError> {
    match tokio::time::timeout(UPSTREAM_TIMEOUT, call).await {
        Err(_) => Err(SourceError::Coordinator(format!(
            "no answer within {} s",
            UPSTREAM_TIMEOUT.as_secs()
        ))),
        Ok(result) => result.map_err(|e| SourceError::Coordinator(e.to_string())),
    }
}

fn unexpected(method: &str, what: impl std::fmt::Display) -> SourceError {
    SourceError::Node(format!("{method}: unexpected answer: {what}"))
}

/// Core's `chain` names.
impl Sources for LiveSources {
    async fn status(&self) -> Result<CycleStatus, SourceError> {
        coordinator_call(self.coordinator.status()).await
    }

    async fn records(&self, from: u64, limit: u64) -> Result<Vec<CycleRecord>, SourceError> {
        coordinator_call(self.coordinator.records(from, limit)).await
    }

    async fn model_card(&self) -> Result<ModelCard, SourceError> {
        coordinator_call(self.coordinator.model_card()).await
    }

    async fn network(&self) -> Result<Network, SourceError> {
        const M: &str = "getblockchaininfo";
        let info = self
            .call(M, vec![])
            .await?
            .ok_or_else(|| unexpected(M, "not found"))?;
        let chain = info["chain"].as_str().unwrap_or_default();
        Network::from_core_arg(chain).map_err(|_| unexpected(M, format!("chain {chain:?}")))
    }

    async fn height(&self) -> Result<u32, SourceError> {
        const M: &str = "getblockcount";
        let value = self
            .call(M, vec![])
            .await?
            .ok_or_else(|| unexpected(M, "not found"))?;
        value
            .as_u64()
            .and_then(|h| u32::try_from(h).ok())
            .ok_or_else(|| unexpected(M, value))
    }

    async fn block_hash(&self, height: u32) -> Result<Option<BlockHash>, SourceError> {
        const M: &str = "getblockhash";
        match self.call(M, vec![json!(height)]).await? {
            None => Ok(None),
            Some(value) => value
                .as_str()
                .and_then(|s| BlockHash::from_str(s).ok())
                .map(Some)
                .ok_or_else(|| unexpected(M, value)),
        }
    }

    async fn block(&self, hash: BlockHash) -> Result<Option<Block>, SourceError> {
        const M: &str = "getblock";
        let Some(value) = self
            .call(M, vec![json!(hash.to_string()), json!(0)])
            .await?
        else {
            return Ok(None);
        };
        let text = value
            .as_str()
            .ok_or_else(|| unexpected(M, "verbosity 0 did not answer hex"))?;
        let bytes = hex::decode(text).map_err(|e| unexpected(M, e))?;
        let block = Block::decode(&bytes).map_err(|e| unexpected(M, e))?;
        if block.block_hash() != hash {
            return Err(unexpected(M, "a block of another hash"));
        }
        Ok(Some(block))
    }

    async fn mempool_tx(&self, txid: Txid) -> Result<Option<Transaction>, SourceError> {
        const M: &str = "getrawtransaction";
        let Some(value) = self
            .call(M, vec![json!(txid.to_string()), json!(false)])
            .await?
        else {
            return Ok(None);
        };
        let text = value.as_str().ok_or_else(|| unexpected(M, "not hex"))?;
        let tx: Transaction = deserialize_hex(text).map_err(|e| unexpected(M, e))?;
        if tx.compute_txid() != txid {
            return Err(unexpected(M, "a transaction of another txid"));
        }
        Ok(Some(tx))
    }
}
