//! The RPC methods. Each takes positional parameters and answers with Core's shape.

use super::codes;
use super::core;
use super::json::{self, HeaderContext, TxDetail};
use crate::chain::{BlockOutcome, ChainError, ChainState};
use crate::mempool::MempoolError;
use crate::service::{NetCommand, NetworkActivity, NodeHandle, SubmitTxError};
use bitcoin::consensus::encode::{deserialize, serialize_hex};
use bitcoin::{Address, BlockHash, OutPoint, ScriptBuf, Transaction, Txid};
use jsonrpsee::types::{ErrorObjectOwned, Params};
use jsonrpsee::RpcModule;
use primitives::Block;
use serde::de::DeserializeOwned;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use storage::{BlockStatus, ReadView};

pub(super) type RpcResult = Result<Value, ErrorObjectOwned>;

pub(super) fn error(code: i32, message: impl Into<String>) -> ErrorObjectOwned {
    ErrorObjectOwned::owned(code, message.into(), None::<()>)
}

pub(super) fn chain_error(e: ChainError) -> ErrorObjectOwned {
    error(codes::DATABASE_ERROR, e.to_string())
}

pub(super) fn store_error(e: storage::StoreError) -> ErrorObjectOwned {
    error(codes::DATABASE_ERROR, e.to_string())
}

/// Positional parameters, read one at a time.
pub(super) struct Args(pub(super) Vec<Value>);

impl Args {
    fn from(params: Params<'_>) -> Result<Args, ErrorObjectOwned> {
        if params.is_object() {
            return Err(error(
                codes::TYPE_ERROR,
                "named parameters are not supported; pass them in order",
            ));
        }
        let values: Option<Vec<Value>> = params
            .parse()
            .map_err(|e| error(codes::TYPE_ERROR, e.message().to_string()))?;
        Ok(Args(values.unwrap_or_default()))
    }

    pub(super) fn optional<T: DeserializeOwned>(
        &self,
        index: usize,
        name: &str,
    ) -> Result<Option<T>, ErrorObjectOwned> {
        match self.0.get(index) {
            None | Some(Value::Null) => Ok(None),
            Some(value) => serde_json::from_value(value.clone())
                .map(Some)
                .map_err(|e| error(codes::TYPE_ERROR, format!("parameter {name}: {e}"))),
        }
    }

    pub(super) fn required<T: DeserializeOwned>(
        &self,
        index: usize,
        name: &str,
    ) -> Result<T, ErrorObjectOwned> {
        self.optional(index, name)?.ok_or_else(|| {
            error(
                codes::INVALID_PARAMETER,
                format!("missing parameter {name}"),
            )
        })
    }

    fn block_hash(&self, index: usize) -> Result<BlockHash, ErrorObjectOwned> {
        let text: String = self.required(index, "blockhash")?;
        BlockHash::from_str(&text).map_err(|_| {
            error(
                codes::INVALID_PARAMETER,
                "blockhash must be 64 hex characters",
            )
        })
    }
}

/// Fills in a header's chain-dependent fields from the store.
fn header_context(
    chain: &ChainState,
    view: &ReadView,
    hash: &BlockHash,
) -> Result<HeaderContext, ErrorObjectOwned> {
    let entry = view
        .index_entry(hash)
        .map_err(store_error)?
        .ok_or_else(|| error(codes::INVALID_ADDRESS_OR_KEY, "Block not found"))?;
    let (_, tip_height) = chain.tip().map_err(chain_error)?;
    let on_best = entry.status == BlockStatus::Connected;
    let next = if on_best {
        view.best_hash_at(entry.height + 1).map_err(store_error)?
    } else {
        None
    };
    Ok(HeaderContext {
        height: entry.height,
        confirmations: if on_best {
            i64::from(tip_height) - i64::from(entry.height) + 1
        } else {
            -1
        },
        median_time: chain.median_time_past(hash).map_err(chain_error)?,
        next,
    })
}

