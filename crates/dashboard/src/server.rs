//! The HTTP server (axum) and the poller that keeps its snapshot fresh.
//!
//! Routes (all GET; a bad parameter is 400 with the reason, a missing thing 404):
//! `/` overview, `/cycles?from=C&count=N`, `/cycles/{c}`, `/plots?cycles=N`,
//! `/chain?before=H&count=N`, `/block/{height or hash}`, `/tx/{txid}?block=HASH`, `/live.json`
//! (what the live script polls) and `/live.js` (the script itself: pages allow scripts from
//! this origin only, so markup that slipped into a page could not run one).

use crate::html::message_page;
use crate::limits::{
    BLOCKS_PER_PAGE_DEFAULT, BLOCKS_PER_PAGE_MAX, CYCLES_PER_PAGE_DEFAULT, CYCLES_PER_PAGE_MAX,
    NODE_READS_IN_FLIGHT_MAX, PLOT_CYCLES_MAX, POLL_INTERVAL, REQUESTS_IN_FLIGHT_MAX,
};
use crate::pages;
use crate::query::{self, BadRequest, BlockId, Params};
use crate::snapshot::{refresh, Snapshot};
use crate::sources::{SourceError, Sources};
use crate::view::{deadline, phase_name};
use axum::extract::{Path, RawQuery, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use bitcoin::BlockHash;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Instant;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tracing::info;

/// Blocks searched for a transaction named without its block (a slash transaction linked
/// from a cycle page): the newest ones kept, each one `getblock`.
pub const TX_SEARCH_BLOCKS_MAX: usize = 16;

/// The state every handler shares.
pub struct App<S> {
    snapshot: RwLock<Arc<Snapshot>>,
    sources: Arc<S>,
    node_reads: Semaphore,
    requests: Semaphore,
    /// The coordinator's base URL, for links to its published evidence.
    coordinator_url: String,
}

impl<S> App<S> {
    fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }
}

/// A response of the server.
enum Answer {
    Html(String),
    Json(serde_json::Value),
    Refused(BadRequest),
    Missing(String),
    Upstream(SourceError),
}

impl From<BadRequest> for Answer {
    fn from(e: BadRequest) -> Self {
        Answer::Refused(e)
    }
}

impl From<SourceError> for Answer {
    fn from(e: SourceError) -> Self {
        Answer::Upstream(e)
    }
}

/// What pages may load: styles inline, scripts and fetches from this origin only.
const CONTENT_SECURITY_POLICY: &str =
    "default-src 'none'; style-src 'unsafe-inline'; script-src 'self'; connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'";

fn html(status: StatusCode, body: String) -> Response {
    let mut response = (status, body).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    response
}

impl IntoResponse for Answer {
    fn into_response(self) -> Response {
        let mut response = match self {
            Answer::Html(body) => html(StatusCode::OK, body),
            Answer::Json(value) => (StatusCode::OK, axum::Json(value)).into_response(),
            Answer::Refused(e) => html(StatusCode::BAD_REQUEST, message_page("Bad request", &e.0)),
            Answer::Missing(what) => html(StatusCode::NOT_FOUND, message_page("Not found", &what)),
            Answer::Upstream(e) => html(
                StatusCode::BAD_GATEWAY,
                message_page("Upstream unavailable", &e.to_string()),
            ),
        };
        let headers = response.headers_mut();
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        headers.insert(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        );
        response
    }
}

type Shared<S> = State<Arc<App<S>>>;

async fn overview<S: Sources>(State(app): Shared<S>, RawQuery(q): RawQuery) -> Answer {
    match Params::parse(q.as_deref(), &[]) {
        Ok(_) => Answer::Html(pages::overview::render(&app.snapshot())),
        Err(e) => e.into(),
    }
}

async fn cycles<S: Sources>(State(app): Shared<S>, RawQuery(q): RawQuery) -> Answer {
    let run = || -> Result<Answer, BadRequest> {
        let p = Params::parse(q.as_deref(), &["from", "count"])?;
        let from = p.optional("from", 0, u64::MAX)?;
        let count = p.number("count", 1, CYCLES_PER_PAGE_MAX, CYCLES_PER_PAGE_DEFAULT)?;
        Ok(Answer::Html(pages::cycles::list(
            &app.snapshot(),
            from,
            count,
        )))
    };
    run().unwrap_or_else(Answer::from)
}

async fn cycle<S: Sources>(
    State(app): Shared<S>,
    Path(cycle): Path<String>,
    RawQuery(q): RawQuery,
) -> Answer {
    let run = || -> Result<Answer, BadRequest> {
        Params::parse(q.as_deref(), &[])?;
        let cycle = query::bounded("cycle", &cycle, 0, u64::MAX)?;
        let snapshot = app.snapshot();
        Ok(
            match pages::cycles::detail(&snapshot, cycle, &app.coordinator_url) {
                Some(page) => Answer::Html(page),
                None => Answer::Missing(format!(
                    "cycle {cycle} is not among the {} newest records kept",
                    crate::limits::RECORDS_KEPT_MAX
                )),
            },
        )
    };
    run().unwrap_or_else(Answer::from)
}

