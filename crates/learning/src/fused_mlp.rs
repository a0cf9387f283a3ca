//! The MLP training step, fused by hand on buffers allocated once per run, and the MLP
//! forward pass that evaluation shares with it.
//!
//! candle's op-by-op autograd allocates and zero-fills a fresh tensor for every
//! intermediate and spends most of a small MLP step outside the matrix products. This
//! step runs the products on [`crate::kernel`] into reused buffers, adds the bias and
//! applies ReLU in one pass, computes the softmax cross-entropy gradient in place, and
//! folds plain SGD into the weight-gradient product (`W += (-lr dZ)^T A`), so a step is
//! three matrix products per layer and a few linear passes.
//!
//! Determinism: the kernel's products are defined element by element (one FMA chain in
//! ascending order, whatever the SIMD level or thread count), and every other pass here
//! is sequential scalar code in a fixed order (Rust never contracts `a * b + c` into an
//! FMA), so the bits depend only on the inputs.

use rayon::prelude::*;

use crate::error::Result;
use crate::kernel::{matmul, Accumulate, Kernel, MatRef};
use crate::model::{Model, ModelSpec};
use crate::samples::Samples;
use crate::train::{Stepper, TrainConfig};

/// One fully connected layer's state during a run.
struct Layer {
    /// Inputs and outputs.
    fan_in: usize,
    fan_out: usize,
    /// `[fan_out, fan_in]` row-major, as in the model.
    weight: Vec<f32>,
    bias: Vec<f32>,
    /// Whether this layer's segment is being trained.
    trainable: bool,
    /// Momentum buffers (empty unless trainable with momentum).
    weight_velocity: Vec<f32>,
    bias_velocity: Vec<f32>,
    /// Column sums of the output gradient, reused every step.
    bias_grad: Vec<f32>,
}

pub(crate) struct MlpStepper<'a> {
    shard: &'a Samples,
    layers: Vec<Layer>,
    /// Index of the lowest trained layer: backpropagation stops there.
    first_trainable: usize,
    /// `activations[0]` is the input batch, `activations[l + 1]` layer `l`'s output
    /// (after ReLU for hidden layers; the logits for the last).
    activations: Vec<Vec<f32>>,
    /// Gradient w.r.t. the current layer's pre-activation, and the one below it.
    grad: Vec<f32>,
    grad_below: Vec<f32>,
    labels: Vec<u32>,
    batch: usize,
    /// `-lr * grad` for plain SGD's weight update.
    scaled_grad: Vec<f32>,
    /// The weight gradient of one layer, for momentum's velocity update.
    weight_grad: Vec<f32>,
    lr: f32,
    momentum: f32,
    kernel: Kernel,
}

impl<'a> MlpStepper<'a> {
    pub(crate) fn new(
        model: &Model,
        trainable: &[bool],
        shard: &'a Samples,
        config: &TrainConfig,
        kernel: Kernel,
    ) -> Result<Self> {
        let ModelSpec::Mlp { .. } = model.spec() else {
            unreachable!("train() routes only MLPs here");
        };
        let params = model.params();
        let layers: Vec<Layer> = params
            .chunks_exact(2)
            .zip(trainable.chunks_exact(2))
            .map(|(pair, flags)| {
                let with_velocity = flags[0] && config.momentum > 0.0;
                Layer {
                    fan_in: pair[0].shape[1],
                    fan_out: pair[0].shape[0],
                    weight: pair[0].values.clone(),
                    bias: pair[1].values.clone(),
                    trainable: flags[0],
                    weight_velocity: if with_velocity {
                        vec![0.0; pair[0].values.len()]
                    } else {
                        Vec::new()
                    },
                    bias_velocity: if with_velocity {
                        vec![0.0; pair[1].values.len()]
                    } else {
                        Vec::new()
                    },
                    bias_grad: vec![0.0; pair[1].values.len()],
                }
            })
            .collect();
        let first_trainable = layers
            .iter()
            .position(|l| l.trainable)
            .expect("train() checked that a segment is trained");
        let batch = config.batch;
        let activations = std::iter::once(layers[0].fan_in)
            .chain(layers.iter().map(|l| l.fan_out))
            .map(|width| vec![0.0; batch * width])
            .collect();
        let widest = layers
            .iter()
            .map(|l| l.fan_out.max(l.fan_in))
            .max()
            .unwrap_or(0);
        let widest_trained = layers
            .iter()
            .filter(|l| l.trainable)
            .map(|l| l.fan_out)
            .max()
            .unwrap_or(0);
        let largest_trained = layers
            .iter()
            .filter(|l| l.trainable)
            .map(|l| l.weight.len())
            .max()
            .unwrap_or(0);
        let (scaled_grad, weight_grad) = if config.momentum > 0.0 {
            (Vec::new(), vec![0.0; largest_trained])
        } else {
            (vec![0.0; batch * widest_trained], Vec::new())
        };
        Ok(Self {
            shard,
            layers,
            first_trainable,
            activations,
            grad: vec![0.0; batch * widest],
            grad_below: vec![0.0; batch * widest],
            labels: vec![0; batch],
            batch,
            scaled_grad,
            weight_grad,
            lr: config.lr,
            momentum: config.momentum,
            kernel,
        })
    }

