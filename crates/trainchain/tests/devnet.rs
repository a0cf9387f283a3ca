//! End-to-end: `trainchain devnet` with real node, coordinator and miner processes on
//! loopback, short cycles and the shipped digits with a small MLP.

mod support;

use coordinator::held_out::HeldOutSecret;
use coordinator::work::Workload;
use learning::{evaluate, model_from_safetensors, Dataset, Model, SplitFractions};
use primitives::ChainParams;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Cycle length for tests: registration 0.6 s, training 2.4 s; enough for a miner to train
/// the small MLP hundreds of steps on a loaded 2-core machine.
const CYCLE_SECS: &str = "3";

/// One devnet at a time: each is a dozen processes on a 2-core machine, and a winner that
/// misses its block window under the load of four devnets at once turns a test of the protocol
/// into a test of the scheduler.
static ONE_DEVNET_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn run_devnet(dir: &Path, extra: &[&str]) -> (std::process::Output, Value) {
    run_devnet_with(dir, CYCLE_SECS, extra)
}

fn run_devnet_with(dir: &Path, cycle_secs: &str, extra: &[&str]) -> (std::process::Output, Value) {
    let _serial = ONE_DEVNET_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let json = dir.join("summary.json");
    let output = Command::new(env!("CARGO_BIN_EXE_trainchain"))
        .arg("devnet")
        .arg("--data-dir")
        .arg(dir.join("net"))
        .arg("--json")
        .arg(&json)
        .args(["--cycle-secs", cycle_secs, "--miner-threads", "1"])
        // Digits and the small MLP are the fast test setup; the default language model
        // needs whole seconds per window (its own test below names it).
        .args(if extra.contains(&"--dataset") {
            &[][..]
        } else {
            &["--dataset", "digits"][..]
        })
        .args(if extra.contains(&"--model") {
            &[][..]
        } else {
            &["--model", "mlp:32"][..]
        })
        .args(extra)
        .output()
        .expect("running trainchain devnet");
    let summary = std::fs::read_to_string(&json)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or(Value::Null);
    (output, summary)
}

