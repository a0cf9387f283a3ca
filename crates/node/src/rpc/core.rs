//! The Bitcoin Core methods stock clients call beyond the node's own set, and Core's full
//! shapes of the network and mempool methods. Every value comes from chain state, the mempool
//! or the network snapshot; where Bitcoin's concept does not exist here the value is a
//! constant documented in docs/protocol.md ("RPC: Bitcoin Core compatibility").

use super::codes;
use super::json;
use super::methods::{chain_error, error, parse_txid, register, store_error, Args, RpcResult};
use crate::chain::ChainState;
use crate::mempool::{Mempool, MempoolError};
use crate::service::{now_unix_secs, NetworkActivity, NodeHandle};
use bitcoin::consensus::encode::{deserialize, serialize};
use bitcoin::hashes::{sha256d, Hash};
use bitcoin::{Address, Amount, FeeRate, OutPoint, ScriptBuf, Transaction, Txid};
use consensus::TxError;
use jsonrpsee::types::ErrorObjectOwned;
use jsonrpsee::RpcModule;
use serde_json::{json, Map, Value};
use std::collections::{BTreeSet, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use storage::BlockStatus;

/// `testmempoolaccept` takes at most this many transactions per call (Core's
/// `MAX_PACKAGE_COUNT`); each is validated against a copy of the pool under the node lock.
pub const TEST_ACCEPT_TXS_MAX: usize = 25;

/// Largest `conf_target` of `estimatesmartfee` (Core's: 1008 blocks, a week of Bitcoin blocks).
pub const CONF_TARGET_MAX: u32 = 1008;

/// `testmempoolaccept`'s default `maxfeerate`, 0.10 coin per kvB (Core's
/// `DEFAULT_MAX_RAW_TX_FEE_RATE`): refuses a fee that is almost surely a mistake.
pub const DEFAULT_MAX_FEE_RATE_SAT_PER_KVB: u64 = 10_000_000;

/// `protocolversion` of `getnetworkinfo` and `version` of `getpeerinfo`: the version of the
/// sync protocol (`p2p::wire::SYNC_PROTOCOL`, `/trainchain/sync/1`). Not Bitcoin's numbering.
pub const PROTOCOL_VERSION: u32 = 1;

/// `services`/`localservices`: none of Bitcoin's service bits apply (the network is libp2p).
const NO_SERVICES: &str = "0000000000000000";

/// Bytes Core's `bogosize` counts per coin besides its script (txid, vout, height, amount,
/// script length): an implementation-independent measure of the coin set.
const BOGOSIZE_PER_COIN: usize = 50;

/// Every method with its synopsis (`help` and `help <method>`); registration checks that each
/// registered method has one.
pub const HELP: &[(&str, &str)] = &[
    ("getblockchaininfo", "getblockchaininfo\nState of the chain (Core's fields)."),
    ("getblockcount", "getblockcount\nHeight of the best chain."),
    ("getbestblockhash", "getbestblockhash\nHash of the best chain's tip."),
    ("getblockhash", "getblockhash height\nHash of the best-chain block at height."),
    ("getblockheader", "getblockheader \"blockhash\" ( verbose )\nA header, as JSON or hex."),
    ("getblock", "getblock \"blockhash\" ( verbosity )\nA block: 0 hex, 1 txids, 2 decoded."),
    ("getrawtransaction", "getrawtransaction \"txid\" ( verbose \"blockhash\" )\nA pooled or confirmed transaction."),
    ("sendrawtransaction", "sendrawtransaction \"hexstring\"\nValidates, pools and relays a transaction."),
    ("testmempoolaccept", "testmempoolaccept [\"rawtx\",...] ( maxfeerate )\nWould the pool take these transactions (in order)?"),
    ("decoderawtransaction", "decoderawtransaction \"hexstring\"\nDecodes a transaction."),
    ("decodescript", "decodescript \"hexstring\"\nDecodes a script."),
    ("validateaddress", "validateaddress \"address\"\nIs this an address of this chain's network?"),
    ("gettxout", "gettxout \"txid\" n ( include_mempool )\nAn unspent output."),
    ("gettxoutsetinfo", "gettxoutsetinfo\nStatistics of the coin set."),
    ("scantxoutset", "scantxoutset \"start\" [\"addr(ADDRESS)\"|\"raw(HEX)\",...]\nCoins paying these scripts."),
    ("getmempoolinfo", "getmempoolinfo\nState of the mempool."),
    ("getrawmempool", "getrawmempool ( verbose )\nPooled txids, or entries by txid."),
    ("getmempoolentry", "getmempoolentry \"txid\"\nOne pooled transaction's entry."),
    ("estimatesmartfee", "estimatesmartfee conf_target ( \"estimate_mode\" )\nFee rate (coins/kvB) to be mined within conf_target blocks, from the pool."),
    ("getchaintips", "getchaintips\nEvery known branch tip."),
    ("getdifficulty", "getdifficulty\nAlways 1.0: there is no proof of work."),
    ("getmininginfo", "getmininginfo\nMining state (blocks come from certified training, not hashing)."),
    ("getpeerinfo", "getpeerinfo\nConnected peers."),
    ("getconnectioncount", "getconnectioncount\nNumber of connected peers."),
    ("getnetworkinfo", "getnetworkinfo\nState of the p2p network."),
    ("listbanned", "listbanned\nBanned peers."),
    ("setnetworkactive", "setnetworkactive state\nEnables or disables all p2p traffic."),
    ("addnode", "addnode \"multiaddr\" ( \"onetry\"|\"add\" )\nDials a peer."),
    ("disconnectnode", "disconnectnode \"peer_id\"\nCloses a peer's connection."),
    ("uptime", "uptime\nSeconds since the node started."),
    ("stop", "stop\nStops the node."),
    ("help", "help ( \"command\" )\nThis list, or one method's synopsis."),
    ("getcertificate", "getcertificate \"blockhash\"\nA block's certificate, checked."),
    ("gettemplate", "gettemplate \"payout_address\"\nA block template for a certificate holder."),
    ("submitblock", "submitblock \"hexdata\"\nSubmits a block (BIP22 results)."),
    ("getequivocations", "getequivocations\nEvidence of coordinators signing two certificates for one slot."),
];

/// Registers the methods of this file. `data_dir` (when the caller knows it) is where
/// `size_on_disk` and `disk_size` are measured.
pub fn register_all(module: &mut RpcModule<NodeHandle>, data_dir: Option<PathBuf>) {
    let data_dir = Arc::new(data_dir);
    register(module, "getmempoolinfo", getmempoolinfo);
    register(module, "getrawmempool", getrawmempool);
    register(module, "getmempoolentry", getmempoolentry);
    register(module, "getpeerinfo", getpeerinfo);
    register(module, "getconnectioncount", |node, _| {
        Ok(json!(node.network().peers.len()))
    });
    register(module, "getnetworkinfo", getnetworkinfo);
    register(module, "getdifficulty", |_, _| Ok(json!(json::DIFFICULTY)));
    register(module, "getmininginfo", getmininginfo);
    register(module, "getchaintips", getchaintips);
    let dir = data_dir.clone();
    register(module, "gettxoutsetinfo", move |node, args| {
        gettxoutsetinfo(node, args, dir.as_deref())
    });
    register(module, "estimatesmartfee", estimatesmartfee);
    register(module, "validateaddress", validateaddress);
    register(module, "decoderawtransaction", decoderawtransaction);
    register(module, "decodescript", decodescript);
    register(module, "testmempoolaccept", testmempoolaccept);
    register(module, "help", help);
}

/// Bytes of the node's files in its data directory (chain store, mempool, ban list); 0 when
/// the server was started without one (in-process tests).
pub fn size_on_disk(data_dir: Option<&Path>) -> u64 {
    let Some(dir) = data_dir else { return 0 };
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|e| e.metadata().ok())
        .filter(|m| m.is_file())
        .map(|m| m.len())
        .sum()
}

