//! Bonds on chain: a bond output is accepted; its two branches are spent with real signatures
//! over real BIP143 sighashes and run in Bitcoin Core's interpreter (libbitcoinconsensus); the
//! miner's branch waits for the BIP68/BIP112 relative lock. Each violation is rejected, each
//! honest spend accepted.

use bitcoin::blockdata::opcodes::all::OP_PUSHNUM_1;
use bitcoin::hashes::Hash;
use bitcoin::script::Builder;
use bitcoin::secp256k1::{Message, SecretKey};
use bitcoin::sighash::{EcdsaSighashType, SighashCache};
use bitcoin::transaction::Version;
use bitcoin::{
    absolute::LockTime, Amount, OutPoint, ScriptBuf, Sequence, Transaction, TxIn, TxOut, Txid,
    Witness,
};
use consensus::bond::BondTerms;
use consensus::bond::{
    bond_script_pubkey, bond_witness_script, check_slash_outputs, slash_outputs,
};
use consensus::sequence_locks::SequenceLockError;
use consensus::tx::{burn_script, BYTES_PER_SCRIPT_SIGOP, P2WSH_INPUTS_MAX};
use consensus::{check_transaction, check_tx_inputs, SpendContext, TxError};
use primitives::Coin;
use std::collections::HashMap;
use testkit::{key, p2wpkh, TestChain};

const TX_BYTES_MAX: usize = 100_000;
const LOCK: u32 = 20;
const BOND_HEIGHT: u32 = 100;
const BOND_VALUE: u64 = 2_000_000;

struct Setup {
    chain: TestChain,
    terms: BondTerms,
    slasher: SecretKey,
    miner: SecretKey,
    bond: OutPoint,
    coins: HashMap<OutPoint, Coin>,
}

fn setup() -> Setup {
    let mut chain = TestChain::new();
    let slasher = key(50);
    let miner = key(51);
    chain.params.bond_slash_key = slasher.public_key(&chain.secp);
    chain.params.bond_lock_blocks = LOCK;
    chain.params.bond_min = Amount::from_sat(1_000_000);
    let terms = BondTerms::from_params(&chain.params);
    let bond = OutPoint::new(Txid::from_byte_array([7; 32]), 0);
    let coins = HashMap::from([(
        bond,
        Coin {
            output: TxOut {
                value: Amount::from_sat(BOND_VALUE),
                script_pubkey: bond_script_pubkey(&terms, &miner.public_key(&chain.secp)),
            },
            height: BOND_HEIGHT,
            is_coinbase: false,
        },
    )]);
    Setup {
        chain,
        terms,
        slasher,
        miner,
        bond,
        coins,
    }
}

fn at(height: u32) -> SpendContext {
    SpendContext {
        height,
        median_time_past: 1_700_000_000,
        coinbase_maturity_blocks: 5,
    }
}

#[derive(Clone, Copy)]
enum Branch {
    /// `OP_IF`: the slashing key, any time.
    Slash,
    /// `OP_ELSE`: the miner, after the relative lock.
    Reclaim,
}

/// A spend of the bond through `branch`, signed by `signer` over the BIP143 sighash of
/// `witness_script`.
fn spend(
    s: &Setup,
    version: i32,
    sequence: u32,
    branch: Branch,
    signer: &SecretKey,
    witness_script: &ScriptBuf,
) -> Transaction {
    let mut tx = Transaction {
        version: Version(version),
        lock_time: LockTime::ZERO,
        input: vec![TxIn {
            previous_output: s.bond,
            script_sig: ScriptBuf::new(),
            sequence: Sequence(sequence),
            witness: Witness::new(),
        }],
        output: vec![TxOut {
            value: Amount::from_sat(BOND_VALUE - 1_000),
            script_pubkey: p2wpkh(&s.chain.secp, &key(60)),
        }],
    };
    sign(s, &mut tx, branch, signer, witness_script);
    tx
}

fn sign(
    s: &Setup,
    tx: &mut Transaction,
    branch: Branch,
    signer: &SecretKey,
    witness_script: &ScriptBuf,
) {
    let sighash = SighashCache::new(&*tx)
        .p2wsh_signature_hash(
            0,
            witness_script,
            Amount::from_sat(BOND_VALUE),
            EcdsaSighashType::All,
        )
        .unwrap();
    let msg = Message::from_digest(sighash.to_byte_array());
    let sig = bitcoin::ecdsa::Signature::sighash_all(s.chain.secp.sign_ecdsa(&msg, signer));
    let selector: &[u8] = match branch {
        Branch::Slash => &[1],
        Branch::Reclaim => &[],
    };
    tx.input[0].witness =
        Witness::from_slice(&[sig.to_vec(), selector.to_vec(), witness_script.to_bytes()]);
}