fn explain(output: &std::process::Output) -> String {
    format!(
        "status {}\nstdout:\n{}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Public keys of the devnet's miners with the given behaviour.
fn miners_with(dir: &Path, behaviour: &str) -> Vec<String> {
    let roster: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("net/miners.json")).unwrap())
            .unwrap();
    roster
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["behaviour"] == behaviour)
        .map(|m| m["public_key"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn devnet_mines_three_blocks_that_audit_and_trains_a_better_model() {
    let dir = tempfile::tempdir().unwrap();
    let (output, summary) = run_devnet(dir.path(), &["--cycles", "3"]);
    assert!(output.status.success(), "{}", explain(&output));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("audit: passed"), "{stdout}");

    let honest = miners_with(dir.path(), "honest");
    assert_eq!(honest.len(), 3);
    let cycles = summary["cycles"].as_array().unwrap();
    assert_eq!(cycles.len(), 3);
    // Every cycle with an entry produced a block. Each cycle is scored on a fresh 54-sample
    // batch, so once the model is good a cycle can pass with no update that lowers the loss on
    // its batch (no entry, no block; a default run had one such cycle in five); the first
    // cycle always has entries.
    let with_entries = cycles
        .iter()
        .filter(|c| c["entries"].as_u64().unwrap() > 0)
        .count();
    assert!(cycles[0]["entries"].as_u64().unwrap() > 0, "{summary}");
    let blocks = summary["blocks"].as_array().unwrap();
    assert_eq!(blocks.len(), with_entries, "{summary}");
    for block in blocks {
        assert!(
            honest.contains(&block["winner"].as_str().unwrap().to_owned()),
            "block won by a non-registered or dishonest miner: {block}"
        );
    }
    assert_eq!(summary["chain"]["height"], blocks.len());
    assert_eq!(summary["nodes_agree"], true);

    // The held-out pool is the coordinator's secret: a miner rebuilding the split from public
    // data with the seed that used to be fixed gets another held-out set. (This test reads the
    // secret from the coordinator's data directory, as only its operator can.)
    let setup = devnet::run::work_setup("digits", &"mlp:32".parse().unwrap()).unwrap();
    let secret = HeldOutSecret::load_or_create(&dir.path().join("net/coordinator")).unwrap();
    let digits = Dataset::load(&setup.dataset).unwrap();
    let rebuilt = digits.split(SplitFractions::default(), 1).unwrap();
    let actual = digits
        .split(SplitFractions::default(), secret.split_seed())
        .unwrap();
    assert_ne!(rebuilt.held_out.features(), actual.held_out.features());
    // Every cycle was re-measured by the audit from its published data.
    let remeasured: usize = stdout
        .split(" cycles re-measured from published data")
        .next()
        .and_then(|head| head.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(remeasured >= 3, "{stdout}");

    // The global model improved: held-out loss after the last cycle below the initial one.
    let workload = Workload::load(setup.clone(), secret).unwrap();
    let initial = Model::new(setup.model.clone(), setup.model_seed).unwrap();
    let initial_loss = evaluate(&initial, &workload.split.held_out).unwrap().loss;
    let last_loss = cycles.last().unwrap()["held_out_loss"].as_f64().unwrap() as f32;
    assert!(last_loss < initial_loss, "{last_loss} vs {initial_loss}");

    // The exported model loads back and reproduces the reported test accuracy.
    let path = summary["model"]["path"].as_str().unwrap();
    let exported =
        model_from_safetensors(setup.model.clone(), &std::fs::read(path).unwrap()).unwrap();
    let accuracy = evaluate(&exported, &workload.split.test).unwrap().accuracy;
    // JSON carries the f32 in its shortest decimal form: compare as f32.
    assert_eq!(
        accuracy,
        summary["model"]["test_accuracy"].as_f64().unwrap() as f32
    );
    let card: Value = serde_json::from_str(
        &std::fs::read_to_string(Path::new(path).with_extension("json")).unwrap(),
    )
    .unwrap();
    assert_eq!(card["test_accuracy"].as_f64().unwrap() as f32, accuracy);
    assert_eq!(
        summary["model"]["parameters"].as_u64().unwrap() as usize,
        exported.param_count()
    );
    let fraction = summary["useful_work_fraction"].as_f64().unwrap();
    assert!(fraction > 0.5 && fraction <= 1.0, "{fraction}");
    // Training wall time over the training windows: measured, and a fraction of the time
    // (issue 14 is to make it most of the window; on the digits MLP it is small).
    let utilisation = summary["window_utilisation"].as_f64().unwrap();
    assert!(utilisation > 0.0 && utilisation <= 1.0, "{utilisation}");

    offline_audit_from_the_archive(&dir.path().join("net"));
}

/// Every cheat's bond was slashed on chain, burned whole (less the fee), and no honest miner's
/// bond was touched: read from the published records and a node restarted on node 0's chain.
fn slashed_on_chain_exactly_the_cheats(net: &Path, summary: &Value) {
    let records: Value =
        serde_json::from_str(&std::fs::read_to_string(net.join("archive/records.json")).unwrap())
            .unwrap();
    let slashes: Vec<&Value> = records
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| r["slashes"].as_array().unwrap())
        .collect();
    let roster: Value =
        serde_json::from_str(&std::fs::read_to_string(net.join("miners.json")).unwrap()).unwrap();
    let params =
        ChainParams::from_toml(&std::fs::read_to_string(net.join("chain.toml")).unwrap()).unwrap();
    let burn = consensus::tx::burn_script().to_hex_string();
    let blocks: Vec<String> = summary["blocks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["hash"].as_str().unwrap().to_owned())
        .collect();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let node = runtime.block_on(support::start_node(&net.join("node-0"), &params, &[]));
    for miner in roster.as_array().unwrap() {
        let bond = miner["bond"].as_str().unwrap();
        let (txid, vout) = bond.split_once(':').unwrap();
        let vout: u64 = vout.parse().unwrap();
        let coin = runtime.block_on(node.call("gettxout", vec![txid.into(), vout.into()]));
        let slash = slashes.iter().find(|s| s["miner"] == miner["public_key"]);
        // The summary says the same: what each miner kept.
        let line = summary["miners"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["bond"].as_str() == Some(bond))
            .unwrap_or_else(|| panic!("no summary line with bond {bond}"));
        assert_eq!(
            line["bond_kept"].as_bool(),
            Some(miner["behaviour"] == "honest"),
            "{line}"
        );
        if miner["behaviour"] == "honest" {
            assert!(slash.is_none(), "an honest miner was slashed: {miner}");
            assert!(!coin.is_null(), "an honest miner's bond was spent: {miner}");
            continue;
        }
        let slash = slash.unwrap_or_else(|| panic!("a cheat kept its bond: {miner}"));
        assert_eq!(slash["bond"].as_str(), Some(bond));
        assert!(coin.is_null(), "the cheat's bond is unspent: {miner}");
        // The slash is in a block of the chain and pays only the burn.
        let spend = blocks
            .iter()
            .find_map(|hash| {
                runtime
                    .block_on(node.rpc.call(
                        "getrawtransaction",
                        vec![slash["txid"].clone(), true.into(), hash.as_str().into()],
                    ))
                    .ok()
            })
            .unwrap_or_else(|| panic!("slash {slash} is in no block"));
        // It burns the bond, less the fee and, when a verifier's claim exposed the cheat, the
        // finder share paid to that verifier's payout address.
        let outputs = spend["vout"].as_array().unwrap();
        let burned = outputs.last().unwrap();
        assert_eq!(burned["scriptPubKey"]["hex"].as_str(), Some(burn.as_str()));
        match slash.get("finder") {
            None => assert_eq!(outputs.len(), 1, "{spend}"),
            Some(finder) => {
                assert_eq!(outputs.len(), 2, "{spend}");
                assert_eq!(
                    outputs[0]["scriptPubKey"]["address"], finder["payout_address"],
                    "{spend}"
                );
                assert_eq!(outputs[0]["value"], burned["value"], "a 50% share: {spend}");
            }
        }
    }
}

/// A third party holding only what was published: the devnet has ended, so its coordinator is
/// gone; a node is started again on node 0's chain, and `trainchain audit --archive` recomputes
/// every score and merge from the saved data, with every miner's receipts. Then the archive
/// is tampered with, as a coordinator rewriting history would, and the audit fails each time.
fn offline_audit_from_the_archive(net: &Path) {
    let params_path = net.join("chain.toml");
    let params = ChainParams::from_toml(&std::fs::read_to_string(&params_path).unwrap()).unwrap();
    let archive = net.join("archive");
    let reports: Vec<PathBuf> = std::fs::read_dir(net)
        .unwrap()
        .map(|e| e.unwrap().path().join("report.jsonl"))
        .filter(|p| p.is_file())
        .collect();
    assert_eq!(reports.len(), 3, "one report per miner");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let node = runtime.block_on(support::start_node(&net.join("node-0"), &params, &[]));
    let audit = || {
        let mut command = Command::new(env!("CARGO_BIN_EXE_trainchain"));
        command
            .arg("audit")
            .arg("--archive")
            .arg(&archive)
            .args(["--rpc", &node.rpc_url, "--rpc-auth"])
            .arg(format!("cookie:{}", node.dir.display()))
            .arg("--params")
            .arg(&params_path);
        for report in &reports {
            command.arg("--receipts").arg(report);
        }
        command.output().expect("running trainchain audit")
    };

    let output = audit();
    assert!(output.status.success(), "{}", explain(&output));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("audit passed"), "{stdout}");
    assert!(!stdout.contains(" 0 receipts found"), "{stdout}");

    // An update swapped after the fact no longer hashes to its receipt.
    let updates = archive.join("cycles/0/updates");
    let update = std::fs::read_dir(&updates)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let original = std::fs::read(&update).unwrap();
    let mut swapped = original.clone();
    *swapped.last_mut().unwrap() ^= 1;
    std::fs::write(&update, &swapped).unwrap();
    let output = audit();
    assert!(!output.status.success(), "{}", explain(&output));
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("is not the receipted one"),
        "{}",
        explain(&output)
    );
    std::fs::write(&update, &original).unwrap();

    // A record that drops a receipted submission is caught by the miner's receipt.
    let records_path = archive.join("records.json");
    let records_text = std::fs::read_to_string(&records_path).unwrap();
    let mut records: Value = serde_json::from_str(&records_text).unwrap();
    records[0]["submissions"].as_array_mut().unwrap().remove(0);
    std::fs::write(&records_path, serde_json::to_vec(&records).unwrap()).unwrap();
    let output = audit();
    assert!(!output.status.success(), "{}", explain(&output));
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("the record omits it"),
        "{}",
        explain(&output)
    );
    std::fs::write(&records_path, records_text).unwrap();
    assert!(
        audit().status.success(),
        "the restored archive audits again"
    );
}

