//! Datasets: the shipped UCI digits, MNIST-format IDX directories, numeric CSV files, and
//! text (any file, or the shipped WordNet glosses) cut into byte windows for a language
//! model, parsed from a `--dataset` string, plus the fixed seeded split into training,
//! held-out and test sets.

use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::error::{LearningError, Result};
use crate::samples::Samples;

/// The UCI digits, gzip CSV as shipped in scikit-learn: 1,797 rows of 64 pixel counts
/// (0..=16) followed by the digit.
const DIGITS_CSV_GZ: &[u8] = include_bytes!("../data/digits.csv.gz");

/// WordNet 3.0 glosses (definitions and examples), one per line, about 1 MiB: the text
/// corpus shipped with the crate (see `data/make-wordnet-glosses.sh` and
/// `data/WORDNET-LICENSE`).
const WORDNET_GLOSSES: &[u8] = include_bytes!("../data/wordnet-glosses.txt");

/// Bytes a language model reads per text sample. A sample is a window of
/// `TEXT_CONTEXT + 1` bytes: the model reads the first `TEXT_CONTEXT` and predicts the last
/// `TEXT_CONTEXT`. 64 bytes is about a short sentence: enough context for a small model to
/// learn words and phrases, while attention (quadratic in it) stays a small part of a step.
pub const TEXT_CONTEXT: usize = 64;

/// Token ids of text datasets: bytes.
pub const TEXT_VOCAB: usize = 256;

/// Largest number of classes a dataset may declare. Labels index the output layer, so a
/// stray large label in a CSV would otherwise create a huge model; 10,000 covers every
/// classification benchmark this chain is meant for.
pub const CLASSES_MAX: usize = 10_000;

/// Largest decompressed dataset file read, so a corrupt or hostile file cannot exhaust
/// memory. The MNIST training images are 47 MB; 1 GiB leaves ample room.
pub const DATASET_FILE_BYTES_MAX: u64 = 1024 * 1024 * 1024;

/// Where the samples come from, as written on the command line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum DatasetSource {
    /// The UCI digits shipped inside the crate.
    Digits,
    /// A directory with MNIST-format IDX files (`train-images-idx3-ubyte`, ...,
    /// optionally gzip-compressed with a `.gz` suffix). Fashion-MNIST uses the same names.
    Mnist(PathBuf),
    /// A CSV file of numeric features whose last column is an integer label; a first
    /// line that does not parse as numbers is taken as a header.
    Csv(PathBuf),
    /// Any file read as bytes (UTF-8 text or not), cut into [`text_windows`] of
    /// [`TEXT_CONTEXT`] for a language model.
    Text(PathBuf),
    /// The WordNet 3.0 glosses shipped inside the crate, cut into [`text_windows`].
    Wordnet,
}

impl FromStr for DatasetSource {
    type Err = LearningError;

    fn from_str(text: &str) -> Result<Self> {
        match text.split_once(':') {
            None if text == "digits" => Ok(Self::Digits),
            None if text == "wordnet" => Ok(Self::Wordnet),
            Some(("text", file)) if !file.is_empty() => Ok(Self::Text(file.into())),
            Some(("mnist", dir)) if !dir.is_empty() => Ok(Self::Mnist(dir.into())),
            Some(("csv", file)) if !file.is_empty() => Ok(Self::Csv(file.into())),
            _ => Err(LearningError::UnknownDataset(text.to_owned())),
        }
    }
}

impl fmt::Display for DatasetSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Digits => write!(f, "digits"),
            Self::Mnist(dir) => write!(f, "mnist:{}", dir.display()),
            Self::Csv(file) => write!(f, "csv:{}", file.display()),
            Self::Text(file) => write!(f, "text:{}", file.display()),
            Self::Wordnet => write!(f, "wordnet"),
        }
    }
}

/// Height and width of image samples (one channel), so a CNN can be sized to them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageShape {
    /// Rows of pixels.
    pub height: usize,
    /// Columns of pixels.
    pub width: usize,
}

