//! Fuzz targets for every decoder and network-facing parser.
//!
//! Each target is a plain function from bytes to [`Outcome`] that panics only on a bug: it
//! feeds the bytes to the decoder exactly as the node, coordinator or miner does, and for every
//! accepted input checks more than "no panic" where it is cheap (a canonical decoder's
//! `encode(decode(x)) == x` byte for byte; a semantic round trip for JSON, TOML and
//! safetensors, which have many spellings of one value). The same functions run under AFL++
//! (`cargo afl build`, coverage-guided) and under the plain mutation driver in [`driver`]
//! (stable, uninstrumented: the CI smoke run). Seeds come from [`seeds`], built from the
//! testkit's valid signed chain.

pub mod driver;
pub mod seeds;
pub mod targets;

/// What the decoder did with an input (counted by the driver: how deep mutations get).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Accepted,
    Rejected,
}

impl Outcome {
    pub fn of<T, E>(result: &Result<T, E>) -> Outcome {
        if result.is_ok() {
            Outcome::Accepted
        } else {
            Outcome::Rejected
        }
    }
}

/// One fuzz target: its name (also the corpus folder `fuzz/corpus/<name>/`) and entry point.
pub struct Target {
    pub name: &'static str,
    /// What it parses, for `trainchain-fuzz list`.
    pub about: &'static str,
    pub run: fn(&[u8]) -> Outcome,
}

/// Every target, in the order the smoke run takes them.
pub const TARGETS: &[Target] = &[
    Target {
        name: "block",
        about: "Block::decode (block bytes: sync, submitblock, genesis); canonical round trip",
        run: targets::block,
    },
    Target {
        name: "header",
        about: "BlockHeader::decode (400 bytes); canonical round trip",
        run: targets::header,
    },
    Target {
        name: "certificate",
        about: "Certificate::decode (328 bytes); canonical round trip",
        run: targets::certificate,
    },
    Target {
        name: "transaction",
        about: "bitcoin::consensus::deserialize::<Transaction> as the node uses it; round trip",
        run: targets::transaction,
    },
    Target {
        name: "store_records",
        about: "storage records: Coin, BlockUndo, IndexEntry, equivocation evidence",
        run: targets::store_records,
    },
    Target {
        name: "sync_request",
        about: "p2p::wire SyncRequest::decode; canonical round trip",
        run: targets::sync_request,
    },
    Target {
        name: "sync_response",
        about: "p2p::wire SyncResponse::decode; canonical round trip",
        run: targets::sync_response,
    },
    Target {
        name: "sync_codec",
        about: "SyncCodec read_request/read_response on a raw stream (length-prefixed frames)",
        run: targets::sync_codec,
    },
    Target {
        name: "gossip",
        about: "gossip payloads (block or tx topic) decoded and checked as the node does",
        run: targets::gossip,
    },
    Target {
        name: "update",
        about: "learning::decode_update against an ExpectedSegment (miner uploads)",
        run: targets::update,
    },
    Target {
        name: "shard",
        about: "Samples::from_safetensors (shard a miner downloads)",
        run: targets::shard,
    },
    Target {
        name: "weights",
        about: "model_from_safetensors (global weights a miner downloads)",
        run: targets::weights,
    },
    Target {
        name: "coordinator_request",
        about: "coordinator request parsing: register JSON, submission headers, query strings",
        run: targets::coordinator_request,
    },
    Target {
        name: "coordinator_response",
        about: "coordinator JSON bodies the miner and auditor parse",
        run: targets::coordinator_response,
    },
    Target {
        name: "rpc",
        about: "JSON-RPC requests through the node's full method table (param parsing)",
        run: targets::rpc,
    },
    Target {
        name: "proof_answer",
        about: "proof::ChallengeResponse::decode and TrainState::decode (a miner's answer to its challenge)",
        run: targets::proof_answer,
    },
    Target {
        name: "chain_params",
        about: "ChainParams::from_toml (chain.toml); semantic round trip",
        run: targets::chain_params,
    },
];

pub fn target(name: &str) -> Option<&'static Target> {
    TARGETS.iter().find(|t| t.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn every_generated_valid_seed_is_accepted() {
        for seed in seeds::generate() {
            let target = target(seed.target).expect("seed of a known target");
            if seed.name.starts_with("valid-") {
                assert_eq!(
                    (target.run)(&seed.bytes),
                    Outcome::Accepted,
                    "{}/{}",
                    seed.target,
                    seed.name
                );
            }
        }
    }

    #[test]
    fn every_target_has_an_accepted_seed_in_the_corpus() {
        let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
        for target in TARGETS {
            let seeds = driver::load_corpus(&corpus.join(target.name)).unwrap();
            let valid: Vec<_> = seeds
                .iter()
                .filter(|(path, _)| {
                    let name = path.file_name().unwrap().to_string_lossy();
                    name.starts_with("valid-")
                })
                .collect();
            assert!(!valid.is_empty(), "{} has no valid-* seed", target.name);
            for (path, bytes) in valid {
                assert_eq!(
                    (target.run)(bytes),
                    Outcome::Accepted,
                    "{} is no longer accepted; regenerate with `scripts/fuzz seeds`",
                    path.display()
                );
            }
        }
    }

    #[test]
    fn target_names_are_unique() {
        let mut names: Vec<_> = TARGETS.iter().map(|t| t.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), TARGETS.len());
    }
}