fn script(s: &Setup) -> ScriptBuf {
    bond_witness_script(&s.terms, &s.miner.public_key(&s.chain.secp))
}

fn verdict(s: &Setup, tx: &Transaction, height: u32) -> Result<(), TxError> {
    check_transaction(tx, TX_BYTES_MAX)?;
    check_tx_inputs(tx, &s.coins, &at(height)).map(|_| ())
}

fn script_failed(result: Result<(), TxError>) -> bool {
    matches!(result, Err(TxError::ScriptFailed { index: 0, .. }))
}

#[test]
fn a_bond_output_is_accepted() {
    let s = setup();
    let funding = (
        OutPoint::new(Txid::from_byte_array([1; 32]), 0),
        TxOut {
            value: Amount::from_sat(5_000_000),
            script_pubkey: p2wpkh(&s.chain.secp, &key(1)),
        },
    );
    let coins = HashMap::from([(
        funding.0,
        Coin {
            output: funding.1.clone(),
            height: 1,
            is_coinbase: false,
        },
    )]);
    let bond_out = TxOut {
        value: Amount::from_sat(BOND_VALUE),
        script_pubkey: bond_script_pubkey(&s.terms, &s.miner.public_key(&s.chain.secp)),
    };
    let tx = s.chain.spend(&[funding], vec![bond_out], &key(1));
    assert_eq!(check_transaction(&tx, TX_BYTES_MAX), Ok(()));
    assert!(check_tx_inputs(&tx, &coins, &at(10)).is_ok());
    // Other non-standard kinds stay refused: bare multisig-ish script, P2PKH, P2SH.
    for script_pubkey in [
        Builder::new().push_opcode(OP_PUSHNUM_1).into_script(),
        ScriptBuf::new_p2pkh(&bitcoin::PubkeyHash::from_byte_array([2; 20])),
        ScriptBuf::new_p2sh(&bitcoin::ScriptHash::from_byte_array([3; 20])),
    ] {
        let mut bad = tx.clone();
        bad.output[0].script_pubkey = script_pubkey;
        assert_eq!(
            check_transaction(&bad, TX_BYTES_MAX),
            Err(TxError::UnsupportedOutputScript { index: 0 })
        );
    }
}

#[test]
fn the_miner_reclaims_only_after_the_lock() {
    let s = setup();
    let tx = spend(&s, 2, LOCK, Branch::Reclaim, &s.miner, &script(&s));
    assert_eq!(verdict(&s, &tx, BOND_HEIGHT + LOCK), Ok(()));
    assert_eq!(verdict(&s, &tx, BOND_HEIGHT + LOCK + 500), Ok(()));
    assert_eq!(
        verdict(&s, &tx, BOND_HEIGHT + LOCK - 1),
        Err(TxError::SequenceLock(SequenceLockError::NotReached {
            index: 0,
            required: u64::from(BOND_HEIGHT + LOCK),
        }))
    );
    // A sequence below the script's lock satisfies BIP68 at any later height, but OP_CSV fails.
    let short = spend(&s, 2, LOCK - 1, Branch::Reclaim, &s.miner, &script(&s));
    assert!(script_failed(verdict(&s, &short, BOND_HEIGHT + 1_000)));
    // BIP68 disabled (bit 31) makes OP_CSV fail too.
    let disabled = spend(
        &s,
        2,
        (1 << 31) | LOCK,
        Branch::Reclaim,
        &s.miner,
        &script(&s),
    );
    assert!(script_failed(verdict(&s, &disabled, BOND_HEIGHT + 1_000)));
    // A time-based relative lock is refused by consensus here.
    let timed = spend(
        &s,
        2,
        (1 << 22) | LOCK,
        Branch::Reclaim,
        &s.miner,
        &script(&s),
    );
    assert_eq!(
        verdict(&s, &timed, BOND_HEIGHT + 1_000),
        Err(TxError::SequenceLock(SequenceLockError::TimeBased {
            index: 0
        }))
    );
}

#[test]
fn a_version_one_transaction_cannot_use_the_csv_branch() {
    let s = setup();
    // BIP68 does not apply to version 1 and BIP112 makes OP_CSV fail for it.
    let tx = spend(&s, 1, LOCK, Branch::Reclaim, &s.miner, &script(&s));
    assert!(script_failed(verdict(&s, &tx, BOND_HEIGHT + 1_000)));
    // The slashing branch has no CSV, so version 1 is fine there.
    let slash = spend(&s, 1, u32::MAX, Branch::Slash, &s.slasher, &script(&s));
    assert_eq!(verdict(&s, &slash, BOND_HEIGHT + 1), Ok(()));
}

