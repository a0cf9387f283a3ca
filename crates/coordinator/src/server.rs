//! The HTTP API (axum) and the driver loop that moves cycles forward against a chain source.

use crate::api::{ApiError, CompactSignature, CycleRange, MINER_HEADER, SIGNATURE_HEADER};
use crate::chain::ChainSource;
use crate::error::ServiceError;
use crate::limits::{CYCLE_RECORDS_PER_PAGE_MAX, JSON_BODY_BYTES_MAX, UPDATE_BODY_BYTES_MAX};
use crate::service::{ChainView, Coordinator};
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, JsonRejection};
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use bitcoin::secp256k1::PublicKey;
use std::net::SocketAddr;
use std::path::{Path as FsPath, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::task::JoinHandle;
use tracing::{info, warn};

/// File (in the data directory) holding the API's base URL once bound, for devnets and tools.
pub const ADDRESS_FILE: &str = "coordinator.addr";

/// How often the driver advances the cycle and polls the node. A tenth of a second keeps
/// deadlines accurate for few-second test cycles and costs nothing for 20-minute ones.
pub const DRIVER_POLL: Duration = Duration::from_millis(100);

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn entropy() -> [u8; 32] {
    rand::random()
}

impl IntoResponse for ServiceError {
    fn into_response(self) -> Response {
        let status =
            StatusCode::from_u16(self.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        if status.is_server_error() {
            warn!(error = %self, "request failed");
        }
        let body = ApiError {
            error: self.code().to_owned(),
            message: self.to_string(),
        };
        (status, Json(body)).into_response()
    }
}

type Shared = Arc<Coordinator>;
type ApiResult<T> = Result<T, ServiceError>;

/// Runs a synchronous coordinator call off the async executor.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> ApiResult<T> + Send + 'static,
) -> ApiResult<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ServiceError::BadRequest(format!("request task failed: {e}")))?
}

fn parse_miner(text: &str) -> ApiResult<PublicKey> {
    PublicKey::from_str(text)
        .map_err(|_| ServiceError::BadRequest(format!("{text:?} is not a public key")))
}

fn binary(bytes: Vec<u8>) -> Response {
    ([(header::CONTENT_TYPE, "application/octet-stream")], bytes).into_response()
}

/// The router with every route and its body limit.
pub fn router(coordinator: Shared) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .route("/v1/cycle", get(cycle_status))
        .route("/v1/register", post(register))
        .route("/v1/cycles", get(cycle_records))
        .route("/v1/cycles/{cycle}/record", get(cycle_record))
        .route("/v1/cycles/{cycle}/task/{miner}", get(task))
        .route("/v1/cycles/{cycle}/shard/{miner}", get(shard))
        .route("/v1/cycles/{cycle}/weights", get(weights))
        .route(
            "/v1/cycles/{cycle}/submit",
            post(submit).layer(DefaultBodyLimit::max(UPDATE_BODY_BYTES_MAX)),
        )
        .route("/v1/cycles/{cycle}/certificates/{miner}", get(certificates))
        .route("/v1/model", get(model_weights))
        .route("/v1/model/card", get(model_card))
        .layer(DefaultBodyLimit::max(JSON_BODY_BYTES_MAX))
        .with_state(coordinator)
}

async fn health(State(c): State<Shared>) -> ApiResult<Response> {
    Ok(Json(c.health()?).into_response())
}

async fn metrics(State(c): State<Shared>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        c.metrics.render(),
    )
        .into_response()
}

async fn cycle_status(State(c): State<Shared>) -> ApiResult<Response> {
    Ok(Json(c.status(now_ms())?).into_response())
}

async fn register(
    State(c): State<Shared>,
    body: Result<Json<crate::api::RegisterRequest>, JsonRejection>,
) -> ApiResult<Response> {
    let Json(request) = body.map_err(|e| ServiceError::BadRequest(e.body_text()))?;
    let response = blocking(move || c.register(now_ms(), entropy(), request)).await?;
    Ok(Json(response).into_response())
}

async fn task(
    State(c): State<Shared>,
    Path((cycle, miner)): Path<(u64, String)>,
) -> ApiResult<Response> {
    let miner = parse_miner(&miner)?;
    let task = blocking(move || c.task(now_ms(), cycle, &miner)).await?;
    Ok(Json(task).into_response())
}

async fn shard(
    State(c): State<Shared>,
    Path((cycle, miner)): Path<(u64, String)>,
) -> ApiResult<Response> {
    let miner = parse_miner(&miner)?;
    let bytes = blocking(move || c.shard(now_ms(), cycle, &miner)).await?;
    Ok(binary(bytes))
}

async fn weights(State(c): State<Shared>, Path(cycle): Path<u64>) -> ApiResult<Response> {
    let bytes = blocking(move || c.weights(cycle)).await?;
    Ok(binary(bytes.as_ref().clone()))
}