#[test]
fn devnet_survives_a_coordinator_killed_mid_cycle() {
    let dir = tempfile::tempdir().unwrap();
    let (output, summary) = run_devnet(
        dir.path(),
        &["--cycles", "4", "--restart-coordinator-in-cycle", "1"],
    );
    assert!(output.status.success(), "{}", explain(&output));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("killing the coordinator"), "{stdout}");
    assert!(stdout.contains("audit: passed"), "{stdout}");
    assert_eq!(summary["nodes_agree"], true);
    // The cycles from the restart on still produce blocks.
    let cycles = summary["cycles"].as_array().unwrap();
    assert!(
        cycles[1..].iter().any(|c| !c["winner"].is_null()),
        "{summary}"
    );
    assert!(
        summary["chain"]["height"].as_u64().unwrap() >= 2,
        "{summary}"
    );
}

#[test]
fn lazy_and_noise_miners_win_no_block() {
    let dir = tempfile::tempdir().unwrap();
    let (output, summary) = run_devnet(
        dir.path(),
        &[
            "--cycles",
            "2",
            "--miners",
            "2",
            "--lazy-miners",
            "1",
            "--noise-miners",
            "1",
        ],
    );
    assert!(output.status.success(), "{}", explain(&output));
    let honest = miners_with(dir.path(), "honest");
    let bad: Vec<String> = miners_with(dir.path(), "lazy")
        .into_iter()
        .chain(miners_with(dir.path(), "noise"))
        .collect();
    assert_eq!(bad.len(), 2);
    let blocks = summary["blocks"].as_array().unwrap();
    assert!(!blocks.is_empty(), "{summary}");
    for block in blocks {
        let winner = block["winner"].as_str().unwrap().to_owned();
        assert!(
            honest.contains(&winner) && !bad.contains(&winner),
            "{block}"
        );
    }
    // Only honest work enters the lottery.
    for cycle in summary["cycles"].as_array().unwrap() {
        assert!(cycle["entries"].as_u64().unwrap() <= 2, "{cycle}");
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("miner-2 (lazy): 0 block(s)"), "{stdout}");
    assert!(stdout.contains("miner-3 (noise): 0 block(s)"), "{stdout}");
}

