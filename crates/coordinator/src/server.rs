//! The HTTP API (axum) and the driver loop that moves cycles forward against a chain source.

use crate::api::{
    ApiError, CompactSignature, CycleRange, JOB_BODY_BYTES_MAX, MINER_HEADER, SIGNATURE_HEADER,
    STEPS_HEADER, TASK_HASH_HEADER, TRANSCRIPT_ROOT_HEADER,
};
use crate::chain::{ChainError, ChainSource, UnspentOutput};
use crate::error::ServiceError;
use crate::limits::{
    ServerLimits, CONNECTION_READ_BUFFER_BYTES_MAX, CYCLE_RECORDS_PER_PAGE_MAX,
    JSON_BODY_BYTES_MAX, REGISTRATION_ADDRESSES_MAX, UPDATE_BODY_BYTES_MAX,
};
use crate::service::SubmissionClaim;
use crate::service::{ChainView, Coordinator};
use axum::body::{Body, Bytes};
use axum::extract::connect_info::ConnectInfo;
use axum::extract::rejection::JsonRejection;
use axum::extract::{DefaultBodyLimit, Path, Query, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use bitcoin::secp256k1::PublicKey;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use http_body_util::BodyExt;
use primitives::Hash256;
use std::collections::HashSet;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::path::{Path as FsPath, PathBuf};
use std::pin::Pin;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::{Semaphore, SemaphorePermit};
use tokio::task::JoinHandle;
use tower::{Service, ServiceExt};
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::RequestBodyTimeoutLayer;
use tracing::{debug, info, warn};

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

type ApiResult<T> = Result<T, ServiceError>;

/// Reads an unspent output through the coordinator's chain source (`ChainSource` itself is
/// not object-safe, and the router is not generic over it).
pub type CoinReader = Arc<
    dyn Fn(
            bitcoin::OutPoint,
        )
            -> Pin<Box<dyn Future<Output = Result<Option<UnspentOutput>, ChainError>> + Send>>
        + Send
        + Sync,
>;

/// The [`CoinReader`] of a chain source.
pub fn coin_reader<C: ChainSource>(chain: Arc<C>) -> CoinReader {
    Arc::new(move |outpoint| {
        let chain = chain.clone();
        Box::pin(async move { chain.unspent_output(outpoint).await })
    })
}

/// The state every handler shares: the coordinator and the server's own limits.
pub struct Api {
    coordinator: Arc<Coordinator>,
    limits: ServerLimits,
    uploads: UploadGate,
    /// One token bucket per peer address: a flood from one address spends only its own.
    registrations: DefaultKeyedRateLimiter<IpAddr>,
    /// Where bonds are read; without one a registration naming a bond is refused
    /// `bond_not_found`.
    coins: Option<CoinReader>,
    /// One job post is read and checked at a time: each may be tens of megabytes to parse,
    /// write and load, so a flood of posts waits on one slot instead of filling memory.
    job_posts: tokio::sync::Semaphore,
}

type Shared = Arc<Api>;

impl Api {
    pub fn new(coordinator: Arc<Coordinator>, limits: ServerLimits) -> Self {
        Self::with_coins(coordinator, limits, None)
    }

    /// An API that reads bonds through `coins`.
    pub fn with_coins(
        coordinator: Arc<Coordinator>,
        limits: ServerLimits,
        coins: Option<CoinReader>,
    ) -> Self {
        let rate =
            NonZeroU32::new(limits.registrations_per_address_per_second).unwrap_or(NonZeroU32::MIN);
        let burst =
            NonZeroU32::new(limits.registration_burst_per_address).unwrap_or(NonZeroU32::MIN);
        Api {
            coordinator,
            limits,
            uploads: UploadGate::new(&limits),
            registrations: RateLimiter::keyed(Quota::per_second(rate).allow_burst(burst)),
            coins,
            job_posts: tokio::sync::Semaphore::new(1),
        }
    }

    /// Takes one registration token of `peer`'s bucket.
    fn take_registration_token(&self, peer: IpAddr) -> ApiResult<()> {
        if self.registrations.len() >= REGISTRATION_ADDRESSES_MAX {
            // Forget the addresses whose bucket is full again; if none is, the table stays
            // bounded by refusing until some refill.
            self.registrations.retain_recent();
            self.registrations.shrink_to_fit();
            if self.registrations.len() >= REGISTRATION_ADDRESSES_MAX {
                return Err(ServiceError::RateLimited);
            }
        }
        self.registrations
            .check_key(&peer)
            .map_err(|_| ServiceError::RateLimited)
    }
}

/// Bounds uploads in flight: by count, by the bytes they may buffer together (each reserves
/// its whole cap up front, in KiB), and to one per miner. Nothing waits: a request that does
/// not fit is answered at once, so a slow client never queues honest ones behind it.
struct UploadGate {
    slots: Semaphore,
    buffer_kib: Semaphore,
    miners: Mutex<HashSet<PublicKey>>,
}

/// An upload's place in the [`UploadGate`], given back on drop.
struct UploadPermit<'a> {
    gate: &'a UploadGate,
    miner: PublicKey,
    _slot: SemaphorePermit<'a>,
    _buffer: SemaphorePermit<'a>,
}

