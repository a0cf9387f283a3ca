//! The training certificate: the coordinator's signed statement of a miner's measured work.
//!
//! A *block-signing* certificate is the proof of work of a block: it names the one miner allowed
//! to produce the block at `height` on top of `prev_block_hash`. A *contribution* certificate
//! records a scored submission and can never sign a block.

use crate::encoding::{DecodeError, Reader, Writer};
use crate::hash::{tagged_hash, Hash256};
use bitcoin::hashes::Hash;
use bitcoin::secp256k1::{ecdsa, Message, PublicKey, Secp256k1, SecretKey, Signing};
use bitcoin::BlockHash;
use serde::{Deserialize, Serialize};

/// Version byte of the certificate encoding; a decoder refuses any other.
pub const CERTIFICATE_VERSION: u8 = 2;

/// Bytes of an encoded certificate without its signature.
pub const UNSIGNED_CERTIFICATE_BYTES: usize =
    1 + 1 + 4 + 8 + 4 + 32 + 4 + 33 + 8 + 8 + 8 + 32 + 32 + 32 + 32 + 32 + 8 + 8 + 16 + 33;

/// Bytes of an encoded, signed certificate. Every certificate has exactly this size.
pub const CERTIFICATE_BYTES: usize = UNSIGNED_CERTIFICATE_BYTES + 64;

/// Tag of the hash the coordinator signs (see [`crate::hash::tagged_hash`]).
pub const CERTIFICATE_SIGNING_TAG: &str = "trainchain/certificate";

/// Loss values in certificates are fixed-point: one unit is 10^-6 of a nat of cross-entropy.
pub const LOSS_UNITS_PER_NAT: i64 = 1_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CertificateKind {
    /// Records a scored submission; never valid in a block header.
    Contribution = 0,
    /// Grants its miner the right to produce one block at one height on one parent.
    BlockSigning = 1,
}

impl CertificateKind {
    fn from_byte(value: u8) -> Result<Self, DecodeError> {
        match value {
            0 => Ok(CertificateKind::Contribution),
            1 => Ok(CertificateKind::BlockSigning),
            _ => Err(DecodeError::InvalidEnum {
                field: "certificate kind",
                value,
            }),
        }
    }
}

/// Every certificate field except the coordinator's signature.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UnsignedCertificate {
    pub kind: CertificateKind,
    /// Network the certificate is for; certificates never cross chains.
    pub chain_id: u32,
    pub cycle: u64,
    /// Height of the block this certificate may sign (block-signing), or the height the cycle
    /// built on plus one (contribution).
    pub height: u32,
    pub prev_block_hash: BlockHash,
    /// 0 for the lottery's first draw; k for the k-th fallback when earlier winners stayed silent.
    pub attempt: u32,
    pub miner: PublicKey,
    /// Parameters of the miner's segment whose value changed, as measured by the coordinator.
    pub params_trained: u64,
    /// Held-out loss of the global model minus the loss with the miner's segment applied, in
    /// [`LOSS_UNITS_PER_NAT`] units. Negative when the update made the model worse.
    pub loss_reduction: i64,
    /// Lottery weight: `params_trained * max(0, loss_reduction)`, saturating.
    pub score: u64,
    /// Merkle root over the cycle's scored contributions.
    pub contributions_root: Hash256,
    pub lottery_seed: Hash256,
    /// Hash of the global model the submission was scored against.
    pub model_hash: Hash256,
    /// Hash of the model the cycle's aggregation produced: what the next cycle trains if this
    /// certificate's block is the tip it builds on (consensus checks the child's `model_hash`).
    pub next_model_hash: Hash256,
    /// The cycle record's digest at evaluation (`coordinator::api::record_digest`): the chain
    /// anchors every record it has a block for, so a record cannot be rewritten later.
    pub record_hash: Hash256,
    /// Unix seconds at which the coordinator issued the certificate.
    pub issued_at: u64,
    /// Block-signing: the last header time a block with this certificate may have (the end of
    /// its attempt's block window, rounded down to a second). The header time must lie in
    /// `[issued_at, expires_at]`. Contribution certificates carry 0.
    pub expires_at: u64,
    /// Random bytes that make every certificate unique, even two with equal fields.
    pub nonce: [u8; 16],
    /// The coordinator key that signs; consensus accepts only keys in the chain parameters.
    pub coordinator: PublicKey,
}

/// A certificate with the coordinator's ECDSA signature over [`UnsignedCertificate::signing_hash`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Certificate {
    pub body: UnsignedCertificate,
    pub signature: ecdsa::Signature,
}