/// Core's code for a refused transaction: -25 (`RPC_TRANSACTION_ERROR`) when an input is
/// missing, -26 (`RPC_TRANSACTION_REJECTED`) for every other policy or consensus rejection
/// (a bad signature included), as `RPCErrorFromTransactionError` does.
pub fn reject_error(e: &MempoolError) -> ErrorObjectOwned {
    match e {
        MempoolError::Invalid(TxError::MissingInput(_)) => error(
            codes::VERIFY_ERROR,
            format!("bad-txns-inputs-missingorspent: {e}"),
        ),
        _ => error(codes::VERIFY_REJECTED, e.to_string()),
    }
}

/// Core's `reject-reason` token where one exists, else this node's message.
fn reject_reason(e: &MempoolError) -> String {
    match e {
        MempoolError::Invalid(TxError::MissingInput(_)) => "missing-inputs".into(),
        MempoolError::AlreadyInPool(_) => "txn-already-in-mempool".into(),
        MempoolError::Conflict { .. } => "txn-mempool-conflict".into(),
        MempoolError::FeeRateTooLow { .. } => "min relay fee not met".into(),
        MempoolError::TooManyAncestors { .. } => "too-long-mempool-chain".into(),
        MempoolError::PoolFull => "mempool full".into(),
        other => other.to_string(),
    }
}

