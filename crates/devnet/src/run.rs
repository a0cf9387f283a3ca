//! The devnet's life: chain, nodes, coordinator, miners, cycles, checks, export.

use crate::chain::{self, COORDINATOR_KEY_FILE, PARAMS_FILE};
use crate::config::{DevnetConfig, MinerRole, ModelArg, VerifierRole};
use crate::error::{io, DevnetError};
use crate::process::{free_loopback_port, Child};
use crate::summary::{
    BlockLine, ChainTip, CycleLine, JobLine, MinerLine, ModelLine, Summary, VerifierLine,
};
use bitcoin::secp256k1::{PublicKey, Secp256k1};
use coordinator::api::{CycleOutcome, CycleRecord, PhaseName};
use coordinator::client::ClientError;
use coordinator::work::WorkSetup;
use coordinator::CoordinatorClient;
use dashboard::{Dashboard, LiveSources};
use learning::{model_from_safetensors, model_hash, DatasetSource, Model};
use miner::audit::{audit, AuditReport};
use miner::published::Archive;
use miner::report::CycleReport;
use miner::{Behaviour, NodeRpc};
use node::rpc::client::ClientAuth;
use primitives::{ChainParams, Hash256};
use serde_json::Value;
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tracing::{info, warn};

/// Poll interval for the coordinator's records and the nodes' tips.
const POLL: Duration = Duration::from_millis(200);
/// Longest wait for one cycle to close, in cycle lengths: registration + training, then the
/// evaluation, block windows for a few attempts, and a coordinator restart.
const CYCLE_WAIT_CYCLES: u32 = 8;
/// Floor of the per-cycle wait, for very short cycles on a loaded machine.
const CYCLE_WAIT_MIN: Duration = Duration::from_secs(60);
/// How long the nodes get to agree on one tip once the miners stopped (a gossip hop or a
/// sync round on loopback takes milliseconds).
const AGREE_WAIT: Duration = Duration::from_secs(20);

/// Where things are in the data directory.
pub struct Layout {
    pub root: PathBuf,
}

impl Layout {
    pub fn params(&self) -> PathBuf {
        self.root.join(PARAMS_FILE)
    }
    pub fn coordinator_key(&self) -> PathBuf {
        self.root.join(COORDINATOR_KEY_FILE)
    }
    /// The `--job` owner's key: the one key the devnet's coordinator takes jobs from.
    pub fn job_owner_key(&self) -> PathBuf {
        self.root.join("job-owner.key")
    }
    pub fn node(&self, i: usize) -> PathBuf {
        self.root.join(format!("node-{i}"))
    }
    pub fn coordinator(&self) -> PathBuf {
        self.root.join("coordinator")
    }
    pub fn miner(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }
    pub fn model_dir(&self) -> PathBuf {
        self.root.join("model")
    }
    /// The coordinator's published data, saved for the offline audit.
    pub fn archive(&self) -> PathBuf {
        self.root.join("archive")
    }
    pub fn miners_file(&self) -> PathBuf {
        self.root.join("miners.json")
    }
}

/// A running node child and its RPC.
struct NodeChild {
    _child: Child,
    rpc: NodeRpc,
}

/// One miner: its role, key and report file.
pub struct MinerInfo {
    pub role: MinerRole,
    pub public_key: PublicKey,
    pub report: PathBuf,
    /// Its bond, paid by the genesis block (none for an unbonded sybil key).
    pub bond: Option<bitcoin::OutPoint>,
}

/// One verifier: its role, key, bond and report file.
pub struct VerifierInfo {
    pub role: VerifierRole,
    pub public_key: PublicKey,
    pub bond: bitcoin::OutPoint,
    pub report: PathBuf,
}

/// What the devnet found: its summary and the audit's verdict.
pub struct Outcome {
    pub summary: Summary,
    pub audit: Result<AuditReport, String>,
    /// Held-out loss and test accuracy of the initial model.
    pub initial: (f32, f32),
    pub miners: Vec<MinerLine>,
    pub data_dir: PathBuf,
}

impl Outcome {
    /// Every node on one tip and the audit passed.
    pub fn passed(&self) -> bool {
        self.summary.nodes_agree && self.audit.is_ok()
    }
}

fn os(args: &[&str]) -> Vec<OsString> {
    args.iter().map(OsString::from).collect()
}

fn unix_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The coordinator's work setup for these flags: what `trainchain coordinator --dataset
/// --model` builds, so the devnet can evaluate the global models itself.
pub fn work_setup(dataset: &str, model: &ModelArg) -> Result<WorkSetup, DevnetError> {
    let source: DatasetSource = dataset.parse()?;
    let loaded = learning::Dataset::load(&source)?;
    let spec = model.spec(loaded.samples.feature_count(), loaded.class_count)?;
    Ok(WorkSetup::new(source, spec))
}

async fn start_node(
    config: &DevnetConfig,
    layout: &Layout,
    i: usize,
    peers: &[String],
) -> Result<(NodeChild, String), DevnetError> {
    let dir = layout.node(i);
    std::fs::create_dir_all(&dir).map_err(io(&dir))?;
    let mut args = os(&["node", "--data-dir"]);
    args.push(dir.clone().into());
    args.push("--params".into());
    args.push(layout.params().into());
    args.extend(os(&[
        "--p2p-listen",
        "/ip4/127.0.0.1/tcp/0",
        "--rpc-bind",
        "127.0.0.1:0",
        "--rpc-auth",
        "none",
    ]));
    for peer in peers {
        args.push("--peer".into());
        args.push(peer.into());
    }
    let mut child = Child::spawn(
        &format!("node-{i}"),
        &config.exe,
        args,
        dir.join("node.log"),
    )?;
    let runtime: Value = child
        .wait_ready(&dir.join("node.json"), |t| serde_json::from_str(t).ok())
        .await?;
    let rpc_url = runtime["rpc_url"].as_str().unwrap_or_default().to_owned();
    let p2p = runtime["p2p_addrs"][0]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    Ok((
        NodeChild {
            _child: child,
            rpc: NodeRpc::new(&rpc_url, ClientAuth::None),
        },
        p2p,
    ))
}

