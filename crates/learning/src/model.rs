//! Model specs, models built from them with named parameters, segments, and the candle
//! forward pass.
//!
//! Layouts follow PyTorch so an exported model loads there unchanged: a linear layer's
//! weight is `[out, in]` and computes `y = x W^T + b`; a convolution weight is
//! `[out_channels, in_channels, k, k]` on NCHW inputs.
//!
//! The transformer's candle forward pass here is the reference (and the autograd step of
//! the tests); training, evaluation and sampling run [`crate::fused_transformer`].

use candle_core::{DType, Device, Tensor};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::error::{LearningError, Result};

/// Largest parameter count a spec may ask for: 2^28 f32 values is 1 GiB of weights, far
/// beyond the small models a training cycle moves around, and it bounds the allocation a
/// spec received from outside can trigger.
pub const PARAMS_MAX: usize = 1 << 28;

/// Longest context a transformer spec may ask for. Attention keeps `heads x context^2`
/// probabilities per sample, so the context, unlike the weights, is not bounded by
/// [`PARAMS_MAX`]; 1,024 bytes is far beyond the small byte-level models trained here.
pub const TRANSFORMER_CONTEXT_MAX: usize = 1024;

/// Epsilon of every LayerNorm of the transformer (PyTorch's default).
pub const LAYER_NORM_EPS: f32 = 1e-5;

/// Standard deviation of the transformer's initial weights (GPT-2's).
pub const TRANSFORMER_INIT_STD: f32 = 0.02;

/// A serialisable description of a model; [`Model::new`] builds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ModelSpec {
    /// Fully connected layers with ReLU between them: `input -> hidden... -> classes`.
    /// Layer `i` has parameters `layer{i}.weight` `[out, in]` and `layer{i}.bias` `[out]`.
    Mlp {
        /// Features per sample.
        input: usize,
        /// Widths of the hidden layers, first to last.
        hidden: Vec<usize>,
        /// Output classes.
        classes: usize,
    },
    /// `conv0 -> relu -> maxpool 2 -> conv1 -> relu -> maxpool 2 -> flatten -> linear`,
    /// convolutions with odd `kernel`, stride 1, padding `kernel / 2` ("same").
    /// Parameters `conv0.*`, `conv1.*`, `linear.*` (`.weight`, `.bias`). The input is the
    /// row-major `height x width` image with one channel.
    Cnn {
        /// Image rows (divisible by 4).
        height: usize,
        /// Image columns (divisible by 4).
        width: usize,
        /// Output channels of the two convolutions.
        channels: [usize; 2],
        /// Square kernel size (odd).
        kernel: usize,
        /// Output classes.
        classes: usize,
    },
    /// A decoder-only (causal) transformer language model over tokens `0..vocab` (bytes:
    /// 256). A sample is `context + 1` token ids stored as f32 features: the model reads the
    /// first `context` and predicts the next token at every position (the last feature is
    /// also the label). Pre-LayerNorm blocks `h += attn(ln1(h)); h += mlp(ln2(h))`, with a
    /// ReLU MLP of width `4 * dim`, learned position embeddings, a final LayerNorm and an
    /// untied output layer. Segments: `embed`, `block0`, ..., `head` (see
    /// [`ModelSpec::param_shapes`] for the names).
    Transformer {
        /// Tokens the model reads per sample.
        context: usize,
        /// Token ids, and output classes.
        vocab: usize,
        /// Width of the residual stream (divisible by `heads`).
        dim: usize,
        /// Attention heads per block.
        heads: usize,
        /// Transformer blocks.
        layers: usize,
    },
}

/// One named parameter: its shape and row-major values.
#[derive(Debug, Clone, PartialEq)]
pub struct NamedTensor {
    /// Name such as `layer0.weight`.
    pub name: String,
    /// Dimensions.
    pub shape: Vec<usize>,
    /// Row-major values (`shape.iter().product()` of them).
    pub values: Vec<f32>,
}