/// A fee rate as Core prints one: coins per 1000 virtual bytes.
fn per_kvb(rate: FeeRate) -> Value {
    json::coins(Amount::from_sat(rate.to_sat_per_kwu() * 4))
}

fn getmempoolinfo(node: &NodeHandle, _: Args) -> RpcResult {
    let info = node.mempool_info();
    let total_fee = node.with_mempool(|pool| {
        pool.txids()
            .iter()
            .filter_map(|t| pool.entry(t))
            .map(|e| e.fee())
            .sum::<Amount>()
    });
    Ok(json!({
        "loaded": true,
        "size": info.count,
        "bytes": info.bytes,
        // Serialized bytes of pooled transactions; the pool's own limit counts the same.
        "usage": info.bytes,
        "total_fee": json::coins(total_fee),
        "maxmempool": info.bytes_max,
        "maxcount": info.count_max,
        "mempoolminfee": per_kvb(info.min_fee_rate),
        "minrelaytxfee": per_kvb(info.min_fee_rate),
        // The pool's eviction margin is its minimum fee rate (see `MempoolLimits`).
        "incrementalrelayfee": per_kvb(info.min_fee_rate),
        // Accepted transactions are announced at once; nothing waits to be broadcast.
        "unbroadcastcount": 0,
        // There is no replacement: a conflicting spend is refused.
        "fullrbf": false,
    }))
}

/// What an entry's JSON needs from the pool, read under the mempool lock.
struct EntryFacts {
    tx: Transaction,
    fee: Amount,
    entry_secs: u64,
    depends: Vec<Txid>,
    spent_by: Vec<Txid>,
    ancestors: Vec<(usize, Amount)>,
    descendants: Vec<(usize, Amount)>,
}

/// Pooled transactions reachable from `start` through `next` (parents or children), `start`
/// included, as (vsize, fee): Core counts the entry itself in both sets.
fn closure(
    pool: &Mempool,
    start: Txid,
    next: impl Fn(&Transaction) -> Vec<Txid>,
) -> Vec<(usize, Amount)> {
    let mut seen = HashSet::from([start]);
    let mut stack = vec![start];
    let mut out = Vec::new();
    while let Some(txid) = stack.pop() {
        let Some(entry) = pool.entry(&txid) else {
            continue;
        };
        out.push((entry.tx().vsize(), entry.fee()));
        for other in next(entry.tx()) {
            if seen.insert(other) {
                stack.push(other);
            }
        }
    }
    out
}

fn parents_in(pool: &Mempool, tx: &Transaction) -> Vec<Txid> {
    let parents: BTreeSet<Txid> = tx
        .input
        .iter()
        .map(|i| i.previous_output.txid)
        .filter(|t| pool.contains(t))
        .collect();
    parents.into_iter().collect()
}

