//! Builders for valid, signed test chains. Used by tests and benchmarks only: it holds secret
//! keys in memory and makes no attempt to be a wallet.

use bitcoin::absolute::LockTime;
use bitcoin::hashes::Hash;
use bitcoin::secp256k1::{All, Message, PublicKey, Secp256k1, SecretKey};
use bitcoin::sighash::{EcdsaSighashType, SighashCache};
use bitcoin::transaction::Version;
use bitcoin::{
    Amount, BlockHash, CompressedPublicKey, Network, OutPoint, ScriptBuf, Sequence, Transaction,
    TxIn, TxOut, Witness,
};
use primitives::block::coinbase_script_sig;
use primitives::genesis::{build_genesis, GenesisSpec};
use primitives::merkle::block_merkle_root;
use primitives::params::{SubsidySchedule, DEFAULT_BLOCK_BYTES_MAX};
use primitives::{
    Block, BlockHeader, Certificate, CertificateKind, ChainParams, Hash256, UnsignedCertificate,
};

pub const GENESIS_TIME: u32 = 1_700_000_000;
pub const CHAIN_ID: u32 = 0x7e57;
/// Seconds between consecutive test blocks.
pub const BLOCK_INTERVAL_SECS: u32 = 60;

/// A deterministic secret key from a small number (never zero).
pub fn key(n: u32) -> SecretKey {
    let mut bytes = [0u8; 32];
    bytes[28..].copy_from_slice(&(n + 1).to_be_bytes());
    bytes[0] = 0x11;
    SecretKey::from_slice(&bytes).expect("valid test key")
}

/// P2WPKH output script of a key.
pub fn p2wpkh(secp: &Secp256k1<All>, key: &SecretKey) -> ScriptBuf {
    let pk = CompressedPublicKey(key.public_key(secp));
    ScriptBuf::new_p2wpkh(&pk.wpubkey_hash())
}

/// A coordinator key, chain parameters with that key, and the means to sign blocks.
pub struct TestChain {
    pub secp: Secp256k1<All>,
    pub coordinator: SecretKey,
    pub params: ChainParams,
}

impl TestChain {
    /// A chain with coinbase maturity 1 block (so tests can spend quickly) and a 1 MB limit.
    pub fn new() -> TestChain {
        Self::with_maturity(1)
    }

    pub fn with_maturity(coinbase_maturity_blocks: u32) -> TestChain {
        let secp = Secp256k1::new();
        let coordinator = key(1_000_000);
        let genesis = build_genesis(
            &secp,
            &GenesisSpec {
                chain_id: CHAIN_ID,
                time: GENESIS_TIME,
                model_hash: Hash256::ZERO,
                message: "testkit genesis",
                allocations: Vec::new(),
            },
            &coordinator,
        );
        let params = ChainParams {
            name: "testkit".into(),
            chain_id: CHAIN_ID,
            network: Network::Regtest,
            coordinator_keys: vec![coordinator.public_key(&secp)],
            subsidy: SubsidySchedule::default(),
            block_bytes_max: DEFAULT_BLOCK_BYTES_MAX,
            coinbase_maturity_blocks,
            cycle_secs: 60,
            bond_min: primitives::params::DEFAULT_BOND_MIN,
            bond_lock_blocks: primitives::params::DEFAULT_BOND_LOCK_BLOCKS,
            bond_slash_key: coordinator.public_key(&secp),
            slash_finder_share_percent: primitives::params::DEFAULT_SLASH_FINDER_SHARE_PERCENT,
            bonds_required: false,
            genesis,
        };
        TestChain {
            secp,
            coordinator,
            params,
        }
    }

    pub fn genesis(&self) -> &Block {
        &self.params.genesis
    }

    pub fn subsidy(&self) -> Amount {
        Amount::from_sat(self.params.subsidy.initial_sats)
    }

    /// An unsigned block-signing certificate for `miner` at `height` on `parent`.
    pub fn certificate_body(
        &self,
        height: u32,
        parent: BlockHash,
        attempt: u32,
        miner: PublicKey,
    ) -> UnsignedCertificate {
        let mut nonce = [0u8; 16];
        nonce[..4].copy_from_slice(&height.to_le_bytes());
        nonce[4..8].copy_from_slice(&attempt.to_le_bytes());
        nonce[8..16].copy_from_slice(&parent.as_byte_array()[..8]);
        UnsignedCertificate {
            kind: CertificateKind::BlockSigning,
            chain_id: self.params.chain_id,
            cycle: u64::from(height),
            height,
            prev_block_hash: parent,
            attempt,
            miner,
            params_trained: 1_000,
            loss_reduction: 50_000,
            score: 50_000_000,
            contributions_root: Hash256([1; 32]),
            lottery_seed: Hash256([2; 32]),
            model_hash: Hash256([3; 32]),
            // The same model throughout: every block satisfies the lineage rule.
            next_model_hash: Hash256([3; 32]),
            record_hash: Hash256([4; 32]),
            issued_at: u64::from(GENESIS_TIME) + u64::from(height) * 60,
            // A day past the builders' block time: wide enough for every test's header time.
            expires_at: u64::from(block_time(height)) + 86_400,
            nonce,
            coordinator: self.coordinator.public_key(&self.secp),
        }
    }

    pub fn sign_certificate(&self, body: UnsignedCertificate) -> Certificate {
        body.sign(&self.secp, &self.coordinator)
    }