fn start_coordinator(
    config: &DevnetConfig,
    layout: &Layout,
    node_rpc: &str,
    port: u16,
    job_owner: Option<PublicKey>,
) -> Result<Child, DevnetError> {
    let dir = layout.coordinator();
    std::fs::create_dir_all(&dir).map_err(io(&dir))?;
    let mut args = os(&["coordinator", "--data-dir"]);
    args.push(dir.clone().into());
    args.push("--params".into());
    args.push(layout.params().into());
    args.push("--key".into());
    args.push(layout.coordinator_key().into());
    args.extend(os(&[
        "--node-rpc",
        node_rpc,
        "--bind",
        &format!("127.0.0.1:{port}"),
        "--cycle-secs",
        &config.cycle_secs.to_string(),
        "--dataset",
        &config.dataset,
        "--model",
        &config.model.to_string(),
    ]));
    if let Some(owner) = job_owner {
        args.extend(os(&["--job-owner", &owner.to_string()]));
    }
    Child::spawn(
        "coordinator",
        &config.exe,
        args,
        dir.join("coordinator.log"),
    )
}

fn start_miner(
    config: &DevnetConfig,
    info: &MinerInfo,
    dir: &Path,
    coordinator_url: &str,
    node_rpc: &str,
) -> Result<Child, DevnetError> {
    let mut args = os(&[
        "miner",
        "--coordinator",
        coordinator_url,
        "--node-rpc",
        node_rpc,
        "--threads",
        &config.miner_threads.to_string(),
        "--behaviour",
        &info.role.behaviour.to_string(),
    ]);
    if let Some(bond) = info.bond {
        args.push("--bond".into());
        args.push(bond.to_string().into());
    }
    args.push("--key".into());
    args.push(dir.join("miner.key").into());
    args.push("--report".into());
    args.push(info.report.clone().into());
    Child::spawn(&info.role.name, &config.exe, args, dir.join("miner.log"))
}

fn start_verifier(
    config: &DevnetConfig,
    info: &VerifierInfo,
    dir: &Path,
    coordinator_url: &str,
) -> Result<Child, DevnetError> {
    let mut args = os(&[
        "verifier",
        "--coordinator",
        coordinator_url,
        "--threads",
        &config.miner_threads.to_string(),
        "--bond",
        &info.bond.to_string(),
    ]);
    if info.role.lazy {
        args.push("--lazy".into());
    }
    args.push("--key".into());
    args.push(dir.join("verifier.key").into());
    args.push("--report".into());
    args.push(info.report.clone().into());
    Child::spawn(&info.role.name, &config.exe, args, dir.join("verifier.log"))
}