fn children_in(pool: &Mempool, tx: &Transaction) -> Vec<Txid> {
    let txid = tx.compute_txid();
    let children: BTreeSet<Txid> = (0..tx.output.len() as u32)
        .filter_map(|vout| pool.spender_of(&OutPoint::new(txid, vout)))
        .collect();
    children.into_iter().collect()
}

fn entry_facts(pool: &Mempool, txid: &Txid) -> Option<EntryFacts> {
    let entry = pool.entry(txid)?;
    let tx = entry.tx().clone();
    Some(EntryFacts {
        depends: parents_in(pool, &tx),
        spent_by: children_in(pool, &tx),
        ancestors: closure(pool, *txid, |t| parents_in(pool, t)),
        descendants: closure(pool, *txid, |t| children_in(pool, t)),
        fee: entry.fee(),
        entry_secs: entry.entry_secs(),
        tx,
    })
}

/// Height of the best chain's last block with a time at or before `secs`: the pool does not
/// record the height a transaction entered at, and block times are nearly monotonic (median
/// time past rises), so a binary search over the best chain finds it.
fn height_at_time(chain: &ChainState, secs: u64) -> Result<u32, ErrorObjectOwned> {
    let (_, tip) = chain.tip().map_err(chain_error)?;
    let view = chain.store().read().map_err(store_error)?;
    let time_at = |height: u32| -> Result<u64, ErrorObjectOwned> {
        let hash = view
            .best_hash_at(height)
            .map_err(store_error)?
            .ok_or_else(|| error(codes::DATABASE_ERROR, "best chain has a gap"))?;
        Ok(view
            .index_entry(&hash)
            .map_err(store_error)?
            .map_or(0, |e| u64::from(e.time)))
    };
    let (mut low, mut high) = (0u32, tip);
    while low < high {
        let mid = low + (high - low).div_ceil(2);
        if time_at(mid)? <= secs {
            low = mid;
        } else {
            high = mid - 1;
        }
    }
    Ok(low)
}

fn entry_json(facts: &EntryFacts, height: u32) -> Value {
    let sum = |set: &[(usize, Amount)]| -> (usize, Amount) {
        set.iter().fold((0, Amount::ZERO), |(s, f), (size, fee)| {
            (s + size, f + *fee)
        })
    };
    let (ancestor_size, ancestor_fees) = sum(&facts.ancestors);
    let (descendant_size, descendant_fees) = sum(&facts.descendants);
    json!({
        "vsize": facts.tx.vsize(),
        "weight": facts.tx.weight().to_wu(),
        "time": facts.entry_secs,
        "height": height,
        "descendantcount": facts.descendants.len(),
        "descendantsize": descendant_size,
        "ancestorcount": facts.ancestors.len(),
        "ancestorsize": ancestor_size,
        "wtxid": facts.tx.compute_wtxid().to_string(),
        "fees": {
            "base": json::coins(facts.fee),
            "modified": json::coins(facts.fee),
            "ancestor": json::coins(ancestor_fees),
            "descendant": json::coins(descendant_fees),
        },
        "depends": facts.depends.iter().map(|t| t.to_string()).collect::<Vec<_>>(),
        "spentby": facts.spent_by.iter().map(|t| t.to_string()).collect::<Vec<_>>(),
        "bip125-replaceable": false,
        "unbroadcast": false,
    })
}

fn getrawmempool(node: &NodeHandle, args: Args) -> RpcResult {
    let verbose: bool = args.optional(0, "verbose")?.unwrap_or(false);
    let facts: Vec<(Txid, Option<EntryFacts>)> = node.with_mempool(|pool| {
        let mut txids = pool.txids();
        txids.sort();
        txids
            .into_iter()
            .map(|t| (t, verbose.then(|| entry_facts(pool, &t)).flatten()))
            .collect()
    });
    if !verbose {
        return Ok(json!(facts
            .iter()
            .map(|(t, _)| t.to_string())
            .collect::<Vec<_>>()));
    }
    node.with_chain(|chain| {
        let mut map = Map::new();
        for (txid, facts) in facts {
            if let Some(facts) = facts {
                let height = height_at_time(chain, facts.entry_secs)?;
                map.insert(txid.to_string(), entry_json(&facts, height));
            }
        }
        Ok(Value::Object(map))
    })
}