#[test]
fn the_slash_key_spends_before_the_lock() {
    let s = setup();
    let tx = spend(&s, 2, u32::MAX, Branch::Slash, &s.slasher, &script(&s));
    assert_eq!(verdict(&s, &tx, BOND_HEIGHT + 1), Ok(()));
    // With the policy's outputs: the finder's share and the burn.
    let finder = p2wpkh(&s.chain.secp, &key(61));
    let fee_max = Amount::from_sat(10_000);
    let mut slash = tx.clone();
    slash.output = slash_outputs(
        &s.terms,
        Amount::from_sat(BOND_VALUE),
        Amount::from_sat(2_000),
        fee_max,
        finder.clone(),
    )
    .unwrap();
    sign(&s, &mut slash, Branch::Slash, &s.slasher, &script(&s));
    assert_eq!(verdict(&s, &slash, BOND_HEIGHT + 1), Ok(()));
    assert_eq!(
        check_slash_outputs(
            &slash,
            &s.terms,
            Amount::from_sat(BOND_VALUE),
            fee_max,
            &finder
        ),
        Ok(())
    );
    let (fee, _) = check_tx_inputs(&slash, &s.coins, &at(BOND_HEIGHT + 1)).unwrap();
    assert_eq!(fee, Amount::from_sat(2_000));
}

#[test]
fn wrong_key_branch_or_signature_is_rejected_by_the_script() {
    let s = setup();
    let height = BOND_HEIGHT + 1_000;
    let cases: Vec<(&str, Transaction)> = vec![
        (
            "miner key on the slash branch",
            spend(&s, 2, u32::MAX, Branch::Slash, &s.miner, &script(&s)),
        ),
        (
            "slash key on the miner branch",
            spend(&s, 2, LOCK, Branch::Reclaim, &s.slasher, &script(&s)),
        ),
        (
            "an unrelated key",
            spend(&s, 2, LOCK, Branch::Reclaim, &key(99), &script(&s)),
        ),
        ("bad signature", {
            let mut tx = spend(&s, 2, LOCK, Branch::Reclaim, &s.miner, &script(&s));
            // Signed, then the outputs changed: the signature no longer covers the transaction.
            tx.output[0].value -= Amount::ONE_SAT;
            tx
        }),
        ("witness script of another miner", {
            let other = bond_witness_script(&s.terms, &key(98).public_key(&s.chain.secp));
            spend(&s, 2, LOCK, Branch::Reclaim, &key(98), &other)
        }),
        ("missing branch selector", {
            let mut tx = spend(&s, 2, LOCK, Branch::Reclaim, &s.miner, &script(&s));
            let items: Vec<Vec<u8>> = tx.input[0].witness.iter().map(<[u8]>::to_vec).collect();
            tx.input[0].witness = Witness::from_slice(&[items[0].clone(), items[2].clone()]);
            tx
        }),
    ];
    for (name, tx) in cases {
        let result = verdict(&s, &tx, height);
        assert!(script_failed(result.clone()), "{name}: {result:?}");
    }
    // The honest spend of the same shape passes at the same height.
    let honest = spend(&s, 2, LOCK, Branch::Reclaim, &s.miner, &script(&s));
    assert_eq!(verdict(&s, &honest, height), Ok(()));
    let err = verdict(
        &s,
        &spend(&s, 2, u32::MAX, Branch::Slash, &s.miner, &script(&s)),
        height,
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("input 0") && err.contains("libbitcoinconsensus"),
        "{err}"
    );
}

#[test]
fn only_the_burn_script_may_carry_value_in_an_op_return() {
    let s = setup();
    let mut tx = spend(&s, 2, u32::MAX, Branch::Slash, &s.slasher, &script(&s));
    tx.output.push(TxOut {
        value: Amount::from_sat(500),
        script_pubkey: burn_script(),
    });
    assert_eq!(check_transaction(&tx, TX_BYTES_MAX), Ok(()));
    tx.output[1].script_pubkey = ScriptBuf::new_op_return(b"burm");
    assert_eq!(
        check_transaction(&tx, TX_BYTES_MAX),
        Err(TxError::OpReturnWithValue { index: 1 })
    );
}

