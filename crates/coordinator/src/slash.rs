//! Slashing: a bonded miner whose replay check failed loses its bond on chain.
//!
//! At evaluation the coordinator queues every bonded submission whose verdict is
//! `Verdict::Failed` (the fraud evidence is stored with it). After each driver step,
//! [`send_pending`] reads each queued bond through the node (`gettxout`, confirmed only),
//! builds the slash with [`consensus::bond::build_slash`] (the chain's `bond_slash_key` is the
//! coordinator's key by default), sends it with `sendrawtransaction`, and keeps
//! `{miner, bond, txid}` in the store, where the cycle record publishes it (`slashes`).
//!
//! **No finder share.** The slash built here burns everything but the fee: the coordinator
//! found the fraud itself, and a coordinator paid for the bonds it fails would gain by failing
//! honest miners. `slash_finder_share_percent` is for outside verifiers who bring evidence
//! (later); here it is forced to 0, so the only output is the burn (`consensus::tx::burn_script`).
//!
//! Once per (cycle, miner): a slash that was sent is never built again. A refusal is retried
//! on the next tick, up to [`SLASH_SEND_TRIES_MAX`] times (a node that is down or busy); a
//! bond that is no longer a confirmed unspent output, or is not the miner's bond under the
//! chain's terms, is dropped with a warning. The queue lives in memory: after a restart only
//! the live cycle's failures are queued again (a sent slash is in the store and is skipped).

use crate::api::{BondOutpoint, SlashRecord};
use crate::chain::{ChainError, ChainSource, RPC_VERIFY_ALREADY_IN_CHAIN};
use crate::cycle::CycleState;
use crate::service::{lock, Coordinator};
use bitcoin::secp256k1::PublicKey;
use bitcoin::{Amount, ScriptBuf};
use consensus::bond::BondTerms;
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
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PendingSlash {
    pub cycle: u64,
    pub miner: PublicKey,
    pub bond: BondOutpoint,
    pub tries: u32,
}

/// The bond terms of a slash the coordinator makes itself: the chain's, with no finder share.
pub fn coordinator_slash_terms(terms: &BondTerms) -> BondTerms {
    BondTerms {
        finder_share_percent: 0,
        ..*terms
    }
}

/// The bonded miners of `state` (evaluated) whose replay check failed, with their bonds.
pub fn failed_bonds(state: &CycleState) -> Vec<(PublicKey, BondOutpoint)> {
    let Some(lottery) = state.lottery.as_ref() else {
        return Vec::new();
    };
    lottery
        .scored
        .iter()
        .filter(|s| matches!(s.verification, proof::Verdict::Failed { .. }))
        .filter_map(|s| {
            let bond = state.registrations.get(&s.miner)?.bond?;
            Some((s.miner, bond))
        })
        .collect()
}

impl Coordinator {
    /// Queues the slash of `miner`'s `bond` over fraud found in `cycle`, unless already sent.
    pub(crate) fn queue_slash(&self, cycle: u64, miner: PublicKey, bond: BondOutpoint) {
        let sent = self
            .store
            .slashes(cycle)
            .map(|s| s.iter().any(|r| r.miner == miner))
            .unwrap_or(false);
        if sent {
            return;
        }
        lock(&self.slash_queue)
            .entry((cycle, miner))
            .or_insert(PendingSlash {
                cycle,
                miner,
                bond,
                tries: 0,
            });
    }

    /// Slashes not sent yet.
    pub fn pending_slashes(&self) -> Vec<PendingSlash> {
        lock(&self.slash_queue).values().copied().collect()
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
    let terms = coordinator_slash_terms(&env.bonds.terms);
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
        ScriptBuf::new(),
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
    };
    coordinator
        .store
        .put_slash(pending.cycle, &record)
        .map_err(|e| e.to_string())?;
    coordinator.slash_done(pending);
    info!(miner = %pending.miner, bond = %pending.bond, cycle = pending.cycle, %txid, burned_sat = (found.coin.output.value - SLASH_FEE).to_sat(), "bond slashed");
    Ok(())
}