/// A loaded dataset, raw (not yet normalised; text datasets are never normalised, see
/// [`Dataset::normalises`]).
#[derive(Debug, Clone)]
pub struct Dataset {
    /// Where it came from.
    pub source: DatasetSource,
    /// The samples the split carves training, held-out (and, without `given_test`, test)
    /// sets from.
    pub samples: Samples,
    /// A test set the dataset defines itself (MNIST's `t10k` files), used as is.
    pub given_test: Option<Samples>,
    /// Number of classes; every label is below it.
    pub class_count: usize,
    /// Image geometry when the features are pixels.
    pub image: Option<ImageShape>,
}

impl Dataset {
    /// Loads the dataset named by `source`.
    pub fn load(source: &DatasetSource) -> Result<Self> {
        match source {
            DatasetSource::Digits => Self::digits(),
            DatasetSource::Mnist(dir) => load_mnist(dir),
            DatasetSource::Csv(file) => {
                let text = read_text(file)?;
                let (samples, class_count) = parse_csv(&text, &file.display().to_string())?;
                Ok(Self {
                    source: source.clone(),
                    samples,
                    given_test: None,
                    class_count,
                    image: None,
                })
            }
            DatasetSource::Text(file) => Self::text(
                source.clone(),
                &read_bytes(file)?,
                &file.display().to_string(),
            ),
            DatasetSource::Wordnet => Self::text(source.clone(), WORDNET_GLOSSES, "wordnet"),
        }
    }

    /// Whether the features are to be standardised ([`crate::Normalisation::for_dataset`]).
    /// Not for text: a text sample's features are token ids, which index the embedding and
    /// must reach the model unchanged.
    pub fn normalises(&self) -> bool {
        !matches!(self.source, DatasetSource::Text(_) | DatasetSource::Wordnet)
    }

    fn text(source: DatasetSource, bytes: &[u8], name: &str) -> Result<Self> {
        Ok(Self {
            source,
            samples: text_windows(bytes, TEXT_CONTEXT, name)?,
            given_test: None,
            class_count: TEXT_VOCAB,
            image: None,
        })
    }

    /// The shipped UCI digits: 1,797 samples of 8x8 pixels, 10 classes.
    pub fn digits() -> Result<Self> {
        let mut text = String::new();
        flate2::read::GzDecoder::new(DIGITS_CSV_GZ)
            .read_to_string(&mut text)
            .map_err(|e| malformed("digits", e.to_string()))?;
        let (samples, class_count) = parse_csv(&text, "digits")?;
        Ok(Self {
            source: DatasetSource::Digits,
            samples,
            given_test: None,
            class_count,
            image: Some(ImageShape {
                height: 8,
                width: 8,
            }),
        })
    }

    /// Splits with a fixed seed: a seeded shuffle, then the first `test` fraction is the
    /// test set (unless the dataset brings its own), the next `held_out` fraction the
    /// held-out evaluation set, the rest training. Same dataset and seed, same split.
    pub fn split(&self, fractions: SplitFractions, seed: u64) -> Result<Split> {
        fractions.validate()?;
        let n = self.samples.len();
        let mut order: Vec<usize> = (0..n).collect();
        order.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
        let test_count = if self.given_test.is_some() {
            0
        } else {
            (n as f64 * fractions.test).round() as usize
        };
        let held_out_count = (n as f64 * fractions.held_out).round() as usize;
        if test_count + held_out_count >= n || held_out_count == 0 {
            return Err(LearningError::TooFewSamples {
                reason: format!("{n} samples cannot give {fractions:?} with training left"),
            });
        }
        let test = match &self.given_test {
            Some(test) => test.clone(),
            None => self.samples.select(&order[..test_count]),
        };
        if test.is_empty() {
            return Err(LearningError::TooFewSamples {
                reason: format!("{n} samples leave an empty test set"),
            });
        }
        Ok(Split {
            test,
            held_out: self
                .samples
                .select(&order[test_count..test_count + held_out_count]),
            train: self.samples.select(&order[test_count + held_out_count..]),
        })
    }
}

/// Fractions of the samples set aside for held-out scoring and for the final test.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SplitFractions {
    /// Fraction used by the coordinator to score updates.
    pub held_out: f64,
    /// Fraction reported as test accuracy (ignored when the dataset brings a test set).
    pub test: f64,
}

