//! The coordinator's public interface, for its clients: the HTTP API's wire types and signed
//! messages ([`api`], [`verifier_api`], [`jobs_api`]), the draws of the verification protocol that anyone can
//! redo from a record ([`draw`]), and the typed client ([`client`]). The server (`coordinator`)
//! depends on this crate and re-exports it; a client depends on this crate alone, so the crate
//! graph shows that no client calls into the server's state.

pub mod api;
pub mod client;
pub mod draw;
pub mod jobs_api;
pub mod pace;
pub mod verifier_api;

pub use client::CoordinatorClient;
