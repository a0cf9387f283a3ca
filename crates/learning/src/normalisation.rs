//! Feature standardisation with statistics taken from the training split only, applied
//! by the coordinator before any shard leaves it (and written into the model card so
//! anyone can preprocess raw inputs the same way).

use serde::{Deserialize, Serialize};

use crate::dataset::Dataset;
use crate::error::{LearningError, Result};
use crate::samples::Samples;

/// Standard deviations below this are treated as 1: a feature that is (nearly) constant
/// in training, such as an always-blank border pixel, is only centred, not blown up.
pub const STD_FLOOR: f32 = 1e-6;

/// Per-feature standardisation: `x' = (x - mean[j]) / std[j]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Normalisation {
    /// Training-split mean of each feature.
    pub mean: Vec<f32>,
    /// Training-split population standard deviation of each feature (1 where below
    /// [`STD_FLOOR`]).
    pub std: Vec<f32>,
}

impl Normalisation {
    /// What the coordinator fits for `dataset`: [`Normalisation::fit`] on `train` when the
    /// dataset [`normalises`](Dataset::normalises), otherwise the identity (text: the
    /// features are token ids), so every dataset takes the same path and the model card
    /// always states what was applied.
    pub fn for_dataset(dataset: &Dataset, train: &Samples) -> Result<Self> {
        if dataset.normalises() {
            Self::fit(train)
        } else {
            Ok(Self::identity(train.feature_count()))
        }
    }

    /// Mean 0 and std 1 for each of `features` features: [`Normalisation::apply`] leaves
    /// every value's bits unchanged (`(x - 0) / 1 == x`).
    pub fn identity(features: usize) -> Self {
        Self {
            mean: vec![0.0; features],
            std: vec![1.0; features],
        }
    }

    /// Statistics of `train`, accumulated in f64 in sample order (deterministic).
    pub fn fit(train: &Samples) -> Result<Self> {
        if train.is_empty() {
            return Err(LearningError::TooFewSamples {
                reason: "cannot fit a normalisation on no samples".into(),
            });
        }
        let d = train.feature_count();
        let n = train.len() as f64;
        let mut sum = vec![0f64; d];
        let mut sum_sq = vec![0f64; d];
        for i in 0..train.len() {
            for (j, &x) in train.row(i).iter().enumerate() {
                sum[j] += f64::from(x);
                sum_sq[j] += f64::from(x) * f64::from(x);
            }
        }
        let mean: Vec<f64> = sum.iter().map(|s| s / n).collect();
        let std = sum_sq
            .iter()
            .zip(&mean)
            .map(|(sq, m)| {
                let s = (sq / n - m * m).max(0.0).sqrt() as f32;
                if s < STD_FLOOR {
                    1.0
                } else {
                    s
                }
            })
            .collect();
        Ok(Self {
            mean: mean.iter().map(|&m| m as f32).collect(),
            std,
        })
    }

    /// Standardises `samples` in place.
    pub fn apply(&self, samples: &mut Samples) -> Result<()> {
        let d = self.mean.len();
        if samples.feature_count() != d {
            return Err(LearningError::InconsistentSamples(format!(
                "normalisation has {d} features, samples have {}",
                samples.feature_count()
            )));
        }
        for row in samples.features_mut().chunks_exact_mut(d) {
            for ((x, m), s) in row.iter_mut().zip(&self.mean).zip(&self.std) {
                *x = (*x - m) / s;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standardises_with_training_statistics_and_leaves_constant_features_centred() {
        let train = Samples::new(vec![1.0, 5.0, 3.0, 5.0], vec![0, 1], 2).unwrap();
        let norm = Normalisation::fit(&train).unwrap();
        assert_eq!(norm.mean, vec![2.0, 5.0]);
        assert_eq!(norm.std, vec![1.0, 1.0]);
        let mut other = Samples::new(vec![4.0, 7.0], vec![0], 2).unwrap();
        norm.apply(&mut other).unwrap();
        assert_eq!(other.features(), &[2.0, 2.0]);
    }

    #[test]
    fn text_datasets_get_the_identity_which_changes_no_bit() {
        let wordnet = Dataset::load(&crate::DatasetSource::Wordnet).unwrap();
        let norm = Normalisation::for_dataset(&wordnet, &wordnet.samples).unwrap();
        assert_eq!(
            norm,
            Normalisation::identity(wordnet.samples.feature_count())
        );
        let mut samples = wordnet.samples.clone();
        norm.apply(&mut samples).unwrap();
        assert_eq!(samples, wordnet.samples);
        let digits = Dataset::digits().unwrap();
        let fitted = Normalisation::for_dataset(&digits, &digits.samples).unwrap();
        assert_eq!(fitted, Normalisation::fit(&digits.samples).unwrap());
    }
}