    fn gather(&mut self, indices: &[usize]) {
        let width = self.shard.feature_count();
        for ((row, label), &index) in self.activations[0]
            .chunks_exact_mut(width)
            .zip(&mut self.labels)
            .zip(indices)
        {
            row.copy_from_slice(self.shard.row(index));
            *label = self.shard.labels()[index];
        }
    }

    fn forward(&mut self) {
        let last = self.layers.len() - 1;
        for (l, layer) in self.layers.iter().enumerate() {
            let (below, above) = self.activations.split_at_mut(l + 1);
            let activation = if l < last {
                Activation::Relu
            } else {
                Activation::Identity
            };
            linear_forward(
                self.kernel,
                LayerRef {
                    fan_in: layer.fan_in,
                    fan_out: layer.fan_out,
                    weight: &layer.weight,
                    bias: &layer.bias,
                },
                &below[l],
                self.batch,
                activation,
                &mut above[0],
            );
        }
    }

    /// Mean softmax cross-entropy of the logits; leaves `dLoss/dLogits` in `self.grad`.
    fn loss_and_output_grad(&mut self) -> f32 {
        let classes = self.layers[self.layers.len() - 1].fan_out;
        let logits = &self.activations[self.layers.len()];
        softmax_cross_entropy(logits, &self.labels, classes, &mut self.grad)
    }

    fn backward_and_update(&mut self) {
        for l in (self.first_trainable..self.layers.len()).rev() {
            let layer = &mut self.layers[l];
            let (fan_in, fan_out) = (layer.fan_in, layer.fan_out);
            let grad = &self.grad[..self.batch * fan_out];
            let input = &self.activations[l];
            if l > self.first_trainable {
                // grad_below[b, i] = sum_j grad[b, j] * weight[j, i], masked by ReLU'.
                let below = &mut self.grad_below[..self.batch * fan_in];
                matmul(
                    self.kernel,
                    below,
                    fan_in,
                    MatRef::row_major(grad, self.batch, fan_out),
                    MatRef::row_major(&layer.weight, fan_out, fan_in),
                    Accumulate::Overwrite,
                );
                for (g, &a) in below.iter_mut().zip(input.iter()) {
                    if a <= 0.0 {
                        *g = 0.0;
                    }
                }
            }
            if layer.trainable {
                update_layer(
                    layer,
                    grad,
                    input,
                    self.batch,
                    Sgd {
                        lr: self.lr,
                        momentum: self.momentum,
                        kernel: self.kernel,
                    },
                    &mut self.scaled_grad,
                    &mut self.weight_grad,
                );
            }
            std::mem::swap(&mut self.grad, &mut self.grad_below);
        }
    }
}

