//! Every RPC method of a real node, called once with its result shape checked; authentication;
//! `stop` and a restart that resumes from the store.

mod support;

use bitcoin::{Amount, Network, TxOut};
use node::rpc::client::{ClientAuth, RpcClient};
use serde_json::{json, Value};
use support::start_node;
use testkit::{coinbase_output, key, p2wpkh, TestChain};

fn keys(value: &Value, expected: &[&str]) {
    for key in expected {
        assert!(value.get(key).is_some(), "missing {key} in {value}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_method_answers_with_its_shape_and_a_restart_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("n");
    let chain = TestChain::new();
    let mut node = start_node(&data, &chain.params, &[]).await;
    let miner = key(1);
    let blocks = chain.empty_chain(3, &miner);
    for block in &blocks {
        assert_eq!(node.submit(block).await, Value::Null);
    }
    let tip = blocks[2].block_hash().to_string();
    assert_eq!(node.submit(&blocks[2]).await, json!("duplicate"));

    // Authentication: nothing without credentials, nothing with wrong ones.
    for auth in [
        ClientAuth::None,
        ClientAuth::UserPassword("__cookie__:nope".into()),
    ] {
        let stranger = RpcClient::new(&node.rpc_url, &auth).unwrap();
        assert!(stranger.call("getblockcount", vec![]).await.is_err());
    }

    let info = node.call("getblockchaininfo", vec![]).await;
    keys(
        &info,
        &[
            "chain",
            "blocks",
            "headers",
            "bestblockhash",
            "mediantime",
            "coinbase_maturity",
        ],
    );
    assert_eq!(info["blocks"], json!(3));
    assert_eq!(node.call("getblockcount", vec![]).await, json!(3));
    assert_eq!(node.call("getbestblockhash", vec![]).await, json!(tip));
    assert_eq!(node.call("getblockhash", vec![json!(3)]).await, json!(tip));
    let out_of_range = node
        .rpc
        .call("getblockhash", vec![json!(9)])
        .await
        .unwrap_err();
    assert!(out_of_range.to_string().contains("-8"), "{out_of_range}");

    let header = node.call("getblockheader", vec![json!(tip)]).await;
    keys(
        &header,
        &[
            "hash",
            "confirmations",
            "height",
            "merkleroot",
            "time",
            "previousblockhash",
        ],
    );
    assert_eq!(header["confirmations"], json!(1));
    let raw_header = node
        .call("getblockheader", vec![json!(tip), json!(false)])
        .await;
    assert_eq!(
        raw_header.as_str().unwrap().len(),
        2 * primitives::header::HEADER_BYTES
    );
    let missing = node
        .rpc
        .call("getblockheader", vec![json!("00".repeat(32))])
        .await
        .unwrap_err();
    assert!(missing.to_string().contains("-5"), "{missing}");

    let hex_block = node.call("getblock", vec![json!(tip), json!(0)]).await;
    assert_eq!(hex_block, json!(hex::encode(blocks[2].encode())));
    let block1 = node.call("getblock", vec![json!(tip)]).await;
    keys(&block1, &["tx", "size", "nTx", "certificate"]);
    assert!(block1["tx"][0].is_string());
    let block2 = node.call("getblock", vec![json!(tip), json!(2)]).await;
    keys(&block2["tx"][0], &["txid", "vin", "vout", "hex"]);
    assert!(block2["tx"][0]["vin"][0].get("coinbase").is_some());

    let certificate = node.call("getcertificate", vec![json!(tip)]).await;
    keys(
        &certificate,
        &["kind", "height", "miner", "coordinator", "signature"],
    );
    assert_eq!(certificate["valid"], json!(true));
    assert_eq!(certificate["bound_to_block"], json!(true));
    assert_eq!(certificate["height"], json!(3));

    // A payment, then everything about it.
    let input = coinbase_output(&blocks[0]);
    let fee = Amount::from_sat(20_000);
    let tx = chain.spend(
        std::slice::from_ref(&input),
        vec![TxOut {
            value: input.1.value - fee,
            script_pubkey: p2wpkh(&chain.secp, &key(2)),
        }],
        &miner,
    );
    let txid = tx.compute_txid().to_string();
    let tx_hex = bitcoin::consensus::encode::serialize_hex(&tx);
    assert_eq!(
        node.call("sendrawtransaction", vec![json!(tx_hex)]).await,
        json!(txid)
    );
    let bad = node
        .rpc
        .call("sendrawtransaction", vec![json!("00")])
        .await
        .unwrap_err();
    assert!(bad.to_string().contains("-22"), "{bad}");
    assert_eq!(node.call("getrawmempool", vec![]).await, json!([txid]));
    let verbose_pool = node.call("getrawmempool", vec![json!(true)]).await;
    keys(&verbose_pool[&txid], &["vsize", "time", "fees"]);
    let pool = node.call("getmempoolinfo", vec![]).await;
    keys(
        &pool,
        &["loaded", "size", "bytes", "maxmempool", "mempoolminfee"],
    );
    assert_eq!(pool["size"], json!(1));
    assert_eq!(
        node.call("getrawtransaction", vec![json!(txid)]).await,
        json!(tx_hex)
    );
    let decoded = node
        .call("getrawtransaction", vec![json!(txid), json!(true)])
        .await;
    assert_eq!(decoded["txid"], json!(txid));
    // The spent coinbase shows as spent (mempool included), the new output as unconfirmed.
    let spent = node
        .call("gettxout", vec![json!(input.0.txid.to_string()), json!(0)])
        .await;
    assert_eq!(spent, Value::Null);
    let unconfirmed = node.call("gettxout", vec![json!(txid), json!(0)]).await;
    keys(
        &unconfirmed,
        &[
            "bestblock",
            "confirmations",
            "value",
            "scriptPubKey",
            "coinbase",
        ],
    );
    assert_eq!(unconfirmed["confirmations"], json!(0));
    let confirmed = node
        .call(
            "gettxout",
            vec![
                json!(blocks[1].txdata[0].compute_txid().to_string()),
                json!(0),
            ],
        )
        .await;
    assert_eq!(confirmed["coinbase"], json!(true));

    // The template takes the payment, with its fee in the coinbase value.
    let payout = bitcoin::Address::p2wpkh(
        &bitcoin::CompressedPublicKey(key(3).public_key(&chain.secp)),
        Network::Regtest,
    );
    let template = node
        .call("gettemplate", vec![json!(payout.to_string())])
        .await;
    keys(
        &template,
        &[
            "height",
            "previousblockhash",
            "curtime",
            "mintime",
            "coinbasevalue",
            "coinbasetxn",
            "transactions",
            "sizelimit",
        ],
    );
    assert_eq!(template["height"], json!(4));
    assert_eq!(template["previousblockhash"], json!(tip));
    assert_eq!(template["transactions"][0]["txid"], json!(txid));
    assert_eq!(
        template["coinbasevalue"],
        json!((chain.subsidy() + fee).to_sat())
    );
    let wrong_address = node
        .rpc
        .call("gettemplate", vec![json!("nonsense")])
        .await
        .unwrap_err();
    assert!(wrong_address.to_string().contains("-5"), "{wrong_address}");

    let scan = node
        .call(
            "scantxoutset",
            vec![json!("start"), json!([format!("addr({payout})")])],
        )
        .await;
    keys(&scan, &["success", "unspents", "total_amount", "height"]);

    // Two coordinator-signed certificates for one slot: the second block is evidence.
    let competing = chain.block(blocks[1].block_hash(), 3, &key(5), vec![], Amount::ZERO);
    assert_eq!(node.submit(&competing).await, json!("inconclusive"));
    let evidence = node.call("getequivocations", vec![]).await;
    assert_eq!(evidence.as_array().unwrap().len(), 1);
    keys(
        &evidence[0],
        &["height", "attempt", "first", "second", "evidence"],
    );
    assert_eq!(evidence[0]["height"], json!(3));

    assert_eq!(node.call("getpeerinfo", vec![]).await, json!([]));
    assert_eq!(node.call("listbanned", vec![]).await, json!([]));
    let network = node.call("getnetworkinfo", vec![]).await;
    keys(
        &network,
        &["version", "localaddresses", "networkactive", "connections"],
    );
    assert_eq!(network["networkactive"], json!(true));
    assert_eq!(
        node.call("setnetworkactive", vec![json!(true)]).await,
        json!(true)
    );
    assert_eq!(
        node.call(
            "addnode",
            vec![json!("/ip4/127.0.0.1/tcp/1"), json!("onetry")]
        )
        .await,
        Value::Null
    );
    let not_connected = node
        .rpc
        .call(
            "disconnectnode",
            vec![json!(libp2p::PeerId::random().to_string())],
        )
        .await
        .unwrap_err();
    assert!(not_connected.to_string().contains("-29"), "{not_connected}");
    assert!(node.call("uptime", vec![]).await.as_u64().is_some());
    let unknown = node.rpc.call("getnothing", vec![]).await.unwrap_err();
    assert!(unknown.to_string().contains("-32601"), "{unknown}");

    assert_eq!(
        node.call("stop", vec![]).await,
        json!("trainchain server stopping")
    );
    assert!(node.wait_exit().success());
    assert!(
        !data.join("node.json").exists(),
        "runtime file removed on stop"
    );
    drop(node);

    // Restart: same tip from the store, no peers needed.
    let node = start_node(&data, &chain.params, &[]).await;
    assert_eq!(node.tip().await, tip);
    assert_eq!(
        node.call("getequivocations", vec![])
            .await
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert!(
        !node.log().contains("connected genesis"),
        "the store was reused, not rebuilt"
    );
}
