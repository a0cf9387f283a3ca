//! Structured logs on stderr. `--log-level FILTER` selects what is shown, else `RUST_LOG`,
//! else info.

use anyhow::{Context, Result};
use std::io::IsTerminal;
use tracing_subscriber::EnvFilter;

pub fn init(level: Option<&str>) -> Result<()> {
    let filter = match level {
        Some(text) => EnvFilter::try_new(text).with_context(|| {
            format!(
                "--log-level {text:?} is not a level or filter (e.g. info, debug, info,node=debug)"
            )
        })?,
        None => EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
    };
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour codes only on a terminal: log files stay greppable.
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    Ok(())
}
