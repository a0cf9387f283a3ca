//! `trainchain init` and the offline wallet commands, run as a user would run them.

use bitcoin::consensus::encode::deserialize_hex;
use bitcoin::{Amount, Transaction};
use node::ChainState;
use primitives::ChainParams;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};
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

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn init_writes_valid_parameters_and_a_private_key_and_refuses_to_overwrite() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("chain");
    let data = data.to_str().unwrap();
    let out = stdout(&trainchain(&[
        "init",
        "--data-dir",
        data,
        "--cycle-secs",
        "30",
    ]));
    assert!(out.contains("genesis block:"), "{out}");

    let params = ChainParams::from_toml(
        &std::fs::read_to_string(dir.path().join("chain/chain.toml")).unwrap(),
    )
    .unwrap();
    assert_eq!(params.cycle_secs, 30);
    assert_eq!(params.chain_id, 7001);
    assert_eq!(mode(&dir.path().join("chain/coordinator.key")), 0o600);

    let again = trainchain(&["init", "--data-dir", data]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("refusing to overwrite"));
}

#[test]
fn wallet_sees_mined_coins_and_pays_with_a_transaction_consensus_accepts() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("node");
    let data_str = data.to_str().unwrap();
    stdout(&trainchain(&[
        "init",
        "--data-dir",
        data_str,
        "--coinbase-maturity",
        "2",
    ]));
    let key_path = dir.path().join("miner.key");
    let key_str = key_path.to_str().unwrap();
    let address = stdout(&trainchain(&["wallet", "new", "--key", key_str]));
    assert!(address.starts_with("bcrt1q"), "{address}");
    assert_eq!(mode(&key_path), 0o600);
    assert_eq!(
        stdout(&trainchain(&["wallet", "address", "--key", key_str])),
        address
    );

    // Mine three blocks to the wallet, signed with the coordinator key `init` wrote.
    let params =
        ChainParams::from_toml(&std::fs::read_to_string(data.join("chain.toml")).unwrap()).unwrap();
    let chain = TestChain {
        secp: bitcoin::secp256k1::Secp256k1::new(),
        coordinator: wallet::key_file::load(&data.join("coordinator.key")).unwrap(),
        params: params.clone(),
    };
    let miner = wallet::key_file::load(&key_path).unwrap();
    {
        let mut state = ChainState::open(&data.join("chain.redb"), params.clone()).unwrap();
        let mut parent = params.genesis_hash();
        let start = params.genesis.header.time;
        for height in 1..=3 {
            let mut body = chain.certificate_body(height, parent, 0, miner.public_key(&chain.secp));
            // This chain's genesis is today, not the testkit's: a window around its blocks.
            body.issued_at = u64::from(start);
            body.expires_at = u64::from(start) + 3_600;
            let cert = chain.sign_certificate(body);
            let coinbase = chain.coinbase(height, chain.subsidy(), &miner);
            let block = chain.assemble(cert, start + height * 60, vec![coinbase], &miner);
            parent = block.block_hash();
            state.process_block(block, u64::from(start) + 3600).unwrap();
        }
    }

    let balance = stdout(&trainchain(&[
        "wallet",
        "balance",
        "--key",
        key_str,
        "--data-dir",
        data_str,
    ]));
    // Maturity 2 at tip 3: blocks 1 and 2 are spendable, block 3 is not.
    assert!(balance.contains("spendable: 100 BTC"), "{balance}");
    assert!(balance.contains("immature:  50 BTC"), "{balance}");

    let to = stdout(&trainchain(&[
        "wallet",
        "new",
        "--key",
        dir.path().join("other.key").to_str().unwrap(),
    ]));
    let raw = stdout(&trainchain(&[
        "wallet",
        "pay",
        "--key",
        key_str,
        "--to",
        to.trim(),
        "--amount",
        "60",
        "--fee-rate",
        "2",
        "--data-dir",
        data_str,
    ]));
    let tx: Transaction = deserialize_hex(raw.trim()).unwrap();
    assert_eq!(tx.output[0].value, Amount::from_int_btc(60));

    let state = ChainState::open(&data.join("chain.redb"), params).unwrap();
    let coins = state.coins_for([&tx]).unwrap();
    let (fee, _) =
        consensus::check_tx_inputs(&tx, &coins, &state.next_spend_context().unwrap()).unwrap();
    assert!(
        fee >= Amount::from_sat(2 * consensus::tx::fee_bytes(&tx)),
        "fee {fee}"
    );
    drop(state);

    let too_much = trainchain(&[
        "wallet",
        "pay",
        "--key",
        key_str,
        "--to",
        to.trim(),
        "--amount",
        "101",
        "--data-dir",
        data_str,
    ]);
    assert!(!too_much.status.success());
    assert!(
        String::from_utf8_lossy(&too_much.stderr).contains("insufficient"),
        "{}",
        String::from_utf8_lossy(&too_much.stderr)
    );
}
