//! Every bound of the dashboard, with its reason: what it keeps in memory, what it reads from
//! the coordinator and the node, and what one request may ask for.

use std::time::Duration;

/// How often the poller refreshes its snapshot of the coordinator and the node. A second
/// keeps a few-second devnet cycle's phases visible and costs one small request each way.
pub const POLL_INTERVAL: Duration = Duration::from_secs(1);

/// Longest wait for one upstream call; past it the poll gives up and the page says the
/// source is unreachable (a stalled coordinator must not stall the pages).
pub const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(10);

/// Cycle records kept in memory (the newest ones), which is also how far back the cycles page
/// and the plots reach. A record is about 500 bytes per submission and the coordinator keeps
/// at most 1,000 submissions a cycle, so 256 full records are about 128 MB; a devnet's are a
/// few KiB each.
pub const RECORDS_KEPT_MAX: usize = 256;

/// Records asked for per request: the coordinator's own page cap
/// (`coordinator_api::api::CYCLE_RECORDS_PER_PAGE_MAX`).
pub const RECORDS_PER_REQUEST: u64 = coordinator_api::api::CYCLE_RECORDS_PER_PAGE_MAX;

/// Record pages read per poll, so catching up with a long history is spread over polls.
pub const RECORD_PAGES_PER_POLL_MAX: usize = 3;

/// Closed records re-read on every poll: a cycle's slashes are filled in after it closes (once
/// the slash transaction is sent), so the newest closed ones may still change.
pub const RECORDS_REFRESH_TAIL: u64 = 4;

/// Every this many polls, every kept record is read again (a late slash of an older cycle).
pub const FULL_REFRESH_EVERY_POLLS: u64 = 30;

/// Best-chain blocks kept as summaries (the newest ones): the chain page and the per-miner
/// block counts reach this far back. A summary is a few hundred bytes.
pub const BLOCKS_KEPT_MAX: usize = 1024;

/// Blocks read from the node per poll (each one `getblock`), so a long chain is caught up over
/// several polls instead of one burst.
pub const BLOCKS_PER_POLL_MAX: usize = 64;

/// Block and transaction pages read the node on demand; at most this many at once, so a
/// flood of page requests cannot turn into a flood of `getblock` calls.
pub const NODE_READS_IN_FLIGHT_MAX: usize = 4;

/// Requests served at once; more are answered 503 at once (the pages render from memory in
/// microseconds, so only a flood reaches the cap).
pub const REQUESTS_IN_FLIGHT_MAX: usize = 64;

/// Longest query string accepted: every parameter is a small number or a hash.
pub const QUERY_BYTES_MAX: usize = 256;

/// Cycles on one page of the cycles list (default [`CYCLES_PER_PAGE_DEFAULT`]).
pub const CYCLES_PER_PAGE_MAX: u64 = 50;
pub const CYCLES_PER_PAGE_DEFAULT: u64 = 20;

/// Blocks on one page of the chain list (default [`BLOCKS_PER_PAGE_DEFAULT`]).
pub const BLOCKS_PER_PAGE_MAX: u64 = 100;
pub const BLOCKS_PER_PAGE_DEFAULT: u64 = 25;

/// Cycles one plot may span: everything kept.
pub const PLOT_CYCLES_MAX: u64 = RECORDS_KEPT_MAX as u64;

/// Miners drawn as separate series in a per-miner plot; the rest are counted in a note, so a
/// network of thousands of miners still gives a readable, bounded SVG.
pub const PLOT_SERIES_MAX: usize = 16;

/// Bonds listed in a cycle's admission draw (registrations can outnumber the coordinator's
/// 1,000 submission slots; past this the page says how many are not listed).
pub const ADMISSION_ROWS_SHOWN_MAX: usize = 1_000;

/// Transactions listed on a block page; a full block is summarised past this.
pub const BLOCK_TXS_SHOWN_MAX: usize = 500;

/// Inputs and outputs listed on a transaction page.
pub const TX_IO_SHOWN_MAX: usize = 200;

/// Characters of any free-form string from upstream shown (a payout address, a failure
/// reason, an error message); longer ones are cut with an ellipsis.
pub const DISPLAY_CHARS_MAX: usize = 200;

/// Miner report files (`--miner-report`) read for the useful-work fraction.
pub const MINER_REPORTS_MAX: usize = 64;

/// Bytes read from the end of each miner report file: a report line is under a KiB, so this
/// holds thousands of cycles, and a file of any size costs the same.
pub const REPORT_TAIL_BYTES_MAX: u64 = 4 * 1024 * 1024;

/// Labels (`--label KEY=NAME`, or the devnet's miner names) accepted, and the length of one.
pub const LABELS_MAX: usize = 256;
pub const LABEL_CHARS_MAX: usize = 40;
