//! Coordinator equivocation: two validly signed block-signing certificates for the same cycle,
//! height and attempt that differ. An honest coordinator issues exactly one per (cycle, height,
//! attempt), so such a pair is evidence of misbehaviour that anyone can check with the chain
//! parameters.
//!
//! The cycle is part of the slot because an honest coordinator does sign two certificates for
//! one (height, attempt): when every drawn winner of a cycle stays silent, the next cycle builds
//! on the same tip and draws again from attempt 0. Those two certificates differ in their cycle
//! and are not evidence of anything.

use crate::certificate::verify_block_certificate;
use primitives::{Certificate, ChainParams};

/// A pair of conflicting certificates, kept as evidence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Equivocation {
    pub cycle: u64,
    pub height: u32,
    pub attempt: u32,
    pub first: Certificate,
    pub second: Certificate,
}

/// The (cycle, height, attempt) for which an honest coordinator signs one block-signing
/// certificate.
pub fn certificate_slot(cert: &Certificate) -> (u64, u32, u32) {
    (cert.body.cycle, cert.body.height, cert.body.attempt)
}

/// Returns the evidence if `a` and `b` are both valid block-signing certificates of this chain
/// for the same (cycle, height, attempt) with different contents.
pub fn is_equivocation(
    a: &Certificate,
    b: &Certificate,
    params: &ChainParams,
) -> Option<Equivocation> {
    let same_slot = certificate_slot(a) == certificate_slot(b);
    if !same_slot || a.body == b.body {
        return None;
    }
    if verify_block_certificate(a, params).is_err() || verify_block_certificate(b, params).is_err()
    {
        return None;
    }
    Some(Equivocation {
        cycle: a.body.cycle,
        height: a.body.height,
        attempt: a.body.attempt,
        first: a.clone(),
        second: b.clone(),
    })
}