    /// A coinbase for `height` paying `value` to `miner`'s P2WPKH address.
    pub fn coinbase(&self, height: u32, value: Amount, miner: &SecretKey) -> Transaction {
        Transaction {
            version: Version::TWO,
            lock_time: LockTime::ZERO,
            input: vec![TxIn {
                previous_output: OutPoint::null(),
                script_sig: coinbase_script_sig(height, b"testkit"),
                sequence: Sequence::MAX,
                witness: Witness::new(),
            }],
            output: vec![TxOut {
                value,
                script_pubkey: p2wpkh(&self.secp, miner),
            }],
        }
    }

    /// Assembles and signs a block from a certificate and the full transaction list.
    pub fn assemble(
        &self,
        certificate: Certificate,
        time: u32,
        txdata: Vec<Transaction>,
        producer: &SecretKey,
    ) -> Block {
        let header = BlockHeader {
            version: primitives::header::HEADER_VERSION,
            prev_block_hash: certificate.body.prev_block_hash,
            merkle_root: block_merkle_root(&txdata).root,
            time,
            certificate,
        };
        Block::sign(&self.secp, header, txdata, producer)
    }

    /// A valid block at `height` on `parent`: certificate for `miner` (attempt 0), coinbase paying
    /// the subsidy plus `fees` to `miner`, then `txs`.
    pub fn block(
        &self,
        parent: BlockHash,
        height: u32,
        miner: &SecretKey,
        txs: Vec<Transaction>,
        fees: Amount,
    ) -> Block {
        self.block_with_attempt(parent, height, 0, miner, txs, fees)
    }

    pub fn block_with_attempt(
        &self,
        parent: BlockHash,
        height: u32,
        attempt: u32,
        miner: &SecretKey,
        txs: Vec<Transaction>,
        fees: Amount,
    ) -> Block {
        let cert = self.sign_certificate(self.certificate_body(
            height,
            parent,
            attempt,
            miner.public_key(&self.secp),
        ));
        let mut txdata = vec![self.coinbase(height, self.subsidy() + fees, miner)];
        txdata.extend(txs);
        self.assemble(cert, block_time(height), txdata, miner)
    }

    /// Builds `count` blocks on genesis, each mined by `miner` with an empty body.
    pub fn empty_chain(&self, count: u32, miner: &SecretKey) -> Vec<Block> {
        let mut parent = self.params.genesis_hash();
        (1..=count)
            .map(|height| {
                let block = self.block(parent, height, miner, vec![], Amount::ZERO);
                parent = block.block_hash();
                block
            })
            .collect()
    }

    /// A transaction spending P2WPKH `inputs` owned by `owner` to `outputs`, signed (BIP143).
    pub fn spend(
        &self,
        inputs: &[(OutPoint, TxOut)],
        outputs: Vec<TxOut>,
        owner: &SecretKey,
    ) -> Transaction {
        let mut tx = Transaction {
            version: Version::TWO,
            lock_time: LockTime::ZERO,
            input: inputs
                .iter()
                .map(|(outpoint, _)| TxIn {
                    previous_output: *outpoint,
                    script_sig: ScriptBuf::new(),
                    sequence: Sequence::MAX,
                    witness: Witness::new(),
                })
                .collect(),
            output: outputs,
        };
        let pubkey = owner.public_key(&self.secp);
        let witnesses: Vec<Witness> = {
            let mut cache = SighashCache::new(&tx);
            inputs
                .iter()
                .enumerate()
                .map(|(index, (_, prev))| {
                    let sighash = cache
                        .p2wpkh_signature_hash(
                            index,
                            &prev.script_pubkey,
                            prev.value,
                            EcdsaSighashType::All,
                        )
                        .expect("input index in range");
                    let msg = Message::from_digest(sighash.to_byte_array());
                    let sig =
                        bitcoin::ecdsa::Signature::sighash_all(self.secp.sign_ecdsa(&msg, owner));
                    Witness::p2wpkh(&sig, &pubkey)
                })
                .collect()
        };
        for (input, witness) in tx.input.iter_mut().zip(witnesses) {
            input.witness = witness;
        }
        tx
    }
}

impl Default for TestChain {
    fn default() -> Self {
        Self::new()
    }
}

/// Block time used by the builders: genesis time plus one interval per height.
pub fn block_time(height: u32) -> u32 {
    GENESIS_TIME + height * BLOCK_INTERVAL_SECS
}

/// The coinbase output of `block` as a spendable input.
pub fn coinbase_output(block: &Block) -> (OutPoint, TxOut) {
    let coinbase = &block.txdata[0];
    (
        OutPoint::new(coinbase.compute_txid(), 0),
        coinbase.output[0].clone(),
    )
}

/// A copy of `block` as a hostile relayer could make it without any key: one byte of the DER
/// signature in the witness of input 0 of transaction `tx_index` flipped. The txid, the block
/// hash and the producer signature are unchanged; the witness no longer verifies, and the wtxid
/// (so the header's Merkle root over wtxids) no longer matches.
pub fn malleate_witness(block: &Block, tx_index: usize) -> Block {
    let mut copy = block.clone();
    let input = &mut copy.txdata[tx_index].input[0];
    let mut elements: Vec<Vec<u8>> = input.witness.iter().map(<[u8]>::to_vec).collect();
    // Byte 8 lies inside the signature's r value (DER: 0x30 len 0x02 len r...), so the
    // encoding still parses and only the signature check can fail.
    elements[0][8] ^= 0x01;
    input.witness = Witness::from_slice(&elements);
    copy
}

/// A copy of `block` with its producer signature replaced by one from `key` (not the miner):
/// another thing a relayer can change without changing the block hash.
pub fn replace_producer_signature(secp: &Secp256k1<All>, block: &Block, key: &SecretKey) -> Block {
    let msg = Message::from_digest(Block::signing_hash(&block.block_hash()).0);
    Block {
        producer_signature: secp.sign_ecdsa(&msg, key),
        ..block.clone()
    }
}
