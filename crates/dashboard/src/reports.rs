//! The useful-work fraction and the window utilisation, from the miners' report files (`trainchain miner --report FILE`,
//! one JSON line per cycle): the share of a miner's process CPU spent training. Only a miner
//! knows its own CPU clock, so this plot exists only for the reports the dashboard is given
//! (the devnet gives all of its miners').
//!
//! Each file is read from its end, at most [`REPORT_TAIL_BYTES_MAX`] bytes, and again only
//! when its length or modification time changed.

use crate::limits::{LABEL_CHARS_MAX, REPORT_TAIL_BYTES_MAX};
use miner::report::CycleReport;
use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

#[derive(Debug, Clone)]
struct ReportFile {
    path: PathBuf,
    /// (length, modified) when last read.
    seen: Option<(u64, SystemTime)>,
    /// (miner key hex, cycle) -> useful-work fraction, from this file.
    points: BTreeMap<(String, u64), f64>,
    /// (miner key hex, cycle) -> training wall time over the training window.
    utilisation: BTreeMap<(String, u64), f64>,
    /// Miner key hex -> behaviour, from this file.
    behaviours: BTreeMap<String, String>,
}

/// Per miner and cycle, the useful-work fraction its report gives.
#[derive(Debug, Clone, Default)]
pub struct UsefulWork {
    files: Vec<ReportFile>,
    /// (miner key hex, cycle) -> fraction in [0, 1].
    pub points: BTreeMap<(String, u64), f64>,
    /// (miner key hex, cycle) -> window utilisation in [0, 1]: the miner's training wall time
    /// over the cycle's training window (cycles it trained in).
    pub utilisation: BTreeMap<(String, u64), f64>,
    /// Miner key hex -> its declared behaviour (`honest`, `cheat:rescale`, ...).
    pub behaviours: BTreeMap<String, String>,
    /// Why a file could not be read at the last poll.
    pub error: Option<String>,
}

impl UsefulWork {
    pub fn new(paths: Vec<PathBuf>) -> Self {
        UsefulWork {
            files: paths
                .into_iter()
                .map(|path| ReportFile {
                    path,
                    seen: None,
                    points: BTreeMap::new(),
                    utilisation: BTreeMap::new(),
                    behaviours: BTreeMap::new(),
                })
                .collect(),
            ..UsefulWork::default()
        }
    }

    pub fn is_configured(&self) -> bool {
        !self.files.is_empty()
    }

    /// Re-reads every file that changed.
    pub fn refresh(&mut self) {
        let mut errors = Vec::new();
        for file in &mut self.files {
            let meta = match std::fs::metadata(&file.path) {
                Ok(meta) => meta,
                // Not written yet: a miner writes its report after its first cycle.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => {
                    errors.push(format!("{}: {e}", file.path.display()));
                    continue;
                }
            };
            let stamp = (
                meta.len(),
                meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
            );
            if file.seen == Some(stamp) {
                continue;
            }
            match read_tail(&file.path) {
                Ok(reports) => {
                    file.points.clear();
                    file.utilisation.clear();
                    for r in reports {
                        let used = r.training_wall_secs / r.training_window_secs;
                        if r.training_window_secs > 0.0 && used.is_finite() {
                            file.utilisation
                                .insert((r.miner.clone(), r.cycle), used.clamp(0.0, 1.0));
                        }
                        if r.useful_work_fraction.is_finite() {
                            file.points.insert(
                                (r.miner.clone(), r.cycle),
                                r.useful_work_fraction.clamp(0.0, 1.0),
                            );
                        }
                        let behaviour: String = r
                            .behaviour
                            .to_string()
                            .chars()
                            .take(LABEL_CHARS_MAX)
                            .collect();
                        file.behaviours.insert(r.miner, behaviour);
                    }
                    file.seen = Some(stamp);
                }
                Err(e) => errors.push(format!("{}: {e}", file.path.display())),
            }
        }
        self.points = self
            .files
            .iter()
            .flat_map(|f| f.points.iter().map(|(k, v)| (k.clone(), *v)))
            .collect();
        self.utilisation = self
            .files
            .iter()
            .flat_map(|f| f.utilisation.iter().map(|(k, v)| (k.clone(), *v)))
            .collect();
        self.behaviours = self
            .files
            .iter()
            .flat_map(|f| f.behaviours.iter().map(|(k, v)| (k.clone(), v.clone())))
            .collect();
        self.error = (!errors.is_empty()).then(|| errors.join("; "));
    }
}

/// The report lines in the last [`REPORT_TAIL_BYTES_MAX`] bytes of `path` (a line cut by the
/// start of the window, or torn at the end by a killed miner, is skipped).
fn read_tail(path: &Path) -> std::io::Result<Vec<CycleReport>> {
    let mut file = std::fs::File::open(path)?;
    let len = file.metadata()?.len();
    let start = len.saturating_sub(REPORT_TAIL_BYTES_MAX);
    file.seek(SeekFrom::Start(start))?;
    let mut bytes = Vec::new();
    file.take(REPORT_TAIL_BYTES_MAX).read_to_end(&mut bytes)?;
    let text = String::from_utf8_lossy(&bytes);
    let mut lines = text.lines();
    if start > 0 {
        lines.next();
    }
    Ok(lines.filter_map(|l| serde_json::from_str(l).ok()).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(cycle: u64, miner: &str, fraction: f64) -> String {
        let report = serde_json::json!({
            "cycle": cycle, "miner": miner, "behaviour": "honest", "segment": null,
            "segment_params": null, "shard_samples": null, "steps": 10, "receipt": null,
            "contribution": null, "block_certificates": [], "block": null,
            "cpu": {"training_secs": 1.0, "other_secs": 1.0},
            "useful_work_fraction": fraction, "error": null,
            "training_wall_secs": fraction * 10.0, "training_window_secs": 10.0,
        });
        format!("{report}\n")
    }

    #[test]
    fn reads_points_skips_torn_lines_and_rereads_on_change() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("report.jsonl");
        std::fs::write(
            &path,
            line(0, "02aa", 0.5) + &line(1, "02aa", 0.75) + "{\"torn",
        )
        .unwrap();
        let mut work = UsefulWork::new(vec![path.clone(), dir.path().join("absent.jsonl")]);
        work.refresh();
        assert_eq!(work.error, None);
        assert_eq!(work.points.len(), 2);
        assert_eq!(work.points[&("02aa".to_owned(), 1)], 0.75);
        assert_eq!(work.behaviours["02aa"], "honest");
        assert_eq!(work.utilisation[&("02aa".to_owned(), 1)], 0.75);
        std::fs::write(
            &path,
            line(0, "02aa", 0.5) + &line(1, "02aa", 0.75) + &line(2, "02aa", 2.0),
        )
        .unwrap();
        work.refresh();
        assert_eq!(work.points.len(), 3);
        // A fraction out of range is clamped, never drawn outside the plot.
        assert_eq!(work.points[&("02aa".to_owned(), 2)], 1.0);
    }
}
