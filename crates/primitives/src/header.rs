//! The block header: Bitcoin's header with the training certificate where the nonce was.

use crate::certificate::{Certificate, CERTIFICATE_BYTES};
use crate::encoding::{DecodeError, Reader, Writer};
use bitcoin::hashes::{sha256d, Hash};
use bitcoin::{BlockHash, TxMerkleNode};

/// Header version this software produces and accepts.
pub const HEADER_VERSION: u32 = 1;

/// Bytes of an encoded header: version, previous hash, Merkle root, time, certificate.
pub const HEADER_BYTES: usize = 4 + 32 + 32 + 4 + CERTIFICATE_BYTES;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BlockHeader {
    pub version: u32,
    pub prev_block_hash: BlockHash,
    /// Bitcoin Merkle root of the block's transaction ids.
    pub merkle_root: TxMerkleNode,
    /// Unix seconds, as in Bitcoin (u32 until 2106).
    pub time: u32,
    /// The block-signing certificate that is this block's proof of useful training.
    pub certificate: Certificate,
}

impl BlockHeader {
    pub fn encode_into(&self, w: &mut Writer) {
        w.u32(self.version)
            .bytes(self.prev_block_hash.as_byte_array())
            .bytes(self.merkle_root.as_byte_array())
            .u32(self.time);
        self.certificate.encode_into(w);
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(HEADER_BYTES);
        self.encode_into(&mut w);
        w.finish()
    }

    pub(crate) fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let version = r.u32("header version")?;
        if version != HEADER_VERSION {
            return Err(DecodeError::UnknownVersion {
                field: "header",
                value: version,
            });
        }
        Ok(BlockHeader {
            version,
            prev_block_hash: BlockHash::from_byte_array(r.array("previous block hash")?),
            merkle_root: TxMerkleNode::from_byte_array(r.array("merkle root")?),
            time: r.u32("time")?,
            certificate: Certificate::decode_from(r)?,
        })
    }

    /// Decodes exactly one header of [`HEADER_BYTES`] bytes.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        if bytes.len() > HEADER_BYTES {
            return Err(DecodeError::Oversize {
                len: bytes.len(),
                max: HEADER_BYTES,
            });
        }
        let mut r = Reader::new(bytes);
        let header = Self::decode_from(&mut r)?;
        r.finish()?;
        Ok(header)
    }

    /// Double SHA-256 of the canonical encoding, as Bitcoin hashes its headers.
    pub fn block_hash(&self) -> BlockHash {
        BlockHash::from_raw_hash(sha256d::Hash::hash(&self.encode()))
    }

    /// Height this header claims, taken from its certificate.
    pub fn height(&self) -> u32 {
        self.certificate.body.height
    }
}
