//! A block: header, the producer's signature over the block hash, and Bitcoin-format
//! transactions.

use crate::encoding::{DecodeError, Reader, Writer};
use crate::hash::{tagged_hash, Hash256};
use crate::header::{BlockHeader, HEADER_BYTES};
use crate::merkle::{block_merkle_root, MerkleRoot};
use bitcoin::consensus::encode;
use bitcoin::hashes::Hash;
use bitcoin::secp256k1::{ecdsa, Message, Secp256k1, SecretKey, Signing};
use bitcoin::{BlockHash, Transaction, Txid};
use thiserror::Error;

/// Largest block any decoder accepts, whatever the chain parameters say: a bound on the memory
/// one message can claim. Chain parameters may only set a consensus limit at or below it.
pub const BLOCK_BYTES_DECODE_MAX: usize = 8 * 1024 * 1024;

/// Tag of the hash the block producer signs.
pub const BLOCK_SIGNING_TAG: &str = "trainchain/block";

/// Bytes of the producer's compact ECDSA signature that follows the header.
pub const PRODUCER_SIGNATURE_BYTES: usize = 64;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Block {
    pub header: BlockHeader,
    /// ECDSA signature of the miner named in the header's certificate over
    /// [`Block::signing_hash`]. Not part of the block hash: like a transaction's witness, it
    /// proves who produced the block without changing its identity.
    pub producer_signature: ecdsa::Signature,
    pub txdata: Vec<Transaction>,
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum BlockDecodeError {
    #[error("block header or signature: {0}")]
    Header(#[from] DecodeError),
    #[error("block transactions: {0}")]
    Transactions(String),
}

impl Block {
    /// The digest the producer signs: a tagged hash of the block hash.
    pub fn signing_hash(block_hash: &BlockHash) -> Hash256 {
        tagged_hash(BLOCK_SIGNING_TAG, &[block_hash.as_byte_array()])
    }

    /// Builds a block and signs it with the producer's key (the miner key in the certificate).
    pub fn sign<C: Signing>(
        secp: &Secp256k1<C>,
        header: BlockHeader,
        txdata: Vec<Transaction>,
        producer_key: &SecretKey,
    ) -> Block {
        let msg = Message::from_digest(Self::signing_hash(&header.block_hash()).0);
        Block {
            producer_signature: secp.sign_ecdsa(&msg, producer_key),
            header,
            txdata,
        }
    }

    pub fn block_hash(&self) -> BlockHash {
        self.header.block_hash()
    }

    pub fn height(&self) -> u32 {
        self.header.height()
    }

    pub fn txids(&self) -> Vec<Txid> {
        self.txdata.iter().map(Transaction::compute_txid).collect()
    }

    /// Merkle root of the transactions' wtxids (what the header commits to), with the mutation
    /// flag; see [`crate::merkle::block_merkle_root`].
    pub fn compute_merkle_root(&self) -> MerkleRoot {
        block_merkle_root(&self.txdata)
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(HEADER_BYTES + PRODUCER_SIGNATURE_BYTES + 256);
        self.header.encode_into(&mut w);
        w.signature(&self.producer_signature);
        w.bytes(&encode::serialize(&self.txdata));
        w.finish()
    }

    /// Bytes of the encoded block: what the block size limit counts.
    pub fn encoded_len(&self) -> usize {
        HEADER_BYTES + PRODUCER_SIGNATURE_BYTES + encode::serialize(&self.txdata).len()
    }

    /// Decodes one block, refusing inputs over [`BLOCK_BYTES_DECODE_MAX`] before reading them and
    /// any bytes after the last transaction.
    pub fn decode(bytes: &[u8]) -> Result<Block, BlockDecodeError> {
        if bytes.len() > BLOCK_BYTES_DECODE_MAX {
            return Err(DecodeError::Oversize {
                len: bytes.len(),
                max: BLOCK_BYTES_DECODE_MAX,
            }
            .into());
        }
        let mut r = Reader::new(bytes);
        let header = BlockHeader::decode_from(&mut r)?;
        let producer_signature = r.signature("producer signature")?;
        let rest = r.remaining();
        // rust-bitcoin rejects non-minimal CompactSize counts and bounds its allocations.
        let (txdata, used): (Vec<Transaction>, usize) = encode::deserialize_partial(rest)
            .map_err(|e| BlockDecodeError::Transactions(e.to_string()))?;
        if used != rest.len() {
            return Err(DecodeError::TrailingBytes {
                count: rest.len() - used,
            }
            .into());
        }
        Ok(Block {
            header,
            producer_signature,
            txdata,
        })
    }
}

/// Coinbase `script_sig`: the height as a minimal script number first (BIP34, so two coinbases
/// never share a txid), then `extra` (at least two bytes in all, as Bitcoin requires).
pub fn coinbase_script_sig(height: u32, extra: &[u8]) -> bitcoin::ScriptBuf {
    let extra = bitcoin::script::PushBytesBuf::try_from(extra.to_vec())
        .unwrap_or_else(|_| bitcoin::script::PushBytesBuf::new());
    bitcoin::script::Builder::new()
        .push_int(height as i64)
        .push_slice(extra)
        .into_script()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::certificate::tests::sample_unsigned;
    use crate::header::HEADER_VERSION;
    use bitcoin::absolute::LockTime;
    use bitcoin::transaction::Version;
    use bitcoin::{Amount, OutPoint, ScriptBuf, Sequence, TxIn, TxOut, Witness};
    use proptest::prelude::*;

    fn coinbase(height: u32, value: u64) -> Transaction {
        Transaction {
            version: Version::TWO,
            lock_time: LockTime::ZERO,
            input: vec![TxIn {
                previous_output: OutPoint::null(),
                script_sig: coinbase_script_sig(height, b"test"),
                sequence: Sequence::MAX,
                witness: Witness::new(),
            }],
            output: vec![TxOut {
                value: Amount::from_sat(value),
                script_pubkey: ScriptBuf::new_op_return([1, 2, 3]),
            }],
        }
    }

    fn sample_block(seed: u64, txs: usize) -> Block {
        let secp = Secp256k1::new();
        let key = SecretKey::from_slice(&[9; 32]).unwrap();
        let cert = sample_unsigned(seed, &key).sign(&secp, &key);
        let txdata: Vec<_> = (0..txs).map(|i| coinbase(i as u32, seed)).collect();
        let merkle_root = block_merkle_root(&txdata).root;
        let header = BlockHeader {
            version: HEADER_VERSION,
            prev_block_hash: BlockHash::from_byte_array([1; 32]),
            merkle_root,
            time: 1_700_000_000,
            certificate: cert,
        };
        Block::sign(&secp, header, txdata, &key)
    }

    #[test]
    fn block_round_trips_and_hash_covers_header_only() {
        let block = sample_block(1, 3);
        let bytes = block.encode();
        assert_eq!(bytes.len(), block.encoded_len());
        let decoded = Block::decode(&bytes).unwrap();
        assert_eq!(decoded, block);
        assert_eq!(decoded.block_hash(), block.header.block_hash());
    }

    #[test]
    fn block_decoder_rejects_trailing_truncated_and_oversize() {
        let bytes = sample_block(2, 2).encode();
        assert_eq!(
            Block::decode(&[bytes.as_slice(), &[0]].concat()),
            Err(BlockDecodeError::Header(DecodeError::TrailingBytes {
                count: 1
            }))
        );
        assert!(matches!(
            Block::decode(&bytes[..bytes.len() - 1]),
            Err(BlockDecodeError::Transactions(_))
        ));
        assert!(matches!(
            Block::decode(&bytes[..HEADER_BYTES - 1]),
            Err(BlockDecodeError::Header(DecodeError::Truncated { .. }))
        ));
        assert!(matches!(
            Block::decode(&vec![0; BLOCK_BYTES_DECODE_MAX + 1]),
            Err(BlockDecodeError::Header(DecodeError::Oversize { .. }))
        ));
    }

    #[test]
    fn header_decoder_rejects_unknown_version() {
        let mut bytes = sample_block(3, 1).header.encode();
        bytes[0] = 2;
        assert_eq!(
            BlockHeader::decode(&bytes),
            Err(DecodeError::UnknownVersion {
                field: "header",
                value: 2
            })
        );
    }

    #[test]
    fn coinbase_script_sig_starts_with_minimal_height() {
        let script = coinbase_script_sig(300_000, b"x");
        let first = script.instructions_minimal().next().unwrap().unwrap();
        // 300,000 = 0x0493e0, a little-endian script number.
        assert_eq!(first.push_bytes().unwrap().as_bytes(), &[0xe0, 0x93, 0x04]);
    }

    proptest! {
        #[test]
        fn any_block_round_trips(seed in any::<u64>(), txs in 0usize..6) {
            let block = sample_block(seed, txs);
            prop_assert_eq!(Block::decode(&block.encode()).unwrap(), block);
        }

        #[test]
        fn block_decoder_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..1200)) {
            let _ = Block::decode(&bytes);
        }
    }
}
