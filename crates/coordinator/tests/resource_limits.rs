//! The HTTP server's resource limits against a real coordinator on 127.0.0.1: uploads are
//! refused from their headers before any body byte is read, bodies are capped and timed out,
//! and registration rate limits are per peer address and spent only after the cheap checks.
//! Raw TCP where the test must control what is (not) sent; other loopback source addresses
//! (127.0.0.2, …) stand for other peers.

mod common;

use bitcoin::secp256k1::{Secp256k1, SecretKey};
use common::*;
use coordinator::api::{CompactSignature, PhaseName, RegisterRequest, MINER_HEADER};
use coordinator::limits::ServerLimits;
use coordinator::server::{start_with, Running};
use coordinator::{Coordinator, CoordinatorClient, CycleTiming, MemoryChain, WorkSetup};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};
use testkit::TestChain;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// Longest any single answer may take here; every refusal below is expected in milliseconds.
const ANSWER_LIMIT: Duration = Duration::from_secs(5);

/// Test limits: the constants, with timeouts short enough for a test.
fn test_limits() -> ServerLimits {
    ServerLimits {
        upload_body_timeout: Duration::from_millis(1_500),
        body_idle_timeout: Duration::from_millis(1_000),
        header_read_timeout: Duration::from_secs(2),
        ..ServerLimits::default()
    }
}

struct Server {
    _dir: tempfile::TempDir,
    running: Running,
    client: CoordinatorClient,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.running.abort();
    }
}

async fn server(registration_ms: u64, limits: ServerLimits) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let test_chain = TestChain::new();
    let timing = CycleTiming {
        registration_ms,
        training_ms: 60_000,
        challenge_ms: 1_500,
        block_window_ms: 3_000,
    };
    let coordinator = Arc::new(
        Coordinator::open(
            dir.path(),
            test_chain.coordinator,
            &test_chain.params,
            WorkSetup::digits_mlp(vec![16]),
            timing,
        )
        .unwrap()
        .accept_jobs(coordinator::jobs::JobPolicy::Open),
    );
    let chain = Arc::new(MemoryChain::new(test_chain.params.genesis.block_hash()));
    let running = start_with(
        coordinator,
        chain,
        "127.0.0.1:0".parse().unwrap(),
        dir.path(),
        limits,
    )
    .await
    .unwrap();
    let client = CoordinatorClient::new(&format!("http://{}", running.address)).unwrap();
    wait_for(&client, |phase| phase == PhaseName::Registration).await;
    Server {
        _dir: dir,
        running,
        client,
    }
}

async fn wait_for(client: &CoordinatorClient, ok: impl Fn(PhaseName) -> bool) {
    let started = Instant::now();
    loop {
        if let Ok(s) = client.status().await {
            if ok(s.phase) {
                return;
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "phase not reached"
        );
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
}

/// A server in its training phase with `key` registered; returns the key's update limit.
async fn training_server(key: &SecretKey) -> (Server, usize) {
    let s = server(600, test_limits()).await;
    let secp = Secp256k1::new();
    s.client
        .register(&registration(&secp, key, 0))
        .await
        .unwrap();
    wait_for(&s.client, |phase| phase == PhaseName::Training).await;
    let task = s.client.task(0, &key.public_key(&secp)).await.unwrap();
    (s, task.update_bytes_max)
}

async fn connect(to: SocketAddr, from: IpAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(from, 0)).unwrap();
    socket.connect(to).await.unwrap()
}

/// Reads one HTTP/1.1 answer: (status, body as text). Needs `Content-Length` in the answer,
/// which every answer of this API has.
async fn read_answer(stream: &mut TcpStream) -> (u16, String) {
    let read = async {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            let n = stream.read(&mut chunk).await.unwrap();
            assert!(n > 0, "connection closed before an answer");
            buf.extend_from_slice(&chunk[..n]);
            let text = String::from_utf8_lossy(&buf).into_owned();
            let Some(end) = text.find("\r\n\r\n") else {
                continue;
            };
            let head = text[..end].to_ascii_lowercase();
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map(|v| v.trim().parse().unwrap())
                .unwrap_or(0);
            if buf.len() >= end + 4 + length {
                let status = head[9..12].parse().unwrap();
                return (status, text[end + 4..end + 4 + length].to_owned());
            }
        }
    };
    tokio::time::timeout(ANSWER_LIMIT, read)
        .await
        .expect("an answer in time")
}

