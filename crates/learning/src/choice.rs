//! A model as a user names it on a command line (`mlp:32,16`, `cnn:8,16`, `cnn:8,16,k5`,
//! `lm:64,2,4`), turned into a [`ModelSpec`] once the dataset's shape is known.

use std::fmt;
use std::str::FromStr;

use crate::error::{LearningError, Result};
use crate::model::ModelSpec;

/// Kernel size of `cnn:` models unless `,kN` is given.
pub const CNN_KERNEL_DEFAULT: usize = 3;

/// The byte-level language model for text datasets on a small CPU: `lm:64,2,4`, about
/// 137,000 parameters (two blocks of 50,000, embeddings and head of 37,000 for a context of
/// 64 bytes), which trains at thousands of tokens per second on two cores.
pub const LM_DEFAULT: ModelChoice = ModelChoice::Lm {
    dim: 64,
    layers: 2,
    heads: 4,
};

/// An architecture without the dataset's input size and class count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelChoice {
    /// `mlp:W1,W2,...`: hidden widths.
    Mlp { hidden: Vec<usize> },
    /// `cnn:C1,C2[,kK]`: the two convolutions' channels and the kernel size, on square
    /// one-channel images (the dataset's features are the pixels).
    Cnn { channels: [usize; 2], kernel: usize },
    /// `lm:DIM,LAYERS,HEADS`: a decoder-only transformer language model with a residual
    /// width of `DIM` (divisible by `HEADS`), `LAYERS` blocks of `HEADS` attention heads; for
    /// text datasets, whose samples give the context (features - 1) and vocabulary
    /// (classes). See [`LM_DEFAULT`].
    Lm {
        dim: usize,
        layers: usize,
        heads: usize,
    },
}

impl Default for ModelChoice {
    fn default() -> Self {
        ModelChoice::Mlp { hidden: vec![32] }
    }
}

fn positive(text: &str, what: &str, whole: &str) -> std::result::Result<usize, String> {
    match text.trim().parse::<usize>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!(
            "model {whole:?}: {text:?} is not a positive {what}"
        )),
    }
}

impl FromStr for ModelChoice {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        if let Some(widths) = s.strip_prefix("mlp:") {
            let hidden = widths
                .split(',')
                .map(|w| positive(w, "width", s))
                .collect::<std::result::Result<Vec<_>, _>>()?;
            return Ok(ModelChoice::Mlp { hidden });
        }
        if let Some(rest) = s.strip_prefix("cnn:") {
            let parts: Vec<&str> = rest.split(',').collect();
            let (channels, kernel) = match parts.as_slice() {
                [c1, c2] => ([*c1, *c2], CNN_KERNEL_DEFAULT),
                [c1, c2, k] if k.starts_with('k') => {
                    ([*c1, *c2], positive(&k[1..], "kernel size", s)?)
                }
                _ => return Err(format!("model {s:?}: expected cnn:C1,C2 or cnn:C1,C2,kK")),
            };
            if kernel % 2 == 0 {
                return Err(format!("model {s:?}: the kernel size must be odd"));
            }
            return Ok(ModelChoice::Cnn {
                channels: [
                    positive(channels[0], "channel count", s)?,
                    positive(channels[1], "channel count", s)?,
                ],
                kernel,
            });
        }
        if let Some(rest) = s.strip_prefix("lm:") {
            let [dim, layers, heads] = rest.split(',').collect::<Vec<_>>()[..] else {
                return Err(format!(
                    "model {s:?}: expected lm:DIM,LAYERS,HEADS (e.g. {LM_DEFAULT})"
                ));
            };
            let dim = positive(dim, "width", s)?;
            let layers = positive(layers, "layer count", s)?;
            let heads = positive(heads, "head count", s)?;
            if dim % heads != 0 {
                return Err(format!(
                    "model {s:?}: the width {dim} is not divisible by the {heads} heads"
                ));
            }
            return Ok(ModelChoice::Lm { dim, layers, heads });
        }
        Err(format!(
            "model {s:?}: expected mlp:W1,W2,... (hidden widths), cnn:C1,C2[,kK] (channels, \
             kernel) or lm:DIM,LAYERS,HEADS (a language model for text datasets)"
        ))
    }
}

