//! The `bitcoincore-rpc` crate (rust-bitcoin's Core client, unmodified) against a live node:
//! every call here is the crate's own typed method, so its request bodies, its auth and its
//! strict deserialisation of Core's reply shapes are what is tested.

use bitcoin::{Amount, Transaction, TxOut};
use bitcoincore_rpc::{Auth, Client, RpcApi};
use node::mempool::{Mempool, MempoolLimits};
use node::rpc::{self, RpcAuth};
use node::{ChainState, NodeHandle};
use testkit::{block_time, coinbase_output, key, p2wpkh, TestChain};

/// Blocks mined on genesis before the test.
const BLOCKS: u64 = 3;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bitcoincore_rpc_crate_reads_the_chain_and_sends_and_confirms_a_transaction() {
    let dir = tempfile::tempdir().unwrap();
    let chain = TestChain::new();
    let state = ChainState::open(&dir.path().join("chain.redb"), chain.params.clone()).unwrap();
    let (node, _net) = NodeHandle::new(state, Mempool::new(MempoolLimits::default()));
    let blocks = chain.empty_chain(BLOCKS as u32, &key(1));
    for block in blocks.clone() {
        node.process_block(block).unwrap();
    }
    let server = rpc::start_in(
        node.clone(),
        "127.0.0.1:0".parse().unwrap(),
        RpcAuth::Basic(vec!["user:secret".into()]),
        Some(dir.path().to_path_buf()),
    )
    .await
    .unwrap();
    let url = format!("http://{}", server.local_addr);
    let (outpoint, prev) = coinbase_output(&blocks[0]);
    let tx: Transaction = chain.spend(
        &[(outpoint, prev.clone())],
        vec![TxOut {
            value: prev.value - Amount::from_sat(10_000),
            script_pubkey: p2wpkh(&chain.secp, &key(7)),
        }],
        &key(1),
    );
    let best = blocks.last().unwrap().block_hash();

    // The crate's client is blocking (minreq over HTTP): run it off the server's runtime.
    tokio::task::spawn_blocking(move || {
        let client = Client::new(&url, Auth::UserPass("user".into(), "secret".into())).unwrap();
        assert_eq!(client.get_block_count().unwrap(), BLOCKS);
        assert_eq!(client.get_best_block_hash().unwrap(), best);
        assert_eq!(client.get_block_hash(BLOCKS).unwrap(), best);
        let info = client.get_blockchain_info().unwrap();
        assert_eq!(info.blocks, BLOCKS);
        assert_eq!(info.best_block_hash, best);
        let header = client.get_block_header_info(&best).unwrap();
        assert_eq!(header.height as u64, BLOCKS);
        let block = client.get_block_info(&best).unwrap();
        assert_eq!((block.height as u64, block.tx.len()), (BLOCKS, 1));
        assert_eq!(
            client.get_tx_out_set_info(None, None, None).unwrap().height,
            BLOCKS
        );
        let tips = client.get_chain_tips().unwrap();
        assert_eq!(tips[0].hash, best);
        assert!(client.get_network_info().unwrap().version > 0);
        assert_eq!(client.get_connection_count().unwrap(), 0);
        assert_eq!(client.get_mining_info().unwrap().blocks, BLOCKS as u32);
        client.get_difficulty().unwrap();
        client.estimate_smart_fee(6, None).unwrap();

        // The coin it spends is there, then sent, then in the pool.
        let coin = client
            .get_tx_out(&outpoint.txid, outpoint.vout, Some(false))
            .unwrap();
        assert_eq!(coin.map(|c| c.value), Some(prev.value));
        let tested = client.test_mempool_accept(&[&tx]).unwrap();
        assert!(tested[0].allowed, "{tested:?}");
        let txid = client.send_raw_transaction(&tx).unwrap();
        assert_eq!(txid, tx.compute_txid());
        assert_eq!(client.get_raw_mempool().unwrap(), vec![txid]);
        let entry = client.get_mempool_entry(&txid).unwrap();
        assert_eq!(entry.fees.base, Amount::from_sat(10_000));
        assert_eq!(client.get_mempool_info().unwrap().size, 1);
        let back = client.get_raw_transaction(&txid, None).unwrap();
        assert_eq!(back, tx);
        let verbose = client.get_raw_transaction_info(&txid, None).unwrap();
        assert_eq!(verbose.txid, txid);
        // Unconfirmed: none of Core's chain fields.
        assert_eq!(
            (
                verbose.in_active_chain,
                verbose.blockhash,
                verbose.confirmations,
                verbose.time,
                verbose.blocktime
            ),
            (None, None, None, None, None)
        );

        // Confirmed in a block on the tip: Core's chain fields, from the block's header.
        let height = BLOCKS as u32 + 1;
        let block = chain.block(
            best,
            height,
            &key(2),
            vec![tx.clone()],
            Amount::from_sat(10_000),
        );
        let mined = block.block_hash();
        node.process_block(block).unwrap();
        let confirmed = client
            .get_raw_transaction_info(&txid, Some(&mined))
            .unwrap();
        assert_eq!(confirmed.txid, txid);
        assert_eq!(confirmed.in_active_chain, Some(true));
        assert_eq!(confirmed.blockhash, Some(mined));
        assert_eq!(confirmed.confirmations, Some(1));
        assert_eq!(confirmed.time, Some(block_time(height) as usize));
        assert_eq!(confirmed.blocktime, Some(block_time(height) as usize));
        // Block 1's coinbase, under BLOCKS blocks.
        let first = blocks[0].block_hash();
        let coinbase = client
            .get_raw_transaction_info(&outpoint.txid, Some(&first))
            .unwrap();
        assert_eq!(coinbase.confirmations, Some(BLOCKS as u32 + 1));
        assert_eq!(coinbase.blocktime, Some(block_time(1) as usize));

        // Wrong credentials are Core's 401, surfaced by the crate as an error, not a hang.
        let wrong = Client::new(&url, Auth::UserPass("user".into(), "nope".into())).unwrap();
        assert!(wrong.get_block_count().is_err());
    })
    .await
    .unwrap();
}
