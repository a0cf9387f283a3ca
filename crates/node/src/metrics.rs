//! Prometheus metrics: the node's counters and gauges, the text exposition format (version
//! 0.0.4) they are written in, and the small HTTP listener that serves `GET /metrics` on its
//! own address (`trainchain node --metrics-bind`), apart from the authenticated JSON-RPC
//! server. The miner serves its metrics through the same [`Exposition`] and [`serve`].
//!
//! Counters are atomics bumped where the event happens ([`NodeMetrics`], kept in the
//! [`NodeHandle`]); gauges (tip height, peers, mempool) are read from the node when scraped.
//! A gauge with no value yet is left out of the output, never written as 0.

use crate::chain::{BlockOutcome, ChainError};
use crate::service::NodeHandle;
use bytes::Bytes;
use consensus::BlockError;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::Full;
use std::fmt::Write;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tracing::{debug, warn};

/// The only path served; anything else is 404.
pub const METRICS_PATH: &str = "/metrics";

/// The exposition format's content type (Prometheus text format 0.0.4).
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Connections served at once. A scraper holds one; a few more cover an operator's curl and a
/// second Prometheus. Past the cap, clients wait in the kernel's backlog and cost nothing.
pub const METRICS_CONNECTIONS_MAX: usize = 8;

/// Longest a client may take to send a request's headers (hyper's `header_read_timeout`,
/// which also closes a keep-alive connection idle that long). Prometheus scrapes every 15 s
/// by default and sends its headers at once; 10 s stops a silent client holding a slot.
pub const METRICS_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Largest read buffer of one connection (hyper's floor is 8 KiB). A scrape's headers are a
/// few hundred bytes; a longer request is refused rather than buffered.
pub const METRICS_READ_BUFFER_BYTES_MAX: usize = 16 * 1024;

/// A metric family's type, as `# TYPE` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
        }
    }
}

/// A sample's value: integers exactly, floats as Prometheus spells them (`+Inf`, `NaN`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value {
    Int(u64),
    Float(f64),
}

impl From<u64> for Value {
    fn from(v: u64) -> Self {
        Value::Int(v)
    }
}

impl From<f64> for Value {
    fn from(v: f64) -> Self {
        Value::Float(v)
    }
}

impl std::fmt::Display for Value {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            Value::Int(v) => write!(f, "{v}"),
            Value::Float(v) if v.is_nan() => f.write_str("NaN"),
            Value::Float(v) if v == f64::INFINITY => f.write_str("+Inf"),
            Value::Float(v) if v == f64::NEG_INFINITY => f.write_str("-Inf"),
            // Rust's shortest round-trip form, never an exponent: Prometheus parses it exactly.
            Value::Float(v) => write!(f, "{v}"),
        }
    }
}

/// Writes metric families in the text exposition format: `# HELP`, `# TYPE`, then samples.
/// Names and help texts are the caller's constants; label values are escaped.
#[derive(Debug, Default)]
pub struct Exposition {
    out: String,
}

impl Exposition {
    pub fn new() -> Self {
        Self::default()
    }

    /// One unlabelled sample; `None` (a gauge with no value yet) leaves the family out.
    pub fn metric(&mut self, name: &str, kind: Kind, help: &str, value: Option<Value>) {
        if let Some(value) = value {
            self.header(name, kind, help);
            let _ = writeln!(self.out, "{name} {value}");
        }
    }

    /// One sample per value of the label `label`, in the order given. An empty list leaves the
    /// family out.
    pub fn labelled(
        &mut self,
        name: &str,
        kind: Kind,
        help: &str,
        label: &str,
        samples: &[(&str, Value)],
    ) {
        if samples.is_empty() {
            return;
        }
        self.header(name, kind, help);
        for (label_value, value) in samples {
            let _ = writeln!(
                self.out,
                "{name}{{{label}=\"{}\"}} {value}",
                escape_label_value(label_value)
            );
        }
    }

    fn header(&mut self, name: &str, kind: Kind, help: &str) {
        let _ = writeln!(self.out, "# HELP {name} {help}");
        let _ = writeln!(self.out, "# TYPE {name} {}", kind.name());
    }

    pub fn finish(self) -> String {
        self.out
    }
}

