//! Slashing: a bonded miner whose replay check failed loses its bond on chain.
//!
//! At evaluation the coordinator queues every bonded submission whose verdict is
//! `Verdict::Failed` (the fraud evidence is stored with it). After each driver step,
//! [`send_pending`] reads each queued bond through the node (`gettxout`, confirmed only),
//! builds the slash with [`consensus::bond::build_slash`] (the chain's `bond_slash_key` is the
//! coordinator's key by default), sends it with `sendrawtransaction`, and keeps
//! `{miner, bond, txid}` in the store, where the cycle record publishes it (`slashes`).
//!
//! **Finder share only for verifiers.** When the coordinator found the fraud itself, the slash
//! burns everything but the fee: a coordinator paid for the bonds it fails would gain by
//! failing honest miners. When a bonded verifier's signed claim exposed it (its claim is the
//! leaf the coordinator's replay gave, the miner's is not), the chain's
//! `slash_finder_share_percent` goes to that verifier's payout address and the rest is burned.
//! A verifier whose own claim the replay showed false is slashed the same way, all burned.
//!
//! Once per (cycle, miner): a slash that was sent is never built again. A refusal is retried
//! on the next tick, up to [`SLASH_SEND_TRIES_MAX`] times (a node that is down or busy); a
//! bond that is no longer a confirmed unspent output, or is not the miner's bond under the
//! chain's terms, is dropped with a warning. The queue lives in memory: after a restart only
//! the live cycle's failures are queued again (a sent slash is in the store and is skipped).

use crate::api::{BondOutpoint, ClaimOutcome, Finder, SlashRecord, SlashRole};
use crate::chain::{ChainError, ChainSource, RPC_VERIFY_ALREADY_IN_CHAIN};
use crate::cycle::CycleState;
use crate::service::{lock, Coordinator};
use bitcoin::secp256k1::PublicKey;
use bitcoin::{Address, Amount};
use consensus::bond::BondTerms;
use std::str::FromStr;
use std::sync::Arc;
use tracing::{info, warn};

/// Fee of a slash transaction: about 7 sat/vB for its ~140 vbytes, well over the node's
/// relay minimum; taken from the bond, so every bond pays the same.
pub const SLASH_FEE: Amount = Amount::from_sat(1_000);
/// Largest fee [`consensus::bond::slash_outputs`] accepts here.
pub const SLASH_FEE_MAX: Amount = Amount::from_sat(10_000);
/// Driver ticks a slash is retried over before it is given up (logged).
pub const SLASH_SEND_TRIES_MAX: u32 = 50;

/// A slash waiting to be sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingSlash {
    pub cycle: u64,
    /// The key whose bond is slashed (a miner's or a verifier's, see `role`).
    pub miner: PublicKey,
    pub bond: BondOutpoint,
    pub role: SlashRole,
    pub finder: Option<Finder>,
    pub tries: u32,
}

impl PendingSlash {
    pub fn new(
        cycle: u64,
        miner: PublicKey,
        bond: BondOutpoint,
        role: SlashRole,
        finder: Option<Finder>,
    ) -> Self {
        PendingSlash {
            cycle,
            miner,
            bond,
            role,
            finder,
            tries: 0,
        }
    }
}

/// The bond terms of a slash the coordinator makes itself: the chain's, with no finder share.
pub fn coordinator_slash_terms(terms: &BondTerms) -> BondTerms {
    BondTerms {
        finder_share_percent: 0,
        ..*terms
    }
}

/// Every slash `state` (evaluated) calls for: each bonded miner whose replay check failed
/// (with the finder share to the first verifier whose claim caught it, if one did), and each
/// verifier with a claim the coordinator's replay showed false.
pub fn slashes_due(state: &CycleState) -> Vec<PendingSlash> {
    let Some(lottery) = state.lottery.as_ref() else {
        return Vec::new();
    };
    let v = &state.verification;
    let finder_of = |miner: &PublicKey| {
        v.verdicts
            .iter()
            .find(|x| &x.miner == miner && x.outcome == ClaimOutcome::CaughtCheat)
            .and_then(|x| v.verifiers.get(&x.verifier))
            .map(|e| Finder {
                verifier: e.verifier,
                payout_address: e.payout_address.clone(),
            })
    };
    let miners = lottery
        .scored
        .iter()
        .filter(|s| matches!(s.verification, proof::Verdict::Failed { .. }))
        .filter_map(|s| {
            let bond = state.registrations.get(&s.miner)?.bond?;
            Some(PendingSlash::new(
                state.cycle(),
                s.miner,
                bond,
                SlashRole::Miner,
                finder_of(&s.miner),
            ))
        });
    let wrong: std::collections::BTreeSet<PublicKey> = v
        .verdicts
        .iter()
        .filter(|x| x.outcome == ClaimOutcome::Wrong)
        .map(|x| x.verifier)
        .collect();
    let verifiers = wrong.into_iter().filter_map(|verifier| {
        let bond = v.bond_of(&verifier)?;
        Some(PendingSlash::new(
            state.cycle(),
            verifier,
            bond,
            SlashRole::Verifier,
            None,
        ))
    });
    miners.chain(verifiers).collect()
}