#[test]
fn p2wsh_inputs_per_transaction_are_bounded() {
    let s = setup();
    // Anyone-can-spend witness script `OP_1`: cheap to run, so only the count matters.
    let op_true = Builder::new().push_opcode(OP_PUSHNUM_1).into_script();
    let spk = ScriptBuf::new_p2wsh(&op_true.wscript_hash());
    let build = |n: usize| {
        let mut coins = HashMap::new();
        let input = (0..n)
            .map(|i| {
                let outpoint = OutPoint::new(Txid::from_byte_array([9; 32]), i as u32);
                coins.insert(
                    outpoint,
                    Coin {
                        output: TxOut {
                            value: Amount::from_sat(1_000),
                            script_pubkey: spk.clone(),
                        },
                        height: 1,
                        is_coinbase: false,
                    },
                );
                TxIn {
                    previous_output: outpoint,
                    script_sig: ScriptBuf::new(),
                    sequence: Sequence::MAX,
                    witness: Witness::from_slice(&[op_true.to_bytes()]),
                }
            })
            .collect();
        let tx = Transaction {
            version: Version::TWO,
            lock_time: LockTime::ZERO,
            input,
            output: vec![TxOut {
                value: Amount::from_sat(500),
                script_pubkey: p2wpkh(&s.chain.secp, &key(2)),
            }],
        };
        (tx, coins)
    };
    let (tx, coins) = build(P2WSH_INPUTS_MAX);
    assert!(check_tx_inputs(&tx, &coins, &at(10)).is_ok());
    let (tx, coins) = build(P2WSH_INPUTS_MAX + 1);
    assert_eq!(
        check_tx_inputs(&tx, &coins, &at(10)).map(|_| ()),
        Err(TxError::TooManyScriptInputs {
            count: P2WSH_INPUTS_MAX + 1
        })
    );
}

#[test]
fn witness_script_signature_operations_are_bounded_by_size() {
    use bitcoin::blockdata::opcodes::all::{OP_2DUP, OP_CHECKSIGVERIFY};
    let s = setup();
    // `<sig> <key>` then `2DUP CHECKSIGVERIFY` n times and a final CHECKSIG: n + 1 checks of one
    // signature in a few hundred bytes, the shape of a signature-check flood.
    let signer = key(70);
    let flood = |n: usize| {
        let mut b = Builder::new();
        for _ in 0..n {
            b = b.push_opcode(OP_2DUP).push_opcode(OP_CHECKSIGVERIFY);
        }
        b.push_opcode(bitcoin::blockdata::opcodes::all::OP_CHECKSIG)
            .into_script()
    };
    let run = |n: usize| {
        let script = flood(n);
        let outpoint = OutPoint::new(Txid::from_byte_array([8; 32]), 0);
        let coins = HashMap::from([(
            outpoint,
            Coin {
                output: TxOut {
                    value: Amount::from_sat(BOND_VALUE),
                    script_pubkey: ScriptBuf::new_p2wsh(&script.wscript_hash()),
                },
                height: 1,
                is_coinbase: false,
            },
        )]);
        let mut tx = Transaction {
            version: Version::TWO,
            lock_time: LockTime::ZERO,
            input: vec![TxIn {
                previous_output: outpoint,
                script_sig: ScriptBuf::new(),
                sequence: Sequence::MAX,
                witness: Witness::new(),
            }],
            output: vec![TxOut {
                value: Amount::from_sat(BOND_VALUE - 1_000),
                script_pubkey: p2wpkh(&s.chain.secp, &key(60)),
            }],
        };
        let sighash = SighashCache::new(&tx)
            .p2wsh_signature_hash(
                0,
                &script,
                Amount::from_sat(BOND_VALUE),
                EcdsaSighashType::All,
            )
            .unwrap();
        let msg = Message::from_digest(sighash.to_byte_array());
        let sig = bitcoin::ecdsa::Signature::sighash_all(s.chain.secp.sign_ecdsa(&msg, &signer));
        tx.input[0].witness = Witness::from_slice(&[
            sig.to_vec(),
            signer.public_key(&s.chain.secp).serialize().to_vec(),
            script.to_bytes(),
        ]);
        let bytes = tx.total_size();
        (check_tx_inputs(&tx, &coins, &at(10)).map(|_| ()), bytes)
    };
    // Two checks in a ~230-byte transaction: well within one per 50 bytes.
    assert_eq!(run(1).0, Ok(()));
    // Ninety checks in a ~410-byte transaction: refused before any runs.
    let (result, bytes) = run(89);
    assert!(90 * BYTES_PER_SCRIPT_SIGOP > bytes);
    assert_eq!(
        result,
        Err(TxError::ScriptSigopsDensity { sigops: 90, bytes })
    );
}