impl Default for SplitFractions {
    /// 15% held out and 20% test: enough held-out samples for a stable loss on digits
    /// (about 270) while leaving most for training.
    fn default() -> Self {
        Self {
            held_out: 0.15,
            test: 0.20,
        }
    }
}

impl SplitFractions {
    fn validate(&self) -> Result<()> {
        let ok = |f: f64| (0.0..1.0).contains(&f);
        if ok(self.held_out) && ok(self.test) && self.held_out + self.test < 1.0 {
            Ok(())
        } else {
            Err(LearningError::TooFewSamples {
                reason: format!("fractions {self:?} must be in [0, 1) and sum below 1"),
            })
        }
    }
}

/// The three disjoint sets a cycle works with.
#[derive(Debug, Clone)]
pub struct Split {
    /// Sharded among miners.
    pub train: Samples,
    /// Scores updates (held by the coordinator, never shipped).
    pub held_out: Samples,
    /// Reported as test accuracy in the model card.
    pub test: Samples,
}

fn malformed(source_name: &str, reason: impl Into<String>) -> LearningError {
    LearningError::MalformedDataset {
        source_name: source_name.to_owned(),
        reason: reason.into(),
    }
}

fn read_bytes(path: &Path) -> Result<Vec<u8>> {
    let io = |source| LearningError::Io {
        path: path.to_owned(),
        source,
    };
    let file = std::fs::File::open(path).map_err(io)?;
    let mut bytes = Vec::new();
    let limited = file.take(DATASET_FILE_BYTES_MAX + 1);
    if path.extension().is_some_and(|e| e == "gz") {
        flate2::read::GzDecoder::new(limited)
            .take(DATASET_FILE_BYTES_MAX + 1)
            .read_to_end(&mut bytes)
            .map_err(io)?;
    } else {
        let mut limited = limited;
        limited.read_to_end(&mut bytes).map_err(io)?;
    }
    if bytes.len() as u64 > DATASET_FILE_BYTES_MAX {
        return Err(malformed(
            &path.display().to_string(),
            format!("larger than DATASET_FILE_BYTES_MAX ({DATASET_FILE_BYTES_MAX} bytes)"),
        ));
    }
    Ok(bytes)
}

fn read_text(path: &Path) -> Result<String> {
    String::from_utf8(read_bytes(path)?)
        .map_err(|_| malformed(&path.display().to_string(), "not UTF-8 text"))
}

/// Language-model samples of `bytes`: windows of `context + 1` consecutive bytes at stride
/// `context` (so every byte after the first is a target exactly once; a tail shorter than a
/// window is dropped), each stored as `context + 1` features (the byte values, 0..=255) with
/// the last byte as its label.
pub fn text_windows(bytes: &[u8], context: usize, source_name: &str) -> Result<Samples> {
    if context == 0 {
        return Err(malformed(
            source_name,
            "a text window needs a context of at least one byte",
        ));
    }
    let count = bytes.len().saturating_sub(1) / context;
    if count == 0 {
        return Err(malformed(
            source_name,
            format!(
                "{} bytes is shorter than one window of {} bytes",
                bytes.len(),
                context + 1
            ),
        ));
    }
    let mut features = Vec::with_capacity(count * (context + 1));
    let mut labels = Vec::with_capacity(count);
    for i in 0..count {
        let window = &bytes[i * context..=(i + 1) * context];
        features.extend(window.iter().map(|&b| f32::from(b)));
        labels.push(u32::from(window[context]));
    }
    Samples::new(features, labels, context + 1)
}

