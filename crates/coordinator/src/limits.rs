//! Named limits of the HTTP API: body sizes, timeouts, connections, uploads in flight, the
//! per-address registration rate and page sizes. Every one bounds memory or CPU an outside
//! client can make the coordinator spend; the worst case they add up to is
//! [`SERVER_MEMORY_BOUND_BYTES`].

use std::time::Duration;

/// Largest JSON request body (a registration is a few hundred bytes; 16 KiB leaves room for
/// long addresses and still refuses junk before parsing). Also the body limit of every route
/// that takes no body: a declared `Content-Length` above it is answered 413 unread.
pub const JSON_BODY_BYTES_MAX: usize = 16 * 1024;

/// Outer bound of an update upload, checked against `Content-Length` before the handler
/// runs. The handler then applies the exact per-segment limit (`ExpectedSegment::limit_bytes`:
/// the segment's values × 4 + `learning::UPDATE_HEADER_BYTES_MAX`) before reading any body
/// byte. 64 MiB covers a 16 M-parameter segment in f32.
pub const UPDATE_BODY_BYTES_MAX: usize = 64 * 1024 * 1024;

/// Most update bytes buffered by all uploads in flight together. Each upload reserves its
/// whole cap (its segment's limit) before reading, and a request that does not fit is answered
/// 503 `busy` at once (the miner retries), so this bounds upload memory whatever the clients
/// do. 128 MiB holds 64 uploads of a 2 M-parameter segment, or two of the largest segment.
pub const UPLOAD_BUFFER_BYTES_MAX: usize = 128 * 1024 * 1024;

/// Most uploads in flight at once, whatever their size: each holds a blocking-pool thread
/// for its checks and a redb write at the end. 64 is far more than a 2-core machine verifies
/// and decodes at once, and small segments must not let 10,000 slow uploads in.
pub const UPLOADS_IN_FLIGHT_MAX: usize = 64;

/// Longest an upload body may take from the first byte asked for to the last. The largest
/// segment (64 MiB) at 2 MB/s takes 32 s; past this the client is too slow or stalling on
/// purpose, and its reservation of [`UPLOAD_BUFFER_BYTES_MAX`] goes to someone else.
pub const UPLOAD_BODY_TIMEOUT: Duration = Duration::from_secs(60);

/// Longest gap between two frames of any request body (tower-http's body timeout). A JSON
/// body is sent in one write; 10 s of silence means a stalled or hostile client.
pub const BODY_IDLE_TIMEOUT: Duration = Duration::from_secs(10);

/// Longest a client may take to send a request's headers (hyper's `header_read_timeout`,
/// which also closes a keep-alive connection idle that long between requests). Headers are
/// a few hundred bytes; 10 s is generous on any link and stops slow-header clients holding a
/// connection slot.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Most TCP connections served at once; the accept loop waits for a free slot past this (the
/// kernel's backlog holds the rest). A cycle has at most 1,000 miners, each with one
/// connection at a time, plus a few auditors and tools.
pub const CONNECTIONS_MAX: usize = 1_024;

/// Largest read buffer hyper keeps for one connection (its default grows to about 400 KiB
/// for a fast sender). Headers and one body frame fit in 64 KiB; uploads are read frame by
/// frame into their own capped buffer, so a larger one only lets each connection hold more.
pub const CONNECTION_READ_BUFFER_BYTES_MAX: usize = 64 * 1024;

/// What one connection may hold beyond its upload: the read buffer, a JSON body being
/// parsed, and about 16 KiB for hyper's write buffer, the task and the socket's state.
pub const CONNECTION_BYTES_MAX: usize =
    CONNECTION_READ_BUFFER_BYTES_MAX + JSON_BODY_BYTES_MAX + 16 * 1024;

/// Sustained registrations per second from one peer address. A miner registers once per
/// cycle; 10 per second lets a machine run many miners (a devnet runs up to 64 behind
/// 127.0.0.1), while one address cannot make the coordinator verify signatures without end.
pub const REGISTRATIONS_PER_ADDRESS_PER_SECOND: u32 = 10;

/// Registrations one address may send in a burst above the sustained rate (all miners of a
/// devnet register when a cycle opens: 64 at most, plus retries).
pub const REGISTRATION_BURST_PER_ADDRESS: u32 = 100;

/// Most peer addresses the registration limiter tracks. Past it, addresses whose bucket is
/// full again are forgotten; if all are still active, new addresses are refused 429 until
/// some refill (each entry is a few dozen bytes: 65,536 of them are about 4 MiB).
pub const REGISTRATION_ADDRESSES_MAX: usize = 65_536;

/// Most cycle records served by one `GET /v1/cycles` call (part of the wire contract, so it
/// lives with the API types).
pub use coordinator_api::api::CYCLE_RECORDS_PER_PAGE_MAX;

/// Most JSON bytes of one `GET /v1/cycles` page: a record holds up to 1,000 submissions
/// (about 500 bytes each), so 100 full records would be 50 MB. A page stops before the
/// record that would cross this, but always holds at least one record.
pub const CYCLE_RECORDS_PAGE_BYTES_MAX: usize = 4 * 1024 * 1024;

/// Bound on the memory the HTTP server holds for clients on top of the coordinator's own
/// state: every upload buffer together, plus every connection at its largest. 224 MiB with
/// the constants above; measured by `examples/coordinator_load.rs`.
pub const SERVER_MEMORY_BOUND_BYTES: usize =
    UPLOAD_BUFFER_BYTES_MAX + CONNECTIONS_MAX * CONNECTION_BYTES_MAX;

/// The limits a server runs with: the constants above, or shorter ones in tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerLimits {
    pub connections_max: usize,
    pub header_read_timeout: Duration,
    pub body_idle_timeout: Duration,
    pub upload_body_timeout: Duration,
    pub upload_buffer_bytes_max: usize,
    pub uploads_in_flight_max: usize,
    pub registrations_per_address_per_second: u32,
    pub registration_burst_per_address: u32,
}

impl Default for ServerLimits {
    fn default() -> Self {
        ServerLimits {
            connections_max: CONNECTIONS_MAX,
            header_read_timeout: HEADER_READ_TIMEOUT,
            body_idle_timeout: BODY_IDLE_TIMEOUT,
            upload_body_timeout: UPLOAD_BODY_TIMEOUT,
            upload_buffer_bytes_max: UPLOAD_BUFFER_BYTES_MAX,
            uploads_in_flight_max: UPLOADS_IN_FLIGHT_MAX,
            registrations_per_address_per_second: REGISTRATIONS_PER_ADDRESS_PER_SECOND,
            registration_burst_per_address: REGISTRATION_BURST_PER_ADDRESS,
        }
    }
}

// Checked when the crate compiles: the bound clients can make the server hold stays well under
// 512 MiB, one maximal upload fits the shared buffer, and uploads never take every connection.
const _: () = assert!(SERVER_MEMORY_BOUND_BYTES < 256 * 1024 * 1024);
const _: () = assert!(UPDATE_BODY_BYTES_MAX <= UPLOAD_BUFFER_BYTES_MAX);
const _: () = assert!(UPLOADS_IN_FLIGHT_MAX < CONNECTIONS_MAX);
