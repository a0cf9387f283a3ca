//! `trainchain node --metrics-bind`: a real node serves Prometheus text on its own listener,
//! named in node.json; the counters follow blocks from RPC (accepted, duplicate, rejected by
//! reason) and from sync, and the gauges follow the tip and the peers.

mod support;

use bitcoin::secp256k1::Secp256k1;
use serde_json::Value;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;
use support::{eventually, start_node_with_args, NodeProcess};
use testkit::{key, replace_producer_signature, TestChain};

/// Longest one scrape may take on a loaded machine.
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(10);

/// An HTTP/1.1 response: status code, headers (names lower-cased), body.
struct Scrape {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Scrape {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The value of the sample written exactly as `series` (name and labels), if present.
    fn sample(&self, series: &str) -> Option<f64> {
        self.body.lines().find_map(|line| {
            let value = line.strip_prefix(series)?.strip_prefix(' ')?;
            Some(value.parse().unwrap())
        })
    }
}

/// `method path` against `http://ADDR/...`, with a plain socket: no client library between
/// the test and what the node writes.
fn request(url: &str, method: &str, path: &str) -> Scrape {
    let addr = url
        .strip_prefix("http://")
        .and_then(|rest| rest.split('/').next())
        .unwrap_or_else(|| panic!("not an http URL: {url}"));
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(SCRAPE_TIMEOUT)).unwrap();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = String::new();
    stream.read_to_string(&mut raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").expect("a complete response");
    let mut lines = head.lines();
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Scrape {
        status,
        headers,
        body: body.to_owned(),
    }
}

fn scrape(node: &NodeProcess) -> Scrape {
    let scrape = request(&metrics_url(node), "GET", "/metrics");
    assert_eq!(scrape.status, 200, "{}", scrape.body);
    scrape
}

fn metrics_url(node: &NodeProcess) -> String {
    let runtime: Value =
        serde_json::from_str(&std::fs::read_to_string(node.dir.join("node.json")).unwrap())
            .unwrap();
    runtime["metrics_url"]
        .as_str()
        .unwrap_or_else(|| panic!("no metrics_url in {runtime}"))
        .to_owned()
}

async fn start(dir: &std::path::Path, chain: &TestChain, peers: &[&str]) -> NodeProcess {
    start_node_with_args(
        dir,
        &chain.params,
        peers,
        &["--metrics-bind", "127.0.0.1:0"],
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_serves_prometheus_metrics_that_follow_its_blocks_and_peers() {
    let dir = tempfile::tempdir().unwrap();
    let chain = TestChain::new();
    let first = start(&dir.path().join("a"), &chain, &[]).await;
    let url = metrics_url(&first);
    assert!(
        url.starts_with("http://127.0.0.1:") && url.ends_with("/metrics"),
        "{url}"
    );
    assert!(first.log().contains("metrics listening"), "{}", first.log());

    let fresh = scrape(&first);
    assert_eq!(
        fresh.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    assert_eq!(fresh.sample("trainchain_node_tip_height"), Some(0.0));
    assert_eq!(
        fresh.sample("trainchain_node_blocks_accepted_total"),
        Some(0.0)
    );
    assert_eq!(
        fresh.sample("trainchain_node_blocks_rejected_total{reason=\"orphan\"}"),
        Some(0.0)
    );
    assert_eq!(
        fresh.sample("trainchain_node_mempool_transactions"),
        Some(0.0)
    );
    assert!(fresh
        .body
        .contains("# TYPE trainchain_node_blocks_rejected_total counter\n"));

    // Blocks over RPC: an orphan first, then the chain, a duplicate, and a forgery.
    let miner = key(1);
    let blocks = chain.empty_chain(4, &miner);
    assert_eq!(first.submit(&blocks[1]).await, "prev-blk-not-found");
    for block in &blocks[..3] {
        assert_eq!(first.submit(block).await, Value::Null);
    }
    assert_eq!(first.submit(&blocks[2]).await, "duplicate");
    // The producer signature is not part of the block hash: signed by another key, the next
    // block is refused (and not remembered as invalid).
    let forged = replace_producer_signature(&Secp256k1::new(), &blocks[3], &key(9));
    let refusal = first.submit(&forged).await;
    assert!(
        refusal.as_str().unwrap().starts_with("rejected: "),
        "{refusal}"
    );
    let after = scrape(&first);
    for (series, value) in [
        ("trainchain_node_tip_height", 3.0),
        ("trainchain_node_blocks_accepted_total", 3.0),
        ("trainchain_node_blocks_connected_total", 3.0),
        ("trainchain_node_blocks_disconnected_total", 0.0),
        ("trainchain_node_blocks_already_known_total", 1.0),
        (
            "trainchain_node_blocks_rejected_total{reason=\"orphan\"}",
            1.0,
        ),
        (
            "trainchain_node_blocks_rejected_total{reason=\"bad_producer_signature\"}",
            1.0,
        ),
        (
            "trainchain_node_blocks_rejected_total{reason=\"known_invalid\"}",
            0.0,
        ),
        ("trainchain_node_sync_blocks_received_total", 0.0),
        ("trainchain_node_peers{direction=\"inbound\"}", 0.0),
    ] {
        assert_eq!(
            after.sample(series),
            Some(value),
            "{series}:\n{}",
            after.body
        );
    }

    // A second node syncs the chain from the first: blocks arrive by sync, and each side
    // counts the other as a peer in its direction.
    let second = start(&dir.path().join("b"), &chain, &[&first.p2p_addr]).await;
    let tip = blocks[2].block_hash().to_string();
    eventually("the second node syncs", || async {
        second.tip().await == tip
    })
    .await;
    let synced = scrape(&second);
    assert_eq!(synced.sample("trainchain_node_tip_height"), Some(3.0));
    assert_eq!(
        synced.sample("trainchain_node_blocks_connected_total"),
        Some(3.0)
    );
    let received = synced
        .sample("trainchain_node_sync_blocks_received_total")
        .unwrap();
    assert!(received >= 1.0, "{}", synced.body);
    eventually("each node counts the other as a peer", || async {
        scrape(&second).sample("trainchain_node_peers{direction=\"outbound\"}") == Some(1.0)
            && scrape(&first).sample("trainchain_node_peers{direction=\"inbound\"}") == Some(1.0)
    })
    .await;

    // Only GET /metrics is served.
    assert_eq!(request(&url, "GET", "/").status, 404);
    assert_eq!(request(&url, "POST", "/metrics").status, 405);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_flag_there_is_no_metrics_listener() {
    let dir = tempfile::tempdir().unwrap();
    let chain = TestChain::new();
    let node = start_node_with_args(&dir.path().join("n"), &chain.params, &[], &[]).await;
    let runtime: Value =
        serde_json::from_str(&std::fs::read_to_string(node.dir.join("node.json")).unwrap())
            .unwrap();
    assert_eq!(runtime["metrics_url"], Value::Null, "{runtime}");
    assert!(!node.log().contains("metrics listening"), "{}", node.log());
}