impl UploadGate {
    fn new(limits: &ServerLimits) -> Self {
        UploadGate {
            slots: Semaphore::new(limits.uploads_in_flight_max),
            buffer_kib: Semaphore::new(limits.upload_buffer_bytes_max / 1024),
            miners: Mutex::new(HashSet::new()),
        }
    }

    fn enter(&self, miner: PublicKey, cap_bytes: usize) -> ApiResult<UploadPermit<'_>> {
        let kib = u32::try_from(cap_bytes.div_ceil(1024)).map_err(|_| ServiceError::Busy)?;
        let slot = self.slots.try_acquire().map_err(|_| ServiceError::Busy)?;
        let buffer = self
            .buffer_kib
            .try_acquire_many(kib)
            .map_err(|_| ServiceError::Busy)?;
        if !lock(&self.miners).insert(miner) {
            return Err(ServiceError::UploadInProgress);
        }
        Ok(UploadPermit {
            gate: self,
            miner,
            _slot: slot,
            _buffer: buffer,
        })
    }
}

impl Drop for UploadPermit<'_> {
    fn drop(&mut self) {
        lock(&self.gate.miners).remove(&self.miner);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

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

fn binary(bytes: Bytes) -> Response {
    ([(header::CONTENT_TYPE, "application/octet-stream")], bytes).into_response()
}

/// The router with every route and its body limit, with the default [`ServerLimits`].
pub fn router(coordinator: Arc<Coordinator>) -> Router {
    router_with(coordinator, ServerLimits::default())
}

/// The router with every route, reading no chain (a registration naming a bond is refused
/// `bond_not_found`). Every route has a body limit checked against a declared
/// `Content-Length` before the body is read (413, JSON error), and every body an idle timeout.
pub fn router_with(coordinator: Arc<Coordinator>, limits: ServerLimits) -> Router {
    router_with_coins(coordinator, limits, None)
}

/// [`router_with`], reading bonds through `coins` (see [`coin_reader`]).
pub fn router_with_coins(
    coordinator: Arc<Coordinator>,
    limits: ServerLimits,
    coins: Option<CoinReader>,
) -> Router {
    let api: Shared = Arc::new(Api::with_coins(coordinator, limits, coins));
    let uploads = Router::new()
        .route("/v1/cycles/{cycle}/submit", post(submit))
        .route("/v1/cycles/{cycle}/answer", post(answer))
        .layer(RequestBodyLimitLayer::new(UPDATE_BODY_BYTES_MAX))
        .layer(axum::middleware::map_response(json_413_update));
    let job_posts = Router::new()
        .route("/v1/jobs", post(post_job).get(list_jobs))
        .layer(RequestBodyLimitLayer::new(JOB_BODY_BYTES_MAX))
        .layer(axum::middleware::map_response(json_413_job));
    Router::new()
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .route("/v1/cycle", get(cycle_status))
        .route("/v1/register", post(register))
        .route("/v1/verifiers/enrol", post(enrol_verifier))
        .route(
            "/v1/cycles/{cycle}/verifiers/{verifier}/assignments",
            get(verifier_assignments),
        )
        .route("/v1/cycles/{cycle}/claims", post(verifier_claim))
        .route(
            "/v1/cycles/{cycle}/claims/{miner}/{interval}/evidence",
            get(claim_evidence),
        )
        .route("/v1/cycles", get(cycle_records))
        .route("/v1/cycles/{cycle}/record", get(cycle_record))
        .route("/v1/cycles/{cycle}/task/{miner}", get(task))
        .route("/v1/cycles/{cycle}/shard/{miner}", get(shard))
        .route("/v1/cycles/{cycle}/weights", get(weights))
        .route("/v1/cycles/{cycle}/held-out", get(held_out))
        .route("/v1/cycles/{cycle}/updates/{hash}", get(published_update))
        .route("/v1/cycles/{cycle}/certificates/{miner}", get(certificates))
        .route("/v1/cycles/{cycle}/challenge/{miner}", get(challenge))
        .route("/v1/cycles/{cycle}/evidence/{miner}", get(evidence))
        .route(
            "/v1/cycles/{cycle}/evidence/{miner}/shard",
            get(evidence_shard),
        )
        .route("/v1/model", get(model_weights))
        .route("/v1/model/card", get(model_card))
        .route("/v1/jobs/{id}", get(job_status))
        .route("/v1/jobs/{id}/cancel", post(cancel_job))
        .route("/v1/jobs/{id}/model", get(job_model))
        .route("/v1/jobs/{id}/card", get(job_card))
        .layer(DefaultBodyLimit::max(JSON_BODY_BYTES_MAX))
        .layer(RequestBodyLimitLayer::new(JSON_BODY_BYTES_MAX))
        .layer(axum::middleware::map_response(json_413_json))
        .merge(uploads)
        .merge(job_posts)
        .layer(RequestBodyTimeoutLayer::new(limits.body_idle_timeout))
        .with_state(api)
}

/// tower-http answers a declared oversized body with a plain-text 413; the API's errors are
/// JSON, so it is rewritten here (a handler's own JSON 413 passes through untouched).
fn json_413(response: Response, error: ServiceError) -> Response {
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if response.status() != StatusCode::PAYLOAD_TOO_LARGE || is_json {
        return response;
    }
    warn!(error = %error, "request refused before its body was read");
    error.into_response()
}

async fn json_413_json(response: Response) -> Response {
    json_413(
        response,
        ServiceError::BodyTooLarge {
            limit_bytes: JSON_BODY_BYTES_MAX,
        },
    )
}

async fn json_413_job(response: Response) -> Response {
    json_413(
        response,
        ServiceError::BodyTooLarge {
            limit_bytes: JOB_BODY_BYTES_MAX,
        },
    )
}

async fn json_413_update(response: Response) -> Response {
    json_413(
        response,
        ServiceError::BadUpdate(learning::UpdateError::Oversize {
            bytes: UPDATE_BODY_BYTES_MAX + 1,
            limit_bytes: UPDATE_BODY_BYTES_MAX,
        }),
    )
}

/// A rejected JSON body: 413 if it was over the limit (streamed without a length), else 400.
fn json_rejection(e: JsonRejection) -> ServiceError {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ServiceError::BodyTooLarge {
            limit_bytes: JSON_BODY_BYTES_MAX,
        }
    } else {
        ServiceError::BadRequest(e.body_text())
    }
}

