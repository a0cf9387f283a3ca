//! Crash safety: a child process connects and disconnects blocks as fast as it can and is
//! killed with SIGKILL at a random moment; the store it leaves must reopen consistent.
//!
//! The child is this test binary itself, re-run with `--ignored --exact crash_writer_child`
//! and the store path in an environment variable.

mod common;

use common::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;
use storage::Store;

const STORE_ENV: &str = "TRAINCHAIN_CRASH_TEST_STORE";
const SEED_ENV: &str = "TRAINCHAIN_CRASH_TEST_SEED";
/// Line the child prints once it has committed and entered its write loop.
const READY_LINE: &str = "crash-writer: writing";
const ROUNDS: u64 = 6;
/// Bound on the child's work if nobody kills it: far more than a round's random delay allows,
/// so a child that exits on its own means the kill did not land mid-write and the test fails.
const CHILD_STEPS_MAX: u64 = 1_000_000;

#[test]
#[ignore = "child process of sigkill_at_a_random_moment_leaves_a_consistent_store"]
fn crash_writer_child() {
    let (Ok(path), Ok(seed)) = (std::env::var(STORE_ENV), std::env::var(SEED_ENV)) else {
        eprintln!("crash_writer_child only runs as the child of the crash test");
        return;
    };
    let seed: u64 = seed.parse().expect("numeric seed");
    let store = Store::open(Path::new(&path)).expect("child opens store");
    if store.tip().expect("tip").is_none() {
        connect(&store, &genesis());
    }
    println!("{READY_LINE}");
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    for step in 0..CHILD_STEPS_MAX {
        let (tip, height) = store.tip().expect("tip").expect("genesis connected");
        // Mostly extend, sometimes step back, so kills land in both kinds of transaction.
        if height > 0 && rng.gen_ratio(1, 4) {
            store.disconnect_tip().expect("disconnect");
        } else {
            let parent = store.block(&tip).expect("read").expect("tip body");
            let spend = spendable_from_tip(&store);
            // Unique per round and step: a block never repeats across rounds.
            let block = child_block(&parent, &spend, seed * CHILD_STEPS_MAX + step);
            connect(&store, &block);
        }
    }
}

#[test]
fn sigkill_at_a_random_moment_leaves_a_consistent_store() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("chain.redb");
    let exe = std::env::current_exe().unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(0x7a11_c4a1);
    let mut heights = Vec::new();

    for round in 1..=ROUNDS {
        let mut child = Command::new(&exe)
            .args([
                "crash_writer_child",
                "--exact",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(STORE_ENV, &path)
            .env(SEED_ENV, round.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let ready = BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .any(|line| line.contains(READY_LINE));
        assert!(ready, "round {round}: the writer never started");

        std::thread::sleep(Duration::from_millis(rng.gen_range(5..150)));
        assert!(
            child.try_wait().unwrap().is_none(),
            "round {round}: the writer stopped before it was killed"
        );
        child.kill().unwrap(); // SIGKILL on Unix: no destructor, no flush, no commit.
        child.wait().unwrap();

        let store = Store::open(&path).unwrap();
        let summary = store
            .read()
            .unwrap()
            .check_consistency()
            .unwrap_or_else(|e| panic!("round {round}: {e}"));
        let (tip_hash, tip_height) = summary.tip.expect("genesis was committed before ready");
        assert_eq!(store.best_hash_at(tip_height).unwrap(), Some(tip_hash));
        assert_eq!(store.best_hash_at(tip_height + 1).unwrap(), None);
        for height in 0..=tip_height {
            let hash = store.best_hash_at(height).unwrap().unwrap();
            assert!(store.undo(&hash).unwrap().is_some(), "undo at {height}");
        }
        assert_eq!(
            replay_best_chain(&store),
            utxo_of(&store),
            "round {round}: UTXO set differs from a replay of the best chain"
        );
        heights.push(tip_height);
    }
    // The rounds did real work: the chain grew past genesis.
    assert!(heights.iter().any(|&h| h > 1), "tip heights {heights:?}");
}
