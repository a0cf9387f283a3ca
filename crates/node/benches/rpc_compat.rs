//! What the bitcoind-compatibility layer (`rpc::compat`) costs: one node, two RPC servers on it
//! (127.0.0.1, OS-chosen ports), one as every node serves it (with the layer) and one with
//! jsonrpsee alone. Both get the same JSON-RPC 2.0 calls (`application/json`), a small one
//! (`getblockcount`) and a large one (`getblock <hash> 2` of a block of `SPENDS` transactions),
//! sequentially and from `CLIENTS` concurrent clients. Rounds interleave the two servers
//! (the order flips every round) so drift in a shared machine's load hits both alike. Prints
//! the median calls/s of each, the median of the per-round ratios with/without, and the
//! throughput of Core's 1.0-style bodies (`text/plain`, `"jsonrpc":"1.0"`) through the layer.
//!
//! The servers run on their own runtime, whose threads are named [`SERVER_THREAD`], so the
//! bench also reports the servers' CPU time per call (Linux `/proc/self/task/*/schedstat`):
//! on a loaded machine wall-clock throughput swings with the neighbours, CPU time much less.
//!
//! `cargo bench -p node --bench rpc_compat`

use bitcoin::{Amount, OutPoint, Transaction, TxOut};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use jsonrpsee::server::{HttpBody, HttpRequest, HttpResponse};
use node::mempool::{Mempool, MempoolLimits};
use node::rpc::compat::CoreCompatLayer;
use node::rpc::{self, Dialect, RpcAuth, RpcServer};
use node::{ChainState, NodeHandle};
use primitives::Block;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;
use testkit::{block_time, key, p2wpkh, TestChain};
use tower::{Layer, Service};

/// Transactions (besides the coinbase) in the block `getblock` decodes: about 0.62 MB of JSON.
const SPENDS: usize = 500;
/// Timed rounds per server (each round runs every workload once on each server).
const ROUNDS: usize = 15;
/// `getblockcount` calls per workload run.
const SMALL_CALLS: usize = 2_000;
/// `getblock <hash> 2` calls per workload run.
const LARGE_CALLS: usize = 40;
/// Concurrent clients in the concurrent workloads (each with its own connection).
const CLIENTS: usize = 4;
/// Fee of each spend, in satoshis (above the 1 sat/byte minimum).
const FEE_SATS: u64 = 1_000;
/// Calls per layer-alone measure with a small answer, and with the large one.
const LAYER_CALLS_SMALL: usize = 20_000;
const LAYER_CALLS_LARGE: usize = 200;
/// Name of the servers' runtime threads, whose CPU time is the servers' (at most 15 bytes, the
/// length of a Linux thread name).
const SERVER_THREAD: &str = "rpc-server";

/// Nanoseconds the server runtime's threads have run, or `None` without Linux schedstat.
fn server_cpu_ns() -> Option<u64> {
    let mut total = 0;
    for task in std::fs::read_dir("/proc/self/task").ok()?.flatten() {
        let path = task.path();
        let name = std::fs::read_to_string(path.join("comm")).unwrap_or_default();
        if name.trim_end() != SERVER_THREAD {
            continue;
        }
        let stat = std::fs::read_to_string(path.join("schedstat")).ok()?;
        total += stat.split_whitespace().next()?.parse::<u64>().ok()?;
    }
    Some(total)
}

/// What one run of a workload measured.
#[derive(Clone, Copy)]
struct Sample {
    calls_per_sec: f64,
    /// Server CPU time per call, in microseconds.
    server_us_per_call: Option<f64>,
}

/// Block 1 pays its coinbase in `SPENDS` outputs; block 2 spends each in its own transaction.
fn build_chain(chain: &TestChain) -> Vec<Block> {
    let miner = key(1);
    let one = chain.block(chain.params.genesis_hash(), 1, &miner, vec![], Amount::ZERO);
    let mut one_txs = one.txdata.clone();
    let value = one_txs[0].output[0].value.to_sat() / SPENDS as u64;
    one_txs[0].output = (0..SPENDS)
        .map(|_| TxOut {
            value: Amount::from_sat(value),
            script_pubkey: p2wpkh(&chain.secp, &miner),
        })
        .collect();
    let one = chain.assemble(
        one.header.certificate.clone(),
        block_time(1),
        one_txs,
        &miner,
    );
    let coinbase = &one.txdata[0];
    let txid = coinbase.compute_txid();
    let spends: Vec<Transaction> = (0..SPENDS)
        .map(|vout| {
            let prev = coinbase.output[vout].clone();
            chain.spend(
                &[(OutPoint::new(txid, vout as u32), prev.clone())],
                vec![TxOut {
                    value: prev.value - Amount::from_sat(FEE_SATS),
                    script_pubkey: p2wpkh(&chain.secp, &key(2)),
                }],
                &miner,
            )
        })
        .collect();
    let fees = Amount::from_sat(FEE_SATS * SPENDS as u64);
    let two = chain.block(one.block_hash(), 2, &miner, spends, fees);
    vec![one, two]
}

