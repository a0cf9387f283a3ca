//! Genesis allocations and `trainchain wallet bond create | inspect | reclaim`, against a real
//! node process, with blocks made from the node's templates and signed with the coordinator key
//! `trainchain init` wrote.

mod support;

use bitcoin::consensus::encode::deserialize_hex;
use bitcoin::secp256k1::{PublicKey, SecretKey};
use bitcoin::{Address, Amount, CompressedPublicKey, Network, OutPoint, Transaction};
use node::ChainState;
use primitives::{Block, ChainParams};
use serde_json::{json, Value};
use std::path::Path;
use std::process::{Command, Output};
use support::{start_node, NodeProcess};
use testkit::TestChain;

fn trainchain(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_trainchain"))
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .expect("trainchain runs")
}

fn stdout(out: &Output) -> String {
    assert!(
        out.status.success(),
        "failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn load_params(dir: &Path) -> ChainParams {
    ChainParams::from_toml(&std::fs::read_to_string(dir.join("chain.toml")).unwrap()).unwrap()
}

fn test_chain(dir: &Path) -> TestChain {
    TestChain {
        secp: bitcoin::secp256k1::Secp256k1::new(),
        coordinator: wallet::key_file::load(&dir.join("coordinator.key")).unwrap(),
        params: load_params(dir),
    }
}

fn address_of(key: &PublicKey) -> Address {
    Address::p2wpkh(&CompressedPublicKey(*key), Network::Regtest)
}

/// Makes the next block from the node's template (mempool included), paying `producer`,
/// signs its certificate with the coordinator key and submits it.
async fn mine(node: &NodeProcess, chain: &TestChain, producer: &SecretKey) -> Block {
    let producer_pk = producer.public_key(&chain.secp);
    let template = node
        .call(
            "gettemplate",
            vec![json!(address_of(&producer_pk).to_string())],
        )
        .await;
    let height = u32::try_from(template["height"].as_u64().unwrap()).unwrap();
    let parent = template["previousblockhash"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let time = u32::try_from(template["curtime"].as_u64().unwrap()).unwrap();
    let mut txdata: Vec<Transaction> =
        vec![deserialize_hex(template["coinbasetxn"]["data"].as_str().unwrap()).unwrap()];
    for tx in template["transactions"].as_array().unwrap() {
        txdata.push(deserialize_hex(tx["data"].as_str().unwrap()).unwrap());
    }
    let mut body = chain.certificate_body(height, parent, 0, producer_pk);
    // This chain's genesis is today, not the testkit's: a window around its blocks.
    body.issued_at = u64::from(chain.params.genesis.header.time);
    body.expires_at = u64::from(time) + 3_600;
    let block = chain.assemble(chain.sign_certificate(body), time, txdata, producer);
    assert_eq!(node.submit(&block).await, Value::Null, "block {height}");
    block
}

fn field<'a>(text: &'a str, name: &str) -> &'a str {
    text.lines()
        .find_map(|line| line.strip_prefix(name))
        .unwrap_or_else(|| panic!("no {name:?} in:\n{text}"))
        .trim()
}

fn spendable(balance: &str) -> Amount {
    Amount::from_str_in(
        field(balance, "spendable:").trim_end_matches(" BTC"),
        bitcoin::Denomination::Bitcoin,
    )
    .unwrap()
}

#[test]
fn init_refuses_allocations_over_the_genesis_subsidy_or_of_another_network() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("w.key");
    let address = stdout(&trainchain(&[
        "wallet",
        "new",
        "--key",
        key.to_str().unwrap(),
    ]));
    let data = dir.path().join("chain");
    let over = trainchain(&[
        "init",
        "--data-dir",
        data.to_str().unwrap(),
        "--allocate",
        &format!("{}:30", address.trim()),
        "--allocate",
        &format!("{}:20.00000001", address.trim()),
    ]);
    assert!(!over.status.success());
    assert!(
        stderr(&over).contains("height-0 subsidy"),
        "{}",
        stderr(&over)
    );
    assert!(!data.join("chain.toml").exists());

    let mainnet = trainchain(&[
        "init",
        "--data-dir",
        dir.path().join("other").to_str().unwrap(),
        "--allocate",
        "bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4:1",
    ]);
    assert!(!mainnet.status.success());
    assert!(
        stderr(&mainnet).contains("not a regtest address"),
        "{}",
        stderr(&mainnet)
    );
}