#[test]
fn cheating_miners_are_caught_by_replay_and_win_nothing() {
    let dir = tempfile::tempdir().unwrap();
    // Five miners: 6 s cycles give a 3 s block window, so that a loaded machine does not make
    // the first winner miss it (what the test is about is the check, not the fallback).
    let (output, summary) = run_devnet_with(
        dir.path(),
        "6",
        &["--cycles", "3", "--miners", "2", "--cheat-miners", "3"],
    );
    assert!(output.status.success(), "{}", explain(&output));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let honest = miners_with(dir.path(), "honest");
    slashed_on_chain_exactly_the_cheats(&dir.path().join("net"), &summary);
    let blocks = summary["blocks"].as_array().unwrap();
    assert!(!blocks.is_empty(), "{summary}");
    for block in blocks {
        assert!(
            honest.contains(&block["winner"].as_str().unwrap().to_owned()),
            "a block won by a cheat: {block}"
        );
    }
    let miners = summary["miners"].as_array().unwrap();
    let mut caught = 0;
    for m in miners {
        let (verified, failed) = (
            m["verified"].as_u64().unwrap(),
            m["failed"].as_u64().unwrap(),
        );
        if m["behaviour"] == "honest" {
            assert_eq!(failed, 0, "an honest miner was accused: {m}");
            assert!(verified >= 1, "{m}");
        } else {
            assert_eq!(verified, 0, "a cheat passed its check: {m}");
            assert_eq!(m["blocks"], 0, "{m}");
            caught += failed;
        }
    }
    assert!(
        caught >= 3,
        "every cheat is caught at least once: {summary}"
    );
    // The audit replayed every piece of evidence itself.
    assert!(stdout.contains("audit: passed"), "{stdout}");
    assert!(stdout.contains("caught: "), "{stdout}");
}

