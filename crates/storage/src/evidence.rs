//! Equivocation evidence: two block-signing certificates for the same (height, attempt) with
//! different contents. An honest coordinator issues one per slot, so the pair proves misbehaviour
//! to anyone holding the coordinator's public key.

use primitives::certificate::CERTIFICATE_BYTES;
use primitives::{Certificate, CertificateKind, DecodeError};
use thiserror::Error;

/// Bytes of encoded evidence: two certificates back to back.
pub const EVIDENCE_BYTES: usize = 2 * CERTIFICATE_BYTES;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum EvidenceError {
    #[error("certificates are for different slots: (height {0}, attempt {1}) and (height {2}, attempt {3})")]
    DifferentSlots(u32, u32, u32, u32),
    #[error("the two certificates are identical")]
    Identical,
    #[error("a {0:?} certificate cannot sign a block, so it cannot equivocate")]
    NotBlockSigning(CertificateKind),
    #[error("the certificates are not in canonical order (lower encoding first)")]
    NotCanonicalOrder,
    #[error("evidence of {len} bytes; it must be exactly {EVIDENCE_BYTES}")]
    WrongLength { len: usize },
    #[error("certificate in evidence: {0}")]
    Certificate(#[from] DecodeError),
}

/// Two conflicting block-signing certificates, the one with the lower encoding first so that
/// the same pair always makes the same evidence. The type checks the slot and kinds; whether
/// the signatures are the coordinator's is a consensus check the caller makes before storing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EquivocationEvidence {
    first: Certificate,
    second: Certificate,
}

impl EquivocationEvidence {
    pub fn new(a: Certificate, b: Certificate) -> Result<Self, EvidenceError> {
        for cert in [&a, &b] {
            if cert.body.kind != CertificateKind::BlockSigning {
                return Err(EvidenceError::NotBlockSigning(cert.body.kind));
            }
        }
        let (slot_a, slot_b) = (slot(&a), slot(&b));
        if slot_a != slot_b {
            return Err(EvidenceError::DifferentSlots(
                slot_a.0, slot_a.1, slot_b.0, slot_b.1,
            ));
        }
        let (enc_a, enc_b) = (a.encode(), b.encode());
        match enc_a.cmp(&enc_b) {
            std::cmp::Ordering::Equal => Err(EvidenceError::Identical),
            std::cmp::Ordering::Less => Ok(EquivocationEvidence {
                first: a,
                second: b,
            }),
            std::cmp::Ordering::Greater => Ok(EquivocationEvidence {
                first: b,
                second: a,
            }),
        }
    }

    /// (height, attempt) both certificates claim.
    pub fn slot(&self) -> (u32, u32) {
        slot(&self.first)
    }

    pub fn certificates(&self) -> (&Certificate, &Certificate) {
        (&self.first, &self.second)
    }

    /// `first certificate || second certificate`, each in its canonical encoding.
    pub fn encode(&self) -> Vec<u8> {
        [self.first.encode(), self.second.encode()].concat()
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, EvidenceError> {
        if bytes.len() != EVIDENCE_BYTES {
            return Err(EvidenceError::WrongLength { len: bytes.len() });
        }
        let first = Certificate::decode(&bytes[..CERTIFICATE_BYTES])?;
        let second = Certificate::decode(&bytes[CERTIFICATE_BYTES..])?;
        let evidence = EquivocationEvidence::new(first.clone(), second)?;
        if evidence.first != first {
            return Err(EvidenceError::NotCanonicalOrder);
        }
        Ok(evidence)
    }
}

fn slot(cert: &Certificate) -> (u32, u32) {
    (cert.body.height, cert.body.attempt)
}