fn getmempoolentry(node: &NodeHandle, args: Args) -> RpcResult {
    let txid = parse_txid(&args, 0)?;
    let facts = node
        .with_mempool(|pool| entry_facts(pool, &txid))
        .ok_or_else(|| error(codes::INVALID_ADDRESS_OR_KEY, "Transaction not in mempool"))?;
    let height = node.with_chain(|chain| height_at_time(chain, facts.entry_secs))?;
    Ok(entry_json(&facts, height))
}

fn getpeerinfo(node: &NodeHandle, _: Args) -> RpcResult {
    let peers: Vec<Value> = node
        .network()
        .peers
        .iter()
        .enumerate()
        .map(|(id, p)| {
            json!({
                "id": id,
                "addr": p.addr,
                "peer_id": p.peer_id,
                "services": NO_SERVICES,
                "servicesnames": [],
                // Transactions are gossiped to every peer.
                "relaytxes": true,
                "conntime": p.connected_unix_secs,
                "version": PROTOCOL_VERSION,
                "subver": p.agent,
                "inbound": p.inbound,
                "connection_type": if p.inbound { "inbound" } else { "outbound-full-relay" },
                "misbehavior": p.misbehavior,
            })
        })
        .collect();
    Ok(Value::Array(peers))
}

/// `getnetworkinfo.version`: the Bitcoin Core release whose RPC reply shapes this node gives
/// (28.0, `10000 * major + 100 * minor`). Clients branch on it to pick a reply format: the
/// `bitcoincore-rpc` crate, for one, parses `getblockchaininfo` the pre-0.19 way below 190000.
/// This node's own version is in `subversion`.
pub const CORE_API_VERSION: u64 = 280_000;

/// `{address, port, score}` for a listen multiaddr with an IP and a TCP port.
fn local_address(multiaddr: &str) -> Option<Value> {
    use libp2p::multiaddr::Protocol;
    let addr: libp2p::Multiaddr = multiaddr.parse().ok()?;
    let mut ip = None;
    let mut port = None;
    for protocol in addr.iter() {
        match protocol {
            Protocol::Ip4(a) => ip = Some(a.to_string()),
            Protocol::Ip6(a) => ip = Some(a.to_string()),
            Protocol::Tcp(p) => port = Some(p),
            _ => {}
        }
    }
    Some(json!({ "address": ip?, "port": port?, "score": 1 }))
}

fn getnetworkinfo(node: &NodeHandle, _: Args) -> RpcResult {
    let status = node.network();
    let relay_fee = per_kvb(node.mempool_info().min_fee_rate);
    let network = |name: &str, reachable: bool| {
        json!({
            "name": name,
            "limited": !reachable,
            "reachable": reachable,
            "proxy": "",
            "proxy_randomize_credentials": false,
        })
    };
    let local: Vec<Value> = status
        .listen_addrs
        .iter()
        .filter_map(|a| local_address(a))
        .collect();
    Ok(json!({
        "version": CORE_API_VERSION,
        "subversion": format!("/trainchain:{}/", env!("CARGO_PKG_VERSION")),
        "protocolversion": PROTOCOL_VERSION,
        "localservices": NO_SERVICES,
        "localservicesnames": [],
        "localrelay": true,
        // Peers' clocks are not compared; blocks carry their own time rules.
        "timeoffset": 0,
        "networkactive": status.active == NetworkActivity::Active,
        "connections": status.peers.len(),
        "connections_in": status.peers.iter().filter(|p| p.inbound).count(),
        "connections_out": status.peers.iter().filter(|p| !p.inbound).count(),
        "networks": [network("ipv4", true), network("ipv6", true), network("onion", false), network("i2p", false), network("cjdns", false)],
        "relayfee": relay_fee,
        "incrementalfee": relay_fee,
        "localaddresses": local,
        "localpeerid": status.local_peer_id,
        "listenaddrs": status.listen_addrs,
        "warnings": "",
    }))
}