async fn submit(
    State(c): State<Shared>,
    Path(cycle): Path<u64>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let header_text = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
            .ok_or_else(|| ServiceError::BadRequest(format!("missing header {name}")))
    };
    let body = body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ServiceError::BadUpdate(learning::UpdateError::Oversize {
                bytes: UPDATE_BODY_BYTES_MAX + 1,
                limit_bytes: UPDATE_BODY_BYTES_MAX,
            })
        } else {
            ServiceError::BadRequest(e.body_text())
        }
    })?;
    let miner = parse_miner(&header_text(MINER_HEADER)?)?;
    let signature = CompactSignature::from_str(&header_text(SIGNATURE_HEADER)?)
        .map_err(|_| ServiceError::BadRequest(format!("{SIGNATURE_HEADER} is not 64 hex bytes")))?;
    let receipt =
        blocking(move || c.submit(now_ms(), entropy(), cycle, miner, signature, &body)).await?;
    Ok(Json(receipt).into_response())
}

async fn certificates(
    State(c): State<Shared>,
    Path((cycle, miner)): Path<(u64, String)>,
) -> ApiResult<Response> {
    let miner = parse_miner(&miner)?;
    Ok(Json(c.certificates(cycle, &miner)?).into_response())
}

async fn cycle_record(State(c): State<Shared>, Path(cycle): Path<u64>) -> ApiResult<Response> {
    Ok(Json(blocking(move || c.record(cycle)).await?).into_response())
}

async fn cycle_records(
    State(c): State<Shared>,
    Query(range): Query<CycleRange>,
) -> ApiResult<Response> {
    let limit = range.limit.min(CYCLE_RECORDS_PER_PAGE_MAX);
    Ok(Json(blocking(move || c.records(range.from, limit)).await?).into_response())
}

async fn model_weights(State(c): State<Shared>) -> ApiResult<Response> {
    let (bytes, _) = blocking(move || c.latest_model()).await?;
    Ok(binary(bytes))
}

async fn model_card(State(c): State<Shared>) -> ApiResult<Response> {
    let (_, card) = blocking(move || c.latest_model()).await?;
    Ok(Json(card).into_response())
}

/// One driver step: read the chain if needed, then advance the coordinator.
pub async fn drive_once<C: ChainSource>(coordinator: &Shared, chain: &C) -> ApiResult<()> {
    let view = if coordinator.needs_chain() {
        let (tip, tip_height) = chain.tip().await?;
        let at_target = match coordinator.watched_height() {
            Some(height) => chain.block_at(height).await?,
            None => None,
        };
        Some(ChainView {
            tip,
            tip_height,
            at_target,
        })
    } else {
        None
    };
    let c = coordinator.clone();
    blocking(move || c.step(now_ms(), entropy(), view.as_ref()).map(drop)).await
}

/// Advances cycles forever, every [`DRIVER_POLL`]; errors (node down) are logged and retried.
pub async fn drive<C: ChainSource>(coordinator: Shared, chain: Arc<C>) {
    let mut interval = tokio::time::interval(DRIVER_POLL);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        if let Err(e) = drive_once(&coordinator, chain.as_ref()).await {
            warn!(error = %e, "coordinator step failed; retrying");
        }
    }
}

/// A running coordinator: the HTTP server and the driver.
pub struct Running {
    pub address: SocketAddr,
    pub server: JoinHandle<()>,
    pub driver: JoinHandle<()>,
}

impl Running {
    /// Stops both tasks (what `kill` does to a process, minus the process).
    pub fn abort(&self) {
        self.server.abort();
        self.driver.abort();
    }
}

/// Binds `bind` (port 0: the OS chooses), writes the URL to `<data_dir>/coordinator.addr`,
/// and runs the API and the driver on the current runtime.
pub async fn start<C: ChainSource>(
    coordinator: Shared,
    chain: Arc<C>,
    bind: SocketAddr,
    data_dir: &FsPath,
) -> std::io::Result<Running> {
    let listener = tokio::net::TcpListener::bind(bind).await?;
    let address = listener.local_addr()?;
    write_address_file(data_dir, address)?;
    info!(%address, "coordinator API listening");
    let app = router(coordinator.clone());
    let server = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            warn!(error = %e, "coordinator API stopped");
        }
    });
    let driver = tokio::spawn(drive(coordinator, chain));
    Ok(Running {
        address,
        server,
        driver,
    })
}

/// Writes `http://ADDRESS` to the address file, atomically (temp file + rename).
fn write_address_file(data_dir: &FsPath, address: SocketAddr) -> std::io::Result<PathBuf> {
    let path = data_dir.join(ADDRESS_FILE);
    let temp = data_dir.join(format!("{ADDRESS_FILE}.tmp"));
    std::fs::write(&temp, format!("http://{address}\n"))?;
    std::fs::rename(&temp, &path)?;
    Ok(path)
}
