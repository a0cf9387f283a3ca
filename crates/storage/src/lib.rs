//! Chain state on redb: block store, block index with every known header, best chain, UTXO
//! set with undo data, certificate uses and equivocation evidence.
//!
//! This crate keeps the records consistent with each other and durable; it does not decide
//! what is valid or which chain is best (that is `consensus`, driven by `node`). Every write
//! method is one redb write transaction, so a crash leaves the store at the last committed
//! method call: never half a block. `docs/protocol.md` lists the tables and their encodings.

mod error;
mod evidence;
mod index;
mod store;
mod tables;
mod view;

pub use error::StoreError;
pub use evidence::{EquivocationEvidence, EvidenceError, Slot, EVIDENCE_BYTES};
pub use index::{BlockStatus, IndexEntry, INDEX_ENTRY_BYTES, INDEX_ENTRY_VERSION};
pub use store::{EvidenceOutcome, Store};
pub use tables::{OUTPOINT_KEY_BYTES, SCHEMA_VERSION};
pub use view::{ChainSummary, ReadView};