impl Coordinator {
    /// Queues `slash` (over fraud found in its cycle), unless it was already sent.
    pub(crate) fn queue_slash(&self, slash: PendingSlash) {
        let sent = self
            .store
            .slashes(slash.cycle)
            .map(|s| s.iter().any(|r| r.miner == slash.miner))
            .unwrap_or(false);
        if sent {
            return;
        }
        lock(&self.slash_queue)
            .entry((slash.cycle, slash.miner))
            .or_insert(slash);
    }

    /// Whether `bond` was slashed, or is about to be (queued): it backs nothing any more.
    pub fn bond_slashed(&self, bond: &BondOutpoint) -> bool {
        lock(&self.slashed_bonds).contains(bond)
            || lock(&self.slash_queue).values().any(|p| &p.bond == bond)
    }

    /// Slashes not sent yet.
    pub fn pending_slashes(&self) -> Vec<PendingSlash> {
        lock(&self.slash_queue).values().cloned().collect()
    }

    fn slash_done(&self, pending: &PendingSlash) {
        lock(&self.slash_queue).remove(&(pending.cycle, pending.miner));
    }

    fn slash_failed(&self, pending: &PendingSlash, why: &str) {
        let mut queue = lock(&self.slash_queue);
        if let Some(p) = queue.get_mut(&(pending.cycle, pending.miner)) {
            p.tries += 1;
            if p.tries >= SLASH_SEND_TRIES_MAX {
                warn!(miner = %p.miner, bond = %p.bond, cycle = p.cycle, why, "slash given up");
                queue.remove(&(pending.cycle, pending.miner));
            }
        }
    }
}

/// Builds, sends and records every pending slash (see the module documentation). Errors are
/// logged; a slash that could not be sent stays queued for the next call.
pub async fn send_pending<C: ChainSource>(coordinator: &Arc<Coordinator>, chain: &C) {
    for pending in coordinator.pending_slashes() {
        if let Err(why) = send_one(coordinator, chain, &pending).await {
            warn!(miner = %pending.miner, bond = %pending.bond, cycle = pending.cycle, %why, "slash not sent; retrying");
            coordinator.slash_failed(&pending, &why);
        }
    }
}

async fn send_one<C: ChainSource>(
    coordinator: &Arc<Coordinator>,
    chain: &C,
    pending: &PendingSlash,
) -> Result<(), String> {
    let env = coordinator.env();
    // The finder's output script, if a verifier is paid; an address that does not parse
    // (checked at enrolment) would burn its share instead.
    let finder_script = pending.finder.as_ref().and_then(|f| {
        Address::from_str(&f.payout_address)
            .ok()
            .and_then(|a| a.require_network(env.network).ok())
            .map(|a| a.script_pubkey())
    });
    let terms = match finder_script {
        Some(_) => env.bonds.terms,
        None => coordinator_slash_terms(&env.bonds.terms),
    };
    let found = chain
        .unspent_output(pending.bond.0)
        .await
        .map_err(|e| e.to_string())?;
    let Some(found) = found else {
        warn!(miner = %pending.miner, bond = %pending.bond, cycle = pending.cycle, "bond is not a confirmed unspent output any more; nothing to slash");
        coordinator.slash_done(pending);
        return Ok(());
    };
    if found.coin.output.script_pubkey
        != consensus::bond::bond_script_pubkey(&terms, &pending.miner)
    {
        warn!(miner = %pending.miner, bond = %pending.bond, "output is not the miner's bond under the chain's terms; not slashed");
        coordinator.slash_done(pending);
        return Ok(());
    }
    let tx = match consensus::bond::build_slash(
        &env.secp,
        &terms,
        pending.bond.0,
        found.coin.output.value,
        &pending.miner,
        &env.key,
        finder_script.unwrap_or_default(),
        SLASH_FEE,
        SLASH_FEE_MAX,
    ) {
        Ok(tx) => tx,
        Err(e) => {
            // Not the slashing key, or a bond too small for the fee: no retry can help.
            warn!(miner = %pending.miner, bond = %pending.bond, error = %e, "cannot build the slash");
            coordinator.slash_done(pending);
            return Ok(());
        }
    };
    let txid = match chain.send_raw_transaction(&tx).await {
        Ok(txid) => txid,
        Err(ChainError::Rpc { code, .. }) if code == RPC_VERIFY_ALREADY_IN_CHAIN => {
            tx.compute_txid()
        }
        Err(e) => return Err(e.to_string()),
    };
    let record = SlashRecord {
        miner: pending.miner,
        bond: pending.bond,
        txid,
        role: pending.role,
        finder: pending.finder.clone(),
    };
    coordinator
        .store
        .put_slash(pending.cycle, &record)
        .map_err(|e| e.to_string())?;
    coordinator.slash_done(pending);
    lock(&coordinator.slashed_bonds).insert(pending.bond);
    info!(key = %pending.miner, role = ?pending.role, bond = %pending.bond, cycle = pending.cycle, %txid, finder = ?pending.finder.as_ref().map(|f| f.verifier.to_string()), "bond slashed");
    Ok(())
}
