//! The coordinator's view of the chain: the tip a cycle builds on, and whether the winner's
//! block arrived. [`RpcChain`] reads a node's Bitcoin-Core-style JSON-RPC; [`MemoryChain`] is
//! an in-process chain for tests and single-process setups.

use bitcoin::{Amount, BlockHash, OutPoint, ScriptBuf, Transaction, TxOut, Txid};
use primitives::{BlockHeader, Certificate, Coin};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// Bitcoin Core's "Block height out of range" error code (`getblockhash`).
const RPC_INVALID_PARAMETER: i64 = -8;
/// Bitcoin Core's "Block not found" error code.
const RPC_INVALID_ADDRESS_OR_KEY: i64 = -5;
/// One RPC call may take this long; the driver polls again on the next tick anyway.
const RPC_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum ChainError {
    #[error("node RPC unreachable: {0}")]
    Transport(String),
    #[error("node RPC error {code} in {method}: {message}")]
    Rpc {
        method: &'static str,
        code: i64,
        message: String,
    },
    /// HTTP 401: the node refused the credentials. Retrying with the same ones cannot help,
    /// so the message names the fix.
    #[error(
        "the node at {url} refused the credentials (HTTP 401, {sent}): pass the node's cookie \
         (--node-data-dir DIR or --node-rpc-auth cookie:DIR) or its user:password \
         (--node-rpc-auth user:password)"
    )]
    Unauthorized { url: String, sent: String },
    #[error("node RPC answered {method} with something unexpected: {detail}")]
    Unexpected {
        method: &'static str,
        detail: String,
    },
}

/// What the coordinator needs from a node.
pub trait ChainSource: Send + Sync + 'static {
    /// Hash and height of the best chain's tip.
    fn tip(&self) -> impl Future<Output = Result<(BlockHash, u32), ChainError>> + Send;
    /// The best chain's block at `height` with the certificate in its header, if any.
    fn block_at(
        &self,
        height: u32,
    ) -> impl Future<Output = Result<Option<(BlockHash, Certificate)>, ChainError>> + Send;
    /// The confirmed unspent output at `outpoint` (a bond, for admission) with the tip height
    /// it was read at; `None` if the best chain has no such unspent output.
    fn unspent_output(
        &self,
        outpoint: OutPoint,
    ) -> impl Future<Output = Result<Option<UnspentOutput>, ChainError>> + Send;
    /// Hands `tx` (a slash) to the node for its mempool and relay, `sendrawtransaction`;
    /// returns its txid. A source that cannot send refuses every transaction.
    fn send_raw_transaction(
        &self,
        tx: &Transaction,
    ) -> impl Future<Output = Result<Txid, ChainError>> + Send {
        let _ = tx;
        async {
            Err(ChainError::Unexpected {
                method: "sendrawtransaction",
                detail: "this chain source sends no transactions".into(),
            })
        }
    }
}

/// Bitcoin Core's "Transaction already in block chain" (`sendrawtransaction`).
pub const RPC_VERIFY_ALREADY_IN_CHAIN: i64 = -27;

/// An unspent output as the node showed it, and the tip it was read at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnspentOutput {
    /// The output, the height of the block that confirmed it, and whether it is a coinbase's.
    pub coin: Coin,
    /// Height of the tip the node read it at.
    pub tip_height: u32,
}

/// Basic-auth credentials of a node's RPC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RpcAuth {
    pub user: String,
    pub password: String,
}

/// Where [`RpcChain`] takes its credentials from on each call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RpcCredentials {
    None,
    Fixed(RpcAuth),
    /// A node's cookie file (`<node data dir>/.cookie`), read again on every call: a node
    /// writes a fresh cookie at each start, so a restarted node is followed without a restart
    /// of the coordinator.
    Cookie(PathBuf),
}

/// Largest cookie file read: a cookie is `__cookie__:` and 64 hex digits.
const COOKIE_BYTES_MAX: u64 = 1024;

impl RpcCredentials {
    /// The credentials to send now (a cookie that cannot be read: none, and the node's 401
    /// says so).
    fn current(&self) -> Option<RpcAuth> {
        match self {
            RpcCredentials::None => None,
            RpcCredentials::Fixed(auth) => Some(auth.clone()),
            RpcCredentials::Cookie(path) => read_cookie(path),
        }
    }