/// A label value as the format quotes it: backslash, double quote and line feed escaped.
fn escape_label_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// Why a block was not accepted: the `reason` label of `trainchain_node_blocks_rejected_total`.
/// One value per kind of [`BlockError`] and of [`ChainError`], never free text, so the label
/// has a fixed, small set of values (all of them exported from the start, at 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectReason {
    Oversize,
    NoTransactions,
    FirstNotCoinbase,
    ExtraCoinbase,
    MerkleRootMismatch,
    MerkleMutated,
    Certificate,
    CertificateParentMismatch,
    BadProducerSignature,
    OutsideCertificateWindow,
    ModelLineageBroken,
    Transaction,
    ParentMismatch,
    CertificateHeightMismatch,
    CertificateReused,
    TimeTooOld,
    TimeTooNew,
    DoubleSpend,
    CoinbaseOverpays,
    /// The block was found invalid before (`BlockStatus::Invalid`).
    KnownInvalid,
    /// It builds on a block found invalid.
    InvalidAncestor,
    /// Its parent is unknown; the p2p layer keeps it as an orphan and processes it again once
    /// the parent arrives, so an orphan may count here first and as accepted later.
    Orphan,
    /// The node's own chain store failed: nothing is known about the block.
    NodeError,
}

impl RejectReason {
    /// Every reason, in the order they are exported.
    pub const ALL: [RejectReason; 23] = [
        RejectReason::Oversize,
        RejectReason::NoTransactions,
        RejectReason::FirstNotCoinbase,
        RejectReason::ExtraCoinbase,
        RejectReason::MerkleRootMismatch,
        RejectReason::MerkleMutated,
        RejectReason::Certificate,
        RejectReason::CertificateParentMismatch,
        RejectReason::BadProducerSignature,
        RejectReason::OutsideCertificateWindow,
        RejectReason::ModelLineageBroken,
        RejectReason::Transaction,
        RejectReason::ParentMismatch,
        RejectReason::CertificateHeightMismatch,
        RejectReason::CertificateReused,
        RejectReason::TimeTooOld,
        RejectReason::TimeTooNew,
        RejectReason::DoubleSpend,
        RejectReason::CoinbaseOverpays,
        RejectReason::KnownInvalid,
        RejectReason::InvalidAncestor,
        RejectReason::Orphan,
        RejectReason::NodeError,
    ];

    /// The reason of a refusal. The matches are exhaustive on purpose: a new error kind must
    /// be given a label here before the node compiles.
    pub fn of(error: &ChainError) -> RejectReason {
        match error {
            ChainError::Invalid { error, .. } => RejectReason::of_block(error),
            ChainError::KnownInvalid { .. } => RejectReason::KnownInvalid,
            ChainError::InvalidAncestor { .. } => RejectReason::InvalidAncestor,
            ChainError::Orphan { .. } => RejectReason::Orphan,
            ChainError::Store(_) | ChainError::WrongGenesis { .. } => RejectReason::NodeError,
        }
    }

    fn of_block(error: &BlockError) -> RejectReason {
        match error {
            BlockError::Oversize { .. } => RejectReason::Oversize,
            BlockError::NoTransactions => RejectReason::NoTransactions,
            BlockError::FirstNotCoinbase => RejectReason::FirstNotCoinbase,
            BlockError::ExtraCoinbase { .. } => RejectReason::ExtraCoinbase,
            BlockError::MerkleRootMismatch => RejectReason::MerkleRootMismatch,
            BlockError::MerkleMutated => RejectReason::MerkleMutated,
            BlockError::Certificate(_) => RejectReason::Certificate,
            BlockError::CertificateParentMismatch { .. } => RejectReason::CertificateParentMismatch,
            BlockError::BadProducerSignature => RejectReason::BadProducerSignature,
            BlockError::OutsideCertificateWindow { .. } => RejectReason::OutsideCertificateWindow,
            BlockError::ModelLineageBroken { .. } => RejectReason::ModelLineageBroken,
            BlockError::Tx { .. } => RejectReason::Transaction,
            BlockError::ParentMismatch { .. } => RejectReason::ParentMismatch,
            BlockError::CertificateHeightMismatch { .. } => RejectReason::CertificateHeightMismatch,
            BlockError::CertificateReused { .. } => RejectReason::CertificateReused,
            BlockError::TimeTooOld { .. } => RejectReason::TimeTooOld,
            BlockError::TimeTooNew { .. } => RejectReason::TimeTooNew,
            BlockError::DoubleSpend(_) => RejectReason::DoubleSpend,
            BlockError::CoinbaseOverpays { .. } => RejectReason::CoinbaseOverpays,
        }
    }