/// One kind of call, run `calls` times split over `clients` concurrent clients.
struct Workload {
    name: &'static str,
    body: String,
    content_type: &'static str,
    calls: usize,
    clients: usize,
}

/// Runs `workload` against `url`.
async fn run(http: &reqwest::Client, url: &str, workload: &Workload) -> Sample {
    let per_client = workload.calls / workload.clients;
    let cpu_before = server_cpu_ns();
    let started = Instant::now();
    let clients: Vec<_> = (0..workload.clients)
        .map(|_| {
            let (http, url) = (http.clone(), url.to_owned());
            let (body, content_type) = (workload.body.clone(), workload.content_type);
            tokio::spawn(async move {
                for _ in 0..per_client {
                    let response = http
                        .post(&url)
                        .header("content-type", content_type)
                        .body(body.clone())
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(response.status(), 200);
                    assert!(!response.bytes().await.unwrap().is_empty());
                }
            })
        })
        .collect();
    for client in clients {
        client.await.unwrap();
    }
    let secs = started.elapsed().as_secs_f64();
    let calls = (per_client * workload.clients) as f64;
    let cpu = cpu_before
        .zip(server_cpu_ns())
        .map(|(a, b)| b.saturating_sub(a));
    Sample {
        calls_per_sec: calls / secs,
        server_us_per_call: cpu.map(|ns| ns as f64 / 1e3 / calls),
    }
}

/// One answer's body, for the checks before timing.
async fn answer(http: &reqwest::Client, url: &str, workload: &Workload) -> bytes::Bytes {
    let response = http
        .post(url)
        .header("content-type", workload.content_type)
        .body(workload.body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{}", workload.name);
    response.bytes().await.unwrap()
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    if values.len() % 2 == 1 {
        values[mid]
    } else {
        (values[mid - 1] + values[mid]) / 2.0
    }
}

/// A stand-in for jsonrpsee in the layer-alone measure: reads the request body, as jsonrpsee
/// does, and answers with a recorded answer.
#[derive(Clone)]
struct Recorded {
    answer: Bytes,
}

impl Service<HttpRequest> for Recorded {
    type Response = HttpResponse;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<HttpResponse, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: HttpRequest) -> Self::Future {
        let answer = self.answer.clone();
        Box::pin(async move {
            let _ = request.into_body().collect().await;
            Ok(HttpResponse::new(HttpBody::new(Full::new(answer))))
        })
    }
}

/// Nanoseconds per call of `service` for `body`, the answer's body read to the end.
async fn ns_per_call<S>(service: &mut S, body: &str, content_type: &str, calls: usize) -> f64
where
    S: Service<HttpRequest, Response = HttpResponse>,
    S::Error: std::fmt::Debug,
{
    let started = Instant::now();
    for _ in 0..calls {
        let request = http::Request::post("/")
            .header("content-type", content_type)
            .body(HttpBody::from(body.to_owned()))
            .unwrap();
        std::future::poll_fn(|cx| service.poll_ready(cx))
            .await
            .unwrap();
        let response = service.call(request).await.unwrap();
        std::hint::black_box(response.into_body().collect().await.unwrap().to_bytes());
    }
    started.elapsed().as_nanos() as f64 / calls as f64
}

/// Starts a server on the servers' runtime (its accept loop and connections run there).
fn server(runtime: &tokio::runtime::Runtime, node: &NodeHandle, dialect: Dialect) -> RpcServer {
    let bind = "127.0.0.1:0".parse().unwrap();
    runtime
        .block_on(rpc::start_with(
            node.clone(),
            bind,
            RpcAuth::Open,
            None,
            dialect,
        ))
        .unwrap()
}

fn median_of(samples: &[Sample], field: impl Fn(&Sample) -> Option<f64>) -> Option<f64> {
    let mut values: Vec<f64> = samples.iter().map(field).collect::<Option<_>>()?;
    Some(median(&mut values))
}