/// A group of parameters trained together by one miner (one layer by default).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Segment {
    /// Segment name: the parameter-name prefix before the dot, e.g. `layer1`.
    pub name: String,
    /// Its parameters, in model order.
    pub param_names: Vec<String>,
    /// Total scalar parameters, so a task can be sized to a miner's hardware.
    pub param_count: usize,
}

impl ModelSpec {
    /// Names and shapes of every parameter in model order, after validating the spec.
    pub fn param_shapes(&self) -> Result<Vec<(String, Vec<usize>)>> {
        let invalid = |why: String| Err(LearningError::InvalidSpec(why));
        let shapes = match self {
            Self::Mlp {
                input,
                hidden,
                classes,
            } => {
                let widths: Vec<usize> = std::iter::once(*input)
                    .chain(hidden.iter().copied())
                    .chain(std::iter::once(*classes))
                    .collect();
                if widths.contains(&0) {
                    return invalid(format!("zero width in {widths:?}"));
                }
                widths
                    .windows(2)
                    .enumerate()
                    .flat_map(|(i, w)| {
                        [
                            (format!("layer{i}.weight"), vec![w[1], w[0]]),
                            (format!("layer{i}.bias"), vec![w[1]]),
                        ]
                    })
                    .collect()
            }
            Self::Cnn {
                height,
                width,
                channels,
                kernel,
                classes,
            } => {
                if *height == 0 || *width == 0 || height % 4 != 0 || width % 4 != 0 {
                    return invalid(format!(
                        "image {height}x{width} must be non-empty and divisible by 4"
                    ));
                }
                if kernel % 2 == 0 || channels.contains(&0) || *classes == 0 {
                    return invalid(format!(
                        "kernel {kernel} must be odd, channels {channels:?} and classes {classes} non-zero"
                    ));
                }
                let flat = channels[1] * (height / 4) * (width / 4);
                vec![
                    (
                        "conv0.weight".into(),
                        vec![channels[0], 1, *kernel, *kernel],
                    ),
                    ("conv0.bias".into(), vec![channels[0]]),
                    (
                        "conv1.weight".into(),
                        vec![channels[1], channels[0], *kernel, *kernel],
                    ),
                    ("conv1.bias".into(), vec![channels[1]]),
                    ("linear.weight".into(), vec![*classes, flat]),
                    ("linear.bias".into(), vec![*classes]),
                ]
            }
            Self::Transformer {
                context,
                vocab,
                dim,
                heads,
                layers,
            } => {
                if [*context, *vocab, *dim, *heads, *layers].contains(&0) {
                    return invalid(format!(
                        "transformer context {context}, vocab {vocab}, dim {dim}, heads {heads} \
                         and layers {layers} must all be non-zero"
                    ));
                }
                if dim % heads != 0 {
                    return invalid(format!(
                        "transformer dim {dim} is not divisible by its {heads} heads"
                    ));
                }
                if *context > TRANSFORMER_CONTEXT_MAX {
                    return invalid(format!(
                        "transformer context {context} is above TRANSFORMER_CONTEXT_MAX \
                         ({TRANSFORMER_CONTEXT_MAX})"
                    ));
                }
                // Checked before the names are built, so a huge layer count allocates nothing.
                let block = dim
                    .checked_mul(*dim)
                    .and_then(|d2| d2.checked_mul(12))
                    .and_then(|n| n.checked_add(13 * dim));
                if block
                    .and_then(|b| b.checked_mul(*layers))
                    .is_none_or(|n| n > PARAMS_MAX)
                {
                    return invalid(format!("more than PARAMS_MAX ({PARAMS_MAX}) parameters"));
                }
                let (d, v) = (*dim, *vocab);
                let mut shapes = vec![
                    ("embed.tok.weight".to_owned(), vec![v, d]),
                    ("embed.pos.weight".to_owned(), vec![*context, d]),
                ];
                for i in 0..*layers {
                    let b = format!("block{i}");
                    shapes.extend([
                        (format!("{b}.ln1.weight"), vec![d]),
                        (format!("{b}.ln1.bias"), vec![d]),
                        (format!("{b}.attn.qkv.weight"), vec![3 * d, d]),
                        (format!("{b}.attn.qkv.bias"), vec![3 * d]),
                        (format!("{b}.attn.proj.weight"), vec![d, d]),
                        (format!("{b}.attn.proj.bias"), vec![d]),
                        (format!("{b}.ln2.weight"), vec![d]),
                        (format!("{b}.ln2.bias"), vec![d]),
                        (format!("{b}.mlp.fc.weight"), vec![4 * d, d]),
                        (format!("{b}.mlp.fc.bias"), vec![4 * d]),
                        (format!("{b}.mlp.proj.weight"), vec![d, 4 * d]),
                        (format!("{b}.mlp.proj.bias"), vec![d]),
                    ]);
                }
                shapes.extend([
                    ("head.norm.weight".to_owned(), vec![d]),
                    ("head.norm.bias".to_owned(), vec![d]),
                    ("head.out.weight".to_owned(), vec![v, d]),
                    ("head.out.bias".to_owned(), vec![v]),
                ]);
                shapes
            }
        };
        let total = shapes
            .iter()
            .try_fold(0usize, |acc, (_, s)| {
                s.iter()
                    .try_fold(1usize, |p, d| p.checked_mul(*d))
                    .and_then(|n| acc.checked_add(n))
            })
            .filter(|&n| n <= PARAMS_MAX);
        if total.is_none() {
            return invalid(format!("more than PARAMS_MAX ({PARAMS_MAX}) parameters"));
        }
        Ok(shapes)
    }