async fn health(State(api): State<Shared>) -> ApiResult<Response> {
    Ok(Json(api.coordinator.health()?).into_response())
}

async fn metrics(State(api): State<Shared>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        api.coordinator.metrics.render(),
    )
        .into_response()
}

async fn cycle_status(State(api): State<Shared>) -> ApiResult<Response> {
    Ok(Json(api.coordinator.status(now_ms())?).into_response())
}

/// Registration, cheapest check first: the JSON parses (within 16 KiB), the cycle is the live
/// one and open, and (with bonds required) a bond is named that backs no other registration of
/// the cycle (memory only); then the peer address has a token, the signature verifies (the
/// expensive step the bucket protects, before any chain read), the named bond is read through
/// the node, and the machine checks the details, the bond and a free slot. A request refused
/// before the bucket spends no token; one refused after spends only its own address's. So an
/// unbonded flood costs nothing, and a bad-signature one only its sender's bucket.
async fn register(
    State(api): State<Shared>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    body: Result<Json<crate::api::RegisterRequest>, JsonRejection>,
) -> ApiResult<Response> {
    let result = async {
        let Json(request) = body.map_err(json_rejection)?;
        api.coordinator.registration_open(now_ms(), request.cycle)?;
        api.coordinator.registration_bond_precheck(&request)?;
        api.take_registration_token(peer.ip())?;
        let c = api.coordinator.clone();
        let Some(bond) = request.bond else {
            return blocking(move || c.register(now_ms(), entropy(), request)).await;
        };
        // Read the bond only for a request its miner signed: a forged one costs no RPC.
        if !request.verify(&c.env().secp) {
            return Err(ServiceError::Refused(crate::cycle::Refusal::BadSignature));
        }
        let found = match &api.coins {
            Some(read) => read(bond.0).await?,
            None => None,
        };
        blocking(move || c.register_bonded(now_ms(), entropy(), request, found)).await
    }
    .await;
    match result {
        Ok(response) => Ok(Json(response).into_response()),
        Err(e) => {
            if matches!(e, ServiceError::RateLimited) {
                debug!(%peer, "registration rate limited");
            } else if !matches!(e, ServiceError::Refused(_)) {
                // The machine's refusals are logged by the service with the miner's key.
                warn!(%peer, error = %e, "registration refused");
            }
            Err(e)
        }
    }
}