/// Genesis allocations enter the coin set at height 0 as coinbase outputs: immature until
/// `coinbase_maturity_blocks` have passed, then spendable, as consensus checks a spend.
#[test]
fn genesis_allocations_are_spendable_after_coinbase_maturity() {
    let dir = tempfile::tempdir().unwrap();
    let key_path = dir.path().join("w.key");
    let address = stdout(&trainchain(&[
        "wallet",
        "new",
        "--key",
        key_path.to_str().unwrap(),
    ]));
    let data = dir.path().join("node");
    let out = stdout(&trainchain(&[
        "init",
        "--data-dir",
        data.to_str().unwrap(),
        "--coinbase-maturity",
        "3",
        "--allocate",
        &format!("{}:10", address.trim()),
        "--allocate",
        &format!("{}:0.5", address.trim()),
    ]));
    let chain = test_chain(&data);
    let genesis_txid = chain.params.genesis.txdata[0].compute_txid();
    assert!(
        out.contains(&format!("{genesis_txid}:1 pays 10 BTC")),
        "{out}"
    );
    let owner = wallet::key_file::load(&key_path).unwrap();
    let wallet = wallet::Wallet::new(owner, Network::Regtest);

    let mut state = ChainState::open(&data.join("chain.redb"), chain.params.clone()).unwrap();
    let coins = state
        .store()
        .coins_by_script(wallet.script_pubkey())
        .unwrap();
    assert_eq!(coins.len(), 2);
    assert!(coins
        .iter()
        .all(|(op, c)| op.txid == genesis_txid && c.is_coinbase && c.height == 0));

    let to = address_of(&testkit::key(9).public_key(&chain.secp));
    let start = chain.params.genesis.header.time;
    let mut parent = chain.params.genesis_hash();
    let producer = testkit::key(9);
    for height in 1..=3u32 {
        let tip = wallet::ChainTip::new(height - 1, &chain.params);
        let tx = wallet::Wallet::new(owner, Network::Regtest)
            .build_payment(
                &coins,
                wallet::ChainTip {
                    coinbase_maturity_blocks: 0,
                    ..tip
                },
                &to,
                Amount::from_int_btc(1),
                bitcoin::FeeRate::from_sat_per_vb_u32(1),
            )
            .unwrap();
        let view = state.coins_for([&tx]).unwrap();
        let result = consensus::check_tx_inputs(&tx, &view, &state.next_spend_context().unwrap());
        if height < 3 {
            assert!(
                matches!(result, Err(consensus::TxError::ImmatureCoinbase { .. })),
                "block {height}: {result:?}"
            );
            assert!(!tip.is_spendable(&coins[0].1));
            let mut body =
                chain.certificate_body(height, parent, 0, producer.public_key(&chain.secp));
            body.issued_at = u64::from(start);
            body.expires_at = u64::from(start) + 3_600;
            let block = chain.assemble(
                chain.sign_certificate(body),
                start + height,
                vec![chain.coinbase(height, chain.subsidy(), &producer)],
                &producer,
            );
            parent = block.block_hash();
            state.process_block(block, u64::from(start) + 60).unwrap();
        } else {
            // Block 3 is 3 blocks after genesis: the allocation is mature.
            assert!(tip.is_spendable(&coins[0].1));
            let (fee, _) = result.unwrap();
            assert!(fee > Amount::ZERO);
            let mut body =
                chain.certificate_body(height, parent, 0, producer.public_key(&chain.secp));
            body.issued_at = u64::from(start);
            body.expires_at = u64::from(start) + 3_600;
            let block = chain.assemble(
                chain.sign_certificate(body),
                start + height,
                vec![
                    chain.coinbase(height, chain.subsidy() + fee, &producer),
                    tx.clone(),
                ],
                &producer,
            );
            state.process_block(block, u64::from(start) + 60).unwrap();
            assert_eq!(state.tip().unwrap().1, 3);
            let spent = OutPoint::new(genesis_txid, 1);
            assert!(
                state.store().coin(&spent).unwrap().is_none(),
                "allocation spent"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bond_create_inspect_reclaim_on_a_running_node() {
    let dir = tempfile::tempdir().unwrap();
    let key_path = dir.path().join("miner.key");
    let key = key_path.to_str().unwrap();
    let address = stdout(&trainchain(&["wallet", "new", "--key", key]));
    let data = dir.path().join("node");
    let data_str = data.to_str().unwrap();
    stdout(&trainchain(&[
        "init",
        "--data-dir",
        data_str,
        "--coinbase-maturity",
        "1",
        "--bond-lock-blocks",
        "3",
        "--allocate",
        &format!("{}:10", address.trim()),
    ]));
    let chain = test_chain(&data);
    assert_eq!(chain.params.bond_lock_blocks, 3);
    let node = start_node(&data, &chain.params, &[]).await;
    let rpc = |args: &[&str]| -> Output {
        let mut all: Vec<&str> = args.to_vec();
        all.extend([
            "--key",
            key,
            "--rpc",
            &node.rpc_url,
            "--rpc-data-dir",
            data_str,
        ]);
        trainchain(&all)
    };
    // Blocks pay another key, so the wallet holds only its allocation and what comes back.
    let producer = testkit::key(7);

    let balance = stdout(&rpc(&["wallet", "balance"]));
    assert_eq!(spendable(&balance), Amount::from_int_btc(10), "{balance}");

    let created = stdout(&rpc(&["wallet", "bond", "create", "--coins", "2"]));
    let bond: OutPoint = field(&created, "bond:").parse().unwrap();
    assert_eq!(bond.vout, 0);
    // Tip 0: if it confirms in block 1, it is reclaimable from block 1 + 3.
    assert!(
        field(&created, "reclaimable at:").starts_with("height 4 "),
        "{created}"
    );
    assert_eq!(node.mempool().await, vec![bond.txid.to_string()]);
    let pending = stdout(&rpc(&["wallet", "bond", "inspect", &bond.to_string()]));
    assert!(
        field(&pending, "status:").starts_with("unconfirmed"),
        "{pending}"
    );

    mine(&node, &chain, &producer).await;
    let out = node
        .call("gettxout", vec![json!(bond.txid.to_string()), json!(0)])
        .await;
    assert_eq!(out["confirmations"], json!(1));
    assert_eq!(out["value"], json!(2.0));
    assert_eq!(out["coinbase"], json!(false));
    assert_eq!(out["scriptPubKey"]["type"], json!("witness_v0_scripthash"));
    let miner = wallet::key_file::load(&key_path)
        .unwrap()
        .public_key(&chain.secp);
    let terms = consensus::bond::BondTerms::from_params(&chain.params);
    assert_eq!(
        out["scriptPubKey"]["hex"],
        json!(hex::encode(
            consensus::bond::bond_script_pubkey(&terms, &miner).as_bytes()
        ))
    );
    let shown = stdout(&rpc(&["wallet", "bond", "inspect", &bond.to_string()]));
    assert_eq!(field(&shown, "value:"), "2 BTC", "{shown}");
    assert_eq!(field(&shown, "confirmations:"), "1", "{shown}");
    assert!(
        field(&shown, "this key's bond:").starts_with("yes"),
        "{shown}"
    );
    assert_eq!(field(&shown, "confirmed at:"), "height 1", "{shown}");
    assert!(
        field(&shown, "reclaimable at:").starts_with("height 4 (after 2 more"),
        "{shown}"
    );
    assert_eq!(field(&shown, "status:"), "locked", "{shown}");
    // Another key's view of the same output: not its bond.
    let other_key = dir.path().join("other.key");
    stdout(&trainchain(&[
        "wallet",
        "new",
        "--key",
        other_key.to_str().unwrap(),
    ]));
    let foreign = stdout(&trainchain(&[
        "wallet",
        "bond",
        "inspect",
        &bond.to_string(),
        "--key",
        other_key.to_str().unwrap(),
        "--rpc",
        &node.rpc_url,
        "--rpc-data-dir",
        data_str,
    ]));
    assert!(
        field(&foreign, "this key's bond:").starts_with("no"),
        "{foreign}"
    );

    // Before the lock: refused with the height, and nothing is sent. Tip 2 is the last refusal.
    for tip in [1, 2] {
        let early = rpc(&["wallet", "bond", "reclaim", &bond.to_string()]);
        assert!(!early.status.success(), "reclaim at tip {tip} succeeded");
        let message = stderr(&early);
        assert!(
            message.contains("reclaimable at height 4") && message.contains("nothing was sent"),
            "{message}"
        );
        assert!(node.mempool().await.is_empty());
        if tip == 1 {
            mine(&node, &chain, &producer).await;
        }
    }
    mine(&node, &chain, &producer).await;
    let ready = stdout(&rpc(&["wallet", "bond", "inspect", &bond.to_string()]));
    assert_eq!(field(&ready, "status:"), "reclaimable", "{ready}");

    let reclaimed = stdout(&rpc(&["wallet", "bond", "reclaim", &bond.to_string()]));
    let reclaim_txid = field(&reclaimed, "reclaim:").to_string();
    assert_eq!(node.mempool().await, vec![reclaim_txid.clone()]);
    let raw = node
        .call("getrawtransaction", vec![json!(reclaim_txid)])
        .await;
    let tx: Transaction = deserialize_hex(raw.as_str().unwrap()).unwrap();
    assert_eq!(tx.version, bitcoin::transaction::Version::TWO);
    assert_eq!(tx.input[0].sequence, bitcoin::Sequence(3));
    assert!(tx.input[0].witness.nth(1).unwrap().is_empty());
    let spending = stdout(&rpc(&["wallet", "bond", "inspect", &bond.to_string()]));
    assert!(
        field(&spending, "status:").contains("mempool"),
        "{spending}"
    );

    mine(&node, &chain, &producer).await;
    assert_eq!(
        node.call("gettxout", vec![json!(bond.txid.to_string()), json!(0)])
            .await,
        Value::Null
    );
    let gone = stdout(&rpc(&["wallet", "bond", "inspect", &bond.to_string()]));
    assert!(field(&gone, "status:").starts_with("spent"), "{gone}");

    // The coins are back: 10 less the two fees, all spendable.
    let balance = stdout(&rpc(&["wallet", "balance"]));
    let back = spendable(&balance);
    assert!(
        back < Amount::from_int_btc(10)
            && back > Amount::from_int_btc(10) - Amount::from_sat(2_000),
        "{balance}"
    );
    assert_eq!(field(&balance, "immature:"), "0 BTC", "{balance}");
    let scan = node
        .call(
            "scantxoutset",
            vec![json!("start"), json!([format!("addr({})", address.trim())])],
        )
        .await;
    assert!(
        scan["unspents"]
            .as_array()
            .unwrap()
            .iter()
            .any(|u| u["txid"] == json!(reclaim_txid)),
        "{scan}"
    );
}

/// A slash of a bond, built by `wallet::bond::build_slash` with the chain's slashing key (the
/// coordinator key `init` wrote), is accepted by the node in the block right after the bond's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bond_is_slashable_right_after_it_confirms() {
    let dir = tempfile::tempdir().unwrap();
    let key_path = dir.path().join("miner.key");
    let key = key_path.to_str().unwrap();
    let address = stdout(&trainchain(&["wallet", "new", "--key", key]));
    let data = dir.path().join("node");
    let data_str = data.to_str().unwrap();
    stdout(&trainchain(&[
        "init",
        "--data-dir",
        data_str,
        "--coinbase-maturity",
        "1",
        "--allocate",
        &format!("{}:5", address.trim()),
    ]));
    let chain = test_chain(&data);
    let node = start_node(&data, &chain.params, &[]).await;
    let producer = testkit::key(7);
    let created = stdout(&trainchain(&[
        "wallet",
        "bond",
        "create",
        "--key",
        key,
        "--rpc",
        &node.rpc_url,
        "--rpc-data-dir",
        data_str,
    ]));
    let bond: OutPoint = field(&created, "bond:").parse().unwrap();
    mine(&node, &chain, &producer).await;

    let terms = consensus::bond::BondTerms::from_params(&chain.params);
    let miner = wallet::key_file::load(&key_path)
        .unwrap()
        .public_key(&chain.secp);
    let finder = testkit::p2wpkh(&chain.secp, &testkit::key(8));
    let fee = Amount::from_sat(1_000);
    let slash = wallet::bond::build_slash(
        &chain.secp,
        &terms,
        bond,
        chain.params.bond_min,
        &miner,
        &chain.coordinator,
        finder.clone(),
        fee,
        fee,
    )
    .unwrap();
    let txid = node
        .call(
            "sendrawtransaction",
            vec![json!(bitcoin::consensus::encode::serialize_hex(&slash))],
        )
        .await;
    assert_eq!(txid, json!(slash.compute_txid().to_string()));
    let block = mine(&node, &chain, &producer).await;
    assert_eq!(block.txdata.len(), 2, "the slash is in block 2");
    assert_eq!(
        node.call("gettxout", vec![json!(bond.txid.to_string()), json!(0)])
            .await,
        Value::Null
    );
    // Half (the default share) of the bond less the fee to the finder; the rest burned.
    let paid = node
        .call("gettxout", vec![json!(txid.as_str().unwrap()), json!(0)])
        .await;
    assert_eq!(paid["value"], json!(0.499995));
    let gone = stdout(&trainchain(&[
        "wallet",
        "bond",
        "inspect",
        &bond.to_string(),
        "--key",
        key,
        "--rpc",
        &node.rpc_url,
        "--rpc-data-dir",
        data_str,
    ]));
    assert!(field(&gone, "status:").starts_with("spent"), "{gone}");
}

/// `devnet::chain::create_funded` makes a devnet chain whose genesis pays each given script, and
/// a node connects it with those coins in its set; over the height-0 subsidy is refused.
#[test]
fn a_funded_devnet_genesis_connects_with_its_allocations() {
    let dir = tempfile::tempdir().unwrap();
    let secp = bitcoin::secp256k1::Secp256k1::new();
    let miners: Vec<_> = (0..3)
        .map(|n| testkit::p2wpkh(&secp, &testkit::key(n)))
        .collect();
    let allocations: Vec<_> = miners
        .iter()
        .map(|script| (script.clone(), Amount::from_int_btc(2)))
        .collect();
    let params =
        devnet::chain::create_funded(&dir.path().join("chain"), 10, 1_700_000_000, allocations)
            .unwrap();
    assert_eq!(load_params(&dir.path().join("chain")), params);
    let state = ChainState::open(&dir.path().join("chain.redb"), params.clone()).unwrap();
    for script in &miners {
        let coins = state.store().coins_by_script(script).unwrap();
        assert_eq!(coins.len(), 1);
        assert_eq!(coins[0].1.output.value, Amount::from_int_btc(2));
        assert!(coins[0].1.is_coinbase);
    }
    let over = devnet::chain::create_funded(
        &dir.path().join("over"),
        10,
        1_700_000_000,
        vec![(miners[0].clone(), Amount::from_int_btc(51))],
    );
    assert!(over.is_err());
}