async fn plots<S: Sources>(State(app): Shared<S>, RawQuery(q): RawQuery) -> Answer {
    let run = || -> Result<Answer, BadRequest> {
        let p = Params::parse(q.as_deref(), &["cycles"])?;
        let cycles = p.number("cycles", 1, PLOT_CYCLES_MAX, PLOT_CYCLES_MAX)?;
        Ok(Answer::Html(pages::plots::render(&app.snapshot(), cycles)))
    };
    run().unwrap_or_else(Answer::from)
}

async fn chain<S: Sources>(State(app): Shared<S>, RawQuery(q): RawQuery) -> Answer {
    let run = || -> Result<Answer, BadRequest> {
        let p = Params::parse(q.as_deref(), &["before", "count"])?;
        let before = p.optional("before", 0, u64::from(u32::MAX))?;
        let count = p.number("count", 1, BLOCKS_PER_PAGE_MAX, BLOCKS_PER_PAGE_DEFAULT)?;
        Ok(Answer::Html(pages::chain::list(
            &app.snapshot(),
            before,
            count,
        )))
    };
    run().unwrap_or_else(Answer::from)
}

/// The best chain's height of `hash`, if it is on it.
async fn best_height<S: Sources>(
    app: &App<S>,
    hash: BlockHash,
    height: u32,
) -> Result<Option<u32>, SourceError> {
    Ok((app.sources.block_hash(height).await? == Some(hash)).then_some(height))
}

async fn block<S: Sources>(
    State(app): Shared<S>,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
) -> Answer {
    let id = match Params::parse(q.as_deref(), &[]).and_then(|_| query::block_id(&id)) {
        Ok(id) => id,
        Err(e) => return e.into(),
    };
    let Ok(_permit) = app.node_reads.acquire().await else {
        return Answer::Missing("the server is stopping".into());
    };
    let result = async {
        let hash = match id {
            BlockId::Hash(hash) => hash,
            BlockId::Height(h) => match app.sources.block_hash(h).await? {
                Some(hash) => hash,
                None => {
                    return Ok(Answer::Missing(format!(
                        "no block at height {h} on the best chain"
                    )))
                }
            },
        };
        let Some(found) = app.sources.block(hash).await? else {
            return Ok(Answer::Missing(format!("the node has no block {hash}")));
        };
        let height = best_height(&app, hash, found.height()).await?;
        Ok(Answer::Html(pages::chain::block(
            &app.snapshot(),
            &found,
            height,
        )))
    };
    result.await.unwrap_or_else(Answer::Upstream)
}

async fn tx<S: Sources>(
    State(app): Shared<S>,
    Path(txid): Path<String>,
    RawQuery(q): RawQuery,
) -> Answer {
    let parsed = Params::parse(q.as_deref(), &["block"])
        .and_then(|p| Ok((query::txid("txid", &txid)?, p.block_hash("block")?)));
    let (txid, in_block) = match parsed {
        Ok(x) => x,
        Err(e) => return e.into(),
    };
    let Ok(_permit) = app.node_reads.acquire().await else {
        return Answer::Missing("the server is stopping".into());
    };
    let snapshot = app.snapshot();
    let result = async {
        let candidates: Vec<BlockHash> = match in_block {
            Some(hash) => vec![hash],
            None => {
                if let Some(tx) = app.sources.mempool_tx(txid).await? {
                    return Ok(Answer::Html(pages::chain::tx(&snapshot, &tx, None)));
                }
                snapshot
                    .blocks
                    .values()
                    .rev()
                    .take(TX_SEARCH_BLOCKS_MAX)
                    .map(|b| b.hash)
                    .collect()
            }
        };
        for hash in candidates {
            if let Some(block) = app.sources.block(hash).await? {
                if let Some(tx) = block.txdata.iter().find(|t| t.compute_txid() == txid) {
                    return Ok(Answer::Html(pages::chain::tx(&snapshot, tx, Some(hash))));
                }
            }
        }
        Ok(Answer::Missing(match in_block {
            Some(hash) => format!("block {hash} has no transaction {txid}"),
            None => format!(
                "transaction {txid} is neither in the node's mempool nor in the newest {TX_SEARCH_BLOCKS_MAX} blocks; name its block with ?block=HASH"
            ),
        }))
    };
    result.await.unwrap_or_else(Answer::Upstream)
}