#[test]
fn devnet_trains_the_cnn_with_replayed_checks_and_a_bitwise_audit() {
    let dir = tempfile::tempdir().unwrap();
    let (output, summary) = run_devnet_with(
        dir.path(),
        "4",
        &["--cycles", "2", "--model", "cnn:4,8", "--miners", "2"],
    );
    assert!(output.status.success(), "{}", explain(&output));
    let stdout = String::from_utf8_lossy(&output.stdout);
    // Every submission's replay check passed: training a CNN replays bit for bit.
    let cycles = summary["cycles"].as_array().unwrap();
    assert_eq!(cycles.len(), 2);
    for cycle in cycles {
        assert_eq!(cycle["failed"], 0, "{summary}");
        assert_eq!(cycle["verified"], 2, "{summary}");
    }
    // And the audit recomputed every CNN evaluation and merge bit for bit from the archive.
    assert!(stdout.contains("audit: passed"), "{stdout}");
    assert!(stdout.contains(" 2 cycles re-measured"), "{stdout}");
    assert!(
        !summary["blocks"].as_array().unwrap().is_empty(),
        "{summary}"
    );
}

/// The default workload: the byte-level transformer on the shipped WordNet glosses. Every
/// submission replays bit for bit, the audit re-measures every cycle, the model gets better,
/// and the summary shows text before and after and the miners' token rates.
#[test]
fn devnet_trains_the_language_model_with_replayed_checks_and_a_bitwise_audit() {
    let dir = tempfile::tempdir().unwrap();
    let (output, summary) = run_devnet_with(
        dir.path(),
        "8",
        &[
            "--cycles",
            "2",
            "--dataset",
            "wordnet",
            "--model",
            "lm:32,1,2",
            "--miners",
            "2",
        ],
    );
    assert!(output.status.success(), "{}", explain(&output));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let cycles = summary["cycles"].as_array().unwrap();
    assert_eq!(cycles.len(), 2);
    for cycle in cycles {
        assert_eq!(cycle["failed"], 0, "{summary}");
    }
    assert!(stdout.contains("audit: passed"), "{stdout}");
    assert!(stdout.contains(" 2 cycles re-measured"), "{stdout}");
    // Next-byte prediction from a random start: the held-out loss falls below ln 256.
    let last = cycles.last().unwrap()["held_out_loss"].as_f64().unwrap();
    assert!(last < 256f64.ln() - 0.5, "{summary}");
    let model = &summary["model"];
    assert!(model["sample_before"].is_string(), "{summary}");
    assert!(model["sample_after"].is_string(), "{summary}");
    assert!(stdout.contains("bits per byte"), "{stdout}");
    for miner in summary["miners"].as_array().unwrap() {
        assert!(miner["tokens_per_sec"].as_f64().unwrap() > 0.0, "{summary}");
    }
}

