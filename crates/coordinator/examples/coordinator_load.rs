//! Load benchmark of the coordinator's HTTP resource limits: a real coordinator in a child
//! process on 127.0.0.1, then
//!
//! 1. 24 uploads declaring `Content-Length: 52428800` (the attack): time to the 413;
//! 2. 200 concurrent maximum-size uploads (each attacker's own segment limit, all-zero
//!    signature), repeated for [`PHASE`];
//! 3. 200 slow-body uploads (headers, then one byte every 500 ms) held for [`PHASE`], then
//!    closed;
//!
//! sampling the child's RSS (`/proc/PID/status`) every 50 ms and `GET /health` every 100 ms
//! throughout, and then an honest miner trains, submits and its cycle closes.
//!
//! `cargo run -p coordinator --release --example coordinator_load`

use bitcoin::hashes::Hash;
use bitcoin::secp256k1::{All, Secp256k1, SecretKey};
use bitcoin::{Address, BlockHash, CompressedPublicKey, Network};
use coordinator::api::{
    CompactSignature, Hardware, PhaseName, RegisterRequest, MINER_HEADER, SIGNATURE_HEADER,
};
use coordinator::cycle::Phase;
use coordinator::limits::SERVER_MEMORY_BOUND_BYTES;
use coordinator::server::{start, ADDRESS_FILE};
use coordinator::{Coordinator, CoordinatorClient, CycleTiming, MemoryChain, WorkSetup};
use learning::{encode_update, model_from_safetensors, train, Budget, Samples, TrainConfig};
use primitives::sha256d;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

type Error = Box<dyn std::error::Error + Send + Sync>;

const UPLOADERS: usize = 200;
const SLOW_BODIES: usize = 200;
const DECLARED_HUGE: usize = 24;
/// Attacker keys registered (the digits set caps a cycle at about 60 registrations).
const ATTACKERS: u32 = 50;
const PHASE: Duration = Duration::from_secs(8);
/// A 64-2048-2048-10 MLP: segments of 0.13 M, 4.2 M (16.8 MB on the wire) and 20 k
/// parameters, so "maximum size" means up to 16.8 MB per upload.
const HIDDEN: [usize; 2] = [2048, 2048];

fn main() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().collect();
    let runtime = tokio::runtime::Runtime::new()?;
    if args.get(1).map(String::as_str) == Some("serve") {
        let dir = PathBuf::from(args.get(2).ok_or("serve needs a directory")?);
        return runtime.block_on(serve(&dir));
    }
    runtime.block_on(drive())
}

/// The child: a coordinator with the default limits, plus a stand-in for the node that
/// accepts the drawn winner's block as soon as its certificate exists.
async fn serve(dir: &Path) -> Result<(), Error> {
    let test_chain = testkit::TestChain::new();
    let timing = CycleTiming {
        registration_ms: 4_000,
        training_ms: 30_000,
        challenge_ms: 2_000,
        block_window_ms: 10_000,
    };
    let coordinator = Arc::new(Coordinator::open(
        dir,
        test_chain.coordinator,
        &test_chain.params,
        WorkSetup::digits_mlp(HIDDEN.to_vec()),
        timing,
    )?);
    let chain = Arc::new(MemoryChain::new(test_chain.params.genesis.block_hash()));
    let _running = start(
        coordinator.clone(),
        chain.clone(),
        "127.0.0.1:0".parse()?,
        dir,
    )
    .await?;
    let mut pushed = None;
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let Some(state) = coordinator.state() else {
            continue;
        };
        if let (Phase::BlockWindow { .. }, Some(attempt)) = (&state.phase, state.attempt()) {
            let key = (state.cycle(), attempt);
            if pushed != Some(key) {
                if let Some(cert) = state.block_certificates.get(attempt as usize) {
                    let hash = BlockHash::from_byte_array(sha256d(&cert.0.encode()).0);
                    let height = chain.push(hash, cert.0.clone());
                    eprintln!("pushed the block of attempt {attempt} at height {height}");
                    pushed = Some(key);
                }
            }
        }
    }
}

fn rss_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix(field).map(|v| v.trim().to_owned()))
        })
        .and_then(|v| v.trim_end_matches(" kB").trim().parse().ok())
        .unwrap_or(0)
}