/// The live state, as the live script polls it.
pub fn live_json(s: &Snapshot) -> serde_json::Value {
    let elapsed = s.polled_at.map_or(0, |at| at.elapsed().as_millis() as u64);
    let status = s.status.as_ref();
    let record = status.and_then(|st| s.records.get(&st.announcement.announcement.cycle));
    let remaining = status.and_then(|st| {
        deadline(st, record).map(|(at, _)| at.saturating_sub(st.now_ms.saturating_add(elapsed)))
    });
    serde_json::json!({
        "generation": s.generation,
        "cycle": status.map(|st| st.announcement.announcement.cycle),
        "phase": status.map(|st| phase_name(st.phase)),
        "attempt": status.and_then(|st| st.attempt),
        "registered": status.map(|st| st.registered),
        "submitted": status.map(|st| st.submitted),
        "remaining_ms": remaining,
        "tip_height": s.tip.map(|(h, _)| h),
        "tip_hash": s.tip.map(|(_, h)| h.to_string()),
        "finished_cycles": s.closed_cycles().count(),
        "coordinator_error": s.coordinator_error,
        "node_error": s.node_error,
    })
}

async fn live<S: Sources>(State(app): Shared<S>, RawQuery(q): RawQuery) -> Answer {
    match Params::parse(q.as_deref(), &[]) {
        Ok(_) => Answer::Json(live_json(&app.snapshot())),
        Err(e) => e.into(),
    }
}

async fn live_script() -> Response {
    let mut response = crate::html::LIVE_SCRIPT.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/javascript; charset=utf-8"),
    );
    response
}

async fn not_found() -> Answer {
    Answer::Missing("no such page: try / , /cycles, /plots or /chain".into())
}

/// Holds a request slot while it is served ([`REQUESTS_IN_FLIGHT_MAX`]); past the cap a
/// request is answered 503 at once instead of queueing without bound.
async fn limit<S: Sources>(State(app): Shared<S>, request: Request, next: Next) -> Response {
    match app.requests.try_acquire() {
        Ok(_permit) => next.run(request).await,
        Err(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "too many requests in flight; retry in a moment",
        )
            .into_response(),
    }
}

/// The router over `app`.
pub fn router<S: Sources>(app: Arc<App<S>>) -> Router {
    Router::new()
        .route("/", get(overview::<S>))
        .route("/cycles", get(cycles::<S>))
        .route("/cycles/{cycle}", get(cycle::<S>))
        .route("/plots", get(plots::<S>))
        .route("/chain", get(chain::<S>))
        .route("/block/{id}", get(block::<S>))
        .route("/tx/{txid}", get(tx::<S>))
        .route("/live.json", get(live::<S>))
        .route("/live.js", get(live_script))
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(app.clone(), limit::<S>))
        .with_state(app)
}

/// What the dashboard is told besides its sources.
#[derive(Debug, Clone)]
pub struct Options {
    pub bind: SocketAddr,
    /// The coordinator's base URL (for evidence links).
    pub coordinator_url: String,
    /// Miner report files for the useful-work fraction.
    pub miner_reports: Vec<std::path::PathBuf>,
    /// Miner names by key (hex).
    pub labels: std::collections::BTreeMap<String, String>,
}

/// A running dashboard: its server and poller stop when this is dropped.
pub struct Dashboard {
    pub addr: SocketAddr,
    pub url: String,
    server: JoinHandle<()>,
    poller: JoinHandle<()>,
}

impl Drop for Dashboard {
    fn drop(&mut self) {
        self.server.abort();
        self.poller.abort();
    }
}

impl Dashboard {
    /// Binds `options.bind`, takes a first snapshot, and serves until dropped.
    pub async fn start<S: Sources>(sources: S, options: Options) -> std::io::Result<Dashboard> {
        let listener = tokio::net::TcpListener::bind(options.bind).await?;
        let addr = listener.local_addr()?;
        let sources = Arc::new(sources);
        let mut working = Snapshot {
            labels: options.labels,
            useful_work: crate::reports::UsefulWork::new(options.miner_reports),
            ..Snapshot::default()
        };
        refresh(&mut working, sources.as_ref()).await;
        working.polled_at = Some(Instant::now());
        let app = Arc::new(App {
            snapshot: RwLock::new(Arc::new(working.clone())),
            sources: sources.clone(),
            node_reads: Semaphore::new(NODE_READS_IN_FLIGHT_MAX),
            requests: Semaphore::new(REQUESTS_IN_FLIGHT_MAX),
            coordinator_url: options.coordinator_url.trim_end_matches('/').to_owned(),
        });
        let poller = {
            let app = app.clone();
            tokio::spawn(async move {
                let mut interval = tokio::time::interval(POLL_INTERVAL);
                interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                interval.tick().await;
                loop {
                    interval.tick().await;
                    refresh(&mut working, sources.as_ref()).await;
                    working.polled_at = Some(Instant::now());
                    *app.snapshot.write().unwrap_or_else(|p| p.into_inner()) =
                        Arc::new(working.clone());
                }
            })
        };
        let router = router(app);
        let server = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, router).await {
                tracing::warn!(error = %e, "the dashboard server stopped");
            }
        });
        let url = format!("http://{addr}/");
        info!(%url, "dashboard serving");
        Ok(Dashboard {
            addr,
            url,
            server,
            poller,
        })
    }
}