fn main() {
    let servers = tokio::runtime::Builder::new_multi_thread()
        .thread_name(SERVER_THREAD)
        .enable_all()
        .build()
        .unwrap();
    // The node's own tasks run on the servers' runtime too.
    let _servers_context = servers.enter();
    let dir = tempfile::tempdir().unwrap();
    let chain = TestChain::new();
    let state = ChainState::open(&dir.path().join("chain.redb"), chain.params.clone()).unwrap();
    let (node, _net) = NodeHandle::new(state, Mempool::new(MempoolLimits::default()));
    let blocks = build_chain(&chain);
    let big = blocks[1].block_hash();
    for block in blocks {
        node.process_block(block).unwrap();
    }
    let with = server(&servers, &node, Dialect::Core);
    let without = server(&servers, &node, Dialect::Strict2_0);
    let clients = tokio::runtime::Runtime::new().unwrap();
    clients.block_on(async {
        let urls = [
            format!("http://{}/", with.local_addr),
            format!("http://{}/", without.local_addr),
        ];
        let http = reqwest::Client::new();

        let v2 = |method: &str, params: &str| {
            format!(r#"{{"jsonrpc":"2.0","id":1,"method":"{method}","params":{params}}}"#)
        };
        let legacy = |method: &str, params: &str| {
            format!(r#"{{"jsonrpc":"1.0","id":"bench","method":"{method}","params":{params}}}"#)
        };
        let big_params = format!(r#"["{big}",2]"#);
        let workload = |name, body, content_type, calls, clients| Workload {
            name,
            body,
            content_type,
            calls,
            clients,
        };
        let json = "application/json";
        let text = "text/plain;";
        // Sent to both servers.
        let both = [
            workload("getblockcount, sequential", v2("getblockcount", "[]"), json, SMALL_CALLS, 1),
            workload("getblockcount, 4 clients", v2("getblockcount", "[]"), json, SMALL_CALLS, CLIENTS),
            workload("getblock 2, sequential", v2("getblock", &big_params), json, LARGE_CALLS, 1),
            workload("getblock 2, 4 clients", v2("getblock", &big_params), json, LARGE_CALLS, CLIENTS),
        ];
        // Core's own 1.0-style calls (bitcoin-cli's curl example): only the layer answers them.
        let legacy_only = [
            workload("getblockcount, sequential", legacy("getblockcount", "[]"), text, SMALL_CALLS, 1),
            workload("getblockcount, 4 clients", legacy("getblockcount", "[]"), text, SMALL_CALLS, CLIENTS),
            workload("getblock 2, sequential", legacy("getblock", &big_params), text, LARGE_CALLS, 1),
            workload("getblock 2, 4 clients", legacy("getblock", &big_params), text, LARGE_CALLS, CLIENTS),
        ];

        // The layer passes JSON-RPC 2.0 through byte for byte, and both answers are results.
        for w in &both {
            let a = answer(&http, &urls[0], w).await;
            let b = answer(&http, &urls[1], w).await;
            assert_eq!(a, b, "{}: the layer changed a 2.0 answer", w.name);
            let value: serde_json::Value = serde_json::from_slice(&a).unwrap();
            assert!(value.get("result").is_some(), "{}: {value}", w.name);
        }
        let big_json = answer(&http, &urls[0], &both[2]).await.len();
        for w in &legacy_only {
            let value: serde_json::Value =
                serde_json::from_slice(&answer(&http, &urls[0], w).await).unwrap();
            assert!(value["error"].is_null(), "{}: {value}", w.name);
        }
        println!(
            "node: 2 blocks, getblock 2 answer {:.2} MB ({SPENDS} transactions); {ROUNDS} rounds",
            big_json as f64 / 1e6
        );

        // One untimed round warms connections and caches.
        for w in &both {
            for url in &urls {
                run(&http, url, w).await;
            }
        }
        // samples[workload][0 = with, 1 = without], legacy[workload]
        let mut samples = vec![[Vec::new(), Vec::new()]; both.len()];
        let mut ratios = vec![Vec::new(); both.len()];
        let mut legacy_samples = vec![Vec::new(); legacy_only.len()];
        for round in 0..ROUNDS {
            let order = if round % 2 == 0 { [0, 1] } else { [1, 0] };
            for (i, w) in both.iter().enumerate() {
                let mut this_round = [0.0; 2];
                for server in order {
                    let sample = run(&http, &urls[server], w).await;
                    this_round[server] = sample.calls_per_sec;
                    samples[i][server].push(sample);
                }
                ratios[i].push(this_round[0] / this_round[1]);
            }
            for (i, w) in legacy_only.iter().enumerate() {
                legacy_samples[i].push(run(&http, &urls[0], w).await);
            }
        }

        let cpu = |samples: &[Sample]| {
            median_of(samples, |s| s.server_us_per_call)
                .map_or_else(|| "n/a".to_owned(), |us| format!("{us:.1}"))
        };
        println!();
        println!("JSON-RPC 2.0 (application/json), medians over {ROUNDS} rounds:");
        println!("| workload                   | calls/s without | calls/s with | with/without (min-max) | server CPU us/call without | with |");
        println!("|----------------------------|-----------------|--------------|------------------------|----------------------------|------|");
        let mut v2_with = Vec::new();
        for (i, w) in both.iter().enumerate() {
            let with = median_of(&samples[i][0], |s| Some(s.calls_per_sec)).unwrap();
            let without = median_of(&samples[i][1], |s| Some(s.calls_per_sec)).unwrap();
            v2_with.push(with);
            let ratio = median(&mut ratios[i]);
            let (low, high) = (ratios[i][0], ratios[i][ratios[i].len() - 1]);
            println!(
                "| {:<26} | {without:>15.0} | {with:>12.0} | {ratio:.3} ({low:.2}-{high:.2}) | {:>26} | {:>4} |",
                w.name,
                cpu(&samples[i][1]),
                cpu(&samples[i][0]),
            );
        }
        println!();
        println!("Core 1.0-style bodies (text/plain, \"jsonrpc\":\"1.0\") through the layer:");
        println!("| workload                   | calls/s | vs 2.0 through the layer | server CPU us/call |");
        println!("|----------------------------|---------|--------------------------|--------------------|");
        for (i, w) in legacy_only.iter().enumerate() {
            let calls = median_of(&legacy_samples[i], |s| Some(s.calls_per_sec)).unwrap();
            println!(
                "| {:<26} | {calls:>7.0} | {:.3} | {} |",
                w.name,
                calls / v2_with[i],
                cpu(&legacy_samples[i]),
            );
        }

        // The layer alone, around a stand-in that answers with the answers recorded above: what
        // the layer adds to a call, without the network and the machine's load in the way.
        let small_answer = answer(&http, &urls[1], &both[0]).await;
        let large_answer = answer(&http, &urls[1], &both[2]).await;
        let cases = [
            ("2.0 getblockcount", &both[0], &small_answer, LAYER_CALLS_SMALL, 1),
            ("2.0 getblock 2", &both[2], &large_answer, LAYER_CALLS_LARGE, 3),
            ("1.0 getblockcount", &legacy_only[0], &small_answer, LAYER_CALLS_SMALL, 1),
            ("1.0 getblock 2", &legacy_only[2], &large_answer, LAYER_CALLS_LARGE, 3),
        ];
        println!();
        println!("The layer alone (around a stand-in returning the recorded answer), medians over {ROUNDS} rounds:");
        println!("| call                       | ns/call without | with | layer's cost, ns | of the server's CPU per call |");
        println!("|----------------------------|-----------------|------|------------------|------------------------------|");
        for (name, w, recorded, calls, server_workload) in cases {
            let mut direct = Recorded { answer: recorded.clone() };
            let mut layered = CoreCompatLayer.layer(direct.clone());
            let (mut without, mut with) = (Vec::new(), Vec::new());
            for round in 0..ROUNDS {
                // 2.0 bodies go to both; the direct service cannot read a 1.0 body's answer
                // shape, but its cost does not depend on the body.
                let body = &w.body;
                if round % 2 == 0 {
                    without.push(ns_per_call(&mut direct, body, w.content_type, calls).await);
                    with.push(ns_per_call(&mut layered, body, w.content_type, calls).await);
                } else {
                    with.push(ns_per_call(&mut layered, body, w.content_type, calls).await);
                    without.push(ns_per_call(&mut direct, body, w.content_type, calls).await);
                }
            }
            let (without, with) = (median(&mut without), median(&mut with));
            let cost = with - without;
            let share = median_of(&samples[server_workload][1], |s| s.server_us_per_call)
                .map_or_else(|| "n/a".to_owned(), |us| format!("{:.1}%", cost / (us * 10.0)));
            println!("| {name:<26} | {without:>15.0} | {with:>4.0} | {cost:>16.0} | {share:>28} |");
        }
    });
    drop((with, without));
}