/// Mean softmax cross-entropy of `logits` `[labels.len(), classes]`; leaves `dLoss/dLogits`
/// in `grad`. Sequential, in sample order; the sum in f64.
pub(crate) fn softmax_cross_entropy(
    logits: &[f32],
    labels: &[u32],
    classes: usize,
    grad: &mut [f32],
) -> f32 {
    let batch = labels.len();
    let scale = 1.0 / batch as f32;
    // Rows in parallel (each row's softmax by one task), the loss terms then added in row
    // order: the same bits at any thread count.
    let terms: Vec<f64> = logits[..batch * classes]
        .par_chunks_exact(classes)
        .zip(grad[..batch * classes].par_chunks_exact_mut(classes))
        .zip(labels.par_iter())
        .with_min_len(CROSS_ENTROPY_ROWS_PER_TASK)
        .map(|((row, grad), &label)| {
            let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let mut sum = 0f32;
            for (g, &z) in grad.iter_mut().zip(row) {
                *g = (z - max).exp();
                sum += *g;
            }
            let term = f64::from(sum.ln() + max - row[label as usize]);
            let inv = scale / sum;
            for g in grad.iter_mut() {
                *g *= inv;
            }
            grad[label as usize] -= scale;
            term
        })
        .collect();
    let total = terms.iter().fold(0f64, |acc, term| acc + term);
    (total / batch as f64) as f32
}

/// Rows of logits one task of [`softmax_cross_entropy`] takes at least: an MLP batch stays
/// one task, a language model's thousands of positions are split.
const CROSS_ENTROPY_ROWS_PER_TASK: usize = 128;

/// The update rule of a run.
#[derive(Clone, Copy)]
struct Sgd {
    lr: f32,
    momentum: f32,
    kernel: Kernel,
}

/// SGD on one layer from the gradient w.r.t. its pre-activation and its input.
fn update_layer(
    layer: &mut Layer,
    grad: &[f32],
    input: &[f32],
    batch: usize,
    sgd: Sgd,
    scaled_grad: &mut [f32],
    weight_grad: &mut [f32],
) {
    let Sgd {
        lr,
        momentum,
        kernel,
    } = sgd;
    let (fan_in, fan_out) = (layer.fan_in, layer.fan_out);
    // dW[j, i] = sum_b grad[b, j] * input[b, i].
    let input = MatRef::row_major(input, batch, fan_in);
    if momentum > 0.0 {
        // As PyTorch: v = momentum * v + dW; w -= lr * v.
        let weight_grad = &mut weight_grad[..fan_out * fan_in];
        matmul(
            kernel,
            weight_grad,
            fan_in,
            MatRef::row_major(grad, batch, fan_out).t(),
            input,
            Accumulate::Overwrite,
        );
        for ((w, v), g) in layer
            .weight
            .iter_mut()
            .zip(layer.weight_velocity.iter_mut())
            .zip(weight_grad.iter())
        {
            *v = momentum * *v + g;
            *w -= lr * *v;
        }
    } else {
        // Plain SGD goes straight into the weights: W += (-lr * grad)^T input, each
        // weight one FMA chain over the batch starting from its old value.
        let scaled = &mut scaled_grad[..batch * fan_out];
        for (s, g) in scaled.iter_mut().zip(grad) {
            *s = -lr * g;
        }
        matmul(
            kernel,
            &mut layer.weight,
            fan_in,
            MatRef::row_major(scaled, batch, fan_out).t(),
            input,
            Accumulate::Add,
        );
    }
    layer.bias_grad.fill(0.0);
    for row in grad.chunks_exact(fan_out) {
        for (s, g) in layer.bias_grad.iter_mut().zip(row) {
            *s += g;
        }
    }
    if momentum > 0.0 {
        for ((b, v), g) in layer
            .bias
            .iter_mut()
            .zip(layer.bias_velocity.iter_mut())
            .zip(&layer.bias_grad)
        {
            *v = momentum * *v + g;
            *b -= lr * *v;
        }
    } else {
        for (b, g) in layer.bias.iter_mut().zip(&layer.bias_grad) {
            *b -= lr * g;
        }
    }
}