    /// The label value.
    pub fn label(self) -> &'static str {
        match self {
            RejectReason::Oversize => "oversize",
            RejectReason::NoTransactions => "no_transactions",
            RejectReason::FirstNotCoinbase => "first_not_coinbase",
            RejectReason::ExtraCoinbase => "extra_coinbase",
            RejectReason::MerkleRootMismatch => "merkle_root_mismatch",
            RejectReason::MerkleMutated => "merkle_mutated",
            RejectReason::Certificate => "certificate",
            RejectReason::CertificateParentMismatch => "certificate_parent_mismatch",
            RejectReason::BadProducerSignature => "bad_producer_signature",
            RejectReason::OutsideCertificateWindow => "outside_certificate_window",
            RejectReason::ModelLineageBroken => "model_lineage_broken",
            RejectReason::Transaction => "transaction",
            RejectReason::ParentMismatch => "parent_mismatch",
            RejectReason::CertificateHeightMismatch => "certificate_height_mismatch",
            RejectReason::CertificateReused => "certificate_reused",
            RejectReason::TimeTooOld => "time_too_old",
            RejectReason::TimeTooNew => "time_too_new",
            RejectReason::DoubleSpend => "double_spend",
            RejectReason::CoinbaseOverpays => "coinbase_overpays",
            RejectReason::KnownInvalid => "known_invalid",
            RejectReason::InvalidAncestor => "invalid_ancestor",
            RejectReason::Orphan => "orphan",
            RejectReason::NodeError => "node_error",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// The node's counters. Gauges are not kept here: they are read from the node when scraped.
#[derive(Debug, Default)]
pub struct NodeMetrics {
    blocks_accepted: AtomicU64,
    blocks_already_known: AtomicU64,
    blocks_rejected: [AtomicU64; RejectReason::ALL.len()],
    blocks_connected: AtomicU64,
    blocks_disconnected: AtomicU64,
    sync_blocks_received: AtomicU64,
}

impl NodeMetrics {
    /// Counts what processing one block (from RPC, gossip, sync or the orphan pool) came to.
    pub fn record_block(&self, result: &Result<BlockOutcome, ChainError>) {
        match result {
            Ok(BlockOutcome::AlreadyKnown) => {
                self.blocks_already_known.fetch_add(1, Ordering::Relaxed);
            }
            Ok(BlockOutcome::SideBranch) => {
                self.blocks_accepted.fetch_add(1, Ordering::Relaxed);
            }
            Ok(BlockOutcome::NewTip {
                disconnected,
                connected,
                ..
            }) => {
                self.blocks_accepted.fetch_add(1, Ordering::Relaxed);
                self.blocks_connected
                    .fetch_add(connected.len() as u64, Ordering::Relaxed);
                self.blocks_disconnected
                    .fetch_add(disconnected.len() as u64, Ordering::Relaxed);
            }
            Err(error) => {
                self.blocks_rejected[RejectReason::of(error).index()]
                    .fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Counts blocks that arrived in a sync response (before they are validated).
    pub fn add_sync_blocks_received(&self, n: u64) {
        self.sync_blocks_received.fetch_add(n, Ordering::Relaxed);
    }

    pub fn blocks_rejected(&self, reason: RejectReason) -> u64 {
        self.blocks_rejected[reason.index()].load(Ordering::Relaxed)
    }

    /// Writes the counters, and the gauges of `gauges`, in the exposition format.
    pub fn render(&self, gauges: &NodeGauges) -> String {
        let u = |c: &AtomicU64| Value::Int(c.load(Ordering::Relaxed));
        let mut out = Exposition::new();
        out.metric(
            "trainchain_node_tip_height",
            Kind::Gauge,
            "Height of the best chain's tip.",
            gauges.tip_height.map(|h| Value::Int(u64::from(h))),
        );
        if let Some(peers) = &gauges.peers {
            out.labelled(
                "trainchain_node_peers",
                Kind::Gauge,
                "Connected peers, by who dialed.",
                "direction",
                &[
                    ("inbound", Value::Int(peers.inbound)),
                    ("outbound", Value::Int(peers.outbound)),
                ],
            );
        }
        out.metric(
            "trainchain_node_banned_peers",
            Kind::Gauge,
            "Peers banned for misbehaviour.",
            gauges.peers.as_ref().map(|p| Value::Int(p.banned)),
        );
        out.metric(
            "trainchain_node_mempool_transactions",
            Kind::Gauge,
            "Transactions in the mempool.",
            gauges.mempool.map(|m| Value::Int(m.transactions)),
        );
        out.metric(
            "trainchain_node_mempool_bytes",
            Kind::Gauge,
            "Serialized size of the mempool's transactions.",
            gauges.mempool.map(|m| Value::Int(m.bytes)),
        );
        out.metric(
            "trainchain_node_blocks_accepted_total",
            Kind::Counter,
            "Blocks validated and stored (new tip or side branch).",
            Some(u(&self.blocks_accepted)),
        );
        out.metric(
            "trainchain_node_blocks_already_known_total",
            Kind::Counter,
            "Blocks received again that were already on the best chain.",
            Some(u(&self.blocks_already_known)),
        );
        let rejected: Vec<(&str, Value)> = RejectReason::ALL
            .iter()
            .map(|r| (r.label(), u(&self.blocks_rejected[r.index()])))
            .collect();
        out.labelled(
            "trainchain_node_blocks_rejected_total",
            Kind::Counter,
            "Blocks not accepted, by the kind of error.",
            "reason",
            &rejected,
        );
        out.metric(
            "trainchain_node_blocks_connected_total",
            Kind::Counter,
            "Blocks connected to the best chain, reorganisations included (its rate is the sync rate).",
            Some(u(&self.blocks_connected)),
        );
        out.metric(
            "trainchain_node_blocks_disconnected_total",
            Kind::Counter,
            "Blocks taken off the best chain by reorganisations.",
            Some(u(&self.blocks_disconnected)),
        );
        out.metric(
            "trainchain_node_sync_blocks_received_total",
            Kind::Counter,
            "Blocks received in sync responses from peers.",
            Some(u(&self.sync_blocks_received)),
        );
        out.finish()
    }
}

/// Peer counts, from the p2p task's last published status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerGauges {
    pub inbound: u64,
    pub outbound: u64,
    pub banned: u64,
}

/// Mempool size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MempoolGauges {
    pub transactions: u64,
    pub bytes: u64,
}

/// The node's gauges at one moment; `None` is a value not known (left out of the output).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeGauges {
    pub tip_height: Option<u32>,
    pub peers: Option<PeerGauges>,
    pub mempool: Option<MempoolGauges>,
}

impl NodeGauges {
    /// Reads the gauges from a running node. The tip is left out if the store cannot be read
    /// (logged), and the peers until the p2p task has published its status once.
    pub fn read(node: &NodeHandle) -> NodeGauges {
        let tip_height = match node.tip() {
            Ok((_, height)) => Some(height),
            Err(error) => {
                warn!(%error, "metrics: cannot read the tip");
                None
            }
        };
        let network = node.network();
        let peers = (!network.local_peer_id.is_empty()).then(|| {
            let inbound = network.peers.iter().filter(|p| p.inbound).count() as u64;
            PeerGauges {
                inbound,
                outbound: network.peers.len() as u64 - inbound,
                banned: network.banned.len() as u64,
            }
        });
        let info = node.mempool_info();
        NodeGauges {
            tip_height,
            peers,
            mempool: Some(MempoolGauges {
                transactions: info.count as u64,
                bytes: info.bytes as u64,
            }),
        }
    }
}

/// The node's whole `/metrics` body.
pub fn render_node(node: &NodeHandle) -> String {
    node.metrics().render(&NodeGauges::read(node))
}

/// What renders the body of a scrape; it runs on the blocking pool (it may take locks and read
/// the store).
pub type Render = Arc<dyn Fn() -> String + Send + Sync>;

/// A running `/metrics` listener; stopped when dropped.
#[derive(Debug)]
pub struct MetricsServer {
    pub local_addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl MetricsServer {
    /// `http://ADDRESS/metrics`.
    pub fn url(&self) -> String {
        format!("http://{}{METRICS_PATH}", self.local_addr)
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Binds `bind` (port 0 picks a free port) and serves `GET /metrics` with what `render`
/// returns, until the returned server is dropped.
pub async fn serve(bind: SocketAddr, render: Render) -> std::io::Result<MetricsServer> {
    let listener = TcpListener::bind(bind).await?;
    let local_addr = listener.local_addr()?;
    let task = tokio::spawn(accept_loop(listener, render));
    Ok(MetricsServer { local_addr, task })
}

/// At most [`METRICS_CONNECTIONS_MAX`] connections (a permit taken before `accept`), each
/// served by hyper's HTTP/1 with a header timeout and a bounded read buffer. The connections
/// are tasks of a `JoinSet` owned by this loop, so stopping the server (aborting the loop)
/// also ends every open connection and drops what `render` holds (the node's handle).
async fn accept_loop(listener: TcpListener, render: Render) {
    let connections = Arc::new(Semaphore::new(METRICS_CONNECTIONS_MAX));
    let mut open = tokio::task::JoinSet::new();
    loop {
        while open.try_join_next().is_some() {}
        let Ok(permit) = connections.clone().acquire_owned().await else {
            return;
        };
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                // Out of file descriptors, usually: back off instead of spinning.
                warn!(%error, "metrics: accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let render = render.clone();
        open.spawn(async move {
            let _permit = permit;
            let service = hyper::service::service_fn(move |request: Request<_>| {
                let render = render.clone();
                async move { Ok::<_, std::convert::Infallible>(respond(&request, render).await) }
            });
            let mut http = hyper::server::conn::http1::Builder::new();
            http.timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(METRICS_HEADER_READ_TIMEOUT)
                .max_buf_size(METRICS_READ_BUFFER_BYTES_MAX);
            let io = hyper_util::rt::TokioIo::new(stream);
            if let Err(error) = http.serve_connection(io, service).await {
                debug!(%peer, %error, "metrics: connection ended with an error");
            }
        });
    }
}

async fn respond<B>(request: &Request<B>, render: Render) -> Response<Full<Bytes>> {
    let status = |code: StatusCode, text: &'static str| {
        let mut response = Response::new(Full::new(Bytes::from_static(text.as_bytes())));
        *response.status_mut() = code;
        response
    };
    if request.uri().path() != METRICS_PATH {
        return status(StatusCode::NOT_FOUND, "not found; try /metrics\n");
    }
    if request.method() != Method::GET && request.method() != Method::HEAD {
        let mut response = status(StatusCode::METHOD_NOT_ALLOWED, "use GET\n");
        response
            .headers_mut()
            .insert(header::ALLOW, header::HeaderValue::from_static("GET, HEAD"));
        return response;
    }
    match tokio::task::spawn_blocking(move || render()).await {
        Ok(body) => {
            let mut response = Response::new(Full::new(Bytes::from(body)));
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                header::HeaderValue::from_static(CONTENT_TYPE),
            );
            response
        }
        Err(error) => {
            warn!(%error, "metrics: rendering failed");
            status(StatusCode::INTERNAL_SERVER_ERROR, "rendering failed\n")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bitcoin::hashes::Hash;
    use bitcoin::BlockHash;

    #[test]
    fn values_are_written_as_prometheus_reads_them() {
        assert_eq!(Value::Int(7).to_string(), "7");
        assert_eq!(Value::Float(0.25).to_string(), "0.25");
        assert_eq!(Value::Float(1e-7).to_string(), "0.0000001");
        assert_eq!(Value::Float(f64::INFINITY).to_string(), "+Inf");
        assert_eq!(Value::Float(f64::NEG_INFINITY).to_string(), "-Inf");
        assert_eq!(Value::Float(f64::NAN).to_string(), "NaN");
        assert_eq!(escape_label_value("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }

    #[test]
    fn an_absent_value_leaves_the_whole_family_out() {
        let mut out = Exposition::new();
        out.metric("x_seconds", Kind::Gauge, "X.", None);
        out.labelled("y_total", Kind::Counter, "Y.", "kind", &[]);
        out.metric("z_total", Kind::Counter, "Z.", Some(Value::Int(0)));
        assert_eq!(
            out.finish(),
            "# HELP z_total Z.\n# TYPE z_total counter\nz_total 0\n"
        );
    }

    #[test]
    fn reasons_are_distinct_snake_case_and_indexed_in_order() {
        let mut seen = std::collections::HashSet::new();
        for (i, reason) in RejectReason::ALL.iter().enumerate() {
            assert_eq!(reason.index(), i, "{reason:?}");
            let label = reason.label();
            assert!(seen.insert(label), "{label} twice");
            assert!(
                !label.is_empty() && label.chars().all(|c| c.is_ascii_lowercase() || c == '_'),
                "{label}"
            );
        }
    }

    fn hash(n: u8) -> BlockHash {
        BlockHash::from_byte_array([n; 32])
    }

    #[test]
    fn renders_exactly_with_unknown_gauges_absent() {
        let metrics = NodeMetrics::default();
        metrics.record_block(&Ok(BlockOutcome::NewTip {
            tip: hash(2),
            height: 2,
            disconnected: vec![],
            connected: vec![hash(1), hash(2)],
        }));
        metrics.record_block(&Ok(BlockOutcome::SideBranch));
        metrics.record_block(&Ok(BlockOutcome::AlreadyKnown));
        metrics.record_block(&Err(ChainError::Invalid {
            hash: hash(3),
            error: BlockError::TimeTooOld { time: 1, median: 2 },
        }));
        metrics.record_block(&Err(ChainError::Orphan {
            hash: hash(4),
            parent: hash(5),
        }));
        metrics.record_block(&Err(ChainError::Orphan {
            hash: hash(4),
            parent: hash(5),
        }));
        metrics.add_sync_blocks_received(3);
        assert_eq!(metrics.blocks_rejected(RejectReason::Orphan), 2);
        assert_eq!(metrics.blocks_rejected(RejectReason::TimeTooOld), 1);
        assert_eq!(metrics.blocks_rejected(RejectReason::TimeTooNew), 0);

        let text = metrics.render(&NodeGauges {
            tip_height: Some(2),
            peers: None,
            mempool: Some(MempoolGauges {
                transactions: 1,
                bytes: 250,
            }),
        });
        let rejected: String = RejectReason::ALL
            .iter()
            .map(|r| {
                let n = match r {
                    RejectReason::Orphan => 2,
                    RejectReason::TimeTooOld => 1,
                    _ => 0,
                };
                format!(
                    "trainchain_node_blocks_rejected_total{{reason=\"{}\"}} {n}\n",
                    r.label()
                )
            })
            .collect();
        let expected = format!(
            "# HELP trainchain_node_tip_height Height of the best chain's tip.\n\
             # TYPE trainchain_node_tip_height gauge\n\
             trainchain_node_tip_height 2\n\
             # HELP trainchain_node_mempool_transactions Transactions in the mempool.\n\
             # TYPE trainchain_node_mempool_transactions gauge\n\
             trainchain_node_mempool_transactions 1\n\
             # HELP trainchain_node_mempool_bytes Serialized size of the mempool's transactions.\n\
             # TYPE trainchain_node_mempool_bytes gauge\n\
             trainchain_node_mempool_bytes 250\n\
             # HELP trainchain_node_blocks_accepted_total Blocks validated and stored (new tip or side branch).\n\
             # TYPE trainchain_node_blocks_accepted_total counter\n\
             trainchain_node_blocks_accepted_total 2\n\
             # HELP trainchain_node_blocks_already_known_total Blocks received again that were already on the best chain.\n\
             # TYPE trainchain_node_blocks_already_known_total counter\n\
             trainchain_node_blocks_already_known_total 1\n\
             # HELP trainchain_node_blocks_rejected_total Blocks not accepted, by the kind of error.\n\
             # TYPE trainchain_node_blocks_rejected_total counter\n\
             {rejected}\
             # HELP trainchain_node_blocks_connected_total Blocks connected to the best chain, reorganisations included (its rate is the sync rate).\n\
             # TYPE trainchain_node_blocks_connected_total counter\n\
             trainchain_node_blocks_connected_total 2\n\
             # HELP trainchain_node_blocks_disconnected_total Blocks taken off the best chain by reorganisations.\n\
             # TYPE trainchain_node_blocks_disconnected_total counter\n\
             trainchain_node_blocks_disconnected_total 0\n\
             # HELP trainchain_node_sync_blocks_received_total Blocks received in sync responses from peers.\n\
             # TYPE trainchain_node_sync_blocks_received_total counter\n\
             trainchain_node_sync_blocks_received_total 3\n"
        );
        assert_eq!(text, expected);
        // Peers are absent until the p2p task reports; then all three gauges appear.
        assert!(!text.contains("trainchain_node_peers"));
        assert!(!text.contains("trainchain_node_banned_peers"));
        let text = metrics.render(&NodeGauges {
            tip_height: None,
            peers: Some(PeerGauges {
                inbound: 1,
                outbound: 2,
                banned: 0,
            }),
            mempool: None,
        });
        assert!(!text.contains("trainchain_node_tip_height"), "{text}");
        assert!(!text.contains("trainchain_node_mempool"), "{text}");
        assert!(text.contains(
            "# TYPE trainchain_node_peers gauge\n\
             trainchain_node_peers{direction=\"inbound\"} 1\n\
             trainchain_node_peers{direction=\"outbound\"} 2\n\
             # HELP trainchain_node_banned_peers"
        ));
        assert!(
            text.contains("\ntrainchain_node_banned_peers 0\n"),
            "{text}"
        );
    }
}