impl fmt::Display for ModelChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ModelChoice::Mlp { hidden } => {
                let widths: Vec<String> = hidden.iter().map(ToString::to_string).collect();
                write!(f, "mlp:{}", widths.join(","))
            }
            ModelChoice::Cnn { channels, kernel } if *kernel == CNN_KERNEL_DEFAULT => {
                write!(f, "cnn:{},{}", channels[0], channels[1])
            }
            ModelChoice::Cnn { channels, kernel } => {
                write!(f, "cnn:{},{},k{kernel}", channels[0], channels[1])
            }
            ModelChoice::Lm { dim, layers, heads } => write!(f, "lm:{dim},{layers},{heads}"),
        }
    }
}

impl ModelChoice {
    /// The model for a dataset of `features` inputs and `classes` classes. A CNN needs square
    /// images with a side divisible by 4 (two 2x2 poolings): 8x8 digits, 28x28 MNIST. A
    /// language model takes `features - 1` tokens of context and `classes` token ids.
    pub fn spec(&self, features: usize, classes: usize) -> Result<ModelSpec> {
        let spec = match self {
            ModelChoice::Mlp { hidden } => ModelSpec::Mlp {
                input: features,
                hidden: hidden.clone(),
                classes,
            },
            ModelChoice::Cnn { channels, kernel } => {
                let side = (features as f64).sqrt().round() as usize;
                if side * side != features {
                    return Err(LearningError::InvalidSpec(format!(
                        "{self}: a CNN takes square one-channel images; {features} features are not a square"
                    )));
                }
                ModelSpec::Cnn {
                    height: side,
                    width: side,
                    channels: *channels,
                    kernel: *kernel,
                    classes,
                }
            }
            ModelChoice::Lm { dim, layers, heads } => {
                if features < 2 {
                    return Err(LearningError::InvalidSpec(format!(
                        "{self}: a language model's samples are context + 1 tokens; \
                         {features} features leave no context"
                    )));
                }
                ModelSpec::Transformer {
                    context: features - 1,
                    vocab: classes,
                    dim: *dim,
                    heads: *heads,
                    layers: *layers,
                }
            }
        };
        spec.param_shapes()?;
        Ok(spec)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_prints_and_sizes_both_kinds() {
        for text in [
            "mlp:32",
            "mlp:64,32",
            "cnn:8,16",
            "cnn:4,6,k5",
            "lm:64,2,4",
            "lm:16,1,1",
        ] {
            let choice: ModelChoice = text.parse().unwrap();
            assert_eq!(choice.to_string(), text);
        }
        let cnn: ModelChoice = "cnn:8,16".parse().unwrap();
        assert_eq!(
            cnn.spec(784, 10).unwrap(),
            ModelSpec::Cnn {
                height: 28,
                width: 28,
                channels: [8, 16],
                kernel: 3,
                classes: 10
            }
        );
        assert!(cnn.spec(64, 10).is_ok(), "the digits' 8x8");
        for bad in [
            "cnn:8",
            "cnn:8,0",
            "cnn:8,16,k4",
            "cnn:8,16,5",
            "rnn:3",
            "mlp:",
            "mlp:0",
        ] {
            assert!(bad.parse::<ModelChoice>().is_err(), "{bad}");
        }
        for (bad, why) in [
            ("lm:64,2", "expected lm:DIM,LAYERS,HEADS"),
            ("lm:64,2,4,1", "expected lm:DIM,LAYERS,HEADS"),
            ("lm:64,2,3", "not divisible by the 3 heads"),
            ("lm:0,2,4", "\"0\" is not a positive width"),
            ("lm:64,x,4", "not a positive layer count"),
            ("lm:64,2,0", "not a positive head count"),
        ] {
            let err = bad.parse::<ModelChoice>().unwrap_err();
            assert!(err.contains(why), "{bad}: {err}");
        }
        assert_eq!(LM_DEFAULT.to_string(), "lm:64,2,4");
        let spec = LM_DEFAULT.spec(65, 256).unwrap();
        assert_eq!(
            spec,
            ModelSpec::Transformer {
                context: 64,
                vocab: 256,
                dim: 64,
                heads: 4,
                layers: 2
            }
        );
        let params = crate::Model::new(spec, 0).unwrap().param_count();
        assert!((100_000..=150_000).contains(&params), "{params}");
        assert!(LM_DEFAULT.spec(1, 256).is_err());
        // Not square, or not divisible by 4.
        assert!(cnn.spec(63, 10).is_err());
        assert!(cnn.spec(36, 10).is_err());
    }
}