fn upload_head(address: SocketAddr, miner: &str, extra: &str) -> String {
    let zero = primitives::Hash256::ZERO;
    format!(
        "POST /v1/cycles/0/submit HTTP/1.1\r\nhost: {address}\r\n{MINER_HEADER}: {miner}\r\n\
         x-trainchain-signature: {}\r\nx-trainchain-task-hash: {zero}\r\n\
         x-trainchain-transcript-root: {zero}\r\nx-trainchain-steps: 0\r\n\
         content-type: application/octet-stream\r\n{extra}\r\n",
        CompactSignature([0; 64])
    )
}

fn error_code(body: &str) -> String {
    serde_json::from_str::<coordinator::api::ApiError>(body)
        .unwrap_or_else(|e| panic!("{body:?} is not an API error: {e}"))
        .error
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_are_refused_from_their_headers_before_the_body() {
    let key = testkit::key(31);
    let (s, limit) = training_server(&key).await;
    let address = s.running.address;
    let me = key.public_key(&Secp256k1::new()).to_string();
    let stranger = testkit::key(32).public_key(&Secp256k1::new()).to_string();
    let local: IpAddr = "127.0.0.1".parse().unwrap();
    // (miner, declared length, status, code): only headers are sent, never a body byte.
    let cases = [
        (&me, 52_428_800, 413, "update_oversize"),
        (&me, limit + 1, 413, "update_oversize"),
        (&me, 100 * 1024 * 1024, 413, "update_oversize"),
        (&stranger, limit, 403, "not_registered"),
        (&stranger, 52_428_800, 403, "not_registered"),
    ];
    for (miner, declared, status, code) in cases {
        let mut stream = connect(address, local).await;
        let head = upload_head(address, miner, &format!("content-length: {declared}\r\n"));
        stream.write_all(head.as_bytes()).await.unwrap();
        let (found, body) = read_answer(&mut stream).await;
        assert_eq!(
            (found, error_code(&body).as_str()),
            (status, code),
            "{declared} bytes"
        );
    }
    // Other routes: a declared length over 16 KiB is refused unread too, as JSON.
    for (method, path) in [("POST", "/v1/register"), ("GET", "/health")] {
        let mut stream = connect(address, local).await;
        let head = format!(
            "{method} {path} HTTP/1.1\r\nhost: {address}\r\ncontent-type: application/json\r\n\
             content-length: 1048576\r\n\r\n"
        );
        stream.write_all(head.as_bytes()).await.unwrap();
        let (found, body) = read_answer(&mut stream).await;
        assert_eq!((found, error_code(&body).as_str()), (413, "body_too_large"));
    }
    // A chunked body with no declared length is cut off at the segment's limit.
    let mut stream = connect(address, local).await;
    let head = upload_head(address, &me, "transfer-encoding: chunked\r\n");
    stream.write_all(head.as_bytes()).await.unwrap();
    let chunk = vec![b'x'; 16 * 1024];
    let mut sent = 0;
    let answer = loop {
        let frame = [format!("{:x}\r\n", chunk.len()).as_bytes(), &chunk, b"\r\n"].concat();
        if stream.write_all(&frame).await.is_err() || sent > limit * 2 {
            break read_answer(&mut stream).await;
        }
        sent += chunk.len();
        if sent > limit {
            break read_answer(&mut stream).await;
        }
    };
    assert_eq!(
        (answer.0, error_code(&answer.1).as_str()),
        (413, "update_oversize")
    );
    // The honest miner can still submit a real update afterwards.
    let secp = Secp256k1::new();
    let task = s.client.task(0, &key.public_key(&secp)).await.unwrap();
    let weights = s.client.weights(0).await.unwrap();
    let shard = s.client.shard(0, &key.public_key(&secp)).await.unwrap();
    let work = honest_work(&task, &weights, &shard, 5);
    let receipt = s
        .client
        .submit(&secp, &key, 0, work.commitment, work.update)
        .await
        .unwrap();
    assert!(receipt.verify(&secp));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_body_times_out_and_frees_its_slot() {
    let key = testkit::key(41);
    let (s, limit) = training_server(&key).await;
    let address = s.running.address;
    let me = key.public_key(&Secp256k1::new()).to_string();
    let mut stream = connect(address, "127.0.0.1".parse().unwrap()).await;
    let head = upload_head(address, &me, &format!("content-length: {limit}\r\n"));
    stream.write_all(head.as_bytes()).await.unwrap();
    // One byte every 200 ms: never idle for the 1 s idle timeout, so only the whole-body
    // deadline (1.5 s) can end it.
    let started = Instant::now();
    let trickle = async {
        loop {
            if stream.write_all(b"x").await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
            if started.elapsed() > Duration::from_millis(1_300) {
                return;
            }
        }
    };
    trickle.await;
    let (status, body) = read_answer(&mut stream).await;
    assert_eq!((status, error_code(&body).as_str()), (408, "body_timeout"));
    assert!(started.elapsed() < Duration::from_secs(4));
    // The slot is free again: the same miner's next upload gets past the gate (and is then
    // refused for its bad signature, after its body).
    let mut stream = connect(address, "127.0.0.1".parse().unwrap()).await;
    let head = upload_head(address, &me, "content-length: 100\r\n");
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(&[0u8; 100]).await.unwrap();
    let (status, body) = read_answer(&mut stream).await;
    assert_eq!((status, error_code(&body).as_str()), (403, "bad_signature"));
}

/// POSTs a registration from `from`; returns (status, error code or "").
async fn register_from(
    address: SocketAddr,
    from: IpAddr,
    request: &RegisterRequest,
) -> (u16, String) {
    let http = reqwest::Client::builder()
        .local_address(from)
        .build()
        .unwrap();
    let r = http
        .post(format!("http://{address}/v1/register"))
        .json(request)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    let code = if status == 200 {
        String::new()
    } else {
        error_code(&text)
    };
    (status, code)
}

fn bad_signature(secp: &Secp256k1<bitcoin::secp256k1::All>, n: u32, cycle: u64) -> RegisterRequest {
    let mut request = registration(secp, &testkit::key(100 + n), cycle);
    request.signature = CompactSignature([0; 64]);
    request
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registration_limits_are_per_address_and_spent_only_after_cheap_checks() {
    let limits = ServerLimits {
        registrations_per_address_per_second: 1,
        registration_burst_per_address: 3,
        ..test_limits()
    };
    let s = server(30_000, limits).await;
    let address = s.running.address;
    let secp = Secp256k1::new();
    let (a, b, c): (IpAddr, IpAddr, IpAddr) = (
        "127.0.0.2".parse().unwrap(),
        "127.0.0.3".parse().unwrap(),
        "127.0.0.4".parse().unwrap(),
    );
    // Address a: bad signatures spend a's burst, then a is limited.
    for i in 0..3 {
        let found = register_from(address, a, &bad_signature(&secp, i, 0)).await;
        assert_eq!(found, (403, "bad_signature".into()));
    }
    let found = register_from(address, a, &bad_signature(&secp, 3, 0)).await;
    assert_eq!(found, (429, "rate_limited".into()));
    // Address b is untouched by a's flood.
    let found = register_from(address, b, &registration(&secp, &testkit::key(51), 0)).await;
    assert_eq!(found, (200, String::new()));
    // Wrong-cycle requests are refused before the bucket: c keeps its whole burst.
    for i in 0..10 {
        let found = register_from(address, c, &bad_signature(&secp, i, 7)).await;
        assert_eq!(found.0, 409, "{found:?}");
    }
    for n in 0..3 {
        let found = register_from(address, c, &registration(&secp, &testkit::key(60 + n), 0)).await;
        assert_eq!(found, (200, String::new()));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn honest_registrations_succeed_during_a_bad_signature_flood() {
    let s = server(30_000, test_limits()).await;
    let address = s.running.address;
    let flooding = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let floods: Vec<_> = (0..4)
        .map(|t| {
            let flooding = flooding.clone();
            tokio::spawn(async move {
                let secp = Secp256k1::new();
                let (mut sent, mut limited) = (0u32, 0u32);
                while flooding.load(std::sync::atomic::Ordering::Relaxed) {
                    let request = bad_signature(&secp, t * 10_000 + sent, 0);
                    let (status, _) =
                        register_from(address, "127.0.0.2".parse().unwrap(), &request).await;
                    assert!(status == 403 || status == 429, "{status}");
                    limited += u32::from(status == 429);
                    sent += 1;
                }
                (sent, limited)
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let secp = Secp256k1::new();
    for n in 0..20 {
        let found = register_from(
            address,
            "127.0.0.3".parse().unwrap(),
            &registration(&secp, &testkit::key(70 + n), 0),
        )
        .await;
        assert_eq!(found, (200, String::new()), "honest miner {n}");
    }
    flooding.store(false, std::sync::atomic::Ordering::Relaxed);
    let mut limited = 0;
    for f in floods {
        limited += f.await.unwrap().1;
    }
    assert!(limited > 0, "the flood was rate limited");
    let status = s.client.status().await.unwrap();
    assert_eq!(status.registered, 20);
}

/// A small job on the shipped digits for `owner`.
fn digits_job(owner: &SecretKey, cycles: u64) -> coordinator::api::JobRequest {
    coordinator::api::JobRequest {
        owner: owner.public_key(&Secp256k1::new()),
        name: "over http".into(),
        model: "mlp:8".into(),
        data: coordinator::api::JobData::Shipped {
            dataset: "digits".into(),
        },
        hints: None,
        model_seed: 3,
        stop: coordinator::api::StopRule {
            cycles,
            target_held_out_loss: None,
            target_accuracy: None,
        },
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_over_http_are_signed_bounded_and_listed() {
    let s = server(60_000, test_limits()).await;
    let secp = Secp256k1::new();
    let owner = testkit::key(60);
    // Signed by the client over the exact bytes it sends: taken, listed, readable.
    let job = s
        .client
        .submit_job(&secp, &owner, &digits_job(&owner, 3))
        .await
        .unwrap();
    assert_eq!(job.state, coordinator::api::JobState::Queued);
    let jobs = s.client.jobs().await.unwrap();
    assert_eq!(
        jobs.len(),
        2,
        "the coordinator's own workload and the posted job"
    );
    assert_eq!(jobs[1].id, job.id);
    assert_eq!(s.client.job(&job.id).await.unwrap().terms, job.terms);
    // No model before its first cycle.
    let e = s.client.job_model(&job.id).await.unwrap_err();
    assert_eq!(e.code(), Some("job_no_model"));
    // A replayed post is a duplicate.
    let e = s
        .client
        .submit_job(&secp, &owner, &digits_job(&owner, 3))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some("job_duplicate"));
    // A body declared over the limit is refused from its headers, before any byte is read.
    let address = s.running.address;
    let mut stream = connect(address, "127.0.0.1".parse().unwrap()).await;
    let head = format!(
        "POST /v1/jobs HTTP/1.1\r\nhost: {address}\r\nx-trainchain-signature: {}\r\n\
         content-type: application/json\r\ncontent-length: {}\r\n\r\n",
        CompactSignature([0; 64]),
        coordinator::api::JOB_BODY_BYTES_MAX + 1
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let (status, body) = read_answer(&mut stream).await;
    assert_eq!(
        (status, error_code(&body).as_str()),
        (413, "body_too_large")
    );
    // A post without a signature, and a cancel signed by someone else.
    let http = reqwest::Client::new();
    let answer = http
        .post(format!("http://{address}/v1/jobs"))
        .body(serde_json::to_vec(&digits_job(&owner, 4)).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status().as_u16(), 400);
    let e = s
        .client
        .cancel_job(&secp, &testkit::key(61), &job.id)
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some("job_bad_signature"));
    let cancelled = s.client.cancel_job(&secp, &owner, &job.id).await.unwrap();
    assert_eq!(cancelled.state, coordinator::api::JobState::Cancelled);
    let e = s
        .client
        .job(&primitives::Hash256([1; 32]))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some("unknown_job"));
}
