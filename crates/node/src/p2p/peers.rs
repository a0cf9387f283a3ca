//! Per-peer bookkeeping: connection facts for `getpeerinfo`, misbehaviour scores and bans.
//!
//! As in Bitcoin Core, each offence adds points; at [`BAN_SCORE`] the peer is disconnected and
//! refused for [`BAN_SECS`]. Every offence is logged with the peer and what it sent.

use crate::service::{BanSnapshot, PeerSnapshot};
use libp2p::{Multiaddr, PeerId};
use std::collections::HashMap;
use tracing::warn;

/// Points at which a peer is banned (Bitcoin Core's historical `-banscore` default).
pub const BAN_SCORE: u32 = 100;

/// How long a ban lasts: 24 hours, Bitcoin Core's `-bantime` default.
pub const BAN_SECS: u64 = 24 * 60 * 60;

/// Bans kept at once. Identities cost nothing to mint, so a hostile host can earn a ban per
/// connection; 10,000 is far beyond what honest misbehaviour produces in a day and keeps the map
/// and the ban file (a few MiB at most) small. At the cap the ban closest to expiry gives way.
pub const BANS_MAX: usize = 10_000;

/// Bytes of a ban's reason kept (cut at a character boundary): the offence and enough of the
/// detail to see what was sent, without letting a peer's bytes grow the ban list.
pub const BAN_REASON_BYTES_MAX: usize = 256;

/// What a peer did wrong. The score says how sure we are that only a faulty or hostile peer
/// would do it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offence {
    /// A block that breaks a consensus rule (certificate included): no honest node relays one.
    InvalidBlock,
    /// Bytes that do not decode as the message they claim to be.
    MalformedMessage,
    /// A frame over the protocol's size limit.
    OversizedMessage,
    /// Headers that do not link into a chain.
    DisconnectedHeaders,
    /// Blocks we did not ask for in a sync response.
    UnrequestedBlock,
}

impl Offence {
    pub fn score(self) -> u32 {
        match self {
            Offence::InvalidBlock
            | Offence::MalformedMessage
            | Offence::OversizedMessage
            | Offence::DisconnectedHeaders => BAN_SCORE,
            // Could be a race with a reorganisation on the peer's side; only repeats ban.
            Offence::UnrequestedBlock => 20,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Offence::InvalidBlock => "invalid block",
            Offence::MalformedMessage => "malformed message",
            Offence::OversizedMessage => "oversized message",
            Offence::DisconnectedHeaders => "headers not linking into a chain",
            Offence::UnrequestedBlock => "unrequested block",
        }
    }
}

#[derive(Debug, Clone)]
struct PeerRecord {
    addr: Multiaddr,
    inbound: bool,
    connected_unix_secs: u64,
    agent: String,
    misbehavior: u32,
}

#[derive(Debug, Clone)]
struct Ban {
    until_unix_secs: u64,
    reason: String,
}

/// One ban as the ban list file keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BanEntry {
    pub peer: PeerId,
    pub until_unix_secs: u64,
    pub reason: String,
}

/// `reason` cut to at most [`BAN_REASON_BYTES_MAX`] bytes at a character boundary.
fn bounded_reason(mut reason: String) -> String {
    if reason.len() > BAN_REASON_BYTES_MAX {
        let mut end = BAN_REASON_BYTES_MAX;
        while !reason.is_char_boundary(end) {
            end -= 1;
        }
        reason.truncate(end);
    }
    reason
}

/// What [`PeerBook::misbehaved`] decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Tolerated,
    Banned,
}

#[derive(Debug, Default)]
pub struct PeerBook {
    peers: HashMap<PeerId, PeerRecord>,
    banned: HashMap<PeerId, Ban>,
}

impl PeerBook {
    pub fn connected(&mut self, peer: PeerId, addr: Multiaddr, inbound: bool, now_secs: u64) {
        self.peers.entry(peer).or_insert(PeerRecord {
            addr,
            inbound,
            connected_unix_secs: now_secs,
            agent: String::new(),
            misbehavior: 0,
        });
    }

    pub fn disconnected(&mut self, peer: &PeerId) {
        self.peers.remove(peer);
    }

    pub fn set_agent(&mut self, peer: &PeerId, agent: String) {
        if let Some(record) = self.peers.get_mut(peer) {
            record.agent = agent;
        }
    }

    pub fn is_connected(&self, peer: &PeerId) -> bool {
        self.peers.contains_key(peer)
    }

    pub fn connected_peers(&self) -> Vec<PeerId> {
        self.peers.keys().copied().collect()
    }

    pub fn is_banned(&mut self, peer: &PeerId, now_secs: u64) -> bool {
        match self.banned.get(peer) {
            Some(ban) if ban.until_unix_secs > now_secs => true,
            Some(_) => {
                self.banned.remove(peer);
                false
            }
            None => false,
        }
    }

    /// Forgets bans that have run out, so peer ids minted to get banned cannot grow the map
    /// without end. Returns how many were dropped.
    pub fn prune_bans(&mut self, now_secs: u64) -> usize {
        let before = self.banned.len();
        self.banned.retain(|_, ban| ban.until_unix_secs > now_secs);
        before - self.banned.len()
    }