    /// What is sent, without the secret, for error messages.
    fn describe(&self) -> String {
        match self {
            RpcCredentials::None => "no credentials sent".into(),
            RpcCredentials::Fixed(auth) => format!("sent user {:?}", auth.user),
            RpcCredentials::Cookie(path) if read_cookie(path).is_some() => {
                format!("sent the cookie in {}", path.display())
            }
            RpcCredentials::Cookie(path) => {
                format!(
                    "no credentials sent: cannot read the cookie {}",
                    path.display()
                )
            }
        }
    }
}

fn read_cookie(path: &Path) -> Option<RpcAuth> {
    use std::io::Read;
    let mut text = String::new();
    std::fs::File::open(path)
        .ok()?
        .take(COOKIE_BYTES_MAX)
        .read_to_string(&mut text)
        .ok()?;
    let (user, password) = text.trim().split_once(':')?;
    Some(RpcAuth {
        user: user.to_owned(),
        password: password.to_owned(),
    })
}

/// JSON-RPC client for a trainchain node (`getblockcount`, `getblockhash`, `getcertificate`,
/// falling back to `getblockheader <hash> false` for the raw header, and `gettxout` for bonds).
pub struct RpcChain {
    url: String,
    credentials: RpcCredentials,
    http: reqwest::Client,
    next_id: AtomicU64,
}

impl RpcChain {
    pub fn new(url: String, credentials: RpcCredentials) -> Result<Self, ChainError> {
        let http = reqwest::Client::builder()
            .timeout(RPC_TIMEOUT)
            .build()
            .map_err(|e| ChainError::Transport(e.to_string()))?;
        Ok(RpcChain {
            url,
            credentials,
            http,
            next_id: AtomicU64::new(1),
        })
    }

    async fn call(&self, method: &'static str, params: Value) -> Result<Value, ChainError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let body = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        let mut request = self.http.post(&self.url).json(&body);
        if let Some(auth) = self.credentials.current() {
            request = request.basic_auth(&auth.user, Some(&auth.password));
        }
        let response = request
            .send()
            .await
            .map_err(|e| ChainError::Transport(e.to_string()))?;
        if response.status() == reqwest::StatusCode::UNAUTHORIZED {
            return Err(ChainError::Unauthorized {
                url: self.url.clone(),
                sent: self.credentials.describe(),
            });
        }
        // Bitcoin Core answers errors with HTTP 500 and a JSON body: read the body either way.
        let value: Value = response
            .json()
            .await
            .map_err(|e| ChainError::Transport(e.to_string()))?;
        if let Some(error) = value.get("error").filter(|e| !e.is_null()) {
            return Err(ChainError::Rpc {
                method,
                code: error.get("code").and_then(Value::as_i64).unwrap_or(0),
                message: error
                    .get("message")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_owned(),
            });
        }
        Ok(value.get("result").cloned().unwrap_or(Value::Null))
    }

