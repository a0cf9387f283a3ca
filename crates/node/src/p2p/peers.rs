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
    /// without end.
    pub fn prune_bans(&mut self, now_secs: u64) {
        self.banned.retain(|_, ban| ban.until_unix_secs > now_secs);
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
        self.banned.insert(
            peer,
            Ban {
                until_unix_secs: now_secs + BAN_SECS,
                reason: format!("{}: {detail}", offence.name()),
            },
        );
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
        book.prune_bans(10 + BAN_SECS);
        assert_eq!(book.snapshot().1.len(), 0);
    }
}