/// Parses numeric CSV whose last column is the label. Returns the samples and the class
/// count (largest label + 1).
pub fn parse_csv(text: &str, source_name: &str) -> Result<(Samples, usize)> {
    let mut features = Vec::new();
    let mut labels = Vec::new();
    let mut width = None;
    for (line_index, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        let parsed: std::result::Result<Vec<f32>, _> =
            fields.iter().map(|f| f.parse::<f32>()).collect();
        let values = match parsed {
            Ok(values) => values,
            // A non-numeric first line is a header.
            Err(_) if line_index == 0 => continue,
            Err(e) => {
                return Err(malformed(
                    source_name,
                    format!("line {}: {e}", line_index + 1),
                ))
            }
        };
        if values.len() < 2 {
            return Err(malformed(
                source_name,
                format!("line {}: need features and a label", line_index + 1),
            ));
        }
        if *width.get_or_insert(values.len()) != values.len() {
            return Err(malformed(
                source_name,
                format!(
                    "line {}: {} columns, earlier lines have {}",
                    line_index + 1,
                    values.len(),
                    width.unwrap_or_default()
                ),
            ));
        }
        let (label, row) = values.split_last().expect("at least two values");
        if let Some(bad) = row.iter().find(|v| !v.is_finite()) {
            return Err(malformed(
                source_name,
                format!("line {}: feature {bad} is not finite", line_index + 1),
            ));
        }
        if label.fract() != 0.0 || *label < 0.0 || *label >= CLASSES_MAX as f32 {
            return Err(malformed(
                source_name,
                format!(
                    "line {}: label {label} is not an integer in 0..{CLASSES_MAX}",
                    line_index + 1
                ),
            ));
        }
        features.extend_from_slice(row);
        labels.push(*label as u32);
    }
    let Some(width) = width else {
        return Err(malformed(source_name, "no data rows"));
    };
    let class_count = labels.iter().copied().max().unwrap_or(0) as usize + 1;
    Ok((Samples::new(features, labels, width - 1)?, class_count))
}

/// Loads `train-*` (split into training and held-out) and `t10k-*` (the test set) IDX
/// files from `dir`.
fn load_mnist(dir: &Path) -> Result<Dataset> {
    let (train, train_shape) = load_idx_pair(dir, "train")?;
    let (test, test_shape) = load_idx_pair(dir, "t10k")?;
    if train_shape != test_shape {
        return Err(malformed(
            &dir.display().to_string(),
            "train and t10k images differ in size",
        ));
    }
    let class_count = train
        .labels()
        .iter()
        .chain(test.labels())
        .copied()
        .max()
        .unwrap_or(0) as usize
        + 1;
    Ok(Dataset {
        source: DatasetSource::Mnist(dir.to_owned()),
        samples: train,
        given_test: Some(test),
        class_count,
        image: Some(train_shape),
    })
}

fn find_idx_file(dir: &Path, stem: &str) -> Result<PathBuf> {
    let plain = dir.join(stem);
    let gz = dir.join(format!("{stem}.gz"));
    [plain.clone(), gz]
        .into_iter()
        .find(|p| p.is_file())
        .ok_or_else(|| LearningError::Io {
            path: plain,
            source: std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "IDX file (or .gz) not found",
            ),
        })
}

fn load_idx_pair(dir: &Path, prefix: &str) -> Result<(Samples, ImageShape)> {
    let images_path = find_idx_file(dir, &format!("{prefix}-images-idx3-ubyte"))?;
    let labels_path = find_idx_file(dir, &format!("{prefix}-labels-idx1-ubyte"))?;
    let (images, shape) = parse_idx_images(
        &read_bytes(&images_path)?,
        &images_path.display().to_string(),
    )?;
    let labels = parse_idx_labels(
        &read_bytes(&labels_path)?,
        &labels_path.display().to_string(),
    )?;
    if labels.len() * shape.height * shape.width != images.len() {
        return Err(malformed(
            &labels_path.display().to_string(),
            "label count differs from image count",
        ));
    }
    Ok((
        Samples::new(images, labels, shape.height * shape.width)?,
        shape,
    ))
}

/// IDX header: magic `0x00 0x00 0x08 rank` (unsigned bytes), then `rank` big-endian u32
/// dimensions, then the data.
fn idx_dims(bytes: &[u8], rank: u8, name: &str) -> Result<(Vec<usize>, usize)> {
    if bytes.len() < 4 || bytes[..3] != [0, 0, 8] || bytes[3] != rank {
        return Err(malformed(
            name,
            format!("not an unsigned-byte IDX file of rank {rank}"),
        ));
    }
    let header_len = 4 + 4 * rank as usize;
    if bytes.len() < header_len {
        return Err(malformed(name, "truncated IDX header"));
    }
    let dims: Vec<usize> = bytes[4..header_len]
        .chunks_exact(4)
        .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]) as usize)
        .collect();
    let expected = dims.iter().try_fold(1usize, |acc, d| acc.checked_mul(*d));
    if expected != Some(bytes.len() - header_len) {
        return Err(malformed(
            name,
            "IDX data length does not match its dimensions",
        ));
    }
    Ok((dims, header_len))
}

