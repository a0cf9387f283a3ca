//! Stock Bitcoin Core clients against a live RPC server: the exact HTTP bodies, headers and
//! content types python-bitcoinlib's `RawProxy`, bitcoin-utils' `NodeProxy` (python-bitcoinrpc's
//! `AuthServiceProxy`) and Core's documented curl call send, and the fields those clients read.

use bitcoin::consensus::encode::serialize_hex;
use bitcoin::{Amount, Transaction, TxOut};
use node::mempool::{Mempool, MempoolLimits};
use node::rpc::{self, auth::basic_header, RpcAuth, RpcServer};
use node::{ChainState, NodeHandle};
use serde_json::{json, Value};
use testkit::{coinbase_output, key, p2wpkh, TestChain};

const CREDENTIALS: &str = "user:secret";
/// Blocks mined on genesis before each test.
const BLOCKS: u32 = 3;

struct Live {
    _dir: tempfile::TempDir,
    _server: RpcServer,
    url: String,
    http: reqwest::Client,
    chain: TestChain,
    node: NodeHandle,
}

async fn live() -> Live {
    let dir = tempfile::tempdir().unwrap();
    let chain = TestChain::new();
    let state = ChainState::open(&dir.path().join("chain.redb"), chain.params.clone()).unwrap();
    let (node, _net) = NodeHandle::new(state, Mempool::new(MempoolLimits::default()));
    for block in chain.empty_chain(BLOCKS, &key(1)) {
        node.process_block(block).unwrap();
    }
    let server = rpc::start_in(
        node.clone(),
        "127.0.0.1:0".parse().unwrap(),
        RpcAuth::Basic(vec![CREDENTIALS.into()]),
        Some(dir.path().to_path_buf()),
    )
    .await
    .unwrap();
    Live {
        url: format!("http://{}/", server.local_addr),
        _server: server,
        _dir: dir,
        http: reqwest::Client::new(),
        chain,
        node,
    }
}

impl Live {
    /// Posts `body` as is with `content_type`; returns status, content type and parsed body.
    async fn post(&self, body: String, content_type: &str) -> (u16, String, Value) {
        let response = self
            .http
            .post(&self.url)
            .header("authorization", basic_header(CREDENTIALS))
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let kind = response
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        let text = response.text().await.unwrap();
        let value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
        (status, kind, value)
    }

    /// python-bitcoinlib's `RawProxy._call`: `{"version": "1.1", "method", "params", "id"}`.
    async fn bitcoinlib(&self, method: &str, params: Value) -> (u16, Value) {
        let body = json!({"version": "1.1", "method": method, "params": params, "id": 1});
        let (status, kind, value) = self.post(body.to_string(), "application/json").await;
        // python-bitcoinlib refuses any other content type, even with a charset.
        assert_eq!(kind, "application/json");
        (status, value)
    }

    /// A successful legacy call's result, checking Core's 1.0 envelope.
    async fn call(&self, method: &str, params: Value) -> Value {
        let (status, value) = self.bitcoinlib(method, params).await;
        assert_eq!(status, 200, "{method}: {value}");
        assert_eq!(value["error"], Value::Null, "{method}: {value}");
        assert_eq!(value["id"], 1);
        assert!(value.get("jsonrpc").is_none());
        value["result"].clone()
    }

    /// A failing legacy call's (HTTP status, error code).
    async fn call_err(&self, method: &str, params: Value) -> (u16, i64) {
        let (status, value) = self.bitcoinlib(method, params).await;
        assert_eq!(value["result"], Value::Null, "{method}: {value}");
        (status, value["error"]["code"].as_i64().expect("error code"))
    }

    /// A signed transaction spending block 1's coinbase to a fresh key, paying `fee`.
    fn spend(&self, fee: Amount) -> Transaction {
        let block1 = self.node.with_chain(|c| {
            let hash = c.store().best_hash_at(1).unwrap().unwrap();
            c.store().block(&hash).unwrap().unwrap()
        });
        let (outpoint, prev) = coinbase_output(&block1);
        let out = TxOut {
            value: prev.value - fee,
            script_pubkey: p2wpkh(&self.chain.secp, &key(7)),
        };
        self.chain.spend(&[(outpoint, prev)], vec![out], &key(1))
    }
}

