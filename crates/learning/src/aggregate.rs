//! Merging accepted updates into the global model, segment by segment.

use serde::{Deserialize, Serialize};

use crate::error::{LearningError, Result};
use crate::model::Model;
use crate::update::SegmentUpdate;

/// How the accepted updates of one segment are combined, coordinate by coordinate.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "method", rename_all = "snake_case")]
pub enum Aggregation {
    /// Plain average (weights ignored).
    Mean,
    /// Average weighted by each update's weight (e.g. its score or samples trained).
    WeightedMean,
    /// Coordinate-wise median (mean of the two middle values for an even count): robust
    /// to fewer than half of the updates being arbitrary.
    Median,
    /// Coordinate-wise mean after dropping the `trim_fraction` largest and smallest
    /// values (`floor(n * trim_fraction)` each side); `trim_fraction` in `[0, 0.5)`.
    TrimmedMean {
        /// Fraction trimmed from each end.
        trim_fraction: f32,
    },
}

/// An update accepted by the coordinator, with its aggregation weight.
#[derive(Debug, Clone, PartialEq)]
pub struct AcceptedUpdate {
    /// The checked update.
    pub update: SegmentUpdate,
    /// Weight for [`Aggregation::WeightedMean`] (finite, non-negative).
    pub weight: f64,
}

/// Replaces each segment that has accepted updates with their combination; segments
/// without updates are left as they are. Combination is in f64, in the order given, so
/// the same inputs give bit-identical results. Returns the merged segment names.
pub fn aggregate(
    global: &mut Model,
    updates: &[AcceptedUpdate],
    method: Aggregation,
) -> Result<Vec<String>> {
    if let Aggregation::TrimmedMean { trim_fraction } = method {
        if !(0.0..0.5).contains(&trim_fraction) {
            return Err(LearningError::InvalidAggregation(format!(
                "trim fraction {trim_fraction} must be in [0, 0.5)"
            )));
        }
    }
    let mut merged = Vec::new();
    for segment in global.segments() {
        let group: Vec<&AcceptedUpdate> = updates
            .iter()
            .filter(|u| u.update.segment == segment.name)
            .collect();
        if group.is_empty() {
            continue;
        }
        let weights: Vec<f64> = group.iter().map(|u| u.weight).collect();
        if method == Aggregation::WeightedMean
            && (weights.iter().any(|w| !w.is_finite() || *w < 0.0)
                || weights.iter().sum::<f64>() <= 0.0)
        {
            return Err(LearningError::InvalidAggregation(format!(
                "weights {weights:?} of segment {} must be finite, non-negative, not all zero",
                segment.name
            )));
        }
        for name in &segment.param_names {
            let expected = global.param(name)?.shape.clone();
            let columns: Vec<&[f32]> = group
                .iter()
                .map(|u| {
                    u.update
                        .tensors
                        .iter()
                        .find(|t| &t.name == name && t.shape == expected)
                        .map(|t| t.values.as_slice())
                        .ok_or_else(|| {
                            LearningError::InvalidAggregation(format!(
                                "an update of segment {} lacks {name} of shape {expected:?}",
                                segment.name
                            ))
                        })
                })
                .collect::<Result<_>>()?;
            let combined = combine(&columns, &weights, method);
            global.set_param(name, &combined)?;
        }
        merged.push(segment.name);
    }
    Ok(merged)
}