/// A verifier's enrolment: the same order of checks as a registration (memory first, then
/// the peer's rate limit, the signature, and only then a chain read of the bond).
async fn enrol_verifier(
    State(api): State<Shared>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    body: Result<Json<crate::api::EnrolRequest>, JsonRejection>,
) -> ApiResult<Response> {
    let result = async {
        let Json(request) = body.map_err(json_rejection)?;
        api.coordinator.enrolment_precheck(now_ms(), &request)?;
        api.take_registration_token(peer.ip())?;
        let c = api.coordinator.clone();
        if !request.verify(&c.env().secp) {
            return Err(ServiceError::Refused(crate::cycle::Refusal::BadSignature));
        }
        let found = match &api.coins {
            Some(read) => read(request.bond.0).await?,
            None => None,
        };
        blocking(move || c.enrol_verifier(now_ms(), entropy(), request, found)).await
    }
    .await;
    match result {
        Ok(response) => Ok(Json(response).into_response()),
        Err(e) => {
            if !matches!(e, ServiceError::Refused(_) | ServiceError::RateLimited) {
                warn!(%peer, error = %e, "enrolment refused");
            }
            Err(e)
        }
    }
}

async fn verifier_assignments(
    State(api): State<Shared>,
    Path((cycle, verifier)): Path<(u64, String)>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let verifier = parse_miner(&verifier)?;
    // Only the verifier reads the start states it is served (one signature check, before any
    // state is read).
    let signature = signature_header(&headers)?;
    let digest = crate::api::poll_signing_hash(cycle, &verifier);
    if !signature.verify(&api.coordinator.env().secp, &verifier, &digest) {
        return Err(ServiceError::Refused(crate::cycle::Refusal::BadSignature));
    }
    let c = api.coordinator.clone();
    let assignments =
        blocking(move || c.assignments(now_ms(), entropy(), cycle, &verifier)).await?;
    Ok(Json(assignments).into_response())
}

async fn claim_evidence(
    State(api): State<Shared>,
    Path((cycle, miner, interval)): Path<(u64, String, u64)>,
) -> ApiResult<Response> {
    let miner = parse_miner(&miner)?;
    let c = api.coordinator.clone();
    let evidence = blocking(move || c.claim_evidence(cycle, &miner, interval)).await?;
    Ok(Json(evidence).into_response())
}

async fn verifier_claim(
    State(api): State<Shared>,
    Path(cycle): Path<u64>,
    body: Result<Json<crate::api::Claim>, JsonRejection>,
) -> ApiResult<Response> {
    let Json(claim) = body.map_err(json_rejection)?;
    if claim.cycle != cycle {
        return Err(ServiceError::BadRequest(format!(
            "claim is for cycle {}, posted to cycle {cycle}",
            claim.cycle
        )));
    }
    let c = api.coordinator.clone();
    blocking(move || c.claim(now_ms(), entropy(), claim)).await?;
    Ok(Json(serde_json::json!({ "accepted": true })).into_response())
}

async fn task(
    State(api): State<Shared>,
    Path((cycle, miner)): Path<(u64, String)>,
) -> ApiResult<Response> {
    let miner = parse_miner(&miner)?;
    let c = api.coordinator.clone();
    let task = blocking(move || c.task(now_ms(), cycle, &miner)).await?;
    Ok(Json(task).into_response())
}

async fn shard(
    State(api): State<Shared>,
    Path((cycle, miner)): Path<(u64, String)>,
) -> ApiResult<Response> {
    let miner = parse_miner(&miner)?;
    let c = api.coordinator.clone();
    let bytes = blocking(move || c.shard(now_ms(), cycle, &miner)).await?;
    Ok(binary(bytes))
}

async fn weights(State(api): State<Shared>, Path(cycle): Path<u64>) -> ApiResult<Response> {
    let c = api.coordinator.clone();
    Ok(binary(blocking(move || c.weights(cycle)).await?))
}

async fn held_out(State(api): State<Shared>, Path(cycle): Path<u64>) -> ApiResult<Response> {
    let c = api.coordinator.clone();
    Ok(binary(blocking(move || c.held_out_batch(cycle)).await?))
}

async fn published_update(
    State(api): State<Shared>,
    Path((cycle, hash)): Path<(u64, String)>,
) -> ApiResult<Response> {
    let hash: Hash256 = hash
        .parse()
        .map_err(|_| ServiceError::BadRequest(format!("{hash:?} is not a 32-byte hex hash")))?;
    let c = api.coordinator.clone();
    Ok(binary(
        blocking(move || c.published_update(cycle, &hash)).await?,
    ))
}

/// The declared `Content-Length`, if any.
fn content_length(headers: &HeaderMap) -> ApiResult<Option<usize>> {
    let Some(value) = headers.get(header::CONTENT_LENGTH) else {
        return Ok(None);
    };
    value
        .to_str()
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .map(Some)
        .ok_or_else(|| ServiceError::BadRequest("content-length is not a number".into()))
}

