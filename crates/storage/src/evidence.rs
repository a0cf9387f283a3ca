//! Equivocation evidence: two block-signing certificates for the same (cycle, height, attempt)
//! with different contents. An honest coordinator issues one per slot, so the pair proves
//! misbehaviour to anyone holding the coordinator's public key. (The cycle is in the slot because
//! an honest coordinator reissues attempt 0 at the same height in the next cycle when every
//! winner of a cycle stayed silent; see `consensus::equivocation`.)

use primitives::certificate::CERTIFICATE_BYTES;
use primitives::{Certificate, CertificateKind, DecodeError};
use thiserror::Error;

/// The (cycle, height, attempt) for which an honest coordinator signs one block-signing
/// certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Slot {
    pub cycle: u64,
    pub height: u32,
    pub attempt: u32,
}

impl Slot {
    pub fn of(cert: &Certificate) -> Slot {
        Slot {
            cycle: cert.body.cycle,
            height: cert.body.height,
            attempt: cert.body.attempt,
        }
    }

    /// The table key: (cycle, height, attempt).
    pub(crate) fn key(&self) -> (u64, u32, u32) {
        (self.cycle, self.height, self.attempt)
    }
}

impl std::fmt::Display for Slot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "(cycle {}, height {}, attempt {})",
            self.cycle, self.height, self.attempt
        )
    }
}

/// Bytes of encoded evidence: two certificates back to back.
pub const EVIDENCE_BYTES: usize = 2 * CERTIFICATE_BYTES;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum EvidenceError {
    #[error("certificates are for different slots: {0} and {1}")]
    DifferentSlots(Slot, Slot),
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
        let (slot_a, slot_b) = (Slot::of(&a), Slot::of(&b));
        if slot_a != slot_b {
            return Err(EvidenceError::DifferentSlots(slot_a, slot_b));
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

    /// The slot both certificates claim.
    pub fn slot(&self) -> Slot {
        Slot::of(&self.first)
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