fn getmininginfo(node: &NodeHandle, _: Args) -> RpcResult {
    let (_, height) = node.tip().map_err(chain_error)?;
    Ok(json!({
        "blocks": height,
        "difficulty": json::DIFFICULTY,
        // Nothing is hashed: blocks are won by certified training.
        "networkhashps": 0,
        "pooledtx": node.mempool_info().count,
        "chain": json::chain_name(node.params().network),
        "warnings": "",
    }))
}

fn getchaintips(node: &NodeHandle, _: Args) -> RpcResult {
    node.with_chain(|chain| {
        let view = chain.store().read().map_err(store_error)?;
        let (best, _) = chain.tip().map_err(chain_error)?;
        let entries: std::collections::HashMap<_, _> = view
            .index_entries()
            .map_err(store_error)?
            .into_iter()
            .collect();
        let parents: HashSet<_> = entries.values().map(|e| e.prev).collect();
        let mut tips = Vec::new();
        for (hash, entry) in &entries {
            if parents.contains(hash) && *hash != best {
                continue;
            }
            // Blocks back to the best chain (each index entry is visited at most once).
            let mut branch_len = 0u32;
            let mut cursor = *entry;
            while cursor.status != BlockStatus::Connected && branch_len as usize <= entries.len() {
                branch_len += 1;
                match entries.get(&cursor.prev) {
                    Some(parent) => cursor = *parent,
                    None => break,
                }
            }
            let status = match entry.status {
                BlockStatus::Connected => "active",
                BlockStatus::Stored => "valid-headers",
                BlockStatus::HeaderOnly => "headers-only",
                BlockStatus::Invalid(_) => "invalid",
            };
            tips.push((
                entry.height,
                json!({
                    "height": entry.height,
                    "hash": hash.to_string(),
                    "branchlen": branch_len,
                    "status": status,
                }),
            ));
        }
        tips.sort_by_key(|t| std::cmp::Reverse(t.0));
        Ok(Value::Array(tips.into_iter().map(|(_, t)| t).collect()))
    })
}

fn gettxoutsetinfo(node: &NodeHandle, _: Args, data_dir: Option<&Path>) -> RpcResult {
    node.with_chain(|chain| {
        let view = chain.store().read().map_err(store_error)?;
        let (tip, height) = chain.tip().map_err(chain_error)?;
        let mut coins = view.all_coins().map_err(store_error)?;
        // Core's order: by txid (internal byte order), then output index.
        coins.sort_by(|(a, _), (b, _)| {
            (a.txid.as_byte_array(), a.vout).cmp(&(b.txid.as_byte_array(), b.vout))
        });
        let mut engine = sha256d::Hash::engine();
        let mut total = Amount::ZERO;
        let mut bogosize = 0usize;
        let mut txids = HashSet::new();
        for (outpoint, coin) in &coins {
            use bitcoin::hashes::HashEngine;
            // Core's `TxOutSer`: outpoint, height * 2 + coinbase, then the output.
            engine.input(&serialize(outpoint));
            engine.input(&(coin.height * 2 + u32::from(coin.is_coinbase)).to_le_bytes());
            engine.input(&serialize(&coin.output));
            total = total
                .checked_add(coin.output.value)
                .ok_or_else(|| error(codes::MISC_ERROR, "total amount overflows"))?;
            bogosize += BOGOSIZE_PER_COIN + coin.output.script_pubkey.len();
            txids.insert(outpoint.txid);
        }
        let hash = sha256d::Hash::from_engine(engine);
        Ok(json!({
            "height": height,
            "bestblock": tip.to_string(),
            "txouts": coins.len(),
            "transactions": txids.len(),
            "bogosize": bogosize,
            "hash_serialized_3": bitcoin::hashes::sha256d::Hash::from_byte_array(hash.to_byte_array()).to_string(),
            "total_amount": json::coins(total),
            "disk_size": size_on_disk(data_dir),
        }))
    })
}