fn oversize(bytes: usize, limit_bytes: usize) -> ServiceError {
    ServiceError::BadUpdate(learning::UpdateError::Oversize { bytes, limit_bytes })
}

/// Whether a body error is a timeout (tower-http's idle timeout) or a length limit.
fn body_error(e: axum::Error, limit_bytes: usize, timeout: Duration) -> ServiceError {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&e);
    while let Some(err) = source {
        if err.is::<tower_http::timeout::TimeoutError>() {
            return ServiceError::BodyTimeout {
                secs: timeout.as_secs(),
            };
        }
        if err.is::<http_body_util::LengthLimitError>() {
            return oversize(limit_bytes + 1, limit_bytes);
        }
        source = err.source();
    }
    ServiceError::BadRequest(format!("reading the body failed: {e}"))
}

/// Reads `body` into memory, refusing (413) as soon as it passes `limit_bytes` and (408) if
/// the whole of it takes longer than `timeout`. The buffer never grows past `limit_bytes`.
async fn read_capped(
    mut body: Body,
    limit_bytes: usize,
    declared: Option<usize>,
    timeout: Duration,
    idle_timeout: Duration,
) -> ApiResult<Vec<u8>> {
    let read = async {
        let mut out: Vec<u8> = Vec::with_capacity(declared.unwrap_or(0).min(limit_bytes));
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| body_error(e, limit_bytes, idle_timeout))?;
            let Ok(data) = frame.into_data() else {
                continue;
            };
            let needed = out.len() + data.len();
            if needed > limit_bytes {
                return Err(oversize(needed, limit_bytes));
            }
            if needed > out.capacity() {
                let target = needed.max(out.capacity() * 2).min(limit_bytes);
                out.reserve_exact(target - out.len());
            }
            out.extend_from_slice(&data);
        }
        Ok(out)
    };
    tokio::time::timeout(timeout, read)
        .await
        .map_err(|_| ServiceError::BodyTimeout {
            secs: timeout.as_secs(),
        })?
}

/// An upload, every check that needs no body byte first: the headers parse, the miner is
/// registered in the live cycle, training is on and it has not submitted, the declared length
/// fits its segment's limit, and an upload slot and buffer are free. Then the body is read
/// within that limit and [`UPLOAD_BODY_TIMEOUT`](crate::limits::UPLOAD_BODY_TIMEOUT), and only
/// then the signature is verified and the update decoded.
async fn submit(
    State(api): State<Shared>,
    Path(cycle): Path<u64>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    let miner = parse_miner(header_text(&headers, MINER_HEADER)?)?;
    // Refusals from `Coordinator::submit` are logged there; the ones before it here.
    let mut reached_service = false;
    let result = async {
        let signature = signature_header(&headers)?;
        let hash_header = |name: &str| {
            primitives::Hash256::from_str(header_text(&headers, name)?)
                .map_err(|_| ServiceError::BadRequest(format!("{name} is not 32 hex bytes")))
        };
        let claim = SubmissionClaim {
            task_hash: hash_header(TASK_HASH_HEADER)?,
            transcript_root: hash_header(TRANSCRIPT_ROOT_HEADER)?,
            steps: header_text(&headers, STEPS_HEADER)?.parse().map_err(|_| {
                ServiceError::BadRequest(format!("{STEPS_HEADER} is not a step count"))
            })?,
        };
        let c = api.coordinator.clone();
        let limit = blocking(move || c.upload_limit(now_ms(), cycle, &miner)).await?;
        let (bytes, _permit) = read_upload(&api, &headers, body, miner, limit).await?;
        let c = api.coordinator.clone();
        reached_service = true;
        blocking(move || c.submit(now_ms(), entropy(), cycle, miner, signature, claim, &bytes))
            .await
    }
    .await;
    match result {
        Ok(receipt) => Ok(Json(receipt).into_response()),
        Err(e) => {
            if !reached_service {
                warn!(%miner, cycle, error = %e, "upload refused before verifying it");
            }
            Err(e)
        }
    }
}

/// A miner's answer to its challenge: signed like an upload, bounded by its segment's state
/// size times the openings the challenge asks for, and read under the same upload limits.
async fn answer(
    State(api): State<Shared>,
    Path(cycle): Path<u64>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    let miner = parse_miner(header_text(&headers, MINER_HEADER)?)?;
    let signature = signature_header(&headers)?;
    let c = api.coordinator.clone();
    let limit = blocking(move || c.answer_limit(cycle, &miner)).await?;
    let (bytes, _permit) = read_upload(&api, &headers, body, miner, limit).await?;
    let c = api.coordinator.clone();
    blocking(move || c.answer(now_ms(), entropy(), cycle, miner, signature, &bytes)).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

fn header_text<'h>(headers: &'h HeaderMap, name: &str) -> ApiResult<&'h str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| ServiceError::BadRequest(format!("missing header {name}")))
}