impl UnsignedCertificate {
    pub fn encode_into(&self, w: &mut Writer) {
        w.u8(CERTIFICATE_VERSION)
            .u8(self.kind as u8)
            .u32(self.chain_id)
            .u64(self.cycle)
            .u32(self.height)
            .bytes(self.prev_block_hash.as_byte_array())
            .u32(self.attempt)
            .public_key(&self.miner)
            .u64(self.params_trained)
            .i64(self.loss_reduction)
            .u64(self.score)
            .bytes(&self.contributions_root.0)
            .bytes(&self.lottery_seed.0)
            .bytes(&self.model_hash.0)
            .bytes(&self.next_model_hash.0)
            .bytes(&self.record_hash.0)
            .u64(self.issued_at)
            .u64(self.expires_at)
            .bytes(&self.nonce)
            .public_key(&self.coordinator);
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(UNSIGNED_CERTIFICATE_BYTES);
        self.encode_into(&mut w);
        w.finish()
    }

    fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let version = r.u8("certificate version")?;
        if version != CERTIFICATE_VERSION {
            return Err(DecodeError::UnknownVersion {
                field: "certificate",
                value: version.into(),
            });
        }
        Ok(UnsignedCertificate {
            kind: CertificateKind::from_byte(r.u8("certificate kind")?)?,
            chain_id: r.u32("chain id")?,
            cycle: r.u64("cycle")?,
            height: r.u32("height")?,
            prev_block_hash: BlockHash::from_byte_array(r.array("previous block hash")?),
            attempt: r.u32("attempt")?,
            miner: r.public_key("miner public key")?,
            params_trained: r.u64("parameters trained")?,
            loss_reduction: r.i64("loss reduction")?,
            score: r.u64("score")?,
            contributions_root: Hash256(r.array("contributions root")?),
            lottery_seed: Hash256(r.array("lottery seed")?),
            model_hash: Hash256(r.array("model hash")?),
            next_model_hash: Hash256(r.array("next model hash")?),
            record_hash: Hash256(r.array("record hash")?),
            issued_at: r.u64("issue time")?,
            expires_at: r.u64("expiry time")?,
            nonce: r.array("nonce")?,
            coordinator: r.public_key("coordinator public key")?,
        })
    }

    /// The 32-byte digest the coordinator signs.
    pub fn signing_hash(&self) -> Hash256 {
        tagged_hash(CERTIFICATE_SIGNING_TAG, &[&self.encode()])
    }

    /// Signs with the coordinator's key. The caller must pass the secret key of `self.coordinator`;
    /// a mismatch produces a certificate that consensus rejects.
    pub fn sign<C: Signing>(self, secp: &Secp256k1<C>, coordinator_key: &SecretKey) -> Certificate {
        let msg = Message::from_digest(self.signing_hash().0);
        // RFC 6979 nonces and low-S output: the signature is deterministic and canonical.
        let signature = secp.sign_ecdsa(&msg, coordinator_key);
        Certificate {
            body: self,
            signature,
        }
    }
}

impl Certificate {
    pub fn encode_into(&self, w: &mut Writer) {
        self.body.encode_into(w);
        w.signature(&self.signature);
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(CERTIFICATE_BYTES);
        self.encode_into(&mut w);
        w.finish()
    }

