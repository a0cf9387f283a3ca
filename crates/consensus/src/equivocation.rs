//! Coordinator equivocation: two validly signed block-signing certificates for the same height
//! and attempt that differ. An honest coordinator issues exactly one per (height, attempt), so
//! such a pair is evidence of misbehaviour that anyone can check with the chain parameters.

use crate::certificate::verify_block_certificate;
use primitives::{Certificate, ChainParams};

/// A pair of conflicting certificates, kept as evidence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Equivocation {
    pub height: u32,
    pub attempt: u32,
    pub first: Certificate,
    pub second: Certificate,
}

/// Returns the evidence if `a` and `b` are both valid block-signing certificates of this chain
/// for the same (height, attempt) with different contents.
pub fn is_equivocation(
    a: &Certificate,
    b: &Certificate,
    params: &ChainParams,
) -> Option<Equivocation> {
    let same_slot = a.body.height == b.body.height && a.body.attempt == b.body.attempt;
    if !same_slot || a.body == b.body {
        return None;
    }
    if verify_block_certificate(a, params).is_err() || verify_block_certificate(b, params).is_err()
    {
        return None;
    }
    Some(Equivocation {
        height: a.body.height,
        attempt: a.body.attempt,
        first: a.clone(),
        second: b.clone(),
    })
}