fn signature_header(headers: &HeaderMap) -> ApiResult<CompactSignature> {
    CompactSignature::from_str(header_text(headers, SIGNATURE_HEADER)?)
        .map_err(|_| ServiceError::BadRequest(format!("{SIGNATURE_HEADER} is not 64 hex bytes")))
}

/// A miner's upload body, after every check that needs none: the declared length within
/// `limit` (413 before reading), a free upload slot and buffer, then read with that cap and the
/// body timeouts. The permit holds the slot and the buffer until the caller has handled the
/// bytes.
async fn read_upload<'a>(
    api: &'a Api,
    headers: &HeaderMap,
    body: Body,
    miner: PublicKey,
    limit: usize,
) -> ApiResult<(Vec<u8>, UploadPermit<'a>)> {
    let declared = content_length(headers)?;
    if let Some(declared) = declared.filter(|d| *d > limit) {
        return Err(oversize(declared, limit));
    }
    let permit = api.uploads.enter(miner, limit)?;
    let limits = &api.limits;
    let bytes = read_capped(
        body,
        limit,
        declared,
        limits.upload_body_timeout,
        limits.body_idle_timeout,
    )
    .await?;
    Ok((bytes, permit))
}

async fn challenge(
    State(api): State<Shared>,
    Path((cycle, miner)): Path<(u64, String)>,
) -> ApiResult<Response> {
    let miner = parse_miner(&miner)?;
    let c = api.coordinator.clone();
    Ok(Json(blocking(move || c.challenge(now_ms(), cycle, &miner)).await?).into_response())
}

async fn evidence_shard(
    State(api): State<Shared>,
    Path((cycle, miner)): Path<(u64, String)>,
) -> ApiResult<Response> {
    let miner = parse_miner(&miner)?;
    let c = api.coordinator.clone();
    let bytes = blocking(move || c.evidence_shard(cycle, &miner)).await?;
    Ok(binary(Bytes::from(bytes)))
}

async fn evidence(
    State(api): State<Shared>,
    Path((cycle, miner)): Path<(u64, String)>,
) -> ApiResult<Response> {
    let miner = parse_miner(&miner)?;
    let c = api.coordinator.clone();
    Ok(Json(blocking(move || c.evidence(cycle, &miner)).await?).into_response())
}

async fn certificates(
    State(api): State<Shared>,
    Path((cycle, miner)): Path<(u64, String)>,
) -> ApiResult<Response> {
    let miner = parse_miner(&miner)?;
    let c = api.coordinator.clone();
    Ok(Json(blocking(move || c.certificates(cycle, &miner)).await?).into_response())
}

async fn cycle_record(State(api): State<Shared>, Path(cycle): Path<u64>) -> ApiResult<Response> {
    let c = api.coordinator.clone();
    Ok(Json(blocking(move || c.record(cycle)).await?).into_response())
}

async fn cycle_records(
    State(api): State<Shared>,
    Query(range): Query<CycleRange>,
) -> ApiResult<Response> {
    let limit = range.limit.min(CYCLE_RECORDS_PER_PAGE_MAX);
    let c = api.coordinator.clone();
    Ok(Json(blocking(move || c.records(range.from, limit)).await?).into_response())
}

/// `POST /v1/jobs`: the declared length within [`JOB_BODY_BYTES_MAX`] (413 before reading),
/// the one job slot (503 `busy` while another post is checked), then the body read with that
/// cap and the upload timeouts, and the owner's signature over its hash checked before the
/// data is written or loaded.
async fn post_job(
    State(api): State<Shared>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    let declared = content_length(&headers)?;
    if let Some(declared) = declared.filter(|d| *d > JOB_BODY_BYTES_MAX) {
        return Err(ServiceError::BodyTooLarge {
            limit_bytes: JOB_BODY_BYTES_MAX,
        })
        .inspect_err(|_| warn!(declared, "job refused: body over the limit"));
    }
    if !api.coordinator.takes_jobs() {
        return Err(crate::error::JobRefusal::Closed.into());
    }
    let signature = signature_header(&headers)?;
    let _slot = api
        .job_posts
        .try_acquire()
        .map_err(|_| ServiceError::Busy)?;
    let limits = &api.limits;
    let bytes = read_capped(
        body,
        JOB_BODY_BYTES_MAX,
        declared,
        limits.upload_body_timeout,
        limits.body_idle_timeout,
    )
    .await
    .map_err(|e| match e {
        ServiceError::BadUpdate(learning::UpdateError::Oversize { .. }) => {
            ServiceError::BodyTooLarge {
                limit_bytes: JOB_BODY_BYTES_MAX,
            }
        }
        other => other,
    })?;
    let c = api.coordinator.clone();
    match blocking(move || c.submit_job(now_ms(), &bytes, signature)).await {
        Ok(status) => Ok((StatusCode::CREATED, Json(status)).into_response()),
        Err(e) => {
            warn!(error = %e, "job refused");
            Err(e)
        }
    }
}