fn estimatesmartfee(node: &NodeHandle, args: Args) -> RpcResult {
    let target: i64 = args.required(0, "conf_target")?;
    if target < 1 {
        return Err(error(
            codes::INVALID_PARAMETER,
            "Invalid conf_target, must be between 1 and 1008",
        ));
    }
    let target = u32::try_from(target)
        .unwrap_or(CONF_TARGET_MAX)
        .min(CONF_TARGET_MAX);
    if let Some(mode) = args.optional::<String>(1, "estimate_mode")? {
        if !["unset", "economical", "conservative"].contains(&mode.to_lowercase().as_str()) {
            return Err(error(codes::INVALID_PARAMETER, "Invalid estimate_mode parameter, must be one of: \"unset\", \"economical\", \"conservative\""));
        }
    }
    let info = node.mempool_info();
    let block_bytes = node.params().block_bytes_max as usize;
    // The pool's transactions by fee rate, highest first: the next `target` blocks take the
    // first `target * block_bytes` of them, so a transaction outbidding the one at that
    // position is mined within the target. With room to spare, the minimum fee rate is enough.
    let mut rates: Vec<(FeeRate, usize)> = node.with_mempool(|pool| {
        pool.txids()
            .iter()
            .filter_map(|t| pool.entry(t))
            .map(|e| (e.fee_rate(), e.bytes()))
            .collect()
    });
    rates.sort_by_key(|r| std::cmp::Reverse(r.0));
    let room = block_bytes.saturating_mul(target as usize);
    let mut filled = 0usize;
    let mut rate = info.min_fee_rate;
    for (entry_rate, bytes) in rates {
        filled += bytes;
        if filled > room {
            // One unit above the last transaction that does not fit.
            rate =
                FeeRate::from_sat_per_kwu(entry_rate.to_sat_per_kwu() + 1).max(info.min_fee_rate);
            break;
        }
    }
    Ok(json!({ "feerate": per_kvb(rate), "blocks": target }))
}

fn validateaddress(node: &NodeHandle, args: Args) -> RpcResult {
    let text: String = args.required(0, "address")?;
    let network = node.params().network;
    let parsed = text
        .parse::<Address<_>>()
        .map_err(|e| e.to_string())
        .and_then(|a| {
            a.require_network(network)
                .map_err(|_| format!("address is not for {}", json::chain_name(network)))
        });
    Ok(match parsed {
        Ok(address) => {
            let script = address.script_pubkey();
            let mut object = json!({
                "isvalid": true,
                "address": address.to_string(),
                "scriptPubKey": hex::encode(script.as_bytes()),
                "isscript": script.is_p2sh() || script.is_p2wsh(),
                "iswitness": script.is_witness_program(),
            });
            if let Some(program) = address.witness_program() {
                object["witness_version"] = json!(program.version().to_num());
                object["witness_program"] = json!(hex::encode(program.program().as_bytes()));
            }
            object
        }
        Err(reason) => json!({ "isvalid": false, "error_locations": [], "error": reason }),
    })
}

fn decode_hex(args: &Args, what: &str) -> Result<Vec<u8>, ErrorObjectOwned> {
    let text: String = args.required(0, "hexstring")?;
    hex::decode(text.trim()).map_err(|_| {
        error(
            codes::DESERIALIZATION_ERROR,
            format!("{what} decode failed"),
        )
    })
}

fn decoderawtransaction(node: &NodeHandle, args: Args) -> RpcResult {
    let bytes = decode_hex(&args, "TX")?;
    let tx: Transaction =
        deserialize(&bytes).map_err(|_| error(codes::DESERIALIZATION_ERROR, "TX decode failed"))?;
    let mut object = json::transaction(&tx, node.params().network);
    // Core's decoderawtransaction repeats no hex (the caller has it).
    if let Value::Object(map) = &mut object {
        map.remove("hex");
    }
    Ok(object)
}

fn decodescript(node: &NodeHandle, args: Args) -> RpcResult {
    let script = ScriptBuf::from_bytes(decode_hex(&args, "Script")?);
    let network = node.params().network;
    let mut object = json::script_pubkey(&script, network);
    if let Value::Object(map) = &mut object {
        map.remove("hex");
        // Core 28: `desc`, and the P2SH and segwit wrappings of scripts that can be wrapped.
        map.extend(super::descriptor::decodescript_extras(&script, network));
    }
    Ok(object)
}