    async fn block_hash(&self, height: u32) -> Result<Option<BlockHash>, ChainError> {
        match self.call("getblockhash", json!([height])).await {
            Ok(v) => parse_hash("getblockhash", &v).map(Some),
            Err(ChainError::Rpc { code, .. }) if code == RPC_INVALID_PARAMETER => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn certificate(&self, hash: &BlockHash) -> Result<Option<Certificate>, ChainError> {
        match self.call("getcertificate", json!([hash.to_string()])).await {
            Ok(v) => {
                let hex = v.as_str().or_else(|| v.get("hex").and_then(Value::as_str));
                if let Some(hex) = hex {
                    return decode_certificate("getcertificate", hex).map(Some);
                }
            }
            Err(ChainError::Rpc { code, .. }) if code == RPC_INVALID_ADDRESS_OR_KEY => {
                return Ok(None)
            }
            Err(ChainError::Rpc { .. }) => {}
            Err(e) => return Err(e),
        }
        // The decoded form has no raw bytes: take the certificate from the raw header.
        let v = self
            .call("getblockheader", json!([hash.to_string(), false]))
            .await?;
        let hex = v.as_str().ok_or_else(|| ChainError::Unexpected {
            method: "getblockheader",
            detail: format!("expected a hex string, got {v}"),
        })?;
        let bytes = hex::decode(hex).map_err(|e| ChainError::Unexpected {
            method: "getblockheader",
            detail: e.to_string(),
        })?;
        let header = BlockHeader::decode(&bytes).map_err(|e| ChainError::Unexpected {
            method: "getblockheader",
            detail: e.to_string(),
        })?;
        Ok(Some(header.certificate))
    }
}

/// Reads one `gettxout` answer (Bitcoin Core's shape: `bestblock`, `confirmations`, `value` in
/// coins, `scriptPubKey.hex`, `coinbase`) read at the tip `tip_height`.
fn parse_txout(v: &Value, tip_height: u32) -> Result<(BlockHash, UnspentOutput), ChainError> {
    let bad = |detail: String| ChainError::Unexpected {
        method: "gettxout",
        detail,
    };
    let best = parse_hash("gettxout", v.get("bestblock").unwrap_or(&Value::Null))?;
    let confirmations = v
        .get("confirmations")
        .and_then(Value::as_u64)
        .ok_or_else(|| bad(format!("no confirmations in {v}")))?;
    let value = v
        .get("value")
        .and_then(Value::as_f64)
        .and_then(|btc| Amount::from_btc(btc).ok())
        .ok_or_else(|| bad(format!("no value in {v}")))?;
    let script = v
        .get("scriptPubKey")
        .and_then(|s| s.get("hex"))
        .and_then(Value::as_str)
        .and_then(|h| hex::decode(h).ok())
        .ok_or_else(|| bad(format!("no scriptPubKey.hex in {v}")))?;
    let is_coinbase = v
        .get("coinbase")
        .and_then(Value::as_bool)
        .ok_or_else(|| bad(format!("no coinbase flag in {v}")))?;
    // Confirmed in the tip block: 1 confirmation. Unconfirmed (0) would be tip + 1.
    let height = u64::from(tip_height) + 1 - confirmations.min(u64::from(tip_height) + 1);
    Ok((
        best,
        UnspentOutput {
            coin: Coin {
                output: TxOut {
                    value,
                    script_pubkey: ScriptBuf::from_bytes(script),
                },
                height: u32::try_from(height).unwrap_or(u32::MAX),
                is_coinbase,
            },
            tip_height,
        },
    ))
}

fn parse_hash(method: &'static str, v: &Value) -> Result<BlockHash, ChainError> {
    v.as_str()
        .and_then(|s| BlockHash::from_str(s).ok())
        .ok_or_else(|| ChainError::Unexpected {
            method,
            detail: format!("expected a block hash, got {v}"),
        })
}

fn decode_certificate(method: &'static str, hex: &str) -> Result<Certificate, ChainError> {
    let bytes = hex::decode(hex).map_err(|e| ChainError::Unexpected {
        method,
        detail: e.to_string(),
    })?;
    Certificate::decode(&bytes).map_err(|e| ChainError::Unexpected {
        method,
        detail: e.to_string(),
    })
}

impl ChainSource for RpcChain {
    async fn tip(&self) -> Result<(BlockHash, u32), ChainError> {
        let count = self.call("getblockcount", json!([])).await?;
        let height = count
            .as_u64()
            .and_then(|h| u32::try_from(h).ok())
            .ok_or_else(|| ChainError::Unexpected {
                method: "getblockcount",
                detail: format!("expected a height, got {count}"),
            })?;
        // Hash at that height rather than getbestblockhash: the pair stays consistent even
        // if a block arrives between the two calls.
        let hash = self
            .block_hash(height)
            .await?
            .ok_or_else(|| ChainError::Unexpected {
                method: "getblockhash",
                detail: format!("no block at the tip height {height}"),
            })?;
        Ok((hash, height))
    }

    async fn block_at(&self, height: u32) -> Result<Option<(BlockHash, Certificate)>, ChainError> {
        let Some(hash) = self.block_hash(height).await? else {
            return Ok(None);
        };
        Ok(self.certificate(&hash).await?.map(|cert| (hash, cert)))
    }

    /// `gettxout TXID VOUT false` (confirmed outputs only), read against the tip: if a block
    /// arrives between the two calls the pair is read again (three times at most), so the
    /// height computed from `confirmations` is the coin's.
    async fn unspent_output(
        &self,
        outpoint: OutPoint,
    ) -> Result<Option<UnspentOutput>, ChainError> {
        let mut last_best = None;
        for _ in 0..3 {
            let (tip, tip_height) = self.tip().await?;
            let v = self
                .call(
                    "gettxout",
                    json!([outpoint.txid.to_string(), outpoint.vout, false]),
                )
                .await?;
            if v.is_null() {
                return Ok(None);
            }
            let (best, output) = parse_txout(&v, tip_height)?;
            if best == tip {
                return Ok(Some(output));
            }
            last_best = Some(best);
        }
        Err(ChainError::Unexpected {
            method: "gettxout",
            detail: format!(
                "the tip kept moving while reading {outpoint} (last seen at {})",
                last_best.map_or_else(String::new, |b| b.to_string())
            ),
        })
    }

    async fn send_raw_transaction(&self, tx: &Transaction) -> Result<Txid, ChainError> {
        let hex = bitcoin::consensus::encode::serialize_hex(tx);
        let v = self.call("sendrawtransaction", json!([hex])).await?;
        v.as_str()
            .and_then(|s| Txid::from_str(s).ok())
            .ok_or_else(|| ChainError::Unexpected {
                method: "sendrawtransaction",
                detail: format!("expected a txid, got {v}"),
            })
    }
}

/// A chain held in memory: genesis plus blocks pushed by the caller (the test plays node),
/// and the unspent outputs the caller puts there (bonds).
pub struct MemoryChain {
    blocks: Mutex<Vec<(BlockHash, Option<Certificate>)>>,
    coins: Mutex<BTreeMap<OutPoint, Coin>>,
    sent: Mutex<Vec<Transaction>>,
}

impl MemoryChain {
    pub fn new(genesis: BlockHash) -> Self {
        MemoryChain {
            blocks: Mutex::new(vec![(genesis, None)]),
            coins: Mutex::new(BTreeMap::new()),
            sent: Mutex::new(Vec::new()),
        }
    }

    /// Every transaction sent with `send_raw_transaction`, in order (recorded, not applied:
    /// the caller spends coins with [`MemoryChain::spend_coin`] if it wants them gone).
    pub fn sent(&self) -> Vec<Transaction> {
        self.sent.lock().expect("memory chain lock").clone()
    }

    /// Makes `coin` unspent at `outpoint` (its `height` is the caller's to choose).
    pub fn add_coin(&self, outpoint: OutPoint, coin: Coin) {
        self.coins
            .lock()
            .expect("memory chain lock")
            .insert(outpoint, coin);
    }

    /// Spends the output at `outpoint`; true if it was unspent.
    pub fn spend_coin(&self, outpoint: &OutPoint) -> bool {
        self.coins
            .lock()
            .expect("memory chain lock")
            .remove(outpoint)
            .is_some()
    }

    /// Appends a block carrying `certificate` and returns its height.
    pub fn push(&self, hash: BlockHash, certificate: Certificate) -> u32 {
        let mut blocks = self.blocks.lock().expect("memory chain lock");
        blocks.push((hash, Some(certificate)));
        (blocks.len() - 1) as u32
    }

    pub fn height(&self) -> u32 {
        (self.blocks.lock().expect("memory chain lock").len() - 1) as u32
    }
}

impl ChainSource for MemoryChain {
    async fn tip(&self) -> Result<(BlockHash, u32), ChainError> {
        let blocks = self.blocks.lock().expect("memory chain lock");
        let (hash, _) = blocks.last().expect("genesis is always there");
        Ok((*hash, (blocks.len() - 1) as u32))
    }

    async fn block_at(&self, height: u32) -> Result<Option<(BlockHash, Certificate)>, ChainError> {
        let blocks = self.blocks.lock().expect("memory chain lock");
        Ok(blocks
            .get(height as usize)
            .and_then(|(hash, cert)| cert.clone().map(|c| (*hash, c))))
    }

    async fn unspent_output(
        &self,
        outpoint: OutPoint,
    ) -> Result<Option<UnspentOutput>, ChainError> {
        let tip_height = self.height();
        let coin = self
            .coins
            .lock()
            .expect("memory chain lock")
            .get(&outpoint)
            .cloned();
        // Like `gettxout ... false`: confirmed outputs only.
        Ok(coin
            .filter(|c| c.height <= tip_height)
            .map(|coin| UnspentOutput { coin, tip_height }))
    }

    async fn send_raw_transaction(&self, tx: &Transaction) -> Result<Txid, ChainError> {
        self.sent
            .lock()
            .expect("memory chain lock")
            .push(tx.clone());
        Ok(tx.compute_txid())
    }
}