async fn list_jobs(State(api): State<Shared>) -> ApiResult<Response> {
    let c = api.coordinator.clone();
    Ok(Json(blocking(move || c.jobs()).await?).into_response())
}

fn parse_job(id: &str) -> ApiResult<Hash256> {
    id.parse()
        .map_err(|_| ServiceError::BadRequest(format!("job id {id:?} is not 32 hex bytes")))
}

async fn job_status(State(api): State<Shared>, Path(id): Path<String>) -> ApiResult<Response> {
    let id = parse_job(&id)?;
    let c = api.coordinator.clone();
    Ok(Json(blocking(move || c.job(&id)).await?).into_response())
}

/// `POST /v1/jobs/{id}/cancel`: no body; header `x-trainchain-signature` by the job's owner
/// over `job_cancel_signing_hash(coordinator, id)`.
async fn cancel_job(
    State(api): State<Shared>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let id = parse_job(&id)?;
    let signature = signature_header(&headers)?;
    let c = api.coordinator.clone();
    match blocking(move || c.cancel_job(&id, signature)).await {
        Ok(status) => Ok(Json(status).into_response()),
        Err(e) => {
            warn!(job = %id, error = %e, "job cancel refused");
            Err(e)
        }
    }
}

async fn job_model(State(api): State<Shared>, Path(id): Path<String>) -> ApiResult<Response> {
    let id = parse_job(&id)?;
    let c = api.coordinator.clone();
    let (bytes, _) = blocking(move || c.job_model(&id)).await?;
    Ok(binary(bytes))
}

async fn job_card(State(api): State<Shared>, Path(id): Path<String>) -> ApiResult<Response> {
    let id = parse_job(&id)?;
    let c = api.coordinator.clone();
    let (_, card) = blocking(move || c.job_model(&id)).await?;
    Ok(Json(card).into_response())
}

async fn model_weights(State(api): State<Shared>) -> ApiResult<Response> {
    let c = api.coordinator.clone();
    let (bytes, _) = blocking(move || c.latest_model()).await?;
    Ok(binary(bytes))
}

async fn model_card(State(api): State<Shared>) -> ApiResult<Response> {
    let c = api.coordinator.clone();
    let (_, card) = blocking(move || c.latest_model()).await?;
    Ok(Json(card).into_response())
}

/// One driver step: read the chain if needed, then advance the coordinator.
pub async fn drive_once<C: ChainSource>(
    coordinator: &Arc<Coordinator>,
    chain: &C,
) -> ApiResult<()> {
    let view = if coordinator.needs_chain() {
        let (tip, tip_height) = chain.tip().await?;
        let at_target = match coordinator.watched_height() {
            Some(height) => chain.block_at(height).await?,
            None => None,
        };
        // A cycle opens on the tip and trains the model its certificate produced.
        // Only genesis (height 0) has no next model. A tip that moved between the two calls
        // is an error for this tick, never "genesis": the cycle would train the wrong model and
        // its winner's block would break the lineage rule.
        let tip_next_model = if coordinator.opens_next_cycle() && tip_height > 0 {
            match chain.block_at(tip_height).await? {
                Some((hash, cert)) if hash == tip => Some(cert.body.next_model_hash),
                _ => {
                    return Err(crate::chain::ChainError::Unexpected {
                        method: "getblockhash",
                        detail: format!(
                            "the tip {tip} at height {tip_height} changed while reading it"
                        ),
                    }
                    .into())
                }
            }
        } else {
            None
        };
        Some(ChainView {
            tip,
            tip_height,
            at_target,
            tip_next_model,
        })
    } else {
        None
    };
    let c = coordinator.clone();
    blocking(move || c.step(now_ms(), entropy(), view.as_ref()).map(drop)).await?;
    crate::slash::send_pending(coordinator, chain).await;
    Ok(())
}

/// A failure that repeats unchanged is logged again at most this often (the driver retries
/// ten times a second; one line per retry would bury everything else).
const REPEATED_FAILURE_LOG_EVERY: Duration = Duration::from_secs(30);

/// Logs a failing step once, then again only when its reason changes or every
/// [`REPEATED_FAILURE_LOG_EVERY`] with the count, and says when steps succeed again.
#[derive(Default)]
struct FailureLog {
    reason: Option<String>,
    repeats: u64,
    logged_at: Option<std::time::Instant>,
}