impl Stepper for MlpStepper<'_> {
    fn step(&mut self, batch: &[usize]) -> Result<f32> {
        self.gather(batch);
        self.forward();
        let loss = self.loss_and_output_grad();
        self.backward_and_update();
        Ok(loss)
    }

    fn state(&self) -> Result<Vec<(Vec<f32>, Vec<f32>)>> {
        let mut out = Vec::new();
        for layer in self.layers.iter().filter(|l| l.trainable) {
            out.push((layer.weight.clone(), layer.weight_velocity.clone()));
            out.push((layer.bias.clone(), layer.bias_velocity.clone()));
        }
        Ok(out)
    }

    fn set_velocity(&mut self, velocity: &[Vec<f32>]) -> Result<()> {
        let mut velocity = velocity.iter();
        for layer in self.layers.iter_mut().filter(|l| l.trainable) {
            for slot in [&mut layer.weight_velocity, &mut layer.bias_velocity] {
                if let Some(values) = velocity.next() {
                    slot.clone_from(values);
                }
            }
        }
        Ok(())
    }

    fn finish(self: Box<Self>, model: &mut Model) -> Result<()> {
        let params = model.params_mut();
        for (pair, layer) in params.chunks_exact_mut(2).zip(self.layers) {
            if layer.trainable {
                pair[0].values = layer.weight;
                pair[1].values = layer.bias;
            }
        }
        Ok(())
    }
}

/// A layer's parameters, borrowed.
#[derive(Clone, Copy)]
pub(crate) struct LayerRef<'a> {
    pub(crate) fan_in: usize,
    pub(crate) fan_out: usize,
    /// `[fan_out, fan_in]` row-major.
    pub(crate) weight: &'a [f32],
    pub(crate) bias: &'a [f32],
}

/// What follows a layer's affine map.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Activation {
    Relu,
    Identity,
}

/// `output[b, j] = act(sum_i input[b, i] * weight[j, i] + bias[j])` for `rows` samples.
pub(crate) fn linear_forward(
    kernel: Kernel,
    layer: LayerRef<'_>,
    input: &[f32],
    rows: usize,
    activation: Activation,
    output: &mut [f32],
) {
    let output = &mut output[..rows * layer.fan_out];
    matmul(
        kernel,
        output,
        layer.fan_out,
        MatRef::row_major(&input[..rows * layer.fan_in], rows, layer.fan_in),
        MatRef::row_major(layer.weight, layer.fan_out, layer.fan_in).t(),
        Accumulate::Overwrite,
    );
    let relu = activation == Activation::Relu;
    for row in output.chunks_exact_mut(layer.fan_out) {
        for (value, bias) in row.iter_mut().zip(layer.bias) {
            let z = *value + bias;
            *value = if relu && z <= 0.0 { 0.0 } else { z };
        }
    }
}

/// Buffers of [`mlp_logits`], grown on first use and reused across batches.
#[derive(Default)]
pub(crate) struct ForwardBuffers {
    ping: Vec<f32>,
    pong: Vec<f32>,
}

/// Logits `[rows, classes]` of an MLP `model` for `rows` row-major samples, on the
/// kernel (the same products and passes as the training step's forward pass).
pub(crate) fn mlp_logits<'b>(
    kernel: Kernel,
    model: &Model,
    input: &[f32],
    rows: usize,
    buffers: &'b mut ForwardBuffers,
) -> &'b [f32] {
    let params = model.params();
    let layers = params.len() / 2;
    let widest = params
        .chunks_exact(2)
        .map(|pair| pair[0].shape[0])
        .max()
        .unwrap_or(0);
    for buffer in [&mut buffers.ping, &mut buffers.pong] {
        if buffer.len() < rows * widest {
            buffer.resize(rows * widest, 0.0);
        }
    }
    let mut width = 0;
    for (l, pair) in params.chunks_exact(2).enumerate() {
        let layer = LayerRef {
            fan_in: pair[0].shape[1],
            fan_out: pair[0].shape[0],
            weight: &pair[0].values,
            bias: &pair[1].values,
        };
        let activation = if l + 1 < layers {
            Activation::Relu
        } else {
            Activation::Identity
        };
        let (from, to) = if l % 2 == 0 {
            (&buffers.pong, &mut buffers.ping)
        } else {
            (&buffers.ping, &mut buffers.pong)
        };
        let layer_input = if l == 0 { input } else { from.as_slice() };
        linear_forward(kernel, layer, layer_input, rows, activation, to);
        width = layer.fan_out;
    }
    let last = if layers % 2 == 1 {
        &buffers.ping
    } else {
        &buffers.pong
    };
    &last[..rows * width]
}