    /// Records a ban, within [`BANS_MAX`] (the ban closest to expiry gives way) and with the
    /// reason cut to [`BAN_REASON_BYTES_MAX`]. A longer ban already in force is kept.
    pub fn ban(&mut self, entry: BanEntry) {
        if let Some(existing) = self.banned.get(&entry.peer) {
            if existing.until_unix_secs >= entry.until_unix_secs {
                return;
            }
        } else if self.banned.len() >= BANS_MAX {
            let soonest = self
                .banned
                .iter()
                .min_by_key(|(_, ban)| ban.until_unix_secs)
                .map(|(peer, _)| *peer);
            if let Some(soonest) = soonest {
                self.banned.remove(&soonest);
            }
        }
        self.banned.insert(
            entry.peer,
            Ban {
                until_unix_secs: entry.until_unix_secs,
                reason: bounded_reason(entry.reason),
            },
        );
    }

    /// Every ban, soonest expiry first (for the ban list file).
    pub fn bans(&self) -> Vec<BanEntry> {
        let mut bans: Vec<BanEntry> = self
            .banned
            .iter()
            .map(|(peer, ban)| BanEntry {
                peer: *peer,
                until_unix_secs: ban.until_unix_secs,
                reason: ban.reason.clone(),
            })
            .collect();
        bans.sort_by_key(|b| (b.until_unix_secs, b.peer));
        bans
    }

    /// Scores an offence; bans the peer once its score reaches [`BAN_SCORE`].
    pub fn misbehaved(
        &mut self,
        peer: PeerId,
        offence: Offence,
        detail: &str,
        now_secs: u64,
    ) -> Verdict {
        let score = match self.peers.get_mut(&peer) {
            Some(record) => {
                record.misbehavior = record.misbehavior.saturating_add(offence.score());
                record.misbehavior
            }
            None => offence.score(),
        };
        warn!(%peer, offence = offence.name(), score, %detail, "peer misbehaved");
        if score < BAN_SCORE {
            return Verdict::Tolerated;
        }
        warn!(%peer, offence = offence.name(), ban_secs = BAN_SECS, "banning peer");
        self.ban(BanEntry {
            peer,
            until_unix_secs: now_secs + BAN_SECS,
            reason: format!("{}: {detail}", offence.name()),
        });
        Verdict::Banned
    }

    pub fn snapshot(&self) -> (Vec<PeerSnapshot>, Vec<BanSnapshot>) {
        let mut peers: Vec<PeerSnapshot> = self
            .peers
            .iter()
            .map(|(id, r)| PeerSnapshot {
                peer_id: id.to_string(),
                addr: r.addr.to_string(),
                inbound: r.inbound,
                connected_unix_secs: r.connected_unix_secs,
                agent: r.agent.clone(),
                misbehavior: r.misbehavior,
            })
            .collect();
        peers.sort_by(|a, b| a.peer_id.cmp(&b.peer_id));
        let banned = self
            .banned
            .iter()
            .map(|(id, ban)| BanSnapshot {
                peer_id: id.to_string(),
                banned_until_unix_secs: ban.until_unix_secs,
                reason: ban.reason.clone(),
            })
            .collect();
        (peers, banned)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_invalid_block_bans_but_one_unrequested_block_does_not() {
        let mut book = PeerBook::default();
        let (a, b) = (PeerId::random(), PeerId::random());
        book.connected(a, Multiaddr::empty(), false, 0);
        book.connected(b, Multiaddr::empty(), false, 0);
        assert_eq!(
            book.misbehaved(b, Offence::UnrequestedBlock, "x", 10),
            Verdict::Tolerated
        );
        assert!(!book.is_banned(&b, 10));
        assert_eq!(
            book.misbehaved(a, Offence::InvalidBlock, "bad cert", 10),
            Verdict::Banned
        );
        assert!(book.is_banned(&a, 11));
        assert!(!book.is_banned(&a, 10 + BAN_SECS));
    }

    #[test]
    fn expired_bans_are_forgotten_without_the_peer_returning() {
        let mut book = PeerBook::default();
        for _ in 0..3 {
            book.misbehaved(PeerId::random(), Offence::InvalidBlock, "x", 10);
        }
        book.prune_bans(11);
        assert_eq!(book.snapshot().1.len(), 3, "bans in force stay");
        assert_eq!(book.prune_bans(10 + BAN_SECS), 3);
        assert_eq!(book.snapshot().1.len(), 0);
    }

    #[test]
    fn bans_are_capped_and_their_reasons_bounded() {
        let mut book = PeerBook::default();
        let first = PeerId::random();
        book.ban(BanEntry {
            peer: first,
            until_unix_secs: 5,
            reason: "é".repeat(BAN_REASON_BYTES_MAX),
        });
        let reason = &book.bans()[0].reason;
        assert!(reason.len() <= BAN_REASON_BYTES_MAX && reason.starts_with('é'));
        for i in 0..BANS_MAX as u64 {
            book.ban(BanEntry {
                peer: PeerId::random(),
                until_unix_secs: 10 + i,
                reason: String::new(),
            });
        }
        let bans = book.bans();
        assert_eq!(bans.len(), BANS_MAX);
        assert!(
            !book.is_banned(&first, 0),
            "the ban closest to expiry gave way"
        );
        assert_eq!(bans[0].until_unix_secs, 10);
    }
}