    /// Features per input sample.
    pub fn input_features(&self) -> usize {
        match self {
            Self::Mlp { input, .. } => *input,
            Self::Cnn { height, width, .. } => height * width,
            Self::Transformer { context, .. } => context + 1,
        }
    }

    /// Output classes.
    pub fn classes(&self) -> usize {
        match self {
            Self::Mlp { classes, .. } | Self::Cnn { classes, .. } => *classes,
            Self::Transformer { vocab, .. } => *vocab,
        }
    }

    /// Floating-point operations of one forward pass of one sample, counting a
    /// multiply-add as two (biases, activations and pooling are not counted).
    pub fn forward_flops_per_sample(&self) -> u64 {
        self.layer_forward_flops().iter().sum()
    }

    /// Floating-point operations of one training step per sample, as this crate runs
    /// it: the forward pass, the weight gradient of every layer and the input gradient of
    /// every layer but the first (nothing needs the gradient of the data), i.e.
    /// `3 * forward - first layer`. Counts the full model trained; used to size tasks and
    /// to report GFLOP/s.
    pub fn train_flops_per_sample(&self) -> u64 {
        let layers = self.layer_forward_flops();
        3 * layers.iter().sum::<u64>() - layers.first().copied().unwrap_or(0)
    }

    /// Forward FLOPs of each weight layer, first to last.
    fn layer_forward_flops(&self) -> Vec<u64> {
        match self {
            Self::Mlp {
                input,
                hidden,
                classes,
            } => {
                let widths: Vec<usize> = std::iter::once(*input)
                    .chain(hidden.iter().copied())
                    .chain(std::iter::once(*classes))
                    .collect();
                widths
                    .windows(2)
                    .map(|w| 2 * (w[0] * w[1]) as u64)
                    .collect()
            }
            Self::Cnn {
                height,
                width,
                channels,
                kernel,
                classes,
            } => {
                let k2 = (kernel * kernel) as u64;
                let conv0 = (height * width * channels[0]) as u64 * k2;
                let conv1 = ((height / 2) * (width / 2) * channels[1] * channels[0]) as u64 * k2;
                let linear = (channels[1] * (height / 4) * (width / 4) * classes) as u64;
                vec![2 * conv0, 2 * conv1, 2 * linear]
            }
            Self::Transformer {
                context,
                vocab,
                dim,
                layers,
                ..
            } => {
                // The embedding is a lookup; per block the four products (qkv, proj, fc,
                // mlp proj: 12 dim^2 per token) and causal attention (scores and the
                // weighted sum, t + 1 keys at position t); then the output layer.
                let (t, d) = (*context as u64, *dim as u64);
                let attention = 2 * 2 * d * t * (t + 1) / 2;
                let block = 2 * t * 12 * d * d + attention;
                std::iter::once(0)
                    .chain(std::iter::repeat_n(block, *layers))
                    .chain(std::iter::once(2 * t * d * *vocab as u64))
                    .collect()
            }
        }
    }
}