/// Waits until the coordinator answers.
async fn wait_coordinator(
    client: &CoordinatorClient,
    child: &mut Child,
) -> Result<(), DevnetError> {
    let deadline = Instant::now() + crate::process::READY_WAIT;
    loop {
        if client.health().await.is_ok() {
            return Ok(());
        }
        child.check_alive()?;
        if Instant::now() >= deadline {
            return Err(DevnetError::NotReady {
                role: "coordinator".into(),
                secs: crate::process::READY_WAIT.as_secs(),
                log: child.log.clone(),
            });
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Runs `trainchain ARGS` to its end as a user would, and returns its standard output.
async fn run_client(config: &DevnetConfig, args: Vec<String>) -> Result<String, DevnetError> {
    let exe = config.exe.clone();
    let command = args.join(" ");
    let output = tokio::process::Command::new(&exe)
        .args(&args)
        .output()
        .await
        .map_err(|error| DevnetError::Spawn {
            role: command.clone(),
            error,
        })?;
    if !output.status.success() {
        return Err(DevnetError::Command {
            command,
            status: output.status.to_string(),
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        });
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Posts the `--job` on the devnet's dataset with `trainchain job submit`, signed by a new
/// owner key in the data directory.
async fn post_job(
    config: &DevnetConfig,
    layout: &Layout,
    coordinator_url: &str,
    model: &ModelArg,
) -> Result<(), DevnetError> {
    let key = layout.job_owner_key();
    let mut args: Vec<String> = [
        "job",
        "submit",
        "--coordinator",
        coordinator_url,
        "--name",
        "devnet job",
        "--model",
        &model.to_string(),
        "--cycles",
        &config.job_cycles.to_string(),
        "--model-seed",
        "2",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    args.extend(["--key".to_owned(), key.display().to_string()]);
    match config.dataset.split_once(':') {
        Some(("csv", file)) => args.extend([
            "--train".into(),
            file.into(),
            "--format".into(),
            "csv".into(),
        ]),
        Some(("text", file)) => args.extend([
            "--train".into(),
            file.into(),
            "--format".into(),
            "text".into(),
        ]),
        _ => args.extend(["--dataset".into(), config.dataset.clone()]),
    }
    let answer = run_client(config, args).await?;
    let status: coordinator::api::JobStatus =
        serde_json::from_str(&answer).map_err(|e| DevnetError::Command {
            command: "job submit".into(),
            status: "answer does not parse".into(),
            stderr: e.to_string(),
        })?;
    println!(
        "job posted: {} ({model} on {}, {} cycles)",
        status.id, config.dataset, config.job_cycles
    );
    Ok(())
}

/// Every job at the end of the run; each posted job's model fetched into `model_dir` with
/// `trainchain job fetch`.
async fn job_lines(
    config: &DevnetConfig,
    client: &CoordinatorClient,
    coordinator_url: &str,
    model_dir: &Path,
) -> Result<Vec<JobLine>, DevnetError> {
    let mut lines = Vec::new();
    for job in client.jobs().await? {
        let mut model_path = None;
        if job.terms.owner.is_some() && job.model_hash.is_some() {
            let id = job.id.to_string();
            run_client(
                config,
                vec![
                    "job".into(),
                    "fetch".into(),
                    "--coordinator".into(),
                    coordinator_url.into(),
                    "--out".into(),
                    model_dir.display().to_string(),
                    id.clone(),
                ],
            )
            .await?;
            model_path = Some(
                model_dir
                    .join(format!("job-{}.safetensors", &id[..16]))
                    .display()
                    .to_string(),
            );
        }
        lines.push(JobLine {
            id: job.id.to_string(),
            name: job.terms.name.clone(),
            state: format!("{:?}", job.state).to_lowercase(),
            cycles_run: job.cycles_run,
            first_cycle: job.first_cycle,
            last_cycle: job.last_cycle,
            model_hash: job.model_hash.map(|h| h.to_string()),
            held_out_loss: job.held_out_loss,
            model_path,
        });
    }
    Ok(lines)
}

/// Polls until `cycle` closed; restarts the coordinator in its training phase if asked.
async fn wait_cycle(
    config: &DevnetConfig,
    client: &CoordinatorClient,
    coordinator: &mut Child,
    cycle: u64,
) -> Result<CycleRecord, DevnetError> {
    let limit = (Duration::from_secs(config.cycle_secs) * CYCLE_WAIT_CYCLES).max(CYCLE_WAIT_MIN);
    let deadline = Instant::now() + limit;
    let mut restart_pending = config.restart_coordinator_in_cycle == Some(cycle);
    loop {
        coordinator.check_alive()?;
        if restart_pending {
            if let Ok(status) = client.status().await {
                if status.announcement.announcement.cycle == cycle
                    && status.phase == PhaseName::Training
                {
                    println!("cycle {cycle}: killing the coordinator (SIGKILL) mid-training and restarting it");
                    coordinator.restart()?;
                    wait_coordinator(client, coordinator).await?;
                    println!("cycle {cycle}: coordinator back");
                    restart_pending = false;
                }
            }
        }
        match client.record(cycle).await {
            Ok(record) if record.outcome.is_some() => return Ok(record),
            Ok(_) => {}
            Err(ClientError::Transport(_)) | Err(ClientError::Api { .. }) => {}
            Err(e) => return Err(e.into()),
        }
        if Instant::now() >= deadline {
            return Err(DevnetError::Timeout {
                what: format!("cycle {cycle} to close"),
                secs: limit.as_secs(),
            });
        }
        tokio::time::sleep(POLL).await;
    }
}

/// The global model the coordinator publishes for `cycle`, checked against `expected`.
async fn global_model(
    client: &CoordinatorClient,
    setup: &WorkSetup,
    cycle: u64,
    expected: Option<Hash256>,
) -> Result<Model, DevnetError> {
    let bytes = client.weights(cycle).await?;
    let model = model_from_safetensors(setup.model.clone(), &bytes)?;
    let found = Hash256(model_hash(&model));
    if let Some(expected) = expected.filter(|e| *e != found) {
        return Err(DevnetError::ModelHashMismatch {
            cycle,
            expected: expected.to_string(),
            found: found.to_string(),
        });
    }
    Ok(model)
}

fn name_of(miners: &[MinerInfo], key: &PublicKey) -> String {
    miners
        .iter()
        .find(|m| m.public_key == *key)
        .map(|m| format!("{} ({})", m.role.name, m.role.behaviour))
        .unwrap_or_else(|| format!("unknown miner {key}"))
}

/// Runs the devnet to its end. Children are killed when this returns (or panics).
pub async fn run(config: DevnetConfig) -> Result<Outcome, DevnetError> {
    run_network(config).await.map(|(outcome, _network)| outcome)
}

/// What is still running after the summary: the nodes, the (stopped) coordinator and the
/// dashboard. Everything stops when this is dropped.
pub struct Network {
    _nodes: Vec<NodeChild>,
    coordinator: Child,
    client: CoordinatorClient,
    dashboard: Dashboard,
}

impl Network {
    /// Keeps the network up for inspection until Ctrl-C: the coordinator (stopped for the
    /// audit) is started again on its store and keeps opening cycles; the miners stay stopped,
    /// so the chain stays the one the summary describes. The dashboard shows it all.
    pub async fn linger(mut self) -> Result<(), DevnetError> {
        // Catch Ctrl-C from here on, so it stops the children instead of orphaning them.
        let interrupted = tokio::signal::ctrl_c();
        tokio::pin!(interrupted);
        self.coordinator.restart()?;
        tokio::select! {
            ready = wait_coordinator(&self.client, &mut self.coordinator) => ready?,
            _ = &mut interrupted => return Ok(()),
        }
        println!(
            "lingering: the nodes, the coordinator (restarted; no miners, so no new blocks) and the dashboard {} stay up; Ctrl-C to stop",
            self.dashboard.url
        );
        interrupted.await.map_err(io("ctrl-c"))?;
        println!("stopping the devnet");
        Ok(())
    }
}

/// [`run`], returning what still runs with the outcome (see [`Network::linger`]).
pub async fn run_network(config: DevnetConfig) -> Result<(Outcome, Network), DevnetError> {
    config.check()?;
    let layout = Layout {
        root: config.data_dir.clone(),
    };
    // The miners' keys come first: the genesis block pays each of them a bond.
    let secp = Secp256k1::new();
    let mut miner_keys = Vec::new();
    for role in config.miner_roles() {
        let dir = layout.miner(&role.name);
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        let key = wallet::key_file::create(
            &dir.join("miner.key"),
            &mut bitcoin::secp256k1::rand::thread_rng(),
        )?;
        miner_keys.push((role, key.public_key(&secp)));
    }
    let mut verifier_keys = Vec::new();
    for role in config.verifier_roles() {
        let dir = layout.miner(&role.name);
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        let key = wallet::key_file::create(
            &dir.join("verifier.key"),
            &mut bitcoin::secp256k1::rand::thread_rng(),
        )?;
        verifier_keys.push((role, key.public_key(&secp)));
    }
    // Miners' bonds first, then one per verifier.
    let bonded_keys: Vec<PublicKey> = miner_keys
        .iter()
        .filter(|(role, _)| role.bonded)
        .map(|(_, k)| *k)
        .chain(verifier_keys.iter().map(|(_, k)| *k))
        .collect();
    let (params, bonded_outpoints): (ChainParams, Vec<bitcoin::OutPoint>) = chain::create_bonded(
        &layout.root,
        config.cycle_secs,
        u32::try_from(unix_secs()).unwrap_or(u32::MAX),
        &bonded_keys,
    )?;
    let mut bonded_outpoints = bonded_outpoints.into_iter();
    let bonds: Vec<Option<bitcoin::OutPoint>> = miner_keys
        .iter()
        .map(|(role, _)| role.bonded.then(|| bonded_outpoints.next()).flatten())
        .collect();
    let verifiers: Vec<VerifierInfo> = verifier_keys
        .into_iter()
        .zip(bonded_outpoints)
        .map(|((role, public_key), bond)| VerifierInfo {
            report: layout.miner(&role.name).join("verifier.jsonl"),
            role,
            public_key,
            bond,
        })
        .collect();
    let setup = work_setup(&config.dataset, &config.model)?;
    println!(
        "devnet in {}: {} nodes, {} miners ({} lazy, {} noise, {} cheating, {} sybil keys {}), {} verifiers ({} lazy), {} cycles of {} s, {} on {}",
        layout.root.display(),
        config.nodes,
        config.miners,
        config.lazy_miners,
        config.noise_miners,
        config.cheat_miners,
        config.sybil_miners,
        if config.sybil_bonds { "with a bond each" } else { "without bonds" },
        config.verifiers + config.lazy_verifiers,
        config.lazy_verifiers,
        config.cycles,
        config.cycle_secs,
        config.model,
        config.dataset
    );

    // Nodes: each dials every earlier one.
    let mut nodes: Vec<NodeChild> = Vec::new();
    let mut p2p_addrs: Vec<String> = Vec::new();
    for i in 0..config.nodes {
        let (node, addr) = start_node(&config, &layout, i, &p2p_addrs).await?;
        nodes.push(node);
        p2p_addrs.push(addr);
    }
    wait_linked(&nodes, &p2p_addrs, &layout).await?;

    // Miners start before the coordinator, polling its fixed URL, so none misses cycle 0.
    let port = free_loopback_port()?;
    let coordinator_url = format!("http://127.0.0.1:{port}");
    let mut miners = Vec::new();
    let mut miner_children = Vec::new();
    for ((role, public_key), bond) in miner_keys.into_iter().zip(bonds) {
        let dir = layout.miner(&role.name);
        let info = MinerInfo {
            public_key,
            report: dir.join("report.jsonl"),
            role,
            bond,
        };
        let node_url = nodes[info.role.node].rpc.url().to_owned();
        miner_children.push(start_miner(
            &config,
            &info,
            &dir,
            &coordinator_url,
            &node_url,
        )?);
        miners.push(info);
    }
    let mut verifier_children = Vec::new();
    for v in &verifiers {
        let dir = layout.miner(&v.role.name);
        verifier_children.push(start_verifier(&config, v, &dir, &coordinator_url)?);
    }
    let roster: Vec<Value> = miners
        .iter()
        .map(|m| {
            serde_json::json!({
                "name": m.role.name, "behaviour": m.role.behaviour,
                "public_key": m.public_key.to_string(), "node": m.role.node,
                "bond": m.bond.map(|b| b.to_string()),
                "sybil": m.role.sybil,
            })
        })
        .collect();
    let roster_path = layout.miners_file();
    std::fs::write(
        &roster_path,
        serde_json::to_vec_pretty(&roster).unwrap_or_default(),
    )
    .map_err(io(&roster_path))?;

    // The dashboard reads the coordinator's API and node 0's RPC like any outside viewer; its
    // poller shows the coordinator as unreachable until the coordinator starts.
    let dashboard = start_dashboard(&coordinator_url, nodes[0].rpc.url(), &miners).await?;
    println!("dashboard: {}", dashboard.url);

    // The job's owner is the one key the coordinator takes jobs from.
    let job_owner = match config.job {
        Some(_) => Some(
            wallet::key_file::create(
                &layout.job_owner_key(),
                &mut bitcoin::secp256k1::rand::thread_rng(),
            )?
            .public_key(&secp),
        ),
        None => None,
    };
    let mut coordinator = start_coordinator(&config, &layout, nodes[0].rpc.url(), port, job_owner)?;
    let client = CoordinatorClient::new(&coordinator_url)?;
    wait_coordinator(&client, &mut coordinator).await?;

    // The held-out pool and the test set are the coordinator's secret: quality comes from its
    // records (the held-out loss is recomputable from each revealed batch) and model card.
    let initial_model = global_model(&client, &setup, 0, None).await?;
    let initial_accuracy = client.model_card().await?.test_accuracy;
    println!(
        "initial model: {} parameters, test accuracy {:.1}%",
        initial_model.param_count(),
        100.0 * initial_accuracy
    );
    let mut initial = (f32::NAN, initial_accuracy);
    let sample_before = language_sample(&initial_model);
    if let Some(model) = &config.job {
        post_job(&config, &layout, &coordinator_url, model).await?;
    }

    let mut cycles = Vec::new();
    let mut records = Vec::new();
    // Per miner key: (verified, failed, unanswered, failure reasons).
    let mut checks: BTreeMap<String, (usize, usize, usize, Vec<String>)> = BTreeMap::new();
    for cycle in 0..config.cycles {
        let record = wait_cycle(&config, &client, &mut coordinator, cycle).await?;
        if cycle == 0 {
            initial.0 = record.global_loss_units.unwrap_or(0) as f32 / 1e6;
        }
        let quality = record
            .next_quality
            .unwrap_or(coordinator::api::QualityReport {
                held_out_loss_units: record.global_loss_units.unwrap_or(0),
                test_accuracy_ppm: 0,
            });
        let held_out_loss = quality.held_out_loss_units as f32 / 1e6;
        let test_accuracy = quality.test_accuracy_ppm as f32 / 1e6;
        let entries: Vec<_> = record.submissions.iter().filter(|s| s.score > 0).collect();
        let total: u128 = entries.iter().map(|s| u128::from(s.score)).sum();
        let (winner, produced) = match &record.outcome {
            Some(CycleOutcome::Produced {
                height,
                hash,
                attempt,
                miner,
            }) => {
                let score = entries
                    .iter()
                    .find(|s| s.miner == *miner)
                    .map_or(0, |s| u128::from(s.score));
                let odds = if total > 0 {
                    score as f64 / total as f64
                } else {
                    0.0
                };
                (
                    Some(*miner),
                    format!(
                        "winner {} odds {:.1}% (attempt {attempt}), block {height} {hash}",
                        name_of(&miners, miner),
                        100.0 * odds
                    ),
                )
            }
            // The same words as the dashboard's cycle pages.
            _ => (
                None,
                dashboard::view::outcome_text(&record)
                    .unwrap_or_else(|| "no block: the cycle did not close".to_owned()),
            ),
        };
        let tally = miner::audit::CycleVerification::of(&record);
        if config.job.is_some() {
            let job = record.announcement.announcement.job.to_string();
            let end = if record.merged_model_hash.is_some() {
                ", its last cycle before the next job"
            } else {
                ""
            };
            println!("cycle {cycle}: trains job {}{end}", &job[..16]);
        }
        println!(
            "cycle {cycle}: {} entries of {} submissions (checks: {} verified, {} failed, {} unanswered), {produced}, held-out loss {held_out_loss:.4}, test accuracy {:.1}%",
            entries.len(),
            record.submissions.len(),
            tally.verified,
            tally.failed,
            tally.unanswered,
            100.0 * test_accuracy
        );
        for s in &record.submissions {
            let entry = checks.entry(s.miner.to_string()).or_default();
            match &s.verification {
                proof::Verdict::Verified { .. } => entry.0 += 1,
                proof::Verdict::Failed { failure } => {
                    entry.1 += 1;
                    entry.3.push(failure.to_string());
                    println!("  caught: {}: {failure}", name_of(&miners, &s.miner));
                }
                proof::Verdict::Unanswered => entry.2 += 1,
            }
        }
        let v = &record.verification;
        if !v.verifiers.is_empty() {
            let count = |o| v.verdicts_with(o);
            println!(
                "  verifiers: {} enrolled, {} assignments ({} flags, {} audits), claims {} trusted / {} confirmed / {} caught a cheat / {} wrong; coordinator replayed {} of {} challenged steps",
                v.verifiers.len(),
                v.assignments.len(),
                v.assignments.iter().filter(|x| x.flagged).count(),
                v.assignments.iter().filter(|x| x.audited).count(),
                count(coordinator::api::ClaimOutcome::Trusted),
                count(coordinator::api::ClaimOutcome::Confirmed),
                count(coordinator::api::ClaimOutcome::CaughtCheat),
                count(coordinator::api::ClaimOutcome::Wrong),
                v.coordinator_replayed_steps,
                v.challenged_steps,
            );
        }
        records.push(record.clone());
        cycles.push(CycleLine {
            cycle,
            entries: entries.len(),
            winner: winner.map(|w| w.to_string()),
            seed: record.lottery_seed.map(|s| s.to_string()),
            held_out_loss,
            test_accuracy,
            verified: tally.verified,
            failed: tally.failed,
            unanswered: tally.unanswered,
        });
    }

    // Stop the miners so the chain stops growing, then compare tips and audit.
    drop(miner_children);
    drop(verifier_children);
    let (tips, nodes_agree) = agree(&nodes).await;
    let node0 = &nodes[0].rpc;
    let (best_hash, height) = node0.tip().await?;
    let mut blocks = Vec::new();
    for h in 1..=height {
        let hash = node0.block_hash(h).await?;
        let body = node0.block(&hash).await?.header.certificate.body;
        blocks.push(BlockLine {
            height: h,
            hash: hash.to_string(),
            cycle: body.cycle,
            attempt: body.attempt,
            winner: body.miner.to_string(),
        });
    }
    if !nodes_agree {
        warn!(?tips, "nodes disagree on the tip");
    }

    // Export the newest global model with its card into the data directory.
    let model_dir = layout.model_dir();
    std::fs::create_dir_all(&model_dir).map_err(io(&model_dir))?;
    let weights = client.model().await?;
    let card = client.model_card().await?;
    let weights_path = model_dir.join("global.safetensors");
    std::fs::write(&weights_path, &weights).map_err(io(&weights_path))?;
    let card_path = model_dir.join("global.json");
    std::fs::write(
        &card_path,
        serde_json::to_vec_pretty(&card).unwrap_or_default(),
    )
    .map_err(io(&card_path))?;
    // The newest model may be a posted job's (its own spec): the card says which.
    let exported = model_from_safetensors(card.spec.clone(), &weights)?;
    let jobs = job_lines(&config, &client, &coordinator_url, &model_dir).await?;
    let model = ModelLine {
        path: weights_path.display().to_string(),
        test_accuracy: card.test_accuracy,
        parameters: exported.param_count(),
        sample_before,
        sample_after: language_sample(&exported),
    };

    // The audit works from an archive of what the coordinator published, with the coordinator
    // stopped: nobody has to take its word, or need it to stay up, to recompute every score
    // and merge. The miners' receipts catch a record that left out a receipted update.
    let archive_dir = layout.archive();
    let archive = Archive::save(&client, &archive_dir).await;
    coordinator.kill();
    let mut receipts = Vec::new();
    for m in &miners {
        let reports = miner::report::read_all(&m.report).map_err(io(&m.report))?;
        receipts.extend(reports.into_iter().filter_map(|r| r.receipt));
    }
    let audit = match archive {
        Ok((archive, stats)) => {
            info!(?stats, dir = %archive_dir.display(), "published data archived");
            audit(node0, &archive, &params, &receipts).await
        }
        Err(error) => Err(error),
    }
    .map_err(|e| e.to_string());

    let mut per_miner = Vec::new();
    let mut honest = miner::cpu::CpuAccount::default();
    let (mut honest_trained_secs, mut honest_window_secs) = (0.0, 0.0);
    for m in &miners {
        let reports: Vec<CycleReport> = miner::report::read_all(&m.report)
            .map_err(io(&m.report))?
            .into_iter()
            .filter(|r| r.cycle < config.cycles)
            .collect();
        let mut account = miner::cpu::CpuAccount::default();
        let (mut trained_secs, mut window_secs, mut trained_samples) = (0.0, 0.0, 0u64);
        for r in &reports {
            account.add(&r.cpu);
            trained_secs += r.training_wall_secs;
            window_secs += r.training_window_secs;
            trained_samples =
                trained_samples.saturating_add(r.steps.saturating_mul(setup.hints.batch as u64));
        }
        let samples_per_sec = ratio(trained_samples as f64, trained_secs);
        if m.role.behaviour == Behaviour::Honest && !m.role.sybil {
            honest_trained_secs += trained_secs;
            honest_window_secs += window_secs;
            honest.add(&account);
        }
        let won = blocks
            .iter()
            .filter(|b| b.winner == m.public_key.to_string())
            .count();
        let (verified, failed, unanswered, failures) = checks
            .get(&m.public_key.to_string())
            .cloned()
            .unwrap_or_default();
        // Core's gettxout sees the mempool by default: a slash not yet mined counts as lost.
        let bond_kept = match m.bond {
            Some(bond) => !node0
                .call(
                    "gettxout",
                    vec![bond.txid.to_string().into(), bond.vout.into()],
                )
                .await?
                .is_null(),
            None => false,
        };
        let missed: Vec<&str> = reports
            .iter()
            .filter(|r| r.receipt.is_none())
            .filter_map(|r| r.error.as_deref())
            .collect();
        per_miner.push(MinerLine {
            bond: m.bond.map(|b| b.to_string()).unwrap_or_default(),
            bond_kept,
            sybil: m.role.sybil,
            cycles_without_work: missed.len(),
            missed_reason: missed.first().map(|why| (*why).to_owned()),
            name: m.role.name.clone(),
            behaviour: m.role.behaviour.to_string(),
            blocks: won,
            useful_work_fraction: account.useful_work_fraction(),
            window_utilisation: ratio(trained_secs, window_secs),
            samples_per_sec,
            tokens_per_sec: tokens_per_sample(&setup.model).map(|t| samples_per_sec * t as f64),
            verified,
            failed,
            unanswered,
            failures,
        });
    }
    let mut per_verifier = Vec::new();
    for v in &verifiers {
        per_verifier.push(verifier_line(v, &records, &params, node0).await?);
    }
    let (replayed_steps, challenged_steps) = records.iter().fold((0, 0), |(r, c), record| {
        let v = &record.verification;
        (r + v.coordinator_replayed_steps, c + v.challenged_steps)
    });
    let summary = Summary {
        chain: ChainTip {
            height,
            best_hash: best_hash.to_string(),
        },
        blocks,
        cycles,
        model,
        miners: per_miner.clone(),
        verifiers: per_verifier,
        replayed_steps,
        challenged_steps,
        useful_work_fraction: honest.useful_work_fraction(),
        window_utilisation: ratio(honest_trained_secs, honest_window_secs),
        jobs,
        nodes_agree,
    };
    if let Some(path) = &config.json {
        let text = serde_json::to_vec_pretty(&summary).map_err(|error| DevnetError::Json {
            path: path.clone(),
            error,
        })?;
        std::fs::write(path, text).map_err(io(path))?;
    }
    let outcome = Outcome {
        summary,
        audit,
        initial,
        miners: per_miner,
        data_dir: layout.root.clone(),
    };
    let network = Network {
        _nodes: nodes,
        coordinator,
        client,
        dashboard,
    };
    Ok((outcome, network))
}

/// Whether `outpoint` is still unspent at node 0 (Core's `gettxout` sees the mempool by
/// default: a slash not yet mined counts as spent).
async fn unspent(node0: &NodeRpc, outpoint: &bitcoin::OutPoint) -> Result<bool, DevnetError> {
    Ok(!node0
        .call(
            "gettxout",
            vec![outpoint.txid.to_string().into(), outpoint.vout.into()],
        )
        .await?
        .is_null())
}

/// A verifier's line, from every cycle record's `verification`.
async fn verifier_line(
    v: &VerifierInfo,
    records: &[CycleRecord],
    params: &ChainParams,
    node0: &NodeRpc,
) -> Result<VerifierLine, DevnetError> {
    use coordinator::api::ClaimOutcome;
    let terms = consensus::bond::BondTerms::from_params(params);
    let mut line = VerifierLine {
        name: v.role.name.clone(),
        lazy: v.role.lazy,
        public_key: v.public_key.to_string(),
        bond: v.bond.to_string(),
        bond_kept: unspent(node0, &v.bond).await?,
        ..VerifierLine::default()
    };
    for record in records {
        let ver = &record.verification;
        if ver.verifiers.iter().any(|e| e.verifier == v.public_key) {
            line.cycles_enrolled += 1;
        }
        line.assignments += ver
            .assignments
            .iter()
            .filter(|x| x.verifier == v.public_key)
            .count();
        for x in ver.verdicts.iter().filter(|x| x.verifier == v.public_key) {
            match x.outcome {
                ClaimOutcome::Trusted => line.trusted += 1,
                ClaimOutcome::Confirmed => line.confirmed += 1,
                ClaimOutcome::CaughtCheat => line.caught_cheats += 1,
                ClaimOutcome::Wrong => line.wrong += 1,
                ClaimOutcome::Void => line.void += 1,
            }
        }
        for slash in &record.slashes {
            if slash
                .finder
                .as_ref()
                .is_some_and(|f| f.verifier == v.public_key)
            {
                // The share `consensus::bond::slash_outputs` pays of a minimum bond.
                let slashed = terms
                    .bond_min
                    .checked_sub(coordinator::slash::SLASH_FEE)
                    .unwrap_or_default();
                line.finder_sats += slashed.to_sat() * u64::from(terms.finder_share_percent) / 100;
            }
        }
    }
    Ok(line)
}

/// The dashboard on a free loopback port, with the miners' names and report files.
async fn start_dashboard(
    coordinator_url: &str,
    node_rpc: &str,
    miners: &[MinerInfo],
) -> Result<Dashboard, DevnetError> {
    let sources = LiveSources::new(coordinator_url, node_rpc, ClientAuth::None)
        .map_err(|e| DevnetError::Config(format!("dashboard: {e}")))?;
    let options = dashboard::Options {
        bind: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        coordinator_url: coordinator_url.to_owned(),
        miner_reports: miners.iter().map(|m| m.report.clone()).collect(),
        labels: miners
            .iter()
            .map(|m| {
                (
                    m.public_key.to_string(),
                    format!("{} ({})", m.role.name, m.role.behaviour),
                )
            })
            .collect(),
    };
    Dashboard::start(sources, options)
        .await
        .map_err(io("dashboard on 127.0.0.1:0"))
}

/// Most time the nodes get to connect to each other before any block exists.
const LINK_WAIT: Duration = Duration::from_secs(20);

/// How long a node may go without a peer before the devnet asks it to dial the first node
/// again (`addnode`): a dial that failed while the machine was loaded is retried at once.
const REDIAL_AFTER: Duration = Duration::from_secs(2);

/// Waits until every node has a peer (when there is more than one node), so that cycle 0's
/// block reaches the coordinator's node inside its window rather than racing the first dial.
async fn wait_linked(
    nodes: &[NodeChild],
    p2p_addrs: &[String],
    layout: &Layout,
) -> Result<(), DevnetError> {
    if nodes.len() < 2 {
        return Ok(());
    }
    let deadline = Instant::now() + LINK_WAIT;
    // Node 0 is linked once a later node dialed it; check the dialing ones first.
    for (i, node) in nodes.iter().enumerate().rev() {
        let mut redial_at = Instant::now() + REDIAL_AFTER;
        loop {
            let peers = node
                .rpc
                .call("getpeerinfo", vec![])
                .await
                .ok()
                .and_then(|v| v.as_array().map(Vec::len))
                .unwrap_or(0);
            if peers > 0 {
                break;
            }
            if i > 0 && Instant::now() >= redial_at {
                warn!(node = i, "no peer yet; dialing node 0 again");
                let _ = node
                    .rpc
                    .call("addnode", vec![Value::from(p2p_addrs[0].clone())])
                    .await;
                redial_at = Instant::now() + REDIAL_AFTER;
            }
            if Instant::now() >= deadline {
                return Err(DevnetError::NotLinked {
                    node: i,
                    secs: LINK_WAIT.as_secs(),
                    dialer_log: log_tail(&layout.node(i).join("node.log")),
                    listener_log: log_tail(&layout.node(0).join("node.log")),
                });
            }
            tokio::time::sleep(POLL).await;
        }
    }
    Ok(())
}

/// Lines of a log quoted in an error.
const LOG_TAIL_LINES: usize = 30;

/// The last [`LOG_TAIL_LINES`] lines of a log file (empty if it cannot be read).
fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n")
}

/// Polls every node's best block hash until they are equal (or [`AGREE_WAIT`] passed).
async fn agree(nodes: &[NodeChild]) -> (BTreeMap<usize, String>, bool) {
    let deadline = Instant::now() + AGREE_WAIT;
    loop {
        let mut tips = BTreeMap::new();
        for (i, node) in nodes.iter().enumerate() {
            let tip = node
                .rpc
                .best_block_hash()
                .await
                .map(|h| h.to_string())
                .unwrap_or_else(|e| format!("error: {e}"));
            tips.insert(i, tip);
        }
        let first = tips.values().next().cloned();
        let same = tips.values().all(|t| Some(t) == first.as_ref())
            && first.as_ref().is_some_and(|t| !t.starts_with("error"));
        if same || Instant::now() >= deadline {
            return (tips, same);
        }
        tokio::time::sleep(POLL).await;
    }
}

/// `part / whole`, 0 when there is no whole.
fn ratio(part: f64, whole: f64) -> f64 {
    if whole > 0.0 {
        part / whole
    } else {
        0.0
    }
}

/// The prompt, length and seed of the text a language model writes before and after the run:
/// the same for both, so the difference is the training.
const SAMPLE_PROMPT: &[u8] = b"a ";
const SAMPLE_BYTES: usize = 80;
const SAMPLE_SEED: u64 = 7;

/// What a byte-level language model writes from [`SAMPLE_PROMPT`]; `None` for other models.
fn language_sample(model: &Model) -> Option<String> {
    let bytes = learning::sample_text(model, SAMPLE_PROMPT, SAMPLE_BYTES, SAMPLE_SEED).ok()?;
    let mut text = String::from_utf8_lossy(SAMPLE_PROMPT).into_owned();
    text.push_str(&String::from_utf8_lossy(&bytes));
    Some(text)
}

/// Tokens each training sample holds: a language model's context; `None` for other models.
fn tokens_per_sample(model: &learning::ModelSpec) -> Option<usize> {
    match model {
        learning::ModelSpec::Transformer { context, .. } => Some(*context),
        _ => None,
    }
}

/// A held-out loss in nats per byte as bits per byte.
fn bits(nats: f32) -> f64 {
    f64::from(nats) / std::f64::consts::LN_2
}

/// The end-of-run text.
pub fn render(outcome: &Outcome) -> String {
    let s = &outcome.summary;
    let mut out = String::new();
    let last = s.cycles.last();
    out.push_str(&format!(
        "\nsummary\n  chain: height {}, tip {}, nodes agree: {}\n",
        s.chain.height,
        s.chain.best_hash,
        if s.nodes_agree { "yes" } else { "NO" }
    ));
    for m in &outcome.miners {
        out.push_str(&format!(
            "  {} ({}): {} block(s), useful work {:.1}%, trained {:.1}% of the windows, checks {} verified / {} failed / {} unanswered, bond {}\n",
            m.name,
            m.behaviour,
            m.blocks,
            100.0 * m.useful_work_fraction,
            100.0 * m.window_utilisation,
            m.verified,
            m.failed,
            m.unanswered,
            match (m.bond.is_empty(), m.bond_kept) {
                (true, _) => "none",
                (false, true) => "kept",
                (false, false) => "LOST (slashed)",
            }
        ));
        match m.tokens_per_sec {
            Some(tokens) => out.push_str(&format!(
                "    training speed: {tokens:.0} tokens/s ({:.0} samples/s)\n",
                m.samples_per_sec
            )),
            None if m.samples_per_sec > 0.0 => out.push_str(&format!(
                "    training speed: {:.0} samples/s\n",
                m.samples_per_sec
            )),
            None => {}
        }
        if m.cycles_without_work > 0 {
            out.push_str(&format!(
                "    {} cycle(s) with no receipted work{}\n",
                m.cycles_without_work,
                m.missed_reason
                    .as_deref()
                    .map(|why| format!(", e.g. {why}"))
                    .unwrap_or_default()
            ));
        }
        if let Some(reason) = m.failures.first() {
            out.push_str(&format!("    caught: {reason}\n"));
        }
    }
    out.push_str(&format!(
        "  global model: held-out loss {:.4} -> {:.4}, test accuracy {:.1}% -> {:.1}%\n",
        outcome.initial.0,
        last.map_or(outcome.initial.0, |c| c.held_out_loss),
        100.0 * outcome.initial.1,
        100.0 * last.map_or(outcome.initial.1, |c| c.test_accuracy)
    ));
    if let (Some(before), Some(after)) = (&s.model.sample_before, &s.model.sample_after) {
        out.push_str(&format!(
            "  language model: {:.2} -> {:.2} bits per byte on the held-out batches (test accuracy is next-byte)\n",
            bits(outcome.initial.0),
            bits(last.map_or(outcome.initial.0, |c| c.held_out_loss)),
        ));
        out.push_str(&format!("    text before training: {before:?}\n"));
        out.push_str(&format!("    text after training:  {after:?}\n"));
    }
    out.push_str(&format!(
        "  exported: {} ({} parameters, test accuracy {:.1}%) with its card global.json\n",
        s.model.path,
        s.model.parameters,
        100.0 * s.model.test_accuracy
    ));
    out.push_str(&format!(
        "  useful-work fraction (honest miners' CPU in training): {:.1}%; window utilisation (their training wall time over the training windows): {:.1}%\n",
        100.0 * s.useful_work_fraction,
        100.0 * s.window_utilisation
    ));
    for v in &s.verifiers {
        out.push_str(&format!(
            "  {} ({}): {} cycle(s), {} assignments, claims {} trusted / {} confirmed / {} caught a cheat / {} wrong, earned {} sat in finder shares, bond {}\n",
            v.name,
            if v.lazy { "lazy" } else { "honest" },
            v.cycles_enrolled,
            v.assignments,
            v.trusted,
            v.confirmed,
            v.caught_cheats,
            v.wrong,
            v.finder_sats,
            if v.bond_kept { "kept" } else { "LOST (slashed)" }
        ));
    }
    if s.jobs.len() > 1 {
        for j in &s.jobs {
            let span = match (j.first_cycle, j.last_cycle) {
                (Some(a), Some(b)) => format!("cycles {a}-{b}"),
                _ => "no cycle".to_owned(),
            };
            out.push_str(&format!(
                "  job {} {:?}: {}, {} cycle(s) run ({span}), held-out loss {}{}\n",
                &j.id[..16],
                j.name,
                j.state,
                j.cycles_run,
                j.held_out_loss
                    .map_or_else(|| "-".to_owned(), |l| format!("{l:.4}")),
                j.model_path
                    .as_ref()
                    .map_or_else(String::new, |p| format!(", model fetched to {p}")),
            ));
        }
    }
    if s.challenged_steps > 0 {
        out.push_str(&format!(
            "  replay: the coordinator replayed {} of {} challenged steps itself ({:.1}%)\n",
            s.replayed_steps,
            s.challenged_steps,
            100.0 * ratio(s.replayed_steps as f64, s.challenged_steps as f64)
        ));
    }
    match &outcome.audit {
        Ok(a) => out.push_str(&format!(
            "  audit: passed, from {} with the coordinator stopped ({} blocks, {} cycle records, {} lotteries recomputed, {} cycles re-measured from published data, {} fraud evidence and {} verifier claims rechecked by replay, {} miner receipts found in their records, {} jobs and {} job changes checked)\n",
            outcome.data_dir.join("archive").display(), a.blocks_checked, a.cycles_checked, a.lotteries_recomputed, a.cycles_remeasured, a.evidence_rechecked, a.claims_rechecked, a.receipts_checked, a.jobs_checked, a.job_changes_checked
        )),
        Err(e) => out.push_str(&format!("  audit: FAILED: {e}\n")),
    }
    out
}