#[tokio::test]
async fn python_bitcoinlib_raw_proxy_body_is_answered_in_cores_envelope() {
    let live = live().await;
    assert_eq!(live.call("getblockcount", json!([])).await, json!(BLOCKS));
    // An unknown method: Core's 404 with -32601, result null.
    assert_eq!(
        live.call_err("nosuchmethod", json!([])).await,
        (404, -32601)
    );
}

#[tokio::test]
async fn cores_documented_curl_call_with_text_plain_works() {
    let live = live().await;
    // bitcoin-cli help's example: curl --data-binary '{"jsonrpc": "1.0", ...}' -H
    // 'content-type: text/plain;'
    let body =
        r#"{"jsonrpc": "1.0", "id": "curltest", "method": "getblockchaininfo", "params": []}"#;
    let (status, _, value) = live.post(body.into(), "text/plain;").await;
    assert_eq!(status, 200, "{value}");
    assert_eq!(value["id"], "curltest");
    assert_eq!(value["error"], Value::Null);
    let info = &value["result"];
    assert_eq!(info["chain"], "regtest");
    assert_eq!(info["blocks"], BLOCKS);
    assert_eq!(info["difficulty"], 1.0);
    assert_eq!(info["chainwork"], format!("{:064x}", BLOCKS + 1));
    assert!(info["size_on_disk"].as_u64().unwrap() > 0);
}

#[tokio::test]
async fn no_version_member_and_missing_id_or_params_are_legacy_calls() {
    let live = live().await;
    let (status, _, value) = live
        .post(r#"{"method": "getblockcount"}"#.into(), "application/json")
        .await;
    assert_eq!(status, 200);
    assert_eq!(value, json!({"result": BLOCKS, "error": null, "id": null}));
    let (_, _, value) = live
        .post(
            r#"{"method": "getblockcount", "params": null, "id": 9}"#.into(),
            "text/plain",
        )
        .await;
    assert_eq!(value, json!({"result": BLOCKS, "error": null, "id": 9}));
}

#[tokio::test]
async fn json_rpc_2_0_is_unchanged_and_batches_answer_each_call_in_its_style() {
    let live = live().await;
    let body = r#"{"jsonrpc": "2.0", "method": "getblockcount", "params": [], "id": 3}"#;
    let (status, _, value) = live.post(body.into(), "application/json").await;
    assert_eq!(status, 200);
    assert_eq!(value, json!({"jsonrpc": "2.0", "result": BLOCKS, "id": 3}));

    let batch = r#"[{"version": "1.1", "method": "getblockcount", "params": [], "id": 1},
        {"jsonrpc": "2.0", "method": "getdifficulty", "params": [], "id": 2},
        {"jsonrpc": "1.0", "method": "nosuchmethod", "params": [], "id": 3}]"#;
    let (status, _, value) = live.post(batch.into(), "text/plain").await;
    assert_eq!(status, 200);
    let answers = value.as_array().unwrap();
    assert_eq!(answers.len(), 3);
    assert_eq!(
        answers[0],
        json!({"result": BLOCKS, "error": null, "id": 1})
    );
    assert_eq!(
        answers[1],
        json!({"jsonrpc": "2.0", "result": 1.0, "id": 2})
    );
    assert_eq!(answers[2]["result"], Value::Null);
    assert_eq!(answers[2]["error"]["code"], -32601);
}

