//! `trainchain dashboard`: a live web dashboard of a trainchain network, for people.
//!
//! A role of its own that reads only public data: the coordinator's HTTP API (the live cycle,
//! the cycle records, the model card) and a node's JSON-RPC (blocks and transactions), so it
//! needs no key and runs anywhere. One poller ([`snapshot`]) keeps an in-memory snapshot
//! fresh; the pages ([`pages`]) render from it as plain HTML with server-side SVG plots
//! ([`svg`]), complete with JavaScript off; a small script polls `/live.json` and reloads a page
//! whose data changed. Every upstream string is escaped ([`html`]) and every bound is a named
//! constant ([`limits`]); request parameters are checked in [`query`].

pub mod html;
pub mod limits;
pub mod pages;
pub mod query;
pub mod reports;
pub mod server;
pub mod snapshot;
pub mod sources;
pub mod svg;
pub mod view;

pub use server::{Dashboard, Options};
pub use sources::{LiveSources, SourceError, Sources};
