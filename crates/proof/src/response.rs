//! A miner's answer to its challenge, the miner-side record of a run that produces it, and the
//! answer's byte encoding.

use learning::{TrainState, STATE_BYTES_MAX};
use primitives::Hash256;
use thiserror::Error;

use crate::transcript::{checkpoint_steps, Transcript};

/// Version byte of the answer encoding.
pub const RESPONSE_VERSION: u8 = 1;

/// Most hashes in one Merkle path: a transcript has at most `LEAVES_MAX` = 2^20 leaves.
pub const PATH_HASHES_MAX: usize = 20;

/// One challenged interval opened: the state at its start with its path, and the leaf at its
/// end with its path.
#[derive(Debug, Clone, PartialEq)]
pub struct Opening {
    pub interval: u64,
    pub start: TrainState,
    pub start_path: Vec<Hash256>,
    pub end_leaf: Hash256,
    pub end_path: Vec<Hash256>,
}

/// The whole answer: the path of the step-0 leaf (the verifier computes that leaf itself from
/// the start model) and one opening per challenged interval, in ascending order.
#[derive(Debug, Clone, PartialEq)]
pub struct ChallengeResponse {
    pub first_path: Vec<Hash256>,
    pub openings: Vec<Opening>,
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ResponseDecodeError {
    #[error("answer of {len} bytes, over the {max}-byte limit")]
    Oversize { len: usize, max: usize },
    #[error("unknown answer version {0}")]
    UnknownVersion(u8),
    #[error("answer truncated")]
    Truncated,
    #[error("a path of {0} hashes, over the limit")]
    PathTooLong(usize),
    #[error("{0} openings, more than the challenge can ask")]
    TooManyOpenings(usize),
    #[error("state: {0}")]
    State(String),
    #[error("{0} trailing bytes")]
    TrailingBytes(usize),
}

/// Largest answer a decoder reads for `openings` openings of states up to `state_bytes` each.
pub fn response_bytes_max(openings: usize, state_bytes: usize) -> usize {
    let path = 1 + 32 * PATH_HASHES_MAX;
    1 + path + 2 + openings * (8 + 4 + state_bytes + path + 32 + path)
}

impl ChallengeResponse {
    /// `version u8 || path || count u16 LE || (interval u64 LE || state len u32 LE || state ||
    /// start path || end leaf 32 || end path) × count`, where a path is `n u8 || hash 32 × n`
    /// and a state is [`TrainState::encode`].
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![RESPONSE_VERSION];
        put_path(&mut out, &self.first_path);
        out.extend((self.openings.len() as u16).to_le_bytes());
        for o in &self.openings {
            out.extend(o.interval.to_le_bytes());
            let state = o.start.encode();
            out.extend((state.len() as u32).to_le_bytes());
            out.extend(state);
            put_path(&mut out, &o.start_path);
            out.extend(o.end_leaf.0);
            put_path(&mut out, &o.end_path);
        }
        out
    }

    /// Decodes one answer of at most `max_bytes` with at most `openings_max` openings.
    pub fn decode(
        bytes: &[u8],
        max_bytes: usize,
        openings_max: usize,
    ) -> Result<Self, ResponseDecodeError> {
        if bytes.len() > max_bytes {
            return Err(ResponseDecodeError::Oversize {
                len: bytes.len(),
                max: max_bytes,
            });
        }
        let mut r = Cursor { rest: bytes };
        let version = r.take(1)?[0];
        if version != RESPONSE_VERSION {
            return Err(ResponseDecodeError::UnknownVersion(version));
        }
        let first_path = r.path()?;
        let count = u16::from_le_bytes(r.array()?) as usize;
        if count > openings_max {
            return Err(ResponseDecodeError::TooManyOpenings(count));
        }
        let mut openings = Vec::with_capacity(count);
        for _ in 0..count {
            let interval = u64::from_le_bytes(r.array()?);
            let len = u32::from_le_bytes(r.array()?) as usize;
            if len > STATE_BYTES_MAX {
                return Err(ResponseDecodeError::State(format!("{len} bytes")));
            }
            let start = TrainState::decode(r.take(len)?)
                .map_err(|e| ResponseDecodeError::State(e.to_string()))?;
            let start_path = r.path()?;
            let end_leaf = Hash256(r.array()?);
            let end_path = r.path()?;
            openings.push(Opening {
                interval,
                start,
                start_path,
                end_leaf,
                end_path,
            });
        }
        if !r.rest.is_empty() {
            return Err(ResponseDecodeError::TrailingBytes(r.rest.len()));
        }
        Ok(ChallengeResponse {
            first_path,
            openings,
        })
    }
}

fn put_path(out: &mut Vec<u8>, path: &[Hash256]) {
    out.push(path.len() as u8);
    for h in path {
        out.extend(h.0);
    }
}

