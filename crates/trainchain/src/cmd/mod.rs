//! Subcommand glue, one module each.

pub mod init;
pub mod logging;
pub mod params;
pub mod wallet;