/// A model: its spec and its named parameters in model order.
#[derive(Debug, Clone, PartialEq)]
pub struct Model {
    spec: ModelSpec,
    params: Vec<NamedTensor>,
}

impl Model {
    /// Builds the model with PyTorch's default initialisation (weights and biases uniform
    /// in `±1/sqrt(fan_in)`), drawn from a ChaCha8 stream seeded with `seed` in parameter
    /// order, so the same spec and seed give the same weights on every machine.
    ///
    /// A transformer is initialised GPT-2 style instead: weights and embeddings with
    /// standard deviation [`TRANSFORMER_INIT_STD`] (the two projections into the residual
    /// stream scaled down by `sqrt(2 * layers)`), biases zero, LayerNorm gains one. The
    /// weights are drawn uniform (`±std·sqrt(3)`), not normal, so that no transcendental
    /// function (whose last bit may differ between libms) is involved.
    pub fn new(spec: ModelSpec, seed: u64) -> Result<Self> {
        let shapes = spec.param_shapes()?;
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        if let ModelSpec::Transformer { layers, .. } = spec {
            let residual_scale = 1.0 / ((2 * layers) as f32).sqrt();
            let params = shapes
                .into_iter()
                .map(|(name, shape)| {
                    let count: usize = shape.iter().product();
                    let values = if name.ends_with(".bias") {
                        vec![0.0; count]
                    } else if name.contains(".ln") || name.starts_with("head.norm") {
                        vec![1.0; count]
                    } else {
                        let scale = if name.ends_with("proj.weight") {
                            residual_scale
                        } else {
                            1.0
                        };
                        let bound = TRANSFORMER_INIT_STD * 3f32.sqrt() * scale;
                        (0..count).map(|_| rng.gen_range(-bound..bound)).collect()
                    };
                    NamedTensor {
                        name,
                        shape,
                        values,
                    }
                })
                .collect();
            return Ok(Self { spec, params });
        }
        let mut params = Vec::with_capacity(shapes.len());
        let mut fan_in = 1;
        for (name, shape) in shapes {
            if name.ends_with(".weight") {
                fan_in = shape[1..].iter().product::<usize>();
            }
            let bound = 1.0 / (fan_in as f32).sqrt();
            let count = shape.iter().product();
            let values = (0..count).map(|_| rng.gen_range(-bound..bound)).collect();
            params.push(NamedTensor {
                name,
                shape,
                values,
            });
        }
        Ok(Self { spec, params })
    }

    /// Rebuilds a model from a spec and parameters (e.g. read back from an export),
    /// checking that names and shapes are exactly those of the spec.
    pub fn from_params(spec: ModelSpec, params: Vec<NamedTensor>) -> Result<Self> {
        let shapes = spec.param_shapes()?;
        if shapes.len() != params.len() {
            return Err(LearningError::InvalidSpec(format!(
                "{} parameters given, spec has {}",
                params.len(),
                shapes.len()
            )));
        }
        let mut ordered = Vec::with_capacity(params.len());
        for (name, shape) in shapes {
            let param = params
                .iter()
                .find(|p| p.name == name)
                .ok_or_else(|| LearningError::InvalidSpec(format!("missing parameter {name}")))?;
            if param.shape != shape || param.values.len() != shape.iter().product::<usize>() {
                return Err(LearningError::InvalidSpec(format!(
                    "{name} has shape {:?}, spec says {shape:?}",
                    param.shape
                )));
            }
            ordered.push(param.clone());
        }
        Ok(Self {
            spec,
            params: ordered,
        })
    }

    /// The spec it was built from.
    pub fn spec(&self) -> &ModelSpec {
        &self.spec
    }

    /// Parameters in model order.
    pub fn params(&self) -> &[NamedTensor] {
        &self.params
    }

    /// Mutable parameters in model order (names and shapes are fixed by the spec; only
    /// values should change).
    pub(crate) fn params_mut(&mut self) -> &mut [NamedTensor] {
        &mut self.params
    }