fn registration(secp: &Secp256k1<All>, key: &SecretKey, hardware: Hardware) -> RegisterRequest {
    let payout =
        Address::p2wpkh(&CompressedPublicKey(key.public_key(secp)), Network::Regtest).to_string();
    RegisterRequest::new_signed(secp, key, 0, payout, hardware)
}

fn key(n: u32) -> SecretKey {
    testkit::key(1_000 + n)
}

/// Status counts of one phase.
#[derive(Default)]
struct Counts(Mutex<std::collections::BTreeMap<String, u64>>);

impl Counts {
    fn add(&self, what: impl Into<String>) {
        *self.0.lock().unwrap().entry(what.into()).or_default() += 1;
    }
    fn show(&self) -> String {
        format!("{:?}", self.0.lock().unwrap())
    }
}

/// Reads an answer's status line (or why there is none).
async fn answer(stream: &mut TcpStream) -> String {
    let mut buf = [0u8; 512];
    match tokio::time::timeout(Duration::from_secs(30), stream.read(&mut buf)).await {
        Ok(Ok(n)) if n >= 12 => String::from_utf8_lossy(&buf[9..12]).into_owned(),
        Ok(Ok(_)) => "closed".into(),
        Ok(Err(_)) => "reset".into(),
        Err(_) => "no answer".into(),
    }
}

fn head(address: SocketAddr, miner: &str, length: usize) -> String {
    format!(
        "POST /v1/cycles/0/submit HTTP/1.1\r\nhost: {address}\r\n{MINER_HEADER}: {miner}\r\n\
         {SIGNATURE_HEADER}: {}\r\ncontent-length: {length}\r\n\r\n",
        CompactSignature([0; 64])
    )
}

/// One maximum-size upload: headers, the whole body at full speed, the answer.
async fn full_upload(address: SocketAddr, miner: &str, length: usize, zeros: &[u8]) -> String {
    let Ok(mut stream) = TcpStream::connect(address).await else {
        return "connect failed".into();
    };
    if stream
        .write_all(head(address, miner, length).as_bytes())
        .await
        .is_err()
    {
        return "reset".into();
    }
    let mut left = length;
    while left > 0 {
        let n = left.min(zeros.len());
        if stream.write_all(&zeros[..n]).await.is_err() {
            break; // refused early: the answer is waiting
        }
        left -= n;
    }
    answer(&mut stream).await
}

async fn drive() -> Result<(), Error> {
    let dir = tempfile::tempdir()?;
    let mut child = std::process::Command::new(std::env::current_exe()?)
        .arg("serve")
        .arg(dir.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(dir.path().join("child.log"))?)
        .spawn()?;
    let pid = child.id();
    let result = run(dir.path(), pid).await;
    let hwm = rss_kib(pid, "VmHWM:");
    print!(
        "{}",
        std::fs::read_to_string(dir.path().join("child.log")).unwrap_or_default()
    );
    let _ = child.kill();
    let _ = child.wait();
    result?;
    println!(
        "child peak RSS over its whole life (VmHWM): {:.1} MiB",
        hwm as f64 / 1024.0
    );
    Ok(())
}