fn testmempoolaccept(node: &NodeHandle, args: Args) -> RpcResult {
    let raw: Vec<String> = args.required(0, "rawtxs")?;
    if raw.is_empty() || raw.len() > TEST_ACCEPT_TXS_MAX {
        return Err(error(
            codes::INVALID_PARAMETER,
            format!("Array must contain between 1 and {TEST_ACCEPT_TXS_MAX} transactions."),
        ));
    }
    let max_rate_sat_per_kvb = match args.optional::<f64>(1, "maxfeerate")? {
        None => DEFAULT_MAX_FEE_RATE_SAT_PER_KVB,
        Some(coins) => Amount::from_btc(coins)
            .map_err(|e| error(codes::TYPE_ERROR, format!("maxfeerate: {e}")))?
            .to_sat(),
    };
    let txs: Vec<Transaction> = raw
        .iter()
        .map(|h| {
            hex::decode(h.trim())
                .ok()
                .and_then(|b| deserialize(&b).ok())
                .ok_or_else(|| error(codes::DESERIALIZATION_ERROR, "TX decode failed"))
        })
        .collect::<Result<_, _>>()?;
    // A copy of the pool takes the transactions in order (a child may follow its parent);
    // the node's pool is never touched.
    let mut pool = node.with_mempool(|pool| pool.clone());
    node.with_chain(|chain| {
        let coins = chain.coins_for(&txs).map_err(chain_error)?;
        let ctx = chain.next_spend_context().map_err(chain_error)?;
        let view = chain.store().read().map_err(store_error)?;
        let now = now_unix_secs();
        let mut results = Vec::new();
        for tx in txs {
            let txid = tx.compute_txid();
            let mut result = json!({
                "txid": txid.to_string(),
                "wtxid": tx.compute_wtxid().to_string(),
            });
            let confirmed = (0..tx.output.len() as u32).any(|vout| {
                view.coin(&OutPoint::new(txid, vout))
                    .ok()
                    .flatten()
                    .is_some()
            });
            let outcome = if confirmed {
                Err("txn-already-known".to_string())
            } else {
                pool.accept(tx.clone(), &coins, &ctx, now)
                    .map_err(|e| reject_reason(&e))
            };
            match outcome.and_then(|_| {
                let fee = pool.entry(&txid).map_or(Amount::ZERO, |e| e.fee());
                let vsize = tx.vsize() as u64;
                if fee.to_sat() * 1000 > max_rate_sat_per_kvb.saturating_mul(vsize) {
                    Err("max-fee-exceeded".to_string())
                } else {
                    Ok((fee, vsize))
                }
            }) {
                Ok((fee, vsize)) => {
                    result["allowed"] = json!(true);
                    result["vsize"] = json!(vsize);
                    result["fees"] = json!({ "base": json::coins(fee) });
                }
                Err(reason) => {
                    result["allowed"] = json!(false);
                    result["reject-reason"] = json!(reason);
                }
            }
            results.push(result);
        }
        Ok(Value::Array(results))
    })
}

fn help(_: &NodeHandle, args: Args) -> RpcResult {
    match args.optional::<String>(0, "command")? {
        None => Ok(json!(HELP
            .iter()
            .map(|(_, synopsis)| synopsis.lines().next().unwrap_or_default())
            .collect::<Vec<_>>()
            .join("\n"))),
        Some(name) => HELP
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, synopsis)| json!(synopsis))
            .ok_or_else(|| error(codes::MISC_ERROR, format!("help: unknown command: {name}"))),
    }
}

/// Every registered method has a `help` entry (checked where the module is built).
pub fn missing_help(module: &RpcModule<NodeHandle>) -> Vec<String> {
    module
        .method_names()
        .filter(|name| !HELP.iter().any(|(n, _)| n == name))
        .map(str::to_owned)
        .collect()
}