fn combine(columns: &[&[f32]], weights: &[f64], method: Aggregation) -> Vec<f32> {
    let len = columns[0].len();
    let n = columns.len();
    let mut scratch = vec![0f32; n];
    let weight_sum: f64 = weights.iter().sum();
    (0..len)
        .map(|i| match method {
            Aggregation::Mean => {
                (columns.iter().map(|c| f64::from(c[i])).sum::<f64>() / n as f64) as f32
            }
            Aggregation::WeightedMean => {
                (columns
                    .iter()
                    .zip(weights)
                    .map(|(c, w)| f64::from(c[i]) * w)
                    .sum::<f64>()
                    / weight_sum) as f32
            }
            Aggregation::Median => {
                sorted_column(columns, i, &mut scratch);
                if n % 2 == 1 {
                    scratch[n / 2]
                } else {
                    ((f64::from(scratch[n / 2 - 1]) + f64::from(scratch[n / 2])) / 2.0) as f32
                }
            }
            Aggregation::TrimmedMean { trim_fraction } => {
                sorted_column(columns, i, &mut scratch);
                let cut = (n as f64 * f64::from(trim_fraction)).floor() as usize;
                let kept = &scratch[cut..n - cut];
                (kept.iter().map(|&v| f64::from(v)).sum::<f64>() / kept.len() as f64) as f32
            }
        })
        .collect()
}

fn sorted_column(columns: &[&[f32]], i: usize, scratch: &mut [f32]) {
    for (s, c) in scratch.iter_mut().zip(columns) {
        *s = c[i];
    }
    scratch.sort_unstable_by(f32::total_cmp);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ModelSpec;

    fn model() -> Model {
        Model::new(
            ModelSpec::Mlp {
                input: 2,
                hidden: vec![],
                classes: 1,
            },
            0,
        )
        .unwrap()
    }

    fn update(weight_values: [f32; 2], bias: f32, weight: f64) -> AcceptedUpdate {
        let mut m = model();
        m.set_param("layer0.weight", &weight_values).unwrap();
        m.set_param("layer0.bias", &[bias]).unwrap();
        AcceptedUpdate {
            update: SegmentUpdate::from_model(&m, "layer0").unwrap(),
            weight,
        }
    }

    fn merged(method: Aggregation, updates: &[AcceptedUpdate]) -> Vec<f32> {
        let mut global = model();
        assert_eq!(aggregate(&mut global, updates, method).unwrap(), ["layer0"]);
        let mut out = global.param("layer0.weight").unwrap().values.clone();
        out.extend(&global.param("layer0.bias").unwrap().values);
        out
    }

    #[test]
    fn each_method_combines_coordinate_wise() {
        let ups = [
            update([1.0, 10.0], 0.0, 1.0),
            update([2.0, 20.0], 1.0, 1.0),
            update([3.0, 1000.0], 2.0, 2.0),
        ];
        assert_eq!(merged(Aggregation::Mean, &ups), [2.0, 343.33334, 1.0]);
        assert_eq!(merged(Aggregation::WeightedMean, &ups), [2.25, 507.5, 1.25]);
        assert_eq!(merged(Aggregation::Median, &ups), [2.0, 20.0, 1.0]);
        let trimmed = Aggregation::TrimmedMean {
            trim_fraction: 0.34,
        };
        assert_eq!(merged(trimmed, &ups), [2.0, 20.0, 1.0]);
        assert_eq!(merged(Aggregation::Median, &ups[..2]), [1.5, 15.0, 0.5]);
    }

    #[test]
    fn segments_without_updates_and_bad_settings() {
        let mut global = model();
        let before = global.clone();
        assert!(aggregate(&mut global, &[], Aggregation::Mean)
            .unwrap()
            .is_empty());
        assert_eq!(global, before);
        let bad_trim = Aggregation::TrimmedMean { trim_fraction: 0.5 };
        assert!(aggregate(&mut global, &[update([0.0; 2], 0.0, 1.0)], bad_trim).is_err());
        let zero = [update([0.0; 2], 0.0, 0.0)];
        assert!(aggregate(&mut global, &zero, Aggregation::WeightedMean).is_err());
    }

    #[test]
    fn aggregation_config_is_serde() {
        let json = r#"{"method":"trimmed_mean","trim_fraction":0.25}"#;
        let parsed: Aggregation = serde_json::from_str(json).unwrap();
        assert_eq!(
            parsed,
            Aggregation::TrimmedMean {
                trim_fraction: 0.25
            }
        );
    }
}
