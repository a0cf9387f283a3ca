//! The verification protocol's draws from the verification secret S: which verifier gets an
//! interval, whether it is a flag, whether it is audited, and a flag's shown leaf; and the
//! cycle secret derived from S. Pure functions, so the coordinator draws with them and the
//! audit redraws every published assignment.

use bitcoin::secp256k1::PublicKey;
use primitives::{tagged_hash, Hash256};

/// Percent of assignments that are flags. With f = 25% a verifier that never replays is caught
/// in a cycle where it holds n flaggable assignments with probability 1 - 0.75^n (82% for n =
/// 6), and loses its whole bond when it is; see `docs/protocol.md` for the inequality.
pub const FLAG_PERCENT: u64 = 25;

/// Tag of the per-interval draws (verifier, flag, audit) from the verification secret.
pub const DRAW_TAG: &str = "trainchain/coordinator/verifier-draw";
/// Tag of a flag's shown leaf.
pub const FLAG_LEAF_TAG: &str = "trainchain/coordinator/verifier-flag";
/// Tag deriving the cycle's committed secret from the verification secret.
pub const CYCLE_SECRET_TAG: &str = "trainchain/coordinator/cycle-secret";

/// Which draw of [`draw`].
#[derive(Clone, Copy)]
pub enum DrawKind {
    Verifier = 0,
    Flag = 1,
    Audit = 2,
}

/// `u64 LE of H_verifier-draw(secret 32 || miner 33 || interval u64 LE || kind u8)[0..8]`.
pub fn draw(secret: &Hash256, miner: &PublicKey, interval: u64, kind: DrawKind) -> u64 {
    let h = tagged_hash(
        DRAW_TAG,
        &[
            &secret.0,
            &miner.serialize(),
            &interval.to_le_bytes(),
            &[kind as u8],
        ],
    );
    u64::from_le_bytes(h.0[..8].try_into().expect("8 bytes"))
}

/// The leaf a flag shows: `H_verifier-flag(secret 32 || miner 33 || interval u64 LE)`, a
/// hash like any leaf, unknowable without the secret.
pub fn flag_leaf(secret: &Hash256, miner: &PublicKey, interval: u64) -> Hash256 {
    tagged_hash(
        FLAG_LEAF_TAG,
        &[&secret.0, &miner.serialize(), &interval.to_le_bytes()],
    )
}

/// The cycle secret (committed in the announcement, revealed at the submission deadline) of a
/// cycle whose verification secret is `s`: `H_cycle-secret(s)`. So the announcement commits
/// to S as well, before any registration, and the coordinator cannot pick S later to steer
/// assignments, flags or audits; S itself stays unknown until evaluation (a hash preimage),
/// when the record publishes it and anyone checks `H(S)` against the revealed secret.
pub fn cycle_secret(verification_secret: &Hash256) -> Hash256 {
    tagged_hash(CYCLE_SECRET_TAG, &[&verification_secret.0])
}

/// The draws of `miner`'s `interval` under `secret` that anyone can redo from the record:
/// the index of its verifier among `verifiers` (ascending keys), and whether the flag draw came
/// up (it is a flag if the interval is also flaggable).
pub fn redraw(
    secret: &Hash256,
    miner: &PublicKey,
    interval: u64,
    verifiers: usize,
) -> (usize, bool) {
    let pick = draw(secret, miner, interval, DrawKind::Verifier) % verifiers.max(1) as u64;
    let flag = draw(secret, miner, interval, DrawKind::Flag) % 100 < FLAG_PERCENT;
    (pick as usize, flag)
}