struct Cursor<'a> {
    rest: &'a [u8],
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], ResponseDecodeError> {
        if self.rest.len() < n {
            return Err(ResponseDecodeError::Truncated);
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], ResponseDecodeError> {
        Ok(self.take(N)?.try_into().expect("N bytes"))
    }

    fn path(&mut self) -> Result<Vec<Hash256>, ResponseDecodeError> {
        let n = self.take(1)?[0] as usize;
        if n > PATH_HASHES_MAX {
            return Err(ResponseDecodeError::PathTooLong(n));
        }
        (0..n).map(|_| Ok(Hash256(self.array()?))).collect()
    }
}

/// A miner's record of its run: the state at every checkpoint step, and the transcript over
/// them. Built as the run goes ([`RunRecord::push`]) and cut at the step the miner submits.
#[derive(Debug, Clone, Default)]
pub struct RunRecord {
    interval: u64,
    states: Vec<TrainState>,
    /// The states' hashes (the transcript's leaves), computed once when first asked for:
    /// the commitment and the challenge answer both need them, and each hashes every
    /// checkpoint's weights and velocity.
    leaves: std::sync::OnceLock<Vec<Hash256>>,
}

impl RunRecord {
    /// A record for checkpoint interval `interval` (its first state must be step 0's).
    pub fn new(interval: u64) -> Self {
        RunRecord {
            interval: interval.max(1),
            states: Vec::new(),
            leaves: std::sync::OnceLock::new(),
        }
    }

    /// Whether the run must record its state after `step` steps.
    pub fn is_checkpoint(&self, step: u64) -> bool {
        step.is_multiple_of(self.interval)
    }

    /// Adds the state at a checkpoint step (in increasing step order).
    pub fn push(&mut self, state: TrainState) {
        debug_assert!(self.states.last().is_none_or(|s| s.step < state.step));
        self.states.push(state);
        self.leaves = std::sync::OnceLock::new();
    }

    /// The states of a run that ends with `last`: every checkpoint before it, then `last`.
    pub fn ending_with(&self, last: TrainState) -> RunRecord {
        let mut states: Vec<TrainState> = self
            .states
            .iter()
            .filter(|s| s.step < last.step && self.is_checkpoint(s.step))
            .cloned()
            .collect();
        states.push(last);
        RunRecord {
            interval: self.interval,
            states,
            leaves: std::sync::OnceLock::new(),
        }
    }

    /// The recorded states, in step order.
    pub fn states(&self) -> &[TrainState] {
        &self.states
    }

    pub fn last(&self) -> Option<&TrainState> {
        self.states.last()
    }

    /// The steps of the recorded states.
    pub fn steps(&self) -> Vec<u64> {
        self.states.iter().map(|s| s.step).collect()
    }

    /// True if the record holds exactly the states a transcript of its last step needs.
    pub fn is_complete(&self) -> bool {
        self.last()
            .is_some_and(|l| self.steps() == checkpoint_steps(l.step, self.interval))
    }

    /// The transcript over the recorded states.
    pub fn transcript(&self) -> Transcript {
        let leaves = self
            .leaves
            .get_or_init(|| self.states.iter().map(|s| Hash256(s.hash())).collect());
        Transcript::new(leaves.clone())
    }

    /// The answer to a challenge of `intervals` (ascending).
    pub fn respond(&self, intervals: &[u64]) -> ChallengeResponse {
        let tree = self.transcript();
        let openings = intervals
            .iter()
            .filter_map(|&i| {
                let i = usize::try_from(i).ok()?;
                Some(Opening {
                    interval: i as u64,
                    start: self.states.get(i)?.clone(),
                    start_path: tree.path(i),
                    end_leaf: tree.leaf(i + 1)?,
                    end_path: tree.path(i + 1),
                })
            })
            .collect();
        ChallengeResponse {
            first_path: tree.path(0),
            openings,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(step: u64) -> TrainState {
        TrainState {
            step,
            weights: vec![vec![step as f32, 1.0]],
            velocity: vec![Vec::new()],
        }
    }

    /// The leaves are hashed once and reused, but a state pushed after a transcript was
    /// taken is in the next one: a commitment never covers a stale record.
    #[test]
    fn the_transcript_covers_every_pushed_state_after_it_was_cached() {
        let mut record = RunRecord::new(2);
        record.push(state(0));
        record.push(state(2));
        let early = record.transcript();
        assert_eq!(early.root(), record.transcript().root());
        record.push(state(3));
        let fresh = Transcript::new(record.states().iter().map(|s| Hash256(s.hash())).collect());
        assert_eq!(record.transcript().leaf_count(), 3);
        assert_eq!(record.transcript().root(), fresh.root());
        assert_ne!(record.transcript().root(), early.root());
        let cut = record.ending_with(state(2));
        assert_eq!(cut.transcript().leaf_count(), 2);
        assert_eq!(cut.transcript().root(), early.root());
    }
}