    /// The parameter called `name`.
    pub fn param(&self, name: &str) -> Result<&NamedTensor> {
        self.params
            .iter()
            .find(|p| p.name == name)
            .ok_or_else(|| LearningError::UnknownParameter(name.to_owned()))
    }

    /// Replaces the values of parameter `name` (same shape required).
    pub fn set_param(&mut self, name: &str, values: &[f32]) -> Result<()> {
        let param = self
            .params
            .iter_mut()
            .find(|p| p.name == name)
            .ok_or_else(|| LearningError::UnknownParameter(name.to_owned()))?;
        if param.values.len() != values.len() {
            return Err(LearningError::InvalidSpec(format!(
                "{name} has {} values, {} given",
                param.values.len(),
                values.len()
            )));
        }
        param.values.copy_from_slice(values);
        Ok(())
    }

    /// Total scalar parameters.
    pub fn param_count(&self) -> usize {
        self.params.iter().map(|p| p.values.len()).sum()
    }

    /// Parameters grouped by layer (name prefix before the first dot), in model order.
    pub fn segments(&self) -> Vec<Segment> {
        let mut segments: Vec<Segment> = Vec::new();
        for param in &self.params {
            let name = segment_of(&param.name);
            match segments.last_mut() {
                Some(last) if last.name == name => {
                    last.param_names.push(param.name.clone());
                    last.param_count += param.values.len();
                }
                _ => segments.push(Segment {
                    name: name.to_owned(),
                    param_names: vec![param.name.clone()],
                    param_count: param.values.len(),
                }),
            }
        }
        segments
    }

    /// The segment called `name`.
    pub fn segment(&self, name: &str) -> Result<Segment> {
        self.segments()
            .into_iter()
            .find(|s| s.name == name)
            .ok_or_else(|| LearningError::UnknownSegment(name.to_owned()))
    }

    /// Parameters as candle tensors on `device`, in model order.
    pub(crate) fn tensors(&self, device: &Device) -> Result<Vec<Tensor>> {
        self.params
            .iter()
            .map(|p| Ok(Tensor::from_slice(&p.values, p.shape.as_slice(), device)?))
            .collect()
    }

    /// Logits `[n, classes]` for `inputs` `[n, input_features]`, computed with candle. For a
    /// transformer, `[n * context, vocab]`: the next-token logits at every position of every
    /// sample, sample-major.
    pub fn logits(&self, inputs: &Tensor) -> Result<Tensor> {
        let params = self.tensors(inputs.device())?;
        forward(&self.spec, &params, inputs)
    }

    /// Logits for row-major samples, as plain values `[n * classes]`.
    pub fn logits_of(&self, features: &[f32]) -> Result<Vec<f32>> {
        let d = self.spec.input_features();
        if !features.len().is_multiple_of(d) {
            return Err(LearningError::SamplesDoNotFitModel(format!(
                "{} values is not a whole number of {d}-feature samples",
                features.len()
            )));
        }
        let inputs = Tensor::from_slice(features, (features.len() / d, d), &Device::Cpu)?;
        Ok(self.logits(&inputs)?.flatten_all()?.to_vec1()?)
    }
}

/// Segment of a parameter name: the prefix before the first dot.
pub fn segment_of(param_name: &str) -> &str {
    param_name.split('.').next().unwrap_or(param_name)
}