pub(super) fn register<F>(module: &mut RpcModule<NodeHandle>, name: &'static str, method: F)
where
    F: Fn(&NodeHandle, Args) -> RpcResult + Send + Sync + 'static,
{
    module
        .register_method(name, move |params, node, _| {
            let args = Args::from(params)?;
            method(node, args)
        })
        .expect("each method name is registered once");
}

pub fn module(node: NodeHandle) -> RpcModule<NodeHandle> {
    module_with(node, None)
}

/// The method table; `data_dir`, when known, is where `size_on_disk` is measured.
pub fn module_with(node: NodeHandle, data_dir: Option<PathBuf>) -> RpcModule<NodeHandle> {
    let mut m = RpcModule::new(node);
    let dir = data_dir.clone();
    register(&mut m, "getblockchaininfo", move |node, args| {
        getblockchaininfo(node, args, dir.as_deref())
    });
    register(&mut m, "getblockcount", |node, _| {
        let (_, height) = node.tip().map_err(chain_error)?;
        Ok(json!(height))
    });
    register(&mut m, "getbestblockhash", |node, _| {
        let (hash, _) = node.tip().map_err(chain_error)?;
        Ok(json!(hash.to_string()))
    });
    register(&mut m, "getblockhash", getblockhash);
    register(&mut m, "getblockheader", getblockheader);
    register(&mut m, "getblock", getblock);
    register(&mut m, "getrawtransaction", getrawtransaction);
    register(&mut m, "sendrawtransaction", sendrawtransaction);
    register(&mut m, "gettxout", gettxout);
    register(&mut m, "listbanned", listbanned);
    register(&mut m, "setnetworkactive", setnetworkactive);
    register(&mut m, "addnode", addnode);
    register(&mut m, "disconnectnode", disconnectnode);
    register(&mut m, "uptime", |node, _| Ok(json!(node.uptime_secs())));
    register(&mut m, "stop", |node, _| {
        node.request_shutdown();
        Ok(json!("trainchain server stopping"))
    });
    register(&mut m, "getcertificate", getcertificate);
    register(&mut m, "gettemplate", gettemplate);
    register(&mut m, "submitblock", submitblock);
    register(&mut m, "getequivocations", getequivocations);
    register(&mut m, "scantxoutset", scantxoutset);
    core::register_all(&mut m, data_dir);
    let missing = core::missing_help(&m);
    assert!(missing.is_empty(), "methods without help: {missing:?}");
    m
}

fn getblockchaininfo(node: &NodeHandle, _: Args, data_dir: Option<&Path>) -> RpcResult {
    node.with_chain(|chain| {
        let (tip, height) = chain.tip().map_err(chain_error)?;
        let params = chain.params();
        let tip_time = chain
            .store()
            .index_entry(&tip)
            .map_err(store_error)?
            .map_or(0, |e| e.time);
        Ok(json!({
            // Core's names (clients parse this into their network enum); ours is `name`.
            "chain": json::chain_name(params.network),
            "name": params.name,
            "chain_id": params.chain_id,
            "network": params.network.to_string(),
            "blocks": height,
            "headers": height,
            "bestblockhash": tip.to_string(),
            "time": tip_time,
            "mediantime": chain.median_time_past(&tip).map_err(chain_error)?,
            "difficulty": json::DIFFICULTY,
            "chainwork": json::chainwork(height),
            "size_on_disk": core::size_on_disk(data_dir),
            "genesisblockhash": params.genesis_hash().to_string(),
            "coinbase_maturity": params.coinbase_maturity_blocks,
            "block_bytes_max": params.block_bytes_max,
            "verificationprogress": 1.0,
            "initialblockdownload": false,
            "pruned": false,
            "warnings": "",
        }))
    })
}

fn getblockhash(node: &NodeHandle, args: Args) -> RpcResult {
    let height: i64 = args.required(0, "height")?;
    let height = u32::try_from(height)
        .map_err(|_| error(codes::INVALID_PARAMETER, "Block height out of range"))?;
    let hash = node
        .with_chain(|chain| chain.store().best_hash_at(height))
        .map_err(store_error)?
        .ok_or_else(|| error(codes::INVALID_PARAMETER, "Block height out of range"))?;
    Ok(json!(hash.to_string()))
}

fn getblockheader(node: &NodeHandle, args: Args) -> RpcResult {
    let hash = args.block_hash(0)?;
    let verbose: bool = args.optional(1, "verbose")?.unwrap_or(true);
    node.with_chain(|chain| {
        let view = chain.store().read().map_err(store_error)?;
        let header = view
            .header(&hash)
            .map_err(store_error)?
            .ok_or_else(|| error(codes::INVALID_ADDRESS_OR_KEY, "Block not found"))?;
        if !verbose {
            return Ok(json!(hex::encode(header.encode())));
        }
        let ctx = header_context(chain, &view, &hash)?;
        let mut object = json::header(&header, &ctx);
        if let Some(block) = view.block(&hash).map_err(store_error)? {
            object.insert("nTx".into(), json!(block.txdata.len()));
        }
        Ok(Value::Object(object))
    })
}

fn getblock(node: &NodeHandle, args: Args) -> RpcResult {
    let hash = args.block_hash(0)?;
    // Core also takes `true`/`false` for 1/0.
    let verbosity = match args.0.get(1) {
        None | Some(Value::Null) => 1,
        Some(Value::Bool(verbose)) => u8::from(*verbose),
        Some(_) => args.required::<u8>(1, "verbosity")?,
    };
    node.with_chain(|chain| {
        let view = chain.store().read().map_err(store_error)?;
        let block = view
            .block(&hash)
            .map_err(store_error)?
            .ok_or_else(|| error(codes::INVALID_ADDRESS_OR_KEY, "Block not found"))?;
        let detail = match verbosity {
            0 => return Ok(json!(hex::encode(block.encode()))),
            1 => TxDetail::Ids,
            2 => TxDetail::Decoded,
            _ => {
                return Err(error(
                    codes::INVALID_PARAMETER,
                    "verbosity must be 0, 1 or 2",
                ))
            }
        };
        let ctx = header_context(chain, &view, &hash)?;
        Ok(json::block(&block, &ctx, chain.params(), detail))
    })
}

pub(super) fn parse_txid(args: &Args, index: usize) -> Result<Txid, ErrorObjectOwned> {
    let text: String = args.required(index, "txid")?;
    Txid::from_str(&text)
        .map_err(|_| error(codes::INVALID_PARAMETER, "txid must be 64 hex characters"))
}

/// Where a confirmed transaction of `getrawtransaction` is, for Core's chain fields.
struct TxBlock {
    hash: BlockHash,
    /// On the best chain: its height and time.
    best: Option<(u32, u32)>,
    tip_height: u32,
}

/// `transaction` in `hash`'s block, as `getrawtransaction` with a block hash reads it (Core's
/// `GetTransaction` with a block index: the block only, never the mempool).
fn transaction_in_block(
    node: &NodeHandle,
    txid: Txid,
    hash: BlockHash,
) -> Result<(Transaction, TxBlock), ErrorObjectOwned> {
    node.with_chain(|chain| {
        let view = chain.store().read().map_err(store_error)?;
        let entry = view
            .index_entry(&hash)
            .map_err(store_error)?
            .ok_or_else(|| error(codes::INVALID_ADDRESS_OR_KEY, "Block hash not found"))?;
        let block = view
            .block(&hash)
            .map_err(store_error)?
            .ok_or_else(|| error(codes::MISC_ERROR, "Block not available"))?;
        let tx = block
            .txdata
            .into_iter()
            .find(|tx| tx.compute_txid() == txid)
            .ok_or_else(|| {
                error(
                    codes::INVALID_ADDRESS_OR_KEY,
                    "No such transaction found in the provided block. Use gettransaction for wallet transactions.",
                )
            })?;
        let (_, tip_height) = chain.tip().map_err(chain_error)?;
        let best = (entry.status == BlockStatus::Connected).then_some((entry.height, entry.time));
        Ok((
            tx,
            TxBlock {
                hash,
                best,
                tip_height,
            },
        ))
    })
}

fn getrawtransaction(node: &NodeHandle, args: Args) -> RpcResult {
    let txid = parse_txid(&args, 0)?;
    let verbose = match args.0.get(1) {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => args.required::<u8>(1, "verbosity")? > 0,
    };
    let network = node.params().network;
    let (tx, block) = if matches!(args.0.get(2), Some(v) if !v.is_null()) {
        let (tx, block) = transaction_in_block(node, txid, args.block_hash(2)?)?;
        (tx, Some(block))
    } else {
        let tx = node
            .with_mempool(|pool| pool.get(&txid).cloned())
            .ok_or_else(|| {
                error(
                    codes::INVALID_ADDRESS_OR_KEY,
                    "No such mempool transaction. Provide the block hash of a confirmed transaction",
                )
            })?;
        (tx, None)
    };
    if !verbose {
        return Ok(json!(serialize_hex(&tx)));
    }
    let mut object = json::transaction(&tx, network);
    if let (Some(block), Value::Object(map)) = (block, &mut object) {
        // Core's `TxToJSON`: the chain fields of a confirmed transaction; a block off the best
        // chain has 0 confirmations and no times.
        map.insert("in_active_chain".into(), json!(block.best.is_some()));
        map.insert("blockhash".into(), json!(block.hash.to_string()));
        match block.best {
            Some((height, time)) => {
                map.insert("confirmations".into(), json!(block.tip_height - height + 1));
                map.insert("time".into(), json!(time));
                map.insert("blocktime".into(), json!(time));
            }
            None => {
                map.insert("confirmations".into(), json!(0));
            }
        }
    }
    Ok(object)
}

fn sendrawtransaction(node: &NodeHandle, args: Args) -> RpcResult {
    let hex_text: String = args.required(0, "hexstring")?;
    let bytes = hex::decode(hex_text.trim())
        .map_err(|_| error(codes::DESERIALIZATION_ERROR, "TX decode failed"))?;
    let tx: Transaction =
        deserialize(&bytes).map_err(|_| error(codes::DESERIALIZATION_ERROR, "TX decode failed"))?;
    match node.submit_transaction(tx.clone()) {
        Ok(txid) => {
            node.send_net(NetCommand::AnnounceTx(Box::new(tx)));
            Ok(json!(txid.to_string()))
        }
        // Core answers an already pooled transaction with its txid (and relays it again).
        Err(SubmitTxError::Mempool(MempoolError::AlreadyInPool(txid))) => {
            Ok(json!(txid.to_string()))
        }
        Err(SubmitTxError::AlreadyConfirmed(_)) => Err(error(
            codes::VERIFY_ALREADY_IN_CHAIN,
            "Transaction already in block chain",
        )),
        Err(SubmitTxError::Mempool(e)) => Err(core::reject_error(&e)),
        Err(SubmitTxError::Chain(e)) => Err(chain_error(e)),
    }
}

fn gettxout(node: &NodeHandle, args: Args) -> RpcResult {
    let txid = parse_txid(&args, 0)?;
    let vout: u32 = args.required(1, "n")?;
    let include_mempool: bool = args.optional(2, "include_mempool")?.unwrap_or(true);
    let outpoint = OutPoint::new(txid, vout);
    let network = node.params().network;
    if include_mempool {
        if node
            .with_mempool(|pool| pool.spender_of(&outpoint))
            .is_some()
        {
            return Ok(Value::Null);
        }
        if let Some(tx) = node.with_mempool(|pool| pool.get(&txid).cloned()) {
            let (tip, _) = node.tip().map_err(chain_error)?;
            return Ok(match tx.output.get(vout as usize) {
                Some(output) => json!({
                    "bestblock": tip.to_string(),
                    "confirmations": 0,
                    "value": json::coins(output.value),
                    "scriptPubKey": json::script_pubkey(&output.script_pubkey, network),
                    "coinbase": false,
                }),
                None => Value::Null,
            });
        }
    }
    node.with_chain(|chain| {
        let (tip, height) = chain.tip().map_err(chain_error)?;
        let Some(coin) = chain.store().coin(&outpoint).map_err(store_error)? else {
            return Ok(Value::Null);
        };
        Ok(json!({
            "bestblock": tip.to_string(),
            "confirmations": height.saturating_sub(coin.height) + 1,
            "value": json::coins(coin.output.value),
            "scriptPubKey": json::script_pubkey(&coin.output.script_pubkey, network),
            "coinbase": coin.is_coinbase,
        }))
    })
}

fn listbanned(node: &NodeHandle, _: Args) -> RpcResult {
    let banned: Vec<Value> = node
        .network()
        .banned
        .iter()
        .map(|b| {
            json!({
                "address": b.peer_id,
                "banned_until": b.banned_until_unix_secs,
                "ban_reason": b.reason,
            })
        })
        .collect();
    Ok(Value::Array(banned))
}

fn setnetworkactive(node: &NodeHandle, args: Args) -> RpcResult {
    let active: bool = args.required(0, "state")?;
    node.send_net(NetCommand::SetActive(if active {
        NetworkActivity::Active
    } else {
        NetworkActivity::Inactive
    }));
    Ok(json!(active))
}

fn addnode(node: &NodeHandle, args: Args) -> RpcResult {
    let addr: String = args.required(0, "node")?;
    let command: String = args
        .optional(1, "command")?
        .unwrap_or_else(|| "onetry".into());
    if command != "onetry" && command != "add" {
        return Err(error(
            codes::INVALID_PARAMETER,
            "command must be \"onetry\" or \"add\"",
        ));
    }
    let addr: libp2p::Multiaddr = addr.parse().map_err(|e| {
        error(
            codes::CLIENT_INVALID_IP_OR_SUBNET,
            format!("not a multiaddr: {e}"),
        )
    })?;
    node.send_net(NetCommand::Dial(addr));
    Ok(Value::Null)
}

fn disconnectnode(node: &NodeHandle, args: Args) -> RpcResult {
    let peer: String = args.required(0, "peer_id")?;
    let peer: libp2p::PeerId = peer
        .parse()
        .map_err(|_| error(codes::INVALID_PARAMETER, "not a peer id"))?;
    if !node
        .network()
        .peers
        .iter()
        .any(|p| p.peer_id == peer.to_string())
    {
        return Err(error(
            codes::CLIENT_NODE_NOT_CONNECTED,
            "Node not found in connected nodes",
        ));
    }
    node.send_net(NetCommand::Disconnect(peer));
    Ok(Value::Null)
}

fn getcertificate(node: &NodeHandle, args: Args) -> RpcResult {
    let hash = args.block_hash(0)?;
    let header = node
        .with_chain(|chain| chain.store().header(&hash))
        .map_err(store_error)?
        .ok_or_else(|| error(codes::INVALID_ADDRESS_OR_KEY, "Block not found"))?;
    let mut object = json::certificate(&header.certificate, node.params());
    if let Value::Object(map) = &mut object {
        // Bound to this block's height and parent, as the block rules require.
        let bound = header.certificate.body.prev_block_hash == header.prev_block_hash;
        map.insert("blockhash".into(), json!(hash.to_string()));
        map.insert("bound_to_block".into(), json!(bound));
    }
    Ok(object)
}

pub(super) fn payout_script(node: &NodeHandle, text: &str) -> Result<ScriptBuf, ErrorObjectOwned> {
    let address = text
        .parse::<Address<_>>()
        .map_err(|e| {
            error(
                codes::INVALID_ADDRESS_OR_KEY,
                format!("Invalid address: {e}"),
            )
        })?
        .require_network(node.params().network)
        .map_err(|_| {
            error(
                codes::INVALID_ADDRESS_OR_KEY,
                "Address is for another network",
            )
        })?;
    Ok(address.script_pubkey())
}

fn gettemplate(node: &NodeHandle, args: Args) -> RpcResult {
    let address: String = args.required(0, "payout_address")?;
    let script = payout_script(node, &address)?;
    let template = node.template(script).map_err(chain_error)?;
    let transactions: Vec<Value> = template
        .transactions
        .iter()
        .map(|(tx, fee)| {
            json!({
                "data": serialize_hex(tx),
                "txid": tx.compute_txid().to_string(),
                "hash": tx.compute_wtxid().to_string(),
                "fee": fee.to_sat(),
                "size": tx.total_size(),
            })
        })
        .collect();
    Ok(json!({
        "height": template.height,
        "previousblockhash": template.prev_hash.to_string(),
        "curtime": template.cur_time,
        "mintime": template.min_time,
        "mediantime": template.median_time_past,
        "coinbasevalue": (template.subsidy + template.fees).to_sat(),
        "subsidy": template.subsidy.to_sat(),
        "fees": template.fees.to_sat(),
        "coinbasetxn": {
            "data": serialize_hex(&template.coinbase),
            "txid": template.coinbase.compute_txid().to_string(),
        },
        "transactions": transactions,
        "sizelimit": template.block_bytes_max,
        "chain_id": node.params().chain_id,
    }))
}

fn submitblock(node: &NodeHandle, args: Args) -> RpcResult {
    let hex_text: String = args.required(0, "hexdata")?;
    let bytes = hex::decode(hex_text.trim())
        .map_err(|_| error(codes::DESERIALIZATION_ERROR, "Block decode failed"))?;
    let block = Block::decode(&bytes).map_err(|e| {
        error(
            codes::DESERIALIZATION_ERROR,
            format!("Block decode failed: {e}"),
        )
    })?;
    // BIP22 results: null when accepted, otherwise a reason string.
    match node.process_block(block.clone()) {
        Ok(BlockOutcome::NewTip { .. }) => {
            node.send_net(NetCommand::AnnounceBlock(Box::new(block)));
            Ok(Value::Null)
        }
        Ok(BlockOutcome::SideBranch) => {
            node.send_net(NetCommand::AnnounceBlock(Box::new(block)));
            Ok(json!("inconclusive"))
        }
        Ok(BlockOutcome::AlreadyKnown) => Ok(json!("duplicate")),
        Err(ChainError::Orphan { .. }) => Ok(json!("prev-blk-not-found")),
        Err(ChainError::KnownInvalid { .. }) => Ok(json!("duplicate-invalid")),
        Err(ChainError::InvalidAncestor { .. }) => Ok(json!("bad-prevblk")),
        Err(ChainError::Invalid { error, .. }) => Ok(json!(format!("rejected: {error}"))),
        Err(e) => Err(chain_error(e)),
    }
}

fn getequivocations(node: &NodeHandle, _: Args) -> RpcResult {
    let evidence = node
        .with_chain(|chain| chain.equivocations())
        .map_err(chain_error)?;
    let params = node.params();
    let list: Vec<Value> = evidence
        .iter()
        .map(|e| {
            let slot = e.slot();
            let (first, second) = e.certificates();
            json!({
                "cycle": slot.cycle,
                "height": slot.height,
                "attempt": slot.attempt,
                "first": json::certificate(first, params),
                "second": json::certificate(second, params),
                "evidence": hex::encode(e.encode()),
            })
        })
        .collect();
    Ok(Value::Array(list))
}

/// Scan objects per `scantxoutset` call: each is parsed and held while the coin set is scanned
/// under the node lock; a hundred covers any wallet's addresses.
pub const SCAN_OBJECTS_MAX: usize = 100;

/// Core's `scantxoutset "start" ["addr(ADDRESS)", "raw(HEX)", ...]` over the coin set.
fn scantxoutset(node: &NodeHandle, args: Args) -> RpcResult {
    let action: String = args.required(0, "action")?;
    if action != "start" {
        return Err(error(
            codes::INVALID_PARAMETER,
            "only the \"start\" action is supported (scans finish at once)",
        ));
    }
    let descriptors: Vec<String> = args.required(1, "scanobjects")?;
    if descriptors.len() > SCAN_OBJECTS_MAX {
        return Err(error(
            codes::INVALID_PARAMETER,
            format!("at most {SCAN_OBJECTS_MAX} scan objects per call"),
        ));
    }
    // One entry per distinct script (the first descriptor naming it is reported).
    let mut scripts: HashMap<ScriptBuf, String> = HashMap::new();
    for descriptor in &descriptors {
        let script = if let Some(addr) = descriptor
            .strip_prefix("addr(")
            .and_then(|d| d.strip_suffix(')'))
        {
            payout_script(node, addr)?
        } else if let Some(raw) = descriptor
            .strip_prefix("raw(")
            .and_then(|d| d.strip_suffix(')'))
        {
            ScriptBuf::from_bytes(
                hex::decode(raw).map_err(|_| error(codes::INVALID_PARAMETER, "raw() needs hex"))?,
            )
        } else {
            return Err(error(
                codes::INVALID_PARAMETER,
                format!("unsupported descriptor {descriptor}: use addr(...) or raw(...)"),
            ));
        };
        scripts.entry(script).or_insert_with(|| descriptor.clone());
    }
    node.with_chain(|chain| {
        let view = chain.store().read().map_err(store_error)?;
        let (tip, height) = chain.tip().map_err(chain_error)?;
        let mut unspents = Vec::new();
        let mut total = bitcoin::Amount::ZERO;
        // One pass over the coin set, whatever the number of scripts.
        let found = view
            .coins_where(|coin| scripts.contains_key(&coin.output.script_pubkey))
            .map_err(store_error)?;
        for (outpoint, coin) in found {
            let descriptor = &scripts[&coin.output.script_pubkey];
            total = total
                .checked_add(coin.output.value)
                .ok_or_else(|| error(codes::MISC_ERROR, "total amount overflows"))?;
            unspents.push(json!({
                "txid": outpoint.txid.to_string(),
                "vout": outpoint.vout,
                "scriptPubKey": hex::encode(coin.output.script_pubkey.as_bytes()),
                "desc": descriptor,
                "amount": json::coins(coin.output.value),
                "coinbase": coin.is_coinbase,
                "height": coin.height,
            }));
        }
        Ok(json!({
            "success": true,
            "height": height,
            "bestblock": tip.to_string(),
            "unspents": unspents,
            "total_amount": json::coins(total),
        }))
    })
}