#[tokio::test]
async fn wrong_credentials_get_401_before_any_body_is_read() {
    let live = live().await;
    let response = live
        .http
        .post(&live.url)
        .header("authorization", basic_header("user:wrong"))
        .body(r#"{"version":"1.1","method":"getblockcount","params":[],"id":1}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 401);
}

#[tokio::test]
async fn headers_and_blocks_carry_cores_fields() {
    let live = live().await;
    // A block with a segwit spend, so stripped size and size differ.
    let tx = live.spend(Amount::from_sat(10_000));
    let txid = tx.compute_txid().to_string();
    let tip = live.node.tip().unwrap().0;
    let block = live
        .chain
        .block(tip, BLOCKS + 1, &key(1), vec![tx], Amount::from_sat(10_000));
    let time = block.header.time;
    live.node.process_block(block).unwrap();
    let hash = live.call("getblockhash", json!([BLOCKS + 1])).await;

    // A confirmed transaction carries Core's chain fields.
    let confirmed = live
        .call("getrawtransaction", json!([txid, true, hash]))
        .await;
    assert_eq!(confirmed["in_active_chain"], true);
    assert_eq!(confirmed["blockhash"], hash);
    assert_eq!(confirmed["confirmations"], 1);
    assert_eq!(
        (&confirmed["time"], &confirmed["blocktime"]),
        (&json!(time), &json!(time))
    );
    // One in a block off the best chain: Core's 0 confirmations and no times.
    let one = live
        .node
        .with_chain(|c| c.store().best_hash_at(1).unwrap().unwrap());
    let side = live.chain.block(one, 2, &key(3), vec![], Amount::ZERO);
    let side_hash = side.block_hash().to_string();
    let side_coinbase = side.txdata[0].compute_txid().to_string();
    live.node.process_block(side).unwrap();
    let stale = live
        .call("getrawtransaction", json!([side_coinbase, true, side_hash]))
        .await;
    assert_eq!(stale["in_active_chain"], false, "{stale}");
    assert_eq!(stale["blockhash"], side_hash);
    assert_eq!(stale["confirmations"], 0);
    assert!(stale.get("time").is_none() && stale.get("blocktime").is_none());
    // A transaction that is not in the given block: Core's -5.
    assert_eq!(
        live.call_err("getrawtransaction", json!([side_coinbase, true, hash]))
            .await
            .1,
        -5
    );
    let header = live.call("getblockheader", json!([hash, true])).await;
    for field in [
        "chainwork",
        "nonce",
        "bits",
        "difficulty",
        "mediantime",
        "nTx",
    ] {
        assert!(
            header.get(field).is_some(),
            "header lacks {field}: {header}"
        );
    }
    assert_eq!(header["chainwork"], format!("{:064x}", BLOCKS + 2));
    assert_eq!(header["bits"], "1d00ffff");
    let block = live.call("getblock", json!([hash, 2])).await;
    let (size, stripped, weight) = (
        block["size"].as_u64().unwrap(),
        block["strippedsize"].as_u64().unwrap(),
        block["weight"].as_u64().unwrap(),
    );
    assert_eq!(weight, stripped * 3 + size);
    assert!(stripped < size, "the spend has a witness");
    let spk = &block["tx"][0]["vout"][0]["scriptPubKey"];
    assert!(
        spk["asm"]
            .as_str()
            .unwrap()
            .starts_with("OP_0 OP_PUSHBYTES_20"),
        "{spk}"
    );
}

#[tokio::test]
async fn network_and_mining_methods_have_cores_shapes() {
    let live = live().await;
    let info = live.call("getnetworkinfo", json!([])).await;
    assert!(info["version"].is_u64(), "{info}");
    assert!(info["protocolversion"].is_u64());
    assert!(info["localservices"].is_string());
    assert!(info["relayfee"].is_f64());
    assert!(info["networks"]
        .as_array()
        .unwrap()
        .iter()
        .any(|n| n["name"] == "ipv4"));
    assert!(info["localaddresses"].is_array());
    assert_eq!(live.call("getconnectioncount", json!([])).await, 0);
    assert_eq!(live.call("getpeerinfo", json!([])).await, json!([]));
    assert_eq!(live.call("getdifficulty", json!([])).await, 1.0);
    let mining = live.call("getmininginfo", json!([])).await;
    assert_eq!(mining["blocks"], BLOCKS);
    assert_eq!(mining["chain"], "regtest");
    let tips = live.call("getchaintips", json!([])).await;
    let best = live.call("getbestblockhash", json!([])).await;
    assert_eq!(
        tips,
        json!([{"height": BLOCKS, "hash": best, "branchlen": 0, "status": "active"}])
    );
    let set = live.call("gettxoutsetinfo", json!([])).await;
    // Each block's coinbase output (genesis's is not spendable, as in Bitcoin).
    assert_eq!(set["txouts"], BLOCKS);
    assert_eq!(set["height"], BLOCKS);
    assert_eq!(set["hash_serialized_3"].as_str().unwrap().len(), 64);
    let help = live.call("help", json!([])).await;
    for (name, _) in rpc::core::HELP {
        assert!(help.as_str().unwrap().contains(name));
        assert!(live.call("help", json!([name])).await.is_string());
    }
}

#[tokio::test]
async fn addresses_scripts_and_transactions_decode() {
    let live = live().await;
    let tx = live.spend(Amount::from_sat(10_000));
    let address =
        bitcoin::Address::from_script(&tx.output[0].script_pubkey, bitcoin::Network::Regtest)
            .unwrap()
            .to_string();
    let valid = live.call("validateaddress", json!([address])).await;
    assert_eq!(valid["isvalid"], true);
    assert_eq!(valid["iswitness"], true);
    assert_eq!(valid["witness_version"], 0);
    let invalid = live
        .call("validateaddress", json!(["not an address"]))
        .await;
    assert_eq!(invalid["isvalid"], false);
    let decoded = live
        .call("decoderawtransaction", json!([serialize_hex(&tx)]))
        .await;
    assert_eq!(decoded["txid"], tx.compute_txid().to_string());
    assert_eq!(decoded["vout"][0]["scriptPubKey"]["address"], address);
    let script = live
        .call(
            "decodescript",
            json!([hex::encode(tx.output[0].script_pubkey.as_bytes())]),
        )
        .await;
    assert_eq!(script["type"], "witness_v0_keyhash");
    assert!(script["asm"].as_str().unwrap().starts_with("OP_0"));
    let desc = script["desc"].as_str().unwrap();
    assert!(desc.starts_with(&format!("addr({address})#")), "{script}");
    assert_eq!(
        rpc::descriptor::checksum(&format!("addr({address})")).as_deref(),
        desc.split_once('#').map(|(_, sum)| sum)
    );
    // P2WPKH nests in P2SH but is already segwit.
    assert!(script["p2sh"].is_string());
    assert!(script.get("segwit").is_none(), "{script}");

    // Core 28's answer for a P2PK script on regtest (bitcoind's output, `asm` aside).
    let p2pk = live
        .call(
            "decodescript",
            json!(["2103c8edf725b59d9f370870a5dcd5e70b0baea493a5b85cb227c1ef6a8e8cdad8fbac"]),
        )
        .await;
    assert_eq!(
        p2pk["desc"],
        "pk(03c8edf725b59d9f370870a5dcd5e70b0baea493a5b85cb227c1ef6a8e8cdad8fb)#uyjfg78q"
    );
    assert_eq!(p2pk["type"], "pubkey");
    assert_eq!(p2pk["p2sh"], "2N5qkyrMHFs2owkwkf76d55YmSMTX5YJa58");
    assert!(p2pk.get("address").is_none());
    let segwit = &p2pk["segwit"];
    assert_eq!(
        segwit["hex"],
        "00142179dbd7258824b83b13e6190efdc302723183ec"
    );
    assert_eq!(segwit["type"], "witness_v0_keyhash");
    assert_eq!(
        segwit["address"],
        "bcrt1qy9uah4e93qjtswcnucvsalwrqferrqlvzrgycj"
    );
    assert_eq!(
        segwit["desc"],
        "addr(bcrt1qy9uah4e93qjtswcnucvsalwrqferrqlvzrgycj)#mjpsey9y"
    );
    assert_eq!(segwit["p2sh-segwit"], "2N3h5LwNuYMcRzWziqSDTmB7o67QDDN1Z9W");
    // A non-standard script: raw() (Core's output), wrapped in P2SH and P2WSH.
    let nonstandard = live.call("decodescript", json!(["6351670068"])).await;
    assert_eq!(nonstandard["desc"], "raw(6351670068)#fhsnu8qg");
    assert_eq!(nonstandard["type"], "nonstandard");
    assert_eq!(nonstandard["segwit"]["type"], "witness_v0_scripthash");
    // Null data: raw(), and nothing to wrap.
    let nulldata = live.call("decodescript", json!(["6a024869"])).await;
    assert_eq!(nulldata["desc"], "raw(6a024869)#nz6xdglz");
    assert_eq!(nulldata["type"], "nulldata");
    assert!(nulldata.get("p2sh").is_none() && nulldata.get("segwit").is_none());
    assert_eq!(
        live.call_err("decoderawtransaction", json!(["zz"])).await.1,
        -22
    );
}

#[tokio::test]
async fn mempool_methods_test_accept_and_fee_estimates() {
    let live = live().await;
    let tx = live.spend(Amount::from_sat(10_000));
    let hex_tx = serialize_hex(&tx);
    let tested = live.call("testmempoolaccept", json!([[hex_tx]])).await;
    assert_eq!(tested[0]["allowed"], true, "{tested}");
    assert_eq!(tested[0]["fees"]["base"], 0.0001);
    // Testing leaves the pool as it was.
    assert_eq!(live.call("getrawmempool", json!([])).await, json!([]));

    // A signature that does not verify: Core's -26, and not allowed by testmempoolaccept.
    let mut bad = tx.clone();
    let mut witness: Vec<Vec<u8>> = bad.input[0].witness.iter().map(<[u8]>::to_vec).collect();
    witness[0][10] ^= 1;
    bad.input[0].witness = bitcoin::Witness::from_slice(&witness);
    let tested = live
        .call("testmempoolaccept", json!([[serialize_hex(&bad)]]))
        .await;
    assert_eq!(tested[0]["allowed"], false);
    assert!(tested[0]["reject-reason"].is_string());
    assert_eq!(
        live.call_err("sendrawtransaction", json!([serialize_hex(&bad)]))
            .await,
        (500, -26)
    );

    let txid = live.call("sendrawtransaction", json!([hex_tx])).await;
    assert_eq!(txid, tx.compute_txid().to_string());
    // Unconfirmed: Core's verbose getrawtransaction has none of the chain fields.
    let pooled = live.call("getrawtransaction", json!([txid, true])).await;
    assert_eq!(pooled["txid"], txid);
    for field in [
        "in_active_chain",
        "blockhash",
        "confirmations",
        "time",
        "blocktime",
    ] {
        assert!(pooled.get(field).is_none(), "{field}: {pooled}");
    }
    let entry = live.call("getmempoolentry", json!([txid])).await;
    assert_eq!(entry["ancestorcount"], 1);
    assert_eq!(entry["descendantcount"], 1);
    assert_eq!(entry["fees"]["base"], 0.0001);
    assert_eq!(entry["depends"], json!([]));
    assert_eq!(entry["height"], BLOCKS);
    let verbose = live.call("getrawmempool", json!([true])).await;
    assert_eq!(verbose[txid.as_str().unwrap()], entry);
    let info = live.call("getmempoolinfo", json!([])).await;
    assert_eq!(info["size"], 1);
    assert_eq!(info["total_fee"], 0.0001);
    assert!(info["incrementalrelayfee"].is_f64());
    // One small transaction leaves room in the next block: the minimum fee rate is enough.
    let estimate = live.call("estimatesmartfee", json!([6])).await;
    assert_eq!(estimate["blocks"], 6);
    assert_eq!(estimate["feerate"], info["mempoolminfee"]);
    assert_eq!(live.call_err("estimatesmartfee", json!([0])).await.1, -8);
}