/// The forward pass over parameter tensors in model order (constants or candle `Var`s,
/// so the same code serves evaluation and autograd training).
pub(crate) fn forward(spec: &ModelSpec, params: &[Tensor], inputs: &Tensor) -> Result<Tensor> {
    let inputs = inputs.to_dtype(DType::F32)?;
    match spec {
        ModelSpec::Mlp { .. } => {
            let layers = params.len() / 2;
            let mut x = inputs;
            for (i, pair) in params.chunks_exact(2).enumerate() {
                x = x.matmul(&pair[0].t()?)?.broadcast_add(&pair[1])?;
                if i + 1 < layers {
                    x = x.relu()?;
                }
            }
            Ok(x)
        }
        ModelSpec::Cnn {
            height,
            width,
            kernel,
            ..
        } => {
            // Computed channels-last (NHWC) so that each convolution is one matrix
            // product over unfolded patches, whose backward pass is two more: far
            // faster on CPU than candle's direct convolution backward. The result is the
            // NCHW convolution of the spec; only the flatten goes back to C,H,W order.
            let n = inputs.dim(0)?;
            let x = inputs.reshape((n, *height, *width, 1))?;
            let x = conv_relu_pool_nhwc(&x, &params[0], &params[1], *kernel)?;
            let x = conv_relu_pool_nhwc(&x, &params[2], &params[3], *kernel)?;
            let x = x.permute((0, 3, 1, 2))?.flatten_from(1)?;
            Ok(x.matmul(&params[4].t()?)?.broadcast_add(&params[5])?)
        }
        ModelSpec::Transformer {
            context,
            dim,
            heads,
            layers,
            ..
        } => transformer_forward(&inputs, params, *context, *dim, *heads, *layers),
    }
}

/// The transformer in candle ops, as PyTorch would write it (see the crate README):
/// logits `[n * context, vocab]`.
fn transformer_forward(
    inputs: &Tensor,
    params: &[Tensor],
    context: usize,
    dim: usize,
    heads: usize,
    layers: usize,
) -> Result<Tensor> {
    let n = inputs.dim(0)?;
    let (t, d, hd) = (context, dim, dim / heads);
    let rows = n * t;
    let tokens = inputs
        .narrow(1, 0, t)?
        .to_dtype(DType::U32)?
        .flatten_all()?;
    let linear = |x: &Tensor, w: &Tensor, b: &Tensor| -> candle_core::Result<Tensor> {
        x.matmul(&w.t()?)?.broadcast_add(b)
    };
    let layer_norm = |x: &Tensor, w: &Tensor, b: &Tensor| -> candle_core::Result<Tensor> {
        let centred = x.broadcast_sub(&x.mean_keepdim(1)?)?;
        let var = centred.sqr()?.mean_keepdim(1)?;
        let xhat = centred.broadcast_div(&(var + f64::from(LAYER_NORM_EPS))?.sqrt()?)?;
        xhat.broadcast_mul(w)?.broadcast_add(b)
    };
    let pos = params[1]
        .unsqueeze(0)?
        .broadcast_as((n, t, d))?
        .reshape((rows, d))?;
    let mut x = (params[0].index_select(&tokens, 0)? + pos)?;
    // 0 on and below the diagonal, -inf above: position i attends to positions 0..=i.
    let mask: Vec<f32> = (0..t * t)
        .map(|i| {
            if i % t > i / t {
                f32::NEG_INFINITY
            } else {
                0.0
            }
        })
        .collect();
    let mask = Tensor::from_slice(&mask, (t, t), inputs.device())?;
    let split_heads = |m: Tensor| -> candle_core::Result<Tensor> {
        m.reshape((n, t, heads, hd))?.transpose(1, 2)?.contiguous()
    };
    for block in params[2..2 + 12 * layers].chunks_exact(12) {
        let a = layer_norm(&x, &block[0], &block[1])?;
        let qkv = linear(&a, &block[2], &block[3])?;
        let q = split_heads(qkv.narrow(1, 0, d)?)?;
        let k = split_heads(qkv.narrow(1, d, d)?)?;
        let v = split_heads(qkv.narrow(1, 2 * d, d)?)?;
        let scores =
            (q.matmul(&k.t()?.contiguous()?)? / (hd as f64).sqrt())?.broadcast_add(&mask)?;
        let max = scores.max_keepdim(3)?.detach();
        let e = scores.broadcast_sub(&max)?.exp()?;
        let p = e.broadcast_div(&e.sum_keepdim(3)?)?;
        let o = p
            .matmul(&v)?
            .transpose(1, 2)?
            .contiguous()?
            .reshape((rows, d))?;
        x = (x + linear(&o, &block[4], &block[5])?)?;
        let m = layer_norm(&x, &block[6], &block[7])?;
        let f = linear(&m, &block[8], &block[9])?.relu()?;
        x = (x + linear(&f, &block[10], &block[11])?)?;
    }
    let head = &params[2 + 12 * layers..];
    let x = layer_norm(&x, &head[0], &head[1])?;
    Ok(linear(&x, &head[2], &head[3])?)
}