/// Parses an IDX rank-3 image file into f32 pixels (0..=255).
pub fn parse_idx_images(bytes: &[u8], name: &str) -> Result<(Vec<f32>, ImageShape)> {
    let (dims, header_len) = idx_dims(bytes, 3, name)?;
    if dims[1] == 0 || dims[2] == 0 {
        return Err(malformed(name, "zero-sized images"));
    }
    let pixels = bytes[header_len..].iter().map(|&b| f32::from(b)).collect();
    Ok((
        pixels,
        ImageShape {
            height: dims[1],
            width: dims[2],
        },
    ))
}

/// Parses an IDX rank-1 label file.
pub fn parse_idx_labels(bytes: &[u8], name: &str) -> Result<Vec<u32>> {
    let (_, header_len) = idx_dims(bytes, 1, name)?;
    Ok(bytes[header_len..].iter().map(|&b| u32::from(b)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn idx(rank_dims: &[u32], data: &[u8]) -> Vec<u8> {
        let mut bytes = vec![0, 0, 8, rank_dims.len() as u8];
        for d in rank_dims {
            bytes.extend_from_slice(&d.to_be_bytes());
        }
        bytes.extend_from_slice(data);
        bytes
    }

    #[test]
    fn digits_ship_with_the_crate() {
        let digits = Dataset::digits().unwrap();
        assert_eq!(digits.samples.len(), 1797);
        assert_eq!(digits.samples.feature_count(), 64);
        assert_eq!(digits.class_count, 10);
        assert!(digits
            .samples
            .features()
            .iter()
            .all(|&p| (0.0..=16.0).contains(&p)));
    }

    #[test]
    fn dataset_strings_parse_and_print_back() {
        for text in [
            "digits",
            "mnist:/data/mnist",
            "csv:iris.csv",
            "text:corpus.txt",
            "wordnet",
        ] {
            assert_eq!(text.parse::<DatasetSource>().unwrap().to_string(), text);
        }
        for bad in [
            "",
            "mnist:",
            "imagenet",
            "csv",
            "text:",
            "text",
            "wordnet:x",
        ] {
            assert!(matches!(
                bad.parse::<DatasetSource>(),
                Err(LearningError::UnknownDataset(_))
            ));
        }
    }

    #[test]
    fn text_is_cut_into_overlapping_windows_and_not_normalised() {
        let samples = text_windows(b"abcdefghij", 4, "t").unwrap();
        // "abcde", "efghi"; the tail "ij" is shorter than a window.
        assert_eq!(samples.len(), 2);
        assert_eq!(samples.feature_count(), 5);
        let row: Vec<u8> = samples.row(1).iter().map(|&v| v as u8).collect();
        assert_eq!(row, b"efghi");
        assert_eq!(samples.labels(), &[u32::from(b'e'), u32::from(b'i')]);
        assert!(text_windows(b"abcd", 4, "t").is_err());
        assert!(text_windows(b"abcde", 0, "t").is_err());

        let wordnet = Dataset::load(&DatasetSource::Wordnet).unwrap();
        assert!(!wordnet.normalises());
        assert!(Dataset::digits().unwrap().normalises());
        assert_eq!(wordnet.class_count, 256);
        assert_eq!(wordnet.samples.feature_count(), TEXT_CONTEXT + 1);
        assert_eq!(
            wordnet.samples.len(),
            (WORDNET_GLOSSES.len() - 1) / TEXT_CONTEXT
        );
        assert!(WORDNET_GLOSSES.starts_with(b"that which is perceived"));

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.txt");
        // Any bytes, UTF-8 or not: 200 bytes give three windows of 65.
        let bytes: Vec<u8> = (0..200u32).map(|i| (i * 7 % 256) as u8).collect();
        std::fs::write(&path, &bytes).unwrap();
        let text = Dataset::load(&DatasetSource::Text(path.clone())).unwrap();
        assert!(!text.normalises());
        assert_eq!(text.samples.len(), 3);
        assert_eq!(text.samples.row(2)[64], f32::from(bytes[192]));
        std::fs::write(&path, b"too short").unwrap();
        assert!(Dataset::load(&DatasetSource::Text(path)).is_err());
    }

    #[test]
    fn split_is_seeded_disjoint_and_complete() {
        let digits = Dataset::digits().unwrap();
        let a = digits.split(SplitFractions::default(), 7).unwrap();
        let b = digits.split(SplitFractions::default(), 7).unwrap();
        let c = digits.split(SplitFractions::default(), 8).unwrap();
        assert_eq!(a.train, b.train);
        assert_ne!(a.train, c.train);
        assert_eq!(a.train.len() + a.held_out.len() + a.test.len(), 1797);
        assert_eq!(a.test.len(), 359);
        assert_eq!(a.held_out.len(), 270);
    }

    #[test]
    fn csv_with_header_loads_and_bad_rows_are_reported_with_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("small.csv");
        std::fs::write(&path, "a,b,label\n0.5,1,0\n2,3.5,2\n-1,0,1\n").unwrap();
        let data = Dataset::load(&DatasetSource::Csv(path)).unwrap();
        assert_eq!(data.samples.len(), 3);
        assert_eq!(data.samples.feature_count(), 2);
        assert_eq!(data.class_count, 3);
        assert_eq!(data.samples.row(1), &[2.0, 3.5]);
        assert_eq!(data.samples.labels(), &[0, 2, 1]);

        let err = parse_csv("1,2,0\n1,x,1\n", "t").unwrap_err().to_string();
        assert!(err.contains("line 2"), "{err}");
        assert!(parse_csv("1,2,0.5\n", "t").is_err());
        assert!(parse_csv("1,2,0\n1,0\n", "t").is_err());
    }

    #[test]
    fn mnist_idx_directory_loads_with_its_own_test_set() {
        let dir = tempfile::tempdir().unwrap();
        let images: Vec<u8> = (0..3 * 2 * 2).map(|i| i as u8 * 10).collect();
        std::fs::write(
            dir.path().join("train-images-idx3-ubyte"),
            idx(&[3, 2, 2], &images),
        )
        .unwrap();
        std::fs::write(
            dir.path().join("train-labels-idx1-ubyte"),
            idx(&[3], &[4, 1, 9]),
        )
        .unwrap();
        // The test files gzip-compressed, as they are often distributed.
        let gz = |bytes: Vec<u8>| {
            use std::io::Write;
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(&bytes).unwrap();
            e.finish().unwrap()
        };
        std::fs::write(
            dir.path().join("t10k-images-idx3-ubyte.gz"),
            gz(idx(&[1, 2, 2], &[255, 0, 0, 255])),
        )
        .unwrap();
        std::fs::write(
            dir.path().join("t10k-labels-idx1-ubyte.gz"),
            gz(idx(&[1], &[3])),
        )
        .unwrap();
        let source: DatasetSource = format!("mnist:{}", dir.path().display()).parse().unwrap();
        let data = Dataset::load(&source).unwrap();
        assert_eq!(data.samples.len(), 3);
        assert_eq!(data.samples.row(1), &[40.0, 50.0, 60.0, 70.0]);
        assert_eq!(data.samples.labels(), &[4, 1, 9]);
        assert_eq!(data.class_count, 10);
        assert_eq!(
            data.image,
            Some(ImageShape {
                height: 2,
                width: 2
            })
        );
        let test = data.given_test.unwrap();
        assert_eq!(test.row(0), &[255.0, 0.0, 0.0, 255.0]);

        // Truncated data is refused, not read past.
        assert!(parse_idx_images(&idx(&[2, 2, 2], &[0; 7]), "t").is_err());
        assert!(parse_idx_labels(&idx(&[2, 2], &[0; 4]), "t").is_err());
    }
}
