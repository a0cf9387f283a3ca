//! The node methods a miner and an auditor call, over the node's JSON-RPC client.
//!
//! A client is built per call: it re-reads the cookie, so a node that restarted (and wrote a
//! new cookie) is reached again without restarting the miner.

use crate::block::Template;
use crate::error::MinerError;
use crate::retry::retry;
use bitcoin::consensus::encode::deserialize_hex;
use bitcoin::{Amount, BlockHash, Transaction};
use node::rpc::client::{ClientAuth, RpcClient, RpcClientError};
use primitives::Block;
use serde_json::{json, Value};
use std::str::FromStr;

#[derive(Debug, Clone)]
pub struct NodeRpc {
    url: String,
    auth: ClientAuth,
}

/// What `submitblock` said (BIP22: `null` is acceptance).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubmitOutcome {
    Accepted,
    /// Already known to the node (e.g. a retry after a lost answer).
    Duplicate,
    Rejected(String),
}

fn unexpected(method: &'static str, detail: impl Into<String>) -> MinerError {
    MinerError::NodeAnswer {
        method,
        detail: detail.into(),
    }
}

fn field<'a>(value: &'a Value, method: &'static str, name: &str) -> Result<&'a Value, MinerError> {
    value
        .get(name)
        .ok_or_else(|| unexpected(method, format!("no field {name:?}")))
}

fn u32_field(value: &Value, method: &'static str, name: &str) -> Result<u32, MinerError> {
    field(value, method, name)?
        .as_u64()
        .and_then(|v| u32::try_from(v).ok())
        .ok_or_else(|| unexpected(method, format!("{name:?} is not a u32")))
}

fn hash_of(value: &Value, method: &'static str) -> Result<BlockHash, MinerError> {
    value
        .as_str()
        .and_then(|s| BlockHash::from_str(s).ok())
        .ok_or_else(|| unexpected(method, format!("expected a block hash, got {value}")))
}

/// Parses a `gettemplate` answer.
pub fn parse_template(value: &Value) -> Result<Template, MinerError> {
    const M: &str = "gettemplate";
    let transactions = field(value, M, "transactions")?
        .as_array()
        .ok_or_else(|| unexpected(M, "\"transactions\" is not an array"))?
        .iter()
        .map(|tx| {
            let data = tx
                .get("data")
                .and_then(Value::as_str)
                .ok_or_else(|| unexpected(M, "a transaction has no \"data\""))?;
            deserialize_hex::<Transaction>(data)
                .map_err(|e| unexpected(M, format!("a transaction does not decode: {e}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let coinbase_value = field(value, M, "coinbasevalue")?
        .as_u64()
        .ok_or_else(|| unexpected(M, "\"coinbasevalue\" is not an amount in satoshis"))?;
    Ok(Template {
        height: u32_field(value, M, "height")?,
        prev_hash: hash_of(field(value, M, "previousblockhash")?, M)?,
        min_time: u32_field(value, M, "mintime")?,
        cur_time: u32_field(value, M, "curtime")?,
        coinbase_value: Amount::from_sat(coinbase_value),
        transactions,
    })
}

impl NodeRpc {
    pub fn new(url: &str, auth: ClientAuth) -> Self {
        NodeRpc {
            url: url.to_owned(),
            auth,
        }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    async fn call_once(&self, method: &str, params: Vec<Value>) -> Result<Value, RpcClientError> {
        RpcClient::new(&self.url, &self.auth)?
            .call(method, params)
            .await
    }

    /// Calls `method`, retrying while the node is unreachable.
    pub async fn call(&self, method: &str, params: Vec<Value>) -> Result<Value, MinerError> {
        retry(method, || self.call_once(method, params.clone())).await
    }

    /// Best chain tip: (hash, height).
    pub async fn tip(&self) -> Result<(BlockHash, u32), MinerError> {
        let count = self.call("getblockcount", vec![]).await?;
        let height = count
            .as_u64()
            .and_then(|h| u32::try_from(h).ok())
            .ok_or_else(|| {
                unexpected("getblockcount", format!("expected a height, got {count}"))
            })?;
        let hash = self.block_hash(height).await?;
        Ok((hash, height))
    }

    pub async fn best_block_hash(&self) -> Result<BlockHash, MinerError> {
        hash_of(
            &self.call("getbestblockhash", vec![]).await?,
            "getbestblockhash",
        )
    }

    pub async fn block_hash(&self, height: u32) -> Result<BlockHash, MinerError> {
        hash_of(
            &self.call("getblockhash", vec![json!(height)]).await?,
            "getblockhash",
        )
    }

    /// The raw block `hash` (`getblock <hash> 0`), decoded.
    pub async fn block(&self, hash: &BlockHash) -> Result<Block, MinerError> {
        let value = self
            .call("getblock", vec![json!(hash.to_string()), json!(0)])
            .await?;
        let text = value
            .as_str()
            .ok_or_else(|| unexpected("getblock", "verbosity 0 did not answer hex"))?;
        let bytes = hex::decode(text).map_err(|e| unexpected("getblock", e.to_string()))?;
        Block::decode(&bytes).map_err(|e| unexpected("getblock", e.to_string()))
    }

    pub async fn template(&self, payout_address: &str) -> Result<Template, MinerError> {
        parse_template(
            &self
                .call("gettemplate", vec![json!(payout_address)])
                .await?,
        )
    }

    pub async fn submit_block(&self, block: &Block) -> Result<SubmitOutcome, MinerError> {
        let answer = self
            .call("submitblock", vec![json!(hex::encode(block.encode()))])
            .await?;
        Ok(match answer {
            Value::Null => SubmitOutcome::Accepted,
            Value::String(s) if s == "duplicate" => SubmitOutcome::Duplicate,
            other => {
                SubmitOutcome::Rejected(other.as_str().map_or(other.to_string(), str::to_owned))
            }
        })
    }

    /// `getequivocations`: the evidence list as the node shows it.
    pub async fn equivocations(&self) -> Result<Vec<Value>, MinerError> {
        match self.call("getequivocations", vec![]).await? {
            Value::Array(list) => Ok(list),
            other => Err(unexpected(
                "getequivocations",
                format!("expected an array, got {other}"),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_template_and_refuses_a_broken_one() {
        let hash = "11".repeat(32);
        let value = json!({
            "height": 5, "previousblockhash": hash, "curtime": 1_700_000_100u32,
            "mintime": 1_700_000_001u32, "coinbasevalue": 5_000_000_000u64,
            "transactions": [],
        });
        let template = parse_template(&value).unwrap();
        assert_eq!(template.height, 5);
        assert_eq!(template.coinbase_value, Amount::from_sat(5_000_000_000));
        let mut broken = value.clone();
        broken["transactions"] = json!([{"data": "zz"}]);
        assert!(parse_template(&broken).is_err());
        let mut missing = value;
        missing.as_object_mut().unwrap().remove("height");
        let error = parse_template(&missing).unwrap_err().to_string();
        assert!(error.contains("height"), "{error}");
    }
}