/// `maxpool2(relu(conv(x, weight) + bias))` on channels-last `x` `[n, h, w, c_in]` with
/// a PyTorch-layout `weight` `[c_out, c_in, k, k]`, stride 1, padding `k / 2`; returns
/// `[n, h / 2, w / 2, c_out]`.
fn conv_relu_pool_nhwc(
    x: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
    kernel: usize,
) -> Result<Tensor> {
    let (n, h, w, c_in) = x.dims4()?;
    let c_out = weight.dim(0)?;
    let pad = kernel / 2;
    let padded = x.pad_with_zeros(1, pad, pad)?.pad_with_zeros(2, pad, pad)?;
    // Patches [n, h, w, k*k*c_in], ordered (kh, kw, c_in).
    let shifted = (0..kernel * kernel)
        .map(|i| padded.narrow(1, i / kernel, h)?.narrow(2, i % kernel, w))
        .collect::<candle_core::Result<Vec<_>>>()?;
    let patches = Tensor::cat(&shifted, 3)?.reshape((n * h * w, kernel * kernel * c_in))?;
    // Weight as [(kh, kw, c_in), c_out] to match the patch order.
    let weight = weight
        .permute((2, 3, 1, 0))?
        .reshape((kernel * kernel * c_in, c_out))?;
    let y = patches
        .matmul(&weight)?
        .broadcast_add(bias)?
        .relu()?
        .reshape((n, h / 2, 2, w / 2, 2, c_out))?;
    Ok(y.max(4)?.max(2)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mlp_has_named_layers_grouped_into_segments() {
        let model = Model::new(
            ModelSpec::Mlp {
                input: 64,
                hidden: vec![32, 16],
                classes: 10,
            },
            1,
        )
        .unwrap();
        let segments = model.segments();
        let names: Vec<&str> = segments.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["layer0", "layer1", "layer2"]);
        assert_eq!(segments[0].param_names, ["layer0.weight", "layer0.bias"]);
        assert_eq!(segments[0].param_count, 64 * 32 + 32);
        assert_eq!(
            model.param_count(),
            64 * 32 + 32 + 32 * 16 + 16 + 16 * 10 + 10
        );
        assert_eq!(model.param("layer1.weight").unwrap().shape, vec![16, 32]);
        let forward = 2 * (64 * 32 + 32 * 16 + 16 * 10);
        assert_eq!(model.spec().forward_flops_per_sample(), forward);
        assert_eq!(
            model.spec().train_flops_per_sample(),
            3 * forward - 2 * 64 * 32
        );
        assert_eq!(model, Model::new(model.spec().clone(), 1).unwrap());
        assert_ne!(model, Model::new(model.spec().clone(), 2).unwrap());
    }

    #[test]
    fn cnn_builds_and_maps_images_to_class_logits() {
        let spec = ModelSpec::Cnn {
            height: 8,
            width: 8,
            channels: [4, 8],
            kernel: 3,
            classes: 10,
        };
        let model = Model::new(spec, 3).unwrap();
        let names: Vec<String> = model.segments().into_iter().map(|s| s.name).collect();
        assert_eq!(names, ["conv0", "conv1", "linear"]);
        assert_eq!(
            model.param("linear.weight").unwrap().shape,
            vec![10, 8 * 2 * 2]
        );
        let logits = model.logits_of(&[0.5; 3 * 64]).unwrap();
        assert_eq!(logits.len(), 30);
        assert!(logits.iter().all(|v| v.is_finite()));
    }

    /// The unfolded channels-last convolution equals candle's NCHW `conv2d` path.
    #[test]
    fn cnn_forward_matches_candle_conv2d() {
        let spec = ModelSpec::Cnn {
            height: 8,
            width: 12,
            channels: [3, 5],
            kernel: 3,
            classes: 4,
        };
        let model = Model::new(spec, 7).unwrap();
        let p = model.tensors(&Device::Cpu).unwrap();
        let inputs: Vec<f32> = (0..2 * 96)
            .map(|i| ((i * 31 % 17) as f32) / 8.0 - 1.0)
            .collect();
        let x = Tensor::from_slice(&inputs, (2, 1, 8, 12), &Device::Cpu).unwrap();
        let conv = |x: &Tensor, w: &Tensor, b: &Tensor| {
            x.conv2d(w, 1, 1, 1, 1)
                .unwrap()
                .broadcast_add(&b.reshape((1, b.dim(0).unwrap(), 1, 1)).unwrap())
                .unwrap()
                .relu()
                .unwrap()
                .max_pool2d(2)
                .unwrap()
        };
        let x = conv(&conv(&x, &p[0], &p[1]), &p[2], &p[3])
            .flatten_from(1)
            .unwrap();
        let reference: Vec<f32> = x
            .matmul(&p[4].t().unwrap())
            .unwrap()
            .broadcast_add(&p[5])
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        let ours = model.logits_of(&inputs).unwrap();
        for (a, b) in ours.iter().zip(&reference) {
            assert!((a - b).abs() < 1e-5, "{a} vs {b}");
        }
    }

    #[test]
    fn transformer_has_one_segment_per_block_and_gpt2_like_init() {
        let spec = ModelSpec::Transformer {
            context: 64,
            vocab: 256,
            dim: 64,
            heads: 4,
            layers: 2,
        };
        let model = Model::new(spec.clone(), 1).unwrap();
        let segments = model.segments();
        let names: Vec<&str> = segments.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["embed", "block0", "block1", "head"]);
        assert_eq!(segments[1].param_names.len(), 12);
        assert_eq!(segments[1].param_count, 12 * 64 * 64 + 13 * 64);
        assert_eq!(segments[0].param_count, (256 + 64) * 64);
        assert_eq!(segments[3].param_count, 2 * 64 + 256 * 64 + 256);
        assert_eq!(
            model.param("block1.attn.qkv.weight").unwrap().shape,
            [192, 64]
        );
        assert_eq!(
            model.param("block0.mlp.proj.weight").unwrap().shape,
            [64, 256]
        );
        assert!(model
            .param("block0.ln2.weight")
            .unwrap()
            .values
            .iter()
            .all(|&v| v == 1.0));
        assert!(model
            .param("head.out.bias")
            .unwrap()
            .values
            .iter()
            .all(|&v| v == 0.0));
        let std = |name: &str| {
            let v = &model.param(name).unwrap().values;
            (v.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>() / v.len() as f64).sqrt()
        };
        assert!((std("embed.tok.weight") - 0.02).abs() < 0.001);
        assert!((std("block0.attn.proj.weight") - 0.01).abs() < 0.001);
        assert_eq!(spec.input_features(), 65);
        assert_eq!(spec.classes(), 256);
        assert_eq!(model, Model::new(spec, 1).unwrap());
    }

    #[test]
    fn spec_serialises_and_invalid_specs_are_refused() {
        let spec = ModelSpec::Mlp {
            input: 4,
            hidden: vec![3],
            classes: 2,
        };
        let json = serde_json::to_string(&spec).unwrap();
        assert_eq!(json, r#"{"kind":"mlp","input":4,"hidden":[3],"classes":2}"#);
        assert_eq!(serde_json::from_str::<ModelSpec>(&json).unwrap(), spec);
        let zero = ModelSpec::Mlp {
            input: 4,
            hidden: vec![0],
            classes: 2,
        };
        assert!(Model::new(zero, 0).is_err());
        let huge = ModelSpec::Mlp {
            input: 1 << 20,
            hidden: vec![1 << 20],
            classes: 2,
        };
        assert!(matches!(
            Model::new(huge, 0),
            Err(LearningError::InvalidSpec(_))
        ));
        let even = ModelSpec::Cnn {
            height: 8,
            width: 8,
            channels: [2, 2],
            kernel: 2,
            classes: 2,
        };
        assert!(Model::new(even, 0).is_err());
    }
}
