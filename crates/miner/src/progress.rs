//! Progress display: indicatif bars on a terminal, plain log lines otherwise (a log file, a
//! devnet child, CI).

use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;
use std::time::{Duration, Instant};
use tracing::info;

/// How often a bar is redrawn while training.
const BAR_TICK: Duration = Duration::from_millis(200);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgressMode {
    Bars,
    Lines,
}

impl ProgressMode {
    /// Bars when stderr is a terminal.
    pub fn detect() -> Self {
        if std::io::stderr().is_terminal() {
            ProgressMode::Bars
        } else {
            ProgressMode::Lines
        }
    }
}

/// Shows one miner's progress.
#[derive(Debug, Clone)]
pub struct Progress {
    mode: ProgressMode,
    status: Option<ProgressBar>,
}

impl Progress {
    pub fn new(mode: ProgressMode) -> Self {
        let status = (mode == ProgressMode::Bars).then(|| {
            let bar = ProgressBar::new_spinner();
            bar.enable_steady_tick(BAR_TICK);
            bar
        });
        Progress { mode, status }
    }

    /// A one-line status ("registered for cycle 3", "block 4 submitted").
    pub fn say(&self, message: String) {
        match &self.status {
            Some(bar) => bar.println(message),
            None => info!("{message}"),
        }
    }

    /// A bar over the training window, ended by [`TrainingBar::finish`].
    pub fn training(&self, cycle: u64, window: Duration) -> TrainingBar {
        let bar = (self.mode == ProgressMode::Bars).then(|| {
            let bar = ProgressBar::new(window.as_millis() as u64);
            bar.set_style(
                ProgressStyle::with_template(
                    "cycle {msg} training [{bar:40}] {elapsed}/{duration}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            bar.set_message(cycle.to_string());
            bar
        });
        if bar.is_none() {
            info!(cycle, window_ms = window.as_millis() as u64, "training");
        }
        TrainingBar {
            bar,
            started: Instant::now(),
        }
    }
}

/// The bar of one training run: advance it with [`TrainingBar::tick`].
pub struct TrainingBar {
    bar: Option<ProgressBar>,
    started: Instant,
}

impl TrainingBar {
    pub fn tick(&self) {
        if let Some(bar) = &self.bar {
            bar.set_position(self.started.elapsed().as_millis() as u64);
        }
    }

    pub fn finish(self) {
        if let Some(bar) = self.bar {
            bar.finish_and_clear();
        }
    }
}

pub const TICK: Duration = BAR_TICK;
