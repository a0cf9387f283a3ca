//! One module per page; each renders from a [`crate::snapshot::Snapshot`] (and, for the block
//! and transaction pages, the one block read for it) to a whole HTML document.

pub mod chain;
pub mod cycles;
pub mod overview;
pub mod plots;