impl FailureLog {
    fn failed(&mut self, reason: String) {
        let now = std::time::Instant::now();
        let same = self.reason.as_deref() == Some(reason.as_str());
        let due = self
            .logged_at
            .is_none_or(|at| now.duration_since(at) >= REPEATED_FAILURE_LOG_EVERY);
        if same && !due {
            self.repeats += 1;
            return;
        }
        if same {
            warn!(error = %reason, repeats = self.repeats + 1, "coordinator step still failing; retrying");
        } else {
            warn!(error = %reason, "coordinator step failed; retrying");
        }
        self.reason = Some(reason);
        self.repeats = 0;
        self.logged_at = Some(now);
    }

    fn succeeded(&mut self) {
        if let Some(reason) = self.reason.take() {
            info!(previous_error = %reason, "coordinator step succeeded again");
        }
        self.repeats = 0;
        self.logged_at = None;
    }
}

/// Advances cycles forever, every [`DRIVER_POLL`]; errors (node down, refused credentials)
/// are logged, without repeating the same line ten times a second, and retried.
pub async fn drive<C: ChainSource>(coordinator: Arc<Coordinator>, chain: Arc<C>) {
    let mut interval = tokio::time::interval(DRIVER_POLL);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failures = FailureLog::default();
    loop {
        interval.tick().await;
        match drive_once(&coordinator, chain.as_ref()).await {
            Ok(()) => failures.succeeded(),
            Err(e) => failures.failed(e.to_string()),
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
/// and runs the API and the driver on the current runtime, with the default [`ServerLimits`].
pub async fn start<C: ChainSource>(
    coordinator: Arc<Coordinator>,
    chain: Arc<C>,
    bind: SocketAddr,
    data_dir: &FsPath,
) -> std::io::Result<Running> {
    start_with(coordinator, chain, bind, data_dir, ServerLimits::default()).await
}

/// [`start`] with the given limits (tests shorten the timeouts).
pub async fn start_with<C: ChainSource>(
    coordinator: Arc<Coordinator>,
    chain: Arc<C>,
    bind: SocketAddr,
    data_dir: &FsPath,
    limits: ServerLimits,
) -> std::io::Result<Running> {
    let listener = tokio::net::TcpListener::bind(bind).await?;
    let address = listener.local_addr()?;
    write_address_file(data_dir, address)?;
    info!(%address, "coordinator API listening");
    let app = router_with_coins(
        coordinator.clone(),
        limits,
        Some(coin_reader(chain.clone())),
    );
    let server = tokio::spawn(serve(listener, app, limits));
    let driver = tokio::spawn(drive(coordinator, chain));
    Ok(Running {
        address,
        server,
        driver,
    })
}

/// The accept loop: at most `connections_max` connections at once (a semaphore permit per
/// connection, taken before `accept`, so past the cap new clients wait in the kernel's backlog
/// and cost nothing here), each served by hyper's HTTP/1 with a header read timeout and a
/// bounded read buffer, with the peer address available to handlers as `ConnectInfo`.
///
/// `axum::serve` has neither a connection cap nor a header timeout (it sets no timer), and a
/// tower layer sees requests, not connections, so a slow-header client would hold its socket
/// forever; this loop is the smallest thing that bounds both.
async fn serve(listener: tokio::net::TcpListener, app: Router, limits: ServerLimits) {
    let connections = Arc::new(Semaphore::new(limits.connections_max));
    let mut make_service = app.into_make_service_with_connect_info::<SocketAddr>();
    loop {
        let Ok(permit) = connections.clone().acquire_owned().await else {
            return;
        };
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors, usually: back off instead of spinning.
                warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(service) = make_service.call(peer).await;
        let service =
            service.map_request(|request: Request<hyper::body::Incoming>| request.map(Body::new));
        let service = hyper_util::service::TowerToHyperService::new(service);
        tokio::spawn(async move {
            let _permit = permit;
            let mut http = hyper::server::conn::http1::Builder::new();
            http.timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(limits.header_read_timeout)
                .max_buf_size(CONNECTION_READ_BUFFER_BYTES_MAX);
            let io = hyper_util::rt::TokioIo::new(stream);
            if let Err(e) = http.serve_connection(io, service).await {
                debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
}

/// Writes `http://ADDRESS` to the address file, atomically (temp file + rename).
fn write_address_file(data_dir: &FsPath, address: SocketAddr) -> std::io::Result<PathBuf> {
    let path = data_dir.join(ADDRESS_FILE);
    let temp = data_dir.join(format!("{ADDRESS_FILE}.tmp"));
    std::fs::write(&temp, format!("http://{address}\n"))?;
    std::fs::rename(&temp, &path)?;
    Ok(path)
}