    pub(crate) fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let body = UnsignedCertificate::decode_from(r)?;
        let signature = r.signature("coordinator signature")?;
        Ok(Certificate { body, signature })
    }

    /// Decodes exactly one certificate: no more, no fewer than [`CERTIFICATE_BYTES`] bytes.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        if bytes.len() > CERTIFICATE_BYTES {
            return Err(DecodeError::Oversize {
                len: bytes.len(),
                max: CERTIFICATE_BYTES,
            });
        }
        let mut r = Reader::new(bytes);
        let cert = Self::decode_from(&mut r)?;
        r.finish()?;
        Ok(cert)
    }

    /// Identity of a certificate (used to detect replays): SHA-256d of its full encoding.
    pub fn id(&self) -> Hash256 {
        crate::hash::sha256d(&self.encode())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use bitcoin::secp256k1::rand::{rngs::StdRng, RngCore, SeedableRng};
    use proptest::prelude::*;

    pub fn sample_unsigned(seed: u64, coordinator: &SecretKey) -> UnsignedCertificate {
        let secp = Secp256k1::new();
        let mut rng = StdRng::seed_from_u64(seed);
        let miner = SecretKey::new(&mut rng);
        let mut nonce = [0u8; 16];
        rng.fill_bytes(&mut nonce);
        UnsignedCertificate {
            kind: CertificateKind::BlockSigning,
            chain_id: 7,
            cycle: rng.next_u64(),
            height: rng.next_u32(),
            prev_block_hash: BlockHash::from_byte_array([3; 32]),
            attempt: rng.next_u32(),
            miner: miner.public_key(&secp),
            params_trained: rng.next_u64(),
            loss_reduction: rng.next_u64() as i64,
            score: rng.next_u64(),
            contributions_root: Hash256([4; 32]),
            lottery_seed: Hash256([5; 32]),
            model_hash: Hash256([6; 32]),
            next_model_hash: Hash256([7; 32]),
            record_hash: Hash256([8; 32]),
            issued_at: rng.next_u64(),
            expires_at: rng.next_u64(),
            nonce,
            coordinator: coordinator.public_key(&secp),
        }
    }

    fn sample(seed: u64) -> Certificate {
        let key = SecretKey::from_slice(&[9; 32]).unwrap();
        sample_unsigned(seed, &key).sign(&Secp256k1::new(), &key)
    }

    #[test]
    fn encoding_has_fixed_size_and_round_trips() {
        let cert = sample(1);
        let bytes = cert.encode();
        assert_eq!(bytes.len(), CERTIFICATE_BYTES);
        assert_eq!(Certificate::decode(&bytes).unwrap(), cert);
    }

    #[test]
    fn decoder_rejects_malformed_inputs() {
        let bytes = sample(2).encode();
        let cases: Vec<(Vec<u8>, DecodeError)> = vec![
            (
                bytes[..70].to_vec(),
                DecodeError::Truncated {
                    field: "miner public key",
                    needed: 17,
                },
            ),
            (
                [bytes.as_slice(), &[0]].concat(),
                DecodeError::Oversize {
                    len: CERTIFICATE_BYTES + 1,
                    max: CERTIFICATE_BYTES,
                },
            ),
            (
                with_byte(&bytes, 0, 1),
                DecodeError::UnknownVersion {
                    field: "certificate",
                    value: 1,
                },
            ),
            (
                with_byte(&bytes, 1, 7),
                DecodeError::InvalidEnum {
                    field: "certificate kind",
                    value: 7,
                },
            ),
            (
                with_byte(&bytes, 1 + 1 + 4 + 8 + 4 + 32 + 4, 0x05),
                DecodeError::InvalidPublicKey {
                    field: "miner public key",
                },
            ),
        ];
        for (input, expected) in cases {
            assert_eq!(Certificate::decode(&input), Err(expected));
        }
    }

    #[test]
    fn decoder_rejects_high_s_signature() {
        let cert = sample(3);
        let mut bytes = cert.encode();
        // Replace s by n - s: the same signature, mathematically, in its non-canonical form.
        let s_offset = UNSIGNED_CERTIFICATE_BYTES + 32;
        let high_s = negate_scalar(bytes[s_offset..].try_into().unwrap());
        bytes[s_offset..].copy_from_slice(&high_s);
        assert_eq!(
            Certificate::decode(&bytes),
            Err(DecodeError::HighS {
                field: "coordinator signature"
            })
        );
    }

    #[test]
    fn decoder_rejects_empty_input() {
        assert!(matches!(
            Certificate::decode(&[]),
            Err(DecodeError::Truncated { .. })
        ));
    }

    fn with_byte(bytes: &[u8], index: usize, value: u8) -> Vec<u8> {
        let mut out = bytes.to_vec();
        out[index] = value;
        out
    }

    /// n - s for the secp256k1 group order n, big-endian.
    fn negate_scalar(s: [u8; 32]) -> [u8; 32] {
        const N: [u8; 32] = [
            0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
            0xff, 0xfe, 0xba, 0xae, 0xdc, 0xe6, 0xaf, 0x48, 0xa0, 0x3b, 0xbf, 0xd2, 0x5e, 0x8c,
            0xd0, 0x36, 0x41, 0x41,
        ];
        let mut out = [0u8; 32];
        let mut borrow = 0i16;
        for i in (0..32).rev() {
            let mut d = N[i] as i16 - s[i] as i16 - borrow;
            borrow = if d < 0 { 1 } else { 0 };
            if d < 0 {
                d += 256;
            }
            out[i] = d as u8;
        }
        out
    }

    proptest! {
        #[test]
        fn any_certificate_round_trips(seed in any::<u64>()) {
            let cert = sample(seed);
            prop_assert_eq!(Certificate::decode(&cert.encode()).unwrap(), cert);
        }

        #[test]
        fn decoder_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = Certificate::decode(&bytes);
        }

        #[test]
        fn flipping_any_byte_changes_the_decoded_value_or_fails(seed in any::<u64>(), index in 0..CERTIFICATE_BYTES, bit in 0u8..8) {
            let cert = sample(seed);
            let mut bytes = cert.encode();
            bytes[index] ^= 1 << bit;
            if let Ok(decoded) = Certificate::decode(&bytes) {
                prop_assert_ne!(decoded, cert);
            }
        }
    }
}