async fn run(dir: &Path, pid: u32) -> Result<(), Error> {
    let started = Instant::now();
    let url = loop {
        if let Ok(text) = std::fs::read_to_string(dir.join(ADDRESS_FILE)) {
            break text.trim().to_owned();
        }
        if started.elapsed() > Duration::from_secs(60) {
            return Err("the coordinator did not start".into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let address: SocketAddr = url.trim_start_matches("http://").parse()?;
    let client = CoordinatorClient::new(&url)?;
    while client.health().await.is_err() {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let secp = Secp256k1::new();
    let honest = key(0);
    let honest_pk = honest.public_key(&secp);
    let small = Hardware {
        threads: 1,
        memory_bytes: 1 << 20,
    };
    let large = Hardware {
        threads: 2,
        memory_bytes: 1 << 30,
    };
    client
        .register(&registration(&secp, &honest, small))
        .await?;
    let mut attackers = Vec::new();
    for n in 1..=ATTACKERS {
        let k = key(n);
        if client
            .register(&registration(&secp, &k, large))
            .await
            .is_ok()
        {
            attackers.push(k.public_key(&secp));
        }
    }
    while client.status().await?.phase != PhaseName::Training {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut targets = Vec::new();
    for pk in &attackers {
        let task = client.task(0, pk).await?;
        targets.push((pk.to_string(), task.update_bytes_max));
    }
    let largest = targets.iter().map(|t| t.1).max().unwrap_or(0);
    println!(
        "registered 1 honest + {} attackers; largest segment limit {:.1} MB; documented bound \
         SERVER_MEMORY_BOUND_BYTES = {} MiB",
        attackers.len(),
        largest as f64 / 1e6,
        SERVER_MEMORY_BOUND_BYTES >> 20
    );
    let targets = Arc::new(targets);
    let baseline = rss_kib(pid, "VmRSS:");

    // Samplers: RSS and /health, for the whole run.
    let running = Arc::new(AtomicBool::new(true));
    let peak = Arc::new(AtomicU64::new(0));
    let sampler = {
        let (running, peak) = (running.clone(), peak.clone());
        tokio::spawn(async move {
            while running.load(Ordering::Relaxed) {
                peak.fetch_max(rss_kib(pid, "VmRSS:"), Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };
    let health = {
        let (running, client) = (running.clone(), client.clone());
        tokio::spawn(async move {
            let (mut ok, mut failed, mut slowest) = (0u64, 0u64, Duration::ZERO);
            while running.load(Ordering::Relaxed) {
                let t = Instant::now();
                match tokio::time::timeout(Duration::from_secs(2), client.health()).await {
                    Ok(Ok(_)) => ok += 1,
                    _ => failed += 1,
                }
                slowest = slowest.max(t.elapsed());
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            (ok, failed, slowest)
        })
    };
    let mut report = Vec::new();

    // 1. The attack: declared 50 MiB, headers only.
    let counts = Arc::new(Counts::default());
    let slowest = Arc::new(Mutex::new(Duration::ZERO));
    let tasks: Vec<_> = (0..DECLARED_HUGE)
        .map(|i| {
            let (targets, counts, slowest) = (targets.clone(), counts.clone(), slowest.clone());
            tokio::spawn(async move {
                let t = Instant::now();
                let Ok(mut stream) = TcpStream::connect(address).await else {
                    return counts.add("connect failed");
                };
                let miner = &targets[i % targets.len()].0;
                let _ = stream
                    .write_all(head(address, miner, 52_428_800).as_bytes())
                    .await;
                counts.add(answer(&mut stream).await);
                let mut s = slowest.lock().unwrap();
                *s = (*s).max(t.elapsed());
            })
        })
        .collect();
    for t in tasks {
        t.await?;
    }
    report.push(format!(
        "declared 52428800 x {DECLARED_HUGE}: {} slowest answer {:?}",
        counts.show(),
        slowest.lock().unwrap()
    ));

    // 2. Maximum-size uploads.
    peak.store(0, Ordering::Relaxed);
    let counts = Arc::new(Counts::default());
    let zeros: Arc<Vec<u8>> = Arc::new(vec![0u8; 256 * 1024]);
    let deadline = Instant::now() + PHASE;
    let tasks: Vec<_> = (0..UPLOADERS)
        .map(|i| {
            let (targets, counts, zeros) = (targets.clone(), counts.clone(), zeros.clone());
            tokio::spawn(async move {
                let mut round = 0;
                while Instant::now() < deadline {
                    let (miner, length) = &targets[(i + round) % targets.len()];
                    counts.add(full_upload(address, miner, *length, &zeros).await);
                    round += 1;
                }
            })
        })
        .collect();
    for t in tasks {
        t.await?;
    }
    let uploads_peak = peak.load(Ordering::Relaxed);
    report.push(format!(
        "{UPLOADERS} concurrent max-size uploads for {PHASE:?}: answers {}; peak RSS {:.1} MiB",
        counts.show(),
        uploads_peak as f64 / 1024.0
    ));

    // 3. Slow bodies, held open, then closed.
    peak.store(0, Ordering::Relaxed);
    let counts = Arc::new(Counts::default());
    let deadline = Instant::now() + PHASE;
    let tasks: Vec<_> = (0..SLOW_BODIES)
        .map(|i| {
            let (targets, counts) = (targets.clone(), counts.clone());
            tokio::spawn(async move {
                let Ok(mut stream) = TcpStream::connect(address).await else {
                    return counts.add("connect failed");
                };
                let (miner, length) = &targets[i % targets.len()];
                let _ = stream.write_all(head(address, miner, *length).as_bytes()).await;
                let mut buf = [0u8; 512];
                while Instant::now() < deadline {
                    tokio::select! {
                        read = stream.read(&mut buf) => {
                            let status = match read {
                                Ok(n) if n >= 12 => String::from_utf8_lossy(&buf[9..12]).into_owned(),
                                _ => "closed".into(),
                            };
                            return counts.add(format!("answered {status}"));
                        }
                        _ = tokio::time::sleep(Duration::from_millis(500)) => {
                            if stream.write_all(b"x").await.is_err() {
                                return counts.add("closed by server");
                            }
                        }
                    }
                }
                counts.add("held to the end")
            })
        })
        .collect();
    for t in tasks {
        t.await?;
    }
    let slow_peak = peak.load(Ordering::Relaxed);
    report.push(format!(
        "{SLOW_BODIES} slow bodies for {PHASE:?}: {}; peak RSS {:.1} MiB",
        counts.show(),
        slow_peak as f64 / 1024.0
    ));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = rss_kib(pid, "VmRSS:");

    // 4. An honest cycle right after.
    let t = Instant::now();
    let task = client.task(0, &honest_pk).await?;
    let weights = client.weights(0).await?;
    let shard = client.shard(0, &honest_pk).await?;
    // The load test measures admission, not proof of training: the update goes in with a
    // commitment to its task and no transcript.
    let commitment = proof::Commitment {
        task_hash: task.replay.hash(),
        update_hash: primitives::Hash256::ZERO,
        transcript_root: primitives::Hash256::ZERO,
        steps: 0,
    };
    let update = tokio::task::spawn_blocking(move || -> Result<Vec<u8>, Error> {
        let mut model = model_from_safetensors(task.model.clone(), &weights)?;
        let samples = Samples::from_safetensors(&shard, task.feature_count, task.class_count)?;
        let config = TrainConfig {
            lr: task.hints.lr,
            momentum: task.hints.momentum,
            batch: task.hints.batch,
            budget: Budget::Steps(30),
            seed: 1,
            threads: 1,
        };
        train(
            &mut model,
            &[task.segment.segment.as_str()],
            &samples,
            &config,
        )?;
        Ok(encode_update(&model, &task.segment.segment)?)
    })
    .await??;
    let trained_in = t.elapsed();
    let receipt = loop {
        match client
            .submit(&secp, &honest, 0, commitment, update.clone())
            .await
        {
            Ok(r) => break r,
            Err(e) if e.code() == Some("busy") => {
                tokio::time::sleep(Duration::from_millis(200)).await
            }
            Err(e) => return Err(e.into()),
        }
    };
    assert!(receipt.verify(&secp));
    let submitted_in = t.elapsed();
    let record = loop {
        let r = client.record(0).await?;
        if r.phase == PhaseName::Closed {
            break r;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    running.store(false, Ordering::Relaxed);
    sampler.await?;
    let (ok, failed, slowest_health) = health.await?;

    println!();
    println!(
        "baseline RSS after registrations: {:.1} MiB",
        baseline as f64 / 1024.0
    );
    for line in report {
        println!("{line}");
    }
    println!(
        "RSS after the slow bodies closed: {:.1} MiB",
        after as f64 / 1024.0
    );
    println!(
        "/health during the run: {ok} answered, {failed} failed or over 2 s, slowest {slowest_health:?}"
    );
    println!(
        "honest miner: downloads and training {:?}, receipt {:?} after the attacks; cycle 0 \
         closed {:?}, submissions {}",
        trained_in,
        submitted_in,
        record.outcome,
        record.submissions.len()
    );
    if failed > 0 {
        return Err("/health failed during the run".into());
    }
    Ok(())
}