/// One operator with many keys and no bonds (`--sybil-miners 3 --sybil-bonds none`): every
/// registration of every key is refused for want of a bond, so the keys win nothing and the
/// one honest bonded miner is never crowded out; the summary says what each key got and why.
#[test]
fn sybil_keys_without_bonds_get_no_slot_and_crowd_out_no_one() {
    let dir = tempfile::tempdir().unwrap();
    let (output, summary) = run_devnet(
        dir.path(),
        &[
            "--cycles",
            "2",
            "--miners",
            "1",
            "--sybil-miners",
            "3",
            "--sybil-bonds",
            "none",
        ],
    );
    assert!(output.status.success(), "{}", explain(&output));
    let miners = summary["miners"].as_array().unwrap();
    let sybils: Vec<&Value> = miners.iter().filter(|m| m["sybil"] == true).collect();
    assert_eq!(sybils.len(), 3, "{summary}");
    for s in &sybils {
        assert_eq!(s["blocks"], 0, "{s}");
        assert_eq!(s["bond"], "", "{s}");
        assert!(s["cycles_without_work"].as_u64().unwrap() >= 1, "{s}");
        let why = s["missed_reason"].as_str().unwrap_or_default();
        assert!(why.contains("bond_required"), "{s}");
    }
    let honest = miners.iter().find(|m| m["sybil"] == false).unwrap();
    assert_eq!(honest["cycles_without_work"], 0, "{honest}");
    let height = summary["chain"]["height"].as_u64().unwrap();
    assert!(height >= 1, "{summary}");
    assert_eq!(honest["blocks"].as_u64(), Some(height), "{summary}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("3 sybil keys without bonds"), "{stdout}");
    assert!(stdout.contains("audit: passed"), "{stdout}");
}

/// A training job posted by its owner with `trainchain job submit`: the coordinator's own
/// workload gives way after cycle 0, the job trains its two cycles on its own model, the
/// coordinator's workload resumes, `trainchain job fetch` downloads the job's model, and the
/// audit checks every job's terms and each change of job from the published records.
#[test]
fn devnet_runs_a_posted_job_between_its_own_cycles_and_the_audit_checks_the_lineage() {
    let dir = tempfile::tempdir().unwrap();
    let (output, summary) = run_devnet_with(
        dir.path(),
        "4",
        &[
            "--cycles",
            "5",
            "--miners",
            "2",
            "--job",
            "mlp:8",
            "--job-cycles",
            "2",
        ],
    );
    assert!(output.status.success(), "{}", explain(&output));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("job posted: "), "{stdout}");
    let jobs = summary["jobs"].as_array().unwrap();
    assert_eq!(jobs.len(), 2, "{summary}");
    let (own, posted) = (&jobs[0], &jobs[1]);
    // The run stops after cycle 4: the coordinator may or may not have opened cycle 5 on its
    // own workload yet. A job cycle without a block is run again, so the job may take more
    // than its 2 cycles (the run leaves it 4).
    assert!(
        own["state"] == "running" || own["state"] == "waiting",
        "{summary}"
    );
    assert_eq!(posted["state"], "done", "{}", explain(&output));
    assert_eq!(posted["first_cycle"], 1, "{summary}");
    assert!(posted["cycles_run"].as_u64().unwrap() >= 2, "{summary}");
    assert!(posted["last_cycle"].as_u64().unwrap() >= 2, "{summary}");
    // The fetched model is the job's newest merge, with its card next to it.
    let path = std::path::PathBuf::from(posted["model_path"].as_str().unwrap());
    let bytes = std::fs::read(&path).unwrap();
    let spec = learning::ModelSpec::Mlp {
        input: 64,
        hidden: vec![8],
        classes: 10,
    };
    let model = learning::model_from_safetensors(spec, &bytes).unwrap();
    assert_eq!(
        primitives::Hash256(learning::model_hash(&model)).to_string(),
        posted["model_hash"].as_str().unwrap()
    );
    assert!(path.with_extension("json").exists());
    assert!(stdout.contains("audit: passed"), "{stdout}");
    // One change into the job after cycle 0, and one back to the coordinator's workload when
    // the job ended before the run's last cycle (4); a job cycle without a block is run again,
    // so the job may have taken that last cycle too.
    let changes = if posted["last_cycle"].as_u64().unwrap() < 4 {
        2
    } else {
        1
    };
    assert!(
        stdout.contains(&format!("2 jobs and {changes} job changes checked")),
        "{stdout}"
    );
    assert!(
        summary["chain"]["height"].as_u64().unwrap() >= 3,
        "{summary}"
    );
}
